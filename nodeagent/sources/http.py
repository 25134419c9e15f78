"""A URL serving one bundle of manifests as a source: conditional polling, long-poll watch, last good kept.

The body is one bundle: multi-document YAML, JSON, or a `kind: List`. It is treated exactly like one
file of a directory source (`files.merge_file`): a document that fails validation keeps its last good
version while the others update. Failures of the whole fetch never withdraw anything (ARCHITECTURE.md §2):
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

The HTTP client itself (`request`, `get_json`, `post_json`, TLS, redirects, kept connections) is
`httpclient`, re-exported here; it also serves the status reporter and `nodeagent status --server`.

Just over 600 lines on purpose: one concept, the HTTP source (fetch, watch, signature, cache, replicas).
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
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import structlog
import yaml

from nodeagent import atomicfile, errors, settings
from nodeagent.k8s import manifests, model, policy
from nodeagent.service import metrics
from nodeagent.sources import files
from nodeagent.sources import snapshot as snap
from nodeagent.sources.httpclient import (  # the HTTP client: re-exported, callers write `http.request`
    MAX_BODY as MAX_BODY,
)
from nodeagent.sources.httpclient import (
    Connections as Connections,
)
from nodeagent.sources.httpclient import (
    FetchError as FetchError,
)
from nodeagent.sources.httpclient import (
    HttpStatusError as HttpStatusError,
)
from nodeagent.sources.httpclient import (
    Response as Response,
)
from nodeagent.sources.httpclient import (
    bearer as bearer,
)
from nodeagent.sources.httpclient import (
    display_url as display_url,
)
from nodeagent.sources.httpclient import (
    get_json as get_json,
)
from nodeagent.sources.httpclient import (
    post_json as post_json,
)
from nodeagent.sources.httpclient import (
    replica_down as replica_down,
)
from nodeagent.sources.httpclient import (
    request as request,
)
from nodeagent.sources.httpclient import (
    short_body as short_body,
)
from nodeagent.sources.httpclient import (
    ssl_context as ssl_context,
)

log = structlog.get_logger(__name__)

WATCH_SECONDS = 30.0  # how long a watch request is held by the server at most
WATCH_HEADER = "X-Nodeagent-Watch"
BACKOFF_START = 1.0
BACKOFF_CAP = 60.0
JITTER = 0.1
CACHE_CHAIN = 8  # at most this many bodies are kept to rebuild documents kept from older bundles


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
    # 0o600: bundles may hold Secrets; fsync: the cache is what a node rebooted during an outage runs
    atomicfile.write(body_path, newest, mode=0o600, durable=True)
    atomicfile.write(meta_path, json.dumps(meta), mode=0o600, durable=True)


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
        self._replicas = cfg.replicas  # replicas of one source: the one in use is `_replicas[_active]`
        self._active = 0
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

    @property
    def base_url(self) -> str:
        """The replica in use (config `url:` may list several)."""
        with self._lock:
            return self._replicas[self._active]

    def _fail_over(self, why: str) -> bool:
        """Move to the next replica after a connection error; False when there is no other one."""
        if len(self._replicas) < 2 or self._stop.is_set():
            return False
        with self._lock:
            old = self._replicas[self._active]
            self._active = (self._active + 1) % len(self._replicas)
            new = self._replicas[self._active]
            quiet = self._failing  # all replicas down: said once by source_unavailable
        metrics.SOURCE_FAILOVERS.labels(source=self.name).inc()
        if not quiet:
            self._log.warning("source_failover", error=why, to=display_url(new), **{"from": display_url(old)})
        return True

    def _request_url(self) -> str:
        """The replica's URL with `node=NAME` added to its own query when it is a `serve` endpoint (its
        path ends in /manifests): serve answers with this node's revisions. Other URLs are left as they
        are, so a presigned object-store URL keeps its signature."""
        base = self.base_url
        if not self._node or not urlsplit(base).path.endswith("/manifests"):
            return base
        sep = "&" if urlsplit(base).query else "?"
        return f"{base}{sep}node={quote(self._node, safe='')}"

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
        """One request; returns 'changed', 'not_modified' or 'error' (state and logs updated).

        A connection error moves to the next replica at once (each is tried once per call): an agent
        whose `serve` died watches another within a request's time, its last good bundle in force.
        """
        for attempt in range(len(self._replicas)):
            try:
                resp, ctx = self._request(watch=watch)
                if resp.status in (502, 503, 504) and attempt + 1 < len(self._replicas):
                    raise HttpStatusError(f"{display_url(resp.url)}: HTTP {resp.status}", resp.status)
                break
            except FetchError as exc:
                metrics.SOURCE_FETCHES.labels(source=self.name, result="error").inc()
                if attempt + 1 < len(self._replicas) and self._fail_over(str(exc)):
                    continue
                if not self._stop.is_set():
                    self._failed(str(exc))
                return "error"
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

    def _request(self, *, watch: bool) -> tuple[Response, ssl.SSLContext | None]:
        """One GET (or watch) to the replica in use; FetchError on any transport failure."""
        started = time.monotonic()
        mode = "watch" if watch else "poll"
        base = self.base_url
        try:
            hdrs = self._headers(watch)
            ctx = None
            if urlsplit(base).scheme == "https":
                ctx = ssl_context(self.cfg.ca_file, self.cfg.client_cert, self.cfg.client_key)
            if urlsplit(base).scheme == "http" and any(k.lower() == "authorization" for k in hdrs):
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
        finally:
            metrics.SOURCE_FETCH_SECONDS.labels(source=self.name, mode=mode).observe(
                time.monotonic() - started
            )
        return resp, ctx

    def _unsigned(self, resp: Response, ctx: ssl.SSLContext | None) -> str:
        """Why the body is not signed by the pinned key ("" when it is). The signature comes with the
        response (`serve --signing-key` sends it in a header, so it matches this very body) or from
        the bundle URL with `.minisig` appended to its path (minisign's convention, any static host)."""
        from nodeagent.sources import signing  # lazy: cryptography is imported only when a key is pinned

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
        from nodeagent.sources import signing  # lazy: as in _unsigned, only when a key is pinned

        parts = urlsplit(self.base_url)
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
            self._failed(f"HTTP {resp.status} {short_body(resp.body)[:100]}".rstrip())
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
        if urlsplit(resp.url).scheme == "http" and any(d.obj.kind == "Secret" for d in content.documents):
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
            self._failure = model.Problem.of_file(
                self.url, f"source {self.name}: {why}; the last good bundle stays in force"
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
            files.notify(self._log, self._on_change)

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
