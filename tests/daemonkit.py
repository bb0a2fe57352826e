"""Shared kit for the daemon tests (tests/test_daemon.py, tests/test_daemon_faults.py): a repository with a slow
scripted agent, issues, the daemon as a process, its events.

Tests import from here, never from one another.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Cli, git

SLOW = Path(__file__).parent / "agents" / "slow.py"


def setup(cli: Cli, repo: Path, seconds: float = 0.2, extra: str = "") -> None:
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        f"""version: 1
extends: default
agent:
  kind: command
  command: {sys.executable}
  args: ["{SLOW}", "{seconds}"]
  timeout_seconds: 120
  idle_timeout_seconds: 60
{extra}"""
    )
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")


def counter_file(tmp_path: Path) -> Path:
    """Where the slow agent logs its starts: a folder the jail lets it write."""
    (tmp_path / "agent-counter").mkdir()
    return tmp_path / "agent-counter" / "agent-runs.txt"


def counter_sandbox(counter: Path) -> str:
    return f"sandbox:\n  env: [AGENT_COUNTER]\n  writable: ['{counter.parent}']\n"


def new_issue(
    cli: Cli, repo: Path, title: str, owns: str | None = None, labels: tuple[str, ...] = ("agent:auto",)
) -> int:
    body = f"{title}\n\nOwnership:\n- {owns}\n" if owns else title
    args: list[str | Path] = ["issue", "new", title, "--body", body, "--repo", repo]
    for label in labels:
        args += ["--label", label]
    code, data = cli.json(*args)
    assert code == 0
    return int(data["number"])


def events(repo: Path) -> list[dict[str, Any]]:
    path = repo / ".orch" / "state" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def daemon(repo: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "statemachine", "daemon", "--repo", str(repo), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def state_of(cli: Cli, repo: Path, n: int) -> str:
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    return str(data["lifecycle_state"])
