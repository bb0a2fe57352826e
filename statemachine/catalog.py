"""The guard and action names a policy may use, each with the JSON Schema of its parameters and the snapshot facts it
needs: what the policy loader checks a lifecycle against (unknown names, bad parameters), without importing the
functions behind the names (checking a policy loads no effect code: `orch lint` stays fast).

Each row names the module and the function (the function's name is the policy's name); statemachine/registry.py
binds them to the functions and checks that every row names one. statemachine/policy.py takes a Catalog;
``builtin()`` is orch's own, and a caller may check a policy against another catalog."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from statemachine.model import LABEL_ROLES

# the keys of inspect_candidate.SECRET_PATTERNS and DESTRUCTIVE_PATTERNS (registry.py checks they agree): spelled
# here so that checking a policy does not compile those patterns
SECRET_KINDS: tuple[str, ...] = (
    "github-token",
    "aws-access-key-id",
    "aws-secret-access-key",
    "private-key",
    "slack-token",
    "openai-key",
    "npm-token",
    "google-api-key",
    "credential-assignment",
    "url-with-credentials",
)
DESTRUCTIVE_KINDS: tuple[str, ...] = (
    "drop-database",
    "flush-cache",
    "rm-rf-outside",
    "terraform-apply",
    "kubectl-delete",
    "helm-release",
    "npm-publish",
    "pypi-upload",
    "cargo-publish",
    "git-push",
    "docker-push",
    "deploy",
    "gh-release",
)

ROLE = {"enum": list(LABEL_ROLES)}
ROLES = {"type": "array", "items": ROLE, "minItems": 1, "uniqueItems": True}
NO_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}

# What a guard (or an action) may read beyond the issue and its run's recorded facts: each is fetched from the
# tracker (or the repository) into one field of the Snapshot, and only for a state whose outgoing transitions declare
# it (snapshots.snapshot_of). A guard that needs "authority" or "text" names its label in its `label` parameter.
#   authority  who applied the guard's label, and their permission        -> Snapshot.authority
#   text       the text against the text authorized at the claim  -> Snapshot.text (also fills authority)
#   feedback   the reviews on the run's pull request                      -> Snapshot.feedback
#   preflight  the claim's tracker-free preconditions                     -> Snapshot.preflight
#   claim      the active claim and its lease                     -> Snapshot.claim
#   budget     what agent runs spent today and on this issue (the usage ledger) -> Snapshot.budget
#   parent     a child issue's parent binding; a guard that needs it fails for an issue that is not a child
#              (so a transition with such a guard is a child's way only: engine.why_waiting)
NEEDS: tuple[str, ...] = ("authority", "text", "feedback", "preflight", "claim", "parent", "budget")


def params(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, "required": required or []}


def needs(*facts: str) -> frozenset[str]:
    unknown = set(facts) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown snapshot need(s) {sorted(unknown)}; known: {', '.join(NEEDS)}")
    return frozenset(facts)


@dataclass(frozen=True)
class Row:
    """One guard or action: ``module`` (under statemachine) holds the function ``name``."""

    module: str
    name: str
    params: dict[str, Any]
    needs: frozenset[str] = frozenset()
    # a guard that reads the labels: "carries" passes only when the issue carries (one of) the labels of
    # ``roles``, or of its `label`/`labels` parameter; "lacks" only when it carries none. What tells `orch explain`
    # which transitions apply to a plain issue (auto), a parent (plan_auto) or a child (child): statemachine/lead.py
    sense: str = ""
    roles: tuple[str, ...] = ()


def _rows(module: str, *rows: tuple[Any, ...]) -> list[Row]:
    return [Row(module, *row) for row in rows]


GUARD_ROWS: tuple[Row, ...] = (
    *_rows(
        "guards",
        ("issue_open", NO_PARAMS),
        ("has_label", params(["label"], label=ROLE), needs(), "carries"),
        ("preconditions_met", NO_PARAMS, needs("preflight")),
        ("claim_expired", NO_PARAMS, needs("claim")),
        ("label_authorized", params(["label"], label=ROLE), needs("authority"), "carries"),
        ("text_as_authorized", params(["label"], label=ROLE), needs("text"), "carries"),
        ("lacks_labels", params(["labels"], labels=ROLES), needs(), "lacks"),
        ("agent_succeeded", NO_PARAMS),
        ("report_valid", NO_PARAMS),
        ("report_completed", NO_PARAMS),
        ("report_matches_changes", NO_PARAMS),
        ("has_changes", NO_PARAMS),
        ("no_blocked_paths", params(paths={"type": "array", "items": {"type": "string", "minLength": 1}})),
        ("within_size_limits", NO_PARAMS),
        ("checks_passed", NO_PARAMS),
        ("proof_required", NO_PARAMS),
        ("proof_passed", NO_PARAMS),
        ("proof_needs_rework", NO_PARAMS),
        ("within_rework_limit", NO_PARAMS),
        ("within_budget", NO_PARAMS, needs("budget")),
    ),
    *_rows(
        "gates",
        ("no_secrets", params(ignore={"type": "array", "items": {"enum": list(SECRET_KINDS)}})),
        ("no_destructive_actions", params(allow={"type": "array", "items": {"enum": list(DESTRUCTIVE_KINDS)}})),
        ("agent_left_git_alone", NO_PARAMS),
        ("no_escaping_symlinks", NO_PARAMS),
        ("report_written_last", NO_PARAMS),
        ("within_byte_limits", NO_PARAMS),
        ("tests_not_deleted", NO_PARAMS),
        ("tests_changed_with_source", NO_PARAMS),
        ("tdd_evidence", NO_PARAMS),
        ("review_approved", NO_PARAMS),
        ("rework_warranted", NO_PARAMS),
        ("unreported_changes_only", NO_PARAMS),
    ),
    *_rows(
        "guards",
        ("review_feedback", NO_PARAMS, needs("feedback")),
        ("has_any_label", params(["labels"], labels=ROLES), needs(), "carries"),
    ),
    *_rows(
        "planning",
        ("not_a_child", NO_PARAMS, needs(), "lacks", ("child",)),
        ("dispatched_by_parent", NO_PARAMS, needs("parent")),
        ("redispatched_by_parent", NO_PARAMS, needs("parent")),
        ("plan_valid", NO_PARAMS),
        ("planning_changed_nothing", NO_PARAMS),
        ("parent_unchanged", NO_PARAMS),
        ("children_runnable", NO_PARAMS),
        ("children_merged", NO_PARAMS),
    ),
)

ACTION_ROWS: tuple[Row, ...] = (
    *_rows(
        "actions",
        ("start_run", NO_PARAMS, needs("parent")),  # a child remembers which parent run dispatched it
        ("add_labels", params(["labels"], labels=ROLES)),
        ("remove_labels", params(["labels"], labels=ROLES)),
        ("relabel", params(["remove", "add"], remove=ROLES, add=ROLES)),
        ("post_comment", params(["kind"], kind={"enum": ["claim"]})),
        ("claim_issue", params(settle_seconds={"type": "number", "minimum": 0, "maximum": 60})),
        ("take_over_claim", NO_PARAMS, needs("claim")),
        ("create_worktree", NO_PARAMS),
        ("run_agent", params(["prompt"], prompt={"enum": ["implementation", "rework"]})),
        ("capture_changes", NO_PARAMS),
        ("run_checks", NO_PARAMS),
        ("run_tdd_check", NO_PARAMS),
        ("run_review", NO_PARAMS),
        ("run_proof", NO_PARAMS),
        ("record_findings", NO_PARAMS),
        ("record_review_feedback", NO_PARAMS, needs("feedback")),
        ("commit_changes", NO_PARAMS),
        ("push_branch", NO_PARAMS),
        ("publish_proof", NO_PARAMS),
        ("remove_worktree", NO_PARAMS),
        ("open_draft_pr", NO_PARAMS),
        ("post_report", params(["outcome"], outcome={"enum": ["review", "blocked", "passed"]})),
    ),
    *_rows(
        "parent_actions",
        ("run_planner", NO_PARAMS),
        ("sync_children", NO_PARAMS),
        ("start_integration", NO_PARAMS),
        ("post_plan", NO_PARAMS),
        ("run_wave", NO_PARAMS),
        ("integrate", NO_PARAMS),
        ("hand_over_children", NO_PARAMS),
    ),
)


@dataclass(frozen=True)
class Catalog:
    guards: Mapping[str, Mapping[str, Any]]  # name -> the JSON Schema of its parameters
    actions: Mapping[str, Mapping[str, Any]]


@cache
def builtin() -> Catalog:
    """The guards and actions orch knows (the rows above; statemachine/registry.py binds them to functions)."""
    return Catalog(
        guards={row.name: row.params for row in GUARD_ROWS},
        actions={row.name: row.params for row in ACTION_ROWS},
    )


@cache
def guard_rows() -> Mapping[str, Row]:
    """Every guard's row by name."""
    return {row.name: row for row in GUARD_ROWS}
