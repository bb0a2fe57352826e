"""What a new user trips on, met the way they meet it (issue 17, items 1, 2 and part of 7): a real repository, the CLI,
a real `command` agent in the jail, real checks.

- The agent runs the tests and leaves __pycache__ behind in a repository whose .gitignore lacks it: the change set
  leaves the caches out (gates.ignore_untracked), the run reaches review and the commit holds no .pyc; a file the
  agent changed and did not report is a rework finding, not a block; a tracked file under a cache path stays a change,
  and a reported cache file is never committed.
- `orch setup` writes the ignores of the detected ecosystem, once, shown by --dry-run with the tracker it inferred;
  `--tracker local` in a clone with a GitHub origin.
- A mistyped check command is named by `orch doctor` (key, line, fix) and stops `orch run` before any agent run; a
  check that exits 127 mid-run blocks after one agent run with the fix named.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.agentkit import tracker
from tests.conftest import Cli, git

HEAD = "version: 1\nextends: default\n"

# A command agent that works as a real one does: it edits app.py, runs the project's tests with python (which writes
# __pycache__/*.pyc into the worktree) and reports app.py only.
AGENT = """\
import json, os, subprocess, sys
from pathlib import Path

prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
Path("app.py").write_text(Path("app.py").read_text() + "\\n\\ndef sub(a, b):\\n    return a - b\\n")
env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
subprocess.run([sys.executable, "-m", "unittest", "-q"], check=True, env=env)
if not any(Path("__pycache__").glob("*.pyc")):
    sys.exit("the test run wrote no .pyc: this test would prove nothing")
changed = ["app.py"]
EXTRA
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "sub",
    "changed_files": changed, "validation": []}))
"""


def policy(repo: Path, tmp_path: Path, extra_agent: str = "", extra: str = "") -> Path:
    """Commit a policy running AGENT (with ``extra_agent`` before its report); return the repository (for runs())."""
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT.replace("EXTRA", extra_agent))
    (repo / ".orch").mkdir(exist_ok=True)
    (repo / ".orch" / "policy.yaml").write_text(
        HEAD + f"agent:\n  kind: command\n  command: {sys.executable}\n  args: ['{agent}']\n"
        "  timeout_seconds: 120\n  idle_timeout_seconds: 60\n" + extra
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    return repo


def runs(repo: Path) -> int:
    """How many times the agent ran: the log the runner keeps of each attempt's agent run."""
    return len(list((repo / ".orch" / "runs").glob("*/attempt-*/agent.log")))


def guards(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every guard's verdict of the run's last step, by guard name (the first transition's that evaluated it)."""
    out: dict[str, dict[str, Any]] = {}
    for ev in data["steps"][-1]["evaluations"]:
        for g in ev["guards"]:
            out.setdefault(g["guard"], g["verdict"])
    return out


def pull_request_tree(repo: Path) -> list[str]:
    with tracker(repo) as t:
        pulls = t.pulls()
    assert len(pulls) == 1
    return git(repo, "ls-tree", "-r", "--name-only", pulls[0].head_sha).splitlines()


# caches are not the agent's change ------------------------------------------------------------------------------


def test_caches_the_agents_test_run_leaves_are_not_its_change(cli: Cli, repo: Path, tmp_path: Path) -> None:
    assert not (repo / ".gitignore").exists()  # the repository ignores nothing: git would list __pycache__/
    counter = policy(repo, tmp_path, extra=f"checks:\n  tests:\n    command: {sys.executable} -m unittest -q\n")
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and data["final_state"] == "review", guards(data)
    assert runs(counter) == 1  # reached review on the first attempt: no rework, no block
    tree = pull_request_tree(repo)
    assert "app.py" in tree and not [p for p in tree if "__pycache__" in p or p.endswith(".pyc")]
    changes = json.loads(next((repo / ".orch" / "runs").glob("*/attempt-1/changes.json")).read_text())
    assert [c["path"] for c in changes["changes"]] == ["app.py"]


def test_an_unreported_file_is_a_rework_finding_and_the_next_attempt_fixes_it(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    # the first attempt leaves notes.txt behind and does not report it; the rework prompt names it; the second attempt
    # reports it
    counter = policy(
        repo,
        tmp_path,
        extra_agent=(
            'Path("notes.txt").write_text("scratch\\n")\n'
            'if "notes.txt" in prompt and "leave out" in prompt:\n    changed.append("notes.txt")\n'
        ),
    )
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and data["final_state"] == "review", guards(data)
    assert runs(counter) == 2
    prompt = next((repo / ".orch" / "runs").glob("*/attempt-2/prompt.md")).read_text()
    assert "changed but not reported: notes.txt" in prompt
    assert sorted(p for p in pull_request_tree(repo) if p in ("app.py", "notes.txt")) == ["app.py", "notes.txt"]


def test_a_policy_that_ignores_no_cache_makes_the_pyc_a_rework_finding(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # gates.ignore_untracked: [] turns the bundled list off: the .pyc is then the agent's change, and a report that
    # leaves it out is sent back once (rework), not blocked at once
    counter = policy(repo, tmp_path, extra="gates:\n  ignore_untracked: []\nlimits:\n  rework_iterations: 1\n")
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    assert runs(counter) == 2  # one rework, then the budget is spent (this agent never reports the .pyc)
    prompt = next((repo / ".orch" / "runs").glob("*/attempt-2/prompt.md")).read_text()
    assert "changed but not reported: __pycache__/app.cpython-" in prompt
    assert guards(data)["within_rework_limit"]["ok"] is False


def test_a_tracked_file_under_a_cache_path_stays_a_change(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # an ignore line never hides a change to a file git tracks: editing it without reporting it is a finding
    (repo / "vendor" / "__pycache__").mkdir(parents=True)
    (repo / "vendor" / "__pycache__" / "data.pyc").write_bytes(b"tracked on purpose\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a tracked cache file")
    counter = policy(
        repo,
        tmp_path,
        extra_agent='Path("vendor/__pycache__/data.pyc").write_bytes(b"changed by the agent\\n")\n',
        extra="limits:\n  rework_iterations: 0\n",
    )
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    assert runs(counter) == 1
    verdicts = guards(data)
    assert "changed but not reported: vendor/__pycache__/data.pyc" in verdicts["report_matches_changes"]["evidence"]
    assert verdicts["unreported_changes_only"]["ok"] is True  # a rework finding ...
    assert verdicts["within_rework_limit"]["ok"] is False  # ... but this policy allows no rework


def test_a_reported_cache_file_is_never_committed(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # the agent cannot smuggle content through an ignored path: it is not part of the change, so claiming it blocks
    counter = policy(
        repo,
        tmp_path,
        extra_agent='Path("__pycache__/payload.pyc").write_bytes(b"smuggled")\nchanged.append("__pycache__/payload.pyc")\n',
    )
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    assert runs(counter) == 1
    evidence = guards(data)["report_matches_changes"]["evidence"]
    assert "reported but not changed: __pycache__/payload.pyc" in evidence
    with tracker(repo) as t:
        assert t.pulls() == []
    heads = git(repo, "for-each-ref", "--format=%(objectname)", "refs/heads/").split()
    assert not [h for h in heads if "payload" in git(repo, "ls-tree", "-r", "--name-only", h)]


# setup ---------------------------------------------------------------------------------------------------------


def test_setup_ignores_the_detected_ecosystems_caches_once(cli: Cli, repo: Path) -> None:
    (repo / "pyproject.toml").write_text("[project]\nname = 'demo'\nversion = '0'\n")
    (repo / ".gitignore").write_text("/.venv\n__pycache__\n")  # the user's own spelling of two of the lines
    git(repo, "remote", "add", "origin", "git@github.com:acme/widgets.git")
    code, dry = cli.json("setup", "--dry-run", "--repo", repo)
    assert code == 0 and dry["tracker"] == "github" and (dry["owner"], dry["github_repo"]) == ("acme", "widgets")
    assert "origin" in dry["tracker_source"] and dry["ecosystems"] == ["Python"]
    assert (repo / ".gitignore").read_text() == "/.venv\n__pycache__\n"
    code, text, _ = cli("setup", "--dry-run", "--repo", repo)
    assert text.splitlines()[0] == "tracker: github acme/widgets (inferred from origin git@github.com:acme/widgets.git)"
    assert "*.py[cod]" in text and ".pytest_cache/" in text

    code, done = cli.json("setup", "--tracker", "local", "--repo", repo)
    assert code == 0 and done["tracker"] == "local" and done["owner"] is None
    assert "kind: local" in (repo / ".orch" / "policy.yaml").read_text()
    lines = (repo / ".gitignore").read_text().splitlines()
    for line in ("__pycache__/", "*.py[cod]", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", "*.egg-info/"):
        assert line in lines or line == "__pycache__/", line
    assert ".venv/" not in lines and "__pycache__/" not in lines  # already there in the user's spelling
    assert lines.count(".orch/state/") == 1
    before = (repo / ".gitignore").read_bytes()
    code, again = cli.json("setup", "--repo", repo)
    assert code == 0 and again["writes"] == [] and (repo / ".gitignore").read_bytes() == before
    assert again["tracker"] == "local"  # what the policy there names, not what origin suggests
    assert cli("lint", "--repo", repo)[0] == 0


def test_setup_tracker_github_without_a_github_origin_is_refused(cli: Cli, repo: Path) -> None:
    code, _out, err = cli("setup", "--tracker", "github", "--repo", repo)
    assert code == 1 and "--tracker github needs the GitHub repository" in err and "--github-owner" in err
    assert not (repo / ".orch").exists()
    with pytest.raises(SystemExit) as exited:
        cli("setup", "--tracker", "bitbucket", "--repo", repo)
    assert exited.value.code == 2


# commands that cannot start ------------------------------------------------------------------------------------


def test_a_mistyped_check_command_is_named_by_doctor_and_stops_the_run_before_the_agent(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    counter = policy(repo, tmp_path, extra="checks:\n  tests:\n    command: pytestt -q\n")
    line = (repo / ".orch" / "policy.yaml").read_text().splitlines().index("    command: pytestt -q") + 1
    code, doc = cli.json("doctor", "--repo", repo)
    assert code == 1 and doc["ok"] is False
    bad = [c for c in doc["checks"] if c["check"] == "commands" and not c["ok"]]
    assert len(bad) == 1
    assert bad[0]["detail"].startswith(f".orch/policy.yaml:{line}: checks.tests.command: ")
    assert "`pytestt` is not found on PATH" in bad[0]["detail"]
    assert bad[0]["fix"].startswith("fix checks.tests.command in .orch/policy.yaml")
    code, text, _ = cli("doctor", "--repo", repo)
    assert f"FAIL commands: .orch/policy.yaml:{line}: checks.tests.command" in text

    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, out, _ = cli("run", "--issue", "1", "--repo", repo)
    assert code == 4
    assert "checks.tests.command" in out and "pytestt" in out
    assert runs(counter) == 0 and not (repo / ".orch" / "runs").exists()
    with tracker(repo) as t:
        assert "agent:running" not in t.get_issue(1).labels and t.list_comments(1) == []


def test_a_check_that_exits_127_mid_run_blocks_at_once_with_the_fix(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # `cd . && ...`: only the shell can tell what runs, so the preflight lets it pass; the shell then exits 127
    counter = policy(repo, tmp_path, extra="checks:\n  tests:\n    command: cd . && pytestt -q\n")
    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    assert runs(counter) == 1  # no rework: another attempt cannot fix the policy
    verdict = guards(data)["rework_warranted"]
    assert verdict["ok"] is False
    assert verdict["reason"].startswith(
        "the check `tests` could not start: `pytestt` not found; fix checks.tests.command in .orch/policy.yaml"
    )
    with tracker(repo) as t:
        comments = [c.body for c in t.list_comments(1)]
    assert any("fix checks.tests.command in .orch/policy.yaml" in body for body in comments)


def test_doctor_names_the_agent_program_of_the_starter_policy(cli: Cli, repo: Path, tmp_path: Path) -> None:
    assert cli("setup", "--repo", repo)[0] == 0  # the starter policy: kind codex, no command
    import os
    import shutil

    bin_dir = tmp_path / "bin"  # a PATH with git and nothing else: no codex
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(str(shutil.which("git")))
    os.environ["PATH"], old = str(bin_dir), os.environ["PATH"]
    try:
        code, doc = cli.json("doctor", "--repo", repo)
    finally:
        os.environ["PATH"] = old
    agent = next(c for c in doc["checks"] if c["check"] == "agent")
    assert code == 1 and agent["ok"] is False
    assert agent["detail"] == "the agent program `codex` (agent.kind codex) is not installed or not on PATH"
    assert "None" not in agent["detail"] and "npm install -g @openai/codex" in agent["fix"]


def test_a_program_in_a_folder_the_jail_hides_counts_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statemachine import programs

    home_bin, system_bin = tmp_path / "home" / "bin", tmp_path / "sys" / "bin"
    for folder in (home_bin, system_bin):
        folder.mkdir(parents=True)
    tool = home_bin / "pytest"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{home_bin}:{system_bin}")
    assert programs.find("pytest", tmp_path) == str(tool)  # unjailed: all of PATH
    assert programs.find("pytest", tmp_path, [tmp_path / "sys"]) is None  # jailed: the home folder is not shown
    (system_bin / "pytest").symlink_to(tool)  # a link into the hidden folder dangles in the jail
    assert programs.find("pytest", tmp_path, [tmp_path / "sys"]) is None
    assert programs.program_of("FOO=1 pytest -q") == "pytest"
    assert programs.program_of("cd src && pytest") is None and programs.program_of("$PYTEST -q") is None
    assert programs.not_found_in("sh: 1: pytestt: not found\n") == "pytestt"
    assert programs.not_found_in("bash: line 1: pytestt: command not found\n") == "pytestt"
