"""Pod and DaemonSet status derived from a plan, in Kubernetes' words (pure).

Phases and the kubectl STATUS column come from the containers Docker shows plus what the plan is
waiting for (a crash-loop backoff, an image that cannot be pulled); the DaemonSet counters are the
fields of Kubernetes' DaemonSetStatus for one node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from nodeagent import runtime as rt
from nodeagent.agent import identity, plan
from nodeagent.k8s import model

# DaemonSetStatus's counters in kubectl's column order (DaemonSetStatus.to_json, the fleet's sums and tables);
# numberUnavailable is derived (desired - available).
COUNTERS = (
    "desiredNumberScheduled",
    "currentNumberScheduled",
    "numberReady",
    "updatedNumberScheduled",
    "numberAvailable",
    "numberMisscheduled",
)


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    state: str  # running, waiting, terminated
    reason: str
    ready: bool
    restart_count: int
    exit_code: int | None
    image: str
    container_id: str


@dataclass(frozen=True)
class PodStatus:
    namespace: str
    name: str
    owner: str
    revision: str
    up_to_date: bool
    phase: str  # Pending, Running, Succeeded, Failed
    status: str  # kubectl's STATUS column: Running, CrashLoopBackOff, ErrImagePull, ...
    ready: bool
    restart_count: int
    started_at: float | None
    containers: tuple[ContainerStatus, ...]
    ready_since: float | None = None  # when every container was last ready (numberAvailable)
    init_containers: tuple[ContainerStatus, ...] = ()
    terminating: bool = False  # its worker is stopping it (kubectl: deletionTimestamp set)
    is_available: bool = False  # set by daemonset_status (minReadySeconds); read by serve's rollouts

    @property
    def created(self) -> bool:
        """Some container of it exists (a pod only waiting to be created lists its containers too)."""
        return any(c.container_id for c in (*self.containers, *self.init_containers))

    def available(self, min_ready_seconds: int, now: float) -> bool:
        """podutil.IsPodAvailable: ready for at least minReadySeconds; a terminating pod never is."""
        if self.terminating:
            return False
        return self.ready and self.ready_since is not None and now - self.ready_since >= min_ready_seconds

    def to_json(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "revision": self.revision,
            "upToDate": self.up_to_date,
            "phase": self.phase,
            "status": self.status,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "startTime": self.started_at,
            "readySince": self.ready_since,
            "terminating": self.terminating,
            "available": self.is_available,
            "containers": [
                {
                    "name": c.name,
                    "state": c.state,
                    "reason": c.reason,
                    "ready": c.ready,
                    "restartCount": c.restart_count,
                    "exitCode": c.exit_code,
                    "image": c.image,
                    "containerID": c.container_id,
                }
                for c in self.containers
            ],
            "initContainers": [
                {
                    "name": c.name,
                    "state": c.state,
                    "reason": c.reason,
                    "restartCount": c.restart_count,
                    "exitCode": c.exit_code,
                }
                for c in self.init_containers
            ],
        }


@dataclass(frozen=True)
class DaemonSetStatus:
    namespace: str
    name: str
    node_selector: str
    desired_number_scheduled: int
    current_number_scheduled: int
    number_ready: int
    updated_number_scheduled: int
    number_available: int
    number_misscheduled: int
    pods: tuple[PodStatus, ...]

    @property
    def counters(self) -> tuple[int, ...]:
        """The counters, in COUNTERS order."""
        return (
            self.desired_number_scheduled,
            self.current_number_scheduled,
            self.number_ready,
            self.updated_number_scheduled,
            self.number_available,
            self.number_misscheduled,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            **dict(zip(COUNTERS, self.counters, strict=True)),
            "pods": [p.to_json() for p in self.pods],
        }


def _container_status(
    c: rt.ObservedContainer,
    waiting: dict[str, plan.Waiting],
    readiness: Mapping[str, plan.Readiness] | None = None,
) -> ContainerStatus:
    name = c.labels.get(identity.LABEL_CONTAINER_NAME, "")
    known = readiness.get(c.id) if readiness is not None else None
    restarts = plan.attempt_of(c)
    if c.running:
        state, reason = "running", ""
    elif c.state == "created":
        state, reason = "waiting", "ContainerCreating"
    else:
        w = waiting.get(name)
        if w is not None:
            state, reason = "waiting", w.reason
        else:
            state, reason = "terminated", "Completed" if c.exit_code == 0 else "Error"
    return ContainerStatus(
        name=name,
        state=state,
        reason=reason,
        ready=known.ready if known is not None else c.running,
        restart_count=restarts,
        exit_code=c.exit_code,
        image=c.image,
        container_id=c.id,
    )


# a pod-level wait that says nothing about a container not made yet (it is ContainerCreating then)
_NOT_CONTAINER_REASONS = frozenset({"Terminating", "TolerationSeconds"})


def _not_created(c: model.Container, reason: str) -> ContainerStatus:
    """A container the spec has and the engine does not (yet), as the kubelet reports it: waiting, with
    why it could not be made (ErrImagePull, CreateContainerConfigError, ...) or ContainerCreating."""
    return ContainerStatus(
        name=c.name,
        state="waiting",
        reason=reason,
        ready=False,
        restart_count=0,
        exit_code=None,
        image=c.image,
        container_id="",
    )


def _wait_reason(mine: Mapping[str, plan.Waiting], container: str, default: str) -> str:
    """A container's own wait, else the pod's (the planner backs a pod off as a whole), else `default`."""
    w = mine.get(container)
    if w is not None:
        return w.reason
    pod = mine.get("")
    return pod.reason if pod is not None and pod.reason not in _NOT_CONTAINER_REASONS else default


def pod_status(
    pod: plan.ObservedPod,
    current_hash: str,
    waiting: tuple[plan.Waiting, ...],
    readiness: Mapping[str, plan.Readiness] | None = None,
    current_name: str = "",
    init_total: int = 0,
    terminating: frozenset[tuple[str, str]] = frozenset(),
    spec: model.PodSpec | None = None,
) -> PodStatus:
    """A pod's status; `readiness` (the plan's, from probes) decides `ready`, else a running container
    counts as ready. Only app containers count (a sandbox or init container is never `ready`). A pod
    being stopped shows `Terminating`, as kubectl prints a pod with a deletionTimestamp. With the
    `spec` of its revision, app containers not made yet are listed as waiting, with the reason."""
    mine = {w.container: w for w in waiting if (w.namespace, w.pod) == pod.key}
    containers = tuple(_container_status(c, mine, readiness) for c in pod.containers)
    if spec is not None and pod.spec_hash == current_hash:
        have = {c.name for c in containers}
        default = "PodInitializing" if not pod.containers and spec.init_containers else "ContainerCreating"
        containers += tuple(
            _not_created(c, _wait_reason(mine, c.name, default))
            for c in spec.containers
            if c.name not in have
        )
    apps = containers  # pod.containers are the app containers (plan.group_pods)
    ready = bool(apps) and all(c.ready for c in apps)
    since = [r.since for c in pod.containers if readiness and (r := readiness.get(c.id)) is not None]
    ready_since = None
    if ready:
        known = [t for t in since if t is not None]
        ready_since = max(known) if known else pod.started_at
    if apps and all(c.state == "running" for c in apps):
        phase, text = "Running", "Running"
    else:
        reasons = [c.reason for c in containers if c.state == "waiting" and c.reason]
        terminated = [c for c in containers if c.state == "terminated"]
        if reasons:
            text = reasons[0]
            phase = "Running" if any(c.state == "running" for c in containers) else "Pending"
        elif terminated and all(c.exit_code == 0 for c in terminated) and len(terminated) == len(containers):
            phase, text = "Succeeded", "Completed"
        elif terminated and len(terminated) == len(containers):
            phase, text = "Failed", "Error"
        else:
            phase, text = "Running", "NotReady"
    inits = tuple(_container_status(c, mine) for c in pod.init_containers)
    if not pod.containers and (inits or init_total):
        phase, text = "Pending", _init_status(inits, max(init_total, len(inits)))
    if pod.key in terminating:
        text = "Terminating"
    return PodStatus(
        namespace=pod.namespace,
        name=pod.name,
        owner=pod.owner,
        revision=pod.spec_hash,
        up_to_date=pod.spec_hash == current_hash and (not current_name or pod.name == current_name),
        phase=phase,
        status=text,
        ready=ready,
        restart_count=pod.restart_count,
        started_at=pod.started_at,
        containers=containers,
        ready_since=ready_since,
        init_containers=inits,
        terminating=pod.key in terminating,
    )


def _init_status(inits: tuple[ContainerStatus, ...], total: int) -> str:
    """kubectl's STATUS while init containers run: Init:1/2, Init:CrashLoopBackOff, Init:Error, or
    PodInitializing once all have succeeded (printers.go)."""
    for i, c in enumerate(inits):
        if c.state == "terminated" and c.exit_code == 0:
            continue
        if c.state == "waiting" and c.reason and c.reason != "ContainerCreating":
            return f"Init:{c.reason}"
        if c.state == "terminated":
            return "Init:Error" if c.exit_code else "Init:Completed"
        return f"Init:{i}/{total}"
    done = sum(1 for c in inits if c.state == "terminated" and c.exit_code == 0)
    return "PodInitializing" if done >= total else f"Init:{done}/{total}"


def pending_pod(desired: plan.DesiredPod, waiting: tuple[plan.Waiting, ...]) -> PodStatus | None:
    """A pod that should exist but has no container yet, shown with the reason it is held back, and each
    of its containers waiting with that reason (kube-state-metrics' waiting_reason, describe's State):
    with init containers, the first one waits for it and the others, as the app containers, in
    PodInitializing, as the kubelet reports them."""
    w = next((w for w in waiting if (w.namespace, w.pod) == desired.key), None)
    if w is None:
        return None
    spec = desired.template.spec
    mine = {x.container: x for x in waiting if (x.namespace, x.pod) == desired.key}

    def own(c: model.Container) -> str:
        return mine[c.name].reason if c.name in mine else "PodInitializing"

    first = spec.init_containers[:1] or spec.containers  # what the pod's wait is about
    inits = tuple(
        _not_created(c, _wait_reason(mine, c.name, "ContainerCreating") if c in first else own(c))
        for c in spec.init_containers
    )
    apps = tuple(
        _not_created(c, _wait_reason(mine, c.name, "ContainerCreating") if c in first else own(c))
        for c in spec.containers
    )
    return PodStatus(
        namespace=desired.namespace,
        name=desired.name,
        owner=desired.owner,
        revision=desired.spec_hash,
        up_to_date=True,
        phase="Pending",
        status=w.reason,
        ready=False,
        restart_count=0,
        started_at=None,
        containers=apps,
        init_containers=inits,
    )


def daemonset_status(
    d: plan.DaemonSetPlan,
    waiting: tuple[plan.Waiting, ...],
    now: float,
    readiness: Mapping[str, plan.Readiness] | None = None,
    terminating: frozenset[tuple[str, str]] = frozenset(),
) -> DaemonSetStatus:
    """DaemonSetStatus on one node, counted the way the DaemonSet controller counts it: numberReady from
    the pods' readiness, numberAvailable from ready for at least minReadySeconds (never a pod that is
    terminating)."""
    inits = len(d.desired.template.spec.init_containers)
    spec = d.desired.template.spec
    pods = [
        pod_status(p, d.desired.spec_hash, waiting, readiness, d.desired.name, inits, terminating, spec)
        for p in d.pods
    ]
    if not any(p.name == d.desired.name for p in pods) and d.decision.should_run:
        pending = pending_pod(d.desired, waiting)
        if pending is not None:
            pods.append(pending)
    scheduled = [p for p in pods if p.created]
    should_run = d.decision.should_run
    ready = [p for p in scheduled if p.ready and not p.terminating]
    available = [p for p in ready if p.available(d.min_ready_seconds, now)]
    pods = [dataclasses.replace(p, is_available=True) if p in available else p for p in pods]
    selector = ",".join(f"{k}={v}" for k, v in sorted(d.desired.template.spec.node_selector.items()))
    return DaemonSetStatus(
        namespace=d.namespace,
        name=d.name,
        node_selector=selector or "<none>",
        desired_number_scheduled=1 if should_run else 0,
        current_number_scheduled=1 if should_run and scheduled else 0,
        number_ready=1 if should_run and ready else 0,
        updated_number_scheduled=1 if should_run and any(p.up_to_date for p in scheduled) else 0,
        number_available=1 if should_run and available else 0,
        number_misscheduled=1 if not should_run and scheduled else 0,
        pods=tuple(pods),
    )


def static_pod_status(
    s: plan.StaticPodPlan,
    waiting: tuple[plan.Waiting, ...],
    readiness: Mapping[str, plan.Readiness] | None = None,
    terminating: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[PodStatus, ...]:
    inits = len(s.desired.template.spec.init_containers)
    spec = s.desired.template.spec
    pods = [
        pod_status(p, s.desired.spec_hash, waiting, readiness, "", inits, terminating, spec) for p in s.pods
    ]
    if not pods:
        pending = pending_pod(s.desired, waiting)
        if pending is not None:
            pods.append(pending)
    return tuple(pods)


def orphan_statuses(p: plan.Plan) -> list[PodStatus]:
    """Ownerless pods (orphaned, not adopted yet): their revision is no DaemonSet's, so never up to date."""
    return [pod_status(o, "", p.waiting, p.readiness, terminating=p.terminating) for o in p.orphans]


def withdrawn_statuses(p: plan.Plan) -> list[PodStatus]:
    """Pods being stopped whose DaemonSet or static pod is in no source any more (just withdrawn)."""
    return [
        pod_status(o, "", p.waiting, p.readiness, terminating=p.terminating)
        for o in p.unowned
        if o.key in p.terminating
    ]


def age(seconds: float | None) -> str:
    """kubectl's human duration (`45s`, `5m3s`, `3h`, `2d`)."""
    if seconds is None:
        return "<unknown>"
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"
