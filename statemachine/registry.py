"""The explicit name -> function maps for guards and actions, each with its own parameter schema: the rows of
statemachine/catalog.py (names, schemas, needs) bound to their functions. Checking a policy needs only the catalog;
running one imports this module, and with it the guards' and actions' code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from statemachine import actions, gates, guards, parent_actions, planning
from statemachine.catalog import (
    ACTION_ROWS,
    DESTRUCTIVE_KINDS,
    GUARD_ROWS,
    NEEDS,
    NO_PARAMS,
    ROLE,
    ROLES,
    SECRET_KINDS,
    Row,
    needs,
    params,
)
from statemachine.inspect_candidate import DESTRUCTIVE_PATTERNS, SECRET_PATTERNS

__all__ = [
    "ACTIONS",
    "DESTRUCTIVE_KINDS",
    "GUARDS",
    "NEEDS",
    "NO_PARAMS",
    "PUBLISHING",
    "ROLE",
    "ROLES",
    "SECRET_KINDS",
    "Entry",
    "needs",
    "params",
]

if (tuple(SECRET_PATTERNS), tuple(DESTRUCTIVE_PATTERNS)) != (SECRET_KINDS, DESTRUCTIVE_KINDS):
    raise RuntimeError("catalog.SECRET_KINDS / DESTRUCTIVE_KINDS differ from inspect_candidate's patterns: align them")

_MODULES: dict[str, ModuleType] = {
    "actions": actions,
    "gates": gates,
    "guards": guards,
    "parent_actions": parent_actions,
    "planning": planning,
}


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    params: dict[str, Any]
    summary: str
    needs: frozenset[str] = frozenset()  # of NEEDS: what the snapshot must carry for this entry


def _table(rows: tuple[Row, ...]) -> dict[str, Entry]:
    out = {}
    for row in rows:
        fn = getattr(_MODULES[row.module], row.name)
        if fn.__name__ != row.name:
            raise RuntimeError(f"catalog row {row.module}.{row.name} names {fn.__name__}")
        doc = (fn.__doc__ or "").strip().splitlines()
        out[row.name] = Entry(row.name, fn, row.params, doc[0] if doc else "", row.needs)
    return out


GUARDS: dict[str, Entry] = _table(GUARD_ROWS)
ACTIONS: dict[str, Entry] = _table(ACTION_ROWS)
# The actions with an effect others see (the tracker, the remote): a step that runs one after its run's claim first
# checks that no other runner took the claim over (engine._Runner), so a superseded run never publishes.
PUBLISHING = frozenset(
    {
        "add_labels",
        "remove_labels",
        "relabel",
        "post_comment",
        "push_branch",
        "publish_proof",
        "open_draft_pr",
        "post_report",
        "sync_children",
        "start_integration",
        "post_plan",
        "run_wave",
        "integrate",
        "hand_over_children",
    }
)
