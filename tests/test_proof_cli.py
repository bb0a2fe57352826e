"""`orch proof auto|browser|android|ios`: proof reruns on an issue's candidate, outside the lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from statemachine.adapters.browser import free_port
from tests.conftest import Cli
from tests.fixtures.webapp import kit

HAVE_CHROMIUM = Path("/usr/bin/chromium").is_file()

GOOD = {
    "version": 1,
    "steps": [
        {"action": "goto", "url": "/"},
        {"action": "click", "selector": "#add"},
        {"action": "wait_for_text", "selector": "#count", "text": "Count: 1", "timeout_ms": 3000},
    ],
}


@pytest.fixture
def proved(cli: Cli, tmp_path: Path) -> Path:
    """A run in review whose issue has non-UI criteria only (its proof needed no browser), with proof.app set."""
    repo = kit.make_repo(tmp_path)
    kit.write_policy(repo, "honest")
    kit.file_issue(cli, repo, kit.PLAIN_BODY)
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and data["final_state"] == "review"
    return repo


def _scenario(tmp_path: Path, data: dict, name: str = "scenario.json") -> Path:  # type: ignore[type-arg]
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_proof_auto_reruns_the_proof_without_touching_the_run(cli: Cli, proved: Path) -> None:
    before = kit.run_facts(proved)
    code, data = cli.json("proof", "auto", "--issue", "1", "--repo", proved)
    assert code == 0, data
    fact = data["proof"]
    assert data["state"] == "review" and fact["status"] == "passed"
    assert fact["checked"]["criteria"] == {"wanted": ["ac-1", "ac-2"], "answered": ["ac-1", "ac-2"]}
    assert "/proof-reruns/" in fact["dir"] and Path(fact["dir"], "proof-report.json").is_file()
    after = kit.run_facts(proved)
    assert after["proof"] == before["proof"]  # the lifecycle's fact is not rewritten
    code, out, _err = cli("proof", "auto", "--issue", "1", "--repo", proved)
    assert code == 0 and "proof (auto) of issue #1" in out and "ac-1: passed (high), evidence: cmd-ac-1" in out


def test_proof_auto_exits_5_when_the_proof_fails(cli: Cli, proved: Path) -> None:
    policy = proved / ".orch" / "policy.yaml"
    policy.write_text(policy.read_text().replace('"honest"', '"low-confidence"'))
    code, data = cli.json("proof", "auto", "--issue", "1", "--repo", proved)
    assert code == 5 and data["proof"]["status"] == "blocked"
    assert "less than high confidence" in data["proof"]["error"]


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium")
def test_proof_browser_starts_the_app_and_captures_both_viewports(cli: Cli, proved: Path, tmp_path: Path) -> None:
    code, data = cli.json("proof", "browser", "--issue", "1", "--scenario", _scenario(tmp_path, GOOD), "--repo", proved)
    assert code == 0, json.dumps(data)[-2000:]
    fact = data["proof"]
    assert fact["status"] == "passed" and fact["checked"]["browser"]["ok"]
    shots = {a["viewport"]: a for a in fact["artifacts"] if a["kind"] == "screenshot"}
    assert set(shots) == {"1280x800", "390x844"}
    for vp, a in shots.items():
        assert f"{a['width']}x{a['height']}" == vp and Path(fact["dir"], a["path"]).is_file()
    assert {a["kind"] for a in fact["artifacts"]} >= {"dom-snapshot", "console-log", "network-log", "command-output"}
    assert (
        "Count: 1" in Path(fact["dir"], "browser", "final.dom.html").read_text()
    )  # the candidate's STEP = 1, not the base's


@pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium")
def test_proof_browser_against_a_running_app_exits_5_when_a_step_fails(cli: Cli, proved: Path, tmp_path: Path) -> None:
    port = free_port()
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "server.py").write_text(kit.git(proved, "show", kit.run_facts(proved)["candidate_sha"] + ":server.py"))
    app = subprocess.Popen(
        [sys.executable, "server.py", "--port", str(port)],
        cwd=app_dir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        deadline = time.monotonic() + 15
        while True:  # wait for the app (readiness, not a timing assertion)
            try:
                urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{port}/health", timeout=1
                )
                break
            except OSError:
                assert time.monotonic() < deadline, "the fixture app did not start"
                time.sleep(0.1)
        bad = {
            "steps": [
                {"action": "goto", "url": "/"},
                {"action": "click", "selector": "#add"},
                {"action": "expect_text", "selector": "#count", "text": "Count: 7", "timeout_ms": 500},
            ]
        }
        code, data = cli.json(
            "proof",
            "browser",
            "--issue",
            "1",
            "--scenario",
            _scenario(tmp_path, bad),
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--repo",
            proved,
        )
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(timeout=10)
    assert code == 5
    fact = data["proof"]
    assert fact["status"] == "blocked" and "step 2 (expect_text) failed" in fact["error"]
    steps = fact["checked"]["browser"]["steps"]
    assert [s["ok"] for s in steps] == [True, True, False]
    # the state reached is still captured at both viewports
    assert {a["viewport"] for a in fact["artifacts"] if a["kind"] == "screenshot"} == {"1280x800", "390x844"}


def test_proof_browser_refuses_a_scenario_that_leaves_the_app(cli: Cli, proved: Path, tmp_path: Path) -> None:
    off = {"steps": [{"action": "goto", "url": "/"}, {"action": "goto", "url": "https://example.com/"}]}
    code, data = cli.json("proof", "browser", "--issue", "1", "--scenario", _scenario(tmp_path, off), "--repo", proved)
    assert code == 5
    assert (
        "is not a same-origin URL" in data["proof"]["error"]
        or "write 'https://example.com/' as a path" in data["proof"]["error"]
    )
    assert data["proof"]["checked"].get("browser") is None  # nothing was run


@pytest.mark.parametrize("target", ["android", "ios"])
def test_mobile_targets_are_not_supported_here(cli: Cli, tmp_path: Path, target: str) -> None:
    code, out, err = cli("proof", target, "--issue", "1", "--repo", tmp_path)
    assert code == 1 and out == ""
    assert f"{target} proof is not supported on this machine" in err


def test_proof_needs_a_candidate(cli: Cli, tmp_path: Path) -> None:
    repo = kit.make_repo(tmp_path)
    kit.write_policy(repo, "honest")
    kit.file_issue(cli, repo, kit.PLAIN_BODY)
    code, _out, err = cli("proof", "auto", "--issue", "1", "--repo", repo)
    assert code == 1 and "has no candidate commit to prove" in err
