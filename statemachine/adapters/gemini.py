"""The `gemini` agent kind: Gemini CLI in headless mode (``gemini -p ... --output-format stream-json``), run once in
the worktree.

Each run gets its own Gemini CLI home (``GEMINI_CLI_HOME``) under the attempt's evidence folder, holding the
``.gemini/settings.json`` orch writes: Gemini-API-key auth, no usage statistics, telemetry, update checks,
checkpoints or IDE link, no ``.env`` files from the worktree. The user's ``~/.gemini`` (settings, logins, memory,
extensions, trusted folders) and the machine's ``/etc/gemini-cli`` never change a run. Tools run without approval
(``--approval-mode yolo``): orch's jail, not the CLI, is what confines them. Inherited ``GEMINI_*`` and
``GOOGLE_*`` variables are dropped: the policy alone says which API, model and key a run uses. The stream-json
output (one JSON event per line) is kept as the log; token usage comes from its final ``result`` event, or, for a
run stopped before it, from the session transcript in the run's home.

Policy keys (``agent:``): ``command`` (default ``gemini``), ``model``, ``base_url`` (default Google's Gemini API;
handed over as ``GOOGLE_GEMINI_BASE_URL``), ``api_key_env`` (default ``GEMINI_API_KEY``; the variable in orch's
environment whose value the agent gets as ``GEMINI_API_KEY``), ``args`` (extra ``gemini`` arguments), ``env``
(extra non-secret variables), ``timeout_seconds`` and ``idle_timeout_seconds`` (used when the request carries none).
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
from statemachine.adapters.process import run_process, scrubbed_env
from statemachine.ports import AgentRequest, AgentResult

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_KEY_ENV = "GEMINI_API_KEY"
LOG_NAME = "agent.log"  # the stream-json events (stdout) and the CLI's diagnostics (stderr)
HOME_NAME = "gemini-home"  # GEMINI_CLI_HOME: .gemini/settings.json, the session transcript, projects.json
MAX_TRANSCRIPTS = 4  # session transcripts read for token counts when the run ended without its result event
MAX_TRANSCRIPT_BYTES = 16 * 1024 * 1024
# Set for every run: no telemetry, no container sandbox of the CLI's own (the jail is the sandbox), no folder-trust
# prompt, and no system settings or defaults from the machine (they point at files that do not exist).
QUIET_ENV = {
    "GEMINI_TELEMETRY_ENABLED": "false",
    "GEMINI_SANDBOX": "false",
    "GEMINI_CLI_TRUST_WORKSPACE": "true",
    "NO_BROWSER": "true",
}


def settings(model: str | None) -> dict[str, Any]:
    """The Gemini CLI user settings of one run: the only settings file orch lets it read besides the repository's."""
    data: dict[str, Any] = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            "checkpointing": {"enabled": False},
        },
        "ide": {"enabled": False},
        "advanced": {"ignoreLocalEnv": True},
    }
    if model:
        data["model"] = {"name": model}
    return data


def _add(total: dict[str, int], name: str, value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        total[name] = total.get(name, 0) + value


def token_usage(events: list[dict[str, Any]], home: Path | None = None) -> dict[str, int] | None:
    """Tokens of the whole run, from the final ``result`` event's stats: ``input_tokens`` becomes ``input`` (cached
    tokens included), ``cached`` ``cached_input``, ``output_tokens`` ``output``, ``total_tokens`` ``total`` (which also
    counts thinking tokens). Without one (a run stopped by a timeout), each model message of the session transcript
    in ``home`` is counted once."""
    total: dict[str, int] = {}
    results = [e for e in events if e.get("type") == "result" and isinstance(e.get("stats"), dict)]
    if results:
        stats = results[-1]["stats"]
        for key, name in (("input_tokens", "input"), ("cached", "cached_input"), ("output_tokens", "output")):
            _add(total, name, stats.get(key))
        _add(total, "total", stats.get("total_tokens"))
    elif home is not None:
        seen: dict[str, dict[str, Any]] = {}
        for path in sorted((home / ".gemini" / "tmp").glob("*/chats/*.jsonl"))[:MAX_TRANSCRIPTS]:
            if path.is_symlink() or not path.is_file():
                continue  # the agent could write here: regular files only, and a bounded read of each
            try:
                with open(path, "rb") as fh:
                    data = fh.read(MAX_TRANSCRIPT_BYTES).decode(errors="replace")
            except OSError:
                continue
            for record in parse_events(data):
                if record.get("type") == "gemini" and isinstance(record.get("tokens"), dict):
                    seen[str(record.get("id") or len(seen))] = record["tokens"]  # a message is rewritten as it grows
        if not seen:
            return None
        for tokens in seen.values():
            for key, name in (("input", "input"), ("cached", "cached_input"), ("output", "output"), ("total", "total")):
                _add(total, name, tokens.get(key))
    if not total:
        return None
    total.setdefault("input", 0)
    total.setdefault("output", 0)
    return total


def failure_message(events: list[dict[str, Any]]) -> str | None:
    """Why the session ended badly, from its ``result`` event (an API error, the turn limit), if it did."""
    results = [e for e in events if e.get("type") == "result"]
    if not results or results[-1].get("status") == "success":
        return None
    err = results[-1].get("error")
    detail = str(err.get("message") or err.get("type") or "") if isinstance(err, dict) else str(err or "")
    text = f"gemini ended with {results[-1].get('status') or 'an error'}" + (f": {detail}" if detail else "")
    return text[:2000]


class GeminiAgent:
    """Runs ``gemini -p "" --output-format stream-json --approval-mode yolo`` in the worktree; the prompt goes on stdin."""

    kind = "gemini"

    def __init__(self, config: dict[str, Any], repo_root: Path, jail: Jail | None = None) -> None:
        self.config = dict(config)
        self.repo_root = repo_root
        self.jail = jail or Jail.for_policy({}, repo_root)
        self.command = str(config.get("command") or "gemini")
        self.model = str(config["model"]) if config.get("model") else None
        self.base_url = str(config["base_url"]) if config.get("base_url") else None
        self.api_key_env = str(config.get("api_key_env") or DEFAULT_API_KEY_ENV)
        self.args = agent_args(config, '["--debug"]')
        self.env = agent_env(config)

    # -- pieces ---------------------------------------------------------------------------------------

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def argv(self, exe: str, report_dir: Path) -> list[str]:
        # -p "" runs headless; the CLI appends the -p text to what stdin holds, the prompt
        argv = [exe, "-p", "", "--output-format", "stream-json", "--approval-mode", "yolo", "--skip-trust"]
        argv += ["--include-directories", str(report_dir)]  # the report's folder: the only writable place outside
        if self.model:
            argv += ["--model", self.model]
        return argv + self.args

    def ours(self, home: Path, request: AgentRequest) -> dict[str, str]:
        """The variables orch sets: quiet settings, the run's home, its model endpoint and key, orch's paths."""
        env = {
            **QUIET_ENV,
            "GEMINI_CLI_HOME": str(home),
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(home / "no-system-settings.json"),
            "GEMINI_CLI_SYSTEM_DEFAULTS_PATH": str(home / "no-system-defaults.json"),
            "GEMINI_API_KEY": os.environ.get(self.api_key_env, ""),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
            "ORCH_PROMPT_FILE": str(request.evidence_dir / "prompt.md"),
        }
        if self.base_url:
            env["GOOGLE_GEMINI_BASE_URL"] = self.base_url
        return env

    def jail_env(self, home: Path, request: AgentRequest) -> dict[str, str]:
        """What the CLI gets besides the jail's allowlist."""
        return {**self.env, **request.extra_env, **self.ours(home, request)}

    def environment(self, home: Path, request: AgentRequest) -> dict[str, str]:
        env = scrubbed_env()
        for name in list(env):
            upper = name.upper()
            if upper.startswith(("GEMINI_", "GOOGLE_")) or upper.endswith("API_KEY") or name == self.api_key_env:
                del env[name]  # another Gemini setup (Vertex, Code Assist, a model), keys for other services
        env.update(self.env)
        env.update(request.extra_env)
        env.update(self.ours(home, request))
        return env

    # -- the port -------------------------------------------------------------------------------------

    def run(self, request: AgentRequest) -> AgentResult:
        evidence = request.evidence_dir
        evidence.mkdir(parents=True, exist_ok=True)
        log = evidence / LOG_NAME
        exe = self.resolve()
        if exe is None:
            return not_found(log, "gemini", self.command, "npm install -g @google/gemini-cli")
        if refused := missing_key(log, self.api_key_env, False):
            return refused
        home = evidence / HOME_NAME
        if home.exists():
            shutil.rmtree(home)  # a fresh home per run, even when an interrupted attempt is retried
        (home / ".gemini").mkdir(parents=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(settings(self.model), indent=2) + "\n")
        report_dir = request.report_path.parent
        report_dir.mkdir(parents=True, exist_ok=True)
        write_prompt(evidence / "prompt.md", request.prompt)
        timeout, idle = float(request.timeout_seconds), float(request.idle_timeout_seconds)  # the policy's (settings)
        argv = self.argv(exe, report_dir)
        if self.jail.enabled:
            hosts = model_hosts(self.base_url or DEFAULT_BASE_URL, self.jail)
            outcome = self.jail.run(
                argv,
                jail_spec(request, exe, hosts),
                self.jail_env(home, request),
                log,
                timeout,
                idle,
                stdin_text=request.prompt,
            )
            result = outcome.result
        else:
            env = self.environment(home, request)
            result = run_process(argv, request.workdir, env, log, timeout, idle, stdin_text=request.prompt)
        events = log_events(log, parse_events)
        return finished(result, log, "gemini", failure_message(events), token_usage(events, home))
