"""The daemon under faults: an unreachable tracker, infrastructure failures retried with backoff, and the live table."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Cli, git
from tests.daemonkit import new_issue, setup, wait_for
from tests.github_emulator import GitHubEmulator
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, clone, configure, make_project


def test_an_unreachable_tracker_is_reported_and_the_daemon_keeps_serving(repo: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket closes
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\ntracker:\n  kind: github\n  owner: acme\n  repo: widgets\n"
        f"  api_url: http://127.0.0.1:{dead}\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    env = {**os.environ, "GH_TOKEN": "tok-any"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "daemon", "--repo", str(repo), "--json", "--interval-seconds", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    events = repo / ".orch" / "state" / "events.jsonl"
    wait_for(lambda: events.exists() and events.read_text().count('"poll-failed"') >= 2, timeout=90)
    assert proc.poll() is None, "the daemon must keep running while the tracker is unreachable"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err
    failed = [json.loads(x) for x in out.splitlines() if '"poll-failed"' in x]
    assert failed and all("api_url" not in f["error"] or f["error"] for f in failed)
    assert "tok-any" not in out + err


def test_an_infrastructure_failure_is_retried_with_backoff(tmp_path: Path) -> None:
    with GitHubEmulator(tmp_path / "github") as gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_user(BOT, token=BOT_TOKEN)
        make_project(tmp_path, gh)
        work = clone(gh, tmp_path, "machine")
        configure(work, gh)
        policy = work / ".orch" / "policy.yaml"
        policy.write_text(policy.read_text() + "daemon:\n  retry_base_seconds: 0.5\n  retry_cap_seconds: 2\n")
        env = {**{k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}, "GH_TOKEN": BOT_TOKEN}
        subprocess.run(
            [sys.executable, "-m", "statemachine", "setup", "--prepare-labels", "--repo", str(work)],
            env=env,
            check=True,
            capture_output=True,
        )
        number = gh.create_issue(OWNER, REPO, "Flaky infra", body="add sub", user="alice")
        gh.add_label_event(OWNER, REPO, number, "agent:auto", "alice")
        # the issue itself answers 502 for a while (the claim reads it, with who labelled it, by GraphQL): each
        # `orch run` exhausts its own retries and exits 1
        fault = gh.inject("POST", r"/graphql$", "status", times=12, status=502)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "statemachine",
                "daemon",
                "--repo",
                str(work),
                "--json",
                "--interval-seconds",
                "0.3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        events = work / ".orch" / "state" / "events.jsonl"
        try:
            wait_for(lambda: events.exists() and '"outcome": "review"' in events.read_text(), timeout=240)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        finished = [json.loads(x) for x in out.splitlines() if '"run-finished"' in x]
        outcomes = [f["outcome"] for f in finished]
        assert outcomes[0] == "failed" and outcomes[-1] == "review" and set(outcomes) == {"failed", "review"}, outcomes
        assert "502" in finished[0]["error"]
        assert fault.hits == 12
        starts = [json.loads(x)["at"] for x in out.splitlines() if '"run-started"' in x]
        assert len(starts) == len(finished) >= 2


def test_a_terminal_gets_a_live_table(repo: Path, cli: Cli) -> None:
    setup(cli, repo, seconds=1.5)
    new_issue(cli, repo, "shown in the table", owns="t/**")
    pid, fd = pty.fork()
    if pid == 0:  # the child: orch daemon on a terminal
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "statemachine",
                "daemon",
                "--repo",
                str(repo),
                "--once",
                "--interval-seconds",
                "0.2",
            ],
        )
    chunks = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        else:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
    else:
        os.kill(pid, signal.SIGKILL)
    text = b"".join(chunks).decode(errors="replace")
    assert "running (1)" in text and "queue" in text and "recent results" in text
    assert "shown in the table" in text and "implementing" in text
    assert '{"version"' not in text  # a terminal gets the table, not JSON lines
