"""The shared image puller on the real engine, against a registry that accepts connections and never
answers (the `hanging_registry` fixture): the pull fails at its deadline while the engine still waits,
other images are not held, and callers of one image share one pull. And against a tiny real registry on
loopback that serves a layer slowly: the engine's download progress reaches `in_progress`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest

from nodeagent import errors
from nodeagent.agent import pulls
from nodeagent.runtime import docker as docker_rt
from tests.support.hangingregistry import HangingRegistry
from tests.support.slowregistry import SlowRegistry
from tests.support.waiting import wait_for

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


@pytest.mark.docker
def test_a_hanging_pull_fails_at_its_deadline_and_never_holds_another_image(
    docker_runtime: docker_rt.DockerRuntime, test_image: str, hanging_registry: HangingRegistry
) -> None:
    images = CountingImages(docker_runtime)
    puller = pulls.ImagePuller(images, max_parallel=2, deadline=DEADLINE)
    hanging = Ensure(puller, f"{hanging_registry.address}/hang:1")
    other = Ensure(puller, f"{hanging_registry.address}/other:1")
    wait_for(lambda: len(images.pulls) == 2)  # both pulls are in the engine at once
    assert set(puller.in_progress()) == {
        f"{hanging_registry.address}/hang:1",
        f"{hanging_registry.address}/other:1",
    }
    assert puller.ensure(test_image, "IfNotPresent") is None  # while they hang
    assert hanging.is_alive() and other.is_alive()
    hanging.join(30)
    other.join(30)
    assert hanging.result == pulls.PullFailure(
        "ErrImagePull", f"pull {hanging_registry.address}/hang:1: no progress for 3 s (imagePullDeadline)"
    )
    assert other.result is not None and other.result.reason == "ErrImagePull"
    # the callers returned while the engine was still waiting on the registry
    assert f"{hanging_registry.address}/hang:1" not in images.ended
    assert puller.in_progress() == {}


@pytest.mark.docker
def test_two_callers_of_one_hanging_image_share_one_pull(
    docker_runtime: docker_rt.DockerRuntime, hanging_registry: HangingRegistry
) -> None:
    images = CountingImages(docker_runtime)
    puller = pulls.ImagePuller(images, deadline=DEADLINE)
    image = f"{hanging_registry.address}/shared:1"
    first = Ensure(puller, image)
    wait_for(lambda: len(images.pulls) == 1)
    second = Ensure(puller, image)
    first.join(30)
    second.join(30)
    assert images.pulls == [image]
    assert first.result == second.result
    assert first.result is not None and first.result.reason == "ErrImagePull"


@pytest.mark.docker
def test_the_docker_pull_of_a_silent_registry_ends_at_its_read_timeout(
    docker_runtime: docker_rt.DockerRuntime, hanging_registry: HangingRegistry
) -> None:
    runtime = docker_rt.DockerRuntime(pull_idle_timeout=2.0)
    try:
        with pytest.raises(errors.ImagePullError, match="the engine reported nothing for 2 s"):
            runtime.pull(f"{hanging_registry.address}/silent:1")
    finally:
        runtime.close()


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
