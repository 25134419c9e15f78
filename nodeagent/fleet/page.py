"""The fleet pages of `nodeagent serve` (pure): plain HTML, no script, no build step.

`/` lists DaemonSets and nodes and links to their drill-downs, `/nodes/NAME` (labels, taints, conditions,
pods, recent events) and `/daemonsets/NS/NAME` (counters, rollout, each node's pods). Every value that
comes from a node report or a manifest passes through `html.escape` (cells, links, titles): a node
is untrusted input, and a label value or event message may hold `<script>`. Link targets are also
percent-encoded. Pages refresh themselves with a meta tag.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from nodeagent.fleet import rolloutview
from nodeagent.fleet import view as fleet

DS_HEADERS = ("NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "MISSCHEDULED")
NODE_HEADERS = ("NAME", "STATUS", "LABELS", "TAINTS", "LAST SEEN", "PODS")
POD_HEADERS = ("NAMESPACE", "NAME", "OWNER", "READY", "STATUS", "RESTARTS", "CONTAINERS", "REVISION")
EVENT_HEADERS = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE")
RECENT_EVENTS = 50  # shown on a node's page, newest first

_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:2em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#eee}"
    ".bad{color:#b00020;font-weight:bold}.ok{color:#1b7e24}nav{margin-bottom:1em}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}"
)


class Cell:
    """A table cell: escaped text, optionally a link and a CSS class (both escaped too)."""

    __slots__ = ("cls", "href", "text")

    def __init__(self, text: str, href: str = "", cls: str = "") -> None:
        self.text, self.href, self.cls = text, href, cls

    def inner(self) -> str:
        body = html.escape(self.text)
        return f'<a href="{html.escape(self.href)}">{body}</a>' if self.href else body

    def attr(self) -> str:
        return f' class="{html.escape(self.cls)}"' if self.cls else ""

    def render(self, tag: str = "td") -> str:
        return f"<{tag}{self.attr()}>{self.inner()}</{tag}>"


def node_href(name: str) -> str:
    return "/nodes/" + quote(name, safe="")


def daemonset_href(namespace: str, name: str) -> str:
    return f"/daemonsets/{quote(namespace, safe='')}/{quote(name, safe='')}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "none") -> str:
    """Rows of cells: a `Cell`, or anything else shown as its escaped `str()`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join((c if isinstance(c, Cell) else Cell(str(c))).render() for c in r) + "</tr>"
        for r in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}">{html.escape(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: Sequence[str], refresh: int, home: bool = True) -> str:
    nav = '<nav><a href="/">&larr; fleet</a></nav>' if home else ""
    return "".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<meta http-equiv='refresh' content='{int(refresh)}'><title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style></head><body>{nav}<h1>{html.escape(title)}</h1>",
            *body,
            "</body></html>",
        ]
    )


def _status_cell(ready: bool) -> Cell:
    return Cell("Ready", cls="ok") if ready else Cell("NotReady", cls="bad")


def _labels(labels: Mapping[str, str], hide_builtin: bool = False) -> str:
    return ",".join(
        f"{k}={v}" for k, v in labels.items() if not (hide_builtin and k.startswith("kubernetes.io/"))
    )


def _taints(taints: Iterable[Mapping[str, Any]]) -> str:
    return ",".join(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in taints) or "-"


def _ago(seconds: float) -> str:
    return f"{max(0.0, seconds):.0f}s ago"


# --- the fleet ----------------------------------------------------------------------------------------


def render_fleet(doc: Mapping[str, Any], refresh: int = 5) -> str:
    """The fleet page: DaemonSets, nodes (each linked to its drill-down), manifest errors."""
    ds_rows = [
        [
            d["namespace"],
            Cell(d["name"], daemonset_href(d["namespace"], d["name"])),
            *(str(d[c]) for c in fleet.COUNTERS[:5]),
            str(d["numberMisscheduled"]),
            *rolloutview.rollout_cells(d),
        ]
        for d in doc["daemonSets"]
    ]
    node_rows = [
        [
            Cell(n["name"], node_href(n["name"])),
            _status_cell(bool(n["ready"])),
            _labels(n["labels"], hide_builtin=True),
            _taints(n["taints"]),
            ("last synced " if n.get("mode") == fleet.MODE_SYNC else "") + _ago(n["lastSeenSecondsAgo"]),
            str(n["pods"]),
        ]
        for n in doc["nodes"]
    ]
    err_rows = [
        [e["file"] + (f"#{e['document']}" if e["document"] is not None else ""), e["path"], e["message"]]
        for e in doc["errors"]
    ]
    body = [
        "<h2>DaemonSets</h2>",
        table([*DS_HEADERS, *rolloutview.ROLLOUT_HEADERS], ds_rows),
        "<h2>Nodes</h2>",
        table(NODE_HEADERS, node_rows),
    ]
    if err_rows:
        body += [
            "<h2>Manifests not published (the previous version stays)</h2>",
            table(["FILE", "FIELD", "ERROR"], err_rows),
        ]
    return _page("nodeagent fleet", body, refresh, home=False)


# --- one node -----------------------------------------------------------------------------------------


def pod_status(p: fleet.PodReport) -> str:
    """Like kubectl's STATUS column: Terminating, a container's waiting/terminated reason, or Running."""
    if p.terminating:
        return "Terminating"
    for c in p.containers:
        if c.state != "running" and c.reason:
            return c.reason
    states = {c.state for c in p.containers}
    if states and states <= {"running"}:
        return "Running"
    return next((c.state.capitalize() for c in p.containers if c.state), "Unknown")


def pod_row(p: fleet.PodReport, owner: Cell | str) -> list[str | Cell]:
    ready = sum(1 for c in p.containers if c.state == "running")
    containers = "; ".join(
        f"{c.name}: {c.state or '?'}" + (f" ({c.reason})" if c.reason else "") for c in p.containers
    )
    return [
        p.namespace,
        p.name,
        owner,
        Cell(
            f"{ready}/{len(p.containers)}" if p.ready else f"{ready}/{len(p.containers)} (not ready)",
            cls="" if p.ready else "bad",
        ),
        pod_status(p),
        str(sum(c.restart_count for c in p.containers)),
        containers or "-",
        p.revision or "-",
    ]


def event_rows(evs: Iterable[Mapping[str, Any]], limit: int = RECENT_EVENTS) -> list[list[str | Cell]]:
    """The events newest first (by lastTimestamp, RFC 3339 so they sort as text)."""
    ordered = sorted(evs, key=lambda e: str(e.get("lastTimestamp", "")), reverse=True)[:limit]
    rows: list[list[str | Cell]] = []
    for e in ordered:
        obj = e.get("involvedObject") or {}
        ref = f"{obj.get('kind', '')}/{obj.get('namespace', '')}/{obj.get('name', '')}"
        if obj.get("fieldPath"):
            ref += f" ({obj['fieldPath']})"
        kind = str(e.get("type", ""))
        rows.append(
            [
                str(e.get("lastTimestamp", "")),
                Cell(kind, cls="bad" if kind == "Warning" else ""),
                str(e.get("reason", "")),
                ref,
                str(e.get("count", "")),
                str(e.get("message", "")),
            ]
        )
    return rows


def _dl(items: Sequence[tuple[str, str | Cell]]) -> str:
    out = []
    for k, v in items:
        out.append(f"<dt>{html.escape(k)}</dt>" + (v if isinstance(v, Cell) else Cell(v)).render("dd"))
    return "<dl>" + "".join(out) + "</dl>"


def render_node(r: fleet.NodeReport, ready: bool, now: float, refresh: int = 5) -> str:
    """A node's drill-down: labels, taints, conditions, pods with their status, recent events."""
    seen = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.received_at))
    how = "last synced" if r.mode == fleet.MODE_SYNC else "last report"
    conditions = [
        [
            "Ready",
            Cell("True" if ready else "False", cls="ok" if ready else "bad"),
            seen,
            "AgentReporting" if ready else "NodeStatusUnknown",
            f"{how} {_ago(now - r.received_at)} (mode {r.mode})"
            + ("" if ready else "; no report within the grace period"),
        ]
    ]
    pods: list[list[str | Cell]] = []
    for d in r.daemonsets:
        owner = Cell(f"DaemonSet/{d.name}", daemonset_href(d.namespace, d.name))
        pods += [pod_row(p, owner) for p in d.pods]
    pods += [pod_row(p, "static") for p in r.static_pods]
    summary = _dl(
        [
            ("Status", _status_cell(ready)),
            ("Mode", r.mode),
            ("Last report", f"{seen} ({_ago(now - r.received_at)})"),
            ("Agent version", r.agent_version or "-"),
        ]
    )
    body = [
        summary,
        "<h2>Labels</h2>",
        table(["KEY", "VALUE"], [[k, v] for k, v in sorted(r.labels.items())]),
        "<h2>Taints</h2>",
        table(["KEY", "VALUE", "EFFECT"], [[t.key, t.value, t.effect] for t in r.taints]),
        "<h2>Conditions</h2>",
        table(["TYPE", "STATUS", "LAST REPORT", "REASON", "MESSAGE"], conditions),
        "<h2>Pods</h2>",
        table(POD_HEADERS, pods),
        "<h2>Recent events</h2>",
        table(EVENT_HEADERS, event_rows(r.events), empty="no events reported"),
    ]
    if r.errors:
        body += ["<h2>Errors reported by the node</h2>", table(["ERROR"], [[e] for e in r.errors])]
    return _page(f"node {r.name}", body, refresh)


# --- one DaemonSet ------------------------------------------------------------------------------------


def render_daemonset(
    d: Mapping[str, Any],
    nodes: Sequence[tuple[fleet.NodeReport, bool]],
    refresh: int = 5,
) -> str:
    """A DaemonSet's drill-down: its summed counters (a /api/daemonsets entry, with the rollout fields
    when serve rolls it out) and, per node that reports it, that node's counters and pods."""
    ns, name = str(d["namespace"]), str(d["name"])
    counters = [str(d.get(c, 0)) for c in (*fleet.COUNTERS, "numberUnavailable")]
    body = [
        "<h2>Status</h2>",
        table(
            ["DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "MISSCHEDULED", "UNAVAILABLE"],
            [counters],
        ),
    ]
    if "phase" in d:
        rev, phase, wave, pending = rolloutview.rollout_cells(d)
        body += [
            "<h2>Rollout</h2>",
            _dl(
                [
                    ("Phase", str(phase)),
                    ("Current revision", str(d.get("currentRevision", "-"))),
                    ("Update revision", str(d.get("updateRevision", "-"))),
                    ("Revision", rev),
                    ("Wave (updating now)", wave),
                    ("Pending (NotReady) nodes", pending),
                    ("Served differs from the file", "yes" if d.get("servedDiffersFromFile") else "no"),
                ]
            ),
        ]
    node_rows: list[list[str | Cell]] = []
    pod_rows: list[list[str | Cell]] = []
    for r, ready in nodes:
        for ds in r.daemonsets:
            if (ds.namespace, ds.name) != (ns, name):
                continue
            node_rows.append([Cell(r.name, node_href(r.name)), _status_cell(ready), *map(str, ds.counters)])
            for p in ds.pods:
                row = pod_row(p, "")
                pod_rows.append([Cell(r.name, node_href(r.name)), *row[:2], *row[3:]])
    body += [
        "<h2>Nodes</h2>",
        table(
            ["NODE", "STATUS", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "MISSCHEDULED"],
            node_rows,
            empty="no node reports this DaemonSet yet",
        ),
        "<h2>Pods</h2>",
        table(["NODE", *POD_HEADERS[:2], *POD_HEADERS[3:]], pod_rows),
    ]
    return _page(f"daemonset {ns}/{name}", body, refresh)
