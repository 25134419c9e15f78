"""Is the agent healthy? One verdict for the systemd watchdog and the local `/healthz`, plus `/readyz`
and `/metrics` on a small loopback HTTP server.

Healthy means the reconcile loop is alive and can see the engine: a pass is not stuck, and when idle,
a pass completed (which needs Docker to answer the list call) within `stale_after`. A pass only plans
and dispatches (pods' work runs on per-owner workers), so a pod slow to stop or pull never makes the
agent unhealthy; a worker stuck past its own deadline is reported (status, logs, the
`nodeagent_workers_stuck` gauge) instead. A failed *action* (an image that cannot be pulled) is not
unhealthiness either: restarting the agent would not fix it.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from nodeagent.service import metrics

log = structlog.get_logger(__name__)

STALL_AFTER = 300.0  # a pass (observe, plan, dispatch: no pod's work) running this long is stuck
STALE_GRACE = 60.0  # idle: a completed pass is expected every resyncInterval, plus this


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


def evaluate(
    *,
    now: float,
    started_at: float,
    last_pass_at: float,
    pass_started_at: float | None,
    last_error: str,
    stale_after: float,
    stall_after: float = STALL_AFTER,
) -> Verdict:
    """The pure health rule; times are wall-clock seconds, `last_pass_at` 0 before the first pass."""
    if pass_started_at is not None:
        running = now - pass_started_at
        if running > stall_after:
            return Verdict(False, f"reconcile pass running for {running:.0f}s")
        return Verdict(True, "reconciling")
    since = now - max(last_pass_at, started_at)  # the start counts, so the first pass has time
    if since > stale_after:
        why = f": {last_error}" if last_error else ""
        return Verdict(False, f"no complete reconcile pass for {since:.0f}s{why}")
    return Verdict(True, "ok")


class PassLoop(Protocol):
    """What the monitor reads of the agent's reconcile loop (agent/reconciler.py's `Reconciler`), typed
    here so the service layer never imports the agent layer (ARCHITECTURE.md, import contracts)."""

    @property
    def resync_interval(self) -> float: ...
    @property
    def passes(self) -> int: ...
    @property
    def last_pass_at(self) -> float: ...
    @property
    def pass_started_at(self) -> float | None: ...
    @property
    def last_error(self) -> str: ...


class Monitor:
    """Reads the live reconciler; `check()` for health, `ready` once the first pass completed."""

    def __init__(
        self,
        loop: PassLoop,
        *,
        stale_after: float | None = None,
        stall_after: float = STALL_AFTER,
        clock: Callable[[], float] = time.time,
        stuck_sources: Callable[[], list[str]] = list,
    ) -> None:
        self.loop = loop
        self.stuck_sources = stuck_sources  # why sources are stuck (a scan that never returns)
        self.clock = clock
        self.started_at = clock()
        self.stale_after = loop.resync_interval + STALE_GRACE if stale_after is None else stale_after
        self.stall_after = stall_after

    @property
    def ready(self) -> bool:
        return self.loop.passes > 0

    def readiness(self) -> tuple[bool, str]:
        """`/readyz`: the first pass done and no source stuck (its content may be going stale)."""
        if not self.ready:
            return False, "first sync not done"
        stuck = self.stuck_sources()
        if stuck:
            return False, "; ".join(stuck)
        return True, "ok"

    def check(self) -> Verdict:
        return evaluate(
            now=self.clock(),
            started_at=self.started_at,
            last_pass_at=self.loop.last_pass_at,
            pass_started_at=self.loop.pass_started_at,
            last_error=self.loop.last_error,
            stale_after=self.stale_after,
            stall_after=self.stall_after,
        )

    def healthy(self) -> tuple[bool, str]:
        """`check()` as the pair systemd.Watchdog wants."""
        v = self.check()
        return v.healthy, v.reason


class Server:
    """`/healthz`, `/readyz` and `/metrics` over plain HTTP; bind it to loopback (the default)."""

    def __init__(self, monitor: Monitor, host: str, port: int) -> None:
        self.monitor = monitor
        handler = _handler(monitor)
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"[{host!s}]:{port}" if ":" in str(host) else f"{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health-http", daemon=True)
        self._thread.start()
        log.info("health_server_started", address=self.address)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _handler(monitor: Monitor) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "nodeagent"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                v = monitor.check()
                self._reply(200 if v.healthy else 503, f"{'ok' if v.healthy else 'unhealthy'}: {v.reason}\n")
            elif path == "/readyz":
                ok, why = monitor.readiness()
                self._reply(200 if ok else 503, why + "\n")
            elif path == "/metrics":
                self._reply(200, metrics.exposition(), metrics.CONTENT_TYPE)
            else:
                self._reply(404, "not found: try /healthz, /readyz or /metrics\n")

        def _reply(self, code: int, body: str | bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the journal

    return Handler
