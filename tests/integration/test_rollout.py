"""A fleet rollout on the real engine: `serve` and two `nodeagent run` agents (distinct node names and
stateDirs on one engine). Each agent fetches its own per-node bundle (`?node=`), and with
`maxUnavailable: 1` the new revision reaches one node, then the other once the first is available."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.agent import identity
from nodeagent.fleet import serve
from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import http

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def daemonset(image: str, namespace: str, version: str) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sleep", "1000000"],  # PID 1 ignoring SIGTERM: the stop waits out the grace period
        "env": [{"name": "VERSION", "value": version}],
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "minReadySeconds": 2,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]},
            },
        },
    }


def put(directory: Path, doc: dict[str, Any]) -> None:
    tmp = directory / ".web.tmp"
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, directory / "web.yaml")


@pytest.mark.docker
def test_two_agents_get_per_node_bundles_and_a_rollout_goes_node_by_node(
    tmp_path: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str
) -> None:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    put(mdir, daemonset(test_image, ns, "1"))
    s = serve.Server(
        serve.ServeConfig(
            directory=str(mdir), listen="127.0.0.1:0", state_dir=str(tmp_path / "serve"), grace=20
        )
    )
    s.start()
    nodes = [f"{ns}-a", f"{ns}-b"]
    log = (tmp_path / "agents.log").open("ab")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for node in nodes:
            config = tmp_path / f"{node}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "node": {"name": node},
                        "sources": [{"url": s.url + "/manifests", "pollInterval": "1h"}],
                        "stateDir": str(tmp_path / node),
                        "statusServer": s.url,
                        "resyncInterval": "2s",
                        "healthz": {"enabled": False},
                    }
                )
            )
            procs.append(
                subprocess.Popen([NODEAGENT, "--config", str(config), "run"], stdout=log, stderr=log)
            )

        def doc() -> dict[str, Any]:
            got = http.get_json(s.url + "/api/rollouts/" + ns + "/web")
            assert isinstance(got, dict)
            return got

        def settled(revision: int) -> bool:
            d = doc()
            return (
                d["phase"] == "Complete"
                and d["updateRevision"] == revision
                and d["numberAvailable"] == 2
                and all(n["runningRevision"] == revision and n["available"] for n in d["nodes"])
            )

        wait_for(lambda: settled(1), timeout=90)
        # the per-node bundle: each agent asked with its node name (serve answers with its revision)
        body = http.request("GET", f"{s.url}/manifests?node={nodes[0]}").body
        assert b'"value": "1"' in body or b'"value":"1"' in body

        samples: list[dict[str, tuple[int, bool]]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                d = doc()
                samples.append({n["name"]: (n["revision"], n["available"]) for n in d["nodes"]})
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        put(mdir, daemonset(test_image, ns, "2"))
        s.publisher.scan()
        try:
            wait_for(lambda: settled(2), timeout=120)
        finally:
            stop.set()
            sampler.join()
        # at most one node without an available pod at any sample
        assert all(sum(1 for _rev, ok in smp.values() if not ok) <= 1 for smp in samples), samples
        # node by node: the second node got revision 2 only after the first one was available on it
        first_seen = {}
        for i, smp in enumerate(samples):
            for name, (rev, _ok) in smp.items():
                if rev == 2 and name not in first_seen:
                    first_seen[name] = i
        assert len(first_seen) == 2, samples
        first, second = sorted(first_seen, key=lambda n: first_seen[n])
        assert first_seen[first] < first_seen[second]
        assert samples[first_seen[second]][first] == (2, True)
        assert samples[first_seen[second] - 1][second][0] == 1
        # each node now runs the container of revision 2
        for node in nodes:
            running = [
                c
                for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}")
                if c.running and c.labels.get(identity.LABEL_NODE) == node
            ]
            assert len(running) == 1
        out = subprocess.run(
            [NODEAGENT, "rollout", "status", f"{ns}/web", "--server", s.url, "--timeout", "10"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and "successfully rolled out" in out.stdout, out.stdout + out.stderr
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
        s.stop()
        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)
