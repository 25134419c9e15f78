"""Hostile input to the loader (issue 16): alias bombs, duplicate keys, FIFOs, huge files, leaks."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from nodeagent.k8s import manifests
from tests.support.hostile import alias_bomb

BOMB = alias_bomb()


def _errors(result: object) -> list[tuple[int | None, str, str]]:
    return [(p.document, p.path, p.message) for p in result.errors]  # type: ignore[attr-defined]


def test_an_alias_bomb_is_an_error_at_its_path() -> None:
    result = manifests.load_text(BOMB, "bomb.yaml")
    assert not result.documents
    [(doc, path, message)] = _errors(result)
    assert doc == 0 and path.startswith("x.") and "excessive YAML aliasing" in message


def test_a_few_aliases_still_load() -> None:
    text = """apiVersion: v1
kind: ConfigMap
metadata: {name: ok, labels: &l {app: x}, annotations: *l}
data: {a: &v hello, b: *v}
"""
    result = manifests.load_text(text, "ok.yaml")
    assert not result.errors
    assert getattr(result.documents[0].obj, "data", None) == {"a": "hello", "b": "hello"}


def test_a_recursive_alias_is_an_error_at_its_path() -> None:
    result = manifests.load_text("kind: ConfigMap\nmetadata: &m {name: a, labels: {x: *m}}\n", "r.yaml")
    assert _errors(result) == [
        (0, "metadata.labels.x", "recursive YAML alias: a node contains an alias to itself")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  k: v\n  k: w\n",
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1", "k": "2"}}',
    ],
    ids=["yaml", "json"],
)
def test_duplicate_keys_are_an_error_naming_the_key(text: str) -> None:
    result = manifests.load_text(text, "d.yaml")
    assert not result.documents
    [(doc, path, message)] = _errors(result)
    assert (doc, path) == (0, "data.k") and message.startswith('duplicate key "k"')


def test_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "x.yaml"
    os.mkfifo(fifo)
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(manifests.load_paths([str(tmp_path)])), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "wb"):
            pass
        t.join(5)
        pytest.fail("reading a directory with a FIFO blocked")
    [(_, _, message)] = _errors(out[0])
    assert "not a regular file (a FIFO)" in message
    assert "not a regular file" in _errors(manifests.load_file(str(fifo)))[0][2]


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "link.yaml").symlink_to(real)
    assert len(manifests.load_file(str(tmp_path / "link.yaml")).documents) == 1


def test_a_file_over_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests.files, "MAX_FILE", 1000)  # read where the file is read
    big = tmp_path / "big.yaml"
    big.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n# " + "x" * 2000 + "\n")
    [(_, _, message)] = _errors(manifests.load_file(str(big)))
    assert "larger than 1000 bytes" in message


def test_a_numeric_secret_value_is_never_echoed() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: 918273645}\n"
    result = manifests.load_text(text, "s.yaml")
    assert result.errors
    assert all("918273645" not in p.message and "918273645" not in p.path for p in result.errors)
    assert any(p.path == "stringData[password]" for p in result.errors)


def test_a_non_manifest_file_is_not_echoed(tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    (tmp_path / "p.yaml").symlink_to(secret)
    result = manifests.load_paths([str(tmp_path)])
    assert result.errors
    assert all("root:x" not in p.message and "alice" not in p.message for p in result.errors)


def test_a_stuck_scan_shows_in_failure_snapshot_and_readiness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import Any, cast

    from nodeagent.service import health
    from nodeagent.sources import files

    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    src = files.DirectorySource("d", str(tmp_path), lambda: None, watch=False)
    src.relist()
    shot = src.snapshot()
    assert shot is not None and shot.ok and src.failure is None

    release = threading.Event()
    real = manifests.load_file

    def hang(path: str) -> Any:
        release.wait(30)  # a read on a hung filesystem
        return real(path)

    monkeypatch.setattr(manifests, "load_file", hang)
    monkeypatch.setattr(files, "STUCK_AFTER", 0.2)
    t = threading.Thread(target=src.relist, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while src.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        failure = src.failure
        assert failure is not None and "stuck" in failure.message
        shot = src.snapshot()
        assert shot is not None and not shot.ok and shot.errors[0] == failure
        loop = cast(Any, type("Loop", (), {"passes": 1, "resync_interval": 30.0})())
        monitor = health.Monitor(loop, stuck_sources=lambda: [failure.message])
        ready, why = monitor.readiness()
        assert not ready and "stuck" in why
    finally:
        release.set()
        t.join(10)
    assert src.failure is None and src.snapshot() is not None


def test_a_fifo_in_the_images_directory_is_skipped_not_opened(tmp_path: Path) -> None:
    from nodeagent.sources import images

    os.mkfifo(tmp_path / "x.tar")
    opened: list[str] = []

    def load(path: str) -> list[str]:
        opened.append(path)  # the real loader opens it, which blocks on a FIFO
        return []

    d = images.ImagesDirectory(str(tmp_path), load, lambda: None, watch=False)
    t = threading.Thread(target=d.scan, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and not opened


@pytest.mark.parametrize(
    ("host", "auth", "warned"),
    [
        ("0.0.0.0", {}, True),
        ("::", {}, True),
        ("10.1.2.3", {}, True),
        ("127.0.0.1", {}, False),
        ("::1", {}, False),
        ("localhost", {}, False),
        ("0.0.0.0", {"token_file": "t"}, False),
        ("0.0.0.0", {"node_tokens": "d"}, False),
        ("0.0.0.0", {"client_ca": "ca"}, False),
    ],
)
def test_serve_warns_loudly_without_authentication_off_loopback(
    host: str, auth: dict[str, str], warned: bool
) -> None:
    from nodeagent.fleet import serve

    cfg = serve.ServeConfig("/d", **auth)  # type: ignore[arg-type]
    text = serve.unprotected_warning(cfg, host, f"http://{host}:8080")
    assert bool(text) == warned
    if warned:
        assert "WITHOUT AUTHENTICATION" in text
