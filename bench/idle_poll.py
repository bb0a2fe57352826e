"""Requests per idle poll against the GitHub emulator, with nothing resting in review and then with issues that do.

Three modes, each once warm (the first poll of a tracker lists everything, the second reads its first window):
- a long-running daemon (`orch daemon --interval-seconds 0.5`): requests per idle tick;
- `orch daemon --once`, a fresh process each time in the same clone: requests per idle run;
- `orch daemon --once --poll-cursor FILE` in a fresh copy of the clone each time, without its `.orch/state/` (the
  GitHub Actions mode: a fresh runner, the cursor carried in the Actions cache): requests per idle run.
The target (docs/performance.md): 1 conditional request, answered 304, whatever rests in review. With issues resting
in review the daemon is measured twice: at GitHub's pace for the activity feed (X-Poll-Interval 60 s: at a 0.5 s
interval the ticks read the issue list) and with the feed allowed at every tick (what a daemon polling every minute
or more, or an Actions job, does).

Usage: python bench/idle_poll.py [--ticks 10] [--issues 50] [--review 3]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _github import OWNER, REPO, GitHubEmulator, orch_env, prepared_clone, run_orch
from budgets import check, enforce

TARGET = 1.0


def daemon_ticks(gh: GitHubEmulator, work: Path, ticks: int) -> tuple[float, int]:
    """Requests per tick of a daemon polling every 0.5 s. A tick's requests arrive together, ticks 0.5 s apart: the
    requests are grouped into ticks by the gaps between them. Prints what the ticks read."""
    interval = 0.5
    daemon = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "daemon", "--repo", str(work), "--json", "--interval-seconds", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
        env=orch_env(),
    )
    time.sleep(interval * 6)  # the first polls: the full listing, the first window, the feed's first read
    gh.reset_counts()
    time.sleep(interval * ticks)
    log = list(gh.log)
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=60)
    groups: list[list[str]] = []
    last = -1e9
    for entry in log:
        if entry.at - last > interval / 2:
            groups.append([])
        groups[-1].append(f"{entry.path.rsplit('/', 1)[-1]} {entry.status}")
        last = entry.at
    kinds = Counter(" + ".join(group) for group in groups)
    print("    ticks: " + "; ".join(f"{n} x {what}" for what, n in kinds.most_common()))
    return len(log) / max(1, len(groups)), sum(1 for e in log if e.status == 304)


def once_runs(gh: GitHubEmulator, work: Path, runs: int = 3) -> tuple[float, int]:
    for _ in range(2):
        run_orch(work, "daemon", "--once", "--json")
    gh.reset_counts()
    for _ in range(runs):
        proc = run_orch(work, "daemon", "--once", "--json")
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    requests = list(gh.requests)
    return len(requests) / runs, sum(1 for _m, _p, s in requests if s == 304)


def fresh_runner_runs(gh: GitHubEmulator, work: Path, runs: int = 3) -> tuple[float, int]:
    carry = work.parent / "actions-cache" / "cursor.json"
    carry.unlink(missing_ok=True)

    def fresh_once() -> None:
        runner = work.parent / "runner"
        shutil.rmtree(runner, ignore_errors=True)
        shutil.copytree(work, runner, symlinks=True, ignore=lambda d, _n: ["state"] if d.endswith(".orch") else [])
        proc = run_orch(runner, "daemon", "--once", "--json", "--poll-cursor", str(carry))
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)

    for _ in range(2):
        fresh_once()
    gh.reset_counts()
    for _ in range(runs):
        fresh_once()
    requests = list(gh.requests)
    return len(requests) / runs, sum(1 for _m, _p, s in requests if s == 304)


def report(what: str, per: float, not_modified: int) -> None:
    print(f"  {what}: {per:.2f} requests ({not_modified} answered 304 in all); {per / TARGET:.2f}x the target of 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--issues", type=int, default=50, help="open issues that are not eligible (no label)")
    parser.add_argument("--review", type=int, default=3, help="issues delivered first, then resting in review")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, GitHubEmulator(Path(tmp) / "gh") as gh:
        work = prepared_clone(gh, Path(tmp))
        for i in range(args.issues):
            gh.create_issue(OWNER, REPO, f"idle {i}", body="not for orch", user="alice")
        print(f"idle polling, {args.issues} open issues without an authorizing label:")
        results = []
        tick = daemon_ticks(gh, work, args.ticks)
        report("nothing in review, per daemon tick", *tick)
        results.append(check("idle_tick", tick[0]))
        once = once_runs(gh, work)
        report("nothing in review, per `daemon --once` run", *once)
        results.append(check("idle_once", once[0]))
        fresh = fresh_runner_runs(gh, work)
        report("nothing in review, per `daemon --once` on a fresh runner carrying the cursor", *fresh)
        results.append(check("idle_once", fresh[0]))
        for i in range(args.review):
            n = gh.create_issue(OWNER, REPO, f"feature {i}", body=f"feature {i}: add sub(a, b).", user="alice")
            gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
            proc = run_orch(work, "daemon", "--once", "--json")
            if '"outcome": "review"' not in proc.stdout:
                raise SystemExit(f"issue #{n} did not reach review:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        tick = daemon_ticks(gh, work, args.ticks)
        report(f"{args.review} resting in review, per daemon tick (GitHub's pace for the feed: 60 s)", *tick)
        results.append(check("idle_tick", tick[0], review=args.review))
        gh.feed_poll_interval = 0  # every tick may read the activity feed: the path a slower daemon takes
        tick = daemon_ticks(gh, work, args.ticks)
        report(f"{args.review} resting in review, per daemon tick (the feed allowed every tick)", *tick)
        results.append(check("idle_tick", tick[0], review=args.review))
        gh.feed_poll_interval = 60
        once = once_runs(gh, work)
        report(f"{args.review} resting in review, per `daemon --once` run", *once)
        results.append(check("idle_once", once[0], review=args.review))
        fresh = fresh_runner_runs(gh, work)
        report(f"{args.review} resting in review, per `daemon --once` on a fresh runner carrying the cursor", *fresh)
        results.append(check("idle_once", fresh[0], review=args.review))
    enforce(results)


if __name__ == "__main__":
    main()
