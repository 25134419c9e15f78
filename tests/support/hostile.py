"""Hostile inputs shared by the unit and fault suites."""

from __future__ import annotations

import itertools

_LEVELS = "abcdefghi"
_LOL = ",".join(['"lol"'] * 9)


def alias_bomb(field: str = "x", namespace: str | None = None) -> str:
    """A ConfigMap whose unknown `field` holds nine levels of nested YAML aliases (9**9 strings when
    expanded): nine short lines that a loader without an alias bound turns into gigabytes."""
    meta = "{name: bomb}" if namespace is None else f"{{name: bomb, namespace: {namespace}}}"
    lines = [f"  a: &a [{_LOL}]"]
    for prev, cur in itertools.pairwise(_LEVELS):
        refs = ",".join([f"*{prev}"] * 9)
        lines.append(f"  {cur}: &{cur} [{refs}]")
    head = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {meta}\ndata: {{k: v}}\n{field}:\n"
    return head + "\n".join(lines) + "\n"
