"""Pod and container security contexts (ValidateSecurityContext, validatePodSpecSecurityContext)."""

from __future__ import annotations

import re

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.common import INT32_MAX, local_descending_path, one_of, warn_fields
from nodeagent.k8s.manifests.tables import (
    POD_SECURITY_CONTEXT_FIELDS,
    SECURITY_CONTEXT_FIELDS,
    SECURITY_CONTEXT_WARNINGS,
)
from nodeagent.k8s.validation import Raw, Walker, child, fields


def _seccomp(w: Walker, sc: Raw, path: str) -> tuple[str | None, str | None]:
    raw = w.obj(sc, "seccompProfile", path, fields("type", "localhostProfile"))
    if raw is None:
        return None, None
    spath = child(path, "seccompProfile")
    typ = w.str_(raw, "type", spath)
    profile = w.opt_str(raw, "localhostProfile", spath)
    if not typ:
        w.error(child(spath, "type"), v.required())
    elif typ not in ("Localhost", "RuntimeDefault", "Unconfined"):
        w.error(child(spath, "type"), v.unsupported(typ, ["Localhost", "RuntimeDefault", "Unconfined"]))
    if typ == "Localhost":
        if profile is None:
            w.error(
                child(spath, "localhostProfile"), v.required("must be set when seccomp type is Localhost")
            )
        else:
            local_descending_path(w, profile, child(spath, "localhostProfile"))
    elif profile is not None:
        w.error(
            child(spath, "localhostProfile"),
            v.invalid(profile, "can only be set when seccomp type is Localhost"),
        )
    return (typ or None), profile


def _id(w: Walker, sc: Raw, name: str, path: str) -> int | None:
    value = w.opt_int(sc, name, path)
    if value is not None and not 0 <= value <= INT32_MAX:
        w.error(child(path, name), v.invalid(value, f"must be between 0 and {INT32_MAX}, inclusive"))
    return value


def _unapplied_security(sc: Raw) -> tuple[model.SELinuxOptions | None, bool | None, str | None]:
    """seLinuxOptions, windowsOptions.hostProcess and appArmorProfile.type: never applied (a warning
    says so), read only for a source's policy (nodeagent.k8s.policy). Read leniently: a value of the wrong
    type counts as unset here, since these fields never were validated beyond the warning."""

    def text(d: object, key: str) -> str:
        value = d.get(key) if isinstance(d, dict) else None
        return value if isinstance(value, str) else ""

    raw_se, raw_win, raw_aa = sc.get("seLinuxOptions"), sc.get("windowsOptions"), sc.get("appArmorProfile")
    host_process = raw_win.get("hostProcess") if isinstance(raw_win, dict) else None
    return (
        model.SELinuxOptions(*(text(raw_se, k) for k in ("user", "role", "type", "level")))
        if isinstance(raw_se, dict)
        else None,
        host_process if isinstance(host_process, bool) else None,
        text(raw_aa, "type") if isinstance(raw_aa, dict) else None,
    )


def decode_security_context(w: Walker, c: Raw, cpath: str) -> model.SecurityContext | None:
    """A container's securityContext, or None when it has none."""
    path = child(cpath, "securityContext")
    sc = w.obj(c, "securityContext", cpath, SECURITY_CONTEXT_FIELDS)
    if sc is None:
        return None
    warn_fields(w, sc, path, SECURITY_CONTEXT_WARNINGS)
    caps_raw = w.obj(sc, "capabilities", path, fields("add", "drop"))
    caps = None
    if caps_raw is not None:
        cap_path = child(path, "capabilities")
        caps = model.Capabilities(
            w.str_list(caps_raw, "add", cap_path), w.str_list(caps_raw, "drop", cap_path)
        )
    privileged = w.opt_bool(sc, "privileged", path)
    escalation = w.opt_bool(sc, "allowPrivilegeEscalation", path)
    if escalation is False:
        if privileged:
            w.error(
                path,
                v.invalid(
                    escalation, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
                ),
            )
        if caps is not None and "CAP_SYS_ADMIN" in caps.add:
            w.error(
                path,
                v.invalid(
                    escalation,
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ),
            )
    proc_mount = one_of(w, sc, "procMount", path, ["Default", "Unmasked"])
    seccomp, profile = _seccomp(w, sc, path)
    unapplied = _unapplied_security(sc)
    return model.SecurityContext(
        privileged=privileged,
        capabilities=caps,
        run_as_user=_id(w, sc, "runAsUser", path),
        run_as_group=_id(w, sc, "runAsGroup", path),
        run_as_non_root=w.opt_bool(sc, "runAsNonRoot", path),
        read_only_root_filesystem=w.opt_bool(sc, "readOnlyRootFilesystem", path),
        allow_privilege_escalation=escalation,
        seccomp_profile=seccomp,
        seccomp_localhost_profile=profile,
        proc_mount=proc_mount,
        se_linux_options=unapplied[0],
        windows_host_process=unapplied[1],
        app_armor_profile=unapplied[2],
    )


def decode_pod_security_context(w: Walker, s: Raw, spath: str) -> model.PodSecurityContext:
    """spec.securityContext (an empty one when absent)."""
    path = child(spath, "securityContext")
    sc = w.obj(s, "securityContext", spath, POD_SECURITY_CONTEXT_FIELDS)
    if sc is None:
        return model.PodSecurityContext()
    warn_fields(w, sc, path, SECURITY_CONTEXT_WARNINGS)
    groups = []
    for p, g in w.items(sc, "supplementalGroups", path):
        if isinstance(g, bool) or not isinstance(g, int):
            w.error(p, v.invalid(g if isinstance(g, int | str) else str(g), "must be of type integer"))
        elif not 0 <= g <= INT32_MAX:
            w.error(p, v.invalid(g, f"must be between 0 and {INT32_MAX}, inclusive"))
        else:
            groups.append(g)
    sysctls = []
    seen: set[str] = set()
    for p, raw in w.objects(sc, "sysctls", path, fields("name", "value")):
        name = w.str_(raw, "name", p)
        value = w.str_(raw, "value", p)
        if not name:
            w.error(child(p, "name"), v.required())
        elif not _SYSCTL.fullmatch(name) or len(name) > 253:
            w.error(
                child(p, "name"),
                v.invalid(name, _SYSCTL_ERROR),
            )
        elif name in seen:
            w.error(child(p, "name"), v.duplicate(name))
        seen.add(name)
        sysctls.append(model.Sysctl(name, value))
    one_of(w, sc, "fsGroupChangePolicy", path, ["Always", "OnRootMismatch"])
    seccomp, profile = _seccomp(w, sc, path)
    unapplied = _unapplied_security(sc)
    return model.PodSecurityContext(
        run_as_user=_id(w, sc, "runAsUser", path),
        run_as_group=_id(w, sc, "runAsGroup", path),
        run_as_non_root=w.opt_bool(sc, "runAsNonRoot", path),
        fs_group=_id(w, sc, "fsGroup", path),
        supplemental_groups=tuple(groups),
        sysctls=tuple(sysctls),
        seccomp_profile=seccomp,
        seccomp_localhost_profile=profile,
        se_linux_options=unapplied[0],
        windows_host_process=unapplied[1],
        app_armor_profile=unapplied[2],
    )


_SYSCTL = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")

_SYSCTL_ERROR = f"must have at most 253 characters and match regex ^{_SYSCTL.pattern}$"
