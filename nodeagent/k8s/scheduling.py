"""Should this node run a DaemonSet's pod? Kubernetes' DaemonSet controller semantics, as pure functions.

Ported from kubernetes/kubernetes, not re-imagined:

- `decide` is `NodeShouldRunDaemonPod` + `predicates` (pkg/controller/daemon/daemon_controller.go);
- `daemon_tolerations` is `AddOrUpdateDaemonPodTolerations` (pkg/controller/daemon/util);
- `match_node_selector_terms` / `_required_affinity_matches` are `nodeaffinity.GetRequiredNodeAffinity(pod)
  .Match` and `LazyErrorNodeSelector.Match` (k8s.io/component-helpers/scheduling/corev1/nodeaffinity),
  with label requirements evaluated as k8s.io/apimachinery/pkg/labels does;
- `toleration_tolerates` is `Toleration.ToleratesTaint` (k8s.io/api/core/v1/toleration.go);
- `evict_after_seconds` follows the taint eviction controller (`GetMatchingTolerations`,
  `getMinTolerationTime`).

Reasons use the scheduler plugins' words so users can search for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from nodeagent.k8s import model, node, validation

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


# --- label and node selectors -----------------------------------------------------------------


_parse_int64 = validation.parse_int64  # strconv.ParseInt(value, 10, 64), as validation reads Gt/Lt values


def _requirement_valid(key: str, operator: str, values: Sequence[str]) -> bool:
    """labels.NewRequirement's checks; an invalid requirement makes its selector term match nothing."""
    if node.label_key_error(key) is not None:
        return False
    if operator in ("In", "NotIn"):
        if not values:
            return False
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            return False
    elif operator in ("Gt", "Lt"):
        if len(values) != 1 or _parse_int64(values[0]) is None:
            return False
    else:
        return False
    return all(node.label_value_error(v) is None for v in values)


def _requirement_matches(key: str, operator: str, values: Sequence[str], labels: Mapping[str, str]) -> bool:
    """labels.Requirement.Matches for a requirement that passed `_requirement_valid`."""
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        if not present:
            return False
        have = _parse_int64(labels[key])
        want = _parse_int64(values[0])
        if have is None or want is None:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def _field_requirements_match(
    reqs: Sequence[model.NodeSelectorRequirement], fields: Mapping[str, str]
) -> bool | None:
    """nodeSelectorRequirementsAsFieldSelector + Matches; None when a requirement cannot be parsed."""
    ok = True
    for req in reqs:
        if req.operator not in ("In", "NotIn") or len(req.values) != 1:
            return None
        equal = fields.get(req.key, "") == req.values[0]
        if equal != (req.operator == "In"):
            ok = False
    return ok


def _term_matches(term: model.NodeSelectorTerm, labels: Mapping[str, str], fields: Mapping[str, str]) -> bool:
    """One NodeSelectorTerm: its expressions and fields ANDed; an empty or unparsable term matches nothing."""
    if not term.match_expressions and not term.match_fields:
        return False
    for req in term.match_expressions:
        if not _requirement_valid(req.key, req.operator, req.values):
            return False
    field_match = _field_requirements_match(term.match_fields, fields) if term.match_fields else True
    if field_match is None:
        return False
    if not all(_requirement_matches(r.key, r.operator, r.values, labels) for r in term.match_expressions):
        return False
    # Kubernetes skips the field check when the node has no fields (an unnamed node); ours always has one.
    return field_match or not fields


def match_node_selector_terms(node: node.Node, terms: Sequence[model.NodeSelectorTerm]) -> bool:
    """Whether the node matches any of the terms (ORed); no terms, or only empty ones, match nothing."""
    fields = {NODE_NAME_FIELD: node.name} if node.name else {}
    return any(_term_matches(term, node.labels, fields) for term in terms)


def node_selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """spec.nodeSelector as labels.SelectorFromSet: every key present with exactly that value."""
    return all(key in labels and labels[key] == value for key, value in selector.items())


def _required_affinity_matches(node: node.Node, spec: model.PodSpec) -> bool:
    """RequiredNodeAffinity.Match: nodeSelector AND requiredDuringSchedulingIgnoredDuringExecution."""
    if not node_selector_matches(spec.node_selector, node.labels):
        return False
    affinity = spec.affinity.node_affinity if spec.affinity else None
    if affinity is None or affinity.required is None:
        return True
    return match_node_selector_terms(node, affinity.required)


def label_selector_matches(selector: model.LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels), for DaemonSet selectors.

    An empty selector matches everything (DaemonSet validation forbids it); an invalid one (unknown
    operator, In without values, bad key) matches nothing, as the controller then adopts no pods.
    """
    for key, value in selector.match_labels.items():
        if node.label_key_error(key) is not None or node.label_value_error(value) is not None:
            return False
        if key not in labels or labels[key] != value:
            return False
    for req in selector.match_expressions:
        if req.operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
        if not _requirement_valid(req.key, req.operator, req.values):
            return False
        if not _requirement_matches(req.key, req.operator, req.values, labels):
            return False
    return True


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
