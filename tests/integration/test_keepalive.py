"""Kept-alive connections between agents and `serve`, on loopback.

A fleet's cost on `serve` is mostly per connection (accept, handler thread, TCP set-up); a node's polls,
watches and reports therefore reuse one connection each. These tests count the connections the server
accepts, check that a connection the server has closed meanwhile is replaced without an error, and
that `serve` answers on a kept connection without the Nagle/delayed-ACK stall. Nothing asserts on timing.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import server as http_server
from pathlib import Path
from typing import Any

import pytest

from nodeagent.fleet import report, serve
from nodeagent.sources import http
from tests.support.httpsource import source, start_serve
from tests.support.manifests import daemonset, put
from tests.support.waiting import wait_for


@dataclass
class CountingHost:
    """An HTTP/1.1 host that counts the connections it accepts; `drop_after_answer` makes it close
    each connection after one answer without saying so (as an idle timeout does, seen by the client)."""

    drop_after_answer: bool = False
    connections: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: http_server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/x"

    def start(self) -> CountingHost:
        host = self

        class Handler(http_server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with host.lock:
                    host.connections += 1

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with host.lock:
                    host.requests += 1
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if host.drop_after_answer:
                    self.close_connection = True

            do_GET = _answer
            do_POST = _answer

        self.httpd = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def host() -> Iterator[CountingHost]:
    h = CountingHost().start()
    yield h
    h.stop()


def test_requests_with_a_connection_cache_share_one_connection(host: CountingHost) -> None:
    conns = http.Connections()
    try:
        for _ in range(5):
            assert http.request("GET", host.url, connections=conns).status == 200
        http.post_json(host.url, {"a": 1}, connections=conns)
    finally:
        conns.close()
    assert (host.requests, host.connections) == (6, 1)


def test_a_connection_idle_for_longer_than_max_idle_is_not_reused(host: CountingHost) -> None:
    conns = http.Connections(max_idle=0.0)  # every kept connection is already too old
    try:
        for _ in range(3):
            http.request("GET", host.url, connections=conns)
    finally:
        conns.close()
    assert (host.requests, host.connections) == (3, 3)


def test_without_a_connection_cache_each_request_connects(host: CountingHost) -> None:
    for _ in range(3):
        http.request("GET", host.url)
    assert (host.requests, host.connections) == (3, 3)


def test_a_kept_connection_the_server_closed_is_replaced_without_an_error(host: CountingHost) -> None:
    host.drop_after_answer = True
    conns = http.Connections()
    try:
        for _ in range(4):  # each request after the first finds its kept connection closed
            assert http.request("GET", host.url, connections=conns).status == 200
    finally:
        conns.close()
    assert host.requests == 4
    assert host.connections == 4


def test_a_failure_on_a_new_connection_is_an_error_not_a_retry() -> None:
    """A server that closes without answering: one FetchError, one connection attempt."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[int] = []

    def accept() -> None:
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            c.recv(65536)
            c.close()

    threading.Thread(target=accept, daemon=True).start()
    conns = http.Connections()
    try:
        with pytest.raises(http.FetchError, match="closed connection"):
            http.request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/x", connections=conns)
    finally:
        conns.close()
        listener.close()
    assert len(accepted) == 1


def accepted(server: serve.Server) -> int:
    """How many connections `serve` has accepted so far."""
    return server.httpd.accepted


def test_an_http_source_polls_and_watches_on_one_connection(tmp_path: Path) -> None:
    mdir = tmp_path / "m"
    mdir.mkdir()
    put(mdir, "a", daemonset("a"))
    srv = start_serve(mdir)
    before = accepted(srv)
    src = source(srv.url + "/manifests", tmp_path, watch=True)
    try:
        src.start()  # one poll, then watches
        for i in range(3):  # each change ends a watch; the next watch reuses the connection
            put(mdir, "a", daemonset("a", image=f"busybox:{i}"))
            wait_for(lambda i=i: _image(src) == f"busybox:{i}")  # type: ignore[misc]
    finally:
        src.stop()
        srv.stop()
    assert accepted(srv) - before == 1


def _image(src: http.HttpSource) -> str | None:
    shot = src.snapshot()
    if shot is None or not shot.documents:
        return None
    return shot.documents[0].obj.spec.template.spec.containers[0].image  # type: ignore[union-attr]


def test_status_reports_reuse_one_connection_and_serve_disables_nagle(tmp_path: Path) -> None:
    mdir = tmp_path / "m"
    mdir.mkdir()
    srv = start_serve(mdir)
    before = accepted(srv)
    rep = report.Reporter(srv.url, "node-keepalive")
    doc = {"name": "node-keepalive", "labels": {}, "taints": [], "status": {"pods": []}}
    try:
        for _ in range(3):
            assert rep.post(doc)
        assert accepted(srv) - before == 1
        # headers and body are separate writes: without TCP_NODELAY a kept connection waits for the
        # client's delayed ACK (40 ms) before every body
        (sock,) = srv.httpd.sockets()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        rep.stop()
        srv.stop()


def test_stopping_serve_ends_kept_connections(tmp_path: Path) -> None:
    """A stopped server must look down to its agents, not keep answering on their kept connections."""
    mdir = tmp_path / "m"
    mdir.mkdir()
    put(mdir, "a", daemonset("a"))
    srv = start_serve(mdir)
    conns = http.Connections()
    try:
        assert http.request("GET", srv.url + "/manifests", connections=conns).status == 200
        srv.stop()
        with pytest.raises(http.FetchError):
            http.request("GET", srv.url + "/manifests", connections=conns, timeout=5.0)
    finally:
        conns.close()
