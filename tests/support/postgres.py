"""A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, a loopback port, removed at the end.

Debian's server binaries are not on PATH (they live in /usr/lib/postgresql/VERSION/bin), so they are found
through `pg_config --bindir` first and that directory second. PostgreSQL refuses to run as root, so as root
the cluster is made and run by the `postgres` user (the Debian package creates it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

DATABASE = "nodeagent"


def find_bindir() -> str | None:
    """The directory holding initdb and pg_ctl, or None when no server is installed."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                candidates.append(out.stdout.strip())
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version(p.split("/")[-2]), reverse=True
    )
    candidates.extend(versions)
    for d in candidates:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """One running cluster; `url` names its database `nodeagent`."""

    bindir: str
    root: str  # the temp dir: data/, the socket dir and the log
    port: int
    user: str | None  # the OS user it runs as (None: ourselves)

    @property
    def datadir(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def logfile(self) -> str:
        return os.path.join(self.root, "postgres.log")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False, **kwargs
        )

    def _check(self, out: subprocess.CompletedProcess[str], what: str) -> None:
        if out.returncode != 0:
            log = ""
            with contextlib.suppress(OSError), open(self.logfile) as f:
                log = f.read()[-2000:]
            raise RuntimeError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-1000:]}\n{log}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        )
        out = self._run(
            os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-o", options, "-w",
            "-t", "60", "start",
        )  # fmt: skip
        self._check(out, "pg_ctl start")

    def stop(self, mode: str = "fast") -> None:
        out = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "stop")
        self._check(out, "pg_ctl stop")

    def restart(self) -> None:
        """Stop (fast: every session is cut) and start again on the same port."""
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = DATABASE) -> str:
        out = self._run(
            os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip
        self._check(out, "psql")
        return out.stdout


def create(bindir: str) -> Cluster:
    """initdb, start on a free loopback port, create the database; `destroy` undoes all of it."""
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise RuntimeError(
                "running as root needs the `postgres` user (Debian's postgresql package)"
            ) from exc
        user = "postgres"
    root = tempfile.mkdtemp(prefix="nodeagent-pg-")
    os.chmod(root, 0o700)
    if user:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    cluster = Cluster(bindir, root, _free_port(), user)
    try:
        out = cluster._run(
            os.path.join(bindir, "initdb"), "-D", cluster.datadir, "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        cluster._check(out, "initdb")
        cluster.start()
        cluster.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
    except BaseException:
        destroy(cluster)
        raise
    return cluster


def destroy(cluster: Cluster) -> None:
    """Stop the server (immediately) and remove its directory."""
    with contextlib.suppress(Exception):
        cluster.stop("immediate")
    shutil.rmtree(cluster.root, ignore_errors=True)


def reset(cluster: Cluster) -> None:
    """A fresh database for the next test (the cluster is shared by a session)."""
    cluster.psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", database="postgres")
    cluster.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
