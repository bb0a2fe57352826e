"""Focused unit tests: globs, acceptance criteria, the policy merge rule, problem rendering, YAML positions,
the SQLite store, the local tracker, change-set capture and the report/change-set guard."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import git

from statemachine.adapters.git import CliGit
from statemachine.adapters.local import LocalTracker
from statemachine.errors import (
    NotFoundError,
    OrchError,
    PolicyError,
    Problem,
    StoreError,
)
from statemachine.globs import BUILTIN_BLOCKED_PATHS, first_match, matches
from statemachine.guards import report_matches_changes
from statemachine.model import Change, Issue, Snapshot
from statemachine.policy import merge
from statemachine.prompting import acceptance_criteria
from statemachine.record import RunRecord
from statemachine.store import SCHEMA_VERSION, Store
from statemachine.yamlsrc import load_file, load_text

# globs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, path, expected",
    [
        # `**` spans folders
        (".github/workflows/**", ".github/workflows/ci.yml", True),
        (".github/workflows/**", ".github/workflows/sub/deploy.yml", True),
        (".github/workflows/**", "docs/.github/workflows/ci.yml", False),  # a pattern with / is anchored at the root
        (".github/workflows/**", ".github/dependabot.yml", False),
        ("**/secrets/*", "secrets/a.txt", True),
        ("**/secrets/*", "deep/down/secrets/a.txt", True),
        ("a/**/b.txt", "a/b.txt", True),
        ("a/**/b.txt", "a/x/y/b.txt", True),
        ("a/**/b.txt", "xa/b.txt", False),
        ("**", "anything/at/all", True),
        # a pattern without / matches a basename anywhere
        ("*.pem", "server.pem", True),
        ("*.pem", "deploy/keys/server.pem", True),
        ("*.pem", "server.pem.bak", False),
        ("*.pem", "server.pemx", False),
        (".env*", ".env", True),
        (".env*", ".env.production", True),
        (".env*", "config/.env.local", True),
        (".env*", "my.env", False),
        (".env*", "environment.py", False),
        ("id_rsa*", "home/.ssh/id_rsa.pub", True),
        # a matching folder covers everything in it (as in .gitignore)
        (".env*", ".env/production", True),
        (".env*", "config/.env.d/secrets.txt", True),
        ("*.pem", "certs.pem/key", True),
        ("docs/", "docs/index.md", True),
        ("docs/", "site/docs/index.md", True),
        ("docs/", "docs", False),
        # a leading / anchors a basename pattern; ? is one character but never /
        ("/README.md", "README.md", True),
        ("/README.md", "sub/README.md", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file/.txt", False),
        ("a.b", "axb", False),  # dots are literal
    ],
)
def test_glob_matching(pattern: str, path: str, expected: bool) -> None:
    assert matches(path, pattern) is expected


def test_builtin_blocked_paths_and_first_match() -> None:
    assert first_match(".github/workflows/x.yml", BUILTIN_BLOCKED_PATHS) == ".github/workflows/**"
    assert first_match(".orch/policy.yaml", BUILTIN_BLOCKED_PATHS) == ".orch/**"
    assert first_match("keys/prod.key", BUILTIN_BLOCKED_PATHS) == "*.key"
    assert first_match(".env", BUILTIN_BLOCKED_PATHS) == ".env*"
    assert first_match("src/app.py", BUILTIN_BLOCKED_PATHS) is None
    assert first_match("x.pem", ("*.py", "*.pem", "*")) == "*.pem"  # the first pattern that matches, in order
    assert first_match("x", ()) is None


# acceptance criteria -----------------------------------------------------------------------------


def test_acceptance_criteria_are_parsed_with_stable_ids() -> None:
    body = """Intro text.

## Acceptance criteria
- [ ] returns 2 for `sub(3, 1)`
* [x] keeps `add` working   
+ plain plus item
1. numbered one
2) numbered two
not a list item
-no space is not an item

## Notes
- not a criterion
"""
    assert acceptance_criteria(body) == [
        {"id": "ac-1", "text": "returns 2 for `sub(3, 1)`"},
        {"id": "ac-2", "text": "keeps `add` working"},
        {"id": "ac-3", "text": "plain plus item"},
        {"id": "ac-4", "text": "numbered one"},
        {"id": "ac-5", "text": "numbered two"},
    ]


@pytest.mark.parametrize(
    "heading", ["# Acceptance criteria", "### acceptance criteria:", "## Acceptance", "##Acceptance Criteria  "]
)
def test_acceptance_criteria_heading_forms(heading: str) -> None:
    assert acceptance_criteria(f"{heading}\n- one\n") == [{"id": "ac-1", "text": "one"}]


def test_acceptance_criteria_absent_or_elsewhere() -> None:
    assert acceptance_criteria("") == []
    assert acceptance_criteria(None) == []  # type: ignore[arg-type]
    assert acceptance_criteria("- a\n- b\n") == []  # a list without the heading
    assert acceptance_criteria("Acceptance criteria\n- a\n") == []  # not a heading
    assert acceptance_criteria("## Acceptance criteria for v2\n- a\n") == []  # a different heading
    assert acceptance_criteria("## Acceptance criteria\r\n- a\r\n- b\r\n") == [
        {"id": "ac-1", "text": "a"},
        {"id": "ac-2", "text": "b"},
    ]


# the merge rule ----------------------------------------------------------------------------------


def test_merge_mappings_merge_lists_replace_null_deletes() -> None:
    base = {
        "agent": {"command": "codex", "args": ["exec", "-"], "timeout_seconds": 1800},
        "gates": {"blocked_paths": ["a"], "require_changes": True},
        "rules": "be nice",
        "checks": {},
    }
    override = {
        "agent": {"args": ["run"], "env": {"A": "1"}},
        "gates": {"blocked_paths": ["b", "c"], "require_changes": None},
        "rules": None,
        "checks": {"t": {"command": "make test"}},
        "new": [1],
    }
    assert merge(base, override) == {
        "agent": {"command": "codex", "args": ["run"], "timeout_seconds": 1800, "env": {"A": "1"}},
        "gates": {"blocked_paths": ["b", "c"]},
        "checks": {"t": {"command": "make test"}},
        "new": [1],
    }


def test_merge_null_deletes_keys_the_base_lacks_too() -> None:
    assert merge({"a": 1}, {"b": None}) == {"a": 1}
    assert merge({"a": {"x": 1}}, {"a": {"y": None}, "c": {"d": None, "e": 2}}) == {"a": {"x": 1}, "c": {"e": 2}}


def test_merge_copies_the_override() -> None:
    base = {"a": {"list": [1, 2]}}
    override = {"a": {"list": [3]}, "n": {"deep": [4]}}
    out = merge(base, override)
    out["a"]["list"].append(9)
    out["n"]["deep"].append(9)
    assert base == {"a": {"list": [1, 2]}} and override == {"a": {"list": [3]}, "n": {"deep": [4]}}
    assert merge([1, 2], [3]) == [3] and merge({"a": 1}, "x") == "x" and merge("x", {"a": 1}) == {"a": 1}


# problems ----------------------------------------------------------------------------------------


def test_problem_rendering() -> None:
    p = Problem(
        ".orch/policy.yaml",
        12,
        9,
        ("lifecycle", "transitions", 3, "guards", 0),
        "unknown guard 'issue_opn'",
        "did you mean 'issue_open'?",
    )
    assert p.key_path == "lifecycle.transitions[3].guards[0]"
    assert (
        p.render()
        == ".orch/policy.yaml:12:9: lifecycle.transitions[3].guards[0]: unknown guard 'issue_opn' (did you mean 'issue_open'?)"
    )
    assert (
        Problem("f", 1, 1, (), "the policy must be a YAML mapping").render()
        == "f:1:1: (top level): the policy must be a YAML mapping"
    )
    assert Problem("f", 2, 3, (0, "a"), "m").key_path == "[0].a"
    assert p.as_json() == {
        "file": ".orch/policy.yaml",
        "line": 12,
        "column": 9,
        "path": ["lifecycle", "transitions", 3, "guards", 0],
        "key_path": "lifecycle.transitions[3].guards[0]",
        "message": "unknown guard 'issue_opn'",
        "hint": "did you mean 'issue_open'?",
    }
    err = PolicyError([p, Problem("f", 1, 1, ("x",), "bad")])
    assert err.exit_code == 3 and err.message == "the policy has 2 problems"
    assert str(err).splitlines() == [p.render(), "f:1:1: x: bad", "2 problem(s); fix them, then run `orch lint` again"]
    assert PolicyError([p]).message == "the policy has 1 problem"
    assert str(OrchError("it broke", "do this")) == "it broke\n  hint: do this"


# YAML positions ----------------------------------------------------------------------------------

YAML_TEXT = """\
version: 1
agent:
  command: codex
  args: [exec, "-"]
lifecycle:
  transitions:
    - trigger: claim
      guards:
        - issue_open
        - has_label: {label: auto}
"""


def test_yaml_positions_are_one_based_and_deepest_wins() -> None:
    doc = load_text(YAML_TEXT, "p.yaml")
    assert doc.data["agent"]["args"] == ["exec", "-"]
    assert doc.position(("version",)) == (1, 1, 1)
    assert doc.position(("agent", "command")) == (2, 3, 3)
    assert doc.position(("agent", "args", 1)) == (3, 4, 16)
    assert doc.position(("lifecycle", "transitions", 0)) == (3, 7, 7)
    assert doc.position(("lifecycle", "transitions", 0, "guards", 1, "has_label", "label")) == (7, 10, 23)
    # a path that leaves the document stops at the deepest node that exists
    assert doc.position(("agent", "env", "X")) == (1, 2, 1)
    assert doc.position(("lifecycle", "transitions", 5)) == (2, 6, 3)
    assert doc.position(()) == (0, 1, 1)


def test_yaml_errors_are_located() -> None:
    with pytest.raises(PolicyError) as exc:
        load_text("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    (problem,) = exc.value.problems
    assert problem.file == "bad.yaml" and problem.line >= 2 and "YAML syntax error" in problem.message
    with pytest.raises(PolicyError) as exc:
        load_text("a: 1\na: 2\n", "dup.yaml")
    assert exc.value.problems[0].line == 2 and "duplicate key" in exc.value.problems[0].message
    with pytest.raises(PolicyError) as exc:
        load_text("&a [*a]\n", "loop.yaml")
    assert "alias" in exc.value.problems[0].message


def test_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as exc:
        load_file(tmp_path / "missing.yaml")
    assert exc.value.problems[0].message == "file not found"
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nb: 2\nc: caf\xe9\n")
    with pytest.raises(PolicyError) as exc:
        load_file(latin, "shown.yaml")
    assert (exc.value.problems[0].file, exc.value.problems[0].line) == ("shown.yaml", 3)
    good = tmp_path / "good.yaml"
    good.write_text("a: {b: [1, 2.5, true, null, x]}\n1: one\n")
    data = load_file(good).data
    assert data == {"a": {"b": [1, 2.5, True, None, "x"]}, 1: "one"}
    assert type(data["a"]["b"][0]) is int and type(data["a"]["b"][4]) is str and type(data["a"]) is dict


# the store ---------------------------------------------------------------------------------------


def test_store_uses_wal_and_ignores_itself(tmp_path: Path) -> None:
    path = tmp_path / "state" / "orch.db"
    store = Store(path)
    try:
        other = sqlite3.connect(str(path))
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        other.close()
        assert (tmp_path / "state" / ".gitignore").read_text().splitlines()[-1] == "*"
        store.set_fact("r1", "x", {"a": [1, 2]})
        store.set_fact("r1", "x", {"a": [3]})
        assert store.facts("r1") == {"x": {"a": [3]}} and store.facts(None) == {}
    finally:
        store.close()


def test_store_transactions_roll_back_and_translate_errors(tmp_path: Path) -> None:
    store = Store(tmp_path / "orch.db")
    try:
        with pytest.raises(ValueError), store.transaction() as c:
            c.execute("INSERT INTO meta VALUES ('k', 'v')")
            raise ValueError("boom")
        assert store.query("SELECT * FROM meta WHERE key='k'") == []
        with pytest.raises(StoreError) as exc, store.transaction() as c:
            c.execute("INSERT INTO meta VALUES ('k2', 'v')")
            c.execute("INSERT INTO no_such_table VALUES (1)")
        assert "no such table" in exc.value.message and exc.value.exit_code == 1
        assert store.query("SELECT * FROM meta WHERE key='k2'") == []
        with store.transaction() as c:  # the connection is usable afterwards
            c.execute("INSERT INTO meta VALUES ('k3', 'v')")
        assert len(store.query("SELECT * FROM meta WHERE key='k3'")) == 1
    finally:
        store.close()


def test_store_refuses_a_newer_schema_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "orch.db"
    Store(path).close()
    conn = sqlite3.connect(str(path))
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as exc:
        Store(path)
    assert "written by a newer orch" in exc.value.message
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreError) as exc:
        Store(junk)
    assert "is corrupted" in exc.value.message and junk.read_bytes() == b"\x00garbage" * 512


def test_store_journal_and_steps(tmp_path: Path) -> None:
    store = Store(tmp_path / "orch.db")
    try:
        step = store.begin_step(4, None, "n1", "claim", "queued", "claimed", 0, {"s": 1}, [{"v": 1}])
        assert store.pending_step(4) is not None and store.pending_step(4).id == step  # type: ignore[union-attr]
        assert store.journal_entry(step, 0) is None
        store.journal_intent(step, 0, "start_run", {})
        store.journal_intent(step, 0, "start_run", {})  # an intent is recorded once
        assert store.journal_entry(step, 0) == ("intent", None)
        store.journal_done(step, 0, {"run_id": "4-abc"})
        assert store.journal_entry(step, 0) == ("done", {"run_id": "4-abc"})
        store.set_run(4, "4-abc")
        store.finish_step(step, 4, "claimed", "4-abc", None)
        assert store.pending_step(4) is None and store.state_of(4) == ("claimed", "4-abc")
        assert [(j["action"], j["status"], j["issue"]) for j in store.journal(4)] == [("start_run", "done", 4)]
        assert store.state_of(5) == ("queued", None)
    finally:
        store.close()


# the local tracker -------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Any:
    store = Store(tmp_path / "orch.db")
    yield LocalTracker(store)
    store.close()


def test_local_tracker_issues_labels_comments(local: LocalTracker) -> None:
    one = local.create_issue("First", "body", ["agent:auto", "agent:auto", "bug"])
    two = local.create_issue("Second", "", [])
    assert (one.number, two.number) == (1, 2) and one.labels == ("agent:auto", "bug") and one.is_open
    with pytest.raises(OrchError):
        local.create_issue("  ", "x", [])
    with pytest.raises(NotFoundError) as exc:
        local.get_issue(3)
    assert exc.value.message == "issue #3 does not exist in the local tracker"
    with pytest.raises(NotFoundError):
        local.add_labels(3, ["x"])

    local.add_labels(2, ["b", "a", "a"])
    local.remove_labels(2, ["a", "not-there"])
    assert local.get_issue(2).labels == ("b",)
    assert [i.number for i in local.list_issues(label="bug")] == [1]
    local.set_state(1, "closed")
    assert [i.number for i in local.list_issues()] == [2]
    assert [i.number for i in local.list_issues(state="all")] == [1, 2]
    assert [i.number for i in local.list_issues(state="closed")] == [1]

    c1 = local.post_comment(2, "hello <!-- orch:run=2-x kind=claim -->")
    c2 = local.post_comment(2, "again <!-- orch:run=2-x kind=claim -->", author="someone")
    assert c2.id > c1.id
    found = local.find_comment(2, "<!-- orch:run=2-x kind=claim -->")
    assert found is not None and found.id == c1.id and found.author == "orch"
    assert local.find_comment(1, "<!-- orch:run=2-x kind=claim -->") is None
    assert [c.author for c in local.get_issue(2).comments] == ["orch", "someone"]


def test_local_tracker_pull_requests_are_found_by_marker(local: LocalTracker) -> None:
    local.create_issue("First", "", [])
    pr = local.create_pull(1, "T", "body", "orch/1-first", "main", "a" * 40, "b" * 40, "<!-- m1 -->")
    again = local.create_pull(1, "T2", "other", "orch/1-first", "main", "c" * 40, "b" * 40, "<!-- m1 -->")
    assert again.number == pr.number and pr.draft and pr.url == f"local:pull/{pr.number}" and pr.head_sha == "a" * 40
    assert again.head_sha == "c" * 40  # new commits on the same branch: the record follows its head
    other = local.create_pull(1, "T", "body", "orch/1-first", "main", "d" * 40, "b" * 40, "<!-- m2 -->")
    assert other.number == pr.number + 1
    assert [p.number for p in local.pulls()] == [pr.number, other.number]
    assert [p.number for p in local.pulls(1)] == [pr.number, other.number] and local.pulls(2) == []
    assert local.find_pull("<!-- m1 -->") == again and local.find_pull("<!-- nope -->") is None


# change-set capture ------------------------------------------------------------------------------


def test_capture_sees_every_kind_of_change_and_not_ignored_files(tmp_path: Path) -> None:
    repo = tmp_path / "wt"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name in ("committed.txt", "staged.txt", "unstaged.txt", "deleted.txt", "removed.txt", "same.txt"):
        (repo / name).write_text(f"{name}\n")
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD").strip()

    (repo / "committed.txt").write_text("committed change\n")
    git(repo, "commit", "-q", "-am", "agent commit")
    (repo / "staged.txt").write_text("staged change\n")
    git(repo, "add", "staged.txt")
    (repo / "unstaged.txt").write_text("unstaged change\nand a second line\n")
    (repo / "deleted.txt").unlink()
    git(repo, "rm", "-q", "removed.txt")
    (repo / "dir with space").mkdir()
    (repo / "dir with space" / "ünïcode.txt").write_text("new\n")
    (repo / "debug.log").write_text("ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_bytes(b"\x00\x01")
    status_before = git(repo, "status", "--porcelain", "-z")
    index_before = (repo / ".git" / "index").read_bytes()

    cap = CliGit(repo).capture(repo, base)

    assert {c.path: c.status for c in cap.changes} == {
        "committed.txt": "M",
        "staged.txt": "M",
        "unstaged.txt": "M",
        "deleted.txt": "D",
        "removed.txt": "D",
        "dir with space/ünïcode.txt": "A",
    }
    assert cap.by_kind["committed"] == ["committed.txt"]
    assert cap.by_kind["staged"] == ["removed.txt", "staged.txt"]
    assert cap.by_kind["unstaged"] == ["deleted.txt", "unstaged.txt"]
    assert cap.by_kind["untracked"] == ["dir with space/ünïcode.txt"]
    assert cap.changed_lines == (1 + 1) + (1 + 1) + (2 + 1) + 1 + 1 + 1
    files = git(repo, "ls-tree", "-r", "-z", "--name-only", cap.tree).split("\0")
    assert sorted(f for f in files if f) == sorted(
        [".gitignore", "committed.txt", "dir with space/ünïcode.txt", "same.txt", "staged.txt", "unstaged.txt"]
    )
    assert git(repo, "show", f"{cap.tree}:unstaged.txt") == "unstaged change\nand a second line\n"
    # capturing touches neither the index nor the working tree
    assert git(repo, "status", "--porcelain", "-z") == status_before
    assert (repo / ".git" / "index").read_bytes() == index_before


def test_capture_of_an_untouched_worktree_is_empty(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    cap = CliGit(repo).capture(repo, base)
    assert cap.changes == () and cap.changed_lines == 0
    assert cap.tree == git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert cap.by_kind == {"committed": [], "staged": [], "unstaged": [], "untracked": []}


def test_capture_counts_binary_files_without_lines(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "logo.png").write_bytes(bytes(range(256)) * 4)
    cap = CliGit(repo).capture(repo, base)
    assert [(c.path, c.status) for c in cap.changes] == [("logo.png", "A")] and cap.changed_lines == 0


# the report / change-set guard -------------------------------------------------------------------


def _snap(changed_files: list[str], changes: list[str]) -> Snapshot:
    issue = Issue(number=1, title="t", body="", state="open", labels=())
    run = RunRecord(
        run_id="1-x",
        report={"status": "completed", "summary": "s", "changed_files": changed_files, "validation": []},
        changes=tuple(Change(p, "A") for p in changes),
    )
    return Snapshot(issue=issue, state="implementing", run=run, labels={}, settings={}, taken_at="")


def test_report_matches_changes_accepts_a_leading_dot_slash_only() -> None:
    assert report_matches_changes(
        _snap(["./.editorconfig", "./src/a.py", "b.py"], [".editorconfig", "src/a.py", "b.py"])
    ).ok
    verdict = report_matches_changes(_snap(["a.py", "gone.py"], ["a.py", "new.py"]))
    assert not verdict.ok
    assert verdict.evidence == ("changed but not reported: new.py", "reported but not changed: gone.py")
    assert not report_matches_changes(_snap([".hidden"], ["hidden"])).ok  # a leading dot is part of the name


def test_spread_keeps_priority_classes_in_order() -> None:
    import random

    from statemachine.model import Issue
    from statemachine.scheduling import Candidate, spread

    cands = [Candidate(Issue(i, "t", "", "open", ()), (), 0 if i < 4 else 1) for i in range(10)]
    seen_first = set()
    for seed in range(20):
        out = spread(cands, random.Random(seed))
        assert sorted(c.issue.number for c in out) == list(range(10))
        assert [c.priority for c in out] == sorted(c.priority for c in out)
        first = [c.issue.number for c in out[:4]]
        k = first.index(0)
        assert first[k:] + first[:k] == [0, 1, 2, 3]  # a rotation: the age order is kept from the offset on
        seen_first.add(first[0])
    assert len(seen_first) > 1
