"""Fixtures for the fault suite (`make test-faults`): agents under SIGKILL, engine restarts, bad sources.
The engine and the test image are tests/conftest.py's.

`private_engine` starts a Docker engine of the test's own (own data root, exec root, socket and containerd
namespace), never touching the machine's engine, so it can be restarted at will.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.runtime import docker as docker_rt
from tests.support import manifests
from tests.support.engine import TEST_IMAGE
from tests.support.waiting import wait_for

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")


def daemonset(name: str, namespace: str, *, image: str = TEST_IMAGE, command: str = "sleep 1000000") -> str:
    """A one-container DaemonSet running `sh -c command`, as YAML (tests/support/manifests.py)."""
    return manifests.to_yaml(
        manifests.daemonset(name, namespace=namespace, image=image, command=manifests.sh(command))
    )


@dataclass
class AgentHome:
    """A config, a DaemonSet directory and a stateDir for one test agent."""

    root: Path
    namespace: str
    docker_host: str | None = None

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def ds(self) -> Path:
        return self.root / "ds"

    def write_config(self, extra: str = "") -> None:
        docker = f"docker: {{host: {self.docker_host}}}\n" if self.docker_host else ""
        self.config.write_text(
            "node: {name: fault-node}\nsources:\n  - directory: ds\nstateDir: state\nresyncInterval: 2s\n"
            "backoff: {initial: 1s, max: 4s, resetAfter: 10m}\n" + docker + extra
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        return env

    def sync(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NODEAGENT, "--config", str(self.config), "sync"],
            capture_output=True, text=True, timeout=timeout, env=self.env(), check=False,
        )  # fmt: skip

    def start_run(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [NODEAGENT, "--config", str(self.config), "--log-format", "json", "run"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "agent.log", "ab"), env=self.env(),
        )  # fmt: skip


def pods(rt: docker_rt.DockerRuntime, namespace: str) -> dict[str, list[str]]:
    """pod name -> container states, for the agent's containers in one namespace."""
    out: dict[str, list[str]] = {}
    for c in rt.list_labelled(f"io.kubernetes.pod.namespace={namespace}"):
        out.setdefault(c.labels["io.kubernetes.pod.name"], []).append(c.state)
    return out


def remove_namespace(rt: docker_rt.DockerRuntime, namespace: str) -> None:
    for c in rt.list_labelled(f"io.kubernetes.pod.namespace={namespace}"):
        rt.remove(c.id)


@pytest.fixture
def home(docker_runtime: docker_rt.DockerRuntime, test_image: str) -> Iterator[AgentHome]:
    root = Path(tempfile.mkdtemp(prefix="nodeagent-fault-"))
    (root / "ds").mkdir()
    h = AgentHome(root=root, namespace=f"fault-{uuid.uuid4().hex[:8]}")
    h.write_config()
    yield h
    remove_namespace(docker_runtime, h.namespace)
    shutil.rmtree(root, ignore_errors=True)


class PrivateEngine:
    """A dockerd of the test's own, restartable; the test image is loaded into it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "daemon.json").write_text("{}")
        suffix = uuid.uuid4().hex[:6]
        self.ns = f"nodeagent-fault-{suffix}"
        # Its own bridge, made here: `--bridge=none` would make dockerd delete the host engine's docker0.
        self.bridge = f"naf{suffix}"
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "10.213.0.1/24", "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "dockerd", "--config-file", str(self.root / "daemon.json"),
                "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "--host", self.host,
                "--bridge", self.bridge, "--iptables=false", "--ip-masq=false",
                "--containerd-namespace", self.ns, "--containerd-plugins-namespace", self.ns + "-plugins",
            ],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "dockerd.log", "ab"),  # noqa: SIM115
        )  # fmt: skip
        rt = docker_rt.DockerRuntime(self.host)
        try:
            wait_for(rt.ping, timeout=60, interval=0.2, what="the private dockerd")
        except AssertionError:
            raise RuntimeError(
                "private dockerd did not answer: " + (self.root / "dockerd.log").read_text()[-2000:]
            ) from None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def private_engine(docker_runtime: docker_rt.DockerRuntime, test_image: str) -> Iterator[PrivateEngine]:
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is not installed: the fault suite starts an engine of its own")
    root = Path(tempfile.mkdtemp(prefix="nodeagent-dockerd-", dir="/tmp"))
    pe = PrivateEngine(root)
    pe.start()
    try:
        saved = subprocess.run(["docker", "save", test_image], capture_output=True, check=True).stdout
        subprocess.run(
            ["docker", "load"],
            input=saved,
            capture_output=True,
            check=True,
            env={**os.environ, "DOCKER_HOST": pe.host},
        )
        yield pe
    finally:
        try:
            rt = docker_rt.DockerRuntime(pe.host)
            if rt.ping():
                for c in rt.list_labelled("io.nodeagent.managed=true"):
                    rt.remove(c.id)
        finally:
            pe.stop()
            pe.remove_bridge()
            subprocess.run(["umount", "-R", str(root / "exec")], capture_output=True, check=False)
            shutil.rmtree(root, ignore_errors=True)
