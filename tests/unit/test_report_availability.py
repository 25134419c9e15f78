"""A serve that judges availability itself (from each pod's readySince, as the DaemonSet controller
does) says so on its answer to a report, and the reporter then leaves a report whose only news is that a
pod became available to the next heartbeat. Any other status server is told at once."""

from __future__ import annotations

import copy
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.fleet import report, serve
from nodeagent.fleet import view as fleet

T = 1_800_000_000.0


def doc(ready: bool = True, available: bool = False) -> dict[str, Any]:
    pod = {"namespace": "default", "name": "web", "revision": "r1", "ready": ready, "available": available}
    pod["readySince"] = T if ready else None
    ds = {
        "namespace": "default",
        "name": "web",
        "desiredNumberScheduled": 1,
        "numberReady": int(ready),
        "numberAvailable": int(available),
        "pods": [pod],
    }
    return {"name": "n1", "labels": {}, "taints": [], "status": {"node": "n1", "daemonSets": [ds]}}


def test_only_news_of_availability_waits_when_serve_judges_it() -> None:
    ready, available = doc(), doc(available=True)
    assert not report.worth_posting(available, ready, serve_judges=True)
    assert report.worth_posting(available, ready, serve_judges=False)
    assert report.worth_posting(ready, doc(ready=False), serve_judges=True)  # readiness is news
    changed = copy.deepcopy(available)
    changed["labels"] = {"zone": "b"}
    assert report.worth_posting(changed, ready, serve_judges=True)
    assert report.worth_posting(ready, None, serve_judges=True)  # nothing sent yet
    assert not report.worth_posting(ready, copy.deepcopy(ready), serve_judges=False)


def wait_for(cond: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[serve.Server]:
    (tmp_path / "m").mkdir()
    srv = serve.Server(
        serve.ServeConfig(directory=str(tmp_path / "m"), listen="127.0.0.1:0", state_dir=str(tmp_path / "s"))
    )
    srv.start()
    yield srv
    srv.stop()


def test_the_reporter_leaves_availability_to_the_heartbeat_of_a_serve_that_judges_it(
    server: serve.Server,
) -> None:
    r = report.Reporter(server.url, "n1", interval=1.5, min_gap=0.05)
    r.start()
    try:
        r.update(doc())
        assert wait_for(lambda: r.sent == 1)
        assert r.serve_judges  # serve's answer said so
        r.update(doc(available=True))
        time.sleep(0.5)
        assert r.sent == 1  # not at once
        assert wait_for(lambda: r.sent == 2)  # with the heartbeat
        with server.fleet_lock:
            assert server.fleet.nodes["n1"].daemonsets[0].counters[4] == 1
    finally:
        r.stop()


class _Plain(http.server.BaseHTTPRequestHandler):
    """A status server that knows nothing of readySince: 204 and no more."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_any_other_status_server_is_told_of_availability_at_once() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    r = report.Reporter(f"http://127.0.0.1:{httpd.server_address[1]}", "n1", interval=30, min_gap=0.05)
    r.start()
    try:
        r.update(doc())
        assert wait_for(lambda: r.sent == 1)
        assert not r.serve_judges
        r.update(doc(available=True))
        assert wait_for(lambda: r.sent == 2, 5.0)  # long before the 30 s heartbeat
    finally:
        r.stop()
        httpd.shutdown()
        httpd.server_close()


def test_the_fleets_counters_count_a_pod_ready_for_min_ready_seconds_by_serves_clock() -> None:
    fl = fleet.Fleet()
    fl.report(fleet.parse_report(doc(), "n1", T))
    assert fl.daemonsets_json(T + 10)[0]["numberAvailable"] == 0  # minReadySeconds unknown: the node's
    fl.min_ready = {("default", "web"): 5}
    assert fl.daemonsets_json(T + 4)[0]["numberAvailable"] == 0
    got = fl.daemonsets_json(T + 5)[0]
    assert got["numberAvailable"] == 1 and got["numberUnavailable"] == 0


def test_a_pod_turning_ready_is_urgent_and_nothing_else_is() -> None:
    assert report.urgent(doc(), doc(ready=False))
    assert report.urgent(doc(), None)
    assert not report.urgent(doc(available=True), doc())
    assert not report.urgent(doc(ready=False), doc())
    relabelled = doc(ready=False)
    relabelled["labels"] = {"zone": "b"}
    assert not report.urgent(relabelled, doc(ready=False))


def test_a_pod_turning_ready_does_not_wait_out_the_gap_between_posts(server: serve.Server) -> None:
    r = report.Reporter(server.url, "n1", interval=60, min_gap=30)
    r.start()
    try:
        r.update(doc(ready=False))
        assert wait_for(lambda: r.sent == 1)
        relabelled = doc(ready=False)
        relabelled["labels"] = {"zone": "b"}
        r.update(relabelled)
        time.sleep(0.5)
        assert r.sent == 1  # news, but it waits out the 30 s gap
        r.update(doc())
        assert wait_for(lambda: r.sent == 2, 5.0)  # a pod turned ready: at once
    finally:
        r.stop()
