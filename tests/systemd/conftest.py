"""A Debian container that boots systemd as PID 1, for the service tests (tests/systemd/README.md).

Built without a registry: scripts/debian-base.sh debootstraps bookworm with systemd, python3-venv and
make, and `docker import`s it once (tag `BASE_IMAGE`, kept for later runs). The checkout and a wheelhouse
are copied in, so `make install` inside needs no network. The agent in the machine talks to the host's
engine through its bind-mounted socket, so its pods are host containers labelled with the machine's
hostname as `io.nodeagent.node`; they are removed at teardown, with the machine. The engine and the
pod image are tests/conftest.py's (`docker_runtime`, `test_image`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.runtime import docker as docker_rt
from tests.support.engine import TEST_LABEL
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "nodeagent-test/systemd-base:bookworm"
BASE_PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,make,procps,iproute2"
MACHINE_LABEL = "io.nodeagent.test"
SKIP_DIRS = {
    ".venv",
    ".git",
    "build",
    "dist",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".state",
    "demo",
}


def sh(*args: str, input: str | bytes | None = None, timeout: float = 600, check: bool = True) -> str:
    data = input.encode() if isinstance(input, str) else input
    p = subprocess.run(list(args), input=data, capture_output=True, timeout=timeout, check=False)
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} -> {p.returncode}\n{out}\n{p.stderr.decode(errors='replace')}"
        )
    return out


@dataclass
class Machine:
    name: str  # container name and hostname, so also the agent's node name

    def run(self, script: str, check: bool = True, timeout: float = 600) -> str:
        return sh("docker", "exec", self.name, "sh", "-c", script, check=check, timeout=timeout)

    def write(self, path: str, text: str) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:6]}"
        sh("docker", "exec", "-i", self.name, "sh", "-c", f"cat > {tmp} && mv -f {tmp} {path}", input=text)

    def show(self, prop: str) -> str:
        return self.run(f"systemctl show nodeagent.service -p {prop} --value").strip()

    def active(self) -> str:
        return self.run("systemctl is-active nodeagent.service", check=False).strip()

    def journal(self) -> str:
        return self.run("journalctl -u nodeagent.service --no-pager -o cat", check=False)

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.journal().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def http(self, path: str) -> tuple[int, str]:
        """GET on the agent's loopback health endpoint, from inside the machine."""
        code = (
            "import urllib.request, urllib.error, sys\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:10258{path}', timeout=5)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n"
        )
        out = sh("docker", "exec", self.name, "python3", "-c", code)
        status, _, body = out.partition("\n")
        return int(status), body

    def pods(self) -> list[tuple[str, str, str]]:
        """(id, name, state) of the host containers the machine's agent manages."""
        out = sh(
            "docker", "ps", "-a", "--no-trunc", "--filter", f"label=io.nodeagent.node={self.name}",
            "--format", "{{.ID}} {{.Names}} {{.State}}",
        )  # fmt: skip
        rows = [tuple(line.split(" ", 2)) for line in out.splitlines() if line.strip()]
        return sorted((r[0], r[1], r[2]) for r in rows if len(r) == 3)


def copy_tree(dst: Path) -> None:
    """The checkout as a fresh clone would have it (plus work not yet committed), without caches."""
    shutil.copytree(
        REPO, dst, ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")]
    )


def wheelhouse(dst: Path) -> None:
    """Wheels of nodeagent, its dependencies and its build backend, so the machine needs no index."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    src = dst.parent / "wheel-src"
    copy_tree(src)
    sh(*pip, "wheel", "--quiet", "-w", str(dst), str(src))
    sh(*pip, "download", "--quiet", "--only-binary=:all:", "-d", str(dst), "setuptools>=68", "wheel")
    shutil.rmtree(src)


@pytest.fixture(scope="module")
def machine(
    docker_runtime: docker_rt.DockerRuntime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Machine]:
    sh("bash", str(REPO / "scripts" / "debian-base.sh"), BASE_IMAGE, BASE_PACKAGES, timeout=1800)
    work = tmp_path_factory.mktemp("systemd-machine")
    wheelhouse(work / "wheels")
    copy_tree(work / "src")
    m = Machine(f"nodeagent-sd-{uuid.uuid4().hex[:8]}")
    sh(
        "docker", "run", "-d", "--name", m.name, "--hostname", m.name,
        "--label", f"{MACHINE_LABEL}=systemd", "--label", f"{TEST_LABEL}=true",
        # systemd as PID 1 in a container: every capability but the one this kernel withholds, no
        # seccomp/AppArmor filter (it sets up namespaces for the unit's hardening), its own /run, cgroups
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--stop-signal", "SIGRTMIN+3",
        # the agent inside drives the host's engine
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-v", f"{work / 'src'}:/src", "-v", f"{work / 'wheels'}:/wheels:ro",
        BASE_IMAGE, "/sbin/init",
    )  # fmt: skip
    try:
        wait_for(
            lambda: m.run("systemctl is-system-running", check=False).strip() in ("running", "degraded"),
            timeout=120,
            interval=0.5,
            what="systemd to finish booting",
        )
        yield m
    finally:
        sh("docker", "rm", "-f", "-v", m.name, check=False)
        for cid in sh("docker", "ps", "-aq", "--filter", f"label=io.nodeagent.node={m.name}").split():
            sh("docker", "rm", "-f", "-v", cid, check=False)
