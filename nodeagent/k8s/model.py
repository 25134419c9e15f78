"""Typed, frozen views of the Kubernetes objects nodeagent understands.

Only `manifests` builds these from raw YAML/JSON; everything else reads them. Field names are the
Kubernetes field names in snake_case; values are already *defaulted* the way the API server defaults
them (imagePullPolicy by tag, protocol TCP, restartPolicy Always, ...), so consumers never re-derive
defaults. Lists are tuples and maps are plain dicts that nobody mutates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from nodeagent.k8s import quantity

# --- metadata and selectors -------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""


@dataclass(frozen=True)
class LabelSelectorRequirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


# --- scheduling -------------------------------------------------------------------------------

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str  # one of TaintEffect
    value: str = ""


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"  # Equal or Exists (defaulted)
    value: str = ""
    effect: str = ""  # "" matches every effect
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class NodeSelectorRequirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist, Gt, Lt
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSelectorTerm:
    match_expressions: tuple[NodeSelectorRequirement, ...] = ()
    match_fields: tuple[NodeSelectorRequirement, ...] = ()


@dataclass(frozen=True)
class PreferredSchedulingTerm:
    weight: int
    preference: NodeSelectorTerm


@dataclass(frozen=True)
class NodeAffinity:
    # None: no required terms at all (everything matches); () cannot happen after validation.
    required: tuple[NodeSelectorTerm, ...] | None = None
    preferred: tuple[PreferredSchedulingTerm, ...] = ()


@dataclass(frozen=True)
class Affinity:
    node_affinity: NodeAffinity | None = None
    has_pod_affinity: bool = False
    has_pod_anti_affinity: bool = False


# --- containers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectFieldSelector:
    field_path: str
    api_version: str = "v1"


@dataclass(frozen=True)
class ResourceFieldSelector:
    resource: str
    container_name: str = ""
    divisor: quantity.Quantity | None = None


@dataclass(frozen=True)
class KeySelector:
    """configMapKeyRef / secretKeyRef."""

    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class EnvVarSource:
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""
    value_from: EnvVarSource | None = None


@dataclass(frozen=True)
class LocalObjectReference:
    name: str
    optional: bool = False


@dataclass(frozen=True)
class EnvFromSource:
    prefix: str = ""
    config_map_ref: LocalObjectReference | None = None
    secret_ref: LocalObjectReference | None = None


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    name: str = ""
    host_port: int = 0
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(frozen=True)
class ResourceRequirements:
    limits: Mapping[str, quantity.Quantity] = field(default_factory=dict)
    requests: Mapping[str, quantity.Quantity] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""
    sub_path_expr: str = ""
    mount_propagation: str = "None"  # None, HostToContainer, Bidirectional


@dataclass(frozen=True)
class ExecAction:
    command: tuple[str, ...]


@dataclass(frozen=True)
class HTTPHeader:
    name: str
    value: str


@dataclass(frozen=True)
class HTTPGetAction:
    port: int | str
    path: str = "/"
    host: str = ""
    scheme: str = "HTTP"
    http_headers: tuple[HTTPHeader, ...] = ()


@dataclass(frozen=True)
class TCPSocketAction:
    port: int | str
    host: str = ""


@dataclass(frozen=True)
class GRPCAction:
    port: int
    service: str = ""


ProbeHandler = ExecAction | HTTPGetAction | TCPSocketAction | GRPCAction


@dataclass(frozen=True)
class Probe:
    handler: ProbeHandler
    initial_delay_seconds: int = 0
    timeout_seconds: int = 1
    period_seconds: int = 10
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None


@dataclass(frozen=True)
class LifecycleHandler:
    handler: ProbeHandler  # exec, httpGet or tcpSocket (sleep is mapped to exec-free wait)
    sleep_seconds: int | None = None


@dataclass(frozen=True)
class Lifecycle:
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


@dataclass(frozen=True)
class Capabilities:
    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


# Fields that nodeagent does not apply but that a source's policy checks (nodeagent.k8s.policy). They are
# left out of the spec hash (identity.spec_hash): changing them changes nothing that runs, and adding
# them must not make every running pod look outdated.
NOT_HASHED = {"hash": False}


@dataclass(frozen=True)
class SELinuxOptions:
    user: str = ""
    role: str = ""
    type: str = ""
    level: str = ""


@dataclass(frozen=True)
class SecurityContext:
    privileged: bool | None = None
    capabilities: Capabilities | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    seccomp_profile: str | None = None  # RuntimeDefault, Unconfined, Localhost
    proc_mount: str | None = None
    seccomp_localhost_profile: str | None = None  # the profile file when seccomp_profile is Localhost
    se_linux_options: SELinuxOptions | None = field(default=None, metadata=NOT_HASHED)
    windows_host_process: bool | None = field(default=None, metadata=NOT_HASHED)
    app_armor_profile: str | None = field(default=None, metadata=NOT_HASHED)  # its type


@dataclass(frozen=True)
class Sysctl:
    name: str
    value: str


@dataclass(frozen=True)
class PodSecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()
    seccomp_profile: str | None = None
    seccomp_localhost_profile: str | None = None  # the profile file when seccomp_profile is Localhost
    se_linux_options: SELinuxOptions | None = field(default=None, metadata=NOT_HASHED)
    windows_host_process: bool | None = field(default=None, metadata=NOT_HASHED)
    app_armor_profile: str | None = field(default=None, metadata=NOT_HASHED)  # its type


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    image_pull_policy: str = "IfNotPresent"  # defaulted: Always for :latest or no tag
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str = ""
    ports: tuple[ContainerPort, ...] = ()
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFromSource, ...] = ()
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)
    volume_mounts: tuple[VolumeMount, ...] = ()
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    security_context: SecurityContext | None = None
    restart_policy: str = ""  # init containers only: "Always" makes a sidecar
    stdin: bool = False
    tty: bool = False


# --- volumes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyToPath:
    key: str
    path: str
    mode: int | None = None


@dataclass(frozen=True)
class HostPathVolumeSource:
    path: str
    type: str = ""  # "", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice


@dataclass(frozen=True)
class EmptyDirVolumeSource:
    medium: str = ""  # "" or Memory
    size_limit: quantity.Quantity | None = None


@dataclass(frozen=True)
class ConfigMapVolumeSource:
    name: str
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = 0o644
    optional: bool = False


@dataclass(frozen=True)
class SecretVolumeSource:
    secret_name: str
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = 0o644
    optional: bool = False


@dataclass(frozen=True)
class DownwardAPIVolumeFile:
    path: str
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


@dataclass(frozen=True)
class DownwardAPIVolumeSource:
    items: tuple[DownwardAPIVolumeFile, ...] = ()
    default_mode: int = 0o644


@dataclass(frozen=True)
class ServiceAccountTokenProjection:
    path: str
    audience: str = ""
    expiration_seconds: int = 3600


@dataclass(frozen=True)
class VolumeProjection:
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = None
    service_account_token: ServiceAccountTokenProjection | None = None


@dataclass(frozen=True)
class ProjectedVolumeSource:
    sources: tuple[VolumeProjection, ...] = ()
    default_mode: int = 0o644


@dataclass(frozen=True)
class UnsupportedVolumeSource:
    """A volume type that has no meaning on a lone Docker host (csi, nfs, persistentVolumeClaim, ...)."""

    type: str


VolumeSource = (
    HostPathVolumeSource
    | EmptyDirVolumeSource
    | ConfigMapVolumeSource
    | SecretVolumeSource
    | DownwardAPIVolumeSource
    | ProjectedVolumeSource
    | UnsupportedVolumeSource
)


@dataclass(frozen=True)
class Volume:
    name: str
    source: VolumeSource
    # the type as written (`nfs`, `csi`, ...), where `source` stands in for it (an unsupported type
    # becomes an emptyDir); "" when `source` is the type written
    declared_type: str = field(default="", metadata=NOT_HASHED)


# --- pods and daemonsets ----------------------------------------------------------------------


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    node_name: str = ""
    affinity: Affinity | None = None
    tolerations: tuple[Toleration, ...] = ()
    restart_policy: str = "Always"
    termination_grace_period_seconds: int = 30
    active_deadline_seconds: int | None = None
    dns_policy: str = "ClusterFirst"
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    hostname: str = ""
    subdomain: str = ""
    share_process_namespace: bool = False
    service_account_name: str = ""
    automount_service_account_token: bool | None = None
    priority_class_name: str = ""
    priority: int | None = None
    scheduler_name: str = "default-scheduler"
    security_context: PodSecurityContext = field(default_factory=PodSecurityContext)
    host_aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ip, hostnames)
    dns_nameservers: tuple[str, ...] = ()  # dnsConfig.nameservers
    dns_searches: tuple[str, ...] = ()  # dnsConfig.searches


@dataclass(frozen=True)
class PodTemplateSpec:
    metadata: ObjectMeta
    spec: PodSpec


@dataclass(frozen=True)
class RollingUpdateDaemonSet:
    max_unavailable: int | str = 1  # int or "NN%"
    max_surge: int | str = 0


@dataclass(frozen=True)
class DaemonSetUpdateStrategy:
    type: str = "RollingUpdate"  # RollingUpdate or OnDelete
    rolling_update: RollingUpdateDaemonSet | None = field(default_factory=RollingUpdateDaemonSet)


@dataclass(frozen=True)
class DaemonSetSpec:
    selector: LabelSelector
    template: PodTemplateSpec
    update_strategy: DaemonSetUpdateStrategy = field(default_factory=DaemonSetUpdateStrategy)
    min_ready_seconds: int = 0
    revision_history_limit: int = 10


@dataclass(frozen=True)
class DaemonSet:
    metadata: ObjectMeta
    spec: DaemonSetSpec
    kind: Literal["DaemonSet"] = "DaemonSet"


@dataclass(frozen=True)
class Pod:
    metadata: ObjectMeta
    spec: PodSpec
    kind: Literal["Pod"] = "Pod"


@dataclass(frozen=True)
class ConfigMap:
    metadata: ObjectMeta
    data: Mapping[str, str] = field(default_factory=dict)
    binary_data: Mapping[str, bytes] = field(default_factory=dict)
    kind: Literal["ConfigMap"] = "ConfigMap"


@dataclass(frozen=True)
class Secret:
    metadata: ObjectMeta
    data: Mapping[str, bytes] = field(default_factory=dict)  # stringData merged in, decoded
    type: str = "Opaque"
    kind: Literal["Secret"] = "Secret"

    def __repr__(self) -> str:  # never print secret values
        keys = ", ".join(sorted(self.data))
        return f"Secret({self.metadata.namespace}/{self.metadata.name}, keys=[{keys}])"


KubeObject = DaemonSet | Pod | ConfigMap | Secret


def object_key(obj: KubeObject) -> tuple[str, str, str]:
    """(kind, namespace, name): the identity of an object across sources and revisions."""
    return (obj.kind, obj.metadata.namespace, obj.metadata.name)


# --- problems found while loading -------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One validation error or warning, located as precisely as Kubernetes locates it."""

    file: str
    document: int | None  # 0-based index of the YAML document, None for file-level problems
    kind: str
    name: str
    path: str  # field path, e.g. spec.template.spec.containers[0].image
    message: str
    severity: Literal["error", "warning"] = "error"

    @classmethod
    def of_file(cls, file: str, message: str) -> Problem:
        """An error of a whole file or source: no document, object or field to name."""
        return cls(file, None, "", "", "", message)

    def render(self) -> str:
        """`FILE[#DOC] KIND/NAME: FIELD.PATH: message`, the validate text format (ARCHITECTURE.md §5)."""
        where = self.file if self.document is None else f"{self.file}#{self.document}"
        what = f"{self.kind or '?'}/{self.name or '?'}"
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where} {what}: {text}"

    def to_json(self, where: Literal["file", "source"] = "file") -> dict[str, object]:
        """The problem as every JSON output writes it. `where` names the location key: `file` for
        `validate` and serve's fleet errors, `source` in `plan`/`sync` (beside their DaemonSets' `source`)."""
        return {
            where: self.file,
            "document": self.document,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "message": self.message,
        }


@dataclass(frozen=True)
class Document:
    """One parsed, valid object and where it came from."""

    obj: KubeObject
    file: str
    index: int


@dataclass(frozen=True)
class LoadResult:
    """What a file, directory or HTTP body yielded: valid objects, and problems."""

    documents: tuple[Document, ...] = ()
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    # (file, document index) pairs that failed: their previous good version must stay in force
    failed: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def failed_file(cls, file: str, message: str) -> LoadResult:
        """A file that yielded nothing but this error: its last good content stays in force."""
        return cls(errors=(Problem.of_file(file, message),), failed=((file, None),))

    @property
    def ok(self) -> bool:
        return not self.errors
