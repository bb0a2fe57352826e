"""Agent adapters by kind: `command` runs any executable; the map names every kind orch knows."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from statemachine.adapters.process import is_secret_name, run_process, scrubbed_env
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest, AgentResult


def resolve_command(command: str, repo_root: Path | None) -> str | None:
    """The agent's executable: a path (relative ones from the repository root) or a name on PATH; None if absent."""
    if "/" in command:
        path = Path(command)
        if not path.is_absolute() and repo_root is not None:
            path = repo_root / path
        return str(path) if path.exists() else None
    return shutil.which(command)


def refuse(log: Path, message: str, hint: str) -> AgentResult:
    """An agent run that could not start: the reason goes to its log and into the result."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"orch: {message}\norch: {hint}\n")
    return AgentResult(None, False, False, 0.0, str(log), 0, error=f"{message} ({hint})")


class CommandAgent:
    """Runs ``command args...`` in the worktree; the prompt arrives on stdin and in $ORCH_PROMPT_FILE."""

    kind = "command"

    def __init__(self, command: str, args: list[str], env: dict[str, str] | None = None, repo_root: Path | None = None) -> None:
        self.command = command
        self.args = list(args)
        self.env = dict(env or {})
        self.repo_root = repo_root

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def run(self, request: AgentRequest) -> AgentResult:
        exe = self.resolve()
        log = request.evidence_dir / "agent.log"
        if exe is None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"orch: agent command {self.command!r} not found\n")
            return AgentResult(None, False, False, 0.0, str(log), 0, error=f"agent command {self.command!r} not found on PATH")
        prompt_file = request.evidence_dir / "prompt.md"
        prompt_file.write_text(request.prompt)
        env = scrubbed_env({
            **self.env,
            **request.extra_env,
            "ORCH_PROMPT_FILE": str(prompt_file),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
        })
        result = run_process([exe, *self.args], request.workdir, env, log, request.timeout_seconds,
                             request.idle_timeout_seconds, stdin_text=request.prompt)
        return AgentResult(result.exit_code, result.timed_out, result.idle_timed_out, result.duration_seconds,
                           str(log), result.output_bytes, error=result.error)


def make_agent(config: dict[str, Any], repo_root: Path) -> CommandAgent:
    kind = config.get("kind", "command")
    env = dict(config.get("env") or {})
    bad = [k for k in env if is_secret_name(k)]
    if bad:
        raise OrchError(f"agent.env names secret-looking variables: {', '.join(bad)}",
                        "the agent never receives credentials; remove them from the policy")
    if kind == "command":
        return CommandAgent(config["command"], config.get("args", []), env, repo_root)
    if kind == "codex":
        from statemachine.adapters.codex import CodexAgent

        return CodexAgent(config, repo_root)  # type: ignore[return-value]
    if kind == "claude":
        from statemachine.adapters.claude import ClaudeAgent

        return ClaudeAgent(config, repo_root)  # type: ignore[return-value]
    raise OrchError(f"agent kind {kind!r} is not known", "use command, codex or claude")

