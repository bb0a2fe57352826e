"""Concurrent runs in one clone (a parent's children, the daemon's issues) add and remove worktrees at once.

Without a lock, `git worktree list` beside a half-made `git worktree add` fails ("failed to read
.git/worktrees/…/commondir"); found by the plan-auto kill harness, where two children of one wave started together.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import git

WORKER = """
import sys
from pathlib import Path
from statemachine.adapters.git import CliGit

root, me = Path(sys.argv[1]), sys.argv[2]
g = CliGit(root)
sha = g.head_sha("main")
for i in range(12):
    wt = root.parent / "wt" / f"{me}-{i}"
    g.ensure_worktree(wt, f"orch/{me}-{i}", sha)
    g.add_detached_worktree(root.parent / "wt" / f"d{me}-{i}", sha)
    g.remove_worktree(root.parent / "wt" / f"d{me}-{i}")
    g.remove_worktree(wt)
"""


def test_worktrees_made_and_removed_by_concurrent_processes_never_fail(repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(repo), f"w{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for n in range(6)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0] * 6, "\n".join(err for _, err in results)
    assert git(repo, "worktree", "list").count("\n") == 1  # every worktree was removed again
    assert len(git(repo, "branch", "--list", "orch/*").split()) == 6 * 12
