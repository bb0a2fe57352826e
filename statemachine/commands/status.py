"""`orch status`: each issue carrying an orch label, its lifecycle state, and why it cannot move if it cannot."""

from __future__ import annotations

import argparse

from statemachine.engine import evaluate, run_facts
from statemachine.errors import EXIT_OK
from statemachine.model import Snapshot
from statemachine.output import Output
from statemachine.runtime import open_runtime


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        names = set(rt.policy.label_names.values())
        states = rt.store.known_issues()
        rows = []
        for issue in rt.tracker.list_issues(state="open"):
            if not names.intersection(issue.labels) and issue.number not in states:
                continue
            state, run_id = states.get(issue.number, ("queued", None))
            snap = Snapshot(issue=issue, state=state, run=run_facts(run_id, rt.store.facts(run_id)),
                            labels=rt.policy.label_names, settings=rt.policy.settings, taken_at="")
            evs = evaluate(rt.policy, snap)
            ready = next((e for e in evs if e.ok), None)
            reason = None
            if ready is None:
                failed = [f"{n}: {v.reason}" for e in evs[:1] for n, v in e.verdicts if not v.ok]
                reason = "; ".join(failed) or "no transition leaves this state"
            rows.append({"number": issue.number, "title": issue.title, "state": state, "run_id": run_id,
                         "next": ready.transition.trigger if ready else None, "reason": reason})
        lines = [f"#{r['number']:<4} {r['state']:<12} " + (f"next: {r['next']}" if r["next"] else f"waiting: {r['reason']}") + f"  {r['title']}"
                 for r in rows] or ["no issue carries an orch label"]
        out.emit("status", {"issues": rows}, "\n".join(lines))
        return EXIT_OK
    finally:
        rt.close()
