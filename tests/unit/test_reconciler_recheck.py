"""The reconcile loop looks again RECHECK_AFTER an engine event: an engine may send "die" before its
container list shows the container stopped, and a pass that saw it still running would report a crashed
pod ready until the next timer (the demo's bad revision reached every node through that window)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

from nodeagent.agent import reconciler
from nodeagent.runtime import RuntimeEvent


class LaggingEngine:
    """Sends one "die" once the first pass ran; its list says "running" until LAG after the event."""

    LAG = 0.05

    def __init__(self) -> None:
        self.first_pass = threading.Event()
        self.died_at: float | None = None

    def events(self, stop: threading.Event) -> Iterator[RuntimeEvent]:
        self.first_pass.wait(10)
        self.died_at = time.monotonic()
        yield RuntimeEvent("die", "c1")
        stop.wait()

    def state(self) -> str:
        return (
            "exited"
            if self.died_at is not None and time.monotonic() - self.died_at >= self.LAG
            else "running"
        )


class Agent:
    """Records what each pass saw of the container; asks for no timer of its own."""

    def __init__(self, engine: LaggingEngine) -> None:
        self.runtime = engine
        self.seen: list[str] = []

    def reconcile(self, wait: bool = True) -> Any:
        self.seen.append(self.runtime.state())
        self.runtime.first_pass.set()
        return SimpleNamespace(plan=SimpleNamespace(wake_at=None), failed=(), outcomes=())


def test_a_pass_after_an_engine_event_is_followed_by_a_second_look(monkeypatch: Any) -> None:
    monkeypatch.setattr(reconciler, "RECHECK_AFTER", 0.3, raising=False)
    engine = LaggingEngine()
    agent = Agent(engine)
    loop = reconciler.Reconciler(cast(Any, agent), resync_interval=3600)  # no resync within the test
    t = threading.Thread(target=loop.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while "exited" not in agent.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        # the first pass, the one the event woke (the list still said running), then the second look
        assert agent.seen[:2] == ["running", "running"]
        assert "exited" in agent.seen, agent.seen
        time.sleep(0.5)
        assert len(agent.seen) == 3, agent.seen  # one second look per event, not a loop of them
    finally:
        loop.stop()
        t.join(5)
