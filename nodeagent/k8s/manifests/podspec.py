"""PodSpec (ValidatePodSpec, SetDefaults_PodSpec): the pod-wide fields, DNS and host aliases; each
section (containers, volumes, security, affinity) is decoded by its own module."""

from __future__ import annotations

import ipaddress

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.affinity import decode_affinity, decode_tolerations
from nodeagent.k8s.manifests.common import INT32_MAX, NONNEGATIVE, one_of
from nodeagent.k8s.manifests.containers import check_names_and_host_ports, decode_containers
from nodeagent.k8s.manifests.metadata import validate_labels
from nodeagent.k8s.manifests.security import decode_pod_security_context
from nodeagent.k8s.manifests.tables import CONDITIONAL_WARNINGS, POD_SPEC_FIELDS, POD_SPEC_WARNINGS
from nodeagent.k8s.manifests.volumes import decode_volumes
from nodeagent.k8s.validation import Raw, Walker, child, fields


def decode_pod_spec(w: Walker, raw: object, path: str) -> model.PodSpec:
    """A PodSpec (a Pod's or a DaemonSet template's), with the API server's defaults applied."""
    if raw is None:
        w.error(path, v.required())
    s = w.mapping(raw, path, POD_SPEC_FIELDS) or {}
    for name, reason in POD_SPEC_WARNINGS.items():
        if s.get(name) is not None:
            w.warn(child(path, name), reason)

    grace = w.int_(s, "terminationGracePeriodSeconds", path, 30)
    if grace < 0:
        w.error(child(path, "terminationGracePeriodSeconds"), v.invalid(grace, NONNEGATIVE))
    host_network = w.bool_(s, "hostNetwork", path)
    volumes, volume_names = decode_volumes(w, s, path)
    containers = decode_containers(w, s, "containers", path, volume_names, grace, host_network)
    init_containers = decode_containers(w, s, "initContainers", path, volume_names, grace, host_network)
    check_names_and_host_ports(w, path, containers, init_containers)

    restart = w.str_(s, "restartPolicy", path) or "Always"
    if restart not in ("Always", "OnFailure", "Never"):
        w.error(child(path, "restartPolicy"), v.unsupported(restart, ["Always", "OnFailure", "Never"]))

    dns_policy = w.str_(s, "dnsPolicy", path) or "ClusterFirst"
    dns_values = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if dns_policy not in dns_values:
        w.error(child(path, "dnsPolicy"), v.unsupported(dns_policy, dns_values))
    elif s.get("dnsPolicy") in ("ClusterFirst", "ClusterFirstWithHostNet"):
        w.warn(child(path, "dnsPolicy"), CONDITIONAL_WARNINGS["dnsPolicy: ClusterFirst"])
    nameservers, searches = _dns_config(w, s, path, dns_policy)

    node_selector = w.str_map(s, "nodeSelector", path)
    validate_labels(w, node_selector, child(path, "nodeSelector"))

    active_deadline = w.opt_int(s, "activeDeadlineSeconds", path)
    if active_deadline is not None and not 1 <= active_deadline <= INT32_MAX:
        w.error(
            child(path, "activeDeadlineSeconds"),
            v.invalid(active_deadline, f"must be between 1 and {INT32_MAX}, inclusive"),
        )

    sa_name = w.str_(s, "serviceAccountName", path) or w.str_(s, "serviceAccount", path)
    for field_name, check in (
        ("serviceAccountName", v.dns1123_subdomain),
        ("nodeName", v.dns1123_subdomain),
        ("hostname", v.dns1123_label),
        ("subdomain", v.dns1123_label),
        ("priorityClassName", v.dns1123_subdomain),
        ("runtimeClassName", v.dns1123_subdomain),
    ):
        value = w.str_(s, field_name, path)
        for msg in check(value) if value else []:
            w.error(child(path, field_name), v.invalid(value, msg))

    scheduler = w.str_(s, "schedulerName", path) or "default-scheduler"
    if scheduler != "default-scheduler":
        w.warn(child(path, "schedulerName"), CONDITIONAL_WARNINGS["schedulerName (not default-scheduler)"])

    one_of(w, s, "preemptionPolicy", path, ["PreemptLowerPriority", "Never"])
    for p, secret in w.objects(s, "imagePullSecrets", path, fields("name")):
        w.str_(secret, "name", p)
    os_raw = w.obj(s, "os", path, fields("name"))
    if os_raw is not None:
        os_name = w.str_(os_raw, "name", child(path, "os"))
        if os_name not in ("linux", "windows"):
            w.error(child(path, "os.name"), v.unsupported(os_name, ["linux", "windows"]))

    return model.PodSpec(
        containers=tuple(containers),
        init_containers=tuple(init_containers),
        volumes=tuple(volumes),
        node_selector=node_selector,
        node_name=w.str_(s, "nodeName", path),
        affinity=decode_affinity(w, s, path),
        tolerations=decode_tolerations(w, s, path),
        restart_policy=restart,
        termination_grace_period_seconds=grace,
        active_deadline_seconds=active_deadline,
        dns_policy=dns_policy,
        host_network=host_network,
        host_pid=w.bool_(s, "hostPID", path),
        host_ipc=w.bool_(s, "hostIPC", path),
        hostname=w.str_(s, "hostname", path),
        subdomain=w.str_(s, "subdomain", path),
        share_process_namespace=w.bool_(s, "shareProcessNamespace", path),
        service_account_name=sa_name,
        automount_service_account_token=w.opt_bool(s, "automountServiceAccountToken", path),
        priority_class_name=w.str_(s, "priorityClassName", path),
        priority=w.opt_int(s, "priority", path),
        scheduler_name=scheduler,
        security_context=decode_pod_security_context(w, s, path),
        host_aliases=_host_aliases(w, s, path),
        dns_nameservers=nameservers,
        dns_searches=searches,
    )


def _dns_config(w: Walker, s: Raw, path: str, policy: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cpath = child(path, "dnsConfig")
    c = w.obj(s, "dnsConfig", path, fields("nameservers", "searches", "options"))
    if policy == "None":
        if c is None:
            w.error(cpath, v.required("must provide `dnsConfig` when `dnsPolicy` is None"))
            return (), ()
        if not c.get("nameservers"):
            w.error(
                child(cpath, "nameservers"),
                v.required("must provide at least one DNS nameserver when `dnsPolicy` is None"),
            )
    if c is None:
        return (), ()
    nameservers = w.str_list(c, "nameservers", cpath)
    if len(nameservers) > 3:
        w.error(
            child(cpath, "nameservers"), v.invalid(list(nameservers), "must not have more than 3 nameservers")
        )
    for i, ns in enumerate(nameservers):
        if not _is_ip(ns):
            w.error(v.index(child(cpath, "nameservers"), i), v.invalid(ns, _IP_ERROR))
    searches = w.str_list(c, "searches", cpath)
    if len(searches) > 32:
        w.error(
            child(cpath, "searches"), v.invalid(list(searches), "must not have more than 32 search paths")
        )
    if len(" ".join(searches)) > 2048:
        w.error(
            child(cpath, "searches"),
            v.invalid(
                list(searches),
                "must not have more than 2048 characters (including spaces) in the search list",
            ),
        )
    for i, search in enumerate(searches):
        for msg in v.dns1123_subdomain(search.removesuffix(".")):
            w.error(v.index(child(cpath, "searches"), i), v.invalid(search.removesuffix("."), msg))
    options = w.objects(c, "options", cpath, fields("name", "value"))
    for p, opt in options:
        if not w.str_(opt, "name", p):
            w.error(p, v.required("must not be empty"))
        w.str_(opt, "value", p)
    if options:
        w.warn(child(cpath, "options"), CONDITIONAL_WARNINGS["dnsConfig.options"])
    return nameservers, searches


_IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_aliases(w: Walker, s: Raw, path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for p, alias in w.objects(s, "hostAliases", path, fields("ip", "hostnames")):
        ip = w.str_(alias, "ip", p)
        if not _is_ip(ip):
            w.error(child(p, "ip"), v.invalid(ip, _IP_ERROR))
        names = w.str_list(alias, "hostnames", p)
        for i, hostname in enumerate(names):
            for msg in v.dns1123_subdomain(hostname):
                w.error(v.index(child(p, "hostnames"), i), v.invalid(hostname, msg))
        out.append((ip, names))
    return tuple(out)
