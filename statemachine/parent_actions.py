"""The effects of a parent run (agent:plan-auto), by their old address: they live in statemachine/actions/parent.py.

The registry maps policy names to ``parent_actions.NAME``; this module re-exports each of them."""

from __future__ import annotations

from statemachine.actions.parent import (
    hand_over_children,
    integrate,
    post_plan,
    run_planner,
    run_wave,
    start_integration,
    sync_children,
)

__all__ = [
    "hand_over_children",
    "integrate",
    "post_plan",
    "run_planner",
    "run_wave",
    "start_integration",
    "sync_children",
]
