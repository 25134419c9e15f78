"""`serve`'s requests, apart from any transport: the endpoints (bundles and watches, node reports, the
fleet's JSON, pages and metrics, rollouts), authentication and each node's identity. `FleetAPI.handle`
turns a `Request` into an `Answer`, or into a `ReadBody` (the body is wanted: read it, then `then`), a
`Watch` (held until `poll` answers or its deadline, then `end`) or a `Defer`.

fleet/aioserver.py calls `handle`, `then`, `poll` and `end` on its event loop, so they do only quick work
there: checks, a report's parsing, a bundle already rendered. Whatever may block (the store, rendering,
a lock a controller pass holds, building pages) comes back as a `Defer`, which runs in a worker thread.
With one interpreter lock, a worker adds no parallelism to quick work, only two thread hand-offs: at
1000 nodes those hand-offs were a fifth of serve's CPU. The state it serves is the `serve.Server` it
points at (`app`)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from nodeagent.agent import events
from nodeagent.fleet import controller, page, store
from nodeagent.fleet import view as fleet
from nodeagent.k8s.node import dns1123_subdomain_error as node_name_error
from nodeagent.service import kubestate, metrics

if TYPE_CHECKING:
    from nodeagent.fleet.serve import Server

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Nodeagent-Signature"  # base64 of the bundle's .minisig (signing.HEADER)
MAX_WATCH = 300.0
MAX_ACTION_BODY = 65536  # a rollout action's JSON body ({"toRevision": N})
TEXT = "text/plain"


@dataclass(frozen=True)
class Identity:
    """Who a request is. `nodes` is the set of node names it may post status for (None: any)."""

    name: str  # for logs: "anonymous", "shared-token", "node:NAME"
    nodes: frozenset[str] | None


@dataclass(frozen=True)
class Request:
    """What the endpoints read of a request (its body is asked for with `ReadBody`)."""

    method: str
    target: str  # the request target as sent: path and query
    headers: Mapping[str, str]  # case-insensitive lookups
    client: str  # the peer's address, for logs
    peercert: Mapping[str, Any] | None = None  # the verified client certificate (mTLS)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    ctype: str = TEXT
    headers: Mapping[str, str] = field(default_factory=dict)
    close: bool = False  # hang up after answering (a body was left unread)


@dataclass(frozen=True)
class ReadBody:
    """Read exactly `length` bytes of the request's body, then answer `then(body)`."""

    length: int
    then: Callable[[bytes], Answer | Defer]


@dataclass(frozen=True)
class Watch:
    """A held watch: answered when `FleetAPI.poll` gives an answer, or by `end` at `deadline`."""

    node: str  # "" for the shared bundle, else the node whose bundle is watched
    etag: str | None  # the ETag the client has: any other one ends the watch
    inm: str | None  # the answer's condition (304 when it matches)
    deadline: float  # time.monotonic()


@dataclass(frozen=True)
class Defer:
    """Work that may block: run `run()` in a worker thread; it gives the outcome (None: a watch's bundle
    has not changed, `poll`)."""

    run: Callable[[], Outcome | None]


Outcome = Answer | ReadBody | Watch | Defer


def _text(status: int, text: str, **kw: Any) -> Answer:
    return Answer(status, text.encode(), TEXT, **kw)


def _json(doc: object) -> Answer:
    return Answer(200, (json.dumps(doc, indent=2) + "\n").encode(), "application/json")


NOT_FOUND = Answer(404, b"not found\n")
REPORT_TAKEN = Answer(204, headers={fleet.JUDGES_AVAILABILITY: "1"})


class FleetAPI:
    """The endpoints of `serve` over its state (`app`)."""

    def __init__(self, app: Server) -> None:
        self.app = app

    def handle(self, req: Request) -> Outcome:
        """Quick: a bundle at hand, /healthz without replicas (with them it may ask the database who
        leads), and a report's checks before its body. The rest is a `Defer`."""
        if req.method == "GET":
            path = req.target.partition("?")[0]
            # a node's bundle not at hand is a Defer (_manifests)
            if path == "/manifests" or (path == "/healthz" and self.app.replication is None):
                return self._get(req)
            return Defer(lambda: self._get(req))
        if req.method == "POST":
            return self._post(req)
        if req.method == "DELETE":
            return Defer(lambda: self._delete(req))
        if req.method == "HEAD":
            return Answer(405)
        return _text(501, f"unsupported method ({req.method!r})\n")

    # --- dispatch ---------------------------------------------------------------------------------

    def _get(self, req: Request) -> Outcome:
        app = self.app
        parts = urlsplit(req.target)
        if parts.path == "/healthz":
            ok = app.publisher.bundle() is not None
            text = "ok\n" if ok else "no bundle yet\n"
            text += app.replication.healthz() if app.replication is not None else ""  # who leads
            return _text(200 if ok else 503, text)
        ident = self._auth(req)
        if isinstance(ident, Answer):
            return ident
        if parts.path == "/manifests":
            return self._manifests(req, ident, parse_qs(parts.query))
        if parts.path == "/manifests.minisig":
            return self._signature()
        if parts.path == "/api/fleet":
            return _json(app.fleet_json())
        if parts.path == "/api/nodes":
            return _json({"nodes": app.fleet_json()["nodes"]})
        if parts.path == "/api/daemonsets":
            return _json({"daemonSets": app.fleet_json()["daemonSets"]})
        if parts.path.startswith("/api/rollouts/"):
            nodes = parse_qs(parts.query).get("nodes", ["true"])[-1] != "false"
            return self._rollout(req, "GET", parts.path, None, nodes)
        if parts.path == "/api/events":
            with app.fleet_lock:
                reports = [(r.name, r.events) for r in app.fleet.nodes.values()]
            return _json({"kind": "EventList", "items": events.fleet_events(reports)})
        if parts.path == "/metrics":
            return Answer(200, self._metrics(), metrics.CONTENT_TYPE)
        if parts.path in ("/", "/index.html"):
            return Answer(200, page.render_fleet(app.fleet_json()).encode(), "text/html; charset=utf-8")
        if parts.path.startswith(("/nodes/", "/daemonsets/")):
            shown = app.drill_down([unquote(p) for p in parts.path.strip("/").split("/")])
            if shown is None:
                return NOT_FOUND
            return Answer(200, shown.encode(), "text/html; charset=utf-8")
        return NOT_FOUND

    def _metrics(self) -> bytes:
        app = self.app
        with app.fleet_lock:
            now = app.clock()
            ready, not_ready = app.fleet.counts(now)
            statuses = [(r.status_doc(), app.fleet.ready(r, now)) for r in app.fleet.nodes.values()]
        metrics.set_nodes(ready, not_ready)
        doc = app.fleet_json()  # kube-state-metrics series: the fleet's sums (kubestate.py)
        body = kubestate.fleet_exposition(statuses, doc["daemonSets"], doc["nodes"])
        body += app.controller.exposition().encode()
        body += app.replication.exposition() if app.replication is not None else b""
        return body

    def _post(self, req: Request) -> Outcome:
        app = self.app
        path = urlsplit(req.target).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        ident = self._auth(req, close=True)  # the body is not read
        if isinstance(ident, Answer):
            return ident
        if parts[:2] == ["api", "rollouts"]:
            if ident.nodes is not None:  # a node may not steer rollouts
                return _text(403, "forbidden: a node credential cannot act on rollouts\n", close=True)
            try:
                length = int(req.headers.get("Content-Length") or "0")
            except ValueError:
                return _text(400, "bad Content-Length\n", close=True)
            if 0 < length <= MAX_ACTION_BODY:
                return ReadBody(length, lambda body: Defer(lambda: self._rollout(req, "POST", path, body)))
            if length == 0:
                return Defer(lambda: self._rollout(req, "POST", path, None))
            return Defer(lambda: replace(self._rollout(req, "POST", path, None), close=True))
        if len(parts) != 3 or parts[0] != "nodes" or parts[2] != "status" or not parts[1]:
            return Answer(404, b"not found\n", close=True)
        name = parts[1]
        if node_name_error(name):
            return _text(400, f"node name: {node_name_error(name)}\n", close=True)
        denied = self._may_act_for(req, ident, name)
        if denied is not None:
            return replace(denied, close=True)
        limit = app.cfg.max_report
        if req.headers.get("Transfer-Encoding"):
            return _text(411, "Content-Length required (no chunked reports)\n", close=True)
        try:
            length = int(req.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length > limit:  # answered before reading the body; the connection is not reused
            return _text(413, f"report larger than {limit} bytes\n", close=True)
        if length <= 0:
            return _text(400, "bad Content-Length\n", close=True)
        return ReadBody(length, lambda body: self._report(req, name, body))

    def _report(self, req: Request, name: str, body: bytes) -> Answer:
        """A node's report (`POST /nodes/NAME/status`), its body read."""
        app = self.app
        digest = fleet.body_digest(body)  # a heartbeat repeats its last body
        now = app.clock()
        with app.fleet_lock:
            report = app.fleet.unchanged(name, digest, now)
            last = app.fleet.nodes.get(name)
        try:
            if report is None:
                report = fleet.parse_report(json.loads(body), name, now, last)
        except (ValueError, RecursionError, fleet.ReportError) as exc:
            why = str(exc) if isinstance(exc, fleet.ReportError) else "the body is not JSON"
            return _text(400, f"bad report: {why}\n")
        with app.fleet_lock:
            first = name not in app.fleet.nodes
            changes = app.fleet.changes
            recorded = app.fleet.report(report, digest)
            changed = app.fleet.changes != changes
        if not recorded:
            log.warning("node_refused_fleet_full", node=name, max_nodes=app.cfg.max_nodes)
            return _text(429, "too many nodes (--max-nodes); remove gone ones with `nodeagent node delete`\n")
        if first:
            log.info("node_registered", node=name, client=req.client)
        if app.replication is not None:  # shared with the other replicas
            app.replication.reported(name, body.decode("utf-8", "replace"), report.received_at, digest.hex())
        if changed:  # a wave is handed out as soon as the last one is available (within SYNC_GAP)
            app.request_sync()
        return REPORT_TAKEN

    def _delete(self, req: Request) -> Answer:
        """`DELETE /nodes/<name>`: forget a node (`nodeagent node delete`)."""
        parts = [unquote(p) for p in urlsplit(req.target).path.strip("/").split("/")]
        ident = self._auth(req)
        if isinstance(ident, Answer):
            return ident
        if len(parts) != 2 or parts[0] != "nodes" or not parts[1]:
            return NOT_FOUND
        denied = self._may_act_for(req, ident, parts[1])
        if denied is not None:
            return denied
        if self.app.delete_node(parts[1]):
            log.info("node_deleted", node=parts[1], by=ident.name)
            return Answer(204)
        return _text(404, "no such node\n")

    # --- helpers ----------------------------------------------------------------------------------

    def _auth(self, req: Request, close: bool = False) -> Identity | Answer:
        ident = self.app.identify(req.headers.get("Authorization"), req.peercert)
        if ident is not None:
            return ident
        return _text(401, "unauthorized\n", headers={"WWW-Authenticate": "Bearer"}, close=close)

    def _may_act_for(self, req: Request, ident: Identity, node: str) -> Answer | None:
        """A node identity may post (or delete) only its own status: 403 otherwise."""
        if ident.nodes is None or node in ident.nodes:
            return None
        log.warning("node_identity_mismatch", node=node, identity=ident.name, client=req.client)
        return _text(403, "forbidden: this credential belongs to another node\n")

    def _rollout(
        self, req: Request, method: str, path: str, raw_body: bytes | None, nodes: bool = True
    ) -> Answer:
        """/api/rollouts/NS/NAME[/history|/plan] (GET) and /pause|/resume|/restart|/undo (POST).
        `?nodes=false`: the document without its per-node list (a poller that needs only the counters
        costs serve a few fields, not a list of the whole fleet)."""
        ctl = self.app.controller
        parts = [unquote(p) for p in path.strip("/").split("/")][2:]
        if len(parts) not in (2, 3):
            return NOT_FOUND
        key = store.Key(store.KIND_DAEMONSET, parts[0], parts[1])
        action = parts[2] if len(parts) == 3 else ""
        try:
            if method == "GET" and action in ("", "history", "plan"):
                if action == "":
                    return _json(ctl.document(key, nodes))
                return _json({"history": ctl.history, "plan": ctl.plan_waves}[action](key))
            if method != "POST" or action not in ("pause", "resume", "restart", "undo"):
                return NOT_FOUND
            body: dict[str, Any] = {}
            if raw_body is not None:
                raw = json.loads(raw_body)
                body = raw if isinstance(raw, dict) else {}
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
            self.app.sync_rollouts()
            return _json(ctl.document(key))
        except KeyError:
            return _text(404, f"no DaemonSet {key.namespace}/{key.name}\n")
        except (controller.RolloutError, ValueError, RecursionError) as exc:
            return _text(400, f"{exc}\n")

    def _manifests(self, req: Request, ident: Identity, query: Mapping[str, list[str]]) -> Outcome:
        node = query.get("node", [""])[0]
        if ident.nodes is not None and node not in ident.nodes:
            # a node's own credential (per-node token, certificate CN) fetches only its own bundle
            log.warning("node_identity_mismatch", node=node, identity=ident.name, client=req.client)
            return _text(403, "forbidden: a node's credential fetches its own bundle (?node=NAME)\n")
        if node and node_name_error(node):
            return _text(400, f"node: {node_name_error(node)}\n")
        inm = req.headers.get("If-None-Match")
        if query.get("watch", [""])[0] in ("1", "true"):
            etag = query.get("etag", [inm or ""])[0] or None
            try:
                wait = min(MAX_WATCH, max(0.0, float(query.get("timeout", ["30"])[0])))
            except ValueError:
                wait = 30.0
            # the watch's etag is the condition of the answer too
            w = Watch(node, etag, etag or inm, time.monotonic() + wait)
            first = self.poll(w)
            if isinstance(first, Defer):
                deferred = first
                return Defer(lambda: deferred.run() or w)  # unchanged: held
            return first or w
        got = self._at_hand(node)
        if got is False:
            return Defer(lambda: self._bundle_answer(self.app.node_bundle(node), inm))
        return self._bundle_answer(got, inm)

    def _at_hand(self, node: str) -> tuple[bytes, str, bytes] | Literal[False] | None:
        """(body, ETag, signature) of the shared bundle (`node` ""), or of `node`'s (rollouts) when it is
        rendered already; False when `app.node_bundle` must run (in a worker)."""
        if node:
            return self.app.cached_node_bundle(node)
        b = self.app.publisher.bundle()
        return None if b is None else (b.body, b.etag, b.signature)

    def poll(self, w: Watch) -> Answer | Defer | None:
        """The watch's answer once its bundle's ETag differs from the client's; None while it does not."""
        got = self._at_hand(w.node)
        if got is False:
            return Defer(lambda: self._changed(w, self.app.node_bundle(w.node)))
        return self._changed(w, got)

    def _changed(self, w: Watch, got: tuple[bytes, str, bytes] | None) -> Answer | None:
        if got is None or got[1] == w.etag:
            return None
        return self._bundle_answer(got, w.inm)

    def end(self, w: Watch) -> Answer | Defer:
        """The answer to a watch at its deadline (or when serve stops): 304 unless the bundle changed."""
        got = self._at_hand(w.node)
        if got is False:
            return Defer(lambda: self._bundle_answer(self.app.node_bundle(w.node), w.inm))
        return self._bundle_answer(got, w.inm)

    def _bundle_answer(self, got: tuple[bytes, str, bytes] | None, inm: str | None) -> Answer:
        """200 with a bundle (its ETag, and its signature: of exactly this body, so no second request can
        race a change), 304 when `inm` matches, 503 before the first listing."""
        if got is None:
            return _text(503, "no bundle yet: the directory could not be read\n")
        body, etag, signature = got
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Nodeagent-Watch": "1"}
        if signature:
            headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()
        if inm is not None and _etag_matches(inm, etag):
            return Answer(304, b"", "application/yaml", headers)
        return Answer(200, body, "application/yaml", headers)

    def _signature(self) -> Answer:
        """The current bundle's .minisig (for agents that fetch `<bundle URL>.minisig`)."""
        b = self.app.publisher.bundle()
        if b is None or not b.signature:
            return _text(404, "no signature: serve runs without --signing-key\n")
        return Answer(200, b.signature, TEXT, {"ETag": b.etag, "Cache-Control": "no-cache"})


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags
