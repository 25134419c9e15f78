"""privileged: true on a host that withholds capabilities: detection, the mapping, and the agent's warning.

On this machine a real `--privileged` container cannot start (the kernel withholds CAP_SYS_RESOURCE), so
the agent grants everything else instead. On a host that withholds nothing the same tests check that a
real privileged container is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import structlog.testing

from nodeagent import settings
from nodeagent.agent import agent, identity, podconfig
from nodeagent.k8s import model
from nodeagent.runtime import docker as dockerrt
from tests.support.engine import SESSION_ID, TEST_IMAGE, cleanup_by_label
from tests.support.waiting import wait_for

Runtime = dockerrt.DockerRuntime


# --- pure -------------------------------------------------------------------------------------


def test_bounding_set_parsing() -> None:
    status = "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n"
    caps = dockerrt.bounding_set(status)
    assert "SYS_RESOURCE" not in caps
    assert {"CHOWN", "SYS_ADMIN", "SYS_TIME", "CHECKPOINT_RESTORE"} <= caps
    assert len(caps) == len(dockerrt.CAPABILITIES) - 1
    assert dockerrt.bounding_set("no caps here") == frozenset()


# --- on the engine ----------------------------------------------------------------------------


def test_withheld_capabilities_are_detected_once(docker_runtime: Runtime) -> None:
    withheld = docker_runtime.withheld_capabilities()
    assert set(withheld) <= set(dockerrt.CAPABILITIES)
    assert docker_runtime.withheld_capabilities() is withheld  # cached
    assert docker_runtime.list_labelled(f"{dockerrt.CAPPROBE_LABEL}=true") == []  # probes cleaned up


def privileged_pod(name: str) -> tuple[model.Container, model.PodSpec]:
    c = model.Container(
        name="priv",
        image=TEST_IMAGE,
        image_pull_policy="Never",
        command=("sleep", "300"),
        security_context=model.SecurityContext(privileged=True),
    )
    return c, model.PodSpec(containers=(c,), termination_grace_period_seconds=1)


def test_privileged_pod_starts_with_every_grantable_capability(
    docker_runtime: Runtime, test_image: str, test_labels: Mapping[str, str], docker_cleanup: None
) -> None:
    withheld = docker_runtime.withheld_capabilities()
    c, pod_spec = privileged_pod("priv")
    pod = podconfig.PodContext(
        owner=identity.owner_pod("default", f"priv-{SESSION_ID}"),
        namespace="default",
        pod_name=f"priv-{SESSION_ID}",
        metadata=model.ObjectMeta(name=f"priv-{SESSION_ID}"),
        spec=pod_spec,
        spec_hash="v1-0000000000000000",
        node_name="node-a",
        host_ip="127.0.0.1",
        withheld_caps=withheld,
    )
    create = podconfig.build(pod, c, role=identity.ROLE_APP, attempt=0)
    create = dataclasses.replace(create, labels={**create.labels, **test_labels})
    cid = docker_runtime.create(create)
    docker_runtime.start(cid)
    info = docker_runtime.inspect(cid)
    assert info is not None
    assert info["State"]["Running"] is True
    host = info["HostConfig"]
    if withheld:
        assert host["Privileged"] is False
        assert host["CapAdd"] == ["ALL"]
        assert sorted(host["CapDrop"]) == sorted(withheld)
        assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(host["SecurityOpt"])
        assert host["DeviceCgroupRules"] == ["a *:* rwm"]
        assert host["MaskedPaths"] == [] and host["ReadonlyPaths"] == []
    else:
        assert host["Privileged"] is True
    # CAP_SYS_ADMIN, which no default container has: changing the UTS hostname works
    assert docker_runtime.exec(cid, ("hostname", "privileged-ok"), timeout=10) == 0


@pytest.fixture
def static_pod_home(tmp_path: Path, docker_runtime: Runtime) -> Iterator[tuple[Path, str]]:
    name = f"privileged-{SESSION_ID}"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "priv.yaml").write_text(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: priv
      image: {TEST_IMAGE}
      imagePullPolicy: Never
      command: ["sleep", "300"]
      securityContext: {{privileged: true}}
"""
    )
    yield tmp_path, name
    cleanup_by_label(docker_runtime, f"{identity.LABEL_POD_NAME}={name}-node-priv")


def test_agent_maps_privileged_and_says_so(
    docker_runtime: Runtime, test_image: str, static_pod_home: tuple[Path, str]
) -> None:
    home, name = static_pod_home
    cfg = settings.from_dict(
        {
            "node": {"name": "node-priv"},
            "sources": [],
            "staticPodPath": str(home / "manifests"),
            "stateDir": str(home / "state"),
        },
        str(home),
    )
    withheld = docker_runtime.withheld_capabilities()
    the_agent = agent.Agent(cfg, docker_runtime)
    the_agent.relist()
    with structlog.testing.capture_logs() as logs:
        result = the_agent.reconcile()
        the_agent.reconcile()  # the warning is said once, not every pass
    assert not result.failed, [o.message for o in result.failed]
    mapped = [e for e in logs if e["event"] == "privileged_mapped"]
    assert len(mapped) == (1 if withheld else 0)
    if withheld:
        assert mapped[0]["withheld"] == list(withheld)
    assert the_agent.host.withheld_caps == withheld
    pod_name = f"{name}-node-priv"

    def running() -> bool:
        found = docker_runtime.list_labelled(f"{identity.LABEL_POD_NAME}={pod_name}")
        return any(c.state == "running" for c in found)

    wait_for(running)
