"""`orch issue new|list|show|label|comment|edit|close|reopen`: the embedded local tracker from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from statemachine.adapters.local import LocalTracker
from statemachine.errors import EXIT_OK, OrchError
from statemachine.model import Issue
from statemachine.output import Output
from statemachine.runtime import Runtime, open_runtime


def issue_json(issue: Issue, state: str | None = None) -> dict[str, Any]:
    return {
        "number": issue.number,
        "title": issue.title,
        "body": issue.body,
        "state": issue.state,
        "labels": list(issue.labels),
        "lifecycle_state": state,
        "comments": [
            {"id": c.id, "author": c.author, "body": c.body, "created_at": c.created_at} for c in issue.comments
        ],
    }


def local_tracker(rt: Runtime, what: str, hint: str) -> LocalTracker:
    """The runtime's tracker when it is the embedded one; ``what`` says which command needs it."""
    if not isinstance(rt.tracker, LocalTracker):
        raise OrchError(f"{what} the embedded local tracker, and this policy uses another one", hint)
    return rt.tracker


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        tracker = local_tracker(rt, "`orch issue` manages", "file issues on the tracker itself")
        cmd = args.issue_command
        if cmd == "new":
            issue = tracker.create_issue(args.title, _body(args) or "", args.label)
            out.emit(
                "issue",
                issue_json(issue),
                f"#{issue.number} {issue.title}" + (f" [{', '.join(issue.labels)}]" if issue.labels else ""),
            )
        elif cmd == "list":
            issues = tracker.list_issues(state="all" if args.all else "open")
            states = rt.store.known_issues()
            rows = [issue_json(i, states.get(i.number, ("queued", None))[0]) for i in issues]
            text = (
                "\n".join(
                    f"#{i.number:<4} {i.state:<6} {states.get(i.number, ('queued', None))[0]:<12} {i.title}"
                    + (f"  [{', '.join(i.labels)}]" if i.labels else "")
                    for i in issues
                )
                or "no issues"
            )
            out.emit("issues", {"issues": rows}, text)
        elif cmd == "show":
            issue = tracker.get_issue(args.number)
            state = rt.store.state_of(issue.number)[0]
            lines = [
                f"#{issue.number} {issue.title} ({issue.state}, lifecycle: {state})",
                "labels: " + (", ".join(issue.labels) or "(none)"),
                "",
                issue.body or "(no description)",
            ]
            for c in issue.comments:
                lines += ["", f"--- {c.author} at {c.created_at}", c.body]
            out.emit("issue", issue_json(issue, state), "\n".join(lines))
        elif cmd == "label":
            add, remove = [], []
            for change in args.changes:
                if change.startswith("+") and len(change) > 1:
                    add.append(change[1:])
                elif change.startswith("-") and len(change) > 1:
                    remove.append(change[1:])
                else:
                    raise OrchError(
                        f"label change {change!r} must start with + or -",
                        "orch issue label 3 +agent:auto -agent:blocked",
                    )
            tracker.add_labels(args.number, add)
            tracker.remove_labels(args.number, remove)
            issue = tracker.get_issue(args.number)
            out.emit("issue", issue_json(issue), f"#{issue.number} labels: " + (", ".join(issue.labels) or "(none)"))
        elif cmd == "comment":
            comment = tracker.post_comment(args.number, args.text, author=args.author or _user())
            out.emit("comment", {"issue": args.number, "id": comment.id}, f"commented on #{args.number}")
        elif cmd == "edit":
            if args.title is None and args.body is None and args.body_file is None:
                raise OrchError("nothing to edit", "give --title, --body or --body-file")
            issue = tracker.update_issue(args.number, title=args.title, body=_body(args), editor=args.author or _user())
            out.emit("issue", issue_json(issue), f"#{issue.number} edited")
        elif cmd in ("close", "reopen"):
            tracker.set_state(args.number, "closed" if cmd == "close" else "open")
            out.emit(
                "issue",
                issue_json(tracker.get_issue(args.number)),
                f"#{args.number} {cmd}{'d' if cmd == 'close' else 'ed'}",
            )
        return EXIT_OK
    finally:
        rt.close()


def _body(args: argparse.Namespace) -> str | None:
    """The body from --body or --body-file, None when neither was given."""
    if args.body_file is not None:
        try:
            return str(args.body_file.read_text())
        except OSError as exc:
            raise OrchError(f"cannot read {args.body_file}: {exc.strerror}", "check the path") from None
    return args.body if args.body is not None else None


def _user() -> str:
    from statemachine.adapters.local import _user as user

    return user()
