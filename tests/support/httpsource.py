"""HTTP sources and `nodeagent serve` as the tests drive them: a served directory on an ephemeral
loopback port, an HttpSource with a cache of its own, bundles."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from nodeagent import settings
from nodeagent.fleet import serve
from nodeagent.sources import files, http
from tests.support import manifests


def start_serve(directory: Path, **kw: Any) -> serve.Server:
    s = serve.Server(serve.ServeConfig(directory=str(directory), listen="127.0.0.1:0", **kw))
    s.start()
    return s


def source(
    url: str, tmp_path: Path, *, on_change: Callable[[], None] = lambda: None, watch: bool = True, **kw: Any
) -> http.HttpSource:
    opts = {k: kw.pop(k) for k in ("max_body", "watch_seconds", "node") if k in kw}
    cfg = settings.HttpSource(url=url, **kw)
    name = f"src-{uuid.uuid4().hex[:8]}"
    state = tmp_path / f"state-{name}"  # each source its own cache, unless a test shares one on purpose
    return http.HttpSource(name, cfg, on_change, state_dir=str(state), watch=watch, **opts)


def bundle(*docs: dict[str, Any]) -> bytes:
    return yaml.safe_dump_all(docs).encode()


def images(src: http.HttpSource) -> dict[str, str]:
    shot = src.snapshot()
    assert shot is not None
    return {d.obj.metadata.name: d.obj.spec.template.spec.containers[0].image for d in shot.documents}  # type: ignore[union-attr]


def answers(url: str) -> bool:
    """Does `url` answer 200 (a server up and ready)?"""
    try:
        return http.request("GET", url, timeout=1.0).status == 200
    except http.FetchError:
        return False


def ds_yaml(name: str, image: str = "busybox:1.36") -> str:
    """A bare DaemonSet document as a bundle carries it (no command, grace or pull policy set)."""
    return manifests.to_yaml(
        manifests.daemonset(name, image=image, command=None, grace=None, pull_policy=None)
    )


def content_images(content: files.FileContent | None) -> dict[str, str]:
    """name -> first container image of each object in a parsed bundle ("" for objects without a spec)."""
    assert content is not None
    out = {}
    for d in content.documents:
        spec = getattr(d.obj, "spec", None)
        out[d.obj.metadata.name] = spec.template.spec.containers[0].image if spec else ""
    return out
