from __future__ import annotations

import platform
import socket
import sys

import pytest

from nodeagent.k8s import model, node


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: " Worker-7.Example.COM \n")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(sys, "platform", "linux")


def test_name_defaults_to_lowercased_trimmed_host_name() -> None:
    n = node.build(None, {}, (), False)
    assert n.name == "worker-7.example.com"
    assert n.labels[node.LABEL_HOSTNAME] == "worker-7.example.com"


@pytest.mark.parametrize("name", [None, ""])
def test_missing_or_empty_name_uses_host_name(name: str | None) -> None:
    assert node.build(name, {}, (), False).name == "worker-7.example.com"


def test_configured_name_is_normalized_like_hostname_override() -> None:
    n = node.build("  Node-A ", {}, (), False)
    assert n.name == "node-a"
    assert n.labels[node.LABEL_HOSTNAME] == "node-a"


def test_well_known_labels_are_added() -> None:
    n = node.build("node-a", {"disktype": "ssd"}, (), False)
    assert dict(n.labels) == {
        "disktype": "ssd",
        "kubernetes.io/hostname": "node-a",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }


def test_config_labels_override_well_known_ones() -> None:
    labels = {"kubernetes.io/hostname": "alias", "kubernetes.io/arch": "arm64", "kubernetes.io/os": "x"}
    n = node.build("node-a", labels, (), False)
    assert n.labels["kubernetes.io/hostname"] == "alias"
    assert n.labels["kubernetes.io/arch"] == "arm64"
    assert n.labels["kubernetes.io/os"] == "x"
    assert n.name == "node-a"


@pytest.mark.parametrize(
    ("machine", "goarch"),
    [
        ("x86_64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("armv7l", "arm"),
        ("armv6l", "arm"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("riscv64", "riscv64"),
        ("i686", "386"),
        ("loongarch64", "loong64"),
        ("sparc64", "sparc64"),  # unknown: passed through, lowercased
    ],
)
def test_go_arch(machine: str, goarch: str) -> None:
    assert node.go_arch(machine) == goarch


def test_arch_label_comes_from_platform_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert node.build("n", {}, (), False).labels["kubernetes.io/arch"] == "arm64"


@pytest.mark.parametrize(
    ("plat", "goos"),
    [("linux", "linux"), ("darwin", "darwin"), ("win32", "windows"), ("freebsd14", "freebsd14")],
)
def test_go_os(plat: str, goos: str) -> None:
    assert node.go_os(plat) == goos


def test_taints_are_kept_in_order() -> None:
    taints = (model.Taint("b", "NoExecute"), model.Taint("a", "NoSchedule", "x"))
    assert node.build("n", {}, taints, False).taints == taints


def test_unschedulable_adds_the_node_controller_taint() -> None:
    n = node.build("n", {}, (model.Taint("dedicated", "NoSchedule", "gpu"),), True)
    assert n.unschedulable
    assert n.taints == (
        model.Taint("dedicated", "NoSchedule", "gpu"),
        model.Taint("node.kubernetes.io/unschedulable", "NoSchedule", ""),
    )


def test_unschedulable_taint_not_duplicated_when_configured() -> None:
    configured = model.Taint("node.kubernetes.io/unschedulable", "NoSchedule", "")
    n = node.build("n", {}, [configured], True)
    assert n.taints == (configured,)


def test_unschedulable_false_adds_nothing() -> None:
    assert node.build("n", {}, (), False).taints == ()


def test_to_json() -> None:
    n = node.build("node-a", {"b": "2", "a": "1"}, (model.Taint("dedicated", "NoSchedule", "gpu"),), True)
    assert n.to_json() == {
        "name": "node-a",
        "labels": {
            "a": "1",
            "b": "2",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": "node-a",
            "kubernetes.io/os": "linux",
        },
        "taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unschedulable", "value": "", "effect": "NoSchedule"},
        ],
    }
    assert list(n.to_json()["labels"]) == sorted(n.to_json()["labels"])


def test_node_is_frozen() -> None:
    n = node.build("n", {}, (), False)
    with pytest.raises(AttributeError):
        n.name = "other"  # type: ignore[misc]


# --- label syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "disktype",
        "A_b.c-D",
        "kubernetes.io/hostname",
        "example.com/My.Key",
        "a" * 63,
        "x" * 63 + "/" + "n",
        "sub.example.com/" + "a" * 63,
    ],
)
def test_valid_label_keys(key: str) -> None:
    assert node.label_key_error(key) is None


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "name part must be non-empty"),
        ("-a", "name part must consist of"),
        ("a-", "name part must consist of"),
        ("a b", "name part must consist of"),
        ("a" * 64, "no more than 63"),
        ("/a", "prefix part must be non-empty"),
        ("example.com/", "name part must be non-empty"),
        ("Example.com/a", "prefix part a lowercase RFC 1123 subdomain"),
        ("a/b/c", "a qualified name"),
        ("x" * 254 + "/a", "prefix part must be no more than 253"),
    ],
)
def test_invalid_label_keys(key: str, fragment: str) -> None:
    err = node.label_key_error(key)
    assert err is not None
    assert fragment in err


@pytest.mark.parametrize("value", ["", "a", "ssd", "1.2_3-x", "A" * 63])
def test_valid_label_values(value: str) -> None:
    assert node.label_value_error(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a" * 64, "no more than 63"),
        ("-a", "empty string or consist"),
        ("a/b", "empty string"),
        ("a ", "empty"),
    ],
)
def test_invalid_label_values(value: str, fragment: str) -> None:
    err = node.label_value_error(value)
    assert err is not None
    assert fragment in err


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("node-a", True),
        ("a.b.c", True),
        ("0", True),
        ("Node", False),
        ("a_b", False),
        ("-a", False),
        ("a..b", False),
    ],
)
def test_dns1123_subdomain(name: str, ok: bool) -> None:
    assert (node.dns1123_subdomain_error(name) is None) is ok
