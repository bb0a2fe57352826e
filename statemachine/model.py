"""Frozen value types shared by every layer: issues, verdicts, snapshots, run facts. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # record.py builds on this module's Change
    from statemachine.record import RunRecord

STATES: tuple[str, ...] = (
    "queued",
    "claimed",
    "implementing",
    "proving",
    "rework",
    "gating",
    "blocked",
    "review",
    # a parent issue labelled agent:plan-auto: the agent plans it into children, their waves run, the result is integrated
    "planning",
    "delegating",
    "integrating",
)
PLAN_STATES: frozenset[str] = frozenset({"planning", "delegating", "integrating"})  # optional in a lifecycle table
INITIAL_STATE = "queued"
# Where an issue comes to rest: the runner stops stepping; only a transition declared
# `human: true` (whose guards observe a maintainer's change) may leave them.
REST_STATES: frozenset[str] = frozenset({"blocked", "review"})
LABEL_ROLES: tuple[str, ...] = ("auto", "plan_auto", "child", "running", "blocked", "manual", "review")


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    body: str
    created_at: str
    trusted: bool = False  # set by the runner: the author has write, maintain or admin permission (read once per run)


@dataclass(frozen=True)
class TextEdit:
    """The last edit of one part of an issue (``title`` or ``body``): who made it, when, and whether it came after the
    authorizing label by the tracker's own ordering (an edit in the same second as the label counts as after)."""

    part: str
    editor: str
    at: str
    after_label: bool


@dataclass(frozen=True)
class TextHistory:
    """Who last applied an authorizing label and when, and the last edit of the issue's title and of its body."""

    labeled_by: str | None
    labeled_at: str
    edits: tuple[TextEdit, ...] = ()


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    state: str  # "open" | "closed"
    labels: tuple[str, ...]
    comments: tuple[Comment, ...] = ()
    author: str = ""
    created_at: str = ""
    updated_at: str = ""

    @property
    def is_open(self) -> bool:
        return self.state == "open"


@dataclass(frozen=True)
class PullRequest:
    number: int
    issue: int
    title: str
    body: str
    head: str
    base: str
    head_sha: str
    base_sha: str
    draft: bool
    url: str
    marker: str


@dataclass(frozen=True)
class ReviewComment:
    """One inline comment of a pull-request review (a line of the diff)."""

    id: int
    author: str
    body: str
    path: str
    line: int | None
    created_at: str
    review_id: int | None = None


@dataclass(frozen=True)
class Review:
    """One submitted pull-request review; ``state`` is GitHub's: CHANGES_REQUESTED, COMMENTED, APPROVED, DISMISSED."""

    id: int
    author: str
    state: str
    body: str
    submitted_at: str


@dataclass(frozen=True)
class Verdict:
    """What a guard says: ok or not, why, and the evidence it looked at."""

    ok: bool
    reason: str
    evidence: tuple[str, ...] = ()

    @classmethod
    def passed(cls, reason: str, *evidence: str) -> Verdict:
        return cls(True, reason, tuple(evidence))

    @classmethod
    def failed(cls, reason: str, *evidence: str) -> Verdict:
        return cls(False, reason, tuple(evidence))

    def negated(self) -> Verdict:
        return Verdict(not self.ok, self.reason, self.evidence)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Change:
    """One path in the change set against the base commit, with its git status letter."""

    path: str
    status: str  # A, M, D, R, T ...
    old_path: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything guards may look at, fetched once per step."""

    issue: Issue
    state: str
    run: RunRecord  # statemachine/record.py
    labels: dict[str, str]  # role -> label name, from the policy
    settings: dict[str, Any]  # the policy's gates/limits/proof sections
    taken_at: str
    authority: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {actor, permission}
    # review feedback on the run's pull request: {id, kind, author, permission, state, body, path, line, at}
    feedback: tuple[dict[str, Any], ...] = ()
    # for a child issue: its parent binding and whether the parent's current run dispatched it
    parent: dict[str, Any] | None = None
    # for text_as_authorized: the issue text against the text authorized at the claim, and who edited it after the label
    text: dict[str, Any] | None = None
    # for preconditions_met: what would fail a run after its claim, checked without the tracker (None: not checked)
    preflight: tuple[str, ...] | None = None
    # for claim_expired: the issue's active claim, read when it carries the running label (claims.Holding.as_json)
    claim: dict[str, Any] | None = None
    # for within_budget: what the agent runs spent today and on this issue (ledger.py; None: not read)
    budget: dict[str, Any] | None = None

    def label(self, role_or_name: str) -> str:
        return self.labels.get(role_or_name, role_or_name)
