"""The `codex` agent kind: the OpenAI Codex CLI (``codex exec --json``) run once, non-interactively, in the worktree.

Each run gets its own Codex home (``CODEX_HOME``) under the attempt's evidence folder, with a
``config.toml`` orch writes, so the user's ``~/.codex`` (config, rules, AGENTS.md, logins) and skills
never change a run. Codex runs model-generated commands in its own sandbox (bubblewrap on Linux):
writes only to the worktree and the folder of the completion report, no network unless the policy
says so, never asking for approval. Before the agent starts, orch checks that the sandbox can work on
this machine; if it cannot, the run stops with the reason instead of letting every command fail.

Policy keys (``agent:``): ``command`` (default ``codex``), ``model``, ``base_url`` (default OpenAI),
``api_key_env`` (default ``OPENAI_API_KEY``; null for a server without auth), ``network`` (default
false), ``sandbox`` (``workspace-write``, the default, or ``danger-full-access`` for a machine that is
itself a disposable sandbox), ``args`` (extra ``codex exec`` arguments), ``env`` (extra non-secret
variables), ``timeout_seconds`` and ``idle_timeout_seconds`` (used when the request carries none).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import tomllib
from pathlib import Path
from typing import Any

from statemachine.adapters.agent_base import (
    agent_args,
    agent_env,
    agent_result,
    jail_spec,
    log_events,
    missing_key,
    model_hosts,
    not_found,
    refuse,
    resolve_command,
    write_prompt,
)
from statemachine.adapters.events import parse_events
from statemachine.adapters.jail import Jail
from statemachine.adapters.process import run_process, scrubbed_env
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest, AgentResult

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
PROVIDER_ID = "orch"
SANDBOX_MODES = ("workspace-write", "danger-full-access")
LOG_NAME = "agent.log"  # the JSONL event stream (stdout) and codex's diagnostics (stderr)
HOME_NAME = ".codex"  # codex keeps <writable root>/.codex read-only for the sandboxed commands
LAST_MESSAGE_NAME = "last-message.md"
SANDBOX_CHECK_LOG = "sandbox-check.log"


def _toml(value: Any) -> str:
    """A TOML value: JSON's string escapes are valid TOML basic strings, and bools/ints/lists map directly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def token_usage(events: list[dict[str, Any]]) -> dict[str, int] | None:
    """Sum the usage of every finished turn: ``input_tokens`` becomes ``input``, ``cached_input_tokens`` ``cached_input``..."""
    total: dict[str, int] = {}
    seen = False
    for event in events:
        usage = event.get("usage")
        if event.get("type") not in ("turn.completed", "turn.failed") or not isinstance(usage, dict):
            continue
        seen = True
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                name = key.removesuffix("_tokens")
                total[name] = total.get(name, 0) + value
    if not seen:
        return None
    total.setdefault("input", 0)
    total.setdefault("output", 0)
    return total


def failure_message(events: list[dict[str, Any]]) -> str | None:
    """The last fatal error codex reported (a failed turn or a stream error), if any."""
    message = None
    for event in events:
        if event.get("type") == "turn.failed":
            err = event.get("error")
            message = str(err.get("message")) if isinstance(err, dict) and err.get("message") else "the turn failed"
        elif event.get("type") == "error" and event.get("message"):
            message = str(event["message"])
    return message[:2000] if message else None


def processes_with_home(home: Path) -> list[int]:
    """Processes whose environment names this run's CODEX_HOME: codex and every command it started."""
    needle = f"CODEX_HOME={home}".encode()
    pids = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_strays(home: Path, grace: float = 1.0) -> list[int]:
    """Stop what a run left behind outside its process group (codex starts commands in their own sessions)."""
    strays = processes_with_home(home)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        alive = []
        for pid in strays:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline and processes_with_home(home):
            time.sleep(0.05)
        strays = processes_with_home(home)
        if not strays:
            break
    return strays


class CodexAgent:
    """Runs ``codex exec --json -`` in the worktree with an orch-owned config home; the prompt goes on stdin."""

    kind = "codex"

    def __init__(self, config: dict[str, Any], repo_root: Path, jail: Jail | None = None) -> None:
        self.config = dict(config)
        self.repo_root = repo_root
        self.jail = jail or Jail.for_policy({}, repo_root)
        self.command = str(config.get("command") or "codex")
        self.model = config.get("model")
        self.base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
        key_env = config.get("api_key_env", DEFAULT_API_KEY_ENV)
        self.api_key_env: str | None = str(key_env) if key_env else None
        self.network = config.get("network", False)
        self.sandbox = str(config.get("sandbox") or "workspace-write")
        self.args = [str(a) for a in (config.get("args") or [])]
        self.env = agent_env(config)
        if not isinstance(self.network, bool):
            raise OrchError(
                f"agent.network must be true or false, not {self.network!r}",
                "network: true lets the agent's commands reach the network; the default is false",
            )
        if self.sandbox not in SANDBOX_MODES:
            raise OrchError(
                f"agent.sandbox {self.sandbox!r} is not one of {', '.join(SANDBOX_MODES)}",
                "use workspace-write (the default); danger-full-access only where the machine itself is a disposable sandbox",
            )
        agent_args(config, '["-c", "model_reasoning_effort=\\"high\\""]')  # refused here when no list

    # -- pieces ---------------------------------------------------------------------------------------

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def config_toml(self, report_dir: Path) -> str:
        """The whole Codex configuration for one run; nothing else is read from a config home."""
        root: dict[str, Any] = {}
        if self.model:
            root["model"] = str(self.model)
        root.update(
            {
                "model_provider": PROVIDER_ID,
                "approval_policy": "never",
                "sandbox_mode": self.effective_sandbox,
                "check_for_update_on_startup": False,
            }
        )
        if not self.network:
            root["web_search"] = "disabled"  # the hosted search tool would bypass the sandbox's network ban
        lines = [f"{k} = {_toml(v)}" for k, v in root.items()]
        tables: list[tuple[str, dict[str, Any]]] = [
            ("sandbox_workspace_write", {"network_access": self.network, "writable_roots": [str(report_dir)]}),
            (
                "shell_environment_policy",
                {
                    # the commands codex runs inherit its environment minus *KEY*/*SECRET*/*TOKEN* and the model key
                    "inherit": "all",
                    "ignore_default_excludes": False,
                    "exclude": [self.api_key_env] if self.api_key_env else [],
                },
            ),
            ("skills", {"include_instructions": False}),  # no skills from ~/.agents or elsewhere in the prompt
            # no apps/plugins/hooks/memories from outside the run; no background login-shell snapshot racing its end
            ("features", {"apps": False, "plugins": False, "hooks": False, "memories": False, "shell_snapshot": False}),
            ("analytics", {"enabled": False}),
            ("feedback", {"enabled": False}),
            (
                f"model_providers.{PROVIDER_ID}",
                {
                    "name": "orch",
                    "base_url": self.base_url,
                    "wire_api": "responses",
                    **({"env_key": self.api_key_env} if self.api_key_env else {}),
                },
            ),
        ]
        for name, values in tables:
            lines += ["", f"[{name}]"] + [f"{k} = {_toml(v)}" for k, v in values.items()]
        text = "# Written by orch for one agent run; CODEX_HOME points here.\n" + "\n".join(lines) + "\n"
        tomllib.loads(text)  # never hand codex a file it cannot parse
        return text

    def argv(self, exe: str, workdir: Path, evidence_dir: Path) -> list[str]:
        return [
            exe,
            "exec",
            "--json",
            "--color",
            "never",
            "--strict-config",
            "--ignore-rules",
            "--skip-git-repo-check",
            "--sandbox",
            self.effective_sandbox,
            "-C",
            str(workdir),
            "-o",
            str(evidence_dir / LAST_MESSAGE_NAME),
            *self.args,
            "-",
        ]

    @property
    def effective_sandbox(self) -> str:
        """Inside orch's jail, codex's own sandbox is redundant (and cannot nest: the jail forbids new user
        namespaces), so codex runs its commands directly, confined by the jail."""
        return "danger-full-access" if self.jail.enabled else self.sandbox

    def jail_env(self, home: Path) -> dict[str, str]:
        """What codex gets besides the jail's allowlist: its home, its model key, the policy's variables."""
        env = {**self.env, "CODEX_HOME": str(home)}
        if self.api_key_env and self.api_key_env in os.environ:
            env[self.api_key_env] = os.environ[self.api_key_env]
        return env

    def environment(self, home: Path) -> dict[str, str]:
        extra = {**self.env, "CODEX_HOME": str(home)}
        if self.api_key_env and self.api_key_env in os.environ:
            extra[self.api_key_env] = os.environ[self.api_key_env]  # kept even when its name looks secret
        env = scrubbed_env(extra)
        for name in list(env):
            upper = name.upper()
            if name in extra:
                continue
            if upper.startswith("CODEX_") or (upper.endswith("API_KEY") and name != self.api_key_env):
                del env[name]  # another session's codex state, or keys for other services
        return env

    # -- the port -------------------------------------------------------------------------------------

    def run(self, request: AgentRequest) -> AgentResult:
        evidence = request.evidence_dir
        evidence.mkdir(parents=True, exist_ok=True)
        log = evidence / LOG_NAME
        exe = self.resolve()
        if exe is None:
            return not_found(log, "codex", self.command, "npm install -g @openai/codex")
        if refused := missing_key(log, self.api_key_env, True):
            return refused
        home = evidence / HOME_NAME
        if home.exists():  # a fresh home per run, even when an interrupted attempt is retried
            stop_strays(home)
            shutil.rmtree(home)
        home.mkdir(parents=True)
        report_dir = request.report_path.parent
        report_dir.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(self.config_toml(report_dir))
        write_prompt(evidence / "prompt.md", request.prompt)
        env = self.environment(home)
        timeout, idle = float(request.timeout_seconds), float(request.idle_timeout_seconds)  # the policy's (settings)

        if self.jail.enabled:
            outcome = self.jail.run(
                self.argv(exe, request.workdir, evidence),
                jail_spec(request, exe, model_hosts(self.base_url, self.jail)),
                self.jail_env(home),
                log,
                timeout,
                idle,
                stdin_text=request.prompt,
            )
            return self._result(agent_result(outcome, log), log)

        if self.sandbox == "workspace-write":
            problem = self._sandbox_problem(exe, request.workdir, env, evidence / SANDBOX_CHECK_LOG)
            if problem:
                return refuse(
                    log,
                    f"codex's sandbox cannot run on this machine: {problem}",
                    "run orch where unprivileged user namespaces work (bubblewrap), or set "
                    "agent.sandbox: danger-full-access only if this machine is itself a disposable sandbox",
                )

        result = run_process(
            self.argv(exe, request.workdir, evidence),
            request.workdir,
            env,
            log,
            timeout,
            idle,
            stdin_text=request.prompt,
        )
        strays = processes_with_home(home)
        if strays:
            left = stop_strays(home)
            with open(log, "a") as fh:
                fh.write(
                    f"orch: stopped {len(strays)} process(es) the agent left running: {strays}"
                    + (f"; still running: {left}" if left else "")
                    + "\n"
                )
        return self._result(
            AgentResult(
                result.exit_code,
                result.timed_out,
                result.idle_timed_out,
                result.duration_seconds,
                str(log),
                result.output_bytes,
                error=result.error,
            ),
            log,
        )

    def _result(self, result: AgentResult, log: Path) -> AgentResult:
        """The run's outcome read from codex's event stream: the error it reported, the tokens it used."""
        events = log_events(log, parse_events)
        error = result.error
        if error is None and not (result.timed_out or result.idle_timed_out):
            failed = failure_message(events)
            if result.exit_code != 0 or any(e.get("type") == "turn.failed" for e in events):
                error = failed or f"codex exited with code {result.exit_code}"
        return AgentResult(
            result.exit_code,
            result.timed_out,
            result.idle_timed_out,
            result.duration_seconds,
            result.log,
            result.output_bytes,
            error=error,
            tokens=token_usage(events),
        )

    def _sandbox_problem(self, exe: str, workdir: Path, env: dict[str, str], log: Path) -> str | None:
        """Run `true` in codex's own workspace sandbox; the reason it failed, or None when it works."""
        res = run_process(
            [exe, "sandbox", "-P", ":workspace", "-C", str(workdir), "--", "true"], workdir, env, log, 60.0
        )
        if res.exit_code == 0:
            return None
        try:
            lines = [
                ln
                for ln in log.read_text(errors="replace").splitlines()
                if ln.strip() and not ln.startswith("WARNING:")
            ]
        except OSError:
            lines = []
        return (lines[-1] if lines else res.error or f"exit code {res.exit_code}")[:500]
