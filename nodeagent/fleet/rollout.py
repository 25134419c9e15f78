"""The fleet rollout planner (pure): node states in, the revisions to hand out next.

It follows Kubernetes' DaemonSet controller (pkg/controller/daemon/update.go `rollingUpdate`,
`updatedDesiredNodeCounts`; util `UnavailableCount`/`SurgeCount`), with `serve` in the controller's
place: instead of deleting old pods it assigns the update revision to a node, and the node's agent
replaces its pod (RollingUpdate with maxSurge on one node: new first; maxSurge 0: pull, then stop, then
start).

- maxUnavailable / maxSurge are counts or percentages of desiredNumberScheduled, rounded up; both 0
  resolve to maxUnavailable 1 (the controller's fallback).
- maxSurge 0: a node on the update revision whose pod is not available (yet) uses one unit of budget;
  an old pod that is not available is replaced at once, outside the budget; healthy old pods are
  replaced while the budget lasts.
- maxSurge > 0: a node waiting for its new pod to become available uses one unit of surge; an
  unavailable old pod is replaced at once.
- OnDelete: a node gets the update revision only when it runs no pod of the DaemonSet.

Beyond Kubernetes:
- a NotReady node (silent past the grace period) that is not on the update revision uses no budget and
  blocks nothing: it is `pending` and catches up when it reports again (kubernetes#63465, #117204);
- a NotReady node that was handed the update revision is a failure of that revision (it went dark
  after receiving it: kubernetes#117658's objection);
- canary nodes go first, and no other node starts before every canary node is available.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"


def scaled(value: int | str, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent(value, total, roundUp=true)."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.endswith("%"):
        return math.ceil(int(text[:-1]) * total / 100)
    return int(text)


def budget(max_unavailable: int | str, max_surge: int | str, desired: int) -> tuple[int, int]:
    """(maxUnavailable, maxSurge) as counts: updatedDesiredNodeCounts' rounding and fallback."""
    unavailable = scaled(max_unavailable, desired)
    surge = scaled(max_surge, desired)
    if desired > 0 and unavailable == 0 and surge == 0:
        unavailable = 1
    return unavailable, surge


@dataclass(frozen=True)
class PodState:
    """One reported pod of the DaemonSet on a node: its revision number (0: unknown template)."""

    revision: int
    available: bool
    failing: bool = False  # crash-looping or failing to pull: the revision does not work here
    terminating: bool = False


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool  # reported within the grace period
    should_run: bool  # the scheduling decision from its reported labels and taints
    assigned: int  # the revision `serve` hands it now (0: none yet)
    pods: tuple[PodState, ...] = ()
    canary: bool = False

    def live(self) -> list[PodState]:
        return [p for p in self.pods if not p.terminating]

    def effective(self) -> int:
        """The revision the node is on: its assignment, else the revision its pod runs."""
        if self.assigned:
            return self.assigned
        revs = [p.revision for p in self.live() if p.revision]
        return max(revs) if revs else 0


@dataclass(frozen=True)
class Strategy:
    type: str = ROLLING_UPDATE
    max_unavailable: int | str = 1
    max_surge: int | str = 0


@dataclass(frozen=True)
class Plan:
    """What to hand out now, and the counters the views show."""

    assign: tuple[tuple[str, int], ...]  # (node, revision) to hand out now
    desired: int
    max_unavailable: int
    max_surge: int
    updated: int  # desired nodes on the update revision
    available: int  # desired nodes whose pod on the update revision is available
    wave: tuple[str, ...]  # on the update revision, ready, not available yet
    pending: tuple[str, ...]  # NotReady, waiting for the update revision
    failed: tuple[str, ...]  # on the update revision and failing, or gone dark after receiving it
    complete: bool  # every ready desired node is on the update revision and available
    canary_done: bool = True


_name = operator.attrgetter("name")


def _new_and_old(n: NodeState, update: int) -> tuple[PodState | None, PodState | None]:
    """The node's first live pod of `update` and its first live pod of another revision, in one look
    (a pass asks both of every node: at 1000 nodes the separate looks were a third of a pass)."""
    new = old = None
    for p in n.pods:
        if p.terminating:
            continue
        if p.revision == update:
            if new is None:
                new = p
        elif old is None:
            old = p
    return new, old


def plan(nodes: Sequence[NodeState], update: int, strategy: Strategy, paused: bool = False) -> Plan:
    """One pass of the controller over the fleet: which nodes receive `update` now."""
    desired_nodes = [n for n in nodes if n.should_run]
    max_unavailable, max_surge = budget(strategy.max_unavailable, strategy.max_surge, len(desired_nodes))
    by_name = sorted(desired_nodes, key=_name)  # canaries first, each part by name (C-level key and sort)
    order = [n for n in by_name if n.canary] + [n for n in by_name if not n.canary]
    assign: list[tuple[str, int]] = []
    wave: list[str] = []
    pending: list[str] = []
    failed: list[str] = []
    updated = available = 0
    canaries = [n for n in order if n.canary and n.ready]
    canary_done = all(
        n.effective() == update and (p := _new_and_old(n, update)[0]) is not None and p.available
        for n in canaries
    )
    # nodes the DaemonSet does not run on follow the update revision at once (nothing runs there)
    for n in nodes:
        if not n.should_run and n.assigned != update and not paused:
            assign.append((n.name, update))
    unavailable = surging = 0
    allowed: list[str] = []
    candidates: list[str] = []
    complete = True  # every ready desired node on the update revision and available (before this pass)
    for n in order:
        on_update = n.effective() == update
        new, old = _new_and_old(n, update)
        if n.ready and not (on_update and new is not None and new.available):
            complete = False
        if on_update:
            updated += 1
            if new is not None and new.available:
                available += 1
                if n.ready:
                    continue
            if not n.ready:
                if new is None or not new.available:
                    failed.append(n.name)  # went dark after receiving the revision: holds its budget
                    unavailable += 1
                    surging += 1
                continue
            if new is not None and new.failing:
                failed.append(n.name)
            wave.append(n.name)
            unavailable += 1
            surging += 1
            if n.assigned != update:
                assign.append((n.name, update))  # running it already: record the assignment
            continue
        if not n.ready:
            pending.append(n.name)  # out of the budget; catches up when it reports again
            continue
        if not canary_done and not n.canary:
            continue
        if strategy.type == ON_DELETE:
            if old is None:
                allowed.append(n.name)
            continue
        if old is None or not old.available:
            allowed.append(n.name)
        else:
            candidates.append(n.name)
    if strategy.type == ON_DELETE:
        chosen = allowed
    elif max_surge == 0:
        room = max(0, max_unavailable - unavailable)
        chosen = allowed + candidates[:room]
    else:
        room = max(0, max_surge - surging)
        chosen = allowed + candidates[:room]
    if not paused:
        assign.extend((name, update) for name in chosen)
        wave.extend(chosen)  # handed out now: this pass's wave
        updated += len(chosen)
    return Plan(
        assign=tuple(assign),
        desired=len(desired_nodes),
        max_unavailable=max_unavailable,
        max_surge=max_surge,
        updated=updated,
        available=available,
        wave=tuple(wave),
        pending=tuple(pending),
        failed=tuple(failed),
        complete=complete,
        canary_done=canary_done,
    )


def waves(
    nodes: Sequence[NodeState], update: int, strategy: Strategy, limit: int = 10_000
) -> list[list[str]]:
    """The waves a rollout of `update` would take on this fleet if every handed-out node became
    available at once (`rollout plan`): each wave is one pass's new assignments among desired nodes."""
    state = {n.name: n for n in nodes}
    desired = {n.name for n in nodes if n.should_run}
    out: list[list[str]] = []
    for _ in range(limit):
        p = plan(list(state.values()), update, strategy)
        fresh = [name for name, _rev in p.assign if name in desired and state[name].effective() != update]
        for name, rev in p.assign:
            n = state[name]
            pods = tuple(x for x in n.pods if x.revision == rev) or ()
            state[name] = replace(n, assigned=rev, pods=(PodState(rev, True),) if n.should_run else pods)
        if not fresh:
            break
        out.append(fresh)
    return out


@dataclass(frozen=True)
class Policy:
    """The DaemonSet's rollout annotations (fleet/annotations.py parses them)."""

    canary: str = ""  # a label selector
    progress_deadline: float = 0.0  # seconds; 0: none
    auto_rollback: bool = False
    max_failure_ratio: float | None = None
    failure_ratio_min_nodes: int = 5
    roll_config: bool = False


def verdict(p: Plan, policy: Policy, now: float, progress_at: float) -> str:
    """Why the rollout has failed ("" if it has not): failures beyond the policy, or no progress."""
    if p.failed:
        if policy.max_failure_ratio is None:
            return f"node(s) {', '.join(p.failed)} failed on the new revision"
        if p.updated >= policy.failure_ratio_min_nodes and len(p.failed) / max(1, p.updated) > (
            policy.max_failure_ratio
        ):
            return (
                f"{len(p.failed)} of {p.updated} updated node(s) failed, above the max failure ratio "
                f"{policy.max_failure_ratio:g}"
            )
    if policy.progress_deadline and not p.complete and now - progress_at > policy.progress_deadline:
        return f"no progress for {policy.progress_deadline:g} s (progress deadline)"
    return ""


def names(items: Iterable[tuple[str, int]]) -> list[str]:
    return [n for n, _ in items]
