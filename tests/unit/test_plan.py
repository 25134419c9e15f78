"""Table-driven tests of the pure planner: desired + observed + node + clock -> actions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pytest

from nodeagent import runtime as rt
from nodeagent.agent import identity, plan
from nodeagent.k8s import model, node
from tests.support.planning import DESIRED, DS, NOW, container_for, make_ds, make_node, sandbox_for


@dataclass
class Case:
    name: str
    ds: list[model.DaemonSet]
    observed: list[rt.ObservedContainer]
    want: list[tuple[str, str]]  # (verb, reason substring)
    node: node.Node = field(default_factory=make_node)
    all_seen: bool = True
    waiting: list[str] = field(default_factory=list)


DS_V2 = make_ds(image="busybox:2")
DESIRED_V2 = plan.desired_daemon_pod(DS_V2)
SURGE = make_ds(
    image="busybox:2",
    strategy=model.DaemonSetUpdateStrategy(
        rolling_update=model.RollingUpdateDaemonSet(max_unavailable=0, max_surge=1)
    ),
)
ONDELETE = make_ds(
    image="busybox:2", strategy=model.DaemonSetUpdateStrategy(type="OnDelete", rolling_update=None)
)
NOEXEC = model.Taint(key="maint", value="now", effect="NoExecute")
NOSCHED = model.Taint(key="dedicated", value="gpu", effect="NoSchedule")

CASES = [
    Case("nothing runs: create", [DS], [], [(plan.CREATE, "should run")]),
    Case("running and current: nothing", [DS], [container_for(DESIRED)], []),
    Case(
        "created but never started: start",
        [DS],
        [container_for(DESIRED, state="created")],
        [(plan.START, "never started")],
    ),
    Case(
        "template changed: delete old then create new",
        [DS_V2],
        [container_for(DESIRED)],
        [(plan.DELETE, "pod template changed"), (plan.CREATE, "should run")],
    ),
    Case(
        "surge: new pod first, old kept",
        [SURGE],
        [container_for(DESIRED)],
        [(plan.CREATE, "should run")],
    ),
    Case(
        "surge: new running, old deleted",
        [SURGE],
        [container_for(DESIRED), container_for(plan.desired_daemon_pod(SURGE))],
        [(plan.DELETE, "maxSurge")],
    ),
    Case("OnDelete: outdated pod kept", [ONDELETE], [container_for(DESIRED)], []),
    Case(
        "withdrawn DaemonSet: delete",
        [],
        [container_for(DESIRED)],
        [(plan.DELETE, "no longer in any source")],
    ),
    Case("withdrawn, but not all sources seen: keep", [], [container_for(DESIRED)], [], all_seen=False),
    Case(
        "node selector no longer matches: delete",
        [make_ds(node_selector={"disk": "ssd"})],
        [container_for(plan.desired_daemon_pod(make_ds(node_selector={"disk": "ssd"})))],
        [(plan.DELETE, "node affinity/selector")],
    ),
    Case(
        "node selector matches: create",
        [make_ds(node_selector={"disk": "ssd"})],
        [],
        [(plan.CREATE, "should run")],
        node=make_node({"disk": "ssd"}),
    ),
    Case(
        "NoSchedule taint: no new pod",
        [DS],
        [],
        [],
        node=make_node(taints=(NOSCHED,)),
    ),
    Case(
        "NoSchedule taint: running pod kept",
        [DS],
        [container_for(DESIRED)],
        [],
        node=make_node(taints=(NOSCHED,)),
    ),
    Case(
        "NoExecute taint: running pod evicted",
        [DS],
        [container_for(DESIRED)],
        [(plan.DELETE, "untolerated taint")],
        node=make_node(taints=(NOEXEC,)),
    ),
    Case(
        "exited, first crash: restart now",
        [DS],
        [container_for(DESIRED, state="exited", exit_code=1, finished=NOW - 1)],
        [(plan.RESTART, "exited with code 1")],
    ),
    Case(
        "exited, in backoff: wait",
        [DS],
        [container_for(DESIRED, state="exited", exit_code=1, attempt=3, step=3, finished=NOW - 5)],
        [],
        waiting=["CrashLoopBackOff"],
    ),
    Case(
        "exited, backoff elapsed: restart",
        [DS],
        [container_for(DESIRED, state="exited", exit_code=1, attempt=1, step=1, finished=NOW - 11)],
        [(plan.RESTART, "exited")],
    ),
    Case(
        "container removed outside the agent: recreate it",
        [make_ds(containers=("a", "b"))],
        [
            container_for(plan.desired_daemon_pod(make_ds(containers=("a", "b"))), "a"),
            sandbox_for(plan.desired_daemon_pod(make_ds(containers=("a", "b")))),
        ],
        [(plan.CREATE, "has no container 'b'")],
    ),
    Case(
        "last dead attempt of a running container: kept (logs --previous)",
        [DS],
        [
            container_for(DESIRED, state="exited", exit_code=1, attempt=0, finished=NOW - 50),
            container_for(DESIRED, attempt=1),
        ],
        [],
    ),
]


def _gc_case(
    states: list[str],
) -> list[rt.ObservedContainer]:
    """Attempts 0..n-1 of container main, in these states (the last one is the current attempt)."""
    return [
        container_for(
            DESIRED,
            state=st,
            attempt=i,
            exit_code=None if st == "running" else 1,
            finished=None if st == "running" else NOW - 50 + i,
            step=0,
        )
        for i, st in enumerate(states)
    ]


@pytest.mark.parametrize(
    ("states", "removed"),
    [
        (["exited", "running"], []),  # the one dead attempt is kept for logs --previous
        (["exited", "exited", "running"], [0]),  # older ones go: one dead container per container
        (["exited", "exited", "exited", "running"], [0, 1]),
        (["exited", "exited"], [0]),  # the current attempt is dead (crash loop): it is the one kept
        (["running"], []),
    ],
)
def test_gc_keeps_the_last_dead_attempt_per_container(states: list[str], removed: list[int]) -> None:
    observed = _gc_case(states)
    inputs = plan.Inputs(
        node=make_node(),
        daemonsets=(plan.DaemonSetInput(DS),),
        static_pods=(),
        observed=(*observed, sandbox_for(DESIRED)),
        now=NOW - 40,  # within the crash-loop backoff: no restart
    )
    acts = [a for a in plan.plan(inputs).actions if a.verb == plan.REMOVE]
    by_id = {c.id: plan.attempt_of(c) for c in observed}
    assert sorted(by_id[cid] for a in acts for cid in a.container_ids) == removed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plan(case: Case) -> None:
    inputs = plan.Inputs(
        node=case.node,
        daemonsets=tuple(plan.DaemonSetInput(d, "test") for d in case.ds),
        static_pods=(),
        observed=tuple(case.observed),
        now=NOW,
        all_sources_seen=case.all_seen,
    )
    result = plan.plan(inputs)
    got = [(a.verb, a.reason) for a in result.actions]
    assert len(got) == len(case.want), got
    for (verb, reason), (want_verb, want_reason) in zip(got, case.want, strict=True):
        assert verb == want_verb, got
        assert want_reason in reason, got
    assert [w.reason for w in result.waiting] == case.waiting


def test_backoff_doubles_and_caps() -> None:
    b = plan.Backoff()
    assert [b.delay(s) for s in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_restart_after_long_run_resets_backoff() -> None:
    c = container_for(
        DESIRED, state="exited", exit_code=1, attempt=5, step=5, started=NOW - 700, finished=NOW - 1
    )
    inputs = plan.Inputs(
        node=make_node(), daemonsets=(plan.DaemonSetInput(DS),), static_pods=(), observed=(c,), now=NOW
    )
    acts = plan.plan(inputs).actions
    assert [a.verb for a in acts] == [plan.RESTART]
    assert acts[0].backoff_step == 0 and acts[0].attempt == 6


def test_wake_at_is_backoff_deadline() -> None:
    c = container_for(DESIRED, state="exited", exit_code=1, attempt=2, step=2, finished=NOW - 5)
    inputs = plan.Inputs(
        node=make_node(), daemonsets=(plan.DaemonSetInput(DS),), static_pods=(), observed=(c,), now=NOW
    )
    assert plan.plan(inputs).wake_at == NOW - 5 + 20


def test_toleration_seconds_evicts_after_deadline() -> None:
    ds = make_ds(
        tolerations=(
            model.Toleration(key="maint", operator="Exists", effect="NoExecute", toleration_seconds=60),
        )
    )
    desired = plan.desired_daemon_pod(ds)
    base = plan.Inputs(
        node=make_node(taints=(NOEXEC,)),
        daemonsets=(plan.DaemonSetInput(ds),),
        static_pods=(),
        observed=(container_for(desired),),
        now=NOW,
        noexecute_since={("kube-system", "agent"): NOW - 30},
    )
    assert plan.plan(base).actions == ()
    late = replace(base, now=NOW + 31)
    assert [a.verb for a in plan.plan(late).actions] == [plan.DELETE]


def test_static_pod_created_and_replaced() -> None:
    pod = model.Pod(
        metadata=model.ObjectMeta(name="web", namespace="default"),
        spec=model.PodSpec(containers=(model.Container(name="c", image="busybox:1"),)),
    )
    n = make_node()
    inputs = plan.Inputs(node=n, daemonsets=(), static_pods=(pod,), observed=(), now=NOW)
    acts = plan.plan(inputs).actions
    assert [(a.verb, a.pod) for a in acts] == [(plan.CREATE, "web-node-a")]
    old = plan.desired_static_pod(pod, "node-a")
    changed = replace(pod, spec=model.PodSpec(containers=(model.Container(name="c", image="busybox:2"),)))
    inputs = plan.Inputs(
        node=n, daemonsets=(), static_pods=(changed,), observed=(container_for(old, "c"),), now=NOW
    )
    assert [a.verb for a in plan.plan(inputs).actions] == [plan.DELETE, plan.CREATE]


def test_foreign_labels_never_planned() -> None:
    foreign = rt.ObservedContainer(id="x", name="other", labels={}, image="i", state="exited")
    inputs = plan.Inputs(node=make_node(), daemonsets=(), static_pods=(), observed=(foreign,), now=NOW)
    assert plan.plan(inputs).actions == ()


def test_broken_manifest_protects_its_pods() -> None:
    """A DaemonSet whose file fails to load after a restart is not 'withdrawn': its pod stays."""
    base = plan.Inputs(
        node=make_node(), daemonsets=(), static_pods=(), observed=(container_for(DESIRED),), now=NOW
    )
    assert [a.verb for a in plan.plan(base).actions] == [plan.DELETE]
    assert plan.plan(replace(base, protected_names=frozenset({("DaemonSet", "agent")}))).actions == ()
    assert plan.plan(replace(base, hold_removals=True)).actions == ()


def _with_grace(c: rt.ObservedContainer, grace: str) -> rt.ObservedContainer:
    return replace(c, labels={**c.labels, plan.LABEL_GRACE: grace})


@pytest.mark.parametrize(
    ("label", "want"),
    [("5", 5), (None, plan.DEFAULT_GRACE), ("junk", plan.DEFAULT_GRACE)],
    ids=["recorded", "unrecorded", "malformed"],
)
def test_withdrawn_pod_stops_with_its_own_grace_period(label: str | None, want: int) -> None:
    """Its manifest is gone, so the grace period comes from the label the pod was created with."""
    c = container_for(DESIRED)
    if label is not None:
        c = _with_grace(c, label)
    inputs = plan.Inputs(node=make_node(), daemonsets=(), static_pods=(), observed=(c,), now=NOW)
    [delete] = plan.plan(inputs).actions
    assert delete.verb == plan.DELETE and delete.grace_seconds == want


def test_replaced_pod_stops_with_the_old_pods_grace_period() -> None:
    """Kubernetes deletes the old pod with its own terminationGracePeriodSeconds, not the new template's."""
    old = plan.desired_daemon_pod(make_ds(image="busybox:0"))
    inputs = plan.Inputs(
        node=make_node(),
        daemonsets=(plan.DaemonSetInput(DS),),
        static_pods=(),
        observed=(_with_grace(container_for(old), "7"),),
        now=NOW,
    )
    delete, create = plan.plan(inputs).actions
    assert (delete.verb, delete.grace_seconds) == (plan.DELETE, 7)
    assert (create.verb, create.grace_seconds) == (plan.CREATE, 30)


@pytest.mark.parametrize(
    ("failed", "shown"),
    [("ErrImagePull", "ImagePullBackOff"), ("CreateContainerConfigError", "CreateContainerConfigError")],
)
def test_failed_create_waits_out_its_backoff(failed: str, shown: str) -> None:
    failure = plan.Failure(count=2, last=NOW - 5, reason=failed, message="boom")
    inputs = plan.Inputs(
        node=make_node(),
        daemonsets=(plan.DaemonSetInput(DS),),
        static_pods=(),
        observed=(),
        now=NOW,
        failures={DESIRED.key: failure},
    )
    result = plan.plan(inputs)
    assert result.actions == ()
    [w] = result.waiting
    assert (w.reason, w.until) == (shown, NOW - 5 + 20)
    assert [a.verb for a in plan.plan(replace(inputs, now=NOW + 16)).actions] == [plan.CREATE]


def test_changed_selector_is_read_from_the_pods_label() -> None:
    c = container_for(DESIRED)
    assert not plan.changed_selector(DS, (c,)), "pods from before the label: nothing to compare"
    same = replace(c, labels={**c.labels, plan.LABEL_SELECTOR: plan.selector_hash(DS.spec.selector)})
    assert not plan.changed_selector(DS, (same,))
    other = replace(c, labels={**c.labels, plan.LABEL_SELECTOR: "0123"})
    assert plan.changed_selector(DS, (other,))
    assert not plan.changed_selector(make_ds("else"), (other,)), "only the DaemonSet's own pods count"
    sel = model.LabelSelector(match_labels={"b": "2", "a": "1"})
    assert plan.selector_hash(sel) == plan.selector_hash(
        model.LabelSelector(match_labels={"a": "1", "b": "2"})
    )


# --- probes, surge readiness, orphaning and adoption (issue 4) ----------------------------------


def _probe(**kw: int) -> model.Probe:
    return model.Probe(handler=model.ExecAction(("true",)), **kw)


def _with_probes(
    ds: model.DaemonSet,
    *,
    liveness_probe: model.Probe | None = None,
    readiness_probe: model.Probe | None = None,
) -> model.DaemonSet:
    spec = ds.spec.template.spec
    c = replace(spec.containers[0], liveness_probe=liveness_probe, readiness_probe=readiness_probe)
    template = replace(ds.spec.template, spec=replace(spec, containers=(c,)))
    return replace(ds, spec=replace(ds.spec, template=template))


def _inputs(dss: list[model.DaemonSet], observed: list[rt.ObservedContainer], **kw: object) -> plan.Inputs:
    return plan.Inputs(
        node=make_node(),
        daemonsets=tuple(plan.DaemonSetInput(d, "test") for d in dss),
        static_pods=(),
        observed=tuple(observed),
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


def test_failed_liveness_restarts_the_running_container_with_the_probes_grace() -> None:
    ds = _with_probes(DS, liveness_probe=_probe(termination_grace_period_seconds=3))
    desired = plan.desired_daemon_pod(ds)
    c = container_for(desired, step=2)
    bad = plan.Health(ready=False, restart=True, message="Liveness probe failed: exit 1", grace_seconds=3)
    [action] = plan.plan(_inputs([ds], [c], health={c.id: bad})).actions
    assert (action.verb, action.container_ids, action.attempt) == (plan.RESTART, (c.id,), 1)
    assert action.reason.startswith("Liveness probe failed: exit 1")
    assert action.grace_seconds == 3 and action.backoff_step == 3
    no_grace = replace(bad, grace_seconds=None)
    [action] = plan.plan(_inputs([ds], [c], health={c.id: no_grace})).actions
    assert action.grace_seconds == ds.spec.template.spec.termination_grace_period_seconds
    assert plan.plan(_inputs([ds], [c], health={c.id: plan.Health()})).actions == ()


def test_readiness_needs_a_verdict_when_the_spec_has_a_readiness_probe() -> None:
    ds = _with_probes(DS, readiness_probe=_probe())
    desired = plan.desired_daemon_pod(ds)
    c = container_for(desired)
    assert plan.plan(_inputs([ds], [c])).readiness[c.id] == plan.Readiness(False)
    ok = plan.Health(ready=True, ready_since=NOW - 5)
    assert plan.plan(_inputs([ds], [c], health={c.id: ok})).readiness[c.id] == plan.Readiness(True, NOW - 5)
    plain = container_for(DESIRED)
    assert plan.plan(_inputs([DS], [plain])).readiness[plain.id] == plan.Readiness(True, NOW - 100)


def _surge(min_ready: int = 0) -> model.DaemonSet:
    ds = _with_probes(SURGE, readiness_probe=_probe())
    return replace(ds, spec=replace(ds.spec, min_ready_seconds=min_ready))


@pytest.mark.parametrize(
    ("health", "min_ready", "deleted", "wake"),
    [
        (None, 0, False, None),  # no verdict yet: not ready, the old pod stays
        (plan.Health(ready=False), 0, False, None),
        (plan.Health(ready=True, ready_since=NOW - 1), 0, True, None),
        (plan.Health(ready=True, ready_since=NOW - 1), 10, False, NOW + 9),  # minReadySeconds not yet
        (plan.Health(ready=True, ready_since=NOW - 11), 10, True, None),
    ],
)
def test_surge_deletes_the_old_pod_only_once_the_new_one_is_available(
    health: plan.Health | None, min_ready: int, deleted: bool, wake: float | None
) -> None:
    ds = _surge(min_ready)
    old, new = container_for(DESIRED), container_for(plan.desired_daemon_pod(ds))
    result = plan.plan(_inputs([ds], [old, new], health={new.id: health} if health else {}))
    assert [(a.verb, a.pod) for a in result.actions] == ([(plan.DELETE, DESIRED.name)] if deleted else [])
    assert result.wake_at == wake


WITHDRAWN = plan.Ownership(policy={DESIRED.owner: plan.POLICY_COMMAND})


def _labelled(c: rt.ObservedContainer, labels: dict[str, str]) -> rt.ObservedContainer:
    return replace(c, labels={**c.labels, plan.LABEL_POD_LABELS: json.dumps(labels)})


def test_withdrawn_daemonset_with_orphan_policy_leaves_its_pods_ownerless() -> None:
    c = _labelled(container_for(DESIRED), {"app": "agent"})
    result = plan.plan(_inputs([], [c], ownership=WITHDRAWN))
    assert result.actions == ()
    assert result.ownership.owners == {DESIRED.key: plan.ORPHANED}
    assert [p.name for p in result.orphans] == [DESIRED.name]
    # without the policy: deleted; before every source has spoken: neither deleted nor orphaned
    assert [a.verb for a in plan.plan(_inputs([], [c])).actions] == [plan.DELETE]
    held = plan.plan(_inputs([], [c], ownership=WITHDRAWN, all_sources_seen=False))
    assert held.actions == () and held.ownership.owners == {}
    # an orphaned pod that crashes is restarted in place, like any pod the kubelet runs
    dead = replace(c, state="exited", exit_code=1, finished_at=NOW - 100)
    orphaned = plan.Ownership(policy=WITHDRAWN.policy, owners={DESIRED.key: plan.ORPHANED})
    [start] = plan.plan(_inputs([], [dead], ownership=orphaned)).actions
    assert (start.verb, start.container_ids) == (plan.START, (dead.id,))


def test_orphan_annotation_sets_and_clears_the_policy() -> None:
    annotated = replace(DS, metadata=replace(DS.metadata, annotations={plan.ANNOTATION_ORPHAN: "true"}))
    c = container_for(DESIRED)
    assert plan.plan(_inputs([annotated], [c])).ownership.policy == {DESIRED.owner: plan.POLICY_ANNOTATION}
    kept = plan.Ownership(policy={DESIRED.owner: plan.POLICY_ANNOTATION})
    assert plan.plan(_inputs([DS], [c], ownership=kept)).ownership.policy == {}
    by_command = plan.plan(_inputs([DS], [c], ownership=WITHDRAWN)).ownership.policy
    assert by_command == {DESIRED.owner: plan.POLICY_COMMAND}, "only `nodeagent orphan --undo` clears it"


def _adopter(strategy: model.DaemonSetUpdateStrategy | None = None) -> model.DaemonSet:
    ds = make_ds("newagent", image="busybox:3", strategy=strategy)
    selector = model.LabelSelector(match_labels={"app": "agent"})
    template = replace(ds.spec.template, metadata=replace(ds.spec.template.metadata, labels={"app": "agent"}))
    return replace(ds, spec=replace(ds.spec, selector=selector, template=template))


def test_orphaned_pod_is_adopted_and_kept_under_ondelete() -> None:
    adopter = _adopter(model.DaemonSetUpdateStrategy(type="OnDelete", rolling_update=None))
    c = _labelled(container_for(DESIRED), {"app": "agent", "tier": "x"})
    orphaned = plan.Ownership(owners={DESIRED.key: plan.ORPHANED})
    result = plan.plan(_inputs([adopter], [c], ownership=orphaned))
    assert result.actions == (), "adoption restarts nothing; OnDelete keeps the outdated pod"
    owner = identity.owner_daemonset("kube-system", "newagent")
    assert result.ownership.owners == {DESIRED.key: owner}
    [dsp] = result.daemonsets
    assert [p.name for p in dsp.pods] == [DESIRED.name] and result.orphans == ()


def test_adopted_outdated_pod_is_replaced_under_rolling_update_as_in_kubernetes() -> None:
    c = _labelled(container_for(DESIRED), {"app": "agent"})
    orphaned = plan.Ownership(owners={DESIRED.key: plan.ORPHANED})
    result = plan.plan(_inputs([_adopter()], [c], ownership=orphaned))
    assert result.actions[0].pod == DESIRED.name
    assert [a.verb for a in result.actions] == [plan.DELETE, plan.CREATE]


def test_orphans_not_matching_or_in_another_namespace_stay_ownerless() -> None:
    c = _labelled(container_for(DESIRED), {"app": "other"})
    unlabelled = container_for(plan.desired_daemon_pod(make_ds("old")))
    orphaned = plan.Ownership(
        owners={DESIRED.key: plan.ORPHANED, ("kube-system", unlabelled.labels[identity.LABEL_POD_NAME]): ""}
    )
    result = plan.plan(_inputs([_adopter()], [c, unlabelled], ownership=orphaned))
    assert len(result.orphans) == 2
    assert [a.verb for a in result.actions] == [plan.CREATE]


# --- init containers and the pod sandbox -----------------------------------------------------------


def _with_init(*names: str, restart_policy: str = "Always") -> model.DaemonSet:
    ds = make_ds(containers=("a", "b"))
    spec = replace(
        ds.spec.template.spec,
        init_containers=tuple(model.Container(name=n, image="busybox:1") for n in names),
        restart_policy=restart_policy,
    )
    return replace(ds, spec=replace(ds.spec, template=replace(ds.spec.template, spec=spec)))


def init_for(desired: plan.DesiredPod, cname: str, index: int, **kw: object) -> rt.ObservedContainer:
    c = container_for(desired, cname, **kw)  # type: ignore[arg-type]
    labels = {**c.labels, identity.LABEL_ROLE: identity.ROLE_INIT, identity.LABEL_INIT_INDEX: str(index)}
    return replace(c, labels=labels)


INIT_DS = _with_init("i1", "i2")
INIT_DESIRED = plan.desired_daemon_pod(INIT_DS)
DONE = {"state": "exited", "exit_code": 0, "finished": NOW - 90}


def _verbs(p: plan.Plan) -> list[tuple[str, str]]:
    return [(a.verb, a.container) for a in p.actions]


@pytest.mark.parametrize(
    ("observed", "want"),
    [
        ([], [(plan.INIT, "i1")]),
        ([sandbox_for(INIT_DESIRED), init_for(INIT_DESIRED, "i1", 0)], []),  # i1 still running
        ([sandbox_for(INIT_DESIRED), init_for(INIT_DESIRED, "i1", 0, **DONE)], [(plan.INIT, "i2")]),
        (
            [
                sandbox_for(INIT_DESIRED),
                init_for(INIT_DESIRED, "i1", 0, **DONE),
                init_for(INIT_DESIRED, "i2", 1, **DONE),
            ],
            [(plan.CREATE, "a"), (plan.CREATE, "b")],
        ),
        (  # app containers exist: init containers never run again, even if their records are gone
            [
                sandbox_for(INIT_DESIRED),
                container_for(INIT_DESIRED, "a"),
                container_for(INIT_DESIRED, "b"),
            ],
            [],
        ),
    ],
    ids=["first init", "wait for running init", "second init", "apps after all inits", "no re-run"],
)
def test_init_containers_run_in_order_each_to_completion(
    observed: list[rt.ObservedContainer], want: list[tuple[str, str]]
) -> None:
    assert _verbs(plan.plan(_inputs([INIT_DS], observed))) == want


def test_failed_init_container_is_retried_with_backoff_and_its_records_kept() -> None:
    failed = init_for(INIT_DESIRED, "i1", 0, state="exited", exit_code=3, finished=NOW - 5, step=1)
    p = plan.plan(_inputs([INIT_DS], [sandbox_for(INIT_DESIRED), failed]))
    assert _verbs(p) == []
    assert [(w.container, w.reason) for w in p.waiting] == [("i1", "CrashLoopBackOff")]
    assert p.wake_at == NOW - 5 + 10
    later = plan.plan(replace(_inputs([INIT_DS], [sandbox_for(INIT_DESIRED), failed]), now=NOW + 10))
    (retry,) = later.actions
    assert (retry.verb, retry.container, retry.attempt, retry.backoff_step) == (plan.INIT, "i1", 1, 2)
    # a running pod keeps its init containers' exit records: nothing is removed
    running = [
        sandbox_for(INIT_DESIRED),
        init_for(INIT_DESIRED, "i1", 0, **DONE),
        init_for(INIT_DESIRED, "i2", 1, **DONE),
        container_for(INIT_DESIRED, "a"),
        container_for(INIT_DESIRED, "b"),
    ]
    assert plan.plan(_inputs([INIT_DS], running)).actions == ()


def test_init_container_failure_with_restart_policy_never_is_final() -> None:
    ds = _with_init("i1", restart_policy="Never")
    desired = plan.desired_daemon_pod(ds)
    failed = init_for(desired, "i1", 0, state="exited", exit_code=1, finished=NOW - 500)
    assert plan.plan(_inputs([ds], [sandbox_for(desired), failed])).actions == ()


def test_sandbox_is_apart_from_app_containers_and_deleted_last() -> None:
    ds = make_ds(containers=("a", "b"))
    desired = plan.desired_daemon_pod(ds)
    sandbox = sandbox_for(desired)
    apps = [container_for(desired, "a"), container_for(desired, "b")]
    pod = plan.group_pods([sandbox, *apps])[desired.key]
    assert pod.sandbox == sandbox and [c.id for c in pod.containers] == [c.id for c in apps]
    assert pod.running and pod.restart_count == 0
    assert plan.plan(_inputs([ds], [sandbox, *apps])).actions == ()
    (delete,) = plan.plan(_inputs([], [sandbox, *apps])).actions
    assert delete.verb == plan.DELETE and delete.container_ids[-1] == sandbox.id


@pytest.mark.parametrize("sandbox_state", ["exited", None], ids=["sandbox died", "sandbox removed"])
def test_lost_sandbox_recreates_the_whole_pod(sandbox_state: str | None) -> None:
    ds = make_ds(containers=("a", "b"))
    desired = plan.desired_daemon_pod(ds)
    apps = [container_for(desired, "a"), container_for(desired, "b")]
    observed = list(apps)
    if sandbox_state is not None:
        observed.append(sandbox_for(desired, state=sandbox_state))
    p = plan.plan(_inputs([ds], observed))
    assert _verbs(p) == [(plan.DELETE, ""), (plan.CREATE, "a"), (plan.CREATE, "b")]
    assert "sandbox" in p.actions[0].reason


def test_exited_app_container_is_restarted_alone_sandbox_untouched() -> None:
    ds = make_ds(containers=("a", "b"))
    desired = plan.desired_daemon_pod(ds)
    crashed = container_for(desired, "a", state="exited", exit_code=1, finished=NOW - 1)
    p = plan.plan(_inputs([ds], [sandbox_for(desired), crashed, container_for(desired, "b")]))
    assert _verbs(p) == [(plan.RESTART, "a")]
    assert p.actions[0].container_ids == (crashed.id,)


def test_lost_sandbox_of_a_pod_reading_its_pod_ip_recreates_it() -> None:
    """One container, but it reads status.podIP: it has a sandbox (podconfig.needs_sandbox), and a pod
    whose sandbox is gone is recreated, as for a multi-container pod."""
    pod_ip = model.EnvVar(
        name="POD_IP",
        value_from=model.EnvVarSource(field_ref=model.ObjectFieldSelector(field_path="status.podIP")),
    )
    base = make_ds()
    spec = replace(
        base.spec.template.spec, containers=(replace(base.spec.template.spec.containers[0], env=(pod_ip,)),)
    )
    ds = replace(base, spec=replace(base.spec, template=replace(base.spec.template, spec=spec)))
    desired = plan.desired_daemon_pod(ds)
    p = plan.plan(_inputs([ds], [container_for(desired, "main")]))
    assert _verbs(p) == [(plan.DELETE, ""), (plan.CREATE, "main")]
    assert "sandbox" in p.actions[0].reason


def test_sidecar_init_container_starts_before_the_apps_and_is_kept_running() -> None:
    ds = _with_init("side", "i2")
    spec = ds.spec.template.spec
    side = replace(spec.init_containers[0], restart_policy="Always")
    spec = replace(spec, init_containers=(side, spec.init_containers[1]))
    ds = replace(ds, spec=replace(ds.spec, template=replace(ds.spec.template, spec=spec)))
    desired = plan.desired_daemon_pod(ds)
    running_side = init_for(desired, "side", 0)
    # the sidecar runs: the next init container starts without waiting for it to exit
    assert _verbs(plan.plan(_inputs([ds], [sandbox_for(desired), running_side]))) == [(plan.INIT, "i2")]
    # apps run; the sidecar exited: it is restarted (an init action), the apps are untouched
    exited = init_for(desired, "side", 0, state="exited", exit_code=0, finished=NOW - 50)
    apps = [container_for(desired, "a"), container_for(desired, "b")]
    done = init_for(desired, "i2", 1, **DONE)
    p = plan.plan(_inputs([ds], [sandbox_for(desired), exited, done, *apps]))
    assert _verbs(p) == [(plan.INIT, "side")] and p.actions[0].attempt == 1
