"""The fleet view of `nodeagent serve` (pure): node reports in, node and DaemonSet tables out.

Each agent reports its node (name, labels, taints) and its `status -o json` document (DESIGN.md §4).
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

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GRACE = 40.0
DEFAULT_EXPIRY = 24 * 3600.0  # NotReady this long (after the grace period): forgotten
DEFAULT_MAX_NODES = 10_000

MODE_AGENT = "agent"  # `nodeagent run`
MODE_SYNC = "sync"  # one `nodeagent sync` pass
MODES = (MODE_AGENT, MODE_SYNC)

# DaemonSetStatus fields, summed over nodes; numberUnavailable is derived (desired - available).
COUNTERS = (
    "desiredNumberScheduled",
    "currentNumberScheduled",
    "numberReady",
    "updatedNumberScheduled",
    "numberAvailable",
    "numberMisscheduled",
)
_READY_ONLY = ("numberReady", "numberAvailable")


MAX_ERRORS = 100  # a report's `errors` beyond this are dropped (with a note), each clipped to
MAX_ERROR_CHARS = 2000
MAX_STRING = 253  # names, namespaces, taint keys and values, versions
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class ReportError(ValueError):
    """A node report does not have the expected shape; the message names the field path."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class DaemonSetReport:
    """One DaemonSet as one node sees it: the DaemonSetStatus counters (0 or 1 each) and its pods."""

    namespace: str
    name: str
    counters: tuple[int, ...]  # in COUNTERS order
    pods: int


@dataclass(frozen=True)
class NodeReport:
    """What one agent said last, and when it arrived (server clock): only what the fleet view shows,
    typed and bounded, never the raw document (a node cannot make `serve` keep megabytes)."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    daemonsets: tuple[DaemonSetReport, ...]
    static_pods: int
    received_at: float
    agent_version: str = ""
    errors: tuple[str, ...] = ()
    mode: str = MODE_AGENT


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
        if raw is None and not required:
            return ""
        if not isinstance(raw, str) or (required and not raw):
            raise ReportError(f"{path}: must be a non-empty string, got {_kind(raw)}")
        if len(raw) > limit:
            raise ReportError(f"{path}: longer than {limit} characters")
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in raw):
            raise ReportError(f"{path}: must not contain control characters")
        return raw

    def count(self, raw: object, path: str) -> int:
        if raw is None:
            return 0
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 1_000_000:
            raise ReportError(f"{path}: must be an integer between 0 and 1000000, got {_kind(raw)}")
        return raw

    def objects(self, raw: object, path: str) -> int:
        """A list of objects (pods), of which only the number is kept."""
        items = self.lst(raw, path)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ReportError(f"{path}[{i}]: must be an object, got {_kind(item)}")
        return len(items)


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


def parse_report(doc: object, name: str, now: float) -> NodeReport:
    """Check a posted report (`{name, labels, taints, status, agentVersion?, mode?, errors?}`) against the
    schema the fleet view reads; anything else in it is ignored and not kept. A report without a mode
    (from an older agent) is a running agent's."""
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
    daemonsets = []
    for i, d in enumerate(c.lst(status.get("daemonSets"), "status.daemonSets")):
        p = f"status.daemonSets[{i}]"
        d = c.obj(d, p)
        daemonsets.append(
            DaemonSetReport(
                namespace=c.str_(d.get("namespace"), f"{p}.namespace", required=True),
                name=c.str_(d.get("name"), f"{p}.name", required=True),
                counters=tuple(c.count(d.get(k), f"{p}.{k}") for k in COUNTERS),
                pods=c.objects(d.get("pods"), f"{p}.pods"),
            )
        )
    static_pods = c.objects(status.get("staticPods"), "status.staticPods")
    errs = c.lst(doc.get("errors"), "errors")
    errors = [str(e)[:MAX_ERROR_CHARS] if isinstance(e, str) else f"<{_kind(e)}>" for e in errs[:MAX_ERRORS]]
    if len(errs) > MAX_ERRORS:
        errors.append(f"... and {len(errs) - MAX_ERRORS} more error(s) not kept")
    mode = doc.get("mode") or MODE_AGENT
    if mode not in MODES:
        raise ReportError(f"mode: must be one of {', '.join(MODES)}")
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

    def report(self, r: NodeReport) -> bool:
        """Record a report; False (nothing recorded) when it is a new node and the fleet is full."""
        if r.name not in self.nodes and len(self.nodes) >= self.max_nodes:
            self.expire(r.received_at)
            if len(self.nodes) >= self.max_nodes:
                return False
        self.nodes[r.name] = r
        return True

    def delete(self, name: str) -> bool:
        return self.nodes.pop(name, None) is not None

    def expire(self, now: float) -> list[str]:
        """Forget nodes NotReady for longer than `expiry`; their names."""
        gone = [n for n, r in self.nodes.items() if now - r.received_at > self.grace + self.expiry]
        for n in gone:
            del self.nodes[n]
        return gone

    def ready(self, r: NodeReport, now: float) -> bool:
        return now - r.received_at <= self.grace

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
                    "pods": sum(d.pods for d in r.daemonsets) + r.static_pods,
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
                for c, n in zip(COUNTERS, d.counters, strict=True):
                    if ready or c not in _READY_ONLY:
                        total[c] += n
        out = []
        for (namespace, name), total in sorted(sums.items()):
            unavailable = max(0, total["desiredNumberScheduled"] - total["numberAvailable"])
            out.append({"namespace": namespace, "name": name, **total, "numberUnavailable": unavailable})
        return out

    def counts(self, now: float) -> tuple[int, int]:
        """(ready, not ready) nodes."""
        ready = sum(1 for r in self.nodes.values() if self.ready(r, now))
        return ready, len(self.nodes) - ready


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
