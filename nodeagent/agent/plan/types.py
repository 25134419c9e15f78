"""The planner's values: what goes in (`Inputs`), what comes out (`Plan`, `Action`, `Waiting`), and the pods
it reasons about (`DesiredPod`, `ObservedPod`). Plain frozen values, so a plan can be printed, compared in
tests and applied by `execute` without the planner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from nodeagent import runtime as rt
from nodeagent.agent import desired as desired_mod
from nodeagent.agent import identity, labels
from nodeagent.k8s import model, node, scheduling

# labels of ours the planner reads (the scheme, with encode and decode, is nodeagent.agent.labels)
LABEL_BACKOFF_STEP = labels.BACKOFF_STEP
LABEL_GRACE = labels.GRACE
DEFAULT_GRACE = 30
LABEL_SELECTOR = labels.SELECTOR
LABEL_POD_LABELS = labels.POD_LABELS
LABEL_PRE_STOP = labels.PRE_STOP

Verb = Literal["delete", "remove", "start", "init", "create", "restart"]
# verbs, in the order `execute` applies them
DELETE: Final = "delete"  # stop and remove every container of a pod, then its directories
REMOVE: Final = "remove"  # remove one dead container (an old attempt) that no pod needs
START: Final = "start"  # start a container that was created but never started, or restart one in place
INIT: Final = "init"  # create and start init container `container` (first attempt, or retry after a failure)
CREATE: Final = "create"  # create and start one container (first attempt, or recreate after `docker rm`)
RESTART: Final = "restart"  # create and start the next attempt of a container that exited
VERB_ORDER: Final[Mapping[str, int]] = {DELETE: 0, REMOVE: 1, START: 2, INIT: 3, CREATE: 4, RESTART: 5}


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


def int_label(c: rt.ObservedContainer, key: str) -> int:
    """A numeric label of ours; a missing or mangled one counts as 0 (it only shapes timing and order)."""
    return labels.integer(c.labels, key) or 0


def attempt_of(c: rt.ObservedContainer) -> int:
    return int_label(c, identity.LABEL_ATTEMPT)


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
    verb: Verb
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


# The desired state's entries are the planner's inputs as they are: an object and where it came from.
DaemonSetInput = desired_mod.Entry[model.DaemonSet]
StaticPodInput = desired_mod.Entry[model.Pod]


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
    decision: scheduling.Decision  # the pass's one scheduling decision (the agent reads it from here)
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


def in_order(actions: list[Action] | tuple[Action, ...]) -> tuple[Action, ...]:
    """Actions in the order `execute` applies them (VERB_ORDER; stable within a verb)."""
    return tuple(sorted(actions, key=lambda a: VERB_ORDER[a.verb]))


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
        return in_order(acts)

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
        return {o: in_order(acts) for o, acts in groups.items() if acts}


def work_owner(a: Action) -> str:
    """The worker an action outside any current DaemonSet or static pod runs on: its pod's owner label
    (a withdrawn DaemonSet), or the pod itself when it has none."""
    return a.owner or identity.owner_pod(a.namespace, a.pod)
