"""Events: merging as client-go's correlator does, the bounded store, and derivation from a pass."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent.agent import events, execute, plan, pulls
from nodeagent.k8s import model
from tests.support.planning import DESIRED, DS, NOW, container_for, make_ds, make_node

POD = events.ObjectRef("Pod", "kube-system", "agent-node-a", "spec.containers{main}")


def ev(reason: str = "BackOff", message: str = "m", t: float = NOW, **kw: object) -> events.Event:
    return events.Event(str(kw.get("type", events.WARNING)), reason, message, POD, 1, t, t, "node-a")


def test_a_repeat_bumps_count_and_last_timestamp_and_keeps_the_first() -> None:
    out = events.merge([ev(t=NOW)], [ev(t=NOW + 10)], NOW + 10)
    assert len(out) == 1
    assert (out[0].count, out[0].first_timestamp, out[0].last_timestamp) == (2, NOW, NOW + 10)


@pytest.mark.parametrize(
    ("other", "merged"),
    [
        (ev(message="other"), False),
        (ev(reason="Killing"), False),
        (ev(type=events.NORMAL), False),
        (replace(ev(), involved=replace(POD, field_path="spec.containers{side}")), False),
        (replace(ev(), source_host="node-b"), False),
        (ev(), True),
    ],
)
def test_only_identical_events_merge(other: events.Event, merged: bool) -> None:
    out = events.merge([ev()], [other], NOW)
    assert len(out) == (1 if merged else 2)


def test_the_tenth_distinct_message_is_combined_like_the_event_aggregator() -> None:
    first = [ev(message=f"m{i}", t=NOW + i) for i in range(9)]
    out = events.merge([], first, NOW + 9)
    out = events.merge(out, [ev(message="m9", t=NOW + 10), ev(message="m10", t=NOW + 11)], NOW + 11)
    combined = [e for e in out if e.message.startswith(events.COMBINED)]
    assert len(out) == 10 and len(combined) == 1
    assert combined[0].message == events.COMBINED + "m9" and combined[0].count == 2


def test_store_is_bounded_by_age_and_count() -> None:
    old = ev(message="old", t=NOW - events.MAX_AGE_SECONDS - 1)
    out = events.merge([old], [ev(message="new")], NOW)
    assert [e.message for e in out] == ["new"]
    many = [
        replace(ev(message=f"m{i}", t=NOW + i), involved=replace(POD, name=f"p{i}"))
        for i in range(events.MAX_EVENTS + 5)
    ]
    out = events.merge([], many, NOW + len(many))
    assert len(out) == events.MAX_EVENTS and out[0].message == "m5"  # the oldest dropped


def test_record_writes_atomically_and_another_reader_sees_kubernetes_shaped_json(tmp_path: Path) -> None:
    events.record(str(tmp_path), [ev()], NOW)
    events.record(str(tmp_path), [ev(t=NOW + 5)], NOW + 5)
    doc = json.loads((tmp_path / events.FILE).read_text())
    [item] = doc["items"]
    assert item["count"] == 2 and item["reason"] == "BackOff"
    assert item["involvedObject"] == {
        "kind": "Pod",
        "namespace": "kube-system",
        "name": "agent-node-a",
        "fieldPath": "spec.containers{main}",
    }
    assert item["firstTimestamp"].endswith("Z") and item["source"]["host"] == "node-a"
    assert events.load(str(tmp_path)) == [replace(ev(), count=2, last_timestamp=NOW + 5)]
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_concurrent_writers_lose_no_occurrence(tmp_path: Path) -> None:
    def write(name: str) -> None:
        for _ in range(20):
            events.record(str(tmp_path), [replace(ev(), involved=replace(POD, name=name))], NOW)

    threads = [threading.Thread(target=write, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.count for e in events.load(str(tmp_path))) == [20, 20, 20, 20]


def test_spam_filter_lets_a_burst_through_then_one_every_five_minutes(tmp_path: Path) -> None:
    """client-go's EventSourceObjectSpamFilter: 25 at once per source and object, then 1 per 300 s."""
    for i in range(30):
        events.record(str(tmp_path), [ev(message=f"m{i % 2}")], NOW)
    assert sum(e.count for e in events.load(str(tmp_path))) == 25
    events.record(str(tmp_path), [ev(message="m0", t=NOW + 200)], NOW + 200)
    assert sum(e.count for e in events.load(str(tmp_path))) == 25, "no token yet"
    events.record(str(tmp_path), [ev(message="m0", t=NOW + 301)], NOW + 301)
    assert sum(e.count for e in events.load(str(tmp_path))) == 26
    other = replace(ev(), involved=replace(POD, name="other"))
    events.record(str(tmp_path), [other], NOW + 302)  # another object has its own bucket
    assert [
        e.count for e in events.for_object(events.load(str(tmp_path)), "Pod", POD.namespace, "other")
    ] == [1]


def test_unreadable_store_is_empty_and_unwritable_state_dir_never_raises(tmp_path: Path) -> None:
    (tmp_path / events.FILE).write_text("{not json")
    assert events.load(str(tmp_path)) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert len(events.record(str(blocker / "sub"), [ev()], NOW)) == 1


# --- derivation ---------------------------------------------------------------------------------


def _action(verb: str, **kw: object) -> plan.Action:
    base: dict[str, object] = {
        "namespace": DESIRED.namespace,
        "pod": DESIRED.name,
        "reason": "r",
        "owner": DESIRED.owner,
        "container": "main",
        "desired": DESIRED,
    }
    base.update(kw)
    return plan.Action(verb=verb, **base)  # type: ignore[arg-type]


def _reasons(evs: list[events.Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.involved.text()) for e in evs]


def test_a_new_daemonset_pod_is_created_started_and_counted_on_the_daemonset() -> None:
    created = execute.Outcome(_action(plan.CREATE), True, pod_created=True)
    got = events.from_outcomes(
        [created, replace(created, action=_action(plan.CREATE, container="side"))], "n", NOW
    )
    assert _reasons(got)[:3] == [
        ("Normal", "Created", f"pod/{DESIRED.name}"),
        ("Normal", "Started", f"pod/{DESIRED.name}"),
        ("Normal", "SuccessfulCreate", "daemonset/agent"),
    ]
    assert got[0].involved.field_path == "spec.containers{main}"
    assert got[0].message == "Created container: main" and got[2].message == f"Created pod: {DESIRED.name}"
    assert [e.reason for e in got[3:]] == ["Created", "Started"], "one SuccessfulCreate a pod"
    added = execute.Outcome(_action(plan.CREATE, container="side"), True)  # to a pod that had containers
    assert [e.reason for e in events.from_outcomes([added], "n", NOW)] == ["Created", "Started"]


def test_a_restart_of_an_existing_pod_is_not_a_successful_create() -> None:
    old = container_for(DESIRED, state="exited", exit_code=1, finished=NOW - 1)
    o = execute.Outcome(_action(plan.RESTART, attempt=1, container_ids=(old.id,)), True)
    assert [e.reason for e in events.from_outcomes([o], "node-a", NOW)] == ["Created", "Started"]


def test_liveness_restart_kills_the_running_container() -> None:
    running = container_for(DESIRED)
    action = _action(plan.RESTART, attempt=1, container_ids=(running.id,))
    o = execute.Outcome(action, True, stopped=(execute.Stopped("main"),))
    got = events.from_outcomes([o], "node-a", NOW)
    assert [e.reason for e in got] == ["Created", "Started", "Killing"]
    assert "failed liveness probe" in got[2].message
    assert got[2].involved.field_path == "spec.containers{main}"
    crashed = execute.Outcome(action, True)  # the restart of an exited container stopped nothing
    assert [e.reason for e in events.from_outcomes([crashed], "node-a", NOW)] == [
        "Created",
        "Started",
    ]


def test_pull_failure_post_start_and_config_errors() -> None:
    outs = [
        execute.Outcome(_action(plan.CREATE), False, execute.ERR_IMAGE_PULL, "connection refused"),
        execute.Outcome(
            _action(plan.CREATE), False, execute.POST_START_HOOK_ERROR, "postStart hook failed: x"
        ),
        execute.Outcome(
            _action(plan.CREATE), False, execute.CREATE_CONTAINER_CONFIG_ERROR, 'secret "s" not found'
        ),
    ]
    got = events.from_outcomes(outs, "node-a", NOW)
    assert [(e.type, e.reason) for e in got] == [
        ("Normal", "Pulling"),
        ("Warning", "Failed"),
        ("Warning", "Failed"),
        ("Warning", "FailedPostStartHook"),
        ("Normal", "Killing"),
        ("Warning", "Failed"),
    ]
    assert got[0].message == 'Pulling image "busybox:1"'
    assert got[1].message == 'Failed to pull image "busybox:1": connection refused'
    assert got[2].message == "Error: ErrImagePull"
    assert got[5].message == 'Error: secret "s" not found'
    never = execute.Outcome(_action(plan.CREATE), False, execute.ERR_IMAGE_NEVER_PULL, "not present")
    assert [(e.reason, e.message) for e in events.from_outcomes([never], "n", NOW)] == [
        ("ErrImageNeverPull", "not present"),
        ("Failed", "Error: ErrImageNeverPull"),
    ]


def _with_volumes(*vols: model.Volume) -> plan.DesiredPod:
    spec = replace(DESIRED.template.spec, volumes=vols)
    return replace(DESIRED, template=replace(DESIRED.template, spec=spec))


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (
            model.Volume("h", model.HostPathVolumeSource("/srv/x", "File")),
            "hostPath type check failed: /srv/x is not a file",
        ),
        (
            model.Volume("h", model.HostPathVolumeSource("/srv/x", "Directory")),
            "hostPath /srv/x doesn't exist",
        ),
        (model.Volume("h", model.ConfigMapVolumeSource("cm")), 'configmap "cm" not found'),
        (model.Volume("h", model.SecretVolumeSource("s")), 'secret "s" not found'),
    ],
)
def test_volume_errors_are_failed_mount(volume: model.Volume, message: str) -> None:
    a = _action(plan.CREATE, desired=_with_volumes(volume))
    got = events.from_outcomes(
        [execute.Outcome(a, False, execute.CREATE_CONTAINER_CONFIG_ERROR, message)],
        "n",
        NOW,
    )
    [e] = got
    assert (e.type, e.reason) == ("Warning", "FailedMount")
    assert e.message == f'MountVolume.SetUp failed for volume "h" : {message}'
    assert e.involved.field_path == ""


def test_delete_kills_each_container_it_stopped_and_counts_on_the_daemonset() -> None:
    """The names come with the outcome: in `run` the pass that records them lists the engine after the
    containers are gone (observed is empty here)."""
    c = container_for(DESIRED)
    p = plan.group_pods([c])[(DESIRED.namespace, DESIRED.name)]
    stopped = (execute.Stopped("main"), execute.Stopped("side"), execute.Stopped("setup", init=True))
    o = execute.Outcome(plan.delete_action(p, "gone"), True, stopped=stopped)
    got = events.from_outcomes([o], "node-a", NOW)
    assert [(e.reason, e.message, e.involved.field_path) for e in got] == [
        ("Killing", "Stopping container main", "spec.containers{main}"),
        ("Killing", "Stopping container side", "spec.containers{side}"),
        ("Killing", "Stopping container setup", "spec.initContainers{setup}"),
        ("SuccessfulDelete", f"Deleted pod: {DESIRED.name}", ""),
    ]
    assert all(e.type == "Normal" for e in got)


def test_plan_backoff_and_failed_placement() -> None:
    crashed = container_for(DESIRED, state="exited", exit_code=1, attempt=3, step=3, finished=NOW - 5)
    other = make_ds("gpu", node_selector={"gpu": "yes"})
    p = plan.plan(
        plan.Inputs(
            node=make_node(),
            daemonsets=(plan.DaemonSetInput(DS), plan.DaemonSetInput(other)),
            static_pods=(),
            observed=(crashed,),
            now=NOW,
        )
    )
    got = events.from_plan(p, "node-a", NOW)
    assert _reasons(got) == [
        ("Warning", "BackOff", f"pod/{DESIRED.name}"),
        ("Warning", "FailedPlacement", "daemonset/gpu"),
    ]
    assert got[0].message == f"Back-off restarting failed container main in pod {DESIRED.name}_kube-system"
    assert got[1].message.startswith('failed to place pod on "node-a": ')


def test_unhealthy_from_probe_verdicts() -> None:
    c = container_for(DESIRED)
    health = {c.id: plan.Health(ready=False, message="Readiness probe failed: HTTP 500")}
    [e] = events.from_health(health, [c], "node-a", NOW)
    assert (e.type, e.reason, e.message) == ("Warning", "Unhealthy", "Readiness probe failed: HTTP 500")
    assert events.from_health({c.id: plan.Health(ready=True)}, [c], "node-a", NOW) == []


def test_fleet_events_newest_first_marked_with_their_node_and_bad_entries_dropped() -> None:
    a = ev(message="old", t=NOW).to_json()
    b = replace(ev(message="new", t=NOW + 5), source_host="").to_json()
    got = events.fleet_events([("node-a", [a, {"count": "many"}]), ("node-b", [b])])
    assert [(e["message"], e["source"]["host"]) for e in got] == [("new", "node-b"), ("old", "node-a")]


def test_node_report_events_are_checked_and_bounded() -> None:
    from nodeagent.fleet import view as fleet

    doc = {"name": "n", "status": {}, "events": [ev().to_json()] * (fleet.MAX_REPORT_EVENTS + 1)}
    assert len(fleet.parse_report(doc, "n", NOW).events) == fleet.MAX_REPORT_EVENTS
    with pytest.raises(fleet.ReportError, match=r"events\[0\]: must be an object"):
        fleet.parse_report({**doc, "events": ["x"]}, "n", NOW)
    bad = {**ev().to_json(), "count": "7"}
    with pytest.raises(fleet.ReportError, match=r"events\[0\]\.count: must be an integer"):
        fleet.parse_report({**doc, "events": [bad]}, "n", NOW)
    # only the checked fields are kept; a line break in a message becomes a space
    extra = {**ev().to_json(), "message": "a\nb", "secret": "x" * 10}
    kept = fleet.parse_report({**doc, "events": [extra]}, "n", NOW).events[0]
    assert kept["message"] == "a b" and "secret" not in kept


# --- Pulled and FailedPreStopHook: what the puller and the executor carry out -----------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.5239, "523ms"),
        (1.2, "1.2s"),
        (1.0, "1s"),
        (3.4567, "3.456s"),
        (123.004, "2m3.004s"),
        (3600.0, "1h0m0s"),
    ],
)
def test_durations_print_as_gos_time_duration_truncated_to_milliseconds(seconds: float, text: str) -> None:
    assert events.go_duration(seconds) == text


def test_an_image_already_present_is_pulled_before_created_and_started() -> None:
    got = pulls.Ensured("busybox:1", "IfNotPresent", present=True)
    o = execute.Outcome(_action(plan.CREATE), True, image=got)
    evs = events.from_outcomes([o], "node-a", NOW)
    assert [(e.type, e.reason) for e in evs][:3] == [
        ("Normal", "Pulled"),
        ("Normal", "Created"),
        ("Normal", "Started"),
    ]
    assert evs[0].message == 'Container image "busybox:1" already present on machine'
    assert evs[0].involved.field_path == "spec.containers{main}"


def test_a_successful_pull_is_pulling_then_pulled_with_its_two_times() -> None:
    got = pulls.Ensured("busybox:1", "Always", pulled=True, pull_seconds=1.2, wait_seconds=3.4567)
    o = execute.Outcome(_action(plan.CREATE), True, image=got)
    evs = events.from_outcomes([o], "node-a", NOW)
    assert [(e.reason, e.message) for e in evs] == [
        ("Pulling", 'Pulling image "busybox:1"'),
        ("Pulled", 'Successfully pulled image "busybox:1" in 1.2s (3.456s including waiting)'),
        ("Created", "Created container: main"),
        ("Started", "Started container main"),
    ]


def test_a_failed_pull_with_its_image_says_pulling_failed_once() -> None:
    got = pulls.Ensured(
        "busybox:1", "IfNotPresent", failure=pulls.PullFailure(execute.ERR_IMAGE_PULL, "refused")
    )
    o = execute.Outcome(_action(plan.CREATE), False, execute.ERR_IMAGE_PULL, "refused", image=got)
    evs = events.from_outcomes([o], "node-a", NOW)
    assert [(e.type, e.reason, e.message) for e in evs] == [
        ("Normal", "Pulling", 'Pulling image "busybox:1"'),
        ("Warning", "Failed", 'Failed to pull image "busybox:1": refused'),
        ("Warning", "Failed", "Error: ErrImagePull"),
    ]


def test_a_failed_pre_stop_hook_is_a_warning_on_its_container_and_repeats_merge(tmp_path: Path) -> None:
    running = container_for(DESIRED)
    failure = execute.HookFailure(execute.PRE_STOP, "main", "Exec lifecycle hook ([false]) ... failed")
    delete = _action(plan.DELETE, container="", desired=None, container_ids=(running.id,))
    o = execute.Outcome(delete, True, hooks_failed=(failure,), stopped=(execute.Stopped("main"),))
    evs = events.from_outcomes([o], "node-a", NOW)
    assert _reasons(evs) == [
        ("Normal", "Killing", f"pod/{DESIRED.name}"),
        ("Normal", "SuccessfulDelete", "daemonset/agent"),
        ("Warning", "FailedPreStopHook", f"pod/{DESIRED.name}"),
    ]
    assert evs[2].message == failure.message and evs[2].involved.field_path == "spec.containers{main}"
    events.record(str(tmp_path), evs, NOW)
    events.record(str(tmp_path), events.from_outcomes([o], "node-a", NOW + 5), NOW + 5)
    [stored] = [e for e in events.load(str(tmp_path)) if e.reason == "FailedPreStopHook"]
    assert (stored.count, stored.first_timestamp, stored.last_timestamp) == (2, NOW, NOW + 5)


def test_a_liveness_restart_with_a_failed_pre_stop_hook() -> None:
    running = container_for(DESIRED)
    failure = execute.HookFailure(execute.PRE_STOP, "main", "m")
    o = execute.Outcome(
        _action(plan.RESTART, attempt=1, container_ids=(running.id,)),
        True,
        hooks_failed=(failure,),
        stopped=(execute.Stopped("main"),),
    )
    got = events.from_outcomes([o], "node-a", NOW)
    assert [e.reason for e in got] == ["Created", "Started", "Killing", "FailedPreStopHook"]


def test_a_failed_post_start_hook_event_carries_the_hooks_message() -> None:
    failure = execute.HookFailure(execute.POST_START, "main", "Exec lifecycle hook ([false]) ... failed")
    o = execute.Outcome(
        _action(plan.CREATE),
        False,
        execute.POST_START_HOOK_ERROR,
        "postStart hook failed: x",
        hooks_failed=(failure,),
    )
    [hook, _killing] = events.from_outcomes([o], "node-a", NOW)
    assert (hook.reason, hook.message) == ("FailedPostStartHook", failure.message)


def test_a_quiet_pass_reads_no_file_and_a_reader_parses_each_write_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle agent's pass must not read its event store, and the reporter (which reads it for every
    report) parses it again only after a write."""
    events.record(str(tmp_path), [ev()], NOW)
    parsed: list[str] = []
    real = events._parse

    def counting(file: str) -> tuple[list[events.Event], events.Spam]:
        parsed.append(file)
        return real(file)

    monkeypatch.setattr(events, "_parse", counting)
    quiet = plan.Plan(daemonsets=(), static_pods=(), other_actions=(), waiting=(), wake_at=None)
    events.record_pass(str(tmp_path), quiet, [], [], {}, "n", NOW)
    assert parsed == []
    for i in range(3):
        events.record(str(tmp_path), [ev(t=NOW + i + 1)], NOW + i + 1)
        before = len(parsed)
        assert [e.count for e in events.load(str(tmp_path))] == [i + 2]
        assert [e.count for e in events.load(str(tmp_path))] == [i + 2]
        assert len(parsed) - before <= 1
