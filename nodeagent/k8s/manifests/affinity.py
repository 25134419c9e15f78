"""Scheduling fields: node affinity and tolerations (ValidateNodeSelectorTerm, ValidateTolerations)."""

from __future__ import annotations

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.metadata import selector_requirement
from nodeagent.k8s.manifests.tables import (
    CONDITIONAL_WARNINGS,
    NODE_SELECTOR_TERM_FIELDS,
    REQUIREMENT_FIELDS,
    TOLERATION_FIELDS,
)
from nodeagent.k8s.validation import Raw, Walker, child, fields

_EMPTY_KEY_OPERATOR = (
    'operator must be Exists when `key` is empty, which means "match all values and all keys"'
)


def _node_selector_term(w: Walker, raw: Raw, path: str, *, required: bool) -> model.NodeSelectorTerm:
    """ValidateNodeSelectorTerm. Values are checked as label values in required terms only: Kubernetes
    does so for new objects (AllowInvalidLabelValueInRequiredNodeAffinity is false unless the old object
    had one), and always allows them in preferred terms."""
    exprs = []
    for p, r in w.objects(raw, "matchExpressions", path, REQUIREMENT_FIELDS):
        requirement = selector_requirement(w, r, p, node=True, check_values=required)
        exprs.append(model.NodeSelectorRequirement(*requirement))
    match_fields = []
    for p, r in w.objects(raw, "matchFields", path, REQUIREMENT_FIELDS):
        key = w.str_(r, "key", p)
        op = w.str_(r, "operator", p)
        values = w.str_list(r, "values", p)
        if op in ("In", "NotIn"):
            if len(values) != 1:
                w.error(
                    child(p, "values"),
                    v.required(
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"
                    ),
                )
        else:
            w.error(child(p, "operator"), v.invalid(op, "not a valid selector operator"))
        if key != "metadata.name":
            w.error(child(p, "key"), v.invalid(key, "not a valid field selector key"))
        else:
            for i, val in enumerate(values):
                for msg in v.dns1123_subdomain(val):
                    w.error(v.index(child(p, "values"), i), v.invalid(val, msg))
        match_fields.append(model.NodeSelectorRequirement(key, op, values))
    return model.NodeSelectorTerm(tuple(exprs), tuple(match_fields))


_REQUIRED_TERMS = "requiredDuringSchedulingIgnoredDuringExecution"

_PREFERRED_TERMS = "preferredDuringSchedulingIgnoredDuringExecution"


def decode_affinity(w: Walker, s: Raw, spath: str) -> model.Affinity | None:
    """spec.affinity: node affinity is decoded; pod (anti-)affinity is only warned about (one node)."""
    path = child(spath, "affinity")
    a = w.obj(s, "affinity", spath, fields("nodeAffinity", "podAffinity", "podAntiAffinity"))
    if a is None:
        return None
    node_affinity = None
    na = w.obj(a, "nodeAffinity", path, fields(_REQUIRED_TERMS, _PREFERRED_TERMS))
    if na is not None:
        napath = child(path, "nodeAffinity")
        required: tuple[model.NodeSelectorTerm, ...] | None = None
        req = w.obj(na, _REQUIRED_TERMS, napath, fields("nodeSelectorTerms"))
        if req is not None:
            rpath = child(napath, _REQUIRED_TERMS)
            terms = w.objects(req, "nodeSelectorTerms", rpath, NODE_SELECTOR_TERM_FIELDS)
            if not terms:
                w.error(
                    child(rpath, "nodeSelectorTerms"), v.required("must have at least one node selector term")
                )
            required = tuple(_node_selector_term(w, t, p, required=True) for p, t in terms)
        preferred = []
        for p, pref in w.objects(na, _PREFERRED_TERMS, napath, fields("weight", "preference")):
            weight = w.int_(pref, "weight", p, 0)
            if not 1 <= weight <= 100:
                w.error(child(p, "weight"), v.invalid(weight, "must be in the range 1-100"))
            term_raw = w.obj(pref, "preference", p, NODE_SELECTOR_TERM_FIELDS) or {}
            preferred.append(
                model.PreferredSchedulingTerm(
                    weight, _node_selector_term(w, term_raw, child(p, "preference"), required=False)
                )
            )
        if preferred:
            w.warn(
                child(napath, _PREFERRED_TERMS),
                CONDITIONAL_WARNINGS[f"affinity.nodeAffinity.{_PREFERRED_TERMS}"],
            )
        node_affinity = model.NodeAffinity(required=required, preferred=tuple(preferred))
    has_pod_affinity = w.obj(a, "podAffinity", path) is not None
    has_anti_affinity = w.obj(a, "podAntiAffinity", path) is not None
    if has_pod_affinity:
        w.warn(child(path, "podAffinity"), CONDITIONAL_WARNINGS["affinity.podAffinity"])
    if has_anti_affinity:
        w.warn(child(path, "podAntiAffinity"), CONDITIONAL_WARNINGS["affinity.podAntiAffinity"])
    return model.Affinity(node_affinity, has_pod_affinity, has_anti_affinity)


_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def decode_tolerations(w: Walker, s: Raw, spath: str) -> tuple[model.Toleration, ...]:
    """spec.tolerations (ValidateTolerations); an empty operator defaults to Equal."""
    out = []
    for p, t in w.objects(s, "tolerations", spath, TOLERATION_FIELDS):
        key = w.str_(t, "key", p)
        op = w.str_(t, "operator", p)
        value = w.str_(t, "value", p)
        effect = w.str_(t, "effect", p)
        seconds = w.opt_int(t, "tolerationSeconds", p)
        for msg in v.qualified_name(key) if key else []:
            w.error(child(p, "key"), v.invalid(key, msg))
        if not key and op != "Exists":
            w.error(
                child(p, "operator"),
                v.invalid(
                    op,
                    _EMPTY_KEY_OPERATOR,
                ),
            )
        if seconds is not None and effect != "NoExecute":
            w.error(
                child(p, "effect"),
                v.invalid(effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"),
            )
        if op in ("Equal", ""):
            errs = v.label_value(value)
            if errs:
                w.error(child(p, "operator"), v.invalid(value, ";".join(errs)))
        elif op == "Exists":
            if value:
                w.error(
                    child(p, "operator"), v.invalid(value, "value must be empty when `operator` is 'Exists'")
                )
        else:
            w.error(child(p, "operator"), v.unsupported(op, ["Equal", "Exists"]))
        if effect and effect not in _EFFECTS:
            w.error(child(p, "effect"), v.unsupported(effect, _EFFECTS))
        out.append(model.Toleration(key, op or "Equal", value, effect, seconds))
    return tuple(out)
