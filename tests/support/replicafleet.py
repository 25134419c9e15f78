"""A real replicated fleet on one engine: N `nodeagent serve --store postgresql://…` replicas, M agents.

`ReplicatedFleet` is tests/support/fleet.py's Fleet with the single serve replaced by replicas sharing
one PostgreSQL database (each with its own --state-dir and log). Every agent lists all the replicas in
`sources[].url` and `statusServer`, starting with a different one (agent i with replica i mod N), so
killing any replica takes some agents' source and status server away. `api` asks a live replica.

`AvailabilitySampler` judges maxUnavailable from the engine rather than from a serve: every ~0.2 s it
lists the DaemonSet's running main containers and counts a node available only when one of them has
been running for minReadySeconds (its StartedAt, from the engine). The agent counts availability from
the readiness probe's success, which comes after the start, so this never calls a node available that
the agent would not: a sample's count is at most the fleet's true count of unavailable nodes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from nodeagent.agent import identity
from nodeagent.sources import http
from tests.support.fleet import NODEAGENT, Fleet, _end
from tests.support.net import free_port
from tests.support.waiting import wait_for

_ROLE = re.compile(r"^replica: (\S+) \((leader|follower)\)$", re.MULTILINE)


@dataclass
class ReplicatedFleet(Fleet):
    """Fleet with `replicas` serve processes on `store_url` (PostgreSQL); see the module docstring."""

    store_url: str = ""
    replicas: int = 2
    urls: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.urls = [f"http://127.0.0.1:{free_port()}" for _ in range(self.replicas)]
        self.procs = [None] * self.replicas
        self.url = self.urls[0]
        for i, m in enumerate(self.members.values()):
            k = i % self.replicas
            order = self.urls[k:] + self.urls[:k]
            raw = yaml.safe_load(m.config.read_text())
            raw["sources"] = [{"url": [u + "/manifests" for u in order], "pollInterval": self.poll}]
            raw["statusServer"] = order
            m.config.write_text(yaml.safe_dump(raw))

    def first_replica_of(self, node: str) -> int:
        """The replica `node`'s agent uses until it fails over."""
        return list(self.members).index(node) % self.replicas

    def agent_log(self, node: str) -> str:
        path = self.root / f"{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- processes -------------------------------------------------------------------------------

    def start_serve(self) -> None:
        for i in range(self.replicas):
            if not self.alive(i):
                self.start_replica(i)

    def start_replica(self, i: int) -> None:
        log = (self.root / f"serve-r{i}.log").open("ab")
        args = [NODEAGENT, "--log-level", "info", "serve", "--dir", str(self.manifests)]
        args += ["--listen", self.urls[i].removeprefix("http://"), "--grace", str(self.grace)]
        args += ["--state-dir", str(self.root / f"serve-state-r{i}"), "--store", self.store_url]
        args += ["--replica-id", f"r{i}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a killed replica's log is kept whole
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        log.close()
        wait_for(lambda: self._healthz(i) is not None, timeout=60, what=f"replica r{i} answers /healthz")
        self.url = self.urls[i] if not self.alive(self._index(self.url)) else self.url

    def stop_serve(self, sig: int = signal.SIGTERM) -> None:
        for i in range(len(self.procs)):
            self.stop_replica(i, sig)

    def stop_replica(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Stop (by default SIGKILL: no goodbye, its sockets and database sessions just close)."""
        proc, self.procs[i] = self.procs[i], None
        if proc is not None:
            _end(proc, sig)
        live = [j for j in range(len(self.procs)) if self.alive(j)]
        if live and not self.alive(self._index(self.url)):
            self.url = self.urls[live[0]]  # api() and cli() ask a live replica

    def alive(self, i: int) -> bool:
        p = self.procs[i] if 0 <= i < len(self.procs) else None
        return p is not None and p.poll() is None

    def _index(self, url: str) -> int:
        return self.urls.index(url) if url in self.urls else -1

    def ensure_running(self) -> None:
        self.start_serve()
        for name, m in self.members.items():
            if m.proc is None or m.proc.poll() is not None:
                self.start_agent(name)

    def start_agent(self, name: str) -> None:
        m = self.members[name]
        log = (self.root / f"{name}.log").open("ab")
        m.proc = subprocess.Popen(
            [NODEAGENT, "--config", str(m.config), "--log-format", "json", "run"], stdout=log, stderr=log
        )
        log.close()

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for i in range(len(self.procs)):
            path = self.root / f"serve-r{i}.log"
            if path.exists():
                out.append(f"--- serve r{i}\n" + path.read_text(errors="replace")[-chars:])
        return "\n".join(out)

    # --- who leads, what each replica shows --------------------------------------------------------

    def _healthz(self, i: int) -> str | None:
        if not self.alive(i):
            return None
        try:
            r = http.request("GET", self.urls[i] + "/healthz", timeout=2.0)
        except http.FetchError:
            return None
        return r.body.decode() if r.status == 200 else None

    def role(self, i: int) -> str | None:
        """ "leader" or "follower" as replica i's /healthz says; None when it does not answer."""
        m = _ROLE.search(self._healthz(i) or "")
        return m.group(2) if m else None

    def leader(self) -> int | None:
        """The live replica that says it leads (None while none does)."""
        leaders = [i for i in range(len(self.procs)) if self.role(i) == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def api_on(self, i: int, path: str) -> Any:
        return http.get_json(self.urls[i] + path, timeout=5.0)

    def nodes_on(self, i: int) -> dict[str, bool]:
        """node -> ready, in replica i's fleet view."""
        return {n["name"]: bool(n["ready"]) for n in self.api_on(i, "/api/nodes")["nodes"]}


@dataclass(frozen=True)
class Observation:
    at: float  # wall clock (the engine's StartedAt is wall clock too), after the listing returned
    started: Mapping[
        str, tuple[tuple[str, float], ...]
    ]  # node -> (pod, StartedAt) of running main containers
    serve: Mapping[str, Any] | None  # the rollout document `view` returned then, if any


@dataclass
class AvailabilitySampler:
    """Every `interval` s: the DaemonSet's running pods per node with their start times (see the module
    docstring), and optionally what `view()` (a serve's rollout document) says at the same moment."""

    fleet: Fleet
    namespace: str
    name: str
    view: Callable[[], Mapping[str, Any] | None] = lambda: None
    interval: float = 0.2
    samples: list[Observation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._starts: dict[str, float] = {}  # container id -> StartedAt (fixed while it runs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="availability", daemon=True)

    def __enter__(self) -> AvailabilitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # an engine hiccup is recorded, not a dead sampler
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def sample(self) -> Observation:
        listed = self.fleet.runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={self.namespace}")
        at = time.time()
        started: dict[str, list[tuple[str, float]]] = {n: [] for n in self.fleet.members}
        for c in listed:
            node = c.labels.get(identity.LABEL_NODE, "")
            pod = c.labels.get(identity.LABEL_POD_NAME, "")
            if node not in started or not pod.startswith(self.name + "-") or not c.running:
                continue
            if c.labels.get(identity.LABEL_CONTAINER_NAME) != "main":
                continue
            if c.id not in self._starts:
                with contextlib.suppress(Exception):
                    t = self.fleet.runtime.started_at(c.id)
                    if t is not None:
                        self._starts[c.id] = t
            started[node].append((pod, self._starts.get(c.id, at)))  # unknown: just started
        serve = None
        with contextlib.suppress(Exception):
            serve = self.view()
        obs = Observation(at, {n: tuple(v) for n, v in started.items()}, serve)
        self.samples.append(obs)
        return obs

    @staticmethod
    def unavailable(obs: Observation, min_ready: float) -> list[str]:
        """The nodes with no pod that has run for `min_ready` seconds at the sample."""
        return sorted(
            n for n, pods in obs.started.items() if not any(obs.at - t >= min_ready for _, t in pods)
        )

    def most_unavailable(self, min_ready: float, since: float = 0.0) -> int:
        return max((len(self.unavailable(s, min_ready)) for s in self.samples if s.at >= since), default=0)

    def dump(self, min_ready: float) -> str:
        """The samples in which something changed: enough to read a failure."""
        lines: list[str] = []
        prev = None
        t0 = self.samples[0].at if self.samples else 0.0
        for s in self.samples:
            key = ({n: tuple(p for p, _ in v) for n, v in s.started.items()}, self.unavailable(s, min_ready))
            if key != prev:
                lines.append(f"{s.at - t0:7.2f} pods={key[0]} unavailable={key[1]}")
            prev = key
        return "\n".join(lines[-60:])
