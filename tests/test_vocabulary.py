"""One source for the lifecycle vocabulary: what guards need from the tracker, the run's facts they may read, why an
issue waits, the daemon's active states and busy labels, and the states of the schema and of the model."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine import daemon, engine, registry, resources, snapshots
from statemachine.engine import Engine, step_verdicts
from statemachine.machine import IssueModel, build_machine
from statemachine.model import (
    INITIAL_STATE,
    REST_STATES,
    STATES,
    Issue,
    Snapshot,
    Verdict,
)
from statemachine.policy import load as load_policy
from statemachine.runtime import Runtime, open_runtime
from statemachine.snapshots import needs_of, run_facts, snapshot_of

ROOT = Path(__file__).resolve().parent.parent
POLICY_YAML = "version: 1\nextends: default\n"


def default_policy() -> Any:
    return load_policy(resources.bundled_policy("default"))


@pytest.fixture
def rt(repo: Path) -> Any:
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(POLICY_YAML)
    runtime = open_runtime(repo, None)
    yield runtime
    runtime.close()


# the schema and the model ----------------------------------------------------------------


def test_the_schema_names_exactly_the_model_states() -> None:
    for schema in (json.loads((ROOT / "schemas" / "policy.schema.json").read_text()), resources.schema("policy")):
        assert schema["$defs"]["state"] == {"enum": list(STATES)}, (
            "schemas/policy.schema.json $defs.state must list statemachine.model.STATES, in order"
        )


# needs: declared in the registry, fetched by declaration -----------------------------------


def test_every_need_is_of_the_vocabulary_and_a_labelled_need_names_its_label() -> None:
    for table in (registry.GUARDS, registry.ACTIONS):
        for entry in table.values():
            assert entry.needs <= set(registry.NEEDS), entry
    for entry in registry.GUARDS.values():
        if entry.needs & {"authority", "text"}:
            assert "label" in entry.params["required"], f"{entry.name} needs a label's facts but takes no label"
    with pytest.raises(ValueError, match="unknown snapshot need"):
        registry.needs("weather")


def test_the_default_lifecycle_fetches_per_state_what_its_guards_and_actions_declare() -> None:
    pol = default_policy()
    assert needs_of(pol, "queued") == {"authority", "text", "preflight", "claim", "parent"}
    assert needs_of(pol, "review") == {"feedback", "parent"}
    assert needs_of(pol, "gating") == {"authority", "text", "parent"}
    for state in ("claimed", "implementing", "proving", "rework", "planning"):
        assert needs_of(pol, state) == frozenset(), state


def _record_fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    called: list[str] = []
    for fetch, value in (
        ("text_of", None),
        ("authority_of", None),
        ("review_feedback_of", ()),
        ("preflight_of", ()),
        ("claim_of", None),
        ("parent_of", None),
    ):

        def fake(*_args: Any, _name: str = fetch, _value: Any = value, **_kw: Any) -> Any:
            called.append(_name)
            return _value

        monkeypatch.setattr(snapshots, fetch, fake)
    return called


def test_a_snapshot_fetches_exactly_what_the_state_declares(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    issue = rt.tracker.create_issue("Fix it", "Body.", [rt.policy.label("auto")])
    called = _record_fetches(monkeypatch)
    snapshot_of(rt, issue, "implementing", None)
    assert called == []
    snapshot_of(rt, issue, "queued", None)
    assert sorted(called) == ["authority_of", "claim_of", "parent_of", "preflight_of", "text_of"]
    called.clear()
    snapshot_of(rt, issue, "review", None)
    assert sorted(called) == ["parent_of", "review_feedback_of"]
    called.clear()
    snapshot_of(rt, issue, "implementing", None, {}, also=frozenset({"parent"}))  # `orch status`: bulk, with parents
    assert called == ["parent_of"]


def test_a_new_guard_needs_only_its_registry_line(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard that reads the issue's preflight in a state where no other guard does: declared, so fetched."""
    seen: list[Any] = []

    def has_changes(snap: Snapshot) -> Verdict:  # stands in for the guard of `gate`'s has_changes row
        seen.append(snap.preflight)
        return Verdict.passed("fine")

    entry = registry.GUARDS["has_changes"]
    monkeypatch.setitem(
        registry.GUARDS, "has_changes", dataclasses.replace(entry, fn=has_changes, needs=registry.needs("preflight"))
    )
    called = _record_fetches(monkeypatch)
    issue = rt.tracker.create_issue("Fix it", "Body.", [rt.policy.label("auto")])
    snap = snapshot_of(rt, issue, "implementing", None)
    assert called == ["preflight_of"] and snap.preflight == ()


def test_a_guard_sees_every_fact_the_run_recorded() -> None:
    facts = {
        "rework_count": 2,
        "report": {"status": "completed"},
        "a_new_fact": {"x": 1},
        "tdd": {"ok": True},
        "feedback_handled": None,
    }
    run = run_facts("r1", facts)
    assert run.rework_count == 2 and run.report == {"status": "completed"}
    assert run.extra["a_new_fact"] == {"x": 1} and run.extra["tdd"] == {"ok": True}
    assert "report" not in run.extra and "rework_count" not in run.extra  # typed facts are not repeated
    # what guards read for facts not (or emptily) recorded is what it always was
    assert run.extra["changed_lines"] == 0 and run.extra["review_rounds"] == 0
    assert run.extra["acceptance_criteria"] == [] and run.extra["feedback_handled"] == []
    assert run.extra["plan_problems"] == [] and run.extra.get("plan") is None and run.extra.get("changed_bytes") is None


# guards run once per step -------------------------------------------------------------------


def _count_guard_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    for name, entry in list(registry.GUARDS.items()):

        def counted(*args: Any, _fn: Callable[..., Verdict] = entry.fn, _name: str = name, **kw: Any) -> Verdict:
            calls[_name] += 1
            return _fn(*args, **kw)

        monkeypatch.setitem(registry.GUARDS, name, dataclasses.replace(entry, fn=counted))
    return calls


def test_each_guard_runs_once_per_fired_step(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_guard_calls(monkeypatch)
    rt.tracker.create_issue("Fix it", "Body.", [rt.policy.label("auto")])
    out = Engine(rt).step(1)
    assert out.fired is not None and (out.source, out.dest) == ("queued", "claimed")
    # every guard of every transition leaving `queued` was judged once by evaluate, and none again by the Machine
    assert calls == Counter(g.name for t in rt.policy.outgoing("queued") for g in t.guards)
    assert sum(calls.values()) == sum(len(e.verdicts) for e in out.evaluations)


def test_the_machine_fires_on_the_verdicts_it_is_given() -> None:
    """The Machine's conditions consult the step's verdicts; only a trigger without them judges the snapshot."""
    pol = default_policy()
    machine = build_machine(pol)
    ways = pol.outgoing("rework")  # retry (guarded), then block (unguarded)
    retry = ways[0]
    assert retry.trigger == "retry" and retry.guards
    snap: Any = object()  # a guard that ran would fail on it: none may run

    class Recorder:
        def __init__(self) -> None:
            self.ran: list[str] = []

        def run(self, transition: Any, idx: int, spec: Any) -> None:
            self.ran.append(spec.name)

    for ok in (True, False):
        verdicts = {retry.index: tuple(Verdict(ok, "given") for _ in retry.guards)}
        model = IssueModel(1)
        machine.add_model(model, initial="rework")
        try:
            fired = model.trigger("retry", snapshot=snap, verdicts=verdicts, runner=Recorder())  # type: ignore[attr-defined]
            assert fired is ok and model.state == ("implementing" if ok else "rework")
        finally:
            machine.remove_model(model)


def test_step_verdicts_are_in_guard_order() -> None:
    pol = default_policy()
    t = pol.outgoing("rework")[0]
    ev = engine.Evaluation(t, tuple((g.label(), Verdict(i % 2 == 0, str(i))) for i, g in enumerate(t.guards)))
    assert step_verdicts([ev]) == {t.index: tuple(v for _n, v in ev.verdicts)}


# why an issue waits -------------------------------------------------------------------------


def _snap(state: str, parent: dict[str, Any] | None = None) -> Snapshot:
    issue = Issue(1, "t", "b", "open", ())
    return Snapshot(
        issue=issue, state=state, run=run_facts(None, {}), labels={}, settings={}, taken_at="", parent=parent
    )


def test_why_waiting_is_structured_and_reads_as_status_printed_it() -> None:
    pol = default_policy()
    rest = _snap("review")
    evs = [
        engine.Evaluation(t, tuple((g.label(), Verdict(False, f"{t.trigger}-{g.name}")) for g in t.guards))
        for t in pol.outgoing("review")
    ]
    waiting = engine.why_waiting(pol, rest, evs)
    assert waiting is not None and waiting.kind == "resting"
    assert [w for w, _r in waiting.blockers] == ["revise", "requeue"]  # a child's way back is not this issue's
    assert waiting.text == "revise: revise-issue_open; requeue: requeue-issue_open"
    child = engine.why_waiting(pol, _snap("review", parent={"number": 7}), evs)
    assert child is not None and child.kind == "child" and "never authorizes standalone work" in child.text
    queued = [
        engine.Evaluation(t, tuple((g.label(), Verdict(g.name != "issue_open", g.name)) for g in t.guards))
        for t in pol.outgoing("queued")
    ]
    first = engine.why_waiting(pol, _snap("queued"), queued)
    assert first is not None and first.kind == "guards" and first.text == "issue_open: issue_open"
    assert engine.why_waiting(pol, _snap("blocked"), []) == engine.Waiting("resting")
    assert engine.Waiting("resting").text == "no transition leaves this state"
    ready = [engine.Evaluation(pol.outgoing("rework")[-1], ())]
    assert engine.why_waiting(pol, _snap("rework"), ready) is None


# the daemon's vocabulary comes from the policy ----------------------------------------------


def test_the_daemon_derives_active_states_and_busy_labels_from_the_policy() -> None:
    pol = default_policy()
    assert daemon.active_states(pol) == {
        "claimed",
        "implementing",
        "proving",
        "rework",
        "gating",
        "planning",
        "delegating",
        "integrating",
    }
    assert not daemon.active_states(pol) & (REST_STATES | {INITIAL_STATE})
    assert daemon.busy_labels(pol) == {pol.label(r) for r in ("manual", "running", "blocked", "review")}
