"""The line that leads `orch explain` and the blocked report: the issue's state, the one reason that matters, and the
action to take. And which transitions apply to this kind of issue, so that the details leave out the ways of the
other kinds.

An issue's kind comes from the label that authorizes it: a plain issue carries ``auto``, a parent ``plan_auto``, a
child ``child``. A transition applies to the kinds its guards can pass for, read from the guards' rows in
statemachine/catalog.py: a guard that needs the parent binding passes only for a child; a guard whose ``sense`` is
"carries" passes only for the kinds of the labels it names, one whose sense is "lacks" never for them.

Pure: it reads a policy and evaluations in their JSON form (engine.Evaluation.as_json, or a step's recorded verdicts),
never a port or the store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statemachine.catalog import guard_rows
from statemachine.model import REST_STATES

if TYPE_CHECKING:
    from statemachine.policy import GuardSpec, Policy, Transition

KIND_OF_ROLE: Mapping[str, str] = {"auto": "plain", "plan_auto": "parent", "child": "child"}
KINDS: frozenset[str] = frozenset(KIND_OF_ROLE.values())

Evaluation = Mapping[str, Any]  # {"index", "trigger", "dest", "human", "guards": [{"guard", "verdict"}], ...}


def issue_kinds(policy: Policy, labels: Iterable[str]) -> frozenset[str]:
    """The kinds the issue's labels make it; every kind when it carries none of their labels (it cannot be told)."""
    carried = set(labels)
    kinds = frozenset(kind for role, kind in KIND_OF_ROLE.items() if policy.label(role) in carried)
    return kinds or KINDS


def _sense(g: GuardSpec) -> str:
    row = guard_rows().get(g.name)
    sense = row.sense if row is not None else ""
    if g.negate and sense:
        return "lacks" if sense == "carries" else "carries"
    return sense


def _roles(g: GuardSpec) -> tuple[str, ...]:
    row = guard_rows().get(g.name)
    if row is None or not row.sense:
        return ()
    if row.roles:
        return row.roles
    value = g.params.get("labels", g.params.get("label"))
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def guard_kinds(g: GuardSpec) -> frozenset[str]:
    """The kinds of issue this guard can pass for."""
    row = guard_rows().get(g.name)
    if row is None:
        return KINDS
    kinds = KINDS
    if "parent" in row.needs and not g.negate:  # reads the parent binding: fails for any issue but a child
        kinds = frozenset({"child"})
    roles, sense = _roles(g), _sense(g)
    named = frozenset(KIND_OF_ROLE[r] for r in roles if r in KIND_OF_ROLE)
    if sense == "carries" and roles and all(r in KIND_OF_ROLE for r in roles):
        kinds &= named
    elif sense == "lacks":
        kinds -= named
    return kinds


def transition_kinds(t: Transition) -> frozenset[str]:
    """The kinds of issue a transition can fire for: those every one of its guards can pass for."""
    kinds = KINDS
    for g in t.guards:
        kinds &= guard_kinds(g)
    return kinds


def transition_of(policy: Policy, ev: Evaluation) -> Transition | None:
    """The policy's transition an evaluation is about: the one at its index, else (the policy changed since the step
    was recorded) the one with its trigger, destination and guards; None when there is none."""
    guards = [g["guard"] for g in ev.get("guards", [])]

    def same(t: Transition) -> bool:
        return t.trigger == ev.get("trigger") and t.dest == ev.get("dest") and [g.label() for g in t.guards] == guards

    at = next((t for t in policy.transitions if t.index == ev.get("index")), None)
    return at if at is not None and same(at) else next((t for t in policy.transitions if same(t)), None)


def applies(policy: Policy, ev: Evaluation, kinds: frozenset[str]) -> bool:
    t = transition_of(policy, ev)
    return t is None or bool(transition_kinds(t) & kinds)


def _failing(ev: Evaluation) -> list[Mapping[str, Any]]:
    return [g for g in ev.get("guards", []) if not g["verdict"]["ok"]]


def _said(g: Mapping[str, Any]) -> str:
    verdict = g["verdict"]
    evidence = verdict.get("evidence") or []
    return str(verdict["reason"]) + (f" ({evidence[0]})" if evidence else "")


@dataclass(frozen=True)
class Lead:
    state: str
    reason: str
    action: str

    @property
    def summary(self) -> str:
        return f"{self.state}: {self.reason} — {self.action}"

    def as_json(self) -> dict[str, str]:
        return {"summary": self.summary, "reason": self.reason, "action": self.action}


@dataclass(frozen=True)
class Issue:
    """What the lead needs to know of the issue: its number, labels, and how a maintainer changes its labels."""

    number: int
    labels: tuple[str, ...]
    local: bool  # the local tracker: `orch issue label` changes labels (else the tracker's own page)
    run_id: str | None = None
    attempts: int = 1


def label_steps(
    policy: Policy, t: Transition, issue: Issue, failing: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """What a maintainer does so that ``t`` can fire: the labels to add and remove (from the guards that read labels,
    judged against ``issue.labels``); and the reasons of its other failing guards (``failing``: label -> reason)."""
    add: list[str] = []
    remove: list[str] = []
    rest: list[str] = []
    for g in t.guards:
        names = [policy.label(r) for r in _roles(g)]
        sense = _sense(g)
        if sense == "lacks":
            remove += [n for n in names if n in issue.labels and n not in remove]
        elif sense == "carries" and names and not any(n in issue.labels for n in names):
            wanted = names[0] if len(names) == 1 else "one of " + ", ".join(names)
            add += [wanted] if wanted not in add else []
        elif failing and g.label() in failing:
            rest.append(failing[g.label()])
    steps = [f"remove {', '.join(remove)}"] if remove else []
    steps += [f"add {a}" for a in add]
    simple = [a for a in add if not a.startswith("one of ")]
    if issue.local and (remove or simple):
        edit = " ".join([*(f"-{n}" for n in remove), *(f"+{n}" for n in simple)])
        steps[-1] += f" (`orch issue label {issue.number} {edit}`)"
    return steps, rest


def _ways_out(policy: Policy, ways: Sequence[Transition], issue: Issue, verdicts: Sequence[Evaluation]) -> str:
    failing = {ev.get("index"): {g["guard"]: str(g["verdict"]["reason"]) for g in _failing(ev)} for ev in verdicts}
    parts = []
    for t in ways:
        steps, waits = label_steps(policy, t, issue, failing.get(t.index))
        if waits:
            parts.append(f"`{t.trigger}` → {t.dest} waits: " + "; ".join([*waits, *steps]))
        else:
            parts.append(
                " and ".join(steps) + f" so that `{t.trigger}` takes it to {t.dest}"
                if steps
                else f"`{t.trigger}` takes it to {t.dest}"
            )
    return "; or ".join(parts) if parts else "no transition leaves this state"


def _cause(policy: Policy, arrived: Sequence[Evaluation], kinds: frozenset[str], attempts: int) -> str | None:
    """Why the step that brought the issue to rest did not take any of the transitions before the one it fired: the
    first failing guard of the first that applies, and the first of the last when another guard stopped it."""
    tried = []
    for ev in arrived:
        if not _failing(ev):
            break  # the transition that fired: those after it were never the reason
        if applies(policy, ev, kinds):
            tried.append(ev)
    if not tried:
        return None
    first = _failing(tried[0])[0]
    text = _said(first) + (f" after {attempts} attempts" if attempts > 1 else "")
    last = _failing(tried[-1])[0]
    if len(tried) > 1 and last["guard"] not in {g["guard"] for g in _failing(tried[0])}:
        text += f"; `{tried[-1]['trigger']}` did not fire: {last['verdict']['reason']}"
    return text


def lead(
    policy: Policy,
    state: str,
    issue: Issue,
    current: Sequence[Evaluation] | None,
    arrived: Sequence[Evaluation] | None = None,
) -> Lead:
    """The lead for an issue in ``state``. ``current``: the evaluations of the transitions leaving it (None: not
    judged, as in the report posted while the issue comes to rest; then only labels say what a maintainer does).
    ``arrived``: for a resting issue, the evaluations of the step that brought it there."""
    kinds = issue_kinds(policy, issue.labels)
    ready = next((ev for ev in current or () if not _failing(ev)), None)
    if ready is not None:
        way = (
            "`orch run --issue {n}` (or the daemon) takes it up"
            if ready.get("human")
            else "`orch run --issue {n}` carries it on"
        )
        return Lead(state, f"`{ready['trigger']}` → {ready['dest']} can fire", way.format(n=issue.number))
    outgoing = [t for t in policy.outgoing(state) if transition_kinds(t) & kinds]
    if state in REST_STATES:
        ways = [t for t in outgoing if t.human] or outgoing
        action = _ways_out(policy, ways, issue, current or ())
        cause = _cause(policy, arrived or (), kinds, issue.attempts)
        if cause is not None:
            where = f"; the evidence is in .orch/runs/{issue.run_id}/" if issue.run_id else ""
            return Lead(state, cause, f"fix the cause, then {action}{where}")
        fired = next((transition_of(policy, ev) for ev in arrived or () if not _failing(ev)), None)
        if fired is not None:
            said = fired.description.strip().rstrip(".")
            return Lead(state, f"`{fired.trigger}` brought it here" + (f": {said}" if said else ""), action)
        return Lead(state, f"it rests in {state}", action)
    judged = [ev for ev in current or () if applies(policy, ev, kinds) and _failing(ev)]
    if not judged:
        return Lead(state, "no transition leaves this state", "nothing to do: `orch graph` draws the lifecycle")
    first = judged[0]
    t = transition_of(policy, first)
    reason = f"`{first['trigger']}` waits: {_said(_failing(first)[0])}"
    steps = label_steps(policy, t, issue)[0] if t is not None else []
    advice = ADVICE.get(str(_failing(first)[0]["guard"]), "see the verdicts below")
    return Lead(state, reason, " and ".join(steps) if steps else advice)


# what a maintainer does when this guard alone holds the issue back
ADVICE: Mapping[str, str] = {
    "within_budget": "it waits for the next UTC day (a daily limit), or raise the limit in limits.budget",
}
