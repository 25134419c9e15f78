"""The Docker label scheme in one place: every label name, `encode` and `decode`.

Docker is the database: what a container is (pod, container, revision, attempt, role), how to stop it
(grace period, preStop hook) and how to plan its next attempt (backoff step) are labels on it, written
once at create (labels are immutable). `identity`, `plan`, `execute` and the runtimes use these names
and functions instead of spelling labels out. Decoding is lenient: a missing or mangled label of ours
reads as its default (it only shapes timing and order), so a container made by an older agent still
reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

MANAGED = "io.nodeagent.managed"
# the node (agent) a container belongs to: agents of other nodes sharing one engine never touch it
NODE = "io.nodeagent.node"
OWNER = "io.nodeagent.owner"
SPEC_HASH = "io.nodeagent.spec-hash"
ATTEMPT = "io.nodeagent.attempt"  # restart attempt, 0 for the first container
ROLE = "io.nodeagent.role"  # app, init or sandbox
INIT_INDEX = "io.nodeagent.init-index"
BACKOFF_STEP = "io.nodeagent.backoff-step"
# terminationGracePeriodSeconds of the pod a container was made for: a pod whose manifest is gone is
# still stopped with the grace period it asked for
GRACE = "io.nodeagent.grace-period"
# the DaemonSet selector a pod was made under: Kubernetes keeps it immutable, and an agent restarted after
# the selector was edited must still refuse the change
SELECTOR = "io.nodeagent.selector-hash"
# the pod template's labels (JSON): an orphaned pod is adopted by a DaemonSet whose selector matches them
POD_LABELS = "io.nodeagent.pod-labels"
# the container's lifecycle.preStop hook (JSON, execute.encode_hook): a pod whose manifest is gone still
# runs it before it is stopped, as the kubelet runs the deleted pod's own hook
PRE_STOP = "io.nodeagent.pre-stop"
# the labels Kubernetes' Docker integration used, so cAdvisor-style tools recognise our containers
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"

ROLE_APP = "app"
ROLE_INIT = "init"
ROLE_SANDBOX = "sandbox"


@dataclass(frozen=True)
class ContainerLabels:
    """Everything the labels of one managed container say, typed."""

    owner: str
    namespace: str
    pod: str
    container: str
    spec_hash: str
    attempt: int = 0
    role: str = ROLE_APP
    pod_uid: str = ""
    init_index: int | None = None
    backoff_step: int | None = None
    grace: int | None = None  # None: made before the label existed, or unreadable
    selector_hash: str = ""
    pod_labels: Mapping[str, str] | None = field(default=None)  # None: made before the label existed
    pre_stop: str = ""  # the hook as execute.encode_hook wrote it
    node: str = ""


def encode(c: ContainerLabels) -> dict[str, str]:
    out = {
        MANAGED: "true",
        OWNER: c.owner,
        SPEC_HASH: c.spec_hash,
        ATTEMPT: str(c.attempt),
        ROLE: c.role,
        POD_NAME: c.pod,
        POD_NAMESPACE: c.namespace,
        POD_UID: c.pod_uid,
        CONTAINER_NAME: c.container,
    }
    if c.init_index is not None:
        out[INIT_INDEX] = str(c.init_index)
    if c.backoff_step is not None:
        out[BACKOFF_STEP] = str(c.backoff_step)
    if c.grace is not None:
        out[GRACE] = str(c.grace)
    if c.selector_hash:
        out[SELECTOR] = c.selector_hash
    if c.pod_labels is not None:
        out[POD_LABELS] = json.dumps(dict(c.pod_labels), sort_keys=True)
    if c.pre_stop:
        out[PRE_STOP] = c.pre_stop
    if c.node:
        out[NODE] = c.node
    return out


def decode(labels: Mapping[str, str]) -> ContainerLabels:
    """The labels of a container (ours or not: check `managed` first); lenient, never raises."""
    return ContainerLabels(
        owner=labels.get(OWNER, ""),
        namespace=labels.get(POD_NAMESPACE, ""),
        pod=labels.get(POD_NAME, ""),
        container=labels.get(CONTAINER_NAME, ""),
        spec_hash=labels.get(SPEC_HASH, ""),
        attempt=integer(labels, ATTEMPT) or 0,
        role=labels.get(ROLE, ROLE_APP),
        pod_uid=labels.get(POD_UID, ""),
        init_index=integer(labels, INIT_INDEX),
        backoff_step=integer(labels, BACKOFF_STEP),
        grace=integer(labels, GRACE),
        selector_hash=labels.get(SELECTOR, ""),
        pod_labels=pod_labels(labels),
        pre_stop=labels.get(PRE_STOP, ""),
        node=labels.get(NODE, ""),
    )


def managed(labels: Mapping[str, str]) -> bool:
    return labels.get(MANAGED) == "true"


def integer(labels: Mapping[str, str], key: str) -> int | None:
    """A numeric label of ours; None when missing or mangled."""
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def pod_labels(labels: Mapping[str, str]) -> dict[str, str] | None:
    """The pod template's labels recorded on a container; None when absent or unreadable."""
    raw = labels.get(POD_LABELS)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else None
