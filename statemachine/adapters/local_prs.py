"""Whether a local draft pull request is open or closed (`orch prs close`).

A pull record itself never changes state: a close (or a reopen) is an event on its issue's timeline, in the
``tracker_events`` table (event ``pull_closed`` or ``pull_reopened``, ``name`` the pull request's number), with who did
it and when; the latest such event decides. A pull request with no such event is open.
"""

from __future__ import annotations

from dataclasses import dataclass

from statemachine.model import PullRequest
from statemachine.store import Store, now

CLOSED, REOPENED = "pull_closed", "pull_reopened"


@dataclass(frozen=True)
class PullState:
    state: str  # "open" or "closed"
    by: str | None = None  # who closed (or reopened) it last
    at: str | None = None  # when


def pull_states(store: Store) -> dict[int, PullState]:
    """Each pull request that was ever closed or reopened, with its state now (the others are open)."""
    states: dict[int, PullState] = {}
    for name, event, actor, at in store.query(
        "SELECT name, event, actor, at FROM tracker_events WHERE event IN (?, ?) ORDER BY id", (CLOSED, REOPENED)
    ):
        if str(name).isdigit():
            states[int(name)] = PullState("closed" if event == CLOSED else "open", str(actor), str(at))
    return states


def state_of(store: Store, number: int) -> PullState:
    return pull_states(store).get(number, PullState("open"))


def set_closed(store: Store, pull: PullRequest, closed: bool, actor: str) -> bool:
    """Close (or reopen) ``pull`` as ``actor``; False when it already was in that state (nothing is written)."""
    if (state_of(store, pull.number).state == "closed") == closed:
        return False
    with store.transaction() as c:
        c.execute(
            "INSERT INTO tracker_events (issue, event, actor, name, at) VALUES (?, ?, ?, ?, ?)",
            (pull.issue, CLOSED if closed else REOPENED, actor, str(pull.number), now()),
        )
    return True
