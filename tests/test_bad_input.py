"""Bad input of every kind: each gets a clear message and its documented exit code (never 70), no traceback,
and nothing half-written. Agents that misbehave end in `blocked` with the failing gate named by `orch explain`
and the evidence kept."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from agentkit import (
    GOOD_AGENT,
    STATE_DB,
    Agent,
    blocked_path_body,
    comments_of_kind,
    db_dump,
    git_out,
    make_agent,
    processes_with,
    tracker,
    write_policy,
)
from conftest import git
from ruamel.yaml import YAML

from statemachine import resources

POLICY = Path(".orch") / "policy.yaml"


def call(cli: Any, *args: Any) -> tuple[int, str, str]:
    code, out, err = cli(*map(str, args))
    assert code != 70 and "Traceback" not in err and "internal error" not in err, err
    return code, out, err


def state_of(repo: Path) -> tuple[list[str], set[str]]:
    """Everything orch may write: the database rows and the files under .orch/ except the policy and prompts."""
    files = (
        {
            str(p.relative_to(repo))
            for p in (repo / ".orch").rglob("*")
            if not str(p.relative_to(repo)).startswith((".orch/policy.yaml", ".orch/prompts"))
        }
        if (repo / ".orch").exists()
        else set()
    )
    files = {f for f in files if not f.startswith(".orch/state")}
    return (db_dump(repo) if (repo / STATE_DB).exists() else []), files


# policy problems ---------------------------------------------------------------------------------

HEAD = "version: 1\nextends: default\ntracker:\n  kind: local\n"


def _default_lifecycle() -> list[dict[str, Any]]:
    data = YAML(typ="safe").load(resources.bundled_policy("default").read_text())
    return list(data["lifecycle"]["transitions"])


def _with_lifecycle(transitions: list[dict[str, Any]]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump({"lifecycle": {"transitions": transitions}}, buf)
    return HEAD + buf.getvalue()


def _claim(transitions: list[dict[str, Any]]) -> dict[str, Any]:
    return next(t for t in transitions if t["trigger"] == "claim")


def _replace_in(items: list[Any], old: Any, new: Any) -> None:
    items[items.index(old)] = new


def unknown_guard() -> str:
    ts = _default_lifecycle()
    _replace_in(_claim(ts)["guards"], "issue_open", "issue_opn")
    return _with_lifecycle(ts)


def unknown_action() -> str:
    ts = _default_lifecycle()
    _replace_in(_claim(ts)["actions"], "start_run", "strat_run")
    return _with_lifecycle(ts)


def bad_params() -> str:
    ts = _default_lifecycle()
    _claim(ts)["guards"].append({"lacks_labels": {"lables": ["manual"]}})
    _claim(ts)["actions"].append({"add_labels": {"labels": ["runing"]}})
    return _with_lifecycle(ts)


def unreachable() -> str:
    return _with_lifecycle([t for t in _default_lifecycle() if t["dest"] != "proving"])


def no_way_out() -> str:
    return _with_lifecycle([t for t in _default_lifecycle() if t["source"] != "rework"])


def duplicate_transition() -> str:
    ts = _default_lifecycle()
    i = ts.index(_claim(ts))
    ts.insert(i + 1, json.loads(json.dumps(ts[i])))
    return _with_lifecycle(ts)


def resting_not_human() -> str:
    ts = _default_lifecycle()
    requeue = next(t for t in ts if t["trigger"] == "requeue")
    requeue["human"] = False
    return _with_lifecycle(ts)


# (id, policy text, [(fragment of a rendered problem, text on the problem's line or None)])
POLICY_CASES: list[tuple[str, Any, list[tuple[str, str | None]]]] = [
    ("malformed-yaml", HEAD + "agent:\n  args: [one, two\nchecks: {}\n", [("YAML syntax error", None)]),
    ("tab-indent", HEAD + "agent:\n\tcommand: x\n", [("YAML syntax error", "\tcommand")]),
    (
        "duplicate-key",
        HEAD + "limits:\n  rework_iterations: 1\nlimits:\n  rework_iterations: 2\n",
        [('duplicate key "limits"', None)],
    ),
    ("not-a-mapping", "- version: 1\n- extends: default\n", [("the policy must be a YAML mapping", None)]),
    ("not-utf8", b'version: 1\nextends: default\nrules: "caf\xe9"\n', [("the file is not UTF-8 text", None)]),
    (
        "recursive-alias",
        "&root\nversion: 1\nextends: default\nself: *root\n",
        [("cannot read YAML: an alias refers to", None)],
    ),
    (
        "wrong-type-string",
        HEAD + "limits:\n  rework_iterations: two\n",
        [("limits.rework_iterations: 'two' is a string, expected an integer", "rework_iterations: two")],
    ),
    (
        "wrong-type-list",
        HEAD + "checks: [lint, test]\n",
        [("checks: ['lint', 'test'] is a list, expected a mapping", "checks:")],
    ),
    ("wrong-version", "version: 2\nextends: default\n", [("version: 2 must be 1", "version: 2")]),
    (
        "out-of-range",
        HEAD + "agent:\n  timeout_seconds: 0\n",
        [("agent.timeout_seconds: 0 is less than or equal to the minimum of 0", "timeout_seconds: 0")],
    ),
    (
        "unknown-key",
        HEAD + "agent:\n  comand: codex\nbogus: 1\n",
        [
            ("agent.comand: unknown key 'comand' (did you mean 'command'?)", "comand: codex"),
            ("bogus: unknown key 'bogus'", "bogus: 1"),
        ],
    ),
    (
        "unknown-extends",
        "version: 1\nextends: defualt\n",
        [("unknown bundled policy 'defualt' (did you mean 'default'?)", "extends: defualt")],
    ),
    (
        "bad-enum",
        HEAD.replace("kind: local", "kind: lokal"),
        [("'lokal' is not one of: local, github (did you mean 'local'?)", "kind: lokal")],
    ),
    (
        "unknown-template-field",
        HEAD + 'branch_template: "orch/{numbr}-{slug}"\n',
        [("branch_template: unknown field {numbr} (did you mean 'number'?)", "branch_template:")],
    ),
    (
        "secret-in-agent-env",
        HEAD + "agent:\n  env:\n    GITHUB_TOKEN: abc\n",
        [("'GITHUB_TOKEN' looks like a secret", "GITHUB_TOKEN: abc")],
    ),
    (
        "duplicate-label-names",
        HEAD + 'labels:\n  review:\n    name: "agent:auto"\n',
        [("labels.review.name: label name 'agent:auto' is already used by role 'auto'", 'name: "agent:auto"')],
    ),
    ("unknown-guard", unknown_guard, [("unknown guard 'issue_opn' (did you mean 'issue_open'?)", "issue_opn")]),
    ("unknown-action", unknown_action, [("unknown action 'strat_run' (did you mean 'start_run'?)", "strat_run")]),
    (
        "bad-params",
        bad_params,
        [
            ("lacks_labels has no parameter 'lables' (did you mean 'labels'?)", "lables:"),
            ("lacks_labels: 'labels' is a required property", None),
            (
                "add_labels: 'runing' is not one of: auto, plan_auto, child, running, blocked, manual, review (did you mean 'running'?)",
                "runing",
            ),
        ],
    ),
    (
        "unreachable-state",
        unreachable,
        [("state 'proving' cannot be reached from 'queued' (add a transition with dest: proving)", None)],
    ),
    ("no-way-out", no_way_out, [("state 'rework' has no way out", None)]),
    ("duplicate-transition", duplicate_transition, [("transition duplicates #", None)]),
    (
        "resting-state-not-human",
        resting_not_human,
        [("a transition out of 'blocked' must be declared `human: true`", None)],
    ),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in POLICY_CASES])
def test_policy_problems_are_located_and_change_nothing(
    cli: Any, repo: Path, tmp_path: Path, text: Any, expected: Any
) -> None:
    write_policy(repo, make_agent(tmp_path, GOOD_AGENT))
    assert call(cli, "issue", "new", "--repo", repo, "Task", "--label", "agent:auto")[0] == 0
    before = state_of(repo)
    content = text() if callable(text) else text
    path = repo / POLICY
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()

    code, out, err = call(cli, "lint", "--repo", repo)
    assert code == 3, out
    rendered = out.splitlines()
    for fragment, on_line in expected:
        hits = [r for r in rendered if fragment in r]
        assert hits, f"{fragment!r} not in:\n{out}"
        m = re.match(r"^\.orch/policy\.yaml:(\d+):(\d+): ", hits[0])
        assert m, hits[0]
        if on_line is not None:
            assert on_line in lines[int(m.group(1)) - 1], (hits[0], lines[int(m.group(1)) - 1])
    assert "problem(s) found" in rendered[-1]

    code, data = cli.json("lint", "--repo", str(repo))
    assert code == 3 and data["ok"] is False and data["kind"] == "lint"
    problems = [p for f in data["files"] for p in f["problems"]]
    assert problems and all({"file", "line", "column", "key_path", "message", "hint"} <= set(p) for p in problems)

    for command in (("run", "--issue", "1"), ("step", "--issue", "1"), ("explain", "--issue", "1"), ("status",)):
        code, out, err = call(cli, command[0], "--repo", repo, *command[1:])
        assert code == 3 and out == "", (command, out)
        assert all(f in err for f, _ in expected), err
        assert "fix them, then run `orch lint` again" in err
    code, data = cli.json("run", "--repo", str(repo), "--issue", "1")
    assert code == 3 and data["kind"] == "error" and data["exit_code"] == 3 and data["problems"]
    assert state_of(repo) == before


def test_policy_null_removes_a_key_even_when_the_base_lacks_it(cli: Any, repo: Path, tmp_path: Path) -> None:
    # `null deletes`: a key the default does not set must not end up as null (which the schema would refuse)
    (repo / ".orch").mkdir()
    (repo / POLICY).write_text(HEAD + "gates:\n  max_changed_files: null\n  require_changes: null\n")
    code, out, err = call(cli, "lint", "--repo", repo)
    assert code == 0, out + err


def test_problems_in_every_file_are_reported_at_once(cli: Any, repo: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("version: 1\nextends: default\nbogus: 1\n")
    two.write_text("version: 1\nextends: default\nlimits:\n  rework_iterations: 99\n")
    code, out, err = call(cli, "lint", "--repo", repo, one, two)
    assert code == 3
    assert f"{one}:3:1: bogus: unknown key 'bogus'" in out
    assert f"{two}:4:3: limits.rework_iterations: 99 is greater than the maximum of 20" in out


# things that do not exist ------------------------------------------------------------------------


def test_a_folder_that_is_not_a_git_repository(cli: Any, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for command in (("run", "--issue", "1"), ("setup",), ("status",), ("issue", "list"), ("explain", "--issue", "1")):
        head, rest = (command[:2], command[2:]) if command[0] == "issue" else (command[:1], command[1:])
        code, out, err = call(cli, *head, "--repo", plain, *rest)
        assert code == 1, (command, err)
        assert (
            f"{plain} is not inside a git repository" in err
            and "hint: pass --repo PATH, or run `git init` first" in err
        )
    code, out, err = call(cli, "run", "--repo", tmp_path / "missing", "--issue", "1")
    assert code == 1 and "does not exist" in err
    assert list(plain.iterdir()) == []  # nothing written


def test_a_missing_policy_file(cli: Any, repo: Path, tmp_path: Path) -> None:
    code, out, err = call(cli, "run", "--repo", repo, "--issue", "1")
    assert code == 3 and ".orch/policy.yaml:1:1: (top level): file not found (run `orch setup`" in err
    code, out, err = call(cli, "run", "--repo", repo, "--issue", "1", "--policy", tmp_path / "nope.yaml")
    assert code == 3 and f"{tmp_path / 'nope.yaml'}:1:1: (top level): file not found" in err
    assert not (repo / ".orch").exists()  # not even the state folder


def test_an_issue_that_does_not_exist(cli: Any, repo: Path, tmp_path: Path) -> None:
    write_policy(repo, make_agent(tmp_path, GOOD_AGENT))
    assert call(cli, "issue", "new", "--repo", repo, "Real one", "--label", "agent:auto")[0] == 0
    before = state_of(repo)
    for command in (
        ("run", "--issue", "7"),
        ("step", "--issue", "7"),
        ("explain", "--issue", "7"),
        ("show", "--issue", "7"),
        ("prompt", "--issue", "7"),
        ("issue", "show", "7"),
        ("issue", "label", "7", "+x"),
        ("issue", "comment", "7", "hi"),
        ("issue", "close", "7"),
    ):
        head, rest = (command[:2], command[2:]) if command[0] == "issue" else (command[:1], command[1:])
        code, out, err = call(cli, *head, "--repo", repo, *rest)
        assert code == 1, (command, err)
        assert (
            "issue #7 does not exist in the local tracker" in err and "hint: `orch issue list` shows the issues" in err
        )
    code, data = cli.json("run", "--repo", str(repo), "--issue", "7")
    assert data == {
        "version": 1,
        "kind": "error",
        "error": "issue #7 does not exist in the local tracker",
        "hint": "`orch issue list` shows the issues",
        "exit_code": 1,
    }
    assert state_of(repo) == before


def test_usage_errors_exit_2(cli: Any, repo: Path) -> None:
    for argv in (
        ["step"],
        ["run", "--issue", "x"],
        ["graph", "--format", "png"],
        ["issue", "label", "1"],
        ["frobnicate"],
    ):
        with pytest.raises(SystemExit) as exc:
            cli(*argv)
        assert exc.value.code == 2, argv


# agents that misbehave ---------------------------------------------------------------------------


def run_to_rest(cli: Any, repo: Path, agent: Agent, **policy: Any) -> tuple[int, dict[str, Any]]:
    write_policy(repo, agent, **policy)
    assert (
        call(cli, "issue", "new", "--repo", repo, "Add sub", "--body", "Add sub(a, b).", "--label", "agent:auto")[0]
        == 0
    )
    code, data = cli.json("run", "--repo", str(repo), "--issue", "1")
    return code, data


def assert_blocked(cli: Any, repo: Path, code: int, data: dict[str, Any], gate: str, *, report: bool) -> Path:
    """The issue rests in blocked, nothing is published, explain names the gate, the evidence is kept."""
    assert code == 5, data
    assert data["final_state"] == "blocked"
    with tracker(repo) as t:
        assert set(t.get_issue(1).labels) == {"agent:auto", "agent:blocked"}
        assert t.pulls() == []
    (blocked,) = comments_of_kind(repo, 1, "report-blocked")
    assert len(comments_of_kind(repo, 1, "claim")) == 1 and len(comments_of_kind(repo, 1, "report-")) == 1
    gate_name, reason = gate.split(": FAIL ", 1)
    assert gate_name.split("(")[0].replace("not ", "") in blocked and reason in blocked
    base = git_out(repo, "rev-parse", "main")
    branches = git_out(repo, "for-each-ref", "--format=%(objectname)", "refs/heads/orch/").split()
    assert all(sha == base for sha in branches)  # no runner commit was published

    code, out, err = call(cli, "explain", "--repo", repo, "--issue", 1)
    assert code == 0 and gate in out, out
    code, ex = cli.json("explain", "--repo", str(repo), "--issue", "1")
    assert ex["state"] == "blocked" and ex["arrived"]["dest"] == "blocked"
    failing = [
        f"{g['guard']}: FAIL {g['verdict']['reason']}"
        for t in ex["arrived"]["transitions"]
        for g in t["guards"]
        if not g["verdict"]["ok"]
    ]
    assert any(f.startswith(gate) for f in failing), failing

    evidence: Path = repo / ".orch" / "runs" / ex["run_id"]
    assert (evidence / "attempt-1" / "agent.log").is_file()
    assert (evidence / "attempt-1" / "report.json").is_file() == report
    assert (evidence / "summary.md").read_text() == blocked
    return evidence


CRASH = """
write("app.py", "broken = True\\n")
print("agent: giving up", flush=True)
sys.exit(3)
"""
NO_REPORT = """
write("app.py", "x = 1\\n")
print("agent: done, no report", flush=True)
"""
BAD_JSON = """
write("app.py", "x = 1\\n")
REPORT.write_text("{not json")
"""
BAD_SCHEMA = """
write("app.py", "x = 1\\n")
report(["app.py"], status="done")
"""
WRONG_FILES = """
write("app.py", "x = 1\\n")
report(["other.py"])
"""
NOTHING = """
print("agent: nothing to do", flush=True)
report([])
"""
NEEDS_INFO = """
write("app.py", "x = 1\\n")
report(["app.py"], status="needs-info", questions=["Which sign convention?"])
"""


@pytest.mark.parametrize(
    "body, gate, report",
    [
        pytest.param(CRASH, "agent_succeeded: FAIL the agent exited with code 3", False, id="crash"),
        pytest.param(
            NO_REPORT, "report_valid: FAIL no report: the agent did not write report.json", False, id="no-report"
        ),
        pytest.param(BAD_JSON, "report_valid: FAIL the report is not valid JSON", True, id="malformed-report"),
        pytest.param(
            BAD_SCHEMA,
            "report_valid: FAIL the report does not match schemas/completion-report.schema.json at status",
            True,
            id="report-schema",
        ),
        pytest.param(
            WRONG_FILES,
            "report_matches_changes: FAIL the report's changed_files differ from the observed change set",
            True,
            id="report-lies",
        ),
        pytest.param(NOTHING, "has_changes: FAIL the agent changed nothing", True, id="no-change"),
        pytest.param(NEEDS_INFO, "report_completed: FAIL the agent reports status 'needs-info'", True, id="needs-info"),
        pytest.param(
            blocked_path_body(".github/workflows/x.yml"),
            "no_blocked_paths: FAIL .github/workflows/x.yml matches .github/workflows/**",
            True,
            id="workflow",
        ),
        pytest.param(blocked_path_body(".env"), "no_blocked_paths: FAIL .env matches .env*", True, id="dotenv"),
        pytest.param(
            blocked_path_body(".env/production"),
            "no_blocked_paths: FAIL .env/production matches .env*",
            True,
            id="dotenv-folder",
        ),
        pytest.param(
            blocked_path_body("deploy/keys/server.pem"),
            "no_blocked_paths: FAIL deploy/keys/server.pem matches *.pem",
            True,
            id="pem",
        ),
    ],
)
def test_misbehaving_agent_is_blocked(cli: Any, repo: Path, tmp_path: Path, body: str, gate: str, report: bool) -> None:
    agent = make_agent(tmp_path, body)
    code, data = run_to_rest(cli, repo, agent)
    evidence = assert_blocked(cli, repo, code, data, gate, report=report)
    assert agent.runs == 1
    if body is WRONG_FILES:
        code, out, _ = call(cli, "explain", "--repo", repo, "--issue", 1)
        assert "changed but not reported: app.py" in out and "reported but not changed: other.py" in out
    if body is CRASH:
        assert "agent: giving up" in (evidence / "attempt-1" / "agent.log").read_text()


HANG_LOUD = """
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(STATE)])
(STATE / "child.pid").write_text(str(child.pid))
(STATE / "agent.pid").write_text(str(os.getpid()))
write("app.py", "x = 1\\n")
while True:
    print("agent: still working", flush=True)
    time.sleep(0.05)
"""
HANG_QUIET = """
(STATE / "agent.pid").write_text(str(os.getpid()))
write("app.py", "x = 1\\n")
print("agent: thinking", flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize(
    "body, agent_cfg, gate",
    [
        pytest.param(
            HANG_LOUD,
            {"timeout_seconds": 4, "idle_timeout_seconds": 60},
            "agent_succeeded: FAIL the agent was stopped after 4s (total timeout)",
            id="total-timeout",
        ),
        pytest.param(
            HANG_QUIET,
            {"timeout_seconds": 120, "idle_timeout_seconds": 2.5},
            "agent_succeeded: FAIL the agent was stopped after 2.5s without output (idle timeout)",
            id="idle-timeout",
        ),
    ],
)
def test_hanging_agent_is_stopped(
    cli: Any, repo: Path, tmp_path: Path, body: str, agent_cfg: dict[str, Any], gate: str
) -> None:
    agent = make_agent(tmp_path, body)
    code, data = run_to_rest(cli, repo, agent, agent_cfg=agent_cfg)
    evidence = assert_blocked(cli, repo, code, data, gate, report=False)
    assert (agent.state / "agent.pid").exists()  # it ran (its PIDs are its jail's own: it is found by what it runs)
    assert processes_with(str(agent.script)) == [] and processes_with(str(agent.state)) == []
    log = (evidence / "attempt-1" / "agent.log").read_text()
    assert ("agent: still working" if body is HANG_LOUD else "agent: thinking") in log
    with tracker(repo) as t:
        facts = t.store.facts(data["steps"][-1]["run_id"])
    assert facts["agent"]["exit_code"] is None
    assert facts["agent"]["timed_out" if body is HANG_LOUD else "idle_timed_out"] is True


def test_background_process_of_the_agent_is_killed(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        """
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(STATE)], start_new_session=True)
(STATE / "child.pid").write_text(str(child.pid))
"""
        + GOOD_AGENT,
    )
    code, data = run_to_rest(cli, repo, agent)
    assert code == 0 and data["final_state"] == "review", data
    assert (agent.state / "child.pid").exists()
    assert processes_with(str(agent.state)) == []


def test_failing_check_leads_to_rework_then_blocked_with_findings(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        """
write("app.py", "def add(a, b):\\n    return a - b\\n")
print("agent: rewrote add", flush=True)
report(["app.py"])
""",
    )
    check = {"tests": {"command": f"{sys.executable} -m unittest -q", "timeout_seconds": 120}}
    code, data = run_to_rest(cli, repo, agent, checks=check, limits={"rework_iterations": 1})
    assert [s["dest"] for s in data["steps"]] == [
        "claimed",
        "implementing",
        "gating",
        "rework",
        "implementing",
        "gating",
        "blocked",
    ]
    evidence = assert_blocked(
        cli, repo, code, data, "within_rework_limit: FAIL rework budget spent: 1 of 1 iteration(s) used", report=True
    )
    code, out, _ = call(cli, "explain", "--repo", repo, "--issue", 1)
    assert "checks_passed: FAIL 1 of 1 check(s) failed" in out
    assert agent.runs == 2
    assert agent.prompt(1).startswith("# Task: issue #1") and "AssertionError" not in agent.prompt(1)
    rework_prompt = (evidence / "attempt-2" / "prompt.md").read_text()
    assert rework_prompt == agent.prompt(2)
    assert rework_prompt.startswith("# Rework: issue #1")
    findings = rework_prompt.split("## Findings from the previous attempt", 1)[1].split("## How to finish", 1)[0]
    assert "check 'tests'" in findings and "exited 1" in findings and "AssertionError: -1 != 3" in findings
    assert (evidence / "attempt-2" / "agent.log").read_text() == "agent: rewrote add\n"
    assert "FAILED: `tests`" in comments_of_kind(repo, 1, "report-blocked")[0]


def test_rework_that_fixes_the_check_reaches_review(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        """
fixed = "check 'tests'" in PROMPT
write("app.py", "def add(a, b):\\n    return " + ("b + a" if fixed else "a - b") + "\\n")
report(["app.py"])
""",
    )
    check = {"tests": {"command": f"{sys.executable} -m unittest -q", "timeout_seconds": 120}}
    code, data = run_to_rest(cli, repo, agent, checks=check)
    assert code == 0 and data["final_state"] == "review", data
    assert agent.runs == 2
    with tracker(repo) as t:
        (pr,) = t.pulls()
    assert git_out(repo, "show", f"{pr.head_sha}:app.py") == "def add(a, b):\n    return b + a"


def test_blocked_issue_can_be_requeued_by_the_maintainer(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        """
if (STATE / "fixed").exists():
"""
        + "\n".join("    " + line for line in GOOD_AGENT.strip().splitlines())
        + """
else:
    print("agent: failing on purpose", flush=True)
    sys.exit(2)
""",
    )
    code, data = run_to_rest(cli, repo, agent)
    assert code == 5
    (agent.state / "fixed").write_text("")
    code, out, _ = call(cli, "run", "--repo", repo, "--issue", 1)
    assert code == 5 and "no transition can fire from blocked" in out  # the label still says blocked
    assert call(cli, "issue", "label", "--repo", repo, "1", "-agent:blocked")[0] == 0
    code, data = cli.json("run", "--repo", str(repo), "--issue", "1")
    assert code == 0 and data["final_state"] == "review", data
    assert data["steps"][0]["source"] == "blocked" and data["steps"][0]["dest"] == "queued"
    assert agent.runs == 2 and len(comments_of_kind(repo, 1, "claim")) == 2


def test_branch_checked_out_by_the_user_is_a_clear_error(cli: Any, repo: Path, tmp_path: Path) -> None:
    write_policy(repo, make_agent(tmp_path, GOOD_AGENT))
    assert call(cli, "issue", "new", "--repo", repo, "Add sub", "--label", "agent:auto")[0] == 0
    git(repo, "branch", "orch/1-add-sub")
    other = tmp_path / "mine"
    git(repo, "worktree", "add", "-q", str(other), "orch/1-add-sub")
    code, out, err = call(cli, "run", "--repo", repo, "--issue", 1)
    assert code == 1 and f"branch 'orch/1-add-sub' is checked out at {other}" in err
    assert git_out(other, "rev-parse", "--abbrev-ref", "HEAD") == "orch/1-add-sub"  # the user's checkout is untouched


# the state database ------------------------------------------------------------------------------


def _filed(cli: Any, repo: Path, tmp_path: Path) -> Agent:
    agent = make_agent(tmp_path, GOOD_AGENT)
    write_policy(repo, agent)
    assert call(cli, "issue", "new", "--repo", repo, "Add sub", "--label", "agent:auto")[0] == 0
    return agent


def test_garbage_state_database(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = _filed(cli, repo, tmp_path)
    db = repo / STATE_DB
    garbage = b"this is not a database\n" * 400
    db.write_bytes(garbage)
    for command in (("run", "--issue", "1"), ("status",), ("explain", "--issue", "1"), ("issue", "list")):
        head, rest = (command[:2], command[2:]) if command[0] == "issue" else (command[:1], command[1:])
        code, out, err = call(cli, *head, "--repo", repo, *rest)
        assert code == 1, (command, err)
        assert f"the state database {db} is corrupted" in err and f"mv {db} {db}.broken" in err
    assert db.read_bytes() == garbage
    assert agent.runs == 0 and not (repo / ".orch" / "runs").exists() and not (repo / ".orch" / "worktrees").exists()


def test_every_corrupted_table_is_a_clear_error(cli: Any, repo: Path, tmp_path: Path) -> None:
    _filed(cli, repo, tmp_path)
    db = repo / STATE_DB
    conn = sqlite3.connect(str(db))
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    tables = conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type='table' AND rootpage > 1").fetchall()
    conn.close()
    pristine = tmp_path / "pristine.db"
    shutil.copy(db, pristine)
    assert ("locks",) in [(n,) for n, _ in tables]
    codes = {}
    # reviews and reviewer permissions are read only once an issue has a pull request (`orch review`, review feedback);
    # the poll's cursor only by the daemon polling GitHub
    unread = ("tracker_reviews", "tracker_review_comments", "tracker_permissions", "poll_cursor")
    tables = [(n, r) for n, r in tables if n not in unread]
    for name, root in tables:
        shutil.copy(pristine, db)
        with open(db, "r+b") as fh:
            fh.seek((root - 1) * page)
            fh.write(b"\xff" * page)
        code, out, err = call(cli, "run", "--repo", repo, "--issue", 1)
        codes[name] = (code, f"the state database {db} is corrupted" in err and f"mv {db} {db}.broken" in err)
    assert codes == {name: (1, True) for name, _ in tables}, codes


def test_locked_state_database(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = _filed(cli, repo, tmp_path)
    before = db_dump(repo)
    holder = sqlite3.connect(str(repo / STATE_DB), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, out, err = call(cli, "run", "--repo", repo, "--issue", 1)  # waits for the busy timeout, then gives up
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1 and "is locked by another process" in err and "wait for it and run this again" in err
    assert db_dump(repo) == before and agent.runs == 0
    code, data = cli.json("run", "--repo", str(repo), "--issue", "1")
    assert code == 0 and data["final_state"] == "review"


@pytest.mark.parametrize("number", ["99999999999999999999", "0", "-3", "seven", "2147483648"])
def test_an_issue_number_out_of_range_is_a_usage_error_before_anything_is_written(
    cli: Any, repo: Path, tmp_path: Path, number: str
) -> None:
    from conftest import orch_process

    _filed(cli, repo, tmp_path)
    before = state_of(repo)
    for args in (("run", "--issue", number), ("explain", "--issue", number), ("issue", "show", number)):
        proc = orch_process(repo, *args)  # as a user types it: a process of its own
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert f"{number!r} is not an issue number: write a whole number from 1 to 2147483647" in proc.stderr
    assert state_of(repo) == before
