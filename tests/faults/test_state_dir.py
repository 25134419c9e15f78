"""stateDir full or read-only: a clear error and no crash; pods that do not need it still run."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.runtime import docker as docker_rt

from .conftest import AgentHome, daemonset, pods

WITH_EMPTYDIR = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: scratch, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: scratch}}}}
  template:
    metadata: {{labels: {{app: scratch}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: nodeagent-test/busybox:latest
          imagePullPolicy: Never
          command: ["sleep", "1000000"]
          volumeMounts: [{{name: scratch, mountPath: /scratch}}]
      volumes: [{{name: scratch, emptyDir: {{}}}}]
"""


@pytest.fixture(params=["read-only", "full"])
def broken_state(request: pytest.FixtureRequest, home: AgentHome) -> Iterator[Path]:
    state = home.root / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(state)], check=True)
    try:
        if request.param == "full":
            with open(state / "filler", "wb") as fh, contextlib.suppress(OSError):
                fh.write(b"x" * 64 * 1024)
            (state / "pods").mkdir(exist_ok=True)
            (state / "pods" / "ballast").write_bytes(b"")
            subprocess.run(["mount", "-o", "remount,size=16k,nr_inodes=8", str(state)], check=False)
            # fill the inodes too, so a mkdir fails with "No space left on device"
            for i in range(64):
                try:
                    (state / f"f{i}").write_bytes(b"")
                except OSError:
                    break
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        yield state
    finally:
        subprocess.run(["umount", str(state)], check=False)


def test_state_dir_unusable(
    home: AgentHome, docker_runtime: docker_rt.DockerRuntime, broken_state: Path
) -> None:
    (home.ds / "scratch.yaml").write_text(WITH_EMPTYDIR.format(ns=home.namespace))
    (home.ds / "plain.yaml").write_text(daemonset("plain", home.namespace))
    result = home.sync()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed and all("scratch" in line for line in failed), result.stdout
    assert str(broken_state) in result.stdout or "state" in result.stdout
    found = pods(docker_runtime, home.namespace)
    assert [name for name in found if name.startswith("plain-")], found
    assert not [name for name in found if name.startswith("scratch-")], found
