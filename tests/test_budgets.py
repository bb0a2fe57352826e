"""Budgets (issue 18, item 3): limits.budget caps what agent runs spend per UTC day and per issue; the usage ledger
keeps one row per agent run; `within_budget` holds the claim (and every further agent run) once a cap is reached, and
`orch explain`, `orch status`, `orch show`, the daemon and the report say why. Real git, the CLI, real `command`
agents in the jail; the day comes from ORCH_NOW (the injectable clock), and one real Codex run reports tokens."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from statemachine import ledger
from statemachine.store import Store
from tests.conftest import Cli, git, orch_process

AGENT = """\
import json, os, sys
from pathlib import Path

prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
n = prompt.split("issue #", 1)[1].split(":", 1)[0]
with open(os.environ["ORCH_TEST_AGENT_COUNT"], "a") as fh:  # how often the agent really ran
    fh.write(n + "\\n")
Path(f"by_{n}.txt").write_text("done\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "done",
    "changed_files": [f"by_{n}.txt"], "validation": []}))
"""

POLICY = """version: 1
extends: default
agent:
  kind: command
  command: {python}
  args: ['{agent}']
  timeout_seconds: 300
sandbox:
  mode: bubblewrap
  writable: ['{count_dir}']
  env: [ORCH_TEST_AGENT_COUNT]
limits:
  rework_iterations: 2
  budget:
{budget}
{extra}"""

DAY1, DAY2 = "2031-05-06T23:50:00Z", "2031-05-07T00:10:00Z"


def prepare(repo: Path, tmp_path: Path, budget: str, extra: str = "") -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    counts = tmp_path / "counts"
    counts.mkdir()
    os.environ["ORCH_TEST_AGENT_COUNT"] = str(counts / "runs.txt")
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        POLICY.format(python=sys.executable, agent=agent, count_dir=counts, budget=budget, extra=extra)
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    return counts / "runs.txt"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TEST_AGENT_COUNT", "")  # restored after the test (prepare sets it)
    monkeypatch.setenv("ORCH_NOW", DAY1)


def new_issue(cli: Cli, repo: Path, title: str) -> int:
    code, data = cli.json("issue", "new", title, "--body", title, "--label", "agent:auto", "--repo", repo)
    assert code == 0
    return int(data["number"])


def ledger_rows(repo: Path, **where: Any) -> list[dict[str, Any]]:
    store = Store(repo / ".orch" / "state" / "orch.db")
    try:
        return ledger.rows(store, **where)
    finally:
        store.close()


def test_a_daily_budget_stops_claims_and_the_next_day_resumes(
    cli: Cli, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = prepare(repo, tmp_path, "    agent_runs_per_day: 2\n    agent_runs_per_issue: 3\n")
    first, second, third = (new_issue(cli, repo, t) for t in ("first", "second", "third"))
    for n in (first, second):
        assert cli("run", "--issue", str(n), "--repo", repo)[0] == 0
    assert runs.read_text().split() == [str(first), str(second)]
    code, out, _ = cli("run", "--issue", str(third), "--repo", repo)
    assert code == 4, out  # nothing can fire: the claim waits
    code, out, _ = cli("explain", "--issue", str(third), "--repo", repo)
    lead = out.splitlines()[0]
    assert "budget for today spent: 2 of 2 agent runs" in lead, out
    assert "next UTC day" in lead, lead
    # the daemon does not start it either, and says why
    proc = orch_process(repo, "daemon", "--once", "--json")
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    skipped = [e for e in events if e.get("event") == "skipped" and e.get("issue") == third]
    assert skipped and "budget for today spent: 2 of 2 agent runs" in skipped[0]["reason"], proc.stdout
    assert not [e for e in events if e.get("event") == "run-started"], proc.stdout
    # orch status: today's usage and what is left
    code, data = cli.json("status", "--repo", repo)
    assert data["budget"]["today"]["runs"] == 2 and data["budget"]["remaining"]["agent_runs_per_day"] == 0, data
    code, out, _ = cli("status", "--repo", repo)
    assert "budget today (2031-05-06 UTC): 2 of 2 agent runs" in out, out
    # the next UTC day: the third runs to review, and counts on its own day
    monkeypatch.setenv("ORCH_NOW", DAY2)
    code, out, _ = cli("run", "--issue", str(third), "--repo", repo)
    assert code == 0, out
    assert runs.read_text().split() == [str(first), str(second), str(third)]
    code, data = cli.json("status", "--repo", repo)
    assert data["budget"]["today"]["runs"] == 1 and data["budget"]["remaining"]["agent_runs_per_day"] == 1, data
    rows = ledger_rows(repo, issue=third)
    assert [(r["role"], r["day"], r["kind"], r["total_tokens"]) for r in rows] == [
        ("implementation", "2031-05-07", "command", None)
    ]
    assert rows[0]["seconds"] > 0
    # orch show: the run's ledger rows and totals
    code, data = cli.json("show", "--issue", str(third), "--repo", repo)
    assert [r["role"] for r in data["usage"]["rows"]] == ["implementation"] and data["usage"]["total"]["runs"] == 1
    code, out, _ = cli("show", "--issue", str(third), "--repo", repo)
    assert "usage of run" in out and "1 agent run," in out, out


def test_a_per_issue_cap_ends_the_run_blocked_instead_of_another_agent_run(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    runs = prepare(
        repo,
        tmp_path,
        "    agent_runs_per_issue: 1\n    price_per_million_tokens: 2.5\n    currency: EUR\n",
        f"checks:\n  unit:\n    command: {sys.executable} -c 'raise SystemExit(1)'\n",
    )
    n = new_issue(cli, repo, "failing")
    code, out, _ = cli("run", "--issue", str(n), "--repo", repo)
    assert code == 5, out  # blocked
    assert runs.read_text().split() == [str(n)]  # the check failed, rework would follow: no second agent run
    code, data = cli.json("explain", "--issue", str(n), "--repo", repo)
    assert data["state"] == "blocked"
    code, out, _ = cli("explain", "--issue", str(n), "--repo", repo)
    assert "this issue's budget spent: 1 of 1 agent runs" in out.splitlines()[0], out
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    report = data["comments"][-1]["body"]
    assert "this issue's budget spent: 1 of 1 agent runs" in report, report
    assert "## Usage" in report and "1 agent run" in report and "tokens not reported" in report, report
    assert len(ledger_rows(repo, issue=n)) == 1


def test_a_step_resumed_after_a_crash_counts_its_agent_run_once(cli: Cli, repo: Path, tmp_path: Path) -> None:
    runs = prepare(repo, tmp_path, "    agent_runs_per_day: 5\n")
    n = new_issue(cli, repo, "crash")
    # claim (start_run, claim_issue, add_labels), then start: create_worktree, run_agent: killed after the agent
    proc = orch_process(repo, "run", "--issue", str(n), kill_after=5)
    assert proc.returncode == -9, proc.stderr
    assert len(ledger_rows(repo, issue=n)) == 1
    # the crash came before the journal said run_agent was done: the resumed step enters it again
    db = sqlite3.connect(repo / ".orch" / "state" / "orch.db")
    with db:
        changed = db.execute(
            "UPDATE journal SET status='intent', done_at=NULL WHERE action='run_agent' AND status='done'"
        ).rowcount
    db.close()
    assert changed == 1
    proc = orch_process(repo, "run", "--issue", str(n))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs.read_text().split() == [str(n)]  # the agent did not run again ...
    rows = ledger_rows(repo, issue=n)
    assert len(rows) == 1 and rows[0]["role"] == "implementation"  # ... and is counted once


def test_the_ledger_sums_tokens_and_judges_every_limit(tmp_path: Path) -> None:
    store = Store(tmp_path / "orch.db")
    try:
        row: dict[str, Any] = dict(role="implementation", attempt=1, issue=7, seconds=90.0, kind="codex")
        assert ledger.record(store, run_id="r1", step_id=3, tokens={"input": 900_000, "output": 300_000}, **row)
        assert not ledger.record(store, run_id="r1", step_id=3, tokens={"input": 1, "output": 1}, **row)  # resumed
        claude = {"input": 10, "output": 5, "cache_read_input": 100, "cache_creation_input": 20}
        ledger.record(store, run_id="r2", step_id=9, tokens=claude, **{**row, "issue": 8})
        ledger.record(store, run_id="r2", step_id=10, tokens=None, **{**row, "issue": 8, "role": "review"})
        spent = ledger.spent(store, 7, ledger.today())
        assert (spent["issue"].runs, spent["issue"].tokens, spent["issue"].minutes) == (1, 1_200_000, 1.5)
        day = ledger.spent(store)["day"]
        assert (day.runs, day.tokens, day.unreported) == (3, 1_200_135, 1)
        assert ledger.spent(store, day="2031-05-05")["day"].runs == 0
    finally:
        store.close()
    budget = {"tokens_per_day": 1_000_000, "agent_minutes_per_issue": 1.5, "agent_runs_per_day": 5}
    usage = {"day": day.as_json(), "issue": spent["issue"].as_json()}
    assert ledger.exhausted(budget, usage) == [
        "budget for today spent: 1.2M of 1M tokens",
        "this issue's budget spent: 1.5 of 1.5 agent minutes",
    ]
    assert ledger.exhausted({"tokens_per_day": 2_000_000}, usage) == []
    assert ledger.cost(1_200_000, {"price_per_million_tokens": 2.5, "currency": "EUR"}) == "3.00 EUR"
    assert ledger.figure(35_400, "tokens") == "35.4k" and ledger.figure(3, "agent runs") == "3"


def test_orch_now_must_be_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_NOW", "2031-05-06T23:50:00+02:00")
    assert ledger.today() == "2031-05-06"
    monkeypatch.setenv("ORCH_NOW", "2031-05-06T23:50:00-02:00")
    assert ledger.today() == "2031-05-07"  # the UTC day
    monkeypatch.setenv("ORCH_NOW", "tomorrow")
    with pytest.raises(ValueError, match="ISO-8601"):
        ledger.today()


def test_a_real_codex_run_fills_the_token_budget_and_explain_names_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens as the real Codex CLI reports them (its usage events, from the scripted model server) go into the
    ledger; a daily token cap they pass holds the next claim."""
    from tests.model_server import Message, ModelServer, Shell, Step
    from tests.test_codex_agent import API_KEY, API_KEY_ENV, CODEX, edit_and_report

    if CODEX is None:
        pytest.skip("no Codex CLI: set ORCH_TEST_CODEX")
    from statemachine.adapters.codex import CodexAgent
    from statemachine.engine import Engine
    from statemachine.runtime import Runtime, open_runtime

    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        "version: 1\nextends: default\nagent:\n  kind: command\n  command: codex\n  timeout_seconds: 120\n"
        "limits:\n  rework_iterations: 2\n  budget:\n    tokens_per_day: 2000\n"
        "    price_per_million_tokens: 2.0\n"
    )
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n__pycache__/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "orch policy")
    turns: list[Step] = [Shell(edit_and_report, input_tokens=1_500, output_tokens=300), Message("done", 500, 10)]
    with ModelServer(turns) as srv:
        config = {
            "kind": "codex",
            "command": CODEX,
            "model": srv.model,
            "base_url": srv.base_url,
            "api_key_env": API_KEY_ENV,
            "sandbox": "workspace-write",
        }
        monkeypatch.setattr(Runtime, "make_agent", lambda self, _agent=None: CodexAgent(config, self.repo))
        rt = open_runtime(repo, None)
        try:
            first = rt.tracker.create_issue("Make add explicit", "Convert to int.", [rt.policy.label("auto")])
            second = rt.tracker.create_issue("Another", "Anything.", [rt.policy.label("auto")])
            outcomes = list(Engine(rt).iter_run(first.number))
            path = [o.dest for o in outcomes if o.fired is not None]
            why = [(n, v.reason) for e in outcomes[-1].evaluations for n, v in e.verdicts if not v.ok]
            tokens = rt.store.facts(rt.store.state_of(first.number)[1])["agent"]["tokens"]
            rows = ledger.rows(rt.store, issue=first.number)
            _snap, evaluations = Engine(rt).explain(second.number)
            summary = ledger.today_summary(rt.store, rt.policy.config.budget.as_dict())
        finally:
            rt.close()
    assert path[-1] == "review", (path, why)
    assert tokens["input"] >= 2_000, tokens  # what codex reported, summed over its model calls
    assert len(rows) == 1 and rows[0]["kind"] == "command" and rows[0]["input_tokens"] == tokens["input"]
    assert rows[0]["total_tokens"] == tokens["input"] + tokens["output"]
    verdicts = {g: v for e in evaluations[:1] for g, v in e.verdicts}
    reason = verdicts["within_budget"].reason
    assert reason.startswith("budget for today spent: 2.3k of 2k tokens"), reason
    assert summary["remaining"]["tokens_per_day"] == 0 and summary["cost"].endswith(" USD"), summary
