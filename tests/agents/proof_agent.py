"""A scripted agent for the proof tests, driven by its first argument (the behaviour).

Implementation mode: implements the counter fixture's `increment` (tests/fixtures/webapp/server.py)
by setting STEP = 1; `rework-once` sets STEP = 2 until its prompt carries a proof finding.
Proof mode (ORCH_MODE=proof): proves each criterion honestly (a real command for `increment(..)`
criteria, the runner's browser record for UI criteria), then misbehaves as the behaviour says.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BEHAVIOUR = sys.argv[1] if len(sys.argv) > 1 else "honest"
MODE = os.environ.get("ORCH_MODE", "implement")
root = Path.cwd()
report_path = Path(os.environ["ORCH_REPORT_PATH"])
prompt = Path(os.environ["ORCH_PROMPT_FILE"]).read_text()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def implement() -> None:
    server = root / "server.py"
    step = "2" if BEHAVIOUR == "rework-once" and "proof: " not in prompt else "1"
    server.write_text(re.sub(r"^STEP = \d+$", f"STEP = {step}", server.read_text(), flags=re.M))
    report_path.write_text(
        json.dumps(
            {
                "status": "completed",
                "summary": f"Set STEP = {step} so Add one adds one ({BEHAVIOUR}).",
                "changed_files": ["server.py"],
                "validation": [{"command": "python -c 'import server'", "result": "passed"}],
            }
        )
    )


# proof -----------------------------------------------------------------------------------

proof_dir = Path(os.environ.get("ORCH_PROOF_DIR", "."))
artifacts: list[dict[str, Any]] = []


def artifact(aid: str, kind: str, name: str, text: str, publishable: bool = True) -> Path:
    path = proof_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    artifacts.append({"id": aid, "kind": kind, "path": name, "sha256": sha(path), "publishable": publishable})
    return path


def command_answer(c: dict[str, Any], index: int) -> dict[str, Any]:
    m = re.search(r"increment\((\d+)\)`? returns (\d+)", c["text"])
    if not m:
        return {
            "id": c["id"],
            "status": "blocked",
            "confidence": "low",
            "evidence": [],
            "analysis": "no way to prove this here",
        }
    arg, want = m.groups()
    code = f"from server import increment; print(increment({arg}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=30)
    got = proc.stdout.strip()
    text = f"$ python -c '{code}'\n{proc.stdout}{proc.stderr}exit {proc.returncode}\n"
    if BEHAVIOUR == "credential-in-log" and index == 0:
        text += "debug: using token ghp_" + "Q" * 36 + "\n"
    if BEHAVIOUR == "host-path" and index == 0:
        text += f"ran in {root}\n"
    aid = f"cmd-{c['id']}"
    artifact(aid, "command-output", f"commands/{c['id']}.txt", text)
    ok = got == want
    return {
        "id": c["id"],
        "status": "passed" if ok else "failed",
        "confidence": "high",
        "evidence": [aid],
        "analysis": f"increment({arg}) printed {got!r}; the criterion wants {want}."
        + ("" if ok else f" increment({arg}) returned {got}, expected {want}."),
    }


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    return struct.unpack(">II", head[16:24])


def ui_answer(c: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    if not record or not record.get("ran"):
        why = (record or {}).get("error", "the runner captured nothing")
        return {
            "id": c["id"],
            "status": "blocked",
            "confidence": "low",
            "evidence": [],
            "ui": True,
            "analysis": f"no browser evidence: {why}",
        }
    shots = {a["viewport"]: a for a in record["artifacts"] if a["kind"] == "screenshot" and a.get("name") == "final"}
    # "look" at the screenshots: they exist at the size the record says
    for vp, a in shots.items():
        assert "x".join(map(str, png_size(proof_dir / a["path"]))) == vp, (vp, a)
    dom = (proof_dir / next(a["path"] for a in record["artifacts"] if a["id"] == "browser-dom")).read_text()
    if not record["ok"]:
        return {
            "id": c["id"],
            "status": "failed",
            "confidence": "high",
            "evidence": ["browser-steps", "browser-dom"],
            "ui": True,
            "analysis": f"the runner's browser run failed: {record['error']}",
        }
    ids = [shots[vp]["id"] for vp in ("1280x800", "390x844")]
    evidence = ids if BEHAVIOUR == "screenshot-only" else ids + ["browser-steps", "browser-dom"]
    shown = "Count: 1" in dom and "Hello, Ada!" in dom
    return {
        "id": c["id"],
        "status": "passed" if shown else "failed",
        "confidence": "high",
        "evidence": evidence,
        "ui": True,
        "analysis": "After clicking Add one the runner saw 'Count: 1', and after typing Ada and Enter 'Hello, Ada!'; "
        "both are in the final DOM snapshot and on the screenshots at both viewports.",
        "ui_evidence": {
            "workflow": {
                "entry_url": "/",
                "steps": ["open /", "click Add one", "type Ada in Your name and press Enter"],
                "final_state": "The count reads 1 and the page says Hello, Ada!",
            },
            "viewports": [{"viewport": vp, "artifact": shots[vp]["id"]} for vp in ("1280x800", "390x844")],
            "layout_review": {
                "screenshots": ids,
                "notes": "The card is centred on desktop and fills the width on mobile; "
                "the button and field do not overlap.",
            },
            "copy_review": {
                "screenshots": ids[:1],
                "notes": "Button reads 'Add one', the label 'Your name', greeting 'Hello, Ada!'.",
            },
            "sources": ["server.py", "scenario.json", "the issue's acceptance criteria"],
        },
    }


def scenario() -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"action": "goto", "url": "/"}]
    if BEHAVIOUR != "screenshot-only":
        steps.append({"action": "expect_text", "selector": "#count", "text": "Count: 0"})
    steps.append({"action": "click", "selector": "#add"})
    if BEHAVIOUR != "screenshot-only":
        steps.append({"action": "wait_for_text", "selector": "#count", "text": "Count: 1", "timeout_ms": 3000})
    steps += [
        {"action": "screenshot", "name": "after-click"},
        {"action": "fill", "selector": "#name", "value": "Ada"},
        {"action": "press", "selector": "#name", "key": "Enter"},
    ]
    if BEHAVIOUR != "screenshot-only":
        steps.append({"action": "expect_text", "selector": "#greeting", "text": "Hello, Ada!"})
    return {"version": 1, "steps": steps}


def prove() -> None:
    phase = os.environ["ORCH_PROOF_PHASE"]
    criteria = json.loads(os.environ["ORCH_PROOF_CRITERIA"])
    if phase == "scenario" and any(c["ui"] for c in criteria):
        (proof_dir / "scenario.json").write_text(json.dumps(scenario(), indent=1))
        return
    record_file = os.environ.get("ORCH_PROOF_BROWSER_RESULT")
    record = json.loads(Path(record_file).read_text()) if record_file else None
    answers = [ui_answer(c, record) if c["ui"] else command_answer(c, i) for i, c in enumerate(criteria)]
    if BEHAVIOUR == "edits-product":
        (root / "server.py").write_text((root / "server.py").read_text() + "\n# the proof was here\n")
    if BEHAVIOUR == "missing-criterion":
        answers = answers[:-1]
    if BEHAVIOUR == "low-confidence":
        answers[-1]["confidence"] = "medium"
    first = proof_dir / artifacts[0]["path"] if artifacts else None
    if BEHAVIOUR == "stale-artifact" and first:
        old = time.time() - 3600
        os.utime(first, (old, old))
    if BEHAVIOUR == "hash-mismatch" and first:
        first.write_text(first.read_text() + "edited after hashing\n")
    if BEHAVIOUR == "symlink-artifact" and first:
        outside = Path(tempfile.mkdtemp(prefix="proof-agent-")) / first.name
        outside.write_bytes(first.read_bytes())
        first.unlink()
        first.symlink_to(outside)
    failed = [a for a in answers if a["status"] != "passed"]
    status = "passed" if not failed else ("needs-rework" if all(a["status"] == "failed" for a in failed) else "blocked")
    report: dict[str, Any] = {
        "status": status,
        "summary": f"scripted proof ({BEHAVIOUR})",
        "criteria": answers,
        "artifacts": artifacts,
    }
    if failed:
        report["findings"] = [f"{a['id']}: {a['analysis']}" for a in failed]
    if BEHAVIOUR == "malformed":
        for a in report["criteria"]:
            del a["confidence"]
    report_path.write_text(json.dumps(report, indent=1))


if MODE == "proof":
    prove()
elif MODE == "implement":
    implement()
else:
    raise SystemExit(f"proof_agent: unexpected mode {MODE}")
