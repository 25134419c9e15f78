"""The simulation's report schedule (benchmarks/fleet_sim.py): a hollow node posts as the real
`report.Reporter` does, so the fleet, rollout and replicas rows load `serve` as a real fleet would: a
change at once unless the last post was under MIN_GAP ago, and a heartbeat `interval` after the gap that
follows the last post, not on a fixed clock of its own."""

from __future__ import annotations

import email.parser
import importlib
import io
import sys
import time
from pathlib import Path
from typing import Any

from nodeagent.fleet import report

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
fleet_sim = importlib.import_module("fleet_sim")  # benchmarks/ is no package (nor type-checked)


def _fleet(tmp_path: Path) -> tuple[Any, list[tuple[int, bool]]]:
    fleet = fleet_sim.Fleet("http://127.0.0.1:9", 0, 1, 1, str(tmp_path))  # never started: no request
    submitted: list[tuple[int, bool]] = []
    fleet._submit = lambda node, heartbeat: submitted.append((node.index, heartbeat))
    return fleet, submitted


def test_a_change_is_posted_at_once_after_a_quiet_spell(tmp_path: Path) -> None:
    fleet, submitted = _fleet(tmp_path)
    node = fleet.nodes[0]
    node.latest, node.last_post = {"n": 1}, time.monotonic() - 5
    fleet._report_changed(node)
    assert submitted == [(0, False)] and fleet._due == []


def test_a_change_within_the_gap_waits_for_it_and_later_ones_join_it(tmp_path: Path) -> None:
    fleet, submitted = _fleet(tmp_path)
    node = fleet.nodes[0]
    node.latest, node.last_post = {"n": 1}, time.monotonic()
    fleet._report_changed(node)
    node.latest = {"n": 2}
    fleet._report_changed(node)  # one queued post carries the newest report
    assert submitted == []
    assert [(i, hb) for _, i, hb in fleet._due] == [(0, False)]
    assert abs(fleet._due[0][0] - (node.last_post + report.MIN_GAP)) < 1e-6


def test_an_unchanged_report_is_no_post(tmp_path: Path) -> None:
    fleet, submitted = _fleet(tmp_path)
    node = fleet.nodes[0]
    node.latest = node.sent = {"n": 1}
    fleet._report_changed(node)
    assert submitted == [] and fleet._due == []


def test_a_post_puts_the_heartbeat_off_and_a_quiet_node_sends_it(tmp_path: Path) -> None:
    fleet, submitted = _fleet(tmp_path)
    node = fleet.nodes[0]
    node.latest, node.last_post = {"n": 1}, time.monotonic() - 2  # a report on change 2 s ago
    fleet._fire(0, True, 10.0)
    assert submitted == []
    assert abs(fleet._due[0][0] - (node.last_post + report.MIN_GAP + 10.0)) < 1e-6
    fleet._due.clear()
    node.last_post = time.monotonic() - 11
    fleet._fire(0, True, 10.0)
    assert submitted == [(0, True)] and node.heartbeat_due is not None
    assert fleet._due[0][0] > time.monotonic() + 10.0  # the next one, a full interval on


def test_the_lean_header_parse_reads_what_http_client_reads() -> None:
    raw = (
        b'Content-Type: application/json\r\nContent-Length: 12\r\nETag: "abc"\r\n'
        b"X-Folded: one\r\n two\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\nbody"
    )
    lean = fleet_sim.lean_parse_headers(io.BytesIO(raw))
    full = email.parser.Parser(_class=fleet_sim.http_client.HTTPMessage).parsestr(
        raw.split(b"\r\n\r\n")[0].decode("iso-8859-1") + "\r\n\r\n"
    )
    for name in ("content-length", "CONTENT-TYPE", "etag", "missing"):
        assert lean.get(name) == full.get(name)
    assert lean.get_all("set-cookie") == full.get_all("set-cookie")
    assert [k for k, _ in lean.items()] == [k for k, _ in full.items()]
    assert lean.get("x-folded") == "one two"
