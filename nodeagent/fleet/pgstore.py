"""The rollout Store in PostgreSQL, shared by several `serve` replicas (`serve --store postgresql://...`).

Why PostgreSQL rather than a home-made consensus: it already gives the three things replicas need, each
with a well-understood failure mode. Transactions keep the rollout state consistent; a session-level
advisory lock elects one leader and is released by the server the moment the holder's connection dies
(a killed replica is replaced within a poll interval); LISTEN/NOTIFY tells every replica about a
change decided on another one, so a watch held anywhere wakes within about a second.

`PgStore` runs the very SQL of `store.SqliteStore` (kept portable for this) on a psycopg 3 connection
pool: it subclasses it and swaps the sqlite3 connection for `_PgDb`, an adapter with the same
`execute` that turns `?` into `%s`. So the two stores cannot drift apart: a new column or method in
the SQLite store is the PostgreSQL store's too, and the shared table tests run on both.

Beyond the rollout state it keeps every node's latest report (`node_reports`, with the events the
report carries), so each replica's fleet view shows every node whichever replica it reports to.

Schema migrations are versioned (store.MIGRATIONS, then PG_MIGRATIONS) and applied at start inside a
transaction holding an advisory lock: two replicas starting at once apply them once, one after the other.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import structlog

from nodeagent.fleet import store
from nodeagent.fleet import view as fleet

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Advisory lock keys (bigint; below 2**31 so pg_locks shows them as classid 0, objid KEY).
MIGRATION_LOCK = 0x6E610001
LEADER_LOCK = 0x6E610002
REPORTS_LOCK = 0x6E610003  # writers of node_reports one at a time: `seq` then commits in its own order
CHANNEL = "nodeagent_store"  # NOTIFY channel: the payload is the replica that committed a change

# PG_MIGRATIONS[i] takes the PostgreSQL-only tables from version i to i+1 (after store.MIGRATIONS).
PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE SEQUENCE node_reports_seq",
        """CREATE TABLE node_reports (
            node TEXT PRIMARY KEY, doc TEXT NOT NULL, doc_hash TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL, deleted BOOLEAN NOT NULL DEFAULT FALSE,
            seq BIGINT NOT NULL DEFAULT nextval('node_reports_seq'), replica TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX node_reports_by_seq ON node_reports (seq)",
        """CREATE TABLE actions (
            id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
            action TEXT NOT NULL, arg INTEGER NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL,
            replica TEXT NOT NULL, result TEXT)""",
    ),
)

KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


def _psycopg() -> Any:
    """psycopg is imported only for a postgresql:// store (the SQLite default needs no libpq)."""
    import psycopg  # lazy: only a postgresql:// store needs libpq; the SQLite default must not

    return psycopg


def default_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(url: str | None, state_dir: str, replica_id: str | None = None) -> store.SqliteStore:
    """The store named by `serve --store URL`: `sqlite:///DIR` (the state dir; the default is
    `--state-dir`) or `postgresql://...`. Anything else is a StoreError naming the URL's scheme only
    (a URL may carry a password)."""
    if not url:
        return store.SqliteStore(state_dir)
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path.startswith("/"):
            raise store.StoreError("--store sqlite:///DIR needs an absolute directory (three slashes)")
        return store.SqliteStore(path)
    if is_postgres(url):
        return PgStore(url, replica_id=replica_id)
    scheme = url.split(":", 1)[0] if ":" in url else "(none)"
    raise store.StoreError(f"--store: unsupported URL scheme {scheme!r}: use sqlite:///DIR or postgresql://")


def redact(url: str) -> str:
    """The URL without its password: safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


class _Rows:
    """What `execute` returns: the rows, fetched before the connection goes back to the pool."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None


class _PgDb:
    """sqlite3.Connection's `execute` on a psycopg pool: inside `PgStore.transaction()` on that
    transaction's connection, otherwise on a pooled connection of its own (committed at once)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.tx: Any = None  # the connection of the transaction in progress (the store's lock held)
        self.wrote = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        return self._run(sql, lambda conn, q: _fetch(conn.execute(q, params)))

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        """One round trip for the lot (psycopg pipelines `executemany`), not one a row."""
        if seq:
            self._run(sql, lambda conn, q: conn.cursor().executemany(q, seq))

    def _run(self, sql: str, call: Callable[[Any, str], T]) -> T:
        """`call(connection, sql)` inside `PgStore.transaction()` on that transaction's connection,
        otherwise on a pooled connection of its own (one transaction, committed at once)."""
        sql = sql.replace("?", "%s")
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.wrote = True
        if self.tx is not None:
            return call(self.tx, sql)
        psycopg = _psycopg()
        for attempt in (1, 2):  # a connection cut by a server restart is discarded and retried once
            try:
                with self.pool.connection() as conn:
                    return call(conn, sql)
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise store.StoreError(f"PostgreSQL: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.close()


def _fetch(cur: Any) -> _Rows:
    return _Rows(list(cur.fetchall()) if cur.description else [])


def doc_hash(doc: str | bytes) -> str:
    """A stored report's hash, as every replica computes it (the readers compare them)."""
    return fleet.body_digest(doc.encode() if isinstance(doc, str) else doc).hex()


@dataclass(frozen=True)
class StoredReport:
    """One node's report as a replica stored it; `deleted` marks a `node delete`."""

    node: str
    doc: str
    doc_hash: str
    received_at: float
    deleted: bool
    seq: int


class PgStore(store.SqliteStore):
    """The Store on PostgreSQL (see the module docstring); `replica_id` names this replica."""

    def __init__(self, url: str, *, replica_id: str | None = None, pool_size: int = 4) -> None:
        psycopg = _psycopg()
        from psycopg_pool import ConnectionPool  # lazy: as psycopg above

        self.url = url
        self.path = redact(url)  # what SqliteStore's messages call the store
        self.replica_id = replica_id or default_replica_id()
        self._lock = threading.RLock()
        self._depth = 0
        try:  # one direct connection first: a wrong URL or a down server is an error at once
            psycopg.connect(url, connect_timeout=10, **KEEPALIVES).close()
        except psycopg.Error as exc:
            raise store.StoreError(f"{self.path}: cannot connect: {str(exc).strip()}") from exc
        pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"application_name": f"nodeagent-serve {self.replica_id}"[:63], **KEEPALIVES},
            check=ConnectionPool.check_connection,  # a connection cut by a restart is replaced
            open=False,
            name="nodeagent-store",
            timeout=5.0,  # a caller waits this long for a connection (the database restarting), then fails
            reconnect_timeout=24 * 3600.0,  # and the pool keeps trying to reconnect meanwhile
        )
        try:
            pool.open(wait=True, timeout=30)
        except Exception as exc:
            pool.close()
            raise store.StoreError(f"{self.path}: cannot connect: {exc}") from exc
        self._pg = _PgDb(pool)
        self._db = cast(sqlite3.Connection, self._pg)  # SqliteStore's SQL runs on it unchanged
        try:
            self._migrate()
        except psycopg.Error as exc:
            pool.close()
            raise store.StoreError(f"{self.path}: {exc}") from exc

    def _migrate(self) -> None:
        """store.MIGRATIONS then PG_MIGRATIONS, under an advisory lock (held until the commit), so
        replicas starting together do not race; a database from a newer nodeagent is refused."""
        with self.transaction():
            self._pg.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            for table, steps in (("schema_version", store.MIGRATIONS), ("pg_schema_version", PG_MIGRATIONS)):
                self._pg.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
                row = self._pg.execute(f"SELECT version FROM {table}").fetchone()
                if row is None:
                    self._pg.execute(f"INSERT INTO {table} (version) VALUES (0)")
                version = int(row[0]) if row else 0
                if version > len(steps):
                    raise store.StoreError(
                        f"{self.path}: {table} {version} is newer than this nodeagent's ({len(steps)})"
                    )
                for step in steps[version:]:
                    for sql in step:
                        self._pg.execute(sql)
                if version < len(steps):
                    log.info("store_migrated", table=table, to=len(steps), **{"from": version})
                self._pg.execute(f"UPDATE {table} SET version = %s", (len(steps),))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One PostgreSQL transaction (nested calls join it); a committed write NOTIFYs the replicas."""
        with self._lock:
            if self._pg.tx is not None:
                yield
                return
            psycopg = _psycopg()
            try:
                with self._pg.pool.connection() as conn:  # commits at the end, rolls back on an error
                    self._pg.tx, self._pg.wrote = conn, False
                    try:
                        yield
                        if self._pg.wrote:
                            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.replica_id))
                    finally:
                        self._pg.tx = None
            except psycopg.OperationalError as exc:
                raise store.StoreError(f"PostgreSQL: {exc}") from exc

    def schema_version(self) -> int:
        with self._lock:
            row = self._pg.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._pg.close()

    # --- node reports (every replica's fleet view shows every node) ---------------------------------

    def put_node_reports(
        self, items: Sequence[tuple[str, str, float]], hashes: Mapping[str, str] | None = None
    ) -> None:
        """(node, report JSON, received at): the latest of each, one transaction and one round trip.
        `hashes` (node -> the document's hash) spares hashing what the caller hashed already; every
        replica must hash alike (Replication: blake2b-128, hex), as readers compare them. A report
        whose document did not change keeps its stored document (PostgreSQL keeps its TOAST value):
        a heartbeat moves only `received_at` and `seq`."""
        if not items:
            return
        known = hashes or {}
        rows = [(node, doc, known.get(node) or doc_hash(doc), at, self.replica_id) for node, doc, at in items]
        with self.transaction():
            # Readers fetch `seq > last seen`: were two writers' transactions to commit out of seq
            # order, a reader could pass over the later-committed lower seq for good.
            self._pg.execute(f"SELECT pg_advisory_xact_lock({REPORTS_LOCK})")
            self._pg.executemany(
                "INSERT INTO node_reports (node, doc, doc_hash, received_at, deleted, replica) "
                "VALUES (?, ?, ?, ?, FALSE, ?) ON CONFLICT (node) DO UPDATE SET "
                "doc = CASE WHEN node_reports.doc_hash = excluded.doc_hash AND NOT node_reports.deleted "
                "THEN node_reports.doc ELSE excluded.doc END, "
                "doc_hash = excluded.doc_hash, received_at = excluded.received_at, "
                "deleted = FALSE, replica = excluded.replica, seq = nextval('node_reports_seq') "
                "WHERE node_reports.received_at <= excluded.received_at",
                rows,
            )
            self._pg.wrote = False  # reports are read by polling: no NOTIFY (hundreds a second)

    def delete_node_report(self, node: str) -> None:
        """A tombstone, so the other replicas forget the node too."""
        with self.transaction():
            self._pg.execute(f"SELECT pg_advisory_xact_lock({REPORTS_LOCK})")
            self._pg.execute(
                "UPDATE node_reports SET deleted = TRUE, seq = nextval('node_reports_seq') WHERE node = ?",
                (node,),
            )

    def node_reports_since(self, seq: int, limit: int = 10000, docs: bool = True) -> list[StoredReport]:
        """Reports stored (or deleted) after `seq`, in order. Without `docs` each comes with an empty
        `doc`: a reader that holds the document of that hash (most rows are heartbeats) need not
        fetch it; it asks `node_report_docs` for the others."""
        column = "doc" if docs else "''"
        with self._lock:
            rows = self._pg.execute(
                f"SELECT node, {column}, doc_hash, received_at, deleted, seq FROM node_reports "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [StoredReport(str(n), str(d), str(h), float(t), bool(x), int(s)) for n, d, h, t, x, s in rows]

    def node_report_docs(self, nodes: Sequence[str]) -> dict[str, tuple[str, str]]:
        """node -> (report JSON, its hash) as stored now, for the nodes that have one."""
        if not nodes:
            return {}
        with self._lock:
            rows = self._pg.execute(
                "SELECT node, doc, doc_hash FROM node_reports WHERE node = ANY(?) AND NOT deleted",
                (list(nodes),),
            ).fetchall()
        return {str(n): (str(d), str(h)) for n, d, h in rows}

    # --- operator actions queued by a follower for the leader (fleet/replicas.py) --------------------

    def queue_action(self, key: store.Key, action: str, arg: int) -> int:
        with self.transaction():
            row = self._pg.execute(
                "INSERT INTO actions (kind, namespace, name, action, arg, created_at, replica) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (key.kind, key.namespace, key.name, action, arg, time.time(), self.replica_id),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def action_result(self, number: int) -> str | None:
        with self._lock:
            row = self._pg.execute("SELECT result FROM actions WHERE id = ?", (number,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def cancel_action(self, number: int) -> None:
        with self.transaction():
            self._pg.execute("DELETE FROM actions WHERE id = ? AND result IS NULL", (number,))

    def pending_actions(self) -> list[tuple[int, store.Key, str, int]]:
        with self._lock:
            rows = self._pg.execute(
                "SELECT id, kind, namespace, name, action, arg FROM actions WHERE result IS NULL ORDER BY id"
            ).fetchall()
        return [(int(i), store.Key(str(k), str(ns), str(n)), str(a), int(x)) for i, k, ns, n, a, x in rows]

    def finish_action(self, number: int, result: str) -> None:
        with self.transaction():
            self._pg.execute("UPDATE actions SET result = ? WHERE id = ?", (result, number))
            self._pg.execute(
                "DELETE FROM actions WHERE result IS NOT NULL AND created_at < ?", (time.time() - 3600,)
            )

    def leader(self) -> str | None:
        """The replica holding the leader lock (its application_name), or None."""
        with self._lock:
            row = self._pg.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = ? AND l.granted",
                (LEADER_LOCK,),
            ).fetchone()
        if row is None:
            return None
        name = str(row[0])
        return name.removeprefix("nodeagent-serve ")


# --- leader election and change notifications: each on a dedicated connection ----------------------------


class _Session:
    """A dedicated autocommit connection, reopened after a failure (with a capped back-off)."""

    def __init__(self, url: str, application_name: str) -> None:
        self.url = url
        self.application_name = application_name[:63]
        self.conn: Any = None
        self._backoff = 0.5

    def connect(self) -> Any:
        if self.conn is None or self.conn.closed:
            psycopg = _psycopg()
            self.conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=5,
                application_name=self.application_name,
                **KEEPALIVES,
            )
            self._backoff = 0.5
        return self.conn

    def drop(self) -> float:
        """Close after a failure; how long to wait before reconnecting."""
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        self.conn = None
        wait, self._backoff = self._backoff, min(self._backoff * 2, 5.0)
        return wait


class _Worker:
    """A thread on a dedicated `_Session`; stop() ends both (the session's locks and LISTENs go with it)."""

    thread_name = "pgstore"

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._stopped()
        self._session.drop()

    def _stopped(self) -> None:
        pass

    def _run(self) -> None:
        raise NotImplementedError


class Elector(_Worker):
    """Leader election: `pg_try_advisory_lock(LEADER_LOCK)` on a connection of its own, retried every
    `interval`. PostgreSQL releases the lock when that connection ends, so a killed leader (or one
    cut off from the database) is replaced within about an interval plus TCP keepalive time. The
    leader checks its connection every interval and stops leading the moment the check fails.
    `on_change(is_leader)` is called on every change (from the elector's thread)."""

    def __init__(
        self,
        url: str,
        replica_id: str,
        on_change: Callable[[bool], None] | None = None,
        *,
        interval: float = 1.0,
    ) -> None:
        super().__init__(_Session(url, f"nodeagent-serve {replica_id}"))
        self.replica_id = replica_id
        self._on_change = on_change
        self._interval = interval
        self._leading = threading.Event()
        self.since: float | None = None  # when this replica became the leader
        self.changes = 0

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    thread_name = "leader-election"

    def _stopped(self) -> None:
        self._set(False)  # and the lock goes with the connection

    def wait_leader(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    def _set(self, leading: bool) -> None:
        if leading == self._leading.is_set():
            return
        if leading:
            self._leading.set()
            self.since = time.time()
        else:
            self._leading.clear()
            self.since = None
        self.changes += 1
        log.info("leader_elected" if leading else "leader_lost", replica=self.replica_id)
        if self._on_change is not None:
            try:
                self._on_change(leading)
            except Exception:
                log.exception("leader_callback_failed")

    def step(self) -> float:
        """One round; how long to wait before the next."""
        try:
            conn = self._session.connect()
            if self._leading.is_set():
                conn.execute("SELECT 1")
            else:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
                self._set(bool(row and row[0]))
            return self._interval
        except Exception as exc:
            if self._leading.is_set() or self._session.conn is not None:
                log.warning("leader_connection_failed", error=str(exc).strip())
            self._set(False)
            return self._session.drop()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.step()
            self._stop.wait(wait)


class Listener(_Worker):
    """LISTENs on CHANNEL on a connection of its own and calls `on_notify(replica)` for each change
    committed by any replica (this one included); after each (re)connect it calls `on_notify("")`
    once, since changes made while it was not listening were not heard."""

    def __init__(self, url: str, replica_id: str, on_notify: Callable[[str], None]) -> None:
        super().__init__(_Session(url, f"nodeagent-serve {replica_id} listen"))
        self._on_notify = on_notify
        self.connected = threading.Event()

    thread_name = "store-listener"

    def _call(self, payload: str) -> None:
        try:
            self._on_notify(payload)
        except Exception:
            log.exception("store_notify_callback_failed")

    def _run(self) -> None:
        heard_before = False
        while not self._stop.is_set():
            try:
                conn = self._session.connect()
                conn.execute(f"LISTEN {CHANNEL}")
                self.connected.set()
                if heard_before:
                    log.info("store_listener_reconnected")
                heard_before = True
                self._call("")  # what was committed before LISTEN took effect was not heard
                while not self._stop.is_set():
                    first = list(conn.notifies(timeout=0.5, stop_after=1))
                    if not first:
                        continue
                    more = list(conn.notifies(timeout=0.02))  # a burst of commits: one reload
                    for payload in sorted({str(n.payload) for n in first + more}):
                        self._call(payload)
            except Exception as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                log.warning("store_listener_failed", error=str(exc).strip())
                self._stop.wait(self._session.drop())
