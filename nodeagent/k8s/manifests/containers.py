"""Containers and init containers (validateContainers, SetDefaults_Container): image, ports, env,
envFrom, volume mounts and resources; probes and hooks are in `probes`."""

from __future__ import annotations

from collections.abc import Iterable

from nodeagent.k8s import model, quantity
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.common import (
    NONNEGATIVE,
    local_descending_path,
    quantity_at,
    required_name,
    warn_fields,
)
from nodeagent.k8s.manifests.downward import ENV_FIELD_PATHS, decode_field_ref, decode_resource_field_ref
from nodeagent.k8s.manifests.probes import decode_lifecycle, decode_probe
from nodeagent.k8s.manifests.security import decode_security_context
from nodeagent.k8s.manifests.tables import (
    CONDITIONAL_WARNINGS,
    CONTAINER_FIELDS,
    CONTAINER_WARNINGS,
    ENV_FIELDS,
    ENV_FROM_FIELDS,
    ENV_SOURCE_FIELDS,
    KEY_REF_FIELDS,
    LOCAL_REF_FIELDS,
    MOUNT_FIELDS,
    PORT_FIELDS,
    RESOURCES_FIELDS,
)
from nodeagent.k8s.validation import Raw, Walker, child

_ONE_ENV_SOURCE = "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"


def default_pull_policy(image: str) -> str:
    """imagePullPolicy as SetDefaults_Container: Always for `:latest` or no tag (unless pinned by digest)."""
    name, has_digest = (image.split("@", 1)[0], True) if "@" in image else (image, False)
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag and not has_digest:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def decode_containers(
    w: Walker,
    s: Raw,
    field_name: str,
    spath: str,
    volumes: set[str],
    grace: int,
    host_network: bool,
) -> list[model.Container]:
    """spec.containers or spec.initContainers (a pod needs at least one container)."""
    init = field_name == "initContainers"
    if not init and s.get(field_name) in (None, []):
        w.error(child(spath, field_name), v.required())
    raw_list = w.objects(s, field_name, spath, CONTAINER_FIELDS)
    return [_container(w, c, p, volumes, grace, host_network, init=init) for p, c in raw_list]


def _container(
    w: Walker, c: Raw, path: str, volumes: set[str], grace: int, host_network: bool, *, init: bool
) -> model.Container:
    warn_fields(w, c, path, CONTAINER_WARNINGS)
    name = required_name(w, c, path, v.dns1123_label)
    image = w.str_(c, "image", path)
    if not image:
        w.error(child(path, "image"), v.required())
    elif image != image.strip():
        w.error(child(path, "image"), v.invalid(image, "must not have leading or trailing whitespace"))
    pull = w.str_(c, "imagePullPolicy", path) or default_pull_policy(image)
    if pull not in ("Always", "IfNotPresent", "Never"):
        w.error(child(path, "imagePullPolicy"), v.unsupported(pull, ["Always", "IfNotPresent", "Never"]))
    policy = w.str_(c, "terminationMessagePolicy", path) or "File"
    if policy not in ("File", "FallbackToLogsOnError"):
        w.error(
            child(path, "terminationMessagePolicy"), v.unsupported(policy, ["File", "FallbackToLogsOnError"])
        )
    w.str_(c, "terminationMessagePath", path)

    restart = w.str_(c, "restartPolicy", path)
    if restart and not init:
        w.error(child(path, "restartPolicy"), v.forbidden("may not be set for non-init containers"))
    elif restart and restart != "Always":
        w.error(child(path, "restartPolicy"), v.unsupported(restart, ["Always"]))
    sidecar = init and restart == "Always"

    security = decode_security_context(w, c, path)
    privileged = bool(security and security.privileged)
    ports = _ports(w, c, path, host_network)
    env = _env(w, c, path)
    env_from = _env_from(w, c, path)
    mounts = _mounts(w, c, path, volumes, privileged)
    resources = _resources(w, c, path)

    probes: dict[str, model.Probe | None] = {}
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if init and not sidecar and c.get(probe_name) is not None:
            w.error(
                child(path, probe_name),
                v.forbidden("may not be set for init containers without restartPolicy=Always"),
            )
            probes[probe_name] = None
        else:
            probes[probe_name] = decode_probe(w, c, probe_name, path, grace)
    if init and not sidecar and c.get("lifecycle") is not None:
        w.error(
            child(path, "lifecycle"),
            v.forbidden("may not be set for init containers without restartPolicy=Always"),
        )
        lifecycle = None
    else:
        lifecycle = decode_lifecycle(w, c, path, grace)

    return model.Container(
        name=name,
        image=image,
        image_pull_policy=pull,
        command=w.str_list(c, "command", path),
        args=w.str_list(c, "args", path),
        working_dir=w.str_(c, "workingDir", path),
        ports=ports,
        env=env,
        env_from=env_from,
        resources=resources,
        volume_mounts=mounts,
        liveness_probe=probes["livenessProbe"],
        readiness_probe=probes["readinessProbe"],
        startup_probe=probes["startupProbe"],
        lifecycle=lifecycle,
        security_context=security,
        restart_policy=restart,
        stdin=w.bool_(c, "stdin", path),
        tty=w.bool_(c, "tty", path),
    )


def _ports(w: Walker, c: Raw, cpath: str, host_network: bool) -> tuple[model.ContainerPort, ...]:
    out = []
    names: set[str] = set()
    for p, port in w.objects(c, "ports", cpath, PORT_FIELDS):
        name = w.str_(port, "name", p)
        if name:
            errs = v.port_name(name)
            for msg in errs:
                w.error(child(p, "name"), v.invalid(name, msg))
            if not errs and name in names:
                w.error(child(p, "name"), v.duplicate(name))
            names.add(name)
        container_port = w.int_(port, "containerPort", p, 0)
        if container_port == 0:
            w.error(child(p, "containerPort"), v.required())
        for msg in v.port_number(container_port) if container_port else []:
            w.error(child(p, "containerPort"), v.invalid(container_port, msg))
        host_port = w.int_(port, "hostPort", p, 0)
        for msg in v.port_number(host_port) if host_port else []:
            w.error(child(p, "hostPort"), v.invalid(host_port, msg))
        if host_network:
            if host_port == 0:  # SetDefaults_Pod: with hostNetwork the host port is the container port
                host_port = container_port
            elif host_port != container_port:
                w.error(
                    child(p, "hostPort"),
                    v.invalid(host_port, "must match `containerPort` when `hostNetwork` is true"),
                )
        protocol = w.str_(port, "protocol", p) or "TCP"
        if protocol not in ("SCTP", "TCP", "UDP"):
            w.error(child(p, "protocol"), v.unsupported(protocol, ["SCTP", "TCP", "UDP"]))
        out.append(model.ContainerPort(container_port, name, host_port, protocol, w.str_(port, "hostIP", p)))
    return tuple(out)


def check_names_and_host_ports(
    w: Walker,
    spath: str,
    containers: list[model.Container],
    init_containers: list[model.Container],
) -> None:
    """Names unique across containers and init containers; host ports unique (init ones each alone)."""
    seen: set[str] = set()
    for field_name, group in (("containers", containers), ("initContainers", init_containers)):
        for i, ctr in enumerate(group):
            if ctr.name and ctr.name in seen:
                w.error(child(v.index(child(spath, field_name), i), "name"), v.duplicate(ctr.name))
            if ctr.name:
                seen.add(ctr.name)

    def host_ports(field_name: str, group: Iterable[tuple[int, model.Container]]) -> None:
        used: set[str] = set()
        for ci, ctr in group:
            for pi, port in enumerate(ctr.ports):
                if not 1 <= port.host_port <= 65535:  # 0 is no host port; others are already errors
                    continue
                ident = f"{port.protocol}/{port.host_ip}/{port.host_port}"
                ppath = v.index(child(v.index(child(spath, field_name), ci), "ports"), pi)
                if ident in used:
                    w.error(child(ppath, "hostPort"), v.duplicate(ident))
                used.add(ident)

    host_ports("containers", enumerate(containers))
    for i, ctr in enumerate(init_containers):
        host_ports("initContainers", [(i, ctr)])


def _env(w: Walker, c: Raw, cpath: str) -> tuple[model.EnvVar, ...]:
    out = []
    for p, e in w.objects(c, "env", cpath, ENV_FIELDS):
        name = required_name(w, e, p, v.env_var_name)
        value = w.str_(e, "value", p)
        value_from = None
        src = w.obj(e, "valueFrom", p, ENV_SOURCE_FIELDS)
        if src is not None:
            vp = child(p, "valueFrom")
            value_from = model.EnvVarSource(
                field_ref=decode_field_ref(w, src, vp, ENV_FIELD_PATHS),
                resource_field_ref=decode_resource_field_ref(w, src, vp, volume=False),
                config_map_key_ref=_key_ref(w, src, "configMapKeyRef", vp),
                secret_key_ref=_key_ref(w, src, "secretKeyRef", vp),
            )
            count = sum(src.get(k) is not None for k in ENV_SOURCE_FIELDS)
            if count == 0:
                w.error(
                    vp,
                    v.invalid(
                        "",
                        _ONE_ENV_SOURCE,
                    ),
                )
            elif value:
                w.error(vp, v.invalid("", "may not be specified when `value` is not empty"))
            elif count > 1:
                w.error(vp, v.invalid("", "may not have more than one field specified at a time"))
        out.append(model.EnvVar(name, value, value_from))
    return tuple(out)


def _key_ref(w: Walker, d: Raw, name: str, path: str) -> model.KeySelector | None:
    raw = w.obj(d, name, path, KEY_REF_FIELDS)
    if raw is None:
        return None
    p = child(path, name)
    ref_name = w.str_(raw, "name", p)
    for msg in v.dns1123_subdomain(ref_name):
        w.error(child(p, "name"), v.invalid(ref_name, msg))
    key = required_name(w, raw, p, v.config_map_key, "key")
    return model.KeySelector(ref_name, key, w.bool_(raw, "optional", p))


def _env_from(w: Walker, c: Raw, cpath: str) -> tuple[model.EnvFromSource, ...]:
    out = []
    for p, e in w.objects(c, "envFrom", cpath, ENV_FROM_FIELDS):
        prefix = w.str_(e, "prefix", p)
        for msg in v.env_var_name(prefix) if prefix else []:
            w.error(child(p, "prefix"), v.invalid(prefix, msg))
        refs: dict[str, model.LocalObjectReference | None] = {}
        for kind in ("configMapRef", "secretRef"):
            raw = w.obj(e, kind, p, LOCAL_REF_FIELDS)
            if raw is None:
                refs[kind] = None
                continue
            rp = child(p, kind)
            name = required_name(w, raw, rp, v.dns1123_subdomain)
            refs[kind] = model.LocalObjectReference(name, w.bool_(raw, "optional", rp))
        count = sum(r is not None for r in refs.values())
        if count == 0 and e.get("configMapRef") is None and e.get("secretRef") is None:
            w.error(p, v.invalid("", "must specify one of: `configMapRef` or `secretRef`"))
        elif count > 1:
            w.error(p, v.invalid("", "may not have more than one field specified at a time"))
        out.append(model.EnvFromSource(prefix, refs["configMapRef"], refs["secretRef"]))
    return tuple(out)


def _mounts(
    w: Walker, c: Raw, cpath: str, volumes: set[str], privileged: bool
) -> tuple[model.VolumeMount, ...]:
    out = []
    mount_points: set[str] = set()
    for p, m in w.objects(c, "volumeMounts", cpath, MOUNT_FIELDS):
        name = w.str_(m, "name", p)
        if not name:
            w.error(child(p, "name"), v.required())
        if name not in volumes:
            w.error(child(p, "name"), v.not_found(name))
        mount_path = w.str_(m, "mountPath", p)
        if not mount_path:
            w.error(child(p, "mountPath"), v.required())
        if mount_path in mount_points:
            w.error(child(p, "mountPath"), v.invalid(mount_path, "must be unique"))
        mount_points.add(mount_path)
        sub_path = w.str_(m, "subPath", p)
        if sub_path:
            local_descending_path(w, sub_path, child(p, "subPath"))
        sub_path_expr = w.str_(m, "subPathExpr", p)
        if sub_path_expr:
            if sub_path:
                w.error(
                    child(p, "subPathExpr"),
                    v.invalid(sub_path_expr, "subPathExpr and subPath are mutually exclusive"),
                )
            local_descending_path(w, sub_path_expr, child(p, "subPathExpr"))
        read_only = w.bool_(m, "readOnly", p)
        propagation = w.opt_str(m, "mountPropagation", p)
        if propagation is not None:
            if propagation not in ("Bidirectional", "HostToContainer", "None"):
                w.error(
                    child(p, "mountPropagation"),
                    v.unsupported(propagation, ["Bidirectional", "HostToContainer", "None"]),
                )
            elif propagation == "Bidirectional" and not privileged:
                w.error(
                    child(p, "mountPropagation"),
                    v.forbidden("Bidirectional mount propagation is available only to privileged containers"),
                )
        rro = w.opt_str(m, "recursiveReadOnly", p)
        if rro is not None:
            rpath = child(p, "recursiveReadOnly")
            if rro in ("Enabled", "IfPossible"):
                if not read_only:
                    w.error(rpath, v.forbidden("may only be specified when readOnly is true"))
                if propagation not in (None, "None"):
                    w.error(
                        rpath,
                        v.forbidden("may only be specified when mountPropagation is None or not specified"),
                    )
                w.warn(rpath, CONDITIONAL_WARNINGS["volumeMounts.recursiveReadOnly"])
            elif rro != "Disabled":
                w.error(rpath, v.unsupported(rro, ["Disabled", "Enabled", "IfPossible"]))
        out.append(
            model.VolumeMount(name, mount_path, read_only, sub_path, sub_path_expr, propagation or "None")
        )
    return tuple(out)


def _is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _resources(w: Walker, c: Raw, cpath: str) -> model.ResourceRequirements:
    path = child(cpath, "resources")
    r = w.obj(c, "resources", cpath, RESOURCES_FIELDS)
    if r is None:
        return model.ResourceRequirements()
    if r.get("claims") is not None:
        w.warn(child(path, "claims"), CONDITIONAL_WARNINGS["resources.claims"])
    lists: dict[str, dict[str, quantity.Quantity]] = {}
    for which in ("limits", "requests"):
        wpath = child(path, which)
        raw = w.obj(r, which, path) or {}
        out: dict[str, quantity.Quantity] = {}
        for name in raw:
            qpath = v.key(wpath, name)
            for msg in v.qualified_name(name):
                w.error(qpath, v.invalid(name, msg))
            if (
                "/" not in name
                and name not in ("cpu", "memory", "ephemeral-storage")
                and not name.startswith("hugepages-")
            ):
                w.error(qpath, v.invalid(name, "must be a standard resource for containers"))
            q = quantity_at(w, raw[name], qpath)
            if q is None:
                continue
            if q.value < 0:
                w.error(qpath, v.invalid(q.text, NONNEGATIVE))
            if not _is_native_resource(name) and q.value.denominator != 1:
                w.error(qpath, v.invalid(q.text, "must be an integer"))
            out[name] = q
        lists[which] = out
    limits, requests = lists["limits"], lists["requests"]
    req_path = child(path, "requests")
    for name, req in requests.items():
        overcommit = _is_native_resource(name) and not name.startswith("hugepages-")
        limit = limits.get(name)
        if limit is not None:
            if req.value != limit.value and not overcommit:
                w.error(req_path, v.invalid(req.text, f"must be equal to {name} limit of {limit.text}"))
            elif req.value > limit.value:
                w.error(
                    req_path,
                    v.invalid(req.text, f"must be less than or equal to {name} limit of {limit.text}"),
                )
        elif not overcommit:
            w.error(child(path, "limits"), v.required("Limit must be set for non overcommitable resources"))
    names = set(limits) | set(requests)
    if any(n.startswith("hugepages-") for n in names) and not names & {"cpu", "memory"}:
        w.error(path, v.forbidden("HugePages require cpu or memory"))
    return model.ResourceRequirements(limits=limits, requests=requests)
