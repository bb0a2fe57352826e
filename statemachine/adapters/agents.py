"""Agent adapters by kind: `command` runs any executable; make_agent names every kind orch knows (command, codex,
claude). The helpers the adapters share live in statemachine/adapters/agent_base.py (re-exported here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from statemachine.adapters.agent_base import agent_env, write_prompt
from statemachine.adapters.agent_base import agent_result as agent_result
from statemachine.adapters.agent_base import jail_spec as jail_spec
from statemachine.adapters.agent_base import model_hosts as model_hosts
from statemachine.adapters.agent_base import refuse as refuse
from statemachine.adapters.agent_base import resolve_command as resolve_command
from statemachine.adapters.jail import Jail
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest, AgentResult


class CommandAgent:
    """Runs ``command args...`` in the worktree; the prompt arrives on stdin and in $ORCH_PROMPT_FILE."""

    kind = "command"

    def __init__(
        self,
        command: str,
        args: list[str],
        env: dict[str, str] | None = None,
        repo_root: Path | None = None,
        jail: Jail | None = None,
    ) -> None:
        self.command = command
        self.args = list(args)
        self.env = dict(env or {})
        self.repo_root = repo_root
        self.jail = jail or Jail.for_policy({}, repo_root)

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def run(self, request: AgentRequest) -> AgentResult:
        exe = self.resolve()
        log = request.evidence_dir / "agent.log"
        if exe is None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"orch: agent command {self.command!r} not found\n")
            return AgentResult(
                None, False, False, 0.0, str(log), 0, error=f"agent command {self.command!r} not found on PATH"
            )
        prompt_file = request.evidence_dir / "prompt.md"
        write_prompt(prompt_file, request.prompt)
        env = {
            **self.env,
            **request.extra_env,
            "ORCH_PROMPT_FILE": str(prompt_file),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
        }
        hosts = self.jail.settings.agent_hosts or None  # a command agent has no network unless the policy names hosts
        spec = jail_spec(request, exe, hosts)
        # a script the policy names by its full path (`command: python`, `args: [/opt/agents/run.py]`) is shown read-only
        spec.read_only = tuple(Path(a) for a in self.args if os.path.isabs(a) and os.path.isfile(a))
        outcome = self.jail.run(
            [exe, *self.args],
            spec,
            env,
            log,
            request.timeout_seconds,
            request.idle_timeout_seconds,
            stdin_text=request.prompt,
        )
        return agent_result(outcome, log)


def make_agent(config: dict[str, Any], repo_root: Path, jail: Jail | None = None) -> CommandAgent:
    kind = config.get("kind", "command")
    env = agent_env(config)
    if kind == "command":
        return CommandAgent(config["command"], config.get("args", []), env, repo_root, jail)
    if kind == "codex":
        from statemachine.adapters.codex import CodexAgent

        return CodexAgent(config, repo_root, jail)  # type: ignore[return-value]
    if kind == "claude":
        from statemachine.adapters.claude import ClaudeAgent

        return ClaudeAgent(config, repo_root, jail)  # type: ignore[return-value]
    if kind == "opencode":
        from statemachine.adapters.opencode import OpenCodeAgent

        return OpenCodeAgent(config, repo_root, jail)  # type: ignore[return-value]
    if kind == "aider":
        from statemachine.adapters.aider import AiderAgent

        return AiderAgent(config, repo_root, jail)  # type: ignore[return-value]
    if kind == "gemini":
        from statemachine.adapters.gemini import GeminiAgent

        return GeminiAgent(config, repo_root, jail)  # type: ignore[return-value]
    raise OrchError(f"agent kind {kind!r} is not known", "use command, codex, claude, gemini, opencode or aider")
