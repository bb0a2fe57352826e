"""Polls cost what changed (statemachine/polling.py) on the GitHub emulator: requests counted, never timed.

- the poller in this process over a real GitHubTracker and store: an idle poll is one conditional request answered
  304; a label added, an issue closed, a review or an inline review comment between two polls is seen by the next one;
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
from statemachine.polling import Poller
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


@pytest.mark.parametrize("kind", ["review", "inline comment"])
def test_feedback_on_a_pull_request_resting_in_review_is_seen(gh: GitHubEmulator, tmp_path: Path, kind: str) -> None:
    resting = gh.create_issue(OWNER, REPO, "resting in review", body="x")
    gh.add_label_event(OWNER, REPO, resting, "agent:auto", "alice")
    pull = _open_pull(gh)
    p, _tracker = poller(gh, tmp_path)
    warm(p, watch_pulls=True)
    gh.reset_counts()
    idle = p.poll(lambda _i: True)
    p.done(())
    assert [(m, s) for m, _p, s in gh.requests] == [("GET", 304), ("GET", 304)] and idle.recheck == frozenset()
    if kind == "review":
        gh.submit_review(OWNER, REPO, pull, "alice", "REQUEST_CHANGES", "rename it")
    else:
        gh.submit_review(OWNER, REPO, pull, "alice", "COMMENT", "", comments=[("app.py", 1, "why?")])
    gh.reset_counts()
    seen = p.poll(lambda _i: True)
    p.done(())
    assert pull in (seen.recheck or ()) and len(gh.requests) == 2


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
