"""Apply a plan's actions to the container runtime, in a fixed order; one failure never aborts the rest.

`apply_owner` is one owner's unit of work (run by its worker, see workers); `apply` applies a whole plan
phase by phase (`nodeagent delete pod`, tests).

Every action is idempotent: a create finds a container of the same deterministic name and reuses it,
a remove of a container that is gone succeeds, so a pass cut short by a crash is simply finished by the
next one.

Over 600 lines on purpose: one concept, carrying out the planner's verbs (create, start, stop with the
grace period and preStop, remove, pull, hooks), each next to the failure handling and events the
kubelet gives it; the decisions themselves are the planner's (agent/plan).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import threading
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

import structlog

from nodeagent import errors
from nodeagent import runtime as rt
from nodeagent.agent import identity, labels, localimage, plan, podconfig, probes, pulls, volumes
from nodeagent.k8s import model

log = structlog.get_logger(__name__)

# Kubernetes' container waiting reasons, as `kubectl get pods` shows them
ERR_IMAGE_PULL = pulls.ERR_IMAGE_PULL
ERR_IMAGE_NEVER_PULL = pulls.ERR_IMAGE_NEVER_PULL
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
CREATE_CONTAINER_ERROR = "CreateContainerError"
RUN_CONTAINER_ERROR = "RunContainerError"
POST_START_HOOK_ERROR = "PostStartHookError"

WORKERS = 8  # pods handled at once: Docker calls are I/O bound, and one slow pod must not hold the rest
POST_START_TIMEOUT = 30.0  # the kubelet waits for postStart without bound; we do not hang a worker
PROGRESS_EVERY = 2.0  # seconds between two updates of a pulling pod's progress in `status`
MIN_STOP_AFTER_HOOK = 2  # the kubelet leaves at least 2 s to stop a container after its preStop hook


@dataclass(frozen=True)
class HookFailure:
    """A lifecycle hook that failed or ran out of time, with the kubelet's message for its event
    (FailedPreStopHook, FailedPostStartHook)."""

    hook: str  # PRE_STOP or POST_START
    container: str
    message: str


PRE_STOP, POST_START = "preStop", "postStart"


@dataclass(frozen=True)
class Stopped:
    """A running container an action stopped, named as the kubelet's Killing event names it ("Stopping
    container NAME"). The executor reads the name while the container still exists: by the time a
    running agent's next pass lists the engine, a deleted pod's containers are gone."""

    container: str
    init: bool = False


Prepulled = Mapping[tuple[str, str, str], pulls.Ensured]  # (namespace, pod, container) -> its pull


@dataclass(frozen=True)
class Outcome:
    """What one action did: ok or why not, plus what the kubelet would have recorded events for on the
    way (how the image was got, the hooks that failed)."""

    action: plan.Action
    ok: bool
    reason: str = ""  # Kubernetes-style reason when it failed (ErrImagePull, ...)
    message: str = ""
    image: pulls.Ensured | None = None  # create, init, restart: the image was present, pulled, or failed
    hooks_failed: tuple[HookFailure, ...] = ()
    stopped: tuple[Stopped, ...] = ()  # delete, restart: the running containers it stopped (Killing)
    pod_created: bool = False  # create, init: the pod had no container when planned (SuccessfulCreate)


@dataclass(frozen=True)
class HostInfo:
    """Facts about this host that container configs need."""

    node_name: str
    host_ip: str
    state_dir: str
    withheld_caps: tuple[str, ...] = ()
    allocatable_cpu_milli: int = 0
    allocatable_memory: int = 0


class Executor:
    """Turns plan actions into runtime calls."""

    def __init__(
        self,
        runtime: rt.ContainerRuntime,
        host: HostInfo,
        lookup: podconfig.Lookup | None = None,
        clock: Callable[[], float] = time.time,
        workers: int = WORKERS,
        on_progress: Callable[[plan.Action, str], None] | None = None,
        puller: pulls.ImagePuller | None = None,
        planned_pods: Collection[tuple[str, str]] | None = None,
    ) -> None:
        """`planned_pods`: the pods (namespace, name) that had containers when the pass planned these
        actions; a create of any other pod is that pod's creation (unknown when not given)."""
        self._planned_pods = None if planned_pods is None else frozenset(planned_pods)
        self._progress = on_progress or (lambda action, text: None)
        # one puller per agent, shared by every pass and pod; a one-shot Executor makes its own
        self._puller = puller if puller is not None else pulls.ImagePuller(runtime)
        self._rt = runtime
        self._host = host
        self._lookup = lookup
        self._clock = clock
        self._workers = workers
        self._lock = threading.Lock()
        self._pause_image = ""

    def apply(self, actions: Iterable[plan.Action]) -> list[Outcome]:
        """Apply actions phase by phase (deletes, removes, then starts and creates), the pods of a phase
        concurrently, each pod's actions in order; outcomes come back in the plan's order."""
        ordered = sorted(actions, key=lambda a: plan.VERB_ORDER[a.verb])
        prepulled = self._pull_before_stop(ordered) if any(a.verb == plan.DELETE for a in ordered) else {}
        outcomes: list[Outcome | None] = [None] * len(ordered)
        for phase in (_PHASE_DELETE, _PHASE_REMOVE, _PHASE_RUN):
            by_pod: dict[tuple[str, str], list[int]] = defaultdict(list)
            for i, action in enumerate(ordered):
                if _phase(action.verb) == phase:
                    by_pod[(action.namespace, action.pod)].append(i)
            groups = list(by_pod.values())

            def run(group: list[int]) -> None:
                for i in group:
                    outcomes[i] = self._apply_logged(ordered[i], prepulled)

            if len(groups) <= 1 or self._workers <= 1:
                for g in groups:
                    run(g)
                continue
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(self._workers, len(groups)), thread_name_prefix="execute"
            ) as pool:
                for f in [pool.submit(run, g) for g in groups]:
                    f.result()
        return [o for o in outcomes if o is not None]

    def apply_owner(self, actions: Iterable[plan.Action]) -> list[Outcome]:
        """One owner's unit of work (see workers), in the order given: `plan.Plan.by_owner` puts a pod's
        delete before its successor's create; one failure never aborts the rest."""
        actions = list(actions)
        prepulled = self._pull_before_stop(actions) if any(a.verb == plan.DELETE for a in actions) else {}
        return [self._apply_logged(a, prepulled) for a in actions]

    def _pull_before_stop(self, actions: list[plan.Action]) -> dict[tuple[str, str, str], pulls.Ensured]:
        """Pull the successor's images while the old pod still runs, so a replaced pod is down for the
        restart, not the download (a fleet rollout with maxSurge 0). A failed pull changes nothing
        here: the create pulls again and reports it. The pulls that ran are returned, so the create
        reports them (Pulling, Pulled) rather than an image already present."""
        done: dict[tuple[str, str, str], pulls.Ensured] = {}
        for a in actions:
            if a.verb in (plan.CREATE, plan.INIT) and a.desired is not None:
                spec = a.desired.template.spec
                group = spec.init_containers if a.verb == plan.INIT else spec.containers
                for c in group:
                    if c.name == a.container and c.image_pull_policy != "Never":
                        got = self._ensure_image(a, c.image, c.image_pull_policy)
                        if got.pulled:
                            done[(a.namespace, a.pod, a.container)] = got
        return done

    def _apply_logged(self, action: plan.Action, prepulled: Prepulled | None = None) -> Outcome:
        try:
            outcome = self._apply_one(action, prepulled or {})
        except errors.NodeAgentError as exc:
            outcome = Outcome(action, False, _reason_for(exc), str(exc))
        except Exception as exc:  # an unexpected bug must not abort the other actions
            log.exception("action_crashed", action=action.verb, pod=action.pod)
            outcome = Outcome(action, False, CREATE_CONTAINER_ERROR, f"{type(exc).__name__}: {exc}")
        if (
            action.verb in (plan.CREATE, plan.INIT)
            and self._planned_pods is not None
            and (action.namespace, action.pod) not in self._planned_pods
        ):
            outcome = dataclasses.replace(outcome, pod_created=True)
        fields = {
            "action": action.verb,
            "namespace": action.namespace,
            "pod": action.pod,
            "container": action.container or None,
            "reason": action.reason,
        }
        if outcome.ok:
            log.info("action_applied", **fields)
        else:
            log.warning("action_failed", error=outcome.message, error_reason=outcome.reason, **fields)
        return outcome

    # --- one action ---------------------------------------------------------------------------

    def _apply_one(self, action: plan.Action, prepulled: Prepulled) -> Outcome:
        if action.verb == plan.DELETE:
            return self._delete(action)
        if action.verb == plan.REMOVE:
            for cid in action.container_ids:
                self._rt.remove(cid)
            return Outcome(action, True)
        if action.verb == plan.START:
            for cid in action.container_ids:
                self._rt.start(cid)
            return Outcome(action, True)
        if action.verb in (plan.CREATE, plan.RESTART, plan.INIT):
            return self._create(action, prepulled)
        raise errors.NodeAgentError(f"unknown action {action.verb!r}")

    def _delete(self, action: plan.Action) -> Outcome:
        """Stop every container of the pod in parallel under ONE grace period, each after its own preStop
        hook, which counts against that period (the kubelet's killContainersWithSyncResult and
        killContainer); the sandbox (last in the plan's list) is stopped after them. Then remove them all,
        then the pod's directories."""
        sandbox = action.sandbox_id if action.sandbox_id in action.container_ids else None
        ids = [cid for cid in action.container_ids if cid != sandbox]
        seen = self._seen(action.container_ids)  # before the stop: running, and named for the events
        deadline = time.monotonic() + action.grace_seconds
        hooks = dict(action.pre_stop)
        errors_seen: list[errors.NodeAgentError] = []
        failed: list[tuple[str, Hook, probes.Result]] = []  # list.append is atomic: the threads share it

        def kill(cid: str) -> None:
            raw = hooks.get(cid)
            if raw:
                bad = self._pre_stop_one(cid, raw, deadline - MIN_STOP_AFTER_HOOK)
                if bad is not None:
                    failed.append((cid, *bad))
            grace = (
                max(int(deadline - time.monotonic() + 0.5), MIN_STOP_AFTER_HOOK)
                if raw
                else action.grace_seconds
            )
            try:
                self._rt.stop(cid, grace)
            except errors.ContainerRuntimeError as exc:
                log.info("stop_failed_removing_anyway", container_id=cid[:12], error=str(exc))

        threads = [threading.Thread(target=kill, args=(cid,), daemon=True, name="stop") for cid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sandbox is not None:
            kill(sandbox)
            ids.append(sandbox)
        names = {cid: c.labels.get(identity.LABEL_CONTAINER_NAME, "") for cid, c in seen.items()}
        hooks_failed = tuple(
            HookFailure(PRE_STOP, names.get(cid, ""), hook_message(hook, names.get(cid, ""), action, result))
            for cid, hook, result in failed
        )
        for cid in ids:
            try:
                self._rt.remove(cid)
            except errors.NodeAgentError as exc:
                errors_seen.append(exc)
        if errors_seen:
            raise errors_seen[0]  # the hooks that failed are lost with it (FailedPreStopHook is best effort)
        if action.owner:
            volumes.remove_pod_dirs(self._host.state_dir, identity.pod_uid(action.owner, action.pod))
        return Outcome(action, True, hooks_failed=hooks_failed, stopped=_stopped(action.container_ids, seen))

    def _seen(self, ids: Iterable[str]) -> dict[str, rt.ObservedContainer]:
        """These containers as the engine lists them now (one list call), before an action stops them:
        the action knows ids, the kubelet's Killing and FailedPreStopHook events name containers. An
        engine that does not answer costs those events only (they are best effort)."""
        wanted = set(ids)
        if not wanted:
            return {}
        try:
            return {c.id: c for c in self._rt.list_managed() if c.id in wanted}
        except errors.NodeAgentError as exc:
            log.info("stopped_names_unknown", error=str(exc))
            return {}

    def run_pre_stop(
        self, hooks: Iterable[tuple[str, str]], grace: int
    ) -> list[tuple[str, Hook, probes.Result]]:
        """Run preStop hooks (concurrently, as the kubelet stops a pod's containers in parallel), bounded
        by the grace period; a failing or hanging hook is logged, never blocks the stop for longer.
        Returns the hooks that failed (container id, hook, result), for FailedPreStopHook."""
        hooks = list(hooks)
        if not hooks:
            return []
        deadline = time.monotonic() + max(grace - MIN_STOP_AFTER_HOOK, 1)
        failed: list[tuple[str, Hook, probes.Result]] = []

        def one(cid: str, raw: str) -> None:
            bad = self._pre_stop_one(cid, raw, deadline)
            if bad is not None:
                failed.append((cid, *bad))

        threads = [threading.Thread(target=one, args=(cid, raw), daemon=True) for cid, raw in hooks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(deadline - time.monotonic(), 0.0))
        return list(failed)

    def _pre_stop_one(self, cid: str, raw: str, deadline: float) -> tuple[Hook, probes.Result] | None:
        """Run one recorded preStop hook; the hook and its result when it failed."""
        hook = decode_hook(raw)
        if hook is None:
            log.warning("pre_stop_unreadable", container_id=cid[:12])
            return None
        result = self._run_hook(cid, hook, max(deadline - time.monotonic(), 0.1))
        if result is not None and not result.success:
            log.warning("pre_stop_hook_failed", container_id=cid[:12], error=result.message)
            return hook, result
        return None

    def _run_hook(self, cid: str, hook: Hook, timeout: float) -> probes.Result | None:
        """One hook, through the probes' handler code (exec, httpGet); a sleep hook sleeps, at most
        `timeout`. None when there was nothing to run."""
        if hook.sleep is not None:
            time.sleep(max(min(hook.sleep, timeout), 0.0))
            return None
        if hook.handler is None:
            return None
        host = hook.host
        if not host and isinstance(hook.handler, model.HTTPGetAction):
            container_ip = getattr(self._rt, "container_ip", None)
            host = str(container_ip(hook.via or cid)) if container_ip is not None else ""
        return probes.run_handler(
            hook.handler,
            runtime=self._rt,
            container_id=cid,
            container=_NO_CONTAINER,
            host=host or "127.0.0.1",
            timeout=timeout,
        )

    def _create(self, action: plan.Action, prepulled: Prepulled) -> Outcome:
        desired = action.desired
        assert desired is not None, "create, init and restart actions carry their desired pod"
        spec = desired.template.spec
        init = action.verb == plan.INIT
        group = spec.init_containers if init else spec.containers
        index, container = next((i, c) for i, c in enumerate(group) if c.name == action.container)
        image = self._ensure_image(action, container.image, container.image_pull_policy)
        if image.failure is not None:
            return Outcome(action, False, image.failure.reason, image.failure.message, image=image)
        if image.present:  # pulled a moment ago, before the old pod stopped: that pull is this create's
            image = prepulled.get((action.namespace, action.pod, action.container), image)
        try:
            outcome = self._create_container(action, container, index, init)
        except errors.NodeAgentError as exc:
            outcome = Outcome(action, False, _reason_for(exc), str(exc))
        return dataclasses.replace(outcome, image=image)

    def _create_container(
        self, action: plan.Action, container: model.Container, index: int, init: bool
    ) -> Outcome:
        """Create and start one container whose image is there (its pod's sandbox and volumes first)."""
        desired = action.desired
        assert desired is not None
        spec = desired.template.spec
        ctx = self.context(desired)
        if podconfig.needs_sandbox(spec):
            ctx = self._ensure_sandbox(ctx)
        create = podconfig.build(
            ctx,
            container,
            role=identity.ROLE_INIT if init else identity.ROLE_APP,
            attempt=action.attempt,
            init_index=index if init else None,
            lookup=self._lookup,
        )
        meta = dataclasses.replace(
            labels.decode(create.labels),
            backoff_step=action.backoff_step,
            grace=spec.termination_grace_period_seconds,
            selector_hash=desired.selector_hash,
            pod_labels=desired.template.metadata.labels,
            pre_stop=hook_label(container, spec, ctx.sandbox, "preStop"),
        )
        create = dataclasses.replace(create, labels={**create.labels, **labels.encode(meta)})
        if action.verb == plan.RESTART:
            # a running container restarted for a failed liveness probe: its preStop hook, then stop it
            # (with the grace period the action carries) before its successor starts, so they never
            # hold a port at once
            stopped = _stopped(action.container_ids, self._seen(action.container_ids))
            failed = self.run_pre_stop(action.pre_stop, action.grace_seconds)
            hooks_failed = tuple(
                HookFailure(PRE_STOP, action.container, hook_message(hook, action.container, action, result))
                for _cid, hook, result in failed
            )
            for old in action.container_ids:
                self._rt.stop(old, action.grace_seconds)
        else:
            hooks_failed, stopped = (), ()
        cid = self._rt.create(create)
        try:
            self._rt.start(cid)
        except errors.ContainerRuntimeError as exc:
            # keep the container: it shows up as exited/created and the planner backs off on it
            return Outcome(
                action, False, RUN_CONTAINER_ERROR, str(exc), hooks_failed=hooks_failed, stopped=stopped
            )
        # the earlier attempt stays: the planner's GC keeps the last dead one per container (logs --previous)
        failed_hook = self._post_start(action, cid, container, spec, ctx.sandbox)
        if failed_hook is not None:
            return dataclasses.replace(
                failed_hook, hooks_failed=hooks_failed + failed_hook.hooks_failed, stopped=stopped
            )
        return Outcome(action, True, hooks_failed=hooks_failed, stopped=stopped)

    def _post_start(
        self, action: plan.Action, cid: str, container: model.Container, spec: model.PodSpec, sandbox: str
    ) -> Outcome | None:
        """lifecycle.postStart right after the start; on failure the container is killed, as the kubelet
        does (FailedPostStartHook), and its restart policy with the crash-loop backoff applies."""
        hook = hook_for(container, spec, sandbox, "postStart")
        if hook is None:
            return None
        result = self._run_hook(cid, hook, POST_START_TIMEOUT)  # a sleep is capped too
        if result is None or result.success:
            return None
        log.warning("post_start_hook_failed", pod=action.pod, container=container.name, error=result.message)
        try:
            self._rt.stop(cid, 0)
        except errors.ContainerRuntimeError as exc:
            log.info("stop_failed", container_id=cid[:12], error=str(exc))
        failure = HookFailure(POST_START, container.name, hook_message(hook, container.name, action, result))
        return Outcome(
            action,
            False,
            POST_START_HOOK_ERROR,
            f"postStart hook failed: {result.message}",
            hooks_failed=(failure,),
        )

    def _ensure_sandbox(self, ctx: podconfig.PodContext) -> podconfig.PodContext:
        """Create and start the pod's sandbox (idempotent: found by its deterministic name); the pod's
        containers join its network and IPC namespaces, and its address is the pod IP."""
        create = podconfig.sandbox_create(ctx, self.pause_image())
        meta = dataclasses.replace(
            labels.decode(create.labels),
            pod_labels=ctx.metadata.labels,
            grace=ctx.spec.termination_grace_period_seconds,
        )
        cid = self._rt.create(dataclasses.replace(create, labels={**create.labels, **labels.encode(meta)}))
        self._rt.start(cid)  # already running: a no-op
        pod_ip = ctx.pod_ip
        container_ip = getattr(self._rt, "container_ip", None)
        if container_ip is not None and not ctx.spec.host_network:
            pod_ip = str(container_ip(cid)) or pod_ip
        return dataclasses.replace(ctx, sandbox=create.name, pod_ip=pod_ip)

    def pause_image(self) -> str:
        """The sandbox image, built locally once per process when the engine lacks it."""
        with self._lock:
            if not self._pause_image:
                if self._rt.image_present(localimage.PAUSE_TAG):
                    self._pause_image = localimage.PAUSE_TAG
                elif hasattr(self._rt, "build_context"):
                    builder = typing.cast(localimage.ContextBuilder, self._rt)
                    self._pause_image = localimage.ensure_pause_image(builder)
                else:
                    raise errors.ContainerRuntimeError(
                        f"the sandbox image {localimage.PAUSE_TAG} is missing and cannot be built here"
                    )
            return self._pause_image

    def context(self, desired: plan.DesiredPod) -> podconfig.PodContext:
        """The PodContext of a desired pod on this host; prepares its volumes (creates or checks them,
        writes ConfigMap, Secret and downward-API files): a missing object raises VolumeError."""
        ctx = self._bare_context(desired)
        paths = volumes.prepare(
            self._host.state_dir, ctx.uid, desired.template.spec, lookup=self._lookup, pod=ctx
        )
        return dataclasses.replace(ctx, volume_paths=paths)

    def _bare_context(self, desired: plan.DesiredPod) -> podconfig.PodContext:
        return podconfig.PodContext(
            owner=desired.owner,
            namespace=desired.namespace,
            pod_name=desired.name,
            metadata=desired.template.metadata,
            spec=desired.template.spec,
            spec_hash=desired.spec_hash,
            node_name=self._host.node_name,
            host_ip=self._host.host_ip,
            pod_ip="",
            node_allocatable_cpu_milli=self._host.allocatable_cpu_milli,
            node_allocatable_memory=self._host.allocatable_memory,
            withheld_caps=self._host.withheld_caps,
        )

    def refresh(self, desired: plan.DesiredPod) -> volumes.RefreshResult:
        """Rewrite a running pod's ConfigMap/Secret/downward-API files in place (the kubelet's volume
        sync); an object gone missing keeps the last files."""
        ctx = self._bare_context(desired)
        return volumes.refresh(
            self._host.state_dir, ctx.uid, desired.template.spec, lookup=self._lookup, pod=ctx
        )

    def _ensure_image(self, action: plan.Action, image: str, policy: str) -> pulls.Ensured:
        """imagePullPolicy as the kubelet applies it, through the shared puller (one pull per image, a
        bound on parallel pulls, a no-progress deadline): present, pulled, or why not.

        While this pod waits for its image, its worker's detail follows the pull ("pulling image X: 120 MB
        of 340 MB"), which `status` shows, refreshed every PROGRESS_EVERY seconds."""
        done = threading.Event()

        def follow() -> None:
            delay = 0.2  # a pull shows at once; a present image returns before this
            while not done.wait(delay):
                progress = self._puller.in_progress().get(image)
                if progress is not None:
                    self._progress(action, progress.describe())
                delay = PROGRESS_EVERY

        if policy != "Never":
            threading.Thread(target=follow, name=f"pull-progress-{action.pod}", daemon=True).start()
        try:
            return self._puller.ensure_image(image, policy)
        finally:
            done.set()
            self._progress(action, "")


_PHASE_DELETE, _PHASE_REMOVE, _PHASE_RUN = 0, 1, 2


def _phase(verb: str) -> int:
    return {plan.DELETE: _PHASE_DELETE, plan.REMOVE: _PHASE_REMOVE}.get(verb, _PHASE_RUN)


def _stopped(ids: Iterable[str], seen: Mapping[str, rt.ObservedContainer]) -> tuple[Stopped, ...]:
    """The app and init containers among `ids` that ran when listed, in the action's order: the kubelet
    kills a pod's running containers only, each with its Killing event (a sandbox has none)."""
    out: list[Stopped] = []
    for cid in ids:
        c = seen.get(cid)
        if c is None or not c.running:
            continue
        role, name = c.labels.get(identity.LABEL_ROLE, ""), c.labels.get(identity.LABEL_CONTAINER_NAME, "")
        if name and role in (identity.ROLE_APP, identity.ROLE_INIT):
            out.append(Stopped(name, init=role == identity.ROLE_INIT))
    return tuple(out)


_NO_CONTAINER = model.Container(name="", image="")  # hooks carry resolved ports: no name to look up


@dataclass(frozen=True)
class Hook:
    """A lifecycle hook, typed: run by the probes' handler code, recorded on its container as JSON
    (LABEL_PRE_STOP) so a pod whose manifest is gone still runs its own preStop hook.

    httpGet goes to `host` when set (the hook's own host, or 127.0.0.1 for a hostNetwork pod), else to
    the pod IP, asked at run time of the sandbox `via`, or of the container itself.
    """

    handler: model.ExecAction | model.HTTPGetAction | None = None  # httpGet with its port resolved
    sleep: float | None = None
    host: str = ""
    via: str = ""


def hook_for(container: model.Container, spec: model.PodSpec, sandbox: str, which: str) -> Hook | None:
    """The container's postStart or preStop hook; None when it has none or one we do not run
    (tcpSocket hooks are deprecated and never run by the kubelet; validation warns about them)."""
    lc = container.lifecycle
    hook = None if lc is None else (lc.pre_stop if which == "preStop" else lc.post_start)
    if hook is None:
        return None
    h = hook.handler
    if hook.sleep_seconds is not None:
        return Hook(sleep=float(hook.sleep_seconds))
    if isinstance(h, model.ExecAction):
        return Hook(handler=h)
    if isinstance(h, model.HTTPGetAction):
        port = probes.resolve_port(h.port, container)
        if port is None:
            return None
        return Hook(
            handler=dataclasses.replace(h, port=port),
            host="127.0.0.1" if spec.host_network else "",
            via=sandbox,
        )
    return None


def hook_message(hook: Hook, container: str, action: plan.Action, result: probes.Result) -> str:
    """The kubelet's message for a failed hook (lifecycle/handlers.go), which its FailedPreStopHook and
    FailedPostStartHook events carry: `Exec lifecycle hook ([cmd]) for Container "c" in Pod
    "pod_namespace(uid)" failed - error: ...`. The command's output is not captured here."""
    pod = f"{action.pod}_{action.namespace}({identity.pod_uid(action.owner, action.pod)})"
    where = f'for Container "{container}" in Pod "{pod}" failed - error: {result.message}'
    if isinstance(hook.handler, model.ExecAction):
        return f"Exec lifecycle hook ([{' '.join(hook.handler.command)}]) {where}"
    if isinstance(hook.handler, model.HTTPGetAction):
        return f"HTTP lifecycle hook ({hook.handler.path}) {where}"
    return f"lifecycle hook {where}"


def encode_hook(hook: Hook) -> str:
    doc: dict[str, object]
    if hook.sleep is not None:
        doc = {"sleep": int(hook.sleep) if hook.sleep == int(hook.sleep) else hook.sleep}
    elif isinstance(hook.handler, model.ExecAction):
        doc = {"exec": list(hook.handler.command)}
    elif isinstance(hook.handler, model.HTTPGetAction):
        h = hook.handler
        doc = {
            "httpGet": {
                "port": h.port,
                "path": h.path,
                "host": h.host,
                "scheme": h.scheme,
                "headers": [[x.name, x.value] for x in h.http_headers],
            },
            "host": hook.host,
            "via": hook.via,
        }
    else:
        return ""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def decode_hook(raw: str) -> Hook | None:
    """A hook as encode_hook wrote it (on a container, possibly by an older agent); None if unreadable."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            return None
        if "sleep" in doc:
            return Hook(sleep=float(doc["sleep"]))
        if "exec" in doc:
            return Hook(handler=model.ExecAction(tuple(str(x) for x in doc["exec"])))
        get = doc.get("httpGet")
        if isinstance(get, dict):
            action = model.HTTPGetAction(
                port=int(get["port"]),
                path=str(get.get("path", "/")),
                host=str(get.get("host", "")),
                scheme=str(get.get("scheme", "HTTP")),
                http_headers=tuple(model.HTTPHeader(str(n), str(v)) for n, v in get.get("headers", [])),
            )
            return Hook(handler=action, host=str(doc.get("host") or ""), via=str(doc.get("via") or ""))
    except (ValueError, TypeError, KeyError):
        return None
    return None


def hook_label(container: model.Container, spec: model.PodSpec, sandbox: str, which: str) -> str:
    """A lifecycle hook as the JSON recorded on the container (preStop), "" when there is none."""
    hook = hook_for(container, spec, sandbox, which)
    return "" if hook is None else encode_hook(hook)


def refs_digest(spec: model.PodSpec, namespace: str, lookup: podconfig.Lookup) -> str:
    """A digest of the ConfigMaps and Secrets a pod's volumes use (their content as looked up now): the
    agent refreshes a running pod's files only when it changes. Never logged: it derives from secrets."""
    h = hashlib.sha256()
    for ref in volume_refs(spec):
        h.update(repr(ref).encode())
        data = lookup(ref[0], namespace, ref[1])
        for k, value in sorted((data or {}).items()):
            h.update(k.encode() + b"\0" + (value if isinstance(value, bytes) else value.encode()) + b"\0")
        h.update(b"\1" if data is None else b"\2")
    return h.hexdigest()


def volume_refs(spec: model.PodSpec) -> list[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod's volumes project, in order."""
    out: list[tuple[str, str]] = []
    for volume in spec.volumes:
        src = volume.source
        if isinstance(src, model.ProjectedVolumeSource):
            sources: list[object] = [x for p in src.sources for x in (p.config_map, p.secret) if x]
        else:
            sources = [src]
        for x in sources:
            if isinstance(x, model.ConfigMapVolumeSource):
                out.append(("ConfigMap", x.name))
            elif isinstance(x, model.SecretVolumeSource):
                out.append(("Secret", x.secret_name))
    return out


def _reason_for(exc: errors.NodeAgentError) -> str:
    if isinstance(exc, errors.ImagePullError):
        return ERR_IMAGE_PULL
    if isinstance(exc, podconfig.PodConfigError):
        return CREATE_CONTAINER_CONFIG_ERROR
    if isinstance(exc, volumes.VolumeError):
        return CREATE_CONTAINER_CONFIG_ERROR
    return CREATE_CONTAINER_ERROR


FailureKey = tuple[str, str, str]  # (namespace, pod, container): the kubelet keys its backoff per container


def record_failures(
    previous: Mapping[FailureKey, plan.Failure], outcomes: Iterable[Outcome], now: float
) -> dict[FailureKey, plan.Failure]:
    """Fold finished outcomes into the failure record the planner backs off on, one entry per container:
    a container that succeeds clears its own failure only, never another's of the same pod (nor, once,
    a whole-pod entry an older agent wrote, container "")."""
    out = dict(previous)
    for o in outcomes:
        a = o.action
        key = (a.namespace, a.pod, a.container)
        if a.verb not in (plan.CREATE, plan.RESTART, plan.START, plan.INIT):
            continue
        if o.ok:
            out.pop(key, None)
            out.pop((a.namespace, a.pod, ""), None)
            continue
        prev = out.get(key)
        reason = o.reason
        if (
            reason == ERR_IMAGE_PULL
            and prev is not None
            and prev.reason in (ERR_IMAGE_PULL, "ImagePullBackOff")
        ):
            reason = "ImagePullBackOff"
        out[key] = plan.Failure(
            count=(prev.count + 1) if prev else 1, last=now, reason=reason, message=o.message
        )
    return out


def pod_failures(
    failures: Mapping[FailureKey, plan.Failure], backoff: plan.Backoff
) -> dict[tuple[str, str], plan.Failure]:
    """Each pod's failure as the planner reads it (it backs a pod off as a whole): that of the container
    whose backoff ends last, so no failed container of the pod is retried before its own delay."""
    out: dict[tuple[str, str], plan.Failure] = {}
    for (ns, pod, _container), f in sorted(failures.items()):
        prev = out.get((ns, pod))
        if prev is None or _until(f, backoff) > _until(prev, backoff):
            out[(ns, pod)] = f
    return out


def _until(f: plan.Failure, backoff: plan.Backoff) -> tuple[float, float]:
    return (f.last + backoff.delay(f.count - 1), f.last)
