"""Shared fixtures: real git repositories in temp folders, and a helper to run the orch CLI in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main

# the validated-policy cache (statemachine/policy_cache.py) of this test session: its own folder, never the user's
os.environ.setdefault("ORCH_POLICY_CACHE", tempfile.mkdtemp(prefix="orch-test-policy-cache-"))

GIT_IDENT = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENT}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on main and a small Python project."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "test_app.py").write_text(
        "import unittest\nfrom app import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n"
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str | Path) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str | Path) -> tuple[int, dict[str, Any]]:
        code, out, err = self(*args, "--json")
        return code, json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


PYTHON = sys.executable


@pytest.fixture
def gh(tmp_path: Path) -> Any:
    """The GitHub emulator with alice, reader and the bot (tests/githubkit.py); a test file may define its own `gh`."""
    from tests.githubkit import emulator

    yield from emulator(tmp_path)


@pytest.fixture(scope="module")
def orch_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """orch's wheel, built offline from this tree, once per test module (tests/workflowkit.py)."""
    from tests.workflowkit import build_orch_wheel

    return build_orch_wheel(tmp_path_factory)


def orch_process(repo: Path, *args: str, kill_after: int | None = None) -> subprocess.CompletedProcess[str]:
    """`orch ARGS --repo REPO` as a process; with ``kill_after`` it SIGKILLs itself after that many effects."""
    env = {k: v for k, v in os.environ.items() if k != "ORCH_TEST_KILL_AFTER_EFFECT"}
    if kill_after is not None:
        env["ORCH_TEST_KILL_AFTER_EFFECT"] = str(kill_after)
    return subprocess.run(
        [sys.executable, "-m", "statemachine", *args, "--repo", str(repo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
