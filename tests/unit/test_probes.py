"""probes: the pure state machine (the kubelet prober worker's semantics) as tables; the runner on a clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent import runtime as rt
from nodeagent.agent import probes
from nodeagent.k8s import model

OK = probes.Result(True)
FAIL = probes.Result(False, "boom")


def probe(**kw: Any) -> model.Probe:
    kw.setdefault("handler", model.ExecAction(("true",)))
    return model.Probe(**kw)


# --- ProbeState ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "results", "expected"),
    [
        # readiness starts as failure and needs successThreshold successes in a row
        (probes.READINESS, {}, "", [False]),
        (probes.READINESS, {}, "S", [False, True]),
        (
            probes.READINESS,
            {"success_threshold": 3},
            "SSFSSS",
            [False, False, False, False, False, False, True],
        ),
        (probes.READINESS, {"failure_threshold": 2}, "SFSFF", [False, True, True, True, True, False]),
        # readiness never holds: it recovers
        (probes.READINESS, {"failure_threshold": 1}, "SFS", [False, True, False, True]),
        # liveness starts as success and fails after failureThreshold failures in a row
        (probes.LIVENESS, {}, "FFSFF", [True, True, True, True, True, True]),
        (probes.LIVENESS, {}, "FFF", [True, True, True, False]),
        (probes.LIVENESS, {"failure_threshold": 1}, "F", [True, False]),
        # startup starts unknown
        (probes.STARTUP, {}, "FS", [None, None, True]),
        (probes.STARTUP, {"failure_threshold": 2}, "FF", [None, None, False]),
    ],
)
def test_published_result(
    kind: str, params: dict[str, Any], results: str, expected: list[bool | None]
) -> None:
    state = probes.ProbeState.initial(kind, probe(**params), started_at=0.0)
    seen = [state.reported]
    now = 0.0
    for r in results:
        now += 10
        state = state.observe(OK if r == "S" else FAIL, now)
        seen.append(state.reported)
    assert seen == expected


def test_timing_initial_delay_then_period() -> None:
    state = probes.ProbeState.initial(
        probes.READINESS, probe(initial_delay_seconds=5, period_seconds=3), started_at=100.0
    )
    assert not state.due(104.9)
    assert state.due(105.0)
    state = state.observe(OK, 105.5)
    assert not state.due(108.4)
    assert state.due(108.5)


def test_liveness_failure_holds_until_the_container_is_replaced() -> None:
    state = probes.ProbeState.initial(probes.LIVENESS, probe(failure_threshold=2), started_at=0.0)
    state = state.observe(FAIL, 10).observe(FAIL, 20)
    assert state.on_hold and state.reported is False
    assert state.message == "boom"
    assert not state.due(1e9)


def test_startup_stops_once_it_succeeded() -> None:
    state = probes.ProbeState.initial(probes.STARTUP, probe(), started_at=0.0).observe(OK, 1)
    assert state.reported is True
    assert not state.due(1e9)


# --- ContainerProbes ----------------------------------------------------------------------------


def container(**kw: Any) -> model.Container:
    return model.Container(name="app", image="i", **kw)


def test_no_probes_started_and_ready_at_once() -> None:
    c = probes.ContainerProbes.for_container(container(), started_at=0)
    assert c.verdict() == probes.Verdict(started=True, ready=True, restart=False)
    assert c.due(1e9) == ()


def test_startup_gates_liveness_and_readiness() -> None:
    c = probes.ContainerProbes.for_container(
        container(
            startup_probe=probe(period_seconds=1, failure_threshold=30),
            liveness_probe=probe(),
            readiness_probe=probe(),
        ),
        started_at=0,
    )
    assert (c.started, c.ready) == (False, False)
    assert c.due(0) == (probes.STARTUP,)
    c = c.observe(probes.STARTUP, FAIL, 0)
    assert c.due(1) == (probes.STARTUP,)
    c = c.observe(probes.STARTUP, OK, 1)
    assert c.started and not c.ready  # readiness still starts as failure
    assert c.due(1) == (probes.LIVENESS, probes.READINESS)
    c = c.observe(probes.READINESS, OK, 1)
    assert c.ready


def test_startup_without_readiness_probe_is_ready_once_started() -> None:
    c = probes.ContainerProbes.for_container(container(startup_probe=probe()), started_at=0)
    assert not c.ready
    assert c.observe(probes.STARTUP, OK, 1).ready


def test_startup_failure_restarts_with_the_probe_grace() -> None:
    c = probes.ContainerProbes.for_container(
        container(startup_probe=probe(failure_threshold=1, termination_grace_period_seconds=3)), started_at=0
    )
    c = c.observe(probes.STARTUP, FAIL, 1)
    assert c.verdict() == probes.Verdict(
        started=False, ready=False, restart=True, message="Startup probe failed: boom", grace_seconds=3
    )
    assert c.due(1e9) == ()


def test_liveness_failure_means_restart_and_not_ready() -> None:
    c = probes.ContainerProbes.for_container(
        container(liveness_probe=probe(failure_threshold=1), readiness_probe=probe()), started_at=0
    )
    c = c.observe(probes.READINESS, OK, 1)
    assert c.ready
    c = c.observe(probes.LIVENESS, FAIL, 2)
    v = c.verdict()
    assert (v.ready, v.restart, v.message) == (False, True, "Liveness probe failed: boom")
    assert v.grace_seconds is None  # the pod's terminationGracePeriodSeconds applies


def test_readiness_failure_message() -> None:
    c = probes.ContainerProbes.for_container(
        container(readiness_probe=probe(failure_threshold=1)), started_at=0
    )
    assert c.verdict().message == ""  # not probed yet: not ready, but nothing failed
    c = c.observe(probes.READINESS, FAIL, 1)
    assert c.verdict().message == "Readiness probe failed: boom"
    assert not c.verdict().restart


@pytest.mark.parametrize(
    ("port", "expected"),
    [(8080, 8080), ("http", 80), ("metrics", 9100), ("9000", 9000), ("nope", None)],
)
def test_resolve_port(port: int | str, expected: int | None) -> None:
    c = container(ports=(model.ContainerPort(80, name="http"), model.ContainerPort(9100, name="metrics")))
    assert probes.resolve_port(port, c) == expected


def test_grpc_is_not_run_and_passes() -> None:
    result = probes.run_handler(
        model.GRPCAction(port=9000),
        runtime=ExecRuntime({}),
        container_id="c",
        container=container(),
        host="127.0.0.1",
        timeout=1,
    )
    assert result.success and "not supported" in result.message


# --- the runner, on an in-memory runtime and a manual clock -------------------------------------


class ExecRuntime:
    """Just enough of a ContainerRuntime for exec probes: exit codes per container, scripted."""

    def __init__(self, codes: dict[str, list[int]]) -> None:
        self.codes = codes
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int:
        with self.lock:
            self.calls.append((container_id, command))
            queue = self.codes[container_id]
            code = queue.pop(0) if len(queue) > 1 else queue[0]
        if code < 0:
            raise rt.ExecTimeout("timed out")
        return code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[int]:
    return []


def make_prober(runtime: ExecRuntime, clock: Clock, changes: list[int]) -> Iterator[probes.Prober]:
    p = probes.Prober(runtime, clock=clock, on_change=lambda: changes.append(1))
    try:
        yield p
    finally:
        p.stop()


def test_prober_publishes_verdicts_and_resets_on_restart(clock: Clock, changes: list[int]) -> None:
    runtime = ExecRuntime({"c1": [0], "c2": [1, 1, 1]})
    c = container(
        readiness_probe=probe(period_seconds=5),
        liveness_probe=probe(handler=model.ExecAction(("check",)), period_seconds=5, failure_threshold=2),
    )
    for prober in make_prober(runtime, clock, changes):
        prober.set_targets([probes.Target("c1", c, started_at=clock.now, host="10.0.0.2")])
        assert prober.verdict("c1") == probes.Verdict(started=True, ready=False, restart=False)
        ready_at = clock.now
        assert prober.run_once(wait=True) == 2
        want = probes.Verdict(started=True, ready=True, restart=False, ready_since=ready_at)
        assert prober.verdict("c1") == want, "ready_since: when readiness last turned true"
        assert changes == [1]
        assert prober.run_once(wait=True) == 0  # not due again before periodSeconds
        clock.now += 5
        assert prober.run_once(wait=True) == 2
        assert changes == [1]  # nothing changed

        # the container is replaced by c2, whose liveness check fails
        prober.set_targets([probes.Target("c2", c, started_at=clock.now, host="10.0.0.2")])
        assert prober.verdict("c1") is None
        assert prober.verdict("c2") == probes.Verdict(started=True, ready=False, restart=False)
        prober.run_once(wait=True)
        clock.now += 5
        prober.run_once(wait=True)
        verdict = prober.verdict("c2")
        assert verdict is not None and verdict.restart
        assert verdict.message == "Liveness probe failed: command ['check'] exited with 1"
        assert prober.run_once(wait=True) == 0


def test_prober_exec_timeout_is_a_failure(clock: Clock, changes: list[int]) -> None:
    runtime = ExecRuntime({"c1": [-1]})
    c = container(liveness_probe=probe(failure_threshold=1, timeout_seconds=2))
    for prober in make_prober(runtime, clock, changes):
        prober.set_targets([probes.Target("c1", c, started_at=clock.now, host="")])
        prober.run_once(wait=True)
        verdict = prober.verdict("c1")
        assert verdict is not None and verdict.restart
        assert "timed out after 2s" in verdict.message


def test_prober_thread_runs_on_its_own(changes: list[int]) -> None:
    runtime = ExecRuntime({"c1": [0]})
    c = container(readiness_probe=probe(period_seconds=1))
    changed = threading.Event()
    prober = probes.Prober(runtime, on_change=changed.set, tick=0.01)
    prober.set_targets([probes.Target("c1", c, started_at=0.0, host="")])
    prober.start()
    try:
        assert changed.wait(10)
        assert prober.verdicts()["c1"].ready
    finally:
        prober.stop()
