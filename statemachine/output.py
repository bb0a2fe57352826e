"""The only writer to stdout: human text, or one versioned JSON object per command (--json).

A reader that goes away (`orch run --issue 3 | head -1`) does not stop the command: the first write to the closed
pipe marks the output closed, standard output is pointed at /dev/null, and what follows is dropped. The command goes on
to its end (a run is not left half-way in `implementing`) and exits with its own code; what it did is in the store, the
run's evidence and, for `orch run`, `orch show`."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

JSON_VERSION = 1


class Output:
    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        self.closed = False  # the reader closed standard output: the rest is dropped

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            _drop_stdout()

    def emit(self, kind: str, data: dict[str, Any], text: str | None = None) -> None:
        if self.as_json:
            self._write(json.dumps({"version": JSON_VERSION, "kind": kind, **data}, indent=2, default=str) + "\n")
        elif text is not None:
            self._write(text if text.endswith("\n") else text + "\n")

    def line(self, text: str) -> None:
        """Progress text for humans; suppressed in --json mode."""
        if not self.as_json:
            self._write(text + "\n")


def _drop_stdout() -> None:
    """Point file descriptor 1 at /dev/null: what is still buffered, and Python's flush at exit, then go nowhere."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(null)
