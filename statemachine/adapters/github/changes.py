"""What changed on GitHub since a poll: the reads behind the Tracker port's ``changes_since`` and ``pull_activity``.

- ``changes_since``: ``GET /repos/{o}/{r}/issues?state=all&sort=updated&direction=desc&since=...``, conditional on the
  ETag of the last answer. Issues and pull requests updated at or after ``since`` (GitHub's own ``updated_at``: labels,
  comments, edits, state changes, pushes), newest first. Without ``since`` only the first page is read: it says what
  time it is on GitHub (the newest ``updated_at``), never this machine's clock.
- ``pull_activity``: ``GET /repos/{o}/{r}/pulls?state=open&sort=updated&direction=desc``, first page, conditional. A
  review or an inline review comment moves a pull request's own ``updated_at`` (the pulls endpoint), which the issues
  endpoint is not documented to reflect, so feedback on a pull request is watched here.

- ``activity``: ``GET /repos/{o}/{r}/events``, first page, conditional: the repository's activity feed (issues, labels,
  comments, pull requests, reviews, review comments, and also stars, forks and pushes). GitHub designed it for polling
  with ETags and says how often it may be read (``X-Poll-Interval``); it also says an event can take from 30 s to 6 h
  to appear, so the daemon never relies on it alone (statemachine/polling.py).

A 304 answers "nothing changed" and GitHub does not count it against the rate limit.
"""

from __future__ import annotations

from typing import Any

from statemachine.adapters.github.failures import _has_next
from statemachine.adapters.github.mapping import _issue
from statemachine.adapters.github.transport import PER_PAGE, GitHubTransport
from statemachine.ports import Activity, Changes

MAX_PAGES = 10  # more changes than this since the last poll: the caller lists everything instead
FEED_WAIT = 60.0  # GitHub's usual X-Poll-Interval for the events feed, when an answer lacks the header
# feed entries that change nothing the daemon reads (issues, labels, comments, pull requests, reviews): any other
# kind, known or not, counts as a change
QUIET_KINDS = frozenset(
    {
        "WatchEvent",
        "ForkEvent",
        "CreateEvent",
        "DeleteEvent",
        "PushEvent",
        "ReleaseEvent",
        "GollumEvent",
        "PublicEvent",
        "CommitCommentEvent",
        "DiscussionEvent",
        "SponsorshipEvent",
    }
)


class ChangeFeed(GitHubTransport):
    """The change reads of the GitHub tracker."""

    def _first_pages(
        self, what: str, op: str, params: dict[str, Any], etag: str | None, pages: int
    ) -> tuple[list[dict[str, Any]] | None, str | None, bool]:
        """Up to ``pages`` pages of a list, the first one conditional on ``etag``: (rows or None when GitHub answered
        304, the first page's ETag, whether the list ended within those pages)."""
        rows: list[dict[str, Any]] = []
        first_etag: str | None = None
        group, name = op.split(".")
        for page in range(1, pages + 1):
            headers = {"If-None-Match": etag} if page == 1 and etag else {}
            resp = self._send(
                what,
                self._op(group, name, headers, **params, per_page=PER_PAGE, page=page),
                allow_304=bool(headers),
            )
            if resp.status_code == 304:
                self.not_modified += 1
                return None, etag, True
            data = self._json(resp) or []
            if page == 1:
                first_etag = resp.headers.get("etag")
            rows.extend(data)
            link = resp.headers.get("link", "")
            if not data or not (_has_next(link) if link else len(data) >= PER_PAGE):
                return rows, first_etag, True
        return rows, first_etag, False

    def changes_since(self, since: str | None, etag: str | None) -> Changes:
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "desc"}
        if since:
            params["since"] = since
        rows, new_etag, ended = self._first_pages(
            f"list what changed in {self.full_name}", "issues.list_for_repo", params, etag, MAX_PAGES if since else 1
        )
        if rows is None:
            return Changes(False, etag=new_etag)
        issues = tuple(_issue(r) for r in rows if r.get("pull_request") is None)
        pulls = tuple((int(r["number"]), str(r.get("updated_at") or "")) for r in rows if r.get("pull_request"))
        newest = max((str(r.get("updated_at") or "") for r in rows), default="")
        return Changes(True, issues, pulls, new_etag, newest, ended)

    def pull_activity(self, etag: str | None) -> Changes:
        rows, new_etag, ended = self._first_pages(
            f"list the open pull requests of {self.full_name}",
            "pulls.list",
            {"state": "open", "sort": "updated", "direction": "desc"},
            etag,
            1,
        )
        if rows is None:
            return Changes(False, etag=new_etag)
        pulls = tuple((int(r["number"]), str(r.get("updated_at") or "")) for r in rows)
        return Changes(True, (), pulls, new_etag, max((t for _n, t in pulls), default=""), ended)

    def activity(self, etag: str | None, last: str | None) -> Activity | None:
        resp = self._send(
            f"read the activity feed of {self.full_name}",
            self._op("activity", "list_repo_events", {"If-None-Match": etag} if etag else {}, per_page=PER_PAGE),
            allow_304=bool(etag),
        )
        wait = _seconds(resp.headers.get("x-poll-interval"))
        if resp.status_code == 304:
            self.not_modified += 1
            return Activity(False, etag, False, wait, last)
        rows = [r for r in self._json(resp) or [] if isinstance(r, dict)]
        ids = [_id(r.get("id")) for r in rows]
        seen = _id(last)
        new = [r for r, i in zip(rows, ids, strict=True) if seen is None or i is None or i > seen]
        # every entry since the last read is on this page when one older entry is, or the feed ends here
        whole = seen is not None and (len(new) < len(rows) or len(rows) < PER_PAGE)
        relevant = not whole or any(str(r.get("type")) not in QUIET_KINDS for r in new)
        newest = max((i for i in ids if i is not None), default=None)
        return Activity(True, resp.headers.get("etag"), relevant, wait, str(newest) if newest is not None else last)


def _id(value: object) -> int | None:
    """An events feed id (a string of digits), as a number to compare; None when it is not one."""
    text = str(value or "")
    return int(text) if text.isdigit() and len(text) <= 30 else None


def _seconds(value: str | None) -> float:
    try:
        wait = float(value) if value is not None else FEED_WAIT
    except ValueError:
        return FEED_WAIT
    return min(max(wait, 0.0), 3600.0) if wait == wait else FEED_WAIT  # NaN: the usual
