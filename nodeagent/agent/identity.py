"""Names, labels and the versioned spec hash: everything that lets Docker itself be the database.

A container's name and labels say which pod, container, revision and restart attempt it is, so the
agent can rebuild its whole view from one `docker ps` and never needs local state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from fractions import Fraction
from typing import Any

from nodeagent.agent import labels
from nodeagent.k8s import model, quantity

HASH_SCHEME = "v1"

# the label scheme lives in nodeagent.agent.labels (names, encode, decode); these names stay for callers
LABEL_MANAGED = labels.MANAGED
LABEL_NODE = labels.NODE
LABEL_OWNER = labels.OWNER
LABEL_SPEC_HASH = labels.SPEC_HASH
LABEL_ATTEMPT = labels.ATTEMPT
LABEL_ROLE = labels.ROLE
LABEL_INIT_INDEX = labels.INIT_INDEX
LABEL_POD_UID = labels.POD_UID
LABEL_POD_NAME = labels.POD_NAME
LABEL_POD_NAMESPACE = labels.POD_NAMESPACE
LABEL_CONTAINER_NAME = labels.CONTAINER_NAME

ROLE_APP = labels.ROLE_APP
ROLE_INIT = labels.ROLE_INIT
ROLE_SANDBOX = labels.ROLE_SANDBOX


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("hash", True)  # model.NOT_HASHED: checked by policies, never applied
        }
    if isinstance(value, quantity.Quantity):
        return str(value.value)
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


_hashed: dict[int, tuple[model.PodTemplateSpec, str]] = {}  # id(template) -> (template, its hash)
_HASHED_MAX = 512  # templates remembered (kept alive by this cache: an idle agent stays small) at most


def spec_hash(template: model.PodTemplateSpec) -> str:
    """`v1-<hex>`: changes exactly when the pod template (after defaulting) changes.

    The scheme prefix lets a later nodeagent change what goes into the hash without every running pod
    looking outdated: pods whose scheme differs are compared by the scheme they were made with.

    Remembered per template object: a parsed template is frozen and every pass plans with the same
    objects until its source changes, and hashing one walks the whole template (about 0.5 ms each, per
    DaemonSet per pass here).
    """
    got = _hashed.get(id(template))
    if got is not None and got[0] is template:
        return got[1]
    blob = json.dumps(_canonical(template), sort_keys=True, separators=(",", ":"))
    digest = f"{HASH_SCHEME}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
    if len(_hashed) >= _HASHED_MAX:
        _hashed.clear()
    _hashed[id(template)] = (template, digest)
    return digest


def hash_digest(spec_hash_value: str) -> str:
    """The hex part of a spec hash."""
    return spec_hash_value.split("-", 1)[-1]


def owner_daemonset(namespace: str, name: str) -> str:
    return f"DaemonSet/{namespace}/{name}"


def owner_pod(namespace: str, name: str) -> str:
    return f"Pod/{namespace}/{name}"


def parse_owner(owner: str) -> tuple[str, str, str] | None:
    """`DaemonSet/ns/name` -> ("DaemonSet", "ns", "name"); None when malformed."""
    parts = owner.split("/")
    if len(parts) != 3 or parts[0] not in ("DaemonSet", "Pod"):
        return None
    return parts[0], parts[1], parts[2]


def daemon_pod_name(daemonset_name: str, spec_hash_value: str) -> str:
    """`<daemonset>-<first 5 characters of the spec hash>`, so two revisions can run side by side."""
    return f"{daemonset_name}-{hash_digest(spec_hash_value)[:5]}"


def static_pod_name(pod_name: str, node_name: str) -> str:
    """`<pod>-<node>`, as the kubelet names static (mirror) pods."""
    return f"{pod_name}-{node_name}"


_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def container_name(namespace: str, pod: str, container: str, attempt: int, node: str = "") -> str:
    """Docker container name, deterministic per (pod, container, node, attempt), as dockershim's `k8s_...`.

    A create that half-finished before a crash is found by this name and finished, never duplicated. The
    node is part of it because DaemonSet pods have the same name on every node, and several nodes (tests,
    a simulation) may share one engine.
    """
    raw = (
        f"k8s_{container}_{pod}_{namespace}_{node}_{attempt}"
        if node
        else f"k8s_{container}_{pod}_{namespace}_{attempt}"
    )
    return _UNSAFE.sub("-", raw)


def sandbox_name(namespace: str, pod: str, node: str = "") -> str:
    raw = f"k8s_POD_{pod}_{namespace}_{node}" if node else f"k8s_POD_{pod}_{namespace}"
    return _UNSAFE.sub("-", raw)


def pod_uid(owner: str, pod: str) -> str:
    """A stable uid for a pod, derived from its owner and name (no API server hands one out)."""
    return hashlib.sha256(f"{owner}|{pod}".encode()).hexdigest()[:32]


def container_labels(
    *,
    owner: str,
    namespace: str,
    pod: str,
    container: str,
    spec_hash_value: str,
    attempt: int,
    role: str,
    init_index: int | None = None,
) -> dict[str, str]:
    """A container's labels (labels.encode): which pod, container, revision, attempt and role it is."""
    return labels.encode(
        labels.ContainerLabels(
            owner=owner,
            namespace=namespace,
            pod=pod,
            container=container,
            spec_hash=spec_hash_value,
            attempt=attempt,
            role=role,
            pod_uid=pod_uid(owner, pod),
            init_index=init_index,
        )
    )
