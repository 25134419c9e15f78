"""The replicas bench's wave measure (benchmarks/replicas_bench.py `wave_gaps`): how long a freed budget
slot waited to be handed on, read from samples of the leader's rollout counters."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
replicas_bench = importlib.import_module("replicas_bench")  # benchmarks/ is no package (nor type-checked)


def test_a_slot_freed_and_handed_on_within_one_poll_is_no_wait() -> None:
    # (time, assigned, available, phase): the pass that sees a node available hands out the next at once
    samples = [(0.0, 10, 0, "P"), (0.1, 11, 1, "P"), (2.0, 12, 2, "P"), (2.1, 12, 2, "P")]
    assert replicas_bench.wave_gaps(samples, 100) == [0.0, 0.0]


def test_a_slot_handed_on_later_waits_from_when_it_freed() -> None:
    samples = [(0.0, 10, 0, "P"), (0.1, 10, 1, "P"), (0.2, 10, 1, "P"), (0.6, 11, 1, "P"), (0.7, 11, 2, "P")]
    gaps = replicas_bench.wave_gaps(samples, 100)
    assert len(gaps) == 1 and abs(gaps[0] - 0.5) < 1e-9


def test_the_last_nodes_freeing_slots_with_nobody_left_are_not_counted() -> None:
    samples = [(0.0, 100, 98, "P"), (0.1, 100, 99, "P"), (0.2, 100, 100, "Complete")]
    assert replicas_bench.wave_gaps(samples, 100) == []


def test_waits_for_a_new_leader_are_the_failover_not_the_rollouts_pace() -> None:
    # (handed, freed): the leader is killed at 10.0 and the rollout moves again at 11.5
    pairs = [(5.3, 5.0), (10.2, 9.9), (11.6, 10.4), (11.7, 9.5), (12.1, 11.9)]
    own, failover = replicas_bench.split_failover(pairs, 10.0, 11.5)
    assert own == [h - a for h, a in ((5.3, 5.0), (12.1, 11.9))]
    # freed before the kill and handed after it, and freed while no replica led
    assert failover == [h - a for h, a in ((10.2, 9.9), (11.6, 10.4), (11.7, 9.5))]


def test_without_a_kill_every_wait_is_the_rollouts_own() -> None:
    assert replicas_bench.split_failover([(1.5, 1.0)], None, None) == ([0.5], [])
