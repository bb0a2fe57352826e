"""Effects on the tracker: the run's start, labels, the claim (and taking over an expired one), the draft pull
request and the report comment. Every body people read is rendered by statemachine/reporting.py."""

from __future__ import annotations

from typing import Any

from statemachine import reporting
from statemachine.actions.context import ActionContext, _names
from statemachine.errors import ClaimLost, OrchError


def start_run(ctx: ActionContext) -> dict[str, Any]:
    """Open a new run record bound to this claim (its id is fixed by the step, so a retry reuses it)."""
    run_id = f"{ctx.issue}-{ctx.nonce[:10]}"
    ctx.store.set_run(ctx.issue, run_id)
    ctx.run_id = run_id
    ctx.set_fact("issue", {"number": ctx.issue, "title": ctx.snapshot.issue.title})
    # the text the claim's guards judged: every prompt of the run renders it, whatever is edited later
    ctx.set_fact("authorized_text", {"title": ctx.snapshot.issue.title, "body": ctx.snapshot.issue.body})
    if ctx.snapshot.parent is not None:  # a child: remember which run of its parent dispatched it
        ctx.set_fact("parent", ctx.snapshot.parent)
    ctx.evidence_dir()
    return {"run_id": run_id}


def add_labels(ctx: ActionContext, labels: list[str]) -> dict[str, Any]:
    """Add labels (by role) to the issue."""
    names = _names(ctx, labels)
    ctx.tracker.add_labels(ctx.issue, names)
    return {"added": names}


def remove_labels(ctx: ActionContext, labels: list[str]) -> dict[str, Any]:
    """Remove labels (by role) from the issue."""
    names = _names(ctx, labels)
    ctx.tracker.remove_labels(ctx.issue, names)
    return {"removed": names}


def relabel(ctx: ActionContext, remove: list[str], add: list[str]) -> dict[str, Any]:
    """Remove and add labels (by role) in one write: the issue's labels as this run knows them, changed."""
    gone, new = _names(ctx, remove), _names(ctx, add)
    current = ctx.tracker.get_issue(ctx.issue, comments=False).labels  # a run's own read, kept true under its edits
    wanted = [n for n in current if n not in gone] + [n for n in new if n not in current]
    ctx.tracker.set_labels(ctx.issue, wanted)
    return {"removed": gone, "added": new}


def post_comment(ctx: ActionContext, kind: str) -> dict[str, Any]:
    """Post a comment of a fixed kind (claim), at most once per run."""
    marker = ctx.marker(kind)
    existing = ctx.find_comment(marker)
    if existing is not None:
        return {"comment": existing.id, "reused": True}
    body = reporting.claim_comment(ctx.require_run(), ctx.policy) + "\n\n" + marker
    comment = ctx.tracker.post_comment(ctx.issue, body)
    return {"comment": comment.id, "reused": False}


CLAIM_READBACK_SECONDS = 60.0  # how long a runner waits for its own claim to show in a lagging comment list


def claim_issue(ctx: ActionContext, settle_seconds: float | None = None) -> dict[str, Any]:
    """Claim across machines: post a claim marker bound to the run, read the issue back, the earliest active claim wins.

    Only markers the runner's identity wrote count (``tracker.identity()``): a claim or report marker in anyone
    else's comment neither blocks nor ends a claim. A claim is active when no run-ending report follows it.
    The comment list may lag: until the runner sees its own claim in it, it reads the list again (jittered
    backoff, at most ``CLAIM_READBACK_SECONDS``), because a list that does not show its own claim proves
    nothing about earlier ones. The loser deletes its own marker and raises ClaimLost, so the step is aborted
    and leaves no trace. Protocol: docs/github.md.
    """
    import random
    import time

    from statemachine import claims, preflight

    run_id = ctx.require_run()
    me = ctx.tracker.identity()  # learned before the first effect: a token that cannot say who it is claims nothing
    mine = f"<!-- orch:claim run={run_id} -->"
    if ctx.first_try:  # before the claim's first effect, whatever the policy (this step's snapshot may hold it)
        preflight.require(
            ctx.repo, ctx.policy.config.tracker.base_branch, ctx.git, ctx.policy, ctx.sandbox, ctx.snapshot.preflight
        )
    existing = ctx.find_comment(mine)
    if existing is None:
        body = reporting.claim_comment(run_id, ctx.policy) + "\n\n" + mine
        if ctx.tracker.capabilities.fleet:
            ctx.lease_written = time.time()
            body = claims.renewed_body(
                body, ctx.lease_written
            )  # the lease starts now; the run renews it while it works
        existing = ctx.tracker.post_comment(ctx.issue, body)
    if settle_seconds is None:
        settle_seconds = ctx.policy.config.tracker.claim_settle_seconds
    if settle_seconds:
        time.sleep(settle_seconds)
    deadline, attempt = time.monotonic() + CLAIM_READBACK_SECONDS, 0
    while True:
        comments = ctx.tracker.list_comments(ctx.issue)
        if any(c.id == existing.id for c in comments) or time.monotonic() >= deadline:
            break
        ceiling = min(4.0, 0.25 * 2**attempt)  # the list lags: read it again once it may show our claim
        time.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))
        attempt += 1
    active = claims.active_claims(comments, me)
    seen_at = ctx.snapshot.issue.updated_at  # the tracker's clock when this step's snapshot was taken
    # a run ended after our snapshot: what we decided from it is stale, so this claim cannot win. A takeover report
    # (another runner ending an expired claim) is not such an end: it ends that one claim, and the earliest active
    # claim after it still wins.
    stale = any(kind != claims.ABANDONED for _run, kind, _by in claims.reports_after(comments, me, seen_at))
    if stale or not active or active[0].run_id != run_id:
        winner = (
            "a run that finished after this runner looked"
            if stale
            else (active[0].run_id if active else "unknown (the runner's own claim never showed in the comment list)")
        )
        ctx.tracker.delete_comment(ctx.issue, existing.id)
        raise ClaimLost(
            f"issue #{ctx.issue} was claimed first by run {winner}; this runner backs off",
            "nothing to do: the other runner owns the issue",
        )
    ctx.set_fact("claim", {"comment": existing.id, "run_id": run_id})  # the run renews this comment's lease as it works
    ctx.set_fact("claimed_at", existing.created_at)  # review feedback older than this run is not this run's to handle
    ctx.set_fact(
        "issue_comments",
        [
            {"id": c.id, "author": c.author, "body": c.body, "created_at": c.created_at, "trusted": c.trusted}
            for c in comments
            if "<!-- orch:" not in c.body
        ],
    )
    return {"comment": existing.id, "run_id": run_id}


def take_over_claim(ctx: ActionContext) -> dict[str, Any]:
    """End the expired claim of a run that stopped (cancelled, timed out, machine lost) with a takeover report, so
    that this run can claim the issue; the report names both runs. Only ``claim_expired`` leads here."""
    from statemachine import claims

    run_id = ctx.require_run()
    held = ctx.snapshot.claim or {}
    old = held.get("run_id")
    if not old or not held.get("expired"):
        raise OrchError(
            f"issue #{ctx.issue}: no expired claim to take over",
            "this action follows the claim_expired guard; check the policy's lifecycle",
        )
    marker = claims.abandon_marker(str(old), run_id)
    existing = ctx.find_comment(marker)
    if existing is None:
        body = (
            reporting.takeover_comment(str(old), run_id, held.get("renewed_at"), held.get("lease_seconds"))
            + "\n\n"
            + marker
        )
        existing = ctx.tracker.post_comment(ctx.issue, body)
    ctx.set_fact("took_over", {"run_id": old, "renewed_at": held.get("renewed_at"), "comment": existing.id})
    return {"comment": existing.id, "took_over": old}


def open_draft_pr(ctx: ActionContext) -> dict[str, Any]:
    """Open a draft pull request for the run's branch, found by its marker if it already exists."""
    from statemachine.proof import pull_section

    facts = ctx.facts()
    marker = ctx.marker("pull-request")
    issue = ctx.snapshot.issue
    title = ctx.policy.config.pr_title_template.format(number=issue.number, title=issue.title)
    if facts.get("plan"):  # a parent: the tree and its children
        body = reporting.parent_pull_body(issue.number, ctx.require_run(), facts)
    else:
        body = reporting.pull_body(
            issue.number, ctx.require_run(), facts, pull_section(facts)
        )  # proof: empty unless proved
    body += "\n\n" + marker
    # create_pull is find-or-create by the marker on every tracker: a retry never opens a second one
    existing = ctx.tracker.create_pull(
        issue.number,
        title,
        body,
        facts["branch"],
        facts["base_branch"],
        facts["head_sha"],
        facts["base_sha"],
        marker,
        first_attempt=ctx.first_try,
    )
    pr = {
        "number": existing.number,
        "url": existing.url,
        "head": existing.head,
        "base": existing.base,
        "draft": existing.draft,
    }
    ctx.set_fact("pull_request", pr)
    return pr


def post_report(ctx: ActionContext, outcome: str) -> dict[str, Any]:
    """Post the run's report comment (review or blocked) once, with the evidence summarized."""
    if ctx.run_id is None:
        ctx.run_id = ctx.snapshot.run.run_id
    marker = ctx.marker(f"report-{outcome}-{ctx.step_id}")
    existing = ctx.find_comment(marker)
    if existing is not None:
        return {"comment": existing.id, "reused": True}
    body = ctx.secrets.redact(reporting.report_comment(ctx, ctx.facts(), outcome) + "\n\n" + marker)
    (ctx.evidence_dir() / "summary.md").write_text(body)  # first: a crash after posting must not lose it
    comment = ctx.tracker.post_comment(ctx.issue, body)
    return {"comment": comment.id, "reused": False}
