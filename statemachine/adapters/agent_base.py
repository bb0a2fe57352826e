"""What every agent adapter shares (command, codex, claude, gemini, opencode, aider): finding the executable, the jail of one run, the hosts a
model-driven agent may reach, and the result of a run, or of one that could not start.

The lowest agent module: the adapters import it, and statemachine/adapters/agents.py (the kind factory) imports the
adapters."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from statemachine.adapters.jail import Jail, Outcome, Spec
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest, AgentResult, ProcessResult
from statemachine.secrets import is_secret_name


def resolve_command(command: str, repo_root: Path | None) -> str | None:
    """The agent's executable: a path (relative ones from the repository root) or a name on PATH; None if absent."""
    if "/" in command:
        path = Path(command)
        if not path.is_absolute() and repo_root is not None:
            path = repo_root / path
        return str(path) if path.exists() else None
    return shutil.which(command)


def agent_args(config: dict[str, Any], example: str) -> list[str]:
    """The policy's ``agent.args`` as strings; ``example`` shows the kind's own arguments when they are no list."""
    args = config.get("args") or []
    if not isinstance(args, list):
        raise OrchError("agent.args must be a list of strings", f"for example args: {example}")
    return [str(a) for a in args]


def agent_env(config: dict[str, Any]) -> dict[str, str]:
    """The policy's ``agent.env``; a secret-looking name is refused (the agent never receives credentials)."""
    env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
    bad = [k for k in env if is_secret_name(k)]
    if bad:
        raise OrchError(
            f"agent.env names secret-looking variables: {', '.join(bad)}",
            "the agent never receives credentials; remove them from the policy",
        )
    return env


def write_prompt(path: Path, prompt: str) -> None:
    """Write the agent's prompt file. On a failure (a full disk) nothing half-written is left, and the error names the
    file: the step stops there (cli.py: exit 1, "the disk holding ... is full"), and its rerun writes the prompt again."""
    try:
        path.write_text(prompt)
    except OSError as exc:
        path.unlink(missing_ok=True)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def jail_spec(request: AgentRequest, exe: str, hosts: tuple[str, ...] | None) -> Spec:
    """The jail of one agent run: its workspace, its attempt's evidence folder, its own git directory and lock."""
    return Spec(
        workdir=request.workdir,
        writable=(request.evidence_dir, request.report_path.parent),
        executable=exe,
        hosts=hosts,
        gitdir=request.gitdir,
        lock=request.lock,
        label="agent",
        workdir_writable=not request.read_only,
    )


def model_hosts(base_url: str, jail: Jail) -> tuple[str, ...]:
    """Whom a model-driven agent (codex, claude) may reach: its model endpoint and the policy's
    ``sandbox.network.agent`` hosts. The jail reaches one on orch's loopback on the same port, others through its proxy."""
    from statemachine.adapters.egress import parse_host

    host, port = parse_host(base_url)
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}", *jail.settings.agent_hosts)


def agent_result(outcome: Outcome, log: Path) -> AgentResult:
    r = outcome.result
    return AgentResult(
        r.exit_code, r.timed_out, r.idle_timed_out, r.duration_seconds, str(log), r.output_bytes, error=r.error
    )


def refuse(log: Path, message: str, hint: str) -> AgentResult:
    """An agent run that could not start: the reason goes to its log and into the result."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"orch: {message}\norch: {hint}\n")
    return AgentResult(None, False, False, 0.0, str(log), 0, error=f"{message} ({hint})")


def not_found(log: Path, kind: str, command: str, install: str) -> AgentResult:
    """The refusal of a run whose program is missing; ``install`` says how to get it."""
    return refuse(
        log, f"{kind} command {command!r} not found", f"install it with `{install}` or set agent.command to its path"
    )


def missing_key(log: Path, key_env: str | None, key_optional: bool) -> AgentResult | None:
    """The refusal of a model-driven run whose model key variable ``key_env`` is unset; None when it is set (or the
    policy set agent.api_key_env to null). ``key_optional``: the hint says null is allowed (a server without auth)."""
    if key_env is None or os.environ.get(key_env):
        return None
    how = "(null for a server without auth)" if key_optional else "to the variable that holds it"
    return refuse(
        log,
        f"the model API key variable {key_env} is not set",
        f"export it in orch's environment, or set agent.api_key_env {how}",
    )


def log_events(log: Path, parse: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The events an agent CLI printed to its log, as ``parse`` reads them; none when the log cannot be read."""
    try:
        return parse(log.read_text(errors="replace"))
    except OSError:
        return []


def finished(
    result: ProcessResult | AgentResult, log: Path, kind: str, failed: str | None, tokens: dict[str, int] | None
) -> AgentResult:
    """An agent run's result: the process's own, with ``failed`` (the error the CLI's output reported) or the
    non-zero exit code as its error; a timeout says so itself."""
    error = result.error
    if error is None and not (result.timed_out or result.idle_timed_out) and (result.exit_code != 0 or failed):
        error = failed or f"{kind} exited with code {result.exit_code}"
    return AgentResult(
        result.exit_code,
        result.timed_out,
        result.idle_timed_out,
        result.duration_seconds,
        str(log),
        result.output_bytes,
        error=error,
        tokens=tokens,
    )
