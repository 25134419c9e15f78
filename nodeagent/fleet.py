"""The fleet view of `nodeagent serve` (pure): node reports in, node and DaemonSet tables out.

Each agent reports its node (name, labels, taints) and its `status -o json` document (DESIGN.md §4).
A node is ready while its last report is younger than the grace period (40 s by default, the
Kubernetes node controller's `node-monitor-grace-period`). DaemonSet counters are Kubernetes'
DaemonSetStatus fields summed over nodes, the way the DaemonSet controller counts them: pods on a node
that stopped reporting still count as desired, current and up to date (nobody removed them), but not
as ready or available (the node controller marks such pods not ready).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GRACE = 40.0

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
MAX_REPORT_EVENTS = 200  # kept per node; a node sends its newest (cli.REPORT_EVENTS)


class ReportError(ValueError):
    """A node report does not have the expected shape; the message says where."""


@dataclass(frozen=True)
class NodeReport:
    """What one agent said last, and when it arrived (server clock)."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Mapping[str, str], ...]
    status: Mapping[str, Any]
    received_at: float
    agent_version: str = ""
    errors: tuple[str, ...] = ()
    events: tuple[Mapping[str, Any], ...] = ()  # the node's recent events (events.Event.to_json)


def parse_report(doc: object, name: str, now: float) -> NodeReport:
    """Check a posted report (`{name, labels, taints, status, agentVersion?, errors?}`)."""
    if not isinstance(doc, dict):
        raise ReportError("the report must be a JSON object")
    if doc.get("name") != name:
        raise ReportError(f"name {doc.get('name')!r} does not match the URL's node {name!r}")
    labels = doc.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ReportError("labels must map strings to strings")
    taints = doc.get("taints") or []
    if not isinstance(taints, list) or not all(isinstance(t, dict) for t in taints):
        raise ReportError("taints must be a list of objects")
    status = doc.get("status") or {}
    if not isinstance(status, dict):
        raise ReportError("status must be an object (the `status -o json` document)")
    daemonsets = status.get("daemonSets") or []
    if not isinstance(daemonsets, list) or not all(isinstance(d, dict) for d in daemonsets):
        raise ReportError("status.daemonSets must be a list of objects")
    for i, d in enumerate(daemonsets):
        for key in ("namespace", "name"):
            if not isinstance(d.get(key), str):
                raise ReportError(f"status.daemonSets[{i}].{key} must be a string")
        for key in COUNTERS:
            if not isinstance(d.get(key, 0), int):
                raise ReportError(f"status.daemonSets[{i}].{key} must be an integer")
    errs = doc.get("errors") or []
    if not isinstance(errs, list):
        raise ReportError("errors must be a list")
    evs = doc.get("events") or []
    if not isinstance(evs, list) or not all(isinstance(e, dict) for e in evs):
        raise ReportError("events must be a list of objects")
    return NodeReport(
        name=name,
        labels={str(k): str(v) for k, v in labels.items()},
        taints=tuple({str(k): str(v) for k, v in t.items()} for t in taints),
        status=status,
        received_at=now,
        agent_version=str(doc.get("agentVersion") or ""),
        errors=tuple(str(e) for e in errs),
        events=tuple(evs[:MAX_REPORT_EVENTS]),
    )


@dataclass
class Fleet:
    """The latest report of every node; not thread-safe (serve guards it with a lock)."""

    grace: float = DEFAULT_GRACE
    nodes: dict[str, NodeReport] = field(default_factory=dict)

    def report(self, r: NodeReport) -> None:
        self.nodes[r.name] = r

    def ready(self, r: NodeReport, now: float) -> bool:
        return now - r.received_at <= self.grace

    def nodes_json(self, now: float) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.nodes):
            r = self.nodes[name]
            pods = [p for d in r.status.get("daemonSets") or [] for p in d.get("pods") or []]
            pods += list(r.status.get("staticPods") or [])
            out.append(
                {
                    "name": name,
                    "ready": self.ready(r, now),
                    "labels": dict(sorted(r.labels.items())),
                    "taints": [dict(t) for t in r.taints],
                    "lastSeen": _iso(r.received_at),
                    "lastSeenSecondsAgo": round(max(0.0, now - r.received_at), 1),
                    "agentVersion": r.agent_version,
                    "pods": len(pods),
                    "errors": list(r.errors),
                }
            )
        return out

    def daemonsets_json(self, now: float, known: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """Per DaemonSet, the counters summed over nodes; `known` adds ones no node reported yet."""
        sums: dict[tuple[str, str], dict[str, int]] = {key: dict.fromkeys(COUNTERS, 0) for key in known}
        for r in self.nodes.values():
            ready = self.ready(r, now)
            for d in r.status.get("daemonSets") or []:
                key = (str(d["namespace"]), str(d["name"]))
                total = sums.setdefault(key, dict.fromkeys(COUNTERS, 0))
                for c in COUNTERS:
                    if ready or c not in _READY_ONLY:
                        total[c] += int(d.get(c, 0))
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
