"""The Docker engine restarted 3 times under a running agent: it reconnects and converges, nothing lost.

Uses an engine the test starts itself (own data root and socket), never the machine's own.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from nodeagent.runtime import docker as docker_rt
from tests.support.waiting import wait_for

from .conftest import AgentHome, PrivateEngine, daemonset, pods

NAMES = ("alpha", "beta", "gamma")


def converged(rt: docker_rt.DockerRuntime, namespace: str) -> bool:
    """Each pod runs again. The attempt the engine's restart ended is kept, exited, beside the new one
    (as the kubelet's GC keeps one dead container per container, for `logs --previous`): no more."""
    try:
        found = pods(rt, namespace)
    except Exception:
        return False
    return len(found) == len(NAMES) and all(
        states.count("running") == 1 and states.count("exited") <= 1 and len(states) <= 2
        for states in found.values()
    )


def test_engine_restarted_three_times(private_engine: PrivateEngine) -> None:
    root = Path(tempfile.mkdtemp(prefix="nodeagent-fault-"))
    (root / "ds").mkdir()
    home = AgentHome(root=root, namespace=f"fault-{uuid.uuid4().hex[:8]}", docker_host=private_engine.host)
    home.write_config()
    for name in NAMES:
        (home.ds / f"{name}.yaml").write_text(daemonset(name, home.namespace))
    rt = docker_rt.DockerRuntime(private_engine.host)
    agent = home.start_run()
    try:
        assert wait_for(lambda: converged(rt, home.namespace), timeout=60), pods(rt, home.namespace)
        for _ in range(3):
            private_engine.stop()
            private_engine.start()
            assert wait_for(lambda: converged(rt, home.namespace), timeout=90), (
                pods(rt, home.namespace),
                (root / "agent.log").read_text()[-3000:],
            )
            assert agent.poll() is None, "the agent exited while the engine was away"
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    assert agent.returncode == 0
