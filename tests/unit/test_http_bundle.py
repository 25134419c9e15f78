"""The pure parts of the HTTP source: what a body means, the cache format, safe URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.agent import desired
from nodeagent.sources import files, http
from nodeagent.sources import snapshot as snap
from tests.support import manifests as testdocs
from tests.support.httpsource import content_images as images
from tests.support.httpsource import ds_yaml as ds

URL = "https://fleet.example.com/manifests"
KINDS = files.DAEMONSET_SOURCE_KINDS


def broken(name: str) -> str:
    """Valid YAML, invalid object: no image."""
    return testdocs.to_yaml(testdocs.without_image(testdocs.daemonset(name)))


def test_multi_document_yaml_body() -> None:
    content, why = http.interpret((ds("a") + "---\n" + ds("b")).encode(), URL, None, KINDS)
    assert why == ""
    assert images(content) == {"a": "busybox:1.36", "b": "busybox:1.36"}


def test_json_list_body() -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}}]})  # fmt: skip
    content, _ = http.interpret(body.encode(), URL, None, KINDS)
    assert content is not None and [d.obj.kind for d in content.documents] == ["ConfigMap"]


@pytest.mark.parametrize(
    "body",
    [b"", b"   \n", b"# only a comment\n", b"---\n---\n", b"null\n"],
    ids=["empty", "blank", "comment", "separators", "null"],
)
def test_empty_bodies_are_failures_not_withdrawals(body: bytes) -> None:
    previous, _ = http.interpret(ds("a").encode(), URL, None, KINDS)
    content, why = http.interpret(body, URL, previous, KINDS)
    assert content is None
    assert "empty body" in why


@pytest.mark.parametrize(
    "body",
    [
        b"{{{ not yaml",
        b"\xff\xfe\x00garbage",
        b"apiVersion: [unclosed\n",
        b"<html><body>502</body></html>\n:",
    ],
    ids=["braces", "binary", "unclosed", "html"],
)
def test_garbage_bodies_are_failures(body: bytes) -> None:
    content, why = http.interpret(body, URL, None, KINDS)
    assert content is None
    assert why.startswith("unusable body")


def test_explicit_empty_list_withdraws_everything() -> None:
    previous, _ = http.interpret(ds("a").encode(), URL, None, KINDS)
    for body in (
        b'{"apiVersion": "v1", "kind": "List", "items": []}',
        b"apiVersion: v1\nkind: List\nitems: []\n",
    ):
        content, why = http.interpret(body, URL, previous, KINDS)
        assert why == "" and content is not None
        assert content.documents == ()


def test_invalid_document_keeps_its_last_good_version_while_others_update() -> None:
    previous, _ = http.interpret((ds("a") + "---\n" + ds("b")).encode(), URL, None, KINDS)
    body = (ds("a", "busybox:1.37") + "---\n" + broken("b")).encode()
    content, _ = http.interpret(body, URL, previous, KINDS)
    assert images(content) == {"a": "busybox:1.37", "b": "busybox:1.36"}
    assert content is not None and any(e.name == "b" for e in content.errors)


def test_kind_not_allowed_in_a_daemonset_source() -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n"
    content, _ = http.interpret((ds("a") + "---\n" + pod).encode(), URL, None, KINDS)
    assert content is not None and images(content) == {"a": "busybox:1.36"}
    assert any(e.path == "kind" for e in content.errors)


def test_display_url_hides_secrets() -> None:
    shown = http.display_url("https://user:pw@bucket.s3.example.com:8443/fleet.yaml?X-Amz-Signature=abc#frag")
    assert shown == "https://bucket.s3.example.com:8443/fleet.yaml"
    assert "abc" not in shown and "pw" not in shown


def test_cache_round_trip_and_replay_keeps_documents_from_earlier_bodies(tmp_path: Path) -> None:
    first = (ds("a") + "---\n" + ds("b")).encode()
    second = (ds("a", "busybox:1.37") + "---\n" + broken("b")).encode()
    http.write_cache(
        str(tmp_path), URL, http.Cached([first, second], '"e2"', "Mon, 01 Jan 2024 00:00:00 GMT", 5.0)
    )
    body_path, _ = http.cache_paths(str(tmp_path), URL)
    assert Path(body_path).read_bytes() == second  # the newest body, readable by `nodeagent validate`
    assert (Path(body_path).stat().st_mode & 0o777) == 0o600
    cached = http.read_cache(str(tmp_path), URL)
    assert cached is not None and cached.etag == '"e2"' and cached.bodies == [first, second]
    assert images(http.replay(cached.bodies, URL, KINDS)) == {"a": "busybox:1.37", "b": "busybox:1.36"}


def test_cache_metadata_not_matching_the_body_is_ignored(tmp_path: Path) -> None:
    http.write_cache(str(tmp_path), URL, http.Cached([ds("a").encode()], '"e1"'))
    body_path, _ = http.cache_paths(str(tmp_path), URL)
    Path(body_path).write_bytes(ds("z").encode())  # e.g. a crash between the two renames
    cached = http.read_cache(str(tmp_path), URL)
    assert cached is not None and cached.etag is None and cached.bodies == [ds("z").encode()]
    assert http.read_cache(str(tmp_path), URL + "?other") is None


def test_failed_snapshot_keeps_last_good_in_the_merger() -> None:
    """The contract with desired.Merger that HttpSource relies on."""
    content, _ = http.interpret(ds("a").encode(), URL, None, KINDS)
    assert content is not None
    merger = desired.Merger(["s"])
    merger.update(snap.Snapshot("s", content.documents))
    state = merger.update(snap.Snapshot("s", content.documents, ok=False))
    assert list(state.daemonsets) == [("default", "a")]
