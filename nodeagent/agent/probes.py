"""Liveness, readiness and startup probes with Kubernetes' semantics (`pkg/kubelet/prober`).

Three layers, so the rules are testable without time or containers:
- handlers (`exec_probe`, `http_probe`, `tcp_probe`, `run_handler`): one attempt, success or failure with
  Kubernetes' message, never an exception;
- `ProbeState` / `ContainerProbes`: a pure state machine per container, advanced by `observe(result, now)`;
- `Prober`: a thread that runs due probes for a set of containers and publishes each container's
  started/ready/restart verdict in a thread-safe map (the reconciler reads it; `on_change` wakes it).

Rules kept (worker.go): a probe first runs `initialDelaySeconds` after the container started, then every
`periodSeconds`; the published result changes only after `successThreshold` successes or
`failureThreshold` failures in a row; readiness starts as failure, liveness as success, startup as unknown;
while a startup probe has not succeeded, liveness and readiness are not run and the container is neither
started nor ready; once it has, it never runs again for that container; a liveness or startup failure
verdict means "restart the container", after which that container is probed no more (a new container
gets a new state). Errors (container gone, engine down, timeouts) count as failures, as in the kubelet.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from nodeagent import errors
from nodeagent import runtime as rt
from nodeagent.k8s import model

log = structlog.get_logger(__name__)

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"
KINDS = (STARTUP, LIVENESS, READINESS)
USER_AGENT = "kube-probe/nodeagent"
MAX_BODY = 10 * 1024  # the kubelet reads at most 10 KiB of a probe response

_INITIAL = {LIVENESS: True, READINESS: False, STARTUP: None}
_TITLE = {LIVENESS: "Liveness", READINESS: "Readiness", STARTUP: "Startup"}


class Executor(Protocol):
    """What exec probes need from the runtime (`runtime.ContainerRuntime` has it)."""

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int: ...


@dataclass(frozen=True)
class Result:
    """One probe attempt."""

    success: bool
    message: str = ""


# --- the pure state machine -------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeState:
    """One probe of one container: what it last published and how many identical results in a row."""

    kind: str  # LIVENESS, READINESS or STARTUP
    probe: model.Probe
    next_due: float  # unix seconds
    reported: bool | None  # published result: True success, False failure, None unknown (startup)
    last: bool | None = None  # the last raw result
    run: int = 0  # how many times in a row `last` came
    on_hold: bool = False  # liveness/startup failed: the container is to be restarted, probing stops
    message: str = ""  # the last failure's message

    @classmethod
    def initial(cls, kind: str, probe: model.Probe, started_at: float) -> ProbeState:
        return cls(kind, probe, started_at + probe.initial_delay_seconds, _INITIAL[kind])

    def due(self, now: float) -> bool:
        if self.on_hold or (self.kind == STARTUP and self.reported is True):
            return False
        return now >= self.next_due

    def observe(self, result: Result, now: float) -> ProbeState:
        """The state after one attempt finished at `now` (worker.go's doProbe)."""
        ok = result.success
        run = self.run + 1 if self.last == ok else 1
        state = dataclasses.replace(
            self,
            last=ok,
            run=run,
            next_due=now + self.probe.period_seconds,
            message=self.message if ok else result.message,
        )
        threshold = self.probe.success_threshold if ok else self.probe.failure_threshold
        if run < threshold:
            return state
        state = dataclasses.replace(state, reported=ok)
        if not ok and self.kind in (LIVENESS, STARTUP):
            state = dataclasses.replace(state, on_hold=True, run=0)
        return state


@dataclass(frozen=True)
class Verdict:
    """What the probes say about one container, as the kubelet publishes it in ContainerStatus."""

    started: bool
    ready: bool
    restart: bool  # a liveness or startup probe failed: kill and restart the container
    message: str = ""  # why it is not ready or must restart, in the kubelet's words
    grace_seconds: int | None = None  # the failed probe's terminationGracePeriodSeconds, if it has one
    ready_since: float | None = None  # when it last became ready (the Prober tracks it; minReadySeconds)


@dataclass(frozen=True)
class ContainerProbes:
    """The three probes of one running container (each None when the container has none)."""

    startup: ProbeState | None = None
    liveness: ProbeState | None = None
    readiness: ProbeState | None = None

    @classmethod
    def for_container(cls, container: model.Container, started_at: float) -> ContainerProbes:
        def make(kind: str, probe: model.Probe | None) -> ProbeState | None:
            return None if probe is None else ProbeState.initial(kind, probe, started_at)

        return cls(
            startup=make(STARTUP, container.startup_probe),
            liveness=make(LIVENESS, container.liveness_probe),
            readiness=make(READINESS, container.readiness_probe),
        )

    def get(self, kind: str) -> ProbeState | None:
        state: ProbeState | None = getattr(self, kind)
        return state

    @property
    def started(self) -> bool:
        return self.startup is None or self.startup.reported is True

    @property
    def restart(self) -> bool:
        return any(s is not None and s.on_hold for s in (self.startup, self.liveness))

    @property
    def ready(self) -> bool:
        if not self.started or self.restart:
            return False
        return self.readiness is None or self.readiness.reported is True

    def verdict(self) -> Verdict:
        message = ""
        grace = None
        for state in (self.startup, self.liveness, self.readiness):
            if state is None:
                continue
            failing = state.on_hold or (
                state.kind == READINESS and state.reported is False and state.last is False
            )
            if failing:
                message = f"{_TITLE[state.kind]} probe failed: {state.message}".rstrip(": ")
                if state.on_hold:
                    grace = state.probe.termination_grace_period_seconds
                break
        return Verdict(self.started, self.ready, self.restart, message, grace)

    def due(self, now: float) -> tuple[str, ...]:
        """The probes to run now: only the startup probe until it succeeds, then liveness and readiness."""
        if self.restart:
            return ()
        if not self.started:
            return (STARTUP,) if self.startup is not None and self.startup.due(now) else ()
        return tuple(
            kind for kind in (LIVENESS, READINESS) if (s := self.get(kind)) is not None and s.due(now)
        )

    def observe(self, kind: str, result: Result, now: float) -> ContainerProbes:
        state = self.get(kind)
        if state is None:
            return self
        return dataclasses.replace(self, **{kind: state.observe(result, now)})


# --- handlers ---------------------------------------------------------------------------------


def resolve_port(port: int | str, container: model.Container) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports (None when unknown)."""
    if isinstance(port, int):
        return port
    for p in container.ports:
        if p.name == port:
            return p.container_port
    return int(port) if port.isdigit() else None


def exec_probe(runtime: Executor, container_id: str, command: tuple[str, ...], timeout: float) -> Result:
    try:
        code = runtime.exec(container_id, command, timeout)
    except rt.ExecTimeout:
        return Result(False, f"command {list(command)} timed out after {timeout:g}s")
    except errors.NodeAgentError as exc:
        return Result(False, str(exc))
    if code == 0:
        return Result(True)
    return Result(False, f"command {list(command)} exited with {code}")


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def http_probe(action: model.HTTPGetAction, host: str, port: int, timeout: float) -> Result:
    """GET scheme://host:port/path; 200 <= status < 400 is success (redirects are not followed)."""
    path = action.path if action.path.startswith("/") else "/" + action.path
    target = action.host or host
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in action.http_headers:
        headers[h.name] = h.value  # a Host header here overrides the Host sent, as in Kubernetes
    conn: http.client.HTTPConnection
    if action.scheme.upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet skips certificate verification
        conn = http.client.HTTPSConnection(target, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(target, port, timeout=timeout)
    url = f"{action.scheme.lower()}://{_host_for_url(target)}:{port}{path}"
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read(MAX_BODY)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Result(False, f'Get "{url}": {exc}')
    finally:
        conn.close()
    if 200 <= status < 400:
        return Result(True)
    return Result(False, f"HTTP probe failed with statuscode: {status}")


def tcp_probe(host: str, port: int, timeout: float) -> Result:
    """A TCP connect that completes within the timeout is success; nothing is sent."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Result(True)
    except OSError as exc:
        return Result(False, f"dial tcp {_host_for_url(host)}:{port}: {exc.strerror or exc}")


def run_handler(
    handler: model.ProbeHandler,
    *,
    runtime: Executor,
    container_id: str,
    container: model.Container,
    host: str,
    timeout: float,
) -> Result:
    """One attempt of any handler. `host` is where httpGet/tcpSocket go unless the probe names a host:
    the pod IP, or 127.0.0.1 for a hostNetwork pod."""
    if isinstance(handler, model.ExecAction):
        return exec_probe(runtime, container_id, handler.command, timeout)
    if isinstance(handler, model.GRPCAction):
        # warned about at validation; a probe we cannot run must not restart or hold back the container
        return Result(True, "gRPC probes are not supported; treated as passing")
    port = resolve_port(handler.port, container)
    if port is None:
        return Result(False, f"port {handler.port!r} not found in container {container.name}")
    if isinstance(handler, model.HTTPGetAction):
        return http_probe(handler, host, port, timeout)
    return tcp_probe(handler.host or host, port, timeout)


# --- the runner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A running container to probe."""

    container_id: str
    container: model.Container
    started_at: float  # unix seconds, the container's StartedAt
    host: str  # where httpGet/tcpSocket probes go: the pod IP, or 127.0.0.1 for a hostNetwork pod


class Prober:
    """Runs the due probes of a set of containers on a small thread pool and keeps their verdicts.

    `set_targets` says which containers exist (a new container id, or a new start time, starts a fresh
    state: probes reset on restart as in the kubelet); `verdicts` is what the reconciler reads, each with
    the time the container last became ready (a container with no readiness or startup probe is ready
    from its start).
    """

    def __init__(
        self,
        runtime: Executor,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
        workers: int = 4,
        tick: float = 0.5,
    ) -> None:
        self._rt = runtime
        self._clock = clock
        self._on_change = on_change
        self._tick = tick
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}
        self._states: dict[str, ContainerProbes] = {}
        self._ready_since: dict[str, float] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_targets(self, targets: Iterable[Target]) -> None:
        with self._lock:
            fresh = {t.container_id: t for t in targets}
            for cid, target in fresh.items():
                old = self._targets.get(cid)
                if old is None or old.started_at != target.started_at or old.container != target.container:
                    state = ContainerProbes.for_container(target.container, target.started_at)
                    self._states[cid] = state
                    self._ready_since.pop(cid, None)
                    if state.ready:
                        self._ready_since[cid] = target.started_at
            for cid in set(self._targets) - set(fresh):
                self._states.pop(cid, None)
                self._ready_since.pop(cid, None)
            self._targets = fresh

    def verdict(self, container_id: str) -> Verdict | None:
        with self._lock:
            state = self._states.get(container_id)
            if state is None:
                return None
            return dataclasses.replace(state.verdict(), ready_since=self._ready_since.get(container_id))

    def verdicts(self) -> dict[str, Verdict]:
        with self._lock:
            return {
                cid: dataclasses.replace(s.verdict(), ready_since=self._ready_since.get(cid))
                for cid, s in self._states.items()
            }

    def run_once(self, *, wait: bool = False) -> int:
        """Start every due probe that is not already running; returns how many were started."""
        now = self._clock()
        jobs: list[tuple[Target, ContainerProbes, str]] = []
        with self._lock:
            for cid, state in self._states.items():
                for kind in state.due(now):
                    if (cid, kind) not in self._in_flight:
                        self._in_flight.add((cid, kind))
                        jobs.append((self._targets[cid], state, kind))
        futures = [self._pool.submit(self._probe, target, state, kind) for target, state, kind in jobs]
        if wait:
            concurrent.futures.wait(futures)
        return len(futures)

    def _probe(self, target: Target, before: ContainerProbes, kind: str) -> None:
        state = before.get(kind)
        try:
            if state is None:
                return
            result = run_handler(
                state.probe.handler,
                runtime=self._rt,
                container_id=target.container_id,
                container=target.container,
                host=target.host,
                timeout=float(state.probe.timeout_seconds),
            )
            changed = self._record(target, kind, result)
        finally:
            with self._lock:
                self._in_flight.discard((target.container_id, kind))
        if changed:
            self._on_change()

    def _record(self, target: Target, kind: str, result: Result) -> bool:
        with self._lock:
            if self._targets.get(target.container_id) != target:
                return False  # the container went away or restarted while we probed: stale result
            current = self._states[target.container_id]
            now = self._clock()
            updated = current.observe(kind, result, now)
            self._states[target.container_id] = updated
            old, new = current.verdict(), updated.verdict()
            if new.ready and not old.ready:
                self._ready_since[target.container_id] = now
            elif not new.ready:
                self._ready_since.pop(target.container_id, None)
        if (old.started, old.ready, old.restart) == (new.started, new.ready, new.restart):
            return False
        log.info(
            "probe_verdict_changed",
            container_id=target.container_id[:12],
            container=target.container.name,
            probe=kind,
            started=new.started,
            ready=new.ready,
            restart=new.restart,
            message=new.message or None,
        )
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="prober", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self.run_once()
            except Exception:  # a bug in one pass must not end probing
                log.exception("prober_pass_failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._pool.shutdown(wait=True)
