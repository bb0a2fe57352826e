"""The embedded local tracker: issues, labels, comments and pull-request records in the state database."""

from __future__ import annotations

import getpass
from typing import Any

from statemachine.adapters import local_prs
from statemachine.errors import NotFoundError, OrchError
from statemachine.model import Comment, Issue, PullRequest, Review, ReviewComment, TextEdit, TextHistory
from statemachine.ports import Activity, Capabilities, Changes
from statemachine.store import Store, now

RUNNER = "orch"  # the local tracker's runner identity: every comment and issue orch writes carries it


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


class LocalTracker:
    """Implements the Tracker port on the store's tracker_* tables."""

    kind = "local"
    # the database is the tracker: one runner (one daemon per clone) sees these issues, and branches stay here
    capabilities = Capabilities(fleet=False, remote_branches=False, label_list=False)

    def __init__(self, store: Store) -> None:
        self.store = store
        self.answered: dict[str, tuple[object, tuple[int, int]]] = {}  # read -> (its answer, the write stamp then)

    def identity(self) -> str:
        """The runner's identity here: a fixed login that orch's own writes carry (people write as themselves)."""
        return RUNNER

    # reads ------------------------------------------------------------------------------

    def get_issue(self, number: int, comments: bool = True) -> Issue:
        rows = self.store.query(
            "SELECT number, title, body, state, author, created_at, updated_at FROM tracker_issues WHERE number=?",
            (number,),
        )
        if not rows:
            raise NotFoundError(
                f"issue #{number} does not exist in the local tracker", "`orch issue list` shows the issues"
            )
        r = rows[0]
        labels = tuple(
            x[0] for x in self.store.query("SELECT name FROM tracker_labels WHERE issue=? ORDER BY name", (number,))
        )
        found = (
            tuple(
                Comment(id=c[0], author=c[1], body=c[2], created_at=c[3])
                for c in self.store.query(
                    "SELECT id, author, body, created_at FROM tracker_comments WHERE issue=? ORDER BY id", (number,)
                )
            )
            if comments
            else ()
        )
        return Issue(
            number=r[0],
            title=r[1],
            body=r[2],
            state=r[3],
            labels=labels,
            comments=found,
            author=r[4],
            created_at=r[5],
            updated_at=r[6],
        )

    def list_comments(self, number: int) -> list[Comment]:
        return list(self.get_issue(number, comments=True).comments)

    def label_authority(self, number: int, label: str) -> tuple[str | None, str]:
        """Who applied ``label`` and their permission; on the local tracker the local user owns everything."""
        if label in self.get_issue(number, comments=False).labels:
            return _user(), "admin"
        return None, "none"

    def issue_with_history(self, number: int, labels: list[str]) -> tuple[Issue, dict[str, TextHistory]]:
        return self.get_issue(number, comments=False), {label: self.text_history(number, label) for label in labels}

    def text_history(self, number: int, label: str) -> TextHistory:
        """Who last applied ``label`` and the last edit of the title and of the body, from the recorded events (a label
        with no recorded event was applied by the local user when the issue was filed)."""
        current = self.get_issue(number, comments=False)
        rows = self.store.query(
            "SELECT id, actor, at FROM tracker_events WHERE issue=? AND event='labeled' AND name=? "
            "ORDER BY id DESC LIMIT 1",
            (number, label),
        )
        label_id, labeled_by, labeled_at = (
            (int(rows[0][0]), str(rows[0][1]), str(rows[0][2]))
            if rows
            else (0, _user() if label in current.labels else None, current.created_at)
        )
        edits = []
        for part in (
            "title",
            "body",
        ):  # every edit: a maintainer's later touch-up does not hide an outsider's before it
            for row_id, actor, at in self.store.query(
                "SELECT id, actor, at FROM tracker_events WHERE issue=? AND "
                "event='edited' AND (name=? OR name='title and body') ORDER BY id",
                (number, part),
            ):
                edits.append(TextEdit(part, str(actor), str(at), int(row_id) > label_id))
        return TextHistory(labeled_by, labeled_at, tuple(edits))

    def permission(self, login: str) -> str:
        """The local user owns the repository; anyone else has the permission recorded for them, else read."""
        rows = self.store.query("SELECT permission FROM tracker_permissions WHERE login=?", (login,))
        if rows:
            return str(rows[0][0])
        return "admin" if login == _user() else "read"

    def set_permission(self, login: str, permission: str) -> None:
        if permission not in ("read", "triage", "write", "maintain", "admin"):
            raise OrchError(f"unknown permission {permission!r}", "use read, triage, write, maintain or admin")
        with self.store.transaction() as c:
            c.execute("INSERT OR REPLACE INTO tracker_permissions VALUES (?, ?)", (login, permission))

    def list_reviews(self, pull: int) -> list[Review]:
        return [
            Review(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]))
            for r in self.store.query(
                "SELECT id, author, state, body, submitted_at FROM tracker_reviews WHERE pull=? ORDER BY id", (pull,)
            )
        ]

    def list_review_comments(self, pull: int) -> list[ReviewComment]:
        return [
            ReviewComment(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], str(r[5]), int(r[6]))
            for r in self.store.query(
                "SELECT id, author, body, path, line, created_at, review FROM tracker_review_comments WHERE pull=? ORDER BY id",
                (pull,),
            )
        ]

    def list_issues(self, label: str | None = None, state: str = "open") -> list[Issue]:
        sql = "SELECT number FROM tracker_issues WHERE (? = 'all' OR state = ?)"
        args: tuple[object, ...] = (state, state)
        if label is not None:
            sql += " AND number IN (SELECT issue FROM tracker_labels WHERE name = ?)"
            args += (label,)
        return [self.get_issue(r[0]) for r in self.store.query(sql + " ORDER BY number", args)]

    def find_comment(self, number: int, marker: str) -> Comment | None:
        rows = self.store.query(
            "SELECT id, author, body, created_at FROM tracker_comments WHERE issue=? AND instr(body, ?) > 0 AND author=? "
            "ORDER BY id LIMIT 1",
            (number, marker, RUNNER),
        )
        return Comment(*rows[0]) if rows else None

    def find_pull(self, marker: str, head: str | None = None) -> PullRequest | None:
        """The pull record with ``marker`` (from ``head`` when given); only orch writes pull records here."""
        rows = self.store.query(
            "SELECT * FROM tracker_pulls WHERE marker=? AND (? IS NULL OR head=?)", (marker, head, head)
        )
        return _pull(rows[0]) if rows else None

    def pulls(self, issue: int | None = None) -> list[PullRequest]:
        if issue is None:
            return [_pull(r) for r in self.store.query("SELECT * FROM tracker_pulls ORDER BY number")]
        return [
            _pull(r) for r in self.store.query("SELECT * FROM tracker_pulls WHERE issue=? ORDER BY number", (issue,))
        ]

    # writes -----------------------------------------------------------------------------

    def create_issue(self, title: str, body: str, labels: list[str], marker: str | None = None) -> Issue:
        if not title.strip():
            raise OrchError("an issue needs a title", "orch issue new 'Fix the parser' --body '...'")
        if marker:  # orch's own issue (a child): found by its marker, and only among the issues orch opened
            rows = self.store.query(
                "SELECT number FROM tracker_issues WHERE instr(body, ?) > 0 AND author=? ORDER BY number LIMIT 1",
                (marker, RUNNER),
            )
            if rows:
                return self.get_issue(int(rows[0][0]))
        with self.store.transaction() as c:
            cur = c.execute(
                "INSERT INTO tracker_issues (title, body, state, author, created_at, updated_at) VALUES (?, ?, 'open', ?, ?, ?)",
                (title, body, RUNNER if marker else _user(), now(), now()),
            )
            number = int(cur.lastrowid or 0)
            for name in labels:
                c.execute("INSERT OR IGNORE INTO tracker_labels VALUES (?, ?)", (number, name))
        return self.get_issue(number)

    def update_issue(
        self, number: int, title: str | None = None, body: str | None = None, editor: str | None = None
    ) -> Issue:
        """Edit the title or body as ``editor`` (the local user by default); who edited what, and when, is recorded."""
        current = self.get_issue(number, comments=False)
        parts = [
            p
            for p, new, old in (("title", title, current.title), ("body", body, current.body))
            if new is not None and new != old
        ]
        if not parts:
            return current
        with self.store.transaction() as c:
            c.execute(
                "UPDATE tracker_issues SET title=?, body=?, updated_at=? WHERE number=?",
                (
                    title if title is not None else current.title,
                    body if body is not None else current.body,
                    now(),
                    number,
                ),
            )
            c.execute(
                "INSERT INTO tracker_events (issue, event, actor, name, at) VALUES (?, 'edited', ?, ?, ?)",
                (number, editor or _user(), " and ".join(parts), now()),
            )
        return self.get_issue(number)

    def submit_review(
        self, pull: int, author: str, state: str, body: str, comments: tuple[tuple[str, int | None, str], ...] = ()
    ) -> Review:
        """Record a review of a local pull request (``orch review``); comments are (path, line, body)."""
        if state not in ("CHANGES_REQUESTED", "COMMENTED", "APPROVED"):
            raise OrchError(f"unknown review state {state!r}", "use CHANGES_REQUESTED, COMMENTED or APPROVED")
        if not self.store.query("SELECT 1 FROM tracker_pulls WHERE number=?", (pull,)):
            raise NotFoundError(
                f"pull request {pull} does not exist in the local tracker",
                "`orch show --issue N` names the run's pull request",
            )
        with self.store.transaction() as c:
            cur = c.execute(
                "INSERT INTO tracker_reviews (pull, author, state, body, submitted_at) VALUES (?, ?, ?, ?, ?)",
                (pull, author, state, body, now()),
            )
            rid = int(cur.lastrowid or 0)
            for path, line, text in comments:
                c.execute(
                    "INSERT INTO tracker_review_comments (review, pull, author, body, path, line, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rid, pull, author, text, path, line, now()),
                )
        return Review(rid, author, state, body, now())

    def set_state(self, number: int, state: str) -> None:
        self.get_issue(number)
        with self.store.transaction() as c:
            c.execute("UPDATE tracker_issues SET state=?, updated_at=? WHERE number=?", (state, now(), number))

    def add_labels(self, number: int, names: list[str], actor: str | None = None) -> None:
        """Add labels as ``actor`` (the local user by default); each new label is recorded as a ``labeled`` event."""
        self.get_issue(number)
        with self.store.transaction() as c:
            for name in names:
                if c.execute("INSERT OR IGNORE INTO tracker_labels VALUES (?, ?)", (number, name)).rowcount:
                    c.execute(
                        "INSERT INTO tracker_events (issue, event, actor, name, at) VALUES (?, 'labeled', ?, ?, ?)",
                        (number, actor or _user(), name, now()),
                    )
            c.execute("UPDATE tracker_issues SET updated_at=? WHERE number=?", (now(), number))

    def remove_labels(self, number: int, names: list[str]) -> None:
        self.get_issue(number)
        with self.store.transaction() as c:
            for name in names:
                c.execute("DELETE FROM tracker_labels WHERE issue=? AND name=?", (number, name))
            c.execute("UPDATE tracker_issues SET updated_at=? WHERE number=?", (now(), number))

    def set_labels(self, number: int, names: list[str]) -> None:
        """All at once (one transaction): a label the issue keeps gets no new event."""
        self.get_issue(number)
        with self.store.transaction() as c:
            current = {r[0] for r in c.execute("SELECT name FROM tracker_labels WHERE issue=?", (number,))}
            for name in current - set(names):
                c.execute("DELETE FROM tracker_labels WHERE issue=? AND name=?", (number, name))
            for name in dict.fromkeys(n for n in names if n not in current):
                c.execute("INSERT INTO tracker_labels VALUES (?, ?)", (number, name))
                c.execute(
                    "INSERT INTO tracker_events (issue, event, actor, name, at) VALUES (?, 'labeled', ?, ?, ?)",
                    (number, _user(), name, now()),
                )
            c.execute("UPDATE tracker_issues SET updated_at=? WHERE number=?", (now(), number))

    def post_comment(self, number: int, body: str, author: str = "orch") -> Comment:
        self.get_issue(number)
        with self.store.transaction() as c:
            cur = c.execute(
                "INSERT INTO tracker_comments (issue, author, body, created_at) VALUES (?, ?, ?, ?)",
                (number, author, body, now()),
            )
            cid = int(cur.lastrowid or 0)
            c.execute("UPDATE tracker_issues SET updated_at=? WHERE number=?", (now(), number))
        return Comment(cid, author, body, now())

    def delete_comment(self, number: int, comment_id: int) -> None:
        with self.store.transaction() as c:
            c.execute("DELETE FROM tracker_comments WHERE id=? AND issue=?", (comment_id, number))

    def push_credential(self) -> tuple[str, str]:
        raise OrchError("the local tracker receives no branches: they stay in this repository")

    def secret(self) -> tuple[str, str] | None:
        return None  # it acts with no credential

    def pull_request_caveat(self) -> str | None:
        return None

    def label_actors(self, labels: list[str]) -> dict[str, dict[int, str]] | None:
        return None  # one read per issue is a local query

    request_count = None  # it sends no request

    def labelled_issues(self, label: str) -> tuple[list[Issue], dict[int, str]] | None:
        return None  # listing and one read per issue are local queries

    def changes_since(self, since: str | None, etag: str | None) -> Changes:
        """The issues updated at or after ``since`` (every write here moves ``updated_at``), newest first, and the pull
        requests active since. ``etag`` carries a watermark: the newest time the last answer held. Writes here commit
        one at a time (``BEGIN IMMEDIATE``) and stamp this machine's time inside the transaction, so nothing lands
        before a time already read; the read starts at the watermark (same second included) instead of ``since``, an
        indexed read of what changed, not of the overlap window. The rest of the etag is a digest of the rows at the
        watermark and the newest comment and review ids: a write within the same second still changes it."""
        stamp = self.store.write_stamp()
        if etag is not None and self.answered.get("changes") == ((since, etag), stamp):
            return Changes(False, etag=etag)  # nothing at all was written since this answer: O(1)
        mark, old = _watermark(etag)
        low = max(since or "", mark or "")
        rows = self.store.query(
            "SELECT i.number, i.title, i.body, i.state, i.author, i.created_at, i.updated_at, "
            "(SELECT group_concat(name, char(31)) FROM tracker_labels l WHERE l.issue = i.number) "
            "FROM tracker_issues i WHERE i.updated_at >= ? ORDER BY i.updated_at DESC, i.number DESC",
            (low,),
        )
        issues = tuple(
            Issue(r[0], r[1], r[2], r[3], tuple(sorted(r[7].split("\x1f"))) if r[7] else (), (), r[4], r[5], r[6])
            for r in rows
        )
        pulls = self._pulls_since(low)
        newest = max([i.updated_at for i in issues] + [t for _n, t in pulls] + [mark or ""])
        at_mark = [
            (i.number, i.updated_at, i.state, list(i.labels), i.title, i.body) for i in issues if i.updated_at >= newest
        ]
        digest = _digest([at_mark, [p for p in pulls if p[1] >= newest], self._last_rows()])
        new = f"w1 {newest} {digest}"
        self.answered["changes"] = ((since, new), stamp)
        if etag is not None and mark == newest and old == digest:
            return Changes(False, etag=etag)
        return Changes(True, issues, pulls, new, newest)

    def activity(self, etag: str | None, last: str | None) -> Activity | None:
        return None  # every read here is a local query: changes_since and pull_activity serve each poll

    def pull_activity(self, etag: str | None) -> Changes:
        """Each pull request with its latest activity; ``etag`` holds the newest pull, review and review comment ids,
        so an unchanged answer costs three indexed reads and a changed one lists only the pull requests it moved
        (a closed local pull request is listed too: a review on it is refused, so nothing moves it)."""
        stamp = self.store.write_stamp()
        if etag is not None and self.answered.get("pulls") == (etag, stamp):
            return Changes(False, etag=etag)
        ids = [
            self.store.query(f"SELECT coalesce(max({key}), 0) FROM {table}")[0][0]
            for key, table in (
                ("number", "tracker_pulls"),
                ("id", "tracker_reviews"),
                ("id", "tracker_review_comments"),
            )
        ]
        new = "p1 " + " ".join(str(i) for i in ids)
        self.answered["pulls"] = (new, stamp)
        if new == etag:
            return Changes(False, etag=etag)
        parts = (etag or "").split(" ")
        if len(parts) != 4 or parts[0] != "p1" or not all(x.isdigit() for x in parts[1:]):
            return Changes(True, (), self._pull_times(), new, "")
        pull, review, comment = (int(x) for x in parts[1:])
        moved = {
            int(r[0])
            for r in self.store.query(
                "SELECT number FROM tracker_pulls WHERE number > ? UNION SELECT pull FROM tracker_reviews WHERE id > ? "
                "UNION SELECT pull FROM tracker_review_comments WHERE id > ?",
                (pull, review, comment),
            )
        }
        return Changes(True, (), self._pull_times(moved), new, "", complete=False)

    def _pulls_since(self, low: str) -> tuple[tuple[int, str], ...]:
        """The pull requests with activity at or after ``low`` (indexed reads of the newest rows only)."""
        moved = {
            int(r[0])
            for r in self.store.query(
                "SELECT number FROM tracker_pulls WHERE created_at >= ? "
                "UNION SELECT pull FROM tracker_reviews WHERE submitted_at >= ? "
                "UNION SELECT pull FROM tracker_review_comments WHERE created_at >= ?",
                (low, low, low),
            )
        }
        return tuple((n, t) for n, t in self._pull_times(moved) if t >= low)

    def _last_rows(self) -> list[Any]:
        """The newest comment, review and review comment: a write within the same second still changes the digest."""
        return [
            self.store.query(f"SELECT max(id) FROM {table}")[0][0]
            for table in ("tracker_comments", "tracker_reviews", "tracker_review_comments")
        ]

    def _pull_times(self, only: set[int] | None = None) -> tuple[tuple[int, str], ...]:
        """Each pull request (of ``only``, when given) with the time of its latest activity (opened, reviewed,
        commented), newest first."""
        numbers = sorted(only) if only is not None else None
        if numbers == []:
            return ()
        where = f"WHERE p.number IN ({','.join('?' * len(numbers))}) " if numbers is not None else ""
        rows = self.store.query(
            "SELECT p.number, max(p.created_at, "
            "coalesce((SELECT max(r.submitted_at) FROM tracker_reviews r WHERE r.pull = p.number), ''), "
            "coalesce((SELECT max(c.created_at) FROM tracker_review_comments c WHERE c.pull = p.number), '')) AS t "
            f"FROM tracker_pulls p {where}ORDER BY t DESC, p.number DESC",
            tuple(numbers or ()),
        )
        return tuple((int(r[0]), str(r[1])) for r in rows)

    def ensure_label(self, name: str, color: str, description: str = "", dry_run: bool = False) -> str:
        raise OrchError("the local tracker keeps no label list")

    def update_comment(self, number: int, comment_id: int, body: str) -> Comment | None:
        with self.store.transaction() as c:
            c.execute("UPDATE tracker_comments SET body=? WHERE id=? AND issue=?", (body, comment_id, number))
        rows = self.store.query(
            "SELECT id, author, body, created_at FROM tracker_comments WHERE id=? AND issue=?", (comment_id, number)
        )
        return Comment(*rows[0]) if rows else None

    def create_pull(
        self,
        issue: int,
        title: str,
        body: str,
        head: str,
        base: str,
        head_sha: str,
        base_sha: str,
        marker: str,
        first_attempt: bool = False,
    ) -> PullRequest:
        existing = self.find_pull(marker, head)  # a local query: always looked for
        if existing is not None:  # the run delivers again: a record `orch prs close` closed is open again
            local_prs.set_closed(self.store, existing, False, RUNNER)
            if existing.head_sha != head_sha:  # new commits on the same branch: the record follows the branch head
                with self.store.transaction() as c:
                    c.execute(
                        "UPDATE tracker_pulls SET head_sha=?, body=? WHERE number=?", (head_sha, body, existing.number)
                    )
                return self.find_pull(marker) or existing
            return existing
        with self.store.transaction() as c:
            c.execute(
                "INSERT INTO tracker_pulls (issue, title, body, head, base, head_sha, base_sha, draft, marker, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (issue, title, body, head, base, head_sha, base_sha, marker, now()),
            )
        pull = self.find_pull(marker)
        assert pull is not None
        return pull


def _pull(r: Any) -> PullRequest:
    number = int(r[0])
    return PullRequest(
        number=number,
        issue=int(r[1]),
        title=str(r[2]),
        body=str(r[3]),
        head=str(r[4]),
        base=str(r[5]),
        head_sha=str(r[6]),
        base_sha=str(r[7]),
        draft=bool(r[8]),
        url=f"local:pull/{number}",
        marker=str(r[9]),
    )


def _watermark(etag: str | None) -> tuple[str | None, str | None]:
    """The watermark and digest an etag of ``changes_since`` carries (none from an etag of another form)."""
    parts = (etag or "").split(" ")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "w1" else (None, None)


def _digest(value: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value).encode()).hexdigest()
