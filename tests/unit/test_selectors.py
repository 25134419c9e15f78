"""nodeagent.k8s.selectors: the one home of selector matching and canonical selector forms."""

from __future__ import annotations

import pytest

from nodeagent.k8s import model, selectors

Req = model.LabelSelectorRequirement


def test_the_selector_hash_never_changes() -> None:
    # Recorded in a container label: a new form would make every DaemonSet pod look re-selected.
    selector = model.LabelSelector({"b": "1", "a": "2"}, (Req("k", "In", ("x", "y")),))
    assert selectors.selector_hash(selector) == "57349509bdc47efe"
    assert selectors.selector_hash(model.LabelSelector({"a": "2", "b": "1"}, selector.match_expressions)) == (
        selectors.selector_hash(selector)
    )


@pytest.mark.parametrize(
    ("selector", "lenient", "strict"),
    [
        (model.LabelSelector({"app": "a"}), True, True),
        (model.LabelSelector({"app": "b"}), False, False),
        (model.LabelSelector(match_expressions=(Req("app", "In", ("a", "b")),)), True, True),
        # an invalid requirement: skipped by the decoder's check (already an error), selects nothing otherwise
        (model.LabelSelector(match_expressions=(Req("app", "Bogus", ()),)), True, False),
        (model.LabelSelector(match_expressions=(Req("-bad", "Exists", ()),)), True, False),
    ],
)
def test_lenient_and_strict_matching(selector: model.LabelSelector, lenient: bool, strict: bool) -> None:
    labels = {"app": "a", "-bad": ""}
    assert selectors.selector_matches(selector, labels) is lenient
    assert selectors.label_selector_matches(selector, labels) is strict


def test_selector_json_leaves_empty_parts_out() -> None:
    selector = model.LabelSelector({"a": "1"}, (Req("k", "Exists", ()),))
    assert selectors.selector_json(selector) == {
        "matchLabels": {"a": "1"},
        "matchExpressions": [{"key": "k", "operator": "Exists"}],
    }
    assert selectors.selector_json(model.LabelSelector()) == {}
