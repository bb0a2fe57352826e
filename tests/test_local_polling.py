"""The local tracker's poll reads what changed since its watermark (statemachine/adapters/local.py changes_since):
a change in the same second as the last answer, or written by another process, is never missed, and an idle poll is
answered unchanged. Real SQLite (WAL), two trackers over one database as two processes would be."""

from __future__ import annotations

from pathlib import Path

from statemachine.adapters.local import LocalTracker
from statemachine.store import Store


def test_a_change_in_the_same_second_or_by_another_process_is_seen_and_an_idle_poll_is_unchanged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "orch.db"
    daemon, other = LocalTracker(Store(db)), LocalTracker(Store(db))
    first = daemon.create_issue("one", "", ["agent:auto"]).number
    answer = daemon.changes_since(None, None)
    assert answer.modified and first in [i.number for i in answer.issues]
    since = answer.newest
    quiet = daemon.changes_since(since, answer.etag)
    for _ in range(3):  # nothing was written: unchanged, whatever the clock says
        quiet = daemon.changes_since(since, quiet.etag)
        assert not quiet.modified
    # within the same second as the last answer, by another process: a new label on the same issue
    other.add_labels(first, ["agent:running"])
    moved = daemon.changes_since(since, quiet.etag)
    assert moved.modified and [i.labels for i in moved.issues if i.number == first] == [("agent:auto", "agent:running")]
    # and a new issue, by the other process, seen by the next poll
    second = other.create_issue("two", "", ["agent:auto"]).number
    again = daemon.changes_since(since, moved.etag)
    assert again.modified and second in [i.number for i in again.issues]
    assert not daemon.changes_since(since, again.etag).modified
