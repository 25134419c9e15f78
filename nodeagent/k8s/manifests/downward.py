"""Downward API selectors: fieldRef and resourceFieldRef, for env vars and volume files alike
(validateObjectFieldSelector, validateContainerResourceFieldSelector)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.common import FILE_MODE_ERROR, local_non_reserved_path, quantity_field
from nodeagent.k8s.manifests.tables import FIELD_REF_FIELDS, RESOURCE_REF_FIELDS
from nodeagent.k8s.validation import Raw, Walker, child

ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)

_VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)


# every path ConvertDownwardAPIFieldLabel knows; others fail conversion before the allowed-list check
_KNOWN_FIELD_PATHS = frozenset(
    {
        *ENV_FIELD_PATHS,
        *_VOLUME_FIELD_PATHS,
        "spec.restartPolicy",
        "spec.schedulerName",
        "status.phase",
    }
)

_RESOURCE_FIELD_PATHS = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)

_BYTE_DIVISOR_ERROR = (
    "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported "
    "with the {what} resource"
)


def decode_downward_file(w: Walker, f: Raw, p: str) -> model.DownwardAPIVolumeFile:
    """One downwardAPI volume file: a path and exactly one of fieldRef and resourceFieldRef."""
    target = w.str_(f, "path", p)
    if not target:
        w.error(child(p, "path"), v.required())
    local_non_reserved_path(w, target, child(p, "path"))
    field_ref = decode_field_ref(w, f, p, _VOLUME_FIELD_PATHS)
    resource_ref = decode_resource_field_ref(w, f, p, volume=True)
    if field_ref is not None and resource_ref is not None:
        w.error(p, v.invalid("resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif (
        field_ref is None
        and resource_ref is None
        and f.get("fieldRef") is None
        and f.get("resourceFieldRef") is None
    ):
        w.error(p, v.required("one of fieldRef and resourceFieldRef is required"))
    mode = w.opt_int(f, "mode", p)
    if mode is not None and not 0 <= mode <= 0o777:
        w.error(child(p, "mode"), v.invalid(mode, FILE_MODE_ERROR))
    return model.DownwardAPIVolumeFile(target, field_ref, resource_ref, mode)


def decode_field_ref(
    w: Walker, d: Raw, path: str, allowed: Sequence[str]
) -> model.ObjectFieldSelector | None:
    """A fieldRef; `allowed` differs for env vars and volume files."""
    raw = w.obj(d, "fieldRef", path, FIELD_REF_FIELDS)
    if raw is None:
        return None
    p = child(path, "fieldRef")
    api = w.str_(raw, "apiVersion", p) or "v1"  # SetDefaults_ObjectFieldSelector
    field_path = w.str_(raw, "fieldPath", p)
    if not field_path:
        w.error(child(p, "fieldPath"), v.required())
        return model.ObjectFieldSelector(field_path, api)
    if api != "v1":
        w.error(
            child(p, "fieldPath"),
            v.invalid(field_path, f"error converting fieldPath: unsupported pod version: {api}"),
        )
        return model.ObjectFieldSelector(field_path, api)
    base, subscript = _split_subscript(field_path)
    if subscript is not None:
        if base not in ("metadata.labels", "metadata.annotations"):
            w.error(
                child(p, "fieldPath"),
                v.invalid(field_path, f"error converting fieldPath: field label not supported: {base}"),
            )
        else:
            check = subscript.lower() if base == "metadata.annotations" else subscript
            for msg in v.qualified_name(check):
                w.error(p, v.invalid(check, msg))
    elif field_path not in _KNOWN_FIELD_PATHS:
        w.error(
            child(p, "fieldPath"),
            v.invalid(field_path, f"error converting fieldPath: field label not supported: {field_path}"),
        )
    elif field_path not in allowed:
        w.error(child(p, "fieldPath"), v.unsupported(field_path, sorted(allowed)))
    return model.ObjectFieldSelector(field_path, api)


def _split_subscript(field_path: str) -> tuple[str, str | None]:
    """`metadata.labels['app']` → ("metadata.labels", "app"), as fieldpath.SplitMaybeSubscriptedPath."""
    if not field_path.endswith("']"):
        return field_path, None
    start = field_path.find("['")
    if start < 0:
        return field_path, None
    return field_path[:start], field_path[start + 2 : -2]


_CPU_DIVISORS = frozenset({Fraction(1, 1000), Fraction(1)})

_BYTE_DIVISORS = frozenset(
    [Fraction(1)]
    + [Fraction(10) ** (3 * i) for i in range(1, 7)]
    + [Fraction(2) ** (10 * i) for i in range(1, 7)]
)


def decode_resource_field_ref(
    w: Walker, d: Raw, path: str, *, volume: bool
) -> model.ResourceFieldSelector | None:
    """A resourceFieldRef; in a volume file `containerName` is required."""
    raw = w.obj(d, "resourceFieldRef", path, RESOURCE_REF_FIELDS)
    if raw is None:
        return None
    p = child(path, "resourceFieldRef")
    container = w.str_(raw, "containerName", p)
    resource = w.str_(raw, "resource", p)
    divisor = quantity_field(w, raw, "divisor", p)
    if volume and not container:
        w.error(child(p, "containerName"), v.required())
    elif not resource:
        w.error(child(p, "resource"), v.required())
    elif resource not in _RESOURCE_FIELD_PATHS and not resource.startswith(
        ("requests.hugepages-", "limits.hugepages-")
    ):
        w.error(child(p, "resource"), v.unsupported(resource, _RESOURCE_FIELD_PATHS))
    if divisor is not None and divisor.value != 0:
        if resource in ("limits.cpu", "requests.cpu") and divisor.value not in _CPU_DIVISORS:
            w.error(
                child(p, "divisor"),
                v.invalid(resource, "only divisor's values 1m and 1 are supported with the cpu resource"),
            )
        elif (
            resource.split(".")[-1] in ("memory", "ephemeral-storage") and divisor.value not in _BYTE_DIVISORS
        ):
            w.error(
                child(p, "divisor"),
                v.invalid(
                    resource,
                    _BYTE_DIVISOR_ERROR.format(
                        what="memory" if resource.endswith("memory") else "local ephemeral storage"
                    ),
                ),
            )
    return model.ResourceFieldSelector(resource, container, divisor)
