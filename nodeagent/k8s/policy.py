"""Per-source policy: the Pod Security Standards (as k8s.io/pod-security-admission checks them) and
PodSecurityPolicy's `allowedHostPaths`. Pure: a pod template in, the reasons it is refused out.

Static pods and shared sources are a known persistence path (a pod with hostPID and a hostPath of `/`
owns the host), so each source can be held to a level:

- `privileged` (the default): no checks;
- `baseline`: the checks that stop known privilege escalations (host namespaces, privileged
  containers, added capabilities, hostPath volumes, host ports, AppArmor, SELinux, /proc mount,
  seccomp, sysctls, Windows host processes, probe and lifecycle hosts);
- `restricted`: baseline plus the hardening best practices (no privilege escalation, drop ALL
  capabilities, a restricted set of volume types, non-root, seccomp RuntimeDefault or Localhost).

One concept, over 600 lines on purpose: the Pod Security Standards are one table of checks, kept in one
file in PSA's order.

The checks, their order and their messages are pod-security-admission's at its latest version, so
a refusal reads like the API server's: `violates PodSecurity "baseline:latest": host namespaces
(hostNetwork=true), privileged (container "x" must not set securityContext.privileged=true)`. Checks
run in PSA's order: the baseline checks that every level shares, then (for baseline) the ones that
restricted replaces, or (for restricted) the restricted ones. Fields nodeagent does not apply
(seLinuxOptions, appArmorProfile, windowsOptions) are still checked: a manifest a cluster refuses is
refused here too. Ephemeral containers do not exist here, and `hostUsers` is ignored (so user
namespaces do not relax runAsNonRoot or procMount).

`allowedHostPaths` is separate from the level (PodSecurityPolicy had it; PSA has nothing finer than
"no hostPath"): every hostPath must be under one listed prefix (whole path components: `/var/log`
allows `/var/log` and `/var/log/pods`, not `/var/logs`), and when that entry says `readOnly`, every
mount of the volume must be read-only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nodeagent.k8s import model
from nodeagent.k8s.manifests.tables import VOLUME_TYPES

T = TypeVar("T")

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)


@dataclass(frozen=True)
class HostPathRule:
    """One `allowedHostPaths` entry."""

    path_prefix: str
    read_only: bool = False


@dataclass(frozen=True)
class Policy:
    """What a source may define. `allowed_host_paths=None` puts no limit on hostPath volumes."""

    level: str = PRIVILEGED
    allowed_host_paths: tuple[HostPathRule, ...] | None = None

    @property
    def enforcing(self) -> bool:
        return self.level != PRIVILEGED or self.allowed_host_paths is not None

    def describe(self) -> str:
        text = self.level
        if self.allowed_host_paths is not None:
            paths = ", ".join(
                r.path_prefix + (" (readOnly)" if r.read_only else "") for r in self.allowed_host_paths
            )
            text += f", allowedHostPaths: {paths or 'none'}"
        return text


DEFAULT = Policy()


@dataclass(frozen=True)
class CheckResult:
    """A failed check: PSA's ForbiddenReason and ForbiddenDetail."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Violation:
    """One reason an object is refused, at a field path (relative to the object)."""

    path: str
    message: str


# --- helpers, as PSA's ------------------------------------------------------------------------


def _pluralize(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _join_quote(items: Iterable[str]) -> str:
    items = list(items)
    return '"' + '", "'.join(items) + '"' if items else ""


def _named(singular: str, plural: str, items: Sequence[str]) -> str:
    """`container "a"`, `containers "a", "b"`: the noun for the count, then the names quoted."""
    return f"{_pluralize(singular, plural, len(items))} {_join_quote(items)}"


def _containers(spec: model.PodSpec) -> tuple[model.Container, ...]:
    """PSA's visitContainers order: init containers, then containers."""
    return spec.init_containers + spec.containers


def _offenders(
    spec: model.PodSpec, found: Callable[[model.Container], Iterable[str]]
) -> tuple[list[str], set[str]]:
    """The containers (in PSA's order) in which `found` finds something, and all that it found."""
    names: list[str] = []
    values: set[str] = set()
    for c in _containers(spec):
        hits = list(found(c))
        if hits:
            names.append(c.name)
            values.update(hits)
    return names, values


def _setters(pod: bool, containers: Sequence[str]) -> list[str]:
    out = ["pod"] if pod else []
    if containers:
        out.append(_named("container", "containers", containers))
    return out


def _forbid(reason: str, setters: Sequence[str], detail: str) -> CheckResult | None:
    """PSA's `pod and container "a" <detail>`, or None when nothing set what the check forbids."""
    return CheckResult(reason, f"{' and '.join(setters)} {detail}") if setters else None


Check = Callable[[model.ObjectMeta, model.PodSpec], CheckResult | None]


# --- baseline ---------------------------------------------------------------------------------

_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def app_armor_profile(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad_values: set[str] = set()
    pod = (
        spec.security_context.app_armor_profile is not None
        and spec.security_context.app_armor_profile
        not in (
            "RuntimeDefault",
            "Localhost",
        )
    )
    if pod:
        bad_values.add(spec.security_context.app_armor_profile or "")
    containers = []
    for c in _containers(spec):
        t = c.security_context.app_armor_profile if c.security_context else None
        if t is not None and t not in ("RuntimeDefault", "Localhost"):
            containers.append(c.name)
            bad_values.add(t)
    setters = _setters(pod, containers)
    values = sorted(bad_values)
    annotations = sorted(
        f'{k}="{v}"'
        for k, v in meta.annotations.items()
        if k.startswith(_APPARMOR_ANNOTATION)
        and v not in ("", "runtime/default")
        and not v.startswith("localhost/")
    )
    if annotations:
        values += annotations
        setters.append(_pluralize("annotation", "annotations", len(annotations)))
    return _forbid(
        _pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
        setters,
        f"must not set AppArmor profile type to {_join_quote(values)}",
    )


def host_namespaces(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    found = [
        name
        for name, on in (
            ("hostNetwork", spec.host_network),
            ("hostPID", spec.host_pid),
            ("hostIPC", spec.host_ipc),
        )
        if on
    ]
    return CheckResult("host namespaces", ", ".join(f"{n}=true" for n in found)) if found else None


def host_ports(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    containers, ports = _offenders(spec, lambda c: [str(p.host_port) for p in c.ports if p.host_port])
    if not containers:
        return None
    return CheckResult(
        "hostPort",
        f"{_named('container', 'containers', containers)} "
        f"{_pluralize('uses', 'use', len(containers))} {_pluralize('hostPort', 'hostPorts', len(ports))} "
        + ", ".join(sorted(ports)),
    )


def _hosts(handler: model.ProbeHandler | None) -> list[str]:
    if isinstance(handler, model.HTTPGetAction | model.TCPSocketAction) and handler.host:
        return [handler.host]
    return []


def _probe_and_hook_hosts(c: model.Container) -> list[str]:
    found: list[str] = []
    for probe in (c.liveness_probe, c.readiness_probe, c.startup_probe):
        found += _hosts(probe.handler if probe else None)
    if c.lifecycle is not None:
        for hook in (c.lifecycle.post_start, c.lifecycle.pre_stop):
            found += _hosts(hook.handler if hook else None)
    return found


def host_probes_and_host_lifecycle(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    found, hosts = _offenders(spec, _probe_and_hook_hosts)
    if not found:
        return None
    containers = sorted(set(found))
    return CheckResult(
        "probe or lifecycle host",
        f"{_named('container', 'containers', containers)} "
        f"{_pluralize('uses', 'use', len(containers))} "
        f"{_named('probe or lifecycle host', 'probe or lifecycle hosts', sorted(hosts))}",
    )


def privileged(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad = [c.name for c in _containers(spec) if c.security_context and c.security_context.privileged]
    return _forbid("privileged", _setters(False, bad), "must not set securityContext.privileged=true")


def proc_mount(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    def unmasked(c: model.Container) -> list[str]:
        pm = c.security_context.proc_mount if c.security_context else None
        return [pm] if pm is not None and pm != "Default" else []

    bad, types = _offenders(spec, unmasked)
    return _forbid(
        "procMount",
        _setters(False, bad),
        f"must not set securityContext.procMount to {_join_quote(sorted(types))}",
    )


_SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t")


def se_linux_options(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad_types: set[str] = set()
    set_user = set_role = False

    def valid(opts: model.SELinuxOptions) -> bool:
        nonlocal set_user, set_role
        ok = True
        if opts.type not in _SELINUX_TYPES:
            ok = False
            bad_types.add(opts.type)
        if opts.user:
            ok, set_user = False, True
        if opts.role:
            ok, set_role = False, True
        return ok

    pod_opts = spec.security_context.se_linux_options
    pod = pod_opts is not None and not valid(pod_opts)
    containers = []
    for c in _containers(spec):
        opts = c.security_context.se_linux_options if c.security_context else None
        if opts is not None and not valid(opts):
            containers.append(c.name)
    data = []
    if bad_types:
        data.append(_named("type", "types", sorted(bad_types)))
    if set_user:
        data.append("user may not be set")
    if set_role:
        data.append("role may not be set")
    return _forbid(
        "seLinuxOptions",
        _setters(pod, containers),
        f"set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
    )


# PSA's allowed sysctls as of 1.32 (1.0's five, net.ipv4.ip_local_reserved_ports from 1.27, the TCP
# keepalive and FIN timeout ones from 1.29, tcp_rmem and tcp_wmem from 1.32).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)


def sysctls(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad = [s.name for s in spec.security_context.sysctls if s.name not in SAFE_SYSCTLS]
    return CheckResult("forbidden sysctls", ", ".join(bad)) if bad else None


def windows_host_process(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad = [
        c.name for c in _containers(spec) if c.security_context and c.security_context.windows_host_process
    ]
    return _forbid(
        "hostProcess",
        _setters(bool(spec.security_context.windows_host_process), bad),
        "must not set securityContext.windowsOptions.hostProcess=true",
    )


# --- baseline only (restricted has stricter versions) -----------------------------------------

ALLOWED_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def capabilities_baseline(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    def extra(c: model.Container) -> list[str]:
        caps = c.security_context.capabilities if c.security_context else None
        return [cap for cap in caps.add if cap not in ALLOWED_CAPABILITIES] if caps else []

    bad, caps = _offenders(spec, extra)
    return _forbid(
        "non-default capabilities",
        _setters(False, bad),
        f"must not include {_join_quote(sorted(caps))} in securityContext.capabilities.add",
    )


def host_path_volumes(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad = [v.name for v in spec.volumes if isinstance(v.source, model.HostPathVolumeSource)]
    if not bad:
        return None
    return CheckResult("hostPath volumes", _named("volume", "volumes", bad))


def seccomp_profile_baseline(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    pod = spec.security_context.seccomp_profile == "Unconfined"
    bad = [
        c.name
        for c in _containers(spec)
        if c.security_context is not None and c.security_context.seccomp_profile == "Unconfined"
    ]
    return _forbid(
        "seccompProfile",
        _setters(pod, bad),
        'must not set securityContext.seccompProfile.type to "Unconfined"',
    )


# --- restricted -------------------------------------------------------------------------------


def allow_privilege_escalation(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad = [
        c.name
        for c in _containers(spec)
        if c.security_context is None or c.security_context.allow_privilege_escalation is not False
    ]
    return _forbid(
        "allowPrivilegeEscalation != false",
        _setters(False, bad),
        "must set securityContext.allowPrivilegeEscalation=false",
    )


def capabilities_restricted(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    missing_drop, adding, caps = [], [], set()
    for c in _containers(spec):
        capabilities = c.security_context.capabilities if c.security_context else None
        if capabilities is None:
            missing_drop.append(c.name)
            continue
        if "ALL" not in capabilities.drop:
            missing_drop.append(c.name)
        extra = [cap for cap in capabilities.add if cap != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c.name)
            caps.update(extra)
    details = []
    if missing_drop:
        details.append(
            f"{_named('container', 'containers', missing_drop)} "
            'must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_named('container', 'containers', adding)} "
            f"must not include {_join_quote(sorted(caps))} in securityContext.capabilities.add"
        )
    return CheckResult("unrestricted capabilities", "; ".join(details)) if details else None


_RESTRICTED_OK_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "image",  # allowed since 1.33
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def volume_type(volume: model.Volume) -> str:
    """The volume's type as written in the manifest."""
    if volume.declared_type:
        return volume.declared_type
    return {
        model.HostPathVolumeSource: "hostPath",
        model.EmptyDirVolumeSource: "emptyDir",
        model.ConfigMapVolumeSource: "configMap",
        model.SecretVolumeSource: "secret",
        model.DownwardAPIVolumeSource: "downwardAPI",
        model.ProjectedVolumeSource: "projected",
    }.get(type(volume.source), "unknown")


def restricted_volumes(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad, types = [], set()
    for v in spec.volumes:
        t = volume_type(v)
        if t not in _RESTRICTED_OK_VOLUMES:
            bad.append(v.name)
            types.add(t if t in _KNOWN_RESTRICTED else "unknown")
    if not bad:
        return None
    return CheckResult(
        "restricted volume types",
        f"{_named('volume', 'volumes', bad)} "
        f"{_pluralize('uses', 'use', len(bad))} "
        f"{_named('restricted volume type', 'restricted volume types', sorted(types))}",
    )


# the types PSA names in its message: every type of the API that restricted does not allow; a volume
# of no type nodeagent knows is "unknown"
_KNOWN_RESTRICTED = frozenset(VOLUME_TYPES) - _RESTRICTED_OK_VOLUMES


def _must_set(
    spec: model.PodSpec,
    reason: str,
    pod_value: T | None,
    value: Callable[[model.SecurityContext], T | None],
    allowed: Callable[[T], bool],
    forbidden: Callable[[list[T]], str],
    required: str,
) -> CheckResult | None:
    """A setting the pod, or else every container, must set to an allowed value: who set a forbidden one
    (`forbidden` words it from the values), else which containers leave it unset where the pod does not
    set it either."""
    pod_bad = pod_value is not None and not allowed(pod_value)
    pod_ok = pod_value is not None and not pod_bad
    bad_values = [pod_value] if pod_value is not None and pod_bad else []
    explicit, implicit = [], []
    for c in _containers(spec):
        v = value(c.security_context) if c.security_context else None
        if v is not None:
            if not allowed(v):
                explicit.append(c.name)
                bad_values.append(v)
        elif not pod_ok:
            implicit.append(c.name)
    if explicit or pod_bad:
        return _forbid(reason, _setters(pod_bad, explicit), forbidden(bad_values))
    if implicit:
        return CheckResult(reason, f"pod or {_named('container', 'containers', implicit)} {required}")
    return None


def run_as_non_root(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    return _must_set(
        spec,
        "runAsNonRoot != true",
        spec.security_context.run_as_non_root,
        lambda sc: sc.run_as_non_root,
        lambda v: v,
        lambda _: "must not set securityContext.runAsNonRoot=false",
        "must set securityContext.runAsNonRoot=true",
    )


def run_as_user(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    bad = [c.name for c in _containers(spec) if c.security_context and c.security_context.run_as_user == 0]
    return _forbid(
        "runAsUser=0", _setters(spec.security_context.run_as_user == 0, bad), "must not set runAsUser=0"
    )


def seccomp_profile_restricted(meta: model.ObjectMeta, spec: model.PodSpec) -> CheckResult | None:
    return _must_set(
        spec,
        "seccompProfile",
        spec.security_context.seccomp_profile,
        lambda sc: sc.seccomp_profile,
        lambda t: t in ("RuntimeDefault", "Localhost"),
        lambda bad: f"must not set securityContext.seccompProfile.type to {_join_quote(sorted(set(bad)))}",
        'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
    )


# PSA's evaluation order: the baseline checks shared by both levels (by check ID, as Go runs the
# check files' init functions), then baseline's overlapping checks or the restricted checks.
SHARED_BASELINE: tuple[Check, ...] = (
    app_armor_profile,
    host_namespaces,
    host_ports,
    host_probes_and_host_lifecycle,
    privileged,
    proc_mount,
    se_linux_options,
    sysctls,
    windows_host_process,
)
BASELINE_ONLY: tuple[Check, ...] = (capabilities_baseline, host_path_volumes, seccomp_profile_baseline)
RESTRICTED_CHECKS: tuple[Check, ...] = (
    allow_privilege_escalation,
    capabilities_restricted,
    restricted_volumes,
    run_as_non_root,
    run_as_user,
    seccomp_profile_restricted,
)


def evaluate(level: str, meta: model.ObjectMeta, spec: model.PodSpec) -> list[CheckResult]:
    """The failed checks of `level` for a pod, in PSA's order."""
    if level == PRIVILEGED:
        return []
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}")
    checks = SHARED_BASELINE + (BASELINE_ONLY if level == BASELINE else RESTRICTED_CHECKS)
    return [r for r in (check(meta, spec) for check in checks) if r is not None]


def message(level: str, results: Sequence[CheckResult]) -> str:
    """PSA's refusal text: `violates PodSecurity "LEVEL:latest": reason (detail), ...`."""
    reasons = ", ".join(f"{r.reason} ({r.detail})" if r.detail else r.reason for r in results)
    return f'violates PodSecurity "{level}:latest": {reasons}'


# --- allowedHostPaths ---------------------------------------------------------------------------


def _under(path: str, prefix: str) -> bool:
    """PodSecurityPolicy's prefix match: whole path components, `..` never escapes."""
    path, prefix = posixpath.normpath(path), posixpath.normpath(prefix)
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


def host_path_violations(spec: model.PodSpec, rules: Sequence[HostPathRule], prefix: str) -> list[Violation]:
    """Each hostPath volume outside every rule, and each writable mount of one its rule makes read-only."""
    out: list[Violation] = []
    read_only: set[str] = set()
    allowed = ", ".join(r.path_prefix for r in rules) or "none"
    for i, v in enumerate(spec.volumes):
        if not isinstance(v.source, model.HostPathVolumeSource):
            continue
        matching = [r for r in rules if _under(v.source.path, r.path_prefix)]
        if not matching:
            out.append(
                Violation(
                    f"{prefix}volumes[{i}].hostPath.path",
                    f'hostPath "{v.source.path}" is not allowed by the allowedHostPaths of this source '
                    f"({allowed})",
                )
            )
        elif all(r.read_only for r in matching):
            read_only.add(v.name)  # PSP: allowed when one matching entry allows it writable
    if read_only:
        for kind, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
            for ci, c in enumerate(containers):
                for mi, m in enumerate(c.volume_mounts):
                    if m.name in read_only and not m.read_only:
                        out.append(
                            Violation(
                                f"{prefix}{kind}[{ci}].volumeMounts[{mi}].readOnly",
                                f'must be true: allowedHostPaths allows volume "{m.name}" read-only only',
                            )
                        )
    return out


# --- objects ------------------------------------------------------------------------------------


def check(obj: model.KubeObject, pol: Policy) -> list[Violation]:
    """Why `obj` may not come from a source with policy `pol` ([] when it may)."""
    if not pol.enforcing:
        return []
    if isinstance(obj, model.DaemonSet):
        meta, spec, prefix = obj.spec.template.metadata, obj.spec.template.spec, "spec.template.spec."
    elif isinstance(obj, model.Pod):
        meta, spec, prefix = obj.metadata, obj.spec, "spec."
    else:
        return []
    out = []
    results = evaluate(pol.level, meta, spec)
    if results:
        out.append(Violation(prefix.rstrip("."), message(pol.level, results)))
    if pol.allowed_host_paths is not None:
        out += host_path_violations(spec, pol.allowed_host_paths, prefix)
    return out


def problems(doc: model.Document, pol: Policy) -> list[model.Problem]:
    """`check` as validation errors of the document (file, document index, kind, name, path)."""
    obj = doc.obj
    return [
        model.Problem(doc.file, doc.index, obj.kind, obj.metadata.name, v.path, v.message)
        for v in check(obj, pol)
    ]
