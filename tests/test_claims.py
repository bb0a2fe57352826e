"""The claim protocol: the earliest active claim marker wins; a loser backs off and leaves no trace."""

from __future__ import annotations

import sys
from pathlib import Path

from statemachine.adapters.local import LocalTracker
from statemachine.store import Store
from tests.conftest import Cli, git

AGENT = Path(__file__).parent / "agents" / "hostile.py"


def setup_repo(cli: Cli, repo: Path) -> None:
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{AGENT}', 'honest']\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0


def test_an_earlier_claim_from_another_machine_wins(cli: Cli, repo: Path) -> None:
    setup_repo(cli, repo)
    store = Store(repo / ".orch" / "state" / "orch.db")
    LocalTracker(store).post_comment(1, "claimed elsewhere\n\n<!-- orch:claim run=1-elsewhere -->", author="orch")
    store.close()
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 4
    assert data["final_state"] == "queued"
    assert "claimed first by run 1-elsewhere" in data["steps"][0]["note"]
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    assert issue["labels"] == ["agent:auto"], "the loser must not add the running label"
    assert [c["body"] for c in issue["comments"]] == ["claimed elsewhere\n\n<!-- orch:claim run=1-elsewhere -->"]
    code, shown = cli.json("show", "--issue", "1", "--repo", repo)
    assert [s["status"] for s in shown["steps"]] == ["aborted"]


def test_a_claim_ended_by_a_report_no_longer_counts(cli: Cli, repo: Path) -> None:
    setup_repo(cli, repo)
    store = Store(repo / ".orch" / "state" / "orch.db")
    tracker = LocalTracker(store)
    tracker.post_comment(1, "old claim\n\n<!-- orch:claim run=1-old -->", author="orch")
    tracker.post_comment(1, "old run blocked\n\n<!-- orch:run=1-old kind=report-blocked-3 -->", author="orch")
    store.close()
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0, data
    assert data["final_state"] == "review"
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    claims = [c for c in issue["comments"] if "<!-- orch:claim run=" in c["body"]]
    assert len(claims) == 2


def test_markers_planted_by_someone_else_neither_block_nor_end_a_claim(cli: Cli, repo: Path) -> None:
    setup_repo(cli, repo)
    assert cli("issue", "new", "Second", "--label", "agent:auto", "--repo", repo)[0] == 0
    store = Store(repo / ".orch" / "state" / "orch.db")
    tracker = LocalTracker(store)
    # issue 1: a user's comment carrying a claim marker is text, not a claim
    tracker.post_comment(1, "mine now\n\n<!-- orch:claim run=1-fake -->", author="mallory")
    # issue 2: a real claim by the runner's identity, then a user's planted report that would end it
    tracker.post_comment(2, "claimed elsewhere\n\n<!-- orch:claim run=2-elsewhere -->", author="orch")
    tracker.post_comment(2, "done\n\n<!-- orch:run=2-elsewhere kind=report-blocked-9 -->", author="mallory")
    store.close()
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and data["final_state"] == "review", data
    code, data = cli.json("run", "--issue", "2", "--repo", repo)
    assert code == 4 and data["final_state"] == "queued"
    assert "claimed first by run 2-elsewhere" in data["steps"][0]["note"]
    code, issue = cli.json("issue", "show", "2", "--repo", repo)
    assert issue["labels"] == ["agent:auto"]


def _no_trace(cli: Cli, repo: Path, why: str) -> None:
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code != 0 and data["final_state"] == "queued", data
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    assert issue["labels"] == ["agent:auto"] and issue["comments"] == [], "a failed precondition leaves no trace"
    code, out, _ = cli("explain", "--issue", "1", "--repo", repo)
    assert "preconditions_met: FAIL" in out and why in out, out


def test_a_repository_without_commits_is_refused_before_the_claim(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    (empty / ".orch").mkdir()
    (empty / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{AGENT}', 'honest']\n"
    )
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", empty)[0] == 0
    _no_trace(cli, empty, "does not name a commit")


def test_a_detached_head_without_base_branch_is_refused_before_the_claim(cli: Cli, repo: Path) -> None:
    setup_repo(cli, repo)
    git(repo, "checkout", "-q", "--detach")
    _no_trace(cli, repo, "detached HEAD")


def test_a_prompt_override_with_an_unknown_variable_is_refused_before_the_claim(cli: Cli, repo: Path) -> None:
    setup_repo(cli, repo)
    (repo / ".orch" / "prompts").mkdir()
    (repo / ".orch" / "prompts" / "implementation.md").write_text("Fix #$issue_number: $issue_titel\n")
    _no_trace(cli, repo, "$issue_titel")


def test_doctor_names_the_local_runner_identity_that_its_own_writes_carry(cli: Cli, repo: Path) -> None:
    setup_repo(cli, repo)
    _code, data = cli.json("doctor", "--repo", repo)
    identity = next(c for c in data["checks"] if c["check"] == "identity")
    assert identity["ok"] and "acts as orch" in identity["detail"]
    assert cli("run", "--issue", "1", "--repo", repo)[0] == 0
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    assert {c["author"] for c in issue["comments"]} == {"orch"}
