"""Issue 18 with every component real: two `serve --store postgresql://…` processes on a throwaway
PostgreSQL, four `nodeagent run` agents on the real engine, each listing both replicas.

- The leading replica is SIGKILLed mid-rollout: the other takes the lead and finishes the rollout, and
  the engine never shows more than maxUnavailable nodes without an available pod (AvailabilitySampler,
  tests/support/replicafleet.py). The agents that used the killed replica fail over to the survivor
  (source and status server) and still receive the change it decides.
- Either replica's fleet view shows every node, whichever replica the node reports to.
- PostgreSQL is restarted mid-rollout, while the agents watch and report: both replicas reconnect, one
  leads, the rollout completes within its budget, and the database holds every revision and node.

No wall-clock assertions: only generous deadlines for "eventually".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import http
from tests.support import postgres as pgsupport
from tests.support.engine import SESSION_ID
from tests.support.fleet import daemonset
from tests.support.replicafleet import AvailabilitySampler, ReplicatedFleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

GRACE = 20.0  # --grace: above the agents' 10 s heartbeat plus a failover under load
MIN_READY = 3  # minReadySeconds: each node's turn lasts long enough to kill the leader inside one
NODES = 4
NAME = "web"

_count = [0]


@pytest.fixture
def fleet(
    tmp_path: Path,
    docker_runtime: docker_rt.DockerRuntime,
    test_image: str,
    postgres: pgsupport.Cluster,
) -> Iterator[ReplicatedFleet]:
    _count[0] += 1
    f = ReplicatedFleet(
        root=tmp_path,
        runtime=docker_runtime,
        prefix=f"rk-{SESSION_ID}-{_count[0]}",
        node_labels=[{} for _ in range(NODES)],
        image=test_image,
        grace=GRACE,
        poll="1h",  # every change reaches the agents through a watch (on either replica)
        store_url=postgres.url,
    )
    try:
        f.start()
        yield f
    finally:
        f.close()


def publish(fleet: ReplicatedFleet, ns: str, version: str) -> None:
    fleet.put(daemonset(NAME, ns, fleet.image, version=version, min_ready_seconds=MIN_READY))


def rollout_on(fleet: ReplicatedFleet, i: int, ns: str) -> dict[str, Any] | None:
    try:
        doc = fleet.api_on(i, f"/api/rollouts/{ns}/{NAME}")
    except http.FetchError:
        return None
    return doc if isinstance(doc, dict) else None


def serve_unavailable(doc: dict[str, Any] | None) -> int:
    """Nodes the serve's rollout document counts without an available pod."""
    return sum(1 for n in (doc or {}).get("nodes", []) if n["shouldRun"] and not n["available"])


def start_revision_2(fleet: ReplicatedFleet, ns: str) -> tuple[str, int]:
    """Revision 1 everywhere, then revision 2 published; (revision 1's pod name, its revision number)."""
    publish(fleet, ns, "1")
    old = fleet.wait_rolled_out(ns, NAME, timeout=180)
    before = fleet.rollout(f"{ns}/{NAME}")["updateRevision"]
    publish(fleet, ns, "2")
    return old, int(before)


def wait_first_node_updated(fleet: ReplicatedFleet, ns: str, old: str) -> str:
    """Until one node runs a revision-2 pod (from the engine); returns it."""
    found: list[str] = []

    def one() -> bool:
        moved = [n for n, pods in fleet.running_pods(ns, NAME).items() if pods - {old}]
        found[:] = moved[:1]
        return bool(moved)

    wait_for(one, timeout=120, interval=0.05, what="the first node runs revision 2")
    return found[0]


def assert_all_on_revision_2(fleet: ReplicatedFleet, i: int, ns: str, old: str, new: str) -> None:
    doc = rollout_on(fleet, i, ns)
    assert doc is not None
    assert doc["phase"] == "Complete", json.dumps(doc)
    rev = int(doc["updateRevision"])
    assert {n["name"] for n in doc["nodes"]} == set(fleet.nodes), json.dumps(doc)
    for n in doc["nodes"]:  # what each agent last reported: its pod of revision 2, available
        assert int(n["revision"]) == rev and int(n["runningRevision"]) == rev and n["available"], doc
    assert new != old
    assert all(pods == {new} for pods in fleet.running_pods(ns, NAME).values())


def wait_for_available_everywhere(fleet: ReplicatedFleet, i: int, ns: str) -> None:
    """Until replica i's rollout document says Complete with every node available (a follower's view
    follows the shared reports within a second or so)."""
    last: list[dict[str, Any] | None] = [None]

    def complete() -> bool:
        last[0] = doc = rollout_on(fleet, i, ns)
        return (
            doc is not None
            and doc["phase"] == "Complete"
            and {n["name"] for n in doc["nodes"] if n["available"]} == set(fleet.nodes)
        )

    try:
        wait_for(complete, timeout=30, what=f"replica r{i} shows every node available")
    except AssertionError:
        raise AssertionError(json.dumps(last[0], indent=1) + f"\nleader: {fleet.leader()}") from None


def test_the_leader_is_killed_mid_rollout_and_the_other_replica_finishes_it_within_max_unavailable(
    fleet: ReplicatedFleet,
) -> None:
    ns = f"rk-{SESSION_ID}-lead"
    wait_for(lambda: fleet.leader() is not None, timeout=30, what="a leader")
    old, _ = start_revision_2(fleet, ns)
    views: dict[str, Any] = {"replica": None}

    def survivor_view() -> dict[str, Any] | None:
        i = views["replica"]
        return None if i is None else rollout_on(fleet, i, ns)

    with AvailabilitySampler(fleet, ns, NAME, view=survivor_view) as s:
        first = wait_first_node_updated(fleet, ns, old)
        lead = fleet.leader()
        assert lead is not None
        other = 1 - lead
        fleet.stop_replica(lead)  # SIGKILL: its advisory lock goes with its database sessions
        at_kill = s.sample()
        views["replica"] = other
        still_old = [n for n, pods in at_kill.started.items() if any(p == old for p, _ in pods)]
        assert len(still_old) >= 2, s.dump(MIN_READY)  # mid-rollout: the survivor has nodes left to do
        wait_for(lambda: fleet.role(other) == "leader", timeout=60, what="the survivor leads")
        new = fleet.wait_rolled_out(ns, NAME, timeout=240)
    engine_worst = s.most_unavailable(MIN_READY)
    killed = f"\nr{lead} killed at {at_kill.at - s.samples[0].at:.2f}"
    assert engine_worst <= 1, s.dump(MIN_READY) + killed  # maxUnavailable 1, before and after the kill
    assert engine_worst == 1  # and the sampler did see the nodes take their turns
    serve_worst = max((serve_unavailable(dict(x.serve)) for x in s.samples if x.serve), default=0)
    assert serve_worst <= 1, [x.serve for x in s.samples if x.serve and serve_unavailable(dict(x.serve)) > 1]
    assert s.errors == []
    assert_all_on_revision_2(fleet, other, ns, old, new)
    assert first not in still_old
    assert fleet.role(other) == "leader"  # and still leads
    # the agents that used the killed replica moved to the survivor and got revision 2 from it
    moved = [n for n in fleet.nodes if fleet.first_replica_of(n) == lead]
    assert moved
    for n in moved:
        text = fleet.agent_log(n)
        assert "source_failover" in text and "status_server_failover" in text, text[-3000:]
    wait_for(lambda: all(fleet.nodes_on(other).values()), timeout=60, what="every node ready on the survivor")
    assert set(fleet.nodes_on(other)) == set(fleet.nodes)


def test_the_follower_an_agent_uses_is_killed_the_agent_fails_over_and_gets_the_next_change(
    fleet: ReplicatedFleet,
) -> None:
    ns = f"rk-{SESSION_ID}-follow"
    wait_for(lambda: fleet.leader() is not None, timeout=30, what="a leader")
    lead = fleet.leader()
    assert lead is not None
    follower = 1 - lead
    publish(fleet, ns, "1")
    old = fleet.wait_rolled_out(ns, NAME, timeout=180)
    fleet.stop_replica(follower)  # SIGKILL: the watches held on it break
    with AvailabilitySampler(fleet, ns, NAME) as s:
        publish(fleet, ns, "2")  # pollInterval 1h: only a watch on the leader brings it
        wait_first_node_updated(fleet, ns, old)
        new = fleet.wait_rolled_out(ns, NAME, timeout=240)
    assert s.most_unavailable(MIN_READY) <= 1, s.dump(MIN_READY)
    assert s.errors == []
    assert_all_on_revision_2(fleet, lead, ns, old, new)
    assert fleet.role(lead) == "leader"
    moved = [n for n in fleet.nodes if fleet.first_replica_of(n) == follower]
    assert moved
    for n in moved:
        text = fleet.agent_log(n)
        assert "source_failover" in text and "status_server_failover" in text, text[-3000:]


def test_the_fleet_view_of_either_replica_shows_every_node(fleet: ReplicatedFleet) -> None:
    ns = f"rk-{SESSION_ID}-view"
    publish(fleet, ns, "1")
    pod = fleet.wait_rolled_out(ns, NAME, timeout=180)
    reporting_to = {n: fleet.first_replica_of(n) for n in fleet.nodes}
    assert set(reporting_to.values()) == {0, 1}  # each replica receives only some nodes' reports
    for i in (0, 1):
        wait_for(
            lambda i=i: fleet.nodes_on(i) == dict.fromkeys(fleet.nodes, True),  # type: ignore[misc]
            timeout=60,
            what=f"replica r{i} shows every node ready",
        )
        wait_for_available_everywhere(fleet, i, ns)
    assert {fleet.role(0), fleet.role(1)} == {"leader", "follower"}
    assert all(pods == {pod} for pods in fleet.running_pods(ns, NAME).values())


def test_postgresql_restarted_mid_rollout_both_replicas_reconnect_and_nothing_is_lost(
    fleet: ReplicatedFleet, postgres: pgsupport.Cluster
) -> None:
    ns = f"rk-{SESSION_ID}-pg"
    wait_for(lambda: fleet.leader() is not None, timeout=30, what="a leader")
    old, _ = start_revision_2(fleet, ns)
    with AvailabilitySampler(fleet, ns, NAME) as s:
        wait_first_node_updated(fleet, ns, old)
        postgres.restart()  # every session is cut: the leader's lock, LISTEN, the pools
        at_restart = s.sample()
        still_old = [n for n, pods in at_restart.started.items() if any(p == old for p, _ in pods)]
        assert still_old, s.dump(MIN_READY)  # mid-rollout: nodes were left to do after the restart
        new = fleet.wait_rolled_out(ns, NAME, timeout=240)
    assert s.most_unavailable(MIN_READY) <= 1, s.dump(MIN_READY)
    assert s.errors == []
    assert fleet.alive(0) and fleet.alive(1), fleet.log_tail()
    wait_for(lambda: fleet.leader() is not None, timeout=60, what="a leader after the restart")
    lead = fleet.leader()
    assert lead is not None
    assert_all_on_revision_2(fleet, lead, ns, old, new)
    for i in (0, 1):  # both replicas read the shared state again: every node, the same rollout
        wait_for(
            lambda i=i: fleet.nodes_on(i) == dict.fromkeys(fleet.nodes, True),  # type: ignore[misc]
            timeout=60,
            what=f"replica r{i} shows every node ready",
        )
        wait_for(
            lambda i=i: (rollout_on(fleet, i, ns) or {}).get("phase") == "Complete",  # type: ignore[misc]
            timeout=30,
            what=f"replica r{i} shows the rollout complete",
        )
    # nothing lost: both revisions, the finished rollout and every node's report are in the database
    assert postgres.psql(f"SELECT count(*) FROM revisions WHERE namespace = '{ns}'").strip() == "2"
    assert postgres.psql(f"SELECT phase FROM rollouts WHERE namespace = '{ns}'").strip() == "Complete"
    stored = postgres.psql("SELECT node FROM node_reports WHERE NOT deleted").split()
    assert sorted(stored) == sorted(fleet.nodes)
    history = fleet.api(f"/api/rollouts/{ns}/{NAME}/history")["revisions"]
    assert len(history) == 2, history
