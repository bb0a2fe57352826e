"""Proof published on GitHub: the UI issue's screenshots land on a proof branch that the draft pull request shows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git
from tests.fixtures.webapp import kit
from tests.github_emulator import GitHubEmulator
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, api, clone, orch, orch_json


def test_ui_proof_screenshots_are_published_on_a_proof_branch(tmp_path: Path) -> None:
    with GitHubEmulator(tmp_path / "github") as gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_user(BOT, token=BOT_TOKEN)
        seed = kit.make_repo(tmp_path)
        gh.add_repo(OWNER, REPO, default_branch="main", source=seed)
        gh.set_permission(OWNER, REPO, "alice", "admin")
        gh.set_permission(OWNER, REPO, BOT, "write")
        work = clone(gh, tmp_path, "machine")
        kit.write_policy(work, "honest")
        policy = work / ".orch" / "policy.yaml"
        policy.write_text(
            policy.read_text().replace(
                "extends: default\n",
                f"extends: default\ntracker:\n  kind: github\n  owner: {OWNER}\n  repo: {REPO}\n"
                f"  api_url: {gh.api_url}\n",
                1,
            )
        )
        git(work, "commit", "-qam", "github policy")
        assert orch(work, "setup", "--prepare-labels")[0] == 0
        number = gh.create_issue(OWNER, REPO, "Make Add one work", body=kit.UI_BODY, user="alice")
        gh.add_label_event(OWNER, REPO, number, "agent:auto", "alice")
        code, data = orch_json(work, "run", "--issue", str(number))
        assert code == 0 and data["final_state"] == "review", json.dumps(data)[-2000:]
        pr = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")[0]
        assert pr["draft"] and "## Proof" in pr["body"]
        links = [line for line in pr["body"].splitlines() if line.startswith("![browser-final-")]
        assert len(links) == 2 and all("/raw/orch-proof%2F" in line or "/raw/orch-proof/" in line for line in links)
        bare = Path(gh.bare_path(OWNER, REPO))
        branches = git(bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/orch-proof").split()
        assert len(branches) == 1
        files = git(bare, "ls-tree", "-r", "--name-only", branches[0]).split()
        assert any(f.endswith(".png") for f in files) and all(f.startswith("proof/") for f in files)
        # the pushed bytes are exactly the screenshot the runner checked
        facts_proof = next(
            a for a in kit.run_facts(work, number)["proof"]["artifacts"] if a["id"] == "browser-final-mobile"
        )
        blob = next(f for f in files if f.endswith(Path(facts_proof["path"]).name))
        import hashlib
        import subprocess

        raw = subprocess.run(["git", "show", f"{branches[0]}:{blob}"], cwd=bare, capture_output=True, check=True).stdout
        assert hashlib.sha256(raw).hexdigest() == facts_proof["sha256"]
        assert gh.violations == []
