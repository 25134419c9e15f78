from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nodeagent import errors, settings
from nodeagent.k8s import model

BASE = "/etc/nodeagent"

DESIGN_EXAMPLE = """\
node:
  name: node-a                  # default: the host name
  labels: {disktype: ssd}       # kubernetes.io/hostname, kubernetes.io/os, kubernetes.io/arch are added
  taints:
    - {key: dedicated, value: gpu, effect: NoSchedule}
  unschedulable: false
sources:                        # DaemonSets (and ConfigMaps/Secrets they use), merged
  - directory: /srv/nodeagent/daemonsets
  - url: https://specs.example.com/fleet.yaml
    pollInterval: 10s
staticPodPath: /etc/nodeagent/manifests   # kind: Pod, run unconditionally on this node
stateDir: /var/lib/nodeagent
docker: {host: unix:///var/run/docker.sock}
resyncInterval: 30s
"""


def parse(raw: Any) -> settings.Settings:
    return settings.from_dict(raw, BASE, "config.yaml")


def error_of(raw: Any) -> str:
    with pytest.raises(errors.ConfigError) as info:
        parse(raw)
    return str(info.value)


# --- whole files -------------------------------------------------------------------------------


def test_design_example(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(DESIGN_EXAMPLE)
    s = settings.load(str(path))
    assert s.node == settings.NodeConfig(
        name="node-a",
        labels={"disktype": "ssd"},
        taints=(model.Taint(key="dedicated", value="gpu", effect="NoSchedule"),),
        unschedulable=False,
    )
    assert s.sources == (
        settings.DirectorySource("/srv/nodeagent/daemonsets"),
        settings.HttpSource(url="https://specs.example.com/fleet.yaml", poll_interval=10.0),
    )
    assert s.static_pod_path == "/etc/nodeagent/manifests"
    assert s.state_dir == "/var/lib/nodeagent"
    assert s.docker_host == "unix:///var/run/docker.sock"
    assert s.resync_interval == 30.0
    assert s.config_path == str(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_empty_file_gives_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    s = settings.load(str(path))
    assert s == settings.Settings(config_path=str(path))


def test_defaults() -> None:
    s = parse({})
    assert s.node == settings.NodeConfig()
    assert s.sources == ()
    assert s.static_pod_path is None
    assert s.state_dir == "/var/lib/nodeagent"
    assert s.docker_host is None
    assert s.resync_interval == 30.0
    assert s.backoff == settings.BackoffConfig(initial=10.0, max=300.0, reset_after=600.0)
    assert s.images_dir is None
    assert s.status_server is None
    assert s.healthz == settings.HealthzConfig(address="127.0.0.1:10258", enabled=True)
    assert (s.healthz.host, s.healthz.port) == ("127.0.0.1", 10258)
    assert (s.serialize_image_pulls, s.max_parallel_image_pulls, s.image_pull_deadline) == (False, 5, 300.0)
    assert s.config_path is None


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(errors.ConfigError, match=rf"^{path}: cannot read: No such file"):
        settings.load(str(path))


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("node:\n  name: [unclosed\n")
    with pytest.raises(errors.ConfigError, match=rf"^{path}: invalid YAML: line \d+, column \d+"):
        settings.load(str(path))


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("stateDir: /a\nstateDir: /b\n")
    with pytest.raises(errors.ConfigError, match='duplicate key "stateDir"'):
        settings.load(str(path))


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  - &h {url: 'http://a/', pollInterval: 5s}\n  - {<<: *h, url: 'http://b/'}\n")
    s = settings.load(str(path))
    assert s.sources == (
        settings.HttpSource(url="http://a/", poll_interval=5.0),
        settings.HttpSource(url="http://b/", poll_interval=5.0),
    )


def test_error_message_names_file_and_key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("config.yaml").write_text("sources:\n  - directory: /x\n  - url: http://a/\n    pollInterval: ten\n")
    with pytest.raises(errors.ConfigError) as info:
        settings.load("config.yaml")
    assert str(info.value) == 'config.yaml: sources[1].pollInterval: invalid duration "ten"'


def test_top_level_must_be_a_mapping() -> None:
    assert error_of(["a"]) == "config.yaml: must be a mapping, got a list"


# --- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"node": {"lables": {}}}, 'config.yaml: node.lables: unknown key (did you mean "labels"?)'),
        ({"stateDirectory": "/x"}, 'config.yaml: stateDirectory: unknown key (did you mean "stateDir"?)'),
        ({"zzz": 1}, "config.yaml: zzz: unknown key"),
        ({"docker": {"socket": "x"}}, "config.yaml: docker.socket: unknown key"),
        (
            {"node": {"taints": [{"key": "a", "effect": "NoSchedule", "timeAdded": "x"}]}},
            "config.yaml: node.taints[0].timeAdded: unknown key",
        ),
        (
            {"sources": [{"directory": "/x", "pollInterval": "5s"}]},
            "config.yaml: sources[0].pollInterval: unknown key",
        ),
        (
            {"sources": [{"url": "http://a/", "pollinterval": "5s"}]},
            'config.yaml: sources[0].pollinterval: unknown key (did you mean "pollInterval"?)',
        ),
        ({"backoff": {"maximum": "1m"}}, 'config.yaml: backoff.maximum: unknown key (did you mean "max"?)'),
        ({"healthz": {"port": 1}}, "config.yaml: healthz.port: unknown key"),
    ],
)
def test_unknown_keys(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("0", 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        (" 10s ", 10.0),
        ("-1s", -1.0),
        (15, 15.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert settings.parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["ten", "", "s", "10x", "1m30", "1 m", "10S", "1e3s", "..s", "nan", "inf", True, None, [1], {}]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        settings.parse_duration(value)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_parse_duration_rejects_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        settings.parse_duration(value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"resyncInterval": "soon"}, 'config.yaml: resyncInterval: invalid duration "soon"'),
        ({"resyncInterval": "0s"}, 'config.yaml: resyncInterval: must be a positive duration, got "0s"'),
        ({"resyncInterval": -5}, "config.yaml: resyncInterval: must be a positive duration, got -5"),
        ({"resyncInterval": True}, "config.yaml: resyncInterval: invalid duration true"),
        (
            {"backoff": {"initial": "1m", "max": "30s"}},
            "config.yaml: backoff.max: must not be less than backoff.initial",
        ),
        ({"backoff": {"resetAfter": "x"}}, 'config.yaml: backoff.resetAfter: invalid duration "x"'),
        (
            {"sources": [{"url": "http://a/", "timeout": "0"}]},
            'config.yaml: sources[0].timeout: must be a positive duration, got "0"',
        ),
    ],
)
def test_duration_errors(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


def test_durations_in_config() -> None:
    s = parse(
        {
            "resyncInterval": "1m30s",
            "backoff": {"initial": "500ms", "max": "1m", "resetAfter": 120},
            "sources": [{"url": "http://a/", "pollInterval": 5, "timeout": "2.5s"}],
        }
    )
    assert s.resync_interval == 90.0
    assert s.backoff == settings.BackoffConfig(initial=0.5, max=60.0, reset_after=120.0)
    assert s.sources == (settings.HttpSource(url="http://a/", poll_interval=5.0, timeout=2.5),)


def test_backoff_max_defaults_to_at_least_initial() -> None:
    assert parse({"backoff": {"initial": "10m"}}).backoff.max == 600.0


# --- paths -------------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = conf_dir / "config.yaml"
    path.write_text(
        "sources:\n"
        "  - directory: daemonsets\n"
        "  - url: https://a/\n"
        "    caFile: tls/ca.pem\n"
        "    clientCert: tls/cert.pem\n"
        "    clientKey: ../secret/key.pem\n"
        "    tokenFile: ./token\n"
        "staticPodPath: manifests\n"
        "stateDir: ../state\n"
        "imagesDir: /abs/images\n"
    )
    monkeypatch.chdir(tmp_path)  # somewhere else than the config's directory
    s = settings.load("etc/config.yaml")
    assert s.sources[0] == settings.DirectorySource(str(conf_dir / "daemonsets"))
    http = s.sources[1]
    assert isinstance(http, settings.HttpSource)
    assert http.ca_file == str(conf_dir / "tls/ca.pem")
    assert http.client_cert == str(conf_dir / "tls/cert.pem")
    assert http.client_key == str(tmp_path / "secret/key.pem")
    assert http.token_file == str(conf_dir / "token")
    assert s.static_pod_path == str(conf_dir / "manifests")
    assert s.state_dir == str(tmp_path / "state")
    assert s.images_dir == "/abs/images"
    assert s.config_path == str(path)


def test_from_dict_resolves_against_base_dir() -> None:
    s = settings.from_dict({"stateDir": "state", "sources": [{"directory": "./ds/"}]}, "/opt/na", "x")
    assert s.state_dir == "/opt/na/state"
    assert s.sources == (settings.DirectorySource("/opt/na/ds"),)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"stateDir": ""}, "config.yaml: stateDir: must not be empty"),
        ({"staticPodPath": 5}, "config.yaml: staticPodPath: must be a string, got a number"),
        ({"sources": [{"directory": None}]}, "config.yaml: sources[0].directory: must be a string, got null"),
    ],
)
def test_path_errors(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


# --- sources -----------------------------------------------------------------------------------


def test_http_source_all_keys() -> None:
    s = parse(
        {
            "sources": [
                {
                    "url": "https://fleet.example.com/ds.yaml",
                    "pollInterval": "1m",
                    "timeout": "5s",
                    "caFile": "/tls/ca.pem",
                    "clientCert": "/tls/c.pem",
                    "clientKey": "/tls/k.pem",
                    "tokenFile": "/tls/token",
                    "headers": {"X-Fleet": "eu-1", "Accept": "application/yaml"},
                }
            ]
        }
    )
    assert s.sources == (
        settings.HttpSource(
            url="https://fleet.example.com/ds.yaml",
            poll_interval=60.0,
            timeout=5.0,
            ca_file="/tls/ca.pem",
            client_cert="/tls/c.pem",
            client_key="/tls/k.pem",
            token_file="/tls/token",
            headers={"X-Fleet": "eu-1", "Accept": "application/yaml"},
        ),
    )


def test_http_source_defaults() -> None:
    (src,) = parse({"sources": [{"url": "http://a/"}]}).sources
    assert src == settings.HttpSource(url="http://a/", poll_interval=10.0, timeout=10.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sources": {"directory": "/x"}}, "config.yaml: sources: must be a list, got a mapping"),
        (
            {"sources": ["/x"]},
            "config.yaml: sources[0]: must be a mapping with directory or url, got a string",
        ),
        ({"sources": [{}]}, "config.yaml: sources[0]: exactly one of directory or url is required"),
        (
            {"sources": [{"directory": "/x"}, {"directory": "/y", "url": "http://a/"}]},
            "config.yaml: sources[1]: exactly one of directory or url is required",
        ),
        (
            {"sources": [{"url": "ftp://a/x"}]},
            'config.yaml: sources[0].url: must be a URL with scheme http or https, got "ftp://a/x"',
        ),
        ({"sources": [{"url": "http:///x"}]}, 'config.yaml: sources[0].url: URL has no host: "http:///x"'),
        (
            {"sources": [{"url": "specs.example.com"}]},
            "config.yaml: sources[0].url: must be a URL with scheme",
        ),
        (
            {"sources": [{"url": "http://a/", "clientKey": "/k"}]},
            "config.yaml: sources[0].clientKey: requires clientCert",
        ),
        (
            {"sources": [{"url": "http://a/", "headers": {"Bad Header": "x"}}]},
            'config.yaml: sources[0].headers[Bad Header]: invalid header name "Bad Header"',
        ),
        (
            {"sources": [{"url": "http://a/", "headers": {"X-N": 5}}]},
            "config.yaml: sources[0].headers[X-N]: must be a string, got a number",
        ),
        (
            {"sources": [{"url": "http://a/", "headers": ["x"]}]},
            "config.yaml: sources[0].headers: must be a mapping",
        ),
    ],
)
def test_source_errors(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw).startswith(message)


def test_empty_sources_list_is_allowed() -> None:
    assert parse({"sources": []}).sources == ()


# --- node --------------------------------------------------------------------------------------


def test_node_section() -> None:
    s = parse(
        {
            "node": {
                "name": "Edge-01.Example.com",
                "labels": {"disktype": "ssd", "example.com/rack": "r1", "empty": ""},
                "taints": [
                    {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                    {"key": "example.com/maintenance", "effect": "NoExecute"},
                    {"key": "dedicated", "value": "gpu", "effect": "PreferNoSchedule"},
                ],
                "unschedulable": True,
            }
        }
    )
    assert s.node == settings.NodeConfig(
        name="edge-01.example.com",  # lowercased, as the kubelet does with --hostname-override
        labels={"disktype": "ssd", "example.com/rack": "r1", "empty": ""},
        taints=(
            model.Taint("dedicated", "NoSchedule", "gpu"),
            model.Taint("example.com/maintenance", "NoExecute", ""),
            model.Taint("dedicated", "PreferNoSchedule", "gpu"),
        ),
        unschedulable=True,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"node": []}, "config.yaml: node: must be a mapping, got a list"),
        (
            {"node": {"name": "node_a"}},
            'config.yaml: node.name: invalid node name "node_a": a lowercase RFC 1123',
        ),
        ({"node": {"name": ""}}, "config.yaml: node.name: must not be empty"),
        (
            {"node": {"unschedulable": "yes"}},
            'config.yaml: node.unschedulable: must be true or false, got "yes"',
        ),
        ({"node": {"labels": ["a"]}}, "config.yaml: node.labels: must be a mapping, got a list"),
        (
            {"node": {"labels": {"gpu": True}}},
            "config.yaml: node.labels[gpu]: must be a string, got a boolean",
        ),
        (
            {"node": {"labels": {"bad key": "x"}}},
            'config.yaml: node.labels[bad key]: invalid label key "bad key": name part must consist of',
        ),
        (
            {"node": {"labels": {"Example.com/a": "x"}}},
            'config.yaml: node.labels[Example.com/a]: invalid label key "Example.com/a": prefix part',
        ),
        (
            {"node": {"labels": {"a": "-x"}}},
            'config.yaml: node.labels[a]: invalid label value "-x": a valid label must be an empty string or',
        ),
        (
            {"node": {"labels": {"a": "x" * 64}}},
            "config.yaml: node.labels[a]: invalid label value",
        ),
        ({"node": {"taints": {"key": "a"}}}, "config.yaml: node.taints: must be a list, got a mapping"),
        (
            {"node": {"taints": ["a:NoSchedule"]}},
            "config.yaml: node.taints[0]: must be a mapping, got a string",
        ),
        ({"node": {"taints": [{"effect": "NoSchedule"}]}}, "config.yaml: node.taints[0].key: required"),
        (
            {"node": {"taints": [{"key": "a"}]}},
            "config.yaml: node.taints[0].effect: required (one of NoSchedule, PreferNoSchedule, NoExecute)",
        ),
        (
            {"node": {"taints": [{"key": "a", "effect": "NoEvict"}]}},
            'config.yaml: node.taints[0].effect: unsupported value "NoEvict": must be one of NoSchedule, '
            "PreferNoSchedule, NoExecute",
        ),
        (
            {"node": {"taints": [{"key": "a", "effect": "noschedule"}]}},
            'config.yaml: node.taints[0].effect: unsupported value "noschedule"',
        ),
        (
            {"node": {"taints": [{"key": "-a", "effect": "NoSchedule"}]}},
            'config.yaml: node.taints[0].key: invalid taint key "-a"',
        ),
        (
            {"node": {"taints": [{"key": "a", "value": "x y", "effect": "NoSchedule"}]}},
            'config.yaml: node.taints[0].value: invalid taint value "x y"',
        ),
        (
            {"node": {"taints": [{"key": "a", "value": 1, "effect": "NoSchedule"}]}},
            "config.yaml: node.taints[0].value: must be a string, got a number",
        ),
        (
            {
                "node": {
                    "taints": [
                        {"key": "a", "value": "1", "effect": "NoSchedule"},
                        {"key": "a", "value": "2", "effect": "NoSchedule"},
                    ]
                }
            },
            "config.yaml: node.taints[1]: duplicate taint a:NoSchedule: taints must be unique by key and "
            "effect",
        ),
    ],
)
def test_node_errors(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw).startswith(message)


def test_null_values_mean_defaults() -> None:
    s = parse({"node": {"name": None, "labels": None, "taints": None}, "sources": None, "stateDir": None})
    assert s.node == settings.NodeConfig()
    assert s.sources == ()
    assert s.state_dir == "/var/lib/nodeagent"


# --- image pulls ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "serialize", "limit", "deadline"),
    [
        ({}, False, 5, 300.0),
        ({"maxParallelImagePulls": 2, "imagePullDeadline": "90s"}, False, 2, 90.0),
        ({"maxParallelImagePulls": None}, False, None, 300.0),  # null: unbounded, as the kubelet's nil
        ({"serializeImagePulls": True}, True, 1, 300.0),
        ({"serializeImagePulls": True, "maxParallelImagePulls": 1}, True, 1, 300.0),
        ({"serializeImagePulls": False, "imagePullDeadline": 3}, False, 5, 3.0),
    ],
)
def test_image_pull_keys(raw: dict[str, Any], serialize: bool, limit: int | None, deadline: float) -> None:
    s = parse(raw)
    assert (s.serialize_image_pulls, s.max_parallel_image_pulls, s.image_pull_deadline) == (
        serialize,
        limit,
        deadline,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"serializeImagePulls": True, "maxParallelImagePulls": 3},
            "config.yaml: maxParallelImagePulls: cannot be larger than 1 (or null) unless "
            "serializeImagePulls is false",
        ),
        (
            {"serializeImagePulls": True, "maxParallelImagePulls": None},
            "config.yaml: maxParallelImagePulls: cannot be larger than 1 (or null) unless "
            "serializeImagePulls is false",
        ),
        (
            {"maxParallelImagePulls": 0},
            "config.yaml: maxParallelImagePulls: must be a positive number, got 0",
        ),
        (
            {"maxParallelImagePulls": "5"},
            'config.yaml: maxParallelImagePulls: must be a whole number, got "5"',
        ),
        (
            {"maxParallelImagePulls": 2.5},
            "config.yaml: maxParallelImagePulls: must be a whole number, got 2.5",
        ),
        (
            {"maxParallelImagePulls": True},
            "config.yaml: maxParallelImagePulls: must be a whole number, got true",
        ),
        (
            {"serializeImagePulls": "yes"},
            'config.yaml: serializeImagePulls: must be true or false, got "yes"',
        ),
        (
            {"imagePullDeadline": "0s"},
            'config.yaml: imagePullDeadline: must be a positive duration, got "0s"',
        ),
        ({"imagePullDeadline": "soon"}, 'config.yaml: imagePullDeadline: invalid duration "soon"'),
        (
            {"imagePullDeadlin": "1m"},
            'config.yaml: imagePullDeadlin: unknown key (did you mean "imagePullDeadline"?)',
        ),
    ],
)
def test_image_pull_key_errors(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


# --- docker, statusServer, healthz -------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "unix:///var/run/docker.sock",
        "tcp://10.0.0.1:2376",
        "ssh://admin@host",
        "npipe:////./pipe/docker_engine",
    ],
)
def test_docker_host(host: str) -> None:
    assert parse({"docker": {"host": host}}).docker_host == host


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("/var/run/docker.sock", "config.yaml: docker.host: must be a URL with scheme unix or tcp or ssh"),
        ("tcp://", 'config.yaml: docker.host: URL has no host: "tcp://"'),
        ("", "config.yaml: docker.host: must not be empty"),
    ],
)
def test_docker_host_errors(host: str, message: str) -> None:
    assert error_of({"docker": {"host": host}}).startswith(message)


def test_status_server_and_images_dir() -> None:
    s = parse({"statusServer": "https://fleet.example.com/status", "imagesDir": "images"})
    assert s.status_server == "https://fleet.example.com/status"
    assert s.images_dir == "/etc/nodeagent/images"


def test_status_server_must_be_http() -> None:
    assert error_of({"statusServer": "fleet:80"}).startswith("config.yaml: statusServer: must be a URL")


@pytest.mark.parametrize(
    ("raw", "host", "port", "enabled"),
    [
        ({}, "127.0.0.1", 10258, True),
        ({"address": "0.0.0.0:9000"}, "0.0.0.0", 9000, True),
        ({"address": ":8080", "enabled": False}, "", 8080, False),
        ({"address": "[::1]:10258"}, "::1", 10258, True),
    ],
)
def test_healthz(raw: dict[str, Any], host: str, port: int, enabled: bool) -> None:
    h = parse({"healthz": raw}).healthz
    assert (h.host, h.port, h.enabled) == (host, port, enabled)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"address": "localhost"}, "config.yaml: healthz.address: must be host:port"),
        ({"address": "localhost:http"}, "config.yaml: healthz.address: must be host:port"),
        ({"address": "localhost:70000"}, "config.yaml: healthz.address: must be host:port"),
        ({"address": "::1:80"}, "config.yaml: healthz.address: an IPv6 address must be in brackets"),
        ({"enabled": "no"}, 'config.yaml: healthz.enabled: must be true or false, got "no"'),
    ],
)
def test_healthz_errors(raw: dict[str, Any], message: str) -> None:
    assert error_of({"healthz": raw}).startswith(message)


# --- default path ------------------------------------------------------------------------------


def test_default_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODEAGENT_CONFIG", raising=False)
    assert settings.default_config_path() == "/etc/nodeagent/config.yaml"
    monkeypatch.setenv("NODEAGENT_CONFIG", "/tmp/na.yaml")
    assert settings.default_config_path() == "/tmp/na.yaml"
    monkeypatch.setenv("NODEAGENT_CONFIG", "")
    assert settings.default_config_path() == "/etc/nodeagent/config.yaml"


def test_settings_are_frozen() -> None:
    s = parse({})
    with pytest.raises(AttributeError):
        s.state_dir = "/x"  # type: ignore[misc]
