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

import hashlib
import hmac
import ipaddress
import math
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

import nodeagent
from nodeagent.fleet import handler, page, replicas, store
from nodeagent.fleet import view as fleet
from nodeagent.fleet.handler import Identity
from nodeagent.fleet.httpserver import HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, connection_limit
from nodeagent.fleet.publisher import Bundle, Publisher, render_bundle
from nodeagent.k8s import manifests, model
from nodeagent.service import metrics

log = structlog.get_logger(__name__)

MAX_REPORT = 1024 * 1024  # a node's report (a few hundred bytes per pod): larger is answered 413
NODE_BUNDLE_CACHE = 256  # distinct per-node bundle views kept (a rollout has about two per generation)
SYNC_GAP = 0.2  # the rollout controller runs at most this often (reports are coalesced)
FLIP_SLACK = 0.005  # a wait that ends a little early must not find the pod still unavailable


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
        if self.replication is not None:
            self.replication.on_changed = self.request_sync  # reports other replicas took
        self._signatures: dict[str, bytes] = {}
        # per-node bundles by (bundle ETag, controller.node_view): every watch wakes on a controller change
        self._node_bundles: dict[tuple[str, tuple[object, ...]], tuple[bytes, str, bytes]] = {}
        self._node_bundles_lock = threading.Lock()
        self._ticker_stop = threading.Event()
        self._wake = threading.Event()
        self._synced_etag = ""
        self._min_ready_of: object = None  # the bundle objects fleet.min_ready was taken from
        self._ctl_reports: dict[str, fleet.NodeReport] = {}  # _controller_reports: what the controller saw
        self._ctl_seen: dict[str, fleet.NodeReport] = {}  # the newest report of each node at that pass
        # what the last pass saw, for the ticker's idle check (_pass_due): the fleet's change count, and
        # the first time after it that a node still Ready would turn NotReady on its silence alone
        self._ctl_changes = -1
        self._quiet_until = 0.0
        # a pass reads the bundle and runs the controller as one step: a pass over a bundle read just
        # before a file change must not run after the pass over the new one (the old template would
        # come back as a new revision, and every node with it)
        self._sync_lock = threading.Lock()
        self.publisher = Publisher(cfg.directory, cfg.relist_interval, signer, self._published)
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
        from nodeagent.fleet import aioserver  # lazy: aiohttp takes ~0.2 s to import; only serve needs it

        self.httpd = aioserver.AioHTTPServer(  # no thread per connection: watches are parked awaits
            handler.FleetAPI(self),
            (host, port),
            tls=self.tls_context,
            max_connections=connection_limit(cfg.max_connections),
            header_timeout=cfg.header_timeout,
            idle_timeout=cfg.idle_timeout,
        )
        self.controller.on_wake = self._woken  # a pass's changed nodes wake their parked watches

    @property
    def url(self) -> str:
        host, port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        scheme = "https" if self.tls_context else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    def _published(self) -> None:
        """A new bundle: the rollout controller runs, then the watches of the shared bundle answer. The
        nodes' watches are woken by that pass (a new bundle wakes them all), once their bundles are
        decided: woken before, each would look twice."""
        try:
            self.sync_rollouts()
        except Exception:
            log.exception("rollout_sync_failed")
            self.httpd.wake()  # whatever the controller thinks: every watch looks at the new bundle
            return
        self.httpd.wake([""])

    def sync_rollouts(self) -> None:
        """Run the rollout controller over the current bundle and reports (fleet/controller.py)."""
        with self._sync_lock:
            b = self.publisher.bundle() if hasattr(self, "publisher") else None
            if b is None:
                return
            now = self.clock()
            with self.fleet_lock:
                latest = dict(self.fleet.nodes)
                changes = self.fleet.changes
            cpu = time.thread_time()
            reports = self._controller_reports(latest)
            cutoff = self.fleet.ready_after(now)  # Fleet.ready, without two calls per node and pass
            self.controller.sync(b.raw_objects, reports, lambda r: latest[r.name].received_at >= cutoff)
            metrics.ROLLOUT_PASS_CPU_SECONDS.observe(time.thread_time() - cpu)
            if b.raw_objects is not self._min_ready_of:  # a new bundle: its DaemonSets' minReadySeconds
                min_ready = self.controller.min_ready_seconds()
                with self.fleet_lock:
                    self.fleet.min_ready = min_ready
                self._min_ready_of = b.raw_objects
            # when the next node turns NotReady if it stays silent: the oldest report still in its grace
            oldest = min((t for r in latest.values() if (t := r.received_at) >= cutoff), default=math.inf)
            self._ctl_changes, self._quiet_until = changes, oldest + self.fleet.grace
        if b.etag != self._synced_etag:  # a new bundle: every node's bundle may differ (watches wake)
            self._synced_etag = b.etag
            self.controller.wake()

    def _controller_reports(self, latest: Mapping[str, fleet.NodeReport]) -> dict[str, fleet.NodeReport]:
        """The reports the controller reads: a node's earlier report object while what the controller
        reads of it (NodeReport.rollout_view) is unchanged, so its per-node cache is hit. Every heartbeat is
        a new object: without this each pass compared 1000 nodes' DaemonSet reports anew (a fifth of an
        idle serve's CPU). Readiness is judged on `latest` (the newest arrival time)."""
        kept: dict[str, fleet.NodeReport] = {}
        for name, rep in latest.items():
            old = self._ctl_reports.get(name)
            if old is not None and (
                self._ctl_seen.get(name) is rep or old.rollout_view() == rep.rollout_view()
            ):
                kept[name] = old
            else:
                kept[name] = rep
        self._ctl_reports, self._ctl_seen = kept, dict(latest)
        return kept

    def request_sync(self) -> None:
        """Have the rollout controller run soon (within SYNC_GAP): reports arrive far more often than
        a pass over the fleet is worth running (16 ms for 1000 nodes), so they are coalesced."""
        self._wake.set()

    def _tick(self) -> None:
        """Runs the controller when asked (a changed report), when a pod becomes available by serve's
        clock (Controller.next_flip) and, while a pass could find something new (_pass_due), at least
        every second (deadlines, nodes going NotReady); never more often than every SYNC_GAP."""
        while not self._ticker_stop.is_set():
            flip = self.controller.next_flip() - self.clock() + FLIP_SLACK
            asked = self._wake.wait(min(1.0, max(0.0, flip)))
            if self._ticker_stop.is_set():
                break
            self._wake.clear()
            try:
                if asked or self._pass_due():
                    self.sync_rollouts()
            except Exception:
                log.exception("rollout_sync_failed")
            self._ticker_stop.wait(SYNC_GAP)

    def _pass_due(self) -> bool:
        """Whether a pass nobody asked for could decide anything: a rollout is under way (its deadline,
        the grace after a start), the fleet changed (a report pulled from another replica, a node
        deleted or expired), or a node has been silent long enough to turn NotReady. A settled fleet's
        heartbeats cost no pass (at 1000 nodes, one a second of 9-16 ms each, about a tenth of
        an idle serve's CPU)."""
        with self.fleet_lock:
            changes = self.fleet.changes
        now = self.clock()
        return (
            changes != self._ctl_changes
            or now >= self._quiet_until
            or now >= self.controller.next_flip()
            or not self.controller.settled()
        )

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

    def _woken(self, nodes: frozenset[str] | None) -> None:
        """The controller's wake (under its lock, in the thread that changed what nodes are handed): the
        woken watches' bundles are rendered here first, so serve's event loop answers each from the cache.
        Otherwise every woken watch found its view stale and handed `node_bundle` to a worker thread: in
        the rollout row, 2900 hand-offs of the loop's for 1000 nodes (a new view per node each wave, and
        every watch at a rollout's start and end)."""
        try:
            for node in self.httpd.watched() if nodes is None else nodes:
                if node:
                    self.node_bundle(node)
        except Exception:  # the watch renders it in a worker then, as before
            log.exception("node_bundle_render_failed")
        self.httpd.wake(nodes)

    def cached_node_bundle(self, node: str) -> tuple[bytes, str, bytes] | Literal[False] | None:
        """`node_bundle` if it is at hand without waiting on the controller or rendering (serve's event
        loop answers most watches and polls with it); False when `node_bundle` must run in a worker."""
        b = self.publisher.bundle()
        if b is None:
            return None
        view = self.controller.cached_node_view(node)
        if view is None:
            return False
        with self._node_bundles_lock:
            return self._node_bundles.get((b.etag, view)) or False

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
        self.httpd.start()
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
        self.controller.wake()
        self.publisher.stop()
        self.httpd.stop()

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
            failure = model.Problem.of_file(self.publisher.directory, self.publisher.failure)
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
