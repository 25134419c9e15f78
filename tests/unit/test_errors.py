"""The exception tree of nodeagent/errors.py is complete: every exception class defined in nodeagent is
in it (a NodeAgentError) and listed in its docstring, except the loader's two documented internal signals."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import nodeagent
from nodeagent import errors

INTERNAL = {"DocumentBoundError", "NotRegularFile"}  # never leave k8s/manifests (see errors.py)


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(nodeagent.__path__, "nodeagent."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[name] = obj
    return found


def test_every_exception_is_in_the_tree_and_documented() -> None:
    classes = exception_classes()
    assert {"FetchError", "OpsError", "QuantityError", "ReportError"} <= set(classes)
    doc = errors.__doc__ or ""
    for name, cls in classes.items():
        if name in INTERNAL:
            assert name in doc, f"{name}: an internal signal, but errors.py does not say so"
            continue
        assert issubclass(cls, errors.NodeAgentError), f"{cls.__module__}.{name} is outside the tree"
        assert re.search(rf"\b{name}\b", doc), f"{cls.__module__}.{name} is not documented in errors.py"


def test_every_documented_name_exists() -> None:
    classes = exception_classes()
    for line in (errors.__doc__ or "").splitlines():
        words = line.replace("│", " ").replace("├──", " ").replace("└──", " ").split()
        if words and words[0].endswith(("Error", "Unavailable", "Timeout")) and line.lstrip()[:1] in "│├└N":
            assert words[0] in classes, f"errors.py documents {words[0]}, which no module defines"


def test_value_errors_stay_value_errors() -> None:
    """Callers that catch ValueError around quantities and reports keep working."""
    from nodeagent.fleet import view
    from nodeagent.k8s import quantity

    assert issubclass(quantity.QuantityError, ValueError) and issubclass(view.ReportError, ValueError)
