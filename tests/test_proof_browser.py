"""Browser proof end to end: real `orch run`, real scripted agent, real app, real Chromium (Debian's, never downloaded)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.fixtures.webapp import kit

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").is_file(), reason="needs Debian's chromium (apt-get install chromium)"
)


def _guard(step: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(g for ev in step["evaluations"] for g in ev["guards"] if g["guard"] == name)


def test_ui_issue_reaches_review_with_runner_screenshots_at_both_viewports(cli: Cli, tmp_path: Path) -> None:
    repo = kit.make_repo(tmp_path)
    kit.write_policy(repo, "honest")
    kit.file_issue(cli, repo, kit.UI_BODY)
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 0 and data["final_state"] == "review", json.dumps(data)[-3000:]
    assert [s["fired"]["trigger"] for s in data["steps"]] == ["claim", "start", "prove", "gate", "approve"]
    assert _guard(data["steps"][-2], "proof_passed")["verdict"]["ok"]

    proof = kit.run_facts(repo)["proof"]
    assert proof["status"] == "passed" and proof["error"] is None
    assert [c["id"] for c in proof["criteria"]] == ["ac-1", "ac-2", "ac-3"]
    assert [c["ui"] for c in proof["criteria"]] == [True, True, False]
    checked = proof["checked"]
    assert checked["product"]["unchanged"] and checked["schema"] == "valid"
    assert all(a["ok"] for a in checked["artifacts"]) and len(checked["artifacts"]) == len(proof["artifacts"])
    assert checked["ui"]["ac-1"]["ok"] and checked["ui"]["ac-1"]["viewports"] == {
        "1280x800": "browser-final-desktop",
        "390x844": "browser-final-mobile",
    }
    browser = checked["browser"]
    assert browser["ok"] and all(s["ok"] for s in browser["steps"])
    assert [s["action"] for s in browser["steps"]][:4] == ["goto", "expect_text", "click", "wait_for_text"]
    assert browser["text_assertions"] == 3 and browser["console_errors"] == 0

    # the runner's own screenshots, at both viewports, hashed into its artifact list
    folder = Path(proof["dir"])
    shots = {a["id"]: a for a in proof["artifacts"] if a["kind"] == "screenshot"}
    assert {
        "browser-final-desktop",
        "browser-final-mobile",
        "browser-after-click-desktop",
        "browser-after-click-mobile",
    } <= set(shots)
    assert all(a["source"] == "runner" and a["publishable"] for a in shots.values())
    desktop, mobile = shots["browser-final-desktop"], shots["browser-final-mobile"]
    assert (desktop["viewport"], desktop["width"], desktop["height"]) == ("1280x800", 1280, 800)
    width, height, rows = kit.decode_png(folder / mobile["path"])
    assert (width, height) == (390, 844)
    pixels = {row[i : i + 3] for row in rows[::4] for i in range(0, len(row), 3 * 4)}
    assert len(pixels) > 8, "the mobile screenshot is blank"
    assert any(sum(p) < 150 for p in pixels), "no dark (text) pixel on the mobile screenshot"
    assert (folder / desktop["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = (folder / "browser" / "final.dom.html").read_text()
    assert "Count: 1" in dom and "Hello, Ada!" in dom

    # the app's process group is gone once the runner is done with it
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(browser["base_url"] + "/health", timeout=2)

    # the pull request carries the proof and lists the screenshots kept with the run's evidence
    body = kit.pulls(repo)[0].body
    assert "## Proof" in body and "Status: **passed**" in body and "product unchanged" in body
    for shot in (desktop, mobile):
        listed = f"{proof['dir_rel']}/{shot['path']}"
        assert listed in body and (repo / listed).is_file()
    assert "`ac-3` passed (high confidence)" in body


def test_screenshot_only_ui_proof_is_blocked(cli: Cli, tmp_path: Path) -> None:
    repo = kit.make_repo(tmp_path)
    kit.write_policy(repo, "screenshot-only")
    kit.file_issue(cli, repo, kit.UI_BODY)
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert code == 5 and data["final_state"] == "blocked"
    last = data["steps"][-1]
    assert last["source"] == "proving" and last["fired"]["trigger"] == "block"
    verdict = _guard(last, "proof_passed")["verdict"]
    assert not verdict["ok"] and "ac-1 rests on screenshots alone" in verdict["reason"]
    proof = kit.run_facts(repo)["proof"]
    assert proof["status"] == "blocked"
    assert any("asserts no text" in f for f in proof["findings"])
    # the runner did capture both viewports; the agent's report claimed a pass on them alone
    assert proof["checked"]["browser"]["ok"]
    assert {a["id"] for a in proof["artifacts"]} >= {"browser-final-desktop", "browser-final-mobile"}
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    assert "agent:blocked" in issue["labels"]
    assert "screenshots alone" in " ".join(c["body"] for c in issue["comments"])
