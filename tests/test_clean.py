"""`orch clean` (issue 17): the worktrees and branches finished runs left behind go, with --dry-run first; what a
run under way or a draft pull request needs stays. Real git, the CLI, a real `command` agent in the jail."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import Cli, git

AGENT = """\
import json, os, sys
from pathlib import Path

prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
if "doomed" in prompt:
    Path("half.txt").write_text("half done\\n")
    sys.exit(3)  # no report: the run blocks, its worktree and branch stay behind
Path("done.txt").write_text("done\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "done",
    "changed_files": ["done.txt"], "validation": []}))
"""


def prepare(repo: Path, tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{agent}']\n"
        "limits:\n  rework_iterations: 0\n"
    )
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")


def issue(cli: Cli, repo: Path, title: str) -> int:
    code, data = cli.json("issue", "new", title, "--body", title, "--label", "agent:auto", "--repo", repo)
    assert code == 0
    return int(data["number"])


def local_branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def test_clean_removes_what_finished_runs_left_and_keeps_what_runs_need(cli: Cli, repo: Path, tmp_path: Path) -> None:
    prepare(repo, tmp_path)
    doomed, delivered, underway = (
        issue(cli, repo, "doomed"),
        issue(cli, repo, "delivered"),
        issue(cli, repo, "underway"),
    )
    assert cli("run", "--issue", str(doomed), "--repo", repo)[0] == 5  # blocked
    assert cli("run", "--issue", str(delivered), "--repo", repo)[0] == 0  # review, a local draft pull request
    for _ in range(2):  # claimed, then its worktree made: a run under way (interrupted here)
        cli("step", "--issue", str(underway), "--repo", repo)
    worktrees = repo / ".orch" / "worktrees"
    blocked_tree = [p for p in worktrees.iterdir() if p.name.startswith(f"issue-{doomed}-")]
    underway_tree = [p for p in worktrees.iterdir() if p.name.startswith(f"issue-{underway}-")]
    assert blocked_tree and (blocked_tree[0] / "half.txt").exists() and underway_tree
    (worktrees / "stray").mkdir()  # not orch's
    before = local_branches(repo)
    doomed_branch = next(b for b in before if b.startswith(f"orch/{doomed}-"))
    delivered_branch = next(b for b in before if b.startswith(f"orch/{delivered}-"))
    underway_branch = next(b for b in before if b.startswith(f"orch/{underway}-"))

    code, dry = cli.json("clean", "--dry-run", "--repo", repo)
    assert code == 0 and dry["dry_run"] is True
    planned = {(i["kind"], i["name"]) for i in dry["items"] if i["action"] == "remove"}
    assert planned == {("worktree", blocked_tree[0].name), ("branch", doomed_branch)}
    assert blocked_tree[0].exists() and local_branches(repo) == before  # a dry run changes nothing

    code, out, err = cli("clean", "--repo", repo)
    assert code == 0, err
    assert f"removed worktree {blocked_tree[0].name}" in out and f"removed branch {doomed_branch}" in out
    assert "kept worktree stray: no run orch knows made it" in out
    assert not blocked_tree[0].exists() and underway_tree[0].exists() and (worktrees / "stray").exists()
    assert local_branches(repo) == before - {doomed_branch}
    assert {delivered_branch, underway_branch} <= local_branches(repo)  # a draft PR's head, a run under way
    assert str(blocked_tree[0]) not in git(repo, "worktree", "list")
    assert (repo / ".orch" / "runs").is_dir() and any((repo / ".orch" / "runs").iterdir())  # evidence stays

    # the interrupted run resumes from its kept worktree, to review
    assert cli("run", "--issue", str(underway), "--repo", repo)[0] == 0
    code, again = cli.json("clean", "--repo", repo)
    removed = [i["name"] for i in again["items"] if i["action"] == "remove"]
    assert len(removed) == 1 and removed[0].startswith(".idle/")  # only the worktree that run gave back for reuse
    assert not (worktrees / removed[0]).exists()


def test_clean_where_orch_never_ran_removes_nothing(cli: Cli, repo: Path) -> None:
    code, data = cli.json("clean", "--repo", repo)
    assert code == 0 and data["items"] == []
