"""Adaptive acceptance proof: a result reaches review only when every criterion rests on evidence the runner checked.

checks.py       the checks, side-effect free, each returning reasons; `judge` makes them the `proof` fact
run.py          running the proof agent, the app and the runner's browser (`prove`, `prove_browser`, the action)
publication.py  the pull request's proof section, and the screenshots for a proof branch

The names below are the package's face: what the rest of orch and its tests import from `statemachine.proof`.
"""

from statemachine.proof.checks import (
    HOST_PATH,
    MAX_REASONS,
    REQUIRED_VIEWPORTS,
    RUNNER_FOLDER,
    TEXT_KINDS,
    UI_WORDS,
    check_answers,
    check_artifacts,
    check_evidence_refs,
    check_host_paths,
    check_kind,
    check_product,
    check_runner_shots,
    check_secrets,
    check_status,
    check_ui,
    criteria_for,
    host_paths,
    inspect_artifact,
    is_ui,
    judge,
    mentions_ui,
    merge_artifacts,
    screenshot_problems,
    validate_report,
)
from statemachine.proof.publication import (
    ProofBranch,
    checked_summary,
    proof_branch_files,
    pull_section,
    screenshots,
)
from statemachine.proof.run import (
    ProofInputs,
    _fresh_dir,
    candidate_time_ns,
    prove,
    prove_browser,
    run_browser,
    runner_prompt,
)

__all__ = [
    "HOST_PATH",
    "MAX_REASONS",
    "REQUIRED_VIEWPORTS",
    "RUNNER_FOLDER",
    "TEXT_KINDS",
    "UI_WORDS",
    "ProofBranch",
    "ProofInputs",
    "_fresh_dir",
    "candidate_time_ns",
    "check_answers",
    "check_artifacts",
    "check_evidence_refs",
    "check_host_paths",
    "check_kind",
    "check_product",
    "check_runner_shots",
    "check_secrets",
    "check_status",
    "check_ui",
    "checked_summary",
    "criteria_for",
    "host_paths",
    "inspect_artifact",
    "is_ui",
    "judge",
    "mentions_ui",
    "merge_artifacts",
    "proof_branch_files",
    "prove",
    "prove_browser",
    "pull_section",
    "run_browser",
    "runner_prompt",
    "screenshot_problems",
    "screenshots",
    "validate_report",
]
