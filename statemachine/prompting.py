"""Renders prompt templates with strict variables from the issue, the repository's rules and past findings."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

from statemachine import resources
from statemachine.errors import TemplateError
from statemachine.model import Issue

VARIABLES = (
    "issue_number",
    "issue_title",
    "issue_body",
    "issue_labels",
    "acceptance_criteria",
    "comments",
    "rules",
    "agents_md",
    "memory",
    "findings",
    "report_path",
    "report_schema",
    "worktree",
    "branch",
    "base_sha",
    "attempt",
)
PROMPTS = ("implementation", "rework", "review", "proof", "planning")

_AC_HEADING = re.compile(r"^#{1,6}\s*acceptance(\s+criteria)?\s*:?\s*$", re.I | re.M)
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?(.+?)\s*$")


def acceptance_criteria(body: str) -> list[dict[str, str]]:
    """Parse the list under an 'Acceptance criteria' heading into stable ids ac-1, ac-2, ..."""
    match = _AC_HEADING.search(body or "")
    if not match:
        return []
    out: list[dict[str, str]] = []
    for line in body[match.end() :].splitlines():
        if line.lstrip().startswith("#"):
            break
        item = _ITEM.match(line)
        if item:
            out.append({"id": f"ac-{len(out) + 1}", "text": item.group(1)})
    return out


def template_path(name: str, repo: Path) -> Path:
    override = repo / ".orch" / "prompts" / f"{name}.md"
    return override if override.is_file() else resources.prompt_template(name)


def check_template(text: str, file: str) -> None:
    tpl = string.Template(text)
    if not tpl.is_valid():
        raise TemplateError(f"{file}: invalid placeholder (a lone $)", "write $$ for a literal dollar sign")
    unknown = sorted(set(tpl.get_identifiers()) - set(VARIABLES))
    if unknown:
        raise TemplateError(
            f"{file}: unknown template variable(s): {', '.join('$' + u for u in unknown)}",
            "variables: " + ", ".join("$" + v for v in VARIABLES),
        )


def render(name: str, repo: Path, values: dict[str, Any]) -> str:
    path = template_path(name, repo)
    text = path.read_text()
    check_template(text, str(path))
    missing = [v for v in VARIABLES if v not in values]
    if missing:
        raise TemplateError(
            f"prompt {name}: no value for {', '.join(missing)}", "this is a bug in orch; please report it"
        )
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def _read_optional(path: Path, limit: int = 20000) -> str:
    try:
        return path.read_text(errors="replace")[:limit] if path.is_file() else ""
    except OSError:
        return ""


def issue_values(
    issue: Issue, repo: Path, rules: str, findings: list[str], runner_names: tuple[str, ...] = ("orch",)
) -> dict[str, Any]:
    criteria = acceptance_criteria(issue.body)
    # only maintainers' words reach the agent: a comment from anyone else could carry instructions
    comments = [c for c in issue.comments if c.trusted and c.author not in runner_names and "<!-- orch:" not in c.body]
    memory_dir = repo / "docs" / "agents" / "memory"
    memory = ""
    if memory_dir.is_dir():
        memory = "\n\n".join(_read_optional(p, 8000) for p in sorted(memory_dir.glob("*.md")))
    return {
        "issue_number": issue.number,
        "issue_title": issue.title,
        "issue_body": issue.body or "(no description)",
        "issue_labels": ", ".join(issue.labels) or "(none)",
        "acceptance_criteria": "\n".join(f"- [{c['id']}] {c['text']}" for c in criteria) or "(none listed)",
        "comments": "\n\n".join(f"{c.author} wrote:\n{c.body}" for c in comments) or "(none)",
        "rules": rules.strip() or "(none)",
        "agents_md": _read_optional(repo / "AGENTS.md").strip() or "(no AGENTS.md)",
        "memory": memory.strip() or "(none)",
        "findings": "\n".join(f"- {f}" for f in findings) or "(none)",
        "report_schema": json.dumps(resources.schema("completion-report"), indent=2),
    }
