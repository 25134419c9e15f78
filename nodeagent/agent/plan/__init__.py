"""The planner: desired state + observed containers + the node + a clock -> actions, each with a reason.

Pure (no I/O) and level-triggered: it looks at everything each time, so a lost or doubled event costs
latency, never correctness. Modelled on the kubelet's `computePodActions`: the plan is a plain value,
printed by `nodeagent plan` and applied by `execute`. Split along Kubernetes' own seams:

- `types`: the values in and out (Inputs, Plan, Action and its verbs, Waiting, Failure, Health, ...);
- `pods`: the kubelet's per-pod rules (create, start, restart or back off; init containers, sidecars,
  liveness restarts; GC of old attempts);
- `daemonset`: the DaemonSet controller's rules (scheduling, NoExecute, RollingUpdate/maxSurge, OnDelete,
  the immutable selector);
- `ownership`: orphaning and adoption;
- `readiness`: container readiness and pod availability (minReadySeconds);
- `planner`: `plan()`, which runs them all.

This package re-exports what the rest of nodeagent uses, so callers keep writing `plan.plan(...)`.
"""

from nodeagent.agent.plan.daemonset import (
    changed_selector,
    desired_daemon_pod,
    refuse_changed_selectors,
)
from nodeagent.agent.plan.ownership import ANNOTATION_ORPHAN, ORPHANED, POLICY_ANNOTATION, POLICY_COMMAND
from nodeagent.agent.plan.planner import desired_static_pod, plan
from nodeagent.agent.plan.pods import delete_action, gc_stale, group_pods
from nodeagent.agent.plan.types import (
    CREATE,
    DEFAULT_GRACE,
    DELETE,
    INIT,
    LABEL_BACKOFF_STEP,
    LABEL_GRACE,
    LABEL_POD_LABELS,
    LABEL_PRE_STOP,
    LABEL_SELECTOR,
    REMOVE,
    RESTART,
    START,
    VERB_ORDER,
    Action,
    Backoff,
    DaemonSetInput,
    DaemonSetPlan,
    DesiredPod,
    Failure,
    Health,
    Inputs,
    ObservedPod,
    Ownership,
    Plan,
    Readiness,
    StaticPodInput,
    StaticPodPlan,
    Verb,
    Waiting,
    attempt_of,
    work_owner,
)
from nodeagent.k8s.selectors import selector_hash

__all__ = [
    "ANNOTATION_ORPHAN",
    "CREATE",
    "DEFAULT_GRACE",
    "DELETE",
    "INIT",
    "LABEL_BACKOFF_STEP",
    "LABEL_GRACE",
    "LABEL_POD_LABELS",
    "LABEL_PRE_STOP",
    "LABEL_SELECTOR",
    "ORPHANED",
    "POLICY_ANNOTATION",
    "POLICY_COMMAND",
    "REMOVE",
    "RESTART",
    "START",
    "VERB_ORDER",
    "Action",
    "Backoff",
    "DaemonSetInput",
    "DaemonSetPlan",
    "DesiredPod",
    "Failure",
    "Health",
    "Inputs",
    "ObservedPod",
    "Ownership",
    "Plan",
    "Readiness",
    "StaticPodInput",
    "StaticPodPlan",
    "Verb",
    "Waiting",
    "attempt_of",
    "changed_selector",
    "delete_action",
    "desired_daemon_pod",
    "desired_static_pod",
    "gc_stale",
    "group_pods",
    "plan",
    "refuse_changed_selectors",
    "selector_hash",
    "work_owner",
]
