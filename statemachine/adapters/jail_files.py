"""The files and locks around a jailed workspace: the attempt's own git directory, the lock that proves an earlier
jail is gone, and the evidence folder disarmed of what an agent planted there (symlinks, special files)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import stat
import time
from pathlib import Path
from typing import Protocol

from statemachine.ports import REMOVED_SUFFIX


class Jailing(Protocol):
    """What ``workspace_extras`` asks of a jail (adapters/jail.py's Jail): whether it is on."""

    @property
    def enabled(self) -> bool: ...


def disarm(folder: Path) -> list[str]:
    """Remove every symlink, FIFO, socket or device a jailed process left in a folder the runner writes to afterwards
    (its evidence folder): a symlink there would make the runner's next write land wherever the agent chose."""
    removed: list[str] = []
    if not folder.is_dir() or folder.is_symlink():
        return removed
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                try:
                    what = f"a symlink to {os.readlink(path)}" if stat.S_ISLNK(mode) else "a special file"
                    path.unlink()
                    # a note in its place, so a check that looks for the file can say what it was
                    fd = os.open(
                        path.with_name(name + REMOVED_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                    )
                    try:
                        os.write(fd, f"orch removed {what}\n".encode())
                    finally:
                        os.close(fd)
                    removed.append(f"{path} ({what})")
                except OSError:
                    pass
    return removed


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def own_git(repo: Path, worktree: Path, dest: Path, base: str, branch: str | None) -> Path:
    """A git directory of the workspace's own at ``dest`` (made afresh), borrowing the repository's objects: bound over
    the worktree's .git inside the jail, so nothing the jailed process does to hooks, config, refs or remotes reaches
    the repository (statemachine/adapters/agent_git.py)."""
    from statemachine.adapters.agent_git import make_private_gitdir
    from statemachine.adapters.gitrun import common_dir

    if dest.exists():
        shutil.rmtree(dest)
    objects = common_dir(repo) / "objects"
    return make_private_gitdir(worktree, dest, base, branch, objects)


def workspace_extras(
    repo: Path, jail: Jailing, worktree: Path, evidence: Path, base: str, branch: str | None
) -> dict[str, Path]:
    """What an agent run in ``worktree`` gets besides it: a git directory of its own (in its evidence folder) and the
    workspace's jail lock (outside anything the agent can write)."""
    out: dict[str, Path] = {"lock": workspace_lock(repo / ".orch", worktree)}
    if jail.enabled:
        out["gitdir"] = own_git(repo, worktree, evidence / "git", base, branch)
    return out


def workspace_lock(orch_dir: Path, workdir: Path) -> Path:
    """The lock for everything jailed in one workspace: outside it, so the agent can neither delete nor hold it."""
    folder = orch_dir / "state" / "jails"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16] + ".lock")
    if not path.exists():
        path.touch()
    return path


def lock_free(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def ensure_gone(lock: Path, wait: float = 10.0) -> str | None:
    """Prove that no earlier jail still works in this workspace (an agent left by a killed orch): its lock is free.
    A live one is stopped first. Returns None when the workspace is free, else why it is not."""
    if lock_free(lock):
        return None
    pid = None
    try:
        raw, start = lock.with_suffix(".pid").read_text().split()
        if _start_time(int(raw)) == start:
            pid = int(raw)
    except (OSError, ValueError):
        pass
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)  # bubblewrap: its sandbox and every process in it die with it
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait / 2
            while time.monotonic() < deadline and not lock_free(lock):
                time.sleep(0.05)
            if lock_free(lock):
                return None
    return (
        None
        if lock_free(lock)
        else (
            f"an earlier agent still runs in this workspace (bubblewrap pid {pid or 'unknown'}) and could not be stopped"
        )
    )
