"""An in-memory `ContainerRuntime`: the real agent code without an engine (tests, the fleet simulation).

It keeps the Docker semantics the agent relies on, so code that works here works on the engine:
names are unique and `create` of an existing name returns that container's id (a half-finished
create is found, never duplicated); `create` needs the image present; `list_managed` returns only
containers labelled `io.nodeagent.managed=true` (and, when scoped, of its node), without start/finish
times, which cost a `timestamps` call as an inspect would; `stop` and `remove` of a missing container
are not errors; lifecycle changes are delivered by `events`. Containers never run anything: they stay
running until stopped, or until a test calls `exit` (a crash) on them. A pull of an image in `hanging`
blocks until its event is set: a registry that never answers.

`calls` counts calls by method, so tests and benchmarks can check how many a pass made.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from nodeagent import errors
from nodeagent import runtime as rt
from nodeagent.agent import identity

STOP_EXIT_CODE = 143  # a stopped container's exit code: SIGTERM, as `docker stop` reports it


@dataclasses.dataclass
class Container:
    """One container's state (mutable, owned by the runtime; read it under `MemoryRuntime.lock`)."""

    id: str
    spec: rt.ContainerCreate
    labels: Mapping[str, str]
    created_at: float
    state: str = "created"
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def observed(self) -> rt.ObservedContainer:
        """As one `docker ps -a` line shows it: no start/finish times (those need an inspect)."""
        return rt.ObservedContainer(
            id=self.id,
            name=self.spec.name,
            labels=dict(self.labels),
            image=self.spec.image,
            state=self.state,
            exit_code=self.exit_code,
            created_at=self.created_at,
        )


class MemoryRuntime:
    """`runtime.ContainerRuntime` in memory; thread-safe."""

    def __init__(
        self,
        *,
        images: Iterable[str] = (),
        pullable: Callable[[str], bool] = lambda image: False,
        node_name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`images` are present from the start; `pullable(image)` says whether a pull succeeds.
        `node_name` scopes the runtime as DockerRuntime's does (label io.nodeagent.node)."""
        self.images: set[str] = set(images)
        self.pullable = pullable
        self.node_name = node_name
        self.clock = clock
        self.available = True  # False: every call raises RuntimeUnavailable, as a stopped engine would
        self.exec_results: dict[tuple[str, ...], int] = {}
        self.hanging: dict[str, threading.Event] = {}  # pulls of these images wait for the event
        self.image_sizes: dict[str, int] = {}  # bytes a pull of the image reports as progress
        self.log_lines: dict[str, list[tuple[float, bytes]]] = {}  # container id -> (time, line)
        self.calls: dict[str, int] = {}
        self.lock = threading.RLock()
        self.containers: dict[str, Container] = {}
        self._ids = itertools.count(1)
        self._subscribers: list[queue.Queue[rt.RuntimeEvent]] = []

    # --- bookkeeping ----------------------------------------------------------------------------

    def _call(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
        if not self.available and name != "ping":
            raise errors.RuntimeUnavailable(f"{name}: container runtime unavailable")

    def _get(self, container_id: str, what: str) -> Container:
        c = self.find(container_id)
        if c is None:
            raise errors.ContainerRuntimeError(f"{what} {container_id}: no such container")
        return c

    def find(self, ref: str) -> Container | None:
        """A container by id or name, as Docker resolves either."""
        return self.containers.get(ref) or self._by_name(ref)

    def _by_name(self, name: str) -> Container | None:
        return next((c for c in self.containers.values() if c.spec.name == name), None)

    def _emit(self, action: str, c: Container) -> None:
        if c.labels.get(identity.LABEL_MANAGED) != "true":
            return
        event = rt.RuntimeEvent(action, c.id, dict(c.labels))
        for q in self._subscribers:
            q.put(event)

    def by_name(self, name: str) -> Container | None:
        """The container of that name, if any (for tests)."""
        with self.lock:
            return self._by_name(name)

    # --- the protocol ---------------------------------------------------------------------------

    def ping(self) -> bool:
        self._call("ping")
        return self.available

    def list_managed(self) -> list[rt.ObservedContainer]:
        self._call("list_managed")
        with self.lock:
            return [
                c.observed()
                for c in self.containers.values()
                if c.labels.get(identity.LABEL_MANAGED) == "true"
                and (not self.node_name or c.labels.get(identity.LABEL_NODE) == self.node_name)
            ]

    def timestamps(self, container_id: str) -> tuple[float | None, float | None]:
        self._call("timestamps")
        with self.lock:
            c = self.containers.get(container_id)
            return (c.started_at, c.finished_at) if c is not None else (None, None)

    def image_present(self, image: str) -> bool:
        self._call("image_present")
        with self.lock:
            return image in self.images

    def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None) -> None:
        """A pull of an image in `hanging` waits for its event (a registry that never answers, until a
        test lets it go); a pullable image reports `image_sizes[image]` bytes of progress, then arrives."""
        self._call("pull")
        gate = self.hanging.get(image)
        if gate is not None:
            gate.wait()
        if not self.pullable(image):
            raise errors.ImagePullError(f"pull {image}: repository does not exist or may require login")
        size = self.image_sizes.get(image, 0)
        if on_progress is not None:
            on_progress(0, size)
            on_progress(size, size)
        with self.lock:
            self.images.add(image)

    def create(self, spec: rt.ContainerCreate) -> str:
        self._call("create")
        with self.lock:
            existing = self._by_name(spec.name)
            if existing is not None:  # Docker's 409: a create that finished before a crash
                return existing.id
            if spec.image not in self.images:
                raise errors.ContainerRuntimeError(f"create {spec.name}: image {spec.image} is not present")
            labels = rt.node_scoped_labels(spec.labels, self.node_name)
            cid = f"{next(self._ids):012x}"
            c = Container(cid, spec, labels, created_at=self.clock())
            self.containers[cid] = c
            self._emit("create", c)
            return cid

    def start(self, container_id: str) -> None:
        self._call("start")
        with self.lock:
            c = self._get(container_id, "start")
            if c.state == "running":
                return  # Docker: 304, not an error
            c.state, c.exit_code, c.finished_at = "running", None, None
            c.started_at = self.clock()
            self._emit("start", c)

    def stop(self, container_id: str, timeout: int) -> None:
        self._call("stop")
        with self.lock:
            c = self.find(container_id)
            if c is None or c.state != "running":
                return
            self._exit(c, STOP_EXIT_CODE)
            self._emit("stop", c)

    def remove(self, container_id: str) -> None:
        self._call("remove")
        with self.lock:
            c = self.find(container_id)
            if c is None:
                return
            if c.state == "running":
                self._exit(c, 137)
            del self.containers[c.id]
            self._emit("destroy", c)

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int:
        self._call("exec")
        with self.lock:
            c = self._get(container_id, "exec in")
            if c.state != "running":
                raise errors.ContainerRuntimeError(f"exec in {container_id}: container is not running")
            return self.exec_results.get(tuple(command), 0)

    def load_images(self, path: str) -> list[str]:
        self._call("load_images")
        raise errors.ContainerRuntimeError(f"load {path}: image tarballs are not supported in memory")

    def events(self, stop: threading.Event) -> Iterator[rt.RuntimeEvent]:
        q: queue.Queue[rt.RuntimeEvent] = queue.Queue()
        with self.lock:
            self._subscribers.append(q)
        try:
            while not stop.is_set():
                try:
                    yield q.get(timeout=0.2)
                except queue.Empty:
                    continue
        finally:
            with self.lock:
                self._subscribers.remove(q)

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        """What `write_log` wrote, line by line (no follow: a memory container never writes by itself)."""
        self._call("logs")
        with self.lock:
            self._get(container_id, "logs of")
            lines = list(self.log_lines.get(container_id, []))
        if since is not None:
            lines = [(t, line) for t, line in lines if t >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for t, line in lines:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z "
            yield (stamp.encode() if timestamps else b"") + line

    # --- test hooks -----------------------------------------------------------------------------

    def write_log(self, container_id: str, data: bytes) -> None:
        """The container prints `data` (one or more lines), now."""
        with self.lock:
            c = self._get(container_id, "write log")
            now = self.clock()
            for line in data.splitlines(keepends=True):
                self.log_lines.setdefault(c.id, []).append((now, line))

    def exit(self, container_id: str, exit_code: int = 1) -> None:
        """The container's process ends by itself (a crash, or a run to completion)."""
        with self.lock:
            c = self._get(container_id, "exit")
            if c.state == "running":
                self._exit(c, exit_code)
                self._emit("die", c)

    def _exit(self, c: Container, exit_code: int) -> None:
        c.state, c.exit_code, c.finished_at = "exited", exit_code, self.clock()

    def running(self) -> list[Container]:
        """The running containers (copies), for assertions."""
        with self.lock:
            return [dataclasses.replace(c) for c in self.containers.values() if c.state == "running"]
