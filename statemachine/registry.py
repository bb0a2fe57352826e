"""The explicit name -> function maps for guards and actions, each with its own parameter schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemachine import actions, gates, guards, parent_actions, planning
from statemachine.inspect_candidate import DESTRUCTIVE_PATTERNS, SECRET_PATTERNS
from statemachine.model import LABEL_ROLES

SECRET_KINDS = tuple(SECRET_PATTERNS)
DESTRUCTIVE_KINDS = tuple(DESTRUCTIVE_PATTERNS)

ROLE = {"enum": list(LABEL_ROLES)}
ROLES = {"type": "array", "items": ROLE, "minItems": 1, "uniqueItems": True}
NO_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}


def params(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, "required": required or []}


# What a guard (or an action) may read beyond the issue and its run's recorded facts: each is fetched from the
# tracker (or the repository) into one field of the Snapshot, and only for a state whose outgoing transitions declare
# it (snapshots.snapshot_of). A guard that needs "authority" or "text" names its label in its `label` parameter.
#   authority  who applied the guard's label, and their permission        -> Snapshot.authority
#   text       the issue's text against the text authorized at the claim  -> Snapshot.text (also fills authority)
#   feedback   the reviews on the run's pull request                      -> Snapshot.feedback
#   preflight  the claim's tracker-free preconditions                     -> Snapshot.preflight
#   claim      the issue's active claim and its lease                     -> Snapshot.claim
#   parent     a child issue's parent binding; a guard that needs it fails for an issue that is not a child
#              (so a transition with such a guard is a child's way only: engine.why_waiting)
NEEDS: tuple[str, ...] = ("authority", "text", "feedback", "preflight", "claim", "parent")


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    params: dict[str, Any]
    summary: str
    needs: frozenset[str] = frozenset()  # of NEEDS: what the snapshot must carry for this entry


Row = tuple[Callable[..., Any], dict[str, Any]] | tuple[Callable[..., Any], dict[str, Any], frozenset[str]]


def needs(*facts: str) -> frozenset[str]:
    unknown = set(facts) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown snapshot need(s) {sorted(unknown)}; known: {', '.join(NEEDS)}")
    return frozenset(facts)


def _table(*rows: Row) -> dict[str, Entry]:
    out = {}
    for row in rows:
        fn, schema = row[0], row[1]
        doc = (fn.__doc__ or "").strip().splitlines()
        out[fn.__name__] = Entry(
            fn.__name__, fn, schema, doc[0] if doc else "", row[2] if len(row) > 2 else frozenset()
        )
    return out


GUARDS: dict[str, Entry] = _table(
    (guards.issue_open, NO_PARAMS),
    (guards.has_label, params(["label"], label=ROLE)),
    (guards.preconditions_met, NO_PARAMS, needs("preflight")),
    (guards.claim_expired, NO_PARAMS, needs("claim")),
    (guards.label_authorized, params(["label"], label=ROLE), needs("authority")),
    (guards.text_as_authorized, params(["label"], label=ROLE), needs("text")),
    (guards.lacks_labels, params(["labels"], labels=ROLES)),
    (guards.agent_succeeded, NO_PARAMS),
    (guards.report_valid, NO_PARAMS),
    (guards.report_completed, NO_PARAMS),
    (guards.report_matches_changes, NO_PARAMS),
    (guards.has_changes, NO_PARAMS),
    (guards.no_blocked_paths, params(paths={"type": "array", "items": {"type": "string", "minLength": 1}})),
    (guards.within_size_limits, NO_PARAMS),
    (guards.checks_passed, NO_PARAMS),
    (guards.proof_required, NO_PARAMS),
    (guards.proof_passed, NO_PARAMS),
    (guards.proof_needs_rework, NO_PARAMS),
    (guards.within_rework_limit, NO_PARAMS),
    (gates.no_secrets, params(ignore={"type": "array", "items": {"enum": list(SECRET_KINDS)}})),
    (gates.no_destructive_actions, params(allow={"type": "array", "items": {"enum": list(DESTRUCTIVE_KINDS)}})),
    (gates.agent_left_git_alone, NO_PARAMS),
    (gates.no_escaping_symlinks, NO_PARAMS),
    (gates.report_written_last, NO_PARAMS),
    (gates.within_byte_limits, NO_PARAMS),
    (gates.tests_not_deleted, NO_PARAMS),
    (gates.tests_changed_with_source, NO_PARAMS),
    (gates.tdd_evidence, NO_PARAMS),
    (gates.review_approved, NO_PARAMS),
    (gates.rework_warranted, NO_PARAMS),
    (guards.review_feedback, NO_PARAMS, needs("feedback")),
    (guards.has_any_label, params(["labels"], labels=ROLES)),
    (planning.not_a_child, NO_PARAMS),
    (planning.dispatched_by_parent, NO_PARAMS, needs("parent")),
    (planning.redispatched_by_parent, NO_PARAMS, needs("parent")),
    (planning.plan_valid, NO_PARAMS),
    (planning.planning_changed_nothing, NO_PARAMS),
    (planning.parent_unchanged, NO_PARAMS),
    (planning.children_runnable, NO_PARAMS),
    (planning.children_merged, NO_PARAMS),
)

ACTIONS: dict[str, Entry] = _table(
    (actions.start_run, NO_PARAMS, needs("parent")),  # a child remembers which parent run dispatched it
    (actions.add_labels, params(["labels"], labels=ROLES)),
    (actions.remove_labels, params(["labels"], labels=ROLES)),
    (actions.post_comment, params(["kind"], kind={"enum": ["claim"]})),
    (actions.claim_issue, params(settle_seconds={"type": "number", "minimum": 0, "maximum": 60})),
    (actions.take_over_claim, NO_PARAMS, needs("claim")),
    (actions.create_worktree, NO_PARAMS),
    (actions.run_agent, params(["prompt"], prompt={"enum": ["implementation", "rework"]})),
    (actions.capture_changes, NO_PARAMS),
    (actions.run_checks, NO_PARAMS),
    (actions.run_tdd_check, NO_PARAMS),
    (actions.run_review, NO_PARAMS),
    (actions.run_proof, NO_PARAMS),
    (actions.record_findings, NO_PARAMS),
    (actions.record_review_feedback, NO_PARAMS, needs("feedback")),
    (actions.commit_changes, NO_PARAMS),
    (actions.push_branch, NO_PARAMS),
    (actions.publish_proof, NO_PARAMS),
    (actions.remove_worktree, NO_PARAMS),
    (actions.open_draft_pr, NO_PARAMS),
    (actions.post_report, params(["outcome"], outcome={"enum": ["review", "blocked", "passed"]})),
    (parent_actions.run_planner, NO_PARAMS),
    (parent_actions.sync_children, NO_PARAMS),
    (parent_actions.start_integration, NO_PARAMS),
    (parent_actions.post_plan, NO_PARAMS),
    (parent_actions.run_wave, NO_PARAMS),
    (parent_actions.integrate, NO_PARAMS),
    (parent_actions.hand_over_children, NO_PARAMS),
)

# The actions with an effect others see (the tracker, the remote): a step that runs one after its run's claim first
# checks that no other runner took the claim over (engine._Runner), so a superseded run never publishes.
PUBLISHING = frozenset(
    {
        "add_labels",
        "remove_labels",
        "post_comment",
        "push_branch",
        "publish_proof",
        "open_draft_pr",
        "post_report",
        "sync_children",
        "start_integration",
        "post_plan",
        "run_wave",
        "integrate",
        "hand_over_children",
    }
)
