"""The capture reads staged, unstaged and untracked paths from one `git status --porcelain=v2 -z`, and a change's
paths and line counts from one `git diff-tree --raw --numstat -z` (statemachine/adapters/git_output.py): on real
repositories, what each says must be what the separate git commands it replaced say."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from statemachine.adapters.git_output import raw_and_numstat, status_lists
from tests.conftest import GIT_IDENT

ENV = {**os.environ, **GIT_IDENT, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=check, capture_output=True, text=True).stdout


def names(out: str) -> list[str]:
    """Each path once (`git diff --name-only` names an unmerged path twice)."""
    return sorted({x for x in out.split("\0") if x})


def test_one_status_says_what_three_commands_said_even_in_a_conflict(tmp_path: Path) -> None:
    """Staged, unstaged, both, deleted, a conflicted merge, names with spaces, colons, newlines and non-ASCII letters,
    an untracked file in an untracked folder: `status_lists` gives each kind what `git diff --cached --name-only`,
    `git diff --name-only` and `git ls-files --others --exclude-standard` give."""
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    files = ["same.txt", "staged.txt", "unstaged.txt", "both.txt", "gone.txt", "conflict.txt", ":colon", "sp ace.txt"]
    for name in files:
        (repo / name).write_text(f"{name}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "conflict.txt").write_text("theirs\n")
    git(repo, "commit", "-qam", "theirs")
    git(repo, "checkout", "-q", "main")
    (repo / "conflict.txt").write_text("ours\n")
    git(repo, "commit", "-qam", "ours")
    git(repo, "merge", "-q", "other", check=False)  # leaves conflict.txt unmerged
    (repo / "staged.txt").write_text("staged\n")
    (repo / ":colon").write_text("staged too\n")
    git(repo, "add", "--", "staged.txt", "./:colon")
    (repo / "unstaged.txt").write_text("unstaged\n")
    (repo / "both.txt").write_text("staged\n")
    git(repo, "add", "both.txt")
    (repo / "both.txt").write_text("and then unstaged\n")
    (repo / "gone.txt").unlink()
    (repo / "sp ace.txt").write_text("changed\n")
    (repo / "new dir").mkdir()
    (repo / "new dir" / "ünï\ncode.txt").write_text("untracked\n")
    (repo / "top.txt").write_text("untracked\n")

    got = status_lists(
        git(repo, "status", "--porcelain=v2", "-z", "--untracked-files=all", "--no-renames", "--ignore-submodules=none")
    )
    assert sorted(got["staged"]) == sorted(names(git(repo, "diff", "--cached", "--name-only", "-z")))
    assert sorted(got["unstaged"]) == sorted(names(git(repo, "diff", "--name-only", "-z")))
    assert sorted(got["untracked"]) == sorted(names(git(repo, "ls-files", "--others", "--exclude-standard", "-z")))
    assert "conflict.txt" in got["staged"] and "conflict.txt" in got["unstaged"]
    assert {"staged.txt", ":colon", "both.txt"} <= set(got["staged"])
    assert {"unstaged.txt", "both.txt", "gone.txt", "sp ace.txt"} <= set(got["unstaged"])
    assert sorted(got["untracked"]) == ["new dir/ünï\ncode.txt", "top.txt"]


def test_one_diff_tree_gives_the_raw_records_and_the_line_counts(tmp_path: Path) -> None:
    """A text change, a binary change, an added file whose name starts with a colon and one with a tab, a deletion:
    the combined output parses to exactly what the separate --raw and --numstat commands say."""
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "x.txt").write_text("a\nb\n")
    (repo / "bin").write_bytes(b"\0one")
    (repo / "old.txt").write_text("old\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    base = git(repo, "rev-parse", "HEAD^{tree}").strip()
    (repo / "x.txt").write_text("a\nc\nd\n")
    (repo / "bin").write_bytes(b"\0two")
    (repo / ":z").write_text("new\n")
    (repo / "t\tab").write_text("tab\n")
    (repo / "old.txt").unlink()
    git(repo, "add", "-A")
    tree = git(repo, "write-tree").strip()

    raw, numstat = raw_and_numstat(git(repo, "diff-tree", "-r", "-z", "--no-renames", "--raw", "--numstat", base, tree))
    fields = git(repo, "diff-tree", "-r", "-z", "--no-renames", base, tree).split("\0")
    expected_raw = [(m[1:].split(), p) for m, p in zip(fields[0::2], fields[1::2], strict=False) if m.startswith(":")]
    rows = git(repo, "diff-tree", "-r", "-z", "--no-renames", "--numstat", base, tree).split("\0")
    expected_numstat = [tuple(r.split("\t", 2)) for r in rows if r.count("\t") >= 2]
    assert raw == expected_raw and numstat == expected_numstat
    assert {p for _, p in raw} == {"x.txt", "bin", ":z", "t\tab", "old.txt"}
    assert ("-", "-", "bin") in numstat and ("2", "1", "x.txt") in numstat
