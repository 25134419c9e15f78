"""ConfigMaps and Secrets (ValidateConfigMap, ValidateSecret). A Secret's value is never echoed in
an error."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.metadata import decode_object_meta
from nodeagent.k8s.manifests.tables import CONDITIONAL_WARNINGS
from nodeagent.k8s.validation import Raw, Walker

_MAX_SECRET_SIZE = 1024 * 1024


def _check_keys(
    w: Walker, keys: Iterable[str], field_name: str, other: Mapping[str, object], other_name: str
) -> None:
    for k in keys:
        kp = v.key(field_name, k)
        for msg in v.config_map_key(k):
            w.error(kp, v.invalid(k, msg))
        if k in other:
            w.error(kp, v.invalid(k, f"duplicate of key present in {other_name}"))


def decode_configmap(w: Walker, d: Raw) -> model.ConfigMap:
    """A ConfigMap: data and binaryData, keys unique across both, size capped."""
    meta = decode_object_meta(w, d)
    data = w.str_map(d, "data", "")
    binary: dict[str, bytes] = {}
    raw_binary = w.obj(d, "binaryData", "") or {}
    for k, val in raw_binary.items():
        decoded = _base64(w, val, v.key("binaryData", k))
        if decoded is not None:
            binary[k] = decoded
    _check_keys(w, data, "data", binary, "binaryData")
    _check_keys(w, binary, "binaryData", data, "data")
    w.opt_bool(d, "immutable", "")
    if sum(len(x) for x in data.values()) + sum(len(x) for x in binary.values()) > _MAX_SECRET_SIZE:
        w.error("", v.too_long(_MAX_SECRET_SIZE))
    return model.ConfigMap(metadata=meta, data=data, binary_data=binary)


def _base64(w: Walker, raw: object, path: str) -> bytes | None:
    """Decode like Go's base64.StdEncoding (newlines ignored); never echo the (secret) value."""
    if raw is None:
        return b""
    if not isinstance(raw, str):
        w.error(path, v.invalid("<hidden>", "must be a base64-encoded string"))
        return None
    try:
        return base64.b64decode(raw.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        w.error(path, "Invalid value: <hidden>: illegal base64 data")
        return None


_SECRET_REQUIRED_KEYS: Mapping[str, tuple[str, ...]] = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def decode_secret(w: Walker, d: Raw) -> model.Secret:
    """A Secret: data decoded, stringData merged over it, required keys checked per type."""
    meta = decode_object_meta(w, d)
    data: dict[str, bytes] = {}
    for k, val in (w.obj(d, "data", "") or {}).items():
        decoded = _base64(w, val, v.key("data", k))
        if decoded is not None:
            data[k] = decoded
    string_data = w.str_map(d, "stringData", "")
    for k, s in string_data.items():  # the API server merges stringData over data
        data[k] = s.encode()
    for k in data:
        for msg in v.config_map_key(k):
            w.error(v.key("data", k), v.invalid(k, msg))
    typ = w.str_(d, "type", "") or "Opaque"
    for required_key in _SECRET_REQUIRED_KEYS.get(typ, ()):
        if required_key not in data:
            w.error(v.key("data", required_key), v.required())
    if typ == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" in data:
        try:
            json.loads(data[".dockerconfigjson"])
        except ValueError as exc:
            w.error("data[.dockerconfigjson]", v.invalid("<secret contents redacted>", str(exc)))
    if typ == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        w.error("data[username]", v.required("must have at least one of username or password"))
    if typ == "kubernetes.io/service-account-token":
        w.warn("type", CONDITIONAL_WARNINGS["Secret type kubernetes.io/service-account-token"])
    w.opt_bool(d, "immutable", "")
    if sum(len(x) for x in data.values()) > _MAX_SECRET_SIZE:
        w.error("data", v.too_long(_MAX_SECRET_SIZE))
    return model.Secret(metadata=meta, data=data, type=typ)
