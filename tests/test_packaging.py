"""The built wheel carries the bundled policies, schemas and prompts, and works installed on its own.

Builds a wheel once per module from a copy of the working tree (so uncommitted changes are
tested), installs it into a fresh virtualenv and runs that venv's `orch` from a folder that is
neither a git repository nor the source tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOURCE = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    "dist",
    "build",
    "*.egg-info",
    ".orch",
)
BROKEN_POLICY = "version: 1\nextends: default\nlimits:\n  bogus_limit: 3\n"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that could make the venv see the source tree or another install."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
    env.update(
        {
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONNOUSERSITE": "1",
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@localhost",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@localhost",
        }
    )
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Installed:
    src: Path  # the copy the wheel was built from
    wheel: Path
    venv: Path
    workdir: Path  # not a git repository, not the source tree
    env: dict[str, str]

    @property
    def orch(self) -> str:
        return str(self.venv / "bin" / "orch")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.orch, *args], self.workdir, self.env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    shutil.copytree(SOURCE, src, ignore=IGNORE)
    env = clean_env()

    dist = base / "dist"
    built = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)], base, env)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels

    venv = base / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], base, env)
    assert made.returncode == 0, made.stderr
    inst = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheels[0])], base, env)
    assert inst.returncode == 0, inst.stdout + inst.stderr

    workdir = base / "elsewhere"
    workdir.mkdir()
    # Stop git's repository search at base, so an enclosing repository (if any) cannot be found.
    env = clean_env(GIT_CEILING_DIRECTORIES=str(base))
    return Installed(src, wheels[0], venv, workdir, env)


def test_wheel_contains_the_bundled_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
        expected = {"statemachine/_data/policies/default.yaml": installed.src / "policies" / "default.yaml"}
        for folder, pattern in (
            ("schemas", "*.json"),
            ("prompts", "*.md"),
            ("policies", "*.yaml"),
            ("policies", "*.json"),
        ):
            files = sorted((installed.src / folder).glob(pattern))
            assert files, f"no {pattern} in {folder}/"
            expected.update({f"statemachine/_data/{folder}/{f.name}": f for f in files})
        # the schema of the policy file as written: `orch setup` copies it into a repository for editors
        assert {
            "statemachine/_data/schemas/policy.schema.json",
            "statemachine/_data/schemas/policy-file.schema.json",
            "statemachine/_data/policies/default.parsed.json",  # the bundled policy's data, for a cold lint
        } <= set(expected)
        missing = sorted(set(expected) - names)
        assert not missing, f"missing from {installed.wheel.name}: {missing}"
        for name, path in expected.items():
            assert zf.read(name) == path.read_bytes(), f"{name} differs from {path}"
        # The code itself, including the subpackages, and the console script.
        assert {"statemachine/cli.py", "statemachine/commands/lint.py", "statemachine/adapters/__init__.py"} <= names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "orch = statemachine.cli:main" in zf.read(entry_points).decode()


def test_installed_package_uses_its_own_data(installed: Installed) -> None:
    code = (
        "import statemachine, statemachine.resources as r; "
        "print(statemachine.__file__); print(r.data_dir('policies')); print(r.data_dir('schemas')); "
        "print(r.data_dir('prompts')); "
        "from statemachine import yamlsrc; assert yamlsrc.load_file(r.bundled_policy('default')).checked"
    )
    res = run([installed.python, "-c", code], installed.workdir, installed.env)
    assert res.returncode == 0, res.stderr  # the wheel's bundled policy is taken as checked: its digests match
    module, *folders = [Path(line) for line in res.stdout.splitlines()]
    site = installed.venv.resolve()
    assert site in module.resolve().parents, f"imported {module}, not the wheel in {site}"
    for folder in folders:
        assert folder.parent.name == "_data" and site in folder.resolve().parents, folder


def test_workdir_is_not_a_repository(installed: Installed) -> None:
    res = run(["git", "rev-parse", "--show-toplevel"], installed.workdir, installed.env)
    assert res.returncode != 0, res.stdout
    assert installed.workdir.resolve() != SOURCE and SOURCE not in installed.workdir.resolve().parents


def test_lint_checks_the_bundled_policy(installed: Installed) -> None:
    res = installed.run("lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^ok: <bundled>/policies/default\.yaml \(\d+ transitions\)$", res.stdout, re.M), res.stdout


def test_lint_json(installed: Installed) -> None:
    res = installed.run("lint", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["version"] == 1
    assert data["kind"] == "lint"
    assert data["ok"] is True
    files = {f["file"]: f for f in data["files"]}
    assert files["<bundled>/policies/default.yaml"]["ok"] is True
    assert files["<bundled>/policies/default.yaml"]["transitions"] > 0


def test_help_and_version(installed: Installed) -> None:
    res = installed.run("--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: orch")
    for command in ("lint", "demo", "setup", "run", "explain"):
        assert re.search(rf"^\s+{command}\s", res.stdout, re.M), f"{command} missing from --help"
    res = installed.run("--version")
    assert res.returncode == 0, res.stderr
    pyproject = (installed.src / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert version is not None
    assert res.stdout.strip() == f"orch {version.group(1)}"


def test_lint_reports_a_broken_policy_with_its_location(installed: Installed) -> None:
    (installed.workdir / "broken.yaml").write_text(BROKEN_POLICY)
    res = installed.run("lint", "broken.yaml")
    assert res.returncode == 3, res.stdout + res.stderr
    assert re.search(r"^broken\.yaml:4:3: limits\.bogus_limit: unknown key 'bogus_limit'", res.stdout, re.M), res.stdout
    assert "1 problem(s) found" in res.stdout


def test_demo_runs_from_the_installed_wheel(installed: Installed) -> None:
    res = installed.run("demo", "--json", "--dir", str(installed.workdir / "demo"))
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["version"] == 1
    assert data["state"] == "review", data
    assert data["jailed"] is True  # the installed package carries the jail's relay and runs in bubblewrap
    assert data["pull_request"]["draft"] is True
    assert "+def longest_word(" in data["diff"]
    assert data["checks"]["unit-tests"]["exit_code"] == 0
    # The checks ran with the venv's interpreter, i.e. the installed package, not the source tree.
    assert data["checks"]["unit-tests"]["command"].startswith(installed.python)
