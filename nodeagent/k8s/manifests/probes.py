"""Probes and lifecycle hooks (validateProbe, validateLifecycle, validateHandler)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.common import NONNEGATIVE
from nodeagent.k8s.manifests.tables import HANDLER_FIELDS, HTTP_GET_FIELDS, LIFECYCLE_FIELDS, PROBE_FIELDS
from nodeagent.k8s.validation import Raw, Walker, child, fields


def _port(w: Walker, d: Raw, path: str) -> int | str:
    port = w.int_or_str(d, "port", path)
    p = child(path, "port")
    if isinstance(port, str):
        for msg in v.port_name(port):
            w.error(p, v.invalid(port, msg))
        return port
    value = port or 0
    for msg in v.port_number(value):
        w.error(p, v.invalid(value, msg))
    return value


def _handler(
    w: Walker, d: Raw, path: str, kinds: Sequence[str], grace: int
) -> tuple[model.ProbeHandler | None, int | None]:
    present = [k for k in kinds if d.get(k) is not None]
    if not present:
        w.error(path, v.required("must specify a handler type"))
        return None, None
    for extra in present[1:]:
        w.error(child(path, extra), v.forbidden("may not specify more than 1 handler type"))
    kind = present[0]
    p = child(path, kind)
    if kind == "exec":
        d2 = w.mapping(d[kind], p, fields("command")) or {}
        command = w.str_list(d2, "command", p)
        if not command:
            w.error(child(p, "command"), v.required())
        return model.ExecAction(command), None
    if kind == "httpGet":
        d2 = w.mapping(d[kind], p, HTTP_GET_FIELDS) or {}
        headers = []
        for hp, h in w.objects(d2, "httpHeaders", p, fields("name", "value")):
            name = w.str_(h, "name", hp)
            if not _HTTP_HEADER.fullmatch(name):
                w.error(
                    child(p, "httpHeaders"),
                    v.invalid(
                        name,
                        "a valid HTTP header must consist of alphanumeric characters or '-' "
                        "(e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                    ),
                )
            headers.append(model.HTTPHeader(name, w.str_(h, "value", hp)))
        scheme = w.str_(d2, "scheme", p) or "HTTP"
        if scheme not in ("HTTP", "HTTPS"):
            w.error(child(p, "scheme"), v.unsupported(scheme, ["HTTP", "HTTPS"]))
        return (
            model.HTTPGetAction(
                port=_port(w, d2, p),
                path=w.str_(d2, "path", p) or "/",
                host=w.str_(d2, "host", p),
                scheme=scheme,
                http_headers=tuple(headers),
            ),
            None,
        )
    if kind == "tcpSocket":
        d2 = w.mapping(d[kind], p, fields("port", "host")) or {}
        return model.TCPSocketAction(_port(w, d2, p), w.str_(d2, "host", p)), None
    if kind == "grpc":
        d2 = w.mapping(d[kind], p, fields("port", "service")) or {}
        port = w.int_(d2, "port", p, 0)
        for msg in v.port_number(port):
            w.error(child(p, "port"), v.invalid(port, msg))
        return model.GRPCAction(port, w.str_(d2, "service", p)), None
    d2 = w.mapping(d[kind], p, fields("seconds")) or {}
    seconds = w.int_(d2, "seconds", p, 0)
    if seconds <= 0 or seconds > grace:
        w.error(
            p,
            v.invalid(
                seconds,
                f"must be greater than 0 and less than terminationGracePeriodSeconds ({v.fmt(grace)})",
            ),
        )
    return model.ExecAction(()), seconds


_HTTP_HEADER = re.compile(r"[-A-Za-z0-9]+")


def decode_probe(w: Walker, c: Raw, name: str, cpath: str, grace: int) -> model.Probe | None:
    """A liveness, readiness or startup probe (SetDefaults_Probe: zero means the default)."""
    path = child(cpath, name)
    pr = w.obj(c, name, cpath, PROBE_FIELDS)
    if pr is None:
        return None
    handler, _ = _handler(w, pr, path, ("exec", "httpGet", "tcpSocket", "grpc"), grace)
    values = {}
    for field_name, default in (
        ("initialDelaySeconds", 0),
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        value = w.int_(pr, field_name, path, 0)
        if value < 0:
            w.error(child(path, field_name), v.invalid(value, NONNEGATIVE))
        values[field_name] = value or default  # SetDefaults_Probe: zero means the default
    if name != "readinessProbe" and values["successThreshold"] != 1:
        w.error(child(path, "successThreshold"), v.invalid(values["successThreshold"], "must be 1"))
    probe_grace = w.opt_int(pr, "terminationGracePeriodSeconds", path)
    if probe_grace is not None:
        if name == "readinessProbe":
            w.error(
                child(path, "terminationGracePeriodSeconds"),
                v.invalid(probe_grace, "must not be set for readinessProbes"),
            )
        elif probe_grace <= 0:
            w.error(
                child(path, "terminationGracePeriodSeconds"), v.invalid(probe_grace, "must be greater than 0")
            )
    if handler is None:
        return None
    return model.Probe(
        handler=handler,
        initial_delay_seconds=values["initialDelaySeconds"],
        timeout_seconds=values["timeoutSeconds"],
        period_seconds=values["periodSeconds"],
        success_threshold=values["successThreshold"],
        failure_threshold=values["failureThreshold"],
        termination_grace_period_seconds=probe_grace,
    )


def decode_lifecycle(w: Walker, c: Raw, cpath: str, grace: int) -> model.Lifecycle | None:
    """postStart and preStop hooks; a tcpSocket hook is kept but never run, as the kubelet does."""
    path = child(cpath, "lifecycle")
    lc = w.obj(c, "lifecycle", cpath, LIFECYCLE_FIELDS)
    if lc is None:
        return None
    if lc.get("stopSignal") is not None:
        w.str_(lc, "stopSignal", path)
        w.warn(child(path, "stopSignal"), "containers are stopped with SIGTERM, then SIGKILL; ignored")
    hooks: dict[str, model.LifecycleHandler | None] = {}
    for hook in ("postStart", "preStop"):
        raw = w.obj(lc, hook, path, HANDLER_FIELDS)
        if raw is None:
            hooks[hook] = None
            continue
        handler, sleep = _handler(w, raw, child(path, hook), ("exec", "httpGet", "tcpSocket", "sleep"), grace)
        if isinstance(handler, model.TCPSocketAction):
            # Kubernetes keeps the field for compatibility only: the kubelet never runs it
            w.warn(child(child(path, hook), "tcpSocket"), "tcpSocket lifecycle hooks are not run; ignored")
        hooks[hook] = None if handler is None else model.LifecycleHandler(handler, sleep)
    return model.Lifecycle(post_start=hooks["postStart"], pre_stop=hooks["preStop"])
