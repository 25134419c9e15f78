"""Small checks several sections share (paths, quantities, warned-about fields), so each lives once."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from nodeagent.k8s import quantity
from nodeagent.k8s import validation as v
from nodeagent.k8s.validation import Raw, Walker, child

FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"

NONNEGATIVE = "must be greater than or equal to 0"

INT32_MAX = 2147483647


def one_of(w: Walker, d: Raw, name: str, path: str, allowed: Sequence[str]) -> str | None:
    """An optional string field that must be one of `allowed` (None when absent)."""
    value = w.opt_str(d, name, path)
    if value is not None and value not in allowed:
        w.error(child(path, name), v.unsupported(value, allowed))
    return value


def required_name(
    w: Walker, d: Raw, path: str, check: Callable[[str], list[str]], field: str = "name"
) -> str:
    """A required string field (a name or key) checked by `check` (dns1123_label and the like)."""
    value = w.str_(d, field, path)
    if not value:
        w.error(child(path, field), v.required())
    for msg in check(value) if value else []:
        w.error(child(path, field), v.invalid(value, msg))
    return value


def warn_fields(w: Walker, d: Raw, path: str, table: Mapping[str, str]) -> None:
    """Warn about each present field of `table` (valid Kubernetes fields nodeagent ignores)."""
    for name, reason in table.items():
        if d.get(name) is not None:
            w.warn(child(path, name), reason)


def no_backsteps(w: Walker, target: str, path: str) -> None:
    """A path must not contain a `..` element (validation's validatePathNoBacksteps)."""
    if ".." in target.replace("\\", "/").split("/"):
        w.error(path, v.invalid(target, "must not contain '..'"))


def local_descending_path(w: Walker, target: str, path: str) -> None:
    """A relative path without backsteps (validateLocalDescendingPath)."""
    if target.startswith("/"):
        w.error(path, v.invalid(target, "must be a relative path"))
    no_backsteps(w, target, path)


def local_non_reserved_path(w: Walker, target: str, path: str) -> None:
    """validateLocalNonReservedPath: also must not start with `..`."""
    local_descending_path(w, target, path)
    if target.startswith("..") and not target.startswith("../"):
        w.error(path, v.invalid(target, "must not start with '..'"))


def quantity_field(w: Walker, d: Raw, name: str, path: str) -> quantity.Quantity | None:
    """The quantity in field `name` of `d`, if present and valid."""
    raw = d.get(name)
    if raw is None:
        return None
    return quantity_at(w, raw, child(path, name))


def quantity_at(w: Walker, raw: object, path: str) -> quantity.Quantity | None:
    """A resource quantity; huge exponents and lengths are refused before parsing."""
    if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int | float):
        w.error(
            path, v.invalid(raw if raw is None or isinstance(raw, bool) else "<object>", "must be a quantity")
        )
        return None
    exponent = _EXPONENT.search(raw) if isinstance(raw, str) else None
    if (isinstance(raw, str) and len(raw) > 100) or (exponent and abs(int(exponent.group(1))) > 100):
        w.error(path, v.invalid(raw, "quantity is out of range"))
        return None
    try:
        return quantity.parse(raw)
    except (quantity.QuantityError, ValueError, OverflowError) as exc:
        w.error(path, v.invalid(raw, str(exc)))
        return None


_EXPONENT = re.compile(r"[eE]([+-]?[0-9]{1,90})\s*$")
