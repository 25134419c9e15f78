"""YAML/JSON manifests → defaulted model objects, validated the way the Kubernetes API server does.

This is the only module that walks raw dicts. Everything it returns is a frozen `model` object with the
API server's defaults applied (pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go), or a list of
`model.Problem`s located by document index and field path, worded like Kubernetes' own errors
(pkg/apis/core/validation, pkg/apis/apps/validation). No input makes it raise: wrong YAML types are
errors at their path, and a document with any error yields no object, so callers keep the previous good
version of exactly that document (`LoadResult.failed`).

Kinds: apps/v1 DaemonSet, v1 Pod, v1 ConfigMap, v1 Secret, and `kind: List` holding them. Any other kind
or apiVersion is an error (path `kind` or `apiVersion`). The DaemonSet corpus
(/work/shared/corpus/daemonsets) holds only DaemonSets and ConfigMaps, so there was no reason to tolerate
RBAC or ServiceAccount documents; a file that mixes them in gets an error for those documents only, and
its DaemonSet still loads.

Warnings (severity "warning") name valid fields nodeagent will not honour, and why: see the tables
`POD_SPEC_WARNINGS`, `CONTAINER_WARNINGS`, `SECURITY_CONTEXT_WARNINGS`, `CONDITIONAL_WARNINGS`,
`UNSUPPORTED_VOLUME_TYPES` and `ANNOTATION_WARNINGS` (the README documents them from here). Fields not in
the Kubernetes schema are warned about as `unknown field`, as kubectl's strict decoding does.

Deliberate differences from the API server, all in the direction of more precise reports:
subPath/subPathExpr/mountPropagation and downward-API item errors carry the element index Kubernetes
leaves out; `terminationGracePeriodSeconds` must not be negative; `rollingUpdate` under `type: OnDelete`
is a warning. A Gt/Lt node-affinity value that is not an integer is accepted, as Kubernetes does, with a
warning that its term can never match (the scheduler fails such a term).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

import yaml

from nodeagent.k8s import model, quantity
from nodeagent.k8s import validation as v
from nodeagent.k8s.validation import Raw, Walker, child, fields

SUPPORTED_KINDS: Mapping[str, str] = {
    "ConfigMap": "v1",
    "DaemonSet": "apps/v1",
    "Pod": "v1",
    "Secret": "v1",
}

# --- warnings: valid Kubernetes fields that nodeagent does not honour --------------------------

_NO_API_SERVER = "no API server on this node; no token is mounted"
_NO_SCHEDULER = "no scheduler or preemption on a lone node; ignored"

POD_SPEC_WARNINGS: Mapping[str, str] = {
    "serviceAccountName": _NO_API_SERVER,
    "serviceAccount": "deprecated alias of serviceAccountName; " + _NO_API_SERVER,
    "priorityClassName": _NO_SCHEDULER,
    "priority": _NO_SCHEDULER,
    "preemptionPolicy": _NO_SCHEDULER,
    "runtimeClassName": "Docker's default runtime is used",
    "topologySpreadConstraints": "one node: nothing to spread over; ignored",
    "imagePullSecrets": "images are pulled with the Docker daemon's own credentials (docker login)",
    "readinessGates": "no controller sets custom pod conditions; ignored",
    "enableServiceLinks": "no Services on this node; no service environment variables are set",
    "overhead": "no RuntimeClass overhead accounting; ignored",
    "schedulingGates": "no scheduler; the pod is started as soon as it should run",
    "resourceClaims": "dynamic resource allocation is not available; ignored",
    "resources": "pod-level resources are not applied; set them per container",
    "hostUsers": "user namespaces are not configured per pod; ignored",
    "setHostnameAsFQDN": "no cluster domain; the hostname is not qualified",
    "ephemeralContainers": "ephemeral containers are added by the API server only; ignored",
    "os": "pods always run on this Linux host; ignored",
}

CONTAINER_WARNINGS: Mapping[str, str] = {
    "terminationMessagePath": "termination messages are not collected; ignored",
    "terminationMessagePolicy": "termination messages are not collected; ignored",
    "resizePolicy": "in-place resize is not supported; ignored",
    "volumeDevices": "raw block volumes (PersistentVolumeClaims) are not available; ignored",
    "stdinOnce": "containers are never attached to; ignored",
}

SECURITY_CONTEXT_WARNINGS: Mapping[str, str] = {
    "seLinuxOptions": "SELinux labels are not applied; ignored",
    "windowsOptions": "Windows-only field; ignored on this Linux host",
    "appArmorProfile": "AppArmor profiles are not applied; Docker's default profile is used",
    "fsGroupChangePolicy": "volume ownership is not changed; ignored",
    "supplementalGroupsPolicy": "ignored; supplementalGroups are added to the image's groups",
    "seLinuxChangePolicy": "SELinux labels are not applied; ignored",
}

CONDITIONAL_WARNINGS: Mapping[str, str] = {
    "dnsPolicy: ClusterFirst": "no cluster DNS; the host's resolver is used",
    "dnsPolicy: ClusterFirstWithHostNet": "no cluster DNS; the host's resolver is used",
    "dnsConfig.options": "resolver options are not applied; ignored",
    "schedulerName (not default-scheduler)": "no scheduler; the agent places the pod itself",
    "affinity.podAffinity": "one node: no other pods to place next to; ignored",
    "affinity.podAntiAffinity": "one node: no other pods to keep away from; ignored",
    "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution": (
        "one node: nothing to prefer; ignored"
    ),
    "projected serviceAccountToken": _NO_API_SERVER,
    "projected clusterTrustBundle / podCertificate": "no API server on this node; not projected",
    'emptyDir.medium other than "" or Memory': "a disk-backed directory is used instead",
    "volumeMounts.recursiveReadOnly": "read-only mounts are not made recursively read-only",
    "resources.claims": "dynamic resource allocation is not available; ignored",
    "rollingUpdate with type OnDelete": "ignored when type is OnDelete",
    "Secret type kubernetes.io/service-account-token": _NO_API_SERVER,
}

UNSUPPORTED_VOLUME_TYPES: tuple[str, ...] = (
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)
UNSUPPORTED_VOLUME_WARNING = "volume type {type} is not available on this node; an empty directory is used"

ANNOTATION_WARNINGS: Mapping[str, str] = {
    "seccomp.security.alpha.kubernetes.io/pod": "legacy seccomp annotation is ignored; use securityContext",
    "container.seccomp.security.alpha.kubernetes.io/": (
        "legacy seccomp annotation is ignored; use securityContext.seccompProfile"
    ),
    "container.apparmor.security.beta.kubernetes.io/": "AppArmor annotations are not applied; ignored",
}

# --- the Kubernetes schema, as far as nodeagent reads it (unknown fields are warned about) --------

META_FIELDS = fields(
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
POD_SPEC_FIELDS = fields(
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resources",
)
CONTAINER_FIELDS = fields(
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
)
PORT_FIELDS = fields("name", "hostPort", "containerPort", "protocol", "hostIP")
ENV_FIELDS = fields("name", "value", "valueFrom")
ENV_SOURCE_FIELDS = fields("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
FIELD_REF_FIELDS = fields("apiVersion", "fieldPath")
RESOURCE_REF_FIELDS = fields("containerName", "resource", "divisor")
KEY_REF_FIELDS = fields("name", "key", "optional")
ENV_FROM_FIELDS = fields("prefix", "configMapRef", "secretRef")
LOCAL_REF_FIELDS = fields("name", "optional")
RESOURCES_FIELDS = fields("limits", "requests", "claims")
MOUNT_FIELDS = fields(
    "name", "readOnly", "recursiveReadOnly", "mountPath", "subPath", "mountPropagation", "subPathExpr"
)
PROBE_FIELDS = fields(
    "exec",
    "httpGet",
    "tcpSocket",
    "grpc",
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
)
LIFECYCLE_FIELDS = fields("postStart", "preStop", "stopSignal")
HANDLER_FIELDS = fields("exec", "httpGet", "tcpSocket", "sleep")
HTTP_GET_FIELDS = fields("path", "port", "host", "scheme", "httpHeaders")
SECURITY_CONTEXT_FIELDS = fields(
    "capabilities",
    "privileged",
    "seLinuxOptions",
    "windowsOptions",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "procMount",
    "seccompProfile",
    "appArmorProfile",
)
POD_SECURITY_CONTEXT_FIELDS = fields(
    "seLinuxOptions",
    "windowsOptions",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "supplementalGroups",
    "supplementalGroupsPolicy",
    "fsGroup",
    "sysctls",
    "fsGroupChangePolicy",
    "seccompProfile",
    "appArmorProfile",
    "seLinuxChangePolicy",
)
VOLUME_FIELDS = fields(
    "name",
    "hostPath",
    "emptyDir",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    *UNSUPPORTED_VOLUME_TYPES,
)
KEY_TO_PATH_FIELDS = fields("key", "path", "mode")
DOWNWARD_FILE_FIELDS = fields("path", "fieldRef", "resourceFieldRef", "mode")
TOLERATION_FIELDS = fields("key", "operator", "value", "effect", "tolerationSeconds")
NODE_SELECTOR_TERM_FIELDS = fields("matchExpressions", "matchFields")
REQUIREMENT_FIELDS = fields("key", "operator", "values")
LABEL_SELECTOR_FIELDS = fields("matchLabels", "matchExpressions")

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
_ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
# every path ConvertDownwardAPIFieldLabel knows; others fail conversion before the allowed-list check
_KNOWN_FIELD_PATHS = frozenset(
    {
        *_ENV_FIELD_PATHS,
        *_VOLUME_FIELD_PATHS,
        "spec.restartPolicy",
        "spec.schedulerName",
        "status.phase",
    }
)
_RESOURCE_FIELD_PATHS = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)
_EMPTY_KEY_OPERATOR = (
    'operator must be Exists when `key` is empty, which means "match all values and all keys"'
)
_BYTE_DIVISOR_ERROR = (
    "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported "
    "with the {what} resource"
)
_ONE_ENV_SOURCE = "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
_FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"
_NONNEGATIVE = "must be greater than or equal to 0"
_INT32_MAX = 2147483647
_TOTAL_ANNOTATION_SIZE = 256 * 1024
_MAX_SECRET_SIZE = 1024 * 1024


# === loading ===================================================================================


def is_manifest_filename(name: str) -> bool:
    """`.yaml`, `.yml` or `.json`, and not a dot-file or an editor's backup, swap or lock file."""
    base = os.path.basename(name)
    if not base or base.startswith(".") or base.endswith("~"):
        return False
    if base.startswith("#") and base.endswith("#"):
        return False
    return base.lower().endswith((".yaml", ".yml", ".json"))


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.1 like Kubernetes' decoder, but timestamps and `=` stay strings (they are never dates).

    On libyaml's parser when PyYAML has it: about ten times faster, which is most of a no-op
    `nodeagent sync` over fifty manifests. libyaml caps nesting at 1000 levels (a syntax error)."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
LOADER: type[yaml.SafeLoader] = _Loader  # the dialect, for `serve` (which keeps raw documents)

# At most this many nodes may be reached through aliases in one document, beyond the nodes written
# out. Real manifests use a handful of anchors; an "alias bomb" (nested anchors, each aliased ten times)
# expands nine lines into billions of nodes when the document is walked or re-serialised.
MAX_ALIAS_EXPANSION = 10_000


class DocumentBoundError(yaml.YAMLError):
    """A document that is refused before it is constructed: excessive aliasing, a recursive alias,
    or a duplicate mapping key. `path` is the field path where it was found."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _key_text(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _check_node_graph(root: yaml.Node, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Refuse a composed document whose aliases expand too far, that aliases itself, or that repeats a
    mapping key (kubectl's strict decoding rejects duplicates; PyYAML would let the last one win).

    Linear in the nodes written out: each node is walked once and an alias use adds its (memoised)
    expanded size without being walked again.
    """
    size: dict[int, int] = {}  # id(node) -> nodes in its full expansion
    active: set[int] = set()  # nodes on the current path (an alias to one of them is a cycle)
    expanded = 0  # nodes reached through aliases
    # iterative post-order walk: (node, path, children done?)
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, done = stack.pop()
        nid = id(node)
        if done:
            children = _children(node, path)
            size[nid] = 1 + sum(size[id(c)] for c, _ in children)
            active.discard(nid)
            continue
        if nid in size:  # a second use: an alias
            expanded += size[nid]
            if expanded > limit:
                raise DocumentBoundError(
                    path,
                    f"excessive YAML aliasing: aliases expand to more than {limit} nodes (an alias bomb?)",
                )
            continue
        if nid in active:
            raise DocumentBoundError(path, "recursive YAML alias: a node contains an alias to itself")
        active.add(nid)
        stack.append((node, path, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, _ in node.value:
                text = _key_text(k)
                if text is None or text == "<<":
                    continue
                if text in seen:
                    line = k.start_mark.line + 1 if k.start_mark is not None else 0
                    raise DocumentBoundError(
                        _join_path(path, text),
                        f"duplicate key {json.dumps(text)} (line {line}; also on line {seen[text]})",
                    )
                seen[text] = k.start_mark.line + 1 if k.start_mark is not None else 0
        for sub, sub_path in reversed(_children(node, path)):
            stack.append((sub, sub_path, False))


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(c, f"{path}[{i}]") for i, c in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, str]] = []
        for k, val in node.value:
            name = _key_text(k)
            out.append((k, path))
            out.append((val, _join_path(path, name if name is not None else "<key>")))
        return out
    return []


def _join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bounded_construct_document(self: yaml.SafeLoader, node: yaml.Node) -> object:
    _check_node_graph(node)
    return yaml.SafeLoader.construct_document(self, node)


_Loader.construct_document = _bounded_construct_document


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json.loads hook: a repeated key sends the text to the YAML reader, which names key and path."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _parse_stream(text: str, source: str) -> tuple[list[object], model.Problem | None]:
    """All documents of a YAML (or JSON) stream, and the syntax error that stopped it, if any."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [json.loads(text, object_pairs_hook=_no_duplicate_keys)], None
        except (ValueError, RecursionError):
            pass  # not plain JSON: YAML either reads it or explains what is wrong, with a position
    docs: list[object] = []
    try:
        for doc in yaml.load_all(text, Loader=LOADER):
            docs.append(doc)
    except DocumentBoundError as exc:
        return docs, model.Problem(source, len(docs), "", "", exc.path, exc.message)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or "invalid YAML"
        return docs, model.Problem(source, len(docs), "", "", "", f"YAML syntax error at {where}{what}")
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        return docs, model.Problem(source, len(docs), "", "", "", f"YAML syntax error: {exc}")
    return docs, None


def load_text(text: str | bytes, source: str) -> model.LoadResult:
    """Load a multi-document YAML or JSON body (a file or an HTTP response) named `source`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = model.Problem(
                source, None, "", "", "", f"not UTF-8 text: {exc.reason} at byte {exc.start}"
            )
            return model.LoadResult(errors=(problem,), failed=((source, None),))
    elif text.startswith("\ufeff"):
        text = text[1:]
    docs, syntax_error = _parse_stream(text, source)
    documents: list[model.Document] = []
    errors: list[model.Problem] = []
    warnings: list[model.Problem] = []
    failed: list[tuple[str, int | None]] = []
    for i, raw in enumerate(docs):
        objs, errs, warns = _parse_document(raw, source, i)
        errors.extend(errs)
        warnings.extend(warns)
        if errs:
            failed.append((source, i))
        else:
            documents.extend(model.Document(obj, source, i) for obj in objs)
    if syntax_error is not None:
        # The stream is unreadable past the error: the whole file keeps its previous good version.
        return model.LoadResult(
            errors=(*errors, syntax_error), warnings=tuple(warnings), failed=((source, None),)
        )
    return model.LoadResult(tuple(documents), tuple(errors), tuple(warnings), tuple(failed))


def _parse_document(
    raw: object, file: str, index: int
) -> tuple[list[model.KubeObject], list[model.Problem], list[model.Problem]]:
    """One YAML document: nothing (empty), one object, or the items of a `kind: List`."""
    if raw is None:
        return [], [], []
    if isinstance(raw, dict) and raw.get("kind") == "List":
        w = Walker()
        d = w.mapping(raw, "", fields("apiVersion", "kind", "metadata", "items"))
        items = w.items(d or {}, "items", "")
        errs, warns = w.problems(file, index, "List", "")
        objs: list[model.KubeObject] = []
        for path, item in items:
            obj, e, wn = _parse(item, file, index, path)
            errs.extend(e)
            warns.extend(wn)
            if obj is not None:
                objs.append(obj)
        return ([] if errs else objs), errs, warns
    obj, errs, warns = _parse(raw, file, index, "")
    return ([obj] if obj is not None else []), errs, warns


MAX_FILE = 16 * 1024 * 1024  # a manifest file larger than this is refused (as an HTTP bundle is)


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, socket or device): never opened for reading."""


def read_manifest_file(path: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file (a symlink to one is fine), without ever blocking on a FIFO.

    The path is checked before it is opened (a FIFO would block `open`, a device could have side
    effects), opened with O_NONBLOCK, and checked again on the open descriptor (it may have been
    swapped in between). A file larger than `limit` is refused, not read.
    """
    limit = MAX_FILE if limit is None else limit
    kinds = {
        stat.S_IFIFO: "a FIFO",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFDIR: "a directory",
    }

    def check(st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            what = kinds.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise NotRegularFile(0, f"not a regular file ({what}); only regular files are read")
        if st.st_size > limit:
            raise NotRegularFile(0, f"file larger than {limit} bytes; refused")

    check(os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        check(os.fstat(fd))
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise NotRegularFile(0, f"file larger than {limit} bytes; refused")
    finally:
        os.close(fd)
    return b"".join(chunks)


def load_file(path: str) -> model.LoadResult:
    """Load one file; an unreadable file is an error naming it, and keeps its previous version."""
    try:
        data = read_manifest_file(path)
    except OSError as exc:
        return _unreadable(path, exc)
    return load_text(data, path)


def load_paths(paths: Sequence[str]) -> model.LoadResult:
    """Load files and directories (not recursively: only a directory's own manifest files, sorted)."""
    results: list[model.LoadResult] = []
    for path in paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                results.append(_unreadable(path, exc))
                continue
            for name in names:
                full = os.path.join(path, name)
                if is_manifest_filename(name) and not os.path.isdir(full):  # a FIFO is an error
                    results.append(load_file(full))
        else:
            results.append(load_file(path))
    return model.LoadResult(
        documents=tuple(d for r in results for d in r.documents),
        errors=tuple(p for r in results for p in r.errors),
        warnings=tuple(p for r in results for p in r.warnings),
        failed=tuple(f for r in results for f in r.failed),
    )


def _unreadable(path: str, exc: OSError) -> model.LoadResult:
    reason = exc.strerror or str(exc)
    problem = model.Problem(path, None, "", "", "", f"cannot read {path}: {reason}")
    return model.LoadResult(errors=(problem,), failed=((path, None),))


# === objects ===================================================================================


def parse_object(
    raw: object, file: str, index: int
) -> tuple[model.KubeObject | None, list[model.Problem], list[model.Problem]]:
    """One raw object → (object or None, errors, warnings); any error means no object."""
    return _parse(raw, file, index, "")


def _parse(
    raw: object, file: str, index: int, prefix: str
) -> tuple[model.KubeObject | None, list[model.Problem], list[model.Problem]]:
    w = Walker(prefix)
    try:
        kind, name, obj = _dispatch(w, raw)
    except RecursionError:  # a self-referencing YAML alias; nothing else can get here
        kind, name, obj = "", "", None
        w.error("", "document is nested too deeply")
    errors, warnings = w.problems(file, index, kind, name)
    return (None if errors else obj), errors, warnings


def _dispatch(w: Walker, raw: object) -> tuple[str, str, model.KubeObject | None]:
    d = w.mapping(raw, "")
    if d is None:
        if raw is None:
            w.error("", v.required("a document must be an object"))
        return "", "", None
    meta_raw = d.get("metadata")
    raw_name = meta_raw.get("name") if isinstance(meta_raw, dict) else None
    name = raw_name if isinstance(raw_name, str) else ""
    kind = w.opt_str(d, "kind", "")
    api = w.opt_str(d, "apiVersion", "")
    if not kind:
        if kind == "" or d.get("kind") is None:  # absent or empty; a wrong type is already reported
            w.error("kind", v.required())
        return "", name, None
    if kind not in SUPPORTED_KINDS:
        w.error("kind", v.unsupported(kind, sorted(SUPPORTED_KINDS)))
        return kind, name, None
    want = SUPPORTED_KINDS[kind]
    if not api:
        w.error("apiVersion", v.required())
        return kind, name, None
    if api != want:
        w.error("apiVersion", v.unsupported(api, [want]))
        return kind, name, None
    allowed = {
        "DaemonSet": fields("apiVersion", "kind", "metadata", "spec", "status"),
        "Pod": fields("apiVersion", "kind", "metadata", "spec", "status"),
        "ConfigMap": fields("apiVersion", "kind", "metadata", "data", "binaryData", "immutable"),
        "Secret": fields("apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"),
    }[kind]
    for k in d:
        if k not in allowed:
            w.warn(k, f'unknown field "{k}"; ignored')
    if kind == "DaemonSet":
        return kind, name, _daemonset(w, d)
    if kind == "Pod":
        return kind, name, _pod(w, d)
    if kind == "ConfigMap":
        return kind, name, _configmap(w, d)
    return kind, name, _secret(w, d)


# --- metadata ----------------------------------------------------------------------------------


def _object_meta(w: Walker, d: Raw) -> model.ObjectMeta:
    m = w.obj(d, "metadata", "", META_FIELDS) or {}
    name = w.str_(m, "name", "metadata")
    namespace = w.str_(m, "namespace", "metadata")
    if not name:
        w.error("metadata.name", v.required("name or generateName is required"))
    else:
        for msg in v.dns1123_subdomain(name):
            w.error("metadata.name", v.invalid(name, msg))
    for msg in v.dns1123_label(namespace) if namespace else []:
        w.error("metadata.namespace", v.invalid(namespace, msg))
    labels, annotations = _labels_and_annotations(w, m, "metadata")
    return model.ObjectMeta(
        name=name,
        namespace=namespace or "default",
        labels=labels,
        annotations=annotations,
        uid=w.str_(m, "uid", "metadata"),
    )


def _labels_and_annotations(w: Walker, m: Raw, path: str) -> tuple[dict[str, str], dict[str, str]]:
    labels = w.str_map(m, "labels", path)
    validate_labels(w, labels, child(path, "labels"))
    annotations = w.str_map(m, "annotations", path)
    apath = child(path, "annotations")
    size = 0
    for k, val in annotations.items():
        for msg in v.qualified_name(k.lower()):
            w.error(apath, v.invalid(k, msg))
        size += len(k) + len(val)
    if size > _TOTAL_ANNOTATION_SIZE:
        w.error(apath, v.too_long(_TOTAL_ANNOTATION_SIZE))
    return labels, annotations


def validate_labels(w: Walker, labels: Mapping[str, str], path: str) -> None:
    """ValidateLabels: errors are reported at the map's path, naming the bad key or value."""
    for k, val in labels.items():
        for msg in v.qualified_name(k):
            w.error(path, v.invalid(k, msg))
        for msg in v.label_value(val):
            w.error(path, v.invalid(val, msg))


def _annotation_warnings(w: Walker, annotations: Mapping[str, str], path: str) -> None:
    for k in annotations:
        for prefix, reason in ANNOTATION_WARNINGS.items():
            if k == prefix or (prefix.endswith("/") and k.startswith(prefix)):
                w.warn(v.key(path, k), reason)


# --- label selectors -----------------------------------------------------------------------------


def _label_selector(w: Walker, raw: object, path: str) -> model.LabelSelector:
    d = w.mapping(raw, path, LABEL_SELECTOR_FIELDS) or {}
    match_labels = w.str_map(d, "matchLabels", path)
    validate_labels(w, match_labels, child(path, "matchLabels"))
    exprs = []
    for p, e in w.objects(d, "matchExpressions", path, REQUIREMENT_FIELDS):
        key = w.str_(e, "key", p)
        op = w.str_(e, "operator", p)
        values = w.str_list(e, "values", p)
        if op in ("In", "NotIn"):
            if not values:
                w.error(
                    child(p, "values"), v.required("must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                w.error(
                    child(p, "values"),
                    v.forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
                )
        else:
            w.error(child(p, "operator"), v.invalid(op, "not a valid selector operator"))
        for msg in v.qualified_name(key):
            w.error(child(p, "key"), v.invalid(key, msg))
        for i, val in enumerate(values):
            for msg in v.label_value(val):
                w.error(v.index(child(p, "values"), i), v.invalid(val, msg))
        exprs.append(model.LabelSelectorRequirement(key, op, values))
    return model.LabelSelector(match_labels, tuple(exprs))


def selector_matches(selector: model.LabelSelector, labels: Mapping[str, str]) -> bool:
    """labels.Selector.Matches for a LabelSelector (an empty selector matches everything)."""
    for k, val in selector.match_labels.items():
        if labels.get(k) != val:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def _selector_json(selector: model.LabelSelector) -> dict[str, object]:
    out: dict[str, object] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        out["matchExpressions"] = [
            {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
            for r in selector.match_expressions
        ]
    return out


def selector_changed(old: model.DaemonSet, new: model.DaemonSet) -> model.Problem | None:
    """A DaemonSet's selector is immutable once seen; the Problem has no file (the caller adds it)."""
    if old.spec.selector == new.spec.selector:
        return None
    return model.Problem(
        file="",
        document=None,
        kind="DaemonSet",
        name=new.metadata.name,
        path="spec.selector",
        message=v.invalid(_selector_json(new.spec.selector), "field is immutable"),
    )


# --- DaemonSet and Pod -------------------------------------------------------------------------

_DS_SPEC_FIELDS = fields(
    "selector", "template", "updateStrategy", "minReadySeconds", "revisionHistoryLimit", "templateGeneration"
)


def _daemonset(w: Walker, d: Raw) -> model.DaemonSet:
    meta = _object_meta(w, d)
    spec = w.obj(d, "spec", "", _DS_SPEC_FIELDS) or {}
    if spec.get("templateGeneration") is not None:
        w.warn("spec.templateGeneration", "extensions/v1beta1 field; ignored")
    if spec.get("selector") is None:
        w.error("spec.selector", v.required())
        selector = model.LabelSelector()
        nothing = True  # a nil selector selects nothing
    else:
        selector = _label_selector(w, spec["selector"], "spec.selector")
        nothing = False
        if not selector.match_labels and not selector.match_expressions:
            w.error("spec.selector", v.invalid({}, "empty selector is invalid for daemonset"))
    template = _pod_template(w, spec, "spec")
    labels = template.metadata.labels
    if nothing or not selector_matches(selector, labels):
        w.error(
            "spec.template.metadata.labels",
            v.invalid(dict(labels), "`selector` does not match template `labels`"),
        )
    tspec = w.mapping(spec.get("template"), "spec.template") or {}
    pspec = w.mapping(tspec.get("spec"), "spec.template.spec") or {}
    if template.spec.restart_policy != "Always":
        w.error("spec.template.spec.restartPolicy", v.unsupported(template.spec.restart_policy, ["Always"]))
    if pspec.get("activeDeadlineSeconds") is not None:
        w.error(
            "spec.template.spec.activeDeadlineSeconds",
            v.forbidden("activeDeadlineSeconds in DaemonSet is not Supported"),
        )
    min_ready = w.int_(spec, "minReadySeconds", "spec", 0)
    if min_ready < 0:
        w.error("spec.minReadySeconds", v.invalid(min_ready, _NONNEGATIVE))
    history = w.int_(spec, "revisionHistoryLimit", "spec", 10)
    if history < 0:
        w.error("spec.revisionHistoryLimit", v.invalid(history, _NONNEGATIVE))
    return model.DaemonSet(
        metadata=meta,
        spec=model.DaemonSetSpec(
            selector=selector,
            template=template,
            update_strategy=_update_strategy(w, spec),
            min_ready_seconds=min_ready,
            revision_history_limit=history,
        ),
    )


def _int_or_percent_value(value: int | str) -> int:
    if isinstance(value, int):
        return value
    digits = value[:-1] if value.endswith("%") else value
    number = v.small_int(digits)
    return 0 if number is None or digits.startswith(("-", "+")) else number


def _update_strategy(w: Walker, spec: Raw) -> model.DaemonSetUpdateStrategy:
    path = "spec.updateStrategy"
    us = w.obj(spec, "updateStrategy", "spec", fields("type", "rollingUpdate")) or {}
    typ = w.str_(us, "type", path) or "RollingUpdate"
    ru = w.obj(us, "rollingUpdate", path, fields("maxUnavailable", "maxSurge"))
    rpath = child(path, "rollingUpdate")
    if typ == "OnDelete":
        if ru is not None:
            w.warn(rpath, CONDITIONAL_WARNINGS["rollingUpdate with type OnDelete"])
        return model.DaemonSetUpdateStrategy(type="OnDelete", rolling_update=None)
    if typ != "RollingUpdate":
        w.error(path, v.unsupported(typ, ["RollingUpdate", "OnDelete"]))
        return model.DaemonSetUpdateStrategy(type=typ, rolling_update=None)
    ru = ru or {}
    max_unavailable = w.int_or_str(ru, "maxUnavailable", rpath)
    max_surge = w.int_or_str(ru, "maxSurge", rpath)
    mu: int | str = 1 if max_unavailable is None else max_unavailable
    ms: int | str = 0 if max_surge is None else max_surge
    for name, val in (("maxUnavailable", mu), ("maxSurge", ms)):
        p = child(rpath, name)
        if isinstance(val, str):
            for msg in v.percent(val):
                w.error(p, v.invalid(val, msg))
            if not v.percent(val) and _int_or_percent_value(val) > 100:
                w.error(p, v.invalid(val, "must not be greater than 100%"))
        elif val < 0:
            w.error(p, v.invalid(val, _NONNEGATIVE))
    has_unavailable = _int_or_percent_value(mu) != 0
    has_surge = _int_or_percent_value(ms) != 0
    if has_unavailable and has_surge:
        w.error(child(rpath, "maxSurge"), v.invalid(ms, "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        w.error(child(rpath, "maxUnavailable"), v.required("cannot be 0 when maxSurge is 0"))
    return model.DaemonSetUpdateStrategy(
        type="RollingUpdate", rolling_update=model.RollingUpdateDaemonSet(max_unavailable=mu, max_surge=ms)
    )


def _pod_template(w: Walker, spec: Raw, path: str) -> model.PodTemplateSpec:
    tpath = child(path, "template")
    t = w.obj(spec, "template", path, fields("metadata", "spec"))
    if t is None:
        w.error(tpath, v.required())
        t = {}
    m = w.obj(t, "metadata", tpath, META_FIELDS) or {}
    mpath = child(tpath, "metadata")
    labels, annotations = _labels_and_annotations(w, m, mpath)
    _annotation_warnings(w, annotations, child(mpath, "annotations"))
    meta = model.ObjectMeta(
        name=w.str_(m, "name", mpath),
        namespace=w.str_(m, "namespace", mpath) or "default",
        labels=labels,
        annotations=annotations,
    )
    pod_spec = _pod_spec(w, t.get("spec"), child(tpath, "spec"), is_pod=False)
    return model.PodTemplateSpec(metadata=meta, spec=pod_spec)


def _pod(w: Walker, d: Raw) -> model.Pod:
    meta = _object_meta(w, d)
    _annotation_warnings(w, meta.annotations, "metadata.annotations")
    return model.Pod(metadata=meta, spec=_pod_spec(w, d.get("spec"), "spec", is_pod=True))


# --- PodSpec -----------------------------------------------------------------------------------


def _pod_spec(w: Walker, raw: object, path: str, *, is_pod: bool) -> model.PodSpec:
    if raw is None:
        w.error(path, v.required())
    s = w.mapping(raw, path, POD_SPEC_FIELDS) or {}
    for name, reason in POD_SPEC_WARNINGS.items():
        if s.get(name) is not None:
            w.warn(child(path, name), reason)

    grace = w.int_(s, "terminationGracePeriodSeconds", path, 30)
    if grace < 0:
        w.error(child(path, "terminationGracePeriodSeconds"), v.invalid(grace, _NONNEGATIVE))
    host_network = w.bool_(s, "hostNetwork", path)
    privileged_names: set[str] = set()
    volumes, volume_names = _volumes(w, s, path)
    containers = _containers(w, s, "containers", path, volume_names, grace, host_network, privileged_names)
    init_containers = _containers(
        w, s, "initContainers", path, volume_names, grace, host_network, privileged_names
    )
    _check_names_and_host_ports(w, path, containers, init_containers)

    restart = w.str_(s, "restartPolicy", path) or "Always"
    if restart not in ("Always", "OnFailure", "Never"):
        w.error(child(path, "restartPolicy"), v.unsupported(restart, ["Always", "OnFailure", "Never"]))

    dns_policy = w.str_(s, "dnsPolicy", path) or "ClusterFirst"
    dns_values = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if dns_policy not in dns_values:
        w.error(child(path, "dnsPolicy"), v.unsupported(dns_policy, dns_values))
    elif s.get("dnsPolicy") in ("ClusterFirst", "ClusterFirstWithHostNet"):
        w.warn(child(path, "dnsPolicy"), CONDITIONAL_WARNINGS["dnsPolicy: ClusterFirst"])
    nameservers, searches = _dns_config(w, s, path, dns_policy)

    node_selector = w.str_map(s, "nodeSelector", path)
    validate_labels(w, node_selector, child(path, "nodeSelector"))

    active_deadline = w.opt_int(s, "activeDeadlineSeconds", path)
    if active_deadline is not None and not 1 <= active_deadline <= _INT32_MAX:
        w.error(
            child(path, "activeDeadlineSeconds"),
            v.invalid(active_deadline, f"must be between 1 and {_INT32_MAX}, inclusive"),
        )

    sa_name = w.str_(s, "serviceAccountName", path) or w.str_(s, "serviceAccount", path)
    for field_name, check in (
        ("serviceAccountName", v.dns1123_subdomain),
        ("nodeName", v.dns1123_subdomain),
        ("hostname", v.dns1123_label),
        ("subdomain", v.dns1123_label),
        ("priorityClassName", v.dns1123_subdomain),
        ("runtimeClassName", v.dns1123_subdomain),
    ):
        value = w.str_(s, field_name, path)
        for msg in check(value) if value else []:
            w.error(child(path, field_name), v.invalid(value, msg))

    scheduler = w.str_(s, "schedulerName", path) or "default-scheduler"
    if scheduler != "default-scheduler":
        w.warn(child(path, "schedulerName"), CONDITIONAL_WARNINGS["schedulerName (not default-scheduler)"])

    preemption = w.opt_str(s, "preemptionPolicy", path)
    if preemption is not None and preemption not in ("PreemptLowerPriority", "Never"):
        w.error(child(path, "preemptionPolicy"), v.unsupported(preemption, ["PreemptLowerPriority", "Never"]))
    for p, secret in w.objects(s, "imagePullSecrets", path, fields("name")):
        w.str_(secret, "name", p)
    os_raw = w.obj(s, "os", path, fields("name"))
    if os_raw is not None:
        os_name = w.str_(os_raw, "name", child(path, "os"))
        if os_name not in ("linux", "windows"):
            w.error(child(path, "os.name"), v.unsupported(os_name, ["linux", "windows"]))

    return model.PodSpec(
        containers=tuple(containers),
        init_containers=tuple(init_containers),
        volumes=tuple(volumes),
        node_selector=node_selector,
        node_name=w.str_(s, "nodeName", path),
        affinity=_affinity(w, s, path),
        tolerations=_tolerations(w, s, path),
        restart_policy=restart,
        termination_grace_period_seconds=grace,
        active_deadline_seconds=active_deadline,
        dns_policy=dns_policy,
        host_network=host_network,
        host_pid=w.bool_(s, "hostPID", path),
        host_ipc=w.bool_(s, "hostIPC", path),
        hostname=w.str_(s, "hostname", path),
        subdomain=w.str_(s, "subdomain", path),
        share_process_namespace=w.bool_(s, "shareProcessNamespace", path),
        service_account_name=sa_name,
        automount_service_account_token=w.opt_bool(s, "automountServiceAccountToken", path),
        priority_class_name=w.str_(s, "priorityClassName", path),
        priority=w.opt_int(s, "priority", path),
        scheduler_name=scheduler,
        security_context=_pod_security_context(w, s, path),
        host_aliases=_host_aliases(w, s, path),
        dns_nameservers=nameservers,
        dns_searches=searches,
    )


def _dns_config(w: Walker, s: Raw, path: str, policy: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cpath = child(path, "dnsConfig")
    c = w.obj(s, "dnsConfig", path, fields("nameservers", "searches", "options"))
    if policy == "None":
        if c is None:
            w.error(cpath, v.required("must provide `dnsConfig` when `dnsPolicy` is None"))
            return (), ()
        if not c.get("nameservers"):
            w.error(
                child(cpath, "nameservers"),
                v.required("must provide at least one DNS nameserver when `dnsPolicy` is None"),
            )
    if c is None:
        return (), ()
    nameservers = w.str_list(c, "nameservers", cpath)
    if len(nameservers) > 3:
        w.error(
            child(cpath, "nameservers"), v.invalid(list(nameservers), "must not have more than 3 nameservers")
        )
    for i, ns in enumerate(nameservers):
        if not _is_ip(ns):
            w.error(v.index(child(cpath, "nameservers"), i), v.invalid(ns, _IP_ERROR))
    searches = w.str_list(c, "searches", cpath)
    if len(searches) > 32:
        w.error(
            child(cpath, "searches"), v.invalid(list(searches), "must not have more than 32 search paths")
        )
    if len(" ".join(searches)) > 2048:
        w.error(
            child(cpath, "searches"),
            v.invalid(
                list(searches),
                "must not have more than 2048 characters (including spaces) in the search list",
            ),
        )
    for i, search in enumerate(searches):
        for msg in v.dns1123_subdomain(search.removesuffix(".")):
            w.error(v.index(child(cpath, "searches"), i), v.invalid(search.removesuffix("."), msg))
    options = w.objects(c, "options", cpath, fields("name", "value"))
    for p, opt in options:
        if not w.str_(opt, "name", p):
            w.error(p, v.required("must not be empty"))
        w.str_(opt, "value", p)
    if options:
        w.warn(child(cpath, "options"), CONDITIONAL_WARNINGS["dnsConfig.options"])
    return nameservers, searches


_IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_aliases(w: Walker, s: Raw, path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for p, alias in w.objects(s, "hostAliases", path, fields("ip", "hostnames")):
        ip = w.str_(alias, "ip", p)
        if not _is_ip(ip):
            w.error(child(p, "ip"), v.invalid(ip, _IP_ERROR))
        names = w.str_list(alias, "hostnames", p)
        for i, hostname in enumerate(names):
            for msg in v.dns1123_subdomain(hostname):
                w.error(v.index(child(p, "hostnames"), i), v.invalid(hostname, msg))
        out.append((ip, names))
    return tuple(out)


# --- security contexts -------------------------------------------------------------------------


def _seccomp(w: Walker, sc: Raw, path: str) -> tuple[str | None, str | None]:
    raw = w.obj(sc, "seccompProfile", path, fields("type", "localhostProfile"))
    if raw is None:
        return None, None
    spath = child(path, "seccompProfile")
    typ = w.str_(raw, "type", spath)
    profile = w.opt_str(raw, "localhostProfile", spath)
    if not typ:
        w.error(child(spath, "type"), v.required())
    elif typ not in ("Localhost", "RuntimeDefault", "Unconfined"):
        w.error(child(spath, "type"), v.unsupported(typ, ["Localhost", "RuntimeDefault", "Unconfined"]))
    if typ == "Localhost":
        if profile is None:
            w.error(
                child(spath, "localhostProfile"), v.required("must be set when seccomp type is Localhost")
            )
        else:
            _local_descending_path(w, profile, child(spath, "localhostProfile"))
    elif profile is not None:
        w.error(
            child(spath, "localhostProfile"),
            v.invalid(profile, "can only be set when seccomp type is Localhost"),
        )
    return (typ or None), profile


def _id(w: Walker, sc: Raw, name: str, path: str) -> int | None:
    value = w.opt_int(sc, name, path)
    if value is not None and not 0 <= value <= _INT32_MAX:
        w.error(child(path, name), v.invalid(value, f"must be between 0 and {_INT32_MAX}, inclusive"))
    return value


def _warn_fields(w: Walker, d: Raw, path: str, table: Mapping[str, str]) -> None:
    for name, reason in table.items():
        if d.get(name) is not None:
            w.warn(child(path, name), reason)


def _unapplied_security(sc: Raw) -> tuple[model.SELinuxOptions | None, bool | None, str | None]:
    """seLinuxOptions, windowsOptions.hostProcess and appArmorProfile.type: never applied (a warning
    says so), read only for a source's policy (nodeagent.k8s.policy). Read leniently: a value of the wrong
    type counts as unset here, since these fields never were validated beyond the warning."""

    def text(d: object, key: str) -> str:
        value = d.get(key) if isinstance(d, dict) else None
        return value if isinstance(value, str) else ""

    raw_se, raw_win, raw_aa = sc.get("seLinuxOptions"), sc.get("windowsOptions"), sc.get("appArmorProfile")
    host_process = raw_win.get("hostProcess") if isinstance(raw_win, dict) else None
    return (
        model.SELinuxOptions(*(text(raw_se, k) for k in ("user", "role", "type", "level")))
        if isinstance(raw_se, dict)
        else None,
        host_process if isinstance(host_process, bool) else None,
        text(raw_aa, "type") if isinstance(raw_aa, dict) else None,
    )


def _security_context(w: Walker, c: Raw, cpath: str) -> model.SecurityContext | None:
    path = child(cpath, "securityContext")
    sc = w.obj(c, "securityContext", cpath, SECURITY_CONTEXT_FIELDS)
    if sc is None:
        return None
    _warn_fields(w, sc, path, SECURITY_CONTEXT_WARNINGS)
    caps_raw = w.obj(sc, "capabilities", path, fields("add", "drop"))
    caps = None
    if caps_raw is not None:
        cap_path = child(path, "capabilities")
        caps = model.Capabilities(
            w.str_list(caps_raw, "add", cap_path), w.str_list(caps_raw, "drop", cap_path)
        )
    privileged = w.opt_bool(sc, "privileged", path)
    escalation = w.opt_bool(sc, "allowPrivilegeEscalation", path)
    if escalation is False:
        if privileged:
            w.error(
                path,
                v.invalid(
                    escalation, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
                ),
            )
        if caps is not None and "CAP_SYS_ADMIN" in caps.add:
            w.error(
                path,
                v.invalid(
                    escalation,
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ),
            )
    proc_mount = w.opt_str(sc, "procMount", path)
    if proc_mount is not None and proc_mount not in ("Default", "Unmasked"):
        w.error(child(path, "procMount"), v.unsupported(proc_mount, ["Default", "Unmasked"]))
    seccomp, profile = _seccomp(w, sc, path)
    unapplied = _unapplied_security(sc)
    return model.SecurityContext(
        privileged=privileged,
        capabilities=caps,
        run_as_user=_id(w, sc, "runAsUser", path),
        run_as_group=_id(w, sc, "runAsGroup", path),
        run_as_non_root=w.opt_bool(sc, "runAsNonRoot", path),
        read_only_root_filesystem=w.opt_bool(sc, "readOnlyRootFilesystem", path),
        allow_privilege_escalation=escalation,
        seccomp_profile=seccomp,
        seccomp_localhost_profile=profile,
        proc_mount=proc_mount,
        se_linux_options=unapplied[0],
        windows_host_process=unapplied[1],
        app_armor_profile=unapplied[2],
    )


def _pod_security_context(w: Walker, s: Raw, spath: str) -> model.PodSecurityContext:
    path = child(spath, "securityContext")
    sc = w.obj(s, "securityContext", spath, POD_SECURITY_CONTEXT_FIELDS)
    if sc is None:
        return model.PodSecurityContext()
    _warn_fields(w, sc, path, SECURITY_CONTEXT_WARNINGS)
    groups = []
    for p, g in w.items(sc, "supplementalGroups", path):
        if isinstance(g, bool) or not isinstance(g, int):
            w.error(p, v.invalid(g if isinstance(g, int | str) else str(g), "must be of type integer"))
        elif not 0 <= g <= _INT32_MAX:
            w.error(p, v.invalid(g, f"must be between 0 and {_INT32_MAX}, inclusive"))
        else:
            groups.append(g)
    sysctls = []
    seen: set[str] = set()
    for p, raw in w.objects(sc, "sysctls", path, fields("name", "value")):
        name = w.str_(raw, "name", p)
        value = w.str_(raw, "value", p)
        if not name:
            w.error(child(p, "name"), v.required())
        elif not _SYSCTL.fullmatch(name) or len(name) > 253:
            w.error(
                child(p, "name"),
                v.invalid(name, _SYSCTL_ERROR),
            )
        elif name in seen:
            w.error(child(p, "name"), v.duplicate(name))
        seen.add(name)
        sysctls.append(model.Sysctl(name, value))
    policy = w.opt_str(sc, "fsGroupChangePolicy", path)
    if policy is not None and policy not in ("Always", "OnRootMismatch"):
        w.error(child(path, "fsGroupChangePolicy"), v.unsupported(policy, ["Always", "OnRootMismatch"]))
    seccomp, profile = _seccomp(w, sc, path)
    unapplied = _unapplied_security(sc)
    return model.PodSecurityContext(
        run_as_user=_id(w, sc, "runAsUser", path),
        run_as_group=_id(w, sc, "runAsGroup", path),
        run_as_non_root=w.opt_bool(sc, "runAsNonRoot", path),
        fs_group=_id(w, sc, "fsGroup", path),
        supplemental_groups=tuple(groups),
        sysctls=tuple(sysctls),
        seccomp_profile=seccomp,
        seccomp_localhost_profile=profile,
        se_linux_options=unapplied[0],
        windows_host_process=unapplied[1],
        app_armor_profile=unapplied[2],
    )


_SYSCTL = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")
_SYSCTL_ERROR = f"must have at most 253 characters and match regex ^{_SYSCTL.pattern}$"


# --- scheduling: affinity and tolerations ------------------------------------------------------


_NEVER_MATCHES = (
    "not an integer: Kubernetes accepts it, but its scheduler fails a Gt/Lt requirement on it, so this "
    "term can never match"
)


def _node_selector_term(w: Walker, raw: Raw, path: str, *, required: bool) -> model.NodeSelectorTerm:
    """ValidateNodeSelectorTerm. Values are checked as label values in required terms only: Kubernetes
    does so for new objects (AllowInvalidLabelValueInRequiredNodeAffinity is false unless the old object
    had one), and always allows them in preferred terms."""
    exprs = []
    for p, r in w.objects(raw, "matchExpressions", path, REQUIREMENT_FIELDS):
        key = w.str_(r, "key", p)
        op = w.str_(r, "operator", p)
        values = w.str_list(r, "values", p)
        vpath = child(p, "values")
        if op in ("In", "NotIn"):
            if not values:
                w.error(vpath, v.required("must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                w.error(
                    vpath, v.forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
                )
        elif op in ("Gt", "Lt"):
            if len(values) != 1:
                w.error(vpath, v.required("must be specified single value when `operator` is 'Lt' or 'Gt'"))
            elif v.parse_int64(values[0]) is None:  # labels.NewRequirement's strconv.ParseInt
                w.warn(v.index(vpath, 0), f"{v.fmt(values[0])}: {_NEVER_MATCHES}")
        else:
            w.error(child(p, "operator"), v.invalid(op, "not a valid selector operator"))
        for msg in v.qualified_name(key):
            w.error(child(p, "key"), v.invalid(key, msg))
        for i, value in enumerate(values if required else ()):
            for msg in v.label_value(value):
                w.error(v.index(vpath, i), v.invalid(value, msg))
        exprs.append(model.NodeSelectorRequirement(key, op, values))
    match_fields = []
    for p, r in w.objects(raw, "matchFields", path, REQUIREMENT_FIELDS):
        key = w.str_(r, "key", p)
        op = w.str_(r, "operator", p)
        values = w.str_list(r, "values", p)
        if op in ("In", "NotIn"):
            if len(values) != 1:
                w.error(
                    child(p, "values"),
                    v.required(
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"
                    ),
                )
        else:
            w.error(child(p, "operator"), v.invalid(op, "not a valid selector operator"))
        if key != "metadata.name":
            w.error(child(p, "key"), v.invalid(key, "not a valid field selector key"))
        else:
            for i, val in enumerate(values):
                for msg in v.dns1123_subdomain(val):
                    w.error(v.index(child(p, "values"), i), v.invalid(val, msg))
        match_fields.append(model.NodeSelectorRequirement(key, op, values))
    return model.NodeSelectorTerm(tuple(exprs), tuple(match_fields))


_REQUIRED_TERMS = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED_TERMS = "preferredDuringSchedulingIgnoredDuringExecution"


def _affinity(w: Walker, s: Raw, spath: str) -> model.Affinity | None:
    path = child(spath, "affinity")
    a = w.obj(s, "affinity", spath, fields("nodeAffinity", "podAffinity", "podAntiAffinity"))
    if a is None:
        return None
    node_affinity = None
    na = w.obj(a, "nodeAffinity", path, fields(_REQUIRED_TERMS, _PREFERRED_TERMS))
    if na is not None:
        napath = child(path, "nodeAffinity")
        required: tuple[model.NodeSelectorTerm, ...] | None = None
        req = w.obj(na, _REQUIRED_TERMS, napath, fields("nodeSelectorTerms"))
        if req is not None:
            rpath = child(napath, _REQUIRED_TERMS)
            terms = w.objects(req, "nodeSelectorTerms", rpath, NODE_SELECTOR_TERM_FIELDS)
            if not terms:
                w.error(
                    child(rpath, "nodeSelectorTerms"), v.required("must have at least one node selector term")
                )
            required = tuple(_node_selector_term(w, t, p, required=True) for p, t in terms)
        preferred = []
        for p, pref in w.objects(na, _PREFERRED_TERMS, napath, fields("weight", "preference")):
            weight = w.int_(pref, "weight", p, 0)
            if not 1 <= weight <= 100:
                w.error(child(p, "weight"), v.invalid(weight, "must be in the range 1-100"))
            term_raw = w.obj(pref, "preference", p, NODE_SELECTOR_TERM_FIELDS) or {}
            preferred.append(
                model.PreferredSchedulingTerm(
                    weight, _node_selector_term(w, term_raw, child(p, "preference"), required=False)
                )
            )
        if preferred:
            w.warn(
                child(napath, _PREFERRED_TERMS),
                CONDITIONAL_WARNINGS[f"affinity.nodeAffinity.{_PREFERRED_TERMS}"],
            )
        node_affinity = model.NodeAffinity(required=required, preferred=tuple(preferred))
    has_pod_affinity = w.obj(a, "podAffinity", path) is not None
    has_anti_affinity = w.obj(a, "podAntiAffinity", path) is not None
    if has_pod_affinity:
        w.warn(child(path, "podAffinity"), CONDITIONAL_WARNINGS["affinity.podAffinity"])
    if has_anti_affinity:
        w.warn(child(path, "podAntiAffinity"), CONDITIONAL_WARNINGS["affinity.podAntiAffinity"])
    return model.Affinity(node_affinity, has_pod_affinity, has_anti_affinity)


_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _tolerations(w: Walker, s: Raw, spath: str) -> tuple[model.Toleration, ...]:
    out = []
    for p, t in w.objects(s, "tolerations", spath, TOLERATION_FIELDS):
        key = w.str_(t, "key", p)
        op = w.str_(t, "operator", p)
        value = w.str_(t, "value", p)
        effect = w.str_(t, "effect", p)
        seconds = w.opt_int(t, "tolerationSeconds", p)
        for msg in v.qualified_name(key) if key else []:
            w.error(child(p, "key"), v.invalid(key, msg))
        if not key and op != "Exists":
            w.error(
                child(p, "operator"),
                v.invalid(
                    op,
                    _EMPTY_KEY_OPERATOR,
                ),
            )
        if seconds is not None and effect != "NoExecute":
            w.error(
                child(p, "effect"),
                v.invalid(effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"),
            )
        if op in ("Equal", ""):
            errs = v.label_value(value)
            if errs:
                w.error(child(p, "operator"), v.invalid(value, ";".join(errs)))
        elif op == "Exists":
            if value:
                w.error(
                    child(p, "operator"), v.invalid(value, "value must be empty when `operator` is 'Exists'")
                )
        else:
            w.error(child(p, "operator"), v.unsupported(op, ["Equal", "Exists"]))
        if effect and effect not in _EFFECTS:
            w.error(child(p, "effect"), v.unsupported(effect, _EFFECTS))
        out.append(model.Toleration(key, op or "Equal", value, effect, seconds))
    return tuple(out)


# --- volumes -----------------------------------------------------------------------------------


def _volumes(w: Walker, s: Raw, spath: str) -> tuple[list[model.Volume], set[str]]:
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
            _no_backsteps(w, host_path, child(p, "path"))
            if htype not in _HOST_PATH_TYPES:
                w.error(child(p, "type"), v.unsupported(htype, _HOST_PATH_TYPES))
        return model.HostPathVolumeSource(host_path, htype)
    if typ == "emptyDir":
        d = w.mapping(raw[typ], p, fields("medium", "sizeLimit")) or {}
        medium = w.str_(d, "medium", p)
        if medium not in ("", "Memory"):
            w.warn(child(p, "medium"), CONDITIONAL_WARNINGS['emptyDir.medium other than "" or Memory'])
            medium = ""
        size = _quantity(w, d, "sizeLimit", p)
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
        files = tuple(_downward_file(w, f, fp) for fp, f in w.objects(d, "items", p, DOWNWARD_FILE_FIELDS))
        return model.DownwardAPIVolumeSource(files, mode)
    return _projected(w, raw[typ], p)


def _mode(w: Walker, d: Raw, name: str, path: str, default: int) -> int:
    mode = w.opt_int(d, name, path)
    if mode is None:
        return default
    if not 0 <= mode <= 0o777:
        w.error(child(path, name), v.invalid(mode, _FILE_MODE_ERROR))
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
        _local_non_reserved_path(w, target, child(p, "path"))
        mode = w.opt_int(item, "mode", p)
        if mode is not None and not 0 <= mode <= 0o777:
            w.error(child(p, "mode"), v.invalid(mode, _FILE_MODE_ERROR))
        out.append(model.KeyToPath(key, target, mode))
    return tuple(out)


def _no_backsteps(w: Walker, target: str, path: str) -> None:
    if ".." in target.replace("\\", "/").split("/"):
        w.error(path, v.invalid(target, "must not contain '..'"))


def _local_descending_path(w: Walker, target: str, path: str) -> None:
    if target.startswith("/"):
        w.error(path, v.invalid(target, "must be a relative path"))
    _no_backsteps(w, target, path)


def _local_non_reserved_path(w: Walker, target: str, path: str) -> None:
    _local_descending_path(w, target, path)
    if target.startswith("..") and not target.startswith("../"):
        w.error(path, v.invalid(target, "must not start with '..'"))


def _downward_file(w: Walker, f: Raw, p: str) -> model.DownwardAPIVolumeFile:
    target = w.str_(f, "path", p)
    if not target:
        w.error(child(p, "path"), v.required())
    _local_non_reserved_path(w, target, child(p, "path"))
    field_ref = _field_ref(w, f, p, _VOLUME_FIELD_PATHS)
    resource_ref = _resource_field_ref(w, f, p, volume=True)
    if field_ref is not None and resource_ref is not None:
        w.error(p, v.invalid("resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif (
        field_ref is None
        and resource_ref is None
        and f.get("fieldRef") is None
        and f.get("resourceFieldRef") is None
    ):
        w.error(p, v.required("one of fieldRef and resourceFieldRef is required"))
    mode = w.opt_int(f, "mode", p)
    if mode is not None and not 0 <= mode <= 0o777:
        w.error(child(p, "mode"), v.invalid(mode, _FILE_MODE_ERROR))
    return model.DownwardAPIVolumeFile(target, field_ref, resource_ref, mode)


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
                _downward_file(w, f, fp) for fp, f in w.objects(dapi, "items", dp, DOWNWARD_FILE_FIELDS)
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
                _local_non_reserved_path(w, target, child(p, "path"))
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


# --- downward API selectors --------------------------------------------------------------------


def _field_ref(w: Walker, d: Raw, path: str, allowed: Sequence[str]) -> model.ObjectFieldSelector | None:
    raw = w.obj(d, "fieldRef", path, FIELD_REF_FIELDS)
    if raw is None:
        return None
    p = child(path, "fieldRef")
    api = w.str_(raw, "apiVersion", p) or "v1"  # SetDefaults_ObjectFieldSelector
    field_path = w.str_(raw, "fieldPath", p)
    if not field_path:
        w.error(child(p, "fieldPath"), v.required())
        return model.ObjectFieldSelector(field_path, api)
    if api != "v1":
        w.error(
            child(p, "fieldPath"),
            v.invalid(field_path, f"error converting fieldPath: unsupported pod version: {api}"),
        )
        return model.ObjectFieldSelector(field_path, api)
    base, subscript = _split_subscript(field_path)
    if subscript is not None:
        if base not in ("metadata.labels", "metadata.annotations"):
            w.error(
                child(p, "fieldPath"),
                v.invalid(field_path, f"error converting fieldPath: field label not supported: {base}"),
            )
        else:
            check = subscript.lower() if base == "metadata.annotations" else subscript
            for msg in v.qualified_name(check):
                w.error(p, v.invalid(check, msg))
    elif field_path not in _KNOWN_FIELD_PATHS:
        w.error(
            child(p, "fieldPath"),
            v.invalid(field_path, f"error converting fieldPath: field label not supported: {field_path}"),
        )
    elif field_path not in allowed:
        w.error(child(p, "fieldPath"), v.unsupported(field_path, sorted(allowed)))
    return model.ObjectFieldSelector(field_path, api)


def _split_subscript(field_path: str) -> tuple[str, str | None]:
    """`metadata.labels['app']` → ("metadata.labels", "app"), as fieldpath.SplitMaybeSubscriptedPath."""
    if not field_path.endswith("']"):
        return field_path, None
    start = field_path.find("['")
    if start < 0:
        return field_path, None
    return field_path[:start], field_path[start + 2 : -2]


_CPU_DIVISORS = frozenset({Fraction(1, 1000), Fraction(1)})
_BYTE_DIVISORS = frozenset(
    [Fraction(1)]
    + [Fraction(10) ** (3 * i) for i in range(1, 7)]
    + [Fraction(2) ** (10 * i) for i in range(1, 7)]
)


def _resource_field_ref(w: Walker, d: Raw, path: str, *, volume: bool) -> model.ResourceFieldSelector | None:
    raw = w.obj(d, "resourceFieldRef", path, RESOURCE_REF_FIELDS)
    if raw is None:
        return None
    p = child(path, "resourceFieldRef")
    container = w.str_(raw, "containerName", p)
    resource = w.str_(raw, "resource", p)
    divisor = _quantity(w, raw, "divisor", p)
    if volume and not container:
        w.error(child(p, "containerName"), v.required())
    elif not resource:
        w.error(child(p, "resource"), v.required())
    elif resource not in _RESOURCE_FIELD_PATHS and not resource.startswith(
        ("requests.hugepages-", "limits.hugepages-")
    ):
        w.error(child(p, "resource"), v.unsupported(resource, _RESOURCE_FIELD_PATHS))
    if divisor is not None and divisor.value != 0:
        if resource in ("limits.cpu", "requests.cpu") and divisor.value not in _CPU_DIVISORS:
            w.error(
                child(p, "divisor"),
                v.invalid(resource, "only divisor's values 1m and 1 are supported with the cpu resource"),
            )
        elif (
            resource.split(".")[-1] in ("memory", "ephemeral-storage") and divisor.value not in _BYTE_DIVISORS
        ):
            w.error(
                child(p, "divisor"),
                v.invalid(
                    resource,
                    _BYTE_DIVISOR_ERROR.format(
                        what="memory" if resource.endswith("memory") else "local ephemeral storage"
                    ),
                ),
            )
    return model.ResourceFieldSelector(resource, container, divisor)


def _quantity(w: Walker, d: Raw, name: str, path: str) -> quantity.Quantity | None:
    raw = d.get(name)
    if raw is None:
        return None
    return _quantity_at(w, raw, child(path, name))


# --- containers --------------------------------------------------------------------------------


def default_pull_policy(image: str) -> str:
    """imagePullPolicy as SetDefaults_Container: Always for `:latest` or no tag (unless pinned by digest)."""
    name, has_digest = (image.split("@", 1)[0], True) if "@" in image else (image, False)
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag and not has_digest:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _containers(
    w: Walker,
    s: Raw,
    field_name: str,
    spath: str,
    volumes: set[str],
    grace: int,
    host_network: bool,
    privileged_names: set[str],
) -> list[model.Container]:
    init = field_name == "initContainers"
    if not init and s.get(field_name) in (None, []):
        w.error(child(spath, field_name), v.required())
    raw_list = w.objects(s, field_name, spath, CONTAINER_FIELDS)
    return [_container(w, c, p, volumes, grace, host_network, init=init) for p, c in raw_list]


def _container(
    w: Walker, c: Raw, path: str, volumes: set[str], grace: int, host_network: bool, *, init: bool
) -> model.Container:
    _warn_fields(w, c, path, CONTAINER_WARNINGS)
    name = w.str_(c, "name", path)
    if not name:
        w.error(child(path, "name"), v.required())
    for msg in v.dns1123_label(name) if name else []:
        w.error(child(path, "name"), v.invalid(name, msg))
    image = w.str_(c, "image", path)
    if not image:
        w.error(child(path, "image"), v.required())
    elif image != image.strip():
        w.error(child(path, "image"), v.invalid(image, "must not have leading or trailing whitespace"))
    pull = w.str_(c, "imagePullPolicy", path) or default_pull_policy(image)
    if pull not in ("Always", "IfNotPresent", "Never"):
        w.error(child(path, "imagePullPolicy"), v.unsupported(pull, ["Always", "IfNotPresent", "Never"]))
    policy = w.str_(c, "terminationMessagePolicy", path) or "File"
    if policy not in ("File", "FallbackToLogsOnError"):
        w.error(
            child(path, "terminationMessagePolicy"), v.unsupported(policy, ["File", "FallbackToLogsOnError"])
        )
    w.str_(c, "terminationMessagePath", path)

    restart = w.str_(c, "restartPolicy", path)
    if restart and not init:
        w.error(child(path, "restartPolicy"), v.forbidden("may not be set for non-init containers"))
    elif restart and restart != "Always":
        w.error(child(path, "restartPolicy"), v.unsupported(restart, ["Always"]))
    sidecar = init and restart == "Always"

    security = _security_context(w, c, path)
    privileged = bool(security and security.privileged)
    ports = _ports(w, c, path, host_network)
    env = _env(w, c, path)
    env_from = _env_from(w, c, path)
    mounts = _mounts(w, c, path, volumes, privileged)
    resources = _resources(w, c, path)

    probes: dict[str, model.Probe | None] = {}
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if init and not sidecar and c.get(probe_name) is not None:
            w.error(
                child(path, probe_name),
                v.forbidden("may not be set for init containers without restartPolicy=Always"),
            )
            probes[probe_name] = None
        else:
            probes[probe_name] = _probe(w, c, probe_name, path, grace)
    if init and not sidecar and c.get("lifecycle") is not None:
        w.error(
            child(path, "lifecycle"),
            v.forbidden("may not be set for init containers without restartPolicy=Always"),
        )
        lifecycle = None
    else:
        lifecycle = _lifecycle(w, c, path, grace)

    return model.Container(
        name=name,
        image=image,
        image_pull_policy=pull,
        command=w.str_list(c, "command", path),
        args=w.str_list(c, "args", path),
        working_dir=w.str_(c, "workingDir", path),
        ports=ports,
        env=env,
        env_from=env_from,
        resources=resources,
        volume_mounts=mounts,
        liveness_probe=probes["livenessProbe"],
        readiness_probe=probes["readinessProbe"],
        startup_probe=probes["startupProbe"],
        lifecycle=lifecycle,
        security_context=security,
        restart_policy=restart,
        stdin=w.bool_(c, "stdin", path),
        tty=w.bool_(c, "tty", path),
    )


def _ports(w: Walker, c: Raw, cpath: str, host_network: bool) -> tuple[model.ContainerPort, ...]:
    out = []
    names: set[str] = set()
    for p, port in w.objects(c, "ports", cpath, PORT_FIELDS):
        name = w.str_(port, "name", p)
        if name:
            errs = v.port_name(name)
            for msg in errs:
                w.error(child(p, "name"), v.invalid(name, msg))
            if not errs and name in names:
                w.error(child(p, "name"), v.duplicate(name))
            names.add(name)
        container_port = w.int_(port, "containerPort", p, 0)
        if container_port == 0:
            w.error(child(p, "containerPort"), v.required())
        for msg in v.port_number(container_port) if container_port else []:
            w.error(child(p, "containerPort"), v.invalid(container_port, msg))
        host_port = w.int_(port, "hostPort", p, 0)
        for msg in v.port_number(host_port) if host_port else []:
            w.error(child(p, "hostPort"), v.invalid(host_port, msg))
        if host_network:
            if host_port == 0:  # SetDefaults_Pod: with hostNetwork the host port is the container port
                host_port = container_port
            elif host_port != container_port:
                w.error(
                    child(p, "hostPort"),
                    v.invalid(host_port, "must match `containerPort` when `hostNetwork` is true"),
                )
        protocol = w.str_(port, "protocol", p) or "TCP"
        if protocol not in ("SCTP", "TCP", "UDP"):
            w.error(child(p, "protocol"), v.unsupported(protocol, ["SCTP", "TCP", "UDP"]))
        out.append(model.ContainerPort(container_port, name, host_port, protocol, w.str_(port, "hostIP", p)))
    return tuple(out)


def _check_names_and_host_ports(
    w: Walker,
    spath: str,
    containers: list[model.Container],
    init_containers: list[model.Container],
) -> None:
    """Names unique across containers and init containers; host ports unique (init ones each alone)."""
    seen: set[str] = set()
    for field_name, group in (("containers", containers), ("initContainers", init_containers)):
        for i, ctr in enumerate(group):
            if ctr.name and ctr.name in seen:
                w.error(child(v.index(child(spath, field_name), i), "name"), v.duplicate(ctr.name))
            if ctr.name:
                seen.add(ctr.name)

    def host_ports(field_name: str, group: Iterable[tuple[int, model.Container]]) -> None:
        used: set[str] = set()
        for ci, ctr in group:
            for pi, port in enumerate(ctr.ports):
                if not 1 <= port.host_port <= 65535:  # 0 is no host port; others are already errors
                    continue
                ident = f"{port.protocol}/{port.host_ip}/{port.host_port}"
                ppath = v.index(child(v.index(child(spath, field_name), ci), "ports"), pi)
                if ident in used:
                    w.error(child(ppath, "hostPort"), v.duplicate(ident))
                used.add(ident)

    host_ports("containers", enumerate(containers))
    for i, ctr in enumerate(init_containers):
        host_ports("initContainers", [(i, ctr)])


def _env(w: Walker, c: Raw, cpath: str) -> tuple[model.EnvVar, ...]:
    out = []
    for p, e in w.objects(c, "env", cpath, ENV_FIELDS):
        name = w.str_(e, "name", p)
        if not name:
            w.error(child(p, "name"), v.required())
        for msg in v.env_var_name(name) if name else []:
            w.error(child(p, "name"), v.invalid(name, msg))
        value = w.str_(e, "value", p)
        value_from = None
        src = w.obj(e, "valueFrom", p, ENV_SOURCE_FIELDS)
        if src is not None:
            vp = child(p, "valueFrom")
            value_from = model.EnvVarSource(
                field_ref=_field_ref(w, src, vp, _ENV_FIELD_PATHS),
                resource_field_ref=_resource_field_ref(w, src, vp, volume=False),
                config_map_key_ref=_key_ref(w, src, "configMapKeyRef", vp),
                secret_key_ref=_key_ref(w, src, "secretKeyRef", vp),
            )
            count = sum(src.get(k) is not None for k in ENV_SOURCE_FIELDS)
            if count == 0:
                w.error(
                    vp,
                    v.invalid(
                        "",
                        _ONE_ENV_SOURCE,
                    ),
                )
            elif value:
                w.error(vp, v.invalid("", "may not be specified when `value` is not empty"))
            elif count > 1:
                w.error(vp, v.invalid("", "may not have more than one field specified at a time"))
        out.append(model.EnvVar(name, value, value_from))
    return tuple(out)


def _key_ref(w: Walker, d: Raw, name: str, path: str) -> model.KeySelector | None:
    raw = w.obj(d, name, path, KEY_REF_FIELDS)
    if raw is None:
        return None
    p = child(path, name)
    ref_name = w.str_(raw, "name", p)
    for msg in v.dns1123_subdomain(ref_name):
        w.error(child(p, "name"), v.invalid(ref_name, msg))
    key = w.str_(raw, "key", p)
    if not key:
        w.error(child(p, "key"), v.required())
    for msg in v.config_map_key(key) if key else []:
        w.error(child(p, "key"), v.invalid(key, msg))
    return model.KeySelector(ref_name, key, w.bool_(raw, "optional", p))


def _env_from(w: Walker, c: Raw, cpath: str) -> tuple[model.EnvFromSource, ...]:
    out = []
    for p, e in w.objects(c, "envFrom", cpath, ENV_FROM_FIELDS):
        prefix = w.str_(e, "prefix", p)
        for msg in v.env_var_name(prefix) if prefix else []:
            w.error(child(p, "prefix"), v.invalid(prefix, msg))
        refs: dict[str, model.LocalObjectReference | None] = {}
        for kind in ("configMapRef", "secretRef"):
            raw = w.obj(e, kind, p, LOCAL_REF_FIELDS)
            if raw is None:
                refs[kind] = None
                continue
            rp = child(p, kind)
            name = w.str_(raw, "name", rp)
            if not name:
                w.error(child(rp, "name"), v.required())
            for msg in v.dns1123_subdomain(name) if name else []:
                w.error(child(rp, "name"), v.invalid(name, msg))
            refs[kind] = model.LocalObjectReference(name, w.bool_(raw, "optional", rp))
        count = sum(r is not None for r in refs.values())
        if count == 0 and e.get("configMapRef") is None and e.get("secretRef") is None:
            w.error(p, v.invalid("", "must specify one of: `configMapRef` or `secretRef`"))
        elif count > 1:
            w.error(p, v.invalid("", "may not have more than one field specified at a time"))
        out.append(model.EnvFromSource(prefix, refs["configMapRef"], refs["secretRef"]))
    return tuple(out)


def _mounts(
    w: Walker, c: Raw, cpath: str, volumes: set[str], privileged: bool
) -> tuple[model.VolumeMount, ...]:
    out = []
    mount_points: set[str] = set()
    for p, m in w.objects(c, "volumeMounts", cpath, MOUNT_FIELDS):
        name = w.str_(m, "name", p)
        if not name:
            w.error(child(p, "name"), v.required())
        if name not in volumes:
            w.error(child(p, "name"), v.not_found(name))
        mount_path = w.str_(m, "mountPath", p)
        if not mount_path:
            w.error(child(p, "mountPath"), v.required())
        if mount_path in mount_points:
            w.error(child(p, "mountPath"), v.invalid(mount_path, "must be unique"))
        mount_points.add(mount_path)
        sub_path = w.str_(m, "subPath", p)
        if sub_path:
            _local_descending_path(w, sub_path, child(p, "subPath"))
        sub_path_expr = w.str_(m, "subPathExpr", p)
        if sub_path_expr:
            if sub_path:
                w.error(
                    child(p, "subPathExpr"),
                    v.invalid(sub_path_expr, "subPathExpr and subPath are mutually exclusive"),
                )
            _local_descending_path(w, sub_path_expr, child(p, "subPathExpr"))
        read_only = w.bool_(m, "readOnly", p)
        propagation = w.opt_str(m, "mountPropagation", p)
        if propagation is not None:
            if propagation not in ("Bidirectional", "HostToContainer", "None"):
                w.error(
                    child(p, "mountPropagation"),
                    v.unsupported(propagation, ["Bidirectional", "HostToContainer", "None"]),
                )
            elif propagation == "Bidirectional" and not privileged:
                w.error(
                    child(p, "mountPropagation"),
                    v.forbidden("Bidirectional mount propagation is available only to privileged containers"),
                )
        rro = w.opt_str(m, "recursiveReadOnly", p)
        if rro is not None:
            rpath = child(p, "recursiveReadOnly")
            if rro in ("Enabled", "IfPossible"):
                if not read_only:
                    w.error(rpath, v.forbidden("may only be specified when readOnly is true"))
                if propagation not in (None, "None"):
                    w.error(
                        rpath,
                        v.forbidden("may only be specified when mountPropagation is None or not specified"),
                    )
                w.warn(rpath, CONDITIONAL_WARNINGS["volumeMounts.recursiveReadOnly"])
            elif rro != "Disabled":
                w.error(rpath, v.unsupported(rro, ["Disabled", "Enabled", "IfPossible"]))
        out.append(
            model.VolumeMount(name, mount_path, read_only, sub_path, sub_path_expr, propagation or "None")
        )
    return tuple(out)


def _is_native_resource(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _resources(w: Walker, c: Raw, cpath: str) -> model.ResourceRequirements:
    path = child(cpath, "resources")
    r = w.obj(c, "resources", cpath, RESOURCES_FIELDS)
    if r is None:
        return model.ResourceRequirements()
    if r.get("claims") is not None:
        w.warn(child(path, "claims"), CONDITIONAL_WARNINGS["resources.claims"])
    lists: dict[str, dict[str, quantity.Quantity]] = {}
    for which in ("limits", "requests"):
        wpath = child(path, which)
        raw = w.obj(r, which, path) or {}
        out: dict[str, quantity.Quantity] = {}
        for name in raw:
            qpath = v.key(wpath, name)
            for msg in v.qualified_name(name):
                w.error(qpath, v.invalid(name, msg))
            if (
                "/" not in name
                and name not in ("cpu", "memory", "ephemeral-storage")
                and not name.startswith("hugepages-")
            ):
                w.error(qpath, v.invalid(name, "must be a standard resource for containers"))
            q = _quantity_at(w, raw[name], qpath)
            if q is None:
                continue
            if q.value < 0:
                w.error(qpath, v.invalid(q.text, _NONNEGATIVE))
            if not _is_native_resource(name) and q.value.denominator != 1:
                w.error(qpath, v.invalid(q.text, "must be an integer"))
            out[name] = q
        lists[which] = out
    limits, requests = lists["limits"], lists["requests"]
    req_path = child(path, "requests")
    for name, req in requests.items():
        overcommit = _is_native_resource(name) and not name.startswith("hugepages-")
        limit = limits.get(name)
        if limit is not None:
            if req.value != limit.value and not overcommit:
                w.error(req_path, v.invalid(req.text, f"must be equal to {name} limit of {limit.text}"))
            elif req.value > limit.value:
                w.error(
                    req_path,
                    v.invalid(req.text, f"must be less than or equal to {name} limit of {limit.text}"),
                )
        elif not overcommit:
            w.error(child(path, "limits"), v.required("Limit must be set for non overcommitable resources"))
    names = set(limits) | set(requests)
    if any(n.startswith("hugepages-") for n in names) and not names & {"cpu", "memory"}:
        w.error(path, v.forbidden("HugePages require cpu or memory"))
    return model.ResourceRequirements(limits=limits, requests=requests)


def _quantity_at(w: Walker, raw: object, path: str) -> quantity.Quantity | None:
    if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int | float):
        w.error(
            path, v.invalid(raw if raw is None or isinstance(raw, bool) else "<object>", "must be a quantity")
        )
        return None
    exponent = _EXPONENT.search(raw) if isinstance(raw, str) else None
    if (isinstance(raw, str) and len(raw) > 100) or (exponent and abs(int(exponent.group(1))) > 100):
        w.error(path, v.invalid(raw, "quantity is out of range"))
        return None
    try:
        return quantity.parse(raw)
    except (quantity.QuantityError, ValueError, OverflowError) as exc:
        w.error(path, v.invalid(raw, str(exc)))
        return None


_EXPONENT = re.compile(r"[eE]([+-]?[0-9]{1,90})\s*$")


# --- probes and lifecycle hooks ----------------------------------------------------------------


def _port(w: Walker, d: Raw, path: str) -> int | str:
    port = w.int_or_str(d, "port", path)
    p = child(path, "port")
    if isinstance(port, str):
        for msg in v.port_name(port):
            w.error(p, v.invalid(port, msg))
        return port
    value = port or 0
    for msg in v.port_number(value):
        w.error(p, v.invalid(value, msg))
    return value


def _handler(
    w: Walker, d: Raw, path: str, kinds: Sequence[str], grace: int
) -> tuple[model.ProbeHandler | None, int | None]:
    present = [k for k in kinds if d.get(k) is not None]
    if not present:
        w.error(path, v.required("must specify a handler type"))
        return None, None
    for extra in present[1:]:
        w.error(child(path, extra), v.forbidden("may not specify more than 1 handler type"))
    kind = present[0]
    p = child(path, kind)
    if kind == "exec":
        d2 = w.mapping(d[kind], p, fields("command")) or {}
        command = w.str_list(d2, "command", p)
        if not command:
            w.error(child(p, "command"), v.required())
        return model.ExecAction(command), None
    if kind == "httpGet":
        d2 = w.mapping(d[kind], p, HTTP_GET_FIELDS) or {}
        headers = []
        for hp, h in w.objects(d2, "httpHeaders", p, fields("name", "value")):
            name = w.str_(h, "name", hp)
            if not _HTTP_HEADER.fullmatch(name):
                w.error(
                    child(p, "httpHeaders"),
                    v.invalid(
                        name,
                        "a valid HTTP header must consist of alphanumeric characters or '-' "
                        "(e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                    ),
                )
            headers.append(model.HTTPHeader(name, w.str_(h, "value", hp)))
        scheme = w.str_(d2, "scheme", p) or "HTTP"
        if scheme not in ("HTTP", "HTTPS"):
            w.error(child(p, "scheme"), v.unsupported(scheme, ["HTTP", "HTTPS"]))
        return (
            model.HTTPGetAction(
                port=_port(w, d2, p),
                path=w.str_(d2, "path", p) or "/",
                host=w.str_(d2, "host", p),
                scheme=scheme,
                http_headers=tuple(headers),
            ),
            None,
        )
    if kind == "tcpSocket":
        d2 = w.mapping(d[kind], p, fields("port", "host")) or {}
        return model.TCPSocketAction(_port(w, d2, p), w.str_(d2, "host", p)), None
    if kind == "grpc":
        d2 = w.mapping(d[kind], p, fields("port", "service")) or {}
        port = w.int_(d2, "port", p, 0)
        for msg in v.port_number(port):
            w.error(child(p, "port"), v.invalid(port, msg))
        return model.GRPCAction(port, w.str_(d2, "service", p)), None
    d2 = w.mapping(d[kind], p, fields("seconds")) or {}
    seconds = w.int_(d2, "seconds", p, 0)
    if seconds <= 0 or seconds > grace:
        w.error(
            p,
            v.invalid(
                seconds,
                f"must be greater than 0 and less than terminationGracePeriodSeconds ({v.fmt(grace)})",
            ),
        )
    return model.ExecAction(()), seconds


_HTTP_HEADER = re.compile(r"[-A-Za-z0-9]+")


def _probe(w: Walker, c: Raw, name: str, cpath: str, grace: int) -> model.Probe | None:
    path = child(cpath, name)
    pr = w.obj(c, name, cpath, PROBE_FIELDS)
    if pr is None:
        return None
    handler, _ = _handler(w, pr, path, ("exec", "httpGet", "tcpSocket", "grpc"), grace)
    values = {}
    for field_name, default in (
        ("initialDelaySeconds", 0),
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        value = w.int_(pr, field_name, path, 0)
        if value < 0:
            w.error(child(path, field_name), v.invalid(value, _NONNEGATIVE))
        values[field_name] = value or default  # SetDefaults_Probe: zero means the default
    if name != "readinessProbe" and values["successThreshold"] != 1:
        w.error(child(path, "successThreshold"), v.invalid(values["successThreshold"], "must be 1"))
    probe_grace = w.opt_int(pr, "terminationGracePeriodSeconds", path)
    if probe_grace is not None:
        if name == "readinessProbe":
            w.error(
                child(path, "terminationGracePeriodSeconds"),
                v.invalid(probe_grace, "must not be set for readinessProbes"),
            )
        elif probe_grace <= 0:
            w.error(
                child(path, "terminationGracePeriodSeconds"), v.invalid(probe_grace, "must be greater than 0")
            )
    if handler is None:
        return None
    return model.Probe(
        handler=handler,
        initial_delay_seconds=values["initialDelaySeconds"],
        timeout_seconds=values["timeoutSeconds"],
        period_seconds=values["periodSeconds"],
        success_threshold=values["successThreshold"],
        failure_threshold=values["failureThreshold"],
        termination_grace_period_seconds=probe_grace,
    )


def _lifecycle(w: Walker, c: Raw, cpath: str, grace: int) -> model.Lifecycle | None:
    path = child(cpath, "lifecycle")
    lc = w.obj(c, "lifecycle", cpath, LIFECYCLE_FIELDS)
    if lc is None:
        return None
    if lc.get("stopSignal") is not None:
        w.str_(lc, "stopSignal", path)
        w.warn(child(path, "stopSignal"), "containers are stopped with SIGTERM, then SIGKILL; ignored")
    hooks: dict[str, model.LifecycleHandler | None] = {}
    for hook in ("postStart", "preStop"):
        raw = w.obj(lc, hook, path, HANDLER_FIELDS)
        if raw is None:
            hooks[hook] = None
            continue
        handler, sleep = _handler(w, raw, child(path, hook), ("exec", "httpGet", "tcpSocket", "sleep"), grace)
        if isinstance(handler, model.TCPSocketAction):
            # Kubernetes keeps the field for compatibility only: the kubelet never runs it
            w.warn(child(child(path, hook), "tcpSocket"), "tcpSocket lifecycle hooks are not run; ignored")
        hooks[hook] = None if handler is None else model.LifecycleHandler(handler, sleep)
    return model.Lifecycle(post_start=hooks["postStart"], pre_stop=hooks["preStop"])


# --- ConfigMap and Secret ----------------------------------------------------------------------


def _check_keys(
    w: Walker, keys: Iterable[str], field_name: str, other: Mapping[str, object], other_name: str
) -> None:
    for k in keys:
        kp = v.key(field_name, k)
        for msg in v.config_map_key(k):
            w.error(kp, v.invalid(k, msg))
        if k in other:
            w.error(kp, v.invalid(k, f"duplicate of key present in {other_name}"))


def _configmap(w: Walker, d: Raw) -> model.ConfigMap:
    meta = _object_meta(w, d)
    data = w.str_map(d, "data", "")
    binary: dict[str, bytes] = {}
    raw_binary = w.obj(d, "binaryData", "") or {}
    for k, val in raw_binary.items():
        decoded = _base64(w, val, v.key("binaryData", k))
        if decoded is not None:
            binary[k] = decoded
    _check_keys(w, data, "data", binary, "binaryData")
    _check_keys(w, binary, "binaryData", data, "data")
    w.opt_bool(d, "immutable", "")
    if sum(len(x) for x in data.values()) + sum(len(x) for x in binary.values()) > _MAX_SECRET_SIZE:
        w.error("", v.too_long(_MAX_SECRET_SIZE))
    return model.ConfigMap(metadata=meta, data=data, binary_data=binary)


def _base64(w: Walker, raw: object, path: str) -> bytes | None:
    """Decode like Go's base64.StdEncoding (newlines ignored); never echo the (secret) value."""
    if raw is None:
        return b""
    if not isinstance(raw, str):
        w.error(path, v.invalid("<hidden>", "must be a base64-encoded string"))
        return None
    try:
        return base64.b64decode(raw.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        w.error(path, "Invalid value: <hidden>: illegal base64 data")
        return None


_SECRET_REQUIRED_KEYS: Mapping[str, tuple[str, ...]] = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _secret(w: Walker, d: Raw) -> model.Secret:
    meta = _object_meta(w, d)
    data: dict[str, bytes] = {}
    for k, val in (w.obj(d, "data", "") or {}).items():
        decoded = _base64(w, val, v.key("data", k))
        if decoded is not None:
            data[k] = decoded
    string_data = w.str_map(d, "stringData", "")
    for k, s in string_data.items():  # the API server merges stringData over data
        data[k] = s.encode()
    for k in data:
        for msg in v.config_map_key(k):
            w.error(v.key("data", k), v.invalid(k, msg))
    typ = w.str_(d, "type", "") or "Opaque"
    for required_key in _SECRET_REQUIRED_KEYS.get(typ, ()):
        if required_key not in data:
            w.error(v.key("data", required_key), v.required())
    if typ == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" in data:
        try:
            json.loads(data[".dockerconfigjson"])
        except ValueError as exc:
            w.error("data[.dockerconfigjson]", v.invalid("<secret contents redacted>", str(exc)))
    if typ == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        w.error("data[username]", v.required("must have at least one of username or password"))
    if typ == "kubernetes.io/service-account-token":
        w.warn("type", CONDITIONAL_WARNINGS["Secret type kubernetes.io/service-account-token"])
    w.opt_bool(d, "immutable", "")
    if sum(len(x) for x in data.values()) > _MAX_SECRET_SIZE:
        w.error("data", v.too_long(_MAX_SECRET_SIZE))
    return model.Secret(metadata=meta, data=data, type=typ)
