"""Signed bundles end to end on loopback: a real static file server (`http.server` over a directory,
as any web server or object store would host `fleet.yaml` and `fleet.yaml.minisig`) and our `serve
--signing-key`. Signed is accepted; unsigned, tampered or signed with another key is a source failure
that keeps the last good bundle. No Docker needed."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http import server as http_server
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from nodeagent import settings
from nodeagent.fleet import serve
from nodeagent.k8s import policy
from nodeagent.sources import http, signing
from tests.support.httpsource import images
from tests.support.manifests import daemonset, put
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # cli.main bound the logger to this test's captured stderr


class FileHost:
    """A plain static web server over a directory (no ETag, no watch); records the paths asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[str] = []
        self._mtime = 1_700_000_000  # Last-Modified has 1 s resolution: each publish moves it on
        host = self

        class Handler(http_server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.paths.append(self.path)
                super().do_GET()

        self.httpd = http_server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/fleet.yaml"

    def publish(
        self, body: bytes, key: signing.SecretKey | None = None, *, signature: bytes | None = None
    ) -> None:
        """Write the bundle, and its .minisig (made with `key`, or given), or remove the .minisig."""
        sig_path = self.root / "fleet.yaml.minisig"
        (self.root / "fleet.yaml").write_bytes(body)
        self.touch()
        if signature is None and key is not None:
            signature = signing.sign(body, key, file_name="fleet.yaml")
        if signature is None:
            sig_path.unlink(missing_ok=True)
        else:
            sig_path.write_bytes(signature)

    def touch(self) -> None:
        self._mtime += 10
        os.utime(self.root / "fleet.yaml", (self._mtime, self._mtime))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FileHost]:
    root = tmp_path / "www"
    root.mkdir()
    h = FileHost(root)
    yield h
    h.stop()


def keypair(directory: Path, name: str) -> tuple[Path, signing.SecretKey]:
    pub, sec = signing.generate()
    (directory / f"{name}.pub").write_text(pub)
    return directory / f"{name}.pub", signing.parse_secret_key(sec)


def pinned_source(url: str, tmp_path: Path, public_key: Path, *, watch: bool = False) -> http.HttpSource:
    cfg = settings.HttpSource(url=url, public_key_file=str(public_key))
    name = f"signed-{uuid.uuid4().hex[:8]}"
    return http.HttpSource(name, cfg, lambda: None, state_dir=str(tmp_path / f"state-{name}"), watch=watch)


def bundle(*docs: dict[str, Any]) -> bytes:
    return yaml.safe_dump_all(docs).encode()


def test_a_signed_bundle_on_a_static_host_is_accepted(tmp_path: Path, host: FileHost) -> None:
    pub, key = keypair(tmp_path, "fleet")
    host.publish(bundle(daemonset("a")), key)
    src = pinned_source(host.url, tmp_path, pub)
    src.relist()
    assert src.failure is None and images(src) == {"a": "busybox:1.36"}
    assert host.paths == ["/fleet.yaml", "/fleet.yaml.minisig"]  # minisign's convention
    # unchanged bytes again (no ETag on this host): nothing re-verified, no second signature fetch
    src.relist()
    assert host.paths.count("/fleet.yaml.minisig") == 1


@pytest.mark.parametrize("case", ["unsigned", "tampered", "wrong key", "garbage signature"])
def test_a_bad_signature_is_a_source_failure_that_keeps_the_last_good_bundle(
    tmp_path: Path, host: FileHost, case: str
) -> None:
    pub, key = keypair(tmp_path, "fleet")
    _, other = keypair(tmp_path, "other")
    host.publish(bundle(daemonset("a")), key)
    src = pinned_source(host.url, tmp_path, pub)
    src.relist()
    good = src.snapshot()
    assert good is not None and good.ok and images(src) == {"a": "busybox:1.36"}

    evil = bundle(daemonset("a", image="evil:1"), daemonset("b", image="evil:1", pod={"hostPID": True}))
    if case == "unsigned":
        host.publish(evil)
        expected = "unsigned: http://127.0.0.1"
    elif case == "tampered":
        host.publish(evil, signature=signing.sign(bundle(daemonset("a", image="busybox:1.37")), key))
        expected = "the bundle does not match its signature"
    elif case == "wrong key":
        host.publish(evil, other)
        expected = f"but the pinned key is {signing.load_public_key(str(pub)).id_hex}"
    else:
        host.publish(evil, signature=b"untrusted comment: hi\nnot base64\ntrusted comment: x\nAAAA\n")
        expected = "signature is not valid base64"
    src.relist()
    shot = src.snapshot()
    assert shot is not None and not shot.ok
    assert shot.documents == good.documents and images(src) == {"a": "busybox:1.36"}
    assert src.failure is not None
    assert "bundle signature: " in src.failure.message and expected in src.failure.message
    assert src.failure.message.endswith("the last good bundle stays in force")

    # a properly signed bundle is taken again
    host.publish(bundle(daemonset("a", image="busybox:1.37")), key)
    src.relist()
    assert src.failure is None and images(src) == {"a": "busybox:1.37"}


def test_an_unsigned_bundle_never_becomes_the_first_good_one(tmp_path: Path, host: FileHost) -> None:
    pub, _ = keypair(tmp_path, "fleet")
    host.publish(bundle(daemonset("a")))
    src = pinned_source(host.url, tmp_path, pub)
    src.relist()
    assert src.snapshot() is None
    assert src.failure is not None and "unsigned" in src.failure.message
    assert not (tmp_path / f"state-{src.name}" / "sources").exists()  # nothing unsigned is cached


def test_a_bundle_signed_with_the_minisign_tool_is_accepted(tmp_path: Path, host: FileHost) -> None:
    """The operator's workflow: `minisign -G -W`, `minisign -S -m fleet.yaml`, upload both files."""
    tool = shutil.which("minisign")
    if tool is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("minisign is not installed (make minisign); CI=true requires it")
        pytest.skip("minisign is not installed (make minisign)")
    subprocess.run(
        [tool, "-G", "-W", "-p", "k.pub", "-s", "k.key"], cwd=tmp_path, check=True, capture_output=True
    )
    host.publish(bundle(daemonset("a")))
    subprocess.run(
        [tool, "-S", "-s", str(tmp_path / "k.key"), "-m", "fleet.yaml"],
        cwd=host.root,
        check=True,
        capture_output=True,
    )
    src = pinned_source(host.url, tmp_path, tmp_path / "k.pub")
    src.relist()
    assert src.failure is None and images(src) == {"a": "busybox:1.36"}
    # and `nodeagent sign` with the same minisign key, for the next release
    (host.root / "fleet.yaml").write_bytes(bundle(daemonset("a", image="busybox:1.37")))
    host.touch()
    from nodeagent import cli

    assert cli.main(["sign", str(host.root / "fleet.yaml"), "--key", str(tmp_path / "k.key")]) == 0
    src.relist()
    assert src.failure is None and images(src) == {"a": "busybox:1.37"}


def test_serve_signs_what_it_publishes(tmp_path: Path) -> None:
    manifests_dir = tmp_path / "manifests"
    manifests_dir.mkdir()
    put(manifests_dir, "a", daemonset("a"))
    pub_text, sec_text = signing.generate()
    (tmp_path / "k.pub").write_text(pub_text)
    (tmp_path / "k.key").write_text(sec_text)
    server = serve.Server(
        serve.ServeConfig(
            directory=str(manifests_dir), listen="127.0.0.1:0", signing_key=str(tmp_path / "k.key")
        )
    )
    server.start()
    try:
        url = server.url + "/manifests"
        # the bundle carries its signature in a header, and /manifests.minisig serves it too
        resp = http.request("GET", url)
        sig = http.request("GET", url + ".minisig")
        assert resp.status == 200 and sig.status == 200
        key = signing.load_public_key(str(tmp_path / "k.pub"))
        signing.verify(resp.body, sig.body, key)
        assert signing.from_header(resp.headers[signing.HEADER.lower()]) == sig.body

        src = pinned_source(url, tmp_path, tmp_path / "k.pub", watch=True)
        src.start()
        try:
            assert src.failure is None and images(src) == {"a": "busybox:1.36"}
            put(manifests_dir, "a", daemonset("a", image="busybox:1.37"))  # a change arrives by watch, signed
            wait_for(lambda: images(src) == {"a": "busybox:1.37"})
            assert src.failure is None
        finally:
            src.stop()

        # a node pinned to another key refuses serve's bundles
        other_pub, _ = keypair(tmp_path, "other")
        wrong = pinned_source(url, tmp_path, other_pub)
        wrong.relist()
        assert wrong.snapshot() is None and wrong.failure is not None
        assert "but the pinned key is" in wrong.failure.message
    finally:
        server.stop()


def test_serve_without_a_signing_key_has_no_signature(tmp_path: Path) -> None:
    manifests_dir = tmp_path / "manifests"
    manifests_dir.mkdir()
    put(manifests_dir, "a", daemonset("a"))
    server = serve.Server(serve.ServeConfig(directory=str(manifests_dir), listen="127.0.0.1:0"))
    server.start()
    try:
        assert http.request("GET", server.url + "/manifests.minisig").status == 404
        pub, _ = keypair(tmp_path, "fleet")
        src = pinned_source(server.url + "/manifests", tmp_path, pub)
        src.relist()
        assert src.snapshot() is None and src.failure is not None and "unsigned" in src.failure.message
    finally:
        server.stop()


def test_a_remote_source_with_a_policy_holds_back_only_the_refused_daemonset(
    tmp_path: Path, host: FileHost
) -> None:
    """Policy and signature together: a correctly signed bundle is still held to the source's policy."""
    pub, key = keypair(tmp_path, "fleet")
    cfg = settings.HttpSource(url=host.url, public_key_file=str(pub), policy=policy.Policy(policy.BASELINE))
    src = http.HttpSource("remote", cfg, lambda: None, state_dir=str(tmp_path / "state"), watch=False)
    host.publish(bundle(daemonset("a"), daemonset("b")), key)
    src.relist()
    assert images(src) == {"a": "busybox:1.36", "b": "busybox:1.36"}
    host.publish(
        bundle(
            daemonset("a", image="busybox:1.37", pod={"hostPID": True}), daemonset("b", image="busybox:1.37")
        ),
        key,
    )
    src.relist()
    shot = src.snapshot()
    assert shot is not None and shot.ok and src.failure is None
    assert images(src) == {"a": "busybox:1.36", "b": "busybox:1.37"}
    assert [(e.name, e.message) for e in shot.errors] == [
        ("a", 'violates PodSecurity "baseline:latest": host namespaces (hostPID=true)')
    ]
