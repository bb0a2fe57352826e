"""The `orch-lint` pre-commit hook of .pre-commit-hooks.yaml, run for real by pre-commit.

A copy of the working tree (uncommitted changes included) becomes a git repository with one
commit; a temp project's .pre-commit-config.yaml uses it by path and commit sha, as a user's
config would. PRE_COMMIT_HOME is a temp folder, so the hook's environment is built from scratch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
VALID = "version: 1\nextends: default\n"
BROKEN = "version: 1\nextends: default\nlimits:\n  bogus_limit: 3\n"


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(self.root, self.env, "add", "--", rel)

    def pre_commit(self, *files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "run", "--color", "never", "--files", *files],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("precommit")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(
        {
            "PRE_COMMIT_HOME": str(base / "pre-commit-home"),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@localhost",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@localhost",
            "GIT_CEILING_DIRECTORIES": str(base),
        }
    )

    hooks_repo = base / "orch-src"
    shutil.copytree(SOURCE, hooks_repo, ignore=IGNORE)
    git(hooks_repo, env, "init", "-q", "-b", "main")
    git(hooks_repo, env, "add", "-A")
    git(hooks_repo, env, "commit", "-q", "--no-verify", "-m", "orch working tree")
    sha = git(hooks_repo, env, "rev-parse", "HEAD").strip()

    root = base / "project"
    root.mkdir()
    git(root, env, "init", "-q", "-b", "main")
    proj = Project(root, env)
    proj.write(".pre-commit-config.yaml", f"repos:\n- repo: {hooks_repo}\n  rev: {sha}\n  hooks:\n  - id: orch-lint\n")
    return proj


def test_valid_policy_passes(project: Project) -> None:
    project.write(".orch/policy.yaml", VALID)
    res = project.pre_commit(".orch/policy.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"^orch lint\.+Passed$", res.stdout, re.M), out


def test_broken_policy_fails_with_file_and_location(project: Project) -> None:
    project.write(".orch/policy.yaml", BROKEN)
    res = project.pre_commit(".orch/policy.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert re.search(r"^orch lint\.+Failed$", res.stdout, re.M), out
    assert "- exit code: 3" in res.stdout, out
    assert re.search(r"^\.orch/policy\.yaml:4:3: limits\.bogus_limit: unknown key 'bogus_limit'", res.stdout, re.M), out


def test_yml_extension_is_checked_too(project: Project) -> None:
    project.write(".orch/policy.yml", BROKEN)
    res = project.pre_commit(".orch/policy.yml")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert re.search(r"^\.orch/policy\.yml:4:3: ", res.stdout, re.M), out


def test_files_outside_the_pattern_are_not_checked(project: Project) -> None:
    # Same broken content, but in paths `^\.orch/policy\.ya?ml$` does not match.
    others = ["policy.yaml", "sub/.orch/policy.yaml", ".orch/policy.yaml.bak", ".orch/other.yaml"]
    for rel in others:
        project.write(rel, BROKEN)
    res = project.pre_commit(*others)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"^orch lint\.+\(no files to check\)Skipped$", res.stdout, re.M), out
    assert "bogus_limit" not in out
