"""One home each, as the agent runs a pass: the node is built from the settings in one place, and the
scheduling decision is computed once per DaemonSet per pass (by the planner), yet NoExecute
tolerationSeconds still count from the pass that first saw the taint."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent import settings
from nodeagent.agent import agent, plan
from nodeagent.k8s import node, scheduling
from nodeagent.runtime import memory

IMAGE = "example.com/app:1"

DS = """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: tolerant, namespace: sim}
spec:
  selector: {matchLabels: {app: tolerant}}
  template:
    metadata: {labels: {app: tolerant}}
    spec:
      tolerations:
        - {key: maintenance, operator: Exists, effect: NoExecute, tolerationSeconds: 60}
      containers:
        - {name: main, image: example.com/app:1, imagePullPolicy: IfNotPresent}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cfg(tmp_path: Path) -> settings.Settings:
    (tmp_path / "ds").mkdir(exist_ok=True)
    (tmp_path / "ds" / "ds.yaml").write_text(DS)
    raw = {
        "node": {
            "name": "Sim-Node",
            "labels": {"zone": "a"},
            "taints": [{"key": "maintenance", "effect": "NoExecute"}],
        },
        "sources": [{"directory": "ds"}],
        "stateDir": "state",
    }
    return settings.from_dict(raw, str(tmp_path))


def test_the_node_is_built_from_the_settings_in_one_place(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    n = node.from_config(cfg.node)
    assert n == node.build("Sim-Node", {"zone": "a"}, cfg.node.taints, False)
    assert n.name == "sim-node" and n.labels["zone"] == "a"
    assert agent.Agent(cfg, None).node == n


def test_one_scheduling_decision_per_daemonset_per_pass_and_noexecute_counts_from_first_sight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    decide = scheduling.decide

    def counting(n: node.Node, spec: object) -> scheduling.Decision:
        calls.append(n.name)
        return decide(n, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduling, "decide", counting)
    clock = Clock()
    r = memory.MemoryRuntime(images=[IMAGE], node_name="sim-node", clock=clock)
    a = agent.Agent(make_cfg(tmp_path), r, clock=clock)
    a.relist()

    first = a.reconcile()
    assert [x.verb for x in first.plan.actions] == [plan.CREATE]
    assert len(calls) == 1, "the agent reads the planner's decision instead of deciding again"
    assert first.plan.daemonsets[0].decision.evict_after_seconds == 60

    clock.now = 1030.0
    middle = a.reconcile()
    assert middle.plan.actions == ()
    assert [(w.reason, w.until) for w in middle.plan.waiting] == [("TolerationSeconds", 1060.0)]
    assert len(calls) == 2

    clock.now = 1061.0
    last = a.reconcile()
    assert [x.verb for x in last.plan.actions] == [plan.DELETE]
    assert "tolerationSeconds elapsed" in last.plan.actions[0].reason
