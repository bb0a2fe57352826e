"""`orch lint [FILES...]`: check policies (schema, registry names and params, reachability) and prompt templates."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from statemachine import policy as policy_mod
from statemachine import resources
from statemachine.errors import EXIT_OK, EXIT_POLICY, PolicyError, Problem
from statemachine.output import Output


def _targets(args: argparse.Namespace) -> list[tuple[Path, str]]:
    if args.files:
        return [(f, str(f)) for f in args.files]
    if args.policy is not None:
        return [(args.policy, str(args.policy))]
    from statemachine.commands.repo import maybe_repo

    root = maybe_repo(args.repo)
    if root is not None:
        path = root / policy_mod.DEFAULT_POLICY_PATH
        if path.exists():
            return [(path, str(path.relative_to(root)))]
    return [(resources.bundled_policy(n), f"<bundled>/policies/{n}.yaml") for n in resources.bundled_policy_names()]


def _template_problems(policy_file: Path) -> list[Problem]:
    from statemachine.errors import TemplateError
    from statemachine.prompting import PROMPTS, check_template

    folder = policy_file.parent / "prompts"
    out = []
    for name in PROMPTS:
        path = folder / f"{name}.md"
        if path.is_file():
            try:
                check_template(path.read_text(errors="replace"), str(path))
            except TemplateError as exc:
                out.append(Problem(str(path), 1, 1, (), exc.message.split(": ", 1)[-1], exc.hint))
    return out


def list_registry(out: Output) -> int:
    from statemachine import registry

    data: dict[str, Any] = {}
    lines = []
    for kind, table in (("guards", registry.GUARDS), ("actions", registry.ACTIONS)):
        data[kind] = {name: {"summary": e.summary, "params": e.params} for name, e in sorted(table.items())}
        lines.append(f"{kind}:")
        for name, e in sorted(table.items()):
            props = e.params.get("properties", {})
            req = set(e.params.get("required", []))
            sig = ", ".join(f"{k}{'' if k in req else '?'}" for k in props)
            lines.append(f"  {name}({sig}): {e.summary}")
    out.emit("registry", data, "\n".join(lines))
    return EXIT_OK


def main(args: argparse.Namespace, out: Output) -> int:
    if args.list:
        return list_registry(out)
    results = []
    problems: list[Problem] = []
    for path, display in _targets(args):
        try:
            data = policy_mod.check_file(path, display)
            extra = _template_problems(path) if path.name != "default.yaml" or "<bundled>" not in display else []
            problems += extra
            results.append(
                {
                    "file": display,
                    "ok": not extra,
                    "transitions": len(data["lifecycle"]["transitions"]),
                    "problems": [p.as_json() for p in extra],
                }
            )
        except PolicyError as exc:
            problems += exc.problems
            results.append({"file": display, "ok": False, "problems": [p.as_json() for p in exc.problems]})
    lines = []
    for r in results:
        if r["ok"]:
            lines.append(f"ok: {r['file']} ({r['transitions']} transitions)")
    lines += [p.render() for p in problems]
    if problems:
        lines.append(f"{len(problems)} problem(s) found; fix them and run `orch lint` again")
    out.emit("lint", {"ok": not problems, "files": results}, "\n".join(lines))
    return EXIT_POLICY if problems else EXIT_OK
