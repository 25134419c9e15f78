"""volumes: hostPath type checks as the kubelet does them, and per-pod directories, in tmp dirs."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.agent import identity, podconfig, volumes
from nodeagent.k8s import model, quantity


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


# --- configMap / secret / downwardAPI / projected contents (the kubelet's AtomicWriter) ----------

NS = "kube-system"


class Store:
    """A podconfig.Lookup over mutable dicts, standing in for the ConfigMaps/Secrets of the sources."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, str | bytes]] = {}

    def __call__(self, kind: str, namespace: str, name: str) -> dict[str, str | bytes] | None:
        return self.objects.get((kind, namespace, name))


def ctx(spec: model.PodSpec) -> podconfig.PodContext:
    return podconfig.PodContext(
        owner=identity.owner_daemonset(NS, "agent"),
        namespace=NS,
        pod_name="agent-abcde",
        metadata=model.ObjectMeta(
            name="agent-abcde", namespace=NS, labels={"app": "agent"}, annotations={"a": "1"}, uid="u-1"
        ),
        spec=spec,
        spec_hash="v1-abcdef0123456789",
        node_name="node-a",
        host_ip="10.0.0.5",
    )


def one_volume(source: model.VolumeSource, **spec_kw: Any) -> model.PodSpec:
    kw: dict[str, Any] = {"containers": (model.Container(name="c", image="i"),)}
    kw.update(spec_kw)
    return model.PodSpec(volumes=(model.Volume("v", source),), **kw)


def files_of(root: Path) -> dict[str, str]:
    """What a container sees: every visible (non-dot) path, followed through the symlinks."""
    out: dict[str, str] = {}
    for dirpath, dirs, names in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir.split(os.sep)[0].startswith(".."):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        for n in names:
            if n.startswith(".."):
                continue
            rel = os.path.normpath(os.path.join(rel_dir, n))
            out[rel] = (Path(dirpath) / n).read_text()
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)  # follows the symlinks, as a container's stat would


def prep(tmp_path: Path, spec: model.PodSpec, store: Store) -> Path:
    paths = volumes.prepare(str(tmp_path / "state"), "uid-1", spec, lookup=store, pod=ctx(spec))
    return Path(paths["v"])


def test_config_map_all_keys_with_default_mode(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"a.conf": "A", "b.conf": b"\x00B"}
    root = prep(tmp_path, one_volume(model.ConfigMapVolumeSource(name="cfg")), store)
    assert files_of(root) == {"a.conf": "A", "b.conf": "\x00B"}
    assert mode(root / "a.conf") == 0o644
    # kubelet layout: name -> ..data/name, ..data -> ..<timestamp>
    assert os.readlink(root / "a.conf") == "..data/a.conf"
    assert os.readlink(root / "..data").startswith("..20")


def test_items_modes_and_nested_paths(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "A", "b": "B", "unused": "U"}
    source = model.ConfigMapVolumeSource(
        name="cfg",
        items=(model.KeyToPath("a", "dir/sub/a.txt"), model.KeyToPath("b", "b.sh", mode=0o755)),
        default_mode=0o600,
    )
    root = prep(tmp_path, one_volume(source), store)
    assert files_of(root) == {"dir/sub/a.txt": "A", "b.sh": "B"}
    assert mode(root / "dir" / "sub" / "a.txt") == 0o600
    assert mode(root / "b.sh") == 0o755
    assert os.readlink(root / "dir") == "..data/dir"


def test_missing_config_map_and_secret_are_errors_unless_optional(tmp_path: Path) -> None:
    store = Store()
    with pytest.raises(volumes.VolumeError, match=r'^configmap "cfg" not found$'):
        prep(tmp_path, one_volume(model.ConfigMapVolumeSource(name="cfg")), store)
    with pytest.raises(volumes.VolumeError, match=r'^secret "tls" not found$'):
        prep(tmp_path, one_volume(model.SecretVolumeSource(secret_name="tls")), store)
    root = prep(tmp_path, one_volume(model.ConfigMapVolumeSource(name="cfg", optional=True)), store)
    assert files_of(root) == {}


def test_missing_key_in_items(tmp_path: Path) -> None:
    store = Store()
    store.objects[("Secret", NS, "tls")] = {"tls.crt": b"CERT"}
    items = (model.KeyToPath("tls.crt", "crt"), model.KeyToPath("tls.key", "key"))
    with pytest.raises(volumes.VolumeError, match=r"^secret references non-existent secret key: tls\.key$"):
        prep(tmp_path, one_volume(model.SecretVolumeSource(secret_name="tls", items=items)), store)
    optional = model.SecretVolumeSource(secret_name="tls", items=items, optional=True)
    assert files_of(prep(tmp_path, one_volume(optional), store)) == {"crt": "CERT"}
    cm_items = (model.KeyToPath("nope", "x"),)
    store.objects[("ConfigMap", NS, "cfg")] = {}
    with pytest.raises(volumes.VolumeError, match=r"^configmap references non-existent config key: nope$"):
        prep(tmp_path, one_volume(model.ConfigMapVolumeSource(name="cfg", items=cm_items)), store)


def test_secret_files_sit_under_a_root_only_pod_dir(tmp_path: Path) -> None:
    store = Store()
    store.objects[("Secret", NS, "tls")] = {"key": b"s3cret"}
    root = prep(tmp_path, one_volume(model.SecretVolumeSource(secret_name="tls", default_mode=0o400)), store)
    assert mode(root / "key") == 0o400
    pod_dir = tmp_path / "state" / "pods" / "uid-1"
    assert mode(pod_dir) == 0o700
    assert (root / "key").read_bytes() == b"s3cret"


def test_secret_values_never_in_errors_or_reprs(tmp_path: Path) -> None:
    file = volumes.FileProjection(b"s3cret", 0o644)
    assert "s3cret" not in repr(file) and "s3cret" not in str(file)
    store = Store()
    store.objects[("Secret", NS, "tls")] = {"key": b"s3cret"}
    items = (model.KeyToPath("key", "/abs"),)
    with pytest.raises(volumes.VolumeError) as info:
        prep(tmp_path, one_volume(model.SecretVolumeSource(secret_name="tls", items=items)), store)
    assert "s3cret" not in str(info.value)


def test_update_in_place_swaps_data_atomically(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "1", "b": "2"}
    spec = one_volume(model.ConfigMapVolumeSource(name="cfg"))
    root = prep(tmp_path, spec, store)
    first = os.readlink(root / "..data")
    # unchanged: nothing is rewritten
    result = volumes.refresh(str(tmp_path / "state"), "uid-1", spec, lookup=store, pod=ctx(spec))
    assert result == volumes.RefreshResult()
    assert os.readlink(root / "..data") == first
    # changed: new timestamped dir, `b` gone, `c` added, the old dir removed
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "one", "c": "3"}
    result = volumes.refresh(str(tmp_path / "state"), "uid-1", spec, lookup=store, pod=ctx(spec))
    assert result.updated == ("v",)
    assert files_of(root) == {"a": "one", "c": "3"}
    assert os.readlink(root / "..data") != first
    assert not (root / first).exists()
    assert not os.path.lexists(root / "b")
    dot_entries = {p for p in os.listdir(root) if p.startswith("..")}
    assert dot_entries == {"..data", os.readlink(root / "..data")}


def test_refresh_keeps_old_files_when_the_object_goes_missing(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "1"}
    spec = model.PodSpec(
        containers=(model.Container(name="c", image="i"),),
        volumes=(
            model.Volume("v", model.ConfigMapVolumeSource(name="cfg")),
            model.Volume("w", model.ConfigMapVolumeSource(name="other", optional=True)),
        ),
    )
    state = str(tmp_path / "state")
    paths = volumes.prepare(state, "uid-1", spec, lookup=store, pod=ctx(spec))
    del store.objects[("ConfigMap", NS, "cfg")]
    store.objects[("ConfigMap", NS, "other")] = {"x": "y"}
    result = volumes.refresh(state, "uid-1", spec, lookup=store, pod=ctx(spec))
    assert result.updated == ("w",)
    assert result.errors == {"v": 'configmap "cfg" not found'}
    assert files_of(Path(paths["v"])) == {"a": "1"}
    assert files_of(Path(paths["w"])) == {"x": "y"}


def test_refresh_skips_pods_never_prepared(tmp_path: Path) -> None:
    spec = one_volume(model.ConfigMapVolumeSource(name="cfg"))
    assert volumes.refresh(str(tmp_path), "uid-x", spec, lookup=Store()) == volumes.RefreshResult()


def test_leftovers_of_an_interrupted_write_are_cleaned(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "1"}
    spec = one_volume(model.ConfigMapVolumeSource(name="cfg"))
    root = prep(tmp_path, spec, store)
    (root / "..2000_01_01_00_00_00.crash").mkdir()
    os.symlink("..2000_01_01_00_00_00.crash", root / "..data_tmp")
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "2"}
    volumes.refresh(str(tmp_path / "state"), "uid-1", spec, lookup=store, pod=ctx(spec))
    assert set(os.listdir(root)) == {"..data", os.readlink(root / "..data"), "a"}


def test_downward_api_volume(tmp_path: Path) -> None:
    spec_items = (
        model.DownwardAPIVolumeFile("labels", field_ref=model.ObjectFieldSelector("metadata.labels")),
        model.DownwardAPIVolumeFile(
            "annotations", field_ref=model.ObjectFieldSelector("metadata.annotations")
        ),
        model.DownwardAPIVolumeFile("name", field_ref=model.ObjectFieldSelector("metadata.name"), mode=0o600),
        model.DownwardAPIVolumeFile("ns", field_ref=model.ObjectFieldSelector("metadata.namespace")),
        model.DownwardAPIVolumeFile("uid", field_ref=model.ObjectFieldSelector("metadata.uid")),
        model.DownwardAPIVolumeFile("app", field_ref=model.ObjectFieldSelector("metadata.labels['app']")),
        model.DownwardAPIVolumeFile(
            "mem",
            resource_field_ref=model.ResourceFieldSelector(
                "limits.memory", container_name="c", divisor=quantity.parse("1Mi")
            ),
        ),
    )
    c = model.Container(
        name="c", image="i", resources=model.ResourceRequirements(limits={"memory": quantity.parse("64Mi")})
    )
    spec = one_volume(model.DownwardAPIVolumeSource(items=spec_items), containers=(c,))
    root = prep(tmp_path, spec, Store())
    assert files_of(root) == {
        "labels": 'app="agent"',
        "annotations": 'a="1"',
        "name": "agent-abcde",
        "ns": NS,
        "uid": "u-1",
        "app": "agent",
        "mem": "64",
    }
    assert mode(root / "name") == 0o600
    assert mode(root / "ns") == 0o644


def test_downward_api_volume_refuses_non_metadata_fields(tmp_path: Path) -> None:
    items = (model.DownwardAPIVolumeFile("node", field_ref=model.ObjectFieldSelector("spec.nodeName")),)
    with pytest.raises(volumes.VolumeError, match=r"fieldPath spec\.nodeName is not supported"):
        prep(tmp_path, one_volume(model.DownwardAPIVolumeSource(items=items)), Store())


def test_projected_volume_combines_sources(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"app.conf": "conf"}
    store.objects[("Secret", NS, "tls")] = {"tls.key": b"KEY", "tls.crt": b"CRT"}
    source = model.ProjectedVolumeSource(
        sources=(
            model.VolumeProjection(config_map=model.ConfigMapVolumeSource(name="cfg")),
            model.VolumeProjection(
                secret=model.SecretVolumeSource(
                    secret_name="tls", items=(model.KeyToPath("tls.key", "certs/key", mode=0o400),)
                )
            ),
            model.VolumeProjection(
                downward_api=model.DownwardAPIVolumeSource(
                    items=(
                        model.DownwardAPIVolumeFile(
                            "pod", field_ref=model.ObjectFieldSelector("metadata.name")
                        ),
                    )
                )
            ),
            model.VolumeProjection(
                service_account_token=model.ServiceAccountTokenProjection(path="token", audience="x")
            ),
            model.VolumeProjection(config_map=model.ConfigMapVolumeSource(name="gone", optional=True)),
        ),
        default_mode=0o640,
    )
    root = prep(tmp_path, one_volume(source), store)
    assert files_of(root) == {"app.conf": "conf", "certs/key": "KEY", "pod": "agent-abcde"}
    assert mode(root / "app.conf") == 0o640
    assert mode(root / "certs" / "key") == 0o400


def test_projected_duplicate_paths(tmp_path: Path) -> None:
    store = Store()
    store.objects[("ConfigMap", NS, "a")] = {"same": "1"}
    store.objects[("ConfigMap", NS, "b")] = {"same": "2"}
    source = model.ProjectedVolumeSource(
        sources=(
            model.VolumeProjection(config_map=model.ConfigMapVolumeSource(name="a")),
            model.VolumeProjection(config_map=model.ConfigMapVolumeSource(name="b")),
        )
    )
    with pytest.raises(volumes.VolumeError, match="conflicting duplicate paths: same"):
        prep(tmp_path, one_volume(source), store)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/x", "must not be absolute path"),
        ("a/../b", "must not contain '..'"),
        ("..data", "must not start with '..'"),
        ("", "must not be empty"),
    ],
)
def test_payload_paths_are_checked(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(volumes.VolumeError, match=message):
        volumes.write_atomic(str(tmp_path), {path: volumes.FileProjection(b"x", 0o644)})


def test_fs_group(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's group to an arbitrary gid needs root")
    store = Store()
    store.objects[("ConfigMap", NS, "cfg")] = {"a": "1"}
    spec = model.PodSpec(
        containers=(model.Container(name="c", image="i"),),
        volumes=(
            model.Volume("v", model.ConfigMapVolumeSource(name="cfg", default_mode=0o600)),
            model.Volume("e", model.EmptyDirVolumeSource()),
        ),
        security_context=model.PodSecurityContext(fs_group=2000),
    )
    paths = volumes.prepare(str(tmp_path / "state"), "uid-1", spec, lookup=store, pod=ctx(spec))
    cfg = Path(paths["v"]) / "a"
    assert cfg.stat().st_gid == 2000
    assert mode(cfg) == 0o640  # the kubelet's roMask adds group read
    empty = Path(paths["e"])
    assert empty.stat().st_gid == 2000
    assert empty.stat().st_mode & stat.S_ISGID


def test_without_lookup_the_mount_points_are_empty(tmp_path: Path) -> None:
    spec = one_volume(model.ConfigMapVolumeSource(name="cfg"))
    paths = volumes.prepare(str(tmp_path), "uid-1", spec)
    assert os.listdir(paths["v"]) == []


def test_api_data_volumes_are_mounted_read_only(tmp_path: Path) -> None:
    c = model.Container(
        name="c",
        image="i",
        volume_mounts=(model.VolumeMount("v", "/etc/app"), model.VolumeMount("e", "/scratch")),
    )
    spec = model.PodSpec(
        containers=(c,),
        volumes=(
            model.Volume("v", model.ConfigMapVolumeSource(name="cfg", optional=True)),
            model.Volume("e", model.EmptyDirVolumeSource()),
        ),
    )
    pod = ctx(spec)
    paths = volumes.prepare(str(tmp_path), "uid-1", spec, lookup=Store(), pod=pod)
    created = podconfig.build(
        dataclasses.replace(pod, volume_paths=paths), c, role=identity.ROLE_APP, attempt=0
    )
    assert [(m.target, m.read_only) for m in created.mounts] == [("/etc/app", True), ("/scratch", False)]
