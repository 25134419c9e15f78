"""The `nodeagent.io/*` rollout annotations of a DaemonSet (pure): parsed into a rollout Policy, with
problems at their path `metadata.annotations[KEY]`. Used by `serve` (the rollout controller) and by
`nodeagent validate` (one hook in the manifest validation), so a bad annotation is found before it
is published. An annotation with a bad value is ignored (the default applies) and reported.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from nodeagent.fleet.rollout import Policy
from nodeagent.k8s import model, node

PREFIX = "nodeagent.io/"
CANARY = PREFIX + "canary"
PROGRESS_DEADLINE = PREFIX + "progress-deadline-seconds"
AUTO_ROLLBACK = PREFIX + "auto-rollback"
MAX_FAILURE_RATIO = PREFIX + "max-failure-ratio"
FAILURE_RATIO_MIN_NODES = PREFIX + "failure-ratio-min-nodes"
ROLL_CONFIG = PREFIX + "roll-config"
KNOWN = (CANARY, PROGRESS_DEADLINE, AUTO_ROLLBACK, MAX_FAILURE_RATIO, FAILURE_RATIO_MIN_NODES, ROLL_CONFIG)

_TERM = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s,=!()]+)"
    r"|(?P<key>[^\s,=!()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,=!()]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*(?:,|$)"
)


class SelectorError(ValueError):
    pass


def parse_selector(text: str) -> model.LabelSelector:
    """A kubectl `-l` label selector (`k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`)."""
    match_labels: dict[str, str] = {}
    exprs: list[model.LabelSelectorRequirement] = []
    pos = 0
    text = text.strip()
    if not text:
        raise SelectorError("must not be empty")
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"cannot parse the selector at character {pos + 1}")
        pos = m.end()
        key = m.group("nkey") or m.group("key")
        if node.label_key_error(key):
            raise SelectorError(f"label key {key!r}: {node.label_key_error(key)}")
        values = [m.group("value")] if m.group("op") else []
        if m.group("set"):
            values = [v.strip() for v in m.group("values").split(",") if v.strip()]
            if not values:
                raise SelectorError(f"{key} {m.group('set')} (): needs at least one value")
        for v in values:
            if node.label_value_error(v):
                raise SelectorError(f"label value {v!r}: {node.label_value_error(v)}")
        if m.group("not"):
            exprs.append(model.LabelSelectorRequirement(key, "DoesNotExist"))
        elif m.group("op") in ("=", "=="):
            match_labels[key] = values[0]
        elif m.group("op") == "!=":
            exprs.append(model.LabelSelectorRequirement(key, "NotIn", tuple(values)))
        elif m.group("set"):
            exprs.append(
                model.LabelSelectorRequirement(
                    key, "In" if m.group("set") == "in" else "NotIn", tuple(values)
                )
            )
        else:
            exprs.append(model.LabelSelectorRequirement(key, "Exists"))
    return model.LabelSelector(match_labels, tuple(exprs))


def _bool(value: str) -> bool | None:
    return {"true": True, "false": False}.get(value.strip().lower())


def policy(annotations: Mapping[str, str]) -> tuple[Policy, list[tuple[str, str]]]:
    """The rollout Policy of a DaemonSet, and its problems as (path, message)."""
    problems: list[tuple[str, str]] = []
    p = Policy()

    def bad(key: str, message: str) -> None:
        problems.append((f"metadata.annotations[{key}]", message))

    if CANARY in annotations:
        try:
            parse_selector(annotations[CANARY])
            p = Policy(canary=annotations[CANARY])
        except SelectorError as e:
            bad(CANARY, f"invalid label selector: {e}")
    if PROGRESS_DEADLINE in annotations:
        raw = annotations[PROGRESS_DEADLINE].strip()
        if raw.isdigit() and 0 < int(raw) <= 10**7:
            p = _with(p, progress_deadline=float(int(raw)))
        else:
            bad(PROGRESS_DEADLINE, "must be a whole number of seconds between 1 and 10000000")
    for key, name in ((AUTO_ROLLBACK, "auto_rollback"), (ROLL_CONFIG, "roll_config")):
        if key in annotations:
            b = _bool(annotations[key])
            if b is None:
                bad(key, 'must be "true" or "false"')
            else:
                p = _with(p, **{name: b})
    if MAX_FAILURE_RATIO in annotations:
        try:
            ratio = float(annotations[MAX_FAILURE_RATIO])
        except ValueError:
            ratio = -1.0
        if 0.0 <= ratio <= 1.0:
            p = _with(p, max_failure_ratio=ratio)
        else:
            bad(MAX_FAILURE_RATIO, "must be a number between 0 and 1")
    if FAILURE_RATIO_MIN_NODES in annotations:
        raw = annotations[FAILURE_RATIO_MIN_NODES].strip()
        if raw.isdigit() and int(raw) <= 1_000_000:
            p = _with(p, failure_ratio_min_nodes=int(raw))
        else:
            bad(FAILURE_RATIO_MIN_NODES, "must be a whole number between 0 and 1000000")
    for key in annotations:
        if key.startswith(PREFIX) and key not in KNOWN and key.split("/", 1)[1] in _ROLLOUT_LIKE:
            bad(key, f"unknown rollout annotation; known: {', '.join(KNOWN)}")
    return p, problems


_ROLLOUT_LIKE = ("canaries", "progress-deadline", "autorollback", "auto_rollback", "max-failure-rate")


def _with(p: Policy, **changes: object) -> Policy:
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


def problems(obj: object) -> list[tuple[str, str]]:
    """The annotation problems of a parsed object (only DaemonSets have rollout annotations)."""
    if isinstance(obj, model.DaemonSet):
        return policy(obj.metadata.annotations)[1]
    return []


def check(result: model.LoadResult) -> model.LoadResult:
    """A load result with every DaemonSet whose rollout annotations are bad moved to the errors (and to
    `failed`, so its previous good version stays in force): the hook `validate` and `serve` call."""
    keep: list[model.Document] = []
    errors = list(result.errors)
    failed = list(result.failed)
    for d in result.documents:
        found = problems(d.obj)
        if not found:
            keep.append(d)
            continue
        meta = d.obj.metadata
        errors += [model.Problem(d.file, d.index, d.obj.kind, meta.name, path, msg) for path, msg in found]
        failed.append((d.file, d.index))
    if len(keep) == len(result.documents):
        return result
    return dataclasses.replace(result, documents=tuple(keep), errors=tuple(errors), failed=tuple(failed))
