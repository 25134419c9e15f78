"""`describe`'s pure parts: kubectl's tabwriter alignment, probe and env lines, container states."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nodeagent import runtime as rt
from nodeagent.agent import describe, events, plan, status
from nodeagent.k8s import model
from tests.support.planning import DESIRED, NOW, container_for, make_ds, make_node


def test_tabwriter_aligns_blocks_of_consecutive_lines_like_go() -> None:
    lines = ["Name:\tweb", "Namespace:\tdefault", "IPs:", "  IP:\t10.0.0.1", "Controlled By:\tDaemonSet/web"]
    assert describe.tabwrite(lines) == [
        "Name:       web",
        "Namespace:  default",
        "IPs:",
        "  IP:           10.0.0.1",
        "Controlled By:  DaemonSet/web",
    ]
    nested = ["  Type\tStatus", "  Ready\tTrue", "  PodScheduled\tTrue"]
    assert describe.tabwrite(nested) == [
        "  Type          Status",
        "  Ready         True",
        "  PodScheduled  True",
    ]


@pytest.mark.parametrize(
    ("handler", "text"),
    [
        (model.ExecAction(("cat", "/tmp/ok")), "exec [cat /tmp/ok]"),
        (model.HTTPGetAction(port=8080, path="/healthz"), "http-get http://:8080/healthz"),
        (model.HTTPGetAction(port="web", path="/", scheme="HTTPS"), "https://:web/"),
        (model.TCPSocketAction(port=53), "tcp-socket :53"),
    ],
)
def test_probe_lines_are_kubectls(handler: model.ProbeHandler, text: str) -> None:
    p = model.Probe(
        handler, initial_delay_seconds=5, timeout_seconds=2, period_seconds=90, failure_threshold=4
    )
    got = describe.probe_text(p)
    assert text in got
    assert got.endswith("delay=5s timeout=2s period=1m30s #success=1 #failure=4")


def _pod_with(container: model.Container) -> plan.DesiredPod:
    spec = replace(DESIRED.template.spec, containers=(container,))
    return replace(DESIRED, template=replace(DESIRED.template, spec=spec))


def test_env_shows_references_never_secret_values() -> None:
    c = model.Container(
        name="main",
        image="busybox:1",
        env=(
            model.EnvVar("PLAIN", "a\nb"),
            model.EnvVar(
                "PW", value_from=model.EnvVarSource(secret_key_ref=model.KeySelector("s", "k", True))
            ),
            model.EnvVar(
                "CM", value_from=model.EnvVarSource(config_map_key_ref=model.KeySelector("cm", "x"))
            ),
            model.EnvVar(
                "NODE", value_from=model.EnvVarSource(field_ref=model.ObjectFieldSelector("spec.nodeName"))
            ),
        ),
        env_from=(model.EnvFromSource(secret_ref=model.LocalObjectReference("all")),),
    )
    facts = describe.PodFacts(desired=_pod_with(c), observed=None, status=None, node_name="n")
    text = describe.describe_pod(facts, NOW)
    assert "      PLAIN:  a\n              b\n" in text
    assert "      PW:     <set to the key 'k' in secret 's'>       Optional: true\n" in text
    assert "      CM:     <set to the key 'x' of config map 'cm'>  Optional: false\n" in text
    assert "      NODE:    (v1:spec.nodeName)\n" in text
    assert "      all  Secret  Optional: false\n" in text
    assert "    State:          Waiting\n      Reason:       ContainerCreating\n" in text
    assert "Events:            <none>\n" in text


def _status(cid: str, state: str, reason: str = "") -> status.ContainerStatus:
    return status.ContainerStatus("main", state, reason, state == "running", 4, 1, "busybox:1", cid)


def test_a_crash_loop_is_waiting_with_the_crash_as_last_state() -> None:
    crashed = container_for(DESIRED, state="exited", exit_code=1, attempt=4, finished=NOW - 5)
    view = describe.ContainerView(
        DESIRED.template.spec.containers[0], crashed, None, _status(crashed.id, "waiting", "CrashLoopBackOff")
    )
    inspect = {
        crashed.id: {
            "State": {
                "ExitCode": 1,
                "StartedAt": "2026-01-01T00:00:00.5Z",
                "FinishedAt": "2026-01-01T00:00:01Z",
            }
        }
    }
    state, last = describe.states(view, inspect, "")
    assert (state.kind, state.reason) == ("Waiting", "CrashLoopBackOff")
    assert last is not None and (last.kind, last.reason, last.exit_code) == ("Terminated", "Error", 1)
    assert describe.rfc1123z(last.finished) == "Thu, 01 Jan 2026 00:00:01 +0000"


def test_a_running_container_has_its_previous_attempt_as_last_state() -> None:
    old = container_for(DESIRED, state="exited", exit_code=137, attempt=0, finished=NOW - 50)
    cur = container_for(DESIRED, attempt=1)
    view = describe.ContainerView(DESIRED.template.spec.containers[0], cur, old, _status(cur.id, "running"))
    inspect = {old.id: {"State": {"ExitCode": 137, "OOMKilled": True}}}
    state, last = describe.states(view, inspect, "")
    assert state.kind == "Running"
    assert last is not None and (last.reason, last.exit_code) == ("OOMKilled", 137)


def test_events_section_counts_repeats() -> None:
    ref = events.ObjectRef("Pod", DESIRED.namespace, DESIRED.name)
    ev = events.Event(events.WARNING, "BackOff", "Back-off restarting", ref, 3, NOW - 120, NOW - 10, "n")
    facts = describe.PodFacts(desired=DESIRED, observed=None, status=None, node_name="n", events=[ev])
    text = describe.describe_pod(facts, NOW)
    assert "  Type     Reason   Age               From       Message\n" in text
    assert "  Warning  BackOff  10s (x3 over 2m)  nodeagent  Back-off restarting\n" in text


# --- a pod not (fully) created: each container waits with its reason ---------------------------------


def _plan(ds: model.DaemonSet, observed: list[rt.ObservedContainer], reason: str) -> plan.Plan:
    key = plan.desired_daemon_pod(ds).key
    return plan.plan(
        plan.Inputs(
            node=make_node(),
            daemonsets=(plan.DaemonSetInput(ds, "test"),),
            static_pods=(),
            observed=tuple(observed),
            now=NOW,
            failures={key: plan.Failure(1, NOW - 1, reason, "m")},
        )
    )


def test_a_pod_whose_init_image_cannot_be_pulled_waits_in_it_and_its_app_in_pod_initializing() -> None:
    ds = make_ds(image="127.0.0.1:1/nope:1")
    spec = replace(ds.spec.template.spec, init_containers=(model.Container("setup", "127.0.0.1:1/nope:1"),))
    ds = replace(ds, spec=replace(ds.spec, template=replace(ds.spec.template, spec=spec)))
    p = _plan(ds, [], "ErrImagePull")
    [pod] = status.daemonset_status(p.daemonsets[0], p.waiting, NOW).pods
    assert [(c.name, c.state, c.reason) for c in pod.init_containers] == [
        ("setup", "waiting", "ImagePullBackOff")
    ]
    assert [(c.name, c.state, c.reason) for c in pod.containers] == [("main", "waiting", "PodInitializing")]
    facts = describe.PodFacts(
        desired=p.daemonsets[0].desired, observed=None, status=pod, node_name="n", waiting_reason=pod.status
    )
    text = describe.describe_pod(facts, NOW)
    assert "  setup:\n" in text and "      Reason:       ImagePullBackOff\n" in text
    assert "      Reason:       PodInitializing\n" in text, text


def test_a_container_the_pod_lacks_shows_why_beside_the_running_one() -> None:
    """One container's image cannot be pulled, the other runs: kubectl shows 1/2 ImagePullBackOff."""
    ds = make_ds(containers=("main", "side"))
    desired = plan.desired_daemon_pod(ds)
    side = container_for(desired, "side")
    p = _plan(ds, [side], "ErrImagePull")
    shown = status.daemonset_status(p.daemonsets[0], p.waiting, NOW)
    [pod] = shown.pods
    assert [(c.name, c.state, c.reason) for c in pod.containers] == [
        ("side", "running", ""),
        ("main", "waiting", "ImagePullBackOff"),
    ]
    assert (pod.status, pod.phase, pod.ready) == ("ImagePullBackOff", "Running", False)
    assert shown.current_number_scheduled == 1 and shown.number_ready == 0
