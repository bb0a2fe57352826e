"""`orch prompt --issue N`: print the rendered prompt for an issue without running anything."""

from __future__ import annotations

import argparse
from dataclasses import replace

from statemachine import prompting
from statemachine.actions import trusted_comments
from statemachine.errors import EXIT_OK
from statemachine.output import Output
from statemachine.runtime import open_runtime


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        issue = rt.tracker.get_issue(args.issue)
        _state, run_id = rt.store.state_of(args.issue)
        facts = rt.store.facts(run_id)
        if facts.get("authorized_text"):  # the run's agent works from the text authorized at the claim
            issue = replace(issue, title=facts["authorized_text"]["title"], body=facts["authorized_text"]["body"])
        comments, _ = trusted_comments(rt.tracker, issue.comments, dict(facts.get("author_permissions") or {}))
        issue = replace(issue, comments=comments)
        values = prompting.issue_values(issue, rt.repo, rt.policy.config.rules, list(facts.get("findings", [])))
        values.update(
            report_path=rt.repo / ".orch" / "runs" / (run_id or "RUN") / "attempt-N" / "report.json",
            worktree=facts.get("worktree", "(created when the run starts)"),
            branch=facts.get("branch", "(set when the run starts)"),
            base_sha=facts.get("base_sha", "(the base branch's commit when the run starts)"),
            attempt=int(facts.get("attempt", 0)) + 1,
        )
        text = prompting.render(args.template, rt.repo, values)
        out.emit("prompt", {"issue": args.issue, "template": args.template, "prompt": text}, text)
        return EXIT_OK
    finally:
        rt.close()
