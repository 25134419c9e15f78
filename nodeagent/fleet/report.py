"""Reports this node's status to `nodeagent serve` (config `statusServer: URL`): the report's format
(`node_report`, read back by `fleet.view.parse_report`) and its delivery, periodically and on change.

The reconcile loop hands every pass's report to `Reporter.update` (cheap: it only compares and wakes);
a worker thread POSTs `<statusServer>/nodes/<node>/status` when the report changed (at most every
`min_gap` seconds) and at least every `interval` seconds as a heartbeat, well inside the server's 40 s
grace period. A pod that turned ready is posted without waiting out `min_gap` (`urgent`). A change
that only says a pod became available waits for the heartbeat when the server judges availability itself
from the pod's `readySince` (`worth_posting`). The report of a pass that started work waits up to
`SETTLE_DELAY` for the next pass's, which says what the work did. A status server that is down costs one
log line (and one when it answers again); the agent's work never waits for it.

`statusServer` may list replicas of one `serve` (sharing their state): the reporter posts to one and moves
to the next on a connection error, at once, within the same report.

TLS and the bearer token are those of the HTTP source on the same scheme, host and port as the status
server (the usual set-up: one `serve` for both), so no second set of credentials is configured.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import structlog

import nodeagent
from nodeagent import settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import events, status
from nodeagent.fleet import view
from nodeagent.service import metrics
from nodeagent.sources import http

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL = 10.0  # the kubelet's nodeStatusUpdateFrequency
MIN_GAP = 0.5  # seconds between two posts at least: a burst of passes costs one report
REPORT_EVENTS = 20  # the newest events a node report carries to serve
# how long the report of a pass that started work (`settling`) waits for the next pass's: the first shows
# the state the pass found, which its work is changing, and the next one, when the work is quick, what it
# did; one post then tells both (posted at once, a rolling update cost a node two reports)
SETTLE_DELAY = 1.0
SYNC_REPORT_TIMEOUT = 5.0  # a cron job or an Ansible run must not hang on a status server that never answers


def status_json(a: agent_mod.Agent, result: agent_mod.PassResult) -> dict[str, Any]:
    """`status -o json`: this node's DaemonSetStatus and pods; the `status` of every node report."""
    now = a.clock()
    p = result.plan
    return {
        "node": a.node.name,
        "daemonSets": [
            status.daemonset_status(d, p.waiting, now, p.readiness, p.terminating).to_json()
            for d in p.daemonsets
        ],
        "staticPods": [
            ps.to_json()
            for s in p.static_pods
            for ps in status.static_pod_status(s, p.waiting, p.readiness, p.terminating)
        ],
        "orphanedPods": [ps.to_json() for ps in status.orphan_statuses(p)],
        "terminatingPods": [ps.to_json() for ps in status.withdrawn_statuses(p)],
        "workInFlight": [b.to_json() for _, b in sorted(result.busy.items())],
    }


def node_report(
    a: agent_mod.Agent, result: agent_mod.PassResult, mode: str = view.MODE_AGENT
) -> dict[str, Any]:
    """What `run` (mode agent) and `sync` (mode sync) report to the status server: the node and its
    `status -o json` document."""
    return {
        **a.node.to_json(),
        "status": status_json(a, result),
        "agentVersion": nodeagent.__version__,
        "mode": mode,
        "errors": [e.render() for e in result.desired.errors],
        "events": [e.to_json() for e in events.recent(events.load(a.settings.state_dir), REPORT_EVENTS)],
    }


def _without_availability(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The report without what a serve that judges availability derives itself: each DaemonSet's
    numberAvailable and each pod's available flag."""
    st = report.get("status")
    if not isinstance(st, Mapping):
        return report

    def pods(items: Any) -> list[Any]:
        return [{k: v for k, v in p.items() if k != "available"} for p in items or ()]

    daemonsets = [
        {**{k: v for k, v in d.items() if k not in ("numberAvailable", "pods")}, "pods": pods(d.get("pods"))}
        for d in st.get("daemonSets") or ()
    ]
    return {**report, "status": {**st, "daemonSets": daemonsets, "staticPods": pods(st.get("staticPods"))}}


def worth_posting(latest: Mapping[str, Any], sent: Mapping[str, Any] | None, serve_judges: bool) -> bool:
    """Whether a report differs from the last one sent enough to post it at once. A serve that judges
    availability itself (it said so, view.JUDGES_AVAILABILITY) counts a pod available minReadySeconds
    after the readySince it was sent, as the DaemonSet controller does: a report whose only news is
    that a pod became available waits for the next heartbeat (at 1000 nodes, a third of the reports of a
    rollout). Any other serve is told at once."""
    if latest == sent:
        return False
    if sent is None or not serve_judges:
        return True
    return _without_availability(latest) != _without_availability(sent)


def _ready_pods(report: Mapping[str, Any] | None) -> set[tuple[Any, Any, Any]]:
    st = report.get("status") if report is not None else None
    if not isinstance(st, Mapping):
        return set()
    pods = [p for d in st.get("daemonSets") or () for p in d.get("pods") or ()]
    pods += list(st.get("staticPods") or ())
    return {(p.get("namespace"), p.get("name"), p.get("revision")) for p in pods if p.get("ready")}


def urgent(latest: Mapping[str, Any], sent: Mapping[str, Any] | None) -> bool:
    """Whether `latest` says a pod became ready since `sent`: posted without waiting out MIN_GAP, as
    the kubelet's status manager sends a pod's Ready condition when it changes. A rollout waits for that
    news (its next node's turn, or serve's count of minReadySeconds); a pod turns ready a few times at
    most per start, so this does not undo the coalescing of a burst of passes."""
    return bool(_ready_pods(latest) - _ready_pods(sent))


def status_url(base: str, node_name: str) -> str:
    return base.rstrip("/") + "/nodes/" + quote(node_name, safe="") + "/status"


def credentials_for(cfg: settings.Settings) -> settings.HttpSource | None:
    """The HTTP source sharing the status server's origin, whose TLS files and token we reuse."""
    if not cfg.status_server:
        return None
    origins = {urlsplit(u)[:2] for u in cfg.status_servers or (cfg.status_server,)}
    for src in cfg.sources:
        if isinstance(src, settings.HttpSource) and any(urlsplit(u)[:2] in origins for u in src.replicas):
            return src
    return None


def servers(cfg: settings.Settings) -> tuple[str, ...]:
    """Every configured status server (replicas of one `serve`), the first one first."""
    return cfg.status_servers or ((cfg.status_server,) if cfg.status_server else ())


class Reporter:
    """Posts the latest report; thread-safe `update`, `start`, `stop`."""

    def __init__(
        self,
        url: str | Sequence[str],
        node_name: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        min_gap: float = MIN_GAP,
        timeout: float = 5.0,
        auth: settings.HttpSource | None = None,
    ) -> None:
        bases = (url,) if isinstance(url, str) else tuple(url)
        self._urls = tuple(status_url(u, node_name) for u in bases)
        self._active = 0  # the replica in use
        self._interval = interval
        self._min_gap = min_gap
        self._timeout = timeout
        self._auth = auth
        self._cond = threading.Condition()
        self._latest: Mapping[str, Any] | None = None
        self._settling = False  # `_latest` is a pass's that started work (update)
        self._sent: Mapping[str, Any] | None = None
        self._stopping = False
        self._failing = False
        self._warned_plain = False
        self._thread: threading.Thread | None = None
        self._log = log.bind(status_server=http.display_url(self.url))
        self.sent = 0  # successful posts (for tests and debugging)
        self.serve_judges = False  # the replica in use judges availability itself (its last answer said so)
        self._connections = http.Connections()  # one kept-alive connection for every post

    @property
    def url(self) -> str:
        """The status URL of the replica in use."""
        return self._urls[self._active]

    def update(self, report: Mapping[str, Any], settling: bool = False) -> None:
        """The newest report; wakes the worker if it differs from what was sent. `settling`: the pass
        that made it started work (stopping, creating, starting pods), so it describes a state that work
        is changing, and unless a pod turned ready (`urgent`) it waits up to SETTLE_DELAY for the next
        pass's report, which is posted instead."""
        with self._cond:
            self._latest = report
            self._settling = settling
            if worth_posting(report, self._sent, self.serve_judges):
                self._cond.notify_all()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
            self._thread = None
        self._connections.close()

    def _context(self) -> ssl.SSLContext | None:
        if urlsplit(self.url).scheme != "https":
            return None
        a = self._auth
        return http.ssl_context(a.ca_file, a.client_cert, a.client_key) if a else http.ssl_context()

    def post(self, report: Mapping[str, Any]) -> bool:
        """One report now, to the replica in use or, on a connection error, the next ones; True when taken."""
        for attempt in range(len(self._urls)):
            error = self._post_once(report)
            if error is None:
                break
            if attempt + 1 < len(self._urls) and http.replica_down(error):
                old = self.url
                self._active = (self._active + 1) % len(self._urls)
                metrics.SOURCE_FAILOVERS.labels(source="statusServer").inc()
                self._log.warning(
                    "status_server_failover",
                    error=str(error),
                    to=http.display_url(self.url),
                    **{"from": http.display_url(old)},
                )
                continue
            metrics.STATUS_REPORTS.labels(result="error").inc()
            if not self._failing:
                self._log.warning("status_report_failed", error=str(error))
            self._failing = True
            return False
        metrics.STATUS_REPORTS.labels(result="ok").inc()
        if self._failing:
            self._log.info("status_report_recovered")
        self._failing = False
        self.sent += 1
        return True

    def _post_once(self, report: Mapping[str, Any]) -> http.FetchError | None:
        try:
            headers = dict(self._auth.headers) if self._auth else {}
            headers.update(http.bearer(self._auth.token_file if self._auth else None))
            if (
                not self._warned_plain
                and urlsplit(self.url).scheme == "http"
                and any(k.lower() == "authorization" for k in headers)
            ):
                self._warned_plain = True
                self._log.warning(
                    "status_server_plain_http", warning="a bearer token is sent over plain http; use https"
                )
            resp = http.post_json(
                self.url,
                report,
                timeout=self._timeout,
                headers=headers,
                context=self._context(),
                connections=self._connections,
            )
        except http.FetchError as exc:
            return exc
        self.serve_judges = resp.headers.get(view.JUDGES_AVAILABILITY.lower()) == "1"
        return None

    def _stopping_or_urgent(self) -> bool:
        return self._stopping or (self._latest is not None and urgent(self._latest, self._sent))

    def _run(self) -> None:
        def due() -> bool:
            if self._stopping:
                return True
            return self._latest is not None and worth_posting(self._latest, self._sent, self.serve_judges)

        def settled() -> bool:
            return not self._settling or self._stopping_or_urgent()

        while True:
            with self._cond:
                self._cond.wait_for(due, timeout=self._interval)
                # a pass that started work: its successor's report, when it comes soon, tells what it did
                self._cond.wait_for(settled, timeout=SETTLE_DELAY)
                if self._stopping:
                    return
                report = self._latest
            if report is None:
                continue
            ok = self.post(report)
            with self._cond:
                # space posts out (a burst of passes costs one report), unless a pod turned ready (urgent);
                # a failing server is retried slowly
                if ok:
                    self._sent = report
                    self._cond.wait_for(self._stopping_or_urgent, timeout=self._min_gap)
                else:
                    self._cond.wait_for(lambda: self._stopping, timeout=self._interval)


def report_sync(cfg: settings.Settings, a: agent_mod.Agent, result: agent_mod.PassResult) -> bool:
    """`sync`'s one status report (`"mode": "sync"`), so a node that is only synced shows in the fleet view.

    It describes what runs after the pass (observed again when the pass acted). A report that cannot be
    delivered is a logged warning, never the sync's failure: the node's work is done either way.
    """
    if result.outcomes and a.runtime is not None:
        result = a.reconcile(dry_run=True)
    reporter = Reporter(servers(cfg), a.node.name, timeout=SYNC_REPORT_TIMEOUT, auth=credentials_for(cfg))
    try:
        return reporter.post(node_report(a, result, mode=view.MODE_SYNC))
    finally:
        reporter.stop()
