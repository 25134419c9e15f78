"""Where the tests find the real-world DaemonSet corpus, and what happens when it is missing.

The corpus lives beside the project (``../shared/corpus/daemonsets``), not in it; NODEAGENT_CORPUS points the
tests at another copy. Outside CI a missing corpus skips the tests that need it (a fresh clone alone still
passes); under CI=true it fails them, so CI never passes by testing nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "corpus" / "daemonsets"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def corpus_dir() -> Path:
    """NODEAGENT_CORPUS, else <repo>/../shared/corpus/daemonsets."""
    env = os.environ.get("NODEAGENT_CORPUS")
    return Path(env) if env else DEFAULT


def corpus_files() -> list[Path]:
    """The corpus manifests, sorted; empty when the directory is missing."""
    directory = corpus_dir()
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def missing_reason() -> str:
    return (
        f"DaemonSet corpus not found at {corpus_dir()}: set NODEAGENT_CORPUS to a directory of its manifests "
        "(see README: DaemonSet corpus)"
    )


def require_corpus() -> Path:
    """The corpus directory; skips the calling test when it is missing, or fails it under CI=true."""
    directory = corpus_dir()
    if directory.is_dir() and corpus_files():
        return directory
    if in_ci():
        pytest.fail(f"{missing_reason()}; CI=true requires it")
    pytest.skip(missing_reason())


def corpus_params(make: Callable[[Path], Any]) -> list[Any]:
    """`make(path)` for every corpus file, for @pytest.mark.parametrize. Without a corpus, one placeholder
    (value None) whose test must call require_corpus() first: it then skips or, under CI=true, fails, where
    an empty parameter set would only skip."""
    files = corpus_files()
    if files:
        return [make(path) for path in files]
    return [pytest.param(None, id="no-corpus")]
