"""Orphaning and adoption (`kubectl delete --cascade=orphan`, then a new DaemonSet adopting the pods).

A DaemonSet annotated `nodeagent.io/orphan-on-delete: "true"`, or named to `nodeagent orphan NS/NAME`,
leaves its pods running, ownerless, when it is withdrawn. Docker labels are immutable, so the policy and
each pod's effective owner (orphaned, or the DaemonSet that adopted it) are an `Ownership` value the
agent keeps in stateDir/ownership.json; the pod's template labels are a label on its containers
(labels.POD_LABELS), so a later DaemonSet's selector is matched from Docker alone. Adoption restarts
nothing; an adopted pod of another revision is outdated, and the adopter's updateStrategy decides (as
the DaemonSet controller does): OnDelete keeps it until it is deleted, RollingUpdate replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodeagent.agent import identity, labels
from nodeagent.agent.plan.types import Inputs, ObservedPod, Ownership
from nodeagent.k8s import model, selectors

# on a DaemonSet: when it is withdrawn, leave its pods running, ownerless (kubectl delete --cascade=orphan)
ANNOTATION_ORPHAN = "nodeagent.io/orphan-on-delete"
ORPHANED = ""  # the effective owner of an orphaned pod
POLICY_ANNOTATION = "annotation"  # why a DaemonSet orphans its pods: its annotation ...
POLICY_COMMAND = "command"  # ... or `nodeagent orphan`


def pod_template_labels(p: ObservedPod) -> dict[str, str] | None:
    """The template labels recorded on the pod's containers (None for pods made before the label)."""
    for c in p.containers:
        if labels.POD_LABELS in c.labels:
            return labels.pod_labels(c.labels)
    return None


def wants_orphan(ds: model.DaemonSet) -> bool:
    return ds.metadata.annotations.get(ANNOTATION_ORPHAN, "").strip().lower() in ("true", "1", "yes")


def removable(owner: str, inputs: Inputs) -> bool:
    """May pods of this (withdrawn) owner be deleted or orphaned now? (ARCHITECTURE.md §2)"""
    if not inputs.all_sources_seen or inputs.hold_removals:
        return False  # never remove before every source has spoken once since start
    if owner in inputs.protected_owners:
        return False
    parsed = identity.parse_owner(owner)
    return not (parsed is not None and (parsed[0], parsed[2]) in inputs.protected_names)


def ownership(inputs: Inputs, pods: Mapping[tuple[str, str], ObservedPod]) -> Ownership:
    """Who owns each pod after this pass, as the DaemonSet controller's orphan/adopt rules say.

    A withdrawn DaemonSet whose policy says orphan leaves its pods ownerless; an ownerless pod whose
    recorded template labels match a DaemonSet's selector (same namespace) is adopted by it, first
    DaemonSet in order wins. Adoption restarts nothing: the pod stays as it is, and is up to date only if
    its revision is the adopter's; otherwise the adopter's updateStrategy replaces it.
    """
    present = {
        identity.owner_daemonset(e.obj.metadata.namespace, e.obj.metadata.name): e.obj
        for e in inputs.daemonsets
    }
    policy = dict(inputs.ownership.policy)
    for owner, ds in present.items():
        if wants_orphan(ds):
            policy.setdefault(owner, POLICY_ANNOTATION)
        elif policy.get(owner) == POLICY_ANNOTATION:
            del policy[owner]
    owners = {k: v for k, v in inputs.ownership.owners.items() if k in pods}
    for key, p in sorted(pods.items()):
        owner = owners.get(key, p.owner)
        if owner == ORPHANED or owner in present or not owner.startswith("DaemonSet/"):
            continue
        if owner in policy and removable(owner, inputs):
            owners[key] = ORPHANED
    for owner, ds in present.items():
        for key, p in sorted(pods.items()):
            if owners.get(key) != ORPHANED or p.namespace != ds.metadata.namespace:
                continue
            recorded = pod_template_labels(p)
            if recorded is not None and selectors.label_selector_matches(ds.spec.selector, recorded):
                owners[key] = owner
    alive = {p.owner for p in pods.values()}
    policy = {o: why for o, why in policy.items() if o in present or o in alive}
    return Ownership(policy=policy, owners=owners)
