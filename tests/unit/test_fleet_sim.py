"""The hollow-node simulation (benchmarks/fleet_sim.py) must behave as one agent per node: a node's
passes never overlap, or a pass that planned before another acted posts its stale report last and the
simulated rollout stalls on a node that runs the new revision but reports the old one."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
fleet_sim = importlib.import_module("fleet_sim")  # benchmarks/ is no package (nor type-checked)


def test_a_nodes_passes_never_overlap_and_a_wake_during_one_runs_another(tmp_path: Path) -> None:
    fleet = fleet_sim.Fleet("http://127.0.0.1:9/never", 0, 1, 2, str(tmp_path))
    node = fleet.nodes[0]
    lock = threading.Lock()
    inside, most, passes = 0, 0, 0
    first_started, release = threading.Event(), threading.Event()

    def reconcile() -> bool:
        nonlocal inside, most, passes
        with lock:
            inside += 1
            most = max(most, inside)
            passes += 1
            n = passes
        if n == 1:
            first_started.set()
            release.wait(10)  # the first pass is acting when the node is woken again
        with lock:
            inside -= 1
        return False

    node.reconcile = reconcile
    node.source_changed = lambda: None
    for w in fleet._workers:
        w.start()
    fleet.wake(0)
    assert first_started.wait(10)
    fleet.wake(0)  # e.g. its work finished: a second pass is due, the other worker is idle
    time.sleep(0.3)  # give an idle worker the chance to (wrongly) start it now
    release.set()
    deadline = time.monotonic() + 10
    while fleet.passes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert passes == 2  # the wake during the pass was not lost
    assert most == 1  # and its pass ran after the first, not beside it
