"""A threading HTTP server that bounds what clients can take: it knows its open connections (so stopping
it ends them), caps them below the open-file limit, and cuts off clients slow to send their headers.
The fault suite's HTTP sources run on it; `serve` runs on fleet/aioserver.py (an event loop),
which shares its limits (`connection_limit`, the timeouts)."""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
import threading
import time
from http import server as http_server
from typing import Any

import structlog

log = structlog.get_logger(__name__)

MAX_CONNECTIONS = 10_000  # and never more than the open-file limit allows (connection_limit)
FD_RESERVE = 64  # file descriptors kept for everything but connections (files, inotify, TLS, logs)
HEADER_TIMEOUT = 10.0  # a new connection must deliver its first request's headers within this
IDLE_TIMEOUT = 60.0  # a kept-alive connection must deliver its next request within this


class _Conn:
    """One open connection: what the reaper and the connection limit need to know about it."""

    __slots__ = ("deadline", "opened", "sock", "state")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock  # the live socket (the TLS one once wrapped)
        self.opened = time.monotonic()
        self.state = "waiting"  # waiting for a request (evictable), "busy" or "watch"
        self.deadline = deadline  # while waiting: when the request's headers must be complete


_current = threading.local()  # the _Conn of the connection a handler thread serves


class TrackingHTTPServer(http_server.ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections, so stopping it can end them, a
    connection flood cannot exhaust threads or file descriptors, and slow clients are cut off.

    - at most `max_connections` at once: a new one beyond that evicts the connection that has waited
      longest for a request (idle keep-alives and clients that never send anything go first); when all
      are busy, the new one is closed at once;
    - a connection must deliver a request's headers within `header_timeout` of being accepted (TLS
      handshake included) and within `idle_timeout` of its previous answer; a reaper thread shuts
      down those that do not, so a slow-loris client holds a thread for seconds, not forever;
    - accept() failing for lack of file descriptors pauses accepting briefly instead of spinning.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[http_server.BaseHTTPRequestHandler],
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        super().__init__(address, handler)
        self._open: dict[socket.socket, _Conn] = {}
        self._open_lock = threading.Lock()
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self._reaper_stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="serve-reaper", daemon=True)
        self._reaper.start()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.05)  # out of descriptors: the reaper or closing clients will free some
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        evict: socket.socket | None = None
        with self._open_lock:
            if len(self._open) >= self.max_connections:
                waiting = [c for c in self._open.values() if c.state == "waiting"]
                if not waiting:
                    full = True
                else:
                    full = False
                    oldest = min(waiting, key=lambda c: c.opened)
                    oldest.state = "evicted"
                    evict = oldest.sock
            else:
                full = False
            if not full:
                self._open[request] = _Conn(request, time.monotonic() + self.header_timeout)
        if evict is not None:
            with contextlib.suppress(OSError):
                evict.shutdown(socket.SHUT_RDWR)
        if full:
            log.debug("connection_refused_limit", client=client_address[0])
            with contextlib.suppress(OSError):
                request.close()
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started: drop the connection, keep serving
            self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def connection(self, request: Any) -> _Conn | None:
        with self._open_lock:
            return self._open.get(request)

    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def _reap(self) -> None:
        while not self._reaper_stop.wait(0.5):
            now = time.monotonic()
            with self._open_lock:
                late = [c for c in self._open.values() if c.state == "waiting" and now > c.deadline]
                for c in late:
                    c.state = "evicted"
            for c in late:
                with contextlib.suppress(OSError):
                    c.sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._reaper_stop.set()
        super().server_close()

    def drop_connections(self) -> None:
        """End every open connection (after `shutdown`, as a server that dies does)."""
        with self._open_lock:
            open_now, self._open = list(self._open.values()), {}
        for c in open_now:
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_RDWR)


def connection_limit(wanted: int) -> int:
    """`wanted`, lowered to what the open-file limit leaves after FD_RESERVE (each connection is a
    descriptor: past the limit accept() fails, and a server that keeps retrying it spins)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - FD_RESERVE))
