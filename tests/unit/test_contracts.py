"""Rules import-linter cannot check (the others are in .importlinter, run by `make lint`).

No import inside a function, unless its line (or the comment line above it) says why with
`# lazy: <reason>` (a heavy dependency imported only when a feature is configured, or an import cycle
broken on purpose): hidden imports hide the module graph the contracts check. See ARCHITECTURE.md,
"Import contracts".
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nodeagent"


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
        lines = path.read_text().splitlines()
        for line, source in function_level_imports(path):
            above = lines[line - 2].strip() if line >= 2 else ""
            comment = source.partition("#")[2].strip() or (above[1:].strip() if above.startswith("#") else "")
            if not comment.startswith("lazy:") or not comment[5:].strip():
                offenders.append(f"nodeagent/{rel}:{line}: {source.strip()}")
    assert not offenders, "imports inside functions need `# lazy: <reason>`:\n" + "\n".join(offenders)


def test_the_check_sees_a_function_level_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\n\ndef f() -> None:\n    import json\n    from a import b  # lazy: why\n")
    assert function_level_imports(sample) == [
        (4, "    import json"),
        (5, "    from a import b  # lazy: why"),
    ]


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


def test_the_cli_does_not_load_aiohttp_until_serve_starts() -> None:
    """`sync`, `status` and every other command start fast (no-op sync < 0.4 s): only `serve` needs
    aiohttp, which alone takes about 0.2 s to import."""
    code = "import sys, nodeagent.cli; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_agent_without_a_signing_key_does_not_load_cryptography() -> None:
    """cryptography (about 7 MB of an idle agent's RSS) is loaded only where a key is configured or used:
    hoisted to the top of sources/signing.py, it took the idle `run` row from 47 to 55 MB."""
    code = (
        "import sys, nodeagent.cli, nodeagent.cli.daemon, nodeagent.sources.http, nodeagent.settings;"
        " print('cryptography' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
