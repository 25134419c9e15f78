"""YAML/JSON manifests → defaulted model objects, validated the way the Kubernetes API server does.

This package is the only code that walks raw dicts. Everything it returns is a frozen `model` object with the
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

Layout, one module per concern: `loader` (the YAML dialect and its bounds), `files` (the only file
reading), `documents` (streams, `kind: List`, the kind dispatch), `tables` (kinds, warnings, schema),
`common` (checks several sections share), and one decoder per section: `metadata`, `workloads`
(DaemonSet and Pod top level), `podspec`, `security`, `affinity`, `volumes`, `downward`, `containers`,
`probes`, `configdata` (ConfigMap and Secret). Selector matching is in `nodeagent.k8s.selectors`.
This module only re-exports what the rest of nodeagent uses.
"""

from nodeagent.k8s.manifests.containers import default_pull_policy
from nodeagent.k8s.manifests.documents import load_text, parse_object
from nodeagent.k8s.manifests.files import (
    MAX_FILE,
    NotRegularFile,
    is_manifest_filename,
    load_file,
    load_paths,
    read_manifest_file,
)
from nodeagent.k8s.manifests.loader import LOADER, MAX_ALIAS_EXPANSION, DocumentBoundError
from nodeagent.k8s.manifests.metadata import validate_labels
from nodeagent.k8s.manifests.tables import (
    ANNOTATION_WARNINGS,
    CONDITIONAL_WARNINGS,
    CONTAINER_WARNINGS,
    POD_SPEC_WARNINGS,
    SECURITY_CONTEXT_WARNINGS,
    SUPPORTED_KINDS,
    UNSUPPORTED_VOLUME_TYPES,
    UNSUPPORTED_VOLUME_WARNING,
)
from nodeagent.k8s.manifests.workloads import selector_changed

__all__ = [
    "ANNOTATION_WARNINGS",
    "CONDITIONAL_WARNINGS",
    "CONTAINER_WARNINGS",
    "LOADER",
    "MAX_ALIAS_EXPANSION",
    "MAX_FILE",
    "POD_SPEC_WARNINGS",
    "SECURITY_CONTEXT_WARNINGS",
    "SUPPORTED_KINDS",
    "UNSUPPORTED_VOLUME_TYPES",
    "UNSUPPORTED_VOLUME_WARNING",
    "DocumentBoundError",
    "NotRegularFile",
    "default_pull_policy",
    "is_manifest_filename",
    "load_file",
    "load_paths",
    "load_text",
    "parse_object",
    "read_manifest_file",
    "selector_changed",
    "validate_labels",
]
