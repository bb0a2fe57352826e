"""Requests per idle daemon tick against the GitHub emulator (the aim: one conditional request per authorizing label).

Usage: python bench/idle_poll.py [--ticks 10]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _github import OWNER, REPO, GitHubEmulator, orch_env, prepared_clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--issues", type=int, default=50, help="open issues that are not eligible (no label)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, GitHubEmulator(Path(tmp) / "gh") as gh:
        work = prepared_clone(gh, Path(tmp))
        for i in range(args.issues):
            gh.create_issue(OWNER, REPO, f"idle {i}", body="not for orch", user="alice")
        interval = 0.5
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "statemachine",
                "daemon",
                "--repo",
                str(work),
                "--json",
                "--interval-seconds",
                str(interval),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=orch_env(),
        )
        time.sleep(interval * 3)  # the first poll fills the ETag cache
        gh.reset_counts()
        time.sleep(interval * args.ticks)
        requests = list(gh.requests)
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    not_modified = sum(1 for _m, _p, s in requests if s == 304)
    ticks = max(1, round(args.ticks))
    print(
        f"idle polling: {len(requests)} requests over about {ticks} ticks "
        f"({len(requests) / ticks:.2f} per tick; {not_modified} were 304 Not Modified)"
    )
    for entry in requests[:6]:
        print("  ", entry)


if __name__ == "__main__":
    main()
