"""Wiring: settings -> sources -> desired state; runtime -> observed state; plan; execute.

`Agent` is what `plan`, `sync` and `run` share. It holds no workload state of its own: the desired
state is re-read from the sources, the observed state from Docker labels, on every pass. What it keeps
in memory (the time a tolerated NoExecute taint appeared, inspect results of exited containers) only
shapes timing, and is rebuilt harmlessly after a restart; recent create failures also go to
`stateDir/failures.json`, so `status` in another process can say why a pod is not running.
`run` owns a probes.Prober (readiness goes to `stateDir/probes.json` for `status`/`sync` in other
processes) and `stateDir/ownership.json` keeps orphan policies and orphaned/adopted pods (see plan);
those files, their formats and their atomic writes are `statefiles`. The node is built once, from the
settings (`node.from_config`), and each pass's scheduling decisions are the planner's (`DaemonSetPlan.
decision`): the agent reads them back to time NoExecute tolerations.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from nodeagent import errors, settings
from nodeagent import runtime as rt
from nodeagent.agent import desired, execute, identity, plan, podconfig, probes, pulls, statefiles, workers
from nodeagent.agent import events as ev
from nodeagent.k8s import model, node
from nodeagent.service import metrics
from nodeagent.sources import files
from nodeagent.sources import http as http_source
from nodeagent.sources import images as images_source

log = structlog.get_logger(__name__)

STATIC_SOURCE = "staticPodPath"


@dataclass(frozen=True)
class PassResult:
    """A pass: its plan, the outcomes of work that finished (in `run`: since the last pass; in `sync`
    and tests: this pass's own work, waited for), and the owners still busy when it was planned."""

    plan: plan.Plan
    outcomes: tuple[execute.Outcome, ...]
    desired: desired.DesiredState
    busy: Mapping[str, workers.Busy] = dataclasses.field(default_factory=dict)

    @property
    def failed(self) -> tuple[execute.Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)


def build_sources(
    cfg: settings.Settings, on_change: Callable[[], None], *, watch: bool
) -> list[files.DirectorySource | http_source.HttpSource]:
    """One source per configured directory or URL, plus the static pod path."""
    out: list[files.DirectorySource | http_source.HttpSource] = []
    for i, src in enumerate(cfg.sources):
        if isinstance(src, settings.DirectorySource):
            out.append(
                files.DirectorySource(
                    f"sources[{i}]:{src.directory}",
                    src.directory,
                    on_change,
                    relist_interval=cfg.resync_interval,
                    watch=watch,
                    pol=src.policy,
                )
            )
        else:
            out.append(
                http_source.HttpSource(
                    f"sources[{i}]:{http_source.display_url(src.url)}",
                    src,
                    on_change,
                    state_dir=cfg.state_dir,
                    watch=watch,
                    node=node.build(cfg.node.name, {}, (), False).name,  # per-node bundles (rollouts)
                )
            )
    if cfg.static_pod_path:
        out.append(
            files.DirectorySource(
                STATIC_SOURCE,
                cfg.static_pod_path,
                on_change,
                relist_interval=cfg.resync_interval,
                allowed_kinds=files.STATIC_POD_SOURCE_KINDS,
                watch=watch,
                pol=cfg.static_pod_policy,
            )
        )
    return out


class Agent:
    """One node's agent: knows its settings, sources and runtime; computes and applies plans."""

    def __init__(
        self,
        cfg: settings.Settings,
        runtime: rt.ContainerRuntime | None,
        *,
        watch: bool = False,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = cfg
        self.runtime = runtime
        self.clock = clock
        self.node = node.from_config(cfg.node)
        self._on_change = on_change
        self._watch = watch
        self.sources = build_sources(cfg, on_change, watch=watch)
        self.images = self._images_dir(cfg, watch=watch)
        self.merger = desired.Merger([s.name for s in self.sources])
        self.backoff = plan.Backoff(cfg.backoff.initial, cfg.backoff.max, cfg.backoff.reset_after)
        # recent create failures, per container (its success clears its own only; see `failures`)
        self.container_failures: dict[execute.FailureKey, plan.Failure] = statefiles.load_failures(
            cfg.state_dir
        )
        self.noexecute_since: dict[tuple[str, str], float] = {}
        self._times: dict[str, tuple[float | None, float | None]] = {}
        self._lock = threading.RLock()  # held briefly: a pass plans and dispatches, it never waits for work
        self._save_lock = threading.Lock()
        self._last_drained: list[execute.Outcome] = []
        self.publish_workers = False  # `run`: keep stateDir/workers.json current for `status`
        self.workers = workers.WorkerMap(on_done=on_change, on_change=self._workers_changed)
        self.puller = _puller(cfg, runtime)
        self._caps_detected = False  # withheld capabilities: detected once, when a pod first needs them
        self.prober: probes.Prober | None = None  # `run` only (start_prober); one-shots read probes.json
        self._probe_facts: dict[str, tuple[float, str]] = {}  # container id -> (StartedAt, pod IP)
        self._saved_probes: object = None
        # pod -> digest of the ConfigMaps/Secrets its volumes use, as last written (never logged)
        self._volume_digests: dict[tuple[str, str], str] = {}
        cpu_milli, memory = node.allocatable()
        self.host = execute.HostInfo(
            node_name=self.node.name,
            host_ip=node.host_ip(),
            state_dir=cfg.state_dir,
            allocatable_cpu_milli=cpu_milli,
            allocatable_memory=memory,
        )

    # --- sources ------------------------------------------------------------------------------

    def _images_dir(self, cfg: settings.Settings, *, watch: bool) -> images_source.ImagesDirectory | None:
        """`imagesDir`: tarballs imported at start and on change; an import retries held-back pods."""
        if not cfg.images_dir or self.runtime is None:
            return None

        def imported() -> None:
            # pods held back for a missing image (ErrImagePull, ErrImageNeverPull) may start now
            with self._lock:
                self.container_failures = {}
            self._on_change()

        return images_source.ImagesDirectory(
            cfg.images_dir,
            self.runtime.load_images,
            imported,
            relist_interval=cfg.resync_interval,
            watch=watch,
        )

    def start_sources(self) -> None:
        if self.images is not None:
            self.images.start()  # first, so the first pass finds the images
        for s in self.sources:
            s.start()

    def stop_sources(self) -> None:
        if self.images is not None:
            self.images.stop()
        for s in self.sources:
            s.stop()

    def relist(self) -> None:
        if self.images is not None:
            self.images.scan()
        for s in self.sources:
            s.relist()

    def start_prober(self) -> None:
        """Probe running containers (liveness, readiness, startup) until stop_prober; verdict changes
        wake the loop through on_change."""
        if self.runtime is None or self.prober is not None:
            return
        self.prober = probes.Prober(self.runtime, clock=self.clock, on_change=self._on_change)
        self.prober.start()

    def stop_prober(self) -> None:
        if self.prober is not None:
            self.prober.stop()
            self.prober = None

    @property
    def failures(self) -> dict[tuple[str, str], plan.Failure]:
        """Each pod's recent create failure as the planner backs it off (and `describe` says why): that of
        its container whose backoff ends last."""
        return execute.pod_failures(self.container_failures, self.backoff)

    def desired_state(self) -> desired.DesiredState:
        for s in self.sources:
            shot = s.snapshot()
            if shot is not None:
                self.merger.update(shot)
            failure = s.failure
            if failure is not None and shot is None:
                self.merger.update_failure(s.name, failure)
        return self.merger.state()

    # --- observed -----------------------------------------------------------------------------

    def observe(self) -> tuple[rt.ObservedContainer, ...]:
        """Managed containers from one list call; exited ones get their start/finish times (cached)."""
        if self.runtime is None:
            return ()
        listed = self.runtime.list_managed()
        out: list[rt.ObservedContainer] = []
        alive: set[str] = set()
        for c in listed:
            alive.add(c.id)
            if c.state in ("exited", "dead") and c.finished_at is None:
                times = self._times.get(c.id)
                if times is None:
                    times = self.runtime.timestamps(c.id)
                    self._times[c.id] = times
                c = dataclasses.replace(c, started_at=times[0], finished_at=times[1])
            out.append(c)
        for cid in list(self._times):
            if cid not in alive:
                del self._times[cid]
        return tuple(out)

    # --- plan and execute ---------------------------------------------------------------------

    def compute(
        self,
        state: desired.DesiredState,
        observed: tuple[rt.ObservedContainer, ...],
        ownership: plan.Ownership | None = None,
        busy: Mapping[str, workers.Busy] | None = None,
    ) -> plan.Plan:
        now = self.clock()
        busy = busy or {}
        if ownership is None:
            ownership = statefiles.load_ownership(self.settings.state_dir)
        inputs = plan.Inputs(
            node=self.node,
            daemonsets=tuple(e for _, e in sorted(state.daemonsets.items())),
            static_pods=tuple(e for _, e in sorted(state.static_pods.items())),
            observed=observed,
            now=now,
            all_sources_seen=state.all_sources_seen,
            backoff=self.backoff,
            noexecute_since=dict(self.noexecute_since),
            failures=dict(self.failures),
            protected_owners=frozenset(state.protected_owners),
            protected_names=frozenset((e.kind, e.name) for e in state.errors if e.kind and e.name),
            hold_removals=any(not (e.kind and e.name) for e in state.errors),
            health=self.health(),
            ownership=ownership,
            busy={o: b.reason for o, b in busy.items()},
            terminating=frozenset(k for b in busy.values() for k in b.terminating),
        )
        p = plan.plan(inputs)
        self._track_noexecute(p, now)
        return p

    def health(self) -> dict[str, plan.Health]:
        """Probe verdicts: the prober's in `run`; in a one-shot command, what `run` last wrote to
        stateDir/probes.json (readiness only: only the running agent restarts for a failed liveness)."""
        if self.prober is None:
            return statefiles.load_probes(self.settings.state_dir)
        return {
            cid: plan.Health(
                ready=v.ready,
                restart=v.restart,
                message=v.message,
                grace_seconds=v.grace_seconds,
                ready_since=v.ready_since,
            )
            for cid, v in self.prober.verdicts().items()
        }

    def _update_probes(
        self, p: plan.Plan, observed: tuple[rt.ObservedContainer, ...], *, changed: bool
    ) -> None:
        """Point the prober at the running app containers of current pods that have probes, and publish
        readiness to stateDir/probes.json for `status` and `sync` in other processes."""
        if self.prober is None or self.runtime is None:
            return
        pods = plan.group_pods(self.observe() if changed else observed)
        targets: list[probes.Target] = []
        alive: set[str] = set()
        for want in [d.desired for d in p.daemonsets] + [s.desired for s in p.static_pods]:
            pod = pods.get(want.key)
            if pod is None or pod.spec_hash != want.spec_hash:
                continue
            spec = want.template.spec
            for c in spec.containers:
                seen = pod.container(c.name)
                if seen is None or not seen.running:
                    continue
                if c.liveness_probe is None and c.readiness_probe is None and c.startup_probe is None:
                    continue
                alive.add(seen.id)
                facts = self._probe_facts.get(seen.id)
                if facts is None:
                    facts = self._facts(seen, pod, spec)
                    if facts is None:
                        continue
                    self._probe_facts[seen.id] = facts
                targets.append(probes.Target(seen.id, c, facts[0], facts[1]))
        for cid in set(self._probe_facts) - alive:
            del self._probe_facts[cid]
        self.prober.set_targets(targets)
        doc = statefiles.probes_doc(self.health())
        if doc != self._saved_probes:
            statefiles.save_json(self.settings.state_dir, statefiles.PROBES_FILE, doc)
            self._saved_probes = doc

    def _facts(
        self, c: rt.ObservedContainer, pod: plan.ObservedPod, spec: model.PodSpec
    ) -> tuple[float, str] | None:
        """(StartedAt, pod IP) of a running container: where its httpGet/tcpSocket probes go.

        127.0.0.1 for a hostNetwork pod; else the pod's sandbox's address, or the container's own.
        """
        assert self.runtime is not None
        try:
            started, _ = self.runtime.timestamps(c.id)
            if spec.host_network:
                ip = "127.0.0.1"
            else:
                sandbox = pod.container(podconfig.SANDBOX_CONTAINER)
                container_ip = getattr(self.runtime, "container_ip", None)
                target = sandbox.id if sandbox is not None else c.id
                ip = str(container_ip(target)) if container_ip is not None else ""
        except errors.NodeAgentError as exc:
            log.info("probe_target_unknown", container_id=c.id[:12], error=str(exc))
            return None
        return (started or c.created_at, ip or "127.0.0.1")

    def _track_noexecute(self, p: plan.Plan, now: float) -> None:
        """Remember when each DaemonSet's tolerated NoExecute taint first showed (its tolerationSeconds
        count from then), from the pass's scheduling decisions; a DaemonSet seen for the first time
        was planned with `now`, which is what is recorded."""
        seen = {(d.namespace, d.name) for d in p.daemonsets if d.decision.evict_after_seconds is not None}
        for key in seen:
            self.noexecute_since.setdefault(key, now)
        for key in set(self.noexecute_since) - seen:
            del self.noexecute_since[key]

    def reconcile(self, *, dry_run: bool = False, wait: bool = True) -> PassResult:
        """One level-triggered pass: desired, observed, plan, dispatch each owner's actions to its worker.

        The lock is held only to plan and dispatch. `wait=False` (`run`) returns at once, with the
        outcomes of work that finished since the last pass; `wait=True` (`sync`, tests) then waits for
        this pass's work and returns its outcomes in the plan's order."""
        with self._lock:
            self._fold(self.workers.drain())
            state = self.desired_state()
            observed = self.observe()
            ownership = statefiles.load_ownership(self.settings.state_dir)
            state = plan.refuse_changed_selectors(state, observed, ownership)
            busy = self.workers.busy()
            if dry_run and not busy:
                busy = statefiles.load_workers(self.settings.state_dir)  # what a running agent has in flight
            p = self.compute(state, observed, ownership, busy)
            if dry_run or self.runtime is None:
                return PassResult(p, (), state, busy)
            if p.ownership != ownership:
                statefiles.save_ownership(self.settings.state_dir, p.ownership, ownership)
            executor = execute.Executor(
                self.runtime,
                self._host_for(state),
                lookup=state.lookup,
                on_progress=lambda a, text: self.workers.set_detail(plan.work_owner(a), text),
                puller=self.puller,
                planned_pods={
                    (
                        c.labels.get(identity.LABEL_POD_NAMESPACE, ""),
                        c.labels.get(identity.LABEL_POD_NAME, ""),
                    )
                    for c in observed
                },
            )
            for owner, actions in p.by_owner().items():
                self.workers.submit(_unit(owner, actions, executor))
            if not wait:
                self.workers.crashes()  # logged by the worker; the next pass retries the owner
                finished = tuple(self._last_drained)
                self._after(p, state, executor, observed, finished, changed=bool(finished))
                return PassResult(p, finished, state, busy)
        self.workers.wait_idle()
        self.workers.reraise()
        with self._lock:
            done = self.workers.drain()
            self._fold(done)
            order = {id(a): i for i, a in enumerate(p.actions)}
            outcomes = sorted(
                (o for o in done if isinstance(o, execute.Outcome)),
                key=lambda o: order.get(id(o.action), len(order)),
            )
            self._after(p, state, executor, observed, outcomes, changed=any(o.ok for o in outcomes))
            return PassResult(p, tuple(outcomes), state, busy)

    def _fold(self, finished: list[object]) -> None:
        """Record finished work's failures (the planner backs off on them); call with the lock held."""
        outcomes = [o for o in finished if isinstance(o, execute.Outcome)]
        self._last_drained = outcomes
        if not outcomes:
            return
        failures = execute.record_failures(self.container_failures, outcomes, self.clock())
        if failures != self.container_failures:
            statefiles.save_failures(self.settings.state_dir, failures)
        self.container_failures = failures

    def _after(
        self,
        p: plan.Plan,
        state: desired.DesiredState,
        executor: execute.Executor,
        observed: tuple[rt.ObservedContainer, ...],
        outcomes: Sequence[execute.Outcome],
        *,
        changed: bool,
    ) -> None:
        """The quick per-pass chores: volume refresh of idle pods, probe targets, events of the work that
        finished (stateDir/events.json, for `events`, `describe` and the node report), forgetting failures
        of pods nothing wants, stuck workers reported."""
        busy = self.workers.busy()
        self._refresh_volumes(p, state, executor, skip=set(busy))
        self._update_probes(p, observed, changed=changed)
        now = self.clock()
        ev.record_pass(self.settings.state_dir, p, outcomes, observed, self.health(), self.node.name, now)
        wanted = {d.desired.key for d in p.daemonsets} | {s.desired.key for s in p.static_pods}
        failures = {k: f for k, f in self.container_failures.items() if k[:2] in wanted}
        if failures != self.container_failures:
            statefiles.save_failures(self.settings.state_dir, failures)
        self.container_failures = failures
        stuck = self.workers.stuck()
        metrics.WORKERS_STUCK.set(len(stuck))
        metrics.WORKERS_BUSY.set(len(busy))

    def _workers_changed(self) -> None:
        """The busy set changed: `run` rewrites stateDir/workers.json for `status` in other processes."""
        if not self.publish_workers:
            return
        with self._save_lock:
            statefiles.save_workers(self.settings.state_dir, self.workers.busy())

    def _refresh_volumes(
        self, p: plan.Plan, state: desired.DesiredState, executor: execute.Executor, skip: set[str]
    ) -> None:
        """Update running pods' ConfigMap/Secret files in place when those objects changed, as the
        kubelet's volume sync does; cheap when nothing changed (one digest per pod, kept in memory)."""
        digests: dict[tuple[str, str], str] = {}
        wanted = [(d.desired, d.pods) for d in p.daemonsets] + [(s.desired, s.pods) for s in p.static_pods]
        for want, pods in wanted:
            spec = want.template.spec
            if want.owner in skip:  # its worker is creating or stopping it: next pass
                if want.key in self._volume_digests:
                    digests[want.key] = self._volume_digests[want.key]
                continue
            if not execute.volume_refs(spec) or not any(
                pod.name == want.name and pod.spec_hash == want.spec_hash for pod in pods
            ):
                continue
            digest = execute.refs_digest(spec, want.namespace, state.lookup)
            digests[want.key] = digest
            if self._volume_digests.get(want.key) == digest:
                continue
            try:
                result = executor.refresh(want)
            except errors.NodeAgentError as exc:
                log.warning("volume_refresh_failed", namespace=want.namespace, pod=want.name, error=str(exc))
                digests.pop(want.key)
                continue
            if result.updated:
                log.info(
                    "volumes_refreshed", namespace=want.namespace, pod=want.name, volumes=list(result.updated)
                )
            for name, message in sorted(result.errors.items()):
                log.warning(
                    "volume_refresh_failed",
                    namespace=want.namespace,
                    pod=want.name,
                    volume=name,
                    error=message,
                )
            # a volume whose object is missing keeps its last files; said once per change, not per pass
        self._volume_digests = digests

    def _host_for(self, state: desired.DesiredState) -> execute.HostInfo:
        """self.host, completed with the capabilities the engine withholds once a pod asks for privileged.

        Detected once (it starts throwaway containers) and only when needed; `privileged_mapped` says
        what such pods get instead of a real --privileged container, which cannot start on this host.
        """
        detect = getattr(self.runtime, "withheld_capabilities", None)
        if self._caps_detected or detect is None:
            return self.host
        specs = [e.obj.spec.template.spec for e in state.daemonsets.values()]
        specs += [e.obj.spec for e in state.static_pods.values()]
        if not any(podconfig.wants_privileged(s) for s in specs):
            return self.host
        try:
            withheld = tuple(str(c) for c in detect())
        except errors.NodeAgentError as exc:
            log.warning("privileged_detection_failed", error=str(exc))
            return self.host
        self._caps_detected = True
        self.host = dataclasses.replace(self.host, withheld_caps=withheld)
        if withheld:
            log.warning(
                "privileged_mapped",
                withheld=list(withheld),
                granted="all capabilities but the withheld ones, every host device, "
                "seccomp, AppArmor and masked paths unconfined",
                reason="this host withholds capabilities, so a real privileged container cannot start",
            )
        return self.host

    def reload(self, cfg: settings.Settings) -> None:
        """Apply a new config: node labels and taints at once; sources rebuilt only if they changed.

        Never waits for a pass or for workers: each field is swapped whole, and the next pass (the
        caller wakes it) plans with the new values."""
        old = self.settings
        self.settings = cfg
        self.node = node.from_config(cfg.node)
        self.backoff = plan.Backoff(cfg.backoff.initial, cfg.backoff.max, cfg.backoff.reset_after)
        self.host = dataclasses.replace(self.host, node_name=self.node.name, state_dir=cfg.state_dir)
        if _pull_settings(old) != _pull_settings(cfg):  # pulls in flight finish on the old puller
            self.puller = _puller(cfg, self.runtime)
        if (old.sources, old.static_pod_path, old.static_pod_policy, old.resync_interval) != (
            cfg.sources,
            cfg.static_pod_path,
            cfg.static_pod_policy,
            cfg.resync_interval,
        ):
            self.stop_sources()
            new = build_sources(cfg, self._on_change, watch=self._watch)
            merger = desired.Merger([s.name for s in new])
            with self._lock:  # a pass reads both; it holds the lock for a moment only (no work)
                self.sources, self.merger = new, merger
            if self._watch:
                self.start_sources()


def _unit(owner: str, actions: tuple[plan.Action, ...], executor: execute.Executor) -> workers.Unit:
    """One owner's actions as a unit of work, with what its pods show meanwhile and its deadline."""
    stopping = tuple(dict.fromkeys((a.namespace, a.pod) for a in actions if a.verb == plan.DELETE))
    grace = sum(a.grace_seconds for a in actions if a.verb in (plan.DELETE, plan.RESTART))
    creates = any(a.verb in (plan.CREATE, plan.INIT, plan.RESTART) for a in actions)
    return workers.Unit(
        owner=owner,
        run=lambda: executor.apply_owner(actions),
        pods=tuple(dict.fromkeys((a.namespace, a.pod) for a in actions)),
        terminating=stopping,
        reason="ContainerCreating",
        deadline_seconds=grace + workers.STOP_MARGIN + (workers.CREATE_DEADLINE if creates else 0.0),
    )


def _pull_settings(cfg: settings.Settings) -> tuple[bool, int | None, float]:
    return cfg.serialize_image_pulls, cfg.max_parallel_image_pulls, cfg.image_pull_deadline


def _puller(cfg: settings.Settings, runtime: rt.ContainerRuntime | None) -> pulls.ImagePuller | None:
    """The agent's one image puller (serializeImagePulls, maxParallelImagePulls, imagePullDeadline)."""
    if runtime is None:
        return None
    return pulls.ImagePuller(
        runtime,
        serialize=cfg.serialize_image_pulls,
        max_parallel=cfg.max_parallel_image_pulls,
        deadline=cfg.image_pull_deadline,
    )
