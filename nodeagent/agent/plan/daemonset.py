"""The DaemonSet controller's rules for one node (pkg/controller/daemon): the desired pod of a DaemonSet,
whether it runs here (the scheduling decision, NoExecute tolerationSeconds), its update strategy
(RollingUpdate with or without maxSurge, OnDelete) and its immutable selector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from nodeagent import runtime as rt
from nodeagent.agent import desired as desired_mod
from nodeagent.agent import identity, labels
from nodeagent.agent.plan.pods import container_actions, delete_action, keep_outdated
from nodeagent.agent.plan.readiness import pod_available
from nodeagent.agent.plan.types import (
    Action,
    DesiredPod,
    Inputs,
    ObservedPod,
    Ownership,
    Waiting,
)
from nodeagent.k8s import model, scheduling
from nodeagent.k8s.selectors import selector_hash


def desired_daemon_pod(ds: model.DaemonSet, source: str = "") -> DesiredPod:
    h = identity.spec_hash(ds.spec.template)
    return DesiredPod(
        owner=identity.owner_daemonset(ds.metadata.namespace, ds.metadata.name),
        namespace=ds.metadata.namespace,
        name=identity.daemon_pod_name(ds.metadata.name, h),
        template=ds.spec.template,
        spec_hash=h,
        source=source,
        selector_hash=selector_hash(ds.spec.selector),
    )


def changed_selector(ds: model.DaemonSet, observed: Iterable[rt.ObservedContainer]) -> bool:
    """True when this DaemonSet's pods here were made under another selector (recorded in a label)."""
    owner = identity.owner_daemonset(ds.metadata.namespace, ds.metadata.name)
    want = selector_hash(ds.spec.selector)
    return any(
        c.labels.get(identity.LABEL_OWNER) == owner and c.labels.get(labels.SELECTOR, want) != want
        for c in observed
    )


def refuse_changed_selectors(
    state: desired_mod.DesiredState,
    observed: tuple[rt.ObservedContainer, ...],
    ownership: Ownership | None = None,
) -> desired_mod.DesiredState:
    """A DaemonSet whose running pods were made under another selector is refused, like the merger
    refuses it while it remembers: its pods stay as they are, and an error says why. Pods that were
    orphaned (or adopted since) no longer bind their old owner's selector, as in Kubernetes."""
    if ownership is not None and ownership.owners:
        observed = tuple(
            c
            for c in observed
            if (c.labels.get(identity.LABEL_POD_NAMESPACE, ""), c.labels.get(identity.LABEL_POD_NAME, ""))
            not in ownership.owners
        )
    refused = {key: entry for key, entry in state.daemonsets.items() if changed_selector(entry.obj, observed)}
    if not refused:
        return state
    problems = tuple(
        model.Problem(
            file=e.file,
            document=e.index,
            kind="DaemonSet",
            name=e.obj.metadata.name,
            path="spec.selector",
            message="field is immutable: the pods running here were created under another selector; "
            "restore it, or delete the DaemonSet's file to remove them",
        )
        for e in refused.values()
    )
    owners = {identity.owner_daemonset(ns, name) for ns, name in refused}
    return dataclasses.replace(
        state,
        daemonsets={k: v for k, v in state.daemonsets.items() if k not in refused},
        errors=state.errors + problems,
        protected_owners=state.protected_owners | owners,
    )


def surge(ds: model.DaemonSet) -> bool:
    """True when a RollingUpdate may start the new pod before the old one stops (maxSurge > 0).

    On one node `desiredNumberScheduled` is 1, and Kubernetes rounds percentages up, so any non-zero
    maxSurge means one surge pod.
    """
    strategy = ds.spec.update_strategy
    if strategy.type != "RollingUpdate" or strategy.rolling_update is None:
        return False
    max_surge = strategy.rolling_update.max_surge
    if isinstance(max_surge, str):
        return max_surge.rstrip("%").strip() not in ("", "0")
    return max_surge > 0


def plan_daemonset(
    ds: model.DaemonSet,
    desired: DesiredPod,
    decision: scheduling.Decision,
    owned: list[ObservedPod],
    inputs: Inputs,
    waiting: list[Waiting],
    wakes: list[float],
) -> list[Action]:
    """One DaemonSet on this node: scheduling decision, then its update strategy (update.go)."""
    grace = ds.spec.template.spec.termination_grace_period_seconds
    # the pod of the current revision; an adopted pod of another DaemonSet's name is outdated here
    current = next((p for p in owned if p.spec_hash == desired.spec_hash and p.name == desired.name), None)
    outdated = [p for p in owned if p is not current]
    actions: list[Action] = []

    if not decision.should_continue_running:
        why = "; ".join(decision.reasons) or "DaemonSet should not run on this node"
        return [delete_action(p, why, grace) for p in owned]

    if decision.evict_after_seconds is not None and owned:
        since = inputs.noexecute_since.get((ds.metadata.namespace, ds.metadata.name), inputs.now)
        deadline = since + decision.evict_after_seconds
        if inputs.now >= deadline:
            why = "tolerationSeconds elapsed for a NoExecute taint: " + "; ".join(decision.reasons)
            return [delete_action(p, why, grace) for p in owned]
        waiting.append(Waiting(desired.namespace, desired.name, "", "TolerationSeconds", deadline))

    if not decision.should_run and current is None and not outdated:
        return actions  # NoSchedule: do not start new pods, keep running ones

    strategy = ds.spec.update_strategy.type
    if outdated and (strategy == "OnDelete" or not decision.should_run):
        # OnDelete: an outdated pod is replaced only once it is deleted; keep it running meanwhile.
        # Untolerated NoSchedule: running pods stay, but no new revision can start here.
        for p in outdated:
            actions += keep_outdated(p, inputs, waiting)
        return actions

    if outdated and surge(ds):
        # maxSurge > 0: start the new pod first; stop the old one once the new one is available (ready
        # for minReadySeconds), as the controller's surge path does; the old one keeps running meanwhile
        available, at = pod_available(current, desired.template, inputs, ds.spec.min_ready_seconds)
        if available:
            for p in outdated:
                why = f"replaced by revision {desired.spec_hash}, which is available (maxSurge)"
                actions.append(delete_action(p, why, grace))
        else:
            if at is not None:
                wakes.append(at)  # ready, waiting out minReadySeconds
            for p in outdated:
                actions += keep_outdated(p, inputs, waiting)
        actions += container_actions(desired, current, inputs, waiting)
        return actions

    for p in outdated:
        actions.append(
            delete_action(p, f"pod template changed: revision {p.spec_hash} -> {desired.spec_hash}", grace)
        )
    actions += container_actions(desired, current, inputs, waiting)
    return actions
