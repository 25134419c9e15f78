"""The fleet view of `nodeagent serve` (pure): node reports in, node and DaemonSet tables out.

Each agent reports its node (name, labels, taints) and its `status -o json` document (ARCHITECTURE.md §5).
A node is ready while its last report is younger than the grace period (40 s by default, the
Kubernetes node controller's `node-monitor-grace-period`). DaemonSet counters are Kubernetes'
DaemonSetStatus fields summed over nodes, the way the DaemonSet controller counts them: pods on a node
that stopped reporting still count as desired, current and up to date (nobody removed them), but not
as ready or available (the node controller marks such pods not ready).

A report says how the node is managed (`mode`): by a running agent (`run`, reporting every 10 s), or by
`nodeagent sync` (cron, Ansible, by hand), which reports once per pass. A synced node is shown with the
time it was last synced; it goes NotReady after the grace period like any other node.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeagent import errors
from nodeagent.agent.status import COUNTERS as COUNTERS  # DaemonSetStatus fields, summed over nodes

DEFAULT_GRACE = 40.0
DEFAULT_EXPIRY = 24 * 3600.0  # NotReady this long (after the grace period): forgotten
DEFAULT_MAX_NODES = 10_000

MODE_AGENT = "agent"  # `nodeagent run`
MODE_SYNC = "sync"  # one `nodeagent sync` pass
MODES = (MODE_AGENT, MODE_SYNC)

_READY_ONLY = ("numberReady", "numberAvailable")
_DESIRED, _AVAILABLE = COUNTERS.index("desiredNumberScheduled"), COUNTERS.index("numberAvailable")
MAX_REPORT_EVENTS = 200  # kept per node; a node sends its newest (report.REPORT_EVENTS)


MAX_ERRORS = 100  # a report's `errors` beyond this are dropped (with a note), each clipped to
MAX_ERROR_CHARS = 2000
MAX_STRING = 253  # names, namespaces, taint keys and values, versions
# on a report's answer: this serve judges availability from readySince itself (controller._pod_state),
# so a node need not post a report whose only news is that a pod became available (report.worth_posting)
JUDGES_AVAILABILITY = "X-Nodeagent-Judges-Availability"
MAX_TIME = 1e11  # seconds since the epoch: a node's time past year 5000 is no time
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: never kept in a reported string


class ReportError(errors.NodeAgentError, ValueError):
    """A node report does not have the expected shape; the message names the field path."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class ContainerReport:
    """What the fleet's kube-state series need of one container: its restarts and waiting reason."""

    name: str
    restart_count: int
    state: str
    reason: str


@dataclass(frozen=True)
class PodReport:
    namespace: str
    name: str
    ready: bool
    containers: tuple[ContainerReport, ...]
    revision: str = ""  # the template hash it runs (the rollout maps it to a revision number)
    available: bool = False  # ready for minReadySeconds, as the agent counts numberAvailable
    terminating: bool = False
    ready_since: float | None = None  # the node's clock: when the pod last became ready (readySince)
    ready_at: float | None = None  # serve's clock: the same moment, as serve can vouch for it (_ready_at)

    def to_json(self) -> dict[str, Any]:
        """The fields of `status -o json`'s pod that `kubestate` reads."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "containers": [
                {"name": c.name, "restartCount": c.restart_count, "state": c.state, "reason": c.reason}
                for c in self.containers
            ],
        }


@dataclass(frozen=True)
class DaemonSetReport:
    """One DaemonSet as one node sees it: the DaemonSetStatus counters (0 or 1 each) and its pods."""

    namespace: str
    name: str
    counters: tuple[int, ...]  # in COUNTERS order
    pods: tuple[PodReport, ...]


@dataclass(frozen=True)
class NodeReport:
    """What one agent said last, and when it arrived (server clock): only what the fleet view shows,
    typed and bounded, never the raw document (a node cannot make `serve` keep megabytes)."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    daemonsets: tuple[DaemonSetReport, ...]
    static_pods: tuple[PodReport, ...]
    received_at: float
    agent_version: str = ""
    errors: tuple[str, ...] = ()
    mode: str = MODE_AGENT
    events: tuple[Mapping[str, Any], ...] = ()  # the node's recent events (events.Event.to_json)
    node: str = ""  # status.node: the pod uids of static pods derive from it

    def heard_at(self, t: float) -> NodeReport:
        """This report, arrived again at `t` (a heartbeat that repeats it). A shallow copy with one field
        set: `dataclasses.replace` runs `__init__` over all eleven fields, and a fleet's heartbeats
        (hundreds a second per replica) were a tenth of a replica's own work in a profile."""
        new = object.__new__(NodeReport)
        new.__dict__.update(self.__dict__)
        new.__dict__["received_at"] = t
        return new

    def rollout_view(self) -> tuple[object, ...]:
        """What the rollout controller reads of a report: a heartbeat changing none of it costs no pass."""
        return (self.labels, self.taints, self.daemonsets)

    def status_doc(self) -> dict[str, Any]:
        """The kept part of the node's `status -o json` document, in its shape (for `kubestate`)."""
        return {
            "node": self.node,
            "daemonSets": [
                {"namespace": d.namespace, "name": d.name, "pods": [p.to_json() for p in d.pods]}
                for d in self.daemonsets
            ],
            "staticPods": [p.to_json() for p in self.static_pods],
        }


class _Checker:
    """Typed reads of the posted JSON; the first problem raises ReportError naming its path."""

    def obj(self, raw: object, path: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise ReportError(f"{path}: must be an object, got {_kind(raw)}")
        return raw

    def lst(self, raw: object, path: str) -> list[Any]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise ReportError(f"{path}: must be a list, got {_kind(raw)}")
        return raw

    def str_(self, raw: object, path: str, *, required: bool = False, limit: int = MAX_STRING) -> str:
        if type(raw) is str and raw.isprintable() and len(raw) <= limit and (raw or not required):
            return raw  # the common case, in one C call: printable strings hold no control characters
        if raw is None and not required:
            return ""
        if not isinstance(raw, str) or (required and not raw):
            raise ReportError(f"{path}: must be a non-empty string, got {_kind(raw)}")
        if len(raw) > limit:
            raise ReportError(f"{path}: longer than {limit} characters")
        if _CONTROL.search(raw):
            raise ReportError(f"{path}: must not contain control characters")
        return raw

    def count(self, raw: object, path: str) -> int:
        if raw is None:
            return 0
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 1_000_000:
            raise ReportError(f"{path}: must be an integer between 0 and 1000000, got {_kind(raw)}")
        return raw

    def time(self, raw: object, path: str) -> float | None:
        """A time in seconds since the epoch (a node's clock), or None."""
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= MAX_TIME:
            raise ReportError(f"{path}: must be a time in seconds since the epoch, got {_kind(raw)}")
        return float(raw)

    def pods(
        self, raw: object, path: str, now: float = 0.0, before: _Before | None = None
    ) -> tuple[PodReport, ...]:
        """A list of pods, of which only what the fleet view and its metrics read is kept. `before`
        holds the same pods in the node's previous report, for `_ready_at`."""
        out = []
        for i, item in enumerate(self.lst(raw, path)):
            p = self.obj(item, f"{path}[{i}]")
            containers = []
            for j, c in enumerate(self.lst(p.get("containers"), f"{path}[{i}].containers")):
                cp = f"{path}[{i}].containers[{j}]"
                c = self.obj(c, cp)
                containers.append(
                    ContainerReport(
                        name=self.str_(c.get("name"), f"{cp}.name", limit=253),
                        restart_count=self.count(c.get("restartCount"), f"{cp}.restartCount"),
                        state=self.str_(c.get("state"), f"{cp}.state", limit=64),
                        reason=self.str_(c.get("reason"), f"{cp}.reason", limit=128),
                    )
                )
            flags = {}
            for flag in ("ready", "available", "terminating"):
                flags[flag] = p.get(flag, False)
                if not isinstance(flags[flag], bool):
                    raise ReportError(f"{path}[{i}].{flag}: must be a boolean, got {_kind(flags[flag])}")
            namespace = self.str_(p.get("namespace"), f"{path}[{i}].namespace", limit=253)
            name = self.str_(p.get("name"), f"{path}[{i}].name", limit=253)
            revision = self.str_(p.get("revision"), f"{path}[{i}].revision", limit=64)
            since = self.time(p.get("readySince"), f"{path}[{i}].readySince") if flags["ready"] else None
            out.append(
                PodReport(
                    namespace=namespace,
                    name=name,
                    ready=flags["ready"],
                    containers=tuple(containers),
                    revision=revision,
                    available=flags["available"],
                    terminating=flags["terminating"],
                    ready_since=since,
                    ready_at=_ready_at(since, (namespace, name, revision), before, now),
                )
            )
        return tuple(out)

    def event(self, raw: object, path: str) -> dict[str, Any]:
        """One of the node's recent events (events.Event.to_json), rebuilt from its checked fields only;
        the message may carry line breaks from an engine error: they become spaces."""
        e = self.obj(raw, path)
        obj = self.obj(e.get("involvedObject"), f"{path}.involvedObject")
        kind = self.str_(e.get("type"), f"{path}.type")
        if kind not in ("Normal", "Warning"):
            raise ReportError(f"{path}.type: must be Normal or Warning")
        message = e.get("message")
        if not isinstance(message, str):
            raise ReportError(f"{path}.message: must be a string, got {_kind(message)}")
        message = _CONTROL.sub(" ", message[:MAX_ERROR_CHARS])
        src = self.obj(e.get("source"), f"{path}.source")
        ref = {k: self.str_(obj.get(k), f"{path}.involvedObject.{k}") for k in ("kind", "namespace", "name")}
        if obj.get("fieldPath"):
            ref["fieldPath"] = self.str_(obj.get("fieldPath"), f"{path}.involvedObject.fieldPath")
        return {
            "type": kind,
            "reason": self.str_(e.get("reason"), f"{path}.reason", limit=128),
            "message": message,
            "involvedObject": ref,
            "count": self.count(e.get("count"), f"{path}.count"),
            "firstTimestamp": self.str_(e.get("firstTimestamp"), f"{path}.firstTimestamp", limit=64),
            "lastTimestamp": self.str_(e.get("lastTimestamp"), f"{path}.lastTimestamp", limit=64),
            "source": {
                "component": self.str_(src.get("component"), f"{path}.source.component", limit=64),
                "host": self.str_(src.get("host"), f"{path}.source.host", limit=253),
            },
        }


@dataclass(frozen=True)
class _Before:
    """What `_ready_at` needs of a node's previous report: when it arrived, and its pods by
    (namespace, name, revision)."""

    received_at: float
    pods: Mapping[tuple[str, str, str], PodReport]

    @staticmethod
    def of(previous: NodeReport | None) -> _Before | None:
        if previous is None:
            return None
        pods = [p for d in previous.daemonsets for p in d.pods] + list(previous.static_pods)
        return _Before(previous.received_at, {(p.namespace, p.name, p.revision): p for p in pods})


def _ready_at(
    since: float | None, key: tuple[str, str, str], before: _Before | None, now: float
) -> float | None:
    """When the pod became ready, on serve's clock, for availability (minReadySeconds) judged by serve
    as the DaemonSet controller judges it (podutil.IsPodAvailable against the Ready condition's
    lastTransitionTime): the node's `readySince`, but never later than this report's arrival (a node
    whose clock runs ahead cannot hold a rollout back) nor earlier than the previous report's arrival
    when that one did not show the pod ready (a clock far behind cannot skip minReadySeconds by more than
    a report's delay). The same readySince reported again keeps its first estimate."""
    if since is None:
        return None
    old = before.pods.get(key) if before is not None else None
    if old is not None and old.ready and old.ready_since == since and old.ready_at is not None:
        return old.ready_at
    at = min(since, now)
    if before is not None and (old is None or not old.ready or old.ready_since != since):
        at = max(at, min(before.received_at, now))
    return at


def _kind(raw: object) -> str:
    """A value's JSON type, never the value (a report is untrusted input, and may be huge)."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int | float):
        return "a number"
    if isinstance(raw, str):
        return "a string" if raw else "an empty string"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "an object"
    return type(raw).__name__


def _event_key(e: object) -> object:
    """What tells events apart quickly (`_known`): their time, reason and message; None when `e` is no
    event of plain strings (it is then checked in full)."""
    if not isinstance(e, dict):
        return None
    key = (e.get("lastTimestamp"), e.get("reason"), e.get("message"))
    return key if all(type(k) is str for k in key) else None


def _known(known: Mapping[object, list[Mapping[str, Any]]], raw: object) -> Mapping[str, Any] | None:
    """The checked event equal to `raw`, if `known` (the previous report's, by `_event_key`) holds one."""
    for k in known.get(_event_key(raw), ()):
        if k == raw:
            return k
    return None


def body_digest(body: bytes) -> bytes:
    """A posted report's digest: `Fleet.unchanged` knows a repeated body by it, and replicas share it
    (hex, pgstore.doc_hash) so a reader knows a heartbeat without its document."""
    return hashlib.blake2b(body, digest_size=16).digest()


def parse_report(doc: object, name: str, now: float, previous: NodeReport | None = None) -> NodeReport:
    """Check a posted report (`{name, labels, taints, status, agentVersion?, mode?, errors?}`) against the
    schema the fleet view reads; anything else in it is ignored and not kept. A report without a mode
    (from an older agent) is a running agent's.

    `previous` is the node's last report: an event equal to one it kept is that checked event (equal
    to a checked value, it passes the checks), so the 20 events most reports repeat are not checked
    again (field by field, they were most of a report's parsing)."""
    c = _Checker()
    if not isinstance(doc, dict):
        raise ReportError("the report must be a JSON object")
    if doc.get("name") != name:
        raise ReportError("name: does not match the node name in the URL")
    labels: dict[str, str] = {}
    for k, v in c.obj(doc.get("labels"), "labels").items():
        labels[c.str_(k, "labels", limit=317)] = c.str_(v, f"labels[{k}]", limit=63)
    taints = []
    for i, t in enumerate(c.lst(doc.get("taints"), "taints")):
        t = c.obj(t, f"taints[{i}]")
        effect = c.str_(t.get("effect"), f"taints[{i}].effect")
        if effect and effect not in TAINT_EFFECTS:
            raise ReportError(f"taints[{i}].effect: must be one of {', '.join(TAINT_EFFECTS)}")
        taints.append(
            Taint(
                c.str_(t.get("key"), f"taints[{i}].key"), c.str_(t.get("value"), f"taints[{i}].value"), effect
            )
        )
    status = c.obj(doc.get("status"), "status")
    before = _Before.of(previous)
    daemonsets = []
    for i, d in enumerate(c.lst(status.get("daemonSets"), "status.daemonSets")):
        p = f"status.daemonSets[{i}]"
        d = c.obj(d, p)
        daemonsets.append(
            DaemonSetReport(
                namespace=c.str_(d.get("namespace"), f"{p}.namespace", required=True),
                name=c.str_(d.get("name"), f"{p}.name", required=True),
                counters=tuple(c.count(d.get(k), f"{p}.{k}") for k in COUNTERS),
                pods=c.pods(d.get("pods"), f"{p}.pods", now, before),
            )
        )
    static_pods = c.pods(status.get("staticPods"), "status.staticPods", now, before)
    node = c.str_(status.get("node"), "status.node", limit=253)
    errs = c.lst(doc.get("errors"), "errors")
    errors = [str(e)[:MAX_ERROR_CHARS] if isinstance(e, str) else f"<{_kind(e)}>" for e in errs[:MAX_ERRORS]]
    if len(errs) > MAX_ERRORS:
        errors.append(f"... and {len(errs) - MAX_ERRORS} more error(s) not kept")
    mode = doc.get("mode") or MODE_AGENT
    if mode not in MODES:
        raise ReportError(f"mode: must be one of {', '.join(MODES)}")
    evs = c.lst(doc.get("events"), "events")
    known: dict[object, list[Mapping[str, Any]]] = {}
    for old in previous.events if previous is not None else ():
        known.setdefault(_event_key(old), []).append(old)
    events = tuple(
        _known(known, e) or c.event(e, f"events[{i}]") for i, e in enumerate(evs[:MAX_REPORT_EVENTS])
    )
    return NodeReport(
        name=name,
        labels=labels,
        taints=tuple(taints),
        daemonsets=tuple(daemonsets),
        static_pods=static_pods,
        received_at=now,
        agent_version=c.str_(doc.get("agentVersion"), "agentVersion"),
        errors=tuple(errors),
        mode=str(mode),
        events=events,
        node=node,
    )


@dataclass
class Fleet:
    """The latest report of every node; not thread-safe (serve guards it with a lock).

    A node NotReady for longer than `expiry` is forgotten (it re-registers with its next report);
    `max_nodes` caps how many are known at once.
    """

    grace: float = DEFAULT_GRACE
    nodes: dict[str, NodeReport] = field(default_factory=dict)
    expiry: float = DEFAULT_EXPIRY
    max_nodes: int = DEFAULT_MAX_NODES
    digests: dict[str, bytes] = field(default_factory=dict)  # node -> digest of the body it was parsed from
    # moved by every change the rollout controller reads (a node new, back from NotReady, gone, or with
    # other labels, taints or DaemonSet reports), not by a heartbeat: serve plans again only then
    changes: int = 0
    # (namespace, name) -> minReadySeconds of the DaemonSets serve publishes: their numberAvailable
    # counts a pod ready that long by serve's clock, as the rollout controller does (a node tells a
    # serve that judges availability so only with its next heartbeat: report.worth_posting)
    min_ready: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def report(self, r: NodeReport, digest: bytes = b"") -> bool:
        """Record a report; False (nothing recorded) when it is a new node and the fleet is full.
        `digest` identifies the posted body, so the same body posted again need not be parsed again
        (`unchanged`)."""
        prev = self.nodes.get(r.name)
        if prev is None and len(self.nodes) >= self.max_nodes:
            self.expire(r.received_at)
            if len(self.nodes) >= self.max_nodes:
                return False
        if prev is None or not self.ready(prev, r.received_at) or prev.rollout_view() != r.rollout_view():
            self.changes += 1
        self.nodes[r.name] = r
        if digest:
            self.digests[r.name] = digest
        else:
            self.digests.pop(r.name, None)
        return True

    def unchanged(self, name: str, digest: bytes, now: float) -> NodeReport | None:
        """The node's report re-dated to `now` when its last one was parsed from a body of this digest
        (a heartbeat that repeats itself: `parse_report` of it would give the same report), else None."""
        prev = self.nodes.get(name)
        if prev is None or not digest or self.digests.get(name) != digest:
            return None
        return prev.heard_at(now)

    def delete(self, name: str) -> bool:
        self.digests.pop(name, None)
        if self.nodes.pop(name, None) is None:
            return False
        self.changes += 1
        return True

    def expire(self, now: float) -> list[str]:
        """Forget nodes NotReady for longer than `expiry`; their names."""
        gone = [n for n, r in self.nodes.items() if now - r.received_at > self.grace + self.expiry]
        for n in gone:
            del self.nodes[n]
            self.digests.pop(n, None)
            self.changes += 1
        return gone

    def ready(self, r: NodeReport, now: float) -> bool:
        return r.received_at >= self.ready_after(now)

    def ready_after(self, now: float) -> float:
        """The oldest arrival of a report that still makes its node Ready at `now` (`ready`); a pass over
        every node compares with it instead of calling `ready` for each."""
        return now - self.grace

    def nodes_json(self, now: float) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.nodes):
            r = self.nodes[name]
            out.append(
                {
                    "name": name,
                    "ready": self.ready(r, now),
                    "labels": dict(sorted(r.labels.items())),
                    "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in r.taints],
                    "lastSeen": _iso(r.received_at),
                    "lastSeenSecondsAgo": round(max(0.0, now - r.received_at), 1),
                    "agentVersion": r.agent_version,
                    "mode": r.mode,
                    "pods": sum(len(d.pods) for d in r.daemonsets) + len(r.static_pods),
                    "errors": list(r.errors),
                }
            )
        return out

    def daemonsets_json(self, now: float, known: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """Per DaemonSet, the counters summed over nodes; `known` adds ones no node reported yet."""
        sums: dict[tuple[str, str], dict[str, int]] = {key: dict.fromkeys(COUNTERS, 0) for key in known}
        for r in self.nodes.values():
            ready = self.ready(r, now)
            for d in r.daemonsets:
                total = sums.setdefault((d.namespace, d.name), dict.fromkeys(COUNTERS, 0))
                for c, n in zip(COUNTERS, self.counters(d, now), strict=True):
                    if ready or c not in _READY_ONLY:
                        total[c] += n
        out = []
        for (namespace, name), total in sorted(sums.items()):
            unavailable = max(0, total["desiredNumberScheduled"] - total["numberAvailable"])
            out.append({"namespace": namespace, "name": name, **total, "numberUnavailable": unavailable})
        return out

    def counters(self, d: DaemonSetReport, now: float) -> tuple[int, ...]:
        """The node's counters for `d`, numberAvailable 1 as soon as a pod of it has been ready for
        minReadySeconds by serve's clock (PodReport.ready_at), whether or not the node said so yet."""
        min_ready = self.min_ready.get((d.namespace, d.name))
        if min_ready is None or d.counters[_DESIRED] == 0 or d.counters[_AVAILABLE] > 0:
            return d.counters
        for p in d.pods:
            if p.ready and not p.terminating and p.ready_at is not None and now - p.ready_at >= min_ready:
                return (*d.counters[:_AVAILABLE], 1, *d.counters[_AVAILABLE + 1 :])
        return d.counters

    def counts(self, now: float) -> tuple[int, int]:
        """(ready, not ready) nodes."""
        ready = sum(1 for r in self.nodes.values() if self.ready(r, now))
        return ready, len(self.nodes) - ready


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
