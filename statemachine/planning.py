"""Parent planning, the pure part: validate a plan report, order its children into waves, track the tree's state.

No I/O here: the parent actions (actions/parent.py) feed these functions what they observed, and the parent
guards judge the facts those actions recorded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from statemachine.globs import BUILTIN_BLOCKED_PATHS
from statemachine.model import Snapshot, Verdict

CHILD_MARKER = re.compile(r"<!-- orch:child parent=(\d+) key=([a-z0-9][a-z0-9-]{0,39}) -->")

# what a child of the tree can be; only "merged" counts as done
PENDING, RUNNING, PASSED, MERGED = "pending", "running", "passed", "merged"
BLOCKED, CONFLICT, CLOSED, SKIPPED = "blocked", "conflict", "closed", "skipped"
FAILED_STATUSES = frozenset({BLOCKED, CONFLICT, CLOSED, SKIPPED})


def child_marker(parent: int, key: str) -> str:
    return f"<!-- orch:child parent={parent} key={key} -->"


def parse_child_marker(body: str) -> tuple[int, str] | None:
    """The (parent number, child key) a child issue is bound to, only from orch's own hidden marker."""
    m = CHILD_MARKER.search(body or "")
    return (int(m.group(1)), m.group(2)) if m else None


def issue_digest(title: str, body: str) -> str:
    """What a plan was made from: a parent edited after planning no longer matches its plan."""
    return hashlib.sha256(f"{title}\n\0{body}".encode()).hexdigest()[:16]


# validation ---------------------------------------------------------------------------------


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """One dependency cycle as a path (a, b, a), or None."""
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(k: str) -> list[str] | None:
        color[k] = 1
        stack.append(k)
        for d in deps.get(k, []):
            if color.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if color.get(d) is None and d in deps:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[k] = 2
        return None

    for k in deps:
        if color.get(k) is None:
            found = visit(k)
            if found:
                return found
    return None


def layers(children: list[dict[str, Any]]) -> dict[str, int]:
    """Each child's wave: 0 without dependencies, else one more than its deepest dependency (the plan is acyclic)."""
    deps = {c["key"]: list(c.get("depends_on", [])) for c in children}
    out: dict[str, int] = {}

    def depth(k: str) -> int:
        if k not in out:
            out[k] = 0 if not deps[k] else 1 + max(depth(d) for d in deps[k])
        return out[k]

    for k in deps:
        depth(k)
    return out


def validate_plan(plan: dict[str, Any], max_children: int, blocked_paths: tuple[str, ...]) -> list[str]:
    """Every reason the (schema-valid) plan cannot run, in plain words; empty when it can."""
    problems: list[str] = []
    children = plan.get("children", [])
    keys = [c["key"] for c in children]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        problems.append("child keys must be unique; repeated: " + ", ".join(dupes))
    if len(children) > max_children:
        problems.append(f"the plan has {len(children)} children, more than plan.max_children={max_children}")
    known = set(keys)
    for c in children:
        unknown = [d for d in c.get("depends_on", []) if d not in known]
        if unknown:
            problems.append(f"child {c['key']!r} depends on unknown key(s): {', '.join(unknown)}")
        if c["key"] in c.get("depends_on", []):
            problems.append(f"child {c['key']!r} depends on itself")
        if not c.get("ownership"):
            problems.append(f"child {c['key']!r} declares no ownership")
        for glob in c.get("ownership", []):
            hit = next((b for b in tuple(BUILTIN_BLOCKED_PATHS) + blocked_paths if _reaches(glob, b)), None)
            if hit:
                problems.append(f"child {c['key']!r} owns {glob!r}, which reaches the blocked path {hit!r}")
    if not dupes:
        cycle = find_cycle(
            {c["key"]: [d for d in c.get("depends_on", []) if d in known and d != c["key"]] for c in children}
        )
        if cycle:
            problems.append("the dependencies form a cycle: " + " → ".join(cycle))
    return problems


def _reaches(owned: str, blocked: str) -> bool:
    """Whether an ownership glob can name a blocked path: folder globs by overlap, basename globs (*.pem) by match."""
    from statemachine.globs import matches
    from statemachine.scheduling import overlaps

    if "/" in blocked.rstrip("/"):
        return overlaps(owned.removeprefix("./"), blocked)
    return matches(owned.removeprefix("./").rstrip("/"), blocked)


# the tree ----------------------------------------------------------------------------------


def ordered(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The children in wave order, then in the plan's order (so dependencies always come first)."""
    depth = layers(plan["children"])
    index = {c["key"]: i for i, c in enumerate(plan["children"])}
    return sorted(plan["children"], key=lambda c: (depth[c["key"]], index[c["key"]]))


def propagate(plan: Mapping[str, Any], tree: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mark every pending child whose dependency failed as skipped (transitively); returns a new tree."""
    out = {k: dict(v) for k, v in tree.items()}
    for c in ordered(plan):
        node = out[c["key"]]
        if node["status"] != PENDING:
            continue
        bad = [d for d in c.get("depends_on", []) if out[d]["status"] in FAILED_STATUSES]
        if bad:
            node["status"] = SKIPPED
            node["reason"] = f"depends on {bad[0]!r}, which is {out[bad[0]]['status']}"
    return out


def next_batch(plan: Mapping[str, Any], tree: Mapping[str, Mapping[str, Any]], concurrency: int) -> list[str]:
    """The children to run now: pending ones of the lowest ready wave whose dependencies are all merged,
    at most ``concurrency``, and no two whose ownership overlaps."""
    from statemachine.scheduling import compatible

    depth = layers(plan["children"])
    ready = [
        c
        for c in ordered(plan)
        if tree[c["key"]]["status"] == PENDING and all(tree[d]["status"] == MERGED for d in c.get("depends_on", []))
    ]
    if not ready:
        return []
    wave = min(depth[c["key"]] for c in ready)
    batch: list[dict[str, Any]] = []
    for c in ready:
        if depth[c["key"]] != wave or len(batch) >= concurrency:
            continue
        if all(compatible(tuple(c["ownership"]), tuple(b["ownership"])) for b in batch):
            batch.append(c)
    return [c["key"] for c in batch]


def summary(tree: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in tree.values():
        counts[node["status"]] = counts.get(node["status"], 0) + 1
    return counts


def checklist(plan: dict[str, Any], tree: dict[str, dict[str, Any]], pull: str | None = None) -> list[str]:
    """The tree as a Markdown checklist: merged children are ticked, the others say where they stand."""
    depth = layers(plan["children"])
    lines = []
    for c in ordered(plan):
        node = tree.get(c["key"], {"status": PENDING})
        ref = f"#{node['issue']}" if node.get("issue") else c["key"]
        deps = ", ".join(f"#{tree[d]['issue']}" if tree.get(d, {}).get("issue") else d for d in c.get("depends_on", []))
        tick = "x" if node["status"] == MERGED else " "
        state = node["status"] + (f": {node['reason']}" if node.get("reason") and node["status"] != MERGED else "")
        lines.append(
            f"- [{tick}] {ref} `{c['key']}` {c['title']} (wave {depth[c['key']] + 1}"
            + (f", after {deps}" if deps else "")
            + f"; {state})"
        )
    if pull:
        lines.append(f"\nIntegrated in {pull}.")
    return lines


# guards over the parent's and the child's facts --------------------------------------------


def plan_valid(snap: Snapshot) -> Verdict:
    """The planning run wrote a plan report that passed every check (schema, keys, dependencies, ownership, limits)."""
    error, plan = snap.run.plan_error, snap.run.plan
    if error or plan is None:
        return Verdict.failed(error or "no plan report", *snap.run.plan_problems[:10])
    return Verdict.passed(
        f"the plan has {len(plan['children'])} child(ren) in {1 + max(layers(plan['children']).values())} wave(s)"
    )


def planning_changed_nothing(snap: Snapshot) -> Verdict:
    """The planning run left the repository exactly as it found it."""
    changed = snap.run.planning_changes
    if changed is None:
        return Verdict.failed("the planning run's worktree was not inspected")
    if changed:
        return Verdict.failed(f"the planning run changed {len(changed)} file(s); planning must not edit", *changed[:10])
    return Verdict.passed("the planning run changed no file")


def parent_unchanged(snap: Snapshot) -> Verdict:
    """The parent's title and body are what the plan was made from."""
    planned = snap.run.plan_digest
    if planned is None:
        return Verdict.failed("no plan was made in this run")
    if issue_digest(snap.issue.title, snap.issue.body) != planned:
        return Verdict.failed(
            f"issue #{snap.issue.number} was edited after it was planned; the plan no longer matches it",
            "requeue the parent to plan it again",
        )
    return Verdict.passed("the parent is unchanged since planning")


def children_runnable(snap: Snapshot) -> Verdict:
    """Some child waits whose dependencies are all merged."""
    plan, tree = snap.run.plan, snap.run.plan_tree
    if not plan or not tree:
        return Verdict.failed("no child issues yet")
    batch = next_batch(plan, propagate(plan, tree), 1)
    running = [k for k, v in tree.items() if v["status"] in (RUNNING, PASSED)]
    if batch or running:
        return Verdict.passed("ready: " + ", ".join(running + batch))
    return Verdict.failed(
        "no child can run",
        *[
            f"{k}: {v['status']}" + (f" ({v['reason']})" if v.get("reason") else "")
            for k, v in tree.items()
            if v["status"] != MERGED
        ],
    )


def children_merged(snap: Snapshot) -> Verdict:
    """Every child passed its lifecycle and is merged into the integration branch."""
    tree = snap.run.plan_tree
    if not tree:
        return Verdict.failed("no child issues yet")
    left = {k: v for k, v in tree.items() if v["status"] != MERGED}
    if left:
        return Verdict.failed(
            f"{len(left)} of {len(tree)} child(ren) not merged",
            *[
                f"{k} (#{v.get('issue')}): {v['status']}" + (f", {v['reason']}" if v.get("reason") else "")
                for k, v in left.items()
            ],
        )
    return Verdict.passed(f"all {len(tree)} child(ren) merged into {snap.run.integration_branch}")


def standalone_refusal(child_label: str, body: str) -> str:
    """Why a child issue does not run on its own: the guards, `orch status` and the daemon all say it so."""
    bound = parse_child_marker(body)
    whose = f"child {bound[1]!r} of #{bound[0]}" if bound else "this child issue"
    return f"{child_label} never authorizes standalone work: {whose} runs only when its parent's run dispatches it"


def not_a_child(snap: Snapshot) -> Verdict:
    """The issue is not a child of a parent run (agent:child never authorizes standalone work)."""
    name = snap.label("child")
    if name in snap.issue.labels or parse_child_marker(snap.issue.body):
        return Verdict.failed(standalone_refusal(name, snap.issue.body))
    return Verdict.passed("the issue is not a child of a parent run")


def dispatched_by_parent(snap: Snapshot) -> Verdict:
    """The issue is a child whose parent's current run dispatched it (its only authorization)."""
    parent = snap.parent
    if parent is None:
        return Verdict.failed(
            f"the issue is not a child of a parent run (it needs {snap.label('child')} and orch's marker)"
        )
    if parent.get("state") != "delegating" or not parent.get("dispatched"):
        return Verdict.failed(
            standalone_refusal(snap.label("child"), snap.issue.body) + f" (the parent is {parent.get('state')})"
        )
    return Verdict.passed(
        f"dispatched by parent #{parent['number']} (run {parent['run_id']}, wave {parent.get('wave')})"
    )


def redispatched_by_parent(snap: Snapshot) -> Verdict:
    """A new run of the parent dispatched this child again after an earlier run of the parent had finished with it."""
    verdict = dispatched_by_parent(snap)
    if not verdict.ok:
        return verdict
    assert snap.parent is not None
    if snap.parent.get("child_parent_run") == snap.parent["run_id"]:
        return Verdict.failed("this child already ran for the parent's current run")
    return Verdict.passed(f"parent run {snap.parent['run_id']} dispatched it again")
