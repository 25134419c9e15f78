"""A container that keeps crashing is restarted on the kubelet's backoff schedule (lower bounds only)."""

from __future__ import annotations

import datetime
import itertools
import json

from nodeagent.runtime import docker as docker_rt
from tests.support.waiting import wait_for

from .conftest import AgentHome, daemonset

# backoff in the test config: initial 1 s, max 4 s; the first restart is immediate, as the kubelet's
EXPECTED_GAPS = [0.0, 1.0, 2.0, 4.0, 4.0]


def restarts(home: AgentHome) -> list[float]:
    out: list[float] = []
    log = home.root / "agent.log"
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "action_applied" and ev.get("action") in ("create", "restart"):
            out.append(datetime.datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp())
    return out


def test_crashing_container_restarts_with_backoff(
    home: AgentHome, docker_runtime: docker_rt.DockerRuntime
) -> None:
    (home.ds / "crash.yaml").write_text(daemonset("crash", home.namespace, command="exit 3"))
    agent = home.start_run()
    try:
        assert wait_for(lambda: len(restarts(home)) >= len(EXPECTED_GAPS) + 1, timeout=60), restarts(home)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    times = restarts(home)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, EXPECTED_GAPS, strict=False):
        assert gap >= expected - 0.25, (gaps, EXPECTED_GAPS)
    found = docker_runtime.list_labelled(f"io.kubernetes.pod.namespace={home.namespace}")
    attempts = max(int(c.labels["io.nodeagent.attempt"]) for c in found)
    assert attempts >= len(EXPECTED_GAPS)
