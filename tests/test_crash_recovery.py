"""Kill orch (SIGKILL) right after each journaled effect of a delivery, then run it again: the delivery must
finish exactly once. ORCH_TEST_KILL_AFTER_EFFECT=k makes orch kill itself after its k-th effect."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentkit import (
    GOOD_AGENT,
    GOOD_APP,
    STATE_DB,
    blocked_path_body,
    comments_of_kind,
    git_out,
    make_agent,
    tracker,
    write_policy,
)
from conftest import git
from conftest import orch_process as orch

from statemachine.store import Store

CHECKS = {"unit": {"command": f"{sys.executable} -m unittest -q", "timeout_seconds": 120}}


def template(root: Path) -> Path:
    """A repository with one commit and one issue labelled agent:auto; each case runs on a copy of it."""
    repo = root / "template"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "test_app.py").write_text(
        "import unittest\nfrom app import add\n\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    with tracker(repo) as t:
        t.create_issue("Add sub", "Add sub(a, b).", ["agent:auto"])
    return repo


def make_case(template_repo: Path, root: Path, body: str) -> tuple[Path, Any]:
    repo = root / "repo"
    shutil.copytree(template_repo, repo)
    agent = make_agent(root, body)
    write_policy(repo, agent, checks=CHECKS)
    return repo, agent


def show(repo: Path) -> dict[str, Any]:
    """What `orch show --issue 1 --json` says, read in-process (a subprocess per look would be slow)."""
    store = Store(repo / STATE_DB)
    try:
        state, _run = store.state_of(1)
        steps = [{"status": s.status, "dest": s.dest} for s in store.steps(1)]
        return {"state": state, "steps": steps, "journal": store.journal(1)}
    finally:
        store.close()


def effects_of_a_full_run(template_repo: Path, root: Path, body: str, final: str) -> list[str]:
    repo, agent = make_case(template_repo, root, body)
    proc = orch(repo, "run", "--issue", "1")
    assert proc.returncode == (0 if final == "review" else 5), proc.stdout + proc.stderr
    proc = orch(repo, "show", "--issue", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    journal = json.loads(proc.stdout)["journal"]
    assert journal and all(j["status"] == "done" for j in journal)
    assert journal == show(repo)["journal"]
    assert agent.runs == 1
    return [j["action"] for j in journal]


def check_case(template_repo: Path, root: Path, body: str, k: int, effects: list[str], final: str) -> str | None:
    """Kill after effect k, run again, check the outcome; return what went wrong, or None."""
    try:
        repo, agent = make_case(template_repo, root, body)
        base = git_out(repo, "rev-parse", "main")
        killed = orch(repo, "run", "--issue", "1", kill_after=k)
        if killed.returncode != -signal.SIGKILL:
            return f"k={k}: expected SIGKILL after {effects[k - 1]}, got exit {killed.returncode}: {killed.stderr}"
        done = [j["action"] for j in show(repo)["journal"] if j["status"] == "done"]
        if done != effects[:k]:
            return f"k={k}: journal before resuming is {done}, expected {effects[:k]}"
        resumed = orch(repo, "run", "--issue", "1")
        want = 0 if final == "review" else 5
        if resumed.returncode != want or "Traceback" in resumed.stderr:
            return f"k={k} ({effects[k - 1]}): resume exited {resumed.returncode}: {resumed.stdout}{resumed.stderr}"
        data = show(repo)
        problems = []
        if data["state"] != final:
            problems.append(f"state {data['state']}")
        if [j["action"] for j in data["journal"]] != effects or any(j["status"] != "done" for j in data["journal"]):
            problems.append(f"journal {[(j['action'], j['status']) for j in data['journal']]}")
        if any(s["status"] != "done" for s in data["steps"]):
            problems.append("a step is still pending")
        if agent.runs != 1:
            problems.append(f"the agent ran {agent.runs} times")
        if len(comments_of_kind(repo, 1, "claim")) != 1:
            problems.append(f"{len(comments_of_kind(repo, 1, 'claim'))} claim comments")
        reports = comments_of_kind(repo, 1, f"report-{final}")
        if len(reports) != 1 or len(comments_of_kind(repo, 1, "report-")) != 1:
            problems.append(f"{len(comments_of_kind(repo, 1, 'report-'))} report comments")
        with tracker(repo) as t:
            labels = set(t.get_issue(1).labels)
            pulls = t.pulls()
        if labels != {"agent:auto", f"agent:{final}"}:
            problems.append(f"labels {sorted(labels)}")
        branch = git_out(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/orch/")
        commits = git_out(repo, "rev-list", f"{base}..{branch}").split() if branch else []
        if final == "review":
            if len(pulls) != 1:
                problems.append(f"{len(pulls)} pull requests")
            elif commits != [pulls[0].head_sha]:
                problems.append(f"branch commits {commits}, pull request head {pulls[0].head_sha}")
            elif git_out(repo, "log", "-1", "--format=%cn", commits[0]) != "orch":
                problems.append("the branch commit is not the runner's")
            elif git_out(repo, "show", f"{commits[0]}:app.py") + "\n" != GOOD_APP:
                problems.append("the branch commit does not hold the agent's change")
        elif pulls or commits:
            problems.append(f"blocked run published {len(pulls)} pull request(s), {len(commits)} commit(s)")
        if git_out(repo, "rev-parse", "main") != base:
            problems.append("main moved")
        return f"k={k} (after {effects[k - 1]}): " + "; ".join(problems) if problems else None
    except Exception as exc:  # report every case, not only the first failure
        return f"k={k}: {type(exc).__name__}: {exc}"


def kill_everywhere(tmp_path: Path, body: str, final: str) -> list[str]:
    repo = template(tmp_path)
    effects = effects_of_a_full_run(repo, tmp_path / "reference", body, final)
    ks = list(range(1, len(effects) + 1))
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [
            f for f in pool.map(lambda k: check_case(repo, tmp_path / f"k{k}", body, k, effects, final), ks) if f
        ]
    assert failures == [], "\n".join(failures)
    return effects


def test_delivery_survives_a_kill_after_every_effect(tmp_path: Path) -> None:
    effects = kill_everywhere(tmp_path, GOOD_AGENT, "review")
    # the delivery journals at least: the claim, the worktree, the agent, the capture, the checks, the publication
    for action in (
        "start_run",
        "create_worktree",
        "run_agent",
        "capture_changes",
        "run_checks",
        "commit_changes",
        "open_draft_pr",
        "post_report",
    ):
        assert action in effects, effects
    # one more than there are effects: nothing kills it, it simply finishes
    repo, agent = make_case(tmp_path / "template", tmp_path / "no-kill", GOOD_AGENT)
    proc = orch(repo, "run", "--issue", "1", kill_after=len(effects) + 1)
    assert proc.returncode == 0 and show(repo)["state"] == "review" and agent.runs == 1


def test_blocked_run_survives_a_kill_after_every_effect(tmp_path: Path) -> None:
    effects = kill_everywhere(tmp_path, blocked_path_body(".github/workflows/ci.yml"), "blocked")
    assert "post_report" in effects and "open_draft_pr" not in effects
