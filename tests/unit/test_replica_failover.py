"""Replicas of one source: `url:` and `statusServer:` as lists, and an agent that moves to the next replica.

Real HTTP servers on loopback; a "dead" replica is a port nobody listens on (connection refused), or one
that answers 503 (a draining `serve` behind a proxy).
"""

from __future__ import annotations

import http.server as http_server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nodeagent import errors, settings
from nodeagent.fleet import report
from nodeagent.sources import files, http
from tests.support.httpsource import content_images, ds_yaml


class Replica:
    """A loopback HTTP server answering GET with `body` (or `status`), recording POSTed JSON."""

    def __init__(self, body: str = "", status: int = 200) -> None:
        self.body = body
        self.status = status
        self.gets = 0
        self.posts: list[Any] = []
        outer = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.gets += 1
                data = outer.body.encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                outer.posts.append(json.loads(self.rfile.read(n)))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/manifests"
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dead_url() -> str:
    """A loopback URL whose port refuses connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/manifests"


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        r.close()


def source(urls: list[str]) -> http.HttpSource:
    cfg = settings.HttpSource(url=urls[0], urls=tuple(urls), timeout=2.0)
    return http.HttpSource("fleet", cfg, lambda: None, state_dir=None, watch=False)


def images(src: http.HttpSource) -> list[str]:
    snap = src.snapshot()
    assert snap is not None
    return sorted(content_images(files.FileContent(snap.documents)).values())


# --- config ---------------------------------------------------------------------------------------


def parse(raw: dict[str, Any]) -> settings.Settings:
    return settings.from_dict(raw, "/etc/nodeagent", "config.yaml")


def test_url_and_status_server_accept_a_list_of_replicas() -> None:
    s = parse(
        {
            "sources": [{"url": ["https://a.example:8443/manifests", "https://b.example:8443/manifests"]}],
            "statusServer": ["https://a.example:8443", "https://b.example:8443"],
        }
    )
    src = s.sources[0]
    assert isinstance(src, settings.HttpSource)
    assert src.url == "https://a.example:8443/manifests"
    assert src.replicas == ("https://a.example:8443/manifests", "https://b.example:8443/manifests")
    assert s.status_server == "https://a.example:8443"
    assert report.servers(s) == ("https://a.example:8443", "https://b.example:8443")
    # the source on either replica's origin lends its credentials to the reporter
    assert report.credentials_for(s) is src


def test_a_single_url_stays_as_it_was() -> None:
    s = parse({"sources": [{"url": "http://a/"}], "statusServer": "http://a"})
    assert s.sources == (settings.HttpSource(url="http://a/"),)
    assert s.sources[0].replicas == ("http://a/",)
    assert report.servers(s) == ("http://a",)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sources": [{"url": []}]}, "sources[0].url: must be a URL or a non-empty list of URLs"),
        ({"sources": [{"url": ["http://a/", "ftp://b/"]}]}, "sources[0].url[1]: must be a URL with scheme"),
        ({"sources": [{"url": ["http://a/", "http://a/"]}]}, "sources[0].url[1]: duplicate URL"),
        ({"statusServer": ["http://a", 5]}, "statusServer[1]: must be a string"),
    ],
)
def test_bad_replica_lists_are_refused_at_their_path(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        parse(raw)
    assert message in str(info.value)


# --- the HTTP source --------------------------------------------------------------------------------


def test_source_moves_to_the_next_replica_on_a_connection_error(replicas: list[Replica]) -> None:
    live = Replica(ds_yaml("log"))
    replicas.append(live)
    src = source([dead_url(), live.url])
    src.relist()
    assert src.failure is None
    assert images(src) == ["busybox:1.36"]
    assert src.base_url == live.url  # and it stays there
    src.relist()
    assert live.gets == 2


def test_source_fails_over_when_its_replica_dies_and_keeps_the_bundle_when_all_are_down(
    replicas: list[Replica],
) -> None:
    a, b = Replica(ds_yaml("log")), Replica(ds_yaml("log", "busybox:1.37"))
    replicas.extend([a, b])
    src = source([a.url, b.url])
    src.relist()
    assert images(src) == ["busybox:1.36"] and b.gets == 0
    a.close()
    replicas.remove(a)
    src.relist()  # one call: a refuses, b answers with the next change
    assert src.failure is None and src.base_url == b.url
    assert images(src) == ["busybox:1.37"]
    b.close()
    replicas.remove(b)
    src.relist()
    assert src.failure is not None and "last good bundle stays in force" in src.failure.message
    assert images(src) == ["busybox:1.37"]


def test_a_503_moves_on_but_a_404_does_not(replicas: list[Replica]) -> None:
    draining, live = Replica(status=503), Replica(ds_yaml("log"))
    replicas.extend([draining, live])
    src = source([draining.url, live.url])
    src.relist()
    assert src.failure is None and src.base_url == live.url
    missing, other = Replica(status=404), Replica(ds_yaml("log"))
    replicas.extend([missing, other])
    src = source([missing.url, other.url])
    src.relist()
    assert src.failure is not None and "HTTP 404" in src.failure.message
    assert other.gets == 0  # a wrong answer is not a dead replica


# --- the status reporter -------------------------------------------------------------------------------


def test_reporter_posts_to_the_next_replica_when_one_is_down(replicas: list[Replica]) -> None:
    live = Replica()
    replicas.append(live)
    rep = report.Reporter([dead_url().removesuffix("/manifests"), live.base], "node-1", timeout=2.0)
    try:
        assert rep.post({"name": "node-1"})
        assert live.posts == [{"name": "node-1"}]
        assert rep.url == live.base + "/nodes/node-1/status"
        assert rep.post({"name": "node-1", "n": 2})  # stays on the live one
        assert len(live.posts) == 2
    finally:
        rep.stop()


def test_reporter_does_not_move_on_a_refused_report(replicas: list[Replica]) -> None:
    refusing, other = Replica(status=400), Replica()
    replicas.extend([refusing, other])
    rep = report.Reporter([refusing.base, other.base], "node-1", timeout=2.0)
    try:
        assert not rep.post({"name": "node-1"})
        assert other.posts == []
    finally:
        rep.stop()
