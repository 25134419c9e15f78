"""The agent's files in stateDir: what one process leaves for another (`status`, `sync`, `events`,
`describe` run beside `run`, or the next start). One home for their names, their formats and the one
atomic write they all use, so a reader never sees half a file.

- failures.json: recent create failures, per container (the planner keeps backing off; `status` says why)
- probes.json: readiness as the running agent's prober last saw it
- ownership.json: orphan-on-delete policies and orphaned/adopted pods (Docker labels cannot change)
- workers.json: the running agent's work in flight, with its pid
- events.json: the event store (its format and merging are `events`')

All of it shapes display and timing only: an unreadable file reads as empty, and a failed save is
logged, never raised.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog

from nodeagent import atomicfile
from nodeagent.agent import plan, workers

log = structlog.get_logger(__name__)

FAILURES_FILE = "failures.json"
PROBES_FILE = "probes.json"
OWNERSHIP_FILE = "ownership.json"
WORKERS_FILE = "workers.json"
EVENTS_FILE = "events.json"

T = TypeVar("T")


def write_atomic(path: str, text: str) -> None:
    """Write `path` through a temporary file in its directory and a rename; raises OSError."""
    atomicfile.write(path, text)


def save_json(state_dir: str, name: str, doc: object) -> None:
    """Write stateDir/name atomically; a failure is logged, never raised (these files shape display)."""
    path = os.path.join(state_dir, name)
    try:
        write_atomic(path, json.dumps(doc, sort_keys=True))
    except OSError as exc:
        log.warning("state_not_saved", path=path, error=exc.strerror or str(exc))


def _load_json(state_dir: str, name: str, parse: Callable[[Any], T], empty: T) -> T:
    """stateDir/name parsed; `empty` when it is missing, unreadable or not what `parse` expects."""
    try:
        with open(os.path.join(state_dir, name), encoding="utf-8") as fh:
            return parse(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, AssertionError):
        return empty


# --- failures.json -------------------------------------------------------------------------------


def load_failures(state_dir: str) -> dict[tuple[str, str, str], plan.Failure]:
    """Recent create failures by (namespace, pod, container), so `status` in another process shows why a
    pod is not running and a new `sync` keeps backing off; anything unreadable counts as no failures
    (they only shape timing). An entry without a container (an older agent's, per pod) reads as ""."""

    def parse(raw: Any) -> dict[tuple[str, str, str], plan.Failure]:
        return {
            (str(f["namespace"]), str(f["pod"]), str(f.get("container", ""))): plan.Failure(
                count=int(f["count"]),
                last=float(f["last"]),
                reason=str(f["reason"]),
                message=str(f["message"]),
            )
            for f in raw
        }

    return _load_json(state_dir, FAILURES_FILE, parse, {})


def save_failures(state_dir: str, failures: Mapping[tuple[str, str, str], plan.Failure]) -> None:
    doc = [
        {"namespace": ns, "pod": pod, "container": container, **dataclasses.asdict(f)}
        for (ns, pod, container), f in sorted(failures.items())
    ]
    save_json(state_dir, FAILURES_FILE, doc)


# --- probes.json ---------------------------------------------------------------------------------


def probes_doc(health: Mapping[str, plan.Health]) -> dict[str, dict[str, object]]:
    """What probes.json holds: each container's readiness (liveness restarts are the running agent's)."""
    return {cid: {"ready": h.ready, "readySince": h.ready_since} for cid, h in sorted(health.items())}


def load_probes(state_dir: str) -> dict[str, plan.Health]:
    """Readiness as the running agent last published it; anything unreadable counts as nothing known
    (then a container with a readiness probe shows not ready)."""

    def parse(raw: Any) -> dict[str, plan.Health]:
        return {
            str(cid): plan.Health(
                ready=bool(v["ready"]),
                ready_since=None if v.get("readySince") is None else float(v["readySince"]),
            )
            for cid, v in raw.items()
        }

    return _load_json(state_dir, PROBES_FILE, parse, {})


# --- ownership.json ------------------------------------------------------------------------------


def load_ownership(state_dir: str) -> plan.Ownership:
    """Orphan-on-delete policies and orphaned/adopted pods (stateDir/ownership.json).

    Docker labels cannot change, so who owns a pod after orphaning or adoption lives here; an unreadable
    file counts as empty (pods then belong to their owner label, as before orphaning).
    """

    def parse(raw: Any) -> plan.Ownership:
        return plan.Ownership(
            policy={str(k): str(v) for k, v in raw.get("orphanOnDelete", {}).items()},
            owners={(str(p["namespace"]), str(p["pod"])): str(p["owner"]) for p in raw.get("pods", [])},
        )

    return _load_json(state_dir, OWNERSHIP_FILE, parse, plan.Ownership())


def save_ownership(state_dir: str, new: plan.Ownership, old: plan.Ownership | None = None) -> None:
    """Save `new`, and log each pod orphaned or adopted since `old`."""
    doc = {
        "orphanOnDelete": dict(sorted(new.policy.items())),
        "pods": [{"namespace": ns, "pod": pod, "owner": o} for (ns, pod), o in sorted(new.owners.items())],
    }
    save_json(state_dir, OWNERSHIP_FILE, doc)
    before = old.owners if old is not None else {}
    for key, owner in sorted(new.owners.items()):
        if before.get(key) != owner:
            event = "pod_orphaned" if owner == plan.ORPHANED else "pod_adopted"
            log.info(event, namespace=key[0], pod=key[1], owner=owner or None)


# --- workers.json --------------------------------------------------------------------------------


def save_workers(state_dir: str, busy: Mapping[str, workers.Busy]) -> None:
    """stateDir/workers.json: the running agent's work in flight (Terminating pods, pulls, stuck units),
    with its pid so a file left by an agent that is gone is ignored."""
    doc = {"pid": os.getpid(), "workers": [b.to_json() for _, b in sorted(busy.items())]}
    save_json(state_dir, WORKERS_FILE, doc)


def load_workers(state_dir: str) -> dict[str, workers.Busy]:
    """What a running agent has in flight; nothing when the file is unreadable or its agent is gone."""

    def parse(raw: Any) -> dict[str, workers.Busy]:
        pid = int(raw["pid"])
        if pid != os.getpid() and not _alive(pid):
            return {}
        return {b.owner: b for b in (workers.Busy.from_json(w) for w in raw["workers"])}

    return _load_json(state_dir, WORKERS_FILE, parse, {})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return True
