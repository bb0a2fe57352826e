"""Review feedback on a draft pull request sends the issue back to rework, on the same branch, as new commits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import Cli, git

HEAD = "version: 1\nextends: default\n"

# First run: add sub(). A run whose prompt carries review findings also adds mul(), as the reviewer asked.
AGENT = """
import json, os, re
from pathlib import Path
prompt = os.sys.stdin.read()
Path(os.environ["ORCH_PROMPT_FILE"]).exists()
app = Path("app.py").read_text()
if "def sub" not in app:
    app += "\\n\\ndef sub(a, b):\\n    return a - b\\n"
if "please add mul" in prompt and "def mul" not in app:
    app += "\\n\\ndef mul(a, b):\\n    return a * b\\n"
Path("app.py").write_text(app)
with open(os.environ["ORCH_STATE_LOG"], "a") as fh:
    fh.write(json.dumps({"findings": re.findall(r"^- review: .*$", prompt, re.M)}) + "\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "sub and maybe mul",
    "changed_files": ["app.py"], "validation": []}))
"""


def setup(repo: Path, tmp_path: Path, rework: int = 2) -> Path:
    folder, state = tmp_path / "agent", tmp_path / "agent-state"
    folder.mkdir()
    state.mkdir()
    agent = folder / "agent.py"
    agent.write_text(AGENT)
    log = state / "agent-runs.jsonl"
    wrapper = folder / "agent.sh"
    wrapper.write_text(f"#!/bin/sh\nORCH_STATE_LOG={log} exec {sys.executable} {agent}\n")
    wrapper.chmod(0o755)
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        HEAD + f"agent:\n  kind: command\n  command: {wrapper}\n  timeout_seconds: 60\n  idle_timeout_seconds: 30\n"
        f"sandbox:\n  read_only: ['{folder}']\n  writable: ['{state}']\n"
        f"checks:\n  unit: {{command: '{sys.executable} -c \"import app; assert app.sub(3, 1) == 2\"'}}\n"
        f"limits:\n  rework_iterations: {rework}\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    return log


def runs(log: Path) -> list[dict[str, list[str]]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_requested_changes_lead_to_a_second_commit_on_the_same_pull_request(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    log = setup(repo, tmp_path)
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, first = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and first["final_state"] == "review"
    branch = first["pull_request"]["head"]
    head1 = git(repo, "rev-parse", branch).strip()

    # nothing new: the issue rests in review and explain says why
    code, data = cli.json("explain", "--issue", "1", "--repo", repo)
    reasons = {g["guard"]: g["verdict"]["reason"] for ev in data["transitions"] for g in ev["guards"]}
    assert reasons["review_feedback"] == "no new review feedback on the pull request"

    assert cli("review", "--issue", "1", "--request-changes", "please add mul(a, b) too", "--repo", repo)[0] == 0
    code, second = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and second["final_state"] == "review", second
    triggers = [s["fired"]["trigger"] for s in second["steps"] if s["fired"]]
    assert triggers[:2] == ["revise", "retry"] and triggers[-1] == "approve"
    assert second["pull_request"]["number"] == first["pull_request"]["number"]  # the same pull request
    head2 = git(repo, "rev-parse", branch).strip()
    assert head2 != head1
    assert git(repo, "rev-parse", f"{head2}^").strip() == head1  # a new commit on top: never a rewrite
    assert "def mul" in git(repo, "show", f"{head2}:app.py")
    assert runs(log)[-1]["findings"] == ["- review: " + runs(log)[-1]["findings"][0].removeprefix("- review: ")]
    assert "please add mul(a, b) too" in runs(log)[-1]["findings"][0]
    code, shown = cli.json("issue", "show", "1", "--repo", repo)
    reports = [c for c in shown["comments"] if "kind=report-review" in c["body"]]
    assert len(reports) == 2  # a report per round

    # the same feedback is handled once: another run finds nothing new
    code, third = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and third["final_state"] == "review" and not any(s["fired"] for s in third["steps"])
    assert len(runs(log)) == 2


def test_feedback_from_a_read_only_user_is_ignored_with_the_reason(cli: Cli, repo: Path, tmp_path: Path) -> None:
    log = setup(repo, tmp_path)
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    assert cli.json("run", "--issue", "1", "--repo", repo)[0] == 0
    assert (
        cli(
            "review",
            "--issue",
            "1",
            "--request-changes",
            "please add mul and delete the tests",
            "--as",
            "visitor",
            "--repo",
            repo,
        )[0]
        == 0
    )
    code, data = cli.json("explain", "--issue", "1", "--repo", repo)
    reasons = {g["guard"]: g["verdict"] for ev in data["transitions"] for g in ev["guards"]}
    assert reasons["review_feedback"]["ok"] is False
    assert "visitor (permission read)" in " ".join(reasons["review_feedback"]["evidence"])
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and not any(s["fired"] for s in data["steps"]) and len(runs(log)) == 1  # the agent never saw it


def test_review_rounds_count_against_the_rework_limit(cli: Cli, repo: Path, tmp_path: Path) -> None:
    log = setup(repo, tmp_path, rework=1)
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    assert cli.json("run", "--issue", "1", "--repo", repo)[0] == 0
    assert (
        cli("review", "--issue", "1", "--comment", "please add mul", "--file", "app.py", "--line", "3", "--repo", repo)[
            0
        ]
        == 0
    )
    assert cli.json("run", "--issue", "1", "--repo", repo)[0] == 0
    assert "app.py:3" in runs(log)[-1]["findings"][0]
    assert cli("review", "--issue", "1", "--request-changes", "and div", "--repo", repo)[0] == 0
    code, data = cli.json("explain", "--issue", "1", "--repo", repo)
    reasons = {g["guard"]: g["verdict"] for ev in data["transitions"] for g in ev["guards"]}
    assert reasons["review_feedback"]["ok"] is True
    assert reasons["within_rework_limit"]["reason"] == "rework budget spent: 1 of 1 iteration(s) used"
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert not any(s["fired"] for s in data["steps"]) and len(runs(log)) == 2


def test_review_needs_a_pull_request(cli: Cli, repo: Path, tmp_path: Path) -> None:
    setup(repo, tmp_path)
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, _out, err = cli("review", "--issue", "1", "--request-changes", "x", "--repo", repo)
    assert code == 1 and "has no pull request" in err


def test_the_daemon_takes_up_requested_changes(cli: Cli, repo: Path, tmp_path: Path) -> None:
    import subprocess

    log = setup(repo, tmp_path)
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0

    def once() -> list[dict[str, object]]:
        proc = subprocess.run(
            [sys.executable, "-m", "statemachine", "daemon", "--once", "--repo", str(repo)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    assert [e["outcome"] for e in once() if e["event"] == "run-finished"] == ["review"]
    assert not [e for e in once() if e["event"] == "run-started"]  # resting in review, nothing new
    assert cli("review", "--issue", "1", "--request-changes", "please add mul", "--repo", repo)[0] == 0
    assert [e["outcome"] for e in once() if e["event"] == "run-finished"] == ["review"]
    assert len(runs(log)) == 2 and "please add mul" in runs(log)[-1]["findings"][0]
