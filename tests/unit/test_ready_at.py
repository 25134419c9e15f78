"""A reported pod's `readySince` (the node's clock) and `ready_at`, the moment serve's rollout
controller counts minReadySeconds from: the node's time, bounded by what serve itself saw."""

from __future__ import annotations

from typing import Any

import pytest

from nodeagent.agent import status
from nodeagent.fleet import view

T = 1_800_000_000.0


def doc(ready: bool, since: object = None, revision: str = "r2") -> dict[str, Any]:
    pod: dict[str, Any] = {"namespace": "default", "name": "web", "revision": revision, "ready": ready}
    if since is not None:
        pod["readySince"] = since
    return {
        "name": "n1",
        "status": {"daemonSets": [{"namespace": "default", "name": "web", "pods": [pod]}]},
    }


def pod_of(r: view.NodeReport) -> view.PodReport:
    return r.daemonsets[0].pods[0]


def test_ready_since_is_the_nodes_time_at_most_the_reports_arrival() -> None:
    p = pod_of(view.parse_report(doc(True, T - 3), "n1", T))
    assert (p.ready_since, p.ready_at) == (T - 3, T - 3)
    ahead = pod_of(view.parse_report(doc(True, T + 3600), "n1", T))  # a node clock an hour ahead
    assert (ahead.ready_since, ahead.ready_at) == (T + 3600, T)


def test_the_same_ready_since_keeps_its_first_estimate() -> None:
    first = view.parse_report(doc(True, T + 3600), "n1", T)
    again = view.parse_report(doc(True, T + 3600), "n1", T + 10, first)
    assert pod_of(again).ready_at == T  # not moved on with every report of a clock that runs ahead


def test_a_clock_behind_cannot_reach_before_the_report_that_showed_the_pod_not_ready() -> None:
    before = view.parse_report(doc(False), "n1", T)
    after = view.parse_report(doc(True, T - 3600), "n1", T + 2, before)  # a node clock an hour behind
    assert pod_of(after).ready_at == T
    fine = view.parse_report(doc(True, T + 1), "n1", T + 2, before)
    assert pod_of(fine).ready_at == T + 1
    other = view.parse_report(doc(True, T - 10, revision="r1"), "n1", T, None)
    new_pod = view.parse_report(doc(True, T - 3600, revision="r2"), "n1", T + 2, other)
    assert pod_of(new_pod).ready_at == T  # another revision's pod was ready: this one was not seen yet


def test_a_pod_not_ready_has_no_ready_time_and_an_older_agent_none_at_all() -> None:
    assert pod_of(view.parse_report(doc(False, T), "n1", T)).ready_at is None
    assert pod_of(view.parse_report(doc(True), "n1", T)).ready_at is None


@pytest.mark.parametrize("bad", ["yesterday", True, -1, 1e12, [T]])
def test_a_bad_ready_since_names_its_path(bad: object) -> None:
    with pytest.raises(
        view.ReportError, match=r"status\.daemonSets\[0\]\.pods\[0\]\.readySince: must be a time"
    ):
        view.parse_report(doc(True, bad), "n1", T)


def test_the_agent_reports_when_its_pod_became_ready() -> None:
    p = status.PodStatus(
        namespace="default",
        name="web",
        owner="DaemonSet/default/web",
        revision="r2",
        up_to_date=True,
        phase="Running",
        status="Running",
        ready=True,
        restart_count=0,
        started_at=T - 10,
        containers=(),
        ready_since=T - 4,
    )
    assert p.to_json()["readySince"] == T - 4
    back = view.parse_report({"name": "n1", "status": {"staticPods": [p.to_json()]}}, "n1", T)
    assert back.static_pods[0].ready_at == T - 4
