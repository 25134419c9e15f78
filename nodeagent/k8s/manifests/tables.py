"""The tables the decoders read: the supported kinds, the warnings for valid fields nodeagent does not
honour (the README documents them from here), and the Kubernetes schema as far as nodeagent reads it
(a field outside these sets is warned about as `unknown field`, as kubectl's strict decoding does)."""

from __future__ import annotations

from collections.abc import Mapping

from nodeagent.k8s.validation import fields

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

# The types of Kubernetes' VolumeSource (k8s.io/api/core/v1): those nodeagent makes, then the others.
SUPPORTED_VOLUME_TYPES: tuple[str, ...] = (
    "hostPath",
    "emptyDir",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
)

VOLUME_TYPES: tuple[str, ...] = (
    *SUPPORTED_VOLUME_TYPES,
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

UNSUPPORTED_VOLUME_TYPES: tuple[str, ...] = VOLUME_TYPES[len(SUPPORTED_VOLUME_TYPES) :]

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

VOLUME_FIELDS = fields("name", *VOLUME_TYPES)

KEY_TO_PATH_FIELDS = fields("key", "path", "mode")

DOWNWARD_FILE_FIELDS = fields("path", "fieldRef", "resourceFieldRef", "mode")

TOLERATION_FIELDS = fields("key", "operator", "value", "effect", "tolerationSeconds")

NODE_SELECTOR_TERM_FIELDS = fields("matchExpressions", "matchFields")

REQUIREMENT_FIELDS = fields("key", "operator", "values")

LABEL_SELECTOR_FIELDS = fields("matchLabels", "matchExpressions")
