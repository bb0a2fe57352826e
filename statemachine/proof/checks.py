"""The proof's checks: each judges what a proof run left behind and returns reasons (empty: nothing wrong).

They have no side effects and read nothing beyond the files they are given (the report, the artifacts
in the proof folder). `judge` combines their reasons into the `proof` fact that the pure guards
`proof_passed` and `proof_needs_rework` read.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from statemachine import images, limits
from statemachine import scenario as scenarios
from statemachine.ports import REMOVED_SUFFIX
from statemachine.scenario import sha256_file

UI_WORDS = re.compile(r"\b(?:page|pages|button|buttons|screen|screens|ui)\b", re.IGNORECASE)
REQUIRED_VIEWPORTS = tuple(f"{w}x{h}" for _, w, h in scenarios.VIEWPORTS)
# Paths that reveal the host; publishable artifacts must not contain them (binary files are not read).
HOST_PATH = re.compile(r"(?<![\w.~-])/(?:home|root|tmp|Users|var/folders|private/var)/")
RUNNER_FOLDER = "browser"
MAX_REASONS = 40
# kinds whose bytes must be text (a NUL byte or an image is refused); a screenshot must be a PNG or JPEG image
TEXT_KINDS = ("command-output", "dom-snapshot", "console-log", "network-log")


# criteria --------------------------------------------------------------------------------


def mentions_ui(text: str) -> bool:
    return bool(UI_WORDS.search(text or ""))


def criteria_for(body: str) -> list[dict[str, Any]]:
    """The issue's criteria with their stable ids (ac-1, ...) and whether their text is about UI."""
    from statemachine.prompting import acceptance_criteria

    return [{**c, "ui": mentions_ui(c["text"])} for c in acceptance_criteria(body)]


def is_ui(criterion: dict[str, Any] | None, answer: dict[str, Any] | None) -> bool:
    return bool((answer or {}).get("ui")) or bool((criterion or {}).get("ui"))


# checks (no side effects; each returns reasons) --------------------------------------------


def validate_report(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The parsed proof report, or the reason it is missing or malformed."""
    from statemachine.reports import load_report

    data, error = load_report(path, "proof-report", "proof report")
    return data, [error] if error else []


def check_answers(wanted: list[dict[str, Any]], report: dict[str, Any]) -> list[str]:
    """Every criterion of the issue answered exactly once, and nothing else."""
    ids = [c["id"] for c in report["criteria"]]
    wanted_ids = [c["id"] for c in wanted]
    reasons = []
    missing = [i for i in wanted_ids if i not in ids]
    if missing:
        reasons.append("criteria without an answer: " + ", ".join(missing))
    unknown = sorted(set(ids) - set(wanted_ids), key=lambda i: int(i.split("-")[1]))
    if unknown:
        reasons.append("answers for criteria the issue does not have: " + ", ".join(unknown))
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        reasons.append("criteria answered more than once: " + ", ".join(twice))
    if not wanted_ids:
        reasons.append('the issue has no acceptance criteria to prove (add an "## Acceptance criteria" list)')
    return reasons


def check_status(report: dict[str, Any]) -> list[str]:
    """`passed` only when every criterion passed, with high confidence, on cited evidence."""
    reasons = []
    for c in report["criteria"]:
        if c["status"] == "passed" and not c["evidence"]:
            reasons.append(f"{c['id']} is passed without evidence: cite the artifacts it rests on")
    if report["status"] != "passed":
        return reasons
    weak = [f"{c['id']} ({c['confidence']})" for c in report["criteria"] if c["confidence"] != "high"]
    if weak:
        reasons.append("passed with less than high confidence on: " + ", ".join(weak))
    unmet = [f"{c['id']} ({c['status']})" for c in report["criteria"] if c["status"] != "passed"]
    if unmet:
        reasons.append("the report says passed but not every criterion passed: " + ", ".join(unmet))
    return reasons


def merge_artifacts(
    agent: list[dict[str, Any]], runner: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The agent's artifacts and the runner's own, by id; the runner's folder and ids are not the agent's to claim."""
    reasons = []
    runner_ids = {a["id"] for a in runner}
    seen: set[str] = set()
    merged = []
    for a in agent:
        if a["id"] in seen:
            reasons.append(f"artifact id {a['id']!r} is listed twice")
            continue
        seen.add(a["id"])
        if a["id"] in runner_ids or a["id"].startswith("browser-"):
            reasons.append(f"artifact id {a['id']!r} is reserved for the runner's browser artifacts")
            continue
        if PurePosixPath(a["path"]).parts[:1] == (RUNNER_FOLDER,):
            reasons.append(f"artifact {a['id']!r} is in {RUNNER_FOLDER}/, which only the runner writes")
            continue
        merged.append({**a, "source": "agent"})
    merged += [dict(a) for a in runner]
    return merged, reasons


def check_evidence_refs(report: dict[str, Any], artifacts: list[dict[str, Any]]) -> list[str]:
    known = {a["id"] for a in artifacts}
    reasons = []
    for c in report["criteria"]:
        unknown = [e for e in c["evidence"] if e not in known]
        if unknown:
            reasons.append(f"{c['id']} cites missing artifacts: " + ", ".join(unknown))
    return reasons


def inspect_artifact(proof_dir: Path, artifact: dict[str, Any], started_ns: int) -> tuple[dict[str, Any], list[str]]:
    """Inside the proof folder, a regular file reached through no symlink, its hash as listed, modified after the proof started."""
    aid, rel = artifact["id"], artifact["path"]
    detail: dict[str, Any] = {
        "id": aid,
        "path": rel,
        "kind": artifact["kind"],
        "source": artifact.get("source", "agent"),
        "publishable": artifact["publishable"],
        "ok": False,
    }
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or Path(rel).is_absolute() or ".." in parts or not parts or "\\" in rel:
        return detail, [f"artifact {aid}: {rel!r} is outside the proof folder"]
    probe = proof_dir
    for part in parts:
        probe = probe / part
        try:
            st = probe.lstat()
        except OSError:
            if probe.with_name(probe.name + REMOVED_SUFFIX).is_file():  # the jail removed a symlink the agent left here
                return detail, [
                    f"artifact {aid}: {probe.relative_to(proof_dir).as_posix()} is a symlink (the runner removed it)"
                ]
            return detail, [f"artifact {aid}: {rel} is missing"]
        if stat.S_ISLNK(st.st_mode):
            return detail, [f"artifact {aid}: {probe.relative_to(proof_dir).as_posix()} is a symlink"]
    if not stat.S_ISREG(st.st_mode):
        return detail, [f"artifact {aid}: {rel} is not a regular file"]
    root = proof_dir.resolve()
    if root not in probe.resolve().parents:
        return detail, [f"artifact {aid}: {rel} resolves outside the proof folder"]
    detail["size"] = st.st_size
    if st.st_size > limits.ARTIFACT.bytes:  # neither hashed nor read
        return detail, [f"artifact {aid}: " + limits.over_cap(rel, st.st_size, limits.ARTIFACT)]
    digest = sha256_file(probe)
    detail.update(sha256=digest, size=st.st_size, mtime_ns=st.st_mtime_ns)
    reasons = []
    if digest != artifact["sha256"]:
        reasons.append(
            f"artifact {aid}: hash mismatch: {rel} has sha256 {digest[:12]}..., the list says {artifact['sha256'][:12]}..."
        )
    if st.st_mtime_ns < started_ns:
        reasons.append(f"artifact {aid}: {rel} is stale: it was last modified before the proof started")
    content, kind_reasons = check_kind(probe, artifact)
    detail["content"] = content
    reasons += kind_reasons
    detail["ok"] = not reasons
    return detail, reasons


def check_kind(path: Path, artifact: dict[str, Any]) -> tuple[str, list[str]]:
    """The file's bytes match its declared kind: a screenshot is a PNG or JPEG image (of the stated viewport or width and
    height, when stated), a log, an output or a DOM snapshot is text. Returns what the bytes are, and the reasons."""
    aid, rel, kind = artifact["id"], artifact["path"], artifact["kind"]
    if kind == "screenshot":
        return screenshot_problems(path, artifact, f"artifact {aid}: {rel}")
    if kind not in TEXT_KINDS:
        return "not checked", []
    try:
        head = limits.read_head(path, limits.BINARY_SNIFF)
    except (OSError, limits.NotRegular):
        return "unreadable", [f"artifact {aid}: {rel} cannot be read"]
    what = images.describe(head)
    if what not in ("text", "empty") and (b"\0" in head or not what.startswith("binary data")):
        return what, [f"artifact {aid}: {rel} is declared {kind} but its bytes are {what}, not text"]
    return "text", []


def screenshot_problems(path: Path, artifact: dict[str, Any], where: str) -> tuple[str, list[str]]:
    """A screenshot is a PNG or JPEG image by its magic bytes, and its header's width and height match the viewport or
    the width and height stated for it (by the agent's report, or the runner's browser record)."""
    image, what = images.sniff(path)
    if image is None:
        return what, [f"{where} is declared a screenshot but its bytes are {what}, not a PNG or JPEG image"]
    by = "the runner's browser record" if artifact.get("source") == "runner" else "the report"
    stated = []
    if artifact.get("viewport") is not None:
        stated.append(("viewport", str(artifact["viewport"])))
    if artifact.get("width") is not None or artifact.get("height") is not None:
        stated.append(("size", f"{artifact.get('width', '?')}x{artifact.get('height', '?')}"))
    reasons = [
        f"{where} is a {image.size} {image.format} image, but {by} states {name} {value}"
        for name, value in stated
        if value != image.size
    ]
    return f"{image.format} {image.size}", reasons


def check_artifacts(
    proof_dir: Path, artifacts: list[dict[str, Any]], started_ns: int
) -> tuple[list[dict[str, Any]], list[str]]:
    details, reasons = [], []
    for a in artifacts:
        d, r = inspect_artifact(proof_dir, a, started_ns)
        details.append(d)
        reasons += r
    total = sum(int(d.get("size") or 0) for d in details)
    if total > limits.ARTIFACTS_TOTAL.bytes:
        reasons.append(
            f"the proof's {len(details)} artifacts are {total:,} bytes together; the cap is "
            f"{limits.human(limits.ARTIFACTS_TOTAL.bytes)} ({limits.ARTIFACTS_TOTAL.reason})"
        )
    return details, reasons


def _read_text(path: Path) -> str | None:
    from statemachine.inspect_candidate import read_text

    return read_text(path) if path.is_file() and not path.is_symlink() else None


def check_secrets(
    proof_dir: Path, artifacts: list[dict[str, Any]], extra: dict[str, Path], values: Any = None
) -> tuple[list[str], list[str]]:
    """No credentials in any text artifact (publishable or not), the report, the scenario or the proof run's logs; and
    no secret value the runner holds (``values``, a SecretSet) in the bytes of any of them, binary ones too."""
    from statemachine.inspect_candidate import scan_file_values, scan_secrets

    scanned, reasons = [], []
    targets = [
        (f"artifact {a['id']}", proof_dir / a["path"])
        for a in artifacts
        if ".." not in PurePosixPath(a["path"]).parts and not PurePosixPath(a["path"]).is_absolute()
    ]
    targets += sorted(extra.items())
    for where, path in targets:
        if values:
            reasons += [str(f.reason) for f in scan_file_values(path, where, values)]
        text = _read_text(path)
        if text is None:
            continue
        scanned.append(where)
        for finding in scan_secrets(text, where):
            reasons.append(
                f"credential ({finding.kind}) in {finding.where.rsplit(':', 1)[0]}, line {finding.where.rsplit(':', 1)[1]}"
            )
    return scanned, reasons


def host_paths(repo: Path, *more: Path) -> list[str]:
    """Absolute paths of this machine that must not be published (the repository's, the worktree's, ...)."""
    out = {str(repo.resolve()), str(repo)}
    for p in more:
        out |= {str(p), str(p.resolve())}
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        out.add(home)
    return sorted(x for x in out if len(x) > 1)


def check_host_paths(proof_dir: Path, artifacts: list[dict[str, Any]], paths: list[str]) -> tuple[list[str], list[str]]:
    """Publishable text artifacts name no host path (/home/, /root/, /tmp/, the repository's path, ...)."""
    scanned, reasons = [], []
    for a in artifacts:
        if not a["publishable"] or ".." in PurePosixPath(a["path"]).parts or PurePosixPath(a["path"]).is_absolute():
            continue
        text = _read_text(proof_dir / a["path"])
        if text is None:
            continue
        scanned.append(a["id"])
        for lineno, line in enumerate(text.splitlines(), start=1):
            hit = next((p for p in paths if p in line), None)
            m = HOST_PATH.search(line) if hit is None else None
            if hit or m:
                what = "a path of this checkout" if hit else m.group(0)  # type: ignore[union-attr]
                reasons.append(
                    f"host path ({what}) in publishable artifact {a['id']}, line {lineno}: mark it not publishable or remove the path"
                )
                break
    return scanned, reasons


def check_product(
    before: str,
    after: str,
    git_before: dict[str, str] | None = None,
    git_after: dict[str, str] | None = None,
    changed: list[str] | None = None,
) -> list[str]:
    """The proof run left the product (the worktree's tree) and the git state exactly as they were."""
    reasons = []
    if before != after:
        which = (": " + ", ".join(changed[:8])) if changed else ""
        reasons.append(f"the proof run changed the product (the worktree's tree differs before and after){which}")
    if git_before is not None and git_after is not None:
        moved = [
            k
            for k in ("head", "gitfile", "config", "hooks", "worktree_config")
            if git_before.get(k) != git_after.get(k)
        ]
        if moved:
            reasons.append("the proof run changed git state: " + ", ".join(moved))
    return reasons


def check_ui(
    answer: dict[str, Any],
    browser_result: dict[str, Any] | None,
    artifacts: list[dict[str, Any]],
    candidate_ns: int,
    scenario: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[str]]:
    """The UI Evidence Contract for a passed UI criterion, judged against the runner's own browser record."""
    cid = answer["id"]
    by_id = {a["id"]: a for a in artifacts}
    detail: dict[str, Any] = {"id": cid, "ok": False}
    ui = answer.get("ui_evidence")
    if not ui:
        return detail, [f"{cid} is a UI criterion: its answer needs ui_evidence (the UI Evidence Contract)"]
    if not browser_result or not browser_result.get("ran"):
        why = (browser_result or {}).get("error") or "the proof agent wrote no scenario.json"
        return detail, [f"{cid} is a UI criterion but the runner captured no browser evidence: {why}"]
    reasons = []
    if not browser_result.get("ok"):
        reasons.append(f"{cid}: the runner's browser run did not pass: {browser_result.get('error')}")
    base = browser_result.get("base_url", "")
    entry = scenarios.resolve_url(base, ui["workflow"]["entry_url"]) if base else None
    first = scenarios.resolve_url(base, scenario["steps"][0]["url"]) if scenario and base else None
    if entry is None or entry != first:
        reasons.append(f"{cid}: workflow entry_url {ui['workflow']['entry_url']!r} is not the scenario's first goto")
    last_step = int(browser_result.get("last_interaction_step", -1))
    last_ns = int(browser_result.get("last_interaction_ns", 0))

    def runner_shot(aid: str) -> dict[str, Any] | None:
        a = by_id.get(aid)
        return a if a and a.get("source") == "runner" and a["kind"] == "screenshot" else None

    fresh: dict[str, str] = {}
    for entry_vp in ui["viewports"]:
        shot = runner_shot(entry_vp["artifact"])
        if shot is None:
            reasons.append(
                f"{cid}: viewport {entry_vp['viewport']} cites {entry_vp['artifact']}, which is not a runner screenshot"
            )
            continue
        size = f"{shot.get('width')}x{shot.get('height')}"
        if shot.get("viewport") != entry_vp["viewport"] or size != entry_vp["viewport"]:
            reasons.append(f"{cid}: {entry_vp['artifact']} was captured at {size}, not {entry_vp['viewport']}")
            continue
        if int(shot.get("after_step", -1)) < last_step or int(shot.get("mtime_ns", 0)) < last_ns:
            reasons.append(
                f"{cid}: {entry_vp['artifact']} is not fresh: it was captured before the final interaction (step {last_step})"
            )
            continue
        if int(shot.get("mtime_ns", 0)) < candidate_ns:
            reasons.append(f"{cid}: {entry_vp['artifact']} is not fresh: it is older than the candidate commit")
            continue
        fresh[entry_vp["viewport"]] = entry_vp["artifact"]
    missing = [vp for vp in REQUIRED_VIEWPORTS if vp not in fresh]
    if missing:
        reasons.append(f"{cid}: no fresh final-state screenshot at " + ", ".join(missing))
    for name in ("layout_review", "copy_review"):
        cited = ui[name]["screenshots"]
        bad = [s for s in cited if runner_shot(s) is None]
        if bad:
            reasons.append(f"{cid}: the {name.replace('_', ' ')} cites {', '.join(bad)}, not runner screenshots")
    layout_vps = {runner_shot(s)["viewport"] for s in ui["layout_review"]["screenshots"] if runner_shot(s)}  # type: ignore[index]
    if not set(REQUIRED_VIEWPORTS) <= layout_vps:
        reasons.append(f"{cid}: the layout review must look at every viewport ({', '.join(REQUIRED_VIEWPORTS)})")
    kinds = {by_id[e]["kind"] for e in answer["evidence"] if e in by_id}
    if not kinds - {"screenshot"}:
        reasons.append(
            f"{cid} rests on screenshots alone: cite what the runner verified too (browser-steps, browser-dom) "
            "or other evidence"
        )
    if not browser_result.get("text_assertions"):
        reasons.append(
            f"{cid}: the scenario asserts no text (expect_text or wait_for_text), so screenshots alone would carry it"
        )
    detail.update(
        ok=not reasons,
        viewports=fresh,
        last_interaction_step=last_step,
        layout_review=ui["layout_review"]["screenshots"],
        copy_review=ui["copy_review"]["screenshots"],
        sources=ui["sources"],
        entry_url=entry,
    )
    return detail, reasons


def judge(
    *, report: dict[str, Any] | None, report_reasons: list[str], runs: list[dict[str, Any]], runner_reasons: list[str]
) -> dict[str, Any]:
    """The verdict: blocked with the reasons, needs-rework with the findings, or passed."""
    failed_run = next(
        (r for r in runs if r.get("exit_code") != 0 or r.get("timed_out") or r.get("idle_timed_out") or r.get("error")),
        None,
    )
    reasons: list[str] = []
    if failed_run is not None:
        what = (
            "timed out"
            if failed_run.get("timed_out") or failed_run.get("idle_timed_out")
            else failed_run.get("error") or f"exited with {failed_run.get('exit_code')}"
        )
        reasons.append(f"the proof run ({failed_run['phase']} phase) {what}")
    reasons += report_reasons + runner_reasons
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return {"status": "blocked", "error": reasons[0] + more, "findings": reasons[:MAX_REASONS]}
    assert report is not None
    if report["status"] == "blocked":
        why = report.get("findings") or [report.get("summary") or "no reason given"]
        return {
            "status": "blocked",
            "error": "the proof agent reports blocked: " + "; ".join(why)[:500],
            "findings": list(why),
        }
    if report["status"] == "needs-rework":
        findings = list(report.get("findings", []))
        findings += [
            f"{c['id']} {c['status']}: {c['analysis']}"
            for c in report["criteria"]
            if c["status"] != "passed" and not any(c["analysis"] in f for f in findings)
        ]
        return {"status": "needs-rework", "error": None, "findings": findings}
    return {"status": "passed", "error": None, "findings": []}


# the runner's own browser record (orch proof browser) ----------------------------------------


def check_runner_shots(browser_result: dict[str, Any], candidate_ns: int) -> list[str]:
    """Every viewport has a final-state screenshot captured after the final interaction and the candidate commit."""
    reasons = []
    last_step = int(browser_result.get("last_interaction_step", -1))
    last_ns = int(browser_result.get("last_interaction_ns", 0))
    for vp in REQUIRED_VIEWPORTS:
        shot = next(
            (
                a
                for a in browser_result.get("artifacts", [])
                if a["kind"] == "screenshot" and a.get("name") == "final" and a.get("viewport") == vp
            ),
            None,
        )
        if shot is None or f"{shot.get('width')}x{shot.get('height')}" != vp:
            reasons.append(f"no final-state screenshot at {vp}")
        elif (
            int(shot["after_step"]) < last_step
            or int(shot["mtime_ns"]) < last_ns
            or int(shot["mtime_ns"]) < candidate_ns
        ):
            reasons.append(f"the final-state screenshot at {vp} is not fresh")
    return reasons
