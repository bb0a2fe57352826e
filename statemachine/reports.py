"""Reading a report an agent wrote (completion, review, proof, plan): one loader, one set of messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_report(path: Path, schema_name: str, noun: str = "report") -> tuple[dict[str, Any] | None, str | None]:
    """The parsed report, or why it is missing or malformed (the reason names ``noun``, the file and the schema path)."""
    import jsonschema

    from statemachine import resources

    if not path.exists() and not path.is_symlink():
        return None, f"no {noun}: the agent did not write {path.name}"
    if path.is_symlink() or not path.is_file():
        return None, f"the {noun} {path.name} is not a regular file"
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"the {noun} is not valid JSON: {exc}"
    validator = jsonschema.Draft202012Validator(resources.schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        return None, f"the {noun} does not match schemas/{schema_name}.schema.json at {where}: {first.message}"
    return data, None
