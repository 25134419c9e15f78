"""`serve`'s HTTP server: one asyncio event loop (aiohttp's low-level server) in a thread of its own, so a
held watch is a parked await, not a thread. A fleet of N nodes holds N watches and up to N kept-alive
report connections; with a thread each, 5000 nodes were 10 000 threads per replica.

- The endpoints are fleet/handler.py's `FleetAPI`, which knows nothing of the transport. Its quick work
  (checks, reports, bundles already rendered) runs on the loop; what may block (SQLite or PostgreSQL,
  locks, rendering a node's bundle) it hands back as a `Defer`, run in a bounded pool of worker threads.
- Watches wake through `wake(nodes)`, callable from any thread: one `call_soon_threadsafe` resolves the
  futures the watches of those nodes (or of all) are parked on, and each then polls its bundle once.
- Connections are bounded as TrackingHTTPServer bounded them (fleet/httpserver.py): at most
  `max_connections` (below the open-file limit); a new one beyond that evicts the one that has waited
  longest for a request, or is closed when none waits; a connection must deliver a request's headers
  within `header_timeout` of being accepted and within `idle_timeout` of its previous answer, and a TLS
  handshake within `header_timeout`; a watch whose client hangs up is freed at once. (A TLS connection
  counts once its handshake is done: until then asyncio owns it, and its handshake timeout bounds it.
  Out of descriptors, asyncio stops accepting for a second rather than spinning.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import structlog
from aiohttp import web

try:
    import uvloop
except ImportError:  # a dependency, but serve works on asyncio's own loop without it (_new_loop)
    uvloop = None  # type: ignore[assignment]

import nodeagent
from nodeagent.fleet import handler
from nodeagent.fleet.httpserver import HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS
from nodeagent.service import metrics

log = structlog.get_logger(__name__)

T = TypeVar("T")

WORKERS = 16  # threads for the endpoints' blocking work (store, rendering, rollout actions)
BACKLOG = 1024  # a fleet reconnects its watches at once after every change: keep the SYNs
REAP_EVERY = 1.0  # how often connections past their header or idle deadline are closed
MAX_LINE = 65536  # request line and header field sizes (http.server's limits, which serve had)
SERVER_HEADER = f"nodeagent-serve/{nodeagent.__version__}"


class _Conn:
    """One open connection: what the connection limit, the reaper and a watch need to know of it."""

    __slots__ = ("deadline", "gone", "opened", "state", "transport", "waiter")

    def __init__(self, transport: asyncio.Transport, deadline: float) -> None:
        self.transport = transport
        self.opened = time.monotonic()
        self.state = "waiting"  # waiting for a request (evictable), "busy" or "watch"
        self.deadline = deadline  # while waiting: when the request's headers must be complete
        self.gone = False
        self.waiter: asyncio.Future[None] | None = None  # the watch parked on this connection


class _Manager(web.Server):
    """aiohttp's low-level server, telling the AioHTTPServer of each connection made and lost."""

    def __init__(self, owner: AioHTTPServer, **kw: Any) -> None:
        super().__init__(owner._handle, **kw)
        self._owner = owner

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._owner._admit(handler, transport)

    def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._owner._lost(handler)


class AioHTTPServer:
    """`FleetAPI` on an event loop. `start`/`stop` are synchronous (the CLI and the tests call them)."""

    def __init__(
        self,
        api: handler.FleetAPI,
        address: tuple[str, int],
        *,
        tls: ssl.SSLContext | None = None,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        workers: int = WORKERS,
    ) -> None:
        self.api = api
        self.tls = tls
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        # bound now, so the port is known (and a taken one an error) before start
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=BACKLOG)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.accepted = 0  # connections accepted since start (tests: connection reuse)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="serve-work")
        self._conns: dict[Any, _Conn] = {}  # aiohttp's protocol object -> its connection
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}  # watched node ("": shared) -> parked
        self._wakes = 0  # wake() calls so far: a watch that saw none since its last look need not look
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._done: asyncio.Future[None] | None = None
        self._failed: BaseException | None = None

    # --- the synchronous face ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve-http", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed

    def stop(self) -> None:
        """Stop accepting, answer the held watches, end every connection (agents see serve down)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop ended already
                loop.call_soon_threadsafe(self._begin_stop)
            thread.join(15)
        with contextlib.suppress(OSError):
            self.socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    def wake(self, nodes: Iterable[str] | None = None) -> None:
        """Have the watches on `nodes` (None: every watch, the shared bundle's too) look at their
        bundle again. Any thread; cheap enough to call on every change."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        which = None if nodes is None else frozenset(nodes)
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(self._wake, which)

    def watched(self) -> list[str]:
        """The nodes with a parked watch ("" for the shared bundle's); any thread (a copy of the keys,
        taken under the interpreter lock)."""
        return list(self._waiters)

    def open_connections(self) -> int:
        return len(self._conns)

    def states(self) -> list[str]:
        """The state of each open connection: "waiting", "busy" or "watch"."""
        return [c.state for c in list(self._conns.values())]

    def sockets(self) -> list[socket.socket]:
        """The sockets of the open connections (diagnostics, tests)."""
        return [c.transport.get_extra_info("socket") for c in list(self._conns.values())]

    # --- the loop ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = _new_loop()
        self._loop = loop
        loop.set_exception_handler(_loop_error)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failed = exc
            log.exception("serve_http_failed")
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        manager = _Manager(
            self,
            loop=loop,
            keepalive_timeout=self.idle_timeout,  # the reaper enforces it too, and the header timeout
            lingering_time=0,  # a body left unread (401, 413) is not drained: the connection is closed
            access_log=None,  # one line per poll per node; metrics count requests instead
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
        )
        listener = await loop.create_server(
            manager,
            sock=self.socket,
            ssl=self.tls,
            ssl_handshake_timeout=self.header_timeout if self.tls else None,
            backlog=BACKLOG,
        )
        self._ready.set()
        reaper = loop.create_task(self._reap())
        await self._done
        reaper.cancel()
        listener.close()
        self._stopping = True
        self._wake(None)  # every watch answers (the publisher says stopping)
        for c in list(self._conns.values()):
            c.transport.abort()
        self._conns.clear()
        await asyncio.sleep(0.05)  # connection_lost callbacks run; handlers see their connection gone
        tasks = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _begin_stop(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _admit(self, proto: Any, transport: asyncio.Transport) -> None:
        """A new connection (after its TLS handshake): within the limit, or evicting the oldest waiting."""
        self.accepted += 1
        if self._stopping:
            transport.abort()
            return
        if len(self._conns) >= self.max_connections:
            waiting = [c for c in self._conns.values() if c.state == "waiting"]
            if not waiting:
                log.debug("connection_refused_limit")
                transport.abort()
                return
            oldest = min(waiting, key=lambda c: c.opened)
            oldest.state = "evicted"
            oldest.transport.abort()
        self._conns[proto] = _Conn(transport, time.monotonic() + self.header_timeout)

    def _lost(self, proto: Any) -> None:
        c = self._conns.pop(proto, None)
        if c is not None:
            c.gone = True
            if c.waiter is not None and not c.waiter.done():
                c.waiter.set_result(None)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            now = time.monotonic()
            for c in [c for c in self._conns.values() if c.state == "waiting" and now > c.deadline]:
                c.state = "evicted"
                c.transport.abort()

    def _wake(self, nodes: frozenset[str] | None) -> None:
        self._wakes += 1
        # the shared bundle ("") changes only with a new bundle, which wakes every watch (nodes None)
        keys = list(self._waiters) if nodes is None else [n for n in nodes if n in self._waiters]
        for k in keys:
            for f in self._waiters.pop(k, ()):
                if not f.done():
                    f.set_result(None)

    async def _work(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- a request --------------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = self._conns.get(request.protocol)
        if conn is not None:
            conn.state = "busy"
        t0 = time.monotonic()
        try:
            answer = await self._answer(request, conn)
            if conn is None or conn.state != "watch":  # a held watch's time is the wait for a change
                metrics.SERVE_REQUEST_SECONDS.labels(_endpoint(request)).observe(time.monotonic() - t0)
            return _response(answer)
        finally:
            if conn is not None and conn.state != "evicted":
                conn.state = "waiting"
                conn.deadline = time.monotonic() + self.idle_timeout

    async def _answer(self, request: web.BaseRequest, conn: _Conn | None) -> handler.Answer:
        peercert = None
        if self.tls is not None and request.transport is not None:
            peercert = request.transport.get_extra_info("peercert")
        req = handler.Request(
            request.method, request.raw_path, request.headers, request.remote or "", peercert
        )
        wakes = self._wakes  # before the first look at a watched bundle (handle), see _watch
        got = await self._done_with(self.api.handle(req))
        if isinstance(got, handler.ReadBody):
            if request.headers.get("Expect", "").lower() == "100-continue":  # curl's, for larger bodies
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            # most bodies came with their headers: taken at once, without wait_for's task and timer
            body = request.content.read_nowait(got.length)
            if len(body) < got.length:
                try:
                    body += await asyncio.wait_for(
                        request.content.readexactly(got.length - len(body)), self.idle_timeout
                    )
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return handler.Answer(400, b"incomplete body\n", close=True)
            got = await self._done_with(got.then(body))
        if isinstance(got, handler.Watch):
            return await self._watch(got, conn, wakes)
        return _answer_of(got)

    async def _done_with(self, got: handler.Outcome | None) -> handler.Outcome | None:
        """`got`, or what its deferred work gives, run in a worker."""
        while isinstance(got, handler.Defer):
            got = await self._work(got.run)
        return got

    async def _watch(self, w: handler.Watch, conn: _Conn | None, wakes: int) -> handler.Answer:
        """Park until the watched bundle changes (or the deadline, the client gone, serve stopping).

        `handle` looked at the bundle already. Every change calls `wake` after it is made, and a wake
        runs on this loop: one that has not run by the time this watch is parked resolves its waiter,
        and one that ran meanwhile moved `_wakes` from `wakes`, so the watch looks again first."""
        loop = asyncio.get_running_loop()
        if conn is not None:
            conn.state = "watch"
        while True:
            left = w.deadline - time.monotonic()
            if left <= 0 or self._stopping or (conn is not None and conn.gone):
                return _answer_of(await self._done_with(self.api.end(w)))
            if self._wakes != wakes:
                wakes = self._wakes
                got = await self._done_with(self.api.poll(w))  # a bundle not yet rendered: in a worker
                if isinstance(got, handler.Answer):
                    return got
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(w.node, set()).add(waiter)
            if conn is not None:
                conn.waiter = waiter
            timer = loop.call_later(left, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                parked = self._waiters.get(w.node)
                if parked is not None:
                    parked.discard(waiter)
                    if not parked:
                        del self._waiters[w.node]
                if conn is not None:
                    conn.waiter = None


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv, in C) where it is installed, else asyncio's. A fleet's requests are
    small and many: in `make bench`'s rollout row the loop's own work made serve's CPU about 8 % higher
    with asyncio's loop (28-29 % against 26-27 %, two runs each)."""
    return asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()


def _answer_of(got: handler.Outcome | None) -> handler.Answer:
    """The answer a request ends with (anything else here is a FleetAPI bug)."""
    if not isinstance(got, handler.Answer):
        raise TypeError(f"unexpected outcome {got!r}")
    return got


def _endpoint(request: web.BaseRequest) -> str:
    """The request-duration histogram's label: a closed set (no node names)."""
    path = request.path
    if request.method == "POST" and path.startswith("/nodes/"):
        return "report"
    return "bundle" if path == "/manifests" else "other"


def _resolve(f: asyncio.Future[None]) -> None:
    if not f.done():
        f.set_result(None)


def _response(a: handler.Answer) -> web.Response:
    headers = {"Content-Type": a.ctype, "Server": SERVER_HEADER, **a.headers}
    resp = web.Response(status=a.status, body=a.body or None, headers=headers)
    if a.close:
        resp.force_close()
    return resp


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Out of descriptors (asyncio pauses accepting a second) and the like: logged, never fatal."""
    exc = context.get("exception")
    log.warning("serve_http_loop_error", message=context.get("message"), error=repr(exc) if exc else None)
