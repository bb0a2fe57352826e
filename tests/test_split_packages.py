"""The GitHub adapter and the proof are packages of small modules whose faces keep every name imported from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from statemachine import proof
from statemachine.adapters import github
from statemachine.adapters.github import transport
from statemachine.errors import NotFoundError, TrackerError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "statemachine" / "adapters" / "github", ROOT / "statemachine" / "proof"]

# what orch and its tests import from the packages' faces
GITHUB_NAMES = [
    "CI_FIX",
    "MAX_BODY",
    "GitHubAuthError",
    "GitHubError",
    "GitHubNotFound",
    "GitHubPermissionError",
    "GitHubRateLimited",
    "GitHubTracker",
    "GitHubUnavailable",
    "GitHubValidationError",
    "_comment",
    "job_token_ci_warning",
]
PROOF_NAMES = [
    "ProofInputs",
    "_fresh_dir",
    "check_answers",
    "check_host_paths",
    "check_secrets",
    "check_status",
    "check_ui",
    "checked_summary",
    "criteria_for",
    "host_paths",
    "inspect_artifact",
    "judge",
    "merge_artifacts",
    "proof_branch_files",
    "prove",
    "prove_browser",
    "pull_section",
]


@pytest.mark.parametrize("module, names", [(github, GITHUB_NAMES), (proof, PROOF_NAMES)])
def test_the_faces_keep_every_imported_name(module: Any, names: list[str]) -> None:
    assert not [n for n in names if not hasattr(module, n)]
    assert not [n for n in module.__all__ if not hasattr(module, n)]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_module_is_over_500_lines(package: Path) -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert len(sizes) >= 4
    assert not {name: n for name, n in sizes.items() if n > 500}


def test_the_errors_are_the_transports_own() -> None:
    assert github.GitHubNotFound is transport.GitHubNotFound  # type: ignore[attr-defined]  # the point: not re-exported
    assert issubclass(github.GitHubNotFound, NotFoundError) and issubclass(github.GitHubError, TrackerError)
    assert issubclass(github.GitHubTracker, transport.GitHubTransport)


def test_importing_the_proof_does_not_import_the_actions() -> None:
    """reporting imports proof.pull_section; the proof reaches the actions only when its action runs (no circle)."""
    code = "import sys, statemachine.proof; print('statemachine.actions' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
