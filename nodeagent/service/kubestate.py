"""kube-state-metrics-compatible series computed from `status -o json` documents, so existing Grafana
dashboards and Prometheus alerts (kubernetes-mixin) work unchanged on a node and on `serve`.

Names and labels are kube-state-metrics' (docs/metrics/workload/{daemonset,pod}-metrics.md):

    kube_daemonset_status_{desired,current}_number_scheduled, _number_{ready,available,misscheduled},
    kube_daemonset_status_updated_number_scheduled                    {namespace, daemonset}
    kube_pod_container_status_restarts_total                          {namespace, pod, uid, container}
    kube_pod_container_status_waiting_reason                          {namespace, pod, uid, container, reason}
    kube_pod_status_ready                                             {namespace, pod, uid, condition}
    kube_node_status_condition (serve only)                           {node, condition, status}

The agent sets its last status each pass (`set_status`); `serve` renders the fleet's with
`fleet_exposition` (DaemonSet counters summed over nodes as fleet.daemonsets_json sums them; a pod on a
NotReady node counts as not ready, as the node controller marks it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodeagent.agent import identity

DAEMONSET_SERIES = {
    "kube_daemonset_status_desired_number_scheduled": (
        "desiredNumberScheduled",
        "The number of nodes that should be running the daemon pod.",
    ),
    "kube_daemonset_status_current_number_scheduled": (
        "currentNumberScheduled",
        "The number of nodes running at least one daemon pod and are supposed to.",
    ),
    "kube_daemonset_status_number_ready": (
        "numberReady",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod "
        "running and ready.",
    ),
    "kube_daemonset_status_number_available": (
        "numberAvailable",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod "
        "running and available",
    ),
    "kube_daemonset_status_updated_number_scheduled": (
        "updatedNumberScheduled",
        "The total number of nodes that are running updated daemon pod",
    ),
    "kube_daemonset_status_number_misscheduled": (
        "numberMisscheduled",
        "The number of nodes running a daemon pod but are not supposed to.",
    ),
}
RESTARTS = "kube_pod_container_status_restarts_total"
WAITING_REASON = "kube_pod_container_status_waiting_reason"
POD_READY = "kube_pod_status_ready"
NODE_CONDITION = "kube_node_status_condition"
NAMES = (*DAEMONSET_SERIES, RESTARTS, WAITING_REASON, POD_READY, NODE_CONDITION)


def _pods(status: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(uid, pod) for every pod of a status document; the uid as the agent derives it from the owner."""
    node = str(status.get("node") or "")
    for d in status.get("daemonSets") or []:
        owner = identity.owner_daemonset(str(d.get("namespace", "")), str(d.get("name", "")))
        for p in d.get("pods") or []:
            yield identity.pod_uid(owner, str(p.get("name", ""))), p
    for p in status.get("staticPods") or []:
        name = str(p.get("name", ""))
        manifest = name[: -len(node) - 1] if node and name.endswith("-" + node) else name
        yield identity.pod_uid(identity.owner_pod(str(p.get("namespace", "")), manifest), name), p
    for p in status.get("orphanedPods") or []:
        yield "", p


def families(
    statuses: Iterable[tuple[Mapping[str, Any], bool]],
    daemonsets: Iterable[Mapping[str, Any]] | None = None,
) -> list[Metric]:
    """The series for these (status document, node ready) pairs. `daemonsets` overrides the DaemonSet
    counters (serve passes its fleet sums); by default they are summed from the documents."""
    statuses = list(statuses)
    if daemonsets is None:
        sums: dict[tuple[str, str], dict[str, int]] = {}
        for status, _ in statuses:
            for d in status.get("daemonSets") or []:
                total = sums.setdefault((str(d.get("namespace", "")), str(d.get("name", ""))), {})
                for field, _help in DAEMONSET_SERIES.values():
                    total[field] = total.get(field, 0) + int(d.get(field, 0) or 0)
        daemonsets = [{"namespace": ns, "name": n, **v} for (ns, n), v in sorted(sums.items())]
    out: list[Metric] = []
    for name, (field, help_text) in DAEMONSET_SERIES.items():
        g = GaugeMetricFamily(name, help_text, labels=["namespace", "daemonset"])
        for d in daemonsets:
            g.add_metric([str(d["namespace"]), str(d["name"])], float(d.get(field, 0) or 0))
        out.append(g)
    restarts = CounterMetricFamily(
        RESTARTS,
        "The number of container restarts per container.",
        labels=["namespace", "pod", "uid", "container"],
    )
    waiting = GaugeMetricFamily(
        WAITING_REASON,
        "Describes the reason the container is currently in waiting state.",
        labels=["namespace", "pod", "uid", "container", "reason"],
    )
    ready = GaugeMetricFamily(
        POD_READY,
        "Describes whether the pod is ready to serve requests.",
        labels=["namespace", "pod", "uid", "condition"],
    )
    seen: set[tuple[str, str]] = set()
    for status, node_ready in statuses:
        for uid, p in _pods(status):
            ns, pod = str(p.get("namespace", "")), str(p.get("name", ""))
            if (ns, pod) in seen:
                continue
            seen.add((ns, pod))
            for c in p.get("containers") or []:
                cname = str(c.get("name", ""))
                restarts.add_metric([ns, pod, uid, cname], float(c.get("restartCount", 0) or 0))
                if c.get("state") == "waiting" and c.get("reason"):
                    waiting.add_metric([ns, pod, uid, cname, str(c["reason"])], 1.0)
            is_ready = bool(p.get("ready")) and node_ready
            state = "true" if is_ready else "false" if node_ready else "unknown"
            for condition in ("true", "false", "unknown"):
                ready.add_metric([ns, pod, uid, condition], 1.0 if condition == state else 0.0)
    out += [restarts, waiting, ready]
    return out


def node_conditions(nodes: Iterable[Mapping[str, Any]]) -> Metric:
    """kube_node_status_condition{condition="Ready"} for serve's nodes (reported within the grace)."""
    g = GaugeMetricFamily(
        NODE_CONDITION, "The condition of a cluster node.", labels=["node", "condition", "status"]
    )
    for n in nodes:
        state = "true" if n.get("ready") else "unknown"  # a silent node: the node controller's Unknown
        for status in ("true", "false", "unknown"):
            g.add_metric([str(n.get("name", "")), "Ready", status], 1.0 if status == state else 0.0)
    return g


class _Static(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics)


class _NodeState(Collector):
    """The agent's series, from the last status document it was given (none before the first pass)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: Mapping[str, Any] | None = None

    def set(self, status: Mapping[str, Any]) -> None:
        with self._lock:
            self._status = status

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            status = self._status
        return families([(status, True)]) if status is not None else []


class _WithoutKubeState(Collector):
    """The process registry without kube_* families (serve replaces them with the fleet's)."""

    def collect(self) -> Iterable[Metric]:
        return [m for m in prometheus_client.REGISTRY.collect() if not m.name.startswith("kube_")]


_NODE = _NodeState()
_registered = False
_register_lock = threading.Lock()


def set_status(status: Mapping[str, Any]) -> None:
    """The agent's call each pass, with the `status -o json` document; its /metrics shows the series."""
    global _registered
    with _register_lock:
        if not _registered:
            prometheus_client.REGISTRY.register(_NODE)
            _registered = True
    _NODE.set(status)


def fleet_exposition(
    statuses: Iterable[tuple[Mapping[str, Any], bool]],
    daemonsets: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
) -> bytes:
    """serve's /metrics: the process's own metrics, then the fleet's kube-state series."""
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(_WithoutKubeState())
    registry.register(_Static([*families(statuses, daemonsets), node_conditions(nodes)]))
    return prometheus_client.generate_latest(registry)
