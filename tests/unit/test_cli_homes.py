"""One home each: the problem-to-JSON shape, the DaemonSetStatus counters, the terminal-safe tables."""

from __future__ import annotations

import io

from nodeagent.agent import status
from nodeagent.cli import parser, views
from nodeagent.fleet import view
from nodeagent.k8s import model

PROBLEM = model.Problem("ds.yaml", 0, "DaemonSet", "x", "spec.template", "bad")


def test_problem_json_keys_per_output() -> None:
    """`validate` and serve locate a problem by `file`; `plan`/`sync` by `source`, like their DaemonSets."""
    rest = {"document": 0, "kind": "DaemonSet", "name": "x", "path": "spec.template", "message": "bad"}
    assert PROBLEM.to_json() == {"file": "ds.yaml", **rest}
    assert PROBLEM.to_json("source") == {"source": "ds.yaml", **rest}


def test_daemonset_status_json_follows_the_counters() -> None:
    s = status.DaemonSetStatus("ns", "d", "<none>", 1, 2, 3, 4, 5, 6, ())
    doc = s.to_json()
    assert [k for k in doc if k in status.COUNTERS] == list(status.COUNTERS)
    assert [doc[k] for k in status.COUNTERS] == [1, 2, 3, 4, 5, 6]
    assert view.COUNTERS is status.COUNTERS


def test_fleet_table_counters_in_column_order() -> None:
    out = io.StringIO()
    ds = {"namespace": "ns", "name": "d", **dict(zip(status.COUNTERS, range(1, 7), strict=True))}
    views.print_fleet({"daemonSets": [ds], "nodes": []}, out)
    assert out.getvalue().splitlines()[1].split()[:8] == ["ns", "d", "1", "2", "3", "4", "5", "6"]


def test_table_neutralises_terminal_escapes_unless_told_not_to() -> None:
    cleaned, raw = io.StringIO(), io.StringIO()
    views.table([["NAME"], ["evil\x1b[2J"]], cleaned)
    views.table([["NAME"], ["tab\there"]], raw, clean_cells=False)
    assert "\x1b" not in cleaned.getvalue() and "evil?[2J" in cleaned.getvalue()
    assert "tab\there" in raw.getvalue()


def test_parser_registers_every_command() -> None:
    sub = next(a for a in parser.build()._actions if a.dest == "command")
    assert set(sub.choices or ()) == {
        "validate",
        "plan",
        "sync",
        "run",
        "status",
        "orphan",
        "delete",
        "serve",
        "node",
        "sign",
        "events",
        "describe",
        "logs",
        "rollout",
        "version",
    }
