"""What is wrong with a policy, located: JSON Schema errors turned into problems at file:line:column with the key,
and the semantic checks the schema cannot make (names and parameters against the catalog, templates, the lifecycle
table). Pure: policy.py loads and merges the documents and calls these."""

from __future__ import annotations

import difflib
from typing import Any

from statemachine.catalog import Catalog
from statemachine.errors import Problem
from statemachine.model import INITIAL_STATE, PLAN_STATES, REST_STATES, STATES
from statemachine.yamlsrc import Document

BRANCH_FIELDS = ("number", "slug", "run_id")
PR_TITLE_FIELDS = ("number", "title")


def _at(
    doc_or_docs: Document | list[Document], path: tuple[str | int, ...], message: str, hint: str | None = None
) -> Problem:
    docs = doc_or_docs if isinstance(doc_or_docs, list) else [doc_or_docs]
    best: tuple[int, int, int, str] | None = None
    for doc in docs:
        pos = doc.position(path)
        if pos is None:
            continue
        depth, line, col = pos
        if best is None or depth > best[0]:
            best = (depth, line, col, doc.file)
        if depth == len(path):
            break
    if best is None:
        best = (0, 1, 1, docs[0].file)
    return Problem(best[3], best[1], best[2], path, message, hint)


def _near(word: str, options: list[str] | tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {found[0]!r}?" if found else None


def schema_problems(data: Any, docs: list[Document], schema_name: str = "policy") -> list[Problem]:
    """``data`` against a bundled schema: ``policy`` (the merged policy) or ``policy-file`` (a file as written, derived
    from the merged one by statemachine/policy_schema.py)."""
    import jsonschema

    from statemachine import policy_schema, resources

    schema = policy_schema.file_schema() if schema_name == "policy-file" else resources.schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    out: list[Problem] = []
    for err in validator.iter_errors(data):
        out.extend(_describe(err, docs))
    return out


def _describe(err: Any, docs: list[Document]) -> list[Problem]:
    path = tuple(err.absolute_path)
    kind = err.validator
    inst = err.instance
    if kind == "additionalProperties" and isinstance(inst, dict):
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in inst if k not in allowed]
        return [
            _at(
                docs,
                path + (k,),
                f"unknown key {k!r}",
                _near(str(k), allowed) or ("allowed: " + ", ".join(allowed) if allowed else None),
            )
            for k in extra
        ]
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else str(err.validator_value)
        return [_at(docs, path, f"missing required key {missing!r}", f"add `{missing}:` here")]
    if kind == "type":
        return [_at(docs, path, f"{_show(inst)} is {_typename(inst)}, expected {_expected(err.validator_value)}")]
    if kind == "enum":
        options = [str(x) for x in err.validator_value if x is not None]  # null: a file removing the key
        return [_at(docs, path, f"{_show(inst)} is not one of: {', '.join(options)}", _near(str(inst), options))]
    if kind == "const":
        return [_at(docs, path, f"{_show(inst)} must be {err.validator_value!r}")]
    if kind in ("anyOf", "oneOf"):
        desc = err.schema.get("description")
        best = None
        if err.context:
            import jsonschema.exceptions as jexc

            nulls = {i for i, branch in enumerate(err.validator_value) if branch == {"type": "null"}}
            rest = [e for e in err.context if not e.relative_schema_path or e.relative_schema_path[0] not in nulls]
            if nulls and rest:  # `key: null` is allowed in a file as written (it removes the key): say what else is
                return _describe(jexc.best_match(rest), docs)
            best = jexc.best_match(err.context)
        if path and len(path) >= 2 and path[-2] in ("guards", "actions"):
            what = "guard" if path[-2] == "guards" else "action"
            form = (
                "a name, `{name: {params}}`, or `{not: guard}`" if what == "guard" else "a name or `{name: {params}}`"
            )
            return [_at(docs, path, f"{_show(inst)} is not a valid {what} entry: use {form}")]
        if best is not None and best.validator in ("enum", "const", "pattern"):
            return _describe(best, docs)
        return [_at(docs, path, f"{_show(inst)} is not valid" + (f": {desc}" if desc else ""))]
    if kind == "pattern":
        hint = {
            "color": "six hex digits without #, for example 0e8a16",
            "extends": "a bundled policy name such as default",
        }.get(str(path[-1]) if path else "", "names are lower case letters, digits and underscores")
        return [_at(docs, path, f"{_show(inst)} does not match the pattern {err.validator_value}", hint)]
    if kind == "propertyNames":
        return [
            _at(docs, path, f"invalid name in {_show(inst)}", "names are lower case letters, digits and underscores")
        ]
    return [_at(docs, path, err.message)]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typename(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "empty (null)",
    }.get(type(value), type(value).__name__)


def _expected(t: Any) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "boolean": "true or false",
        "integer": "an integer",
        "number": "a number",
        "null": "null",
    }
    if isinstance(t, list):
        return " or ".join(names.get(x) or str(x) for x in t)
    return names.get(t, str(t))


def _entries(raw: Any, guards: bool, base: tuple[str | int, ...]) -> list[tuple[str, Any, bool, tuple[str | int, ...]]]:
    """Yield (name, params, negate, path) for well-formed guard/action entries, skipping malformed ones."""
    out: list[tuple[str, Any, bool, tuple[str | int, ...]]] = []
    if not isinstance(raw, list):
        return out
    for i, entry in enumerate(raw):
        path = base + (i,)
        negate = False
        while guards and isinstance(entry, dict) and set(entry) == {"not"}:
            negate = not negate
            entry = entry["not"]
            path = path + ("not",)
        if isinstance(entry, str):
            out.append((entry, {}, negate, path))
        elif isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            if isinstance(name, str) and (params is None or isinstance(params, dict)):
                out.append((name, params or {}, negate, path + (name,)))
    return out


def _sources(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [x for x in raw if isinstance(x, str)]
    return []


def semantic_problems(data: dict[str, Any], docs: list[Document], catalog: Catalog | None = None) -> list[Problem]:
    import jsonschema

    from statemachine import catalog as catalog_mod

    known = catalog or catalog_mod.builtin()

    out: list[Problem] = []
    validators: dict[tuple[str, str], Any] = {}  # one per guard or action name, not per use
    # labels: distinct names
    labels = data.get("labels")
    if isinstance(labels, dict):
        seen: dict[str, str] = {}
        for role, spec in labels.items():
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                name = spec["name"]
                if name in seen:
                    out.append(
                        _at(
                            docs,
                            ("labels", role, "name"),
                            f"label name {name!r} is already used by role {seen[name]!r}",
                            "each role needs its own label",
                        )
                    )
                seen.setdefault(name, role)
    out.extend(_agent_profile_problems(data.get("agent"), docs))
    # templates: only known fields
    for key, fields in (("branch_template", BRANCH_FIELDS), ("pr_title_template", PR_TITLE_FIELDS)):
        value = data.get(key)
        if isinstance(value, str):
            out.extend(_template_problems(value, fields, key, docs))
    # tracker and agent consistency
    tracker = data.get("tracker")
    if isinstance(tracker, dict) and tracker.get("kind") == "github":
        for k in ("owner", "repo"):
            if not tracker.get(k):
                out.append(
                    _at(
                        docs,
                        ("tracker",),
                        f"tracker.kind is github but tracker.{k} is missing",
                        "`orch setup` infers it from the origin remote",
                    )
                )
    agent = data.get("agent")
    if isinstance(agent, dict) and agent.get("kind") != "command":
        for key, kinds in (
            ("network", ("codex",)),
            ("sandbox", ("codex",)),
            ("allowed_tools", ("claude",)),
            ("max_turns", ("claude",)),
            ("permission_mode", ("claude",)),
            ("setting_sources", ("claude",)),
            ("partial_messages", ("claude",)),
            ("scrub_subprocess_env", ("claude",)),
        ):
            if key in agent and agent.get("kind") not in kinds:
                out.append(
                    _at(
                        docs,
                        ("agent", key),
                        f"agent.{key} applies to the {'/'.join(kinds)} agent, not {agent.get('kind')!r}",
                        f"remove it, or set agent.kind: {kinds[0]}",
                    )
                )
    if isinstance(agent, dict) and agent.get("kind") == "command" and not agent.get("command"):
        out.append(
            _at(docs, ("agent",), "agent.kind is command but agent.command is missing", "name the executable to run")
        )
    if isinstance(agent, dict) and isinstance(agent.get("env"), dict):
        from statemachine.secrets import is_secret_name

        for k in agent["env"]:
            if is_secret_name(str(k)):
                out.append(
                    _at(
                        docs,
                        ("agent", "env", k),
                        f"{k!r} looks like a secret; the agent never receives credentials",
                        "remove it from agent.env",
                    )
                )
    sandbox = data.get("sandbox")
    if isinstance(sandbox, dict):
        from statemachine.secrets import is_secret_name

        for i, name in enumerate(sandbox.get("env") or []):
            if isinstance(name, str) and is_secret_name(name):
                out.append(
                    _at(
                        docs,
                        ("sandbox", "env", i),
                        f"{name!r} looks like a secret; agents and checks never receive credentials",
                        "remove it from sandbox.env (a model key reaches codex or claude through agent.api_key_env)",
                    )
                )
        for key in ("read_only", "writable"):
            for i, raw in enumerate(sandbox.get(key) or []):
                if isinstance(raw, str) and not raw.startswith(("/", "~")):
                    out.append(
                        _at(
                            docs,
                            ("sandbox", key, i),
                            f"sandbox.{key}: {raw!r} is not an absolute path",
                            "name the folder by its full path",
                        )
                    )
    # the lifecycle table
    lifecycle = data.get("lifecycle")
    transitions = lifecycle.get("transitions") if isinstance(lifecycle, dict) else None
    if not isinstance(transitions, list):
        return out
    edges: dict[str, set[str]] = {s: set() for s in STATES}
    signatures: dict[tuple[str, str, str], int] = {}
    unguarded: dict[str, int] = {}
    for i, t in enumerate(transitions):
        if not isinstance(t, dict):
            continue
        base = ("lifecycle", "transitions", i)
        for kind, table in (("guards", known.guards), ("actions", known.actions)):
            for name, params, _neg, path in _entries(t.get(kind), kind == "guards", base + (kind,)):
                schema = table.get(name)
                if schema is None:
                    word = "guard" if kind == "guards" else "action"
                    out.append(
                        _at(
                            docs,
                            path,
                            f"unknown {word} {name!r}",
                            _near(name, sorted(table)) or f"`orch lint --list` shows the {kind}",
                        )
                    )
                    continue
                v = validators.get((kind, name))
                if v is None:
                    v = validators[(kind, name)] = jsonschema.Draft202012Validator(schema)
                for err in v.iter_errors(params):
                    sub = path + tuple(err.absolute_path)
                    if err.validator == "additionalProperties":
                        allowed = list(schema.get("properties", {}))
                        for k in [k for k in err.instance if k not in allowed]:
                            out.append(
                                _at(
                                    docs,
                                    sub + (k,),
                                    f"{name} has no parameter {k!r}",
                                    _near(str(k), allowed)
                                    or (
                                        "parameters: " + ", ".join(allowed)
                                        if allowed
                                        else f"{name} takes no parameters"
                                    ),
                                )
                            )
                    elif err.validator == "enum":
                        opts = [str(x) for x in err.validator_value]
                        out.append(
                            _at(
                                docs,
                                sub,
                                f"{name}: {_show(err.instance)} is not one of: {', '.join(opts)}",
                                _near(str(err.instance), opts),
                            )
                        )
                    elif err.validator == "required":
                        out.append(
                            _at(docs, sub, f"{name}: {err.message}", f"see `orch lint --list` for {name}'s parameters")
                        )
                    else:
                        out.append(_at(docs, sub, f"{name}: {err.message}"))
        srcs = _sources(t.get("source"))
        dest = t.get("dest")
        guards_sig = repr(sorted(repr((n, p, neg)) for n, p, neg, _ in _entries(t.get("guards"), True, ())))
        for s in srcs:
            if s in edges and isinstance(dest, str) and dest in edges:  # a malformed dest is a schema problem
                edges[s].add(dest)
            trig = t.get("trigger")
            if isinstance(trig, str):
                sig = (s, trig, guards_sig)
                if sig in signatures:
                    out.append(
                        _at(
                            docs,
                            base,
                            f"transition duplicates #{signatures[sig]} (same source {s!r}, trigger {trig!r} and guards)",
                            "remove one, or give them different guards",
                        )
                    )
                signatures.setdefault(sig, i)
            if s in unguarded:
                out.append(
                    _at(
                        docs,
                        base,
                        f"transition can never fire: #{unguarded[s]} from {s!r} has no guards and comes first",
                        "move the unguarded transition to the end of that state's transitions",
                    )
                )
            elif not t.get("guards"):
                unguarded[s] = i
            if s in REST_STATES and not t.get("human"):
                out.append(
                    _at(
                        docs,
                        base,
                        f"a transition out of {s!r} must be declared `human: true`",
                        f"{s} is a resting state; only a maintainer's change may move an issue out of it",
                    )
                )
    # reachability and exits
    reached = {INITIAL_STATE}
    frontier = [INITIAL_STATE]
    while frontier:
        for nxt in edges[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    where = ("lifecycle", "transitions")
    used = {s for s, dests in edges.items() if dests} | {d for dests in edges.values() for d in dests}
    for s in STATES:
        if s in PLAN_STATES and s not in used:
            continue  # a lifecycle without parent planning leaves these states out
        if s not in reached:
            out.append(
                _at(
                    docs,
                    where,
                    f"state {s!r} cannot be reached from {INITIAL_STATE!r}",
                    f"add a transition with dest: {s}",
                )
            )
        elif s not in REST_STATES and not edges[s]:
            out.append(
                _at(
                    docs,
                    where,
                    f"state {s!r} has no way out",
                    f"add a transition with source: {s} (for example to blocked)",
                )
            )
    return out


def _agent_profile_problems(agent: Any, docs: list[Document]) -> list[Problem]:
    """agent.select names profiles that exist; a profile holds no profiles or select of its own."""
    if not isinstance(agent, dict):
        return []
    out = []
    raw = agent.get("profiles")
    profiles: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if profiles:  # each profile is checked as the agent section is, without profiles or select of its own
        import jsonschema

        from statemachine import resources

        section = resources.schema("policy")["properties"]["agent"]
        own = {k: v for k, v in section["properties"].items() if k not in ("profiles", "select")}
        validator = jsonschema.Draft202012Validator({**section, "properties": own})
        for name, spec in profiles.items():
            for err in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.absolute_path))):
                path = ("agent", "profiles", name, *err.absolute_path)
                out.append(_at(docs, path, err.message, "a profile takes the keys of the agent section"))
    for i, entry in enumerate(agent.get("select") or []):
        if isinstance(entry, dict) and isinstance(entry.get("profile"), str) and entry["profile"] not in profiles:
            out.append(
                _at(
                    docs,
                    ("agent", "select", i, "profile"),
                    f"no agent profile named {entry['profile']!r}",
                    _near(entry["profile"], sorted(profiles)) or "name one of agent.profiles, or add it there",
                )
            )
    return out


def _template_problems(value: str, fields: tuple[str, ...], key: str, docs: list[Document]) -> list[Problem]:
    import string

    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        return [_at(docs, (key,), f"bad template: {exc}", "use {field} placeholders; double braces for literal ones")]
    out = []
    for _lit, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in fields:
            out.append(
                _at(
                    docs,
                    (key,),
                    f"unknown field {{{name}}}",
                    _near(name, fields) or "fields: " + ", ".join("{" + f + "}" for f in fields),
                )
            )
        elif spec or conv:
            out.append(_at(docs, (key,), f"field {{{name}}} takes no format spec or conversion", f"write {{{name}}}"))
    return out
