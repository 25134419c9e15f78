"""`nodeagent serve` against hostile clients (issue 16): malformed and oversized reports, too many
nodes, nodes that never come back, credentials of one node used for another, connections that never
send anything, watches whose clients have gone. In-process servers on loopback; no Docker."""

from __future__ import annotations

import io
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent import cli
from nodeagent.fleet import aioserver, serve
from nodeagent.sources import http
from tests.support.httpsource import start_serve
from tests.support.manifests import daemonset, put
from tests.support.pki import Pki, make_pki
from tests.support.waiting import wait_for

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")


def report(name: str, **status: Any) -> dict[str, Any]:
    ds = {"namespace": "default", "name": "a", "desiredNumberScheduled": 1, "numberReady": 1, "pods": []}
    ds.update(status)
    return {"name": name, "labels": {}, "taints": [], "status": {"daemonSets": [ds], "staticPods": []}}


def post(url: str, doc: object, token: str | None = None, **kw: Any) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps(doc).encode()
    resp = http.request("POST", url, body=body, headers={"Content-Type": "application/json", **headers}, **kw)
    return resp.status


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    put(d, "a", daemonset("a"))
    return d


@pytest.fixture
def server(mdir: Path) -> Iterator[serve.Server]:
    s = start_serve(mdir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_malformed_report_is_400_naming_the_field_and_breaks_nothing(server: serve.Server) -> None:
    url = server.url + "/nodes/n1/status"
    assert post(url, report("n1")) == 204
    resp = http.request("POST", url, body=json.dumps(report("n1", pods=5)).encode())
    assert resp.status == 400
    assert b"status.daemonSets[0].pods" in resp.body
    assert post(server.url + "/nodes/n2/status", report("n2", numberReady="1")) == 400
    evil = "evil\x1b]0;owned\x07"
    assert post(server.url + "/nodes/evil%1B%5D0%3Bowned%07/status", report(evil)) == 400
    labelled = {**report("n3"), "labels": {"a": "\x1b[2J"}}
    assert post(server.url + "/nodes/n3/status", labelled) == 400
    for path in ("/", "/api/fleet", "/api/nodes", "/api/daemonsets"):
        assert http.request("GET", server.url + path).status == 200
    out = io.StringIO()
    assert cli.cmd_fleet_status(server.url, "table", out, None, None) == 0
    assert "n1" in out.getvalue()


def test_an_oversized_report_is_413_before_its_body_is_read(mdir: Path) -> None:
    s = start_serve(mdir, max_report=1000)
    try:
        host, port = s.httpd.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /nodes/n1/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 50000000\r\n\r\n{"
            )
            answer = sock.recv(4096)  # answered although 50 MB were announced and 1 byte sent
        assert answer.startswith(b"HTTP/1.1 413")
        assert post(s.url + "/nodes/n1/status", report("n1")) == 204
    finally:
        s.stop()


def test_the_node_cap_and_node_delete(mdir: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("shared-secret\n")
    s = start_serve(mdir, max_nodes=2, token_file=str(token))
    try:
        for n in ("n1", "n2"):
            assert post(s.url + f"/nodes/{n}/status", report(n), "shared-secret") == 204
        assert post(s.url + "/nodes/n3/status", report("n3"), "shared-secret") == 429
        assert post(s.url + "/nodes/n1/status", report("n1"), "shared-secret") == 204  # known: fine
        cmd = [NODEAGENT, "node", "delete", "n1", "--server", s.url, "--token-file", str(token)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "not known" in again.stderr
        denied = subprocess.run(cmd[:-2], capture_output=True, text=True, timeout=30)
        assert denied.returncode == 1 and "401" in denied.stderr
        assert post(s.url + "/nodes/n3/status", report("n3"), "shared-secret") == 204
        names = [n["name"] for n in s.fleet_json()["nodes"]]
        assert names == ["n2", "n3"]
    finally:
        s.stop()


def test_a_node_not_ready_for_longer_than_the_expiry_is_forgotten(mdir: Path) -> None:
    now = [1000.0]
    s = serve.Server(serve.ServeConfig(str(mdir), "127.0.0.1:0", node_expiry=60.0), clock=lambda: now[0])
    s.start()
    try:
        assert post(s.url + "/nodes/old/status", report("old")) == 204
        now[0] += 90.0  # NotReady (grace 40 s) for 50 s
        assert post(s.url + "/nodes/new/status", report("new")) == 204
        assert [n["name"] for n in s.fleet_json()["nodes"]] == ["new", "old"]
        now[0] += 20.0  # NotReady for 70 s > 60 s
        assert [n["name"] for n in s.fleet_json()["nodes"]] == ["new"]
    finally:
        s.stop()


def test_per_node_tokens_post_only_their_own_status(mdir: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "node-tokens"
    tokens.mkdir()
    (tokens / "n1").write_text("token-of-n1\n")
    (tokens / "n2").write_text("token-of-n2\n")
    shared = tmp_path / "shared"
    shared.write_text("shared-secret\n")
    s = start_serve(mdir, node_tokens=str(tokens), token_file=str(shared))
    try:
        assert post(s.url + "/nodes/n1/status", report("n1"), "token-of-n1") == 204
        assert post(s.url + "/nodes/n2/status", report("n2"), "token-of-n1") == 403
        assert post(s.url + "/nodes/n2/status", report("n2"), "unknown") == 401
        assert post(s.url + "/nodes/n2/status", report("n2"), "shared-secret") == 204  # the simple mode
        n2 = {"Authorization": "Bearer token-of-n2"}
        assert http.request("GET", s.url + "/manifests?node=n2", headers=n2).status == 200
        # a node's credential fetches only its own bundle (its rollout revisions), never another's
        assert http.request("GET", s.url + "/manifests?node=n1", headers=n2).status == 403
        assert http.request("GET", s.url + "/manifests", headers=n2).status == 403
        shared_auth = {"Authorization": "Bearer shared-secret"}
        assert http.request("GET", s.url + "/manifests", headers=shared_auth).status == 200
        resp = http.request("DELETE", s.url + "/nodes/n2", headers={"Authorization": "Bearer token-of-n1"})
        assert resp.status == 403
        (tokens / "n3").write_text("token-of-n3\n")  # a node added later is picked up
        wait_for(lambda: post(s.url + "/nodes/n3/status", report("n3"), "token-of-n3") == 204)
    finally:
        s.stop()


def test_the_client_certificate_cn_names_the_node(mdir: Path, pki: Pki) -> None:
    s = start_serve(mdir, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), client_ca=str(pki.ca))
    try:
        ctx = http.ssl_context(str(pki.ca), str(pki.client_cert), str(pki.client_key))
        assert post(s.url + "/nodes/node-a/status", report("node-a"), context=ctx) == 204
        assert post(s.url + "/nodes/node-b/status", report("node-b"), context=ctx) == 403
        assert http.request("GET", s.url + "/api/fleet", context=ctx).status == 200
    finally:
        s.stop()


def test_terminal_escapes_in_remote_fields_are_neutralised() -> None:
    doc = {
        "daemonSets": [{"namespace": "default", "name": "x\x1b[2J", "desiredNumberScheduled": 1}],
        "nodes": [{"name": "evil\x1b]0;owned\x07", "ready": True, "taints": [], "agentVersion": "\x9b31m"}],
        "errors": [{"file": "f", "document": None, "path": "", "message": "bad\x1b[31m"}],
    }
    out = io.StringIO()
    cli.print_fleet(doc, out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "evil?]0;owned?" in text


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(mdir: Path) -> None:
    s = start_serve(mdir, header_timeout=1.0)
    try:
        host, port = s.httpd.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=30) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server
            assert time.monotonic() - started < 20  # not the 60 s idle read timeout
    finally:
        s.stop()


def test_idle_connections_beyond_the_limit_do_not_lock_out_healthz(mdir: Path) -> None:
    s = start_serve(mdir, max_connections=5)
    socks = []
    try:
        host, port = s.httpd.server_address[:2]
        for _ in range(10):
            socks.append(socket.create_connection((str(host), int(port)), timeout=10))
        assert http.request("GET", s.url + "/healthz", timeout=5).status == 200
        wait_for(lambda: s.httpd.open_connections() <= 5)
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_watch_whose_client_has_gone_frees_its_connection(server: serve.Server) -> None:
    bundle = server.publisher.bundle()
    assert bundle is not None
    host, port = server.httpd.server_address[:2]
    sock = socket.create_connection((str(host), int(port)), timeout=10)
    etag = bundle.etag.strip('"')
    sock.sendall(
        f'GET /manifests?watch=1&timeout=300 HTTP/1.1\r\nHost: x\r\nIf-None-Match: "{etag}"\r\n\r\n'.encode()
    )
    wait_for(lambda: "watch" in server.httpd.states())
    sock.close()
    wait_for(lambda: server.httpd.open_connections() == 0, timeout=10)


def test_a_watch_on_a_descriptor_past_1024_is_held_until_its_bundle_changes(
    server: serve.Server, mdir: Path
) -> None:
    """A fleet's connections soon have descriptors numbered past select()'s 1024: such a watch was taken
    for one whose client had gone and answered 304 at once, so 1000 nodes waited a poll interval for a
    change. Here the server (in this process) gets such a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"an open-file limit of {hard} leaves no descriptor past 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))  # hard is 1200 or more
    filler: list[int] = []
    try:
        while not filler or filler[-1] < 1030:  # every lower descriptor taken: the next socket is past them
            filler.append(os.open(os.devnull, os.O_RDONLY))
        etag = http.request("GET", server.url + "/manifests?node=n1", timeout=10).headers["etag"]
        host, port = server.httpd.server_address[:2]
        sock = socket.create_connection((str(host), int(port)), timeout=10)
        sock.sendall(
            f"GET /manifests?node=n1&watch=1&timeout=300&etag={etag} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        wait_for(lambda: "watch" in server.httpd.states())
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # held: no answer while nothing changed
        put(mdir, "b", daemonset("b"))
        server.publisher.scan()
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        sock.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_mtls_with_tokens_the_node_token_must_match_the_cn(mdir: Path, pki: Pki, tmp_path: Path) -> None:
    tokens = tmp_path / "node-tokens"
    tokens.mkdir()
    (tokens / "node-a").write_text("token-a\n")
    (tokens / "node-b").write_text("token-b\n")
    shared = tmp_path / "shared"
    shared.write_text("admin\n")
    s = start_serve(
        mdir,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        client_ca=str(pki.ca),
        node_tokens=str(tokens),
        token_file=str(shared),
    )
    try:
        ctx = http.ssl_context(str(pki.ca), str(pki.client_cert), str(pki.client_key))  # CN node-a
        assert post(s.url + "/nodes/node-a/status", report("node-a"), "token-a", context=ctx) == 204
        assert post(s.url + "/nodes/node-a/status", report("node-a"), "token-b", context=ctx) == 401
        assert post(s.url + "/nodes/node-a/status", report("node-a"), context=ctx) == 401
        assert post(s.url + "/nodes/node-b/status", report("node-b"), "admin", context=ctx) == 204
    finally:
        s.stop()


def test_a_numeric_secret_value_is_never_shown_on_the_fleet_page_logs_or_status(mdir: Path) -> None:
    import structlog.testing

    (mdir / "s.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\n"
        "stringData: {password: 918273645}\n"
    )
    with structlog.testing.capture_logs() as logs:
        s = start_serve(mdir)
    try:
        doc = s.fleet_json()
        assert any(e["path"] == "stringData[password]" for e in doc["errors"])
        page = http.request("GET", s.url + "/").body.decode()
        api = http.request("GET", s.url + "/api/fleet").body.decode()
        out = io.StringIO()
        assert cli.cmd_fleet_status(s.url, "table", out, None, None) == 0
        for text in (page, api, out.getvalue(), repr(logs)):
            assert "918273645" not in text
    finally:
        s.stop()


def test_held_watches_take_no_thread_each(server: serve.Server) -> None:
    """A fleet's watches are parked on serve's event loop: 200 held watches (shared and per-node) add a
    few worker threads at most, not 200, and one change answers every one of them."""
    host, port = server.httpd.server_address[:2]
    etag = http.request("GET", server.url + "/manifests", timeout=10).headers["etag"]
    node_etag = http.request("GET", server.url + "/manifests?node=n0", timeout=10).headers["etag"]
    before = threading.active_count()
    socks = []
    try:
        for i in range(200):
            sock = socket.create_connection((str(host), int(port)), timeout=30)
            target = f"/manifests?watch=1&timeout=300&etag={etag}"
            if i % 2:
                target = f"/manifests?node=n{i}&watch=1&timeout=300&etag={node_etag}"
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
        wait_for(lambda: server.httpd.states().count("watch") == 200, timeout=30)
        assert threading.active_count() - before <= aioserver.WORKERS
        put(Path(server.publisher.directory), "b", daemonset("b"))
        server.publisher.scan()
        for sock in socks:
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()
