"""`orch status` on the GitHub emulator: requests and wall time over labelled issues, in a repository with a history.

The budget (docs/performance.md): requests grow with the labelled issues, not with the repository's history:
ceil(labelled / 100) + 5 (the `agent:plan-auto` and `agent:child` lists, the labellers' permissions, the identity).

Usage: python bench/status_scale.py [--issues 5000] [--others 0] [--events 0] [--repeat 1] [--profile FILE]
       python bench/status_scale.py --issues 5 --others 2000 --events 10000
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _github import OWNER, REPO, GitHubEmulator, orch_env, prepared_clone, run_orch


def timed_status(work: Path, profile: str | None) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """One `orch status --json`: the process, its wall time and its CPU (under cProfile to `profile` if given)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "statemachine", "status", "--json"]
        proc = subprocess.run([*cmd, "--repo", str(work)], capture_output=True, text=True, env=orch_env())
    else:
        proc = run_orch(work, "status", "--json")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=5000, help="open issues labelled agent:auto")
    parser.add_argument("--others", type=int, default=0, help="other issues, never labelled for orch")
    parser.add_argument("--events", type=int, default=0, help="label events on the other issues (the history)")
    parser.add_argument("--repeat", type=int, default=1, help="run `orch status` this many times (the best is shown)")
    parser.add_argument("--profile", metavar="FILE", help="run orch under cProfile, writing its stats to FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, GitHubEmulator(Path(tmp) / "gh") as gh:
        work = prepared_clone(gh, Path(tmp))
        t0 = time.perf_counter()
        others = [gh.create_issue(OWNER, REPO, f"other {i}", body="y", user="alice") for i in range(args.others)]
        for k in range(args.events if others else 0):
            gh.add_label_event(OWNER, REPO, others[k % len(others)], "bug" if k % 2 else "enhancement", "alice")
        for i in range(args.issues):
            n = gh.create_issue(OWNER, REPO, f"issue {i}", body="x", user="alice")
            gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
        made = time.perf_counter() - t0
        wall = cpu = math.inf
        for _ in range(max(1, args.repeat)):
            gh.reset_counts()
            proc, w, c = timed_status(work, args.profile)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            wall, cpu = min(wall, w), min(cpu, c)
            data = json.loads(proc.stdout)
            requests = list(gh.requests)
    kinds = Counter(
        "graphql"
        if p == "/graphql"
        else "events"
        if "/events" in p
        else "permission"
        if "/permission" in p
        else "issue lists"
        if p.split("?")[0].endswith("/issues")
        else p.split("?")[0]
        for _m, p, _s in requests
    )
    budget = math.ceil(args.issues / 100) + 5
    print(
        f"orch status over {args.issues} labelled issues, {args.others} others, {args.events} label events "
        f"(made in {made:.1f}s):"
    )
    print(f"  {len(requests)} requests ({dict(kinds)}), {len(data['issues'])} issues reported")
    print(f"  wall time {wall:.2f}s (the emulator included), orch's CPU {cpu:.2f}s")
    print(f"  budget ceil({args.issues}/100) + 5 = {budget}: {len(requests) / budget:.2f}x the budget")


if __name__ == "__main__":
    main()
