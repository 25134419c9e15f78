"""Helpers shared by tests and the benchmark (not part of the nodeagent package)."""
