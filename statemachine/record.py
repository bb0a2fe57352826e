"""The run's record: what the actions of one run observed, typed, as guards read it.

An action records facts by name (``ActionContext.set_facts``); the store keeps each as JSON under its name, so what
the store holds, the evidence shows and the tests read stays plain. ``RunRecord.load`` reads them into typed parts:
each field of ``RunRecord`` (and of every ``Part``) is named after the fact it holds, and its type says what that fact
is. A recorded value is converted to the field's type (nested dataclasses, tuples, mappings, optional values); a fact
the run has not recorded takes the field's default.

A guard that reads a new fact needs no edit here: declare a ``Part`` (a frozen dataclass whose fields are named after
the facts it reads) beside the guard, read it with ``snap.run.part(ThatPart)``, and let an action record the fact.
Every ``Part`` subclass registers itself when its module is imported, and every record loads every registered part.
Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from statemachine.model import Change, Comment, Issue, Snapshot

P = TypeVar("P", bound="Part")


# converting recorded JSON to typed values --------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any) -> Any:
    """``value`` (as JSON decoded it) as type ``tp``; lenient: a value of another shape is kept as it is (the record is
    read from the runner's own store, never from the agent)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            return value
        try:
            return _dataclass(tp, value)
        except TypeError:  # a required field missing: kept as recorded, and a guard reading it fails closed
            return value
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value) if isinstance(value, list | tuple) else value
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(item, v) for k, v in value.items()} if isinstance(value, Mapping) else value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _dataclass(cls: type, data: Mapping[str, Any]) -> Any:
    """An instance of dataclass ``cls`` from the keys of ``data`` named like its fields (others ignored)."""
    hints = _hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.init and f.name in data and (data[f.name] is not None or _optional(hints[f.name])):
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp) or tp is Any


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


# the parts ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentOutcome:
    """How one agent run ended (fact ``agent``), as actions/agent.py records it."""

    exit_code: int | None = None
    timed_out: bool = False
    idle_timed_out: bool = False
    error: str | None = None
    log: str | None = None
    duration_seconds: float = 0.0
    output_bytes: int = 0
    timeout_seconds: float | None = None
    idle_timeout_seconds: float | None = None
    tokens: Mapping[str, int] | None = None
    secret_values: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """One configured check's run on the candidate commit (an entry of fact ``checks``)."""

    exit_code: int | None = None
    timed_out: bool = False
    log: str | None = None
    error: str | None = None
    command: str | None = None
    duration_seconds: float = 0.0


@dataclass(frozen=True)
class Inspection:
    """What the runner found inspecting the candidate (fact ``inspection``): each a list of findings."""

    secrets: tuple[Mapping[str, Any], ...] = ()
    destructive: tuple[Mapping[str, Any], ...] = ()
    git_tampering: tuple[str, ...] = ()
    symlinks: tuple[Mapping[str, Any], ...] = ()
    edited_after_report: tuple[str, ...] = ()


@dataclass(frozen=True)
class SizeSummary:
    """The runner's measure of the bytes the candidate adds or changes (fact ``changed_bytes``, limits.size_summary)."""

    total: int = 0
    count: int = 0
    largest: tuple[Mapping[str, Any], ...] = ()
    binary_count: int = 0
    binaries: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class TddEvidence:
    """The changed tests run on the base and on the candidate (fact ``tdd``)."""

    error: str | None = None
    tests: tuple[str, ...] = ()
    base_exit: int | None = None
    candidate_exit: int | None = None
    base_log: str | None = None
    candidate_log: str | None = None


@dataclass(frozen=True)
class ReviewOutcome:
    """The review agent's verdict on the candidate (fact ``review``)."""

    verdict: str | None = None
    error: str | None = None
    defects: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class ProofOutcome:
    """The checked proof (fact ``proof``); its artifacts and per-criterion answers stay in the evidence."""

    status: str | None = None
    error: str | None = None
    findings: tuple[str, ...] = ()
    dir: str | None = None
    dir_rel: str | None = None


@dataclass(frozen=True)
class PullRequestRef:
    """The run's draft pull request (fact ``pull_request``)."""

    number: int = 0
    url: str = ""
    head: str = ""
    base: str = ""
    draft: bool = True


@dataclass(frozen=True)
class ClaimRef:
    """The run's claim comment, whose lease it renews (fact ``claim``)."""

    comment: int = 0
    run_id: str = ""


class Part:
    """A typed part of a run's record that a guard declares beside itself: a frozen dataclass whose fields are named
    after the facts it reads, each with a default (what the guard sees before the fact is recorded). Subclasses
    register themselves; every record loads every registered part."""

    registered: ClassVar[list[type[Part]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Part.registered.append(cls)


# the record --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """Everything the current run recorded that guards judge; each field is the fact of the same name."""

    run_id: str | None = None
    # the attempt
    attempt: int = 0
    rework_count: int = 0
    review_rounds: int = 0
    findings: tuple[str, ...] = ()  # what the next rework prompt shows
    # the agent's run and its report
    agent: AgentOutcome | None = None
    report: Mapping[str, Any] | None = None  # the completion report, valid against its schema
    report_error: str | None = None
    acceptance_criteria: tuple[Any, ...] = ()
    # the change set the runner captured
    changes: tuple[Change, ...] | None = None  # None until captured
    changes_by_kind: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    changed_lines: int = 0
    changed_bytes: SizeSummary | None = None
    capture_error: str | None = None
    candidate_sha: str | None = None
    # the judgements of the candidate
    inspection: Inspection | None = None
    checks: Mapping[str, CheckResult] | None = None
    tdd: TddEvidence | None = None
    review: ReviewOutcome | None = None
    proof: ProofOutcome | None = None
    # publication and review
    pull_request: PullRequestRef | None = None
    feedback_handled: tuple[str, ...] = ()
    claim: ClaimRef | None = None
    # a parent's plan
    plan: Mapping[str, Any] | None = None
    plan_error: str | None = None
    plan_problems: tuple[str, ...] = ()
    plan_digest: str | None = None
    planning_changes: tuple[str, ...] | None = None
    plan_tree: Mapping[str, Mapping[str, Any]] | None = None  # child key -> its status, issue, reason...
    integration_branch: str | None = None
    # every registered Part, loaded from the same facts
    parts: Mapping[type, Any] = field(default_factory=dict, compare=False)
    # the facts as recorded (JSON), kept to save the record with a step and load it back exactly
    recorded: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, run_id: str | None, facts: Mapping[str, Any]) -> RunRecord:
        own = {k: v for k, v in facts.items() if k not in ("parts", "recorded")}
        record: RunRecord = _dataclass(cls, {**own, "run_id": run_id})
        parts = {}
        for part in Part.registered:
            with contextlib.suppress(TypeError):  # a part whose facts were recorded in another shape: part() says so
                parts[part] = _dataclass(part, facts)
        return dataclasses.replace(record, parts=parts, recorded=dict(facts))

    def part(self, kind: type[P]) -> P:
        """The registered part ``kind`` of this record (its defaults where the run has not recorded its facts)."""
        found = self.parts.get(kind)
        return found if isinstance(found, kind) else _dataclass(kind, self.recorded)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "facts": _json(self.recorded)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        if "facts" in data:
            return cls.load(data.get("run_id"), data["facts"])
        # a step saved by an orch before the typed record: its typed fields, and every other fact under "extra"
        legacy = {k: v for k, v in data.items() if k not in ("run_id", "extra")}
        return cls.load(data.get("run_id"), {**(data.get("extra") or {}), **legacy})


# a snapshot saved with its step (to resume it exactly) ----------------------------------------------------------------


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    out = {f.name: _json(getattr(snap, f.name)) for f in fields(snap) if f.name != "run"}
    out["run"] = snap.run.to_json()
    return out


def snapshot_from_dict(data: Mapping[str, Any]) -> Snapshot:
    issue = dict(data["issue"])
    issue["labels"] = tuple(issue["labels"])
    issue["comments"] = tuple(Comment(**c) for c in issue["comments"])
    return Snapshot(
        issue=Issue(**issue),
        state=data["state"],
        run=RunRecord.from_json(data["run"]),
        labels=data["labels"],
        settings=data["settings"],
        taken_at=data["taken_at"],
        authority=data.get("authority", {}),
        feedback=tuple(data.get("feedback", ())),
        parent=data.get("parent"),
        text=data.get("text"),
        preflight=None if data.get("preflight") is None else tuple(data["preflight"]),
        claim=data.get("claim"),
        budget=data.get("budget"),
    )
