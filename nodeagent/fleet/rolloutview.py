"""How rollouts are shown (pure): the rollout columns of the fleet tables and the /metrics gauges, from
the rollout documents of `serve` (fleet/controller.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nodeagent.fleet import store

ROLLOUT_HEADERS = ("REVISION", "PHASE", "WAVE", "PENDING")


def rollout_cells(d: Mapping[str, Any]) -> list[str]:
    """The rollout columns of a DaemonSet row (fleet page, `status --server`): `current->update` revision
    (with `*` when undo/pause/restart made the served revision differ from the file), the phase, the
    nodes being updated now and the NotReady nodes waiting for the update."""
    if "phase" not in d:
        return ["-", "-", "-", "-"]
    cur, upd = d.get("currentRevision"), d.get("updateRevision")
    rev = f"{cur}" if cur == upd else f"{cur}->{upd}"
    if d.get("servedDiffersFromFile"):
        rev += "*"
    return [
        rev,
        str(d["phase"]),
        ",".join(d.get("wave") or []) or "-",
        ",".join(d.get("pendingNodes") or []) or "-",
    ]


def exposition(docs: Sequence[Mapping[str, Any]]) -> str:
    """The rollout gauges of /metrics (Prometheus text format), from rollout documents."""
    lines: list[str] = []
    gauges = (
        ("nodeagent_rollout_updated_nodes", "updatedNumberScheduled", "nodes on the update revision"),
        (
            "nodeagent_rollout_available_nodes",
            "numberAvailable",
            "nodes available on the update revision",
        ),
        (
            "nodeagent_rollout_desired_nodes",
            "desiredNumberScheduled",
            "nodes that should run the DaemonSet",
        ),
        ("nodeagent_rollout_exposed_nodes", "", "nodes handed the update revision in this rollout"),
        ("nodeagent_rollout_update_revision", "updateRevision", "the revision being rolled out"),
        ("nodeagent_rollout_current_revision", "currentRevision", "the last completed revision"),
    )
    lines += [
        "# HELP nodeagent_rollout_phase 1 for the rollout's phase",
        "# TYPE nodeagent_rollout_phase gauge",
    ]
    for d in docs:
        for phase in store.PHASES:
            lines.append(
                f'nodeagent_rollout_phase{{namespace="{d["namespace"]}",daemonset="{d["name"]}",'
                f'phase="{phase}"}} {int(d["phase"] == phase)}'
            )
    for name, field, help_ in gauges:
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
        for d in docs:
            value = d["blastRadius"]["exposedNodes"] if not field else d[field]
            lines.append(f'{name}{{namespace="{d["namespace"]}",daemonset="{d["name"]}"}} {value}')
    return "\n".join(lines) + "\n"
