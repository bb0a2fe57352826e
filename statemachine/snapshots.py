"""What guards see: one snapshot of an issue per step, fetched by what the guards of its state declare they need
(registry `needs`), with every fact the issue's run recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from statemachine import registry
from statemachine.model import Snapshot, TextHistory
from statemachine.policy import Policy
from statemachine.record import RunRecord
from statemachine.runtime import Runtime


def take_snapshot(rt: Runtime, number: int) -> Snapshot:
    state, run_id = rt.store.state_of(number)
    judged = labels_needing(rt.policy, state, "text")
    if not judged:
        return snapshot_of(rt, rt.tracker.get_issue(number, comments=False), state, run_id)
    # the claim's guards judge the issue's text by who labelled and edited it: read with the issue, in one request
    issue, histories = rt.tracker.issue_with_history(number, judged)
    return snapshot_of(rt, issue, state, run_id, histories=histories)


T = TypeVar("T")


def memoized(memo: dict[Any, Any] | None, key: Any, make: Callable[[], T]) -> T:
    """``make()``, kept in ``memo`` under ``key`` (made afresh each time without a memo)."""
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    value: T = memo[key]
    return value


def prefetch_facts(rt: Runtime, run_ids: list[str], memo: dict[Any, Any]) -> None:
    """Read the facts of the runs ``run_ids`` in one pass, for ``snapshot_of`` with ``memo``."""
    memo["facts"] = rt.store.facts_of_runs(run_ids)


def record_of(run_id: str | None, facts: dict[str, Any], memo: dict[Any, Any] | None) -> RunRecord:
    """``RunRecord.load(run_id, facts)``; with ``memo``, an issue without a run shares the record of every other
    such issue whose facts (its acceptance criteria alone) are the same."""
    if memo is None or run_id is not None:
        return RunRecord.load(run_id, facts)
    key = ("record", repr(sorted(facts.items())))
    return memoized(memo, key, lambda: RunRecord.load(None, facts))


def taken_at(memo: dict[Any, Any] | None = None) -> str:
    """The time a snapshot is taken, to the second (with ``memo``, formatted once per second)."""
    now = int(time.time())
    return memoized(memo, ("taken_at", now), lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))


def needs_of(policy: Policy, state: str) -> frozenset[str]:
    """What the guards and actions of the transitions leaving ``state`` declare they read beyond the issue and the
    run's facts (registry.NEEDS): exactly what a snapshot in that state fetches."""
    out: set[str] = set()
    for t in policy.outgoing(state):
        for g in t.guards:
            out |= registry.GUARDS[g.name].needs
        for a in t.actions:
            out |= registry.ACTIONS[a.name].needs
    return frozenset(out)


def labels_needing(policy: Policy, state: str, need: str) -> list[str]:
    """The label names that the guards leaving ``state`` which need ``need`` ("authority", "text") judge, in order."""
    return list(
        dict.fromkeys(
            policy.label(g.params["label"])
            for t in policy.outgoing(state)
            for g in t.guards
            if need in registry.GUARDS[g.name].needs and "label" in g.params
        )
    )


def snapshot_of(
    rt: Runtime,
    issue: Any,
    state: str,
    run_id: str | None,
    known_actors: dict[str, dict[int, str]] | None = None,
    also: frozenset[str] = frozenset(),
    histories: dict[str, TextHistory] | None = None,
    memo: dict[Any, Any] | None = None,
) -> Snapshot:
    """A snapshot of an issue already fetched (``orch status`` lists many at once, with who labelled what in bulk).
    It fetches what the transitions leaving ``state`` declare they need (needs_of), and the needs in ``also``.
    ``memo`` (one dict for the snapshots of many issues under one policy, as ``orch status`` takes them) keeps what
    depends on the policy and the state alone, the run facts read at once (``prefetch_facts``) and the record of a
    run-less issue, so that each is worked out once; the snapshots are the same as without it."""
    from statemachine.prompting import acceptance_criteria

    prefetched = (memo or {}).get("facts")
    facts = dict(prefetched[run_id]) if prefetched is not None and run_id in prefetched else rt.store.facts(run_id)
    facts.setdefault(
        "acceptance_criteria", acceptance_criteria((facts.get("authorized_text") or {}).get("body", issue.body))
    )
    wanted = memoized(memo, ("needs", state), lambda: needs_of(rt.policy, state)) | also
    authority: dict[str, dict[str, Any]] = {}
    bulk = known_actors is not None
    text = text_of(rt, issue, facts, state, authority, bulk, histories, memo) if "text" in wanted else None
    if "authority" in wanted:
        authority_of(rt, issue, state, authority, known_actors, memo)
    feedback = review_feedback_of(rt, facts) if "feedback" in wanted else ()
    preflight = memoized(memo, "preflight", lambda: preflight_of(rt)) if "preflight" in wanted else None
    claim = claim_of(rt, issue, memo) if "claim" in wanted else None
    parent = parent_of(rt, issue, facts, memo) if "parent" in wanted else None
    budget = budget_of(rt, issue.number, memo) if "budget" in wanted else None
    return Snapshot(
        issue=issue,
        state=state,
        run=record_of(run_id, facts, memo),
        labels=memoized(memo, "label_names", lambda: rt.policy.label_names),
        settings=memoized(memo, "settings", lambda: rt.policy.settings),
        taken_at=taken_at(memo),
        authority=authority,
        feedback=feedback,
        parent=parent,
        preflight=preflight,
        text=text,
        claim=claim,
        budget=budget,
    )


def budget_of(rt: Runtime, number: int, memo: dict[Any, Any] | None = None) -> dict[str, Any]:
    """For ``within_budget``: what the agent runs spent on the current UTC day (read once for the snapshots sharing
    ``memo``) and on this issue, from the usage ledger; nothing is read when limits.budget sets no limit."""
    from statemachine import ledger

    budget = rt.policy.config.budget.as_dict()
    if not any(v is not None for k, v in budget.items() if k.endswith(("_per_day", "_per_issue"))):
        return {}
    day = ledger.today()
    out: dict[str, Any] = {"date": day}
    out["day"] = memoized(memo, ("budget_day", day), lambda: ledger.spent(rt.store, None, day)["day"].as_json())
    out["issue"] = ledger.spent(rt.store, number)["issue"].as_json()
    return out


def authority_of(
    rt: Runtime,
    issue: Any,
    state: str,
    authority: dict[str, dict[str, Any]],
    known_actors: dict[str, dict[int, str]] | None = None,
    memo: dict[Any, Any] | None = None,
) -> None:
    """For ``label_authorized``: who applied each label the guards leaving ``state`` judge, with their permission, put
    in ``authority`` (a label already there, read on the way by text_of, is not read again)."""
    for name in memoized(memo, ("labels", state, "authority"), lambda: labels_needing(rt.policy, state, "authority")):
        if name not in authority and name in issue.labels:
            bulk = (known_actors or {}).get(name)
            actor: str | None
            if bulk is not None and issue.number in bulk:
                actor = bulk[issue.number]
                permission = permission_of(rt, actor, memo)
            else:
                actor, permission = rt.tracker.label_authority(issue.number, name)
            authority[name] = {"actor": actor, "permission": permission}


def permission_of(rt: Runtime, login: str, memo: dict[Any, Any] | None) -> str:
    """``rt.tracker.permission(login)``; with ``memo``, read once for all the snapshots sharing it."""
    if memo is None:
        return rt.tracker.permission(login)
    key = ("permission", login)
    if key not in memo:
        memo[key] = rt.tracker.permission(login)
    return str(memo[key])


def claim_of(rt: Runtime, issue: Any, memo: dict[Any, Any] | None = None) -> dict[str, Any] | None:
    """For ``claim_expired``: who holds the issue's claim and how fresh its lease is. Read only for an issue that
    carries the running label on a tracker other runners share (one comment list); None otherwise."""
    fleet, running = memoized(memo, "claim", lambda: (rt.tracker.capabilities.fleet, rt.policy.label("running")))
    if not fleet or running not in issue.labels:
        return None
    from statemachine import claims

    comments = rt.tracker.list_comments(issue.number)
    return claims.holding(comments, rt.tracker.identity(), rt.policy.config.tracker.claim_lease_seconds).as_json()


def text_of(
    rt: Runtime,
    issue: Any,
    facts: dict[str, Any],
    state: str,
    authority: dict[str, dict[str, Any]],
    bulk: bool = False,
    histories: dict[str, TextHistory] | None = None,
    memo: dict[Any, Any] | None = None,
) -> dict[str, dict[str, Any]] | None:
    """For ``text_as_authorized``: per label, whether the issue's text is the one stored at the claim and, when it is
    not (or before the claim), who applied the label and who edited the title and body after it, with permissions.
    The label's authority read on the way is put in ``authority``, so the claim reads the issue's events once.
    ``bulk`` (``orch status`` over many issues) reads no edit history: the verdict says it is judged at the claim,
    whose own snapshot always reads it."""
    labels = memoized(memo, ("labels", state, "text"), lambda: labels_needing(rt.policy, state, "text"))
    if not labels:
        return None
    authorized = facts.get("authorized_text") or {}
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(n for n in labels if n in issue.labels):
        if authorized and (authorized.get("title"), authorized.get("body")) == (issue.title, issue.body):
            out[name] = {"unchanged": True}
            continue
        if bulk:
            out[name] = {"deferred": True}
            continue
        history = (histories or {}).get(name) or rt.tracker.text_history(issue.number, name)
        if name not in authority:
            authority[name] = {
                "actor": history.labeled_by,
                "permission": rt.tracker.permission(history.labeled_by) if history.labeled_by else "none",
            }
        perms: dict[str, str] = {}  # one permission look-up per editor, however many edits
        for e in history.edits:
            if e.after_label and e.editor not in perms:
                perms[e.editor] = rt.tracker.permission(e.editor)
        out[name] = {
            "unchanged": False,
            "labeled_by": history.labeled_by,
            "labeled_at": history.labeled_at,
            "edits": [
                {
                    "part": e.part,
                    "editor": e.editor,
                    "at": e.at,
                    "after_label": e.after_label,
                    "permission": perms.get(e.editor) if e.after_label else None,
                }
                for e in history.edits
            ],
        }
    return out


def preflight_of(rt: Runtime) -> tuple[str, ...]:
    """The claim's tracker-free preconditions (statemachine/preflight.py); a runtime reuses them for 10 s (`orch status`
    over many issues checks once; a long-lived daemon sees a fix within seconds)."""
    from statemachine import preflight

    cached: tuple[float, tuple[str, ...]] | None = rt.__dict__.get("_preflight")
    if cached is None or time.monotonic() - cached[0] > 10.0:
        cached = (
            time.monotonic(),
            preflight.problems(rt.repo, rt.policy.config.tracker.base_branch, rt.git, rt.policy, rt.jail),
        )
        rt.__dict__["_preflight"] = cached
    return cached[1]


def parent_of(
    rt: Runtime, issue: Any, facts: dict[str, Any], memo: dict[Any, Any] | None = None
) -> dict[str, Any] | None:
    """For a child issue (orch's marker and the child label): its parent's run, and whether that run dispatched it now."""
    if memoized(memo, "child", lambda: rt.policy.label("child")) not in issue.labels:
        return None
    from statemachine.planning import RUNNING, parse_child_marker

    bound = parse_child_marker(issue.body)
    if bound is None or issue.author != rt.tracker.identity():
        return None  # only an issue the runner opened is a child: a marker in anyone else's issue binds nothing
    number, key = bound
    state, run_id = rt.store.state_of(number)
    parent_facts = rt.store.facts(run_id) if run_id else {}
    node = (parent_facts.get("plan_tree") or {}).get(key) or {}
    return {
        "number": number,
        "key": key,
        "state": state,
        "run_id": run_id,
        "dispatched": node.get("issue") == issue.number and node.get("status") == RUNNING,
        "base_sha": node.get("base_sha"),
        "wave": node.get("wave"),
        "integration_branch": parent_facts.get("integration_branch"),
        "child_parent_run": (facts.get("parent") or {}).get("run_id"),
    }


def review_feedback_of(rt: Runtime, facts: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The reviews and review comments on the run's pull request, each with its author's permission (read at most once)."""
    pr = facts.get("pull_request") or {}
    if not pr.get("number"):
        return ()
    number = int(pr["number"])
    permissions: dict[str, str] = {}

    def permission(login: str | None) -> str:
        if not login:
            return "none"  # a deleted account (ghost)
        if login not in permissions:
            permissions[login] = rt.tracker.permission(login)
        return permissions[login]

    since = str(facts.get("claimed_at") or "")  # a requeued run that took over an earlier run's pull request

    def this_run(at: str) -> bool:  # older feedback was for an earlier run: not even its author's permission is read
        return not (since and at and at < since)

    items: list[dict[str, Any]] = []
    for r in rt.tracker.list_reviews(number):
        if (r.state == "CHANGES_REQUESTED" or (r.state == "COMMENTED" and r.body.strip())) and this_run(r.submitted_at):
            items.append(
                {
                    "key": f"review-{r.id}",
                    "kind": "review",
                    "author": r.author,
                    "permission": permission(r.author),
                    "state": r.state,
                    "body": r.body,
                    "path": None,
                    "line": None,
                    "at": r.submitted_at,
                }
            )
    for c in rt.tracker.list_review_comments(number):
        if this_run(c.created_at):
            items.append(
                {
                    "key": f"comment-{c.id}",
                    "kind": "review comment",
                    "author": c.author,
                    "permission": permission(c.author),
                    "state": "COMMENTED",
                    "body": c.body,
                    "path": c.path,
                    "line": c.line,
                    "at": c.created_at,
                }
            )
    return tuple(items)
