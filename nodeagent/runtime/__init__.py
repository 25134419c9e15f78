"""The container runtime as nodeagent sees it: a small protocol and plain values.

`runtime.docker` implements it on the Docker Engine API; tests of pure code and the fleet simulation use
in-memory implementations. Nothing outside `runtime/docker.py` imports the `docker` package.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from nodeagent import errors
from nodeagent.agent import identity


class ExecTimeout(errors.ContainerRuntimeError):
    """An exec did not finish within its timeout (an exec probe counts it as a failure)."""


@dataclass(frozen=True)
class Mount:
    """A bind mount (source on the host) or a tmpfs (source empty, tmpfs=True)."""

    target: str
    source: str = ""
    read_only: bool = False
    propagation: str = ""  # "", rprivate, rslave, rshared
    tmpfs: bool = False
    tmpfs_size: int | None = None


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    protocol: str = "tcp"
    host_port: int = 0
    host_ip: str = ""


@dataclass(frozen=True)
class ContainerCreate:
    """Everything needed to create one container; a runtime-neutral `docker create`."""

    name: str
    image: str
    labels: Mapping[str, str]
    entrypoint: tuple[str, ...] | None = None  # None: the image's ENTRYPOINT
    cmd: tuple[str, ...] | None = None  # None: the image's CMD (only when entrypoint is None too)
    env: tuple[str, ...] = ()  # "K=V"
    working_dir: str = ""
    mounts: tuple[Mount, ...] = ()
    network_mode: str = ""  # "", "host", "none", "container:<id or name>"
    pid_mode: str = ""  # "", "host", "container:<name>"
    ipc_mode: str = ""  # "", "host", "shareable", "container:<name>"
    hostname: str = ""
    ports: tuple[PortBinding, ...] = ()
    memory_limit: int | None = None  # bytes
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    devices_all: bool = False  # privileged mapped to caps: also expose host devices
    user: str = ""  # "uid" or "uid:gid"
    group_add: tuple[str, ...] = ()
    read_only_rootfs: bool = False
    security_opt: tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # "host:ip"
    stop_timeout: int = 30
    stdin_open: bool = False
    tty: bool = False


@dataclass(frozen=True)
class ObservedContainer:
    """One managed container as one `docker ps -a` line shows it, decoded from its labels."""

    id: str
    name: str
    labels: Mapping[str, str]
    image: str
    state: str  # created, running, exited, dead, paused, restarting, removing
    exit_code: int | None = None
    created_at: float = 0.0  # unix seconds
    started_at: float | None = None  # unix seconds, when known
    finished_at: float | None = None  # unix seconds, when known

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")


def node_scoped_labels(labels: Mapping[str, str], node_name: str | None) -> dict[str, str]:
    """The labels a managed container is created with by a runtime scoped to `node_name`: its node label
    added, so several agents (tests, simulations, demo nodes) on one engine see only their own."""
    out = dict(labels)
    if node_name and identity.LABEL_MANAGED in out:
        out[identity.LABEL_NODE] = node_name
    return out


@dataclass(frozen=True)
class RuntimeEvent:
    """A container lifecycle event that should wake the reconciler."""

    action: str  # die, destroy, start, create, oom, ...
    container_id: str
    labels: Mapping[str, str] = field(default_factory=dict)


class ContainerRuntime(Protocol):
    """What the executor and the reconciler need from a container engine."""

    def ping(self) -> bool:
        """True when the engine answers."""
        ...

    def list_managed(self) -> list[ObservedContainer]:
        """Every container labelled io.nodeagent.managed=true, running or not, in one list call."""
        ...

    def timestamps(self, container_id: str) -> tuple[float | None, float | None]:
        """(started, finished) of a container: one inspect, only done for exited containers."""
        ...

    def image_present(self, image: str) -> bool: ...

    def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None) -> None:
        """Pull an image; raises errors.ImagePullError. `on_progress(current, total)` is called whenever
        the engine reports activity, with the bytes downloaded and the bytes known so far (summed over
        layers; total 0 while unknown)."""
        ...

    def create(self, spec: ContainerCreate) -> str:
        """Create a container and return its id; if one of that name exists already, return its id."""
        ...

    def start(self, container_id: str) -> None: ...

    def stop(self, container_id: str, timeout: int) -> None: ...

    def remove(self, container_id: str) -> None:
        """Remove a container (forcefully); a container that is already gone is not an error."""
        ...

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int:
        """Run a command inside a running container; returns its exit code."""
        ...

    def load_images(self, path: str) -> list[str]:
        """Import an image tarball (`docker load`); returns the image names it held."""
        ...

    def events(self, stop: threading.Event) -> Iterator[RuntimeEvent]:
        """Container events for managed containers until `stop` is set or the engine goes away."""
        ...

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        """A container's stdout and stderr as the engine keeps them (`docker logs`), in chunks: the last
        `tail` lines, those after `since` (unix seconds), each prefixed with its RFC 3339 time when
        `timestamps`; with `follow`, until the container stops or the caller closes the iterator."""
        ...
