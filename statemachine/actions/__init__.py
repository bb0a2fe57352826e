"""Effects, each reached only through the ports and made safe to repeat (find-or-create, check-then-do).

The actions by domain, lowest first: context.py (ActionContext and the helpers every action shares), agent.py (the
agent's run, its workspace and sealed evidence), tracker.py (labels, comments, the claim, the takeover, the pull
request, the report), workspace.py (worktree, capture, commit, push, removal), checks.py (checks, TDD, review, proof,
findings) and parent.py (a parent's plan, children, waves and integration; also reached as statemachine.parent_actions).
This module re-exports every action by name: the registry maps policy names to ``actions.NAME``.
"""

from __future__ import annotations

from statemachine.actions.agent import agent_workspace, run_agent, seal_evidence
from statemachine.actions.checks import (
    record_findings,
    record_review_feedback,
    run_checks,
    run_proof,
    run_review,
    run_tdd_check,
)
from statemachine.actions.context import ActionContext, _with_comments, slugify, trusted_comments
from statemachine.actions.tracker import (
    CLAIM_READBACK_SECONDS,
    add_labels,
    claim_issue,
    open_draft_pr,
    post_comment,
    post_report,
    relabel,
    remove_labels,
    start_run,
    take_over_claim,
)
from statemachine.actions.workspace import (
    capture_changes,
    commit_changes,
    create_worktree,
    publish_proof,
    push_branch,
    remove_worktree,
)

__all__ = [
    # shared (context.py, agent.py); _with_comments is also what proof.py renders the issue with
    "ActionContext",
    "_with_comments",
    "agent_workspace",
    "seal_evidence",
    "slugify",
    "trusted_comments",
    # tracker.py
    "CLAIM_READBACK_SECONDS",
    "add_labels",
    "claim_issue",
    "open_draft_pr",
    "post_comment",
    "post_report",
    "relabel",
    "remove_labels",
    "start_run",
    "take_over_claim",
    # workspace.py
    "capture_changes",
    "commit_changes",
    "create_worktree",
    "publish_proof",
    "push_branch",
    "remove_worktree",
    # agent.py and checks.py
    "record_findings",
    "record_review_feedback",
    "run_agent",
    "run_checks",
    "run_proof",
    "run_review",
    "run_tdd_check",
]
