"""Polls cost what changed (statemachine/polling.py) on the GitHub emulator: requests counted, never timed.

- the poller in this process over a real GitHubTracker and store: an idle poll is one conditional request answered
  304, also while issues rest in review (then the activity feed, at GitHub's pace, and the issue list between); a
  label added, an issue closed, a review or an inline review comment between two polls is seen by the next one; a
  lagging feed delays feedback no longer than the backstop;
- `orch daemon --once` in fresh processes: once warm, an idle run sends exactly one request, answered 304;
- `orch status` over a few labelled issues in a repository with a long history sends a handful of requests.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachine.adapters.github import GitHubTracker
from statemachine.polling import BACKSTOP_SECONDS, Poller
from statemachine.store import Store
from tests.github_emulator import GitHubEmulator
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, api, clone, configure, labelled_issue, make_project, orch


@pytest.fixture
def gh(tmp_path: Path) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(tmp_path / "github") as emu:
        emu.add_user("alice", token="tok-alice")
        emu.add_user(BOT, token=BOT_TOKEN)
        make_project(tmp_path, emu)
        before = len(emu.violations)
        yield emu
        assert emu.violations[before:] == []


def poller(gh: GitHubEmulator, tmp_path: Path) -> tuple[Poller, GitHubTracker]:
    tracker = GitHubTracker(OWNER, REPO, BOT_TOKEN, api_url=gh.api_url, token_source="GH_TOKEN", timeout=5.0)
    store = Store(tmp_path / "state" / "orch.db")
    return Poller(tracker, store, "github|test", ["agent:auto", "agent:plan-auto"]), tracker


def warm(p: Poller, watch_pulls: bool = False) -> None:
    """The first poll lists everything; the second reads the first window; from the third an idle poll is a 304."""
    for _ in range(2):
        p.poll(lambda _i: watch_pulls)
        p.done(())


def test_an_idle_poll_is_one_conditional_request_and_a_label_added_is_seen_next(
    gh: GitHubEmulator, tmp_path: Path
) -> None:
    for i in range(30):
        gh.create_issue(OWNER, REPO, f"other {i}", body="not for orch")
    labelled = gh.create_issue(OWNER, REPO, "labelled", body="x")
    gh.add_label_event(OWNER, REPO, labelled, "agent:auto", "alice")
    p, _tracker = poller(gh, tmp_path)
    first = p.poll()
    p.done(())
    assert [i.number for i in first.issues] == [labelled] and first.full and first.recheck is None
    p.poll()
    p.done(())
    gh.reset_counts()
    idle = p.poll()
    p.done(())
    assert [(m, s) for m, _p, s in gh.requests] == [("GET", 304)]
    assert [i.number for i in idle.issues] == [labelled] and idle.recheck == frozenset()

    late = gh.create_issue(OWNER, REPO, "labelled later", body="y")
    gh.add_label_event(OWNER, REPO, late, "agent:auto", "alice")
    gh.reset_counts()
    seen = p.poll()
    p.done(())
    assert len(gh.requests) == 1 and [i.number for i in seen.issues] == [labelled, late]
    assert late in (seen.recheck or ())

    gh.reset_counts()  # closing one and unlabelling the other: both leave the view at the next poll
    _api(gh, "PATCH", f"/repos/{OWNER}/{REPO}/issues/{labelled}", {"state": "closed"})
    _api(gh, "DELETE", f"/repos/{OWNER}/{REPO}/issues/{late}/labels/agent:auto")
    gh.reset_counts()
    gone = p.poll()
    p.done(())
    assert len(gh.requests) == 1 and gone.issues == []


def test_a_fresh_process_starts_from_the_saved_cursor(gh: GitHubEmulator, tmp_path: Path) -> None:
    n = gh.create_issue(OWNER, REPO, "labelled", body="x")
    gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
    p, _tracker = poller(gh, tmp_path)
    warm(p)
    again, _t = poller(gh, tmp_path)  # a new tracker (no ETag in memory) over the same store
    gh.reset_counts()
    poll = again.poll()
    again.done(())
    assert [(m, s) for m, _p, s in gh.requests] == [("GET", 304)] and [i.number for i in poll.issues] == [n]
    late = gh.create_issue(OWNER, REPO, "labelled between two processes", body="y")
    gh.add_label_event(OWNER, REPO, late, "agent:plan-auto", "alice")
    third, _t = poller(gh, tmp_path)
    assert [i.number for i in third.poll().issues] == [n, late]


def test_a_review_check_that_was_not_made_is_kept_for_the_next_poll(gh: GitHubEmulator, tmp_path: Path) -> None:
    n = gh.create_issue(OWNER, REPO, "labelled", body="x")
    gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
    p, _tracker = poller(gh, tmp_path)
    warm(p)
    gh.add_label_event(OWNER, REPO, n, "agent:review", BOT)
    assert n in (p.poll().recheck or ())
    p.done([n])  # the daemon could not make the check (a failed read, a busy slot)
    again, _t = poller(gh, tmp_path)
    assert n in (again.poll().recheck or ())


def _open_pull(gh: GitHubEmulator) -> int:
    subprocess.run(["git", "branch", "orch/feature", "main"], cwd=gh.bare_path(OWNER, REPO), check=True)
    return gh.open_pull(OWNER, REPO, BOT, "feature", "body", "orch/feature", draft=True)


def _paths(gh: GitHubEmulator) -> list[tuple[str, int]]:
    """The requests since the last reset: (what was read, status)."""
    return [(p.split("?")[0].rsplit("/", 1)[-1], s) for _m, p, s in gh.requests]


@pytest.mark.parametrize("kind", ["review", "inline comment"])
def test_feedback_on_a_pull_request_resting_in_review_is_seen(gh: GitHubEmulator, tmp_path: Path, kind: str) -> None:
    """While an issue rests in review an idle poll is one request (the activity feed, 304); feedback moves the feed,
    and the same poll reads the issues and the pull requests."""
    gh.feed_poll_interval = 0  # GitHub's pacing of the feed is its own test
    resting = gh.create_issue(OWNER, REPO, "resting in review", body="x")
    gh.add_label_event(OWNER, REPO, resting, "agent:auto", "alice")
    pull = _open_pull(gh)
    p, _tracker = poller(gh, tmp_path)
    warm(p, watch_pulls=True)
    for _ in range(3):
        gh.reset_counts()
        idle = p.poll(lambda _i: True)
        p.done(())
        assert _paths(gh) == [("events", 304)] and idle.recheck == frozenset()
    if kind == "review":
        gh.submit_review(OWNER, REPO, pull, "alice", "REQUEST_CHANGES", "rename it")
    else:
        gh.submit_review(OWNER, REPO, pull, "alice", "COMMENT", "", comments=[("app.py", 1, "why?")])
    gh.reset_counts()
    seen = p.poll(lambda _i: True)
    p.done(())
    assert pull in (seen.recheck or ()) and _paths(gh) == [("events", 200), ("issues", 304), ("pulls", 200)]


def test_the_feed_is_read_at_githubs_pace_and_the_issue_list_between(gh: GitHubEmulator, tmp_path: Path) -> None:
    """X-Poll-Interval: between two reads of the feed each poll reads the issue list instead (still one request), so
    a label added is seen by the next poll however the feed is paced; a star moves the feed but changes nothing the
    daemon reads, so nothing more is read."""
    resting = gh.create_issue(OWNER, REPO, "resting in review", body="x")
    gh.add_label_event(OWNER, REPO, resting, "agent:auto", "alice")
    _open_pull(gh)
    p, _tracker = poller(gh, tmp_path)
    warm(p, watch_pulls=True)  # the second poll read the feed: the next 60 s read the issue list
    gh.reset_counts()
    p.poll(lambda _i: True)
    p.done(())
    assert _paths(gh) == [("issues", 304)]
    late = gh.create_issue(OWNER, REPO, "labelled while the feed waits", body="y")
    gh.add_label_event(OWNER, REPO, late, "agent:auto", "alice")
    gh.reset_counts()
    seen = p.poll(lambda _i: True)
    p.done(())
    assert _paths(gh) == [("issues", 200)] and late in [i.number for i in seen.issues]
    gh.feed_poll_interval = 0
    p.feed_at = None  # as if GitHub's 60 s had passed
    p.poll(lambda _i: True)  # the feed moved with the label: the lists are read
    p.done(())
    gh.star(OWNER, REPO, "mallory")
    gh.reset_counts()
    starred = p.poll(lambda _i: True)
    p.done(())
    assert _paths(gh) == [("events", 200)] and starred.recheck == frozenset()


def test_a_lagging_feed_delays_feedback_but_never_past_the_backstop(gh: GitHubEmulator, tmp_path: Path) -> None:
    """GitHub says a feed entry can take from 30 s to 6 h to appear. Feedback the feed does not show yet is still
    seen once BACKSTOP_SECONDS have passed: then one poll reads the issue list, the next the pull requests, each one
    request."""
    gh.feed_poll_interval = 0
    resting = gh.create_issue(OWNER, REPO, "resting in review", body="x")
    gh.add_label_event(OWNER, REPO, resting, "agent:auto", "alice")
    pull = _open_pull(gh)
    now = [1_000_000.0]
    tracker = GitHubTracker(OWNER, REPO, BOT_TOKEN, api_url=gh.api_url, token_source="GH_TOKEN", timeout=5.0)
    p = Poller(tracker, Store(tmp_path / "state" / "orch.db"), "github|t", ["agent:auto"], clock=lambda: now[0])
    warm(p, watch_pulls=True)
    gh.feed_lag = 3600.0
    gh.submit_review(OWNER, REPO, pull, "alice", "REQUEST_CHANGES", "rename it")
    gh.reset_counts()
    lagging = p.poll(lambda _i: True)
    p.done(())
    assert _paths(gh) == [("events", 304)] and lagging.recheck == frozenset()
    now[0] += BACKSTOP_SECONDS
    gh.reset_counts()
    first = p.poll(lambda _i: True)
    p.done(())
    second = p.poll(lambda _i: True)
    p.done(())
    assert _paths(gh) == [("issues", 304), ("pulls", 200)]
    assert first.recheck == frozenset() and pull in (second.recheck or ())


def test_a_feed_that_fails_costs_the_two_lists_and_nothing_else(gh: GitHubEmulator, tmp_path: Path) -> None:
    """The activity feed failing (a 500 after the transport's retries, every time) does not fail the poll: it reads
    the issue list and the pull requests, as a tracker without a feed does, says why, and tries the feed again
    only after FEED_RETRY_SECONDS."""
    gh.feed_poll_interval = 0
    resting = gh.create_issue(OWNER, REPO, "resting in review", body="x")
    gh.add_label_event(OWNER, REPO, resting, "agent:auto", "alice")
    pull = _open_pull(gh)
    p, _tracker = poller(gh, tmp_path)
    warm(p, watch_pulls=True)
    gh.inject("GET", r"/events$", "status", times=None, status=500)
    gh.submit_review(OWNER, REPO, pull, "alice", "REQUEST_CHANGES", "rename it")
    gh.reset_counts()
    seen = p.poll(lambda _i: True)
    p.done(())
    reads = _paths(gh)
    assert set(reads[:-2]) == {("events", 500)} and reads[-2:] == [("issues", 304), ("pulls", 200)]
    assert pull in (seen.recheck or ()) and len(p.failures) == 1 and "activity feed" in p.failures[0]
    gh.reset_counts()
    p.poll(lambda _i: True)
    p.done(())
    assert _paths(gh) == [("issues", 304)]  # the feed waits its turn: one request


def test_idle_daemon_once_in_a_fresh_process_sends_one_request_answered_304(gh: GitHubEmulator, tmp_path: Path) -> None:
    work = clone(gh, tmp_path, "work")
    configure(work, gh)
    for i in range(20):
        gh.create_issue(OWNER, REPO, f"other {i}", body="not for orch")
    for _ in range(2):  # the first lists everything, the second reads the first window
        code, _out, err = orch(work, "daemon", "--once", "--json")
        assert code == 0, err
    gh.reset_counts()
    code, out, err = orch(work, "daemon", "--once", "--json")
    assert code == 0, err
    assert [(m, p.split("?")[0], s) for m, p, s in gh.requests] == [("GET", f"/repos/{OWNER}/{REPO}/issues", 304)]
    assert not [json.loads(x) for x in out.splitlines() if '"run-started"' in x]


def test_a_review_on_a_pull_request_resting_in_review_is_seen_by_the_next_once(
    gh: GitHubEmulator, tmp_path: Path
) -> None:
    work = clone(gh, tmp_path, "work")
    configure(work, gh)
    n = labelled_issue(gh, "Feature")
    code, out, err = orch(work, "daemon", "--once", "--json")
    assert code == 0 and '"outcome": "review"' in out, out + err
    for _ in range(2):  # idle runs while the issue rests in review: nothing starts
        code, out, err = orch(work, "daemon", "--once", "--json")
        assert code == 0 and '"run-started"' not in out, out + err
    gh.reset_counts()  # once warm, an idle run with an issue resting in review is one request: the feed, 304
    code, out, err = orch(work, "daemon", "--once", "--json")
    assert code == 0 and '"run-started"' not in out and _paths(gh) == [("events", 304)], out + err
    [pull] = [p["number"] for p in api(gh, f"/repos/{OWNER}/{REPO}/pulls")]
    gh.submit_review(OWNER, REPO, pull, "alice", "REQUEST_CHANGES", "please also add mul(a, b)")
    code, out, err = orch(work, "daemon", "--once", "--json")
    started = [json.loads(x) for x in out.splitlines() if '"run-started"' in x]
    assert code == 0 and [e["issue"] for e in started] == [n], out + err


def test_status_over_labelled_issues_in_a_long_history_costs_what_is_labelled(
    gh: GitHubEmulator, tmp_path: Path
) -> None:
    work = clone(gh, tmp_path, "work")
    configure(work, gh)
    others = [gh.create_issue(OWNER, REPO, f"other {i}", body="not for orch") for i in range(2000)]
    for k in range(10000):
        gh.add_label_event(OWNER, REPO, others[k % len(others)], "bug" if k % 2 else "enhancement", "alice")
    labelled = []
    for i in range(5):
        n = gh.create_issue(OWNER, REPO, f"labelled {i}", body="x")
        gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
        labelled.append(n)
    gh.reset_counts()
    code, out, err = orch(work, "status", "--json")
    assert code == 0, err
    rows = json.loads(out)["issues"]
    assert sorted(r["number"] for r in rows) == labelled
    assert not any("not authorized" in str(r["reason"] or "") for r in rows), rows
    # three label lists, two GraphQL queries (one per authorizing label), alice's permission, the identity
    budget = math.ceil(len(labelled) / 100) + 7
    assert len(gh.requests) <= budget, gh.requests
    assert not [p for _m, p, _s in gh.requests if p.endswith("/issues/events") or "/events?" in p]


def _api(gh: GitHubEmulator, method: str, path: str, body: object = None) -> None:
    import urllib.request

    req = urllib.request.Request(
        gh.api_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": "token tok-alice",
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req) as resp:
        resp.read()
