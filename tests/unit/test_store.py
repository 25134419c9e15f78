"""The rollout store: round trips, transactions, versioned migrations, reopen (a restarted serve)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nodeagent.fleet import store

KEY = store.Key(store.KIND_DAEMONSET, "default", "web")


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    s = store.SqliteStore(str(tmp_path))
    s.add_revision(store.Revision(KEY, 1, "v1-a", '{"a": 1}', 10.0, "first"))
    s.add_revision(store.Revision(KEY, 2, "v1-b", '{"a": 2}', 20.0))
    r = store.Rollout(
        KEY, update_revision=2, current_revision=1, phase=store.PROGRESSING, paused=True, file_hash="v1-b"
    )
    s.put_rollout(r)
    s.put_assignments([store.Assignment(KEY, "n1", 2, 30.0), store.Assignment(KEY, "n2", 1, 5.0)])
    s.put_assignments([store.Assignment(KEY, "n2", 2, 40.0)])
    s.close()
    s = store.SqliteStore(str(tmp_path))
    assert [v.number for v in s.revisions(KEY)] == [1, 2]
    assert s.revisions(KEY)[0].change_cause == "first"
    assert s.rollout(KEY) == r
    assert s.rollouts() == [r]
    assert [(a.node, a.revision, a.assigned_at) for a in s.assignments(KEY)] == [
        ("n1", 2, 30.0),
        ("n2", 2, 40.0),
    ]
    s.delete_revisions(KEY, [1])
    s.delete_assignments(KEY, ["n1"])
    assert [v.number for v in s.revisions(KEY)] == [2]
    assert [a.node for a in s.assignments(KEY)] == ["n2"]
    assert s.schema_version() == store.SCHEMA_VERSION


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    s = store.SqliteStore(str(tmp_path))
    with pytest.raises(RuntimeError), s.transaction():
        s.put_assignments([store.Assignment(KEY, "n1", 1, 1.0)])
        raise RuntimeError("boom")
    assert s.assignments(KEY) == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store.SqliteStore(str(tmp_path)).close()
    db = sqlite3.connect(tmp_path / store.DB_FILE)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(store.StoreError, match="newer"):
        store.SqliteStore(str(tmp_path))


def test_sqlite_store_is_a_store(tmp_path: Path) -> None:
    s: store.Store = store.SqliteStore(str(tmp_path))
    assert s.rollout(KEY) is None
