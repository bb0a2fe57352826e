"""Helpers for tests that drive real runs: small Python agent scripts, policies that point at them,
and read-only views of the state database, the local tracker and the git repository."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemachine.adapters.local import LocalTracker
from statemachine.store import Store

STATE_DB = Path(".orch") / "state" / "orch.db"

# Every agent script starts with this: it reads the prompt, counts its own runs in a file outside
# the repository and gets small helpers to edit the worktree and write the completion report.
PRELUDE = """\
import json, os, subprocess, sys, time
from pathlib import Path

PROMPT = sys.stdin.read()
WT = Path(os.environ["ORCH_WORKTREE"])
REPORT = Path(os.environ["ORCH_REPORT_PATH"])
PROMPT_FILE = Path(os.environ["ORCH_PROMPT_FILE"])
STATE = Path({state!r})
STATE.mkdir(parents=True, exist_ok=True)
with open(STATE / "runs.log", "a") as _fh:
    _fh.write(f"{{os.getpid()}} {{REPORT}}\\n")
(STATE / f"prompt-{{sum(1 for _ in open(STATE / 'runs.log'))}}.md").write_text(PROMPT)


def write(rel, text):
    path = WT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def report(changed, status="completed", summary="Did the work.", **extra):
    data = {{"status": status, "summary": summary, "changed_files": list(changed), "validation": []}}
    data.update(extra)
    REPORT.write_text(json.dumps(data))

"""


@dataclass
class Agent:
    script: Path
    state: Path  # folder outside the repository: runs.log (one line per run), prompt-N.md, pid files

    @property
    def runs(self) -> int:
        log = self.state / "runs.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def prompt(self, n: int) -> str:
        return (self.state / f"prompt-{n}.md").read_text()


def make_agent(tmp: Path, body: str, name: str = "agent") -> Agent:
    """Write an agent script ``tmp/name.py`` whose behaviour is ``body`` (after PRELUDE)."""
    state = tmp / f"{name}-state"
    state.mkdir(parents=True, exist_ok=True)  # the jail lets the agent write here (policy_text's sandbox.writable)
    script = tmp / f"{name}.py"
    script.write_text(PRELUDE.format(state=str(state)) + textwrap.dedent(body))
    return Agent(script, state)


GOOD_AGENT = """
write("app.py", (WT / "app.py").read_text() + "\\n\\ndef sub(a, b):\\n    return a - b\\n")
write("docs/notes.md", "sub() subtracts.\\n")
print("agent: edited app.py and docs/notes.md", flush=True)
report(["app.py", "docs/notes.md"], summary="Added sub() and a note.")
"""


def blocked_path_body(path: str) -> str:
    """An agent that writes one file at ``path`` (a blocked path) and reports it truthfully."""
    return f"""
write({path!r}, "X=1\\n")
report([{path!r}])
"""


GOOD_APP = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
GOOD_NOTES = "sub() subtracts.\n"


def policy_text(agent: Agent | None, *, agent_cfg: dict[str, Any] | None = None, **sections: Any) -> str:
    """A repository policy extending the default one; each section is written as inline JSON (valid YAML)."""
    cfg: dict[str, Any] = {
        "kind": "command",
        "command": sys.executable,
        "args": [str(agent.script)] if agent else [],
        "timeout_seconds": 60,
        "idle_timeout_seconds": 30,
    }
    cfg.update(agent_cfg or {})
    data: dict[str, Any] = {"version": 1, "extends": "default", "tracker": {"kind": "local"}, "agent": cfg}
    if agent is not None:  # the test's instrumentation: the agent counts its runs in a folder outside the repository
        data["sandbox"] = {"writable": [str(agent.state)]}
    data.update(sections)
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in data.items())


def write_policy(repo: Path, agent: Agent | None, **kw: Any) -> Path:
    path = repo / ".orch" / "policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(policy_text(agent, **kw))
    return path


@contextmanager
def tracker(repo: Path) -> Iterator[LocalTracker]:
    store = Store(repo / STATE_DB)
    try:
        yield LocalTracker(store)
    finally:
        store.close()


def db_dump(repo: Path) -> list[str]:
    """Every row of the state database, as SQL text, to compare before and after a command."""
    conn = sqlite3.connect(str(repo / STATE_DB))
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def comments_of_kind(repo: Path, number: int, kind: str) -> list[str]:
    """Bodies of the runner's comments of one kind: ``claim``, ``report-`` (any report), ``report-review``,
    ``report-blocked``; ``""`` gives every comment."""
    with tracker(repo) as t:
        bodies = [c.body for c in t.get_issue(number).comments]
    if kind == "claim":
        return [b for b in bodies if "<!-- orch:claim " in b or " kind=claim -->" in b]
    return [b for b in bodies if f" kind={kind}" in b] if kind else bodies


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def processes_with(needle: str) -> list[int]:
    """Live processes (on this machine, whatever PID namespace they run in) whose command line contains ``needle``:
    a jailed agent's own PIDs mean nothing outside its jail, so tests find its processes by what they run."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def processes_under(folder: Path) -> list[int]:
    """Live processes whose working directory is inside ``folder`` (a repository's worktrees): an agent's, jailed or not."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if os.readlink(entry / "cwd").startswith(str(folder)) and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
