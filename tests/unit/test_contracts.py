"""Rules import-linter cannot check (the others are in .importlinter, run by `make lint`).

No import inside a function, unless its line says why with `# lazy: <reason>` (a heavy dependency
imported only when a feature is configured, or an import cycle that is broken on purpose): hidden
imports hide the module graph the contracts check. See ARCHITECTURE.md, "Import contracts".
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nodeagent"

# Being split on another branch (issue 15, step 2): annotate or hoist its imports once it lands.
PENDING = {"cli/__init__.py"}


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, source text) of every import statement inside a function body in `path`."""
    text = path.read_text()
    lines = text.splitlines()
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    found.append((sub.lineno, lines[sub.lineno - 1]))
    return sorted(set(found))


def test_no_import_inside_a_function_without_a_lazy_reason() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in PENDING:
            continue
        for line, source in function_level_imports(path):
            _, _, comment = source.partition("#")
            if not comment.strip().startswith("lazy:") or not comment.strip()[5:].strip():
                offenders.append(f"nodeagent/{rel}:{line}: {source.strip()}")
    assert not offenders, "imports inside functions need `# lazy: <reason>`:\n" + "\n".join(offenders)


def test_the_check_sees_a_function_level_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\n\ndef f() -> None:\n    import json\n    from a import b  # lazy: why\n")
    assert function_level_imports(sample) == [
        (4, "    import json"),
        (5, "    from a import b  # lazy: why"),
    ]


def test_pending_files_exist() -> None:
    """A stale PENDING entry would silently exempt a future file of that name."""
    for rel in PENDING:
        assert (PACKAGE / rel).exists(), f"{rel} is gone: drop it from PENDING"


def test_no_test_module_imports_another_test_module() -> None:
    """Shared fixtures live in conftest.py files, shared helpers in tests/support/ (importing a test module
    runs its module-level code and re-registers its fixtures and tests). A suite may import helpers from
    its own conftest."""
    tests = PACKAGE.parent / "tests"
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        own = {".conftest", ".".join((*path.relative_to(tests.parent).parent.parts, "conftest"))}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if last.startswith("test_") or (last == "conftest" and name not in own):
                    offenders.append(f"{path.relative_to(tests.parent)}:{node.lineno}: {name}")
    assert not offenders, "\n".join(offenders)
