"""`nodeagent serve`: a directory of manifests as an HTTP source for a fleet, plus the fleet view.

Endpoints (JSON unless said otherwise; with `--token-file`, `--node-tokens` or `--client-ca` every one
but `/healthz` needs a credential, see `Server.identify`):

    GET  /manifests               the bundle: the valid manifests of DIR as multi-document YAML
                                  (each document a JSON object), strong ETag, `X-Nodeagent-Watch: 1`;
                                  `If-None-Match` with the current ETag gives 304.
    GET  /manifests?watch=1&etag=E&timeout=S
                                  watch (long poll): held until the bundle's ETag differs from E (or
                                  from `If-None-Match` when `etag` is absent), then 200 with the new
                                  bundle; after S seconds (default 30, at most 300) 304. A client that
                                  does not know the ETag yet gets the bundle at once.
    GET  /manifests.minisig       with --signing-key: the bundle's minisign signature (also sent with every
                                  bundle as `X-Nodeagent-Signature`, base64); 404 without a key
    POST /nodes/<name>/status     a node's report: {name, labels, taints, status, agentVersion, mode, errors}
                                  where status is the `nodeagent status -o json` document and mode is
                                  "agent" (`run`) or "sync" (one `sync` pass); 204, or 400 naming the bad
                                  field, 413 over --max-report-bytes (before reading it), 429 beyond
                                  --max-nodes, 403 with another node's credential.
    DELETE /nodes/<name>          forget a node (`nodeagent node delete`); 204, 404 if unknown.
    GET  /api/nodes               {"nodes": [{name, ready, labels, taints, lastSeen, ...}]}
    GET  /api/daemonsets          {"daemonSets": [{namespace, name, desiredNumberScheduled, ...}]}
    GET  /api/fleet               both, plus the files of DIR that fail validation (`errors`)
    GET  /                        the same tables as an HTML page that refreshes itself (fleet/page.py)
    GET  /nodes/<name>            a node's page: labels, taints, conditions, pods, recent events
    GET  /daemonsets/<ns>/<name>  a DaemonSet's page: counters, rollout, each node's pods
    GET  /api/events              {"kind": "EventList", "items": [...]}: the nodes' events, newest first
    GET  /metrics                 Prometheus text format, with the fleet's kube-state-metrics series
    GET  /healthz                 "ok" while a bundle is published

Publishing follows the agent's own rules (ARCHITECTURE.md §2): DIR is watched (watchdog plus a periodic
relist, `files.DirectorySource`); a file that fails to parse keeps its previous good documents, a
document that fails validation keeps its previous version, and both show as errors in the fleet view.
An unreadable DIR keeps the last bundle (or, before the first listing, answers 503, which agents treat
as "source down"). Deleting files is how manifests are withdrawn; an empty DIR publishes an explicit
empty `List`, which withdraws everything.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import json
import os
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import server as http_server
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
import yaml

import nodeagent
from nodeagent.agent import events
from nodeagent.fleet import annotations as rollout_annotations
from nodeagent.fleet import controller, page, replicas, store
from nodeagent.fleet import view as fleet
from nodeagent.k8s import manifests, model
from nodeagent.k8s.node import dns1123_subdomain_error as node_name_error
from nodeagent.service import kubestate, metrics
from nodeagent.sources import files

log = structlog.get_logger(__name__)

MAX_REPORT = 1024 * 1024  # a node's report (a few hundred bytes per pod): larger is answered 413
SIGNATURE_HEADER = "X-Nodeagent-Signature"  # base64 of the bundle's .minisig (signing.HEADER)
MAX_WATCH = 300.0
NODE_BUNDLE_CACHE = 256  # distinct per-node bundle views kept (a rollout has about two per generation)
MAX_CONNECTIONS = 10_000  # and never more than the open-file limit allows (connection_limit)
FD_RESERVE = 64  # file descriptors kept for everything but connections (files, inotify, TLS, logs)
HEADER_TIMEOUT = 10.0  # a new connection must deliver its first request's headers within this
IDLE_TIMEOUT = 60.0  # a kept-alive connection must deliver its next request within this
SYNC_GAP = 0.2  # the rollout controller runs at most this often (reports are coalesced)
WATCH_CHECK = 5.0  # how often a held watch looks whether its client is still there
EMPTY_LIST = {"apiVersion": "v1", "kind": "List", "items": []}


# --- the bundle ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    body: bytes
    etag: str  # strong, quoted
    objects: int
    daemonsets: tuple[tuple[str, str], ...]
    errors: tuple[model.Problem, ...]
    published_at: float
    signature: bytes = b""  # the .minisig of `body` when serve signs (--signing-key)
    raw_objects: tuple[object, ...] = ()  # what `body` renders: the rollout controller rewrites per node


def _raw_documents(data: bytes) -> list[object] | None:
    """The raw documents of a file, aligned with manifests.load_text's indexes; None if unreadable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except (ValueError, RecursionError):
            pass
    try:
        return list(yaml.load_all(text, Loader=manifests.LOADER))  # the agents' YAML dialect
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class _File:
    content: files.FileContent
    raw: Mapping[tuple[str, str, str], object]  # object key -> the raw object published for it


def publish_file(
    previous: _File | None,
    data: bytes,
    path: str,
    allowed_kinds: frozenset[str] = files.DAEMONSET_SOURCE_KINDS,
) -> _File:
    """One file's contribution (pure): the documents in force and the raw object for each.

    The agent-side rules (files.merge_file) decide what is in force; valid documents are published
    from this version of the file, kept ones from the raw object published before.
    """
    result = rollout_annotations.check(manifests.load_text(data, path))  # nodeagent.io/* rollout annotations
    if not data:  # a write in progress (`>` truncates first), not a withdrawal: as the directory source
        message = f"{path} is empty; its last good content stays in force (delete the file to withdraw it)"
        result = model.LoadResult(
            errors=(model.Problem(path, None, "", "", "", message),), failed=((path, None),)
        )
    content = files.merge_file(previous.content if previous else None, result, path, allowed_kinds)
    raws = _raw_documents(data) or []
    fresh: dict[tuple[str, str, str], object] = {}
    for i, raw in enumerate(raws):
        objs = [d.obj for d in result.documents if d.index == i]
        if not objs:
            continue
        items = raw.get("items") if isinstance(raw, dict) and raw.get("kind") == "List" else [raw]
        if isinstance(items, list):
            for obj, item in zip(objs, [x for x in items if x is not None], strict=False):
                fresh[model.object_key(obj)] = item
    old_raw = previous.raw if previous else {}
    raw_map: dict[tuple[str, str, str], object] = {}
    for d in content.documents:
        key = model.object_key(d.obj)
        found = fresh.get(key) if d.index not in content.kept else None
        if found is None:
            found = old_raw.get(key)
        if found is not None:
            raw_map[key] = found
    return _File(content, raw_map)


def render_bundle(objects: list[object]) -> bytes:
    """Multi-document YAML whose documents are JSON objects (YAML reads JSON; no dialect surprises)."""
    if not objects:
        return (json.dumps(EMPTY_LIST) + "\n").encode()
    head = f"# nodeagent serve bundle: {len(objects)} object(s)\n"
    return (
        head + "\n---\n".join(json.dumps(o, sort_keys=True, default=str) for o in objects) + "\n"
    ).encode()


class Publisher:
    """Keeps the bundle of DIR current; `wait_change` is the watch primitive."""

    def __init__(
        self,
        directory: str,
        relist_interval: float = 30.0,
        signer: Callable[[bytes], bytes] | None = None,
        on_publish: Callable[[], None] | None = None,
    ) -> None:
        self.directory = os.path.abspath(directory)
        self._signer = signer
        self._on_publish = on_publish
        self._files: dict[str, _File] = {}
        self._scan_lock = threading.Lock()
        self._cond = threading.Condition()
        self._bundle: Bundle | None = None
        self._stopping = False
        self._failure: str | None = None
        self._source = files.DirectorySource(
            "serve", self.directory, self.scan, relist_interval=relist_interval, watch=True
        )

    def start(self) -> None:
        self.scan()
        self._source.start()  # watchdog + relist; its on_change triggers our scan

    def stop(self) -> None:
        self._source.stop()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def stopping(self) -> bool:
        return self._stopping

    def bundle(self) -> Bundle | None:
        with self._cond:
            return self._bundle

    def scan(self) -> None:
        """Re-read DIR and publish a new bundle if anything in force changed."""
        with self._scan_lock:
            try:
                names = sorted(os.listdir(self.directory))
            except OSError as exc:
                if self._failure is None:
                    log.warning("serve_directory_unreadable", directory=self.directory, error=exc.strerror)
                self._failure = f"cannot read {self.directory}: {exc.strerror or exc}"
                return
            if self._failure is not None:
                log.info("serve_directory_readable", directory=self.directory)
            self._failure = None
            new_files: dict[str, _File] = {}
            for name in names:
                full = os.path.join(self.directory, name)
                if not manifests.is_manifest_filename(name) or os.path.isdir(full):
                    continue
                try:
                    data = manifests.read_manifest_file(full)  # never blocks on a FIFO
                except OSError as exc:
                    old = self._files.get(name)
                    problem = model.Problem(full, None, "", "", "", f"cannot read {full}: {exc.strerror}")
                    keep = old.content if old else files.FileContent()
                    new_files[name] = _File(
                        files.FileContent(keep.documents, (problem,), keep.warnings, (None,)),
                        old.raw if old else {},
                    )
                    continue
                new_files[name] = publish_file(self._files.get(name), data, full)
            self._files = new_files
            self._publish()

    def _publish(self) -> None:
        objects: list[object] = []
        daemonsets: list[tuple[str, str]] = []
        errors: list[model.Problem] = []
        seen: set[tuple[str, str, str]] = set()
        for _, f in sorted(self._files.items()):
            errors.extend(f.content.errors)
            for d in f.content.documents:
                key = model.object_key(d.obj)
                if key in seen or key not in f.raw:
                    continue  # the agents would report the duplicate; publish the first only
                seen.add(key)
                objects.append(f.raw[key])
                if isinstance(d.obj, model.DaemonSet):
                    daemonsets.append((d.obj.metadata.namespace, d.obj.metadata.name))
        body = render_bundle(objects)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        signature = b""
        if self._signer is not None:  # outside the lock (scans are serialised): watchers are not held up
            current = self.bundle()
            same = current is not None and current.etag == etag
            signature = current.signature if current is not None and same else self._signer(body)
        with self._cond:
            old = self._bundle
            if old is not None and old.etag == etag and old.errors == tuple(errors):
                return
            self._bundle = Bundle(
                body,
                etag,
                len(objects),
                tuple(sorted(daemonsets)),
                tuple(errors),
                time.time(),
                signature,
                tuple(objects),
            )
            self._cond.notify_all()
        if self._on_publish is not None:
            self._on_publish()
        if old is None or old.etag != etag:
            log.info("bundle_published", objects=len(objects), etag=etag, errors=len(errors))
        for p in errors:
            if old is None or p not in old.errors:
                log.warning(
                    "manifest_invalid", file=p.file, document=p.document, path=p.path, message=p.message
                )

    def wait_change(self, etag: str | None, timeout: float) -> Bundle | None:
        """The bundle once its ETag differs from `etag`, or the current one after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stopping:
                b = self._bundle
                if b is not None and b.etag != etag:
                    return b
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._bundle


# --- the server ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeConfig:
    directory: str
    listen: str = "127.0.0.1:8080"
    tls_cert: str | None = None
    tls_key: str | None = None
    token_file: str | None = None  # the shared token (the simple mode): may post any node's status
    client_ca: str | None = None  # mTLS; the certificate's CN is the node it may post for
    node_tokens: str | None = None  # a directory: one token file per node, named after the node
    grace: float = fleet.DEFAULT_GRACE
    relist_interval: float = 30.0
    signing_key: str | None = None  # minisign secret key: every bundle is signed
    max_report: int = MAX_REPORT
    max_nodes: int = fleet.DEFAULT_MAX_NODES
    node_expiry: float = fleet.DEFAULT_EXPIRY
    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    state_dir: str = (
        ":memory:"  # the rollout store (fleet/store.py); the CLI defaults it to DEFAULT_STATE_DIR
    )
    store_url: str | None = None  # --store: sqlite:///DIR (default: state_dir) or postgresql:// (replicas.py)
    replica_id: str | None = None  # --replica-id: this replica's name among several (default host:pid)


@dataclass(frozen=True)
class Identity:
    """Who a request is. `nodes` is the set of node names it may post status for (None: any)."""

    name: str  # for logs: "anonymous", "shared-token", "node:NAME"
    nodes: frozenset[str] | None


def unprotected_warning(cfg: ServeConfig, host: str, url: str) -> str:
    """Non-empty when anyone who can reach a non-loopback address may read and post everything."""
    if cfg.token_file or cfg.node_tokens or cfg.client_ca or is_loopback(host):
        return ""
    return (
        f"serving on {url} WITHOUT AUTHENTICATION: anyone who can reach it can read every "
        "manifest (Secrets included) and post or delete any node's status; use --token-file, "
        "--node-tokens or --client-ca"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


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


class _HTTPServer(TrackingHTTPServer):
    # A fleet reconnects its watches at once after every change: with socketserver's default backlog
    # of 5 the kernel drops most of those SYNs, and each dropped one costs the node a 1 s retransmit.
    request_queue_size = 1024
    app: Server

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshakes happen here, on the request's own thread, so a slow client blocks no one."""
        conn = self.connection(request)
        ctx = self.app.tls_context
        if ctx is not None:
            request.settimeout(self.header_timeout)
            try:
                request = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("tls_handshake_failed", client=client_address[0], error=str(exc))
                with contextlib.suppress(OSError):
                    request.close()
                return
            if conn is not None:
                conn.sock = request
        _current.conn = conn
        try:
            super().finish_request(request, client_address)
        finally:
            _current.conn = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request_failed", client=client_address[0], exc_info=True)


class Server:
    """The serve process in one object (tests run it in-process on an ephemeral port)."""

    def __init__(self, cfg: ServeConfig, clock: Any = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        signer: Callable[[bytes], bytes] | None = None
        if cfg.signing_key:
            from nodeagent.sources import signing  # lazy: cryptography only with a signing key

            key = signing.load_secret_key(cfg.signing_key)  # ConfigError names the file
            signer = lambda body: signing.sign(body, key, file_name="manifests")  # noqa: E731
        self.signer = signer
        self.fleet = fleet.Fleet(grace=cfg.grace, expiry=cfg.node_expiry, max_nodes=cfg.max_nodes)
        self.fleet_lock = threading.Lock()
        self.controller, self.replication = replicas.make_controller(  # replication: postgresql:// only
            cfg.store_url, cfg.state_dir, lambda: (self.fleet, self.fleet_lock), clock=clock, grace=cfg.grace,
            replica_id=cfg.replica_id,
        )  # fmt: skip
        self._signatures: dict[str, bytes] = {}
        # per-node bundles by (bundle ETag, controller.node_view): every watch wakes on a controller change
        self._node_bundles: dict[tuple[str, tuple[object, ...]], tuple[bytes, str, bytes]] = {}
        self._node_bundles_lock = threading.Lock()
        self._ticker_stop = threading.Event()
        self._wake = threading.Event()
        self._synced_etag = ""
        self.publisher = Publisher(cfg.directory, cfg.relist_interval, signer, self.sync_rollouts)
        self._node_tokens: tuple[tuple[int, float], dict[bytes, str]] | None = None
        self._node_tokens_lock = threading.Lock()
        self.tls_context: ssl.SSLContext | None = None
        if cfg.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            if cfg.client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cfg.client_ca)
            self.tls_context = ctx
        elif cfg.client_ca:
            raise ValueError("--client-ca needs --tls-cert and --tls-key")
        if cfg.node_tokens and not os.path.isdir(cfg.node_tokens):
            raise ValueError(f"--node-tokens {cfg.node_tokens}: not a directory")
        host, port = split_listen(cfg.listen)
        self.host = host
        self.httpd = _HTTPServer(
            (host, port),
            _Handler,
            max_connections=connection_limit(cfg.max_connections),
            header_timeout=cfg.header_timeout,
            idle_timeout=cfg.idle_timeout,
        )
        self.httpd.app = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        scheme = "https" if self.tls_context else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    def sync_rollouts(self) -> None:
        """Run the rollout controller over the current bundle and reports (fleet/controller.py)."""
        b = self.publisher.bundle() if hasattr(self, "publisher") else None
        if b is None:
            return
        now = self.clock()
        with self.fleet_lock:
            reports = dict(self.fleet.nodes)
        self.controller.sync(b.raw_objects, reports, lambda r: self.fleet.ready(r, now))
        if b.etag != self._synced_etag:  # a new bundle: every node's bundle may differ (watches wake)
            self._synced_etag = b.etag
            with self.controller.cond:
                self.controller.cond.notify_all()

    def request_sync(self) -> None:
        """Have the rollout controller run soon (within SYNC_GAP): reports arrive far more often than
        a pass over the fleet is worth running (16 ms for 1000 nodes), so they are coalesced."""
        self._wake.set()

    def _tick(self) -> None:
        """Runs the controller when asked (a changed report) and at least every second (deadlines,
        nodes going NotReady), never more often than every SYNC_GAP."""
        while not self._ticker_stop.is_set():
            self._wake.wait(1.0)
            if self._ticker_stop.is_set():
                break
            self._wake.clear()
            try:
                self.sync_rollouts()
            except Exception:
                log.exception("rollout_sync_failed")
            self._ticker_stop.wait(SYNC_GAP)

    def node_bundle(self, node: str) -> tuple[bytes, str, bytes] | None:
        """(body, ETag, signature) of the bundle as `node` sees it: each DaemonSet at its revision."""
        b = self.publisher.bundle()
        if b is None:
            return None
        view = (b.etag, self.controller.node_view(node))
        with self._node_bundles_lock:
            cached = self._node_bundles.get(view)
        if cached is not None:
            return cached
        got = self._render_node_bundle(b, node)
        with self._node_bundles_lock:
            if len(self._node_bundles) > NODE_BUNDLE_CACHE:
                self._node_bundles.clear()
            self._node_bundles[view] = got
        return got

    def _render_node_bundle(self, b: Bundle, node: str) -> tuple[bytes, str, bytes]:
        body = render_bundle(self.controller.node_objects(b.raw_objects, node))
        if body == b.body:
            return b.body, b.etag, b.signature
        etag = self.controller.etag(body)
        signature = b""
        if self.signer is not None:
            signature = self._signatures.get(etag) or self.signer(body)
            if len(self._signatures) > 1000:
                self._signatures.clear()
            self._signatures[etag] = signature
        return body, etag, signature

    def start(self) -> None:
        if self.replication is not None:
            self.replication.start()
        self.publisher.start()
        threading.Thread(target=self._tick, name="serve-rollouts", daemon=True).start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="serve-http", daemon=True
        )
        self._thread.start()
        log.info(
            "serve_started",
            url=self.url,
            directory=self.publisher.directory,
            version=nodeagent.__version__,
            max_connections=self.httpd.max_connections,
        )
        if self.unprotected_warning():
            log.warning("serve_unauthenticated", warning=self.unprotected_warning())

    def unprotected_warning(self) -> str:
        return unprotected_warning(self.cfg, self.host, self.url)

    def stop(self) -> None:
        if self.replication is not None:
            self.replication.stop()
        self._ticker_stop.set()
        self._wake.set()
        with self.controller.cond:
            self.controller.cond.notify_all()
        self.publisher.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.drop_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def authorized(self, header: str | None) -> bool:
        """Whether the Authorization header gets in (any identity); see `identify`."""
        return self.identify(header, None) is not None

    def identify(self, header: str | None, cert: Mapping[str, Any] | None) -> Identity | None:
        """Who the request is, or None (401). Token files are re-read as they change (rotation needs
        no restart).

        - no --token-file, --node-tokens or --client-ca: everyone, for everything (loopback use);
        - the shared token (--token-file): any node, in every mode (the simple mode, and the
          operators' credential for `node delete`);
        - a per-node token (a file in --node-tokens named after the node): that node only;
        - with --client-ca, the verified client certificate's CN names the node (its only node unless
          it also presents the shared token); a per-node token must then name the same node.
        """
        cfg = self.cfg
        cn = _common_name(cert) if cfg.client_ca else None
        if cfg.client_ca and not cn:
            return None
        presented = ""
        if header and header.startswith("Bearer "):
            presented = header[len("Bearer ") :].strip()
        nodes: set[str] | None = None
        if cn:
            nodes = {cn}
        if cfg.token_file or cfg.node_tokens:
            if not presented:
                return None
            if cfg.token_file and self._shared_token_matches(presented):
                return Identity("shared-token", None)
            owner = self._node_token_owner(presented) if cfg.node_tokens else None
            if owner is None:
                return None
            if nodes is not None and owner not in nodes:
                return None  # the certificate and the token name different nodes
            return Identity(f"node:{owner}", frozenset({owner}))
        if cn:
            return Identity(f"node:{cn}", frozenset({cn}))
        return Identity("anonymous", None)

    def _shared_token_matches(self, presented: str) -> bool:
        assert self.cfg.token_file
        try:
            with open(self.cfg.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            log.error("serve_token_unreadable", file=self.cfg.token_file)
            return False
        return bool(token) and hmac.compare_digest(presented.encode(), token.encode())

    def _node_token_owner(self, presented: str) -> str | None:
        """The node whose token file holds `presented`; the directory is re-read when it changes (and
        at least every 5 s, as a file rewritten in place does not change the directory)."""
        directory = self.cfg.node_tokens
        assert directory
        try:
            st = os.stat(directory)
        except OSError:
            log.error("serve_node_tokens_unreadable", directory=directory)
            return None
        now = time.monotonic()
        with self._node_tokens_lock:
            cached = self._node_tokens
            if cached is None or cached[0][0] != st.st_mtime_ns or now - cached[0][1] > 5.0:
                cached = ((st.st_mtime_ns, now), _read_node_tokens(directory))
                self._node_tokens = cached
        digest = hashlib.sha256(presented.encode()).digest()
        return cached[1].get(digest)

    def delete_node(self, name: str) -> bool:
        with self.fleet_lock:
            gone = self.fleet.delete(name)
        if gone and self.replication is not None:
            self.replication.deleted(name)  # the other replicas forget it too
        return gone

    def fleet_json(self) -> dict[str, Any]:
        now = self.clock()
        b = self.publisher.bundle()
        with self.fleet_lock:
            for name in self.fleet.expire(now):
                log.info("node_expired", node=name)
            nodes = self.fleet.nodes_json(now)
            daemonsets = self.fleet.daemonsets_json(now, b.daemonsets if b else ())
        for d in daemonsets:
            d.update(self.controller.summary(store.Key(store.KIND_DAEMONSET, d["namespace"], d["name"])))
        problems = list(b.errors if b else ())
        if self.publisher.failure:
            failure = model.Problem(self.publisher.directory, None, "", "", "", self.publisher.failure)
            problems.insert(0, failure)
        errs = [p.to_json() for p in problems]
        bundle = {"etag": b.etag, "objects": b.objects} if b else None
        return {"daemonSets": daemonsets, "nodes": nodes, "errors": errs, "bundle": bundle}

    def drill_down(self, parts: list[str]) -> str | None:
        """The page of `/nodes/NAME` or `/daemonsets/NS/NAME` (fleet/page.py), None when unknown."""
        now = self.clock()
        if len(parts) == 2 and parts[0] == "nodes":
            with self.fleet_lock:
                r = self.fleet.nodes.get(parts[1])
                ready = r is not None and self.fleet.ready(r, now)
            return None if r is None else page.render_node(r, ready, now)
        if len(parts) == 3 and parts[0] == "daemonsets":
            d = next(
                (d for d in self.fleet_json()["daemonSets"] if [d["namespace"], d["name"]] == parts[1:]), None
            )
            if d is None:
                return None
            with self.fleet_lock:
                nodes = [(r, self.fleet.ready(r, now)) for _, r in sorted(self.fleet.nodes.items())]
            return page.render_daemonset(d, nodes)
        return None


def _rollout_view(r: fleet.NodeReport) -> tuple[object, ...]:
    """What the rollout controller reads of a report: a heartbeat that changes none of it costs no pass."""
    return (r.labels, r.taints, r.daemonsets)


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


def _read_node_tokens(directory: str) -> dict[bytes, str]:
    """sha256(token) -> node name, for every regular file of `directory` (dot-files skipped)."""
    out: dict[bytes, str] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        if name.startswith("."):
            continue
        try:
            data = manifests.read_manifest_file(os.path.join(directory, name), 64 * 1024)
            token = data.decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue  # a FIFO or unreadable file names no node
        if token:
            out[hashlib.sha256(token.encode()).digest()] = name
    return out


def _common_name(cert: Mapping[str, Any] | None) -> str:
    """The subject CN of a verified peer certificate (`SSLSocket.getpeercert()`), or ""."""
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


class _Handler(http_server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"nodeagent-serve/{nodeagent.__version__}"
    timeout = IDLE_TIMEOUT  # each read; the reaper bounds the whole wait for a request
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between
    _conn: _Conn | None = None
    _first = True
    identity: Identity | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access logs would be one line per poll per node; metrics count requests instead

    def setup(self) -> None:
        self._conn = getattr(_current, "conn", None)
        super().setup()

    def handle_one_request(self) -> None:
        c = self._conn
        if c is not None:
            if c.state == "evicted":
                self.close_connection = True
                return
            wait = self.server.header_timeout if self._first else self.server.idle_timeout
            c.deadline = time.monotonic() + wait
            c.state = "waiting"
        self._first = False
        super().handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        c = self._conn
        if ok and c is not None and c.state == "waiting":
            c.state = "busy"
        return ok

    # --- dispatch ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        if parts.path == "/healthz":
            ok = app.publisher.bundle() is not None
            text = "ok\n" if ok else "no bundle yet\n"
            text += app.replication.healthz() if app.replication is not None else ""  # who leads
            self._send(200 if ok else 503, text.encode(), "text/plain")
            return
        if not self._auth():
            return
        if parts.path == "/manifests":
            self._manifests(parse_qs(parts.query))
        elif parts.path == "/manifests.minisig":
            self._signature()
        elif parts.path == "/api/fleet":
            self._json(app.fleet_json())
        elif parts.path == "/api/nodes":
            self._json({"nodes": app.fleet_json()["nodes"]})
        elif parts.path == "/api/daemonsets":
            self._json({"daemonSets": app.fleet_json()["daemonSets"]})
        elif parts.path.startswith("/api/rollouts/"):
            self._rollout("GET", parts.path)
        elif parts.path == "/api/events":
            with app.fleet_lock:
                reports = [(r.name, r.events) for r in app.fleet.nodes.values()]
            self._json({"kind": "EventList", "items": events.fleet_events(reports)})
        elif parts.path == "/metrics":
            with app.fleet_lock:
                now = app.clock()
                ready, not_ready = app.fleet.counts(now)
                statuses = [(r.status_doc(), app.fleet.ready(r, now)) for r in app.fleet.nodes.values()]
            metrics.set_nodes(ready, not_ready)
            doc = app.fleet_json()  # kube-state-metrics series: the fleet's sums (kubestate.py)
            body = kubestate.fleet_exposition(statuses, doc["daemonSets"], doc["nodes"])
            body += app.controller.exposition().encode()
            body += app.replication.exposition() if app.replication is not None else b""
            self._send(200, body, metrics.CONTENT_TYPE)
        elif parts.path in ("/", "/index.html"):
            self._send(200, page.render_fleet(app.fleet_json()).encode(), "text/html; charset=utf-8")
        elif parts.path.startswith(("/nodes/", "/daemonsets/")):
            shown = app.drill_down([unquote(p) for p in parts.path.strip("/").split("/")])
            if shown is None:
                self._send(404, b"not found\n", "text/plain")
            else:
                self._send(200, shown.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_HEAD(self) -> None:
        self._send(405, b"", "text/plain")

    def do_POST(self) -> None:
        app = self.server.app
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if not self._auth():
            self.close_connection = True  # the body was not read
            return
        self.close_connection = True  # until the body is read
        if parts[:2] == ["api", "rollouts"]:
            if self.identity is not None and self.identity.nodes is not None:  # a node may not steer rollouts
                self._send(403, b"forbidden: a node credential cannot act on rollouts\n", "text/plain")
                return
            self._rollout("POST", urlsplit(self.path).path)
            return
        if len(parts) != 3 or parts[0] != "nodes" or parts[2] != "status" or not parts[1]:
            self._send(404, b"not found\n", "text/plain")
            return
        name = parts[1]
        if node_name_error(name):
            self._send(400, f"node name: {node_name_error(name)}\n".encode(), "text/plain")
            return
        if not self._may_act_for(name):
            return
        limit = app.cfg.max_report
        keep_alive = self.headers.get("Connection", "").lower() != "close"
        if self.headers.get("Transfer-Encoding"):
            self._send(411, b"Content-Length required (no chunked reports)\n", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length > limit:  # answered before reading the body; the connection is not reused
            self._send(413, f"report larger than {limit} bytes\n".encode(), "text/plain")
            return
        if length <= 0:
            self._send(400, b"bad Content-Length\n", "text/plain")
            return
        body = self.rfile.read(length)
        self.close_connection = not keep_alive or len(body) < length
        try:
            doc = json.loads(body)
            report = fleet.parse_report(doc, name, app.clock())
        except (ValueError, RecursionError, fleet.ReportError) as exc:
            why = str(exc) if isinstance(exc, fleet.ReportError) else "the body is not JSON"
            self._send(400, f"bad report: {why}\n".encode(), "text/plain")
            return
        with app.fleet_lock:
            prev = app.fleet.nodes.get(name)
            first = prev is None
            changed = (
                prev is None
                or not app.fleet.ready(prev, report.received_at)
                or _rollout_view(prev) != (_rollout_view(report))
            )
            recorded = app.fleet.report(report)
        if not recorded:
            log.warning("node_refused_fleet_full", node=name, max_nodes=app.cfg.max_nodes)
            self._send(
                429,
                b"too many nodes (--max-nodes); remove gone ones with `nodeagent node delete`\n",
                "text/plain",
            )
            return
        if first:
            log.info("node_registered", node=name, client=self.client_address[0])
        if app.replication is not None:  # shared with the other replicas
            app.replication.reported(name, body.decode("utf-8", "replace"), report.received_at)
        self._send(204, b"", "text/plain")
        if changed:  # a wave is handed out as soon as the last one is available (within SYNC_GAP)
            app.request_sync()

    def do_DELETE(self) -> None:
        """`DELETE /nodes/<name>`: forget a node (`nodeagent node delete`)."""
        app = self.server.app
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if not self._auth():
            return
        if len(parts) != 2 or parts[0] != "nodes" or not parts[1]:
            self._send(404, b"not found\n", "text/plain")
            return
        if not self._may_act_for(parts[1]):
            return
        if app.delete_node(parts[1]):
            log.info("node_deleted", node=parts[1], by=self.identity.name if self.identity else "")
            self._send(204, b"", "text/plain")
        else:
            self._send(404, b"no such node\n", "text/plain")

    # --- helpers ----------------------------------------------------------------------------------

    def _auth(self) -> bool:
        cert = None
        if isinstance(self.connection, ssl.SSLSocket):
            with contextlib.suppress(ValueError, ssl.SSLError):
                cert = self.connection.getpeercert()
        self.identity = self.server.app.identify(self.headers.get("Authorization"), cert)
        if self.identity is not None:
            return True
        self._send(401, b"unauthorized\n", "text/plain", {"WWW-Authenticate": "Bearer"})
        return False

    def _may_act_for(self, node: str) -> bool:
        """A node identity may post (or delete) only its own status: 403 otherwise."""
        ident = self.identity
        if ident is None or ident.nodes is None or node in ident.nodes:
            return True
        log.warning("node_identity_mismatch", node=node, identity=ident.name, client=self.client_address[0])
        self._send(403, b"forbidden: this credential belongs to another node\n", "text/plain")
        return False

    def _rollout(self, method: str, path: str) -> None:
        """/api/rollouts/NS/NAME[/history|/plan] (GET) and /pause|/resume|/restart|/undo (POST)."""
        ctl = self.server.app.controller
        parts = [unquote(p) for p in path.strip("/").split("/")][2:]
        if len(parts) not in (2, 3):
            self._send(404, b"not found\n", "text/plain")
            return
        key = store.Key(store.KIND_DAEMONSET, parts[0], parts[1])
        action = parts[2] if len(parts) == 3 else ""
        try:
            if method == "GET" and action in ("", "history", "plan"):
                get = {"": ctl.document, "history": ctl.history, "plan": ctl.plan_waves}[action]
                self._json(get(key))
                return
            if method != "POST" or action not in ("pause", "resume", "restart", "undo"):
                self._send(404, b"not found\n", "text/plain")
                return
            body: dict[str, Any] = {}
            length = int(self.headers.get("Content-Length") or "0")
            if 0 < length <= 65536:
                raw = json.loads(self.rfile.read(length))
                body = raw if isinstance(raw, dict) else {}
            elif length == 0:
                self.close_connection = False
            if action in ("pause", "resume"):
                ctl.pause(key, action == "pause")
            elif action == "restart":
                ctl.restart(key)
            else:
                to = body.get("toRevision") or 0
                if isinstance(to, bool) or not isinstance(to, int) or to < 0:
                    raise controller.RolloutError("toRevision: must be a revision number")
                ctl.undo(key, to)
            log.info("rollout_action", action=action, namespace=key.namespace, daemonset=key.name)
            self.server.app.sync_rollouts()
            self._json(ctl.document(key))
        except KeyError:
            self._send(404, f"no DaemonSet {key.namespace}/{key.name}\n".encode(), "text/plain")
        except (controller.RolloutError, ValueError) as exc:
            self._send(400, f"{exc}\n".encode(), "text/plain")

    def _watch_params(
        self, query: Mapping[str, list[str]], inm: str | None
    ) -> tuple[str | None, str | None, float] | None:
        """A watch's (etag, condition, monotonic deadline); None when the request is no watch. The
        watch's etag is the condition of the answer too."""
        if query.get("watch", [""])[0] not in ("1", "true"):
            return None
        etag = query.get("etag", [inm or ""])[0] or None
        try:
            wait = min(MAX_WATCH, max(0.0, float(query.get("timeout", ["30"])[0])))
        except ValueError:
            wait = 30.0
        if self._conn is not None:
            self._conn.state = "watch"
        return etag, etag or inm, time.monotonic() + wait

    def _node_manifests(self, node: str, query: Mapping[str, list[str]]) -> None:
        """The per-node bundle (rollouts): the same protocol as `_manifests`, with a per-node ETag."""
        app = self.server.app
        inm = self.headers.get("If-None-Match")
        got = app.node_bundle(node)
        watch = self._watch_params(query, inm)
        if watch is not None:
            etag, inm, deadline = watch
            while got is None or got[1] == etag:
                left = deadline - time.monotonic()
                if left <= 0 or app.publisher.stopping or self._client_gone():
                    break
                with app.controller.cond:
                    app.controller.cond.wait(min(WATCH_CHECK, left))
                got = app.node_bundle(node)
        self._bundle_answer(got, inm)

    def _manifests(self, query: Mapping[str, list[str]]) -> None:
        node = query.get("node", [""])[0]
        ident = self.identity
        if ident is not None and ident.nodes is not None and node not in ident.nodes:
            # a node's own credential (per-node token, certificate CN) fetches only its own bundle
            log.warning(
                "node_identity_mismatch", node=node, identity=ident.name, client=self.client_address[0]
            )
            self._send(
                403, b"forbidden: a node's credential fetches its own bundle (?node=NAME)\n", "text/plain"
            )
            return
        if node:
            if node_name_error(node):
                self._send(400, f"node: {node_name_error(node)}\n".encode(), "text/plain")
                return
            self._node_manifests(node, query)
            return
        publisher = self.server.app.publisher
        inm = self.headers.get("If-None-Match")
        watch = self._watch_params(query, inm)
        if watch is not None:
            etag, inm, deadline = watch
            while True:  # in short slices, so a watch whose client has gone frees its thread promptly
                left = deadline - time.monotonic()
                b = publisher.wait_change(etag, max(0.0, min(WATCH_CHECK, left)))
                if left <= WATCH_CHECK or (b is not None and b.etag != etag) or publisher.stopping:
                    break
                if self._client_gone():
                    self.close_connection = True
                    return
        else:
            b = publisher.bundle()
        self._bundle_answer(None if b is None else (b.body, b.etag, b.signature), inm)

    def _bundle_answer(self, got: tuple[bytes, str, bytes] | None, inm: str | None) -> None:
        """200 with a bundle (its ETag, and its signature: of exactly this body, so no second request can
        race a change), 304 when `inm` matches, 503 before the first listing."""
        if got is None:
            self._send(503, b"no bundle yet: the directory could not be read\n", "text/plain")
            return
        body, etag, signature = got
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Nodeagent-Watch": "1"}
        if signature:
            headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()
        if inm is not None and _etag_matches(inm, etag):
            self._send(304, b"", "application/yaml", headers)
            return
        self._send(200, body, "application/yaml", headers)

    def _signature(self) -> None:
        """The current bundle's .minisig (for agents that fetch `<bundle URL>.minisig`)."""
        b = self.server.app.publisher.bundle()
        if b is None or not b.signature:
            self._send(404, b"no signature: serve runs without --signing-key\n", "text/plain")
            return
        self._send(200, b.signature, "text/plain", {"ETag": b.etag, "Cache-Control": "no-cache"})

    def _client_gone(self) -> bool:
        """During a watch the client sends nothing: a readable socket means it closed (or misbehaves)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _json(self, doc: object) -> None:
        self._send(200, (json.dumps(doc, indent=2) + "\n").encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str, headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            if code != 304 and code != 204:
                self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if code not in (204, 304) and self.command != "HEAD":
                self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags
