"""The ContainerRuntime on the Docker Engine API: the only module that imports `docker`.

Uses the low-level `docker.APIClient` (one HTTP call per operation, plain dicts back) and translates every
transport or engine failure into `nodeagent.errors`, so no caller ever sees a docker-py exception.
`Any` stays inside this module: docker-py has no type information.

The client connects lazily: an agent started while the engine is down must still start.

Over 600 lines on purpose: being the single importer of `docker` (an import contract) means every engine
call lives here.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import docker
import docker.auth
import docker.errors
import docker.types
import docker.utils
import requests.exceptions
import urllib3.exceptions

from nodeagent import errors, runtime
from nodeagent.agent import identity, localimage

# API 1.41 is Docker 20.10; "auto" negotiates down to the engine's own version when it is older or newer.
API_VERSION = "auto"
MANAGED_FILTER = f"{identity.LABEL_MANAGED}=true"
CPU_PERIOD = 100_000  # microseconds, the kubelet's CFS period
MIN_CPU_QUOTA = 1_000  # the kubelet's minQuotaPeriod
EVENT_WINDOW = 4.0  # seconds per events request: `stop` is seen this quickly; longer costs less when idle
EVENT_ACTIONS = ("create", "start", "die", "destroy", "oom", "stop", "pause", "unpause")
EXEC_POLL = 0.05
# A pull's longest silence from the engine before it is given up (imagePullDeadline's default): docker-py
# streams a pull without any timeout, and the engine says nothing while a registry does not answer.
PULL_IDLE_TIMEOUT = 300.0
SYSTEMPATHS_UNCONFINED = "systempaths=unconfined"

# Linux capabilities by bit number (linux/capability.h), as Docker spells them without CAP_.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)  # fmt: skip
CAPPROBE_LABEL = "io.nodeagent.capprobe"  # throwaway containers of withheld_capabilities(); never managed
_UNKNOWN_CAP = re.compile(r'unknown capability: "?(?:CAP_)?([A-Z_]+)"?')
_EXITED = re.compile(r"^Exited \((-?\d+)\)")
_ZERO_TIME = "0001-01-01T00:00:00Z"
# Device nodes Docker gives every container anyway, and pseudo-filesystems it manages itself.
_DEFAULT_DEVICES = frozenset(
    {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}
)
_SKIP_DEV_DIRS = frozenset({"/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/.lxc", "/dev/.udev"})


def _status(exc: BaseException | None) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """docker-py / requests errors → nodeagent.errors, with what we were doing in the message."""
    try:
        yield
    except errors.NodeAgentError:
        raise
    except docker.errors.APIError as exc:
        raise errors.ContainerRuntimeError(f"{what}: {_explain(exc)}") from exc
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        raise errors.RuntimeUnavailable(f"{what}: docker engine unavailable: {_explain(exc)}") from exc


def parse_exit_code(status: str) -> int | None:
    """`Exited (1) 3 minutes ago` → 1; None for anything that is not an exit."""
    m = _EXITED.match(status or "")
    return int(m.group(1)) if m else None


def parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds → unix seconds; Go's zero time → None."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if not m:
        return None
    whole, frac, zone = m.group(1), m.group(2) or "", m.group(3) or "+00:00"
    try:
        base = datetime.datetime.fromisoformat(whole + zone).timestamp()
    except ValueError:
        return None
    return base + (float("0" + frac) if frac else 0.0)


def host_devices(root: str = "/dev") -> list[str]:
    """Every char/block device node under /dev, as Docker's privileged mode would map them."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in _SKIP_DEV_DIRS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path in _DEFAULT_DEVICES:
                continue
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                found.append(path)
    return sorted(found)


def bounding_set(status_text: str) -> frozenset[str]:
    """Capability names in the `CapBnd:` line of a /proc/<pid>/status text (empty when there is none)."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split(":", 1)[1].strip(), 16)
            return frozenset(name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1)
    return frozenset()


def _own_bounding_set() -> frozenset[str]:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            return bounding_set(fh.read())
    except OSError:
        return frozenset()


MAX_CONNECTIONS = 32  # kept connections to the engine's socket (per-owner workers call it in parallel)


def _one_pool(client: Any) -> Any:
    """`client` with one connection pool for its unix socket. docker-py keys its pools by the whole
    request URL and keeps 25, closing the least recently used: with more than 25 containers worked on at
    once, a pool was closed under a request still using it (`'NoneType' object has no attribute
    'qsize'`, a failed create in a 50-DaemonSet cold start; docker/compose#3586). The pool's URL is
    never used to connect (requests go to the socket with the path only), so one pool serves all."""
    adapter = getattr(client, "_custom_adapter", None)
    if adapter is None or not hasattr(adapter, "socket_path"):
        return client  # TCP or SSH: pools there are keyed by host already
    get = adapter.get_connection

    def get_connection(url: str, proxies: Any = None) -> Any:
        return get("http+docker://localhost", proxies)

    adapter.get_connection = get_connection
    adapter.pools.clear()  # the constructor's own request (the API version) made one under its URL
    return client


class DockerRuntime:
    """`runtime.ContainerRuntime` on a Docker engine (default: DOCKER_HOST or the local socket)."""

    def __init__(
        self,
        base_url: str | None = None,
        timeout: float = 60.0,
        node_name: str | None = None,
        pull_idle_timeout: float = PULL_IDLE_TIMEOUT,
    ) -> None:
        """`node_name` scopes this runtime to one node's containers (label io.nodeagent.node): they are
        the only ones `list_managed` returns, and every container it creates carries that label, so
        several agents (a test, a simulation, two nodes on one engine) never touch each other's pods.
        `pull_idle_timeout` ends a pull the engine has said nothing about for that long, so a thread
        of a pull the agent gave up on (imagePullDeadline) ends soon after it."""
        self._node_name = node_name
        self._base_url = base_url
        self._timeout = timeout
        self._pull_idle_timeout = pull_idle_timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self._caps_lock = threading.Lock()
        self._withheld: tuple[str, ...] | None = None

    # --- connection ---------------------------------------------------------------------------

    def _api(self) -> Any:
        with self._lock:
            if self._client is None:
                kwargs: dict[str, Any] = {}
                if self._base_url is None:
                    kwargs = dict(docker.utils.kwargs_from_env())
                else:
                    kwargs["base_url"] = self._base_url
                kwargs["version"] = API_VERSION
                kwargs["timeout"] = self._timeout
                kwargs["max_pool_size"] = MAX_CONNECTIONS
                with _translate("connect"):
                    self._client = _one_pool(docker.APIClient(**kwargs))
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def ping(self) -> bool:
        try:
            return bool(self._api().ping())
        except (errors.NodeAgentError, docker.errors.DockerException, OSError):
            return False

    def version(self) -> dict[str, str]:
        """The engine's version fields (Version, ApiVersion, Os, Arch, ...)."""
        with _translate("version"):
            info = self._api().version()
        return {str(k): str(v) for k, v in info.items() if isinstance(v, str | int)}

    # --- observe ------------------------------------------------------------------------------

    def list_managed(self) -> list[runtime.ObservedContainer]:
        if self._node_name:
            return self.list_labelled(MANAGED_FILTER, f"{identity.LABEL_NODE}={self._node_name}")
        return self.list_labelled(MANAGED_FILTER)

    def list_labelled(self, *selectors: str) -> list[runtime.ObservedContainer]:
        """Containers matching every `key=value` (or bare `key`) label selector, in one list call."""
        with _translate("list containers"):
            rows = self._api().containers(all=True, filters={"label": list(selectors)})
        return [self._observed(row) for row in rows]

    @staticmethod
    def _observed(row: dict[str, Any]) -> runtime.ObservedContainer:
        names = row.get("Names") or []
        name = str(names[0]).lstrip("/") if names else ""
        state = str(row.get("State") or "")
        return runtime.ObservedContainer(
            id=str(row.get("Id", "")),
            name=name,
            labels=dict(row.get("Labels") or {}),
            image=str(row.get("Image") or ""),
            state=state,
            exit_code=parse_exit_code(str(row.get("Status") or "")) if state in ("exited", "dead") else None,
            created_at=float(row.get("Created") or 0),
        )

    def _inspect_state(self, container_id: str) -> dict[str, Any] | None:
        try:
            with _translate(f"inspect {container_id}"):
                info = self._api().inspect_container(container_id)
        except errors.ContainerRuntimeError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise
        state = info.get("State") or {}
        return state if isinstance(state, dict) else {}

    def timestamps(self, container_id: str) -> tuple[float | None, float | None]:
        state = self._inspect_state(container_id)
        if not state:
            return (None, None)
        return (parse_time(state.get("StartedAt")), parse_time(state.get("FinishedAt")))

    def finished_at(self, container_id: str) -> float | None:
        state = self._inspect_state(container_id)
        return parse_time(state.get("FinishedAt")) if state else None

    def started_at(self, container_id: str) -> float | None:
        """When the container last started (an inspect, like finished_at)."""
        state = self._inspect_state(container_id)
        return parse_time(state.get("StartedAt")) if state else None

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The raw inspect document, None when the container does not exist (for diagnostics and tests)."""
        try:
            with _translate(f"inspect {container_id}"):
                info: dict[str, Any] = self._api().inspect_container(container_id)
        except errors.ContainerRuntimeError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise
        return info

    def container_ip(self, container_id: str, network: str = "") -> str:
        """The container's address on `network` (default: its first network with one); "" when none.

        Containers joined to a sandbox (`container:<id>`), hostNetwork and `none` containers have none:
        ask the sandbox, or use the host address.
        """
        info = self.inspect(container_id) or {}
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        if network:
            return str((networks.get(network) or {}).get("IPAddress") or "")
        for settings in networks.values():
            ip = str((settings or {}).get("IPAddress") or "")
            if ip:
                return ip
        return ""

    # --- capabilities the host withholds ------------------------------------------------------

    def withheld_capabilities(self) -> tuple[str, ...]:
        """Capabilities this engine's host cannot grant a container; detected once, then cached.

        A real `--privileged` container fails outright on a host whose kernel (or whose own container)
        withholds a capability: runc cannot raise what its bounding set lacks. The engine itself is
        asked, with throwaway containers of the local pause image: (1) `cap_add ALL` starts: nothing is
        withheld; (2) else the capabilities missing from this process's bounding set (right whenever the
        engine runs beside the agent) are tried as the `cap_drop` of `cap_add ALL`; (3) else the
        culprits are found by group testing (halving the capability list). Only capability names this
        engine knows are considered (older engines refuse e.g. BPF). Every answer is verified by a start.
        """
        with self._caps_lock:
            if self._withheld is None:
                self._withheld = self._detect_withheld()
            return self._withheld

    def _detect_withheld(self) -> tuple[str, ...]:
        for leftover in self.list_labelled(f"{CAPPROBE_LABEL}=true"):
            self.remove(leftover.id)
        image = localimage.ensure_pause_image(self)
        if self._caps_start(image, ("ALL",), ()):
            return ()
        known = self._known_capabilities(image)
        own = _own_bounding_set()
        guess = tuple(c for c in known if own and c not in own)
        if guess and self._caps_start(image, ("ALL",), guess):
            return guess
        found = tuple(self._failing_caps(image, known))
        if found and self._caps_start(image, ("ALL",), found):
            return found
        raise errors.ContainerRuntimeError(
            "cannot find a capability set this host grants: cap_add ALL fails and no single capability "
            "explains it"
        )

    def _probe_spec(self, image: str, add: Sequence[str], drop: Sequence[str]) -> runtime.ContainerCreate:
        return runtime.ContainerCreate(
            name=f"nodeagent-capprobe-{uuid.uuid4().hex[:12]}",
            image=image,
            labels={CAPPROBE_LABEL: "true"},
            entrypoint=("/bin/true",),
            network_mode="none",
            cap_add=tuple(add),
            cap_drop=tuple(drop),
            stop_timeout=0,
        )

    def _known_capabilities(self, image: str) -> list[str]:
        """CAPABILITIES minus the names this engine refuses as unknown (one create per unknown name)."""
        known = list(CAPABILITIES)
        while known:
            try:
                cid = self.create(self._probe_spec(image, known, ()))
            except errors.ContainerRuntimeError as exc:
                m = _UNKNOWN_CAP.search(str(exc))
                if m is None or m.group(1) not in known:
                    raise
                known.remove(m.group(1))
                continue
            self.remove(cid)
            break
        return known

    def _caps_start(self, image: str, add: Sequence[str], drop: Sequence[str]) -> bool:
        """Whether a container with these capabilities starts; only a refused start counts as False."""
        cid = self.create(self._probe_spec(image, add, drop))
        try:
            self.start(cid)
        except errors.RuntimeUnavailable:
            raise
        except errors.ContainerRuntimeError:
            return False
        finally:
            self.remove(cid)
        return True

    def _failing_caps(self, image: str, caps: Sequence[str]) -> list[str]:
        if not caps or self._caps_start(image, caps, ()):
            return []
        if len(caps) == 1:
            return [caps[0]]
        mid = len(caps) // 2
        return self._failing_caps(image, caps[:mid]) + self._failing_caps(image, caps[mid:])

    # --- images -------------------------------------------------------------------------------

    def image_present(self, image: str) -> bool:
        try:
            with _translate(f"inspect image {image}"):
                self._api().inspect_image(image)
        except errors.ContainerRuntimeError as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound | docker.errors.ImageNotFound):
                return False
            if _status(exc.__cause__ or exc) == 400:  # an invalid reference is not present either
                return False
            raise
        return True

    def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        tally = PullTally()
        try:
            for line in self._pull_stream(repository, tag or "latest"):
                if not isinstance(line, dict):
                    continue
                if line.get("error"):
                    raise errors.ImagePullError(f"pull {image}: {line['error']}")
                tally.update(line)
                if on_progress is not None:
                    on_progress(tally.current, tally.total)
        except errors.NodeAgentError:
            raise
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            msg = f"pull {image}: the engine reported nothing for {self._pull_idle_timeout:g} s"
            raise errors.ImagePullError(msg) from exc
        except docker.errors.DockerException as exc:  # the engine refused: no such image, bad reference, auth
            raise errors.ImagePullError(f"pull {image}: {_explain(exc)}") from exc
        except OSError as exc:  # requests' connection errors: the engine, not the image, is the problem
            msg = f"pull {image}: docker engine unavailable: {_explain(exc)}"
            raise errors.RuntimeUnavailable(msg) from exc

    def _pull_stream(self, repository: str, tag: str) -> Iterator[Any]:
        """docker-py's `pull(stream=True, decode=True)` with a read timeout: docker-py streams a pull with
        none, so a registry that never answers would hold the calling thread as long as the engine waits."""
        api = self._api()
        headers = {}
        registry, _ = docker.auth.resolve_repository_name(repository)
        auth_header = docker.auth.get_config_header(api, registry)
        if auth_header:
            headers["X-Registry-Auth"] = auth_header
        response = api._post(
            api._url("/images/create"),
            params={"fromImage": repository, "tag": tag},
            headers=headers,
            stream=True,
            timeout=self._pull_idle_timeout,
        )
        return api._stream_helper(response, decode=True)  # type: ignore[no-any-return]

    def load_images(self, path: str) -> list[str]:
        """`docker load` of an image tarball; returns the loaded image names (or ids)."""
        loaded: list[str] = []
        try:
            with open(path, "rb") as fh, _translate(f"load {path}"):
                for line in self._api().load_image(fh):
                    if not isinstance(line, dict):
                        continue
                    if line.get("error"):
                        raise errors.ContainerRuntimeError(f"load {path}: {line['error']}")
                    stream = str(line.get("stream") or "")
                    for prefix in ("Loaded image: ", "Loaded image ID: "):
                        if stream.startswith(prefix):
                            loaded.append(stream[len(prefix) :].strip())
        except FileNotFoundError as exc:
            raise errors.ContainerRuntimeError(f"load {path}: no such file") from exc
        return loaded

    def build_context(self, context_tar: bytes, tag: str, labels: dict[str, str]) -> str:
        """Build an image from an uncompressed tar build context; returns the tag."""
        with _translate(f"build {tag}"):
            output = self._api().build(
                fileobj=io.BytesIO(context_tar),
                custom_context=True,
                tag=tag,
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for line in output:
                if isinstance(line, dict) and line.get("error"):
                    raise errors.ContainerRuntimeError(f"build {tag}: {line['error']}")
        return tag

    def build_busybox_image(self, tag: str, labels: dict[str, str], busybox: str | None = None) -> str:
        """`FROM scratch` + the host's static busybox: an image for offline runs and tests."""
        context = localimage.busybox_context(busybox or localimage.find_busybox())
        return self.build_context(context, tag, labels)

    # --- containers ---------------------------------------------------------------------------

    def _labels(self, spec: runtime.ContainerCreate) -> dict[str, str]:
        return runtime.node_scoped_labels(spec.labels, self._node_name)

    def create(self, spec: runtime.ContainerCreate) -> str:
        api = self._api()
        with _translate(f"create {spec.name}"):
            host_config = api.create_host_config(**_host_config_kwargs(spec))
        if SYSTEMPATHS_UNCONFINED in spec.security_opt:
            # a docker CLI option, not an engine one: the CLI sends empty masked/read-only path lists
            host_config["MaskedPaths"] = []
            host_config["ReadonlyPaths"] = []
        ports = sorted({(p.container_port, p.protocol or "tcp") for p in spec.ports})
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "name": spec.name,
            "labels": self._labels(spec),
            "environment": list(spec.env),
            "host_config": host_config,
            "stop_timeout": spec.stop_timeout,
            "stdin_open": spec.stdin_open,
            "tty": spec.tty,
        }
        if spec.entrypoint is not None:
            kwargs["entrypoint"] = list(spec.entrypoint)
            kwargs["command"] = list(spec.cmd or ())
        elif spec.cmd is not None:
            kwargs["command"] = list(spec.cmd)
        _add_set(kwargs, working_dir=spec.working_dir, hostname=spec.hostname, user=spec.user, ports=ports)
        try:
            with _translate(f"create {spec.name}"):
                result = api.create_container(**kwargs)
        except errors.ContainerRuntimeError as exc:
            cause = exc.__cause__
            if _status(cause) == 409:  # the name exists: a create that finished before a crash
                existing = self._id_by_name(spec.name)
                if existing is not None:
                    return existing
            if isinstance(cause, docker.errors.ImageNotFound) or (
                _status(cause) == 404 and "image" in str(exc).lower()
            ):
                raise errors.ContainerRuntimeError(
                    f"create {spec.name}: image {spec.image} is not present"
                ) from cause
            raise
        return str(result["Id"])

    def _id_by_name(self, name: str) -> str | None:
        info = self.inspect(name)
        return str(info["Id"]) if info else None

    def start(self, container_id: str) -> None:
        with _translate(f"start {container_id}"):
            self._api().start(container_id)

    def stop(self, container_id: str, timeout: int) -> None:
        """Stop (SIGTERM, then SIGKILL after `timeout` s); a missing container is already stopped."""
        try:
            with _translate(f"stop {container_id}"):
                self._api().stop(container_id, timeout=timeout)
        except errors.ContainerRuntimeError as exc:
            if _status(exc.__cause__) != 404:
                raise

    def remove(self, container_id: str) -> None:
        try:
            with _translate(f"remove {container_id}"):
                self._api().remove_container(container_id, force=True, v=True)
        except errors.ContainerRuntimeError as exc:
            status = _status(exc.__cause__)
            if status == 404:
                return
            if status == 409 and "already in progress" in str(exc):
                return
            raise

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int:
        """Run `command` detached and poll for its exit, so the timeout holds whatever it prints."""
        api = self._api()
        with _translate(f"exec in {container_id}"):
            exec_id = api.exec_create(container_id, list(command), stdout=False, stderr=False)["Id"]
            api.exec_start(exec_id, detach=True)
            deadline = time.monotonic() + timeout
            while True:
                info = api.exec_inspect(exec_id)
                if not info.get("Running") and info.get("ExitCode") is not None:
                    return int(info["ExitCode"])
                if time.monotonic() >= deadline:
                    raise runtime.ExecTimeout(
                        f"exec {list(command)} in {container_id}: timed out after {timeout}s"
                    )
                time.sleep(EXEC_POLL)

    def events(self, stop: threading.Event) -> Iterator[runtime.RuntimeEvent]:
        """Managed-container events until `stop` is set or the engine goes away.

        Asks for short windows (`since`/`until`), each starting where the last ended, so `stop` is seen
        within EVENT_WINDOW seconds without killing a blocked socket; an event on a window boundary may be
        seen twice, which a level-triggered reconciler does not mind.
        """
        filters = {"type": "container", "label": [MANAGED_FILTER], "event": list(EVENT_ACTIONS)}
        since = time.time()
        while not stop.is_set():
            until = time.time() + EVENT_WINDOW
            try:
                stream = self._api().events(since=since, until=until, filters=filters, decode=True)
                for raw in stream:
                    event = _event(raw)
                    if event is not None:
                        yield event
                    if stop.is_set():
                        stream.close()
                        return
            except (errors.NodeAgentError, docker.errors.DockerException, OSError):
                return
            since = until

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        """`docker logs` through the API (json-file or local log driver), streamed in chunks."""
        kwargs: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "stream": True,
            "follow": follow,
            "timestamps": timestamps,
            "tail": "all" if tail is None else max(tail, 0),
        }
        if since is not None:
            kwargs["since"] = since
        with _translate(f"logs of {container_id}"):
            stream = self._api().logs(container_id, **kwargs)
        try:
            while True:
                with _translate(f"logs of {container_id}"):
                    chunk = next(stream, None)
                if chunk is None:
                    return
                yield bytes(chunk)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()


class PullTally:
    """Bytes downloaded and bytes known of a pull, summed over its layers from the engine's JSON lines:
    `Downloading` carries a layer's progressDetail {current, total}; `Download complete` makes it whole."""

    def __init__(self) -> None:
        self._layers: dict[str, tuple[int, int]] = {}

    def update(self, line: dict[str, Any]) -> None:
        layer = str(line.get("id") or "")
        status = line.get("status")
        if not layer:
            return
        if status == "Downloading":
            detail = line.get("progressDetail") or {}
            current, total = detail.get("current"), detail.get("total")
            if isinstance(current, int) and isinstance(total, int) and total > 0:
                self._layers[layer] = (current, total)
        elif status in ("Download complete", "Pull complete") and layer in self._layers:
            total = self._layers[layer][1]
            self._layers[layer] = (total, total)

    @property
    def current(self) -> int:
        return sum(c for c, _ in self._layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self._layers.values())


def _event(raw: Any) -> runtime.RuntimeEvent | None:
    if not isinstance(raw, dict) or raw.get("Type", "container") != "container":
        return None
    actor = raw.get("Actor") or {}
    action = str(raw.get("Action") or raw.get("status") or "")
    cid = str(actor.get("ID") or raw.get("id") or "")
    attributes = actor.get("Attributes") or {}
    return runtime.RuntimeEvent(
        action=action, container_id=cid, labels={str(k): str(v) for k, v in attributes.items()}
    )


def _mount(m: runtime.Mount) -> Any:
    if m.tmpfs:
        return docker.types.Mount(
            target=m.target, source=None, type="tmpfs", read_only=m.read_only, tmpfs_size=m.tmpfs_size
        )
    return docker.types.Mount(
        target=m.target,
        source=m.source,
        type="bind",
        read_only=m.read_only,
        propagation=m.propagation or None,
    )


def _port_bindings(spec: runtime.ContainerCreate) -> dict[str, list[tuple[str, int] | int]]:
    out: dict[str, list[tuple[str, int] | int]] = {}
    for p in spec.ports:
        key = f"{p.container_port}/{p.protocol or 'tcp'}"
        out.setdefault(key, []).append((p.host_ip, p.host_port) if p.host_ip else p.host_port)
    return out


def _add_set(kwargs: dict[str, Any], **values: object) -> None:
    """Adds the values that are set: an empty string, list or mapping leaves the engine's default."""
    kwargs.update((k, v) for k, v in values.items() if v)


def _host_config_kwargs(spec: runtime.ContainerCreate) -> dict[str, Any]:
    """Every ContainerCreate field that lives in HostConfig. No restart policy: the agent restarts."""
    kwargs: dict[str, Any] = {
        "mounts": [_mount(m) for m in spec.mounts],
        "privileged": spec.privileged,
        "read_only": spec.read_only_rootfs,
    }
    _add_set(
        kwargs,
        network_mode=spec.network_mode,
        pid_mode=spec.pid_mode,
        ipc_mode=spec.ipc_mode,
        port_bindings=_port_bindings(spec),
        cap_add=list(spec.cap_add),
        cap_drop=list(spec.cap_drop),
        group_add=list(spec.group_add),
        security_opt=[o for o in spec.security_opt if o != SYSTEMPATHS_UNCONFINED],
        sysctls=dict(spec.sysctls),
        dns=list(spec.dns),
        dns_search=list(spec.dns_search),
        extra_hosts=list(spec.extra_hosts),
    )
    if spec.memory_limit is not None:
        kwargs["mem_limit"] = spec.memory_limit
    if spec.nano_cpus is not None:
        # CFS quota over a 100 ms period, as the kubelet sets it: unlike NanoCpus, Docker does not refuse a
        # limit above the host's CPU count.
        kwargs["cpu_period"] = CPU_PERIOD
        kwargs["cpu_quota"] = max(MIN_CPU_QUOTA, spec.nano_cpus * CPU_PERIOD // 1_000_000_000)
    if spec.cpu_shares is not None:
        kwargs["cpu_shares"] = spec.cpu_shares
    if spec.devices_all and not spec.privileged:
        kwargs["devices"] = [f"{d}:{d}:rwm" for d in host_devices()]
        kwargs["device_cgroup_rules"] = ["a *:* rwm"]
    return kwargs
