"""The operator's commands on the real engine: `events`, `describe`, `logs` (kubectl's habits), and the
fleet's events and kube-state-metrics on a real `serve`.

Same per-test world as test_agent_sync (config, stateDir, namespace and node of its own); the commands
run as real processes, as an operator types them.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nodeagent import cli as cli_mod
from nodeagent.agent import identity
from nodeagent.sources import http
from tests.support.agenthome import NODEAGENT, Home, cli
from tests.support.httpsource import start_serve
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker


def pod_name(h: Home, ds: str) -> str:
    """The DaemonSet's pod here (`<ds>-<hash>`), as `status -o json` shows it (a pending one too)."""
    doc = json.loads(cli(h, "status", "-o", "json").stdout)
    [d] = [d for d in doc["daemonSets"] if d["name"] == ds]
    return str(d["pods"][0]["name"])


def secret(h: Home, name: str, key: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": h.namespace},
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


def _app(name: str, image: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", command],
        **extra,
    }


def test_events_describe_and_logs_of_a_running_pod(home: Home) -> None:
    home.put("creds", secret(home, "creds", "password", "hunter2-not-shown"))
    main = _app(
        "main",
        home.image,
        "echo line-1; echo line-2; echo line-3; exec sleep 1000000",
        env=[
            {"name": "MODE", "value": "fast"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        ],
        livenessProbe={"exec": {"command": ["true"]}, "periodSeconds": 5},
        volumeMounts=[{"name": "data", "mountPath": "/data", "readOnly": True}],
    )
    side = _app("side", home.image, "echo side-car; exec sleep 1000000")
    home.put(
        "web",
        home.ds(
            "web",
            pod={
                "terminationGracePeriodSeconds": 1,
                "containers": [main, side],
                "volumes": [{"name": "data", "emptyDir": {}}],
            },
        ),
    )
    done = cli(home, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    pod = pod_name(home, "web")
    wait_for(lambda: b"line-3" in cli_bytes(home, "logs", f"{home.namespace}/{pod}", "-c", "main"))

    # events: Created and Started per container, SuccessfulCreate on the DaemonSet (kubectl get events)
    ev = cli(home, "events")
    assert ev.returncode == 0, ev.stderr
    lines = ev.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert re.search(rf"Normal\s+Created\s+pod/{pod}\s+Created container: main", ev.stdout), ev.stdout
    assert re.search(rf"Normal\s+Started\s+pod/{pod}\s+Started container side", ev.stdout), ev.stdout
    assert re.search(rf"Normal\s+SuccessfulCreate\s+daemonset/web\s+Created pod: {pod}", ev.stdout)
    only = cli(home, "events", "--for", f"daemonset/{home.namespace}/web", "-o", "json")
    items = json.loads(only.stdout)["items"]
    assert [(i["reason"], i["involvedObject"]["kind"]) for i in items] == [("SuccessfulCreate", "DaemonSet")]

    # logs: a container must be named when the pod has two, as kubectl says
    both = cli(home, "logs", f"{home.namespace}/{pod}")
    assert both.returncode == 1
    assert f"a container name must be specified for pod {pod}, choose one of: [main side]" in both.stderr
    assert cli(home, "logs", f"{home.namespace}/{pod}", "-c", "main").stdout == "line-1\nline-2\nline-3\n"
    assert cli(home, "logs", f"{home.namespace}/{pod}", "-c", "main", "--tail", "1").stdout == "line-3\n"
    stamped = cli(home, "logs", f"{home.namespace}/{pod}", "-c", "side", "--timestamps").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z side-car\n", stamped), stamped
    assert cli(home, "logs", f"{home.namespace}/{pod}", "-c", "side", "--since", "1h").stdout == "side-car\n"
    follow = subprocess.Popen(
        [NODEAGENT, "--config", str(home.config), "logs", f"{home.namespace}/{pod}", "-c", "side", "-f"],
        stdout=subprocess.PIPE,
    )
    try:
        assert follow.stdout is not None and follow.stdout.readline() == b"side-car\n"
        assert follow.poll() is None, "-f keeps streaming while the container runs"
    finally:
        follow.terminate()
        follow.wait(timeout=30)
    none = cli(home, "logs", f"{home.namespace}/{pod}", "-c", "main", "--previous")
    assert none.returncode == 1
    assert f'previous terminated container "main" in pod "{pod}" not found' in none.stderr
    gone = cli(home, "logs", f"{home.namespace}/nope")
    assert gone.returncode == 1 and 'pods "nope" not found' in gone.stderr

    # describe pod: kubectl's headings, the state of each container, secrets by reference only
    d = cli(home, "describe", "pod", f"{home.namespace}/{pod}")
    assert d.returncode == 0, d.stderr
    text = d.stdout
    assert "hunter2" not in text
    for want in (
        rf"^Name:\s+{pod}$",
        rf"^Namespace:\s+{home.namespace}$",
        rf"^Node:\s+{home.node}/",
        r"^Labels:\s+app=web$",
        r"^\s+controller-revision-hash=\S+$",
        r"^Status:\s+Running$",
        r"^Controlled By:\s+DaemonSet/web$",
        r"^Containers:$",
        r"^  main:$",
        rf"^    Image:\s+{re.escape(home.image)}$",
        r"^    State:\s+Running$",
        r"^      Started:\s+\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$",
        r"^    Ready:\s+True$",
        r"^    Restart Count:\s+0$",
        r"^    Liveness:\s+exec \[true\] delay=0s timeout=1s period=5s #success=1 #failure=3$",
        r"^      MODE:\s+fast$",
        r"^      PASSWORD:\s+<set to the key 'password' in secret 'creds'>\s+Optional: false$",
        r"^      /data from data \(ro\)$",
        r"^Conditions:$",
        r"^  Type\s+Status$",
        r"^  ContainersReady\s+True$",
        r"^  PodScheduled\s+True$",
        r"^    Type:\s+EmptyDir \(a temporary directory that shares a pod's lifetime\)$",
        r"^Events:$",
        r"^  Normal\s+Started\s+\S+\s+nodeagent\s+Started container main$",
    ):
        assert re.search(want, text, re.M), (want, text)

    ds = cli(home, "describe", "ds", f"{home.namespace}/web")
    assert ds.returncode == 0, ds.stderr
    for want in (
        r"^Selector:\s+app=web$",
        r"^Desired Number of Nodes Scheduled: 1$",
        r"^Number of Nodes Scheduled with Available Pods: 1$",
        r"^Pods Status:\s+1 Running / 0 Waiting / 0 Succeeded / 0 Failed$",
        r"^  Normal\s+SuccessfulCreate\s+\S+\s+nodeagent\s+Created pod: ",
    ):
        assert re.search(want, ds.stdout, re.M), (want, ds.stdout)
    missing = cli(home, "describe", "ds", f"{home.namespace}/nope")
    assert missing.returncode == 1 and 'daemonsets.apps "nope" not found' in missing.stderr

    assert cli(home, "delete", "pod", f"{home.namespace}/{pod}").returncode == 0
    killed = cli(home, "events", "--for", f"pod/{home.namespace}/{pod}").stdout
    assert re.search(rf"Normal\s+Killing\s+pod/{pod}\s+Stopping container main", killed), killed
    assert re.search(rf"Normal\s+Killing\s+pod/{pod}\s+Stopping container side", killed), killed


def cli_bytes(h: Home, *args: str) -> bytes:
    return cli(h, *args).stdout.encode()


def test_logs_previous_after_a_crash_and_describe_shows_last_state(home: Home, tmp_path: Path) -> None:
    """Attempt 0 prints its id and crashes (exit 3); attempt 1 prints another and keeps running. The GC
    keeps attempt 0, so `logs --previous` reads it and describe shows it as Last State."""
    marker = tmp_path / "marker"
    command = (
        'echo "run-$(cat /proc/sys/kernel/random/uuid)"; '
        "if [ -e /m/crashed ]; then exec sleep 1000000; fi; touch /m/crashed; exit 3"
    )
    home.put(
        "crash",
        home.ds(
            "crash",
            pod={
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    _app("main", home.image, command, volumeMounts=[{"name": "m", "mountPath": "/m"}])
                ],
                "volumes": [{"name": "m", "hostPath": {"path": str(marker), "type": "DirectoryOrCreate"}}],
            },
        ),
    )
    assert cli(home, "sync").returncode == 0
    wait_for(lambda: any(c.state == "exited" for c in home.containers()))
    assert cli(home, "sync").returncode == 0  # the first crash is restarted at once
    wait_for(lambda: any(c.running and c.labels[identity.LABEL_ATTEMPT] == "1" for c in home.containers()))
    pod = f"{home.namespace}/{pod_name(home, 'crash')}"
    wait_for(lambda: cli(home, "logs", pod).stdout.startswith("run-"))
    current, previous = cli(home, "logs", pod).stdout, cli(home, "logs", pod, "--previous").stdout
    assert re.fullmatch(r"run-[0-9a-f-]{36}\n", current) and re.fullmatch(r"run-[0-9a-f-]{36}\n", previous)
    assert current != previous, "--previous reads the attempt that crashed, not the running one"

    again = cli(home, "sync")  # the GC keeps the dead attempt (one per container)
    assert again.returncode == 0 and "remove" not in again.stdout
    assert cli(home, "logs", pod, "--previous").stdout == previous

    text = cli(home, "describe", "pod", pod).stdout
    for want in (
        r"^    State:\s+Running$",
        r"^    Last State:\s+Terminated$",
        r"^      Reason:\s+Error$",
        r"^      Exit Code:\s+3$",
        r"^      Finished:\s+\w{3}, ",
        r"^    Restart Count:\s+1$",
    ):
        assert re.search(want, text, re.M), (want, text)


def test_describe_and_events_show_a_hostpath_type_error_as_failed_mount(home: Home) -> None:
    home.put(
        "badpath",
        home.ds(
            "badpath",
            pod={"volumes": [{"name": "h", "hostPath": {"path": str(home.root), "type": "File"}}]},
            container={"volumeMounts": [{"name": "h", "mountPath": "/h"}]},
        ),
    )
    assert cli(home, "sync").returncode == 1
    pod = pod_name(home, "badpath")
    message = (
        f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: {home.root} is not a file'
    )
    ev = cli(home, "events", "--for", f"pod/{home.namespace}/{pod}")
    assert re.search(rf"Warning\s+FailedMount\s+pod/{pod}\s+{re.escape(message)}", ev.stdout), ev.stdout

    text = cli(home, "describe", "pod", f"{home.namespace}/{pod}").stdout
    for want in (
        r"^Status:\s+Pending$",
        r"^    State:\s+Waiting$",
        r"^      Reason:\s+CreateContainerConfigError$",
        r"^    Ready:\s+False$",
        r"^  Ready\s+False$",
        r"^    Type:\s+HostPath \(bare host directory volume\)$",
        r"^    HostPathType:\s+File$",
        rf"^  Warning\s+FailedMount\s+\S+\s+nodeagent\s+{re.escape(message)}, it's a Directory$",
    ):
        assert re.search(want, text, re.M), (want, text)


def test_fleet_events_and_kube_state_metrics_on_serve(home: Home, tmp_path: Path) -> None:
    """A node's report carries its events and status; serve shows the events newest first with their node,
    and its /metrics the kube-state-metrics series summed over the fleet."""
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    server = start_serve(mdir)
    try:
        home.put("web", home.ds("web"))
        a, _ = home.agent()
        assert not a.reconcile().failed
        wait_for(lambda: any(c.running for c in home.containers()))
        result = a.reconcile()  # the status of a pass is what it observed before acting
        doc = cli_mod.node_report(a, result)
        assert {e["reason"] for e in doc["events"]} >= {"Created", "Started", "SuccessfulCreate"}
        url = f"{server.url}/nodes/{home.node}/status"
        resp = http.request(
            "POST", url, body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
        )
        assert resp.status == 204

        out = cli(home, "events", "--server", server.url)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == [
            "NAMESPACE",
            "LAST",
            "SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "NODE",
            "MESSAGE",
        ]
        assert all(home.node in line for line in lines[1:]) and len(lines) == 1 + len(doc["events"])
        items = json.loads(cli(home, "events", "--server", server.url, "-o", "json").stdout)["items"]
        stamps = [i["lastTimestamp"] for i in items]
        assert stamps == sorted(stamps, reverse=True)

        text = http.request("GET", server.url + "/metrics").body.decode()
        ds = f'daemonset="web",namespace="{home.namespace}"'
        assert f"kube_daemonset_status_desired_number_scheduled{{{ds}}} 1.0" in text
        assert f"kube_daemonset_status_number_ready{{{ds}}} 1.0" in text
        assert f'kube_node_status_condition{{condition="Ready",node="{home.node}",status="true"}} 1.0' in text
        assert re.search(
            rf'kube_pod_status_ready\{{condition="true",namespace="{home.namespace}",pod="web-', text
        )
    finally:
        server.stop()
