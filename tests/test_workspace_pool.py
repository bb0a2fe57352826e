"""Reused workspaces (issue 16, item 4; statemachine/adapters/workspace_pool.py): a worktree a run is done with waits
under .orch/worktrees/.idle/ and the next run takes it, rewriting only what differs; whatever was left in it (even
a same-size edit with its old mtime put back, ignored files, read-only folders) is gone before an agent sees it."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from tests.conftest import Cli, git

# The agent checks that its workspace is exactly the base commit before it works: any leftover fails its run.
AGENT = """\
import json, os, sys
from pathlib import Path

prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
n = prompt.split("issue #", 1)[1].split(":", 1)[0]
problems = []
if Path("app.py").read_text() != "def add(a, b):\\n    return a + b\\n":
    problems.append("app.py differs from the base")
for p in Path(".").rglob("*"):
    if ".git" in p.parts:
        continue
    if p.name.startswith("feature_") or p.parts[0] in ("build", "secret", "locked"):
        problems.append(f"leftover {p}")
if problems:
    sys.exit("; ".join(problems))
Path(f"feature_{n}.txt").write_text(n + "\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": n,
    "changed_files": [f"feature_{n}.txt"], "validation": []}))
"""


def prepare(repo: Path, tmp_path: Path, extra: str = "") -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{agent}']\n"
        "limits:\n  rework_iterations: 0\n" + extra
    )
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\nbuild/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")


def deliver(cli: Cli, repo: Path, title: str) -> int:
    code, data = cli.json("issue", "new", title, "--body", title, "--label", "agent:auto", "--repo", repo)
    assert code == 0
    n = int(data["number"])
    code, out, err = cli("run", "--issue", str(n), "--repo", repo)
    assert code == 0, out + err
    return n


def idle(repo: Path) -> list[Path]:
    folder = repo / ".orch" / "worktrees" / ".idle"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_the_next_run_reuses_the_workspace_and_rewrites_only_what_differs(cli: Cli, repo: Path, tmp_path: Path) -> None:
    for i in range(30):  # files no run changes: a reused workspace must not rewrite them
        (repo / f"module_{i}.py").write_text(f"X = {i}\n")
    prepare(repo, tmp_path)
    first = deliver(cli, repo, "first")
    (slot,) = idle(repo)
    before = {p.name: (p.stat().st_ino, p.stat().st_ctime_ns) for p in slot.glob("module_*.py")}
    second = deliver(cli, repo, "second")
    (again,) = idle(repo)  # the same worktree came back (its folder is renamed each time it waits)
    assert git(repo, "worktree", "list").count("\n") == 2  # the repository and that one idle worktree
    after = {p.name: (p.stat().st_ino, p.stat().st_ctime_ns) for p in again.glob("module_*.py")}
    assert before == after and len(after) == 30  # untouched: same inode, no change since
    # each pull request holds its own change only
    for n, other in ((first, second), (second, first)):
        files = git(repo, "ls-tree", "-r", "--name-only", f"refs/heads/orch/{n}-{'first' if n == first else 'second'}")
        assert f"feature_{n}.txt" in files and f"feature_{other}.txt" not in files


def test_whatever_was_left_in_an_idle_workspace_is_gone_before_the_next_agent(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    prepare(repo, tmp_path)
    deliver(cli, repo, "first")
    (slot,) = idle(repo)
    app = slot / "app.py"
    st = app.stat()
    app.write_text("def add(a, b):\n    return a - b\n")  # same size, a different program
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns))  # and its old mtime put back
    assert app.stat().st_size == st.st_size
    (slot / "build").mkdir()
    (slot / "build" / "out.bin").write_text("ignored by .gitignore\n")
    (slot / "secret").write_text("untracked\n")
    (slot / "locked").mkdir()
    (slot / "locked" / "file").write_text("in a read-only folder\n")
    (slot / "locked").chmod(stat.S_IRUSR | stat.S_IXUSR)
    n = deliver(cli, repo, "second")  # the agent fails unless its workspace is exactly the base commit
    tree = git(repo, "ls-tree", "-r", "--name-only", f"refs/heads/orch/{n}-second")
    assert "secret" not in tree and "build/out.bin" not in tree
    assert git(repo, "show", f"refs/heads/orch/{n}-second:app.py") == "def add(a, b):\n    return a + b\n"


def test_no_idle_workspaces_with_zero(cli: Cli, repo: Path, tmp_path: Path) -> None:
    prepare(repo, tmp_path, extra="  idle_workspaces: 0\n")
    deliver(cli, repo, "first")
    assert idle(repo) == []
    assert git(repo, "worktree", "list").count("\n") == 1


def test_a_worktree_folder_removed_by_hand_gives_its_branch_back(repo: Path, tmp_path: Path) -> None:
    """The worktree list is read first and pruned only when it names a worktree whose folder is gone: a run whose
    worktree a maintainer deleted with `rm -rf` does not keep its branch from the next run."""
    import shutil

    from statemachine.adapters.git import CliGit

    for pool in (0, 2):
        g = CliGit(repo, pool_size=pool)
        base = g.head_sha()
        first, second = tmp_path / f"wts-{pool}" / "issue-1-a", tmp_path / f"wts-{pool}" / "issue-1-b"
        g.ensure_worktree(first, f"orch/1-{pool}", base)
        shutil.rmtree(first)  # by hand: git still lists it, holding the branch
        assert "prunable" in git(repo, "worktree", "list", "--porcelain")
        g.ensure_worktree(second, f"orch/1-{pool}", base)
        assert git(second, "rev-parse", "--abbrev-ref", "HEAD").strip() == f"orch/1-{pool}"
        assert "prunable" not in git(repo, "worktree", "list", "--porcelain")
        g.remove_worktree(second)
