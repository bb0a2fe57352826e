"""A run's lease on its claim: renewed while the run works, so that another runner can tell a live run from a dead one.

On a tracker that several runners share (GitHub), a run that holds a claim rewrites the lease stamp of its claim
comment every quarter of ``tracker.claim_lease_seconds`` while one of its steps runs. Each renewal first reads the
comments: when another runner has taken the claim over (its takeover report names this run) or the claim comment is
gone (deleted by a maintainer), the run is superseded and must publish nothing. When renewals keep failing (the
tracker is unreachable) for three quarters of the lease, the run stops on its own before anyone may take it over, and
its step stays pending, to be resumed or superseded later. Protocol: docs/github.md "Claims across machines".
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from statemachine import claims, ports
from statemachine.errors import OrchError, Superseded

log = logging.getLogger("orch")


def lost_reason(tracker: Any, issue: int, run_id: str, comment_id: int) -> tuple[str | None, Any]:
    """Why run ``run_id`` no longer holds its claim (None when it still does), and its claim comment as read."""
    comments = tracker.list_comments(issue)
    by = claims.abandoned(comments, tracker.identity(), run_id)
    if by is not None:
        return f"run {by} took the claim of run {run_id} over after its lease expired", None
    mine = next((c for c in comments if c.id == comment_id), None)
    if mine is None:
        return f"the claim comment of run {run_id} was deleted", None
    return None, mine


def fresh(renewed: float, lease_seconds: float) -> bool:
    """Whether this process wrote the claim's lease stamp (at ``renewed``, its own clock) less than half a lease ago:
    then no other runner, whose clock agrees with ours to well within the lease, can have judged the claim expired."""
    return bool(renewed) and time.time() - renewed < lease_seconds / 2


def fence(tracker: Any, issue: int, claim: dict[str, Any] | None) -> None:
    """Raise Superseded unless the run still holds its claim (checked before a step publishes or resumes, unless the
    lease is fresh)."""
    if not claim or not tracker.capabilities.fleet:
        return
    reason, _ = lost_reason(tracker, issue, str(claim["run_id"]), int(claim["comment"]))
    if reason is not None:
        raise Superseded(
            f"issue #{issue}: {reason}; this runner publishes nothing and lets go",
            "nothing to do: the run that took over owns the issue now",
        )


class Keeper:
    """Renews a claim's lease in a background thread while a step runs (a context manager)."""

    def __init__(self, tracker: Any, issue: int, claim: dict[str, Any], lease_seconds: float) -> None:
        self.tracker, self.issue = tracker, issue
        self.run_id, self.comment_id = str(claim["run_id"]), int(claim["comment"])
        self.lease = float(lease_seconds)
        self.interval = max(0.5, self.lease / 4)
        self.superseded: str | None = None  # why another runner owns the issue now
        self.expired: str | None = None  # why this run stopped itself (renewals failed too long)
        self.renewals = 0
        self.renewed = 0.0  # when this keeper last wrote the stamp (wall clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"orch-lease-{issue}", daemon=True)

    def __enter__(self) -> Keeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def renew(self) -> None:
        reason, mine = lost_reason(self.tracker, self.issue, self.run_id, self.comment_id)
        if (
            reason is None
            and self.tracker.update_comment(self.issue, self.comment_id, claims.renewed_body(mine.body)) is None
        ):
            reason = f"the claim comment of run {self.run_id} was deleted"
        if reason is not None:
            self.superseded = reason
        else:
            self.renewals += 1
            self.renewed = time.time()

    def _loop(self) -> None:
        last_ok = time.time()  # wall clock: a suspended machine wakes up knowing how long it slept
        while not self._stop.wait(self.interval):
            try:
                self.renew()
                if self.superseded is None:
                    last_ok = time.time()
            except OrchError as exc:
                log.warning("issue #%d: could not renew the claim's lease: %s", self.issue, exc.message)
            except Exception as exc:  # noqa: BLE001 - a renewal must never kill the run by itself
                log.warning("issue #%d: could not renew the claim's lease: %s", self.issue, exc)
            if self.superseded is None and time.time() - last_ok > self.lease * 0.75:
                self.expired = (
                    f"the claim's lease could not be renewed for {time.time() - last_ok:.0f} s "
                    f"(lease {self.lease:.0f} s)"
                )
            if self.superseded or self.expired:
                log.warning("issue #%d: %s; stopping the run", self.issue, self.superseded or self.expired)
                ports.CANCEL.set()  # the agent or check running now stops with its whole process group
                return

    def check(self) -> None:
        """At a safe point (between two actions): raise Superseded when another runner took the claim over, or
        KeyboardInterrupt when the lease could not be renewed (the step stays pending, as after SIGTERM)."""
        if self.superseded:
            raise Superseded(
                f"issue #{self.issue}: {self.superseded}; this runner publishes nothing and lets go",
                "nothing to do: the run that took over owns the issue now",
            )
        if self.expired:
            raise KeyboardInterrupt(self.expired)
