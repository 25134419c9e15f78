"""`plan()`: every DaemonSet and static pod through its rules, then the pods nothing claims (withdrawn
owners, orphans) and the garbage of old attempts; owners whose worker is busy wait for the next pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TypeVar

from nodeagent import runtime as rt
from nodeagent.agent import identity
from nodeagent.agent.plan.daemonset import desired_daemon_pod, plan_daemonset
from nodeagent.agent.plan.ownership import ORPHANED, ownership, removable
from nodeagent.agent.plan.pods import container_actions, delete_action, gc_stale, group_pods, keep_outdated
from nodeagent.agent.plan.readiness import readiness
from nodeagent.agent.plan.types import (
    REMOVE,
    Action,
    DaemonSetPlan,
    DesiredPod,
    Inputs,
    ObservedPod,
    Plan,
    StaticPodPlan,
    Waiting,
    work_owner,
)
from nodeagent.k8s import model, scheduling


def desired_static_pod(pod: model.Pod, node_name: str, source: str = "") -> DesiredPod:
    template = model.PodTemplateSpec(metadata=pod.metadata, spec=pod.spec)
    return DesiredPod(
        owner=identity.owner_pod(pod.metadata.namespace, pod.metadata.name),
        namespace=pod.metadata.namespace,
        name=identity.static_pod_name(pod.metadata.name, node_name),
        template=template,
        spec_hash=identity.spec_hash(template),
        source=source,
    )


def plan(inputs: Inputs) -> Plan:
    """Compute every action that brings observed containers to the desired state, with reasons."""
    pods = group_pods(inputs.observed)
    claimed: set[tuple[str, str]] = set()
    waiting: list[Waiting] = []
    wakes: list[float] = []
    ds_plans: list[DaemonSetPlan] = []
    owners = ownership(inputs, pods)

    def owner_of(p: ObservedPod) -> str:
        return owners.owners.get(p.key, p.owner)

    for entry in inputs.daemonsets:
        ds = entry.obj
        desired = desired_daemon_pod(ds, entry.source)
        owned = [p for p in pods.values() if owner_of(p) == desired.owner]
        claimed.update(p.key for p in owned)
        decision = scheduling.decide(inputs.node, ds.spec.template.spec)
        actions = plan_daemonset(ds, desired, decision, owned, inputs, waiting, wakes)
        ds_plans.append(
            DaemonSetPlan(
                namespace=ds.metadata.namespace,
                name=ds.metadata.name,
                source=entry.source,
                decision=decision,
                desired=desired,
                pods=tuple(owned),
                actions=tuple(actions),
                min_ready_seconds=ds.spec.min_ready_seconds,
            )
        )

    sp_plans: list[StaticPodPlan] = []
    for item in inputs.static_pods:
        pod_obj, source = (item, "") if isinstance(item, model.Pod) else (item.obj, item.source)
        desired = desired_static_pod(pod_obj, inputs.node.name, source)
        owned = [p for p in pods.values() if p.owner == desired.owner]
        claimed.update(p.key for p in owned)
        sp_plans.append(_plan_static_pod(pod_obj, desired, owned, inputs, waiting))

    other: list[Action] = []
    orphans: list[ObservedPod] = []
    for key, p in sorted(pods.items()):
        if key in claimed:
            continue
        owner = owner_of(p)
        if owner == ORPHANED:
            # ownerless, as after `kubectl delete --cascade=orphan`: kept running, restarted in place
            orphans.append(p)
            other.extend(keep_outdated(p, inputs, waiting))
            continue
        if not removable(owner, inputs):
            continue
        kind = owner.split("/", 1)[0]
        what = "static pod manifest" if kind == "Pod" else "DaemonSet"
        other.append(delete_action(p, f"{what} {owner.split('/', 1)[-1]} is no longer in any source"))
    # old attempts of containers that live on in a newer attempt, but the last dead one (for logs --previous)
    for p in pods.values():
        other += (_remove_stale(p, c) for c in gc_stale(p))

    wake = min([w.until for w in waiting] + wakes, default=None)
    if inputs.busy:
        ds_plans = _hold_busy(inputs, ds_plans, waiting)
        sp_plans = _hold_busy(inputs, sp_plans, waiting)
        other = _hold_busy_other(inputs, other, waiting)
    return Plan(
        daemonsets=tuple(ds_plans),
        static_pods=tuple(sp_plans),
        other_actions=tuple(other),
        waiting=tuple(waiting),
        wake_at=wake,
        readiness=readiness(pods, inputs, ds_plans, sp_plans),
        ownership=owners,
        orphans=tuple(orphans),
        unowned=tuple(p for key, p in sorted(pods.items()) if key not in claimed and owner_of(p) != ORPHANED),
        terminating=frozenset(k for k in inputs.terminating if k in pods),
    )


def _plan_static_pod(
    pod_obj: model.Pod, desired: DesiredPod, owned: list[ObservedPod], inputs: Inputs, waiting: list[Waiting]
) -> StaticPodPlan:
    """A static pod: any pod of an older manifest is deleted, the current one brought to its spec."""
    grace = desired.template.spec.termination_grace_period_seconds
    current = [p for p in owned if p.spec_hash == desired.spec_hash and p.name == desired.name]
    actions = [delete_action(p, "static pod manifest changed", grace) for p in owned if p not in current]
    actions += container_actions(desired, current[0] if current else None, inputs, waiting)
    return StaticPodPlan(
        namespace=pod_obj.metadata.namespace,
        name=desired.name,
        source=desired.source,
        desired=desired,
        pods=tuple(owned),
        actions=tuple(actions),
    )


def _remove_stale(p: ObservedPod, c: rt.ObservedContainer) -> Action:
    return Action(
        verb=REMOVE,
        namespace=p.namespace,
        pod=p.name,
        owner=p.owner,
        container=c.labels.get(identity.LABEL_CONTAINER_NAME, ""),
        reason="superseded by a newer attempt",
        container_ids=(c.id,),
    )


_P = TypeVar("_P", DaemonSetPlan, StaticPodPlan)


def _hold(actions: Iterable[Action], owner: str, inputs: Inputs, waiting: list[Waiting]) -> None:
    """Report the pods of a busy owner's actions as `waiting`, with the busy reason (Terminating for the
    pods its worker is stopping): finished work wakes the loop, and the next pass plans them afresh."""
    for key in dict.fromkeys((a.namespace, a.pod) for a in actions):
        reason = "Terminating" if key in inputs.terminating else inputs.busy[owner]
        w = Waiting(key[0], key[1], "", reason, inputs.now, busy=True)
        if w not in waiting:
            waiting.append(w)


def _hold_busy(inputs: Inputs, plans: list[_P], waiting: list[Waiting]) -> list[_P]:
    """Owners with work in flight get no actions this pass (their pods are reported waiting)."""
    out = []
    for d in plans:
        if d.actions and d.desired.owner in inputs.busy:
            _hold(d.actions, d.desired.owner, inputs, waiting)
            d = dataclasses.replace(d, actions=())
        out.append(d)
    return out


def _hold_busy_other(inputs: Inputs, other: list[Action], waiting: list[Waiting]) -> list[Action]:
    kept = []
    for a in other:
        if work_owner(a) in inputs.busy:
            _hold((a,), work_owner(a), inputs, waiting)
        else:
            kept.append(a)
    return kept
