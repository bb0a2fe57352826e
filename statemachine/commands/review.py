"""`orch review --issue N --request-changes TEXT`: a review of the run's draft pull request on the local tracker.

On GitHub, people review on GitHub; this command gives the embedded tracker the same loop: a review that
requests changes (from a user with write permission) sends the issue from review back to rework.
"""

from __future__ import annotations

import argparse

from statemachine.adapters import local_prs
from statemachine.adapters.local import _user
from statemachine.commands.issue import local_tracker
from statemachine.errors import EXIT_OK, NotFoundError, OrchError
from statemachine.guards import WRITE_PERMISSIONS
from statemachine.output import Output
from statemachine.runtime import open_runtime


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        tracker = local_tracker(rt, "`orch review` records reviews on", "review the pull request on the tracker itself")
        tracker.get_issue(args.issue, comments=False)
        pulls = tracker.pulls(args.issue)
        if not pulls:
            raise NotFoundError(
                f"issue #{args.issue} has no pull request to review",
                f"`orch run --issue {args.issue}` opens one when the run passes its gates",
            )
        pull = pulls[-1]
        closed = local_prs.state_of(tracker.store, pull.number)
        if closed.state == "closed":
            raise OrchError(
                f"pull request {pull.number} of issue #{args.issue} is closed (by {closed.by} at {closed.at})",
                "a closed pull request takes no review; `orch prs list --all` lists the pull requests",
            )
        if args.line is not None and args.file is None:
            raise OrchError(
                "--line needs --file", "orch review --issue 3 --comment 'rename this' --file app.py --line 4"
            )
        author = args.author or _user()
        if args.approve:
            state, text = "APPROVED", ""
        elif args.request_changes is not None:
            state, text = "CHANGES_REQUESTED", args.request_changes
        else:
            state, text = "COMMENTED", args.comment
        if state != "APPROVED" and not str(text).strip():
            raise OrchError("the review text is empty", "say what should change")
        inline = ((args.file, args.line, text),) if args.file else ()
        review = tracker.submit_review(
            pull.number, author, state, "" if inline and state == "COMMENTED" else text, inline
        )
        words = {"APPROVED": "approved", "CHANGES_REQUESTED": "requested changes on", "COMMENTED": "commented on"}[
            state
        ]
        permission = tracker.permission(author)
        if state == "APPROVED":
            then = ""
        elif permission in WRITE_PERMISSIONS:
            then = f"; `orch run --issue {args.issue}` takes it up"
        else:  # review_feedback counts only reviewers who may steer runs
            then = (
                f"; it will be ignored: {author} has {permission} permission, and only a reviewer with write, "
                "maintain or admin permission steers runs (the local user is admin)"
            )
        out.emit(
            "review",
            {
                "issue": args.issue,
                "pull_request": pull.number,
                "review": review.id,
                "state": state,
                "author": author,
                "permission": permission,
                "steers": state != "APPROVED" and permission in WRITE_PERMISSIONS,
            },
            f"{author} {words} pull request {pull.number} of issue #{args.issue}{then}",
        )
        return EXIT_OK
    finally:
        rt.close()
