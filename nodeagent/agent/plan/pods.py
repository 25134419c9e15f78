"""The kubelet's per-pod rules (`computePodActions`): which containers of one pod to create, start, restart
or leave to back off; init containers in order, sidecars, liveness restarts; and the container GC of old
attempts.

Containers are grouped into pods by their labels (namespace, pod name); each container name keeps only
its newest attempt in view, older attempts are garbage. Restart backoff needs no memory either: the
attempt and backoff step are labels on the container, its start and finish times come from Docker.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable

from nodeagent import runtime as rt
from nodeagent.agent import identity, labels, podconfig
from nodeagent.agent.plan.readiness import is_app
from nodeagent.agent.plan.types import (
    CREATE,
    DEFAULT_GRACE,
    DELETE,
    INIT,
    RESTART,
    START,
    Action,
    Backoff,
    DesiredPod,
    Health,
    Inputs,
    ObservedPod,
    Verb,
    Waiting,
    attempt_of,
    int_label,
)
from nodeagent.k8s import model

# --- observed pods ------------------------------------------------------------------------------


def group_pods(observed: Iterable[rt.ObservedContainer]) -> dict[tuple[str, str], ObservedPod]:
    """Group managed containers into pods; keep the newest attempt of each container name."""
    by_pod: dict[tuple[str, str], list[rt.ObservedContainer]] = defaultdict(list)
    for c in observed:
        ns = c.labels.get(identity.LABEL_POD_NAMESPACE, "")
        name = c.labels.get(identity.LABEL_POD_NAME, "")
        if ns and name:
            by_pod[(ns, name)].append(c)
    pods: dict[tuple[str, str], ObservedPod] = {}
    for (ns, name), cs in by_pod.items():
        newest: dict[str, rt.ObservedContainer] = {}
        stale: list[rt.ObservedContainer] = []
        sandbox: rt.ObservedContainer | None = None
        for c in sorted(cs, key=lambda c: (attempt_of(c), c.created_at)):
            if c.labels.get(identity.LABEL_ROLE) == identity.ROLE_SANDBOX:
                if sandbox is not None:
                    stale.append(sandbox)
                sandbox = c
                continue
            cname = _cname(c)
            if cname in newest:
                stale.append(newest[cname])
            newest[cname] = c
        first = cs[0]
        apps = [c for c in newest.values() if is_app(c)]
        inits = [c for c in newest.values() if c.labels.get(identity.LABEL_ROLE) == identity.ROLE_INIT]
        pods[(ns, name)] = ObservedPod(
            namespace=ns,
            name=name,
            owner=first.labels.get(identity.LABEL_OWNER, ""),
            spec_hash=first.labels.get(identity.LABEL_SPEC_HASH, ""),
            containers=tuple(sorted(apps, key=lambda c: c.name)),
            stale=tuple(stale),
            init_containers=tuple(sorted(inits, key=lambda c: int_label(c, identity.LABEL_INIT_INDEX))),
            sandbox=sandbox,
        )
    return pods


def gc_stale(p: ObservedPod) -> list[rt.ObservedContainer]:
    """The old attempts to remove: the kubelet's container GC keeps one dead container per container
    (MaxPerPodContainer=1) so `logs --previous` can read it; a dead current attempt is that one."""
    current = {_cname(c): c for c in (*p.containers, *p.init_containers)}
    keep: dict[str, str] = {}  # container name -> id of the newest dead old attempt
    for c in p.stale:  # oldest first (group_pods sorts by attempt): the last one wins
        now = current.get(_cname(c))
        app = c.labels.get(identity.LABEL_ROLE) != identity.ROLE_SANDBOX
        if app and not c.running and now is not None and now.state not in ("exited", "dead"):
            keep[_cname(c)] = c.id
    return [c for c in p.stale if keep.get(_cname(c)) != c.id]


def _cname(c: rt.ObservedContainer) -> str:
    return c.labels.get(identity.LABEL_CONTAINER_NAME, "")


def _backoff_step(c: rt.ObservedContainer) -> int:
    return int_label(c, labels.BACKOFF_STEP)


# --- deleting a pod ------------------------------------------------------------------------------


def _recorded_grace(pod: ObservedPod, fallback: int | None) -> int:
    """The grace period the pod was created with (as Kubernetes uses the deleted pod's own spec).

    Containers made before the label existed fall back to the current template's, else the default.
    """
    found = [g for c in pod.containers if (g := labels.integer(c.labels, labels.GRACE)) is not None]
    if found:
        return max(found)
    return DEFAULT_GRACE if fallback is None else fallback


def pre_stop_hooks(containers: Iterable[rt.ObservedContainer]) -> tuple[tuple[str, str], ...]:
    """The preStop hooks (recorded on the containers) that run before these running containers stop."""
    return tuple(
        (c.id, c.labels[labels.PRE_STOP]) for c in containers if c.running and c.labels.get(labels.PRE_STOP)
    )


def delete_action(pod: ObservedPod, reason: str, fallback_grace: int | None = None) -> Action:
    """Delete the whole pod: its preStop hooks, then every container with the grace period it was
    created with (the planner's, and `nodeagent delete pod`'s)."""
    return Action(
        verb=DELETE,
        namespace=pod.namespace,
        pod=pod.name,
        owner=pod.owner,
        reason=reason,
        container_ids=pod.all_ids,
        grace_seconds=_recorded_grace(pod, fallback_grace),
        pre_stop=pre_stop_hooks(pod.containers),
        sandbox_id=pod.sandbox.id if pod.sandbox is not None else "",
    )


# --- exited -> back off or run again ------------------------------------------------------------


def _backoff_until(seen: rt.ObservedContainer, step: int, backoff: Backoff) -> float:
    """When an exited container may run again: when it finished plus the crash-loop delay of `step`."""
    finished = seen.finished_at if seen.finished_at is not None else seen.created_at
    return finished + (backoff.delay(step - 1) if step > 0 else 0.0)


def run_again(
    make: functools.partial[Action],
    seen: rt.ObservedContainer,
    verb: Verb,
    reason: str,
    inputs: Inputs,
    waiting: list[Waiting],
    *,
    step: int,
    next_step: int,
) -> list[Action]:
    """The rule every stopped container follows (app, init, sidecar, an outdated pod's): until it finished
    plus the crash-loop delay of `step` it waits, reported as CrashLoopBackOff; then `verb` runs it again
    and records `next_step`. A container created but never started has not crashed: it starts at once.
    A new attempt (INIT, RESTART) counts one more; START runs the same container again, in place."""
    action = make(
        verb=verb,
        reason=reason,
        attempt=attempt_of(seen) if verb == START else attempt_of(seen) + 1,
        backoff_step=next_step,
        container_ids=(seen.id,),
    )
    until = _backoff_until(seen, step, inputs.backoff)
    if seen.state != "created" and inputs.now < until:
        waiting.append(Waiting(action.namespace, action.pod, action.container, "CrashLoopBackOff", until))
        return []
    return [action]


def _start_created(
    make: functools.partial[Action], seen: rt.ObservedContainer, reason: str, inputs: Inputs
) -> list[Action]:
    """Start a container whose create was cut short, with the attempt and backoff step it was made for."""
    no_wait: list[Waiting] = []  # a created container never waits
    return run_again(make, seen, START, reason, inputs, no_wait, step=0, next_step=_backoff_step(seen))


def _should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


# --- one pod's containers -----------------------------------------------------------------------


def container_actions(
    desired: DesiredPod,
    pod: ObservedPod | None,
    inputs: Inputs,
    waiting: list[Waiting],
) -> list[Action]:
    """Bring the containers of one pod (of the right revision) to what the spec says."""
    spec = desired.template.spec
    actions: list[Action] = []
    failure = inputs.failures.get(desired.key)
    if failure is not None:
        until = failure.last + inputs.backoff.delay(failure.count - 1)
        if inputs.now < until:
            # between pull attempts the kubelet shows ImagePullBackOff; other reasons stay as they are
            reason = "ImagePullBackOff" if failure.reason == "ErrImagePull" else failure.reason
            waiting.append(Waiting(desired.namespace, desired.name, "", reason, until))
            return actions
    if pod is not None and pod.sandbox is not None and not pod.sandbox.running:
        # the pod's network namespace died with its sandbox: the kubelet kills and recreates the pod
        why = f"pod sandbox {pod.sandbox.state}; the pod will be recreated"
        actions.append(delete_action(pod, why, spec.termination_grace_period_seconds))
        pod = None
    elif (
        pod is not None
        and podconfig.needs_sandbox(spec)
        and pod.sandbox is None
        and (pod.containers or pod.init_containers)
    ):
        actions.append(delete_action(pod, "pod sandbox is gone; the pod will be recreated"))
        pod = None
    if spec.init_containers and (pod is None or not pod.containers):
        init_actions, done = _init_actions(desired, pod, inputs, waiting)
        if not done:
            return actions + init_actions
    elif pod is not None and any(c.restart_policy == "Always" for c in spec.init_containers):
        actions += _sidecar_restarts(desired, pod, inputs, waiting)
    for c in spec.containers:
        seen = pod.container(c.name) if pod is not None else None
        make = _for_container(desired, c.name)
        if seen is None:
            why = "pod has no container " + repr(c.name) if pod is not None else _create_reason(desired)
            actions.append(make(verb=CREATE, reason=why))
        elif seen.state == "created":
            actions += _start_created(make, seen, "container was created but never started", inputs)
        elif seen.running:
            health = inputs.health.get(seen.id)
            if health is not None and health.restart and spec.restart_policy != "Never":
                actions.append(_probe_restart(seen, health, spec, inputs, make))
        elif _should_restart(spec.restart_policy, seen.exit_code):  # exited or dead
            ran = 0.0
            if seen.started_at is not None and seen.finished_at is not None:
                ran = seen.finished_at - seen.started_at
            fresh = ran >= inputs.backoff.reset_after  # ran long enough: the backoff starts over
            step = 0 if fresh else _backoff_step(seen)
            why = f"container {c.name!r} exited with code {seen.exit_code}; restartPolicy "
            why += spec.restart_policy
            next_step = 0 if fresh else step + 1
            actions += run_again(make, seen, RESTART, why, inputs, waiting, step=step, next_step=next_step)
    return actions


def _init_actions(
    desired: DesiredPod, pod: ObservedPod | None, inputs: Inputs, waiting: list[Waiting]
) -> tuple[list[Action], bool]:
    """Init containers before any app container: in order, each to completion (the kubelet's
    computeInitContainerActions). Returns the actions for the next step and whether all have succeeded.

    A failed init container is retried with the crash-loop backoff (restartPolicy Never: the pod fails
    and stays so). Once the app containers exist, init containers never run again in this pod.
    """
    spec = desired.template.spec
    for index, c in enumerate(spec.init_containers):
        seen = pod.container(c.name) if pod is not None else None
        make = _for_container(desired, c.name)
        if seen is None:
            why = f"init container {index + 1}/{len(spec.init_containers)} {c.name!r} has not run yet"
            return [make(verb=INIT, reason=why)], False
        if seen.state == "created":
            return _start_created(make, seen, "init container was created but never started", inputs), False
        if seen.running:
            if c.restart_policy == "Always":
                continue  # a sidecar: the next one starts once it runs, and it keeps running
            return [], False
        if seen.exit_code == 0 and c.restart_policy != "Always":
            continue
        if spec.restart_policy == "Never" and c.restart_policy != "Always":
            return [], False  # the pod has failed (Init:Error); nothing runs again
        step = _backoff_step(seen)
        why = f"init container {c.name!r} exited with code {seen.exit_code}; retried"
        return run_again(make, seen, INIT, why, inputs, waiting, step=step, next_step=step + 1), False
    return [], True


def _sidecar_restarts(
    desired: DesiredPod, pod: ObservedPod, inputs: Inputs, waiting: list[Waiting]
) -> list[Action]:
    """Sidecars (init containers with restartPolicy Always) of a pod whose apps run: an exited one is
    restarted with the crash-loop backoff, whatever the pod's restartPolicy, as the kubelet does."""
    actions: list[Action] = []
    for c in desired.template.spec.init_containers:
        seen = pod.container(c.name)
        if c.restart_policy != "Always" or seen is None or seen.running or seen.state == "created":
            continue
        step = _backoff_step(seen)
        why = f"sidecar {c.name!r} exited with code {seen.exit_code}; restartPolicy Always"
        make = _for_container(desired, c.name)
        actions += run_again(make, seen, INIT, why, inputs, waiting, step=step, next_step=step + 1)
    return actions


def _probe_restart(
    seen: rt.ObservedContainer,
    health: Health,
    spec: model.PodSpec,
    inputs: Inputs,
    make: functools.partial[Action],
) -> Action:
    """A running container whose liveness (or startup) probe failed: stop it and start the next attempt.

    Stopped with the probe's terminationGracePeriodSeconds, else the pod's (as the kubelet). The restart is
    immediate (failureThreshold x periodSeconds already paced it); the backoff step grows as for a crash.
    """
    ran = inputs.now - (seen.started_at or seen.created_at)
    step = 0 if ran >= inputs.backoff.reset_after else _backoff_step(seen) + 1
    grace = (
        health.grace_seconds if health.grace_seconds is not None else spec.termination_grace_period_seconds
    )
    return make(
        verb=RESTART,
        grace_seconds=grace,
        reason=f"{health.message or 'Liveness probe failed'}; container will be restarted",
        attempt=attempt_of(seen) + 1,
        backoff_step=step,
        container_ids=(seen.id,),
        pre_stop=pre_stop_hooks((seen,)),
    )


def keep_outdated(p: ObservedPod, inputs: Inputs, waiting: list[Waiting]) -> list[Action]:
    """An outdated pod that must keep running (OnDelete, NoSchedule blocking its successor, an orphan).

    Its old template is gone, so an exited container is restarted in place (`docker start`) with the
    configuration it was created with; the restart count does not grow for such restarts.
    """
    actions: list[Action] = []
    for c in p.containers:
        if c.running:
            continue
        make = functools.partial(
            Action, namespace=p.namespace, pod=p.name, owner=p.owner, container=_cname(c)
        )
        why = "outdated pod kept (OnDelete or NoSchedule): restarted in place"
        # the wait is the delay of the container's own step (one more than a new attempt's would use)
        step = _backoff_step(c) + 1
        actions += run_again(make, c, START, why, inputs, waiting, step=step, next_step=0)
    return actions


def _for_container(desired: DesiredPod, container: str) -> functools.partial[Action]:
    """An Action maker with the fields every action on one container of `desired` shares."""
    return functools.partial(
        Action,
        namespace=desired.namespace,
        pod=desired.name,
        owner=desired.owner,
        container=container,
        desired=desired,
        grace_seconds=desired.template.spec.termination_grace_period_seconds,
    )


def _create_reason(desired: DesiredPod) -> str:
    kind = desired.owner.split("/", 1)[0]
    if kind == "Pod":
        return "static pod is not running on this node"
    return "DaemonSet should run on this node and has no pod here"
