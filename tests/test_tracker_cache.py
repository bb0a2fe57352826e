"""One `orch run` asks the tracker once for what its steps read, keeps it true under its own label edits, and reads
afresh after a long step (statemachine/tracker_cache.py), over the real local tracker."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from statemachine.adapters.local import LocalTracker
from statemachine.store import Store
from statemachine.tracker_cache import RunReads


class Counting:
    """The real tracker, with every call counted by name."""

    def __init__(self, inner: LocalTracker) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _tracker(tmp_path: Path) -> tuple[LocalTracker, Counting, RunReads, Clock]:
    store = Store(tmp_path / "orch.db")
    local = LocalTracker(store)
    counting = Counting(local)
    clock = Clock()
    return local, counting, RunReads(counting, fresh_seconds=30, clock=clock), clock


def test_a_run_reads_the_issue_once_and_keeps_it_true_under_its_own_label_edits(tmp_path: Path) -> None:
    local, counting, reads, clock = _tracker(tmp_path)
    n = local.create_issue("t", "b", ["agent:auto"]).number
    assert reads.get_issue(n).labels == ("agent:auto",)
    reads.add_labels(n, ["agent:running"])
    clock.now += 10
    assert reads.get_issue(n, comments=False).labels == ("agent:auto", "agent:running")  # served from the kept read
    reads.remove_labels(n, ["agent:running"])
    assert reads.get_issue(n).labels == ("agent:auto",)
    assert counting.calls["get_issue"] == 1
    assert local.get_issue(n).labels == ("agent:auto",)  # and it is what the tracker holds


def test_after_a_long_step_the_issue_is_read_afresh_and_someone_elses_change_is_seen(tmp_path: Path) -> None:
    local, counting, reads, clock = _tracker(tmp_path)
    n = local.create_issue("t", "b", ["agent:auto"]).number
    reads.get_issue(n)
    local.remove_labels(n, ["agent:auto"])  # a maintainer, while the agent works
    clock.now += 31
    assert reads.get_issue(n).labels == ()
    assert counting.calls["get_issue"] == 2


def test_the_text_history_answers_who_applied_the_label_and_an_edit_drops_what_was_kept(tmp_path: Path) -> None:
    local, counting, reads, clock = _tracker(tmp_path)
    n = local.create_issue("t", "b", ["agent:auto"]).number
    history = reads.text_history(n, "agent:auto")
    actor, permission = reads.label_authority(n, "agent:auto")
    assert actor == history.labeled_by and permission == local.label_authority(n, "agent:auto")[1]
    assert counting.calls["label_authority"] == 0 and counting.calls["text_history"] == 1
    reads.get_issue(n)
    reads.update_issue(n, body="edited")
    assert reads.get_issue(n).body == "edited" and counting.calls["get_issue"] == 2
    posted = reads.post_comment(n, "hello")
    assert [c.id for c in reads.get_issue(n).comments] == [posted.id]  # the kept comments were dropped, not served
