"""Effects, each reached only through the ports and made safe to repeat (find-or-create, check-then-do)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from statemachine import reporting
from statemachine.adapters.process import run_process, scrubbed_env
from statemachine.errors import OrchError
from statemachine.model import Snapshot
from statemachine.ports import AgentRequest, Agent, Git, Tracker
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
        self.store.set_fact(self.require_run(), key, value)

    def evidence_dir(self) -> Path:
        path = self.orch_dir / "runs" / self.require_run()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def marker(self, kind: str) -> str:
        return f"<!-- orch:run={self.require_run()} kind={kind} -->"


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
    existing = ctx.tracker.find_comment(ctx.issue, marker)
    if existing is not None:
        return {"comment": existing.id, "reused": True}
    body = reporting.claim_comment(ctx.require_run(), ctx.policy) + "\n\n" + marker
    comment = ctx.tracker.post_comment(ctx.issue, body)
    return {"comment": comment.id, "reused": False}


# git and the agent -----------------------------------------------------------------------

def create_worktree(ctx: ActionContext) -> dict[str, Any]:
    """Make a git worktree on the run's branch, from the base branch's exact commit."""
    facts = ctx.facts()
    run_id = ctx.require_run()
    base_branch = facts.get("base_branch") or ctx.git.base_branch(ctx.policy.data["tracker"].get("base_branch", ""))
    base_sha = facts.get("base_sha") or ctx.git.head_sha(base_branch)
    issue = ctx.snapshot.issue
    branch = facts.get("branch") or ctx.policy.data["branch_template"].format(
        number=issue.number, slug=slugify(issue.title), run_id=run_id)
    worktree = Path(facts.get("worktree") or ctx.orch_dir / "worktrees" / f"issue-{issue.number}-{run_id}")
    for key, value in (("base_branch", base_branch), ("base_sha", base_sha), ("branch", branch), ("worktree", str(worktree))):
        if key not in facts:
            ctx.set_fact(key, value)
    ctx.git.ensure_worktree(worktree, branch, base_sha)
    return {"worktree": str(worktree), "branch": branch, "base_sha": base_sha}


def _validate_report(path: Path, schema_name: str) -> tuple[dict[str, Any] | None, str | None]:
    import jsonschema

    from statemachine import resources

    if not path.exists():
        return None, f"no report: the agent did not write {path.name}"
    if path.is_symlink() or not path.is_file():
        return None, f"the report at {path} is not a regular file"
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"the report is not valid JSON: {exc}"
    errors = sorted(jsonschema.Draft202012Validator(resources.schema(schema_name)).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        return None, f"the report does not match schemas/{schema_name}.schema.json at {where}: {first.message}"
    return data, None


def run_agent(ctx: ActionContext, prompt: str) -> dict[str, Any]:
    """Render the prompt and run the agent once in the worktree; keep its log and report as evidence."""
    from statemachine import prompting

    facts = ctx.facts()
    previous = facts.get("agent")
    if previous and previous.get("step") == ctx.step_id:
        return {"attempt": previous["attempt"], "resumed": True}  # it finished before a crash: never rerun
    attempt = int(facts.get("attempt", 0)) + 1
    evidence = ctx.evidence_dir() / f"attempt-{attempt}"
    evidence.mkdir(parents=True, exist_ok=True)
    report_path = evidence / "report.json"
    if report_path.exists():
        report_path.unlink()
    worktree = Path(facts["worktree"])
    issue = ctx.snapshot.issue
    values = prompting.issue_values(issue, ctx.repo, ctx.policy.data.get("rules", ""), list(facts.get("findings", [])))
    values.update(report_path=report_path, worktree=worktree, branch=facts["branch"], base_sha=facts["base_sha"], attempt=attempt)
    text = prompting.render(prompt, ctx.repo, values)
    cfg = ctx.policy.data["agent"]
    result = ctx.make_agent().run(AgentRequest(
        prompt=text, workdir=worktree, evidence_dir=evidence, report_path=report_path,
        timeout_seconds=float(cfg.get("timeout_seconds", 1800)), idle_timeout_seconds=float(cfg.get("idle_timeout_seconds", 600)),
    ))
    report, error = _validate_report(report_path, "completion-report")
    agent_fact = {
        "step": ctx.step_id, "attempt": attempt, "exit_code": result.exit_code, "timed_out": result.timed_out,
        "idle_timed_out": result.idle_timed_out, "duration_seconds": round(result.duration_seconds, 3), "log": result.log,
        "output_bytes": result.output_bytes, "error": result.error, "tokens": result.tokens,
        "timeout_seconds": cfg.get("timeout_seconds"), "idle_timeout_seconds": cfg.get("idle_timeout_seconds"),
    }
    ctx.set_fact("attempt", attempt)
    ctx.set_fact("report", report)
    ctx.set_fact("report_error", error)
    ctx.set_fact("checks", None)
    ctx.set_fact("proof", None)
    ctx.set_fact("agent", agent_fact)  # last: its presence means the attempt finished
    return {"attempt": attempt, "exit_code": result.exit_code, "report": error or "valid"}


def capture_changes(ctx: ActionContext) -> dict[str, Any]:
    """Capture the whole change set (committed, staged, unstaged, untracked) against the base commit."""
    facts = ctx.facts()
    cap = ctx.git.capture(Path(facts["worktree"]), facts["base_sha"])
    changes = [{"path": c.path, "status": c.status} for c in cap.changes]
    ctx.set_fact("changes", changes)
    ctx.set_fact("changes_by_kind", cap.by_kind)
    ctx.set_fact("changed_lines", cap.changed_lines)
    ctx.set_fact("tree", cap.tree)
    attempt_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}"
    attempt_dir.mkdir(parents=True, exist_ok=True)
    (attempt_dir / "changes.json").write_text(json.dumps({"tree": cap.tree, "changes": changes, "by_kind": cap.by_kind}, indent=2))
    return {"tree": cap.tree, "files": len(changes), "lines": cap.changed_lines}


def run_checks(ctx: ActionContext) -> dict[str, Any]:
    """Run every configured check in the worktree; record exit codes and keep the outputs."""
    facts = ctx.facts()
    worktree = Path(facts["worktree"])
    out_dir = ctx.evidence_dir() / f"attempt-{facts.get('attempt', 0)}" / "checks"
    results: dict[str, dict[str, Any]] = {}
    for name, spec in sorted(ctx.policy.data.get("checks", {}).items()):
        log = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.log"
        res = run_process(["/bin/sh", "-c", spec["command"]], worktree, scrubbed_env(), log,
                          float(spec.get("timeout_seconds", 900)))
        results[name] = {"exit_code": res.exit_code, "timed_out": res.timed_out, "duration_seconds": round(res.duration_seconds, 3),
                         "log": str(log), "command": spec["command"], "error": res.error}
    ctx.set_fact("checks", results)
    return {name: r["exit_code"] for name, r in results.items()}


def run_proof(ctx: ActionContext) -> dict[str, Any]:
    """Run the agent with the proof prompt and keep its proof report (checked by the proof guards)."""
    from statemachine import prompting

    facts = ctx.facts()
    attempt = int(facts.get("attempt", 0))
    evidence = ctx.evidence_dir() / f"attempt-{attempt}" / "proof"
    evidence.mkdir(parents=True, exist_ok=True)
    report_path = evidence / "proof-report.json"
    if report_path.exists():
        report_path.unlink()
    worktree = Path(facts["worktree"])
    before = ctx.git.capture(worktree, facts["base_sha"]).tree
    values = prompting.issue_values(ctx.snapshot.issue, ctx.repo, ctx.policy.data.get("rules", ""), list(facts.get("findings", [])))
    values.update(report_path=report_path, worktree=worktree, branch=facts["branch"], base_sha=facts["base_sha"], attempt=attempt)
    cfg = ctx.policy.data["agent"]
    result = ctx.make_agent().run(AgentRequest(
        prompt=prompting.render("proof", ctx.repo, values), workdir=worktree, evidence_dir=evidence, report_path=report_path,
        timeout_seconds=float(cfg.get("timeout_seconds", 1800)), idle_timeout_seconds=float(cfg.get("idle_timeout_seconds", 600)),
        extra_env={"ORCH_MODE": "proof"},
    ))
    after = ctx.git.capture(worktree, facts["base_sha"]).tree
    report, error = _validate_report(report_path, "proof-report")
    proof: dict[str, Any] = {"error": error, "status": None, "findings": []}
    if result.exit_code != 0:
        proof["error"] = f"the proof run exited with {result.exit_code}"
    elif before != after:
        proof["error"] = "the proof run changed the product (worktree tree differs before and after)"
    elif report is not None:
        wanted = {c["id"] for c in prompting.acceptance_criteria(ctx.snapshot.issue.body)}
        answered = {c["id"] for c in report["criteria"]}
        weak = [c["id"] for c in report["criteria"] if c["confidence"] != "high"]
        if wanted - answered:
            proof["error"] = "criteria without an answer: " + ", ".join(sorted(wanted - answered))
        elif report["status"] == "passed" and weak:
            proof["error"] = "passed with less than high confidence on: " + ", ".join(weak)
        proof.update(status=report["status"], findings=report.get("findings", []))
    ctx.set_fact("proof", proof)
    return {"status": proof["status"], "error": proof["error"]}


def record_findings(ctx: ActionContext) -> dict[str, Any]:
    """Turn failed checks and proof findings into findings for the next prompt; count one rework."""
    facts = ctx.facts()
    done_for = facts.get("findings_step")
    if done_for == ctx.step_id:
        return {"resumed": True}
    findings: list[str] = []
    for name, r in sorted((facts.get("checks") or {}).items()):
        if r.get("exit_code") != 0:
            tail = ""
            try:
                tail = Path(r["log"]).read_text(errors="replace")[-2000:]
            except OSError:
                pass
            findings.append(f"check {name!r} ({r.get('command')}) " + ("timed out" if r.get("timed_out") else f"exited {r.get('exit_code')}") + f"; output tail:\n{tail}")
    proof = facts.get("proof") or {}
    findings += [f"proof: {f}" for f in proof.get("findings", [])]
    ctx.set_fact("findings", findings)
    ctx.set_fact("rework_count", int(facts.get("rework_count", 0)) + 1)
    ctx.set_fact("findings_step", ctx.step_id)
    return {"findings": len(findings)}


# publication -----------------------------------------------------------------------------

def commit_changes(ctx: ActionContext) -> dict[str, Any]:
    """Commit exactly the captured tree on the run's branch, as the runner, on top of the base commit."""
    facts = ctx.facts()
    run_id = ctx.require_run()
    branch, tree, base = facts["branch"], facts["tree"], facts["base_sha"]
    trailer = f"Orch-Run: {run_id}"
    head = ctx.git.branch_head(branch)
    if head and trailer in ctx.git.commit_message(head):
        ctx.set_fact("head_sha", head)
        return {"commit": head, "reused": True}
    issue = ctx.snapshot.issue
    report = facts.get("report") or {}
    message = f"{issue.title} (#{issue.number})\n\n{report.get('summary', '').strip()}\n\n{trailer}\n"
    sha = ctx.git.commit_tree(tree, base, message)
    ctx.git.set_branch(branch, sha)
    worktree = Path(facts["worktree"])
    if (worktree / ".git").exists():
        from statemachine.adapters.git import run_git

        run_git(["reset", "--quiet", "--mixed"], worktree, check=False)
    ctx.set_fact("head_sha", sha)
    return {"commit": sha, "reused": False}


def open_draft_pr(ctx: ActionContext) -> dict[str, Any]:
    """Open a draft pull request for the run's branch, found by its marker if it already exists."""
    facts = ctx.facts()
    marker = ctx.marker("pull-request")
    existing = ctx.tracker.find_pull(marker)
    if existing is None:
        issue = ctx.snapshot.issue
        title = ctx.policy.data["pr_title_template"].format(number=issue.number, title=issue.title)
        body = reporting.pull_body(ctx, facts) + "\n\n" + marker
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
    existing = ctx.tracker.find_comment(ctx.issue, marker)
    if existing is not None:
        return {"comment": existing.id, "reused": True}
    body = reporting.report_comment(ctx, ctx.facts(), outcome) + "\n\n" + marker
    comment = ctx.tracker.post_comment(ctx.issue, body)
    (ctx.evidence_dir() / "summary.md").write_text(body)
    return {"comment": comment.id, "reused": False}
