"""Keep the documentation in step with the code.

Each test reads a document under docs/ and compares it with its source of truth in the code:
the policy schema, the bundled default policy, the guard and action registry, the argparse
parser, the exit codes, and the files that links point to. When one fails, the message names
what to add to or remove from which document.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine import errors, registry, resources
from statemachine import policy as policy_mod
from statemachine.model import LABEL_ROLES, STATES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Placeholder used in docs/policy.md for the keys of a mapping whose values all share one
# definition (the label roles) or whose keys are free (check names).
PLACEHOLDERS = {"labels": "<role>"}
FREE_KEY = "<name>"

SCHEMA_TYPE_WORDS = {
    "object": "mapping",
    "array": "list",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
}


# helpers ---------------------------------------------------------------------------------


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def headings(text: str) -> Iterator[tuple[int, str, int]]:
    """Yield (level, heading text, line index) for every Markdown heading outside code fences."""
    fence = None
    for i, line in enumerate(text.splitlines()):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            if fence is None:
                fence = marker
            elif fence == marker:
                fence = None
            continue
        if fence is None:
            m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if m:
                yield len(m.group(1)), m.group(2), i


def section(text: str, title: str, doc: str) -> str:
    """The body under the heading whose text is ``title``, up to the next heading at its level or above."""
    lines = text.splitlines()
    found = [(level, i) for level, t, i in headings(text) if t == title]
    assert found, f"{doc} has no heading {title!r}"
    level, start = found[0]
    end = len(lines)
    for other_level, _t, i in headings(text):
        if i > start and other_level <= level:
            end = i
            break
    return "\n".join(lines[start + 1 : end])


def subsections(text: str, title: str, doc: str) -> dict[str, str]:
    """Map each `name` of the level-below headings under ``title`` (written as `` ### `name` ``) to its body."""
    body = section(text, title, doc)
    out = {}
    for _level, t, _i in headings(body):
        m = re.fullmatch(r"`([^`]+)`", t)
        if m:
            out[m.group(1)] = section(body, t, doc)
    return out


def table_rows(body: str) -> list[list[str]]:
    """The cells of every Markdown table row whose first cell is a single `code` span."""
    rows = []
    for line in body.splitlines():
        if re.match(r"^\|\s*`[^`]+`\s*\|", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def word(text: str, token: str) -> bool:
    """``token`` occurs in ``text`` and is not part of a longer option or word."""
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def load_default_policy() -> policy_mod.Policy:
    return policy_mod.load(resources.bundled_policy("default"), "<bundled>/policies/default.yaml")


# the policy schema -----------------------------------------------------------------------


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` to the schema's ``$defs``, keeping the referring node's own keys."""
    defs = resources.schema("policy").get("$defs", {})
    seen = set()
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/") and ref not in seen, ref
        seen.add(ref)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[ref.rsplit("/", 1)[1]], **rest}
    return node


def schema_key_paths() -> dict[str, dict[str, Any]]:
    """Every key path of schemas/policy.schema.json, mapped to its (unresolved) schema node.

    Mapping keys are joined with `.`, list items are written `[]`, a free key (checks) is
    `<name>`, and the keys of a mapping whose values share one definition (labels) are listed
    one by one and their common sub-keys once, under a placeholder (`labels.<role>.name`).
    """
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        props: dict[str, Any] = node.get("properties", {})
        refs = {p.get("$ref") for p in props.values()}
        if len(props) > 1 and len(refs) == 1 and None not in refs:
            for key, sub in props.items():
                out[f"{path}.{key}" if path else key] = sub
            walk(next(iter(props.values())), f"{path}.{PLACEHOLDERS.get(path, FREE_KEY)}")
        else:
            for key, sub in props.items():
                child = f"{path}.{key}" if path else key
                out[child] = sub
                walk(sub, child)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and resolve(extra).get("properties"):
            child = f"{path}.{FREE_KEY}"
            out[child] = extra
            walk(extra, child)
        items = node.get("items")
        if isinstance(items, dict) and resolve(items).get("properties"):
            walk(items, f"{path}[]")

    walk(resources.schema("policy"), "")
    return out


def documented_keys() -> dict[str, list[str]]:
    rows = table_rows(section(read("policy.md"), "Key reference", "docs/policy.md"))
    keys: dict[str, list[str]] = {}
    for cells in rows:
        key = cells[0].strip("`")
        assert key not in keys, f"docs/policy.md documents `{key}` twice"
        assert len(cells) == 4, f"docs/policy.md: the row for `{key}` needs 4 cells (key, type, default, meaning)"
        keys[key] = cells
    return keys


def test_every_schema_key_is_documented() -> None:
    schema = set(schema_key_paths())
    missing = sorted(schema - set(documented_keys()))
    assert not missing, f"add a row to the key reference of docs/policy.md for: {', '.join(missing)}"


def test_every_documented_key_exists_in_the_schema() -> None:
    schema = set(schema_key_paths())
    extra = sorted(set(documented_keys()) - schema)
    assert not extra, f"docs/policy.md documents keys the schema does not have: {', '.join(extra)}"


def test_documented_types_match_the_schema() -> None:
    paths = schema_key_paths()
    wrong = []
    for key, cells in documented_keys().items():
        if key not in paths:
            continue
        raw, node, cell = paths[key], resolve(paths[key]), cells[1]
        types = node.get("type")
        for t in [types] if isinstance(types, str) else (types or []):
            if SCHEMA_TYPE_WORDS[t] not in cell:
                wrong.append(f"`{key}`: the type should say {SCHEMA_TYPE_WORDS[t]!r}")
        for value in raw.get("enum", []):
            if f"`{value}`" not in cell:
                wrong.append(f"`{key}`: the type should list `{value}`")
        if "const" in raw and f"`{json.dumps(raw['const'])}`" not in cell:
            wrong.append(f"`{key}`: the type should say `{json.dumps(raw['const'])}`")
    assert not wrong, "docs/policy.md key reference:\n" + "\n".join(wrong)


def test_documented_defaults_match_the_default_policy() -> None:
    from statemachine.yamlsrc import load_file

    data = load_file(resources.bundled_policy("default")).data
    wrong = []
    for key, cells in documented_keys().items():
        if "<" in key or "[]" in key:
            continue
        value: Any = data
        present = True
        for part in key.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                present = False
                break
        cell = cells[2]
        if not present:
            if not cell.lower().startswith("none"):
                wrong.append(f"`{key}` is not set by policies/default.yaml: its default should start with 'none'")
        elif (
            isinstance(value, (bool, int, float)) or (isinstance(value, str) and "\n" not in value) or value in ([], {})
        ):
            shown = f"`{json.dumps(value)}`"
            if shown not in cell:
                wrong.append(f"`{key}`: the default should show {shown}")
    assert not wrong, "docs/policy.md key reference:\n" + "\n".join(wrong)


def test_the_example_policy_is_valid(tmp_path: Path) -> None:
    body = section(read("policy.md"), "Example repository policy", "docs/policy.md")
    blocks = re.findall(r"^```yaml\n(.*?)^```", body, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, "docs/policy.md: the example section needs exactly one ```yaml block"
    path = tmp_path / "policy.yaml"
    path.write_text(blocks[0])
    policy_mod.load(path, "docs/policy.md example")  # raises PolicyError listing every problem


def test_builtin_globs_are_documented() -> None:
    from statemachine.gates import DEFAULT_TEST_GLOBS
    from statemachine.globs import BUILTIN_BLOCKED_PATHS

    text = read("policy.md")
    missing = [g for g in (*BUILTIN_BLOCKED_PATHS, *DEFAULT_TEST_GLOBS) if f"`{g}`" not in text]
    assert not missing, f"docs/policy.md should list the built-in blocked and test globs: {', '.join(missing)}"


def test_prompt_templates_and_variables_are_documented() -> None:
    from statemachine.prompting import PROMPTS, VARIABLES

    body = section(read("policy.md"), "Prompt templates", "docs/policy.md")
    missing = [f"`{p}`" for p in PROMPTS if f"`{p}`" not in body]
    missing += [f"`${v}`" for v in VARIABLES if f"`${v}`" not in body]
    assert not missing, f"docs/policy.md, Prompt templates, should name: {', '.join(missing)}"


# guards and actions ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Guards", "Actions"])
def test_registry_matches_the_reference(kind: str) -> None:
    table = registry.GUARDS if kind == "Guards" else registry.ACTIONS
    documented = subsections(read("policy.md"), kind, "docs/policy.md")
    missing = sorted(set(table) - set(documented))
    extra = sorted(set(documented) - set(table))
    assert not missing, f"docs/policy.md, {kind}: add a `### \\`name\\`` section for: {', '.join(missing)}"
    assert not extra, f"docs/policy.md, {kind}: not in the registry: {', '.join(extra)}"


@pytest.mark.parametrize("kind", ["Guards", "Actions"])
def test_registry_parameters_are_documented(kind: str) -> None:
    table = registry.GUARDS if kind == "Guards" else registry.ACTIONS
    documented = subsections(read("policy.md"), kind, "docs/policy.md")
    wrong = []
    for name, entry in sorted(table.items()):
        body = documented.get(name)
        if body is None:
            continue  # reported by test_registry_matches_the_reference
        props: dict[str, Any] = entry.params.get("properties", {})
        required = set(entry.params.get("required", []))
        if not props and "No parameters" not in body:
            wrong.append(f"`{name}` takes no parameters: say 'No parameters.'")
        for prop, spec in props.items():
            marker = f"`{prop}` ({'required' if prop in required else 'optional'})"
            if marker not in body:
                wrong.append(f"`{name}`: document {marker}")
            values = spec.get("enum") or spec.get("items", {}).get("enum") or []
            if set(values) == set(LABEL_ROLES):
                continue  # roles are documented once
            wrong += [f"`{name}`: `{prop}` accepts `{v}`" for v in values if f"`{v}`" not in body]
    assert not wrong, f"docs/policy.md, {kind}:\n" + "\n".join(wrong)


# the lifecycle ---------------------------------------------------------------------------


def test_lifecycle_diagram_is_the_default_policy_graph() -> None:
    from statemachine.commands.graph import mermaid

    blocks = re.findall(r"^```mermaid\n(.*?)^```", read("lifecycle.md"), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, "docs/lifecycle.md needs exactly one ```mermaid block"
    expected = mermaid(load_default_policy())
    assert blocks[0].rstrip("\n") == expected, (
        "docs/lifecycle.md: replace the mermaid block with the output of `orch graph --format mermaid` "
        "for the bundled default policy"
    )


def test_every_state_and_trigger_is_described() -> None:
    text = read("lifecycle.md")
    states = subsections(text, "States", "docs/lifecycle.md")
    missing = [s for s in STATES if s not in states]
    assert not missing, f"docs/lifecycle.md, States: add a `### \\`state\\`` section for: {', '.join(missing)}"
    triggers = sorted({t.trigger for t in load_default_policy().transitions})
    missing = [t for t in triggers if f"`{t}`" not in text]
    assert not missing, f"docs/lifecycle.md should name the default triggers: {', '.join(missing)}"


# the command line ------------------------------------------------------------------------


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from commands(sub, prefix + (name,))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}


def test_every_command_and_flag_is_documented() -> None:
    from statemachine.cli import _common, build_parser

    text = read("cli.md")
    parser = build_parser()
    common = option_strings(_common())
    common_body = section(text, "Common options", "docs/cli.md")
    wrong = [f"Common options: {opt}" for opt in sorted(common) if not word(common_body, opt)]
    wrong += [f"top level: {opt}" for opt in sorted(option_strings(parser)) if not word(text, opt)]
    for path, sub in commands(parser):
        title = "`orch " + " ".join(path) + "`"
        if title not in [t for _l, t, _i in headings(text)]:
            wrong.append(f"add a section headed {title}")
            continue
        body = section(text, title, "docs/cli.md")
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.option_strings:
                if set(action.option_strings) <= common:
                    continue
                wrong += [f"{title}: {opt}" for opt in action.option_strings if not word(body, opt)]
            else:
                name = str(action.metavar or action.dest.upper())
                if name not in body:
                    wrong.append(f"{title}: the argument {name}")
            for choice in action.choices or ():
                if not word(body, str(choice)):
                    wrong.append(f"{title}: the choice {choice}")
    assert not wrong, "docs/cli.md is missing:\n" + "\n".join(wrong)


def test_no_documented_command_is_unknown() -> None:
    from statemachine.cli import build_parser

    known = {"`orch " + " ".join(path) + "`" for path, _sub in commands(build_parser())}
    documented = {t for _l, t, _i in headings(read("cli.md")) if t.startswith("`orch ")}
    extra = sorted(documented - known)
    assert not extra, f"docs/cli.md documents commands the parser does not have: {', '.join(extra)}"


def exit_codes() -> dict[str, int]:
    return {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}


def test_exit_code_table_matches_errors_py() -> None:
    body = section(read("cli.md"), "Exit codes", "docs/cli.md")
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`(EXIT_\w+)`\s*\|", body, re.MULTILINE)
    table = {name: int(code) for code, name in rows}
    assert len(rows) == len(table), "docs/cli.md: a constant appears twice in the exit-code table"
    assert table == exit_codes(), (
        f"docs/cli.md exit-code table {sorted(table.items(), key=lambda x: x[1])} differs from "
        f"statemachine/errors.py {sorted(exit_codes().items(), key=lambda x: x[1])}"
    )


def test_help_epilog_lists_the_same_exit_codes() -> None:
    from statemachine.cli import build_parser

    listed = {int(n) for n in re.findall(r"(\d+) [a-z]", build_parser().epilog or "")}
    assert listed == set(exit_codes().values())


def test_every_json_kind_is_documented() -> None:
    from statemachine.output import JSON_VERSION

    sources = [ROOT / "statemachine" / "cli.py", *sorted((ROOT / "statemachine" / "commands").glob("*.py"))]
    kinds = {k for f in sources for k in re.findall(r"\bemit\(\s*\"(\w+)\"", f.read_text())}
    assert kinds, "found no out.emit(...) calls; has the output code moved?"
    body = section(read("cli.md"), "JSON output", "docs/cli.md")
    missing = sorted(k for k in kinds if f"`{k}`" not in body)
    assert not missing, f"docs/cli.md, JSON output: document the kinds {', '.join(missing)}"
    assert f'"version": {JSON_VERSION}' in body, (
        f'docs/cli.md, JSON output: the example should show "version": {JSON_VERSION}'
    )


# installation ----------------------------------------------------------------------------


def test_install_names_the_files_orch_writes_and_the_python_version() -> None:
    from statemachine.commands.setup import IGNORE_LINES
    from statemachine.runtime import STATE_DB

    text = read("install.md")
    wanted = [str(policy_mod.DEFAULT_POLICY_PATH), str(STATE_DB), *IGNORE_LINES]
    missing = [w for w in wanted if f"`{w}`" not in text]
    assert not missing, f"docs/install.md should name: {', '.join(missing)}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = requires.lstrip(">=~ ")
    assert f"Python {version}" in text, f"docs/install.md should say Python {version} (pyproject: {requires})"


# links -----------------------------------------------------------------------------------


def slugs(text: str) -> set[str]:
    """Anchors GitHub makes for the headings of a Markdown file."""
    out: set[str] = set()
    for _level, title, _i in headings(text):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
        base = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        slug, n = base, 0
        while slug in out:
            n += 1
            slug = f"{base}-{n}"
        out.add(slug)
    return out


def links(text: str) -> list[str]:
    """Link and image targets of a Markdown text, outside code fences and code spans."""
    prose = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)


MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(doc: Path) -> None:
    broken = []
    for target in links(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue  # https:, mailto: ...
        file_part, _, fragment = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist")
        elif fragment and dest.suffix == ".md" and fragment not in slugs(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading for #{fragment}")
    assert not broken, f"{doc.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)
