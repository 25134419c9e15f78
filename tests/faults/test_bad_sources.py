"""Truncated, invalid, half-written and vanished source files for a long stretch: zero pods removed."""

from __future__ import annotations

import os
import shutil
import time

from nodeagent.runtime import docker as docker_rt
from tests.support.waiting import wait_for

from .conftest import AgentHome, daemonset, pods


def container_ids(rt: docker_rt.DockerRuntime, namespace: str) -> set[str]:
    return {c.id for c in rt.list_labelled(f"io.kubernetes.pod.namespace={namespace}") if c.running}


def test_broken_files_for_a_long_stretch_remove_nothing(
    home: AgentHome, docker_runtime: docker_rt.DockerRuntime
) -> None:
    good = {name: daemonset(name, home.namespace) for name in ("a", "b", "c")}
    for name, text in good.items():
        (home.ds / f"{name}.yaml").write_text(text)
    agent = home.start_run()
    try:
        assert wait_for(lambda: len(container_ids(docker_runtime, home.namespace)) == 3, timeout=60)
        before = container_ids(docker_runtime, home.namespace)
        text = good["a"]
        breakages = [
            text[: len(text) // 2],  # truncated
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: [oops\n",  # invalid YAML
            "",  # empty file
            "\x00\x01\x02garbage\xff",  # binary garbage
            text.replace("image:", "imag:"),  # a document that fails validation
        ]
        deadline = time.monotonic() + 12  # several resync periods (2 s) and relists
        i = 0
        while time.monotonic() < deadline:
            broken = breakages[i % len(breakages)]
            (home.ds / "a.yaml").write_text(broken)
            with open(home.ds / "b.yaml", "w") as fh:  # half-written: flushed but not finished
                fh.write(good["b"][:40])
                fh.flush()
                time.sleep(0.3)
                fh.write(good["b"][40:])
            i += 1
            time.sleep(0.4)
        os.rename(home.ds, home.root / "ds-away")  # the whole source vanishes
        time.sleep(5)
        assert container_ids(docker_runtime, home.namespace) == before, pods(docker_runtime, home.namespace)
        shutil.move(str(home.root / "ds-away"), home.ds)
        (home.ds / "a.yaml").write_text(good["a"])
        time.sleep(3)
        assert container_ids(docker_runtime, home.namespace) == before
        assert agent.poll() is None
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert agent.returncode == 0
