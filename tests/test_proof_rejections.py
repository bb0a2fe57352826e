"""Each way a proof can lie or go wrong is caught by the runner and blocks the run with its own reason; rework loops back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.fixtures.webapp import kit


def _run(
    cli: Cli, tmp_path: Path, behaviour: str, body: str = kit.PLAIN_BODY, **policy: Any
) -> tuple[Path, int, dict[str, Any]]:
    repo = kit.make_repo(tmp_path)
    kit.write_policy(repo, behaviour, **policy)
    kit.file_issue(cli, repo, body)
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    return repo, code, data


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("missing-criterion", "criteria without an answer: ac-2"),
        ("low-confidence", "passed with less than high confidence on: ac-2 (medium)"),
        ("stale-artifact", "artifact cmd-ac-1: commands/ac-1.txt is stale"),
        ("symlink-artifact", "artifact cmd-ac-1: commands/ac-1.txt is a symlink"),
        ("hash-mismatch", "artifact cmd-ac-1: hash mismatch"),
        (
            "edits-product",
            "the proof run changed the product (the worktree's tree differs before and after): server.py",
        ),
        ("credential-in-log", "credential (github-token) in artifact cmd-ac-1, line 4"),
        ("host-path", "host path (a path of this checkout) in publishable artifact cmd-ac-1"),
        ("malformed", "the proof report does not match schemas/proof-report.schema.json"),
    ],
)
def test_a_bad_proof_blocks_with_its_reason(cli: Cli, tmp_path: Path, behaviour: str, reason: str) -> None:
    repo, code, data = _run(cli, tmp_path, behaviour, app=False)
    assert code == 5 and data["final_state"] == "blocked", json.dumps(data)[-2000:]
    assert [s["fired"]["trigger"] for s in data["steps"]] == ["claim", "start", "prove", "block"]
    last = data["steps"][-1]
    assert last["source"] == "proving"
    verdicts = {g["guard"]: g["verdict"] for ev in last["evaluations"] for g in ev["guards"]}
    assert not verdicts["proof_passed"]["ok"] and reason in verdicts["proof_passed"]["reason"]
    assert not verdicts["proof_needs_rework"]["ok"]
    proof = kit.run_facts(repo)["proof"]
    assert proof["status"] == "blocked" and reason in proof["error"]
    assert any(reason in f for f in proof["findings"])
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    assert "agent:blocked" in issue["labels"] and not kit.pulls(repo)
    comments = " ".join(c["body"] for c in issue["comments"])
    assert "proof rejected" in comments and "ghp_" not in comments


def test_an_honest_proof_without_browser_passes_and_leaves_the_product_alone(cli: Cli, tmp_path: Path) -> None:
    repo, code, data = _run(cli, tmp_path, "honest", app=False)
    assert code == 0 and data["final_state"] == "review"
    proof = kit.run_facts(repo)["proof"]
    assert proof["status"] == "passed" and "browser" not in proof["checked"]
    assert [a["id"] for a in proof["artifacts"]] == ["cmd-ac-1", "cmd-ac-2"]
    assert set(proof["checked"]["secrets_scanned"]) >= {"artifact cmd-ac-1", "the proof report"}
    assert proof["checked"]["host_paths_scanned"] == ["cmd-ac-1", "cmd-ac-2"]
    prompt = next((Path(proof["dir"]) / "agent-report").glob("prompt.md")).read_text()
    assert "- ac-1: `increment(41)` returns 42" in prompt and "Phase: report" in prompt


def test_proof_needs_rework_goes_back_to_implementation_with_the_findings(cli: Cli, tmp_path: Path) -> None:
    repo, code, data = _run(cli, tmp_path, "rework-once", app=False)
    assert code == 0 and data["final_state"] == "review", json.dumps(data)[-2000:]
    triggers = [s["fired"]["trigger"] for s in data["steps"]]
    assert triggers == ["claim", "start", "prove", "rework", "retry", "prove", "gate", "approve"]
    rework = data["steps"][3]["fired"]
    needs = next(g for g in rework["guards"] if g["guard"] == "proof_needs_rework")["verdict"]
    assert needs["ok"] and any("increment(41) returned 43, expected 42" in e for e in needs["evidence"])
    run_dir = next((repo / ".orch" / "runs").iterdir())
    prompt2 = (run_dir / "attempt-2" / "prompt.md").read_text()
    assert "proof: ac-1: increment(41) printed '43'; the criterion wants 42." in prompt2
    assert "proof: ac-2: increment(0) printed '2'" in prompt2
    first = json.loads((run_dir / "attempt-1" / "proof" / "proof-report.json").read_text())
    assert first["status"] == "needs-rework"
    facts = kit.run_facts(repo)
    assert facts["proof"]["status"] == "passed" and facts["proof"]["attempt"] == 2 and facts["rework_count"] == 1


def test_rework_budget_spent_blocks(cli: Cli, tmp_path: Path) -> None:
    _repo, code, data = _run(cli, tmp_path, "rework-once", app=False, extra="limits:\n  rework_iterations: 0\n")
    assert code == 5 and [s["fired"]["trigger"] for s in data["steps"]] == ["claim", "start", "prove", "block"]
    verdicts = {g["guard"]: g["verdict"] for ev in data["steps"][-1]["evaluations"] for g in ev["guards"]}
    assert verdicts["proof_needs_rework"]["ok"] and not verdicts["within_rework_limit"]["ok"]


def test_an_app_that_never_gets_ready_blocks_the_ui_proof(cli: Cli, tmp_path: Path) -> None:
    repo = kit.make_repo(tmp_path)
    kit.write_policy(repo, "honest")
    policy = repo / ".orch" / "policy.yaml"
    policy.write_text(policy.read_text().replace("server.py --port {port}", "-c 'raise SystemExit(3)'"))
    kit.git(repo, "commit", "-qam", "an app that exits")
    kit.file_issue(cli, repo, kit.UI_BODY)
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    proof = kit.run_facts(repo)["proof"]
    assert proof["status"] == "blocked"
    assert proof["checked"]["browser"]["ran"] is False
    assert "the app exited with 3 before it was ready" in proof["checked"]["browser"]["error"]
    assert "the app exited with 3" in proof["error"]
