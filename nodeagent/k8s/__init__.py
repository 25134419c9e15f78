"""Kubernetes semantics, pure: the typed model, manifest decoding and validation, quantities, scheduling,
the node object and Pod Security policy. No I/O and no Docker here; the agent and the fleet build on it.
"""
