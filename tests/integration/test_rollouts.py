"""Fleet rollouts end to end (issue 13): a real `nodeagent serve`, four `nodeagent run` agents, one engine.

The fleet (tests/support/fleet.py) is started once for the module; every test publishes a DaemonSet of
its own in a namespace of its own (a readiness probe, minReadySeconds 2) and withdraws it at the end.
The rollout is judged from the engine: a sampler records every ~0.2 s which pod of the DaemonSet runs on
which node. Assertions are about order, overlap and counts, not wall-clock limits (two shared cores).
The tests that kill an agent or the serve come last and start them again when they end.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import http
from tests.support.engine import SESSION_ID
from tests.support.fleet import Fleet, Sampler, daemonset
from tests.support.slowregistry import SlowRegistry
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

GRACE = 12.0  # --grace of the serve: above the agents' 10 s status heartbeat
NODE_LABELS = (
    {"zone": "a"},
    {"zone": "b"},
    {"zone": "a", "ring": "canary"},  # not the first node by name: the canary test shows it goes first
    {"zone": "b"},
)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    docker_runtime: docker_rt.DockerRuntime,
    test_image: str,
) -> Iterator[Fleet]:
    f = Fleet(
        root=tmp_path_factory.mktemp("rollouts"),
        runtime=docker_runtime,
        prefix=f"ro-{SESSION_ID}",
        node_labels=NODE_LABELS,
        image=test_image,
        grace=GRACE,
    )
    try:
        yield f.start()
    finally:
        f.close()


@pytest.fixture
def fresh(fleet: Fleet) -> Iterator[Fleet]:
    """The module's fleet with the serve and every agent running (again, after a test that killed one)."""
    fleet.ensure_running()
    yield fleet
    fleet.ensure_running()


_count = [0]


def namespace(tag: str) -> str:
    _count[0] += 1
    return f"ro-{SESSION_ID}-{tag}{_count[0]}"


def publish(fleet: Fleet, name: str, ns: str, image: str = "", **kw: Any) -> None:
    """Publish a DaemonSet; a change to a published one returns once the serve has read it (a new
    update revision), so what follows judges the new rollout, not the finished previous one."""
    ref = f"{ns}/{name}"
    try:
        before = fleet.rollout(ref)["updateRevision"]
    except http.FetchError:  # not published yet
        before = None
    fleet.put(daemonset(name, ns, image or fleet.image, **kw))
    if before is not None:
        wait_for(
            lambda: fleet.rollout(ref)["updateRevision"] != before,
            what=f"serve read {ref}'s change",
            timeout=60,
        )


@contextlib.contextmanager
def published(fleet: Fleet, name: str, ns: str, **kw: Any) -> Iterator[str]:
    """Publish revision 1, wait until it runs on every node; yields its pod name; withdraws it after."""
    publish(fleet, name, ns, **kw)
    try:
        yield fleet.wait_rolled_out(ns, name)
    finally:
        fleet.withdraw(ns, name)


def updated(fleet: Fleet, ref: str) -> list[str]:
    """The nodes the serve assigns the update revision now."""
    doc = fleet.rollout(ref)
    return [n["name"] for n in doc["nodes"] if int(n["revision"]) == int(doc["updateRevision"])]


def new_count(fleet: Fleet, ref: str) -> int:
    return len(updated(fleet, ref))


# --- budgets ---------------------------------------------------------------------------------------------


def test_max_unavailable_one_updates_the_nodes_one_after_another(fresh: Fleet) -> None:
    ns = namespace("one")
    with published(fresh, "web", ns) as old:
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2")
            status = fresh.cli("status", f"{ns}/web", "--timeout", "150")
            new = fresh.wait_rolled_out(ns, "web")
        assert status.returncode == 0, status.stdout + status.stderr + fresh.log_tail()
        assert f'daemon set "{ns}/web" successfully rolled out' in status.stdout
        assert "new pods have been updated" in status.stdout
        assert new != old
        assert s.most_without() <= 1, s.dump()  # never two nodes without a running pod
        first = s.first_seen(new)
        assert set(first) == set(fresh.nodes)
        order = sorted(fresh.nodes, key=lambda n: first[n])
        last_old = s.last_seen(old)
        for a, b in itertools.pairwise(order):
            # b still ran its old pod when a's new one was up: b's turn came after a's
            assert last_old[b] >= first[a], s.dump()
            # and a's new pod had to be available (minReadySeconds 2) before b's turn
            assert first[b] - first[a] >= 2.0, s.dump()
        history = fresh.cli("history", f"{ns}/web")
        assert history.returncode == 0 and "REVISION" in history.stdout, history.stdout + history.stderr


def test_a_percentage_is_rounded_up_and_two_nodes_go_at_once(fresh: Fleet) -> None:
    ns = namespace("pct")
    strategy = {"maxUnavailable": "30%"}  # 30 % of 4 = 1.2, rounded up to 2, as Kubernetes does
    with published(fresh, "web", ns, strategy=strategy) as old:
        plan = fresh.api(f"/api/rollouts/{ns}/web/plan")
        assert [len(w) for w in plan["waves"]] == [2, 2], plan
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2", strategy=strategy)
            new = fresh.wait_rolled_out(ns, "web")
        assert new != old
        assert s.most_without() == 2, s.dump()  # two at a time, never three
        first = s.first_seen(new)
        order = sorted(fresh.nodes, key=lambda n: first[n])
        last_old = s.last_seen(old)
        # the second pair waited for the first: their old pods ran until a first-pair pod was new
        assert min(last_old[n] for n in order[2:]) >= min(first[n] for n in order[:2]), s.dump()


def test_max_surge_starts_the_new_pod_beside_the_old_one_one_node_at_a_time(fresh: Fleet) -> None:
    ns = namespace("surge")
    strategy = {"maxSurge": 1, "maxUnavailable": 0}
    with published(fresh, "web", ns, strategy=strategy) as old:
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2", strategy=strategy)
            new = fresh.wait_rolled_out(ns, "web")
        assert new != old
        assert s.most_without() == 0, s.dump()  # every node runs a pod all the time
        doubled = {n for x in s.samples for n, p in x.pods.items() if len(p) == 2}
        assert doubled == set(fresh.nodes), s.dump()  # every node surged: old and new side by side
        first = s.first_seen(new)
        order = sorted(fresh.nodes, key=lambda n: first[n])
        for a, b in itertools.pairwise(order):
            # one surge pod at a time: b's started only once a's had been available (minReadySeconds 2);
            # a's old pod may still be terminating then, as in Kubernetes
            assert first[b] - first[a] >= 2.0, s.dump()


# --- failures, undo, auto-rollback -----------------------------------------------------------------------


def test_a_crashing_revision_stops_after_the_first_node_and_undo_brings_it_back(fresh: Fleet) -> None:
    ns = namespace("crash")
    ref = f"{ns}/web"
    with published(fresh, "web", ns) as old:
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2", command="echo broken; exit 1")
            wait_for(
                lambda: new_count(fresh, ref) >= 1, what="the first node is handed revision 2", timeout=60
            )
            time.sleep(10)  # several minReadySeconds and resyncs: room for the rollout to (wrongly) go on
            assert new_count(fresh, ref) == 1, fresh.rollout(ref)
            status = fresh.cli("status", ref, "--timeout", "3")
            assert status.returncode == 1, status.stdout + status.stderr
            running_old = {n for n, p in fresh.running_pods(ns, "web").items() if old in p}
            assert len(running_old) == 3, s.dump()  # the other three nodes never stopped their pod

            undo = fresh.cli("undo", ref)
            assert undo.returncode == 0, undo.stdout + undo.stderr
            assert "daemonset.apps/web rolled back" in undo.stdout
            back = fresh.wait_rolled_out(ns, "web")
        assert back == old  # revision 1's template again: the same pod name (hash) on every node
        assert s.most_without() <= 1, s.dump()
        listed = {
            d["name"]: d for d in fresh.api("/api/daemonsets")["daemonSets"] if d.get("namespace") == ns
        }
        assert listed["web"]["servedDiffersFromFile"] is True, listed


def test_auto_rollback_after_the_progress_deadline_puts_every_node_on_the_previous_revision(
    fresh: Fleet,
) -> None:
    ns = namespace("auto")
    ref = f"{ns}/web"
    annotations = {"nodeagent.io/progress-deadline-seconds": "6", "nodeagent.io/auto-rollback": "true"}
    with published(fresh, "web", ns, annotations=annotations) as old:
        before = fresh.rollout(ref)["currentRevision"]
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2", command="exit 1", annotations=annotations)
            status = fresh.cli("status", ref, "--timeout", "120")
            back = fresh.wait_rolled_out(ns, "web", phase="RolledBack")
        assert status.returncode == 1, status.stdout + status.stderr
        assert back == old
        doc = fresh.rollout(ref)
        assert doc["phase"] == "RolledBack" and doc["currentRevision"] == before, doc
        assert {int(n["revision"]) for n in doc["nodes"]} == {int(before)}, doc
        touched = {n for x in s.samples for n, p in x.pods.items() if p - {old}}
        assert len(touched) <= 1, s.dump()  # no second node ever ran the bad revision
        # only the first node was handed it (its crashing pod may live less than a sample's interval)
        assert doc["blastRadius"]["exposedNodes"] == 1, doc
        time.sleep(4)  # the failed revision is not handed out again while the file is unchanged
        assert {int(n["revision"]) for n in fresh.rollout(ref)["nodes"]} == {int(before)}


def test_the_canary_nodes_go_first_and_gate_the_rest(fresh: Fleet) -> None:
    ns = namespace("canary")
    strategy = {"maxUnavailable": "100%"}  # the budget alone would let every node go at once
    annotations = {"nodeagent.io/canary": "ring=canary"}
    canary = next(m.name for m in fresh.members.values() if m.labels.get("ring") == "canary")
    with published(fresh, "web", ns, strategy=strategy, annotations=annotations) as old:
        plan = fresh.api(f"/api/rollouts/{ns}/web/plan")
        assert plan["waves"][0] == [canary], plan
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2", strategy=strategy, annotations=annotations)
            new = fresh.wait_rolled_out(ns, "web")
        first = s.first_seen(new)
        last_old = s.last_seen(old)
        others = [n for n in fresh.nodes if n != canary]
        assert all(first[canary] < first[n] for n in others), s.dump()
        # every other node kept its old pod until the canary's new pod had run minReadySeconds
        assert all(last_old[n] >= first[canary] + 1.5 for n in others), s.dump()


def test_a_pause_holds_no_node_receives_the_new_revision_after_it_returned(fresh: Fleet) -> None:
    ns = namespace("pause")
    ref = f"{ns}/web"
    with published(fresh, "web", ns) as old:
        publish(fresh, "web", ns, version="2")
        wait_for(lambda: new_count(fresh, ref) >= 1, what="the rollout started", timeout=60)
        paused = fresh.cli("pause", ref)
        assert paused.returncode == 0 and "daemonset.apps/web paused" in paused.stdout, paused.stderr
        doc = fresh.rollout(ref)
        holding = {n["name"] for n in doc["nodes"] if int(n["revision"]) == int(doc["updateRevision"])}
        assert doc["phase"] == "Paused" and 1 <= len(holding) < 4, doc
        with Sampler(fresh, ns, "web") as s:
            time.sleep(10)  # several turns' worth of time
        doc = fresh.rollout(ref)
        assert {
            n["name"] for n in doc["nodes"] if int(n["revision"]) == int(doc["updateRevision"])
        } == holding
        assert doc["phase"] == "Paused", doc
        moved = {n for x in s.samples for n, p in x.pods.items() if p and old not in p}
        assert moved <= holding, s.dump()
        assert {n for n, p in s.samples[-1].pods.items() if old in p} >= set(fresh.nodes) - holding
        resumed = fresh.cli("resume", ref)
        assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
        assert fresh.wait_rolled_out(ns, "web") != old


def test_the_old_pod_keeps_running_while_the_new_image_is_pulled(fresh: Fleet) -> None:
    ns = namespace("pull")
    ref = f"{ns}/web"
    registry = SlowRegistry(layer_size=3_000_000, delay=0.1)  # ~5 s of download
    image = f"{registry.address}/slow:{SESSION_ID}"
    client = docker.from_env()
    try:
        with published(fresh, "web", ns) as old:
            with Sampler(fresh, ns, "web") as s:
                publish(fresh, "web", ns, image, version="2", pull_policy="IfNotPresent")
                wait_for(
                    lambda: new_count(fresh, ref) >= 1, what="the first node is handed revision 2", timeout=60
                )
                assigned_at = time.monotonic()
                (node,) = updated(fresh, ref)
                wait_for(lambda: fresh.runtime.image_present(image), timeout=90, what="the image is pulled")
                pulled_at = time.monotonic()
                wait_for(lambda: old not in fresh.running_pods(ns, "web")[node], timeout=60)
            assert pulled_at - assigned_at > 1.0  # the pull took a while after the node's turn came
            during = [x for x in s.samples if assigned_at <= x.at <= pulled_at - 0.3]
            assert during and all(old in x.pods[node] for x in during), s.dump()
            # stopped only once the image was there
            assert s.last_seen(old)[node] >= pulled_at - 0.5, s.dump()
    finally:
        registry.close()
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(image, force=True)
        client.close()


# --- agents and the serve going away ---------------------------------------------------------------------


def test_an_agent_killed_mid_rollout_goes_not_ready_does_not_stall_the_rest_and_catches_up(
    fresh: Fleet,
) -> None:
    ns = namespace("kill")
    ref = f"{ns}/web"
    with published(fresh, "web", ns) as old:
        publish(fresh, "web", ns, version="2")
        wait_for(lambda: new_count(fresh, ref) >= 1, what="the rollout started", timeout=60)
        assert fresh.cli("pause", ref).returncode == 0  # hold the turns while the victim is chosen
        doc = fresh.rollout(ref)
        victim = next(n["name"] for n in doc["nodes"] if int(n["revision"]) != int(doc["updateRevision"]))
        fresh.kill_agent(victim, signal.SIGKILL)
        wait_for(
            lambda: not next(n for n in fresh.api("/api/nodes")["nodes"] if n["name"] == victim)["ready"],
            timeout=GRACE + 30,
            what="the killed node is NotReady",
        )
        assert fresh.cli("resume", ref).returncode == 0
        others = [n for n in fresh.nodes if n != victim]
        new = None

        def the_rest_updated() -> bool:
            nonlocal new
            pods = fresh.running_pods(ns, "web")
            names = {frozenset(pods[n]) for n in others}
            if len(names) == 1 and old not in next(iter(names)) and len(next(iter(names))) == 1:
                new = next(iter(next(iter(names))))
                return True
            return False

        wait_for(the_rest_updated, timeout=90, what="the other three nodes are updated")
        doc = fresh.rollout(ref)
        assert victim in doc["pendingNodes"], doc
        assert old in fresh.running_pods(ns, "web")[victim]  # its containers outlive the agent

        fresh.start_agent(victim)
        assert fresh.wait_rolled_out(ns, "web") == new  # it catches up; the rollout completes


def test_a_serve_restarted_mid_rollout_resumes_it(fresh: Fleet) -> None:
    ns = namespace("restart")
    ref = f"{ns}/web"
    with published(fresh, "web", ns):
        with Sampler(fresh, ns, "web") as s:
            publish(fresh, "web", ns, version="2")
            wait_for(lambda: 1 <= new_count(fresh, ref) < 4, what="the rollout is under way", timeout=60)
            doc = fresh.rollout(ref)
            fresh.stop_serve(signal.SIGKILL)
            time.sleep(2)
            fresh.start_serve()
            after = fresh.rollout(ref)
            new = fresh.wait_rolled_out(ns, "web")
        assert after["updateRevision"] == doc["updateRevision"], (
            doc,
            after,
        )  # the same rollout, not a new one
        assert after["currentRevision"] == doc["currentRevision"], (doc, after)
        assert s.most_without() <= 1, s.dump()
        first = s.first_seen(new)
        for node in fresh.nodes:  # no node updated before the restart was sent back
            assert all(new in x.pods[node] for x in s.samples if x.at >= first[node] + 0.5), s.dump()
        history = fresh.api(f"/api/rollouts/{ref}/history")["revisions"]
        assert len(history) == 2, history


def test_a_node_that_goes_silent_after_it_received_the_new_revision_stops_the_rollout(
    fresh: Fleet,
) -> None:
    ns = namespace("silent")
    ref = f"{ns}/web"
    with published(fresh, "web", ns) as old:
        publish(fresh, "web", ns, version="2")
        wait_for(
            lambda: new_count(fresh, ref) >= 1,
            interval=0.05,
            what="the first node is handed revision 2",
            timeout=60,
        )
        (first,) = updated(fresh, ref)
        wait_for(  # it received revision 2 and acted on it: its new pod runs (ready and available take
            # a probe period and minReadySeconds more: it is killed well before)
            lambda: fresh.running_pods(ns, "web")[first] - {old} != set(),
            interval=0.05,
            what="the first node runs its revision-2 pod",
            timeout=60,
        )
        fresh.kill_agent(first, signal.SIGKILL)  # then it goes dark
        wait_for(
            lambda: fresh.rollout(ref)["phase"] == "Failed", timeout=GRACE + 40, what="the rollout fails"
        )
        time.sleep(3)
        doc = fresh.rollout(ref)
        assert doc["phase"] == "Failed" and doc["message"], doc
        assert new_count(fresh, ref) == 1, json.dumps(doc)  # nobody else was handed the suspect revision
        assert first not in doc["pendingNodes"], doc  # it is the suspect, not a node waiting its turn
