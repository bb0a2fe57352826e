"""`orch graph [--format mermaid|dot]`: the lifecycle from the policy, guards on the edges."""

from __future__ import annotations

import argparse
from pathlib import Path

from statemachine.errors import EXIT_OK
from statemachine.model import INITIAL_STATE, REST_STATES, STATES
from statemachine.output import Output
from statemachine.policy import Policy, Transition


def _edge_label(t: Transition) -> str:
    guards = ", ".join(g.label() for g in t.guards)
    label = str(t.trigger) + (f" [{guards}]" if guards else "")
    return label + (" (human)" if t.human else "")


def mermaid(policy: Policy) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {INITIAL_STATE}"]
    for t in policy.transitions:
        for s in t.sources:
            lines.append(f"    {s} --> {t.dest}: {_edge_label(t)}")
    for s in sorted(REST_STATES):
        lines.append(f"    {s} --> [*]")
    return "\n".join(lines)


def dot(policy: Policy) -> str:
    lines = ["digraph lifecycle {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for s in STATES:
        shape = ", peripheries=2" if s in REST_STATES else ""
        lines.append(f'  "{s}" [label="{s}"{shape}];')
    for t in policy.transitions:
        for s in t.sources:
            style = ", style=dashed" if t.human else ""
            label = _edge_label(t).replace('"', '\\"')
            lines.append(f'  "{s}" -> "{t.dest}" [label="{label}"{style}];')
    lines.append("}")
    return "\n".join(lines)


def load_policy(args: argparse.Namespace) -> Policy:
    """``--policy FILE`` as given (no repository needed, as for `orch lint`); else the repository's policy, or the
    bundled default where there is none (or no repository around the current folder and no ``--repo``)."""
    from statemachine import policy as policy_mod
    from statemachine.commands.repo import maybe_repo

    if args.policy is not None:
        path = policy_mod.resolve_path(Path.cwd(), args.policy)
        return policy_mod.load(path, str(args.policy))
    root = maybe_repo(args.repo)
    if root is None or not (root / policy_mod.DEFAULT_POLICY_PATH).exists():
        from statemachine import resources

        return policy_mod.load(resources.bundled_policy("default"), "<bundled>/policies/default.yaml")
    return policy_mod.load(root / policy_mod.DEFAULT_POLICY_PATH, str(policy_mod.DEFAULT_POLICY_PATH))


def main(args: argparse.Namespace, out: Output) -> int:
    pol = load_policy(args)
    text = mermaid(pol) if args.format == "mermaid" else dot(pol)
    out.emit("graph", {"format": args.format, "graph": text}, text)
    return EXIT_OK
