"""The in-memory runtime keeps the Docker semantics the agent relies on, and the real agent runs on it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nodeagent import errors, settings
from nodeagent import runtime as rt
from nodeagent.agent import agent, identity
from nodeagent.runtime import memory

IMAGE = "example.com/app:1"


def spec(name: str = "c1", image: str = IMAGE, managed: bool = True) -> rt.ContainerCreate:
    labels = {identity.LABEL_MANAGED: "true"} if managed else {}
    return rt.ContainerCreate(name=name, image=image, labels=labels)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_create_of_an_existing_name_returns_its_id_never_a_duplicate() -> None:
    r = memory.MemoryRuntime(images=[IMAGE])
    first = r.create(spec())
    assert r.create(spec()) == first
    assert len(r.list_managed()) == 1


def test_create_needs_the_image_and_pull_follows_pullable() -> None:
    r = memory.MemoryRuntime(pullable=lambda image: image.startswith("ok/"))
    with pytest.raises(errors.ContainerRuntimeError, match="not present"):
        r.create(spec())
    with pytest.raises(errors.ImagePullError):
        r.pull(IMAGE)
    r.pull("ok/img:1")
    assert r.image_present("ok/img:1")
    r.create(spec(image="ok/img:1"))


def test_lifecycle_states_times_and_listing_like_docker_ps() -> None:
    clock = Clock()
    r = memory.MemoryRuntime(images=[IMAGE], clock=clock)
    cid = r.create(spec())
    assert r.list_managed()[0].state == "created"
    clock.now = 1001.0
    r.start(cid)
    clock.now = 1005.0
    r.exit(cid, 2)
    (row,) = r.list_managed()
    assert (row.state, row.exit_code, row.started_at, row.finished_at) == ("exited", 2, None, None)
    assert r.timestamps(cid) == (1001.0, 1005.0), "times need an inspect, as on Docker"
    r.start(cid)
    r.stop(cid, 1)
    assert r.list_managed()[0].exit_code == 143
    r.remove(cid)
    r.remove(cid)  # already gone: not an error
    r.stop(cid, 1)
    assert r.list_managed() == []
    with pytest.raises(errors.ContainerRuntimeError):
        r.start(cid)


def test_unmanaged_containers_and_other_nodes_are_not_listed() -> None:
    r = memory.MemoryRuntime(images=[IMAGE], node_name="a")
    r.create(spec("mine"))
    r.create(spec("bare", managed=False))
    other = memory.MemoryRuntime(images=[IMAGE], node_name="b")
    other.containers = r.containers  # one engine, two nodes
    assert [c.name for c in r.list_managed()] == ["mine"]
    assert other.list_managed() == []
    assert r.list_managed()[0].labels[identity.LABEL_NODE] == "a"


def test_unavailable_runtime_raises_runtime_unavailable() -> None:
    r = memory.MemoryRuntime()
    r.available = False
    assert r.ping() is False
    with pytest.raises(errors.RuntimeUnavailable):
        r.list_managed()


def test_events_are_delivered_until_stop() -> None:
    r = memory.MemoryRuntime(images=[IMAGE])
    stop = threading.Event()
    got: list[str] = []
    started = threading.Event()

    def consume() -> None:
        started.set()
        for ev in r.events(stop):
            got.append(ev.action)
            if ev.action == "destroy":
                stop.set()

    t = threading.Thread(target=consume)
    t.start()
    started.wait(5)
    for _ in range(50):  # the generator subscribes on its first next(); wait for it
        with r.lock:
            if r._subscribers:
                break
        threading.Event().wait(0.02)
    cid = r.create(spec())
    r.start(cid)
    r.exit(cid)
    r.remove(cid)
    t.join(5)
    assert not t.is_alive()
    assert got == ["create", "start", "die", "destroy"]


DS = """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent-ds, namespace: sim}
spec:
  selector: {matchLabels: {app: agent-ds}}
  template:
    metadata: {labels: {app: agent-ds}}
    spec:
      containers:
        - {name: main, image: example.com/app:1, imagePullPolicy: IfNotPresent}
"""


def make_agent(tmp_path: Path, r: memory.MemoryRuntime, clock: Clock) -> agent.Agent:
    (tmp_path / "ds").mkdir(exist_ok=True)
    raw = {"node": {"name": "sim-node"}, "sources": [{"directory": "ds"}], "stateDir": "state"}
    cfg = settings.from_dict(raw, str(tmp_path))
    a = agent.Agent(cfg, r, clock=clock)
    a.relist()
    return a


def test_the_real_agent_converges_on_it_idempotently_and_restarts_a_crash(tmp_path: Path) -> None:
    clock = Clock()
    r = memory.MemoryRuntime(images=[IMAGE], node_name="sim-node", clock=clock)
    a = make_agent(tmp_path, r, clock)
    (tmp_path / "ds" / "ds.yaml").write_text(DS)
    a.relist()
    result = a.reconcile()
    assert not result.failed
    (c,) = r.running()
    assert c.labels[identity.LABEL_OWNER] == "DaemonSet/sim/agent-ds"
    assert c.spec.image == IMAGE

    r.calls.clear()
    assert a.reconcile().outcomes == ()
    assert r.calls == {"list_managed": 1}, "a pass with nothing to do is one list call"

    r.exit(c.id, 1)
    a.reconcile()
    (c,) = r.running()  # the first restart is at once, as the kubelet's
    clock.now += 1
    r.exit(c.id, 1)
    a.reconcile()
    assert r.running() == [], "a second crash waits for its backoff"
    clock.now += 11
    a.reconcile()
    assert len(r.running()) == 1, "restarted after the 10 s backoff"

    (tmp_path / "ds" / "ds.yaml").unlink()
    a.relist()
    a.reconcile()
    assert r.list_managed() == []
