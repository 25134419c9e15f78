"""Apply a plan's actions to the container runtime, in a fixed order; one failure never aborts the rest.

Every action is idempotent: a create finds a container of the same deterministic name and reuses it,
a remove of a container that is gone succeeds, so a pass cut short by a crash is simply finished by the
next one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog

from nodeagent import errors, identity, plan, podconfig, volumes
from nodeagent import runtime as rt

log = structlog.get_logger(__name__)

# Kubernetes' container waiting reasons, as `kubectl get pods` shows them
ERR_IMAGE_PULL = "ErrImagePull"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
CREATE_CONTAINER_ERROR = "CreateContainerError"
RUN_CONTAINER_ERROR = "RunContainerError"


@dataclass(frozen=True)
class Outcome:
    action: plan.Action
    ok: bool
    reason: str = ""  # Kubernetes-style reason when it failed (ErrImagePull, ...)
    message: str = ""


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
    ) -> None:
        self._rt = runtime
        self._host = host
        self._lookup = lookup
        self._clock = clock

    def apply(self, actions: Iterable[plan.Action]) -> list[Outcome]:
        ordered = sorted(actions, key=lambda a: plan.VERB_ORDER[a.verb])
        outcomes: list[Outcome] = []
        pulled: dict[str, Outcome | None] = {}  # one pull per image per pass
        for action in ordered:
            try:
                outcome = self._apply_one(action, pulled)
            except errors.NodeAgentError as exc:
                outcome = Outcome(action, False, _reason_for(exc), str(exc))
            except Exception as exc:  # an unexpected bug must not abort the other actions
                log.exception("action_crashed", action=action.verb, pod=action.pod)
                outcome = Outcome(action, False, CREATE_CONTAINER_ERROR, f"{type(exc).__name__}: {exc}")
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
            outcomes.append(outcome)
        return outcomes

    # --- one action ---------------------------------------------------------------------------

    def _apply_one(self, action: plan.Action, pulled: dict[str, Outcome | None]) -> Outcome:
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
        if action.verb in (plan.CREATE, plan.RESTART):
            return self._create(action, pulled)
        raise errors.NodeAgentError(f"unknown action {action.verb!r}")

    def _delete(self, action: plan.Action) -> Outcome:
        for cid in action.container_ids:
            try:
                self._rt.stop(cid, action.grace_seconds)
            except errors.ContainerRuntimeError as exc:
                log.info("stop_failed_removing_anyway", container_id=cid[:12], error=str(exc))
            self._rt.remove(cid)
        if action.owner:
            volumes.remove_pod_dirs(self._host.state_dir, identity.pod_uid(action.owner, action.pod))
        return Outcome(action, True)

    def _create(self, action: plan.Action, pulled: dict[str, Outcome | None]) -> Outcome:
        desired = action.desired
        assert desired is not None, "create and restart actions carry their desired pod"
        spec = desired.template.spec
        container = next(c for c in spec.containers if c.name == action.container)
        failed = self._ensure_image(action, container.image, container.image_pull_policy, pulled)
        if failed is not None:
            return failed
        ctx = self.context(desired)
        create = podconfig.build(
            ctx, container, role=identity.ROLE_APP, attempt=action.attempt, lookup=self._lookup
        )
        labels = dict(create.labels)
        labels[plan.LABEL_BACKOFF_STEP] = str(action.backoff_step)
        labels[plan.LABEL_GRACE] = str(spec.termination_grace_period_seconds)
        if desired.selector_hash:
            labels[plan.LABEL_SELECTOR] = desired.selector_hash
        labels[plan.LABEL_POD_LABELS] = json.dumps(dict(desired.template.metadata.labels), sort_keys=True)
        create = dataclasses.replace(create, labels=labels)
        if action.verb == plan.RESTART:
            # a running container restarted for a failed liveness probe: stop it (with the grace period
            # the action carries) before its successor starts, so they never hold a port at once
            for old in action.container_ids:
                self._rt.stop(old, action.grace_seconds)
        cid = self._rt.create(create)
        try:
            self._rt.start(cid)
        except errors.ContainerRuntimeError as exc:
            # keep the container: it shows up as exited/created and the planner backs off on it
            return Outcome(action, False, RUN_CONTAINER_ERROR, str(exc))
        for old in action.container_ids:
            self._rt.remove(old)
        return Outcome(action, True)

    def context(self, desired: plan.DesiredPod) -> podconfig.PodContext:
        """The PodContext of a desired pod on this host; prepares (creates or checks) its volumes."""
        uid = identity.pod_uid(desired.owner, desired.name)
        paths = volumes.prepare(self._host.state_dir, uid, desired.template.spec)
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
            volume_paths=paths,
            node_allocatable_cpu_milli=self._host.allocatable_cpu_milli,
            node_allocatable_memory=self._host.allocatable_memory,
            withheld_caps=self._host.withheld_caps,
        )

    def _ensure_image(
        self, action: plan.Action, image: str, policy: str, pulled: dict[str, Outcome | None]
    ) -> Outcome | None:
        """imagePullPolicy as the kubelet applies it; returns a failed Outcome or None."""
        if image in pulled:
            cached = pulled[image]
            return None if cached is None else dataclasses.replace(cached, action=action)
        result: Outcome | None = None
        present = self._rt.image_present(image)
        if policy == "Never":
            if not present:
                result = Outcome(
                    action,
                    False,
                    ERR_IMAGE_NEVER_PULL,
                    f'Container image "{image}" is not present with pull policy of Never',
                )
        elif policy == "Always" or not present:
            try:
                self._rt.pull(image)
            except errors.ImagePullError as exc:
                result = Outcome(action, False, ERR_IMAGE_PULL, str(exc))
        pulled[image] = result
        return result


def _reason_for(exc: errors.NodeAgentError) -> str:
    if isinstance(exc, errors.ImagePullError):
        return ERR_IMAGE_PULL
    if isinstance(exc, podconfig.PodConfigError):
        return CREATE_CONTAINER_CONFIG_ERROR
    if isinstance(exc, volumes.VolumeError):
        return CREATE_CONTAINER_CONFIG_ERROR
    return CREATE_CONTAINER_ERROR


def record_failures(
    previous: Mapping[tuple[str, str], plan.Failure], outcomes: Iterable[Outcome], now: float
) -> dict[tuple[str, str], plan.Failure]:
    """Fold this pass's outcomes into the in-memory failure record the planner backs off on."""
    out = dict(previous)
    for o in outcomes:
        key = (o.action.namespace, o.action.pod)
        if o.action.verb not in (plan.CREATE, plan.RESTART, plan.START):
            continue
        if o.ok:
            out.pop(key, None)
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
