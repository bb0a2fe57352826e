"""The `opencode` agent kind: OpenCode (``opencode run --format json``) run once, non-interactively, in the worktree.

Each run gets its own OpenCode home under the attempt's evidence folder (``XDG_CONFIG_HOME``, ``XDG_DATA_HOME``,
``XDG_CACHE_HOME``, ``XDG_STATE_HOME`` and ``HOME`` point into it) with an ``opencode.json`` orch writes: one
provider, ``orch``, an OpenAI-compatible endpoint (Chat Completions) at the policy's ``base_url``, and the policy's
model. The user's ``~/.config/opencode`` and ``~/.local/share/opencode`` (config, logins, plugins, agents), a
repository's ``opencode.json``, ``.opencode/`` and ``AGENTS.md``, Claude Code's files and skills never change a
run. No update check, model list download, share link, LSP download or plugin
install runs: OpenCode would fetch ``@opencode-ai/plugin`` from npm into its config folder, so orch leaves a
package manifest there that says it is installed. OpenCode has no sandbox of its own; the jail confines it.
The JSON event output (one event per line) is kept as the log; token usage is the sum of its ``step_finish``
events.

Policy keys (``agent:``): ``command`` (default ``opencode``), ``model`` (required: the model id the endpoint
serves), ``base_url`` (default OpenAI's), ``api_key_env`` (default ``OPENAI_API_KEY``; the variable in orch's
environment whose value the provider sends; null for a server without auth), ``args`` (extra ``opencode run`` arguments), ``env`` (extra non-secret variables).
"""

from __future__ import annotations

import json
import os
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
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest, AgentResult

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
PROVIDER_ID = "orch"
LOG_NAME = "agent.log"  # the JSON events (stdout) and opencode's own log lines (stderr)
HOME_NAME = "opencode-home"  # HOME and the XDG folders: config, session database, logs
PLUGIN_PACKAGE = "@opencode-ai/plugin"
# Set for every run: nothing fetched or read besides the model API and the files orch wrote.
QUIET_ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
    "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
    "OPENCODE_PURE": "1",
}


def token_usage(events: list[dict[str, Any]]) -> dict[str, int] | None:
    """Tokens of the whole run, summed over every model step (``step_finish``): ``input``, ``output``,
    ``reasoning``, ``cache_read``, ``cache_write`` and OpenCode's own ``total``."""
    total: dict[str, int] = {}
    seen = False

    def add(name: str, value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            total[name] = total.get(name, 0) + value

    for event in events:
        part = event.get("part")
        if event.get("type") != "step_finish" or not isinstance(part, dict) or not isinstance(part.get("tokens"), dict):
            continue
        seen = True
        for key, value in part["tokens"].items():
            if isinstance(value, dict):
                for sub, count in value.items():
                    add(f"{key}_{sub}", count)
            else:
                add(key, value)
    if not seen:
        return None
    total.setdefault("input", 0)
    total.setdefault("output", 0)
    return total


def failure_message(events: list[dict[str, Any]]) -> str | None:
    """The last error OpenCode reported (``{"type": "error", "error": {"name", "data": {"message"}}}``), if any."""
    message = None
    for event in events:
        if event.get("type") != "error":
            continue
        err = event.get("error")
        data = err.get("data") if isinstance(err, dict) else None
        if isinstance(data, dict) and data.get("message"):
            message = str(data["message"])
        elif isinstance(err, dict) and err.get("name"):
            message = str(err["name"])
        else:
            message = "opencode reported an error"
    return f"opencode: {message}"[:2000] if message else None


class OpenCodeAgent:
    """Runs ``opencode run --format json`` in the worktree with an orch-owned home; the prompt goes on stdin."""

    kind = "opencode"

    def __init__(self, config: dict[str, Any], repo_root: Path, jail: Jail | None = None) -> None:
        self.config = dict(config)
        self.repo_root = repo_root
        self.jail = jail or Jail.for_policy({}, repo_root)
        self.command = str(config.get("command") or "opencode")
        if not config.get("model") or not isinstance(config["model"], str):
            raise OrchError(
                "agent.model is required for kind opencode",
                "name the model the endpoint serves, for example model: gpt-5 with base_url: https://api.openai.com/v1",
            )
        self.model = str(config["model"])
        self.base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
        key_env = config.get("api_key_env", DEFAULT_API_KEY_ENV)
        self.api_key_env: str | None = str(key_env) if key_env else None
        self.args = agent_args(config, '["--variant", "high"]')
        self.env = agent_env(config)

    # -- pieces ---------------------------------------------------------------------------------------

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def opencode_config(self, report_dir: Path) -> dict[str, Any]:
        """The whole OpenCode configuration for one run (``opencode.json`` in its config folder)."""
        options: dict[str, Any] = {"baseURL": self.base_url}
        if self.api_key_env:
            options["apiKey"] = "{env:" + self.api_key_env + "}"  # OpenCode reads the key from the environment
        model = f"{PROVIDER_ID}/{self.model}"
        return {
            "model": model,
            "small_model": model,
            "enabled_providers": [PROVIDER_ID],  # no provider from an inherited key or a login
            "provider": {
                PROVIDER_ID: {
                    "npm": "@ai-sdk/openai-compatible",  # bundled in the binary: nothing to install
                    "name": "orch",
                    "options": options,
                    "models": {self.model: {"name": self.model}},
                }
            },
            "autoupdate": False,
            "share": "disabled",
            "snapshot": False,  # orch keeps the history: no shadow git repository of the worktree
            "lsp": False,
            "formatter": False,
            "mcp": {},
            "plugin": [],
            "instructions": [],
            # a headless run rejects whatever would ask; outside the worktree only the report's folder is allowed
            "permission": {
                "edit": "allow",
                "bash": "allow",
                "webfetch": "allow",
                "external_directory": {"*": "deny", f"{report_dir}/*": "allow"},
            },
        }

    def argv(self, exe: str) -> list[str]:
        # --title: a session needs no model-made title (one model call fewer)
        return [exe, "run", "--format", "json", "--print-logs", "--log-level", "INFO", "--title", "orch", *self.args]

    def prepare_home(self, home: Path, report_dir: Path) -> None:
        """A fresh home: the config orch wrote, and a manifest saying the plugin package is installed."""
        if home.is_symlink():
            home.unlink()
        elif home.exists():
            shutil.rmtree(home)  # a fresh home per run, even when an interrupted attempt is retried
        config_dir = home / "config" / "opencode"
        (config_dir / "node_modules").mkdir(parents=True)
        (config_dir / "opencode.json").write_text(json.dumps(self.opencode_config(report_dir), indent=2) + "\n")
        deps = {"dependencies": {PLUGIN_PACKAGE: "*"}}
        (config_dir / "package.json").write_text(json.dumps(deps) + "\n")
        (config_dir / "package-lock.json").write_text(json.dumps({"packages": {"": deps}}) + "\n")
        for sub in ("data", "cache", "state"):
            (home / sub).mkdir()

    def jail_env(self, home: Path, request: AgentRequest) -> dict[str, str]:
        """What OpenCode gets besides the jail's allowlist: its home, quiet settings, its model key."""
        env = {
            **self.env,
            **request.extra_env,
            **QUIET_ENV,
            "OPENCODE_DISABLE_PROJECT_CONFIG": "1",  # the repository's opencode.json, .opencode/, AGENTS.md
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
            "ORCH_PROMPT_FILE": str(request.evidence_dir / "prompt.md"),
        }
        if self.api_key_env:
            env[self.api_key_env] = os.environ.get(self.api_key_env, "")
        return env

    # -- the port -------------------------------------------------------------------------------------

    def run(self, request: AgentRequest) -> AgentResult:
        evidence = request.evidence_dir
        evidence.mkdir(parents=True, exist_ok=True)
        log = evidence / LOG_NAME
        exe = self.resolve()
        if exe is None:
            return not_found(log, "opencode", self.command, "npm install -g opencode-ai")
        if refused := missing_key(log, self.api_key_env, True):
            return refused
        home = evidence / HOME_NAME
        report_dir = request.report_path.parent
        report_dir.mkdir(parents=True, exist_ok=True)
        self.prepare_home(home, report_dir)
        write_prompt(evidence / "prompt.md", request.prompt)
        # with `sandbox: none` the jail runs it unconfined, with the same allowlisted environment
        outcome = self.jail.run(
            self.argv(exe),
            jail_spec(request, exe, model_hosts(self.base_url, self.jail)),
            self.jail_env(home, request),
            log,
            float(request.timeout_seconds),
            float(request.idle_timeout_seconds),
            stdin_text=request.prompt,
        )
        result = outcome.result
        events = log_events(log, parse_events)
        return finished(result, log, "opencode", failure_message(events), token_usage(events))
