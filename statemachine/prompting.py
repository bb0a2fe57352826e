"""Renders prompt templates with strict variables from the issue, the repository's rules and past findings."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statemachine import resources
from statemachine.errors import Problem, TemplateError

if TYPE_CHECKING:  # `orch lint` checks templates without loading the issue model
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


MAX_TEMPLATE_BYTES = 1024 * 1024  # a prompt template is a few kilobytes; the model's context is the real bound
GUIDES = ("setup-skill",)  # files `orch setup` copies into .orch/prompts/ that are guides, not templates


def template_path(name: str, repo: Path) -> Path:
    """The repository's override of prompt ``name`` when there is one, else the bundled prompt. An override that is
    there but is no file (a broken symbolic link, a folder) is an error, never a silent fallback."""
    override = repo / ".orch" / "prompts" / f"{name}.md"
    if override.is_file():
        return override
    if override.is_symlink() or override.exists():
        problem = override_problem(override, str(override.relative_to(repo)))
        raise TemplateError(f"{problem.file}: {problem.message}", problem.hint)
    return resources.prompt_template(name)


def override_problem(path: Path, file: str) -> Problem:
    """Why ``path``, a prompt override that exists as a name but is not a readable file, cannot be used."""
    if path.is_symlink():
        try:
            target = str(path.readlink())
        except OSError:
            target = "?"
        return Problem(
            file,
            1,
            1,
            (),
            f"the prompt override is a symbolic link to {target}, which does not exist (or is not a file)",
            "restore its target, or remove the link to use orch's bundled prompt",
        )
    if not path.exists():
        return Problem(file, 1, 1, (), "file not found", "name an existing prompt file")
    return Problem(file, 1, 1, (), "the prompt override is not a file", "make it a Markdown file, or remove it")


def read_template(path: Path, file: str) -> str:
    """A template's text: UTF-8, at most MAX_TEMPLATE_BYTES; anything else is a TemplateError naming the file."""
    text, problem = load_template(path, file)
    if problem is not None:
        raise TemplateError(f"{problem.file}:{problem.line}:{problem.column}: {problem.message}", problem.hint)
    return text


def load_template(path: Path, file: str) -> tuple[str, Problem | None]:
    """A template's text, or why it cannot be read (not a file, unreadable, over the size limit, not UTF-8)."""
    if not path.is_file():
        return "", override_problem(path, file)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        return "", Problem(file, 1, 1, (), f"cannot read the prompt template: {exc.strerror}", "check its permissions")
    if len(raw) > MAX_TEMPLATE_BYTES:
        start = raw.rfind(b"\n", 0, MAX_TEMPLATE_BYTES) + 1
        return "", Problem(
            file,
            raw.count(b"\n", 0, start) + 1,
            MAX_TEMPLATE_BYTES - start + 1,
            (),
            f"the prompt template is over orch's limit of {MAX_TEMPLATE_BYTES:,} bytes (1 MiB); it was not read",
            "a prompt is a few kilobytes: shorten it",
        )
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, start) + 1
        return "", Problem(
            file, line, exc.start - start + 1, (), "the prompt template is not UTF-8 text", "save it as UTF-8"
        )


def _position(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, line_start) + 1, offset - line_start + 1


def template_problems(text: str, file: str) -> list[Problem]:
    """Every problem of a prompt template, each at its line:column: a lone ``$`` or a variable orch does not provide.
    A template without them renders (checked by rendering it with every variable set)."""
    out: list[Problem] = []
    known = ", ".join("$" + v for v in VARIABLES)
    for match in string.Template.pattern.finditer(text):
        line, col = _position(text, match.start())
        name = match.group("named") or match.group("braced")
        if match.group("invalid") is not None:
            found = text[match.start() : match.start() + 12].split("\n", 1)[0]
            out.append(
                Problem(
                    file,
                    line,
                    col,
                    ("$",),
                    f"invalid placeholder (a lone $) in {found!r}",
                    "write $$ for a literal dollar sign",
                )
            )
        elif name is not None and name not in VARIABLES:
            import difflib

            near = difflib.get_close_matches(name, VARIABLES, n=1, cutoff=0.6)
            out.append(
                Problem(
                    file,
                    line,
                    col,
                    ("$" + name,),
                    f"unknown template variable ${name}",
                    f"did you mean ${near[0]}?" if near else "variables: " + known,
                )
            )
    if not out:
        try:
            string.Template(text).substitute({v: v for v in VARIABLES})
        except (ValueError, KeyError) as exc:  # not expected once the placeholders are known: report, never crash
            out.append(Problem(file, 1, 1, (), f"the template does not render: {exc}", "check its placeholders"))
    return out


def check_template(text: str, file: str) -> None:
    """Raise a TemplateError naming the file, and the line and column of each problem, when ``text`` would not
    render."""
    problems = template_problems(text, file)
    invalid = [p for p in problems if p.path == ("$",)]
    if invalid:
        where = ", ".join(f"line {p.line}, column {p.column}" for p in invalid)
        raise TemplateError(f"{file}: invalid placeholder (a lone $) at {where}", "write $$ for a literal dollar sign")
    unknown = [p for p in problems if p.path and p.path != ("$",)]
    if unknown:
        names = ", ".join(f"{p.path[0]} (line {p.line}, column {p.column})" for p in unknown)
        raise TemplateError(
            f"{file}: unknown template variable(s): {names}",
            "variables: " + ", ".join("$" + v for v in VARIABLES),
        )
    if problems:
        raise TemplateError(f"{file}: {problems[0].message}", problems[0].hint)


def render(name: str, repo: Path, values: dict[str, Any]) -> str:
    path = template_path(name, repo)
    shown = str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
    text = read_template(path, shown)
    check_template(text, shown)
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
