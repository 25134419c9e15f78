"""Readiness and availability, as the kubelet's status manager and `podutil.IsPodAvailable` say: what
`status` shows and what a surge update waits for before it stops the old pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nodeagent import runtime as rt
from nodeagent.agent import identity
from nodeagent.agent.plan.types import DaemonSetPlan, Health, Inputs, ObservedPod, Readiness, StaticPodPlan
from nodeagent.k8s import model


def is_app(c: rt.ObservedContainer) -> bool:
    """An app container (not the pod's sandbox or an init container): the ones readiness counts."""
    return c.labels.get(identity.LABEL_ROLE, identity.ROLE_APP) == identity.ROLE_APP


def container_readiness(
    c: rt.ObservedContainer, spec: model.Container | None, health: Mapping[str, Health]
) -> Readiness:
    """Ready as the kubelet says: a prober's verdict if there is one; else ready while running, unless
    the spec has a readiness or startup probe that no prober has passed yet."""
    if not c.running:
        return Readiness(False)
    started = c.started_at or c.created_at
    h = health.get(c.id)
    if h is not None:
        return Readiness(h.ready, (h.ready_since or started) if h.ready else None)
    if spec is not None and (spec.readiness_probe is not None or spec.startup_probe is not None):
        return Readiness(False)
    return Readiness(True, started)


def readiness(
    pods: Mapping[tuple[str, str], ObservedPod],
    inputs: Inputs,
    ds_plans: Iterable[DaemonSetPlan],
    sp_plans: Iterable[StaticPodPlan],
) -> dict[str, Readiness]:
    """Every app container's readiness, by container id, judged against its pod's current template."""
    templates = {d.desired.spec_hash: d.desired.template for d in ds_plans}
    templates.update({s.desired.spec_hash: s.desired.template for s in sp_plans})
    out: dict[str, Readiness] = {}
    for p in pods.values():
        template = templates.get(p.spec_hash)
        specs = {c.name: c for c in template.spec.containers} if template is not None else {}
        for c in p.containers:  # app containers only (group_pods keeps init and sandbox apart)
            name = c.labels.get(identity.LABEL_CONTAINER_NAME, "")
            out[c.id] = container_readiness(c, specs.get(name), inputs.health)
    return out


def pod_available(
    pod: ObservedPod | None, template: model.PodTemplateSpec | None, inputs: Inputs, min_ready: int
) -> tuple[bool, float | None]:
    """(available, when): every app container of the pod ready for `min_ready` seconds
    (podutil.IsPodAvailable); `when` is the moment it becomes available, None while not ready."""
    if pod is None:
        return (False, None)
    apps = pod.containers  # app containers only (group_pods keeps init and sandbox apart)
    specs = {c.name: c for c in template.spec.containers} if template is not None else {}
    if not apps or len(apps) < len(specs):
        return (False, None)
    since: list[float] = []
    for c in apps:
        r = container_readiness(c, specs.get(c.labels.get(identity.LABEL_CONTAINER_NAME, "")), inputs.health)
        if not r.ready:
            return (False, None)
        since.append(r.since or inputs.now)
    at = max(since) + min_ready
    return (inputs.now >= at, at)
