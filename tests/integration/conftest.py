"""Fixtures of the integration tests (the engine, the test image, labels and clean-up are shared by every
suite: tests/conftest.py).

- `home`: one test agent's world (tests/support/agenthome.py), its containers removed at teardown.
- `agent_proc`: the `nodeagent run` processes a test starts (`agenthome.start_run`), killed at teardown.
- `postgres`: a throwaway PostgreSQL cluster (tests/support/postgres.py), a fresh empty database per test;
  with CI=true a missing server FAILS the test, otherwise it skips.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.runtime import docker as docker_rt
from tests.support import postgres as pgsupport
from tests.support.agenthome import Home
from tests.support.engine import in_ci


@pytest.fixture
def home(tmp_path: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str) -> Iterator[Home]:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    h = Home(root=tmp_path, namespace=ns, image=test_image, engine=docker_runtime, node=f"node-{ns}")
    for d in (h.ds_dir, h.static_dir):
        d.mkdir()
    h.write_config()
    yield h
    for c in h.containers():
        docker_runtime.remove(c.id)


@pytest.fixture
def agent_proc(home: Home) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed at teardown if still running."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


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
