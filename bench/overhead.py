"""The runner's own time per issue, agent and checks excluded, on a generated repository of many files.

Usage: python bench/overhead.py [--files 50000] [--issues 3]
Prints, per step, the wall time of the runner (the agent's own run time subtracted) and the total.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENT = """import json, os
from pathlib import Path
p = Path("src/pkg0/mod0.py"); p.write_text(p.read_text() + "\\nX = 1\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "bench",
    "changed_files": ["src/pkg0/mod0.py"], "validation": []}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=50000)
    parser.add_argument("--issues", type=int, default=3)
    parser.add_argument(
        "--idle-workspaces", type=int, default=None, help="limits.idle_workspaces (default: the bundled policy's)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from statemachine.engine import Engine
    from statemachine.runtime import open_runtime

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@b",
        }
        t0 = time.perf_counter()
        for i in range(args.files):
            d = repo / "src" / f"pkg{i // 500}"
            if i % 500 == 0:
                d.mkdir(parents=True, exist_ok=True)
            (d / f"mod{i % 500}.py").write_text(f"VALUE_{i} = {i}\n")
        (repo / "agent.py").write_text(AGENT)
        (repo / ".orch").mkdir()
        (repo / ".orch" / "policy.yaml").write_text(
            f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{repo / 'agent.py'}']\n"
            + (f"limits:\n  idle_workspaces: {args.idle_workspaces}\n" if args.idle_workspaces is not None else "")
        )
        (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
        print(f"generated {args.files} files and committed them in {time.perf_counter() - t0:.1f}s")
        rt = open_runtime(repo, None)
        per_issue = []
        steps: dict[str, list[float]] = {}
        try:
            engine = Engine(rt)
            for k in range(args.issues):
                issue = rt.tracker.create_issue(f"bench {k}", "change mod0", ["agent:auto"])  # type: ignore[attr-defined]
                total = 0.0
                agent_seconds = 0.0
                while True:
                    start = time.perf_counter()
                    out = engine.step(issue.number)
                    took = time.perf_counter() - start
                    if out.fired is None:
                        break
                    facts = rt.store.facts(out.run_id)
                    if out.fired.transition.trigger in ("start", "retry"):
                        agent_seconds = float((facts.get("agent") or {}).get("duration_seconds", 0))
                        took -= agent_seconds
                    steps.setdefault(out.fired.transition.trigger, []).append(took)
                    total += took
                    if out.dest in ("review", "blocked"):
                        break
                assert out.dest == "review", out
                per_issue.append(total)
        finally:
            rt.close()
    print(f"runner overhead per issue on {args.files} files (agent excluded), {args.issues} issues:")
    for trigger, values in steps.items():
        print(f"  {trigger:10} mean {sum(values) / len(values):6.2f}s")
    print(
        f"  total      mean {sum(per_issue) / len(per_issue):6.2f}s  min {min(per_issue):.2f}s  max {max(per_issue):.2f}s"
    )
    later = per_issue[1:]
    if later:  # the first issue checks the repository out; later ones take the workspace it left (when kept)
        print(f"  first issue {per_issue[0]:.2f}s; later issues mean {sum(later) / len(later):.2f}s (target <= 1 s)")
    print(json.dumps({"files": args.files, "per_issue_seconds": per_issue}))


if __name__ == "__main__":
    main()
