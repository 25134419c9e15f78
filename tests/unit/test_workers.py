"""The per-owner worker map (nodeagent.agent.workers) and the planner's side of it, with a fake clock.

Units are plain callables gated on events, so each test decides when work finishes; nothing here
sleeps for a duration, it only waits for events the test itself sets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from nodeagent.agent import plan, workers
from tests.support.planning import DESIRED, DS, NOW, container_for, make_ds, make_node


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Gate:
    """A unit body that blocks until released, and records that it ran."""

    def __init__(self, result: str) -> None:
        self.result = result
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> list[object]:
        self.started.set()
        assert self.release.wait(10), "the test never released this unit"
        return [self.result]


@pytest.fixture
def wm() -> Iterator[tuple[workers.WorkerMap, Clock, list[str]]]:
    clock = Clock()
    events: list[str] = []
    m = workers.WorkerMap(on_done=lambda: events.append("done"), clock=clock)
    yield m, clock, events
    m.wait_idle(10)


def unit(owner: str, run: Callable[[], list[object]], **kw: object) -> workers.Unit:
    return workers.Unit(owner=owner, run=run, **kw)  # type: ignore[arg-type]


def test_a_slow_owner_never_holds_up_another(wm: tuple[workers.WorkerMap, Clock, list[str]]) -> None:
    m, _, events = wm
    slow, fast = Gate("slow"), Gate("fast")
    assert m.submit(
        unit("DaemonSet/ns/old", slow, terminating=(("ns", "old-1"),), reason="ContainerCreating")
    )
    assert slow.started.wait(5)
    assert m.submit(unit("DaemonSet/ns/new", fast))
    fast.release.set()
    assert m.wait_idle(0.01) is False, "the slow owner is still in flight"
    deadline = threading.Event()
    for _ in range(500):
        if "DaemonSet/ns/new" not in m.busy():
            break
        deadline.wait(0.01)
    assert set(m.busy()) == {"DaemonSet/ns/old"}, "the fast owner finished while the slow one runs"
    assert m.drain() == ["fast"] and events == ["done"], "finished work wakes the loop"
    slow.release.set()
    assert m.wait_idle(5)
    assert m.drain() == ["slow"] and events == ["done", "done"]


def test_one_unit_in_flight_per_owner_and_a_newer_intent_replaces_the_pending_one(
    wm: tuple[workers.WorkerMap, Clock, list[str]],
) -> None:
    m, _, _ = wm
    first, second, third = Gate("first"), Gate("second"), Gate("third")
    assert m.submit(unit("Pod/ns/p", first))
    assert first.started.wait(5)
    assert m.submit(unit("Pod/ns/p", second)) is False, "waits behind the unit in flight"
    assert m.submit(unit("Pod/ns/p", third)) is False
    assert not second.started.is_set() and not third.started.is_set()
    second.release.set()
    third.release.set()
    first.release.set()
    assert m.wait_idle(5)
    assert m.drain() == ["first", "third"], "the newer intent replaced the pending one, which never ran"
    assert not second.started.is_set()


def test_busy_reports_terminating_pods_detail_and_stuck_past_the_deadline(
    wm: tuple[workers.WorkerMap, Clock, list[str]],
) -> None:
    m, clock, _ = wm
    gate = Gate("x")
    m.submit(
        unit("DaemonSet/ns/a", gate, pods=(("ns", "a-1"),), terminating=(("ns", "a-1"),), deadline_seconds=40)
    )
    assert gate.started.wait(5)
    m.set_detail("DaemonSet/ns/a", "pulling image x: 1 MB of 2 MB")
    [b] = m.busy().values()
    assert (b.terminating, b.started, b.deadline, b.detail, b.stuck) == (
        (("ns", "a-1"),),
        1000.0,
        1040.0,
        "pulling image x: 1 MB of 2 MB",
        False,
    )
    assert m.stuck() == []
    clock.now = 1041.0
    [stuck] = m.stuck()
    assert stuck.stuck and stuck.owner == "DaemonSet/ns/a"
    assert workers.Busy.from_json(stuck.to_json()) == stuck, "workers.json round-trips"
    gate.release.set()
    assert m.wait_idle(5) and m.busy() == {}


def test_a_crashing_unit_frees_its_owner(wm: tuple[workers.WorkerMap, Clock, list[str]]) -> None:
    m, _, events = wm

    def boom() -> list[object]:
        raise RuntimeError("bug")

    m.submit(unit("Pod/ns/p", boom))
    assert m.wait_idle(5) and events == ["done"]
    assert m.submit(unit("Pod/ns/p", lambda: ["ok"]))
    assert m.wait_idle(5) and m.drain() == ["ok"]


# --- the planner's side: busy owners wait, with a reason ------------------------------------------


def test_busy_owner_gets_no_actions_and_waits_with_its_reason() -> None:
    other = make_ds("other")
    inputs = plan.Inputs(
        node=make_node(),
        daemonsets=(plan.DaemonSetInput(DS), plan.DaemonSetInput(other)),
        static_pods=(),
        observed=(),
        now=NOW,
        busy={DESIRED.owner: "ContainerCreating"},
    )
    p = plan.plan(inputs)
    assert [(a.verb, a.owner) for a in p.actions] == [(plan.CREATE, plan.desired_daemon_pod(other).owner)]
    [w] = p.waiting
    assert (w.pod, w.reason) == (DESIRED.name, "ContainerCreating")
    assert p.wake_at is None, "finished work wakes the loop; a busy owner sets no timer"


def test_withdrawn_pod_being_stopped_is_terminating_and_not_stopped_twice() -> None:
    c = container_for(DESIRED)
    idle = plan.Inputs(node=make_node(), daemonsets=(), static_pods=(), observed=(c,), now=NOW)
    [delete] = plan.plan(idle).actions
    assert plan.work_owner(delete) == DESIRED.owner
    busy = plan.Inputs(
        node=make_node(),
        daemonsets=(),
        static_pods=(),
        observed=(c,),
        now=NOW,
        busy={DESIRED.owner: "ContainerCreating"},
        terminating=frozenset({DESIRED.key}),
    )
    p = plan.plan(busy)
    assert p.actions == ()
    assert [(w.pod, w.reason) for w in p.waiting] == [(DESIRED.name, "Terminating")]
    assert [u.key for u in p.unowned] == [DESIRED.key] and p.terminating == {DESIRED.key}


def test_actions_grouped_per_owner_keep_delete_before_create() -> None:
    old = plan.desired_daemon_pod(make_ds(image="busybox:0"))
    gone = plan.desired_daemon_pod(make_ds("gone"))
    inputs = plan.Inputs(
        node=make_node(),
        daemonsets=(plan.DaemonSetInput(DS),),
        static_pods=(),
        observed=(container_for(old), container_for(gone)),
        now=NOW,
    )
    groups = plan.plan(inputs).by_owner()
    assert [a.verb for a in groups[DESIRED.owner]] == [plan.DELETE, plan.CREATE]
    assert [a.verb for a in groups[gone.owner]] == [plan.DELETE]


def test_a_unit_dying_frees_its_owner_and_sync_sees_why(
    wm: tuple[workers.WorkerMap, Clock, list[str]],
) -> None:
    m, _, _ = wm

    class Died(BaseException):
        pass

    def die() -> list[object]:
        raise Died

    m.submit(unit("Pod/ns/p", die))
    assert m.wait_idle(5) and m.busy() == {}
    with pytest.raises(Died):
        m.reraise()
    m.reraise()  # reported once
