"""Kubernetes-shaped events: derived from what a reconcile pass did, merged as client-go merges them,
kept in a small bounded store in stateDir that other processes (`nodeagent events`, `describe`) read.

Derivation is pure (outcomes, plan, observed containers, probe health in; events out). Merging follows
client-go's EventCorrelator (tools/record/events_cache.go): an event equal to a stored one in source,
involved object (with fieldPath), type, reason and message bumps its `count` and `lastTimestamp`; the
10th distinct message of one object+type+reason within 10 minutes becomes "(combined from similar
events): ..." and is counted from then on; and, as its spam filter, one source+object gets 25
occurrences at once, then one every 5 minutes. The store keeps at most MAX_EVENTS events, none older
than MAX_AGE_SECONDS (kube-apiserver's default --event-ttl is one hour).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nodeagent import runtime as rt
from nodeagent.agent import execute, identity, plan, statefiles
from nodeagent.k8s import model

NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "nodeagent"
FILE = statefiles.EVENTS_FILE
MAX_EVENTS = 1000
MAX_AGE_SECONDS = 3600.0
AGGREGATE_MAX_EVENTS = 10  # client-go defaultAggregateMaxEvents
AGGREGATE_INTERVAL = 600.0  # client-go defaultAggregateIntervalInSeconds
COMBINED = "(combined from similar events): "
SPAM_BURST = 25  # client-go defaultSpamBurst: occurrences per source and object at once
SPAM_QPS = 1.0 / 300  # client-go defaultSpamQPS: then one every 5 minutes

# Kubernetes' reasons (pkg/kubelet/events, pkg/controller/daemon)
PULLING, PULLED, FAILED, BACKOFF = "Pulling", "Pulled", "Failed", "BackOff"
CREATED, STARTED, KILLING, UNHEALTHY = "Created", "Started", "Killing", "Unhealthy"
FAILED_MOUNT = "FailedMount"
FAILED_POST_START_HOOK, FAILED_PRE_STOP_HOOK = "FailedPostStartHook", "FailedPreStopHook"
SUCCESSFUL_CREATE, SUCCESSFUL_DELETE, FAILED_PLACEMENT = (
    "SuccessfulCreate",
    "SuccessfulDelete",
    "FailedPlacement",
)


@dataclass(frozen=True)
class ObjectRef:
    """involvedObject: Pod or DaemonSet, with a fieldPath like `spec.containers{main}` for a container."""

    kind: str
    namespace: str
    name: str
    field_path: str = ""

    def text(self) -> str:
        """kubectl get events' OBJECT column: `pod/name`, `daemonset/name`."""
        return f"{self.kind.lower()}/{self.name}"

    def matches(self, kind: str, namespace: str, name: str) -> bool:
        return self.kind.lower() == kind.lower() and (self.namespace, self.name) == (namespace, name)


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str
    involved: ObjectRef
    count: int = 1
    first_timestamp: float = 0.0
    last_timestamp: float = 0.0
    source_host: str = ""  # the node

    @property
    def key(self) -> tuple[str, ...]:
        """getEventKey: what makes two events the same occurrence."""
        o = self.involved
        return (
            self.source_host,
            o.kind,
            o.namespace,
            o.name,
            o.field_path,
            self.type,
            self.reason,
            self.message,
        )

    @property
    def aggregate_key(self) -> tuple[str, ...]:
        """EventAggregatorByReasonFunc: similar events differ only in their message (and fieldPath)."""
        o = self.involved
        return (self.source_host, o.kind, o.namespace, o.name, self.type, self.reason)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, str] = {
            "kind": self.involved.kind,
            "namespace": self.involved.namespace,
            "name": self.involved.name,
        }
        if self.involved.field_path:
            obj["fieldPath"] = self.involved.field_path
        return {
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "involvedObject": obj,
            "count": self.count,
            "firstTimestamp": rfc3339(self.first_timestamp),
            "lastTimestamp": rfc3339(self.last_timestamp),
            "source": {"component": COMPONENT, "host": self.source_host},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Event:
        obj = doc.get("involvedObject") or {}
        return cls(
            type=str(doc.get("type", NORMAL)),
            reason=str(doc.get("reason", "")),
            message=str(doc.get("message", "")),
            involved=ObjectRef(
                str(obj.get("kind", "")),
                str(obj.get("namespace", "")),
                str(obj.get("name", "")),
                str(obj.get("fieldPath", "")),
            ),
            count=int(doc.get("count", 1)),
            first_timestamp=parse_time(doc.get("firstTimestamp")),
            last_timestamp=parse_time(doc.get("lastTimestamp")),
            source_host=str((doc.get("source") or {}).get("host", "")),
        )


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


# --- merging (pure) -----------------------------------------------------------------------------


Spam = dict[str, tuple[float, float]]  # source+object -> (tokens, when last counted)


def merge(stored: Sequence[Event], new: Iterable[Event], now: float, spam: Spam | None = None) -> list[Event]:
    """Fold new occurrences into the stored events as client-go's EventCorrelator does (aggregate, count,
    then the spam filter, which updates `spam` in place when given), then bound the result
    (MAX_AGE_SECONDS, MAX_EVENTS, the oldest dropped first). Order: by lastTimestamp."""
    out = [e for e in stored if now - e.last_timestamp <= MAX_AGE_SECONDS]
    index = {e.key: i for i, e in enumerate(out)}
    for ev in new:
        ev = _aggregate(out, ev, now)
        if spam is not None and not _accept(spam, ev, now):
            continue
        i = index.get(ev.key)
        if i is not None:
            old = out[i]
            out[i] = replace(
                old, count=old.count + ev.count, last_timestamp=max(old.last_timestamp, ev.last_timestamp)
            )
        else:
            index[ev.key] = len(out)
            out.append(ev)
    out.sort(key=lambda e: e.last_timestamp)
    return out[-MAX_EVENTS:]


def _spam_key(ev: Event) -> str:
    o = ev.involved
    return "/".join((ev.source_host, o.kind, o.namespace, o.name))


def _accept(spam: Spam, ev: Event, now: float) -> bool:
    """EventSourceObjectSpamFilter: a token bucket per source and object, SPAM_BURST deep, refilled at
    SPAM_QPS; an occurrence without a token is dropped (a crash loop cannot flood the store)."""
    key = _spam_key(ev)
    tokens, last = spam.get(key, (float(SPAM_BURST), now))
    tokens = min(float(SPAM_BURST), tokens + max(0.0, now - last) * SPAM_QPS)
    if tokens < 1.0:
        spam[key] = (tokens, now)
        return False
    spam[key] = (tokens - 1.0, now)
    return True


def _prune_spam(spam: Spam, now: float) -> Spam:
    """Buckets that have refilled are the same as no bucket: dropped, so the state stays small."""
    return {k: v for k, v in spam.items() if v[0] + max(0.0, now - v[1]) * SPAM_QPS < SPAM_BURST}


def _aggregate(stored: Sequence[Event], ev: Event, now: float) -> Event:
    """EventAggregator: once an object+type+reason has had AGGREGATE_MAX_EVENTS distinct messages within
    AGGREGATE_INTERVAL, further ones become one "(combined from similar events)" event, counted."""
    if ev.message.startswith(COMBINED):
        return ev
    recent = {
        e.message
        for e in stored
        if e.aggregate_key == ev.aggregate_key
        and now - e.last_timestamp <= AGGREGATE_INTERVAL
        and not e.message.startswith(COMBINED)
    }
    if ev.message in recent or len(recent | {ev.message}) < AGGREGATE_MAX_EVENTS:
        return ev
    combined = [e for e in stored if e.aggregate_key == ev.aggregate_key and e.message.startswith(COMBINED)]
    message = combined[-1].message if combined else COMBINED + ev.message
    return replace(ev, message=message, involved=replace(ev.involved, field_path=""))


# --- the store ----------------------------------------------------------------------------------


def path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE)


def load(state_dir: str) -> list[Event]:
    """The stored events, oldest first; a missing or unreadable store is empty (events are best effort)."""
    return _load(state_dir)[0]


_parsed: dict[str, tuple[tuple[int, int, int], list[Event], Spam]] = {}
_parsed_lock = threading.Lock()


def _load(state_dir: str) -> tuple[list[Event], Spam]:
    """The store as last written; parsed again only when the file changed (every write is an atomic
    rename, so a new inode), since the status reporter reads it for every report."""
    file = path(state_dir)
    try:
        st = os.stat(file)
    except OSError:
        return [], {}
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _parsed_lock:
        hit = _parsed.get(file)
    if hit is not None and hit[0] == stamp:
        return list(hit[1]), dict(hit[2])
    out, spam = _parse(file)
    with _parsed_lock:
        _parsed[file] = (stamp, out, spam)
    return list(out), dict(spam)


def _parse(file: str) -> tuple[list[Event], Spam]:
    try:
        with open(file, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return [], {}
    items = doc.get("items") if isinstance(doc, dict) else None
    out: list[Event] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                out.append(Event.from_json(item))
    raw = doc.get("spamFilter") if isinstance(doc, dict) else None
    spam: Spam = {}
    for k, v in raw.items() if isinstance(raw, dict) else ():
        with contextlib.suppress(TypeError, ValueError):
            spam[str(k)] = (float(v[0]), float(v[1]))
    return out, spam


@contextlib.contextmanager
def _locked(state_dir: str) -> Iterator[None]:
    """One writer at a time (`run` and a one-shot `sync` may both record)."""
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, FILE + ".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(state_dir: str, events: Iterable[Event], now: float) -> list[Event]:
    """Merge these occurrences into stateDir/events.json (written atomically: readers never see half a
    file); returns the store. An unwritable stateDir loses events, never a pass."""
    new = list(events)
    if not new:
        return load(state_dir)  # a quiet pass reads nothing back and writes nothing
    try:
        with _locked(state_dir):
            stored, spam = _load(state_dir)
            merged = merge(stored, new, now, spam)
            if merged == stored:
                return merged
            doc = {
                "kind": "EventList",
                "items": [e.to_json() for e in merged],
                "spamFilter": {k: list(v) for k, v in _prune_spam(spam, now).items()},
            }
            statefiles.write_atomic(path(state_dir), json.dumps(doc))
            return merged
    except OSError:
        return merge([], new, now)


def recent(events: Sequence[Event], limit: int) -> list[Event]:
    """The newest `limit` events, newest first (what a node report carries)."""
    return sorted(events, key=lambda e: e.last_timestamp, reverse=True)[:limit]


def for_object(events: Iterable[Event], kind: str, namespace: str, name: str) -> list[Event]:
    return [e for e in events if e.involved.matches(kind, namespace, name)]


# --- derivation (pure) -------------------------------------------------------------------------


def container_path(name: str, init: bool = False) -> str:
    return f"spec.{'initContainers' if init else 'containers'}{{{name}}}"


def _pod_ref(namespace: str, pod: str, container: str = "", init: bool = False) -> ObjectRef:
    return ObjectRef("Pod", namespace, pod, container_path(container, init) if container else "")


def _owner_ref(owner: str) -> ObjectRef | None:
    kind, _, rest = owner.partition("/")
    ns, _, name = rest.partition("/")
    if kind != "DaemonSet" or not ns or not name:
        return None
    return ObjectRef("DaemonSet", ns, name)


def _image_of(action: plan.Action) -> str:
    d = action.desired
    if d is None:
        return ""
    spec = d.template.spec
    for c in (*spec.containers, *spec.init_containers):
        if c.name == action.container:
            return c.image
    return ""


def _mount_error(action: plan.Action, message: str) -> str | None:
    """The volume a CreateContainerConfigError is about, when it is a volume's (hostPath type check, a
    ConfigMap or Secret a volume names): the kubelet reports those as FailedMount, not Failed."""
    d = action.desired
    if d is None:
        return None
    for v in d.template.spec.volumes:
        src = v.source
        if isinstance(src, model.HostPathVolumeSource):
            if message.startswith(("hostPath ", "mkdir ", "open ")) and src.path in message:
                return v.name
            continue
        if any(f'"{ref}" not found' in message for ref in _volume_refs(src)):
            return v.name
    return None


def _volume_refs(src: model.VolumeSource) -> list[str]:
    if isinstance(src, model.ConfigMapVolumeSource):
        return [src.name]
    if isinstance(src, model.SecretVolumeSource):
        return [src.secret_name]
    if isinstance(src, model.ProjectedVolumeSource):
        return [
            n
            for s in src.sources
            for n in (s.config_map.name if s.config_map else "", s.secret.secret_name if s.secret else "")
            if n
        ]
    return []


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() of a duration truncated to milliseconds, as the kubelet prints pull
    times: `523ms`, `1.2s`, `2m3.004s`, `1h0m0s`."""
    ms = int(max(seconds, 0.0) * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    sec, frac = divmod(rem, 1000)
    text = f"{sec}.{frac:03d}".rstrip("0") + "s" if frac else f"{sec}s"
    if h:
        return f"{h}h{m}m{text}"
    return f"{m}m{text}" if m else text


def _image_events(o: execute.Outcome) -> list[tuple[str, str, str]]:
    """The kubelet's image manager's events (images/image_manager.go) for how a create got its image:
    already present, pulled (Pulling, Pulled with the pull's time and the time including waiting for a
    slot), or a pull that failed (Pulling, Failed)."""
    got = o.image
    if got is None:  # an outcome that says nothing of its image: only a pull that was tried fails so
        image = _image_of(o.action)
        if o.reason != execute.ERR_IMAGE_PULL:
            return []
        return [
            (NORMAL, PULLING, f'Pulling image "{image}"'),
            (WARNING, FAILED, f'Failed to pull image "{image}": {o.message}'),
        ]
    if got.present:
        return [(NORMAL, PULLED, f'Container image "{got.image}" already present on machine')]
    if got.pulled:
        took, waited = go_duration(got.pull_seconds), go_duration(got.wait_seconds)
        pulled = f'Successfully pulled image "{got.image}" in {took} ({waited} including waiting)'
        return [(NORMAL, PULLING, f'Pulling image "{got.image}"'), (NORMAL, PULLED, pulled)]
    if got.failure is not None and got.failure.reason == execute.ERR_IMAGE_PULL:
        return [
            (NORMAL, PULLING, f'Pulling image "{got.image}"'),
            (WARNING, FAILED, f'Failed to pull image "{got.image}": {got.failure.message}'),
        ]
    return []


def _hook_failures(o: execute.Outcome, hook: str) -> list[execute.HookFailure]:
    return [f for f in o.hooks_failed if f.hook == hook]


def from_outcomes(outcomes: Iterable[execute.Outcome], node: str, now: float) -> list[Event]:
    """The kubelet's and the DaemonSet controller's events for what the executor did, from the outcomes
    alone: `run` derives them a pass later, from an engine that has moved on (the created pod exists,
    the deleted containers are gone)."""
    out: list[Event] = []

    def ev(kind: str, reason: str, message: str, ref: ObjectRef) -> None:
        out.append(Event(kind, reason, message, ref, 1, now, now, node))

    created_pods: set[tuple[str, str]] = set()
    for o in outcomes:
        a = o.action
        key = (a.namespace, a.pod)
        init = a.verb == plan.INIT
        ref = _pod_ref(a.namespace, a.pod, a.container, init)
        if a.verb in (plan.CREATE, plan.RESTART, plan.INIT, plan.START):
            for kind, reason, message in _image_events(o):
                ev(kind, reason, message, ref)
            if o.ok:
                if a.verb != plan.START:
                    ev(NORMAL, CREATED, f"Created container: {a.container}", ref)
                ev(NORMAL, STARTED, f"Started container {a.container}", ref)
            elif o.reason == execute.ERR_IMAGE_PULL:
                ev(WARNING, FAILED, f"Error: {o.reason}", ref)
            elif o.reason == execute.ERR_IMAGE_NEVER_PULL:
                ev(WARNING, execute.ERR_IMAGE_NEVER_PULL, o.message, ref)
                ev(WARNING, FAILED, f"Error: {o.reason}", ref)
            elif o.reason == execute.POST_START_HOOK_ERROR:
                hooks = _hook_failures(o, execute.POST_START)
                ev(WARNING, FAILED_POST_START_HOOK, hooks[0].message if hooks else o.message, ref)
                ev(NORMAL, KILLING, f"FailedPostStartHook: Stopping container {a.container}", ref)
            elif o.reason == execute.CREATE_CONTAINER_CONFIG_ERROR and (vol := _mount_error(a, o.message)):
                ev(
                    WARNING,
                    FAILED_MOUNT,
                    f'MountVolume.SetUp failed for volume "{vol}" : {o.message}',
                    _pod_ref(*key),
                )
            else:
                ev(WARNING, FAILED, f"Error: {o.message or o.reason}", ref)
            owner = _owner_ref(a.owner)
            if owner is not None and o.pod_created and key not in created_pods:
                created_pods.add(key)
                ev(NORMAL, SUCCESSFUL_CREATE, f"Created pod: {a.pod}", owner)
        elif a.verb == plan.DELETE and o.ok:
            # named by the executor before the stop: in `run` the next pass's list no longer has them
            for s in o.stopped:
                ev(NORMAL, KILLING, f"Stopping container {s.container}", _pod_ref(*key, s.container, s.init))
            owner = _owner_ref(a.owner)
            if owner is not None:
                ev(NORMAL, SUCCESSFUL_DELETE, f"Deleted pod: {a.pod}", owner)
    for o in outcomes:
        a = o.action
        if a.verb == plan.RESTART and o.stopped:
            # a restart of a running container: its liveness (or startup) probe failed
            msg = f"Container {a.container} failed liveness probe, will be restarted"
            ev(NORMAL, KILLING, msg, _pod_ref(a.namespace, a.pod, a.container))
        for f in _hook_failures(o, execute.PRE_STOP):  # after Killing, as killContainer records them
            ev(WARNING, FAILED_PRE_STOP_HOOK, f.message, _pod_ref(a.namespace, a.pod, f.container))
    return out


def from_plan(p: plan.Plan, node: str, now: float) -> list[Event]:
    """BackOff for what the plan waits on; FailedPlacement for DaemonSets that do not run here."""
    out: list[Event] = []
    images = {
        (d.namespace, d.name, c.name): c.image
        for d in [*(x.desired for x in p.daemonsets), *(x.desired for x in p.static_pods)]
        for c in (*d.template.spec.containers, *d.template.spec.init_containers)
    }
    for w in p.waiting:
        if w.reason == "CrashLoopBackOff" and w.container:
            ref = _pod_ref(w.namespace, w.pod, w.container)
            msg = f"Back-off restarting failed container {w.container} in pod {w.pod}_{w.namespace}"
            out.append(Event(WARNING, BACKOFF, msg, ref, 1, now, now, node))
        elif w.reason == "ImagePullBackOff":
            ref = _pod_ref(w.namespace, w.pod, w.container)
            image = images.get((w.namespace, w.pod, w.container), "")
            msg = f'Back-off pulling image "{image}"' if image else "Back-off pulling image"
            out.append(Event(NORMAL, BACKOFF, msg, ref, 1, now, now, node))
    for d in p.daemonsets:
        if d.decision.should_run:
            continue
        why = "; ".join(d.decision.reasons) or "the node does not match"
        ref = ObjectRef("DaemonSet", d.namespace, d.name)
        out.append(
            Event(
                WARNING, FAILED_PLACEMENT, f'failed to place pod on "{node}": {why}', ref, 1, now, now, node
            )
        )
    return out


def from_health(
    health: Mapping[str, plan.Health], observed: Iterable[rt.ObservedContainer], node: str, now: float
) -> list[Event]:
    """Unhealthy for each running container a probe currently fails (the prober's verdict message is
    the kubelet's: "Liveness probe failed: ...")."""
    out: list[Event] = []
    for c in observed:
        h = health.get(c.id)
        if h is None or not c.running or not h.message or (h.ready and not h.restart):
            continue
        ref = _pod_ref(
            c.labels.get(identity.LABEL_POD_NAMESPACE, ""),
            c.labels.get(identity.LABEL_POD_NAME, ""),
            c.labels.get(identity.LABEL_CONTAINER_NAME, ""),
        )
        out.append(Event(WARNING, UNHEALTHY, h.message, ref, 1, now, now, node))
    return out


def record_pass(
    state_dir: str,
    p: plan.Plan,
    outcomes: Iterable[execute.Outcome],
    observed: Iterable[rt.ObservedContainer],
    health: Mapping[str, plan.Health],
    node: str,
    now: float,
) -> None:
    """The one call the agent makes after a pass's outcomes are known; a quiet pass (no event) touches
    no file, so an idle agent does not read its event store every pass."""
    new = [
        *from_outcomes(outcomes, node, now),
        *from_plan(p, node, now),
        *from_health(health, observed, node, now),
    ]
    if new:
        record(state_dir, new, now)


def record_outcomes(state_dir: str, outcomes: Iterable[execute.Outcome], node: str) -> None:
    """Events of actions applied outside a pass (`nodeagent delete pod`), now."""
    now = time.time()
    record(state_dir, from_outcomes(outcomes, node, now), now)


# --- the fleet (serve) ------------------------------------------------------------------------------


def fleet_events(reports: Iterable[tuple[str, Iterable[Mapping[str, Any]]]]) -> list[dict[str, Any]]:
    """Every node's reported events (as to_json made them), each marked with its node in `source.host`,
    newest first; entries that do not parse are dropped (a report is another process's word)."""
    out: list[Event] = []
    for node, items in reports:
        for item in items:
            try:
                e = Event.from_json(item)
            except (TypeError, ValueError, AttributeError):
                continue
            out.append(replace(e, source_host=e.source_host or node))
    out.sort(key=lambda e: e.last_timestamp, reverse=True)
    return [e.to_json() for e in out]
