"""Probes wired into the agent, on the real engine: a failing liveness probe restarts the container, and
readiness decides `ready`, numberReady and (after minReadySeconds) numberAvailable.

Exec probes only for bridge-networked pods (their pod IP is on Docker's default bridge, which tests may
not send traffic to); the httpGet case uses a hostNetwork pod, probed on 127.0.0.1. Same per-test world
as test_agent_sync (config, stateDir, namespace and node of its own; containers removed at teardown).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent import settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import identity, plan, reconciler, statefiles
from nodeagent.runtime import docker as docker_rt
from tests.support.agenthome import Home, cli, start_run
from tests.support.net import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

FAST = {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 1}


class Running:
    """An in-process `nodeagent run`: agent, prober and reconcile loop in a thread; passes recorded."""

    def __init__(self, h: Home) -> None:
        self.passes: list[agent_mod.PassResult] = []
        self.loop: reconciler.Reconciler | None = None
        self.agent = agent_mod.Agent(
            settings.load(str(h.config)),
            docker_rt.DockerRuntime(node_name=h.node),
            watch=True,
            on_change=self.wake,
        )
        self.loop = reconciler.Reconciler(self.agent, resync_interval=2.0, on_pass=self.passes.append)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)

    def wake(self) -> None:
        if self.loop is not None:
            self.loop.wake()

    def start(self) -> Running:
        self.agent.start_sources()
        self.agent.start_prober()
        self.thread.start()
        return self

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.stop()
        self.thread.join(timeout=60)
        self.agent.stop_prober()
        self.agent.stop_sources()

    def reasons(self, verb: str) -> list[str]:
        return [o.action.reason for r in list(self.passes) for o in r.outcomes if o.action.verb == verb]


@pytest.fixture
def running(home: Home) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def attempts(h: Home) -> list[int]:
    return sorted(int(c.labels[identity.LABEL_ATTEMPT]) for c in h.containers())


def status_doc(h: Home) -> dict[str, Any]:
    out = cli(h, "status", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_failing_liveness_probe_restarts_the_container(home: Home, running: list[Running]) -> None:
    probe = {"exec": {"command": ["sh", "-c", "test -e /tmp/alive"]}, **FAST, "initialDelaySeconds": 1}
    home.put(
        "live",
        home.ds(
            "live",
            command="mkdir -p /tmp && touch /tmp/alive && exec sleep 1000000",
            container={"livenessProbe": probe},
        ),
    )
    r = Running(home).start()
    running.append(r)
    wait_for(lambda: any(c.running for c in home.containers()))
    [first] = home.containers()
    # the probe passes: the container is left alone; then its health file goes
    assert home.engine.exec(first.id, ("rm", "/tmp/alive"), 5) == 0
    wait_for(lambda: bool(r.reasons(plan.RESTART)) and 1 in attempts(home), timeout=30)
    wait_for(lambda: any(c.running for c in home.containers()))
    [reason, *_] = r.reasons(plan.RESTART)
    assert reason.startswith(
        "Liveness probe failed: command ['sh', '-c', 'test -e /tmp/alive'] exited with 1"
    )
    [old] = [c for c in home.containers() if c.id == first.id]
    assert not old.running, "the failed attempt is stopped, kept as the last dead one (logs --previous)"
    new = next(c for c in home.containers() if c.labels[identity.LABEL_ATTEMPT] == "1")
    assert new.running, "the next attempt runs (it recreates its health file)"


def test_readiness_decides_ready_number_ready_and_available_through_run_and_status(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    probe = {"exec": {"command": ["test", "-e", "/tmp/ready"]}, **FAST}
    doc = home.ds(
        "ready",
        command="mkdir -p /tmp && exec sleep 1000000",
        container={"readinessProbe": probe},
    )
    doc["spec"]["minReadySeconds"] = 2
    home.put("ready", doc)

    # without a running agent (no stateDir/probes.json), a container with a readiness probe is not ready
    assert cli(home, "sync").returncode == 0
    [ds] = status_doc(home)["daemonSets"]
    assert (ds["currentNumberScheduled"], ds["numberReady"], ds["numberAvailable"]) == (1, 0, 0)
    assert ds["pods"][0]["ready"] is False
    table = cli(home, "status").stdout
    assert " 0/1 " in table and "Running" in table

    start_run(home, agent_proc)
    wait_for(lambda: (home.state_dir / statefiles.PROBES_FILE).exists(), timeout=30)
    [c] = home.containers()
    assert status_doc(home)["daemonSets"][0]["numberReady"] == 0
    assert home.engine.exec(c.id, ("touch", "/tmp/ready"), 5) == 0

    def counts() -> tuple[int, int]:
        [d] = status_doc(home)["daemonSets"]
        return (d["numberReady"], d["numberAvailable"])

    wait_for(lambda: counts()[0] == 1, timeout=30)
    wait_for(lambda: counts() == (1, 1), timeout=30)  # after minReadySeconds
    assert " 1/1 " in cli(home, "status").stdout
    assert home.engine.exec(c.id, ("rm", "/tmp/ready"), 5) == 0
    wait_for(lambda: counts() == (0, 0), timeout=30)
    assert [x.id for x in home.containers()] == [c.id], "readiness never restarts a container"


def test_http_readiness_of_a_host_network_pod_goes_to_loopback(home: Home, running: list[Running]) -> None:
    port = free_port()
    probe = {"httpGet": {"path": "/healthz", "port": port}, **FAST}
    home.put(
        "web",
        home.ds(
            "web",
            command=f"mkdir -p /www && exec httpd -f -p 127.0.0.1:{port} -h /www",
            pod={"hostNetwork": True},
            container={"readinessProbe": probe},
        ),
    )
    r = Running(home).start()
    running.append(r)
    wait_for(lambda: any(c.running for c in home.containers()))
    [c] = home.containers()

    def ready() -> bool:
        v = r.agent.prober.verdict(c.id) if r.agent.prober is not None else None
        return v is not None and v.ready

    wait_for(lambda: r.agent.prober is not None and r.agent.prober.verdict(c.id) is not None)
    assert not ready(), "404 until the page exists"
    assert home.engine.exec(c.id, ("sh", "-c", "echo ok > /www/healthz"), 5) == 0
    wait_for(ready, timeout=30)
    wait_for(lambda: json.loads((home.state_dir / statefiles.PROBES_FILE).read_text())[c.id]["ready"])
