"""Parent planning on the local tracker: a scripted planning agent, child issues, waves, one integration PR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.agentkit import tracker
from tests.conftest import git
from tests.plankit import DIAMOND, PlanAgent, child, write_policy


@pytest.fixture
def agent(tmp_path: Path) -> PlanAgent:
    return PlanAgent(tmp_path / "agent")


def parent(cli: Any, repo: Path, body: str = "Build the whole feature.") -> int:
    code, data = cli.json("issue", "new", "Big feature", "--body", body, "--label", "agent:plan-auto", "--repo", repo)
    assert code == 0
    return int(data["number"])


def issues(repo: Path) -> list[Any]:
    with tracker(repo) as t:
        return t.list_issues(state="all")


def pulls(repo: Path) -> list[Any]:
    with tracker(repo) as t:
        return t.pulls()


def fired(data: dict[str, Any]) -> list[str]:
    return [s["fired"]["trigger"] for s in data["steps"] if s["fired"]]


def test_a_diamond_runs_in_three_waves_into_one_draft_pull_request(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan(DIAMOND)
    write_policy(repo, agent)
    n = parent(cli, repo)
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 0 and data["final_state"] == "review", data
    assert fired(data) == ["claim", "plan", "delegate", "wave", "wave", "wave", "integrate", "approve"]
    runs = agent.runs()
    assert runs[0]["mode"] == "planning" and sorted(r["key"] for r in runs[1:]) == ["a", "b", "c", "d"]
    assert [r["key"] for r in runs[1:]][0] == "a" and [r["key"] for r in runs[1:]][-1] == "d"

    children = [i for i in issues(repo) if "agent:child" in i.labels]
    assert len(children) == 4 and all("agent:review" in i.labels for i in children)
    assert [p.issue for p in pulls(repo)] == [n]  # one pull request, for the parent
    pr = pulls(repo)[0]
    assert pr.head == f"orch/plan-{n}" and pr.draft
    for i in [n, *(c.number for c in children)]:
        assert f"Closes #{i}" in pr.body
    files = git(repo, "ls-tree", "-r", "--name-only", pr.head).split()
    assert {"pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py"} <= set(files)

    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    assert code == 0 and [c["status"] for c in view["children"]] == ["merged"] * 4
    assert [c["wave"] for c in view["children"]] == [1, 2, 2, 3]
    by_key = {c["key"]: c for c in view["children"]}
    # b and c were cut from the integration branch after wave 1: the merge of a is their parent commit's ancestor
    for key in ("b", "c"):
        head = git(repo, "rev-parse", f"{by_key[key]['merge_sha']}^2").strip()
        assert git(repo, "merge-base", "--is-ancestor", by_key["a"]["merge_sha"], head) == ""
    d_head = git(repo, "rev-parse", f"{by_key['d']['merge_sha']}^2").strip()
    for key in ("b", "c"):
        git(repo, "merge-base", "--is-ancestor", by_key[key]["merge_sha"], d_head)  # raises if not an ancestor
    # the children carry orch's marker and a pointer to the parent's pull request
    with tracker(repo) as t:
        for c in children:
            assert f"<!-- orch:child parent={n} key=" in c.body
            assert any(f"draft pull request #{pr.number}" in x.body for x in t.list_comments(c.number))


def test_a_conflict_blocks_only_its_branch_of_the_tree(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan([child("a"), child("b", ("a",)), child("c", ("a",)), child("d", ("b",)), child("e", ("c",))])
    agent.edits(
        {"b": {"shared.txt": "from b\n"}, "c": {"shared.txt": "from c\n"}}
    )  # outside their ownership: a conflict
    write_policy(repo, agent)
    n = parent(cli, repo)
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    status = {c["key"]: c["status"] for c in view["children"]}
    assert status == {"a": "merged", "b": "merged", "c": "conflict", "d": "merged", "e": "skipped"}
    assert "shared.txt" in next(c["reason"] for c in view["children"] if c["key"] == "c")
    assert sorted(r["key"] for r in agent.runs()[1:]) == ["a", "b", "c", "d"]  # e never ran
    assert pulls(repo) == []  # nothing published
    with tracker(repo) as t:
        report = [c.body for c in t.list_comments(n) if "kind=report-blocked" in c.body]
    assert len(report) == 1 and "`c`" in report[0] and "conflict" in report[0]
    assert "agent:blocked" in next(i for i in issues(repo) if i.number == n).labels

    # replanning: the maintainer fixes the plan and requeues the parent; the same children are updated, none duplicated
    before = {i.number for i in issues(repo)}
    agent.plan(
        [
            child("a"),
            child("b", ("a",)),
            child("c", ("a",), title="Part c, reworded"),
            child("d", ("b",)),
            child("e", ("c",)),
        ]
    )
    agent.edits({})
    assert cli("issue", "label", str(n), "-agent:blocked", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 0 and data["final_state"] == "review", data
    after = issues(repo)
    assert {i.number for i in after} == before
    assert any(i.title == "Part c, reworded" for i in after)
    assert len(pulls(repo)) == 1


def test_overlapping_children_of_one_wave_never_run_together(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan([child("a", owns=("pkg/**",)), child("b", owns=("pkg/b.py",)), child("c", owns=("lib/**",))])
    write_policy(repo, agent, extra="plan:\n  child_concurrency: 3\n")
    n = parent(cli, repo)
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 0, data
    waves = [s for s in data["steps"] if s["fired"] and s["fired"]["trigger"] == "wave"]
    assert len(waves) == 2  # a with c (disjoint), then b (overlaps a)
    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    assert all(c["status"] == "merged" for c in view["children"])


BAD_PLANS = {
    "cycle": ([child("a", ("b",)), child("b", ("a",))], "the dependencies form a cycle: a → b → a"),
    "unknown dependency": ([child("a", ("zz",))], "child 'a' depends on unknown key(s): zz"),
    "no children": ([], "the plan report does not match schemas/plan-report.schema.json at children"),
    "too many": ([child(k) for k in "abc"], "the plan has 3 children, more than plan.max_children=2"),
    "blocked path": (
        [child("a", owns=(".github/workflows/**",))],
        "child 'a' owns '.github/workflows/**', which reaches the blocked path",
    ),
    "duplicate keys": ([child("a"), child("a")], "child keys must be unique; repeated: a"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_a_bad_plan_blocks_the_parent_with_the_reason(cli: Any, repo: Path, agent: PlanAgent, case: str) -> None:
    children, reason = BAD_PLANS[case]
    agent.plan(children)
    write_policy(repo, agent, extra="plan:\n  max_children: 2\n")
    n = parent(cli, repo)
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    verdicts = {g["guard"]: g["verdict"] for ev in data["steps"][-1]["evaluations"] for g in ev["guards"]}
    assert verdicts["plan_valid"]["ok"] is False
    assert reason in verdicts["plan_valid"]["reason"] + " ".join(verdicts["plan_valid"]["evidence"])
    assert [i.number for i in issues(repo)] == [n]  # no child issue was filed
    assert pulls(repo) == [] and git(repo, "branch", "--list", "orch/plan-*") == ""


def test_a_planning_run_cannot_edit_files_in_the_jail(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan(DIAMOND)
    agent.planning_edits({"notes.md": "sneaky\n"})
    write_policy(repo, agent)
    n = parent(cli, repo)
    assert cli("step", "--issue", str(n), "--repo", repo)[0] == 0  # claim
    assert cli("step", "--issue", str(n), "--repo", repo)[0] == 0  # plan: the worktree is mounted read-only
    code, data = cli.json("step", "--issue", str(n), "--repo", repo)  # the plan is good and nothing changed
    assert code == 0 and data["final_state"] == "delegating", data
    assert (agent.folder / "planning-edits.log").read_text() == "notes.md refused: errno 30\n"


def test_a_planning_run_that_edits_files_blocks(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan(DIAMOND)
    agent.planning_edits({"notes.md": "sneaky\n"})
    write_policy(repo, agent, extra="sandbox: none\n")  # without the jail, the runner's capture is what catches it
    n = parent(cli, repo)
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5
    assert (agent.folder / "planning-edits.log").read_text() == "notes.md written\n"
    verdicts = {g["guard"]: g["verdict"] for ev in data["steps"][-1]["evaluations"] for g in ev["guards"]}
    assert verdicts["planning_changed_nothing"]["ok"] is False
    assert "notes.md" in verdicts["planning_changed_nothing"]["evidence"]
    assert [i.number for i in issues(repo)] == [n]


def test_a_parent_edited_after_planning_blocks_before_any_child_runs(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan(DIAMOND)
    write_policy(repo, agent)
    n = parent(cli, repo)
    for _ in range(3):  # claim, plan, delegate
        assert cli("step", "--issue", str(n), "--repo", repo)[0] == 0
    with tracker(repo) as t:
        t.update_issue(n, body="Something else entirely.")
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5 and fired(data) == ["block"]
    verdicts = {g["guard"]: g["verdict"]["reason"] for ev in data["steps"][-1]["evaluations"] for g in ev["guards"]}
    assert "was edited after it was planned" in verdicts["parent_unchanged"]
    assert len(agent.runs()) == 1 and pulls(repo) == []


def test_a_parent_unlabelled_mid_run_blocks_without_publishing(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan(DIAMOND)
    write_policy(repo, agent)
    n = parent(cli, repo)
    for _ in range(4):  # claim, plan, delegate, the first wave
        assert cli("step", "--issue", str(n), "--repo", repo)[0] == 0
    assert cli("issue", "label", str(n), "-agent:plan-auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5 and fired(data) == ["block"]
    assert [r["key"] for r in agent.runs()[1:]] == ["a"] and pulls(repo) == []


def test_a_child_closed_by_hand_blocks_its_dependants_only(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan(DIAMOND + [child("e", ("a",))])
    write_policy(repo, agent)
    n = parent(cli, repo)
    for _ in range(3):
        assert cli("step", "--issue", str(n), "--repo", repo)[0] == 0
    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    b = next(c["issue"] for c in view["children"] if c["key"] == "b")
    assert cli("issue", "close", str(b), "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5
    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    status = {c["key"]: c["status"] for c in view["children"]}
    assert status == {"a": "merged", "b": "closed", "c": "merged", "e": "merged", "d": "skipped"}
    assert sorted(r["key"] for r in agent.runs()[1:]) == ["a", "c", "e"]


def test_a_child_held_by_the_budget_says_so_in_the_plan(cli: Any, repo: Path, agent: PlanAgent) -> None:
    """A child that cannot start because today's budget is spent: the plan (and so the parent's report) names the
    budget and what to do, not a generic "no transition could start it"."""
    agent.plan([child("a"), child("b", ("a",))])
    write_policy(repo, agent, "limits:\n  budget:\n    agent_runs_per_day: 2\n")  # the planner and child a
    n = parent(cli, repo)
    code, _data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 5
    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    b = next(c for c in view["children"] if c["key"] == "b")
    assert b["status"] == "blocked" and [r["key"] for r in agent.runs()[1:]] == ["a"]
    assert "`claim` waits:" in b["reason"] and "agent runs" in b["reason"], b["reason"]
    assert "raise the limit in limits.budget" in b["reason"], b["reason"]


def test_a_child_never_runs_on_its_own(cli: Any, repo: Path, agent: PlanAgent) -> None:
    agent.plan([child("a"), child("b", ("a",))])
    agent.edits({"a": {"app.py": "syntax error (\n"}})  # a fails its checks: blocked, so b stays unrun
    write_policy(repo, agent, extra="limits:\n  rework_iterations: 0\n")
    n = parent(cli, repo)
    assert cli.json("run", "--issue", str(n), "--repo", repo)[0] == 5
    code, view = cli.json("plan", "--issue", str(n), "--repo", repo)
    b = next(c["issue"] for c in view["children"] if c["key"] == "b")
    assert cli("issue", "label", str(b), "+agent:auto", "--repo", repo)[0] == 0  # even with agent:auto
    code, data = cli.json("run", "--issue", str(b), "--repo", repo)
    assert code == 4 and not fired(data)
    reasons = " ".join(g["verdict"]["reason"] for ev in data["steps"][0]["evaluations"] for g in ev["guards"])
    assert "agent:child never authorizes standalone work" in reasons
    code, status = cli.json("status", "--repo", repo)
    row = next(r for r in status["issues"] if r["number"] == b)
    assert row["parent"] == n and "never authorizes standalone work" in row["reason"]
    assert b in next(r for r in status["issues"] if r["number"] == n)["children"]
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "statemachine", "daemon", "--once", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and not [e for e in events if e["event"] == "run-started"]
    skipped = [e for e in events if e["event"] == "skipped"]
    assert [e["issue"] for e in skipped] == [b] and "never authorizes standalone work" in skipped[0]["reason"]
    assert [r["key"] for r in agent.runs()[1:]] == ["a"]


def test_the_daemon_serves_a_parent_and_never_a_child_on_its_own(cli: Any, repo: Path, agent: PlanAgent) -> None:
    import json
    import subprocess
    import sys

    agent.plan([child("a"), child("b", ("a",))])
    write_policy(repo, agent)
    n = parent(cli, repo)
    proc = subprocess.run(
        [sys.executable, "-m", "statemachine", "daemon", "--once", "--concurrency", "3", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["issue"] for e in events if e["event"] == "run-started"] == [n]  # the parent runs its children itself
    assert [e["outcome"] for e in events if e["event"] == "run-finished"] == ["review"]
    assert sorted(r["key"] for r in agent.runs()[1:]) == ["a", "b"]


def test_requested_changes_on_the_parent_pull_request_add_a_commit_to_the_integration_branch(
    cli: Any, repo: Path, agent: PlanAgent
) -> None:
    agent.plan([child("a"), child("b", ("a",))])
    write_policy(repo, agent)
    n = parent(cli, repo)
    assert cli.json("run", "--issue", str(n), "--repo", repo)[0] == 0
    branch = f"orch/plan-{n}"
    head1 = git(repo, "rev-parse", branch).strip()
    assert cli("review", "--issue", str(n), "--request-changes", "please write release notes", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", str(n), "--repo", repo)
    assert code == 0 and data["final_state"] == "review", data
    assert fired(data) == ["revise", "retry", "gate", "approve"]
    head2 = git(repo, "rev-parse", branch).strip()
    assert git(repo, "rev-parse", f"{head2}^").strip() == head1  # one new commit on the same branch
    assert "please write release notes" in git(repo, "show", f"{head2}:docs/notes.md")
    assert [p.issue for p in pulls(repo)] == [n] and pulls(repo)[0].head_sha == head2
    assert [r["mode"] for r in agent.runs()].count("planning") == 1 and len(agent.runs()) == 4  # plan, a, b, the rework


def test_the_daemon_runs_other_work_beside_a_parent_once_its_plan_says_what_it_owns(
    cli: Any, repo: Path, agent: PlanAgent
) -> None:
    import json
    import subprocess
    import sys

    agent.plan([child("a", owns=("pkg/**",)), child("b", ("a",), owns=("pkg/**",))])
    (agent.folder / "SLEEP").write_text("2")
    write_policy(repo, agent)
    n = parent(cli, repo)
    code, data = cli.json(
        "issue",
        "new",
        "Notes",
        "--body",
        "Write notes.\n\nOwnership:\n- docs/**\n",
        "--label",
        "agent:auto",
        "--repo",
        repo,
    )
    other = int(data["number"])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "statemachine",
            "daemon",
            "--max-runs",
            "2",
            "--concurrency",
            "2",
            "--interval-seconds",
            "0.3",
            "--repo",
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    order = [(e["event"], e["issue"]) for e in events if e["event"] in ("run-started", "run-finished")]
    assert order[0] == ("run-started", n)  # unplanned, the parent owns everything: it starts alone
    assert order.index(("run-started", other)) < order.index(("run-finished", n)), order  # then docs/** runs beside it
    assert {e["issue"]: e["outcome"] for e in events if e["event"] == "run-finished"} == {n: "review", other: "review"}
