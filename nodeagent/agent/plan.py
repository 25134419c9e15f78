"""The planner: desired state + observed containers + the node + a clock -> actions, each with a reason.

Pure (no I/O) and level-triggered: it looks at everything each time, so a lost or doubled event costs
latency, never correctness. Modelled on the kubelet's `computePodActions`: the plan is a plain value,
printed by `nodeagent plan` and applied by `execute`.

Containers are grouped into pods by their labels (namespace, pod name); each container name keeps only
its newest attempt in view, older attempts are garbage. Restart backoff needs no memory either: the
attempt and backoff step are labels on the container, its start and finish times come from Docker.

Orphaning and adoption (`kubectl delete --cascade=orphan`, then a new DaemonSet adopting the pods): a
DaemonSet annotated `nodeagent.io/orphan-on-delete: "true"`, or named to `nodeagent orphan NS/NAME`,
leaves its pods running, ownerless, when it is withdrawn. Docker labels are immutable, so the policy and
each pod's effective owner (orphaned, or the DaemonSet that adopted it) are an `Ownership` value the
agent keeps in stateDir/ownership.json; the pod's template labels are a label on its containers
(LABEL_POD_LABELS), so a later DaemonSet's selector is matched from Docker alone. Adoption restarts
nothing; an adopted pod of another revision is outdated, and the adopter's updateStrategy decides (as
the DaemonSet controller does): OnDelete keeps it until it is deleted, RollingUpdate replaces it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nodeagent import runtime as rt
from nodeagent.agent import identity, labels, podconfig
from nodeagent.k8s import model, node, scheduling

# labels of ours the planner reads (the scheme, with encode and decode, is nodeagent.agent.labels)
LABEL_BACKOFF_STEP = labels.BACKOFF_STEP
LABEL_GRACE = labels.GRACE
DEFAULT_GRACE = 30
LABEL_SELECTOR = labels.SELECTOR
LABEL_POD_LABELS = labels.POD_LABELS
LABEL_PRE_STOP = labels.PRE_STOP
# on a DaemonSet: when it is withdrawn, leave its pods running, ownerless (kubectl delete --cascade=orphan)
ANNOTATION_ORPHAN = "nodeagent.io/orphan-on-delete"
ORPHANED = ""  # the effective owner of an orphaned pod
POLICY_ANNOTATION = "annotation"  # why a DaemonSet orphans its pods: its annotation ...
POLICY_COMMAND = "command"  # ... or `nodeagent orphan`

# verbs, in the order `execute` applies them
DELETE = "delete"  # stop and remove every container of a pod, then its directories
REMOVE = "remove"  # remove one dead container (an old attempt) that no pod needs
START = "start"  # start a container that was created but never started (a create cut short)
INIT = "init"  # create and start init container `container` (first attempt, or retry after a failure)
CREATE = "create"  # create and start one container (first attempt, or recreate after `docker rm`)
RESTART = "restart"  # create and start the next attempt of a container that exited
VERB_ORDER = {DELETE: 0, REMOVE: 1, START: 2, INIT: 3, CREATE: 4, RESTART: 5}


@dataclass(frozen=True)
class Backoff:
    """The kubelet's crash-loop backoff: 10 s doubling to 5 min, reset after 10 min of running."""

    initial: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0

    def delay(self, step: int) -> float:
        return float(min(self.initial * (2 ** max(step, 0)), self.maximum))


@dataclass(frozen=True)
class DesiredPod:
    """A pod that should exist on this node, fully named and hashed."""

    owner: str  # DaemonSet/ns/name or Pod/ns/name
    namespace: str
    name: str
    template: model.PodTemplateSpec
    spec_hash: str
    source: str = ""
    selector_hash: str = ""  # DaemonSet pods only

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ObservedPod:
    """The containers Docker has for one pod (newest attempt of each container name).

    `containers` are the app containers only; init containers (their exit records are kept while the
    pod lives) and the sandbox holding the pod's namespaces are apart, so nothing restarts them as apps.
    """

    namespace: str
    name: str
    owner: str
    spec_hash: str
    containers: tuple[rt.ObservedContainer, ...]
    stale: tuple[rt.ObservedContainer, ...] = ()  # older attempts still lying around
    init_containers: tuple[rt.ObservedContainer, ...] = ()  # newest attempt of each, by init index
    sandbox: rt.ObservedContainer | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def container(self, name: str) -> rt.ObservedContainer | None:
        """The newest attempt of the container of that name (app, init, or the sandbox's "POD")."""
        extra: tuple[rt.ObservedContainer, ...] = (self.sandbox,) if self.sandbox is not None else ()
        for c in (*self.containers, *self.init_containers, *extra):
            if c.labels.get(identity.LABEL_CONTAINER_NAME) == name:
                return c
        return None

    @property
    def all_ids(self) -> tuple[str, ...]:
        """Every container of the pod, in the order a delete stops them: apps, init, stale, sandbox last."""
        ids = [c.id for c in (*self.containers, *self.init_containers, *self.stale)]
        if self.sandbox is not None:
            ids.append(self.sandbox.id)
        return tuple(ids)

    @property
    def restart_count(self) -> int:
        return sum(attempt_of(c) for c in self.containers)

    @property
    def running(self) -> bool:
        return bool(self.containers) and all(c.running for c in self.containers)

    @property
    def started_at(self) -> float | None:
        times = [c.started_at or c.created_at for c in self.containers]
        return min(times) if times else None


@dataclass(frozen=True)
class Action:
    verb: str
    namespace: str
    pod: str
    reason: str
    owner: str = ""
    container: str = ""  # empty for pod-level actions
    attempt: int = 0
    backoff_step: int = 0
    desired: DesiredPod | None = None  # what to create (create, start, restart)
    container_ids: tuple[str, ...] = ()  # what to stop/remove/start
    grace_seconds: int = 30
    pre_stop: tuple[tuple[str, str], ...] = ()  # (container id, LABEL_PRE_STOP) of those stopped
    sandbox_id: str = ""  # delete: the pod's sandbox, stopped after its other containers

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.verb, "pod": self.pod, "reason": self.reason}
        if self.container:
            out["container"] = self.container
        return out


@dataclass(frozen=True)
class Waiting:
    """Something the plan deliberately does not do yet (backoff, tolerationSeconds), and until when."""

    namespace: str
    pod: str
    container: str
    reason: str  # CrashLoopBackOff, ImagePullBackOff, ...
    until: float
    busy: bool = False  # the owner's worker is at it (Terminating, ContainerCreating): no deadline


@dataclass(frozen=True)
class Failure:
    """A pod that could not be created recently (image pull, hostPath check, ...), kept in memory."""

    count: int
    last: float
    reason: str
    message: str


@dataclass(frozen=True)
class Health:
    """What the probes say about one running container (from `probes.Verdict`, as plain values).

    A container without an entry is ready while it runs, unless its spec has a readiness or startup
    probe (then it is not ready until a prober says so), as the kubelet starts them.
    """

    ready: bool = True
    restart: bool = False  # a liveness or startup probe failed
    message: str = ""
    grace_seconds: int | None = None  # the failed probe's terminationGracePeriodSeconds
    ready_since: float | None = None


@dataclass(frozen=True)
class Readiness:
    """One container's readiness in this plan, and since when (minReadySeconds counts from it)."""

    ready: bool
    since: float | None = None


@dataclass(frozen=True)
class Ownership:
    """Pod ownership beyond the immutable owner label: orphaning and adoption (persisted by the agent).

    `policy`: DaemonSet owners whose pods are orphaned when it is withdrawn (value: POLICY_ANNOTATION or
    POLICY_COMMAND). `owners`: a pod's effective owner when it is not its label's: ORPHANED, or the
    DaemonSet that adopted it.
    """

    policy: Mapping[str, str] = field(default_factory=dict)
    owners: Mapping[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class DaemonSetInput:
    obj: model.DaemonSet
    source: str = ""


@dataclass(frozen=True)
class StaticPodInput:
    obj: model.Pod
    source: str = ""


@dataclass(frozen=True)
class Inputs:
    node: node.Node
    daemonsets: tuple[DaemonSetInput, ...]
    static_pods: tuple[StaticPodInput | model.Pod, ...]
    observed: tuple[rt.ObservedContainer, ...]
    now: float
    all_sources_seen: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    # when this node first showed a NoExecute taint that a DaemonSet tolerates only for a while
    noexecute_since: Mapping[tuple[str, str], float] = field(default_factory=dict)
    failures: Mapping[tuple[str, str], Failure] = field(default_factory=dict)
    # DaemonSets whose newest version was refused (for example a changed selector): keep their pods
    protected_owners: frozenset[str] = frozenset()
    # (kind, name) of objects whose manifest currently fails to load: their pods are never removed
    protected_names: frozenset[tuple[str, str]] = frozenset()
    # a manifest failed so badly that we cannot tell what it defines: hold every removal
    hold_removals: bool = False
    # probe verdicts by container id (the running agent's prober, or stateDir/probes.json)
    health: Mapping[str, Health] = field(default_factory=dict)
    ownership: Ownership = field(default_factory=Ownership)
    # owners whose work is in flight on their worker, with what their pods show meanwhile
    # (Terminating, ContainerCreating, ...): their actions wait, reported as `waiting`
    busy: Mapping[str, str] = field(default_factory=dict)
    terminating: frozenset[tuple[str, str]] = frozenset()  # pods a busy worker is stopping


@dataclass(frozen=True)
class DaemonSetPlan:
    namespace: str
    name: str
    source: str
    decision: scheduling.Decision
    desired: DesiredPod
    pods: tuple[ObservedPod, ...]
    actions: tuple[Action, ...]
    min_ready_seconds: int = 0

    @property
    def running(self) -> bool:
        return any(p.running for p in self.pods)


@dataclass(frozen=True)
class StaticPodPlan:
    namespace: str
    name: str
    source: str
    desired: DesiredPod
    pods: tuple[ObservedPod, ...]
    actions: tuple[Action, ...]

    @property
    def running(self) -> bool:
        return any(p.running for p in self.pods)


@dataclass(frozen=True)
class Plan:
    daemonsets: tuple[DaemonSetPlan, ...]
    static_pods: tuple[StaticPodPlan, ...]
    other_actions: tuple[Action, ...]  # pods nothing desires any more, stale attempts
    waiting: tuple[Waiting, ...]
    wake_at: float | None  # the earliest time a waiting item becomes due
    readiness: Mapping[str, Readiness] = field(default_factory=dict)  # by container id
    ownership: Ownership = field(default_factory=Ownership)  # after this plan: what the agent saves
    orphans: tuple[ObservedPod, ...] = ()  # ownerless pods kept running
    unowned: tuple[ObservedPod, ...] = ()  # pods whose owner is in no source (withdrawn, being removed)
    terminating: frozenset[tuple[str, str]] = frozenset()  # pods being stopped (Inputs.terminating)

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every action, in the order `execute` applies them."""
        acts = [a for d in self.daemonsets for a in d.actions]
        acts += [a for s in self.static_pods for a in s.actions]
        acts += self.other_actions
        return tuple(sorted(acts, key=lambda a: VERB_ORDER[a.verb]))

    def by_owner(self) -> dict[str, tuple[Action, ...]]:
        """The actions grouped per owner (one unit of work each), each group in the order it is applied:
        a rolling update's delete of the old pod comes before the create of the new one."""
        groups: dict[str, list[Action]] = defaultdict(list)
        for d in self.daemonsets:
            groups[d.desired.owner] += d.actions
        for s in self.static_pods:
            groups[s.desired.owner] += s.actions
        for a in self.other_actions:
            groups[work_owner(a)].append(a)
        return {
            o: tuple(sorted(acts, key=lambda a: VERB_ORDER[a.verb])) for o, acts in groups.items() if acts
        }


def work_owner(a: Action) -> str:
    """The worker an action outside any current DaemonSet or static pod runs on: its pod's owner label
    (a withdrawn DaemonSet), or the pod itself when it has none."""
    return a.owner or identity.owner_pod(a.namespace, a.pod)


# --- helpers ----------------------------------------------------------------------------------


def _int_label(c: rt.ObservedContainer, key: str) -> int:
    """A numeric label of ours; a missing or mangled one counts as 0 (it only shapes timing and order)."""
    return labels.integer(c.labels, key) or 0


def attempt_of(c: rt.ObservedContainer) -> int:
    return _int_label(c, identity.LABEL_ATTEMPT)


def _backoff_step(c: rt.ObservedContainer) -> int:
    return _int_label(c, LABEL_BACKOFF_STEP)


def _backoff_until(seen: rt.ObservedContainer, step: int, backoff: Backoff) -> float:
    """When an exited container may run again: when it finished plus the crash-loop delay of `step`."""
    finished = seen.finished_at if seen.finished_at is not None else seen.created_at
    return finished + (backoff.delay(step - 1) if step > 0 else 0.0)


def group_pods(observed: Iterable[rt.ObservedContainer]) -> dict[tuple[str, str], ObservedPod]:
    """Group managed containers into pods; keep the newest attempt of each container name."""
    by_pod: dict[tuple[str, str], list[rt.ObservedContainer]] = defaultdict(list)
    for c in observed:
        ns = c.labels.get(identity.LABEL_POD_NAMESPACE, "")
        name = c.labels.get(identity.LABEL_POD_NAME, "")
        if ns and name:
            by_pod[(ns, name)].append(c)
    pods: dict[tuple[str, str], ObservedPod] = {}
    for (ns, name), cs in by_pod.items():
        newest: dict[str, rt.ObservedContainer] = {}
        stale: list[rt.ObservedContainer] = []
        sandbox: rt.ObservedContainer | None = None
        for c in sorted(cs, key=lambda c: (attempt_of(c), c.created_at)):
            if c.labels.get(identity.LABEL_ROLE) == identity.ROLE_SANDBOX:
                if sandbox is not None:
                    stale.append(sandbox)
                sandbox = c
                continue
            cname = c.labels.get(identity.LABEL_CONTAINER_NAME, "")
            if cname in newest:
                stale.append(newest[cname])
            newest[cname] = c
        first = cs[0]
        apps = [c for c in newest.values() if is_app(c)]
        inits = [c for c in newest.values() if c.labels.get(identity.LABEL_ROLE) == identity.ROLE_INIT]
        pods[(ns, name)] = ObservedPod(
            namespace=ns,
            name=name,
            owner=first.labels.get(identity.LABEL_OWNER, ""),
            spec_hash=first.labels.get(identity.LABEL_SPEC_HASH, ""),
            containers=tuple(sorted(apps, key=lambda c: c.name)),
            stale=tuple(stale),
            init_containers=tuple(sorted(inits, key=_init_index)),
            sandbox=sandbox,
        )
    return pods


def gc_stale(p: ObservedPod) -> list[rt.ObservedContainer]:
    """The old attempts to remove: the kubelet's container GC keeps one dead container per container
    (MaxPerPodContainer=1) so `logs --previous` can read it; a dead current attempt is that one."""
    current = {_cname(c): c for c in (*p.containers, *p.init_containers)}
    keep: dict[str, str] = {}  # container name -> id of the newest dead old attempt
    for c in p.stale:  # oldest first (group_pods sorts by attempt): the last one wins
        now = current.get(_cname(c))
        app = c.labels.get(identity.LABEL_ROLE) != identity.ROLE_SANDBOX
        if app and not c.running and now is not None and now.state not in ("exited", "dead"):
            keep[_cname(c)] = c.id
    return [c for c in p.stale if keep.get(_cname(c)) != c.id]


def _cname(c: rt.ObservedContainer) -> str:
    return c.labels.get(identity.LABEL_CONTAINER_NAME, "")


def _init_index(c: rt.ObservedContainer) -> int:
    return _int_label(c, identity.LABEL_INIT_INDEX)


def selector_hash(selector: model.LabelSelector) -> str:
    """Equal exactly when the selectors are equal (as `manifests.selector_changed` compares them)."""
    blob = json.dumps(
        {
            "matchLabels": sorted(selector.match_labels.items()),
            "matchExpressions": [[r.key, r.operator, list(r.values)] for r in selector.match_expressions],
        },
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
        c.labels.get(identity.LABEL_OWNER) == owner and c.labels.get(LABEL_SELECTOR, want) != want
        for c in observed
    )


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


def _surge(ds: model.DaemonSet) -> bool:
    """True when a RollingUpdate may start the new pod before the old one stops (maxSurge > 0).

    On one node `desiredNumberScheduled` is 1, and Kubernetes rounds percentages up, so any non-zero
    maxSurge means one surge pod.
    """
    strategy = ds.spec.update_strategy
    if strategy.type != "RollingUpdate" or strategy.rolling_update is None:
        return False
    surge = strategy.rolling_update.max_surge
    if isinstance(surge, str):
        return surge.rstrip("%").strip() not in ("", "0")
    return surge > 0


def _recorded_grace(pod: ObservedPod, fallback: int | None) -> int:
    """The grace period the pod was created with (as Kubernetes uses the deleted pod's own spec).

    Containers made before the label existed fall back to the current template's, else the default.
    """
    found = [g for c in pod.containers if (g := labels.integer(c.labels, LABEL_GRACE)) is not None]
    if found:
        return max(found)
    return DEFAULT_GRACE if fallback is None else fallback


def pre_stop_hooks(containers: Iterable[rt.ObservedContainer]) -> tuple[tuple[str, str], ...]:
    """The preStop hooks (recorded on the containers) that run before these running containers stop."""
    return tuple(
        (c.id, c.labels[LABEL_PRE_STOP]) for c in containers if c.running and c.labels.get(LABEL_PRE_STOP)
    )


def delete_action(pod: ObservedPod, reason: str, fallback_grace: int | None = None) -> Action:
    """Delete the whole pod: its preStop hooks, then every container with the grace period it was
    created with (the planner's, and `nodeagent delete pod`'s)."""
    ids = pod.all_ids
    grace = _recorded_grace(pod, fallback_grace)
    return Action(
        verb=DELETE,
        namespace=pod.namespace,
        pod=pod.name,
        owner=pod.owner,
        reason=reason,
        container_ids=ids,
        grace_seconds=grace,
        pre_stop=pre_stop_hooks(pod.containers),
        sandbox_id=pod.sandbox.id if pod.sandbox is not None else "",
    )


def _should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def _container_actions(
    desired: DesiredPod,
    pod: ObservedPod | None,
    inputs: Inputs,
    waiting: list[Waiting],
) -> list[Action]:
    """Bring the containers of one pod (of the right revision) to what the spec says."""
    spec = desired.template.spec
    actions: list[Action] = []
    failure = inputs.failures.get(desired.key)
    if failure is not None:
        until = failure.last + inputs.backoff.delay(failure.count - 1)
        if inputs.now < until:
            # between pull attempts the kubelet shows ImagePullBackOff; other reasons stay as they are
            reason = "ImagePullBackOff" if failure.reason == "ErrImagePull" else failure.reason
            waiting.append(Waiting(desired.namespace, desired.name, "", reason, until))
            return actions
    if pod is not None and pod.sandbox is not None and not pod.sandbox.running:
        # the pod's network namespace died with its sandbox: the kubelet kills and recreates the pod
        why = f"pod sandbox {pod.sandbox.state}; the pod will be recreated"
        actions.append(delete_action(pod, why, spec.termination_grace_period_seconds))
        pod = None
    elif (
        pod is not None
        and podconfig.needs_sandbox(spec)
        and pod.sandbox is None
        and (pod.containers or pod.init_containers)
    ):
        actions.append(delete_action(pod, "pod sandbox is gone; the pod will be recreated"))
        pod = None
    if spec.init_containers and (pod is None or not pod.containers):
        init_actions, done = _init_actions(desired, pod, inputs, waiting)
        if not done:
            return actions + init_actions
    elif pod is not None and any(c.restart_policy == "Always" for c in spec.init_containers):
        actions += _sidecar_restarts(desired, pod, inputs, waiting)
    for c in spec.containers:
        seen = pod.container(c.name) if pod is not None else None
        make = _for_container(desired, c.name)
        if seen is None:
            why = "pod has no container " + repr(c.name) if pod is not None else _create_reason(desired)
            actions.append(make(verb=CREATE, reason=why))
            continue
        if seen.state == "created":
            actions.append(
                make(
                    verb=START,
                    reason="container was created but never started",
                    attempt=attempt_of(seen),
                    backoff_step=_backoff_step(seen),
                    container_ids=(seen.id,),
                )
            )
            continue
        if seen.running:
            health = inputs.health.get(seen.id)
            if health is not None and health.restart and spec.restart_policy != "Never":
                actions.append(_probe_restart(seen, health, spec, inputs, make))
            continue
        # exited or dead
        if not _should_restart(spec.restart_policy, seen.exit_code):
            continue
        ran = 0.0
        if seen.started_at is not None and seen.finished_at is not None:
            ran = seen.finished_at - seen.started_at
        step = 0 if ran >= inputs.backoff.reset_after else _backoff_step(seen)
        until = _backoff_until(seen, step, inputs.backoff)
        if inputs.now < until:
            waiting.append(Waiting(desired.namespace, desired.name, c.name, "CrashLoopBackOff", until))
            continue
        actions.append(
            make(
                verb=RESTART,
                reason=f"container {c.name!r} exited with code {seen.exit_code}; restartPolicy "
                f"{spec.restart_policy}",
                attempt=attempt_of(seen) + 1,
                backoff_step=0 if ran >= inputs.backoff.reset_after else step + 1,
                container_ids=(seen.id,),
            )
        )
    return actions


def _init_actions(
    desired: DesiredPod, pod: ObservedPod | None, inputs: Inputs, waiting: list[Waiting]
) -> tuple[list[Action], bool]:
    """Init containers before any app container: in order, each to completion (the kubelet's
    computeInitContainerActions). Returns the actions for the next step and whether all have succeeded.

    A failed init container is retried with the crash-loop backoff (restartPolicy Never: the pod fails
    and stays so). Once the app containers exist, init containers never run again in this pod.
    """
    spec = desired.template.spec
    for index, c in enumerate(spec.init_containers):
        seen = pod.container(c.name) if pod is not None else None
        make = _for_container(desired, c.name)
        if seen is None:
            why = f"init container {index + 1}/{len(spec.init_containers)} {c.name!r} has not run yet"
            return [make(verb=INIT, reason=why)], False
        if seen.state == "created":
            return [
                make(
                    verb=START,
                    reason="init container was created but never started",
                    attempt=attempt_of(seen),
                    backoff_step=_backoff_step(seen),
                    container_ids=(seen.id,),
                )
            ], False
        if seen.running:
            if c.restart_policy == "Always":
                continue  # a sidecar: the next one starts once it runs, and it keeps running
            return [], False
        if seen.exit_code == 0 and c.restart_policy != "Always":
            continue
        if spec.restart_policy == "Never" and c.restart_policy != "Always":
            return [], False  # the pod has failed (Init:Error); nothing runs again
        step = _backoff_step(seen)
        until = _backoff_until(seen, step, inputs.backoff)
        if inputs.now < until:
            waiting.append(Waiting(desired.namespace, desired.name, c.name, "CrashLoopBackOff", until))
            return [], False
        why = f"init container {c.name!r} exited with code {seen.exit_code}; retried"
        return [
            make(
                verb=INIT,
                reason=why,
                attempt=attempt_of(seen) + 1,
                backoff_step=step + 1,
                container_ids=(seen.id,),
            )
        ], False
    return [], True


def _sidecar_restarts(
    desired: DesiredPod, pod: ObservedPod, inputs: Inputs, waiting: list[Waiting]
) -> list[Action]:
    """Sidecars (init containers with restartPolicy Always) of a pod whose apps run: an exited one is
    restarted with the crash-loop backoff, whatever the pod's restartPolicy, as the kubelet does."""
    spec = desired.template.spec
    actions: list[Action] = []
    for c in spec.init_containers:
        seen = pod.container(c.name)
        if c.restart_policy != "Always" or seen is None or seen.running or seen.state == "created":
            continue
        step = _backoff_step(seen)
        until = _backoff_until(seen, step, inputs.backoff)
        if inputs.now < until:
            waiting.append(Waiting(desired.namespace, desired.name, c.name, "CrashLoopBackOff", until))
            continue
        actions.append(
            _for_container(desired, c.name)(
                verb=INIT,
                reason=f"sidecar {c.name!r} exited with code {seen.exit_code}; restartPolicy Always",
                attempt=attempt_of(seen) + 1,
                backoff_step=step + 1,
                container_ids=(seen.id,),
            )
        )
    return actions


def _probe_restart(
    seen: rt.ObservedContainer,
    health: Health,
    spec: model.PodSpec,
    inputs: Inputs,
    make: functools.partial[Action],
) -> Action:
    """A running container whose liveness (or startup) probe failed: stop it and start the next attempt.

    Stopped with the probe's terminationGracePeriodSeconds, else the pod's (as the kubelet). The restart is
    immediate (failureThreshold x periodSeconds already paced it); the backoff step grows as for a crash.
    """
    ran = inputs.now - (seen.started_at or seen.created_at)
    step = 0 if ran >= inputs.backoff.reset_after else _backoff_step(seen) + 1
    grace = (
        health.grace_seconds if health.grace_seconds is not None else spec.termination_grace_period_seconds
    )
    return make(
        verb=RESTART,
        grace_seconds=grace,
        reason=f"{health.message or 'Liveness probe failed'}; container will be restarted",
        attempt=attempt_of(seen) + 1,
        backoff_step=step,
        container_ids=(seen.id,),
        pre_stop=pre_stop_hooks((seen,)),
    )


def _for_container(desired: DesiredPod, container: str) -> functools.partial[Action]:
    """An Action maker with the fields every action on one container of `desired` shares."""
    return functools.partial(
        Action,
        namespace=desired.namespace,
        pod=desired.name,
        owner=desired.owner,
        container=container,
        desired=desired,
        grace_seconds=desired.template.spec.termination_grace_period_seconds,
    )


def _create_reason(desired: DesiredPod) -> str:
    kind = desired.owner.split("/", 1)[0]
    if kind == "Pod":
        return "static pod is not running on this node"
    return "DaemonSet should run on this node and has no pod here"


# --- the planner ------------------------------------------------------------------------------


def plan(inputs: Inputs) -> Plan:
    """Compute every action that brings observed containers to the desired state, with reasons."""
    pods = group_pods(inputs.observed)
    claimed: set[tuple[str, str]] = set()
    waiting: list[Waiting] = []
    wakes: list[float] = []
    ds_plans: list[DaemonSetPlan] = []
    ownership = _ownership(inputs, pods)

    def owner_of(p: ObservedPod) -> str:
        return ownership.owners.get(p.key, p.owner)

    for entry in inputs.daemonsets:
        ds = entry.obj
        desired = desired_daemon_pod(ds, entry.source)
        owned = [p for p in pods.values() if owner_of(p) == desired.owner]
        claimed.update(p.key for p in owned)
        decision = scheduling.decide(inputs.node, ds.spec.template.spec)
        actions = _plan_daemonset(ds, desired, decision, owned, inputs, waiting, wakes)
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
        pod_obj, source = (item.obj, item.source) if isinstance(item, StaticPodInput) else (item, "")
        desired = desired_static_pod(pod_obj, inputs.node.name, source)
        owned = [p for p in pods.values() if p.owner == desired.owner]
        claimed.update(p.key for p in owned)
        actions = []
        current = [p for p in owned if p.spec_hash == desired.spec_hash and p.name == desired.name]
        for p in owned:
            if p not in current:
                actions.append(delete_action(p, "static pod manifest changed", _grace(p, desired)))
        actions += _container_actions(desired, current[0] if current else None, inputs, waiting)
        sp_plans.append(
            StaticPodPlan(
                namespace=pod_obj.metadata.namespace,
                name=desired.name,
                source=source,
                desired=desired,
                pods=tuple(owned),
                actions=tuple(actions),
            )
        )

    other: list[Action] = []
    orphans: list[ObservedPod] = []
    for key, p in sorted(pods.items()):
        if key in claimed:
            continue
        owner = owner_of(p)
        if owner == ORPHANED:
            # ownerless, as after `kubectl delete --cascade=orphan`: kept running, restarted in place
            orphans.append(p)
            other.extend(_keep_outdated(p, inputs, waiting))
            continue
        if not _removable(owner, inputs):
            continue
        kind = owner.split("/", 1)[0]
        what = "static pod manifest" if kind == "Pod" else "DaemonSet"
        other.append(delete_action(p, f"{what} {owner.split('/', 1)[-1]} is no longer in any source"))
    # old attempts of containers that live on in a newer attempt, but the last dead one (for logs --previous)
    for p in pods.values():
        for c in gc_stale(p):
            other.append(
                Action(
                    verb=REMOVE,
                    namespace=p.namespace,
                    pod=p.name,
                    owner=p.owner,
                    container=c.labels.get(identity.LABEL_CONTAINER_NAME, ""),
                    reason="superseded by a newer attempt",
                    container_ids=(c.id,),
                )
            )

    wake = min([w.until for w in waiting] + wakes, default=None)
    if inputs.busy:
        ds_plans, sp_plans, other = _hold_busy(inputs, ds_plans, sp_plans, other, waiting)
    return Plan(
        daemonsets=tuple(ds_plans),
        static_pods=tuple(sp_plans),
        other_actions=tuple(other),
        waiting=tuple(waiting),
        wake_at=wake,
        readiness=_readiness(pods, inputs, ds_plans, sp_plans),
        ownership=ownership,
        orphans=tuple(orphans),
        unowned=tuple(p for key, p in sorted(pods.items()) if key not in claimed and owner_of(p) != ORPHANED),
        terminating=frozenset(k for k in inputs.terminating if k in pods),
    )


def _hold_busy(
    inputs: Inputs,
    ds_plans: list[DaemonSetPlan],
    sp_plans: list[StaticPodPlan],
    other: list[Action],
    waiting: list[Waiting],
) -> tuple[list[DaemonSetPlan], list[StaticPodPlan], list[Action]]:
    """Owners with work in flight get no actions this pass: their pods are reported `waiting` with the
    busy reason (finished work wakes the loop, and the next pass plans them afresh)."""

    def hold(actions: Iterable[Action], owner: str) -> None:
        for key in dict.fromkeys((a.namespace, a.pod) for a in actions):
            reason = "Terminating" if key in inputs.terminating else inputs.busy[owner]
            w = Waiting(key[0], key[1], "", reason, inputs.now, busy=True)
            if w not in waiting:
                waiting.append(w)

    out_ds = []
    for d in ds_plans:
        if d.actions and d.desired.owner in inputs.busy:
            hold(d.actions, d.desired.owner)
            d = dataclasses.replace(d, actions=())
        out_ds.append(d)
    out_sp = []
    for s in sp_plans:
        if s.actions and s.desired.owner in inputs.busy:
            hold(s.actions, s.desired.owner)
            s = dataclasses.replace(s, actions=())
        out_sp.append(s)
    kept = []
    for a in other:
        if work_owner(a) in inputs.busy:
            hold((a,), work_owner(a))
        else:
            kept.append(a)
    return out_ds, out_sp, kept


# --- readiness ----------------------------------------------------------------------------------


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


def _readiness(
    pods: Mapping[tuple[str, str], ObservedPod],
    inputs: Inputs,
    ds_plans: Iterable[DaemonSetPlan],
    sp_plans: Iterable[StaticPodPlan],
) -> dict[str, Readiness]:
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


# --- orphaning and adoption -----------------------------------------------------------------------


def pod_template_labels(p: ObservedPod) -> dict[str, str] | None:
    """The template labels recorded on the pod's containers (None for pods made before the label)."""
    for c in p.containers:
        if LABEL_POD_LABELS in c.labels:
            return labels.pod_labels(c.labels)
    return None


def wants_orphan(ds: model.DaemonSet) -> bool:
    return ds.metadata.annotations.get(ANNOTATION_ORPHAN, "").strip().lower() in ("true", "1", "yes")


def _removable(owner: str, inputs: Inputs) -> bool:
    """May pods of this (withdrawn) owner be deleted or orphaned now? (DESIGN §2's gates)"""
    if not inputs.all_sources_seen or inputs.hold_removals:
        return False  # never remove before every source has spoken once since start
    if owner in inputs.protected_owners:
        return False
    parsed = identity.parse_owner(owner)
    return not (parsed is not None and (parsed[0], parsed[2]) in inputs.protected_names)


def _ownership(inputs: Inputs, pods: Mapping[tuple[str, str], ObservedPod]) -> Ownership:
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
        if owner in policy and _removable(owner, inputs):
            owners[key] = ORPHANED
    for owner, ds in present.items():
        for key, p in sorted(pods.items()):
            if owners.get(key) != ORPHANED or p.namespace != ds.metadata.namespace:
                continue
            recorded = pod_template_labels(p)
            if recorded is not None and scheduling.label_selector_matches(ds.spec.selector, recorded):
                owners[key] = owner
    alive = {p.owner for p in pods.values()}
    policy = {o: why for o, why in policy.items() if o in present or o in alive}
    return Ownership(policy=policy, owners=owners)


def _grace(p: ObservedPod, desired: DesiredPod) -> int:
    return desired.template.spec.termination_grace_period_seconds


def _plan_daemonset(
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
    if outdated and strategy == "OnDelete":
        # OnDelete: an outdated pod is replaced only once it is deleted; keep it running meanwhile
        for p in outdated:
            actions += _keep_outdated(p, inputs, waiting)
        return actions

    if outdated and not decision.should_run:
        # untolerated NoSchedule: running pods stay, but no new revision can start here
        for p in outdated:
            actions += _keep_outdated(p, inputs, waiting)
        return actions

    if outdated and _surge(ds):
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
                actions += _keep_outdated(p, inputs, waiting)
        actions += _container_actions(desired, current, inputs, waiting)
        return actions

    for p in outdated:
        actions.append(
            delete_action(p, f"pod template changed: revision {p.spec_hash} -> {desired.spec_hash}", grace)
        )
    actions += _container_actions(desired, current, inputs, waiting)
    return actions


def _keep_outdated(p: ObservedPod, inputs: Inputs, waiting: list[Waiting]) -> list[Action]:
    """An outdated pod that must keep running (OnDelete, or NoSchedule blocking its successor).

    Its old template is gone, so an exited container is restarted in place (`docker start`) with the
    configuration it was created with; the restart count does not grow for such restarts.
    """
    actions: list[Action] = []
    for c in p.containers:
        if c.running:
            continue
        cname = c.labels.get(identity.LABEL_CONTAINER_NAME, "")
        until = (c.finished_at or c.created_at) + inputs.backoff.delay(_backoff_step(c))
        if c.state != "created" and inputs.now < until:
            waiting.append(Waiting(p.namespace, p.name, cname, "CrashLoopBackOff", until))
            continue
        actions.append(
            Action(
                verb=START,
                namespace=p.namespace,
                pod=p.name,
                owner=p.owner,
                container=cname,
                reason="outdated pod kept (OnDelete or NoSchedule): restarted in place",
                attempt=attempt_of(c),
                container_ids=(c.id,),
            )
        )
    return actions
