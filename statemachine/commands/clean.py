"""`orch clean`: remove the worktrees and local branches that finished runs left behind, with `--dry-run`.

What a run in progress needs is never touched: a worktree or branch belongs to a run, and the run's issue says where it
stands in the store. Kept: the current run of an issue in any state but `blocked` (a run under way or interrupted is
resumed from its worktree; an issue in `review` keeps its branch, the head of its draft pull request), and every
branch an open local pull request names. Removed: the worktrees of blocked runs and of runs a later run replaced, the
checks' and proof app's worktrees of those runs, their local branches, and the idle worktrees kept for reuse
(limits.idle_workspaces). Evidence under `.orch/runs/` stays.
A folder whose run orch does not know is reported and left alone.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from statemachine.adapters import workspace_pool
from statemachine.adapters.git import CliGit
from statemachine.errors import EXIT_OK, GitError
from statemachine.model import INITIAL_STATE
from statemachine.output import Output
from statemachine.runtime import STATE_DB, find_repo, open_store
from statemachine.store import Store

# a run id (issue-nonce) in a worktree's folder name: issue-N-RUN, plan-N-RUN, integration-N-RUN, CHECK-RUN-ATTEMPT,
# proof-app-RUN-ATTEMPT, proof-rerun-RUN
POOL_NAME = workspace_pool.POOL.name
RUN_IN_NAME = re.compile(r"(?:^|-)(\d+-[0-9a-f]{10})(?:-\d+)?$")


@dataclass
class Item:
    kind: str  # worktree | branch
    name: str
    action: str  # remove | keep
    reason: str
    issue: int | None = None
    run_id: str | None = None


def _stays(state: str, current: str | None, run_id: str) -> str | None:
    """Why a run's worktree stays, or None when the run is finished."""
    if run_id != current:
        return None
    if state in ("blocked", INITIAL_STATE):
        return None
    return f"its issue is in {state}"


def worktrees(root: Path, store: Store, runs: dict[str, int]) -> list[Item]:
    folder = root / ".orch" / "worktrees"
    known = store.known_issues()
    items = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry == workspace_pool.pool_dir(root):
            continue
        match = RUN_IN_NAME.search(entry.name)
        run_id = match.group(1) if match else None
        if run_id is None or run_id not in runs:
            items.append(Item("worktree", entry.name, "keep", "no run orch knows made it; remove it by hand"))
            continue
        issue = runs[run_id]
        state, current = known.get(issue, (INITIAL_STATE, None))
        why = _stays(state, current, run_id)
        if why:
            items.append(Item("worktree", entry.name, "keep", why, issue, run_id))
        else:
            reason = f"issue #{issue} is {state}" if run_id == current else f"run {current} replaced it"
            items.append(Item("worktree", entry.name, "remove", reason, issue, run_id))
    for slot in workspace_pool.idle(root):
        items.append(Item("worktree", f"{POOL_NAME}/{slot.name}", "remove", "idle, kept for reuse"))
    return items


def branches(root: Path, store: Store, git: CliGit, runs: dict[str, int], gone: set[str]) -> list[Item]:
    """Local branches that runs made (their `branch` fact), each judged by every run that used it."""
    known = store.known_issues()
    users: dict[str, list[str]] = {}
    for run_id, value in store.query("SELECT run_id, value FROM facts WHERE key='branch'"):
        name = json.loads(value)
        if isinstance(name, str) and run_id in runs:
            users.setdefault(name, []).append(run_id)
    open_heads = _open_pull_heads(store)
    checked_out = git.worktree_branches()
    items = []
    for name in sorted(users):
        if git.branch_head(name) is None:
            continue
        keep = None
        for run_id in users[name]:
            state, current = known.get(runs[run_id], (INITIAL_STATE, None))
            why = _stays(state, current, run_id)
            if why:
                keep = (
                    f"issue #{runs[run_id]} is {state}" if state != "review" else f"issue #{runs[run_id]} is in review"
                )
                break
        if keep is None and name in open_heads:
            keep = f"the head of open pull request #{open_heads[name]}"
        holder = checked_out.get(name)
        if keep is None and holder is not None and holder.name not in gone:
            keep = f"checked out at {holder}"
        issue = runs[users[name][-1]]
        items.append(
            Item("branch", name, "keep" if keep else "remove", keep or f"its runs are finished (issue #{issue})", issue)
        )
    return items


def _open_pull_heads(store: Store) -> dict[str, int]:
    """The local tracker's open pull requests by head branch (none on another tracker: its store has none)."""
    from statemachine.adapters import local_prs

    closed = {n for n, s in local_prs.pull_states(store).items() if s.state == "closed"}
    return {str(head): int(n) for n, head in store.query("SELECT number, head FROM tracker_pulls") if n not in closed}


def main(args: argparse.Namespace, out: Output) -> int:
    root = find_repo(args.repo)
    if not (root / STATE_DB).exists():
        out.emit("clean", {"dry_run": args.dry_run, "items": []}, "nothing to clean: orch has not run here")
        return EXIT_OK
    store = open_store(root)
    try:
        git = CliGit(root)
        runs = {str(r): int(i) for r, i in store.query("SELECT run_id, issue FROM runs")}
        items = worktrees(root, store, runs)
        gone = {i.name for i in items if i.action == "remove"}
        items += branches(root, store, git, runs, gone)
        if not args.dry_run:
            for item in items:
                if item.action != "remove":
                    continue
                try:
                    if item.kind == "worktree":
                        path = root / ".orch" / "worktrees" / item.name
                        git.remove_worktree(path)
                        if path.exists():  # never registered with git, or git refused: the folder itself
                            workspace_pool.force_rmtree(path)
                    else:
                        git.delete_branch(item.name)
                except (GitError, OSError) as exc:
                    item.action, item.reason = "keep", f"could not remove it: {exc}"
            git.prune_worktrees()
    finally:
        store.close()
    verb = "would remove" if args.dry_run else "removed"
    lines = [
        f"{verb if i.action == 'remove' else 'kept'} {i.kind} {i.name}: {i.reason}"
        for i in items
        if i.action == "remove" or args.verbose or i.reason.startswith(("no run", "could not"))
    ]
    removed = sum(1 for i in items if i.action == "remove")
    summary = f"{verb} {removed} of {len(items)} worktrees and branches" + (" (--dry-run)" if args.dry_run else "")
    out.emit("clean", {"dry_run": args.dry_run, "items": [asdict(i) for i in items]}, "\n".join([*lines, summary]))
    return EXIT_OK
