"""`make bench`: nodeagent's speed and cost, each figure next to a baseline measured in the same run.

Every measure runs against the real Docker engine with a locally built busybox image. Containers made
here carry the label `io.nodeagent.bench=<run id>` (baselines) or a unique pod namespace (the agent's),
and are removed at the end, even on failure. Prints one table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import docker
import docker.errors

from nodeagent.agent import localimage
from nodeagent.runtime import docker as docker_rt

# `python benchmarks/bench.py` puts benchmarks/ first on sys.path, not the repo root: add the root so the
# test helpers (tests/support, not part of the installed package) import as they do under pytest.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fleet_sim  # benchmarks/fleet_sim.py, beside this file: the format of its stats events
import serveproc  # benchmarks/serveproc.py, beside this file

from tests.support import hangingregistry, manifests

IMAGE = "nodeagent-bench/busybox:latest"
RUN_ID = uuid.uuid4().hex[:8]
BENCH_LABEL = "io.nodeagent.bench"
NAMESPACE = f"bench-{RUN_ID}"
NODEAGENT = str(Path(sys.executable).parent / "nodeagent")


def daemonset(name: str, *, image: str = IMAGE, grace: int = 1, policy: str = "Never") -> str:
    """A DaemonSet of one busybox `sleep`: as PID 1, `sleep` ignores SIGTERM, so a stop waits out `grace`."""
    return manifests.to_yaml(
        manifests.daemonset(name, namespace=NAMESPACE, image=image, grace=grace, pull_policy=policy)
    )


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pod_of(name: str) -> Callable[[str], bool]:
    """Matches the container names of DaemonSet `name`'s pods (k8s_<container>_<name>-<hash>_...)."""
    return lambda container: f"_{name}-" in container


SERVE_HISTOGRAM = "nodeagent_serve_request_duration_seconds_bucket"
PASS_HISTOGRAM = "nodeagent_serve_rollout_pass_cpu_seconds"  # serve's rollout controller, per pass


def serve_latency_buckets(url: str) -> dict[float, float]:
    """serve's request-duration histogram for reports and bundle fetches (the quick requests), summed
    over those endpoints: upper bound -> cumulative count. Read from its /metrics."""
    from nodeagent.sources import http as http_src

    text = http_src.request("GET", f"{url}/metrics", timeout=30.0).body.decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(SERVE_HISTOGRAM) and 'endpoint="other"' not in line:
            labels, value = line[len(SERVE_HISTOGRAM) :].rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            bound = math.inf if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + float(value)
    return out


def controller_cpu(url: str) -> tuple[float, float]:
    """(passes, CPU seconds) of serve's rollout controller so far: its pass histogram's count and sum,
    read from its /metrics."""
    from nodeagent.sources import http as http_src

    text = http_src.request("GET", f"{url}/metrics", timeout=30.0).body.decode()
    got = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for what in got:
            if line.startswith(f"{PASS_HISTOGRAM}_{what} "):
                got[what] = float(line.rsplit(" ", 1)[1])
    return got["count"], got["sum"]


REQUEST_HISTOGRAM = "nodeagent_serve_request_duration_seconds"


def request_counts(url: str) -> dict[str, float]:
    """Requests `serve` answered so far by endpoint (report, bundle, other; held watches are not
    counted), from its /metrics."""
    from nodeagent.sources import http as http_src

    text = http_src.request("GET", f"{url}/metrics", timeout=30.0).body.decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{REQUEST_HISTOGRAM}_count{{"):
            endpoint = line.split('endpoint="', 1)[1].split('"', 1)[0]
            out[endpoint] = float(line.rsplit(" ", 1)[1])
    return out


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over the counts added between two readings (linear within the
    bucket; a quantile in the +Inf bucket is the largest finite bound)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class ContainerEvents:
    """Docker `start` and `kill` (a stop's SIGTERM) events, by container name, with the engine's own
    timestamps."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self._seen: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self._stream: Any = client.api.events(
            decode=True, filters={"type": "container", "event": ["start", "kill"]}
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self._stream:
                name = ev.get("Actor", {}).get("Attributes", {}).get("name", "")
                with self._cond:
                    self._seen[(ev.get("Action", ""), name)] = ev["timeNano"] / 1e9
                    self._cond.notify_all()
        except Exception:  # the stream is closed at the end
            return

    def wait(self, predicate: Callable[[str], bool], timeout: float = 30.0, action: str = "start") -> float:
        deadline = time.time() + timeout
        with self._cond:
            while True:
                for (seen, name), t in self._seen.items():
                    if seen == action and predicate(name):
                        return t
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no {action} event")
                self._cond.wait(left)

    def close(self) -> None:
        self._stream.close()


@contextmanager
def agent_dirs(source: str = "directory: ds") -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="nodeagent-bench-"))
    (root / "ds").mkdir()
    (root / "config.yaml").write_text(
        f"node: {{name: bench-node}}\nsources:\n  - {source}\nstateDir: state\nresyncInterval: 30s\n"
    )
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def agent_process(root: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [NODEAGENT, "--config", str(root / "config.yaml"), "--log-level", "warning", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # an agent that cannot end while a stop is in flight
            proc.kill()
            proc.wait()


class ServeProcess:
    """`nodeagent serve` on an ephemeral loopback port, as its own process (its CPU is measured)."""

    def __init__(self, directory: Path, state_dir: Path | None = None) -> None:
        # its own state dir: a bench must not leave rollout state in /var/lib/nodeagent-serve
        self._own_state = None if state_dir else Path(tempfile.mkdtemp(prefix="nodeagent-bench-serve-"))
        state = ["--state-dir", str(state_dir or self._own_state)]
        self.proc, self.url = serveproc.start(["--dir", str(directory), *state], "nodeagent serve")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._own_state is not None:
            shutil.rmtree(self._own_state, ignore_errors=True)


@contextmanager
def serve_process(directory: Path, state_dir: Path | None = None) -> Iterator[ServeProcess]:
    s = ServeProcess(directory, state_dir)
    try:
        yield s
    finally:
        s.close()


def cleanup(client: docker.DockerClient) -> None:
    for selector in (f"{BENCH_LABEL}={RUN_ID}", f"io.kubernetes.pod.namespace={NAMESPACE}"):
        for c in client.containers.list(all=True, filters={"label": selector}):
            c.remove(force=True)


def raw_create_start(client: docker.DockerClient, name: str) -> None:
    c = client.api.create_container(
        IMAGE, command=["sleep", "1000000"], name=name, labels={BENCH_LABEL: RUN_ID}, host_config={}
    )
    client.api.start(c["Id"])


# --- measures -----------------------------------------------------------------------------------


def reaction_ms(root: Path, events: ContainerEvents, name: str) -> float:
    """One trial: DaemonSet `name` written into the agent's watched directory -> its container started."""
    t0 = time.time()
    write_atomic(root / "ds" / f"{name}.yaml", daemonset(name))
    return (events.wait(pod_of(name), timeout=120) - t0) * 1000


def bench_reaction(client: docker.DockerClient, events: ContainerEvents, trials: int) -> dict[str, Any]:
    """File written into the watched directory -> its container started, against raw create+start."""
    agent_ms: list[float] = []
    raw_ms: list[float] = []
    with agent_dirs() as root, agent_process(root):
        time.sleep(1.5)  # let the agent start and do its first pass
        for i in range(trials):
            agent_ms.append(reaction_ms(root, events, f"react{i}"))
            t0 = time.time()
            raw_name = f"bench-raw-{RUN_ID}-{i}"
            raw_create_start(client, raw_name)
            t = events.wait(raw_name.__eq__)
            raw_ms.append((t - t0) * 1000)
    return {
        "agent_p50_ms": statistics.median(agent_ms),
        "agent_p95_ms": percentile(agent_ms, 0.95),
        "raw_p50_ms": statistics.median(raw_ms),
        "raw_p95_ms": percentile(raw_ms, 0.95),
        "trials": trials,
    }


STOP_GRACE = 30  # seconds the stopping pod takes: its PID 1 ignores SIGTERM


def bench_reaction_under_load(
    events: ContainerEvents, trials: int, load: Callable[[Path, int], None], prefix: str
) -> dict[str, Any]:
    """The reaction trial, first plain, then each right after `load(root, i)` has put slow work in flight
    (in the same agent): one owner's slow work must not delay another owner's new pod."""
    plain_ms: list[float] = []
    loaded_ms: list[float] = []
    with agent_dirs() as root, agent_process(root):
        time.sleep(1.5)  # let the agent start and do its first pass
        for i in range(trials):
            plain_ms.append(reaction_ms(root, events, f"{prefix}plain{i}"))
        for i in range(trials):
            load(root, i)
            loaded_ms.append(reaction_ms(root, events, f"{prefix}{i}"))
    return {
        "agent_p50_ms": statistics.median(loaded_ms),
        "agent_p95_ms": percentile(loaded_ms, 0.95),
        "plain_p50_ms": statistics.median(plain_ms),
        "plain_p95_ms": percentile(plain_ms, 0.95),
        "trials": trials,
    }


def bench_reaction_while_stopping(events: ContainerEvents, trials: int) -> dict[str, Any]:
    """Reaction while another pod is stopping for STOP_GRACE s: a DaemonSet whose `sleep` ignores
    SIGTERM is withdrawn, and the trial's file is written once the engine has sent that SIGTERM."""

    def stopping(root: Path, i: int) -> None:
        name = f"stopper{i}"
        path = root / "ds" / f"{name}.yaml"
        write_atomic(path, daemonset(name, grace=STOP_GRACE))
        events.wait(pod_of(name), timeout=120)
        path.unlink()
        events.wait(pod_of(name), timeout=120, action="kill")

    return {**bench_reaction_under_load(events, trials, stopping, "stopreact"), "grace_s": STOP_GRACE}


def bench_reaction_while_pull_hangs(events: ContainerEvents, trials: int) -> dict[str, Any]:
    """Reaction while an image pull hangs: a DaemonSet's image is on a registry that accepts
    connections and never answers, and the trial's file is written once the engine is connected to it
    (a retry of an earlier trial's pull may be the one connected: some pull hangs either way)."""
    with hangingregistry.HangingRegistry() as registry:

        def hanging(root: Path, i: int) -> None:
            before = registry.accepted
            image = registry.image(f"hang{i}")
            write_atomic(
                root / "ds" / f"hang{i}.yaml", daemonset(f"hang{i}", image=image, policy="IfNotPresent")
            )
            deadline = time.monotonic() + 60
            while registry.accepted == before:
                if time.monotonic() > deadline:
                    raise TimeoutError("the engine never connected to the hanging registry")
                time.sleep(0.01)

        return bench_reaction_under_load(events, trials, hanging, "pullreact")


def bench_http_reaction(events: ContainerEvents, trials: int) -> dict[str, Any]:
    """A DaemonSet file written into `serve`'s directory -> its container started on a watching node."""
    agent_ms: list[float] = []
    serve_dir = Path(tempfile.mkdtemp(prefix="nodeagent-bench-serve-"))
    try:
        with serve_process(serve_dir) as srv:
            source = f"{{url: '{srv.url}/manifests', pollInterval: 10s}}"
            with agent_dirs(source) as root, agent_process(root):
                time.sleep(1.5)  # start-up, first fetch, the watch in place
                for i in range(trials):
                    name = f"watch{i}"
                    t0 = time.time()
                    write_atomic(serve_dir / f"{name}.yaml", daemonset(name))
                    t = events.wait(pod_of(name))
                    agent_ms.append((t - t0) * 1000)
    finally:
        shutil.rmtree(serve_dir, ignore_errors=True)
    return {
        "agent_p50_ms": statistics.median(agent_ms),
        "agent_p95_ms": percentile(agent_ms, 0.95),
        "trials": trials,
    }


def fleet_daemonset(name: str) -> str:
    return daemonset(name, image="registry.example/fleet/app:1", policy="IfNotPresent")


class SimProcess:
    """One process of hollow nodes (benchmarks/fleet_sim.py); its JSON-line events, in any order."""

    def __init__(
        self, url: str, first: int, count: int, state_root: Path, extra: tuple[str, ...] = ()
    ) -> None:
        script = str(Path(__file__).with_name("fleet_sim.py"))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                script,
                "--url",
                url,
                "--first",
                str(first),
                "--nodes",
                str(count),
                "--state-root",
                str(state_root),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))

    def wait_for(self, event: str, owner: str = "", what: str = "", timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for doc in self._seen:
                if (
                    doc["event"] == event
                    and owner in ("", doc.get("owner"))
                    and what in ("", doc.get("what"))
                ):
                    self._seen.remove(doc)
                    return doc
            self._seen.append(self._lines.get(timeout=max(0.1, deadline - time.monotonic())))

    def take(self, event: str) -> list[dict[str, Any]]:
        """Every `event` line read so far (no wait), removed from what `wait_for` sees."""
        while True:
            try:
                self._seen.append(self._lines.get_nowait())
            except queue.Empty:
                break
        taken = [doc for doc in self._seen if doc["event"] == event]
        self._seen = [doc for doc in self._seen if doc["event"] != event]
        return taken

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self.wait_for("stats")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench_fleet(nodes: int, steady_seconds: float, procs: int = 4) -> dict[str, Any]:
    """Hollow nodes (benchmarks/fleet_sim.py, a simulation) on one `serve`: its CPU, response times
    measured in the clients, and the time until a changed bundle reached, then ran on, every node."""
    serve_dir = Path(tempfile.mkdtemp(prefix="nodeagent-bench-fleet-"))
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # 1000 stateDirs: not the test of a disk
    state_root = Path(tempfile.mkdtemp(prefix="nodeagent-fleet-", dir=shm))
    write_atomic(serve_dir / "base.yaml", fleet_daemonset("fleet-base"))
    base, change = f"DaemonSet/{NAMESPACE}/fleet-base", f"DaemonSet/{NAMESPACE}/fleet-change"
    procs = max(1, min(procs, nodes))
    sims: list[SimProcess] = []
    try:
        with serve_process(serve_dir) as srv:
            try:
                share = [nodes // procs + (1 if i < nodes % procs else 0) for i in range(procs)]
                for i, n in enumerate(share):
                    sims.append(SimProcess(srv.url, sum(share[:i]), n, state_root))
                startup = max(sim.wait_for("ready")["startup_s"] for sim in sims)
                for sim in sims:
                    sim.wait_for("complete", base, "started")
                for sim in sims:
                    sim.stats()  # start-up requests are not the steady state
                h0 = serve_latency_buckets(srv.url)
                c0, w0 = _proc_cpu_seconds(srv.proc.pid), time.monotonic()
                time.sleep(steady_seconds)
                t_change = time.time()
                write_atomic(serve_dir / "change.yaml", fleet_daemonset("fleet-change"))
                received = [sim.wait_for("complete", change, "received", timeout=120) for sim in sims]
                started = [sim.wait_for("complete", change, "started", timeout=120) for sim in sims]
                time.sleep(5.0)  # the reports that follow the change belong to the window
                c1, w1 = _proc_cpu_seconds(srv.proc.pid), time.monotonic()
                h1 = serve_latency_buckets(srv.url)
                stats = [sim.stats() for sim in sims]
                rss = _proc_peak_rss_mb(srv.proc.pid)
            finally:
                for sim in sims:
                    sim.close()
    finally:
        shutil.rmtree(serve_dir, ignore_errors=True)
        shutil.rmtree(state_root, ignore_errors=True)
    quick = sorted(t * 1000 for st in stats for t in st["quick"])
    return {
        "simulation": True,
        "nodes": nodes,
        "processes": procs,
        "startup_s": startup,
        "window_s": w1 - w0,
        "server_cpu_percent": (c1 - c0) / (w1 - w0) * 100,
        "server_peak_rss_mb": rss,
        "quick_requests": len(quick),
        # serve's own time (its histogram): the hollow nodes' times add their wait for their process's
        # interpreter lock, shared by 250 nodes (a real node has a CPU of its own)
        "serve_p50_ms": _ms(histogram_quantile(0.5, h0, h1)),
        "serve_p99_ms": _ms(histogram_quantile(0.99, h0, h1)),
        "p50_ms": percentile(quick, 0.5) if quick else None,
        "p99_ms": percentile(quick, 0.99) if quick else None,
        "max_ms": quick[-1] if quick else None,
        "errors": sum(st["errors"] for st in stats),
        "reports_sent": sum(st["reports_sent"] for st in stats),
        "heartbeat_lag_max_s": fleet_sim.heartbeat_lag_max(stats),
        "received_all_s": max(r["last"] for r in received) - t_change,
        # when the last watch answer carrying the change reached its client (received: and was parsed)
        "watch_answered_all_s": max((t for st in stats for t in st["watch_changed_at"]), default=t_change)
        - t_change,
        "started_first_s": min(r["first"] for r in started) - t_change,
        "started_all_s": max(r["last"] for r in started) - t_change,
        "poll_interval_s": 10.0,
    }


ROLLOUT_V1, ROLLOUT_V2 = "registry.example/fleet/app:1", "registry.example/fleet/app:2"  # fleet_sim's


def rollout_daemonset(name: str, image: str, max_unavailable: str) -> str:
    """A DaemonSet rolled out under a fleet-wide budget; minReadySeconds 1: a pod is available 1 s after
    it is ready, so every wave waits for the previous one's availability."""
    ds = manifests.daemonset(
        name, namespace=NAMESPACE, image=image, pull_policy="IfNotPresent", command=["sleep", "1000000"]
    )
    return manifests.to_yaml(manifests.rolling(ds, max_unavailable, min_ready_seconds=1))


def handout_latencies(handed: list[float], available: list[float], budget: int) -> list[float]:
    """How long each node waited for its turn after a slot of the budget freed (fleet_sim.handout_pairs).
    Negative: the budget was overdrawn (a node handed out before a slot was free)."""
    return [h - a for h, a in fleet_sim.handout_pairs(handed, available, budget)]


def bench_rollout(nodes: int, procs: int = 4, max_unavailable_percent: int = 10) -> dict[str, Any]:
    """A rollout through `serve` over hollow nodes (benchmarks/fleet_sim.py, a simulation) with
    `maxUnavailable: 10%`: how soon after a slot frees the next node is handed the new revision, how the
    waves follow each other, and the serve's CPU over the rollout."""
    from nodeagent.sources import http as http_src

    serve_dir = Path(tempfile.mkdtemp(prefix="nodeagent-bench-rollout-"))
    state_dir = Path(tempfile.mkdtemp(prefix="nodeagent-bench-rollout-state-"))
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    state_root = Path(tempfile.mkdtemp(prefix="nodeagent-fleet-", dir=shm))
    name = "fleet-roll"
    owner, ref = f"DaemonSet/{NAMESPACE}/{name}", f"{NAMESPACE}/{name}"
    percent = f"{max_unavailable_percent}%"
    budget = max(1, math.ceil(nodes * max_unavailable_percent / 100))  # Kubernetes rounds up
    write_atomic(serve_dir / "roll.yaml", rollout_daemonset(name, ROLLOUT_V1, percent))
    procs = max(1, min(procs, nodes))
    sims: list[SimProcess] = []

    def state(url: str) -> tuple[str, int, int]:
        """(phase, updateRevision, available nodes) of the rollout, as serve reports it."""
        try:
            doc = http_src.get_json(f"{url}/api/rollouts/{ref}", timeout=10.0)
        except http_src.FetchError:
            return "", 0, 0
        up = sum(1 for n in doc.get("nodes", ()) if n.get("available"))
        return str(doc.get("phase", "")), int(doc.get("updateRevision") or 0), up

    try:
        with serve_process(serve_dir, state_dir) as srv:
            try:
                share = [nodes // procs + (1 if i < nodes % procs else 0) for i in range(procs)]
                extra = ("--rollout-events", "--repass", "0.2")
                for i, n in enumerate(share):
                    sims.append(SimProcess(srv.url, sum(share[:i]), n, state_root, extra))
                for sim in sims:
                    sim.wait_for("ready")
                for sim in sims:
                    sim.wait_for("complete", owner, "started")
                deadline = time.monotonic() + 300
                while (first := state(srv.url))[::2] != ("Complete", nodes):  # revision 1 available
                    assert time.monotonic() < deadline, f"revision 1 never completed: {first}"
                    time.sleep(0.5)
                for sim in sims:
                    sim.take("got")
                    sim.take("available")
                passes0 = controller_cpu(srv.url)  # read outside the window (a /metrics costs serve CPU)
                counts0 = request_counts(srv.url)
                c0, w0 = _proc_cpu_seconds(srv.proc.pid), time.monotonic()
                t_change = time.time()
                write_atomic(serve_dir / "roll.yaml", rollout_daemonset(name, ROLLOUT_V2, percent))
                deadline = time.monotonic() + 600
                got: list[dict[str, Any]] = []
                ready: list[dict[str, Any]] = []
                # the nodes' own events say when every node is available: polling serve's rollout
                # document (13 ms of serve's CPU at 1000 nodes) every 0.2 s would be a third of the figure
                while len({e["node"] for e in ready}) < nodes:
                    assert time.monotonic() < deadline, (
                        f"the rollout did not complete within 600 s: {state(srv.url)}"
                    )
                    time.sleep(0.2)
                    got += [e for sim in sims for e in sim.take("got") if e["image"] == ROLLOUT_V2]
                    ready += [e for sim in sims for e in sim.take("available") if e["image"] == ROLLOUT_V2]
                while (now := state(srv.url))[0] != "Complete" or now[1] == first[1]:  # serve agrees
                    assert time.monotonic() < deadline, f"the rollout did not complete within 600 s: {now}"
                    time.sleep(0.2)
                c1, w1 = _proc_cpu_seconds(srv.proc.pid), time.monotonic()
                passes1 = controller_cpu(srv.url)
                counts1 = request_counts(srv.url)
                got += [e for sim in sims for e in sim.take("got") if e["image"] == ROLLOUT_V2]
            finally:
                for sim in sims:
                    sim.close()
    finally:
        for d in (serve_dir, state_dir, state_root):
            shutil.rmtree(d, ignore_errors=True)
    handed = sorted(e["t"] for e in got)
    available = sorted(e["t"] for e in ready)
    waits = handout_latencies(handed, available, budget)
    bursts = 1 + sum(1 for x, y in itertools.pairwise(handed) if y - x > 0.5) if handed else 0
    return {
        "simulation": True,
        "nodes": nodes,
        "max_unavailable": percent,
        "budget": budget,
        "handed_out": len(handed),
        "available": len(available),
        "window_s": w1 - w0,
        "server_cpu_percent": (c1 - c0) / (w1 - w0) * 100,
        "controller_passes": passes1[0] - passes0[0],
        # answered in the window (held watches not counted; /metrics read outside it)
        "reports": counts1.get("report", 0.0) - counts0.get("report", 0.0),
        "controller_cpu_percent": (passes1[1] - passes0[1]) / (w1 - w0) * 100,
        "first_handout_s": handed[0] - t_change if handed else None,
        "all_available_s": available[-1] - t_change if available else None,
        "handout_wait_p50_s": percentile([max(0.0, w) for w in waits], 0.5) if waits else None,
        "handout_wait_p90_s": percentile([max(0.0, w) for w in waits], 0.9) if waits else None,
        "handout_wait_max_s": max(waits) if waits else None,
        "over_budget": sum(1 for w in waits if w < -0.05),
        "waves": bursts,
    }


def bench_cold_start(client: docker.DockerClient, count: int, rounds: int = 3) -> dict[str, Any]:
    """`nodeagent sync` creating `count` DaemonSets' pods, against docker-py with 8 threads.

    Each round starts from an engine without the bench's containers, and the order alternates (agent
    first, then raw first), so neither side always runs on the engine the other has just filled; the
    medians are compared. The agent's figure includes starting Python, as `nodeagent sync` does."""
    agent_times: list[float] = []
    raw_times: list[float] = []
    with agent_dirs() as root:
        for i in range(count):
            write_atomic(root / "ds" / f"cold{i}.yaml", daemonset(f"cold{i}"))

        def agent() -> None:
            t0 = time.monotonic()
            done = subprocess.run(
                [NODEAGENT, "--config", str(root / "config.yaml"), "sync"], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"nodeagent sync exited {done.returncode}: {done.stderr[-2000:]}")
            agent_times.append(time.monotonic() - t0)

        def raw() -> None:
            t0 = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: raw_create_start(client, f"bench-cold-{RUN_ID}-{i}"), range(count)))
            raw_times.append(time.monotonic() - t0)

        for n in range(rounds):
            for measure in (agent, raw) if n % 2 == 0 else (raw, agent):
                cleanup(client)
                measure()
        cleanup(client)
        agent()  # the pods the no-op and idle measures run with (not counted: agent_times is done)
        agent_times.pop()
        noop = bench_noop(root)
        idle = bench_idle(root, count)
    agent_s, raw_s = statistics.median(agent_times), statistics.median(raw_times)
    return {
        "agent_s": agent_s,
        "raw_s": raw_s,
        "ratio": agent_s / raw_s,
        "count": count,
        "rounds": rounds,
        "agent_runs_s": agent_times,
        "raw_runs_s": raw_times,
        **noop,
        **idle,
    }


class CountingRuntime:
    """Wraps the real DockerRuntime and counts calls by method (a recorder, not a mock)."""

    def __init__(self, inner: docker_rt.DockerRuntime) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted


def bench_noop(root: Path) -> dict[str, Any]:
    """A sync with nothing to do: wall time of the command, and the Docker calls one pass makes."""
    from nodeagent import settings
    from nodeagent.agent import agent

    times = []
    for _ in range(5):
        t0 = time.monotonic()
        subprocess.run(
            [NODEAGENT, "--config", str(root / "config.yaml"), "sync"], check=True, capture_output=True
        )
        times.append(time.monotonic() - t0)
    cfg = settings.load(str(root / "config.yaml"))
    # scoped to the bench's node, as `nodeagent sync` is: unscoped, this pass would plan (and make)
    # removals of every other agent's pods on the engine
    counting = CountingRuntime(docker_rt.DockerRuntime(node_name=cfg.node.name))
    a = agent.Agent(cfg, counting, watch=False)
    a.relist()
    t0 = time.monotonic()
    result = a.reconcile()
    in_process = time.monotonic() - t0
    writes = sum(v for k, v in counting.calls.items() if k in ("create", "start", "stop", "remove", "pull"))
    return {
        "noop_sync_s": statistics.median(times),
        "noop_pass_s": in_process,
        "noop_list_calls": counting.calls.get("list_managed", 0),
        "noop_other_calls": sum(v for k, v in counting.calls.items() if k != "list_managed"),
        "noop_writes": writes,
        "noop_actions": len(result.outcomes),
    }


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_idle(root: Path, pods: int, seconds: float | None = None) -> dict[str, Any]:
    """`nodeagent run` with `pods` pods running and nothing to do: CPU share of one core, peak RSS."""
    seconds = seconds if seconds is not None else float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
    with agent_process(root) as proc:
        time.sleep(3.0)  # start-up and first pass are not idle
        c0, t0 = _proc_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = _proc_cpu_seconds(proc.pid), time.monotonic()
        rss = _proc_peak_rss_mb(proc.pid)
    return {"idle_cpu_percent": (c1 - c0) / (t1 - t0) * 100, "idle_peak_rss_mb": rss, "idle_seconds": seconds}


# --- report -------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    rows = [("measure", "nodeagent", "baseline", "goal")]
    r = results.get("reaction")
    if r:
        rows.append(
            (
                f"reaction: file -> container started (p50/p95, {r['trials']} trials)",
                f"{r['agent_p50_ms']:.0f} / {r['agent_p95_ms']:.0f} ms",
                f"raw create+start {r['raw_p50_ms']:.0f} / {r['raw_p95_ms']:.0f} ms",
                "p50 within 100 ms of raw",
            )
        )
    for key, what in (
        ("reaction_stopping", f"reaction while another pod is stopping for {STOP_GRACE} s"),
        ("reaction_pull_hang", "reaction while a pull hangs"),
    ):
        x = results.get(key)
        if x:
            gap = x["agent_p50_ms"] - x["plain_p50_ms"]
            rows.append(
                (
                    f"{what} (p50/p95, {x['trials']} trials)",
                    f"{x['agent_p50_ms']:.0f} / {x['agent_p95_ms']:.0f} ms",
                    f"plain reaction, same agent {x['plain_p50_ms']:.0f} / {x['plain_p95_ms']:.0f} ms",
                    f"p50 within 100 ms of plain: {'met' if gap <= 100 else 'NOT met'} ({gap:+.0f} ms)",
                )
            )
    h = results.get("http_reaction")
    if h:
        rows.append(
            (
                f"HTTP watch reaction: bundle changed -> container started (p50/p95, {h['trials']} trials)",
                f"{h['agent_p50_ms']:.0f} / {h['agent_p95_ms']:.0f} ms",
                f"directory source {r['agent_p50_ms']:.0f} ms p50" if r else "-",
                "p50 < 1 s",
            )
        )
    c = results.get("cold_start")
    if c:
        rows += [
            (
                f"cold start of {c['count']} DaemonSets (sync, median of {c.get('rounds', 1)})",
                f"{c['agent_s']:.2f} s",
                f"docker-py, 8 threads {c['raw_s']:.2f} s (x{c['ratio']:.2f})",
                "<= 1.1 x raw",
            ),
            (
                "no-op `nodeagent sync`",
                f"{c['noop_sync_s']:.2f} s; {c['noop_list_calls']} list call, {c['noop_writes']} writes",
                f"in-process pass {c['noop_pass_s'] * 1000:.0f} ms",
                "< 0.4 s, one list call",
            ),
            (
                f"idle `run`, {c['count']} pods, {c['idle_seconds']:.0f} s",
                f"{c['idle_cpu_percent']:.2f} % CPU, {c['idle_peak_rss_mb']:.0f} MB peak RSS",
                "-",
                "< 0.5 % of a core, < 60 MB",
            ),
        ]
    f = results.get("fleet")
    if f:
        rows.append(
            (
                f"fleet (SIMULATION: {f['nodes']} hollow nodes, in-memory runtime) on one serve, "
                f"watch + 10 s poll, {f['window_s']:.0f} s",
                f"serve {f['server_cpu_percent']:.1f} % CPU, {f['server_peak_rss_mb']:.0f} MB; "
                f"p99 {_num(f['serve_p99_ms'])} ms in serve, {f['p99_ms']:.0f} ms in the hollow nodes "
                f"({f['quick_requests']} requests, {f['errors']} errors); "
                f"change reached every node in {f['received_all_s']:.2f} s, "
                f"running on every node in {f['started_all_s']:.2f} s",
                f"poll interval {f['poll_interval_s']:.0f} s",
                "< 10 % of a core, p99 < 50 ms, every node < 12 s",
            )
        )
    r = results.get("rollout")
    if r:
        rows.append(
            (
                f"rollout (SIMULATION: {r['nodes']} hollow nodes) through serve, maxUnavailable "
                f"{r['max_unavailable']} ({r['budget']} nodes), minReadySeconds 1",
                f"serve {r['server_cpu_percent']:.1f} % CPU over {r['window_s']:.0f} s (of which "
                f"{r['controller_passes']:.0f} controller passes {r['controller_cpu_percent']:.1f} %; "
                f"{r.get('reports', 0):.0f} reports); next node handed out "
                f"{_secs(r['handout_wait_p50_s'])} p50, {_secs(r['handout_wait_max_s'])} max after a slot "
                f"freed; {r['waves']} waves, {r['over_budget']} over budget; "
                f"{r['available']}/{r['nodes']} available in {_secs(r['all_available_s'])}",
                "-",
                "each wave < 1 s after the previous one is available, < 10 % of a core",
            )
        )
    if results.get("replicas"):
        import replicas_bench  # benchmarks/replicas_bench.py: serve replicas on PostgreSQL

        rows.append(replicas_bench.row(results["replicas"]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


MEASURES = ("reaction", "stopping", "pullhang", "http", "cold", "fleet", "rollout", "replicas")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few trials, small fleet)")
    parser.add_argument("--trials", type=int, default=None, help="reaction trials (default 20, quick 3)")
    parser.add_argument(
        "--loaded-trials",
        type=int,
        default=None,
        help="trials of the reactions under load, stopping and pullhang (default 10, quick 2)",
    )
    parser.add_argument("--count", type=int, default=None, help="cold-start DaemonSets (default 50, quick 5)")
    parser.add_argument(
        "--nodes", type=int, default=None, help="simulated fleet nodes (default 1000, quick 50)"
    )
    parser.add_argument("--fleet-seconds", type=float, default=None, help="steady fleet window (default 60)")
    parser.add_argument("--fleet-procs", type=int, default=4, help="processes the hollow nodes run in")
    parser.add_argument(
        "--replica-nodes", type=int, default=None, help="hollow nodes over two replicas (5000, quick 100)"
    )
    parser.add_argument("--only", default=",".join(MEASURES), help=f"comma-separated subset of {MEASURES}")
    parser.add_argument("--json", default="benchmarks/results.json")
    args = parser.parse_args()
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    if only - set(MEASURES):
        parser.error(f"--only takes {', '.join(MEASURES)}")
    trials = args.trials or (3 if args.quick else 20)
    loaded_trials = args.loaded_trials or (2 if args.quick else 10)
    count = args.count or (5 if args.quick else 50)
    nodes = args.nodes or (50 if args.quick else 1000)
    fleet_seconds = args.fleet_seconds or (10.0 if args.quick else 60.0)
    if args.quick:
        os.environ.setdefault("BENCH_IDLE_SECONDS", "5")
    client = docker.from_env()
    built_image = not docker_rt.DockerRuntime().image_present(IMAGE)
    localimage.ensure_busybox_image(docker_rt.DockerRuntime(), IMAGE, {BENCH_LABEL: "image"})
    events = ContainerEvents(client)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "docker": client.version().get("Version"),
        },
        "quick": args.quick,
    }
    try:
        if "reaction" in only:
            results["reaction"] = bench_reaction(client, events, trials)
            cleanup(client)
        if "stopping" in only:
            results["reaction_stopping"] = bench_reaction_while_stopping(events, loaded_trials)
            cleanup(client)
        if "pullhang" in only:
            results["reaction_pull_hang"] = bench_reaction_while_pull_hangs(events, loaded_trials)
            cleanup(client)
        if "http" in only:
            results["http_reaction"] = bench_http_reaction(
                events, max(10, trials) if not args.quick else trials
            )
            cleanup(client)
        if "cold" in only:
            results["cold_start"] = bench_cold_start(client, count, 1 if args.quick else 3)
            cleanup(client)
    finally:
        events.close()
        cleanup(client)
        if built_image:  # the bench leaves no image it made behind
            with suppress(docker.errors.APIError):
                client.images.remove(IMAGE)
    if "fleet" in only:
        results["fleet"] = bench_fleet(nodes, fleet_seconds, args.fleet_procs)
    if "rollout" in only:
        results["rollout"] = bench_rollout(nodes, args.fleet_procs)
    if "replicas" in only:
        import replicas_bench

        replica_nodes = args.replica_nodes or (100 if args.quick else 5000)
        results["replicas"] = replicas_bench.bench_replicas(
            replica_nodes,
            fleet_seconds,
            max(args.fleet_procs, replica_nodes // 1000),
            SimProcess,
            serve_latency_buckets,
            histogram_quantile,
        )
    text = table(results)
    print(text)
    m = results["machine"]
    print(f"\nmachine: {m['cpus']} cpus, {m['platform']}, Python {m['python']}, Docker {m['docker']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
