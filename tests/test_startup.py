"""Start-up: checking a policy loads no effect code (issue 16, item 5), and the policy cache that serves one-shot
commands is invalidated by any change of a file the policy was loaded from and ignores a corrupt entry. Each CLI
check runs orch as its own process, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from statemachine import policy as policy_mod
from statemachine import policy_cache, resources

ROOT = Path(__file__).resolve().parents[1]

# what checking a policy must never import: the adapters, the guards' and actions' code, the clients
EFFECTS = (
    "statemachine.adapters",
    "statemachine.actions",
    "statemachine.registry",
    "statemachine.runtime",
    "statemachine.guards",
    "statemachine.gates",
    "statemachine.planning",
    "statemachine.parent_actions",
    "statemachine.engine",
    "statemachine.store",
    "ghapi",
    "plumbum",
    "playwright",
)
PROBE = (
    "import json, sys\n"
    "from statemachine.cli import main\n"
    "code = main(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
)


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_POLICY_CACHE"}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_CACHE_HOME"] = str(cache)
    return env


def _orch(tmp: Path, *args: str) -> tuple[int, list[str], str]:
    """Run `orch ARGS` in ``tmp`` (not a repository); its exit code, the modules it loaded, its stdout."""
    report = tmp / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        cwd=tmp,
        env=_env(tmp / "cache"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = json.loads(report.read_text())
    return found["code"], found["modules"], proc.stdout + proc.stderr


def _effects(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(EFFECTS)]


def test_lint_imports_no_effect_code_and_a_warm_lint_no_parser(tmp_path: Path) -> None:
    code, modules, out = _orch(tmp_path, "lint")
    assert code == 0 and "ok: <bundled>/policies/default.yaml" in out, out
    assert _effects(modules) == []
    # the bundled policy as shipped: its data and the verdict of this orch's checks come from
    # policies/default.parsed.json, so even the first lint parses no YAML and validates nothing again
    assert "ruamel.yaml" not in modules and "jsonschema" not in modules
    code, modules, out = _orch(tmp_path, "lint")
    assert code == 0 and "ok: <bundled>/policies/default.yaml (31 transitions)" in out, out
    assert _effects(modules) == []
    assert not [m for m in modules if m.startswith(("ruamel", "jsonschema", "statemachine.settings"))]


def test_lint_of_a_policy_file_and_help_import_no_effect_code(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("extends: default\nbranch_template: 'agent/{number}'\n")
    code, modules, out = _orch(tmp_path, "lint", str(policy))
    assert code == 0 and f"ok: {policy}" in out, out
    assert _effects(modules) == []
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "statemachine", "--help"],
        cwd=tmp_path,
        env=_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "lint" in proc.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "statemachine.cli" in imported
    assert not [m for m in imported if m.startswith((*EFFECTS, "statemachine.policy", "ruamel", "jsonschema"))]


def test_a_changed_policy_is_checked_again_and_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("extends: default\n")
    code, _modules, out = _orch(tmp_path, "lint", str(policy))
    assert code == 0, out
    entries = list((tmp_path / "cache" / "orch" / "policy").glob("*.json"))
    assert len(entries) == 1
    policy.write_text("extends: default\nbranch_template: 'agent/{nummer}'\n")  # a problem: never served from cache
    code, modules, out = _orch(tmp_path, "lint", str(policy))
    assert code == 3 and f"{policy}:2:1: branch_template: unknown field {{nummer}}" in out, out
    assert "jsonschema" in modules
    policy.write_text("extends: default\n")
    entries[0].write_text('{"format": 1, "sources": [[')  # corrupt
    code, modules, out = _orch(tmp_path, "lint", str(policy))
    assert code == 0 and "ruamel.yaml" in modules, out  # checked afresh
    assert json.loads(entries[0].read_text())["format"] == 1  # and rewritten
    code, modules, out = _orch(tmp_path, "lint", str(policy))
    assert code == 0 and "ruamel.yaml" not in modules, out


def test_the_cache_notices_a_change_of_any_source_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_POLICY_CACHE", str(tmp_path / "cache"))
    main, base = tmp_path / "policy.yaml", tmp_path / "base.yaml"
    main.write_text("a: 1\n")
    base.write_text("b: 2\n")
    default = ({"c": 3}, policy_cache.digest(b"unused"))
    sources = [(str(base), policy_cache.digest(base.read_bytes()))]
    policy_cache.store(main, "policy.yaml", policy_cache.digest(main.read_bytes()), sources, {"a": 1}, ["x"], default)
    assert policy_cache.lookup(main, "policy.yaml") is None  # the bundled default's digest does not match
    default = (policy_mod.bundled_default(), policy_cache.digest(resources.bundled_policy("default").read_bytes()))
    policy_cache.store(main, "policy.yaml", policy_cache.digest(main.read_bytes()), sources, {"a": 1}, ["x"], default)
    hit = policy_cache.lookup(main, "policy.yaml")
    assert hit is not None and hit["data"] == {"a": 1} and hit["files"] == ["x"]
    assert policy_cache.lookup(main, "other.yaml") is None  # the display name is part of the key
    base.write_text("b: 3\n")
    assert policy_cache.lookup(main, "policy.yaml") is None
    base.write_text("b: 2\n")
    assert policy_cache.lookup(main, "policy.yaml") is not None
    main.write_text("a: 2\n")
    assert policy_cache.lookup(main, "policy.yaml") is None
    monkeypatch.setenv("ORCH_POLICY_CACHE", "off")
    main.write_text("a: 1\n")
    assert policy_cache.lookup(main, "policy.yaml") is None


def test_a_policy_whose_data_is_not_plain_json_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_POLICY_CACHE", str(tmp_path / "cache"))
    main = tmp_path / "policy.yaml"
    main.write_text("a: 1\n")
    default = (policy_mod.bundled_default(), policy_cache.digest(resources.bundled_policy("default").read_bytes()))
    data: dict[Any, Any] = {1: "int key"}  # YAML allows it; JSON would turn the key into "1"
    policy_cache.store(main, "p", policy_cache.digest(main.read_bytes()), [], data, [], default)
    assert policy_cache.lookup(main, "p") is None


def test_docs_quote_the_request_budgets_of_bench_budgets() -> None:
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location("bench_budgets", ROOT / "bench" / "budgets.py")
    assert spec is not None and spec.loader is not None
    budgets = importlib.util.module_from_spec(spec)
    sys.modules["bench_budgets"] = budgets  # dataclasses look their module up
    spec.loader.exec_module(budgets)
    text = (ROOT / "docs" / "performance.md").read_text()
    rows = {
        m[1]: (float(m[2]), float(m[3]))
        for m in re.finditer(r"^\| `(\w+)`: [^|]+\| ([\d.]+) \| ([\d.]+) \|", text, re.M)
    }
    assert rows == {name: (b.limit, b.with_review) for name, b in budgets.BUDGETS.items()}
