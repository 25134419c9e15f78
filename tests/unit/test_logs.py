"""Logging: JSON lines off a terminal, console on one, levels, bound context, key events, no secrets."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml

from nodeagent import cli, settings
from nodeagent.agent import agent as agent_mod
from nodeagent.service import logs
from nodeagent.sources import files

SECRET_VALUE = "s3cr3t-Value-never-logged"
TOKEN_VALUE = "tok-0123456789abcdef-never-logged"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_lines_with_level_timestamp_and_bound_context() -> None:
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    log = structlog.get_logger("t").bind(daemonset="kube-system/fluentd", pod="fluentd-ab12c")
    with structlog.contextvars.bound_contextvars(source="dir:/srv/ds"):
        log.info("action_applied", action="create", container="main", reason="no pod on this node")
    [rec] = lines(out)
    assert rec["event"] == "action_applied" and rec["level"] == "info"
    assert {"daemonset", "pod", "container", "action", "reason", "source", "timestamp"} <= set(rec)
    assert rec["source"] == "dir:/srv/ds"


def test_auto_is_json_off_a_terminal_and_console_has_no_colors_there() -> None:
    out = io.StringIO()
    logs.configure("info", "auto", stream=out)
    structlog.get_logger().info("agent_started", node="n1")
    assert lines(out)[0]["event"] == "agent_started"

    out = io.StringIO()
    logs.configure("info", "console", stream=out)
    structlog.get_logger().info("agent_started", node="n1")
    text = out.getvalue()
    assert "agent_started" in text and "node" in text and "\x1b[" not in text


def test_level_filters() -> None:
    out = io.StringIO()
    logs.configure("warning", "json", stream=out)
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("source_unavailable", source="x", error="gone")
    assert [r["event"] for r in lines(out)] == ["source_unavailable"]


def test_credential_named_keys_are_redacted() -> None:
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    structlog.get_logger().info(
        "request_sent", token=TOKEN_VALUE, authorization=f"Bearer {TOKEN_VALUE}", secret="db-creds"
    )
    assert TOKEN_VALUE not in out.getvalue()
    [rec] = lines(out)
    assert rec["token"] == logs.REDACTED and rec["authorization"] == logs.REDACTED
    assert rec["secret"] == "db-creds", "a Secret's name is context, not a value"


# --- key events of the agent ----------------------------------------------------------------------


def _config(tmp_path: Path, labels: dict[str, str] | None = None) -> Path:
    (tmp_path / "ds").mkdir(exist_ok=True)
    doc = {
        "node": {"name": "node-logs", "labels": labels or {}},
        "sources": [{"directory": "ds"}],
        "stateDir": "state",
        "healthz": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_config_reloaded_and_config_reload_failed(tmp_path: Path) -> None:
    path = _config(tmp_path)
    a = agent_mod.Agent(settings.load(str(path)), None)
    _config(tmp_path, labels={"zone": "b"})
    with structlog.testing.capture_logs() as captured:
        cli._reload(a, str(path))
    [ev] = [e for e in captured if e["event"] == "config_reloaded"]
    assert ev["labels"]["zone"] == "b" and ev["node"] == "node-logs"

    path.write_text("node: {name: [not, a, name]}\nbogus: 1\n")
    with structlog.testing.capture_logs() as captured:
        cli._reload(a, str(path))
    [ev] = [e for e in captured if e["event"] == "config_reload_failed"]
    assert ev["log_level"] == "error" and ev["keeping"] == "previous config"
    assert a.node.labels["zone"] == "b", "a bad config keeps the previous one"


def test_source_unavailable_names_the_source(tmp_path: Path) -> None:
    src = files.DirectorySource("ds:missing", str(tmp_path / "missing"), lambda: None, watch=False)
    with structlog.testing.capture_logs() as captured:
        src.relist()
    [ev] = [e for e in captured if e["event"] == "source_unavailable"]
    assert ev["log_level"] == "warning" and ev["error"]
    assert any(v == "ds:missing" or str(tmp_path / "missing") in str(v) for v in ev.values())


def test_secret_values_never_reach_the_log(tmp_path: Path) -> None:
    path = _config(tmp_path)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "stringData": {"password": SECRET_VALUE},
    }
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "uses-secret", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox:stable",
                            "env": [
                                {
                                    "name": "PW",
                                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                                }
                            ],
                        }
                    ]
                },
            },
        },
    }
    (tmp_path / "ds" / "all.yaml").write_text(yaml.safe_dump_all([secret, ds]))
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    a = agent_mod.Agent(settings.load(str(path)), None)
    a.relist()
    result = a.reconcile(dry_run=True)
    cli.plan_json(a, result)
    _config(tmp_path, labels={"zone": "c"})
    cli._reload(a, str(path))
    assert out.getvalue(), "the agent logged something at debug"
    assert SECRET_VALUE not in out.getvalue()
