"""How orch runs the small tools: ``<tool> --version`` for `orch health`, `gh auth token`, bubblewrap's probe.

orch starts processes in three ways, each for a reason:

- git runs through plumbum in adapters/gitrun.py, with its hardened options and an environment built for it;
- the small tools run through plumbum here: one short command, its whole output at once, a timeout, the exit codes
  it may end with;
- agents and checks run on ``subprocess`` in adapters/process.py, because plumbum cannot do what that runner is for
  (its docstring says more): stop the whole process group, time out on silence, stream the output into a capped log
  as it comes, and tell the pid as soon as the child exists.

``run_tool`` is the one way in. As in gitrun, plumbum is imported on the first call (a command that runs no tool does
not pay for the import), and the local machine it runs on has an empty environment of its own: the tool gets exactly
the environment the caller passes (orch's own when it passes none, as ``subprocess.run`` did), never a copy of
os.environ merged under it, so a token a caller scrubs stays out. Standard input is /dev/null; output is decoded here,
with an undecodable byte replaced and universal newlines. The exit codes a call accepts are plumbum's ``retcode``
(any, unless told). Nothing plumbum raises leaves this module: an exit code the call does not accept
(``ProcessExecutionError``) becomes ``ToolFailed`` with the code and output; a timeout (``ProcessTimedOut``) and a tool
that cannot start (``OSError``, ``CommandNotFound``) become ``ToolError``.
"""

from __future__ import annotations

import locale
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from statemachine.errors import OrchError

__all__ = ["Retcode", "ToolError", "ToolFailed", "run_tool"]

# The exit codes a call accepts, as plumbum's ``retcode``: one code, several, or None for any.
Retcode = int | tuple[int, ...] | None


class ToolError(OrchError):
    """A tool did not run to its end: it could not start, or did not finish within its timeout. ``reason`` is what
    went wrong, worded as ``subprocess`` worded it (the OSError's text; "Command '[...]' timed out after N
    seconds"), for a caller that words its own message."""

    def __init__(self, message: str, hint: str | None, reason: str) -> None:
        super().__init__(message, hint)
        self.reason = reason


class ToolFailed(ToolError):
    """A tool exited with a code its caller does not accept (plumbum's ProcessExecutionError, translated)."""

    def __init__(self, message: str, hint: str | None, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(message, hint, f"exit code {returncode}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class Plumbum:
    """plumbum, imported on the first command orch runs through it (a tool here, git in adapters/gitrun.py: the import
    costs tens of milliseconds that a command running neither need not pay), and a local machine whose own
    environment is empty: each command gets exactly the environment its caller passes (plumbum's ``local`` would merge
    a snapshot of os.environ under it)."""

    _lock = threading.Lock()
    _loaded: Plumbum | None = None

    def __init__(self) -> None:
        from plumbum.commands.processes import CommandNotFound, ProcessExecutionError, ProcessTimedOut
        from plumbum.machines.local import LocalCommand, LocalMachine

        # no encoding: the bytes come back as the tool wrote them, and are decoded here (plumbum would drop a byte
        # it cannot decode)
        machine = type("OrchMachine", (LocalMachine,), {"env": {}, "custom_encoding": None})()
        self.command_class: Any = type("OrchCommand", (LocalCommand,), {"machine": property(lambda _: machine)})
        self.execution_error: type[OSError] = ProcessExecutionError
        self.timed_out: type[Exception] = ProcessTimedOut
        self.not_found: type[Exception] = CommandNotFound

    @classmethod
    def get(cls) -> Plumbum:
        loaded = cls._loaded
        if loaded is None:
            with cls._lock:
                if cls._loaded is None:
                    cls._loaded = cls()
                loaded = cls._loaded
        return loaded


def _text(data: object) -> str:
    """Output as ``subprocess.run(text=True, errors="replace")`` would read it."""
    if data is None:
        return ""
    raw = data if isinstance(data, bytes) else str(data).encode()
    return raw.decode(locale.getpreferredencoding(False), "replace").replace("\r\n", "\n").replace("\r", "\n")


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    retcode: Retcode = None,
) -> tuple[int, str, str]:
    """Run ``argv`` (its first word a program's path) and return its exit code, stdout and stderr (text).

    ``env``: the tool's whole environment (None: orch's own). ``retcode``: the exit codes this call accepts (None:
    any); any other raises ``ToolFailed``. Raises ``ToolError`` when the tool cannot start or outlives ``timeout``.
    """
    program, args = argv[0], list(argv[1:])
    pb = Plumbum.get()
    full_env = dict(os.environ if env is None else env)
    try:
        command = pb.command_class(program, None)[args].with_env(**full_env)
        code, out, err = command.run(retcode=retcode, timeout=timeout, stdin=subprocess.DEVNULL)
    except pb.execution_error as exc:
        # plumbum keeps the output as given in ``args`` (its own attributes hold an ascii() form of bytes)
        code, stdout, stderr = int(exc.args[1]), _text(exc.args[2]), _text(exc.args[3])
        raise ToolFailed(
            f"{program} exited with code {code}: {(stderr or stdout).strip()}", None, code, stdout, stderr
        ) from None
    except pb.timed_out:
        reason = f"Command '{list(argv)}' timed out after {timeout} seconds"
        raise ToolError(f"{program} cannot run: {reason}", None, reason) from None
    except (OSError, pb.not_found) as exc:
        raise ToolError(f"{program} cannot run: {exc}", None, str(exc)) from None
    return int(code), _text(out), _text(err)
