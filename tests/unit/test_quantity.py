"""Kubernetes quantities parse exactly (Fractions), and bad ones fail with Kubernetes' message."""

from __future__ import annotations

from fractions import Fraction

import pytest

from nodeagent.k8s import quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Fraction(1, 10)),
        ("1", Fraction(1)),
        (1, Fraction(1)),
        (0.5, Fraction(1, 2)),
        ("0.1", Fraction(1, 10)),
        ("200Mi", Fraction(200 * 2**20)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("1e-3", Fraction(1, 1000)),
        ("128974848", Fraction(128974848)),
        ("129M", Fraction(129_000_000)),
        ("123Ki", Fraction(123 * 1024)),
        ("5k", Fraction(5000)),
        ("-1", Fraction(-1)),
        ("+2", Fraction(2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("10n", Fraction(1, 10**8)),
        ("3u", Fraction(3, 10**6)),
        ("2E", Fraction(2 * 10**18)),
        ("1Ei", Fraction(2**60)),
    ],
)
def test_parse(text: str | int | float, value: Fraction) -> None:
    assert quantity.parse(text).value == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1Gb", "1 Gi", "1.2.3", "Mi", "--1", "1ki", "1K", "0x10", "1e", True]
)
def test_invalid(text: str | bool) -> None:
    with pytest.raises(quantity.QuantityError, match="quantities must match the regular expression"):
        quantity.parse(text)


def test_milli_and_ceil() -> None:
    assert quantity.parse("100m").milli() == 100
    assert quantity.parse("0.5").milli() == 500
    assert quantity.parse("1.5").ceil() == 2
    assert str(quantity.parse(" 1Gi ")) == "1Gi"
