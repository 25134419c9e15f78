"""The shared Prometheus metrics: names, labels, and what the helpers set."""

from __future__ import annotations

from nodeagent.service import metrics


def value(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_actions_are_counted_by_kind_and_result() -> None:
    before_ok = value("nodeagent_actions_total", {"kind": "create", "result": "ok"})
    before_failed = value("nodeagent_actions_total", {"kind": "create", "result": "failed"})
    metrics.record_actions([("create", True), ("create", False), ("create", True)])
    assert value("nodeagent_actions_total", {"kind": "create", "result": "ok"}) == before_ok + 2
    assert value("nodeagent_actions_total", {"kind": "create", "result": "failed"}) == before_failed + 1


def test_pod_phases_not_given_drop_to_zero() -> None:
    metrics.set_pods({"Running": 3, "Pending": 1})
    metrics.set_pods({"Running": 2})
    assert value("nodeagent_pods", {"phase": "Running"}) == 2
    assert value("nodeagent_pods", {"phase": "Pending"}) == 0


def test_exposition_has_every_metric_in_text_format() -> None:
    metrics.set_nodes(2, 1)
    with metrics.RECONCILE_SECONDS.time():
        pass
    text = metrics.exposition().decode()
    for name in (
        "nodeagent_reconcile_duration_seconds_bucket",
        "nodeagent_actions_total",
        "nodeagent_pods",
        'nodeagent_fleet_nodes{ready="true"} 2.0',
        'nodeagent_fleet_nodes{ready="false"} 1.0',
    ):
        assert name in text
    assert metrics.CONTENT_TYPE.startswith("text/plain")
