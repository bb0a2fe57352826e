"""Agent choice per issue (issue 18, item 2): agent.profiles names other agents, agent.select picks one by the issue's
labels or kind; `orch explain` says which and why, the run records it, `orch lint` refuses a selection of a profile
that does not exist. Real git, the CLI, real `command` agents in the jail."""

from __future__ import annotations

import sys
from pathlib import Path

from statemachine import catalog, policy
from statemachine.store import Store
from tests.conftest import Cli, git

AGENT = """\
import json, os, sys
from pathlib import Path

name = sys.argv[1]
prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()
n = prompt.split("issue #", 1)[1].split(":", 1)[0]
Path(f"by_{n}.txt").write_text(name + "\\n")
Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": name,
    "changed_files": [f"by_{n}.txt"], "validation": []}))
"""

POLICY = """version: 1
extends: default
agent:
  kind: command
  command: {python}
  args: ['{agent}', 'house']
  timeout_seconds: 300
  profiles:
    careful:
      kind: command
      command: {python}
      args: ['{agent}', 'careful']
      idle_timeout_seconds: 120
  select:
    - labels: [agent:careful]
      profile: careful
"""


def prepare(repo: Path, tmp_path: Path, text: str = POLICY) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    (repo / ".orch").mkdir(exist_ok=True)
    path = repo / ".orch" / "policy.yaml"
    path.write_text(text.format(python=sys.executable, agent=agent))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "policy")
    return path


def new_issue(cli: Cli, repo: Path, title: str, *labels: str) -> int:
    args: list[str | Path] = ["issue", "new", title, "--body", title, "--repo", repo]
    for label in ("agent:auto", *labels):
        args += ["--label", label]
    code, data = cli.json(*args)
    assert code == 0
    return int(data["number"])


def test_the_label_chooses_the_agent_and_explain_says_why(cli: Cli, repo: Path, tmp_path: Path) -> None:
    prepare(repo, tmp_path)
    plain, careful = new_issue(cli, repo, "plain"), new_issue(cli, repo, "careful", "agent:careful")
    code, data = cli.json("explain", "--issue", str(careful), "--repo", repo)
    assert data["agent"]["profile"] == "careful" and "agent:careful" in data["agent"]["why"]
    code, out, _ = cli("explain", "--issue", str(plain), "--repo", repo)
    assert "agent: default (command): no agent.select entry matches" in out
    for n in (plain, careful):
        assert cli("run", "--issue", str(n), "--repo", repo)[0] == 0
    assert git(repo, "show", f"refs/heads/orch/{plain}-plain:by_{plain}.txt") == "house\n"
    assert git(repo, "show", f"refs/heads/orch/{careful}-careful:by_{careful}.txt") == "careful\n"
    store = Store(repo / ".orch" / "state" / "orch.db")
    try:
        for n, profile in ((plain, "default"), (careful, "careful")):
            agent = store.facts(store.state_of(n)[1])["agent"]
            assert (agent["profile"], agent["kind"]) == (profile, "command")  # the run records who worked on it
    finally:
        store.close()


def test_a_profile_takes_the_agent_sections_timeouts_unless_it_sets_its_own(repo: Path, tmp_path: Path) -> None:
    path = prepare(repo, tmp_path)
    config = policy.load(path, ".orch/policy.yaml", catalog.builtin()).config
    chosen = config.agent_for(["agent:auto", "agent:careful"])
    assert chosen.profile == "careful" and chosen.agent.timeout_seconds == 300
    assert chosen.agent.idle_timeout_seconds == 120  # its own
    assert config.agent_for(["agent:auto"]).profile is None


def test_lint_refuses_a_selection_of_a_missing_profile(cli: Cli, repo: Path, tmp_path: Path) -> None:
    path = prepare(repo, tmp_path, POLICY.replace("      profile: careful", "      profile: carefull"))
    code, out, err = cli("lint", path)
    assert code == 3
    assert ".orch/policy.yaml:16:7: agent.select[0].profile: no agent profile named 'carefull'" in out + err
    assert "(did you mean 'careful'?)" in out + err


def test_lint_checks_a_profile_as_it_checks_the_agent_section(cli: Cli, repo: Path, tmp_path: Path) -> None:
    path = prepare(repo, tmp_path, POLICY.replace("      idle_timeout_seconds: 120", "      idle_timeout: 120"))
    code, out, err = cli("lint", path)
    assert code == 3 and "agent.profiles.careful" in out + err and "idle_timeout" in out + err
