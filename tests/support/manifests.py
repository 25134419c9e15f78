"""The one manifest factory of the tests and the benchmark: DaemonSets and static pods as plain dicts.

Defaults make a pod that runs anywhere without a registry and stops at once: one container `main`,
`imagePullPolicy: Never`, busybox `sleep` as PID 1 (it ignores SIGTERM, so a stop waits out the grace
period: 1 s here). Pass None to leave a field out (Kubernetes' default applies); `pod` and `container`
add or override fields of the pod spec and of the container. `to_yaml` writes them out.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

import yaml

SLEEP = ("sleep", "1000000")
DEFAULT_IMAGE = "busybox:1.36"


def sh(script: str) -> list[str]:
    """`sh -c script` as a container command."""
    return ["sh", "-c", script]


class PodArgs(TypedDict, total=False):
    """The pod template's knobs, shared by `daemonset` and `static_pod` (defaults in `pod_spec`)."""

    image: str
    command: Sequence[str] | None
    grace: int | None
    pull_policy: str | None
    pod: Mapping[str, Any] | None  # pod spec fields, added or overriding
    container: Mapping[str, Any] | None  # fields of the container, added or overriding


def pod_spec(**args: Unpack[PodArgs]) -> dict[str, Any]:
    """One container `main`; None leaves a field out."""
    c: dict[str, Any] = {"name": "main", "image": args.get("image", DEFAULT_IMAGE)}
    pull_policy = args.get("pull_policy", "Never")
    if pull_policy is not None:
        c["imagePullPolicy"] = pull_policy
    command = args.get("command", SLEEP)
    if command is not None:
        c["command"] = list(command)
    spec: dict[str, Any] = {}
    grace = args.get("grace", 1)
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    spec["containers"] = [{**c, **dict(args.get("container") or {})}]
    return {**spec, **dict(args.get("pod") or {})}


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    return {"name": name} if namespace is None else {"name": name, "namespace": namespace}


def daemonset(
    name: str,
    *,
    namespace: str | None = "default",
    labels: Mapping[str, str] | None = None,
    **args: Unpack[PodArgs],
) -> dict[str, Any]:
    """An apps/v1 DaemonSet selecting its template by `labels` (default `app: <name>`)."""
    match = dict(labels or {"app": name})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _metadata(name, namespace),
        "spec": {
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": dict(match)},  # a copy: one shared dict would dump as a YAML alias
                "spec": pod_spec(**args),
            },
        },
    }


def rolling(doc: Mapping[str, Any], max_unavailable: str, *, min_ready_seconds: int = 0) -> dict[str, Any]:
    """`doc` (a DaemonSet from `daemonset`) with a RollingUpdate budget and, when set, minReadySeconds."""
    out = copy.deepcopy(dict(doc))
    if min_ready_seconds:
        out["spec"]["minReadySeconds"] = min_ready_seconds
    out["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": max_unavailable},
    }
    return out


def static_pod(name: str, *, namespace: str | None = "default", **args: Unpack[PodArgs]) -> dict[str, Any]:
    """A v1 Pod, as a `staticPodPath` manifest."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(name, namespace),
        "spec": pod_spec(**args),
    }


def to_yaml(*docs: Mapping[str, Any]) -> str:
    """One document, or several separated by `---`; flat maps and lists in flow style, as people write
    them (`matchLabels: {app: x}`)."""
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False, default_flow_style=None)


def put(directory: Path, name: str, doc: Mapping[str, Any] | str) -> Path:
    """Write `<directory>/<name>.yaml` atomically (a rename, as editors and config management do)."""
    path = directory / f"{name}.yaml"
    tmp = directory / f".{name}.tmp"
    tmp.write_text(doc if isinstance(doc, str) else yaml.safe_dump(dict(doc)))
    os.replace(tmp, path)
    return path


def without_image(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` (a DaemonSet or Pod from this module) with no image on its containers: valid YAML, an invalid
    object, for tests of what a bad document does."""
    out = copy.deepcopy(dict(doc))
    spec = out["spec"]["template"]["spec"] if out["kind"] == "DaemonSet" else out["spec"]
    for c in spec["containers"]:
        c.pop("image", None)
    return out
