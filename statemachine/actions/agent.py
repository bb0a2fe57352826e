"""The agent's run: its prompt rendered and run once in the jail, its workspace, and its evidence sealed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from statemachine.actions.context import ActionContext, _with_comments, _worktree_path
from statemachine.ports import AgentResult
from statemachine.reports import load_report
from statemachine.settings import AgentSettings


def agent_workspace(
    ctx: ActionContext, worktree: Path, evidence: Path, base: str, branch: str | None
) -> dict[str, Path]:
    return ctx.sandbox.workspace(worktree, evidence, base, branch)


def run_agent(ctx: ActionContext, prompt: str) -> dict[str, Any]:
    """Render the prompt and run the agent once in the worktree; keep its log and report as evidence."""
    from statemachine import prompting

    facts = ctx.facts()
    previous = facts.get("agent")
    if previous and previous.get("step") == ctx.step_id:
        record_usage(ctx, "implementation", previous)  # kept once, whether or not the crash came before it
        return {"attempt": previous["attempt"], "resumed": True}  # it finished before a crash: never rerun
    attempt = int(facts.get("attempt", 0)) + 1
    report_path = ctx.fresh_report(f"attempt-{attempt}", "report.json")
    evidence = report_path.parent
    worktree = _worktree_path(ctx, facts)
    if "worktree" not in facts:  # a parent's integration branch, reworked after review feedback
        ctx.set_fact("worktree", str(worktree))
    if not (worktree / ".git").exists():  # removed after publication, deleted by hand, or a fresh machine
        # work resumes where the run's branch was published (review feedback), else from the base commit
        ctx.git.ensure_worktree(worktree, facts["branch"], facts.get("head_sha") or facts["base_sha"])
    issue = ctx.snapshot.issue
    values = prompting.issue_values(
        _with_comments(ctx, issue), ctx.repo, ctx.policy.config.rules, list(facts.get("findings", []))
    )
    values.update(
        report_path=report_path, worktree=worktree, branch=facts["branch"], base_sha=facts["base_sha"], attempt=attempt
    )
    text = ctx.secrets.redact(prompting.render(prompt, ctx.repo, values))
    choice = ctx.policy.config.agent_for(issue.labels)  # agent.profiles / agent.select: which agent, and why
    agent = choice.agent
    ctx.set_fact("git_before", ctx.git.fingerprint(worktree))
    extra = agent_workspace(ctx, worktree, evidence, facts.get("head_sha") or facts["base_sha"], facts["branch"])
    result = ctx.make_agent(agent).run(agent.request(text, worktree, evidence, report_path, extra))
    leaks = seal_evidence(ctx, evidence)  # before anything reads the report or the log
    report, error = load_report(report_path, "completion-report")
    agent_fact = {
        **outcome_fact(ctx, attempt, result, agent),
        "profile": choice.name,
        "kind": agent.kind,
        "output_bytes": result.output_bytes,
        "tokens": result.tokens,
        "secret_values": leaks,
    }
    # together: the agent fact's presence means the attempt finished, with everything it observed
    ctx.set_facts(
        {
            "attempt": attempt,
            "report": report,
            "report_error": error,
            "checks": None,
            "proof": None,
            "agent": agent_fact,
        }
    )
    record_usage(ctx, "implementation", agent_fact)
    return {"attempt": attempt, "exit_code": result.exit_code, "report": error or "valid"}


def record_usage(ctx: ActionContext, role: str, fact: dict[str, Any]) -> None:
    """Keep one agent run in the usage ledger (statemachine/ledger.py) from its outcome fact: keyed by run, step, role
    and attempt, so a step resumed after a crash that repeats this records it once."""
    from statemachine import ledger

    ledger.record(
        ctx.store,
        run_id=ctx.require_run(),
        step_id=ctx.step_id,
        role=role,
        attempt=int(fact.get("attempt") or 0),
        issue=ctx.issue,
        tokens=fact.get("tokens"),
        seconds=float(fact.get("duration_seconds") or 0.0),
        profile=fact.get("profile"),
        kind=fact.get("kind"),
    )


def outcome_fact(ctx: ActionContext, attempt: int, result: AgentResult, agent: AgentSettings) -> dict[str, Any]:
    """How an agent run ended, as its ``agent`` fact records it (record.AgentOutcome reads it): the implementation
    agent's and the planner's alike."""
    return {
        "step": ctx.step_id,
        "attempt": attempt,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "idle_timed_out": result.idle_timed_out,
        "duration_seconds": round(result.duration_seconds, 3),
        "log": result.log,
        "error": result.error,
        "tokens": result.tokens,
        "kind": agent.kind,
        **agent.timeouts(),
    }


def seal_evidence(ctx: ActionContext, folder: Path) -> list[dict[str, str]]:
    """Rewrite every file an agent run left in its evidence folder (log, report, its own state) with each secret value
    redacted; the findings (kind secret-value, naming the file, the variable and the encoding) for the inspection."""
    from statemachine import inspect_candidate as insp

    found: list[dict[str, str]] = []
    for rel, hits in sorted(insp.redact_tree(folder, ctx.secrets).items()):
        found += [f.as_json() for f in insp.value_findings(hits, rel)]
    return found
