"""Kubernetes' field rules and error messages, and a typed walker over raw YAML values.

`manifests` builds model objects; this module holds what it needs to do that safely: the syntax checks
of k8s.io/apimachinery/pkg/util/validation (DNS labels, qualified names, label values, port names, env
names, config keys, percents) with Kubernetes' exact wording, the `field.Error` message formats
(`Required value`, `Invalid value: "x": ...`, `Unsupported value`, `Duplicate value`, `Not found`,
`Forbidden`), and `Walker`, which reads a raw value at a field path and turns every wrong type into a
Problem instead of an exception, so no input can make the loader raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeGuard, TypeVar

from nodeagent.k8s import model

T = TypeVar("T")

# --- message formats (k8s.io/apimachinery/pkg/util/validation/field) ---------------------------


def fmt(value: object) -> str:
    """A bad value printed the way field.Error prints it: strings quoted, numbers bare, objects as JSON."""
    if isinstance(value, _Kind):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int too long to print (Python's int max-str-digits guard)
            return "<number too large>"
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        return "<unprintable>"


def required(detail: str = "") -> str:
    return f"Required value: {detail}" if detail else "Required value"


def invalid(value: object, detail: str) -> str:
    return f"Invalid value: {fmt(value)}: {detail}"


def unsupported(value: object, supported: Iterable[str]) -> str:
    values = ", ".join(json.dumps(s) for s in supported)
    return f"Unsupported value: {fmt(value)}: supported values: {values}"


def duplicate(value: object) -> str:
    return f"Duplicate value: {fmt(value)}"


def not_found(value: object) -> str:
    return f"Not found: {fmt(value)}"


def forbidden(detail: str) -> str:
    return f"Forbidden: {detail}"


def too_long(limit: int) -> str:
    return f"Too long: must have at most {limit} bytes"


# --- syntax checks (k8s.io/apimachinery/pkg/util/validation) ------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_NAME = re.compile(_ENV_VAR_NAME_FMT)
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY = re.compile(_CONFIG_KEY_FMT)
_PORT_NAME_CHARS = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile("[a-z]")
_PERCENT_FMT = "[0-9]+%"
_PERCENT = re.compile(_PERCENT_FMT)


def _regex_error(msg: str, fmt_: str, examples: Iterable[str]) -> str:
    shown = ",  or ".join(f"'{e}'" for e in examples)
    return f"{msg} (e.g. {shown}, regex used for validation is '{fmt_}')"


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _syntax(
    value: str,
    limit: int | None,
    regex: re.Pattern[str],
    msg: str,
    examples: Sequence[str],
    hint: bool = True,
) -> list[str]:
    """The errors of one length-and-regex rule in apimachinery's words; `hint` adds its examples and regex
    (validation messages have them, the node's config errors do not)."""
    errs = [_max_len(limit)] if limit is not None and len(value) > limit else []
    if not regex.fullmatch(value):
        errs.append(_regex_error(msg, regex.pattern, examples) if hint else msg)
    return errs


_QNAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_QNAME_EXAMPLES = ("MyName", "my.name", "123-abc")


def dns1123_label(value: str) -> list[str]:
    return _syntax(
        value,
        63,
        _DNS1123_LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character",
        ["my-name", "123-abc"],
    )


def dns1123_subdomain(value: str, *, hint: bool = True) -> list[str]:
    return _syntax(
        value,
        253,
        _DNS1123_SUBDOMAIN,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character",
        ["example.com"],
        hint,
    )


def qualified_name(value: str, *, hint: bool = True) -> list[str]:
    """Label and annotation keys: an optional DNS-subdomain prefix and `/`, then a 63-character name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix, hint=hint))
    else:
        whole, tail = f"a qualified name {_QNAME_RULE}", " with an optional DNS subdomain prefix and '/'"
        if not hint:
            return [whole + tail]
        return [
            _regex_error(whole, _QUALIFIED_NAME.pattern, _QNAME_EXAMPLES)
            + tail
            + " (e.g. 'example.com/MyName')"
        ]
    if not name:
        return [*errs, "name part must be non-empty"]
    return errs + [
        "name part " + m for m in _syntax(name, 63, _QUALIFIED_NAME, _QNAME_RULE, _QNAME_EXAMPLES, hint)
    ]


def label_value(value: str, *, hint: bool = True) -> list[str]:
    return _syntax(
        value,
        63,
        _LABEL_VALUE,
        f"a valid label must be an empty string or {_QNAME_RULE.removeprefix('must ')}",
        ["MyValue", "my_value", "12345"],
        hint,
    )


def _dots(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def env_var_name(value: str) -> list[str]:
    return _syntax(
        value,
        None,
        _ENV_VAR_NAME,
        "a valid environment variable name must consist of alphabetic characters, digits, '_', "
        "'-', or '.', and must not start with a digit",
        ["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
    ) + _dots(value)


def config_map_key(value: str) -> list[str]:
    return _syntax(
        value,
        253,
        _CONFIG_KEY,
        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        ["key.name", "KEY_NAME", "key-name"],
    ) + _dots(value)


def port_name(value: str) -> list[str]:
    """IANA_SVC_NAME, as IsValidPortName checks it."""
    errs = []
    if len(value) > 15:
        errs.append(_max_len(15))
    if not _PORT_NAME_CHARS.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _PORT_NAME_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def small_int(text: str, limit: int = 18) -> int | None:
    """A plain decimal integer (optional sign, ASCII digits only) of at most `limit` digits, else None."""
    if re.fullmatch(f"[-+]?[0-9]{{1,{limit}}}", text) is None:
        return None
    return int(text)


_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_int64(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64): optional sign, ASCII decimal digits, within int64; else None."""
    if not _INT64.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def port_number(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def percent(value: str) -> list[str]:
    return _syntax(
        value,
        None,
        _PERCENT,
        "a valid percent string must be a numeric string followed by an ending '%'",
        ["1%", "93%"],
    )


# --- the walker -------------------------------------------------------------------------------


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


Raw = dict[str, object]


class Walker:
    """Reads raw values at field paths and collects problems; never raises on bad input.

    Problems are stored without kind/name (known only after metadata is read) and turned into
    model.Problem by `problems()`.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.errors: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append((path, message))

    def problems(
        self, file: str, document: int | None, kind: str, name: str
    ) -> tuple[list[model.Problem], list[model.Problem]]:
        def make(items: list[tuple[str, str]], sev: Literal["error", "warning"]) -> list[model.Problem]:
            out = []
            for path, message in items:
                full = f"{self.prefix}.{path}" if self.prefix and path else (self.prefix or path)
                out.append(model.Problem(file, document, kind, name, full, message, sev))
            return out

        return make(self.errors, "error"), make(self.warnings, "warning")

    # -- structure --

    def mapping(self, raw: object, path: str, known: frozenset[str] | None = None) -> Raw | None:
        """A JSON object, or None (absent or wrong type: reported). Unknown fields are warned about."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.error(path, invalid(_short(raw), "must be of type object"))
            return None
        out: Raw = {}
        for k, v in raw.items():
            if not isinstance(k, str):
                self.error(path, invalid(_short(k), "field names must be strings"))
                continue
            if known is not None and k not in known:
                self.warn(child(path, k), f'unknown field "{child(path, k)}"; ignored')
                continue
            out[k] = v
        return out

    def items(self, d: Raw, name: str, path: str) -> list[tuple[str, object]]:
        """The elements of the list at d[name] with their paths; [] if absent or not a list."""
        raw = d.get(name)
        p = child(path, name)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(p, invalid(_short(raw), "must be of type array"))
            return []
        return [(index(p, i), v) for i, v in enumerate(raw)]

    def objects(self, d: Raw, name: str, path: str, known: frozenset[str]) -> list[tuple[str, Raw]]:
        out = []
        for p, v in self.items(d, name, path):
            if v is None:
                self.error(p, invalid(None, "must be of type object"))
                continue
            m = self.mapping(v, p, known)
            if m is not None:
                out.append((p, m))
        return out

    def obj(self, d: Raw, name: str, path: str, known: frozenset[str] | None = None) -> Raw | None:
        return self.mapping(d.get(name), child(path, name), known)

    # -- scalars --

    def _scalar(
        self, d: Raw, name: str, path: str, accept: Callable[[object], TypeGuard[T]], what: str
    ) -> T | None:
        """`d[name]` when `accept` takes it; None when absent, or (an error at its path) of another type."""
        v = d.get(name)
        if v is None:
            return None
        if not accept(v):
            self.error(child(path, name), invalid(_short(v), what))
            return None
        return v

    def opt_str(self, d: Raw, name: str, path: str) -> str | None:
        return self._scalar(d, name, path, _is_str, "must be of type string")

    def str_(self, d: Raw, name: str, path: str, default: str = "") -> str:
        v = self.opt_str(d, name, path)
        return default if v is None else v

    def opt_int(self, d: Raw, name: str, path: str) -> int | None:
        return self._scalar(d, name, path, _is_int, "must be of type integer")

    def int_(self, d: Raw, name: str, path: str, default: int) -> int:
        v = self.opt_int(d, name, path)
        return default if v is None else v

    def opt_bool(self, d: Raw, name: str, path: str) -> bool | None:
        return self._scalar(d, name, path, _is_bool, "must be of type boolean")

    def bool_(self, d: Raw, name: str, path: str, default: bool = False) -> bool:
        v = self.opt_bool(d, name, path)
        return default if v is None else v

    def int_or_str(self, d: Raw, name: str, path: str) -> int | str | None:
        return self._scalar(d, name, path, _is_int_or_str, "must be an integer or a string")

    def str_list(self, d: Raw, name: str, path: str) -> tuple[str, ...]:
        out = []
        for p, v in self.items(d, name, path):
            if not isinstance(v, str):
                self.error(p, invalid(_short(v), "must be of type string"))
                continue
            out.append(v)
        return tuple(out)

    def str_map(self, d: Raw, name: str, path: str) -> dict[str, str]:
        m = self.obj(d, name, path)
        if m is None:
            return {}
        out = {}
        for k, v in m.items():
            if v is None:  # `key:` with no value decodes to "" in a Go map[string]string
                out[k] = ""
                continue
            if not isinstance(v, str):
                self.error(key(child(path, name), k), invalid(_short(v), "must be of type string"))
                continue
            out[k] = v
        return out


def _is_str(v: object) -> TypeGuard[str]:
    return isinstance(v, str)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_bool(v: object) -> TypeGuard[bool]:
    return isinstance(v, bool)


def _is_int_or_str(v: object) -> TypeGuard[int | str]:
    return isinstance(v, int | str) and not isinstance(v, bool)


class _Kind(str):
    """A value's type shown in its place, printed bare (`fmt` would quote a plain str)."""


def _short(value: object) -> object:
    """A value of the wrong type, summarised by its type: never echoed, since it may be a Secret's
    (an unquoted number in `stringData`) or the content of a file that is not a manifest at all."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return _Kind("<object>")
    if isinstance(value, list):
        return _Kind("<array>")
    if isinstance(value, str):
        return _Kind("<string>")
    if isinstance(value, int | float):
        return _Kind("<number>")
    return _Kind(f"<{type(value).__name__}>")


def fields(*names: str) -> frozenset[str]:
    return frozenset(names)
