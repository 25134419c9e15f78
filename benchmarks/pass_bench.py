"""The CPU of one rollout controller pass (serve's `sync_rollouts`) over N nodes in the middle of a rollout,
with 20 nodes reporting their new pod before each pass, as during a wave. In-process, no HTTP, no
simulation: the figure is the controller's own, which `make bench`'s rollout row reads only as a share.

    .venv/bin/python benchmarks/pass_bench.py [NODES] [--profile]

Prints the median, least and greatest thread CPU time of 30 passes (after 10 unmeasured ones)."""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# run as `python benchmarks/pass_bench.py`: the repo root on sys.path, so the test helpers import as
# they do under pytest (bench.py does the same)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodeagent.agent import identity
from nodeagent.fleet import serve
from nodeagent.fleet import view as fleet
from nodeagent.k8s import manifests as k8s_manifests
from nodeagent.k8s import model
from tests.support import manifests


def daemonset(image: str) -> str:
    ds = manifests.daemonset("web", image=image, pull_policy=None, command=None, grace=None)
    return manifests.to_yaml(manifests.rolling(ds, "10%"))


def report(node: str, revision: str, t: float) -> dict[str, Any]:
    pod = {
        "namespace": "default",
        "name": "web",
        "revision": revision,
        "ready": True,
        "available": True,
        "readySince": t - 5,
        "containers": [{"name": "c", "restartCount": 0, "state": "running", "reason": ""}],
    }
    return {
        "name": node,
        "labels": {"zone": f"z{int(node[-5:]) % 3}"},
        "taints": [],
        "status": {"node": node, "daemonSets": [{"namespace": "default", "name": "web", "pods": [pod]}]},
    }


def main() -> int:
    nodes = int(next((a for a in sys.argv[1:] if a.isdigit()), "5000"))
    root = Path(tempfile.mkdtemp(prefix="nodeagent-pass-bench-"))
    (root / "m").mkdir()
    (root / "m" / "web.yaml").write_text(daemonset("web:1"))
    srv = serve.Server(
        serve.ServeConfig(directory=str(root / "m"), listen="127.0.0.1:0", state_dir=str(root / "s"))
    )
    srv.publisher.scan()
    names = [f"node-{i:05d}" for i in range(nodes)]

    def post(node: str) -> None:
        """The node reports the revision serve hands it, as its agent would."""
        got = srv.node_bundle(node)
        assert got is not None
        docs = k8s_manifests.load_text(got[0], "bundle").documents
        ds = next(d.obj for d in docs if isinstance(d.obj, model.DaemonSet))
        now = time.time()
        doc = report(node, identity.spec_hash(ds.spec.template), now)
        with srv.fleet_lock:
            srv.fleet.report(fleet.parse_report(doc, node, now, srv.fleet.nodes.get(node)))

    for n in names:
        post(n)
    srv.sync_rollouts()
    (root / "m" / "web.yaml").write_text(daemonset("web:2"))
    srv.publisher.scan()
    srv.sync_rollouts()
    prof = cProfile.Profile()
    times: list[float] = []
    for k in range(40):
        for n in names[k * 20 : k * 20 + 20]:
            post(n)
        t = time.thread_time()
        if k >= 10 and "--profile" in sys.argv:
            prof.enable()
        srv.sync_rollouts()
        prof.disable()
        if k >= 10:
            times.append(time.thread_time() - t)
    times.sort()
    print(
        f"{nodes} nodes: a pass takes {times[len(times) // 2] * 1000:.1f} ms of CPU "
        f"(least {times[0] * 1000:.1f}, most {times[-1] * 1000:.1f}; {len(times)} passes)"
    )
    if "--profile" in sys.argv:
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
