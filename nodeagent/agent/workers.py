"""Per-owner workers: one slow pod never holds up another (the kubelet's pod workers, pod_workers.go).

The reconcile loop plans and *dispatches*; the work of each owner (a DaemonSet, a static pod, an orphaned
pod) runs on that owner's own daemon thread. An owner has at most one unit of work in flight; a unit
submitted while one runs waits as the owner's *pending* unit, and a newer one replaces it. Finished work
calls `on_done` (the loop wakes, observes the result and reports it). Keying by owner keeps a rolling
update's delete-old/create-new order: both are one unit, applied in order.

The map knows nothing of Docker: a unit is a callable returning outcomes. `busy()` tells the planner
which owners are busy (their actions wait); `stuck()` names units past their own deadline, which are
reported (status, logs, a gauge) and waited for by nobody. Threads are daemon threads: a SIGTERM ends the
agent at once, and a Docker stop already sent finishes in the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

# what each kind of work may take before it counts as stuck, on top of the grace periods it waits out
STOP_MARGIN = 30.0
CREATE_DEADLINE = 600.0  # an image pull can take minutes; a postStart hook 30 s


@dataclass(frozen=True)
class Unit:
    """One owner's work: what it does to which pods, and until when it is expected to finish."""

    owner: str
    run: Callable[[], Sequence[object]]  # returns the outcomes, in order
    pods: tuple[tuple[str, str], ...] = ()  # (namespace, pod) it touches
    terminating: tuple[tuple[str, str], ...] = ()  # pods it stops and removes
    reason: str = "ContainerCreating"  # what the planner shows for the owner's pods meanwhile
    deadline_seconds: float = CREATE_DEADLINE


@dataclass(frozen=True)
class Busy:
    """An owner whose unit is in flight (a plain value: the planner, status and workers.json read it)."""

    owner: str
    pods: tuple[tuple[str, str], ...]
    terminating: tuple[tuple[str, str], ...]
    reason: str
    started: float  # clock() when it began
    deadline: float  # clock() past which it counts as stuck
    detail: str = ""  # what it is doing now, e.g. "pulling image x: 120 MB of 340 MB"
    stuck: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "owner": self.owner,
            "pods": [list(p) for p in self.pods],
            "terminating": [list(p) for p in self.terminating],
            "reason": self.reason,
            "started": self.started,
            "deadline": self.deadline,
            "detail": self.detail,
            "stuck": self.stuck,
        }

    @staticmethod
    def from_json(doc: dict[str, object]) -> Busy:
        def pods(key: str) -> tuple[tuple[str, str], ...]:
            raw = doc.get(key) or []
            assert isinstance(raw, list)
            return tuple((str(p[0]), str(p[1])) for p in raw)

        return Busy(
            owner=str(doc["owner"]),
            pods=pods("pods"),
            terminating=pods("terminating"),
            reason=str(doc.get("reason", "")),
            started=float(doc["started"]),  # type: ignore[arg-type]
            deadline=float(doc["deadline"]),  # type: ignore[arg-type]
            detail=str(doc.get("detail", "")),
            stuck=bool(doc.get("stuck", False)),
        )


@dataclass
class _Slot:
    unit: Unit
    started: float
    detail: str = ""
    pending: Unit | None = None
    reported_stuck: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)


class WorkerMap:
    """Owner -> its worker. Thread-safe; every method returns quickly (none waits for a unit)."""

    def __init__(
        self,
        *,
        on_done: Callable[[], None] = lambda: None,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        spawn: Callable[[Callable[[], None], str], None] | None = None,
    ) -> None:
        self._on_done = on_done
        self._on_change = on_change  # the busy set changed (workers.json is rewritten)
        self._clock = clock
        self._spawn = spawn or _daemon_thread
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._slots: dict[str, _Slot] = {}
        self._finished: list[object] = []
        self._crashed: list[BaseException] = []

    def submit(self, unit: Unit) -> bool:
        """Run `unit` on its owner's worker; True when it started now, False when it waits as the owner's
        pending unit (replacing an older pending one) behind the unit in flight."""
        with self._lock:
            slot = self._slots.get(unit.owner)
            if slot is not None:
                if slot.pending is not None:
                    log.info("work_replaced", owner=unit.owner)
                slot.pending = unit
                return False
            self._slots[unit.owner] = _Slot(unit, self._clock())
        self._start(unit)
        self._on_change()
        return True

    def _start(self, unit: Unit) -> None:
        self._spawn(lambda: self._work(unit), f"worker {unit.owner}")

    def _work(self, unit: Unit) -> None:
        while True:
            outcomes: list[object] = []
            try:
                outcomes = list(unit.run())
            except BaseException as exc:  # the owner is freed whatever happened; `sync` re-raises it
                if isinstance(exc, Exception):
                    log.exception("work_crashed", owner=unit.owner)
                with self._lock:
                    self._crashed.append(exc)
            with self._lock:
                self._finished.extend(outcomes)
                slot = self._slots[unit.owner]
                if slot.reported_stuck:
                    log.info(
                        "work_finished_late", owner=unit.owner, seconds=round(self._clock() - slot.started, 1)
                    )
                nxt = slot.pending
                if nxt is None:
                    del self._slots[unit.owner]
                    self._idle.notify_all()
                else:
                    self._slots[unit.owner] = _Slot(nxt, self._clock())
            self._on_change()
            self._on_done()
            if nxt is None:
                return
            unit = nxt

    def set_detail(self, owner: str, detail: str) -> None:
        """What the owner's unit is doing now (shown in status); ignored when the owner is idle."""
        with self._lock:
            slot = self._slots.get(owner)
            if slot is None or slot.detail == detail:
                return
            slot.detail = detail
        self._on_change()

    def busy(self) -> dict[str, Busy]:
        now = self._clock()
        with self._lock:
            return {
                owner: Busy(
                    owner=owner,
                    pods=s.unit.pods,
                    terminating=s.unit.terminating,
                    reason=s.unit.reason,
                    started=s.started,
                    deadline=s.started + s.unit.deadline_seconds,
                    detail=s.detail,
                    stuck=now > s.started + s.unit.deadline_seconds,
                )
                for owner, s in self._slots.items()
            }

    def stuck(self) -> list[Busy]:
        """Units past their deadline; each is logged once (nothing waits for it)."""
        out = [b for b in self.busy().values() if b.stuck]
        with self._lock:
            for b in out:
                slot = self._slots.get(b.owner)
                if slot is not None and not slot.reported_stuck:
                    slot.reported_stuck = True
                    log.warning(
                        "worker_stuck",
                        owner=b.owner,
                        reason=b.reason,
                        detail=b.detail or None,
                        seconds=round(self._clock() - b.started, 1),
                    )
        return out

    def drain(self) -> list[object]:
        """The outcomes of work finished since the last drain, in the order it finished."""
        with self._lock:
            out, self._finished = self._finished, []
        return out

    def crashes(self) -> list[BaseException]:
        """Exceptions units ended with since the last call (each was logged when it was an Exception)."""
        with self._lock:
            crashed, self._crashed = self._crashed, []
        return crashed

    def reraise(self) -> None:
        """Raise the first exception a unit ended with since the last call (`sync` and tests: as if the
        work had run in the caller's thread)."""
        crashed = self.crashes()
        if crashed:
            raise crashed[0]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no unit is in flight (`sync`); False when `timeout` ran out first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._slots:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True


def _daemon_thread(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()
