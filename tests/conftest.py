"""Fixtures shared by every suite that needs the real Docker engine (integration, faults, systemd).

- `docker_runtime`: the engine (a DockerRuntime); with CI=true a missing engine FAILS the test, otherwise
  it skips. This session's test containers are removed when the session ends.
- `test_image`: `nodeagent-test/busybox:latest`, built offline from the host's static busybox, reused.
- `test_labels`: put these on every container a test creates (tests/support/engine.py says why).
- `docker_cleanup`: function-scoped; removes this session's test containers after the test.
- `name_prefix`: prefix container names with it, so parallel sessions never collide.
- `hanging_registry`: a registry on loopback that accepts connections and never answers.

Helpers (waiting, manifests, agent homes, registries, TLS material) are in tests/support/.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from nodeagent.agent import localimage
from nodeagent.runtime import docker as docker_rt
from tests.support import engine, hangingregistry


@pytest.fixture(scope="session")
def _remove_images_built_here() -> Iterator[None]:
    """The images this session builds (the busybox test image, the agent's pause image) are removed at
    its end, after its containers (the engine fixture depends on this one, so it is finalized later).
    One present before the session started is left alone: it is a user's, or another session's that may
    still need it."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception:  # no engine: nothing was built (tests needing one fail or skip on their own)
        yield
        return
    absent = []
    for tag in engine.BUILT_IMAGES:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            absent.append(tag)
        except docker.errors.APIError:
            pass
    yield
    for tag in absent:
        with contextlib.suppress(docker.errors.APIError):  # in use by someone else's container, or gone
            client.images.remove(tag)
    client.close()


@pytest.fixture(scope="session")
def docker_runtime(_remove_images_built_here: None) -> Iterator[docker_rt.DockerRuntime]:
    """The engine, shared by the session; skips (fails under CI=true) when none answers."""
    runtime = docker_rt.DockerRuntime()
    try:
        engine.require_docker(runtime)
        yield runtime
        if runtime.ping():
            engine.cleanup_by_label(runtime, engine.session_selector())
    finally:
        runtime.close()


@pytest.fixture(scope="session")
def test_image(docker_runtime: docker_rt.DockerRuntime) -> str:
    """The busybox test image (built once per engine, reused while present)."""
    return localimage.ensure_busybox_image(docker_runtime, engine.TEST_IMAGE, {engine.TEST_LABEL: "true"})


@pytest.fixture
def test_labels() -> dict[str, str]:
    return engine.session_labels()


@pytest.fixture
def docker_cleanup(docker_runtime: docker_rt.DockerRuntime) -> Iterator[None]:
    yield
    engine.cleanup_by_label(docker_runtime, engine.session_selector())


@pytest.fixture
def name_prefix() -> str:
    """A container-name prefix unique to this session (parallel sessions share one engine)."""
    return f"natest-{engine.SESSION_ID}"


@pytest.fixture
def hanging_registry() -> Iterator[hangingregistry.HangingRegistry]:
    """A registry on loopback that accepts connections and never answers (pull `.image()` or
    `<.address>/name:tag`); closed after the test, so the engine's pulls from it end."""
    with hangingregistry.HangingRegistry() as registry:
        yield registry
