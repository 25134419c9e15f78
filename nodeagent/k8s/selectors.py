"""Label and node selectors: matching and canonical forms, in one place.

Matching is k8s.io/apimachinery/pkg/labels (`Requirement.Matches`, `LabelSelectorAsSelector`) and
k8s.io/component-helpers' node selector terms; the manifest decoder, the scheduling decision and the
planner's orphan adoption all read selectors through here, so they agree on what a selector selects.
The canonical forms are the selector as the API writes it (for error messages) and a short hash that
is equal exactly when two selectors are equal (recorded in a container label, compared after restarts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from nodeagent.k8s import model, node, validation

LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def requirement_valid(key: str, operator: str, values: Sequence[str]) -> bool:
    """labels.NewRequirement's checks; an invalid requirement makes its selector match nothing."""
    if node.label_key_error(key) is not None:
        return False
    if operator in ("In", "NotIn"):
        if not values:
            return False
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            return False
    elif operator in ("Gt", "Lt"):
        if len(values) != 1 or validation.parse_int64(values[0]) is None:
            return False
    else:
        return False
    return all(node.label_value_error(v) is None for v in values)


def requirement_matches(key: str, operator: str, values: Sequence[str], labels: Mapping[str, str]) -> bool:
    """labels.Requirement.Matches (Gt/Lt compare the values as int64; an unknown operator never matches)."""
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
        have = validation.parse_int64(labels[key])
        want = validation.parse_int64(values[0])
        if have is None or want is None:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def selector_valid(selector: model.LabelSelector) -> bool:
    """Whether metav1.LabelSelectorAsSelector accepts the selector (valid keys, values and operators)."""
    for key, value in selector.match_labels.items():
        if node.label_key_error(key) is not None or node.label_value_error(value) is not None:
            return False
    return all(
        req.operator in LABEL_OPERATORS and requirement_valid(req.key, req.operator, req.values)
        for req in selector.match_expressions
    )


def selector_matches(selector: model.LabelSelector, labels: Mapping[str, str]) -> bool:
    """The selector's requirements against `labels`, its validity aside (an empty selector matches all).

    For a selector whose errors are reported elsewhere (the manifest decoder); an expression with an
    operator a LabelSelector does not have is skipped here, as it is already an error.
    """
    if any(labels.get(k) != val for k, val in selector.match_labels.items()):
        return False
    return all(
        requirement_matches(req.key, req.operator, req.values, labels)
        for req in selector.match_expressions
        if req.operator in LABEL_OPERATORS
    )


def label_selector_matches(selector: model.LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector(selector).Matches(labels), for DaemonSet selectors.

    An empty selector matches everything (DaemonSet validation forbids it); an invalid one (unknown
    operator, In without values, bad key) matches nothing, as the controller then adopts no pods.
    """
    return selector_valid(selector) and selector_matches(selector, labels)


def set_selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """spec.nodeSelector as labels.SelectorFromSet: every key present with exactly that value."""
    return all(key in labels and labels[key] == value for key, value in selector.items())


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


def node_selector_term_matches(
    term: model.NodeSelectorTerm, labels: Mapping[str, str], fields: Mapping[str, str]
) -> bool:
    """One NodeSelectorTerm: its expressions and fields ANDed; an empty or unparsable term matches nothing."""
    if not term.match_expressions and not term.match_fields:
        return False
    for req in term.match_expressions:
        if not requirement_valid(req.key, req.operator, req.values):
            return False
    field_match = _field_requirements_match(term.match_fields, fields) if term.match_fields else True
    if field_match is None:
        return False
    if not all(requirement_matches(r.key, r.operator, r.values, labels) for r in term.match_expressions):
        return False
    # Kubernetes skips the field check when the node has no fields (an unnamed node); ours always has one.
    return field_match or not fields


def selector_json(selector: model.LabelSelector) -> dict[str, object]:
    """The selector as the API writes it (empty parts left out), for error messages."""
    out: dict[str, object] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        out["matchExpressions"] = [
            {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
            for r in selector.match_expressions
        ]
    return out


def selector_hash(selector: model.LabelSelector) -> str:
    """Equal exactly when the selectors are equal (as `manifests.selector_changed` compares them).

    Recorded in a container label: the form must never change, or every DaemonSet pod would look as
    if its selector had changed after an upgrade.
    """
    blob = json.dumps(
        {
            "matchLabels": sorted(selector.match_labels.items()),
            "matchExpressions": [[r.key, r.operator, list(r.values)] for r in selector.match_expressions],
        },
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
