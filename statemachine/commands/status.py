"""`orch status`: each issue carrying an authorizing label, its lifecycle state, and why it cannot move if it cannot.

The reasons come from the same guards `orch explain` evaluates; which to give is the engine's judgement
(engine.why_waiting), printed here as it is. Issues are listed with one paginated request per
100 issues and per label; on GitHub the issues carrying an authorizing label come with who applied it
(``Tracker.labelled_issues``: one GraphQL query per label and per 100 such issues, whatever the repository's
history); a tracker without that bulk read gives the labels' actors in one pass (``label_actors``) or one read per
issue. Permissions are cached per user.
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

from statemachine import ledger
from statemachine.engine import status_of
from statemachine.errors import EXIT_OK
from statemachine.model import Issue
from statemachine.output import Output
from statemachine.runtime import open_runtime
from statemachine.snapshots import prefetch_facts


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    gc.freeze()  # what start-up built lives as long as the process: the collections the rows trigger skip it
    try:
        states = rt.store.known_issues()
        seen: dict[int, Issue] = {}
        bulk: dict[str, dict[int, str]] = {}
        for role in ("auto", "plan_auto", "child"):
            label = rt.policy.label(role)
            both = rt.tracker.labelled_issues(label) if role != "child" else None  # the issues with who labelled them
            if both is not None:
                bulk[label] = both[1]
            for issue in both[0] if both is not None else rt.tracker.list_issues(label=label, state="open"):
                seen.setdefault(issue.number, issue)
        rows: list[dict[str, Any]] = []
        if not bulk and len(seen) > 3:  # one bulk read beats one per issue (None: the tracker says not)
            bulk = rt.tracker.label_actors([rt.policy.label("auto"), rt.policy.label("plan_auto")]) or {}
        memo: dict[Any, Any] = {}  # what depends on the policy and the state alone, worked out once for all rows
        prefetch_facts(rt, [run for n, (_s, run) in states.items() if n in seen and run], memo)
        for number in sorted(seen):
            issue = seen[number]
            state, run_id = states.get(number, ("queued", None))
            snap, evs, waiting = status_of(rt, issue, state, run_id, bulk, memo)
            ready = next((e for e in evs if e.ok), None)
            reason = waiting.text if waiting is not None else None
            parent = snap.parent["number"] if snap.parent else None
            rows.append(
                {
                    "number": number,
                    "title": snap.issue.title,
                    "state": state,
                    "run_id": run_id,
                    "labels": list(snap.issue.labels),
                    "eligible": ready is not None,
                    "next": ready.transition.trigger if ready else None,
                    "reason": reason,
                    "parent": parent,
                    "children": [],
                }
            )
        by_number = {r["number"]: r for r in rows}
        for r in rows:
            if r["parent"] in by_number:
                by_number[r["parent"]]["children"].append(r["number"])

        def line(r: dict[str, Any], indent: str = "") -> str:
            return (
                f"{indent}#{r['number']:<5} {r['state']:<12} "
                + (f"next: {r['next']}" if r["next"] else f"waiting: {r['reason']}")
                + f"  {r['title']}"
            )

        lines = []
        for r in rows:
            if r["parent"] in by_number:
                continue  # shown under its parent
            lines.append(line(r))
            lines += [line(by_number[c], "  └ ") for c in r["children"]]
        lines = lines or ["no open issue carries an authorizing label"]
        budget = rt.policy.config.budget.as_dict()
        usage = ledger.today_summary(rt.store, budget)  # today's agent runs, and what the daily limits leave
        if ledger.limited(budget) or usage["today"]["runs"]:
            lines.append(usage["line"])
        out.emit(
            "status",
            {"issues": rows, "tracker": rt.tracker.kind, "requests": rt.tracker.request_count, "budget": usage},
            "\n".join(lines),
        )
        return EXIT_OK
    finally:
        rt.close()
