"""One source for the lifecycle vocabulary: what guards need from the tracker, the run's facts they may read, why an
issue waits, the daemon's active states and busy labels, and the states of the schema and of the model."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine import engine, registry, resources, scheduling, snapshots
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
from statemachine.record import Part, RunRecord, TddEvidence, snapshot_from_dict, snapshot_to_dict
from statemachine.runtime import Runtime, open_runtime
from statemachine.snapshots import needs_of, snapshot_of

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
    assert needs_of(pol, "queued") == {"authority", "text", "preflight", "claim", "parent", "budget"}
    assert needs_of(pol, "review") == {"feedback", "parent", "budget"}
    assert needs_of(pol, "gating") == {"authority", "text", "parent"}
    assert needs_of(pol, "rework") == {"budget"}  # retry runs the agent again: within_budget judges it
    for state in ("claimed", "implementing", "proving", "planning"):
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
        ("budget_of", None),
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
    assert sorted(called) == ["authority_of", "budget_of", "claim_of", "parent_of", "preflight_of", "text_of"]
    called.clear()
    snapshot_of(rt, issue, "review", None)
    assert sorted(called) == ["budget_of", "parent_of", "review_feedback_of"]
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


@dataclass(frozen=True)
class _NewFacts(Part):
    """What a new guard would declare beside itself to read a fact no guard read before."""

    a_new_fact: Mapping[str, int] | None = None
    a_count: int = 0


def test_a_guard_reads_the_run_record_typed_and_a_new_fact_through_a_part_it_declares() -> None:
    facts = {
        "rework_count": 2,
        "report": {"status": "completed"},
        "a_new_fact": {"x": 1},
        "tdd": {"base_exit": 1, "candidate_exit": 0, "tests": ["t.py"], "not_a_field": True},
        "feedback_handled": None,
        "checks": {"unit": {"exit_code": 0, "log": "l"}},
    }
    run = RunRecord.load("r1", facts)
    assert run.rework_count == 2 and run.report == {"status": "completed"}
    assert run.tdd == TddEvidence(tests=("t.py",), base_exit=1, candidate_exit=0)
    assert run.checks is not None and run.checks["unit"].exit_code == 0 and run.checks["unit"].timed_out is False
    # the new fact: the guard's own part sees it, typed, with no edit to the record
    assert run.part(_NewFacts) == _NewFacts(a_new_fact={"x": 1}, a_count=0)
    # what guards read for facts not (or emptily) recorded
    assert run.changed_lines == 0 and run.review_rounds == 0 and run.acceptance_criteria == ()
    assert run.feedback_handled == () and run.plan_problems == () and run.plan is None and run.changed_bytes is None
    assert run.agent is None and run.changes is None and run.proof is None


def test_a_snapshot_saved_with_its_step_loads_back_exactly_also_one_saved_before_the_typed_record() -> None:
    issue = Issue(7, "t", "b", "open", ("agent:auto",))
    facts = {"attempt": 1, "changes": [{"path": "a.py", "status": "M", "old_path": None}], "a_new_fact": {"x": 2}}
    snap = Snapshot(
        issue=issue, state="gating", run=RunRecord.load("r9", facts), labels={}, settings={}, taken_at="now"
    )
    back = snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snap))))
    assert back == snap and back.run.part(_NewFacts).a_new_fact == {"x": 2}
    assert back.run.changes is not None and back.run.changes[0].path == "a.py"
    legacy = snapshot_to_dict(snap)  # how an earlier orch saved the run: typed fields, the rest under "extra"
    legacy["run"] = {"run_id": "r9", "attempt": 1, "changes": facts["changes"], "extra": {"a_new_fact": {"x": 2}}}
    old = snapshot_from_dict(legacy)
    assert (
        old.run.attempt == 1 and old.run.part(_NewFacts).a_new_fact == {"x": 2} and old.run.changes == snap.run.changes
    )


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
    return Snapshot(issue=issue, state=state, run=RunRecord(), labels={}, settings={}, taken_at="", parent=parent)


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
    assert scheduling.active_states(pol) == {
        "claimed",
        "implementing",
        "proving",
        "rework",
        "gating",
        "planning",
        "delegating",
        "integrating",
    }
    assert not scheduling.active_states(pol) & (REST_STATES | {INITIAL_STATE})
    assert scheduling.busy_labels(pol) == {pol.label(r) for r in ("manual", "running", "blocked", "review")}


def test_the_daemon_judges_a_takeover_by_the_label_guards_of_the_policys_take_over() -> None:
    from statemachine.engine import labels_could_allow
    from statemachine.policy import GuardSpec

    pol = default_policy()

    def issue(*roles: str) -> Issue:
        return Issue(1, "t", "", "open", tuple(pol.label(r) for r in roles))

    assert labels_could_allow(pol, "take_over", issue("auto", "running"))
    assert not labels_could_allow(pol, "take_over", issue("auto"))  # nobody's run holds it
    for refused in ("manual", "blocked", "review", "child"):
        assert not labels_could_allow(pol, "take_over", issue("auto", "running", refused)), refused
    # a policy whose take_over refuses one more label: the daemon follows it, nothing is hard-coded
    stricter = [
        dataclasses.replace(t, guards=(*t.guards, GuardSpec("lacks_labels", {"labels": ["plan_auto"]})))
        if t.trigger == "take_over"
        else t
        for t in pol.transitions
    ]
    strict = dataclasses.replace(pol, transitions=stricter)
    assert labels_could_allow(pol, "take_over", issue("auto", "running", "plan_auto"))
    assert not labels_could_allow(strict, "take_over", issue("auto", "running", "plan_auto"))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_fact_names = st.sampled_from(
    [f.name for f in dataclasses.fields(RunRecord) if f.name not in ("run_id", "parts", "recorded")] + ["a_new_fact"]
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_fact_names, _json_values, max_size=8))
def test_any_recorded_facts_load_into_a_record_that_saves_and_loads_back_the_same(facts: dict[str, Any]) -> None:
    """Whatever shape a fact was recorded in (an older orch, a hand-edited store), loading never raises, and a
    snapshot saved with its step loads back to the same record."""
    record = RunRecord.load("r1", facts)
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record and again.recorded == record.recorded
    assert record.part(_NewFacts).a_new_fact == facts.get("a_new_fact")  # a shape the part did not expect: as is
