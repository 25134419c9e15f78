"""sd_notify against a real AF_UNIX datagram socket, the watchdog's health gate, and the health rule."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from nodeagent.agent import reconciler
from nodeagent.service import health
from nodeagent.service import systemd as sd


class Manager:
    """The service manager's end: a bound datagram socket we read notifications from."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def recv(self) -> list[str]:
        self.sock.settimeout(5)
        return self.sock.recv(4096).decode().split("\n")

    def pending(self) -> bool:
        self.sock.settimeout(0)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        return True


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        value = path
    else:
        name = f"nodeagent-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        value = "@" + name
    yield Manager(sock, value)
    sock.close()


def test_ready_status_stopping_reach_the_socket(manager: Manager) -> None:
    n = sd.Notifier(manager.env())
    assert n.enabled and not n.is_ready
    n.ready("3 pods running, 0 failing, sources ok")
    assert manager.recv() == ["READY=1", "STATUS=3 pods running, 0 failing, sources ok"]
    assert n.is_ready
    n.status("multi\nline   status")
    assert manager.recv() == ["STATUS=multi line status"], "a status stays one line"
    n.stopping()
    msg = manager.recv()
    assert msg[0] == "STOPPING=1" and msg[1].startswith("STATUS=")


def test_reloading_carries_monotonic_usec_and_clears_ready(manager: Manager) -> None:
    n = sd.Notifier(manager.env())
    n.ready()
    manager.recv()
    n.reloading()
    msg = manager.recv()
    assert msg[0] == "RELOADING=1"
    [mono] = [line for line in msg if line.startswith("MONOTONIC_USEC=")]
    usec = int(mono.split("=", 1)[1])
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now - usec < 60_000_000, "CLOCK_MONOTONIC in microseconds, as systemd compares it"
    assert n.is_ready, "a reload does not make the agent un-ready; READY=1 ends the reload"
    n.ready("back")
    assert manager.recv()[0] == "READY=1"


def test_without_notify_socket_everything_is_a_noop() -> None:
    n = sd.Notifier({})
    assert not n.enabled
    assert n.notify("READY=1") is False
    n.ready()
    n.watchdog()
    n.stopping()


def test_a_vanished_socket_never_raises(tmp_path: Path) -> None:
    n = sd.Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.enabled
    assert n.notify("READY=1") is False


@pytest.mark.parametrize(
    ("env", "pid", "want"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 42, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42, None),
        ({"WATCHDOG_USEC": "0"}, 42, None),
        ({"WATCHDOG_USEC": "soon"}, 42, None),
        ({}, 42, None),
    ],
)
def test_watchdog_interval_is_half_of_usec(env: dict[str, str], pid: int, want: float | None) -> None:
    assert sd.watchdog_interval(env, pid) == want


def test_socket_address_forms() -> None:
    assert sd.socket_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert sd.socket_address({"NOTIFY_SOCKET": "@abc"}) == "\0abc"
    assert sd.socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert sd.socket_address({}) is None


def test_summary_line() -> None:
    assert sd.summary(12, 0, 0, 0) == "12 pods running, 0 failing, sources ok"
    assert sd.summary(1, 2, 0, 1) == "1 pod running, 2 failing, waiting for 1 source"
    assert sd.summary(0, 0, 3, 1) == "0 pods running, 0 failing, 3 source errors"


def test_watchdog_pings_only_while_healthy(manager: Manager) -> None:
    n = sd.Notifier(manager.env(WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid())))
    assert n.watchdog_interval == 1.0
    verdict = [(True, "ok")]
    w = sd.Watchdog(n, lambda: verdict[0], interval=n.watchdog_interval)
    assert w.tick() is True
    assert manager.recv() == ["WATCHDOG=1"]
    verdict[0] = (False, "no complete reconcile pass for 95s")
    assert w.tick() is False
    assert not manager.pending(), "an unhealthy loop sends nothing, so systemd's watchdog fires"
    verdict[0] = (True, "ok")
    assert w.tick() is True
    assert manager.recv() == ["WATCHDOG=1"]


# --- the health rule ------------------------------------------------------------------------------


def test_evaluate_startup_grace_then_stale() -> None:
    kw: dict[str, Any] = {"started_at": 1000.0, "last_pass_at": 0.0, "pass_started_at": None}
    assert health.evaluate(now=1030, last_error="", stale_after=90, **kw).healthy
    v = health.evaluate(now=1100, last_error="docker: connection refused", stale_after=90, **kw)
    assert not v.healthy and "connection refused" in v.reason


def test_evaluate_recent_pass_is_healthy_and_a_long_pass_is_stuck() -> None:
    assert health.evaluate(
        now=2000, started_at=0, last_pass_at=1990, pass_started_at=None, last_error="", stale_after=90
    ).healthy
    slow = health.evaluate(
        now=2000, started_at=0, last_pass_at=0, pass_started_at=1900, last_error="", stale_after=90
    )
    assert slow.healthy, "a pass in progress (an image pull) is not stale"
    stuck = health.evaluate(
        now=2000,
        started_at=0,
        last_pass_at=0,
        pass_started_at=1000,
        last_error="",
        stale_after=90,
        stall_after=300,
    )
    assert not stuck.healthy and "running for 1000s" in stuck.reason


def test_monitor_reads_the_reconciler() -> None:
    now = [1000.0]
    loop = reconciler.Reconciler(cast(Any, None), resync_interval=30)
    m = health.Monitor(loop, clock=lambda: now[0])
    assert m.stale_after == 30 + health.STALE_GRACE
    assert not m.ready and m.check().healthy
    now[0] = 1100.0
    assert not m.check().healthy
    loop.passes, loop.last_pass_at = 1, 1095.0
    assert m.ready and m.healthy() == (True, "ok")
