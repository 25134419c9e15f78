"""nodeagent as a systemd service, in a real systemd (PID 1 of a local Debian container).

One scenario, in order, on one machine: `make install` -> active through READY -> a DaemonSet runs ->
`kill -9` -> systemd restarts the agent, which adopts the pod -> `systemctl reload` -> `make install`
again (idempotent) -> a stuck loop trips the watchdog -> `systemctl stop` and `make uninstall` leave the
pod running. Plus `systemd-analyze verify` and a DESTDIR install on the host, which need no machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import manifests
from tests.support.waiting import wait_for
from tests.systemd.conftest import REPO, Machine, copy_tree, sh, wheelhouse

pytestmark = pytest.mark.docker

MAKE_INSTALL = "make -C /src install PIP_INSTALL_ARGS='--no-index --find-links /wheels'"
DS_DIR = "/etc/nodeagent/daemonsets"


def daemonset(name: str, image: str, node_selector: dict[str, str] | None = None) -> str:
    return manifests.to_yaml(
        manifests.daemonset(
            name,
            namespace="systemd-test",
            image=image,
            command=("sleep", "3600"),
            grace=None,
            pod={"nodeSelector": node_selector} if node_selector else None,
        )
    )


def running(m: Machine) -> list[tuple[str, str, str]]:
    return [p for p in m.pods() if p[2] == "running"]


def main_pid(m: Machine) -> int:
    return int(m.show("MainPID"))


# --- no machine needed ----------------------------------------------------------------------------


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("systemd-analyze is missing; `make test-systemd` installs Debian's systemd")
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    return path


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as installed (paths rendered to a staged install), with no warning at all."""
    analyze = _systemd_analyze()
    prefix = tmp_path / "opt" / "nodeagent"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "nodeagent"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = (REPO / "systemd" / "nodeagent.service").read_text().replace("/opt/nodeagent", str(prefix))
    path = tmp_path / "nodeagent.service"
    path.write_text(unit)
    p = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), p.stdout + p.stderr
    for key in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=always", "WatchdogSec="):
        assert key in unit
    assert re.search(r"^After=.*docker\.service.*network-online\.target", unit, re.M)
    assert re.search(r"^Wants=.*docker\.service.*network-online\.target", unit, re.M)


def test_destdir_install_is_idempotent_and_keeps_a_modified_config(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheelhouse(wheels)
    root = tmp_path / "root"
    src = tmp_path / "src"
    copy_tree(src)  # pip builds in the source tree: not in the shared checkout
    args = [
        "make",
        "-s",
        "-C",
        str(src),
        f"DESTDIR={root}",
        f"PIP_INSTALL_ARGS=--no-index --find-links {wheels}",
    ]
    sh(*args, "install")
    cfg = root / "etc/nodeagent/config.yaml"
    unit = root / "etc/systemd/system/nodeagent.service"
    assert cfg.is_file() and unit.is_file() and (root / "opt/nodeagent/bin/nodeagent").is_file()
    assert os.readlink(root / "usr/local/bin/nodeagent") == "/opt/nodeagent/bin/nodeagent"
    assert (root / "etc/nodeagent/daemonsets").is_dir() and (root / "etc/nodeagent/manifests").is_dir()
    cfg.write_text(cfg.read_text() + "# edited by the operator\n")
    out = sh(*args, "install")
    assert "keeping the existing" in out
    assert cfg.read_text().endswith("# edited by the operator\n"), "install never overwrites a config"
    sh(*args, "uninstall")
    sh(*args, "uninstall")  # idempotent
    assert not unit.exists() and not (root / "opt/nodeagent").exists()
    assert not (root / "usr/local/bin/nodeagent").exists()
    assert cfg.exists(), "a modified config survives uninstall (PURGE=yes removes it)"
    sh(*args, "PURGE=yes", "uninstall")
    assert not (root / "etc/nodeagent").exists()


# --- in a real systemd ----------------------------------------------------------------------------


def test_service_lifecycle(machine: Machine, test_image: str) -> None:
    m = machine
    # make install: enabled, started, and active only once READY=1 arrived
    m.run(MAKE_INSTALL)
    assert m.run("systemctl is-enabled nodeagent.service").strip() == "enabled"
    wait_for(lambda: m.active() == "active", timeout=120, interval=0.5, what="the unit to become active")
    assert m.show("Type") == "notify" and m.show("WatchdogUSec") == "1min"
    assert re.fullmatch(r"\d+ pods? running, \d+ failing, sources ok", m.show("StatusText")), m.show(
        "StatusText"
    )
    events = [e["event"] for e in m.events()]
    assert "service_ready" in events and "agent_started" in events
    assert m.run("systemd-analyze verify /etc/systemd/system/nodeagent.service 2>&1").strip() == ""

    # the local endpoints
    assert m.http("/healthz")[0] == 200 and m.http("/readyz")[0] == 200
    status, body = m.http("/metrics")
    assert status == 200 and "nodeagent_reconcile_duration_seconds" in body

    # a DaemonSet runs, and STATUS= says so
    m.write(f"{DS_DIR}/logger.yaml", daemonset("logger", test_image))
    wait_for(lambda: len(running(m)) == 1, timeout=120, interval=0.5, what="the pod to run")
    wait_for(
        lambda: m.show("StatusText") == "1 pod running, 0 failing, sources ok",
        timeout=120,
        interval=0.5,
        what="STATUS= to count the pod",
    )
    [pod] = running(m)

    # kill -9: systemd restarts the agent, which adopts the running pod instead of duplicating it
    pid = main_pid(m)
    restarts = int(m.show("NRestarts"))
    m.run(f"kill -9 {pid}")
    wait_for(
        lambda: (
            int(m.show("NRestarts")) == restarts + 1
            and m.active() == "active"
            and main_pid(m) not in (0, pid)
        ),
        timeout=120,
        interval=0.5,
        what="systemd to restart the agent",
    )
    wait_for(
        lambda: m.show("StatusText").startswith("1 pod running"),
        timeout=120,
        interval=0.5,
        what="READY=1 of the new agent",
    )
    assert m.pods() == [pod], "adopted, not duplicated"

    # systemctl reload: SIGHUP, RELOADING=1 ... READY=1; the new config takes effect in the same process
    pid = main_pid(m)
    m.write(f"{DS_DIR}/gpu.yaml", daemonset("gpu", test_image, node_selector={"accelerator": "gpu"}))
    cfg = yaml.safe_load(m.run("cat /etc/nodeagent/config.yaml"))
    cfg["node"]["labels"] = {"accelerator": "gpu"}
    m.write("/etc/nodeagent/config.yaml", yaml.safe_dump(cfg))
    m.run("systemctl reload nodeagent.service")
    assert m.active() == "active" and main_pid(m) == pid
    wait_for(
        lambda: len(running(m)) == 2, timeout=120, interval=0.5, what="the labelled node to get the gpu pod"
    )
    assert any(e["event"] == "config_reloaded" for e in m.events())
    assert "Reloaded" in m.run("journalctl -u nodeagent.service --no-pager -o cat")
    pods = m.pods()

    # make install again: idempotent, keeps the edited config, restarts onto the same pods
    out = m.run(MAKE_INSTALL)
    assert "keeping the existing /etc/nodeagent/config.yaml" in out
    assert "accelerator" in m.run("cat /etc/nodeagent/config.yaml")
    wait_for(
        lambda: m.active() == "active", timeout=120, interval=0.5, what="the reinstalled agent to be active"
    )
    wait_for(
        lambda: m.show("StatusText").startswith("2 pods running"),
        timeout=120,
        interval=0.5,
        what="READY after reinstall",
    )
    assert m.pods() == pods

    # a stuck loop (the process frozen) stops the WATCHDOG=1 pings: systemd restarts the agent
    m.run("mkdir -p /run/systemd/system/nodeagent.service.d && printf '[Service]\\nWatchdogSec=3s\\n' "
          "> /run/systemd/system/nodeagent.service.d/watchdog.conf && systemctl daemon-reload "
          "&& systemctl restart nodeagent.service")  # fmt: skip
    wait_for(lambda: m.active() == "active", timeout=120, interval=0.5, what="active with the short watchdog")
    pid, restarts = main_pid(m), int(m.show("NRestarts"))
    m.run(f"kill -STOP {pid}")
    wait_for(
        lambda: int(m.show("NRestarts")) > restarts and m.active() == "active" and main_pid(m) != pid,
        timeout=90,
        interval=0.5,
        what="the watchdog to restart the agent",
    )
    assert "watchdog timeout" in m.run("journalctl -u nodeagent.service --no-pager -o cat").lower()
    m.run("rm -rf /run/systemd/system/nodeagent.service.d && systemctl daemon-reload")
    wait_for(
        lambda: m.show("StatusText").startswith("2 pods running"),
        timeout=120,
        interval=0.5,
        what="READY after the watchdog restart",
    )
    assert m.pods() == pods

    # systemctl stop: the agent goes, the pods stay
    m.run("systemctl stop nodeagent.service")
    assert m.active() == "inactive"
    assert m.show("Result") == "success", "SIGTERM -> STOPPING=1 -> exit 0"
    assert any(e["event"] == "agent_stopped" for e in m.events())
    assert m.pods() == pods and all(state == "running" for _, _, state in pods)

    # make uninstall (twice): unit, venv and unmodified files gone; pods still running
    m.run("make -C /src uninstall")
    m.run("make -C /src uninstall")
    assert m.run("test -e /etc/systemd/system/nodeagent.service || echo gone").strip() == "gone"
    assert m.run("test -e /opt/nodeagent || echo gone").strip() == "gone"
    assert "could not be found" in m.run("systemctl status nodeagent.service 2>&1", check=False).lower() or (
        m.active() in ("inactive", "unknown")
    )
    assert m.pods() == pods
