"""The operator commands' pure parts: which container `logs` reads, durations, --for, the events table
and its watch, and the in-memory runtime's logs."""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent import runtime as rt
from nodeagent import settings
from nodeagent.agent import agent, describe, events, identity, plan
from nodeagent.cli import ops
from nodeagent.runtime import memory
from tests.support.planning import DESIRED, NOW, container_for, sandbox_for

NS, POD = DESIRED.namespace, DESIRED.name


def _role(c: rt.ObservedContainer, role: str) -> rt.ObservedContainer:
    return replace(c, labels={**c.labels, identity.LABEL_ROLE: role})


def test_logs_reads_the_current_attempt_and_previous_reads_the_last_dead_one() -> None:
    dead0 = container_for(DESIRED, state="exited", exit_code=3, attempt=0, finished=NOW - 60)
    dead1 = container_for(DESIRED, state="exited", exit_code=3, attempt=1, finished=NOW - 30)
    running = container_for(DESIRED, attempt=2)
    observed = [running, dead1, dead0, sandbox_for(DESIRED)]
    assert ops.log_target(observed, NS, POD, None, False) is running
    assert ops.log_target(observed, NS, POD, None, True) is dead1
    assert ops.log_target(observed, NS, POD, "main", True) is dead1


def test_a_crashed_container_waiting_for_its_restart_is_its_own_previous() -> None:
    """The kubelet's lastState of a CrashLoopBackOff container is the crash that is waited on."""
    crashed = container_for(DESIRED, state="exited", exit_code=1, attempt=4, finished=NOW - 5)
    older = container_for(DESIRED, state="exited", exit_code=1, attempt=3, finished=NOW - 50)
    assert ops.log_target([older, crashed], NS, POD, None, True) is crashed
    assert ops.log_target([older, crashed], NS, POD, None, False) is crashed


@pytest.mark.parametrize(
    ("container", "previous", "message"),
    [
        (
            None,
            False,
            f"a container name must be specified for pod {POD}, choose one of: [main side] "
            "or one of the init containers: [setup]",
        ),
        ("nope", False, f"container nope is not valid for pod {POD}"),
        ("side", True, f'previous terminated container "side" in pod "{POD}" not found'),
    ],
)
def test_logs_errors_are_kubectls(container: str | None, previous: bool, message: str) -> None:
    observed = [
        container_for(DESIRED, "main"),
        container_for(DESIRED, "side"),
        _role(container_for(DESIRED, "setup", state="exited", exit_code=0), identity.ROLE_INIT),
    ]
    with pytest.raises(ops.OpsError) as exc:
        ops.log_target(observed, NS, POD, container, previous)
    assert str(exc.value) == message


def test_logs_of_an_unknown_pod() -> None:
    with pytest.raises(ops.OpsError, match='pods "x" not found'):
        ops.log_target([sandbox_for(DESIRED)], NS, "x", None, False)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5s", 5), ("2m", 120), ("1h30m", 5400), ("1.5s", 1.5), ("300ms", 0.3)]
)
def test_since_takes_go_durations(text: str, seconds: float) -> None:
    assert ops.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5d", "m5", "5s ", "-5s"])
def test_bad_durations_are_refused_like_kubectl(text: str) -> None:
    with pytest.raises(ops.OpsError, match="invalid duration"):
        ops.parse_duration(text)


def test_for_takes_kind_namespace_name() -> None:
    assert ops.parse_for("pod/ns/p") == ("Pod", "ns", "p")
    assert ops.parse_for("ds/ns/d") == ("DaemonSet", "ns", "d")
    assert ops.parse_for(None) is None
    for bad in ("pod/p", "svc/ns/x", "pod//x"):
        with pytest.raises(ops.OpsError, match="KIND/NAMESPACE/NAME"):
            ops.parse_for(bad)


def _ev(reason: str, t: float, count: int = 1, name: str = POD) -> events.Event:
    ref = events.ObjectRef("Pod", NS, name, "spec.containers{main}")
    return events.Event(events.NORMAL, reason, f"{reason} it", ref, count, t - 100 * (count > 1), t, "node-a")


def test_last_seen_shows_repeats_as_kubectl_does() -> None:
    assert ops.last_seen(_ev("BackOff", NOW - 5, count=4), NOW) == "5s (x4 over 105s)"
    assert ops.last_seen(_ev("Started", NOW - 5), NOW) == "5s"


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"watch": False, "for_object": None, "output": "table"}
    base.update(kw)
    return argparse.Namespace(**base)


def test_events_table_json_and_for(tmp_path: Path) -> None:
    events.record(str(tmp_path), [_ev("Created", NOW - 10), _ev("Started", NOW - 9, name="other")], NOW)
    out = io.StringIO()
    ops.cmd_events(str(tmp_path), _args(), out, clock=lambda: NOW)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert lines[1].split() == [NS, "10s", "Normal", "Created", f"pod/{POD}", "Created", "it"]
    out = io.StringIO()
    ops.cmd_events(str(tmp_path), _args(for_object=f"pod/{NS}/other", output="json"), out, clock=lambda: NOW)
    assert [i["reason"] for i in json.loads(out.getvalue())["items"]] == ["Started"]
    empty = io.StringIO()
    ops.cmd_events(str(tmp_path / "none"), _args(), empty, clock=lambda: NOW)
    assert empty.getvalue() == "No events found.\n"


def test_watch_prints_new_and_repeated_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events.record(str(tmp_path), [_ev("Created", NOW - 10)], NOW)
    monkeypatch.setattr(ops, "WATCH_INTERVAL", 0.0)
    rounds = iter([True, True, False])
    writes = iter([[_ev("BackOff", NOW)], [_ev("BackOff", NOW + 1)]])

    def more() -> bool:
        again = next(rounds)
        if again:
            events.record(str(tmp_path), next(writes), NOW + 1)
        return again

    out = io.StringIO()
    ops.cmd_events(
        str(tmp_path), _args(watch=True, output="json"), out, clock=lambda: NOW, keep_watching=more
    )
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["reason"], e["count"]) for e in got] == [("Created", 1), ("BackOff", 1), ("BackOff", 2)]


def test_memory_runtime_logs_tail_since_and_timestamps() -> None:
    clock = [NOW]
    m = memory.MemoryRuntime(images=["img"], clock=lambda: clock[0])
    cid = m.create(rt.ContainerCreate(name="c", image="img", labels={}))
    m.write_log(cid, b"a\nb\n")
    clock[0] += 10
    m.write_log(cid, b"c\n")
    assert b"".join(m.logs(cid)) == b"a\nb\nc\n"
    assert b"".join(m.logs(cid, tail=1)) == b"c\n"
    assert b"".join(m.logs(cid, tail=0)) == b""
    assert b"".join(m.logs(cid, since=NOW + 5)) == b"c\n"
    assert b"".join(m.logs(cid, tail=1, timestamps=True)).endswith(b"Z c\n")


def test_plan_keeps_what_logs_previous_reads() -> None:
    """The GC and `logs --previous` agree: the attempt the planner keeps is the one logs reads."""
    dead = [
        container_for(DESIRED, state="exited", exit_code=1, attempt=i, finished=NOW - 90 + i)
        for i in range(3)
    ]
    running = container_for(DESIRED, attempt=3)
    pods = plan.group_pods([*dead, running])
    removed = {c.id for c in plan.gc_stale(pods[(NS, POD)])}
    kept = [c for c in dead if c.id not in removed]
    assert kept == [ops.log_target([*dead, running], NS, POD, None, True)]


def _memory_agent(tmp_path: Path) -> tuple[agent.Agent, memory.MemoryRuntime]:

    static = tmp_path / "static"
    static.mkdir()
    (static / "web.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: ops}\n"
        "spec:\n  containers:\n  - {name: main, image: 'img:1', imagePullPolicy: Never,"
        " readinessProbe: {tcpSocket: {port: 80}}}\n"
    )
    raw = {"node": {"name": "n1"}, "sources": [], "staticPodPath": "static", "stateDir": "state"}
    cfg = settings.from_dict(raw, str(tmp_path))
    runtime = memory.MemoryRuntime(images=["img:1"], node_name="n1")
    a = agent.Agent(cfg, runtime, watch=False)
    a.relist()
    return a, runtime


def test_describe_a_static_pod_from_a_pass_and_its_events(tmp_path: Path) -> None:
    a, runtime = _memory_agent(tmp_path)
    first = a.reconcile()
    assert [o.ok for o in first.outcomes] == [True]
    [c] = runtime.list_managed()
    runtime.exit(c.id, 2)
    a.reconcile()  # restarts it: attempt 1 runs, attempt 0 is kept
    facts = ops.pod_facts(a, a.reconcile(dry_run=True), "ops", "web-n1")
    assert facts is not None and facts.observed is not None
    assert [plan.attempt_of(s) for s in facts.observed.stale] == [0]
    text = describe.describe_pod(facts, NOW)
    assert "Controlled By:    <none> (static pod)" in text
    assert "    Last State:     Terminated\n      Reason:       Error\n      Exit Code:    2\n" in text
    assert "    Restart Count:  1\n" in text
    assert "    Readiness:      tcp-socket :80 delay=0s timeout=1s period=10s #success=1 #failure=3\n" in text
    assert "Created container: main" in text and "Started container main" in text
    assert ops.pod_facts(a, a.reconcile(dry_run=True), "ops", "nope") is None
