"""`make bench` row `replicas`: hollow nodes (benchmarks/fleet_sim.py, a SIMULATION) over two `serve`
replicas sharing a throwaway PostgreSQL (tests/support/postgres.py).

Measured: each replica's CPU and peak memory over a steady window, the p99 of the nodes' quick requests
(polls and reports, in the clients), a rollout with `maxUnavailable: 10%`: how long each node waited for
its turn after a slot freed, from the hollow nodes' own events (a pod becoming available, at its
readySince plus minReadySeconds, or the report saying so being sent, to the next node getting the
revision), split by the leader's assignment times (read from PostgreSQL) into the leader deciding and
the decision reaching the node; serve's part alone (from the report that freed a slot being sent to the
next node's watch answer arriving at its socket, by the kernel's stamp: a starved hollow node's late
reading left out, see fleet_sim.ArrivalSocket); serve's own pass (the leader's rollout document, polled
every 0.1 s, so up to 0.1 s is the poll); and the leader SIGKILLed mid-rollout: the time until the other
replica leads, and until the rollout moves again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support, when run as a script

import fleet_sim  # benchmarks/fleet_sim.py: the format of its stats events
import serveproc  # benchmarks/serveproc.py (benchmarks/ is on sys.path: this is run or imported from there)

from nodeagent.fleet import pgstore, store
from nodeagent.fleet import rollout as fleet_rollout
from nodeagent.sources import http
from tests.support import manifests
from tests.support import postgres as pgsupport

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")
NAMESPACE = "bench-replicas"
IMAGE = "registry.example/fleet/app:1"  # fleet_sim.IMAGE
MAX_UNAVAILABLE = "10%"


def rollout_daemonset(name: str, sleep: str) -> str:
    """Revisions differ in the command (the hollow nodes' in-memory runtime has only IMAGE)."""
    ds = manifests.daemonset(
        name, namespace=NAMESPACE, image=IMAGE, pull_policy="IfNotPresent", command=["sleep", sleep]
    )
    return manifests.to_yaml(manifests.rolling(ds, MAX_UNAVAILABLE))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def grace_for(nodes: int) -> int:
    """serve's --grace: 20 s; 60 s past 1000 hollow nodes, whose heartbeats (every 10 s) fall behind
    while thousands of them share two cores during a wave (a late heartbeat after a node got the new
    revision fails the rollout: a node silent after its update counts against the revision)."""
    return 20 if nodes <= 1000 else 60


class Replica:
    def __init__(self, directory: Path, store_url: str, name: str, grace: int = 20) -> None:
        self.name = name
        self.proc, self.url = serveproc.start(
            ["--dir", str(directory), "--store", store_url, "--replica-id", name, "--grace", str(grace)],
            f"serve replica {name}",
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def leads(self) -> bool:
        try:
            return "(leader)" in http.request("GET", self.url + "/healthz", timeout=2).body.decode()
        except http.FetchError:
            return False

    def rollout(self, name: str) -> dict[str, Any] | None:
        try:
            # the counters only: the per-node list of 5000 nodes, ten times a second, was load on the leader
            doc = http.get_json(f"{self.url}/api/rollouts/{NAMESPACE}/{name}?nodes=false", timeout=5)
        except http.FetchError:
            return None
        return doc if isinstance(doc, dict) else None

    def close(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _updated(doc: dict[str, Any]) -> tuple[int, int]:
    """(nodes assigned the update revision, of them available) from a rollout document's counters."""
    return int(doc.get("updatedNumberScheduled") or 0), int(doc.get("numberAvailable") or 0)


def watch_rollout(
    replicas: list[Replica], name: str, after: int, until: float, on_sample: Any = None
) -> list[tuple[float, int, int, str]]:
    """Poll the leading replica's rollout document every 0.1 s, from the first update revision past
    `after`, until Complete (or `until`)."""
    samples: list[tuple[float, int, int, str]] = []
    while time.monotonic() < until:
        lead = next((r for r in replicas if r.alive() and r.leads()), None)
        doc = lead.rollout(name) if lead is not None else None
        if doc is not None and int(doc.get("updateRevision") or 0) > after:
            assigned, available = _updated(doc)
            samples.append((time.monotonic(), assigned, available, str(doc.get("phase"))))
            if on_sample is not None:
                on_sample(samples)
            if doc.get("phase") == "Complete" and assigned and assigned == available:
                break
        elif doc is not None and os.environ.get("BENCH_DEBUG"):
            print("waiting", json.dumps(doc)[:300], file=sys.stderr)
        time.sleep(0.1)
    return samples


def wave_gaps(samples: list[tuple[float, int, int, str]], total: int) -> list[float]:
    """Budget slots handed on: from a sample where more nodes became available to the first sample where
    more nodes were assigned (a slot freed is a slot reused, as in Kubernetes: the "next wave" is the
    next node). The resolution is the poll, about 0.1 s: a sample where nodes became available and more
    were assigned is a slot handed on within one poll (0 here).

    Until this was fixed, such a sample started a gap instead of closing one, and the gap ran to the next
    sample with more nodes assigned: after the next node became available, not after this one."""
    gaps = []
    freed_at: float | None = None
    prev = samples[0] if samples else None
    for t, assigned, available, _ in samples[1:]:
        assert prev is not None
        if available > prev[2] and assigned < total and freed_at is None:
            freed_at = t
        if assigned > prev[1] and freed_at is not None:
            gaps.append(t - freed_at)
            freed_at = None
        prev = (t, assigned, available, "")
    return gaps


def split_failover(
    pairs: list[tuple[float, float]], kill_at: float | None, moved_at: float | None
) -> tuple[list[float], list[float]]:
    """(waits of the rollout's own pace, waits of the failover) from (handed, freed) pairs.

    A node whose wait overlaps the time from the leader's kill to the rollout moving again waited for a
    new leader, whether its slot freed before the kill or after it: that wait is the failover figure
    (`rollout_moved_again_s`), not a wave. Until this split, only waits spanning the kill were set
    apart, and the slots freed while no replica led (up to the new leader's first pass) counted as
    slow waves."""
    if kill_at is None:
        return [h - a for h, a in pairs], []
    end = moved_at if moved_at is not None else float("inf")
    own, failover = [], []
    for h, a in pairs:
        (failover if a < end and h > kill_at else own).append(h - a)
    return own, failover


def bench_replicas(
    nodes: int,
    steady_seconds: float,
    procs: int,
    sim_process: Any,
    latency_buckets: Callable[[str], dict[float, float]],
    histogram_quantile: Callable[[float, dict[float, float], dict[float, float]], float | None],
) -> dict[str, Any]:
    """Two replicas on PostgreSQL, `nodes` hollow nodes spread over them (each lists both). bench.py
    hands in its simulation process and its reading of serve's request-duration histogram."""
    bindir = pgsupport.find_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server: `make postgres` installs Debian's postgresql")
    cluster = pgsupport.create(bindir)
    serve_dir = Path(tempfile.mkdtemp(prefix="nodeagent-bench-replicas-"))
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    state_root = Path(tempfile.mkdtemp(prefix="nodeagent-replicas-", dir=shm))
    (serve_dir / "app.yaml").write_text(rollout_daemonset("app", "1000000"))
    owner = f"DaemonSet/{NAMESPACE}/app"
    replicas: list[Replica] = []
    sims: list[Any] = []
    try:
        for i in range(2):
            replicas.append(Replica(serve_dir, cluster.url, f"r{i}", grace_for(nodes)))
        urls = ",".join(r.url for r in replicas)
        share = [nodes // procs + (1 if i < nodes % procs else 0) for i in range(procs)]
        for i, n in enumerate(share):
            sims.append(sim_process(urls, sum(share[:i]), n, state_root, ("--rollout-events",)))
        startup = max(sim.wait_for("ready")["startup_s"] for sim in sims)
        for sim in sims:
            sim.wait_for("complete", owner, "started", timeout=600)
        for sim in sims:
            sim.stats()
        h0 = [latency_buckets(r.url) for r in replicas]
        c0 = [_cpu_seconds(r.proc.pid) for r in replicas]
        w0 = time.monotonic()
        print(f"steady window: {steady_seconds:.0f} s", file=sys.stderr, flush=True)
        time.sleep(steady_seconds)
        c1 = [_cpu_seconds(r.proc.pid) for r in replicas]
        w1 = time.monotonic()
        h1 = [latency_buckets(r.url) for r in replicas]
        serve_p99 = [histogram_quantile(0.99, a, b) for a, b in zip(h0, h1, strict=True)]
        stats = [sim.stats() for sim in sims]
        rss = [_peak_rss_mb(r.proc.pid) for r in replicas]
        quick = sorted(t * 1000 for st in stats for t in st["quick"])

        first = next(r for r in replicas if r.leads()).rollout("app") or {}
        before = {
            e["revision"] for sim in sims for what in ("got", "available", "reported") for e in sim.take(what)
        }
        # a rollout, 10 % at a time; the leader is SIGKILLed once about a third of the nodes are updated
        (serve_dir / "app.yaml").write_text(rollout_daemonset("app", "1000001"))
        killed: dict[str, Any] = {}

        def maybe_kill(samples: list[tuple[float, int, int, str]]) -> None:
            _, assigned, _, phase = samples[-1]
            if killed or assigned < max(1, nodes // 3) or phase == "Complete":
                return
            lead = next((r for r in replicas if r.alive() and r.leads()), None)
            if lead is None:
                return
            killed.update(name=lead.name, at=time.monotonic(), wall=time.time(), assigned=samples[-1][1])
            os.kill(lead.proc.pid, signal.SIGKILL)
            lead.proc.wait()

        samples = watch_rollout(
            replicas,
            "app",
            int(first.get("updateRevision") or 0),
            time.monotonic() + float(os.environ.get("BENCH_ROLLOUT_TIMEOUT", "600")),
            maybe_kill,
        )
        survivor = next(r for r in replicas if r.alive())
        final = survivor.rollout("app") or {}
        gaps_before = wave_gaps([s for s in samples if not killed or s[0] < killed["at"]], nodes)
        gaps_after = wave_gaps([s for s in samples if killed and s[0] > killed["at"]], nodes)
        moved = next(
            (s[0] for s in samples if killed and s[0] > killed["at"] and s[1] > killed["assigned"]), None
        )
        led = next((s[0] for s in samples if killed and s[0] > killed["at"]), None)
        rollout_stats = [sim.stats() for sim in sims]
        # the nodes' own events: when each was handed the new revision and when its pod of it was available
        got_events = [e for sim in sims for e in sim.take("got") if e["revision"] not in before]
        handed = sorted(e["t"] for e in got_events)
        became = {
            e["node"]: e["t"] for sim in sims for e in sim.take("available") if e["revision"] not in before
        }
        sent_at = {
            e["node"]: e["t"] for sim in sims for e in sim.take("reported") if e["revision"] not in before
        }
        # when the leader decided each node's turn (the assignment's time, serve's clock, which is this
        # machine's): splits a wait into serve deciding and the decision reaching the hollow node
        decided = _assigned_at(cluster.url, int(final.get("updateRevision") or 0)) if final else {}
        got_at = {f"hollow-{e['node']:05d}": e["t"] for e in got_events}  # fleet_sim's node names
        available = sorted(became.values())
        # a node whose "reported" event did not come (its post still in flight when the events were
        # read) counts from its pod's availability: a missing event must not shift every pair after it
        reported = sorted(sent_at.get(node, t) for node, t in became.items())
        unreported = sum(1 for node in became if node not in sent_at)
    finally:
        for sim in sims:
            sim.close()
        for r in replicas:
            r.close()
        pgsupport.destroy(cluster)
        shutil.rmtree(serve_dir, ignore_errors=True)
        shutil.rmtree(state_root, ignore_errors=True)
    gaps = gaps_before + gaps_after
    budget = fleet_rollout.scaled(MAX_UNAVAILABLE, nodes)  # as the controller rounds it
    # the (i)th node handed the revision waited for the (i - budget)th to become available; a wait that
    # overlaps the failover (from the kill to the rollout moving again) is not a wave (split_failover)
    kill_at = killed.get("wall")
    moved_at = kill_at + (moved - killed["at"]) if kill_at is not None and moved is not None else None

    def waits_after(freed: list[float], told: list[float] | None = None) -> tuple[list[float], list[float]]:
        """(waits of the rollout's pace, waits for a new leader) (split_failover), from each slot freeing
        to the next node being told (`told`, sorted; the nodes getting the revision by default)."""
        pairs = fleet_sim.handout_pairs(handed if told is None else told, freed, budget)
        return split_failover(pairs, kill_at, moved_at)

    def clipped(waits: list[float]) -> list[float]:
        """Sorted, a wait below 0 (a hand-on before its slot freed: over budget) counted as 0."""
        return sorted(max(0.0, w) for w in waits)

    waits, across = waits_after(available)  # from the node's pod becoming available
    # the same pairs with the leader's decision in place of the node getting it, and the way between
    decisions = sorted(decided.values())
    decide = clipped(waits_after(available, decisions)[0])
    delivery = sorted(got_at[n] - t for n, t in decided.items() if n in got_at)
    # serve's part of the wait, without the hollow nodes' own delays (a starved process posting a report
    # late, or reading an answer late): from the report that freed a slot being sent, to the leader
    # deciding the next node's turn, and to the next node's watch answer reaching its socket (the
    # kernel's arrival stamp, fleet_sim.ArrivalSocket; a node told by a poll counts when it read it)
    decide_sent = clipped(waits_after(reported, decisions)[0])
    served = clipped(waits_after(reported, sorted(e.get("arrived") or e["t"] for e in got_events))[0])
    late = clipped(waits)
    sent = clipped(waits_after(reported)[0])  # from the report that says so
    return {
        "simulation": True,
        "nodes": nodes,
        "replicas": 2,
        "startup_s": startup,
        "grace_s": grace_for(nodes),
        "window_s": w1 - w0,
        "replica_cpu_percent": [(b - a) / (w1 - w0) * 100 for a, b in zip(c0, c1, strict=True)],
        "replica_peak_rss_mb": rss,
        "quick_requests": len(quick),
        "p99_ms": quick[int(0.99 * (len(quick) - 1))] if quick else None,
        # each replica's own answer times (its histogram); the hollow nodes' times add their wait for
        # their process's interpreter lock
        "serve_p99_ms": [None if q is None else q * 1000 for q in serve_p99],
        "errors": sum(st["errors"] for st in stats),
        # how long the hollow nodes' heartbeats waited for one of their process's report threads (a
        # real node's reporter has its own): late ones make serve see nodes NotReady
        "heartbeat_lag_max_s": [
            fleet_sim.heartbeat_lag_max(stats),
            fleet_sim.heartbeat_lag_max(rollout_stats),
        ],
        "heartbeats_skipped": sum(st["heartbeats_skipped"] for st in rollout_stats),
        "rollout_complete": bool(samples) and samples[-1][3] == "Complete",
        "slots_handed_on": len(gaps),
        "wave_gap_max_s": max(gaps) if gaps else None,
        "wave_gap_p50_s": sorted(gaps)[len(gaps) // 2] if gaps else None,
        "wave_gap_p90_s": sorted(gaps)[int(0.9 * (len(gaps) - 1))] if gaps else None,
        "wave_gaps_over_1s": sum(1 for g in gaps if g > 1.0),
        "handed_out": len(handed),
        "available": len(available),
        "handout_wait_p50_s": late[len(late) // 2] if late else None,
        "handout_wait_p90_s": late[int(0.9 * (len(late) - 1))] if late else None,
        "handout_wait_max_s": late[-1] if late else None,
        "handout_waits_over_1s": sum(1 for w in late if w > 1.0),
        "decided_wait_p50_s": decide[len(decide) // 2] if decide else None,
        "decided_wait_max_s": decide[-1] if decide else None,
        "decided_waits_over_1s": sum(1 for w in decide if w > 1.0),
        "decided_after_report_p50_s": decide_sent[len(decide_sent) // 2] if decide_sent else None,
        "decided_after_report_max_s": decide_sent[-1] if decide_sent else None,
        "decided_after_report_over_1s": sum(1 for w in decide_sent if w > 1.0),
        "served_after_report_p50_s": served[len(served) // 2] if served else None,
        "served_after_report_max_s": served[-1] if served else None,
        "served_after_report_over_1s": sum(1 for w in served if w > 1.0),
        "answers_by_poll": sum(1 for e in got_events if not e.get("arrived")),
        "delivery_p50_s": delivery[len(delivery) // 2] if delivery else None,
        "delivery_max_s": delivery[-1] if delivery else None,
        "reported_wait_p50_s": sent[len(sent) // 2] if sent else None,
        "reported_wait_max_s": sent[-1] if sent else None,
        "reported_waits_over_1s": sum(1 for w in sent if w > 1.0),
        "reported_missing": unreported,
        "handout_waits_in_failover": len(across),
        "handout_wait_in_failover_max_s": max(across, default=None),
        "over_budget": sum(1 for w in waits if w < -0.05),
        "leader_killed": killed.get("name"),
        "new_leader_s": (led - killed["at"]) if killed and led else None,
        "rollout_moved_again_s": (moved - killed["at"]) if killed and moved else None,
        "survivor": survivor.name,
    }


def _assigned_at(url: str, revision: int) -> dict[str, float]:
    """node -> when the leader assigned it `revision` (the store's assignments, as serve reads them)."""
    st = pgstore.PgStore(url, replica_id="bench-reader")
    try:
        key = store.Key(store.KIND_DAEMONSET, NAMESPACE, "app")
        return {a.node: a.assigned_at for a in st.assignments(key) if a.revision == revision}
    finally:
        st.close()


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def row(r: dict[str, Any]) -> tuple[str, str, str, str]:
    cpu = " / ".join(f"{c:.1f}" for c in r["replica_cpu_percent"])
    mem = " / ".join(f"{m:.0f}" for m in r["replica_peak_rss_mb"])
    gap = f"{r['wave_gap_max_s']:.2f} s" if r["wave_gap_max_s"] is not None else "-"
    moved = f"{r['rollout_moved_again_s']:.1f} s" if r["rollout_moved_again_s"] is not None else "-"
    p99 = " / ".join("-" if q is None else f"{q:.0f}" for q in r["serve_p99_ms"])
    return (
        f"replicas (SIMULATION: {r['nodes']} hollow nodes over 2 serve replicas on PostgreSQL), "
        f"{r['window_s']:.0f} s",
        f"CPU {cpu} % of a core, {mem} MB; p99 {p99} ms in serve, {r['p99_ms']:.0f} ms in the hollow "
        f"nodes ({r['errors']} errors); heartbeats waited <= "
        f"{' / '.join(f'{x:.1f}' for x in r['heartbeat_lag_max_s'])} s (steady / rollout); "
        f"next node handed out {_secs(r['handout_wait_p50_s'])} p50, {_secs(r['handout_wait_max_s'])} max "
        f"after a slot freed on a node ({r['handout_waits_over_1s']} over 1 s, "
        f"{r['over_budget']} over budget; "
        f"of which the leader deciding: {_secs(r.get('decided_wait_p50_s'))} p50, "
        f"{_secs(r.get('decided_wait_max_s'))} max, {r.get('decided_waits_over_1s')} over 1 s, "
        f"and its decision reaching the node {_secs(r.get('delivery_p50_s'))} p50, "
        f"{_secs(r.get('delivery_max_s'))} max; "
        f"serve's own pass: <= {gap} in {r['slots_handed_on']} polls); "
        f"serve's part, from the report that freed a slot being sent to the next node's answer "
        f"arriving at its socket: {_secs(r.get('served_after_report_p50_s'))} p50, "
        f"{_secs(r.get('served_after_report_max_s'))} max, {r.get('served_after_report_over_1s')} over 1 s "
        f"(the leader deciding {_secs(r.get('decided_after_report_p50_s'))} p50, "
        f"{_secs(r.get('decided_after_report_max_s'))} max); "
        f"rollout {'complete' if r['rollout_complete'] else 'NOT complete'}; "
        f"leader killed: rollout moved again after {moved} ({r['handout_waits_in_failover']} nodes "
        f"waited for the new leader, up to {_secs(r['handout_wait_in_failover_max_s'])})",
        "-",
        "each <= 20 % and <= 250 MB, p99 <= 100 ms, wave <= 1 s",
    )


if __name__ == "__main__":  # a quick look without bench.py's other rows
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print(
        json.dumps(
            bench_replicas(
                n,
                float(os.environ.get("BENCH_STEADY_SECONDS", "10")),
                max(2, n // 1000),
                bench.SimProcess,
                bench.serve_latency_buckets,
                bench.histogram_quantile,
            ),
            indent=2,
        )
    )
