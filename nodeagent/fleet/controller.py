"""The rollout controller of `serve`: the planner (fleet/rollout.py) run over the fleet's reports, its
decisions kept in the Store, and the per-node bundles that carry them.

`sync` runs after every node report, every published bundle and every second (deadlines, nodes going
NotReady). For each DaemonSet of the bundle it records a new revision when the file's template changes
(a new rollout), asks the planner which nodes get the update revision now, judges failures (policy:
annotations.py), and rolls back when the policy says so. Everything it decides is written to the Store
before a node can see it, so a restarted `serve` resumes exactly where it was.

A node's bundle is the published bundle with each DaemonSet's `spec.template` replaced by the template
of the revision assigned to that node (a node not known yet gets the last completed revision).

Over 600 lines on purpose: one concept, the controller's state and the passes over it, all under one
lock (the pure wave planning is fleet/rollout.py, the annotations' policy annotations.py, the views
rolloutview.py); split further, its invariants would span modules that each hold part of the lock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from nodeagent import errors
from nodeagent.agent import identity
from nodeagent.fleet import annotations as rollout_annotations
from nodeagent.fleet import rollconfig, rollout, rolloutview, store
from nodeagent.fleet import view as fleet
from nodeagent.k8s import manifests, model, scheduling, selectors
from nodeagent.k8s.node import Node

log = structlog.get_logger(__name__)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CONFIG_HISTORY = 10  # config revisions kept per ConfigMap/Secret (roll-config)
VIEW_CACHE = 100_000  # cached per-node views (node_view) before that cache starts again
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerError",
        "Error",
    }
)


class RolloutError(errors.NodeAgentError, ValueError):
    """A bad rollout request (unknown revision): 400."""


@dataclass(frozen=True)
class _Seen:
    """The controller's memory of one node for one DaemonSet: the report it last read, what it derived
    from it (scheduling, canary match, pod states), and the NodeState it planned with. A report whose
    rollout-relevant parts did not change reuses all of it, so a pass costs a lookup per node."""

    report: fleet.NodeReport
    ds_report: fleet.DaemonSetReport | None
    should_run: bool
    canary: bool
    pods: tuple[rollout.PodState, ...]
    state: rollout.NodeState
    flips_at: float = math.inf  # when a pod of it becomes available by serve's clock (_pod_state)


@dataclass(frozen=True)
class _DaemonSet:
    key: store.Key
    raw: Mapping[str, Any]
    obj: model.DaemonSet
    file_hash: str
    policy: rollout.Policy


def _template_json(raw: Mapping[str, Any]) -> str:
    spec = raw.get("spec") or {}
    return json.dumps(spec.get("template") or {}, sort_keys=True)


def _with_template(raw: Mapping[str, Any], template: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(raw))
    spec = dict(out.get("spec") or {})
    spec["template"] = json.loads(template)
    out["spec"] = spec
    return out


def _hash_of(raw: Mapping[str, Any]) -> str:
    obj, _, _ = manifests.parse_object(raw, "serve", 0)
    return identity.spec_hash(obj.spec.template) if isinstance(obj, model.DaemonSet) else ""


def _pod_state(
    p: fleet.PodReport, numbers: Mapping[str, int], min_ready: int, now: float
) -> rollout.PodState:
    """The planner's view of a reported pod. Available when the node says so, or, as the DaemonSet
    controller judges it (podutil.IsPodAvailable), once it has been ready for minReadySeconds by serve's
    clock (`PodReport.ready_at`): the wave moves on when the time comes, not when a report saying so
    has travelled from the node (through another replica and the database, at worst)."""
    failing = any(c.reason in FAILING_REASONS for c in p.containers)
    available = p.available or (
        p.ready and not p.terminating and p.ready_at is not None and now - p.ready_at >= min_ready
    )
    return rollout.PodState(numbers.get(p.revision, 0), available, failing, p.terminating)


def _flips_at(pods: Sequence[fleet.PodReport], states: Sequence[rollout.PodState], min_ready: int) -> float:
    """When the first of `pods` not available yet becomes available by serve's clock (inf: none will
    without a new report)."""
    return min(
        (
            p.ready_at + min_ready
            for p, st in zip(pods, states, strict=True)
            if not st.available and p.ready and not p.terminating and p.ready_at is not None
        ),
        default=math.inf,
    )


class Controller:
    """Thread-safe; `cond` is notified whenever any node's bundle may have changed."""

    def __init__(
        self, st: store.Store, clock: Callable[[], float] = time.time, grace: float = fleet.DEFAULT_GRACE
    ) -> None:
        self.store = st
        self.clock = clock
        self.grace = grace
        self.started = clock()  # until a grace period has passed, nodes that have not reported may be alive
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)  # notified when every node's bundle may differ
        self.generation = 0
        # per-node wake-ups: a pass that hands out a wave wakes that wave's watches, not the fleet's
        self._epoch = 0  # bumped when every node's bundle may differ
        self._node_versions: dict[str, int] = {}
        # node -> (its version, its view) when last computed: read without the lock (node_view)
        self._views: dict[str, tuple[tuple[int, int], tuple[object, ...]]] = {}
        self.on_wake: Callable[[frozenset[str] | None], None] | None = None  # must not block (it is called
        # under `cond`): serve's HTTP server hands it to its event loop
        self._daemonsets: dict[store.Key, _DaemonSet] = {}
        self._plans: dict[store.Key, rollout.Plan] = {}
        self._nodes: dict[store.Key, list[rollout.NodeState]] = {}
        self._assign: dict[store.Key, dict[str, int]] = {}
        self._revs: dict[store.Key, list[store.Revision]] = {}
        self._rollouts: dict[store.Key, store.Rollout] = {}
        # incremental passes: per DaemonSet, each node's _Seen, what they were derived with, and what the
        # last full pass planned from (nothing changed since: the pass is skipped)
        self._seen: dict[store.Key, dict[str, _Seen]] = {}
        self._seen_ctx: dict[store.Key, tuple[object, ...]] = {}
        self._clean: dict[store.Key, tuple[object, ...]] = {}
        self._parsed: tuple[Sequence[object], dict[store.Key, _DaemonSet]] | None = None
        self._held: dict[store.Key, bool] = {}  # completion held until a (re)started serve's grace ends
        self.passes = 0  # full planner passes (the rest found nothing changed)
        self._next_flip = math.inf  # the last sync's earliest pod to become available by serve's clock
        for r in st.rollouts():
            self._load(r.key)

    def _load(self, key: store.Key) -> None:
        r = self.store.rollout(key)
        if r is not None:
            self._rollouts[key] = r
        self._revs[key] = self.store.revisions(key)
        self._assign[key] = {a.node: a.revision for a in self.store.assignments(key)}

    # --- sync -------------------------------------------------------------------------------------

    def sync(
        self,
        objects: Sequence[object],
        nodes: Mapping[str, fleet.NodeReport],
        ready: Callable[[fleet.NodeReport], bool],
    ) -> None:
        now = self.clock()
        with self.cond:
            if self._parsed is not None and self._parsed[0] is objects:
                seen = self._parsed[1]  # the same bundle: nothing to parse again
            else:
                seen = self._parse(objects, now)
                self._parsed = (objects, seen)
            self._daemonsets = seen
            before = self._served_state()
            self._next_flip = math.inf
            for ds in seen.values():
                self._sync_one(ds, nodes, ready, now)
            self._wake_changed(before)

    def min_ready_seconds(self) -> dict[tuple[str, str], int]:
        """(namespace, name) -> minReadySeconds of each DaemonSet of the last sync (the fleet view's
        numberAvailable, Fleet.counters)."""
        with self.cond:
            return {
                (k.namespace, k.name): ds.obj.spec.min_ready_seconds for k, ds in self._daemonsets.items()
            }

    def next_flip(self) -> float:
        """When a pod the last sync saw ready becomes available by serve's clock (minReadySeconds after
        it became ready; inf: none): a pass then moves the wave on, as the DaemonSet controller's resync
        after MinReadySeconds does."""
        with self.cond:
            return self._next_flip

    def settled(self) -> bool:
        """Whether every rollout has come to rest (complete, paused, failed, or rolled back and reverted)
        and no restarted serve's grace window holds one: a pass over unchanged reports would then decide
        nothing, as no deadline or timer of a rollout is running."""
        with self.cond:
            if any(self._held.values()):
                return False
            for key in self._daemonsets:
                r = self._rollouts.get(key)
                if r is None or r.phase == store.PROGRESSING:
                    return False
                if r.phase == store.ROLLED_BACK and not r.reverted_at:
                    return False
            return True

    # --- waking the watches ----------------------------------------------------------------------------

    def node_version(self, node: str) -> tuple[int, int]:
        """Changes whenever `node`'s bundle may have changed (what `wake` tells `on_wake`, countable)."""
        with self.cond:
            return self._epoch, self._node_versions.get(node, 0)

    def wake(self, nodes: Iterable[str] | None = None) -> None:
        """Wake the watches of `nodes` (None: of every node, and `cond`'s waiters), and tell `on_wake`
        (serve's event loop, whose watches are parked futures, not threads waiting here)."""
        which = None if nodes is None else frozenset(nodes)
        with self.cond:
            self.generation += 1
            if which is None:
                self._epoch += 1
                self.cond.notify_all()
            else:
                for n in which:
                    self._node_versions[n] = self._node_versions.get(n, 0) + 1
            if self.on_wake is not None:  # after the change is visible: a woken watch reads it
                self.on_wake(which)

    def _wake_changed(self, before: tuple[tuple[object, ...], dict[store.Key, dict[str, int]]]) -> None:
        """Wake the nodes whose bundle may differ from what `before` (_served_state) served."""
        after = self._served_state()
        if after == before:
            return
        if after[0] != before[0]:  # revisions, or what a node without an assignment gets
            self.wake()
            return
        changed: set[str] = set()
        for key in set(before[1]) | set(after[1]):
            old, new = before[1].get(key, {}), after[1].get(key, {})
            changed.update(n for n, _ in old.items() ^ new.items())  # set operations in C
        self.wake(changed)

    def _parse(self, objects: Sequence[object], now: float) -> dict[store.Key, _DaemonSet]:
        seen: dict[store.Key, _DaemonSet] = {}
        configs = _configs(objects)
        for raw in objects:
            if not isinstance(raw, dict) or raw.get("kind") != "DaemonSet":
                continue
            obj, _, _ = manifests.parse_object(raw, "serve", 0)
            if not isinstance(obj, model.DaemonSet):
                continue
            key = store.Key(store.KIND_DAEMONSET, obj.metadata.namespace, obj.metadata.name)
            pol, _problems = rollout_annotations.policy(obj.metadata.annotations)
            if pol.roll_config:
                raw = self._with_config(raw, obj.metadata.namespace, configs, now)
                obj, _, _ = manifests.parse_object(raw, "serve", 0)
                if not isinstance(obj, model.DaemonSet):
                    continue
            seen[key] = _DaemonSet(key, raw, obj, identity.spec_hash(obj.spec.template), pol)
        return seen

    def _served_state(self) -> tuple[tuple[object, ...], dict[store.Key, dict[str, int]]]:
        """What the per-node bundles are made of (node_view, node_objects): the revisions kept and what a
        node without an assignment gets, then the assignments. The rollout's other fields (times,
        counters) wake no watch."""
        keys = sorted(self._daemonsets)
        shared = tuple(
            (
                key,
                r.current_revision if (r := self._rollouts.get(key)) else 0,
                tuple(v.number for v in self._revs.get(key, [])),
            )
            for key in keys
        )
        return shared, {key: dict(self._assign.get(key, {})) for key in keys}

    def _with_config(
        self,
        raw: Mapping[str, Any],
        namespace: str,
        configs: Mapping[tuple[str, str, str], Mapping[str, Any]],
        now: float,
    ) -> dict[str, Any]:
        """roll-config: the DaemonSet annotated with the hashes of the configs it uses, each config's
        content kept as a config revision (so nodes not yet on this revision keep the old content)."""
        bindings: dict[tuple[str, str], str] = {}
        for kind, name in sorted(rollconfig.refs((raw.get("spec") or {}).get("template"))):
            obj = configs.get((kind, namespace, name))
            if obj is None:
                continue
            h = rollconfig.digest(obj)
            bindings[(kind, name)] = h
            ckey = store.Key(store.KIND_CONFIG, namespace, f"{kind}/{name}")
            revs = self._revs.setdefault(ckey, self.store.revisions(ckey))
            if not any(v.hash == h for v in revs):
                rev = store.Revision(
                    ckey, max((v.number for v in revs), default=0) + 1, h, json.dumps(obj), now
                )
                self.store.add_revision(rev)
                revs.append(rev)
                if len(revs) > CONFIG_HISTORY:
                    self.store.delete_revisions(ckey, [v.number for v in revs[:-CONFIG_HISTORY]])
                    del revs[:-CONFIG_HISTORY]
        return rollconfig.annotate(raw, bindings)

    def _new_revision(self, key: store.Key, template: str, hash_: str, now: float, cause: str) -> int:
        revs = self._revs.setdefault(key, [])
        same = [r for r in revs if r.hash == hash_]
        number = max((r.number for r in revs), default=0) + 1
        if same and same[-1].number == number - 1:
            return same[-1].number
        with self.store.transaction():
            if same:  # kubectl's renumbering: an old template rolled out again becomes the newest revision
                self.store.delete_revisions(key, [r.number for r in same])
            rev = store.Revision(key, number, hash_, template, now, cause)
            self.store.add_revision(rev)
        old_numbers = {r.number for r in same}
        self._revs[key] = [r for r in revs if r.number not in old_numbers] + [rev]
        if same:  # nodes on the renumbered revision are on the new number
            moved = {n: number for n, r in self._assign.get(key, {}).items() if r in old_numbers}
            self._put_assign(key, moved, now)
        return number

    def _prune(self, ds: _DaemonSet, r: store.Rollout) -> None:
        limit = ds.obj.spec.revision_history_limit
        revs = self._revs.get(ds.key, [])
        live = set(self._assign.get(ds.key, {}).values()) | {r.update_revision, r.current_revision}
        old = [v for v in revs if v.number not in live]
        drop = old[: max(0, len(old) - limit)]
        if drop:
            self.store.delete_revisions(ds.key, [v.number for v in drop])
            numbers = {v.number for v in drop}
            self._revs[ds.key] = [v for v in revs if v.number not in numbers]

    def _put_assign(self, key: store.Key, items: Mapping[str, int], now: float) -> None:
        cur = self._assign.setdefault(key, {})
        fresh = {n: rev for n, rev in items.items() if cur.get(n) != rev}
        if fresh:
            self.store.put_assignments(
                [store.Assignment(key, n, rev, now) for n, rev in sorted(fresh.items())]
            )
            cur.update(fresh)

    def _put(self, r: store.Rollout) -> None:
        if self._rollouts.get(r.key) != r:
            self.store.put_rollout(r)
            self._rollouts[r.key] = r
            self._clean.pop(r.key, None)

    def _sync_one(
        self,
        ds: _DaemonSet,
        reports: Mapping[str, fleet.NodeReport],
        ready: Callable[[fleet.NodeReport], bool],
        now: float,
    ) -> None:
        key = ds.key
        r = self._rollouts.get(key)
        if r is None or r.file_hash != ds.file_hash:
            number = self._new_revision(key, _template_json(ds.raw), ds.file_hash, now, "")
            if r is None:
                r = store.Rollout(key, number, number, store.PROGRESSING, started_at=now, progress_at=now)
            else:
                current = r.update_revision if r.phase == store.COMPLETE else r.current_revision
                r = _begin(r, number, current, store.PROGRESSING, "", False, now)
            r = replace(r, file_hash=ds.file_hash)
            if r.update_revision != number:
                r = replace(r, update_revision=number)
            self._put(r)
            self._prune(ds, r)
            log.info("rollout_started", namespace=key.namespace, daemonset=key.name, revision=number)
        numbers = {v.hash: v.number for v in self._revs.get(key, [])}
        dirty = self._observe(ds, reports, ready, numbers, now)
        prev = self._plans.get(key)
        clean = self._clean.get(key)
        if (
            not dirty
            and prev is not None
            and clean is not None
            and clean[0] is r
            and clean[1] is self._assign.get(key)
            and not (self._held.get(key) and now - self.started >= self.grace)  # held for the grace window
            and not self._deadline_due(r, prev, ds.policy, now)
        ):
            return  # no node changed what the planner reads, no timer is due: the same plan again
        self.passes += 1
        states = [s.state for _, s in sorted(self._seen[key].items())]
        assigned = self._assign.setdefault(key, {})
        strategy = _strategy(ds.obj)
        update = r.update_revision
        if r.phase == store.ROLLED_BACK:  # rollback is faster than rollout: every node at once
            self._put_assign(key, {n.name: update for n in states if n.assigned != update}, now)
            states = [replace(n, assigned=update) for n in states]
        p = rollout.plan(states, update, strategy, paused=r.paused or r.phase == store.FAILED)
        adopt = {n.name: n.effective() for n in states if not n.assigned and n.effective()}
        judging = r.phase == store.PROGRESSING and not r.paused
        if judging and rollout.verdict(p, ds.policy, now, r.progress_at):
            p = rollout.plan(states, update, strategy, paused=True)  # failed: hand out nothing more
        self._put_assign(key, {**adopt, **dict(p.assign)}, now)
        unheard = [n for n, rev in assigned.items() if n not in reports and rev != update]
        self._held[key] = bool(unheard or not reports) and now - self.started < self.grace
        if self._held[key]:
            p = replace(p, complete=False)  # a (re)started serve: not every node has reported yet
        exposed = sum(1 for rev in assigned.values() if rev == update)
        prev = self._plans.get(key)
        if prev is None or p.available > prev.available or p.updated > prev.updated:
            r = replace(r, progress_at=now)
        if r.phase in (store.PROGRESSING, store.PAUSED):
            r = replace(
                r,
                exposed_nodes=max(r.exposed_nodes, exposed),
                phase=store.PAUSED if r.paused else store.PROGRESSING,
            )
            why = "" if r.paused else rollout.verdict(p, ds.policy, now, r.progress_at)
            if why:
                r = self._fail(ds, r, why, now)
            elif p.complete and not r.paused:
                r = replace(r, phase=store.COMPLETE, current_revision=update, message="")
                log.info("rollout_complete", namespace=key.namespace, daemonset=key.name, revision=update)
        elif r.phase == store.ROLLED_BACK and p.complete and not r.reverted_at:
            r = replace(r, reverted_at=now)
        self._put(r)
        self._plans[key] = p
        self._nodes[key] = states
        self._clean[key] = (self._rollouts.get(key), self._assign.get(key))

    @staticmethod
    def _deadline_due(r: store.Rollout, p: rollout.Plan, policy: rollout.Policy, now: float) -> bool:
        """The last plan, judged now, has failed (the progress deadline passed): a pass must run."""
        return (
            r.phase == store.PROGRESSING
            and not r.paused
            and bool(rollout.verdict(p, policy, now, r.progress_at))
        )

    def _observe(
        self,
        ds: _DaemonSet,
        reports: Mapping[str, fleet.NodeReport],
        ready: Callable[[fleet.NodeReport], bool],
        numbers: Mapping[str, int],
        now: float,
    ) -> bool:
        """Bring each node's _Seen up to date with its report; True when any NodeState changed. Only a
        report that is new (heartbeats are new objects) is compared, and only changed labels or taints
        are scheduled again. A pod that has become available by serve's clock since (`_Seen.flips_at`)
        is looked at again; the earliest such moment still to come is kept for `next_flip`."""
        key = ds.key
        ctx = (ds.file_hash, ds.policy.canary, tuple(sorted(numbers.items())))
        cache = self._seen.setdefault(key, {})
        dirty = False
        if self._seen_ctx.get(key) != ctx:  # a new template, canary selector or revision numbering
            cache.clear()
            self._seen_ctx[key] = ctx
            dirty = True
        for gone in [n for n in cache if n not in reports]:
            del cache[gone]
            dirty = True
        canary = rollout_annotations.parse_selector(ds.policy.canary) if ds.policy.canary else None
        assigned = self._assign.get(key, {})
        spec = ds.obj.spec.template.spec
        min_ready = ds.obj.spec.min_ready_seconds
        next_flip = self._next_flip  # kept in a local: the loop runs once per node and pass
        for name, rep in reports.items():
            e = cache.get(name)
            is_ready, number = ready(rep), assigned.get(name, 0)
            flipped = e is not None and now >= e.flips_at  # a pod became available by serve's clock
            if e is not None and e.report is rep:
                if e.state.ready == is_ready and e.state.assigned == number and not flipped:
                    if e.flips_at < next_flip:
                        next_flip = e.flips_at
                    continue
                dsr, should_run, is_canary, pods = e.ds_report, e.should_run, e.canary, e.pods
                flips = e.flips_at
                if flipped:
                    pods = tuple(_pod_state(p, numbers, min_ready, now) for p in dsr.pods) if dsr else ()
                    flips = _flips_at(dsr.pods, pods, min_ready) if dsr else math.inf
            else:
                dsr = None
                for d in rep.daemonsets:
                    if (d.namespace, d.name) == (key.namespace, key.name):
                        dsr = d
                if e is not None and e.report.labels == rep.labels and e.report.taints == rep.taints:
                    should_run, is_canary = e.should_run, e.canary
                else:
                    taints = tuple(model.Taint(t.key, t.effect, t.value) for t in rep.taints)
                    should_run = scheduling.decide(Node(name, rep.labels, taints), spec).should_run
                    is_canary = canary is not None and selectors.label_selector_matches(canary, rep.labels)
                if e is not None and e.ds_report == dsr and not flipped:
                    pods, flips = e.pods, e.flips_at
                elif dsr is not None:
                    pods = tuple(_pod_state(p, numbers, min_ready, now) for p in dsr.pods)
                    flips = _flips_at(dsr.pods, pods, min_ready)
                else:
                    pods, flips = (), math.inf
            state = rollout.NodeState(name, is_ready, should_run, number, pods, is_canary)
            if e is not None and e.state == state:
                state = e.state
            else:
                dirty = True
            cache[name] = _Seen(rep, dsr, should_run, is_canary, pods, state, flips)
            if flips < next_flip:
                next_flip = flips
        self._next_flip = next_flip
        return dirty

    def _fail(self, ds: _DaemonSet, r: store.Rollout, why: str, now: float) -> store.Rollout:
        log.warning("rollout_failed", namespace=ds.key.namespace, daemonset=ds.key.name, reason=why)
        r = replace(r, phase=store.FAILED, message=why, failed_at=now, failed_revision=r.update_revision)
        if ds.policy.auto_rollback and r.current_revision != r.update_revision:
            r = replace(
                r,
                phase=store.ROLLED_BACK,
                update_revision=r.current_revision,
                message=f"{why}; rolled back to revision {r.current_revision}",
            )
            back = {
                n: r.current_revision
                for n, rev in self._assign.get(ds.key, {}).items()
                if rev == r.failed_revision
            }
            self._put_assign(ds.key, back, now)
        return r

    # --- operator actions (POST /api/rollouts/NS/NAME/...) -----------------------------------------

    def _known(self, key: store.Key) -> store.Rollout:
        r = self._rollouts.get(key)
        if r is None or key not in self._daemonsets:
            raise KeyError(key)
        return r

    def pause(self, key: store.Key, paused: bool) -> None:
        with self.cond:
            r = self._known(key)
            phase = r.phase
            if r.phase in (store.PROGRESSING, store.PAUSED):
                phase = store.PAUSED if paused else store.PROGRESSING
            self._put(replace(r, paused=paused, phase=phase, progress_at=self.clock()))
            self.wake()

    def undo(self, key: store.Key, to_revision: int = 0) -> None:
        with self.cond:
            r = self._known(key)
            revs = self._revs.get(key, [])
            if to_revision:
                target = next((v for v in revs if v.number == to_revision), None)
                if target is None:
                    raise RolloutError(f"revision {to_revision} not found in the history")
            else:
                older = [v for v in revs if v.number < r.update_revision]
                if not older:
                    raise RolloutError("no previous revision to roll back to")
                target = older[-1]
            self._restart_with(key, r, target.template, f"undo to revision {target.number}")

    def restart(self, key: store.Key) -> None:
        with self.cond:
            r = self._known(key)
            cur = next(v for v in self._revs[key] if v.number == r.update_revision)
            template = json.loads(cur.template)
            meta = template.setdefault("metadata", {})
            meta.setdefault("annotations", {})[RESTARTED_AT] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())
            )
            self._restart_with(
                key,
                replace(r, restart_nonce=r.restart_nonce + 1),
                json.dumps(template, sort_keys=True),
                "rollout restart",
            )

    def _restart_with(self, key: store.Key, r: store.Rollout, template: str, cause: str) -> None:
        now = self.clock()
        ds = self._daemonsets[key]
        hash_ = _hash_of(_with_template(ds.raw, template))
        number = self._new_revision(key, template, hash_, now, cause)
        current = r.update_revision if r.phase == store.COMPLETE else r.current_revision
        if current not in {v.number for v in self._revs[key]}:
            current = number
        r = _begin(r, number, current, store.PAUSED if r.paused else store.PROGRESSING, cause, True, now)
        self._put(r)
        self._plans.pop(key, None)
        self.wake()

    # --- per-node bundles -------------------------------------------------------------------------

    def node_view(self, node: str) -> tuple[object, ...]:
        """What `node_objects` depends on besides the bundle: the controller's epoch and the revision
        each DaemonSet hands `node`. Nodes with equal views get equal bundles, so `serve` renders one bundle
        per distinct view (two during a rollout), not one per node and wake-up."""
        got = self.cached_node_view(node)
        if got is not None:
            return got
        with self.cond:
            version = (self._epoch, self._node_versions.get(node, 0))
            view: list[object] = [self._epoch]
            for key in sorted(self._daemonsets, key=lambda k: (k.namespace, k.name)):
                r = self._rollouts.get(key)
                view.append((key, self._assign.get(key, {}).get(node) or (r.current_revision if r else 0)))
            if len(self._views) > VIEW_CACHE:  # nodes come and go: never more than a fleet's worth
                self._views.clear()
            self._views[node] = (version, tuple(view))
            return tuple(view)

    def cached_node_view(self, node: str) -> tuple[object, ...] | None:
        """`node_view` without taking the lock (serve's event loop asks it for every held watch it wakes),
        or None when it must be computed. Every change of a view is followed by a `wake` of its node (or
        of all), which moves the version: a view cached under the current version is still the view, and
        one computed after a change but before its wake is cached under the old version, so recomputed."""
        got = self._views.get(node)
        if got is None or got[0] != (self._epoch, self._node_versions.get(node, 0)):
            return None
        return got[1]

    def node_objects(self, objects: Sequence[object], node: str) -> list[object]:
        """The bundle's objects as `node` should see them: each DaemonSet at its assigned revision, and
        the ConfigMaps/Secrets of roll-config DaemonSets with the content bound to that revision."""
        out: list[object] = []
        with self.cond:
            bound: dict[tuple[str, str, str], str] = {}
            for key, assigned in self._assign.items():
                if key.kind != store.KIND_DAEMONSET or key not in self._daemonsets:
                    continue
                r = self._rollouts.get(key)
                number = assigned.get(node) or (r.current_revision if r else 0)
                rev = next((v for v in self._revs.get(key, []) if v.number == number), None)
                for (kind, name), h in rollconfig.bindings_of(rev.template if rev else "").items():
                    bound.setdefault((kind, key.namespace, name), h)
            for raw in objects:
                if isinstance(raw, dict) and (raw.get("kind"), *_ns_name(raw)) in bound:
                    want = bound[(str(raw.get("kind")), *_ns_name(raw))]
                    if rollconfig.digest(raw) != want:
                        ckey = store.Key(
                            store.KIND_CONFIG, _ns_name(raw)[0], f"{raw.get('kind')}/{_ns_name(raw)[1]}"
                        )
                        old = next((v for v in self._revs.get(ckey, []) if v.hash == want), None)
                        if old is not None:
                            raw = json.loads(old.template)
                if isinstance(raw, dict) and raw.get("kind") == "DaemonSet":
                    meta = raw.get("metadata") or {}
                    key = store.Key(
                        store.KIND_DAEMONSET, str(meta.get("namespace") or "default"), str(meta.get("name"))
                    )
                    r = self._rollouts.get(key)
                    if r is not None:
                        number = self._assign.get(key, {}).get(node) or r.current_revision
                        rev = next((v for v in self._revs.get(key, []) if v.number == number), None)
                        if rev is not None and rev.template != _template_json(raw):
                            raw = _with_template(raw, rev.template)
                out.append(raw)
        return out

    # --- views ------------------------------------------------------------------------------------

    def _before_view(self) -> None:
        """Called first by every view; a replica that plans only for its views plans here (replicas.py)."""

    def keys(self) -> list[store.Key]:
        self._before_view()
        with self.cond:
            return sorted(self._daemonsets)

    def summary(self, key: store.Key) -> dict[str, Any]:
        """The rollout fields of a DaemonSet's /api/daemonsets entry."""
        self._before_view()
        with self.cond:
            r = self._rollouts.get(key)
            p = self._plans.get(key)
            ds = self._daemonsets.get(key)
            if r is None or p is None or ds is None:
                return {}
            return {
                "currentRevision": r.current_revision,
                "updateRevision": r.update_revision,
                "updatedNumberScheduled": p.updated,
                "phase": r.phase,
                "wave": list(p.wave),
                "pendingNodes": list(p.pending),
                "servedDiffersFromFile": r.pinned or self._update_hash(key, r) != ds.file_hash,
            }

    def _update_hash(self, key: store.Key, r: store.Rollout) -> str:
        return next((v.hash for v in self._revs.get(key, []) if v.number == r.update_revision), "")

    def document(self, key: store.Key, with_nodes: bool = True) -> dict[str, Any]:
        """GET /api/rollouts/NS/NAME (without `with_nodes`: no `nodes` list, ?nodes=false)."""
        self._before_view()
        with self.cond:
            r = self._known(key)
            nodes = self._nodes.get(key, []) if with_nodes else []
            p = self._plans.get(key)
            detect = r.failed_at - r.started_at if r.failed_at else None
            revert = r.reverted_at - r.failed_at if r.reverted_at and r.failed_at else None
            doc = {
                "namespace": key.namespace,
                "name": key.name,
                "phase": r.phase,
                "message": r.message,
                "currentRevision": r.current_revision,
                "updateRevision": r.update_revision,
                "paused": r.paused,
                "failedRevision": r.failed_revision or None,
                "desiredNumberScheduled": p.desired if p else 0,
                "updatedNumberScheduled": p.updated if p else 0,
                "numberAvailable": p.available if p else 0,
                "maxUnavailable": p.max_unavailable if p else 0,
                "maxSurge": p.max_surge if p else 0,
                "nodes": [
                    {
                        "name": n.name,
                        "ready": n.ready,
                        "shouldRun": n.should_run,
                        "revision": self._assign.get(key, {}).get(n.name) or n.effective(),
                        "runningRevision": max((x.revision for x in n.live()), default=0),
                        "available": any(x.available for x in n.live()),
                    }
                    for n in nodes
                ],
                "wave": list(p.wave) if p else [],
                "pendingNodes": list(p.pending) if p else [],
                "failedNodes": list(p.failed) if p else [],
                "servedDiffersFromFile": self.summary(key).get("servedDiffersFromFile", False),
                "blastRadius": {
                    "exposedNodes": r.exposed_nodes,
                    "timeToDetectSeconds": None if detect is None else round(detect, 1),
                    "timeToRevertSeconds": None if revert is None else round(revert, 1),
                },
            }
            if not with_nodes:
                del doc["nodes"]
            return doc

    def history(self, key: store.Key) -> dict[str, Any]:
        self._before_view()
        with self.cond:
            self._known(key)
            return {
                "revisions": [
                    {
                        "revision": v.number,
                        "hash": v.hash,
                        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.created_at)),
                        "changeCause": v.change_cause,
                    }
                    for v in self._revs.get(key, [])
                ]
            }

    def plan_waves(self, key: store.Key) -> dict[str, Any]:
        """The waves a rollout of the file's template would take on today's fleet (nothing is started)."""
        self._before_view()
        with self.cond:
            self._known(key)
            ds = self._daemonsets[key]
            nodes = [
                replace(n, assigned=1, pods=(rollout.PodState(1, True),) if n.should_run else ())
                for n in self._nodes.get(key, [])
            ]
            return {"waves": rollout.waves(nodes, 2, _strategy(ds.obj))}

    def exposition(self) -> str:
        """The rollout gauges of /metrics (Prometheus text format; counts only, no per-node lists)."""
        self._before_view()
        with self.cond:
            docs = [
                self.document(k, with_nodes=False)
                for k in sorted(self._daemonsets)
                if k in self._rollouts and k in self._plans
            ]
        return rolloutview.exposition(docs)

    def etag(self, body: bytes) -> str:
        return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _begin(
    r: store.Rollout, number: int, current: int, phase: str, message: str, pinned: bool, now: float
) -> store.Rollout:
    """A new rollout of revision `number`: times, failure and blast radius start over."""
    return replace(
        r,
        update_revision=number,
        current_revision=current,
        phase=phase,
        message=message,
        started_at=now,
        progress_at=now,
        failed_revision=0,
        failed_at=0.0,
        reverted_at=0.0,
        pinned=pinned,
        exposed_nodes=0,
    )


def _ns_name(raw: Mapping[str, Any]) -> tuple[str, str]:
    meta = raw.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _configs(objects: Sequence[object]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """The bundle's ConfigMaps and Secrets by (kind, namespace, name)."""
    out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for raw in objects:
        if isinstance(raw, dict) and raw.get("kind") in ("ConfigMap", "Secret"):
            out[(str(raw["kind"]), *_ns_name(raw))] = raw
    return out


def _strategy(ds: model.DaemonSet) -> rollout.Strategy:
    us = ds.spec.update_strategy
    if us.type == rollout.ON_DELETE or us.rolling_update is None:
        return rollout.Strategy(type=rollout.ON_DELETE)
    return rollout.Strategy(
        rollout.ROLLING_UPDATE, us.rolling_update.max_unavailable, us.rolling_update.max_surge
    )
