"""Volumes and their sources (ValidateVolumes, validateVolumeSource), projected volumes included."""

from __future__ import annotations

from nodeagent.k8s import model
from nodeagent.k8s import validation as v
from nodeagent.k8s.manifests.common import (
    FILE_MODE_ERROR,
    local_non_reserved_path,
    no_backsteps,
    quantity_field,
)
from nodeagent.k8s.manifests.downward import decode_downward_file
from nodeagent.k8s.manifests.tables import (
    CONDITIONAL_WARNINGS,
    DOWNWARD_FILE_FIELDS,
    KEY_TO_PATH_FIELDS,
    UNSUPPORTED_VOLUME_TYPES,
    UNSUPPORTED_VOLUME_WARNING,
    VOLUME_FIELDS,
)
from nodeagent.k8s.validation import Raw, Walker, child, fields

_HOST_PATH_TYPES = (
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
)


def decode_volumes(w: Walker, s: Raw, spath: str) -> tuple[list[model.Volume], set[str]]:
    """Volumes, and the names of the valid ones (only those can be mounted, as in ValidateVolumes)."""
    out = []
    names: set[str] = set()
    for p, raw in w.objects(s, "volumes", spath, VOLUME_FIELDS):
        before = len(w.errors)
        name = w.str_(raw, "name", p)
        source = _volume_source(w, raw, p)
        if not name:
            w.error(child(p, "name"), v.required())
        for msg in v.dns1123_label(name) if name else []:
            w.error(child(p, "name"), v.invalid(name, msg))
        if name in names:
            w.error(child(p, "name"), v.duplicate(name))
        if len(w.errors) == before:
            names.add(name)
        declared = next((t for t in UNSUPPORTED_VOLUME_TYPES if raw.get(t) is not None), "")
        out.append(model.Volume(name, source, declared))
    return out, names


# In the order validateVolumeSource checks them: with two sources, the first of these is validated and
# every other one is reported "may not specify more than 1 volume type".
_VOLUME_TYPES = (
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
)


# The paths validateVolumeSource names those errors at, where they differ from the field name (sic).
_VOLUME_TYPE_ERROR_PATHS = {"cephfs": "cephFS", "downwardAPI": "downwarAPI"}


def _volume_source(w: Walker, raw: Raw, path: str) -> model.VolumeSource:
    present = [t for t in _VOLUME_TYPES if raw.get(t) is not None]
    if not present:  # SetDefaults_Volume: a volume without a source is an emptyDir
        return model.EmptyDirVolumeSource()
    for extra in present[1:]:
        where = child(path, _VOLUME_TYPE_ERROR_PATHS.get(extra, extra))
        w.error(where, v.forbidden("may not specify more than 1 volume type"))
    typ = present[0]
    p = child(path, typ)
    if typ in UNSUPPORTED_VOLUME_TYPES:
        w.mapping(raw[typ], p)
        w.warn(p, UNSUPPORTED_VOLUME_WARNING.format(type=typ))
        return model.EmptyDirVolumeSource()
    if typ == "hostPath":
        d = w.mapping(raw[typ], p, fields("path", "type")) or {}
        host_path = w.str_(d, "path", p)
        htype = w.str_(d, "type", p)
        if not host_path:
            w.error(child(p, "path"), v.required())
        else:
            no_backsteps(w, host_path, child(p, "path"))
            if htype not in _HOST_PATH_TYPES:
                w.error(child(p, "type"), v.unsupported(htype, _HOST_PATH_TYPES))
        return model.HostPathVolumeSource(host_path, htype)
    if typ == "emptyDir":
        d = w.mapping(raw[typ], p, fields("medium", "sizeLimit")) or {}
        medium = w.str_(d, "medium", p)
        if medium not in ("", "Memory"):
            w.warn(child(p, "medium"), CONDITIONAL_WARNINGS['emptyDir.medium other than "" or Memory'])
            medium = ""
        size = quantity_field(w, d, "sizeLimit", p)
        if size is not None and size.value < 0:
            w.error(child(p, "sizeLimit"), v.forbidden("SizeLimit field must be a valid resource quantity"))
        return model.EmptyDirVolumeSource(medium, size)
    if typ in ("configMap", "secret"):
        name_field = "name" if typ == "configMap" else "secretName"
        d = w.mapping(raw[typ], p, fields(name_field, "items", "defaultMode", "optional")) or {}
        name = w.str_(d, name_field, p)
        if not name:
            w.error(child(p, name_field), v.required())
        mode = _mode(w, d, "defaultMode", p, 0o644)
        items = _key_to_paths(w, d, p)
        optional = w.bool_(d, "optional", p)
        if typ == "configMap":
            return model.ConfigMapVolumeSource(name, items, mode, optional)
        return model.SecretVolumeSource(name, items, mode, optional)
    if typ == "downwardAPI":
        d = w.mapping(raw[typ], p, fields("items", "defaultMode")) or {}
        mode = _mode(w, d, "defaultMode", p, 0o644)
        files = tuple(
            decode_downward_file(w, f, fp) for fp, f in w.objects(d, "items", p, DOWNWARD_FILE_FIELDS)
        )
        return model.DownwardAPIVolumeSource(files, mode)
    return _projected(w, raw[typ], p)


def _mode(w: Walker, d: Raw, name: str, path: str, default: int) -> int:
    mode = w.opt_int(d, name, path)
    if mode is None:
        return default
    if not 0 <= mode <= 0o777:
        w.error(child(path, name), v.invalid(mode, FILE_MODE_ERROR))
    return mode


def _key_to_paths(w: Walker, d: Raw, path: str) -> tuple[model.KeyToPath, ...]:
    out = []
    for p, item in w.objects(d, "items", path, KEY_TO_PATH_FIELDS):
        key = w.str_(item, "key", p)
        target = w.str_(item, "path", p)
        if not key:
            w.error(child(p, "key"), v.required())
        if not target:
            w.error(child(p, "path"), v.required())
        local_non_reserved_path(w, target, child(p, "path"))
        mode = w.opt_int(item, "mode", p)
        if mode is not None and not 0 <= mode <= 0o777:
            w.error(child(p, "mode"), v.invalid(mode, FILE_MODE_ERROR))
        out.append(model.KeyToPath(key, target, mode))
    return tuple(out)


def _projected(w: Walker, raw: object, p: str) -> model.ProjectedVolumeSource:
    d = w.mapping(raw, p, fields("sources", "defaultMode")) or {}
    mode = _mode(w, d, "defaultMode", p, 0o644)
    sources = []
    all_paths: set[str] = set()

    def unique(target: str, what: str) -> None:
        if target in all_paths:
            w.error(p, v.invalid(what, "conflicting duplicate paths"))
        all_paths.add(target)

    known = fields(
        "secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle", "podCertificate"
    )
    for sp, src in w.objects(d, "sources", p, known):
        present = [k for k in known if src.get(k) is not None]
        if len(present) > 1:
            w.error(sp, v.forbidden("may not specify more than 1 volume type"))
        proj = model.VolumeProjection()
        for kind in ("secret", "configMap"):
            kp = child(sp, kind)
            s = w.obj(src, kind, sp, fields("name", "items", "optional"))
            if s is None:
                continue
            name = w.str_(s, "name", kp)
            if not name:
                w.error(child(kp, "name"), v.required())
            items = _key_to_paths(w, s, kp)
            for item in items:
                if item.path:
                    unique(item.path, name)
            optional = w.bool_(s, "optional", kp)
            if kind == "secret":
                proj = model.VolumeProjection(secret=model.SecretVolumeSource(name, items, mode, optional))
            else:
                proj = model.VolumeProjection(
                    config_map=model.ConfigMapVolumeSource(name, items, mode, optional)
                )
        dapi = w.obj(src, "downwardAPI", sp, fields("items"))
        if dapi is not None:
            dp = child(sp, "downwardAPI")
            files = tuple(
                decode_downward_file(w, f, fp) for fp, f in w.objects(dapi, "items", dp, DOWNWARD_FILE_FIELDS)
            )
            for file in files:
                if file.path:
                    unique(file.path, file.path)
            proj = model.VolumeProjection(downward_api=model.DownwardAPIVolumeSource(files, mode))
        token = w.obj(src, "serviceAccountToken", sp, fields("audience", "expirationSeconds", "path"))
        if token is not None:
            tp = child(sp, "serviceAccountToken")
            expiration = w.int_(token, "expirationSeconds", tp, 3600)
            if expiration < 600:
                w.error(
                    child(tp, "expirationSeconds"),
                    v.invalid(expiration, "may not specify a duration less than 10 minutes"),
                )
            if expiration > 1 << 32:
                w.error(
                    child(tp, "expirationSeconds"),
                    v.invalid(expiration, "may not specify a duration larger than 2^32 seconds"),
                )
            target = w.str_(token, "path", tp)
            if not target:
                w.error(child(p, "path"), v.required())
            else:
                local_non_reserved_path(w, target, child(p, "path"))
            w.warn(tp, CONDITIONAL_WARNINGS["projected serviceAccountToken"])
            proj = model.VolumeProjection(
                service_account_token=model.ServiceAccountTokenProjection(
                    target, w.str_(token, "audience", tp), expiration
                )
            )
        for kind in ("clusterTrustBundle", "podCertificate"):
            if w.obj(src, kind, sp) is not None:
                w.warn(child(sp, kind), CONDITIONAL_WARNINGS["projected clusterTrustBundle / podCertificate"])
        sources.append(proj)
    return model.ProjectedVolumeSource(tuple(sources), mode)
