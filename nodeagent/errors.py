"""One exception tree for nodeagent; callers catch these, never a transport library's own errors.

NodeAgentError
├── ConfigError            the agent's own config file is missing, unparsable or invalid (exit 2)
├── ManifestError          a manifest could not be loaded at all (the Problems carry the details)
├── SourceError            a source could not be read this time (its last good snapshot stays)
└── ContainerRuntimeError          the container runtime refused or failed an operation
    ├── RuntimeUnavailable the engine does not answer
    └── ImagePullError     an image could not be pulled (ErrImagePull / ImagePullBackOff)
"""

from __future__ import annotations


class NodeAgentError(Exception):
    """Base of every error nodeagent raises on purpose."""


class ConfigError(NodeAgentError):
    """The agent config is invalid; the message names the key."""


class ManifestError(NodeAgentError):
    """A manifest file could not be read or parsed."""


class SourceError(NodeAgentError):
    """A source failed this time; its last good snapshot stays in force."""


class ContainerRuntimeError(NodeAgentError):
    """The container runtime failed an operation."""


class RuntimeUnavailable(ContainerRuntimeError):
    """The container runtime does not answer."""


class ImagePullError(ContainerRuntimeError):
    """An image could not be pulled."""
