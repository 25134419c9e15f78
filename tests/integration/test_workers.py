"""One slow pod never holds up another (issue 12), on the real engine with `nodeagent run` as a process.

The workloads are hostile on purpose: busybox `sleep` as PID 1 ignores SIGTERM, so each stop waits out
its grace period (8-12 s here); a preStop hook that sleeps; a registry on loopback that accepts a
connection and never answers. Every assertion is about order and overlap (the new pod ran while the old
one had not yet exited), never a wall-clock limit, except the one the issue sets: a pod's containers
stop in about one grace period, not one per container.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from nodeagent.agent import identity, localimage
from nodeagent.runtime import docker as docker_rt
from tests.support.agenthome import NODEAGENT, Home, agent_log, cli, start_run
from tests.support.hangingregistry import HangingRegistry
from tests.support.httpsource import answers
from tests.support.manifests import daemonset, put
from tests.support.net import free_port
from tests.support.slowregistry import SlowRegistry
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

GRACE = 8


def sleeper(h: Home, name: str, grace: int = GRACE, **kw: Any) -> dict[str, Any]:
    """A DaemonSet whose PID 1 is busybox `sleep`: it ignores SIGTERM, so a stop takes the grace period."""
    return h.ds(
        name,
        command="exec sleep 3600",
        pod={"terminationGracePeriodSeconds": grace, **kw.pop("pod", {})},
        **kw,
    )


def running(h: Home, name: str) -> bool:
    """A running app container of DaemonSet `name`."""
    owner = h.owner(name)
    return any(
        c.running
        and c.labels.get(identity.LABEL_OWNER) == owner
        and c.labels.get(identity.LABEL_ROLE) == "app"
        for c in h.containers()
    )


def gone(h: Home, name: str) -> bool:
    owner = h.owner(name)
    return not any(c.running and c.labels.get(identity.LABEL_OWNER) == owner for c in h.containers())


def in_flight(h: Home) -> dict[str, dict[str, Any]]:
    """stateDir/workers.json as the running agent keeps it: owner -> its work in flight."""
    try:
        doc = json.loads((h.state_dir / "workers.json").read_text())
    except (OSError, ValueError):
        return {}
    return {w["owner"]: w for w in doc.get("workers", [])}


def terminating(h: Home, name: str) -> bool:
    w = in_flight(h).get(h.owner(name))
    return w is not None and bool(w["terminating"])


def withdraw(h: Home, name: str) -> None:
    (h.ds_dir / f"{name}.yaml").unlink()


def run_until_running(h: Home, procs: list[subprocess.Popen[bytes]], *names: str) -> subprocess.Popen[bytes]:
    p = start_run(h, procs)
    try:
        wait_for(lambda: all(running(h, n) for n in names), timeout=60)
    except AssertionError:
        raise AssertionError(agent_log(h)[-3000:]) from None
    return p


# --- a stopping pod -----------------------------------------------------------------------------------


def test_withdrawn_pod_stopping_never_holds_up_a_new_daemonset_and_shows_terminating(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    home.put("old", sleeper(home, "old"))
    run_until_running(home, agent_proc, "old")
    withdraw(home, "old")
    wait_for(lambda: terminating(home, "old"), timeout=30)
    home.put("new", home.ds("new"))
    wait_for(lambda: running(home, "new"), timeout=30)
    assert running(home, "old"), "the new pod ran while the withdrawn one had not yet exited"

    table = cli(home, "status")
    doc = json.loads(cli(home, "status", "-o", "json").stdout)
    assert running(home, "old"), "status was read while the old pod was still stopping"
    [old_row] = [
        line for line in table.stdout.splitlines() if line.split()[1:2] and line.split()[1].startswith("old-")
    ]
    assert "Terminating" in old_row.split(), table.stdout
    assert "work in flight: " + home.owner("old") + ": stopping" in table.stdout
    [pod] = doc["terminatingPods"]
    assert pod["name"].startswith("old-") and pod["status"] == "Terminating" and pod["terminating"]
    assert {d["name"] for d in doc["daemonSets"]} == {"new"}, "no source owns the old pod any more"
    wait_for(lambda: gone(home, "old"), timeout=GRACE + 30)
    wait_for(lambda: not in_flight(home), timeout=30)
    assert json.loads(cli(home, "status", "-o", "json").stdout)["terminatingPods"] == []


def test_config_reload_while_a_pod_stops_is_applied_at_once(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    home.put("old", sleeper(home, "old"))
    home.put("picky", home.ds("picky", pod={"nodeSelector": {"zone": "a"}}))
    run_until_running(home, agent_proc, "old")
    assert not running(home, "picky")
    withdraw(home, "old")
    wait_for(lambda: terminating(home, "old"), timeout=30)
    home.labels = {"zone": "a"}
    home.write_config()  # the agent watches its config file (and SIGHUP does the same)
    wait_for(lambda: running(home, "picky"), timeout=30)
    assert running(home, "old"), "the reload was applied while the old pod was still stopping"
    assert "config_reloaded" in agent_log(home)


def test_pre_stop_hook_sleeping_long_never_holds_up_a_new_daemonset(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    hook = {"lifecycle": {"preStop": {"exec": {"command": ["sleep", "30"]}}}}
    home.put("hooked", home.ds("hooked", pod={"terminationGracePeriodSeconds": 12}, container=hook))
    run_until_running(home, agent_proc, "hooked")
    withdraw(home, "hooked")
    wait_for(lambda: terminating(home, "hooked"), timeout=30)
    home.put("new", home.ds("new"))
    wait_for(lambda: running(home, "new"), timeout=30)
    assert running(home, "hooked"), "the new pod ran while the preStop hook of the old one still ran"
    wait_for(lambda: gone(home, "hooked"), timeout=12 + 30)


def test_sigterm_while_a_stop_is_in_flight_ends_the_agent_and_leaves_the_stop_to_the_engine(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    home.put("old", sleeper(home, "old", grace=12))
    p = run_until_running(home, agent_proc, "old")
    withdraw(home, "old")
    wait_for(lambda: terminating(home, "old"), timeout=30)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    assert running(home, "old"), "the agent ended while the stop it sent was still in flight"
    assert "agent_stopped" in agent_log(home)
    wait_for(lambda: gone(home, "old"), timeout=12 + 30)  # the engine finished the stop on its own


def test_two_sigterm_ignoring_containers_stop_in_one_grace_period_not_two(
    home: Home, docker_runtime: docker_rt.DockerRuntime
) -> None:
    localimage.ensure_pause_image(docker_runtime)  # a two-container pod has a sandbox
    two = sleeper(home, "two")
    main = two["spec"]["template"]["spec"]["containers"][0]
    two["spec"]["template"]["spec"]["containers"].append({**main, "name": "second"})
    home.put("two", two)
    first = home.sync()
    assert not first.failed and running(home, "two")
    withdraw(home, "two")
    a, _ = home.agent()
    started = time.monotonic()
    result = a.reconcile()
    elapsed = time.monotonic() - started
    assert [o.action.verb for o in result.outcomes] == ["delete"] and not result.failed
    assert gone(home, "two") and home.containers() == []
    assert GRACE - 1 <= elapsed < 1.5 * GRACE, f"stopped in {elapsed:.1f}s; the grace period is {GRACE}s"


# --- a hanging image pull -------------------------------------------------------------------------------


def hanging(h: Home, registry: HangingRegistry) -> dict[str, Any]:
    return h.ds("hang", container={"image": registry.image("x", "1"), "imagePullPolicy": "Always"})


def pulling(h: Home) -> bool:
    w = in_flight(h).get(h.owner("hang"))
    return w is not None and w["detail"].startswith("pulling image 127.0.0.1:")


def test_a_hanging_pull_never_holds_up_another_pod(
    home: Home, agent_proc: list[subprocess.Popen[bytes]], hanging_registry: HangingRegistry
) -> None:
    home.put("hang", hanging(home, hanging_registry))
    start_run(home, agent_proc)
    wait_for(lambda: hanging_registry.accepted > 0 and pulling(home), timeout=30)
    home.put("ok", home.ds("ok"))
    wait_for(lambda: running(home, "ok"), timeout=30)
    assert pulling(home), "the other pod started while the pull still hung"
    doc = json.loads(cli(home, "status", "-o", "json").stdout)
    [hang] = [d for d in doc["daemonSets"] if d["name"] == "hang"]
    assert [p["status"] for p in hang["pods"]] == ["ContainerCreating"]
    [work] = [w for w in doc["workInFlight"] if w["owner"] == home.owner("hang")]
    assert work["detail"] == f"pulling image {hanging_registry.image('x', '1')}"


def test_a_crashed_container_is_restarted_on_its_backoff_while_a_pull_hangs(
    home: Home, agent_proc: list[subprocess.Popen[bytes]], hanging_registry: HangingRegistry
) -> None:
    home.backoff = "{initial: 2s, max: 10s, resetAfter: 10m}"
    home.write_config()
    home.put("hang", hanging(home, hanging_registry))
    start_run(home, agent_proc)
    wait_for(lambda: hanging_registry.accepted > 0 and pulling(home), timeout=30)
    home.put("crash", home.ds("crash", command="sleep 1; exit 1"))

    def restarted() -> bool:
        owner = home.owner("crash")
        return any(
            c.labels.get(identity.LABEL_OWNER) == owner and c.labels.get(identity.LABEL_ATTEMPT) == "1"
            for c in home.containers()
        )

    wait_for(restarted, timeout=30)
    assert pulling(home), "the crashed container was restarted while the pull still hung"


# --- the fleet view follows the node at once (issue 14) ---------------------------------------------------


def test_the_fleet_view_shows_started_pods_without_waiting_for_a_resync(
    tmp_path: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str
) -> None:
    from nodeagent.sources import http

    ns = f"t-{time.time_ns() % 10**10}"
    node = f"node-{ns}"
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    put(mdir, "web", daemonset("web", image=test_image, namespace=ns))
    url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": {"name": node},
                "sources": [{"url": url + "/manifests", "pollInterval": "1h"}],
                "stateDir": str(tmp_path / "state"),
                "statusServer": url,
                "resyncInterval": "5m",  # only finished work can bring the fresh report in time
                "healthz": {"enabled": False},
            }
        )
    )
    log = (tmp_path / "procs.log").open("ab")
    procs = [
        subprocess.Popen(
            [
                *(NODEAGENT, "serve", "--dir", str(mdir), "--listen", url.removeprefix("http://")),
                *("--state-dir", str(tmp_path / "serve-state")),
            ],
            stdout=log,
            stderr=log,
        )
    ]
    selector = f"{identity.LABEL_POD_NAMESPACE}={ns}"
    try:
        wait_for(lambda: answers(url + "/healthz"))
        procs.append(subprocess.Popen([NODEAGENT, "--config", str(config), "run"], stdout=log, stderr=log))
        wait_for(lambda: any(c.running for c in docker_runtime.list_labelled(selector)), timeout=60)

        def reported() -> bool:
            nodes = http.get_json(url + "/api/nodes")["nodes"]
            return [(n["name"], n["pods"]) for n in nodes] == [(node, 1)]

        wait_for(reported, timeout=10)
        ds = http.get_json(url + "/api/daemonsets")["daemonSets"]
        assert [(d["name"], d["numberReady"]) for d in ds] == [("web", 1)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=30)
        for c in docker_runtime.list_labelled(selector):
            docker_runtime.remove(c.id)


def test_status_shows_the_pull_progress_of_a_pod_waiting_for_its_image(
    home: Home, agent_proc: list[subprocess.Popen[bytes]]
) -> None:
    """A pod whose image comes slowly (a real registry on loopback dripping a 3 MB layer) shows in
    `status` as its work in flight with the bytes the engine reported: "pulling image X: 1.2 MB of 3 MB"."""
    registry = SlowRegistry(delay=0.1)
    image = f"{registry.address}/slow:1"
    client = docker.from_env()
    try:
        home.put("slow", home.ds("slow", container={"image": image, "imagePullPolicy": "Always"}))
        start_run(home, agent_proc)
        moving = re.compile(rf"^pulling image {re.escape(image)}: [0-9.]+ [kMG]?B of 3 MB$")

        def progressing() -> bool:
            w = in_flight(home).get(home.owner("slow"))
            return w is not None and bool(moving.match(w["detail"]))

        wait_for(progressing, timeout=60)
        doc = json.loads(cli(home, "status", "-o", "json").stdout)
        [work] = [w for w in doc["workInFlight"] if w["owner"] == home.owner("slow")]
        assert work["detail"].startswith(f"pulling image {image}")
        wait_for(lambda: not progressing(), timeout=60)  # the pull ends (its layer is no runnable image)
    finally:
        registry.close()
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)
        client.close()
