"""`orch prs list|show|close`: the local tracker's draft pull requests from the command line.

On GitHub the pull requests live on GitHub: list, read and close them there (or with `gh pr`); these commands refuse.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from statemachine.adapters import local_prs
from statemachine.adapters.local import LocalTracker, _user
from statemachine.commands.issue import local_tracker
from statemachine.errors import EXIT_OK, NotFoundError
from statemachine.model import PullRequest
from statemachine.output import Output
from statemachine.runtime import open_runtime


def pull_json(pull: PullRequest, state: local_prs.PullState) -> dict[str, Any]:
    return {
        "number": pull.number,
        "issue": pull.issue,
        "title": pull.title,
        "state": state.state,
        "closed_by": state.by if state.state == "closed" else None,
        "closed_at": state.at if state.state == "closed" else None,
        "draft": pull.draft,
        "head": pull.head,
        "base": pull.base,
        "head_sha": pull.head_sha,
        "base_sha": pull.base_sha,
        "url": pull.url,
    }


def find(tracker: LocalTracker, number: int) -> PullRequest:
    for pull in tracker.pulls():
        if pull.number == number:
            return pull
    raise NotFoundError(
        f"pull request {number} does not exist in the local tracker", "`orch prs list --all` lists them all"
    )


def diff_stat(repo: Path, pull: PullRequest) -> tuple[str | None, str | None]:
    """``git diff --stat`` from the pull request's base commit to its head commit, or why there is none."""
    from statemachine.adapters.gitrun import run_git_result

    result = run_git_result(["diff", "--stat", pull.base_sha, pull.head_sha, "--"], repo)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["git diff failed"])[-1]
        return None, f"no diff: {why} (were the commits of branch {pull.head} removed?)"
    return result.stdout.rstrip() or "(no changes)", None


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        tracker = local_tracker(
            rt,
            "`orch prs` lists, shows and closes the draft pull requests of",
            "on GitHub the pull requests are on GitHub: use its pull request page, or `gh pr list`, "
            "`gh pr view N` and `gh pr close N`",
        )
        states = local_prs.pull_states(tracker.store)
        opened = local_prs.PullState("open")
        cmd = args.prs_command
        if cmd == "list":
            pulls = [p for p in tracker.pulls() if args.all or states.get(p.number, opened).state == "open"]
            rows = [pull_json(p, states.get(p.number, opened)) for p in pulls]
            text = "\n".join(
                f"{r['number']:<4} {r['state']:<6} #{r['issue']:<4} {r['head']} -> {r['base']}  {r['title']}"
                for r in rows
            ) or ("no pull requests" if args.all else "no open pull requests (`orch prs list --all`: closed ones too)")
            out.emit("pull_requests", {"pull_requests": rows}, text)
        elif cmd == "show":
            pull = find(tracker, args.number)
            data = pull_json(pull, states.get(pull.number, opened))
            stat, problem = diff_stat(rt.repo, pull)
            data.update(body=pull.body, diff_stat=stat, diff_error=problem)
            state = data["state"] + (
                f" (closed by {data['closed_by']} at {data['closed_at']})" if data["closed_by"] else ""
            )
            lines = [
                f"pull request {pull.number}: {pull.title}",
                f"issue: #{pull.issue}",
                f"state: {state}, draft",
                f"branch: {pull.head} ({pull.head_sha[:12]}) into {pull.base} ({pull.base_sha[:12]})",
                "",
                pull.body.strip() or "(no description)",
                "",
                stat or str(problem),
            ]
            out.emit("pull_request", data, "\n".join(lines))
        else:  # close
            pull = find(tracker, args.number)
            changed = local_prs.set_closed(tracker.store, pull, True, _user())
            data = pull_json(pull, local_prs.state_of(tracker.store, pull.number))
            out.emit(
                "pull_request",
                {**data, "changed": changed},
                f"closed pull request {pull.number} of issue #{pull.issue}; its branch {pull.head} is kept"
                if changed
                else f"pull request {pull.number} was already closed (by {data['closed_by']} at {data['closed_at']})",
            )
        return EXIT_OK
    finally:
        rt.close()
