"""Daemon throughput on the local tracker: N issues, a scripted agent that works S seconds, K at once.

Usage: python bench/throughput.py [--issues 200] [--seconds 1] [--concurrency 8] [--agent shell|python]
Prints the wall time against the ideal (issues / K x S) and the overhead per issue.

The ideal counts the agent as taking exactly S seconds, so the agent should take no more: the default agent is a bash
script (its own start, about 4 ms, is the only thing it adds to S). `--agent python` runs the same agent as a Python
script, whose interpreter start (about 40 ms of CPU) is then counted as orch's overhead; it is the agent the figures
before 2026-11-30 were measured with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENT = """import json, os, sys, time
from pathlib import Path
time.sleep(float(sys.argv[1]))
prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
n = prompt.split("issue #", 1)[1].split(":", 1)[0]
Path(f"feature_{n}.txt").write_text(n + "\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "bench",
    "changed_files": [f"feature_{n}.txt"], "validation": []}))
"""


# The same agent in bash: builtins only, besides `sleep`.
SHELL_AGENT = """sleep "$1"
prompt=$(<"$ORCH_PROMPT_FILE")
n=${prompt#*issue #}
n=${n%%:*}
printf '%s\\n' "$n" > "feature_$n.txt"
printf '{"status": "completed", "summary": "bench", "changed_files": ["feature_%s.txt"], "validation": []}' "$n" \\
  > "$ORCH_REPORT_PATH"
"""


def sh(argv: list[str], cwd: Path) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--workers", choices=["warm", "process"], default="warm", help="daemon.workers: forked warm, or fresh processes"
    )
    parser.add_argument(
        "--agent", choices=["shell", "python"], default="shell", help="the scripted agent: bash (default) or Python"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@b",
        }
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        agent = repo / ("agent.sh" if args.agent == "shell" else "agent.py")
        agent.write_text(SHELL_AGENT if args.agent == "shell" else AGENT)
        program = shutil.which("bash") if args.agent == "shell" else sys.executable
        (repo / ".orch").mkdir()
        (repo / ".orch" / "policy.yaml").write_text(
            f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {program}\n"
            f"  args: ['{agent}', '{args.seconds}']\ndaemon:\n  workers: {args.workers}\n"
        )
        (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from statemachine.adapters.local import LocalTracker
        from statemachine.store import Store

        store = Store(repo / ".orch" / "state" / "orch.db")
        tracker = LocalTracker(store)
        for i in range(args.issues):
            tracker.create_issue(
                f"bench {i}", f"bench issue {i}\n\nOwnership:\n- feature_{i + 1}.txt\n", ["agent:auto"]
            )
        store.close()
        start = time.perf_counter()
        before = os.times()
        machine_before = machine_cpu()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "statemachine",
                "daemon",
                "--repo",
                str(repo),
                "--json",
                "--concurrency",
                str(args.concurrency),
                "--max-runs",
                str(args.issues),
                "--interval-seconds",
                "0.2",
            ],
            capture_output=True,
            text=True,
        )
        outcomes = [json.loads(x) for x in proc.stdout.splitlines() if '"run-finished"' in x]
        wall = time.perf_counter() - start
        after = os.times()
        machine = machine_cpu() - machine_before if machine_before is not None else None
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    ideal = args.issues / args.concurrency * args.seconds
    review = sum(1 for o in outcomes if o["outcome"] == "review")
    print(
        f"throughput: {args.issues} issues, {args.agent} agent {args.seconds}s, K={args.concurrency}, local tracker, "
        f"workers {args.workers}, {os.cpu_count()} cores"
    )
    print(f"  reached review: {review}/{args.issues}")
    print(f"  wall time: {wall:.1f}s; ideal {ideal:.1f}s; ratio {wall / ideal:.2f}")
    # the runs are the fork server's children, not the benchmark's, so what os.times() reaps misses part of them
    print(f"  CPU per issue reaped by this benchmark (the daemon and its children): {cpu / args.issues:.3f}s")
    if machine is not None:
        print(
            f"  CPU per issue, whole machine while the daemon ran (/proc/stat; other work counts too): "
            f"{machine / args.issues:.3f}s"
        )
    print(
        f"  overhead per issue (wall x K / issues - agent): {wall * args.concurrency / args.issues - args.seconds:.2f}s"
    )


def machine_cpu() -> float | None:
    """Seconds of CPU the whole machine has spent busy (user, nice, system, irq, softirq) since boot, from
    /proc/stat; None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
