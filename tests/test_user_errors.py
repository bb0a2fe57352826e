"""Issue 17, item 6: errors a user meets are clear, with the documented exit code, never an internal error.

`--repo` naming a file, a full disk while orch writes the agent's prompt, Ctrl-C on the daemon, and `orch run | head -1`
(a reader that goes away must not leave the run half-way)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentkit import processes_under
from tests.conftest import Cli
from tests.daemonkit import counter_file, counter_sandbox, daemon, new_issue, setup, state_of, wait_for

SLOW = Path(__file__).parent / "agents" / "slow.py"


def orch(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statemachine", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --repo naming a file -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["status"], ["run", "--issue", "1"], ["issue", "list"], ["daemon", "--once"], ["lint"]]
)
def test_repo_naming_a_file_is_a_usage_error_naming_the_path(repo: Path, argv: list[str]) -> None:
    target = repo / "app.py"
    proc = orch(target, *argv)
    assert proc.returncode == 2, proc.stderr
    assert f"'{target}' is a file, not a folder" in proc.stderr, proc.stderr
    assert "--repo" in proc.stderr and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stdout == ""  # a usage error prints no JSON, even with --json (docs/cli.md)
    assert not (repo / ".orch" / "state").exists()  # nothing was opened


def test_repo_naming_a_file_in_process_exits_2(cli: Cli, repo: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("status", "--repo", repo / "app.py", "--json")
    assert exc.value.code == 2
    code, out, err = cli("graph", "--repo", repo)  # the folder itself still works
    assert code == 0, err


# a full disk while the prompt is written ---------------------------------------------------------------------------


@pytest.fixture
def small_runs(repo: Path) -> Iterator[Path]:
    """The repository's .orch/runs/ (where orch writes the prompt) on a 2 MiB disk of its own, nearly full."""
    runs = repo / ".orch" / "runs"
    runs.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(runs)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield runs
    finally:
        subprocess.run(["umount", "-l", str(runs)], capture_output=True)


def test_a_full_disk_while_writing_the_prompt_is_a_clear_error_and_the_run_resumes(
    cli: Cli, repo: Path, small_runs: Path
) -> None:
    setup(cli, repo, seconds=0.1)
    n = new_issue(cli, repo, "Add a feature")
    for _ in range(2):  # comments of a writer are part of the prompt: it grows to about 120 kB
        assert cli("issue", "comment", str(n), "y" * 60000, "--repo", repo)[0] == 0
    filler = small_runs / "filler"
    filler.write_bytes(b"\0" * (2048 - 96) * 1024)  # 96 KiB left: the run's git files fit, the prompt does not
    first = orch(repo, "run", "--issue", str(n))
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr and "internal error" not in first.stderr
    (run,) = [p for p in small_runs.iterdir() if p.is_dir()]
    prompt = run / "attempt-1" / "prompt.md"
    assert f"orch: error: the disk holding {prompt} is full" in first.stderr, first.stderr
    assert "free some space, then run the same command again" in first.stderr
    assert not prompt.exists()  # nothing half-written
    assert state_of(cli, repo, n) == "claimed"  # resumable: the interrupted step is journaled
    code, data = cli.json("explain", "--issue", str(n), "--repo", repo)
    assert data["summary"].startswith("claimed: `start` → implementing can fire"), data["summary"]
    filler.unlink()  # a maintainer frees space
    again = orch(repo, "run", "--issue", str(n))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(resumed after an interruption)" in again.stdout
    assert state_of(cli, repo, n) == "review"
    assert len(prompt.read_text()) > 120000  # written whole this time


# Ctrl-C on the daemon ------------------------------------------------------------------------------------------------


def test_ctrl_c_on_the_daemon_stops_its_runs_and_exits_130(cli: Cli, repo: Path, tmp_path: Path) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=30, extra=counter_sandbox(counter))
    n = new_issue(cli, repo, "long", owns="src/**")
    proc = daemon(repo, "--interval-seconds", "0.2", "--shutdown-deadline", "0.5", env=agent_env(counter))
    wait_for(lambda: counter.exists() and "start" in counter.read_text())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    kinds = [json.loads(x) for x in out.splitlines()]
    stopping = [e for e in kinds if e["event"] == "stopping"]
    assert stopping and stopping[0]["signal"] == signal.SIGINT and stopping[0]["running"] == [n]
    assert "terminated" in [e["event"] for e in kinds] and kinds[-1]["event"] == "stopped"
    assert processes_under(repo / ".orch" / "worktrees") == []  # the agent's jail was stopped, as on SIGTERM
    assert state_of(cli, repo, n) in ("claimed", "implementing")  # resumable, nothing published
    assert "Traceback" not in err


def agent_env(counter: Path) -> dict[str, str]:
    return {**os.environ, "AGENT_COUNTER": str(counter)}


# `orch run | head -1` ------------------------------------------------------------------------------------------------


def test_a_reader_that_goes_away_does_not_stop_the_run(cli: Cli, repo: Path) -> None:
    """`orch run --issue N | head -1`: the run goes on to rest in review and exits with its own code."""
    setup(cli, repo, seconds=1.0)  # the agent works a second: the pipe is closed long before the run's next line
    n = new_issue(cli, repo, "Add a feature")
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "run", "--issue", str(n), "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert first.startswith(f"issue #{n}: queued --claim--> claimed"), first
    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert state_of(cli, repo, n) == "review"
    code, shown = cli.json("show", "--issue", str(n), "--repo", repo)
    assert [s["trigger"] for s in shown["steps"]][-1] == "approve"


def test_a_closed_pipe_keeps_the_blocked_exit_code(cli: Cli, repo: Path) -> None:
    """The same through a shell pipeline, on a run that ends blocked: the exit code is still 5."""
    setup(cli, repo, seconds=1.0, extra="checks:\n  tests: {command: 'exit 1'}\nlimits:\n  rework_iterations: 0\n")
    n = new_issue(cli, repo, "Add a feature")
    script = (
        f"{sys.executable} -m statemachine run --issue {n} --repo '{repo}' | head -1; echo \"rc=${{PIPESTATUS[0]}}\""
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"issue #{n}: queued --claim--> claimed"), proc.stdout
    assert lines[1] == "rc=5", proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert state_of(cli, repo, n) == "blocked"
