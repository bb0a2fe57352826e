"""Reads an agent CLI's JSON-lines event stream (codex exec --json, claude -p --output-format stream-json)."""

from __future__ import annotations

import json
from typing import Any


def parse_events(text: str) -> list[dict[str, Any]]:
    """The JSON events of an agent's log; other lines (the CLI's stderr) are skipped."""
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            events.append(event)
    return events
