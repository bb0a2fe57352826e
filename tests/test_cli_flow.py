"""A new user's path through the CLI, in a temporary repository, with a real agent process."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from agentkit import (
    GOOD_AGENT,
    GOOD_APP,
    GOOD_NOTES,
    comments_of_kind,
    db_dump,
    git_out,
    make_agent,
    tracker,
)
from conftest import git

from statemachine import policy as policy_mod
from statemachine.prompting import VARIABLES

ISSUE_BODY = """Add a `sub(a, b)` function next to `add`.

## Acceptance criteria
- `sub(3, 1)` returns 2
- [ ] `add` keeps working
"""


class Flow:
    """Runs the CLI in the repository (cwd) and checks every --json object's envelope."""

    def __init__(self, cli: Any) -> None:
        self.cli = cli
        self.kinds: list[str] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code, out, err = self.cli(*args)
        assert "Traceback" not in err and code != 70, err
        return code, out, err

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, err = self.cli(*args, "--json")
        assert "Traceback" not in err and code != 70, err
        data = json.loads(out)
        assert data["version"] == 1, data
        assert isinstance(data["kind"], str) and data["kind"], data
        self.kinds.append(data["kind"])
        return code, data


@pytest.fixture
def flow(cli: Any, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Flow:
    monkeypatch.chdir(repo)
    return Flow(cli)


def _use_agent(repo: Path, script: Path) -> None:
    """Edit the starter policy as a user would (comments kept): run our agent, add a unit-test check."""
    from ruamel.yaml import YAML

    path = repo / ".orch" / "policy.yaml"
    yaml = YAML()
    data = yaml.load(path.read_text())
    assert data["extends"] == "default"
    data["agent"] = {
        "kind": "command",
        "command": sys.executable,
        "args": [str(script)],
        "timeout_seconds": 120,
        "idle_timeout_seconds": 60,
    }
    data["checks"] = {"unit": {"command": f"{sys.executable} -m unittest -q", "timeout_seconds": 120}}
    data["sandbox"] = {
        "writable": [str(script.parent / f"{script.stem}-state")]
    }  # where the test agent counts its runs
    with path.open("w") as fh:
        yaml.dump(data, fh)


def _labels(repo: Path, number: int) -> set[str]:
    with tracker(repo) as t:
        return set(t.get_issue(number).labels)


def _pulls(repo: Path) -> list[Any]:
    with tracker(repo) as t:
        return t.pulls()


def test_setup_is_idempotent_and_lint_accepts_it(flow: Flow, repo: Path) -> None:
    code, first = flow.json("setup")
    assert code == 0 and first["kind"] == "setup"
    written = [repo / w["path"] for w in first["writes"]]
    assert {".gitignore", ".orch/policy.yaml"} <= {w["path"] for w in first["writes"]}
    assert all(p.is_file() for p in written)
    policy, ignore = repo / ".orch" / "policy.yaml", repo / ".gitignore"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in written}
    assert {".orch/state/", ".orch/worktrees/", ".orch/runs/"} <= set(ignore.read_text().splitlines())
    assert "extends: default" in policy.read_text()

    code, second = flow.json("setup")
    assert code == 0 and second["writes"] == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in written} == before
    code, out, _ = flow("setup")
    assert code == 0 and "nothing to do" in out

    code, lint = flow.json("lint")
    assert code == 0 and lint["ok"] is True, lint
    assert lint["files"][0]["file"] == ".orch/policy.yaml"


def test_setup_keeps_an_existing_gitignore_and_dry_run_writes_nothing(flow: Flow, repo: Path) -> None:
    (repo / ".gitignore").write_text("__pycache__/\n.orch/runs/")  # no final newline
    code, dry = flow.json("setup", "--dry-run")
    assert code == 0 and dry["dry_run"] is True
    assert {".gitignore", ".orch/policy.yaml"} <= {w["path"] for w in dry["writes"]}
    assert not (repo / ".orch").exists()
    assert (repo / ".gitignore").read_text() == "__pycache__/\n.orch/runs/"
    code, _ = flow.json("setup")
    assert code == 0
    lines = (repo / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["__pycache__/", ".orch/runs/"]
    assert lines.count(".orch/runs/") == 1 and ".orch/state/" in lines and ".orch/worktrees/" in lines


def test_new_user_flow_from_setup_to_review_and_requeue(flow: Flow, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(tmp_path, GOOD_AGENT)
    assert flow.json("setup")[0] == 0
    _use_agent(repo, agent.script)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "orch: policy")
    base_sha = git_out(repo, "rev-parse", "HEAD")
    code, lint = flow.json("lint")
    assert code == 0 and lint["ok"], lint

    body = tmp_path / "issue.md"
    body.write_text(ISSUE_BODY)
    code, issue = flow.json("issue", "new", "Add sub", "--body-file", str(body), "--label", "agent:auto")
    assert code == 0 and issue["number"] == 1 and issue["labels"] == ["agent:auto"] and issue["body"] == ISSUE_BODY

    # explain: every guard's verdict, and nothing changes anywhere
    dump, branches = db_dump(repo), git_out(repo, "branch", "--list")
    code, out, _ = flow("explain", "--issue", "1")
    assert code == 0 and "claim → claimed: would fire" in out and "issue_open: PASS issue #1 is open" in out
    code, ex = flow.json("explain", "--issue", "1")
    assert code == 0 and ex["state"] == "queued" and ex["run_id"] is None
    assert ex["transitions"][0]["trigger"] == "claim" and ex["transitions"][0]["would_fire"] is True
    assert db_dump(repo) == dump and git_out(repo, "branch", "--list") == branches
    assert not (repo / ".orch" / "runs").exists() and not (repo / ".orch" / "worktrees").exists()

    # step: exactly one transition
    code, step = flow.json("step", "--issue", "1")
    assert code == 0 and step["kind"] == "step" and step["final_state"] == "claimed"
    assert [(s["source"], s["dest"]) for s in step["steps"]] == [("queued", "claimed")]
    assert _labels(repo, 1) == {"agent:auto", "agent:running"}
    assert len(comments_of_kind(repo, 1, "claim")) == 1
    code, shown = flow.json("show", "--issue", "1")
    assert shown["state"] == "claimed" and len(shown["steps"]) == 1
    claim = next(t for t in policy_mod.load(repo / ".orch" / "policy.yaml").transitions if t.trigger == "claim")
    assert [j["action"] for j in shown["journal"]] == [a.name for a in claim.actions]
    assert all(j["status"] == "done" for j in shown["journal"])
    assert agent.runs == 0 and _pulls(repo) == []

    # run: to review
    code, run = flow.json("run", "--issue", "1")
    assert code == 0 and run["final_state"] == "review", run
    assert [s["dest"] for s in run["steps"]] == ["implementing", "gating", "review"]
    run_id = run["steps"][-1]["run_id"]
    assert run_id == step["steps"][0]["run_id"]
    assert agent.runs == 1
    prompt = agent.prompt(1)
    assert (
        "issue #1: Add sub" in prompt
        and "[ac-1] `sub(3, 1)` returns 2" in prompt
        and "[ac-2] `add` keeps working" in prompt
    )
    assert "$" + "issue_title" not in prompt

    pulls = _pulls(repo)
    assert len(pulls) == 1
    pr = pulls[0]
    assert pr.draft and pr.issue == 1 and pr.base == "main" and pr.base_sha == base_sha
    assert run["pull_request"]["number"] == pr.number and run["pull_request"]["draft"] is True
    assert git_out(repo, "rev-parse", f"refs/heads/{pr.head}") == pr.head_sha
    assert git_out(repo, "rev-parse", "main") == base_sha  # the base branch did not move
    # the branch holds one commit, made by the runner, on the base, whose tree is exactly the agent's change
    assert git_out(repo, "rev-list", f"{base_sha}..{pr.head_sha}").splitlines() == [pr.head_sha]
    assert (
        git_out(repo, "log", "-1", "--format=%an <%ae>|%cn|%P", pr.head_sha) == f"orch <orch@localhost>|orch|{base_sha}"
    )
    assert f"Orch-Run: {run_id}" in git_out(repo, "log", "-1", "--format=%B", pr.head_sha)
    assert git_out(repo, "diff", "--name-status", base_sha, pr.head_sha).splitlines() == [
        "M\tapp.py",
        "A\tdocs/notes.md",
    ]
    assert git_out(repo, "show", f"{pr.head_sha}:app.py") + "\n" == GOOD_APP
    assert git_out(repo, "show", f"{pr.head_sha}:docs/notes.md") + "\n" == GOOD_NOTES
    assert _labels(repo, 1) == {"agent:auto", "agent:review"}
    assert len(comments_of_kind(repo, 1, "claim")) == 1
    reports = comments_of_kind(repo, 1, "report-")
    assert len(reports) == 1 and f"draft pull request #{pr.number}" in reports[0]
    assert git_out(repo, "status", "--porcelain") == ""  # the user's checkout is untouched

    # graph
    pol = policy_mod.load(repo / ".orch" / "policy.yaml")
    code, mm = flow.json("graph", "--format", "mermaid")
    assert code == 0 and mm["format"] == "mermaid" and mm["graph"].startswith("stateDiagram-v2\n    [*] --> queued")
    code, dot = flow.json("graph", "--format", "dot")
    assert code == 0 and dot["graph"].startswith("digraph lifecycle {") and dot["graph"].rstrip().endswith("}")
    for t in pol.transitions:
        for s in t.sources:
            assert f"    {s} --> {t.dest}: {t.trigger}" in mm["graph"]
            edge = next(
                line
                for line in dot["graph"].splitlines()
                if line.startswith(f'  "{s}" -> "{t.dest}" [label="{t.trigger}')
            )
            assert ("style=dashed" in edge) == t.human
    code, text, _ = flow("graph")
    assert code == 0 and text.strip() == mm["graph"]

    # status and show
    code, status = flow.json("status")
    assert code == 0
    (row,) = status["issues"]
    assert row["number"] == 1 and row["state"] == "review" and row["next"] is None and "agent:review" in row["reason"]
    code, text, _ = flow("status")
    assert code == 0 and re.search(r"#1\s+review\s+waiting: .*agent:review", text)
    code, shown = flow.json("show", "--issue", "1")
    assert code == 0 and shown["state"] == "review" and shown["run_id"] == run_id
    assert [s["dest"] for s in shown["steps"]] == ["claimed", "implementing", "gating", "review"]
    assert all(s["status"] == "done" for s in shown["steps"])
    evidence = Path(shown["evidence"][run_id])
    assert (evidence / "attempt-1" / "agent.log").read_text().startswith("agent: edited app.py")
    assert json.loads((evidence / "attempt-1" / "report.json").read_text())["changed_files"] == [
        "app.py",
        "docs/notes.md",
    ]
    code, text, _ = flow("show", "--issue", "1")
    assert code == 0 and str(evidence) in text and "gating --approve--> review" in text

    # step from a resting state fires nothing: exit 4
    code, out, _ = flow("step", "--issue", "1")
    assert code == 4 and "no transition can fire from review" in out

    # a second run on the review issue publishes nothing new
    journal, comments = len(shown["journal"]), len(comments_of_kind(repo, 1, ""))
    code, again = flow.json("run", "--issue", "1")
    assert code in (0, 4) and again["final_state"] == "review"
    assert len(_pulls(repo)) == 1 and len(comments_of_kind(repo, 1, "")) == comments
    assert len(flow.json("show", "--issue", "1")[1]["journal"]) == journal and agent.runs == 1

    # requeue: the maintainer removes the review label; the next run starts a new run
    code, labelled = flow.json("issue", "label", "1", "-agent:review")
    assert code == 0 and labelled["labels"] == ["agent:auto"]
    code, rerun = flow.json("run", "--issue", "1")
    assert code == 0, rerun
    assert [(s["source"], s["dest"]) for s in rerun["steps"]][:2] == [("review", "queued"), ("queued", "claimed")]
    assert rerun["final_state"] == "review"
    new_run = rerun["steps"][-1]["run_id"]
    assert new_run != run_id and agent.runs == 2
    assert len(comments_of_kind(repo, 1, "claim")) == 2 and len(comments_of_kind(repo, 1, "report-")) == 2
    pulls = _pulls(repo)
    assert pulls[0].head_sha == pr.head_sha  # the first run's record is untouched
    newest = pulls[-1]
    assert newest.head_sha == git_out(repo, "rev-parse", f"refs/heads/{newest.head}")
    assert f"Orch-Run: {new_run}" in git_out(repo, "log", "-1", "--format=%B", newest.head_sha)
    assert git_out(repo, "cat-file", "-t", pr.head_sha) == "commit"  # the first run's commit still exists
    assert _labels(repo, 1) == {"agent:auto", "agent:review"}

    assert {"setup", "lint", "issue", "explain", "step", "show", "run", "graph", "status"} <= set(flow.kinds)


def test_issue_commands(flow: Flow, repo: Path) -> None:
    assert flow.json("setup")[0] == 0
    code, one = flow.json("issue", "new", "First", "--body", "one", "--label", "agent:auto", "--label", "agent:auto")
    assert code == 0 and one["labels"] == ["agent:auto"]  # a label given twice is kept once
    code, two = flow.json("issue", "new", "Second")
    assert code == 0 and two["number"] == 2 and two["labels"] == [] and two["body"] == ""

    code, listed = flow.json("issue", "list")
    assert code == 0 and listed["kind"] == "issues"
    assert [(i["number"], i["title"], i["state"], i["lifecycle_state"]) for i in listed["issues"]] == [
        (1, "First", "open", "queued"),
        (2, "Second", "open", "queued"),
    ]

    code, labelled = flow.json("issue", "label", "2", "+agent:manual", "+needs-triage")
    assert code == 0 and labelled["labels"] == ["agent:manual", "needs-triage"]
    code, labelled = flow.json("issue", "label", "2", "-needs-triage", "+docs")
    assert code == 0 and labelled["labels"] == ["agent:manual", "docs"]
    code, out, err = flow("issue", "label", "2", "docs")
    assert code == 1 and "must start with + or -" in err

    code, commented = flow.json("issue", "comment", "2", "Please keep it short.")
    assert code == 0 and commented == {"version": 1, "kind": "comment", "issue": 2, "id": commented["id"]}
    code, shown = flow.json("issue", "show", "2")
    assert code == 0 and [c["body"] for c in shown["comments"]] == ["Please keep it short."]
    assert shown["comments"][0]["author"] != "orch"
    code, text, _ = flow("issue", "show", "2")
    assert code == 0 and "Please keep it short." in text and "labels: agent:manual, docs" in text

    code, closed = flow.json("issue", "close", "2")
    assert code == 0 and closed["state"] == "closed"
    code, listed = flow.json("issue", "list")
    assert [i["number"] for i in listed["issues"]] == [1]
    code, listed = flow.json("issue", "list", "--all")
    assert [(i["number"], i["state"]) for i in listed["issues"]] == [(1, "open"), (2, "closed")]
    code, reopened = flow.json("issue", "reopen", "2")
    assert code == 0 and reopened["state"] == "open"

    code, out, err = flow("issue", "new", "   ")
    assert code == 1 and "needs a title" in err
    code, listed = flow.json("issue", "list", "--all")
    assert len(listed["issues"]) == 2  # the empty title filed nothing


def test_prompt_is_strict_and_uses_overrides(flow: Flow, repo: Path, tmp_path: Path) -> None:
    assert flow.json("setup")[0] == 0
    body = tmp_path / "issue.md"
    body.write_text(ISSUE_BODY)
    assert flow.json("issue", "new", "Add sub", "--body-file", str(body), "--label", "agent:auto")[0] == 0
    flow("issue", "comment", "1", "Mind negative numbers.")

    code, data = flow.json("prompt", "--issue", "1")
    assert code == 0 and data["kind"] == "prompt" and data["template"] == "implementation"
    text = data["prompt"]
    assert text.startswith("# Task: issue #1: Add sub")
    assert "- [ac-1] `sub(3, 1)` returns 2\n- [ac-2] `add` keeps working" in text
    assert "Mind negative numbers." in text and "This is attempt 1." in text
    assert [v for v in VARIABLES if "$" + v in text] == []  # every variable was substituted
    code, rework = flow.json("prompt", "--issue", "1", "--template", "rework")
    assert code == 0 and rework["prompt"].startswith("# Rework: issue #1: Add sub")

    dump = db_dump(repo)
    prompts = repo / ".orch" / "prompts"
    prompts.mkdir(exist_ok=True)  # setup may have copied the bundled prompts there
    (prompts / "implementation.md").write_text("Fix #$issue_number ($issue_title); costs $$5.\n$acceptance_criteria\n")
    code, data = flow.json("prompt", "--issue", "1")
    assert code == 0
    assert (
        data["prompt"] == "Fix #1 (Add sub); costs $5.\n- [ac-1] `sub(3, 1)` returns 2\n- [ac-2] `add` keeps working\n"
    )

    (prompts / "implementation.md").write_text("Fix $issue_title and $isue_body\n")
    code, out, err = flow("prompt", "--issue", "1")
    assert code == 1 and out == ""
    assert "implementation.md: unknown template variable(s): $isue_body" in err
    assert "hint: variables: $issue_number" in err and "$issue_body" in err
    code, err_json = flow.json("prompt", "--issue", "1")
    assert code == 1 and err_json["kind"] == "error" and "$isue_body" in err_json["error"]
    code, lint = flow.json("lint")
    assert code == 3 and lint["ok"] is False
    assert any(
        "implementation.md" in p["file"] and "$isue_body" in p["message"] for f in lint["files"] for p in f["problems"]
    )

    (prompts / "implementation.md").write_text("Costs $5\n")
    code, out, err = flow("prompt", "--issue", "1")
    assert code == 1 and "invalid placeholder" in err and "$$" in err
    assert db_dump(repo) == dump  # prompt never writes state
