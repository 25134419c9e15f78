"""What every command shares: exit codes, the Docker runtime, the one-shot agent, argument shapes, and
requests to a `nodeagent serve`.

Exit codes: 0 ok, 1 a check or an action failed, 2 usage or config error.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import structlog

from nodeagent import errors, settings
from nodeagent import runtime as rt
from nodeagent.agent import agent as agent_mod
from nodeagent.k8s import node
from nodeagent.sources import http

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = structlog.get_logger(__name__)


def docker_runtime(cfg: settings.Settings) -> rt.ContainerRuntime:
    """The Docker runtime, not yet asked whether the engine answers."""
    # lazy: only this import loads the docker package, which `validate`, `sign` and `serve` never need
    from nodeagent.runtime import docker as docker_rt

    return docker_rt.DockerRuntime(
        cfg.docker_host, node_name=node_name(cfg), pull_idle_timeout=cfg.image_pull_deadline
    )


def runtime(cfg: settings.Settings) -> rt.ContainerRuntime | None:
    """The Docker runtime, or None (with a log line) when no engine answers."""
    found = docker_runtime(cfg)
    try:
        if found.ping():
            return found
    except errors.NodeAgentError:
        pass
    log.warning("docker_unavailable", host=cfg.docker_host or os.environ.get("DOCKER_HOST", "default socket"))
    return None


def node_name(cfg: settings.Settings) -> str:
    return node.from_config(cfg.node).name


def one_shot_agent(cfg: settings.Settings) -> agent_mod.Agent:
    """An agent for one command: no watches, its view of the engine listed once."""
    a = agent_mod.Agent(cfg, runtime(cfg), watch=False)
    a.relist()
    return a


def ns_name(text: str) -> tuple[str, str] | None:
    """`NAMESPACE/NAME` split, or None when `text` is not of that shape."""
    ns, sep, name = text.partition("/")
    return (ns, name) if sep and ns and name and "/" not in name else None


def server_context(
    url: str, ca_file: str | None, client_cert: str | None = None, client_key: str | None = None
) -> ssl.SSLContext | None:
    """The TLS context for a `--server` URL (None for plain http)."""
    return http.ssl_context(ca_file, client_cert, client_key) if url.startswith("https:") else None


def server_get(
    url: str,
    path: str,
    token_file: str | None,
    ca_file: str | None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> Any:
    """GET a JSON document of a `nodeagent serve`; raises http.FetchError (TLS files included)."""
    ctx = server_context(url, ca_file, client_cert, client_key)
    return http.get_json(url.rstrip("/") + path, headers=http.bearer(token_file), context=ctx)
