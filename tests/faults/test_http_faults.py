"""An HTTP source that is down, answers 500, garbage or an empty body for a long stretch: zero pods removed;
when it answers again with a changed bundle, the change applies (ARCHITECTURE.md §2)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from http import server as http_server
from typing import Any

import pytest

from nodeagent.fleet import httpserver
from nodeagent.runtime import docker as docker_rt
from tests.support.waiting import wait_for

from .conftest import AgentHome, daemonset, pods

FAULT_SECONDS = 12.0  # a long stretch: several polls, with the error backoff growing (1, 2, 4, 8 s)
HTML_ERROR = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"
)
FAULTS: dict[str, tuple[int, bytes]] = {
    "500": (500, b"internal error\n"),
    "garbage": (200, b"\x00\x01\x02\xfe\xff{{{ not: [yaml\n"),
    "html-error-page": (200, HTML_ERROR),  # a proxy's error page with status 200
    "empty": (200, b""),
    "comments-only": (200, b"# nothing here yet\n---\n"),
    "truncated": (200, b""),  # filled in with half of the good bundle
}


class Source:
    """A tiny controllable HTTP source on 127.0.0.1: a good bundle (with ETag), or a fault."""

    def __init__(self) -> None:
        self.body = b""
        self.fault: tuple[int, bytes] | None = None
        self.requests = 0
        self.faulty_requests = 0
        self.lock = threading.Lock()
        self.port = 0
        self._httpd: httpserver.TrackingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fleet.yaml"

    def start(self) -> None:
        source = self

        class Handler(http_server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with source.lock:
                    source.requests += 1
                    fault, body = source.fault, source.body
                    if fault is not None:
                        source.faulty_requests += 1
                if fault is not None:
                    self._send(fault[0], fault[1], {})
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self._send(304, b"", {"ETag": etag})
                else:
                    self._send(200, body, {"ETag": etag})

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                if code != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if code != 304:
                    self.wfile.write(body)

        httpd = httpserver.TrackingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self) -> None:
        """Down: the port refuses connections and the open ones are dropped, as when a server dies."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.drop_connections()
            self._httpd = None


@pytest.fixture
def source() -> Iterator[Source]:
    s = Source()
    yield s
    s.stop()


def bundle(namespace: str, *names: str) -> bytes:
    return "---\n".join(daemonset(n, namespace) for n in names).encode()


def running_ids(engine: docker_rt.DockerRuntime, namespace: str) -> dict[str, str]:
    """DaemonSet pod name -> id of its running container."""
    return {
        c.labels["io.kubernetes.pod.name"]: c.id
        for c in engine.list_labelled(f"io.kubernetes.pod.namespace={namespace}")
        if c.running
    }


@pytest.mark.parametrize("fault", ["down", *FAULTS])
def test_a_failing_http_source_removes_nothing_and_a_recovery_applies_the_change(
    fault: str, home: AgentHome, docker_runtime: docker_rt.DockerRuntime, source: Source
) -> None:
    node = f"http-fault-{home.namespace}"  # agents are scoped by node name
    home.config.write_text(
        f"node: {{name: {node}}}\n"
        f"sources:\n  - {{url: '{source.url}', pollInterval: 1s, timeout: 2s}}\n"
        "stateDir: state\nresyncInterval: 2s\n"
    )
    source.body = bundle(home.namespace, "a", "b")
    agent = home.start_run()
    try:
        assert wait_for(lambda: len(running_ids(docker_runtime, home.namespace)) == 2, timeout=60), pods(
            docker_runtime, home.namespace
        )
        before = running_ids(docker_runtime, home.namespace)

        if fault == "down":
            source.stop()
        else:
            status, body = FAULTS[fault]
            if fault == "truncated":
                body = source.body[: len(source.body) // 2 - 7]
            with source.lock:
                source.fault = (status, body)
        deadline = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < deadline:  # checked all along, not only at the end
            assert running_ids(docker_runtime, home.namespace) == before, pods(docker_runtime, home.namespace)
            time.sleep(1.0)
        if fault != "down":
            assert source.faulty_requests >= 3, "the agent kept polling through the fault"
        assert agent.poll() is None, (home.root / "agent.log").read_text()[-3000:]

        # recovery, with a changed bundle: b withdrawn, c added, a untouched
        source.body = bundle(home.namespace, "a", "c")
        if fault == "down":
            source.start()  # same port
        else:
            with source.lock:
                source.fault = None

        def changed() -> bool:
            ids = running_ids(docker_runtime, home.namespace)
            return {name.rsplit("-", 1)[0] for name in ids} == {"a", "c"}

        assert wait_for(changed, timeout=60), pods(docker_runtime, home.namespace)
        a_pod = next(name for name in before if name.startswith("a-"))
        assert running_ids(docker_runtime, home.namespace)[a_pod] == before[a_pod], "a was never restarted"
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert agent.returncode == 0
    log = (home.root / "agent.log").read_text()
    if fault == "html-error-page":
        # YAML reads an HTML page as one scalar document: a document that fails validation (its last
        # good version kept), not a failed fetch
        assert '"manifest_invalid"' in log or '"source_unavailable"' in log, log[-3000:]
    else:
        assert '"source_unavailable"' in log, log[-3000:]
        assert '"source_recovered"' in log, log[-3000:]
