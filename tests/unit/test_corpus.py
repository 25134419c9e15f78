"""Every real-world DaemonSet manifest in the shared corpus must load without errors (warnings allowed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.k8s import manifests, model
from tests.corpus import corpus_files, corpus_params, require_corpus


def test_corpus_is_present() -> None:
    directory = require_corpus()
    assert len(corpus_files()) >= 30, f"expected the DaemonSet corpus in {directory}"


@pytest.mark.parametrize("path", corpus_params(lambda p: pytest.param(p, id=p.name)))
def test_corpus_file_loads_without_errors(path: Path) -> None:
    require_corpus()
    result = manifests.load_file(str(path))
    assert [p.render() for p in result.errors] == []
    assert result.failed == ()
    kinds = [d.obj.kind for d in result.documents]
    assert kinds.count("DaemonSet") == 1
    assert set(kinds) <= {"DaemonSet", "ConfigMap"}
    for problem in result.warnings:
        assert problem.severity == "warning"
        assert problem.path, problem.render()


def test_corpus_placeholders_stay_strings() -> None:
    """26, 28 and 37 carry placeholders to substitute before apply; Kubernetes accepts them as strings."""
    require_corpus()
    by_prefix = {p.name[:2]: p for p in corpus_files()}
    docs = {n: manifests.load_file(str(by_prefix[n])).documents for n in ("26", "28", "37") if n in by_prefix}
    assert set(docs) == {"26", "28", "37"}
    ds26 = docs["26"][0].obj
    assert isinstance(ds26, model.DaemonSet)
    env = {e.name: e.value for e in ds26.spec.template.spec.containers[0].env}
    assert env["CLUSTER_NAME"] == "<YOUR_CLUSTER_NAME>"
    ds37 = docs["37"][0].obj
    assert isinstance(ds37, model.DaemonSet)
    assert ds37.spec.template.spec.containers[0].image.startswith(
        "sigwindowstools/kube-proxy:KUBE_PROXY_VERSION"
    )
    cm28 = next(d.obj for d in docs["28"] if d.obj.kind == "ConfigMap")
    assert isinstance(cm28, model.ConfigMap)
    assert "__PILLAR__DNS__DOMAIN__" in cm28.data["Corefile"]
