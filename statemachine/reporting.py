"""Renders every body people read: the claim and takeover comments, the draft pull request body (a run's or a
parent's), the report comment, the plan comment, the child issues' bodies and the handover comments.

Pure text from facts: no port, no store. The actions (statemachine/actions/) post what these return, each with its
hidden marker appended; the proof's section of a pull request is rendered by proof.py and passed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statemachine import planning


def claim_comment(run_id: str, policy: Any) -> str:
    return (
        f"orch claimed this issue (run `{run_id}`) and is working on it. "
        f"It will open a draft pull request or explain why it stopped; "
        f"while it works the issue carries `{policy.label('running')}`."
    )


def takeover_comment(old_run: str, new_run: str, renewed_at: Any, lease_seconds: Any) -> str:
    return (
        f"Run `{old_run}` stopped renewing its claim (last renewed {renewed_at}; the lease is {lease_seconds} s): "
        f"it was cancelled, timed out or lost its machine. Run `{new_run}` takes the issue over and starts again "
        "from the base branch; a draft pull request the earlier run opened is reused."
    )


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


def _failed_verdicts(evaluations: list[dict[str, Any]], keep: Any = lambda ev: True) -> list[str]:
    """The failed guards of the transitions the step tried before the one it fired, of those ``keep`` keeps."""
    lines = []
    for ev in evaluations:
        if ev.get("would_fire"):
            break
        if not keep(ev):
            continue
        for g in ev.get("guards", []):
            if not g["verdict"]["ok"]:
                text = f"- `{ev['trigger']}` → {ev['dest']}: `{g['guard']}`: {g['verdict']['reason']}"
                if g["verdict"]["evidence"]:
                    text += " (" + "; ".join(g["verdict"]["evidence"][:3]) + ")"
                lines.append(text)
    return lines


def _finding_lines(finding: str, max_lines: int = 20) -> list[str]:
    """One finding: its first line, then the rest (a check's output tail) as a code block, at most ``max_lines``."""
    first, *rest = finding.splitlines() or [""]
    rest = rest[-max_lines:]
    while rest and not rest[-1].strip():
        rest.pop()
    if not rest:
        return [f"- {first}"]
    import re

    longest = max((len(m.group(0)) for line in rest for m in re.finditer(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)  # longer than any run of backticks in the output: it cannot close the block
    return [f"- {first}", "", f"  {fence}text", *[f"  {line}" for line in rest], f"  {fence}"]


def blocked_lead(ctx: Any, facts: dict[str, Any]) -> str:
    """The one line that leads the blocked report, as `orch explain` leads with it (statemachine/lead.py)."""
    from statemachine import lead
    from statemachine.errors import OrchError

    fired = next((ev for ev in ctx.evaluations if ev.get("would_fire")), None)
    try:  # the labels as the step left them (a run's own read, kept by tracker_cache: no request of its own)
        labels = tuple(ctx.tracker.get_issue(ctx.issue, comments=False).labels)
    except (OrchError, OSError):
        labels = tuple(ctx.snapshot.issue.labels)
    issue = lead.Issue(
        ctx.issue,
        labels,
        ctx.policy.config.tracker.kind == "local",
        ctx.run_id,
        int(facts.get("rework_count", 0)) + 1,
    )
    state = str(fired["dest"]) if fired else "blocked"
    return lead.lead(ctx.policy, state, issue, None, ctx.evaluations).summary


def _footer(run_id: str, facts: dict[str, Any]) -> str:
    return (
        f"Run `{run_id}`, {facts.get('changed_lines', 0)} line(s) changed. "
        "Opened as a draft by orch; a maintainer reviews and merges."
    )


def pull_body(number: int, run_id: str, facts: dict[str, Any], proof_section: Sequence[str] = ()) -> str:
    """A run's draft pull request: what it closes, the agent's summary, the checks, the changes, the residual risks
    and ``proof_section`` (proof.pull_section: empty unless the run was proved)."""
    report = facts.get("report") or {}
    parts = [
        f"Closes #{number}",
        "",
        "## Summary",
        quote_markers(str(report.get("summary", "(no summary)")).strip()),
        "",
        "## Checks",
        *_checks_lines(facts),
        "",
        "## Changes",
        *_changes_lines(facts),
    ]
    risks = report.get("residual_risks") or []
    if risks:
        parts += ["", "## Residual risks", *[f"- {quote_markers(str(r))}" for r in risks]]
    parts += proof_section
    parts += ["", _footer(run_id, facts)]
    return "\n".join(parts)


def parent_pull_body(number: int, run_id: str, facts: dict[str, Any]) -> str:
    """The parent's pull request: the tree, each child's summary and evidence, and what it closes."""
    plan, tree = facts["plan"], facts["plan_tree"]
    closes = [f"Closes #{number}"] + [f"Closes #{tree[c['key']]['issue']}" for c in planning.ordered(plan)]
    parts = [
        *closes,
        "",
        "## Plan",
        quote_markers(str(plan.get("summary", "")).strip()),
        "",
        *planning.checklist(plan, tree),
        "",
        "## Children",
    ]
    for c in planning.ordered(plan):
        node = tree[c["key"]]
        parts += [
            "",
            f"### #{node['issue']} {c['title']} (`{c['key']}`)",
            quote_markers(str(node.get("summary") or "(no summary)")),
            f"Evidence: `.orch/runs/{node.get('run_id', '?')}/`; merged as {str(node.get('merge_sha', '?'))[:12]}.",
        ]
    parts += [
        "",
        "## Checks on the integration branch",
        *_checks_lines(facts),
        "",
        "## Changes",
        *_changes_lines(facts),
    ]
    # the plan's and the children's words are the planner's and the agents': only the footer is orch's marker
    return quote_markers("\n".join(parts)) + "\n\n" + _footer(run_id, facts)


def plan_comment(run_id: str, facts: dict[str, Any]) -> str:
    """The parent's plan as a checklist: its children, their waves, and where they merge."""
    plan = facts["plan"]
    lines = [
        f"orch planned this issue into {len(plan['children'])} child issue(s) (run `{run_id}`); "
        f"they run in waves and merge into `{facts['integration_branch']}`, then one draft pull request follows.",
        "",
        str(plan.get("summary", "")).strip(),
        "",
        *planning.checklist(plan, facts["plan_tree"]),
    ]
    dropped = facts.get("dropped_children") or {}
    if dropped:
        lines += [
            "",
            "No longer in the plan (left as they are): " + ", ".join(f"#{n} `{k}`" for k, n in sorted(dropped.items())),
        ]
    return quote_markers("\n".join(lines))  # the plan is the planner's words


def child_body(parent: int, child: dict[str, Any], numbers: dict[str, int]) -> str:
    """The child issue's body: the work, its acceptance criteria and ownership, and the hidden binding marker."""
    deps = [f"#{numbers[d]} (`{d}`)" if d in numbers else f"`{d}`" for d in child.get("depends_on", [])]
    parts = [
        child.get("body", "").strip() or child["title"],
        "",
        "### Acceptance criteria",
        "",
        *[f"- {a}" for a in child["acceptance_criteria"]],
        "",
        "Ownership:",
        *[f"- {g}" for g in child["ownership"]],
        "",
        f"Part of #{parent} (planned by orch; size {child['size']})."
        + (f" Depends on {', '.join(deps)}." if deps else ""),
    ]
    # the work is the planner's words: a binding marker in them is defused, only orch's own below binds the child
    return quote_markers("\n".join(parts)) + "\n\n" + planning.child_marker(parent, child["key"])


def handover_comment(parent: int, integration_branch: str, pr: dict[str, Any]) -> str:
    """On a child once its parent's pull request is open: where its work is reviewed."""
    return (
        f"Merged into `{integration_branch}` with the rest of #{parent}; "
        f"review it in draft pull request #{pr.get('number', '?')} ({pr.get('url', '')})."
    )


def ci_note(ctx: Any) -> str | None:
    """One line when orch acts as the Actions job token: the pull request it opened runs no CI, and the fix."""
    from statemachine.errors import OrchError

    try:
        caveat = ctx.tracker.pull_request_caveat()
    except (OrchError, OSError):  # the note is advice: never let it stop the report
        return None
    return f"Note: {caveat}." if caveat else None


def _usage_lines(ctx: Any) -> list[str]:
    """What the run's agent runs spent (the usage ledger): runs, minutes, tokens, and the cost when limits.budget
    sets a price."""
    from statemachine import ledger

    if not ctx.run_id:
        return []
    budget = ctx.policy.config.budget.as_dict()
    used = ledger.run_usage(ctx.store, ctx.run_id, ctx.issue, budget)
    return ["", "## Usage", f"- this run: {ledger.describe(ledger.usage_of(used['total']), budget)}"]


def report_comment(ctx: Any, facts: dict[str, Any], outcome: str) -> str:
    run_id = ctx.run_id or "?"
    if outcome == "review":
        pr = facts.get("pull_request") or {}
        head = [
            f"orch finished run `{run_id}`: draft pull request #{pr.get('number', '?')} ({pr.get('url', '')}) is ready for review."
        ]
        ci = ci_note(ctx)
        if ci:
            head.append(ci)
    elif outcome == "passed":
        parent = facts.get("parent") or {}
        head = [
            f"orch finished run `{run_id}`: every gate passed. Parent #{parent.get('number', '?')} merges this commit "
            f"(`{str(facts.get('head_sha', '?'))[:12]}`) into `{parent.get('integration_branch', '?')}`; "
            "one draft pull request for the parent follows."
        ]
    else:
        from statemachine import lead

        kinds = lead.issue_kinds(ctx.policy, ctx.snapshot.issue.labels)
        why = _failed_verdicts(ctx.evaluations, lambda ev: lead.applies(ctx.policy, ev, kinds))
        head = [
            f"**{blocked_lead(ctx, facts)}**",
            "",
            f"orch stopped run `{run_id}` and marked this issue blocked. Evidence is kept under `.orch/runs/{run_id}/`.",
            "",
            "## Why",
            *(why or ["- (no guard recorded a reason)"]),
        ]
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
            head += [
                "",
                f"## History: {rework} rework iteration(s); the last findings were",
                *[line for f in facts.get("findings", []) for line in _finding_lines(str(f))],
            ]
    plan = facts.get("plan")
    if plan and facts.get("plan_tree"):
        head += ["", "## The tree", *planning.checklist(plan, facts["plan_tree"])]
    elif facts.get("plan_problems"):
        head += ["", "## The plan", *[f"- {p}" for p in facts["plan_problems"]]]
    report = facts.get("report") or ({"summary": plan.get("summary", "")} if plan else {})
    body = "\n".join(
        [
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
            *_usage_lines(ctx),
        ]
    )
    # the agent's words and its checks' output are quoted here: a marker in them must not read as orch's own
    return quote_markers(body)


def quote_markers(text: str) -> str:
    """Agent-written text as it may appear in a comment or pull request body: an orch marker in it is defused, so
    that only the runner's own footer reads as orch's."""
    return text.replace("<!-- orch:", "<!-- quoted orch:")
