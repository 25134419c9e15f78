"""podconfig: pod + container → ContainerCreate, table-driven, no engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from nodeagent import runtime
from nodeagent.agent import identity, podconfig
from nodeagent.k8s import model, quantity

Q = quantity.parse


def container(**kw: Any) -> model.Container:
    kw.setdefault("name", "app")
    kw.setdefault("image", "busybox:1.36")
    return model.Container(**kw)


def spec(*containers: model.Container, **kw: Any) -> model.PodSpec:
    return model.PodSpec(containers=containers or (container(),), **kw)


def ctx(pod_spec: model.PodSpec | None = None, **kw: Any) -> podconfig.PodContext:
    defaults: dict[str, Any] = {
        "owner": identity.owner_daemonset("kube-system", "agent"),
        "namespace": "kube-system",
        "pod_name": "agent-abcde",
        "metadata": model.ObjectMeta(
            name="agent-abcde",
            namespace="kube-system",
            labels={"app": "agent", "tier": "node"},
            annotations={"note": 'say "hi"'},
        ),
        "spec": pod_spec or spec(),
        "spec_hash": "v1-abcdef0123456789",
        "node_name": "node-a",
        "host_ip": "10.0.0.5",
        "pod_ip": "172.17.0.9",
        "node_allocatable_cpu_milli": 4000,
        "node_allocatable_memory": 8 * 2**30,
    }
    defaults.update(kw)
    return podconfig.PodContext(**defaults)


def build(c: model.Container | None = None, **kw: Any) -> runtime.ContainerCreate:
    c = c or container()
    pod = ctx(spec(c, **kw.pop("spec_kw", {})), **kw)
    return podconfig.build(pod, c, role=identity.ROLE_APP, attempt=0)


# --- $(VAR) expansion: Kubernetes' own expand_test.go cases --------------------------------------

EXPANSION_CONTEXT = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("f00__(VAR_A)__", "f00__(VAR_A)__"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
        ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
        ("$$$$$$$(VAR_A)", "$$$A"),
        ("$VAR_A)", "$VAR_A)"),
        ("${VAR_A}", "${VAR_A}"),
        ("$(VAR_B)_______$(A", "B_______$(A"),
        ("$(VAR_C)_______$(", "C_______$("),
        ("$(VAR_A)foobarzab$", "Afoobarzab$"),
        ("--$($($($($--", "--$($($($($--"),
        ("$($($($($--foo$(", "$($($($($--foo$("),
        ("foo0--$($($($(", "foo0--$($($($("),
        ("$(foo$$var)", "$(foo$$var)"),
        ("\n", "\n"),
        ("", ""),
    ],
)
def test_expand_matches_kubernetes(text: str, expected: str) -> None:
    assert podconfig.expand(text, podconfig.mapping_for(EXPANSION_CONTEXT)) == expected


def test_mapping_dual_context_first_wins() -> None:
    mapping = podconfig.mapping_for({"A": "1"}, {"A": "2", "B": "3"})
    assert podconfig.expand("$(A)$(B)$(C)", mapping) == "13$(C)"


# --- command and args -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "entrypoint", "cmd"),
    [
        ((), (), None, None),
        (("/bin/app",), (), ("/bin/app",), ()),
        (("/bin/app",), ("-v",), ("/bin/app",), ("-v",)),
        ((), ("-v", "x"), None, ("-v", "x")),
    ],
)
def test_command_args_vs_entrypoint_cmd(
    command: tuple[str, ...],
    args: tuple[str, ...],
    entrypoint: tuple[str, ...] | None,
    cmd: tuple[str, ...] | None,
) -> None:
    created = build(container(command=command, args=args))
    assert (created.entrypoint, created.cmd) == (entrypoint, cmd)


def test_command_and_args_are_expanded_with_the_final_env() -> None:
    c = container(
        command=("/bin/$(BIN)", "$$(BIN)"),
        args=("--node=$(NODE)", "$(UNDEFINED)", "$(GREETING)"),
        env=(
            model.EnvVar("BIN", "agent"),
            model.EnvVar(
                "NODE", value_from=model.EnvVarSource(field_ref=model.ObjectFieldSelector("spec.nodeName"))
            ),
            model.EnvVar("GREETING", "hello-$(NODE)"),
        ),
    )
    created = build(c)
    assert created.entrypoint == ("/bin/agent", "$(BIN)")
    assert created.cmd == ("--node=node-a", "$(UNDEFINED)", "hello-node-a")


# --- env --------------------------------------------------------------------------------------


def env_of(c: model.Container, **kw: Any) -> dict[str, str]:
    lookup = kw.pop("lookup", None)
    pod = ctx(spec(c, **kw.pop("spec_kw", {})), **kw)
    return dict(podconfig.container_env(pod, c, lookup=lookup))


def test_env_references_earlier_vars_only() -> None:
    c = container(
        env=(
            model.EnvVar("A", "a"),
            model.EnvVar("B", "$(A)-b"),
            model.EnvVar("C", "$(D)-c"),  # D is defined later: left verbatim
            model.EnvVar("D", "d"),
            model.EnvVar("E", "$$(A)"),
            model.EnvVar("F"),  # neither value nor valueFrom: empty
            model.EnvVar("A", "again-$(A)"),  # redefinition sees the earlier value
        )
    )
    assert env_of(c) == {"A": "again-a", "B": "a-b", "C": "$(D)-c", "D": "d", "E": "$(A)", "F": ""}


def field(path: str) -> model.EnvVarSource:
    return model.EnvVarSource(field_ref=model.ObjectFieldSelector(path))


@pytest.mark.parametrize(
    ("path", "kw", "expected"),
    [
        ("spec.nodeName", {}, "node-a"),
        ("metadata.name", {}, "agent-abcde"),
        ("metadata.namespace", {}, "kube-system"),
        (
            "metadata.uid",
            {},
            identity.pod_uid(identity.owner_daemonset("kube-system", "agent"), "agent-abcde"),
        ),
        ("metadata.labels['app']", {}, "agent"),
        ("metadata.labels['missing']", {}, ""),
        ("metadata.annotations['note']", {}, 'say "hi"'),
        ("metadata.labels", {}, 'app="agent"\ntier="node"'),
        ("metadata.annotations", {}, 'note="say \\"hi\\""'),
        ("status.hostIP", {}, "10.0.0.5"),
        ("status.hostIPs", {"host_ips": ("10.0.0.5", "fd00::5")}, "10.0.0.5,fd00::5"),
        ("status.hostIPs", {}, "10.0.0.5"),
        ("status.podIP", {}, "172.17.0.9"),
        ("status.podIPs", {"pod_ips": ("172.17.0.9", "fd01::9")}, "172.17.0.9,fd01::9"),
        ("status.podIP", {"spec_kw": {"host_network": True}}, "10.0.0.5"),
        ("status.podIPs", {"spec_kw": {"host_network": True}}, "10.0.0.5"),
        ("spec.serviceAccountName", {"spec_kw": {"service_account_name": "agent-sa"}}, "agent-sa"),
    ],
)
def test_field_ref(path: str, kw: dict[str, Any], expected: str) -> None:
    c = container(env=(model.EnvVar("X", value_from=field(path)),))
    assert env_of(c, **kw)["X"] == expected


def test_field_ref_uses_metadata_uid_when_present() -> None:
    c = container(env=(model.EnvVar("X", value_from=field("metadata.uid")),))
    meta = model.ObjectMeta(name="p", uid="1234-uid")
    assert env_of(c, metadata=meta)["X"] == "1234-uid"


def test_field_ref_values_are_not_expanded() -> None:
    c = container(
        env=(
            model.EnvVar("A", "a"),
            model.EnvVar("X", value_from=field("metadata.annotations['v']")),
        )
    )
    meta = model.ObjectMeta(name="p", annotations={"v": "$(A)"})
    assert env_of(c, metadata=meta)["X"] == "$(A)"


def test_unsupported_field_ref_is_an_error() -> None:
    c = container(env=(model.EnvVar("X", value_from=field("spec.bogus")),))
    with pytest.raises(podconfig.PodConfigError, match=r"unsupported fieldPath: spec\.bogus"):
        env_of(c)


def resource_env(resource: str, divisor: str | None = None, **resources: Mapping[str, str]) -> str:
    reqs = model.ResourceRequirements(
        limits={k: Q(v) for k, v in resources.get("limits", {}).items()},
        requests={k: Q(v) for k, v in resources.get("requests", {}).items()},
    )
    sel = model.ResourceFieldSelector(resource=resource, divisor=Q(divisor) if divisor else None)
    c = container(
        resources=reqs, env=(model.EnvVar("X", value_from=model.EnvVarSource(resource_field_ref=sel)),)
    )
    return env_of(c)["X"]


@pytest.mark.parametrize(
    ("resource", "divisor", "resources", "expected"),
    [
        ("limits.cpu", None, {"limits": {"cpu": "500m"}}, "1"),  # rounded up
        ("limits.cpu", "1m", {"limits": {"cpu": "500m"}}, "500"),
        ("limits.cpu", "1m", {"limits": {"cpu": "2"}}, "2000"),
        ("limits.cpu", "100m", {"limits": {"cpu": "250m"}}, "3"),
        ("limits.cpu", None, {}, "4"),  # node allocatable
        ("limits.cpu", "1m", {}, "4000"),
        ("limits.memory", None, {"limits": {"memory": "64Mi"}}, str(64 * 2**20)),
        ("limits.memory", "1Mi", {"limits": {"memory": "64Mi"}}, "64"),
        ("limits.memory", "1Mi", {"limits": {"memory": "100M"}}, "96"),  # 95.37 rounded up
        ("limits.memory", "1Gi", {}, "8"),  # node allocatable
        ("requests.cpu", "1m", {"requests": {"cpu": "250m"}}, "250"),
        ("requests.cpu", "1m", {"limits": {"cpu": "300m"}}, "300"),  # request defaults to limit
        ("requests.cpu", None, {}, "0"),
        ("requests.memory", "1Ki", {"requests": {"memory": "1Mi"}}, "1024"),
        ("requests.memory", None, {}, "0"),
        ("limits.ephemeral-storage", "1Gi", {"limits": {"ephemeral-storage": "2Gi"}}, "2"),
    ],
)
def test_resource_field_ref(
    resource: str, divisor: str | None, resources: dict[str, dict[str, str]], expected: str
) -> None:
    assert resource_env(resource, divisor, **resources) == expected


def test_resource_field_ref_unsupported() -> None:
    with pytest.raises(podconfig.PodConfigError, match="Unsupported container resource"):
        resource_env("limits.gpu")


def test_resource_field_ref_other_container() -> None:
    side = container(name="side", resources=model.ResourceRequirements(limits={"memory": Q("1Gi")}))
    sel = model.ResourceFieldSelector(resource="limits.memory", container_name="side", divisor=Q("1Mi"))
    main = container(env=(model.EnvVar("X", value_from=model.EnvVarSource(resource_field_ref=sel)),))
    pod = ctx(spec(main, side))
    assert dict(podconfig.container_env(pod, main))["X"] == "1024"


# --- configMap / secret references through the lookup hook ------------------------------------

OBJECTS: dict[tuple[str, str, str], dict[str, str | bytes]] = {
    ("ConfigMap", "kube-system", "cfg"): {"LEVEL": "debug", "MODE": "fast", "bad=key": "x"},
    ("Secret", "kube-system", "sec"): {"TOKEN": b"s3cret"},
}


def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str | bytes] | None:
    return OBJECTS.get((kind, namespace, name))


def test_env_from_and_key_refs() -> None:
    c = container(
        env_from=(
            model.EnvFromSource(config_map_ref=model.LocalObjectReference("cfg")),
            model.EnvFromSource(prefix="S_", secret_ref=model.LocalObjectReference("sec")),
            model.EnvFromSource(config_map_ref=model.LocalObjectReference("gone", optional=True)),
        ),
        env=(
            model.EnvVar("MODE", "slow-$(LEVEL)"),  # env overrides envFrom and can reference it
            model.EnvVar(
                "L", value_from=model.EnvVarSource(config_map_key_ref=model.KeySelector("cfg", "LEVEL"))
            ),
            model.EnvVar(
                "T", value_from=model.EnvVarSource(secret_key_ref=model.KeySelector("sec", "TOKEN"))
            ),
            model.EnvVar(
                "OPT",
                value_from=model.EnvVarSource(config_map_key_ref=model.KeySelector("cfg", "NOPE", True)),
            ),
        ),
    )
    assert env_of(c, lookup=lookup) == {
        "LEVEL": "debug",
        "MODE": "slow-debug",
        "S_TOKEN": "s3cret",
        "L": "debug",
        "T": "s3cret",
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (model.EnvVarSource(config_map_key_ref=model.KeySelector("cfg", "NOPE")), "couldn't find key NOPE"),
        (model.EnvVarSource(config_map_key_ref=model.KeySelector("gone", "K")), 'configmap "gone" not found'),
        (model.EnvVarSource(secret_key_ref=model.KeySelector("gone", "K")), 'secret "gone" not found'),
    ],
)
def test_missing_references_fail(source: model.EnvVarSource, message: str) -> None:
    c = container(env=(model.EnvVar("X", value_from=source),))
    with pytest.raises(podconfig.PodConfigError, match=message):
        env_of(c, lookup=lookup)


def test_reference_without_lookup_is_a_clear_error() -> None:
    c = container(env_from=(model.EnvFromSource(config_map_ref=model.LocalObjectReference("cfg")),))
    with pytest.raises(podconfig.PodConfigError, match="no ConfigMap lookup"):
        env_of(c)


# --- resources --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "requests", "memory", "nano", "shares"),
    [
        ({}, {}, None, None, None),
        ({"memory": "128Mi"}, {}, 128 * 2**20, None, None),
        ({"memory": "1G"}, {}, 10**9, None, None),
        ({"cpu": "500m"}, {}, None, 500_000_000, 512),  # request defaults to the limit
        ({"cpu": "2"}, {"cpu": "100m"}, None, 2_000_000_000, 102),
        ({}, {"cpu": "1m"}, None, None, 2),  # MilliCPUToShares minimum
        # no request keeps Docker's 1024 (2 would starve the pod beside unmanaged containers); an explicit
        # 0 is no request, as for the kubelet (MilliCPUToShares(0) == MilliCPUToShares(unset) == 2)
        ({}, {"cpu": "0"}, None, None, None),
        ({"cpu": "0"}, {}, None, None, None),  # request defaults to the limit: 0, no request
        ({"cpu": "1"}, {"cpu": "0"}, None, 1_000_000_000, None),
        ({}, {"cpu": "0.25"}, None, None, 256),
        ({}, {"cpu": "1000"}, None, None, 262144),  # maximum
    ],
)
def test_resources(
    limits: dict[str, str], requests: dict[str, str], memory: int | None, nano: int | None, shares: int | None
) -> None:
    reqs = model.ResourceRequirements(
        limits={k: Q(v) for k, v in limits.items()}, requests={k: Q(v) for k, v in requests.items()}
    )
    created = build(container(resources=reqs))
    assert (created.memory_limit, created.nano_cpus, created.cpu_shares) == (memory, nano, shares)


@pytest.mark.parametrize(("milli", "shares"), [(0, 2), (1, 2), (2, 2), (3, 3), (1000, 1024), (1500, 1536)])
def test_milli_cpu_to_shares(milli: int, shares: int) -> None:
    assert podconfig.milli_cpu_to_shares(milli) == shares


def test_stop_timeout_and_stdio() -> None:
    created = build(container(stdin=True, tty=True), spec_kw={"termination_grace_period_seconds": 5})
    assert (created.stop_timeout, created.stdin_open, created.tty) == (5, True, True)


# --- identity ---------------------------------------------------------------------------------


def test_name_labels_image_and_working_dir() -> None:
    c = container(working_dir="/work")
    pod = ctx(spec(c))
    created = podconfig.build(pod, c, role=identity.ROLE_INIT, attempt=3, init_index=1)
    assert created.name == identity.container_name("kube-system", "agent-abcde", "app", 3, "node-a")
    assert created.name == "k8s_app_agent-abcde_kube-system_node-a_3"
    assert created.image == "busybox:1.36"
    assert created.working_dir == "/work"
    assert created.labels == identity.container_labels(
        owner=pod.owner,
        namespace="kube-system",
        pod="agent-abcde",
        container="app",
        spec_hash_value="v1-abcdef0123456789",
        attempt=3,
        role=identity.ROLE_INIT,
        init_index=1,
    )


# --- networking -------------------------------------------------------------------------------

PORTS = (
    model.ContainerPort(container_port=80, host_port=8080),
    model.ContainerPort(container_port=53, host_port=5353, protocol="UDP", host_ip="127.0.0.1"),
    model.ContainerPort(container_port=9090),  # no hostPort: not published
)


def test_own_network_namespace() -> None:
    created = build(container(ports=PORTS))
    assert (created.network_mode, created.ipc_mode, created.pid_mode) == ("", "", "")
    assert created.hostname == "agent-abcde"
    assert created.ports == (
        runtime.PortBinding(80, "tcp", 8080),
        runtime.PortBinding(53, "udp", 5353, "127.0.0.1"),
    )


def test_host_namespaces() -> None:
    created = build(
        container(ports=(model.ContainerPort(container_port=80, host_port=80),)),
        spec_kw={"host_network": True, "host_pid": True, "host_ipc": True},
    )
    assert (created.network_mode, created.ipc_mode, created.pid_mode) == ("host", "host", "host")
    assert created.hostname == ""
    assert created.ports == ()


def test_sandbox_namespaces() -> None:
    created = build(
        container(ports=PORTS),
        sandbox="k8s_POD_agent-abcde_kube-system",
        spec_kw={"share_process_namespace": True, "host_aliases": (("1.2.3.4", ("a",)),)},
    )
    join = "container:k8s_POD_agent-abcde_kube-system"
    assert (created.network_mode, created.ipc_mode, created.pid_mode) == (join, join, join)
    assert (created.hostname, created.ports, created.extra_hosts) == ("", (), ())


def test_hostname_from_spec_and_truncated() -> None:
    assert build(spec_kw={"hostname": "custom"}).hostname == "custom"
    long = "a" * 60 + "-.-bcdef"
    assert build(pod_name=long).hostname == "a" * 60


def test_dns_and_host_aliases() -> None:
    created = build(
        spec_kw={
            "dns_policy": "None",
            "dns_nameservers": ("1.1.1.1",),
            "dns_searches": ("svc.local",),
            "host_aliases": (("10.1.1.1", ("foo", "foo.local")), ("10.1.1.2", ("bar",))),
        }
    )
    assert created.dns == ("1.1.1.1",)
    assert created.dns_search == ("svc.local",)
    assert created.extra_hosts == ("foo:10.1.1.1", "foo.local:10.1.1.1", "bar:10.1.1.2")
    assert build(spec_kw={"dns_policy": "ClusterFirstWithHostNet"}).dns == ()  # the host's resolver


def sysctl_spec(*names: str, **kw: Any) -> dict[str, Any]:
    sc = model.PodSecurityContext(sysctls=tuple(model.Sysctl(n, "1") for n in names))
    return {"security_context": sc, **kw}


def test_sysctls() -> None:
    assert build(spec_kw=sysctl_spec("net.ipv4.ip_forward", "kernel.shmmni")).sysctls == {
        "net.ipv4.ip_forward": "1",
        "kernel.shmmni": "1",
    }
    # joined to a sandbox: namespaced sysctls belong to the sandbox
    assert build(spec_kw=sysctl_spec("net.ipv4.ip_forward", "kernel.msgmax"), sandbox="sb").sysctls == {}
    with pytest.raises(podconfig.PodConfigError, match="not allowed with host net enabled"):
        build(spec_kw=sysctl_spec("net.ipv4.ip_forward", host_network=True))
    with pytest.raises(podconfig.PodConfigError, match="not allowed with host ipc enabled"):
        build(spec_kw=sysctl_spec("kernel.shmmax", host_ipc=True))


# --- security ---------------------------------------------------------------------------------


def secure(sc: model.SecurityContext | None = None, **kw: Any) -> runtime.ContainerCreate:
    return build(container(security_context=sc), **kw)


@pytest.mark.parametrize(
    ("sc", "pod_sc", "user", "groups"),
    [
        (None, model.PodSecurityContext(), "", ()),
        (model.SecurityContext(run_as_user=1000), model.PodSecurityContext(), "1000", ()),
        (None, model.PodSecurityContext(run_as_user=1000, run_as_group=2000), "1000:2000", ()),
        (
            model.SecurityContext(run_as_user=1, run_as_group=3),
            model.PodSecurityContext(run_as_user=1000, run_as_group=2000),
            "1:3",
            (),
        ),
        (
            model.SecurityContext(run_as_user=1),
            model.PodSecurityContext(run_as_group=2000, fs_group=500, supplemental_groups=(600, 500)),
            "1:2000",
            ("500", "600"),
        ),
    ],
)
def test_user_and_groups(
    sc: model.SecurityContext | None, pod_sc: model.PodSecurityContext, user: str, groups: tuple[str, ...]
) -> None:
    created = secure(sc, spec_kw={"security_context": pod_sc})
    assert (created.user, created.group_add) == (user, groups)


def test_run_as_group_without_user_is_refused() -> None:
    with pytest.raises(podconfig.PodConfigError, match="runAsGroup is specified without a runAsUser"):
        secure(model.SecurityContext(run_as_group=5))


def test_capabilities_and_options() -> None:
    created = secure(
        model.SecurityContext(
            capabilities=model.Capabilities(add=("CAP_NET_ADMIN", "sys_time"), drop=("ALL",)),
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            seccomp_profile="Unconfined",
        )
    )
    assert created.cap_add == ("NET_ADMIN", "SYS_TIME")
    assert created.cap_drop == ("ALL",)
    assert created.read_only_rootfs is True
    assert created.security_opt == ("no-new-privileges", "seccomp=unconfined")
    assert created.privileged is False


@pytest.mark.parametrize(
    ("sc", "pod_sc", "annotations", "opts"),
    [
        (model.SecurityContext(), model.PodSecurityContext(), {}, ()),
        (model.SecurityContext(allow_privilege_escalation=True), model.PodSecurityContext(), {}, ()),
        (model.SecurityContext(seccomp_profile="RuntimeDefault"), model.PodSecurityContext(), {}, ()),
        (None, model.PodSecurityContext(seccomp_profile="Unconfined"), {}, ("seccomp=unconfined",)),
        (
            model.SecurityContext(seccomp_profile="RuntimeDefault"),
            model.PodSecurityContext(seccomp_profile="Unconfined"),
            {},
            (),
        ),
        (
            None,
            model.PodSecurityContext(),
            {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"},
            ("apparmor=unconfined",),
        ),
        (
            None,
            model.PodSecurityContext(),
            {"container.apparmor.security.beta.kubernetes.io/app": "localhost/my-profile"},
            ("apparmor=my-profile",),
        ),
        (
            None,
            model.PodSecurityContext(),
            {"container.apparmor.security.beta.kubernetes.io/other": "unconfined"},
            (),
        ),
    ],
)
def test_security_opts(
    sc: model.SecurityContext | None,
    pod_sc: model.PodSecurityContext,
    annotations: dict[str, str],
    opts: tuple[str, ...],
) -> None:
    meta = model.ObjectMeta(name="p", annotations=annotations)
    assert secure(sc, metadata=meta, spec_kw={"security_context": pod_sc}).security_opt == opts


def test_privileged_on_a_capable_host() -> None:
    created = secure(model.SecurityContext(privileged=True, capabilities=model.Capabilities(drop=("ALL",))))
    assert created.privileged is True
    assert (created.cap_add, created.cap_drop, created.devices_all) == ((), (), False)


def test_privileged_with_withheld_capabilities() -> None:
    created = secure(model.SecurityContext(privileged=True), withheld_caps=("CAP_SYS_RESOURCE",))
    assert created.privileged is False
    assert created.cap_add == ("ALL",)
    assert created.cap_drop == ("SYS_RESOURCE",)
    assert created.devices_all is True
    assert created.security_opt == ("apparmor=unconfined", "seccomp=unconfined", "systempaths=unconfined")


# --- mounts -----------------------------------------------------------------------------------

VOLUMES = (
    model.Volume("logs", model.HostPathVolumeSource("/var/log", "Directory")),
    model.Volume("scratch", model.EmptyDirVolumeSource()),
    model.Volume("mem", model.EmptyDirVolumeSource(medium="Memory", size_limit=Q("64Mi"))),
    model.Volume("mem2", model.EmptyDirVolumeSource(medium="Memory")),
    model.Volume("nfs", model.UnsupportedVolumeSource("nfs")),
)
PATHS = {"logs": "/var/log", "scratch": "/state/pods/u/volumes/scratch"}


def mounts_of(*vms: model.VolumeMount, env: tuple[model.EnvVar, ...] = ()) -> tuple[runtime.Mount, ...]:
    c = container(volume_mounts=vms, env=env)
    return build(c, volume_paths=PATHS, spec_kw={"volumes": VOLUMES}).mounts


@pytest.mark.parametrize(
    ("vm", "mount"),
    [
        (model.VolumeMount("logs", "/logs"), runtime.Mount(target="/logs", source="/var/log")),
        (
            model.VolumeMount("logs", "/logs", read_only=True, mount_propagation="HostToContainer"),
            runtime.Mount(target="/logs", source="/var/log", read_only=True, propagation="rslave"),
        ),
        (
            model.VolumeMount("logs", "/logs", mount_propagation="Bidirectional"),
            runtime.Mount(target="/logs", source="/var/log", propagation="rshared"),
        ),
        (
            model.VolumeMount("logs", "/apt", sub_path="apt/history.log"),
            runtime.Mount(target="/apt", source="/var/log/apt/history.log"),
        ),
        (
            model.VolumeMount("scratch", "/scratch"),
            runtime.Mount(target="/scratch", source="/state/pods/u/volumes/scratch"),
        ),
        (
            model.VolumeMount("mem", "/mem"),
            runtime.Mount(target="/mem", tmpfs=True, tmpfs_size=64 * 2**20),
        ),
        (
            model.VolumeMount("mem2", "/mem", read_only=True),
            runtime.Mount(target="/mem", tmpfs=True, read_only=True),
        ),
    ],
)
def test_mounts(vm: model.VolumeMount, mount: runtime.Mount) -> None:
    assert mounts_of(vm) == (mount,)


def test_sub_path_expr() -> None:
    env = (model.EnvVar("POD", value_from=field("metadata.name")),)
    got = mounts_of(model.VolumeMount("scratch", "/s", sub_path_expr="pods/$(POD)"), env=env)
    assert got == (runtime.Mount(target="/s", source="/state/pods/u/volumes/scratch/pods/agent-abcde"),)
    with pytest.raises(podconfig.PodConfigError, match="missing value for NOPE"):
        mounts_of(model.VolumeMount("scratch", "/s", sub_path_expr="$(NOPE)"))


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        (model.VolumeMount("logs", "/x", sub_path="../etc"), "relative path without"),
        (model.VolumeMount("logs", "/x", sub_path="/etc"), "relative path without"),
        (model.VolumeMount("missing", "/x"), "no volume of that name"),
        (model.VolumeMount("nfs", "/x"), "was not prepared"),
        (model.VolumeMount("mem", "/x", sub_path="a"), "subPath of a Memory emptyDir"),
    ],
)
def test_bad_mounts(vm: model.VolumeMount, message: str) -> None:
    with pytest.raises(podconfig.PodConfigError, match=message):
        mounts_of(vm)


def test_context_is_frozen() -> None:
    pod = ctx()
    with pytest.raises(dataclasses.FrozenInstanceError):
        pod.node_name = "other"  # type: ignore[misc]


# --- the pod sandbox and privileged detection ---------------------------------------------------


@pytest.mark.parametrize(
    ("containers", "inits", "spec_kw", "expected"),
    [
        (1, 0, {}, False),  # single-container pods need no extra container
        (2, 0, {}, True),
        (1, 1, {}, True),  # init containers share the pod's network too
        (2, 0, {"host_network": True}, True),  # IPC would still differ
        (2, 0, {"host_network": True, "host_ipc": True}, False),
        (2, 0, {"host_network": True, "host_ipc": True, "share_process_namespace": True}, True),
        (
            2,
            0,
            {"host_network": True, "host_ipc": True, "host_pid": True, "share_process_namespace": True},
            False,
        ),
        (1, 0, {"share_process_namespace": True}, False),
    ],
)
def test_needs_sandbox(containers: int, inits: int, spec_kw: dict[str, Any], expected: bool) -> None:
    pod_spec = model.PodSpec(
        containers=tuple(container(name=f"c{i}") for i in range(containers)),
        init_containers=tuple(container(name=f"i{i}") for i in range(inits)),
        **spec_kw,
    )
    assert podconfig.needs_sandbox(pod_spec) is expected


def test_wants_privileged() -> None:
    plain = container()
    priv = container(name="p", security_context=model.SecurityContext(privileged=True))
    assert not podconfig.wants_privileged(spec(plain))
    assert podconfig.wants_privileged(spec(plain, priv))
    assert podconfig.wants_privileged(model.PodSpec(containers=(plain,), init_containers=(priv,)))


def test_sandbox_create() -> None:
    web = container(name="web", ports=(model.ContainerPort(8080, host_port=80), model.ContainerPort(9000)))
    metrics = container(name="metrics", ports=(model.ContainerPort(9100, host_port=9100, protocol="UDP"),))
    pod_spec = spec(
        web,
        metrics,
        dns_nameservers=("1.1.1.1",),
        dns_searches=("example.com",),
        host_aliases=(("10.0.0.1", ("db",)),),
        security_context=model.PodSecurityContext(
            sysctls=(
                model.Sysctl("net.ipv4.ip_unprivileged_port_start", "0"),
                model.Sysctl("kernel.shmmax", "1000"),
                model.Sysctl("vm.swappiness", "10"),
            )
        ),
    )
    pod = ctx(pod_spec)
    created = podconfig.sandbox_create(pod, "nodeagent/pause:latest", network="podnet")
    assert (
        created.name
        == identity.sandbox_name("kube-system", "agent-abcde", "node-a")
        == "k8s_POD_agent-abcde_kube-system_node-a"
    )
    assert created.image == "nodeagent/pause:latest"
    assert created.labels[identity.LABEL_ROLE] == identity.ROLE_SANDBOX
    assert created.labels[identity.LABEL_CONTAINER_NAME] == "POD"
    assert created.labels[identity.LABEL_MANAGED] == "true"
    assert created.labels[identity.LABEL_SPEC_HASH] == pod.spec_hash
    assert created.network_mode == "podnet"
    assert created.ipc_mode == "shareable"
    assert created.pid_mode == ""
    assert created.hostname == "agent-abcde"
    assert created.ports == (
        runtime.PortBinding(8080, "tcp", 80),
        runtime.PortBinding(9100, "udp", 9100),
    )
    assert created.sysctls == {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000"}
    assert created.dns == ("1.1.1.1",)
    assert created.dns_search == ("example.com",)
    assert created.extra_hosts == ("db:10.0.0.1",)
    assert created.entrypoint is None and created.cmd is None  # the pause image's own command

    # the app containers join it: no ports, hostname or DNS of their own
    joined = podconfig.build(
        dataclasses.replace(pod, sandbox=created.name), web, role=identity.ROLE_APP, attempt=0
    )
    assert joined.network_mode == joined.ipc_mode == f"container:{created.name}"
    assert joined.ports == () and joined.hostname == "" and joined.dns == ()


def test_sandbox_of_a_host_network_pod() -> None:
    pod_spec = spec(
        container(name="a", ports=(model.ContainerPort(80, host_port=80),)),
        container(name="b"),
        host_network=True,
        host_pid=True,
        security_context=model.PodSecurityContext(sysctls=(model.Sysctl("kernel.msgmax", "1"),)),
    )
    created = podconfig.sandbox_create(ctx(pod_spec), "pause")
    assert created.network_mode == "host"
    assert created.pid_mode == "host"
    assert created.ipc_mode == "shareable"
    assert created.ports == ()
    assert created.hostname == ""
    assert created.sysctls == {"kernel.msgmax": "1"}


def test_a_pod_reading_its_pod_ip_gets_a_sandbox() -> None:
    pod_ip = model.EnvVar(
        name="POD_IP",
        value_from=model.EnvVarSource(field_ref=model.ObjectFieldSelector(field_path="status.podIP")),
    )
    one = model.PodSpec(containers=(model.Container(name="c", image="i", env=(pod_ip,)),))
    assert podconfig.needs_sandbox(one)
    assert not podconfig.needs_sandbox(dataclasses.replace(one, host_network=True))
    assert not podconfig.needs_sandbox(model.PodSpec(containers=(model.Container(name="c", image="i"),)))
