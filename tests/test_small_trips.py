"""Smaller things a new user tripped on (issue 17, item 7): local draft pull requests (`orch prs`), a review that will
be ignored, `orch graph --policy` outside a repository, the live view's address, repository, pull requests and errors,
and the advice for a damaged state database."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from statemachine.daemon import DaemonState
from statemachine.runtime import STATE_DB
from tests.conftest import Cli, git
from tests.daemonkit import daemon, new_issue, setup, wait_for

ROOT = Path(__file__).resolve().parent.parent


def delivered(cli: Cli, repo: Path, title: str = "Add a feature") -> tuple[int, dict[str, Any]]:
    """An issue run to rest in review by the scripted agent: its number and its pull request."""
    n = new_issue(cli, repo, title)
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 0 and data["final_state"] == "review", data
    return n, data["pull_request"]


# orch prs --------------------------------------------------------------------------------------------------------


def test_prs_list_show_and_close_a_real_draft_pull_request(cli: Cli, repo: Path) -> None:
    setup(cli, repo)
    n, pr = delivered(cli, repo)
    number = str(pr["number"])

    code, data = cli.json("prs", "list", "--repo", repo)
    assert code == 0 and [(p["number"], p["issue"], p["state"]) for p in data["pull_requests"]] == [
        (pr["number"], n, "open")
    ]
    code, out, err = cli("prs", "list", "--repo", repo)
    assert code == 0 and f"#{n}" in out and f"{pr['head']} -> {pr['base']}" in out and "Add a feature" in out

    code, shown = cli.json("prs", "show", number, "--repo", repo)
    expected_stat = git(repo, "diff", "--stat", shown["base_sha"], shown["head_sha"]).rstrip()
    assert code == 0 and shown["diff_stat"] == expected_stat and f"feature_{n}.py" in expected_stat
    assert (shown["issue"], shown["head"], shown["base"], shown["state"]) == (n, pr["head"], pr["base"], "open")
    assert shown["head_sha"] == git(repo, "rev-parse", pr["head"]).strip()
    assert "<!-- orch:run=" in shown["body"]  # the body orch wrote, marker included
    code, text, _ = cli("prs", "show", number, "--repo", repo)
    assert code == 0
    for part in (f"issue: #{n}", "state: open", f"branch: {pr['head']}", f"into {pr['base']}", expected_stat):
        assert part in text, (part, text)

    code, closed = cli.json("prs", "close", number, "--repo", repo)
    assert code == 0 and closed["state"] == "closed" and closed["changed"] is True and closed["closed_by"]
    assert git(repo, "rev-parse", pr["head"]).strip() == shown["head_sha"]  # the branch is kept
    code, data = cli.json("prs", "list", "--repo", repo)
    assert code == 0 and data["pull_requests"] == []
    code, out, _ = cli("prs", "list", "--repo", repo)
    assert "no open pull requests" in out and "--all" in out
    code, data = cli.json("prs", "list", "--all", "--repo", repo)
    assert [(p["number"], p["state"]) for p in data["pull_requests"]] == [(pr["number"], "closed")]
    code, out, _ = cli("prs", "close", number, "--repo", repo)  # again: nothing changes, and it says so
    assert code == 0 and f"pull request {number} was already closed" in out
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    assert data["lifecycle_state"] == "review" and data["state"] == "open"  # the issue is left as it was

    # a closed pull request takes no review
    code, out, err = cli("review", "--issue", str(n), "--request-changes", "more please", "--repo", repo)
    assert code == 1 and f"pull request {number} of issue #{n} is closed" in err and "Traceback" not in err

    code, out, err = cli("prs", "show", "99", "--repo", repo)
    assert code == 1 and "pull request 99 does not exist in the local tracker" in err and "orch prs list" in err
    with pytest.raises(SystemExit) as usage:  # a usage error, before anything is opened
        cli("prs", "close", "x", "--repo", repo)
    assert usage.value.code == 2


def test_a_run_that_delivers_again_reopens_its_closed_pull_request(repo: Path) -> None:
    from statemachine.adapters.local import LocalTracker
    from statemachine.store import Store

    store = Store(repo / STATE_DB, "local")
    try:
        tracker = LocalTracker(store)
        issue = tracker.create_issue("t", "b", [])
        head = git(repo, "rev-parse", "HEAD").strip()
        pull = tracker.create_pull(issue.number, "t", "b", "main", "main", head, head, "<!-- m -->")
        from statemachine.adapters import local_prs

        assert local_prs.set_closed(store, pull, True, "alice") is True
        assert local_prs.state_of(store, pull.number).state == "closed"
        again = tracker.create_pull(issue.number, "t", "b2", "main", "main", head, head, "<!-- m -->")
        assert again.number == pull.number and local_prs.state_of(store, pull.number).state == "open"
        assert local_prs.state_of(store, pull.number).by == "orch"
    finally:
        store.close()


def test_prs_on_github_says_where_the_pull_requests_are(cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        "version: 1\nextends: default\ntracker:\n  kind: github\n  owner: acme\n  repo: widgets\n"
    )
    monkeypatch.setenv("GH_TOKEN", "not-a-real-token")
    code, out, err = cli("prs", "list", "--repo", repo)
    assert code == 1 and "the embedded local tracker" in err and "gh pr list" in err and "Traceback" not in err
    code, data = cli.json("prs", "close", "3", "--repo", repo)
    assert code == 1 and data["kind"] == "error" and "gh pr close N" in data["hint"]


# orch review --as --------------------------------------------------------------------------------------------------


def test_a_review_by_someone_who_cannot_steer_runs_says_it_will_be_ignored(cli: Cli, repo: Path) -> None:
    setup(cli, repo)
    n, _pr = delivered(cli, repo)
    code, out, err = cli(
        "review", "--issue", str(n), "--request-changes", "do it again", "--as", "visitor", "--repo", repo
    )
    assert code == 0
    assert "will be ignored" in out and "visitor has read permission" in out and "takes it up" not in out, out
    code, data = cli.json("review", "--issue", str(n), "--comment", "and this", "--as", "visitor", "--repo", repo)
    assert data["permission"] == "read" and data["steers"] is False
    # and it is ignored: the issue stays in review, and explain names the ignored review
    code, run = cli.json("run", "--issue", str(n), "--repo", repo)
    assert run["final_state"] == "review" and not any(s["fired"] for s in run["steps"]), run
    code, explained = cli.json("explain", "--issue", str(n), "--repo", repo)
    evidence = [e for t in explained["transitions"] for g in t["guards"] for e in g["verdict"]["evidence"]]
    assert any("ignored review by visitor (permission read)" in e for e in evidence), evidence

    code, out, _ = cli("review", "--issue", str(n), "--request-changes", "now really", "--repo", repo)
    assert code == 0 and f"`orch run --issue {n}` takes it up" in out and "ignored" not in out


# orch graph / lint outside a repository ----------------------------------------------------------------------------


def test_graph_and_lint_with_a_policy_file_need_no_repository(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    policy = outside / "policy.yaml"
    policy.write_text((ROOT / "policies" / "default.yaml").read_text())
    monkeypatch.chdir(outside)
    code, out, err = cli("graph", "--policy", "policy.yaml")
    assert code == 0 and out.startswith("stateDiagram-v2") and "queued --> claimed" in out, err
    code, data = cli.json("graph", "--policy", str(policy), "--format", "dot")
    assert code == 0 and data["graph"].startswith("digraph lifecycle")
    code, out, err = cli("lint", "--policy", "policy.yaml")
    assert code == 0 and "ok: policy.yaml" in out
    code, out, err = cli("graph")  # no policy, no repository: the bundled default, as `orch lint` checks
    assert code == 0 and "queued --> claimed" in out
    code, out, err = cli("graph", "--policy", "missing.yaml")
    assert code == 3 and "missing.yaml:1:1" in err and "file not found" in err
    # as a process, from a folder with no git repository above it
    proc = subprocess.run(
        [sys.executable, "-m", "statemachine", "graph", "--policy", str(policy)],
        cwd=outside,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == 0 and "stateDiagram-v2" in proc.stdout, proc.stderr


# the state database's advice ---------------------------------------------------------------------------------------


def test_a_damaged_database_advice_fits_the_tracker(cli: Cli, repo: Path, tmp_path: Path) -> None:
    setup(cli, repo)
    n = new_issue(cli, repo, "kept in the file")
    db = repo / STATE_DB
    good = tmp_path / "good.db"
    source = sqlite3.connect(str(db))
    target = sqlite3.connect(str(good))
    source.backup(target)
    source.close()
    target.close()
    db.write_bytes(b"this is not a database\n" * 400)
    code, out, err = cli("issue", "list", "--repo", repo)
    assert code == 1 and f"the state database {db} is corrupted" in err
    assert "this file is the tracker" in err and "never delete it" in err and "the tracker still holds" not in err
    assert f"mv {db} {db}.broken" in err and f"sqlite3 {db}.broken .dump | sqlite3 {db}" in err
    assert "rm " not in err and "are lost" in err
    assert db.read_bytes() == b"this is not a database\n" * 400
    # the advice works: the damaged copy kept aside, a backup restored, the issue is back
    db.rename(db.with_name(db.name + ".broken"))
    good.rename(db)
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    assert code == 0 and data["title"] == "kept in the file"

    # with GitHub the file holds only orch's own records
    (repo / ".orch" / "policy.yaml").write_text(
        "version: 1\nextends: default\ntracker:\n  kind: github\n  owner: acme\n  repo: widgets\n"
    )
    db.write_bytes(b"this is not a database\n" * 400)
    code, out, err = cli("status", "--repo", repo)
    assert code == 1 and f"mv {db} {db}.broken" in err and "are on GitHub and stay there" in err
    assert "this file is the tracker" not in err


def test_a_damaged_database_of_an_unknown_tracker_gives_both_cases(tmp_path: Path) -> None:
    from statemachine.errors import StoreError
    from statemachine.store import Store

    junk = tmp_path / "orch.db"
    junk.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreError) as exc:
        Store(junk)
    assert "with the local tracker this file is the tracker" in str(exc.value.hint)
    assert "With another tracker" in str(exc.value.hint)


# the live view -----------------------------------------------------------------------------------------------------


def test_the_terminal_footer_shows_the_address_it_serves(capsys: pytest.CaptureFixture[str]) -> None:
    from statemachine.liveview import RichTable

    view = RichTable()
    view.event({"at": "", "event": "http", "url": "http://127.0.0.1:8765/"})
    view.event({"at": "2026-01-01T10:00:00Z", "event": "run-started", "issue": 3})
    view.tick(DaemonState(recent=[_recent(3, "failed", None, "git said no")]))
    view.close()
    out = capsys.readouterr().out
    assert "live view: http://127.0.0.1:8765/" in out and "api/v1/state" in out
    assert "git said no" in out and "10:00:00 run-started #3" in out


def _recent(issue: int, outcome: str, pull: str | None, error: str | None) -> dict[str, Any]:
    return {
        "issue": issue,
        "title": f"issue {issue}",
        "outcome": outcome,
        "exit_code": 0 if outcome == "review" else 1,
        "elapsed_seconds": 1.5,
        "error": error,
        "pull_request": pull,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_page_shows_repository_pull_requests_and_errors_in_chromium(cli: Cli, repo: Path) -> None:
    pw = pytest.importorskip("playwright.sync_api")
    setup(cli, repo)
    n = new_issue(cli, repo, "delivered with the daemon")
    port = free_port()
    proc = daemon(repo, "--interval-seconds", "0.3", "--shutdown-deadline", "0", "--http", f"127.0.0.1:{port}")
    try:

        def state() -> dict[str, Any]:
            try:
                return dict(
                    json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/state", timeout=2).read())
                )
            except OSError:
                return {}

        wait_for(lambda: state().get("recent"), timeout=90)
        data = state()
        assert data["repository"] == str(repo)
        entry = data["recent"][0]
        assert entry["issue"] == n and entry["outcome"] == "review", entry
        number = entry["pull_request_number"]
        assert isinstance(number, int) and entry["pull_request"].endswith(f"/{number}")
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(f"#recent tr[data-issue='{n}']")
            cells = page.locator(f"#recent tr[data-issue='{n}'] td").all_inner_texts()
            assert cells[0] == f"#{n}" and cells[1] == "review" and cells[3] == f"#{number}" and cells[4] == "-"
            assert page.inner_text("#repository") == str(repo)
            assert page.locator("#last-error").is_hidden()
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_the_page_shows_each_runs_error_and_the_daemons_last_error_in_chromium() -> None:
    pw = pytest.importorskip("playwright.sync_api")
    from statemachine import liveview

    state = DaemonState(
        recent=[
            _recent(4, "failed", None, "branch 'orch/4-x' is checked out at /home/me/x"),
            _recent(2, "review", "https://github.com/acme/widgets/pull/17", None),
        ],
        last_error="cannot reach the tracker",
    )
    server = liveview.serve("127.0.0.1", 0, lambda: state, "/srv/widgets")
    try:
        port = server.server_address[1]
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#recent tr[data-issue='4']")
            failed = page.locator("#recent tr[data-issue='4'] td").all_inner_texts()
            assert failed[3] == "-" and failed[4] == "branch 'orch/4-x' is checked out at /home/me/x"
            passed = page.locator("#recent tr[data-issue='2'] td").all_inner_texts()
            assert passed[3] == "#17" and passed[4] == "-"
            assert page.inner_text("#repository") == "/srv/widgets"
            assert page.locator("#last-error").is_visible()
            assert "cannot reach the tracker" in page.inner_text("#last-error")
            browser.close()
    finally:
        server.shutdown()
