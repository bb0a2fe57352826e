"""Stateful properties of the lifecycle built from the bundled default policy.

Two identical worlds, each a real git repository with a real SQLite Store and the real LocalTracker
(the Agent port is an in-process fake that edits the worktree and writes its report), are driven in
lockstep by Hypothesis: engine steps, the machine's triggers fired directly, `explain`, and a
maintainer's label changes. In `step_interrupted` the second world's step is cut short by a simulated
crash (after a port effect, or right after the journal recorded an action as done) and stepped again;
afterwards both worlds must hold the same state: the end state of an uninterrupted step.

Invariants checked:
- `step` fires at most one transition (one steps row or none), the very one an independent model
  predicts, and runs exactly that transition's actions;
- `review` is reached only from `gating`, by a transition whose every guard passed;
- `blocked` and `review` are left only by transitions declared `human: true`;
- the rework counter of a run never exceeds limits.rework_iterations (and counts its reworks);
- `explain` (also on an interrupted step) writes nothing: database, files, ports and refs unchanged;
- resuming an interrupted step never repeats an effect of an action journaled as done.

Guard outcomes: the guards that judge the outside world (agent, report, change set, checks, proof,
gates) answer what an oracle says, drawn by Hypothesis for each rule; the guards over state the test
drives itself (issue open, labels, rework budget) stay real. Step nonces come from a seeded generator
and git gets fixed commit dates, so that both worlds name runs and commits alike.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from transitions.core import MachineError

from statemachine import engine as engine_mod
from statemachine import policy as policy_mod
from statemachine import registry, resources
from statemachine.adapters.git import RUNNER_IDENT, CliGit, run_git
from statemachine.adapters.local import LocalTracker
from statemachine.engine import Engine, StepOutcome
from statemachine.machine import IssueModel, build_machine
from statemachine.model import LABEL_ROLES, REST_STATES, Issue, Verdict
from statemachine.policy import GuardSpec, Policy, Transition
from statemachine.ports import AgentRequest, AgentResult
from statemachine.runtime import Runtime
from statemachine.store import Store

# Guards whose inputs this test controls for real (tracker state, the run's rework counter).
REAL_GUARDS = frozenset(
    {
        "issue_open",
        "has_label",
        "label_authorized",
        "lacks_labels",
        "within_rework_limit",
        "has_any_label",
        "not_a_child",
    }
)
# The parent flow (planning, waves of child runs as processes, integration) and the child-only transitions are
# covered end to end by tests/test_plan_auto.py and test_plan_recovery.py; here the issue lifecycle runs alone.
PARENT_GUARDS = frozenset({"dispatched_by_parent", "redispatched_by_parent"})
# Left out when two worlds are compared: wall-clock times (any ISO timestamp, durations, nanosecond
# clocks), the flag saying a step was resumed, and the digest of a worktree's .git file (it names the
# world's own folder).
SCRUB_KEYS = frozenset({"resumed", "gitfile"})
CLOCK_KEY = re.compile(r"duration|elapsed|_ns$")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
ISSUE = 1


def default_policy() -> Policy:
    """The bundled default policy without the parent flow and the child-only transitions."""
    from statemachine.model import PLAN_STATES

    full = policy_mod.load(resources.bundled_policy("default"))
    keep = [
        t
        for t in full.transitions
        if not (set(t.sources) | {t.dest}) & PLAN_STATES and not {g.name for g in t.guards} & PARENT_GUARDS
    ]
    data = dict(full.data)
    data["lifecycle"] = {"transitions": [full.data["lifecycle"]["transitions"][t.index] for t in keep]}
    from statemachine.yamlsrc import Document

    return policy_mod.check(data, [Document("<test: default without the parent flow>", None, data)])


POLICY = default_policy()
LIMIT = int(POLICY.data["limits"]["rework_iterations"])
LABELS = POLICY.label_names
ORACLE_GUARDS = sorted({g.name for t in POLICY.transitions for g in t.guards} - REAL_GUARDS)
TRIGGERS = sorted({t.trigger for t in POLICY.transitions})


# the oracle: answers for the guards that judge the outside world ------------------------------


class Oracle:
    """The current answers of the outside-world guards, set before each rule."""

    table: ClassVar[dict[str, bool]] = {}


def _oracle_guard(name: str) -> Any:
    def guard(snap: Any, **params: Any) -> Verdict:
        if Oracle.table[name]:
            return Verdict.passed(f"oracle: {name} holds")
        return Verdict.failed(f"oracle: {name} does not hold")

    guard.__name__ = name
    return guard


def model_guard(spec: GuardSpec, issue: Issue, rework: int) -> bool:
    """An independent model of every guard's verdict, for the state the test drives."""
    if spec.name == "issue_open":
        ok = issue.state == "open"
    elif spec.name in ("has_label", "label_authorized"):  # the local tracker: the local user is admin
        ok = LABELS[spec.params["label"]] in issue.labels
    elif spec.name == "lacks_labels":
        ok = not any(LABELS[r] in issue.labels for r in spec.params["labels"])
    elif spec.name == "has_any_label":
        ok = any(LABELS[r] in issue.labels for r in spec.params["labels"])
    elif spec.name == "not_a_child":
        ok = LABELS["child"] not in issue.labels
    elif spec.name == "within_rework_limit":
        ok = rework < LIMIT
    else:
        ok = Oracle.table[spec.name]
    return ok != spec.negate


def model_passes(t: Transition, issue: Issue, rework: int) -> bool:
    return all(model_guard(g, issue, rework) for g in t.guards)


def model_choice(state: str, issue: Issue, rework: int, trigger: str | None = None) -> Transition | None:
    """The first transition out of ``state`` (with ``trigger``, if given) whose guards all pass."""
    for t in POLICY.outgoing(state):
        if (trigger is None or t.trigger == trigger) and model_passes(t, issue, rework):
            return t
    return None


# the simulated world: counted port effects, crash injection -----------------------------------


class SimulatedCrash(BaseException):
    """The process dies here (BaseException, so no `except Exception` in orch can swallow it)."""


class Effects:
    """Every mutating port call, tagged with the journal entry (step, idx) that was running."""

    def __init__(self) -> None:
        self.log: list[tuple[int, tuple[int, int] | None, str]] = []  # (attempt, tag, kind)
        self.intents: list[tuple[int, int, int]] = []  # (attempt, step, idx)
        self.current: tuple[int, int] | None = None
        self.attempt = 0
        self.crash_mode: str | None = None  # "port" | "journal"
        self.crash_at = 0
        self.counted = 0

    def arm(self, mode: str | None, at: int = 0) -> None:
        self.crash_mode, self.crash_at, self.counted = mode, at, 0

    def _tick(self, mode: str) -> None:
        if self.crash_mode == mode:
            self.counted += 1
            if self.counted == self.crash_at:
                self.crash_mode = None
                raise SimulatedCrash(f"crash after {mode} event #{self.crash_at}")

    def effect(self, kind: str) -> None:
        self.log.append((self.attempt, self.current, kind))
        if self.current is not None:
            self._tick("port")

    def journal_done(self) -> None:
        self._tick("journal")


TRACKER_WRITES = (
    "add_labels",
    "remove_labels",
    "set_labels",
    "post_comment",
    "delete_comment",
    "create_pull",
    "set_state",
)
GIT_WRITES = ("ensure_worktree", "add_detached_worktree", "remove_worktree", "commit_tree", "set_branch", "push")


def _counting(cls: type, writes: tuple[str, ...], port: str) -> type:
    """A subclass of the real adapter whose every write is counted (and may be followed by a crash)."""

    def wrap(name: str) -> Any:
        method = getattr(cls, name)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = method(self, *args, **kwargs)
            self.effects.effect(f"{port}.{name}")
            return result

        counted.__name__ = name
        return counted

    return type(f"Counting{cls.__name__}", (cls,), {n: wrap(n) for n in writes if hasattr(cls, n)})


CountingTracker = _counting(LocalTracker, TRACKER_WRITES, "tracker")
CountingGit = _counting(CliGit, GIT_WRITES, "git")


class FakeAgent:
    """The Agent port in-process: edits app.py in the worktree and writes a valid report, idempotently."""

    kind = "fake"

    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    def run(self, request: AgentRequest) -> AgentResult:
        mode = request.extra_env.get("ORCH_MODE", "implementation")
        request.evidence_dir.mkdir(parents=True, exist_ok=True)
        log = request.evidence_dir / "agent.log"
        log.write_text(f"fake agent ran ({mode})\n")
        if mode == "proof":
            report: dict[str, Any] = {"status": "passed", "criteria": []}
        elif mode == "review":
            report = {"verdict": "approve", "summary": "Fine.", "defects": []}
        else:
            attempt = request.evidence_dir.name
            (request.workdir / "app.py").write_text(f"{APP}\n# changed in {attempt}\n")
            report = {
                "status": "completed",
                "summary": f"Changed app.py ({attempt}).",
                "changed_files": ["app.py"],
                "validation": [],
            }
        request.report_path.write_text(json.dumps(report))
        self.effects.effect("agent.run")
        return AgentResult(0, False, False, 0.25, str(log), 15)


APP = "def add(a, b):\n    return a + b\n"


def make_repo(root: Path) -> None:
    """A git repository with one commit; with the fixed dates set by the test, its sha is always the same."""
    root.mkdir(parents=True)
    run_git(["init", "-q", "-b", "main"], root)
    (root / "app.py").write_text(APP)
    (root / ".gitignore").write_text(".orch/\n")
    run_git(["add", "-A"], root)
    run_git(["commit", "-q", "-m", "init"], root, RUNNER_IDENT)


class World:
    """One repository: real git, real Store and LocalTracker, an in-process agent, and the Engine over them."""

    def __init__(self, root: Path, seed: int) -> None:
        make_repo(root)
        self.root = root
        self.rng = random.Random(seed)  # this world's step nonces (the same sequence in every world)
        self.effects = Effects()
        self.store = Store(root / ".orch" / "state" / "orch.db")
        self.tracker = CountingTracker(self.store)
        self.tracker.effects = self.effects
        self.git = CountingGit(root)
        self.git.effects = self.effects
        self.agent = FakeAgent(self.effects)
        rt = Runtime(repo=root, policy=POLICY, store=self.store, tracker=self.tracker, git=self.git)
        rt.make_agent = lambda _agent=None: self.agent  # type: ignore[method-assign,assignment]
        self.engine = Engine(rt)
        self.tracker.create_issue("Fix the parser", "The parser drops the last token.", [LABELS["auto"]])
        self.effects.log.clear()
        # tag every port effect with the journal entry being executed; crash after a journaled `done`
        intent, done = self.store.journal_intent, self.store.journal_done

        def journal_intent(step_id: int, idx: int, action: str, params: dict[str, Any]) -> None:
            intent(step_id, idx, action, params)
            self.effects.intents.append((self.effects.attempt, step_id, idx))
            self.effects.current = (step_id, idx)

        def journal_done(step_id: int, idx: int, result: Any) -> None:
            done(step_id, idx, result)
            self.effects.current = None
            self.effects.journal_done()

        self.store.journal_intent = journal_intent  # type: ignore[method-assign]
        self.store.journal_done = journal_done  # type: ignore[method-assign]

    def close(self) -> None:
        self.store.close()

    # reading -------------------------------------------------------------------------------

    def issue(self) -> Issue:
        issue: Issue = self.tracker.get_issue(ISSUE)
        return issue

    def state(self) -> str:
        return self.store.state_of(ISSUE)[0]

    def rework(self) -> int:
        return int(self.store.facts(self.store.state_of(ISSUE)[1]).get("rework_count", 0))

    def raw_db(self) -> dict[str, list[tuple[Any, ...]]]:
        names = [
            r[0]
            for r in self.store.query(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {n: [tuple(r) for r in self.store.query(f"SELECT * FROM {n} ORDER BY rowid")] for n in names}

    def files(self) -> dict[str, Any]:
        """Every file orch wrote (evidence, worktrees) except the database and git's own metadata."""
        out: dict[str, Any] = {}
        for path in sorted((self.root / ".orch").rglob("*")):
            rel = path.relative_to(self.root)
            # skip: the database, git's metadata, and the agent's own git directory (its index holds stat times)
            if (
                rel.parts[:2] == (".orch", "state")
                or ".git" in rel.parts
                or "git" in rel.parts[2:]
                or not path.is_file()
            ):
                continue
            text = path.read_text(errors="replace")
            if path.suffix == ".jsonl":
                out[str(rel)] = [_scrub(json.loads(line)) for line in text.splitlines()]
            else:
                out[str(rel)] = text
        return out

    def refs(self) -> dict[str, str]:
        """Every ref and HEAD, read from .git directly (no git process: this runs around every rule)."""
        git = self.root / ".git"
        out = {"HEAD": (git / "HEAD").read_text().strip()}
        packed = git / "packed-refs"
        for line in packed.read_text().splitlines() if packed.exists() else ():
            if line and line[0] not in "#^":
                sha, name = line.split(" ", 1)
                out[name] = sha
        out.update({str(p.relative_to(git)): p.read_text().strip() for p in (git / "refs").rglob("*") if p.is_file()})
        return out

    def git_state(self) -> dict[str, Any]:
        """Every ref, and every linked worktree with its HEAD and `git status`."""
        worktrees = {}
        for admin in sorted((self.root / ".git" / "worktrees").glob("*")):
            checkout = Path((admin / "gitdir").read_text().strip()).parent
            status = run_git(["status", "--porcelain"], checkout, check=False) if checkout.is_dir() else "<gone>"
            worktrees[admin.name] = ((admin / "HEAD").read_text().strip(), str(checkout), status)
        return {"refs": self.refs(), "worktrees": worktrees}

    def fingerprint(self) -> dict[str, Any]:
        """Everything observable, with wall-clock times removed and the world's own folder renamed."""
        tables: dict[str, list[dict[str, Any]]] = {}
        for name in self.raw_db():
            info = self.store.query(f"PRAGMA table_info({name})")
            key = ", ".join(r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]) or "rowid"
            cur = self.store.conn.execute(f"SELECT * FROM {name} ORDER BY {key}")
            cols = [d[0] for d in cur.description]
            tables[name] = [
                {c: _scrub(_maybe_json(v)) for c, v in zip(cols, r) if c not in SCRUB_KEYS} for r in cur.fetchall()
            ]
        text = json.dumps({"db": tables, "git": self.git_state(), "files": self.files()}, sort_keys=True, default=str)
        fingerprint: dict[str, Any] = json.loads(TIMESTAMP.sub("<time>", text.replace(str(self.root), "<world>")))
        return fingerprint

    # acting --------------------------------------------------------------------------------

    def step(self) -> StepOutcome:
        self.effects.attempt += 1
        Nonces.world = self
        return self.engine.step(ISSUE)

    def human(self, change: tuple[str, ...]) -> None:
        if change[0] == "add":
            self.tracker.add_labels(ISSUE, [LABELS[change[1]]])
        elif change[0] == "remove":
            self.tracker.remove_labels(ISSUE, [LABELS[change[1]]])
        elif change == TIDY:
            self.tracker.remove_labels(ISSUE, [LABELS[r] for r in ("blocked", "review", "running", "manual")])
            self.tracker.add_labels(ISSUE, [LABELS["auto"]])
            self.tracker.set_state(ISSUE, "open")
        else:
            self.tracker.set_state(ISSUE, "closed" if change[0] == "close" else "open")


class Nonces:
    """Stands in for the `uuid` module inside the engine: each world draws its step nonces from its own seed,
    so both worlds name their runs alike and git (with fixed dates) makes the same commits."""

    world: World | None = None

    @staticmethod
    def uuid4() -> uuid.UUID:
        assert Nonces.world is not None
        return uuid.UUID(int=Nonces.world.rng.getrandbits(128))


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two fingerprints differ (key paths with both values), for assertion messages."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'the reference' if k in a else 'the interrupted world'}")
            else:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: reference {a!r:.300} != interrupted {b!r:.300}"]


def assert_same_world(ref: World, other: World, why: str) -> None:
    """Both worlds hold the same state. An action that was interrupted and run again may describe its
    result differently (`reused`, or nothing left to remove), so those journal results are not compared."""
    attempts: dict[tuple[int, int], set[int]] = {}
    for attempt, step_id, idx in other.effects.intents:
        attempts.setdefault((step_id, idx), set()).add(attempt)
    rerun = {entry for entry, started in attempts.items() if len(started) > 1}
    prints: list[Any] = []
    for w in (ref, other):
        fp = w.fingerprint()
        for row in fp["db"]["journal"]:
            if (row["step_id"], row["idx"]) in rerun:
                row.pop("result")
        prints.append(fp)
    diff = differences(*prints)
    assert not diff, why + ":\n  " + "\n  ".join(diff[:8])


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in SCRUB_KEYS and not CLOCK_KEY.search(str(k))}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


@contextmanager
def unchanged(world: World, what: str) -> Iterator[None]:
    """Assert the block writes nothing: no row, no file, no port effect, no state change."""
    db, changes = world.raw_db(), world.store.conn.total_changes
    files, effects, git = world.files(), len(world.effects.log), world.refs()
    yield
    assert world.store.conn.total_changes == changes, f"{what} wrote to the database"
    assert world.raw_db() == db, f"{what} changed the database"
    assert world.files() == files, f"{what} changed files"
    assert len(world.effects.log) == effects, f"{what} reached a port: {world.effects.log[effects:]}"
    assert world.refs() == git, f"{what} moved a git ref"


# the state machine -----------------------------------------------------------------------------

# How a run of the machine tends to go: "random" aims at any transition; the others prefer, in each
# state, the transition whose destination comes first in their list (so runs get deep: to review,
# or round the rework loop until its budget is spent).
STYLES = {
    "random": [],
    "forward": ["claimed", "implementing", "gating", "proving", "review", "queued"],
    "rework": ["claimed", "implementing", "rework", "gating", "proving", "queued"],
}


def aim(table: dict[str, bool], state: str, target: Transition | None) -> dict[str, bool]:
    """Change the oracle's answers so that ``target`` passes its oracle guards and every transition
    declared before it from ``state`` fails one (the real guards may still say otherwise)."""
    table = dict(table)
    if target is None:
        return table
    needed = {g.name: not g.negate for g in target.guards if g.name in table}
    table.update(needed)
    for earlier in POLICY.outgoing(state)[: POLICY.outgoing(state).index(target)]:
        spoilers = [g for g in earlier.guards if g.name in table and g.name not in needed]
        if spoilers:
            table[spoilers[0].name] = spoilers[0].negate
    return table


def guard_outcomes(state: str, style: str) -> st.SearchStrategy[dict[str, bool]]:
    """Random answers for the oracle guards, usually aimed at one outgoing transition."""
    base = st.fixed_dictionaries({g: st.booleans() for g in ORACLE_GUARDS})
    outgoing = POLICY.outgoing(state)
    order = STYLES[style]
    preferred = (
        sorted(outgoing, key=lambda t: order.index(t.dest) if t.dest in order else len(order))[:1] if order else []
    )
    aims = st.sampled_from([*preferred * 8, *outgoing, None])
    return st.tuples(base, aims).map(lambda pair: aim(pair[0], state, pair[1]))


HUMAN_CHANGES = [("add", r) for r in LABEL_ROLES] + [("remove", r) for r in LABEL_ROLES] + [("close",), ("reopen",)]
TIDY = ("tidy",)  # open, authorized, and none of the labels that stop a claim: what sends an issue round again


def maintainer(state: str, style: str) -> st.SearchStrategy[tuple[str, ...] | None]:
    """What a maintainer does before a step: while the issue rests (or waits in the queue), usually tidy
    it up so that it goes round again; while the runner works, nothing, or (in the random style) now and
    then a label change, closing or reopening the issue."""
    if state in REST_STATES or state == "queued":
        return st.tuples(st.integers(0, 3), st.sampled_from([None, *HUMAN_CHANGES])).map(
            lambda p: p[1] if p[0] == 0 else TIDY
        )
    if style != "random":
        return st.none()
    return st.tuples(st.integers(0, 3), st.sampled_from(HUMAN_CHANGES)).map(lambda p: p[1] if p[0] == 0 else None)


def checked_step(world: World, expected: Transition | None) -> tuple[StepOutcome, int]:
    """One uninterrupted step, checked: at most one transition, exactly the one the model predicts.
    Returns the outcome and how many port effects the step's actions made."""
    source, issue, rework = world.state(), world.issue(), world.rework()
    steps_before = world.store.steps(ISSUE)
    journal_before = world.store.journal(ISSUE)
    effects_before = len(world.effects.log)
    out = world.step()
    steps_after = world.store.steps(ISSUE)
    new_journal = world.store.journal(ISSUE)[len(journal_before) :]
    new_effects = world.effects.log[effects_before:]
    assert out.source == source, f"the step started from {out.source}, the issue was in {source}"
    if expected is None:
        assert out.fired is None and out.dest is None, (
            f"{out.fired and out.fired.transition.trigger} fired; no transition may"
        )
        assert steps_after == steps_before, "a step that fired nothing added a steps row"
        assert new_journal == [] and new_effects == [], "a step that fired nothing ran actions"
        assert world.state() == source, "a step that fired nothing changed the state"
        return out, 0
    assert out.fired is not None, f"nothing fired from {source}; the model expects {expected.trigger} → {expected.dest}"
    t = out.fired.transition
    assert t.index == expected.index, (
        f"fired #{t.index} {t.trigger}, the model expects #{expected.index} {expected.trigger}"
    )
    # exactly one steps row added, done, recording this transition
    assert len(steps_after) == len(steps_before) + 1 and steps_after[:-1] == steps_before, (
        f"one step added {len(steps_after) - len(steps_before)} steps rows (or rewrote earlier ones)"
    )
    row = steps_after[-1]
    assert (row.status, row.source, row.dest, row.transition_index) == ("done", source, t.dest, t.index), row
    assert world.state() == out.dest == t.dest, f"the issue is in {world.state()} after firing {t.trigger} → {t.dest}"
    # that transition's actions ran once each, in order, journaled under that row only
    assert [(j["step"], j["idx"], j["action"], j["status"]) for j in new_journal] == [
        (row.id, i, a.name, "done") for i, a in enumerate(t.actions)
    ], f"journal of one step: {new_journal}"
    assert all(tag is not None and tag[0] == row.id for _a, tag, _k in new_effects), (
        f"port effects outside this step's actions: {new_effects}"
    )
    # review is reached only from gating, with every guard passed (as recorded, and per the model)
    if t.dest == "review":
        assert source == "gating", f"reached review from {source}"
        assert model_passes(t, issue, rework), "reached review though a guard of the transition failed"
        assert out.fired.ok and all(v.ok for _n, v in out.fired.verdicts), out.fired.as_json()
    if source in REST_STATES:
        assert t.human, f"left {source} by #{t.index} {t.trigger}, which is not declared human"
    return out, sum(1 for _a, tag, _k in new_effects if tag is not None)


def interrupted_step(world: World, expected: Transition, plan: list[tuple[str, int]]) -> StepOutcome:
    """Step ``world`` crashing as ``plan`` says ((mode, n): after the n-th port effect or journaled `done`
    of that attempt), stepping again after each crash; then check that nothing journaled done ran again."""
    fx = world.effects
    step_id: int | None = None
    done_by_attempt: dict[int, set[int]] = {}
    crashes = 0
    for mode, at in [*plan, (None, 0)]:
        fx.arm(mode, at)
        try:
            out = world.step()
        except SimulatedCrash:
            crashes += 1
            pending = world.store.pending_step(ISSUE)
            assert pending is not None, "a crashed step left no pending step to resume"
            assert pending.transition_index == expected.index, "the interrupted step recorded another transition"
            step_id = pending.id
            done_by_attempt[fx.attempt] = {
                j["idx"] for j in world.store.journal(ISSUE) if j["step"] == step_id and j["status"] == "done"
            }
            with unchanged(world, "explain on an interrupted step"):
                _snap, evaluations = world.engine.explain(ISSUE)
            assert next(e for e in evaluations if e.ok).transition.index == expected.index, (
                "explain on an interrupted step shows another transition than the one being resumed"
            )
            continue
        break
    fx.arm(None)
    assert out.fired is not None and out.fired.transition.index == expected.index, (
        "the resumed step fired another transition"
    )
    assert out.resumed == (crashes > 0), f"resumed={out.resumed} after {crashes} crash(es)"
    assert world.store.pending_step(ISSUE) is None, "the resumed step is still pending"
    for attempt, done in done_by_attempt.items():
        repeated = [
            (a, tag, kind)
            for a, tag, kind in fx.log
            if a > attempt and tag is not None and tag[0] == step_id and tag[1] in done
        ]
        assert not repeated, f"effects of actions journaled done were executed again: {repeated}"
        reentered = [(a, s, i) for a, s, i in fx.intents if a > attempt and s == step_id and i in done]
        assert not reentered, f"actions journaled done were started again: {reentered}"
    return out


class LifecycleMachine(RuleBasedStateMachine):
    """Two worlds in lockstep; only `step_interrupted` ever crashes one (the "crashy" one)."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="orch-lifecycle-"))
        self.ref = World(self.tmp / "reference", seed=0)
        self.crashy = World(self.tmp / "crashy", seed=0)
        self.worlds = (self.ref, self.crashy)
        self.machine = build_machine(POLICY)
        self.style = "random"

    def teardown(self) -> None:
        for w in self.worlds:
            w.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def prepare(self, data: st.DataObject, human: bool = True) -> Transition | None:
        """Maybe let a maintainer act (in both worlds alike), draw the oracle's answers, and return what
        the model says must fire."""
        change = data.draw(maintainer(self.ref.state(), self.style), label="maintainer") if human else None
        if change is not None:
            for w in self.worlds:
                w.human(change)
        Oracle.table = data.draw(guard_outcomes(self.ref.state(), self.style), label="guards")
        return model_choice(self.ref.state(), self.ref.issue(), self.ref.rework())

    @initialize(style=st.sampled_from(sorted(STYLES) * 3))  # repeated: Hypothesis then spreads its picks more evenly
    def choose_style(self, style: str) -> None:
        self.style = style

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        expected = self.prepare(data)
        for w in self.worlds:
            checked_step(w, expected)

    @rule(data=st.data())
    def step_interrupted(self, data: st.DataObject) -> None:
        expected = self.prepare(data)
        _out, port_effects = checked_step(self.ref, expected)
        budget = {"journal": len(expected.actions) if expected else 0, "port": port_effects}
        modes = [m for m, n in budget.items() if n]
        if expected is None or not modes:  # nothing fires, or a transition without actions: nothing to interrupt
            checked_step(self.crashy, expected)
        else:
            plan = data.draw(
                st.lists(
                    st.sampled_from(modes).flatmap(lambda m: st.tuples(st.just(m), st.integers(1, budget[m]))),
                    min_size=1,
                    max_size=2,
                ),
                label="crashes",
            )
            interrupted_step(self.crashy, expected, plan)
        assert_same_world(self.ref, self.crashy, "the resumed step ended differently from an uninterrupted one")

    @rule(data=st.data())
    def observe(self, data: st.DataObject) -> None:
        """`explain`, or a trigger fired on the machine itself (one rule, so that steps stay two rules in three)."""
        if data.draw(st.booleans(), label="explain (or fire a trigger)"):
            self.explain(data)
        else:
            self.fire_trigger(data, data.draw(st.sampled_from([*TRIGGERS, "no_such_trigger"]), label="trigger"))

    def explain(self, data: st.DataObject) -> None:
        self.prepare(data, human=False)
        for w in self.worlds:
            issue, rework, state = w.issue(), w.rework(), w.state()
            with unchanged(w, "explain"):
                snap, evaluations = w.engine.explain(ISSUE)
            assert snap.state == state
            assert [e.transition.index for e in evaluations] == [t.index for t in POLICY.outgoing(state)]
            for e in evaluations:
                assert e.ok == model_passes(e.transition, issue, rework), e.as_json()

    def fire_trigger(self, data: st.DataObject, trigger: str) -> None:
        """Fire a random trigger on the machine itself: it must obey the table and the guards, and write nothing."""
        from statemachine.snapshots import take_snapshot

        self.prepare(data, human=False)
        state, issue, rework = self.ref.state(), self.ref.issue(), self.ref.rework()
        expected = model_choice(state, issue, rework, trigger)
        declared = any(t.trigger == trigger for t in POLICY.outgoing(state))
        calls: list[tuple[int, int, str]] = []

        class Recorder:
            def run(self, transition: Transition, idx: int, spec: Any) -> None:
                calls.append((transition.index, idx, spec.name))

        model = IssueModel(ISSUE)
        with unchanged(self.ref, f"firing {trigger} on the machine"):
            snap = take_snapshot(self.ref.engine.rt, ISSUE)
            self.machine.add_model(model, initial=state)
            try:
                if not declared:  # an unknown event, or one that cannot start from this state
                    with pytest.raises(AttributeError if trigger not in TRIGGERS else MachineError):
                        model.trigger(trigger, snapshot=snap, runner=Recorder())  # type: ignore[attr-defined]
                    fired = False
                else:
                    fired = model.trigger(trigger, snapshot=snap, runner=Recorder())  # type: ignore[attr-defined]
                moved_to = model.state
            finally:
                self.machine.remove_model(model)
        if expected is None:
            assert not fired and moved_to == state and calls == []
            return
        assert fired and moved_to == expected.dest
        assert calls == [(expected.index, i, a.name) for i, a in enumerate(expected.actions)]
        if moved_to == "review":
            assert state == "gating" and model_passes(expected, issue, rework)
        if state in REST_STATES:
            assert expected.human

    # invariants over the whole history -----------------------------------------------------

    @invariant()
    def history_is_lawful(self) -> None:
        for w in self.worlds:
            steps = w.store.steps(ISSUE)
            assert all(s.status == "done" for s in steps), "a pending step outlived its rule"
            assert w.store.query("SELECT COUNT(*) FROM locks")[0][0] == 0, "a lock outlived its step"
            state = "queued"
            for s in steps:
                t = POLICY.transitions[s.transition_index]
                assert s.source == state and s.source in t.sources and (s.trigger, s.dest) == (t.trigger, t.dest)
                chosen = next(v for v in s.verdicts if v["index"] == s.transition_index)
                assert chosen["would_fire"] and all(g["verdict"]["ok"] for g in chosen["guards"])
                if s.dest == "review":
                    assert s.source == "gating", f"step {s.id} reached review from {s.source}"
                if s.source in REST_STATES:
                    assert t.human, f"step {s.id} left {s.source} by a transition not declared human"
                state = s.dest
            assert w.state() == state

    @invariant()
    def rework_within_limit(self) -> None:
        for w in self.worlds:
            steps = w.store.steps(ISSUE)
            for (run_id,) in w.store.query("SELECT run_id FROM runs"):
                count = int(w.store.facts(run_id).get("rework_count", 0))
                assert count <= LIMIT, f"run {run_id} reworked {count} times; limits.rework_iterations is {LIMIT}"
                entered = sum(1 for s in steps if s.run_id == run_id and s.dest == "rework")
                assert count == entered, f"run {run_id}: rework counter {count}, but it entered rework {entered} times"


@pytest.fixture
def oracle_guards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The oracle in place of the outside-world guards; deterministic nonces and commit dates."""
    for name in ORACLE_GUARDS:
        entry = registry.GUARDS[name]
        monkeypatch.setitem(
            registry.GUARDS, name, registry.Entry(name, _oracle_guard(name), entry.params, entry.summary)
        )
    monkeypatch.setattr(engine_mod, "uuid", Nonces)
    for var in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.setenv(var, "2024-01-01T00:00:00+00:00")
    monkeypatch.delenv("ORCH_TEST_KILL_AFTER_EFFECT", raising=False)
    yield
    Oracle.table = {}


def test_lifecycle_invariants(oracle_guards: None) -> None:
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=int(os.environ.get("ORCH_PROPERTY_EXAMPLES", "10")),
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# the same checks on fixed paths ------------------------------------------------------------------


def aimed(target: Transition) -> dict[str, bool]:
    """Oracle answers under which ``target`` is the first transition whose oracle guards pass."""
    return aim(dict.fromkeys(ORACLE_GUARDS, False), target.sources[0], target)


def transition(source: str, dest: str) -> Transition:
    return next(t for t in POLICY.outgoing(source) if t.dest == dest)


@pytest.fixture
def worlds(tmp_path: Path, oracle_guards: None) -> Iterator[tuple[World, World]]:
    pair = (World(tmp_path / "reference", seed=0), World(tmp_path / "crashy", seed=0))
    yield pair
    for w in pair:
        w.close()


def walk(pair: tuple[World, World], path: list[str], plan: list[tuple[str, int]] | None = None) -> None:
    """Step both worlds along ``path`` (state names), interrupting the second world's steps as ``plan`` says."""
    ref, other = pair
    for dest in path:
        t = transition(ref.state(), dest)
        Oracle.table = aimed(t)
        expected = model_choice(ref.state(), ref.issue(), ref.rework())
        assert expected is t, f"the oracle cannot aim at {t.trigger} → {dest}"
        checked_step(ref, t)
        if plan is None:
            checked_step(other, t)
        else:
            interrupted_step(other, t, [(m, n) for m, n in plan for _ in range(len(t.actions))])
        assert_same_world(ref, other, f"{t.trigger} → {dest}: the interrupted world differs")


def test_a_crash_after_every_journaled_action_changes_nothing(worlds: tuple[World, World]) -> None:
    """Along the path to review, with a rework: the second world crashes after each action is journaled done."""
    walk(worlds, ["claimed", "implementing", "gating", "rework", "implementing", "gating", "review"], [("journal", 1)])
    assert worlds[1].state() == "review" and worlds[1].tracker.pulls(ISSUE)


def test_rework_stops_at_the_budget(worlds: tuple[World, World]) -> None:
    ref, _ = worlds
    walk(worlds, ["claimed", "implementing", "gating"])
    for _ in range(LIMIT):
        walk(worlds, ["rework", "implementing", "gating"])
    assert ref.rework() == LIMIT
    Oracle.table = aimed(transition("gating", "rework"))  # the agent could fix it, but the budget is spent
    out, _ = checked_step(ref, model_choice("gating", ref.issue(), ref.rework()))
    assert out.dest == "blocked" and ref.rework() == LIMIT
    assert not next(e for e in out.evaluations if e.transition.dest == "rework").ok


def test_the_report_summary_survives_a_crash_right_after_posting(worlds: tuple[World, World]) -> None:
    """Regression: post_report wrote summary.md after posting the comment, so a crash in between lost it for good
    (the retry finds the comment and returns early)."""
    ref, other = worlds
    walk(worlds, ["claimed"])
    for w in worlds:
        w.human(("remove", "auto"))  # abandon: remove running, add blocked, post the report
    block = transition("claimed", "blocked")
    Oracle.table = aimed(block)
    checked_step(ref, block)
    interrupted_step(other, block, [("port", 3)])  # the third effect is the report comment
    assert [e[2] for e in other.effects.log if e[1] is not None][-1] == "tracker.post_comment"
    summary = next((other.root / ".orch" / "runs").glob("*/summary.md"))
    assert summary.read_text() == other.issue().comments[-1].body
    assert_same_world(ref, other, "the interrupted world differs")
