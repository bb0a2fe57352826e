"""Finding the repository a read-only command works on, without opening a runtime (no store, no jail, no tracker):
`orch lint` and `orch graph` need only its root."""

from __future__ import annotations

from pathlib import Path

from statemachine.errors import OrchError
from statemachine.repo_find import find_repo

__all__ = ["find_repo", "maybe_repo"]


def maybe_repo(repo: Path | None) -> Path | None:
    """``find_repo``, but None where there is no repository and none was asked for (``repo`` None)."""
    try:
        return find_repo(repo)
    except OrchError:
        if repo is not None:
            raise
        return None
