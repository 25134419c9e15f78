"""stateDir files (agent/statefiles.py): what one process leaves for another reads back as it was written;
unreadable files read as empty; a save never raises and never leaves half a file or a temporary behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodeagent.agent import plan, statefiles, workers


def test_failures_round_trip_and_unreadable_reads_empty(tmp_path: Path) -> None:
    failures = {
        ("kube-system", "agent-1", "main"): plan.Failure(3, 1000.5, "ErrImagePull", "no such image"),
        ("kube-system", "agent-1", "side"): plan.Failure(1, 1001.5, "CreateContainerError", "boom"),
    }
    statefiles.save_failures(str(tmp_path), failures)
    assert statefiles.load_failures(str(tmp_path)) == failures
    (tmp_path / statefiles.FAILURES_FILE).write_text('[{"namespace": "a"}]')
    assert statefiles.load_failures(str(tmp_path)) == {}
    assert statefiles.load_failures(str(tmp_path / "absent")) == {}


def test_a_failure_an_older_agent_kept_per_pod_reads_with_no_container(tmp_path: Path) -> None:
    old = [
        {"namespace": "ns", "pod": "p-1", "count": 2, "last": 5.0, "reason": "ErrImagePull", "message": "m"}
    ]
    (tmp_path / statefiles.FAILURES_FILE).write_text(json.dumps(old))
    assert statefiles.load_failures(str(tmp_path)) == {
        ("ns", "p-1", ""): plan.Failure(2, 5.0, "ErrImagePull", "m")
    }


def test_probes_keep_readiness_only(tmp_path: Path) -> None:
    health = {"c1": plan.Health(ready=True, ready_since=5.0, message="ok"), "c2": plan.Health(ready=False)}
    statefiles.save_json(str(tmp_path), statefiles.PROBES_FILE, statefiles.probes_doc(health))
    assert statefiles.load_probes(str(tmp_path)) == {
        "c1": plan.Health(ready=True, ready_since=5.0),
        "c2": plan.Health(ready=False),
    }
    (tmp_path / statefiles.PROBES_FILE).write_text("[1, 2]")
    assert statefiles.load_probes(str(tmp_path)) == {}


def test_ownership_round_trip(tmp_path: Path) -> None:
    own = plan.Ownership(
        policy={"DaemonSet/ns/a": plan.POLICY_COMMAND},
        owners={("ns", "a-1"): plan.ORPHANED, ("ns", "b-1"): "DaemonSet/ns/b"},
    )
    statefiles.save_ownership(str(tmp_path), own)
    assert statefiles.load_ownership(str(tmp_path)) == own
    (tmp_path / statefiles.OWNERSHIP_FILE).write_text('{"pods": [{"pod": "x"}]}')
    assert statefiles.load_ownership(str(tmp_path)) == plan.Ownership()


def test_workers_of_a_gone_agent_are_ignored(tmp_path: Path) -> None:
    unit = workers.Busy("DaemonSet/ns/a", (("ns", "a-1"),), (("ns", "a-1"),), "Terminating", 1.0, 40.0)
    busy = {unit.owner: unit}
    statefiles.save_workers(str(tmp_path), busy)
    assert statefiles.load_workers(str(tmp_path)) == busy
    doc = json.loads((tmp_path / statefiles.WORKERS_FILE).read_text())
    doc["pid"] = 2**22 + 12345  # above pid_max's usual ceiling: no such process
    (tmp_path / statefiles.WORKERS_FILE).write_text(json.dumps(doc))
    assert statefiles.load_workers(str(tmp_path)) == {}


def test_write_atomic_leaves_the_old_file_and_no_temporary_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    statefiles.write_atomic(str(target), "old")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        statefiles.write_atomic(str(target), "new")
    statefiles.save_json(str(tmp_path), "f.json", ["new"])  # logged, never raised
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


def test_save_json_logs_instead_of_raising(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    statefiles.save_json(str(blocker / "state"), statefiles.FAILURES_FILE, [])  # stateDir under a file
    assert statefiles.load_failures(str(blocker / "state")) == {}
