"""The report of a pass that started work describes the state that work is changing (a rolling update's
pass reports the old pod, not up to date, beside the events of stopping it and starting the new one).
The reporter holds it up to SETTLE_DELAY for the next pass's report, which says what the work did, and
posts that one instead: one post per rollout step, not two."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent.fleet import report
from tests.support.waiting import wait_for


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A status server that keeps every posted body."""

    posted: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posted.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    posted: list[dict[str, Any]] = []
    handler: type[_Recorder] = type("Recorder", (_Recorder,), {"posted": posted})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", posted
    finally:
        httpd.shutdown()
        httpd.server_close()


def doc(step: str, ready: bool = True) -> dict[str, Any]:
    pod = {"namespace": "default", "name": f"web-{step}", "revision": step, "ready": ready}
    return {
        "name": "n1",
        "labels": {},
        "taints": [],
        "status": {"node": "n1", "daemonSets": [{"namespace": "default", "name": "web", "pods": [pod]}]},
        "events": [{"reason": f"Killing-{step}"}],
    }


@pytest.fixture
def started(
    recorder: tuple[str, list[dict[str, Any]]],
) -> Iterator[tuple[report.Reporter, list[dict[str, Any]]]]:
    """A reporter to the recorder (heartbeats far off, a short gap between posts), started."""
    url, posted = recorder
    r = report.Reporter(url, "n1", interval=60, min_gap=0.05)
    r.start()
    try:
        yield r, posted
    finally:
        r.stop()


def test_the_next_pass_report_is_posted_instead_of_a_settling_one(
    started: tuple[report.Reporter, list[dict[str, Any]]],
) -> None:
    r, posted = started
    r.update(doc("a"))
    assert wait_for(lambda: r.sent == 1)
    r.update(doc("b", ready=False), settling=True)  # the pass that stops a and starts b
    time.sleep(report.SETTLE_DELAY / 4)
    assert r.sent == 1  # held for the next pass's report
    r.update(doc("b", ready=False))  # the next pass: what the work did
    assert wait_for(lambda: r.sent == 2)
    time.sleep(report.SETTLE_DELAY + 0.3)
    assert r.sent == 2  # the settling report was never posted on its own
    assert posted[-1] == doc("b", ready=False)


def test_a_settling_report_with_no_successor_is_posted_after_the_delay(
    started: tuple[report.Reporter, list[dict[str, Any]]],
) -> None:
    r, posted = started
    r.update(doc("a"))
    assert wait_for(lambda: r.sent == 1)
    t0 = time.monotonic()
    r.update(doc("b", ready=False), settling=True)  # slow work (a long pull): no pass follows soon
    assert wait_for(lambda: r.sent == 2, 5.0)
    assert time.monotonic() - t0 >= report.SETTLE_DELAY * 0.9
    assert posted[-1] == doc("b", ready=False)


def test_a_pod_turning_ready_is_posted_at_once_even_from_a_settling_pass(
    started: tuple[report.Reporter, list[dict[str, Any]]],
) -> None:
    r, _ = started
    r.update(doc("a", ready=False))
    assert wait_for(lambda: r.sent == 1)
    t0 = time.monotonic()
    r.update(doc("a"), settling=True)  # ready: a rollout waits for this news
    assert wait_for(lambda: r.sent == 2, 5.0)
    assert time.monotonic() - t0 < report.SETTLE_DELAY / 2
