"""The executor on the in-memory runtime (Docker's semantics, no engine): concurrent pods with the phase
order kept, the sandbox and init containers, lifecycle hooks recorded on containers, and the ConfigMap/
Secret digest the agent refreshes files on."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent import runtime as rt
from nodeagent.agent import execute, identity, localimage, plan, status
from nodeagent.k8s import model
from nodeagent.runtime import memory

IMAGE = "busybox:test"


def pod_spec(
    *names: str, inits: tuple[str, ...] = (), lifecycle: model.Lifecycle | None = None
) -> model.PodSpec:
    return model.PodSpec(
        containers=tuple(model.Container(name=n, image=IMAGE, lifecycle=lifecycle) for n in names),
        init_containers=tuple(model.Container(name=n, image=IMAGE) for n in inits),
        termination_grace_period_seconds=1,
    )


def daemonset(name: str, spec: model.PodSpec) -> model.DaemonSet:
    labels = {"app": name}
    return model.DaemonSet(
        metadata=model.ObjectMeta(name=name, namespace="ns"),
        spec=model.DaemonSetSpec(
            selector=model.LabelSelector(match_labels=labels),
            template=model.PodTemplateSpec(metadata=model.ObjectMeta(name="", labels=labels), spec=spec),
        ),
    )


class Ordered(memory.MemoryRuntime):
    """The in-memory runtime, recording (call, pod label, role) in the order calls happen."""

    def __init__(self, **kw: object) -> None:
        super().__init__(images=(IMAGE, localimage.PAUSE_TAG), node_name="node-a", **kw)  # type: ignore[arg-type]
        self.log: list[tuple[str, str, str]] = []
        self._log_lock = threading.Lock()

    def _record(self, call: str, ref: str) -> None:
        with self.lock:
            c = self.find(ref)
            pod = c.labels.get(identity.LABEL_POD_NAME, "") if c is not None else ""
            role = c.labels.get(identity.LABEL_ROLE, identity.ROLE_APP) if c is not None else ""
        with self._log_lock:
            self.log.append((call, pod, role))

    def create(self, spec: rt.ContainerCreate) -> str:
        cid = super().create(spec)
        self._record("create", cid)
        return cid

    def stop(self, container_id: str, timeout: int) -> None:
        self._record("stop", container_id)
        super().stop(container_id, timeout)

    def exec(self, container_id: str, command: tuple[str, ...], timeout: float) -> int:
        self._record("exec", container_id)
        return super().exec(container_id, command, timeout)


def inputs(dss: list[model.DaemonSet], observed: list[rt.ObservedContainer]) -> plan.Inputs:
    from nodeagent.k8s import node

    return plan.Inputs(
        node=node.build("node-a", {}, (), False),
        daemonsets=tuple(plan.DaemonSetInput(d) for d in dss),
        static_pods=(),
        observed=tuple(observed),
        now=time.time(),
    )


def executor(runtime: rt.ContainerRuntime, tmp_path: Path, **kw: object) -> execute.Executor:
    host = execute.HostInfo(node_name="node-a", host_ip="127.0.0.1", state_dir=str(tmp_path))
    return execute.Executor(runtime, host, **kw)  # type: ignore[arg-type]


def test_pods_are_applied_concurrently_deletes_first_and_one_failure_aborts_nothing(tmp_path: Path) -> None:
    runtime = Ordered()
    old = [daemonset(f"old{i}", pod_spec("main")) for i in range(5)]
    ex = executor(runtime, tmp_path)
    assert all(o.ok for o in ex.apply(plan.plan(inputs(old, [])).actions))
    new = [daemonset(f"new{i}", pod_spec("main")) for i in range(20)]
    broken = daemonset("broken", replace(pod_spec("main"), containers=(model.Container("main", "absent:1"),)))
    runtime.log.clear()
    p = plan.plan(inputs([*new, broken], runtime.list_managed()))
    outcomes = executor(runtime, tmp_path).apply(p.actions)
    assert [o.action for o in outcomes] == list(p.actions), "outcomes come back in the plan's order"
    failed = [o for o in outcomes if not o.ok]
    assert [o.action.pod for o in failed] == [plan.desired_daemon_pod(broken).name]
    assert sum(o.ok and o.action.verb == plan.CREATE for o in outcomes) == 20
    last_stop = max(i for i, (call, *_) in enumerate(runtime.log) if call == "stop")
    first_create = min(i for i, (call, *_) in enumerate(runtime.log) if call == "create")
    assert last_stop < first_create, "every delete finishes before the first create"


def test_single_worker_gives_the_same_result(tmp_path: Path) -> None:
    dss = [daemonset(f"d{i}", pod_spec("main")) for i in range(4)]
    results = []
    for workers in (1, execute.WORKERS):
        runtime = Ordered()
        outcomes = executor(runtime, tmp_path, workers=workers).apply(plan.plan(inputs(dss, [])).actions)
        assert all(o.ok for o in outcomes) and len(runtime.list_managed()) == 4
        results.append([(o.action.verb, o.action.pod, o.ok) for o in outcomes])
    assert results[0] == results[1]


def test_multi_container_pod_gets_a_sandbox_that_its_containers_join(tmp_path: Path) -> None:
    runtime = Ordered()
    ds = daemonset("m", pod_spec("a", "b"))
    assert all(o.ok for o in executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions))
    pod = plan.group_pods(runtime.list_managed())[("ns", plan.desired_daemon_pod(ds).name)]
    assert pod.sandbox is not None and pod.sandbox.image == localimage.PAUSE_TAG
    sandbox = runtime.by_name(pod.sandbox.name)
    assert sandbox is not None
    for c in pod.containers:
        made = runtime.by_name(c.name)
        assert made is not None and made.spec.network_mode == f"container:{sandbox.spec.name}"
    assert runtime.log[0] == ("create", pod.name, identity.ROLE_SANDBOX), "the sandbox is made first"
    # deleted whole, the sandbox last
    runtime.log.clear()
    assert all(
        o.ok for o in executor(runtime, tmp_path).apply(plan.plan(inputs([], runtime.list_managed())).actions)
    )
    assert runtime.list_managed() == []
    stopped = [call for call in runtime.log if call[0] == "stop"]
    assert len(stopped) == 3 and stopped[-1][2] == identity.ROLE_SANDBOX


def test_init_containers_get_their_role_and_index_and_the_sandbox(tmp_path: Path) -> None:
    runtime = Ordered()
    ds = daemonset("i", pod_spec("a", inits=("setup",)))
    [outcome] = executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    assert outcome.ok and outcome.action.verb == plan.INIT
    pod = plan.group_pods(runtime.list_managed())[("ns", plan.desired_daemon_pod(ds).name)]
    [init] = pod.init_containers
    assert init.labels[identity.LABEL_ROLE] == identity.ROLE_INIT
    assert init.labels[identity.LABEL_INIT_INDEX] == "0"
    assert pod.sandbox is not None and pod.containers == ()
    # shown as kubectl shows it while the init container runs
    p = plan.plan(inputs([ds], runtime.list_managed()))
    shown = status.daemonset_status(p.daemonsets[0], p.waiting, time.time())
    assert [x.status for x in shown.pods] == ["Init:0/1"]
    assert shown.current_number_scheduled == 1


def test_pre_stop_hook_is_recorded_on_the_container_and_run_before_the_stop(tmp_path: Path) -> None:
    runtime = Ordered()
    hook = model.Lifecycle(pre_stop=model.LifecycleHandler(model.ExecAction(("touch", "/x"))))
    ds = daemonset("h", pod_spec("main", lifecycle=hook))
    executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    [c] = runtime.list_managed()
    assert json.loads(c.labels[plan.LABEL_PRE_STOP]) == {"exec": ["touch", "/x"]}
    [delete] = plan.plan(inputs([], [c])).actions
    assert delete.pre_stop == ((c.id, c.labels[plan.LABEL_PRE_STOP]),)
    runtime.log.clear()
    [done] = executor(runtime, tmp_path).apply([delete])
    assert done.ok and runtime.calls.get("exec") == 1 and runtime.list_managed() == []
    assert [call for call, *_ in runtime.log] == ["exec", "stop"], "the hook runs before the stop"


def test_failed_post_start_hook_kills_the_container(tmp_path: Path) -> None:
    runtime = Ordered()
    runtime.exec_results[("false",)] = 1
    hook = model.Lifecycle(post_start=model.LifecycleHandler(model.ExecAction(("false",))))
    ds = daemonset("p", pod_spec("main", lifecycle=hook))
    [outcome] = executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    assert not outcome.ok and outcome.reason == execute.POST_START_HOOK_ERROR
    [c] = runtime.list_managed()
    assert not c.running


def test_refs_digest_changes_with_the_referenced_objects_only() -> None:
    spec = replace(
        pod_spec("main"),
        volumes=(
            model.Volume("c", model.ConfigMapVolumeSource(name="cm")),
            model.Volume(
                "p",
                model.ProjectedVolumeSource(
                    sources=(model.VolumeProjection(secret=model.SecretVolumeSource(secret_name="s")),)
                ),
            ),
        ),
    )
    assert execute.volume_refs(spec) == [("ConfigMap", "cm"), ("Secret", "s")]
    objects: dict[tuple[str, str], dict[str, str | bytes]] = {("ConfigMap", "cm"): {"k": "1"}}

    def lookup(kind: str, ns: str, name: str) -> dict[str, str | bytes] | None:
        return objects.get((kind, name))

    first = execute.refs_digest(spec, "ns", lookup)
    objects[("ConfigMap", "other")] = {"x": "y"}
    assert execute.refs_digest(spec, "ns", lookup) == first
    objects[("Secret", "s")] = {"token": b"abc"}
    second = execute.refs_digest(spec, "ns", lookup)
    assert second != first and "abc" not in second
    objects[("Secret", "s")] = {"token": b"abd"}
    assert execute.refs_digest(spec, "ns", lookup) != second


def test_hook_labels_for_http_get_with_a_named_port_and_sleep() -> None:
    get = model.HTTPGetAction(port="http", path="/quit")
    c = model.Container(
        name="web",
        image=IMAGE,
        ports=(model.ContainerPort(container_port=8080, name="http"),),
        lifecycle=model.Lifecycle(
            pre_stop=model.LifecycleHandler(get), post_start=model.LifecycleHandler(model.ExecAction(()), 3)
        ),
    )
    spec = replace(pod_spec("web"), containers=(c,), host_network=True)
    doc = json.loads(execute.hook_label(c, spec, "", "preStop"))
    assert doc["httpGet"]["port"] == 8080 and doc["httpGet"]["path"] == "/quit" and doc["host"] == "127.0.0.1"
    assert json.loads(execute.hook_label(c, spec, "", "postStart")) == {"sleep": 3}


class SlowStop(Ordered):
    """Each stop takes `seconds` (a SIGTERM-ignoring PID 1 waiting out its grace), counted in flight."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.in_flight = 0
        self.most_at_once = 0

    def stop(self, container_id: str, timeout: int) -> None:
        with self._log_lock:
            self.in_flight += 1
            self.most_at_once = max(self.most_at_once, self.in_flight)
        time.sleep(self.seconds)
        with self._log_lock:
            self.in_flight -= 1
        super().stop(container_id, timeout)


def test_a_pods_containers_stop_in_parallel_and_its_sandbox_last(tmp_path: Path) -> None:
    runtime = SlowStop(0.3)
    ds = daemonset("three", pod_spec("a", "b", "c"))  # more than one container: a sandbox
    [*_] = executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    [delete] = plan.plan(inputs([], runtime.list_managed())).actions
    assert delete.sandbox_id and delete.container_ids[-1] == delete.sandbox_id
    runtime.log.clear()
    [done] = executor(runtime, tmp_path).apply_owner([delete])
    assert done.ok and runtime.list_managed() == []
    assert runtime.most_at_once == 3, "the three app containers stop at once, under one grace period"
    stops = [role for call, _, role in runtime.log if call == "stop"]
    assert stops[-1] == identity.ROLE_SANDBOX and stops.count(identity.ROLE_SANDBOX) == 1


def test_hooks_round_trip_through_their_label_and_a_post_start_sleep_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    get = model.HTTPGetAction(port="http", path="/quit", http_headers=(model.HTTPHeader("X", "1"),))
    c = model.Container(
        name="web", image=IMAGE, ports=(model.ContainerPort(container_port=8080, name="http"),)
    )
    for handler, sleep in ((get, None), (model.ExecAction(("true",)), None), (model.ExecAction(()), 5)):
        lc = model.Lifecycle(pre_stop=model.LifecycleHandler(handler, sleep))
        spec = replace(pod_spec("web"), containers=(replace(c, lifecycle=lc),))
        hook = execute.hook_for(spec.containers[0], spec, "sandbox-x", "preStop")
        assert hook is not None
        assert execute.decode_hook(execute.encode_hook(hook)) == hook
    assert execute.decode_hook("not json") is None and execute.decode_hook('{"httpGet": {}}') is None

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the hook's sleep, recorded instead of slept
    ex = executor(Ordered(), tmp_path)
    assert ex._run_hook("cid", execute.Hook(sleep=3600), execute.POST_START_TIMEOUT) is None
    assert slept == [execute.POST_START_TIMEOUT], "a postStart sleep never hangs the worker"


def test_a_replaced_pod_pulls_its_new_image_before_the_old_pod_is_stopped(tmp_path: Path) -> None:
    """Pull before stop: the old pod keeps running while the successor's image downloads."""

    class Pulls(Ordered):
        def pull(self, image: str, on_progress: object = None) -> None:
            with self._log_lock:
                self.log.append(("pull", image, ""))
            super().pull(image, on_progress)  # type: ignore[arg-type]

    runtime = Pulls(pullable=lambda image: image == "new:1")
    ex = executor(runtime, tmp_path)
    assert all(o.ok for o in ex.apply(plan.plan(inputs([daemonset("web", pod_spec("main"))], [])).actions))
    runtime.log.clear()
    newer = replace(
        pod_spec("main"), containers=(model.Container("main", "new:1", image_pull_policy="IfNotPresent"),)
    )
    p = plan.plan(inputs([daemonset("web", newer)], runtime.list_managed()))
    (unit,) = p.by_owner().values()
    assert all(o.ok for o in executor(runtime, tmp_path).apply_owner(unit))  # the running agent's unit
    calls = [call for call, *_ in runtime.log]
    assert calls.index("pull") < calls.index("stop") < calls.index("create"), runtime.log


# --- what the kubelet records events for: the image, the hooks that failed -----------------------


def test_a_replaced_pods_create_reports_the_pull_made_before_the_stop(tmp_path: Path) -> None:
    """The pull ran before the old pod stopped; the create finds the image present, yet reports that pull
    (Pulling, Pulled "Successfully pulled"), not "already present"."""
    runtime = Ordered(pullable=lambda image: image == "new:1")
    ex = executor(runtime, tmp_path)
    [first] = ex.apply(plan.plan(inputs([daemonset("web", pod_spec("main"))], [])).actions)
    assert first.image is not None and first.image.present and not first.image.pulled
    newer = replace(
        pod_spec("main"), containers=(model.Container("main", "new:1", image_pull_policy="IfNotPresent"),)
    )
    (unit,) = plan.plan(inputs([daemonset("web", newer)], runtime.list_managed())).by_owner().values()
    created = [o for o in executor(runtime, tmp_path).apply_owner(unit) if o.action.verb == plan.CREATE]
    [o] = created
    assert o.ok and o.image is not None and o.image.pulled and not o.image.present
    assert o.image.image == "new:1" and o.image.failure is None


def test_a_failed_pull_and_a_config_error_say_how_the_image_was_got(tmp_path: Path) -> None:
    runtime = Ordered()
    broken = daemonset("b", replace(pod_spec("main"), containers=(model.Container("main", "absent:1"),)))
    [o] = executor(runtime, tmp_path).apply(plan.plan(inputs([broken], [])).actions)
    assert not o.ok and o.reason == execute.ERR_IMAGE_PULL
    assert o.image is not None and o.image.failure is not None and not o.image.pulled
    vol = model.Volume("cfg", model.ConfigMapVolumeSource(name="missing"))
    mount = model.VolumeMount(name="cfg", mount_path="/cfg")
    spec = replace(
        pod_spec("main"), containers=(model.Container("main", IMAGE, volume_mounts=(mount,)),), volumes=(vol,)
    )
    [o] = executor(runtime, tmp_path, lookup=lambda *_: None).apply(
        plan.plan(inputs([daemonset("c", spec)], [])).actions
    )
    assert not o.ok and o.reason == execute.CREATE_CONTAINER_CONFIG_ERROR
    assert o.image is not None and o.image.present, "the image was there before the config failed"


def test_a_failed_pre_stop_hook_is_reported_with_the_kubelets_message(tmp_path: Path) -> None:
    runtime = Ordered()
    runtime.exec_results[("false",)] = 1
    hook = model.Lifecycle(pre_stop=model.LifecycleHandler(model.ExecAction(("false",))))
    ds = daemonset("h", pod_spec("main", "side", lifecycle=hook))
    executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    [delete] = plan.plan(inputs([], runtime.list_managed())).actions
    [done] = executor(runtime, tmp_path).apply([delete])
    assert done.ok and runtime.list_managed() == [], "a failed hook never stops the delete"
    uid = identity.pod_uid(delete.owner, delete.pod)
    assert sorted(done.hooks_failed, key=lambda f: f.container) == [
        execute.HookFailure(
            execute.PRE_STOP,
            name,
            f'Exec lifecycle hook ([false]) for Container "{name}" in Pod "{delete.pod}_ns({uid})" failed'
            " - error: command ['false'] exited with 1",
        )
        for name in ("main", "side")
    ]


def test_a_liveness_restart_reports_its_failed_pre_stop_hook(tmp_path: Path) -> None:
    runtime = Ordered()
    runtime.exec_results[("false",)] = 1
    hook = model.Lifecycle(pre_stop=model.LifecycleHandler(model.ExecAction(("false",))))
    ds = daemonset("h", pod_spec("main", lifecycle=hook))
    executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    [c] = runtime.list_managed()
    restart = plan.Action(
        verb=plan.RESTART,
        namespace="ns",
        pod=c.labels[identity.LABEL_POD_NAME],
        reason="liveness probe failed",
        owner=c.labels[identity.LABEL_OWNER],
        container="main",
        attempt=1,
        desired=plan.desired_daemon_pod(ds),
        container_ids=(c.id,),
        grace_seconds=1,
        pre_stop=((c.id, c.labels[plan.LABEL_PRE_STOP]),),
    )
    [o] = executor(runtime, tmp_path).apply([restart])
    assert o.ok and [(f.hook, f.container) for f in o.hooks_failed] == [(execute.PRE_STOP, "main")]
    assert o.hooks_failed[0].message.startswith('Exec lifecycle hook ([false]) for Container "main" in Pod')


def test_a_failed_post_start_hook_carries_the_kubelets_message(tmp_path: Path) -> None:
    runtime = Ordered()
    runtime.exec_results[("false",)] = 1
    hook = model.Lifecycle(post_start=model.LifecycleHandler(model.ExecAction(("false",))))
    [o] = executor(runtime, tmp_path).apply(
        plan.plan(inputs([daemonset("p", pod_spec("main", lifecycle=hook))], [])).actions
    )
    [f] = o.hooks_failed
    assert f.hook == execute.POST_START and f.container == "main"
    assert f.message.startswith('Exec lifecycle hook ([false]) for Container "main" in Pod "p-')
    assert f.message.endswith("failed - error: command ['false'] exited with 1")


# --- the containers an action stopped (Killing) ----------------------------------------------------


def test_a_delete_names_the_running_containers_it_stopped(tmp_path: Path) -> None:
    """Named by the executor while they exist: `run` records the events a pass later, when they are gone.
    Only running ones (the kubelet kills a pod's running containers), never the sandbox."""
    runtime = Ordered()
    ds = daemonset("k", pod_spec("main", "side", "done"))
    executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    exited = runtime.by_name(
        next(c.name for c in runtime.list_managed() if c.labels[identity.LABEL_CONTAINER_NAME] == "done")
    )
    assert exited is not None
    runtime.exit(exited.id, 0)
    [delete] = plan.plan(inputs([], runtime.list_managed())).actions
    [done] = executor(runtime, tmp_path).apply([delete])
    assert done.ok and runtime.list_managed() == []
    assert sorted(done.stopped, key=lambda s: s.container) == [
        execute.Stopped("main"),
        execute.Stopped("side"),
    ]


def test_a_delete_names_a_running_init_container_as_init(tmp_path: Path) -> None:
    runtime = Ordered()
    ds = daemonset("i", pod_spec("a", inits=("setup",)))
    executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)  # setup runs
    [delete] = plan.plan(inputs([], runtime.list_managed())).actions
    [done] = executor(runtime, tmp_path).apply([delete])
    assert done.ok and done.stopped == (execute.Stopped("setup", init=True),)


def test_a_liveness_restart_names_the_running_container_it_stopped_a_crash_restart_none(
    tmp_path: Path,
) -> None:
    runtime = Ordered()
    ds = daemonset("r", pod_spec("main"))
    executor(runtime, tmp_path).apply(plan.plan(inputs([ds], [])).actions)
    [c] = runtime.list_managed()

    def restart(ids: tuple[str, ...], attempt: int) -> plan.Action:
        return plan.Action(
            verb=plan.RESTART,
            namespace="ns",
            pod=c.labels[identity.LABEL_POD_NAME],
            reason="r",
            owner=c.labels[identity.LABEL_OWNER],
            container="main",
            attempt=attempt,
            desired=plan.desired_daemon_pod(ds),
            container_ids=ids,
            grace_seconds=1,
        )

    [probed] = executor(runtime, tmp_path).apply([restart((c.id,), 1)])
    assert probed.ok and probed.stopped == (execute.Stopped("main"),)
    [new] = [x for x in runtime.list_managed() if x.running]
    runtime.exit(new.id, 1)
    [crashed] = executor(runtime, tmp_path).apply([restart((new.id,), 2)])
    assert crashed.ok and crashed.stopped == (), "an exited container is not killed again"


# --- failures, per container ------------------------------------------------------------------------


def _outcome(container: str, ok: bool, reason: str = "") -> execute.Outcome:
    action = plan.Action(verb=plan.CREATE, namespace="ns", pod="p-1", reason="r", container=container)
    return execute.Outcome(action, ok, reason, "m" if not ok else "")


def test_failures_are_kept_per_container_and_a_success_clears_its_own_only() -> None:
    got = execute.record_failures(
        {}, [_outcome("a", False, execute.ERR_IMAGE_PULL), _outcome("b", True)], now=10.0
    )
    assert got == {("ns", "p-1", "a"): plan.Failure(1, 10.0, execute.ERR_IMAGE_PULL, "m")}
    both = execute.record_failures(
        got, [_outcome("a", False, execute.ERR_IMAGE_PULL), _outcome("b", False, "X")], now=20.0
    )
    assert both == {
        ("ns", "p-1", "a"): plan.Failure(2, 20.0, "ImagePullBackOff", "m"),
        ("ns", "p-1", "b"): plan.Failure(1, 20.0, "X", "m"),
    }, "each container counts its own attempts; a repeated pull failure is ImagePullBackOff"
    assert execute.record_failures(both, [_outcome("a", True)], now=30.0) == {
        ("ns", "p-1", "b"): plan.Failure(1, 20.0, "X", "m")
    }


def test_a_success_clears_a_failure_an_older_agent_kept_per_pod() -> None:
    legacy = {("ns", "p-1", ""): plan.Failure(4, 1.0, "X", "m")}
    assert execute.record_failures(legacy, [_outcome("a", True)], now=2.0) == {}


def test_a_pod_waits_for_the_container_whose_backoff_ends_last() -> None:
    backoff = plan.Backoff(initial=10.0, maximum=300.0)
    late = plan.Failure(count=4, last=100.0, reason="A", message="a")  # until 100 + 80
    recent = plan.Failure(count=1, last=150.0, reason="B", message="b")  # until 150 + 10
    failures = {("ns", "p-1", "a"): late, ("ns", "p-1", "b"): recent, ("ns", "q-1", "c"): recent}
    assert execute.pod_failures(failures, backoff) == {("ns", "p-1"): late, ("ns", "q-1"): recent}


def test_a_create_of_a_pod_the_pass_did_not_see_is_the_pods_creation(tmp_path: Path) -> None:
    runtime = Ordered()
    ds = daemonset("n", pod_spec("main", "side"))
    pod = plan.desired_daemon_pod(ds).name
    actions = plan.plan(inputs([ds], [])).actions
    assert [o.pod_created for o in executor(runtime, tmp_path, planned_pods=set()).apply(actions)] == [
        True,
        True,
    ]
    [main] = [c for c in runtime.list_managed() if c.labels.get(identity.LABEL_CONTAINER_NAME) == "main"]
    runtime.remove(main.id)  # the pod lost one container: recreating it is no new pod
    [again] = plan.plan(inputs([ds], runtime.list_managed())).actions
    [o] = executor(runtime, tmp_path, planned_pods={("ns", pod)}).apply([again])
    assert o.ok and not o.pod_created
    runtime.remove(
        next(c.id for c in runtime.list_managed() if c.labels.get(identity.LABEL_CONTAINER_NAME) == "main")
    )
    [o] = executor(runtime, tmp_path).apply([again])  # no pass's view given (`delete pod`): never claimed
    assert o.ok and not o.pod_created
