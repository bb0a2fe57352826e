"""Running a proof: the proof agent (ORCH_MODE=proof) against the candidate, the app and the runner's browser.

`prove` runs the agent, executes the agent's browser scenario itself when the policy says how to
start the app, and then judges the report with the checks (`checks.py`); `prove_browser` runs a
scenario with the runner's browser alone (`orch proof browser`). Both return the `proof` fact.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statemachine import limits
from statemachine import scenario as scenarios
from statemachine.ports import Browser, Git, Sandbox
from statemachine.proof.checks import (
    REQUIRED_VIEWPORTS,
    RUNNER_FOLDER,
    check_answers,
    check_artifacts,
    check_evidence_refs,
    check_host_paths,
    check_product,
    check_runner_shots,
    check_secrets,
    check_status,
    check_ui,
    criteria_for,
    host_paths,
    is_ui,
    judge,
    merge_artifacts,
    validate_report,
)
from statemachine.settings import Settings


@dataclass
class ProofInputs:
    """What a proof needs, whether the lifecycle or `orch proof` starts it."""

    repo: Path
    policy_data: dict[str, Any]  # the merged tree: scenario.app_spec reads proof.app from it
    config: Settings
    git: Git
    make_agent: Callable[[], Any]
    sandbox: Sandbox  # where the proof app runs (the agent jail)
    make_browser: Callable[[], Browser]
    issue: Any  # statemachine.model.Issue, with its comments
    worktree: Path
    base_sha: str
    candidate_sha: str
    branch: str
    attempt: int
    run_id: str
    proof_dir: Path
    findings: list[str] = field(default_factory=list)
    secrets: Any = (
        None  # statemachine.secrets.SecretSet: refused in artifacts, redacted in prompts and the agent's logs
    )
    # called with (phase, AgentResult) after each proof agent run: the lifecycle keeps it in the usage ledger
    on_agent_run: Callable[[str, Any], None] | None = None


BROWSER_SUMMARY = (
    "ran",
    "ok",
    "error",
    "base_url",
    "viewports",
    "steps",
    "last_interaction_step",
    "text_assertions",
    "console_errors",
    "failed_requests",
)


def browser_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the checked proof keeps of a browser run (the agent's proof and `orch proof browser` alike)."""
    return {k: result.get(k) for k in BROWSER_SUMMARY}


def candidate_time_ns(git: Git, sha: str) -> int:
    seconds = git.commit_time(sha)
    return seconds * 1_000_000_000 if seconds is not None else 0


def runner_prompt(
    phase: str,
    proof_dir: Path,
    criteria: list[dict[str, Any]],
    app: scenarios.AppSpec | None,
    browser_file: Path | None,
) -> str:
    from statemachine import resources

    lines = [
        "## Runner instructions for this proof run",
        "",
        f"Phase: {phase}. Proof folder: `{proof_dir}`. Save every artifact inside it and list each in the report",
        "with its path relative to the folder, its kind and its sha256. Artifacts must be regular files written",
        "during this run (no symlinks, no copies of older files). No artifact may contain credentials; mark an",
        "artifact publishable only when it names no host path. Do not edit product files: the runner compares the",
        "worktree before and after. `passed` needs high confidence on every criterion. Each artifact is at most",
        (
            f"{limits.human(limits.ARTIFACT.bytes)} ({limits.human(limits.ARTIFACTS_TOTAL.bytes)} in all) and its bytes must match its kind: "
            "a screenshot is a PNG or JPEG image (of the viewport, width and height you state, if you state them);"
        ),
        "command output, DOM snapshots and logs are text.",
        "",
        "Criteria (ids are stable):",
        *[f"- {c['id']}{' [UI]' if c['ui'] else ''}: {c['text']}" for c in criteria],
        "",
    ]
    if phase == "scenario":
        lines += [
            "The runner drives the browser itself. For the UI criteria, write `scenario.json` into the proof folder",
            '(schema below; URLs are paths on the app such as "/"); assert what the page must show with expect_text or',
            "wait_for_text. The runner starts the app, runs the steps, captures each final state at "
            + " and ".join(REQUIRED_VIEWPORTS)
            + ",",
            "the console log, failed requests and a DOM snapshot, then runs you again (phase report) with its record.",
            "If no criterion needs the browser, write the proof report now instead.",
            "",
            "```json",
            json.dumps(resources.schema("browser-scenario"), indent=1),
            "```",
            "",
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
        lines += [
            "The policy sets no `proof.app`, so the runner cannot capture browser evidence: UI criteria cannot pass.",
            "",
        ]
    lines += ["Proof report schema:", "```json", json.dumps(resources.schema("proof-report"), indent=1), "```"]
    if app is not None and phase == "scenario":
        lines[2:2] = [f"The app starts with `{app.command}` at {app.url} (the runner picks the port).", ""]
    return "\n".join(lines)


def _agent_run(
    inp: ProofInputs,
    phase: str,
    criteria: list[dict[str, Any]],
    report_path: Path,
    app: scenarios.AppSpec | None,
    browser_file: Path | None,
) -> dict[str, Any]:
    from statemachine import prompting

    values = prompting.issue_values(inp.issue, inp.repo, inp.config.rules, list(inp.findings))
    values.update(
        report_path=report_path, worktree=inp.worktree, branch=inp.branch, base_sha=inp.base_sha, attempt=inp.attempt
    )
    text = (
        prompting.render("proof", inp.repo, values)
        + "\n\n"
        + runner_prompt(phase, inp.proof_dir, criteria, app, browser_file)
    )
    text = inp.secrets.redact(text) if inp.secrets else text
    evidence = inp.proof_dir / f"agent-{phase}"
    evidence.mkdir(parents=True, exist_ok=True)
    extra = inp.sandbox.workspace(inp.worktree, evidence, inp.candidate_sha, inp.branch)
    env = {
        "ORCH_MODE": "proof",
        "ORCH_PROOF_PHASE": phase,
        "ORCH_PROOF_DIR": str(inp.proof_dir),
        "ORCH_PROOF_CRITERIA": json.dumps(criteria),
        "ORCH_PROOF_BROWSER_RESULT": str(browser_file or ""),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    result = inp.make_agent().run(inp.config.agent.request(text, inp.worktree, evidence, report_path, extra, env))
    if inp.on_agent_run is not None:
        inp.on_agent_run(phase, result)
    leaks: list[dict[str, str]] = []
    if inp.secrets:  # the agent's own folder (its log) is kept redacted; what it held blocks the proof
        from statemachine.inspect_candidate import redact_tree, value_findings

        for rel, hits in sorted(redact_tree(evidence, inp.secrets).items()):
            leaks += [f.as_json() for f in value_findings(hits, f"the proof agent's {rel} ({phase} phase)")]
    return {
        "phase": phase,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "idle_timed_out": result.idle_timed_out,
        "secret_values": leaks,
        "error": result.error,
        "log": result.log,
        "duration_seconds": round(result.duration_seconds, 3),
    }


def run_browser(
    inp: ProofInputs,
    scenario: dict[str, Any],
    out_dir: Path,
    app: scenarios.AppSpec | None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """The runner's browser run: the app started from a fresh worktree of the exact candidate, removed afterwards."""
    app_tree: Path | None = None
    try:
        if base_url is not None:
            return inp.make_browser().prove(scenario, out_dir, inp.proof_dir, base_url=base_url)
        if app is None:
            return inp.make_browser().prove(scenario, out_dir, inp.proof_dir)
        app_tree = inp.repo / ".orch" / "worktrees" / f"proof-app-{inp.run_id}-{inp.attempt}"
        inp.git.add_detached_worktree(app_tree, inp.candidate_sha)
        return inp.make_browser().prove(
            scenario, out_dir, inp.proof_dir, app=app, app_cwd=app_tree, sandbox=inp.sandbox
        )
    except scenarios.BrowserError as exc:
        return {"ran": False, "ok": False, "error": str(exc), "steps": [], "artifacts": []}
    except Exception as exc:  # Playwright could not launch or drive Chromium: recorded, so the proof is blocked
        return {
            "ran": False,
            "ok": False,
            "error": f"the browser run failed: {type(exc).__name__}: {str(exc)[:500]}",
            "steps": [],
            "artifacts": [],
        }
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
    started_ns = _fresh_dir(inp.proof_dir)
    criteria = criteria_for(inp.issue.body)
    app = scenarios.app_spec(inp.policy_data)
    report_path = inp.proof_dir / "proof-report.json"
    scenario_path = inp.proof_dir / "scenario.json"
    before = inp.git.capture(inp.worktree, inp.base_sha, ignore=inp.config.gates.ignore_untracked).tree
    git_before = inp.git.fingerprint(inp.worktree)

    runs = [_agent_run(inp, "scenario" if app else "report", criteria, report_path, app, None)]
    browser_result: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    runner_reasons: list[str] = []
    if runs[0]["exit_code"] == 0 and (scenario_path.exists() or scenario_path.is_symlink()):
        fixed_base = app.url if app and "{port}" not in app.url else None
        scenario, problems = scenarios.load_scenario(scenario_path, fixed_base)
        if problems or scenario is None:
            runner_reasons += [f"scenario.json: {p}" for p in problems]
        elif app is None:
            browser_result = {
                "ran": False,
                "ok": False,
                "error": "the policy sets no proof.app, so the runner cannot start the app",
                "steps": [],
                "artifacts": [],
            }
        else:
            browser_result = run_browser(inp, scenario, inp.proof_dir / RUNNER_FOLDER, app)
            record = inp.proof_dir / RUNNER_FOLDER / "result.json"
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(browser_result, indent=2))
            if report_path.exists() or report_path.is_symlink():
                report_path.unlink()  # the report comes from the run that has seen the runner's evidence
            runs.append(_agent_run(inp, "report", criteria, report_path, app, record))

    after = inp.git.capture(inp.worktree, inp.base_sha, ignore=inp.config.gates.ignore_untracked).tree
    git_after = inp.git.fingerprint(inp.worktree)
    changed = [] if before == after else inp.git.changed_paths(before, after)
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
        paths_scanned, path_reasons = check_host_paths(
            inp.proof_dir, artifacts, host_paths(inp.repo, inp.worktree, inp.proof_dir)
        )
        candidate_ns = candidate_time_ns(inp.git, inp.candidate_sha)
        ui_details: dict[str, Any] = {}
        ui_reasons: list[str] = []
        by_criterion = {c["id"]: c for c in criteria}
        for answer in report["criteria"]:
            if answer["status"] == "passed" and is_ui(by_criterion.get(answer["id"]), answer):
                ui_detail, ui_problems = check_ui(answer, browser_result, artifacts, candidate_ns, scenario)
                ui_details[answer["id"]] = ui_detail
                ui_reasons += ui_problems
        runner_reasons += (
            check_answers(criteria, report)
            + check_status(report)
            + merge_reasons
            + artifact_reasons
            + check_evidence_refs(report, artifacts)
            + secret_reasons
            + path_reasons
            + ui_reasons
        )
        checked.update(
            artifacts=details,
            secrets_scanned=secrets_scanned,
            host_paths_scanned=paths_scanned,
            ui=ui_details,
            criteria={"wanted": [c["id"] for c in criteria], "answered": [c["id"] for c in report["criteria"]]},
        )
        answers = [
            {
                "id": c["id"],
                "status": c["status"],
                "confidence": c["confidence"],
                "evidence": c["evidence"],
                "analysis": c["analysis"][:1000],
                "ui": is_ui(by_criterion.get(c["id"]), c),
            }
            for c in report["criteria"]
        ]
    if browser_result is not None:
        checked["browser"] = browser_summary(browser_result)
    verdict = judge(report=report, report_reasons=report_reasons, runs=runs, runner_reasons=runner_reasons)
    try:
        rel_dir = inp.proof_dir.relative_to(inp.repo).as_posix()
    except ValueError:
        rel_dir = str(inp.proof_dir)
    return {
        **verdict,
        "checked": checked,
        "criteria": answers,
        "summary": (report or {}).get("summary", ""),
        "artifacts": [
            {
                k: a.get(k)
                for k in ("id", "kind", "path", "sha256", "publishable", "source", "viewport", "width", "height")
                if a.get(k) is not None
            }
            for a in artifacts
        ],
        "dir": str(inp.proof_dir),
        "dir_rel": rel_dir,
        "report_path": str(report_path),
        "candidate_sha": inp.candidate_sha,
        "attempt": inp.attempt,
    }


# proof outside the lifecycle (orch proof browser) ------------------------------------------


def prove_browser(inp: ProofInputs, scenario_file: Path, base_url: str | None = None) -> dict[str, Any]:
    """Run a scenario on the candidate with the runner's browser and check what it captured (no agent involved)."""
    started_ns = _fresh_dir(inp.proof_dir)
    app = scenarios.app_spec(inp.policy_data)
    copy = inp.proof_dir / "scenario.json"
    try:
        shutil.copyfile(scenario_file, copy)
    except OSError as exc:
        return {
            "status": "blocked",
            "error": f"cannot read the scenario {scenario_file}: {exc.strerror}",
            "findings": [],
            "checked": {},
            "criteria": [],
            "artifacts": [],
            "dir": str(inp.proof_dir),
        }
    fixed = base_url or (app.url if app and "{port}" not in app.url else None)
    scenario, problems = scenarios.load_scenario(copy, fixed)
    reasons = [f"scenario: {p}" for p in problems]
    checked: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_ns / 1e9)),
        "schema": problems[0] if problems else "valid",
        "product": {"unchanged": True},
    }
    result: dict[str, Any] = {"ran": False, "ok": False, "artifacts": [], "steps": []}
    if scenario is not None:
        if base_url is None and app is None:
            reasons.append(
                "the policy sets no proof.app: pass --base-url with an app already running, or add proof.app"
            )
        else:
            result = run_browser(inp, scenario, inp.proof_dir / RUNNER_FOLDER, app, base_url)
            if not result.get("ok"):
                reasons.append(f"the browser run did not pass: {result.get('error')}")
            details, artifact_reasons = check_artifacts(inp.proof_dir, result.get("artifacts", []), started_ns)
            secrets_scanned, secret_reasons = check_secrets(inp.proof_dir, result.get("artifacts", []), {}, inp.secrets)
            paths_scanned, path_reasons = check_host_paths(
                inp.proof_dir, result.get("artifacts", []), host_paths(inp.repo, inp.worktree, inp.proof_dir)
            )
            shot_reasons = (
                check_runner_shots(result, candidate_time_ns(inp.git, inp.candidate_sha)) if result.get("ran") else []
            )
            reasons += artifact_reasons + secret_reasons + path_reasons + shot_reasons
            checked.update(artifacts=details, secrets_scanned=secrets_scanned, host_paths_scanned=paths_scanned)
            checked["browser"] = browser_summary(result)
    try:
        rel_dir = inp.proof_dir.relative_to(inp.repo).as_posix()
    except ValueError:
        rel_dir = str(inp.proof_dir)
    return {
        "status": "blocked" if reasons else "passed",
        "error": reasons[0] if reasons else None,
        "findings": reasons,
        "checked": checked,
        "criteria": [],
        "artifacts": [
            {
                k: a.get(k)
                for k in ("id", "kind", "path", "sha256", "publishable", "source", "viewport", "width", "height")
                if a.get(k) is not None
            }
            for a in result.get("artifacts", [])
        ],
        "dir": str(inp.proof_dir),
        "dir_rel": rel_dir,
        "candidate_sha": inp.candidate_sha,
        "attempt": inp.attempt,
    }
