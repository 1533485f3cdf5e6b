"""ruff and mypy are part of the test suite: style and types regress like behaviour does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else (shutil.which(name) or name)


def test_ruff_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "recsys", "tests", "bench", "migrations"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean() -> None:
    r = subprocess.run([_tool("mypy"), "recsys"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


MAX_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """Modules of recsys that ``path`` imports at any level (lazy imports inside functions count: they still tie
    the two rooms together); ``TYPE_CHECKING`` blocks do not."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("recsys"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("recsys"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (ROOT / "recsys").rglob("*.py") if "_migrations" not in p.parts}
    graph = {m: {i for i in _imports(p, m) if i in files and i != m} for m, p in files.items()}
    # a package's __init__ re-exporting its modules is not a dependency of those modules on the package
    for m in graph:
        graph[m] = {i for i in graph[m] if not (m.startswith(i + ".") and files[i].name == "__init__.py")}
    for m, p in files.items():
        if p.name == "__init__.py":
            graph[m] = {i for i in graph[m] if not i.startswith(m + ".")}
    return graph


def test_no_import_cycle_inside_recsys() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_over_400_lines() -> None:
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "recsys").rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by what they hold): {big}"


def test_no_function_over_80_lines() -> None:
    import ast

    long = []
    for p in (ROOT / "recsys").rglob("*.py"):
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > 80:  # type: ignore[operator]
                long.append(f"{p.relative_to(ROOT)}:{n.lineno} {n.name}")
    assert not long, f"functions over 80 lines (split them): {long}"


def test_tests_start_event_loops_off_the_main_thread() -> None:
    # The browser tests' sync Playwright leaves a loop running in the main thread; asyncio.run there fails only when
    # Chromium is installed (CI), never on a machine without it.
    here = Path(__file__).parent
    direct = [str(p.relative_to(ROOT)) for p in here.rglob("*.py")
              if p.name != "conftest.py" and p != Path(__file__) and "asyncio.run(" in p.read_text(encoding="utf-8")]
    assert not direct, f"use tests.conftest.run_async instead of asyncio.run in: {direct}"
