"""pyproject.toml uses the packaging forms current setuptools accepts without a deprecation warning."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_license_is_an_spdx_string_and_setuptools_supports_it() -> None:
    """The `license = {text = ...}` table is deprecated (removal announced for 2027); the SPDX string form
    (PEP 639) needs setuptools 77 or later, so the build requirement must say so."""
    doc = tomllib.loads(PYPROJECT.read_text())
    assert doc["project"]["license"] == "Apache-2.0"
    assert not any("License ::" in c for c in doc["project"].get("classifiers", ()))  # PEP 639 forbids both
    (setuptools,) = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=(\d+)(?:\.(\d+))?(?:\.(\d+))?", setuptools.replace(" ", ""))
    assert match, setuptools
    assert tuple(int(g or 0) for g in match.groups()) >= (77, 0, 0)
