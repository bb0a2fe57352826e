"""A scripted planning-and-implementing agent for parent runs, and a repository policy that points at it.

The agent is one real process per run. In planning mode (ORCH_MODE=planning) it writes the plan found in
PLAN.json beside it; otherwise it implements the child named by orch's marker in the prompt: it writes
pkg/<key>.py, plus whatever EDITS.json asks for that key (a planted conflict, an edit of a blocked file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import git

AGENT = r"""
import json, os, re, sys
from pathlib import Path

here = Path(__file__).parent
prompt = sys.stdin.read()
mode = os.environ.get("ORCH_MODE", "")
with open(here / "runs.log", "a") as fh:
    m = re.search(r"<!-- orch:child parent=\d+ key=([a-z0-9-]+) -->", prompt)
    fh.write(json.dumps({"mode": mode or "implement", "key": m.group(1) if m else None}) + "\n")
report = Path(os.environ["ORCH_REPORT_PATH"])
if mode == "planning":
    extra = json.loads((here / "PLANNING_EDITS.json").read_text()) if (here / "PLANNING_EDITS.json").exists() else {}
    for rel, text in extra.items():
        try:
            Path(rel).parent.mkdir(parents=True, exist_ok=True)
            Path(rel).write_text(text)
            outcome = "written"
        except OSError as exc:  # the jail mounts the planning worktree read-only
            outcome = f"refused: errno {exc.errno}"
        with open(here / "planning-edits.log", "a") as fh:
            fh.write(f"{rel} {outcome}\n")
    report.write_text((here / "PLAN.json").read_text())
    sys.exit(0)
if m is None:  # the parent's integration branch, sent back by a review: answer it on that branch
    import subprocess
    base = re.search(r"base commit `([0-9a-f]{40})`", prompt).group(1)
    Path("docs").mkdir(exist_ok=True)
    Path("docs/notes.md").write_text("\n".join(re.findall(r"^- review: .*$", prompt, re.M)) + "\n")
    changed = subprocess.run(["git", "diff", "--name-only", base], capture_output=True, text=True).stdout.split()
    changed += subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], capture_output=True, text=True).stdout.split()
    report.write_text(json.dumps({"status": "completed", "summary": "answered the review", "changed_files": sorted(set(changed)),
                                  "validation": []}))
    sys.exit(0)
key = m.group(1)
if (here / "SLEEP").exists():  # a slow child: it takes this long
    import time
    time.sleep(float((here / "SLEEP").read_text()))
edits = json.loads((here / "EDITS.json").read_text()).get(key, {}) if (here / "EDITS.json").exists() else {}
changed = []
Path("pkg").mkdir(exist_ok=True)
Path(f"pkg/{key.replace('-', '_')}.py").write_text(f"NAME = {key!r}\n")
changed.append(f"pkg/{key.replace('-', '_')}.py")
for rel, text in edits.items():
    Path(rel).parent.mkdir(parents=True, exist_ok=True)
    Path(rel).write_text(text)
    changed.append(rel)
report.write_text(json.dumps({"status": "completed", "summary": f"implemented {key}",
                              "changed_files": sorted(set(changed)), "validation": []}))
"""


def child(
    key: str, deps: tuple[str, ...] = (), owns: tuple[str, ...] | None = None, title: str | None = None
) -> dict[str, Any]:
    return {
        "key": key,
        "title": title or f"Part {key}",
        "body": f"Implement {key}.",
        "acceptance_criteria": [f"pkg/{key.replace('-', '_')}.py exists"],
        "ownership": list(owns or (f"pkg/{key.replace('-', '_')}.py",)),
        "depends_on": list(deps),
        "size": "s",
    }


DIAMOND = [child("a"), child("b", ("a",)), child("c", ("a",)), child("d", ("b", "c"))]


class PlanAgent:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.script = folder / "agent.py"
        self.script.write_text(AGENT)

    def plan(self, children: list[dict[str, Any]], summary: str = "Split by module.") -> None:
        (self.folder / "PLAN.json").write_text(json.dumps({"summary": summary, "children": children}))

    def raw_plan(self, data: Any) -> None:
        (self.folder / "PLAN.json").write_text(json.dumps(data))

    def edits(self, by_key: dict[str, dict[str, str]]) -> None:
        (self.folder / "EDITS.json").write_text(json.dumps(by_key))

    def planning_edits(self, files: dict[str, str]) -> None:
        (self.folder / "PLANNING_EDITS.json").write_text(json.dumps(files))

    def runs(self) -> list[dict[str, Any]]:
        log = self.folder / "runs.log"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def write_policy(repo: Path, agent: PlanAgent, extra: str = "", tracker: str = "") -> None:
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        "version: 1\nextends: default\n"
        + tracker
        + f"agent:\n  kind: command\n  command: {sys.executable}\n  args: ['{agent.script}']\n"
        "  timeout_seconds: 120\n  idle_timeout_seconds: 60\n"
        f"checks:\n  unit: {{command: '{sys.executable} -m unittest -q', timeout_seconds: 120}}\n"
        + ("" if "sandbox:" in extra else f"sandbox:\n  writable: ['{agent.folder}']\n")
        + extra
    )  # its plan, its run log
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
