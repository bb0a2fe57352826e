"""The guard and action names a policy may use, each with the JSON Schema of its parameters: what the policy loader
checks a lifecycle against (unknown names, bad parameters), without knowing the functions behind the names.

statemachine/policy.py takes a Catalog; ``builtin()`` is orch's own, read from statemachine/registry.py (which maps
each name to its function and schema). Loading a policy thus needs no import of the registry by the loader itself,
and a caller may check a policy against another catalog."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Catalog:
    guards: Mapping[str, Mapping[str, Any]]  # name -> the JSON Schema of its parameters
    actions: Mapping[str, Mapping[str, Any]]


def builtin() -> Catalog:
    """The guards and actions orch knows (statemachine/registry.py)."""
    from statemachine import registry

    return Catalog(
        guards={name: e.params for name, e in registry.GUARDS.items()},
        actions={name: e.params for name, e in registry.ACTIONS.items()},
    )
