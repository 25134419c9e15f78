"""`serve` as the fleet's DaemonSet controller, in process over real HTTP on loopback: per-node bundles,
a maxUnavailable=1 rollout going node by node, pause, undo, restart, auto-rollback, a restarted serve
resuming, and the CLI against it. The agents are simulated: each fetches its bundle and reports a pod
of the revision it got."""

from __future__ import annotations

import argparse
import io
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.agent import identity
from nodeagent.cli import rollout as rolloutcli
from nodeagent.fleet import annotations as ann
from nodeagent.fleet import publisher, serve
from nodeagent.k8s import manifests, model

NODES = ("n1", "n2", "n3")


def daemonset(image: str, annotations: dict[str, str] | None = None, min_ready: int = 0) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "web", "namespace": "default", "annotations": annotations or {}},
            "spec": {
                "minReadySeconds": min_ready,
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]},
                },
            },
        }
    )


class Fleet:
    def __init__(
        self, tmp: Path, grace: float = 40.0, clock: Callable[[], float] = time.time, min_ready: int = 0
    ) -> None:
        self.grace = grace
        self.clock = clock
        self.min_ready = min_ready
        self.dir = tmp / "manifests"
        self.dir.mkdir()
        self.state = tmp / "state"
        self.healthy: Callable[[str, str], bool] = lambda node, image: not image.endswith(":bad")
        self.reported: dict[str, str] = {}
        self.start()

    def start(self) -> None:
        cfg = serve.ServeConfig(
            directory=str(self.dir), listen="127.0.0.1:0", state_dir=str(self.state), grace=self.grace
        )
        self.server = serve.Server(cfg, clock=self.clock)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def write(self, image: str, ann: dict[str, str] | None = None) -> None:
        (self.dir / "web.yaml").write_text(daemonset(image, ann, self.min_ready))
        self.server.publisher.scan()

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        with urllib.request.urlopen(self.server.url + path, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)

    def api(self, path: str, method: str = "GET", body: object | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(
            self.server.url + path, data=data if method == "POST" else None, method=method
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def image_of(self, node: str) -> tuple[str, str]:
        _, body, _ = self.get(f"/manifests?node={node}")
        docs = manifests.load_text(body, "bundle").documents
        ds = next(d.obj for d in docs if isinstance(d.obj, model.DaemonSet))
        return ds.spec.template.spec.containers[0].image, identity.spec_hash(ds.spec.template)

    def step(self, node: str, available: bool | None = None, ready_since: float | None = None) -> str:
        """The node's agent: fetch, run what it got, report it (ready since `ready_since` by the node's
        clock, and available as the node judges it: as ready, unless `available` says otherwise)."""
        image, revision = self.image_of(node)
        ok = self.healthy(node, image)
        pod = {
            "namespace": "default",
            "name": "web",
            "revision": revision,
            "ready": ok,
            "available": ok if available is None else available,
            "readySince": ready_since,
            "containers": [
                {
                    "name": "c",
                    "restartCount": 0 if ok else 3,
                    "state": "waiting" if not ok else "running",
                    "reason": "" if ok else "CrashLoopBackOff",
                }
            ],
        }
        doc = {
            "name": node,
            "labels": {"role": "canary"} if node == "n3" else {},
            "taints": [],
            "status": {"node": node, "daemonSets": [{"namespace": "default", "name": "web", "pods": [pod]}]},
        }
        req = urllib.request.Request(
            f"{self.server.url}/nodes/{node}/status",
            data=json.dumps(doc).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10).close()
        self.server.sync_rollouts()  # what the server does within SYNC_GAP of a changed report
        self.reported[node] = image
        return image

    def served(self) -> dict[str, str]:
        return {n: self.image_of(n)[0] for n in NODES}

    def round(self) -> dict[str, str]:
        return {n: self.step(n) for n in NODES}

    def rollout(self) -> Any:
        return self.api("/api/rollouts/default/web")


@pytest.fixture
def f(tmp_path: Path) -> Iterator[Fleet]:
    fl = Fleet(tmp_path)
    yield fl
    fl.stop()


def settle(f: Fleet, image: str) -> None:
    f.write(image)
    for _ in range(6):
        f.round()
    assert f.rollout()["phase"] == "Complete"


def test_rollout_goes_node_by_node_with_per_node_bundles(f: Fleet) -> None:
    settle(f, "web:1")
    f.write("web:2")
    assert f.served() == {"n1": "web:2", "n2": "web:1", "n3": "web:1"}  # one node at a time
    order: list[str] = []
    for _ in range(3):
        for n in NODES:
            served = f.served()
            for m, image in served.items():
                if image == "web:2" and m not in order:
                    order.append(m)
            in_flight = [m for m in NODES if served[m] == "web:2" and f.reported.get(m) != "web:2"]
            assert len(in_flight) <= 1  # maxUnavailable 1: never two nodes between revisions
            f.step(n)
    assert order == ["n1", "n2", "n3"]
    doc = f.rollout()
    assert doc["phase"] == "Complete" and doc["updateRevision"] == doc["currentRevision"] == 2
    assert [n["name"] for n in doc["nodes"]] == list(NODES)
    # ?nodes=false: the same document without its per-node list (a poller's counters)
    brief = f.api("/api/rollouts/default/web?nodes=false")
    assert "nodes" not in brief and brief == {k: v for k, v in doc.items() if k != "nodes"}
    assert brief["updatedNumberScheduled"] == brief["numberAvailable"] == 3
    ds = f.api("/api/daemonsets")["daemonSets"][0]
    assert ds["updateRevision"] == 2 and ds["phase"] == "Complete" and ds["servedDiffersFromFile"] is False
    # without ?node= the file as is
    _, whole, _ = f.get("/manifests")
    assert b"web:2" in whole


def test_per_node_etag_and_watch(f: Fleet) -> None:
    settle(f, "web:1")
    f.write("web:2")
    _, _, h1 = f.get("/manifests?node=n1")
    _, _, h2 = f.get("/manifests?node=n2")
    assert h1["ETag"] != h2["ETag"]  # n1 has revision 2, n2 still 1
    with pytest.raises(urllib.error.HTTPError) as e:
        f.get(f"/manifests?node=n2&watch=1&timeout=0.2&etag={h2['ETag']}")
    assert e.value.code == 304  # nothing changed for n2
    got: list[bytes] = []
    watcher = threading.Thread(
        target=lambda: got.append(f.get(f"/manifests?node=n2&watch=1&timeout=20&etag={h2['ETag']}")[1])
    )
    watcher.start()
    f.step("n1")  # n1 reports revision 2 available: n2's turn, and its held watch answers
    watcher.join(20)
    assert got and b"web:2" in got[0]


def test_nodes_with_the_same_revisions_share_one_rendered_bundle(
    f: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every held watch wakes on a controller change; rendering one bundle per node and wake-up is what
    cost serve most of a core at 1000 nodes. Nodes on the same revisions share one render."""
    settle(f, "web:1")
    f.write("web:2")
    renders: list[str] = []
    real = f.server._render_node_bundle

    def counted(b: publisher.Bundle, node: str) -> tuple[bytes, str, bytes]:
        renders.append(node)
        return real(b, node)

    monkeypatch.setattr(f.server, "_render_node_bundle", counted)
    for _ in range(3):
        for n in NODES:
            f.server.node_bundle(n)
    assert len(renders) == 2  # n1 on revision 2; n2 and n3 share revision 1's bundle
    assert f.server.node_bundle("n2") == f.server.node_bundle("n3") != f.server.node_bundle("n1")
    f.step("n1")  # n1 available: n2's turn (a new controller generation)
    assert f.served() == {"n1": "web:2", "n2": "web:2", "n3": "web:1"}


def test_crashing_revision_stops_after_first_node_then_undo(f: Fleet) -> None:
    settle(f, "web:1")
    f.write("web:bad")
    for _ in range(4):
        images = f.round()
    assert sorted(n for n, i in images.items() if i == "web:bad") == ["n1"]
    doc = f.rollout()
    assert doc["phase"] == "Failed" and "n1" in doc["message"]
    assert doc["blastRadius"]["exposedNodes"] == 1 and doc["blastRadius"]["timeToDetectSeconds"] is not None
    f.api("/api/rollouts/default/web/undo", "POST", {})
    for _ in range(4):
        images = f.round()
    assert set(images.values()) == {"web:1"}
    doc = f.rollout()
    assert doc["phase"] == "Complete" and doc["servedDiffersFromFile"] is True
    history = f.api("/api/rollouts/default/web/history")["revisions"]
    assert [r["revision"] for r in history] == [2, 3] and history[-1]["changeCause"] == "undo to revision 1"


def test_auto_rollback_sends_every_node_back(f: Fleet) -> None:
    settle(f, "web:1")
    f.write("web:bad", {ann.AUTO_ROLLBACK: "true"})
    for _ in range(4):
        images = f.round()
    assert set(images.values()) == {"web:1"}
    doc = f.rollout()
    assert doc["phase"] == "RolledBack" and doc["blastRadius"]["timeToRevertSeconds"] is not None


def test_pause_holds_and_resume_continues(f: Fleet) -> None:
    settle(f, "web:1")
    f.api("/api/rollouts/default/web/pause", "POST", {})
    f.write("web:2")
    for _ in range(3):
        images = f.round()
    assert set(images.values()) == {"web:1"} and f.rollout()["phase"] == "Paused"
    f.api("/api/rollouts/default/web/resume", "POST", {})
    for _ in range(5):
        images = f.round()
    assert set(images.values()) == {"web:2"} and f.rollout()["phase"] == "Complete"


def test_canary_goes_first(f: Fleet) -> None:
    f.write("web:1", {ann.CANARY: "role=canary"})
    for _ in range(5):
        f.round()
    f.write("web:2", {ann.CANARY: "role=canary"})
    assert f.served() == {"n1": "web:1", "n2": "web:1", "n3": "web:2"}


def test_restarted_serve_resumes_mid_rollout(f: Fleet) -> None:
    settle(f, "web:1")
    f.write("web:2")
    f.step("n2")  # n1 has the new revision and has not reported it yet
    f.stop()
    f.start()
    f.server.publisher.scan()
    assert f.image_of("n1")[0] == "web:2" and f.image_of("n2")[0] == "web:1"  # before any report
    for _ in range(5):
        images = f.round()
    assert set(images.values()) == {"web:2"}
    assert f.rollout()["updateRevision"] == 2


def test_restart_and_cli(f: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    settle(f, "web:1")

    def cli(action: str, **kw: Any) -> tuple[int, str]:
        ns = argparse.Namespace(
            action=action,
            daemonset="default/web",
            server=f.server.url,
            token_file=None,
            ca_file=None,
            timeout=kw.get("timeout", 5.0),
            to_revision=kw.get("to_revision", 0),
        )
        out = io.StringIO()
        return rolloutcli.main(ns, out), out.getvalue()

    assert cli("restart") == (0, "daemonset.apps/web restarted\n")
    code, out = cli("status", timeout=0.1)
    assert code == 1 and "1 out of 3 new pods have been updated" in out
    for _ in range(5):
        f.round()
    code, out = cli("status")
    assert code == 0 and 'daemon set "default/web" successfully rolled out' in out and "blast radius" in out
    code, out = cli("history")
    assert code == 0 and "REVISION" in out and "rollout restart" in out
    code, out = cli("plan")
    assert code == 0 and out.splitlines() == ["wave 1: n1", "wave 2: n2", "wave 3: n3"]
    assert cli("pause")[1] == "daemonset.apps/web paused\n"
    assert cli("resume")[1] == "daemonset.apps/web resumed\n"
    assert cli("undo", to_revision=99)[0] == 1
    assert "not found" in capsys.readouterr().err


def test_metrics_carry_rollout_gauges(f: Fleet) -> None:
    settle(f, "web:1")
    _, body, _ = f.get("/metrics")
    assert b'nodeagent_rollout_phase{namespace="default",daemonset="web",phase="Complete"} 1' in body
    assert b'nodeagent_rollout_desired_nodes{namespace="default",daemonset="web"} 3' in body


def _pass_count(body: bytes) -> float:
    line = next(
        x for x in body.splitlines() if x.startswith(b"nodeagent_serve_rollout_pass_cpu_seconds_count ")
    )
    return float(line.split()[1])


def test_metrics_count_the_controllers_passes_and_their_cpu(f: Fleet) -> None:
    """An operator (and `make bench`'s rollout row) reads the controller's share of serve's CPU from the
    pass histogram: every pass is counted, with its thread's CPU time."""
    before = _pass_count(f.get("/metrics")[1])
    settle(f, "web:1")
    _, body, _ = f.get("/metrics")
    assert _pass_count(body) >= before + len(NODES)  # settle: a pass after each node's report
    total = next(
        x for x in body.splitlines() if x.startswith(b"nodeagent_serve_rollout_pass_cpu_seconds_sum ")
    )
    assert float(total.split()[1]) > 0


def test_annotations_are_validated_at_their_path() -> None:
    _, problems = ann.policy(
        {
            ann.CANARY: "a in ()",
            ann.PROGRESS_DEADLINE: "-1",
            ann.AUTO_ROLLBACK: "yes",
            ann.MAX_FAILURE_RATIO: "2",
        }
    )
    paths = [p for p, _ in problems]
    assert paths == [
        f"metadata.annotations[{k}]"
        for k in (
            ann.CANARY,
            ann.PROGRESS_DEADLINE,
            ann.AUTO_ROLLBACK,
            ann.MAX_FAILURE_RATIO,
        )
    ]
    sel = ann.parse_selector("role=canary, zone in (a, b), !gpu, tier!=db")
    assert sel.match_labels == {"role": "canary"} and len(sel.match_expressions) == 3


def test_fleet_page_and_status_show_rollout_columns(f: Fleet) -> None:
    from nodeagent import cli

    settle(f, "web:1")
    f.write("web:2")
    _, page, _ = f.get("/")
    assert b"<th>PHASE</th>" in page and b"<td>1-&gt;2</td>" in page and b"<td>Progressing</td>" in page
    out = io.StringIO()
    cli.print_fleet(f.api("/api/fleet"), out)
    header, row = out.getvalue().splitlines()[:2]
    assert header.split()[-4:] == ["REVISION", "PHASE", "WAVE", "PENDING"]
    assert row.split()[-4:] == ["1->2", "Progressing", "n1", "-"]
    f.api("/api/rollouts/default/web/pause", "POST", {})
    d = f.api("/api/daemonsets")["daemonSets"][0]
    assert d["phase"] == "Paused" and d["wave"] == ["n1"] and d["pendingNodes"] == []


def test_validate_and_serve_refuse_bad_rollout_annotations(f: Fleet, tmp_path: Path) -> None:
    from nodeagent import cli

    bad = tmp_path / "bad.yaml"
    bad.write_text(daemonset("web:1", {ann.PROGRESS_DEADLINE: "soon"}))
    out = io.StringIO()
    assert cli.cmd_validate([str(bad)], "text", out) == 1
    assert f"metadata.annotations[{ann.PROGRESS_DEADLINE}]" in out.getvalue()
    settle(f, "web:1")
    f.write("web:2", {ann.PROGRESS_DEADLINE: "soon"})  # refused: the previous version stays in force
    assert f.rollout()["updateRevision"] == 1
    errors = f.api("/api/fleet")["errors"]
    assert any(e["path"] == f"metadata.annotations[{ann.PROGRESS_DEADLINE}]" for e in errors)


def test_silence_is_judged_by_when_it_began(tmp_path: Path) -> None:
    """NotReady before its turn: pending, out of the budget, caught up on return. Dark after receiving
    the new revision: a failure of that revision."""
    f = Fleet(tmp_path, grace=1.0)
    try:
        settle(f, "web:1")
        f.write("web:2")  # n1 is handed revision 2
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # n1 falls silent after receiving it; n2 and n3 report
            f.step("n2")
            f.step("n3")
            time.sleep(0.2)
        f.server.sync_rollouts()
        doc = f.rollout()
        assert doc["phase"] == "Failed" and "n1" in doc["message"] and doc["failedNodes"] == ["n1"]
        assert f.served() == {"n1": "web:2", "n2": "web:1", "n3": "web:1"}
    finally:
        f.stop()


def test_a_node_silent_before_its_turn_is_pending_and_catches_up(tmp_path: Path) -> None:
    f = Fleet(tmp_path, grace=1.0)
    try:
        settle(f, "web:1")
        time.sleep(1.2)  # every node silent past the grace period ...
        f.step("n1")
        f.step("n2")  # ... and n1, n2 back: n3 stays NotReady
        f.write("web:2")
        for _ in range(4):
            f.step("n1")
            f.step("n2")
        f.server.sync_rollouts()
        doc = f.rollout()
        assert doc["phase"] == "Complete" and doc["pendingNodes"] == ["n3"]
        assert f.served()["n3"] == "web:1"
        f.step("n3")  # back: it catches up
        assert f.image_of("n3")[0] == "web:2"
    finally:
        f.stop()


def test_roll_config_paces_a_configmap_change(f: Fleet) -> None:
    def write(value: str) -> None:
        ds = json.loads(daemonset("web:1", {ann.ROLL_CONFIG: "true"}))
        ds["spec"]["template"]["spec"]["volumes"] = [{"name": "conf", "configMap": {"name": "conf"}}]
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, "data": {"k": value}}
        (f.dir / "web.yaml").write_text(json.dumps(ds) + "\n---\n" + json.dumps(cm))
        f.server.publisher.scan()

    def values() -> dict[str, str]:
        out = {}
        for n in NODES:
            docs = manifests.load_text(f.get(f"/manifests?node={n}")[1], "bundle").documents
            out[n] = next(d.obj.data["k"] for d in docs if isinstance(d.obj, model.ConfigMap))
        return out

    write("one")
    for _ in range(6):
        f.round()
    assert f.rollout()["phase"] == "Complete" and values() == dict.fromkeys(NODES, "one")
    write("two")  # a new revision, handed out under the budget: one node at a time
    assert f.rollout()["updateRevision"] == 2
    assert values() == {"n1": "two", "n2": "one", "n3": "one"}
    for _ in range(6):
        f.round()
    assert f.rollout()["phase"] == "Complete" and values() == dict.fromkeys(NODES, "two")


def test_http_source_sends_its_node_name_keeping_the_urls_own_query(tmp_path: Path) -> None:
    from nodeagent import settings
    from nodeagent.sources import http as http_source

    def src(url: str, node: str) -> http_source.HttpSource:
        cfg = settings.HttpSource(url=url)
        return http_source.HttpSource("s", cfg, lambda: None, state_dir=str(tmp_path), node=node)

    assert src("https://h/manifests", "n1")._request_url() == "https://h/manifests?node=n1"
    assert src("https://h/manifests?a=1", "n1")._request_url() == "https://h/manifests?a=1&node=n1"
    assert (
        src("https://h/manifests", "n1")._watch_url('"e"').startswith("https://h/manifests?node=n1&watch=1&")
    )
    assert (
        src("https://h/b.yaml?X-Amz-Signature=x", "n1")._request_url() == "https://h/b.yaml?X-Amz-Signature=x"
    )
    assert src("https://h/manifests?a=1", "")._request_url() == "https://h/manifests?a=1"


def test_rollout_actions_need_an_operator_credential(tmp_path: Path) -> None:
    mdir = tmp_path / "m"
    mdir.mkdir()
    (mdir / "web.yaml").write_text(daemonset("web:1"))
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "n1").write_text("node-secret")
    shared = tmp_path / "token"
    shared.write_text("fleet-secret")
    cfg = serve.ServeConfig(str(mdir), listen="127.0.0.1:0", token_file=str(shared), node_tokens=str(tokens))
    s = serve.Server(cfg)
    s.start()
    try:

        def post(token: str) -> int:
            req = urllib.request.Request(
                s.url + "/api/rollouts/default/web/pause",
                data=b"{}",
                method="POST",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return int(r.status)
            except urllib.error.HTTPError as e:
                return int(e.code)

        assert post("wrong") == 401
        assert post("node-secret") == 403
        assert post("fleet-secret") == 200
    finally:
        s.stop()


def test_a_pass_over_a_stale_bundle_starts_no_rollout(f: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticker read the bundle just before a file change and its pass ran after the publisher's: the
    old template came back as a "new" revision (kubectl's renumbering), then the new one again, each a
    rollout: updateRevision climbed to 8 after one file change and nodes were sent back and forth."""
    settle(f, "web:1")
    real = f.server.controller.sync
    entered, go = threading.Event(), threading.Event()

    def held(objects: Any, nodes: Any, ready: Any) -> None:
        if threading.current_thread().name == "stale-pass":
            entered.set()
            go.wait(10)  # the bundle it read is stale by now
        real(objects, nodes, ready)

    monkeypatch.setattr(f.server.controller, "sync", held)
    stale = threading.Thread(target=f.server.sync_rollouts, name="stale-pass")
    stale.start()
    assert entered.wait(10)
    change = threading.Thread(target=lambda: f.write("web:2"))  # publishes, then passes over the new bundle
    change.start()
    change.join(3)  # returns at once without the fix; with it, waits for the stale pass
    go.set()
    stale.join(10)
    change.join(10)
    f.server.sync_rollouts()
    doc = f.rollout()
    assert (doc["currentRevision"], doc["updateRevision"]) == (1, 2)
    assert [r["revision"] for r in f.api("/api/rollouts/default/web/history")["revisions"]] == [1, 2]


def test_a_wave_wakes_only_its_own_nodes_watches(f: Fleet) -> None:
    """1000 held watches woken on every wave (and every counter change) cost serve most of a core: a
    pass wakes the watches of the nodes it handed something, and a pass that changes no assignment none."""
    settle(f, "web:1")
    ctl = f.server.controller
    before = {n: ctl.node_version(n) for n in NODES}
    f.server.sync_rollouts()  # nothing changed
    assert {n: ctl.node_version(n) for n in NODES} == before
    f.write("web:2")  # a new bundle: every node's bundle may differ
    after_write = {n: ctl.node_version(n) for n in NODES}
    assert all(after_write[n] != before[n] for n in NODES)
    f.step("n1")  # n1 available on revision 2: n2's turn, n3 still waits
    now = {n: ctl.node_version(n) for n in NODES}
    assert now["n2"] != after_write["n2"] and now["n3"] == after_write["n3"]


def test_a_woken_watch_finds_its_new_bundle_rendered(f: Fleet) -> None:
    """The controller's wake renders the woken nodes' bundles before the watches look (Server._woken),
    so serve's event loop answers each from the cache instead of handing a render to a worker thread
    per watch (2900 hand-offs in a 1000-node rollout)."""
    settle(f, "web:1")
    f.write("web:2")
    assert f.served()["n1"] == "web:2"
    f.step("n1")  # n1 available on revision 2: n2's turn, and its watch is woken
    got = f.server.cached_node_bundle("n2")
    assert got, "n2's bundle must be at hand when its watch wakes"
    assert got == f.server.node_bundle("n2") and b"web:2" in got[0]


def test_heartbeats_reach_the_controller_as_the_report_it_already_read(f: Fleet) -> None:
    """A heartbeat (a report whose rollout view is unchanged) is a new object after parsing; the
    controller must be handed the report it already read, or every pass compares each node's DaemonSet
    reports anew (a fifth of an idle 1000-node serve's CPU), while readiness follows the newest one."""
    settle(f, "img:1")
    seen = f.server.controller._seen[next(iter(f.server.controller._seen))]
    first = {n: seen[n].report for n in NODES}
    f.round()  # the same reports again: new bodies parsed into new objects
    assert all(
        f.server.controller._seen[next(iter(f.server.controller._seen))][n].report is first[n] for n in NODES
    )
    assert f.server.fleet.nodes["n1"] is not first["n1"]  # the fleet view keeps the newest
    f.write("img:2")  # a changed report is handed over as itself
    f.round()
    assert f.server.controller._seen[next(iter(f.server.controller._seen))]["n1"].report is not first["n1"]


def test_a_settled_fleet_costs_no_pass_until_something_could_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ticker plans only when a pass could decide something: a rollout under way, the fleet changed
    (a new or changed report, a node deleted) or a node silent long enough to turn NotReady. Heartbeats
    of a settled fleet cost none (a pass every second was about a tenth of an idle 1000-node serve's CPU)."""
    monkeypatch.setattr(serve.Server, "_tick", lambda self: None)  # the test is the ticker
    f = Fleet(tmp_path)
    try:
        skew = [0.0]
        f.server.clock = lambda: time.time() + skew[0]
        f.write("img:1")
        assert f.server._pass_due()  # nothing planned yet
        settle(f, "img:1")
        assert f.server.controller.settled() and not f.server._pass_due()
        f.round()  # heartbeats: the same reports again
        assert not f.server._pass_due()

        skew[0] = f.grace + 1  # every node silent past the grace period: a pass judges them NotReady
        assert f.server._pass_due()
        f.server.sync_rollouts()
        assert not f.server._pass_due()  # a NotReady node does not turn NotReady again

        f.server._wake.clear()
        f.step("n1")  # back from NotReady: the report asks for a pass (step runs it at once)
        assert f.server._wake.is_set() and not f.server._pass_due()
        f.server._wake.clear()
        f.step("n1")  # a heartbeat asks for none
        assert not f.server._wake.is_set() and not f.server._pass_due()
        f.server.delete_node("n2")
        assert f.server._pass_due()
        f.server.sync_rollouts()

        f.write("img:2")  # a rollout under way: its deadlines run, it is planned every tick
        assert not f.server.controller.settled() and f.server._pass_due()
    finally:
        f.stop()


def test_the_ticker_plans_when_asked_and_when_due_only(f: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    settle(f, "img:1")
    passes: list[float] = []
    monkeypatch.setattr(f.server, "sync_rollouts", lambda: passes.append(time.monotonic()))
    due = [False]
    monkeypatch.setattr(f.server, "_pass_due", lambda: due[0])
    time.sleep(1.5)  # a pass the settling reports asked for
    passes.clear()
    time.sleep(2.5)  # the ticker looks every second: nothing due
    assert passes == []
    f.server.request_sync()
    deadline = time.monotonic() + 5
    while not passes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(passes) == 1
    due[0] = True
    deadline = time.monotonic() + 10  # a look every second or so: two more, however loaded the machine
    while len(passes) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(passes) >= 3


def test_a_pod_ready_for_min_ready_seconds_frees_its_slot_by_serves_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the DaemonSet controller judges availability (ready for minReadySeconds by its own clock,
    then a resync), `serve` hands the next node its turn once the pod has been ready long enough, with
    no further report from the node. A node clock running ahead cannot hold the wave back."""
    monkeypatch.setattr(serve.Server, "_tick", lambda self: None)  # the test is the ticker
    now = [1_800_000_000.0]
    f = Fleet(tmp_path, clock=lambda: now[0], min_ready=5)
    try:
        settle(f, "web:1")
        f.write("web:2")
        assert f.served() == {"n1": "web:2", "n2": "web:1", "n3": "web:1"}
        f.step("n1", available=False, ready_since=now[0])  # ready; minReadySeconds not over yet
        assert f.served()["n2"] == "web:1"
        assert f.server.controller.next_flip() == now[0] + 5
        now[0] += 4.9
        f.server.sync_rollouts()
        assert f.served()["n2"] == "web:1" and not f.rollout()["nodes"][0]["available"]
        now[0] += 0.2
        assert f.server._pass_due()  # the pod's minReadySeconds are over: a pass is due
        f.server.sync_rollouts()  # no new report
        assert f.served() == {"n1": "web:2", "n2": "web:2", "n3": "web:1"}
        assert f.rollout()["nodes"][0]["available"]

        f.step("n2", available=False, ready_since=now[0] + 3600)  # its clock an hour ahead
        t_seen = now[0]
        now[0] += 3
        f.step("n2", available=False, ready_since=t_seen + 3600)  # the same again, later
        assert f.served()["n3"] == "web:1"
        now[0] = t_seen + 5.01
        f.server.sync_rollouts()
        assert f.served()["n3"] == "web:2"  # five seconds after serve first saw it ready
    finally:
        f.stop()


def test_the_ticker_plans_when_a_pod_becomes_available(f: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticker's wait ends when the next pod becomes available (Controller.next_flip), not at its
    next once-a-second look."""
    settle(f, "img:1")
    waits: list[float] = []
    wait = f.server._wake.wait

    def recorded(timeout: float | None = None) -> bool:
        waits.append(-1.0 if timeout is None else timeout)
        return wait(timeout)

    monkeypatch.setattr(f.server._wake, "wait", recorded)
    flip = time.time() + 0.6
    monkeypatch.setattr(f.server.controller, "next_flip", lambda: flip)
    deadline = time.monotonic() + 10
    while not any(0 < w < 0.7 for w in waits) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(0 < w < 0.7 for w in waits), waits  # it waits for the flip, not a whole second
    monkeypatch.setattr(f.server.controller, "next_flip", lambda: math.inf)
    waits.clear()
    deadline = time.monotonic() + 10
    while not waits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waits and waits[-1] == 1.0  # nothing to become available: the once-a-second look


def test_a_new_pod_that_crashes_at_once_never_frees_its_slot_by_serves_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's bad revision: the old pod (ready for long) terminates, the new one is created and
    exits at once. However long serve then waits, no report showed the new pod ready: the next node
    must not get its turn."""
    monkeypatch.setattr(serve.Server, "_tick", lambda self: None)  # the test is the ticker
    now = [1_800_000_000.0]
    f = Fleet(tmp_path, clock=lambda: now[0], min_ready=3)

    def post(node: str, pods: list[dict[str, Any]]) -> None:
        doc = {
            "name": node,
            "labels": {},
            "taints": [],
            "status": {"node": node, "daemonSets": [{"namespace": "default", "name": "web", "pods": pods}]},
        }
        req = urllib.request.Request(
            f"{f.server.url}/nodes/{node}/status", data=json.dumps(doc).encode(), method="POST"
        )
        urllib.request.urlopen(req, timeout=10).close()
        f.server.sync_rollouts()

    def pod(revision: str, ready: bool, state: str, reason: str = "", **extra: Any) -> dict[str, Any]:
        c = {"name": "c", "restartCount": 0, "state": state, "reason": reason}
        return {
            "namespace": "default",
            "name": "web",
            "revision": revision,
            "ready": ready,
            "containers": [c],
        } | extra

    try:
        settle(f, "web:1")
        old = f.image_of("n1")[1]
        f.write("web:2")
        assert f.served() == {"n1": "web:2", "n2": "web:1", "n3": "web:1"}
        new = f.image_of("n1")[1]
        since = now[0] - 100
        post(
            "n1",
            [
                pod(old, True, "running", readySince=since, terminating=True),
                pod(new, False, "waiting", "ContainerCreating"),
            ],
        )
        now[0] += 2
        post("n1", [pod(new, False, "terminated", "Error")])
        for _ in range(10):
            now[0] += 1
            f.server.sync_rollouts()
            assert f.served()["n2"] == "web:1", now[0]
            assert not f.rollout()["nodes"][0]["available"]
    finally:
        f.stop()
