"""Runs a child in its own process group with a total and an idle timeout, its output kept in a log.

Agents and checks run here on ``subprocess``, not through plumbum (which runs git: adapters/gitrun.py), because
plumbum has no way to do what this runner is for:

- the whole process tree is stopped: the child leads its own session, and on a timeout, an idle timeout, its exit or
  Ctrl-C every process in its group gets SIGTERM, then SIGKILL (an agent's background servers and shells included);
  plumbum's ``timeout`` kills the one process it started, and leaves its children holding the pipes;
- the idle timeout is measured on output: the pump thread stamps each chunk as it arrives, and a child that stays
  quiet for ``idle_timeout`` is stopped; plumbum only waits for the exit (``communicate``), or with ``iter_lines``
  splits lines, which an agent writing a long line with no newline (or binary) would stall;
- the output is streamed into a size-capped log as it comes (a crash or a kill keeps what came before; past
  ``max_log_bytes`` the rest is counted and dropped; a full disk stops the logging, never the draining), where
  plumbum buffers all of it in memory until the child exits;
- ``on_start`` is told the child's pid as soon as it exists (the run's liveness record), and a failure to start is
  a result (``error``), not an exception.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from statemachine.ports import CANCEL as CANCEL  # set by lease.Keeper: every process started here stops
from statemachine.ports import ProcessResult as ProcessResult
from statemachine.secrets import is_secret_name as is_secret_name  # the rule lives with the secrets


def scrubbed_env(extra: dict[str, str] | None = None, keep: set[str] | None = None) -> dict[str, str]:
    """The parent's environment without secrets, with git credential helpers and prompts disabled."""
    keep = keep or set()
    env = {k: v for k, v in os.environ.items() if k in keep or not is_secret_name(k)}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GCM_INTERACTIVE": "never",
        }
    )
    for k, v in (extra or {}).items():
        env[k] = v
    return env


def run_process(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    idle_timeout: float | None = None,
    stdin_text: str | None = None,
    max_log_bytes: int = 20 * 1024 * 1024,
    shell: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run ``argv``; stop its whole process group on timeout, idle timeout, or when it exits."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv if not shell else argv[0],
            cwd=cwd,
            env=env,
            shell=shell,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        log_path.write_text(f"orch: cannot start {argv[0]!r}: {exc.strerror}\n")
        return ProcessResult(None, False, False, 0.0, 0, False, error=f"cannot start {argv[0]!r}: {exc.strerror}")

    if on_start is not None:
        on_start(proc.pid)
    state = {"last": time.monotonic(), "bytes": 0, "truncated": False}

    def pump() -> None:
        """Drain the child's output into the log; if the log cannot be written (a full disk), keep draining."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            log = open(log_path, "wb")
        except OSError:
            log = None
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                state["last"] = time.monotonic()
                if log is not None and state["bytes"] < max_log_bytes:
                    room = max_log_bytes - int(state["bytes"])
                    try:
                        log.write(chunk[:room])
                        log.flush()
                        if len(chunk) > room:
                            state["truncated"] = True
                            log.write(b"\n[orch: output truncated]\n")
                            log.flush()
                    except OSError:  # no space left: stop logging, never stop draining (the child would block)
                        state["truncated"] = True
                        try:
                            log.close()
                        except OSError:
                            pass
                        log = None
                state["bytes"] = int(state["bytes"]) + len(chunk)
        finally:
            if log is not None:
                try:
                    log.close()
                except OSError:
                    pass

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write((stdin_text or "").encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if stdin_text is not None:
        threading.Thread(target=feed, daemon=True).start()

    timed_out = idle = cancelled = False
    pidfd = _pidfd(proc)
    try:
        while True:
            if _exited(proc, pidfd, 0.05):  # back the moment the child exits; every 50 ms for the limits
                break
            now = time.monotonic()
            if now - start > timeout:
                timed_out = True
                break
            if idle_timeout is not None and now - float(state["last"]) > idle_timeout:
                idle = True
                break
            if CANCEL.is_set():
                cancelled = True
                break
    finally:  # also on Ctrl-C or SIGTERM: never leave the child's process group behind
        if pidfd is not None:
            os.close(pidfd)
        _stop_group(proc)
    reader.join(timeout=5)
    duration = time.monotonic() - start
    code = None if (timed_out or idle or cancelled) else proc.returncode
    return ProcessResult(
        code,
        timed_out,
        idle,
        duration,
        int(state["bytes"]),
        bool(state["truncated"]),
        error="stopped: the run lost its claim" if cancelled else None,
    )


def _pidfd(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd in this Python or kernel
        return None


def _exited(proc: subprocess.Popen[bytes], pidfd: int | None, timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for the child's exit; whether it has exited. Through its pidfd the wait ends
    at the exit itself; without one, ``Popen.wait`` polls with sleeps of up to 50 ms."""
    if pidfd is None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    select.select([pidfd], [], [], timeout)
    return proc.poll() is not None


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left; also reaps background children."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.05)
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
