"""contrib/: the Grafana dashboard and the Prometheus alert rules load, and name only metrics we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.service import kubestate, metrics

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
_METRIC = re.compile(r"\b((?:kube|nodeagent|node|container|up)_[a-zA-Z0-9_:]+)")
_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def exported() -> set[str]:
    """Every series name the agent's or serve's /metrics can show."""
    names = {f.name + s for f in metrics.REGISTRY.collect() for s in _SUFFIXES}
    return names | set(kubestate.NAMES)


def names_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def exprs_of_dashboard(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_grafana_dashboard_loads_and_queries_only_exported_metrics() -> None:
    doc = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    exprs = exprs_of_dashboard(doc)
    assert doc["title"] and len(exprs) >= 8
    known = exported()
    for expr in exprs:
        used = names_in(expr)
        assert used, f"no metric in {expr!r}"
        assert used <= known, (expr, used - known)
    assert any("kube_daemonset_status_number_available" in e for e in exprs)


def test_alert_rules_parse_and_name_only_exported_metrics() -> None:
    doc = yaml.safe_load((CONTRIB / "prometheus-alerts.yaml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {
        "NodeAgentPodCrashLooping",
        "NodeAgentDaemonSetNotFullyAvailable",
        "NodeAgentNodeNotReady",
        "NodeAgentSourceUnreachable",
    }
    known = exported()
    for r in rules:
        used = names_in(r["expr"])
        assert used and used <= known, (r["alert"], used - known)
        assert r["labels"]["severity"] and r["annotations"]["summary"]


def _promtool() -> str | None:
    return shutil.which("promtool") or shutil.which("promtool", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_promtool() is None, reason="promtool not installed (make promtool)")
def test_promtool_check_rules() -> None:
    promtool = _promtool()
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "rules", str(CONTRIB / "prometheus-alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout
