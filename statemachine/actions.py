"""Effects, each reached only through the ports and made safe to repeat (find-or-create, check-then-do)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from statemachine import limits, reporting
from statemachine.adapters.jail import Jail, Spec, own_git, workspace_extras
from statemachine.errors import ClaimLost, OrchError
from statemachine.reports import load_report
from statemachine.model import Comment, Snapshot
from statemachine.ports import AgentRequest, Agent, Git, Tracker
from statemachine.secrets import SecretSet
from statemachine.store import Store


@dataclass
class ActionContext:
    """What an action may use: the ports, the store, the policy data, and this step's identity."""

    repo: Path
    policy: Any  # statemachine.policy.Policy
    store: Store
    tracker: Tracker
    git: Git
    make_agent: Callable[[], Agent]
    issue: int
    snapshot: Snapshot
    step_id: int
    nonce: str
    run_id: str | None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    first_try: bool = False  # True when the journal shows no earlier attempt of the running action
    lease_written: float = 0.0  # when this process wrote the run's claim lease stamp (wall clock; engine's freshness)

    def find_comment(self, marker: str) -> Any:
        """Our earlier comment with ``marker``; only looked up when an earlier attempt may have posted it."""
        return None if self.first_try else self.tracker.find_comment(self.issue, marker)

    @property
    def orch_dir(self) -> Path:
        return self.repo / ".orch"

    def require_run(self) -> str:
        if self.run_id is None:
            raise OrchError(f"issue #{self.issue} has no run yet", "the lifecycle must fire start_run (claim) first")
        return self.run_id

    def facts(self) -> dict[str, Any]:
        return self.store.facts(self.run_id)

    def set_fact(self, key: str, value: Any) -> None:
        self.set_facts({key: value})

    def set_facts(self, values: dict[str, Any]) -> None:
        """Several facts in one transaction: a crash leaves all of them or none. Secret values are stored redacted."""
        self.store.set_facts(self.require_run(), self.secrets.redact_json(values))

    @property
    def secrets(self) -> SecretSet:
        """The run's secret values (statemachine/secrets.py): refused in results, redacted in whatever leaves the runner."""
        from statemachine import secrets

        return secrets.for_run(self.policy.data, self.tracker)

    def __post_init__(self) -> None:
        from statemachine.secrets import RedactingTracker

        if not isinstance(self.tracker, RedactingTracker):  # every comment, issue and pull request goes out redacted
            self.tracker = RedactingTracker(self.tracker, lambda: self.secrets)

    def evidence_dir(self) -> Path:
        path = self.orch_dir / "runs" / self.require_run()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fresh_report(self, folder: str, name: str) -> Path:
        """The report path in the evidence folder ``folder`` of this run, with no stale report left in it."""
        evidence = self.evidence_dir() / folder
        evidence.mkdir(parents=True, exist_ok=True)
        report_path = evidence / name
        if report_path.exists():
            report_path.unlink()
        return report_path

    def marker(self, kind: str) -> str:
        return f"<!-- orch:run={self.require_run()} kind={kind} -->"

    @property
    def jail(self) -> Jail:
        return Jail.for_policy(self.policy.data, self.repo)


def agent_workspace(ctx: ActionContext, worktree: Path, evidence: Path, base: str, branch: str | None) -> dict[str, Path]:
    return workspace_extras(ctx.repo, ctx.jail, worktree, evidence, base, branch)


def jailed(ctx: ActionContext, command: str, worktree: Path, log: Path, timeout: float, base: str) -> Any:
    """A check's or a TDD run's shell command in the jail: its worktree writable, a git directory of its own,
    no credential, and network only to the policy's ``sandbox.network.checks`` hosts."""
    jail = ctx.jail
    spec = Spec(workdir=worktree, hosts=jail.settings.check_hosts or None, label="check")
    scratch = None
    if jail.enabled:
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="orch-checkgit-"))
        spec.gitdir = own_git(ctx.repo, worktree, scratch / "git", base, None)
        spec.writable = (scratch,)
    try:
        return jail.run(["/bin/sh", "-c", command], spec, {}, log, timeout).result
    finally:
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _with_comments(ctx: ActionContext, issue: Any) -> Any:
    """The issue as the agent may see it: its title and body as authorized at the claim (fact ``authorized_text``) and
    its comments, each trusted only when its author has write, maintain or admin permission (read once per author per
    run, fact ``author_permissions``)."""
    from dataclasses import replace

    facts = ctx.facts()
    authorized = facts.get("authorized_text")
    if authorized:
        issue = replace(issue, title=authorized["title"], body=authorized["body"])
    cached = facts.get("issue_comments") if int(facts.get("attempt", 0)) == 0 else None
    if cached is not None:  # the first attempt reuses what the claim read back seconds ago
        comments: tuple[Comment, ...] = tuple(Comment(**c) for c in cached)
    else:
        comments = tuple(ctx.tracker.list_comments(issue.number))
    known = dict(facts.get("author_permissions") or {})
    trusted, seen = trusted_comments(ctx.tracker, comments, known)
    if seen != known:
        ctx.set_fact("author_permissions", seen)
    return replace(issue, comments=trusted)


def trusted_comments(tracker: Any, comments: tuple[Comment, ...],
                     known: dict[str, str]) -> tuple[tuple[Comment, ...], dict[str, str]]:
    """``comments`` with ``trusted`` set from each author's permission (write, maintain or admin), and the permissions
    known afterwards: an author in ``known`` is not looked up again. The runner's own comments (orch markers) are
    never looked up: they never reach a prompt. ``author_association`` is not used: COLLABORATOR covers read and
    triage collaborators, MEMBER every member of the owning organization."""
    from dataclasses import replace

    from statemachine.guards import WRITE_PERMISSIONS

    seen = dict(known)
    out = []
    for c in comments:
        if "<!-- orch:" in c.body:
            out.append(replace(c, trusted=False))
            continue
        if c.author not in seen:
            seen[c.author] = tracker.permission(c.author) if c.author and c.author != "ghost" else "none"
        out.append(replace(c, trusted=seen[c.author] in WRITE_PERMISSIONS))
    return tuple(out), seen


def _names(ctx: ActionContext, roles: list[str]) -> list[str]:
    return [ctx.policy.label(r) for r in roles]


def slugify(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:limit].rstrip("-")) or "issue"


# tracker ---------------------------------------------------------------------------------

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

    from statemachine import preflight

    from statemachine import claims

    run_id = ctx.require_run()
    me = ctx.tracker.identity()  # learned before the first effect: a token that cannot say who it is claims nothing
    mine = f"<!-- orch:claim run={run_id} -->"
    if ctx.first_try:
        preflight.require(ctx.repo, ctx.policy.data, ctx.git)  # before the claim's first effect, whatever the policy
    existing = ctx.find_comment(mine)
    if existing is None:
        body = reporting.claim_comment(run_id, ctx.policy) + "\n\n" + mine
        if getattr(ctx.tracker, "fleet", False):
            ctx.lease_written = time.time()
            body = claims.renewed_body(body, ctx.lease_written)  # the lease starts now; the run renews it while it works
        existing = ctx.tracker.post_comment(ctx.issue, body)
    if settle_seconds is None:
        settle_seconds = float(ctx.policy.data["tracker"].get("claim_settle_seconds", 0))
    if settle_seconds:
        time.sleep(settle_seconds)
    deadline, attempt = time.monotonic() + CLAIM_READBACK_SECONDS, 0
    while True:
        comments = ctx.tracker.list_comments(ctx.issue)
        if any(c.id == existing.id for c in comments) or time.monotonic() >= deadline:
            break
        ceiling = min(4.0, 0.25 * 2 ** attempt)  # the list lags: read it again once it may show our claim
        time.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))
        attempt += 1
    active = claims.active_claims(comments, me)
    seen_at = ctx.snapshot.issue.updated_at  # the tracker's clock when this step's snapshot was taken
    # a run ended after our snapshot: what we decided from it is stale, so this claim cannot win. A takeover report
    # (another runner ending an expired claim) is not such an end: it ends that one claim, and the earliest active
    # claim after it still wins.
    stale = any(kind != claims.ABANDONED for _run, kind, _by in claims.reports_after(comments, me, seen_at))
    if stale or not active or active[0].run_id != run_id:
        winner = "a run that finished after this runner looked" if stale else (
            active[0].run_id if active else "unknown (the runner's own claim never showed in the comment list)")
        ctx.tracker.delete_comment(ctx.issue, existing.id)
        raise ClaimLost(f"issue #{ctx.issue} was claimed first by run {winner}; this runner backs off",
                        "nothing to do: the other runner owns the issue")
    ctx.set_fact("claim", {"comment": existing.id, "run_id": run_id})  # the run renews this comment's lease as it works
    ctx.set_fact("claimed_at", existing.created_at)  # review feedback older than this run is not this run's to handle
    ctx.set_fact("issue_comments", [{"id": c.id, "author": c.author, "body": c.body, "created_at": c.created_at,
                                     "trusted": c.trusted} for c in comments if "<!-- orch:" not in c.body])
    return {"comment": existing.id, "run_id": run_id}


def take_over_claim(ctx: ActionContext) -> dict[str, Any]:
    """End the expired claim of a run that stopped (cancelled, timed out, machine lost) with a takeover report, so
    that this run can claim the issue; the report names both runs. Only ``claim_expired`` leads here."""
    from statemachine import claims

    run_id = ctx.require_run()
    held = ctx.snapshot.claim or {}
    old = held.get("run_id")
    if not old or not held.get("expired"):
        raise OrchError(f"issue #{ctx.issue}: no expired claim to take over",
                        "this action follows the claim_expired guard; check the policy's lifecycle")
    marker = claims.abandon_marker(str(old), run_id)
    existing = ctx.find_comment(marker)
    if existing is None:
        body = reporting.takeover_comment(str(old), run_id, held.get("renewed_at"), held.get("lease_seconds")) + "\n\n" + marker
        existing = ctx.tracker.post_comment(ctx.issue, body)
    ctx.set_fact("took_over", {"run_id": old, "renewed_at": held.get("renewed_at"), "comment": existing.id})
    return {"comment": existing.id, "took_over": old}


# git and the agent -----------------------------------------------------------------------

def _worktree_path(ctx: ActionContext, facts: dict[str, Any]) -> Path:
    """The run's worktree: where the agent works on the run's branch."""
    return Path(facts.get("worktree") or ctx.orch_dir / "worktrees" / f"issue-{ctx.issue}-{ctx.require_run()}")


def create_worktree(ctx: ActionContext) -> dict[str, Any]:
    """Make a git worktree on the run's branch, from the base branch's exact commit."""
    facts = ctx.facts()
    run_id = ctx.require_run()
    parent = facts.get("parent")
    if parent:  # a child starts from its parent's integration branch as it stood when its wave began
        base_branch, base_sha = facts.get("base_branch") or parent["integration_branch"], facts.get("base_sha") or parent["base_sha"]
    else:
        base_branch = facts.get("base_branch") or ctx.git.base_branch(ctx.policy.data["tracker"].get("base_branch", ""))
        base_sha = facts.get("base_sha") or ctx.git.head_sha(base_branch)
    issue = ctx.snapshot.issue
    branch = facts.get("branch") or ctx.policy.data["branch_template"].format(
        number=issue.number, slug=slugify(issue.title), run_id=run_id)
    worktree = _worktree_path(ctx, facts)
    for key, value in (("base_branch", base_branch), ("base_sha", base_sha), ("branch", branch), ("worktree", str(worktree))):
        if key not in facts:
            ctx.set_fact(key, value)
    ctx.git.ensure_worktree(worktree, branch, base_sha)
    return {"worktree": str(worktree), "branch": branch, "base_sha": base_sha}


def run_agent(ctx: ActionContext, prompt: str) -> dict[str, Any]:
    """Render the prompt and run the agent once in the worktree; keep its log and report as evidence."""
    from statemachine import prompting

    facts = ctx.facts()
    previous = facts.get("agent")
    if previous and previous.get("step") == ctx.step_id:
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
    values = prompting.issue_values(_with_comments(ctx, issue), ctx.repo, ctx.policy.data.get("rules", ""), list(facts.get("findings", [])))
    values.update(report_path=report_path, worktree=worktree, branch=facts["branch"], base_sha=facts["base_sha"], attempt=attempt)
    text = ctx.secrets.redact(prompting.render(prompt, ctx.repo, values))
    cfg = ctx.policy.data["agent"]
    ctx.set_fact("git_before", ctx.git.fingerprint(worktree))
    extra = agent_workspace(ctx, worktree, evidence, facts.get("head_sha") or facts["base_sha"], facts["branch"])
    result = ctx.make_agent().run(AgentRequest(
        prompt=text, workdir=worktree, evidence_dir=evidence, report_path=report_path,
        timeout_seconds=float(cfg.get("timeout_seconds", 1800)), idle_timeout_seconds=float(cfg.get("idle_timeout_seconds", 600)),
        gitdir=extra.get("gitdir"), lock=extra["lock"],
    ))
    leaks = seal_evidence(ctx, evidence)  # before anything reads the report or the log
    report, error = load_report(report_path, "completion-report")
    agent_fact = {
        "step": ctx.step_id, "attempt": attempt, "exit_code": result.exit_code, "timed_out": result.timed_out,
        "idle_timed_out": result.idle_timed_out, "duration_seconds": round(result.duration_seconds, 3), "log": result.log,
        "output_bytes": result.output_bytes, "error": result.error, "tokens": result.tokens,
        "timeout_seconds": cfg.get("timeout_seconds"), "idle_timeout_seconds": cfg.get("idle_timeout_seconds"),
        "secret_values": leaks,
    }
    # together: the agent fact's presence means the attempt finished, with everything it observed
    ctx.set_facts({"attempt": attempt, "report": report, "report_error": error, "checks": None, "proof": None,
                   "agent": agent_fact})
    return {"attempt": attempt, "exit_code": result.exit_code, "report": error or "valid"}


def seal_evidence(ctx: ActionContext, folder: Path) -> list[dict[str, str]]:
    """Rewrite every file an agent run left in its evidence folder (log, report, its own state) with each secret value
    redacted; the findings (kind secret-value, naming the file, the variable and the encoding) for the inspection."""
    from statemachine import inspect_candidate as insp

    found: list[dict[str, str]] = []
    for rel, hits in sorted(insp.redact_tree(folder, ctx.secrets).items()):
        found += [f.as_json() for f in insp.value_findings(hits, rel)]
    return found


def capture_changes(ctx: ActionContext) -> dict[str, Any]:
    """Capture the whole change set (committed, staged, unstaged, untracked), inspect it, and freeze it as the candidate commit."""
    facts = ctx.facts()
    worktree = Path(facts["worktree"])
    if not (worktree / ".git").exists():
        error = f"the worktree {worktree} disappeared before the runner could capture the agent's work"
        ctx.set_facts({"changes": None, "inspection": None, "candidate_sha": None, "capture_error": error})
        return {"error": error}
    published = facts.get("head_sha")  # set once the branch was published: new work stacks on it, never rewrites it
    cap = ctx.git.capture(worktree, facts["base_sha"], start=published)
    changes = [{"path": c.path, "status": c.status} for c in cap.changes]
    sizes = limits.changed_sizes(ctx.repo, facts["base_sha"], cap.tree)  # the runner's measure, for within_byte_limits
    changed_bytes = limits.size_summary(sizes)
    attempt_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}"
    attempt_dir.mkdir(parents=True, exist_ok=True)
    diff = ctx.git.diff_text(facts["base_sha"], cap.tree)
    (attempt_dir / "diff.patch").write_text(ctx.secrets.redact(diff))
    inspection = _inspect(ctx, facts, worktree, cap, diff, attempt_dir)
    issue = ctx.snapshot.issue
    report = facts.get("report") or {}
    message = f"{issue.title} (#{issue.number})\n\n{str(report.get('summary', '')).strip()}\n\nOrch-Run: {ctx.require_run()}\n"
    candidate = ctx.git.commit_tree(cap.tree, published or facts["base_sha"], message)
    ctx.set_facts({"capture_error": None, "changes": changes, "changes_by_kind": cap.by_kind, "changed_lines": cap.changed_lines,
                   "changed_bytes": changed_bytes, "tree": cap.tree, "candidate_sha": candidate, "inspection": inspection})
    (attempt_dir / "changes.json").write_text(json.dumps(
        {"tree": cap.tree, "candidate": candidate, "changes": changes, "by_kind": cap.by_kind, "sizes": sizes,
         "inspection": inspection}, indent=2))
    return {"tree": cap.tree, "candidate": candidate, "files": len(changes), "lines": cap.changed_lines,
            "bytes": changed_bytes["total"]}


def _inspect(ctx: ActionContext, facts: dict[str, Any], worktree: Path, cap: Any, diff: str, attempt_dir: Path) -> dict[str, Any]:
    """Scan the candidate for secrets, destructive commands, git tampering, escaping symlinks and late edits."""
    from statemachine import inspect_candidate as insp

    values = ctx.secrets
    # the values the runner holds first, so the headline names one: every changed file's bytes as git stores them,
    # then what the agent's run left in its evidence folder (its log, its report; seal_evidence found them there)
    secrets: list[insp.Finding] = insp.scan_tree_values(ctx.repo, facts["base_sha"], cap.tree, values)
    agent = facts.get("agent") or {}
    secrets += [insp.Finding(**f) for f in agent.get("secret_values") or []]
    destructive: list[insp.Finding] = []
    for path, added in insp.added_lines(diff).items():
        secrets += insp.scan_secrets(added, f"diff:{path}")
        destructive += insp.scan_destructive(added, f"diff:{path}")
    report_path = attempt_dir / "report.json"
    report_text = insp.read_text(report_path) if report_path.is_file() else None
    if report_text:
        secrets += insp.scan_secrets(report_text, "report.json")
    if agent.get("log"):
        log_text = insp.read_text(Path(agent["log"]))
        if log_text:
            secrets += insp.scan_secrets(log_text, "agent.log")
            destructive += insp.scan_destructive(log_text, "agent.log")
    for artifact in (facts.get("report") or {}).get("artifacts", []):
        candidate = (worktree / artifact) if not Path(artifact).is_absolute() else Path(artifact)
        text = insp.read_text(candidate) if candidate.is_file() and not candidate.is_symlink() else None
        if text:
            secrets += insp.scan_secrets(text, f"artifact:{artifact}")
        secrets += insp.scan_file_values(candidate, f"artifact {artifact}", values)  # its raw bytes, binary too
    tampering: list[str] = []
    if cap.by_kind.get("committed"):
        tampering.append("the agent made commits: " + ", ".join(cap.by_kind["committed"][:5]))
    own_git = attempt_dir / "git"  # the jail's git directory for this attempt: what the agent did there, named
    if own_git.is_dir():
        from statemachine.adapters.agent_git import inspect_private_gitdir

        tampering += inspect_private_gitdir(own_git, facts.get("head_sha") or facts["base_sha"], facts["branch"])
    before = facts.get("git_before")
    if before:
        after = ctx.git.fingerprint(worktree)
        prefix = ctx.policy.data["branch_template"].split("{", 1)[0]
        own = f"refs/heads/{facts['branch']}"

        def refs(text: str) -> set[str]:
            # branches and tags only: remote-tracking refs move when the runner pushes other runs' branches, and
            # other runs' branches (and proof branches) move under concurrent runs in this clone
            return {line for line in text.splitlines()
                    if line.startswith(("refs/heads/", "refs/tags/"))
                    and not line.startswith("refs/heads/orch-proof/")
                    and not (prefix and line.startswith(f"refs/heads/{prefix}") and not line.startswith(own + " "))}

        changed_refs = sorted(refs(before["refs"]) ^ refs(after["refs"]))
        if changed_refs:
            tampering.append("refs changed: " + "; ".join(changed_refs[:6]))
        for key, what in (("head", "the worktree's HEAD moved"), ("gitfile", "the worktree's .git file changed"),
                          ("config", "the repository's git config changed"), ("hooks", "git hooks changed"),
                          ("worktree_config", "the worktree's git config changed")):
            if before.get(key) != after.get(key):
                tampering.append(what)
    paths = [c.path for c in cap.changes if c.status != "D"]
    symlinks = insp.escaping_symlinks(worktree, paths)
    late: list[str] = []
    if report_path.is_file():
        late = insp.edited_after(worktree, paths, report_path.stat().st_mtime)
    return {
        "secrets": [f.as_json() for f in secrets],
        "destructive": [f.as_json() for f in destructive],
        "git_tampering": tampering,
        "symlinks": [f.as_json() for f in symlinks],
        "edited_after_report": late,
    }


def _check_worktree(ctx: ActionContext, facts: dict[str, Any], name: str, sha: str) -> Path:
    path = ctx.orch_dir / "worktrees" / f"{name}-{ctx.require_run()}-{facts.get('attempt', 0)}"
    ctx.git.add_detached_worktree(path, sha)
    return path


def run_checks(ctx: ActionContext) -> dict[str, Any]:
    """Run every configured check in a fresh worktree of the exact candidate commit; keep the outputs."""
    facts = ctx.facts()
    out_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}" / "checks"
    results: dict[str, dict[str, Any]] = {}
    checks = sorted(ctx.policy.data.get("checks", {}).items())
    if checks:
        worktree = _check_worktree(ctx, facts, "check", facts["candidate_sha"])
        try:
            for name, spec in checks:
                log = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.log"
                res = jailed(ctx, spec["command"], worktree, log, float(spec.get("timeout_seconds", 900)), facts["candidate_sha"])
                leaked = _redact_log(ctx, log)  # a check runs the agent's code, which may print what it can find
                results[name] = {"exit_code": res.exit_code, "timed_out": res.timed_out,
                                 "duration_seconds": round(res.duration_seconds, 3), "log": str(log),
                                 "command": spec["command"], "error": res.error, "commit": facts["candidate_sha"],
                                 "redacted": leaked}
        finally:
            ctx.git.remove_worktree(worktree)
    ctx.set_fact("checks", results)
    return {name: r["exit_code"] for name, r in results.items()}


def run_tdd_check(ctx: ActionContext) -> dict[str, Any]:
    """When gates.tdd is set: run the added or changed tests on the base commit (must fail) and on the candidate (must pass)."""
    from statemachine.gates import DEFAULT_TEST_GLOBS
    from statemachine.globs import first_match

    cfg = ctx.policy.data.get("gates", {}).get("tdd")
    if not cfg:
        ctx.set_fact("tdd", None)
        return {"skipped": "gates.tdd is not set"}
    facts = ctx.facts()
    globs = tuple(ctx.policy.data.get("gates", {}).get("test_globs") or DEFAULT_TEST_GLOBS)
    tests = [c["path"] for c in facts.get("changes", []) if c["status"] != "D" and first_match(c["path"], globs)]
    if not tests:
        ctx.set_fact("tdd", {"error": "the change adds or modifies no test", "tests": []})
        return {"error": "no test changed"}
    out_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}" / "tdd"
    command = cfg["command"].replace("{tests}", " ".join(_shquote(t) for t in tests))
    timeout = float(cfg.get("timeout_seconds", 900))
    exits = {}
    for side, sha in (("base", facts["base_sha"]), ("candidate", facts["candidate_sha"])):
        worktree = _check_worktree(ctx, facts, f"tdd-{side}", sha)
        try:
            if side == "base":  # the candidate's tests, on the base commit's product code
                from statemachine.adapters.git import run_git

                run_git(["checkout", facts["candidate_sha"], "--", *tests], worktree)
            res = jailed(ctx, command, worktree, out_dir / f"{side}.log", timeout, sha)
            _redact_log(ctx, out_dir / f"{side}.log")
            exits[side] = res.exit_code if not res.timed_out else -1
        finally:
            ctx.git.remove_worktree(worktree)
    tdd = {"tests": tests, "command": command, "base_exit": exits["base"], "candidate_exit": exits["candidate"],
           "base_log": str(out_dir / "base.log"), "candidate_log": str(out_dir / "candidate.log"), "error": None}
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

    if not ctx.policy.data.get("gates", {}).get("review"):
        ctx.set_fact("review", None)
        return {"skipped": "gates.review is off"}
    facts = ctx.facts()
    attempt = int(facts.get("attempt", 0))
    report_path = ctx.fresh_report(f"attempt-{attempt}/review", "review-report.json")
    evidence = report_path.parent
    worktree = _check_worktree(ctx, facts, "review", facts["candidate_sha"])
    try:
        values = prompting.issue_values(_with_comments(ctx, ctx.snapshot.issue), ctx.repo, ctx.policy.data.get("rules", ""), list(facts.get("findings", [])))
        values.update(report_path=report_path, worktree=worktree, branch=facts["branch"], base_sha=facts["base_sha"], attempt=attempt)
        cfg = ctx.policy.data["agent"]
        extra = agent_workspace(ctx, worktree, evidence, facts["candidate_sha"], None)
        result = ctx.make_agent().run(AgentRequest(
            prompt=ctx.secrets.redact(prompting.render("review", ctx.repo, values)), workdir=worktree, evidence_dir=evidence,
            report_path=report_path, timeout_seconds=float(cfg.get("timeout_seconds", 1800)),
            idle_timeout_seconds=float(cfg.get("idle_timeout_seconds", 600)),
            extra_env={"ORCH_MODE": "review"}, gitdir=extra.get("gitdir"), lock=extra["lock"],
        ))
    finally:
        ctx.git.remove_worktree(worktree)
    seal_evidence(ctx, evidence)  # the review's findings reach the rework prompt: they are stored redacted
    report, error = load_report(report_path, "review-report", "review report")
    if error is None and result.exit_code != 0:
        error = f"the review run exited with {result.exit_code}"
    review = {"error": error, "verdict": (report or {}).get("verdict"), "defects": (report or {}).get("defects", []),
              "summary": (report or {}).get("summary", ""), "log": result.log}
    ctx.set_fact("review", review)
    return {"verdict": review["verdict"], "error": error}


def run_proof(ctx: ActionContext) -> dict[str, Any]:
    """Prove the candidate: the agent answers every criterion, the runner drives the browser itself and checks all evidence."""
    from statemachine import proof

    return proof.run_proof_action(ctx)


def record_findings(ctx: ActionContext) -> dict[str, Any]:
    """Turn failed checks and proof findings into findings for the next prompt; count one rework."""
    facts = ctx.facts()
    done_for = facts.get("findings_step")
    if done_for == ctx.step_id:
        return {"resumed": True}
    findings: list[str] = []
    for name, r in sorted((facts.get("checks") or {}).items()):
        if r.get("exit_code") != 0:
            tail = limits.read_tail(Path(r["log"]), limits.FINDING_LOG_TAIL)  # the check ran the agent's code: any size
            findings.append(f"check {name!r} ({r.get('command')}) " + ("timed out" if r.get("timed_out") else f"exited {r.get('exit_code')}") + f"; output tail:\n{tail}")
    proof = facts.get("proof") or {}
    findings += [f"proof: {f}" for f in proof.get("findings", [])]
    from statemachine import gates

    for fn in (gates.tdd_evidence, gates.tests_changed_with_source):
        verdict = fn(ctx.snapshot)
        if not verdict.ok:
            findings.append(f"{fn.__name__}: {verdict.reason}")
    review = facts.get("review") or {}
    for d in review.get("defects", []):
        where = f" ({d['file']}:{d.get('line', '?')})" if d.get("file") else ""
        findings.append(f"review {d.get('severity', '?')}{where}: {d.get('description', '')}")
    ctx.set_facts({"findings": findings, "rework_count": int(facts.get("rework_count", 0)) + 1, "findings_step": ctx.step_id})
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
    ctx.set_facts({"findings": findings, "feedback_handled": handled + [f["key"] for f in new],
                   "rework_count": int(facts.get("rework_count", 0)) + 1,
                   "review_rounds": int(facts.get("review_rounds", 0)) + 1, "feedback_step": ctx.step_id})
    return {"findings": len(findings), "ignored": len(new) - len(findings), "pull_request": pr.get("number")}


# publication -----------------------------------------------------------------------------

def commit_changes(ctx: ActionContext) -> dict[str, Any]:
    """Point the run's branch at the candidate commit: exactly the tree that was inspected and checked."""
    facts = ctx.facts()
    branch, candidate = facts["branch"], facts["candidate_sha"]
    reused = ctx.git.branch_head(branch) == candidate
    if not reused:
        ctx.git.set_branch(branch, candidate)
        worktree = Path(facts["worktree"])
        if (worktree / ".git").exists():
            from statemachine.adapters.git import run_git

            run_git(["reset", "--quiet", "--mixed"], worktree, check=False)
    ctx.set_fact("head_sha", candidate)
    return {"commit": candidate, "reused": reused}


def push_branch(ctx: ActionContext) -> dict[str, Any]:
    """Push the run's branch to the tracker's remote with the runner's own credential (the local tracker keeps it here)."""
    facts = ctx.facts()
    if ctx.tracker.kind == "local":
        return {"skipped": "the local tracker reads branches from this repository"}
    # the first push of a run may replace an earlier run's branch; later ones (review rounds) only fast-forward
    force = not facts.get("pushed_sha")
    remote = _push(ctx, facts["candidate_sha"], facts["branch"], force=force)
    ctx.set_fact("pushed_sha", facts["candidate_sha"])
    return {"pushed": facts["branch"], "sha": facts["candidate_sha"], "remote": remote, "force": force}


def _push(ctx: ActionContext, sha: str, branch: str, force: bool = True) -> str:
    """Push ``sha`` to ``branch`` on the tracker's remote with the tracker's credential, given to the runner's git alone."""
    remote = str(ctx.policy.data["tracker"].get("remote", "origin"))
    credential = getattr(ctx.tracker, "push_credential", None)
    if credential is None:
        raise OrchError(f"the {ctx.tracker.kind} tracker cannot receive branches")
    ctx.git.push(remote, sha, branch, credential(), force=force)
    return remote


def remove_worktree(ctx: ActionContext) -> dict[str, Any]:
    """Remove the run's worktree once its result is published (the branch and the evidence folder stay)."""
    worktree = ctx.facts().get("worktree")
    if worktree and Path(worktree).exists():
        ctx.git.remove_worktree(Path(worktree))
    return {"worktree": worktree}  # the same result whether or not an interrupted attempt already removed it


def publish_proof(ctx: ActionContext) -> dict[str, Any]:
    """On GitHub, push the publishable proof screenshots to a dedicated branch so the pull request can show them."""
    from statemachine.proof import proof_branch_files

    facts = ctx.facts()
    proof = facts.get("proof")
    if ctx.tracker.kind == "local" or not proof or not proof.get("dir"):
        return {"skipped": "no proof screenshots to publish" if ctx.tracker.kind != "local" else "local tracker: kept locally"}
    tr = ctx.policy.data["tracker"]
    api = str(tr.get("api_url") or "https://api.github.com")
    server = "https://github.com" if "api.github.com" in api else api.split("/api/")[0]
    plan = proof_branch_files(proof, owner=tr["owner"], repo=tr["repo"], run_id=ctx.require_run(), server=server)
    if not plan.files:
        ctx.set_fact("proof_published", {"branch": None, "markdown": [], "skipped": plan.skipped})
        return {"published": 0, "skipped": plan.skipped}
    sha = ctx.git.orphan_commit(plan.files, f"Proof screenshots for run {ctx.require_run()}")
    _push(ctx, sha, plan.branch)
    ctx.set_fact("proof_published", {"branch": plan.branch, "markdown": plan.markdown, "skipped": plan.skipped})
    return {"published": len(plan.files), "branch": plan.branch}


def open_draft_pr(ctx: ActionContext) -> dict[str, Any]:
    """Open a draft pull request for the run's branch, found by its marker if it already exists."""
    from statemachine.parent_actions import pull_body

    facts = ctx.facts()
    marker = ctx.marker("pull-request")
    issue = ctx.snapshot.issue
    title = ctx.policy.data["pr_title_template"].format(number=issue.number, title=issue.title)
    body = (pull_body(ctx, facts) if facts.get("plan") else reporting.pull_body(ctx, facts)) + "\n\n" + marker
    # create_pull is find-or-create by the marker on every tracker: a retry never opens a second one
    existing = ctx.tracker.create_pull(issue.number, title, body, facts["branch"], facts["base_branch"],
                                       facts["head_sha"], facts["base_sha"], marker)
    pr = {"number": existing.number, "url": existing.url, "head": existing.head, "base": existing.base, "draft": existing.draft}
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
