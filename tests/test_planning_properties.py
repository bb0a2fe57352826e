"""Properties of the pure planning core (statemachine/planning.py) over random plans and random child outcomes.

A random plan is a random graph of children (acyclic or not), with random ownership. Checked:
- validate_plan finds a cycle exactly when there is one (against an independent reachability check);
- layers put every child after all of its dependencies;
- driving the tree with next_batch and random outcomes (as run_wave does) always ends, never runs a child
  before all its dependencies merged, never runs two children with overlapping ownership or more than the
  concurrency at once, runs only children of one wave per batch, and leaves each child merged, failed, or
  skipped because a dependency failed.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine import planning
from statemachine.scheduling import compatible

AREAS = ["pkg/a/**", "pkg/b/**", "pkg/a/x.py", "lib/**", "docs/**", "pkg/**", "tests/test_a.py"]


@st.composite
def plans(draw: Any, acyclic: bool = True) -> dict[str, Any]:
    n = draw(st.integers(1, 9))
    keys = [f"c{i}" for i in range(n)]
    children = []
    for i, key in enumerate(keys):
        pool = keys[:i] if acyclic else keys
        deps = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True)) if pool else []
        if not acyclic:
            deps = [d for d in deps if d != key]
        owns = draw(st.lists(st.sampled_from(AREAS), min_size=1, max_size=2, unique=True))
        children.append(
            {
                "key": key,
                "title": key,
                "body": "",
                "acceptance_criteria": ["x"],
                "ownership": owns,
                "depends_on": deps,
                "size": "s",
            }
        )
    order = draw(st.permutations(children))  # the plan's order need not be the dependency order
    return {"summary": "random", "children": list(order)}


def reaches_itself(plan: dict[str, Any]) -> bool:
    deps = {c["key"]: set(c["depends_on"]) for c in plan["children"]}
    for start in deps:
        seen, frontier = set(), list(deps[start])
        while frontier:
            k = frontier.pop()
            if k == start:
                return True
            if k not in seen:
                seen.add(k)
                frontier += deps[k]
    return False


@settings(max_examples=200, deadline=None)
@given(plans(acyclic=False))
def test_a_cycle_is_found_exactly_when_there_is_one(plan: dict[str, Any]) -> None:
    problems = planning.validate_plan(plan, 50, ())
    has_cycle = any(p.startswith("the dependencies form a cycle") for p in problems)
    assert has_cycle == reaches_itself(plan)
    if has_cycle:
        path = next(p for p in problems if p.startswith("the dependencies form")).split(": ", 1)[1].split(" → ")
        assert path[0] == path[-1] and len(path) >= 3
        deps = {c["key"]: c["depends_on"] for c in plan["children"]}
        assert all(b in deps[a] for a, b in zip(path, path[1:]))  # each step of the reported cycle is a real edge


@settings(max_examples=200, deadline=None)
@given(plans(), st.integers(1, 4), st.data())
def test_waves_respect_dependencies_ownership_and_concurrency(
    plan: dict[str, Any], concurrency: int, data: Any
) -> None:
    assert planning.validate_plan(plan, 50, ()) == []
    depth = planning.layers(plan["children"])
    by_key = {c["key"]: c for c in plan["children"]}
    for c in plan["children"]:
        assert all(depth[c["key"]] > depth[d] for d in c["depends_on"])
    tree = {c["key"]: {"issue": i + 2, "status": planning.PENDING} for i, c in enumerate(plan["children"])}
    for _ in range(len(tree) + 1):
        tree = planning.propagate(plan, tree)
        batch = planning.next_batch(plan, tree, concurrency)
        if not batch:
            break
        assert len(batch) <= concurrency and len({depth[k] for k in batch}) == 1
        for i, a in enumerate(batch):
            assert tree[a]["status"] == planning.PENDING
            assert all(tree[d]["status"] == planning.MERGED for d in by_key[a]["depends_on"])
            for b in batch[i + 1 :]:
                assert compatible(tuple(by_key[a]["ownership"]), tuple(by_key[b]["ownership"]))
        for k in batch:  # what the child's lifecycle and the merge came to
            tree[k]["status"] = data.draw(
                st.sampled_from([planning.MERGED] * 3 + [planning.BLOCKED, planning.CONFLICT])
            )
    else:
        raise AssertionError("the tree did not come to rest")
    for key, node in tree.items():
        deps = by_key[key]["depends_on"]
        assert node["status"] in (planning.MERGED, planning.BLOCKED, planning.CONFLICT, planning.SKIPPED), node
        if node["status"] == planning.SKIPPED:
            assert any(tree[d]["status"] in planning.FAILED_STATUSES for d in deps)
        else:  # it ran: every dependency had merged
            assert all(tree[d]["status"] == planning.MERGED for d in deps)
    # the checklist ticks exactly the merged children
    ticked = [line for line in planning.checklist(plan, tree) if line.startswith("- [x]")]
    assert len(ticked) == sum(n["status"] == planning.MERGED for n in tree.values())
