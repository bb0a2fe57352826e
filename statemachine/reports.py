"""Reading a report an agent wrote (completion, review, proof, plan): one loader, one set of messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from statemachine import limits


def load_report(
    path: Path, schema_name: str, noun: str = "report", cap: limits.Cap = limits.REPORT
) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed report, or why it is missing or malformed (the reason names ``noun``, the file and the schema path).
    Also the loader of other untrusted JSON files orch reads against a bundled schema (the carried poll cursor), each
    under its own ``cap``."""
    import jsonschema

    from statemachine import resources

    if not path.exists() and not path.is_symlink():
        return None, f"no {noun}: the agent did not write {path.name}"
    if path.is_symlink() or not path.is_file():
        return None, f"the {noun} {path.name} is not a regular file"
    try:  # the size is checked before anything is read: the agent may have written gigabytes, or a sparse file
        raw = limits.read_capped(path, cap)
    except limits.TooLarge as exc:
        return None, limits.over_cap(f"the {schema_name.replace('-', ' ')}", exc.size, cap)
    except limits.NotRegular:
        return None, f"the {noun} {path.name} is not a regular file"
    except OSError as exc:
        return None, f"the {noun} {path.name} cannot be read: {exc.strerror or exc}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"the {noun} is not valid JSON: {exc}"
    except RecursionError:
        return None, f"the {noun} is not valid JSON: it nests too deeply"
    validator = jsonschema.Draft202012Validator(resources.schema(schema_name))
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    except RecursionError:
        return None, f"the {noun} does not match schemas/{schema_name}.schema.json: it nests too deeply"
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        return None, f"the {noun} does not match schemas/{schema_name}.schema.json at {where}: {first.message}"
    return data, None
