"""Caps on what the runner reads from the agent's side, each with its reason, and the bounded readers that apply them.

The agent is assumed hostile: any file it writes (a report, a scenario, a log its code prints to,
a proof artifact) may be huge, sparse, a FIFO or a symlink. The runner checks the size before it
parses anything and never reads more than a cap allows. The changed-bytes gate's limits are
policy keys (gates.max_binary_file_bytes, gates.max_changed_bytes), not caps here.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.ports import Git

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Cap:
    """A size cap and why it is that size (the reason is part of every message that cites the cap)."""

    bytes: int
    reason: str


# reports (schemas/*-report.schema.json): completion, review, proof and plan reports
REPORT = Cap(1 * MiB, "reports are short JSON")
# scenario.json of a proof run: the steps the runner's browser drives
SCENARIO = Cap(256 * KiB, "a browser scenario is a short list of steps")
# the end of a failed check's output quoted in a rework finding (the whole log stays in the evidence folder)
FINDING_LOG_TAIL = Cap(2000, "a finding quotes only the end of a check's output; the whole log stays with the evidence")
# the poll cursor a runner carries between jobs (`orch daemon --poll-cursor`): untrusted, read only when this small
POLL_CURSOR = Cap(16 * MiB, "a poll cursor holds the labelled issues as listed and a few marks per issue")
# one proof artifact (a screenshot, a command's output, a DOM snapshot, a log)
ARTIFACT = Cap(10 * MiB, "one piece of evidence a reviewer can open; larger files cannot be reviewed or published")
# every artifact of one proof run together, the runner's own browser artifacts included
ARTIFACTS_TOTAL = Cap(50 * MiB, "all the evidence of one proof run")
# bytes git looks at to tell a binary file from a text file (a NUL among them: binary), as `git diff` does
BINARY_SNIFF = 8000


def human(n: int) -> str:
    """A size for people: ``512 bytes``, ``1 MiB`` (exact), ``60.0 MiB`` (rounded)."""
    if n < KiB:
        return f"{n:,} byte{'s' if n != 1 else ''}"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    raise AssertionError("unreachable")


def over_cap(noun: str, size: int, cap: Cap) -> str:
    """The reason a file is refused: ``the completion report is 209,715,200 bytes; the cap is 1 MiB (reports are short JSON)``."""
    return f"{noun} is {size:,} bytes; the cap is {human(cap.bytes)} ({cap.reason})"


class TooLarge(Exception):
    """A file is larger than its cap; ``size`` is what the file system said (or at least cap + 1)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class NotRegular(Exception):
    """The path is a symlink, a folder, a FIFO or another non-regular file."""


def read_capped(path: Path, cap: Cap) -> bytes:
    """At most ``cap`` bytes of the regular file at ``path``: its size is checked before reading, and never more than
    cap + 1 bytes are read (a file growing meanwhile is caught too). Raises TooLarge, NotRegular or OSError."""
    flags = (
        os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    )  # a FIFO must not block the runner
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            raise NotRegular(str(path)) from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(str(path))
        if st.st_size > cap.bytes:
            raise TooLarge(st.st_size)
        data = fh.read(cap.bytes + 1)
    if len(data) > cap.bytes:
        raise TooLarge(len(data))
    return data


def read_tail(path: Path, cap: Cap) -> str:
    """The last ``cap`` bytes of a log, as text (undecodable bytes replaced); empty when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return ""
        if st.st_size > cap.bytes:
            fh.seek(st.st_size - cap.bytes)
        data = fh.read(cap.bytes)
    return data.decode("utf-8", errors="replace")


def read_head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a regular file (no symlink followed, no FIFO waited on)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise NotRegular(str(path))
        return fh.read(n)


# the changed-bytes gate's measurements ----------------------------------------------------


def changed_sizes(git: Git, base: str, tree: str) -> list[dict[str, Any]]:
    """Each file the captured tree adds or changes against ``base``: its path, its size in the tree and whether git
    sees binary content (a NUL in its first 8000 bytes). Measured by the runner in its own capture, never taken from
    the agent's report; git reads the blobs, so nothing here loads a file's content."""
    wanted = git.changed_blobs(base, tree)
    if not wanted:
        return []
    binary = git.binary_paths(base, tree)
    sizes = git.blob_sizes(list(dict.fromkeys(sha for _, sha in wanted)))
    return [{"path": path, "size": sizes.get(sha, 0), "binary": path in binary} for path, sha in wanted]


def size_summary(sizes: list[dict[str, Any]], keep: int = 20) -> dict[str, Any]:
    """What the gate needs, small enough for every snapshot: the total, and the largest files and binary files."""
    ordered = sorted(sizes, key=lambda f: (-int(f["size"]), str(f["path"])))
    binaries = [f for f in ordered if f["binary"]]
    return {
        "total": sum(int(f["size"]) for f in sizes),
        "count": len(sizes),
        "largest": ordered[:keep],
        "binary_count": len(binaries),
        "binaries": binaries[:keep],
    }
