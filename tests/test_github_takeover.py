"""A run interrupted on one machine (killed, or asleep past its lease) is taken over by another runner, never run twice.

Two clones with their own state stand for two GitHub Actions runners (or two machines): runner A claims an issue and
is lost or paused half-way through its agent; runner B's `orch daemon --once` (what the scheduled workflow runs) takes
the issue over once A's claim lease expires, and delivers one draft pull request. A runner that comes back after the
takeover publishes nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.github_emulator import GitHubEmulator
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, clone, configure, make_project
from tests.githubkit import api_pages as api

SLOW = Path(__file__).parent / "agents" / "slow.py"
LEASE = 3


def machine(gh: GitHubEmulator, tmp_path: Path, name: str, agent_seconds: float, counter: Path) -> Path:
    m = clone(gh, tmp_path, name)
    configure(m, gh)
    policy = m / ".orch" / "policy.yaml"
    text = policy.read_text()
    text = text.replace("tracker:\n", f"tracker:\n  claim_lease_seconds: {LEASE}\n", 1)
    text = re.sub(
        r"\nagent:\n(?:  .*\n)*",
        f'\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ["{SLOW}", "{agent_seconds}"]\n\n',
        text,
        count=1,
    )
    policy.write_text(text + f"\nsandbox:\n  env: [AGENT_COUNTER]\n  writable: ['{counter.parent}']\n")
    return m


def environment(counter: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")},
        "GH_TOKEN": BOT_TOKEN,
        "AGENT_COUNTER": str(counter),
    }


def daemon_once(m: Path, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "statemachine", "daemon", "--once", "--json", "--repo", str(m)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")], proc.stderr


def start_run(m: Path, n: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "statemachine", "run", "--issue", str(n), "--repo", str(m)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def wait_for_agent(counter: Path, n: int, starts: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if counter.exists() and sum(1 for line in counter.read_text().splitlines() if f" start {n} " in line) >= starts:
            return
        time.sleep(0.1)
    raise AssertionError(f"the agent for issue #{n} never started")


def setup(tmp_path: Path, gh: GitHubEmulator) -> tuple[Path, Path, Path, dict[str, str], int]:
    gh.add_user("alice", token="tok-alice")
    gh.add_user(BOT, token=BOT_TOKEN)
    make_project(tmp_path, gh)
    (tmp_path / "agent-counter").mkdir()
    counter = tmp_path / "agent-counter" / "runs.txt"
    a = machine(gh, tmp_path, "runner-a", 600, counter)  # A's agent would work for ten minutes
    b = machine(gh, tmp_path, "runner-b", 0.2, counter)
    env = environment(counter)
    subprocess.run(
        [sys.executable, "-m", "statemachine", "setup", "--prepare-labels", "--repo", str(a)],
        env=env,
        check=True,
        capture_output=True,
    )
    n = gh.create_issue(OWNER, REPO, "add feature", body="Add the feature.\n", user="alice")
    gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
    return a, b, counter, env, n


def labels(gh: GitHubEmulator, n: int) -> set[str]:
    return {lab["name"] for lab in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/labels")}


def delivered_once(gh: GitHubEmulator, n: int, a_run: str, b_run: str) -> None:
    """One draft PR from B's run, B's claim after a takeover report naming A's run, one review report (B's)."""
    pulls = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")
    assert len(pulls) == 1 and pulls[0]["draft"] and pulls[0]["user"]["login"] == BOT
    assert "kind=pull-request" in pulls[0]["body"] and b_run in pulls[0]["body"]
    assert labels(gh, n) == {"agent:auto", "agent:review"}
    bodies = [c["body"] for c in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments")]
    kinds = [k for b in bodies for k in re.findall(r"<!-- orch:(claim run=\S+|run=\S+ kind=report-[a-z]+)", b)]
    assert kinds == [
        f"claim run={a_run}",
        f"run={a_run} kind=report-abandoned",
        f"claim run={b_run}",
        f"run={b_run} kind=report-review",
    ], kinds
    takeover = next(b for b in bodies if "report-abandoned" in b)
    assert f"by={b_run}" in takeover and "stopped renewing its claim" in takeover


def run_ids(gh: GitHubEmulator, n: int) -> list[str]:
    return [
        m
        for c in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments")
        for m in re.findall(r"<!-- orch:claim run=(\S+) -->", c["body"])
    ]


def test_a_lost_runner_is_taken_over_by_the_next_scheduled_run_once_its_lease_expires(tmp_path: Path) -> None:
    with GitHubEmulator(tmp_path / "github") as gh:
        a, b, counter, env, n = setup(tmp_path, gh)
        runner_a = start_run(a, n, env)
        try:
            wait_for_agent(counter, n)
            [a_run] = run_ids(gh, n)
            # A renews its lease while its agent works: B, run again and again meanwhile, never takes the issue
            for _ in range(3):
                time.sleep(LEASE / 2)
                code, events, err = daemon_once(b, env)
                assert code == 0, err
                assert not [e for e in events if e["event"] in ("run-started", "claim-expired")], events
            comments = api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments")
            stamp = re.search(r"renewed=(\S+) -->", comments[0]["body"])
            assert stamp and stamp.group(1) > comments[0]["created_at"], "A rewrote its lease stamp while it worked"
        finally:
            os.killpg(runner_a.pid, signal.SIGKILL)  # the runner is lost: no report, no label change, no goodbye
            runner_a.communicate(timeout=30)
        assert labels(gh, n) == {"agent:auto", "agent:running"}
        time.sleep(LEASE + 1)
        code, events, err = daemon_once(b, env)
        assert code == 0, err
        expired = [e for e in events if e["event"] == "claim-expired"]
        assert expired and expired[0]["run_id"] == a_run, events
        finished = [e for e in events if e["event"] == "run-finished"]
        assert [(e["issue"], e["outcome"]) for e in finished] == [(n, "review")], (events, err)
        b_run = run_ids(gh, n)[1]
        delivered_once(gh, n, a_run, b_run)
        starts = Counter(line.split()[2] for line in counter.read_text().splitlines() if " start " in line)
        assert starts == Counter({str(n): 2}) and counter.read_text().count(" done ") == 1
        # nothing is left for a later scheduled run to do
        code, events, err = daemon_once(b, env)
        assert code == 0 and not [e for e in events if e["event"] == "run-started"], events
        assert gh.violations == []


def test_a_runner_that_slept_past_its_lease_finds_the_takeover_and_publishes_nothing(tmp_path: Path) -> None:
    with GitHubEmulator(tmp_path / "github") as gh:
        a, b, counter, env, n = setup(tmp_path, gh)
        policy = a / ".orch" / "policy.yaml"  # A's agent finishes soon after A wakes, so A would publish if it could
        policy.write_text(policy.read_text().replace('"600"', '"4"'))
        runner_a = start_run(a, n, env)
        try:
            wait_for_agent(counter, n)
            [a_run] = run_ids(gh, n)
            os.killpg(runner_a.pid, signal.SIGSTOP)  # the machine sleeps: no renewals, no progress
            time.sleep(LEASE + 1)
            code, events, err = daemon_once(b, env)
            assert code == 0, err
            assert [(e["issue"], e["outcome"]) for e in events if e["event"] == "run-finished"] == [(n, "review")], err
            b_run = run_ids(gh, n)[1]
        finally:
            os.killpg(runner_a.pid, signal.SIGCONT)
        out, err = runner_a.communicate(timeout=120)
        assert runner_a.returncode == 4, (out, err)  # EXIT_STUCK: the run stopped without coming to rest
        assert f"took the claim of run {a_run} over" in out + err, (out, err)
        assert "Traceback" not in err
        delivered_once(gh, n, a_run, b_run)  # A added no label, posted no report, opened no pull request
        refs = subprocess.run(
            ["git", "ls-remote", gh.git_url(OWNER, REPO, token="tok-alice"), "refs/heads/orch/*"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert len(refs) == 1 and refs[0].split()[0] == api(gh, f"/repos/{OWNER}/{REPO}/pulls")[0]["head"]["sha"]
        db = sqlite3.connect(a / ".orch" / "state" / "orch.db")
        assert db.execute("SELECT state FROM issue_state WHERE issue=?", (n,)).fetchone()[0] == "queued"
        assert db.execute("SELECT outcome FROM runs WHERE run_id=?", (a_run,)).fetchone()[0] == "superseded"
        assert db.execute("SELECT count(*) FROM steps WHERE status='pending'").fetchone()[0] == 0
        assert gh.violations == []
