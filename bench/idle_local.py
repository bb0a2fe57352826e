"""The daemon's own cost on the local tracker: an idle poll with issues resting in review, and draining a queue.

Usage: python bench/idle_local.py [--resting 200] [--unlabelled 50] [--seconds 10] [--drain 25 50 100]

Idle: a repository whose local tracker holds ``--resting`` issues resting in review (each with its pull request,
last changed ``--age`` seconds ago, ``--stagger`` seconds apart) and ``--unlabelled`` issues without a label; a long-running daemon polls every
0.2 s for ``--seconds``. Prints the daemon process's CPU (user + system, from /proc/PID/stat) per poll, the polls
counted by the daemon itself (its HTTP state, ``ticks``).

Drain: N queued issues, an agent that returns at once, concurrency 1, ``--max-runs N``. Prints the wall time and the
daemon's own CPU (its children excluded) per issue: flat per issue when draining is O(n), growing with N when O(n^2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = """import json, os, sys
from pathlib import Path
prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
n = prompt.split("issue #", 1)[1].split(":", 1)[0]
Path(f"feature_{n}.txt").write_text(n + "\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "bench",
    "changed_files": [f"feature_{n}.txt"], "validation": []}))
"""
ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
TICK = os.sysconf("SC_CLK_TCK")


def make_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    env = {**os.environ, **ENV}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "agent.py").write_text(AGENT)
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n"
        f"  args: ['{repo / 'agent.py'}']\n"
    )
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: the process itself, not its children


def start_daemon(repo: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "daemon", "--repo", str(repo), "--json", "--interval-seconds", "0.2"]
        + ["--http", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        record = json.loads(line)
        if record.get("event") == "http":
            return proc, str(record["url"])
    raise SystemExit("the daemon stopped before serving its state")


def ticks(url: str) -> int:
    with urllib.request.urlopen(url + "api/v1/state", timeout=10) as resp:
        return int(json.load(resp)["ticks"])


def idle(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from statemachine.adapters.local import LocalTracker
    from statemachine.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        store = Store(repo / ".orch" / "state" / "orch.db")
        tracker = LocalTracker(store)
        then = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - args.age))
        for i in range(args.resting):
            issue = tracker.create_issue(f"resting {i}", f"resting issue {i}", ["agent:auto", "agent:review"])
            run_id = f"run-{issue.number}"
            store.set_run(issue.number, run_id)
            pull = tracker.create_pull(
                issue.number, f"resting {i}", "", f"orch/{issue.number}", "main", "a" * 40, "b" * 40, f"m{i}"
            )
            store.set_fact(run_id, "pull_request", {"number": pull.number, "url": pull.url})
        for i in range(args.unlabelled):
            tracker.create_issue(f"other {i}", f"unlabelled issue {i}", [])
        with store.transaction() as c:
            c.execute("UPDATE issue_state SET state='review', updated_at=?", (then,))
            c.execute(  # each issue came to rest at its own time
                "UPDATE tracker_issues SET created_at=?, updated_at=strftime('%Y-%m-%dT%H:%M:%SZ', ? - number * ?, "
                "'unixepoch')",
                (then, int(time.time() - args.age), args.stagger),
            )
            c.execute(
                "UPDATE tracker_pulls SET created_at=(SELECT updated_at FROM tracker_issues WHERE number=tracker_pulls.issue)"
            )
        store.close()
        proc, url = start_daemon(repo)
        try:
            time.sleep(2.0)  # the first poll lists everything: not an idle poll
            t0, c0, w0 = ticks(url), cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(args.seconds)
            t1, c1, w1 = ticks(url), cpu_seconds(proc.pid), time.perf_counter()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    polls = max(1, t1 - t0)
    cpu = c1 - c0
    print(f"idle: {args.resting} issues resting in review, {args.unlabelled} unlabelled, local tracker, interval 0.2 s")
    print(
        f"  {polls} polls in {w1 - w0:.1f} s; daemon CPU {cpu * 1000:.0f} ms = {cpu / polls * 1000:.1f} ms per poll"
        f" ({cpu / (w1 - w0) * 100:.1f}% of a core)"
    )


def drain(n: int) -> tuple[float, float, int]:
    sys.path.insert(0, str(ROOT))
    from statemachine.adapters.local import LocalTracker
    from statemachine.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        store = Store(repo / ".orch" / "state" / "orch.db")
        tracker = LocalTracker(store)
        for i in range(n):
            tracker.create_issue(
                f"bench {i}", f"bench issue {i}\n\nOwnership:\n- feature_{i + 1}.txt\n", ["agent:auto"]
            )
        store.close()
        start = time.perf_counter()
        proc, _url = start_daemon(repo, "--max-runs", str(n))
        assert proc.stdout is not None
        reached, cpu = 0, 0.0
        for line in proc.stdout:
            record = json.loads(line)
            if record.get("event") == "run-finished":
                reached += record.get("outcome") == "review"
                try:
                    cpu = cpu_seconds(proc.pid)
                except OSError:
                    pass
        proc.wait()
        return time.perf_counter() - start, cpu, reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resting", type=int, default=200)
    parser.add_argument("--unlabelled", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--age", type=float, default=3600.0, help="seconds since the resting issues last changed")
    parser.add_argument("--stagger", type=int, default=60, help="seconds between two resting issues' last changes")
    parser.add_argument("--drain", type=int, nargs="*", default=[25, 50, 100])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.resting, args.unlabelled, args.seconds, args.drain = 20, 5, 2.0, [5, 10]
    idle(args)
    if args.drain:
        print("drain: N queued issues, an agent that returns at once, concurrency 1, local tracker")
    for n in args.drain:
        wall, cpu, reached = drain(n)
        print(
            f"  N={n}: reached review {reached}/{n}; wall {wall:.1f} s = {wall / n:.2f} s per issue; "
            f"daemon CPU {cpu:.2f} s = {cpu / n * 1000:.0f} ms per issue"
        )


if __name__ == "__main__":
    main()
