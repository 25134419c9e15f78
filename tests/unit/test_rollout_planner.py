"""The pure rollout planner against Kubernetes' DaemonSet rollingUpdate (pkg/controller/daemon/update.go):
a table of node states -> the nodes handed the update revision now."""

from __future__ import annotations

import pytest

from nodeagent.fleet import rollout
from nodeagent.fleet.rollout import NodeState, PodState, Strategy

OLD, NEW = 1, 2


def old(name: str, available: bool = True, ready: bool = True, canary: bool = False) -> NodeState:
    return NodeState(name, ready, True, OLD, (PodState(OLD, available),), canary)


def new(name: str, available: bool = True, ready: bool = True, failing: bool = False) -> NodeState:
    return NodeState(name, ready, True, NEW, (PodState(NEW, available, failing),))


DEFAULT = Strategy()


def handed(nodes: list[NodeState], strategy: Strategy = DEFAULT, paused: bool = False) -> list[str]:
    return [n for n, rev in rollout.plan(nodes, NEW, strategy, paused).assign if rev == NEW]


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(1, 10, 1), ("10%", 10, 1), ("10%", 11, 2), ("25%", 3, 1), ("50%", 5, 3), ("0%", 7, 0), ("100%", 4, 4)],
)
def test_scaled_rounds_up(value: int | str, total: int, expected: int) -> None:
    assert rollout.scaled(value, total) == expected


def test_budget_defaults_and_zero_fallback() -> None:
    assert rollout.budget(1, 0, 5) == (1, 0)
    assert rollout.budget(0, 0, 5) == (1, 0)  # updatedDesiredNodeCounts: both 0 -> maxUnavailable 1
    assert rollout.budget("0%", "0%", 5) == (1, 0)
    assert rollout.budget(0, "20%", 10) == (0, 2)
    assert rollout.budget(0, 0, 0) == (0, 0)


TABLE = [
    # (case, nodes, strategy, expected newly handed out)
    ("maxUnavailable 1: one node at a time", [old("a"), old("b"), old("c")], Strategy(), ["a"]),
    ("budget used by a new pod not yet available", [new("a", False), old("b"), old("c")], Strategy(), []),
    ("new available: next one", [new("a"), old("b"), old("c")], Strategy(), ["b"]),
    ("maxUnavailable 2", [old("a"), old("b"), old("c")], Strategy(max_unavailable=2), ["a", "b"]),
    (
        "percentage of 10 nodes rounded up",
        [old(f"n{i}") for i in range(10)],
        Strategy(max_unavailable="15%"),
        ["n0", "n1"],
    ),
    (
        "unavailable old pods are replaced at once, outside the budget",
        [old("a", available=False), old("b", available=False), old("c")],
        Strategy(),
        ["a", "b", "c"],
    ),
    (
        "a node without a pod gets the new revision at once",
        [NodeState("a", True, True, OLD), old("b")],
        Strategy(),
        ["a", "b"],
    ),
    (
        "NotReady node before its turn: no budget, not handed out",
        [old("a", ready=False), old("b"), old("c")],
        Strategy(),
        ["b"],
    ),
    (
        "dark after receiving the new revision: holds its budget",
        [new("a", available=False, ready=False), old("b"), old("c")],
        Strategy(),
        [],
    ),
    ("surge 1: one new pod at a time", [old("a"), old("b")], Strategy(max_unavailable=0, max_surge=1), ["a"]),
    (
        "surge: waiting for a new pod uses the surge",
        [new("a", False), old("b")],
        Strategy(max_unavailable=0, max_surge=1),
        [],
    ),
    (
        "surge: an unavailable old pod is replaced at once",
        [new("a", False), old("b", available=False)],
        Strategy(max_unavailable=0, max_surge=1),
        ["b"],
    ),
    (
        "OnDelete: only a node whose pod is gone",
        [old("a"), NodeState("b", True, True, OLD)],
        Strategy(type="OnDelete"),
        ["b"],
    ),
    (
        "canary first, alone until available",
        [old("a"), old("b"), old("z", canary=True)],
        Strategy(max_unavailable=2),
        ["z"],
    ),
]


@pytest.mark.parametrize(("case", "nodes", "strategy", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_table(case: str, nodes: list[NodeState], strategy: Strategy, expected: list[str]) -> None:
    assert handed(nodes, strategy) == expected


def test_canary_must_be_available_before_any_other_node() -> None:
    nodes = [old("a"), old("b"), NodeState("z", True, True, NEW, (PodState(NEW, False),), True)]
    assert handed(nodes, Strategy(max_unavailable=3)) == []
    nodes[2] = NodeState("z", True, True, NEW, (PodState(NEW, True),), True)
    assert handed(nodes, Strategy(max_unavailable=3)) == ["a", "b"]


def test_paused_hands_out_nothing() -> None:
    assert handed([old("a"), old("b")], paused=True) == []


def test_counters_wave_pending_failed_complete() -> None:
    p = rollout.plan(
        [new("a"), new("b", False), old("c", ready=False), new("d", ready=False, available=False)],
        NEW,
        Strategy(max_unavailable=2),
    )
    assert (p.desired, p.updated, p.available) == (4, 3, 1)
    assert p.wave == ("b",)
    assert p.pending == ("c",)
    assert p.failed == ("d",)  # went dark after receiving the new revision
    assert not p.complete
    done = rollout.plan([new("a"), new("b"), old("c", ready=False)], NEW, Strategy())
    assert done.complete and done.pending == ("c",)  # a NotReady node does not block completion


def test_failing_new_pod_is_a_failure() -> None:
    p = rollout.plan([new("a", False, failing=True), old("b")], NEW, Strategy())
    assert p.failed == ("a",)


def test_verdict_first_failure_ratio_and_deadline() -> None:
    p = rollout.plan([new("a", False, failing=True), old("b")], NEW, Strategy())
    assert "failed" in rollout.verdict(p, rollout.Policy(), now=10, progress_at=0)
    ratio = rollout.Policy(max_failure_ratio=0.5, failure_ratio_min_nodes=2)
    assert rollout.verdict(p, ratio, now=10, progress_at=0) == ""  # 1 updated < 2 minimum
    slow = rollout.plan([new("a", False), old("b")], NEW, Strategy())
    assert rollout.verdict(slow, rollout.Policy(progress_deadline=30), now=20, progress_at=0) == ""
    assert "deadline" in rollout.verdict(slow, rollout.Policy(progress_deadline=30), now=31, progress_at=0)


def test_waves_follow_the_budget() -> None:
    nodes = [old(f"n{i}") for i in range(5)] + [old("c", canary=True)]
    assert rollout.waves(nodes, NEW, Strategy(max_unavailable=2)) == [
        ["c"],
        ["n0", "n1"],
        ["n2", "n3"],
        ["n4"],
    ]
