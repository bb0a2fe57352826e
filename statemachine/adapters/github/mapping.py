"""GitHub's JSON as orch's model: pure functions from REST payloads to ``Issue``, ``Comment``, ``PullRequest``,
``Review`` and ``ReviewComment``, and the limits GitHub puts on what orch writes.

Bodies GitHub would refuse (more than 65,536 characters) are shortened before posting, keeping every
``<!-- orch:... -->`` marker; reading a body of any size (10 MB) works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from statemachine.model import Comment, Issue, PullRequest, Review, ReviewComment

MAX_BODY = 65536  # GitHub refuses issue, comment and pull request bodies longer than this
MAX_TITLE = 256
MARKER_RE = re.compile(r"<!-- orch:[^>]*?-->")
PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")


def _fit(body: str, limit: int = MAX_BODY) -> str:
    """Shorten ``body`` to what GitHub accepts, keeping every orch marker (they sit at the end)."""
    if len(body) <= limit:
        return body
    markers: list[str] = []
    for m in MARKER_RE.findall(body):
        if m not in markers:
            markers.append(m)
    tail = "\n\n".join(markers)
    note = (
        f"\n\n… (shortened by orch: the full text has {len(body)} characters, more than GitHub accepts; "
        "it is kept in the run's evidence)\n\n"
    )
    head = body[: max(0, limit - len(note) - len(tail))]
    opened = head.rfind("<!--")
    if opened != -1 and head.find("-->", opened) == -1:
        head = head[:opened]  # never leave an HTML comment open: it would hide the note and the markers
    return head + note + tail


def _issue_from_marker(body: str) -> int:
    m = re.search(r"<!-- orch:run=(\d+)-", body) or re.search(r"(?:Closes|Fixes|Resolves) #(\d+)", body, re.IGNORECASE)
    return int(m.group(1)) if m else 0


def _comment(d: Mapping[str, Any]) -> Comment:
    """A comment, not yet trusted: ``author_association`` says COLLABORATOR for read and triage collaborators and MEMBER
    for every member of the owning organization, so trust comes from the author's permission (actions.trusted_comments)."""
    user = d.get("user") or {}
    return Comment(
        id=int(d["id"]),
        author=str(user.get("login") or "ghost"),
        body=str(d.get("body") or ""),
        created_at=str(d.get("created_at") or ""),
    )


def _label_names(labels: Any) -> tuple[str, ...]:
    names = [x if isinstance(x, str) else str(x.get("name", "")) for x in (labels or [])]
    return tuple(sorted(n for n in names if n))


def _issue(d: Mapping[str, Any], comments: tuple[Comment, ...] = ()) -> Issue:
    user = d.get("user") or {}
    return Issue(
        number=int(d["number"]),
        title=str(d.get("title") or ""),
        body=str(d.get("body") or ""),
        state=str(d.get("state") or "open"),
        labels=_label_names(d.get("labels")),
        comments=comments,
        author=str(user.get("login") or ""),
        created_at=str(d.get("created_at") or ""),
        updated_at=str(d.get("updated_at") or ""),
    )


def _pull(d: Mapping[str, Any], marker: str, issue: int | None = None) -> PullRequest:
    body = str(d.get("body") or "")
    head, base = d.get("head") or {}, d.get("base") or {}
    return PullRequest(
        number=int(d["number"]),
        issue=issue if issue is not None else _issue_from_marker(body),
        title=str(d.get("title") or ""),
        body=body,
        head=str(head.get("ref") or ""),
        base=str(base.get("ref") or ""),
        head_sha=str(head.get("sha") or ""),
        base_sha=str(base.get("sha") or ""),
        draft=bool(d.get("draft")),
        url=str(d.get("html_url") or d.get("url") or ""),
        marker=marker,
    )


def _review(d: Mapping[str, Any]) -> Review:
    user = d.get("user") or {}
    return Review(
        id=int(d["id"]),
        author=str(user.get("login") or "ghost"),
        state=str(d.get("state") or ""),
        body=str(d.get("body") or ""),
        submitted_at=str(d.get("submitted_at") or ""),
    )


def _review_comment(d: Mapping[str, Any]) -> ReviewComment:
    user = d.get("user") or {}
    line = d.get("line") if d.get("line") is not None else d.get("original_line")
    review = d.get("pull_request_review_id")
    return ReviewComment(
        id=int(d["id"]),
        author=str(user.get("login") or "ghost"),
        body=str(d.get("body") or ""),
        path=str(d.get("path") or ""),
        line=int(line) if isinstance(line, int) else None,
        created_at=str(d.get("created_at") or ""),
        review_id=int(review) if isinstance(review, int) else None,
    )


def _title(title: str) -> str:
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


# the identity orch acts as -----------------------------------------------------------------

JOB_TOKEN_LOGIN = "github-actions[bot]"  # who the GitHub Actions job token (secrets.GITHUB_TOKEN) acts as
CI_FIX = (
    "give orch its own identity: a GitHub App (secrets ORCH_APP_ID and ORCH_APP_PRIVATE_KEY) or a fine-grained "
    "token (secret ORCH_TOKEN) with Contents, Issues and Pull requests write (docs/github.md)"
)


def job_token_ci_warning(login: str | None) -> str | None:
    """What to say when orch acts as the job token: GitHub runs no workflows for the pull requests it opens."""
    if not login or login.lower() != JOB_TOKEN_LOGIN:
        return None
    return (
        f"orch acts as {JOB_TOKEN_LOGIN} (the workflow's job token): pull requests it opens do not trigger "
        "the repository's CI"
    )
