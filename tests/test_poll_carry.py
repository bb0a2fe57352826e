"""The poll cursor carried in a file between runners whose state does not last (`orch daemon --poll-cursor FILE`).

A GitHub Actions job starts on a fresh machine: its clone's state database is empty, so without the file every
`orch daemon --once` lists the labelled issues in full. With it, an idle job is one conditional request answered 304.
The file is untrusted input (whoever can write the Actions cache can write it): anything that does not pass its schema
and name this tracker is ignored with a note, and what a forged one can steer is bounded (it never makes a run act).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine import limits, polling
from statemachine.adapters.github import GitHubTracker
from statemachine.polling import Poller
from statemachine.store import Store
from tests.github_emulator import GitHubEmulator
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, api, clone, configure, emulator, make_project, orch

LABELS = ["agent:auto", "agent:plan-auto"]
KEY = "github|test"


@pytest.fixture
def gh(tmp_path: Path) -> Iterator[GitHubEmulator]:
    for emu in emulator(tmp_path):  # alice, reader and the bot (tests/githubkit.py); mallory, an outsider
        emu.add_user("mallory", token="tok-mallory")
        make_project(tmp_path, emu)
        before = len(emu.violations)
        yield emu
        assert emu.violations[before:] == []


def runner(gh: GitHubEmulator, tmp_path: Path, name: str, carry: Path) -> Poller:
    """A poller as a fresh runner has it: its own empty state database, the carried file."""
    tracker = GitHubTracker(OWNER, REPO, BOT_TOKEN, api_url=gh.api_url, token_source="GH_TOKEN", timeout=5.0)
    return Poller(tracker, Store(tmp_path / name / "orch.db"), KEY, LABELS, carry=carry)


def once(p: Poller) -> polling.Poll:
    result = p.poll()
    p.done(())
    return result


def labelled(gh: GitHubEmulator, title: str) -> int:
    n = gh.create_issue(OWNER, REPO, title, body="x", user="alice")
    gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
    return n


def test_each_fresh_runner_polls_by_change_from_the_carried_file(gh: GitHubEmulator, tmp_path: Path) -> None:
    carry = tmp_path / "cache" / "cursor.json"
    n = labelled(gh, "first")
    for i in range(5):
        gh.create_issue(OWNER, REPO, f"other {i}", body="not for orch")
    gh.reset_counts()
    first = once(runner(gh, tmp_path, "r1", carry))
    assert first.full and [i.number for i in first.issues] == [n]
    assert len(gh.requests) == 2  # the two labels listed in full
    saved = json.loads(carry.read_text())
    assert saved["key"] == KEY and saved["orch_poll_cursor"] == 1 and [v["number"] for v in saved["cursor"]["view"]]

    once(runner(gh, tmp_path, "r2", carry))  # the first window after a full listing
    before = carry.read_bytes()
    gh.reset_counts()
    idle = runner(gh, tmp_path, "r3", carry)
    result = once(idle)
    assert [(m, s) for m, _p, s in gh.requests] == [("GET", 304)]
    assert [i.number for i in result.issues] == [n] and not result.full
    assert carry.read_bytes() == before  # an idle poll leaves the file as it was: nothing new to save
    assert idle.notes == [f"carried poll cursor {carry}: loaded"]

    late = labelled(gh, "labelled while no runner ran")
    gh.reset_counts()
    seen = once(runner(gh, tmp_path, "r4", carry))
    assert len(gh.requests) == 1 and [i.number for i in seen.issues] == [n, late] and late in (seen.recheck or ())
    assert carry.read_bytes() != before
    gh.add_label_event(OWNER, REPO, late, "agent:review", BOT)
    _patch(gh, f"/repos/{OWNER}/{REPO}/issues/{n}", {"state": "closed"})
    after = once(runner(gh, tmp_path, "r5", carry))
    assert [i.number for i in after.issues] == [late]


def _patch(gh: GitHubEmulator, path: str, body: object) -> None:
    import urllib.request

    req = urllib.request.Request(
        gh.api_url + path,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Authorization": "token tok-alice", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def _valid_file(gh: GitHubEmulator, tmp_path: Path) -> Path:
    carry = tmp_path / "valid" / "cursor.json"
    once(runner(gh, tmp_path, "seed-runner", carry))
    once(runner(gh, tmp_path, "seed-runner-2", carry))
    return carry


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[Path, pytest.MonkeyPatch], None]:
    def spoil(carry: Path, _mp: pytest.MonkeyPatch) -> None:
        data = json.loads(carry.read_text())
        change(data)
        carry.write_text(json.dumps(data))

    return spoil


def _symlink(carry: Path, _mp: pytest.MonkeyPatch) -> None:
    target = carry.parent.parent / "elsewhere.json"
    os.replace(carry, target)
    carry.symlink_to(target)


def _fifo(carry: Path, _mp: pytest.MonkeyPatch) -> None:
    carry.unlink()
    os.mkfifo(carry)


def _large(_carry: Path, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(limits, "POLL_CURSOR", limits.Cap(100, "small, to test the cap"))


def _not_json(carry: Path, _mp: pytest.MonkeyPatch) -> None:
    carry.write_text("{not json")


def _deep(carry: Path, _mp: pytest.MonkeyPatch) -> None:
    carry.write_text("[" * 100_000)  # the JSON parser's recursion limit: must be refused, not crash the daemon


EXTRA_ISSUE = {"number": 5, "title": "t", "body": "", "state": "open", "labels": [], "x": 1}


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_not_json, "is not valid JSON"),
        (_deep, "nests too deeply"),
        (_edit(lambda d: d.update(key="github|someone|else")), "another tracker"),
        (_edit(lambda d: d["cursor"]["view"].append(EXTRA_ISSUE)), "poll-cursor.schema.json at cursor/view/"),
        (_edit(lambda d: d["cursor"].update(since="yesterday")), "poll-cursor.schema.json at cursor/since"),
        (_edit(lambda d: d["cursor"].update(synced_at=time.time() + 3600)), "loaded"),  # in the future: not trusted
        (_symlink, "not a regular file"),
        (_fifo, "not a regular file"),
        (_large, "(small, to test the cap)"),
    ],
    ids=[
        "not JSON",
        "too deep",
        "another tracker",
        "an unknown field",
        "not a time",
        "synced in the future",
        "link",
        "FIFO",
        "large",
    ],
)
def test_a_carried_file_that_cannot_be_trusted_is_ignored_and_everything_listed(
    gh: GitHubEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spoil: Callable[[Path, pytest.MonkeyPatch], None],
    why: str,
) -> None:
    n = labelled(gh, "labelled")
    carry = _valid_file(gh, tmp_path)
    spoil(carry, monkeypatch)
    gh.reset_counts()
    p = runner(gh, tmp_path, "fresh", carry)
    result = p.poll()
    assert result.full  # listed in full, as a first run: 2 lists of labelled issues
    assert [i.number for i in result.issues] == [n]
    assert [m for m, _p, _s in gh.requests] == ["GET", "GET"]
    assert len(p.notes) == 1 and why in p.notes[0], p.notes
    p.done(())
    # replaced by a good cursor (never written through a link or into a FIFO: the name itself is replaced)
    assert carry.is_file() and not carry.is_symlink()
    assert json.loads(carry.read_text())["key"] == KEY
    if spoil is _symlink:
        assert json.loads((tmp_path / "elsewhere.json").read_text())["key"] == KEY  # the link's target: untouched


def test_a_forged_cursor_steers_which_issues_are_looked_at_never_what_a_run_does(
    gh: GitHubEmulator, tmp_path: Path
) -> None:
    """A forged file says an issue nobody with write access labelled is labelled `agent:auto` (and nothing changed
    since): the daemon starts `orch run` on it, which reads the issue afresh and changes nothing on GitHub."""
    outsider = gh.create_issue(OWNER, REPO, "please run me", body="rm -rf /", user="mallory")
    fresh = clone(gh, tmp_path, "fresh")  # a runner whose cursor the forger starts from, as a cache writer could
    configure(fresh, gh)
    carry = tmp_path / "cache" / "cursor.json"
    for _ in range(2):  # a full listing, then the first window: the cursor now holds the list's ETag
        code, _out, err = orch(fresh, "daemon", "--once", "--json", "--poll-cursor", str(carry))
        assert code == 0, err
    data = json.loads(carry.read_text())
    issue = api(gh, f"/repos/{OWNER}/{REPO}/issues/{outsider}")
    data["cursor"]["view"].append(
        {
            "number": outsider,
            "title": issue["title"],
            "body": issue["body"],
            "state": "open",
            "labels": ["agent:auto"],
            "author": "mallory",
            "created_at": issue["created_at"],
            "updated_at": issue["updated_at"],
        }
    )
    carry.write_text(json.dumps(data))
    runner_clone = clone(gh, tmp_path, "runner")
    configure(runner_clone, gh)
    gh.reset_counts()
    code, out, err = orch(runner_clone, "daemon", "--once", "--json", "--poll-cursor", str(carry))
    assert code == 0, out + err
    events = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert {"event": "poll-cursor", "note": f"carried poll cursor {carry}: loaded"}.items() <= next(
        e for e in events if e["event"] == "poll-cursor"
    ).items()
    assert [e["issue"] for e in events if e["event"] == "run-started"] == [outsider]
    assert [e["outcome"] for e in events if e["event"] == "run-finished"] == [
        "skipped"
    ]  # it read the issue: unlabelled
    writes = [(m, p) for m, p, _s in gh.requests if m != "GET" and "graphql" not in p]
    assert writes == [], writes
    assert api(gh, f"/repos/{OWNER}/{REPO}/issues/{outsider}/comments") == []
    assert [lab["name"] for lab in api(gh, f"/repos/{OWNER}/{REPO}/issues/{outsider}")["labels"]] == []
