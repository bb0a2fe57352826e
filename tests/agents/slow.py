"""A scripted agent that works for a while (printing as it goes), then makes an honest change and reports."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
counter = os.environ.get("AGENT_COUNTER")
_prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text() if os.environ.get("ORCH_PROMPT_FILE") else ""
_issue = _prompt.split("issue #", 1)[1].split(":", 1)[0] if "issue #" in _prompt else "?"
if counter:
    with open(counter, "a") as fh:
        fh.write(f"{os.getpid()} start {_issue} {time.time()}\n")
deadline = time.time() + seconds
while time.time() < deadline:
    print("working...", flush=True)
    time.sleep(0.1)
root = Path.cwd()
number = os.environ.get("ORCH_PROMPT_FILE", "")
prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
issue = prompt.split("issue #", 1)[1].split(":", 1)[0]
(root / f"feature_{issue}.py").write_text(f"VALUE = {issue}\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(
    json.dumps(
        {
            "status": "completed",
            "summary": f"feature {issue}",
            "changed_files": [f"feature_{issue}.py"],
            "validation": [{"command": "true", "result": "passed"}],
        }
    )
)
if counter:
    with open(counter, "a") as fh:
        fh.write(f"{os.getpid()} done {time.time()}\n")
