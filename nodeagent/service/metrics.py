"""Prometheus metrics shared by the agent and `nodeagent serve` (one process-wide registry).

The metric objects live here, not next to the code that updates them, so the agent's `/metrics`
endpoint and `serve`'s expose the same names and a test can read them back. Names follow Prometheus
conventions (`_seconds`, `_total`); label values are small closed sets (no pod or node names on
counters, which would grow without bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import prometheus_client

REGISTRY = prometheus_client.REGISTRY
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

RECONCILE_SECONDS = prometheus_client.Histogram(
    "nodeagent_reconcile_duration_seconds",
    "Time one reconcile pass took (observe, plan, execute).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ACTIONS = prometheus_client.Counter(
    "nodeagent_actions_total",
    "Actions the executor applied, by kind (create, start, remove, ...) and result (ok, failed).",
    ["kind", "result"],
)
SOURCE_FAILOVERS = prometheus_client.Counter(
    "nodeagent_source_failovers_total",
    "Moves of a source (or the status reporter, source=statusServer) to the next replica of its URL list.",
    ["source"],
)
SOURCE_FETCHES = prometheus_client.Counter(
    "nodeagent_source_fetches_total",
    "Remote source requests by source and result (ok, not_modified, error, invalid, cache).",
    ["source", "result"],
)
SOURCE_FETCH_SECONDS = prometheus_client.Histogram(
    "nodeagent_source_fetch_duration_seconds",
    "Latency of remote source requests; mode=watch includes the long-poll wait.",
    ["source", "mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SERVE_REQUEST_SECONDS = prometheus_client.Histogram(
    "nodeagent_serve_request_duration_seconds",
    "Time `serve` took to answer a request, from its parsed headers to its answer (held watches are "
    "not counted), by endpoint (report, bundle, other).",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
ROLLOUT_PASS_CPU_SECONDS = prometheus_client.Histogram(
    "nodeagent_serve_rollout_pass_cpu_seconds",
    "CPU time of each pass of `serve`'s rollout controller over every DaemonSet and node (its thread's "
    "CPU, not the wall time it waited for the interpreter): rate(_sum) against "
    "rate(process_cpu_seconds_total) is the controller's share of serve's CPU.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
PODS = prometheus_client.Gauge(
    "nodeagent_pods",
    "Pods on this node by phase (Pending, Running, Succeeded, Failed), as of the last pass.",
    ["phase"],
)
NODES = prometheus_client.Gauge(
    "nodeagent_fleet_nodes",
    "Nodes known to `nodeagent serve`, by readiness (true: reported within the grace period).",
    ["ready"],
)
STATUS_REPORTS = prometheus_client.Counter(
    "nodeagent_status_reports_total",
    "Node status reports sent to the status server, by result (ok, error).",
    ["result"],
)
WORKERS_BUSY = prometheus_client.Gauge(
    "nodeagent_workers_busy",
    "Owners (DaemonSets, static pods, orphaned pods) whose work is in flight on their worker.",
)
WORKERS_STUCK = prometheus_client.Gauge(
    "nodeagent_workers_stuck",
    "Owners whose work in flight is past its own deadline (nothing waits for it; see `status`).",
)

POD_PHASES = ("Pending", "Running", "Succeeded", "Failed")


def record_actions(outcomes: Iterable[tuple[str, bool]]) -> None:
    """Count applied actions given as (kind, ok) pairs."""
    for kind, ok in outcomes:
        ACTIONS.labels(kind=kind, result="ok" if ok else "failed").inc()


def set_pods(by_phase: Mapping[str, int]) -> None:
    """Set the pod gauge; phases not given are 0 (a gauge must not keep a vanished phase's count)."""
    for phase in {*POD_PHASES, *by_phase}:
        PODS.labels(phase=phase).set(by_phase.get(phase, 0))


def set_nodes(ready: int, not_ready: int) -> None:
    NODES.labels(ready="true").set(ready)
    NODES.labels(ready="false").set(not_ready)


def exposition() -> bytes:
    """The registry in Prometheus' text format (serve with `CONTENT_TYPE`)."""
    return prometheus_client.generate_latest(REGISTRY)
