"""The daemon's poll: the open issues carrying an authorizing label, read by what changed since the last poll.

The first poll of a tracker (or one whose cursor is missing, too old, or cannot be trusted) lists the labelled issues
in full; the tracker's own time is the newest ``updated_at`` it listed (each issue was updated before it was listed),
or, when nothing is labelled, what one read of the latest change says (``changes_since(None)``). Every later poll is one conditional read of what changed since then (``Tracker.changes_since``): a
304 when nothing did. An issue that changed is updated in the view (added when it is open and labelled, dropped
otherwise). ``since`` is the newest ``updated_at`` the tracker reported minus ``OVERLAP_SECONDS``: the tracker's clock,
never this machine's, and a window that overlaps the last one (what is seen twice is recognised by its
``updated_at``).

Feedback on a pull request (a review, an inline comment) moves the pull request, not its issue, so while issues rest
in review the open pull requests are watched too (``Tracker.pull_activity``). A tracker with an activity feed
(``Tracker.activity``: GitHub's events, one conditional read that moves on any issue, label, comment, pull request or
review) keeps that watch at one request per idle poll: each poll makes exactly one conditional read, the first of

1. the issue list, when it has not been read for ``BACKSTOP_SECONDS``; then the open pull requests, likewise;
2. the feed, when the tracker's own pacing allows (``Activity.wait``, GitHub's X-Poll-Interval, 60 s); when it moved
   with anything that matters (not only stars, forks or pushes), the issue list and the pull requests are read in
   the same poll;
3. else the issue list, as when nothing rests in review.

So a change to an issue is seen within one poll interval, or two when a feed read took its turn and the feed lags; a
review within the feed's pacing and lag, never later than ``BACKSTOP_SECONDS`` (GitHub says an event can take from
30 s to 6 h to appear in the feed: the feed only decides when to look sooner). A tracker without a feed (the local
one, whose reads are local queries) reads the issues and the pull requests on every poll.

What a poll saw is kept in the store (``poll_cursor``), so a fresh process (``orch daemon --once``) starts from it. It
is saved only after the daemon acted on the poll (``Poller.done``), with the review checks that could not be made;
a crash in between repeats the poll from the saved cursor. Written only by orch processes of this clone, in the
clone's own state database, like the journal beside it.

A runner whose state does not outlive it (a GitHub Actions job) can carry the cursor in a file instead
(``orch daemon --poll-cursor FILE``, the workflow keeps it in the Actions cache): read when the clone's state holds no
cursor for this tracker, written after each poll the daemon acted on that changed it. The file is untrusted input:
whoever can write the cache (any workflow run on the default branch) can write it. It is read only when it is a regular
file of at most ``limits.POLL_CURSOR`` bytes that passes schemas/poll-cursor.schema.json and names this tracker and labels;
anything else is ignored (the poll lists everything, as on a first run). What a forged file can do is bounded: it
decides which issues the daemon looks at, never what a run does (every ``orch run`` reads its issue, who labelled it
and their permission afresh), and a cursor that hides changes is dropped by the full listing every ``RESYNC_SECONDS``
of this machine's clock (one saved in the future is not trusted at all).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from statemachine.errors import OrchError
from statemachine.model import Issue
from statemachine.ports import Changes, Tracker
from statemachine.store import Store

OVERLAP_SECONDS = 120  # each window starts this long before the newest change seen (late writes, same-second ones)
FEED_RETRY_SECONDS = 60  # a feed read that failed is tried again this long after
BACKSTOP_SECONDS = 1800  # while the activity feed watches, each list is still read at least this often
RESYNC_SECONDS = 6 * 3600  # list everything again this often: an issue deleted or transferred, or a label deleted
# from the repository, does not move any updated_at
VERSION = 1
CARRY_FORMAT = 1


@dataclass(frozen=True)
class Poll:
    issues: list[Issue]  # the open issues carrying an authorizing label, by number
    recheck: frozenset[int] | None  # issues or pull requests that changed (None: look at every one)
    full: bool  # the labelled issues were listed in full


@dataclass
class Cursor:
    since: str | None = None
    etag: str | None = None
    newest: str = ""
    view: dict[int, Issue] = field(default_factory=dict)
    seen: dict[int, str] = field(default_factory=dict)  # number -> "updated_at digest" already taken into account
    pulls_etag: str | None = None
    pulls: dict[int, str] = field(default_factory=dict)  # pull request -> updated_at already looked at
    recheck: list[int] = field(default_factory=list)  # issues whose review check is still to make
    synced_at: float = 0.0  # this machine's time of the last full listing (only for RESYNC_SECONDS)
    feed_etag: str | None = None  # the activity feed's last answer
    feed_last: str | None = None  # the newest feed entry seen
    issues_at: float = 0.0  # this machine's time of the last read of the issue list (only for BACKSTOP_SECONDS)
    pulls_at: float = 0.0  # ... and of the open pull requests

    def dump(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "since": self.since,
            "etag": self.etag,
            "newest": self.newest,
            "view": [_issue_dict(i) for i in self.view.values()],
            "seen": {str(k): v for k, v in self.seen.items()},
            "pulls_etag": self.pulls_etag,
            "pulls": {str(k): v for k, v in self.pulls.items()},
            "recheck": sorted(self.recheck),
            "synced_at": self.synced_at,
            "feed_etag": self.feed_etag,
            "feed_last": self.feed_last,
            "issues_at": self.issues_at,
            "pulls_at": self.pulls_at,
        }

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Cursor | None:
        if not data or data.get("version") != VERSION:
            return None
        try:
            view = [_issue_of(d) for d in data.get("view") or []]
            return cls(
                since=data.get("since") or None,
                etag=data.get("etag") or None,
                newest=str(data.get("newest") or ""),
                view={i.number: i for i in view},
                seen={int(k): str(v) for k, v in (data.get("seen") or {}).items()},
                pulls_etag=data.get("pulls_etag") or None,
                pulls={int(k): str(v) for k, v in (data.get("pulls") or {}).items()},
                recheck=[int(n) for n in data.get("recheck") or []],
                synced_at=float(data.get("synced_at") or 0.0),
                feed_etag=data.get("feed_etag") or None,
                feed_last=data.get("feed_last") or None,
                issues_at=float(data.get("issues_at") or 0.0),
                pulls_at=float(data.get("pulls_at") or 0.0),
            )
        except (TypeError, ValueError, KeyError):
            return None  # unreadable: list everything again


class Poller:
    """Polls one tracker for the issues carrying ``labels``; keeps its cursor in ``store`` under ``key``."""

    def __init__(
        self,
        tracker: Tracker,
        store: Store,
        key: str,
        labels: Iterable[str],
        clock: Callable[[], float] = time.time,
        carry: Path | None = None,
    ) -> None:
        self.tracker, self.store, self.key = tracker, store, key
        self.labels = list(labels)
        self.clock = clock
        self.carry = carry  # the file a runner without lasting state carries its cursor in
        self.carry_current = False  # the carried file says what the cursor says (nothing to write while idle)
        self.notes: list[str] = []  # what the daemon should log about the carried file (taken by the daemon)
        self.cursor: Cursor | None = None
        self.loaded = False
        self.pending: Cursor | None = None
        self.dirty = True  # the pending cursor differs from the saved one by more than its review checks
        self.feed = tracker.capabilities.activity_feed  # the tracker has an activity feed
        self.feed_at: float | None = None  # time.monotonic() of the last read of the feed (its pacing)
        self.feed_wait = 0.0  # the shortest time the tracker allows between two reads of the feed
        self.failures: list[str] = []  # reads that failed without failing the poll (taken by the daemon)

    def poll(self, resting: Callable[[Issue], bool] = lambda _i: False) -> Poll:
        """One poll. While an issue of the view is ``resting`` in review, the open pull requests are watched too."""
        if not self.loaded:
            data = self.store.poll_cursor(self.key)
            if self.carry is not None:
                if data is None:
                    data, why = read_carry(self.carry, self.key)
                    self.carry_current = data is not None
                else:
                    why = "not read: this clone's state has its own cursor"
                self.notes.append(f"carried poll cursor {self.carry}: {why}")
            self.cursor, self.loaded = Cursor.load(data), True
        cur = self.cursor
        if cur is None or not 0 <= self.clock() - cur.synced_at <= RESYNC_SECONDS:
            return self._full(resting)
        new = replace(cur, view=dict(cur.view), seen=dict(cur.seen), pulls=dict(cur.pulls), recheck=list(cur.recheck))
        watching = self.feed and any(resting(i) for i in cur.view.values())  # (a query per issue: only when needed)
        read_issues, read_pulls, backstop = self._plan(new, watching)
        modified = False
        if read_issues:
            changes = self.tracker.changes_since(cur.since, cur.etag)
            if changes.modified and not changes.complete:
                return self._full(resting)  # more changed than one read returns: list everything
            new.etag, new.issues_at, modified = changes.etag, self.clock(), changes.modified
        touched: set[int] = set(cur.recheck)
        if modified:
            touched |= self._apply(new, changes)
        if read_pulls or (not watching and any(resting(i) for i in new.view.values())):
            # without a feed: every poll; with one: an issue came to rest in this poll (the state to watch from)
            touched |= self._pull_changes(new)
        self.pending = new
        self.dirty = (
            modified
            or backstop
            or (new.pulls_etag, new.feed_etag, new.feed_last) != (cur.pulls_etag, cur.feed_etag, cur.feed_last)
        )
        return Poll(sorted(new.view.values(), key=lambda i: i.number), frozenset(touched), False)

    def _plan(self, new: Cursor, watching: bool) -> tuple[bool, bool, bool]:
        """Which lists this poll reads: (issues, pull requests, a backstop read). While issues rest in review and
        the tracker has a feed, exactly one conditional read is made unless the feed moved (module docstring)."""
        if not watching:
            return True, False, False
        now = self.clock()
        if not 0 <= now - new.issues_at < BACKSTOP_SECONDS:
            return True, False, True
        if not 0 <= now - new.pulls_at < BACKSTOP_SECONDS:
            return False, True, True
        if self.feed_at is not None and time.monotonic() - self.feed_at < self.feed_wait:
            return True, False, False
        try:
            act = self.tracker.activity(new.feed_etag, new.feed_last)
        except OrchError as exc:  # (after the transport's retries) both lists, as without a feed; the feed again later
            self.feed_at, self.feed_wait = time.monotonic(), FEED_RETRY_SECONDS
            self.failures.append(f"the activity feed could not be read, the lists were: {exc.message}")
            return True, True, False
        if act is None:  # the tracker says it has a feed but gave none: both lists, this poll
            return True, True, False
        self.feed_at, self.feed_wait = time.monotonic(), act.wait
        new.feed_etag, new.feed_last = act.etag, act.last
        moved = act.modified and act.relevant
        return moved, moved, False

    def done(self, recheck: Iterable[int]) -> None:
        """The daemon acted on the last poll: keep its cursor, with the review checks still to make."""
        if self.pending is None:
            return
        self.pending.recheck = sorted(set(recheck))
        unchanged = not self.dirty and self.cursor is not None and self.cursor.recheck == self.pending.recheck
        self.cursor, self.pending = self.pending, None
        if not unchanged:  # an idle poll writes nothing: the saved cursor already says the same
            self.store.save_poll_cursor(self.key, self.cursor.dump())
        if self.carry is not None and not (unchanged and self.carry_current):
            try:
                write_carry(self.carry, self.key, self.cursor.dump())
                self.carry_current = True
            except OSError as exc:
                self.notes.append(f"carried poll cursor {self.carry}: not written ({exc.strerror})")

    def _full(self, resting: Callable[[Issue], bool]) -> Poll:
        seen: dict[int, Issue] = {}
        for label in self.labels:
            for issue in self.tracker.list_issues(label=label, state="open"):
                seen.setdefault(issue.number, issue)
        if seen:  # the tracker's own time, from what it listed: each was updated before it was listed
            newest = max(i.updated_at for i in seen.values())
            probe = Changes(True, tuple(seen.values()), (), None, newest, True)
        else:  # nothing labelled: one read of what changed last tells the tracker's time
            probe = self.tracker.changes_since(None, None)
        newest = probe.newest
        new = Cursor(_minus(newest, OVERLAP_SECONDS), None, newest, seen, {}, synced_at=self.clock())
        new.issues_at = new.synced_at
        if self.cursor is not None:  # the feed's place still holds: whatever happened since shows as a change
            new.feed_etag, new.feed_last = self.cursor.feed_etag, self.cursor.feed_last
        if new.since is not None:
            new.seen = {
                i.number: _mark(i.updated_at, i.state, i.labels, i.title, i.body)
                for i in probe.issues
                if i.updated_at >= new.since
            }
            new.seen.update({n: _mark(t) for n, t in probe.pulls if t >= new.since})
        if any(resting(i) for i in seen.values()):
            self._pull_changes(new)
        self.pending, self.dirty = new, True
        return Poll(sorted(seen.values(), key=lambda i: i.number), None, True)

    def _apply(self, new: Cursor, changes: Changes) -> set[int]:
        """Take the changed issues and pull requests into ``new``; the numbers that changed since they were seen.

        An item seen before with the same content is not a change (the windows overlap), except in the newest second
        seen: times have one-second resolution, so a second change within that second looks the same."""
        wanted = {label.lower() for label in self.labels}
        boundary = new.newest
        touched: set[int] = set()
        for issue in changes.issues:
            mark = _mark(issue.updated_at, issue.state, issue.labels, issue.title, issue.body)
            if new.seen.get(issue.number) != mark or issue.updated_at >= boundary:
                touched.add(issue.number)
            new.seen[issue.number] = mark
            if issue.is_open and wanted & {x.lower() for x in issue.labels}:
                new.view[issue.number] = issue
            else:
                new.view.pop(issue.number, None)
        for number, updated in changes.pulls:
            mark = _mark(updated)
            if new.seen.get(number) != mark or updated >= boundary:
                touched.add(number)
            new.seen[number] = mark
        if changes.newest > new.newest:
            new.newest = changes.newest
        since = _minus(new.newest, OVERLAP_SECONDS)
        if since is not None and since != new.since:
            new.since = since
            new.seen = {n: m for n, m in new.seen.items() if m.split(" ", 1)[0] >= since}
        return touched

    def _pull_changes(self, new: Cursor) -> set[int]:
        """The pull requests whose activity moved since they were last looked at."""
        activity = self.tracker.pull_activity(new.pulls_etag)
        new.pulls_etag, new.pulls_at = activity.etag, self.clock()
        if not activity.modified:
            return set()
        now = dict(activity.pulls)
        touched = {n for n, t in now.items() if new.pulls.get(n) != t}
        if activity.complete:  # a pull request no longer open changed too (closed, merged)
            touched |= {n for n in new.pulls if n not in now}
            new.pulls = now
        else:
            new.pulls.update(now)
        return touched


def read_carry(path: Path, key: str) -> tuple[dict[str, Any] | None, str]:
    """A carried cursor, when ``path`` holds one for ``key`` that passes its schema; else None. Also what became of it
    ("loaded", or why it was not), for the daemon's log. Read as any untrusted JSON file is (reports.load_report)."""
    from statemachine import limits
    from statemachine.reports import load_report

    if not path.exists() and not path.is_symlink():
        return None, "none yet: the labelled issues are listed in full"
    data, error = load_report(path, "poll-cursor", "carried poll cursor", limits.POLL_CURSOR)
    if data is None:
        return None, f"ignored: {error}"
    if data["key"] != key:
        return None, "ignored: it belongs to another tracker or other labels"
    return data["cursor"], "loaded"


def write_carry(path: Path, key: str, cursor: dict[str, Any]) -> None:
    """Replace ``path`` with ``cursor`` at once (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"orch_poll_cursor": CARRY_FORMAT, "key": key, "cursor": cursor}, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write failed (a full disk)


def _mark(updated_at: str, *content: Any) -> str:
    """What an item looked like: its time, then a digest of what the daemon reads of it."""
    digest = hashlib.sha256(json.dumps(content, default=list).encode()).hexdigest()[:16] if content else ""
    return f"{updated_at} {digest}"


def _minus(stamp: str, seconds: int) -> str | None:
    """An ISO time (``2026-01-02T03:04:05Z``) ``seconds`` earlier, in the same form; None when it is not one."""
    try:
        t = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t - seconds))


def _issue_dict(i: Issue) -> dict[str, Any]:
    return {
        "number": i.number,
        "title": i.title,
        "body": i.body,
        "state": i.state,
        "labels": list(i.labels),
        "author": i.author,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
    }


def _issue_of(d: dict[str, Any]) -> Issue:
    return Issue(
        int(d["number"]),
        str(d["title"]),
        str(d["body"]),
        str(d["state"]),
        tuple(str(x) for x in d["labels"]),
        author=str(d.get("author") or ""),
        created_at=str(d.get("created_at") or ""),
        updated_at=str(d.get("updated_at") or ""),
    )
