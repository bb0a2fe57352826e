"""Kill orch (SIGKILL) after each journaled effect of a whole plan-auto run, then run it again: one tree, once.

ORCH_TEST_KILL_AFTER_EFFECT=k is inherited by the children's `orch run` processes, so a case also kills
whichever child reaches its k-th effect first; the parent then stops with the step pending and the second run
resumes parent and children alike. Afterwards: no duplicated child issue, no child's agent run twice, each
child merged once, one pull request, one claim, one plan comment and one report.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from statemachine.store import Store
from tests.agentkit import STATE_DB, comments_of_kind, git_out, tracker
from tests.conftest import git
from tests.conftest import orch_process as orch
from tests.plankit import DIAMOND, PlanAgent, write_policy


def template(root: Path) -> Path:
    repo = root / "template" / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def make_case(template_repo: Path, root: Path) -> tuple[Path, PlanAgent]:
    repo = root / "repo"
    shutil.copytree(template_repo, repo)
    agent = PlanAgent(root / "agent")
    agent.plan(DIAMOND)
    write_policy(repo, agent)
    with tracker(repo) as t:
        t.create_issue("Big feature", "Build it in parts.", ["agent:plan-auto"])
    return repo, agent


def parent_journal(repo: Path) -> list[str]:
    store = Store(repo / STATE_DB)
    try:
        return [j["action"] for j in store.journal(1)]
    finally:
        store.close()


def check_case(template_repo: Path, root: Path, k: int, effects: list[str]) -> str | None:
    try:
        repo, agent = make_case(template_repo, root)
        base = git_out(repo, "rev-parse", "main")
        killed = orch(repo, "run", "--issue", "1", kill_after=k)
        if killed.returncode == 0:
            return f"k={k}: nothing was killed"
        resumed = orch(repo, "run", "--issue", "1")
        if resumed.returncode != 0 or "Traceback" in resumed.stderr:
            return f"k={k} ({effects[k - 1]}): resume exited {resumed.returncode}: {resumed.stdout[-2000:]}{resumed.stderr[-2000:]}"
        problems = []
        with tracker(repo) as t:
            issues = t.list_issues(state="all")
            pulls = t.pulls()
            parent = t.get_issue(1)
            handovers = sum(1 for i in issues for c in t.list_comments(i.number) if "kind=handover-" in c.body)
        children = [i for i in issues if "agent:child" in i.labels]
        if len(children) != 4 or len(issues) != 5:
            problems.append(f"{len(children)} children among {len(issues)} issues")
        if len(pulls) != 1:
            problems.append(f"{len(pulls)} pull requests")
        runs = agent.runs()
        keys = sorted(str(r["key"]) for r in runs if r["mode"] == "implement")
        if keys != ["a", "b", "c", "d"] or sum(r["mode"] == "planning" for r in runs) != 1:
            problems.append(f"agent runs {runs}")
        merges = git_out(repo, "rev-list", "--merges", f"{base}..orch/plan-1").split()
        if len(merges) != 4:
            problems.append(f"{len(merges)} merge commits")
        for kind in ("claim", "plan", "report-review"):
            if len(comments_of_kind(repo, 1, kind)) != 1:
                problems.append(f"{len(comments_of_kind(repo, 1, kind))} {kind} comments")
        if handovers != 4:
            problems.append(f"{handovers} hand-over comments")
        if set(parent.labels) != {"agent:plan-auto", "agent:review"}:
            problems.append(f"parent labels {sorted(parent.labels)}")
        store = Store(repo / STATE_DB)
        try:
            pending = [n for n in range(1, 6) if store.pending_step(n) is not None]
            states = {n: store.state_of(n)[0] for n in range(1, 6)}
        finally:
            store.close()
        if pending or set(states.values()) != {"review"}:
            problems.append(f"states {states}, pending {pending}")
        return f"k={k} (after {effects[k - 1]}): " + "; ".join(problems) if problems else None
    except Exception as exc:  # report every case
        return f"k={k}: {type(exc).__name__}: {exc}"


def test_a_plan_auto_run_survives_a_kill_after_every_effect(tmp_path: Path) -> None:
    repo = template(tmp_path)
    reference, agent = make_case(repo, tmp_path / "reference")
    proc = orch(reference, "run", "--issue", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    effects = parent_journal(reference)
    for action in (
        "claim_issue",
        "run_planner",
        "sync_children",
        "start_integration",
        "run_wave",
        "integrate",
        "open_draft_pr",
        "hand_over_children",
        "post_report",
    ):
        assert action in effects, effects
    assert effects.count("run_wave") == 3 and len(agent.runs()) == 5
    ks = list(range(1, len(effects) + 1))
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(lambda k: check_case(repo, tmp_path / f"k{k}", k, effects), ks) if f]
    assert failures == [], "\n".join(failures)
