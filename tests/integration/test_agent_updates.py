"""Update strategies, orphaning and adoption on the real engine.

- RollingUpdate with maxSurge: the new pod starts next to the old one, which is deleted only once the new
  one is ready (its readiness probe passes).
- OnDelete: an outdated pod keeps running until `nodeagent delete pod`; then the new revision comes.
- Orphaning (annotation or `nodeagent orphan`) and adoption by a later DaemonSet without a restart.

Passes are driven one at a time by fresh agents (as `nodeagent sync` processes), so every step is
observable; the surge test runs the prober of an in-process agent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodeagent import settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import identity, plan, statefiles
from nodeagent.runtime import docker as docker_rt
from tests.support.agenthome import Home, assert_ok, cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker


def status_doc(h: Home) -> dict[str, Any]:
    out = cli(h, "status", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def pod_ids(h: Home) -> dict[str, set[str]]:
    return {pod: {c.id for c in cs} for pod, cs in h.pods().items()}


def test_surge_starts_the_new_pod_and_deletes_the_old_one_once_it_is_ready(home: Home) -> None:
    home.put("s", home.ds("s"))
    assert_ok(home.sync())
    [old_pod] = home.pods()

    doc = home.ds(
        "s",
        container={
            "env": [{"name": "V", "value": "2"}],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 1},
        },
        command="mkdir -p /tmp && exec sleep 1000000",
    )
    doc["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    home.put("s", doc)
    a = agent_mod.Agent(settings.load(str(home.config)), docker_rt.DockerRuntime(node_name=home.node))
    a.relist()
    a.start_prober()
    try:
        first = a.reconcile()
        assert_ok(first)
        assert [o.action.verb for o in first.outcomes] == ["create"], "the new pod first, the old one stays"
        [new_pod] = set(home.pods()) - {old_pod}
        [new] = home.pods()[new_pod]
        assert a.prober is not None
        wait_for(lambda: a.prober is not None and a.prober.verdict(new.id) is not None)
        for _ in range(3):  # not ready: however often we look, the old pod keeps running
            result = a.reconcile()
            assert result.plan.actions == ()
            assert all(c.running for c in home.pods()[old_pod])
        [ds] = status_doc(home)["daemonSets"]
        by_name = {p["name"]: p for p in ds["pods"]}
        assert by_name[old_pod]["upToDate"] is False and by_name[new_pod]["upToDate"] is True
        assert by_name[new_pod]["revision"] == new.labels[identity.LABEL_SPEC_HASH]

        assert home.engine.exec(new.id, ("touch", "/tmp/ready"), 5) == 0
        wait_for(lambda: a.prober is not None and bool((v := a.prober.verdict(new.id)) and v.ready))
        done = a.reconcile()
        assert_ok(done)
        [delete] = [o.action for o in done.outcomes]
        assert (delete.verb, delete.pod) == (plan.DELETE, old_pod)
        assert "available (maxSurge)" in delete.reason
        assert pod_ids(home) == {new_pod: {new.id}}
    finally:
        a.stop_prober()


def test_on_delete_replaces_a_pod_only_when_it_is_deleted(home: Home) -> None:
    doc = home.ds("od")
    doc["spec"]["updateStrategy"] = {"type": "OnDelete"}
    home.put("od", doc)
    assert_ok(home.sync())
    [(old_pod, old_ids)] = pod_ids(home).items()

    doc["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": "2"}]
    home.put("od", doc)
    for _ in range(2):
        assert home.sync().outcomes == ()
    assert pod_ids(home) == {old_pod: old_ids}
    plan_doc = json.loads(cli(home, "plan", "-o", "json").stdout)
    [dsp] = plan_doc["daemonSets"]
    assert [(p["name"], p["upToDate"]) for p in dsp["pods"]] == [(old_pod, False)]
    [ds] = status_doc(home)["daemonSets"]
    assert (ds["updatedNumberScheduled"], ds["numberReady"]) == (0, 1)
    assert "(outdated)" in cli(home, "status").stdout

    out = cli(home, "delete", "pod", f"{home.namespace}/{old_pod}")
    assert out.returncode == 0, out.stderr
    assert home.pods() == {}
    result = home.sync()
    assert_ok(result)
    [(new_pod, _)] = pod_ids(home).items()
    assert new_pod != old_pod and new_pod == identity.daemon_pod_name("od", dsp["revision"])
    [ds] = status_doc(home)["daemonSets"]
    assert (ds["updatedNumberScheduled"], ds["pods"][0]["upToDate"]) == (1, True)


@pytest.mark.parametrize("how", ["annotation", "command"])
def test_orphaned_pods_survive_withdrawal_and_are_adopted_without_restart(home: Home, how: str) -> None:
    doc = home.ds("old", labels={"app": "shared"})
    if how == "annotation":
        doc["metadata"]["annotations"] = {plan.ANNOTATION_ORPHAN: "true"}
    path = home.put("old", doc)
    assert_ok(home.sync())
    [(pod, ids)] = pod_ids(home).items()
    if how == "command":
        out = cli(home, "orphan", f"{home.namespace}/old")
        assert out.returncode == 0, out.stderr

    path.unlink()  # withdraw the DaemonSet
    result = home.sync()
    assert result.outcomes == (), "nothing is deleted"
    assert pod_ids(home) == {pod: ids}
    assert all(c.running for c in home.containers())
    [orphan] = status_doc(home)["orphanedPods"]
    assert orphan["name"] == pod
    assert "(orphaned)" in cli(home, "status").stdout
    saved = json.loads((home.state_dir / statefiles.OWNERSHIP_FILE).read_text())
    assert saved["pods"] == [{"namespace": home.namespace, "pod": pod, "owner": ""}]

    # a later DaemonSet with another name and template, whose selector matches: adopts, restarts nothing
    new = home.ds("new", labels={"app": "shared"}, container={"env": [{"name": "V", "value": "2"}]})
    new["spec"]["updateStrategy"] = {"type": "OnDelete"}
    home.put("new", new)
    for _ in range(2):
        assert home.sync().outcomes == ()
    assert pod_ids(home) == {pod: ids}
    doc_status = status_doc(home)
    [ds] = doc_status["daemonSets"]
    assert doc_status["orphanedPods"] == []
    assert (ds["name"], ds["currentNumberScheduled"], ds["updatedNumberScheduled"]) == ("new", 1, 0)
    assert [(p["name"], p["upToDate"]) for p in ds["pods"]] == [(pod, False)]
    [dsp] = json.loads(cli(home, "plan", "-o", "json").stdout)["daemonSets"]
    assert dsp["pods"][0]["adopted"] is True

    # deleted, it is replaced by the adopter's own revision
    assert cli(home, "delete", "pod", f"{home.namespace}/{pod}").returncode == 0
    assert_ok(home.sync())
    owners = {c.labels[identity.LABEL_OWNER] for c in home.containers()}
    assert owners == {home.owner("new")}


def test_withdrawn_without_orphaning_deletes_and_a_changed_selector_after_orphaning_is_accepted(
    home: Home,
) -> None:
    path = home.put("x", home.ds("x", labels={"app": "x"}))
    assert_ok(home.sync())
    assert cli(home, "orphan", f"{home.namespace}/x").returncode == 0
    assert cli(home, "orphan", "--undo", f"{home.namespace}/x").returncode == 0
    path.unlink()
    result = home.sync()
    assert [o.action.verb for o in result.outcomes] == ["delete"]

    # orphaned, then the same DaemonSet comes back with another selector: accepted (as in Kubernetes)
    doc = home.ds("y", labels={"app": "y"})
    doc["metadata"]["annotations"] = {plan.ANNOTATION_ORPHAN: "true"}
    path = home.put("y", doc)
    assert_ok(home.sync())
    [(pod, ids)] = pod_ids(home).items()
    path.unlink()
    assert home.sync().outcomes == ()
    home.put("y", home.ds("y", labels={"app": "y", "v": "2"}))
    result = home.sync()
    assert_ok(result)
    assert not result.desired.errors, [e.render() for e in result.desired.errors]
    # the orphan does not match the new selector: it stays ownerless; the DaemonSet makes its own pod
    assert pod_ids(home)[pod] == ids
    assert len(home.pods()) == 2
