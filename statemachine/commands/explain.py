"""`orch explain --issue N`: every outgoing transition of the current state with every guard's verdict; no side effects."""

from __future__ import annotations

import argparse

from statemachine.engine import Engine, Evaluation
from statemachine.errors import EXIT_OK
from statemachine.output import Output
from statemachine.runtime import open_runtime


def render_evaluations(evaluations: list[Evaluation] | tuple[Evaluation, ...], chosen_first: bool = True) -> list[str]:
    lines = []
    first = next((e for e in evaluations if e.ok), None)
    for e in evaluations:
        t = e.transition
        mark = "would fire" if e is first else ("ready, but an earlier transition fires first" if e.ok else "blocked")
        human = " (human)" if t.human else ""
        lines.append(f"  {t.trigger} → {t.dest}{human}: {mark}")
        for name, v in e.verdicts:
            lines.append(f"    {name}: {'PASS' if v.ok else 'FAIL'} {v.reason}")
            for ev in v.evidence[:5]:
                lines.append(f"      {ev}")
        if not e.verdicts:
            lines.append("    (no guards)")
    return lines


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        snap, evaluations = Engine(rt).explain(args.issue)
        text = [f"issue #{args.issue} ({snap.issue.title}) is {snap.state}" + (f", run {snap.run.run_id}" if snap.run.run_id else "")]
        if not evaluations:
            text.append("  no transition leaves this state")
        text += render_evaluations(evaluations)
        out.emit("explain", {"issue": args.issue, "state": snap.state, "run_id": snap.run.run_id,
                             "transitions": [e.as_json() for e in evaluations]}, "\n".join(text))
        return EXIT_OK
    finally:
        rt.close()
