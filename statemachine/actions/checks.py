"""Judging the candidate: the checks and the TDD run in the jail, the review agent, the proof, and the findings
(failed checks, proof, gates, review feedback) that the rework prompt shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from statemachine import limits, preflight, programs
from statemachine.actions.agent import agent_workspace, record_usage, seal_evidence
from statemachine.actions.context import ActionContext, _with_comments
from statemachine.ports import AgentResult
from statemachine.reports import load_report


def _check_worktree(ctx: ActionContext, facts: dict[str, Any], name: str, sha: str) -> Path:
    path = ctx.orch_dir / "worktrees" / f"{name}-{ctx.require_run()}-{facts.get('attempt', 0)}"
    ctx.git.add_detached_worktree(path, sha)
    return path


def run_checks(ctx: ActionContext) -> dict[str, Any]:
    """Run every configured check in a fresh worktree of the exact candidate commit; keep the outputs."""
    facts = ctx.facts()
    out_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}" / "checks"
    results: dict[str, dict[str, Any]] = {}
    checks = sorted(ctx.policy.config.checks.items())
    if checks:
        worktree = _check_worktree(ctx, facts, "check", facts["candidate_sha"])
        shown, roots = preflight.policy_file(ctx.repo, ctx.policy), ctx.sandbox.search_roots()
        try:
            for name, spec in checks:
                log = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.log"
                res = ctx.sandbox.run_shell(
                    spec.command, worktree, log, float(spec.timeout_seconds), facts["candidate_sha"]
                )
                leaked = _redact_log(ctx, log)  # a check runs the agent's code, which may print what it can find
                # exit 127/126: the shell could not start the program; rework cannot fix a mistyped command
                exit_code = None if res.timed_out else res.exit_code
                error = (
                    f"the check `{name}` could not start: {res.error}"
                    if res.error
                    else programs.not_started(
                        name,
                        spec.command,
                        exit_code,
                        ctx.repo,
                        shown,
                        limits.read_tail(log, limits.FINDING_LOG_TAIL),
                        roots,
                    )
                )
                results[name] = {
                    "exit_code": res.exit_code,
                    "timed_out": res.timed_out,
                    "duration_seconds": round(res.duration_seconds, 3),
                    "log": str(log),
                    "command": spec.command,
                    "error": error,
                    "commit": facts["candidate_sha"],
                    "redacted": leaked,
                }
        finally:
            ctx.git.remove_worktree(worktree)
    ctx.set_fact("checks", results)
    return {name: r["exit_code"] for name, r in results.items()}


def run_tdd_check(ctx: ActionContext) -> dict[str, Any]:
    """When gates.tdd is set: run the added or changed tests on the base commit (must fail) and on the candidate (must pass)."""
    from statemachine.gates import DEFAULT_TEST_GLOBS
    from statemachine.globs import first_match

    gates = ctx.policy.config.gates
    cfg = gates.tdd
    if cfg is None:
        ctx.set_fact("tdd", None)
        return {"skipped": "gates.tdd is not set"}
    facts = ctx.facts()
    globs = gates.test_globs or DEFAULT_TEST_GLOBS
    tests = [c["path"] for c in facts.get("changes", []) if c["status"] != "D" and first_match(c["path"], globs)]
    if not tests:
        ctx.set_fact("tdd", {"error": "the change adds or modifies no test", "tests": []})
        return {"error": "no test changed"}
    out_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}" / "tdd"
    command = cfg.command.replace("{tests}", " ".join(_shquote(t) for t in tests))
    timeout = float(cfg.timeout_seconds)
    exits = {}
    for side, sha in (("base", facts["base_sha"]), ("candidate", facts["candidate_sha"])):
        worktree = _check_worktree(ctx, facts, f"tdd-{side}", sha)
        try:
            if side == "base":  # the candidate's tests, on the base commit's product code
                ctx.git.checkout_paths(worktree, facts["candidate_sha"], tests)
            res = ctx.sandbox.run_shell(command, worktree, out_dir / f"{side}.log", timeout, sha)
            _redact_log(ctx, out_dir / f"{side}.log")
            exits[side] = res.exit_code if not res.timed_out else -1
        finally:
            ctx.git.remove_worktree(worktree)
    tdd = {
        "tests": tests,
        "command": command,
        "base_exit": exits["base"],
        "candidate_exit": exits["candidate"],
        "base_log": str(out_dir / "base.log"),
        "candidate_log": str(out_dir / "candidate.log"),
        "error": None,
    }
    ctx.set_fact("tdd", tdd)
    return {"base_exit": exits["base"], "candidate_exit": exits["candidate"]}


def _redact_log(ctx: ActionContext, log: Path) -> list[str]:
    """Rewrite a check's log with every secret value redacted; the names of the variables it held."""
    from statemachine.inspect_candidate import redact_file

    return sorted({hit.name for hit in redact_file(log, ctx.secrets)})


def _shquote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def run_review(ctx: ActionContext) -> dict[str, Any]:
    """When gates.review is on: a second agent run in review mode returns a verdict (schemas/review-report.schema.json)."""
    from statemachine import prompting

    if not ctx.policy.config.gates.review:
        ctx.set_fact("review", None)
        return {"skipped": "gates.review is off"}
    facts = ctx.facts()
    attempt = int(facts.get("attempt", 0))
    report_path = ctx.fresh_report(f"attempt-{attempt}/review", "review-report.json")
    evidence = report_path.parent
    worktree = _check_worktree(ctx, facts, "review", facts["candidate_sha"])
    try:
        values = prompting.issue_values(
            _with_comments(ctx, ctx.snapshot.issue),
            ctx.repo,
            ctx.policy.config.rules,
            list(facts.get("findings", [])),
        )
        values.update(
            report_path=report_path,
            worktree=worktree,
            branch=facts["branch"],
            base_sha=facts["base_sha"],
            attempt=attempt,
        )
        extra = agent_workspace(ctx, worktree, evidence, facts["candidate_sha"], None)
        text = ctx.secrets.redact(prompting.render("review", ctx.repo, values))
        request = ctx.policy.config.agent.request(text, worktree, evidence, report_path, extra, {"ORCH_MODE": "review"})
        result = ctx.make_agent().run(request)
    finally:
        ctx.git.remove_worktree(worktree)
    record_usage(ctx, "review", _usage_fact(ctx, attempt, result))
    seal_evidence(ctx, evidence)  # the review's findings reach the rework prompt: they are stored redacted
    report, error = load_report(report_path, "review-report", "review report")
    if error is None and result.exit_code != 0:
        error = f"the review run exited with {result.exit_code}"
    review = {
        "error": error,
        "verdict": (report or {}).get("verdict"),
        "defects": (report or {}).get("defects", []),
        "summary": (report or {}).get("summary", ""),
        "log": result.log,
    }
    ctx.set_fact("review", review)
    return {"verdict": review["verdict"], "error": error}


def _usage_fact(ctx: ActionContext, attempt: int, result: AgentResult) -> dict[str, Any]:
    """What the usage ledger keeps of a review or proof agent's run (the policy's own agent runs them)."""
    return {
        "attempt": attempt,
        "tokens": result.tokens,
        "duration_seconds": result.duration_seconds,
        "kind": ctx.policy.config.agent.kind,
    }


def run_proof(ctx: ActionContext) -> dict[str, Any]:
    """Prove the candidate: the agent answers every criterion, the runner drives the browser itself and checks all evidence."""
    from statemachine import proof

    facts = ctx.facts()
    attempt = int(facts.get("attempt", 0))
    issue = _with_comments(ctx, ctx.snapshot.issue)  # the authorized text, and writers' comments only
    inp = proof.ProofInputs(
        repo=ctx.repo,
        policy_data=ctx.policy.data,
        config=ctx.policy.config,
        git=ctx.git,
        make_agent=ctx.make_agent,
        sandbox=ctx.sandbox,
        make_browser=ctx.make_browser,
        issue=issue,
        worktree=Path(facts["worktree"]),
        base_sha=facts["base_sha"],
        candidate_sha=facts["candidate_sha"],
        branch=facts["branch"],
        attempt=attempt,
        run_id=ctx.require_run(),
        proof_dir=ctx.evidence_dir() / f"attempt-{attempt}" / "proof",
        findings=list(facts.get("findings", [])),
        secrets=ctx.secrets,
        on_agent_run=lambda phase, result: record_usage(ctx, f"proof-{phase}", _usage_fact(ctx, attempt, result)),
    )
    fact = proof.prove(inp)
    ctx.set_fact("proof", fact)
    return {
        "status": fact["status"],
        "error": fact["error"],
        "criteria": len(fact["criteria"]),
        "artifacts": len(fact["artifacts"]),
    }


def record_findings(ctx: ActionContext) -> dict[str, Any]:
    """Turn failed checks, proof findings and files the report left out into findings for the next prompt; count one
    rework."""
    facts = ctx.facts()
    done_for = facts.get("findings_step")
    if done_for == ctx.step_id:
        return {"resumed": True}
    findings: list[str] = []
    for name, r in sorted((facts.get("checks") or {}).items()):
        if r.get("exit_code") != 0:
            tail = limits.read_tail(Path(r["log"]), limits.FINDING_LOG_TAIL)  # the check ran the agent's code: any size
            findings.append(
                f"check {name!r} ({r.get('command')}) "
                + ("timed out" if r.get("timed_out") else f"exited {r.get('exit_code')}")
                + f"; output tail:\n{tail}"
            )
    proof = facts.get("proof") or {}
    findings += [f"proof: {f}" for f in proof.get("findings", [])]
    from statemachine import gates

    unreported = gates.unreported_changes_only(ctx.snapshot)
    if unreported.ok:  # from implementing: the candidate never reached the checks, so this is the one finding
        findings = [
            "report: your completion report's changed_files leave out files that differ from the base commit ("
            + "; ".join(unreported.evidence)
            + "). List every file you meant to change; delete any file you did not mean to leave behind (a tool's "
            "output or cache: remove it, or add it to .gitignore if it belongs to this repository's tooling)"
        ]
    else:
        for fn in (gates.tdd_evidence, gates.tests_changed_with_source):
            verdict = fn(ctx.snapshot)
            if not verdict.ok:
                findings.append(f"{fn.__name__}: {verdict.reason}")
        review = facts.get("review") or {}
        for d in review.get("defects", []):
            where = f" ({d['file']}:{d.get('line', '?')})" if d.get("file") else ""
            findings.append(f"review {d.get('severity', '?')}{where}: {d.get('description', '')}")
    ctx.set_facts(
        {"findings": findings, "rework_count": int(facts.get("rework_count", 0)) + 1, "findings_step": ctx.step_id}
    )
    return {"findings": len(findings)}


def record_review_feedback(ctx: ActionContext) -> dict[str, Any]:
    """Turn new review feedback from users with write permission into findings for the rework prompt; count one rework."""
    from statemachine.guards import WRITE_PERMISSIONS

    facts = ctx.facts()
    if facts.get("feedback_step") == ctx.step_id:
        return {"resumed": True}
    handled = list(facts.get("feedback_handled") or [])
    new = [f for f in ctx.snapshot.feedback if f["key"] not in handled]
    findings = []
    for f in new:
        if f.get("permission") not in WRITE_PERMISSIONS:
            continue  # never reaches the agent: anyone can review a public pull request
        where = f" on {f['path']}:{f.get('line') or '?'}" if f.get("path") else ""
        what = "requested changes" if f.get("state") == "CHANGES_REQUESTED" else "commented"
        findings.append(f"review: {f['author']} {what}{where}: {str(f.get('body', '')).strip() or '(no text)'}")
    pr = facts.get("pull_request") or {}
    ctx.set_facts(
        {
            "findings": findings,
            "feedback_handled": handled + [f["key"] for f in new],
            "rework_count": int(facts.get("rework_count", 0)) + 1,
            "review_rounds": int(facts.get("review_rounds", 0)) + 1,
            "feedback_step": ctx.step_id,
        }
    )
    return {"findings": len(findings), "ignored": len(new) - len(findings), "pull_request": pr.get("number")}
