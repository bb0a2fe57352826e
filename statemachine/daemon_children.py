"""The daemon's child processes: start one `orch run` per issue (served warm, or a fresh process), stop one, read
its result, find its agent's log.

Warm runs: a fork server (multiprocessing's ``forkserver`` start method) is started once and imports
`statemachine.warmup` (everything a run loads). From it the daemon forks workers, each a process in a session of its
own that serves runs one after another, one at a time: a run still gets its own store connection, tracker client
and policy load, the daemon's environment and folder of the moment, and its own stdout and stderr. A crash of a run
takes only its worker down, and a killed daemon leaves every run where a fresh `orch run` resumes it, exactly as
with a fresh process per run. What a run does not pay for again is the import of orch and its libraries, and, after
the first run of a worker, the copy of the server's memory pages that a freshly forked process makes as it touches
them (about 2,700 pages, 25 ms of system CPU per run on the benchmark's machine).

A worker serves the next run only when the last one left nothing behind that could reach it: no thread still
running, no more files open than before it, and no stop signal (a run the daemon stopped takes its worker with it);
else, and after ``RUNS_PER_WORKER`` runs, it leaves and the next run gets a fresh worker.

The server holds no repository, policy, store or credential: it is started before any of those is opened in it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any, Protocol

from statemachine.errors import EXIT_INTERRUPTED

WORKERS = ("warm", "process")


class RunProcess(Protocol):
    """What the daemon needs of a run's process (a `subprocess.Popen` is one)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Worker:
    """A process forked once from the warm server that serves runs one after another (daemon side)."""

    def __init__(self, proc: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.proc, self.conn = proc, conn
        self.pid = int(proc.pid or 0)

    def close(self) -> None:
        """Let the worker go: it ends when it reads the end of its requests."""
        try:
            self.conn.close()
        except OSError:
            pass


class WarmRun:
    """An `orch run` served by a warm worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pid = worker.pid
        self.code: int | None = None
        self.stopped = False  # the daemon stopped it: its worker serves no other run

    def poll(self) -> int | None:
        """The run's exit code once it has ended (minus the signal that killed its worker, as Popen.poll says)."""
        if self.code is not None:
            return self.code
        try:
            if not self.worker.conn.poll():
                return None
            code, reusable = self.worker.conn.recv()
        except (EOFError, OSError):  # the worker died with the run: its own exit code
            self.worker.proc.join(timeout=5)
            exitcode = self.worker.proc.exitcode
            self.code = int(exitcode) if exitcode is not None else -signal.SIGKILL
            self.worker.close()
            return self.code
        self.code = int(code)
        if reusable and not self.stopped and len(_IDLE) < MAX_IDLE_WORKERS:
            _IDLE.append(self.worker)
        else:
            self.worker.close()
        return self.code

    def fileno(self) -> int:
        """Readable once the run has ended (its result, or the end of a worker that died)."""
        return self.worker.conn.fileno()


RUNS_PER_WORKER = 50  # then the worker leaves, and the next run gets a fresh one: no slow build-up of anything
MAX_IDLE_WORKERS = 32
_IDLE: list[Worker] = []


_CONTEXT: ForkServerContext | None = None
_SOCKET_DIR: Path | None = None
SOCKET_PATH_MAX = 100  # a Unix socket's path must fit in 108 bytes


def _context(state_dir: Path) -> ForkServerContext | None:
    """The fork server's context, its preload set once per daemon process; None where there is no fork server
    (not a POSIX system).

    The server listens on a Unix socket, and whoever can connect to it can have it run code as the maintainer. So
    the socket (mode 0600) is put in a private folder (0700) inside the repository's ``.orch/state``, which the
    agent jail never shows an agent (nor any folder holding it); only where that path would be too long for a
    socket does it go to a private folder of the system's temporary folder, as Python's own default, which the jail
    hides behind a tmpfs of its own."""
    global _CONTEXT, _SOCKET_DIR
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        assert isinstance(ctx, ForkServerContext)
        ctx.set_forkserver_preload(["statemachine.warmup"])
        _CONTEXT = ctx
    if _SOCKET_DIR is None:  # before the server starts: its socket is made in multiprocessing's temporary folder
        import tempfile

        state_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="warm-", dir=state_dir))
        if len(str(folder / "listener-12345678")) > SOCKET_PATH_MAX:
            folder.rmdir()
            folder = Path(tempfile.mkdtemp(prefix="orch-warm-"))
        multiprocessing.current_process()._config["tempdir"] = str(folder)  # type: ignore[attr-defined]
        _SOCKET_DIR = folder
    return _CONTEXT


def _serve(args: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> int:
    """One run in a warm worker: the daemon's environment and folder of the moment, stdout and stderr to the run's
    files, then `orch run` as a fresh process would run it; its exit code."""
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        for fd, path in ((1, out), (2, err)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 1 outlives this object
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        from statemachine import ports
        from statemachine.cli import main

        ports.CANCEL.clear()
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    return code


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _worker_main(conn: Connection) -> None:
    """A warm worker: a session of its own (the daemon stops a run by its process group, the worker with it), then
    one run per request, until the daemon lets go. It serves another run only when the last one left nothing behind
    that could reach the next: no thread still running, no file still open, and no stop signal received; else, and
    after RUNS_PER_WORKER runs, it leaves (with os._exit: nothing the server set up is torn down twice)."""
    os.setsid()
    served = 0
    while True:
        try:
            request = conn.recv()
        except BaseException:  # the daemon let go (EOF), or a stop signal while idle
            os._exit(0)
        fds = _open_fds()
        code = _serve(*request)
        served += 1
        reusable = (
            code != EXIT_INTERRUPTED  # stopped by a signal: leave, as a forked run would
            and served < RUNS_PER_WORKER
            and threading.active_count() == 1
            and _open_fds() == fds
        )
        try:
            conn.send((code, reusable))
        except BaseException:
            os._exit(code)
        if not reusable:
            os._exit(code)


def _worker(ctx: ForkServerContext) -> Worker:
    """An idle warm worker that is still alive, else a new one forked from the server."""
    while _IDLE:
        worker = _IDLE.pop()
        if worker.proc.is_alive():
            return worker
        worker.close()
    mine, theirs = multiprocessing.Pipe()
    proc = ctx.Process(target=_worker_main, args=(theirs,), daemon=False)
    proc.start()
    theirs.close()
    return Worker(proc, mine)


def start_run(argv: list[str], cwd: Path, out: Path, err: Path, warm: bool) -> RunProcess:
    """Start `argv` (an `orch run` command line: the interpreter, ``-m statemachine``, then orch's arguments) in the
    repository ``cwd`` with stdout to ``out`` and stderr to ``err``: forked from the warm server when ``warm`` and
    one is available, else as a fresh process."""
    ctx = _context(cwd / ".orch" / "state") if warm else None
    if ctx is not None and argv[1:3] == ["-m", "statemachine"]:
        request = (argv[3:], str(cwd), dict(os.environ), str(out), str(err))
        for _ in range(3):  # an idle worker may have just died: then the next one, or a fresh one
            worker = _worker(ctx)
            try:
                worker.conn.send(request)
            except OSError:
                worker.close()
                continue
            return WarmRun(worker)
    with open(out, "wb") as fh_out, open(err, "wb") as fh_err:
        return subprocess.Popen(
            argv, stdout=fh_out, stderr=fh_err, stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd
        )


def wait_any(procs: list[RunProcess], timeout: float) -> None:
    """Sleep up to ``timeout`` seconds, less when one of ``procs`` ends first (so a free slot is refilled at once).
    A fresh process is watched through a pidfd where Linux has one; without, this is a plain sleep."""
    fds: list[int] = []
    opened: list[int] = []
    for proc in procs:
        if isinstance(proc, WarmRun):
            fds.append(proc.fileno())
        elif hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(proc.pid)
            except OSError:  # already reaped, or no pidfd in this kernel: poll() will say
                continue
            fds.append(fd)
            opened.append(fd)
    try:
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)
    finally:
        for fd in opened:
            os.close(fd)


def stop_warm_server() -> None:
    """Stop the warm server once no run of this daemon is left: it ends when the daemon lets go of it and every run
    it forked has ended, and is waited for here so that it is not left behind as an orphan."""
    global _SOCKET_DIR
    while _IDLE:  # idle workers end when let go; each is waited for
        worker = _IDLE.pop()
        worker.close()
        worker.proc.join(timeout=5)
    if _CONTEXT is None or _SOCKET_DIR is None:
        return
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop):
        stop()
    import shutil

    shutil.rmtree(_SOCKET_DIR, ignore_errors=True)
    multiprocessing.current_process()._config.pop("tempdir", None)  # type: ignore[attr-defined]
    _SOCKET_DIR = None


def terminate(proc: RunProcess) -> None:
    """SIGTERM the child's process group: `orch run` stops its agent and exits, leaving the issue resumable. A run
    forked a moment ago may not lead its own group yet: then the signal goes to the process itself."""
    if isinstance(proc, WarmRun):
        proc.stopped = True  # its worker serves no other run
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    except PermissionError:
        pass


def read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def latest_agent_log(repo: Path, run_id: str | None) -> Path | None:
    if not run_id:
        return None
    folder = repo / ".orch" / "runs" / run_id
    logs = sorted(folder.glob("attempt-*/agent.log"))
    return logs[-1] if logs else None


def live_row(
    store: Any, repo: Path, n: int, title: str, elapsed: float, owns: tuple[str, ...], stopping: str | None
) -> dict[str, Any]:
    """What the live view shows of one running issue: where its lifecycle is, and how recently its agent wrote."""
    from statemachine.errors import OrchError

    step = None
    try:
        state, run_id = store.state_of(n)
        pending = store.pending_step(n)
        if pending is not None:  # show where the issue is going while the step's actions run
            state, step, run_id = pending.dest, pending.trigger, run_id or pending.run_id
        facts = store.facts(run_id)
    except OrchError:
        state, run_id, facts = "?", None, {}
    agent = facts.get("agent") or {}
    log = latest_agent_log(repo, run_id)
    activity = None
    if log is not None:
        try:
            st = log.stat()
            activity = {"log_bytes": st.st_size, "idle_seconds": round(max(0.0, time.time() - st.st_mtime), 1)}
        except OSError:
            pass
    return {
        "issue": n,
        "title": title,
        "state": state,
        "step": step,
        "run_id": run_id,
        "elapsed_seconds": round(elapsed, 1),
        "agent": activity,
        "tokens": agent.get("tokens"),
        "owns": list(owns),
        "stopping": stopping,
    }
