"""Reused workspaces: a worktree a run is done with is kept, idle, under `.orch/worktrees/.idle/`, and the next run that
needs a worktree takes it instead of checking out the whole repository again.

A run's worktree keeps its own path (`.orch/worktrees/issue-N-RUN`, a check's, the proof app's): taking an idle one is
`git worktree move` (a rename) to that path, then a reset to the run's commit that touches only what differs: `git
clean -ffdx` removes whatever the previous run left that git does not track (ignored files included), `git checkout
--force` rewrites only the tracked files whose content or mode differs, judged by git's stat cache. That cache is
sound against the agent that worked there: it cannot set a file's ctime (the kernel does, on every change), and
orch's git pins core.trustctime and core.checkStat (statemachine/adapters/gitrun.py). Then `git status --ignored`
must show nothing at all, or the workspace is thrown away and a fresh one checked out: a reused workspace is exactly
the commit, or it is not used.

Giving one back (where a run removed its worktree) detaches its HEAD and moves it to the pool; beyond
``size`` idle workspaces it is removed instead. Every move happens under the same lock as `git worktree add` and
`remove` (CliGit._worktree_admin); the reset of a workspace already moved to a run's path does not hold it (the
folder is that run's alone), so concurrent runs wait for each other only for the moves. `orch clean` removes the
idle ones.
"""

from __future__ import annotations

import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

from statemachine.adapters.gitrun import run_git
from statemachine.errors import GitError

POOL = Path(".orch") / "worktrees" / ".idle"  # inside the folder .gitignore already leaves out


def pool_dir(root: Path) -> Path:
    return root / POOL


def idle(root: Path) -> list[Path]:
    folder = pool_dir(root)
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def take(root: Path, path: Path) -> bool:
    """Move an idle workspace to ``path`` (under the caller's worktree lock); False when none is idle. The caller then
    resets it (``reset``, outside the lock: the folder is its own now) and discards it when that fails."""
    for slot in idle(root):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_git(["worktree", "move", str(slot), str(path)], root)
        except GitError:
            discard(root, slot)
            continue
        return True
    return False


def reset(path: Path, sha: str, branch: str | None) -> bool:
    """Reset a workspace ``take`` moved to ``path`` to ``sha`` (on ``branch``, made or moved there, when given): True
    when it is now exactly that commit, with nothing else in it; False when not (the caller discards it)."""
    try:
        run_git(["clean", "-ffdxq"], path)
        if branch is None:
            run_git(["checkout", "--quiet", "--force", "--detach", sha], path)
        else:
            run_git(["checkout", "--quiet", "--force", "-B", branch, sha], path)
        leftover = run_git(["status", "--porcelain", "--ignored", "--untracked-files=all"], path)
        return not leftover.strip()
    except (GitError, OSError):
        return False


def give_back(root: Path, path: Path, size: int) -> bool:
    """Keep the worktree at ``path`` as an idle workspace, when fewer than ``size`` are idle; False when it was not
    kept (the caller removes it)."""
    if size <= 0 or len(idle(root)) >= size or not (path / ".git").is_file():
        return False
    slot = pool_dir(root) / f"ws-{secrets.token_hex(4)}"
    try:
        # detach HEAD where it is, so the run's branch is free again; files and index are left as they are (the
        # next take() cleans and resets them; the jail never shows an idle worktree to anyone)
        run_git(["update-ref", "--no-deref", "HEAD", "HEAD"], path)  # the new value is HEAD's commit, read by git
        slot.parent.mkdir(parents=True, exist_ok=True)
        run_git(["worktree", "move", str(path), str(slot)], root)
    except (GitError, OSError):
        return False
    return True


def discard(root: Path, path: Path) -> None:
    """Remove a worktree for good, whatever the agent left in it (read-only folders included)."""
    run_git(["worktree", "remove", "--force", str(path)], root, check=False)
    if path.exists():
        force_rmtree(path)
    run_git(["worktree", "prune"], root, check=False)


def force_rmtree(path: Path) -> None:
    def unlock(func: Any, name: str, _exc: Any) -> None:  # an agent may leave read-only folders behind
        parent = Path(name).parent
        parent.chmod(parent.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        func(name)

    shutil.rmtree(path, onerror=unlock)
