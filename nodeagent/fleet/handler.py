"""`serve`'s request handler: the endpoints (bundles and watches, node reports, the fleet's JSON, pages
and metrics, rollouts), authentication and each node's identity. Its server is `FleetHTTPServer`, and the
state it serves is the `serve.Server` it points at (`app`)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import select
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import server as http_server
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

import nodeagent
from nodeagent.agent import events
from nodeagent.fleet import controller, page, store
from nodeagent.fleet import view as fleet
from nodeagent.fleet.httpserver import IDLE_TIMEOUT, TrackingHTTPServer, _Conn, _current
from nodeagent.k8s.node import dns1123_subdomain_error as node_name_error
from nodeagent.service import kubestate, metrics

if TYPE_CHECKING:
    from nodeagent.fleet.serve import Server

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Nodeagent-Signature"  # base64 of the bundle's .minisig (signing.HEADER)
MAX_WATCH = 300.0
WATCH_CHECK = 5.0  # how often a held watch looks whether its client is still there


@dataclass(frozen=True)
class Identity:
    """Who a request is. `nodes` is the set of node names it may post status for (None: any)."""

    name: str  # for logs: "anonymous", "shared-token", "node:NAME"
    nodes: frozenset[str] | None


def rollout_view(r: fleet.NodeReport) -> tuple[object, ...]:
    """What the rollout controller reads of a report: a heartbeat that changes none of it costs no pass."""
    return (r.labels, r.taints, r.daemonsets)


class FleetHTTPServer(TrackingHTTPServer):
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


class Handler(http_server.BaseHTTPRequestHandler):
    server: FleetHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"nodeagent-serve/{nodeagent.__version__}"
    timeout = IDLE_TIMEOUT  # each read; the reaper bounds the whole wait for a request
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between
    _conn: _Conn | None = None
    _first = True
    identity: Identity | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access logs would be one line per poll per node; metrics count requests instead

    _date: tuple[int, str] = (0, "")  # (second, its Date header): formatted once a second, not per answer

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        cached = Handler._date
        if cached[0] != second:
            cached = (second, super().date_time_string(second))
            Handler._date = cached
        return cached[1]

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
        digest = hashlib.blake2b(body, digest_size=16).digest()  # a heartbeat repeats its last body
        now = app.clock()
        with app.fleet_lock:
            report = app.fleet.unchanged(name, digest, now)
        try:
            if report is None:
                report = fleet.parse_report(json.loads(body), name, now)
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
                or rollout_view(prev) != (rollout_view(report))
            )
            recorded = app.fleet.report(report, digest)
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
        seen = app.controller.node_version(node)  # before the bundle: no change slips between the two
        got = app.node_bundle(node)
        watch = self._watch_params(query, inm)
        if watch is not None:
            etag, inm, deadline = watch
            while got is None or got[1] == etag:
                left = deadline - time.monotonic()
                if left <= 0 or app.publisher.stopping or self._client_gone():
                    break
                app.controller.wait_node(node, seen, min(WATCH_CHECK, left))  # wakes on this node's change
                seen = app.controller.node_version(node)
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
        """During a watch the client sends nothing: a readable socket means it closed (or misbehaves).
        poll, not select: select cannot watch a descriptor numbered 1024 or more, which a fleet's
        connections soon are (every such watch looked gone and was answered at once)."""
        try:
            p = select.poll()
            p.register(self.connection, select.POLLIN | select.POLLPRI)
            return bool(p.poll(0))  # readable, or hung up, in error, not open (always reported)
        except (OSError, ValueError):
            return True

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
