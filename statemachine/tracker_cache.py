"""Reads that one `orch run` does not repeat: the issue, who applied a label, how its text changed since, and a
login's permission, each asked of the tracker once and reused by the run's next steps while it is fresh.

A run's steps follow each other within seconds (claim, start, gates, publication), and each takes a snapshot that
reads the issue and, for its guards, who applied a label. Asking the tracker again each time is what made a
delivery cost twice its floor in requests. Here a read is reused while it is younger than ``fresh_seconds``; the
run's own label edits are applied to the kept issue, so it stays what the tracker holds; an edit of the issue's text
drops it. A step that starts after a long one (an agent that worked for minutes) reads afresh, so a maintainer who
removes the label or closes the issue while the agent works is seen before anything is published.

Only reads about the issue of the run are kept; listings (the daemon's polls, comments, pull requests and reviews)
always go to the tracker. Pure: no I/O of its own; it wraps any Tracker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from statemachine.model import Comment, Issue, TextHistory

FRESH_SECONDS = 30.0


class RunReads:
    """A Tracker that keeps the reads of one run (see the module's docstring); every other call goes through."""

    def __init__(
        self, inner: Any, fresh_seconds: float = FRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.fresh_seconds = fresh_seconds
        self.clock = clock
        self._kept: dict[tuple[Any, ...], tuple[float, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _read(self, key: tuple[Any, ...], fetch: Callable[[], Any]) -> Any:
        now = self.clock()
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self.fresh_seconds:
            return kept[1]
        value = fetch()
        self._kept[key] = (now, value)
        return value

    def _forget(self, number: int) -> None:
        for key in [k for k in self._kept if k[1] == number]:
            del self._kept[key]

    # reads kept ------------------------------------------------------------------------------------------------

    def get_issue(self, number: int, comments: bool = True) -> Issue:
        if not comments:
            with_comments = self._kept.get(("issue", number, True))
            if with_comments is not None and self.clock() - with_comments[0] < self.fresh_seconds:
                kept: Issue = with_comments[1]
                return replace(kept, comments=())
        issue: Issue = self._read(("issue", number, comments), lambda: self.inner.get_issue(number, comments))
        return issue

    def issue_with_history(self, number: int, labels: list[str]) -> tuple[Issue, dict[str, TextHistory]]:
        now = self.clock()
        keys = [("issue", number, False)] + [("text", number, label) for label in labels]
        kept = [self._kept.get(k) for k in keys]
        if all(k is not None and now - k[0] < self.fresh_seconds for k in kept):
            values = [k[1] for k in kept if k is not None]
            return values[0], dict(zip(labels, values[1:], strict=True))
        issue, histories = self.inner.issue_with_history(number, labels)
        self._kept[("issue", number, False)] = (now, issue)
        for label, history in histories.items():
            self._kept[("text", number, label)] = (now, history)
        return issue, histories

    def label_authority(self, number: int, label: str) -> tuple[str | None, str]:
        history = self._kept.get(("text", number, label))
        if ("authority", number, label) not in self._kept and history is not None:
            if self.clock() - history[0] < self.fresh_seconds:  # the text's history said who applied the label
                actor = history[1].labeled_by
                return (actor, self.permission(actor)) if actor else (None, "none")
        found: tuple[str | None, str] = self._read(
            ("authority", number, label), lambda: self.inner.label_authority(number, label)
        )
        return found

    def text_history(self, number: int, label: str) -> TextHistory:
        found: TextHistory = self._read(("text", number, label), lambda: self.inner.text_history(number, label))
        return found

    def permission(self, login: str) -> str:
        found: str = self._read(("permission", login), lambda: self.inner.permission(login))
        return found

    # the run's own writes keep what is kept true ------------------------------------------------------------------

    def _relabel(self, number: int, change: Callable[[tuple[str, ...]], tuple[str, ...]]) -> None:
        for key, (at, issue) in list(self._kept.items()):
            if key[0] == "issue" and key[1] == number:
                self._kept[key] = (at, replace(issue, labels=change(issue.labels)))

    def add_labels(self, number: int, names: list[str]) -> None:
        self.inner.add_labels(number, names)
        self._relabel(number, lambda labels: labels + tuple(n for n in names if n not in labels))
        for name in names:  # who applied it is now this runner: read it again when asked
            self._kept.pop(("authority", number, name), None)

    def remove_labels(self, number: int, names: list[str]) -> None:
        self.inner.remove_labels(number, names)
        self._relabel(number, lambda labels: tuple(n for n in labels if n not in names))

    def set_labels(self, number: int, names: list[str]) -> None:
        self.inner.set_labels(number, names)
        self._relabel(number, lambda _labels: tuple(names))

    def update_issue(self, number: int, title: str | None = None, body: str | None = None) -> Issue:
        self._forget(number)
        return self.inner.update_issue(number, title=title, body=body)  # type: ignore[no-any-return]

    def _comments_changed(self, number: int) -> None:
        for key in [k for k in self._kept if k[0] == "issue" and k[1] == number and k[2]]:
            del self._kept[key]  # the kept comments are no longer what the issue holds

    def post_comment(self, number: int, body: str) -> Comment:
        self._comments_changed(number)
        return self.inner.post_comment(number, body)  # type: ignore[no-any-return]

    def update_comment(self, number: int, comment_id: int, body: str) -> Comment | None:
        self._comments_changed(number)
        return self.inner.update_comment(number, comment_id, body)  # type: ignore[no-any-return]

    def delete_comment(self, number: int, comment_id: int) -> None:
        self._comments_changed(number)
        self.inner.delete_comment(number, comment_id)
