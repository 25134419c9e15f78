"""One way to replace a file so that a reader (another process, or this one after a crash) sees either the
old content or the new, never half of it: a temporary file in the same directory, then a rename.

Used for stateDir's caches, the HTTP sources' last good bundles and `nodeagent sign`'s output."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write(path: str, data: bytes | str, *, mode: int | None = None, durable: bool = False) -> None:
    """Replace `path` with `data`; `mode` sets the file's permission bits before it appears (a bundle may
    hold Secrets: 0o600), `durable` fsyncs it first (a cache that must survive a power loss). Raises OSError;
    the temporary file never stays behind."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
