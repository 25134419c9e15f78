"""`nodeagent serve` on loopback: what it publishes, the fleet view, status reports, the CLI.

Agents here are real (`Agent` on the real engine, and `nodeagent run` as a process), each with a node
name and namespace of its own, their containers removed at teardown. Every wait is a bounded poll.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvloop
import yaml

from nodeagent import cli, settings
from nodeagent.agent import agent as agent_mod
from nodeagent.agent import identity
from nodeagent.fleet import report, serve
from nodeagent.runtime import docker as docker_rt
from nodeagent.sources import http
from tests.support.agenthome import NODEAGENT
from tests.support.httpsource import answers, start_serve
from tests.support.manifests import daemonset, put
from tests.support.net import free_port
from tests.support.waiting import wait_for


def fleet(s: serve.Server) -> dict[str, Any]:
    doc = http.get_json(s.url + "/api/fleet")
    assert isinstance(doc, dict)
    return doc


def published(s: serve.Server) -> dict[str, str]:
    """name -> image of what /manifests serves, read the way an agent reads it."""
    from nodeagent.k8s import manifests

    body = http.request("GET", s.url + "/manifests").body
    loaded = manifests.load_text(body, "bundle")
    assert not loaded.errors
    return {d.obj.metadata.name: d.obj.spec.template.spec.containers[0].image for d in loaded.documents}  # type: ignore[union-attr]


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    return d


@pytest.fixture
def server(mdir: Path) -> Iterator[serve.Server]:
    put(mdir, "a", daemonset("a"))
    s = start_serve(mdir)
    yield s
    s.stop()


# --- publishing ---------------------------------------------------------------------------------------


def test_serve_runs_on_uvloops_event_loop(server: serve.Server) -> None:
    """uvloop is a dependency: serve's HTTP loop is libuv's (aioserver._new_loop), not asyncio's."""
    assert isinstance(server.httpd._loop, uvloop.Loop)
    assert "nodes" in fleet(server)  # and it answers


def test_invalid_file_is_not_published_its_previous_version_stays_and_the_fleet_view_shows_it(
    server: serve.Server, mdir: Path
) -> None:
    assert published(server) == {"a": "busybox:1.36"}
    broken = daemonset("b")
    del broken["spec"]["selector"]
    put(mdir, "b", broken)  # never valid: not published
    wait_for(lambda: any(e["file"].endswith("b.yaml") for e in fleet(server)["errors"]))
    assert published(server) == {"a": "busybox:1.36"}

    put(mdir, "a", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a\n")  # syntax error
    wait_for(lambda: any(e["file"].endswith("a.yaml") for e in fleet(server)["errors"]))
    assert published(server) == {"a": "busybox:1.36"}  # the previous version stays

    put(mdir, "a", daemonset("a", image="busybox:1.37"))
    wait_for(lambda: published(server) == {"a": "busybox:1.37"})
    (mdir / "a.yaml").unlink()
    (mdir / "b.yaml").unlink()
    wait_for(lambda: published(server) == {} and fleet(server)["errors"] == [])
    assert b'"kind": "List"' in http.request("GET", server.url + "/manifests").body  # explicit: withdraw all


def test_unreadable_directory_before_the_first_listing_is_503(tmp_path: Path) -> None:
    s = start_serve(tmp_path / "missing")
    try:
        assert http.request("GET", s.url + "/manifests").status == 503
        assert http.request("GET", s.url + "/healthz").status == 503
        assert "cannot read" in fleet(s)["errors"][0]["message"]
    finally:
        s.stop()


# --- reports and the fleet view -----------------------------------------------------------------------


def node_doc(name: str, ready: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    ds = {
        "namespace": "default",
        "name": "a",
        "desiredNumberScheduled": 1,
        "currentNumberScheduled": 1,
        "numberReady": ready,
        "updatedNumberScheduled": 1,
        "numberAvailable": ready,
        "numberMisscheduled": 0,
        "pods": [],
    }
    return {"name": name, "labels": labels or {}, "taints": [], "status": {"node": name, "daemonSets": [ds]}}


def test_reporter_posts_on_change_and_periodically(server: serve.Server) -> None:
    r = report.Reporter(server.url, "node-r", interval=0.2, min_gap=0.01)
    r.start()
    try:
        r.update(node_doc("node-r", 0))
        wait_for(lambda: [d["numberReady"] for d in fleet(server)["daemonSets"]] == [0])
        sent = r.sent
        wait_for(lambda: r.sent >= sent + 2)  # heartbeats while nothing changes
        r.update(node_doc("node-r", 1))
        wait_for(lambda: [d["numberReady"] for d in fleet(server)["daemonSets"]] == [1])
    finally:
        r.stop()


def test_reporter_survives_a_dead_status_server_quietly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = report.Reporter(f"http://127.0.0.1:{port}", "n")
    assert not r.post(node_doc("n", 1))
    assert not r.post(node_doc("n", 1))


def test_bad_reports_are_refused(server: serve.Server) -> None:
    url = server.url + "/nodes/x/status"
    with pytest.raises(http.FetchError, match="400"):
        http.post_json(url, {"name": "y"})
    with pytest.raises(http.FetchError, match="404"):
        http.post_json(server.url + "/nodes/x", {"name": "x"})


def test_grace_period_makes_a_silent_node_not_ready(mdir: Path) -> None:
    put(mdir, "a", daemonset("a"))
    now = [1000.0]
    s = serve.Server(serve.ServeConfig(str(mdir), "127.0.0.1:0"), clock=lambda: now[0])
    s.start()
    try:
        http.post_json(s.url + "/nodes/n1/status", node_doc("n1", 1))
        http.post_json(s.url + "/nodes/n2/status", node_doc("n2", 1))
        now[0] += 30
        http.post_json(s.url + "/nodes/n2/status", node_doc("n2", 1))
        now[0] += 15  # n1 silent 45 s (> 40 s), n2 15 s
        doc = fleet(s)
        assert {n["name"]: n["ready"] for n in doc["nodes"]} == {"n1": False, "n2": True}
        a = doc["daemonSets"][0]
        assert (a["desiredNumberScheduled"], a["numberReady"], a["numberAvailable"]) == (2, 1, 1)
        text = http.request("GET", s.url + "/metrics").body.decode()
        assert 'nodeagent_fleet_nodes{ready="false"} 1.0' in text
        assert 'nodeagent_fleet_nodes{ready="true"} 1.0' in text
        # serve's own answer times (make bench's fleet row reads its p99 from them)
        assert 'nodeagent_serve_request_duration_seconds_bucket{endpoint="report",le="0.001"}' in text
        page = http.request("GET", s.url + "/").body.decode()
        assert "NotReady" in page and "http-equiv='refresh'" in page
    finally:
        s.stop()


@pytest.mark.docker
def test_fleet_counts_with_two_agents_of_different_labels(
    tmp_path: Path,
    mdir: Path,
    docker_runtime: docker_rt.DockerRuntime,
    test_image: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    put(mdir, "everywhere", daemonset("everywhere", image=test_image, namespace=ns))
    put(
        mdir,
        "ssd-only",
        daemonset("ssd-only", image=test_image, namespace=ns, pod={"nodeSelector": {"disktype": "ssd"}}),
    )
    s = start_serve(mdir)
    agents: list[tuple[agent_mod.Agent, report.Reporter]] = []
    try:
        # Node a runs on the real engine. Node b reports too but has no engine of its own: two nodes
        # sharing one engine would collide on Docker container names (k8s_<container>_<pod>_<ns>_<n>).
        for node, labels, engine in (
            (f"{ns}-a", {"disktype": "ssd"}, True),
            (f"{ns}-b", {"disktype": "hdd"}, False),
        ):
            raw = {
                "node": {"name": node, "labels": labels},
                "sources": [{"url": s.url + "/manifests"}],
                "stateDir": str(tmp_path / node),
                "statusServer": s.url,
                "healthz": {"enabled": False},
            }
            cfg = settings.from_dict(raw, str(tmp_path))
            a = agent_mod.Agent(cfg, docker_rt.DockerRuntime(node_name=node) if engine else None)
            a.relist()
            assert cfg.status_server is not None
            agents.append((a, report.Reporter(cfg.status_server, node, auth=report.credentials_for(cfg))))

        def counted() -> bool:
            for a, r in agents:
                result = a.reconcile()
                r.post(cli.node_report(a, result))
            want = {("everywhere", 2, 1, 1), ("ssd-only", 1, 1, 1)}
            got = {
                (d["name"], d["desiredNumberScheduled"], d["currentNumberScheduled"], d["numberReady"])
                for d in fleet(s)["daemonSets"]
            }
            return got == want

        wait_for(counted, timeout=60)
        doc = fleet(s)
        nodes = {n["name"]: n for n in doc["nodes"]}
        assert all(n["ready"] for n in nodes.values()) and len(nodes) == 2
        assert nodes[f"{ns}-a"]["labels"]["disktype"] == "ssd"
        ssd = next(d for d in doc["daemonSets"] if d["name"] == "ssd-only")
        assert (ssd["currentNumberScheduled"], ssd["updatedNumberScheduled"], ssd["numberMisscheduled"]) == (
            1,
            1,
            0,
        )

        capsys.readouterr()  # drop the log lines so far
        assert cli.main(["status", "--server", s.url, "-o", "json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert {"daemonSets", "nodes"} <= out.keys()
        assert {n["name"] for n in out["nodes"]} == set(nodes) and all("ready" in n for n in out["nodes"])
        assert cli.main(["status", "--server", s.url]) == 0
        table = capsys.readouterr().out
        assert "DESIRED" in table and "ssd-only" in table and f"{ns}-b" in table and "Ready" in table
    finally:
        structlog.reset_defaults()  # cli.main bound the logger to this test's captured stderr
        s.stop()
        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)


# --- the commands as processes ------------------------------------------------------------------------


@pytest.mark.docker
def test_serve_and_run_processes_a_change_reaches_the_node_and_the_node_reports(
    tmp_path: Path, mdir: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str
) -> None:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    node = f"node-{ns}"
    put(mdir, "web", daemonset("web", image=test_image, namespace=ns))
    token = tmp_path / "token"
    token.write_text("fleet-token")
    url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": {"name": node},
                "sources": [{"url": url + "/manifests", "pollInterval": "1h", "tokenFile": str(token)}],
                "stateDir": str(tmp_path / "state"),
                "statusServer": url,
                "resyncInterval": "2s",
                "healthz": {"enabled": False},
            }
        )
    )
    log = (tmp_path / "procs.log").open("ab")
    listen = url.removeprefix("http://")
    procs = [
        subprocess.Popen(
            [
                *(NODEAGENT, "serve", "--dir", str(mdir), "--listen", listen, "--token-file", str(token)),
                *("--state-dir", str(tmp_path / "serve-state")),
            ],
            stdout=log,
            stderr=log,
        )
    ]
    auth = {"Authorization": "Bearer fleet-token"}
    try:
        wait_for(lambda: answers(url + "/healthz"))
        procs.append(subprocess.Popen([NODEAGENT, "--config", str(config), "run"], stdout=log, stderr=log))

        def web_state() -> tuple[int, int] | None:
            doc = http.get_json(url + "/api/daemonsets", headers=auth)
            web = [d for d in doc["daemonSets"] if d["name"] == "web"]
            return (web[0]["numberReady"], web[0]["updatedNumberScheduled"]) if web else None

        wait_for(lambda: web_state() == (1, 1), timeout=60)
        before = {c.id for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}")}
        put(
            mdir, "web", daemonset("web", image=test_image, namespace=ns, pod={"hostname": "changed"})
        )  # a new revision
        wait_for(  # only the watch can bring it: pollInterval is an hour
            lambda: (
                {
                    c.id
                    for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}")
                    if c.running
                }
                - before
                != set()
            ),
            timeout=60,
        )
        nodes = http.get_json(url + "/api/nodes", headers=auth)["nodes"]
        assert [n["name"] for n in nodes] == [node] and nodes[0]["ready"]
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=30) == 0
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)


@pytest.mark.docker
def test_sync_reports_once_to_serve_and_an_undeliverable_report_is_only_a_warning(
    tmp_path: Path, mdir: Path, docker_runtime: docker_rt.DockerRuntime, test_image: str
) -> None:
    """`nodeagent sync` with statusServer: the synced node is in the fleet view with the pods the pass
    started and mode sync; a status server that refuses or never answers costs a warning, not exit 1."""
    ns = f"t-{uuid.uuid4().hex[:10]}"
    node = f"node-{ns}"
    put(mdir, "web", daemonset("web", image=test_image, namespace=ns))
    s = start_serve(mdir)
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    config = tmp_path / "config.yaml"

    def sync(status_server: str) -> subprocess.CompletedProcess[str]:
        raw = {
            "node": {"name": node},
            "sources": [{"url": s.url + "/manifests"}],
            "stateDir": str(tmp_path / "state"),
            "statusServer": status_server,
        }
        config.write_text(yaml.safe_dump(raw))
        return subprocess.run(
            [NODEAGENT, "--config", str(config), "--log-format", "json", "sync"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    try:
        r = sync(s.url)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "create" in r.stdout and "status_report_failed" not in r.stderr
        (n,) = http.get_json(s.url + "/api/nodes")["nodes"]
        # the report describes the node after the pass: the pod it just started is there
        assert (n["name"], n["mode"], n["ready"], n["pods"]) == (node, "sync", True, 1)
        (web,) = fleet(s)["daemonSets"]
        assert (web["currentNumberScheduled"], web["numberReady"]) == (1, 1)
        page = http.request("GET", s.url + "/").body.decode()
        assert "last synced" in page
        table = subprocess.run(
            [NODEAGENT, "status", "--server", s.url], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert "last synced" in table, table

        for dead in (f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{silent.getsockname()[1]}"):
            r = sync(dead)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "Nothing to do" in r.stdout
            warnings = [json.loads(line) for line in r.stderr.splitlines() if "status_report_failed" in line]
            assert [w["level"] for w in warnings] == ["warning"], r.stderr
    finally:
        silent.close()
        s.stop()
        for c in docker_runtime.list_labelled(f"{identity.LABEL_POD_NAMESPACE}={ns}"):
            docker_runtime.remove(c.id)
