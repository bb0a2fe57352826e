"""The daemon's warm runs (daemon.workers: warm, the default): each issue's `orch run` is served by a worker forked
from one pre-started server that has already loaded orch, not a fresh interpreter; a worker serves runs one after
another and leaves after a run that was stopped or left a thread or a file behind; a crash of one run takes no other
down, a killed daemon leaves its runs resumable, and `daemon.workers: process` still starts fresh processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import Cli, git
from tests.daemonkit import counter_file, counter_sandbox, daemon, new_issue, setup, state_of, wait_for


def parent_of(pid: int) -> int:
    """The parent process id, from /proc/PID/stat (the field after the parenthesised command name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def lines(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return [json.loads(x) for x in out.splitlines()]


def read_events(proc: subprocess.Popen[str], until: int) -> list[dict[str, Any]]:
    """Events as the daemon prints them, until `until` runs have started."""
    assert proc.stdout is not None
    seen: list[dict[str, Any]] = []
    while sum(1 for e in seen if e["event"] == "run-started") < until:
        line = proc.stdout.readline()
        assert line, "the daemon ended early"
        seen.append(json.loads(line))
    return seen


def test_warm_runs_fork_from_one_server_and_a_killed_run_takes_no_other_down(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=3, extra=counter_sandbox(counter))
    issues = [new_issue(cli, repo, f"feature {i}", owns=f"feature_{i}/**") for i in range(3)]
    env = {**os.environ, "AGENT_COUNTER": str(counter)}
    proc = daemon(repo, "--json", "--concurrency", "3", "--interval-seconds", "0.2", "--max-runs", "3", env=env)
    started = [e for e in read_events(proc, 3) if e["event"] == "run-started"]
    pids = {e["issue"]: int(e["pid"]) for e in started}
    servers = {parent_of(pid) for pid in pids.values()}
    # forked from one server, which is neither the daemon itself nor anything else's run
    assert len(servers) == 1 and proc.pid not in servers, (servers, proc.pid)
    (server,) = servers
    assert parent_of(server) == proc.pid  # the daemon started the server
    victim = issues[1]
    wait_for(lambda: counter.exists() and counter.read_text().count(" start ") == 3)
    assert all(os.getsid(pid) == pid for pid in pids.values())  # each run leads a session of its own
    os.kill(pids[victim], signal.SIGKILL)  # one run dies the hardest way
    rest = lines(proc)
    finished = {e["issue"]: e for e in rest if e["event"] == "run-finished"}
    assert finished[victim]["outcome"] == "failed" and finished[victim]["exit_code"] == -signal.SIGKILL
    assert all(finished[n]["outcome"] == "review" for n in issues if n != victim), finished
    assert not alive(server)  # the daemon stopped its server on the way out
    # the killed run is resumable: a fresh daemon takes it to review
    setup(cli, repo, seconds=0.1, extra=counter_sandbox(counter))
    again = lines(daemon(repo, "--json", "--once", env=env))
    resumed = [e for e in again if e["event"] == "run-started"]
    assert [e["issue"] for e in resumed] == [victim] and resumed[0]["resumed"] is True
    assert state_of(cli, repo, victim) == "review"


def test_a_killed_daemon_leaves_its_warm_runs_to_finish_or_resume(cli: Cli, repo: Path, tmp_path: Path) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=2, extra=counter_sandbox(counter))
    n = new_issue(cli, repo, "outlives its daemon", owns="a/**")
    env = {**os.environ, "AGENT_COUNTER": str(counter)}
    proc = daemon(repo, "--json", "--interval-seconds", "0.2", env=env)
    (start,) = [e for e in read_events(proc, 1) if e["event"] == "run-started"]
    run, server = int(start["pid"]), parent_of(int(start["pid"]))
    proc.kill()
    proc.communicate(timeout=30)
    wait_for(lambda: not alive(run), timeout=60)  # the run went on without its daemon, and ended
    wait_for(lambda: not alive(server), timeout=30)  # then the server, which nothing needs any more
    assert state_of(cli, repo, n) == "review"
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    assert "agent:review" in data["labels"] and "agent:running" not in data["labels"]


def test_process_workers_start_a_fresh_orch_run_per_issue(cli: Cli, repo: Path, tmp_path: Path) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=1, extra=counter_sandbox(counter) + "daemon:\n  workers: process\n")
    n = new_issue(cli, repo, "fresh", owns="b/**")
    proc = daemon(repo, "--json", "--interval-seconds", "0.2", "--max-runs", "1")
    (start,) = [e for e in read_events(proc, 1) if e["event"] == "run-started"]
    assert parent_of(int(start["pid"])) == proc.pid
    cmdline = Path(f"/proc/{start['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"run" in cmdline and str(n).encode() in cmdline  # a fresh `orch run --issue N`
    rest = lines(proc)
    assert [e["outcome"] for e in rest if e["event"] == "run-finished"] == ["review"]


def test_the_warm_servers_socket_is_private_and_never_shown_to_an_agent(cli: Cli, tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))  # a socket's path must fit in 108 bytes
    repo = short / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=2, extra=counter_sandbox(counter))
    new_issue(cli, repo, "watched", owns="c/**")
    proc = daemon(repo, "--json", "--interval-seconds", "0.2", "--max-runs", "1", env={**os.environ})
    read_events(proc, 1)
    state = repo / ".orch" / "state"
    (folder,) = [p for p in state.iterdir() if p.name.startswith("warm-")]
    sockets = [p for p in folder.iterdir() if p.is_socket()]
    assert sockets and oct(folder.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in sockets)
    lines(proc)
    assert not folder.exists()  # removed with its server
    # and no policy can show the state folder (where the socket lives) to an agent
    from statemachine.adapters.jail import Jail, Settings
    from statemachine.errors import OrchError

    for key in ("read_only", "writable"):
        try:
            Jail(Settings(), repo).check_paths((str(state),), key)
        except OrchError as exc:
            assert "inside" in exc.message and ".orch" in exc.message
        else:
            raise AssertionError(f"sandbox.{key} showed {state}")
    shutil.rmtree(short)


def test_a_warm_run_imports_nothing_the_server_did_not_load(cli: Cli, repo: Path) -> None:
    """Whatever a run forked from the warm server needs is imported by statemachine/warmup.py before the fork (a
    module left out costs every run its import, and a module without bytecode its compilation): an `orch run` to
    review after `import statemachine.warmup` adds no module, with a policy of the repository's own (parsed, not
    taken from the policy cache)."""
    setup(cli, repo, seconds=0.1)
    issue = new_issue(cli, repo, "feature warm", owns="feature_warm/**")
    code = (
        "import io, json, sys, contextlib\n"
        "import statemachine.warmup\n"
        "before = set(sys.modules)\n"
        "from statemachine.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = main(['run', '--issue', sys.argv[1], '--repo', sys.argv[2]])\n"
        "print(json.dumps({'code': code, 'new': sorted(set(sys.modules) - before)}))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(repo.parent / "fresh-cache")}  # no cached policy: it is parsed
    out = subprocess.run(
        [sys.executable, "-c", code, str(issue), str(repo)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["code"] == 0 and state_of(cli, repo, issue) == "review"
    assert result["new"] == [], result["new"]


def test_a_warm_worker_serves_runs_one_after_another_and_a_stopped_run_takes_its_worker_with_it(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=0.2, extra=counter_sandbox(counter))
    first = [new_issue(cli, repo, f"in turn {i}", owns=f"turn_{i}/**") for i in range(3)]
    env = {**os.environ, "AGENT_COUNTER": str(counter)}
    done = lines(daemon(repo, "--json", "--interval-seconds", "0.2", "--max-runs", "3", env=env))
    started = [e for e in done if e["event"] == "run-started"]
    assert [e["issue"] for e in started] == first
    assert len({e["pid"] for e in started}) == 1  # one worker served all three, one after another
    assert [e["outcome"] for e in done if e["event"] == "run-finished"] == ["review"] * 3

    # a run the daemon stops (its issue closed while it runs) ends its worker: the next run gets a fresh one
    setup(cli, repo, seconds=30, extra=counter_sandbox(counter))
    stopped = new_issue(cli, repo, "closed while it runs", owns="stop/**")
    proc = daemon(repo, "--json", "--interval-seconds", "0.2", "--max-runs", "2", env=env)
    (start,) = [e for e in read_events(proc, 1) if e["event"] == "run-started"]
    worker = int(start["pid"])
    wait_for(lambda: counter.exists() and counter.read_text().count(" start ") == 4)
    setup(cli, repo, seconds=0.2, extra=counter_sandbox(counter))
    after = new_issue(cli, repo, "after the stopped one", owns="after/**")
    assert cli("issue", "close", str(stopped), "--repo", repo)[0] == 0
    rest = lines(proc)
    (later,) = [e for e in rest if e["event"] == "run-started"]
    assert later["issue"] == after and int(later["pid"]) != worker
    assert not alive(worker)
    finished = {e["issue"]: e["outcome"] for e in rest if e["event"] == "run-finished"}
    assert finished == {stopped: "stopped", after: "review"}, finished


def _worker_with(conn: Any, parent_end: Any, leave: str) -> None:
    """A warm worker whose runs leave a thread running, a file open, or nothing behind."""
    import threading
    import time

    from statemachine import daemon_children

    kept: list[Any] = []

    def serve(*_request: Any) -> int:
        if leave == "thread":
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        elif leave == "file":
            kept.append(open(os.devnull))  # noqa: SIM115 - left open on purpose
        return 0

    parent_end.close()  # forked, it holds the daemon's end too: as a worker from the server, it must not
    daemon_children._serve = serve  # type: ignore[assignment]
    daemon_children._worker_main(conn)


def test_a_warm_worker_leaves_after_a_run_that_left_a_thread_or_a_file_behind() -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for leave, reusable in (("nothing", True), ("thread", False), ("file", False)):
        mine, theirs = ctx.Pipe()
        worker = ctx.Process(target=_worker_with, args=(theirs, mine, leave))
        worker.start()
        theirs.close()
        mine.send((["run"], "/", {}, os.devnull, os.devnull))
        assert mine.recv() == (0, reusable), leave
        if reusable:  # it waits for the next run, and leaves when let go
            mine.send((["run"], "/", {}, os.devnull, os.devnull))
            assert mine.recv() == (0, True)
        mine.close()
        worker.join(timeout=30)
        assert worker.exitcode == 0, leave
