"""Many machines: four daemons (separate clones, separate state) on one GitHub repository never run an issue twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.github_emulator import GitHubEmulator
from tests.githubkit import BOT, BOT_TOKEN, OWNER, REPO, clone, configure, make_project
from tests.githubkit import api_pages as api

QUICK = Path(__file__).parent / "agents" / "slow.py"


def test_four_daemons_forty_issues_each_runs_exactly_once(tmp_path: Path) -> None:
    with GitHubEmulator(tmp_path / "github") as gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_user(BOT, token=BOT_TOKEN)
        make_project(tmp_path, gh)
        machines = [clone(gh, tmp_path, f"machine-{i}") for i in range(4)]
        (tmp_path / "agent-counter").mkdir()
        counter = tmp_path / "agent-counter" / "agent-runs.txt"  # a folder the jail lets the agents write
        for m in machines:
            configure(m, gh)
            policy = m / ".orch" / "policy.yaml"
            text = policy.read_text()
            start = text.index("\nagent:\n")
            end = text.index("\nchecks:")
            policy.write_text(
                text[:start] + f"\nagent:\n  kind: command\n  command: {sys.executable}\n"
                f'  args: ["{QUICK}", "0.05"]\n'
                + text[end:].replace(text[end:].split("\n\n")[0], "\nchecks: {}")
                + f"\nsandbox:\n  env: [AGENT_COUNTER]\n  writable: ['{counter.parent}']\n"
            )
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")},
            "GH_TOKEN": BOT_TOKEN,
            "AGENT_COUNTER": str(counter),
        }
        subprocess.run(
            [sys.executable, "-m", "statemachine", "setup", "--prepare-labels", "--repo", str(machines[0])],
            env=env,
            check=True,
            capture_output=True,
        )
        numbers = []
        for i in range(40):
            n = gh.create_issue(
                OWNER, REPO, f"feature {i}", body=f"feature {i}\n\nOwnership:\n- feature_{i}.py\n", user="alice"
            )
            gh.add_label_event(OWNER, REPO, n, "agent:auto", "alice")
            numbers.append(n)
        daemons = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "statemachine",
                    "daemon",
                    "--repo",
                    str(m),
                    "--json",
                    "--concurrency",
                    "2",
                    "--interval-seconds",
                    "0.5",
                    "--shutdown-deadline",
                    "5",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for m in machines
        ]
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                issues = {i["number"]: i for i in api(gh, f"/repos/{OWNER}/{REPO}/issues?state=open")}
                rested = [
                    n
                    for n in numbers
                    if {lab["name"] for lab in issues[n]["labels"]} & {"agent:review", "agent:blocked"}
                ]
                if len(rested) == len(numbers):
                    break
                time.sleep(1.0)
        finally:
            for d in daemons:
                d.send_signal(signal.SIGTERM)
            outputs = [d.communicate(timeout=60) for d in daemons]
        assert all(d.returncode == 0 for d in daemons), [o[1][-2000:] for o in outputs]
        assert len(rested) == 40, f"only {len(rested)} of 40 issues came to rest"
        runs = Counter(int(line.split()[2]) for line in counter.read_text().splitlines() if " start " in line)
        doubled = [n for n, k in runs.items() if k > 1]
        if doubled:
            for i, (out, _err) in enumerate(outputs):
                for line in out.splitlines():
                    rec = json.loads(line)
                    if rec.get("issue") in doubled:
                        print(i, rec)
            for n in doubled:
                for c in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments"):
                    print(n, c["id"], c["user"]["login"], c["created_at"], c["body"][-80:].replace("\n", " "))
        assert len(runs) == 40 and set(runs.values()) == {1}, runs
        pulls = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")
        per_issue = Counter(int(p["head"]["ref"].split("/")[1].split("-")[0]) for p in pulls)
        for n in sorted(set(numbers) - set(per_issue)):
            for c in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments"):
                print("NOPR", n, c["id"], c["body"][:1500].replace("\n", " | "))
        assert sorted(per_issue) == sorted(numbers) and set(per_issue.values()) == {1}
        claims: Counter[int] = Counter()
        for n in numbers:
            for c in api(gh, f"/repos/{OWNER}/{REPO}/issues/{n}/comments"):
                if "<!-- orch:claim run=" in c["body"]:
                    claims[n] += 1
        assert set(claims.values()) == {1} and len(claims) == 40
        started: Counter[int] = Counter()
        for out, _err in outputs:
            for line in out.splitlines():
                rec = json.loads(line)
                if rec["event"] == "run-finished" and rec["outcome"] in ("review", "blocked"):
                    started[rec["issue"]] += 1
        assert set(started.values()) == {1} and len(started) == 40
        assert sum(1 for out, _ in outputs if '"run-finished"' in out) >= 2, (
            "the work should spread over several machines"
        )
        assert gh.violations == []
