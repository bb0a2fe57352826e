"""The `aider` agent kind, driven end to end: the REAL Aider CLI against a scripted Chat Completions server.

The model is scripted (tests/aider_chat_server.py) but everything else is real: aider (PyPI aider-chat) starts in
orch's agent jail with the flags, HOME and environment orch gives it, sends the prompt to the server over HTTP
through the jail's egress relay, applies the SEARCH/REPLACE blocks of the scripted reply to the worktree and
creates the completion report where the prompt says, and logs its token counts.

The binary comes from $ORCH_TEST_AIDER (for example a venv's bin/aider: `python3 -m venv /tmp/aider-venv &&
/tmp/aider-venv/bin/pip install aider-chat==0.86.2`); the tests that need it are skipped when it is unset.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aider_chat_server import COMPLETION_TOKENS, PROMPT_TOKENS, ScriptedChat, report_path_in, user_text
from conftest import Cli, git

from statemachine import resources
from statemachine.adapters.agents import make_agent
from statemachine.adapters.aider import (
    ANALYTICS_NAME,
    AiderAgent,
    analytics_events,
    failure_message,
    token_usage,
)
from statemachine.adapters.jail import probe
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest
from statemachine.store import Store

API_KEY_ENV = "ORCH_TEST_AIDER_MODEL_KEY"
API_KEY = "sk-aider-orch-test-0123456789abcdef"
GH_SECRET = "ghp_orchTestNeverLeaks0123456789abcdefXYZ"
REPORT = {
    "status": "completed",
    "summary": "Made add() explicit.",
    "changed_files": ["app.py"],
    "validation": [{"command": "python -m unittest", "result": "skipped"}],
}
NEW_LINE = "return int(a) + int(b)"
AIDER = os.environ.get("ORCH_TEST_AIDER") or None
needs_aider = pytest.mark.skipif(
    AIDER is None or not os.access(AIDER, os.X_OK),
    reason="no Aider CLI: set ORCH_TEST_AIDER to an aider executable (pip install aider-chat==0.86.2 in a venv)",
)


@pytest.fixture
def needs_jail() -> None:
    if not probe().ok:
        pytest.skip(f"orch's jail cannot run on this machine: {probe().reason}")


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    return API_KEY


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, holding a user's aider config that must not reach an orch run."""
    path = tmp_path / "home"
    path.mkdir()
    (path / ".aider.conf.yml").write_text("model: openai/poison-from-home\nauto-commits: true\nedit-format: whole\n")
    (path / ".env").write_text("OPENAI_API_KEY=sk-poison-from-home-env\n")
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def worktree(repo: Path) -> Path:
    wt = repo / ".orch" / "worktrees" / "1"
    git(repo, "worktree", "add", "-q", "-b", "orch/1-test", str(wt), "HEAD")
    return wt


def request_for(repo: Path, worktree: Path, idle: float = 60, timeout: float = 120) -> AgentRequest:
    evidence = repo / ".orch" / "runs" / "1" / "attempt-1"
    evidence.mkdir(parents=True, exist_ok=True)
    report = evidence / "report.json"
    prompt = f"Make add() explicit in app.py.\n\nWhen you are done, write a completion report as JSON to `{report}`.\n"
    return AgentRequest(
        prompt=prompt,
        workdir=worktree,
        evidence_dir=evidence,
        report_path=report,
        timeout_seconds=timeout,
        idle_timeout_seconds=idle,
    )


def edit_reply(body: dict[str, Any]) -> str:
    """The scripted model's answer in aider's diff edit format: change app.py, create the report file."""
    return (
        "I will convert the arguments.\n\n"
        "app.py\n```python\n<<<<<<< SEARCH\n    return a + b\n=======\n    " + NEW_LINE + "\n>>>>>>> REPLACE\n```\n\n"
        f"{report_path_in(body)}\n```json\n<<<<<<< SEARCH\n=======\n"
        + json.dumps(REPORT, indent=2)
        + "\n>>>>>>> REPLACE\n```\n"
    )


def agent_for(srv: ScriptedChat, repo: Path, *args: str) -> AiderAgent:
    config = {
        "kind": "aider",
        "command": AIDER,
        "model": "openai/scripted",
        "base_url": srv.base_url,
        "api_key_env": API_KEY_ENV,
        "args": ["--edit-format", "diff", "--read", "app.py", *args],
    }
    agent = make_agent(config, repo)
    assert isinstance(agent, AiderAgent)
    return agent


def validate_report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(data, resources.schema("completion-report"))
    return data


# -- the real CLI -----------------------------------------------------------------------------------


@needs_aider
def test_aider_edits_the_worktree_writes_the_report_and_records_the_servers_tokens(
    repo: Path, worktree: Path, api_key: str, home: Path, needs_jail: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GH_TOKEN", GH_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-users-own-never-sent")
    req = request_for(repo, worktree)
    home_before = sorted(p.relative_to(home) for p in home.rglob("*"))
    with ScriptedChat([edit_reply]) as srv:
        result = agent_for(srv, repo, "--no-stream").run(req)
    log = Path(result.log).read_text()
    assert (result.exit_code, result.error, result.timed_out, result.idle_timed_out) == (0, None, False, False), log

    # the edit block really changed the worktree, and nothing else appeared there (no .aider* files, no commit)
    assert NEW_LINE in (worktree / "app.py").read_text()
    assert git(worktree, "status", "--porcelain", "--ignored").split() == ["M", "app.py"]
    assert git(worktree, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert git(repo, "status", "--porcelain", "--", "app.py") == ""  # the main checkout is untouched
    assert validate_report(req.report_path) == REPORT  # the model created the report with an edit block

    # one model request, with orch's prompt, the policy's model and key, app.py shown through --read
    (asked,) = srv.completions()
    assert asked.body["model"] == "scripted" and asked.headers["authorization"] == f"Bearer {API_KEY}"
    assert "Make add() explicit in app.py." in user_text(asked.body)
    assert "return a + b" in json.dumps(asked.body)
    assert GH_SECRET not in json.dumps(asked.body) + json.dumps(asked.headers)

    # tokens: what the (unstreamed) API reported, from aider's own analytics log
    assert result.tokens == {"input": PROMPT_TOKENS, "output": COMPLETION_TOKENS}
    assert "Tokens: 1.2k sent, 56 received." in log
    assert "refused" not in log  # aider reached nothing but its model (no update check, no model-list download)
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == home_before  # the user's HOME is left alone
    assert (req.evidence_dir / "aider-chat.md").is_file() and (req.evidence_dir / "aider-home" / ".aider").is_dir()


@needs_aider
def test_an_unresponsive_model_trips_the_idle_timeout(
    repo: Path, worktree: Path, api_key: str, needs_jail: None
) -> None:
    req = request_for(repo, worktree, idle=15, timeout=120)
    with ScriptedChat(hang=True) as srv:
        result = agent_for(srv, repo).run(req)
        asked = srv.completions()
    assert result.idle_timed_out and not result.timed_out and result.exit_code is None
    assert len(asked) >= 1  # aider was up and waiting on the model
    assert result.duration_seconds < 90
    assert not req.report_path.exists() and "return a + b" in (worktree / "app.py").read_text()


@needs_aider
def test_an_aider_run_through_orch_run_reaches_review(
    cli: Cli, repo: Path, api_key: str, home: Path, needs_jail: None
) -> None:
    with ScriptedChat([edit_reply]) as srv:
        (repo / ".orch").mkdir()
        (repo / ".orch" / "policy.yaml").write_text(
            "version: 1\nextends: default\ntracker:\n  kind: local\n"
            f"agent:\n  kind: aider\n  command: {AIDER}\n  model: openai/scripted\n  base_url: {srv.base_url}\n"
            f"  api_key_env: {API_KEY_ENV}\n  args: [--edit-format, diff, --read, app.py]\n"
            "  timeout_seconds: 180\n  idle_timeout_seconds: 90\n"
            f"checks:\n  unit:\n    command: {sys.executable} -B -m unittest -q\n    timeout_seconds: 120\n"
        )
        (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n__pycache__/\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "orch policy")
        code, issue = cli.json(
            "issue", "new", "Make add explicit", "--body", "Convert the arguments of add() to int.",
            "--label", "agent:auto", "--repo", repo,
        )  # fmt: skip
        assert code == 0
        code, run = cli.json("run", "--issue", str(issue["number"]), "--repo", repo)
        asked = srv.completions()
    assert code == 0 and run["final_state"] == "review", run
    assert len(asked) == 1 and "Make add explicit" in user_text(asked[0].body)
    (head,) = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/orch/").split()
    assert run["pull_request"]["draft"] is True
    assert NEW_LINE in git(repo, "show", f"refs/heads/{head}:app.py")
    assert git(repo, "diff", "--name-only", "main", f"refs/heads/{head}").split() == ["app.py"]
    store = Store(repo / ".orch" / "state" / "orch.db")
    try:
        agent = store.facts(store.state_of(int(issue["number"]))[1])["agent"]
    finally:
        store.close()
    assert agent["exit_code"] == 0 and agent["kind"] == "aider"
    # streamed replies: aider counts the tokens itself; orch records exactly what its analytics log says
    logged = token_usage(analytics_events((Path(agent["log"]).parent / ANALYTICS_NAME).read_text()))
    assert agent["tokens"] == logged and agent["tokens"]["input"] > 100 and agent["tokens"]["output"] > 10


# -- the adapter's pieces, without the CLI ---------------------------------------------------------

RECORDED = "\n".join(
    [
        json.dumps({"event": "launched", "properties": {}}),
        json.dumps({"event": "message_send", "properties": {"prompt_tokens": 2357, "completion_tokens": 57}}),
        "not json",
        json.dumps({"event": "message_send", "properties": {"prompt_tokens": 2508, "completion_tokens": 2}}),
        json.dumps({"event": "exit", "properties": {"reason": "Completed --message"}}),
    ]
)


def test_tokens_from_the_analytics_log_or_else_the_printed_lines() -> None:
    events = analytics_events(RECORDED)
    assert [e["event"] for e in events] == ["launched", "message_send", "message_send", "exit"]
    assert token_usage(events) == {"input": 4865, "output": 59}
    assert failure_message(events, "") is None
    printed = "Aider v0.86.2\nTokens: 2.4k sent, 57 received.\nTokens: 812 sent, 1.1k received. Cost: $0.01\n"
    assert token_usage([], printed) == {"input": 3212, "output": 1157}
    assert token_usage([], "no counts here") is None


def test_a_run_without_a_model_reply_is_a_failure() -> None:
    events = [{"event": "message_send_exception", "properties": {"exception": "Connection refused"}}]
    assert failure_message(events, "") == "aider got no reply from the model: Connection refused"
    assert failure_message([], "litellm.AuthenticationError: bad key\n") == (
        "aider got no reply from the model: litellm.AuthenticationError: bad key"
    )


def test_argv_pins_orchs_flags_before_the_policys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_MODEL_KEY", "sk-from-policy-var")
    agent = AiderAgent(
        {"model": "openai/m1", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_MODEL_KEY", "args": ["--x"]},
        tmp_path,
    )
    argv = agent.argv("/bin/aider", tmp_path)
    for flag in ("--yes-always", "--no-git", "--no-auto-commits", "--no-check-update", "--no-analytics"):
        assert flag in argv
    assert argv[argv.index("--openai-api-base") + 1] == "http://127.0.0.1:9/v1"
    assert argv[argv.index("--model") + 1] == "openai/m1"
    assert argv[argv.index("--analytics-log") + 1] == str(tmp_path / ANALYTICS_NAME)
    assert argv[-3:] == ["--x", "--message-file", str(tmp_path / "prompt.md")]
    req = AgentRequest("p", tmp_path, tmp_path, tmp_path / "report.json", 10, 10)
    env = agent.jail_env(tmp_path / "aider-home", req)
    assert env["OPENAI_API_KEY"] == "sk-from-policy-var" and env["HOME"] == str(tmp_path / "aider-home")


@pytest.mark.parametrize("config, words", [({"args": "--yes"}, "args"), ({"env": {"GITHUB_TOKEN": "x"}}, "secret")])
def test_bad_policy_values_are_refused(tmp_path: Path, config: dict[str, Any], words: str) -> None:
    with pytest.raises(OrchError) as err:
        AiderAgent(config, tmp_path)
    assert words in str(err.value)


def test_refuses_without_the_binary_or_the_key(repo: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    req = request_for(repo, worktree)
    missing = AiderAgent({"command": "definitely-not-aider-xyz"}, repo).run(req)
    assert missing.exit_code is None and "not found" in (missing.error or "")
    no_key = AiderAgent({"command": sys.executable, "api_key_env": API_KEY_ENV}, repo).run(req)
    assert no_key.exit_code is None and API_KEY_ENV in (no_key.error or "")


@needs_aider
def test_a_model_that_refuses_every_request_fails_the_run_with_aiders_message(
    repo: Path, worktree: Path, api_key: str, needs_jail: None
) -> None:
    req = request_for(repo, worktree)
    with ScriptedChat(fail_status=401) as srv:
        result = agent_for(srv, repo).run(req)
    assert result.error is not None and result.error.startswith("aider got no reply from the model"), result
    assert "invalid api key" in result.error
    assert srv.completions() and not req.report_path.exists()
    assert git(worktree, "status", "--porcelain") == ""


def test_the_default_model_key_is_redacted_like_the_other_kinds() -> None:
    from statemachine import secrets
    from statemachine.adapters import aider

    assert secrets.DEFAULT_MODEL_KEYS["aider"] == aider.DEFAULT_API_KEY_ENV
    assert secrets.model_key_env({"kind": "aider"}) == "OPENAI_API_KEY"
    assert secrets.model_key_env({"kind": "aider", "api_key_env": "MY_KEY"}) == "MY_KEY"
