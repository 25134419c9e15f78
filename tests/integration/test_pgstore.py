"""The PostgreSQL store on a real, throwaway PostgreSQL server (tests/support/postgres.py).

The same Store calls run on SqliteStore and PgStore and must give the same answers; then what only the
replicated set-up has: migrations raced by replicas starting at once, leader election through an advisory
lock (released when the holder dies), NOTIFY reaching the other replicas, shared node reports, and a
server restart that the store survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from nodeagent.fleet import pgstore, replicas, store
from nodeagent.fleet import view as fleet
from tests.support import postgres as pgsupport

DS = store.Key(store.KIND_DAEMONSET, "default", "log")


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[store.SqliteStore]:
    if request.param == "sqlite":
        s: store.SqliteStore = store.SqliteStore(str(tmp_path / "state"))
    else:
        cluster: pgsupport.Cluster = request.getfixturevalue("postgres")
        s = pgstore.PgStore(cluster.url, replica_id="a")
    yield s
    s.close()


def test_both_stores_keep_revisions_rollouts_and_assignments_alike(any_store: store.SqliteStore) -> None:
    s = any_store
    assert s.schema_version() == store.SCHEMA_VERSION
    s.add_revision(store.Revision(DS, 1, "h1", '{"a": 1}', 10.0, "first"))
    s.add_revision(store.Revision(DS, 2, "h2", '{"a": 2}', 20.5))
    assert [(r.number, r.hash, r.template, r.created_at, r.change_cause) for r in s.revisions(DS)] == [
        (1, "h1", '{"a": 1}', 10.0, "first"),
        (2, "h2", '{"a": 2}', 20.5, ""),
    ]
    s.delete_revisions(DS, [1])
    assert [r.number for r in s.revisions(DS)] == [2]
    r = store.Rollout(DS, 2, 1, store.PROGRESSING, paused=True, message="m", started_at=1.5, pinned=True)
    s.put_rollout(r)
    assert s.rollout(DS) == r
    s.put_rollout(store.Rollout(DS, 2, 2, store.COMPLETE))
    assert s.rollouts() == [store.Rollout(DS, 2, 2, store.COMPLETE)]
    assert s.rollout(store.Key(store.KIND_DAEMONSET, "default", "other")) is None
    s.put_assignments([store.Assignment(DS, "n1", 1, 5.0), store.Assignment(DS, "n2", 2, 6.0)])
    s.put_assignments([store.Assignment(DS, "n1", 2, 7.0)])
    assert s.assignments(DS) == [store.Assignment(DS, "n1", 2, 7.0), store.Assignment(DS, "n2", 2, 6.0)]
    s.delete_assignments(DS, ["n2"])
    assert [a.node for a in s.assignments(DS)] == ["n1"]


def test_a_failed_transaction_leaves_nothing_behind(any_store: store.SqliteStore) -> None:
    s = any_store
    with pytest.raises(RuntimeError), s.transaction():
        s.put_rollout(store.Rollout(DS, 1, 1, store.COMPLETE))
        s.put_assignments([store.Assignment(DS, "n1", 1, 5.0)])
        raise RuntimeError("planner crashed")
    assert s.rollout(DS) is None and s.assignments(DS) == []


# --- PostgreSQL only ------------------------------------------------------------------------------------


def test_replicas_starting_at_once_migrate_once(postgres: pgsupport.Cluster) -> None:
    stores: list[pgstore.PgStore] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            stores.append(pgstore.PgStore(postgres.url, replica_id=f"r{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert postgres.psql("SELECT version FROM schema_version").split() == [str(store.SCHEMA_VERSION)]
        assert postgres.psql("SELECT version FROM pg_schema_version").split() == [
            str(len(pgstore.PG_MIGRATIONS))
        ]
    finally:
        for s in stores:
            s.close()


def test_a_database_from_a_newer_nodeagent_is_refused(postgres: pgsupport.Cluster) -> None:
    pgstore.PgStore(postgres.url).close()
    postgres.psql("UPDATE schema_version SET version = 999")
    with pytest.raises(store.StoreError, match="newer than this nodeagent"):
        pgstore.PgStore(postgres.url)


def test_store_url_forms(tmp_path: Path) -> None:
    s = pgstore.open_store(f"sqlite://{tmp_path}/x", "/nonexistent")
    assert s.path == f"{tmp_path}/x/{store.DB_FILE}"
    s.close()
    with pytest.raises(store.StoreError, match="unsupported URL scheme 'mysql'"):
        pgstore.open_store("mysql://u:secret@h/db", str(tmp_path))
    with pytest.raises(store.StoreError, match="cannot connect") as info:
        pgstore.PgStore("postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=1")
    assert "hunter2" not in str(info.value)
    assert pgstore.redact("postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"


def test_a_commit_on_one_replica_is_heard_by_the_other(postgres: pgsupport.Cluster) -> None:
    a, b = pgstore.PgStore(postgres.url, replica_id="a"), pgstore.PgStore(postgres.url, replica_id="b")
    heard: list[str] = []
    listener = pgstore.Listener(postgres.url, "b", heard.append)
    listener.start()
    try:
        assert listener.connected.wait(10)
        assert wait_for(lambda: heard == [""])  # on connecting: "anything may have changed"
        heard.clear()
        a.rollout(DS)  # a read notifies nobody
        a.put_assignments([store.Assignment(DS, "n1", 1, 5.0)])
        assert wait_for(lambda: heard == ["a"], timeout=5)
        assert b.assignments(DS) == [store.Assignment(DS, "n1", 1, 5.0)]
    finally:
        listener.stop()
        a.close()
        b.close()


def test_node_reports_are_shared_with_heartbeats_and_tombstones(postgres: pgsupport.Cluster) -> None:
    a, b = pgstore.PgStore(postgres.url, replica_id="a"), pgstore.PgStore(postgres.url, replica_id="b")
    try:
        a.put_node_reports([("n1", '{"name": "n1"}', 100.0), ("n2", '{"name": "n2"}', 100.0)])
        got = b.node_reports_since(0)
        assert [(r.node, r.doc, r.received_at, r.deleted) for r in got] == [
            ("n1", '{"name": "n1"}', 100.0, False),
            ("n2", '{"name": "n2"}', 100.0, False),
        ]
        last = got[-1].seq
        b.put_node_reports([("n1", '{"name": "n1"}', 110.0)])  # a heartbeat through the other replica
        a.put_node_reports([("n1", '{"name": "n1", "old": 1}', 105.0)])  # older: ignored
        got = a.node_reports_since(last)
        assert [(r.node, r.received_at, r.doc) for r in got] == [("n1", 110.0, '{"name": "n1"}')]
        a.delete_node_report("n2")
        got = b.node_reports_since(got[-1].seq)
        assert [(r.node, r.deleted) for r in got] == [("n2", True)]
    finally:
        a.close()
        b.close()


def test_a_heartbeat_keeps_the_stored_document_and_is_read_without_it(postgres: pgsupport.Cluster) -> None:
    a, b = pgstore.PgStore(postgres.url, replica_id="a"), pgstore.PgStore(postgres.url, replica_id="b")
    doc = '{"name": "n1"}'
    h = pgstore.doc_hash(doc)
    try:
        a.put_node_reports([("n1", doc, 100.0)])
        # the same document again, known by its hash: only the time moves, the stored text stays
        a.put_node_reports([("n1", "never stored", 110.0)], {"n1": h})
        rows = b.node_reports_since(0, docs=False)
        assert [(r.node, r.doc, r.doc_hash, r.received_at) for r in rows] == [("n1", "", h, 110.0)]
        assert b.node_report_docs(["n1", "nobody"]) == {"n1": (doc, h)}
        a.delete_node_report("n1")
        assert b.node_report_docs(["n1"]) == {}
    finally:
        a.close()
        b.close()


def test_a_replica_fetches_only_the_documents_that_changed(postgres: pgsupport.Cluster) -> None:
    """Replication.pull: a heartbeat through the other replica re-dates the report this one holds; only
    a new document is fetched and parsed."""
    a, b = pgstore.PgStore(postgres.url, replica_id="a"), pgstore.PgStore(postgres.url, replica_id="b")
    fleet_b, lock_b = fleet.Fleet(), threading.Lock()
    rep_a = replicas.Replication(a, lambda: (fleet.Fleet(), threading.Lock()))
    rep_b = replicas.Replication(b, lambda: (fleet_b, lock_b))
    fetched: list[list[str]] = []
    real = b.node_report_docs

    def counted(nodes: Sequence[str]) -> dict[str, tuple[str, str]]:
        fetched.append(list(nodes))
        return real(nodes)

    b.node_report_docs = counted  # type: ignore[method-assign]
    body = json.dumps({"name": "n1", "labels": {"zone": "a"}})
    try:
        rep_a.reported("n1", body, 100.0)
        assert rep_a.flush()
        assert rep_b.pull() == 1
        assert fleet_b.nodes["n1"].labels == {"zone": "a"} and fetched == [["n1"]]
        rep_a.reported("n1", body, 110.0)  # a heartbeat
        assert rep_a.flush()
        assert rep_b.pull() == 1
        assert fleet_b.nodes["n1"].received_at == 110.0 and fetched[-1] == []
        rep_a.reported("n1", body.replace('"a"', '"b"'), 120.0)  # a new document
        assert rep_a.flush()
        assert rep_b.pull() == 1
        assert fleet_b.nodes["n1"].labels == {"zone": "b"} and fetched[-1] == ["n1"]
    finally:
        a.close()
        b.close()


def test_a_pulled_change_asks_for_a_pass_and_a_pulled_heartbeat_does_not(postgres: pgsupport.Cluster) -> None:
    """A report another replica took that changes what the controller reads (a node new, or its pods)
    wakes the leader's pass at once (`on_changed`, serve's request_sync), as a report posted to the
    leader itself does; before, the pass waited for its next idle check, up to a second later."""
    a, b = pgstore.PgStore(postgres.url, replica_id="a"), pgstore.PgStore(postgres.url, replica_id="b")
    rep_a = replicas.Replication(a, lambda: (fleet.Fleet(), threading.Lock()))
    fleet_b, lock_b = fleet.Fleet(), threading.Lock()
    rep_b = replicas.Replication(b, lambda: (fleet_b, lock_b))
    asked: list[int] = []
    rep_b.on_changed = lambda: asked.append(1)
    body = json.dumps({"name": "n1", "labels": {"zone": "a"}})
    try:
        rep_a.reported("n1", body, time.time())
        assert rep_a.flush() and rep_b.pull() == 1
        assert asked == [1]  # a new node
        rep_a.reported("n1", body, time.time())  # a heartbeat
        assert rep_a.flush() and rep_b.pull() == 1
        assert asked == [1]
        rep_a.reported("n1", body.replace('"a"', '"b"'), time.time())  # other labels
        assert rep_a.flush() and rep_b.pull() == 1
        assert asked == [1, 1]
    finally:
        a.close()
        b.close()


ELECTOR_SCRIPT = """
import os, sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))
from nodeagent.fleet import pgstore
e = pgstore.Elector(sys.argv[1], sys.argv[2], interval=0.2)
e.start()
e.wait_leader(30)
print("leader", flush=True)
time.sleep(600)
"""


def test_a_killed_leader_is_replaced_within_seconds(postgres: pgsupport.Cluster) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", ELECTOR_SCRIPT, postgres.url, "first"], stdout=subprocess.PIPE, text=True
    )
    follower = pgstore.Elector(postgres.url, "second", interval=0.2)
    observer = pgstore.PgStore(postgres.url, replica_id="observer")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "leader"
        follower.start()
        time.sleep(1.0)
        assert not follower.is_leader  # one leader at a time
        assert observer.leader() == "first"
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        assert follower.wait_leader(10)
        took = time.monotonic() - killed
        assert observer.leader() == "second"
        print(f"leader replaced {took:.2f}s after SIGKILL")
    finally:
        proc.kill()
        proc.wait()
        follower.stop()
        observer.close()


def test_the_store_and_the_leader_survive_a_postgresql_restart(postgres: pgsupport.Cluster) -> None:
    s = pgstore.PgStore(postgres.url, replica_id="a")
    elector = pgstore.Elector(postgres.url, "a", interval=0.2)
    heard: list[str] = []
    listener = pgstore.Listener(postgres.url, "a", heard.append)
    elector.start()
    listener.start()
    try:
        assert elector.wait_leader(10) and listener.connected.wait(10)
        assert wait_for(lambda: heard == [""])
        heard.clear()
        s.put_rollout(store.Rollout(DS, 1, 1, store.COMPLETE))
        postgres.restart()
        # the pool replaces its cut connections: the next calls just work
        assert s.rollout(DS) == store.Rollout(DS, 1, 1, store.COMPLETE)
        s.put_rollout(store.Rollout(DS, 2, 1, store.PROGRESSING))
        assert wait_for(lambda: elector.is_leader and elector.changes >= 3, timeout=15)  # lost, then regained
        assert wait_for(lambda: "" in heard, timeout=15)  # the listener says it may have missed something
        heard.clear()
        s.put_rollout(store.Rollout(DS, 2, 2, store.COMPLETE))
        assert wait_for(lambda: heard == ["a"], timeout=5)
    finally:
        listener.stop()
        elector.stop()
        s.close()
