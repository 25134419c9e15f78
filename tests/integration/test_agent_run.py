"""The `nodeagent` commands as real processes against the real engine: sync, status, run, and SIGKILL.

Same per-test world as test_agent_sync: config, directories and stateDir under tmp_path, a namespace and
a node name of its own (the commands scope their runtime to the configured node).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import pytest

from nodeagent.agent import identity
from tests.support.agenthome import NODEAGENT, Home, agent_log, cli, start_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker


def converged(h: Home, owners: set[str]) -> bool:
    """Exactly one running container per expected owner, nothing else."""
    cs = h.containers()
    return len(cs) == len(owners) and all(c.running for c in cs) and h.running_owners() == owners


# --- sync, status ------------------------------------------------------------------------------


def test_sync_dry_run_sync_and_status(home: Home) -> None:
    home.put("a", home.ds("a", pod={"nodeSelector": {"disktype": "ssd"}}))
    home.put("b", home.ds("b"))

    dry = cli(home, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create" in dry.stdout and f"{home.namespace}/b-" in dry.stdout
    assert home.containers() == [], "--dry-run changes nothing"

    done = cli(home, "sync")
    assert done.returncode == 0, done.stderr
    assert "create" in done.stdout and "... ok" in done.stdout
    assert home.running_owners() == {home.owner("b")}

    again = cli(home, "sync")
    assert again.returncode == 0
    assert "Nothing to do" in again.stdout

    table = cli(home, "status")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:2] == ["NAMESPACE", "NAME"]
    for col in ("DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"):
        assert col in header
    assert "STATUS" in table.stdout and "RESTARTS" in table.stdout and "Running" in table.stdout

    out = cli(home, "status", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["node"] == home.node
    by_name = {d["name"]: d for d in doc["daemonSets"]}
    b = by_name["b"]
    for key in (
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberMisscheduled",
    ):
        assert key in b
    assert (b["desiredNumberScheduled"], b["currentNumberScheduled"], b["numberReady"]) == (1, 1, 1)
    [pod] = b["pods"]
    assert pod["phase"] == "Running" and pod["ready"] and pod["restartCount"] == 0
    assert pod["name"].startswith("b-")
    assert [c["name"] for c in pod["containers"]] == ["main"]
    a = by_name["a"]
    assert (a["desiredNumberScheduled"], a["currentNumberScheduled"], a["pods"]) == (0, 0, [])


def test_sync_exits_1_when_an_action_fails_and_does_the_rest(home: Home) -> None:
    home.put("ok", home.ds("ok"))
    home.put("noimage", home.ds("noimage", container={"image": "nodeagent-test/absent:never"}))
    home.put(
        "badpath",
        home.ds(
            "badpath",
            pod={"volumes": [{"name": "h", "hostPath": {"path": str(home.root), "type": "File"}}]},
            container={"volumeMounts": [{"name": "h", "mountPath": "/h"}]},
        ),
    )
    result = cli(home, "sync")
    assert result.returncode == 1
    assert "ErrImageNeverPull" in result.stdout
    assert f"hostPath type check failed: {home.root} is not a file" in result.stdout
    assert "CreateContainerConfigError" in result.stdout
    assert home.running_owners() == {home.owner("ok")}, "one failed action never aborts the others"

    # `status`, another process, says why those pods do not run; a new sync keeps backing off
    doc = json.loads(cli(home, "status", "-o", "json").stdout)
    shown = {d["name"]: [p["status"] for p in d["pods"]] for d in doc["daemonSets"]}
    assert shown == {
        "ok": ["Running"],
        "noimage": ["ErrImageNeverPull"],
        "badpath": ["CreateContainerConfigError"],
    }
    table = cli(home, "status").stdout
    assert "CreateContainerConfigError" in table
    again = cli(home, "sync")
    assert again.returncode == 0 and "CreateContainerConfigError, next try in" in again.stdout


def test_plan_lists_actions_with_reasons(home: Home) -> None:
    home.put("a", home.ds("a"))
    out = cli(home, "plan", "-o", "json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    [ds] = doc["daemonSets"]
    assert ds["shouldRun"] and not ds["running"]
    assert [a["action"] for a in ds["actions"]] == ["create"]
    assert ds["actions"][0]["reason"]


# --- SIGKILL mid-sync ------------------------------------------------------------------------


@pytest.mark.parametrize("kill_after", [1, 3, 5], ids=lambda n: f"after-{n}-containers")
def test_sync_killed_mid_pass_then_converges_without_duplicates(home: Home, kill_after: int) -> None:
    names = [f"d{i}" for i in range(6)]
    for n in names:
        home.put(n, home.ds(n))
    proc = subprocess.Popen(
        [NODEAGENT, "--config", str(home.config), "sync"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: len(home.containers()) >= kill_after or proc.poll() is not None, timeout=60, interval=0.01
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    result = cli(home, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    owners = {home.owner(n) for n in names}
    assert converged(home, owners)
    pods = home.pods()
    assert len(pods) == len(names) and all(len(cs) == 1 for cs in pods.values()), "no duplicates"
    assert "Nothing to do" in cli(home, "sync").stdout


# --- the long-running agent ------------------------------------------------------------------


def test_run_reacts_to_files_docker_and_config_and_leaves_pods_on_sigterm(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    home.resync = "1h"  # only events wake it: files, Docker, the config
    home.write_config()
    home.put("first", home.ds("first"))
    proc = start_run(home, agent_proc)
    wait_for(lambda: converged(home, {home.owner("first")}), timeout=60)

    # a file dropped into the directory starts its pod (watchdog, not the 1 h resync)
    home.put("dropped", home.ds("dropped"))
    wait_for(lambda: converged(home, {home.owner("first"), home.owner("dropped")}), timeout=30)

    # a container removed behind its back is recreated (Docker events)
    victim = next(c for c in home.containers() if c.labels[identity.LABEL_OWNER] == home.owner("dropped"))
    home.engine.remove(victim.id)
    wait_for(
        lambda: (
            converged(home, {home.owner("first"), home.owner("dropped")})
            and victim.id not in {c.id for c in home.containers()}
        ),
        timeout=30,
    )

    # a config change (new node label) is picked up: the file watcher, and SIGHUP
    home.put("ssd", home.ds("ssd", pod={"nodeSelector": {"disktype": "ssd"}}))
    home.labels = {"disktype": "ssd"}
    home.write_config()
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: home.owner("ssd") in home.running_owners(), timeout=30)

    # SIGHUP alone: a same-size config edit with its mtime put back is invisible to the file watcher
    home.put("hdd", home.ds("hdd", pod={"nodeSelector": {"disktype": "hdd"}}))
    stamp = os.stat(home.config)
    home.labels = {"disktype": "hdd"}
    home.write_config()
    assert os.stat(home.config).st_size == stamp.st_size
    os.utime(home.config, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: converged(home, {home.owner(n) for n in ("first", "dropped", "hdd")}), timeout=30)

    # withdrawing a file removes its pod
    (home.ds_dir / "dropped.yaml").unlink()
    wait_for(lambda: converged(home, {home.owner("first"), home.owner("hdd")}), timeout=30)
    assert proc.poll() is None, agent_log(home)[-3000:]

    before = {c.id for c in home.containers()}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    after = home.containers()
    assert {c.id for c in after} == before and all(c.running for c in after), "stopping leaves pods"
    assert "agent_stopped" in agent_log(home)


def test_run_restarts_a_crashing_container_with_backoff(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    home.backoff = "{initial: 1s, max: 2s, resetAfter: 10m}"
    home.write_config()
    home.put("crash", home.ds("crash", command="sleep 0.2; exit 1"))
    start_run(home, agent_proc)

    def attempt() -> int:
        return max((int(c.labels[identity.LABEL_ATTEMPT]) for c in home.containers()), default=-1)

    wait_for(lambda: attempt() >= 3, timeout=60)
    out = cli(home, "status", "-o", "json")
    [ds] = json.loads(out.stdout)["daemonSets"]
    [pod] = ds["pods"]
    assert pod["restartCount"] >= 3
    assert len(home.pods()) == 1
