"""What every agent adapter shares (command, codex, claude): finding the executable, the jail of one run, the hosts a
model-driven agent may reach, and the result of a run, or of one that could not start.

The lowest agent module: the adapters import it, and statemachine/adapters/agents.py (the kind factory) imports the
adapters."""

from __future__ import annotations

import shutil
from pathlib import Path

from statemachine.adapters.jail import Jail, Outcome, Spec
from statemachine.ports import AgentRequest, AgentResult


def resolve_command(command: str, repo_root: Path | None) -> str | None:
    """The agent's executable: a path (relative ones from the repository root) or a name on PATH; None if absent."""
    if "/" in command:
        path = Path(command)
        if not path.is_absolute() and repo_root is not None:
            path = repo_root / path
        return str(path) if path.exists() else None
    return shutil.which(command)


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
