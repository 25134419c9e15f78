"""nodeagent's HTTP client, on `http.client`: TLS and mutual TLS, a bearer token re-read on every request,
kept-alive connections, redirects followed only within the rules (no https -> http, custom headers and the
token to the first origin only), a body cap, and one deadline for the whole request. Errors are
`FetchError`s whose messages never show a token or a URL's query. Used by the HTTP source, the status
reporter and the CLI's `--server` commands."""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import structlog

from nodeagent import errors

log = structlog.get_logger(__name__)

MAX_BODY = 16 * 1024 * 1024  # a body larger than this is refused
MAX_REDIRECTS = 5
MAX_IDLE = 30.0  # a kept connection idle for longer is closed, not reused (Connections)


class FetchError(errors.SourceError):
    """One request failed (connect, TLS, timeout, oversized body, bad HTTP); the message says which."""


class HttpStatusError(FetchError):
    """The server answered, with a status that is not 2xx (`post_json`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def replica_down(exc: FetchError) -> bool:
    """Whether to try another replica: no answer at all, or a gateway/overload answer (502-504)."""
    return not isinstance(exc, HttpStatusError) or exc.status in (502, 503, 504)


# --- the HTTP client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    url: str  # after redirects


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to log (presigned URLs carry secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


def ssl_context(
    ca_file: str | None = None, client_cert: str | None = None, client_key: str | None = None
) -> ssl.SSLContext:
    """A verifying client context: the system CAs or `ca_file`, and a client certificate for mTLS."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        if client_cert:
            ctx.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise FetchError(f"cannot load TLS files: {reason}") from exc
    return ctx


Origin = tuple[str, str, int | None]  # scheme, host, port


class Connections:
    """Idle connections kept for reuse (HTTP/1.1 keep-alive), one per origin.

    A node's polls, watches and status reports then cost the server one request each instead of a TCP
    handshake, an accept and a handler thread too (measured on `serve`: about 300 µs of CPU per request
    on a new connection, under 100 µs on a kept one). A connection is handed out to one request at a
    time, so concurrent callers simply open another. One idle for longer than `max_idle` is not reused:
    firewalls and NAT drop idle connections silently, and a request sent on one would wait out its
    timeout instead of failing fast.
    """

    def __init__(self, max_idle: float = MAX_IDLE) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Origin, tuple[http.client.HTTPConnection, float]] = {}
        self._max_idle = max_idle

    def take(self, origin: Origin) -> http.client.HTTPConnection | None:
        with self._lock:
            kept = self._idle.pop(origin, None)
        if kept is None:
            return None
        conn, since = kept
        if time.monotonic() - since >= self._max_idle:
            conn.close()
            return None
        return conn

    def give(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            old = self._idle.get(origin)
            self._idle[origin] = (conn, time.monotonic())
        if old is not None:
            old[0].close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle.values()), {}
        for conn, _ in idle:
            conn.close()


# A kept connection the server has meanwhile closed (its idle timeout) fails like this before any
# answer; the request is then sent once more on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    context: ssl.SSLContext | None = None,
    max_body: int = MAX_BODY,
    register: Callable[[http.client.HTTPConnection | None], None] | None = None,
    connections: Connections | None = None,
) -> Response:
    """One HTTP(S) request, following up to 5 redirects; any transport failure is a FetchError.

    `timeout` bounds the whole request, redirects and a slowly dripping body included (a timer shuts
    the socket down when it runs out). `register` is told the live connection (and None when done),
    so another thread can abort a long-poll by shutting its socket down. With `connections`, the
    connection to the first origin is taken from and given back to it (keep-alive).

    Redirects: https -> http is refused (a downgrade would expose the token and the bundle), and the
    caller's headers (the token and any custom `headers:`) are sent to the first origin only.
    """
    sent = dict(headers or {})
    origin = urlsplit(url)[:2]
    deadline = time.monotonic() + timeout
    hops = 0
    while hops <= MAX_REDIRECTS:
        parts = urlsplit(url)
        where = display_url(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise FetchError(f"invalid URL {where}: {exc}") from exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"{where}: timed out after {timeout:g}s")
        key: Origin = (parts.scheme, parts.hostname or "", port)
        pool = connections if parts[:2] == origin else None
        conn = pool.take(key) if pool is not None else None
        reused = conn is not None
        if conn is not None:
            conn.timeout = left
            if conn.sock is not None:
                conn.sock.settimeout(left)
        elif parts.scheme == "https":
            ctx = context if context is not None else ssl_context()
            conn = http.client.HTTPSConnection(parts.hostname or "", port, timeout=left, context=ctx)
        elif parts.scheme == "http":
            conn = http.client.HTTPConnection(parts.hostname or "", port, timeout=left)
        else:
            raise FetchError(f"unsupported URL scheme {parts.scheme!r} in {where}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        keep = False
        timer = _Deadline(conn, left)
        try:
            if register is not None:
                register(conn)
            conn.request(method, target, body=body, headers=sent)
            resp = conn.getresponse()
            location = resp.getheader("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                resp.read(64 * 1024)
                new_url = urljoin(url, location)
                if parts.scheme == "https" and urlsplit(new_url).scheme != "https":
                    raise FetchError(
                        f"{where}: refused a redirect from https to {display_url(new_url)} "
                        "(a downgrade to plain http)"
                    )
                url = new_url
                if resp.status == 303:
                    method, body = "GET", None
                if urlsplit(url)[:2] != origin:
                    # never hand a token or custom headers (any case) to another host
                    sent = {k: v for k, v in sent.items() if k.lower() in _CROSS_ORIGIN_HEADERS}
                hops += 1
                continue
            data = resp.read(max_body + 1)
            if len(data) > max_body:
                raise FetchError(f"{where}: body larger than {max_body} bytes")
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            keep = pool is not None and not resp.will_close and not timer.fired
            if timer.fired:
                raise TimeoutError
            return Response(resp.status, hdrs, data, url)
        except _STALE as exc:
            if timer.fired:
                raise FetchError(f"{where}: timed out after {timeout:g}s") from exc
            if reused:
                continue  # the server closed our idle connection: once more on a new one
            raise FetchError(f"{where}: {exc.strerror or exc}") from exc
        except ssl.SSLError as exc:
            if timer.fired:
                raise FetchError(f"{where}: timed out after {timeout:g}s") from exc
            raise FetchError(f"{where}: TLS error: {exc.reason or exc}") from exc
        except TimeoutError as exc:
            raise FetchError(f"{where}: timed out after {timeout:g}s") from exc
        except OSError as exc:
            if timer.fired:
                raise FetchError(f"{where}: timed out after {timeout:g}s") from exc
            raise FetchError(f"{where}: {exc.strerror or exc}") from exc
        except http.client.HTTPException as exc:
            if timer.fired:
                raise FetchError(f"{where}: timed out after {timeout:g}s") from exc
            raise FetchError(f"{where}: bad HTTP response: {type(exc).__name__}") from exc
        except ValueError as exc:  # http.client refuses a header value with CR/LF: never echo it
            raise FetchError(f"{where}: invalid header value (a line break or control character)") from exc
        finally:
            timer.cancel()
            if register is not None:
                register(None)
            if keep and pool is not None:
                pool.give(key, conn)
            else:
                conn.close()
    raise FetchError(f"{display_url(url)}: more than {MAX_REDIRECTS} redirects")


_CROSS_ORIGIN_HEADERS = frozenset({"accept", "content-type"})  # what may follow a redirect elsewhere


class _Deadline:
    """Shuts a connection's socket down when the whole request's time is up, so a server dripping a
    byte at a time cannot hold a fetch past its `timeout` (socket timeouts bound each read only)."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.fired = False
        self.cancelled = False
        self._conn = conn
        _WATCHDOG.add(self, time.monotonic() + seconds)

    def fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.cancelled = True


class _Watchdog:
    """One thread that fires every request's `_Deadline` in time order. A `threading.Timer` per request
    started and ended a thread for each one: a process of 250 simulated nodes spent a large share of its
    CPU there (the start handshake waits for the new thread to get the interpreter lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, d: _Deadline, at: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._seq), d))
            if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is d:  # sooner than what the thread waits for
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].cancelled:  # ended requests (most of them)
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    left = self._heap[0][0] - time.monotonic()
                    if left <= 0:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(left)
            if not due.cancelled:
                due.fire()


_WATCHDOG = _Watchdog()


def bearer(token_file: str | None) -> dict[str, str]:
    """The Authorization header from a token file, read now (rotated tokens are picked up)."""
    if not token_file:
        return {}
    try:
        with open(token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FetchError(
            f"cannot read tokenFile {token_file}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    if not token:
        raise FetchError(f"tokenFile {token_file} is empty")
    if not all(" " < c < "\x7f" for c in token):
        # never echo it: a header with a line break would be a traceback printing the token
        raise FetchError(
            f"tokenFile {token_file}: the token must be one line of printable ASCII without spaces "
            "(it contains a line break, a space or a control character)"
        )
    return {"Authorization": f"Bearer {token}"}


def get_json(
    url: str,
    *,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Any:
    """GET a JSON document; non-200 or non-JSON is a FetchError."""
    resp = request(
        "GET",
        url,
        headers={"Accept": "application/json", **(headers or {})},
        timeout=timeout,
        context=context,
    )
    if resp.status != 200:
        raise HttpStatusError(f"{display_url(url)}: HTTP {resp.status} {short_body(resp.body)}", resp.status)
    try:
        return json.loads(resp.body)
    except ValueError as exc:
        raise FetchError(f"{display_url(url)}: not JSON: {exc}") from exc


def post_json(
    url: str,
    doc: object,
    *,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    connections: Connections | None = None,
) -> Response:
    """POST a JSON document; anything but 2xx is a FetchError."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    resp = request(
        "POST", url, headers=hdrs, body=body, timeout=timeout, context=context, connections=connections
    )
    if not 200 <= resp.status < 300:
        raise HttpStatusError(f"{display_url(url)}: HTTP {resp.status} {short_body(resp.body)}", resp.status)
    return resp


def short_body(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()
