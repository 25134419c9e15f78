"""The Docker engine as tests use it: labels that mark and scope test containers, the offline test
image, and the clean-up helpers behind the fixtures of tests/conftest.py.

Parallel sessions share one engine: every container a test creates carries `TEST_LABEL` and this
session's `SESSION_LABEL`, so a session removes only its own.
"""

from __future__ import annotations

import os
import uuid

import pytest

from nodeagent import errors
from nodeagent.agent import localimage
from nodeagent.runtime import docker as docker_rt

TEST_LABEL = "io.nodeagent.test"
SESSION_LABEL = "io.nodeagent.test.session"
TEST_IMAGE = "nodeagent-test/busybox:latest"
SESSION_ID = uuid.uuid4().hex[:10]
BUILT_IMAGES = (TEST_IMAGE, localimage.PAUSE_TAG)  # images a test session may have built


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_docker(runtime: docker_rt.DockerRuntime) -> None:
    """Skip when no engine answers; under CI=true fail instead, so CI never passes by skipping."""
    if runtime.ping():
        return
    message = "no Docker engine answers (DOCKER_HOST or /var/run/docker.sock)"
    if in_ci():
        pytest.fail(f"{message}; CI=true requires one")
    pytest.skip(message)


def cleanup_by_label(runtime: docker_rt.DockerRuntime, selector: str) -> int:
    """Force-remove every container (any state) matching a label selector; returns how many."""
    try:
        found = runtime.list_labelled(selector)
    except errors.ContainerRuntimeError:
        return 0
    for container in found:
        runtime.remove(container.id)
    return len(found)


def session_selector() -> str:
    return f"{SESSION_LABEL}={SESSION_ID}"


def session_labels() -> dict[str, str]:
    """The labels every container a test creates carries."""
    return {TEST_LABEL: "true", SESSION_LABEL: SESSION_ID}
