"""A real fleet on one engine for rollout tests: a `nodeagent serve` process, N `nodeagent run` processes.

Every agent has its own node name, labels and stateDir, an HTTP source on the serve (so it asks for its
own bundle, `?node=NAME`) and the serve as statusServer. The agents share the test engine: container
names and the io.nodeagent.node label carry the node name, so the nodes' pods never collide. Everything
a Fleet starts is stopped by `close`, and every container in its namespaces is removed.

`Sampler` watches the engine (not the serve) every ~0.2 s: which pods run on which node, so a test can
judge the rollout from what really ran rather than from what the serve says.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodeagent.agent import identity
from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import http
from tests.support.net import free_port
from tests.support.waiting import wait_for

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")
READY_FILE = "/ready"


def daemonset(
    name: str,
    namespace: str,
    image: str,
    *,
    version: str = "1",
    command: str | None = None,
    strategy: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    min_ready_seconds: int = 2,
    grace: int = 1,
    pull_policy: str = "Never",
) -> dict[str, Any]:
    """A DaemonSet whose pod becomes ready (readiness probe on a file it creates) and, after
    minReadySeconds, available. `version` lands in an env var: a new version is a new template."""
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["sh", "-c", command or f"touch {READY_FILE} && exec sleep 1000000"],
        "env": [{"name": "VERSION", "value": version}],
        "readinessProbe": {
            "exec": {"command": ["test", "-e", READY_FILE]},
            "periodSeconds": 1,
            "failureThreshold": 1,
            "timeoutSeconds": 1,
        },
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "minReadySeconds": min_ready_seconds,
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": dict(strategy or {"maxUnavailable": 1})},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]},
        },
    }
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": spec}


@dataclass
class Member:
    name: str
    labels: dict[str, str]
    config: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Fleet:
    """`serve` + agents as processes. `prefix` makes node names unique on a shared engine."""

    root: Path
    runtime: docker_rt.DockerRuntime
    prefix: str
    node_labels: Sequence[Mapping[str, str]]
    image: str = ""
    grace: float = 12.0
    resync: str = "1s"
    poll: str = "2s"
    namespaces: set[str] = field(default_factory=set)
    members: dict[str, Member] = field(default_factory=dict)
    serve_proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.manifests = self.root / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.root / "serve-state"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = self.root / "fleet.log"
        self._log = self.log_path.open("ab")
        for i, labels in enumerate(self.node_labels):
            name = f"{self.prefix}-n{i}"
            config = self.root / f"{name}.yaml"
            raw = {
                "node": {"name": name, "labels": dict(labels)},
                "sources": [{"url": self.url + "/manifests", "pollInterval": self.poll}],
                "stateDir": str(self.root / "state" / name),
                "statusServer": self.url,
                "resyncInterval": self.resync,
                "healthz": {"enabled": False},
            }
            config.write_text(yaml.safe_dump(raw))
            self.members[name] = Member(name, dict(labels), config)

    @property
    def nodes(self) -> list[str]:
        return list(self.members)

    # --- processes -------------------------------------------------------------------------------

    def start(self) -> Fleet:
        self.start_serve()
        for name in self.members:
            self.start_agent(name)
        wait_for(
            lambda: {n["name"] for n in self.api("/api/nodes")["nodes"] if n["ready"]} == set(self.members),
            what="every agent reported in",
            timeout=60,
        )
        return self

    def start_serve(self) -> None:
        listen = self.url.removeprefix("http://")
        args = [NODEAGENT, "serve", "--dir", str(self.manifests), "--listen", listen]
        args += ["--grace", str(self.grace), "--state-dir", str(self.state_dir)]
        self.serve_proc = subprocess.Popen(args, stdout=self._log, stderr=self._log)
        wait_for(self._answers, timeout=30, what="serve answers /healthz")

    def stop_serve(self, sig: int = signal.SIGTERM) -> None:
        proc, self.serve_proc = self.serve_proc, None
        if proc is not None:
            _end(proc, sig)

    def start_agent(self, name: str) -> None:
        m = self.members[name]
        m.proc = subprocess.Popen(
            [NODEAGENT, "--config", str(m.config), "run"], stdout=self._log, stderr=self._log
        )

    def ensure_running(self) -> None:
        """After a test that killed something: the serve and every agent run again."""
        if self.serve_proc is None or self.serve_proc.poll() is not None:
            self.start_serve()
        for name, m in self.members.items():
            if m.proc is None or m.proc.poll() is not None:
                self.start_agent(name)

    def kill_agent(self, name: str, sig: int = signal.SIGKILL) -> None:
        m = self.members[name]
        proc, m.proc = m.proc, None
        if proc is not None:
            _end(proc, sig)

    def close(self) -> None:
        for name in self.members:
            self.kill_agent(name, signal.SIGTERM)
        self.stop_serve()
        self._log.close()
        for ns in self.namespaces:
            self.remove_namespace(ns)
        for name in self.members:
            for c in self._listed(f"{identity.LABEL_NODE}={name}"):
                with contextlib.suppress(Exception):
                    self.runtime.remove(c.id)

    def remove_namespace(self, namespace: str) -> None:
        for c in self._listed(f"{identity.LABEL_POD_NAMESPACE}={namespace}"):
            with contextlib.suppress(Exception):
                self.runtime.remove(c.id)

    def _listed(self, *selectors: str) -> list[Any]:
        try:
            return list(self.runtime.list_labelled(*selectors))
        except Exception:
            return []

    def _answers(self) -> bool:
        try:
            return http.request("GET", self.url + "/healthz", timeout=1.0).status == 200
        except http.FetchError:
            return False

    def log_tail(self, chars: int = 6000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    # --- manifests and the API -------------------------------------------------------------------

    def put(self, doc: Mapping[str, Any]) -> None:
        """Publish a DaemonSet (atomically, as config management does)."""
        meta = doc["metadata"]
        self.namespaces.add(meta["namespace"])
        target = self.manifests / f"{meta['namespace']}-{meta['name']}.yaml"
        tmp = target.with_name("." + target.name + ".tmp")
        tmp.write_text(yaml.safe_dump(dict(doc)))
        os.replace(tmp, target)

    def withdraw(self, namespace: str, name: str) -> None:
        (self.manifests / f"{namespace}-{name}.yaml").unlink(missing_ok=True)

    def api(self, path: str) -> Any:
        return http.get_json(self.url + path, timeout=5.0)

    def post(self, path: str, body: object | None = None) -> Any:
        return http.post_json(self.url + path, body if body is not None else {}, timeout=5.0)

    def rollout(self, ref: str) -> dict[str, Any]:
        doc = self.api(f"/api/rollouts/{ref}")
        assert isinstance(doc, dict)
        return doc

    def assigned(self, ref: str) -> dict[str, int]:
        """node -> the revision the serve assigns it now."""
        return {n["name"]: int(n["revision"]) for n in self.rollout(ref)["nodes"]}

    def cli(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """`nodeagent rollout ARGS --server URL`."""
        return subprocess.run(
            [NODEAGENT, "rollout", *args, "--server", self.url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # --- what the engine runs --------------------------------------------------------------------

    def running_pods(self, namespace: str, name: str) -> dict[str, set[str]]:
        """node -> names of the DaemonSet's pods whose main container runs there."""
        out: dict[str, set[str]] = {n: set() for n in self.members}
        for c in self._listed(f"{identity.LABEL_POD_NAMESPACE}={namespace}"):
            labels = c.labels
            node = labels.get(identity.LABEL_NODE, "")
            pod = labels.get(identity.LABEL_POD_NAME, "")
            if (
                node in out
                and pod.startswith(name + "-")
                and c.running
                and labels.get(identity.LABEL_CONTAINER_NAME) == "main"
            ):
                out[node].add(pod)
        return out

    def wait_rolled_out(
        self,
        namespace: str,
        name: str,
        nodes: Sequence[str] | None = None,
        timeout: float = 90,
        phase: str = "Complete",
    ) -> str:
        """Until every node (or `nodes`) runs exactly one pod of the DaemonSet, the same on all, and the
        serve shows `phase`; returns that pod's name."""
        want = list(nodes if nodes is not None else self.members)
        found: list[str] = []

        def done() -> bool:
            pods = self.running_pods(namespace, name)
            names = {frozenset(pods[n]) for n in want}
            if len(names) != 1 or len(next(iter(names))) != 1:
                return False
            try:
                if self.rollout(f"{namespace}/{name}")["phase"] != phase:
                    return False
            except http.FetchError:
                return False
            found[:] = [next(iter(pods[want[0]]))]
            return True

        wait_for(done, timeout=timeout, interval=0.3, what=f"{namespace}/{name} rolled out")
        return found[0]


def _end(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@dataclass(frozen=True)
class Sample:
    at: float
    pods: Mapping[str, frozenset[str]]  # node -> running pods of the DaemonSet


class Sampler:
    """Every `interval` seconds, records which pods of one DaemonSet run on each node (from the engine)."""

    def __init__(self, fleet: Fleet, namespace: str, name: str, interval: float = 0.2) -> None:
        self._fleet = fleet
        self._ns = namespace
        self._name = name
        self._interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sample()  # the state the test waited for is the last sample

    def _sample(self) -> None:
        pods = self._fleet.running_pods(self._ns, self._name)
        self.samples.append(Sample(time.monotonic(), {n: frozenset(p) for n, p in pods.items()}))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def most_without(self, pod: str | None = None) -> int:
        """The most nodes at once without a running pod (or without `pod`, if given)."""
        return max(
            (sum(1 for p in s.pods.values() if (pod not in p if pod else not p)) for s in self.samples),
            default=0,
        )

    def first_seen(self, pod: str) -> dict[str, float]:
        """node -> when `pod` was first seen running there."""
        out: dict[str, float] = {}
        for s in self.samples:
            for node, p in s.pods.items():
                if pod in p and node not in out:
                    out[node] = s.at
        return out

    def last_seen(self, pod: str) -> dict[str, float]:
        """node -> when `pod` was last seen running there."""
        out: dict[str, float] = {}
        for s in self.samples:
            for node, p in s.pods.items():
                if pod in p:
                    out[node] = s.at
        return out

    def nodes_with(self, pod: str) -> set[str]:
        return {node for s in self.samples for node, p in s.pods.items() if pod in p}

    def dump(self) -> str:
        """The samples in which something changed (compact: enough to read a failure)."""
        changed = [s for i, s in enumerate(self.samples) if i == 0 or s.pods != self.samples[i - 1].pods]
        return json.dumps(
            [{"t": round(s.at, 2), **{k: sorted(v) for k, v in s.pods.items()}} for s in changed][-40:]
        )
