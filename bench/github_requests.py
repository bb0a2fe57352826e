"""Requests (REST, and one GraphQL query) of one happy-path delivery (claim to draft pull request and review label) against the GitHub emulator.

Usage (from the repository root, after `bash .ci/run` installed GitHub's OpenAPI description):
    python bench/github_requests.py
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from _github import OWNER, REPO, GitHubEmulator, prepared_clone, run_orch
from budgets import check, enforce, limit


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, GitHubEmulator(Path(tmp) / "gh") as gh:
        work = prepared_clone(gh, Path(tmp))
        number = gh.create_issue(OWNER, REPO, "Add sub", body="Add sub(a, b).", user="alice")
        gh.add_label_event(OWNER, REPO, number, "agent:auto", "alice")
        gh.reset_counts()
        proc = run_orch(work, "run", "--issue", str(number))
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        requests = list(gh.requests)
        again = len(gh.requests)
        run_orch(work, "run", "--issue", str(number))
        rerun = len(gh.requests) - again
    # `orch daemon --once` (the GitHub Actions mode) in a clone of its own, nothing resting in review
    with tempfile.TemporaryDirectory() as tmp, GitHubEmulator(Path(tmp) / "gh") as gh:
        work = prepared_clone(gh, Path(tmp))
        gh.reset_counts()
        run_orch(work, "daemon", "--once")  # the clone's first poll: the labelled issues in full (none yet)
        cold = len(gh.requests)
        number = gh.create_issue(OWNER, REPO, "Add mul", body="Add mul(a, b).", user="alice")
        gh.add_label_event(OWNER, REPO, number, "agent:auto", "alice")
        before = len(gh.requests)
        proc = run_orch(work, "daemon", "--once")
        once = list(gh.requests)[before:]
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    by_kind = Counter(f"{m} {p.split('/repos/' + OWNER + '/' + REPO)[-1]}" for m, p, _s in requests)
    print(f"happy-path delivery against the emulator: {len(requests)} requests (budget: at most {limit('delivery'):g})")
    for method, path, status in requests:
        print(f"  {method:6} {path} -> {status}")
    print("by endpoint:")
    for key, n in sorted(by_kind.items()):
        print(f"  {n} x {key}")
    print(f"a second `orch run` on the issue (now in review): {rerun} requests, nothing published")
    print(f"a clone's first `orch daemon --once`, nothing labelled: {cold} requests")
    print(f"the next `orch daemon --once`, delivering a newly labelled issue: {len(once)} requests")
    for method, path, status in once:
        print(f"  {method:6} {path} -> {status}")
    enforce([check("delivery", len(requests)), check("rerun", rerun), check("once_delivery", len(once))])


if __name__ == "__main__":
    main()
