"""The `nodeagent` command through its real entry point (a subprocess), with no Docker engine needed."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodeagent.cli import commands
from tests.corpus import require_corpus

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "example.yaml"


def nodeagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "nodeagent"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nodeagent.cli"]
    full_env = {k: v for k, v in os.environ.items() if k != "NODEAGENT_CONFIG"}
    full_env.update({"DOCKER_HOST": "unix:///nonexistent/docker.sock", **(env or {})})
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


GOOD = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: good, namespace: kube-system}
spec:
  selector: {matchLabels: {app: good}}
  template:
    metadata: {labels: {app: good}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
"""

BAD = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: c}]
"""


def test_version() -> None:
    r = nodeagent("version")
    assert r.returncode == 0
    assert r.stdout.startswith("nodeagent ")


def test_no_command_is_usage_error() -> None:
    assert nodeagent().returncode == 2


def test_help_lists_commands() -> None:
    r = nodeagent("--help")
    assert r.returncode == 0
    for cmd in ("validate", "plan", "sync", "run", "status", "version"):
        assert cmd in r.stdout


def test_validate_good_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    r = nodeagent("validate", str(tmp_path / "good.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def test_validate_bad_file_names_file_document_and_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD + "---\n" + BAD)
    r = nodeagent("validate", str(f))
    assert r.returncode == 1
    assert f"{f}#1 DaemonSet/bad: spec.template.spec.containers[0].image: Required value" in r.stdout


def test_validate_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BAD)
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "b.yaml~").write_text("not: [valid")
    r = nodeagent("validate", "-o", "json", str(tmp_path))
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["valid"] is False
    assert [e["path"] for e in doc["errors"]] == ["spec.template.spec.containers[0].image"]
    err = doc["errors"][0]
    assert set(err) == {"file", "document", "kind", "name", "path", "message"}
    assert err["file"].endswith("a.yaml") and err["document"] == 0 and err["name"] == "bad"


def test_validate_corpus() -> None:
    r = nodeagent("validate", str(require_corpus()))
    assert r.returncode == 0, r.stdout[-3000:]
    assert not [line for line in r.stdout.splitlines() if not line.startswith("warning: ")]


def test_plan_json_without_docker() -> None:
    r = nodeagent("--config", str(EXAMPLE), "plan", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"node", "daemonSets", "staticPods", "errors"}
    assert doc["node"]["name"] == "example-node"
    assert doc["node"]["labels"]["kubernetes.io/hostname"] == "example-node"
    assert doc["runtime"]["available"] is False
    by_name = {d["name"]: d for d in doc["daemonSets"]}
    gpu = by_name["gpu-agent"]
    assert gpu["shouldRun"] is False and gpu["shouldContinueRunning"] is False
    assert gpu["reasons"] == ["node(s) didn't match Pod's node affinity/selector"]
    assert gpu["actions"] == []
    logger = by_name["node-logger"]
    assert logger["shouldRun"] is True and logger["running"] is False
    assert [a["action"] for a in logger["actions"]] == ["create"]
    for key in (
        "namespace",
        "name",
        "source",
        "shouldRun",
        "shouldContinueRunning",
        "reasons",
        "running",
        "actions",
    ):
        assert key in logger
    assert [p["name"] for p in doc["staticPods"]] == ["hello-example-node"]


def test_plan_table_without_docker() -> None:
    r = nodeagent("--config", str(EXAMPLE), "plan")
    assert r.returncode == 0, r.stderr
    assert "docker: not reachable" in r.stdout
    assert "gpu-agent" in r.stdout and "didn't match Pod's node affinity/selector" in r.stdout


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("node:\n  lables: {}\n", "node.lables: unknown key"),
        ("resyncInterval: ten\n", "resyncInterval"),
        ("node:\n  taints: [{key: a, effect: Sometimes}]\n", "node.taints[0].effect"),
    ],
)
def test_bad_config_is_exit_2_naming_the_key(tmp_path: Path, config: str, message: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config)
    r = nodeagent("--config", str(cfg), "plan")
    assert r.returncode == 2
    assert message in r.stderr


def test_missing_config_is_exit_2(tmp_path: Path) -> None:
    r = nodeagent("--config", str(tmp_path / "nope.yaml"), "plan")
    assert r.returncode == 2
    assert "nope.yaml" in r.stderr


def test_sync_without_docker_fails_cleanly() -> None:
    r = nodeagent("--config", str(EXAMPLE), "sync")
    assert r.returncode == 1
    assert "does not answer" in r.stderr


def test_config_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("node: {name: from-env}\n")
    r = nodeagent("plan", "-o", "json", env={"NODEAGENT_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["node"]["name"] == "from-env"


def test_serve_settles_its_heap_frozen_and_with_rarer_young_collections() -> None:
    """serve freezes what start-up made and collects the young generation every SERVE_GC_THRESHOLD
    allocations (at 5000 nodes Python's 700 cost a tenth of a replica's CPU, benchmarks/replicas_bench.py)."""
    before = gc.get_threshold()
    try:
        commands.settle_heap()
        assert gc.get_threshold() == (commands.SERVE_GC_THRESHOLD, 10, 10)
        assert commands.SERVE_GC_THRESHOLD >= 10_000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
