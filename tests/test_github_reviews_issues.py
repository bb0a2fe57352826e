"""The GitHub tracker's issue writes (create_issue, update_issue), pull-request reviews and review comments,
and permissions, against the GitHub emulator: real HTTP, every request and response checked against
GitHub's OpenAPI description (the emulator's violations must stay empty).

Reviews are written the two ways a test can: over the emulator's HTTP API with the reviewer's own
token (``pulls/create-review``), and directly with ``GitHubEmulator.submit_review``.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.adapters.github import (
    GitHubNotFound,
    GitHubPermissionError,
    GitHubTracker,
    GitHubValidationError,
)
from statemachine.model import Issue, Review, ReviewComment
from tests.conftest import git
from tests.github_emulator import GitHubEmulator

OWNER = "acme"
BOT, BOT_TOKEN = "orchbot", "tok-orchbot-rv"
READER, READER_TOKEN = "rita", "tok-rita"  # read-only
WRITER, WRITER_TOKEN = "walter", "tok-walter"  # write
TRIAGER, TRIAGER_TOKEN = "tom", "tok-tom"  # triage
FILE = "notes.txt"
LINES = ["alpha", "beta", "gamma", "delta"]


class Waits(list[float]):
    """A fake sleep: records every wait instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(tmp_path_factory.mktemp("gh-reviews")) as emu:
        for login, token in (
            (BOT, BOT_TOKEN),
            (READER, READER_TOKEN),
            (WRITER, WRITER_TOKEN),
            (TRIAGER, TRIAGER_TOKEN),
            ("alice", "tok-alice-rv"),
        ):
            emu.add_user(login, token=token)
        yield emu


@pytest.fixture
def repo(emulator: GitHubEmulator, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh repository acme/<test name>: alice admin, the bot and walter write, tom triage, rita read."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:90]
    emulator.add_repo(OWNER, name, default_branch="main", source=None)
    for login, role in (("alice", "admin"), (BOT, "write"), (WRITER, "write"), (TRIAGER, "triage"), (READER, "read")):
        emulator.set_permission(OWNER, name, login, role)
    emulator.reset_counts()
    before = len(emulator.violations)
    yield name
    emulator.faults.clear()
    assert emulator.violations[before:] == []


def make(emulator: GitHubEmulator, repo: str, token: str = BOT_TOKEN, **kw: Any) -> GitHubTracker:
    kw.setdefault("sleep", Waits())
    kw.setdefault("timeout", 5.0)
    return GitHubTracker(OWNER, repo, token, api_url=emulator.api_url, token_source="GH_TOKEN", **kw)


@pytest.fixture
def tracker(emulator: GitHubEmulator, repo: str) -> GitHubTracker:
    return make(emulator, repo)


def calls(emulator: GitHubEmulator, repo: str, method: str, pattern: str) -> list[Any]:
    """Logged requests with METHOD whose path under the repository matches PATTERN."""
    rx = re.compile(rf"^/repos/{OWNER}/{repo}{pattern}")
    return [e for e in emulator.log if e.method == method and rx.search(e.path)]


def api(emulator: GitHubEmulator, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the emulator's REST API with TOKEN; (status, decoded JSON body or None)."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Authorization": f"token {token}",
    }
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(emulator.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def open_pull(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker, tmp_path: Path) -> int:
    """Push a branch adding FILE (four lines) and open the bot's draft pull request for it; its number."""
    issue = emulator.create_issue(OWNER, repo, "Add notes", user="alice")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(emulator.bare_path(OWNER, repo)), str(work))
    git(work, "checkout", "-q", "-B", "orch/notes")
    (work / FILE).write_text("\n".join(LINES) + "\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "add notes")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/orch/notes")
    sha = git(work, "rev-parse", "HEAD").strip()
    marker = f"<!-- orch:run={issue}-notes kind=pull-request -->"
    pr = tracker.create_pull(issue, "Add notes", f"Closes #{issue}\n\n{marker}", "orch/notes", "main", sha, "", marker)
    return pr.number


def review_over_http(emulator: GitHubEmulator, repo: str, token: str, pull: int, **body: Any) -> tuple[int, Any]:
    return api(emulator, token, "POST", f"/repos/{OWNER}/{repo}/pulls/{pull}/reviews", body)


# create_issue ------------------------------------------------------------------------------


def test_create_issue_with_labels_and_marker_is_idempotent(
    emulator: GitHubEmulator, repo: str, tracker: GitHubTracker
) -> None:
    marker = "<!-- orch:plan=7 kind=sub-issue-1 -->"
    first = tracker.create_issue("Split the parser", "Move tokenizing out.", ["agent:auto", "bug"], marker=marker)
    assert isinstance(first, Issue)
    assert first.title == "Split the parser" and first.state == "open" and first.author == BOT
    assert first.labels == ("agent:auto", "bug")
    assert first.body.startswith("Move tokenizing out.") and first.body.endswith(marker)  # appended: it was missing
    again = tracker.create_issue("Split the parser", "Move tokenizing out.", ["agent:auto", "bug"], marker=marker)
    assert again.number == first.number and again.labels == first.labels
    assert len(calls(emulator, repo, "POST", "/issues$")) == 1
    assert [i.number for i in tracker.list_issues(state="all")] == [first.number]
    # what GitHub holds, read with another token
    seen = make(emulator, repo, token="tok-alice-rv").get_issue(first.number, comments=False)
    assert seen.labels == ("agent:auto", "bug") and marker in seen.body and seen.author == BOT

    # closed, it is still the issue with that marker: never a second one
    status, _ = api(
        emulator, "tok-alice-rv", "PATCH", f"/repos/{OWNER}/{repo}/issues/{first.number}", {"state": "closed"}
    )
    assert status == 200
    third = tracker.create_issue("Split the parser", f"Move tokenizing out.\n\n{marker}", ["agent:auto"], marker=marker)
    assert third.number == first.number and third.state == "closed"
    assert len(calls(emulator, repo, "POST", "/issues$")) == 1

    # a different marker is a different issue; a body that already holds its marker is not changed
    other = "<!-- orch:plan=7 kind=sub-issue-2 -->"
    second = tracker.create_issue("Document the parser", f"Write docs.\n\n{other}", ["agent:auto"], marker=other)
    assert second.number != first.number and second.body == f"Write docs.\n\n{other}"
    assert len(calls(emulator, repo, "POST", "/issues$")) == 2


def test_create_issue_without_marker_or_labels(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker) -> None:
    one = tracker.create_issue("Plain", "no marker", [])
    two = tracker.create_issue("Plain", "no marker", [])
    assert one.number != two.number and one.labels == () and one.body == "no marker"
    posts = calls(emulator, repo, "POST", "/issues$")
    assert len(posts) == 2 and "labels" not in json.loads(posts[0].request_body)
    assert calls(emulator, repo, "GET", "/issues$") == []  # without a marker nothing is looked up first
    with pytest.raises(GitHubValidationError) as err:
        tracker.create_issue("   ", "no title", [], marker="<!-- orch:x -->")
    assert "without a title" in str(err.value)
    assert len(calls(emulator, repo, "POST", "/issues$")) == 2 and calls(emulator, repo, "GET", "/issues$") == []


def test_lost_response_on_create_issue_is_not_duplicated(emulator: GitHubEmulator, repo: str) -> None:
    waits = Waits()
    tracker = make(emulator, repo, sleep=waits)
    marker = "<!-- orch:plan=9 kind=sub-issue-1 -->"
    emulator.inject("POST", rf"^/repos/{OWNER}/{repo}/issues$", "lost_response", times=1)
    issue = tracker.create_issue("Lost", f"created, answer lost\n\n{marker}", ["agent:auto"], marker=marker)
    assert issue.title == "Lost" and marker in issue.body and issue.labels == ("agent:auto",)
    posts = calls(emulator, repo, "POST", "/issues$")
    assert len(posts) == 1 and posts[0].fault == "lost_response"  # the one POST did it; recovered by its marker
    assert len(waits) == 1
    assert [i.number for i in tracker.list_issues(state="all")] == [issue.number]


def test_a_5xx_after_nothing_was_created_retries_the_post(emulator: GitHubEmulator, repo: str) -> None:
    waits = Waits()
    tracker = make(emulator, repo, sleep=waits)
    marker = "<!-- orch:plan=9 kind=sub-issue-2 -->"
    emulator.inject("POST", rf"^/repos/{OWNER}/{repo}/issues$", "status", times=1, status=502)
    issue = tracker.create_issue("Retried", "body", ["agent:auto"], marker=marker)
    assert len(calls(emulator, repo, "POST", "/issues$")) == 2 and len(waits) == 1
    assert [i.number for i in tracker.list_issues(state="all")] == [issue.number]


def test_labels_github_drops_on_create_are_added_after(emulator: GitHubEmulator, repo: str) -> None:
    """GitHub silently drops a new issue's labels when the token cannot push: triage adds them after."""
    tom = make(emulator, repo, token=TRIAGER_TOKEN)
    issue = tom.create_issue("Triaged", "body", ["agent:auto"])
    assert issue.labels == ("agent:auto",) and issue.author == TRIAGER
    assert len(calls(emulator, repo, "POST", rf"/issues/{issue.number}/labels$")) == 1
    assert make(emulator, repo).get_issue(issue.number).labels == ("agent:auto",)
    rita = make(emulator, repo, token=READER_TOKEN)
    with pytest.raises(GitHubPermissionError) as err:  # read cannot label at all: said, not ignored
        rita.create_issue("Unlabelled", "body", ["agent:auto"])
    assert "add labels agent:auto" in str(err.value)


# update_issue ------------------------------------------------------------------------------


def test_update_issue_sends_only_what_changes(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker) -> None:
    n = emulator.create_issue(OWNER, repo, "Old title", body="old body", labels=["agent:auto"], user="alice")
    updated = tracker.update_issue(n, title="New title")
    assert updated.number == n and updated.title == "New title" and updated.body == "old body"
    assert updated.labels == ("agent:auto",)
    patches = calls(emulator, repo, "PATCH", rf"/issues/{n}$")
    assert [json.loads(p.request_body) for p in patches] == [{"title": "New title"}]

    updated = tracker.update_issue(n, body="new body")
    assert (updated.title, updated.body) == ("New title", "new body")
    updated = tracker.update_issue(n, title="Both", body="both body")
    assert (updated.title, updated.body) == ("Both", "both body")
    patches = calls(emulator, repo, "PATCH", rf"/issues/{n}$")
    assert [json.loads(p.request_body) for p in patches][1:] == [
        {"body": "new body"},
        {"title": "Both", "body": "both body"},
    ]
    fresh = make(emulator, repo, token="tok-alice-rv").get_issue(n, comments=False)
    assert (fresh.title, fresh.body) == ("Both", "both body")


def test_update_issue_no_op_writes_nothing(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker) -> None:
    n = emulator.create_issue(OWNER, repo, "Same", body="same body", user="alice")
    emulator.reset_counts()
    same = tracker.update_issue(n)
    assert (same.number, same.title, same.body) == (n, "Same", "same body")
    again = tracker.update_issue(n, title="Same", body="same body")  # values it already has
    assert (again.title, again.body) == ("Same", "same body")
    assert [e.method for e in emulator.log] == ["GET", "GET"]  # one read each, no write
    assert emulator.log[1].status == 304  # and the second read was free (ETag)


def test_update_issue_of_a_missing_issue(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker) -> None:
    with pytest.raises(GitHubNotFound) as err:
        tracker.update_issue(4242, title="x")
    assert "issue #4242 does not exist" in str(err.value)
    assert calls(emulator, repo, "PATCH", "/issues/") == []


# reviews -----------------------------------------------------------------------------------


def test_reviews_over_http_and_submitted_directly(
    emulator: GitHubEmulator, repo: str, tracker: GitHubTracker, tmp_path: Path
) -> None:
    pull = open_pull(emulator, repo, tracker, tmp_path)
    assert tracker.list_reviews(pull) == []
    status, data = review_over_http(
        emulator, repo, READER_TOKEN, pull, event="REQUEST_CHANGES", body="Please rename gamma."
    )
    assert status == 200 and data["state"] == "CHANGES_REQUESTED" and data["user"]["login"] == READER
    status, data = review_over_http(emulator, repo, WRITER_TOKEN, pull, event="COMMENT", body="Looks plausible.")
    assert status == 200 and data["state"] == "COMMENTED"
    approved = emulator.submit_review(OWNER, repo, pull, WRITER, "APPROVE", "")
    pending = emulator.submit_review(OWNER, repo, pull, BOT, "PENDING", "draft notes")

    reviews = tracker.list_reviews(pull)
    assert all(isinstance(r, Review) for r in reviews)
    assert [(r.author, r.state, r.body) for r in reviews] == [
        (READER, "CHANGES_REQUESTED", "Please rename gamma."),
        (WRITER, "COMMENTED", "Looks plausible."),
        (WRITER, "APPROVED", ""),
    ]
    assert reviews[2].id == approved and all(r.submitted_at.endswith("Z") for r in reviews)
    assert reviews[0].submitted_at <= reviews[1].submitted_at <= reviews[2].submitted_at
    # GitHub shows a pending review to its author only, and the tracker leaves it out
    status, raw = api(emulator, BOT_TOKEN, "GET", f"/repos/{OWNER}/{repo}/pulls/{pull}/reviews")
    assert status == 200 and [r["id"] for r in raw if r["state"] == "PENDING"] == [pending]
    assert "submitted_at" not in next(r for r in raw if r["id"] == pending)
    assert pending not in [r.id for r in make(emulator, repo, token=READER_TOKEN).list_reviews(pull)]


def test_create_review_refusals(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker, tmp_path: Path) -> None:
    pull = open_pull(emulator, repo, tracker, tmp_path)
    status, data = review_over_http(emulator, repo, BOT_TOKEN, pull, event="APPROVE")  # its own pull request
    assert status == 422 and data["errors"] == ["Review Can not approve your own pull request"]
    status, data = review_over_http(emulator, repo, BOT_TOKEN, pull, event="REQUEST_CHANGES", body="no")
    assert status == 422 and "own pull request" in data["errors"][0]
    status, _ = review_over_http(emulator, repo, BOT_TOKEN, pull, event="COMMENT", body="a note on my own work")
    assert status == 200
    status, data = review_over_http(emulator, repo, READER_TOKEN, pull, event="REQUEST_CHANGES")
    assert status == 422  # requesting changes needs a body
    status, data = review_over_http(
        emulator,
        repo,
        READER_TOKEN,
        pull,
        event="COMMENT",
        body="off the diff",
        comments=[{"path": FILE, "line": 99, "body": "where?"}],
    )
    assert status == 422 and "part of the diff" in data["errors"][0]
    status, data = review_over_http(
        emulator,
        repo,
        READER_TOKEN,
        pull,
        event="COMMENT",
        body="no such file",
        comments=[{"path": "missing.txt", "line": 1, "body": "?"}],
    )
    assert status == 422 and data["errors"] == ["Path could not be resolved"]
    status, _ = api(
        emulator, "tok-nobody", "POST", f"/repos/{OWNER}/{repo}/pulls/{pull}/reviews", {"event": "COMMENT", "body": "x"}
    )
    assert status == 401
    status, _ = review_over_http(emulator, repo, READER_TOKEN, 999, event="COMMENT", body="x")
    assert status == 404
    assert [r.author for r in tracker.list_reviews(pull)] == [BOT]  # only the accepted review was recorded
    assert tracker.list_review_comments(pull) == []


def test_list_reviews_of_a_missing_pull_request(repo: str, tracker: GitHubTracker) -> None:
    with pytest.raises(GitHubNotFound) as err:
        tracker.list_reviews(4242)
    assert "pull request #4242 does not exist" in str(err.value)
    with pytest.raises(GitHubNotFound) as err2:
        tracker.list_review_comments(4242)
    assert "pull request #4242 does not exist" in str(err2.value)


def test_many_reviews_are_paged_and_cached(
    emulator: GitHubEmulator, repo: str, tracker: GitHubTracker, tmp_path: Path
) -> None:
    pull = open_pull(emulator, repo, tracker, tmp_path)
    for i in range(101):
        emulator.submit_review(OWNER, repo, pull, READER if i % 2 else WRITER, "COMMENT", f"note {i}")
    emulator.reset_counts()
    reviews = tracker.list_reviews(pull)
    assert [r.body for r in reviews] == [f"note {i}" for i in range(101)]
    assert [e.status for e in calls(emulator, repo, "GET", rf"/pulls/{pull}/reviews$")] == [200, 200]  # 100 a page
    assert tracker.list_reviews(pull) == reviews
    assert [e.status for e in calls(emulator, repo, "GET", rf"/pulls/{pull}/reviews$")][2:] == [304, 304]


# review comments ---------------------------------------------------------------------------


def test_review_comments_with_path_and_line(
    emulator: GitHubEmulator, repo: str, tracker: GitHubTracker, tmp_path: Path
) -> None:
    pull = open_pull(emulator, repo, tracker, tmp_path)
    status, data = review_over_http(
        emulator,
        repo,
        READER_TOKEN,
        pull,
        event="REQUEST_CHANGES",
        body="Two things.",
        comments=[
            {"path": FILE, "line": 3, "body": "gamma is vague"},
            {"path": FILE, "position": 2, "body": "beta: typo?"},
        ],
    )
    assert status == 200
    by_http = data["id"]
    direct = emulator.submit_review(
        OWNER,
        repo,
        pull,
        WRITER,
        "COMMENT",
        "One more.",
        [(FILE, 4, "delta ok"), (FILE, 40, "a line no longer in the diff")],
    )

    comments = tracker.list_review_comments(pull)
    assert all(isinstance(c, ReviewComment) for c in comments)
    asked = calls(emulator, repo, "GET", rf"/pulls/{pull}/comments$")[-1].query
    assert "sort=created" in asked and "direction=asc" in asked  # oldest first, not left to GitHub's default
    assert [(c.author, c.path, c.line, c.body, c.review_id) for c in comments] == [
        (READER, FILE, 3, "gamma is vague", by_http),
        (READER, FILE, 2, "beta: typo?", by_http),  # position 2 of the diff is line 2 of the new file
        (WRITER, FILE, 4, "delta ok", direct),
        (WRITER, FILE, None, "a line no longer in the diff", direct),  # outdated: GitHub gives no line
    ]
    assert len({c.id for c in comments}) == 4 and all(c.created_at.endswith("Z") for c in comments)
    # the emulator's diff hunk ends at the commented line, as GitHub's does
    status, raw = api(emulator, BOT_TOKEN, "GET", f"/repos/{OWNER}/{repo}/pulls/{pull}/comments")
    assert status == 200 and raw[0]["diff_hunk"].startswith("@@ ") and raw[0]["diff_hunk"].endswith("+gamma")
    assert [r.state for r in tracker.list_reviews(pull)] == ["CHANGES_REQUESTED", "COMMENTED"]
    status, pr = api(emulator, BOT_TOKEN, "GET", f"/repos/{OWNER}/{repo}/pulls/{pull}")
    assert status == 200 and pr["review_comments"] == 4


def test_pending_review_comments_are_hidden_from_others(
    emulator: GitHubEmulator, repo: str, tracker: GitHubTracker, tmp_path: Path
) -> None:
    pull = open_pull(emulator, repo, tracker, tmp_path)
    status, data = review_over_http(
        emulator,
        repo,
        READER_TOKEN,
        pull,
        body="not yet",
        comments=[{"path": FILE, "line": 1, "body": "draft thought"}],
    )
    assert status == 200 and data["state"] == "PENDING"
    status, _ = review_over_http(emulator, repo, READER_TOKEN, pull, body="another")
    assert status == 422  # one pending review per person and pull request
    assert tracker.list_reviews(pull) == [] and tracker.list_review_comments(pull) == []
    rita = make(emulator, repo, token=READER_TOKEN)
    assert rita.list_reviews(pull) == []  # her own pending review is not a review yet
    assert [c.body for c in rita.list_review_comments(pull)] == ["draft thought"]


# permission --------------------------------------------------------------------------------


def test_permission_of_reader_writer_and_others(emulator: GitHubEmulator, repo: str, tracker: GitHubTracker) -> None:
    assert tracker.permission(READER) == "read"
    assert tracker.permission(WRITER) == "write"
    assert tracker.permission(TRIAGER) == "triage"
    assert tracker.permission("alice") == "admin"
    assert tracker.permission("nobody-here") == "none"
    emulator.reset_counts()
    assert tracker.permission(READER) == "read"  # cached for 30 s
    assert emulator.log == []
