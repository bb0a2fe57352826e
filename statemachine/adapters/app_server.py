"""The app under proof, run by the runner: the policy's `proof.app` command started in its own process group (in the
jail), waited for by its readiness probe, and stopped with its whole group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from statemachine.adapters.process import scrubbed_env
from statemachine.scenario import AppSpec as AppSpec
from statemachine.scenario import app_spec as app_spec


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(url: str, timeout: float = 2.0) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


class RunningApp:
    """The app started from `proof.app` in its own process group; stopped (the whole group) on exit."""

    def __init__(self, spec: AppSpec, cwd: Path, log_path: Path, jail: Any = None) -> None:
        self.spec = spec
        self.cwd = cwd
        self.log_path = log_path
        self.jail = jail  # statemachine.adapters.jail.Jail: the app is the agent's code, so it runs jailed
        self.started: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.error: str | None = None

    def __enter__(self) -> RunningApp:
        port = free_port()
        command = self.spec.command.replace("{port}", str(port))
        self.base_url = self.spec.url.replace("{port}", str(port))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {"PORT": str(port), "PYTHONDONTWRITEBYTECODE": "1"}
        if self.jail is not None:
            from statemachine.adapters.jail import Spec, Started

            hosts = self.jail.settings.check_hosts or None
            self.started = (
                Started(
                    self.jail,
                    ["/bin/sh", "-c", command],
                    Spec(
                        workdir=self.cwd,
                        hosts=hosts,
                        ingress_port=port if self.jail.enabled else None,
                        label="proof app",
                    ),
                    env,
                    self.log_path,
                )
                if self.jail.enabled
                else None
            )
        if self.started is not None:
            self.proc = self.started.proc
        else:
            log = open(self.log_path, "wb")
            try:
                self.proc = subprocess.Popen(
                    ["/bin/sh", "-c", command],
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=scrubbed_env(env),
                )
            finally:
                log.close()
        probe = self.base_url.rstrip("/") + self.spec.ready_path
        deadline = time.monotonic() + self.spec.timeout_seconds
        last: int | None = None
        while True:
            if self.proc.poll() is not None:
                self.error = (
                    f"the app exited with {self.proc.returncode} before it was ready (see {self.log_path.name})"
                )
                break
            last = _probe(probe)
            if last == self.spec.ready_status:
                break
            if time.monotonic() > deadline:
                self.error = (
                    f"the app was not ready within {self.spec.timeout_seconds:g}s: GET {self.spec.ready_path} "
                    f"answered {last if last is not None else 'nothing'}, not {self.spec.ready_status}"
                )
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        try:
            self._stop(proc)
        finally:
            if self.started is not None:
                self.started.close()
                self.started = None

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            try:
                os.killpg(proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                break  # the whole group is gone
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
