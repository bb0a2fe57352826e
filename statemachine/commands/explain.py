"""`orch explain --issue N`: one line first (the state, the reason that matters, the action to take), then every
outgoing transition of the current state that applies to this kind of issue, with every guard's verdict; no side
effects."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from statemachine import lead
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


def _left_out(n: int, kinds: frozenset[str]) -> list[str]:
    if not n:
        return []
    kind = " or ".join(sorted(kinds))
    return [f"    ({n} transition(s) for other kinds of issue left out: this is a {kind} issue; --json lists them)"]


def _arrived_lines(last: Any, shown: Sequence[Mapping[str, Any]]) -> list[str]:
    text = [f"  it came to rest by {last.source} --{last.trigger}--> {last.dest}; the verdicts in {last.source} were:"]
    for ev in shown:
        fired = "fired" if ev.get("index") == last.transition_index else "did not fire"
        text.append(f"    {ev['trigger']} → {ev['dest']}: {fired}")
        guards = ev.get("guards", [])
        failed = [g for g in guards if not g["verdict"]["ok"]]
        for g in failed:  # what stopped it; the guards that passed are counted (--json has every verdict)
            text.append(f"      {g['guard']}: FAIL {g['verdict']['reason']}")
            text += [f"        {e}" for e in g["verdict"].get("evidence", [])[:5]]
        passed = len(guards) - len(failed)
        if passed:
            text.append(
                f"      ({passed} other guard(s) passed)" if failed else f"      (all {passed} guard(s) passed)"
            )
    return text


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        snap, evaluations = Engine(rt).explain(args.issue)
        policy = rt.policy
        kinds = lead.issue_kinds(policy, snap.issue.labels)
        current = [e.as_json() for e in evaluations]
        for ev in current:
            ev["applies"] = lead.applies(policy, ev, kinds)
        shown = [e for e, ev in zip(evaluations, current, strict=True) if ev["applies"]]
        arrived = None  # in review or blocked: the verdicts of the step that brought the issue there
        last = next((s for s in reversed(rt.store.steps(args.issue)) if s.status == "done"), None)
        text_arrived: list[str] = []
        recorded: list[dict[str, Any]] | None = None
        if last is not None and last.dest == snap.state and snap.state in REST_STATES:
            recorded = [{**ev, "applies": lead.applies(policy, ev, kinds)} for ev in last.verdicts]
            arrived = {
                "step": last.id,
                "source": last.source,
                "trigger": last.trigger,
                "dest": last.dest,
                "transitions": recorded,
            }
            kept = [ev for ev in recorded if ev["applies"]]
            text_arrived = _arrived_lines(last, kept) + _left_out(len(recorded) - len(kept), kinds)
        issue = lead.Issue(
            args.issue,
            tuple(snap.issue.labels),
            policy.config.tracker.kind == "local",
            snap.run.run_id,
            snap.run.rework_count + 1,
        )
        said = lead.lead(policy, snap.state, issue, current, recorded)
        choice = policy.config.agent_for(snap.issue.labels)  # agent.profiles / agent.select
        agent = {"profile": choice.name, "kind": choice.agent.kind, "model": choice.agent.model, "why": choice.why}
        text = [
            said.summary,
            "",
            f"issue #{args.issue} ({snap.issue.title}) is {snap.state}"
            + (f", run {snap.run.run_id}" if snap.run.run_id else ""),
            f"  agent: {choice.name} ({choice.agent.kind}"
            + (f", {choice.agent.model}" if choice.agent.model else "")
            + f"): {choice.why}",
        ]
        if not evaluations:
            text.append("  no transition leaves this state")
        text += render_evaluations(shown) + _left_out(len(evaluations) - len(shown), kinds) + text_arrived
        out.emit(
            "explain",
            {
                "issue": args.issue,
                "state": snap.state,
                "run_id": snap.run.run_id,
                **said.as_json(),
                "issue_kinds": sorted(kinds),
                "agent": agent,
                "transitions": current,
                "arrived": arrived,
            },
            "\n".join(text),
        )
        return EXIT_OK
    finally:
        rt.close()
