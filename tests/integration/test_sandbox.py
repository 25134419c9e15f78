"""Multi-container pods on the real engine: a sandbox (pause) container holds the pod's network and IPC.

The containers are made exactly as the agent makes them (podconfig + DockerRuntime); the sandbox runs on
network "none", so the only traffic is on the pod's own loopback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nodeagent import runtime
from nodeagent.agent import identity, localimage, podconfig
from nodeagent.k8s import model
from nodeagent.runtime import docker as dockerrt
from tests.support.engine import SESSION_ID
from tests.support.waiting import wait_for

Runtime = dockerrt.DockerRuntime
WGET = ("wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/passwd")


def labelled(create: runtime.ContainerCreate, labels: Mapping[str, str]) -> runtime.ContainerCreate:
    return dataclasses.replace(create, labels={**create.labels, **labels})


def test_pause_image_is_built_once_and_stops_at_once(
    docker_runtime: Runtime, test_labels: Mapping[str, str], docker_cleanup: None
) -> None:
    image = localimage.ensure_pause_image(docker_runtime)
    assert image == localimage.PAUSE_TAG
    assert localimage.ensure_pause_image(docker_runtime) == image  # present: not rebuilt
    cid = docker_runtime.create(
        runtime.ContainerCreate(
            name=f"natest-{SESSION_ID}-pause", image=image, labels=dict(test_labels), network_mode="none"
        )
    )
    docker_runtime.start(cid)
    docker_runtime.stop(cid, timeout=30)  # SIGTERM is trapped: exit 0, no SIGKILL after the grace period
    info = docker_runtime.inspect(cid)
    assert info is not None and info["State"]["ExitCode"] == 0


def test_containers_of_a_pod_share_localhost_and_survive_a_sibling_restart(
    docker_runtime: Runtime, test_image: str, test_labels: Mapping[str, str], docker_cleanup: None
) -> None:
    pause = localimage.ensure_pause_image(docker_runtime)
    web = model.Container(
        name="web", image=test_image, command=("httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc")
    )
    client = model.Container(name="client", image=test_image, command=("sleep", "300"))
    pod_spec = model.PodSpec(containers=(web, client), termination_grace_period_seconds=1)
    assert podconfig.needs_sandbox(pod_spec)
    pod_name = f"sandboxed-{SESSION_ID}"
    pod = podconfig.PodContext(
        owner=identity.owner_daemonset("default", "sandboxed"),
        namespace="default",
        pod_name=pod_name,
        metadata=model.ObjectMeta(name=pod_name),
        spec=pod_spec,
        spec_hash="v1-0000000000000000",
        node_name="node-a",
        host_ip="127.0.0.1",
    )
    sandbox = podconfig.sandbox_create(pod, pause, network="none")
    sandbox_id = docker_runtime.create(labelled(sandbox, test_labels))
    docker_runtime.start(sandbox_id)
    joined = dataclasses.replace(pod, sandbox=sandbox.name)

    def run(container: model.Container, attempt: int) -> str:
        create = podconfig.build(joined, container, role=identity.ROLE_APP, attempt=attempt)
        cid = docker_runtime.create(labelled(create, test_labels))
        docker_runtime.start(cid)
        return cid

    web_id = run(web, 0)
    client_id = run(client, 0)
    wait_for(lambda: docker_runtime.exec(client_id, WGET, timeout=5) == 0)
    # one UTS view too: the pod's hostname is the sandbox's
    assert docker_runtime.exec(client_id, ("sh", "-c", f'[ "$(hostname)" = {pod_name} ]'), timeout=5) == 0
    for cid in (web_id, client_id):
        info = docker_runtime.inspect(cid)
        assert info is not None
        assert info["HostConfig"]["NetworkMode"] == f"container:{sandbox_id}"
        assert info["HostConfig"]["IpcMode"] == f"container:{sandbox_id}"

    # the web container is replaced (a restart, as the agent does it: a new attempt); its sibling keeps
    # running in the same namespace and reaches the new one on localhost
    docker_runtime.stop(web_id, timeout=1)
    docker_runtime.remove(web_id)
    assert docker_runtime.exec(client_id, WGET, timeout=5) != 0
    run(web, 1)
    wait_for(lambda: docker_runtime.exec(client_id, WGET, timeout=5) == 0)
    info = docker_runtime.inspect(client_id)
    assert info is not None and info["State"]["Running"] is True
    assert info["RestartCount"] == 0
