"""Preconditions of a claim that need no tracker: checked before any label or comment, so a failure leaves no trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from statemachine.errors import OrchError


def problems(repo: Path, base_branch: str, git: Any) -> tuple[str, ...]:
    """What would make a run fail after its claim: no commit to start from, a detached HEAD without
    ``tracker.base_branch``, a prompt override in ``.orch/prompts/`` that does not render (an unknown
    variable, a lone ``$``). Each problem is one sentence with its fix."""
    from statemachine import prompting

    found: list[str] = []
    try:
        base = git.base_branch(base_branch)
        git.head_sha(base)
    except OrchError as exc:
        found.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    for name in prompting.PROMPTS:
        override = repo / ".orch" / "prompts" / f"{name}.md"
        if not override.is_file():
            continue
        try:
            prompting.check_template(override.read_text(errors="replace"), str(override.relative_to(repo)))
        except OrchError as exc:
            found.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    return tuple(found)


def require(repo: Path, base_branch: str, git: Any) -> None:
    """Raise before the claim's first effect when a precondition fails (for policies without ``preconditions_met``)."""
    found = problems(repo, base_branch, git)
    if found:
        raise OrchError(f"this run cannot start: {found[0]}", "fix it, then run the step again; nothing was claimed")
