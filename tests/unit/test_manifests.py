"""manifests: loading, Kubernetes validation (exact field paths and messages), defaulting and warnings."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.k8s import manifests, model

T = "spec.template.spec"
C0 = f"{T}.containers[0]"
DELETE = object()


def daemonset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                    "volumes": [{"name": "data", "hostPath": {"path": "/var/lib/agent"}}],
                },
            },
        },
    }


def _tokens(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def setp(doc: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """Set (or with DELETE remove) the value at a field path like `spec.containers[0].image`."""
    tokens = _tokens(path)
    cur: Any = doc
    for tok in tokens[:-1]:
        if isinstance(tok, str) and isinstance(cur, dict) and tok not in cur:
            cur[tok] = {}
        cur = cur[tok]
    last = tokens[-1]
    if value is DELETE:
        del cur[last]
    elif isinstance(cur, list) and isinstance(last, int) and last == len(cur):
        cur.append(value)
    else:
        cur[last] = value
    return doc


def with_(*changes: tuple[str, object]) -> dict[str, Any]:
    doc = daemonset()
    for path, value in changes:
        setp(doc, path, value)
    return doc


def parse(doc: object) -> tuple[model.KubeObject | None, list[tuple[str, str]], list[tuple[str, str]]]:
    obj, errors, warnings = manifests.parse_object(copy.deepcopy(doc), "f.yaml", 0)
    return obj, [(p.path, p.message) for p in errors], [(p.path, p.message) for p in warnings]


def ds_of(doc: dict[str, Any]) -> model.DaemonSet:
    obj, errors, _ = parse(doc)
    assert errors == []
    assert isinstance(obj, model.DaemonSet)
    return obj


def test_minimal_daemonset_is_valid() -> None:
    obj, errors, warnings = parse(daemonset())
    assert errors == []
    assert warnings == []
    assert isinstance(obj, model.DaemonSet)
    assert obj.metadata.name == "agent"


# --- validation: (changes, path, message) — message ending in "…" is a prefix -------------------

GPU = "nvidia.com/gpu"
MATCH_EXPR = "spec.selector.matchExpressions[0]"
NA = f"{T}.affinity.nodeAffinity"
REQ = f"{NA}.requiredDuringSchedulingIgnoredDuringExecution"
TERM0 = f"{REQ}.nodeSelectorTerms[0]"
PREF = f"{NA}.preferredDuringSchedulingIgnoredDuringExecution"
RU = "spec.updateStrategy.rollingUpdate"
RFC1123_LABEL = "a lowercase RFC 1123 label must consist of…"

ERROR_CASES: list[tuple[str, list[tuple[str, object]], str, str]] = [
    # metadata
    (
        "name required",
        [("metadata.name", DELETE)],
        "metadata.name",
        "Required value: name or generateName is required",
    ),
    (
        "name subdomain",
        [("metadata.name", "Bad_Name")],
        "metadata.name",
        'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain…',
    ),
    (
        "name too long",
        [("metadata.name", "a" * 254)],
        "metadata.name",
        "Invalid value: …must be no more than 253 characters",
    ),
    (
        "namespace label",
        [("metadata.namespace", "a.b")],
        "metadata.namespace",
        'Invalid value: "a.b": ' + RFC1123_LABEL,
    ),
    (
        "label key",
        [("metadata.labels", {"a/b/c": "x"})],
        "metadata.labels",
        'Invalid value: "a/b/c": a qualified name must…',
    ),
    (
        "label key prefix",
        [("metadata.labels", {"Ex.com/a": "x"})],
        "metadata.labels",
        'Invalid value: "Ex.com/a": prefix part a lowercase RFC 1123 subdomain…',
    ),
    (
        "label value",
        [("metadata.labels", {"a": "-x"})],
        "metadata.labels",
        'Invalid value: "-x": a valid label must be an empty string…',
    ),
    (
        "label value length",
        [("metadata.labels", {"a": "x" * 64})],
        "metadata.labels",
        "Invalid value: …: must be no more than 63 characters",
    ),
    (
        "annotation key",
        [("metadata.annotations", {"@x": "1"})],
        "metadata.annotations",
        'Invalid value: "@x": name part must consist of…',
    ),
    (
        "annotation size",
        [("metadata.annotations", {"a": "x" * 262144})],
        "metadata.annotations",
        "Too long: must have at most 262144 bytes",
    ),
    (
        "template label",
        [("spec.template.metadata.labels", {"app": "agent", "b": "-"})],
        "spec.template.metadata.labels",
        'Invalid value: "-": a valid label…',
    ),
    # selector
    ("selector required", [("spec.selector", DELETE)], "spec.selector", "Required value"),
    (
        "selector empty",
        [("spec.selector", {})],
        "spec.selector",
        "Invalid value: {}: empty selector is invalid for daemonset",
    ),
    (
        "selector mismatch",
        [("spec.template.metadata.labels", {"app": "other"})],
        "spec.template.metadata.labels",
        'Invalid value: {"app": "other"}: `selector` does not match template `labels`',
    ),
    (
        "selector no template labels",
        [("spec.template.metadata", {})],
        "spec.template.metadata.labels",
        "Invalid value: {}: `selector` does not match template `labels`",
    ),
    (
        "selector In mismatch",
        [("spec.selector", {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]})],
        "spec.template.metadata.labels",
        "Invalid value: …`selector` does not match template `labels`",
    ),
    (
        "selector operator",
        [
            (
                "spec.selector",
                {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["agent"]}]},
            )
        ],
        f"{MATCH_EXPR}.operator",
        'Invalid value: "Equals": not a valid selector operator',
    ),
    (
        "selector In values",
        [("spec.selector", {"matchExpressions": [{"key": "app", "operator": "In"}]})],
        f"{MATCH_EXPR}.values",
        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
    ),
    (
        "selector Exists values",
        [("spec.selector", {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]})],
        f"{MATCH_EXPR}.values",
        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
    ),
    (
        "selector key",
        [("spec.selector", {"matchExpressions": [{"key": "a b", "operator": "Exists"}]})],
        f"{MATCH_EXPR}.key",
        'Invalid value: "a b": name part must consist…',
    ),
    (
        "selector value",
        [("spec.selector", {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a b"]}]})],
        f"{MATCH_EXPR}.values[0]",
        'Invalid value: "a b": a valid label…',
    ),
    (
        "selector matchLabels",
        [("spec.selector.matchLabels", {"app": "a b"})],
        "spec.selector.matchLabels",
        'Invalid value: "a b": a valid label…',
    ),
    # DaemonSet template rules
    (
        "restartPolicy Never",
        [(f"{T}.restartPolicy", "Never")],
        f"{T}.restartPolicy",
        'Unsupported value: "Never": supported values: "Always"',
    ),
    (
        "restartPolicy bogus",
        [(f"{T}.restartPolicy", "Sometimes")],
        f"{T}.restartPolicy",
        'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
    ),
    (
        "activeDeadlineSeconds",
        [(f"{T}.activeDeadlineSeconds", 10)],
        f"{T}.activeDeadlineSeconds",
        "Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
    ),
    ("template required", [("spec.template", DELETE)], "spec.template", "Required value"),
    (
        "minReadySeconds",
        [("spec.minReadySeconds", -1)],
        "spec.minReadySeconds",
        "Invalid value: -1: must be greater than or equal to 0",
    ),
    (
        "revisionHistoryLimit",
        [("spec.revisionHistoryLimit", -1)],
        "spec.revisionHistoryLimit",
        "Invalid value: -1: must be greater than or equal to 0",
    ),
    (
        "grace",
        [(f"{T}.terminationGracePeriodSeconds", -1)],
        f"{T}.terminationGracePeriodSeconds",
        "Invalid value: -1: must be greater than or equal to 0",
    ),
    # updateStrategy
    (
        "strategy type",
        [("spec.updateStrategy", {"type": "Recreate"})],
        "spec.updateStrategy",
        'Unsupported value: "Recreate": supported values: "RollingUpdate", "OnDelete"',
    ),
    (
        "both zero",
        [(RU, {"maxUnavailable": 0})],
        f"{RU}.maxUnavailable",
        "Required value: cannot be 0 when maxSurge is 0",
    ),
    (
        "both zero percent",
        [(RU, {"maxUnavailable": "0%", "maxSurge": 0})],
        f"{RU}.maxUnavailable",
        "Required value: cannot be 0 when maxSurge is 0",
    ),
    (
        "both non-zero",
        [(RU, {"maxSurge": 1})],
        f"{RU}.maxSurge",
        "Invalid value: 1: may not be set when maxUnavailable is non-zero",
    ),
    (
        "percent > 100",
        [(RU, {"maxUnavailable": "150%"})],
        f"{RU}.maxUnavailable",
        'Invalid value: "150%": must not be greater than 100%',
    ),
    (
        "percent syntax",
        [(RU, {"maxUnavailable": "ten"})],
        f"{RU}.maxUnavailable",
        "Invalid value: \"ten\": a valid percent string must be a numeric string followed by an ending '%'…",
    ),
    (
        "negative",
        [(RU, {"maxUnavailable": -1})],
        f"{RU}.maxUnavailable",
        "Invalid value: -1: must be greater than or equal to 0",
    ),
    (
        "maxSurge type",
        [(RU, {"maxUnavailable": 0, "maxSurge": [1]})],
        f"{RU}.maxSurge",
        "Invalid value: …must be an integer or a string",
    ),
    # containers
    ("containers required", [(f"{T}.containers", DELETE)], f"{T}.containers", "Required value"),
    ("containers empty", [(f"{T}.containers", [])], f"{T}.containers", "Required value"),
    ("container name required", [(f"{C0}.name", DELETE)], f"{C0}.name", "Required value"),
    (
        "container name label",
        [(f"{C0}.name", "Main")],
        f"{C0}.name",
        'Invalid value: "Main": ' + RFC1123_LABEL,
    ),
    (
        "container name dup",
        [(f"{T}.containers[1]", {"name": "main", "image": "x"})],
        f"{T}.containers[1].name",
        'Duplicate value: "main"',
    ),
    (
        "init name dup",
        [(f"{T}.initContainers", [{"name": "main", "image": "x"}])],
        f"{T}.initContainers[0].name",
        'Duplicate value: "main"',
    ),
    ("image required", [(f"{C0}.image", DELETE)], f"{C0}.image", "Required value"),
    (
        "image whitespace",
        [(f"{C0}.image", " busybox")],
        f"{C0}.image",
        'Invalid value: " busybox": must not have leading or trailing whitespace',
    ),
    (
        "pull policy",
        [(f"{C0}.imagePullPolicy", "Sometimes")],
        f"{C0}.imagePullPolicy",
        'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"',
    ),
    (
        "container restartPolicy",
        [(f"{C0}.restartPolicy", "Always")],
        f"{C0}.restartPolicy",
        "Forbidden: may not be set for non-init containers",
    ),
    (
        "init restartPolicy",
        [(f"{T}.initContainers", [{"name": "i", "image": "x", "restartPolicy": "OnFailure"}])],
        f"{T}.initContainers[0].restartPolicy",
        'Unsupported value: "OnFailure": supported values: "Always"',
    ),
    (
        "init probe",
        [
            (
                f"{T}.initContainers",
                [{"name": "i", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}}],
            )
        ],
        f"{T}.initContainers[0].livenessProbe",
        "Forbidden: may not be set for init containers without restartPolicy=Always",
    ),
    (
        "init lifecycle",
        [(f"{T}.initContainers", [{"name": "i", "image": "x", "lifecycle": {}}])],
        f"{T}.initContainers[0].lifecycle",
        "Forbidden: may not be set for init containers without restartPolicy=Always",
    ),
    (
        "termination message policy",
        [(f"{C0}.terminationMessagePolicy", "Never")],
        f"{C0}.terminationMessagePolicy",
        'Unsupported value: "Never": supported values: "File", "FallbackToLogsOnError"',
    ),
    # ports
    (
        "containerPort required",
        [(f"{C0}.ports", [{"name": "http"}])],
        f"{C0}.ports[0].containerPort",
        "Required value",
    ),
    (
        "containerPort range",
        [(f"{C0}.ports", [{"containerPort": 70000}])],
        f"{C0}.ports[0].containerPort",
        "Invalid value: 70000: must be between 1 and 65535, inclusive",
    ),
    (
        "hostPort range",
        [(f"{C0}.ports", [{"containerPort": 80, "hostPort": -1}])],
        f"{C0}.ports[0].hostPort",
        "Invalid value: -1: must be between 1 and 65535, inclusive",
    ),
    (
        "protocol",
        [(f"{C0}.ports", [{"containerPort": 80, "protocol": "HTTP"}])],
        f"{C0}.ports[0].protocol",
        'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
    ),
    (
        "port name chars",
        [(f"{C0}.ports", [{"containerPort": 80, "name": "HTTP_1"}])],
        f"{C0}.ports[0].name",
        'Invalid value: "HTTP_1": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
    ),
    (
        "port name length",
        [(f"{C0}.ports", [{"containerPort": 80, "name": "a" * 16}])],
        f"{C0}.ports[0].name",
        "Invalid value: …must be no more than 15 characters",
    ),
    (
        "port name letter",
        [(f"{C0}.ports", [{"containerPort": 80, "name": "8080"}])],
        f"{C0}.ports[0].name",
        'Invalid value: "8080": must contain at least one letter (a-z)',
    ),
    (
        "port name hyphens",
        [(f"{C0}.ports", [{"containerPort": 80, "name": "a--b"}])],
        f"{C0}.ports[0].name",
        'Invalid value: "a--b": must not contain consecutive hyphens',
    ),
    (
        "port name dup",
        [(f"{C0}.ports", [{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}])],
        f"{C0}.ports[1].name",
        'Duplicate value: "web"',
    ),
    (
        "hostNetwork hostPort",
        [(f"{T}.hostNetwork", True), (f"{C0}.ports", [{"containerPort": 80, "hostPort": 8080}])],
        f"{C0}.ports[0].hostPort",
        "Invalid value: 8080: must match `containerPort` when `hostNetwork` is true",
    ),
    (
        "hostPort dup",
        [
            (f"{C0}.ports", [{"containerPort": 80, "hostPort": 80}]),
            (
                f"{T}.containers[1]",
                {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 80}]},
            ),
        ],
        f"{T}.containers[1].ports[0].hostPort",
        'Duplicate value: "TCP//80"',
    ),
    # env
    (
        "env name",
        [(f"{C0}.env", [{"name": "1A", "value": "x"}])],
        f"{C0}.env[0].name",
        "Invalid value: \"1A\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit…",  # noqa: E501
    ),
    ("env name required", [(f"{C0}.env", [{"value": "x"}])], f"{C0}.env[0].name", "Required value"),
    (
        "env value type",
        [(f"{C0}.env", [{"name": "A", "value": 3}])],
        f"{C0}.env[0].value",
        "Invalid value: <number>: must be of type string",
    ),
    (
        "env no source",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {}}])],
        f"{C0}.env[0].valueFrom",
        'Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`',  # noqa: E501
    ),
    (
        "env value and valueFrom",
        [
            (
                f"{C0}.env",
                [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            )
        ],
        f"{C0}.env[0].valueFrom",
        'Invalid value: "": may not be specified when `value` is not empty',
    ),
    (
        "env two sources",
        [
            (
                f"{C0}.env",
                [
                    {
                        "name": "A",
                        "valueFrom": {
                            "fieldRef": {"fieldPath": "spec.nodeName"},
                            "configMapKeyRef": {"name": "c", "key": "k"},
                        },
                    }
                ],
            )
        ],
        f"{C0}.env[0].valueFrom",
        'Invalid value: "": may not have more than one field specified at a time',
    ),
    (
        "env fieldPath unsupported",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}])],
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        'Unsupported value: "status.phase": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"',  # noqa: E501
    ),
    (
        "env fieldPath unknown",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}])],
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        'Invalid value: "spec.bogus": error converting fieldPath: field label not supported: spec.bogus',
    ),
    (
        "env fieldPath required",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {}}}])],
        f"{C0}.env[0].valueFrom.fieldRef.fieldPath",
        "Required value",
    ),
    (
        "env configMapKeyRef key",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c"}}}])],
        f"{C0}.env[0].valueFrom.configMapKeyRef.key",
        "Required value",
    ),
    (
        "env secretKeyRef name",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "S", "key": "k"}}}])],
        f"{C0}.env[0].valueFrom.secretKeyRef.name",
        'Invalid value: "S": a lowercase RFC 1123 subdomain…',
    ),
    (
        "env resource",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}])],
        f"{C0}.env[0].valueFrom.resourceFieldRef.resource",
        'Unsupported value: "limits.gpu": supported values: …',
    ),
    (
        "envFrom none",
        [(f"{C0}.envFrom", [{"prefix": "X_"}])],
        f"{C0}.envFrom[0]",
        'Invalid value: "": must specify one of: `configMapRef` or `secretRef`',
    ),
    (
        "envFrom prefix",
        [(f"{C0}.envFrom", [{"prefix": "1", "configMapRef": {"name": "c"}}])],
        f"{C0}.envFrom[0].prefix",
        'Invalid value: "1": a valid environment variable name…',
    ),
    # volumes
    ("volume name required", [(f"{T}.volumes[0].name", DELETE)], f"{T}.volumes[0].name", "Required value"),
    (
        "volume name dup",
        [(f"{T}.volumes[1]", {"name": "data", "emptyDir": {}})],
        f"{T}.volumes[1].name",
        'Duplicate value: "data"',
    ),
    (
        "volume two types",  # validateVolumeSource sees emptyDir first, so hostPath is the extra one
        [(f"{T}.volumes[0].emptyDir", {})],
        f"{T}.volumes[0].hostPath",
        "Forbidden: may not specify more than 1 volume type",
    ),
    ("hostPath path", [(f"{T}.volumes[0].hostPath", {})], f"{T}.volumes[0].hostPath.path", "Required value"),
    (
        "hostPath backsteps",
        [(f"{T}.volumes[0].hostPath.path", "/var/../etc")],
        f"{T}.volumes[0].hostPath.path",
        "Invalid value: \"/var/../etc\": must not contain '..'",
    ),
    (
        "hostPath type",
        [(f"{T}.volumes[0].hostPath.type", "Dir")],
        f"{T}.volumes[0].hostPath.type",
        'Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"',  # noqa: E501
    ),
    (
        "configMap name",
        [(f"{T}.volumes[0]", {"name": "data", "configMap": {}})],
        f"{T}.volumes[0].configMap.name",
        "Required value",
    ),
    (
        "secret name",
        [(f"{T}.volumes[0]", {"name": "data", "secret": {}})],
        f"{T}.volumes[0].secret.secretName",
        "Required value",
    ),
    (
        "defaultMode",
        [(f"{T}.volumes[0]", {"name": "data", "configMap": {"name": "c", "defaultMode": 512}})],
        f"{T}.volumes[0].configMap.defaultMode",
        "Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
    ),
    (
        "items path",
        [
            (
                f"{T}.volumes[0]",
                {"name": "data", "configMap": {"name": "c", "items": [{"key": "k", "path": "/abs"}]}},
            )
        ],
        f"{T}.volumes[0].configMap.items[0].path",
        'Invalid value: "/abs": must be a relative path',
    ),
    (
        "items key",
        [(f"{T}.volumes[0]", {"name": "data", "secret": {"secretName": "s", "items": [{"path": "p"}]}})],
        f"{T}.volumes[0].secret.items[0].key",
        "Required value",
    ),
    (
        "items dotdot",
        [
            (
                f"{T}.volumes[0]",
                {"name": "data", "configMap": {"name": "c", "items": [{"key": "k", "path": "..x"}]}},
            )
        ],
        f"{T}.volumes[0].configMap.items[0].path",
        "Invalid value: \"..x\": must not start with '..'",
    ),
    (
        "emptyDir sizeLimit",
        [(f"{T}.volumes[0]", {"name": "data", "emptyDir": {"sizeLimit": "-1Gi"}})],
        f"{T}.volumes[0].emptyDir.sizeLimit",
        "Forbidden: SizeLimit field must be a valid resource quantity",
    ),
    (
        "downwardAPI item",
        [(f"{T}.volumes[0]", {"name": "data", "downwardAPI": {"items": [{"path": "p"}]}})],
        f"{T}.volumes[0].downwardAPI.items[0]",
        "Required value: one of fieldRef and resourceFieldRef is required",
    ),
    (
        "downwardAPI fieldPath",
        [
            (
                f"{T}.volumes[0]",
                {
                    "name": "data",
                    "downwardAPI": {"items": [{"path": "p", "fieldRef": {"fieldPath": "spec.nodeName"}}]},
                },
            )
        ],
        f"{T}.volumes[0].downwardAPI.items[0].fieldRef.fieldPath",
        'Unsupported value: "spec.nodeName": supported values: …',
    ),
    (
        "projected token expiry",
        [
            (
                f"{T}.volumes[0]",
                {
                    "name": "data",
                    "projected": {
                        "sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]
                    },
                },
            )
        ],
        f"{T}.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds",
        "Invalid value: 60: may not specify a duration less than 10 minutes",
    ),
    # volumeMounts
    (
        "mount not found",
        [(f"{C0}.volumeMounts", [{"name": "nope", "mountPath": "/x"}])],
        f"{C0}.volumeMounts[0].name",
        'Not found: "nope"',
    ),
    (
        "mount of invalid volume",
        [
            (f"{T}.volumes[0].hostPath.type", "Dir"),
            (f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x"}]),
        ],
        f"{C0}.volumeMounts[0].name",
        'Not found: "data"',
    ),
    (
        "mountPath required",
        [(f"{C0}.volumeMounts", [{"name": "data"}])],
        f"{C0}.volumeMounts[0].mountPath",
        "Required value",
    ),
    (
        "mountPath unique",
        [(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x"}, {"name": "data", "mountPath": "/x"}])],
        f"{C0}.volumeMounts[1].mountPath",
        'Invalid value: "/x": must be unique',
    ),
    (
        "subPath absolute",
        [(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x", "subPath": "/a"}])],
        f"{C0}.volumeMounts[0].subPath",
        'Invalid value: "/a": must be a relative path',
    ),
    (
        "subPath backsteps",
        [(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x", "subPath": "a/../../b"}])],
        f"{C0}.volumeMounts[0].subPath",
        "Invalid value: \"a/../../b\": must not contain '..'",
    ),
    (
        "subPathExpr exclusive",
        [(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x", "subPath": "a", "subPathExpr": "b"}])],
        f"{C0}.volumeMounts[0].subPathExpr",
        'Invalid value: "b": subPathExpr and subPath are mutually exclusive',
    ),
    (
        "mountPropagation enum",
        [(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x", "mountPropagation": "Shared"}])],
        f"{C0}.volumeMounts[0].mountPropagation",
        'Unsupported value: "Shared": supported values: "Bidirectional", "HostToContainer", "None"',
    ),
    (
        "bidirectional unprivileged",
        [(f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/x", "mountPropagation": "Bidirectional"}])],
        f"{C0}.volumeMounts[0].mountPropagation",
        "Forbidden: Bidirectional mount propagation is available only to privileged containers",
    ),
    # resources
    (
        "requests > limits",
        [(f"{C0}.resources", {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}})],
        f"{C0}.resources.requests",
        'Invalid value: "2": must be less than or equal to cpu limit of 1',
    ),
    (
        "requests > limits memory",
        [(f"{C0}.resources", {"limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}})],
        f"{C0}.resources.requests",
        'Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi',
    ),
    (
        "negative quantity",
        [(f"{C0}.resources", {"limits": {"memory": "-1"}})],
        f"{C0}.resources.limits[memory]",
        'Invalid value: "-1": must be greater than or equal to 0',
    ),
    (
        "bad quantity",
        [(f"{C0}.resources", {"requests": {"memory": "1Gb"}})],
        f"{C0}.resources.requests[memory]",
        'Invalid value: "1Gb": quantities must match the regular expression…',
    ),
    (
        "non-standard resource",
        [(f"{C0}.resources", {"limits": {"gpu": "1"}})],
        f"{C0}.resources.limits[gpu]",
        'Invalid value: "gpu": must be a standard resource for containers',
    ),
    (
        "extended integer",
        [(f"{C0}.resources", {"limits": {GPU: "500m"}})],
        f"{C0}.resources.limits[{GPU}]",
        'Invalid value: "500m": must be an integer',
    ),
    (
        "extended no limit",
        [(f"{C0}.resources", {"requests": {GPU: 1}})],
        f"{C0}.resources.limits",
        "Required value: Limit must be set for non overcommitable resources",
    ),
    (
        "extended unequal",
        [(f"{C0}.resources", {"requests": {GPU: 1}, "limits": {GPU: 2}})],
        f"{C0}.resources.requests",
        f'Invalid value: "1": must be equal to {GPU} limit of 2',
    ),
    # probes
    (
        "probe handler",
        [(f"{C0}.livenessProbe", {"periodSeconds": 5})],
        f"{C0}.livenessProbe",
        "Required value: must specify a handler type",
    ),
    (
        "probe two handlers",
        [(f"{C0}.readinessProbe", {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}})],
        f"{C0}.readinessProbe.tcpSocket",
        "Forbidden: may not specify more than 1 handler type",
    ),
    (
        "probe exec command",
        [(f"{C0}.livenessProbe", {"exec": {}})],
        f"{C0}.livenessProbe.exec.command",
        "Required value",
    ),
    (
        "probe port missing",
        [(f"{C0}.livenessProbe", {"httpGet": {"path": "/"}})],
        f"{C0}.livenessProbe.httpGet.port",
        "Invalid value: 0: must be between 1 and 65535, inclusive",
    ),
    (
        "probe port range",
        [(f"{C0}.livenessProbe", {"tcpSocket": {"port": 65536}})],
        f"{C0}.livenessProbe.tcpSocket.port",
        "Invalid value: 65536: must be between 1 and 65535, inclusive",
    ),
    (
        "probe port name",
        [(f"{C0}.livenessProbe", {"httpGet": {"port": "Http"}})],
        f"{C0}.livenessProbe.httpGet.port",
        'Invalid value: "Http": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
    ),
    (
        "probe scheme",
        [(f"{C0}.livenessProbe", {"httpGet": {"port": 80, "scheme": "FTP"}})],
        f"{C0}.livenessProbe.httpGet.scheme",
        'Unsupported value: "FTP": supported values: "HTTP", "HTTPS"',
    ),
    (
        "liveness success",
        [(f"{C0}.livenessProbe", {"tcpSocket": {"port": 80}, "successThreshold": 2})],
        f"{C0}.livenessProbe.successThreshold",
        "Invalid value: 2: must be 1",
    ),
    (
        "probe negative",
        [(f"{C0}.readinessProbe", {"tcpSocket": {"port": 80}, "periodSeconds": -5})],
        f"{C0}.readinessProbe.periodSeconds",
        "Invalid value: -5: must be greater than or equal to 0",
    ),
    (
        "readiness grace",
        [(f"{C0}.readinessProbe", {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 5})],
        f"{C0}.readinessProbe.terminationGracePeriodSeconds",
        "Invalid value: 5: must not be set for readinessProbes",
    ),
    (
        "preStop sleep",
        [(f"{C0}.lifecycle", {"preStop": {"sleep": {"seconds": 60}}})],
        f"{C0}.lifecycle.preStop.sleep",
        "Invalid value: 60: must be greater than 0 and less than terminationGracePeriodSeconds (30)",
    ),
    # tolerations
    (
        "toleration Exists value",
        [(f"{T}.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}])],
        f"{T}.tolerations[0].operator",
        "Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
    ),
    (
        "toleration empty key",
        [(f"{T}.tolerations", [{"operator": "Equal", "value": "v"}])],
        f"{T}.tolerations[0].operator",
        'Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys"',  # noqa: E501
    ),
    (
        "toleration operator",
        [(f"{T}.tolerations", [{"key": "k", "operator": "In"}])],
        f"{T}.tolerations[0].operator",
        'Unsupported value: "In": supported values: "Equal", "Exists"',
    ),
    (
        "toleration effect",
        [(f"{T}.tolerations", [{"key": "k", "effect": "NoRun"}])],
        f"{T}.tolerations[0].effect",
        'Unsupported value: "NoRun": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"',
    ),
    (
        "toleration seconds",
        [(f"{T}.tolerations", [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}])],
        f"{T}.tolerations[0].effect",
        "Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
    ),
    (
        "toleration key",
        [(f"{T}.tolerations", [{"key": "a b", "operator": "Exists"}])],
        f"{T}.tolerations[0].key",
        'Invalid value: "a b": name part must consist…',
    ),
    (
        "toleration value",
        [(f"{T}.tolerations", [{"key": "k", "value": "a b"}])],
        f"{T}.tolerations[0].operator",
        'Invalid value: "a b": a valid label…',
    ),
    # node affinity and nodeSelector
    (
        "no terms",
        [(REQ, {"nodeSelectorTerms": []})],
        f"{REQ}.nodeSelectorTerms",
        "Required value: must have at least one node selector term",
    ),
    (
        "node operator",
        [(REQ, {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Equals"}]}]})],
        f"{TERM0}.matchExpressions[0].operator",
        'Invalid value: "Equals": not a valid selector operator',
    ),
    (
        "node In values",
        [(REQ, {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "NotIn"}]}]})],
        f"{TERM0}.matchExpressions[0].values",
        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
    ),
    (
        "node Exists values",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "DoesNotExist", "values": ["a"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values",
        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
    ),
    (
        "node Gt values",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1", "2"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values",
        "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
    ),
    # ValidateNodeSelectorRequirement checks every value of a required term as a label value (new objects)
    (
        "node In label value",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "In", "values": ["-x"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values[0]",
        'Invalid value: "-x": a valid label must be an empty string or consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    ),
    (
        "node NotIn second label value",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["ok", "a b"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values[1]",
        'Invalid value: "a b": a valid label must be…',
    ),
    (
        "node In label value too long",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v" * 64]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values[0]",
        f'Invalid value: "{"v" * 64}": must be no more than 63 characters',
    ),
    (
        "node label value in the second term",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Exists"}]},
                        {"matchExpressions": [{"key": "k", "operator": "In", "values": ["a/b"]}]},
                    ]
                },
            )
        ],
        f"{REQ}.nodeSelectorTerms[1].matchExpressions[0].values[0]",
        'Invalid value: "a/b": a valid label must be…',
    ),
    (
        "node Gt negative integer is no label value",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["-1"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values[0]",
        'Invalid value: "-1": a valid label must be…',
    ),
    (
        "node key",
        [(REQ, {"nodeSelectorTerms": [{"matchExpressions": [{"key": "", "operator": "Exists"}]}]})],
        f"{TERM0}.matchExpressions[0].key",
        'Invalid value: "": name part must be non-empty',
    ),
    (
        "matchFields key",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.labels", "operator": "In", "values": ["a"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchFields[0].key",
        'Invalid value: "metadata.labels": not a valid field selector key',
    ),
    (
        "matchFields values",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchFields[0].values",
        "Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
    ),
    (
        "matchFields operator",
        [(REQ, {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}]})],
        f"{TERM0}.matchFields[0].operator",
        'Invalid value: "Exists": not a valid selector operator',
    ),
    (
        "preferred weight",
        [(f"{NA}.preferredDuringSchedulingIgnoredDuringExecution", [{"weight": 0, "preference": {}}])],
        f"{NA}.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        "Invalid value: 0: must be in the range 1-100",
    ),
    (
        "nodeSelector",
        [(f"{T}.nodeSelector", {"disk": "s s d"})],
        f"{T}.nodeSelector",
        'Invalid value: "s s d": a valid label…',
    ),
    # pod-level fields
    (
        "dnsPolicy",
        [(f"{T}.dnsPolicy", "Cluster")],
        f"{T}.dnsPolicy",
        'Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"',  # noqa: E501
    ),
    (
        "dnsPolicy None",
        [(f"{T}.dnsPolicy", "None")],
        f"{T}.dnsConfig",
        "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
    ),
    (
        "dns nameserver",
        [(f"{T}.dnsConfig", {"nameservers": ["dns.local"]})],
        f"{T}.dnsConfig.nameservers[0]",
        'Invalid value: "dns.local": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    ),
    (
        "hostAliases ip",
        [(f"{T}.hostAliases", [{"ip": "x", "hostnames": ["a"]}])],
        f"{T}.hostAliases[0].ip",
        'Invalid value: "x": must be a valid IP address…',
    ),
    ("hostname", [(f"{T}.hostname", "a.b")], f"{T}.hostname", 'Invalid value: "a.b": ' + RFC1123_LABEL),
    (
        "serviceAccountName",
        [(f"{T}.serviceAccountName", "A")],
        f"{T}.serviceAccountName",
        'Invalid value: "A": a lowercase RFC 1123 subdomain…',
    ),
    (
        "escalation",
        [(f"{C0}.securityContext", {"privileged": True, "allowPrivilegeEscalation": False})],
        f"{C0}.securityContext",
        "Invalid value: false: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
    ),
    (
        "runAsUser",
        [(f"{C0}.securityContext", {"runAsUser": -1})],
        f"{C0}.securityContext.runAsUser",
        "Invalid value: -1: must be between 0 and 2147483647, inclusive",
    ),
    (
        "seccomp type",
        [(f"{T}.securityContext", {"seccompProfile": {"type": "Strict"}})],
        f"{T}.securityContext.seccompProfile.type",
        'Unsupported value: "Strict": supported values: "Localhost", "RuntimeDefault", "Unconfined"',
    ),
    (
        "seccomp localhost",
        [(f"{C0}.securityContext", {"seccompProfile": {"type": "Localhost"}})],
        f"{C0}.securityContext.seccompProfile.localhostProfile",
        "Required value: must be set when seccomp type is Localhost",
    ),
    (
        "sysctl name",
        [(f"{T}.securityContext", {"sysctls": [{"name": "Net.X", "value": "1"}]})],
        f"{T}.securityContext.sysctls[0].name",
        'Invalid value: "Net.X": must have at most 253 characters and match regex…',
    ),
    # wrong YAML types are errors at their path, never exceptions
    (
        "containers string",
        [(f"{T}.containers", "busybox")],
        f"{T}.containers",
        "Invalid value: <string>: must be of type array",
    ),
    (
        "container not object",
        [(f"{T}.containers", ["busybox"])],
        f"{T}.containers[0]",
        "Invalid value: <string>: must be of type object",
    ),
    (
        "hostNetwork string",
        [(f"{T}.hostNetwork", "yes")],
        f"{T}.hostNetwork",
        "Invalid value: <string>: must be of type boolean",
    ),
    (
        "containerPort string",
        [(f"{C0}.ports", [{"containerPort": "80"}])],
        f"{C0}.ports[0].containerPort",
        "Invalid value: <string>: must be of type integer",
    ),
    (
        "spec list",
        [("spec.template.spec", [])],
        "spec.template.spec",
        "Invalid value: <array>: must be of type object",
    ),
    (
        "metadata string",
        [("metadata", "agent")],
        "metadata",
        "Invalid value: <string>: must be of type object",
    ),
    (
        "labels list",
        [("metadata.labels", ["a"])],
        "metadata.labels",
        "Invalid value: <array>: must be of type object",
    ),
    (
        "label value int",
        [("metadata.labels", {"a": 1})],
        "metadata.labels[a]",
        "Invalid value: <number>: must be of type string",
    ),
    (
        "command string",
        [(f"{C0}.command", "sleep 1")],
        f"{C0}.command",
        "Invalid value: <string>: must be of type array",
    ),
    ("args item", [(f"{C0}.args", [1])], f"{C0}.args[0]", "Invalid value: <number>: must be of type string"),
    (
        "int as float",
        [("spec.minReadySeconds", 1.5)],
        "spec.minReadySeconds",
        "Invalid value: <number>: must be of type integer",
    ),
    (
        "grace bool",
        [(f"{T}.terminationGracePeriodSeconds", True)],
        f"{T}.terminationGracePeriodSeconds",
        "Invalid value: true: must be of type integer",
    ),
    (
        "quantity object",
        [(f"{C0}.resources", {"limits": {"cpu": {"v": 1}}})],
        f"{C0}.resources.limits[cpu]",
        "Invalid value: …must be a quantity",
    ),
]


def _matches(message: str, expected: str) -> bool:
    if "…" not in expected:
        return message == expected
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern + (".*" if expected.endswith("…") else ""), message, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("changes", "path", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_validation_error(changes: list[tuple[str, object]], path: str, message: str) -> None:
    obj, errors, _ = parse(with_(*changes))
    assert obj is None
    at_path = [m for p, m in errors if p == path]
    assert at_path, f"no error at {path}; got {errors}"
    assert any(_matches(m, message) for m in at_path), f"{path}: {at_path}"


VALID_CASES: list[tuple[str, list[tuple[str, object]]]] = [
    (
        "selector In",
        [("spec.selector", {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]})],
    ),
    (
        "selector NotIn",
        [("spec.selector", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]})],
    ),
    (
        "selector Exists",
        [
            (
                "spec.selector",
                {"matchLabels": {"app": "agent"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]},
            )
        ],
    ),
    (
        "selector DoesNotExist",
        [("spec.selector", {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]})],
    ),
    ("surge update", [(RU, {"maxUnavailable": 0, "maxSurge": 1})]),
    ("percent update", [(RU, {"maxUnavailable": "10%"})]),
    ("OnDelete", [("spec.updateStrategy", {"type": "OnDelete"})]),
    (
        "hostNetwork same port",
        [(f"{T}.hostNetwork", True), (f"{C0}.ports", [{"containerPort": 80, "hostPort": 80}])],
    ),
    (
        "same hostPort other protocol",
        [
            (
                f"{C0}.ports",
                [
                    {"containerPort": 53, "hostPort": 53},
                    {"containerPort": 53, "hostPort": 53, "protocol": "UDP"},
                ],
            )
        ],
    ),
    (
        "init containers reuse hostPort",
        [
            (
                f"{T}.initContainers",
                [
                    {"name": "a", "image": "x", "ports": [{"containerPort": 1, "hostPort": 1}]},
                    {"name": "b", "image": "x", "ports": [{"containerPort": 1, "hostPort": 1}]},
                ],
            )
        ],
    ),
    (
        "sidecar with probe",
        [
            (
                f"{T}.initContainers",
                [
                    {
                        "name": "s",
                        "image": "x",
                        "restartPolicy": "Always",
                        "readinessProbe": {"tcpSocket": {"port": 1}},
                    }
                ],
            )
        ],
    ),
    (
        "bidirectional privileged",
        [
            (f"{C0}.securityContext", {"privileged": True}),
            (
                f"{C0}.volumeMounts",
                [{"name": "data", "mountPath": "/x", "mountPropagation": "Bidirectional"}],
            ),
        ],
    ),
    (
        "Gt integer",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["3"]}]}
                    ]
                },
            )
        ],
    ),
    # accepted as Kubernetes accepts them (a warning says the term never matches)
    (
        "Gt not an integer",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1.5"]}]}
                    ]
                },
            )
        ],
    ),
    (
        "Lt not an integer",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Lt", "values": ["ten"]}]}
                    ]
                },
            )
        ],
    ),
    (
        "Lt beyond int64",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Lt", "values": ["9" * 19]}]}
                    ]
                },
            )
        ],
    ),
    (
        "In empty label value",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "In", "values": [""]}]}
                    ]
                },
            )
        ],
    ),
    # preferred terms may carry invalid label values (Kubernetes always allows them there)
    (
        "preferred invalid label value",
        [
            (
                PREF,
                [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [{"key": "k", "operator": "In", "values": ["-x"]}]
                        },
                    }
                ],
            )
        ],
    ),
    (
        "matchFields",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
                    ]
                },
            )
        ],
    ),
    (
        "fieldRef labels subscript",
        [(f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}])],
    ),
    ("env null value", [(f"{C0}.env", [{"name": "A", "value": None}])]),
    ("requests == limits extended", [(f"{C0}.resources", {"limits": {GPU: 1}, "requests": {GPU: "1"}})]),
    (
        "numeric quantities",
        [(f"{C0}.resources", {"limits": {"cpu": 0.5, "memory": 1048576}, "requests": {"cpu": "100m"}})],
    ),
    ("probe named port", [(f"{C0}.livenessProbe", {"httpGet": {"port": "metrics"}})]),
    ("preStop sleep", [(f"{C0}.lifecycle", {"preStop": {"sleep": {"seconds": 5}}})]),
    ("toleration all", [(f"{T}.tolerations", [{"operator": "Exists"}])]),
    (
        "toleration NoExecute seconds",
        [
            (
                f"{T}.tolerations",
                [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
            )
        ],
    ),
    ("sourceless volume", [(f"{T}.volumes[1]", {"name": "scratch"})]),
    ("label null value", [("metadata.labels", {"a": None})]),
]


@pytest.mark.parametrize("changes", [c[1] for c in VALID_CASES], ids=[c[0] for c in VALID_CASES])
def test_valid(changes: list[tuple[str, object]]) -> None:
    _, errors, _ = parse(with_(*changes))
    assert errors == []


# --- warnings: valid fields nodeagent does not honour ---------------------------------------------

WARNING_CASES: list[tuple[str, list[tuple[str, object]], str, str]] = [
    (
        "serviceAccountName",
        [(f"{T}.serviceAccountName", "agent")],
        f"{T}.serviceAccountName",
        "no API server on this node; no token is mounted",
    ),
    (
        "priorityClassName",
        [(f"{T}.priorityClassName", "system-node-critical")],
        f"{T}.priorityClassName",
        "no scheduler or preemption on a lone node; ignored",
    ),
    (
        "podAffinity",
        [(f"{T}.affinity", {"podAffinity": {}})],
        f"{T}.affinity.podAffinity",
        "one node: no other pods to place next to; ignored",
    ),
    (
        "podAntiAffinity",
        [(f"{T}.affinity", {"podAntiAffinity": {}})],
        f"{T}.affinity.podAntiAffinity",
        "one node: no other pods to keep away from; ignored",
    ),
    (
        "preferred affinity",
        [(f"{NA}.preferredDuringSchedulingIgnoredDuringExecution", [{"weight": 1, "preference": {}}])],
        f"{NA}.preferredDuringSchedulingIgnoredDuringExecution",
        "one node: nothing to prefer; ignored",
    ),
    (
        "dnsPolicy",
        [(f"{T}.dnsPolicy", "ClusterFirst")],
        f"{T}.dnsPolicy",
        "no cluster DNS; the host's resolver is used",
    ),
    (
        "nfs volume",
        [(f"{T}.volumes[0]", {"name": "data", "nfs": {"server": "s", "path": "/"}})],
        f"{T}.volumes[0].nfs",
        "volume type nfs is not available on this node; an empty directory is used",
    ),
    (
        "terminationMessagePath",
        [(f"{C0}.terminationMessagePath", "/dev/log")],
        f"{C0}.terminationMessagePath",
        "termination messages are not collected; ignored",
    ),
    (
        "seccomp annotation",
        [
            (
                "spec.template.metadata.annotations",
                {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"},
            )
        ],
        "spec.template.metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
        "legacy seccomp annotation is ignored; use securityContext",
    ),
    (
        "apparmor annotation",
        [
            (
                "spec.template.metadata.annotations",
                {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"},
            )
        ],
        "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/main]",
        "AppArmor annotations are not applied; ignored",
    ),
    (
        "runtimeClassName",
        [(f"{T}.runtimeClassName", "gvisor")],
        f"{T}.runtimeClassName",
        "Docker's default runtime is used",
    ),
    (
        "windowsOptions",
        [(f"{C0}.securityContext", {"windowsOptions": {"hostProcess": True}})],
        f"{C0}.securityContext.windowsOptions",
        "Windows-only field; ignored on this Linux host",
    ),
    (
        "projected token",
        [
            (
                f"{T}.volumes[0]",
                {"name": "data", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            )
        ],
        f"{T}.volumes[0].projected.sources[0].serviceAccountToken",
        "no API server on this node; no token is mounted",
    ),
    (
        "OnDelete rollingUpdate",
        [("spec.updateStrategy", {"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 2}})],
        RU,
        "ignored when type is OnDelete",
    ),
    ("unknown spec field", [("spec.replicas", 3)], "spec.replicas", 'unknown field "spec.replicas"; ignored'),
    (
        "unknown container field",
        [(f"{C0}.imagePolicy", "x")],
        f"{C0}.imagePolicy",
        f'unknown field "{C0}.imagePolicy"; ignored',
    ),
    ("unknown top-level field", [("extra", 1)], "extra", 'unknown field "extra"; ignored'),
    (
        "Gt not an integer never matches",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1.5"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values[0]",
        '"1.5": not an integer: Kubernetes accepts it, but its scheduler fails a Gt/Lt requirement on it, so '
        "this term can never match",
    ),
    (
        "Lt beyond int64 never matches, in the second expression of the second term",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
                        {
                            "matchExpressions": [
                                {"key": "a", "operator": "Exists"},
                                {"key": "k", "operator": "Lt", "values": ["9" * 19]},
                            ]
                        },
                    ]
                },
            )
        ],
        f"{REQ}.nodeSelectorTerms[1].matchExpressions[1].values[0]",
        f'"{"9" * 19}": not an integer: Kubernetes accepts it, but its scheduler fails a Gt/Lt requirement '
        "on it, so this term can never match",
    ),
    (
        "Gt 1_0 (Python's int() reads 10) never matches",
        [
            (
                REQ,
                {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1_0"]}]}
                    ]
                },
            )
        ],
        f"{TERM0}.matchExpressions[0].values[0]",
        '"1_0": not an integer: Kubernetes accepts it, but its scheduler fails a Gt/Lt requirement on it, so '
        "this term can never match",
    ),
    (
        "preferred Gt not an integer never matches",
        [
            (
                PREF,
                [
                    {
                        "weight": 1,
                        "preference": {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["x"]}]},
                    }
                ],
            )
        ],
        f"{PREF}[0].preference.matchExpressions[0].values[0]",
        '"x": not an integer: Kubernetes accepts it, but its scheduler fails a Gt/Lt requirement on it, so '
        "this term can never match",
    ),
]


@pytest.mark.parametrize(
    ("changes", "path", "message"), [c[1:] for c in WARNING_CASES], ids=[c[0] for c in WARNING_CASES]
)
def test_warning(changes: list[tuple[str, object]], path: str, message: str) -> None:
    obj, errors, warnings = parse(with_(*changes))
    assert errors == []
    assert obj is not None
    assert (path, message) in warnings


def test_an_integer_gt_lt_value_has_no_warning() -> None:
    for value in ("0", "+7", "-9223372036854775808", "9223372036854775807"):
        term = {"matchExpressions": [{"key": "k", "operator": "Lt", "values": [value]}]}
        _, _, warnings = parse(with_((PREF, [{"weight": 1, "preference": term}])))
        assert not [m for p, m in warnings if p.endswith("values[0]")], value


# validateVolumeSource checks the sources in a fixed order; the first present is validated, every later one
# is "may not specify more than 1 volume type" at its path (cephfs and downwardAPI under Kubernetes' names).
TWO_SOURCES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("emptyDir before hostPath", {"hostPath": {"path": "/x"}, "emptyDir": {}}, ["hostPath"]),
    ("secret before configMap", {"configMap": {"name": "c"}, "secret": {"secretName": "s"}}, ["configMap"]),
    ("configMap before projected", {"projected": {"sources": []}, "configMap": {"name": "c"}}, ["projected"]),
    ("downwardAPI is named downwarAPI", {"secret": {"secretName": "s"}, "downwardAPI": {}}, ["downwarAPI"]),
    ("cephfs is named cephFS", {"hostPath": {"path": "/x"}, "cephfs": {"monitors": ["m"]}}, ["cephFS"]),
    (
        "nfs before persistentVolumeClaim",
        {"persistentVolumeClaim": {"claimName": "c"}, "nfs": {}},
        ["persistentVolumeClaim"],
    ),
    ("gitRepo before secret", {"secret": {"secretName": "s"}, "gitRepo": {"repository": "r"}}, ["secret"]),
    ("csi before image", {"image": {"reference": "r"}, "csi": {"driver": "d"}}, ["image"]),
    (
        "three sources",
        {"csi": {"driver": "d"}, "configMap": {"name": "c"}, "emptyDir": {}},
        ["configMap", "csi"],
    ),
]


@pytest.mark.parametrize(("sources", "paths"), [c[1:] for c in TWO_SOURCES], ids=[c[0] for c in TWO_SOURCES])
def test_a_volume_with_two_sources_is_reported_where_kubernetes_reports_it(
    sources: dict[str, Any], paths: list[str]
) -> None:
    obj, errors, _ = parse(with_((f"{T}.volumes[0]", {"name": "data", **sources})))
    assert obj is None
    forbidden = [p for p, m in errors if m == "Forbidden: may not specify more than 1 volume type"]
    assert forbidden == [f"{T}.volumes[0].{p}" for p in paths]


def test_unsupported_volume_becomes_empty_dir() -> None:
    ds = ds_of(with_((f"{T}.volumes[0]", {"name": "data", "persistentVolumeClaim": {"claimName": "c"}})))
    assert ds.spec.template.spec.volumes[0].source == model.EmptyDirVolumeSource()


def test_warning_tables_are_documented() -> None:
    assert manifests.POD_SPEC_WARNINGS["serviceAccountName"]
    assert "nfs" in manifests.UNSUPPORTED_VOLUME_TYPES
    assert manifests.CONDITIONAL_WARNINGS["dnsPolicy: ClusterFirst"]


# --- defaulting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("docker.io/library/nginx:1.25", "IfNotPresent"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:1", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:1.25@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_image_pull_policy_default(image: str, policy: str) -> None:
    assert manifests.default_pull_policy(image) == policy
    ds = ds_of(with_((f"{C0}.image", image)))
    assert ds.spec.template.spec.containers[0].image_pull_policy == policy


def test_explicit_pull_policy_is_kept() -> None:
    ds = ds_of(with_((f"{C0}.image", "nginx"), (f"{C0}.imagePullPolicy", "Never")))
    assert ds.spec.template.spec.containers[0].image_pull_policy == "Never"


def test_pod_and_daemonset_defaults() -> None:
    doc = with_(
        ("metadata.namespace", DELETE),
        (f"{T}.hostNetwork", True),
        (f"{C0}.ports", [{"containerPort": 9100}]),
        (f"{C0}.livenessProbe", {"httpGet": {"port": 9100}}),
        (f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/data"}]),
        (f"{T}.tolerations", [{"key": "k", "value": "v"}]),
        (f"{T}.volumes[1]", {"name": "cm", "configMap": {"name": "c"}}),
        (f"{T}.volumes[2]", {"name": "sec", "secret": {"secretName": "s"}}),
        (f"{T}.volumes[3]", {"name": "scratch"}),
        (f"{C0}.env", [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
    )
    ds = ds_of(doc)
    assert ds.metadata.namespace == "default"
    assert ds.spec.revision_history_limit == 10
    assert ds.spec.min_ready_seconds == 0
    assert ds.spec.update_strategy == model.DaemonSetUpdateStrategy(
        "RollingUpdate", model.RollingUpdateDaemonSet(max_unavailable=1, max_surge=0)
    )
    spec = ds.spec.template.spec
    assert spec.restart_policy == "Always"
    assert spec.termination_grace_period_seconds == 30
    assert spec.dns_policy == "ClusterFirst"
    assert spec.scheduler_name == "default-scheduler"
    c = spec.containers[0]
    assert c.ports == (model.ContainerPort(container_port=9100, host_port=9100, protocol="TCP"),)
    assert c.liveness_probe == model.Probe(
        handler=model.HTTPGetAction(port=9100, path="/", scheme="HTTP"),
        timeout_seconds=1,
        period_seconds=10,
        success_threshold=1,
        failure_threshold=3,
    )
    assert c.volume_mounts[0].mount_propagation == "None"
    assert c.env[0].value_from == model.EnvVarSource(
        field_ref=model.ObjectFieldSelector("spec.nodeName", "v1")
    )
    assert spec.tolerations == (model.Toleration(key="k", operator="Equal", value="v"),)
    volumes = {vol.name: vol.source for vol in spec.volumes}
    assert volumes["data"] == model.HostPathVolumeSource("/var/lib/agent", "")
    assert volumes["cm"] == model.ConfigMapVolumeSource("c", default_mode=0o644, optional=False)
    assert volumes["sec"] == model.SecretVolumeSource("s", default_mode=0o644, optional=False)
    assert volumes["scratch"] == model.EmptyDirVolumeSource()


def test_probe_zero_values_take_defaults() -> None:
    ds = ds_of(
        with_((f"{C0}.readinessProbe", {"tcpSocket": {"port": 1}, "periodSeconds": 0, "timeoutSeconds": 0}))
    )
    probe = ds.spec.template.spec.containers[0].readiness_probe
    assert probe is not None
    assert (probe.period_seconds, probe.timeout_seconds) == (10, 1)


def test_on_delete_has_no_rolling_update() -> None:
    ds = ds_of(with_(("spec.updateStrategy", {"type": "OnDelete"})))
    assert ds.spec.update_strategy == model.DaemonSetUpdateStrategy("OnDelete", None)


def test_rolling_update_values_kept() -> None:
    ds = ds_of(with_((RU, {"maxUnavailable": "25%"})))
    assert ds.spec.update_strategy.rolling_update == model.RollingUpdateDaemonSet("25%", 0)


def test_model_fields() -> None:
    doc = with_(
        (
            f"{T}.affinity",
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
                        ]
                    }
                }
            },
        ),
        (f"{T}.nodeSelector", {"kubernetes.io/os": "linux"}),
        (f"{C0}.command", ["sh", "-c"]),
        (f"{C0}.args", ["sleep 1"]),
        (
            f"{C0}.securityContext",
            {
                "privileged": True,
                "capabilities": {"add": ["NET_ADMIN"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
            },
        ),
        (f"{C0}.resources", {"limits": {"memory": "200Mi"}, "requests": {"cpu": "100m"}}),
        (
            f"{T}.securityContext",
            {
                "runAsUser": 1000,
                "supplementalGroups": [5],
                "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}],
            },
        ),
        (f"{T}.dnsConfig", {"nameservers": ["1.1.1.1"], "searches": ["example.com"]}),
        (f"{T}.hostAliases", [{"ip": "10.0.0.1", "hostnames": ["db"]}]),
    )
    spec = ds_of(doc).spec.template.spec
    assert spec.affinity is not None and spec.affinity.node_affinity is not None
    assert spec.affinity.node_affinity.required == (
        model.NodeSelectorTerm(match_expressions=(model.NodeSelectorRequirement("disk", "In", ("ssd",)),)),
    )
    assert spec.node_selector == {"kubernetes.io/os": "linux"}
    c = spec.containers[0]
    assert (c.command, c.args) == (("sh", "-c"), ("sleep 1",))
    assert c.security_context == model.SecurityContext(
        privileged=True,
        capabilities=model.Capabilities(add=("NET_ADMIN",)),
        seccomp_profile="Localhost",
        seccomp_localhost_profile="p.json",
    )
    assert c.resources.limits["memory"].value == 200 * 2**20
    assert c.resources.requests["cpu"].milli() == 100
    assert spec.security_context.run_as_user == 1000
    assert spec.security_context.sysctls == (model.Sysctl("net.ipv4.ip_forward", "1"),)
    assert (spec.dns_nameservers, spec.dns_searches) == (("1.1.1.1",), ("example.com",))
    assert spec.host_aliases == (("10.0.0.1", ("db",)),)


# --- Pod, ConfigMap, Secret -----------------------------------------------------------------------


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "static"},
        "spec": {"containers": [{"name": "c", "image": "x:1"}]},
    }


def test_pod_allows_any_restart_policy() -> None:
    doc = setp(pod(), "spec.restartPolicy", "OnFailure")
    obj, errors, _ = parse(doc)
    assert errors == []
    assert isinstance(obj, model.Pod)
    assert obj.spec.restart_policy == "OnFailure"


def test_pod_errors_use_pod_paths() -> None:
    _, errors, _ = parse(setp(pod(), "spec.containers[0].image", ""))
    assert ("spec.containers[0].image", "Required value") in errors


def test_configmap() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a.conf": "x", "empty": None},
        "binaryData": {"b": "aGk="},
    }
    obj, errors, _ = parse(cm)
    assert errors == []
    assert isinstance(obj, model.ConfigMap)
    assert obj.data == {"a.conf": "x", "empty": ""}
    assert obj.binary_data == {"b": b"hi"}


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            ("data", {"a b": "x"}),
            "data[a b]",
            'Invalid value: "a b": a valid config key must consist of alphanumeric characters…',
        ),
        (("data", {"a": 1}), "data[a]", "Invalid value: <number>: must be of type string"),
        (("binaryData", {"b": "!!"}), "binaryData[b]", "Invalid value: <hidden>: illegal base64 data"),
        (("data", {"..": "x"}), "data[..]", "Invalid value: \"..\": must not be '..'"),
    ],
)
def test_configmap_errors(change: tuple[str, object], path: str, message: str) -> None:
    cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    setp(cm, *change)
    _, errors, _ = parse(cm)
    assert any(p == path and _matches(m, message) for p, m in errors), errors


def test_secret_decodes_and_merges_string_data() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"user": "YWRtaW4=", "pass": "b2xk"},
        "stringData": {"pass": "new"},
    }
    obj, errors, _ = parse(doc)
    assert errors == []
    assert isinstance(obj, model.Secret)
    assert obj.data == {"user": b"admin", "pass": b"new"}
    assert obj.type == "Opaque"
    assert "admin" not in repr(obj)


def test_secret_invalid_base64_hides_value() -> None:
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"token": "c2VjcmV0!"}}
    obj, errors, _ = parse(doc)
    assert obj is None
    assert errors == [("data[token]", "Invalid value: <hidden>: illegal base64 data")]


def test_secret_tls_requires_keys() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "eA=="},
    }
    _, errors, _ = parse(doc)
    assert errors == [("data[tls.key]", "Required value")]


# --- kinds and apiVersions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (
            {"apiVersion": "extensions/v1beta1", "kind": "DaemonSet", "metadata": {"name": "a"}},
            "apiVersion",
            'Unsupported value: "extensions/v1beta1": supported values: "apps/v1"',
        ),
        (
            {"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "a"}},
            "apiVersion",
            'Unsupported value: "apps/v1": supported values: "v1"',
        ),
        (
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
            "kind",
            'Unsupported value: "Service": supported values: "ConfigMap", "DaemonSet", "Pod", "Secret"',
        ),
        (
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "a"}},
            "kind",
            'Unsupported value: "ClusterRole": supported values: "ConfigMap", "DaemonSet", "Pod", "Secret"',
        ),
        ({"apiVersion": "v1", "metadata": {"name": "a"}}, "kind", "Required value"),
        ({"kind": "ConfigMap", "metadata": {"name": "a"}}, "apiVersion", "Required value"),
        ({"apiVersion": "v1", "kind": 5}, "kind", "Invalid value: <number>: must be of type string"),
        ("just a string", "", "Invalid value: <string>: must be of type object"),
        ([1, 2], "", "Invalid value: <array>: must be of type object"),
    ],
)
def test_kind_and_api_version(doc: object, path: str, message: str) -> None:
    obj, errors, _ = parse(doc)
    assert obj is None
    assert (path, message) in errors


def test_problem_render_names_kind_and_name() -> None:
    doc = with_((f"{C0}.image", DELETE))
    _, errors, _ = manifests.parse_object(doc, "ds.yaml", 2)
    assert errors[0].render() == f"ds.yaml#2 DaemonSet/agent: {C0}.image: Required value"


# --- loading --------------------------------------------------------------------------------------

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"


def test_multi_document_indices_and_empty_documents() -> None:
    text = "---\n" + CM % "a" + "---\n---\n# only a comment\n---\n" + CM % "b"
    result = manifests.load_text(text, "src")
    assert [(d.index, d.obj.metadata.name) for d in result.documents] == [(0, "a"), (3, "b")]
    assert result.ok and result.failed == ()


def test_failed_lists_only_bad_documents() -> None:
    text = CM % "good" + "---\n" + CM % "Bad_Name" + "---\n" + CM % "also-good"
    result = manifests.load_text(text, "src")
    assert [d.obj.metadata.name for d in result.documents] == ["good", "also-good"]
    assert result.failed == (("src", 1),)
    assert [(e.document, e.path) for e in result.errors] == [(1, "metadata.name")]
    assert result.errors[0].render().startswith("src#1 ConfigMap/Bad_Name: metadata.name: Invalid value")


def test_json_body() -> None:
    body = json.dumps(daemonset(), indent="\t")
    result = manifests.load_text(body, "http://x/fleet.json")
    assert result.ok
    assert result.documents[0].obj.kind == "DaemonSet"


def test_bytes_body_and_bom() -> None:
    result = manifests.load_text(("\ufeff" + CM % "a").encode(), "src")
    assert [d.obj.metadata.name for d in result.documents] == ["a"]


def test_invalid_utf8() -> None:
    result = manifests.load_text(b"kind: \xff\xfe", "src")
    assert result.failed == (("src", None),)
    assert result.errors[0].message.startswith("not UTF-8 text")


def test_kind_list_flattens_items() -> None:
    text = (
        CM % "first"
        + "---\n"
        + json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, daemonset()],
            }
        )
    )
    result = manifests.load_text(text, "src")
    assert result.ok
    assert [(d.index, d.obj.kind, d.obj.metadata.name) for d in result.documents] == [
        (0, "ConfigMap", "first"),
        (1, "ConfigMap", "x"),
        (1, "DaemonSet", "agent"),
    ]


def test_kind_list_error_paths_and_whole_document_fails() -> None:
    bad = with_((f"{C0}.image", DELETE))
    text = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, bad],
        }
    )
    result = manifests.load_text(text, "src")
    assert result.documents == ()
    assert result.failed == (("src", 0),)
    assert [(e.document, e.kind, e.path) for e in result.errors] == [(0, "DaemonSet", f"items[1].{C0}.image")]


def test_yaml_syntax_error() -> None:
    text = CM % "a" + "---\nkind: ConfigMap\nmetadata: {name: b\n"
    result = manifests.load_text(text, "src.yaml")
    assert result.documents == ()
    assert result.failed == (("src.yaml", None),)
    assert len(result.errors) == 1
    err = result.errors[0]
    assert err.document == 1
    assert re.match(r"YAML syntax error at line \d+, column \d+: ", err.message)


def test_yaml_tabs_and_odd_scalars_never_raise() -> None:
    for text in [
        "\tkind: x",
        "a: b: c",
        "- [",
        "{",
        "key: =",
        "? [1]\n: x",
        "&a [*a]",
        "!!python/object:os.system x",
    ]:
        result = manifests.load_text(text, "src")
        assert not result.ok or result.documents == ()


def test_timestamps_stay_strings() -> None:
    text = CM % "a" + "data: {date: 2024-01-01}\n"
    result = manifests.load_text(text, "src")
    assert result.ok
    obj = result.documents[0].obj
    assert isinstance(obj, model.ConfigMap)
    assert obj.data == {"date": "2024-01-01"}


def test_libyaml_parses_when_pyyaml_has_it_and_keeps_the_dialect() -> None:
    """The C parser (ten times faster: most of a no-op sync's time) with our resolvers: `=` and dates
    stay strings, booleans and numbers are YAML 1.1's, as in Kubernetes' decoder."""
    import yaml

    assert yaml.__with_libyaml__, "PyYAML without libyaml: reinstall it from a wheel"
    assert issubclass(manifests.LOADER, yaml.CSafeLoader)
    text = CM % "a" + "data: {date: 2024-01-01, eq: =, on: yes, n: 010}\n"
    docs = list(yaml.load_all(text, Loader=manifests.LOADER))
    assert docs[0]["data"] == {"date": "2024-01-01", "eq": "=", True: True, "n": 8}


@pytest.mark.parametrize("text", ["[" * 5000, "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 3000))])
def test_nesting_beyond_libyaml_depth_is_a_syntax_error(text: str) -> None:
    result = manifests.load_text(text, "deep.yaml")
    assert not result.ok
    assert "YAML syntax error" in result.errors[0].message
    assert result.errors[0].file == "deep.yaml"


def test_recursive_alias_is_an_error_not_a_crash() -> None:
    text = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: &m {name: a, labels: *m}\n"
    result = manifests.load_text(text, "src")
    assert not result.ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("ds.yaml", True),
        ("ds.yml", True),
        ("ds.json", True),
        ("DS.YAML", True),
        ("ds.txt", False),
        ("ds", False),
        (".hidden.yaml", False),
        ("ds.yaml~", False),
        ("ds.yaml.swp", False),
        (".ds.yaml.swp", False),
        ("ds.yaml.bak", False),
        ("#ds.yaml#", False),
        (".#ds.yaml", False),
        ("/some/dir/ds.yaml", True),
    ],
)
def test_is_manifest_filename(name: str, ok: bool) -> None:
    assert manifests.is_manifest_filename(name) is ok


def test_load_paths_directory_is_sorted_filtered_and_not_recursive(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(CM % "b")
    (tmp_path / "a.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    )
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / ".c.yaml").write_text(CM % "hidden")
    (tmp_path / "c.yaml~").write_text(CM % "backup")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.yaml").write_text(CM % "nested")
    single = tmp_path / "single.conf"
    single.write_text(CM % "explicit")
    result = manifests.load_paths([str(tmp_path), str(single)])
    assert [(Path(d.file).name, d.obj.metadata.name) for d in result.documents] == [
        ("a.json", "a"),
        ("b.yaml", "b"),
        ("single.conf", "explicit"),
    ]
    assert result.ok


def test_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    result = manifests.load_paths([missing])
    assert result.failed == ((missing, None),)
    assert result.errors[0].file == missing
    assert missing in result.errors[0].message
    assert manifests.load_file(missing).failed == ((missing, None),)


def test_empty_body_has_no_documents() -> None:
    result = manifests.load_text("", "src")
    assert result == model.LoadResult()


# --- selector immutability -------------------------------------------------------------------------


def test_selector_changed() -> None:
    old = ds_of(daemonset())
    same = ds_of(with_(("spec.template.spec.containers[0].image", "busybox:1.37")))
    assert manifests.selector_changed(old, same) is None
    new = ds_of(
        with_(
            ("spec.selector.matchLabels", {"app": "agent", "v": "2"}),
            ("spec.template.metadata.labels", {"app": "agent", "v": "2"}),
        )
    )
    problem = manifests.selector_changed(old, new)
    assert problem is not None
    assert problem.path == "spec.selector"
    assert problem.kind == "DaemonSet" and problem.name == "agent"
    assert problem.message == 'Invalid value: {"matchLabels": {"app": "agent", "v": "2"}}: field is immutable'


# --- robustness: nothing raises ---------------------------------------------------------------------

ODD_VALUES: list[object] = [None, 0, -1, 1.5, True, "", "x", [], {}, [None], {"": None}, {1: 2}, [[]], "100m"]


def _paths(obj: object, prefix: str = "") -> list[str]:
    out = []
    if isinstance(obj, dict):
        for k, val in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.append(p)
            out.extend(_paths(val, p))
    elif isinstance(obj, list):
        for i, val in enumerate(obj):
            p = f"{prefix}[{i}]"
            out.append(p)
            out.extend(_paths(val, p))
    return out


def rich_daemonset() -> dict[str, Any]:
    return with_(
        (f"{C0}.ports", [{"containerPort": 80, "name": "web"}]),
        (f"{C0}.env", [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
        (f"{C0}.livenessProbe", {"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": "y"}]}}),
        (f"{C0}.volumeMounts", [{"name": "data", "mountPath": "/d"}]),
        (f"{C0}.resources", {"limits": {"cpu": 1}}),
        (f"{T}.tolerations", [{"operator": "Exists"}]),
        (
            REQ,
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]},
        ),
        (
            f"{T}.volumes[1]",
            {
                "name": "p",
                "projected": {
                    "sources": [{"configMap": {"name": "c", "items": [{"key": "k", "path": "p"}]}}]
                },
            },
        ),
        (RU, {"maxUnavailable": 1}),
    )


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_any_value_anywhere_never_raises(value: object) -> None:
    base = rich_daemonset()
    for path in _paths(base):
        doc = setp(copy.deepcopy(base), path, copy.deepcopy(value))
        obj, errors, warnings = manifests.parse_object(doc, "f", 0)
        assert obj is None or not errors
        assert all(isinstance(p, model.Problem) for p in (*errors, *warnings))


def test_empty_document_object_is_an_error() -> None:
    obj, errors, _ = manifests.parse_object(None, "f", 0)
    assert obj is None
    assert [(p.path, p.message) for p in errors] == [("", "Required value: a document must be an object")]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ([("metadata.name", "agent\n")], "metadata.name"),
        ([("metadata.labels", {"a": "b\n"})], "metadata.labels"),
        ([(f"{C0}.name", "main\n")], f"{C0}.name"),
        ([(RU, {"maxUnavailable": "10%\n"})], f"{RU}.maxUnavailable"),
        ([(RU, {"maxUnavailable": "²%"})], f"{RU}.maxUnavailable"),
        ([(f"{C0}.resources", {"limits": {"cpu": "1e999999999"}})], f"{C0}.resources.limits[cpu]"),
        ([("spec.minReadySeconds", -(10**5000))], "spec.minReadySeconds"),
        (
            [(f"{C0}.ports", [{"containerPort": 10**5000, "hostPort": 10**5000}])],
            f"{C0}.ports[0].containerPort",
        ),
        (
            [
                (
                    REQ,
                    {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["\u0661\u0660"]}]}
                        ]
                    },
                )
            ],
            f"{TERM0}.matchExpressions[0].values[0]",  # Arabic-Indic digits: Python's int() reads 10
        ),
    ],
)
def test_hostile_values_are_errors(changes: list[tuple[str, object]], path: str) -> None:
    obj, errors, _ = parse(with_(*changes))
    assert obj is None
    assert path in [p for p, _ in errors]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
RICH_PATHS = _paths(rich_daemonset())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(RICH_PATHS), JSON_VALUES), min_size=1, max_size=4))
def test_fuzz_parse_object_never_raises(changes: list[tuple[str, object]]) -> None:
    doc = rich_daemonset()
    for path, value in changes:
        try:
            setp(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the parent
    obj, errors, _ = manifests.parse_object(doc, "f", 0)
    assert (obj is None) == bool(errors)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_load_text_never_raises(text: str) -> None:
    result = manifests.load_text(text, "src")
    assert all(p.severity == "error" for p in result.errors)
