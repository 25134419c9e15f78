"""The fleet: `nodeagent serve` (manifests over HTTP, node reports in), the fleet view built from those
reports, and the report format nodes send.
"""
