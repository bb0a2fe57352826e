"""Git through its command line, for the runner only: worktrees, change-set capture, runner commits."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from statemachine.errors import GitError
from statemachine.model import Change
from statemachine.ports import Capture

RUNNER_IDENT = {
    "GIT_AUTHOR_NAME": "orch",
    "GIT_AUTHOR_EMAIL": "orch@localhost",
    "GIT_COMMITTER_NAME": "orch",
    "GIT_COMMITTER_EMAIL": "orch@localhost",
}


def run_git(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed or not on PATH", "install git (2.30 or newer)")
    full_env = dict(os.environ)
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    if env:
        full_env.update(env)
    proc = subprocess.run([git, *args], cwd=cwd, env=full_env, capture_output=True, text=True, errors="replace")
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}",
                       "check the repository's state with `git status`")
    return proc.stdout


def repo_root(path: Path) -> Path:
    try:
        out = run_git(["rev-parse", "--show-toplevel"], path)
    except GitError:
        raise GitError(f"{path} is not inside a git repository", "pass --repo PATH, or run `git init` first") from None
    return Path(out.strip())


class CliGit:
    """Implements the Git port on one repository."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def head_sha(self, ref: str = "HEAD") -> str:
        try:
            return run_git(["rev-parse", "--verify", f"{ref}^{{commit}}"], self.root).strip()
        except GitError:
            raise GitError(f"{ref} does not name a commit in {self.root}",
                           "commit something first, or set tracker.base_branch in the policy") from None

    def base_branch(self, configured: str) -> str:
        if configured:
            return configured
        out = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], self.root, check=False).strip()
        if not out:
            raise GitError("the repository is on a detached HEAD and the policy names no base branch",
                           "set tracker.base_branch in .orch/policy.yaml")
        return out

    def ensure_worktree(self, path: Path, branch: str, base_sha: str) -> None:
        if (path / ".git").exists():
            current = run_git(["rev-parse", "--abbrev-ref", "HEAD"], path, check=False).strip()
            if current == branch:
                return
            raise GitError(f"{path} holds a worktree on {current!r}, not {branch!r}", f"remove it: git worktree remove --force {path}")
        run_git(["worktree", "prune"], self.root, check=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        run_git(["worktree", "add", "--force", "-B", branch, str(path), base_sha], self.root)

    def remove_worktree(self, path: Path) -> None:
        run_git(["worktree", "remove", "--force", str(path)], self.root, check=False)

    def capture(self, worktree: Path, base_sha: str) -> Capture:
        """Freeze everything in the worktree (committed, staged, unstaged, untracked) into a tree."""
        index = Path(run_git(["rev-parse", "--path-format=absolute", "--git-path", "index"], worktree).strip())
        with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
            temp_index = Path(tmp) / "index"
            if index.exists():
                shutil.copyfile(index, temp_index)
            env = {"GIT_INDEX_FILE": str(temp_index)}
            run_git(["add", "--all", "--", "."], worktree, env)
            tree = run_git(["write-tree"], worktree, env).strip()
        changes = []
        fields = run_git(["diff-tree", "-r", "-z", "--no-renames", "--name-status", base_sha, tree], worktree).split("\0")
        for status, path in zip(fields[0::2], fields[1::2]):
            if status:
                changes.append(Change(path=path, status=status))
        lines = 0
        for row in run_git(["diff-tree", "-r", "--no-renames", "--numstat", base_sha, tree], worktree).splitlines():
            added, removed, _ = row.split("\t", 2)
            lines += (int(added) if added.isdigit() else 0) + (int(removed) if removed.isdigit() else 0)
        by_kind = {
            "committed": _names(run_git(["diff", "--name-only", "-z", base_sha, "HEAD"], worktree)),
            "staged": _names(run_git(["diff", "--cached", "--name-only", "-z"], worktree)),
            "unstaged": _names(run_git(["diff", "--name-only", "-z"], worktree)),
            "untracked": _names(run_git(["ls-files", "--others", "--exclude-standard", "-z"], worktree)),
        }
        return Capture(tree=tree, changes=tuple(changes), by_kind=by_kind, changed_lines=lines)

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        return run_git(["commit-tree", tree, "-p", parent, "-m", message], self.root, RUNNER_IDENT).strip()

    def branch_head(self, branch: str) -> str | None:
        out = run_git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], self.root, check=False).strip()
        return out or None

    def set_branch(self, branch: str, sha: str) -> None:
        run_git(["update-ref", f"refs/heads/{branch}", sha], self.root)

    def diff(self, base: str, head: str) -> str:
        return run_git(["diff", "--stat", "--patch", base, head], self.root)

    def commit_message(self, sha: str) -> str:
        return run_git(["log", "-1", "--format=%B", sha], self.root)

    def tree_of(self, sha: str) -> str:
        return run_git(["rev-parse", f"{sha}^{{tree}}"], self.root).strip()


def _names(out: str) -> list[str]:
    return sorted(x for x in out.split("\0") if x)
