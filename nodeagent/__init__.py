"""nodeagent: run Kubernetes DaemonSets and static pods on a plain Docker host."""

__version__ = "0.1.0"
