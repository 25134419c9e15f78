"""The node this agent runs on: its name, labels and taints, as the DaemonSet controller sees a v1.Node.

The agent has no API server to read a Node object from, so it builds one from its config and the host,
the way the kubelet registers itself: the name defaults to the lowercased host name, the well-known
`kubernetes.io/{hostname,os,arch}` labels are filled in, and a cordoned (unschedulable) node carries the
`node.kubernetes.io/unschedulable:NoSchedule` taint that Kubernetes' node lifecycle controller adds.
Label-syntax checks are here too (node labels and taint keys must obey them): `validation`'s, worded
without its examples.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nodeagent.k8s import model, validation

# Well-known labels the kubelet sets on its Node (k8s.io/api/core/v1 well_known_labels.go).
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_OS = "kubernetes.io/os"
LABEL_ARCH = "kubernetes.io/arch"

# Well-known taint keys (k8s.io/api/core/v1 well_known_taints.go).
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# platform.machine() spellings -> Go's GOARCH, which is what kubernetes.io/arch carries.
_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "aarch64_be": "arm64be",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
    "mips64el": "mips64le",
    "loongarch64": "loong64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
}

# sys.platform prefixes -> Go's GOOS (kubernetes.io/os).
_GO_OS = (("linux", "linux"), ("win32", "windows"), ("cygwin", "windows"), ("darwin", "darwin"))


@dataclass(frozen=True)
class Node:
    """What scheduling decisions are made against: the v1.Node fields the DaemonSet controller reads."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[model.Taint, ...] = ()
    unschedulable: bool = False

    def to_json(self) -> dict[str, Any]:
        """The `node` object of `plan -o json` (ARCHITECTURE.md §5, README "CLI reference")."""
        return {
            "name": self.name,
            "labels": dict(sorted(self.labels.items())),
            "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in self.taints],
        }


def go_arch(machine: str) -> str:
    """platform.machine() as Go's GOARCH name (`x86_64` -> `amd64`), the value of kubernetes.io/arch."""
    m = machine.strip().lower()
    if m in _GO_ARCH:
        return _GO_ARCH[m]
    if m.startswith("arm"):  # armv6l, armv7l, armv8l (32-bit userland)
        return "arm"
    return m


def go_os(sys_platform: str) -> str:
    """sys.platform as Go's GOOS name, the value of kubernetes.io/os."""
    for prefix, goos in _GO_OS:
        if sys_platform.startswith(prefix):
            return goos
    return sys_platform


def host_name() -> str:
    """The kernel host name, trimmed and lowercased as the kubelet's GetHostname does."""
    return socket.gethostname().strip().lower()


def normalize_name(name: str) -> str:
    """A configured node name as the kubelet treats --hostname-override: trimmed and lowercased."""
    return name.strip().lower()


def unschedulable_taint() -> model.Taint:
    """The taint the node lifecycle controller puts on a cordoned node (doNoScheduleTaintingPass)."""
    return model.Taint(key=TAINT_UNSCHEDULABLE, effect="NoSchedule")


def build(
    name: str | None,
    labels: Mapping[str, str],
    taints: tuple[model.Taint, ...] | list[model.Taint],
    unschedulable: bool,
) -> Node:
    """The Node for this host: config values plus what the kubelet and node controller would add.

    Labels set in the config win over the well-known defaults. A cordoned node gets the unschedulable
    taint unless the config already lists one with that key and effect (taints are unique by key:effect).
    """
    node_name = normalize_name(name) if name else host_name()
    full_labels = {
        LABEL_HOSTNAME: node_name,
        LABEL_OS: go_os(sys.platform),
        LABEL_ARCH: go_arch(platform.machine()),
    }
    full_labels.update(labels)
    all_taints = tuple(taints)
    if unschedulable:
        cordon = unschedulable_taint()
        if not any(t.key == cordon.key and t.effect == cordon.effect for t in all_taints):
            all_taints += (cordon,)
    return Node(name=node_name, labels=full_labels, taints=all_taints, unschedulable=unschedulable)


class Config(Protocol):
    """The `node:` section of the settings (settings.NodeConfig), as far as building the Node goes."""

    @property
    def name(self) -> str | None: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def taints(self) -> tuple[model.Taint, ...]: ...
    @property
    def unschedulable(self) -> bool: ...


def from_config(conf: Config) -> Node:
    """The Node as configured (the agent's, and the CLI's): the one place settings become a Node."""
    return build(conf.name, conf.labels, conf.taints, conf.unschedulable)


# --- host facts the kubelet reports in the Node's status ------------------------------------------


def host_ip() -> str:
    """This host's primary address as the kubelet reports `status.hostIP` (no packets are sent)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    for info in infos:
        addr = str(info[4][0])
        if not addr.startswith("127."):
            return addr
    return "127.0.0.1"


def allocatable() -> tuple[int, int]:
    """(CPU in millicores, memory in bytes) of this host: `status.allocatable`, which the downward API's
    resourceFieldRef falls back to for a container without limits; memory 0 when unknown."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return (os.cpu_count() or 1) * 1000, memory


# --- label syntax (k8s.io/apimachinery/pkg/util/validation) ----------------------------------------


def _first(errors: list[str]) -> str | None:
    return errors[0] if errors else None


def dns1123_subdomain_error(value: str) -> str | None:
    """Why `value` is not a lowercase RFC 1123 subdomain (the syntax of node names), or None."""
    return _first(validation.dns1123_subdomain(value, hint=False))


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label key / taint key (a qualified name: `[prefix/]name`), or None."""
    return _first(validation.qualified_name(key, hint=False))


def label_value_error(value: str) -> str | None:
    """Why `value` is not a valid label value (or taint value), or None; the empty string is valid."""
    return _first(validation.label_value(value, hint=False))
