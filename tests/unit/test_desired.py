"""The merger: conflicts, selector immutability, the all-sources-seen gate, last good kept."""

from __future__ import annotations

import pytest

from nodeagent.agent import desired
from nodeagent.k8s import model
from nodeagent.sources import snapshot as snap


def daemonset(
    name: str, app: str = "", image: str = "busybox:1.36", namespace: str = "default"
) -> model.DaemonSet:
    labels = {"app": app or name}
    return model.DaemonSet(
        metadata=model.ObjectMeta(name=name, namespace=namespace),
        spec=model.DaemonSetSpec(
            selector=model.LabelSelector(match_labels=labels),
            template=model.PodTemplateSpec(
                metadata=model.ObjectMeta(name="", namespace=namespace, labels=labels),
                spec=model.PodSpec(containers=(model.Container(name="main", image=image),)),
            ),
        ),
    )


def pod(name: str, image: str = "nginx:1.25") -> model.Pod:
    return model.Pod(
        metadata=model.ObjectMeta(name=name),
        spec=model.PodSpec(containers=(model.Container(name="main", image=image),)),
    )


def config_map(name: str, **data: str) -> model.ConfigMap:
    return model.ConfigMap(metadata=model.ObjectMeta(name=name), data=data)


def secret(name: str, **data: bytes) -> model.Secret:
    return model.Secret(metadata=model.ObjectMeta(name=name), data=data)


def snapshot(
    source: str, *docs: tuple[model.KubeObject, str], ok: bool = True, **kw: object
) -> snap.Snapshot:
    documents = tuple(model.Document(obj, file, i) for i, (obj, file) in enumerate(docs))
    return snap.Snapshot(source=source, documents=documents, ok=ok, **kw)  # type: ignore[arg-type]


def problem(message: str, file: str = "/d/a.yaml") -> model.Problem:
    return model.Problem(file=file, document=0, kind="DaemonSet", name="x", path="spec", message=message)


# --- the all-sources-seen gate -------------------------------------------------------------------


def test_nothing_seen_at_start() -> None:
    merger = desired.Merger(["a", "b"])
    state = merger.state()
    assert not state.all_sources_seen
    assert state.pending_sources == ("a", "b")
    assert state.daemonsets == {}


def test_all_sources_seen_only_after_every_source_delivered() -> None:
    merger = desired.Merger(["a", "b"])
    state = merger.update(snapshot("a", (daemonset("fluentd"), "/a/f.yaml")))
    assert not state.all_sources_seen
    assert state.pending_sources == ("b",)
    assert set(state.daemonsets) == {("default", "fluentd")}

    state = merger.update(snapshot("b"))  # a good, empty snapshot counts
    assert state.all_sources_seen
    assert state.pending_sources == ()


def test_failed_snapshot_does_not_count_as_delivered() -> None:
    merger = desired.Merger(["a"])
    state = merger.update(snapshot("a", ok=False, errors=(problem("cannot read directory"),)))
    assert not state.all_sources_seen
    assert [p.message for p in state.errors] == ["cannot read directory"]


def test_failure_before_first_snapshot_is_shown_and_not_delivered() -> None:
    merger = desired.Merger(["a", "b"])
    merger.update(snapshot("b", (daemonset("x"), "/b/x.yaml")))
    state = merger.update_failure("a", problem("cannot read directory"))
    assert not state.all_sources_seen
    assert [p.message for p in state.errors] == ["cannot read directory"]
    assert set(state.daemonsets) == {("default", "x")}
    state = merger.update(snapshot("a"))
    assert state.all_sources_seen and state.errors == ()


def test_no_sources_is_trivially_seen() -> None:
    assert desired.Merger([]).state().all_sources_seen


def test_unknown_source_is_refused() -> None:
    merger = desired.Merger(["a"])
    with pytest.raises(ValueError, match="zzz"):
        merger.update(snapshot("zzz"))


# --- last good kept --------------------------------------------------------------------------------


def test_failed_source_keeps_last_good_documents_and_shows_its_error() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("fluentd"), "/a/f.yaml")))
    state = merger.update(snapshot("a", ok=False, errors=(problem("cannot read directory"),)))
    assert set(state.daemonsets) == {("default", "fluentd")}
    assert state.all_sources_seen
    assert [p.message for p in state.errors] == ["cannot read directory"]

    state = merger.update(snapshot("a", (daemonset("fluentd"), "/a/f.yaml")))
    assert state.errors == ()


def test_good_empty_snapshot_withdraws() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("fluentd"), "/a/f.yaml")))
    state = merger.update(snapshot("a"))
    assert state.daemonsets == {}


def test_snapshot_errors_and_warnings_pass_through() -> None:
    merger = desired.Merger(["a"])
    warning = model.Problem("/a/f.yaml", 0, "DaemonSet", "x", "spec.x", "not implemented", "warning")
    state = merger.update(
        snapshot("a", (daemonset("fluentd"), "/a/f.yaml"), errors=(problem("bad"),), warnings=(warning,))
    )
    assert [p.message for p in state.errors] == ["bad"]
    assert state.warnings == (warning,)


def test_objects_are_sorted_by_kind() -> None:
    merger = desired.Merger(["ds", "static"])
    merger.update(snapshot("ds", (daemonset("agent"), "/d/a.yaml"), (config_map("cfg", k="v"), "/d/a.yaml")))
    state = merger.update(
        snapshot("static", (pod("etcd"), "/s/etcd.yaml"), (secret("token", t=b"s3cret"), "/s/etcd.yaml"))
    )
    assert set(state.daemonsets) == {("default", "agent")}
    assert set(state.static_pods) == {("default", "etcd")}
    assert state.static_pods["default", "etcd"].source == "static"
    assert set(state.config_maps) == {("default", "cfg")}
    assert set(state.secrets) == {("default", "token")}
    entry = state.daemonsets["default", "agent"]
    assert (entry.source, entry.file, entry.index) == ("ds", "/d/a.yaml", 0)


def test_lookup_gives_config_map_and_secret_data() -> None:
    merger = desired.Merger(["a"])
    state = merger.update(snapshot("a", (config_map("cfg", k="v"), "/f"), (secret("token", t=b"x"), "/f")))
    assert state.lookup("ConfigMap", "default", "cfg") == {"k": "v"}
    assert state.lookup("Secret", "default", "token") == {"t": b"x"}
    assert state.lookup("ConfigMap", "default", "missing") is None
    assert state.lookup("Secret", "other", "token") is None


def test_secret_values_never_in_repr() -> None:
    merger = desired.Merger(["a"])
    state = merger.update(snapshot("a", (secret("token", t=b"hunter2"), "/f")))
    assert "hunter2" not in repr(state)


# --- conflicts -------------------------------------------------------------------------------------


def test_conflict_names_both_places_and_first_in_force_wins() -> None:
    merger = desired.Merger(["a", "b"])
    merger.update(snapshot("b", (daemonset("fluentd", image="b:1"), "/b/f.yaml")))
    state = merger.update(snapshot("a", (daemonset("fluentd", image="a:1"), "/a/f.yaml")))
    entry = state.daemonsets["default", "fluentd"]
    assert entry.source == "b"
    assert len(state.errors) == 1
    err = state.errors[0]
    assert (err.file, err.document, err.kind, err.name) == ("/a/f.yaml", 0, "DaemonSet", "fluentd")
    assert "/b/f.yaml" in err.message and "source a" in err.message and "source b" in err.message


def test_tie_break_by_source_order_when_nothing_is_in_force() -> None:
    merger = desired.Merger(["a", "b", "c"])
    merger.update(snapshot("c", (daemonset("x", image="c"), "/c/x.yaml")))
    merger.update(snapshot("b", (daemonset("x", image="b"), "/b/x.yaml")))
    merger.update(snapshot("a", (daemonset("x", image="a"), "/a/x.yaml")))
    assert merger.state().daemonsets["default", "x"].source == "c"
    state = merger.update(snapshot("c"))  # the one in force withdrawn: "a" and "b" compete, "a" is first
    assert state.daemonsets["default", "x"].source == "a"
    assert [e.file for e in state.errors] == ["/b/x.yaml"]


def test_tie_break_by_file_name_within_a_source() -> None:
    merger = desired.Merger(["a"])
    state = merger.update(
        snapshot("a", (daemonset("x", image="z"), "/a/z.yaml"), (daemonset("x", image="m"), "/a/m.yaml"))
    )
    assert state.daemonsets["default", "x"].file == "/a/m.yaml"
    assert [e.file for e in state.errors] == ["/a/z.yaml"]


def test_first_definition_keeps_winning_over_an_earlier_source() -> None:
    merger = desired.Merger(["a", "b"])
    merger.update(snapshot("b", (daemonset("x", image="b"), "/b/x.yaml")))
    merger.update(snapshot("a"))
    state = merger.update(snapshot("a", (daemonset("x", image="a"), "/a/x.yaml")))
    assert state.daemonsets["default", "x"].source == "b"
    assert state.daemonsets["default", "x"].obj.spec.template.spec.containers[0].image == "b"


def test_loser_takes_over_when_winner_withdrawn() -> None:
    merger = desired.Merger(["a", "b"])
    merger.update(snapshot("a", (daemonset("x", image="a"), "/a/x.yaml")))
    merger.update(snapshot("b", (daemonset("x", image="b"), "/b/x.yaml")))
    state = merger.update(snapshot("a"))
    assert state.daemonsets["default", "x"].source == "b"
    assert state.errors == ()


def test_winner_updating_its_definition_keeps_winning() -> None:
    merger = desired.Merger(["a", "b"])
    merger.update(snapshot("b", (daemonset("x", image="b1"), "/b/x.yaml")))
    merger.update(snapshot("a", (daemonset("x", image="a"), "/a/x.yaml")))
    state = merger.update(snapshot("b", (daemonset("x", image="b2"), "/b/x.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.template.spec.containers[0].image == "b2"


def test_same_name_in_other_namespace_or_kind_is_no_conflict() -> None:
    merger = desired.Merger(["a"])
    state = merger.update(
        snapshot(
            "a",
            (daemonset("x"), "/a/1.yaml"),
            (daemonset("x", namespace="kube-system"), "/a/2.yaml"),
            (config_map("x"), "/a/3.yaml"),
        )
    )
    assert state.errors == ()
    assert set(state.daemonsets) == {("default", "x"), ("kube-system", "x")}


def test_duplicate_in_one_file_keeps_the_first_document() -> None:
    merger = desired.Merger(["a"])
    state = merger.update(
        snapshot("a", (config_map("x", v="1"), "/a/f.yaml"), (config_map("x", v="2"), "/a/f.yaml"))
    )
    assert state.config_maps["default", "x"].obj.data == {"v": "1"}
    assert [(e.file, e.document) for e in state.errors] == [("/a/f.yaml", 1)]


def test_conflicting_secret_message_has_no_value() -> None:
    merger = desired.Merger(["a", "b"])
    merger.update(snapshot("a", (secret("s", k=b"first-secret"), "/a/s.yaml")))
    state = merger.update(snapshot("b", (secret("s", k=b"second-secret"), "/b/s.yaml")))
    assert len(state.errors) == 1
    assert "first-secret" not in repr(state.errors) and "second-secret" not in repr(state.errors)


# --- selector immutability -------------------------------------------------------------------------


def test_selector_change_is_refused_and_old_version_stays() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("x", app="one", image="v1"), "/a/x.yaml")))
    state = merger.update(snapshot("a", (daemonset("x", app="two", image="v2"), "/a/x.yaml")))
    entry = state.daemonsets["default", "x"]
    assert entry.obj.spec.selector.match_labels == {"app": "one"}
    assert entry.obj.spec.template.spec.containers[0].image == "v1"
    assert len(state.errors) == 1
    err = state.errors[0]
    assert (err.file, err.document) == ("/a/x.yaml", 0)
    assert "selector" in err.path
    assert state.protected_owners == {"DaemonSet/default/x"}

    # still refused on the next merge (compared with the version in force, not the refused one)
    state = merger.update(snapshot("a", (daemonset("x", app="two", image="v3"), "/a/x.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.template.spec.containers[0].image == "v1"
    assert len(state.errors) == 1

    # putting the selector back accepts the update
    state = merger.update(snapshot("a", (daemonset("x", app="one", image="v4"), "/a/x.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.template.spec.containers[0].image == "v4"
    assert state.errors == ()
    assert state.protected_owners == frozenset()


def test_same_selector_update_is_accepted() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("x", image="v1"), "/a/x.yaml")))
    state = merger.update(snapshot("a", (daemonset("x", image="v2"), "/a/x.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.template.spec.containers[0].image == "v2"
    assert state.errors == ()


def test_selector_may_change_after_delete_and_recreate() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("x", app="one"), "/a/x.yaml")))
    merger.update(snapshot("a"))
    state = merger.update(snapshot("a", (daemonset("x", app="two"), "/a/x.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.selector.match_labels == {"app": "two"}
    assert state.errors == ()


def test_selector_may_change_when_moved_to_another_file() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("x", app="one"), "/a/x.yaml")))
    state = merger.update(snapshot("a", (daemonset("x", app="two"), "/a/y.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.selector.match_labels == {"app": "two"}
    assert state.errors == ()


def test_selector_kept_while_source_fails() -> None:
    merger = desired.Merger(["a"])
    merger.update(snapshot("a", (daemonset("x", app="one"), "/a/x.yaml")))
    merger.update(snapshot("a", ok=False, errors=(problem("down"),)))
    state = merger.update(snapshot("a", (daemonset("x", app="two"), "/a/x.yaml")))
    assert state.daemonsets["default", "x"].obj.spec.selector.match_labels == {"app": "one"}
    assert len(state.errors) == 1
