"""Probe handlers against a real busybox container: exec through the engine, httpGet and tcpSocket to the
container's IP on a network this test creates, and to 127.0.0.1 for a hostNetwork container."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import docker.utils
import pytest

from nodeagent import runtime
from nodeagent.agent import identity, probes
from nodeagent.k8s import model
from nodeagent.runtime import docker as dockerrt
from tests.support.engine import SESSION_ID
from tests.support.net import free_port
from tests.support.waiting import wait_for

Runtime = dockerrt.DockerRuntime
SERVE = "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p {addr} -h /www"


@pytest.fixture
def network(docker_runtime: Runtime, test_labels: Mapping[str, str]) -> Iterator[str]:
    """A bridge network of this test's own (the only non-loopback target test traffic may have)."""
    client: Any = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    name = f"natest-{SESSION_ID}-probes-{uuid.uuid4().hex[:6]}"
    client.create_network(name, driver="bridge", labels=dict(test_labels))
    try:
        yield name
    finally:
        for c in docker_runtime.list_labelled(f"{identity.LABEL_MANAGED}=true", *_selectors(test_labels)):
            docker_runtime.remove(c.id)
        client.remove_network(name)
        client.close()


def _selectors(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


def start(rt: Runtime, image: str, labels: Mapping[str, str], name: str, command: str, **kw: Any) -> str:
    cid = rt.create(
        runtime.ContainerCreate(
            name=f"natest-{SESSION_ID}-{name}-{uuid.uuid4().hex[:6]}",
            image=image,
            labels={**labels, identity.LABEL_MANAGED: "true"},
            entrypoint=("sh", "-c", command),
            stop_timeout=1,
            **kw,
        )
    )
    rt.start(cid)
    return cid


@pytest.fixture
def server(
    docker_runtime: Runtime,
    test_image: str,
    test_labels: Mapping[str, str],
    network: str,
    docker_cleanup: None,
) -> tuple[str, str]:
    """(container id, its IP) of a busybox httpd on port 8080 of the test network."""
    cid = start(
        docker_runtime, test_image, test_labels, "web", SERVE.format(addr="8080"), network_mode=network
    )
    ip = docker_runtime.container_ip(cid, network)
    assert ip
    wait_for(lambda: probes.tcp_probe(ip, 8080, 1).success)
    return cid, ip


HTTP = model.HTTPGetAction(port=8080, path="/healthz")
CONTAINER = model.Container(name="web", image="i", ports=(model.ContainerPort(8080, name="http"),))


def test_exec_probe(docker_runtime: Runtime, server: tuple[str, str]) -> None:
    cid, _ = server
    assert probes.exec_probe(docker_runtime, cid, ("test", "-f", "/www/healthz"), 5) == probes.Result(True)
    failed = probes.exec_probe(docker_runtime, cid, ("false",), 5)
    assert failed == probes.Result(False, "command ['false'] exited with 1")
    slow = probes.exec_probe(docker_runtime, cid, ("sleep", "30"), 0.5)
    assert not slow.success and "timed out" in slow.message
    gone = probes.exec_probe(docker_runtime, "no-such-container-" + SESSION_ID, ("true",), 5)
    assert not gone.success


def test_http_probe_to_the_pod_ip(server: tuple[str, str]) -> None:
    _, ip = server
    assert probes.http_probe(HTTP, ip, 8080, 2) == probes.Result(True)
    missing = probes.http_probe(model.HTTPGetAction(port=8080, path="nope"), ip, 8080, 2)
    assert missing == probes.Result(False, "HTTP probe failed with statuscode: 404")
    # a named port, resolved from the container's ports
    result = probes.run_handler(
        model.HTTPGetAction(port="http", path="/healthz"),
        runtime=Runtime(),
        container_id="",
        container=CONTAINER,
        host=ip,
        timeout=2,
    )
    assert result.success
    refused = probes.http_probe(HTTP, ip, 8081, 2)
    assert not refused.success and refused.message.startswith(f'Get "http://{ip}:8081/healthz"')


def test_tcp_probe_to_the_pod_ip(server: tuple[str, str]) -> None:
    _, ip = server
    assert probes.tcp_probe(ip, 8080, 2).success
    refused = probes.tcp_probe(ip, 9999, 2)
    assert not refused.success and refused.message.startswith(f"dial tcp {ip}:9999:")


def test_probes_of_a_host_network_container_go_to_loopback(
    docker_runtime: Runtime, test_image: str, test_labels: Mapping[str, str], docker_cleanup: None
) -> None:
    port = free_port()
    start(
        docker_runtime,
        test_image,
        test_labels,
        "hostweb",
        SERVE.format(addr=f"127.0.0.1:{port}"),
        network_mode="host",
    )
    wait_for(lambda: probes.tcp_probe("127.0.0.1", port, 1).success)
    action = model.HTTPGetAction(port=port, path="/healthz")
    assert probes.http_probe(action, "127.0.0.1", port, 2).success
    tcp = probes.run_handler(
        model.TCPSocketAction(port=port),
        runtime=docker_runtime,
        container_id="",
        container=CONTAINER,
        host="127.0.0.1",
        timeout=2,
    )
    assert tcp.success


def test_prober_end_to_end(docker_runtime: Runtime, server: tuple[str, str]) -> None:
    cid, ip = server
    container = model.Container(
        name="web",
        image="i",
        readiness_probe=model.Probe(handler=HTTP, period_seconds=1, failure_threshold=1),
        liveness_probe=model.Probe(
            handler=model.ExecAction(("test", "-f", "/www/alive")), period_seconds=1, failure_threshold=2
        ),
    )
    assert docker_runtime.exec(cid, ("touch", "/www/alive"), 5) == 0
    now = [time.time()]
    prober = probes.Prober(docker_runtime, clock=lambda: now[0])
    try:
        prober.set_targets([probes.Target(cid, container, started_at=now[0], host=ip)])
        prober.run_once(wait=True)
        first = prober.verdict(cid)
        assert first is not None
        assert (first.started, first.ready, first.restart) == (True, True, False)
        assert first.ready_since == now[0]
        # the app stops serving /healthz: not ready at once (failureThreshold 1), yet alive
        assert docker_runtime.exec(cid, ("rm", "/www/healthz", "/www/alive"), 5) == 0
        now[0] += 1
        prober.run_once(wait=True)
        verdict = prober.verdict(cid)
        assert verdict is not None
        assert (verdict.ready, verdict.restart) == (False, False)
        now[0] += 1
        prober.run_once(wait=True)
        verdict = prober.verdict(cid)
        assert verdict is not None and verdict.restart
        assert verdict.message == "Liveness probe failed: command ['test', '-f', '/www/alive'] exited with 1"
    finally:
        prober.stop()
