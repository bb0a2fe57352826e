"""`orch show --issue N`: the issue's steps, runs and where their evidence is."""

from __future__ import annotations

import argparse

from statemachine import ledger
from statemachine.errors import EXIT_OK
from statemachine.output import Output
from statemachine.runtime import open_runtime


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        issue = rt.tracker.get_issue(args.issue)
        state, run_id = rt.store.state_of(args.issue)
        steps = rt.store.steps(args.issue)
        runs = sorted({s.run_id for s in steps if s.run_id})
        lines = [f"#{issue.number} {issue.title}: {state}" + (f" (run {run_id})" if run_id else "")]
        for s in steps:
            lines.append(f"  {s.started_at}  {s.source} --{s.trigger}--> {s.dest}  [{s.status}]")
        for r in runs:
            lines.append(f"  evidence for run {r}: {rt.repo / '.orch' / 'runs' / r}")
        usage = ledger.run_usage(rt.store, run_id, args.issue, rt.policy.config.budget.as_dict())
        lines += usage.pop("lines")
        data = {
            "issue": args.issue,
            "state": state,
            "run_id": run_id,
            "steps": [
                {
                    "id": s.id,
                    "trigger": s.trigger,
                    "source": s.source,
                    "dest": s.dest,
                    "status": s.status,
                    "started_at": s.started_at,
                    "finished_at": s.finished_at,
                    "run_id": s.run_id,
                }
                for s in steps
            ],
            "evidence": {r: str(rt.repo / ".orch" / "runs" / r) for r in runs},
            "journal": rt.store.journal(args.issue),
            "usage": usage,
        }
        out.emit("show", data, "\n".join(lines))
        return EXIT_OK
    finally:
        rt.close()
