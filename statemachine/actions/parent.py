"""The effects of a parent run (agent:plan-auto): plan, create the child issues, run them in waves, integrate.

Each action is safe to repeat after a crash: children are found by their hidden marker before one is created,
a child that already finished is never run again (its own lifecycle rests), and a merge of a commit the
integration branch already holds is a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from statemachine import planning, reporting
from statemachine.actions.agent import agent_workspace, outcome_fact, record_usage, seal_evidence
from statemachine.actions.context import ActionContext, _with_comments, slugify
from statemachine.errors import OrchError
from statemachine.planning import BLOCKED, CLOSED, CONFLICT, MERGED, PASSED, PENDING, RUNNING
from statemachine.reports import load_report
from statemachine.run_command import run_argv


def _read_only(root: Path, on: bool) -> None:
    """Make a worktree's files read-only (or writable again); the runner checks afterwards that nothing changed."""
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for name in [*filenames, *dirnames, ""]:
            path = Path(dirpath) / name if name else Path(dirpath)
            try:
                if path.is_symlink():
                    continue
                mode = path.stat().st_mode
                path.chmod(mode & ~0o222 if on else mode | 0o200)
            except OSError:
                pass


def run_planner(ctx: ActionContext) -> dict[str, Any]:
    """Run the agent with the planning prompt in a read-only worktree of the base commit; check its plan report."""
    from statemachine import prompting, resources

    facts = ctx.facts()
    previous = facts.get("agent")
    if previous and previous.get("step") == ctx.step_id:
        record_usage(ctx, "planner", previous)
        return {"attempt": previous["attempt"], "resumed": True}  # it finished before a crash: never rerun
    base_branch = facts.get("base_branch") or ctx.git.base_branch(ctx.policy.config.tracker.base_branch)
    base_sha = facts.get("base_sha") or ctx.git.head_sha(base_branch)
    ctx.set_facts({"base_branch": base_branch, "base_sha": base_sha})
    attempt = int(facts.get("attempt", 0)) + 1
    report_path = ctx.fresh_report(f"plan-{attempt}", "plan.json")
    evidence = report_path.parent
    worktree = ctx.orch_dir / "worktrees" / f"plan-{ctx.issue}-{ctx.require_run()}"
    ctx.git.add_detached_worktree(worktree, base_sha)
    issue = ctx.snapshot.issue
    choice, settings = ctx.policy.config.agent_for(issue.labels), ctx.policy.config.plan
    agent = choice.agent
    try:
        values = prompting.issue_values(_with_comments(ctx, issue), ctx.repo, ctx.policy.config.rules, [])
        values.update(
            report_path=report_path,
            worktree=worktree,
            base_sha=base_sha,
            attempt=attempt,
            branch=settings.integration_branch_template.format(number=issue.number, slug=slugify(issue.title)),
            report_schema=json.dumps(resources.schema("plan-report"), indent=2),
        )
        text = ctx.secrets.redact(prompting.render("planning", ctx.repo, values))
        _read_only(worktree, True)
        extra = agent_workspace(ctx, worktree, evidence, base_sha, None)
        request = agent.request(text, worktree, evidence, report_path, extra, {"ORCH_MODE": "planning"}, read_only=True)
        result = ctx.make_agent(agent).run(request)
        _read_only(worktree, False)
        cap = ctx.git.capture(worktree, base_sha)
        changed = sorted({c.path for c in cap.changes} | set(cap.by_kind.get("committed", [])))
    finally:
        _read_only(worktree, False)
        ctx.git.remove_worktree(worktree)
    leaks = seal_evidence(ctx, evidence)  # nothing of a planner's output that holds a secret value may become an issue
    plan, error = load_report(report_path, "plan-report", "plan report")
    problems: list[str] = []
    if plan is not None:
        blocked = ctx.policy.config.gates.blocked_paths
        problems = planning.validate_plan(plan, settings.max_children, blocked)
    problems = [str(f["reason"]) for f in leaks] + problems
    if plan is not None and problems:
        error = f"the plan cannot run: {problems[0]}" + (
            f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        )
    outcome = {**outcome_fact(ctx, attempt, result, agent), "profile": choice.name}
    ctx.set_facts(
        {
            "attempt": attempt,
            "plan": None if error else plan,
            "plan_report": plan,
            "plan_error": error,
            "plan_problems": problems,
            "planning_changes": changed,
            "plan_digest": planning.issue_digest(issue.title, issue.body),
            "agent": outcome,
        }
    )
    record_usage(ctx, "planner", outcome)
    return {
        "attempt": attempt,
        "children": len((plan or {}).get("children", [])),
        "error": error,
        "changed": len(changed),
    }


def sync_children(ctx: ActionContext) -> dict[str, Any]:
    """Create or update one issue per child, bound to the parent by a hidden marker (never by links or mentions)."""
    facts = ctx.facts()
    plan = facts["plan"]
    parent = ctx.issue
    label = ctx.policy.label("child")
    existing: dict[str, Any] = {}
    me = ctx.tracker.identity()
    for found in ctx.tracker.list_issues(label=label, state="all"):
        if found.author != me:
            continue  # a child marker in someone else's issue binds nothing
        bound = planning.parse_child_marker(found.body)
        if bound and bound[0] == parent:
            existing.setdefault(bound[1], found)
    numbers: dict[str, int] = {}
    tree: dict[str, dict[str, Any]] = {}
    created, updated = [], []
    for child in planning.ordered(plan):
        key = child["key"]
        body = reporting.child_body(parent, child, numbers)
        issue = existing.get(key)
        if issue is None:
            issue = ctx.tracker.create_issue(child["title"], body, [label], marker=planning.child_marker(parent, key))
            created.append(issue.number)
        else:
            if issue.title != child["title"] or issue.body != body:
                issue = ctx.tracker.update_issue(issue.number, title=child["title"], body=body)
                updated.append(issue.number)
            if label not in issue.labels:
                ctx.tracker.add_labels(issue.number, [label])
        numbers[key] = issue.number
        tree[key] = {"issue": issue.number, "status": PENDING, "reason": None}
        if not issue.is_open:
            tree[key].update(status=CLOSED, reason="the child issue is closed; reopen it to run it")
    dropped = sorted(k for k in existing if k not in numbers)
    ctx.set_facts(
        {
            "children": numbers,
            "dropped_children": {k: existing[k].number for k in dropped},
            "plan_tree": planning.propagate(plan, tree),
        }
    )
    return {"created": created, "updated": updated, "children": numbers, "dropped": dropped}


def start_integration(ctx: ActionContext) -> dict[str, Any]:
    """Point the parent's integration branch at the base commit: this run's children merge into it."""
    facts = ctx.facts()
    if facts.get("integration_branch"):
        return {"branch": facts["integration_branch"], "reused": True}
    issue = ctx.snapshot.issue
    branch = ctx.policy.config.plan.integration_branch_template.format(number=issue.number, slug=slugify(issue.title))
    ctx.git.set_branch(branch, facts["base_sha"])
    ctx.set_fact("integration_branch", branch)
    return {"branch": branch, "sha": facts["base_sha"]}


def post_plan(ctx: ActionContext) -> dict[str, Any]:
    """Show the tree on the parent as a checklist, once per run."""
    marker = ctx.marker("plan")
    existing = ctx.find_comment(marker)
    if existing is not None:
        return {"comment": existing.id, "reused": True}
    body = reporting.plan_comment(ctx.require_run(), ctx.facts())
    comment = ctx.tracker.post_comment(ctx.issue, body + "\n\n" + marker)
    return {"comment": comment.id, "reused": False}


def run_wave(ctx: ActionContext) -> dict[str, Any]:
    """Run the next batch of children (one wave, or the part of it whose ownership does not overlap) and merge them.

    Each child runs its own whole lifecycle as an `orch run` process on a branch cut from the integration branch
    as it stood when its wave began. Passed children are merged in dependency order; a conflict or a blocked
    child fails its dependants, never its independent siblings.
    """
    facts = ctx.facts()
    plan = facts["plan"]
    tree = {k: dict(v) for k, v in facts["plan_tree"].items()}
    for node in tree.values():  # a child closed by hand before it ran
        if node["status"] == PENDING and not ctx.tracker.get_issue(node["issue"], comments=False).is_open:
            node.update(status=CLOSED, reason="the child issue was closed before it ran")
    tree = planning.propagate(plan, tree)
    depth = planning.layers(plan["children"])
    batch = [c["key"] for c in planning.ordered(plan) if tree[c["key"]]["status"] in (RUNNING, PASSED)]  # interrupted
    if not batch:
        batch = planning.next_batch(plan, tree, ctx.policy.config.plan.child_concurrency)
        if not batch:
            ctx.set_fact("plan_tree", tree)
            return {"ran": [], "tree": planning.summary(tree)}
        layer_base = dict(facts.get("layer_base") or {})
        wave = str(depth[batch[0]])
        layer_base.setdefault(wave, ctx.git.branch_head(facts["integration_branch"]))
        for key in batch:
            tree[key].update(status=RUNNING, base_sha=layer_base[wave], wave=depth[key] + 1, reason=None)
        ctx.set_facts({"layer_base": layer_base, "plan_tree": tree})  # the dispatch: each child's snapshot reads it
    to_run = [k for k in batch if tree[k]["status"] == RUNNING]
    exits = _run_children(ctx, {k: tree[k]["issue"] for k in to_run})
    for key in to_run:
        tree[key].update(_outcome(ctx, key, tree[key]["issue"], exits[key]))
        ctx.set_fact("plan_tree", tree)
    for key in batch:  # dependency order: batch follows the wave order
        node = tree[key]
        if node["status"] != PASSED:
            continue
        merged, conflicts = ctx.git.merge_into(
            facts["integration_branch"],
            node["head_sha"],
            f"Merge child {key} (#{node['issue']}) into {facts['integration_branch']}\n\n"
            f"Orch-Run: {ctx.require_run()}\n",
        )
        if merged is None:
            node.update(
                status=CONFLICT,
                reason="merging it into the integration branch conflicts on " + ", ".join(conflicts[:5]),
            )
        else:
            node.update(status=MERGED, merge_sha=merged, reason=None)
        ctx.set_fact("plan_tree", tree)
    tree = planning.propagate(plan, tree)
    ctx.set_fact("plan_tree", tree)
    return {"ran": to_run, "tree": planning.summary(tree)}


def _run_children(ctx: ActionContext, issues: dict[str, int]) -> dict[str, int]:
    """`orch run --issue N` for each child at once (the batch is already within the concurrency); their exit codes."""
    out_dir = ctx.evidence_dir() / "children"
    out_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for key, number in issues.items():
            argv = run_argv(ctx.repo, number, ctx.policy.path)
            with (
                open(out_dir / f"{key}-step{ctx.step_id}.json", "ab") as out,
                open(out_dir / f"{key}-step{ctx.step_id}.log", "ab") as err,
            ):
                procs[key] = subprocess.Popen(
                    argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ctx.repo, preexec_fn=_die_with_parent
                )
        return {key: proc.wait() for key, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _die_with_parent() -> None:
    """In the child process: receive SIGTERM when the parent's runner dies, so a crash leaves no orphan run."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the child then finishes on its own
        pass


def _outcome(ctx: ActionContext, key: str, number: int, code: int) -> dict[str, Any]:
    """What a child's run came to, read from the store (its own lifecycle is the truth, not the exit code)."""
    from statemachine.errors import EXIT_STUCK

    state, run_id = ctx.store.state_of(number)
    child = ctx.store.facts(run_id) if run_id else {}
    ours = (child.get("parent") or {}).get("run_id") == ctx.run_id
    if ctx.store.pending_step(number) is None and ours:
        if state == "review" and child.get("head_sha"):
            return {
                "status": PASSED,
                "head_sha": child["head_sha"],
                "run_id": run_id,
                "summary": str((child.get("report") or {}).get("summary", "")).strip(),
            }
        if state == "blocked":
            return {
                "status": BLOCKED,
                "run_id": run_id,
                "reason": f"its run {run_id} ended blocked; the report on #{number} says why",
            }
    if code == EXIT_STUCK and ctx.store.pending_step(number) is None:
        issue = ctx.tracker.get_issue(number, comments=False)
        why = (
            "it was closed"
            if not issue.is_open
            else _held(ctx, key, issue) or f"no transition could start it (see `orch explain --issue {number}`)"
        )
        return {"status": BLOCKED, "reason": f"the child could not start: {why}"}
    raise OrchError(
        f"child #{number} ({key}) stopped before its lifecycle came to rest (exit {code})",
        "run the parent again: the child resumes where it stopped",
    )


def _held(ctx: ActionContext, key: str, issue: Any) -> str | None:
    """What held a child that could not start, and what a maintainer does about it (`orch explain`'s lead), from the
    verdicts its `orch run --json` printed (the last document in its output file: a resumed step appends); None when
    they cannot be read. The file is written by orch's own child process, never by an agent."""
    from statemachine import lead

    try:
        text = (ctx.evidence_dir() / "children" / f"{key}-step{ctx.step_id}.json").read_text()
    except OSError:
        return None
    decoder, pos, doc = json.JSONDecoder(), 0, None
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not steps or not isinstance(steps[-1], dict) or steps[-1].get("fired"):
        return None
    last = steps[-1]
    who = lead.Issue(issue.number, tuple(issue.labels), ctx.policy.config.tracker.kind == "local")
    said = lead.lead(ctx.policy, str(last.get("source")), who, list(last.get("evaluations") or []))
    return f"{said.reason} — {said.action}"


def integrate(ctx: ActionContext) -> dict[str, Any]:
    """Inspect the integration branch as one change from the base (the checks run next, on its exact commit)."""
    from statemachine import inspect_candidate as insp

    facts = ctx.facts()
    branch, base = facts["integration_branch"], facts["base_sha"]
    head = ctx.git.branch_head(branch)
    if head is None:
        raise OrchError(f"the integration branch {branch} disappeared", "requeue the parent to plan and run it again")
    worktree = ctx.orch_dir / "worktrees" / f"integration-{ctx.issue}-{ctx.require_run()}"
    ctx.git.add_detached_worktree(worktree, head)
    try:
        cap = ctx.git.capture(worktree, base, start=head)
        diff = ctx.git.diff_text(base, cap.tree)
        symlinks = insp.escaping_symlinks(worktree, [c.path for c in cap.changes if c.status != "D"])
    finally:
        ctx.git.remove_worktree(worktree)
    secrets: list[Any] = insp.scan_tree_values(ctx.git, base, cap.tree, ctx.secrets)  # the values the runner holds
    destructive: list[Any] = []
    for path, added in insp.added_lines(diff).items():
        secrets += insp.scan_secrets(added, f"diff:{path}")
        destructive += insp.scan_destructive(added, f"diff:{path}")
    folder = ctx.evidence_dir() / "integration"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "diff.patch").write_text(ctx.secrets.redact(diff))
    changes = [{"path": c.path, "status": c.status} for c in cap.changes]
    ctx.set_facts(
        {
            "branch": branch,
            "candidate_sha": head,
            "head_sha": head,
            "tree": cap.tree,
            "changes": changes,
            "changed_lines": cap.changed_lines,
            "checks": None,
            "inspection": {
                "secrets": [f.as_json() for f in secrets],
                "destructive": [f.as_json() for f in destructive],
                "git_tampering": [],
                "symlinks": [f.as_json() for f in symlinks],
                "edited_after_report": [],
            },
        }
    )
    return {"head": head, "files": len(changes), "lines": cap.changed_lines}


def hand_over_children(ctx: ActionContext) -> dict[str, Any]:
    """Label each child for review and point it at the parent's draft pull request."""
    facts = ctx.facts()
    pr = facts.get("pull_request") or {}
    label = ctx.policy.label("review")
    done = []
    for key, node in sorted(facts["plan_tree"].items()):
        number = node["issue"]
        ctx.tracker.add_labels(number, [label])
        marker = f"<!-- orch:run={ctx.require_run()} kind=handover-{key} -->"
        if ctx.first_try or ctx.tracker.find_comment(number, marker) is None:
            ctx.tracker.post_comment(
                number, reporting.handover_comment(ctx.issue, facts["integration_branch"], pr) + "\n\n" + marker
            )
        done.append(number)
    return {"children": done}
