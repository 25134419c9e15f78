"""The hollow-node simulation (benchmarks/fleet_sim.py) must behave as one agent per node: a node's
passes never overlap, or a pass that planned before another acted posts its stale report last and the
simulated rollout stalls on a node that runs the new revision but reports the old one."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
fleet_sim = importlib.import_module("fleet_sim")  # benchmarks/ is no package (nor type-checked)


def test_a_nodes_passes_never_overlap_and_a_wake_during_one_runs_another(tmp_path: Path) -> None:
    fleet = fleet_sim.Fleet("http://127.0.0.1:9/never", 0, 1, 2, str(tmp_path))
    node = fleet.nodes[0]
    lock = threading.Lock()
    inside, most, passes = 0, 0, 0
    first_started, release = threading.Event(), threading.Event()

    def reconcile() -> bool:
        nonlocal inside, most, passes
        with lock:
            inside += 1
            most = max(most, inside)
            passes += 1
            n = passes
        if n == 1:
            first_started.set()
            release.wait(10)  # the first pass is acting when the node is woken again
        with lock:
            inside -= 1
        return False

    node.reconcile = reconcile
    node.source_changed = lambda: None
    for w in fleet._workers:
        w.start()
    fleet.wake(0)
    assert first_started.wait(10)
    fleet.wake(0)  # e.g. its work finished: a second pass is due, the other worker is idle
    time.sleep(0.3)  # give an idle worker the chance to (wrongly) start it now
    release.set()
    deadline = time.monotonic() + 10
    while fleet.passes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert passes == 2  # the wake during the pass was not lost
    assert most == 1  # and its pass ran after the first, not beside it


def test_nodes_of_one_process_share_the_parse_of_an_identical_body_but_not_of_another_source() -> None:
    calls: list[tuple[str | bytes, str]] = []

    def load_text(text: str | bytes, source: str) -> object:
        calls.append((text, source))
        return object()

    load = fleet_sim.shared_parses(load_text)
    body = b"kind: List\nitems: []\n"
    first = load(body, "http://a/manifests")
    assert load(bytes(body), "http://a/manifests") is first  # another node's copy of the same body
    assert load(body, "http://b/manifests") is not first  # messages name the source
    assert len(calls) == 2


def test_histogram_quantile_reads_serves_request_histogram_as_prometheus_does() -> None:
    bench = importlib.import_module("bench")
    before = {0.001: 10.0, 0.01: 10.0, 0.1: 10.0, float("inf"): 10.0}
    after = {0.001: 60.0, 0.01: 150.0, 0.1: 160.0, float("inf"): 160.0}  # 150 more: 50, 90, 10
    assert bench.histogram_quantile(0.5, before, after) == pytest.approx(0.001 + 0.009 * (75 - 50) / 90)
    assert bench.histogram_quantile(0.99, before, after) == pytest.approx(0.01 + 0.09 * (148.5 - 140) / 10)
    assert bench.histogram_quantile(0.5, after, after) is None  # nothing in the window


def test_a_watch_answer_is_stamped_with_when_the_kernel_received_it_not_when_the_node_read_it() -> None:
    """The replicas row counts serve's part of a wave up to the answer's arrival at the hollow node's
    socket: a starved node reading it late must not be charged to serve."""
    import http.client
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    connect = fleet_sim.stamped_connect(http.client.HTTPConnection.connect)
    try:

        def slow_read(method: str, url: str, **kwargs: object) -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
            connect(conn)
            assert isinstance(conn.sock, fleet_sim.ArrivalSocket)
            conn.request(method, url)
            time.sleep(0.5)  # the answer is in the socket; the node is busy elsewhere
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp

        timed = fleet_sim.Timings().wrap(slow_read)
        t0 = time.time()
        assert timed("GET", "/manifests?node=hollow-00007&watch=1&timeout=30").status == 200
        arrived = fleet_sim.ARRIVED["hollow-00007"]
        assert t0 <= arrived < t0 + 0.3, arrived - t0  # not the read, half a second later
        assert time.time() - arrived >= 0.5
    finally:
        srv.shutdown()
        srv.server_close()
