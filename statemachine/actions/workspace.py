"""Effects on git: the run's worktree, the captured and inspected candidate commit, the branch, the push, the proof
branch, and the worktree's removal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from statemachine import limits
from statemachine.actions.context import ActionContext, _worktree_path, slugify
from statemachine.errors import OrchError


def create_worktree(ctx: ActionContext) -> dict[str, Any]:
    """Make a git worktree on the run's branch, from the base branch's exact commit."""
    facts = ctx.facts()
    run_id = ctx.require_run()
    parent = facts.get("parent")
    if parent:  # a child starts from its parent's integration branch as it stood when its wave began
        base_branch, base_sha = (
            facts.get("base_branch") or parent["integration_branch"],
            facts.get("base_sha") or parent["base_sha"],
        )
    else:
        base_branch = facts.get("base_branch") or ctx.git.base_branch(ctx.policy.config.tracker.base_branch)
        base_sha = facts.get("base_sha") or ctx.git.head_sha(base_branch)
    issue = ctx.snapshot.issue
    branch = facts.get("branch") or ctx.policy.config.branch_template.format(
        number=issue.number, slug=slugify(issue.title), run_id=run_id
    )
    worktree = _worktree_path(ctx, facts)
    for key, value in (
        ("base_branch", base_branch),
        ("base_sha", base_sha),
        ("branch", branch),
        ("worktree", str(worktree)),
    ):
        if key not in facts:
            ctx.set_fact(key, value)
    ctx.git.ensure_worktree(worktree, branch, base_sha)
    return {"worktree": str(worktree), "branch": branch, "base_sha": base_sha}


def capture_changes(ctx: ActionContext) -> dict[str, Any]:
    """Capture the whole change set (committed, staged, unstaged, untracked), inspect it, and freeze it as the candidate commit."""
    facts = ctx.facts()
    worktree = Path(facts["worktree"])
    if not (worktree / ".git").exists():
        error = f"the worktree {worktree} disappeared before the runner could capture the agent's work"
        ctx.set_facts({"changes": None, "inspection": None, "candidate_sha": None, "capture_error": error})
        return {"error": error}
    published = facts.get("head_sha")  # set once the branch was published: new work stacks on it, never rewrites it
    # tool caches (gates.ignore_untracked) are left out when untracked: never the agent's change, never committed
    cap = ctx.git.capture(worktree, facts["base_sha"], start=published, ignore=ctx.policy.config.gates.ignore_untracked)
    changes = [{"path": c.path, "status": c.status} for c in cap.changes]
    sizes = limits.changed_sizes(ctx.git, facts["base_sha"], cap.tree)  # the runner's measure, for within_byte_limits
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
    ctx.set_facts(
        {
            "capture_error": None,
            "changes": changes,
            "changes_by_kind": cap.by_kind,
            "changed_lines": cap.changed_lines,
            "changed_bytes": changed_bytes,
            "tree": cap.tree,
            "candidate_sha": candidate,
            "inspection": inspection,
        }
    )
    (attempt_dir / "changes.json").write_text(
        json.dumps(
            {
                "tree": cap.tree,
                "candidate": candidate,
                "changes": changes,
                "by_kind": cap.by_kind,
                "sizes": sizes,
                "inspection": inspection,
            },
            indent=2,
        )
    )
    return {
        "tree": cap.tree,
        "candidate": candidate,
        "files": len(changes),
        "lines": cap.changed_lines,
        "bytes": changed_bytes["total"],
    }


def _inspect(
    ctx: ActionContext, facts: dict[str, Any], worktree: Path, cap: Any, diff: str, attempt_dir: Path
) -> dict[str, Any]:
    """Scan the candidate for secrets, destructive commands, git tampering, escaping symlinks and late edits."""
    from statemachine import inspect_candidate as insp

    values = ctx.secrets
    # the values the runner holds first, so the headline names one: every changed file's bytes as git stores them,
    # then what the agent's run left in its evidence folder (its log, its report; seal_evidence found them there)
    secrets: list[insp.Finding] = insp.scan_tree_values(ctx.git, facts["base_sha"], cap.tree, values)
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
        tampering += ctx.git.inspect_gitdir(own_git, facts.get("head_sha") or facts["base_sha"], facts["branch"])
    before = facts.get("git_before")
    if before:
        after = ctx.git.fingerprint(worktree)
        prefix = ctx.policy.config.branch_template.split("{", 1)[0]
        own = f"refs/heads/{facts['branch']}"

        def refs(text: str) -> set[str]:
            # branches and tags only: remote-tracking refs move when the runner pushes other runs' branches, and
            # other runs' branches (and proof branches) move under concurrent runs in this clone
            return {
                line
                for line in text.splitlines()
                if line.startswith(("refs/heads/", "refs/tags/"))
                and not line.startswith("refs/heads/orch-proof/")
                and not (prefix and line.startswith(f"refs/heads/{prefix}") and not line.startswith(own + " "))
            }

        changed_refs = sorted(refs(before["refs"]) ^ refs(after["refs"]))
        if changed_refs:
            tampering.append("refs changed: " + "; ".join(changed_refs[:6]))
        for key, what in (
            ("head", "the worktree's HEAD moved"),
            ("gitfile", "the worktree's .git file changed"),
            ("config", "the repository's git config changed"),
            ("hooks", "git hooks changed"),
            ("worktree_config", "the worktree's git config changed"),
        ):
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


def commit_changes(ctx: ActionContext) -> dict[str, Any]:
    """Point the run's branch at the candidate commit: exactly the tree that was inspected and checked."""
    facts = ctx.facts()
    branch, candidate = facts["branch"], facts["candidate_sha"]
    reused = ctx.git.branch_head(branch) == candidate
    if not reused:  # the branch, and the index of the run's worktree (its files stay as the agent left them)
        ctx.git.set_branch(branch, candidate, Path(facts["worktree"]))
    ctx.set_fact("head_sha", candidate)
    return {"commit": candidate, "reused": reused}


def push_branch(ctx: ActionContext) -> dict[str, Any]:
    """Push the run's branch to the tracker's remote with the runner's own credential (the local tracker keeps it here)."""
    facts = ctx.facts()
    if not ctx.tracker.capabilities.remote_branches:
        return {"skipped": f"the {ctx.tracker.kind} tracker reads branches from this repository"}
    # the first push of a run may replace an earlier run's branch; later ones (review rounds) only fast-forward
    force = not facts.get("pushed_sha")
    remote = _push(ctx, facts["candidate_sha"], facts["branch"], force=force)
    ctx.set_fact("pushed_sha", facts["candidate_sha"])
    return {"pushed": facts["branch"], "sha": facts["candidate_sha"], "remote": remote, "force": force}


def _push(ctx: ActionContext, sha: str, branch: str, force: bool = True) -> str:
    """Push ``sha`` to ``branch`` on the tracker's remote with the tracker's credential, given to the runner's git alone."""
    remote: str = ctx.policy.config.tracker.remote
    if not ctx.tracker.capabilities.remote_branches:
        raise OrchError(f"the {ctx.tracker.kind} tracker cannot receive branches")
    ctx.git.push(remote, sha, branch, ctx.tracker.push_credential(), force=force)
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
    if not ctx.tracker.capabilities.remote_branches or not proof or not proof.get("dir"):
        return {
            "skipped": "no proof screenshots to publish"
            if ctx.tracker.capabilities.remote_branches
            else f"{ctx.tracker.kind} tracker: kept locally"
        }
    tr = ctx.policy.config.tracker
    api = tr.api_url or "https://api.github.com"
    server = "https://github.com" if "api.github.com" in api else api.split("/api/")[0]
    plan = proof_branch_files(proof, owner=str(tr.owner), repo=str(tr.repo), run_id=ctx.require_run(), server=server)
    if not plan.files:
        ctx.set_fact("proof_published", {"branch": None, "markdown": [], "skipped": plan.skipped})
        return {"published": 0, "skipped": plan.skipped}
    sha = ctx.git.orphan_commit(plan.files, f"Proof screenshots for run {ctx.require_run()}")
    _push(ctx, sha, plan.branch)
    ctx.set_fact("proof_published", {"branch": plan.branch, "markdown": plan.markdown, "skipped": plan.skipped})
    return {"published": len(plan.files), "branch": plan.branch}
