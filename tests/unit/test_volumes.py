"""volumes: hostPath type checks as the kubelet does them, and per-pod directories, in tmp dirs."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent import model, volumes


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A directory, a regular file, a unix socket and a symlink to the directory."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "dir", tmp_path / "link-to-dir")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "sock"))
    try:
        yield tmp_path
    finally:
        sock.close()


OK = None

# (type, name under tmp, error message with {p} for the path, or OK)
CASES = [
    ("", "dir", OK),
    ("", "file", OK),
    ("Directory", "dir", OK),
    ("Directory", "link-to-dir", OK),  # symlinks are followed, as the kubelet's stat does
    ("Directory", "file", "hostPath type check failed: {p} is not a directory, it's a File"),
    ("Directory", "missing", "hostPath {p} doesn't exist"),
    ("DirectoryOrCreate", "dir", OK),
    ("DirectoryOrCreate", "file", "hostPath type check failed: {p} is not a directory, it's a File"),
    ("File", "file", OK),
    ("File", "dir", "hostPath type check failed: {p} is not a file, it's a Directory"),
    ("File", "missing", "hostPath {p} doesn't exist"),
    ("FileOrCreate", "file", OK),
    ("FileOrCreate", "dir", "hostPath type check failed: {p} is not a file, it's a Directory"),
    ("Socket", "sock", OK),
    ("Socket", "file", "hostPath type check failed: {p} is not a socket file, it's a File"),
    ("Socket", "missing", "hostPath {p} doesn't exist"),
    ("CharDevice", "sock", "hostPath type check failed: {p} is not a character device, it's a Socket"),
    ("CharDevice", "missing", "hostPath {p} doesn't exist"),
    ("BlockDevice", "dir", "hostPath type check failed: {p} is not a block device, it's a Directory"),
    ("BlockDevice", "missing", "hostPath {p} doesn't exist"),
    ("Bogus", "dir", "Bogus is an invalid volume type"),
]


@pytest.mark.parametrize(("path_type", "name", "message"), CASES)
def test_host_path_types(tree: Path, path_type: str, name: str, message: str | None) -> None:
    path = str(tree / name)
    if message is None:
        volumes.check_host_path(path, path_type)
    else:
        with pytest.raises(volumes.VolumeError) as info:
            volumes.check_host_path(path, path_type)
        assert str(info.value) == message.format(p=path)


def test_char_device() -> None:
    volumes.check_host_path("/dev/null", "CharDevice")
    with pytest.raises(volumes.VolumeError, match="is not a block device, it's a CharDevice"):
        volumes.check_host_path("/dev/null", "BlockDevice")
    with pytest.raises(volumes.VolumeError, match="is not a directory, it's a CharDevice"):
        volumes.check_host_path("/dev/null", "Directory")


def test_block_device_if_any() -> None:
    blocks = [p for p in ("/dev/loop0", "/dev/sda", "/dev/vda") if os.path.exists(p)]
    blocks = [p for p in blocks if stat.S_ISBLK(os.stat(p).st_mode)]
    if not blocks:
        pytest.skip("no block device node on this host")
    volumes.check_host_path(blocks[0], "BlockDevice")


def test_unrecognised_file_type(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(volumes.VolumeError, match="is not a file, unable to determine its type"):
        volumes.check_host_path(str(fifo), "File")


def test_directory_or_create_makes_parents_with_0755(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c"
    old = os.umask(0o022)
    try:
        volumes.check_host_path(str(path), "DirectoryOrCreate")
    finally:
        os.umask(old)
    assert path.is_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_untyped_missing_path_becomes_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y"
    volumes.check_host_path(str(path), "")
    assert path.is_dir()


def test_file_or_create_makes_an_empty_0644_file(tmp_path: Path) -> None:
    path = tmp_path / "new.lock"
    old = os.umask(0o022)
    try:
        volumes.check_host_path(str(path), "FileOrCreate")
    finally:
        os.umask(old)
    assert path.is_file()
    assert path.read_bytes() == b""
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_file_or_create_does_not_create_the_parent(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "new.lock"
    with pytest.raises(volumes.VolumeError, match="No such file or directory"):
        volumes.check_host_path(str(path), "FileOrCreate")
    assert not (tmp_path / "nope").exists()


def test_file_or_create_keeps_existing_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("keep")
    volumes.check_host_path(str(path), "FileOrCreate")
    assert path.read_text() == "keep"


# --- prepare / remove -------------------------------------------------------------------------


def pod_spec(tmp_path: Path) -> model.PodSpec:
    return model.PodSpec(
        containers=(model.Container(name="c", image="i"),),
        volumes=(
            model.Volume("host", model.HostPathVolumeSource(str(tmp_path / "host"), "DirectoryOrCreate")),
            model.Volume("scratch", model.EmptyDirVolumeSource()),
            model.Volume("mem", model.EmptyDirVolumeSource(medium="Memory")),
            model.Volume("cfg", model.ConfigMapVolumeSource(name="cfg")),
            model.Volume("sec", model.SecretVolumeSource(secret_name="sec")),
            model.Volume("nfs", model.UnsupportedVolumeSource("nfs")),
        ),
    )


def test_prepare_and_remove(tmp_path: Path) -> None:
    state = tmp_path / "state"
    paths = volumes.prepare(str(state), "uid-1", pod_spec(tmp_path))
    base = state / "pods" / "uid-1" / "volumes"
    assert paths == {
        "host": str(tmp_path / "host"),
        "scratch": str(base / "scratch"),
        "cfg": str(base / "cfg"),
        "sec": str(base / "sec"),
    }
    assert stat.S_IMODE((base / "scratch").stat().st_mode) == 0o777
    (base / "scratch" / "data").write_text("x")
    # idempotent: preparing again keeps what is there
    assert volumes.prepare(str(state), "uid-1", pod_spec(tmp_path)) == paths
    assert (base / "scratch" / "data").read_text() == "x"

    volumes.remove_pod_dirs(str(state), "uid-1")
    assert not (state / "pods" / "uid-1").exists()
    assert (tmp_path / "host").is_dir()  # hostPaths are never removed
    volumes.remove_pod_dirs(str(state), "uid-1")  # already gone: fine


def test_prepare_fails_on_a_bad_host_path(tmp_path: Path) -> None:
    spec = model.PodSpec(
        containers=(model.Container(name="c", image="i"),),
        volumes=(model.Volume("h", model.HostPathVolumeSource(str(tmp_path / "nope"), "Directory")),),
    )
    with pytest.raises(volumes.VolumeError, match="doesn't exist"):
        volumes.prepare(str(tmp_path), "uid", spec)


@pytest.mark.parametrize("uid", ["", "..", ".", "a/b"])
def test_pod_uid_cannot_escape(tmp_path: Path, uid: str) -> None:
    with pytest.raises(volumes.VolumeError, match="invalid pod uid"):
        volumes.remove_pod_dirs(str(tmp_path), uid)
