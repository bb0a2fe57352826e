"""Delivery gates against real misbehaving agents: each ends where it must, with the gate named by explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, git

AGENT = Path(__file__).parent / "agents" / "hostile.py"


def write_policy(repo: Path, behaviour: str, extra: str = "") -> None:
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        f"""version: 1
extends: default
agent:
  kind: command
  command: {sys.executable}
  args: ["{AGENT}", "{behaviour}"]
  timeout_seconds: 60
  idle_timeout_seconds: 30
checks:
  unit:
    command: {sys.executable} -m unittest -q
{extra}"""
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")


def run_issue(cli: Cli, repo: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)
    assert code == 0, err
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    return code, data


def explain_text(cli: Cli, repo: Path) -> str:
    """The verdicts recorded for the step that blocked the run, as `orch show` keeps them."""
    code, data = cli.json("show", "--issue", "1", "--repo", repo)
    assert code == 0
    return json.dumps(data)


@pytest.mark.parametrize(
    ("behaviour", "gate", "reason"),
    [
        ("prints-token", "no_secrets", "github-token at agent.log"),
        ("secret-in-diff", "no_secrets", "openai-key at diff:settings.py"),
        ("commits", "agent_left_git_alone", "made 1 commit(s) (the runner commits, not the agent)"),
        ("git-config", "agent_left_git_alone", "changed config: core.hookspath"),
        ("makes-tag", "agent_left_git_alone", "created ref(s): refs/tags/v9.9.9"),
        ("deletes-tests", "tests_not_deleted", "deletes 1 test file"),
        ("destructive", "no_destructive_actions", "terraform-apply at agent.log"),
        ("edits-after-report", "report_written_last", "changed after the report was written"),
    ],
)
def test_hostile_agent_is_blocked_by_the_right_gate(
    cli: Cli, repo: Path, behaviour: str, gate: str, reason: str
) -> None:
    write_policy(repo, behaviour)
    code, data = run_issue(cli, repo)
    assert code == 5, data
    assert data["final_state"] == "blocked"
    last = data["steps"][-1]
    assert last["fired"]["trigger"] == "block" and last["source"] == "implementing"
    failed = {
        g["guard"]: g["verdict"]["reason"] + " " + " ".join(g["verdict"]["evidence"])
        for ev in last["evaluations"]
        for g in ev["guards"]
        if not g["verdict"]["ok"]
    }
    assert gate in failed, failed
    assert reason in failed[gate]
    code, pulls = cli.json("issue", "show", "1", "--repo", repo)
    assert "agent:blocked" in pulls["labels"] and "agent:running" not in pulls["labels"]
    assert git(repo, "branch", "--list", "orch/*").strip() == "" or "agent" not in git(
        repo, "log", "--all", "--format=%an"
    )


def test_secret_never_appears_in_the_report_comment(cli: Cli, repo: Path) -> None:
    write_policy(repo, "prints-token")
    run_issue(cli, repo)
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    bodies = " ".join(c["body"] for c in issue["comments"])
    assert "github-token" in bodies
    assert "ghp_" not in bodies


def test_symlink_leading_outside_the_worktree_blocks(
    cli: Cli, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("OUTSIDE_DIR", str(outside))
    write_policy(repo, "symlink-out", extra="sandbox:\n  env: [OUTSIDE_DIR]\n")
    code, data = run_issue(cli, repo)
    assert code == 5 and data["final_state"] == "blocked"
    text = json.dumps(data["steps"][-1]["evaluations"])
    assert "symlink-outside-worktree" in text
    assert list(outside.iterdir()) == []  # nothing was written through it


def test_checks_run_in_a_fresh_worktree_of_the_candidate(cli: Cli, repo: Path) -> None:
    # the check needs a file the agent left ignored in its own worktree: a fresh checkout does not have it
    write_policy(
        repo, "ignored-helper", extra="  helper:\n    command: test -f helper.flag\nlimits:\n  rework_iterations: 0\n"
    )
    code, data = run_issue(cli, repo)
    assert data["final_state"] == "blocked", data
    steps = [s["fired"]["trigger"] for s in data["steps"]]
    assert steps == ["claim", "start", "gate", "block"]
    failed = [g for ev in data["steps"][-1]["evaluations"] for g in ev["guards"] if g["guard"] == "checks_passed"]
    assert failed and not failed[0]["verdict"]["ok"]
    assert "helper: exit 1" in " ".join(failed[0]["verdict"]["evidence"])


def test_tdd_evidence_passes_when_new_tests_fail_on_base(cli: Cli, repo: Path) -> None:
    write_policy(repo, "tdd-good", extra=f"gates:\n  tdd:\n    command: {sys.executable} -m unittest -q {{tests}}\n")
    code, data = run_issue(cli, repo)
    assert code == 0 and data["final_state"] == "review", data
    approve = data["steps"][-1]["fired"]
    tdd = next(g for g in approve["guards"] if g["guard"] == "tdd_evidence")
    assert tdd["verdict"]["ok"] and "fail on base" in tdd["verdict"]["reason"]


def test_tdd_evidence_rejects_tests_that_already_pass_on_base(cli: Cli, repo: Path) -> None:
    write_policy(
        repo,
        "tdd-vacuous",
        extra=f"gates:\n  tdd:\n    command: {sys.executable} -m unittest -q {{tests}}\nlimits:\n  rework_iterations: 1\n",
    )
    code, data = run_issue(cli, repo)
    assert code == 5 and data["final_state"] == "blocked"
    triggers = [s["fired"]["trigger"] for s in data["steps"]]
    assert triggers == ["claim", "start", "gate", "rework", "retry", "gate", "block"]
    last = data["steps"][-1]["evaluations"][0]
    tdd = next(g for g in last["guards"] if g["guard"] == "tdd_evidence")
    assert "already pass on the base commit" in tdd["verdict"]["reason"]


def test_review_needs_work_goes_to_rework_then_approves(
    cli: Cli, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "review-state"
    state.mkdir()
    monkeypatch.setenv("REVIEW_VERDICT_FILE", str(state / "reviewed-once"))
    write_policy(
        repo,
        "review-needs-work-once",
        extra=f"gates:\n  review: true\nsandbox:\n  env: [REVIEW_VERDICT_FILE]\n  writable: ['{state}']\n",
    )
    code, data = run_issue(cli, repo)
    assert code == 0 and data["final_state"] == "review", data
    triggers = [s["fired"]["trigger"] for s in data["steps"]]
    assert triggers == ["claim", "start", "gate", "rework", "retry", "gate", "approve"]
    runs = list((repo / ".orch" / "runs").iterdir())
    prompt2 = (runs[0] / "attempt-2" / "prompt.md").read_text()
    assert "review major (app.py:1): add a docstring" in prompt2
