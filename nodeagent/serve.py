"""`nodeagent serve`: a directory of manifests as an HTTP source for a fleet, plus the fleet view.

Endpoints (JSON unless said otherwise; with `--token-file` every one but `/healthz` needs
`Authorization: Bearer <token>`):

    GET  /manifests               the bundle: the valid manifests of DIR as multi-document YAML
                                  (each document a JSON object), strong ETag, `X-Nodeagent-Watch: 1`;
                                  `If-None-Match` with the current ETag gives 304.
    GET  /manifests?watch=1&etag=E&timeout=S
                                  watch (long poll): held until the bundle's ETag differs from E (or
                                  from `If-None-Match` when `etag` is absent), then 200 with the new
                                  bundle; after S seconds (default 30, at most 300) 304. A client that
                                  does not know the ETag yet gets the bundle at once.
    POST /nodes/<name>/status     a node's report: {name, labels, taints, status, agentVersion, errors}
                                  where status is the `nodeagent status -o json` document; 204.
    GET  /api/nodes               {"nodes": [{name, ready, labels, taints, lastSeen, ...}]}
    GET  /api/daemonsets          {"daemonSets": [{namespace, name, desiredNumberScheduled, ...}]}
    GET  /api/fleet               both, plus the files of DIR that fail validation (`errors`)
    GET  /                        the same tables as an HTML page that refreshes itself
    GET  /api/events              {"kind": "EventList", "items": [...]}: the nodes' events, newest first
    GET  /metrics                 Prometheus text format, with the fleet's kube-state-metrics series
    GET  /healthz                 "ok" while a bundle is published

Publishing follows the agent's own rules (DESIGN.md §2): DIR is watched (watchdog plus a periodic
relist, `files.DirectorySource`); a file that fails to parse keeps its previous good documents, a
document that fails validation keeps its previous version, and both show as errors in the fleet view.
An unreadable DIR keeps the last bundle (or, before the first listing, answers 503, which agents treat
as "source down"). Deleting files is how manifests are withdrawn; an empty DIR publishes an explicit
empty `List`, which withdraws everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import server as http_server
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
import yaml

import nodeagent
from nodeagent import events, fleet, kubestate, manifests, metrics, model
from nodeagent.sources import files

log = structlog.get_logger(__name__)

MAX_REPORT = 4 * 1024 * 1024
MAX_WATCH = 300.0
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
    result = manifests.load_text(data, path)
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

    def __init__(self, directory: str, relist_interval: float = 30.0) -> None:
        self.directory = os.path.abspath(directory)
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
                    with open(full, "rb") as fh:
                        data = fh.read()
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
        with self._cond:
            old = self._bundle
            if old is not None and old.etag == etag and old.errors == tuple(errors):
                return
            self._bundle = Bundle(
                body, etag, len(objects), tuple(sorted(daemonsets)), tuple(errors), time.time()
            )
            self._cond.notify_all()
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
    token_file: str | None = None
    client_ca: str | None = None
    grace: float = fleet.DEFAULT_GRACE
    relist_interval: float = 30.0


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class TrackingHTTPServer(http_server.ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections, so stopping it can end them: agents
    keep theirs alive between requests, and a handler thread would otherwise outlive the server."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[http_server.BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """End every open connection (after `shutdown`, as a server that dies does)."""
        with self._open_lock:
            open_now, self._open = list(self._open), set()
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _HTTPServer(TrackingHTTPServer):
    # A fleet reconnects its watches at once after every change: with socketserver's default backlog
    # of 5 the kernel drops most of those SYNs, and each dropped one costs the node a 1 s retransmit.
    request_queue_size = 1024
    app: Server

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshakes happen here, on the request's own thread, so a slow client blocks no one."""
        ctx = self.app.tls_context
        if ctx is not None:
            request.settimeout(10.0)
            try:
                request = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("tls_handshake_failed", client=client_address[0], error=str(exc))
                with contextlib.suppress(OSError):
                    request.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request_failed", client=client_address[0], exc_info=True)


class Server:
    """The serve process in one object (tests run it in-process on an ephemeral port)."""

    def __init__(self, cfg: ServeConfig, clock: Any = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.publisher = Publisher(cfg.directory, cfg.relist_interval)
        self.fleet = fleet.Fleet(grace=cfg.grace)
        self.fleet_lock = threading.Lock()
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
        host, port = split_listen(cfg.listen)
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.app = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        scheme = "https" if self.tls_context else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    def start(self) -> None:
        self.publisher.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="serve-http", daemon=True
        )
        self._thread.start()
        log.info(
            "serve_started", url=self.url, directory=self.publisher.directory, version=nodeagent.__version__
        )

    def stop(self) -> None:
        self.publisher.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.drop_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def authorized(self, header: str | None) -> bool:
        """Bearer token check against the token file, re-read on each request (rotation needs no restart)."""
        if not self.cfg.token_file:
            return True
        try:
            with open(self.cfg.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError:
            log.error("serve_token_unreadable", file=self.cfg.token_file)
            return False
        if not token or not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())

    def fleet_json(self) -> dict[str, Any]:
        now = self.clock()
        b = self.publisher.bundle()
        with self.fleet_lock:
            nodes = self.fleet.nodes_json(now)
            daemonsets = self.fleet.daemonsets_json(now, b.daemonsets if b else ())
        errs = [
            {
                "file": p.file,
                "document": p.document,
                "kind": p.kind,
                "name": p.name,
                "path": p.path,
                "message": p.message,
            }
            for p in (b.errors if b else ())
        ]
        if self.publisher.failure:
            errs.insert(
                0,
                {
                    "file": self.publisher.directory,
                    "document": None,
                    "kind": "",
                    "name": "",
                    "path": "",
                    "message": self.publisher.failure,
                },
            )
        bundle = {"etag": b.etag, "objects": b.objects} if b else None
        return {"daemonSets": daemonsets, "nodes": nodes, "errors": errs, "bundle": bundle}


class _Handler(http_server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"nodeagent-serve/{nodeagent.__version__}"
    timeout = 60.0  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access logs would be one line per poll per node; metrics count requests instead

    # --- dispatch ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        if parts.path == "/healthz":
            ok = app.publisher.bundle() is not None
            self._send(200 if ok else 503, b"ok\n" if ok else b"no bundle yet\n", "text/plain")
            return
        if not self._auth():
            return
        if parts.path == "/manifests":
            self._manifests(parse_qs(parts.query))
        elif parts.path == "/api/fleet":
            self._json(app.fleet_json())
        elif parts.path == "/api/nodes":
            self._json({"nodes": app.fleet_json()["nodes"]})
        elif parts.path == "/api/daemonsets":
            self._json({"daemonSets": app.fleet_json()["daemonSets"]})
        elif parts.path == "/api/events":
            with app.fleet_lock:
                reports = [(r.name, r.events) for r in app.fleet.nodes.values()]
            self._json({"kind": "EventList", "items": events.fleet_events(reports)})
        elif parts.path == "/metrics":
            with app.fleet_lock:
                now = app.clock()
                ready, not_ready = app.fleet.counts(now)
                statuses = [(r.status, app.fleet.ready(r, now)) for r in app.fleet.nodes.values()]
            metrics.set_nodes(ready, not_ready)
            doc = app.fleet_json()  # kube-state-metrics series: the fleet's sums (kubestate.py)
            body = kubestate.fleet_exposition(statuses, doc["daemonSets"], doc["nodes"])
            self._send(200, body, metrics.CONTENT_TYPE)
        elif parts.path in ("/", "/index.html"):
            self._send(200, render_html(app.fleet_json()).encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_HEAD(self) -> None:
        self._send(405, b"", "text/plain")

    def do_POST(self) -> None:
        app = self.server.app
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if not self._auth():
            return
        if len(parts) != 3 or parts[0] != "nodes" or parts[2] != "status" or not parts[1]:
            self._send(404, b"not found\n", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_REPORT:
            self._send(413 if length > MAX_REPORT else 400, b"bad Content-Length\n", "text/plain")
            return
        try:
            doc = json.loads(self.rfile.read(length))
            report = fleet.parse_report(doc, parts[1], app.clock())
        except (ValueError, fleet.ReportError) as exc:
            self._send(400, f"{exc}\n".encode(), "text/plain")
            return
        with app.fleet_lock:
            first = parts[1] not in app.fleet.nodes
            app.fleet.report(report)
        if first:
            log.info("node_registered", node=parts[1], client=self.client_address[0])
        self._send(204, b"", "text/plain")

    # --- helpers ----------------------------------------------------------------------------------

    def _auth(self) -> bool:
        if self.server.app.authorized(self.headers.get("Authorization")):
            return True
        self._send(401, b"unauthorized\n", "text/plain", {"WWW-Authenticate": "Bearer"})
        return False

    def _manifests(self, query: Mapping[str, list[str]]) -> None:
        publisher = self.server.app.publisher
        inm = self.headers.get("If-None-Match")
        if query.get("watch", [""])[0] in ("1", "true"):
            etag = query.get("etag", [inm or ""])[0] or None
            inm = etag or inm  # the watch's etag is the condition of the answer too
            try:
                wait = min(MAX_WATCH, max(0.0, float(query.get("timeout", ["30"])[0])))
            except ValueError:
                wait = 30.0
            b = publisher.wait_change(etag, wait)
        else:
            b = publisher.bundle()
        if b is None:
            self._send(503, b"no bundle yet: the directory could not be read\n", "text/plain")
            return
        headers = {"ETag": b.etag, "Cache-Control": "no-cache", "X-Nodeagent-Watch": "1"}
        if inm is not None and _etag_matches(inm, b.etag):
            self._send(304, b"", "application/yaml", headers)
            return
        self._send(200, b.body, "application/yaml", headers)

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


# --- the HTML page ------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(doc: Mapping[str, Any], refresh: int = 5) -> str:
    """The fleet page: DaemonSets, nodes, errors; refreshes itself every `refresh` seconds."""
    ds_rows = [
        [
            d["namespace"],
            d["name"],
            *(str(d[c]) for c in fleet.COUNTERS[:5]),
            str(d["numberMisscheduled"]),
        ]
        for d in doc["daemonSets"]
    ]
    node_rows = [
        [
            n["name"],
            "Ready" if n["ready"] else "NotReady",
            ",".join(f"{k}={v}" for k, v in n["labels"].items() if not k.startswith("kubernetes.io/")),
            ",".join(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in n["taints"]) or "-",
            f"{n['lastSeenSecondsAgo']:.0f}s ago",
            str(n["pods"]),
        ]
        for n in doc["nodes"]
    ]
    err_rows = [
        [e["file"] + (f"#{e['document']}" if e["document"] is not None else ""), e["path"], e["message"]]
        for e in doc["errors"]
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{refresh}'><title>nodeagent fleet</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#eee}</style>",
        "</head><body><h1>nodeagent fleet</h1><h2>DaemonSets</h2>",
        _table(
            ["NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "MISSCHEDULED"],
            ds_rows,
        ),
        "<h2>Nodes</h2>",
        _table(["NAME", "STATUS", "LABELS", "TAINTS", "LAST SEEN", "PODS"], node_rows),
    ]
    if err_rows:
        parts += [
            "<h2>Manifests not published (the previous version stays)</h2>",
            _table(["FILE", "FIELD", "ERROR"], err_rows),
        ]
    parts.append("</body></html>")
    return "".join(parts)
