"""A YAML/JSON stream → documents → objects: `kind: List`, the kind and apiVersion dispatch.

Each document is decoded alone, so one bad document fails only itself (`LoadResult.failed`) and the
caller keeps its previous good version."""

from __future__ import annotations

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.configdata import decode_configmap, decode_secret
from nodeagent.k8s.manifests.loader import parse_stream
from nodeagent.k8s.manifests.tables import SUPPORTED_KINDS
from nodeagent.k8s.manifests.workloads import decode_daemonset, decode_pod
from nodeagent.k8s.validation import Walker, fields


def load_text(text: str | bytes, source: str) -> model.LoadResult:
    """Load a multi-document YAML or JSON body (a file or an HTTP response) named `source`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return model.LoadResult.failed_file(source, f"not UTF-8 text: {exc.reason} at byte {exc.start}")
    elif text.startswith("\ufeff"):
        text = text[1:]
    docs, syntax_error = parse_stream(text, source)
    documents: list[model.Document] = []
    errors: list[model.Problem] = []
    warnings: list[model.Problem] = []
    failed: list[tuple[str, int | None]] = []
    for i, raw in enumerate(docs):
        objs, errs, warns = _parse_document(raw, source, i)
        errors.extend(errs)
        warnings.extend(warns)
        if errs:
            failed.append((source, i))
        else:
            documents.extend(model.Document(obj, source, i) for obj in objs)
    if syntax_error is not None:
        # The stream is unreadable past the error: the whole file keeps its previous good version.
        return model.LoadResult(
            errors=(*errors, syntax_error), warnings=tuple(warnings), failed=((source, None),)
        )
    return model.LoadResult(tuple(documents), tuple(errors), tuple(warnings), tuple(failed))


def _parse_document(
    raw: object, file: str, index: int
) -> tuple[list[model.KubeObject], list[model.Problem], list[model.Problem]]:
    """One YAML document: nothing (empty), one object, or the items of a `kind: List`."""
    if raw is None:
        return [], [], []
    if isinstance(raw, dict) and raw.get("kind") == "List":
        w = Walker()
        d = w.mapping(raw, "", fields("apiVersion", "kind", "metadata", "items"))
        items = w.items(d or {}, "items", "")
        errs, warns = w.problems(file, index, "List", "")
        objs: list[model.KubeObject] = []
        for path, item in items:
            obj, e, wn = _parse(item, file, index, path)
            errs.extend(e)
            warns.extend(wn)
            if obj is not None:
                objs.append(obj)
        return ([] if errs else objs), errs, warns
    obj, errs, warns = _parse(raw, file, index, "")
    return ([obj] if obj is not None else []), errs, warns


def parse_object(
    raw: object, file: str, index: int
) -> tuple[model.KubeObject | None, list[model.Problem], list[model.Problem]]:
    """One raw object → (object or None, errors, warnings); any error means no object."""
    return _parse(raw, file, index, "")


def _parse(
    raw: object, file: str, index: int, prefix: str
) -> tuple[model.KubeObject | None, list[model.Problem], list[model.Problem]]:
    w = Walker(prefix)
    try:
        kind, name, obj = _dispatch(w, raw)
    except RecursionError:  # a self-referencing YAML alias; nothing else can get here
        kind, name, obj = "", "", None
        w.error("", "document is nested too deeply")
    errors, warnings = w.problems(file, index, kind, name)
    return (None if errors else obj), errors, warnings


def _dispatch(w: Walker, raw: object) -> tuple[str, str, model.KubeObject | None]:
    d = w.mapping(raw, "")
    if d is None:
        if raw is None:
            w.error("", v.required("a document must be an object"))
        return "", "", None
    meta_raw = d.get("metadata")
    raw_name = meta_raw.get("name") if isinstance(meta_raw, dict) else None
    name = raw_name if isinstance(raw_name, str) else ""
    kind = w.opt_str(d, "kind", "")
    api = w.opt_str(d, "apiVersion", "")
    if not kind:
        if kind == "" or d.get("kind") is None:  # absent or empty; a wrong type is already reported
            w.error("kind", v.required())
        return "", name, None
    if kind not in SUPPORTED_KINDS:
        w.error("kind", v.unsupported(kind, sorted(SUPPORTED_KINDS)))
        return kind, name, None
    want = SUPPORTED_KINDS[kind]
    if not api:
        w.error("apiVersion", v.required())
        return kind, name, None
    if api != want:
        w.error("apiVersion", v.unsupported(api, [want]))
        return kind, name, None
    allowed = {
        "DaemonSet": fields("apiVersion", "kind", "metadata", "spec", "status"),
        "Pod": fields("apiVersion", "kind", "metadata", "spec", "status"),
        "ConfigMap": fields("apiVersion", "kind", "metadata", "data", "binaryData", "immutable"),
        "Secret": fields("apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"),
    }[kind]
    for k in d:
        if k not in allowed:
            w.warn(k, f'unknown field "{k}"; ignored')
    if kind == "DaemonSet":
        return kind, name, decode_daemonset(w, d)
    if kind == "Pod":
        return kind, name, decode_pod(w, d)
    if kind == "ConfigMap":
        return kind, name, decode_configmap(w, d)
    return kind, name, decode_secret(w, d)
