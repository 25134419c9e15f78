"""structlog set-up: JSON lines when not on a terminal (journald), a colored console on a terminal.

Events are snake_case names (`action_applied`, `source_unavailable`) with bound context (daemonset, pod,
container, action, reason, source). Secret values must never reach a log line: callers log names, not
contents, and `redact` below is the safety net for keys that name credentials.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "json", "console")
REDACTED = "<redacted>"

# keys whose values are credentials; `secret` alone is a Secret's *name* in pod context, so it is kept
_SENSITIVE = re.compile(r"(?i)(token|password|passwd|authorization|credential|api_?key|private_?key)")


def redact(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the values of credential-named keys, so a careless `log.info(..., token=t)` leaks nothing."""
    for key in list(event_dict):
        if key != "event" and _SENSITIVE.search(key) and event_dict[key] not in (None, ""):
            event_dict[key] = REDACTED
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process; `fmt` is auto, json or console (auto: console on a TTY)."""
    out = sys.stderr if stream is None else stream
    tty = out.isatty()
    if fmt == "auto":
        fmt = "console" if tty else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            redact,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
