"""An agent killed with SIGKILL at random points of a sync, 20 times: then no duplicate and no lost pod."""

from __future__ import annotations

import random
import subprocess
import time

from nodeagent.runtime import docker as docker_rt

from .conftest import NODEAGENT, AgentHome, daemonset, pods

DAEMONSETS = 6


def test_sigkill_mid_sync_twenty_times(home: AgentHome, docker_runtime: docker_rt.DockerRuntime) -> None:
    rng = random.Random(20261127)
    for i in range(DAEMONSETS):
        (home.ds / f"ds{i}.yaml").write_text(daemonset(f"ds{i}", home.namespace))
    for trial in range(20):
        if trial % 4 == 3:  # give the next syncs more to do: change one template, remove one container
            i = rng.randrange(DAEMONSETS)
            (home.ds / f"ds{i}.yaml").write_text(
                daemonset(f"ds{i}", home.namespace, command=f"sleep {1000 + trial}")
            )
            victims = docker_runtime.list_labelled(f"io.kubernetes.pod.namespace={home.namespace}")
            if victims:
                docker_runtime.remove(rng.choice(victims).id)
        proc = subprocess.Popen(
            [NODEAGENT, "--config", str(home.config), "sync"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 1.5))
        proc.kill()
        proc.wait()
    result = home.sync()
    assert result.returncode == 0, result.stdout + result.stderr
    found = pods(docker_runtime, home.namespace)
    assert len(found) == DAEMONSETS, found
    assert all(states == ["running"] for states in found.values()), found
    # and a further pass has nothing to do
    again = home.sync()
    assert "Nothing to do" in again.stdout, again.stdout
