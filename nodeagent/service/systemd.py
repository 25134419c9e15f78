"""sd_notify without a library: READY, STATUS, WATCHDOG, RELOADING and STOPPING for `Type=notify`.

The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET`
(a leading `@` means the abstract namespace). Outside systemd the variable is unset and every call is a
no-op, so `nodeagent run` behaves the same in a terminal. Sending never raises: a lost notification must
not take the agent (and so, eventually, nothing else) down.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def socket_address(env: Mapping[str, str]) -> str | None:
    """The notify socket's address from the environment; abstract names start with a NUL byte."""
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr or not (addr.startswith("/") or addr.startswith("@")):
        return None  # unset, or a vsock address we do not speak
    return "\0" + addr[1:] if addr.startswith("@") else addr


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `$WATCHDOG_USEC`, as sd_watchdog_enabled advises).

    None when no watchdog is configured or `$WATCHDOG_PID` names another process.
    """
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1e6 if usec > 0 else None


def summary(running: int, failing: int, source_errors: int, pending_sources: int) -> str:
    """The one-line STATUS= text `systemctl status` shows: `12 pods running, 0 failing, sources ok`."""
    if source_errors:
        sources = f"{source_errors} source error{'s' if source_errors != 1 else ''}"
    elif pending_sources:
        sources = f"waiting for {pending_sources} source{'s' if pending_sources != 1 else ''}"
    else:
        sources = "sources ok"
    return f"{running} pod{'s' if running != 1 else ''} running, {failing} failing, {sources}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    """Talks to the service manager; every method is a no-op when not started by systemd."""

    def __init__(self, env: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env)
        self.watchdog_interval = watchdog_interval(env, os.getpid() if pid is None else pid)
        self._lock = threading.Lock()
        self._ready = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=value` lines; False (and a debug log) when it could not be sent."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(payload)
        except OSError as exc:
            log.debug("sd_notify_failed", error=str(exc), message=lines[0].split("=", 1)[0] if lines else "")
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """READY=1, once per start or reload (systemd ignores repeats, but the log would not)."""
        with self._lock:
            first = not self._ready
            self._ready = True
        lines = ["READY=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        self.notify(*lines)
        if first:
            log.info("service_ready", notify=self.enabled)

    @property
    def is_ready(self) -> bool:
        return self._ready

    def status(self, text: str) -> None:
        self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC, which systemd 253+ requires for Type=notify-reload.

        The caller sends READY=1 when the reload is done; a pass finishing meanwhile does not.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading config")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping; workloads are left running")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")


class Watchdog:
    """Pings WATCHDOG=1 every `interval` seconds, but only while `healthy()` says so.

    A stuck loop or an engine that stopped answering makes `healthy()` false, the pings stop, and
    systemd restarts the agent after WatchdogSec; running containers are untouched by that restart.
    """

    def __init__(self, notifier: Notifier, healthy: Callable[[], tuple[bool, str]], interval: float) -> None:
        self.notifier = notifier
        self.healthy = healthy
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_healthy = True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def tick(self) -> bool:
        """One check; True when a ping was sent."""
        ok, reason = self.healthy()
        if ok:
            if not self._was_healthy:
                log.info("watchdog_resumed")
            self.notifier.watchdog()
        elif self._was_healthy:
            log.warning("watchdog_withheld", reason=reason)
        self._was_healthy = ok
        return ok

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval)
