"""Hostile input against real `nodeagent serve` processes (issue 16): a connection flood within a low
open-file limit, a FIFO and an alias bomb in the manifest directory, oversized and malformed node
reports, and a redirect that would hand a token to another host. No Docker needed."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import server as http_server
from pathlib import Path
from typing import Any

import pytest

from nodeagent.sources import http
from tests.support.hostile import alias_bomb
from tests.support.net import free_port
from tests.support.pki import Pki, make_pki
from tests.support.waiting import wait_for

from .conftest import NODEAGENT, daemonset

BOMB = alias_bomb("junk", "default")


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def healthy(self, timeout: float = 5.0) -> bool:
        try:
            return http.request("GET", self.url + "/healthz", timeout=timeout).status == 200
        except http.FetchError:
            return False

    def fleet(self) -> dict[str, Any]:
        doc = http.get_json(self.url + "/api/fleet")
        assert isinstance(doc, dict)
        return doc

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_serve(directory: Path, tmp_path: Path, *args: str, nofile: int | None = None) -> Serve:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    state = ["--state-dir", str(tmp_path / f"serve-state-{port}")]

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [NODEAGENT, "serve", "--dir", str(directory), "--listen", f"127.0.0.1:{port}", *state, *args],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115  (the child owns it)
        preexec_fn=limit,
    )
    s = Serve(proc, f"http://127.0.0.1:{port}", log)
    assert wait_for(s.healthy, 30), log.read_text()
    return s


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "a.yaml").write_text(daemonset("a", "default"))
    return d


def test_a_connection_flood_within_a_low_file_limit_keeps_healthz_answering(
    mdir: Path, tmp_path: Path, serves: list[Serve]
) -> None:
    s = start_serve(mdir, tmp_path, nofile=256)
    serves.append(s)
    host, port = "127.0.0.1", int(s.url.rsplit(":", 1)[1])
    flood: list[socket.socket] = []
    try:
        for _ in range(300):  # more than the server's 256 descriptors; they never send a byte
            flood.append(socket.create_connection((host, port), timeout=10))
        cpu_before = s.cpu_seconds()
        answered = [s.healthy(timeout=10) for _ in range(3)]
        assert all(answered)
        # a server retrying accept() without descriptors spins at 100 % CPU; this one idles
        threading.Event().wait(2.0)
        assert s.cpu_seconds() - cpu_before < 0.5 * 2.0 + 1.0
        assert s.proc.poll() is None
    finally:
        for sock in flood:
            sock.close()
    assert wait_for(s.healthy, 10)


def test_a_fifo_in_the_directory_neither_wedges_serve_nor_blocks_sigterm(
    mdir: Path, tmp_path: Path, serves: list[Serve]
) -> None:
    os.mkfifo(mdir / "x.yaml")
    s = start_serve(mdir, tmp_path)
    serves.append(s)
    assert any("not a regular file (a FIFO)" in e["message"] for e in s.fleet()["errors"])
    (mdir / "b.yaml").write_text(daemonset("b", "default"))  # publishing goes on
    assert wait_for(lambda: b'"name": "b"' in http.request("GET", s.url + "/manifests").body, 30)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0


def test_an_alias_bomb_is_an_error_and_serve_keeps_answering(
    mdir: Path, tmp_path: Path, serves: list[Serve]
) -> None:
    (mdir / "bomb.yaml").write_text(BOMB)
    s = start_serve(mdir, tmp_path)
    serves.append(s)
    errs = [e for e in s.fleet()["errors"] if e["file"].endswith("bomb.yaml")]
    assert errs and errs[0]["path"].startswith("junk.") and "excessive YAML aliasing" in errs[0]["message"]
    body = http.request("GET", s.url + "/manifests").body
    assert b"lol" not in body and len(body) < 10_000
    assert s.healthy()
    rss_kb = int(
        next(
            x for x in Path(f"/proc/{s.proc.pid}/status").read_text().splitlines() if x.startswith("VmRSS")
        ).split()[1]
    )
    assert rss_kb < 300_000


def test_oversized_and_malformed_reports_are_refused_and_the_fleet_view_survives(
    mdir: Path, tmp_path: Path, serves: list[Serve]
) -> None:
    s = start_serve(mdir, tmp_path)
    serves.append(s)
    good = {
        "name": "n1",
        "status": {"daemonSets": [{"namespace": "default", "name": "a", "desiredNumberScheduled": 1}]},
    }
    url = s.url + "/nodes/n1/status"
    assert http.request("POST", url, body=json.dumps(good).encode()).status == 204
    bad = {"name": "n1", "status": {"daemonSets": [{"namespace": "default", "name": "a", "pods": 5}]}}
    resp = http.request("POST", url, body=json.dumps(bad).encode())
    assert resp.status == 400 and b"status.daemonSets[0].pods" in resp.body
    # 4 MB announced: answered 413 at once, before the body is read (the server then hangs up, so a
    # client still sending sees a broken pipe; a raw socket reads the answer)
    port = int(s.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /nodes/n1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n" + b"[" * 65536
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    for path in ("/", "/api/fleet"):
        assert http.request("GET", s.url + path).status == 200
    done = subprocess.run(
        [NODEAGENT, "status", "--server", s.url], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "n1" in done.stdout, done.stderr


def _start(handler: type[http_server.BaseHTTPRequestHandler], tls: Pki | None = None) -> tuple[Any, str]:
    srv = http_server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls.server_cert), str(tls.server_key))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    return srv, f"{scheme}://127.0.0.1:{srv.server_address[1]}"


def test_redirects_neither_leak_headers_to_another_host_nor_downgrade_to_http(tmp_path: Path) -> None:
    """`nodeagent plan` (no Docker needed) with a source whose host redirects elsewhere."""
    seen: list[dict[str, str]] = []
    bundle = daemonset("moved", "default").encode()

    class Other(http_server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", str(len(bundle)))
            self.end_headers()
            self.wfile.write(bundle)

    other, other_url = _start(Other)

    class Redirect(http_server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", other_url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    pki = make_pki(tmp_path / "pki")
    plain, plain_url = _start(Redirect)
    secure, secure_url = _start(Redirect, tls=pki)
    token = tmp_path / "token"
    token.write_text("fleet-token\n")

    def plan(url: str) -> subprocess.CompletedProcess[str]:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"node: {{name: n}}\nstateDir: {tmp_path / 'state'}\nsources:\n"
            f"  - url: {url}/ds.yaml\n    tokenFile: {token}\n    caFile: {pki.ca}\n"
            "    headers: {authorization: 'Basic c2VjcmV0', X-Api-Key: key-123}\n"
        )
        return subprocess.run(
            [NODEAGENT, "--config", str(cfg), "plan"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
        )  # fmt: skip

    try:
        done = plan(plain_url)
        assert "moved" in done.stdout, done.stdout + done.stderr
        assert seen and not any({"authorization", "x-api-key"} & h.keys() for h in seen)
        seen.clear()
        done = plan(secure_url)
        assert "refused a redirect from https" in done.stdout, done.stdout + done.stderr
        assert "moved" not in done.stdout.split("Errors")[0] and not seen
    finally:
        for srv in (other, plain, secure):
            srv.shutdown()
            srv.server_close()
