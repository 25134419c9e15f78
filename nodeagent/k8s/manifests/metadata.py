"""ObjectMeta, labels, annotations and label selectors, validated as ValidateObjectMeta and
ValidateLabelSelector do."""

from __future__ import annotations

from collections.abc import Mapping

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.tables import (
    ANNOTATION_WARNINGS,
    LABEL_SELECTOR_FIELDS,
    META_FIELDS,
    REQUIREMENT_FIELDS,
)
from nodeagent.k8s.validation import Raw, Walker, child

_TOTAL_ANNOTATION_SIZE = 256 * 1024


def decode_object_meta(w: Walker, d: Raw) -> model.ObjectMeta:
    """metadata of a top-level object (name required; namespace defaults to `default`)."""
    m = w.obj(d, "metadata", "", META_FIELDS) or {}
    name = w.str_(m, "name", "metadata")
    namespace = w.str_(m, "namespace", "metadata")
    if not name:
        w.error("metadata.name", v.required("name or generateName is required"))
    else:
        for msg in v.dns1123_subdomain(name):
            w.error("metadata.name", v.invalid(name, msg))
    for msg in v.dns1123_label(namespace) if namespace else []:
        w.error("metadata.namespace", v.invalid(namespace, msg))
    labels, annotations = labels_and_annotations(w, m, "metadata")
    return model.ObjectMeta(
        name=name,
        namespace=namespace or "default",
        labels=labels,
        annotations=annotations,
        uid=w.str_(m, "uid", "metadata"),
    )


def labels_and_annotations(w: Walker, m: Raw, path: str) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations at `path`, validated (keys, values, total annotation size)."""
    labels = w.str_map(m, "labels", path)
    validate_labels(w, labels, child(path, "labels"))
    annotations = w.str_map(m, "annotations", path)
    apath = child(path, "annotations")
    size = 0
    for k, val in annotations.items():
        for msg in v.qualified_name(k.lower()):
            w.error(apath, v.invalid(k, msg))
        size += len(k) + len(val)
    if size > _TOTAL_ANNOTATION_SIZE:
        w.error(apath, v.too_long(_TOTAL_ANNOTATION_SIZE))
    return labels, annotations


def validate_labels(w: Walker, labels: Mapping[str, str], path: str) -> None:
    """ValidateLabels: errors are reported at the map's path, naming the bad key or value."""
    for k, val in labels.items():
        for msg in v.qualified_name(k):
            w.error(path, v.invalid(k, msg))
        for msg in v.label_value(val):
            w.error(path, v.invalid(val, msg))


def annotation_warnings(w: Walker, annotations: Mapping[str, str], path: str) -> None:
    """Warn about annotations nodeagent ignores (ANNOTATION_WARNINGS)."""
    for k in annotations:
        for prefix, reason in ANNOTATION_WARNINGS.items():
            if k == prefix or (prefix.endswith("/") and k.startswith(prefix)):
                w.warn(v.key(path, k), reason)


def decode_label_selector(w: Walker, raw: object, path: str) -> model.LabelSelector:
    """A LabelSelector (ValidateLabelSelector)."""
    d = w.mapping(raw, path, LABEL_SELECTOR_FIELDS) or {}
    match_labels = w.str_map(d, "matchLabels", path)
    validate_labels(w, match_labels, child(path, "matchLabels"))
    exprs = []
    for p, e in w.objects(d, "matchExpressions", path, REQUIREMENT_FIELDS):
        exprs.append(model.LabelSelectorRequirement(*selector_requirement(w, e, p)))
    return model.LabelSelector(match_labels, tuple(exprs))


_NEVER_MATCHES = (
    "not an integer: Kubernetes accepts it, but its scheduler fails a Gt/Lt requirement on it, so this "
    "term can never match"
)


def selector_requirement(
    w: Walker, r: Raw, p: str, *, node: bool = False, check_values: bool = True
) -> tuple[str, str, tuple[str, ...]]:
    """One `matchExpressions` entry (ValidateLabelSelectorRequirement; with `node`, the node selector
    requirement's Gt and Lt too): its key, operator and values."""
    key = w.str_(r, "key", p)
    op = w.str_(r, "operator", p)
    values = w.str_list(r, "values", p)
    vpath = child(p, "values")
    if op in ("In", "NotIn"):
        if not values:
            w.error(vpath, v.required("must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            w.error(vpath, v.forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    elif node and op in ("Gt", "Lt"):
        if len(values) != 1:
            w.error(vpath, v.required("must be specified single value when `operator` is 'Lt' or 'Gt'"))
        elif v.parse_int64(values[0]) is None:  # labels.NewRequirement's strconv.ParseInt
            w.warn(v.index(vpath, 0), f"{v.fmt(values[0])}: {_NEVER_MATCHES}")
    else:
        w.error(child(p, "operator"), v.invalid(op, "not a valid selector operator"))
    for msg in v.qualified_name(key):
        w.error(child(p, "key"), v.invalid(key, msg))
    for i, value in enumerate(values if check_values else ()):
        for msg in v.label_value(value):
            w.error(v.index(vpath, i), v.invalid(value, msg))
    return key, op, values
