"""What every action shares: the ActionContext (the ports, the store, the policy data, this step's identity) and the
helpers several actions use (the issue as the agent may see it, label names, slugs, the run's worktree path).

The lowest module of the actions package: it imports no other action module, so any of them (and proof.py) may
import it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statemachine.errors import OrchError
from statemachine.model import Comment, Snapshot
from statemachine.ports import Agent, Browser, Git, Sandbox, Tracker
from statemachine.secrets import SecretSet
from statemachine.store import Store

if TYPE_CHECKING:  # policy -> registry -> actions: the type only, no import at run time
    from statemachine.policy import Policy


@dataclass
class ActionContext:
    """What an action may use: the ports, the store, the policy data, and this step's identity."""

    repo: Path
    policy: Policy
    store: Store
    tracker: Tracker
    git: Git
    make_agent: Callable[..., Agent]  # (AgentSettings | None): the policy's agent, or a profile
    sandbox: Sandbox  # where code from a workspace runs: checks, TDD runs, the proof app (the agent jail)
    make_browser: Callable[[], Browser]
    issue: int
    snapshot: Snapshot
    step_id: int
    nonce: str
    run_id: str | None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    first_try: bool = False  # True when the journal shows no earlier attempt of the running action
    lease_written: float = 0.0  # when this process wrote the run's claim lease stamp (wall clock; engine's freshness)

    def find_comment(self, marker: str) -> Any:
        """Our earlier comment with ``marker``; only looked up when an earlier attempt may have posted it."""
        return None if self.first_try else self.tracker.find_comment(self.issue, marker)

    @property
    def orch_dir(self) -> Path:
        return self.repo / ".orch"

    def require_run(self) -> str:
        if self.run_id is None:
            raise OrchError(f"issue #{self.issue} has no run yet", "the lifecycle must fire start_run (claim) first")
        return self.run_id

    def facts(self) -> dict[str, Any]:
        return self.store.facts(self.run_id)

    def set_fact(self, key: str, value: Any) -> None:
        self.set_facts({key: value})

    def set_facts(self, values: dict[str, Any]) -> None:
        """Several facts in one transaction: a crash leaves all of them or none. Secret values are stored redacted."""
        self.store.set_facts(self.require_run(), self.secrets.redact_json(values))

    @property
    def secrets(self) -> SecretSet:
        """The run's secret values (statemachine/secrets.py): refused in results, redacted in whatever leaves the runner."""
        from statemachine import secrets

        return secrets.for_run(self.policy.config, self.tracker)

    def __post_init__(self) -> None:
        from statemachine.secrets import RedactingTracker

        if not isinstance(self.tracker, RedactingTracker):  # every comment, issue and pull request goes out redacted
            self.tracker = RedactingTracker(self.tracker, lambda: self.secrets)

    def evidence_dir(self) -> Path:
        path = self.orch_dir / "runs" / self.require_run()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fresh_report(self, folder: str, name: str) -> Path:
        """The report path in the evidence folder ``folder`` of this run, with no stale report left in it."""
        evidence = self.evidence_dir() / folder
        evidence.mkdir(parents=True, exist_ok=True)
        report_path = evidence / name
        if report_path.exists():
            report_path.unlink()
        return report_path

    def marker(self, kind: str) -> str:
        return f"<!-- orch:run={self.require_run()} kind={kind} -->"


def _with_comments(ctx: ActionContext, issue: Any) -> Any:
    """The issue as the agent may see it: its title and body as authorized at the claim (fact ``authorized_text``) and
    its comments, each trusted only when its author has write, maintain or admin permission (read once per author per
    run, fact ``author_permissions``)."""
    from dataclasses import replace

    facts = ctx.facts()
    authorized = facts.get("authorized_text")
    if authorized:
        issue = replace(issue, title=authorized["title"], body=authorized["body"])
    cached = facts.get("issue_comments") if int(facts.get("attempt", 0)) == 0 else None
    if cached is not None:  # the first attempt reuses what the claim read back seconds ago
        comments: tuple[Comment, ...] = tuple(Comment(**c) for c in cached)
    else:
        comments = tuple(ctx.tracker.list_comments(issue.number))
    known = dict(facts.get("author_permissions") or {})
    trusted, seen = trusted_comments(ctx.tracker, comments, known)
    if seen != known:
        ctx.set_fact("author_permissions", seen)
    return replace(issue, comments=trusted)


def trusted_comments(
    tracker: Any, comments: tuple[Comment, ...], known: dict[str, str]
) -> tuple[tuple[Comment, ...], dict[str, str]]:
    """``comments`` with ``trusted`` set from each author's permission (write, maintain or admin), and the permissions
    known afterwards: an author in ``known`` is not looked up again. The runner's own comments (orch markers) are
    never looked up: they never reach a prompt. ``author_association`` is not used: COLLABORATOR covers read and
    triage collaborators, MEMBER every member of the owning organization."""
    from dataclasses import replace

    from statemachine.guards import WRITE_PERMISSIONS

    seen = dict(known)
    out = []
    for c in comments:
        if "<!-- orch:" in c.body:
            out.append(replace(c, trusted=False))
            continue
        if c.author not in seen:
            seen[c.author] = tracker.permission(c.author) if c.author and c.author != "ghost" else "none"
        out.append(replace(c, trusted=seen[c.author] in WRITE_PERMISSIONS))
    return tuple(out), seen


def _names(ctx: ActionContext, roles: list[str]) -> list[str]:
    return [ctx.policy.label(r) for r in roles]


def slugify(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:limit].rstrip("-")) or "issue"


def _worktree_path(ctx: ActionContext, facts: dict[str, Any]) -> Path:
    """The run's worktree: where the agent works on the run's branch."""
    return Path(facts.get("worktree") or ctx.orch_dir / "worktrees" / f"issue-{ctx.issue}-{ctx.require_run()}")
