"""The agent's own config (ARCHITECTURE.md §5): YAML in, checked frozen dataclasses out.

Everything is validated up front so a typo stops the agent at start (exit 2) or keeps the old config on
SIGHUP, instead of surfacing later as a silently ignored setting: unknown keys are errors, durations and
URLs are parsed here, node labels and taints are checked with Kubernetes' own syntax rules, and relative
paths are resolved against the config file's directory so the agent's working directory never matters.
Every error names the file and the key path: `config.yaml: sources[1].pollInterval: invalid duration "ten"`.

Over 600 lines on purpose: it is one concept, the config schema, and the README's configuration reference
maps onto it key by key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import yaml

from nodeagent import errors
from nodeagent.k8s import model, node, policy

ENV_CONFIG = "NODEAGENT_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/nodeagent/config.yaml"
DEFAULT_STATE_DIR = "/var/lib/nodeagent"

T = TypeVar("T")


def default_config_path() -> str:
    """Where the config is read from when --config is not given: $NODEAGENT_CONFIG, else /etc/nodeagent."""
    return os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH


# --- the settings -----------------------------------------------------------------------------


MIN_RESYNC = 1.0  # seconds; resyncInterval below this is a config error


@dataclass(frozen=True)
class NodeConfig:
    """`node:` — what the agent says about this node; node.build() adds the well-known labels."""

    name: str | None = None  # None: the host name
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[model.Taint, ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True)
class DirectorySource:
    """A directory of manifests, watched and relisted."""

    directory: str
    policy: policy.Policy = policy.DEFAULT  # `policy` and `allowedHostPaths`


@dataclass(frozen=True)
class HttpSource:
    """A URL serving manifests, polled with ETag; TLS and auth options for fleets behind HTTPS.

    `url` is the first of `urls`: config `url:` may list replicas of the same source (several `serve`s
    sharing their state); the source uses one and moves to the next on connection errors.
    """

    url: str
    urls: tuple[str, ...] = ()  # every replica, `url` first; empty: just `url`
    poll_interval: float = 10.0
    timeout: float = 10.0
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    token_file: str | None = None  # sent as `Authorization: Bearer <contents>`, re-read on each poll
    headers: Mapping[str, str] = field(default_factory=dict)
    policy: policy.Policy = policy.DEFAULT  # `policy` and `allowedHostPaths`
    public_key_file: str | None = None  # a minisign public key: the bundle must carry its signature

    @property
    def replicas(self) -> tuple[str, ...]:
        return self.urls or (self.url,)


SourceConfig = DirectorySource | HttpSource


@dataclass(frozen=True)
class BackoffConfig:
    """Container restart back-off, the kubelet's CrashLoopBackOff: initial, doubling to max, reset."""

    initial: float = 10.0
    max: float = 300.0
    reset_after: float = 600.0  # a container that ran this long restarts without delay


@dataclass(frozen=True)
class HealthzConfig:
    """The local health endpoint (for systemd watchdogs and probes); port 10258 is unused by Kubernetes."""

    address: str = "127.0.0.1:10258"
    enabled: bool = True

    @property
    def host(self) -> str:
        return _split_host_port(self.address)[0]

    @property
    def port(self) -> int:
        return _split_host_port(self.address)[1]


@dataclass(frozen=True)
class Settings:
    """The whole agent config, with defaults for everything; `config_path` is where it came from."""

    node: NodeConfig = field(default_factory=NodeConfig)
    sources: tuple[SourceConfig, ...] = ()
    static_pod_path: str | None = None
    static_pod_policy: policy.Policy = policy.DEFAULT  # `staticPodPolicy`, `staticPodAllowedHostPaths`
    state_dir: str = DEFAULT_STATE_DIR
    docker_host: str | None = None  # None: DOCKER_HOST or the default socket
    resync_interval: float = 30.0  # at least MIN_RESYNC
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    images_dir: str | None = None  # image tarballs to `docker load` before pulling
    status_server: str | None = None  # URL that node status is reported to (`nodeagent serve`)
    status_servers: tuple[
        str, ...
    ] = ()  # config `statusServer:` as a list of replicas, `status_server` first
    healthz: HealthzConfig = field(default_factory=HealthzConfig)
    # image pulls (the kubelet's keys; unlike the kubelet, parallel by default: pulls.py says why)
    serialize_image_pulls: bool = False
    max_parallel_image_pulls: int | None = 5  # None: unbounded
    image_pull_deadline: float = 300.0  # seconds without progress before a pull is ErrImagePull
    config_path: str | None = None


# --- durations --------------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-z\u00b5\u03bc]+)")


def parse_duration(value: object) -> float:
    """Seconds from a Go duration string (`1m30s`, `500ms`, `1h`) or a plain number of seconds.

    Raises ValueError with a message suitable after the key path. Booleans are not numbers here.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {_show(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {_show(value)}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {_show(value)}")
    text = value.strip()
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if _PLAIN_NUMBER.fullmatch(text):
        return sign * float(text)  # "0", "30", "1.5": seconds, as if YAML had given a number
    if not text:
        raise ValueError(f"invalid duration {_show(value)}")
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m or m.group(1) in ("", ".") or m.group(2) not in _DURATION_UNITS:
            raise ValueError(f"invalid duration {_show(value)}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


# --- loading ----------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML would otherwise resolve silently (last wins)."""


def _construct_mapping(loader: _UniqueKeyLoader, node_: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node_.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` may legitimately be overridden by explicit keys
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {_show(key)}", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node_, deep=True))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path: str) -> Settings:
    """Read and check the config file at `path`; errors.ConfigError names the file and the key."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise errors.ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise errors.ConfigError(f"{path}: not UTF-8 text: {e}") from e
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as e:
        raise errors.ConfigError(f"{path}: invalid YAML: {_yaml_error(e)}") from e
    base_dir = os.path.dirname(os.path.abspath(path))
    return dataclasses.replace(from_dict(raw, base_dir, path), config_path=os.path.abspath(path))


def from_dict(raw: object, base_dir: str, origin: str = "config") -> Settings:
    """Check an already-parsed config (None is an empty file: all defaults); paths resolve from base_dir."""
    return _Parser(base_dir, origin).settings(raw)


def _yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def _show(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _split_host_port(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError if it is neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'must be host:port with a port from 0 to 65535, got "{address}"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'an IPv6 address must be in brackets, got "{address}"')
    return host, int(port)


_TOP_KEYS = (
    "node",
    "sources",
    "staticPodPath",
    "staticPodPolicy",
    "staticPodAllowedHostPaths",
    "stateDir",
    "docker",
    "resyncInterval",
    "backoff",
    "imagesDir",
    "statusServer",
    "healthz",
    "serializeImagePulls",
    "maxParallelImagePulls",
    "imagePullDeadline",
)
_NODE_KEYS = ("name", "labels", "taints", "unschedulable")
_TAINT_KEYS = ("key", "value", "effect")
_POLICY_KEYS = ("policy", "allowedHostPaths")
_DIRECTORY_KEYS = ("directory", *_POLICY_KEYS)
_HTTP_KEYS = (
    "url",
    "pollInterval",
    "timeout",
    "caFile",
    "clientCert",
    "clientKey",
    "tokenFile",
    "headers",
    *_POLICY_KEYS,
    "publicKeyFile",
)
_HOST_PATH_KEYS = ("pathPrefix", "readOnly")
_DOCKER_KEYS = ("host",)
_BACKOFF_KEYS = ("initial", "max", "resetAfter")
_HEALTHZ_KEYS = ("address", "enabled")
_DOCKER_SCHEMES = ("unix", "tcp", "ssh", "npipe", "http", "https")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class _Parser:
    """Walks the raw YAML once, raising ConfigError at the first problem, prefixed with file and path."""

    def __init__(self, base_dir: str, origin: str) -> None:
        self.base_dir = base_dir
        self.origin = origin

    def fail(self, path: str, message: str) -> NoReturn:
        where = f"{self.origin}: {path}: " if path else f"{self.origin}: "
        raise errors.ConfigError(where + message)

    # generic shapes

    def mapping(self, raw: object, path: str, known: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"must be a mapping, got {_type_name(raw)}")
        for key in raw:
            if not isinstance(key, str):
                self.fail(path, f"key {_show(key)} must be a string")
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suffix = f' (did you mean "{hint[0]}"?)' if hint else ""
                self.fail(_join(path, key), f"unknown key{suffix}")
        return raw

    def string(self, value: object, path: str, *, allow_empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_type_name(value)}")
        if not allow_empty and not value.strip():
            self.fail(path, "must not be empty")
        return value

    def opt(self, d: Mapping[str, Any], key: str, path: str, convert: Callable[[object, str], T]) -> T | None:
        value = d.get(key)
        return None if value is None else convert(value, _join(path, key))

    def required(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        convert: Callable[[object, str], T],
        why: str = "required",
    ) -> T:
        """`opt` for a key that must be there: a missing (or null) one fails with `why`."""
        value = d.get(key)
        if value is None:
            self.fail(_join(path, key), why)
        return convert(value, _join(path, key))

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_show(value)}")
        return value

    def at_least(self, value: float, minimum: float, path: str) -> float:
        if value < minimum:
            self.fail(path, f"must be at least {minimum:g}s (a shorter interval only burns CPU)")
        return value

    def duration(self, value: object, path: str) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            self.fail(path, str(e))
        if seconds <= 0:
            self.fail(path, f"must be a positive duration, got {_show(value)}")
        return seconds

    def path_(self, value: object, path: str) -> str:
        text = self.string(value, path)
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(text)))

    def string_map(self, value: object, path: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, got {_type_name(value)}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(path, f"key {_show(k)} must be a string")
            out[k] = self.string(v, f"{path}[{k}]", allow_empty=True)
        return out

    def url(self, value: object, path: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
        text = self.string(value, path).strip()
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            self.fail(path, f"must be a URL with scheme {' or '.join(schemes)}, got {_show(text)}")
        if parts.scheme in ("http", "https", "tcp", "ssh") and not parts.netloc:
            self.fail(path, f"URL has no host: {_show(text)}")
        return text

    def urls(self, value: object, path: str) -> tuple[str, ...]:
        """One URL, or a non-empty list of URLs (replicas of the same server), without duplicates."""
        if not isinstance(value, list):
            return (self.url(value, path),)
        if not value:
            self.fail(path, "must be a URL or a non-empty list of URLs")
        out = tuple(self.url(v, f"{path}[{i}]") for i, v in enumerate(value))
        for i, u in enumerate(out):
            if u in out[:i]:
                self.fail(f"{path}[{i}]", f"duplicate URL {_show(u)}")
        return out

    def status_servers(self, value: object) -> dict[str, Any]:
        if value is None:
            return {}
        urls = self.urls(value, "statusServer")
        return {"status_server": urls[0], "status_servers": urls if len(urls) > 1 else ()}

    # the sections

    def settings(self, raw: object) -> Settings:
        top = self.mapping(raw, "", _TOP_KEYS)
        docker = self.mapping(top.get("docker"), "docker", _DOCKER_KEYS)
        defaults = Settings()
        return Settings(
            node=self.node(top.get("node")),
            sources=self.sources(top.get("sources")),
            static_pod_path=self.opt(top, "staticPodPath", "", self.path_),
            static_pod_policy=self.policy(top, "", "staticPodPolicy", "staticPodAllowedHostPaths"),
            state_dir=self.opt(top, "stateDir", "", self.path_) or defaults.state_dir,
            docker_host=self.opt(docker, "host", "docker", lambda v, p: self.url(v, p, _DOCKER_SCHEMES)),
            resync_interval=self.at_least(
                _or(self.opt(top, "resyncInterval", "", self.duration), defaults.resync_interval),
                MIN_RESYNC,
                "resyncInterval",
            ),
            backoff=self.backoff(top.get("backoff")),
            images_dir=self.opt(top, "imagesDir", "", self.path_),
            **self.status_servers(top.get("statusServer")),
            healthz=self.healthz(top.get("healthz")),
            **self.image_pulls(top),
        )

    def image_pulls(self, top: Mapping[str, Any]) -> dict[str, Any]:
        """The kubelet's validation: maxParallelImagePulls is a positive number, and more than 1 only
        with serializeImagePulls false. Absent, it is 5 (the kubelet: unbounded); null is unbounded."""
        defaults = Settings()
        serialize = self.opt(top, "serializeImagePulls", "", self.boolean) or defaults.serialize_image_pulls
        limit: int | None = defaults.max_parallel_image_pulls
        if "maxParallelImagePulls" in top:
            limit = self.opt(top, "maxParallelImagePulls", "", self.positive_int)
            if serialize and (limit is None or limit > 1):
                self.fail(
                    "maxParallelImagePulls",
                    "cannot be larger than 1 (or null) unless serializeImagePulls is false",
                )
        elif serialize:
            limit = 1
        deadline = _or(self.opt(top, "imagePullDeadline", "", self.duration), defaults.image_pull_deadline)
        return {
            "serialize_image_pulls": serialize,
            "max_parallel_image_pulls": limit,
            "image_pull_deadline": deadline,
        }

    def positive_int(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be a whole number, got {_show(value)}")
        if value < 1:
            self.fail(path, f"must be a positive number, got {value}")
        return value

    def node(self, raw: object) -> NodeConfig:
        d = self.mapping(raw, "node", _NODE_KEYS)
        name = self.opt(d, "name", "node", self.node_name)
        labels = self.string_map(d.get("labels"), "node.labels")
        for key, value in labels.items():
            err = node.label_key_error(key)
            if err:
                self.fail(f"node.labels[{key}]", f"invalid label key {_show(key)}: {err}")
            err = node.label_value_error(value)
            if err:
                self.fail(f"node.labels[{key}]", f"invalid label value {_show(value)}: {err}")
        taints = self.taints(d.get("taints"))
        unschedulable = _or(self.opt(d, "unschedulable", "node", self.boolean), False)
        return NodeConfig(name=name, labels=labels, taints=taints, unschedulable=unschedulable)

    def node_name(self, value: object, path: str) -> str:
        name = node.normalize_name(self.string(value, path))
        err = node.dns1123_subdomain_error(name)
        if err:
            self.fail(path, f"invalid node name {_show(name)}: {err}")
        return name

    def taints(self, raw: object) -> tuple[model.Taint, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail("node.taints", f"must be a list, got {_type_name(raw)}")
        taints: list[model.Taint] = []
        for i, item in enumerate(raw):
            path = f"node.taints[{i}]"
            d = self.mapping(item, path, _TAINT_KEYS)
            key = self.required(d, "key", path, self.string)
            err = node.label_key_error(key)
            if err:
                self.fail(_join(path, "key"), f"invalid taint key {_show(key)}: {err}")
            value = _or(self.opt(d, "value", path, lambda v, p: self.string(v, p, allow_empty=True)), "")
            err = node.label_value_error(value)
            if err:
                self.fail(_join(path, "value"), f"invalid taint value {_show(value)}: {err}")
            effect = self.required(
                d, "effect", path, self.string, f"required (one of {', '.join(node.TAINT_EFFECTS)})"
            )
            if effect not in node.TAINT_EFFECTS:
                self.fail(
                    _join(path, "effect"),
                    f"unsupported value {_show(effect)}: must be one of {', '.join(node.TAINT_EFFECTS)}",
                )
            if any(t.key == key and t.effect == effect for t in taints):
                self.fail(path, f"duplicate taint {key}:{effect}: taints must be unique by key and effect")
            taints.append(model.Taint(key=key, value=value, effect=effect))
        return tuple(taints)

    def sources(self, raw: object) -> tuple[SourceConfig, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail("sources", f"must be a list, got {_type_name(raw)}")
        out: list[SourceConfig] = []
        for i, item in enumerate(raw):
            path = f"sources[{i}]"
            if not isinstance(item, dict):
                self.fail(path, f"must be a mapping with directory or url, got {_type_name(item)}")
            has_dir, has_url = "directory" in item, "url" in item
            if has_dir == has_url:
                self.fail(path, "exactly one of directory or url is required")
            out.append(self.directory_source(item, path) if has_dir else self.http_source(item, path))
        return tuple(out)

    def directory_source(self, d: dict[str, Any], path: str) -> DirectorySource:
        self.mapping(d, path, _DIRECTORY_KEYS)
        return DirectorySource(
            directory=self.path_(d["directory"], _join(path, "directory")),
            policy=self.policy(d, path, "policy", "allowedHostPaths"),
        )

    def http_source(self, d: dict[str, Any], path: str) -> HttpSource:
        self.mapping(d, path, _HTTP_KEYS)
        defaults = HttpSource(url="")
        headers = self.string_map(d.get("headers"), _join(path, "headers"))
        for name in headers:
            if not _HEADER_NAME.fullmatch(name):
                self.fail(f"{_join(path, 'headers')}[{name}]", f"invalid header name {_show(name)}")
            if any(c in headers[name] for c in "\r\n\0"):  # the value may be a credential: not shown
                self.fail(f"{_join(path, 'headers')}[{name}]", "the value must not contain CR, LF or NUL")
        client_cert = self.opt(d, "clientCert", path, self.path_)
        client_key = self.opt(d, "clientKey", path, self.path_)
        if client_key is not None and client_cert is None:
            self.fail(_join(path, "clientKey"), "requires clientCert")
        urls = self.urls(d["url"], _join(path, "url"))
        return HttpSource(
            url=urls[0],
            urls=urls if len(urls) > 1 else (),
            poll_interval=_or(self.opt(d, "pollInterval", path, self.duration), defaults.poll_interval),
            timeout=_or(self.opt(d, "timeout", path, self.duration), defaults.timeout),
            ca_file=self.opt(d, "caFile", path, self.path_),
            client_cert=client_cert,
            client_key=client_key,
            token_file=self.opt(d, "tokenFile", path, self.path_),
            headers=headers,
            policy=self.policy(d, path, "policy", "allowedHostPaths"),
            public_key_file=self.opt(d, "publicKeyFile", path, self.public_key),
        )

    def policy(self, d: Mapping[str, Any], path: str, level_key: str, paths_key: str) -> policy.Policy:
        """A Pod Security Standards level and PSP-style allowedHostPaths (nodeagent.k8s.policy)."""
        level = self.opt(d, level_key, path, self.string) or policy.PRIVILEGED
        if level not in policy.LEVELS:
            self.fail(
                _join(path, level_key),
                f"unsupported value {_show(level)}: must be one of {', '.join(policy.LEVELS)}",
            )
        raw = d.get(paths_key)
        if raw is None:
            return policy.Policy(level)
        lpath = _join(path, paths_key)
        if not isinstance(raw, list):
            self.fail(lpath, f"must be a list of {{pathPrefix, readOnly}}, got {_type_name(raw)}")
        rules = []
        for i, item in enumerate(raw):
            ipath = f"{lpath}[{i}]"
            entry = self.mapping(item, ipath, _HOST_PATH_KEYS)
            prefix = self.required(entry, "pathPrefix", ipath, self.string)
            if not prefix.startswith("/"):
                self.fail(_join(ipath, "pathPrefix"), f"must be an absolute path, got {_show(prefix)}")
            read_only = _or(self.opt(entry, "readOnly", ipath, self.boolean), False)
            rules.append(policy.HostPathRule(os.path.normpath(prefix), read_only))
        return policy.Policy(level, tuple(rules))

    def public_key(self, value: object, path: str) -> str:
        """A minisign public key file, read now so a bad key stops the agent at start (exit 2)."""
        from nodeagent.sources import signing  # lazy: cryptography is imported only when a key is configured

        key_path = self.path_(value, path)
        try:
            signing.load_public_key(key_path)
        except errors.ConfigError as exc:
            self.fail(path, str(exc))
        return key_path

    def backoff(self, raw: object) -> BackoffConfig:
        d = self.mapping(raw, "backoff", _BACKOFF_KEYS)
        defaults = BackoffConfig()
        initial = _or(self.opt(d, "initial", "backoff", self.duration), defaults.initial)
        maximum = _or(self.opt(d, "max", "backoff", self.duration), max(defaults.max, initial))
        if maximum < initial:
            self.fail("backoff.max", "must not be less than backoff.initial")
        reset_after = _or(self.opt(d, "resetAfter", "backoff", self.duration), defaults.reset_after)
        return BackoffConfig(initial=initial, max=maximum, reset_after=reset_after)

    def healthz(self, raw: object) -> HealthzConfig:
        d = self.mapping(raw, "healthz", _HEALTHZ_KEYS)
        defaults = HealthzConfig()
        address = _or(self.opt(d, "address", "healthz", self.string), defaults.address)
        try:
            _split_host_port(address)
        except ValueError as e:
            self.fail("healthz.address", str(e))
        enabled = _or(self.opt(d, "enabled", "healthz", self.boolean), defaults.enabled)
        return HealthzConfig(address=address, enabled=enabled)


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
