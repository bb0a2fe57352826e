"""Preconditions of a claim that need no tracker: checked before any label or comment, so a failure leaves no trace."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from statemachine.errors import OrchError

if TYPE_CHECKING:
    from statemachine.policy import Policy
    from statemachine.ports import Sandbox


def problems(
    repo: Path, base_branch: str, git: Any, policy: Policy | None = None, sandbox: Sandbox | None = None
) -> tuple[str, ...]:
    """What would make a run fail after its claim: no commit to start from, a detached HEAD without
    ``tracker.base_branch``, a prompt override in ``.orch/prompts/`` that does not render (an unknown
    variable, a lone ``$``), a check command of ``policy`` whose program cannot be found (a mistyped
    ``checks.NAME.command`` would fail every attempt; looked up in the folders ``sandbox``, the agent jail, shows).
    Each problem is one sentence with its fix."""
    from statemachine import programs, prompting

    found: list[str] = []
    try:
        base = git.base_branch(base_branch)
        git.head_sha(base)
    except OrchError as exc:
        found.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    for name in prompting.PROMPTS:
        override = repo / ".orch" / "prompts" / f"{name}.md"
        if not override.is_file():
            if override.is_symlink() or override.exists():  # a broken link or a folder: never the bundled prompt
                problem = prompting.override_problem(override, str(override.relative_to(repo)))
                found.append(f"{problem.file}: {problem.message} ({problem.hint})")
            continue
        try:
            prompting.check_template(override.read_text(errors="replace"), str(override.relative_to(repo)))
        except OrchError as exc:
            found.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    if policy is not None and programs.commands(policy.config):
        shown = policy_file(repo, policy)
        roots = sandbox.search_roots() if sandbox is not None else None
        found += [f"{m.message()} ({m.fix(shown)})" for m in programs.missing(policy.config, repo, roots)]
    return tuple(found)


def policy_file(repo: Path, policy: Policy) -> str:
    """The policy's file as a maintainer names it: relative to the repository when inside it."""
    if policy.path is None:
        return ".orch/policy.yaml"
    try:
        return str(policy.path.resolve().relative_to(repo.resolve()))
    except ValueError:
        return str(policy.path)


def require(
    repo: Path,
    base_branch: str,
    git: Any,
    policy: Policy | None = None,
    sandbox: Sandbox | None = None,
    found: tuple[str, ...] | None = None,
) -> None:
    """Raise before the claim's first effect when a precondition fails (for policies without ``preconditions_met``).
    ``found``: the problems this step's snapshot found moments ago, when it looked (else they are looked for now)."""
    if found is None:
        found = problems(repo, base_branch, git, policy, sandbox)
    if found:
        raise OrchError(f"this run cannot start: {found[0]}", "fix it, then run the step again; nothing was claimed")
