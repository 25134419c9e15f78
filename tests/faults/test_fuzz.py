"""The manifest loader fuzzed with hypothesis: only clear manifest errors, never another exception.

`make test-faults` runs it with FUZZ_EXAMPLES=10000 (documents generated in the run).
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.k8s import manifests

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

BASE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "x", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    },
}

KEYS = st.sampled_from(
    [
        "apiVersion", "kind", "metadata", "spec", "selector", "template", "containers", "initContainers",
        "name", "image", "command", "args", "env", "ports", "volumes", "volumeMounts", "hostPath", "path",
        "type", "resources", "limits", "requests", "cpu", "memory", "tolerations", "key", "operator",
        "effect", "affinity", "nodeAffinity", "nodeSelector", "updateStrategy", "rollingUpdate",
        "maxSurge", "maxUnavailable", "labels", "annotations", "valueFrom", "fieldRef", "fieldPath",
        "livenessProbe", "httpGet", "port", "securityContext", "capabilities", "add", "items", "List",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["100m", "1Gi", "-1", "1e999", "In", "Exists", "NoExecute", "Always", "%", "50%", ""]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)


def mutate(doc: Any, path: list[str], value: Any) -> Any:
    if not path or not isinstance(doc, dict):
        return value
    out = dict(doc)
    out[path[0]] = mutate(doc.get(path[0], {}), path[1:], value)
    return out


def check(text: str | bytes) -> None:
    result = manifests.load_text(text, "fuzz.yaml")
    for p in result.errors + result.warnings:
        assert isinstance(p.message, str) and p.message
        assert p.file == "fuzz.yaml"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(KEYS, min_size=1, max_size=6), VALUES)
def test_mutated_daemonsets(path: list[str], value: Any) -> None:
    doc = mutate(BASE, path, value)
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    check(text)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=st.sampled_from(list("{}[]:- \n'\"#&*!|>%@`abc01")), max_size=200))
def test_yaml_punctuation(text: str) -> None:
    check(text)
