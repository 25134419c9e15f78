"""Prepare a pod's volumes on the host before its containers are created.

hostPath `type` checks follow the kubelet (`pkg/volume/hostpath/host_path.go`, `checkType`) word for
word, so a manifest fails here exactly when it would fail on a Kubernetes node. Unlike the kubelet we also
create a missing untyped ("") hostPath ourselves, as a directory, so the result never depends on which
mount API the engine is driven through (Docker's `Binds` create it, `Mounts` refuse).

Per-pod directories live under `<stateDir>/pods/<pod-uid>/volumes/<name>` and go away with the pod.
`<stateDir>/pods/<pod-uid>` is 0700: no host user but root reaches a pod's files (Secrets included), while a
container, which sees only the bind-mounted volume directory, reads them with Kubernetes' own modes.

ConfigMap, Secret, downwardAPI and projected volumes are written the way the kubelet's `AtomicWriter`
(`pkg/volume/util/atomic_writer.go`) writes them: the files go into a fresh `..<timestamp>` directory, a
`..data` symlink is swapped to it with one rename, and each top-level name is a symlink through `..data`.
A container therefore sees either the old or the new set of files, never a mix, and an update is visible in
running containers without a restart (except through subPath, as in Kubernetes).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from nodeagent import errors
from nodeagent.agent import podconfig
from nodeagent.k8s import model

log = structlog.get_logger(__name__)

EMPTY_DIR_MODE = 0o777  # the kubelet's emptyDir mode: any container user may write
DIR_OR_CREATE_MODE = 0o755
FILE_OR_CREATE_MODE = 0o644
POD_DIR_MODE = 0o700  # only root on the host reads a pod's files (Secrets among them)
PROJECTED_DIR_MODE = 0o755  # the kubelet's timestamped-directory mode
DATA_DIR = "..data"
_DATA_TMP = "..data_tmp"

HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)

# expected type -> the kubelet's description of it
_DESCRIPTION = {
    "Directory": "directory",
    "File": "file",
    "Socket": "socket file",
    "CharDevice": "character device",
    "BlockDevice": "block device",
}


class VolumeError(errors.NodeAgentError):
    """A volume could not be prepared (a failed hostPath type check, an unwritable state dir, ...)."""


def pod_dir(state_dir: str, pod_uid: str) -> str:
    """`<stateDir>/pods/<pod-uid>`; refuses uids that could escape the pods directory."""
    if not pod_uid or "/" in pod_uid or pod_uid in (".", ".."):
        raise VolumeError(f"invalid pod uid {pod_uid!r}")
    return os.path.join(state_dir, "pods", pod_uid)


def volume_dir(state_dir: str, pod_uid: str, name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise VolumeError(f"invalid volume name {name!r}")
    return os.path.join(pod_dir(state_dir, pod_uid), "volumes", name)


def prepare(
    state_dir: str,
    pod_uid: str,
    spec: model.PodSpec,
    *,
    lookup: podconfig.Lookup | None = None,
    pod: podconfig.PodContext | None = None,
    namespace: str | None = None,
) -> dict[str, str]:
    """Create or check every volume of a pod; returns volume name -> host path for `podconfig`.

    `lookup` resolves ConfigMaps and Secrets (in `pod.namespace`, or `namespace` without a `pod`) and
    `pod` the downward API (build it without volume_paths, then add the returned paths). With them,
    configMap, secret, downwardAPI and projected volumes get their files; without them (callers that
    only need mount points) those volumes are created empty. A missing non-optional ConfigMap or Secret,
    or a missing key named in `items`, raises VolumeError with Kubernetes' message
    (`configmap "x" not found`), which the executor reports as CreateContainerConfigError.
    Memory-backed emptyDirs (tmpfs in the container) and unsupported volume types have no entry.
    Idempotent: called again for the same pod it finds everything in place.
    """
    paths: dict[str, str] = {}
    for volume in spec.volumes:
        source = volume.source
        if isinstance(source, model.HostPathVolumeSource):
            check_host_path(source.path, source.type)
            paths[volume.name] = source.path
        elif isinstance(source, model.EmptyDirVolumeSource):
            if source.medium == "Memory":
                continue
            path = _make_dir(_volume_dir_under_private_pod(state_dir, pod_uid, volume.name), EMPTY_DIR_MODE)
            _set_fs_group(path, spec.security_context.fs_group, read_only=False)
            paths[volume.name] = path
        elif isinstance(source, _PROJECTED_TYPES):
            path = _make_dir(
                _volume_dir_under_private_pod(state_dir, pod_uid, volume.name), DIR_OR_CREATE_MODE
            )
            if lookup is not None or pod is not None:
                content = payload(volume, spec, lookup=lookup, pod=pod, namespace=namespace)
                write_atomic(path, content, fs_group=spec.security_context.fs_group)
            paths[volume.name] = path
        # UnsupportedVolumeSource: reported as a warning by validation; podconfig refuses to mount it
    return paths


@dataclass(frozen=True)
class RefreshResult:
    """What `refresh` did: volumes whose files changed, and volumes it could not update (old files kept)."""

    updated: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)  # volume name -> message


def refresh(
    state_dir: str,
    pod_uid: str,
    spec: model.PodSpec,
    *,
    lookup: podconfig.Lookup | None,
    pod: podconfig.PodContext | None = None,
    namespace: str | None = None,
) -> RefreshResult:
    """Rewrite the configMap/secret/downwardAPI/projected files of a running pod when their source changed.

    As the kubelet's periodic volume sync: a volume whose object went missing or became invalid keeps
    its last files (and is reported in `errors`); one volume's failure never stops the others. A volume
    whose directory is gone (the pod was never prepared here) is skipped.
    """
    updated: list[str] = []
    failed: dict[str, str] = {}
    for volume in spec.volumes:
        if not isinstance(volume.source, _PROJECTED_TYPES):
            continue
        path = volume_dir(state_dir, pod_uid, volume.name)
        if not os.path.isdir(path):
            continue
        try:
            content = payload(volume, spec, lookup=lookup, pod=pod, namespace=namespace)
            if write_atomic(path, content, fs_group=spec.security_context.fs_group):
                updated.append(volume.name)
        except (VolumeError, podconfig.PodConfigError) as exc:
            failed[volume.name] = str(exc)
    return RefreshResult(tuple(updated), failed)


def remove_pod_dirs(state_dir: str, pod_uid: str) -> None:
    """Delete a pod's emptyDirs and other per-pod data; a pod without a directory is fine."""
    path = pod_dir(state_dir, pod_uid)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise VolumeError(f"cannot remove {path}: {exc.strerror or exc}") from exc


def _volume_dir_under_private_pod(state_dir: str, pod_uid: str, name: str) -> str:
    """volume_dir, after making sure the pod directory exists with mode 0700."""
    _make_dir(pod_dir(state_dir, pod_uid), POD_DIR_MODE)
    return volume_dir(state_dir, pod_uid, name)


def _make_dir(path: str, mode: int) -> str:
    try:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)  # the umask must not narrow it
    except OSError as exc:
        raise VolumeError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return path


# --- hostPath ---------------------------------------------------------------------------------


def _exists(path: str) -> bool:
    """The kubelet's PathExists: stat follows symlinks, so a dangling link does not exist."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True


def file_type(path: str) -> str:
    """The kubelet's `GetFileType`: Directory, File, Socket, CharDevice or BlockDevice."""
    mode = os.stat(path).st_mode
    if stat.S_ISSOCK(mode):
        return "Socket"
    if stat.S_ISDIR(mode):
        return "Directory"
    if stat.S_ISCHR(mode):
        return "CharDevice"
    if stat.S_ISBLK(mode):
        return "BlockDevice"
    if stat.S_ISREG(mode):
        return "File"
    raise OSError(errno.EINVAL, "only recognise file, directory, socket, block device and character device")


def _type_matched_or_error(path: str, expected: str) -> None:
    description = _DESCRIPTION[expected]
    if not _exists(path):
        raise VolumeError(f"hostPath {path} doesn't exist")
    try:
        actual = file_type(path)
    except OSError as exc:
        raise VolumeError(
            f"hostPath type check failed, {path} is not a {description}, unable to determine its type: "
            f"{exc.strerror or exc}"
        ) from exc
    if actual != expected:
        raise VolumeError(f"hostPath type check failed: {path} is not a {description}, it's a {actual}")


def check_host_path(path: str, path_type: str) -> None:
    """Apply a hostPath `type` as the kubelet does; creates the path for the *OrCreate types (and "")."""
    if path_type == "":
        # the kubelet checks nothing; Docker's Binds would create a missing path as a directory: do that
        if not _exists(path) and not os.path.islink(path):
            _make_host_dir(path)
        return
    if path_type == "DirectoryOrCreate":
        if not _exists(path):
            _make_host_dir(path)
        _type_matched_or_error(path, "Directory")
    elif path_type == "Directory":
        _type_matched_or_error(path, "Directory")
    elif path_type == "FileOrCreate":
        if not _exists(path):
            # the kubelet creates only the file, never its parent directory, and checks nothing after
            _make_host_file(path)
            return
        _type_matched_or_error(path, "File")
    elif path_type in ("File", "Socket", "CharDevice", "BlockDevice"):
        _type_matched_or_error(path, path_type)
    else:
        raise VolumeError(f"{path_type} is an invalid volume type")


def _make_host_dir(path: str) -> None:
    """The kubelet's makeDir: mkdir -p with mode 0755; an existing path is not an error here."""
    try:
        os.makedirs(path, mode=DIR_OR_CREATE_MODE, exist_ok=True)
    except FileExistsError:
        return
    except OSError as exc:
        raise VolumeError(f"mkdir {path}: {exc.strerror or exc}") from exc


def _make_host_file(path: str) -> None:
    """The kubelet's makeFile: open(O_CREAT, 0644); the parent directory must exist."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDONLY, FILE_OR_CREATE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise VolumeError(f"open {path}: {exc.strerror or exc}") from exc
    os.close(fd)


# --- configMap, secret, downwardAPI and projected contents -----------------------------------

_PROJECTED_TYPES = (
    model.ConfigMapVolumeSource,
    model.SecretVolumeSource,
    model.DownwardAPIVolumeSource,
    model.ProjectedVolumeSource,
)
# fieldRefs a downwardAPI *volume* may use (Kubernetes' validDownwardAPIFieldPathExpressions for volumes)
_VOLUME_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
                       "metadata.annotations")  # fmt: skip
_FS_GROUP_RO_MASK = 0o440  # the kubelet's roMask: configMap/secret/... are read-only volumes
_FS_GROUP_RW_MASK = 0o660  # rwMask, for emptyDir
_FS_GROUP_DIR_MASK = 0o110 | stat.S_ISGID


@dataclass(frozen=True)
class FileProjection:
    """One file of a volume payload. Its repr never shows the data: it may be a Secret's."""

    data: bytes = field(repr=False)
    mode: int

    def __repr__(self) -> str:
        return f"FileProjection({len(self.data)} bytes, mode={self.mode:#o})"


Payload = dict[str, FileProjection]  # relative path -> file


def payload(
    volume: model.Volume,
    spec: model.PodSpec,
    *,
    lookup: podconfig.Lookup | None,
    pod: podconfig.PodContext | None,
    namespace: str | None = None,
) -> Payload:
    """The files a configMap/secret/downwardAPI/projected volume holds, as the kubelet's `MakePayload`."""
    ns = namespace if namespace is not None else (pod.namespace if pod is not None else None)
    source = volume.source
    if isinstance(source, model.ConfigMapVolumeSource):
        return _object_payload("ConfigMap", ns, source.name, source.items, source.default_mode,
                               source.optional, lookup)  # fmt: skip
    if isinstance(source, model.SecretVolumeSource):
        return _object_payload("Secret", ns, source.secret_name, source.items, source.default_mode,
                               source.optional, lookup)  # fmt: skip
    if isinstance(source, model.DownwardAPIVolumeSource):
        return _downward_payload(source.items, source.default_mode, spec, pod)
    if isinstance(source, model.ProjectedVolumeSource):
        return _projected_payload(volume.name, source, spec, lookup, pod, ns)
    raise VolumeError(f"volume {volume.name!r} has no file contents")


def _object_payload(
    kind: str,
    namespace: str | None,
    name: str,
    items: tuple[model.KeyToPath, ...],
    default_mode: int,
    optional: bool,
    lookup: podconfig.Lookup | None,
) -> Payload:
    if lookup is None or namespace is None:
        raise VolumeError(f"{kind} {name!r} is referenced but no {kind} lookup is configured")
    data = lookup(kind, namespace, name)
    if data is None:
        if optional:
            return {}
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    out: Payload = {}
    if not items:
        for key, value in data.items():
            out[key] = FileProjection(_bytes(value), default_mode)
        return out
    for item in items:
        if item.key not in data:
            if optional:
                continue
            what = "config" if kind == "ConfigMap" else "secret"
            raise VolumeError(f"{kind.lower()} references non-existent {what} key: {item.key}")
        mode = item.mode if item.mode is not None else default_mode
        out[item.path] = FileProjection(_bytes(data[item.key]), mode)
    return out


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _downward_payload(
    items: tuple[model.DownwardAPIVolumeFile, ...],
    default_mode: int,
    spec: model.PodSpec,
    pod: podconfig.PodContext | None,
) -> Payload:
    if pod is None:
        raise VolumeError("a downwardAPI volume needs the pod's metadata")
    out: Payload = {}
    for item in items:
        mode = item.mode if item.mode is not None else default_mode
        if item.field_ref is not None:
            path = item.field_ref.field_path
            base = path.split("[", 1)[0]
            if base not in _VOLUME_FIELD_PATHS:
                raise VolumeError(f"downwardAPI volume {item.path}: fieldPath {path} is not supported")
            value = podconfig.field_ref_value(pod, path)
        elif item.resource_field_ref is not None:
            selector = item.resource_field_ref
            found = [
                c for c in (*spec.containers, *spec.init_containers) if c.name == selector.container_name
            ]
            if not found:
                raise VolumeError(f"downwardAPI volume {item.path}: container {selector.container_name!r} "
                                  "not found")  # fmt: skip
            value = podconfig.resource_field_value(pod, found[0], selector)
        else:
            raise VolumeError(f"downwardAPI volume {item.path}: no fieldRef or resourceFieldRef")
        out[item.path] = FileProjection(value.encode("utf-8"), mode)
    return out


def _projected_payload(
    name: str,
    source: model.ProjectedVolumeSource,
    spec: model.PodSpec,
    lookup: podconfig.Lookup | None,
    pod: podconfig.PodContext | None,
    namespace: str | None,
) -> Payload:
    """Every source's files under the projected volume's defaultMode; duplicate paths are an error."""
    out: Payload = {}
    mode = source.default_mode
    for i, projection in enumerate(source.sources):
        part: Payload
        if projection.config_map is not None:
            cm = projection.config_map
            part = _object_payload("ConfigMap", namespace, cm.name, cm.items, mode, cm.optional, lookup)
        elif projection.secret is not None:
            sec = projection.secret
            part = _object_payload(
                "Secret", namespace, sec.secret_name, sec.items, mode, sec.optional, lookup
            )
        elif projection.downward_api is not None:
            part = _downward_payload(projection.downward_api.items, mode, spec, pod)
        elif projection.service_account_token is not None:
            log.warning(
                "volume_source_skipped",
                volume=name,
                path=f"projected.sources[{i}].serviceAccountToken",
                reason="no API server issues service account tokens on a lone Docker host",
            )
            continue
        else:
            continue
        for path, file in part.items():
            if path in out:
                raise VolumeError(f"projected volume {name!r}: conflicting duplicate paths: {path}")
            out[path] = file
    return out


def validate_payload_path(path: str) -> None:
    """The atomic writer's `validatePath`: relative, no `..` element, not starting with `..`."""
    if not path:
        raise VolumeError("invalid path: must not be empty")
    if posixpath.isabs(path):
        raise VolumeError(f"invalid path: must not be absolute path: {path}")
    parts = path.split("/")
    if ".." in parts:
        raise VolumeError(f"invalid path: must not contain '..': {path}")
    if parts[0].startswith(".."):
        raise VolumeError(f"invalid path: must not start with '..': {path}")


def _final_mode(mode: int, fs_group: int | None) -> int:
    return (mode | _FS_GROUP_RO_MASK if fs_group is not None else mode) & 0o7777


def _read_current(target_dir: str) -> tuple[str, dict[str, tuple[bytes, int]]] | None:
    """(timestamped dir name, relative path -> (data, mode)) of what `..data` points at, if anything."""
    try:
        ts_name = os.readlink(os.path.join(target_dir, DATA_DIR))
    except OSError:
        return None
    root = os.path.join(target_dir, ts_name)
    files: dict[str, tuple[bytes, int]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            with open(full, "rb") as fh:
                files[os.path.relpath(full, root)] = (fh.read(), stat.S_IMODE(st.st_mode))
    return ts_name, files


def write_atomic(
    target_dir: str, files: Mapping[str, FileProjection], *, fs_group: int | None = None
) -> bool:
    """Make `target_dir` hold exactly `files`, switched in with one rename; False when already so.

    The kubelet's AtomicWriter: new `..<timestamp>` dir, `..data_tmp` -> it, rename onto `..data`, then
    the top-level symlinks (`name` -> `..data/name`) are added or removed and the old directory deleted.
    """
    for path in files:
        validate_payload_path(path)
    wanted = {os.path.normpath(p): (f.data, _final_mode(f.mode, fs_group)) for p, f in files.items()}
    try:
        current = _read_current(target_dir)
        if current is not None and current[1] == wanted:
            return False
        ts_dir = tempfile.mkdtemp(
            prefix=datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S."), dir=target_dir
        )
        os.chmod(ts_dir, PROJECTED_DIR_MODE)
        for rel, (data, mode) in sorted(wanted.items()):
            full = os.path.join(ts_dir, rel)
            os.makedirs(os.path.dirname(full), mode=PROJECTED_DIR_MODE, exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, data)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        if fs_group is not None:
            _chown_tree(ts_dir, fs_group)
        tmp_link = os.path.join(target_dir, _DATA_TMP)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_link)
        os.symlink(os.path.basename(ts_dir), tmp_link)
        os.rename(tmp_link, os.path.join(target_dir, DATA_DIR))
        new_top = {rel.split("/", 1)[0] for rel in wanted}
        old_top = {rel.split("/", 1)[0] for rel in current[1]} if current is not None else set()
        for name in sorted(new_top):
            link = os.path.join(target_dir, name)
            if os.path.islink(link):
                continue
            if os.path.lexists(link):
                raise VolumeError(f"cannot write {link}: a file that is not ours is in the way")
            os.symlink(os.path.join(DATA_DIR, name), link)
        for name in sorted(old_top - new_top):
            link = os.path.join(target_dir, name)
            if os.path.islink(link):
                os.unlink(link)
        keep = os.path.basename(ts_dir)
        for entry in os.listdir(target_dir):
            full = os.path.join(target_dir, entry)
            if entry.startswith("..") and entry not in (DATA_DIR, keep) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
    except OSError as exc:
        raise VolumeError(f"cannot write volume files in {target_dir}: {exc.strerror or exc}") from exc
    return True


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return len(data)


def _chown_tree(root: str, gid: int) -> None:
    """The kubelet's SetVolumeOwnership for a read-only volume: group fsGroup, g+r files, g+xs dirs."""
    for dirpath, _dirs, names in os.walk(root):
        os.lchown(dirpath, -1, gid)
        os.chmod(dirpath, stat.S_IMODE(os.lstat(dirpath).st_mode) | _FS_GROUP_DIR_MASK)
        for n in names:
            full = os.path.join(dirpath, n)
            if not os.path.islink(full):
                os.lchown(full, -1, gid)


def _set_fs_group(path: str, fs_group: int | None, *, read_only: bool) -> None:
    """fsGroup on a per-pod directory itself (an emptyDir): group-owned, setgid, group-writable."""
    if fs_group is None:
        return
    try:
        os.lchown(path, -1, fs_group)
        mask = (_FS_GROUP_RO_MASK if read_only else _FS_GROUP_RW_MASK) | _FS_GROUP_DIR_MASK
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | mask)
    except OSError as exc:
        raise VolumeError(f"cannot apply fsGroup {fs_group} to {path}: {exc.strerror or exc}") from exc
