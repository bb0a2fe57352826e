"""`orch step --issue N` fires exactly one transition; `orch run --issue N` steps until the issue rests."""

from __future__ import annotations

import argparse
from typing import cast

from statemachine.commands.explain import render_evaluations
from statemachine.engine import Engine, StepOutcome
from statemachine.errors import EXIT_BLOCKED, EXIT_OK, EXIT_STUCK
from statemachine.output import Output
from statemachine.ports import Tracker
from statemachine.runtime import open_runtime
from statemachine.tracker_cache import RunReads


def describe(o: StepOutcome) -> str:
    if o.fired is None and o.note:
        return f"issue #{o.issue}: {o.note}"
    if o.fired is None:
        return "\n".join(
            [f"issue #{o.issue}: no transition can fire from {o.source}", *render_evaluations(o.evaluations)]
        )
    t = o.fired.transition
    acts = ", ".join(a.label() for a in t.actions) or "no actions"
    again = " (resumed after an interruption)" if o.resumed else ""
    return f"issue #{o.issue}: {o.source} --{t.trigger}--> {o.dest}{again}  [{acts}]"


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        rt.jail.require()  # before anything is claimed: never run an agent unjailed where the policy wants the jail
        rt.tracker = cast(Tracker, RunReads(rt.tracker))  # the run's steps do not ask the tracker twice
        engine = Engine(rt)
        if args.command == "step":
            outcomes = [engine.step(args.issue)]
        else:
            outcomes = []
            for o in engine.iter_run(args.issue):
                outcomes.append(o)
                out.line(describe(o))
        last = outcomes[-1]
        final = last.dest or last.source
        data = {"issue": args.issue, "final_state": final, "steps": [o.as_json() for o in outcomes]}
        if args.command == "step":
            out.emit("step", data, describe(last))
        else:
            pr = rt.store.facts(last.run_id).get("pull_request") if last.run_id else None
            summary = f"issue #{args.issue} rests in {final}" + (
                f"; draft pull request #{pr['number']} ({pr['url']})" if pr and final == "review" else ""
            )
            data["pull_request"] = pr
            out.emit("run", data, summary)
        if args.command == "step":
            return EXIT_STUCK if last.fired is None else (EXIT_BLOCKED if final == "blocked" else EXIT_OK)
        # run: 0 rests in review, 5 rests in blocked, 4 stopped elsewhere (nothing can fire, or the claim was lost)
        if final == "blocked":
            return EXIT_BLOCKED
        if final != "review":
            return EXIT_STUCK
        return EXIT_OK
    finally:
        rt.close()
