"""imagesDir against the real engine: a `docker save` tarball dropped into the directory is imported."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import images
from tests.support.waiting import wait_for


@pytest.fixture
def saved_tarball(docker_runtime: docker_rt.DockerRuntime, test_image: str, tmp_path: Path) -> Iterator[Path]:
    """The test image saved under a unique tag, which is then removed from the engine."""
    api = docker_runtime._api()
    tag = f"nodeagent-test/imagesdir:{int(time.time() * 1000)}"
    repo, version = tag.rsplit(":", 1)
    api.tag(test_image, repo, version)
    out = tmp_path / "saved.tar"
    with out.open("wb") as fh:
        for chunk in api.get_image(tag):
            fh.write(chunk)
    api.remove_image(tag)
    assert not docker_runtime.image_present(tag)
    yield out
    if docker_runtime.image_present(tag):
        api.remove_image(tag, force=True)


def test_tarball_dropped_in_is_imported(
    docker_runtime: docker_rt.DockerRuntime, saved_tarball: Path, tmp_path: Path
) -> None:
    watched = tmp_path / "images"
    watched.mkdir()
    changed = threading.Event()
    d = images.ImagesDirectory(str(watched), docker_runtime.load_images, changed.set, relist_interval=60)
    d.start()
    try:
        (watched / ".partial.tar").write_bytes(b"ignored: dot-file")
        saved_tarball.rename(watched / "app.tar")
        assert wait_for(changed.is_set), "no import after the tarball appeared"
        assert any(name.startswith("nodeagent-test/imagesdir:") for name in d.loaded)
        assert all(docker_runtime.image_present(name) for name in d.loaded)
        # the same content is not imported twice
        changed.clear()
        assert d.scan() == []
    finally:
        d.stop()


def test_broken_tarball_is_reported_not_raised(
    docker_runtime: docker_rt.DockerRuntime, tmp_path: Path
) -> None:
    (tmp_path / "broken.tar").write_bytes(b"this is not a tar archive")
    d = images.ImagesDirectory(str(tmp_path), docker_runtime.load_images, lambda: None, watch=False)
    assert d.scan() == []


def test_missing_directory_is_not_an_error(tmp_path: Path) -> None:
    d = images.ImagesDirectory(str(tmp_path / "nope"), lambda p: ["x"], lambda: None, watch=False)
    assert d.scan() == []


def test_filter() -> None:
    assert images.is_image_tarball("a.tar") and images.is_image_tarball("b.tar.gz")
    assert not images.is_image_tarball(".a.tar") and not images.is_image_tarball("a.yaml")


def test_agent_imports_images_before_its_first_pass(
    docker_runtime: docker_rt.DockerRuntime, saved_tarball: Path, tmp_path: Path, name_prefix: str
) -> None:
    from nodeagent import settings
    from nodeagent.agent import agent

    (tmp_path / "images").mkdir()
    (tmp_path / "ds").mkdir()
    saved_tarball.rename(tmp_path / "images" / "app.tar")
    node_name = f"{name_prefix}-images"
    (tmp_path / "config.yaml").write_text(
        f"node: {{name: {node_name}}}\nsources: [{{directory: ds}}]\nimagesDir: images\nstateDir: state\n"
    )
    rt = docker_rt.DockerRuntime(node_name=node_name)
    a = agent.Agent(settings.load(str(tmp_path / "config.yaml")), rt)
    a.relist()  # imports the tarball: it names the tag we need
    tag = next(n for n in a.images.loaded if n.startswith("nodeagent-test/imagesdir:")) if a.images else ""
    (tmp_path / "ds" / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: app, namespace: imgtest}\nspec:\n"
        "  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n"
        "      terminationGracePeriodSeconds: 1\n"
        f"      containers: [{{name: c, image: '{tag}', imagePullPolicy: Never, command: [sleep, '100']}}]\n"
    )
    try:
        a.relist()
        result = a.reconcile()
        assert not result.failed, result.failed
        assert [c.state for c in rt.list_managed()] == ["running"]
    finally:
        for c in rt.list_managed():
            rt.remove(c.id)
