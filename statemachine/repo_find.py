"""Finding the root of the git work tree a command works on by its ``.git``, as git finds it, with no git process: no
adapter is imported for it (`orch lint`, `orch graph`) and a run spends no process on it."""

from __future__ import annotations

from pathlib import Path

from statemachine.errors import GitError, OrchError


def find_repo(repo: Path | None) -> Path:
    """The root of the git work tree at ``repo`` (or around the current folder): the nearest folder holding a ``.git``
    folder with a HEAD, or a ``.git`` file naming its git directory, as git finds a work tree. No git process runs
    (these commands only read files), so no adapter is imported."""
    start = (repo or Path.cwd()).resolve()
    if not start.exists():
        raise OrchError(f"{start} does not exist", "pass --repo with the path of a git repository")
    for folder in (start, *start.parents):
        marker = folder / ".git"
        try:
            if (marker / "HEAD").is_file() or (marker.is_file() and marker.read_bytes()[:7] == b"gitdir:"):
                return folder
        except OSError:
            continue
    raise GitError(f"{start} is not inside a git repository", "pass --repo PATH, or run `git init` first")
