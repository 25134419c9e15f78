"""The shared image puller on the real engine, against a registry that accepts connections and never
answers (the `hanging_registry` fixture): the pull fails at its deadline while the engine still waits,
other images are not held, and callers of one image share one pull."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from nodeagent import errors, pulls
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
