"""Renders what people read: the claim comment, the draft pull request body and the report comment."""

from __future__ import annotations

from typing import Any


def claim_comment(run_id: str, policy: Any) -> str:
    return (f"orch claimed this issue (run `{run_id}`) and is working on it. "
            f"It will open a draft pull request or explain why it stopped; "
            f"while it works the issue carries `{policy.label('running')}`.")


def takeover_comment(old_run: str, new_run: str, renewed_at: Any, lease_seconds: Any) -> str:
    return (f"Run `{old_run}` stopped renewing its claim (last renewed {renewed_at}; the lease is {lease_seconds} s): "
            f"it was cancelled, timed out or lost its machine. Run `{new_run}` takes the issue over and starts again "
            "from the base branch; a draft pull request the earlier run opened is reused.")


def _checks_lines(facts: dict[str, Any]) -> list[str]:
    checks = facts.get("checks")
    if checks is None:
        return ["- (not run)"]
    if not checks:
        return ["- (no checks configured)"]
    lines = []
    for name, r in sorted(checks.items()):
        ok = r.get("exit_code") == 0 and not r.get("timed_out")
        lines.append(f"- {'passed' if ok else 'FAILED'}: `{name}` (`{r.get('command')}`)")
    return lines


def _changes_lines(facts: dict[str, Any]) -> list[str]:
    changes = facts.get("changes") or []
    return [f"- `{c['status']}` {c['path']}" for c in changes] or ["- (none)"]


def _failed_verdicts(evaluations: list[dict[str, Any]]) -> list[str]:
    lines = []
    for ev in evaluations:
        for g in ev.get("guards", []):
            if not g["verdict"]["ok"]:
                text = f"- `{ev['trigger']}` → {ev['dest']}: `{g['guard']}`: {g['verdict']['reason']}"
                if g["verdict"]["evidence"]:
                    text += " (" + "; ".join(g["verdict"]["evidence"][:3]) + ")"
                lines.append(text)
    return lines


def pull_body(ctx: Any, facts: dict[str, Any]) -> str:
    issue = ctx.snapshot.issue
    report = facts.get("report") or {}
    parts = [
        f"Closes #{issue.number}",
        "",
        "## Summary",
        report.get("summary", "(no summary)").strip(),
        "",
        "## Checks",
        *_checks_lines(facts),
        "",
        "## Changes",
        *_changes_lines(facts),
    ]
    risks = report.get("residual_risks") or []
    if risks:
        parts += ["", "## Residual risks", *[f"- {r}" for r in risks]]
    from statemachine.proof import pull_section

    parts += pull_section(facts)  # empty unless the run was proved
    parts += ["", f"Run `{ctx.require_run()}`, {facts.get('changed_lines', 0)} line(s) changed. "
              "Opened as a draft by orch; a maintainer reviews and merges."]
    return "\n".join(parts)


def ci_note(ctx: Any) -> str | None:
    """One line when orch acts as the Actions job token: the pull request it opened runs no CI, and the fix."""
    from statemachine.adapters.github import CI_FIX, job_token_ci_warning

    from statemachine.errors import OrchError

    identity = getattr(ctx.tracker, "identity", None)
    try:
        login = identity() if callable(identity) else None
    except (OrchError, OSError):  # the note is advice: never let it stop the report
        return None
    warning = job_token_ci_warning(login if isinstance(login, str) else None)
    return f"Note: {warning}; to have CI run, {CI_FIX}." if warning else None


def report_comment(ctx: Any, facts: dict[str, Any], outcome: str) -> str:
    run_id = ctx.run_id or "?"
    if outcome == "review":
        pr = facts.get("pull_request") or {}
        head = [f"orch finished run `{run_id}`: draft pull request #{pr.get('number', '?')} ({pr.get('url', '')}) is ready for review."]
        ci = ci_note(ctx)
        if ci:
            head.append(ci)
    elif outcome == "passed":
        parent = facts.get("parent") or {}
        head = [f"orch finished run `{run_id}`: every gate passed. Parent #{parent.get('number', '?')} merges this commit "
                f"(`{str(facts.get('head_sha', '?'))[:12]}`) into `{parent.get('integration_branch', '?')}`; "
                "one draft pull request for the parent follows."]
    else:
        head = [f"orch stopped run `{run_id}` and marked this issue blocked. Evidence is kept under `.orch/runs/{run_id}/`.",
                "", "## Why", *(_failed_verdicts(ctx.evaluations) or ["- (no guard recorded a reason)"])]
        report_error = facts.get("report_error")
        if report_error:
            head.append(f"- completion report: {report_error}")
        if facts.get("plan_error"):
            head.append(f"- plan report: {facts['plan_error']}")
        questions = (facts.get("report") or {}).get("questions") or []
        if questions:
            head += ["", "## Questions from the agent", *[f"- {q}" for q in questions]]
        rework = int(facts.get("rework_count", 0))
        if rework:
            head += ["", f"## History: {rework} rework iteration(s); the last findings were",
                     *[f"- {f.splitlines()[0] if f else f}" for f in facts.get("findings", [])]]
    plan = facts.get("plan")
    if plan and facts.get("plan_tree"):
        from statemachine.planning import checklist

        head += ["", "## The tree", *checklist(plan, facts["plan_tree"])]
    elif facts.get("plan_problems"):
        head += ["", "## The plan", *[f"- {p}" for p in facts["plan_problems"]]]
    report = facts.get("report") or ({"summary": plan.get("summary", "")} if plan else {})
    return "\n".join([
        *head,
        "",
        "## Agent summary",
        str(report.get("summary", "(no report)")).strip(),
        "",
        "## Checks",
        *_checks_lines(facts),
        "",
        "## Changes",
        *_changes_lines(facts),
    ])
