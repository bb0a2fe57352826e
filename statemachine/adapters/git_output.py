"""Parsers of what git writes with ``-z``: names, not interpreted further, for the runner's own git commands
(statemachine/adapters/git.py)."""

from __future__ import annotations


def raw_and_numstat(out: str) -> tuple[list[tuple[list[str], str]], list[tuple[str, str, str]]]:
    """The output of ``git diff-tree -r -z --no-renames --raw --numstat``: each path that differs with its
    ``:old_mode new_mode old_sha new_sha status`` fields, then each with its added and removed line counts (``-`` for
    a binary file). Git writes every raw record (``:meta``, then the path) before the first numstat one
    (``added<TAB>removed<TAB>path``), and a numstat record never starts with a colon."""
    fields = out.split("\0")
    raw: list[tuple[list[str], str]] = []
    numstat: list[tuple[str, str, str]] = []
    i = 0
    while i < len(fields):
        field = fields[i]
        if field.startswith(":") and i + 1 < len(fields):
            parts = field[1:].split()
            if len(parts) == 5:
                raw.append((parts, fields[i + 1]))
            i += 2
            continue
        row = field.split("\t", 2)
        if len(row) == 3:
            numstat.append((row[0], row[1], row[2]))
        i += 1
    return raw, numstat


def status_lists(out: str) -> dict[str, list[str]]:
    """The paths of ``git status --porcelain=v2 -z`` by kind: ``staged`` (the index differs from HEAD, as ``git diff
    --cached`` lists them), ``unstaged`` (the worktree differs from the index, as ``git diff``), ``untracked``."""
    lists: dict[str, list[str]] = {"staged": [], "unstaged": [], "untracked": []}
    fields = out.split("\0")
    i = 0
    while i < len(fields):
        record = fields[i]
        i += 1
        kind = record[:2]
        if kind == "? ":
            lists["untracked"].append(record[2:])
            continue
        # ordinary "1 XY sub mH mI mW hH hI path", renamed "2 ... score path" then its origin, unmerged "u ... path"
        words = {"1 ": 8, "2 ": 9, "u ": 10}.get(kind)
        if words is None:
            continue
        parts = record.split(" ", words)
        if len(parts) <= words:
            continue
        if kind == "2 ":
            i += 1  # the origin path: not a change of its own here (renames are off)
        xy, path = parts[1], parts[words]
        if xy[:1] != "." or kind == "u ":
            lists["staged"].append(path)
        if xy[1:2] != "." or kind == "u ":
            lists["unstaged"].append(path)
    return lists
