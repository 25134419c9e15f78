"""DockerRuntime against the real engine: no mocks. Every container carries the test labels."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import random
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.utils
import pytest

from nodeagent import errors, runtime
from nodeagent.agent import identity, podconfig, volumes
from nodeagent.k8s import model, quantity
from nodeagent.runtime import docker as dockerrt
from tests.support.waiting import wait_for

Runtime = dockerrt.DockerRuntime


def managed(labels: Mapping[str, str], **extra: str) -> dict[str, str]:
    return {**labels, identity.LABEL_MANAGED: "true", **extra}


def spec(name: str, image: str, labels: Mapping[str, str], **kw: Any) -> runtime.ContainerCreate:
    kw.setdefault("entrypoint", ("sleep", "300"))
    kw.setdefault("stop_timeout", 1)
    return runtime.ContainerCreate(name=name, image=image, labels=managed(labels), **kw)


def observed(rt: Runtime, cid: str) -> runtime.ObservedContainer | None:
    return next((c for c in rt.list_managed() if c.id == cid), None)


def state_of(rt: Runtime, cid: str) -> str | None:
    found = observed(rt, cid)
    return found.state if found else None


# --- pure helpers (no engine) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Exited (0) 3 minutes ago", 0),
        ("Exited (137) About a minute ago", 137),
        ("Exited (-1) 2 seconds ago", -1),
        ("Up 3 minutes", None),
        ("Created", None),
        ("", None),
    ],
)
def test_parse_exit_code(status: str, code: int | None) -> None:
    assert dockerrt.parse_exit_code(status) == code


def test_parse_time() -> None:
    assert dockerrt.parse_time("0001-01-01T00:00:00Z") is None
    assert dockerrt.parse_time("") is None
    assert dockerrt.parse_time("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456789)
    assert dockerrt.parse_time("2024-01-02T03:04:05Z") == 1704164645.0
    assert dockerrt.parse_time("2024-01-02T04:04:05.5+01:00") == pytest.approx(1704164645.5)


def test_unreachable_engine_is_runtime_unavailable() -> None:
    rt = Runtime(base_url="unix:///nonexistent/docker.sock", timeout=2)
    assert rt.ping() is False
    with pytest.raises(errors.RuntimeUnavailable):
        rt.list_managed()
    stop = threading.Event()
    assert list(rt.events(stop)) == []  # the engine is gone: the stream just ends


# --- engine -----------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_roundtrip_create_start_list_stop_remove(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    before = time.time()
    cid = rt.create(spec(f"{name_prefix}-rt", test_image, test_labels))
    assert state_of(rt, cid) == "created"
    rt.start(cid)
    found = observed(rt, cid)
    assert found is not None
    assert (found.name, found.state, found.running, found.exit_code) == (
        f"{name_prefix}-rt",
        "running",
        True,
        None,
    )
    assert found.image == test_image
    assert found.labels[identity.LABEL_MANAGED] == "true"
    assert found.created_at == pytest.approx(before, abs=5)
    started = rt.started_at(cid)
    assert started is not None and started >= found.created_at - 1
    assert rt.finished_at(cid) is None

    rt.stop(cid, timeout=1)  # busybox sleep as PID 1 ignores SIGTERM: killed after 1 s
    found = observed(rt, cid)
    assert found is not None
    assert (found.state, found.running, found.exit_code) == ("exited", False, 137)
    finished = rt.finished_at(cid)
    assert finished is not None and finished >= started

    rt.remove(cid)
    assert observed(rt, cid) is None
    rt.remove(cid)  # already gone: success
    rt.stop(cid, timeout=1)  # stopping a missing container: nothing to do
    assert rt.finished_at(cid) is None


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_create_is_idempotent_by_name(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    s = spec(f"{name_prefix}-idem", test_image, test_labels)
    first = docker_runtime.create(s)
    assert docker_runtime.create(s) == first
    assert [c.id for c in docker_runtime.list_managed() if c.name == s.name] == [first]


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_exit_code_is_decoded(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    cid = rt.create(spec(f"{name_prefix}-exit", test_image, test_labels, entrypoint=("sh", "-c", "exit 3")))
    rt.start(cid)
    wait_for(lambda: state_of(rt, cid) == "exited")
    found = observed(rt, cid)
    assert found is not None and found.exit_code == 3


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_command_args_env_and_workdir_reach_the_process(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    script = 'test "$GREETING" = "hello world" && test "$(pwd)" = /tmp && test "$1" = arg1'
    s = spec(
        f"{name_prefix}-cmd",
        test_image,
        test_labels,
        entrypoint=("sh", "-c", script, "sh"),
        cmd=("arg1",),
        env=("GREETING=hello world",),
        working_dir="/tmp",
    )
    cid = rt.create(s)
    rt.start(cid)
    wait_for(lambda: state_of(rt, cid) == "exited")
    found = observed(rt, cid)
    assert found is not None and found.exit_code == 0


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_image_cmd_used_when_only_args_or_nothing(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    # no entrypoint, no cmd: the image's CMD (/bin/sh), which exits at once without a stdin
    cid = rt.create(spec(f"{name_prefix}-imgcmd", test_image, test_labels, entrypoint=None))
    info = rt.inspect(cid)
    assert info is not None
    assert info["Config"]["Cmd"] == ["/bin/sh"]
    # only cmd: replaces the image CMD
    cid2 = rt.create(spec(f"{name_prefix}-args", test_image, test_labels, entrypoint=None, cmd=("true",)))
    info2 = rt.inspect(cid2)
    assert info2 is not None
    assert (info2["Config"]["Entrypoint"], info2["Config"]["Cmd"]) == (None, ["true"])


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_every_field_visible_in_inspect(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    port = random.randint(20000, 29999)
    with tempfile.TemporaryDirectory() as host_dir:
        os.chmod(host_dir, 0o777)
        s = spec(
            f"{name_prefix}-fields",
            test_image,
            test_labels,
            cmd=("300",),
            entrypoint=("sleep",),
            env=("A=1", "B=two"),
            working_dir="/tmp",
            mounts=(
                runtime.Mount(target="/data", source=host_dir, read_only=True),
                runtime.Mount(target="/scratch", tmpfs=True, tmpfs_size=1 << 20),
            ),
            hostname="pod-host",
            ports=(
                runtime.PortBinding(80, "tcp", port),
                runtime.PortBinding(53, "udp", 0, "127.0.0.1"),
            ),
            memory_limit=64 * 2**20,
            nano_cpus=250_000_000,
            cpu_shares=256,
            cap_add=("NET_ADMIN",),
            cap_drop=("MKNOD",),
            user="65534:65534",
            group_add=("100", "200"),
            read_only_rootfs=True,
            security_opt=("no-new-privileges",),
            sysctls={"net.ipv4.ip_forward": "1"},
            dns=("10.9.9.9",),
            dns_search=("svc.local",),
            extra_hosts=("foo:10.1.2.3",),
            stop_timeout=7,
            stdin_open=True,
            tty=True,
        )
        cid = rt.create(s)
        info = rt.inspect(cid)
        assert info is not None
        config, hc = info["Config"], info["HostConfig"]
        assert info["Name"] == f"/{name_prefix}-fields"
        assert config["Labels"] == dict(s.labels)
        assert (config["Entrypoint"], config["Cmd"]) == (["sleep"], ["300"])
        assert {"A=1", "B=two"} <= set(config["Env"])
        assert (config["WorkingDir"], config["Hostname"], config["User"]) == (
            "/tmp",
            "pod-host",
            "65534:65534",
        )
        assert (config["StopTimeout"], config["OpenStdin"], config["Tty"]) == (7, True, True)
        assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp"}
        mounts = {m["Target"]: m for m in hc["Mounts"]}
        assert mounts["/data"]["Type"] == "bind"
        assert mounts["/data"]["Source"] == host_dir
        assert mounts["/data"]["ReadOnly"] is True
        assert mounts["/scratch"]["Type"] == "tmpfs"
        assert mounts["/scratch"]["TmpfsOptions"]["SizeBytes"] == 1 << 20
        assert hc["PortBindings"]["80/tcp"] == [{"HostIp": "", "HostPort": str(port)}]
        assert hc["PortBindings"]["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "0"}]  # 0: any
        assert hc["Memory"] == 64 * 2**20
        assert (hc["CpuPeriod"], hc["CpuQuota"], hc["CpuShares"]) == (100_000, 25_000, 256)
        assert (hc["CapAdd"], hc["CapDrop"]) == (["NET_ADMIN"], ["MKNOD"])
        assert hc["GroupAdd"] == ["100", "200"]
        assert hc["ReadonlyRootfs"] is True
        assert hc["SecurityOpt"] == ["no-new-privileges"]
        assert hc["Sysctls"] == {"net.ipv4.ip_forward": "1"}
        assert (hc["Dns"], hc["DnsSearch"], hc["ExtraHosts"]) == (
            ["10.9.9.9"],
            ["svc.local"],
            ["foo:10.1.2.3"],
        )
        assert hc["RestartPolicy"]["Name"] in ("", "no")
        assert hc["Privileged"] is False

        rt.start(cid)  # and the engine accepts all of it
        assert state_of(rt, cid) == "running"
        # /data is world-writable on the host, so only the read-only mount stops the write
        assert rt.exec(cid, ("sh", "-c", "test -d /data && ! touch /data/x"), timeout=10) == 0
        assert rt.exec(cid, ("sh", "-c", "! touch /tmp/x && touch /scratch/x"), timeout=10) == 0
        assert rt.exec(cid, ("sh", "-c", 'test "$(id -u):$(id -g)" = 65534:65534'), timeout=10) == 0
        assert rt.exec(cid, ("sh", "-c", "id -G | grep -qw 200"), timeout=10) == 0
        assert rt.exec(cid, ("sh", "-c", "grep -q '10.1.2.3.*foo' /etc/hosts"), timeout=10) == 0
        assert rt.exec(cid, ("sh", "-c", "grep -q 10.9.9.9 /etc/resolv.conf"), timeout=10) == 0
        rt.remove(cid)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_namespaces_and_propagation(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    host = rt.create(
        spec(
            f"{name_prefix}-host",
            test_image,
            test_labels,
            network_mode="host",
            pid_mode="host",
            ipc_mode="host",
        )
    )
    hc = (rt.inspect(host) or {})["HostConfig"]
    assert (hc["NetworkMode"], hc["PidMode"], hc["IpcMode"]) == ("host", "host", "host")
    rt.start(host)
    assert rt.exec(host, ("sh", "-c", "test -d /proc/1"), timeout=10) == 0

    joined = rt.create(
        spec(
            f"{name_prefix}-joined",
            test_image,
            test_labels,
            network_mode=f"container:{name_prefix}-host",
            ipc_mode="shareable",
        )
    )
    hc = (rt.inspect(joined) or {})["HostConfig"]
    assert hc["NetworkMode"] == f"container:{host}"  # the engine resolves the name to the id

    with tempfile.TemporaryDirectory() as host_dir:
        prop = rt.create(
            spec(
                f"{name_prefix}-prop",
                test_image,
                test_labels,
                mounts=(runtime.Mount(target="/h", source=host_dir, propagation="rslave"),),
            )
        )
        mounts = (rt.inspect(prop) or {})["HostConfig"]["Mounts"]
        assert mounts[0]["BindOptions"]["Propagation"] == "rslave"


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_privileged_mapped_to_capabilities(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    """The shape podconfig produces when the host withholds a capability: it must start."""
    rt = docker_runtime
    s = spec(
        f"{name_prefix}-priv",
        test_image,
        test_labels,
        cap_add=("ALL",),
        cap_drop=("SYS_RESOURCE",),
        devices_all=True,
        security_opt=("apparmor=unconfined", "seccomp=unconfined", "systempaths=unconfined"),
    )
    cid = rt.create(s)
    hc = (rt.inspect(cid) or {})["HostConfig"]
    assert (hc["CapAdd"], hc["CapDrop"], hc["Privileged"]) == (["ALL"], ["SYS_RESOURCE"], False)
    assert hc["DeviceCgroupRules"] == ["a *:* rwm"]
    assert hc["MaskedPaths"] == [] and hc["ReadonlyPaths"] == []
    assert "systempaths=unconfined" not in (hc["SecurityOpt"] or [])
    devices = dockerrt.host_devices()
    assert [d["PathOnHost"] for d in hc["Devices"]] == devices
    rt.start(cid)
    assert state_of(rt, cid) == "running"
    if devices:
        assert rt.exec(cid, ("test", "-e", devices[0]), timeout=10) == 0


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_exec_exit_code_and_timeout(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    cid = rt.create(spec(f"{name_prefix}-exec", test_image, test_labels))
    rt.start(cid)
    assert rt.exec(cid, ("true",), timeout=10) == 0
    assert rt.exec(cid, ("sh", "-c", "exit 7"), timeout=10) == 7
    started = time.monotonic()
    with pytest.raises(runtime.ExecTimeout):
        rt.exec(cid, ("sleep", "5"), timeout=0.5)
    assert time.monotonic() - started < 3
    with pytest.raises(errors.ContainerRuntimeError):
        rt.exec("no-such-container-id", ("true",), timeout=1)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_events_wake_on_die_and_stop(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    stop = threading.Event()
    seen: queue.Queue[runtime.RuntimeEvent] = queue.Queue()
    done = threading.Event()

    def consume() -> None:
        for event in rt.events(stop):
            seen.put(event)
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.2)
    cid = rt.create(spec(f"{name_prefix}-events", test_image, test_labels, entrypoint=("sh", "-c", "exit 2")))
    rt.start(cid)
    deadline = time.monotonic() + 15
    actions: list[str] = []
    while time.monotonic() < deadline and "die" not in actions:
        try:
            event = seen.get(timeout=0.5)
        except queue.Empty:
            continue
        if event.container_id == cid:
            actions.append(event.action)
            if event.action == "die":
                assert event.labels.get(identity.LABEL_MANAGED) == "true"
                assert event.labels.get("exitCode") == "2"
    assert "die" in actions
    assert "start" in actions
    stop.set()
    assert done.wait(5), "events() did not return after stop was set"


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_events_ignore_unmanaged_containers(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str
) -> None:
    rt = docker_runtime
    stop = threading.Event()
    seen: list[runtime.RuntimeEvent] = []

    def consume() -> None:
        seen.extend(rt.events(stop))

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.2)
    unmanaged = runtime.ContainerCreate(
        name=f"{name_prefix}-unmanaged", image=test_image, labels=test_labels, entrypoint=("true",)
    )
    cid = rt.create(unmanaged)
    rt.start(cid)
    time.sleep(1.5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert all(e.container_id != cid for e in seen)
    assert all(c.id != cid for c in rt.list_managed())


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_images(docker_runtime: Runtime, test_image: str) -> None:
    rt = docker_runtime
    assert rt.image_present(test_image) is True
    assert rt.image_present("nodeagent-test/does-not-exist:nope") is False
    assert rt.image_present("nodeagent-test/INVALID:x") is False
    started = time.monotonic()
    with pytest.raises(errors.ImagePullError, match="invalid reference format"):
        rt.pull("nodeagent-test/INVALID:x")  # refused by the engine before any network traffic
    assert time.monotonic() - started < 5


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_create_with_missing_image(
    docker_runtime: Runtime, test_labels: dict[str, str], name_prefix: str
) -> None:
    with pytest.raises(errors.ContainerRuntimeError, match="is not present"):
        docker_runtime.create(spec(f"{name_prefix}-noimg", "nodeagent-test/does-not-exist:nope", test_labels))


@pytest.fixture
def saved_image(test_image: str) -> Iterator[str]:
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    fd, path = tempfile.mkstemp(suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in client.get_image(test_image):
                fh.write(chunk)
        yield path
    finally:
        client.close()
        os.unlink(path)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_load_images(docker_runtime: Runtime, test_image: str, saved_image: str) -> None:
    assert test_image in docker_runtime.load_images(saved_image)
    with pytest.raises(errors.ContainerRuntimeError, match="no such file"):
        docker_runtime.load_images(saved_image + ".missing")


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_pod_built_by_podconfig_runs(
    docker_runtime: Runtime, test_image: str, test_labels: dict[str, str], name_prefix: str, tmp_path: Path
) -> None:
    """volumes.prepare → podconfig.build → create/start: the process sees what Kubernetes would give it."""
    rt = docker_runtime
    script = (
        'test "$NODE" = node-a && test "$POD" = "$1" && test "$GREETING" = "hi-node-a" '
        '&& test -d /host && test -w /scratch && test -w /mem && test "$(hostname)" = "$1" '
        '&& test "$MEM_MI" = 32 && grep -q 10.1.2.3 /etc/hosts'
    )
    app = model.Container(
        name="app",
        image=test_image,
        command=("sh", "-c", script, "sh"),
        args=("$(POD)",),
        env=(
            model.EnvVar(
                "NODE", value_from=model.EnvVarSource(field_ref=model.ObjectFieldSelector("spec.nodeName"))
            ),
            model.EnvVar(
                "POD", value_from=model.EnvVarSource(field_ref=model.ObjectFieldSelector("metadata.name"))
            ),
            model.EnvVar("GREETING", "hi-$(NODE)"),
            model.EnvVar(
                "MEM_MI",
                value_from=model.EnvVarSource(
                    resource_field_ref=model.ResourceFieldSelector(
                        "limits.memory", divisor=quantity.parse("1Mi")
                    )
                ),
            ),
        ),
        resources=model.ResourceRequirements(limits={"memory": quantity.parse("32Mi")}),
        volume_mounts=(
            model.VolumeMount("host", "/host", read_only=True),
            model.VolumeMount("scratch", "/scratch"),
            model.VolumeMount("mem", "/mem"),
        ),
    )
    pod_spec = model.PodSpec(
        containers=(app,),
        volumes=(
            model.Volume("host", model.HostPathVolumeSource(str(tmp_path / "host"), "DirectoryOrCreate")),
            model.Volume("scratch", model.EmptyDirVolumeSource()),
            model.Volume(
                "mem", model.EmptyDirVolumeSource(medium="Memory", size_limit=quantity.parse("8Mi"))
            ),
        ),
        host_aliases=(("10.1.2.3", ("registry.local",)),),
        termination_grace_period_seconds=2,
    )
    pod_name = f"{name_prefix}-pod"
    owner = identity.owner_pod("default", pod_name)
    uid = identity.pod_uid(owner, pod_name)
    state_dir = str(tmp_path / "state")
    ctx = podconfig.PodContext(
        owner=owner,
        namespace="default",
        pod_name=pod_name,
        metadata=model.ObjectMeta(name=pod_name),
        spec=pod_spec,
        spec_hash="v1-0123456789abcdef",
        node_name="node-a",
        host_ip="10.0.0.5",
        volume_paths=volumes.prepare(state_dir, uid, pod_spec),
    )
    created = podconfig.build(ctx, app, role=identity.ROLE_APP, attempt=0)
    created = dataclasses.replace(created, labels={**created.labels, **test_labels})
    cid = rt.create(created)
    rt.start(cid)
    wait_for(lambda: state_of(rt, cid) == "exited")
    found = observed(rt, cid)
    assert found is not None and found.exit_code == 0
    assert found.labels[identity.LABEL_OWNER] == owner
    rt.remove(cid)
    volumes.remove_pod_dirs(state_dir, uid)


@pytest.mark.docker
def test_many_containers_at_once_share_one_pool_none_closed_under_a_request(docker_runtime: Runtime) -> None:
    """docker-py keeps 25 pools, one per request URL, and closes the least recently used even while a
    request uses it: 50 DaemonSets in a cold start failed a create now and then ('NoneType' object has
    no attribute 'qsize'). The runtime uses one pool for the socket, whatever the URL."""
    rt = docker_runtime
    ids = [f"nodeagent-absent-{i:03d}" for i in range(60)]

    def look(cid: str) -> None:
        assert rt.inspect(cid) is None  # a 404 each, on 60 distinct URLs

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(look, ids))
    adapter = rt._api()._custom_adapter
    assert len(adapter.pools) == 1
    assert adapter.max_pool_size == dockerrt.MAX_CONNECTIONS
