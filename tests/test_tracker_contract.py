"""One contract for the Tracker port, run against the embedded local tracker and the GitHub adapter (on the emulator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from statemachine.errors import NotFoundError
from statemachine.ports import Tracker
from tests.conftest import git


@dataclass
class Subject:
    tracker: Tracker
    new_issue: Callable[[str, str, list[str]], int]
    branch: Callable[[str], str]  # push/make a branch, return its head sha
    maintainer: str
    comment_as: Callable[[int, str, str], None]  # (issue, body, login): a comment someone else writes


@pytest.fixture(params=["local", "github"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "local":
        from statemachine.adapters.local import LocalTracker, _user
        from statemachine.store import Store

        store = Store(tmp_path / "state" / "orch.db")
        local = LocalTracker(store)

        def comment(n: int, body: str, login: str) -> None:
            local.post_comment(n, body, author=login)

        yield Subject(
            local, lambda t, b, labels: local.create_issue(t, b, labels).number, lambda name: "0" * 40, _user(), comment
        )
        store.close()
        return
    from statemachine.adapters.github import GitHubTracker
    from tests.github_emulator import GitHubEmulator

    with GitHubEmulator(tmp_path / "gh") as gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_user("bot", token="tok-bot")
        seed = tmp_path / "seed"
        seed.mkdir()
        git(seed, "init", "-q", "-b", "main")
        (seed / "a.txt").write_text("a\n")
        git(seed, "add", "-A")
        git(seed, "commit", "-qm", "init")
        gh.add_repo("acme", "widgets", default_branch="main", source=seed)
        gh.set_permission("acme", "widgets", "alice", "admin")
        gh.set_permission("acme", "widgets", "bot", "write")
        tracker = GitHubTracker("acme", "widgets", "tok-bot", api_url=gh.api_url, token_source="test")

        def new_issue(title: str, body: str, labels: list[str]) -> int:
            n = gh.create_issue("acme", "widgets", title, body=body, user="alice")
            for label in labels:
                gh.add_label_event("acme", "widgets", n, label, "alice")
            return n

        def branch(name: str) -> str:
            git(seed, "checkout", "-q", "-B", name, "main")
            (seed / f"{name.replace('/', '_')}.txt").write_text(name)
            git(seed, "add", "-A")
            git(seed, "commit", "-qm", name)
            git(seed, "push", "-q", gh.git_url("acme", "widgets", token="tok-alice"), f"{name}:refs/heads/{name}")
            return git(seed, "rev-parse", "HEAD").strip()

        gh.add_user("mallory", token="tok-mallory")
        gh.set_permission("acme", "widgets", "mallory", "read")

        def comment_as(n: int, body: str, login: str) -> None:
            GitHubTracker("acme", "widgets", f"tok-{login}", api_url=gh.api_url, token_source="test").post_comment(
                n, body
            )

        yield Subject(tracker, new_issue, branch, "alice", comment_as)
        assert gh.violations == []


def test_issues_are_read_with_and_without_comments(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("First", "the body", ["agent:auto"])
    t.post_comment(n, "hello")
    full, bare = t.get_issue(n), t.get_issue(n, comments=False)
    assert (full.title, full.body, full.state, full.labels) == ("First", "the body", "open", ("agent:auto",))
    assert [c.body for c in full.comments] == ["hello"]
    assert bare.comments == () and bare.labels == full.labels
    with pytest.raises(NotFoundError):
        t.get_issue(n + 999)


def test_listing_filters_by_label(subject: Subject) -> None:
    t = subject.tracker
    a = subject.new_issue("A", "", ["agent:auto"])
    subject.new_issue("B", "", [])
    c = subject.new_issue("C", "", ["agent:auto", "other"])
    assert [i.number for i in t.list_issues(label="agent:auto")] == [a, c]
    assert len(t.list_issues()) >= 3


def test_labels_are_idempotent(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("L", "", [])
    t.add_labels(n, ["agent:running"])
    t.add_labels(n, ["agent:running", "agent:review"])
    assert set(t.get_issue(n, comments=False).labels) == {"agent:running", "agent:review"}
    t.remove_labels(n, ["agent:running", "never-there"])
    assert t.get_issue(n, comments=False).labels == ("agent:review",)


def test_labels_are_set_in_one_write_and_a_kept_label_keeps_who_applied_it(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("S", "", ["agent:auto"])
    t.add_labels(n, ["agent:running"])
    t.set_labels(n, ["agent:auto", "agent:review"])
    assert set(t.get_issue(n, comments=False).labels) == {"agent:auto", "agent:review"}
    assert t.label_authority(n, "agent:auto")[0] == subject.maintainer  # not re-applied by the runner
    t.set_labels(n, ["agent:auto", "agent:review"])  # again: nothing changes
    assert set(t.get_issue(n, comments=False).labels) == {"agent:auto", "agent:review"}


def test_comments_are_found_by_marker_and_deleted(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("C", "", [])
    first = t.post_comment(n, "claim\n\n<!-- orch:claim run=r1 -->")
    t.post_comment(n, "other")
    found = t.find_comment(n, "<!-- orch:claim run=r1 -->")
    assert found is not None and found.id == first.id
    assert t.find_comment(n, "<!-- orch:claim run=r2 -->") is None
    t.delete_comment(n, first.id)
    assert [c.body for c in t.list_comments(n)] == ["other"]


def test_a_comment_is_rewritten_in_place_and_a_gone_one_says_so(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("L", "", [])
    claim = t.post_comment(n, "claimed\n<!-- orch:claim run=r1 -->\n<!-- orch:lease renewed=2026-01-01T00:00:00Z -->")
    other = t.post_comment(n, "after")
    renewed = t.update_comment(n, claim.id, claim.body.replace("2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"))
    assert renewed is not None and renewed.id == claim.id and "renewed=2026-01-01T00:05:00Z" in renewed.body
    listed = t.list_comments(n)
    assert [c.id for c in listed] == [claim.id, other.id], "an edit keeps the comment's place in the list"
    assert "renewed=2026-01-01T00:05:00Z" in listed[0].body and listed[0].created_at == claim.created_at
    t.delete_comment(n, claim.id)
    assert t.update_comment(n, claim.id, "again") is None


def test_pull_requests_are_drafts_found_or_created_by_marker(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("P", "", [])
    sha = subject.branch("orch/p-1")
    marker = "<!-- orch:run=r1 kind=pull-request -->"
    first = t.create_pull(n, "P (#1)", f"Closes #{n}\n\n{marker}", "orch/p-1", "main", sha, "0" * 40, marker)
    again = t.create_pull(n, "P (#1)", f"Closes #{n}\n\n{marker}", "orch/p-1", "main", sha, "0" * 40, marker)
    assert first.number == again.number and first.draft
    found = t.find_pull(marker)
    assert found is not None and found.number == first.number and found.head == "orch/p-1"
    assert t.find_pull("<!-- orch:run=other kind=pull-request -->") is None


def test_label_authority_names_who_applied_a_label(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("A", "", ["agent:auto"])
    actor, permission = t.label_authority(n, "agent:auto")
    assert actor == subject.maintainer and permission in ("admin", "maintain", "write")
    assert t.label_authority(n, "agent:never") == (None, "none")


def test_the_runner_knows_who_it_is_and_only_its_markers_count(subject: Subject) -> None:
    t = subject.tracker
    me = t.identity()
    assert me and t.identity() == me and me != "mallory"
    n = subject.new_issue("Spoofed", "", ["agent:auto"])
    marker = "<!-- orch:claim run=1-abc -->"
    subject.comment_as(n, f"planted {marker}", "mallory")
    assert t.find_comment(n, marker) is None, "a marker in someone else's comment is not orch's"
    mine = t.post_comment(n, f"claim {marker}")
    assert mine.author == me
    found = t.find_comment(n, marker)
    assert found is not None and found.id == mine.id


def test_an_issue_with_orchs_marker_by_someone_else_is_not_orchs(subject: Subject) -> None:
    t = subject.tracker
    marker = "<!-- orch:child parent=1 key=spoof -->"
    planted = subject.new_issue("Planted child", f"do evil\n\n{marker}", ["agent:child"])
    child = t.create_issue("Real child", f"the work\n\n{marker}", ["agent:child"], marker=marker)
    assert child.number != planted and child.author == t.identity()
    assert t.create_issue("Real child", f"the work\n\n{marker}", ["agent:child"], marker=marker).number == child.number


def test_a_pull_request_is_found_only_from_its_branch(subject: Subject) -> None:
    t = subject.tracker
    n = subject.new_issue("P", "", [])
    sha = subject.branch("orch/p-2")
    marker = "<!-- orch:run=r2 kind=pull-request -->"
    pr = t.create_pull(n, "P (#2)", f"Closes #{n}\n\n{marker}", "orch/p-2", "main", sha, "0" * 40, marker)
    found = t.find_pull(marker, "orch/p-2")
    assert found is not None and found.number == pr.number
    assert t.find_pull(marker, "orch/elsewhere") is None


def test_a_tracker_does_what_its_capabilities_say_and_refuses_the_rest(subject: Subject) -> None:
    from statemachine.errors import OrchError

    t = subject.tracker
    caps = t.capabilities
    if caps.remote_branches:
        user, token = t.push_credential()
        assert user and token
    else:
        with pytest.raises(OrchError):
            t.push_credential()
    if not caps.label_list:
        with pytest.raises(OrchError):
            t.ensure_label("agent:auto", "0e8a16", "", dry_run=True)
    else:
        assert t.ensure_label("agent:auto", "0e8a16", "orch may run this issue", dry_run=True) in (
            "created",
            "updated",
            "unchanged",
        )
    assert caps.fleet == caps.remote_branches  # today: the shared tracker is the remote one


def test_a_tracker_names_its_secret_caveat_and_costs_by_port(subject: Subject) -> None:
    """What code used to probe with getattr is on the port: every tracker answers, in its own way."""
    t = subject.tracker
    secret = t.secret()
    if t.capabilities.remote_branches:  # a tracker that receives branches acts with a credential: it is a secret
        assert secret is not None and secret[1] == t.push_credential()[1] and secret[0]
    else:
        assert secret is None
    assert t.pull_request_caveat() is None  # neither acts as a workflow's job token here
    n = subject.new_issue("counted", "", ["agent:auto"])
    actors = t.label_actors(["agent:auto"])
    if actors is not None:  # a bulk read, when the tracker offers one, agrees with the per-issue read
        assert actors["agent:auto"].get(n) == t.label_authority(n, "agent:auto")[0] == subject.maintainer
    before = t.request_count
    t.get_issue(n)
    assert (before is None) == (t.request_count is None)
    if before is not None:
        assert t.request_count is not None and t.request_count > before


def test_what_changed_since_is_read_by_the_trackers_own_time(subject: Subject) -> None:
    """changes_since: the issues updated since a time the tracker gave (never this machine's), an unchanged answer
    says so against its etag, and a label added is a change; pull_activity lists pull requests with their last
    activity."""
    t = subject.tracker
    n = subject.new_issue("watched", "", [])
    first = t.changes_since(None, None)
    assert first.modified and first.newest and n in [i.number for i in first.issues]
    since = first.newest
    quiet = t.changes_since(since, None)
    assert quiet.modified and n in [i.number for i in quiet.issues]  # at or after ``since``: inclusive
    assert not t.changes_since(since, quiet.etag).modified
    t.add_labels(n, ["agent:auto"])
    moved = t.changes_since(since, quiet.etag)
    assert moved.modified and moved.complete and moved.etag != quiet.etag
    assert [i.labels for i in moved.issues if i.number == n] == [("agent:auto",)]
    assert all(i.updated_at >= since for i in moved.issues) and moved.newest >= since
    pulls = t.pull_activity(None)
    assert pulls.modified and not pulls.issues and not t.pull_activity(pulls.etag).modified
    head = subject.branch("orch/watched")
    pr = t.create_pull(n, "t", "b", "orch/watched", "main", head, "0" * 40, "<!-- orch:run=1-x kind=pull-request -->")
    after = t.pull_activity(pulls.etag)
    assert after.modified and pr.number in [p for p, _at in after.pulls]


def test_the_activity_feed_is_conditional_and_moves_with_a_label(subject: Subject) -> None:
    """activity: a tracker that says it has a feed answers an unchanged feed as not modified against its etag, and a
    label added moves it (a change that matters); one without answers None."""
    t = subject.tracker
    n = subject.new_issue("fed", "", [])
    first = t.activity(None, None)
    if not t.capabilities.activity_feed:
        assert first is None
        return
    assert first is not None and first.modified and first.etag and first.wait >= 0
    quiet = t.activity(first.etag, first.last)
    assert quiet is not None and not quiet.modified and quiet.etag == first.etag
    t.add_labels(n, ["agent:auto"])
    moved = t.activity(first.etag, first.last)
    assert moved is not None and moved.modified and moved.relevant and moved.etag != first.etag
    assert moved.last is not None and (first.last is None or int(moved.last) > int(first.last))


def test_labelled_issues_in_bulk_are_the_listed_issues_with_who_labelled_them(subject: Subject) -> None:
    t = subject.tracker
    a = subject.new_issue("A", "body of A", ["agent:auto", "other"])
    subject.new_issue("B", "", ["other"])
    both = t.labelled_issues("agent:auto")
    if both is None:  # no bulk read: the listing and the per-issue reads serve
        return
    issues, actors = both
    assert issues == t.list_issues(label="agent:auto")
    assert actors == {a: t.label_authority(a, "agent:auto")[0]} == {a: subject.maintainer}
