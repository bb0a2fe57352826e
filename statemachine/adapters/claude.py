"""The `claude` agent kind: Claude Code in headless print mode (``claude -p``), run once in the worktree.

Each run gets its own Claude Code config folder (``CLAUDE_CONFIG_DIR``) under the attempt's evidence
folder, and reads no settings files unless the policy names their sources, so the user's ``~/.claude``
(settings, hooks, permissions, memory, MCP servers, logins) and a repository's ``.claude/`` never change
a run. The policy's tools are the only ones the model is offered and the only ones pre-approved; the
permission mode never prompts (``dontAsk`` denies anything else). Inherited ``ANTHROPIC_*`` and
``CLAUDE*`` variables are dropped: the policy alone says which API, model and key a run uses.
The stream-json output (one JSON event per line) is kept as the log; token usage comes from its
final ``result`` event.

Policy keys (``agent:``): ``command`` (default ``claude``), ``model``, ``base_url`` (default Anthropic's),
``api_key_env`` (default ``ANTHROPIC_API_KEY``; the variable in orch's environment whose value the
agent gets as ``ANTHROPIC_API_KEY``), ``allowed_tools`` (default Read, Edit, Write, Glob, Grep, Bash;
permission rules such as ``Bash(npm test)`` are allowed), ``max_turns``, ``permission_mode`` (default
``dontAsk``), ``setting_sources`` (default none; any of user, project, local), ``partial_messages``
(default true: stream every model delta, so the idle timeout only fires when the model or a tool is
really silent), ``scrub_subprocess_env`` (default false; true keeps the API key out of the agent's
Bash commands, which Claude Code only supports with bubblewrap installed), ``args`` (extra ``claude``
arguments), ``env`` (extra non-secret variables), ``timeout_seconds`` and ``idle_timeout_seconds``
(used when the request carries none).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from statemachine.adapters.agent_base import (
    agent_args,
    agent_env,
    finished,
    jail_spec,
    log_events,
    missing_key,
    model_hosts,
    not_found,
    resolve_command,
    write_prompt,
)
from statemachine.adapters.events import parse_events
from statemachine.adapters.jail import Jail
from statemachine.adapters.process import run_process, scrubbed_env
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest, AgentResult

DEFAULT_API_KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_TOOLS = ("Read", "Edit", "Write", "Glob", "Grep", "Bash")
PERMISSION_MODES = ("dontAsk", "acceptEdits", "default", "bypassPermissions", "auto", "plan")
SETTING_SOURCES = ("user", "project", "local")
LOG_NAME = "agent.log"  # the stream-json events (stdout) and claude's diagnostics (stderr)
CONFIG_NAME = "claude-config"  # CLAUDE_CONFIG_DIR: settings, session transcript, .claude.json
# Set for every run: no update checks, telemetry, error reports or other traffic besides the model API.
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
}
_TOOL_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\(.*\))?$", re.DOTALL)


def _usage_into(total: dict[str, int], usage: dict[str, Any]) -> None:
    for key, value in usage.items():
        if isinstance(value, int) and not isinstance(value, bool):
            name = key.removesuffix("_tokens")
            total[name] = total.get(name, 0) + value


def token_usage(events: list[dict[str, Any]]) -> dict[str, int] | None:
    """Tokens of the whole run: ``input_tokens`` becomes ``input``, ``cache_read_input_tokens`` ``cache_read_input``...

    The final ``result`` event carries the session's totals. Without one (a run stopped by a timeout),
    the usage of each assistant message is summed, once per message id.
    """
    total: dict[str, int] = {}
    results = [e for e in events if e.get("type") == "result" and isinstance(e.get("usage"), dict)]
    if results:
        _usage_into(total, results[-1]["usage"])
    else:
        seen: dict[str, dict[str, Any]] = {}
        for event in events:
            message = event.get("message")
            if (
                event.get("type") != "assistant"
                or not isinstance(message, dict)
                or not isinstance(message.get("usage"), dict)
            ):
                continue
            seen[str(message.get("id") or len(seen))] = message["usage"]  # one message may come as several events
        if not seen:
            return None
        for usage in seen.values():
            _usage_into(total, usage)
    total.setdefault("input", 0)
    total.setdefault("output", 0)
    return total


def failure_message(events: list[dict[str, Any]]) -> str | None:
    """Why the session ended badly, from its ``result`` event (max turns, API errors...), if it did."""
    results = [e for e in events if e.get("type") == "result"]
    if not results:
        return None
    last = results[-1]
    if not last.get("is_error") and last.get("subtype") == "success":
        return None
    detail = last.get("result") or ", ".join(str(e) for e in (last.get("errors") or [])) or ""
    text = f"claude ended with {last.get('subtype') or 'an error'}" + (f": {detail}" if detail else "")
    return text[:2000]


class ClaudeAgent:
    """Runs ``claude -p --output-format stream-json --verbose`` in the worktree; the prompt goes on stdin."""

    kind = "claude"

    def __init__(self, config: dict[str, Any], repo_root: Path, jail: Jail | None = None) -> None:
        self.config = dict(config)
        self.repo_root = repo_root
        self.jail = jail or Jail.for_policy({}, repo_root)
        self.command = str(config.get("command") or "claude")
        self.model = str(config["model"]) if config.get("model") else None
        self.base_url = str(config["base_url"]) if config.get("base_url") else None
        self.api_key_env = str(config.get("api_key_env") or DEFAULT_API_KEY_ENV)
        tools = config.get("allowed_tools")
        if tools is None:
            tools = list(DEFAULT_TOOLS)
        valid = (
            isinstance(tools, list)
            and bool(tools)
            and all(isinstance(t, str) and _TOOL_NAME.match(t.strip()) for t in tools)
        )
        if not valid:
            raise OrchError(
                f"agent.allowed_tools must be a non-empty list of tool names or rules, not {tools!r}",
                'for example allowed_tools: [Read, Edit, Write, Glob, Grep, "Bash(python -m pytest *)"]',
            )
        self.allowed_tools = [t.strip() for t in tools]
        max_turns = config.get("max_turns")
        if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1):
            raise OrchError(
                f"agent.max_turns must be a positive whole number, not {max_turns!r}", "for example max_turns: 50"
            )
        self.max_turns: int | None = max_turns
        self.permission_mode = str(config.get("permission_mode") or "dontAsk")
        if self.permission_mode not in PERMISSION_MODES:
            raise OrchError(
                f"agent.permission_mode {self.permission_mode!r} is not one of {', '.join(PERMISSION_MODES)}",
                "use dontAsk (the default): the policy's tools run, everything else is denied without a prompt",
            )
        sources = config.get("setting_sources") or []
        if not isinstance(sources, list) or any(s not in SETTING_SOURCES for s in sources):
            raise OrchError(
                f"agent.setting_sources must list some of {', '.join(SETTING_SOURCES)}, not {sources!r}",
                "the default (none) reads no settings files; [project] also reads the repository's .claude/settings.json",
            )
        self.setting_sources = [str(s) for s in sources]
        self.partial_messages = bool(config.get("partial_messages", True))
        self.scrub_subprocess_env = bool(config.get("scrub_subprocess_env", False))
        self.args = agent_args(config, '["--effort", "high"]')
        self.env = agent_env(config)

    # -- pieces ---------------------------------------------------------------------------------------

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def tool_names(self) -> list[str]:
        """The tools offered to the model: the names of the allowed tools and rules, once each."""
        names: list[str] = []
        for rule in self.allowed_tools:
            match = _TOOL_NAME.match(rule)
            if match and match.group(1) not in names:
                names.append(match.group(1))
        return names

    def argv(self, exe: str, report_dir: Path) -> list[str]:
        argv = [
            exe,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            self.permission_mode,
            "--tools",
            ",".join(self.tool_names()),
            "--allowedTools",
            *self.allowed_tools,
            "--setting-sources",
            ",".join(self.setting_sources),
            "--strict-mcp-config",
            "--add-dir",
            str(report_dir),
        ]
        if self.partial_messages:
            argv.append("--include-partial-messages")
        if self.model:
            argv += ["--model", self.model]
        if self.max_turns is not None:
            argv += ["--max-turns", str(self.max_turns)]
        return argv + self.args

    def jail_env(self, config_dir: Path, request: AgentRequest) -> dict[str, str]:
        """What Claude Code gets besides the jail's allowlist: quiet settings, its config folder, its model key."""
        env = {
            **self.env,
            **request.extra_env,
            **QUIET_ENV,
            "CLAUDE_CONFIG_DIR": str(config_dir),
            "ANTHROPIC_API_KEY": os.environ.get(self.api_key_env, ""),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
            "ORCH_PROMPT_FILE": str(request.evidence_dir / "prompt.md"),
        }
        if self.base_url:
            env["ANTHROPIC_BASE_URL"] = self.base_url
        if self.scrub_subprocess_env:
            env["CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"] = "1"
        return env

    def environment(self, config_dir: Path, request: AgentRequest) -> dict[str, str]:
        ours = {
            **QUIET_ENV,
            "CLAUDE_CONFIG_DIR": str(config_dir),
            "ANTHROPIC_API_KEY": os.environ.get(self.api_key_env, ""),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
            "ORCH_PROMPT_FILE": str(request.evidence_dir / "prompt.md"),
        }
        if self.base_url:
            ours["ANTHROPIC_BASE_URL"] = self.base_url
        if self.scrub_subprocess_env:
            ours["CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"] = "1"
        env = scrubbed_env()
        for name in list(env):
            upper = name.upper()
            if upper.startswith(("ANTHROPIC_", "CLAUDE")) or upper.endswith("API_KEY"):
                del env[name]  # another session's Claude Code state, another API or model, keys for other services
        env.update(self.env)
        env.update(request.extra_env)
        env.update(ours)
        return env

    # -- the port -------------------------------------------------------------------------------------

    def run(self, request: AgentRequest) -> AgentResult:
        evidence = request.evidence_dir
        evidence.mkdir(parents=True, exist_ok=True)
        log = evidence / LOG_NAME
        exe = self.resolve()
        if exe is None:
            return not_found(log, "claude", self.command, "npm install -g @anthropic-ai/claude-code")
        if refused := missing_key(log, self.api_key_env, False):
            return refused
        config_dir = evidence / CONFIG_NAME
        if config_dir.exists():
            shutil.rmtree(config_dir)  # a fresh config per run, even when an interrupted attempt is retried
        config_dir.mkdir(parents=True)
        report_dir = request.report_path.parent
        report_dir.mkdir(parents=True, exist_ok=True)
        write_prompt(evidence / "prompt.md", request.prompt)
        timeout, idle = float(request.timeout_seconds), float(request.idle_timeout_seconds)  # the policy's (settings)
        if self.jail.enabled:
            outcome = self.jail.run(
                self.argv(exe, report_dir),
                jail_spec(request, exe, model_hosts(self.base_url or "https://api.anthropic.com", self.jail)),
                self.jail_env(config_dir, request),
                log,
                timeout,
                idle,
                stdin_text=request.prompt,
            )
            result = outcome.result
        else:
            result = run_process(
                self.argv(exe, report_dir),
                request.workdir,
                self.environment(config_dir, request),
                log,
                timeout,
                idle,
                stdin_text=request.prompt,
            )
        events = log_events(log, parse_events)
        return finished(result, log, "claude", failure_message(events), token_usage(events))
