"""The tree's habits, checked in CI: ruff's lint and format (configured in pyproject.toml) and mypy strict on the
package and the tests. Each runs as its own process, as a contributor runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ["statemachine", "tests", "bench"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    res = run("ruff", "check", "--no-cache", *TREE)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_tree_is_formatted_as_ruff_formats_it() -> None:
    res = run("ruff", "format", "--check", "--no-cache", *TREE)
    assert res.returncode == 0, "run `ruff format statemachine tests bench`:\n" + res.stdout + res.stderr


def test_the_package_type_checks_strictly() -> None:
    res = run("mypy", "--no-incremental", "statemachine")
    assert res.returncode == 0 and "Success" in res.stdout, res.stdout + res.stderr


def test_the_tests_type_check() -> None:
    """The tests under the same strict config ([tool.mypy] in pyproject.toml: explicit package bases, and stubs on
    mypy_path for the modules some tests import by their top-level name)."""
    res = run("mypy", "--no-incremental", "tests")
    assert res.returncode == 0 and "Success" in res.stdout, res.stdout + res.stderr


def _modules() -> dict[str, Path]:
    pkg = ROOT / "statemachine"
    out = {}
    for path in pkg.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere (lazy imports too), except under ``if TYPE_CHECKING``."""
    import ast

    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_the_package_has_no_import_circle_and_no_module_over_500_lines() -> None:
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    long = {name: n for name, path in modules.items() if (n := len(path.read_text().splitlines())) > 500}
    assert not long, f"split these modules (lines): {long}"
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (circle := visit(start, [start])):
            raise AssertionError("import circle: " + " -> ".join(circle))


# the composition root: the only modules that may import an adapter (besides the adapters themselves)
COMPOSITION_ROOT = ("statemachine.runtime", "statemachine.cli", "statemachine.commands")


def test_adapters_are_imported_only_by_the_composition_root() -> None:
    """Everything else reaches the world through the ports (statemachine/ports.py); read from the source, lazy
    imports included."""
    modules = _modules()
    offenders = {}
    for name, path in modules.items():
        if name.startswith(("statemachine.adapters", *COMPOSITION_ROOT)):
            continue
        adapters = sorted(m for m in _imports(path, name, modules) if m.startswith("statemachine.adapters"))
        if adapters:
            offenders[name] = adapters
    assert not offenders, f"import these through a port instead: {offenders}"
