"""The fleet pages of a real `nodeagent serve` (a process on loopback), rendered by headless Chromium.

Reports are posted through the real HTTP API, one of them hostile: a label value and an event message
hold `<script>`. Chromium (Debian's `chromium`, installed by `make chromium`) loads the fleet page and
the drill-downs; the DOM it builds must show the fleet, show the script as text, and hold no script
element. The screenshot is kept as a CI artifact (artifacts/fleet-page.png, artifacts/fleet-node.png).
Without chromium the test skips, and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeagent.fleet import view as fleet
from tests.support.agenthome import NODEAGENT
from tests.support.httpsource import start_serve
from tests.support.manifests import daemonset
from tests.support.net import free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
EVIL = "<script>alert(1)</script>"
# Would mark the page if it ever ran: the DOM must never carry the attribute.
PWN = "<script>document.body.setAttribute('data-pwned','yes')</script>"


def _chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    msg = "chromium is not installed (make chromium, or apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def _pod(ns: str, name: str, state: str = "running", reason: str = "", restarts: int = 0) -> dict[str, Any]:
    ok = state == "running"
    return {
        "namespace": ns,
        "name": name,
        "ready": ok,
        "available": ok,
        "revision": "5d8f9c7b6",
        "containers": [{"name": "main", "restartCount": restarts, "state": state, "reason": reason}],
    }


def _ds(ns: str, name: str, pod: dict[str, Any]) -> dict[str, Any]:
    ok = int(pod["ready"])
    counters = dict(zip(fleet.COUNTERS, (1, 1, ok, 1, ok, 0), strict=True))
    return {"namespace": ns, "name": name, **counters, "pods": [pod]}


def _event(node: str, kind: str, reason: str, pod: str, message: str, count: int = 1) -> dict[str, Any]:
    return {
        "type": kind,
        "reason": reason,
        "message": message,
        "involvedObject": {"kind": "Pod", "namespace": "logging", "name": pod},
        "count": count,
        "firstTimestamp": "2026-12-02T03:00:00Z",
        "lastTimestamp": f"2026-12-02T03:0{count}:00Z",
        "source": {"component": "nodeagent", "host": node},
    }


def reports() -> list[dict[str, Any]]:
    a_pod = _pod("logging", "log-shipper-node-a")
    b_pod = _pod("logging", "log-shipper-node-b", "waiting", "CrashLoopBackOff", restarts=7)
    return [
        {
            "name": "node-a",
            "labels": {"zone": "eu-1", "team": EVIL},
            "taints": [],
            "status": {
                "node": "node-a",
                "daemonSets": [_ds("logging", "log-shipper", a_pod)],
                "staticPods": [],
            },
            "events": [
                _event("node-a", "Normal", "Started", a_pod["name"], "Started container main"),
                _event("node-a", "Warning", "Unhealthy", a_pod["name"], EVIL, count=2),
                _event("node-a", "Warning", "Unhealthy", a_pod["name"], PWN, count=3),
            ],
            "agentVersion": "0.1.0",
        },
        {
            "name": "node-b",
            "labels": {"zone": "eu-2"},
            "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
            "status": {
                "node": "node-b",
                "daemonSets": [_ds("logging", "log-shipper", b_pod)],
                "staticPods": [_pod("kube-system", "etcd-node-b")],
            },
            "events": [
                _event(
                    "node-b", "Warning", "BackOff", b_pod["name"], "Back-off restarting failed container", 7
                )
            ],
            "agentVersion": "0.1.0",
            "mode": "sync",
        },
    ]


def post(url: str, doc: dict[str, Any]) -> int:
    req = urllib.request.Request(
        f"{url}/nodes/{doc['name']}/status",
        data=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture
def serve_url(tmp_path: Path) -> Iterator[str]:
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    (mdir / "log-shipper.yaml").write_text(yaml.safe_dump(daemonset("log-shipper", namespace="logging")))
    port = free_port()
    args = ["serve", "--dir", str(mdir), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [NODEAGENT, *args, "--state-dir", str(tmp_path / "serve-state")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, what="serve to answer /healthz")
        assert proc.poll() is None, "serve exited"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chromium(browser: str, profile: Path, *args: str) -> str:
    """One headless Chromium run (its own profile directory); its stdout."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def test_fleet_page_and_drill_downs_in_headless_chromium(serve_url: str, tmp_path: Path) -> None:
    browser = _chromium()
    for doc in reports():
        assert post(serve_url, doc) == 204
    profile = tmp_path / "chromium-profile"

    def dom(path: str) -> str:
        return chromium(browser, profile, "--dump-dom", serve_url + path)

    main = dom("/")
    assert "node-a" in main and "node-b" in main and "log-shipper" in main
    assert 'href="/nodes/node-a"' in main and 'href="/nodes/node-b"' in main
    assert 'href="/daemonsets/logging/log-shipper"' in main
    assert "last synced" in main  # node-b reports from `nodeagent sync`
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in main  # the label value, shown as text
    assert "<script" not in main  # no element was injected (the page itself has none)

    node = dom("/nodes/node-a")
    assert "node node-a" in node and "Conditions" in node and "Recent events" in node
    assert "Unhealthy" in node and "log-shipper-node-a" in node
    assert node.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2  # the label and the event message
    assert "<script" not in node and "data-pwned=" not in node  # shown as text, never run

    ds = dom("/daemonsets/logging/log-shipper")
    assert "daemonset logging/log-shipper" in ds
    assert 'href="/nodes/node-a"' in ds and 'href="/nodes/node-b"' in ds
    assert "CrashLoopBackOff" in ds and "log-shipper-node-b" in ds
    assert "etcd-node-b" not in ds  # a static pod is not the DaemonSet's

    assert "etcd-node-b" in dom("/nodes/node-b")
    assert "not found" in dom("/nodes/node-z")

    ARTIFACTS.mkdir(exist_ok=True)
    for path, name in (("/", "fleet-page.png"), ("/nodes/node-a", "fleet-node.png")):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        chromium(browser, profile, f"--screenshot={shot}", "--window-size=1280,900", serve_url + path)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_drill_downs_need_the_same_credential_as_the_other_pages(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    mdir = tmp_path / "m"
    mdir.mkdir()
    s = start_serve(mdir, token_file=str(token), state_dir=str(tmp_path / "state"))
    try:
        for path in ("/", "/nodes/node-a", "/daemonsets/logging/log-shipper"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(s.url + path, timeout=10)
            assert err.value.code == 401
        req = urllib.request.Request(s.url + "/nodes/node-a", headers={"Authorization": "Bearer s3cret"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 404  # in, but no such node yet
    finally:
        s.stop()
