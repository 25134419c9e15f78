"""One home each, as the agent runs a pass: the node is built from the settings in one place, and the
scheduling decision is computed once per DaemonSet per pass (by the planner), yet NoExecute
tolerationSeconds still count from the pass that first saw the taint."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent import settings
from nodeagent.agent import agent, events, localimage, plan, statefiles
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


# --- what a pass records of work its workers finished ------------------------------------------------

TWO = """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: two, namespace: sim}
spec:
  selector: {matchLabels: {app: two}}
  template:
    metadata: {labels: {app: two}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - {name: broken, image: example.com/absent:1, imagePullPolicy: IfNotPresent}
        - {name: main, image: example.com/app:1, imagePullPolicy: IfNotPresent}
"""


def two_cfg(tmp_path: Path, manifest: str) -> settings.Settings:
    (tmp_path / "ds").mkdir(exist_ok=True)
    (tmp_path / "ds" / "two.yaml").write_text(manifest)
    raw = {"node": {"name": "sim-node"}, "sources": [{"directory": "ds"}], "stateDir": "state"}
    return settings.from_dict(raw, str(tmp_path))


def test_a_container_that_fails_keeps_its_backoff_when_a_later_one_of_its_pod_succeeds(
    tmp_path: Path,
) -> None:
    """Failures are kept per container, as the kubelet keys its backoff: `main` succeeding in the same
    pass does not clear `broken`'s failure, so `broken` is not pulled again before its backoff ends."""
    clock = Clock()
    r = memory.MemoryRuntime(images=[IMAGE, localimage.PAUSE_TAG], node_name="sim-node", clock=clock)
    a = agent.Agent(two_cfg(tmp_path, TWO), r, clock=clock)
    a.relist()
    first = a.reconcile()
    assert [(o.action.container, o.ok, o.reason) for o in first.outcomes] == [
        ("broken", False, "ErrImagePull"),
        ("main", True, ""),
    ]
    pod = first.outcomes[0].action.pod
    pulls = r.calls.get("pull", 0)

    clock.now += 1
    held = a.reconcile()
    assert held.plan.actions == () and r.calls.get("pull", 0) == pulls, "no pull before the backoff ends"
    assert [(w.container, w.reason) for w in held.plan.waiting] == [("", "ImagePullBackOff")]
    assert set(a.container_failures) == {("sim", pod, "broken")}
    assert statefiles.load_failures(a.settings.state_dir) == a.container_failures

    clock.now += 3600  # the backoff is over: only `broken` is tried again, and fails again
    again = a.reconcile()
    assert [(o.action.container, o.reason) for o in again.outcomes] == [("broken", "ErrImagePull")]
    assert a.container_failures[("sim", pod, "broken")].count == 2
    assert a.failures[("sim", pod)].reason == "ImagePullBackOff"


def test_run_records_successful_create_and_killing_of_work_its_workers_finished(tmp_path: Path) -> None:
    """`run` (reconcile without waiting) records events of finished work a pass later, from an engine that
    has moved on: the created pod is listed (SuccessfulCreate comes from the pass that planned the
    create), the deleted containers are gone (Killing names come with the delete's outcome)."""
    ok = TWO.replace("example.com/absent:1", IMAGE)
    r = memory.MemoryRuntime(images=[IMAGE, localimage.PAUSE_TAG], node_name="sim-node")
    a = agent.Agent(two_cfg(tmp_path, ok), r)
    a.relist()
    a.reconcile(wait=False)
    assert a.workers.wait_idle(timeout=60) and len(r.list_managed()) == 3  # two and the sandbox
    created = a.reconcile(wait=False)  # drains the creates, and lists the pod they made
    assert [o.action.verb for o in created.outcomes] == [plan.CREATE, plan.CREATE]
    assert all(o.ok for o in created.outcomes)
    pod = created.outcomes[0].action.pod
    ds_events = events.for_object(events.load(a.settings.state_dir), "DaemonSet", "sim", "two")
    assert [(e.reason, e.message) for e in ds_events] == [("SuccessfulCreate", f"Created pod: {pod}")]
    (tmp_path / "ds" / "two.yaml").unlink()
    a.relist()
    dispatched = a.reconcile(wait=False)
    assert [x.verb for x in dispatched.plan.actions] == [plan.DELETE]
    assert a.workers.wait_idle(timeout=60) and r.list_managed() == []
    recorded = a.reconcile(wait=False)  # the pass that drains the delete's outcome
    assert [o.action.verb for o in recorded.outcomes] == [plan.DELETE]
    killing = [
        (e.message, e.involved.field_path)
        for e in events.for_object(events.load(a.settings.state_dir), "Pod", "sim", pod)
        if e.reason == events.KILLING
    ]
    assert sorted(killing) == [
        ("Stopping container broken", "spec.containers{broken}"),
        ("Stopping container main", "spec.containers{main}"),
    ]
