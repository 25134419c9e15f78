"""Should this node run a DaemonSet's pod? Kubernetes' DaemonSet controller semantics, as pure functions.

Ported from kubernetes/kubernetes, not re-imagined:

- `decide` is `NodeShouldRunDaemonPod` + `predicates` (pkg/controller/daemon/daemon_controller.go);
- `daemon_tolerations` is `AddOrUpdateDaemonPodTolerations` (pkg/controller/daemon/util);
- `match_node_selector_terms` / `_required_affinity_matches` are `nodeaffinity.GetRequiredNodeAffinity(pod)
  .Match` and `LazyErrorNodeSelector.Match` (k8s.io/component-helpers/scheduling/corev1/nodeaffinity),
  with label requirements evaluated as k8s.io/apimachinery/pkg/labels does (in `nodeagent.k8s.selectors`);
- `toleration_tolerates` is `Toleration.ToleratesTaint` (k8s.io/api/core/v1/toleration.go);
- `evict_after_seconds` follows the taint eviction controller (`GetMatchingTolerations`,
  `getMinTolerationTime`).

Reasons use the scheduler plugins' words so users can search for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from nodeagent.k8s import model, node, selectors

REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"

NODE_NAME_FIELD = "metadata.name"


def untolerated_taint_reason(taint: model.Taint) -> str:
    """The TaintToleration filter's message: `node(s) had untolerated taint {key: value}`."""
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


@dataclass(frozen=True)
class Decision:
    """The DaemonSet controller's verdict for one node, with the reasons when it is negative.

    should_run: a pod should be created if none runs. should_continue_running: a running pod may stay.
    evict_after_seconds: the pod may stay only because NoExecute taints are tolerated with
    tolerationSeconds; the taint manager deletes it after this many seconds (0: at once). The caller
    measures the time since the taint appeared, since this module keeps no clock.
    """

    should_run: bool
    should_continue_running: bool
    reasons: tuple[str, ...] = ()
    evict_after_seconds: int | None = None


# --- tolerations ------------------------------------------------------------------------------


def _default_daemon_tolerations(host_network: bool) -> tuple[model.Toleration, ...]:
    exists = "Exists"
    tolerations = [
        model.Toleration(key=node.TAINT_NOT_READY, operator=exists, effect="NoExecute"),
        model.Toleration(key=node.TAINT_UNREACHABLE, operator=exists, effect="NoExecute"),
        model.Toleration(key=node.TAINT_DISK_PRESSURE, operator=exists, effect="NoSchedule"),
        model.Toleration(key=node.TAINT_MEMORY_PRESSURE, operator=exists, effect="NoSchedule"),
        model.Toleration(key=node.TAINT_PID_PRESSURE, operator=exists, effect="NoSchedule"),
        model.Toleration(key=node.TAINT_UNSCHEDULABLE, operator=exists, effect="NoSchedule"),
    ]
    if host_network:
        tolerations.append(
            model.Toleration(key=node.TAINT_NETWORK_UNAVAILABLE, operator=exists, effect="NoSchedule")
        )
    return tuple(tolerations)


def _same_toleration(a: model.Toleration, b: model.Toleration) -> bool:
    """Toleration.MatchToleration: tolerations are unique by <key, effect, operator, value>."""
    return a.key == b.key and a.effect == b.effect and a.operator == b.operator and a.value == b.value


def daemon_tolerations(spec: model.PodSpec) -> tuple[model.Toleration, ...]:
    """The pod's tolerations plus the ones the DaemonSet controller adds to every daemon pod.

    As AddOrUpdateTolerationInPodSpec does, a default replaces a pod toleration with the same key,
    effect, operator and value in place (so a user's `not-ready:NoExecute` with tolerationSeconds
    becomes the controller's infinite one); any other default is appended.
    """
    result = list(spec.tolerations)
    for default in _default_daemon_tolerations(spec.host_network):
        replaced = False
        for i, existing in enumerate(result):
            if _same_toleration(default, existing):
                result[i] = default
                replaced = True
        if not replaced:
            result.append(default)
    return tuple(result)


def toleration_tolerates(tol: model.Toleration, taint: model.Taint) -> bool:
    """Toleration.ToleratesTaint: effect (empty matches all), key (empty matches all), then operator.

    `Exists` matches every value; `Equal` (or empty) compares values. Other operators (the alpha Lt/Gt
    behind a feature gate that is off by default) tolerate nothing.
    """
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.key and tol.key != taint.key:
        return False
    if tol.operator in ("", "Equal"):
        return tol.value == taint.value
    return tol.operator == "Exists"


def _tolerated(tolerations: Iterable[model.Toleration], taint: model.Taint) -> bool:
    return any(toleration_tolerates(t, taint) for t in tolerations)


def find_untolerated_taints(
    taints: Iterable[model.Taint],
    tolerations: Sequence[model.Toleration],
    include: Callable[[model.Taint], bool] | None = None,
) -> tuple[model.Taint, ...]:
    """Every taint that passes `include` and no toleration tolerates, in node order.

    Kubernetes' FindMatchingUntoleratedTaint stops at the first; we keep them all to explain more.
    """
    return tuple(t for t in taints if (include is None or include(t)) and not _tolerated(tolerations, t))


def _eviction_delay(taints: Iterable[model.Taint], tolerations: Sequence[model.Toleration]) -> int | None:
    """Seconds until the taint manager evicts, None for never; assumes every NoExecute taint is tolerated.

    Per taint, the first tolerating toleration is the one used; the delay is the smallest positive
    tolerationSeconds among them, 0 if one is <= 0, None if none sets it.
    """
    delay: int | None = None
    for taint in taints:
        if taint.effect != "NoExecute":
            continue
        used = next((t for t in tolerations if toleration_tolerates(t, taint)), None)
        if used is None or used.toleration_seconds is None:
            continue
        seconds = max(used.toleration_seconds, 0)
        delay = seconds if delay is None else min(delay, seconds)
    return delay


# --- node selectors (the matching itself is in nodeagent.k8s.selectors) -------------------------


def match_node_selector_terms(node: node.Node, terms: Sequence[model.NodeSelectorTerm]) -> bool:
    """Whether the node matches any of the terms (ORed); no terms, or only empty ones, match nothing."""
    fields = {NODE_NAME_FIELD: node.name} if node.name else {}
    return any(selectors.node_selector_term_matches(term, node.labels, fields) for term in terms)


def _required_affinity_matches(node: node.Node, spec: model.PodSpec) -> bool:
    """RequiredNodeAffinity.Match: nodeSelector AND requiredDuringSchedulingIgnoredDuringExecution."""
    if not selectors.set_selector_matches(spec.node_selector, node.labels):
        return False
    affinity = spec.affinity.node_affinity if spec.affinity else None
    if affinity is None or affinity.required is None:
        return True
    return match_node_selector_terms(node, affinity.required)


# --- the decision -----------------------------------------------------------------------------


def _blocks(taint: model.Taint) -> bool:
    return taint.effect in ("NoSchedule", "NoExecute")


def _evicts(taint: model.Taint) -> bool:
    return taint.effect == "NoExecute"


def decide(node: node.Node, spec: model.PodSpec) -> Decision:
    """NodeShouldRunDaemonPod for a DaemonSet's pod template on this node.

    nodeName, nodeSelector or required node affinity not matching: neither run nor keep running.
    An untolerated NoSchedule taint: do not start, but keep a running pod. An untolerated NoExecute
    taint: do not run at all. PreferNoSchedule taints are ignored, as the controller ignores them.
    Every failing predicate is listed in `reasons`.
    """
    tolerations = daemon_tolerations(spec)
    reasons: list[str] = []
    fits_name = not spec.node_name or spec.node_name == node.name
    if not fits_name:
        reasons.append(REASON_NODE_NAME)
    fits_affinity = _required_affinity_matches(node, spec)
    if not fits_affinity:
        reasons.append(REASON_NODE_AFFINITY)
    untolerated = find_untolerated_taints(node.taints, tolerations, _blocks)
    for taint in untolerated:
        reason = untolerated_taint_reason(taint)
        if reason not in reasons:
            reasons.append(reason)

    if not fits_name or not fits_affinity:
        return Decision(False, False, tuple(reasons))
    if untolerated:
        keep = not any(_evicts(t) for t in untolerated)
        delay = _eviction_delay(node.taints, tolerations) if keep else None
        return Decision(False, keep, tuple(reasons), delay)
    return Decision(True, True, (), _eviction_delay(node.taints, tolerations))
