"""The rollout state of `nodeagent serve`: revision history, rollout phase and flags, node assignments.

Everything the rollout controller needs to resume exactly after a restart lives here, behind the small
`Store` protocol, so that a shared database (PostgreSQL, issue 18) can replace the SQLite file for several
`serve` replicas. Values in and out are frozen dataclasses; templates are JSON text (the raw object
as published), never parsed objects, so that any implementation stores them the same way.

`SqliteStore` uses the standard library's sqlite3 in `--state-dir` (default /var/lib/nodeagent-serve).
Its schema is versioned: `MIGRATIONS[i]` takes the schema from version i to i+1, each in one
transaction, and `schema_version` records how far a file has come. The SQL is kept portable (no
SQLite-only types or upserts beyond `INSERT ... ON CONFLICT`, which PostgreSQL has too).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from nodeagent import errors

DEFAULT_STATE_DIR = "/var/lib/nodeagent-serve"
DB_FILE = "rollouts.sqlite3"

KIND_DAEMONSET = "DaemonSet"
KIND_CONFIG = "Config"  # a ConfigMap/Secret a roll-config DaemonSet uses: name is "ConfigMap/x" or "Secret/x"

# Phases of a rollout (the `phase` of /api/daemonsets).
PROGRESSING = "Progressing"
PAUSED = "Paused"
COMPLETE = "Complete"
FAILED = "Failed"
ROLLED_BACK = "RolledBack"
PHASES = (PROGRESSING, PAUSED, COMPLETE, FAILED, ROLLED_BACK)


@dataclass(frozen=True, order=True)
class Key:
    """What a revision history belongs to: a DaemonSet, or a config object (KIND_CONFIG)."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Revision:
    """One ControllerRevision: number (1, 2, ...), template hash, the template (JSON), when first seen."""

    key: Key
    number: int
    hash: str
    template: str
    created_at: float
    change_cause: str = ""


@dataclass(frozen=True)
class Rollout:
    """A DaemonSet's rollout: the revision being rolled out (`update`), the last one that completed
    (`current`), its phase, the operator's flags, and the times the deadline and blast radius need."""

    key: Key
    update_revision: int
    current_revision: int
    phase: str
    paused: bool = False
    message: str = ""
    started_at: float = 0.0
    progress_at: float = 0.0  # last time a node became available on the update revision
    failed_revision: int = 0  # not handed out again until the template changes (auto-rollback)
    failed_at: float = 0.0
    reverted_at: float = 0.0
    pinned: bool = False  # undo: the served revision differs from the file until the file changes
    file_hash: str = ""  # the template hash of the file when this rollout state was decided
    restart_nonce: int = 0  # `rollout restart` count: part of the served template
    exposed_nodes: int = 0  # nodes handed the update revision in this rollout (blast radius)


@dataclass(frozen=True)
class Assignment:
    """The revision the rollout hands to one node, and when it was handed out."""

    key: Key
    node: str
    revision: int
    assigned_at: float


class Store(Protocol):
    """Persistence of rollouts; every call is atomic on its own, `transaction()` groups several."""

    def revisions(self, key: Key) -> list[Revision]:
        """The history, oldest first."""
        ...

    def add_revision(self, rev: Revision) -> None: ...

    def delete_revisions(self, key: Key, numbers: Sequence[int]) -> None: ...

    def rollout(self, key: Key) -> Rollout | None: ...

    def put_rollout(self, r: Rollout) -> None: ...

    def rollouts(self) -> list[Rollout]: ...

    def assignments(self, key: Key) -> list[Assignment]: ...

    def put_assignments(self, items: Sequence[Assignment]) -> None: ...

    def delete_assignments(self, key: Key, nodes: Sequence[str]) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group the calls made inside into one transaction."""
        ...

    def close(self) -> None: ...


# MIGRATIONS[i] upgrades the schema from version i to version i+1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE revisions (
            kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL,
            hash TEXT NOT NULL, template TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            change_cause TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (kind, namespace, name, number))""",
        """CREATE TABLE rollouts (
            kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
            update_revision INTEGER NOT NULL, current_revision INTEGER NOT NULL, phase TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
            started_at DOUBLE PRECISION NOT NULL DEFAULT 0, progress_at DOUBLE PRECISION NOT NULL DEFAULT 0,
            failed_revision INTEGER NOT NULL DEFAULT 0, failed_at DOUBLE PRECISION NOT NULL DEFAULT 0,
            reverted_at DOUBLE PRECISION NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0,
            file_hash TEXT NOT NULL DEFAULT '', restart_nonce INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (kind, namespace, name))""",
        """CREATE TABLE assignments (
            kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, node TEXT NOT NULL,
            revision INTEGER NOT NULL, assigned_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (kind, namespace, name, node))""",
    ),
    ("ALTER TABLE rollouts ADD COLUMN exposed_nodes INTEGER NOT NULL DEFAULT 0",),
)
SCHEMA_VERSION = len(MIGRATIONS)

_ROLLOUT_COLUMNS = (
    "update_revision, current_revision, phase, paused, message, started_at, progress_at, failed_revision, "
    "failed_at, reverted_at, pinned, file_hash, restart_nonce, exposed_nodes"
)


class StoreError(errors.ConfigError):
    """`serve --state-dir` cannot be used (unwritable, unreadable, or written by a newer nodeagent)."""


class SqliteStore:
    """The Store in one SQLite file; one connection shared by serve's threads under a lock."""

    def __init__(self, state_dir: str) -> None:
        """`state_dir` ":memory:" keeps the state in memory (tests, and `serve` embedded in-process)."""
        if state_dir == ":memory:":
            self.path = state_dir
        else:
            self.path = os.path.join(state_dir, DB_FILE)
            try:
                os.makedirs(state_dir, mode=0o700, exist_ok=True)
            except OSError as e:
                raise StoreError(f"--state-dir {state_dir}: {e.strerror or e}") from e
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _migrate(self) -> None:
        with self.transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if row is None:
                self._db.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this nodeagent's ({SCHEMA_VERSION})"
                )
            for step in MIGRATIONS[version:]:
                for sql in step:
                    self._db.execute(sql)
            self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _key_rows(self, sql: str, key: Key) -> list[Any]:
        """What `sql`, with its `kind = ? AND namespace = ? AND name = ?` bound to `key`, reads."""
        with self._lock:
            return self._db.execute(sql, (key.kind, key.namespace, key.name)).fetchall()

    def revisions(self, key: Key) -> list[Revision]:
        rows = self._key_rows(
            "SELECT number, hash, template, created_at, change_cause FROM revisions "
            "WHERE kind = ? AND namespace = ? AND name = ? ORDER BY number",
            key,
        )
        return [Revision(key, int(n), str(h), str(t), float(c), str(cc)) for n, h, t, c, cc in rows]

    def add_revision(self, rev: Revision) -> None:
        k = rev.key
        with self.transaction():
            self._db.execute(
                "INSERT INTO revisions (kind, namespace, name, number, hash, template, created_at, "
                "change_cause) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    k.kind,
                    k.namespace,
                    k.name,
                    rev.number,
                    rev.hash,
                    rev.template,
                    rev.created_at,
                    rev.change_cause,
                ),
            )

    def _delete_key_rows(self, table: str, column: str, key: Key, values: Sequence[object]) -> None:
        """Deletes `key`'s rows of `table` whose `column` is one of `values`, in one transaction."""
        with self.transaction():
            for v in values:
                self._db.execute(
                    f"DELETE FROM {table} WHERE kind = ? AND namespace = ? AND name = ? AND {column} = ?",
                    (key.kind, key.namespace, key.name, v),
                )

    def delete_revisions(self, key: Key, numbers: Sequence[int]) -> None:
        self._delete_key_rows("revisions", "number", key, numbers)

    def rollout(self, key: Key) -> Rollout | None:
        rows = self._key_rows(
            f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE kind = ? AND namespace = ? AND name = ?", key
        )
        return _rollout(key, rows[0]) if rows else None

    def rollouts(self) -> list[Rollout]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT kind, namespace, name, {_ROLLOUT_COLUMNS} FROM rollouts "
                "ORDER BY kind, namespace, name"
            ).fetchall()
        return [_rollout(Key(str(r[0]), str(r[1]), str(r[2])), r[3:]) for r in rows]

    def put_rollout(self, r: Rollout) -> None:
        k = r.key
        values = (
            r.update_revision,
            r.current_revision,
            r.phase,
            int(r.paused),
            r.message,
            r.started_at,
            r.progress_at,
            r.failed_revision,
            r.failed_at,
            r.reverted_at,
            int(r.pinned),
            r.file_hash,
            r.restart_nonce,
            r.exposed_nodes,
        )
        names = [c.strip() for c in _ROLLOUT_COLUMNS.split(",")]
        updates = ", ".join(f"{c} = excluded.{c}" for c in names)
        with self.transaction():
            self._db.execute(
                f"INSERT INTO rollouts (kind, namespace, name, {_ROLLOUT_COLUMNS}) "
                f"VALUES (?, ?, ?, {', '.join('?' * len(values))}) "
                f"ON CONFLICT (kind, namespace, name) DO UPDATE SET {updates}",
                (k.kind, k.namespace, k.name, *values),
            )

    def assignments(self, key: Key) -> list[Assignment]:
        rows = self._key_rows(
            "SELECT node, revision, assigned_at FROM assignments "
            "WHERE kind = ? AND namespace = ? AND name = ? ORDER BY node",
            key,
        )
        return [Assignment(key, str(n), int(r), float(t)) for n, r, t in rows]

    def put_assignments(self, items: Sequence[Assignment]) -> None:
        with self.transaction():
            for a in items:
                k = a.key
                self._db.execute(
                    "INSERT INTO assignments (kind, namespace, name, node, revision, assigned_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, namespace, name, node) "
                    "DO UPDATE SET revision = excluded.revision, assigned_at = excluded.assigned_at",
                    (k.kind, k.namespace, k.name, a.node, a.revision, a.assigned_at),
                )

    def delete_assignments(self, key: Key, nodes: Sequence[str]) -> None:
        self._delete_key_rows("assignments", "node", key, nodes)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _rollout(key: Key, row: Sequence[object]) -> Rollout:
    u, c, phase, paused, msg, started, progress, failed, failed_at, reverted, pinned, fh, nonce, exposed = row
    return Rollout(
        key=key,
        update_revision=int(str(u)),
        current_revision=int(str(c)),
        phase=str(phase),
        paused=bool(paused),
        message=str(msg),
        started_at=float(str(started)),
        progress_at=float(str(progress)),
        failed_revision=int(str(failed)),
        failed_at=float(str(failed_at)),
        reverted_at=float(str(reverted)),
        pinned=bool(pinned),
        file_hash=str(fh),
        restart_nonce=int(str(nonce)),
        exposed_nodes=int(str(exposed)),
    )
