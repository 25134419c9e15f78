"""Pods beyond one container, through the agent on the real engine: ConfigMaps and Secrets (volumes and
env, updated in place, a missing one holding back only its pod), the pod sandbox, init containers and
lifecycle hooks.

Passes are driven one at a time by agents built in-process (as `nodeagent sync` builds them); an agent
kept across passes remembers which pods' ConfigMap/Secret files are current, as `run` does. Traffic stays
on the pod's own loopback.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent import settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import identity, localimage, plan, volumes
from nodeagent.runtime import docker as docker_rt
from tests.support.agenthome import Home, assert_ok, cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

SECRET_VALUE = "s3cr3t-Value-never-shown"
SLEEP = "exec sleep 1000000"


def agent(h: Home) -> agent_mod.Agent:
    a = agent_mod.Agent(settings.load(str(h.config)), docker_rt.DockerRuntime(node_name=h.node))
    a.relist()
    return a


def config_map(h: Home, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": h.namespace},
        "data": data,
    }


def secret(h: Home, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": h.namespace},
        "stringData": data,
    }


def put_docs(h: Home, name: str, *docs: dict[str, Any]) -> None:
    h.put(name, yaml.safe_dump_all(docs))


def by_container(h: Home, pod: str) -> dict[str, Any]:
    """container name -> newest container of that name in the pod (sandbox as POD)."""
    out: dict[str, Any] = {}
    for c in h.containers():
        if c.labels[identity.LABEL_POD_NAME] != pod:
            continue
        name = c.labels[identity.LABEL_CONTAINER_NAME]
        if name not in out or plan.attempt_of(c) > plan.attempt_of(out[name]):
            out[name] = c
    return out


def status_pod(h: Home, name: str) -> dict[str, Any]:
    out = cli(h, "status", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    pods = [p for d in doc["daemonSets"] if d["name"] == name for p in d["pods"]]
    assert len(pods) == 1, doc
    pod: dict[str, Any] = pods[0]
    return pod


def exec_ok(h: Home, cid: str, *command: str) -> bool:
    return h.engine.exec(cid, command, 10) == 0


# --- ConfigMaps and Secrets -------------------------------------------------------------------


def test_configmap_and_secret_volumes_and_env_are_materialized_and_updated_in_place(home: Home) -> None:
    doc = home.ds(
        "cfg",
        command=SLEEP,
        container={
            "env": [
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
            "volumeMounts": [
                {"name": "conf", "mountPath": "/etc/conf"},
                {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                {"name": "all", "mountPath": "/etc/all"},
                {"name": "info", "mountPath": "/etc/info"},
            ],
        },
        pod={
            "volumes": [
                {
                    "name": "conf",
                    "configMap": {
                        "name": "settings",
                        "items": [{"key": "level", "path": "sub/level.txt"}],
                        "defaultMode": 0o640,
                    },
                },
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {
                    "name": "all",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "settings"}},
                            {"secret": {"name": "creds", "items": [{"key": "token", "path": "tok"}]}},
                            {"configMap": {"name": "absent", "optional": True}},
                        ]
                    },
                },
                {
                    "name": "info",
                    "downwardAPI": {
                        "items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    },
                },
            ]
        },
    )
    put_docs(
        home,
        "cfg",
        config_map(home, "settings", {"level": "debug", "mode": "fast"}),
        secret(home, "creds", {"token": SECRET_VALUE}),
        doc,
    )
    a = agent(home)
    first = a.reconcile()
    assert_ok(first)
    [pod] = home.pods()
    [c] = home.pods()[pod]
    info = home.engine.inspect(c.id)
    assert info is not None
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["LEVEL"] == "debug" and env["TOKEN"] == SECRET_VALUE
    assert env["CM_level"] == "debug" and env["CM_mode"] == "fast"

    desired = first.plan.daemonsets[0].desired
    uid = identity.pod_uid(desired.owner, desired.name)
    pod_dir = Path(volumes.pod_dir(str(home.state_dir), uid))
    assert stat.S_IMODE(pod_dir.stat().st_mode) == 0o700, "secrets under stateDir are readable by root only"
    conf = Path(volumes.volume_dir(str(home.state_dir), uid, "conf"))
    assert (conf / "sub" / "level.txt").read_text() == "debug"
    assert stat.S_IMODE((conf / "sub" / "level.txt").stat().st_mode) == 0o640
    creds = Path(volumes.volume_dir(str(home.state_dir), uid, "creds"))
    assert (creds / "token").read_text() == SECRET_VALUE
    assert stat.S_IMODE((creds / "token").stat().st_mode) == 0o400
    # inside the container, as the kubelet lays them out
    assert exec_ok(home, c.id, "sh", "-c", 'test "$(cat /etc/conf/sub/level.txt)" = debug')
    assert exec_ok(home, c.id, "sh", "-c", f'test "$(cat /etc/creds/token)" = {SECRET_VALUE}')
    assert exec_ok(home, c.id, "sh", "-c", f'test "$(cat /etc/all/tok)" = {SECRET_VALUE}')
    assert exec_ok(home, c.id, "sh", "-c", 'test "$(cat /etc/all/mode)" = fast')
    assert exec_ok(home, c.id, "sh", "-c", f'test "$(cat /etc/info/ns)" = {home.namespace}')

    # the ConfigMap and the Secret change: files updated in place, the container is not restarted
    put_docs(
        home,
        "cfg",
        config_map(home, "settings", {"level": "info", "mode": "fast"}),
        secret(home, "creds", {"token": "rotated"}),
        doc,
    )
    a.relist()
    again = a.reconcile()
    assert_ok(again)
    assert again.plan.actions == ()
    assert [x.id for x in home.containers()] == [c.id]
    assert exec_ok(home, c.id, "sh", "-c", 'test "$(cat /etc/conf/sub/level.txt)" = info')
    assert exec_ok(home, c.id, "sh", "-c", 'test "$(cat /etc/creds/token)" = rotated')
    assert exec_ok(home, c.id, "sh", "-c", 'test "$(cat /etc/all/tok)" = rotated')


def test_secret_values_never_appear_in_logs_plan_or_status(home: Home) -> None:
    doc = home.ds(
        "sec",
        command=SLEEP,
        container={
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
            "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}],
        },
        pod={"volumes": [{"name": "creds", "secret": {"secretName": "creds"}}]},
    )
    put_docs(home, "sec", secret(home, "creds", {"token": SECRET_VALUE}), doc)
    outputs = []
    for args in (
        ("--log-level", "debug", "sync"),
        ("plan", "-o", "json"),
        ("plan",),
        ("status", "-o", "json"),
    ):
        out = cli(home, *args)
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout + out.stderr)
    # rotate it: the refresh path logs too
    put_docs(home, "sec", secret(home, "creds", {"token": SECRET_VALUE + "-2"}), doc)
    out = cli(home, "--log-level", "debug", "sync")
    outputs.append(out.stdout + out.stderr)
    assert all(SECRET_VALUE not in text for text in outputs)
    assert "action_applied" in outputs[0], "the log capture saw the pass"


def test_missing_configmap_holds_back_only_its_pod_until_it_appears(home: Home) -> None:
    home.backoff = "{initial: 4s, max: 5s, resetAfter: 10m}"  # status below runs within the first backoff
    home.write_config()
    needs = home.ds(
        "needs",
        command=SLEEP,
        container={"volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}]},
        pod={"volumes": [{"name": "conf", "configMap": {"name": "later"}}]},
    )
    home.put("needs", needs)
    home.put("fine", home.ds("fine"))
    result = home.sync()
    failed = {o.action.pod.rsplit("-", 1)[0]: o for o in result.failed}
    assert set(failed) == {"needs"}
    assert failed["needs"].reason == "CreateContainerConfigError"
    assert 'configmap "later" not found' in failed["needs"].message
    assert home.running_owners() == {home.owner("fine")}
    assert status_pod(home, "needs")["status"] == "CreateContainerConfigError"

    put_docs(home, "needs", config_map(home, "later", {"k": "v"}), needs)
    wait_for(lambda: not home.sync().failed and home.owner("needs") in home.running_owners(), timeout=30)
    assert home.running_owners() == {home.owner("fine"), home.owner("needs")}


# --- sandbox and init containers ------------------------------------------------------------


def multi(h: Home, name: str, *, inits: bool) -> dict[str, Any]:
    doc = h.ds(
        name,
        command="exec httpd -f -p 127.0.0.1:8080 -h /work",
        container={"name": "web", "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        pod={"volumes": [{"name": "work", "emptyDir": {}}]},
    )
    spec = doc["spec"]["template"]["spec"]
    spec["containers"].append(
        {
            "name": "client",
            "image": h.image,
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", SLEEP],
        }
    )
    if inits:
        mount = [{"name": "work", "mountPath": "/work"}]
        spec["initContainers"] = [
            {
                "name": "first",
                "image": h.image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo one > /work/index.html"],
                "volumeMounts": mount,
            },
            {
                "name": "second",
                "image": h.image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "grep -q one /work/index.html && echo two >> /work/index.html"],
                "volumeMounts": mount,
            },
        ]
    return doc


def settle(h: Home, a: agent_mod.Agent, done: Any, timeout: float = 60) -> None:
    """Drive passes until `done()` (each init container needs one pass to start, one to see it exit)."""

    def step() -> bool:
        assert_ok(a.reconcile())
        return bool(done())

    wait_for(step, timeout=timeout, interval=0.2)


def test_init_containers_run_in_order_then_the_apps_share_the_sandbox_network(home: Home) -> None:
    home.put("m", multi(home, "m", inits=True))
    a = agent(home)
    first = a.reconcile()
    assert_ok(first)
    assert [(o.action.verb, o.action.container) for o in first.outcomes] == [(plan.INIT, "first")]
    pod = first.plan.daemonsets[0].desired.name

    def apps_running() -> bool:
        cs = by_container(home, pod)
        return all(n in cs and cs[n].running for n in ("web", "client"))

    settle(home, a, apps_running)
    cs = by_container(home, pod)
    assert set(cs) == {"POD", "first", "second", "web", "client"}
    assert cs["POD"].labels[identity.LABEL_ROLE] == identity.ROLE_SANDBOX
    assert cs["POD"].image == localimage.PAUSE_TAG
    for n, index in (("first", "0"), ("second", "1")):
        assert cs[n].labels[identity.LABEL_ROLE] == identity.ROLE_INIT
        assert cs[n].labels[identity.LABEL_INIT_INDEX] == index
        assert cs[n].state == "exited" and cs[n].exit_code == 0
    sandbox_info = home.engine.inspect(cs["POD"].id)
    assert sandbox_info is not None
    for n in ("web", "client", "first", "second"):
        info = home.engine.inspect(cs[n].id)
        assert info is not None
        assert info["HostConfig"]["NetworkMode"] in (
            f"container:{cs['POD'].id}",
            f"container:{sandbox_info['Name'].lstrip('/')}",
        )
    # the init containers ran in order: the page holds both lines; the client reaches it on localhost
    get = ("sh", "-c", "wget -q -O - http://127.0.0.1:8080/index.html | grep -q two")
    wait_for(lambda: exec_ok(home, cs["client"].id, *get))
    pod_doc = status_pod(home, "m")
    assert pod_doc["status"] == "Running" and pod_doc["ready"]
    assert [c["name"] for c in pod_doc["containers"]] == ["client", "web"]
    assert [c["state"] for c in pod_doc["initContainers"]] == ["terminated", "terminated"]

    # a restart of one container keeps its sibling's network, and init containers do not run again
    home.engine.stop(cs["web"].id, 1)
    settle(home, a, lambda: by_container(home, pod)["web"].running)
    after = by_container(home, pod)
    assert plan.attempt_of(after["web"]) == 1
    for n in ("POD", "client", "first", "second"):
        assert after[n].id == cs[n].id
    assert after["client"].running
    wait_for(lambda: exec_ok(home, after["client"].id, *get))
    assert a.reconcile().plan.actions == (), "the exit records of init containers are kept"

    # the pod is replaced (new template): the old pod goes whole, sandbox last; init runs again
    changed = multi(home, "m", inits=True)
    changed["spec"]["template"]["metadata"]["annotations"] = {"v": "2"}
    home.put("m", changed)
    a.relist()
    second = a.reconcile()
    assert_ok(second)
    assert [(o.action.verb, o.action.container) for o in second.outcomes] == [
        (plan.DELETE, ""),
        (plan.INIT, "first"),
    ]
    assert pod not in home.pods()


def test_failing_init_container_is_retried_with_backoff_and_shown(home: Home) -> None:
    doc = multi(home, "f", inits=True)
    doc["spec"]["template"]["spec"]["initContainers"][1]["command"] = ["sh", "-c", "exit 3"]
    home.put("f", doc)
    a = agent(home)

    def attempts() -> int:
        cs = [c for c in home.containers() if c.labels[identity.LABEL_CONTAINER_NAME] == "second"]
        return max((plan.attempt_of(c) for c in cs if not c.running), default=-1)

    settle(home, a, lambda: attempts() >= 1)  # failed once, retried at once, failed again
    pod_doc = status_pod(home, "f")
    assert pod_doc["phase"] == "Pending"
    assert pod_doc["status"] == "Init:CrashLoopBackOff"
    assert pod_doc["restartCount"] == 0 and pod_doc["initContainers"][1]["restartCount"] == 1
    assert not any(c.labels[identity.LABEL_ROLE] == identity.ROLE_APP for c in home.containers())
    plan_out = cli(home, "plan", "-o", "json")
    assert plan_out.returncode == 0


def test_a_dead_sandbox_recreates_the_pod_and_single_container_pods_have_none(home: Home) -> None:
    home.put("m", multi(home, "m", inits=False))
    home.put("single", home.ds("single"))
    a = agent(home)
    assert_ok(a.reconcile())
    pods = home.pods()
    single = next(p for p in pods if p.startswith("single-"))
    assert len(pods[single]) == 1, "a single-container pod costs exactly one container"
    pod = next(p for p in pods if p.startswith("m-"))
    cs = by_container(home, pod)
    assert set(cs) == {"POD", "web", "client"}
    home.engine.stop(cs["POD"].id, 1)
    result = a.reconcile()
    assert_ok(result)
    assert [o.action.verb for o in result.outcomes] == [plan.DELETE, plan.CREATE, plan.CREATE]
    again = by_container(home, pod)
    assert again["POD"].running and again["POD"].id != cs["POD"].id
    assert {again["web"].id, again["client"].id}.isdisjoint({cs["web"].id, cs["client"].id})


# --- lifecycle hooks ------------------------------------------------------------------------


def test_pre_stop_runs_before_stop_and_post_start_after_start(home: Home, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    doc = home.ds(
        "hooks",
        command=SLEEP,
        container={
            "volumeMounts": [{"name": "marks", "mountPath": "/marks"}],
            "lifecycle": {
                "postStart": {"exec": {"command": ["sh", "-c", "echo started > /marks/post"]}},
                "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /marks/pre"]}},
            },
        },
        pod={"volumes": [{"name": "marks", "hostPath": {"path": str(marks), "type": "Directory"}}]},
    )
    doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5
    home.put("hooks", doc)
    assert_ok(home.sync())
    assert (marks / "post").read_text() == "started\n"
    assert not (marks / "pre").exists()
    os.remove(home.ds_dir / "hooks.yaml")
    result = home.sync()
    assert_ok(result)
    assert [o.action.verb for o in result.outcomes] == [plan.DELETE]
    assert (marks / "pre").read_text() == "stopping\n", "preStop ran (the manifest is gone: from the label)"
    assert home.containers() == []


def test_failed_post_start_kills_the_container_and_backs_off(home: Home) -> None:
    home.put(
        "bad",
        home.ds("bad", container={"lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 1"]}}}}),
    )
    result = home.sync()
    [failed] = result.failed
    assert failed.reason == "PostStartHookError"
    [c] = home.containers()
    assert not c.running
    # held back like any failed create (the failure record backs off), then restarted as a crash
    waiting = agent(home).reconcile(dry_run=True).plan.waiting
    assert [w.reason for w in waiting] == ["PostStartHookError"]
    assert status_pod(home, "bad")["status"] == "Error"
