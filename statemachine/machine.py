"""Builds one `transitions` Machine from a Policy: guards and actions are callables from the registry."""

from __future__ import annotations

from typing import Any

from transitions import EventData, Machine

from statemachine import registry
from statemachine.model import INITIAL_STATE, STATES, Snapshot, Verdict
from statemachine.policy import ActionSpec, GuardSpec, Policy, Transition


def evaluate_guard(spec: GuardSpec, snap: Snapshot) -> Verdict:
    """Run one guard on the snapshot; a guard that raises fails closed with the error as its reason."""
    entry = registry.GUARDS[spec.name]
    try:
        verdict: Verdict = entry.fn(snap, **spec.params)
    except Exception as exc:  # a guard bug must never let a transition through, negated or not
        return Verdict.failed(f"guard {spec.name} raised {type(exc).__name__}: {exc}")
    return verdict.negated() if spec.negate else verdict


class IssueModel:
    """The per-issue model the Machine drives; ``state`` is loaded from and saved to the store."""

    state: str

    def __init__(self, number: int) -> None:
        self.number = number


def _condition(transition: Transition, idx: int, spec: GuardSpec) -> Any:
    """The guard as a `transitions` condition. A trigger carries the step's verdicts (``verdicts``: transition index ->
    verdicts in guard order, engine.step_verdicts), so the guard the engine judged is not run again; a trigger
    without them (a test firing the machine directly) judges the snapshot."""

    def check(event: EventData) -> bool:
        verdicts = event.kwargs.get("verdicts")
        if verdicts is not None and transition.index in verdicts:
            return bool(verdicts[transition.index][idx].ok)
        return evaluate_guard(spec, event.kwargs["snapshot"]).ok

    check.__name__ = spec.name
    return check


def _action(transition: Transition, idx: int, spec: ActionSpec) -> Any:
    def act(event: EventData) -> None:
        event.kwargs["runner"].run(transition, idx, spec)

    act.__name__ = spec.name
    return act


def build_machine(policy: Policy) -> Machine:
    table = [
        {
            "trigger": t.trigger,
            "source": list(t.sources),
            "dest": t.dest,
            "conditions": [_condition(t, i, g) for i, g in enumerate(t.guards)],
            "after": [_action(t, i, a) for i, a in enumerate(t.actions)],
        }
        for t in policy.transitions
    ]
    return Machine(
        model=None,
        states=list(STATES),
        transitions=table,
        initial=INITIAL_STATE,
        send_event=True,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
