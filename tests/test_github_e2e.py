"""orch against the GitHub emulator, as a new user runs it: setup, labels, doctor, status, run, re-run, a race, authorization.

Every orch command runs as its own process with GH_TOKEN set, exactly as on a user's machine; the emulator checks
every request and response against GitHub's OpenAPI description.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.conftest import git
from tests.github_emulator import GitHubEmulator
from tests.githubkit import (
    BOT_TOKEN,
    OWNER,
    REPO,
    api,
    clone,
    configure,
    labelled_issue,
    make_project,
    orch,
    orch_json,
)


def test_a_new_user_delivers_an_issue_to_a_draft_pull_request(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    work = clone(gh, tmp_path, "machine-a")
    configure(work, gh)

    # labels: dry run changes nothing, then created, then unchanged
    code, data = orch_json(work, "setup", "--prepare-labels", "--dry-run")
    assert code == 0 and {lab["result"] for lab in data["labels"]} == {"created"}
    assert "agent:auto" not in {lab["name"] for lab in api(gh, f"/repos/{OWNER}/{REPO}/labels?per_page=100")}
    code, data = orch_json(work, "setup", "--prepare-labels")
    assert code == 0 and {lab["result"] for lab in data["labels"]} == {"created"} and len(data["labels"]) == 7
    code, data = orch_json(work, "setup", "--prepare-labels")
    assert {lab["result"] for lab in data["labels"]} == {"unchanged"} and data["writes"] == []

    code, data = orch_json(work, "doctor")
    assert code == 0, data
    assert {c["check"] for c in data["checks"] if c["ok"]} >= {
        "policy",
        "git",
        "agent",
        "origin",
        "token",
        "labels",
        "base branch",
    }

    number = labelled_issue(gh, "Add sub")
    code, data = orch_json(work, "status")
    assert code == 0
    row = next(r for r in data["issues"] if r["number"] == number)
    assert row["eligible"] and row["next"] == "claim"

    gh.reset_counts()
    code, data = orch_json(work, "run", "--issue", str(number))
    assert code == 0, data
    assert data["final_state"] == "review"
    requests = len(gh.requests)
    pulls = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")
    assert len(pulls) == 1
    pr = pulls[0]
    assert pr["draft"] is True and pr["head"]["ref"].startswith(f"orch/{number}-")
    assert f"Closes #{number}" in pr["body"] and "<!-- orch:run=" in pr["body"] and "kind=pull-request" in pr["body"]
    head = git(Path(gh.bare_path(OWNER, REPO)), "rev-parse", f"refs/heads/{pr['head']['ref']}").strip()
    assert head == pr["head"]["sha"]
    labels = {lab["name"] for lab in api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/labels")}
    assert labels == {"agent:auto", "agent:review"}
    comments = api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/comments")
    reports = [c for c in comments if "kind=report-review" in c["body"]]
    claims = [c for c in comments if "<!-- orch:claim run=" in c["body"]]
    assert len(reports) == 1 and len(claims) == 1
    print(f"happy-path delivery: {requests} REST requests")
    # 15 REST requests, one GraphQL query (who last edited the body) and GET /user (the runner's identity, once)
    assert requests <= 17, gh.requests
    for entry in gh.requests:
        print("   ", entry)

    # a second run publishes nothing new
    code, data = orch_json(work, "run", "--issue", str(number))
    assert code == 0 and data["final_state"] == "review" and data["steps"][0]["fired"] is None
    assert len(api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")) == 1
    assert len(api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/comments")) == len(comments)


def test_a_label_from_a_read_only_user_does_not_authorize(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    work = clone(gh, tmp_path, "machine-a")
    configure(work, gh)
    orch(work, "setup", "--prepare-labels")
    number = labelled_issue(gh, "Sneaky", actor="reader")
    code, data = orch_json(work, "status")
    row = next(r for r in data["issues"] if r["number"] == number)
    assert not row["eligible"] and "reader" in row["reason"] and "read" in row["reason"]
    code, data = orch_json(work, "run", "--issue", str(number))
    assert code == 4 and data["final_state"] == "queued"
    assert api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/comments") == []
    code, out, _ = orch(work, "explain", "--issue", str(number))
    assert "label_authorized(label=auto): FAIL agent:auto was applied by reader" in out


def test_two_machines_racing_on_one_issue_claim_it_once(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    a, b = clone(gh, tmp_path, "machine-a"), clone(gh, tmp_path, "machine-b")
    configure(a, gh)
    configure(b, gh)
    orch(a, "setup", "--prepare-labels")
    number = labelled_issue(gh, "Contended")
    results: dict[str, tuple[int, dict[str, Any]]] = {}
    barrier = threading.Barrier(2)

    def go(name: str, where: Path) -> None:
        barrier.wait()
        results[name] = orch_json(where, "run", "--issue", str(number))

    threads = [threading.Thread(target=go, args=(n, w)) for n, w in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finals = sorted(r[1]["final_state"] for r in results.values())
    codes = sorted(r[0] for r in results.values())
    why = {
        n: [g for ev in r[1]["steps"][-1]["evaluations"] for g in ev["guards"] if not g["verdict"]["ok"]]
        for n, r in results.items()
        if r[1]["final_state"] == "blocked"
    }
    assert codes == [0, 4] and finals == ["queued", "review"], (results, why)
    comments = api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/comments")
    assert len([c for c in comments if "<!-- orch:claim run=" in c["body"]]) == 1
    assert len(api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")) == 1


def test_status_lists_many_issues_in_few_requests(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    work = clone(gh, tmp_path, "machine-a")
    configure(work, gh)
    orch(work, "setup", "--prepare-labels")
    numbers = [labelled_issue(gh, f"issue {i}") for i in range(250)]
    gh.reset_counts()
    code, data = orch_json(work, "status")
    assert code == 0 and sorted(r["number"] for r in data["issues"]) == numbers
    assert all(r["eligible"] for r in data["issues"])
    lists = [p for m, p, _s in gh.requests if m == "GET" and p.rstrip("/").endswith("/issues")]
    graphql = [p for m, p, _s in gh.requests if p == "/graphql"]
    events = [p for m, p, _s in gh.requests if "/events" in p]
    # ceil(250/100) GraphQL pages of agent:auto issues with who labelled them, one of agent:plan-auto issues, the
    # agent:child list, alice's permission: never the repository's events, never one request per issue
    assert len(gh.requests) <= 3 + 1 + 1 + 2, gh.requests
    assert len(graphql) == 4 and len(lists) == 1 and events == []


def test_an_api_that_keeps_failing_gets_a_clear_message(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    work = clone(gh, tmp_path, "machine-a")
    configure(work, gh)
    orch(work, "setup", "--prepare-labels")
    number = labelled_issue(gh, "Unlucky")
    gh.inject("GET", rf"/repos/{OWNER}/{REPO}/issues/{number}$", "status", times=None, status=502)
    gh.inject("POST", r"/graphql$", "status", times=None, status=502)  # the claim reads the issue by GraphQL
    code, out, err = orch(work, "run", "--issue", str(number))
    assert code == 1
    assert "502" in err or "unavailable" in err.lower() or "failed" in err.lower()
    assert "Traceback" not in err and BOT_TOKEN not in err
    assert api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/comments") == []


def test_a_wrong_token_is_named_without_leaking_it(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    work = clone(gh, tmp_path, "machine-a")
    configure(work, gh)
    code, out, err = orch(work, "status", env={"GH_TOKEN": "tok-wrong"})
    assert code == 1 and "GH_TOKEN" in err and "tok-wrong" not in err + out
    orch(work, "setup", "--prepare-labels")
    code, data = orch_json(work, "doctor")
    assert code == 0, data
    code, out, err = orch(work, "doctor", env={"GH_TOKEN": "tok-wrong"})
    assert code == 1 and "FAIL token" in out


def test_a_requeued_issue_takes_over_its_open_draft_pull_request(gh: GitHubEmulator, tmp_path: Path) -> None:
    make_project(tmp_path, gh)
    work = clone(gh, tmp_path, "machine-a")
    configure(work, gh)
    orch(work, "setup", "--prepare-labels")
    number = labelled_issue(gh, "Twice")
    code, first = orch_json(work, "run", "--issue", str(number))
    assert code == 0 and first["final_state"] == "review"
    # a maintainer asks for another run: removes agent:review, keeps agent:auto
    gh.state.repo(OWNER, REPO)  # the repository exists
    import urllib.request

    req = urllib.request.Request(
        f"{gh.api_url}/repos/{OWNER}/{REPO}/issues/{number}/labels/agent%3Areview",
        method="DELETE",
        headers={"Authorization": "token tok-alice"},
    )
    urllib.request.urlopen(req, timeout=10).close()
    code, second = orch_json(work, "run", "--issue", str(number))
    assert code == 0 and second["final_state"] == "review", second
    assert [s["fired"]["trigger"] for s in second["steps"]][:2] == ["requeue", "claim"]
    pulls = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")
    assert len(pulls) == 1
    body = pulls[0]["body"]
    assert f"<!-- orch:run={second['steps'][-1]['run_id']} kind=pull-request -->" in body
    assert first["steps"][-1]["run_id"] not in body
