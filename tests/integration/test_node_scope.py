"""Two agents on one engine (different node names) never see, and so never touch, each other's pods."""

from __future__ import annotations

from nodeagent import runtime as rt
from nodeagent.agent import identity
from nodeagent.runtime import docker as docker_rt


def test_runtime_scoped_by_node(
    docker_runtime: docker_rt.DockerRuntime, test_image: str, test_labels: dict[str, str], name_prefix: str,
    docker_cleanup: None,
) -> None:  # fmt: skip
    a = docker_rt.DockerRuntime(node_name=f"{name_prefix}-a")
    b = docker_rt.DockerRuntime(node_name=f"{name_prefix}-b")
    labels = {**test_labels, identity.LABEL_MANAGED: "true", identity.LABEL_POD_NAME: "p"}
    cid = a.create(
        rt.ContainerCreate(name=f"{name_prefix}-scoped", image=test_image, labels=labels, cmd=("true",))
    )
    assert cid in {c.id for c in a.list_managed()}
    assert cid not in {c.id for c in b.list_managed()}
    seen = next(c for c in docker_runtime.list_managed() if c.id == cid)
    assert seen.labels[identity.LABEL_NODE] == f"{name_prefix}-a"
