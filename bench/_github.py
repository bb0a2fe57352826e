"""Shared set-up for the GitHub benchmarks: the test suite's emulator, a project, a configured clone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.github_emulator import GitHubEmulator  # noqa: E402
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, clone, configure, make_project  # noqa: E402

__all__ = [
    "BOT",
    "BOT_TOKEN",
    "OWNER",
    "REPO",
    "GitHubEmulator",
    "clone",
    "configure",
    "make_project",
    "orch_env",
    "run_orch",
    "prepared_clone",
]


def orch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    env["GH_TOKEN"] = BOT_TOKEN
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_orch(clone_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statemachine", *args, "--repo", str(clone_dir)],
        capture_output=True,
        text=True,
        env=orch_env(),
    )


def prepared_clone(gh: GitHubEmulator, tmp: Path) -> Path:
    """alice (admin) and the runner's bot, the project pushed to the emulator, one configured clone with its labels."""
    gh.add_user("alice", token="tok-alice")
    gh.add_user(BOT, token=BOT_TOKEN)
    make_project(tmp, gh)
    work = clone(gh, tmp, "machine")
    configure(work, gh)
    run_orch(work, "setup", "--prepare-labels")
    return work
