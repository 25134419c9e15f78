"""The top level of DaemonSets and Pods: the selector, the update strategy and the pod template
(ValidateDaemonSetSpec, SetDefaults_DaemonSet)."""

from __future__ import annotations

from nodeagent.k8s import model, selectors
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.common import NONNEGATIVE
from nodeagent.k8s.manifests.metadata import (
    annotation_warnings,
    decode_label_selector,
    decode_object_meta,
    labels_and_annotations,
)
from nodeagent.k8s.manifests.podspec import decode_pod_spec
from nodeagent.k8s.manifests.tables import CONDITIONAL_WARNINGS, META_FIELDS
from nodeagent.k8s.validation import Raw, Walker, child, fields


def selector_changed(old: model.DaemonSet, new: model.DaemonSet) -> model.Problem | None:
    """A DaemonSet's selector is immutable once seen; the Problem has no file (the caller adds it)."""
    if old.spec.selector == new.spec.selector:
        return None
    return model.Problem(
        file="",
        document=None,
        kind="DaemonSet",
        name=new.metadata.name,
        path="spec.selector",
        message=v.invalid(selectors.selector_json(new.spec.selector), "field is immutable"),
    )


_DS_SPEC_FIELDS = fields(
    "selector", "template", "updateStrategy", "minReadySeconds", "revisionHistoryLimit", "templateGeneration"
)


def decode_daemonset(w: Walker, d: Raw) -> model.DaemonSet:
    """An apps/v1 DaemonSet: the selector must match the template, restartPolicy must be Always."""
    meta = decode_object_meta(w, d)
    spec = w.obj(d, "spec", "", _DS_SPEC_FIELDS) or {}
    if spec.get("templateGeneration") is not None:
        w.warn("spec.templateGeneration", "extensions/v1beta1 field; ignored")
    if spec.get("selector") is None:
        w.error("spec.selector", v.required())
        selector = model.LabelSelector()
        nothing = True  # a nil selector selects nothing
    else:
        selector = decode_label_selector(w, spec["selector"], "spec.selector")
        nothing = False
        if not selector.match_labels and not selector.match_expressions:
            w.error("spec.selector", v.invalid({}, "empty selector is invalid for daemonset"))
    template = _pod_template(w, spec, "spec")
    labels = template.metadata.labels
    if nothing or not selectors.selector_matches(selector, labels):
        w.error(
            "spec.template.metadata.labels",
            v.invalid(dict(labels), "`selector` does not match template `labels`"),
        )
    tspec = w.mapping(spec.get("template"), "spec.template") or {}
    pspec = w.mapping(tspec.get("spec"), "spec.template.spec") or {}
    if template.spec.restart_policy != "Always":
        w.error("spec.template.spec.restartPolicy", v.unsupported(template.spec.restart_policy, ["Always"]))
    if pspec.get("activeDeadlineSeconds") is not None:
        w.error(
            "spec.template.spec.activeDeadlineSeconds",
            v.forbidden("activeDeadlineSeconds in DaemonSet is not Supported"),
        )
    min_ready = w.int_(spec, "minReadySeconds", "spec", 0)
    if min_ready < 0:
        w.error("spec.minReadySeconds", v.invalid(min_ready, NONNEGATIVE))
    history = w.int_(spec, "revisionHistoryLimit", "spec", 10)
    if history < 0:
        w.error("spec.revisionHistoryLimit", v.invalid(history, NONNEGATIVE))
    return model.DaemonSet(
        metadata=meta,
        spec=model.DaemonSetSpec(
            selector=selector,
            template=template,
            update_strategy=_update_strategy(w, spec),
            min_ready_seconds=min_ready,
            revision_history_limit=history,
        ),
    )


def _int_or_percent_value(value: int | str) -> int:
    if isinstance(value, int):
        return value
    digits = value[:-1] if value.endswith("%") else value
    number = v.small_int(digits)
    return 0 if number is None or digits.startswith(("-", "+")) else number


def _update_strategy(w: Walker, spec: Raw) -> model.DaemonSetUpdateStrategy:
    path = "spec.updateStrategy"
    us = w.obj(spec, "updateStrategy", "spec", fields("type", "rollingUpdate")) or {}
    typ = w.str_(us, "type", path) or "RollingUpdate"
    ru = w.obj(us, "rollingUpdate", path, fields("maxUnavailable", "maxSurge"))
    rpath = child(path, "rollingUpdate")
    if typ == "OnDelete":
        if ru is not None:
            w.warn(rpath, CONDITIONAL_WARNINGS["rollingUpdate with type OnDelete"])
        return model.DaemonSetUpdateStrategy(type="OnDelete", rolling_update=None)
    if typ != "RollingUpdate":
        w.error(path, v.unsupported(typ, ["RollingUpdate", "OnDelete"]))
        return model.DaemonSetUpdateStrategy(type=typ, rolling_update=None)
    ru = ru or {}
    max_unavailable = w.int_or_str(ru, "maxUnavailable", rpath)
    max_surge = w.int_or_str(ru, "maxSurge", rpath)
    mu: int | str = 1 if max_unavailable is None else max_unavailable
    ms: int | str = 0 if max_surge is None else max_surge
    for name, val in (("maxUnavailable", mu), ("maxSurge", ms)):
        p = child(rpath, name)
        if isinstance(val, str):
            for msg in v.percent(val):
                w.error(p, v.invalid(val, msg))
            if not v.percent(val) and _int_or_percent_value(val) > 100:
                w.error(p, v.invalid(val, "must not be greater than 100%"))
        elif val < 0:
            w.error(p, v.invalid(val, NONNEGATIVE))
    has_unavailable = _int_or_percent_value(mu) != 0
    has_surge = _int_or_percent_value(ms) != 0
    if has_unavailable and has_surge:
        w.error(child(rpath, "maxSurge"), v.invalid(ms, "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        w.error(child(rpath, "maxUnavailable"), v.required("cannot be 0 when maxSurge is 0"))
    return model.DaemonSetUpdateStrategy(
        type="RollingUpdate", rolling_update=model.RollingUpdateDaemonSet(max_unavailable=mu, max_surge=ms)
    )


def _pod_template(w: Walker, spec: Raw, path: str) -> model.PodTemplateSpec:
    tpath = child(path, "template")
    t = w.obj(spec, "template", path, fields("metadata", "spec"))
    if t is None:
        w.error(tpath, v.required())
        t = {}
    m = w.obj(t, "metadata", tpath, META_FIELDS) or {}
    mpath = child(tpath, "metadata")
    labels, annotations = labels_and_annotations(w, m, mpath)
    annotation_warnings(w, annotations, child(mpath, "annotations"))
    meta = model.ObjectMeta(
        name=w.str_(m, "name", mpath),
        namespace=w.str_(m, "namespace", mpath) or "default",
        labels=labels,
        annotations=annotations,
    )
    pod_spec = decode_pod_spec(w, t.get("spec"), child(tpath, "spec"))
    return model.PodTemplateSpec(metadata=meta, spec=pod_spec)


def decode_pod(w: Walker, d: Raw) -> model.Pod:
    """A v1 Pod (a static pod)."""
    meta = decode_object_meta(w, d)
    annotation_warnings(w, meta.annotations, "metadata.annotations")
    return model.Pod(metadata=meta, spec=decode_pod_spec(w, d.get("spec"), "spec"))
