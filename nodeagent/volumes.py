"""Prepare a pod's volumes on the host before its containers are created.

hostPath `type` checks follow the kubelet (`pkg/volume/hostpath/host_path.go`, `checkType`) word for
word, so a manifest fails here exactly when it would fail on a Kubernetes node. Unlike the kubelet we also
create a missing untyped ("") hostPath ourselves, as a directory, so the result never depends on which
mount API the engine is driven through (Docker's `Binds` create it, `Mounts` refuse).

Per-pod directories live under `<stateDir>/pods/<pod-uid>/volumes/<name>` and go away with the pod.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from nodeagent import errors, model

EMPTY_DIR_MODE = 0o777  # the kubelet's emptyDir mode: any container user may write
DIR_OR_CREATE_MODE = 0o755
FILE_OR_CREATE_MODE = 0o644

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


def prepare(state_dir: str, pod_uid: str, spec: model.PodSpec) -> dict[str, str]:
    """Create or check every volume of a pod; returns volume name -> host path for `podconfig`.

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
            paths[volume.name] = _make_dir(volume_dir(state_dir, pod_uid, volume.name), EMPTY_DIR_MODE)
        elif isinstance(
            source,
            model.ConfigMapVolumeSource
            | model.SecretVolumeSource
            | model.DownwardAPIVolumeSource
            | model.ProjectedVolumeSource,
        ):
            # TODO(configmap-volumes): write the files (atomically, kubelet-style ..data symlink swap).
            # For now the mount point exists and is empty.
            paths[volume.name] = _make_dir(volume_dir(state_dir, pod_uid, volume.name), DIR_OR_CREATE_MODE)
        # UnsupportedVolumeSource: reported as a warning by validation; podconfig refuses to mount it
    return paths


def remove_pod_dirs(state_dir: str, pod_uid: str) -> None:
    """Delete a pod's emptyDirs and other per-pod data; a pod without a directory is fine."""
    path = pod_dir(state_dir, pod_uid)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise VolumeError(f"cannot remove {path}: {exc.strerror or exc}") from exc


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
