"""Agents fail over between `serve` replicas: two real `serve` processes on loopback, one killed.

The agent lists both in `sources[].url` and `statusServer`; the one it uses is SIGKILLed (no goodbye:
its sockets just close), and the agent must keep its pods, move to the other replica, report there, and
still receive the next change, which only a watch can bring (pollInterval is an hour).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent import settings
from nodeagent.agent import identity
from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import http
from tests.support import postgres as pgsupport
from tests.support.httpsource import answers
from tests.support.manifests import daemonset, put
from tests.support.net import free_port
from tests.support.waiting import wait_for

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")


class Replicas:
    """`serve` processes over one manifest directory (each with a state dir of its own)."""

    def __init__(self, tmp_path: Path, mdir: Path, count: int = 2, extra: tuple[str, ...] = ()) -> None:
        self.urls = [f"http://127.0.0.1:{free_port()}" for _ in range(count)]
        self.log = (tmp_path / "serve.log").open("ab")
        self.procs: list[subprocess.Popen[bytes]] = []
        for i, url in enumerate(self.urls):
            cmd = [
                NODEAGENT,
                "--log-level",
                "info",
                "serve",
                "--dir",
                str(mdir),
                "--listen",
                url.removeprefix("http://"),
            ]
            if serve_has_state_dir():
                cmd += ["--state-dir", str(tmp_path / f"serve-state-{i}")]
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log of a killed replica is kept
            self.procs.append(subprocess.Popen([*cmd, *extra], stdout=self.log, stderr=self.log, env=env))
        for url in self.urls:
            wait_for(lambda u=url: answers(u + "/healthz"), timeout=30)  # type: ignore[misc]

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.log.close()


def serve_has_state_dir() -> bool:
    out = subprocess.run([NODEAGENT, "serve", "--help"], capture_output=True, text=True, timeout=30)
    return "--state-dir" in out.stdout


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    return d


@pytest.fixture
def two_serves(tmp_path: Path, mdir: Path) -> Iterator[Replicas]:
    put(mdir, "a", daemonset("a"))
    r = Replicas(tmp_path, mdir)
    yield r
    r.close()


def test_a_watching_source_moves_to_the_other_replica_and_gets_the_next_change(
    tmp_path: Path, mdir: Path, two_serves: Replicas
) -> None:
    urls = tuple(u + "/manifests" for u in two_serves.urls)
    changed = threading.Event()
    cfg = settings.HttpSource(url=urls[0], urls=urls, poll_interval=3600, timeout=5.0)
    src = http.HttpSource(
        "fleet", cfg, changed.set, state_dir=str(tmp_path / "agent"), watch=True, watch_seconds=30
    )
    src.start()
    try:
        wait_for(lambda: src.snapshot() is not None and src.base_url == urls[0])
        wait_for(lambda: src._watch_supported)  # held in a watch on replica 0 now
        two_serves.kill(0)
        put(mdir, "a", daemonset("a", image="busybox:1.37"))  # only a watch can bring it (pollInterval 1h)

        def image() -> str:
            snap = src.snapshot()
            assert snap is not None
            return str(snap.documents[0].obj.spec.template.spec.containers[0].image)  # type: ignore[union-attr]

        wait_for(lambda: image() == "busybox:1.37", timeout=30)
        assert src.base_url == urls[1]
        assert src.failure is None
    finally:
        src.stop()


def test_killing_the_leading_replica_on_postgresql_the_source_moves_on_and_the_next_change_arrives(
    tmp_path: Path, mdir: Path, postgres: pgsupport.Cluster
) -> None:
    put(mdir, "a", daemonset("a"))
    replicas = Replicas(tmp_path, mdir, extra=("--store", postgres.url, "--grace", "3"))  # no node reports
    urls = tuple(u + "/manifests" for u in replicas.urls)

    def leader() -> int | None:
        for i, u in enumerate(replicas.urls):
            if i < len(replicas.procs) and replicas.procs[i].poll() is None:
                body = http.request("GET", u + "/healthz", timeout=2).body.decode()
                if "(leader)" in body:
                    return i
        return None

    cfg = settings.HttpSource(url=urls[0], urls=urls, poll_interval=3600, timeout=5.0)
    src = http.HttpSource(
        "fleet", cfg, lambda: None, state_dir=str(tmp_path / "agent"), watch=True, watch_seconds=30, node="n1"
    )
    try:
        wait_for(lambda: leader() is not None, timeout=30)
        lead = leader()
        assert lead is not None
        if lead != 0:  # the source starts on the leader, which is then killed
            cfg = settings.HttpSource(url=urls[lead], urls=(urls[lead], urls[1 - lead]), poll_interval=3600)
            src = http.HttpSource(
                "fleet", cfg, lambda: None, state_dir=str(tmp_path / "agent"), watch=True, node="n1"
            )
        src.start()
        wait_for(lambda: src.snapshot() is not None and src._watch_supported)
        wait_for(lambda: postgres.psql("SELECT count(*) FROM rollouts").strip() == "1")  # decided
        replicas.kill(lead)
        put(mdir, "a", daemonset("a", image="busybox:1.37"))

        def image() -> str:
            snap = src.snapshot()
            assert snap is not None
            return str(snap.documents[0].obj.spec.template.spec.containers[0].image)  # type: ignore[union-attr]

        wait_for(lambda: image() == "busybox:1.37", timeout=30)  # decided by the new leader
        assert src.base_url == urls[1 - lead]
        assert "(leader)" in http.request("GET", replicas.urls[1 - lead] + "/healthz").body.decode()
    finally:
        src.stop()
        replicas.close()


@pytest.mark.docker
def test_an_agent_fails_over_keeps_its_pod_reports_to_the_other_replica_and_gets_the_next_change(
    tmp_path: Path, mdir: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str
) -> None:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    node = f"node-{ns}"
    put(mdir, "web", daemonset("web", image=test_image, namespace=ns))
    replicas = Replicas(tmp_path, mdir)
    a, b = replicas.urls
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": {"name": node},
                "sources": [{"url": [a + "/manifests", b + "/manifests"], "pollInterval": "1h"}],
                "stateDir": str(tmp_path / "state"),
                "statusServer": [a, b],
                "resyncInterval": "2s",
                "healthz": {"enabled": False},
            }
        )
    )
    agent_log = (tmp_path / "agent.log").open("ab")
    agent = subprocess.Popen([NODEAGENT, "--config", str(config), "run"], stdout=agent_log, stderr=agent_log)

    def running() -> set[str]:
        return {
            c.id for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}") if c.running
        }

    def node_on(url: str) -> dict[str, Any] | None:
        nodes = [n for n in http.get_json(url + "/api/nodes")["nodes"] if n["name"] == node]
        return nodes[0] if nodes else None

    try:
        wait_for(lambda: len(running()) == 1, timeout=60)
        wait_for(lambda: node_on(a) is not None, timeout=30)
        first = running()
        replicas.kill(0)
        put(
            mdir, "web", daemonset("web", image=test_image, namespace=ns, pod={"hostname": "changed"})
        )  # the next change
        wait_for(lambda: bool(running() - first), timeout=60)  # it came through replica b's watch
        wait_for(lambda: (node_on(b) or {}).get("ready") is True, timeout=30)  # and reports go there
        assert agent.poll() is None
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
        text = (tmp_path / "agent.log").read_text()
        assert "source_failover" in text and "status_server_failover" in text
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(timeout=30)
        agent_log.close()
        replicas.close()
        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)
