"""Adaptive acceptance proof: a result reaches review only when every criterion rests on evidence the runner checked.

`prove` runs the proof agent (ORCH_MODE=proof) against the candidate, executes the agent's browser
scenario itself when the policy says how to start the app, and then judges the report with the
check functions below. Each check is side-effect free and returns reasons (empty: nothing
wrong); `judge` combines them into the `proof` fact that the pure guards `proof_passed` and
`proof_needs_rework` read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from statemachine import images, limits
from statemachine.adapters import browser
from statemachine.adapters.browser import sha256_file
from statemachine.adapters.jail import REMOVED_SUFFIX

UI_WORDS = re.compile(r"\b(?:page|pages|button|buttons|screen|screens|ui)\b", re.I)
REQUIRED_VIEWPORTS = tuple(f"{w}x{h}" for _, w, h in browser.VIEWPORTS)
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
        reasons.append("the issue has no acceptance criteria to prove (add an \"## Acceptance criteria\" list)")
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


def merge_artifacts(agent: list[dict[str, Any]], runner: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
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
    detail: dict[str, Any] = {"id": aid, "path": rel, "kind": artifact["kind"], "source": artifact.get("source", "agent"),
                              "publishable": artifact["publishable"], "ok": False}
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
                return detail, [f"artifact {aid}: {probe.relative_to(proof_dir).as_posix()} is a symlink (the runner removed it)"]
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
        reasons.append(f"artifact {aid}: hash mismatch: {rel} has sha256 {digest[:12]}..., the list says {artifact['sha256'][:12]}...")
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
    reasons = [f"{where} is a {image.size} {image.format} image, but {by} states {name} {value}"
               for name, value in stated if value != image.size]
    return f"{image.format} {image.size}", reasons


def check_artifacts(proof_dir: Path, artifacts: list[dict[str, Any]], started_ns: int) -> tuple[list[dict[str, Any]], list[str]]:
    details, reasons = [], []
    for a in artifacts:
        d, r = inspect_artifact(proof_dir, a, started_ns)
        details.append(d)
        reasons += r
    total = sum(int(d.get("size") or 0) for d in details)
    if total > limits.ARTIFACTS_TOTAL.bytes:
        reasons.append(f"the proof's {len(details)} artifacts are {total:,} bytes together; the cap is "
                       f"{limits.human(limits.ARTIFACTS_TOTAL.bytes)} ({limits.ARTIFACTS_TOTAL.reason})")
    return details, reasons


def _read_text(path: Path) -> str | None:
    from statemachine.inspect_candidate import read_text

    return read_text(path) if path.is_file() and not path.is_symlink() else None


def check_secrets(proof_dir: Path, artifacts: list[dict[str, Any]], extra: dict[str, Path],
                  values: Any = None) -> tuple[list[str], list[str]]:
    """No credentials in any text artifact (publishable or not), the report, the scenario or the proof run's logs; and
    no secret value the runner holds (``values``, a SecretSet) in the bytes of any of them, binary ones too."""
    from statemachine.inspect_candidate import scan_file_values, scan_secrets

    scanned, reasons = [], []
    targets = [(f"artifact {a['id']}", proof_dir / a["path"]) for a in artifacts if ".." not in PurePosixPath(a["path"]).parts
               and not PurePosixPath(a["path"]).is_absolute()]
    targets += sorted(extra.items())
    for where, path in targets:
        if values:
            reasons += [str(f.reason) for f in scan_file_values(path, where, values)]
        text = _read_text(path)
        if text is None:
            continue
        scanned.append(where)
        for finding in scan_secrets(text, where):
            reasons.append(f"credential ({finding.kind}) in {finding.where.rsplit(':', 1)[0]}, line {finding.where.rsplit(':', 1)[1]}")
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
                reasons.append(f"host path ({what}) in publishable artifact {a['id']}, line {lineno}: mark it not publishable or remove the path")
                break
    return scanned, reasons


def check_product(before: str, after: str, git_before: dict[str, str] | None = None,
                  git_after: dict[str, str] | None = None, changed: list[str] | None = None) -> list[str]:
    """The proof run left the product (the worktree's tree) and the git state exactly as they were."""
    reasons = []
    if before != after:
        which = (": " + ", ".join(changed[:8])) if changed else ""
        reasons.append(f"the proof run changed the product (the worktree's tree differs before and after){which}")
    if git_before is not None and git_after is not None:
        moved = [k for k in ("head", "gitfile", "config", "hooks", "worktree_config") if git_before.get(k) != git_after.get(k)]
        if moved:
            reasons.append("the proof run changed git state: " + ", ".join(moved))
    return reasons


def check_ui(answer: dict[str, Any], browser_result: dict[str, Any] | None, artifacts: list[dict[str, Any]],
             candidate_ns: int, scenario: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
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
    entry = browser.resolve_url(base, ui["workflow"]["entry_url"]) if base else None
    first = browser.resolve_url(base, scenario["steps"][0]["url"]) if scenario and base else None
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
            reasons.append(f"{cid}: viewport {entry_vp['viewport']} cites {entry_vp['artifact']}, which is not a runner screenshot")
            continue
        size = f"{shot.get('width')}x{shot.get('height')}"
        if shot.get("viewport") != entry_vp["viewport"] or size != entry_vp["viewport"]:
            reasons.append(f"{cid}: {entry_vp['artifact']} was captured at {size}, not {entry_vp['viewport']}")
            continue
        if int(shot.get("after_step", -1)) < last_step or int(shot.get("mtime_ns", 0)) < last_ns:
            reasons.append(f"{cid}: {entry_vp['artifact']} is not fresh: it was captured before the final interaction (step {last_step})")
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
        reasons.append(f"{cid} rests on screenshots alone: cite what the runner verified too (browser-steps, browser-dom) "
                       "or other evidence")
    if not browser_result.get("text_assertions"):
        reasons.append(f"{cid}: the scenario asserts no text (expect_text or wait_for_text), so screenshots alone would carry it")
    detail.update(ok=not reasons, viewports=fresh, last_interaction_step=last_step,
                  layout_review=ui["layout_review"]["screenshots"], copy_review=ui["copy_review"]["screenshots"],
                  sources=ui["sources"], entry_url=entry)
    return detail, reasons


def judge(*, report: dict[str, Any] | None, report_reasons: list[str], runs: list[dict[str, Any]], runner_reasons: list[str]) -> dict[str, Any]:
    """The verdict: blocked with the reasons, needs-rework with the findings, or passed."""
    failed_run = next((r for r in runs if r.get("exit_code") != 0 or r.get("timed_out") or r.get("idle_timed_out") or r.get("error")), None)
    reasons: list[str] = []
    if failed_run is not None:
        what = ("timed out" if failed_run.get("timed_out") or failed_run.get("idle_timed_out")
                else failed_run.get("error") or f"exited with {failed_run.get('exit_code')}")
        reasons.append(f"the proof run ({failed_run['phase']} phase) {what}")
    reasons += report_reasons + runner_reasons
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return {"status": "blocked", "error": reasons[0] + more, "findings": reasons[:MAX_REASONS]}
    assert report is not None
    if report["status"] == "blocked":
        why = report.get("findings") or [report.get("summary") or "no reason given"]
        return {"status": "blocked", "error": "the proof agent reports blocked: " + "; ".join(why)[:500], "findings": list(why)}
    if report["status"] == "needs-rework":
        findings = list(report.get("findings", []))
        findings += [f"{c['id']} {c['status']}: {c['analysis']}" for c in report["criteria"]
                     if c["status"] != "passed" and not any(c["analysis"] in f for f in findings)]
        return {"status": "needs-rework", "error": None, "findings": findings}
    return {"status": "passed", "error": None, "findings": []}


# running a proof ---------------------------------------------------------------------------

@dataclass
class ProofInputs:
    """What a proof needs, whether the lifecycle or `orch proof` starts it."""

    repo: Path
    policy_data: dict[str, Any]
    git: Any  # statemachine.ports.Git
    make_agent: Callable[[], Any]
    issue: Any  # statemachine.model.Issue, with its comments
    worktree: Path
    base_sha: str
    candidate_sha: str
    branch: str
    attempt: int
    run_id: str
    proof_dir: Path
    findings: list[str] = field(default_factory=list)
    secrets: Any = None  # statemachine.secrets.SecretSet: refused in artifacts, redacted in prompts and the agent's logs


def candidate_time_ns(repo: Path, sha: str) -> int:
    from statemachine.adapters.git import run_git

    out = run_git(["show", "-s", "--format=%ct", sha], repo, check=False).strip()
    return int(out) * 1_000_000_000 if out.isdigit() else 0


def runner_prompt(phase: str, proof_dir: Path, criteria: list[dict[str, Any]], app: browser.AppSpec | None,
                  browser_file: Path | None) -> str:
    from statemachine import resources

    lines = [
        "## Runner instructions for this proof run",
        "",
        f"Phase: {phase}. Proof folder: `{proof_dir}`. Save every artifact inside it and list each in the report",
        "with its path relative to the folder, its kind and its sha256. Artifacts must be regular files written",
        "during this run (no symlinks, no copies of older files). No artifact may contain credentials; mark an",
        "artifact publishable only when it names no host path. Do not edit product files: the runner compares the",
        "worktree before and after. `passed` needs high confidence on every criterion. Each artifact is at most",
        f"{limits.human(limits.ARTIFACT.bytes)} ({limits.human(limits.ARTIFACTS_TOTAL.bytes)} in all) and its bytes must match its kind: "
        "a screenshot is a PNG or JPEG image (of the viewport, width and height you state, if you state them);",
        "command output, DOM snapshots and logs are text.",
        "",
        "Criteria (ids are stable):",
        *[f"- {c['id']}{' [UI]' if c['ui'] else ''}: {c['text']}" for c in criteria],
        "",
    ]
    if phase == "scenario":
        lines += [
            "The runner drives the browser itself. For the UI criteria, write `scenario.json` into the proof folder",
            "(schema below; URLs are paths on the app such as \"/\"); assert what the page must show with expect_text or",
            "wait_for_text. The runner starts the app, runs the steps, captures each final state at "
            + " and ".join(REQUIRED_VIEWPORTS) + ",",
            "the console log, failed requests and a DOM snapshot, then runs you again (phase report) with its record.",
            "If no criterion needs the browser, write the proof report now instead.",
            "",
            "```json", json.dumps(resources.schema("browser-scenario"), indent=1), "```", "",
        ]
    elif browser_file is not None:
        lines += [
            f"The runner ran your scenario; its record (steps, ok, artifact ids with viewports) is `{browser_file}`.",
            "Look at the screenshots. For each UI criterion that passed, fill `ui_evidence`: the workflow (entry_url,",
            "steps, final_state), the final-state screenshot of every viewport, a layout review and a copy review citing",
            "screenshot ids, and the sources you used. Screenshots alone never pass: cite browser-steps or browser-dom too.",
            "",
        ]
    elif any(c["ui"] for c in criteria):
        lines += ["The policy sets no `proof.app`, so the runner cannot capture browser evidence: UI criteria cannot pass.", ""]
    lines += ["Proof report schema:", "```json", json.dumps(resources.schema("proof-report"), indent=1), "```"]
    if app is not None and phase == "scenario":
        lines[2:2] = [f"The app starts with `{app.command}` at {app.url} (the runner picks the port).", ""]
    return "\n".join(lines)


def _agent_run(inp: ProofInputs, phase: str, criteria: list[dict[str, Any]], report_path: Path,
               app: browser.AppSpec | None, browser_file: Path | None) -> dict[str, Any]:
    from statemachine import prompting
    from statemachine.ports import AgentRequest

    values = prompting.issue_values(inp.issue, inp.repo, inp.policy_data.get("rules", ""), list(inp.findings))
    values.update(report_path=report_path, worktree=inp.worktree, branch=inp.branch, base_sha=inp.base_sha, attempt=inp.attempt)
    text = prompting.render("proof", inp.repo, values) + "\n\n" + runner_prompt(phase, inp.proof_dir, criteria, app, browser_file)
    text = inp.secrets.redact(text) if inp.secrets else text
    cfg = inp.policy_data["agent"]
    evidence = inp.proof_dir / f"agent-{phase}"
    evidence.mkdir(parents=True, exist_ok=True)
    from statemachine.adapters.jail import Jail, workspace_extras

    extra = workspace_extras(inp.repo, Jail.for_policy(inp.policy_data, inp.repo), inp.worktree, evidence,
                             inp.candidate_sha, inp.branch)
    result = inp.make_agent().run(AgentRequest(
        prompt=text, workdir=inp.worktree, evidence_dir=evidence, report_path=report_path,
        gitdir=extra.get("gitdir"), lock=extra["lock"],
        timeout_seconds=float(cfg.get("timeout_seconds", 1800)), idle_timeout_seconds=float(cfg.get("idle_timeout_seconds", 600)),
        extra_env={"ORCH_MODE": "proof", "ORCH_PROOF_PHASE": phase, "ORCH_PROOF_DIR": str(inp.proof_dir),
                   "ORCH_PROOF_CRITERIA": json.dumps(criteria), "ORCH_PROOF_BROWSER_RESULT": str(browser_file or ""),
                   "PYTHONDONTWRITEBYTECODE": "1"},
    ))
    leaks: list[dict[str, str]] = []
    if inp.secrets:  # the agent's own folder (its log) is kept redacted; what it held blocks the proof
        from statemachine.inspect_candidate import redact_tree, value_findings

        for rel, hits in sorted(redact_tree(evidence, inp.secrets).items()):
            leaks += [f.as_json() for f in value_findings(hits, f"the proof agent's {rel} ({phase} phase)")]
    return {"phase": phase, "exit_code": result.exit_code, "timed_out": result.timed_out, "idle_timed_out": result.idle_timed_out,
            "secret_values": leaks,
            "error": result.error, "log": result.log, "duration_seconds": round(result.duration_seconds, 3)}


def run_browser(inp: ProofInputs, scenario: dict[str, Any], out_dir: Path, app: browser.AppSpec | None,
                base_url: str | None = None) -> dict[str, Any]:
    """The runner's browser run: the app started from a fresh worktree of the exact candidate, removed afterwards."""
    app_tree: Path | None = None
    try:
        if base_url is not None:
            return browser.browser_proof(scenario, out_dir, inp.proof_dir, base_url=base_url)
        if app is None:
            return browser.browser_proof(scenario, out_dir, inp.proof_dir)
        app_tree = inp.repo / ".orch" / "worktrees" / f"proof-app-{inp.run_id}-{inp.attempt}"
        inp.git.add_detached_worktree(app_tree, inp.candidate_sha)
        from statemachine.adapters.jail import Jail

        return browser.browser_proof(scenario, out_dir, inp.proof_dir, spec=app, app_cwd=app_tree,
                                     jail=Jail.for_policy(inp.policy_data, inp.repo))
    except browser.BrowserError as exc:
        return {"ran": False, "ok": False, "error": str(exc), "steps": [], "artifacts": []}
    except Exception as exc:  # Playwright could not launch or drive Chromium: recorded, so the proof is blocked
        return {"ran": False, "ok": False, "error": f"the browser run failed: {type(exc).__name__}: {str(exc)[:500]}",
                "steps": [], "artifacts": []}
    finally:
        if app_tree is not None:
            inp.git.remove_worktree(app_tree)
            shutil.rmtree(app_tree, ignore_errors=True)


def _fresh_dir(path: Path) -> int:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    path.mkdir(parents=True)
    marker = path / ".started"
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return marker.stat().st_mtime_ns  # the file system's clock, the same one that stamps the artifacts


def prove(inp: ProofInputs) -> dict[str, Any]:
    """Run the proof agent (and the runner's browser), then check everything it claims; return the `proof` fact."""
    from statemachine.adapters.git import run_git

    started_ns = _fresh_dir(inp.proof_dir)
    criteria = criteria_for(inp.issue.body)
    app = browser.app_spec(inp.policy_data)
    report_path = inp.proof_dir / "proof-report.json"
    scenario_path = inp.proof_dir / "scenario.json"
    before = inp.git.capture(inp.worktree, inp.base_sha).tree
    git_before = inp.git.fingerprint(inp.worktree)

    runs = [_agent_run(inp, "scenario" if app else "report", criteria, report_path, app, None)]
    browser_result: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    runner_reasons: list[str] = []
    if runs[0]["exit_code"] == 0 and (scenario_path.exists() or scenario_path.is_symlink()):
        fixed_base = app.url if app and "{port}" not in app.url else None
        scenario, problems = browser.load_scenario(scenario_path, fixed_base)
        if problems or scenario is None:
            runner_reasons += [f"scenario.json: {p}" for p in problems]
        elif app is None:
            browser_result = {"ran": False, "ok": False, "error": "the policy sets no proof.app, so the runner cannot start the app",
                              "steps": [], "artifacts": []}
        else:
            browser_result = run_browser(inp, scenario, inp.proof_dir / RUNNER_FOLDER, app)
            record = inp.proof_dir / RUNNER_FOLDER / "result.json"
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(browser_result, indent=2))
            if report_path.exists() or report_path.is_symlink():
                report_path.unlink()  # the report comes from the run that has seen the runner's evidence
            runs.append(_agent_run(inp, "report", criteria, report_path, app, record))

    after = inp.git.capture(inp.worktree, inp.base_sha).tree
    git_after = inp.git.fingerprint(inp.worktree)
    changed = [] if before == after else run_git(["diff-tree", "-r", "--name-only", before, after], inp.repo, check=False).split()
    runner_reasons = check_product(before, after, git_before, git_after, changed) + runner_reasons

    report, report_reasons = validate_report(report_path)
    checked: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_ns / 1e9)),
        "schema": report_reasons[0] if report_reasons else "valid",
        "product": {"before": before, "after": after, "unchanged": before == after, "changed": changed[:20]},
        "runs": runs,
    }
    artifacts: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    if report is not None:
        artifacts, merge_reasons = merge_artifacts(report["artifacts"], (browser_result or {}).get("artifacts", []))
        details, artifact_reasons = check_artifacts(inp.proof_dir, artifacts, started_ns)
        extra = {"the proof report": report_path}
        if scenario_path.is_file():
            extra["scenario.json"] = scenario_path
        for r in runs:
            extra[f"the proof agent's log ({r['phase']} phase)"] = Path(r["log"])
        secrets_scanned, secret_reasons = check_secrets(inp.proof_dir, artifacts, extra, inp.secrets)
        secret_reasons += [str(f["reason"]) for r in runs for f in r.get("secret_values", [])]  # found before redaction
        paths_scanned, path_reasons = check_host_paths(inp.proof_dir, artifacts, host_paths(inp.repo, inp.worktree, inp.proof_dir))
        candidate_ns = candidate_time_ns(inp.repo, inp.candidate_sha)
        ui_details: dict[str, Any] = {}
        ui_reasons: list[str] = []
        by_criterion = {c["id"]: c for c in criteria}
        for answer in report["criteria"]:
            if answer["status"] == "passed" and is_ui(by_criterion.get(answer["id"]), answer):
                ui_detail, ui_problems = check_ui(answer, browser_result, artifacts, candidate_ns, scenario)
                ui_details[answer["id"]] = ui_detail
                ui_reasons += ui_problems
        runner_reasons += (check_answers(criteria, report) + check_status(report) + merge_reasons + artifact_reasons
                           + check_evidence_refs(report, artifacts) + secret_reasons + path_reasons + ui_reasons)
        checked.update(artifacts=details, secrets_scanned=secrets_scanned, host_paths_scanned=paths_scanned, ui=ui_details,
                       criteria={"wanted": [c["id"] for c in criteria], "answered": [c["id"] for c in report["criteria"]]})
        answers = [{"id": c["id"], "status": c["status"], "confidence": c["confidence"], "evidence": c["evidence"],
                    "analysis": c["analysis"][:1000], "ui": is_ui(by_criterion.get(c["id"]), c)} for c in report["criteria"]]
    if browser_result is not None:
        checked["browser"] = {k: browser_result.get(k) for k in ("ran", "ok", "error", "base_url", "viewports", "steps",
                                                                  "last_interaction_step", "text_assertions", "console_errors",
                                                                  "failed_requests")}
    verdict = judge(report=report, report_reasons=report_reasons, runs=runs, runner_reasons=runner_reasons)
    try:
        rel_dir = inp.proof_dir.relative_to(inp.repo).as_posix()
    except ValueError:
        rel_dir = str(inp.proof_dir)
    return {
        **verdict, "checked": checked, "criteria": answers, "summary": (report or {}).get("summary", ""),
        "artifacts": [{k: a.get(k) for k in ("id", "kind", "path", "sha256", "publishable", "source", "viewport", "width", "height")
                       if a.get(k) is not None} for a in artifacts],
        "dir": str(inp.proof_dir), "dir_rel": rel_dir, "report_path": str(report_path), "candidate_sha": inp.candidate_sha,
        "attempt": inp.attempt,
    }


def run_proof_action(ctx: Any) -> dict[str, Any]:
    """The `run_proof` action: prove the run's candidate and record the `proof` fact for the guards."""
    facts = ctx.facts()
    attempt = int(facts.get("attempt", 0))
    from statemachine.actions import _with_comments

    issue = _with_comments(ctx, ctx.snapshot.issue)  # the authorized text, and writers' comments only
    inp = ProofInputs(repo=ctx.repo, policy_data=ctx.policy.data, git=ctx.git, make_agent=ctx.make_agent, issue=issue,
                      worktree=Path(facts["worktree"]), base_sha=facts["base_sha"], candidate_sha=facts["candidate_sha"],
                      branch=facts["branch"], attempt=attempt, run_id=ctx.require_run(),
                      proof_dir=ctx.evidence_dir() / f"attempt-{attempt}" / "proof", findings=list(facts.get("findings", [])),
                      secrets=ctx.secrets)
    fact = prove(inp)
    ctx.set_fact("proof", fact)
    return {"status": fact["status"], "error": fact["error"], "criteria": len(fact["criteria"]), "artifacts": len(fact["artifacts"])}


# publication -----------------------------------------------------------------------------

def checked_summary(proof: dict[str, Any]) -> str:
    checked = proof.get("checked") or {}
    parts = [f"schema {checked.get('schema', '?')}"]
    crit = checked.get("criteria") or {}
    if crit:
        parts.append(f"{len(crit.get('answered', []))} of {len(crit.get('wanted', []))} criteria answered")
    arts = checked.get("artifacts") or []
    parts.append(f"{sum(1 for a in arts if a.get('ok'))} of {len(arts)} artifacts hashed, fresh and inside the proof folder")
    parts.append(f"credentials scanned in {len(checked.get('secrets_scanned') or [])} text file(s)")
    parts.append(f"host paths scanned in {len(checked.get('host_paths_scanned') or [])} publishable text file(s)")
    product = checked.get("product") or {}
    parts.append("product unchanged" if product.get("unchanged") else "product CHANGED")
    b = checked.get("browser")
    if b:
        parts.append(f"browser run {'passed' if b.get('ok') else 'failed'}: {len(b.get('steps') or [])} step(s) at "
                     + " and ".join(b.get("viewports") or REQUIRED_VIEWPORTS))
    return "; ".join(parts)


def screenshots(proof: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in proof.get("artifacts", []) if a.get("kind") == "screenshot" and a.get("publishable")]


def pull_section(facts: dict[str, Any]) -> list[str]:
    """The pull request body's proof section (empty when the run had no proof)."""
    proof = facts.get("proof")
    if not proof:
        return []
    lines = ["", "## Proof", f"Status: **{proof.get('status')}**. The runner checked: {checked_summary(proof)}.", ""]
    for c in proof.get("criteria", []):
        first = (c.get("analysis") or "").strip().splitlines()[:1]
        lines.append(f"- `{c['id']}` {c['status']} ({c['confidence']} confidence{', UI' if c.get('ui') else ''}): "
                     f"{first[0] if first else ''} Evidence: {', '.join(f'`{e}`' for e in c.get('evidence', [])) or 'none'}.")
    shots = screenshots(proof)
    published = facts.get("proof_published") or {}
    if published.get("markdown"):
        lines += ["", "### Screenshots", f"Published on the proof branch `{published['branch']}`:", ""]
        lines += list(published["markdown"])
    elif shots:
        lines += ["", "### Screenshots", f"Kept with the run's evidence under `{proof.get('dir_rel')}/`:"]
        for a in shots:
            lines.append(f"- `{a['id']}` ({a.get('viewport', '?')}): `{proof.get('dir_rel')}/{a['path']}` (sha256 {a['sha256'][:12]})")
    return lines


@dataclass(frozen=True)
class ProofBranch:
    """What to commit on a dedicated proof branch, and the markdown that shows it in a pull request."""

    branch: str
    files: dict[str, Path]  # path on the proof branch -> the checked file in the proof folder
    markdown: list[str]
    skipped: list[str]


def proof_branch_files(proof: dict[str, Any], *, owner: str, repo: str, run_id: str,
                       server: str = "https://github.com") -> ProofBranch:
    """For GitHub: the publishable screenshots (re-hashed: only those still matching), their branch paths and image links."""
    branch = f"orch-proof/{run_id}"
    folder = Path(proof["dir"])
    files: dict[str, Path] = {}
    markdown: list[str] = []
    skipped: list[str] = []
    for a in screenshots(proof):
        source = folder / a["path"]
        if not source.is_symlink() and source.is_file() and source.stat().st_size > limits.ARTIFACT.bytes:
            skipped.append(f"{a['id']}: " + limits.over_cap(a["path"], source.stat().st_size, limits.ARTIFACT))
            continue
        if source.is_symlink() or not source.is_file() or sha256_file(source) != a["sha256"]:
            skipped.append(f"{a['id']}: the file is missing or no longer matches its sha256")
            continue
        _content, problems = screenshot_problems(source, a, a["path"])
        if problems:
            skipped.append(f"{a['id']}: {problems[0]}")
            continue
        dest = f"proof/{run_id}/{PurePosixPath(a['path']).name}"
        files[dest] = source
        url = f"{server.rstrip('/')}/{quote(owner)}/{quote(repo)}/raw/{quote(branch)}/{quote(dest)}"
        markdown.append(f"![{a['id']} ({a.get('viewport', '?')})]({url})")
    return ProofBranch(branch=branch, files=files, markdown=markdown, skipped=skipped)


# proof outside the lifecycle (orch proof browser) ------------------------------------------

def check_runner_shots(browser_result: dict[str, Any], candidate_ns: int) -> list[str]:
    """Every viewport has a final-state screenshot captured after the final interaction and the candidate commit."""
    reasons = []
    last_step = int(browser_result.get("last_interaction_step", -1))
    last_ns = int(browser_result.get("last_interaction_ns", 0))
    for vp in REQUIRED_VIEWPORTS:
        shot = next((a for a in browser_result.get("artifacts", []) if a["kind"] == "screenshot" and a.get("name") == "final"
                     and a.get("viewport") == vp), None)
        if shot is None or f"{shot.get('width')}x{shot.get('height')}" != vp:
            reasons.append(f"no final-state screenshot at {vp}")
        elif int(shot["after_step"]) < last_step or int(shot["mtime_ns"]) < last_ns or int(shot["mtime_ns"]) < candidate_ns:
            reasons.append(f"the final-state screenshot at {vp} is not fresh")
    return reasons


def prove_browser(inp: ProofInputs, scenario_file: Path, base_url: str | None = None) -> dict[str, Any]:
    """Run a scenario on the candidate with the runner's browser and check what it captured (no agent involved)."""
    started_ns = _fresh_dir(inp.proof_dir)
    app = browser.app_spec(inp.policy_data)
    copy = inp.proof_dir / "scenario.json"
    try:
        shutil.copyfile(scenario_file, copy)
    except OSError as exc:
        return {"status": "blocked", "error": f"cannot read the scenario {scenario_file}: {exc.strerror}", "findings": [],
                "checked": {}, "criteria": [], "artifacts": [], "dir": str(inp.proof_dir)}
    fixed = base_url or (app.url if app and "{port}" not in app.url else None)
    scenario, problems = browser.load_scenario(copy, fixed)
    reasons = [f"scenario: {p}" for p in problems]
    checked: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_ns / 1e9)),
                               "schema": problems[0] if problems else "valid", "product": {"unchanged": True}}
    result: dict[str, Any] = {"ran": False, "ok": False, "artifacts": [], "steps": []}
    if scenario is not None:
        if base_url is None and app is None:
            reasons.append("the policy sets no proof.app: pass --base-url with an app already running, or add proof.app")
        else:
            result = run_browser(inp, scenario, inp.proof_dir / RUNNER_FOLDER, app, base_url)
            if not result.get("ok"):
                reasons.append(f"the browser run did not pass: {result.get('error')}")
            details, artifact_reasons = check_artifacts(inp.proof_dir, result.get("artifacts", []), started_ns)
            secrets_scanned, secret_reasons = check_secrets(inp.proof_dir, result.get("artifacts", []), {}, inp.secrets)
            paths_scanned, path_reasons = check_host_paths(inp.proof_dir, result.get("artifacts", []),
                                                           host_paths(inp.repo, inp.worktree, inp.proof_dir))
            shot_reasons = check_runner_shots(result, candidate_time_ns(inp.repo, inp.candidate_sha)) if result.get("ran") else []
            reasons += artifact_reasons + secret_reasons + path_reasons + shot_reasons
            checked.update(artifacts=details, secrets_scanned=secrets_scanned, host_paths_scanned=paths_scanned)
            checked["browser"] = {k: result.get(k) for k in ("ran", "ok", "error", "base_url", "viewports", "steps",
                                                             "last_interaction_step", "text_assertions", "console_errors",
                                                             "failed_requests")}
    try:
        rel_dir = inp.proof_dir.relative_to(inp.repo).as_posix()
    except ValueError:
        rel_dir = str(inp.proof_dir)
    return {
        "status": "blocked" if reasons else "passed", "error": reasons[0] if reasons else None, "findings": reasons,
        "checked": checked, "criteria": [],
        "artifacts": [{k: a.get(k) for k in ("id", "kind", "path", "sha256", "publishable", "source", "viewport", "width", "height")
                       if a.get(k) is not None} for a in result.get("artifacts", [])],
        "dir": str(inp.proof_dir), "dir_rel": rel_dir, "candidate_sha": inp.candidate_sha, "attempt": inp.attempt,
    }
