"""Locates the bundled policies, schemas and prompts, in an installed wheel or in a source tree."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_PKG = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Return the folder holding bundled ``kind`` files (policies, schemas, prompts)."""
    installed = _PKG / "_data" / kind
    if installed.is_dir():
        return installed
    source = _PKG.parent / kind
    if source.is_dir():
        return source
    raise FileNotFoundError(f"orch's bundled {kind}/ folder is missing; reinstall orch")


def bundled_policy(name: str) -> Path:
    return data_dir("policies") / f"{name}.yaml"


def bundled_policy_names() -> list[str]:
    return sorted(p.stem for p in data_dir("policies").glob("*.yaml"))


@cache
def schema(name: str) -> dict[str, Any]:
    """Load a bundled JSON Schema by file stem (``policy``, ``completion-report``)."""
    data: dict[str, Any] = json.loads((data_dir("schemas") / f"{name}.schema.json").read_text())
    return data


def prompt_template(name: str) -> Path:
    return data_dir("prompts") / f"{name}.md"


def policy_checks_digest() -> str:
    """The SHA-256 of what decides whether a policy passes its checks: the merged schema, the registry's names and
    parameter schemas (catalog.py) and the checks beyond the schema (policy_problems.py). A bundled policy's sidecar
    records it, so a sidecar made by another orch than this one is not taken as checked."""
    import hashlib

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in (data_dir("schemas") / "policy.schema.json", here / "catalog.py", here / "policy_problems.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()
