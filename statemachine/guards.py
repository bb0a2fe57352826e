"""Pure predicates over a snapshot taken once per step; each returns a Verdict (ok, reason, evidence)."""

from __future__ import annotations

from statemachine.globs import BUILTIN_BLOCKED_PATHS, first_match
from statemachine.model import Snapshot, Verdict


def issue_open(snap: Snapshot) -> Verdict:
    """The issue is open."""
    if snap.issue.is_open:
        return Verdict.passed(f"issue #{snap.issue.number} is open")
    return Verdict.failed(f"issue #{snap.issue.number} is {snap.issue.state}")


def preconditions_met(snap: Snapshot) -> Verdict:
    """Everything a run needs that can be checked without the tracker is in place (checked before the claim)."""
    if snap.preflight is None:
        return Verdict.failed("the run's preconditions were not checked")
    if snap.preflight:
        return Verdict.failed(f"a run would fail after its claim: {snap.preflight[0]}", *snap.preflight)
    return Verdict.passed("a commit to start from, a base branch, and prompt templates that render")


def claim_expired(snap: Snapshot) -> Verdict:
    """Another run holds the issue's claim but stopped renewing its lease (cancelled, timed out, its machine lost)."""
    info = snap.claim
    if info is None:
        return Verdict.failed(
            f"issue #{snap.issue.number} is not held by a run that could have stopped "
            f"(it lacks {snap.label('running')}, or the tracker serves one runner only)"
        )
    run = info.get("run_id")
    if run is None:
        return Verdict.failed(f"no run holds a claim on issue #{snap.issue.number}")
    age, lease = info.get("age_seconds"), info.get("lease_seconds")
    evidence = (f"claim by run {run}", f"lease renewed at {info.get('renewed_at')}", f"lease: {lease} s")
    if not info.get("expired"):
        return Verdict.failed(
            f"run {run} holds the claim and renewed its lease {age} s ago (lease {lease} s)", *evidence
        )
    return Verdict.passed(
        f"run {run} last renewed its claim {age} s ago, longer than the lease of {lease} s: it stopped", *evidence
    )


def has_label(snap: Snapshot, label: str) -> Verdict:
    """The issue carries the label of this role."""
    name = snap.label(label)
    if name in snap.issue.labels:
        return Verdict.passed(f"issue carries {name}")
    return Verdict.failed(f"issue lacks {name}", "labels: " + (", ".join(snap.issue.labels) or "(none)"))


def label_authorized(snap: Snapshot, label: str) -> Verdict:
    """The label was applied by a user with write, maintain or admin permission on the repository."""
    name = snap.label(label)
    if name not in snap.issue.labels:
        return Verdict.failed(f"issue lacks {name}")
    info = snap.authority.get(name)
    if info is None:
        return Verdict.failed(f"who applied {name} is unknown")
    actor, permission = info.get("actor"), info.get("permission")
    if permission in ("admin", "maintain", "write"):
        return Verdict.passed(f"{name} was applied by {actor} ({permission})")
    return Verdict.failed(
        f"{name} was applied by {actor or 'an unknown user'}, whose permission is {permission}: "
        "only write, maintain or admin counts",
        f"actor: {actor}",
        f"permission: {permission}",
    )


def text_as_authorized(snap: Snapshot, label: str) -> Verdict:
    """The issue's title and body are the text a user with write permission authorized: unchanged since the claim,
    or edited after the label was applied only by users with write, maintain or admin permission."""
    name = snap.label(label)
    if name not in snap.issue.labels:
        return Verdict.failed(f"issue lacks {name}")
    info = (snap.text or {}).get(name)
    if info is None:
        return Verdict.failed(f"who edited issue #{snap.issue.number} after {name} was applied is unknown")
    if info.get("unchanged"):
        return Verdict.passed("the issue's title and body are as authorized when the run claimed it")
    if info.get("deferred"):  # orch status over many issues: a listing fires nothing, and the claim reads the history
        return Verdict.passed("who edited the issue is not read in bulk; the claim checks it")
    by = info.get("labeled_by") or "an unknown user"
    after = [e for e in info.get("edits", ()) if e.get("after_label")]
    evidence = [f"{e['part']} edited by {e['editor']} ({e.get('permission')}) at {e['at']}" for e in after]
    bad = [e for e in after if e.get("permission") not in WRITE_PERMISSIONS]
    if bad:
        e = bad[0]
        return Verdict.failed(
            f"the issue {e['part']} was edited by {e['editor']} ({e.get('permission')}) after {by} "
            f"authorized it with {name}; a maintainer re-approves by removing and re-applying the label",
            *evidence,
            f"{name} applied by {by} at {info.get('labeled_at') or '?'}",
        )
    if after:
        return Verdict.passed(
            f"the issue was edited after {by} applied {name} only by users with write permission", *evidence
        )
    return Verdict.passed(f"the issue was not edited after {by} applied {name}")


def has_any_label(snap: Snapshot, labels: list[str]) -> Verdict:
    """The issue carries at least one of the labels of these roles."""
    names = [snap.label(role) for role in labels]
    present = [n for n in names if n in snap.issue.labels]
    if present:
        return Verdict.passed("issue carries " + ", ".join(present))
    return Verdict.failed("issue carries none of " + ", ".join(names))


def lacks_labels(snap: Snapshot, labels: list[str]) -> Verdict:
    """The issue carries none of the labels of these roles."""
    return has_any_label(snap, labels).negated()


def _seconds(value: float | None) -> str:
    return "?s" if value is None else f"{value:g}s"


def agent_succeeded(snap: Snapshot) -> Verdict:
    """The agent exited 0, within its total and idle timeouts."""
    agent = snap.run.agent
    if agent is None:
        return Verdict.failed("the agent has not run")
    log = f"log: {agent.log or '?'}"
    if agent.timed_out:
        return Verdict.failed(f"the agent was stopped after {_seconds(agent.timeout_seconds)} (total timeout)", log)
    if agent.idle_timed_out:
        return Verdict.failed(
            f"the agent was stopped after {_seconds(agent.idle_timeout_seconds)} without output (idle timeout)", log
        )
    if agent.error:
        return Verdict.failed(f"the agent could not run: {agent.error}")
    if agent.exit_code != 0:
        return Verdict.failed(f"the agent exited with code {agent.exit_code}", log)
    return Verdict.passed(f"the agent exited 0 after {agent.duration_seconds:.1f}s", log)


def report_valid(snap: Snapshot) -> Verdict:
    """The completion report exists and matches its schema."""
    if snap.run.report is None:
        return Verdict.failed(snap.run.report_error or "no completion report")
    return Verdict.passed("the completion report matches schemas/completion-report.schema.json")


def report_completed(snap: Snapshot) -> Verdict:
    """The report says completed and lists no prohibited action."""
    report = snap.run.report
    if report is None:
        return Verdict.failed("no valid completion report")
    status = report.get("status")
    prohibited = report.get("prohibited_actions") or []
    if prohibited:
        return Verdict.failed(f"the agent reports {len(prohibited)} prohibited action(s)", *map(str, prohibited))
    if status == "completed":
        return Verdict.passed("the agent reports the work completed")
    return Verdict.failed(f"the agent reports status {status!r}", str(report.get("summary", ""))[:500])


def report_matches_changes(snap: Snapshot) -> Verdict:
    """The report's changed_files equal the change set the runner observed."""
    report, changes = snap.run.report, snap.run.changes
    if report is None or changes is None:
        return Verdict.failed("needs both a valid report and the captured change set")
    claimed = {str(p).removeprefix("./") for p in report.get("changed_files", [])}  # not lstrip: "./.env" is ".env"
    observed = {c.path for c in changes}
    missing, extra = sorted(observed - claimed), sorted(claimed - observed)
    if not missing and not extra:
        return Verdict.passed(f"the report lists exactly the {len(observed)} changed file(s)")
    evidence = []
    if missing:
        evidence.append("changed but not reported: " + ", ".join(missing))
    if extra:
        evidence.append("reported but not changed: " + ", ".join(extra))
    return Verdict.failed("the report's changed_files differ from the observed change set", *evidence)


def has_changes(snap: Snapshot) -> Verdict:
    """The change set is not empty (unless gates.require_changes is false)."""
    changes = snap.run.changes
    if changes is None:
        return Verdict.failed(snap.run.capture_error or "the change set was not captured")
    if changes:
        return Verdict.passed(f"{len(changes)} file(s) changed")
    if not snap.settings.get("gates", {}).get("require_changes", True):
        return Verdict.passed("no change, and gates.require_changes is false")
    return Verdict.failed("the agent changed nothing")


def no_blocked_paths(snap: Snapshot, paths: list[str] | None = None) -> Verdict:
    """No change touches a blocked path (built-in globs, gates.blocked_paths, and `paths`)."""
    changes = snap.run.changes
    if changes is None:
        return Verdict.failed("the change set was not captured")
    patterns = (
        tuple(BUILTIN_BLOCKED_PATHS)
        + tuple(snap.settings.get("gates", {}).get("blocked_paths", []))
        + tuple(paths or ())
    )
    hits = []
    for change in changes:
        for candidate in filter(None, (change.path, change.old_path)):
            pattern = first_match(candidate, patterns)
            if pattern:
                hits.append(f"{candidate} matches {pattern}")
    if hits:
        return Verdict.failed(hits[0], *hits)
    return Verdict.passed(f"no change touches the {len(patterns)} blocked path glob(s)")


def within_size_limits(snap: Snapshot) -> Verdict:
    """The change stays within gates.max_changed_files and gates.max_changed_lines."""
    changes = snap.run.changes
    if changes is None:
        return Verdict.failed("the change set was not captured")
    gates = snap.settings.get("gates", {})
    max_files, max_lines = gates.get("max_changed_files"), gates.get("max_changed_lines")
    lines = snap.run.changed_lines
    if max_files is not None and len(changes) > max_files:
        return Verdict.failed(f"{len(changes)} files changed, more than gates.max_changed_files={max_files}")
    if max_lines is not None and lines > max_lines:
        return Verdict.failed(f"{lines} lines changed, more than gates.max_changed_lines={max_lines}")
    return Verdict.passed(f"{len(changes)} file(s), {lines} line(s) changed, within limits")


def checks_passed(snap: Snapshot) -> Verdict:
    """Every configured check exited 0 on the candidate commit."""
    checks = snap.run.checks
    if checks is None:
        return Verdict.failed("the checks have not run")
    failed = [
        f"{name}: " + ("timed out" if r.timed_out else f"exit {r.exit_code}") + f" (output: {r.log or '?'})"
        for name, r in checks.items()
        if r.exit_code != 0 or r.timed_out
    ]
    if failed:
        return Verdict.failed(f"{len(failed)} of {len(checks)} check(s) failed", *failed)
    return Verdict.passed(f"all {len(checks)} check(s) passed", *sorted(checks))


def proof_required(snap: Snapshot) -> Verdict:
    """The policy requires acceptance proof for this issue (labels, paths, or criteria)."""
    proof = snap.settings.get("proof", {})
    wanted = [snap.label(x) for x in proof.get("labels", [])]
    hit = [n for n in wanted if n in snap.issue.labels]
    if hit:
        return Verdict.passed("proof required by label " + hit[0])
    for change in snap.run.changes or ():
        pattern = first_match(change.path, tuple(proof.get("paths", [])))
        if pattern:
            return Verdict.passed(f"proof required: {change.path} matches {pattern}")
    if proof.get("when_acceptance_criteria") and snap.run.acceptance_criteria:
        return Verdict.passed("proof required: the issue has acceptance criteria")
    return Verdict.failed("the policy requires no proof for this issue")


def proof_passed(snap: Snapshot) -> Verdict:
    """The proof report passed the runner's checks."""
    proof = snap.run.proof
    if proof is None:
        return Verdict.failed("no proof result")
    if proof.error:
        return Verdict.failed(f"proof rejected: {proof.error}", *[str(f) for f in proof.findings[:10]])
    if proof.status == "passed":
        return Verdict.passed("proof passed for every criterion", f"evidence: {proof.dir_rel or proof.dir or '?'}")
    return Verdict.failed(f"proof status is {proof.status!r}")


def proof_needs_rework(snap: Snapshot) -> Verdict:
    """The proof run asks for rework with findings."""
    proof = snap.run.proof
    if proof is not None and not proof.error and proof.status == "needs-rework":
        return Verdict.passed("proof asks for rework", *proof.findings)
    return Verdict.failed("proof does not ask for rework")


def within_rework_limit(snap: Snapshot) -> Verdict:
    """Fewer rework iterations than limits.rework_iterations have been used."""
    limit = int(snap.settings.get("limits", {}).get("rework_iterations", 0))
    used = snap.run.rework_count
    if used < limit:
        return Verdict.passed(f"rework {used + 1} of at most {limit}")
    return Verdict.failed(f"rework budget spent: {used} of {limit} iteration(s) used")


WRITE_PERMISSIONS = ("admin", "maintain", "write")


def review_feedback(snap: Snapshot) -> Verdict:
    """The run's pull request has new review feedback (changes requested, or review comments) from a user with write permission."""
    handled = set(snap.run.feedback_handled)
    new = [f for f in snap.feedback if f["key"] not in handled]
    trusted = [f for f in new if f.get("permission") in WRITE_PERMISSIONS]
    ignored = [
        f"ignored {f['kind']} by {f['author']} (permission {f.get('permission')}): only write, maintain or admin counts"
        for f in new
        if f.get("permission") not in WRITE_PERMISSIONS
    ]
    if trusted:
        who = sorted({f["author"] for f in trusted})
        return Verdict.passed(
            f"{len(trusted)} new review item(s) from {', '.join(who)}",
            *[f"{f['kind']} by {f['author']}: {str(f.get('body', ''))[:200]}" for f in trusted],
            *ignored,
        )
    if snap.run.pull_request is None:
        return Verdict.failed("the run has no pull request to review")
    if ignored:
        return Verdict.failed("no new review feedback from a user with write permission", *ignored)
    return Verdict.failed("no new review feedback on the pull request")


def within_budget(snap: Snapshot) -> Verdict:
    """Another agent run stays within limits.budget: what today's runs (UTC, this repository) and this issue's runs
    spent is below every cap set (tokens, agent minutes, agent runs)."""
    from statemachine.ledger import describe, exhausted, usage_of

    budget = snap.settings.get("limits", {}).get("budget") or {}
    if not any(v is not None for k, v in budget.items() if k.endswith(("_per_day", "_per_issue"))):
        return Verdict.passed("no budget is set (limits.budget)")
    usage = snap.budget
    if usage is None:
        return Verdict.failed("what the agent runs spent was not read")
    spent = exhausted(budget, usage)
    day, mine = usage_of(usage.get("day") or {}), usage_of(usage.get("issue") or {})
    evidence = (
        f"today, {usage.get('date', '?')} UTC: {describe(day, budget, 'per_day')}",
        f"issue #{snap.issue.number}: {describe(mine, budget, 'per_issue')}",
    )
    if spent:
        return Verdict.failed(spent[0], *spent[1:], *evidence)
    return Verdict.passed("within budget", *evidence)
