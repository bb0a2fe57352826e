"""Loads a policy: YAML (with line:column) -> `extends` merge -> JSON Schema -> semantic checks -> Policy."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statemachine.errors import PolicyError, Problem

if TYPE_CHECKING:  # imported where used: a policy served by the cache needs no YAML parser, checks or settings types
    from statemachine.catalog import Catalog
    from statemachine.settings import Settings
    from statemachine.yamlsrc import Document

DEFAULT_POLICY_PATH = Path(".orch") / "policy.yaml"


@dataclass(frozen=True)
class GuardSpec:
    name: str
    params: dict[str, Any]
    negate: bool = False
    path: tuple[str | int, ...] = ()

    def label(self) -> str:
        inner = self.name
        if self.params:
            inner += "(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"
        return f"not {inner}" if self.negate else inner


@dataclass(frozen=True)
class ActionSpec:
    name: str
    params: dict[str, Any]
    path: tuple[str | int, ...] = ()

    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + "(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


@dataclass(frozen=True)
class Transition:
    index: int
    trigger: str
    sources: tuple[str, ...]
    dest: str
    guards: tuple[GuardSpec, ...]
    actions: tuple[ActionSpec, ...]
    human: bool = False
    description: str = ""


@dataclass
class Policy:
    """A loaded, valid policy: ``config`` holds its settings, typed; ``data`` the merged tree (lint, schema errors)."""

    data: dict[str, Any]
    files: list[str]
    config: Settings
    transitions: list[Transition] = field(default_factory=list)
    path: Path | None = None  # the repository policy file it was loaded from (child runs load the same one)

    def label(self, role: str) -> str:
        return self.config.labels[role].name

    @property
    def label_names(self) -> dict[str, str]:
        return {role: label.name for role, label in self.config.labels.items()}

    def outgoing(self, state: str) -> list[Transition]:
        return [t for t in self.transitions if state in t.sources]

    @property
    def settings(self) -> dict[str, Any]:
        """What a snapshot carries for the guards (plain, JSON-ready)."""
        return self.config.snapshot()


# merging ---------------------------------------------------------------------------------


def merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key (recursively); anything else, lists included, is replaced; null deletes."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None:  # null deletes, also a key the base does not set (it must not stay as null)
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = merge({}, value) if isinstance(value, dict) else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


# loading ---------------------------------------------------------------------------------


def resolve_path(repo: Path, policy: Path | None) -> Path:
    if policy is not None:
        return policy if policy.is_absolute() else (Path.cwd() / policy)
    return repo / DEFAULT_POLICY_PATH


def load(path: Path, display: str | None = None, catalog: Catalog | None = None) -> Policy:
    """Load and check the policy at ``path`` (its guard and action names against ``catalog``, orch's own when None);
    raise PolicyError listing every problem. A policy checked before against orch's own catalog comes from the
    policy cache (statemachine/policy_cache.py) while none of the files it was loaded from changed."""
    from statemachine import catalog as catalog_mod
    from statemachine import policy_cache
    from statemachine.settings import build
    from statemachine.yamlsrc import load_file

    cacheable = catalog is None or catalog is catalog_mod.builtin()
    name = display or str(path)
    if cacheable and (hit := policy_cache.lookup(path, name)) is not None:
        data = hit["data"]
        policy = Policy(data=data, files=[str(f) for f in hit["files"]], config=build(data, hit["default"]))
        policy.transitions = parse_transitions(data)
        return policy
    doc = load_file(path, display)
    docs = [doc]
    data = doc.data
    if not isinstance(data, dict):
        raise PolicyError(
            [
                Problem(
                    doc.file,
                    1,
                    1,
                    (),
                    "the policy must be a YAML mapping (key: value lines)",
                    "start from the file `orch setup` writes",
                )
            ]
        )
    if doc.checked and "extends" not in data and cacheable:  # a bundled policy as shipped: it passed every check
        _seed_default(docs)
        policy = Policy(data=data, files=[doc.file], config=build(data, bundled_default()))
        policy.transitions = parse_transitions(data)
    else:
        from statemachine.policy_problems import schema_problems

        # the file as written (a mistyped key under a null, too); a file that extends nothing is the whole policy,
        # and the merged checks below are the same checks made stricter: they say all of it
        written = schema_problems(data, [doc], "policy-file") if "extends" in data else []
        try:
            data = _resolve_extends(data, docs, set())
        except PolicyError as exc:
            raise PolicyError(_combined(exc.problems, written, docs)) from None
        _seed_default(docs)
        policy = check(data, docs, catalog, written)
    if cacheable:
        sources = [(str(d.path), d.digest) for d in docs[1:] if d.path is not None]
        policy_cache.store(path, name, doc.digest, sources, data, policy.files, (bundled_default(), _DEFAULT["digest"]))
    return policy


def check_file(path: Path, display: str | None = None) -> dict[str, Any]:
    """Check the policy at ``path`` against orch's own catalog, as ``load`` does, and return its merged data; a
    policy checked before comes from the policy cache without building its settings (what `orch lint` needs)."""
    from statemachine import policy_cache

    hit = policy_cache.lookup(path, display or str(path))
    if hit is not None:
        data: dict[str, Any] = hit["data"]
        return data
    from statemachine import resources

    if path.parent == resources.data_dir("policies"):  # a bundled policy as shipped passed every check already
        from statemachine.yamlsrc import load_file

        doc = load_file(path, display)
        if doc.checked and isinstance(doc.data, dict) and "extends" not in doc.data:
            return doc.data
    return load(path, display).data


def _resolve_extends(data: dict[str, Any], docs: list[Document], seen: set[str]) -> dict[str, Any]:
    """Merge ``data`` over the bundled policy it extends (recursively); problems are raised located."""
    from statemachine import resources
    from statemachine.policy_problems import _at, _near
    from statemachine.yamlsrc import load_file

    name = data.get("extends")
    if not isinstance(name, str):
        return data
    names = resources.bundled_policy_names()
    if name not in names or name in seen:
        why = f"policy {name!r} extends itself" if name in seen else f"unknown bundled policy {name!r}"
        hint = _near(name, names) or ("bundled policies: " + ", ".join(names))
        raise PolicyError([_at(docs[-1], ("extends",), why, hint)])
    base_doc = load_file(resources.bundled_policy(name), f"<bundled>/policies/{name}.yaml")
    docs.append(base_doc)
    base = base_doc.data if isinstance(base_doc.data, dict) else {}
    base = _resolve_extends(base, docs, seen | {name})
    merged = merge(base, {k: v for k, v in data.items() if k != "extends"})
    merged["extends"] = name
    return dict(merged)


def check(
    data: dict[str, Any], docs: list[Document], catalog: Catalog | None = None, written: list[Problem] | None = None
) -> Policy:
    """Check the merged ``data``; ``written``: the problems of the file as written (policy-file schema), reported
    where the merged checks found nothing at the same place."""
    from statemachine.policy_problems import schema_problems, semantic_problems
    from statemachine.settings import build

    problems = schema_problems(data, docs)
    problems += semantic_problems(data, docs, catalog)
    if problems or written:
        raise PolicyError(_combined(problems, written or [], docs))
    policy = Policy(data=data, files=[d.file for d in docs], config=build(data, bundled_default()))
    policy.transitions = parse_transitions(data)
    return policy


def _combined(merged: list[Problem], written: list[Problem], docs: list[Document]) -> list[Problem]:
    """Every problem once, in file order. The policy-file schema is the merged one relaxed, so a problem it finds at a
    place the merged checks also report is the same problem (said once, as the merged checks say it)."""
    unique = {(p.file, p.line, p.column, p.path, p.message): p for p in merged}
    places = {(p.file, p.line, p.column) for p in merged}
    for p in written:
        if (p.file, p.line, p.column) not in places:
            unique.setdefault((p.file, p.line, p.column, p.path, p.message), p)
    return sorted(unique.values(), key=lambda p: (p.file != docs[0].file, p.file, p.line, p.column, p.message))


_DEFAULT: dict[str, Any] = {}  # "data": bundled_default(); "digest": of the bytes it was read from


def _seed_default(docs: list[Document]) -> None:
    """Keep the bundled default policy when one of ``docs`` is it (linting it, or `extends: default`): parsed once."""
    from statemachine import resources

    if "data" in _DEFAULT:
        return
    default = resources.bundled_policy("default")
    for doc in docs:
        if doc.path is not None and doc.path == default and isinstance(doc.data, dict):
            _DEFAULT["data"] = copy.deepcopy(doc.data)
            _DEFAULT["digest"] = doc.digest
            return


def bundled_default() -> dict[str, Any]:
    """policies/default.yaml, as shipped: where every setting's default comes from (read once per process)."""
    from statemachine import resources
    from statemachine.yamlsrc import load_file

    if "data" not in _DEFAULT:
        doc = load_file(resources.bundled_policy("default"), "<bundled>/policies/default.yaml")
        _DEFAULT["data"] = doc.data if isinstance(doc.data, dict) else {}
        _DEFAULT["digest"] = doc.digest
    data: dict[str, Any] = _DEFAULT["data"]
    return data


# beyond the schema -----------------------------------------------------------------------


def parse_transitions(data: dict[str, Any]) -> list[Transition]:
    from statemachine.policy_problems import _entries, _sources

    out = []
    for i, t in enumerate(data["lifecycle"]["transitions"]):
        base = ("lifecycle", "transitions", i)
        guards = tuple(
            GuardSpec(n, p, neg, path) for n, p, neg, path in _entries(t.get("guards", []), True, base + ("guards",))
        )
        actions = tuple(
            ActionSpec(n, p, path) for n, p, _neg, path in _entries(t.get("actions", []), False, base + ("actions",))
        )
        out.append(
            Transition(
                i,
                t["trigger"],
                tuple(_sources(t["source"])),
                t["dest"],
                guards,
                actions,
                bool(t.get("human", False)),
                str(t.get("description", "")),
            )
        )
    return out
