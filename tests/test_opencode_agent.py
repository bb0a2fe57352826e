"""The `opencode` agent kind, driven end to end: the REAL OpenCode CLI against a scripted model server on 127.0.0.1.

The model is scripted (tests/opencode_chat_server.py, OpenAI Chat Completions) but everything else is real:
opencode starts in orch's jail with the home and opencode.json orch wrote, sends the prompt to the server
through the jail's egress relay, runs the scripted tool calls (write, edit, bash) in a real git worktree, and
prints JSON events that orch keeps as the log.

The binary comes from $ORCH_TEST_OPENCODE (CI: `npm install --prefix .ci/node opencode-ai@1.18.33`); the
tests that need it are skipped only when it is unset.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from agentkit import policy_text
from conftest import git
from opencode_chat_server import Chat, ChatServer, Fail, Hang, Say, Step, Tool, report_path_in

from statemachine import resources, secrets
from statemachine.adapters.agents import make_agent
from statemachine.adapters.events import parse_events
from statemachine.adapters.jail import Jail, Settings, probe
from statemachine.adapters.opencode import DEFAULT_API_KEY_ENV, OpenCodeAgent, failure_message, token_usage
from statemachine.errors import OrchError
from statemachine.ports import AgentRequest

OPENCODE = os.environ.get("ORCH_TEST_OPENCODE") or None
needs_opencode = pytest.mark.skipif(
    OPENCODE is None,
    reason="no OpenCode CLI: `npm install --prefix .ci/node opencode-ai@1.18.33` and set ORCH_TEST_OPENCODE",
)
API_KEY_ENV = "ORCH_TEST_OPENCODE_KEY"
API_KEY = "sk-orch-test-opencode-0123456789"
GH_SECRET = "ghp_orchTestNeverLeaks0123456789abcdefXYZ"
NEW_APP = "def add(a, b):\n    return int(a) + int(b)\n"
REPORT = {
    "status": "completed",
    "summary": "Made add() explicit.",
    "changed_files": ["app.py"],
    "validation": [{"command": "python -m unittest", "result": "passed"}],
}


@pytest.fixture
def needs_jail() -> None:
    if not probe().ok:
        pytest.skip(f"orch's jail cannot run on this machine: {probe().reason}")


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    return API_KEY


@pytest.fixture
def worktree(repo: Path) -> Path:
    """A real git worktree on its own branch, where orch puts one: <repo>/.orch/worktrees/1."""
    wt = repo / ".orch" / "worktrees" / "1"
    git(repo, "worktree", "add", "-q", "-b", "orch/1-test", str(wt), "HEAD")
    return wt


def request_for(repo: Path, worktree: Path, idle: float = 60, attempt: int = 1) -> AgentRequest:
    evidence = repo / ".orch" / "runs" / "1" / f"attempt-{attempt}"
    evidence.mkdir(parents=True, exist_ok=True)
    report = evidence / "report.json"
    prompt = f"Task ORCH-PROMPT-5c1e: make add() explicit in app.py.\n\nWhen you are done, write a completion report as JSON to `{report}`.\n"
    return AgentRequest(
        prompt=prompt,
        workdir=worktree,
        evidence_dir=evidence,
        report_path=report,
        timeout_seconds=120,
        idle_timeout_seconds=idle,
    )


def agent_for(srv: ChatServer, repo: Path, jail: Jail | None = None, **extra: Any) -> OpenCodeAgent:
    config: dict[str, Any] = {
        "kind": "opencode",
        "command": OPENCODE,
        "model": srv.model,
        "base_url": srv.base_url,
        "api_key_env": API_KEY_ENV,
    }
    config.update(extra)
    return OpenCodeAgent(config, repo, jail)


def write_report(report: dict[str, Any] = REPORT) -> Tool:
    """The model's write tool call: the completion report, where the prompt says."""
    return Tool("write", lambda req: {"filePath": report_path_in(req), "content": json.dumps(report, indent=2)})


def edit_script(worktree: Path) -> list[Step]:
    """Edit app.py (edit tool), run the unit tests (bash tool), write the report (write tool), finish."""
    tests = f"{sys.executable} -B -m unittest -q 2>&1; echo tests=$?"
    return [
        Tool(
            "edit",
            {"filePath": str(worktree / "app.py"), "oldString": "return a + b", "newString": "return int(a) + int(b)"},
            input_tokens=1200,
            output_tokens=34,
        ),
        Tool("bash", {"command": tests, "description": "Run the unit tests"}, input_tokens=1300, output_tokens=12),
        write_report(),
        Say("Done: add() converts its arguments.", input_tokens=1500, output_tokens=7),
    ]


def all_text(srv: ChatServer) -> str:
    return "\n".join(json.dumps(r.headers) + "\n" + r.raw for r in srv.requests)


# -- the real CLI -----------------------------------------------------------------------------------


@needs_opencode
def test_opencode_edits_the_worktree_writes_a_valid_report_and_records_tokens(
    repo: Path, worktree: Path, api_key: str, needs_jail: None
) -> None:
    head = git(worktree, "rev-parse", "HEAD").strip()
    req = request_for(repo, worktree)
    with ChatServer(edit_script(worktree)) as srv:
        result = agent_for(srv, repo).run(req)

    log = Path(result.log).read_text()
    assert srv.errors == []
    assert (result.exit_code, result.error, result.timed_out, result.idle_timed_out) == (0, None, False, False), log
    # the real binary really edited the worktree, and nothing else in git
    assert (worktree / "app.py").read_text() == NEW_APP
    assert git(worktree, "status", "--porcelain").splitlines() == [" M app.py"]
    assert git(worktree, "rev-parse", "HEAD").strip() == head
    assert (repo / "app.py").read_text() == "def add(a, b):\n    return a + b\n"
    # the report its write tool wrote validates against orch's schema
    report = json.loads(req.report_path.read_text())
    jsonschema.validate(report, resources.schema("completion-report"))
    assert report == REPORT
    # tokens: the sum of opencode's step_finish events, as the server reported them (no title request was made)
    assert result.tokens is not None
    assert (result.tokens["input"], result.tokens["output"]) == (1200 + 1300 + 100 + 1500, 34 + 12 + 20 + 7)
    assert result.tokens["total"] == result.tokens["input"] + result.tokens["output"]
    assert len(srv.turns) == 4 and len(srv.requests) == 4
    # the prompt reached the model from stdin, with the key, and the tools' results came back
    first = srv.turns[0]
    assert "ORCH-PROMPT-5c1e" in first.prompt and str(req.report_path) in first.prompt
    assert first.headers.get("authorization") == f"Bearer {api_key}"
    assert first.body["model"] == srv.model and first.body["stream"] is True
    assert {"bash", "edit", "write", "read"} <= set(first.tool_names)
    assert any("tests=0" in out for out in srv.turns[2].tool_outputs()), srv.turns[2].tool_outputs()
    # the JSON event stream is the log; opencode's own state stayed in the run's home, with orch's config
    events = parse_events(log)
    assert [e["part"]["tool"] for e in events if e["type"] == "tool_use"] == ["edit", "bash", "write"]
    assert all(e["part"]["state"]["status"] == "completed" for e in events if e["type"] == "tool_use")
    assert events[-1]["type"] == "step_finish" and events[-1]["part"]["reason"] == "stop"
    home = req.evidence_dir / "opencode-home"
    config = json.loads((home / "config" / "opencode" / "opencode.json").read_text())
    assert config["provider"]["orch"]["options"] == {"baseURL": srv.base_url, "apiKey": "{env:" + API_KEY_ENV + "}"}
    assert (home / "data" / "opencode" / "opencode.db").is_file()
    # nothing was fetched: no npm cache, no plugin installed, no egress refused
    assert not (home / ".npm").exists() and not (home / "cache" / "opencode" / "packages").exists()
    assert not (home / "config" / "opencode" / "node_modules" / "@opencode-ai").exists()
    assert "egress proxy refused" not in log
    assert API_KEY not in (home / "config" / "opencode" / "opencode.json").read_text()


@needs_opencode
def test_an_opencode_run_through_orch_run_reaches_review(
    cli: Any, repo: Path, api_key: str, needs_jail: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`orch run` with `agent.kind: opencode` in the policy: the real CLI writes the file, orch checks, commits and
    opens a draft pull request; the run's tokens are in its facts."""
    from statemachine.adapters.local import LocalTracker
    from statemachine.runtime import open_runtime

    new_app = "def add(a, b):\n    return int(a) + int(b)\n\n\ndef sub(a, b):\n    return int(a) - int(b)\n"
    script: list[Step] = [
        Tool("write", {"filePath": "app.py", "content": new_app}, input_tokens=900, output_tokens=80),
        write_report({**REPORT, "summary": "Added sub()."}),
        Say("Added sub().", input_tokens=1000, output_tokens=5),
    ]
    monkeypatch.chdir(repo)
    with ChatServer(script) as srv:
        agent = {
            "kind": "opencode",
            "command": OPENCODE,
            "model": srv.model,
            "base_url": srv.base_url,
            "api_key_env": API_KEY_ENV,
            "timeout_seconds": 180,
            "idle_timeout_seconds": 90,
        }
        checks = {"unit": {"command": f"{sys.executable} -B -m unittest -q", "timeout_seconds": 120}}
        (repo / ".orch").mkdir()
        (repo / ".orch" / "policy.yaml").write_text(policy_text(None, agent_cfg=agent, checks=checks))
        (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n__pycache__/\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "orch policy")
        assert cli("lint")[0] == 0
        code, out, err = cli("issue", "new", "Add sub", "--label", "agent:auto")
        assert code == 0, err
        code, out, err = cli("run", "--issue", "1", "--json")
    assert srv.errors == []
    assert code == 0, (out, err)
    assert json.loads(out)["final_state"] == "review", out

    rt = open_runtime(repo, None)
    try:
        assert isinstance(rt.tracker, LocalTracker)
        state, run_id = rt.store.state_of(1)
        facts = rt.store.facts(run_id)
        pulls = rt.tracker.pulls(1)
        diff = rt.git.diff(pulls[0].base_sha, pulls[0].head_sha)
    finally:
        rt.close()
    assert state == "review"
    assert "+def sub(a, b):" in diff and "+    return int(a) - int(b)" in diff  # what the model's write tool wrote
    assert pulls[0].draft is True
    ran = facts["agent"]
    assert ran["exit_code"] == 0 and ran["error"] is None
    assert (ran["tokens"]["input"], ran["tokens"]["output"]) == (900 + 100 + 1000, 80 + 20 + 5), ran["tokens"]
    assert Path(ran["log"]).name == "agent.log" and '"type":"step_finish"' in Path(ran["log"]).read_text()
    assert "Add sub" in srv.turns[0].prompt


@needs_opencode
def test_the_jail_holds_the_model_writes_only_its_workspace_and_no_token_reaches_it(
    repo: Path, worktree: Path, api_key: str, needs_jail: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GH_TOKEN", "GITHUB_TOKEN", "ORCH_GITHUB_TOKEN"):
        monkeypatch.setenv(name, GH_SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-orch-test-other-service")
    monkeypatch.setenv("OPENCODE_CONFIG_CONTENT", '{"model": "anthropic/claude-x"}')  # an outer opencode's setting
    head = git(repo, "rev-parse", "HEAD").strip()
    outside = repo / "escaped.txt"  # the main checkout: outside the worktree and the evidence folder
    home_file = Path.home() / f"orch-opencode-escape-{os.getpid()}.txt"

    def hidden(path: Path) -> str:
        """A path opencode's own permission check cannot see in the command: only the jail stops the write."""
        return f'"$(echo {path.as_posix().encode().hex()} | xxd -r -p)"'

    def probe_command(req: Chat) -> dict[str, Any]:
        env_dump = Path(report_path_in(req)).parent / "tool-env.txt"
        command = "; ".join(
            [
                "echo inside > inside.txt; echo worktree=$?",
                f"echo escape > {hidden(outside)}; echo checkout=$?",
                f"echo escape > {hidden(home_file)}; echo home=$?",
                "git -c user.name=a -c user.email=a@b commit -qam sneaky; echo commit=$?",
                f"env > {hidden(env_dump)}; echo env=$?",
            ]
        )
        return {"command": command, "description": "probe the jail"}

    req = request_for(repo, worktree)
    with ChatServer([Tool("bash", probe_command), write_report(), Say("done")]) as srv:
        result = agent_for(srv, repo).run(req)

    assert result.exit_code == 0 and result.error is None, Path(result.log).read_text()
    out = srv.turns[1].tool_outputs()[0]
    assert "worktree=0" in out and "env=0" in out, out  # the command really ran, in the worktree
    assert "checkout=0" not in out and "home=0" not in out and "commit=0" not in out, out
    assert (worktree / "inside.txt").read_text() == "inside\n"
    assert not outside.exists() and not home_file.exists()
    assert git(repo, "rev-parse", "HEAD").strip() == head and git(worktree, "rev-parse", "HEAD").strip() == head
    assert json.loads(req.report_path.read_text()) == REPORT
    # the tools' environment: the model key (the provider needs it), never a GitHub token or another service's key
    tool_env = (req.evidence_dir / "tool-env.txt").read_text()
    assert (
        GH_SECRET not in tool_env and "sk-ant-orch-test" not in tool_env and "OPENCODE_CONFIG_CONTENT" not in tool_env
    )
    assert f"XDG_CONFIG_HOME={req.evidence_dir / 'opencode-home' / 'config'}" in tool_env
    assert GH_SECRET not in all_text(srv)
    assert {r.body["model"] for r in srv.turns} == {srv.model}


@needs_opencode
def test_the_users_and_the_repositorys_opencode_settings_have_no_effect(
    repo: Path, worktree: Path, api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without the jail (`sandbox: none`) opencode could see the real home: poison it, and the repository
    home = tmp_path / "home"
    poison = '{"instructions": ["POISON-INSTRUCTIONS"], "model": "orch/not-the-policy-model", "provider": {}}'
    for folder in (home / ".config" / "opencode", home / ".opencode", worktree / ".opencode"):
        folder.mkdir(parents=True)
        (folder / "opencode.json").write_text(poison)
    (home / ".config" / "opencode" / "AGENTS.md").write_text("POISON-GLOBAL-AGENTS\n")
    (worktree / "opencode.json").write_text(poison)
    (worktree / "AGENTS.md").write_text("POISON-PROJECT-AGENTS\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    unjailed = Jail(Settings(mode="none"), repo)
    req = request_for(repo, worktree)
    with ChatServer([write_report(), Say("done")]) as srv:
        result = agent_for(srv, repo, unjailed).run(req)

    assert result.exit_code == 0 and result.error is None, Path(result.log).read_text()
    assert json.loads(req.report_path.read_text()) == REPORT
    sent = all_text(srv)
    assert "POISON" not in sent and "not-the-policy-model" not in sent
    assert {r.body["model"] for r in srv.turns} == {srv.model}
    assert not (home / ".local").exists() and not (home / ".npm").exists()  # nothing written to the real home


@needs_opencode
def test_a_model_error_fails_the_run_with_its_message(
    repo: Path, worktree: Path, api_key: str, needs_jail: None
) -> None:
    with ChatServer([Fail(400, "scripted refusal 42")]) as srv:
        result = agent_for(srv, repo).run(request_for(repo, worktree))
    assert result.exit_code not in (0, None) and not result.timed_out
    assert result.error is not None and "scripted refusal 42" in result.error, Path(result.log).read_text()


@needs_opencode
def test_an_unresponsive_model_trips_the_idle_timeout(
    repo: Path, worktree: Path, api_key: str, needs_jail: None
) -> None:
    with ChatServer([Hang()]) as srv:
        result = agent_for(srv, repo).run(request_for(repo, worktree, idle=8))
    assert result.idle_timed_out and not result.timed_out, Path(result.log).read_text()
    assert result.tokens is None
    assert len(srv.turns) >= 1  # it was waiting on the model


# -- without opencode: the adapter's own logic ------------------------------------------------------

RECORDED = """timestamp=2026-11-29T21:40:00Z level=INFO message=loop step=0
{"type":"step_start","sessionID":"s","part":{"type":"step-start"}}
{"type":"tool_use","sessionID":"s","part":{"type":"tool","tool":"write","state":{"status":"completed"}}}
{"type":"step_finish","sessionID":"s","part":{"type":"step-finish","reason":"tool-calls","tokens":{"total":330,"input":250,"output":30,"reasoning":5,"cache":{"write":5,"read":40}},"cost":0.01}}
{"type":"step_finish","sessionID":"s","part":{"type":"step-finish","reason":"stop","tokens":{"total":12,"input":10,"output":2,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0}}
{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"model overloaded","statusCode":529}}}
"""


def test_tokens_and_failures_from_a_recorded_stream() -> None:
    events = parse_events(RECORDED)
    assert [e["type"] for e in events] == ["step_start", "tool_use", "step_finish", "step_finish", "error"]
    assert token_usage(events) == {
        "total": 342,
        "input": 260,
        "output": 32,
        "reasoning": 5,
        "cache_write": 5,
        "cache_read": 40,
    }
    assert token_usage(events[:2]) is None
    assert failure_message(events) == "opencode: model overloaded"
    assert failure_message([{"type": "error", "error": {"name": "ProviderAuthError"}}]) == "opencode: ProviderAuthError"
    assert failure_message(events[:4]) is None


def test_the_config_names_one_provider_and_keeps_the_key_out(tmp_path: Path) -> None:
    agent = OpenCodeAgent(
        {"kind": "opencode", "model": "m-1", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "K"}, tmp_path
    )
    config = agent.opencode_config(tmp_path / "evidence")
    assert config["model"] == config["small_model"] == "orch/m-1"
    assert config["enabled_providers"] == ["orch"]
    assert config["provider"]["orch"]["options"] == {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "{env:K}"}
    assert config["permission"]["external_directory"] == {"*": "deny", f"{tmp_path / 'evidence'}/*": "allow"}
    assert config["snapshot"] is False and config["autoupdate"] is False and config["share"] == "disabled"
    no_key = OpenCodeAgent({"kind": "opencode", "model": "m-1", "api_key_env": None}, tmp_path)
    assert "apiKey" not in no_key.opencode_config(tmp_path)["provider"]["orch"]["options"]
    assert no_key.base_url == "https://api.openai.com/v1"
    argv = agent.argv("/bin/opencode")
    assert argv[:4] == ["/bin/opencode", "run", "--format", "json"] and "--title" in argv
    assert isinstance(make_agent({"kind": "opencode", "model": "m"}, tmp_path), OpenCodeAgent)
    # the key the adapter reads by default is the one orch treats as a secret (redacted, never published)
    assert secrets.model_key_env({"kind": "opencode"}) == DEFAULT_API_KEY_ENV == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({}, "agent.model is required"),
        ({"model": "m", "args": "--x"}, "agent.args must be a list"),
        ({"model": "m", "env": {"GH_TOKEN": "x"}}, "secret-looking"),
    ],
)
def test_bad_policy_values_are_refused(tmp_path: Path, config: dict[str, Any], words: str) -> None:
    with pytest.raises(OrchError, match=words):
        OpenCodeAgent({"kind": "opencode", **config}, tmp_path)


def test_a_missing_binary_or_key_is_reported_without_running(
    repo: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    req = request_for(repo, worktree)
    missing = OpenCodeAgent({"kind": "opencode", "model": "m", "command": str(repo / "no-opencode")}, repo).run(req)
    assert missing.exit_code is None and missing.error is not None and "not found" in missing.error
    no_key = OpenCodeAgent({"kind": "opencode", "model": "m", "command": sys.executable}, repo).run(req)
    assert no_key.error is not None and "OPENAI_API_KEY is not set" in no_key.error
    assert "OPENAI_API_KEY" in Path(no_key.log).read_text()
