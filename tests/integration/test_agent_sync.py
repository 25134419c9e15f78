"""The agent's reconcile pass against the real Docker engine: desired -> observed -> plan -> execute.

Each test gets its own agent world (`home`: tests/support/agenthome.py): config, manifest directories
and stateDir under tmp_path, a namespace and node name of its own; every container the agent creates is
removed at teardown. `Recorder` wraps the real DockerRuntime only to count calls (and, once, to cut a
create short).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from nodeagent import cli
from nodeagent import runtime as rt
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import execute, identity, plan, statefiles
from nodeagent.k8s import node
from tests.support.agenthome import Crash, Home, assert_ok
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker


def verbs(result: agent_mod.PassResult) -> list[tuple[str, str]]:
    return [(o.action.verb, o.action.pod) for o in result.outcomes]


# --- create, no-op, labels --------------------------------------------------------------------


def test_create_then_noop_sync_makes_one_list_call_and_no_writes(home: Home) -> None:
    home.put("a", home.ds("a"))
    home.put("b", home.ds("b"))
    first = home.sync()
    assert_ok(first)
    assert sorted(v for v, _ in verbs(first)) == ["create", "create"]

    pods = home.pods()
    assert len(pods) == 2
    for name in ("a", "b"):
        desired = next(d.desired for d in first.plan.daemonsets if d.name == name)
        assert desired.name == f"{name}-{identity.hash_digest(desired.spec_hash)[:5]}"
        containers = pods[desired.name]
        assert len(containers) == 1, "a single-container pod costs exactly one container"
        c = containers[0]
        assert c.running
        assert c.name == f"k8s_main_{desired.name}_{home.namespace}_{home.node}_0"
        assert c.labels[identity.LABEL_MANAGED] == "true"
        assert c.labels[identity.LABEL_OWNER] == f"DaemonSet/{home.namespace}/{name}"
        assert c.labels[identity.LABEL_SPEC_HASH] == desired.spec_hash
        assert c.labels[identity.LABEL_POD_NAME] == desired.name
        assert c.labels[identity.LABEL_POD_NAMESPACE] == home.namespace
        assert c.labels[identity.LABEL_CONTAINER_NAME] == "main"
        assert c.labels[identity.LABEL_NODE] == home.node

    a, rec = home.agent()
    second = a.reconcile()
    assert second.plan.actions == ()
    assert rec.calls == ["list_managed"], "a no-op sync is one filtered list call and nothing else"
    assert {c.id for c in home.containers()} == {c.id for cs in pods.values() for c in cs}


def test_create_cut_short_is_finished_not_duplicated(home: Home) -> None:
    home.put("a", home.ds("a"))
    a, rec = home.agent()
    rec.fail_start = 1
    with pytest.raises(Crash):
        a.reconcile()
    [c] = home.containers()
    assert c.state == "created"

    second = home.sync()
    assert_ok(second)
    assert verbs(second) == [("start", c.labels[identity.LABEL_POD_NAME])]
    [after] = home.containers()
    assert after.id == c.id and after.running


# --- template change, withdrawal, bad manifests -----------------------------------------------


def test_template_change_replaces_the_pod(home: Home) -> None:
    home.put("a", home.ds("a"))
    assert_ok(home.sync())
    [old] = home.containers()

    home.put("a", home.ds("a", container={"env": [{"name": "V", "value": "2"}]}))
    result = home.sync()
    assert_ok(result)
    assert [v for v, _ in verbs(result)] == ["delete", "create"]
    delete = result.outcomes[0].action
    assert "pod template changed" in delete.reason
    [new] = home.containers()
    assert new.id != old.id and new.running
    assert new.labels[identity.LABEL_POD_NAME] != old.labels[identity.LABEL_POD_NAME]
    assert "V=2" in (home.engine.inspect(new.id) or {})["Config"]["Env"]


def test_withdrawn_daemonset_has_its_pod_and_dirs_removed(home: Home) -> None:
    home.put("keep", home.ds("keep"))
    path = home.put(
        "gone",
        home.ds(
            "gone",
            pod={
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                ]
            },
            container={
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "mem", "mountPath": "/mem"},
                ]
            },
        ),
    )
    first = home.sync()
    assert_ok(first)
    gone = next(c for c in home.containers() if c.labels[identity.LABEL_OWNER] == home.owner("gone"))
    pod_dir = Path(home.state_dir, "pods", gone.labels[identity.LABEL_POD_UID])
    assert pod_dir.is_dir()
    assert home.engine.exec(gone.id, ("sh", "-c", "echo x > /scratch/f"), timeout=10) == 0
    assert list(pod_dir.rglob("f")), "emptyDir lives in the pod's directory under stateDir"
    mounts = (home.engine.inspect(gone.id) or {})["Mounts"]
    assert {m["Destination"]: m["Type"] for m in mounts}["/mem"] == "tmpfs", "medium: Memory is a tmpfs"

    path.unlink()
    result = home.sync()
    assert_ok(result)
    assert [v for v, _ in verbs(result)] == ["delete"]
    assert "no longer in any source" in result.outcomes[0].action.reason
    assert home.running_owners() == {home.owner("keep")}
    assert not pod_dir.exists(), "emptyDir is removed with its pod"


@pytest.mark.parametrize(
    "broken",
    [
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a\n  oops: [\n",  # unparsable YAML
        "",  # an empty file
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a, namespace: NS}\nspec: {}\n",  # invalid
    ],
    ids=["unparsable", "empty", "invalid"],
)
def test_bad_manifest_removes_nothing_even_after_an_agent_restart(home: Home, broken: str) -> None:
    home.put("a", home.ds("a"))
    home.put("b", home.ds("b"))
    a, _ = home.agent()
    assert_ok(a.reconcile())
    before = {c.id for c in home.containers()}

    home.put("a", broken.replace("NS", home.namespace))
    a.relist()
    same_agent = a.reconcile()
    assert same_agent.plan.actions == (), "the last good version of the file stays in force"

    # an agent started while the file is broken has no last good version, and still removes nothing
    fresh = home.sync()
    assert [v for v, _ in verbs(fresh)] == []
    assert {c.id for c in home.containers()} == before
    assert all(c.running for c in home.containers())
    if broken:
        assert fresh.desired.errors, "the error is reported"

    # other DaemonSets keep being reconciled meanwhile
    home.put("c", home.ds("c"))
    assert [v for v, _ in verbs(home.sync())] == ["create"]


def test_unreadable_source_removes_nothing_until_every_source_has_spoken(home: Home) -> None:
    """ARCHITECTURE.md §2: a failing source emits nothing; nothing is removed before every source was read."""
    home.extra_dirs = ["more"]
    home.write_config()
    (home.root / "more").mkdir()
    path = home.put("a", home.ds("a"))
    home.put("b", home.ds("b"), where="more")
    assert_ok(home.sync())
    before = {c.id for c in home.containers()}
    assert len(before) == 2

    (home.root / "more").rename(home.root / "more.away")  # the second source cannot be read
    path.unlink()  # and "a" is withdrawn from the first
    a, _ = home.agent()
    result = a.reconcile()
    assert verbs(result) == [], "not every source has delivered a snapshot: nothing is removed"
    assert {c.id for c in home.containers()} == before
    assert any("cannot read directory" in e.message for e in result.desired.errors)

    (home.root / "more.away").rename(home.root / "more")
    result = home.sync()
    assert_ok(result)
    assert [v for v, _ in verbs(result)] == ["delete"]
    assert home.running_owners() == {home.owner("b")}


def test_changed_selector_is_refused_and_old_pod_keeps_running(home: Home) -> None:
    home.put("a", home.ds("a"))
    a, _ = home.agent()
    assert_ok(a.reconcile())
    [old] = home.containers()

    home.put("a", home.ds("a", labels={"app": "a", "tier": "x"}))
    a.relist()
    result = a.reconcile()
    assert [v for v, _ in verbs(result)] == []
    assert any("selector" in (e.path + e.message) for e in result.desired.errors)
    [still] = home.containers()
    assert still.id == old.id and still.running


def test_changed_selector_is_refused_after_an_agent_restart_too(home: Home) -> None:
    """The merger's memory is gone in a new process; the selector recorded on the pod still binds."""
    home.put("a", home.ds("a"))
    assert_ok(home.sync())
    [old] = home.containers()

    home.put("a", home.ds("a", labels={"app": "a", "tier": "x"}))
    result = home.sync()
    assert verbs(result) == []
    [problem] = [e for e in result.desired.errors if e.path == "spec.selector"]
    assert "immutable" in problem.message and problem.file.endswith("a.yaml")
    [still] = home.containers()
    assert still.id == old.id and still.running

    home.put("a", home.ds("a"))  # restored: nothing to do
    assert home.sync().plan.actions == ()


def test_external_docker_rm_is_recreated(home: Home) -> None:
    home.put("a", home.ds("a"))
    assert_ok(home.sync())
    [old] = home.containers()
    home.engine.remove(old.id)

    result = home.sync()
    assert_ok(result)
    assert verbs(result) == [("create", old.labels[identity.LABEL_POD_NAME])]
    [new] = home.containers()
    assert new.running and new.name == old.name


def test_foreign_containers_are_never_touched(
    home: Home, test_labels: dict[str, str], name_prefix: str, docker_cleanup: None
) -> None:
    lookalike = {
        **test_labels,
        identity.LABEL_POD_NAMESPACE: home.namespace,
        identity.LABEL_POD_NAME: "intruder-12345",
        identity.LABEL_OWNER: home.owner("intruder"),
        identity.LABEL_CONTAINER_NAME: "main",
        identity.LABEL_NODE: home.node,
    }  # everything but io.nodeagent.managed
    foreign = []
    for i, labels in enumerate((test_labels, lookalike)):
        spec = rt.ContainerCreate(
            name=f"{name_prefix}-foreign-{home.namespace}-{i}",
            image=home.image,
            labels=labels,
            entrypoint=("sleep", "1000000"),
            stop_timeout=1,
        )
        cid = home.engine.create(spec)
        home.engine.start(cid)
        foreign.append(cid)

    path = home.put("a", home.ds("a"))
    assert_ok(home.sync())
    path.unlink()
    result = home.sync()
    assert_ok(result)
    touched = {cid for o in result.outcomes for cid in o.action.container_ids}
    assert not touched & set(foreign)
    for cid in foreign:
        info = home.engine.inspect(cid)
        assert info is not None and info["State"]["Running"]


# --- node labels and taints -------------------------------------------------------------------


def test_node_label_change_adds_and_removes(home: Home) -> None:
    home.labels = {"disktype": "ssd"}
    home.write_config()
    home.put("ssd", home.ds("ssd", pod={"nodeSelector": {"disktype": "ssd"}}))
    home.put("hdd", home.ds("hdd", pod={"nodeSelector": {"disktype": "hdd"}}))
    home.put("all", home.ds("all"))
    assert_ok(home.sync())
    assert home.running_owners() == {home.owner("ssd"), home.owner("all")}

    home.labels = {"disktype": "hdd"}
    home.write_config()
    result = home.sync()
    assert_ok(result)
    assert sorted(verbs(result))[0][0] == "create"
    assert sorted(v for v, _ in verbs(result)) == ["create", "delete"]
    assert home.running_owners() == {home.owner("hdd"), home.owner("all")}
    delete = next(o.action for o in result.outcomes if o.action.verb == "delete")
    assert "node affinity/selector" in delete.reason


def test_noschedule_keeps_running_pods_noexecute_evicts(home: Home) -> None:
    home.put("a", home.ds("a"))
    home.put("b", home.ds("b"))
    assert_ok(home.sync())
    running = {c.id for c in home.containers()}

    # NoSchedule: running pods stay; a new DaemonSet does not start here
    home.taints = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    home.write_config()
    home.put("new", home.ds("new"))
    result = home.sync()
    assert_ok(result)
    assert verbs(result) == []
    assert {c.id for c in home.containers()} == running
    new = next(d for d in result.plan.daemonsets if d.name == "new")
    assert not new.decision.should_run
    assert any("untolerated taint" in r for r in new.decision.reasons)

    # NoExecute: evicted, except a DaemonSet that tolerates it
    home.put(
        "b",
        home.ds("b", pod={"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
    )
    home.taints = [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]
    home.write_config()
    result = home.sync()
    assert_ok(result)
    assert home.running_owners() == {home.owner("b")}
    deleted = [o.action for o in result.outcomes if o.action.verb == "delete"]
    assert any(d.owner == home.owner("a") and "untolerated taint" in d.reason for d in deleted)


def test_noexecute_toleration_seconds_evicts_after_the_delay(home: Home) -> None:
    toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
    home.put("a", home.ds("a", pod={"tolerations": [toleration]}))
    assert_ok(home.sync())
    [c] = home.containers()

    home.taints = [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]
    home.write_config()
    offset = [0.0]
    a, _ = home.agent(clock=lambda: time.time() + offset[0])
    result = a.reconcile()
    assert verbs(result) == []
    [w] = [w for w in result.plan.waiting if w.reason == "TolerationSeconds"]
    assert w.until - time.time() == pytest.approx(60, abs=5)
    assert home.containers()[0].id == c.id

    offset[0] = 61.0
    result = a.reconcile()
    assert_ok(result)
    assert [v for v, _ in verbs(result)] == ["delete"]
    assert "tolerationSeconds" in result.outcomes[0].action.reason
    assert home.containers() == []


# --- restarts ---------------------------------------------------------------------------------


def _exited(home: Home) -> bool:
    cs = home.containers()
    return bool(cs) and all(c.state == "exited" for c in cs)


def test_crash_is_restarted_with_backoff_and_counted(home: Home) -> None:
    """initial backoff 30 s: the first restart is immediate, the second waits (checked on the plan)."""
    home.put("crash", home.ds("crash", command="exit 3"))
    offset = [0.0]
    a, _ = home.agent(clock=lambda: time.time() + offset[0])
    assert_ok(a.reconcile())
    wait_for(lambda: _exited(home))

    first = a.reconcile()  # the kubelet restarts a first crash at once, then backs off
    assert_ok(first)
    assert [(o.action.verb, o.action.attempt) for o in first.outcomes] == [("restart", 1)]
    assert "exited with code 3" in first.outcomes[0].action.reason
    wait_for(lambda: _exited(home))
    old, c = sorted(home.containers(), key=lambda x: int(x.labels[identity.LABEL_ATTEMPT]))
    assert old.labels[identity.LABEL_ATTEMPT] == "0"  # kept until a dead newer attempt replaces it (GC)
    assert c.labels[identity.LABEL_ATTEMPT] == "1"
    assert c.labels[plan.LABEL_BACKOFF_STEP] == "1"

    held = a.reconcile()
    assert [o.action.verb for o in held.outcomes] == ["remove"], "no restart before the backoff has passed"
    assert held.outcomes[0].action.container_ids == (old.id,), "one dead container per container is kept"
    [w] = held.plan.waiting
    assert w.reason == "CrashLoopBackOff" and w.container == "main"
    _, finished = home.engine.timestamps(c.id)
    assert finished is not None and w.until == pytest.approx(finished + 30, abs=1)
    assert held.plan.wake_at == w.until
    doc = cli.status_json(a, held)
    [pod] = doc["daemonSets"][0]["pods"]
    assert pod["restartCount"] == 1 and pod["status"] == "CrashLoopBackOff"

    offset[0] = 31.0
    again = a.reconcile()
    assert_ok(again)
    assert [(o.action.verb, o.action.attempt) for o in again.outcomes] == [("restart", 2)]
    wait_for(lambda: _exited(home))
    c = max(home.containers(), key=lambda x: int(x.labels[identity.LABEL_ATTEMPT]))
    assert c.labels[plan.LABEL_BACKOFF_STEP] == "2"
    held = a.reconcile()
    [w] = held.plan.waiting
    _, finished = home.engine.timestamps(c.id)
    assert finished is not None
    assert w.until == pytest.approx(finished + 60, abs=1), "the delay doubles"
    [pod] = cli.status_json(a, held)["daemonSets"][0]["pods"]
    assert pod["restartCount"] == 2


# --- hostPath types ---------------------------------------------------------------------------


def _hostpath_ds(home: Home, name: str, path: Path, kind: str) -> dict[str, Any]:
    return home.ds(
        name,
        pod={"volumes": [{"name": "h", "hostPath": {"path": str(path), "type": kind}}]},
        container={"volumeMounts": [{"name": "h", "mountPath": "/h"}]},
    )


def test_every_hostpath_type_is_checked_or_created(home: Home, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "dir").mkdir()
    (host / "file").write_text("x")
    sock = host / "sock"
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    os.mknod(host / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    os.mknod(host / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device number
    good = {
        "unset": (host / "anything", ""),
        "dor": (host / "new-dir", "DirectoryOrCreate"),
        "dir": (host / "dir", "Directory"),
        "for": (host / "new-file", "FileOrCreate"),
        "file": (host / "file", "File"),
        "sock": (sock, "Socket"),
        "chr": (host / "chr", "CharDevice"),
        "blk": (host / "blk", "BlockDevice"),
    }
    bad = {
        "bad-dir": (host / "file", "Directory", "is not a directory"),
        "bad-file": (host / "dir", "File", "is not a file"),
        "bad-sock": (host / "file", "Socket", "is not a socket"),
        "bad-chr": (host / "file", "CharDevice", "is not a character device"),
        "bad-blk": (host / "chr", "BlockDevice", "is not a block device"),
        "missing": (host / "nope", "Directory", "doesn't exist"),
    }
    for name, (path, kind) in good.items():
        home.put(name, _hostpath_ds(home, name, path, kind))
    for name, (path, kind, _) in bad.items():
        home.put(name, _hostpath_ds(home, name, path, kind))
    a, _ = home.agent()
    try:
        result = a.reconcile()
    finally:
        s.close()

    failed = {o.action.owner.rsplit("/", 1)[-1]: o for o in result.failed}
    assert set(failed) == set(bad)
    for name, (path, _, words) in bad.items():
        o = failed[name]
        assert o.reason == execute.CREATE_CONTAINER_CONFIG_ERROR
        assert str(path) in o.message and words in o.message, o.message
        if name != "missing":
            assert "hostPath type check failed" in o.message
    assert home.running_owners() == {home.owner(n) for n in good}, "other pods are unaffected"
    assert len(home.containers()) == len(good), "a failed check comes before `docker create`"
    assert (host / "new-dir").is_dir()
    assert (host / "new-file").is_file(), "FileOrCreate creates a file, not a directory"
    assert not (host / "nope").exists()

    # the failure is shown as the pod's status, and retried only after a backoff
    held = a.reconcile()
    assert verbs(held) == []
    doc = cli.status_json(a, held)
    bad_status = next(d for d in doc["daemonSets"] if d["name"] == "bad-dir")
    assert bad_status["numberReady"] == 0
    assert [p["status"] for p in bad_status["pods"]] == [execute.CREATE_CONTAINER_CONFIG_ERROR]


def test_readonly_and_subpath_mounts(home: Home, tmp_path: Path) -> None:
    host = tmp_path / "data"
    (host / "sub").mkdir(parents=True)
    (host / "sub" / "inside").write_text("hello")
    home.put(
        "mounts",
        home.ds(
            "mounts",
            pod={"volumes": [{"name": "d", "hostPath": {"path": str(host), "type": "Directory"}}]},
            container={
                "volumeMounts": [
                    {"name": "d", "mountPath": "/ro", "readOnly": True},
                    {"name": "d", "mountPath": "/sub", "subPath": "sub"},
                ]
            },
        ),
    )
    assert_ok(home.sync())
    [c] = home.containers()
    assert home.engine.exec(c.id, ("sh", "-c", "test -f /ro/sub/inside"), timeout=10) == 0
    assert home.engine.exec(c.id, ("sh", "-c", "echo x > /ro/new"), timeout=10) != 0, "readOnly"
    assert (
        home.engine.exec(c.id, ("sh", "-c", "grep -q hello /sub/inside && echo y > /sub/w"), timeout=10) == 0
    )
    assert (host / "sub" / "w").read_text() == "y\n"


# --- downward API -----------------------------------------------------------------------------


def test_downward_api_and_resource_env(home: Home) -> None:
    def field_ref(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    doc = home.ds(
        "dapi",
        container={
            "env": [
                {"name": "NODE", **field_ref("spec.nodeName")},
                {"name": "POD", **field_ref("metadata.name")},
                {"name": "NS", **field_ref("metadata.namespace")},
                {"name": "APP", **field_ref("metadata.labels['app']")},
                {"name": "NOTE", **field_ref("metadata.annotations['note']")},
                {"name": "HOST_IP", **field_ref("status.hostIP")},
                {"name": "POD_IP", **field_ref("status.podIP")},
                {
                    "name": "MEM",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
                {"name": "GREETING", "value": "hi $(NODE)"},
            ],
            "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
        },
    )
    doc["spec"]["template"]["metadata"]["annotations"] = {"note": "hello"}
    home.put("dapi", doc)
    result = home.sync()
    assert_ok(result)
    # reading status.podIP gives the pod a sandbox: its address exists before the container is created
    by_role = {c.labels[identity.LABEL_ROLE]: c for c in home.containers()}
    assert set(by_role) == {identity.ROLE_APP, identity.ROLE_SANDBOX}
    c = by_role[identity.ROLE_APP]
    info = home.engine.inspect(c.id)
    assert info is not None
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    pod_name = c.labels[identity.LABEL_POD_NAME]
    sandbox_ip = home.engine.container_ip(by_role[identity.ROLE_SANDBOX].id)
    assert sandbox_ip and env["POD_IP"] == sandbox_ip
    assert env["NODE"] == home.node
    assert env["POD"] == pod_name
    assert env["NS"] == home.namespace
    assert env["APP"] == "dapi"
    assert env["NOTE"] == "hello"
    assert env["HOST_IP"] == node.host_ip()
    assert env["MEM"] == "64"
    assert env["GREETING"] == f"hi {home.node}"
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    host_config = info["HostConfig"]
    assert host_config["CpuQuota"] * 4 == host_config["CpuPeriod"], "limits.cpu 250m: a quarter CPU"
    assert host_config["CpuShares"] == 256, "requests.cpu defaults to the limit: 250m -> 256 shares"
    assert info["Config"]["StopTimeout"] == 1
    # the container sees it too
    assert home.engine.exec(c.id, ("sh", "-c", f'test "$POD" = {pod_name}'), timeout=10) == 0


def test_host_namespaces_ports_command_and_working_dir(home: Home) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    home.put(
        "hostns",
        home.ds("hostns", pod={"hostNetwork": True, "hostPID": True, "hostIPC": True}),
    )
    home.put(
        "cmd",
        home.ds(
            "cmd",
            container={
                "command": ["sh", "-c"],
                "args": ["echo $(GREETING) > out; exec sleep 1000000", "ignored-$0"],
                "env": [{"name": "GREETING", "value": "hello"}],
                "workingDir": "/tmp",
                "ports": [{"containerPort": 8080, "hostPort": free_port, "hostIP": "127.0.0.1"}],
            },
        ),
    )
    assert_ok(home.sync())
    by_owner = {c.labels[identity.LABEL_OWNER]: c for c in home.containers()}
    hostns = home.engine.inspect(by_owner[home.owner("hostns")].id) or {}
    hc = hostns["HostConfig"]
    assert (hc["NetworkMode"], hc["PidMode"], hc["IpcMode"]) == ("host", "host", "host")
    cmd = by_owner[home.owner("cmd")]
    info = home.engine.inspect(cmd.id) or {}
    assert info["Config"]["Entrypoint"] == ["sh", "-c"]
    assert info["Config"]["Cmd"] == ["echo hello > out; exec sleep 1000000", "ignored-$0"]
    assert info["Config"]["WorkingDir"] == "/tmp"
    bindings = info["HostConfig"]["PortBindings"]["8080/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(free_port)}]
    wait_for(lambda: home.engine.exec(cmd.id, ("sh", "-c", "grep -qx hello /tmp/out"), timeout=10) == 0)


# --- static pods ------------------------------------------------------------------------------


def test_static_pod_runs_unconditionally_is_replaced_and_removed(home: Home) -> None:
    home.taints = [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]
    home.write_config()
    path = home.put("web", home.pod("web"), where="static")
    result = home.sync()
    assert_ok(result)
    [c] = home.containers()
    assert c.labels[identity.LABEL_POD_NAME] == f"web-{home.node}"
    assert c.labels[identity.LABEL_OWNER] == identity.owner_pod(home.namespace, "web")
    assert c.running
    assert home.sync().plan.actions == ()

    home.put("web", home.pod("web", "exec sleep 999999"), where="static")
    result = home.sync()
    assert_ok(result)
    assert [v for v, _ in verbs(result)] == ["delete", "create"]
    [new] = home.containers()
    assert new.id != c.id and new.running and new.labels[identity.LABEL_POD_NAME] == f"web-{home.node}"

    path.unlink()
    result = home.sync()
    assert_ok(result)
    assert [v for v, _ in verbs(result)] == ["delete"]
    assert home.containers() == []


def test_static_pod_restart_policy(home: Home) -> None:
    """Never: an exited container stays exited; OnFailure: only a non-zero exit is restarted."""
    for name, policy, code in (
        ("never", "Never", 1),
        ("onfail-ok", "OnFailure", 0),
        ("onfail", "OnFailure", 2),
    ):
        doc = home.pod(name, f"exit {code}")
        doc["spec"]["restartPolicy"] = policy
        home.put(name, doc, where="static")
    a, _ = home.agent()
    assert_ok(a.reconcile())
    wait_for(lambda: _exited(home) and len(home.containers()) == 3)
    result = a.reconcile()
    assert_ok(result)
    assert [(o.action.verb, o.action.pod) for o in result.outcomes] == [("restart", f"onfail-{home.node}")]


# --- images -----------------------------------------------------------------------------------


def test_image_pull_failure_is_errimagepull_then_backoff(home: Home) -> None:
    """No registry answers here: the failure is reported, retried after a backoff, and never crashes."""
    unreachable = "127.0.0.1:9/nodeagent-test/absent:1"  # the discard port: connection refused at once
    home.put("pull", home.ds("pull", container={"image": unreachable, "imagePullPolicy": "IfNotPresent"}))
    home.put("fine", home.ds("fine"))
    a, rec = home.agent()
    first = a.reconcile()
    [failed] = first.failed
    assert failed.reason == execute.ERR_IMAGE_PULL
    assert unreachable in failed.message
    assert home.running_owners() == {home.owner("fine")}
    assert "pull" in rec.calls

    rec.calls.clear()
    held = a.reconcile()
    assert verbs(held) == [] and "pull" not in rec.calls, "no pull again before the backoff"
    [w] = held.plan.waiting
    assert w.reason == "ImagePullBackOff", "between attempts, as kubectl shows it"
    doc = cli.status_json(a, held)
    pull = next(d for d in doc["daemonSets"] if d["name"] == "pull")
    assert [p["status"] for p in pull["pods"]] == ["ImagePullBackOff"]

    # after the backoff, the next failure shows as ImagePullBackOff, as kubectl does
    a.container_failures = {
        k: dataclasses.replace(f, last=f.last - 3600) for k, f in a.container_failures.items()
    }
    again = a.reconcile()
    [failed] = again.failed
    assert a.failures[(home.namespace, failed.action.pod)].reason == "ImagePullBackOff"
    assert a.container_failures[(home.namespace, failed.action.pod, "main")].reason == "ImagePullBackOff"


# --- failures kept in stateDir ---------------------------------------------------------------


def test_failures_file_round_trips_and_a_bad_one_is_ignored(tmp_path: Path) -> None:
    failures = {("ns", "p-1", "main"): plan.Failure(count=2, last=123.5, reason="ErrImagePull", message="no")}
    statefiles.save_failures(str(tmp_path / "state"), failures)
    assert statefiles.load_failures(str(tmp_path / "state")) == failures
    (tmp_path / "state" / statefiles.FAILURES_FILE).write_text("{not json")
    assert statefiles.load_failures(str(tmp_path / "state")) == {}
    assert statefiles.load_failures(str(tmp_path / "absent")) == {}
    (tmp_path / "ro").write_text("a file where the state dir should be")
    statefiles.save_failures(str(tmp_path / "ro"), failures)  # logged, never raised
