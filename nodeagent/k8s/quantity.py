"""Kubernetes resource quantities (`100m`, `200Mi`, `1.5Gi`, `1e3`), parsed exactly.

Kubernetes parses quantities with arbitrary precision (`resource.ParseQuantity`); we keep the value as
a `Fraction` so that `0.1` CPU is exactly 100 millicores and comparisons never round.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from nodeagent import errors

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
# sign, digits with at most one dot (at least one digit), then a suffix or a decimal exponent
_QUANTITY = re.compile(r"^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


class QuantityError(errors.NodeAgentError, ValueError):
    """Raised for a string that is not a Kubernetes quantity; the message is Kubernetes' own."""


@dataclass(frozen=True)
class Quantity:
    text: str
    value: Fraction

    def __str__(self) -> str:
        return self.text

    def ceil(self) -> int:
        return math.ceil(self.value)

    def milli(self) -> int:
        """Value in thousandths, rounded up, as Kubernetes' MilliValue()."""
        return math.ceil(self.value * 1000)


def parse(text: str | int | float) -> Quantity:
    """Parse a quantity; ints and floats (YAML `cpu: 1`, `cpu: 0.5`) are accepted as Kubernetes does."""
    if isinstance(text, bool):
        raise QuantityError(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    raw = str(text) if not isinstance(text, str) else text
    s = raw.strip()
    m = _QUANTITY.match(s)
    if not m:
        raise QuantityError(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    sign, number, suffix = m.group(1), m.group(2), m.group(3) or ""
    value = Fraction(number)
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= _DECIMAL[suffix]
    else:  # exponent
        value *= Fraction(10) ** int(suffix[1:])
    if sign == "-":
        value = -value
    return Quantity(text=s, value=value)
