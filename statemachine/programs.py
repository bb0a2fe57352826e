"""The program a configured shell command starts, and whether it can be found: what `orch doctor`, the claim's preflight
and a check that exits 127 say about a mistyped command, before (or instead of) spending agent runs on it.

A check runs as ``/bin/sh -c COMMAND`` in the agent jail, which shows the runner's PATH read-only; so a program named
without a slash is looked up on PATH, and a path with one (``./scripts/test.sh``) from the repository's root. A command
whose first word is shell syntax (``cd x && ...``, ``$TOOL``, a builtin) is not judged: only the shell can tell."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from statemachine.settings import Settings

EXIT_NOT_FOUND = 127  # the shell's exit code for a program it cannot find
EXIT_NOT_EXECUTABLE = 126  # ... and for one it found but cannot execute

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_SYNTAX = set("$`;|&<>(){}*?[]~\\")
# POSIX special builtins, common builtins and reserved words: what the shell runs without a program
_SHELL_WORDS = frozenset(
    "! . : [ [[ alias bg break builtin case cd command continue declare do done echo elif else esac eval exec exit "
    "export false fc fg for function getopts hash if in jobs kill let local printf pwd read readonly return set "
    "shift source test then time times trap true type ulimit umask unalias unset until wait while".split()
)


def program_of(command: str) -> str | None:
    """The program ``command`` starts: its first word after any ``NAME=value`` assignments; None when that word is
    shell syntax, a builtin or a variable (only the shell can tell what runs)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for word in words:
        if _ASSIGNMENT.match(word):
            continue
        if word in _SHELL_WORDS or _SHELL_SYNTAX & set(word):
            return None
        return word
    return None


def find(program: str, repo: Path, roots: Sequence[Path] | None = None) -> str | None:
    """Where ``program`` is: a name on PATH, or a path (a relative one from the repository's root) to an executable
    file; None when there is none. ``roots``: the folders the agent jail shows (Sandbox.search_roots), so that a
    program in a PATH folder the jail hides (one under the home folder, say a pyenv shim) counts as missing, as it
    is for the check; None: the jail is off, all of PATH counts."""
    if "/" in program:  # a relative path runs from the check's worktree: a file of the repository
        path = Path(program) if os.path.isabs(program) else repo / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not folder or not os.path.isabs(folder) or (roots is not None and not _inside(Path(folder), roots)):
            continue
        candidate = Path(folder) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            if roots is None or _inside(Path(os.path.realpath(candidate)), roots):
                return str(candidate)
    return None


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@dataclass(frozen=True)
class Missing:
    """A configured command whose program cannot be found."""

    path: tuple[str, ...]  # the policy key holding the command: (checks, NAME, command) or (gates, tdd, command)
    what: str  # the check `tests`, the TDD check
    program: str
    command: str
    hidden: str | None = None  # where the program is on this machine, in a folder the agent jail does not show

    @property
    def key(self) -> str:
        return ".".join(self.path)

    def message(self) -> str:
        if self.hidden:
            return (
                f"{self.what} cannot start: `{self.program}` is {self.hidden}, in a folder the agent jail does not show"
            )
        where = "on PATH" if "/" not in self.program else "as an executable file in the repository"
        return f"{self.what} cannot start: `{self.program}` is not found {where}"

    def fix(self, policy_file: str) -> str:
        fix = f"fix {self.key} in {policy_file}, now {self.command!r},"
        if self.hidden:
            return f"{fix} to name a program under /usr, /opt or a virtual environment, or add its folder to sandbox.read_only"
        return f"{fix} or install `{self.program}`"


def commands(config: Settings) -> list[tuple[tuple[str, ...], str, str]]:
    """``(key path, what, command)`` of every shell command the policy configures: each check, then the TDD check."""
    out: list[tuple[tuple[str, ...], str, str]] = [
        (("checks", name, "command"), f"the check `{name}`", spec.command)
        for name, spec in sorted(config.checks.items())
    ]
    if config.gates.tdd is not None:
        out.append((("gates", "tdd", "command"), "the TDD check", config.gates.tdd.command))
    return out


def missing(config: Settings, repo: Path, roots: Sequence[Path] | None = None) -> list[Missing]:
    """The configured commands whose program cannot be found (a command whose program cannot be told is not here);
    ``roots`` as for ``find``."""
    found = []
    for key, what, command in commands(config):
        program = program_of(command)
        if program is not None and find(program, repo, roots) is None:
            hidden = find(program, repo) if roots is not None else None
            found.append(Missing(key, what, program, command, hidden))
    return found


_NOT_FOUND = re.compile(r"(?:^|: )([^\s:]+): (?:command )?not found\s*$", re.MULTILINE)  # dash's and bash's words


def not_found_in(output: str) -> str | None:
    """The program the shell said it could not find, at the end of a check's output (``sh: 1: pytestt: not found``,
    ``bash: pytestt: command not found``); None when it said no such thing."""
    names = _NOT_FOUND.findall(output)
    return str(names[-1]) if names else None


def not_started(
    name: str,
    command: str,
    exit_code: int | None,
    repo: Path,
    policy_file: str,
    output: str = "",
    roots: Sequence[Path] | None = None,
) -> str | None:
    """Why the check ``name`` could not start, with the fix, when it exited 127 (the shell found no program) or 126
    (found one it cannot execute); None for any other exit. The program named is the command's own when it cannot
    be found, else the one the shell named at the end of ``output`` (``cd src && pytestt``). The check ran the
    agent's code, so a 127 from deeper down (a script calling a missing tool) blocks too: rework cannot install a
    program, and the configured command is what a maintainer fixes."""
    if exit_code not in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
        return None
    key = f"checks.{name}.command"
    program = program_of(command)
    if program is None or find(program, repo, roots) is not None:
        program = not_found_in(output) if exit_code == EXIT_NOT_FOUND else None
    if program is not None:
        hidden = find(program, repo) if roots is not None else None
        if hidden:
            return (
                f"the check `{name}` could not start: `{program}` not found in the agent jail (it is {hidden}, in a "
                f"folder the jail does not show); fix {key} in {policy_file}, now {command!r}, or add that "
                "folder to sandbox.read_only"
            )
        return (
            f"the check `{name}` could not start: `{program}` not found; fix {key} in {policy_file}, "
            f"now {command!r}, or install `{program}`"
        )
    why = "a program it runs was not found" if exit_code == EXIT_NOT_FOUND else "a program it runs cannot be executed"
    return (
        f"the check `{name}` could not start (exit {exit_code}: {why}; see its log); fix {key} in {policy_file}, "
        f"now {command!r}, or install what it needs"
    )
