"""The poll's schedule while issues rest in review on a tracker with an activity feed (statemachine/polling.py), as a
property over any sequence of polls: the pure core, over an in-process tracker that counts reads (the same schedule on
the GitHub emulator is tests/test_github_polling.py).

Whatever the clock does between polls, whatever the feed answers (unchanged, lagging, moved by a star or by a
review):
- a poll the feed calls quiet reads exactly one list or the feed: one request;
- a list unread for ``BACKSTOP_SECONDS`` is read by the poll that finds it so, or (when both are) by the next one;
- a review the feed shows is seen (its pull request is to be rechecked) by the poll that reads the feed;
- the feed is never read sooner than the tracker's pacing allows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.model import Issue
from statemachine.polling import BACKSTOP_SECONDS, Poller
from statemachine.ports import Activity, Capabilities, Changes
from statemachine.store import Store

RESTING = Issue(1, "resting", "", "open", ("agent:auto", "agent:review"), updated_at="2026-11-30T08:00:00Z")
PULL = 2


@dataclass
class FeedTracker:
    """Issue 1 rests in review; pull request 2 is its pull request. Counts every read."""

    capabilities = Capabilities(fleet=False, remote_branches=False, label_list=False, activity_feed=True)
    wait: float = 0.0
    reads: list[str] = field(default_factory=list)
    feed_version: int = 0  # moves with every entry the feed shows
    feed_relevant: bool = True  # the newest entries matter to the daemon (not only a star)
    pull_version: int = 0  # moves with feedback on the pull request

    def list_issues(self, label: str | None = None, state: str = "open") -> list[Issue]:
        self.reads.append("list")
        return [RESTING] if label == "agent:auto" else []

    def changes_since(self, since: str | None, etag: str | None) -> Changes:
        self.reads.append("issues")
        return Changes(etag != "i", etag="i", newest="2026-11-30T08:00:00Z")

    def pull_activity(self, etag: str | None) -> Changes:
        self.reads.append("pulls")
        now = f"p{self.pull_version}"
        if etag == now:
            return Changes(False, etag=etag)
        return Changes(True, (), ((PULL, f"2026-11-30T09:{self.pull_version:02d}:00Z"),), now, "", True)

    def activity(self, etag: str | None, last: str | None) -> Activity | None:
        self.reads.append("feed")
        now = f"f{self.feed_version}"
        if etag == now:
            return Activity(False, etag, False, self.wait, last)
        return Activity(True, now, self.feed_relevant, self.wait, str(self.feed_version))


step = st.one_of(
    st.tuples(st.just("wait"), st.floats(min_value=0, max_value=700)),
    st.tuples(st.just("star"), st.just(0.0)),  # the feed moves with nothing that matters
    st.tuples(st.just("review-shown"), st.just(0.0)),  # feedback, and the feed shows it
    st.tuples(st.just("review-lagging"), st.just(0.0)),  # feedback the feed does not show yet
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=40), wait=st.sampled_from([0.0, 60.0]))
def test_every_quiet_poll_is_one_read_and_no_list_waits_past_the_backstop(
    tmp_path_factory: object, steps: list[tuple[str, float]], wait: float
) -> None:
    root = Path(tmp_path_factory.mktemp("sched"))  # type: ignore[attr-defined]
    tracker = FeedTracker(wait=wait)
    now = [1_000_000.0]
    p = Poller(tracker, Store(root / "orch.db"), "k", ["agent:auto"], clock=lambda: now[0])  # type: ignore[arg-type]
    resting = lambda i: "agent:review" in i.labels  # noqa: E731
    for _ in range(3):  # the full listing, then the first reads of the feed and the lists
        p.poll(resting)
        p.done(())
    last_read = {"issues": now[0], "pulls": now[0]}
    overdue = {"issues": 0, "pulls": 0}  # polls that found the list due and did not read it
    feed_at = time.monotonic()
    for kind, seconds in steps:
        if kind == "wait":
            now[0] += seconds
            continue
        if kind == "star":
            tracker.feed_version, tracker.feed_relevant = tracker.feed_version + 1, False
        elif kind == "review-shown":
            tracker.feed_version, tracker.feed_relevant = tracker.feed_version + 1, True
            tracker.pull_version += 1
        else:
            tracker.pull_version += 1
        quiet = kind in ("review-lagging",)
        tracker.reads.clear()
        due = {name: now[0] - at >= BACKSTOP_SECONDS for name, at in last_read.items()}
        feed_allowed = wait == 0.0 or time.monotonic() - feed_at >= wait
        poll = p.poll(resting)
        p.done(())
        reads = list(tracker.reads)
        if "feed" in reads:
            assert feed_allowed, "the feed was read sooner than the tracker's pacing allows"
            feed_at = time.monotonic()
        if quiet or reads[:1] != ["feed"]:
            assert len(reads) == 1, reads  # nothing the feed shows: one read
        if kind == "review-shown" and reads[:1] == ["feed"]:
            assert reads == ["feed", "issues", "pulls"] and PULL in (poll.recheck or ())
        if kind == "star" and reads[:1] == ["feed"]:
            assert reads == ["feed"]
        for name in ("issues", "pulls"):
            if name in reads:
                last_read[name], overdue[name] = now[0], 0
            elif due[name]:
                overdue[name] += 1
                assert overdue[name] == 1 and due["issues"] and due["pulls"], (name, reads, due)
