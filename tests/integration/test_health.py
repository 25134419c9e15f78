"""`nodeagent run` as a real process: the loopback /healthz, /readyz and /metrics endpoints, the sd_notify
conversation a service manager sees (a real AF_UNIX datagram socket stands in for systemd), and the log
events it writes (JSON lines, no secret values). tests/systemd does the same under a real systemd.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.agenthome import Home
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")
TOKEN = "tok-9f8e7d6c5b4a-never-logged"


class Agent:
    """A `nodeagent run` process with JSON logs in a file and a notify socket we read."""

    def __init__(
        self, h: Home, extra_config: dict[str, object], env: dict[str, str] | None = None, notify: bool = True
    ) -> None:
        doc = yaml.safe_load(h.config.read_text())
        doc.update(extra_config)
        h.config.write_text(yaml.safe_dump(doc))
        self.log_path = h.root / "agent.log"
        self.notify_path = str(h.root / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.notify_path)
        self.sock.settimeout(60)
        self.received: list[list[str]] = []
        full_env = {"PATH": "/usr/bin:/bin", **(env or {})}
        if notify:
            full_env["NOTIFY_SOCKET"] = self.notify_path
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [NODEAGENT, "--config", str(h.config), "--log-format", "json", "--log-level", "debug", "run"],
                stdout=log,
                stderr=log,
                env=full_env,
            )

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def event(self, name: str) -> dict[str, object] | None:
        return next((e for e in self.events() if e["event"] == name), None)

    def expect(self, line: str, after: int = -1) -> int:
        """Index of the first notification after `after` that has `line`, receiving until it comes."""
        for _ in range(400):
            for i in range(after + 1, len(self.received)):
                if line in self.received[i]:
                    return i
            self.received.append(self.sock.recv(65536).decode().split("\n"))
        raise AssertionError(f"no {line}; got {[m for m in self.received if m != ['WATCHDOG=1']]}")

    def address(self) -> str:
        wait_for(lambda: self.event("health_server_started") is not None, timeout=30)
        ev = self.event("health_server_started")
        assert ev is not None
        return str(ev["address"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.sock.close()


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for a in started:
        a.close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_notify_health_endpoints_and_log_events(home: Home, agents: list[Agent]) -> None:
    home.put("web", home.ds("web"))
    home.put("broken", home.ds("broken", container={"image": "nodeagent-test/does-not-exist:1"}))
    a = Agent(
        home,
        {"healthz": {"address": "127.0.0.1:0", "enabled": True}},
        env={"WATCHDOG_USEC": "1000000"},  # a ping every 0.5 s while healthy
    )
    agents.append(a)

    ready = a.received[a.expect("READY=1")]  # after the first complete pass, which created the pod
    assert any(line.startswith("STATUS=") and "pods running" in line for line in ready), ready
    a.expect("WATCHDOG=1")  # the loop is healthy, so the watchdog is fed
    a.expect("STATUS=1 pod running, 1 failing, sources ok")  # a later pass observes it running

    base = f"http://{a.address()}"
    assert base.startswith("http://127.0.0.1:"), "loopback by default"
    assert get(base + "/healthz")[:1] == (200,) and get(base + "/readyz")[0] == 200
    code, ctype, body = get(base + "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    assert 'nodeagent_actions_total{kind="create",result="ok"}' in body
    assert 'nodeagent_pods{phase="Running"} 1.0' in body
    ds = f'daemonset="web",namespace="{home.namespace}"'  # kube-state-metrics names (kubestate.py)
    assert f"kube_daemonset_status_number_available{{{ds}}} 1.0" in body, body
    assert f'kube_pod_container_status_restarts_total{{container="main",namespace="{home.namespace}"' in body
    assert get(base + "/nope")[0] == 404

    applied = [e for e in a.events() if e["event"] == "action_applied"]
    failed = [e for e in a.events() if e["event"] == "action_failed"]
    assert any(e["action"] == "create" and str(e["pod"]).startswith("web-") for e in applied), applied
    assert failed and all({"pod", "reason", "action", "error"} <= set(e) for e in failed)
    assert all(e["level"] in ("info", "warning") and "timestamp" in e for e in applied + failed)

    # SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1 once the config is re-read
    a.proc.send_signal(signal.SIGHUP)
    i = a.expect("RELOADING=1")
    assert any(line.startswith("MONOTONIC_USEC=") for line in a.received[i])
    a.expect("READY=1", after=i)
    assert a.event("config_reloaded") is not None

    # SIGTERM: STOPPING=1, exit 0, the pod keeps running
    a.proc.send_signal(signal.SIGTERM)
    a.expect("STOPPING=1")
    assert a.proc.wait(timeout=60) == 0
    assert home.running_owners() == {home.owner("web")}


def test_healthz_disabled_and_no_systemd(home: Home, agents: list[Agent]) -> None:
    """Outside systemd (no NOTIFY_SOCKET) and with healthz disabled the agent runs and stops as usual."""
    home.put("web", home.ds("web"))
    a = Agent(home, {"healthz": {"enabled": False}}, notify=False)
    agents.append(a)
    wait_for(lambda: home.running_owners() == {home.owner("web")}, timeout=60)
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=60) == 0
    assert a.event("health_server_started") is None and a.event("agent_stopped") is not None
    a.sock.settimeout(0)
    with pytest.raises(BlockingIOError):
        a.sock.recv(1)


class _Failing(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Failing.seen.append(self.headers.get("Authorization", ""))
        self.send_response(500)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_tokens_are_never_logged(home: Home, agents: list[Agent]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        token_file = home.root / "token"
        token_file.write_text(TOKEN + "\n")
        url = f"http://127.0.0.1:{server.server_address[1]}/fleet.yaml"
        a = Agent(
            home,
            {
                "sources": [
                    {"directory": "ds"},
                    {"url": url, "pollInterval": "1s", "tokenFile": str(token_file)},
                ],
                "healthz": {"enabled": False},
            },
        )
        agents.append(a)
        wait_for(lambda: a.event("source_unavailable") is not None, timeout=30)
        assert f"Bearer {TOKEN}" in _Failing.seen, "the token was really sent"
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=60) == 0
        assert TOKEN not in a.log_path.read_text()
    finally:
        server.shutdown()
        server.server_close()
