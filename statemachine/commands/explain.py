"""`orch explain --issue N`: every outgoing transition of the current state with every guard's verdict; no side effects."""

from __future__ import annotations

import argparse

from statemachine.engine import Engine, Evaluation
from statemachine.errors import EXIT_OK
from statemachine.model import REST_STATES
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
        text = [
            f"issue #{args.issue} ({snap.issue.title}) is {snap.state}"
            + (f", run {snap.run.run_id}" if snap.run.run_id else "")
        ]
        if not evaluations:
            text.append("  no transition leaves this state")
        text += render_evaluations(evaluations)
        arrived = None  # in review or blocked: the verdicts of the step that brought the issue there
        last = next((s for s in reversed(rt.store.steps(args.issue)) if s.status == "done"), None)
        if last is not None and last.dest == snap.state and snap.state in REST_STATES:
            arrived = {
                "step": last.id,
                "source": last.source,
                "trigger": last.trigger,
                "dest": last.dest,
                "transitions": last.verdicts,
            }
            text.append(
                f"  it came to rest by {last.source} --{last.trigger}--> {last.dest}; the verdicts in {last.source} were:"
            )
            for ev in last.verdicts:
                text.append(
                    f"    {ev['trigger']} → {ev['dest']}: {'fired' if ev.get('index') == last.transition_index else 'did not fire'}"
                )
                for g in ev.get("guards", []):
                    v = g["verdict"]
                    text.append(f"      {g['guard']}: {'PASS' if v['ok'] else 'FAIL'} {v['reason']}")
                    text += [f"        {e}" for e in v.get("evidence", [])[:5]]
        out.emit(
            "explain",
            {
                "issue": args.issue,
                "state": snap.state,
                "run_id": snap.run.run_id,
                "transitions": [e.as_json() for e in evaluations],
                "arrived": arrived,
            },
            "\n".join(text),
        )
        return EXIT_OK
    finally:
        rt.close()
