"""Derives schemas/policy-file.schema.json, the schema of a policy file as written, from schemas/policy.schema.json,
the schema of the merged policy. Regenerate it after changing the merged schema:

    python -m statemachine.policy_schema

(tests/test_policy_file.py fails while the committed file differs from what this derives). The loader itself
validates with file_schema(), derived from orch's own merged schema when first needed, so what orch accepts never
depends on the generated file; `orch setup` copies the generated file into a repository for editors.

A file that `extends` a bundled policy is merged over it key by key (docs/policy.md, the merge rule), so in the file
as written: no key of a mapping is required (the base may set it), and any key of a mapping may be null (null removes
it). Everything else is the merged schema's: the same keys, types, ranges and descriptions, and additionalProperties
stays false, so a mistyped key is still refused. Lists replace what the base holds, so whatever sits inside a list (a
lifecycle transition, a guard) keeps every rule of the merged schema, its required keys included.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FILE_ID = "https://orch.dev/schemas/policy-file.schema.json"
PARTIAL = "partial_"  # the prefix of a $defs entry relaxed for use inside a mapping


def derive(merged: dict[str, Any]) -> dict[str, Any]:
    """The schema of the file as written, from the merged policy's schema."""
    out = copy.deepcopy(merged)
    defs: dict[str, Any] = out.setdefault("$defs", {})
    out["$id"] = FILE_ID
    out["title"] = "orch policy file"
    out["description"] = (
        "A repository's orch policy file (.orch/policy.yaml) as written, before `extends` is merged: every key is "
        "optional and null removes a key. Derived from policy.schema.json (the merged policy) by "
        "statemachine/policy_schema.py; do not edit by hand."
    )
    _relax(out, defs, merged["$defs"])
    return out


def _relax(node: dict[str, Any], defs: dict[str, Any], originals: dict[str, Any]) -> None:
    """Relax, in place, a schema that describes a mapping merged key by key: its own keys become optional and
    nullable, and so, recursively, do those of the mappings it holds (never what is inside a list)."""
    node.pop("required", None)
    props = node.get("properties")
    if isinstance(props, dict):
        for key, sub in props.items():
            props[key] = _nullable(_relaxed(sub, defs, originals))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        node["additionalProperties"] = _nullable(_relaxed(extra, defs, originals))


def _relaxed(sub: dict[str, Any], defs: dict[str, Any], originals: dict[str, Any]) -> dict[str, Any]:
    ref = sub.get("$ref", "")
    if ref.startswith("#/$defs/") and set(sub) <= {"$ref", "description", "title"}:
        name = ref.removeprefix("#/$defs/")
        target = originals[name]
        if "properties" not in target and not isinstance(target.get("additionalProperties"), dict):
            return sub  # not a mapping (a name, a state): nothing to relax
        partial = PARTIAL + name
        if partial not in defs:
            defs[partial] = copy.deepcopy(target)
            _relax(defs[partial], defs, originals)
            _nullable(defs[partial])
        return {**sub, "$ref": f"#/$defs/{partial}"}
    if "properties" in sub or isinstance(sub.get("additionalProperties"), dict):
        _relax(sub, defs, originals)
    return sub


def _nullable(sub: dict[str, Any]) -> dict[str, Any]:
    """``sub``, or null: a key set to null is removed by the merge."""
    if sub.get("$ref", "").startswith("#/$defs/" + PARTIAL):
        return sub  # a relaxed definition allows null itself
    kind = sub.get("type")
    if isinstance(kind, str) and kind != "null":
        sub["type"] = [kind, "null"]
        _allow_null_in_enum(sub)
    elif isinstance(kind, list):
        if "null" not in kind:
            sub["type"] = [*kind, "null"]
        _allow_null_in_enum(sub)
    elif "enum" in sub and "$ref" not in sub and "anyOf" not in sub:
        _allow_null_in_enum(sub)
    elif isinstance(sub.get("anyOf"), list) and "$ref" not in sub:
        if {"type": "null"} not in sub["anyOf"]:
            sub["anyOf"] = [*sub["anyOf"], {"type": "null"}]
    else:  # a $ref, a const
        wrapped = {"anyOf": [sub, {"type": "null"}]}
        if "description" in sub:
            wrapped = {"description": sub.pop("description"), **wrapped}
        return wrapped
    return sub


def _allow_null_in_enum(sub: dict[str, Any]) -> None:
    if isinstance(sub.get("enum"), list) and None not in sub["enum"]:
        sub["enum"] = [*sub["enum"], None]


@cache
def file_schema() -> dict[str, Any]:
    """The schema of the file as written, derived from orch's own merged schema: what the loader validates with (so
    it never depends on the generated file being up to date; a test keeps that file equal to this)."""
    from statemachine import resources

    return derive(resources.schema("policy"))


def render(schema: dict[str, Any]) -> str:
    """The file's text, formatted as the merged schema is."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    from statemachine import resources

    folder: Path = resources.data_dir("schemas")
    merged = json.loads((folder / "policy.schema.json").read_text(encoding="utf-8"))
    target = folder / "policy-file.schema.json"
    target.write_text(render(derive(merged)), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
