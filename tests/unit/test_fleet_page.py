"""The fleet pages (fleet/page.py): drill-downs from the typed reports, every reported value escaped."""

from __future__ import annotations

from typing import Any

from nodeagent.fleet import page
from nodeagent.fleet import view as fleet

EVIL = "<script>alert(1)</script>"


def hostile_report(name: str = "node-a") -> dict[str, Any]:
    ds = {
        "namespace": "ns<b>",
        "name": "log&ship",
        **dict.fromkeys(fleet.COUNTERS, 1),
        "pods": [
            {
                "namespace": "ns<b>",
                "name": "log&ship-abc",
                "ready": False,
                "revision": "h1",
                "containers": [
                    {"name": "c", "restartCount": 3, "state": "waiting", "reason": "CrashLoopBackOff"}
                ],
            }
        ],
    }
    event = {
        "type": "Warning",
        "reason": "BackOff",
        "message": EVIL,
        "involvedObject": {"kind": "Pod", "namespace": "ns<b>", "name": "log&ship-abc"},
        "count": 4,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:01:00Z",
        "source": {"component": "nodeagent", "host": name},
    }
    return {
        "name": name,
        "labels": {"team": EVIL},
        "taints": [{"key": "k", "value": '"v"', "effect": "NoSchedule"}],
        "status": {"node": name, "daemonSets": [ds], "staticPods": []},
        "events": [event],
        "errors": [EVIL],
    }


def test_node_page_shows_labels_conditions_pods_and_events_all_escaped() -> None:
    r = fleet.parse_report(hostile_report(), "node-a", 100.0)
    html = page.render_node(r, False, 150.0)
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3  # label, event message, error
    assert "NotReady" in html and "last report 50s ago (mode agent)" in html
    assert "CrashLoopBackOff" in html and ">3<" in html  # status and restarts
    assert 'href="/daemonsets/ns%3Cb%3E/log%26ship"' in html  # the owner links to the DaemonSet page
    assert "ns&lt;b&gt;" in html and "log&amp;ship-abc" in html and "&quot;v&quot;" in html


def test_daemonset_page_lists_each_nodes_pods_and_the_rollout() -> None:
    a = fleet.parse_report(hostile_report("node-a"), "node-a", 100.0)
    b = fleet.parse_report({**hostile_report("node-b"), "status": {}}, "node-b", 100.0)
    d = {"namespace": "ns<b>", "name": "log&ship", **dict.fromkeys(fleet.COUNTERS, 1), "numberUnavailable": 0}
    d |= {
        "phase": "Progressing",
        "currentRevision": 1,
        "updateRevision": 2,
        "wave": ["node-a"],
        "pendingNodes": [],
    }
    html = page.render_daemonset(d, [(a, True), (b, True)])
    assert "<script" not in html and "<b>" not in html
    assert "daemonset ns&lt;b&gt;/log&amp;ship" in html
    assert 'href="/nodes/node-a"' in html and "/nodes/node-b" not in html  # b does not run it
    assert "Progressing" in html and "1-&gt;2" in html and "log&amp;ship-abc" in html


def test_fleet_page_links_to_the_drill_downs() -> None:
    f = fleet.Fleet()
    f.report(fleet.parse_report(hostile_report(), "node-a", 100.0))
    html = page.render_fleet(
        {"daemonSets": f.daemonsets_json(100.0), "nodes": f.nodes_json(100.0), "errors": []}
    )
    assert 'href="/nodes/node-a"' in html and 'href="/daemonsets/ns%3Cb%3E/log%26ship"' in html
    assert "<script" not in html and "&lt;script&gt;" in html
