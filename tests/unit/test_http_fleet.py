"""The pure parts of `nodeagent serve`: fleet sums, report checks, what gets published, the page."""

from __future__ import annotations

import io
from typing import Any

import pytest

from nodeagent import cli
from nodeagent.fleet import handler, publisher
from nodeagent.fleet import page as fleet_page
from nodeagent.fleet import view as fleet
from nodeagent.k8s import manifests
from tests.support import manifests as testdocs


def ds_status(name: str, desired: int, ready: int, *, misscheduled: int = 0) -> dict[str, Any]:
    return {
        "namespace": "default",
        "name": name,
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": desired,
        "numberAvailable": ready,
        "numberMisscheduled": misscheduled,
        "pods": [{"name": f"{name}-x", "phase": "Running"}] * desired,
    }


def report(name: str, *daemonsets: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "labels": labels or {},
        "taints": [{"key": "k", "value": "", "effect": "NoSchedule"}],
        "status": {"node": name, "daemonSets": list(daemonsets), "staticPods": []},
        "agentVersion": "0.1.0",
    }


def test_daemonset_counters_sum_over_nodes_and_stale_nodes_are_not_ready() -> None:
    f = fleet.Fleet(grace=40)
    f.report(fleet.parse_report(report("a", ds_status("log", 1, 1), ds_status("gpu", 0, 0)), "a", 100.0))
    f.report(fleet.parse_report(report("b", ds_status("log", 1, 1), ds_status("gpu", 1, 0)), "b", 100.0))
    f.report(
        fleet.parse_report(
            report("c", ds_status("log", 1, 1), ds_status("gpu", 0, 0, misscheduled=1)), "c", 50.0
        )
    )
    now = 100.0  # c reported 50 s ago: past the 40 s grace
    nodes = {n["name"]: n for n in f.nodes_json(now)}
    assert [nodes[n]["ready"] for n in "abc"] == [True, True, False]
    assert nodes["c"]["lastSeenSecondsAgo"] == 50.0
    sums = {d["name"]: d for d in f.daemonsets_json(now, [("default", "unseen")])}
    assert sums["log"]["desiredNumberScheduled"] == 3 and sums["log"]["currentNumberScheduled"] == 3
    assert sums["log"]["numberReady"] == 2 and sums["log"]["numberAvailable"] == 2  # c's pod is not ready
    assert sums["log"]["numberUnavailable"] == 1
    assert sums["gpu"]["desiredNumberScheduled"] == 1 and sums["gpu"]["numberMisscheduled"] == 1
    assert sums["unseen"]["desiredNumberScheduled"] == 0
    assert f.counts(now) == (2, 1)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "JSON object"),
        ({"name": "other"}, "does not match"),
        ({"name": "a", "labels": {"x": 1}}, "labels"),
        ({"name": "a", "taints": "no"}, "taints"),
        ({"name": "a", "status": {"daemonSets": [{"namespace": "d"}]}}, r"daemonSets\[0\]\.name"),
        (
            {"name": "a", "status": {"daemonSets": [{"namespace": "d", "name": "n", "numberReady": "1"}]}},
            "numberReady",
        ),
    ],
)
def test_bad_reports_are_refused(doc: object, message: str) -> None:
    with pytest.raises(fleet.ReportError, match=message):
        fleet.parse_report(doc, "a", 0.0)


def test_a_repeated_report_body_is_recognised_and_re_dated_and_any_other_body_is_not() -> None:
    f = fleet.Fleet(grace=40)
    first = fleet.parse_report(report("a", ds_status("log", 1, 1)), "a", 100.0)
    assert f.report(first, b"digest-1")
    again = f.unchanged("a", b"digest-1", 130.0)
    assert again is not None and again.received_at == 130.0
    assert again == fleet.parse_report(report("a", ds_status("log", 1, 1)), "a", 130.0)
    assert f.unchanged("a", b"digest-2", 130.0) is None  # another body: parsed again
    assert f.unchanged("b", b"digest-1", 130.0) is None  # another node's
    assert f.unchanged("a", b"", 130.0) is None
    f.report(first)  # recorded without a digest (a report read back from another replica's store)
    assert f.unchanged("a", b"digest-1", 130.0) is None
    f.report(first, b"digest-1")
    f.delete("a")
    f.report(fleet.parse_report(report("a"), "a", 140.0))
    assert f.unchanged("a", b"digest-1", 150.0) is None  # forgotten with the node
    f.report(first, b"digest-1")
    assert f.expire(100.0 + 40 + f.expiry + 1) == ["a"]
    assert f.unchanged("a", b"digest-1", 200.0) is None and not f.digests


def test_control_characters_are_refused_in_names_and_blanked_in_event_messages() -> None:
    for bad in ("a\x1bb", "a\x7fb", "a\x9bb", "a\nb"):
        with pytest.raises(fleet.ReportError, match="control characters"):
            fleet.parse_report({**report("a"), "agentVersion": bad}, "a", 0.0)
    assert fleet.parse_report({**report("a"), "agentVersion": "v\xa0\u00e9"}, "a", 0.0).agent_version
    event = {
        "type": "Warning",
        "reason": "Failed",
        "message": "pull\nfailed\x1b[2J\x85x",
        "involvedObject": {"kind": "Pod", "namespace": "d", "name": "p"},
    }
    r = fleet.parse_report({**report("a"), "events": [event]}, "a", 0.0)
    assert r.events[0]["message"] == "pull failed [2J x"


def test_events_a_report_repeats_are_taken_from_the_previous_report_and_new_ones_are_checked() -> None:
    clean = {
        "type": "Normal",
        "reason": "Pulled",
        "message": "Container image already present on machine",
        "involvedObject": {"kind": "Pod", "namespace": "d", "name": "p"},
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "nodeagent", "host": "a"},
    }
    first = fleet.parse_report({**report("a"), "events": [clean]}, "a", 0.0)
    dirty = {**clean, "reason": "Failed", "message": "pull\nfailed"}
    again = fleet.parse_report({**report("a"), "events": [dict(clean), dirty]}, "a", 1.0, first)
    assert again.events[0] is first.events[0]  # not checked again
    assert again.events[1]["message"] == "pull failed"  # a new one is checked (and cleaned)
    with pytest.raises(fleet.ReportError, match=r"events\[1\]\.type"):
        fleet.parse_report({**report("a"), "events": [clean, {**clean, "type": "Bad"}]}, "a", 2.0, first)


def test_repeated_events_are_found_by_time_reason_and_message_and_odd_ones_still_checked() -> None:
    """The previous report's events are looked up by (lastTimestamp, reason, message), not compared with
    each of the 20 in turn; an event whose fields are no strings (unhashable, say) is checked in full
    and refused at its path."""

    def event(i: int) -> dict[str, Any]:
        return {
            "type": "Normal",
            "reason": "Pulled",
            "message": f"pulled {i}",
            "involvedObject": {"kind": "Pod", "namespace": "d", "name": "p"},
            "count": 1,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:00Z",
            "source": {"component": "nodeagent", "host": "a"},
        }

    first = fleet.parse_report({**report("a"), "events": [event(i) for i in range(20)]}, "a", 0.0)
    again = fleet.parse_report({**report("a"), "events": [event(i) for i in range(5, 25)]}, "a", 1.0, first)
    assert all(again.events[i] is first.events[i + 5] for i in range(15))  # not checked again
    assert [e["message"] for e in again.events[15:]] == [f"pulled {i}" for i in range(20, 25)]
    for field, bad in (("message", ["x"]), ("reason", {"a": 1}), ("lastTimestamp", 5)):
        odd = {**event(3), field: bad}
        with pytest.raises(fleet.ReportError, match=rf"events\[1\]\.{field}"):
            fleet.parse_report({**report("a"), "events": [event(3), odd]}, "a", 2.0, first)


def test_bundle_publishes_valid_documents_and_keeps_the_previous_version_of_a_broken_one() -> None:
    a, b = testdocs.daemonset("a"), testdocs.daemonset("b")
    first = publisher.publish_file(None, testdocs.to_yaml(a, b).encode(), "/d/x.yaml")
    a_v2 = testdocs.daemonset("a", image="busybox:1.37")
    second = publisher.publish_file(
        first, testdocs.to_yaml(a_v2, testdocs.without_image(b)).encode(), "/d/x.yaml"
    )
    body = publisher.render_bundle(list(second.raw.values()))
    loaded = manifests.load_text(body, "bundle")
    assert not loaded.errors
    got = {d.obj.metadata.name: d.obj.spec.template.spec.containers[0].image for d in loaded.documents}  # type: ignore[union-attr]
    assert got == {"a": "busybox:1.37", "b": "busybox:1.36"}
    assert any(e.name == "b" for e in second.content.errors)


def test_truncated_file_keeps_its_objects_published() -> None:
    first = publisher.publish_file(None, testdocs.to_yaml(testdocs.daemonset("a")).encode(), "/d/a.yaml")
    assert list(publisher.publish_file(first, b"", "/d/a.yaml").raw) == list(first.raw)


def test_an_empty_directory_publishes_an_explicit_empty_list() -> None:
    body = publisher.render_bundle([])
    loaded = manifests.load_text(body, "bundle")
    assert loaded.documents == () and not loaded.errors
    assert b'"kind": "List"' in body


def test_yaml_dialect_of_the_bundle_matches_the_loader() -> None:
    """Strings that YAML 1.1 would turn into dates or booleans survive the round trip as written."""
    cm = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: default}\n"
        'data: {d: "2024-01-01", y: "yes"}\n'
    )
    raw = publisher.publish_file(None, cm.encode(), "/d/c.yaml").raw
    loaded = manifests.load_text(publisher.render_bundle(list(raw.values())), "bundle")
    assert loaded.documents[0].obj.data == {"d": "2024-01-01", "y": "yes"}  # type: ignore[union-attr]


def test_etag_matching() -> None:
    assert handler._etag_matches('"a", "b"', '"b"')
    assert handler._etag_matches('W/"b"', '"b"')
    assert handler._etag_matches("*", '"b"')
    assert not handler._etag_matches('"a"', '"b"')


def test_html_page_escapes_and_refreshes() -> None:
    doc = {
        "daemonSets": [{"namespace": "default", "name": "<x>", **dict.fromkeys(fleet.COUNTERS, 1)}],
        "nodes": [
            {
                "name": "n&1",
                "ready": False,
                "labels": {"a": "b"},
                "taints": [],
                "lastSeenSecondsAgo": 3,
                "pods": 1,
            }
        ],
        "errors": [{"file": "/d/f.yaml", "document": 0, "path": "spec", "message": "<bad>"}],
    }
    page = fleet_page.render_fleet(doc)
    assert "http-equiv='refresh'" in page
    assert "&lt;x&gt;" in page and "n&amp;1" in page and "NotReady" in page and "&lt;bad&gt;" in page
    assert "<x>" not in page


def test_a_synced_node_shows_when_it_was_last_synced_and_goes_not_ready_like_the_others() -> None:
    """`nodeagent sync` reports once per pass with mode sync; no mode is a running agent (older agents)."""
    f = fleet.Fleet(grace=40)
    f.report(fleet.parse_report({**report("s", ds_status("log", 1, 1)), "mode": "sync"}, "s", 100.0))
    f.report(fleet.parse_report(report("a", ds_status("log", 1, 1)), "a", 100.0))
    nodes = {n["name"]: n for n in f.nodes_json(110.0)}
    assert (nodes["s"]["mode"], nodes["s"]["ready"], nodes["s"]["pods"]) == ("sync", True, 1)
    assert nodes["s"]["lastSeen"] == "1970-01-01T00:01:40Z" and nodes["s"]["lastSeenSecondsAgo"] == 10.0
    assert nodes["a"]["mode"] == "agent"
    later = {n["name"]: n for n in f.nodes_json(141.0)}  # 41 s after the sync: past the grace period
    assert [later[n]["ready"] for n in "as"] == [False, False]
    assert f.daemonsets_json(141.0)[0]["numberReady"] == 0

    page = fleet_page.render_fleet({"daemonSets": [], "nodes": f.nodes_json(110.0), "errors": []})
    assert page.count("last synced 10s ago") == 1 and ">10s ago<" in page  # a's cell: no "synced"

    out = io.StringIO()
    cli.print_fleet({"daemonSets": [], "nodes": f.nodes_json(110.0)}, out)
    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[2:]}
    assert "last synced 10s ago" in rows["s"] and "synced" not in rows["a"]


def test_a_report_with_an_unknown_mode_is_refused() -> None:
    with pytest.raises(fleet.ReportError, match="mode: must be one of agent, sync"):
        fleet.parse_report({**report("a"), "mode": "cron"}, "a", 0.0)
