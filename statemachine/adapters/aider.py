"""The `aider` agent kind: the Aider CLI (PyPI ``aider-chat``) run once, non-interactively, in the worktree.

``aider --message-file <prompt> --yes-always --no-git`` sends orch's prompt to the model once, applies the edits
of its reply (and of the reflections aider itself asks for) and exits. orch owns git: aider runs without it
(``--no-git``: no commits, no index, no .gitignore edits). Files reach the model as aider's edit formats allow:
its reply names a path and the edit (a whole file, or SEARCH/REPLACE blocks), and aider writes it, relative to
the worktree or at an absolute path. The completion report comes about the same way: orch's prompt names the
report's absolute path and the model creates that file with an edit block; the runner then checks the report
against the change set it captures itself, as for every agent. Shell commands the model suggests are never run
(aider asks for an explicit yes, which ``--yes-always`` does not give).

Each run gets a private HOME under the attempt's evidence folder (``aider-home``), so no ``~/.aider.conf.yml``,
``~/.env`` or ``~/.aider/`` of the user is read. Update checks, analytics, release notes, URL detection and
the browser are off; the model-metadata cache in that HOME is seeded so that aider never downloads it, and
litellm uses its bundled model list: the only host aider reaches is the model endpoint. Its chat, input and LLM
histories go to the evidence folder, not the worktree. Token usage comes from aider's own analytics log (a
local file, ``--analytics-log``; nothing is sent): one ``message_send`` event per model reply.

Policy keys (``agent:``): ``command`` (default ``aider``), ``model`` (a litellm model name; ``openai/<name>``
for an OpenAI-compatible server), ``base_url`` (default OpenAI's; given as ``--openai-api-base``),
``api_key_env`` (default ``OPENAI_API_KEY``; the variable in orch's environment whose value the agent gets as
``OPENAI_API_KEY``; null for a server without auth), ``args`` (extra ``aider`` arguments, after orch's: later
flags win, so ``["--edit-format", "whole"]`` or ``["--read", "src"]``), ``env`` (extra non-secret variables),
``timeout_seconds`` and ``idle_timeout_seconds``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from statemachine.adapters.agent_base import (
    agent_args,
    agent_env,
    agent_result,
    jail_spec,
    missing_key,
    model_hosts,
    not_found,
    resolve_command,
    write_prompt,
)
from statemachine.adapters.jail import Jail
from statemachine.ports import AgentRequest, AgentResult

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
LOG_NAME = "agent.log"  # aider's terminal output (--no-pretty) and diagnostics
HOME_NAME = "aider-home"  # the run's HOME: aider's ~/.aider (analytics id, caches) and nothing of the user's
ANALYTICS_NAME = "aider-analytics.jsonl"  # aider's own event log: token counts per reply (local file only)
HISTORY_NAMES = {
    "--chat-history-file": "aider-chat.md",
    "--input-history-file": "aider-input.history",
    "--llm-history-file": "aider-llm.history",
}
# aider downloads litellm's model list into ~/.aider/caches unless a fresh, non-empty one is there; a placeholder
# entry keeps it offline, and litellm then answers from the copy it ships (LITELLM_LOCAL_MODEL_COST_MAP).
MODEL_CACHE = (".aider", "caches", "model_prices_and_context_window.json")
QUIET_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
# Orch's flags: one message, no prompts, no git, nothing downloaded or sent besides the model requests.
FIXED_ARGS = (
    "--yes-always",
    "--no-git",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-gitignore",
    "--no-check-update",
    "--no-show-release-notes",
    "--no-analytics",
    "--no-gui",
    "--no-detect-urls",
    "--disable-playwright",
    "--no-notifications",
    "--no-pretty",
    "--no-fancy-input",
    "--no-suggest-shell-commands",
    "--no-auto-lint",
    "--no-auto-test",
    "--no-show-model-warnings",
    "--map-tokens",
    "0",
    # one message, then exit: a background summary of the chat so far would be paid for and never used
    "--max-chat-history-tokens",
    "1000000000",
)
READ_LIMIT = 16 * 1024 * 1024  # of the analytics log, which the agent can write
_TOKENS_LINE = re.compile(r"^Tokens: ([\d.]+)(k?) sent,.*?([\d.]+)(k?) received\.", re.MULTILINE)


def read_capped(path: Path, limit: int = READ_LIMIT) -> str:
    """A file the jailed agent could write: read only if it is a regular file (no symlink followed), at most
    ``limit`` bytes; "" otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, limit).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def analytics_events(text: str) -> list[dict[str, Any]]:
    """The events of aider's analytics log (one JSON object a line); other lines are skipped."""
    out = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            out.append(event)
    return out


def token_usage(events: list[dict[str, Any]], log_text: str = "") -> dict[str, int] | None:
    """Tokens of the whole run: the ``prompt_tokens`` and ``completion_tokens`` of every ``message_send`` event.

    Aider counts what the API reports, or, for a streamed reply the API gave no usage for, what its tokenizer
    counts. Without an analytics log, the ``Tokens: 2.4k sent, 57 received.`` lines of its output are summed
    (rounded as aider prints them)."""
    sends: list[dict[str, Any]] = [
        e["properties"] for e in events if e.get("event") == "message_send" and isinstance(e.get("properties"), dict)
    ]
    if sends:
        total = {"input": 0, "output": 0}
        for props in sends:
            for key, name in (("prompt_tokens", "input"), ("completion_tokens", "output")):
                value = props.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    total[name] += value
        return total
    lines = _TOKENS_LINE.findall(log_text)
    if not lines:
        return None

    def count(number: str, k: str) -> int:
        return round(float(number) * (1000 if k else 1))

    return {"input": sum(count(a, b) for a, b, _, _ in lines), "output": sum(count(c, d) for _, _, c, d in lines)}


def failure_message(events: list[dict[str, Any]], log_text: str) -> str | None:
    """Why a run that exited 0 did no work: the model never answered (aider reports API errors and exits 0)."""
    if any(e.get("event") == "message_send" for e in events):
        return None
    errors = [
        str((e.get("properties") or {}).get("exception") or "")
        for e in events
        if e.get("event") == "message_send_exception"
    ]
    detail = next((e for e in reversed(errors) if e), "")
    if not detail:
        lines = [ln.strip() for ln in log_text.splitlines() if "error" in ln.lower() and ln.strip()]
        detail = lines[-1] if lines else ""
    return ("aider got no reply from the model" + (f": {detail}" if detail else ""))[:2000]


class AiderAgent:
    """Runs ``aider --message-file prompt.md --yes-always --no-git`` in the worktree."""

    kind = "aider"

    def __init__(self, config: dict[str, Any], repo_root: Path, jail: Jail | None = None) -> None:
        self.config = dict(config)
        self.repo_root = repo_root
        self.jail = jail or Jail.for_policy({}, repo_root)
        self.command = str(config.get("command") or "aider")
        self.model = str(config["model"]) if config.get("model") else None
        self.base_url = str(config.get("base_url") or DEFAULT_BASE_URL)
        key_env = config.get("api_key_env", DEFAULT_API_KEY_ENV)
        self.api_key_env: str | None = str(key_env) if key_env else None
        self.args = agent_args(config, '["--edit-format", "whole"]')
        self.env = agent_env(config)

    def resolve(self) -> str | None:
        return resolve_command(self.command, self.repo_root)

    def argv(self, exe: str, evidence: Path) -> list[str]:
        argv = [exe, *FIXED_ARGS, "--openai-api-base", self.base_url, "--analytics-log", str(evidence / ANALYTICS_NAME)]
        for flag, name in HISTORY_NAMES.items():
            argv += [flag, str(evidence / name)]
        if self.model:
            argv += ["--model", self.model]
        return argv + self.args + ["--message-file", str(evidence / "prompt.md")]

    def jail_env(self, home: Path, request: AgentRequest) -> dict[str, str]:
        """What aider gets besides the jail's allowlist: its private HOME, quiet settings, its model key."""
        env = {
            **self.env,
            **request.extra_env,
            **QUIET_ENV,
            "HOME": str(home),
            "ORCH_REPORT_PATH": str(request.report_path),
            "ORCH_WORKTREE": str(request.workdir),
            "ORCH_PROMPT_FILE": str(request.evidence_dir / "prompt.md"),
        }
        if self.api_key_env and self.api_key_env in os.environ:
            env["OPENAI_API_KEY"] = os.environ[self.api_key_env]
        return env

    def run(self, request: AgentRequest) -> AgentResult:
        evidence = request.evidence_dir
        evidence.mkdir(parents=True, exist_ok=True)
        log = evidence / LOG_NAME
        exe = self.resolve()
        if exe is None:
            return not_found(log, "aider", self.command, "pipx install aider-chat==0.86.2")
        if refused := missing_key(log, self.api_key_env, True):
            return refused
        home = evidence / HOME_NAME
        if home.is_symlink() or home.is_file():
            home.unlink()
        elif home.exists():
            shutil.rmtree(home)  # a fresh HOME per run, even when an interrupted attempt is retried
        cache = home.joinpath(*MODEL_CACHE)
        cache.parent.mkdir(parents=True)
        cache.write_text('{"orch-placeholder": {}}\n')
        for name in (ANALYTICS_NAME, *HISTORY_NAMES.values()):
            (evidence / name).unlink(missing_ok=True)
        request.report_path.parent.mkdir(parents=True, exist_ok=True)
        write_prompt(evidence / "prompt.md", request.prompt)
        outcome = self.jail.run(
            self.argv(exe, evidence),
            jail_spec(request, exe, model_hosts(self.base_url, self.jail)),
            self.jail_env(home, request),
            log,
            float(request.timeout_seconds),
            float(request.idle_timeout_seconds),
        )
        result = agent_result(outcome, log)
        events = analytics_events(read_capped(evidence / ANALYTICS_NAME))
        log_text = read_capped(log)
        error = result.error
        if error is None and not (result.timed_out or result.idle_timed_out):
            if result.exit_code != 0:
                error = f"aider exited with code {result.exit_code}"
            else:
                error = failure_message(events, log_text)
        return AgentResult(
            result.exit_code,
            result.timed_out,
            result.idle_timed_out,
            result.duration_seconds,
            result.log,
            result.output_bytes,
            error=error,
            tokens=token_usage(events, log_text),
        )
