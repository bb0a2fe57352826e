"""`orch status` over many labelled issues on the GitHub emulator: wall time and requests.

Usage: python bench/status_scale.py [--issues 5000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _github import OWNER, REPO, GitHubEmulator, prepared_clone, run_orch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, GitHubEmulator(Path(tmp) / "gh") as gh:
        work = prepared_clone(gh, Path(tmp))
        t0 = time.perf_counter()
        for i in range(args.issues):
            n = gh.create_issue(OWNER, REPO, f"issue {i}", body="x", user="alice")
            gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
        made = time.perf_counter() - t0
        gh.reset_counts()
        start = time.perf_counter()
        proc = run_orch(work, "status", "--json")
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        data = json.loads(proc.stdout)
        requests = list(gh.requests)
    lists = sum(
        1 for m, p, _s in requests if m == "GET" and p.endswith("/issues") or "/issues?" in p or p.endswith("/issues")
    )
    print(f"orch status over {args.issues} labelled issues (created in {made:.1f}s):")
    print(f"  wall time {wall:.1f}s, {len(requests)} requests, {len(data['issues'])} issues reported")
    print(
        f"  issue-list pages: {sum(1 for m, p, _s in requests if '/events' not in p and '/permission' not in p)}"
        f" (ceil({args.issues}/100) = {-(-args.issues // 100)}); events: {sum(1 for _m, p, _s in requests if '/events' in p)};"
        f" permissions: {sum(1 for _m, p, _s in requests if '/permission' in p)}"
    )
    del lists


if __name__ == "__main__":
    main()
