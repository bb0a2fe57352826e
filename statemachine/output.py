"""The only writer to stdout: human text, or one versioned JSON object per command (--json)."""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_VERSION = 1


class Output:
    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def emit(self, kind: str, data: dict[str, Any], text: str | None = None) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps({"version": JSON_VERSION, "kind": kind, **data}, indent=2, default=str) + "\n")
        elif text is not None:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """Progress text for humans; suppressed in --json mode."""
        if not self.as_json:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
