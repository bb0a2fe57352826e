"""SQLite (WAL) state under .orch/state/: lifecycle state, run facts, steps, the effect journal, locks."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemachine.errors import BusyError, StoreError
from statemachine.model import INITIAL_STATE

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS issue_state (
    issue INTEGER PRIMARY KEY, state TEXT NOT NULL, run_id TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, issue INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT);
CREATE TABLE IF NOT EXISTS facts (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, issue INTEGER NOT NULL, run_id TEXT, nonce TEXT NOT NULL,
    trigger TEXT NOT NULL, source TEXT NOT NULL, dest TEXT NOT NULL, transition_index INTEGER NOT NULL,
    status TEXT NOT NULL, snapshot TEXT NOT NULL, verdicts TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT);
CREATE INDEX IF NOT EXISTS steps_issue ON steps (issue, id);
CREATE INDEX IF NOT EXISTS steps_pending ON steps (issue) WHERE status='pending';
CREATE TABLE IF NOT EXISTS journal (
    step_id INTEGER NOT NULL, idx INTEGER NOT NULL, action TEXT NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, result TEXT, intent_at TEXT NOT NULL, done_at TEXT,
    PRIMARY KEY (step_id, idx));
CREATE TABLE IF NOT EXISTS locks (
    issue INTEGER PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, acquired_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_issues (
    number INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,
    author TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_labels (issue INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (issue, name));
CREATE TABLE IF NOT EXISTS tracker_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, issue INTEGER NOT NULL, author TEXT NOT NULL, body TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_pulls (
    number INTEGER PRIMARY KEY AUTOINCREMENT, issue INTEGER NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
    head TEXT NOT NULL, base TEXT NOT NULL, head_sha TEXT NOT NULL, base_sha TEXT NOT NULL,
    draft INTEGER NOT NULL, marker TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pull INTEGER NOT NULL, author TEXT NOT NULL, state TEXT NOT NULL,
    body TEXT NOT NULL, submitted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_review_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, review INTEGER NOT NULL, pull INTEGER NOT NULL, author TEXT NOT NULL,
    body TEXT NOT NULL, path TEXT NOT NULL, line INTEGER, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_permissions (login TEXT PRIMARY KEY, permission TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracker_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, issue INTEGER NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL,
    name TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS poll_cursor (key TEXT PRIMARY KEY, value TEXT NOT NULL, saved_at TEXT NOT NULL);
-- what changed since a time, read by the daemon's poll (LocalTracker.changes_since, pull_activity)
CREATE INDEX IF NOT EXISTS tracker_issues_updated ON tracker_issues (updated_at);
CREATE INDEX IF NOT EXISTS tracker_pulls_created ON tracker_pulls (created_at);
CREATE INDEX IF NOT EXISTS tracker_reviews_pull ON tracker_reviews (pull, submitted_at);
CREATE INDEX IF NOT EXISTS tracker_reviews_submitted ON tracker_reviews (submitted_at);
CREATE INDEX IF NOT EXISTS tracker_review_comments_pull ON tracker_review_comments (pull, created_at);
CREATE INDEX IF NOT EXISTS tracker_review_comments_created ON tracker_review_comments (created_at);
"""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class StepRow:
    id: int
    issue: int
    run_id: str | None
    nonce: str
    trigger: str
    source: str
    dest: str
    transition_index: int
    status: str
    snapshot: dict[str, Any]
    verdicts: list[dict[str, Any]]
    started_at: str
    finished_at: str | None


class Store:
    """One SQLite database per repository; every write is a short transaction."""

    def __init__(self, path: Path, tracker: str | None = None) -> None:
        """``tracker``: the policy's tracker kind, which the advice for a damaged file depends on (None: not known)."""
        self.path = path
        self.tracker = tracker
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ignore = path.parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# orch's local state: never commit it\n*\n")
            self.conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 10000")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"cannot put {path} in WAL mode (got {mode})", "is the folder on a network filesystem?"
                )
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            with self.transaction():
                for stmt in _DDL.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"{path} was written by a newer orch (schema {row[0]})", "upgrade orch")
        except sqlite3.DatabaseError as exc:
            raise translate(exc, path, tracker) from None
        except OSError as exc:
            raise StoreError(
                f"cannot create the state folder {path.parent}: {exc.strerror}", "check permissions and free disk space"
            ) from None

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise translate(exc, self.path, self.tracker) from None
        try:
            yield self.conn
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass  # SQLite already rolled back (corruption, I/O error)
            if isinstance(exc, sqlite3.DatabaseError):  # a statement in the body failed: say so, not a traceback
                raise translate(exc, self.path, self.tracker) from None
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise translate(exc, self.path, self.tracker) from None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            cur = self.conn.execute(sql, args)
            return cur.fetchall()
        except sqlite3.DatabaseError as exc:
            raise translate(exc, self.path, self.tracker) from None

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise translate(exc, self.path, self.tracker) from None

    # lifecycle state ---------------------------------------------------------------------

    def state_of(self, issue: int) -> tuple[str, str | None]:
        rows = self.query("SELECT state, run_id FROM issue_state WHERE issue=?", (issue,))
        return (rows[0][0], rows[0][1]) if rows else (INITIAL_STATE, None)

    def known_issues(self) -> dict[int, tuple[str, str | None]]:
        return {r[0]: (r[1], r[2]) for r in self.query("SELECT issue, state, run_id FROM issue_state")}

    def set_run(self, issue: int, run_id: str) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO issue_state (issue, state, run_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(issue) DO UPDATE SET run_id=excluded.run_id, updated_at=excluded.updated_at",
                (issue, INITIAL_STATE, run_id, now()),
            )
            c.execute("INSERT OR IGNORE INTO runs (run_id, issue, started_at) VALUES (?, ?, ?)", (run_id, issue, now()))

    # facts -------------------------------------------------------------------------------

    def facts(self, run_id: str | None) -> dict[str, Any]:
        if run_id is None:
            return {}
        return {k: json.loads(v) for k, v in self.query("SELECT key, value FROM facts WHERE run_id=?", (run_id,))}

    def facts_of_runs(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """``facts`` of many runs at once (``orch status``): one query per 500 runs, each run present (maybe empty)."""
        out: dict[str, dict[str, Any]] = {r: {} for r in run_ids}
        ids = list(out)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for run_id, key, value in self.query(
                f"SELECT run_id, key, value FROM facts WHERE run_id IN ({marks})", tuple(chunk)
            ):
                out[run_id][key] = json.loads(value)
        return out

    def set_fact(self, run_id: str, key: str, value: Any) -> None:
        self.set_facts(run_id, {key: value})

    def set_facts(self, run_id: str, values: dict[str, Any]) -> None:
        """Record several facts of a run at once: all of them or, after a crash, none."""
        rows = [(run_id, key, json.dumps(value, sort_keys=True)) for key, value in values.items()]
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO facts VALUES (?, ?, ?) ON CONFLICT(run_id, key) DO UPDATE SET value=excluded.value", rows
            )

    # the daemon's poll cursor (statemachine/polling.py) -------------------------------------

    def write_stamp(self) -> tuple[int, int]:
        """Moves whenever anything was committed to the database since: by another connection (``data_version``,
        other processes included) or by this one (``total_changes``). Meaningful within this connection only."""
        return int(self.query("PRAGMA data_version")[0][0]), self.conn.total_changes

    def poll_cursor(self, key: str) -> dict[str, Any] | None:
        """What the last poll of ``key`` (a tracker and its labels) left: its ETags, ``since`` and the issues it saw."""
        rows = self.query("SELECT value FROM poll_cursor WHERE key=?", (key,))
        try:
            value = json.loads(rows[0][0]) if rows else None
        except ValueError:
            return None  # unreadable: the poll lists everything again
        return value if isinstance(value, dict) else None

    def save_poll_cursor(self, key: str, value: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO poll_cursor VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value, saved_at=excluded.saved_at",
                (key, json.dumps(value, sort_keys=True), now()),
            )

    # steps and the journal -----------------------------------------------------------------

    def begin_step(
        self,
        issue: int,
        run_id: str | None,
        nonce: str,
        trigger: str,
        source: str,
        dest: str,
        index: int,
        snapshot: dict[str, Any],
        verdicts: list[dict[str, Any]],
    ) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO steps (issue, run_id, nonce, trigger, source, dest, transition_index, status, snapshot, "
                "verdicts, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (issue, run_id, nonce, trigger, source, dest, index, json.dumps(snapshot), json.dumps(verdicts), now()),
            )
            return int(cur.lastrowid or 0)

    def finish_step(self, step_id: int, issue: int, dest: str, run_id: str | None, outcome: str | None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE steps SET status='done', finished_at=?, run_id=COALESCE(run_id, ?) WHERE id=?",
                (now(), run_id, step_id),
            )
            c.execute(
                "INSERT INTO issue_state (issue, state, run_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(issue) DO UPDATE SET state=excluded.state, run_id=excluded.run_id, updated_at=excluded.updated_at",
                (issue, dest, run_id, now()),
            )
            if run_id and outcome:
                c.execute("UPDATE runs SET ended_at=?, outcome=? WHERE run_id=?", (now(), outcome, run_id))

    def abort_step(self, step_id: int, issue: int, run_id: str | None, previous_run_id: str | None) -> None:
        """Close a step whose transition did not happen (a lost claim): the issue keeps its state and run."""
        with self.transaction() as c:
            c.execute("UPDATE steps SET status='aborted', finished_at=? WHERE id=?", (now(), step_id))
            c.execute("UPDATE issue_state SET run_id=? WHERE issue=?", (previous_run_id, issue))
            if run_id and run_id != previous_run_id:
                c.execute("UPDATE runs SET ended_at=?, outcome='lost-claim' WHERE run_id=?", (now(), run_id))

    def abandon_open_transaction(self) -> None:
        """Roll back a transaction an interruption left open (a KeyboardInterrupt between BEGIN and the block that
        would have closed it), so that this connection can write again."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass

    def supersede(self, step_id: int | None, issue: int, run_id: str | None) -> None:
        """Let go of a run another runner took over: its step is aborted and the issue is queued here again (the
        tracker's labels then say who works on it); the run's evidence and journal stay."""
        with self.transaction() as c:
            if step_id is not None:
                c.execute("UPDATE steps SET status='aborted', finished_at=? WHERE id=?", (now(), step_id))
            c.execute(
                "UPDATE steps SET status='aborted', finished_at=? WHERE issue=? AND status='pending'", (now(), issue)
            )
            c.execute("UPDATE issue_state SET state=?, updated_at=? WHERE issue=?", (INITIAL_STATE, now(), issue))
            if run_id:
                c.execute("UPDATE runs SET ended_at=?, outcome='superseded' WHERE run_id=?", (now(), run_id))

    def abort_pending(self, issue: int) -> None:
        """Drop an interrupted step of a run that was stopped on purpose (its finished effects stay journaled)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE steps SET status='aborted', finished_at=? WHERE issue=? AND status='pending'", (now(), issue)
            )

    def pending_step(self, issue: int) -> StepRow | None:
        rows = self.query("SELECT * FROM steps WHERE issue=? AND status='pending' ORDER BY id LIMIT 1", (issue,))
        return _step(rows[0]) if rows else None

    def pending_issues(self) -> set[int]:
        """The issues with a step under way (a pending step), in one indexed read."""
        return {int(r[0]) for r in self.query("SELECT DISTINCT issue FROM steps WHERE status='pending'")}

    def steps(self, issue: int) -> list[StepRow]:
        return [_step(r) for r in self.query("SELECT * FROM steps WHERE issue=? ORDER BY id", (issue,))]

    def journal_entry(self, step_id: int, idx: int) -> tuple[str, Any] | None:
        rows = self.query("SELECT status, result FROM journal WHERE step_id=? AND idx=?", (step_id, idx))
        if not rows:
            return None
        return rows[0][0], json.loads(rows[0][1]) if rows[0][1] else None

    def journal_intent(self, step_id: int, idx: int, action: str, params: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO journal (step_id, idx, action, params, status, intent_at) VALUES (?, ?, ?, ?, 'intent', ?) "
                "ON CONFLICT(step_id, idx) DO NOTHING",
                (step_id, idx, action, json.dumps(params, sort_keys=True), now()),
            )

    def journal_done(self, step_id: int, idx: int, result: Any) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE journal SET status='done', result=?, done_at=? WHERE step_id=? AND idx=?",
                (json.dumps(result, sort_keys=True, default=str), now(), step_id, idx),
            )

    def journal(self, issue: int | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT j.step_id, j.idx, j.action, j.params, j.status, j.result, j.intent_at, j.done_at, s.issue "
            "FROM journal j JOIN steps s ON s.id = j.step_id"
        )
        args: tuple[Any, ...] = ()
        if issue is not None:
            sql += " WHERE s.issue=?"
            args = (issue,)
        sql += " ORDER BY j.step_id, j.idx"
        return [
            {
                "step": r[0],
                "idx": r[1],
                "action": r[2],
                "params": json.loads(r[3]),
                "status": r[4],
                "result": json.loads(r[5]) if r[5] else None,
                "intent_at": r[6],
                "done_at": r[7],
                "issue": r[8],
            }
            for r in self.query(sql, args)
        ]

    # locks ---------------------------------------------------------------------------------

    @contextmanager
    def issue_lock(self, issue: int, owner: str) -> Iterator[None]:
        host = socket.gethostname()
        with self.transaction() as c:
            row = c.execute("SELECT owner, host, pid FROM locks WHERE issue=?", (issue,)).fetchone()
            if row is not None:
                if row[1] == host and not _alive(int(row[2])):
                    c.execute("DELETE FROM locks WHERE issue=?", (issue,))
                else:
                    raise BusyError(
                        f"issue #{issue} is being worked on by another orch process (pid {row[2]} on {row[1]})",
                        "wait for it to finish; if that process is gone, run the command again on its machine",
                    )
            c.execute("INSERT INTO locks VALUES (?, ?, ?, ?, ?)", (issue, owner, host, os.getpid(), now()))
        try:
            yield
        finally:
            try:
                with self.transaction() as c:
                    c.execute("DELETE FROM locks WHERE issue=? AND pid=?", (issue, os.getpid()))
            except StoreError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _step(r: sqlite3.Row) -> StepRow:
    return StepRow(
        id=r[0],
        issue=r[1],
        run_id=r[2],
        nonce=r[3],
        trigger=r[4],
        source=r[5],
        dest=r[6],
        transition_index=r[7],
        status=r[8],
        snapshot=json.loads(r[9]),
        verdicts=json.loads(r[10]),
        started_at=r[11],
        finished_at=r[12],
    )


def corrupt_hint(path: Path, tracker: str | None) -> str:
    """What to do with a damaged database: with the local tracker the file is the tracker, else only orch's records."""
    aside = f"mv {path} {path}.broken, and mv {path}-wal {path}.broken-wal if that file exists"
    local = (
        f"with the local tracker this file is the tracker: it holds the issues, their labels and comments and the pull "
        f"request records, so never delete it. Keep the damaged copy ({aside}), then copy your backup of it back to "
        f"{path}, or rebuild what SQLite can still read: sqlite3 {path}.broken .dump | sqlite3 {path}. Running on "
        "without either starts an empty tracker: those issues, comments and pull request records are lost (the run "
        "branches stay in git)"
    )
    other = (
        f"move it aside ({aside}) and run again: the issues and pull requests are on "
        f"{'GitHub' if tracker == 'github' else 'the tracker'} and stay there; only orch's own records in this file "
        "(each issue's lifecycle state, runs and steps) start anew"
    )
    if tracker == "local":
        return local
    if tracker is not None:
        return other
    return f"{local}. With another tracker (tracker.kind in .orch/policy.yaml): {other}"


def translate(exc: sqlite3.DatabaseError, path: Path, tracker: str | None = None) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the state database {path} is locked by another process ({text})",
            "another orch command is writing; wait for it and run this again",
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreError(f"the state database {path} is corrupted ({text})", corrupt_hint(path, tracker))
    if "readonly" in text or "read-only" in text:
        return StoreError(f"the state database {path} is read-only ({text})", "check the folder's permissions")
    if "disk" in text and "full" in text:
        return StoreError(f"the disk holding {path} is full", "free some space and run again")
    return StoreError(
        f"the state database {path} failed: {text}",
        "check the disk and the folder's permissions; if the file is damaged, move it aside and run again",
    )


class Memo(MutableMapping[str, str]):
    """Small facts the runner learned and keeps between its processes (the login a token acts as), in the store's
    ``meta`` table under ``memo:``. Written only by orch: the state folder is outside every jail."""

    PREFIX = "memo:"

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getitem__(self, key: str) -> str:
        rows = self.store.query("SELECT value FROM meta WHERE key=?", (self.PREFIX + key,))
        if not rows:
            raise KeyError(key)
        return str(rows[0][0])

    def __setitem__(self, key: str, value: str) -> None:
        with self.store.transaction() as c:
            c.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (self.PREFIX + key, value),
            )

    def __delitem__(self, key: str) -> None:
        with self.store.transaction() as c:
            c.execute("DELETE FROM meta WHERE key=?", (self.PREFIX + key,))

    def __iter__(self) -> Iterator[str]:
        rows = self.store.query("SELECT key FROM meta WHERE key LIKE ?", (self.PREFIX + "%",))
        return iter([str(r[0])[len(self.PREFIX) :] for r in rows])

    def __len__(self) -> int:
        return len(list(iter(self)))
