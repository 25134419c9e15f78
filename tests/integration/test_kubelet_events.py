"""The kubelet's image and hook events, and the waiting reasons of containers never created, on the real
engine: `Pulled` when a pod starts (an image already present, or pulled from a registry on loopback),
`FailedPreStopHook` when a preStop exec hook fails, and, for a pod whose image cannot be pulled,
kube-state-metrics' `kube_pod_container_status_waiting_reason` on `run`'s /metrics, in `status` and in
`describe`."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from subprocess import Popen
from typing import Any

import docker
import pytest
import yaml

from nodeagent.agent import identity
from tests.support.agenthome import Home, cli, start_run
from tests.support.net import free_port
from tests.support.slowregistry import SlowRegistry
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

UNPULLABLE = "127.0.0.1:1/nodeagent-test/unpullable:1"  # nothing listens on port 1: refused at once


def pod_of(h: Home, ds: str) -> str:
    doc = json.loads(cli(h, "status", "-o", "json").stdout)
    [d] = [d for d in doc["daemonSets"] if d["name"] == ds]
    return str(d["pods"][0]["name"])


def events_json(h: Home, pod: str) -> list[dict[str, Any]]:
    out = cli(h, "events", "--for", f"pod/{h.namespace}/{pod}", "-o", "json")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["items"])


def test_a_started_pod_has_pulled_before_created_and_started(home: Home) -> None:
    home.put("web", home.ds("web", pull_policy="IfNotPresent"))
    done = cli(home, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    pod = pod_of(home, "web")
    items = events_json(home, pod)
    assert [i["reason"] for i in items] == ["Pulled", "Created", "Started"], items
    pulled = items[0]
    assert pulled["type"] == "Normal"
    assert pulled["message"] == f'Container image "{home.image}" already present on machine'
    assert pulled["involvedObject"]["fieldPath"] == "spec.containers{main}"
    text = cli(home, "events").stdout
    assert re.search(rf"Normal\s+Pulled\s+pod/{pod}\s+Container image \"{re.escape(home.image)}\"", text), (
        text
    )


@pytest.fixture
def registry() -> Iterator[SlowRegistry]:
    r = SlowRegistry(layer_size=200_000, delay=0.0)
    yield r
    r.close()


def test_an_image_pulled_for_a_pod_is_pulling_then_successfully_pulled(
    home: Home, registry: SlowRegistry
) -> None:
    """The registry's image has no program in it, so the container cannot start; the pull events come first,
    as the kubelet records them before it creates the container."""
    image = f"{registry.address}/nodeagent-test-pulled:{home.namespace}"
    home.put("pulled", home.ds("pulled", container={"image": image, "imagePullPolicy": "IfNotPresent"}))
    client = docker.from_env()
    try:
        cli(home, "sync")  # the create (or its start) fails: the image has no shell
        pod = pod_of(home, "pulled")
        items = events_json(home, pod)
        reasons = [i["reason"] for i in items]
        assert reasons[:2] == ["Pulling", "Pulled"], items
        assert items[0]["message"] == f'Pulling image "{image}"'
        took = r"\d+(\.\d+)?(ms|s)|\d+m\d+(\.\d+)?s"
        pattern = (
            rf'Successfully pulled image "{re.escape(image)}" in ({took}) \(({took}) including waiting\)'
        )
        assert re.fullmatch(pattern, items[1]["message"]), items[1]["message"]
        assert items[1]["type"] == "Normal"
    finally:
        for c in home.containers():
            home.engine.remove(c.id)
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image, force=True)
        client.close()


def test_a_failed_pre_stop_hook_is_a_failed_pre_stop_hook_event(home: Home) -> None:
    hook = {"preStop": {"exec": {"command": ["false"]}}}
    home.put("hooked", home.ds("hooked", container={"lifecycle": hook}))
    assert cli(home, "sync").returncode == 0
    pod = pod_of(home, "hooked")
    (home.ds_dir / "hooked.yaml").unlink()  # withdrawn: the pod is deleted, its preStop hook runs first
    done = cli(home, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not home.containers())
    items = events_json(home, pod)
    [failed] = [i for i in items if i["reason"] == "FailedPreStopHook"]
    uid = identity.pod_uid(identity.owner_daemonset(home.namespace, "hooked"), pod)
    assert failed["type"] == "Warning"
    assert failed["involvedObject"]["fieldPath"] == "spec.containers{main}"
    assert failed["message"] == (
        f'Exec lifecycle hook ([false]) for Container "main" in Pod "{pod}_{home.namespace}({uid})" failed'
        " - error: command ['false'] exited with 1"
    )
    text = cli(home, "events").stdout
    assert re.search(rf"Warning\s+FailedPreStopHook\s+pod/{pod}\s+Exec lifecycle hook \(\[false\]\)", text), (
        text
    )


def _metrics(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())
    except (OSError, urllib.error.URLError):
        return ""


def test_a_pod_whose_image_cannot_be_pulled_has_a_waiting_reason_metric(
    home: Home, agent_proc: list[Popen[bytes]]
) -> None:
    """kube-state-metrics' waiting_reason for a container never created (ErrImagePull, then
    ImagePullBackOff), on `run`'s /metrics; `status` and `describe` say the same."""
    port = free_port()
    doc = yaml.safe_load(home.config.read_text())
    doc["healthz"] = {"enabled": True, "address": f"127.0.0.1:{port}"}
    home.config.write_text(yaml.safe_dump(doc))
    home.put(
        "unpullable", home.ds("unpullable", container={"image": UNPULLABLE, "imagePullPolicy": "Always"})
    )
    start_run(home, agent_proc)
    series = re.compile(
        r'kube_pod_container_status_waiting_reason\{container="main",namespace="'
        + re.escape(home.namespace)
        + r'",pod="(unpullable-[0-9a-f]+)",reason="(ErrImagePull|ImagePullBackOff)",uid="([0-9a-f]+)"\} 1\.0'
    )
    text = ""

    def seen() -> bool:
        nonlocal text
        text = _metrics(f"http://127.0.0.1:{port}/metrics")
        return series.search(text) is not None

    wait_for(seen, timeout=60)
    found = series.search(text)
    assert found is not None
    pod, uid = found.group(1), found.group(3)
    assert uid == identity.pod_uid(identity.owner_daemonset(home.namespace, "unpullable"), pod)
    assert not home.containers(), "no container was ever created"

    waiting = re.compile(r"^    State:\s+Waiting\n      Reason:\s+(ErrImagePull|ImagePullBackOff)$", re.M)

    def shown() -> bool:  # a retry in flight shows ContainerCreating for a moment
        status = json.loads(cli(home, "status", "-o", "json").stdout)
        [d] = [d for d in status["daemonSets"] if d["name"] == "unpullable"]
        [c] = d["pods"][0]["containers"]
        described = cli(home, "describe", "pod", f"{home.namespace}/{pod}").stdout
        return (
            (c["name"], c["state"]) == ("main", "waiting")
            and c["reason"] in ("ErrImagePull", "ImagePullBackOff")
            and waiting.search(described) is not None
        )

    wait_for(shown, timeout=60, what="status and describe showing the pull's waiting reason")


def test_run_records_pulled_and_failed_pre_stop_hook_of_work_its_workers_finished(
    home: Home, agent_proc: list[Popen[bytes]]
) -> None:
    """`run` derives events from outcomes its workers finished, a pass later, when the deleted containers
    are gone from the engine: the outcomes carry what the events need."""
    hook = {"preStop": {"exec": {"command": ["false"]}}}
    home.put("hooked", home.ds("hooked", container={"lifecycle": hook}))
    start_run(home, agent_proc)
    wait_for(lambda: any(c.running for c in home.containers()), timeout=60)
    pod = pod_of(home, "hooked")
    wait_for(lambda: "Pulled" in {i["reason"] for i in events_json(home, pod)}, timeout=60)
    (home.ds_dir / "hooked.yaml").unlink()
    wait_for(lambda: not home.containers(), timeout=60)
    wait_for(lambda: "FailedPreStopHook" in {i["reason"] for i in events_json(home, pod)}, timeout=60)
    [failed] = [i for i in events_json(home, pod) if i["reason"] == "FailedPreStopHook"]
    assert failed["message"].startswith('Exec lifecycle hook ([false]) for Container "main" in Pod "')


def _app(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "exec sleep 1000000"],
    }


def test_run_records_killing_for_each_container_of_a_pod_it_deleted(
    home: Home, agent_proc: list[Popen[bytes]]
) -> None:
    """A withdrawn pod under `run`: its worker stops the containers, and the pass that records the outcome
    lists the engine after they are gone; the delete's outcome names them (`Stopping container NAME`, the
    kubelet's killContainer message), one Killing event on each container's fieldPath. The DaemonSet has
    its SuccessfulCreate (recorded when the pod already shows in the engine) and SuccessfulDelete."""
    pod_spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [_app("main", home.image), _app("side", home.image)],
    }
    home.put("two", home.ds("two", pod=pod_spec))
    start_run(home, agent_proc)
    wait_for(lambda: sum(c.running for c in home.containers()) == 3, timeout=60, what="main, side, sandbox")
    pod = pod_of(home, "two")
    (home.ds_dir / "two.yaml").unlink()
    wait_for(lambda: not home.containers(), timeout=60, what="the pod deleted")

    def killing() -> list[tuple[str, str, str]]:
        return sorted(
            (i["type"], i["message"], i["involvedObject"].get("fieldPath", ""))
            for i in events_json(home, pod)
            if i["reason"] == "Killing"
        )

    wait_for(lambda: len(killing()) == 2, timeout=60, what="Killing of main and side")
    assert killing() == [
        ("Normal", "Stopping container main", "spec.containers{main}"),
        ("Normal", "Stopping container side", "spec.containers{side}"),
    ]
    text = cli(home, "events", "--for", f"pod/{home.namespace}/{pod}").stdout
    assert re.search(rf"Normal\s+Killing\s+pod/{pod}\s+Stopping container side", text), text
    ds = cli(home, "events", "--for", f"daemonset/{home.namespace}/two", "-o", "json")
    assert sorted((i["reason"], i["message"]) for i in json.loads(ds.stdout)["items"]) == [
        ("SuccessfulCreate", f"Created pod: {pod}"),  # recorded a pass later too, when the pod is listed
        ("SuccessfulDelete", f"Deleted pod: {pod}"),
    ]
