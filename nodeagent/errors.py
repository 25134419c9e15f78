"""One exception tree for nodeagent; callers catch these, never a transport library's own errors.

Every error nodeagent raises on purpose is a NodeAgentError. The base classes live here; a subclass
lives next to the code that raises it (named below with its module), so the raiser and its error
change together. tests/unit/test_errors.py checks that every exception class in nodeagent is listed
here and sits in this tree.

NodeAgentError
├── ConfigError                 the agent's config (or a file it names) is missing, unparsable or invalid;
│   │                           the message names the key. CLI: `nodeagent: <message>`, exit 2 (usage)
│   ├── KeyFileError            sources/signing.py: a minisign key file is unreadable or not a key
│   └── StoreError              fleet/store.py: `serve --state-dir` cannot be used (exit 2)
├── SourceError                 a source could not be read this time; its last good snapshot stays
│   ├── FetchError              sources/http.py: one request failed (connect, TLS, timeout, size, HTTP)
│   │   └── HttpStatusError     sources/http.py: the server answered a non-2xx status (a status post)
│   └── SignatureError          sources/signing.py: a bundle's signature is missing, bad or another key's
├── ContainerRuntimeError       the container runtime refused or failed an operation
│   ├── RuntimeUnavailable      the engine does not answer
│   ├── ImagePullError          an image could not be pulled (ErrImagePull / ImagePullBackOff)
│   └── ExecTimeout             runtime/__init__.py: an exec outlived its timeout (a failed exec probe)
├── PodConfigError              agent/podconfig.py: a pod cannot become containers (Kubernetes would fail it)
├── VolumeError                 agent/volumes.py: a volume could not be prepared
├── LocalImageError             agent/localimage.py: the offline image cannot be built (no static busybox)
├── QuantityError               k8s/quantity.py: not a Kubernetes quantity (also a ValueError)
├── ReportError                 fleet/view.py: a node's status report has the wrong shape (also a ValueError)
├── RolloutError                fleet/controller.py: a bad rollout request: 400 (also a ValueError)
├── SelectorError               fleet/annotations.py: a rollout annotation's selector (also a ValueError)
└── OpsError                    cli/ops.py: events/describe/logs cannot answer. CLI: `error: ...`, exit 1

Where they end up: a ConfigError at start stops the command with exit 2 (`run` keeps its previous
config on a bad reload); a failed action (runtime, pod config, volume) is that action's result, shown
in `sync`/`status` and events, and makes `sync` exit 1; a SourceError keeps the source's last good
snapshot; a ReportError is the fleet server's 400. Manifest problems are not exceptions: the loader
returns them as Problems (file, document, field path), and a bad document never removes what runs.

Two loader-internal signals stay outside the tree on purpose and never leave k8s/manifests:
DocumentBoundError (a yaml.YAMLError, so it is caught with YAML's own errors) and NotRegularFile (an
OSError, caught with the read's own errors).
"""

from __future__ import annotations


class NodeAgentError(Exception):
    """Base of every error nodeagent raises on purpose."""


class ConfigError(NodeAgentError):
    """The agent config is invalid; the message names the key."""


class SourceError(NodeAgentError):
    """A source failed this time; its last good snapshot stays in force."""


class ContainerRuntimeError(NodeAgentError):
    """The container runtime failed an operation."""


class RuntimeUnavailable(ContainerRuntimeError):
    """The container runtime does not answer."""


class ImagePullError(ContainerRuntimeError):
    """An image could not be pulled."""
