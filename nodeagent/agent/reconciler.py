"""The long-running loop: coalescing wake-ups, a resync timer, and observe -> plan -> dispatch.

Source changes, Docker events, config reloads, timers and finished work only *wake* the loop; every
pass recomputes from everything, so a lost or doubled event costs latency, never correctness. A pass
never waits for a pod's work (see workers): it only plans and hands each owner's actions to its worker,
so the loop's liveness (health, the systemd watchdog) says nothing about how long one pod takes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from nodeagent import errors
from nodeagent.agent import agent as agent_mod

log = structlog.get_logger(__name__)

# Docker events that mean "something may need doing": a container went away or stopped.
WAKE_EVENTS = frozenset({"die", "destroy", "oom", "kill", "stop"})
# ... and a second look this long after such an event: the engine can send "die" before its container
# list says so (in the demo's Docker-in-Docker engine a list 5 ms after the event still showed the
# container running), and a pass that saw it running would report a crashed pod ready until a timer woke
# the loop again (the restart back-off, 10 s): long enough for serve to count it available.
RECHECK_AFTER = 1.0


class Reconciler:
    def __init__(
        self,
        agent: agent_mod.Agent,
        *,
        resync_interval: float,
        on_pass: Callable[[agent_mod.PassResult], None] | None = None,
    ) -> None:
        self.agent = agent
        self.resync_interval = resync_interval
        self.on_pass = on_pass
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._events_thread: threading.Thread | None = None
        self._recheck_at: float | None = None  # a pass is due then (RECHECK_AFTER an engine event)
        self._recheck_lock = threading.Lock()
        self.passes = 0
        self.last_pass_ok = False
        self.last_pass_at = 0.0
        self.pass_started_at: float | None = None  # set while a pass runs (health: is it stuck?)
        self.last_error = ""  # why the last pass did not complete, for /healthz and the watchdog

    def wake(self) -> None:
        """Ask for a pass soon; many calls before the pass starts coalesce into one."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Reconcile until stop(); never raises for a failing pass (it logs and retries)."""
        self._start_events()
        next_due = 0.0
        while not self._stop.is_set():
            timeout = max(0.0, next_due - time.time())
            self._wake.wait(timeout)
            if self._stop.is_set():
                break
            self._wake.clear()
            with self._recheck_lock:
                if self._recheck_at is not None and self._recheck_at <= time.time():
                    self._recheck_at = None  # this pass is the second look (a newer event sets it again)
            wake_at = self.run_once()
            next_due = time.time() + self.resync_interval
            if wake_at is not None:
                next_due = min(next_due, wake_at)
            with self._recheck_lock:
                if self._recheck_at is not None:
                    next_due = min(next_due, self._recheck_at)

    def run_once(self) -> float | None:
        """One pass; returns when the plan wants to be looked at again (backoff deadlines)."""
        started = time.monotonic()
        self.pass_started_at = time.time()
        try:
            result = self.agent.reconcile(wait=False)  # dispatches; owners' work runs on their workers
            self.last_pass_at = time.time()  # before pass_started_at clears: never looks stale
        except errors.NodeAgentError as exc:
            self.last_pass_ok = False
            self.last_error = str(exc)
            log.warning("reconcile_failed", error=str(exc))
            return time.time() + min(5.0, self.resync_interval)
        except Exception as exc:  # a bug in one pass must not kill the agent; the next pass retries
            self.last_pass_ok = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("reconcile_crashed")
            return time.time() + min(5.0, self.resync_interval)
        finally:
            self.pass_started_at = None
        self.last_error = ""
        self.passes += 1
        self.last_pass_ok = not result.failed
        if result.outcomes:
            log.info(
                "reconcile_pass",
                actions=len(result.outcomes),
                failed=len(result.failed),
                seconds=round(time.monotonic() - started, 3),
            )
        if self.on_pass is not None:
            self.on_pass(result)
        wake_at = result.plan.wake_at
        if result.failed:
            retry = time.time() + 1.0
            wake_at = retry if wake_at is None else min(wake_at, retry)
        return wake_at

    # --- docker events ------------------------------------------------------------------------

    def _start_events(self) -> None:
        if self.agent.runtime is None or self._events_thread is not None:
            return
        self._events_thread = threading.Thread(target=self._watch_events, name="docker-events", daemon=True)
        self._events_thread.start()

    def _watch_events(self) -> None:
        runtime = self.agent.runtime
        assert runtime is not None
        delay = 1.0
        while not self._stop.is_set():
            try:
                for event in runtime.events(self._stop):
                    delay = 1.0
                    if event.action.split(":", 1)[0] in WAKE_EVENTS:
                        with self._recheck_lock:  # set before the wake: the pass it starts sees it
                            self._recheck_at = time.time() + RECHECK_AFTER
                        self.wake()
            except errors.NodeAgentError as exc:
                log.info("docker_events_lost", error=str(exc), retry_in=delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 30.0)
            self.wake()  # reconnected (or trying): look at everything again
