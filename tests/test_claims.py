"""The claim protocol: the earliest active claim marker wins; a loser backs off and leaves no trace."""

from __future__ import annotations

import sys
from pathlib import Path

from statemachine.adapters.local import LocalTracker
from statemachine.store import Store
from tests.conftest import git

AGENT = Path(__file__).parent / "agents" / "hostile.py"


def setup_repo(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{AGENT}', 'honest']\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0


def test_an_earlier_claim_from_another_machine_wins(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
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


def test_a_claim_ended_by_a_report_no_longer_counts(cli, repo: Path) -> None:  # type: ignore[no-untyped-def]
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
