"""The proof's pure parts: scenario validation, artifact checks, the UI contract, publication files, policy keys."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from statemachine import proof
from statemachine.adapters import browser
from statemachine.proof import proof_branch_files
from tests.conftest import Cli
from tests.fixtures.webapp.kit import png_bytes

BASE = "http://127.0.0.1:8123"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# scenarios ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("/", True),
        ("/counter?x=1", True),
        ("counter", True),
        (f"{BASE}/x", True),
        ("https://example.com/", False),
        ("//example.com/x", False),
        ("http://127.0.0.1:9999/", False),
        ("javascript:alert(1)", False),
        ("file:///etc/passwd", False),
        ("http://localhost:8123/", False),
    ],
)
def test_scenario_urls_must_stay_on_the_apps_origin(url: str, ok: bool) -> None:
    reasons = browser.validate_scenario(
        {"steps": [{"action": "goto", "url": "/"}, {"action": "goto", "url": url}]}, BASE
    )
    assert (reasons == []) is ok, reasons


def test_scenario_schema_and_names() -> None:
    assert "at steps/0" in browser.validate_scenario({"steps": [{"action": "click", "selector": "#a"}]}, BASE)[0]
    assert browser.validate_scenario(
        {"steps": [{"action": "goto", "url": "/"}, {"action": "hover", "selector": "a"}]}, BASE
    )
    shots = {"steps": [{"action": "goto", "url": "/"}, {"action": "screenshot", "name": "final"}]}
    assert "reserved or used twice" in browser.validate_scenario(shots, BASE)[0]
    # before the runner picks the port only paths are accepted
    assert "as a path" in browser.validate_scenario({"steps": [{"action": "goto", "url": f"{BASE}/"}]}, None)[0]


# artifacts ---------------------------------------------------------------------------------


def _artifact(folder: Path, name: str, data: bytes = b"hello\n", **extra: object) -> dict:  # type: ignore[type-arg]
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {
        "id": name.replace("/", "-"),
        "kind": "command-output",
        "path": name,
        "sha256": _sha(data),
        "publishable": True,
        **extra,
    }


def test_artifact_checks(tmp_path: Path) -> None:
    folder = tmp_path / "proof"
    folder.mkdir()
    started = proof._fresh_dir(folder)
    good = _artifact(folder, "out/good.txt")
    _detail, reasons = proof.inspect_artifact(folder, good, started)
    assert reasons == []
    for path, why in (
        ("../escape.txt", "outside the proof folder"),
        ("/etc/hostname", "outside the proof folder"),
        ("nope.txt", "is missing"),
    ):
        assert why in proof.inspect_artifact(folder, {**good, "path": path}, started)[1][0]
    (folder / "linkdir").symlink_to(folder / "out")
    assert "linkdir is a symlink" in proof.inspect_artifact(folder, {**good, "path": "linkdir/good.txt"}, started)[1][0]
    (folder / "sub").mkdir()
    assert "not a regular file" in proof.inspect_artifact(folder, {**good, "path": "sub"}, started)[1][0]
    assert "hash mismatch" in proof.inspect_artifact(folder, {**good, "sha256": "0" * 64}, started)[1][0]
    old = time.time() - 60
    os.utime(folder / "out" / "good.txt", (old, old))
    assert "stale" in proof.inspect_artifact(folder, good, started)[1][0]


def test_runner_ids_and_folder_belong_to_the_runner() -> None:
    runner = [
        {
            "id": "browser-dom",
            "kind": "dom-snapshot",
            "path": "browser/final.dom.html",
            "sha256": "a" * 64,
            "publishable": False,
        }
    ]
    agent = [
        {"id": "browser-dom", "kind": "generated-file", "path": "x", "sha256": "b" * 64, "publishable": False},
        {"id": "mine", "kind": "generated-file", "path": "browser/fake.png", "sha256": "b" * 64, "publishable": False},
        {"id": "ok", "kind": "generated-file", "path": "ok.txt", "sha256": "b" * 64, "publishable": False},
        {"id": "ok", "kind": "generated-file", "path": "ok2.txt", "sha256": "b" * 64, "publishable": False},
    ]
    merged, reasons = proof.merge_artifacts(agent, runner)
    assert [a["id"] for a in merged] == ["ok", "browser-dom"] and merged[1]["path"] == "browser/final.dom.html"
    assert (
        len(reasons) == 3
        and "reserved" in reasons[0]
        and "only the runner writes" in reasons[1]
        and "twice" in reasons[2]
    )


def test_secrets_and_host_paths(tmp_path: Path) -> None:
    folder = tmp_path / "proof"
    token = "xoxb-" + "1234567890-abcdefghij"
    arts = [
        _artifact(folder, "a.txt", b"all fine, see http://host/tmp/x and ~/tmp/y\n"),
        _artifact(folder, "b.txt", f"Slack: {token}\n".encode(), publishable=False),
        _artifact(folder, "c.txt", b"cwd=/home/alice/src\n"),
        _artifact(folder, "d.txt", f"{tmp_path}/repo/server.py\n".encode()),
        _artifact(folder, "e.bin", b"\x89PNG\0\0/root/x"),
    ]
    scanned, reasons = proof.check_secrets(folder, arts, {})
    assert reasons == ["credential (slack-token) in artifact b.txt, line 1"] and token not in " ".join(reasons)
    assert "artifact e.bin" not in scanned  # binary
    scanned, reasons = proof.check_host_paths(folder, arts, proof.host_paths(tmp_path / "repo"))
    assert scanned == ["a.txt", "c.txt", "d.txt"]  # b is not publishable, e is binary
    assert [r.split(" in publishable artifact ")[1].split(",")[0] for r in reasons] == ["c.txt", "d.txt"]
    assert "(/home/)" in reasons[0] and "(a path of this checkout)" in reasons[1]


# the report --------------------------------------------------------------------------------


def _report(**overrides: object) -> dict:  # type: ignore[type-arg]
    crit = {"id": "ac-1", "status": "passed", "confidence": "high", "evidence": ["x"], "analysis": "ok"}
    return {"status": "passed", "criteria": [crit], "artifacts": [], **overrides}


def test_answers_status_and_judgement() -> None:
    wanted = [{"id": "ac-1", "text": "a", "ui": False}, {"id": "ac-2", "text": "b", "ui": False}]
    report = _report()
    assert proof.check_answers(wanted, report) == ["criteria without an answer: ac-2"]
    assert "answers for criteria the issue does not have: ac-1" in proof.check_answers([], report)
    assert proof.check_status(_report(criteria=[{**report["criteria"][0], "confidence": "low"}])) == [
        "passed with less than high confidence on: ac-1 (low)"
    ]
    assert (
        "ac-1 is passed without evidence"
        in proof.check_status(_report(criteria=[{**report["criteria"][0], "evidence": []}]))[0]
    )
    assert (
        "not every criterion passed"
        in proof.check_status(_report(criteria=[{**report["criteria"][0], "status": "failed"}]))[0]
    )
    runs = [{"phase": "report", "exit_code": 0}]
    rework = _report(
        status="needs-rework",
        findings=["fix x"],
        criteria=[{**report["criteria"][0], "status": "failed", "analysis": "x is 2"}],
    )
    assert proof.judge(report=rework, report_reasons=[], runs=runs, runner_reasons=[]) == {
        "status": "needs-rework",
        "error": None,
        "findings": ["fix x", "ac-1 failed: x is 2"],
    }
    blocked = proof.judge(report=rework, report_reasons=[], runs=runs, runner_reasons=["a", "b"])
    assert blocked["status"] == "blocked" and blocked["error"] == "a (and 1 more)"
    crashed = proof.judge(
        report=report, report_reasons=[], runs=[{"phase": "scenario", "exit_code": 2}], runner_reasons=[]
    )
    assert crashed["error"] == "the proof run (scenario phase) exited with 2"
    assert (
        proof.judge(
            report=_report(status="blocked", findings=["no app"]), report_reasons=[], runs=runs, runner_reasons=[]
        )["error"]
        == "the proof agent reports blocked: no app"
    )


def test_ui_criteria_are_recognised() -> None:
    crits = proof.criteria_for(
        "x\n\n## Acceptance criteria\n- The settings page lists keys\n- A Save button\n"
        "- Works on small screens\n- The UI shows errors\n- `f(1)` returns 2\n- builds quietly (no uiautomation)\n"
    )
    assert [c["ui"] for c in crits] == [True, True, True, True, False, False]


def _ui_answer(**ui: object) -> dict:  # type: ignore[type-arg]
    evidence = {
        "workflow": {"entry_url": "/", "steps": ["open"], "final_state": "shown"},
        "viewports": [
            {"viewport": "1280x800", "artifact": "browser-final-desktop"},
            {"viewport": "390x844", "artifact": "browser-final-mobile"},
        ],
        "layout_review": {"screenshots": ["browser-final-desktop", "browser-final-mobile"], "notes": "fine"},
        "copy_review": {"screenshots": ["browser-final-desktop"], "notes": "fine"},
        "sources": ["app.py"],
        **ui,
    }
    return {
        "id": "ac-1",
        "status": "passed",
        "confidence": "high",
        "analysis": "ok",
        "ui": True,
        "ui_evidence": evidence,
        "evidence": ["browser-final-desktop", "browser-final-mobile", "browser-steps"],
    }


def _record(after_step: int = 3, mtime: int = 2_000, last_step: int = 3) -> dict:  # type: ignore[type-arg]
    shots = [
        {
            "id": f"browser-final-{n}",
            "kind": "screenshot",
            "source": "runner",
            "viewport": f"{w}x{h}",
            "width": w,
            "height": h,
            "after_step": after_step,
            "mtime_ns": mtime,
            "name": "final",
            "path": f"browser/final-{n}.png",
        }
        for n, w, h in browser.VIEWPORTS
    ]
    steps = {"id": "browser-steps", "kind": "generated-file", "source": "runner", "path": "browser/steps.json"}
    return {
        "ran": True,
        "ok": True,
        "base_url": BASE,
        "last_interaction_step": last_step,
        "last_interaction_ns": 1_000,
        "text_assertions": 1,
        "artifacts": [*shots, steps],
    }


def test_ui_evidence_contract() -> None:
    scenario = {"steps": [{"action": "goto", "url": "/"}]}
    rec = _record()
    assert proof.check_ui(_ui_answer(), rec, rec["artifacts"], 500, scenario)[1] == []
    stale = _record(after_step=1)
    assert (
        "not fresh: it was captured before the final interaction"
        in proof.check_ui(_ui_answer(), stale, stale["artifacts"], 500, scenario)[1][0]
    )
    assert (
        "older than the candidate commit" in proof.check_ui(_ui_answer(), rec, rec["artifacts"], 5_000, scenario)[1][0]
    )
    one = _ui_answer(
        viewports=[
            {"viewport": "1280x800", "artifact": "browser-final-desktop"},
            {"viewport": "390x844", "artifact": "browser-final-desktop"},
        ]
    )
    assert any(
        "no fresh final-state screenshot at 390x844" in r
        for r in proof.check_ui(one, rec, rec["artifacts"], 500, scenario)[1]
    )
    elsewhere = _ui_answer(workflow={"entry_url": "/admin", "steps": ["x"], "final_state": "y"})
    assert "not the scenario's first goto" in proof.check_ui(elsewhere, rec, rec["artifacts"], 500, scenario)[1][0]
    layout = _ui_answer(layout_review={"screenshots": ["browser-final-desktop"], "notes": "x"})
    assert "must look at every viewport" in proof.check_ui(layout, rec, rec["artifacts"], 500, scenario)[1][0]
    alone = {**_ui_answer(), "evidence": ["browser-final-desktop", "browser-final-mobile"]}
    assert "rests on screenshots alone" in proof.check_ui(alone, rec, rec["artifacts"], 500, scenario)[1][0]
    no_contract = {k: v for k, v in _ui_answer().items() if k != "ui_evidence"}
    assert "needs ui_evidence" in proof.check_ui(no_contract, rec, rec["artifacts"], 500, scenario)[1][0]
    assert "captured no browser evidence" in proof.check_ui(_ui_answer(), None, rec["artifacts"], 500, scenario)[1][0]


# publication -------------------------------------------------------------------------------


def test_proof_branch_files_publish_only_checked_publishable_screenshots(tmp_path: Path) -> None:
    folder = tmp_path / "proof"
    (folder / "browser").mkdir(parents=True)
    arts = []
    for name, publishable, tamper in (
        ("final-desktop.png", True, False),
        ("final-mobile.png", True, True),
        ("secret-mobile.png", False, False),
    ):
        data = png_bytes(*((390, 844) if "mobile" in name else (1280, 800))) + name.encode()  # a real PNG header
        (folder / "browser" / name).write_bytes(data)
        arts.append(
            {
                "id": f"browser-{name[:-4]}",
                "kind": "screenshot",
                "path": f"browser/{name}",
                "sha256": _sha(data),
                "publishable": publishable,
                "viewport": "390x844" if "mobile" in name else "1280x800",
            }
        )
        if tamper:
            (folder / "browser" / name).write_bytes(b"changed")
    arts.append({"id": "cmd", "kind": "command-output", "path": "cmd.txt", "sha256": "0" * 64, "publishable": True})
    fact = {"dir": str(folder), "artifacts": arts}
    out = proof_branch_files(fact, owner="acme", repo="web app", run_id="7-abc")
    assert out.branch == "orch-proof/7-abc"
    assert out.files == {"proof/7-abc/final-desktop.png": folder / "browser" / "final-desktop.png"}
    assert out.markdown == [
        "![browser-final-desktop (1280x800)](https://github.com/acme/web%20app/raw/orch-proof/7-abc/proof/7-abc/final-desktop.png)"
    ]
    assert out.skipped == ["browser-final-mobile: the file is missing or no longer matches its sha256"]


def test_pull_section_only_when_proved() -> None:
    assert proof.pull_section({}) == []
    lines = proof.pull_section(
        {
            "proof": {
                "status": "passed",
                "dir_rel": ".orch/runs/R/attempt-1/proof",
                "checked": {},
                "criteria": [
                    {
                        "id": "ac-1",
                        "status": "passed",
                        "confidence": "high",
                        "evidence": ["e"],
                        "analysis": "works\nmore",
                    }
                ],
                "artifacts": [
                    {
                        "id": "s",
                        "kind": "screenshot",
                        "publishable": True,
                        "path": "browser/s.png",
                        "sha256": "f" * 64,
                        "viewport": "390x844",
                    }
                ],
            }
        }
    )
    text = "\n".join(lines)
    assert "## Proof" in text and "- `ac-1` passed (high confidence): works Evidence: `e`." in text
    assert "`.orch/runs/R/attempt-1/proof/browser/s.png`" in text


# policy ------------------------------------------------------------------------------------


def test_policy_proof_app_keys(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "version: 1\nextends: default\nproof:\n  when_acceptance_criteria: true\n  app:\n"
        '    command: "python app.py --port {port}"\n    url: "http://127.0.0.1:{port}"\n'
        "    ready: {path: /health, status: 204}\n    timeout_seconds: 10\n"
    )
    code, out, err = cli("lint", good, "--repo", tmp_path)
    assert code == 0, out + err
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nextends: default\nproof:\n  app:\n    command: run\n    url: ftp://x\n    ready: {path: health}\n"
    )
    code, out, err = cli("lint", bad, "--repo", tmp_path)
    assert code == 3 and "proof.app.url" in out + err and "proof.app.ready.path" in out + err
    spec = browser.app_spec({"proof": {"app": {"command": "c", "url": "http://h:{port}"}}})
    assert spec == browser.AppSpec(
        command="c", url="http://h:{port}", ready_path="/", ready_status=200, timeout_seconds=30.0
    )
    assert browser.app_spec({"proof": {}}) is None
