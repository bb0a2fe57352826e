"""The command line of an `orch run --json` process for one issue: the daemon starts one per issue, a parent run one
per child. A low module (it imports nothing of orch), so the actions need not import the runtime to start a run."""

from __future__ import annotations

import sys
from pathlib import Path


def run_argv(repo: Path, issue: int, policy: Path | None) -> list[str]:
    """The command line of an `orch run --json` process for one issue (the daemon's runs, a parent's children)."""
    argv = [sys.executable, "-m", "statemachine", "run", "--repo", str(repo), "--issue", str(issue), "--json"]
    return argv + ["--policy", str(policy)] if policy is not None else argv
