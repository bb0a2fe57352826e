"""`orch plan --issue N`: a parent's plan (from its latest run) and where each child of the tree stands."""

from __future__ import annotations

import argparse
from typing import Any

from statemachine import planning
from statemachine.errors import EXIT_OK, OrchError
from statemachine.output import Output
from statemachine.runtime import open_runtime


def tree_view(rt: Any, number: int) -> dict[str, Any]:
    """The parent's lifecycle state, its plan (or why it has none), and each child with its own lifecycle state."""
    state, run_id = rt.store.state_of(number)
    facts = rt.store.facts(run_id) if run_id else {}
    plan: dict[str, Any] | None = facts.get("plan")
    tree: dict[str, Any] = facts.get("plan_tree") or {}
    children = []
    for c in planning.ordered(plan) if plan is not None else []:
        assert plan is not None
        node = tree.get(c["key"], {})
        child_state = rt.store.state_of(node["issue"])[0] if node.get("issue") else None
        children.append(
            {
                "key": c["key"],
                "title": c["title"],
                "issue": node.get("issue"),
                "status": node.get("status", "pending"),
                "reason": node.get("reason"),
                "lifecycle_state": child_state,
                "depends_on": c.get("depends_on", []),
                "ownership": c["ownership"],
                "size": c["size"],
                "wave": planning.layers(plan["children"])[c["key"]] + 1,
                "merge_sha": node.get("merge_sha"),
            }
        )
    return {
        "issue": number,
        "state": state,
        "run_id": run_id,
        "summary": (plan or {}).get("summary"),
        "plan_error": facts.get("plan_error"),
        "problems": facts.get("plan_problems") or [],
        "integration_branch": facts.get("integration_branch"),
        "pull_request": facts.get("pull_request"),
        "children": children,
        "counts": planning.summary(tree) if tree else {},
    }


def main(args: argparse.Namespace, out: Output) -> int:
    rt = open_runtime(args.repo, args.policy)
    try:
        issue = rt.tracker.get_issue(args.issue, comments=False)
        view = tree_view(rt, args.issue)
        if view["run_id"] is None:
            raise OrchError(
                f"issue #{args.issue} has not been planned",
                f"label it {rt.policy.label('plan_auto')} and run `orch run --issue {args.issue}`",
            )
        lines = [f"#{issue.number} {issue.title}: {view['state']} (run {view['run_id']})"]
        if view["plan_error"]:
            lines.append(f"  no plan: {view['plan_error']}")
            lines += [f"    - {p}" for p in view["problems"][1:]]
        elif not view["children"]:
            lines.append("  not planned yet in this run")
        else:
            lines.append(f"  {view['summary'] or ''}".rstrip())
            lines.append(f"  integration branch: {view['integration_branch']}")
            for c in view["children"]:
                deps = f" after {', '.join(c['depends_on'])}" if c["depends_on"] else ""
                lines.append(
                    f"  wave {c['wave']}: #{c['issue']} {c['key']} [{c['status']}; lifecycle {c['lifecycle_state']}]{deps}  {c['title']}"
                    + (f"\n      {c['reason']}" if c["reason"] else "")
                )
            if view["pull_request"]:
                lines.append(f"  draft pull request #{view['pull_request']['number']} ({view['pull_request']['url']})")
        out.emit("plan", view, "\n".join(lines))
        return EXIT_OK
    finally:
        rt.close()
