"""`orch proof auto|browser|android|ios --issue N`: rerun acceptance proof on an issue's candidate, outside the lifecycle.

Nothing here changes the issue's state or its run's facts: the evidence goes to a new folder under
`.orch/runs/RUN/proof-reruns/`, and the exit code says whether the proof passed (0) or not (5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

from statemachine import proof, secrets
from statemachine.errors import EXIT_BLOCKED, EXIT_OK, OrchError
from statemachine.output import Output
from statemachine.runtime import Runtime, open_runtime
from statemachine.scenario import mobile_unsupported


def _candidate_worktree(rt: Runtime, facts: dict[str, Any], run_id: str) -> tuple[Path, bool]:
    """The run's worktree when it still holds exactly the candidate; otherwise a fresh detached one (temporary)."""
    worktree = Path(facts.get("worktree") or "")
    if facts.get("worktree") and (worktree / ".git").exists():
        try:
            if rt.git.capture(
                worktree, facts["base_sha"], ignore=rt.policy.config.gates.ignore_untracked
            ).tree == facts.get("tree"):
                return worktree, False
        except OrchError:
            pass
    temp = rt.repo / ".orch" / "worktrees" / f"proof-rerun-{run_id}"
    rt.git.add_detached_worktree(temp, facts["candidate_sha"])
    return temp, True


def _render(target: str, number: int, fact: dict[str, Any]) -> str:
    lines = [
        f"proof ({target}) of issue #{number}, candidate {str(fact.get('candidate_sha', ''))[:12]}: {fact['status']}"
    ]
    if fact.get("checked"):
        lines.append(f"  checked: {proof.checked_summary(fact)}")
    for c in fact.get("criteria", []):
        lines.append(f"  {c['id']}: {c['status']} ({c['confidence']}), evidence: {', '.join(c['evidence']) or 'none'}")
    for s in (fact.get("checked", {}).get("browser") or {}).get("steps") or []:
        lines.append(f"  step {s['index']} {s['action']}: {'ok' if s.get('ok') else 'FAILED ' + str(s.get('error'))}")
    for a in fact.get("artifacts", []):
        extra = f" {a['viewport']}" if a.get("viewport") else ""
        lines.append(f"  artifact {a['id']} ({a['kind']}{extra}): {a['path']} sha256 {str(a.get('sha256', ''))[:12]}")
    for f in fact.get("findings", []):
        lines.append(f"  {'finding' if fact['status'] == 'needs-rework' else 'reason'}: {f}")
    lines.append(f"  evidence: {fact.get('dir')}")
    return "\n".join(lines)


def main(args: argparse.Namespace, out: Output) -> int:
    target = args.proof_command
    if target in ("android", "ios"):
        raise mobile_unsupported(target)
    rt = open_runtime(args.repo, args.policy)
    try:
        with rt.store.issue_lock(args.issue, owner=f"proof-pid-{os.getpid()}"):  # never beside a step of the same issue
            return _prove(args, out, rt, target)
    finally:
        rt.close()


def _prove(args: argparse.Namespace, out: Output, rt: Runtime, target: str) -> int:
    state, run_id = rt.store.state_of(args.issue)
    facts = rt.store.facts(run_id) if run_id else {}
    if not run_id or not facts.get("candidate_sha"):
        raise OrchError(
            f"issue #{args.issue} has no candidate commit to prove (state: {state})",
            f"run the issue until it has one: orch run --issue {args.issue}",
        )
    issue = rt.tracker.get_issue(args.issue)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{time.monotonic_ns() % 1_000_000:06d}"
    proof_dir = rt.repo / ".orch" / "runs" / run_id / "proof-reruns" / f"{stamp}-{target}"
    scenario_file = None
    if target == "browser":
        attempt_dir = rt.repo / ".orch" / "runs" / run_id / f"attempt-{facts.get('attempt', 0)}" / "proof"
        scenario_file = args.scenario.resolve() if args.scenario else attempt_dir / "scenario.json"
        if not scenario_file.is_file():
            raise OrchError(
                f"no scenario: {scenario_file} does not exist",
                "pass --scenario FILE (schemas/browser-scenario.schema.json)",
            )
    worktree, temporary = _candidate_worktree(rt, facts, run_id)
    try:
        inp = proof.ProofInputs(
            repo=rt.repo,
            policy_data=rt.policy.data,
            config=rt.policy.config,
            git=rt.git,
            make_agent=rt.make_agent,
            sandbox=rt.jail,
            make_browser=rt.make_browser,
            issue=issue,
            worktree=worktree,
            base_sha=facts["base_sha"],
            candidate_sha=facts["candidate_sha"],
            branch=facts.get("branch", ""),
            attempt=int(facts.get("attempt", 0)),
            run_id=run_id,
            proof_dir=proof_dir,
            findings=list(facts.get("findings", [])),
            secrets=secrets.for_run(rt.policy.config, rt.tracker),
        )
        if target == "auto":
            fact = proof.prove(inp)
        else:
            assert scenario_file is not None
            fact = proof.prove_browser(inp, scenario_file, args.base_url)
    finally:
        if temporary:
            rt.git.remove_worktree(worktree)
            shutil.rmtree(worktree, ignore_errors=True)
    data = {"issue": args.issue, "target": target, "run_id": run_id, "state": state, "proof": fact}
    out.emit("proof", data, _render(target, args.issue, fact))
    return EXIT_OK if fact["status"] == "passed" and not fact.get("error") else EXIT_BLOCKED
