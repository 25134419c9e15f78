"""End-to-end: the three-node demo comes up, converges, and every tour step happens with real containers.

Run by `make test-demo` (and CI). It always runs `demo/down.sh` at the end, pass or fail, which removes
every container, network, volume and image the demo made.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


def run(script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "demo" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_up_tour_down() -> None:
    env = {**os.environ, "DEMO_PORT": str(free_port()), "TOUR_PAUSE": "0"}
    try:
        up = run("up.sh", env, timeout=1200)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        assert "node-a" in up.stdout and "log-shipper" in up.stdout
        tour = run("tour.sh", env, timeout=1200)
        assert tour.returncode == 0, tour.stdout[-6000:] + tour.stderr[-4000:]
        for step in (
            "1. Label a node",
            "2. Taint node-c",
            "3. Roll out a change",
            "4. A bad revision",
            "5. Stop node-b",
            "6. Delete",
        ):
            assert step in tour.stdout
        # the rollout went node by node, shown by `rollout status`; the bad one stopped and was undone
        assert "out of 3 new pods have been updated" in tour.stdout, tour.stdout[-6000:]
        assert 'daemon set "logging/log-shipper" successfully rolled out' in tour.stdout
        assert "(at most 1 node at once)" in tour.stdout
        assert "v3 is on node-" in tour.stdout and "only" in tour.stdout
        assert "daemonset.apps/log-shipper rolled back" in tour.stdout
        assert "TIMEOUT" not in tour.stdout + tour.stderr
    finally:
        down = run("down.sh", env, timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=io.nodeagent.demo=true"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""
