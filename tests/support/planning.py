"""Model objects and observed containers for the pure planner's table tests (and the views built on
its output: status, events, describe, workers): a DaemonSet, the node, containers as the executor labels
them, all at a fixed clock `NOW`."""

from __future__ import annotations

from dataclasses import replace

from nodeagent import runtime as rt
from nodeagent.agent import identity, plan
from nodeagent.k8s import model, node

NOW = 1_000_000.0


def make_ds(
    name: str = "agent",
    image: str = "busybox:1",
    *,
    node_selector: dict[str, str] | None = None,
    tolerations: tuple[model.Toleration, ...] = (),
    strategy: model.DaemonSetUpdateStrategy | None = None,
    containers: tuple[str, ...] = ("main",),
) -> model.DaemonSet:
    labels = {"app": name}
    spec = model.PodSpec(
        containers=tuple(model.Container(name=c, image=image) for c in containers),
        node_selector=node_selector or {},
        tolerations=tolerations,
    )
    return model.DaemonSet(
        metadata=model.ObjectMeta(name=name, namespace="kube-system"),
        spec=model.DaemonSetSpec(
            selector=model.LabelSelector(match_labels=labels),
            template=model.PodTemplateSpec(metadata=model.ObjectMeta(name="", labels=labels), spec=spec),
            update_strategy=strategy or model.DaemonSetUpdateStrategy(),
        ),
    )


def make_node(labels: dict[str, str] | None = None, taints: tuple[model.Taint, ...] = ()) -> node.Node:
    return node.build("node-a", labels or {}, taints, False)


_ids = iter(range(1, 1_000_000))


def container_for(
    desired: plan.DesiredPod,
    cname: str = "main",
    *,
    state: str = "running",
    attempt: int = 0,
    exit_code: int | None = None,
    started: float = NOW - 100,
    finished: float | None = None,
    step: int = 0,
) -> rt.ObservedContainer:
    labels = identity.container_labels(
        owner=desired.owner,
        namespace=desired.namespace,
        pod=desired.name,
        container=cname,
        spec_hash_value=desired.spec_hash,
        attempt=attempt,
        role=identity.ROLE_APP,
    )
    labels[plan.LABEL_BACKOFF_STEP] = str(step)
    return rt.ObservedContainer(
        id=f"id{next(_ids)}",
        name=identity.container_name(desired.namespace, desired.name, cname, attempt),
        labels=labels,
        image="busybox:1",
        state=state,
        exit_code=exit_code,
        created_at=started - 1,
        started_at=started,
        finished_at=finished,
    )


def sandbox_for(desired: plan.DesiredPod, *, state: str = "running") -> rt.ObservedContainer:
    """The pod's sandbox as the executor labels it (role=sandbox, container name POD)."""
    c = container_for(desired, "POD", state=state)
    return replace(c, labels={**c.labels, identity.LABEL_ROLE: identity.ROLE_SANDBOX})


DS = make_ds()
DESIRED = plan.desired_daemon_pod(DS)
