"""Several `serve` replicas on one PostgreSQL store (`serve --store postgresql://...`).

Every replica serves bundles, watches and the fleet view; exactly one, the leader (fleet/pgstore.py's
`Elector`), decides rollouts. The rest follows from that:

- `ReplicatedController` is the rollout controller of fleet/controller.py with one rule added: only the
  leader's decisions are written and handed out. A follower plans too (so its views show waves and
  counts), when a view is read, on copies of the state against a read-only store, and puts the
  originals back, so the bundles it serves always carry the leader's assignments. Whenever another
  replica commits a change, its NOTIFY reloads the state here and wakes the watches (`cond`), so a
  watch held on any replica wakes within about a second of a wave decided on another.
- An operator's action (pause, resume, undo, restart) sent to a follower is queued in the database
  and applied by the leader, and the follower answers once it has been: `rollout pause` returning means
  the pause holds, whichever replica took it. Without a leader the action fails after a timeout.
- Node reports are shared (`Replication`): each replica writes the reports it receives in batches and
  reads the others' every PULL_INTERVAL, so every replica knows every node, and the leader plans with
  the whole fleet, at once when a pulled report changes what it reads (`on_changed`). A report that
  cannot be written (the database is restarting) is kept and retried.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import structlog

from nodeagent.fleet import controller, pgstore, store
from nodeagent.fleet import view as fleet

log = structlog.get_logger(__name__)

ACTION_TIMEOUT = 10.0  # how long a follower waits for the leader to apply an operator's action
FOLLOWER_PLAN_INTERVAL = 1.0  # a follower's plans (views only) are made when read, at most this often
FOLLOWER_REFRESH_INTERVAL = 10.0  # and it re-reads the shared state at least this often (NOTIFY aside)
# node reports are written in batches this often, and the other replicas' read this often: a node's
# availability reported to a follower reaches the leader's pass within about 0.3 s, not 0.75 s (a wave's
# budget is 1 s; the CPU did not move measurably in the 5000-node bench)
FLUSH_INTERVAL = 0.1
PULL_INTERVAL = 0.2


class _ReadOnly:
    """A Store whose writes go nowhere: a follower's controller plans with it, decides nothing."""

    def __init__(self, st: store.Store) -> None:
        self._st = st

    def revisions(self, key: store.Key) -> list[store.Revision]:
        return self._st.revisions(key)

    def rollout(self, key: store.Key) -> store.Rollout | None:
        return self._st.rollout(key)

    def rollouts(self) -> list[store.Rollout]:
        return self._st.rollouts()

    def assignments(self, key: store.Key) -> list[store.Assignment]:
        return self._st.assignments(key)

    def add_revision(self, rev: store.Revision) -> None:
        pass

    def delete_revisions(self, key: store.Key, numbers: Sequence[int]) -> None:
        pass

    def put_rollout(self, r: store.Rollout) -> None:
        pass

    def put_assignments(self, items: Sequence[store.Assignment]) -> None:
        pass

    def delete_assignments(self, key: store.Key, nodes: Sequence[str]) -> None:
        pass

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass


class ReplicatedController(controller.Controller):
    """fleet/controller.py's Controller, deciding only while `is_leader()` (see the module docstring)."""

    def __init__(
        self,
        st: pgstore.PgStore,
        is_leader: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        grace: float = fleet.DEFAULT_GRACE,
    ) -> None:
        super().__init__(st, clock, grace)
        self.pg = st
        self._is_leader = is_leader
        self._planned_at = 0.0
        self._planned_for: Sequence[object] = ()
        # the inputs of the last sync a follower has not planned yet (its views plan them when read)
        self._deferred: (
            tuple[Sequence[object], Mapping[str, fleet.NodeReport], Callable[[fleet.NodeReport], bool]] | None
        ) = None
        self.refreshes = 0
        self._refreshed_at = 0.0
        self._led_since_refresh = False  # settled(): a leader's pass ran since the last refresh

    # --- the state: reloaded whenever another replica changed it ----------------------------------------

    def refresh(self) -> None:
        """Reload rollouts, revisions and assignments from the store, and wake the watches. Read
        first, swapped in after: a failed read (the database restarting) leaves the state as it was."""
        with self.cond:  # held while reading too: the leader's own writes must not interleave
            rollouts = self.pg.rollouts()
            revs = {r.key: self.pg.revisions(r.key) for r in rollouts}
            assign = {r.key: {a.node: a.revision for a in self.pg.assignments(r.key)} for r in rollouts}
            before = self._served_state()
            self.store = self.pg
            self._rollouts = {r.key: r for r in rollouts}
            self._revs = revs
            self._assign = assign
            self.refreshes += 1
            self._refreshed_at = time.monotonic()
            self._led_since_refresh = False
            self._wake_changed(before)  # only the nodes another replica's decision concerns

    def changed_elsewhere(self, replica: str) -> None:
        """A NOTIFY (`replica` committed a change; "" after a reconnect: anything may have changed)."""
        if replica == self.pg.replica_id:
            return
        self.refresh()
        if self._is_leader():
            self.apply_actions()

    def leadership(self, leading: bool) -> None:
        """The elector's callback: a new leader starts from what the store holds."""
        self.refresh()
        if leading:
            self.apply_actions()

    # --- deciding -------------------------------------------------------------------------------------

    def sync(
        self,
        objects: Sequence[object],
        nodes: Mapping[str, fleet.NodeReport],
        ready: Callable[[fleet.NodeReport], bool],
    ) -> None:
        if self._is_leader():
            try:
                with self.cond:
                    super().sync(objects, nodes, ready)
                    self._led_since_refresh = True
            except Exception:
                with contextlib.suppress(Exception):
                    self.refresh()  # whatever failed, start the next sync from what the store holds
                raise
            return
        now = time.monotonic()
        with self.cond:
            self._deferred = (objects, nodes, ready)
            if objects is not self._planned_for:
                self._plan_deferred(now)  # a new bundle: node bundles read its DaemonSets (_daemonsets)
            stale = now - self._refreshed_at >= FOLLOWER_REFRESH_INTERVAL
        if stale:
            self.refresh()

    def next_flip(self) -> float:
        """A follower hands out nothing: no pod's availability is a reason for it to plan."""
        return super().next_flip() if self._is_leader() else math.inf

    def settled(self) -> bool:
        """A follower's passes only keep its inputs for its views (and refresh a stale state), which
        costs little: it always takes them. A leader is settled once it has run a pass of its own over
        the state last read from the store (a new leader, or another replica's change)."""
        return self._is_leader() and self._led_since_refresh and super().settled()

    def _before_view(self) -> None:
        """A follower plans for its views when one is read (rollout status, the fleet page, /metrics),
        at most once a FOLLOWER_PLAN_INTERVAL, not every second for nobody (a pass over every node and
        DaemonSet). Its bundles need no plan: the leader's assignments arrive by NOTIFY."""
        if self._is_leader():
            return
        now = time.monotonic()
        with self.cond:
            if self._deferred is not None and now - self._planned_at >= FOLLOWER_PLAN_INTERVAL:
                self._plan_deferred(now)

    def _plan_deferred(self, now: float) -> None:
        """Plan the last inputs `sync` was given, on copies of the state (under `cond`; callers check
        that there are some)."""
        assert self._deferred is not None
        objects, nodes, ready = self._deferred
        self._deferred = None
        self._planned_at, self._planned_for = now, objects
        kept = (self._rollouts, self._revs, self._assign)
        self._rollouts, self._revs = dict(kept[0]), dict(kept[1])
        self._assign = {k: dict(v) for k, v in kept[2].items()}
        self.store = _ReadOnly(self.pg)
        try:
            controller.Controller.sync(self, objects, nodes, ready)  # for the views, on copies
        finally:
            # its decisions are discarded: the bundles carry what the leader decided, which a
            # NOTIFY brings (refresh). Reading it all back after every plan was 5000 assignment rows
            # a second; a refresh every FOLLOWER_REFRESH_INTERVAL stays, in case a NOTIFY was lost.
            self._rollouts, self._revs, self._assign = kept
            self.store = self.pg

    # --- operator actions: applied by the leader ------------------------------------------------------

    def pause(self, key: store.Key, paused: bool) -> None:
        if self._is_leader():
            super().pause(key, paused)
        else:
            self._forward(key, "pause" if paused else "resume", 0)

    def undo(self, key: store.Key, to_revision: int = 0) -> None:
        if self._is_leader():
            super().undo(key, to_revision)
        else:
            self._forward(key, "undo", to_revision)

    def restart(self, key: store.Key) -> None:
        if self._is_leader():
            super().restart(key)
        else:
            self._forward(key, "restart", 0)

    def _forward(self, key: store.Key, action: str, arg: int) -> None:
        """Queue the action for the leader and wait until it has been applied (or refused)."""
        number = self.pg.queue_action(key, action, arg)
        deadline = time.monotonic() + ACTION_TIMEOUT
        while time.monotonic() < deadline:
            result = self.pg.action_result(number)
            if result is not None:
                self.refresh()
                if result == "ok":
                    return
                if result == "notfound":
                    raise KeyError(key)
                raise controller.RolloutError(result)
            time.sleep(0.05)
        self.pg.cancel_action(number)
        raise controller.RolloutError(f"no leader applied the {action} within {ACTION_TIMEOUT:g}s; try again")

    def apply_actions(self) -> None:
        """The leader applies the actions followers queued, in order."""
        for number, key, action, arg in self.pg.pending_actions():
            try:
                if action in ("pause", "resume"):
                    super().pause(key, action == "pause")
                elif action == "undo":
                    super().undo(key, arg)
                elif action == "restart":
                    super().restart(key)
                result = "ok"
            except KeyError:
                result = "notfound"
            except (controller.RolloutError, ValueError) as exc:
                result = str(exc) or "refused"
            self.pg.finish_action(number, result)
            log.info("rollout_action_applied", action=action, namespace=key.namespace, daemonset=key.name)


class Replication:
    """The replica's part in the set: leader election, change notifications, shared node reports.

    `fleet_of()` gives the server's (Fleet, lock) pair; reports pulled from the store go into it.
    """

    def __init__(
        self,
        st: pgstore.PgStore,
        fleet_of: Callable[[], tuple[fleet.Fleet, threading.Lock]],
        *,
        clock: Callable[[], float] = time.time,
        grace: float = fleet.DEFAULT_GRACE,
        election_interval: float = 1.0,
    ) -> None:
        self.store = st
        self.replica_id = st.replica_id
        self._fleet_of = fleet_of
        self.elector = pgstore.Elector(st.url, st.replica_id, self._leadership, interval=election_interval)
        self.controller = ReplicatedController(st, lambda: self.elector.is_leader, clock, grace)
        self.listener = pgstore.Listener(st.url, st.replica_id, self.controller.changed_elsewhere)
        self._pending: dict[str, tuple[str, float, str]] = {}  # node -> (report JSON, received at, hash)
        self._pending_lock = threading.Lock()
        self._hashes: dict[str, str] = {}  # node -> hash of the last report applied from the store
        self._seq = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._leader_cache: tuple[float, str | None] = (0.0, None)
        self.on_leadership: Callable[[bool], None] | None = None
        self.on_changed: Callable[[], None] | None = None  # a pull changed what the controller reads

    def _leadership(self, leading: bool) -> None:
        self.controller.leadership(leading)
        if self.on_leadership is not None:
            self.on_leadership(leading)

    def start(self) -> None:
        self.pull()
        self.listener.start()
        self.elector.start()
        for target, name in ((self._flusher, "reports-writer"), (self._puller, "reports-reader")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        self.flush()
        self.elector.stop()
        self.listener.stop()

    # --- node reports ---------------------------------------------------------------------------------

    def reported(self, node: str, doc: str, received_at: float, digest: str = "") -> None:
        """A report this replica accepted: written with the next batch. `digest` is the document's
        `pgstore.doc_hash` when the caller has it (serve hashes every body it is posted)."""
        digest = digest or pgstore.doc_hash(doc)
        with self._pending_lock:
            self._pending[node] = (doc, received_at, digest)
        self._hashes[node] = digest

    def deleted(self, node: str) -> None:
        with self._pending_lock:
            self._pending.pop(node, None)
        try:
            self.store.delete_node_report(node)
        except store.StoreError as exc:
            log.warning("node_delete_not_shared", node=node, error=str(exc))

    def flush(self) -> bool:
        """Write the pending reports; on failure they stay pending (newer ones replace them)."""
        with self._pending_lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return True
        try:
            self.store.put_node_reports(
                [(n, d, t) for n, (d, t, _) in sorted(batch.items())],
                {n: h for n, (_, _, h) in batch.items()},
            )
            return True
        except Exception as exc:
            with self._pending_lock:
                for n, item in batch.items():
                    self._pending.setdefault(n, item)
            log.warning("node_reports_not_written", error=str(exc).strip(), pending=len(batch))
            return False

    def pull(self) -> int:
        """Apply the reports other replicas stored since the last pull; how many. Rows come without
        their documents; only those whose hash differs from the report this replica holds are fetched
        (most rows are heartbeats: reading every document was a tenth of a replica's CPU)."""
        try:
            rows = self.store.node_reports_since(self._seq, docs=False)
        except Exception as exc:
            log.warning("node_reports_not_read", error=str(exc).strip())
            return 0
        if not rows:
            return 0
        fl, lock = self._fleet_of()
        with lock:
            current = {r.node: fl.nodes.get(r.node) for r in rows}
        fresh = [
            r
            for r in rows
            if not r.deleted
            and not ((mine := current.get(r.node)) is not None and mine.received_at >= r.received_at)
            and not (mine is not None and self._hashes.get(r.node) == r.doc_hash)
        ]
        try:
            docs = self.store.node_report_docs(sorted({r.node for r in fresh}))
        except Exception as exc:
            log.warning("node_reports_not_read", error=str(exc).strip())
            return 0
        parsed: list[fleet.NodeReport | str] = []
        for r in rows:
            mine = current.get(r.node)
            if r.deleted:
                parsed.append(r.node)
                self._hashes.pop(r.node, None)
                continue
            if mine is not None and mine.received_at >= r.received_at:
                continue  # ours is as new (it may well be this very report)
            if mine is not None and self._hashes.get(r.node) == r.doc_hash:
                parsed.append(mine.heard_at(r.received_at))  # a heartbeat
                continue
            doc, digest = docs.get(r.node, ("", ""))
            if not doc:
                continue  # deleted meanwhile: its tombstone comes with the next pull
            try:
                # the document may be newer than this row (stored between the two reads): its own hash
                parsed.append(fleet.parse_report(json.loads(doc), r.node, r.received_at, mine))
                self._hashes[r.node] = digest
            except (ValueError, fleet.ReportError) as exc:
                log.warning("node_report_unreadable", node=r.node, error=str(exc))
        with lock:
            changes = fl.changes
            for item in parsed:
                if isinstance(item, str):
                    fl.delete(item)
                else:
                    have = fl.nodes.get(item.name)
                    if have is None or have.received_at < item.received_at:
                        fl.report(item)
            changed = fl.changes != changes
        self._seq = rows[-1].seq
        if changed and self.on_changed is not None:
            # a node's availability reported to another replica: the leader plans now, as it does for
            # a report posted to itself, not at its next idle check (up to a second later)
            self.on_changed()
        return len(rows)

    def _flusher(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()

    def _puller(self) -> None:
        while not self._stop.wait(PULL_INTERVAL):
            while self.pull() >= 10000:
                pass

    # --- who leads ------------------------------------------------------------------------------------

    def leader(self) -> str | None:
        """The leading replica's id (this one's when it leads); looked up at most once a second."""
        if self.elector.is_leader:
            return self.replica_id
        at, who = self._leader_cache
        if time.monotonic() - at > 1.0:
            try:
                who = self.store.leader()
            except Exception:
                who = None
            self._leader_cache = (time.monotonic(), who)
        return who

    def status(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "leader": self.leader(),
            "isLeader": self.elector.is_leader,
            "leaderSince": self.elector.since,
        }

    def healthz(self) -> str:
        s = self.status()
        role = "leader" if s["isLeader"] else "follower"
        return f"replica: {s['replica']} ({role})\nleader: {s['leader'] or 'none'}\n"

    def exposition(self) -> bytes:
        """Prometheus lines saying which replica leads (appended to /metrics)."""
        s = self.status()

        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        lines = [
            "# HELP nodeagent_serve_leader 1 when this replica leads (decides rollouts), else 0.",
            "# TYPE nodeagent_serve_leader gauge",
            f'nodeagent_serve_leader{{replica="{esc(s["replica"])}"}} {1 if s["isLeader"] else 0}',
            "# HELP nodeagent_serve_leader_info The replica that leads, as this replica sees it.",
            "# TYPE nodeagent_serve_leader_info gauge",
            f'nodeagent_serve_leader_info{{leader="{esc(s["leader"] or "")}"}} 1',
        ]
        return ("\n".join(lines) + "\n").encode()


def make_controller(
    store_url: str | None,
    state_dir: str,
    fleet_of: Callable[[], tuple[fleet.Fleet, threading.Lock]],
    *,
    clock: Callable[[], float] = time.time,
    grace: float = fleet.DEFAULT_GRACE,
    replica_id: str | None = None,
) -> tuple[controller.Controller, Replication | None]:
    """`serve --store URL`: the SQLite default (one serve, no replication) or a replica on PostgreSQL."""
    if store_url and pgstore.is_postgres(store_url):
        st = pgstore.PgStore(store_url, replica_id=replica_id)
        rep = Replication(st, fleet_of, clock=clock, grace=grace)
        log.info("serve_replica", replica=st.replica_id, store=st.path)
        return rep.controller, rep
    return controller.Controller(pgstore.open_store(store_url, state_dir), clock, grace), None
