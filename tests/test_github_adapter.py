"""The GitHub tracker against the GitHub emulator: real HTTP, every request and response checked
against GitHub's OpenAPI description (``gh.violations`` must stay empty).

Nothing here mocks ghapi or the HTTP stack; faults are injected by the emulator and waits are
recorded by a fake ``sleep`` instead of slept.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.adapters.github import (
    MAX_BODY,
    GitHubAuthError,
    GitHubNotFound,
    GitHubPermissionError,
    GitHubRateLimited,
    GitHubTracker,
    GitHubUnavailable,
    GitHubValidationError,
)
from statemachine.adapters.token import find_token
from statemachine.errors import NotFoundError, OrchError, TrackerError
from tests.conftest import git
from tests.github_emulator import GitHubEmulator

OWNER = "acme"
BOT, BOT_TOKEN = "orchbot", "tok-orchbot-5ecret"


class Waits(list[float]):
    """A fake sleep: records every wait instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Hub:
    """One test's view of the module's emulator: its own repository, its own request log."""

    def __init__(self, emu: GitHubEmulator, repo: str) -> None:
        self.emu, self.repo = emu, repo
        self.api_url = emu.api_url
        self.violations_before = len(emu.violations)

    def create_issue(self, title: str, body: str = "", labels: list[str] | None = None, user: str = "alice") -> int:
        return self.emu.create_issue(OWNER, self.repo, title, body=body, labels=labels or [], user=user)

    def add_label_event(self, number: int, label: str, actor: str) -> None:
        self.emu.add_label_event(OWNER, self.repo, number, label, actor)

    def inject(self, method: str, path_regex: str, kind: str, times: int = 1, **kw: Any) -> Any:
        return self.emu.inject(method, rf"^/repos/{OWNER}/{self.repo}{path_regex}", kind, times=times, **kw)

    def reset_counts(self) -> None:
        self.emu.reset_counts()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        return list(self.emu.requests)

    def calls(self, method: str, pattern: str) -> list[tuple[str, str, int]]:
        """Recorded requests with this method whose path under the repository matches ``pattern``."""
        rx = re.compile(rf"^/repos/{OWNER}/{self.repo}{pattern}")
        return [r for r in self.emu.requests if r[0] == method and rx.search(r[1].split("?", 1)[0])]

    def bare_path(self) -> Path:
        return Path(self.emu.bare_path(OWNER, self.repo))

    @property
    def new_violations(self) -> list[str]:
        return self.emu.violations[self.violations_before :]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHubEmulator]:
    """One emulator for the module (a tracker's ghapi client is built once per API URL)."""
    with GitHubEmulator(tmp_path_factory.mktemp("gh")) as emu:
        emu.add_user("alice", token="tok-alice")
        emu.add_user("mallory", token="tok-mallory")
        emu.add_user(BOT, token=BOT_TOKEN)
        yield emu


@pytest.fixture
def gh(emulator: GitHubEmulator, request: pytest.FixtureRequest) -> Iterator[Hub]:
    """A fresh repository acme/<test name> (alice admin, the bot write), clean counts, and no OpenAPI violation."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:90]
    emulator.add_repo(OWNER, name, default_branch="main", source=None)
    emulator.set_permission(OWNER, name, "alice", "admin")
    emulator.set_permission(OWNER, name, BOT, "write")
    emulator.reset_counts()
    hub = Hub(emulator, name)
    yield hub
    emulator.faults.clear()
    assert hub.new_violations == [], hub.new_violations


def make(gh: Hub, token: str = BOT_TOKEN, repo: str | None = None, **kw: Any) -> GitHubTracker:
    kw.setdefault("sleep", Waits())
    kw.setdefault("timeout", 5.0)
    return GitHubTracker(OWNER, repo or gh.repo, token, api_url=gh.api_url, token_source="GH_TOKEN", **kw)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def tracker(gh: Hub, waits: Waits) -> Iterator[GitHubTracker]:
    t = make(gh, sleep=waits)
    yield t
    t.close()


def push_branch(gh: Hub, tmp_path: Path, branch: str) -> str:
    """Push a commit on ``branch`` (based on main) to the emulator's repository; return its sha."""
    work = tmp_path / f"work-{branch.replace('/', '-')}"
    git(tmp_path, "clone", "-q", str(gh.bare_path()), str(work))
    git(work, "checkout", "-q", "-B", branch)
    (work / f"{branch.replace('/', '_')}.txt").write_text(branch + "\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"change on {branch}")
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD").strip()


def assert_clean(err: BaseException) -> None:
    """An orch error raised at the boundary: no chained exception, no traceback text, no token."""
    text = str(err)
    assert isinstance(err, TrackerError)
    assert err.__cause__ is None and err.__suppress_context__
    assert "Traceback" not in text and "httpx" not in text and "APIError" not in text
    assert BOT_TOKEN not in text and "tok-" not in text
    assert getattr(err, "hint", None)


# the Tracker contract (what the local tracker does) ----------------------------------------


def test_get_and_list_issues(gh: Hub, tracker: GitHubTracker) -> None:
    a = gh.create_issue("Fix the parser", body="It breaks on tabs.", labels=["agent:auto", "bug"], user="alice")
    b = gh.create_issue("Other", body="", labels=["bug"], user="alice")
    issue = tracker.get_issue(a)
    assert (issue.number, issue.title, issue.body, issue.state) == (a, "Fix the parser", "It breaks on tabs.", "open")
    assert issue.labels == ("agent:auto", "bug") and issue.author == "alice" and issue.comments == ()
    assert issue.created_at and issue.updated_at
    assert [i.number for i in tracker.list_issues()] == [a, b]
    assert [i.number for i in tracker.list_issues(label="agent:auto")] == [a]
    assert tracker.list_issues(label="nothing-has-this") == []
    assert tracker.list_issues(state="closed") == []
    with pytest.raises(OrchError):
        tracker.list_issues(state="sideways")


def test_labels_add_and_remove(gh: Hub, tracker: GitHubTracker) -> None:
    n = gh.create_issue("Labels", labels=["agent:auto"], user="alice")
    tracker.add_labels(n, ["agent:running", "needs review"])
    assert tracker.get_issue(n).labels == ("agent:auto", "agent:running", "needs review")
    gh.reset_counts()
    tracker.add_labels(n, [])
    assert gh.requests == []  # nothing to add: no request
    tracker.remove_labels(n, ["agent:auto", "needs review", "never-there"])  # an absent label is fine
    assert tracker.get_issue(n, comments=False).labels == ("agent:running",)


def test_comments_post_find_delete(gh: Hub, tracker: GitHubTracker) -> None:
    n = gh.create_issue("Comments", user="alice")
    marker = "<!-- orch:run=1-abc kind=claim -->"
    assert tracker.find_comment(n, marker) is None
    c = tracker.post_comment(n, f"claimed\n\n{marker}")
    assert c.author == BOT and c.id > 0 and marker in c.body and c.created_at
    other = tracker.post_comment(n, "no marker here")
    found = tracker.find_comment(n, marker)
    assert found is not None and found.id == c.id
    issue = tracker.get_issue(n)
    assert [x.id for x in issue.comments] == [c.id, other.id]
    assert [x.author for x in issue.comments] == [BOT, BOT]
    assert [x.id for x in tracker.list_comments(n)] == [c.id, other.id]
    tracker.delete_comment(n, c.id)
    assert tracker.find_comment(n, marker) is None
    tracker.delete_comment(n, c.id)  # already gone: fine
    assert [x.id for x in tracker.get_issue(n).comments] == [other.id]


def test_find_comment_trusts_only_the_learned_identity(gh: Hub) -> None:
    n = gh.create_issue("Spoof", user="alice")
    marker = "<!-- orch:claim run=7-x -->"
    with make(gh, token="tok-alice") as someone_else:
        someone_else.post_comment(n, f"fake claim {marker}")
    with make(gh) as runner, make(gh, runner_login=BOT) as checked:
        assert runner.find_comment(n, marker) is None  # no setting needed: the token's user is learned
        assert checked.find_comment(n, marker) is None
        mine = runner.post_comment(n, f"real claim {marker}")
        found = runner.find_comment(n, marker)
        assert found is not None and found.id == mine.id and runner.identity() == BOT
    with make(gh, runner_login="someone-else") as wrong, pytest.raises(OrchError, match="acts as"):
        wrong.find_comment(n, marker)


def test_pull_request_find_or_create_is_a_draft_and_never_duplicated(
    gh: Hub, tracker: GitHubTracker, tmp_path: Path
) -> None:
    n = gh.create_issue("Feature", labels=["agent:auto"], user="alice")
    sha = push_branch(gh, tmp_path, "orch/1-feature")
    marker = f"<!-- orch:run={n}-abc kind=pull-request -->"
    assert tracker.find_pull(marker) is None
    pr = tracker.create_pull(n, "Feature (#1)", f"Closes #{n}\n\n{marker}", "orch/1-feature", "main", sha, "", marker)
    assert pr.draft is True and pr.head == "orch/1-feature" and pr.base == "main" and pr.head_sha == sha
    assert pr.issue == n and pr.marker == marker and marker in pr.body and pr.url
    gh.reset_counts()
    again = tracker.create_pull(
        n, "Feature (#1)", f"Closes #{n}\n\n{marker}", "orch/1-feature", "main", sha, "", marker
    )
    assert again.number == pr.number
    assert gh.calls("POST", r"/pulls$") == []  # found by its marker: no second pull request
    found = tracker.find_pull(marker)
    assert found is not None and found.number == pr.number and found.issue == n and found.draft


def test_an_issue_that_is_a_pull_request(gh: Hub, tracker: GitHubTracker, tmp_path: Path) -> None:
    n = gh.create_issue("Real issue", labels=["agent:auto"], user="alice")
    sha = push_branch(gh, tmp_path, "orch/pr-as-issue")
    marker = "<!-- orch:run=1-pr kind=pull-request -->"
    pr = tracker.create_pull(n, "A pull", marker, "orch/pr-as-issue", "main", sha, "", marker)
    with pytest.raises(GitHubNotFound) as err:
        tracker.get_issue(pr.number)
    assert f"#{pr.number} is a pull request" in str(err.value)
    assert isinstance(err.value, NotFoundError)
    assert_clean(err.value)
    assert [i.number for i in tracker.list_issues(state="all")] == [n]  # the issue list skips pull requests


# request counts, pagination and ETags ------------------------------------------------------


def test_pagination_uses_ceil_n_over_100_requests(gh: Hub, tracker: GitHubTracker) -> None:
    for i in range(250):
        gh.create_issue(f"Issue {i}", labels=["agent:auto"], user="alice")
    gh.create_issue("Unlabelled", user="alice")
    gh.reset_counts()
    before = tracker.request_count
    issues = tracker.list_issues(label="agent:auto")
    assert len(issues) == 250 and len({i.number for i in issues}) == 250
    assert [i.number for i in issues] == sorted(i.number for i in issues)
    assert len(gh.calls("GET", "/issues$")) == 3 and len(gh.requests) == 3
    assert tracker.request_count - before == 3


def test_etag_second_poll_is_a_304_with_the_same_issues(gh: Hub, tracker: GitHubTracker) -> None:
    for i in range(120):
        gh.create_issue(f"Issue {i}", labels=["agent:auto"], user="alice")
    first = tracker.list_issues(label="agent:auto")
    gh.reset_counts()
    second = tracker.list_issues(label="agent:auto")
    assert second == first and len(second) == 120
    statuses = [s for (_, _, s) in gh.calls("GET", "/issues$")]
    assert statuses == [304, 304]
    assert tracker.not_modified >= 2
    tracker.add_labels(first[0].number, ["agent:running"])  # the list changes: the next poll sees it
    gh.reset_counts()
    third = tracker.list_issues(label="agent:auto")
    assert 200 in [s for (_, _, s) in gh.calls("GET", "/issues$")]
    assert "agent:running" in next(i for i in third if i.number == first[0].number).labels


def test_request_counts_per_method(gh: Hub, tracker: GitHubTracker, tmp_path: Path) -> None:
    n = gh.create_issue("Counted", labels=["agent:auto"], user="alice")

    def cost(fn: Any, *args: Any) -> int:
        before = tracker.request_count
        fn(*args)
        return tracker.request_count - before

    assert cost(tracker.identity) == 1 and cost(tracker.identity) == 0  # learned once, then remembered
    assert cost(tracker.get_issue, n) == 1  # no comments: the comment list is not fetched
    assert cost(tracker.add_labels, n, ["a", "b"]) == 1
    assert cost(tracker.remove_labels, n, ["a", "b"]) == 2
    c = tracker.post_comment(n, "hello <!-- orch:run=1-x kind=claim -->")
    assert cost(tracker.get_issue, n) == 2  # the issue, then one page of comments
    assert cost(tracker.get_issue, n, False) == 1
    assert cost(tracker.find_comment, n, "kind=claim") == 1
    assert cost(tracker.post_comment, n, "again") == 1
    assert cost(tracker.delete_comment, n, c.id) == 1
    assert cost(tracker.find_pull, "nothing") == 1
    assert cost(tracker.whoami) == 0
    assert cost(tracker.permission, "alice") == 1
    assert cost(tracker.repo_info) == 1
    assert cost(tracker.branch_exists, "main") == 1
    gh.reset_counts()
    tracker.get_issue(n)
    assert len(gh.requests) == 2  # the emulator saw exactly what request_count counted


# labels: authority, permissions, ensure_label ----------------------------------------------


def test_label_applied_by_and_permission(gh: Hub, tracker: GitHubTracker) -> None:
    n = gh.create_issue("Who labelled", user="alice")
    assert tracker.label_applied_by(n, "agent:auto") is None
    assert tracker.label_authority(n, "agent:auto") == (None, "none")
    gh.add_label_event(n, "agent:auto", "mallory")
    gh.add_label_event(n, "other", "mallory")
    assert tracker.label_applied_by(n, "agent:auto") == "mallory"
    tracker.remove_labels(n, ["agent:auto"])
    gh.add_label_event(n, "agent:auto", "alice")  # the most recent labeled event wins
    assert tracker.label_applied_by(n, "agent:auto") == "alice"
    assert tracker.label_applied_by(n, "other") == "mallory"
    assert tracker.permission("alice") == "admin"
    assert tracker.permission(BOT) == "write"
    assert tracker.permission("mallory") == "none"
    assert tracker.label_authority(n, "agent:auto") == ("alice", "admin")


def test_ensure_label_created_updated_unchanged_and_dry_run(gh: Hub, tracker: GitHubTracker) -> None:
    gh.reset_counts()
    assert tracker.ensure_label("agent:auto", "0e8a16", "orch may work on this", dry_run=True) == "created"
    assert gh.calls("POST", r"/labels$") == []  # a dry run writes nothing
    assert tracker.ensure_label("agent:auto", "0e8a16", "orch may work on this") == "created"
    assert tracker.ensure_label("agent:auto", "#0E8A16", "orch may work on this") == "unchanged"
    gh.reset_counts()
    assert tracker.ensure_label("agent:auto", "d73a4a", "orch may work on this", dry_run=True) == "updated"
    assert gh.calls("PATCH", r"/labels/") == []
    assert tracker.ensure_label("agent:auto", "d73a4a", "orch may work on this") == "updated"
    assert tracker.ensure_label("agent:auto", "d73a4a", "orch may work on this") == "unchanged"
    assert tracker.ensure_label("area/ui", "ededed", "a name with a slash") == "created"
    assert tracker.ensure_label("area/ui", "ededed", "a name with a slash") == "unchanged"
    with pytest.raises(OrchError):
        tracker.ensure_label("bad", "red", "")


def test_whoami_repo_info_branch_exists(gh: Hub, tracker: GitHubTracker) -> None:
    assert tracker.whoami() == BOT
    info = tracker.repo_info()
    assert info["default_branch"] == "main" and info["full_name"] == f"{OWNER}/{gh.repo}"
    assert info["permissions"].get("push") is True and info["permissions"].get("admin") is False
    assert tracker.branch_exists("main") is True
    assert tracker.branch_exists("no/such-branch") is False
    assert tracker.push_credential() == ("x-access-token", BOT_TOKEN)


# faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502])
def test_5xx_is_retried_with_bounded_jittered_backoff(
    gh: Hub, tracker: GitHubTracker, waits: Waits, status: int
) -> None:
    n = gh.create_issue("Flaky", user="alice")
    gh.inject("GET", rf"/issues/{n}$", "status", times=2, status=status)
    gh.reset_counts()
    assert tracker.get_issue(n).title == "Flaky"
    assert [s for (_, _, s) in gh.calls("GET", rf"/issues/{n}$")] == [status, status, 200]
    assert len(waits) == 2 and all(0 < w <= tracker.backoff_cap for w in waits)
    assert waits[0] <= tracker.backoff_base and waits[1] <= 2 * tracker.backoff_base


def test_5xx_gives_up_after_max_retries_with_a_clear_error(gh: Hub, waits: Waits) -> None:
    n = gh.create_issue("Down", user="alice")
    gh.inject("GET", rf"/issues/{n}$", "status", times=50, status=503)
    with make(gh, sleep=waits, max_retries=3, backoff_base=1.0, backoff_cap=2.0) as t:
        gh.reset_counts()
        with pytest.raises(GitHubUnavailable) as err:
            t.get_issue(n)
    assert len(gh.calls("GET", rf"/issues/{n}$")) == 4  # one try and three retries
    assert len(waits) == 3 and max(waits) <= 2.0
    assert "HTTP 503" in str(err.value) and "githubstatus" in str(err.value)
    assert_clean(err.value)


def test_timeout_is_retried(gh: Hub, waits: Waits) -> None:
    n = gh.create_issue("Slow", user="alice")
    gh.inject("GET", rf"/issues/{n}$", "timeout", times=1, seconds=2.0)
    with make(gh, sleep=waits, timeout=0.5) as t:
        started = time.monotonic()
        assert t.get_issue(n).title == "Slow"
        assert time.monotonic() - started < 2.0
        assert len(waits) == 1 and t.retries == 1


def test_secondary_rate_limit_waits_retry_after(gh: Hub, tracker: GitHubTracker, waits: Waits) -> None:
    n = gh.create_issue("Busy", user="alice")
    gh.inject("POST", rf"/issues/{n}/comments$", "secondary_rate_limit", times=1, retry_after=7)
    c = tracker.post_comment(n, "after the limit")
    assert waits == [7]
    assert [x.id for x in tracker.list_comments(n)] == [c.id]


def test_secondary_rate_limit_429_on_a_list(gh: Hub, tracker: GitHubTracker, waits: Waits) -> None:
    n = gh.create_issue("Listed")
    gh.inject("GET", "/issues$", "secondary_rate_limit", times=1, status=429, retry_after=3)
    assert [i.number for i in tracker.list_issues()] == [n]
    assert waits == [3]
    assert [s for (_, _, s) in gh.calls("GET", "/issues$")] == [429, 200]


def test_primary_rate_limit_far_from_reset_is_a_clear_error(gh: Hub, tracker: GitHubTracker, waits: Waits) -> None:
    n = gh.create_issue("Limited")
    gh.inject("GET", rf"/issues/{n}$", "primary_rate_limit", times=1)
    with pytest.raises(GitHubRateLimited) as err:
        tracker.get_issue(n)
    text = str(err.value)
    assert "rate limit" in text and re.search(r"resets at \d\d:\d\d:\d\d UTC", text)
    assert waits == [] and len(gh.calls("GET", rf"/issues/{n}$")) == 1  # no hammering while limited
    assert err.value.reset_at is not None and err.value.reset_at > time.time() + 60
    assert_clean(err.value)


def test_primary_rate_limit_near_reset_waits_for_it(gh: Hub, tracker: GitHubTracker, waits: Waits) -> None:
    n = gh.create_issue("Soon")
    reset = int(time.time()) + 5
    gh.inject(
        "GET",
        rf"/issues/{n}$",
        "status",
        times=1,
        status=403,
        message="API rate limit exceeded for user ID 3.",
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    assert tracker.get_issue(n).title == "Soon"
    assert len(waits) == 1 and 3 <= waits[0] <= 7  # until the reset (+1 s), not a blind backoff


def test_403_without_rate_limit_is_a_permission_error(gh: Hub) -> None:
    n = gh.create_issue("Read only")
    gh.emu.set_permission(OWNER, gh.repo, "mallory", "read")
    with make(gh, token="tok-mallory") as reader:
        assert reader.get_issue(n).title == "Read only"
        with pytest.raises(GitHubPermissionError) as err:
            reader.add_labels(n, ["agent:auto"])
    assert "403" in str(err.value) and "GH_TOKEN" in str(err.value)
    assert len(gh.calls("POST", rf"/issues/{n}/labels$")) == 1  # a refusal is not retried
    assert_clean(err.value)


def test_timeout_on_post_comment_that_took_effect_is_not_duplicated(gh: Hub) -> None:
    n = gh.create_issue("Slow write")
    marker = "<!-- orch:claim run=9-slow -->"
    gh.inject("POST", rf"/issues/{n}/comments$", "timeout", times=1, seconds=1.5)  # done, then answered too late
    with make(gh, timeout=0.5) as t:
        c = t.post_comment(n, f"claim\n\n{marker}")
        assert [x.id for x in t.list_comments(n)] == [c.id]
    assert len(gh.calls("POST", rf"/issues/{n}/comments$")) == 1


def test_a_pull_request_someone_else_opened_for_the_branch(gh: Hub, tracker: GitHubTracker, tmp_path: Path) -> None:
    n = gh.create_issue("Taken branch")
    sha = push_branch(gh, tmp_path, "orch/taken")
    with make(gh, token="tok-alice") as alice:
        alice.create_pull(n, "Alice's", "no marker of this run", "orch/taken", "main", sha, "", "<!-- other -->")
    marker = f"<!-- orch:run={n}-t kind=pull-request -->"
    with pytest.raises(GitHubValidationError) as err:
        tracker.create_pull(n, "Ours", marker, "orch/taken", "main", sha, "", marker)
    assert "already open, but orch did not open it" in str(err.value)
    assert_clean(err.value)


def test_validation_error_is_clear(gh: Hub, tracker: GitHubTracker, tmp_path: Path) -> None:
    n = gh.create_issue("Invalid", user="alice")
    marker = "<!-- orch:run=1-v kind=pull-request -->"
    with pytest.raises(GitHubValidationError) as err:
        tracker.create_pull(n, "No such head", marker, "no-such-branch", "main", "", "", marker)
    assert "open a draft pull request from no-such-branch into main" in str(err.value)
    assert "Validation Failed" in str(err.value)
    assert_clean(err.value)
    gh.inject("POST", rf"/issues/{n}/comments$", "status", times=1, status=422)
    with pytest.raises(GitHubValidationError) as err2:
        tracker.post_comment(n, "refused")
    assert f"post a comment on issue #{n}" in str(err2.value)
    assert_clean(err2.value)


def test_lost_response_on_post_comment_is_not_duplicated(gh: Hub, tracker: GitHubTracker, waits: Waits) -> None:
    n = gh.create_issue("Lost", user="alice")
    marker = "<!-- orch:run=1-lost kind=report-review-3 -->"
    gh.inject("POST", rf"/issues/{n}/comments$", "lost_response", times=1)
    gh.reset_counts()
    c = tracker.post_comment(n, f"report\n\n{marker}")
    assert marker in c.body
    bodies = [x.body for x in tracker.list_comments(n)]
    assert len(bodies) == 1 and marker in bodies[0]
    assert len(gh.calls("POST", rf"/issues/{n}/comments$")) == 1  # recovered by its marker, not posted again
    assert len(waits) == 1


def test_lost_response_on_create_pull_is_not_duplicated(gh: Hub, tracker: GitHubTracker, tmp_path: Path) -> None:
    n = gh.create_issue("Lost pull", user="alice")
    sha = push_branch(gh, tmp_path, "orch/lost")
    marker = f"<!-- orch:run={n}-lost kind=pull-request -->"
    gh.inject("POST", r"/pulls$", "lost_response", times=1)
    pr = tracker.create_pull(n, "Lost pull", f"Closes #{n}\n\n{marker}", "orch/lost", "main", sha, "", marker)
    assert pr.draft and pr.marker == marker
    assert len(gh.calls("POST", r"/pulls$")) == 1
    found = tracker.find_pull(marker)
    assert found is not None and found.number == pr.number


# error translation -----------------------------------------------------------------------


def test_401_names_the_token_source(gh: Hub) -> None:
    with make(gh, token="tok-wrong") as t, pytest.raises(GitHubAuthError) as err:
        t.list_issues()
    text = str(err.value)
    assert "401" in text and "GH_TOKEN" in text and "gh auth login" in text
    assert_clean(err.value)


def test_the_token_is_a_secret_named_after_its_variable(gh: Hub) -> None:
    with make(gh) as t:
        assert t.secret() == ("GH_TOKEN", BOT_TOKEN)
        assert t.request_count == 0  # telling its secret costs no request
    # a token from `gh auth token` or the configuration has no variable's name: a redaction says TRACKER_TOKEN
    with GitHubTracker(OWNER, gh.repo, "tok-x", api_url=gh.api_url, token_source="gh auth token") as t:
        assert t.secret() == ("TRACKER_TOKEN", "tok-x")


def test_404_repository_and_issue(gh: Hub, tracker: GitHubTracker) -> None:
    with make(gh, repo="nope") as t, pytest.raises(GitHubNotFound) as err:
        t.get_issue(1)
    assert f"{OWNER}/nope does not exist" in str(err.value) and "cannot see it" in str(err.value)
    assert_clean(err.value)
    with pytest.raises(GitHubNotFound) as err2:
        tracker.get_issue(4242)
    assert "issue #4242 does not exist" in str(err2.value)
    assert_clean(err2.value)
    with pytest.raises(GitHubNotFound):
        tracker.add_labels(4242, ["x"])


# big bodies ------------------------------------------------------------------------------


def test_a_10_mb_body(gh: Hub, tracker: GitHubTracker) -> None:
    big = ("0123456789abcdef" * 65536) * 10  # 10 MiB
    n = gh.create_issue("Huge", body=big, user="alice")
    assert tracker.get_issue(n).body == big
    assert [i.number for i in tracker.list_issues()] == [n]
    marker = "<!-- orch:run=1-big kind=report-blocked-1 -->"
    c = tracker.post_comment(n, big + "\n\n" + marker)  # GitHub takes 65,536 characters at most
    assert len(c.body) <= MAX_BODY and c.body.endswith(marker) and "shortened by orch" in c.body
    found = tracker.find_comment(n, marker)
    assert found is not None and found.id == c.id


# the token -------------------------------------------------------------------------------


def test_find_token_order_and_missing(tmp_path: Path) -> None:
    empty = str(tmp_path / "empty-bin")
    os.mkdir(empty)
    assert find_token({"GH_TOKEN": "a", "GITHUB_TOKEN": "b", "PATH": empty}) == ("a", "GH_TOKEN")
    assert find_token({"GH_TOKEN": " ", "GITHUB_TOKEN": "b", "PATH": empty}) == ("b", "GITHUB_TOKEN")
    with pytest.raises(OrchError) as err:
        find_token({"PATH": empty})
    assert "GH_TOKEN" in str(err.value) and "gh auth login" in str(err.value)


def test_find_token_asks_the_gh_cli(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh_cli = bin_dir / "gh"
    gh_cli.write_text('#!/bin/sh\n[ "$1 $2" = "auth token" ] && echo "gho_fromcli" && exit 0\nexit 1\n')
    gh_cli.chmod(gh_cli.stat().st_mode | stat.S_IEXEC)
    assert find_token({"PATH": str(bin_dir)}) == ("gho_fromcli", "`gh auth token`")
    gh_cli.write_text("#!/bin/sh\nexit 1\n")  # installed but logged out
    with pytest.raises(OrchError) as err:
        find_token({"PATH": str(bin_dir)})
    assert "gh auth login" in str(err.value)


def test_a_spoofed_pull_request_with_the_runs_marker_is_never_adopted(
    gh: Hub, tracker: GitHubTracker, tmp_path: Path
) -> None:
    """The run id is public (it is in the claim comment): a body with the run's marker proves nothing. Only a pull
    request the runner opened, from the run's branch of this repository, is the run's."""
    n = gh.create_issue("Feature", labels=["agent:auto"], user="alice")
    branch = "orch/1-feature"
    marker = f"<!-- orch:run={n}-abc kind=pull-request -->"
    body = f"Closes #{n}\n\n{marker}"
    push_branch(gh, tmp_path, "evil/one")
    push_branch(gh, tmp_path, "orch/other")
    fork = tmp_path / "fork"
    git(tmp_path, "clone", "-q", str(gh.bare_path()), str(fork))
    git(fork, "checkout", "-q", "-B", branch)
    (fork / "evil.txt").write_text("evil\n")
    git(fork, "add", "-A")
    git(fork, "commit", "-q", "-m", "evil")
    gh.emu.add_repo("mallory", gh.repo, source=fork)
    spoofs = {
        gh.emu.open_pull(OWNER, gh.repo, "mallory", "someone else's", body, "evil/one"),
        gh.emu.open_pull(OWNER, gh.repo, BOT, "from a fork", body, branch, fork_owner="mallory", draft=True),
        gh.emu.open_pull(OWNER, gh.repo, BOT, "from another branch", body, "orch/other", draft=True),
    }
    sha = push_branch(gh, tmp_path, branch)
    assert tracker.find_pull(marker, branch) is None
    pr = tracker.create_pull(n, "Feature (#1)", body, branch, "main", sha, "", marker)
    assert pr.number not in spoofs and pr.head == branch and pr.head_sha == sha and pr.draft
    found = tracker.find_pull(marker, branch)
    assert found is not None and found.number == pr.number
    assert gh.new_violations == []


def test_someone_elses_pull_request_from_the_runs_branch_is_not_taken_over(
    gh: Hub, tracker: GitHubTracker, tmp_path: Path
) -> None:
    n = gh.create_issue("Feature", labels=["agent:auto"], user="alice")
    branch = "orch/2-feature"
    sha = push_branch(gh, tmp_path, branch)
    earlier = f"<!-- orch:run={n}-old kind=pull-request -->"
    spoof = gh.emu.open_pull(OWNER, gh.repo, "alice", "looks like orch's", f"Closes #{n}\n\n{earlier}", branch)
    marker = f"<!-- orch:run={n}-new kind=pull-request -->"
    with pytest.raises(GitHubValidationError, match="orch did not open it"):
        tracker.create_pull(n, "Feature", f"Closes #{n}", branch, "main", sha, "", marker)
    pulls = gh.emu.state.repo(OWNER, gh.repo).issues
    assert marker not in (pulls[spoof].body or "")


def test_an_app_installation_token_acts_as_its_bot(gh: Hub) -> None:
    login = gh.emu.add_app("orch-app", "ghs-installation-token")
    gh.emu.set_permission(OWNER, gh.repo, login, "write")
    with (
        make(gh, token="ghs-installation-token") as app,
        pytest.raises(GitHubPermissionError, match="installation token"),
    ):
        app.identity()  # no slug: an error, never "trust everyone"
    n = gh.create_issue("Work", user="alice")
    with make(gh, token="ghs-installation-token", app_slug="orch-app") as app:
        assert app.identity() == login == "orch-app[bot]"
        mine = app.post_comment(n, "claim <!-- orch:claim run=1-a -->")
        found = app.find_comment(n, "<!-- orch:claim run=1-a -->")
        assert mine.author == login and found is not None and found.id == mine.id
    assert gh.new_violations == []
