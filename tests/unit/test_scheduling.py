from __future__ import annotations

from collections.abc import Mapping

import pytest

from nodeagent.k8s import manifests, model, node, scheduling, selectors

NoSchedule, NoExecute, PreferNoSchedule = "NoSchedule", "NoExecute", "PreferNoSchedule"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NODE_NAME = "node(s) didn't match the requested node name"


def make_node(
    labels: Mapping[str, str] | None = None, taints: tuple[model.Taint, ...] = (), name: str = "node-a"
) -> node.Node:
    return node.Node(name=name, labels=dict(labels or {}), taints=taints)


def make_spec(
    *,
    tolerations: tuple[model.Toleration, ...] = (),
    node_selector: Mapping[str, str] | None = None,
    required: tuple[model.NodeSelectorTerm, ...] | None = None,
    node_name: str = "",
    host_network: bool = False,
) -> model.PodSpec:
    affinity = None
    if required is not None:
        affinity = model.Affinity(node_affinity=model.NodeAffinity(required=required))
    return model.PodSpec(
        containers=(model.Container(name="c", image="i"),),
        tolerations=tolerations,
        node_selector=dict(node_selector or {}),
        affinity=affinity,
        node_name=node_name,
        host_network=host_network,
    )


def req(key: str, operator: str, *values: str) -> model.NodeSelectorRequirement:
    return model.NodeSelectorRequirement(key=key, operator=operator, values=values)


def term(
    *exprs: model.NodeSelectorRequirement, fields: tuple[model.NodeSelectorRequirement, ...] = ()
) -> model.NodeSelectorTerm:
    return model.NodeSelectorTerm(match_expressions=exprs, match_fields=fields)


def tol(
    key: str = "", operator: str = "Equal", value: str = "", effect: str = "", seconds: int | None = None
) -> model.Toleration:
    return model.Toleration(
        key=key, operator=operator, value=value, effect=effect, toleration_seconds=seconds
    )


# --- toleration_tolerates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        # Equal: key, value and effect must match
        (tol("k", "Equal", "v", NoSchedule), model.Taint("k", NoSchedule, "v"), True),
        (tol("k", "Equal", "v", NoSchedule), model.Taint("k", NoSchedule, "w"), False),
        (tol("k", "Equal", "v", NoSchedule), model.Taint("other", NoSchedule, "v"), False),
        (tol("k", "Equal", "v", NoSchedule), model.Taint("k", NoExecute, "v"), False),
        (tol("k", "Equal", "", NoSchedule), model.Taint("k", NoSchedule, ""), True),
        (tol("k", "Equal", "", NoSchedule), model.Taint("k", NoSchedule, "v"), False),
        # an empty operator means Equal
        (tol("k", "", "v"), model.Taint("k", NoExecute, "v"), True),
        (tol("k", "", "v"), model.Taint("k", NoExecute, "x"), False),
        # Exists: any value
        (tol("k", "Exists", "", NoSchedule), model.Taint("k", NoSchedule, "anything"), True),
        (tol("k", "Exists", "", NoSchedule), model.Taint("k", NoSchedule, ""), True),
        (tol("k", "Exists", "", NoSchedule), model.Taint("j", NoSchedule, ""), False),
        # empty effect matches every effect
        (tol("k", "Exists"), model.Taint("k", NoSchedule), True),
        (tol("k", "Exists"), model.Taint("k", NoExecute), True),
        (tol("k", "Exists"), model.Taint("k", PreferNoSchedule), True),
        (tol("k", "Equal", "v"), model.Taint("k", NoExecute, "v"), True),
        # Exists with an empty key tolerates everything (of its effect, if one is set)
        (tol("", "Exists"), model.Taint("any/key", NoExecute, "v"), True),
        (tol("", "Exists"), model.Taint("x", NoSchedule), True),
        (tol("", "Exists", "", NoSchedule), model.Taint("x", NoSchedule, "v"), True),
        (tol("", "Exists", "", NoSchedule), model.Taint("x", NoExecute, "v"), False),
        # ToleratesTaint taken literally: an empty key with Equal matches any key whose value matches
        (tol("", "Equal", ""), model.Taint("x", NoSchedule, ""), True),
        (tol("", "Equal", ""), model.Taint("x", NoSchedule, "v"), False),
        # alpha Lt/Gt (feature gate off by default) and unknown operators tolerate nothing
        (tol("k", "Lt", "5"), model.Taint("k", NoSchedule, "3"), False),
        (tol("k", "Gt", "5"), model.Taint("k", NoSchedule, "7"), False),
        (tol("k", "Bogus"), model.Taint("k", NoSchedule), False),
    ],
)
def test_toleration_tolerates(toleration: model.Toleration, taint: model.Taint, expected: bool) -> None:
    assert scheduling.toleration_tolerates(toleration, taint) is expected


# --- daemon_tolerations ------------------------------------------------------------------------

DEFAULTS = (
    tol("node.kubernetes.io/not-ready", "Exists", "", NoExecute),
    tol("node.kubernetes.io/unreachable", "Exists", "", NoExecute),
    tol("node.kubernetes.io/disk-pressure", "Exists", "", NoSchedule),
    tol("node.kubernetes.io/memory-pressure", "Exists", "", NoSchedule),
    tol("node.kubernetes.io/pid-pressure", "Exists", "", NoSchedule),
    tol("node.kubernetes.io/unschedulable", "Exists", "", NoSchedule),
)
NETWORK = tol("node.kubernetes.io/network-unavailable", "Exists", "", NoSchedule)


def test_daemon_tolerations_defaults() -> None:
    assert scheduling.daemon_tolerations(make_spec()) == DEFAULTS


def test_daemon_tolerations_host_network_adds_network_unavailable() -> None:
    assert scheduling.daemon_tolerations(make_spec(host_network=True)) == (*DEFAULTS, NETWORK)


def test_daemon_tolerations_keep_pod_tolerations_first() -> None:
    own = tol("dedicated", "Equal", "gpu", NoSchedule)
    assert scheduling.daemon_tolerations(make_spec(tolerations=(own,))) == (own, *DEFAULTS)


def test_daemon_tolerations_replace_matching_one_in_place() -> None:
    # same key/effect/operator/value but with tolerationSeconds: the controller's infinite one replaces it
    timed = tol("node.kubernetes.io/unreachable", "Exists", "", NoExecute, 300)
    own = tol("a", "Exists")
    got = scheduling.daemon_tolerations(make_spec(tolerations=(timed, own)))
    assert got[0] == tol("node.kubernetes.io/unreachable", "Exists", "", NoExecute)
    assert got[1] == own
    assert len(got) == len(DEFAULTS) + 1
    assert all(t.toleration_seconds is None for t in got)


def test_daemon_tolerations_do_not_duplicate_identical_one() -> None:
    same = tol("node.kubernetes.io/unschedulable", "Exists", "", NoSchedule)
    got = scheduling.daemon_tolerations(make_spec(tolerations=(same,)))
    assert got.count(same) == 1
    assert got[0] == same


def test_daemon_tolerations_keep_differently_shaped_toleration() -> None:
    # Equal instead of Exists: not the same toleration, so both stay
    other = tol("node.kubernetes.io/not-ready", "Equal", "", NoExecute, 30)
    got = scheduling.daemon_tolerations(make_spec(tolerations=(other,)))
    assert got[0] == other
    assert DEFAULTS[0] in got


# --- node selector terms -----------------------------------------------------------------------

LABELS = {"zone": "a", "disk": "ssd", "cpus": "8", "weird": "8x", "neg": "-3", "empty": ""}


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (req("zone", "In", "a", "b"), True),
        (req("zone", "In", "b"), False),
        (req("missing", "In", "a"), False),
        (req("empty", "In", "x"), False),
        (req("zone", "NotIn", "b", "c"), True),
        (req("zone", "NotIn", "a"), False),
        (req("missing", "NotIn", "a"), True),  # NotIn matches a missing label
        (req("zone", "Exists"), True),
        (req("empty", "Exists"), True),
        (req("missing", "Exists"), False),
        (req("missing", "DoesNotExist"), True),  # DoesNotExist matches a missing label
        (req("zone", "DoesNotExist"), False),
        (req("empty", "DoesNotExist"), False),
        (req("cpus", "Gt", "4"), True),
        (req("cpus", "Gt", "8"), False),
        # NewRequirement also checks Gt/Lt values as label values, so a signed number is unparsable
        (req("cpus", "Gt", "-1"), False),
        (req("cpus", "Gt", "+7"), False),
        (req("cpus", "Lt", "9"), True),
        (req("cpus", "Lt", "8"), False),
        (req("neg", "Lt", "0"), True),  # the label side is parsed as int64, sign allowed
        (req("neg", "Gt", "-4"), False),
        (req("weird", "Gt", "1"), False),  # a non-integer label value never matches Gt/Lt
        (req("weird", "Lt", "100"), False),
        (req("empty", "Lt", "100"), False),
        (req("missing", "Gt", "1"), False),
        (req("missing", "Lt", "1"), False),
        # invalid requirements: the term cannot be parsed and matches nothing
        (req("cpus", "Gt", "four"), False),
        (req("cpus", "Gt", "1", "2"), False),
        (req("cpus", "Gt"), False),
        (req("cpus", "Lt", "1.5"), False),
        (req("cpus", "Gt", "99999999999999999999"), False),  # beyond int64
        (req("zone", "In"), False),
        (req("missing", "NotIn"), False),
        (req("zone", "Exists", "a"), False),
        (req("missing", "DoesNotExist", "a"), False),
        (req("zone", "Equals", "a"), False),
        (req("bad key!", "DoesNotExist"), False),
        (req("zone", "NotIn", "not a valid value"), False),
    ],
)
def test_match_expression_operators(requirement: model.NodeSelectorRequirement, expected: bool) -> None:
    assert scheduling.match_node_selector_terms(make_node(LABELS), (term(requirement),)) is expected


def test_expressions_in_a_term_are_anded() -> None:
    n = make_node(LABELS)
    assert scheduling.match_node_selector_terms(n, (term(req("zone", "In", "a"), req("disk", "In", "ssd")),))
    assert not scheduling.match_node_selector_terms(
        n, (term(req("zone", "In", "a"), req("disk", "In", "hdd")),)
    )


def test_terms_are_ored() -> None:
    n = make_node(LABELS)
    terms = (term(req("zone", "In", "b")), term(req("disk", "In", "ssd")))
    assert scheduling.match_node_selector_terms(n, terms)
    assert not scheduling.match_node_selector_terms(n, terms[:1])


def test_empty_term_matches_nothing() -> None:
    n = make_node(LABELS)
    assert not scheduling.match_node_selector_terms(n, (term(),))
    assert scheduling.match_node_selector_terms(n, (term(), term(req("zone", "Exists"))))


def test_no_terms_match_nothing() -> None:
    assert not scheduling.match_node_selector_terms(make_node(LABELS), ())


def test_unparsable_term_does_not_spoil_other_terms() -> None:
    terms = (term(req("zone", "Bogus")), term(req("zone", "In", "a")))
    assert scheduling.match_node_selector_terms(make_node(LABELS), terms)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ((req("metadata.name", "In", "node-a"),), True),
        ((req("metadata.name", "In", "node-b"),), False),
        ((req("metadata.name", "NotIn", "node-b"),), True),
        ((req("metadata.name", "NotIn", "node-a"),), False),
        ((req("metadata.name", "In", "node-a", "node-b"),), False),  # must have exactly one value
        ((req("metadata.name", "In"),), False),
        ((req("metadata.name", "Exists"),), False),  # only In/NotIn are valid for fields
        ((req("metadata.name", "In", "node-a"), req("metadata.name", "NotIn", "node-a")), False),
        ((req("metadata.uid", "In", "x"),), False),  # unknown field: its value is ""
        ((req("metadata.uid", "NotIn", "x"),), True),
    ],
)
def test_match_fields(fields: tuple[model.NodeSelectorRequirement, ...], expected: bool) -> None:
    assert scheduling.match_node_selector_terms(make_node(LABELS), (term(fields=fields),)) is expected


def test_match_fields_and_expressions_are_anded() -> None:
    n = make_node(LABELS)
    name_in = (req("metadata.name", "In", "node-a"),)
    assert scheduling.match_node_selector_terms(n, (term(req("zone", "In", "a"), fields=name_in),))
    assert not scheduling.match_node_selector_terms(n, (term(req("zone", "In", "b"), fields=name_in),))


# --- label selectors ---------------------------------------------------------------------------


def lsr(key: str, operator: str, *values: str) -> model.LabelSelectorRequirement:
    return model.LabelSelectorRequirement(key=key, operator=operator, values=values)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (model.LabelSelector(), True),  # empty selector matches everything
        (model.LabelSelector(match_labels={"app": "web"}), True),
        (model.LabelSelector(match_labels={"app": "db"}), False),
        (model.LabelSelector(match_labels={"missing": ""}), False),
        (model.LabelSelector(match_labels={"empty": ""}), True),
        (model.LabelSelector(match_labels={"app": "web", "tier": "front"}), True),
        (model.LabelSelector(match_labels={"app": "web", "tier": "back"}), False),
        (model.LabelSelector(match_expressions=(lsr("app", "In", "web", "api"),)), True),
        (model.LabelSelector(match_expressions=(lsr("app", "NotIn", "web"),)), False),
        (model.LabelSelector(match_expressions=(lsr("missing", "NotIn", "web"),)), True),
        (model.LabelSelector(match_expressions=(lsr("app", "Exists"),)), True),
        (model.LabelSelector(match_expressions=(lsr("app", "DoesNotExist"),)), False),
        (model.LabelSelector(match_expressions=(lsr("missing", "DoesNotExist"),)), True),
        (
            model.LabelSelector(match_labels={"app": "web"}, match_expressions=(lsr("tier", "In", "back"),)),
            False,
        ),
        # invalid selectors select nothing
        (model.LabelSelector(match_expressions=(lsr("app", "In"),)), False),
        (model.LabelSelector(match_expressions=(lsr("app", "Exists", "web"),)), False),
        (model.LabelSelector(match_expressions=(lsr("app", "Gt", "1"),)), False),
        (model.LabelSelector(match_labels={"bad key": "web"}), False),
    ],
)
def test_label_selector_matches(selector: model.LabelSelector, expected: bool) -> None:
    labels = {"app": "web", "tier": "front", "empty": ""}
    assert selectors.label_selector_matches(selector, labels) is expected


# --- decide ------------------------------------------------------------------------------------


def test_plain_daemonset_runs_everywhere() -> None:
    assert scheduling.decide(make_node(), make_spec()) == scheduling.Decision(True, True, (), None)


@pytest.mark.parametrize(("node_name", "runs"), [("", True), ("node-a", True), ("node-b", False)])
def test_node_name(node_name: str, runs: bool) -> None:
    d = scheduling.decide(make_node(), make_spec(node_name=node_name))
    assert (d.should_run, d.should_continue_running) == (runs, runs)
    assert d.reasons == (() if runs else (NODE_NAME,))


@pytest.mark.parametrize(
    ("selector", "runs"),
    [
        ({}, True),
        ({"disktype": "ssd"}, True),
        ({"disktype": "hdd"}, False),
        ({"missing": ""}, False),  # a selector with an empty value still needs the label
        ({"empty": ""}, True),
        ({"disktype": "ssd", "zone": "b"}, False),
    ],
)
def test_node_selector(selector: dict[str, str], runs: bool) -> None:
    n = make_node({"disktype": "ssd", "zone": "a", "empty": ""})
    d = scheduling.decide(n, make_spec(node_selector=selector))
    assert (d.should_run, d.should_continue_running) == (runs, runs)
    assert d.reasons == (() if runs else (AFFINITY,))


def test_node_selector_and_affinity_are_anded() -> None:
    n = make_node({"disktype": "ssd", "zone": "a"})
    ok = scheduling.decide(
        n, make_spec(node_selector={"disktype": "ssd"}, required=(term(req("zone", "In", "a")),))
    )
    assert ok.should_run
    bad = scheduling.decide(
        n, make_spec(node_selector={"disktype": "ssd"}, required=(term(req("zone", "In", "b")),))
    )
    assert bad == scheduling.Decision(False, False, (AFFINITY,))
    bad2 = scheduling.decide(
        n, make_spec(node_selector={"disktype": "hdd"}, required=(term(req("zone", "In", "a")),))
    )
    assert bad2 == scheduling.Decision(False, False, (AFFINITY,))


def test_required_affinity_with_empty_term_list_matches_nothing() -> None:
    d = scheduling.decide(make_node(), make_spec(required=()))
    assert d == scheduling.Decision(False, False, (AFFINITY,))


def test_affinity_without_required_terms_matches() -> None:
    spec = make_spec()
    spec = model.PodSpec(
        containers=spec.containers,
        affinity=model.Affinity(
            node_affinity=model.NodeAffinity(
                required=None, preferred=(model.PreferredSchedulingTerm(1, term(req("x", "In", "y"))),)
            )
        ),
    )
    assert scheduling.decide(make_node(), spec).should_run


def test_match_fields_on_node_name_in_affinity() -> None:
    spec = make_spec(required=(term(fields=(req("metadata.name", "In", "node-a"),)),))
    assert scheduling.decide(make_node(name="node-a"), spec).should_run
    assert not scheduling.decide(make_node(name="node-b"), spec).should_run


@pytest.mark.parametrize(
    ("taint", "tolerations", "run", "keep"),
    [
        # NoSchedule untolerated: do not start, keep running
        (model.Taint("dedicated", NoSchedule, "gpu"), (), False, True),
        # NoExecute untolerated: neither
        (model.Taint("dedicated", NoExecute, "gpu"), (), False, False),
        # PreferNoSchedule is ignored
        (model.Taint("dedicated", PreferNoSchedule, "gpu"), (), True, True),
        # tolerated
        (
            model.Taint("dedicated", NoSchedule, "gpu"),
            (tol("dedicated", "Equal", "gpu", NoSchedule),),
            True,
            True,
        ),
        (model.Taint("dedicated", NoExecute, "gpu"), (tol("dedicated", "Exists"),), True, True),
        (model.Taint("dedicated", NoExecute, "gpu"), (tol("", "Exists"),), True, True),
        # toleration for the wrong effect or value
        (
            model.Taint("dedicated", NoExecute, "gpu"),
            (tol("dedicated", "Exists", "", NoSchedule),),
            False,
            False,
        ),
        (model.Taint("dedicated", NoSchedule, "gpu"), (tol("dedicated", "Equal", "cpu"),), False, True),
    ],
)
def test_taints(taint: model.Taint, tolerations: tuple[model.Toleration, ...], run: bool, keep: bool) -> None:
    d = scheduling.decide(make_node(taints=(taint,)), make_spec(tolerations=tolerations))
    assert (d.should_run, d.should_continue_running) == (run, keep)
    if run:
        assert d.reasons == ()
    else:
        assert d.reasons == (f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}",)


def test_untolerated_taint_reason_wording() -> None:
    assert (
        scheduling.untolerated_taint_reason(model.Taint("dedicated", NoSchedule, "gpu"))
        == "node(s) had untolerated taint {dedicated: gpu}"
    )
    assert (
        scheduling.untolerated_taint_reason(model.Taint("node.kubernetes.io/not-ready", NoExecute))
        == "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    )


@pytest.mark.parametrize(
    "taint",
    [
        model.Taint("node.kubernetes.io/not-ready", NoExecute),
        model.Taint("node.kubernetes.io/unreachable", NoExecute),
        model.Taint("node.kubernetes.io/disk-pressure", NoSchedule),
        model.Taint("node.kubernetes.io/memory-pressure", NoSchedule),
        model.Taint("node.kubernetes.io/pid-pressure", NoSchedule),
        model.Taint("node.kubernetes.io/unschedulable", NoSchedule),
    ],
)
def test_default_tolerations_let_daemons_run(taint: model.Taint) -> None:
    assert scheduling.decide(make_node(taints=(taint,)), make_spec()) == scheduling.Decision(True, True)


def test_daemons_run_on_cordoned_node() -> None:
    cordoned = node.build("node-a", {}, (), True)
    assert scheduling.decide(cordoned, make_spec()).should_run


def test_default_tolerations_are_effect_specific() -> None:
    # the controller tolerates not-ready:NoExecute, not a not-ready:NoSchedule someone else adds
    n = make_node(taints=(model.Taint("node.kubernetes.io/not-ready", NoSchedule),))
    d = scheduling.decide(n, make_spec())
    assert (d.should_run, d.should_continue_running) == (False, True)


@pytest.mark.parametrize(("host_network", "run"), [(False, False), (True, True)])
def test_network_unavailable_tolerated_only_for_host_network(host_network: bool, run: bool) -> None:
    n = make_node(taints=(model.Taint("node.kubernetes.io/network-unavailable", NoSchedule),))
    d = scheduling.decide(n, make_spec(host_network=host_network))
    assert (d.should_run, d.should_continue_running) == (run, True)


def test_noexecute_wins_over_noschedule() -> None:
    taints = (model.Taint("a", NoSchedule, "1"), model.Taint("b", NoExecute, "2"))
    d = scheduling.decide(make_node(taints=taints), make_spec())
    assert (d.should_run, d.should_continue_running) == (False, False)
    assert d.reasons == ("node(s) had untolerated taint {a: 1}", "node(s) had untolerated taint {b: 2}")


def test_every_failing_predicate_is_reported() -> None:
    n = make_node({"zone": "a"}, taints=(model.Taint("a", NoSchedule, "1"),))
    d = scheduling.decide(n, make_spec(node_name="elsewhere", node_selector={"zone": "b"}))
    assert d == scheduling.Decision(
        False, False, (NODE_NAME, AFFINITY, "node(s) had untolerated taint {a: 1}"), None
    )


def test_same_key_value_on_two_effects_reported_once() -> None:
    taints = (model.Taint("a", NoSchedule, "1"), model.Taint("a", NoExecute, "1"))
    d = scheduling.decide(make_node(taints=taints), make_spec())
    assert d.reasons == ("node(s) had untolerated taint {a: 1}",)


# --- tolerationSeconds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taints", "tolerations", "expected"),
    [
        # no NoExecute taint: nothing to evict for
        ((), (tol("k", "Exists", "", NoExecute, 60),), None),
        ((model.Taint("k", NoSchedule),), (tol("k", "Exists", "", "", 60),), None),
        # tolerated without seconds: forever
        ((model.Taint("k", NoExecute),), (tol("k", "Exists", "", NoExecute),), None),
        # tolerated with seconds
        ((model.Taint("k", NoExecute),), (tol("k", "Exists", "", NoExecute, 300),), 300),
        # smallest over the taints
        (
            (model.Taint("a", NoExecute), model.Taint("b", NoExecute)),
            (tol("a", "Exists", "", NoExecute, 300), tol("b", "Exists", "", NoExecute, 60)),
            60,
        ),
        # a forever toleration for one taint does not cancel the deadline of another
        (
            (model.Taint("a", NoExecute), model.Taint("b", NoExecute)),
            (tol("a", "Exists", "", NoExecute), tol("b", "Exists", "", NoExecute, 60)),
            60,
        ),
        # the first tolerating toleration is the one used (GetMatchingTolerations)
        ((model.Taint("k", NoExecute),), (tol("k", "Exists"), tol("k", "Exists", "", NoExecute, 5)), None),
        ((model.Taint("k", NoExecute),), (tol("k", "Exists", "", NoExecute, 5), tol("k", "Exists")), 5),
        # zero or negative: evict at once
        ((model.Taint("k", NoExecute),), (tol("k", "Exists", "", NoExecute, 0),), 0),
        ((model.Taint("k", NoExecute),), (tol("k", "Exists", "", NoExecute, -10),), 0),
        # the controller's infinite not-ready toleration replaces the user's timed one
        (
            (model.Taint("node.kubernetes.io/not-ready", NoExecute),),
            (tol("node.kubernetes.io/not-ready", "Exists", "", NoExecute, 30),),
            None,
        ),
    ],
)
def test_evict_after_seconds(
    taints: tuple[model.Taint, ...], tolerations: tuple[model.Toleration, ...], expected: int | None
) -> None:
    d = scheduling.decide(make_node(taints=taints), make_spec(tolerations=tolerations))
    assert d.should_continue_running
    assert d.evict_after_seconds == expected


def test_evict_after_seconds_with_untolerated_noschedule() -> None:
    taints = (model.Taint("a", NoSchedule), model.Taint("b", NoExecute))
    d = scheduling.decide(make_node(taints=taints), make_spec(tolerations=(tol("b", "Exists", "", "", 120),)))
    assert d == scheduling.Decision(False, True, ("node(s) had untolerated taint {a: }",), 120)


def test_no_eviction_delay_when_evicted_anyway() -> None:
    taints = (model.Taint("a", NoExecute), model.Taint("b", NoExecute))
    d = scheduling.decide(make_node(taints=taints), make_spec(tolerations=(tol("b", "Exists", "", "", 120),)))
    assert d == scheduling.Decision(False, False, ("node(s) had untolerated taint {a: }",), None)


def test_decision_is_frozen() -> None:
    d = scheduling.Decision(True, True)
    with pytest.raises(AttributeError):
        d.should_run = False  # type: ignore[misc]


# --- Gt/Lt values that are not integers, as loaded from a manifest -----------------------------------


def _expr(key: str, op: str, *values: str) -> dict[str, object]:
    return {"key": key, "operator": op, "values": list(values)} if values else {"key": key, "operator": op}


def _spec_from_manifest(terms: list[list[dict[str, object]]]) -> model.PodSpec:
    """The pod spec of a DaemonSet manifest with these required node-affinity terms; it must load."""
    doc = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
                            }
                        }
                    },
                },
            },
        },
    }
    obj, errors, _ = manifests.parse_object(doc, "f.yaml", 0)
    assert [p.render() for p in errors] == []
    assert isinstance(obj, model.DaemonSet)
    return obj.spec.template.spec


@pytest.mark.parametrize(
    ("terms", "should_run"),
    [
        ([[_expr("cpus", "Gt", "4")]], True),  # an integer: compared
        ([[_expr("cpus", "Gt", "1.5")]], False),  # accepted, but the term never matches
        ([[_expr("cpus", "Lt", "1_0")]], False),
        ([[_expr("cpus", "Lt", "99999999999999999999")]], False),  # beyond int64
        ([[_expr("cpus", "Gt", "1.5")], [_expr("zone", "In", "a")]], True),  # another term matches
        ([[_expr("cpus", "Gt", "1.5")], [_expr("zone", "In", "b")]], False),
        ([[_expr("zone", "In", "b")], [_expr("cpus", "Lt", "x")], [_expr("zone", "Exists")]], True),
        ([[_expr("zone", "Exists"), _expr("cpus", "Gt", "1.5")]], False),  # ANDed in its own term: fails
    ],
)
def test_a_gt_lt_value_that_is_no_integer_fails_its_term_only(
    terms: list[list[dict[str, object]]], should_run: bool
) -> None:
    """Kubernetes' nodeaffinity: a requirement labels.NewRequirement cannot parse fails its term; the
    terms are ORed, so another term may still match (DaemonSet controller: NodeShouldRunDaemonPod)."""
    decision = scheduling.decide(make_node({"cpus": "8", "zone": "a"}), _spec_from_manifest(terms))
    assert decision.should_run is should_run
    if not should_run:
        assert decision.reasons == (AFFINITY,)
