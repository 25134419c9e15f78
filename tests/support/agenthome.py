"""One test agent's world on the real engine, shared by the integration tests of the agent.

`Home`: a config, DaemonSet and static pod directories and a stateDir under tmp_path, a namespace and a
node name of its own: the runtime is scoped to its node (label io.nodeagent.node), so agents of parallel
sessions on one engine never see each other's containers (the `home` fixture, tests/integration/conftest.py,
removes them at teardown). `Recorder` wraps the real DockerRuntime only to count calls (and, once, to cut
a create short). `cli` and `start_run` run the `nodeagent` command as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodeagent import runtime as rt
from nodeagent import settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import identity
from nodeagent.runtime import docker as docker_rt
from tests.support import manifests

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")

WRITES = frozenset({"create", "start", "stop", "remove", "pull"})


class Crash(BaseException):
    """The process dying mid-pass: nothing after this point runs, nothing is recorded."""


class Recorder:
    """The real DockerRuntime, with every call recorded; `fail_start` kills the pass at the next N starts."""

    def __init__(self, inner: docker_rt.DockerRuntime) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.fail_start = 0

    @property
    def writes(self) -> list[str]:
        return [c for c in self.calls if c in WRITES]

    def ping(self) -> bool:
        self.calls.append("ping")
        return self.inner.ping()

    def list_managed(self) -> list[rt.ObservedContainer]:
        self.calls.append("list_managed")
        return self.inner.list_managed()

    def timestamps(self, container_id: str) -> tuple[float | None, float | None]:
        self.calls.append("timestamps")
        return self.inner.timestamps(container_id)

    def image_present(self, image: str) -> bool:
        self.calls.append("image_present")
        return self.inner.image_present(image)

    def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None) -> None:
        self.calls.append("pull")
        self.inner.pull(image, on_progress)

    def load_images(self, path: str) -> list[str]:
        self.calls.append("load_images")
        return self.inner.load_images(path)

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        self.calls.append("logs")
        return self.inner.logs(container_id, follow=follow, tail=tail, since=since, timestamps=timestamps)

    def container_ip(self, container_id: str, network: str = "") -> str:
        self.calls.append("container_ip")
        return self.inner.container_ip(container_id, network)

    def create(self, spec: rt.ContainerCreate) -> str:
        self.calls.append("create")
        return self.inner.create(spec)

    def start(self, container_id: str) -> None:
        self.calls.append("start")
        if self.fail_start > 0:
            self.fail_start -= 1
            raise Crash("the agent died between create and start")
        self.inner.start(container_id)

    def stop(self, container_id: str, timeout: int) -> None:
        self.calls.append("stop")
        self.inner.stop(container_id, timeout)

    def remove(self, container_id: str) -> None:
        self.calls.append("remove")
        self.inner.remove(container_id)

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int:
        self.calls.append("exec")
        return self.inner.exec(container_id, command, timeout)

    def events(self, stop: threading.Event) -> Iterator[rt.RuntimeEvent]:
        return self.inner.events(stop)


@dataclass
class Home:
    """One test agent's world: config, DaemonSet and static pod directories, stateDir, namespace, node."""

    root: Path
    namespace: str
    image: str
    engine: docker_rt.DockerRuntime  # unscoped: sees every node's containers, for assertions
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    backoff: str = "{initial: 30s, max: 2m, resetAfter: 10m}"
    resync: str = "2s"
    extra_dirs: list[str] = field(default_factory=list)  # more directory sources, relative to root

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def ds_dir(self) -> Path:
        return self.root / "ds"

    @property
    def static_dir(self) -> Path:
        return self.root / "static"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def write_config(self) -> None:
        doc = {
            "node": {"name": self.node, "labels": self.labels, "taints": self.taints},
            "sources": [{"directory": d} for d in ["ds", *self.extra_dirs]],
            "staticPodPath": "static",
            "stateDir": "state",
            "resyncInterval": self.resync,
            "healthz": {"enabled": False},
        }
        text = yaml.safe_dump(doc) + f"backoff: {self.backoff}\n"
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def put(self, name: str, doc: Mapping[str, Any] | str, where: str = "ds") -> Path:
        """Write a manifest atomically (a rename, as editors and config management do)."""
        return manifests.put(self.root / where, name, doc)

    def ds(self, name: str, command: str = "exec sleep 1000000", **kw: Any) -> dict[str, Any]:
        """A DaemonSet in this home's namespace running `sh -c command` (tests/support/manifests.py)."""
        return manifests.daemonset(
            name, namespace=self.namespace, image=self.image, command=manifests.sh(command), **kw
        )

    def pod(self, name: str, command: str = "exec sleep 1000000", **kw: Any) -> dict[str, Any]:
        """A static pod in this home's namespace running `sh -c command`."""
        return manifests.static_pod(
            name, namespace=self.namespace, image=self.image, command=manifests.sh(command), **kw
        )

    def agent(self, clock: Callable[[], float] = time.time) -> tuple[agent_mod.Agent, Recorder]:
        """A fresh agent, as a new `nodeagent sync` process would build it."""
        rec = Recorder(docker_rt.DockerRuntime(node_name=self.node))
        a = agent_mod.Agent(settings.load(str(self.config)), rec, clock=clock)
        a.relist()
        return a, rec

    def sync(self) -> agent_mod.PassResult:
        a, _ = self.agent()
        return a.reconcile()

    def containers(self) -> list[rt.ObservedContainer]:
        return self.engine.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={self.namespace}")

    def pods(self) -> dict[str, list[rt.ObservedContainer]]:
        out: dict[str, list[rt.ObservedContainer]] = {}
        for c in self.containers():
            out.setdefault(c.labels[identity.LABEL_POD_NAME], []).append(c)
        return out

    def running_owners(self) -> set[str]:
        return {c.labels[identity.LABEL_OWNER] for c in self.containers() if c.running}

    def owner(self, name: str) -> str:
        return identity.owner_daemonset(self.namespace, name)


def assert_ok(result: agent_mod.PassResult) -> None:
    assert not result.failed, [(o.action.verb, o.action.pod, o.reason, o.message) for o in result.failed]


def cli(h: Home, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`nodeagent --config <home's config> ARGS...` as a process."""
    return subprocess.run(
        [NODEAGENT, "--config", str(h.config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_run(h: Home, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """`nodeagent run` as a process, logging JSON to the home's agent.log; added to `procs` (the
    `agent_proc` fixture kills what is left at teardown)."""
    log = (h.root / "agent.log").open("ab")
    p = subprocess.Popen(
        [NODEAGENT, "--config", str(h.config), "--log-format", "json", "run"],
        stdout=log,
        stderr=log,
    )
    procs.append(p)
    return p


def agent_log(h: Home) -> str:
    path = h.root / "agent.log"
    return path.read_text(errors="replace") if path.exists() else ""
