"""kube-state-metrics series from status documents: exact names, labels and values."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nodeagent import runtime as rt
from nodeagent.agent import identity, plan
from nodeagent.agent import status as status_mod
from nodeagent.k8s import model
from nodeagent.service import kubestate, metrics
from tests.support.planning import NOW, make_ds, make_node


def pod(name: str, *, ready: bool, containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"namespace": "kube-system", "name": name, "ready": ready, "containers": containers}


def status(node: str, *, ready: bool = True, waiting: str = "") -> dict[str, Any]:
    c = {"name": "main", "state": "waiting" if waiting else "running", "reason": waiting, "restartCount": 3}
    return {
        "node": node,
        "daemonSets": [
            {
                "namespace": "kube-system",
                "name": "agent",
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1,
                "numberReady": 1 if ready else 0,
                "updatedNumberScheduled": 1,
                "numberAvailable": 1 if ready else 0,
                "numberMisscheduled": 0,
                "pods": [pod(f"agent-{node}", ready=ready, containers=[c])],
            }
        ],
        "staticPods": [pod(f"web-{node}", ready=True, containers=[{"name": "web", "state": "running"}])],
        "orphanedPods": [],
    }


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return got.get((name, tuple(sorted(labels.items()))))


def render(
    statuses: list[tuple[dict[str, Any], bool]],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(kubestate._Static(kubestate.families(statuses)))
    return samples(generate_latest(reg))


def test_daemonset_counters_are_summed_over_nodes_with_kube_state_metrics_labels() -> None:
    got = render([(status("a"), True), (status("b", ready=False, waiting="CrashLoopBackOff"), True)])
    ds = {"namespace": "kube-system", "daemonset": "agent"}
    assert value(got, "kube_daemonset_status_desired_number_scheduled", **ds) == 2
    assert value(got, "kube_daemonset_status_current_number_scheduled", **ds) == 2
    assert value(got, "kube_daemonset_status_number_ready", **ds) == 1
    assert value(got, "kube_daemonset_status_number_available", **ds) == 1
    assert value(got, "kube_daemonset_status_updated_number_scheduled", **ds) == 2
    assert value(got, "kube_daemonset_status_number_misscheduled", **ds) == 0


def test_pod_series_restarts_waiting_reason_and_ready_condition() -> None:
    got = render([(status("b", ready=False, waiting="CrashLoopBackOff"), True)])
    uid = identity.pod_uid(identity.owner_daemonset("kube-system", "agent"), "agent-b")
    p = {"namespace": "kube-system", "pod": "agent-b", "uid": uid}
    assert value(got, "kube_pod_container_status_restarts_total", container="main", **p) == 3
    assert (
        value(
            got, "kube_pod_container_status_waiting_reason", container="main", reason="CrashLoopBackOff", **p
        )
        == 1
    )
    assert value(got, "kube_pod_status_ready", condition="false", **p) == 1
    assert value(got, "kube_pod_status_ready", condition="true", **p) == 0
    static_uid = identity.pod_uid(identity.owner_pod("kube-system", "web"), "web-b")
    assert (
        value(
            got,
            "kube_pod_status_ready",
            condition="true",
            namespace="kube-system",
            pod="web-b",
            uid=static_uid,
        )
        == 1
    )
    assert not [
        k for k in got if k[0] == "kube_pod_container_status_waiting_reason" and ("container", "web") in k[1]
    ]


def test_a_pod_on_a_silent_node_is_ready_unknown() -> None:
    got = render([(status("a"), False)])
    uid = identity.pod_uid(identity.owner_daemonset("kube-system", "agent"), "agent-a")
    p = {"namespace": "kube-system", "pod": "agent-a", "uid": uid}
    assert value(got, "kube_pod_status_ready", condition="unknown", **p) == 1
    assert value(got, "kube_pod_status_ready", condition="true", **p) == 0


def test_agent_registry_shows_the_last_status_and_serve_replaces_it_with_the_fleet() -> None:
    kubestate.set_status(status("a"))
    kubestate.set_status(status("a", ready=False))
    ds = {"namespace": "kube-system", "daemonset": "agent"}
    got = samples(metrics.exposition())
    assert value(got, "kube_daemonset_status_number_ready", **ds) == 0
    assert any(k[0] == "nodeagent_reconcile_duration_seconds_count" for k in got)
    fleet = kubestate.fleet_exposition(
        [(status("x"), True)],
        [{"namespace": "kube-system", "name": "agent", "desiredNumberScheduled": 7, "numberReady": 5}],
        [{"name": "x", "ready": True}, {"name": "y", "ready": False}],
    )
    got = samples(fleet)  # the parser refuses a family twice: the agent's kube_* series are left out
    assert value(got, "kube_daemonset_status_desired_number_scheduled", **ds) == 7
    assert value(got, "kube_node_status_condition", node="y", condition="Ready", status="unknown") == 1
    assert value(got, "kube_node_status_condition", node="x", condition="Ready", status="true") == 1
    assert any(k[0] == "nodeagent_reconcile_duration_seconds_count" for k in got)


# --- pods the agent wants but could not create: waiting_reason per container ------------------------


def _planned_status(
    ds: model.DaemonSet,
    observed: list[rt.ObservedContainer],
    failure: plan.Failure | None = None,
    busy: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The `status -o json` document of one pass over one DaemonSet (what the agent sets each pass)."""
    desired = plan.desired_daemon_pod(ds)
    p = plan.plan(
        plan.Inputs(
            node=make_node(),
            daemonsets=(plan.DaemonSetInput(ds, "test"),),
            static_pods=(),
            observed=tuple(observed),
            now=NOW,
            failures={desired.key: failure} if failure is not None else {},
            busy=busy or {},
        )
    )
    [d] = p.daemonsets
    shown = status_mod.daemonset_status(d, p.waiting, NOW, p.readiness, p.terminating)
    return {"node": "node-a", "daemonSets": [shown.to_json()], "staticPods": [], "orphanedPods": []}


def test_a_pod_that_cannot_pull_its_image_has_a_waiting_reason_per_container() -> None:
    """kube-state-metrics shows ErrImagePull/ImagePullBackOff for containers that were never created,
    not only for containers that exist and wait."""
    ds = make_ds(image="127.0.0.1:1/nope:1", containers=("main", "side"))
    failure = plan.Failure(count=1, last=NOW - 1, reason="ErrImagePull", message="refused")
    doc = _planned_status(ds, [], failure)
    [pod_doc] = doc["daemonSets"][0]["pods"]
    assert doc["daemonSets"][0]["currentNumberScheduled"] == 0, "a pod with no container is not scheduled"
    got = render([(doc, True)])
    uid = identity.pod_uid(identity.owner_daemonset("kube-system", "agent"), pod_doc["name"])
    for container in ("main", "side"):
        labels = {"namespace": "kube-system", "pod": pod_doc["name"], "uid": uid, "container": container}
        assert value(got, kubestate.WAITING_REASON, **labels, reason="ImagePullBackOff") == 1.0
        assert value(got, kubestate.RESTARTS, **labels) == 0.0
    assert (
        value(
            got, kubestate.POD_READY, namespace="kube-system", pod=pod_doc["name"], uid=uid, condition="false"
        )
        == 1.0
    )


def test_a_missing_config_map_and_a_pod_being_created_show_their_reasons() -> None:
    ds = make_ds()
    failure = plan.Failure(1, NOW - 1, "CreateContainerConfigError", 'configmap "cfg" not found')
    [pod_doc] = _planned_status(ds, [], failure)["daemonSets"][0]["pods"]
    assert [(c["name"], c["state"], c["reason"]) for c in pod_doc["containers"]] == [
        ("main", "waiting", "CreateContainerConfigError")
    ]
    busy = {identity.owner_daemonset("kube-system", "agent"): "ContainerCreating"}
    [pod_doc] = _planned_status(ds, [], busy=busy)["daemonSets"][0]["pods"]
    assert [(c["name"], c["reason"]) for c in pod_doc["containers"]] == [("main", "ContainerCreating")]
