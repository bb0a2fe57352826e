"""What a parent run costs on top of its children: a plan of N children in W waves, with an agent that
returns at once, on the local tracker.

Usage: python bench/plan_overhead.py [--width 4] [--depth 3] [--concurrency 2]
Builds a plan of depth waves of width children each (every child depends on the whole wave before it), runs
`orch run` on the parent, and prints the wall time of the whole tree and per child.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENT = r"""
import json, os, re, sys
from pathlib import Path
prompt = sys.stdin.read()
report = Path(os.environ["ORCH_REPORT_PATH"])
if os.environ.get("ORCH_MODE") == "planning":
    report.write_text(Path(sys.argv[1]).read_text())
    raise SystemExit(0)
key = re.search(r"<!-- orch:child parent=\d+ key=([a-z0-9-]+) -->", prompt).group(1)
Path("pkg").mkdir(exist_ok=True)
Path(f"pkg/{key}.py").write_text(f"NAME = {key!r}\n")
report.write_text(json.dumps({"status": "completed", "summary": key, "changed_files": [f"pkg/{key}.py"], "validation": []}))
"""


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        (repo / "README.md").write_text("bench\n")
        children, previous = [], []
        for wave in range(args.depth):
            keys = [f"w{wave}-c{i}" for i in range(args.width)]
            children += [
                {
                    "key": k,
                    "title": k,
                    "body": k,
                    "acceptance_criteria": ["exists"],
                    "ownership": [f"pkg/{k}.py"],
                    "depends_on": previous,
                    "size": "xs",
                }
                for k in keys
            ]
            previous = keys
        plan = root / "plan.json"
        plan.write_text(json.dumps({"summary": "bench", "children": children}))
        agent = root / "agent.py"
        agent.write_text(AGENT)
        (repo / ".orch").mkdir()
        (repo / ".orch" / "policy.yaml").write_text(
            f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{agent}', '{plan}']\n"
            f"plan:\n  max_children: {len(children)}\n  child_concurrency: {args.concurrency}\n"
        )
        (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "init")
        orch = [sys.executable, "-m", "statemachine"]
        subprocess.run(
            [*orch, "issue", "new", "Bench parent", "--label", "agent:plan-auto", "--repo", str(repo)],
            check=True,
            capture_output=True,
        )
        started = time.perf_counter()
        proc = subprocess.run(
            [*orch, "run", "--issue", "1", "--json", "--repo", str(repo)], capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"the parent did not reach review: {proc.stderr}{proc.stdout[-2000:]}")
        steps = json.loads(proc.stdout)["steps"]
    n = len(children)
    waves = sum(1 for s in steps if s["fired"] and s["fired"]["trigger"] == "wave")
    print(
        f"plan of {n} children ({args.depth} waves of {args.width}, child concurrency {args.concurrency}): "
        f"{wall:.1f} s wall for the whole tree, {wall / n:.2f} s per child, {waves} wave steps"
    )


if __name__ == "__main__":
    main()
