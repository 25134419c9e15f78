"""Pod + container → `runtime.ContainerCreate`, the way the kubelet would have run it on Docker.

One concept, over 600 lines on purpose: the whole pod-to-Docker mapping, so each translation rule can be
found next to the others it interacts with (security context, resources, env, mounts).

Pure: no I/O. Everything host-specific (node name, IPs, allocatable resources, prepared volume paths,
capabilities the kernel withholds) arrives in a `PodContext`, so every rule here is testable as a table.

Kubernetes rules kept (each one read from Kubernetes' own code, not guessed):
- command/args vs the image's ENTRYPOINT/CMD;
- `$(VAR)` expansion in env values, command and args (`third_party/forked/golang/expansion`);
- downward-API env (`fieldRef`, `resourceFieldRef` rounding up, limits defaulting to node allocatable);
- CPU limits as CFS quota, CPU requests as shares (`MilliCPUToShares`), memory limits in bytes;
- securityContext: container fields override pod fields; `privileged` degrades to "all capabilities but
  the withheld ones" on hosts where a real privileged container cannot start.

Seccomp: an unset profile keeps Docker's default profile (as a kubelet run with `--seccomp-default`);
only an explicit `Unconfined` (or `privileged`) turns it off.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from nodeagent import errors, runtime
from nodeagent.agent import identity
from nodeagent.k8s import model

# (kind "ConfigMap" or "Secret", namespace, name) -> the object's data, or None when it does not exist.
Lookup = Callable[[str, str, str], Mapping[str, str | bytes] | None]

MIN_SHARES = 2  # Kubernetes' minShares
MAX_SHARES = 262144  # Kubernetes' maxShares
SHARES_PER_CPU = 1024
HOSTNAME_MAX = 63

# Sysctls that live in the network or IPC namespace: they belong to the pod sandbox when there is one, and
# the kubelet rejects net.* ones for hostNetwork pods (they would change the host).
_IPC_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


class PodConfigError(errors.NodeAgentError):
    """A pod cannot be turned into a container (a missing ConfigMap key, a bad fieldRef, ...)."""


@dataclass(frozen=True, kw_only=True)
class PodContext:
    """Everything about one pod on this node that `build` needs beyond the spec itself.

    `volume_paths` comes from `volumes.prepare` (memory-backed emptyDirs have no entry: they become
    tmpfs mounts). `sandbox` names the container whose network/IPC namespaces the pod's containers join;
    "" means the container has its own (single-container pods) or the host's (hostNetwork).
    """

    owner: str  # identity.owner_daemonset(...) or identity.owner_pod(...)
    namespace: str
    pod_name: str
    metadata: model.ObjectMeta  # the pod template's metadata: labels and annotations
    spec: model.PodSpec
    spec_hash: str
    node_name: str
    host_ip: str
    host_ips: tuple[str, ...] = ()  # default: (host_ip,)
    pod_ip: str = ""  # ignored when hostNetwork (the pod IP is the host IP then)
    pod_ips: tuple[str, ...] = ()  # default: (pod_ip,)
    volume_paths: Mapping[str, str] = field(default_factory=dict)
    sandbox: str = ""
    node_allocatable_cpu_milli: int = 0  # resourceFieldRef limits.cpu when the container sets no limit
    node_allocatable_memory: int = 0  # bytes; ditto for limits.memory
    withheld_caps: tuple[str, ...] = ()  # capabilities the host kernel refuses to grant, e.g. SYS_RESOURCE

    @property
    def uid(self) -> str:
        return self.metadata.uid or identity.pod_uid(self.owner, self.pod_name)

    @property
    def effective_pod_ip(self) -> str:
        return self.host_ip if self.spec.host_network else self.pod_ip

    @property
    def effective_pod_ips(self) -> tuple[str, ...]:
        if self.spec.host_network:
            return self.effective_host_ips
        if self.pod_ips:
            return self.pod_ips
        return (self.pod_ip,) if self.pod_ip else ()

    @property
    def effective_host_ips(self) -> tuple[str, ...]:
        if self.host_ips:
            return self.host_ips
        return (self.host_ip,) if self.host_ip else ()


def build(
    pod: PodContext,
    container: model.Container,
    *,
    role: str,
    attempt: int,
    init_index: int | None = None,
    lookup: Lookup | None = None,
) -> runtime.ContainerCreate:
    """The `docker create` for one container of a pod; raises PodConfigError when Kubernetes would fail it.

    `lookup` resolves configMapKeyRef/secretKeyRef/envFrom; without it, such references are an error.
    """
    spec = pod.spec
    env = container_env(pod, container, lookup=lookup)
    env_map = dict(env)
    entrypoint, cmd = command_and_args(container, env_map)
    security = security_options(pod, container)
    network_mode, ipc_mode, pid_mode = namespaces(pod)
    joined = bool(pod.sandbox) and not spec.host_network
    own_net = not spec.host_network and not pod.sandbox
    return runtime.ContainerCreate(
        name=identity.container_name(pod.namespace, pod.pod_name, container.name, attempt, pod.node_name),
        image=container.image,
        labels=identity.container_labels(
            owner=pod.owner,
            namespace=pod.namespace,
            pod=pod.pod_name,
            container=container.name,
            spec_hash_value=pod.spec_hash,
            attempt=attempt,
            role=role,
            init_index=init_index,
        ),
        entrypoint=entrypoint,
        cmd=cmd,
        env=tuple(f"{k}={v}" for k, v in env),
        working_dir=container.working_dir,
        mounts=mounts(pod, container, env_map),
        network_mode=network_mode,
        pid_mode=pid_mode,
        ipc_mode=ipc_mode,
        hostname=pod_hostname(pod) if own_net else "",
        ports=port_bindings(container) if own_net else (),
        memory_limit=memory_limit(container),
        nano_cpus=nano_cpus(container),
        cpu_shares=cpu_shares(container),
        cap_add=security.cap_add,
        cap_drop=security.cap_drop,
        privileged=security.privileged,
        devices_all=security.devices_all,
        user=security.user,
        group_add=security.group_add,
        read_only_rootfs=security.read_only_rootfs,
        security_opt=security.security_opt,
        sysctls=sysctls(pod),
        dns=spec.dns_nameservers if not joined else (),
        dns_search=spec.dns_searches if not joined else (),
        extra_hosts=extra_hosts(spec) if not joined else (),
        stop_timeout=spec.termination_grace_period_seconds,
        stdin_open=container.stdin,
        tty=container.tty,
    )


# --- $(VAR) expansion -------------------------------------------------------------------------


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes' `expansion.Expand`: `$(NAME)` → mapping(NAME); `$$` → `$`; anything else verbatim."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":  # escaped operator
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close >= 0:
                    out.append(mapping(text[cursor + 2 : close]))
                    advance = close - cursor
                else:  # incomplete reference: emit "$(" and go on after it
                    out.append("$(")
                    advance = 1
            else:  # an operator that does not begin an expression
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Kubernetes' `MappingFuncFor`: undefined references stay verbatim as `$(NAME)`."""

    def mapping(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"

    return mapping


def command_and_args(
    container: model.Container, env: Mapping[str, str]
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """(entrypoint, cmd): `command` replaces ENTRYPOINT (and drops CMD); `args` alone replaces CMD only."""
    mapping = mapping_for(env)
    command = tuple(expand(c, mapping) for c in container.command)
    args = tuple(expand(a, mapping) for a in container.args)
    if command:
        return command, args
    if args:
        return None, args
    return None, None


# --- env --------------------------------------------------------------------------------------


def container_env(
    pod: PodContext, container: model.Container, *, lookup: Lookup | None = None
) -> list[tuple[str, str]]:
    """The container's environment in Kubernetes' order: envFrom first, then env (later wins).

    A literal value is expanded against the variables defined before it; valueFrom values are not.
    """
    env: dict[str, str] = {}
    for source in container.env_from:
        for key, value in _env_from(pod, source, lookup).items():
            env[source.prefix + key] = value
    mapping = mapping_for(env)  # sees every later update: env vars can reference earlier ones
    for var in container.env:
        if var.value:
            env[var.name] = expand(var.value, mapping)
        elif var.value_from is not None:
            resolved = _value_from(pod, container, var.name, var.value_from, lookup)
            if resolved is None:  # an optional reference that is missing: the variable is not set
                continue
            env[var.name] = resolved
        else:
            env[var.name] = ""
    return list(env.items())


def _decode(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _lookup(lookup: Lookup | None, kind: str, namespace: str, name: str) -> Mapping[str, str | bytes] | None:
    if lookup is None:
        # TODO(configmaps): the caller passes a lookup over the ConfigMaps/Secrets of the same sources.
        raise PodConfigError(f"{kind} {namespace}/{name} is referenced but no {kind} lookup is configured")
    return lookup(kind, namespace, name)


def _env_from(pod: PodContext, source: model.EnvFromSource, lookup: Lookup | None) -> dict[str, str]:
    if source.config_map_ref is not None:
        kind, ref = "ConfigMap", source.config_map_ref
    elif source.secret_ref is not None:
        kind, ref = "Secret", source.secret_ref
    else:
        return {}
    data = _lookup(lookup, kind, pod.namespace, ref.name)
    if data is None:
        if ref.optional:
            return {}
        raise PodConfigError(f'{kind.lower()} "{ref.name}" not found')
    return {k: _decode(v) for k, v in data.items() if "=" not in k}


def _value_from(
    pod: PodContext,
    container: model.Container,
    name: str,
    source: model.EnvVarSource,
    lookup: Lookup | None,
) -> str | None:
    if source.field_ref is not None:
        return field_ref_value(pod, source.field_ref.field_path)
    if source.resource_field_ref is not None:
        return resource_field_value(pod, container, source.resource_field_ref)
    for kind, ref in (("ConfigMap", source.config_map_key_ref), ("Secret", source.secret_key_ref)):
        if ref is None:
            continue
        data = _lookup(lookup, kind, pod.namespace, ref.name)
        if data is None:
            if ref.optional:
                return None
            raise PodConfigError(f'{kind.lower()} "{ref.name}" not found')
        if ref.key not in data:
            if ref.optional:
                return None
            raise PodConfigError(f"couldn't find key {ref.key} in {kind} {pod.namespace}/{ref.name}")
        return _decode(data[ref.key])
    raise PodConfigError(f"env {name}: valueFrom has no source")


def _format_map(values: Mapping[str, str]) -> str:
    """Kubernetes' `FormatMap`: sorted `key="value"` lines (Go %q quoting, close enough with JSON)."""
    return "\n".join(f"{k}={json.dumps(values[k], ensure_ascii=False)}" for k in sorted(values))


def field_ref_value(pod: PodContext, field_path: str) -> str:
    """The kubelet's `podFieldSelectorRuntimeValue` + `ExtractFieldPathAsString`."""
    meta = pod.metadata
    simple: dict[str, Callable[[], str]] = {
        "spec.nodeName": lambda: pod.node_name,
        "spec.serviceAccountName": lambda: pod.spec.service_account_name,
        "status.hostIP": lambda: pod.effective_host_ips[0] if pod.effective_host_ips else "",
        "status.hostIPs": lambda: ",".join(pod.effective_host_ips),
        "status.podIP": lambda: pod.effective_pod_ip,
        "status.podIPs": lambda: ",".join(pod.effective_pod_ips),
        "metadata.name": lambda: pod.pod_name,
        "metadata.namespace": lambda: pod.namespace,
        "metadata.uid": lambda: pod.uid,
        "metadata.labels": lambda: _format_map(meta.labels),
        "metadata.annotations": lambda: _format_map(meta.annotations),
    }
    if field_path in simple:
        return simple[field_path]()
    m = _SUBSCRIPT.match(field_path)
    if m:
        source = meta.labels if m.group(1) == "labels" else meta.annotations
        return source.get(m.group(2), "")
    raise PodConfigError(f"unsupported fieldPath: {field_path}")


def resource_field_value(
    pod: PodContext, container: model.Container, selector: model.ResourceFieldSelector
) -> str:
    """`ExtractContainerResourceValue` after `MergeContainerResourceLimits`: value / divisor, rounded up."""
    target = container
    if selector.container_name and selector.container_name != container.name:
        found = [
            c for c in (*pod.spec.containers, *pod.spec.init_containers) if c.name == selector.container_name
        ]
        if not found:
            raise PodConfigError(f"container {selector.container_name} not found")
        target = found[0]
    divisor = selector.divisor.value if selector.divisor is not None and selector.divisor.value != 0 else None
    kind, _, resource = selector.resource.partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory", "ephemeral-storage"):
        raise PodConfigError(f"Unsupported container resource : {selector.resource}")
    value = _resource(pod, target, kind, resource)
    if resource == "cpu":
        milli = math.ceil(value * 1000)
        div_milli = math.ceil(divisor * 1000) if divisor is not None else 1000
        return str(math.ceil(Fraction(milli, div_milli)))
    whole = math.ceil(value)
    div = math.ceil(divisor) if divisor is not None else 1
    return str(math.ceil(Fraction(whole, div)))


def _resource(pod: PodContext, container: model.Container, kind: str, resource: str) -> Fraction:
    limits = container.resources.limits
    requests = container.resources.requests
    limit = limits.get(resource)
    if kind == "requests":
        # the API server defaults a missing request to the limit
        req = requests.get(resource, limit)
        return req.value if req is not None else Fraction(0)
    if limit is not None and limit.value != 0:
        return limit.value
    if resource == "cpu":
        return Fraction(pod.node_allocatable_cpu_milli, 1000)
    if resource == "memory":
        return Fraction(pod.node_allocatable_memory)
    return limit.value if limit is not None else Fraction(0)


# --- resources --------------------------------------------------------------------------------


def memory_limit(container: model.Container) -> int | None:
    limit = container.resources.limits.get("memory")
    return limit.ceil() if limit is not None and limit.value > 0 else None


def nano_cpus(container: model.Container) -> int | None:
    """limits.cpu in billionths of a CPU (the runtime turns it into a CFS quota, as the kubelet does)."""
    limit = container.resources.limits.get("cpu")
    return limit.milli() * 1_000_000 if limit is not None and limit.value > 0 else None


def milli_cpu_to_shares(milli: int) -> int:
    """Kubernetes' `MilliCPUToShares`."""
    if milli == 0:
        return MIN_SHARES
    shares = milli * SHARES_PER_CPU // 1000
    return max(MIN_SHARES, min(MAX_SHARES, shares))


def cpu_shares(container: model.Container) -> int | None:
    """requests.cpu (defaulting to limits.cpu) → shares; None leaves Docker's default weight (1024).

    The kubelet would give a request-less container 2 shares; under kubepods that is fair, but on a host
    shared with plain Docker containers it would starve the pod, so we keep the engine's default. An
    explicit `requests.cpu: "0"` is no request too: the kubelet treats 0 and unset alike
    (`MilliCPUToShares(0)` = 2 either way), so we do as well. Any positive request is honoured, even 2.
    """
    q = container.resources.requests.get("cpu", container.resources.limits.get("cpu"))
    if q is None or q.milli() <= 0:
        return None
    return milli_cpu_to_shares(q.milli())


# --- networking -------------------------------------------------------------------------------


def namespaces(pod: PodContext) -> tuple[str, str, str]:
    """(network_mode, ipc_mode, pid_mode)."""
    spec = pod.spec
    join = f"container:{pod.sandbox}" if pod.sandbox else ""
    network = "host" if spec.host_network else join
    ipc = "host" if spec.host_ipc else join
    if spec.host_pid:
        pid = "host"
    elif spec.share_process_namespace and pod.sandbox:
        pid = join
    else:
        pid = ""
    return network, ipc, pid


def pod_hostname(pod: PodContext) -> str:
    """spec.hostname or the pod name, truncated to 63 characters as the kubelet does."""
    name = pod.spec.hostname or pod.pod_name
    if len(name) > HOSTNAME_MAX:
        name = name[:HOSTNAME_MAX].rstrip("-.")
    return name


def port_bindings(container: model.Container) -> tuple[runtime.PortBinding, ...]:
    return tuple(
        runtime.PortBinding(
            container_port=p.container_port,
            protocol=p.protocol.lower(),
            host_port=p.host_port,
            host_ip=p.host_ip,
        )
        for p in container.ports
        if p.host_port
    )


def extra_hosts(spec: model.PodSpec) -> tuple[str, ...]:
    return tuple(f"{host}:{ip}" for ip, hosts in spec.host_aliases for host in hosts)


def _is_ipc_sysctl(name: str) -> bool:
    return name.startswith(_IPC_SYSCTLS)


def sysctls(pod: PodContext) -> dict[str, str]:
    """Pod sysctls for this container; namespaced ones go to the sandbox when there is one."""
    spec = pod.spec
    out: dict[str, str] = {}
    for s in spec.security_context.sysctls:
        net = s.name.startswith("net.")
        ipc = _is_ipc_sysctl(s.name)
        if net and spec.host_network:
            raise PodConfigError(f"forbidden sysctl: {s.name!r} not allowed with host net enabled")
        if ipc and spec.host_ipc:
            raise PodConfigError(f"forbidden sysctl: {s.name!r} not allowed with host ipc enabled")
        if pod.sandbox and ((net and not spec.host_network) or (ipc and not spec.host_ipc)):
            continue
        out[s.name] = s.value
    return out


# --- security ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Security:
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    devices_all: bool = False
    user: str = ""
    group_add: tuple[str, ...] = ()
    read_only_rootfs: bool = False
    security_opt: tuple[str, ...] = ()


def _cap(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def security_options(pod: PodContext, container: model.Container) -> Security:
    """securityContext (container over pod) → Docker's user, groups, capabilities and security options."""
    psc = pod.spec.security_context
    sc = container.security_context or model.SecurityContext()
    uid = sc.run_as_user if sc.run_as_user is not None else psc.run_as_user
    gid = sc.run_as_group if sc.run_as_group is not None else psc.run_as_group
    if gid is not None and uid is None:
        # Kubernetes' own Docker integration (dockershim) refused this too: Docker has no "image user,
        # this group" form.
        raise PodConfigError("runAsGroup is specified without a runAsUser")
    user = "" if uid is None else (str(uid) if gid is None else f"{uid}:{gid}")
    groups: list[str] = []
    for g in (psc.fs_group, *psc.supplemental_groups):
        if g is not None and str(g) not in groups:
            groups.append(str(g))

    opts: list[str] = []
    if sc.allow_privilege_escalation is False:
        opts.append("no-new-privileges")
    apparmor = pod.metadata.annotations.get(_APPARMOR_ANNOTATION + container.name, "")
    seccomp = sc.seccomp_profile or psc.seccomp_profile
    if sc.privileged:
        if pod.withheld_caps:
            # A real --privileged container fails on this host: grant everything the kernel allows.
            return Security(
                cap_add=("ALL",),
                cap_drop=tuple(_cap(c) for c in pod.withheld_caps),
                devices_all=True,
                user=user,
                group_add=tuple(groups),
                read_only_rootfs=bool(sc.read_only_root_filesystem),
                security_opt=(*opts, "apparmor=unconfined", "seccomp=unconfined", "systempaths=unconfined"),
            )
        return Security(
            privileged=True,
            user=user,
            group_add=tuple(groups),
            read_only_rootfs=bool(sc.read_only_root_filesystem),
            security_opt=tuple(opts),
        )
    caps = sc.capabilities or model.Capabilities()
    if apparmor == "unconfined":
        opts.append("apparmor=unconfined")
    elif apparmor.startswith("localhost/"):
        opts.append("apparmor=" + apparmor.removeprefix("localhost/"))
    if seccomp == "Unconfined":
        opts.append("seccomp=unconfined")
    return Security(
        cap_add=tuple(_cap(c) for c in caps.add),
        cap_drop=tuple(_cap(c) for c in caps.drop),
        user=user,
        group_add=tuple(groups),
        read_only_rootfs=bool(sc.read_only_root_filesystem),
        security_opt=tuple(opts),
    )


# --- mounts -----------------------------------------------------------------------------------

_PROPAGATION = {"None": "", "HostToContainer": "rslave", "Bidirectional": "rshared"}
_API_DATA_VOLUMES = (
    model.ConfigMapVolumeSource,
    model.SecretVolumeSource,
    model.DownwardAPIVolumeSource,
    model.ProjectedVolumeSource,
)


def expand_sub_path_expr(expr: str, env: Mapping[str, str]) -> str:
    """The kubelet's `ExpandContainerVolumeMounts`: every reference must resolve to a non-empty value."""
    missing: set[str] = set()

    def mapping(name: str) -> str:
        value = env.get(name, "")
        if not value:
            missing.add(name)
        return value

    out = expand(expr, mapping)
    if missing:
        raise PodConfigError(f"missing value for {', '.join(sorted(missing))}")
    return out


def _check_sub_path(sub: str) -> None:
    if posixpath.isabs(sub) or ".." in sub.split("/"):
        raise PodConfigError(f"subPath {sub!r} must be a relative path without '..'")


def mounts(pod: PodContext, container: model.Container, env: Mapping[str, str]) -> tuple[runtime.Mount, ...]:
    """volumeMounts → bind mounts of the prepared host paths (+ subPath), or tmpfs for Memory emptyDirs."""
    volumes = {v.name: v for v in pod.spec.volumes}
    out: list[runtime.Mount] = []
    for vm in container.volume_mounts:
        volume = volumes.get(vm.name)
        if volume is None:
            raise PodConfigError(f"volumeMount {vm.name!r}: no volume of that name")
        propagation = _PROPAGATION.get(vm.mount_propagation, "")
        sub = vm.sub_path or (expand_sub_path_expr(vm.sub_path_expr, env) if vm.sub_path_expr else "")
        if sub:
            _check_sub_path(sub)
        source = volume.source
        if isinstance(source, model.EmptyDirVolumeSource) and source.medium == "Memory":
            if sub:
                raise PodConfigError(
                    f"volumeMount {vm.name!r}: subPath of a Memory emptyDir is not supported"
                )
            size = source.size_limit.ceil() if source.size_limit is not None else None
            out.append(
                runtime.Mount(target=vm.mount_path, read_only=vm.read_only, tmpfs=True, tmpfs_size=size)
            )
            continue
        host = pod.volume_paths.get(vm.name)
        if host is None:
            raise PodConfigError(f"volume {vm.name!r} was not prepared on this node")
        out.append(
            runtime.Mount(
                target=vm.mount_path,
                source=posixpath.join(host, sub) if sub else host,
                # the kubelet mounts API-data volumes read-only whatever the volumeMount says
                read_only=vm.read_only or isinstance(source, _API_DATA_VOLUMES),
                propagation=propagation,
            )
        )
    return tuple(out)


# --- privileged and the pod sandbox -----------------------------------------------------------


def wants_privileged(spec: model.PodSpec) -> bool:
    """True when any container (init containers included) asks for `privileged: true`."""
    return any(
        c.security_context is not None and c.security_context.privileged
        for c in (*spec.init_containers, *spec.containers)
    )


def needs_sandbox(spec: model.PodSpec) -> bool:
    """Whether the pod needs a sandbox (pause) container holding its shared namespaces.

    Kubernetes always has one; on a lone Docker host only a pod with more than one container (init
    containers count: they share the pod's network too), or one whose env reads `status.podIP` (the
    address must exist before the container is created), needs it, and only when some namespace would not
    be the host's anyway: a hostNetwork+hostIPC pod shares through the host, unless it also asks for
    shareProcessNamespace without hostPID.
    """
    if not spec.host_network and _uses_pod_ip(spec):
        return True  # the pod IP must be known before the container that reads it is created
    if len(spec.containers) + len(spec.init_containers) < 2:
        return False
    shared_pid = spec.share_process_namespace and not spec.host_pid
    return not (spec.host_network and spec.host_ipc) or shared_pid


def _uses_pod_ip(spec: model.PodSpec) -> bool:
    """True when an env var takes `status.podIP`/`status.podIPs` through the downward API."""
    for c in (*spec.init_containers, *spec.containers):
        for e in c.env:
            ref = e.value_from.field_ref if e.value_from is not None else None
            if ref is not None and ref.field_path in ("status.podIP", "status.podIPs"):
                return True
    return False


SANDBOX_CONTAINER = "POD"  # the io.kubernetes.container.name of a sandbox, as dockershim labelled it
SANDBOX_STOP_TIMEOUT = 2  # the pause process exits on SIGTERM at once


def sandbox_create(pod: PodContext, image: str, *, network: str = "") -> runtime.ContainerCreate:
    """The sandbox ("pause") container of a multi-container pod: it owns the pod's network and IPC.

    The app and init containers join it with `container:<sandbox>` (build() does so when
    `PodContext.sandbox` is set), so they reach each other on localhost, and since the sandbox never
    restarts, a restarted sibling finds the same namespace. It carries the pod's hostname, DNS settings,
    host aliases, the host ports of every app container and the namespaced (net.*, IPC) sysctls.
    `network` picks the Docker network of a non-hostNetwork pod ("" is the engine's default bridge).
    """
    spec = pod.spec
    host_net = spec.host_network
    namespaced = {
        s.name: s.value
        for s in spec.security_context.sysctls
        if (s.name.startswith("net.") and not host_net) or (_is_ipc_sysctl(s.name) and not spec.host_ipc)
    }
    ports = () if host_net else tuple(p for c in spec.containers for p in port_bindings(c))
    return runtime.ContainerCreate(
        name=identity.sandbox_name(pod.namespace, pod.pod_name, pod.node_name),
        image=image,
        labels=identity.container_labels(
            owner=pod.owner,
            namespace=pod.namespace,
            pod=pod.pod_name,
            container=SANDBOX_CONTAINER,
            spec_hash_value=pod.spec_hash,
            attempt=0,
            role=identity.ROLE_SANDBOX,
        ),
        network_mode="host" if host_net else network,
        ipc_mode="host" if spec.host_ipc else "shareable",
        pid_mode="host" if spec.host_pid else "",
        hostname="" if host_net else pod_hostname(pod),
        ports=ports,
        sysctls=namespaced,
        dns=spec.dns_nameservers,
        dns_search=spec.dns_searches,
        extra_hosts=extra_hosts(spec),
        stop_timeout=SANDBOX_STOP_TIMEOUT,
    )
