"""DirectorySource against real files and real watchdog events (no mocks).

Every wait is a bounded poll on a condition; nothing asserts on timing.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog.testing

from nodeagent.k8s import model
from nodeagent.sources import files
from nodeagent.sources import snapshot as snap
from tests.support import manifests
from tests.support.waiting import wait_for


def daemonset_yaml(name: str, image: str = "busybox:1.36", app: str = "") -> str:
    """A bare DaemonSet (no command, pull policy or grace period): sources only read it."""
    return manifests.to_yaml(
        manifests.daemonset(
            name, image=image, labels={"app": app or name}, command=None, grace=None, pull_policy=None
        )
    )


def broken_daemonset_yaml(name: str) -> str:
    """Valid YAML, invalid object: the container has no image."""
    return manifests.to_yaml(
        manifests.without_image(
            manifests.daemonset(name, namespace=None, command=None, grace=None, pull_policy=None)
        )
    )


def pod_yaml(name: str, image: str = "nginx:1.25") -> str:
    return manifests.to_yaml(
        manifests.static_pod(name, namespace=None, image=image, command=None, grace=None, pull_policy=None)
    )


def config_map_yaml(name: str, value: str) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  key: "{value}"
"""


def write(path: Path, text: str) -> None:
    """Write the way an editor or config tool would: to a temporary name, then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Changes:
    """Counts on_change calls (from the watcher thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self) -> None:
        with self._lock:
            self.count += 1


def names(s: snap.Snapshot | None, kind: str = "DaemonSet") -> dict[str, model.KubeObject]:
    assert s is not None
    return {d.obj.metadata.name: d.obj for d in s.documents if d.obj.kind == kind}


def image_of(s: snap.Snapshot | None, name: str) -> str:
    obj = names(s).get(name)
    assert isinstance(obj, model.DaemonSet), f"no DaemonSet {name}"
    return obj.spec.template.spec.containers[0].image


def has_image(source: files.DirectorySource, name: str, image: str) -> Callable[[], bool]:
    def check() -> bool:
        obj = names(source.snapshot()).get(name)
        return isinstance(obj, model.DaemonSet) and obj.spec.template.spec.containers[0].image == image

    return check


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def watched(tmp_path: Path, changes: Changes) -> Iterator[files.DirectorySource]:
    source = files.DirectorySource("ds", str(tmp_path), changes, relist_interval=3600.0, debounce=0.02)
    source.start()
    yield source
    source.stop()


# --- events ----------------------------------------------------------------------------------------


def test_empty_directory_gives_an_empty_good_snapshot(watched: files.DirectorySource) -> None:
    s = watched.snapshot()
    assert s is not None and s.ok and s.source == "ds"
    assert s.documents == () and s.errors == ()


def test_new_file_appears_and_on_change_fires(
    tmp_path: Path, watched: files.DirectorySource, changes: Changes
) -> None:
    before = changes.count
    write(tmp_path / "fluentd.yaml", daemonset_yaml("fluentd"))
    wait_for(lambda: "fluentd" in names(watched.snapshot()))
    wait_for(lambda: changes.count > before)
    doc = watched.snapshot().documents[0]  # type: ignore[union-attr]
    assert (doc.file, doc.index) == (str(tmp_path / "fluentd.yaml"), 0)


def test_file_written_in_place_appears(tmp_path: Path, watched: files.DirectorySource) -> None:
    (tmp_path / "a.yaml").write_text(daemonset_yaml("a"))
    wait_for(lambda: "a" in names(watched.snapshot()))


def test_modified_file_updates(tmp_path: Path, watched: files.DirectorySource, changes: Changes) -> None:
    path = tmp_path / "fluentd.yaml"
    path.write_text(daemonset_yaml("fluentd", image="fluentd:1"))
    wait_for(has_image(watched, "fluentd", "fluentd:1"))
    before = changes.count
    path.write_text(daemonset_yaml("fluentd", image="fluentd:2"))  # same size, in place
    wait_for(has_image(watched, "fluentd", "fluentd:2"))
    assert changes.count > before


def test_invalid_yaml_keeps_previous_good_version(tmp_path: Path, watched: files.DirectorySource) -> None:
    path = tmp_path / "fluentd.yaml"
    write(path, daemonset_yaml("fluentd", image="fluentd:1"))
    wait_for(has_image(watched, "fluentd", "fluentd:1"))

    write(path, "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: [unclosed\n")
    wait_for(lambda: bool(watched.snapshot().errors))  # type: ignore[union-attr]
    s = watched.snapshot()
    assert s is not None and s.ok
    assert image_of(s, "fluentd") == "fluentd:1"
    assert all(e.file == str(path) for e in s.errors)

    write(path, daemonset_yaml("fluentd", image="fluentd:2"))
    wait_for(has_image(watched, "fluentd", "fluentd:2"))
    assert watched.snapshot().errors == ()  # type: ignore[union-attr]


def test_truncated_file_keeps_previous_good_version(tmp_path: Path, watched: files.DirectorySource) -> None:
    path = tmp_path / "fluentd.yaml"
    full = daemonset_yaml("fluentd", image="fluentd:1")
    write(path, full)
    wait_for(has_image(watched, "fluentd", "fluentd:1"))

    write(path, full[: full.index("{app:") + 7])  # cut off mid-line: an unclosed flow mapping
    wait_for(lambda: bool(watched.snapshot().errors))  # type: ignore[union-attr]
    assert image_of(watched.snapshot(), "fluentd") == "fluentd:1"


def test_document_failing_validation_keeps_its_previous_version_others_update(
    tmp_path: Path, watched: files.DirectorySource
) -> None:
    path = tmp_path / "multi.yaml"
    write(
        path,
        "---\n".join([daemonset_yaml("a", "a:1"), daemonset_yaml("b", "b:1"), daemonset_yaml("c", "c:1")]),
    )
    wait_for(has_image(watched, "c", "c:1"))

    write(
        path,
        "---\n".join([daemonset_yaml("a", "a:2"), broken_daemonset_yaml("b"), daemonset_yaml("c", "c:2")]),
    )
    wait_for(has_image(watched, "c", "c:2"))
    s = watched.snapshot()
    assert s is not None
    assert image_of(s, "a") == "a:2"
    assert image_of(s, "b") == "b:1"  # the previous good version of document #1
    assert [(e.file, e.document) for e in s.errors] == [(str(path), 1)]
    assert [d.obj.metadata.name for d in s.documents] == ["a", "b", "c"]


def test_failed_document_is_matched_by_identity_not_position(
    tmp_path: Path, watched: files.DirectorySource
) -> None:
    path = tmp_path / "multi.yaml"
    write(path, "---\n".join([daemonset_yaml("a", "a:1"), daemonset_yaml("b", "b:1")]))
    wait_for(has_image(watched, "b", "b:1"))

    # "a" deleted from the file and "b" (now document #0) broken in the same edit
    write(path, broken_daemonset_yaml("b"))
    wait_for(lambda: "a" not in names(watched.snapshot()))
    assert image_of(watched.snapshot(), "b") == "b:1"


def list_yaml(*items: str) -> str:
    indented = ["\n".join("    " + line for line in item.splitlines()) for item in items]
    return "apiVersion: v1\nkind: List\nitems:\n" + "\n".join("  - " + i.lstrip() for i in indented) + "\n"


def test_failed_list_document_is_kept_whole(tmp_path: Path, watched: files.DirectorySource) -> None:
    path = tmp_path / "list.yaml"
    write(
        path,
        "---\n".join(
            [daemonset_yaml("x", "x:1"), list_yaml(daemonset_yaml("a", "a:1"), daemonset_yaml("b", "b:1"))]
        ),
    )
    wait_for(lambda: set(names(watched.snapshot())) == {"x", "a", "b"})

    write(
        path,
        "---\n".join(
            [daemonset_yaml("x", "x:2"), list_yaml(daemonset_yaml("a", "a:2"), broken_daemonset_yaml("b"))]
        ),
    )
    wait_for(has_image(watched, "x", "x:2"))
    s = watched.snapshot()
    assert image_of(s, "a") == "a:1" and image_of(s, "b") == "b:1"
    assert s is not None and {e.document for e in s.errors} == {1}


def test_deleted_file_withdraws_its_objects(tmp_path: Path, watched: files.DirectorySource) -> None:
    write(tmp_path / "a.yaml", daemonset_yaml("a"))
    write(tmp_path / "b.yaml", daemonset_yaml("b"))
    wait_for(lambda: set(names(watched.snapshot())) == {"a", "b"})
    (tmp_path / "a.yaml").unlink()
    wait_for(lambda: set(names(watched.snapshot())) == {"b"})


def test_deleting_a_broken_file_withdraws_the_kept_version(
    tmp_path: Path, watched: files.DirectorySource
) -> None:
    path = tmp_path / "a.yaml"
    write(path, daemonset_yaml("a"))
    wait_for(lambda: "a" in names(watched.snapshot()))
    write(path, "{{{not yaml")
    wait_for(lambda: bool(watched.snapshot().errors))  # type: ignore[union-attr]
    path.unlink()
    wait_for(lambda: not names(watched.snapshot()) and not watched.snapshot().errors)  # type: ignore[union-attr]


def test_renamed_away_file_withdraws(tmp_path: Path, watched: files.DirectorySource) -> None:
    write(tmp_path / "a.yaml", daemonset_yaml("a"))
    wait_for(lambda: "a" in names(watched.snapshot()))
    os.rename(tmp_path / "a.yaml", tmp_path / "a.yaml.disabled~")
    wait_for(lambda: not names(watched.snapshot()))


def test_dot_files_and_backups_are_ignored(tmp_path: Path, watched: files.DirectorySource) -> None:
    (tmp_path / ".hidden.yaml").write_text(daemonset_yaml("hidden"))
    (tmp_path / "backup.yaml~").write_text(daemonset_yaml("backup"))
    (tmp_path / ".swap.yaml.swp").write_text("binary junk \x00")
    write(tmp_path / "real.yaml", daemonset_yaml("real"))  # a change we can wait for
    wait_for(lambda: "real" in names(watched.snapshot()))
    watched.relist()
    s = watched.snapshot()
    assert set(names(s)) == {"real"}
    assert s is not None and s.errors == ()


def test_subdirectories_are_not_read(tmp_path: Path, watched: files.DirectorySource) -> None:
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "sub.yaml" / "x.yaml").write_text(daemonset_yaml("nested"))
    write(tmp_path / "top.yaml", daemonset_yaml("top"))
    wait_for(lambda: "top" in names(watched.snapshot()))
    assert set(names(watched.snapshot())) == {"top"}


def test_secret_values_are_not_logged(tmp_path: Path, watched: files.DirectorySource) -> None:
    with structlog.testing.capture_logs() as logs:
        write(
            tmp_path / "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {token: hunter2}\n---\n"
            + broken_daemonset_yaml("x"),
        )
        wait_for(lambda: bool(watched.snapshot().errors))  # type: ignore[union-attr]
    assert any(e["event"] == "manifest_invalid" for e in logs)
    assert "hunter2" not in repr(logs)


# --- kinds -----------------------------------------------------------------------------------------


def test_static_pod_source_accepts_only_pods(tmp_path: Path, changes: Changes) -> None:
    (tmp_path / "etcd.yaml").write_text(pod_yaml("etcd"))
    (tmp_path / "ds.yaml").write_text(daemonset_yaml("agent"))
    source = files.DirectorySource(
        "static", str(tmp_path), changes, allowed_kinds=files.STATIC_POD_SOURCE_KINDS
    )
    source.relist()
    s = source.snapshot()
    assert s is not None
    assert set(names(s, "Pod")) == {"etcd"}
    assert names(s) == {}
    assert [(e.file, e.document, e.path) for e in s.errors] == [(str(tmp_path / "ds.yaml"), 0, "kind")]


def test_daemonset_source_refuses_pods(tmp_path: Path, changes: Changes) -> None:
    (tmp_path / "all.yaml").write_text(
        "---\n".join([daemonset_yaml("agent"), pod_yaml("stray"), config_map_yaml("cfg", "v")])
    )
    source = files.DirectorySource("ds", str(tmp_path), changes)
    source.relist()
    s = source.snapshot()
    assert s is not None
    assert sorted(d.obj.kind for d in s.documents) == ["ConfigMap", "DaemonSet"]
    assert [(e.document, e.path, e.kind) for e in s.errors] == [(1, "kind", "Pod")]


# --- the directory itself --------------------------------------------------------------------------


def test_missing_directory_gives_no_snapshot_until_created(tmp_path: Path, changes: Changes) -> None:
    directory = tmp_path / "later"
    source = files.DirectorySource(
        "ds", str(directory), changes, relist_interval=3600.0, debounce=0.02, retry_interval=0.05
    )
    source.start()
    try:
        assert source.snapshot() is None
        assert source.failure is not None and str(directory) in source.failure.file
        directory.mkdir()
        write(directory / "a.yaml", daemonset_yaml("a"))
        wait_for(lambda: source.snapshot() is not None and "a" in names(source.snapshot()))
        assert source.failure is None
        # and it is watched from then on
        write(directory / "b.yaml", daemonset_yaml("b"))
        wait_for(lambda: "b" in names(source.snapshot()))
    finally:
        source.stop()


def test_directory_removed_keeps_last_good_then_recovers(tmp_path: Path, changes: Changes) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    write(directory / "a.yaml", daemonset_yaml("a", "a:1"))
    source = files.DirectorySource(
        "ds", str(directory), changes, relist_interval=3600.0, debounce=0.02, retry_interval=0.05
    )
    source.start()
    try:
        assert "a" in names(source.snapshot())
        shutil.rmtree(directory)
        wait_for(lambda: not source.snapshot().ok)  # type: ignore[union-attr]
        s = source.snapshot()
        assert s is not None
        assert image_of(s, "a") == "a:1"  # last good, for information; the merger keeps its own copy
        assert source.failure is not None and source.failure in s.errors

        directory.mkdir()
        write(directory / "a.yaml", daemonset_yaml("a", "a:2"))
        wait_for(lambda: source.snapshot().ok and image_of(source.snapshot(), "a") == "a:2")  # type: ignore[union-attr]
        assert source.failure is None
    finally:
        source.stop()


def test_a_directory_that_could_not_be_listed_is_watched_anew(tmp_path: Path, changes: Changes) -> None:
    """A directory removed and made again may get the inode number of the one it replaces, and the
    watch of that one is dead: once the directory could not be listed, it is watched anew when it is back
    (before, the new file of a recreated directory waited for the hourly relist, a flaky CI run)."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    source = files.DirectorySource(
        "ds", str(directory), changes, relist_interval=3600.0, debounce=0.02, retry_interval=0.05
    )
    source.start()
    try:
        wait_for(lambda: source._observer is not None)
        old = source._observer
        source._unavailable(OSError(2, "No such file or directory"))  # as a listing of a missing directory
        with source._cond:
            source._cond.notify_all()  # the worker looks at its watch again
        wait_for(lambda: source._observer is not None and source._observer is not old)
        write(directory / "a.yaml", daemonset_yaml("a", "a:1"))
        wait_for(lambda: "a" in names(source.snapshot()))
    finally:
        source.stop()


def test_file_instead_of_directory_is_a_failure(tmp_path: Path, changes: Changes) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("")
    source = files.DirectorySource("ds", str(path), changes)
    source.relist()
    assert source.snapshot() is None
    assert source.failure is not None


# --- relist ----------------------------------------------------------------------------------------


def test_relist_catches_a_change_without_events(tmp_path: Path, changes: Changes) -> None:
    source = files.DirectorySource("ds", str(tmp_path), changes)  # never started: no watcher
    source.relist()
    assert names(source.snapshot()) == {}
    write(tmp_path / "a.yaml", daemonset_yaml("a"))
    assert names(source.snapshot()) == {}
    source.relist()
    assert set(names(source.snapshot())) == {"a"}
    assert changes.count == 2  # first listing, then the change
    source.relist()
    assert changes.count == 2  # nothing changed, no wake-up


def test_periodic_relist_without_watching(tmp_path: Path, changes: Changes) -> None:
    source = files.DirectorySource("ds", str(tmp_path), changes, relist_interval=0.05, watch=False)
    source.start()
    try:
        write(tmp_path / "a.yaml", daemonset_yaml("a", "a:1"))
        wait_for(has_image(source, "a", "a:1"))
        write(tmp_path / "a.yaml", daemonset_yaml("a", "a:2"))
        wait_for(has_image(source, "a", "a:2"))
        (tmp_path / "a.yaml").unlink()
        wait_for(lambda: names(source.snapshot()) == {})
    finally:
        source.stop()


def test_stop_and_restart(tmp_path: Path, changes: Changes) -> None:
    source = files.DirectorySource("ds", str(tmp_path), changes, relist_interval=3600.0, debounce=0.02)
    source.start()
    source.stop()
    write(tmp_path / "a.yaml", daemonset_yaml("a"))
    source.start()
    try:
        assert "a" in names(source.snapshot())
        write(tmp_path / "b.yaml", daemonset_yaml("b"))
        wait_for(lambda: "b" in names(source.snapshot()))
    finally:
        source.stop()
