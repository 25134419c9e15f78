"""The shared image puller on the real engine, against a registry that accepts connections and never
answers (the `hanging_registry` fixture): the pull fails at its deadline while the engine still waits,
other images are not held, and callers of one image share one pull. And against a tiny real registry on
loopback that serves a layer slowly: the engine's download progress reaches `in_progress`."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import platform
import tarfile
import threading
import time
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest

from nodeagent import errors
from nodeagent.agent import pulls
from nodeagent.runtime import docker as docker_rt

DEADLINE = 3.0


class CountingImages:
    """The real DockerRuntime's image calls, counted and timed (a recorder, not a mock)."""

    def __init__(self, inner: docker_rt.DockerRuntime) -> None:
        self.inner = inner
        self.pulls: list[str] = []
        self.ended: dict[str, float] = {}

    def image_present(self, image: str) -> bool:
        return self.inner.image_present(image)

    def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None) -> None:
        self.pulls.append(image)
        try:
            self.inner.pull(image, on_progress)
        finally:
            self.ended[image] = time.monotonic()


class Ensure(threading.Thread):
    def __init__(self, puller: pulls.ImagePuller, image: str) -> None:
        super().__init__(daemon=True)
        self.puller, self.image = puller, image
        self.result: pulls.PullFailure | None = None
        self.returned_at = 0.0
        self.start()

    def run(self) -> None:
        self.result = self.puller.ensure(self.image, "IfNotPresent")
        self.returned_at = time.monotonic()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.docker
def test_a_hanging_pull_fails_at_its_deadline_and_never_holds_another_image(
    docker_runtime: docker_rt.DockerRuntime, test_image: str, hanging_registry: str
) -> None:
    images = CountingImages(docker_runtime)
    puller = pulls.ImagePuller(images, max_parallel=2, deadline=DEADLINE)
    hanging = Ensure(puller, f"{hanging_registry}/hang:1")
    other = Ensure(puller, f"{hanging_registry}/other:1")
    wait_until(lambda: len(images.pulls) == 2)  # both pulls are in the engine at once
    assert set(puller.in_progress()) == {f"{hanging_registry}/hang:1", f"{hanging_registry}/other:1"}
    assert puller.ensure(test_image, "IfNotPresent") is None  # while they hang
    assert hanging.is_alive() and other.is_alive()
    hanging.join(30)
    other.join(30)
    assert hanging.result == pulls.PullFailure(
        "ErrImagePull", f"pull {hanging_registry}/hang:1: no progress for 3 s (imagePullDeadline)"
    )
    assert other.result is not None and other.result.reason == "ErrImagePull"
    # the callers returned while the engine was still waiting on the registry
    assert f"{hanging_registry}/hang:1" not in images.ended
    assert puller.in_progress() == {}


@pytest.mark.docker
def test_two_callers_of_one_hanging_image_share_one_pull(
    docker_runtime: docker_rt.DockerRuntime, hanging_registry: str
) -> None:
    images = CountingImages(docker_runtime)
    puller = pulls.ImagePuller(images, deadline=DEADLINE)
    image = f"{hanging_registry}/shared:1"
    first = Ensure(puller, image)
    wait_until(lambda: len(images.pulls) == 1)
    second = Ensure(puller, image)
    first.join(30)
    second.join(30)
    assert images.pulls == [image]
    assert first.result == second.result
    assert first.result is not None and first.result.reason == "ErrImagePull"


@pytest.mark.docker
def test_the_docker_pull_of_a_silent_registry_ends_at_its_read_timeout(
    docker_runtime: docker_rt.DockerRuntime, hanging_registry: str
) -> None:
    runtime = docker_rt.DockerRuntime(pull_idle_timeout=2.0)
    try:
        with pytest.raises(errors.ImagePullError, match="the engine reported nothing for 2 s"):
            runtime.pull(f"{hanging_registry}/silent:1")
    finally:
        runtime.close()


class SlowRegistry:
    """A real (tiny) registry on loopback serving one image of one layer of random bytes, slowly, so the
    engine reports download progress the way it does for a large image on a slow link."""

    def __init__(self, layer_size: int = 3_000_000, chunk: int = 64 * 1024, delay: float = 0.03) -> None:
        data = os.urandom(layer_size)  # random: gzip cannot shrink it, the download is layer_size bytes
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("data")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar_bytes = buf.getvalue()
        self.layer = gzip.compress(tar_bytes, compresslevel=1)
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": _digest(config)},
                "layers": [{"mediaType": LAYER_GZIP, "size": len(self.layer), "digest": _digest(self.layer)}],
            }
        ).encode()
        blobs = {_digest(config): config, _digest(self.layer): self.layer}
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                body: bytes | None = None
                kind = "application/json"
                if path == "/v2/":
                    body = b"{}"
                elif "/manifests/" in path:
                    body, kind = manifest, MANIFEST_V2
                elif "/blobs/" in path:
                    body = blobs.get(path.rsplit("/", 1)[1])
                    kind = "application/octet-stream"
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Content-Digest", _digest(body))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.end_headers()
                if head:
                    return
                slow = body is registry.layer
                for i in range(0, len(body), chunk if slow else len(body)):
                    self.wfile.write(body[i : i + chunk] if slow else body)
                    if slow:
                        time.sleep(delay)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def slow_registry() -> Iterator[SlowRegistry]:
    registry = SlowRegistry()
    yield registry
    registry.close()


@pytest.mark.docker
def test_a_pull_reports_the_engines_download_progress(
    docker_runtime: docker_rt.DockerRuntime, slow_registry: SlowRegistry
) -> None:
    image = f"{slow_registry.address}/slow:1"
    puller = pulls.ImagePuller(docker_runtime)
    client = docker.from_env()
    try:
        pulling = Ensure(puller, image)
        seen: list[pulls.PullProgress] = []
        while pulling.is_alive():
            seen.extend(puller.in_progress().values())
            time.sleep(0.02)
        assert pulling.result is None
        assert docker_runtime.image_present(image)
        size = len(slow_registry.layer)
        moving = [p for p in seen if p.total == size and 0 < p.current < size]
        assert moving, f"no download progress seen in {len(seen)} samples: {seen[-3:]}"
        assert moving[-1].describe().startswith(f"pulling image {image}: ")
        assert moving[-1].describe().endswith(" of 3 MB")
        assert [p.current for p in moving] == sorted(p.current for p in moving)
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image, force=True)
        client.close()
