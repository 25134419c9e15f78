"""`nodeagent describe pod|ds`: kubectl describe's layout, built from data (pure).

The inputs are what the agent already has: the desired pod (its spec), the observed pod (current and
last dead attempt of each container, which the GC keeps), its status, `docker inspect` documents of
those containers, and the stored events. Headings and value formats are kubectl's
(staging/src/k8s.io/kubectl/pkg/describe/describe.go), aligned the way its tabwriter aligns them.
Environment values from Secrets are never read: like kubectl, the spec's reference is shown.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent import runtime as rt
from nodeagent.agent import events, identity, plan, status
from nodeagent.k8s import model, scheduling

Inspect = Mapping[str, Any]


# --- kubectl's PrefixWriter + text/tabwriter (minwidth 0, padding 2, spaces) ---------------------


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def w(self, level: int, text: str) -> None:
        """One line at an indentation level (2 spaces each); tabs separate aligned cells."""
        self.lines.append("  " * level + text)

    def render(self) -> str:
        return "".join(line + "\n" for line in tabwrite(self.lines))


def tabwrite(lines: Sequence[str], padding: int = 2) -> list[str]:
    """Go's text/tabwriter: a column block is a run of consecutive lines that have a tab-terminated
    cell in that column; each block is as wide as its widest cell plus padding."""
    rows = [line.split("\t") for line in lines]
    out = [""] * len(rows)
    widths: list[int] = []

    def emit(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = rows[i]
            text = ""
            for j, cell in enumerate(cells):
                if j < len(cells) - 1:
                    text += cell.ljust(widths[j]) if j < len(widths) else cell
                else:
                    text += cell
            out[i] = text.rstrip(" ") if len(cells) > 1 else text

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            emit(line0, this)
            line0 = this
            width = 0
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        emit(line0, line1)

    fmt(0, len(rows))
    return out


# --- value formats --------------------------------------------------------------------------------


def rfc1123z(t: float | None) -> str:
    """Go's time.RFC1123Z, in UTC."""
    if t is None:
        return "<unknown>"
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))


def _labels(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(labels.items())] or ["<none>"]


def _multi(w: _Writer, level: int, title: str, values: Sequence[str]) -> None:
    """kubectl's printLabelsMultiline: the first value on the title's line, the rest aligned below."""
    w.w(level, f"{title}:\t{values[0]}")
    for v in values[1:]:
        w.w(level, f"\t{v}")


def _duration(seconds: int) -> str:
    """Go's time.Duration String() for whole seconds, as kubectl prints probe settings."""
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def probe_text(p: model.Probe) -> str:
    """kubectl's DescribeProbe: `http-get http://:8080/healthz delay=0s timeout=1s period=10s ...`."""
    attrs = (
        f"delay={_duration(p.initial_delay_seconds)} timeout={_duration(p.timeout_seconds)} "
        f"period={_duration(p.period_seconds)} #success={p.success_threshold} #failure={p.failure_threshold}"
    )
    h = p.handler
    if isinstance(h, model.ExecAction):
        return f"exec [{' '.join(h.command)}] {attrs}"
    if isinstance(h, model.HTTPGetAction):
        scheme = h.scheme.lower() or "http"
        return f"http-get {scheme}://{h.host}:{h.port}{h.path} {attrs}"
    if isinstance(h, model.TCPSocketAction):
        return f"tcp-socket {h.host}:{h.port} {attrs}"
    return f"grpc <pod>:{h.port} {h.service} {attrs}"


def _env_lines(c: model.Container, w: _Writer) -> None:
    """kubectl's describeContainerEnvVars: literal values, and references (never a Secret's value)."""
    if c.env_from:
        w.w(2, "Environment Variables from:")
        for ef in c.env_from:
            ref = ef.config_map_ref or ef.secret_ref
            kind = "ConfigMap" if ef.config_map_ref else "Secret"
            if ref is None:
                continue
            prefix = f" with prefix '{ef.prefix}'" if ef.prefix else ""
            w.w(3, f"{ref.name}\t{kind}{prefix}\tOptional: {str(ref.optional).lower()}")
    if not c.env:
        w.w(2, "Environment:\t<none>")
        return
    w.w(2, "Environment:")
    for e in c.env:
        src = e.value_from
        if src is None:
            first, *rest = e.value.split("\n") if e.value else [""]
            w.w(3, f"{e.name}:\t{first}")
            for line in rest:
                w.w(3, f"\t{line}")
        elif src.secret_key_ref is not None:
            r = src.secret_key_ref
            text = f"<set to the key '{r.key}' in secret '{r.name}'>"
            w.w(3, f"{e.name}:\t{text}\tOptional: {str(r.optional).lower()}")
        elif src.config_map_key_ref is not None:
            r = src.config_map_key_ref
            w.w(
                3,
                f"{e.name}:\t<set to the key '{r.key}' of config map '{r.name}'>\t"
                f"Optional: {str(r.optional).lower()}",
            )
        elif src.field_ref is not None:
            w.w(3, f"{e.name}:\t ({src.field_ref.api_version}:{src.field_ref.field_path})")
        elif src.resource_field_ref is not None:
            w.w(3, f"{e.name}:\t ({src.resource_field_ref.resource})")


def _mounts(c: model.Container, w: _Writer) -> None:
    if not c.volume_mounts:
        w.w(2, "Mounts:\t<none>")
        return
    w.w(2, "Mounts:")
    for m in sorted(c.volume_mounts, key=lambda m: m.mount_path):
        flags = ["ro" if m.read_only else "rw"]
        if m.sub_path:
            flags.append(f'path="{m.sub_path}"')
        if m.sub_path_expr:
            flags.append(f'path="{m.sub_path_expr}"')
        w.w(3, f"{m.mount_path} from {m.name} ({','.join(flags)})")


# --- container state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """One ContainerState as kubectl prints it."""

    kind: str  # Running, Waiting, Terminated
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None


def _time(value: object) -> float | None:
    """Docker's RFC 3339 time (nanoseconds); Go's zero time is None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    return events.parse_time(value) or None


def terminated(doc: Inspect | None, seen: rt.ObservedContainer | None = None) -> State | None:
    """A dead container's State from its `docker inspect` (else from the list line)."""
    st = (doc or {}).get("State") or {}
    if not doc and seen is None:
        return None
    code = st.get("ExitCode", seen.exit_code if seen else None)
    reason = "OOMKilled" if st.get("OOMKilled") else "Completed" if code == 0 else "Error"
    return State(
        "Terminated",
        reason=reason,
        message=str(st.get("Error") or ""),
        exit_code=int(code) if isinstance(code, int) else None,
        started=_time(st.get("StartedAt")) or (seen.started_at if seen else None),
        finished=_time(st.get("FinishedAt")) or (seen.finished_at if seen else None),
    )


def _state_lines(w: _Writer, title: str, s: State) -> None:
    w.w(2, f"{title}:\t{s.kind}")
    if s.kind == "Running":
        w.w(3, f"Started:\t{rfc1123z(s.started)}")
        return
    if s.reason:
        w.w(3, f"Reason:\t{s.reason}")
    if s.message:
        w.w(3, f"Message:\t{s.message}")
    if s.kind == "Terminated":
        w.w(3, f"Exit Code:\t{s.exit_code if s.exit_code is not None else '<unknown>'}")
        w.w(3, f"Started:\t{rfc1123z(s.started)}")
        w.w(3, f"Finished:\t{rfc1123z(s.finished)}")


@dataclass(frozen=True)
class ContainerView:
    spec: model.Container
    current: rt.ObservedContainer | None = None
    last: rt.ObservedContainer | None = None  # the last dead attempt kept by the GC
    status: status.ContainerStatus | None = None


def container_views(
    spec: model.PodSpec,
    observed: plan.ObservedPod | None,
    ps: status.PodStatus | None,
    init: bool,
) -> list[ContainerView]:
    group = spec.init_containers if init else spec.containers
    current = (
        {
            c.labels.get(identity.LABEL_CONTAINER_NAME, ""): c
            for c in (observed.init_containers if init else observed.containers)
        }
        if observed
        else {}
    )
    stale: dict[str, rt.ObservedContainer] = {}
    for c in observed.stale if observed else ():
        if not c.running:
            stale[c.labels.get(identity.LABEL_CONTAINER_NAME, "")] = c  # sorted oldest first: newest wins
    statuses = {c.name: c for c in ((ps.init_containers if init else ps.containers) if ps else ())}
    return [ContainerView(c, current.get(c.name), stale.get(c.name), statuses.get(c.name)) for c in group]


def states(v: ContainerView, inspects: Mapping[str, Inspect], pod_reason: str) -> tuple[State, State | None]:
    """(State, Last State) as the kubelet reports them: a crashed container waiting for its restart is
    Waiting with the crash as Last State; a running one has its previous attempt as Last State."""
    cur = v.current
    last = terminated(inspects.get(v.last.id), v.last) if v.last is not None else None
    if cur is None:
        own = v.status.reason if v.status is not None and v.status.state == "waiting" else ""
        return State("Waiting", reason=own or pod_reason or "ContainerCreating"), last
    doc = inspects.get(cur.id) or {}
    st = doc.get("State") or {}
    if cur.running:
        return State("Running", started=_time(st.get("StartedAt")) or cur.started_at), last
    if cur.state == "created":
        return State("Waiting", reason="ContainerCreating"), last
    dead = terminated(doc, cur)
    assert dead is not None
    if v.status is not None and v.status.state == "waiting":
        return State("Waiting", reason=v.status.reason), dead
    return dead, last


# --- describe pod ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodFacts:
    """Everything `describe pod` shows, gathered by the caller."""

    desired: plan.DesiredPod | None
    observed: plan.ObservedPod | None
    status: status.PodStatus | None
    node_name: str
    host_ip: str = ""
    pod_ip: str = ""
    inspects: Mapping[str, Inspect] = field(default_factory=dict)
    events: Sequence[events.Event] = ()
    waiting_reason: str = ""  # the plan's pod-level wait (CreateContainerConfigError, ...), if any
    waiting_message: str = ""


def _events_section(w: _Writer, evs: Iterable[events.Event], now: float) -> None:
    evs = sorted(evs, key=lambda e: e.last_timestamp)
    if not evs:
        w.w(0, "Events:\t<none>")
        return
    w.w(0, "Events:")
    w.w(1, "Type\tReason\tAge\tFrom\tMessage")
    w.w(1, "----\t------\t----\t----\t-------")
    for e in evs:
        age = status.age(now - e.first_timestamp)
        if e.count > 1:
            age = f"{status.age(now - e.last_timestamp)} (x{e.count} over {age})"
        w.w(1, f"{e.type}\t{e.reason}\t{age}\t{events.COMPONENT}\t{e.message}")


def _volumes(w: _Writer, spec: model.PodSpec) -> None:
    if not spec.volumes:
        w.w(0, "Volumes:\t<none>")
        return
    w.w(0, "Volumes:")
    for v in spec.volumes:
        w.w(1, f"{v.name}:")
        src = v.source
        if isinstance(src, model.HostPathVolumeSource):
            w.w(2, "Type:\tHostPath (bare host directory volume)")
            w.w(2, f"Path:\t{src.path}")
            w.w(2, f"HostPathType:\t{src.type}")
        elif isinstance(src, model.EmptyDirVolumeSource):
            w.w(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)")
            w.w(2, f"Medium:\t{src.medium}")
            w.w(2, f"SizeLimit:\t{src.size_limit if src.size_limit is not None else '<unset>'}")
        elif isinstance(src, model.ConfigMapVolumeSource):
            w.w(2, "Type:\tConfigMap (a volume populated by a ConfigMap)")
            w.w(2, f"Name:\t{src.name}")
            w.w(2, f"Optional:\t{str(src.optional).lower()}")
        elif isinstance(src, model.SecretVolumeSource):
            w.w(2, "Type:\tSecret (a volume populated by a Secret)")
            w.w(2, f"SecretName:\t{src.secret_name}")
            w.w(2, f"Optional:\t{str(src.optional).lower()}")
        elif isinstance(src, model.ProjectedVolumeSource):
            w.w(2, "Type:\tProjected (a volume that contains injected data from multiple sources)")
        elif isinstance(src, model.DownwardAPIVolumeSource):
            w.w(2, "Type:\tDownwardAPI (a volume populated by information about the pod)")
        else:
            w.w(2, f"Type:\t{src.type} (not supported on this node)")


def _container(w: _Writer, v: ContainerView, facts: PodFacts) -> None:
    c = v.spec
    w.w(1, f"{c.name}:")
    if v.current is not None:
        w.w(2, f"Container ID:\tdocker://{v.current.id}")
    w.w(2, f"Image:\t{c.image}")
    doc = facts.inspects.get(v.current.id, {}) if v.current is not None else {}
    w.w(2, f"Image ID:\t{doc.get('Image', '')}")
    ports = [f"{p.container_port}/{p.protocol}" for p in c.ports]
    host_ports = [f"{p.host_port}/{p.protocol}" for p in c.ports]
    if len(ports) > 1:
        w.w(2, f"Ports:\t{', '.join(ports)}")
        w.w(2, f"Host Ports:\t{', '.join(host_ports)}")
    else:
        w.w(2, f"Port:\t{ports[0] if ports else '<none>'}")
        w.w(2, f"Host Port:\t{host_ports[0] if host_ports else '<none>'}")
    for title, values in (("Command", c.command), ("Args", c.args)):
        if values:
            w.w(2, f"{title}:")
            for value in values:
                for line in value.split("\n"):
                    w.w(3, line)
    current, last = states(v, facts.inspects, facts.waiting_reason)
    if current.kind == "Waiting" and not current.message and v.current is None and facts.waiting_message:
        current = State("Waiting", reason=current.reason, message=facts.waiting_message)
    _state_lines(w, "State", current)
    if last is not None:
        _state_lines(w, "Last State", last)
    ready = v.status.ready if v.status is not None else False
    w.w(2, f"Ready:\t{'True' if ready else 'False'}")
    w.w(2, f"Restart Count:\t{v.status.restart_count if v.status is not None else 0}")
    for title, res in (("Limits", c.resources.limits), ("Requests", c.resources.requests)):
        if res:
            w.w(2, f"{title}:")
            for k, q in sorted(res.items()):
                w.w(3, f"{k}:\t{q}")
    for title, probe in (
        ("Liveness", c.liveness_probe),
        ("Readiness", c.readiness_probe),
        ("Startup", c.startup_probe),
    ):
        if probe is not None:
            w.w(2, f"{title}:\t{probe_text(probe)}")
    _env_lines(c, w)
    _mounts(c, w)


def conditions(facts: PodFacts) -> list[tuple[str, bool]]:
    """PodScheduled, Initialized, ContainersReady, Ready, as the kubelet sets them (no readiness gates)."""
    ps = facts.status
    spec = facts.desired.template.spec if facts.desired else None
    inits_done = True
    if spec is not None and spec.init_containers:
        got = {c.name: c for c in (ps.init_containers if ps else ())}
        inits_done = all(
            (s := got.get(c.name)) is not None
            and (
                (s.state == "terminated" and s.exit_code == 0)
                or (c.restart_policy == "Always" and s.state == "running")
            )
            for c in spec.init_containers
        )
    ready = bool(ps and ps.ready)
    return [("Initialized", inits_done), ("Ready", ready), ("ContainersReady", ready), ("PodScheduled", True)]


def describe_pod(facts: PodFacts, now: float) -> str:
    w = _Writer()
    d, o, ps = facts.desired, facts.observed, facts.status
    name = d.name if d else o.name if o else ""
    namespace = d.namespace if d else o.namespace if o else ""
    owner = d.owner if d else o.owner if o else ""
    spec = d.template.spec if d else None
    meta_labels = dict(d.template.metadata.labels) if d else {}
    if owner.startswith("DaemonSet/") and (ps or d):
        meta_labels["controller-revision-hash"] = ps.revision if ps else d.spec_hash if d else ""
    w.w(0, f"Name:\t{name}")
    w.w(0, f"Namespace:\t{namespace}")
    w.w(0, f"Priority:\t{spec.priority or 0 if spec else 0}")
    if spec is not None and spec.priority_class_name:
        w.w(0, f"Priority Class Name:\t{spec.priority_class_name}")
    w.w(0, f"Service Account:\t{spec.service_account_name or 'default' if spec else 'default'}")
    w.w(0, f"Node:\t{facts.node_name}/{facts.host_ip}" if facts.host_ip else f"Node:\t{facts.node_name}")
    w.w(0, f"Start Time:\t{rfc1123z(ps.started_at) if ps and ps.started_at else '<unknown>'}")
    _multi(w, 0, "Labels", _labels(meta_labels))
    annotations = dict(d.template.metadata.annotations) if d else {}
    _multi(w, 0, "Annotations", [f"{k}: {v}" for k, v in sorted(annotations.items())] or ["<none>"])
    w.w(0, f"Status:\t{ps.phase if ps else 'Pending'}")
    if ps and ps.status not in (ps.phase, "Running", "Completed"):
        w.w(0, f"Reason:\t{ps.status}")
    if ps is not None and not ps.up_to_date and ps.revision:
        w.w(0, "Message:\tthe pod runs an outdated revision of its owner")
    ip = facts.host_ip if spec is not None and spec.host_network else facts.pod_ip
    w.w(0, f"IP:\t{ip}")
    if ip:
        w.w(0, "IPs:")
        w.w(1, f"IP:\t{ip}")
    kind, _, rest = owner.partition("/")
    if kind == "DaemonSet":
        w.w(0, f"Controlled By:\tDaemonSet/{rest.partition('/')[2]}")
    elif kind == "Pod":
        w.w(0, "Controlled By:\t<none> (static pod)")
    elif o is not None and not owner:
        w.w(0, "Controlled By:\t<none> (orphaned)")
    if spec is not None:
        for title, init in (("Init Containers", True), ("Containers", False)):
            views = container_views(spec, o, ps, init)
            if not views:
                continue
            w.w(0, f"{title}:")
            for v in views:
                _container(w, v, facts)
    w.w(0, "Conditions:")
    w.w(1, "Type\tStatus")
    for cond, ok in conditions(facts):
        w.w(1, f"{cond}\t{'True' if ok else 'False'}")
    if spec is not None:
        _volumes(w, spec)
        _multi(w, 0, "Node-Selectors", _labels(spec.node_selector))
        tolerations = [_toleration(t) for t in spec.tolerations] or ["<none>"]
        _multi(w, 0, "Tolerations", tolerations)
    _events_section(w, facts.events, now)
    return w.render()


def _toleration(t: model.Toleration) -> str:
    """kubectl's printTolerationsMultiline: `key=value:effect op=Exists for 300s`."""
    text = t.key
    if t.value:
        text += f"={t.value}"
    if t.effect:
        text += f":{t.effect}"
    if t.operator == "Exists" and not t.value:
        text += " op=Exists"
    if t.toleration_seconds is not None:
        text += f" for {t.toleration_seconds}s"
    return text or "op=Exists"


# --- describe ds ----------------------------------------------------------------------------------


def _selector(sel: model.LabelSelector) -> str:
    """metav1.FormatLabelSelector."""
    parts = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    for r in sel.match_expressions:
        if r.operator in ("In", "NotIn"):
            parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
        elif r.operator == "Exists":
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts) or "<none>"


def describe_ds(
    ds: model.DaemonSet,
    ds_status: status.DaemonSetStatus,
    decision: scheduling.Decision,
    evs: Sequence[events.Event],
    now: float,
) -> str:
    w = _Writer()
    w.w(0, f"Name:\t{ds.metadata.name}")
    w.w(0, f"Namespace:\t{ds.metadata.namespace}")
    w.w(0, f"Selector:\t{_selector(ds.spec.selector)}")
    w.w(0, f"Node-Selector:\t{','.join(_labels(ds.spec.template.spec.node_selector))}")
    _multi(w, 0, "Labels", _labels(ds.metadata.labels))
    _multi(
        w, 0, "Annotations", [f"{k}: {v}" for k, v in sorted(ds.metadata.annotations.items())] or ["<none>"]
    )
    w.w(0, f"Desired Number of Nodes Scheduled: {ds_status.desired_number_scheduled}")
    w.w(0, f"Current Number of Nodes Scheduled: {ds_status.current_number_scheduled}")
    w.w(0, f"Number of Nodes Scheduled with Up-to-date Pods: {ds_status.updated_number_scheduled}")
    w.w(0, f"Number of Nodes Scheduled with Available Pods: {ds_status.number_available}")
    w.w(0, f"Number of Nodes Misscheduled: {ds_status.number_misscheduled}")
    phases = {
        p: sum(1 for x in ds_status.pods if x.phase == p)
        for p in ("Running", "Pending", "Succeeded", "Failed")
    }
    w.w(
        0,
        f"Pods Status:\t{phases['Running']} Running / {phases['Pending']} Waiting / "
        f"{phases['Succeeded']} Succeeded / {phases['Failed']} Failed",
    )
    strategy = ds.spec.update_strategy
    w.w(0, f"Update Strategy:\t{strategy.type}")
    if not decision.should_run:
        _multi(w, 0, "Not Scheduled Here", list(decision.reasons) or ["the node does not match"])
    if ds_status.pods:
        w.w(0, "Pods:")
        for p in ds_status.pods:
            w.w(1, f"{p.name}\t{p.status}\trevision {p.revision}{'' if p.up_to_date else ' (outdated)'}")
    w.w(0, "Pod Template:")
    tmpl = ds.spec.template
    _multi(w, 1, "Labels", _labels(tmpl.metadata.labels))
    for title, group in (
        ("Init Containers", tmpl.spec.init_containers),
        ("Containers", tmpl.spec.containers),
    ):
        if not group:
            continue
        w.w(1, f"{title}:")
        for c in group:
            inner = _Writer()
            _template_container(inner, c)
            for line in inner.lines:
                w.w(1, line)
    sub = _Writer()
    _volumes(sub, tmpl.spec)
    for line in sub.lines:
        w.w(1, line)
    _multi(w, 1, "Node-Selectors", _labels(tmpl.spec.node_selector))
    _multi(w, 1, "Tolerations", [_toleration(t) for t in tmpl.spec.tolerations] or ["<none>"])
    _events_section(w, evs, now)
    return w.render()


def _template_container(w: _Writer, c: model.Container) -> None:
    w.w(0, f" {c.name}:")
    w.w(1, f"Image:\t{c.image}")
    ports = [f"{p.container_port}/{p.protocol}" for p in c.ports]
    w.w(1, f"Port:\t{', '.join(ports) or '<none>'}")
    w.w(1, f"Host Port:\t{', '.join(f'{p.host_port}/{p.protocol}' for p in c.ports) or '<none>'}")
    for title, values in (("Command", c.command), ("Args", c.args)):
        if values:
            w.w(1, f"{title}:")
            for value in values:
                w.w(2, value)
    for title, probe in (
        ("Liveness", c.liveness_probe),
        ("Readiness", c.readiness_probe),
        ("Startup", c.startup_probe),
    ):
        if probe is not None:
            w.w(1, f"{title}:\t{probe_text(probe)}")
    inner = _Writer()
    _env_lines(c, inner)
    _mounts(c, inner)
    for line in inner.lines:
        w.w(0, line[2:] if line.startswith("  ") else line)
