"""One step: snapshot -> evaluate -> record intent -> fire (actions, journaled) -> persist. The only writer of state."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from statemachine import ports, registry
from statemachine.actions import ActionContext
from statemachine.errors import ClaimLost, OrchError, Superseded
from statemachine.machine import IssueModel, build_machine, evaluate_guard
from statemachine.model import INITIAL_STATE, REST_STATES, Snapshot, Verdict
from statemachine.policy import ActionSpec, Policy, Transition
from statemachine.record import RunRecord, snapshot_from_dict, snapshot_to_dict
from statemachine.runtime import Runtime
from statemachine.snapshots import snapshot_of, take_snapshot

log = logging.getLogger("orch")


@dataclass(frozen=True)
class Evaluation:
    transition: Transition
    verdicts: tuple[tuple[str, Verdict], ...]

    @property
    def ok(self) -> bool:
        return all(v.ok for _, v in self.verdicts)

    def as_json(self) -> dict[str, Any]:
        t = self.transition
        return {
            "index": t.index,
            "trigger": t.trigger,
            "source": list(t.sources),
            "dest": t.dest,
            "human": t.human,
            "would_fire": self.ok,
            "guards": [{"guard": name, "verdict": v.as_json()} for name, v in self.verdicts],
            "actions": [a.label() for a in t.actions],
        }


@dataclass(frozen=True)
class StepOutcome:
    issue: int
    source: str
    dest: str | None
    fired: Evaluation | None
    evaluations: tuple[Evaluation, ...]
    resumed: bool = False
    run_id: str | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "issue": self.issue,
            "source": self.source,
            "dest": self.dest,
            "note": self.note,
            "fired": self.fired.as_json() if self.fired else None,
            "resumed": self.resumed,
            "run_id": self.run_id,
            "evaluations": [e.as_json() for e in self.evaluations],
        }


def evaluate(policy: Policy, snap: Snapshot) -> list[Evaluation]:
    """Every outgoing transition of the snapshot's state, in declared order, with every guard's verdict."""
    return [
        Evaluation(t, tuple((g.label(), evaluate_guard(g, snap)) for g in t.guards))
        for t in policy.outgoing(snap.state)
    ]


def step_verdicts(evaluations: list[Evaluation] | tuple[Evaluation, ...]) -> dict[int, tuple[Verdict, ...]]:
    """The verdicts of one step by transition index, in guard order: what the Machine's conditions consult when the
    step fires (machine.py), so that each guard runs once per step."""
    return {e.transition.index: tuple(v for _name, v in e.verdicts) for e in evaluations}


@dataclass(frozen=True)
class Waiting:
    """Why an issue cannot move, judged from one snapshot's evaluations (``orch status`` prints ``text``).

    ``kind`` is "guards" (an active or queued issue: the failing guards of its first transition), "resting" (in
    review or blocked: each way out and the first guard that keeps it shut; a child's way back is left out for any
    other issue), or "child" (a child issue its parent's run has not dispatched). ``blockers`` pairs a guard label
    ("guards") or a trigger ("resting") with the reason; empty when no transition leaves the state."""

    kind: str
    blockers: tuple[tuple[str, str], ...] = ()
    refusal: str | None = None  # kind "child": why the child does not run on its own

    @property
    def text(self) -> str:
        if self.refusal is not None:
            return self.refusal
        return "; ".join(f"{what}: {reason}" for what, reason in self.blockers) or "no transition leaves this state"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "blockers": [list(b) for b in self.blockers], "text": self.text}


def childs_way(t: Transition) -> bool:
    """A transition only a child issue can take: one of its guards reads the parent binding (registry.NEEDS)."""
    return any("parent" in registry.GUARDS[g.name].needs for g in t.guards)


def why_waiting(
    policy: Policy, snap: Snapshot, evaluations: list[Evaluation] | tuple[Evaluation, ...]
) -> Waiting | None:
    """Why the issue of ``snap`` waits (None: a transition can fire)."""
    from statemachine.planning import standalone_refusal

    if any(e.ok for e in evaluations):
        return None
    if snap.parent is not None:
        return Waiting("child", refusal=standalone_refusal(policy.label("child"), snap.issue.body))
    if snap.state in REST_STATES:
        ways = [e for e in evaluations if not childs_way(e.transition)]
        return Waiting(
            "resting",
            tuple(
                (e.transition.trigger, next(v.reason for _n, v in e.verdicts if not v.ok))
                for e in ways
                if any(not v.ok for _n, v in e.verdicts)
            ),
        )
    return Waiting("guards", tuple((n, v.reason) for e in evaluations[:1] for n, v in e.verdicts if not v.ok))


# the guards that read nothing but the issue's own labels and body
LABEL_GUARDS = frozenset({"has_label", "lacks_labels", "has_any_label", "not_a_child"})


def labels_could_allow(policy: Policy, trigger: str, issue: Any) -> bool:
    """Whether some transition named ``trigger`` has label guards that all pass on ``issue``: the daemon's filter,
    from the policy, before it spends a tracker read on the rest of the transition's guards."""
    snap = Snapshot(
        issue=issue, state=INITIAL_STATE, run=RunRecord(), labels=policy.label_names, settings={}, taken_at=""
    )
    return any(
        all(evaluate_guard(g, snap).ok for g in t.guards if g.name in LABEL_GUARDS)
        for t in policy.transitions
        if t.trigger == trigger
    )


def status_of(
    rt: Runtime,
    issue: Any,
    state: str,
    run_id: str | None,
    known_actors: dict[str, dict[int, str]] | None = None,
    memo: dict[Any, Any] | None = None,
) -> tuple[Snapshot, list[Evaluation], Waiting | None]:
    """One row of ``orch status``: the snapshot (with the parent binding, whatever the state), its evaluations, and
    why the issue waits (None: a transition can fire). ``memo`` (one dict for all the rows under one policy, see
    snapshots.snapshot_of) keeps what depends on the policy and the state alone. The evaluations are those that
    judgement reads (status_evaluations): up to the first transition that can fire."""
    snap = snapshot_of(rt, issue, state, run_id, known_actors, also=frozenset({"parent"}), memo=memo)
    evaluations = status_evaluations(rt.policy, snap, memo)
    return snap, evaluations, why_waiting(rt.policy, snap, evaluations)


def status_evaluations(policy: Policy, snap: Snapshot, memo: dict[Any, Any] | None = None) -> list[Evaluation]:
    """``evaluate`` as far as ``why_waiting`` and the first transition able to fire read it: the outgoing transitions
    in declared order up to the first that can fire; the first with every guard's verdict, each later one up to its
    first failing guard (guards are pure: the ones not run could not change whether it fires or what it waits on)."""
    key = ("outgoing", snap.state)
    if memo is None or key not in memo:
        table = [(t, tuple((g.label(), g) for g in t.guards)) for t in policy.outgoing(snap.state)]
        if memo is None:
            memo = {}
        memo[key] = table
    out: list[Evaluation] = []
    for i, (t, guards) in enumerate(memo[key]):
        verdicts: list[tuple[str, Verdict]] = []
        for name, g in guards:
            verdict = evaluate_guard(g, snap)
            verdicts.append((name, verdict))
            if not verdict.ok and i:
                break
        evaluation = Evaluation(t, tuple(verdicts))
        out.append(evaluation)
        if evaluation.ok:
            break
    return out


def _append_evidence(repo: Any, run_id: str, record: dict[str, Any]) -> None:
    """Append one step's verdicts to .orch/runs/<run>/steps.jsonl (evidence that outlives the database)."""
    import json

    folder = repo / ".orch" / "runs" / run_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "steps.jsonl", "a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
    except OSError as exc:
        log.warning("could not write step evidence for run %s: %s", run_id, exc)


class _Runner:
    """Runs the chosen transition's actions through the journal: a done effect is never repeated."""

    effects_done = 0  # per process, for the crash-test harness

    def __init__(
        self,
        ctx: ActionContext,
        chosen: Transition,
        claim: dict[str, Any] | None = None,
        fresh: Callable[[], bool] = lambda: False,
    ) -> None:
        self.ctx = ctx
        self.chosen = chosen
        self.claim = claim  # the run's claim: checked once before the step's first effect that others see
        self.fresh = fresh  # whether the lease was written so recently that nobody can have taken the claim over
        self.keeper: Any = None  # the lease keeper of this step: checked between actions

    def run(self, transition: Transition, idx: int, spec: ActionSpec) -> None:
        if transition.index != self.chosen.index:
            raise OrchError(f"internal: the machine fired transition #{transition.index}, not #{self.chosen.index}")
        store, ctx = self.ctx.store, self.ctx
        entry = store.journal_entry(ctx.step_id, idx)
        if entry is not None and entry[0] == "done":
            if spec.name == "start_run" and isinstance(entry[1], dict):
                ctx.run_id = entry[1].get("run_id", ctx.run_id)
            log.debug("skip %s: done before", spec.label())
            return
        if self.keeper is not None:
            self.keeper.check()  # between two actions: a claim taken over stops the step here, before any effect
        ctx.first_try = entry is None  # no intent recorded before: no earlier attempt can have had an effect
        if self.claim is not None and spec.name in registry.PUBLISHING:
            from statemachine import lease

            if not self.fresh():
                lease.fence(ctx.tracker, ctx.issue, self.claim)  # a run another runner took over publishes nothing
            self.claim = None
        store.journal_intent(ctx.step_id, idx, spec.name, spec.params)
        result = registry.ACTIONS[spec.name].fn(ctx, **spec.params)
        store.journal_done(ctx.step_id, idx, ctx.secrets.redact_json(result))  # results may quote what an agent wrote
        only = os.environ.get("ORCH_TEST_KILL_ISSUE")  # with it, the harness counts that issue's effects alone
        if only and only != str(ctx.issue):
            return
        _Runner.effects_done += 1
        kill_at = os.environ.get("ORCH_TEST_KILL_AFTER_EFFECT")
        if kill_at and int(kill_at) == _Runner.effects_done:
            os.kill(os.getpid(), signal.SIGKILL)


class Engine:
    """Steps issues through the lifecycle built from the policy."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.machine = build_machine(rt.policy)
        self._renewed: dict[int, float] = {}  # per issue: when this process last wrote its claim's lease stamp

    def explain(self, number: int) -> tuple[Snapshot, list[Evaluation]]:
        pending = self.rt.store.pending_step(number)
        snap = snapshot_from_dict(pending.snapshot) if pending else take_snapshot(self.rt, number)
        return snap, evaluate(self.rt.policy, snap)

    def step(self, number: int) -> StepOutcome:
        with self.rt.store.issue_lock(number, owner=f"pid-{os.getpid()}"):
            return self._step(number)

    def _step(self, number: int) -> StepOutcome:
        store = self.rt.store
        pending = store.pending_step(number)
        resumed = pending is not None
        if pending is not None:
            snap = snapshot_from_dict(pending.snapshot)
            step_id, nonce = pending.id, pending.nonce
            evaluations = evaluate(self.rt.policy, snap)
            chosen = next((e for e in evaluations if e.ok), None)
            if chosen is None or chosen.transition.index != pending.transition_index:
                raise OrchError(
                    f"issue #{number} has an interrupted step ({pending.trigger} → {pending.dest}) that the current policy no longer chooses",
                    "restore the policy that was in force when it started, finish the run, then change the policy",
                )
            log.info("resuming interrupted step %s → %s for issue #%d", pending.trigger, pending.dest, number)
        else:
            snap = take_snapshot(self.rt, number)
            evaluations = evaluate(self.rt.policy, snap)
            chosen = next((e for e in evaluations if e.ok), None)
            if chosen is None:
                return StepOutcome(number, snap.state, None, None, tuple(evaluations), run_id=snap.run.run_id)
            nonce = uuid.uuid4().hex
            t = chosen.transition
            step_id = store.begin_step(
                number,
                snap.run.run_id,
                nonce,
                t.trigger,
                snap.state,
                t.dest,
                t.index,
                snapshot_to_dict(snap),
                [e.as_json() for e in evaluations],
            )
        ctx = ActionContext(
            repo=self.rt.repo,
            policy=self.rt.policy,
            store=store,
            tracker=self.rt.tracker,
            git=self.rt.git,
            make_agent=self.rt.make_agent,
            sandbox=self.rt.jail,
            make_browser=self.rt.make_browser,
            issue=number,
            snapshot=snap,
            step_id=step_id,
            nonce=nonce,
            run_id=snap.run.run_id,
            evaluations=[e.as_json() for e in evaluations],
        )
        model = IssueModel(number)
        self.machine.add_model(model, initial=snap.state)
        claim = self._claim(snap)
        keeper: Any = None
        try:
            with contextlib.ExitStack() as stack:
                if claim is not None:
                    from statemachine import lease

                    seconds = self.rt.policy.config.tracker.claim_lease_seconds

                    def fresh() -> bool:
                        return lease.fresh(
                            max(self._renewed.get(number, 0.0), keeper.renewed if keeper else 0.0), seconds
                        )

                    if resumed and not fresh():
                        lease.fence(self.rt.tracker, number, claim)  # taken over while this runner was away: let go
                    keeper = stack.enter_context(lease.Keeper(self.rt.tracker, number, claim, seconds))
                    stack.callback(
                        lambda: self._renewed.__setitem__(number, max(self._renewed.get(number, 0.0), keeper.renewed))
                    )
                runner = _Runner(ctx, chosen.transition, claim, fresh if claim is not None else lambda: False)
                runner.keeper = keeper
                trigger = model.trigger  # type: ignore[attr-defined]  # added by the transitions Machine
                fired = trigger(
                    chosen.transition.trigger, snapshot=snap, verdicts=step_verdicts(evaluations), runner=runner
                )
            if keeper is not None:
                keeper.check()  # taken over while the step's last action ran: its effects stay local
            if not fired or model.state != chosen.transition.dest:
                raise OrchError(f"internal: the machine did not fire {chosen.transition.trigger} from {snap.state}")
            if ctx.lease_written:  # the claim was posted in this step, its lease stamp written just now
                self._renewed[number] = ctx.lease_written
        except ClaimLost as lost:
            store.abort_step(step_id, number, ctx.run_id, snap.run.run_id)
            return StepOutcome(
                number, snap.state, None, None, tuple(evaluations), resumed, snap.run.run_id, note=lost.message
            )
        except Superseded as gone:
            return self._let_go(step_id, snap, evaluations, resumed, gone.message)
        finally:
            self.machine.remove_model(model)
            if keeper is not None:
                ports.CANCEL.clear()  # what the keeper stopped is stopped; the next step starts clean
        outcome = chosen.transition.dest if chosen.transition.dest in REST_STATES else None
        if ctx.run_id:
            _append_evidence(
                self.rt.repo,
                ctx.run_id,
                {
                    "step": step_id,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "source": snap.state,
                    "trigger": chosen.transition.trigger,
                    "dest": chosen.transition.dest,
                    "resumed": resumed,
                    "evaluations": [e.as_json() for e in evaluations],
                },
            )
        store.finish_step(step_id, number, chosen.transition.dest, ctx.run_id, outcome)
        return StepOutcome(number, snap.state, chosen.transition.dest, chosen, tuple(evaluations), resumed, ctx.run_id)

    def _claim(self, snap: Snapshot) -> dict[str, Any] | None:
        """The claim the snapshot's run holds on a tracker other runners share (None before the claim, or alone)."""
        if snap.state == "queued" or not snap.run.run_id or not self.rt.tracker.capabilities.fleet:
            return None
        claim = self.rt.store.facts(snap.run.run_id).get("claim")
        return claim if isinstance(claim, dict) and claim.get("comment") else None

    def _let_go(
        self, step_id: int, snap: Snapshot, evaluations: list[Evaluation], resumed: bool, note: str
    ) -> StepOutcome:
        """Another runner took this run's claim over: abort the step here, publish nothing, queue the issue locally."""
        log.warning("%s", note)
        self.rt.store.abandon_open_transaction()  # the keeper's interruption may have landed inside one
        self.rt.store.supersede(step_id, snap.issue.number, snap.run.run_id)
        if snap.run.run_id:
            _append_evidence(
                self.rt.repo,
                snap.run.run_id,
                {
                    "step": step_id,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "source": snap.state,
                    "superseded": note,
                },
            )
        return StepOutcome(
            snap.issue.number, snap.state, None, None, tuple(evaluations), resumed, snap.run.run_id, note=note
        )

    def iter_run(self, number: int, max_steps: int = 100) -> Iterator[StepOutcome]:
        """Step until the issue rests: in review or blocked, or with nothing able to fire."""
        for _ in range(max_steps):
            out = self.step(number)
            yield out
            if out.dest is None or out.dest in REST_STATES:
                return
        raise OrchError(
            f"issue #{number} took {max_steps} steps without coming to rest",
            "the lifecycle table probably has a cycle without a limit; check it with `orch graph`",
        )

    def run(self, number: int, max_steps: int = 100) -> list[StepOutcome]:
        return list(self.iter_run(number, max_steps))
