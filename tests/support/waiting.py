"""The one bounded poll every test uses: tests wait on a condition, never on the clock."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> bool:
    """Poll `predicate` until it is truthy; True then (so `assert wait_for(...)` reads well), else an
    AssertionError naming `what` after `timeout` seconds. Under load a condition may take longer than
    usual: pass a generous timeout rather than asserting on elapsed time."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
