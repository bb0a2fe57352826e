"""The only errors users see: each carries a message that says what to do next and an exit code."""

from __future__ import annotations

from dataclasses import dataclass, field

# Exit codes (documented in docs/cli.md; keep in step).
EXIT_OK = 0
EXIT_ERROR = 1  # an error the user can fix (message says how)
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_POLICY = 3  # the policy is invalid (lint found errors)
EXIT_STUCK = 4  # no transition can fire from the current state
EXIT_BLOCKED = 5  # the issue came to rest in `blocked`
EXIT_INTERNAL = 70  # a bug in orch: a report is written for the bug tracker
EXIT_INTERRUPTED = 130


def disk_full(exc: BaseException) -> OrchError | None:
    """A full disk (or a spent quota) met while writing a file, as an error the user can fix: the step it stopped is
    journaled, so running the same command again once there is space resumes it. None for any other failure."""
    import errno

    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f" holding {exc.filename}" if exc.filename else ""
    return OrchError(
        f"the disk{where} is full ({exc.strerror})",
        "free some space, then run the same command again: the interrupted step resumes where it stopped",
    )


class OrchError(Exception):
    """A failure the user can act on; ``str(err)`` is the whole message."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class NotFoundError(OrchError):
    """Something named on the command line does not exist."""


class StoreError(OrchError):
    """The state database cannot be used (corrupted, locked, unwritable)."""


class TrackerError(OrchError):
    """The tracker refused or failed a request."""


class GitError(OrchError):
    """A git command failed."""


class TemplateError(OrchError):
    """A template names a variable that does not exist."""


class BusyError(OrchError):
    """Another orch process holds the issue."""


class ClaimLost(OrchError):
    """Another runner claimed the issue first; this runner backs off and leaves no trace."""


class Superseded(OrchError):
    """Another runner took this run's claim over (its lease had expired): this runner publishes nothing and lets go."""


@dataclass(frozen=True)
class Problem:
    """One located policy problem: file, line:column (1-based), key path, message, hint."""

    file: str
    line: int
    column: int
    path: tuple[str | int, ...]
    message: str
    hint: str | None = None

    @property
    def key_path(self) -> str:
        if not self.path:
            return "(top level)"
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def render(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.key_path}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": list(self.path),
            "key_path": self.key_path,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class PolicyError(OrchError):
    """The policy failed to load; ``problems`` lists every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)
    exit_code = EXIT_POLICY

    def __post_init__(self) -> None:
        n = len(self.problems)
        super().__init__(
            f"the policy has {n} problem{'s' if n != 1 else ''}",
            "fix each one listed; `orch lint` checks again without running anything",
        )

    def __str__(self) -> str:
        lines = [p.render() for p in self.problems]
        lines.append(f"{len(self.problems)} problem(s); fix them, then run `orch lint` again")
        return "\n".join(lines)
