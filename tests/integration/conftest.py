"""Fixtures for tests against the real Docker engine (no mocks).

- `docker_runtime`: a DockerRuntime; with CI=true a missing engine FAILS the test, otherwise it skips.
- `test_image`: `nodeagent-test/busybox:latest`, built offline from the host's static busybox, reused.
- `test_labels`: put these on every container a test creates; `io.nodeagent.test=true` marks test
  containers, and a per-session label lets parallel sessions on one engine clean up only their own.
- `docker_cleanup`: function-scoped; removes this session's test containers after the test.
- `cleanup_by_label(runtime, selector)`: the helper behind both finalizers.
- `name_prefix`: prefix container names with it, so parallel sessions never collide.
- `hanging_registry`: "127.0.0.1:PORT" of a registry that accepts connections and never answers.
- `postgres`: a throwaway PostgreSQL cluster (tests/support/postgres.py), a fresh empty database per test;
  with CI=true a missing server FAILS the test, otherwise it skips.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from nodeagent import errors
from nodeagent.agent import localimage
from nodeagent.runtime import docker as docker_runtime_mod
from tests.support import hangingregistry
from tests.support import postgres as pgsupport

TEST_LABEL = "io.nodeagent.test"
SESSION_LABEL = "io.nodeagent.test.session"
TEST_IMAGE = "nodeagent-test/busybox:latest"
SESSION_ID = uuid.uuid4().hex[:10]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_docker(runtime: docker_runtime_mod.DockerRuntime) -> None:
    """Skip when no engine answers; under CI=true fail instead, so CI never passes by skipping."""
    if runtime.ping():
        return
    message = "no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)"
    if in_ci():
        pytest.fail(f"{message}; CI=true requires one")
    pytest.skip(message)


def cleanup_by_label(runtime: docker_runtime_mod.DockerRuntime, selector: str) -> int:
    """Force-remove every container (any state) matching a label selector; returns how many."""
    try:
        found = runtime.list_labelled(selector)
    except errors.ContainerRuntimeError:
        return 0
    for container in found:
        runtime.remove(container.id)
    return len(found)


def session_selector() -> str:
    return f"{SESSION_LABEL}={SESSION_ID}"


BUILT_IMAGES = (TEST_IMAGE, localimage.PAUSE_TAG)  # images a test session may have built


@pytest.fixture(scope="session", autouse=True)
def _remove_images_built_here() -> Iterator[None]:
    """The images this session builds (the busybox test image, the agent's pause image) are removed at
    its end, after its containers (an autouse session fixture is finalized last). One present before the
    session started is left alone: it is a user's, or another session's that may still need it."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception:  # no engine: nothing was built (tests needing one fail or skip on their own)
        yield
        return
    absent = []
    for tag in BUILT_IMAGES:
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
def _docker_session() -> Iterator[docker_runtime_mod.DockerRuntime]:
    runtime = docker_runtime_mod.DockerRuntime()
    yield runtime
    if runtime.ping():
        cleanup_by_label(runtime, session_selector())
    runtime.close()


@pytest.fixture
def docker_runtime(_docker_session: docker_runtime_mod.DockerRuntime) -> docker_runtime_mod.DockerRuntime:
    require_docker(_docker_session)
    return _docker_session


@pytest.fixture(scope="session")
def _test_image_session(_docker_session: docker_runtime_mod.DockerRuntime) -> str | None:
    if not _docker_session.ping():
        return None
    return localimage.ensure_busybox_image(_docker_session, TEST_IMAGE, {TEST_LABEL: "true"})


@pytest.fixture
def test_image(docker_runtime: docker_runtime_mod.DockerRuntime, _test_image_session: str | None) -> str:
    """The busybox test image (built once per engine, reused while present)."""
    if _test_image_session is None:
        require_docker(docker_runtime)
        pytest.fail("the test image could not be built")
    return _test_image_session


@pytest.fixture
def test_labels() -> dict[str, str]:
    return {TEST_LABEL: "true", SESSION_LABEL: SESSION_ID}


@pytest.fixture
def docker_cleanup(docker_runtime: docker_runtime_mod.DockerRuntime) -> Iterator[None]:
    yield
    cleanup_by_label(docker_runtime, session_selector())


@pytest.fixture
def name_prefix() -> str:
    """A container-name prefix unique to this session (parallel sessions share one engine)."""
    return f"natest-{SESSION_ID}"


@pytest.fixture
def hanging_registry() -> Iterator[str]:
    """ "127.0.0.1:PORT" of a registry that accepts connections and never answers (pull
    `<it>/name:tag`); closed after the test, so the engine's pulls from it end."""
    with hangingregistry.HangingRegistry() as registry:
        yield registry.address


@pytest.fixture(scope="session")
def _postgres_session() -> Iterator[pgsupport.Cluster]:
    bindir = pgsupport.find_bindir()
    if bindir is None:
        message = "no PostgreSQL server (initdb/pg_ctl; `make postgres` installs Debian's postgresql)"
        if in_ci():
            pytest.fail(f"{message}; CI=true requires one")
        pytest.skip(message)
    cluster = pgsupport.create(bindir)
    try:
        yield cluster
    finally:
        pgsupport.destroy(cluster)


@pytest.fixture
def postgres(_postgres_session: pgsupport.Cluster) -> pgsupport.Cluster:
    """The session's cluster with a fresh empty `nodeagent` database (`.url` connects to it)."""
    pgsupport.reset(_postgres_session)
    return _postgres_session
