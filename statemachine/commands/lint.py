"""`orch lint [FILES...]`: check policies (the file as written and the merged policy: schema, registry names and
params, reachability) and prompt templates (a policy's prompt overrides, or prompt files given by name)."""

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


def _nearest(name: str) -> str | None:
    """The prompt orch renders whose name is close to ``name`` (a typo), if any."""
    import difflib

    from statemachine.prompting import PROMPTS

    found = difflib.get_close_matches(name, PROMPTS, n=1, cutoff=0.6)
    return found[0] if found else None


def _what(path: Path) -> str:
    """How lint takes a Markdown file in a prompts folder, for its `ok:` line."""
    from statemachine.prompting import GUIDES, PROMPTS

    name = path.name.removesuffix(".md")
    if name in PROMPTS:
        return "prompt template"
    return "a guide, not a template" if name in GUIDES else "not a prompt orch renders; not checked"


def _prompt_problems(path: Path, display: str) -> list[Problem]:
    """The problems of one prompt file, each at its line:column: one orch renders must render (a known variable in
    every placeholder, no lone $, UTF-8, under the size limit). A guide (setup-skill.md) and other Markdown files are
    not templates, but a name close to a prompt's is a typo orch would silently ignore."""
    from statemachine.prompting import GUIDES, PROMPTS, load_template, template_problems

    name = path.name.removesuffix(".md")
    if not path.is_symlink() and not path.exists():
        return [Problem(display, 1, 1, (), "file not found", "name an existing prompt file")]
    if name not in PROMPTS:
        near = None if name in GUIDES else _nearest(name)
        if near is None:
            return []
        return [
            Problem(
                display,
                1,
                1,
                (),
                f"orch renders no prompt named {name!r}: this file is never used",
                f"name it {near}.md",
            )
        ]
    text, problem = load_template(path, display)
    return [problem] if problem is not None else template_problems(text, display)


def _overrides(policy_file: Path, display: str) -> list[tuple[Path, str]]:
    """The prompt overrides next to a policy (for .orch/policy.yaml, .orch/prompts/): each template orch renders that
    is there (a broken link included), and any other Markdown file whose name is close to one."""
    from statemachine.prompting import PROMPTS

    folder = policy_file.parent / "prompts"
    shown = Path(display).parent / "prompts"
    found = [(folder / f"{n}.md", str(shown / f"{n}.md")) for n in PROMPTS]
    found = [(p, d) for p, d in found if p.is_symlink() or p.exists()]
    if folder.is_dir():
        for path in sorted(folder.glob("*.md")):
            stem = path.name.removesuffix(".md")
            if stem not in PROMPTS and _nearest(stem) is not None:
                found.append((path, str(shown / path.name)))
    return found


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
    results: list[dict[str, Any]] = []
    problems: list[Problem] = []
    checked: set[Path] = set()  # prompt files already checked: a prompt passed with its policy is reported once

    def prompts(pairs: list[tuple[Path, str]]) -> list[Problem]:
        found: list[Problem] = []
        for prompt, shown in pairs:
            key = prompt.absolute()
            if key not in checked:
                checked.add(key)
                found += _prompt_problems(prompt, shown)
        return found

    targets = _targets(args)
    for path, display in [(p, d) for p, d in targets if p.suffix == ".md"]:
        extra = prompts([(path, display)])
        problems += extra
        results.append(
            {"file": display, "ok": not extra, "prompt": _what(path), "problems": [p.as_json() for p in extra]}
        )
    for path, display in [(p, d) for p, d in targets if p.suffix != ".md"]:
        bundled = "<bundled>" in display
        try:
            data = policy_mod.check_file(path, display)
            extra = [] if bundled else prompts(_overrides(path, display))
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
            extra = [] if bundled else prompts(_overrides(path, display))
            problems += exc.problems + extra
            found = exc.problems + extra
            results.append({"file": display, "ok": False, "problems": [p.as_json() for p in found]})
    lines = []
    for r in results:
        if r["ok"]:
            what = r.get("prompt") or f"{r['transitions']} transitions"
            lines.append(f"ok: {r['file']} ({what})")
    lines += [p.render() for p in problems]
    if problems:
        lines.append(f"{len(problems)} problem(s) found; fix them and run `orch lint` again")
    out.emit("lint", {"ok": not problems, "files": results}, "\n".join(lines))
    return EXIT_POLICY if problems else EXIT_OK
