"""Starting `nodeagent serve` as its own process for a benchmark, shared by bench.py and replicas_bench.py."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

NODEAGENT = str(Path(sys.executable).parent / "nodeagent")


def start(args: list[str], what: str) -> tuple[subprocess.Popen[str], str]:
    """`nodeagent serve ARGS` (listening on 127.0.0.1:0): the process and its base URL, read from the line
    it logs when it listens; its further logs are drained so it never blocks on a full pipe."""
    proc = subprocess.Popen(
        [NODEAGENT, "serve", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = ""
    for line in proc.stderr:
        if line.startswith("serving ") and " at " in line:
            url = line.rsplit(" at ", 1)[1].strip().removesuffix("/manifests")
            break
    if not url:
        proc.kill()
        raise RuntimeError(f"{what} did not start")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, url
