"""Two `serve` replicas on one real PostgreSQL (`--store postgresql://`), over real HTTP on loopback.

The agents are simulated, as in tests/unit/test_rollout_serve.py: each fetches its per-node bundle from
the replica it uses and reports a pod of the revision it got (available at once). What is checked is
what replication promises: one leader, chosen again when it dies, that alone advances the rollout and
within maxUnavailable; a watch on either replica waking within about a second of a wave decided on the
other; the fleet view of either replica showing every node; actions sent to a follower applied by the
leader; and a PostgreSQL restart in the middle of all of it losing nothing.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.agent import identity
from nodeagent.fleet import serve
from nodeagent.k8s import manifests, model
from tests.support import postgres as pgsupport

NODES = ("n1", "n2", "n3", "n4")


def daemonset(image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]},
                },
            },
        }
    )


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


class ReplicaSet:
    """Replicas over one manifest directory and one database; each node talks to `uses[node]`."""

    def __init__(self, tmp: Path, url: str, count: int = 2) -> None:
        self.dir = tmp / "manifests"
        self.dir.mkdir()
        self.url = url
        self.servers: list[serve.Server | None] = []
        for i in range(count):
            self.servers.append(self._start(i))
        self.uses = {n: i % count for i, n in enumerate(NODES)}
        self.reported: dict[str, str] = {}

    def _start(self, i: int) -> serve.Server:
        cfg = serve.ServeConfig(
            directory=str(self.dir), listen="127.0.0.1:0", store_url=self.url, replica_id=f"r{i}"
        )
        s = serve.Server(cfg)
        s.start()
        return s

    def server(self, i: int) -> serve.Server:
        s = self.servers[i]
        assert s is not None
        return s

    def stop(self, i: int) -> None:
        s = self.servers[i]
        if s is not None:
            s.stop()
            self.servers[i] = None

    def close(self) -> None:
        for i in range(len(self.servers)):
            self.stop(i)

    def leader(self) -> int | None:
        for i, s in enumerate(self.servers):
            if s is not None and s.replication is not None and s.replication.elector.is_leader:
                return i
        return None

    def write(self, image: str) -> None:
        (self.dir / "web.yaml").write_text(daemonset(image))
        for s in self.servers:
            if s is not None:
                s.publisher.scan()

    def get(self, i: int, path: str, timeout: float = 10) -> tuple[int, bytes, dict[str, str]]:
        with urllib.request.urlopen(self.server(i).url + path, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)

    def api(self, i: int, path: str, method: str = "GET", body: object | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server(i).url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())

    def image_of(self, node: str, i: int | None = None) -> tuple[str, str]:
        _, body, _ = self.get(self.uses[node] if i is None else i, f"/manifests?node={node}")
        docs = manifests.load_text(body, "bundle").documents
        ds = next(d.obj for d in docs if isinstance(d.obj, model.DaemonSet))
        return ds.spec.template.spec.containers[0].image, identity.spec_hash(ds.spec.template)

    def step(self, node: str) -> str:
        """The node's agent: fetch from its replica, run what it got, report it there."""
        image, revision = self.image_of(node)
        pod = {
            "namespace": "default",
            "name": "web",
            "revision": revision,
            "ready": True,
            "available": True,
            "containers": [{"name": "c", "restartCount": 0, "state": "running", "reason": ""}],
        }
        doc = {
            "name": node,
            "labels": {},
            "taints": [],
            "status": {"node": node, "daemonSets": [{"namespace": "default", "name": "web", "pods": [pod]}]},
        }
        req = urllib.request.Request(
            f"{self.server(self.uses[node]).url}/nodes/{node}/status",
            data=json.dumps(doc).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10).close()
        self.reported[node] = image
        return image

    def round(self) -> None:
        for n in NODES:
            self.step(n)

    def rollout(self, i: int) -> Any:
        return self.api(i, "/api/rollouts/default/web")


@pytest.fixture
def replicas(tmp_path: Path, postgres: pgsupport.Cluster) -> Iterator[ReplicaSet]:
    rs = ReplicaSet(tmp_path, postgres.url)
    yield rs
    rs.close()


def settle(rs: ReplicaSet, image: str, timeout: float = 30) -> None:
    """Nodes report until every one runs `image` and the leader says Complete."""
    rs.write(image)
    deadline = time.monotonic() + timeout
    while True:
        rs.round()
        lead = rs.leader()
        done = lead is not None and all(v == image for v in rs.reported.values())
        if done and lead is not None and rs.rollout(lead)["phase"] == "Complete":
            return
        assert time.monotonic() < deadline, f"{image} not rolled out: {rs.reported}"
        time.sleep(0.2)


def in_flight(rs: ReplicaSet, new: str) -> list[str]:
    """Nodes handed `new` that have not yet reported it available (what maxUnavailable bounds)."""
    served = {n: rs.image_of(n)[0] for n in NODES}
    return [n for n in NODES if served[n] == new and rs.reported.get(n) != new]


def test_one_leader_every_replica_shows_every_node_and_says_who_leads(replicas: ReplicaSet) -> None:
    wait_for(lambda: replicas.leader() is not None)
    lead = replicas.leader()
    assert lead is not None
    settle(replicas, "web:1")
    for i in (0, 1):  # nodes n1, n3 report to r0 and n2, n4 to r1; each replica shows all four
        wait_for(lambda i=i: {n["name"] for n in replicas.api(i, "/api/nodes")["nodes"]} == set(NODES))  # type: ignore[misc]
        assert all(n["ready"] for n in replicas.api(i, "/api/nodes")["nodes"])
        _, body, _ = replicas.get(i, "/healthz")
        role = "leader" if i == lead else "follower"
        assert body.decode() == f"ok\nreplica: r{i} ({role})\nleader: r{lead}\n"
        _, metrics, _ = replicas.get(i, "/metrics")
        assert f'nodeagent_serve_leader{{replica="r{i}"}} {int(i == lead)}'.encode() in metrics
        assert f'nodeagent_serve_leader_info{{leader="r{lead}"}} 1'.encode() in metrics


def test_a_watch_on_the_follower_wakes_within_a_second_of_the_leaders_decision(replicas: ReplicaSet) -> None:
    wait_for(lambda: replicas.leader() is not None)
    settle(replicas, "web:1")
    lead = replicas.leader()
    assert lead is not None
    follower = 1 - lead
    replicas.write("web:2")
    wait_for(lambda: len(in_flight(replicas, "web:2")) == 1)
    first = in_flight(replicas, "web:2")[0]
    waiting = next(n for n in NODES if n != first)
    replicas.uses[waiting] = follower
    _, _, headers = replicas.get(follower, f"/manifests?node={waiting}")
    woke: list[float] = []

    def watch() -> None:
        try:
            replicas.get(follower, f"/manifests?node={waiting}&watch=1&timeout=20&etag={headers['ETag']}", 30)
        except urllib.error.HTTPError:
            return  # 304: timed out without a change
        woke.append(time.monotonic())

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    replicas.uses[first] = lead
    replicas.step(first)  # available on the new revision: the leader hands out the next wave
    decided = time.monotonic()
    t.join(25)
    assert woke, "the follower's watch never woke"
    assert woke[0] - decided < 1.5  # about a second, under this machine's load
    assert any(replicas.image_of(n, follower)[0] == "web:2" for n in NODES if n != first)


def test_the_leader_dies_mid_rollout_and_the_other_replica_finishes_it_within_budget(
    replicas: ReplicaSet,
) -> None:
    wait_for(lambda: replicas.leader() is not None)
    settle(replicas, "web:1")
    lead = replicas.leader()
    assert lead is not None
    other = 1 - lead
    replicas.write("web:2")
    for n in NODES[:2]:  # a node or two through the first waves
        assert len(in_flight(replicas, "web:2")) <= 1
        replicas.step(n)
    replicas.stop(lead)  # its connections close: the advisory lock is released at once
    for n in NODES:
        replicas.uses[n] = other  # the agents fail over
    killed = time.monotonic()
    wait_for(lambda: replicas.leader() == other, timeout=10)
    took = time.monotonic() - killed
    while not all(replicas.reported.get(n) == "web:2" for n in NODES):
        assert len(in_flight(replicas, "web:2")) <= 1  # maxUnavailable 1 still holds
        replicas.round()
        assert time.monotonic() - killed < 60, replicas.reported
    wait_for(lambda: replicas.rollout(other)["phase"] == "Complete")
    print(f"leader replaced after {took:.2f}s")


def test_an_action_sent_to_the_follower_is_applied_by_the_leader_before_it_answers(
    replicas: ReplicaSet,
) -> None:
    wait_for(lambda: replicas.leader() is not None)
    settle(replicas, "web:1")
    lead = replicas.leader()
    assert lead is not None
    follower = 1 - lead
    doc = replicas.api(follower, "/api/rollouts/default/web/pause", "POST", {})
    assert doc["paused"] is True
    assert replicas.rollout(lead)["paused"] is True  # the leader had applied it when the follower answered
    replicas.write("web:2")
    for _ in range(3):
        replicas.round()
    assert set(replicas.reported.values()) == {"web:1"}  # the pause holds
    replicas.api(follower, "/api/rollouts/default/web/resume", "POST", {})
    with pytest.raises(urllib.error.HTTPError) as info:
        replicas.api(follower, "/api/rollouts/default/nope/pause", "POST", {})
    assert info.value.code == 404
    settle(replicas, "web:2")


def test_a_postgresql_restart_under_load_loses_nothing(
    replicas: ReplicaSet, postgres: pgsupport.Cluster
) -> None:
    wait_for(lambda: replicas.leader() is not None)
    settle(replicas, "web:1")
    stop = threading.Event()
    failures: list[BaseException] = []

    def load() -> None:  # the agents keep fetching and reporting throughout
        while not stop.is_set():
            try:
                replicas.round()
            except Exception as exc:
                failures.append(exc)
            time.sleep(0.05)

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.5)
        postgres.restart()
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(30)
    assert failures == []  # serve answered every fetch and report meanwhile
    wait_for(lambda: replicas.leader() is not None, timeout=20)
    settle(replicas, "web:2", timeout=60)  # rollouts go on
    count = postgres.psql("SELECT count(*) FROM node_reports WHERE NOT deleted").strip()
    assert count == str(len(NODES))  # every node's report reached the database
    for i in (0, 1):
        assert {n["name"] for n in replicas.api(i, "/api/nodes")["nodes"]} == set(NODES)


def test_a_follower_plans_only_when_a_view_is_read_and_its_view_is_then_current(replicas: ReplicaSet) -> None:
    """A follower's plans serve only its views (rollout status, the fleet page, /metrics): made every
    second for nobody, they were a pass over the whole fleet each second on every follower."""
    wait_for(lambda: replicas.leader() is not None)
    settle(replicas, "web:1")
    follower = 1 - (replicas.leader() or 0)
    ctl = replicas.server(follower).controller
    passes: list[str] = []
    real = ctl._sync_one

    def counted(ds: Any, *args: Any) -> None:
        passes.append(ds.key.name)
        real(ds, *args)

    ctl._sync_one = counted  # type: ignore[method-assign,assignment]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:  # reports keep coming; the ticker syncs every second
        replicas.round()
        time.sleep(0.2)
    assert passes == []
    doc = replicas.rollout(follower)
    assert passes == ["web"]
    assert doc["phase"] == "Complete"
    assert doc["updatedNumberScheduled"] == len(NODES) and doc["numberAvailable"] == len(NODES)
    replicas.rollout(follower)  # read again within FOLLOWER_PLAN_INTERVAL: the same plan
    assert passes == ["web"]
