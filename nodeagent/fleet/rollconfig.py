"""`nodeagent.io/roll-config: "true"` (pure helpers): a ConfigMap or Secret change is rolled out like a
template change. The DaemonSet's served template carries the content hashes of the ConfigMaps and
Secrets it uses (annotation CONFIG_HASH), so a config change is a new revision that replaces pods under
the same budget (the agent sees a new template), and each node's bundle carries the config content
bound to its revision until its turn. Hashes derive from Secret content: they are truncated digests,
never the content, and the full objects are kept only in serve's state dir (mode 0700).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

CONFIG_HASH = "nodeagent.io/config-hash"
_CM_KEYS = ("configMap", "configMapRef", "configMapKeyRef")
_SECRET_KEYS = ("secret", "secretRef", "secretKeyRef")


def refs(template: object) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a raw pod template uses: volumes, projected sources,
    env valueFrom and envFrom."""
    out: set[tuple[str, str]] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, dict):
                    name = v.get("name") or v.get("secretName")
                    if k in _CM_KEYS and isinstance(name, str) and name:
                        out.add(("ConfigMap", name))
                    elif k in _SECRET_KEYS and isinstance(name, str) and name:
                        out.add(("Secret", name))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(template)
    return out


def digest(raw: Mapping[str, Any]) -> str:
    """The content hash of a ConfigMap or Secret (its data fields only)."""
    content = {k: raw.get(k) for k in ("data", "stringData", "binaryData") if k in raw}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(bindings: Mapping[tuple[str, str], str]) -> str:
    return ",".join(f"{kind}/{name}={h}" for (kind, name), h in sorted(bindings.items()))


def decode(value: str) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for item in value.split(","):
        ref, _, h = item.partition("=")
        kind, _, name = ref.partition("/")
        if kind and name and h:
            out[(kind, name)] = h
    return out


def annotate(raw: Mapping[str, Any], bindings: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The DaemonSet with its pod template annotated with the config hashes it is served with."""
    out = copy.deepcopy(dict(raw))
    template = out.setdefault("spec", {}).setdefault("template", {})
    meta = template.setdefault("metadata", {})
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    meta["annotations"] = {**annotations, CONFIG_HASH: encode(bindings)}
    return out


def bindings_of(template_json: str) -> dict[tuple[str, str], str]:
    """The config hashes a revision's template was served with ({} when not roll-config)."""
    try:
        t = json.loads(template_json)
        value = ((t.get("metadata") or {}).get("annotations") or {}).get(CONFIG_HASH, "")
    except (ValueError, AttributeError):
        return {}
    return decode(value) if isinstance(value, str) else {}
