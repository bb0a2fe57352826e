"""Random mutations of valid policies either load or fail with located problems, never a traceback.

Mutants are made at the data level (a key deleted, renamed with a typo or added, a value of the wrong
type, transitions shuffled or dropped, bad guard and action names, bad parameters, a document that is
not a mapping), dumped back to YAML, and at the text level (characters deleted, inserted or replaced,
lines moved, the file truncated, bytes that are not UTF-8). Each mutant is loaded with
`statemachine.policy.load`: it returns a Policy (which must then build a machine), or raises
PolicyError whose every problem names a file, a line and column inside it, and a message. Anything
else fails the test. `orch lint` on mutants must exit 0 or 3, never 70 (an internal error).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from statemachine import policy as policy_mod
from statemachine import registry, resources
from statemachine.cli import main
from statemachine.errors import EXIT_OK, EXIT_POLICY, PolicyError
from statemachine.machine import build_machine
from statemachine.model import LABEL_ROLES, STATES

DEFAULT_TEXT = resources.bundled_policy("default").read_text()

# A repository policy as `orch setup` writes it: it extends the bundled one and overrides a little.
STARTER_TEXT = """\
version: 1
extends: default

tracker:
  kind: local
  base_branch: "main"

agent:
  kind: command
  command: my-agent
  args: [exec, "-"]
  timeout_seconds: 1800

checks:
  tests:
    command: python -m pytest -q
    timeout_seconds: 900

gates:
  blocked_paths: ["secrets/**"]
  max_changed_files: 20

limits:
  rework_iterations: 1
"""

BASES = {"default": DEFAULT_TEXT, "starter": STARTER_TEXT}
GUARD_NAMES = sorted(registry.GUARDS)
ACTION_NAMES = sorted(registry.ACTIONS)
KNOWN_WORDS = sorted(
    {
        *GUARD_NAMES,
        *ACTION_NAMES,
        *STATES,
        *LABEL_ROLES,
        "version",
        "extends",
        "tracker",
        "labels",
        "branch_template",
        "pr_title_template",
        "rules",
        "agent",
        "checks",
        "gates",
        "proof",
        "limits",
        "lifecycle",
        "transitions",
        "trigger",
        "source",
        "dest",
        "guards",
        "actions",
        "human",
        "description",
        "not",
        "name",
        "color",
        "kind",
        "command",
        "args",
        "env",
        "label",
        "outcome",
        "prompt",
        "local",
        "github",
        "default",
        "rework_iterations",
        "{number}",
        "{slug}",
        "{title}",
        "{run_id}",
        "{",
        "}",
        "{0}",
        "",
    }
)


def _load_plain(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def fast(examples: int) -> settings:
    """Deterministic (CI must not flake), no example database, no deadline (loading takes what it takes)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


# what a mutant may contain --------------------------------------------------------------------

TEXT = st.text(
    st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n :-#{}[],&*!|>'\"%@`"), max_size=12
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(KNOWN_WORDS),
)
KEYS = st.one_of(st.sampled_from(KNOWN_WORDS), TEXT, st.integers(-2, 5), st.booleans(), st.none())
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=6
)


def typo(word: str) -> st.SearchStrategy[str]:
    """A near miss: a character dropped, doubled, swapped or changed, or a case or separator change."""
    ops = [st.just(word.upper()), st.just(word.replace("_", "-")), st.just(word + "s")]
    if word:
        ops += [
            st.integers(0, len(word) - 1).map(lambda i: word[:i] + word[i + 1 :]),
            st.integers(0, len(word) - 1).map(lambda i: word[:i] + word[i] + word[i:]),
            st.tuples(st.integers(0, len(word) - 1), st.characters(min_codepoint=97, max_codepoint=122)).map(
                lambda p: word[: p[0]] + p[1] + word[p[0] + 1 :]
            ),
        ]
    if len(word) > 1:
        ops.append(st.integers(0, len(word) - 2).map(lambda i: word[:i] + word[i + 1] + word[i] + word[i + 2 :]))
    return st.one_of(ops)


# data-level mutations -----------------------------------------------------------------------------


def node_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += node_paths(v, prefix + (k,))
    return out


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def entry_paths(data: Any) -> list[tuple[Any, ...]]:
    """Paths of every guard and action entry in the lifecycle table."""
    out = []
    transitions = data.get("lifecycle", {}).get("transitions") if isinstance(data.get("lifecycle"), dict) else None
    for i, t in enumerate(transitions if isinstance(transitions, list) else []):
        for kind in ("guards", "actions"):
            if isinstance(t, dict) and isinstance(t.get(kind), list):
                out += [("lifecycle", "transitions", i, kind, j) for j in range(len(t[kind]))]
    return out


def mutate(data: Any, draw: st.DataObject) -> tuple[Any, str]:
    """Apply one random mutation to ``data`` (a copy is returned) and describe it."""
    data = copy.deepcopy(data)
    paths = node_paths(data) if isinstance(data, (dict, list)) else []
    ops = []
    if isinstance(data, dict) and entry_paths(data):
        ops += ["entry_params", "entry_name"]
    if paths:
        ops += ["retype", "delete", "unknown_key", "retype"]
    if any(isinstance(get(data, p[:-1]), dict) for p in paths):
        ops += ["typo", "typo"]
    if (
        isinstance(data, dict)
        and isinstance(data.get("lifecycle"), dict)
        and isinstance(data["lifecycle"].get("transitions"), list)
        and data["lifecycle"]["transitions"]
    ):
        ops.append("transitions")
    ops.append("doc")  # last: Hypothesis favours the first options, and this one ends the interesting part
    op = draw.draw(st.sampled_from(ops), label="mutation")

    if op == "doc":
        return draw.draw(
            st.one_of(SCALARS, st.lists(VALUES, max_size=3), st.just(data if not isinstance(data, dict) else [data]))
        ), op
    if op in ("delete", "retype"):
        path = draw.draw(st.sampled_from(paths), label="path")
        parent = get(data, path[:-1])
        if op == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw.draw(VALUES, label="value")
        return data, f"{op} {path}"
    if op == "typo":
        path = draw.draw(st.sampled_from([p for p in paths if isinstance(get(data, p[:-1]), dict)]), label="path")
        parent = get(data, path[:-1])
        new = draw.draw(typo(str(path[-1])), label="typo")
        value = parent.pop(path[-1])
        parent[new] = value
        return data, f"rename {path} to {new!r}"
    if op == "unknown_key":
        dicts = [()] if isinstance(data, dict) else []
        dicts += [p for p in paths if isinstance(get(data, p), dict)]
        if not dicts:
            return [data], "wrap in a list"
        path = draw.draw(st.sampled_from(dicts), label="path")
        key = draw.draw(st.one_of(KEYS, st.sampled_from(KNOWN_WORDS).flatmap(typo)), label="key")
        get(data, path)[key] = draw.draw(VALUES, label="value")
        return data, f"add {key!r} under {path}"
    if op == "transitions":
        table = data["lifecycle"]["transitions"]
        how = draw.draw(st.sampled_from(["shuffle", "drop", "duplicate", "empty", "truncate"]), label="how")
        if how == "shuffle":
            table[:] = draw.draw(st.permutations(table))
        elif how == "drop":
            for i in sorted(draw.draw(st.sets(st.integers(0, len(table) - 1), min_size=1, max_size=4)), reverse=True):
                del table[i]
        elif how == "duplicate":
            i = draw.draw(st.integers(0, len(table) - 1))
            table.insert(draw.draw(st.integers(0, len(table))), copy.deepcopy(table[i]))
        elif how == "empty":
            table.clear()
        else:
            del table[draw.draw(st.integers(0, len(table) - 1)) :]
        return data, f"transitions: {how}"
    path = draw.draw(st.sampled_from(entry_paths(data)), label="entry")
    parent, entry = get(data, path[:-1]), get(data, path)
    name = entry if isinstance(entry, str) else next(iter(entry), "x") if isinstance(entry, dict) and entry else "x"
    if op == "entry_name":
        bad = draw.draw(
            st.one_of(
                typo(str(name)),
                st.sampled_from(GUARD_NAMES if path[3] == "actions" else ACTION_NAMES),
                TEXT,
                st.sampled_from(["not", "Issue_Open", "has label", "", "1abc"]),
            ),
            label="name",
        )
        shape = draw.draw(st.sampled_from(["bare", "params", "not", "two_keys"]), label="shape")
        parent[path[-1]] = {
            "bare": bad,
            "params": {bad: {}},
            "not": {"not": bad},
            "two_keys": {bad: None, str(name): None},
        }[shape]
        return data, f"entry {path} named {bad!r} ({shape})"
    params = draw.draw(
        st.one_of(
            VALUES,
            st.dictionaries(
                st.sampled_from(
                    ["label", "labels", "prompt", "kind", "outcome", "paths", "ignore", "allow", "settle_seconds", "x"]
                ),
                st.one_of(SCALARS, st.lists(st.sampled_from([*LABEL_ROLES, "nope", 3]), max_size=3)),
                max_size=3,
            ),
        ),
        label="params",
    )
    real = str(name) if str(name) in registry.GUARDS or str(name) in registry.ACTIONS else "has_label"
    parent[path[-1]] = (
        {"not": {real: params}} if draw.draw(st.booleans(), label="negate") and path[3] == "guards" else {real: params}
    )
    return data, f"entry {path} params {params!r}"


def dump(data: Any, style: str) -> str:
    if style == "json":
        return json.dumps(data, default=str)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = style == "flow"
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


# text-level mutations -----------------------------------------------------------------------------

SYNTAX = st.sampled_from(
    [
        ":",
        "-",
        " ",
        "  ",
        "\t",
        "\n",
        "#",
        "{",
        "}",
        "[",
        "]",
        ",",
        "|",
        ">",
        "'",
        '"',
        "%",
        "@",
        "`",
        "? ",
        "\\",
        "\x00",
        "\ufeff",
        "é",
        "\u2028",
        "~",
        "null",
        "---\n",
        "...\n",
        "&a ",
        "*a",
        "&a [*a]",
        "&a {<<: *a}",
        "<<: *a",
        "!!str ",
        "!!set {a, b}",
        "!!binary aGk=",
        "!!pairs [a: 1]",
        "!!omap [{a: 1}]",
        "!x ",
        "[[a]]",
        "{? [a]: b}",
        '"\\ud83d\\ude00"',
        '"\\udc00"',
        "2020-01-01",
        ".nan",
        "0o17",
        "1e999",
    ]
)


@st.composite
def text_mutant(draw: Any, text: str) -> bytes:
    for _ in range(draw(st.integers(1, 4), label="edits")):
        n = len(text)
        i = draw(st.integers(0, n), label="at")
        op = draw(
            st.sampled_from(
                ["word", "delete", "insert", "replace", "line_dup", "line_swap", "indent", "dedent", "truncate"]
            )
        )
        lines = text.splitlines(keepends=True)
        words = [m.span() for m in re.finditer(r"[A-Za-z_]+", text)]
        if op == "word" and words:  # a typo in a key or a name: the YAML stays well-formed
            start, end = words[draw(st.integers(0, len(words) - 1))]
            text = text[:start] + draw(typo(text[start:end])) + text[end:]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 20)) :]
        elif op == "insert":
            text = text[:i] + draw(st.one_of(SYNTAX, TEXT)) + text[i:]
        elif op == "replace" and i < n:
            text = text[:i] + draw(st.one_of(SYNTAX, TEXT, st.characters())) + text[i + 1 :]
        elif op == "truncate":
            text = text[:i]
        elif lines:
            j = draw(st.integers(0, len(lines) - 1))
            k = draw(st.integers(0, len(lines) - 1))
            if op == "line_dup":
                lines.insert(k, lines[j])
            elif op == "line_swap":
                lines[j], lines[k] = lines[k], lines[j]
            elif op == "indent":
                lines[j] = "  " + lines[j]
            else:
                lines[j] = lines[j][2:] if lines[j].startswith("  ") else lines[j].lstrip()
            text = "".join(lines)
    raw = text.encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 9), label="bytes") == 0:  # sometimes not UTF-8 at all
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"])) + raw[at:]
    return raw


# the property -------------------------------------------------------------------------------------


def check_load(path: Path) -> policy_mod.Policy | PolicyError:
    """Load ``path``: a usable Policy, or a PolicyError whose every problem is located and explained."""
    raw = path.read_bytes()
    lines = raw.count(b"\n") + 1
    try:
        pol = policy_mod.load(path)
    except PolicyError as exc:
        assert exc.problems, "a PolicyError without a single problem"
        for p in exc.problems:
            assert isinstance(p.file, str) and p.file, p
            assert isinstance(p.line, int) and p.line >= 1, p
            assert isinstance(p.column, int) and p.column >= 1, p
            assert isinstance(p.message, str) and p.message.strip(), p
            if p.file == str(path):
                assert p.line <= lines, f"line {p.line} is past the end of the {lines}-line file: {p.render()}"
        assert str(exc).encode("utf-8"), "the problems cannot be printed"
        json.dumps([p.as_json() for p in exc.problems])  # what `orch lint --json` prints
        return exc
    assert isinstance(pol, policy_mod.Policy)
    assert pol.transitions, "a policy without transitions loaded"
    build_machine(pol)  # a policy that loads can be run
    return pol


def lint(path: Path, *extra: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["lint", str(path), *extra])
    assert code in (EXIT_OK, EXIT_POLICY), f"orch lint exited {code}:\n{err.getvalue()}{out.getvalue()}"
    if "--json" in extra:
        json.loads(out.getvalue())
    return code


@pytest.fixture
def mutant(tmp_path: Path) -> Path:
    return tmp_path / "policy.yaml"


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_bases_are_valid(base: str, mutant: Path) -> None:
    mutant.write_text(BASES[base])
    assert isinstance(check_load(mutant), policy_mod.Policy)
    assert lint(mutant) == EXIT_OK


@pytest.mark.parametrize("base", sorted(BASES))
@fast(60)
@given(data=st.data())
def test_data_mutations_load_or_fail_located(base: str, mutant: Path, data: st.DataObject) -> None:
    doc: Any = _load_plain(BASES[base])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        doc, what = mutate(doc, data)
        note(what)
    style = data.draw(st.sampled_from(["block", "flow", "json"]), label="style")
    mutant.write_text(dump(doc, style))
    check_load(mutant)


@pytest.mark.parametrize("base", sorted(BASES))
@fast(150)
@given(data=st.data())
def test_text_mutations_load_or_fail_located(base: str, mutant: Path, data: st.DataObject) -> None:
    mutant.write_bytes(data.draw(text_mutant(BASES[base]), label="mutant"))
    check_load(mutant)


@fast(20)
@given(data=st.data())
def test_lint_never_fails_internally(mutant: Path, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(sorted(BASES)), label="base")
    if data.draw(st.booleans(), label="text level"):
        mutant.write_bytes(data.draw(text_mutant(BASES[base]), label="mutant"))
    else:
        doc, _ = mutate(_load_plain(BASES[base]), data)
        mutant.write_text(dump(doc, "block"))
    expected = EXIT_OK if isinstance(check_load(mutant), policy_mod.Policy) else EXIT_POLICY
    assert lint(mutant) == expected
    assert lint(mutant, "--json") == expected


# found by the properties above --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["&a {<<: *a}: 1\n", "[[claimed]]: 1\n", "!!pairs [a: 1]: 1\n", "extends: default\nlabels: &a {<<: *a}\n"]
)
def test_yaml_the_parser_cannot_construct_is_a_located_problem(text: str, mutant: Path) -> None:
    """ruamel raises AttributeError or TypeError (not a YAMLError) on these; the loader let them through."""
    mutant.write_text(text)
    exc = check_load(mutant)
    assert isinstance(exc, PolicyError) and exc.problems[0].message.startswith("cannot read YAML")
    assert lint(mutant) == EXIT_POLICY


@pytest.mark.parametrize("dest", ["[claimed]", "{state: claimed}"])
def test_a_transition_whose_dest_is_not_a_name_is_a_located_problem(dest: str, mutant: Path) -> None:
    """The reachability check used `dest` as a dict key before checking its type: TypeError (unhashable)."""
    mutant.write_text(
        f"extends: default\nlifecycle:\n  transitions:\n    - {{trigger: claim, source: queued, dest: {dest}}}\n"
    )
    exc = check_load(mutant)
    assert isinstance(exc, PolicyError)
    assert any(p.path == ("lifecycle", "transitions", 0, "dest") and p.line == 4 for p in exc.problems), exc
    assert lint(mutant) == EXIT_POLICY


def test_json_unicode_escapes_are_read_as_json_reads_them(mutant: Path) -> None:
    """JSON is YAML, and JSON writes a non-BMP character as a surrogate pair ("\\ud83d\\ude00"). The loader kept the
    two surrogates as they were: any message naming that key could not be printed, and `orch lint` exited 70."""
    mutant.write_text(json.dumps({"version": 1, "extends": "default", "rules": "lone \udc00", "bad\U0001f600key": 1}))
    assert "\\ud83d\\ude00" in mutant.read_text()
    exc = check_load(mutant)
    assert isinstance(exc, PolicyError)
    assert [p.message for p in exc.problems] == ["unknown key 'bad\U0001f600key'"]
    assert lint(mutant) == EXIT_POLICY
    assert lint(mutant, "--json") == EXIT_POLICY
