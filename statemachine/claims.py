"""Claims on the tracker, read from the issue's comments: who holds an issue, and whether that holder still lives.

Pure: every function here judges a list of comments already read. The protocol (docs/github.md "Claims across
machines") in short:

- a claim is a comment by the runner's identity carrying ``<!-- orch:claim run=RUN -->``;
- a run report ``<!-- orch:run=RUN kind=report-... -->`` ends every claim before it;
- a takeover report ``<!-- orch:run=OLD kind=report-abandoned by=NEW -->`` ends the claim of run OLD only: a runner
  posts it when OLD stopped renewing its lease, then claims the issue the usual way (earliest active claim wins);
- while it works, the holder renews its lease: it rewrites the ``<!-- orch:lease renewed=TIME -->`` stamp of its
  claim comment. A claim whose stamp is older than the policy's ``tracker.claim_lease_seconds`` is expired.

Only comments the runner's identity wrote count; anyone else's marker is text.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from statemachine.model import Comment

CLAIM_RE = re.compile(r"<!-- orch:claim run=(\S+) -->")
REPORT_RE = re.compile(r"<!-- orch:run=(\S+) kind=report-(\S+?)(?: by=(\S+))? -->")
LEASE_RE = re.compile(r"<!-- orch:lease renewed=(\S+) -->")
ABANDONED = "abandoned"


def stamp(epoch: float | None = None) -> str:
    """A UTC time as the tracker writes it (``2026-11-29T15:00:00Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch is None else epoch))


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of a ``YYYY-MM-DDTHH:MM:SSZ`` time (fractions and offsets ignored), None if unreadable."""
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except (ValueError, TypeError):
        return None


def lease_marker(epoch: float | None = None) -> str:
    return f"<!-- orch:lease renewed={stamp(epoch)} -->"


def renewed_body(body: str, epoch: float | None = None) -> str:
    """The claim comment's body with its lease stamp set to now (added when it has none)."""
    marker = lease_marker(epoch)
    if LEASE_RE.search(body):
        return LEASE_RE.sub(marker, body, count=1)
    return body + "\n" + marker


def abandon_marker(old_run: str, new_run: str) -> str:
    return f"<!-- orch:run={old_run} kind=report-{ABANDONED} by={new_run} -->"


@dataclass(frozen=True)
class Claim:
    comment: Comment
    run_id: str

    @property
    def renewed_at(self) -> str:
        """When its holder last said it lives: the lease stamp, else when the claim was posted."""
        m = LEASE_RE.search(self.comment.body)
        return m.group(1) if m else self.comment.created_at

    def age(self, now: float) -> float | None:
        at = parse_time(self.renewed_at)
        return None if at is None else max(0.0, now - at)


def active_claims(comments: Iterable[Comment], me: str) -> list[Claim]:
    """The claims no report has ended yet, earliest first (the first is the holder)."""
    active: list[Claim] = []
    for c in comments:
        if c.author != me:
            continue
        for run, kind, _by in REPORT_RE.findall(c.body):
            if kind == ABANDONED:
                active = [a for a in active if a.run_id != run]  # a takeover ends the abandoned run's claim only
            else:
                active = []  # a run's report ends every claim before it
        m = CLAIM_RE.search(c.body)
        if m:
            active.append(Claim(c, m.group(1)))
    return active


def reports_after(comments: Iterable[Comment], me: str, since: str) -> list[tuple[str, str, str | None]]:
    """The run reports (run, kind, by) the identity posted after ``since`` (a tracker time)."""
    out: list[tuple[str, str, str | None]] = []
    for c in comments:
        if c.author == me and since and c.created_at and c.created_at > since:
            out.extend((run, kind, by or None) for run, kind, by in REPORT_RE.findall(c.body))
    return out


def abandoned(comments: Iterable[Comment], me: str, run_id: str) -> str | None:
    """The run that took over from ``run_id`` (from its takeover report), None when nobody did."""
    for c in comments:
        if c.author != me:
            continue
        for run, kind, by in REPORT_RE.findall(c.body):
            if run == run_id and kind == ABANDONED:
                return by or "another runner"
    return None


@dataclass(frozen=True)
class Holding:
    """The issue's claim as seen by one runner at one moment (for the ``claim_expired`` guard and the daemon)."""

    run_id: str | None  # the holder: the earliest active claim's run, None when no claim is active
    comment_id: int | None
    renewed_at: str | None
    age_seconds: float | None
    lease_seconds: float

    @property
    def expired(self) -> bool:
        return self.run_id is not None and self.age_seconds is not None and self.age_seconds > self.lease_seconds

    def as_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "comment_id": self.comment_id,
            "renewed_at": self.renewed_at,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "lease_seconds": self.lease_seconds,
            "expired": self.expired,
        }


def holding(comments: Iterable[Comment], me: str, lease_seconds: float, now: float | None = None) -> Holding:
    claims = active_claims(comments, me)
    if not claims:
        return Holding(None, None, None, None, lease_seconds)
    first = claims[0]
    return Holding(
        first.run_id, first.comment.id, first.renewed_at, first.age(time.time() if now is None else now), lease_seconds
    )
