"""HttpSource against real HTTP(S) servers on loopback: our `serve`, and plain `http.server` hosts.

`StaticHost` stands in for a static web server or object store: it serves whatever body the test
sets, with no ETag and no watch support. TLS material is made by the test (tests/support/pki.py).
Every wait is a bounded poll on a condition; nothing asserts on timing.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import server as http_server
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from nodeagent import settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import desired, identity
from nodeagent.runtime import docker as docker_rt
from nodeagent.service import metrics
from nodeagent.sources import http
from tests.support.httpsource import bundle, images, source, start_serve
from tests.support.manifests import daemonset, put
from tests.support.pki import Pki, make_pki
from tests.support.waiting import wait_for


def fetches(src: http.HttpSource, result: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "nodeagent_source_fetches_total", {"source": src.name, "result": result}
        )
        or 0.0
    )


# --- servers ------------------------------------------------------------------------------------------


@dataclass
class StaticHost:
    """A plain static host on loopback: one body, no ETag, no watch; status and delay settable."""

    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    httpd: http_server.ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fleet.yaml"

    def start(self) -> StaticHost:
        host = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.paths.append(self.path)
                host.headers.append(dict(self.headers))
                if host.delay:
                    time.sleep(host.delay)
                self.send_response(host.status)
                self.send_header("Content-Length", str(len(host.body)))
                self.end_headers()
                self.wfile.write(host.body)

        self.httpd = http_server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
def static_host() -> Iterator[StaticHost]:
    host = StaticHost().start()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def manifests_dir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    put(d, "a", daemonset("a"))
    return d


# --- polling and 304 ----------------------------------------------------------------------------------


def test_static_host_with_last_modified_answers_304_and_nothing_is_parsed(tmp_path: Path) -> None:
    """A real `http.server` file host: Last-Modified / If-Modified-Since, no ETag, no watch."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "fleet.yaml").write_bytes(bundle(daemonset("a")))
    old = time.time() - 60
    os.utime(root / "fleet.yaml", (old, old))
    handler = functools.partial(http_server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http_server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, args=(0.1,), daemon=True).start()
    try:
        src = source(f"http://127.0.0.1:{httpd.server_address[1]}/fleet.yaml", tmp_path)
        src.relist()
        first = src.snapshot()
        assert first is not None and images(src) == {"a": "busybox:1.36"}
        src.relist()
        assert fetches(src, "not_modified") == 1 and fetches(src, "ok") == 1
        assert src.snapshot() == first and src.failure is None
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_serve_etag_answers_304(tmp_path: Path, manifests_dir: Path) -> None:
    s = start_serve(manifests_dir)
    try:
        src = source(s.url + "/manifests", tmp_path)
        src.relist()
        src.relist()
        assert fetches(src, "ok") == 1 and fetches(src, "not_modified") == 1
        assert images(src) == {"a": "busybox:1.36"}
    finally:
        s.stop()


def test_static_host_without_validators_is_polled_and_same_bytes_are_not_reparsed(
    tmp_path: Path, static_host: StaticHost
) -> None:
    static_host.body = bundle(daemonset("a"))
    src = source(static_host.url, tmp_path, poll_interval=0.05)
    src.start()
    try:
        wait_for(lambda: len(static_host.paths) >= 3)
        assert fetches(src, "ok") == 1 and fetches(src, "not_modified") >= 1
        static_host.body = bundle(daemonset("a", image="busybox:1.37"))
        wait_for(lambda: images(src) == {"a": "busybox:1.37"})
        assert all(p == "/fleet.yaml" for p in static_host.paths)  # never a watch query on a static host
    finally:
        src.stop()


# --- watch --------------------------------------------------------------------------------------------


def test_watch_delivers_a_change_without_polling(tmp_path: Path, manifests_dir: Path) -> None:
    """pollInterval is an hour: only the long-poll watch can bring the change."""
    s = start_serve(manifests_dir)
    changed = threading.Event()
    try:
        src = source(s.url + "/manifests", tmp_path, poll_interval=3600, on_change=changed.set)
        src.start()
        try:
            assert images(src) == {"a": "busybox:1.36"}
            changed.clear()
            put(manifests_dir, "a", daemonset("a", image="busybox:1.37"))
            wait_for(lambda: images(src) == {"a": "busybox:1.37"})
            put(manifests_dir, "b", daemonset("b"))
            wait_for(lambda: set(images(src)) == {"a", "b"})
            assert changed.is_set()
        finally:
            src.stop()  # aborts the watch in flight
    finally:
        s.stop()


def test_watch_protocol_on_the_wire(manifests_dir: Path) -> None:
    s = start_serve(manifests_dir)
    try:
        first = http.request("GET", s.url + "/manifests")
        assert first.status == 200 and first.headers["x-nodeagent-watch"] == "1"
        etag = first.headers["etag"]
        held = http.request("GET", f"{s.url}/manifests?watch=1&timeout=0.2&etag={etag}")
        assert held.status == 304
        stale = http.request("GET", s.url + '/manifests?watch=1&timeout=30&etag="old"')
        assert stale.status == 200 and stale.body == first.body
        assert http.request("GET", s.url + "/manifests", headers={"If-None-Match": etag}).status == 304
    finally:
        s.stop()


# --- TLS and auth -------------------------------------------------------------------------------------


def test_tls_with_a_ca_made_in_the_test(tmp_path: Path, manifests_dir: Path, pki: Pki) -> None:
    s = start_serve(manifests_dir, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    try:
        assert s.url.startswith("https://")
        good = source(s.url + "/manifests", tmp_path, ca_file=str(pki.ca))
        good.relist()
        assert images(good) == {"a": "busybox:1.36"} and good.failure is None
        wrong = source(s.url + "/manifests", tmp_path, ca_file=str(pki.other_ca))
        wrong.relist()
        assert wrong.snapshot() is None
        assert wrong.failure is not None and "TLS" in wrong.failure.message
    finally:
        s.stop()


def test_bearer_token_required_and_rotated(tmp_path: Path, manifests_dir: Path) -> None:
    server_token = tmp_path / "server-token"
    server_token.write_text("s3cret-one\n")
    client_token = tmp_path / "client-token"
    client_token.write_text("s3cret-one")
    s = start_serve(manifests_dir, token_file=str(server_token))
    try:
        anonymous = source(s.url + "/manifests", tmp_path)
        with structlog.testing.capture_logs() as logs:
            anonymous.relist()
        assert anonymous.failure is not None and "HTTP 401" in anonymous.failure.message
        assert "s3cret" not in repr(logs)
        src = source(s.url + "/manifests", tmp_path, token_file=str(client_token))
        src.relist()
        assert images(src) == {"a": "busybox:1.36"}
        server_token.write_text("s3cret-two")
        client_token.write_text("s3cret-two")  # re-read on the next request: no restart
        put(manifests_dir, "a", daemonset("a", image="busybox:1.37"))

        def updated() -> bool:
            src.relist()
            return images(src) == {"a": "busybox:1.37"}

        wait_for(updated)
        assert src.failure is None
        assert http.request("GET", s.url + "/healthz").status == 200  # the one open endpoint
        assert http.request("GET", s.url + "/api/fleet").status == 401
    finally:
        s.stop()


def test_mutual_tls(tmp_path: Path, manifests_dir: Path, pki: Pki) -> None:
    s = start_serve(
        manifests_dir, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), client_ca=str(pki.ca)
    )
    try:
        without = source(s.url + "/manifests", tmp_path, ca_file=str(pki.ca))
        without.relist()
        assert without.snapshot() is None and without.failure is not None
        src = source(
            s.url + "/manifests",
            tmp_path,
            ca_file=str(pki.ca),
            client_cert=str(pki.client_cert),
            client_key=str(pki.client_key),
            node="node-a",  # the certificate's CN: a node's credential fetches its own bundle
        )
        src.relist()
        assert images(src) == {"a": "busybox:1.36"} and src.failure is None
    finally:
        s.stop()


# --- failures keep the last good bundle ---------------------------------------------------------------


def test_source_down_keeps_the_last_good_bundle_and_logs_once(
    tmp_path: Path, static_host: StaticHost
) -> None:
    static_host.body = bundle(daemonset("a"))
    src = source(static_host.url, tmp_path, timeout=2.0)
    src.relist()
    good = src.snapshot()
    assert good is not None and good.ok
    port = static_host.port
    static_host.stop()
    with structlog.testing.capture_logs() as logs:
        src.relist()
        src.relist()
    shot = src.snapshot()
    assert shot is not None and not shot.ok and shot.documents == good.documents
    assert src.failure is not None and "last good bundle stays" in src.failure.message
    assert [e["event"] for e in logs].count("source_unavailable") == 1
    merger = desired.Merger([src.name])
    merger.update(good)
    assert list(merger.update(shot).daemonsets) == [("default", "a")]

    again = StaticHost(body=bundle(daemonset("a")), port=port).start()  # back on the same port
    try:
        with structlog.testing.capture_logs() as logs:
            src.relist()
        assert [e["event"] for e in logs] == ["source_recovered"]
        assert src.failure is None and src.snapshot() == good
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"", "empty body"),
        (200, b"   \n# nothing\n", "empty body"),
        (200, b"{{{{ garbage", "unusable body"),
        (200, b"\x00\x01\x02\xff", "unusable body"),
        (500, b"internal error", "HTTP 500"),
        (404, b"not found", "HTTP 404"),
        (403, b"", "HTTP 403"),
    ],
    ids=["empty", "blank", "garbage", "binary", "500", "404", "403"],
)
def test_bad_answers_keep_the_last_good_bundle(
    tmp_path: Path, static_host: StaticHost, status: int, body: bytes, message: str
) -> None:
    static_host.body = bundle(daemonset("a"), daemonset("b"))
    src = source(static_host.url, tmp_path)
    src.relist()
    good = src.snapshot()
    static_host.status, static_host.body = status, body
    src.relist()
    shot = src.snapshot()
    assert shot is not None and good is not None
    assert not shot.ok and shot.documents == good.documents
    assert src.failure is not None and message in src.failure.message


def test_timeout_and_size_cap_are_failures(tmp_path: Path, static_host: StaticHost) -> None:
    static_host.body = bundle(daemonset("a"))
    capped = source(static_host.url, tmp_path, max_body=100)
    capped.relist()
    assert capped.failure is not None and "larger than 100 bytes" in capped.failure.message
    static_host.delay = 1.0
    slow = source(static_host.url, tmp_path, timeout=0.2)
    slow.relist()
    assert slow.failure is not None and "timed out" in slow.failure.message


def test_an_invalid_document_keeps_its_last_good_version(tmp_path: Path, static_host: StaticHost) -> None:
    static_host.body = bundle(daemonset("a"), daemonset("b"))
    src = source(static_host.url, tmp_path)
    src.relist()
    broken = daemonset("b")
    del broken["spec"]["selector"]
    static_host.body = bundle(daemonset("a", image="busybox:1.37"), broken)
    src.relist()
    assert images(src) == {"a": "busybox:1.37", "b": "busybox:1.36"}
    shot = src.snapshot()
    assert shot is not None and shot.ok and any(e.name == "b" for e in shot.errors)


def test_explicit_empty_list_withdraws_everything(tmp_path: Path, static_host: StaticHost) -> None:
    static_host.body = bundle(daemonset("a"))
    src = source(static_host.url, tmp_path)
    src.relist()
    static_host.body = b'{"apiVersion": "v1", "kind": "List", "items": []}'
    src.relist()
    shot = src.snapshot()
    assert shot is not None and shot.ok and shot.documents == () and src.failure is None
    merger = desired.Merger([src.name])
    state = merger.update(shot)
    assert state.daemonsets == {} and state.all_sources_seen


def test_started_while_down_uses_the_cache_and_holds_removals(
    tmp_path: Path, static_host: StaticHost
) -> None:
    static_host.body = bundle(daemonset("a"), daemonset("b"))
    first = source(static_host.url, tmp_path)
    first.relist()
    static_host.stop()
    later = http.HttpSource("later", first.cfg, lambda: None, state_dir=str(tmp_path / f"state-{first.name}"))
    with structlog.testing.capture_logs() as logs:
        later.relist()
    assert "source_cache_loaded" in [e["event"] for e in logs]
    assert images(later) == {"a": "busybox:1.36", "b": "busybox:1.36"}
    shot = later.snapshot()
    assert shot is not None and shot.ok  # in force, so the pods are recreated...
    state = desired.Merger(["later"]).update(shot)
    assert set(state.daemonsets) == {("default", "a"), ("default", "b")}
    assert any(not (e.kind and e.name) for e in state.errors)  # ...but a source error holds removals
    no_cache = http.HttpSource("fresh", first.cfg, lambda: None, state_dir=str(tmp_path / "elsewhere"))
    no_cache.relist()
    assert no_cache.snapshot() is None and no_cache.failure is not None


# --- the agent on the real engine ---------------------------------------------------------------------


@pytest.mark.docker
def test_agent_keeps_pods_while_the_source_is_down_and_recreates_them_from_the_cache_after_a_restart(
    tmp_path: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str, static_host: StaticHost
) -> None:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    node = f"node-{ns}"
    static_host.body = bundle(
        daemonset("web", image=test_image, namespace=ns), daemonset("log", image=test_image, namespace=ns)
    )
    raw = {
        "node": {"name": node},
        "sources": [{"url": static_host.url, "timeout": "2s"}],
        "stateDir": str(tmp_path / "state"),
        "healthz": {"enabled": False},
    }
    cfg = settings.from_dict(raw, str(tmp_path))

    def agent() -> agent_mod.Agent:
        a = agent_mod.Agent(cfg, docker_rt.DockerRuntime(node_name=node))
        a.relist()
        return a

    def running() -> set[str]:
        found = docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}")
        return {c.labels[identity.LABEL_OWNER] for c in found if c.running}

    owners = {identity.owner_daemonset(ns, "web"), identity.owner_daemonset(ns, "log")}
    try:
        a = agent()
        assert not a.reconcile().failed
        wait_for(lambda: running() == owners)

        static_host.stop()  # the source goes down: nothing is removed
        a.relist()
        result = a.reconcile()
        assert [o.action.verb for o in result.outcomes if o.action.verb in ("remove", "stop")] == []
        assert running() == owners

        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)  # a reboot during the outage lost the containers
        restarted = agent()  # a new process, source still down: the cache in stateDir
        assert not restarted.reconcile().failed
        wait_for(lambda: running() == owners)

        back = StaticHost(
            body=b'{"apiVersion": "v1", "kind": "List", "items": []}', port=static_host.port
        ).start()
        try:  # the source is back and explicitly lists nothing: withdrawn
            restarted.relist()
            assert not restarted.reconcile().failed
            wait_for(lambda: running() == set())
        finally:
            back.stop()
    finally:
        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)
