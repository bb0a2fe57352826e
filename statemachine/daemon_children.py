"""The daemon's child processes: stop one, read its result, find its agent's log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group: `orch run` stops its agent and exits, leaving the issue resumable."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def latest_agent_log(repo: Path, run_id: str | None) -> Path | None:
    if not run_id:
        return None
    folder = repo / ".orch" / "runs" / run_id
    logs = sorted(folder.glob("attempt-*/agent.log"))
    return logs[-1] if logs else None
