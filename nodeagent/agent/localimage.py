"""A tiny local image built from the host's static busybox, for offline runs (`make run`) and tests.

No registry is needed: the image is `FROM scratch` with /bin/busybox copied in and one symlink per applet
(`/bin/sh`, `/bin/sleep`, ...), plus /tmp, /etc/passwd and /etc/group so user and group tests behave.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping
from typing import Protocol

from nodeagent import errors

DEFAULT_TAG = "nodeagent/busybox:latest"
PAUSE_TAG = "nodeagent/pause:latest"
LOCAL_IMAGE_LABEL = "io.nodeagent.local-image"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")
INSTALL_HINT = "install a static busybox first: apt-get install busybox-static"
# applets every test and example relies on, in case `busybox --list` cannot be run
FALLBACK_APPLETS = (
    "sh", "ash", "cat", "echo", "env", "false", "grep", "hostname", "id", "kill", "ls", "mkdir", "nc",
    "ps", "pwd", "rm", "sleep", "stat", "test", "touch", "true", "wget", "[",
)  # fmt: skip

DOCKERFILE = b"""FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["/bin/sh"]
"""

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


class LocalImageError(errors.NodeAgentError):
    """The local image cannot be built (no static busybox on this host)."""


class ImageBuilder(Protocol):
    """What `ensure_busybox_image` needs; `runtime.docker.DockerRuntime` provides it."""

    def image_present(self, image: str) -> bool: ...

    def build_busybox_image(self, tag: str, labels: dict[str, str], busybox: str | None = None) -> str: ...


def find_busybox(candidates: tuple[str, ...] = BUSYBOX_CANDIDATES) -> str:
    """The first static busybox binary on the host, or a LocalImageError saying how to install one."""
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise LocalImageError(f"no busybox binary found at {', '.join(candidates)}; {INSTALL_HINT}")


def applets(busybox: str) -> tuple[str, ...]:
    """The applets this busybox provides (`busybox --list`), or a fixed core set."""
    try:
        out = subprocess.run([busybox, "--list"], capture_output=True, check=True, timeout=10, text=True)
    except (OSError, subprocess.SubprocessError):
        return FALLBACK_APPLETS
    names = tuple(n for n in out.stdout.split() if n and "/" not in n and n != "busybox")
    return names or FALLBACK_APPLETS


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _read_busybox(busybox: str) -> bytes:
    try:
        with open(busybox, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise LocalImageError(f"cannot read {busybox}: {exc.strerror or exc}; {INSTALL_HINT}") from exc


def busybox_context(busybox: str) -> bytes:
    """An uncompressed tar build context: Dockerfile + rootfs/ with busybox and its applet links."""
    binary = _read_busybox(busybox)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", DOCKERFILE)
        for d in ("rootfs", "rootfs/bin", "rootfs/etc", "rootfs/root"):
            _add_dir(tar, d)
        _add_dir(tar, "rootfs/tmp", 0o1777)
        _add(tar, "rootfs/bin/busybox", binary, 0o755)
        _add(tar, "rootfs/etc/passwd", PASSWD)
        _add(tar, "rootfs/etc/group", GROUP)
        for name in applets(busybox):
            link = tarfile.TarInfo(f"rootfs/bin/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buf.getvalue()


# The pod sandbox's only process: sleeps until SIGTERM, then ends its sleep (which, under hostPID, would
# otherwise outlive it) and exits 0 at once, so stopping a pod never waits for a grace period on it.
PAUSE_SCRIPT = "trap 'kill $p 2>/dev/null; exit 0' TERM INT; while :; do sleep 86400 & p=$!; wait $p; done"
PAUSE_APPLETS = ("sh", "sleep", "true", "kill")
PAUSE_DOCKERFILE = (
    b"FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n"
    + b"ENTRYPOINT " + json.dumps(["/bin/sh", "-c", PAUSE_SCRIPT]).encode() + b"\n"
)  # fmt: skip


class ContextBuilder(Protocol):
    """What `ensure_pause_image` needs; `runtime.docker.DockerRuntime` provides it."""

    def image_present(self, image: str) -> bool: ...

    def build_context(self, context_tar: bytes, tag: str, labels: dict[str, str]) -> str: ...


def pause_context(busybox: str) -> bytes:
    """The build context of the sandbox image: busybox with just the applets the pause script uses."""
    binary = _read_busybox(busybox)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", PAUSE_DOCKERFILE)
        for d in ("rootfs", "rootfs/bin"):
            _add_dir(tar, d)
        _add(tar, "rootfs/bin/busybox", binary, 0o755)
        for name in PAUSE_APPLETS:
            link = tarfile.TarInfo(f"rootfs/bin/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buf.getvalue()


def ensure_pause_image(
    builder: ContextBuilder, tag: str = PAUSE_TAG, labels: Mapping[str, str] | None = None
) -> str:
    """The sandbox ("pause") image, built locally once (no registry needed); returns the tag.

    Kubernetes pulls registry.k8s.io/pause; we build the equivalent from the host's static busybox: a
    process that holds the pod's namespaces and does nothing else.
    """
    if builder.image_present(tag):
        return tag
    context = pause_context(find_busybox())
    return builder.build_context(context, tag, {LOCAL_IMAGE_LABEL: "true", **dict(labels or {})})


def ensure_busybox_image(
    builder: ImageBuilder, tag: str = DEFAULT_TAG, labels: Mapping[str, str] | None = None
) -> str:
    """Build the busybox image unless an image of that tag exists already; returns the tag."""
    if builder.image_present(tag):
        return tag
    find_busybox()  # a clear message before any engine work
    return builder.build_busybox_image(tag, dict(labels or {}))
