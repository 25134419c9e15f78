"""A URL serving one bundle of manifests as a source: conditional polling, long-poll watch, last good kept.

The body is one bundle: multi-document YAML, JSON, or a `kind: List`. It is treated exactly like one
file of a directory source (`files.merge_file`): a document that fails validation keeps its last good
version while the others update. Failures of the whole fetch never withdraw anything (DESIGN.md §2):
connect, TLS, timeout, any status but 200/304, an empty body, a body over the size cap or one that
does not parse keep the last good bundle in force (`ok=False` snapshot, one `source_unavailable`
line, one `source_recovered` line when it works again). The one way to withdraw everything is a body
that really lists nothing: an explicitly empty `List` (`{"apiVersion": "v1", "kind": "List",
"items": []}`). An empty or comment-only body is treated as a failure, since truncated uploads and
misconfigured hosts produce exactly that.

Requests are conditional (`If-None-Match` with the last ETag, `If-Modified-Since` with the last
`Last-Modified`), so an unchanged bundle costs a 304 and no parsing. Polls are spaced by `pollInterval`
with ±10 % jitter (a fleet started at once spreads out); errors back off exponentially from 1 s, capped
at max(pollInterval, 60 s).

Watch: a server that answers with `X-Nodeagent-Watch: 1` (our `nodeagent serve`) is then asked
`GET <url>?watch=1&timeout=30&etag=<etag>` (plus `If-None-Match`): it holds the request until the
bundle's ETag differs (200 with the new bundle) or the timeout passes (304). The next watch starts at
once, so a change reaches every node in about a second without polling faster. Plain static hosts never
send the header and are only polled; query parameters are never added to their URLs (a presigned object
store URL would break).

Cache: every good body is written atomically to `<stateDir>/sources/<sha256 of url>.yaml`, with
`<sha>.json` beside it (ETag, Last-Modified, and the earlier bodies needed to rebuild documents kept
from them). An agent started while its source is down loads it, so a node rebooted during an outage
runs what it ran; while the source stays down the snapshot carries a source-level error, which holds
every removal (the planner removes nothing while such an error stands).

Signatures (`publicKeyFile`, nodeagent.sources.signing): a new 200 body must carry a minisign signature made
with the pinned key, from the `X-Nodeagent-Signature` header (`serve --signing-key`) or fetched from
the bundle URL with `.minisig` appended to its path. Unsigned, tampered or wrongly signed is a failure of
the whole fetch like any other: the last good bundle stays, and nothing unverified is cached.

Secrets stay out of logs and errors: the token is never logged, and URLs are shown without their
query string or user info (`display_url`).

This module (with `files`) is the only one that speaks HTTP as a client: `request`, `get_json` and
`post_json` also serve the status reporter and `nodeagent status --server`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import structlog
import yaml

from nodeagent import errors, settings
from nodeagent.k8s import manifests, model, policy
from nodeagent.service import metrics
from nodeagent.sources import files
from nodeagent.sources import snapshot as snap

log = structlog.get_logger(__name__)

MAX_BODY = 16 * 1024 * 1024  # a bundle larger than this is refused (and the last good one kept)
MAX_REDIRECTS = 5
MAX_IDLE = 30.0  # a kept connection idle for longer is closed, not reused (Connections)
WATCH_SECONDS = 30.0  # how long a watch request is held by the server at most
WATCH_HEADER = "X-Nodeagent-Watch"
BACKOFF_START = 1.0
BACKOFF_CAP = 60.0
JITTER = 0.1
CACHE_CHAIN = 8  # at most this many bodies are kept to rebuild documents kept from older bundles


class FetchError(errors.SourceError):
    """One request failed (connect, TLS, timeout, oversized body, bad HTTP); the message says which."""


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
        self._conn = conn
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


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
        raise FetchError(f"{display_url(url)}: HTTP {resp.status} {_short(resp.body)}")
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
) -> None:
    """POST a JSON document; anything but 2xx is a FetchError."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    resp = request(
        "POST", url, headers=hdrs, body=body, timeout=timeout, context=context, connections=connections
    )
    if not 200 <= resp.status < 300:
        raise FetchError(f"{display_url(url)}: HTTP {resp.status} {_short(resp.body)}")


def _short(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()


# --- bodies (pure) -----------------------------------------------------------------------------------


def interpret(
    body: bytes,
    file: str,
    previous: files.FileContent | None,
    allowed_kinds: Collection[str],
    pol: policy.Policy = policy.DEFAULT,
) -> tuple[files.FileContent | None, str]:
    """A fetched body as the content now in force, or (None, why) when the whole body must be ignored.

    Whole-body failures: empty (or only comments and separators), not UTF-8, not YAML/JSON. A body that
    parses but lists nothing counts only when it is an explicit `kind: List`.
    """
    result = manifests.load_text(body, file)
    if any(index is None for _, index in result.failed):
        problem = next((p for p in result.errors if p.document is None or "syntax" in p.message), None)
        why = problem.message if problem is not None else "the body does not parse"
        return None, f"unusable body: {why}"
    if not result.documents and not result.errors and not _explicit_list(body):
        return None, "empty body (only an explicit empty `kind: List` withdraws everything)"
    return files.merge_file(previous, result, file, allowed_kinds, pol), ""


def _explicit_list(body: bytes) -> bool:
    """Whether a body that yielded no objects contains a `kind: List` document (an explicit 'nothing')."""
    try:
        return any(
            isinstance(d, dict) and d.get("kind") == "List"
            for d in yaml.safe_load_all(body.decode("utf-8-sig"))
        )
    except (yaml.YAMLError, UnicodeDecodeError, ValueError):
        return False


def replay(
    bodies: list[bytes], file: str, allowed_kinds: Collection[str], pol: policy.Policy = policy.DEFAULT
) -> files.FileContent | None:
    """Rebuild the content in force from the cached chain of bodies, oldest first."""
    content: files.FileContent | None = None
    for body in bodies:
        new, _ = interpret(body, file, content, allowed_kinds, pol)
        if new is not None:
            content = new
    return content


# --- cache -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cached:
    bodies: list[bytes]  # oldest first; the last one is the newest good body
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: float = 0.0


def cache_paths(state_dir: str, url: str) -> tuple[str, str]:
    key = hashlib.sha256(url.encode()).hexdigest()
    base = os.path.join(state_dir, "sources", key)
    return base + ".yaml", base + ".json"


def _atomic_write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # bundles may hold Secrets
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_cache(state_dir: str, url: str, cached: Cached) -> None:
    """Write the newest body (`.yaml`, readable by `nodeagent validate`) and its metadata (`.json`)."""
    body_path, meta_path = cache_paths(state_dir, url)
    newest = cached.bodies[-1]
    meta = {
        "url": display_url(url),
        "etag": cached.etag,
        "lastModified": cached.last_modified,
        "fetchedAt": cached.fetched_at,
        "sha256": hashlib.sha256(newest).hexdigest(),
        "earlier": [b.decode("utf-8", "replace") for b in cached.bodies[:-1]],
    }
    _atomic_write(body_path, newest)
    _atomic_write(meta_path, json.dumps(meta).encode())


def read_cache(state_dir: str, url: str) -> Cached | None:
    """The cached bundle, or None. Metadata that does not match the body is ignored (body alone used)."""
    body_path, meta_path = cache_paths(state_dir, url)
    try:
        with open(body_path, "rb") as fh:
            body = fh.read()
    except OSError:
        return None
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(body).hexdigest():
        return Cached([body])
    earlier = [str(b).encode() for b in meta.get("earlier") or []]
    etag, modified = meta.get("etag"), meta.get("lastModified")
    return Cached(
        [*earlier, body],
        etag if isinstance(etag, str) else None,
        modified if isinstance(modified, str) else None,
        float(meta.get("fetchedAt") or 0.0),
    )


# --- the source --------------------------------------------------------------------------------------


@dataclass
class _State:
    content: files.FileContent | None = None
    bodies: list[bytes] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    from_cache: bool = False


class HttpSource:
    """One URL as a source; the same interface as `files.DirectorySource`.

    `start()` fetches once (falling back to the cache), then polls or watches on a worker thread;
    `relist()` is one synchronous fetch (one-shot commands); `snapshot()` is None until a good bundle
    was fetched or loaded from the cache; `failure` says why the last fetch failed, or None.
    """

    def __init__(
        self,
        name: str,
        cfg: settings.HttpSource,
        on_change: Callable[[], None],
        *,
        state_dir: str | None,
        watch: bool = True,
        allowed_kinds: Collection[str] = files.DAEMONSET_SOURCE_KINDS,
        max_body: int = MAX_BODY,
        watch_seconds: float = WATCH_SECONDS,
        node: str = "",
    ) -> None:
        self.name = name
        self.cfg = cfg
        self._node = node  # sent as `?node=`: `serve` answers with the revisions its rollout assigns
        self.url = display_url(cfg.url)
        self._on_change = on_change
        self._state_dir = state_dir
        self._watch_enabled = watch
        self._allowed_kinds = frozenset(allowed_kinds)
        self._max_body = max_body
        self._watch_seconds = watch_seconds
        self._log = log.bind(source=name, url=self.url)

        self._lock = threading.Lock()  # guards everything below but the stop machinery
        self._state = _State()
        self._snapshot: snap.Snapshot | None = None
        self._failure: model.Problem | None = None
        self._failing = False
        self._failures = 0
        self._watch_supported = False
        self._cache_tried = False
        self._plain = urlsplit(cfg.url).scheme == "http"
        self._warned: set[str] = set()  # plain-http warnings already given (once each)

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._connections = Connections()  # the worker's polls and watches reuse one connection
        self._apply_lock = threading.Lock()  # one response applied at a time (relist beside the worker)

    # --- public ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Fetch once (or load the cache), then keep polling/watching until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.relist()
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and abort a watch in flight; the last snapshot stays readable."""
        self._stop.set()
        with self._conn_lock:
            conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout + 5)
            self._thread = None
        self._connections.close()

    def snapshot(self) -> snap.Snapshot | None:
        with self._lock:
            return self._snapshot

    @property
    def failure(self) -> model.Problem | None:
        with self._lock:
            return self._failure

    def relist(self) -> None:
        """One synchronous conditional fetch (no watch)."""
        self._fetch(watch=False)

    # --- fetching -------------------------------------------------------------------------------------

    def _headers(self, watch: bool) -> dict[str, str]:
        hdrs = {"Accept": "application/yaml, application/json;q=0.9, */*;q=0.5", **self.cfg.headers}
        hdrs.update(bearer(self.cfg.token_file))
        with self._lock:
            st = self._state
            if st.content is not None:
                if st.etag:
                    hdrs["If-None-Match"] = st.etag
                if st.last_modified:
                    hdrs["If-Modified-Since"] = st.last_modified
        return hdrs

    def _request_url(self) -> str:
        """The URL with `node=NAME` added to its own query when it is a `serve` endpoint (its path ends in
        /manifests): serve answers with this node's revisions. Other URLs are left as they are, so a
        presigned object-store URL keeps its signature."""
        if not self._node or not urlsplit(self.cfg.url).path.endswith("/manifests"):
            return self.cfg.url
        sep = "&" if urlsplit(self.cfg.url).query else "?"
        return f"{self.cfg.url}{sep}node={quote(self._node, safe='')}"

    def _watch_url(self, etag: str | None) -> str:
        url = self._request_url()
        sep = "&" if urlsplit(url).query else "?"
        query = f"watch=1&timeout={self._watch_seconds:g}"
        if etag:
            query += "&etag=" + quote(etag, safe="")
        return f"{url}{sep}{query}"

    def _register(self, conn: http.client.HTTPConnection | None) -> None:
        with self._conn_lock:
            self._conn = conn
        if conn is not None and self._stop.is_set():
            raise FetchError("source stopping")

    def _fetch(self, *, watch: bool) -> str:
        """One request; returns 'changed', 'not_modified' or 'error' (state and logs updated)."""
        started = time.monotonic()
        mode = "watch" if watch else "poll"
        try:
            hdrs = self._headers(watch)
            ctx = None
            if urlsplit(self.cfg.url).scheme == "https":
                ctx = ssl_context(self.cfg.ca_file, self.cfg.client_cert, self.cfg.client_key)
            if self._plain and any(k.lower() == "authorization" for k in hdrs):
                self._warn_plain("token", "a bearer token or Authorization header is sent over plain http")
            url = self._watch_url(hdrs.get("If-None-Match")) if watch else self._request_url()
            timeout = self.cfg.timeout + (self._watch_seconds if watch else 0.0)
            resp = request(
                "GET",
                url,
                headers=hdrs,
                timeout=timeout,
                context=ctx,
                max_body=self._max_body,
                register=self._register,
                connections=self._connections,
            )
        except FetchError as exc:
            metrics.SOURCE_FETCHES.labels(source=self.name, result="error").inc()
            if not self._stop.is_set():
                self._failed(str(exc))
            return "error"
        finally:
            metrics.SOURCE_FETCH_SECONDS.labels(source=self.name, mode=mode).observe(
                time.monotonic() - started
            )
        self._watch_supported = resp.headers.get(WATCH_HEADER.lower(), "") == "1"
        if resp.status == 200 and self.cfg.public_key_file:
            why = self._unsigned(resp, ctx)
            if why:
                metrics.SOURCE_FETCHES.labels(source=self.name, result="invalid").inc()
                if not self._stop.is_set():
                    self._failed(why)
                return "error"
        with self._apply_lock:
            return self._apply(resp)

    def _unsigned(self, resp: Response, ctx: ssl.SSLContext | None) -> str:
        """Why the body is not signed by the pinned key ("" when it is). The signature comes with the
        response (`serve --signing-key` sends it in a header, so it matches this very body) or from
        the bundle URL with `.minisig` appended to its path (minisign's convention, any static host)."""
        from nodeagent.sources import signing  # cryptography is imported only when a key is pinned

        with self._lock:
            if self._state.bodies and self._state.bodies[-1] == resp.body and not self._state.from_cache:
                return ""  # the body in force, verified when it was accepted
        assert self.cfg.public_key_file is not None
        try:
            key = signing.load_public_key(self.cfg.public_key_file)  # re-read: a rotated key applies
        except errors.ConfigError as exc:
            return f"bundle signature: {exc}"
        header = resp.headers.get(signing.HEADER.lower())
        try:
            minisig = signing.from_header(header) if header is not None else self._fetch_signature(ctx)
            signing.verify(resp.body, minisig, key)
        except (signing.SignatureError, FetchError) as exc:
            return f"bundle signature: {exc}"
        return ""

    def _fetch_signature(self, ctx: ssl.SSLContext | None) -> bytes:
        from nodeagent.sources import signing

        parts = urlsplit(self.cfg.url)
        url = parts._replace(path=(parts.path or "/") + signing.SUFFIX).geturl()
        hdrs = {"Accept": "*/*", **self.cfg.headers, **bearer(self.cfg.token_file)}
        resp = request(
            "GET",
            url,
            headers=hdrs,
            timeout=self.cfg.timeout,
            context=ctx,
            max_body=64 * 1024,
            register=self._register,
            connections=self._connections,
        )
        if resp.status == 404:
            raise FetchError(f"unsigned: {display_url(url)} not found (HTTP 404)")
        if resp.status != 200:
            raise FetchError(f"{display_url(url)}: HTTP {resp.status}")
        return resp.body

    def _apply(self, resp: Response) -> str:
        if resp.status == 304:
            with self._lock:
                have = self._state.content is not None
            if have:
                metrics.SOURCE_FETCHES.labels(source=self.name, result="not_modified").inc()
                self._succeeded(None, resp)
                return "not_modified"
            self._failed("HTTP 304 without a previous bundle")
            return "error"
        if resp.status != 200:
            metrics.SOURCE_FETCHES.labels(source=self.name, result="error").inc()
            self._failed(f"HTTP {resp.status} {_short(resp.body)[:100]}".rstrip())
            return "error"
        with self._lock:
            previous = self._state.content
            same = bool(self._state.bodies) and self._state.bodies[-1] == resp.body
        if same and previous is not None:  # a host without ETag support sent the same bytes again
            metrics.SOURCE_FETCHES.labels(source=self.name, result="not_modified").inc()
            self._succeeded(None, resp)
            return "not_modified"
        content, why = interpret(resp.body, self.url, previous, self._allowed_kinds, self.cfg.policy)
        if content is None:
            metrics.SOURCE_FETCHES.labels(source=self.name, result="invalid").inc()
            self._failed(why)
            return "error"
        metrics.SOURCE_FETCHES.labels(source=self.name, result="ok").inc()
        if self._plain and any(d.obj.kind == "Secret" for d in content.documents):
            self._warn_plain("secrets", "the bundle carries Secrets over plain http")
        self._succeeded(content, resp)
        return "changed"

    def _warn_plain(self, what: str, message: str) -> None:
        """Once per source and kind: anyone on the path can read (and change) what plain http carries."""
        if what in self._warned:
            return
        self._warned.add(what)
        self._log.warning("source_plain_http", warning=message + "; use https")

    def _succeeded(self, content: files.FileContent | None, resp: Response) -> None:
        """A 200 with a usable body (`content`), or a 304 (None): publish, cache, log a recovery."""
        with self._lock:
            st = self._state
            recovered = self._failing
            self._failing = False
            self._failures = 0
            self._failure = None
            was_cached = st.from_cache
            st.from_cache = False
            if content is not None:
                previous = st.content
                st.content = content
                chain = [resp.body] if not content.errors else [*st.bodies, resp.body][-CACHE_CHAIN:]
                st.bodies = chain
                st.etag = resp.headers.get("etag")
                st.last_modified = resp.headers.get("last-modified")
                cached = Cached(list(chain), st.etag, st.last_modified, time.time())
            else:
                previous = st.content
                cached = None
        if recovered or was_cached:
            self._log.info("source_recovered")
        if content is not None:
            self._report(previous, content)
            if cached is not None and self._state_dir:
                try:
                    write_cache(self._state_dir, self.cfg.url, cached)
                except OSError as exc:
                    self._log.warning("source_cache_write_failed", error=exc.strerror or str(exc))
        self._publish()

    def _failed(self, why: str) -> None:
        """Keep the last good bundle (or load the cache), log once, set `failure`."""
        with self._lock:
            first = not self._failing
            self._failing = True
            self._failures += 1
            self._failure = model.Problem(
                file=self.url,
                document=None,
                kind="",
                name="",
                path="",
                message=f"source {self.name}: {why}; the last good bundle stays in force",
            )
            need_cache = self._state.content is None and not self._cache_tried
            self._cache_tried = self._cache_tried or need_cache
        if first:
            self._log.warning("source_unavailable", error=why)
        if need_cache:
            self._load_cache()
        self._publish()

    def _load_cache(self) -> None:
        if not self._state_dir:
            return
        cached = read_cache(self._state_dir, self.cfg.url)
        if cached is None:
            return
        content = replay(cached.bodies, self.url, self._allowed_kinds, self.cfg.policy)
        if content is None:
            self._log.warning("source_cache_unusable", file=cache_paths(self._state_dir, self.cfg.url)[0])
            return
        with self._lock:
            if self._state.content is not None:
                return  # a fetch won meanwhile
            self._state = _State(content, list(cached.bodies), cached.etag, cached.last_modified, True)
        metrics.SOURCE_FETCHES.labels(source=self.name, result="cache").inc()
        self._log.warning(
            "source_cache_loaded",
            documents=len(content.documents),
            fetched_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cached.fetched_at)),
        )

    def _publish(self) -> None:
        with self._lock:
            st = self._state
            if st.content is None:
                return  # nothing good yet: `failure` alone tells the merger why
            c = st.content
            failure = (self._failure,) if self._failure is not None else ()
            # From the cache: in force (ok=True, so pods are recreated) but the failure holds removals.
            # Failing after a live fetch: ok=False, the merger keeps the last good snapshot.
            ok = self._failure is None or st.from_cache
            new = snap.Snapshot(self.name, c.documents, (*failure, *c.errors), c.warnings, ok=ok)
            changed = new != self._snapshot
            self._snapshot = new
        if changed:
            try:
                self._on_change()
            except Exception:
                self._log.exception("on_change_failed")

    def _report(self, previous: files.FileContent | None, content: files.FileContent) -> None:
        old_docs = previous.documents if previous is not None else ()
        if content.documents != old_docs:
            self._log.info("source_updated", documents=len(content.documents))
        files.report_problems(self._log, previous, content)

    # --- background -----------------------------------------------------------------------------------

    def _delay(self, outcome: str, watched: bool, took: float) -> float:
        """How long to wait before the next request."""
        poll = self.cfg.poll_interval
        if outcome == "error":
            with self._lock:
                n = self._failures
            base = min(max(poll, BACKOFF_CAP), min(BACKOFF_START, poll) * 2.0 ** max(0, n - 1))
        elif watched and (outcome == "changed" or took >= 1.0):
            return 0.0  # the server held the request: watch again at once
        elif self._watch_enabled and self._watch_supported and not watched:
            return 0.0  # the server just told us it can watch
        else:
            base = poll
        return base * random.uniform(1 - JITTER, 1 + JITTER)

    def _run(self) -> None:
        watched = False
        took = 0.0
        outcome = "changed" if self.snapshot() is not None and self.failure is None else "error"
        while True:
            if self._stop.wait(self._delay(outcome, watched, took)):
                return
            watched = self._watch_enabled and self._watch_supported and self.failure is None
            started = time.monotonic()
            try:
                outcome = self._fetch(watch=watched)
            except Exception:  # a bug must not end the polling for good
                self._log.exception("source_fetch_crashed")
                outcome = "error"
            took = time.monotonic() - started
