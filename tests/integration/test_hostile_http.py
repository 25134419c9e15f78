"""The HTTP client against hostile servers on loopback (issue 16): redirects that would leak headers or
downgrade to plain http, a server that drips its body, tokens and header values that would break the
request line. No Docker needed."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http import server as http_server
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from nodeagent import errors, settings
from nodeagent.sources import http
from tests.support.httpsource import bundle, source
from tests.support.manifests import daemonset
from tests.support.pki import Pki, make_pki

BODY = bundle(daemonset("a"))


class Host:
    """One loopback server: `redirect` answers 302 to it; otherwise the bundle. Records headers."""

    def __init__(self, tls: Pki | None = None) -> None:
        self.redirect: str | None = None
        self.seen: list[dict[str, str]] = []
        host = self

        class Handler(http_server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.seen.append(dict(self.headers))
                if host.redirect:
                    self.send_response(302)
                    self.send_header("Location", host.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

        self.httpd = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/fleet.yaml"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    made: list[Host] = []
    yield made
    for h in made:
        h.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_custom_headers_and_the_token_go_to_the_first_origin_only(hosts: list[Host], tmp_path: Path) -> None:
    a, b = Host(), Host()
    hosts += [a, b]
    a.redirect = b.url
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    src = source(
        a.url,
        tmp_path,
        token_file=str(token),
        headers={"authorization": "Basic c2VjcmV0", "X-Api-Key": "k-123"},
        watch=False,
    )
    src.relist()
    assert src.snapshot() is not None and src.failure is None
    assert a.seen[0].get("X-Api-Key") == "k-123"
    [at_b] = b.seen
    sent = {k.lower(): v for k, v in at_b.items()}
    assert "authorization" not in sent and "x-api-key" not in sent


def test_an_https_to_http_redirect_is_refused_and_the_last_good_bundle_stays(
    hosts: list[Host], pki: Pki, tmp_path: Path
) -> None:
    a, plain = Host(tls=pki), Host()
    hosts += [a, plain]
    src = source(a.url, tmp_path, ca_file=str(pki.ca), watch=False)
    src.relist()
    assert src.snapshot() is not None and src.failure is None
    a.redirect = plain.url
    src.relist()
    failure = src.failure
    assert failure is not None and "refused a redirect from https" in failure.message
    assert not plain.seen
    shot = src.snapshot()
    assert shot is not None and [d.obj.metadata.name for d in shot.documents] == ["a"]


def _drip_server() -> tuple[socket.socket, threading.Event]:
    """Answers every connection with headers, then one body byte a second (a 100-byte body)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                if stop.wait(0.5):
                    break
                conn.sendall(b"#")
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, stop


def test_the_timeout_bounds_the_whole_fetch_not_each_read() -> None:
    listener, stop = _drip_server()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
        started = time.monotonic()
        with pytest.raises(http.FetchError, match="timed out after 1s"):
            http.request("GET", url, timeout=1.0)
        # each read gets a byte within 0.5 s, so a per-read timeout would take the full 50 s
        assert time.monotonic() - started < 20
    finally:
        stop.set()
        listener.close()


def test_requests_start_no_thread_each_and_deadlines_still_fire_in_order(
    hosts: list[Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole-request deadline is one shared thread's job: a thread started per request (a Timer) was
    a large share of a busy client's CPU. Many requests start at most that one thread, and a short
    deadline behind a long one still fires on time."""
    a = Host()
    hosts.append(a)
    pool = http.Connections()  # one kept connection: the server starts no thread for the rest either
    http.request("GET", a.url, timeout=5.0, connections=pool)  # the shared thread exists from here on
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(30):
        assert http.request("GET", a.url, timeout=5.0, connections=pool).status == 200
    pool.close()
    assert started == []
    monkeypatch.undo()
    listener, stop = _drip_server()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
        slow_done: list[float] = []
        slow = threading.Thread(target=lambda: slow_done.append(_timed_out_after(url, 8.0)), daemon=True)
        slow.start()  # a long deadline first in the watchdog's queue
        time.sleep(0.2)
        assert _timed_out_after(url, 1.0) < 5  # the short one is not held behind it
        slow.join(30)
        assert slow_done and 7 < slow_done[0] < 20
    finally:
        stop.set()
        listener.close()


def _timed_out_after(url: str, timeout: float) -> float:
    started = time.monotonic()
    with pytest.raises(http.FetchError, match=f"timed out after {timeout:g}s"):
        http.request("GET", url, timeout=timeout)
    return time.monotonic() - started


def test_a_token_with_an_interior_newline_is_a_source_error_without_the_token(
    hosts: list[Host], tmp_path: Path
) -> None:
    a = Host()
    hosts.append(a)
    token = tmp_path / "token"
    token.write_text("first-half\nsecond-half\n")
    with structlog.testing.capture_logs() as logs:
        src = source(a.url, tmp_path, token_file=str(token), watch=False)
        src.relist()
        src.relist()
    failure = src.failure
    assert failure is not None and "tokenFile" in failure.message and "line break" in failure.message
    text = repr(logs) + failure.message
    assert "first-half" not in text and "second-half" not in text
    assert not a.seen  # nothing was sent


def test_a_header_value_with_a_line_break_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text('sources:\n  - url: http://127.0.0.1:1/x\n    headers: {X-Key: "abc\\r\\nInjected: 1"}\n')
    with pytest.raises(errors.ConfigError, match=r"headers\[X-Key\].*CR, LF") as info:
        settings.load(str(cfg))
    assert "abc" not in str(info.value)


def test_a_resync_interval_below_a_second_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("resyncInterval: 0.0001\n")
    with pytest.raises(errors.ConfigError, match=r"resyncInterval.*at least 1s"):
        settings.load(str(cfg))


def test_a_token_over_plain_http_is_warned_about_once(hosts: list[Host], tmp_path: Path) -> None:
    a = Host()
    hosts.append(a)
    token = tmp_path / "token"
    token.write_text("tok\n")
    secret = b"apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\nstringData: {k: v}\n"
    global BODY
    old, BODY = BODY, BODY + b"---\n" + secret
    try:
        with structlog.testing.capture_logs() as logs:
            src = source(a.url, tmp_path, token_file=str(token), watch=False)
            for _ in range(3):
                src.relist()
    finally:
        BODY = old
    warnings = [e["warning"] for e in logs if e["event"] == "source_plain_http"]
    assert len(warnings) == 2
    assert any("token" in w for w in warnings) and any("Secrets" in w for w in warnings)
    assert "tok\n" not in repr(logs)


def test_the_status_reporter_warns_once_about_a_token_over_plain_http(tmp_path: Path) -> None:
    from nodeagent.fleet import report

    token = tmp_path / "token"
    token.write_text("report-token\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = settings.HttpSource(url=f"http://127.0.0.1:{port}/manifests", token_file=str(token))
    r = report.Reporter(f"http://127.0.0.1:{port}", "n", auth=auth, timeout=2)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            r.post({"name": "n"})
    assert [e["event"] for e in logs].count("status_server_plain_http") == 1
    assert "report-token" not in repr(logs)
