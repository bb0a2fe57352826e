"""The daemon on the local tracker: --once, ownership, signals, reconciliation, one daemon per clone, the live view."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agentkit import processes_under
from tests.conftest import Cli
from tests.daemonkit import (
    counter_file,
    counter_sandbox,
    daemon,
    events,
    new_issue,
    setup,
    state_of,
    wait_for,
)


def test_once_runs_disjoint_issues_together_and_overlapping_ones_apart(cli: Cli, repo: Path) -> None:
    setup(cli, repo, seconds=1.0)
    a = new_issue(cli, repo, "A", owns="src/a/**")
    b = new_issue(cli, repo, "B", owns="src/b/**")
    c = new_issue(cli, repo, "C", owns="src/a/deep/x.py")  # overlaps A
    d = new_issue(cli, repo, "D")  # no ownership: runs alone
    manual = new_issue(cli, repo, "M", labels=("agent:auto", "agent:manual"))
    proc = daemon(repo, "--once", "--concurrency", "3", "--interval-seconds", "0.2")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert all(line["version"] == 1 for line in lines)
    started = [e["issue"] for e in lines if e["event"] == "run-started"]
    assert sorted(started) == [a, b], "C overlaps A and D declares no ownership: neither may join"
    finished = {e["issue"]: e["outcome"] for e in lines if e["event"] == "run-finished"}
    assert finished == {a: "review", b: "review"}
    assert [e["event"] for e in events(repo)] == [e["event"] for e in lines], "every event also goes to the JSONL log"
    # the next --once picks C (A is done); D must still wait because C runs
    proc = daemon(repo, "--once", "--concurrency", "3", "--interval-seconds", "0.2")
    out, _ = proc.communicate(timeout=120)
    assert [json.loads(x)["issue"] for x in out.splitlines() if '"run-started"' in x] == [c]
    proc = daemon(repo, "--once", "--concurrency", "3")
    out, _ = proc.communicate(timeout=120)
    assert [json.loads(x)["issue"] for x in out.splitlines() if '"run-started"' in x] == [d]
    assert state_of(cli, repo, manual) == "queued"


def test_priority_labels_go_first(cli: Cli, repo: Path) -> None:
    setup(cli, repo, extra="daemon:\n  priority_labels: [urgent]\n")
    first = new_issue(cli, repo, "old")
    second = new_issue(cli, repo, "urgent one", labels=("agent:auto", "urgent"))
    proc = daemon(repo, "--once", "--max-runs", "1")
    out, _ = proc.communicate(timeout=60)
    started = [json.loads(x)["issue"] for x in out.splitlines() if '"run-started"' in x]
    assert started == [second] and first != second


def test_first_serves_the_named_issue_before_older_and_higher_priority_ones(cli: Cli, repo: Path) -> None:
    setup(cli, repo, extra="daemon:\n  priority_labels: [urgent]\n")
    old = new_issue(cli, repo, "old")
    urgent = new_issue(cli, repo, "urgent one", labels=("agent:auto", "urgent"))
    mine = new_issue(cli, repo, "the workflow's own issue")
    proc = daemon(repo, "--once", "--max-runs", "1", "--first", str(mine))
    out, _ = proc.communicate(timeout=60)
    assert [json.loads(x)["issue"] for x in out.splitlines() if '"run-started"' in x] == [mine]
    # an issue that cannot run (it rests in review now) leaves the usual order alone
    proc = daemon(repo, "--once", "--max-runs", "1", "--first", str(mine))
    out, _ = proc.communicate(timeout=60)
    assert [json.loads(x)["issue"] for x in out.splitlines() if '"run-started"' in x] == [urgent] and old < urgent


def test_sigterm_stops_cleanly_and_a_restart_resumes(cli: Cli, repo: Path, tmp_path: Path) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=30, extra=counter_sandbox(counter))
    n = new_issue(cli, repo, "long", owns="src/**")
    env = {**os.environ, "AGENT_COUNTER": str(counter)}
    proc = daemon(repo, "--interval-seconds", "0.2", "--shutdown-deadline", "0.5", env=env)
    wait_for(lambda: counter.exists() and "start" in counter.read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    kinds = [json.loads(x)["event"] for x in out.splitlines()]
    assert "stopping" in kinds and "terminated" in kinds and kinds[-1] == "stopped"
    assert processes_under(repo / ".orch" / "worktrees") == []  # the agent's jail was stopped
    assert state_of(cli, repo, n) in ("claimed", "implementing")  # resumable, nothing published
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    assert "agent:review" not in data["labels"]
    # restart with a quick agent: the interrupted step resumes and the issue reaches review
    setup(cli, repo, seconds=0.1, extra=counter_sandbox(counter))
    proc = daemon(repo, "--once", env=env)
    out, err = proc.communicate(timeout=60)
    finished = [json.loads(x) for x in out.splitlines() if '"run-finished"' in x]
    assert finished and finished[0]["outcome"] == "review", out + err
    started = [json.loads(x) for x in out.splitlines() if '"run-started"' in x]
    assert started[0]["resumed"] is True


def test_an_issue_closed_mid_run_is_stopped_without_publication(cli: Cli, repo: Path, tmp_path: Path) -> None:
    counter = counter_file(tmp_path)
    setup(cli, repo, seconds=30, extra=counter_sandbox(counter))
    n = new_issue(cli, repo, "will be closed", owns="x/**")
    proc = daemon(
        repo, "--interval-seconds", "0.3", "--max-runs", "1", env={**os.environ, "AGENT_COUNTER": str(counter)}
    )
    wait_for(lambda: counter.exists())
    assert cli("issue", "close", str(n), "--repo", repo)[0] == 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    recs = [json.loads(x) for x in out.splitlines()]
    assert any(r["event"] == "reconcile" and r["issue"] == n for r in recs)
    assert [r["outcome"] for r in recs if r["event"] == "run-finished"] == ["stopped"]
    code, data = cli.json("issue", "show", str(n), "--repo", repo)
    assert "agent:running" not in data["labels"] and "agent:review" not in data["labels"]
    assert data["lifecycle_state"] == "blocked"
    code, shown = cli.json("show", "--issue", str(n), "--repo", repo)
    assert all(s["trigger"] not in ("approve",) for s in shown["steps"])


def test_a_second_daemon_on_the_same_clone_is_refused(cli: Cli, repo: Path) -> None:
    setup(cli, repo)
    first = daemon(repo, "--interval-seconds", "5")
    try:
        wait_for(
            lambda: (
                (repo / ".orch" / "state" / "daemon.lock").exists()
                and "pid" in (repo / ".orch" / "state" / "daemon.lock").read_text()
            )
        )
        second = daemon(repo, "--once")
        out, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert "another orch daemon already serves" in err and "Traceback" not in err
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert first.returncode == 130  # Ctrl-C: interrupted (docs/cli.md), after the same shutdown as SIGTERM


AGENT_POLICIES = {
    "codex": ("", "npm install -g @openai/codex@0.169.0", "OPENAI_API_KEY"),
    "claude": ("agent:\n  kind: claude\n", "npm install -g @anthropic-ai/claude-code@2.1.197", "ANTHROPIC_API_KEY"),
    "claude-own-key": (
        "agent:\n  kind: claude\n  api_key_env: ORCH_MODEL_KEY\n",
        "npm install -g @anthropic-ai/claude-code@2.1.197",
        "ORCH_MODEL_KEY",
    ),
    "command": (f"agent:\n  kind: command\n  command: {sys.executable}\n", None, None),
}


@pytest.mark.parametrize("which", sorted(AGENT_POLICIES))
def test_setup_actions_writes_a_valid_least_privilege_workflow(cli: Cli, repo: Path, which: str) -> None:
    import re

    agent, install, key = AGENT_POLICIES[which]
    if agent:  # otherwise setup writes the starter policy (codex)
        (repo / ".orch").mkdir(exist_ok=True)
        (repo / ".orch" / "policy.yaml").write_text("version: 1\nextends: default\n" + agent)
    code, data = cli.json("setup", "--actions", "--repo", repo, "--orch-package", "orch==0.1.0")
    assert code == 0
    wf = repo / ".github" / "workflows" / "orch.yml"
    text = wf.read_text()
    res = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(wf)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(text)
    assert doc["permissions"] == {"contents": "write", "issues": "write", "pull-requests": "write"}
    assert doc["concurrency"]["cancel-in-progress"] is False
    assert "github.event.issue.number" in doc["concurrency"]["group"]
    on = doc.get("on", doc.get(True))  # YAML 1.1 loaders read `on` as true
    assert on["issues"]["types"] == ["labeled"] and on["schedule"]
    job = doc["jobs"]["orch"]
    assert "agent:auto" in job["if"] and "agent:plan-auto" in job["if"]
    steps = job["steps"]
    run_steps = [s.get("run", "") for s in steps]
    assert any("orch daemon --once" in r for r in run_steps)
    # the agent CLI, pinned, for the policy's kind (none for `command`)
    installs = [r for r in run_steps if "npm install" in r]
    assert installs == ([install] if install else [])
    # the jail: bubblewrap, and user namespaces that AppArmor would otherwise refuse on ubuntu-latest
    assert any(
        "apt-get install -y bubblewrap" in r and "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in r
        for r in run_steps
    )
    # every action pinned by full commit SHA, the tag in a comment
    uses = [s["uses"] for s in steps if "uses" in s]
    assert {u.split("@")[0] for u in uses} >= {
        "actions/checkout",
        "actions/setup-python",
        "actions/upload-artifact",
        "actions/create-github-app-token",
        "actions/cache/restore",
        "actions/cache/save",
    }
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w.-]+)?@[0-9a-f]{40}", u) for u in uses), uses
    assert all(
        re.search(r"uses: \S+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line) for line in text.splitlines() if "uses:" in line
    )
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    # the model key reaches the orch step only, never an install step or a check
    orch_step = next(s for s in steps if "orch daemon --once" in s.get("run", ""))
    for other in steps:
        if other is not orch_step:
            assert "API_KEY" not in json.dumps(other) and "MODEL_KEY" not in json.dumps(other)
    if key:
        assert orch_step["env"][key] == f"${{{{ secrets.{key} }}}}"
        assert text.count(f"secrets.{key}") == 1
    else:
        assert not [k for k in orch_step["env"] if k.endswith("_KEY")]
    assert "env" not in doc and set(job.get("env", {})) == {"ORCH_HAS_APP"}
    # orch's identity: the app's token, else ORCH_TOKEN, else the job token as github-actions[bot]
    assert (
        orch_step["env"]["GH_TOKEN"] == "${{ steps.app.outputs.token || secrets.ORCH_TOKEN || secrets.GITHUB_TOKEN }}"
    )
    assert (
        "'github-actions'" in orch_step["env"]["ORCH_APP_SLUG"]
        and "steps.app.outputs.app-slug" in orch_step["env"]["ORCH_APP_SLUG"]
    )
    app = next(s for s in steps if s.get("id") == "app")
    assert app["if"] == "env.ORCH_HAS_APP == 'true'"
    assert {k: v for k, v in app["with"].items() if k.startswith("permission-")} == {
        "permission-contents": "write",
        "permission-issues": "write",
        "permission-pull-requests": "write",
        "permission-metadata": "read",
    }
    # evidence: the redacted run folders only, never .orch/state/
    # (upload-artifact leaves hidden paths such as .orch/ out, so the evidence is gathered into a plain folder first)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "orch-evidence/" and upload["if"] == "always()"
    gather = steps[steps.index(upload) - 1]
    assert gather["if"] == "always()" and "cp -R .orch/runs/. orch-evidence/" in gather["run"]
    assert ".orch/state" not in gather["run"].replace("never .orch/state/", "")
    assert 'python -m pip install "orch==0.1.0"' in text
    assert cli("setup", "--actions", "--repo", repo)[1].strip().splitlines()[-1].startswith("nothing to do")


def test_http_state_and_page_in_chromium(cli: Cli, repo: Path) -> None:
    pw = pytest.importorskip("playwright.sync_api")
    setup(cli, repo, seconds=30)
    n = new_issue(cli, repo, "shown on the page", owns="web/**")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = daemon(repo, "--interval-seconds", "0.3", "--shutdown-deadline", "0", "--http", f"127.0.0.1:{port}")
    try:
        import urllib.request

        def running() -> bool:
            try:
                data = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/state", timeout=2).read())
            except OSError:
                return False
            return bool(data["running"]) and data["running"][0]["state"] == "implementing"

        wait_for(running)
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(f"#running tr[data-issue='{n}']")
            row = page.inner_text(f"#running tr[data-issue='{n}']")
            assert "implementing" in row and "shown on the page" in row
            assert "serving" in page.inner_text("#status")
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_a_slot_that_comes_free_is_filled_at_once_not_at_the_next_tick(cli: Cli, repo: Path) -> None:
    """With a minute between polls and one slot, the second queued issue starts as soon as the first run ends: a run
    that ends while eligible issues wait brings the next poll forward."""
    import time

    setup(cli, repo, seconds=0)
    first, second = new_issue(cli, repo, "one", owns="a/**"), new_issue(cli, repo, "two", owns="b/**")
    proc = daemon(repo, "--json", "--concurrency", "1", "--interval-seconds", "60", "--max-runs", "2")
    assert proc.stdout is not None
    seen: dict[tuple[str, int], float] = {}
    while len(seen) < 4:  # both runs started and finished
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "the daemon ended early"
        event = json.loads(line)
        if event["event"] in ("run-started", "run-finished"):
            seen[(event["event"], event["issue"])] = time.monotonic()
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert seen[("run-started", second)] - seen[("run-finished", first)] < 30  # not the 60 s tick
    assert sorted(n for kind, n in seen if kind == "run-finished") == [first, second]


def test_runs_started_in_one_pass_are_spaced_by_start_spacing_seconds(cli: Cli, repo: Path) -> None:
    import time

    setup(cli, repo, seconds=0.3, extra="daemon:\n  start_spacing_seconds: 0.6\n")
    issues = [new_issue(cli, repo, f"spaced {i}", owns=f"spaced_{i}/**") for i in range(3)]
    proc = daemon(repo, "--json", "--concurrency", "3", "--interval-seconds", "0.2", "--max-runs", "3")
    assert proc.stdout is not None
    arrivals: list[tuple[float, int]] = []
    seen: list[dict[str, object]] = []
    while len(arrivals) < 3:
        line = proc.stdout.readline()
        assert line, "the daemon ended early"
        seen.append(json.loads(line))
        if seen[-1]["event"] == "run-started":
            arrivals.append((time.monotonic(), int(str(seen[-1]["issue"]))))
    out = proc.stdout.read()  # the rest, with what readline() already buffered (communicate() would skip that)
    assert proc.wait(timeout=120) == 0
    proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    seen += [json.loads(x) for x in out.splitlines()]
    assert sorted(n for _t, n in arrivals) == issues
    gaps = [b - a for (a, _n), (b, _m) in zip(arrivals, arrivals[1:], strict=False)]
    assert all(g >= 0.5 for g in gaps), gaps  # one pass started all three, each 0.6 s after the one before
    assert [e["outcome"] for e in seen if e["event"] == "run-finished"] == ["review"] * 3, seen
