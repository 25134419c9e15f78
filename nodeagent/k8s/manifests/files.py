"""Reading manifest files: the one module of the package that touches the filesystem.

A path that is not a regular file is never opened for reading (a FIFO would block the agent), and a
file over `MAX_FILE` is refused; everything else goes to the pure `documents.load_text`."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from nodeagent.k8s import model
from nodeagent.k8s.manifests.documents import load_text


def is_manifest_filename(name: str) -> bool:
    """`.yaml`, `.yml` or `.json`, and not a dot-file or an editor's backup, swap or lock file."""
    base = os.path.basename(name)
    if not base or base.startswith(".") or base.endswith("~"):
        return False
    if base.startswith("#") and base.endswith("#"):
        return False
    return base.lower().endswith((".yaml", ".yml", ".json"))


MAX_FILE = 16 * 1024 * 1024  # a manifest file larger than this is refused (as an HTTP bundle is)


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, socket or device): never opened for reading."""


def read_manifest_file(path: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file (a symlink to one is fine), without ever blocking on a FIFO.

    The path is checked before it is opened (a FIFO would block `open`, a device could have side
    effects), opened with O_NONBLOCK, and checked again on the open descriptor (it may have been
    swapped in between). A file larger than `limit` is refused, not read.
    """
    limit = MAX_FILE if limit is None else limit
    kinds = {
        stat.S_IFIFO: "a FIFO",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFDIR: "a directory",
    }

    def check(st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            what = kinds.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise NotRegularFile(0, f"not a regular file ({what}); only regular files are read")
        if st.st_size > limit:
            raise NotRegularFile(0, f"file larger than {limit} bytes; refused")

    check(os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        check(os.fstat(fd))
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise NotRegularFile(0, f"file larger than {limit} bytes; refused")
    finally:
        os.close(fd)
    return b"".join(chunks)


def load_file(path: str) -> model.LoadResult:
    """Load one file; an unreadable file is an error naming it, and keeps its previous version."""
    try:
        data = read_manifest_file(path)
    except OSError as exc:
        return _unreadable(path, exc)
    return load_text(data, path)


def load_paths(paths: Sequence[str]) -> model.LoadResult:
    """Load files and directories (not recursively: only a directory's own manifest files, sorted)."""
    results: list[model.LoadResult] = []
    for path in paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                results.append(_unreadable(path, exc))
                continue
            for name in names:
                full = os.path.join(path, name)
                if is_manifest_filename(name) and not os.path.isdir(full):  # a FIFO is an error
                    results.append(load_file(full))
        else:
            results.append(load_file(path))
    return model.LoadResult(
        documents=tuple(d for r in results for d in r.documents),
        errors=tuple(p for r in results for p in r.errors),
        warnings=tuple(p for r in results for p in r.warnings),
        failed=tuple(f for r in results for f in r.failed),
    )


def _unreadable(path: str, exc: OSError) -> model.LoadResult:
    reason = exc.strerror or str(exc)
    return model.LoadResult.failed_file(path, f"cannot read {path}: {reason}")
