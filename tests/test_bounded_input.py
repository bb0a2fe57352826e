"""Bounded input from a hostile agent: every file the runner reads from the agent's side has a size cap with a reason,
an artifact's bytes must match its declared kind, and the changed-bytes gate (on by default) blocks large changes.

Real git repositories, real `orch run` invocations and real agent processes; oversized files are written sparse, so
a "200 MiB" report costs no disk and no time, and only a runner that read it would notice its size the hard way.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from statemachine import images, limits, proof
from statemachine.adapters import browser
from statemachine.adapters.git import CliGit
from statemachine.gates import within_byte_limits
from statemachine.model import Issue, Snapshot
from statemachine.record import RunRecord
from statemachine.reports import load_report
from tests.agentkit import comments_of_kind, make_agent, write_policy
from tests.conftest import git
from tests.fixtures.webapp.kit import decode_png, png_bytes, pulls, run_facts

MiB = 1024 * 1024

ADD_SUB = """
write("app.py", (WT / "app.py").read_text() + "\\n\\ndef sub(a, b):\\n    return a - b\\n")
"""


def _run(cli: Any, repo: Path, body: str = "Add sub.") -> tuple[int, dict[str, Any]]:
    body_file = repo.parent / "issue.md"
    body_file.write_text(body)
    code, _out, err = cli("issue", "new", "Add sub", "--body-file", body_file, "--label", "agent:auto", "--repo", repo)
    assert code == 0, err
    run_code, data = cli.json("run", "--issue", "1", "--repo", repo)
    return int(run_code), dict(data)


def _verdicts(step: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every guard verdict of the step's evaluations, by guard (a failed verdict wins over a passed one)."""
    out: dict[str, dict[str, Any]] = {}
    for ev in step["evaluations"]:
        for g in ev["guards"]:
            if g["guard"] not in out or not g["verdict"]["ok"]:
                out[g["guard"]] = g["verdict"]
    return out


def _blocked_at_implementing(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert data["final_state"] == "blocked", json.dumps(data)[-3000:]
    assert [s["fired"]["trigger"] for s in data["steps"]] == ["claim", "start", "block"]
    assert data["steps"][-1]["source"] == "implementing"
    return _verdicts(data["steps"][-1])


# reports ---------------------------------------------------------------------------------


def test_an_oversized_completion_report_ends_the_attempt_unread(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        ADD_SUB
        + """
with open(REPORT, "wb") as fh:  # 200 MiB, sparse: valid JSON's start and then zeros
    fh.write(b'{"status": "completed", "summary": "')
    fh.truncate(200 * 1024 * 1024)
""",
    )
    write_policy(repo, agent)
    code, data = _run(cli, repo)
    assert code == 5
    verdicts = _blocked_at_implementing(data)
    reason = "the completion report is 209,715,200 bytes; the cap is 1 MiB (reports are short JSON)"
    assert verdicts["report_valid"] == {"ok": False, "reason": reason, "evidence": []}
    assert run_facts(repo)["report_error"] == reason
    blocked = comments_of_kind(repo, 1, "report-blocked")
    assert len(blocked) == 1 and reason in blocked[0]


@pytest.mark.parametrize(
    ("schema", "noun"),
    [
        ("completion-report", "completion report"),
        ("review-report", "review report"),
        ("proof-report", "proof report"),
        ("plan-report", "plan report"),
    ],
)
def test_every_report_is_size_checked_before_it_is_parsed(tmp_path: Path, schema: str, noun: str) -> None:
    path = tmp_path / "report.json"
    with open(path, "wb") as fh:
        fh.write(b"[" * 1000)  # would nest too deeply for the parser, if it were ever read
        fh.truncate(limits.REPORT.bytes + 1)
    assert load_report(path, schema) == (
        None,
        f"the {noun} is 1,048,577 bytes; the cap is 1 MiB (reports are short JSON)",
    )
    path.write_text("[" * 100_000)  # under the cap, but nested beyond the parser's recursion limit
    data, error = load_report(path, schema)
    assert data is None and error is not None and "nests too deeply" in error


def test_a_huge_scenario_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    with open(path, "wb") as fh:
        fh.truncate(5 * MiB)
    scenario, reasons = browser.load_scenario(path)
    assert scenario is None
    assert reasons == [
        "the scenario scenario.json is 5,242,880 bytes; the cap is 256 KiB (a browser scenario is a short list of steps)"
    ]


def test_bounded_readers(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.log"
    with open(sparse, "wb") as fh:
        fh.seek(300 * MiB)
        fh.write(b"the end\n")
    tail = limits.read_tail(sparse, limits.FINDING_LOG_TAIL)
    assert len(tail) == limits.FINDING_LOG_TAIL.bytes and tail.endswith("the end\n")
    with pytest.raises(limits.TooLarge) as too_large:
        limits.read_capped(sparse, limits.REPORT)
    assert too_large.value.size == 300 * MiB + 8
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(limits.NotRegular):  # opened without blocking, refused without reading
        limits.read_capped(fifo, limits.REPORT)
    assert limits.read_tail(fifo, limits.FINDING_LOG_TAIL) == ""
    link = tmp_path / "link"
    link.symlink_to(sparse)
    with pytest.raises(limits.NotRegular):
        limits.read_capped(link, limits.REPORT)
    small = tmp_path / "small.json"
    small.write_bytes(b"{}")
    assert limits.read_capped(small, limits.REPORT) == b"{}"
    assert [limits.human(n) for n in (1, 512, 1024, MiB, MiB + 1, 60 * MiB, 62_914_561)] == [
        "1 byte",
        "512 bytes",
        "1 KiB",
        "1 MiB",
        "1.0 MiB",
        "60 MiB",
        "60.0 MiB",
    ]


def test_a_failed_checks_huge_output_reaches_the_findings_only_as_its_tail(
    cli: Any, repo: Path, tmp_path: Path
) -> None:
    agent = make_agent(tmp_path, ADD_SUB + 'report(["app.py"])\n')
    flood = "import sys; sys.stdout.write('y' * 5000000 + '\\nLAST-LINE of the check\\n'); sys.exit(1)"
    write_policy(
        repo, agent, checks={"flood": {"command": f'{sys.executable} -c "{flood}"'}}, limits={"rework_iterations": 1}
    )
    code, data = _run(cli, repo)
    assert code == 5 and data["final_state"] == "blocked"
    assert [s["fired"]["trigger"] for s in data["steps"]] == [
        "claim",
        "start",
        "gate",
        "rework",
        "retry",
        "gate",
        "block",
    ]
    assert agent.runs == 2
    second = agent.prompt(2)
    assert "check 'flood'" in second and "exited 1" in second and "LAST-LINE of the check" in second
    assert second.count("y") < limits.FINDING_LOG_TAIL.bytes + 1000  # the tail, not the 5 MB


# the changed-bytes gate ------------------------------------------------------------------


def test_a_60_mib_binary_file_blocks_by_default(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        ADD_SUB
        + """
with open(WT / "blob.bin", "wb") as fh:  # 60 MiB, sparse: a NUL byte first, so binary by git's rule
    fh.write(b"\\0BLOB")
    fh.truncate(60 * 1024 * 1024)
report(["app.py", "blob.bin"])
""",
    )
    write_policy(repo, agent)
    code, data = _run(cli, repo)
    assert code == 5
    verdict = _blocked_at_implementing(data)["within_byte_limits"]
    reason = "blob.bin is a 60 MiB binary file (62,914,560 bytes); gates.max_binary_file_bytes is 1 MiB"
    app = len((repo / "app.py").read_bytes()) + len("\n\ndef sub(a, b):\n    return a - b\n")
    total = (
        f"the change adds or changes 60.0 MiB ({62_914_560 + app:,} bytes) in 2 file(s); gates.max_changed_bytes is "
        f"10 MiB (largest: blob.bin (60 MiB), app.py ({app} bytes))"
    )  # over the default total too
    assert verdict == {"ok": False, "reason": reason + " (and 1 more)", "evidence": [reason, total]}
    assert reason in comments_of_kind(repo, 1, "report-blocked")[0]
    measured = run_facts(repo)["changed_bytes"]  # the runner's own measure of its capture
    assert measured["binaries"] == [{"path": "blob.bin", "size": 62_914_560, "binary": True}]
    assert pulls(repo) == []


@pytest.mark.parametrize(
    ("size", "gates", "final"),
    [
        (MiB + 1, {}, "blocked"),  # the default cap, one byte over
        (MiB, {}, "review"),  # exactly the cap
        (MiB + 1, {"max_binary_file_bytes": None}, "review"),  # null removes the limit
        (100, {"max_binary_file_bytes": 0}, "blocked"),  # 0: no binary content at all
    ],
)
def test_the_default_binary_cap_at_its_edge(
    cli: Any, repo: Path, tmp_path: Path, size: int, gates: dict[str, Any], final: str
) -> None:
    agent = make_agent(
        tmp_path,
        ADD_SUB
        + f"""
(WT / "big.bin").write_bytes(b"\\0" + os.urandom({size} - 1))
report(["app.py", "big.bin"])
""",
    )
    write_policy(repo, agent, gates=gates)
    code, data = _run(cli, repo)
    assert data["final_state"] == final, json.dumps(data)[-3000:]
    if final == "review":
        assert code == 0
        approve = {g["guard"]: g["verdict"] for g in data["steps"][-1]["fired"]["guards"]}
        assert approve["within_byte_limits"]["ok"]
        passed = {g["guard"]: g["verdict"] for g in data["steps"][2]["fired"]["guards"]}[
            "within_byte_limits"
        ]  # and before
        assert passed["ok"] and "2 added or changed file(s)" in passed["reason"]
        return
    verdict = _blocked_at_implementing(data)["within_byte_limits"]
    cap = "1 MiB" if not gates else "0 bytes"
    sized = f"1.0 MiB binary file ({size:,} bytes)" if size > 1024 else f"{size}-byte binary file"
    assert verdict["reason"] == f"big.bin is a {sized}; gates.max_binary_file_bytes is {cap}"


def test_total_changed_bytes_block_with_the_largest_files_named(cli: Any, repo: Path, tmp_path: Path) -> None:
    agent = make_agent(
        tmp_path,
        ADD_SUB
        + """
line = "all text, no NUL byte in here\\n"  # 30 bytes
write("data-a.txt", line * 52429)     # 1.5 MiB
write("data-b.txt", line * 34953)     # 1 MiB
report(["app.py", "data-a.txt", "data-b.txt"])
""",
    )
    write_policy(repo, agent, gates={"max_changed_bytes": 2 * MiB})
    code, data = _run(cli, repo)
    assert code == 5
    verdict = _blocked_at_implementing(data)["within_byte_limits"]
    app = len((repo / "app.py").read_bytes()) + len("\n\ndef sub(a, b):\n    return a - b\n")
    total = 52429 * 30 + 34953 * 30 + app
    assert verdict["reason"] == (
        f"the change adds or changes 2.5 MiB ({total:,} bytes) in 3 file(s); gates.max_changed_bytes is "
        f"2 MiB (largest: data-a.txt (1.5 MiB), data-b.txt (1.0 MiB), app.py ({app} bytes))"
    )
    assert run_facts(repo)["changed_bytes"]["binary_count"] == 0  # text files: only the total limits them


def test_sizes_are_measured_in_the_captured_tree(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "blob.bin").write_bytes(b"\0" * 5000)
    (repo / "notes.md").write_text("hello\n")
    (repo / "app.py").write_text("def add(a, b):\n    return b + a\n")
    (repo / "test_app.py").unlink()  # a deletion adds no bytes
    (repo / "link").symlink_to("app.py")
    git(repo, "add", "-A")
    tree = git(repo, "write-tree").strip()
    sizes = sorted(limits.changed_sizes(CliGit(repo), base, tree), key=lambda f: f["path"])
    assert sizes == [
        {"path": "app.py", "size": 32, "binary": False},
        {"path": "blob.bin", "size": 5000, "binary": True},
        {"path": "link", "size": 6, "binary": False},
        {"path": "notes.md", "size": 6, "binary": False},
    ]
    summary = limits.size_summary(sizes, keep=2)
    assert summary["total"] == 5044 and summary["count"] == 4 and summary["binary_count"] == 1
    assert [f["path"] for f in summary["largest"]] == ["blob.bin", "app.py"]


def _snap(gates: dict[str, Any], sizes: list[dict[str, Any]] | None) -> Snapshot:
    issue = Issue(number=1, title="t", body="", state="open", labels=())
    facts = {
        "changes": [{"path": f["path"], "status": "A"} for f in sizes or []],
        "changed_bytes": limits.size_summary(sizes) if sizes is not None else None,
    }
    run = RunRecord.load(None, facts)  # as the run recorded them
    return Snapshot(issue=issue, state="implementing", run=run, labels={}, settings={"gates": gates}, taken_at="")


def test_byte_limits_null_and_zero() -> None:
    one = [{"path": "a.bin", "size": 10, "binary": True}, {"path": "b.txt", "size": 20, "binary": False}]
    assert within_byte_limits(_snap({}, one)).ok  # no key (null removed it): no limit
    assert within_byte_limits(_snap({"max_binary_file_bytes": 10, "max_changed_bytes": 30}, one)).ok  # at the caps
    zero = within_byte_limits(_snap({"max_binary_file_bytes": 0}, one))
    assert not zero.ok and zero.reason == "a.bin is a 10-byte binary file; gates.max_binary_file_bytes is 0 bytes"
    both = within_byte_limits(_snap({"max_binary_file_bytes": 0, "max_changed_bytes": 0}, one))
    assert not both.ok and both.reason.endswith("(and 1 more)") and len(both.evidence) == 2
    assert "gates.max_changed_bytes is 0 bytes (largest: b.txt (20 bytes), a.bin (10 bytes))" in both.evidence[1]
    assert within_byte_limits(_snap({"max_changed_bytes": 0}, [])).ok  # deletions only
    unmeasured = within_byte_limits(_snap({}, None))  # e.g. a run captured before the gate existed
    assert not unmeasured.ok and unmeasured.reason == "the sizes of the changed files were not measured"
    uncaptured = Snapshot(
        issue=Issue(1, "t", "", "open", ()),
        state="gating",
        run=RunRecord(),
        labels={},
        settings={"gates": {}},
        taken_at="",
    )
    assert within_byte_limits(uncaptured).reason == "the change set was not captured"


# proof artifacts -------------------------------------------------------------------------

PROOF_BODY = "Add sub.\n\n## Acceptance criteria\n- `sub(5, 3)` returns 2\n"

PROOF_AGENT = """
import hashlib
BEHAVIOUR = {behaviour!r}
MODE = os.environ.get("ORCH_MODE", "implement")
if MODE == "implement":
    write("app.py", (WT / "app.py").read_text() + "\\n\\ndef sub(a, b):\\n    return a - b\\n")
    report(["app.py"])
    sys.exit(0)
PROOF = Path(os.environ["ORCH_PROOF_DIR"])
ARTS = []


def art(aid, kind, rel, data=b"", sparse=0, **extra):
    path = PROOF / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        if sparse:
            fh.truncate(sparse)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    ARTS.append({{"id": aid, "kind": kind, "path": rel, "sha256": digest.hexdigest(), "publishable": True, **extra}})


code = "from app import sub; print(sub(5, 3))"
out = subprocess.run([sys.executable, "-c", code], cwd=WT, capture_output=True, text=True, timeout=30)
output = f"$ python -c '{{code}}'\\n{{out.stdout}}exit {{out.returncode}}\\n".encode()
art("cmd-ac-1", "command-output", "commands/ac-1.txt", {png_header!r} + output if BEHAVIOUR == "binary-output" else output)
SHOTS = {shots!r}
if BEHAVIOUR in SHOTS:
    data, extra = SHOTS[BEHAVIOUR]
    art("shot-home", "screenshot", "shots/home.png", bytes.fromhex(data), **extra)
if BEHAVIOUR == "huge-artifact":
    art("big", "command-output", "logs/big.txt", b"x", sparse=11 * 1024 * 1024)
if BEHAVIOUR == "artifacts-total":
    for i in range(6):
        art(f"part-{{i}}", "generated-file", f"parts/{{i}}.bin", b"part", sparse=9 * 1024 * 1024)
result = {{"status": "passed", "summary": "sub(5, 3) prints 2.", "artifacts": ARTS,
          "criteria": [{{"id": "ac-1", "status": "passed", "confidence": "high", "evidence": [a["id"] for a in ARTS],
                         "analysis": f"sub(5, 3) printed {{out.stdout.strip()}}; the criterion wants 2."}}]}}
if BEHAVIOUR == "huge-report":
    with open(REPORT, "wb") as fh:
        fh.write(json.dumps(result).encode())
        fh.truncate(200 * 1024 * 1024)
else:
    REPORT.write_text(json.dumps(result))
"""

SHOTS: dict[str, tuple[str, dict[str, Any]]] = {
    "text-screenshot": (b"<html><body>Count: 1</body></html>\n".hex(), {"viewport": "1280x800"}),
    "wrong-viewport": (png_bytes(390, 844).hex(), {"viewport": "1280x800"}),
    "wrong-size": (png_bytes(1280, 800).hex(), {"width": 1280, "height": 720}),
    "valid-png": (png_bytes(1280, 800, (30, 120, 200)).hex(), {"viewport": "1280x800", "width": 1280, "height": 800}),
}


def _prove(cli: Any, repo: Path, tmp_path: Path, behaviour: str) -> tuple[int, dict[str, Any]]:
    body = PROOF_AGENT.format(behaviour=behaviour, shots=SHOTS, png_header=png_bytes(1, 1))
    agent = make_agent(tmp_path, body, name="prover")
    write_policy(repo, agent, proof={"when_acceptance_criteria": True})
    return _run(cli, repo, PROOF_BODY)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (
            "text-screenshot",
            "artifact shot-home: shots/home.png is declared a screenshot but its bytes are text, not a PNG or JPEG image",
        ),
        (
            "wrong-viewport",
            "artifact shot-home: shots/home.png is a 390x844 PNG image, but the report states viewport 1280x800",
        ),
        (
            "wrong-size",
            "artifact shot-home: shots/home.png is a 1280x800 PNG image, but the report states size 1280x720",
        ),
        (
            "binary-output",
            "artifact cmd-ac-1: commands/ac-1.txt is declared command-output but its bytes are a PNG image, not text",
        ),
        ("huge-report", "the proof report is 209,715,200 bytes; the cap is 1 MiB (reports are short JSON)"),
        (
            "huge-artifact",
            "artifact big: logs/big.txt is 11,534,336 bytes; the cap is 10 MiB (one piece of evidence a reviewer can "
            "open; larger files cannot be reviewed or published)",
        ),
        ("artifacts-total", "the proof's 7 artifacts are 56,623,"),
    ],
)
def test_a_proof_artifact_that_lies_about_its_bytes_blocks(
    cli: Any, repo: Path, tmp_path: Path, behaviour: str, reason: str
) -> None:
    code, data = _prove(cli, repo, tmp_path, behaviour)
    assert code == 5 and data["final_state"] == "blocked", json.dumps(data)[-3000:]
    assert [s["fired"]["trigger"] for s in data["steps"]] == ["claim", "start", "prove", "block"]
    verdict = _verdicts(data["steps"][-1])["proof_passed"]
    assert not verdict["ok"] and verdict["reason"].startswith("proof rejected: ") and reason in verdict["reason"]
    fact = run_facts(repo)["proof"]
    assert fact["status"] == "blocked" and any(reason in f for f in fact["findings"])
    if behaviour == "artifacts-total":
        assert "bytes together; the cap is 50 MiB (all the evidence of one proof run)" in fact["error"]
    blocked = comments_of_kind(repo, 1, "report-blocked")
    assert len(blocked) == 1 and reason in blocked[0]


def test_a_real_png_of_the_stated_size_is_accepted(cli: Any, repo: Path, tmp_path: Path) -> None:
    code, data = _prove(cli, repo, tmp_path, "valid-png")
    assert code == 0 and data["final_state"] == "review", json.dumps(data)[-3000:]
    fact = run_facts(repo)["proof"]
    assert fact["status"] == "passed"
    shot = next(a for a in fact["checked"]["artifacts"] if a["id"] == "shot-home")
    assert shot["ok"] and shot["content"] == "PNG 1280x800"
    assert next(a for a in fact["checked"]["artifacts"] if a["id"] == "cmd-ac-1")["content"] == "text"
    width, height, rows = decode_png(Path(fact["dir"]) / "shots" / "home.png")  # the generated PNG really decodes
    assert (width, height) == (1280, 800) and rows[0][:3] == bytes((30, 120, 200))


# publication and the image header reader ---------------------------------------------------


def test_publication_checks_each_screenshot_again(tmp_path: Path) -> None:
    folder = tmp_path / "proof"
    (folder / "shots").mkdir(parents=True)
    files = {"good.png": png_bytes(390, 844), "text.png": b"just words\n", "small.png": png_bytes(200, 100)}
    arts = []
    for name, data in files.items():
        (folder / "shots" / name).write_bytes(data)
        arts.append(
            {
                "id": name[:-4],
                "kind": "screenshot",
                "path": f"shots/{name}",
                "publishable": True,
                "viewport": "390x844",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    with open(folder / "shots" / "huge.png", "wb") as fh:
        fh.write(png_bytes(390, 844))
        fh.truncate(11 * MiB)
    arts.append(
        {
            "id": "huge",
            "kind": "screenshot",
            "path": "shots/huge.png",
            "publishable": True,
            "viewport": "390x844",
            "sha256": "0" * 64,
        }
    )
    plan = proof.proof_branch_files({"dir": str(folder), "artifacts": arts}, owner="o", repo="r", run_id="1-a")
    assert plan.files == {"proof/1-a/good.png": folder / "shots" / "good.png"}
    assert plan.skipped == [
        "text: shots/text.png is declared a screenshot but its bytes are text, not a PNG or JPEG image",
        "small: shots/small.png is a 200x100 PNG image, but the report states viewport 390x844",
        "huge: shots/huge.png is 11,534,336 bytes; the cap is 10 MiB (one piece of evidence a reviewer can open; "
        "larger files cannot be reviewed or published)",
    ]


def test_runner_screenshots_are_held_to_their_own_record(tmp_path: Path) -> None:
    folder = tmp_path / "proof"
    started = proof._fresh_dir(folder)
    data = png_bytes(390, 844)
    (folder / "browser").mkdir()
    (folder / "browser" / "final-mobile.png").write_bytes(data)
    shot = {
        "id": "browser-final-mobile",
        "kind": "screenshot",
        "path": "browser/final-mobile.png",
        "publishable": True,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": "runner",
        "viewport": "390x844",
        "width": 390,
        "height": 844,
    }
    detail, reasons = proof.inspect_artifact(folder, shot, started)
    assert reasons == [] and detail["content"] == "PNG 390x844"
    _detail, reasons = proof.inspect_artifact(folder, {**shot, "viewport": "1280x800"}, started)
    assert reasons == [
        "artifact browser-final-mobile: browser/final-mobile.png is a 390x844 PNG image, "
        "but the runner's browser record states viewport 1280x800"
    ]


def test_image_headers_are_read_with_the_standard_library(tmp_path: Path) -> None:
    def sniff(data: bytes) -> tuple[images.Image | None, str]:
        path = tmp_path / "x"
        path.write_bytes(data)
        return images.sniff(path)

    assert sniff(png_bytes(7, 3)) == (images.Image("PNG", 7, 3), "a PNG image")
    # a JPEG: SOI, an APP0 segment, then the SOF0 frame header with height 600 and width 800
    jpeg = (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        b"\xff\xc0\x00\x0b\x08\x02\x58\x03\x20\x01\x01\x11\x00\xff\xd9"
    )
    assert sniff(jpeg) == (images.Image("JPEG", 800, 600), "a JPEG image")
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF")[1] == "a damaged JPEG (no frame header with its width and height)"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"\0" * 8)[1] == "a damaged PNG (no IHDR header)"
    assert sniff(b"GIF89a\x01\x00\x01\x00")[1] == "a GIF image"
    assert sniff(b"")[1] == "empty"
    assert sniff("caf\u00e9 ok\n".encode())[1] == "text"
    assert sniff(b"\x00\x01\x02\x03binary")[1] == "binary data (starting with 0x00010203)"
