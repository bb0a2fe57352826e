"""Shared kit for the tests that run orch against the GitHub emulator: the repository, the clones, the bot, the API.

Tests import from here, never from one another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import git
from tests.github_emulator import GitHubEmulator

AGENT = Path(__file__).parent / "agents" / "hostile.py"
OWNER, REPO = "acme", "widgets"
BOT, BOT_TOKEN = "orch-bot", "tok-orch-bot"


def emulator(tmp_path: Path) -> Iterator[GitHubEmulator]:
    """The emulator with alice (admin once make_project ran), reader (read) and the bot (write): the `gh` fixture
    (tests/conftest.py)."""
    with GitHubEmulator(tmp_path / "github") as emu:
        emu.add_user("alice", token="tok-alice")
        emu.add_user("reader", token="tok-reader")
        emu.add_user(BOT, token=BOT_TOKEN)
        yield emu


def orch(clone: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    full.update({"GH_TOKEN": BOT_TOKEN, **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "statemachine", *args, "--repo", str(clone)],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def orch_json(clone: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = orch(clone, *args, "--json")
    return code, json.loads(out)


def make_project(tmp_path: Path, gh: GitHubEmulator) -> Path:
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
    gh.add_repo(OWNER, REPO, default_branch="main", source=seed, default_labels=True)
    gh.set_permission(OWNER, REPO, "alice", "admin")
    gh.set_permission(OWNER, REPO, "reader", "read")
    gh.set_permission(OWNER, REPO, BOT, "write")
    return seed


def clone(gh: GitHubEmulator, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    git(tmp_path, "clone", "-q", gh.git_url(OWNER, REPO, token="tok-alice"), str(target))
    git(
        target, "remote", "set-url", "origin", gh.git_url(OWNER, REPO)
    )  # no credential in the clone: orch pushes with its own
    return target


def configure(clone_dir: Path, gh: GitHubEmulator) -> None:
    code, out, err = orch(clone_dir, "setup", "--github-owner", OWNER, "--github-repo", REPO)
    assert code == 0, err
    policy = clone_dir / ".orch" / "policy.yaml"
    text = policy.read_text()
    text = text.replace("tracker:\n", f"tracker:\n  api_url: {gh.api_url}\n", 1)
    import re

    text = re.sub(
        r"\nagent:\n(?:  .*\n|\s*#.*\n)*",
        f'\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ["{AGENT}", "honest"]\n\n',
        text,
        count=1,
    )
    text = text.replace("checks: {}", f"checks:\n  unit:\n    command: {sys.executable} -m unittest -q")
    policy.write_text(text)
    assert "kind: github" in text and sys.executable in text


def labelled_issue(gh: GitHubEmulator, title: str, actor: str = "alice") -> int:
    number = gh.create_issue(OWNER, REPO, title, body=f"{title}: add sub(a, b).", user="alice")
    gh.add_label_event(OWNER, REPO, number, "agent:auto", actor)
    return number


def api(gh: GitHubEmulator, path: str, token: str = "tok-alice") -> Any:
    import urllib.request

    req = urllib.request.Request(
        gh.api_url + path, headers={"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def api_pages(gh: GitHubEmulator, path: str) -> list[dict[str, Any]]:
    """Every page of a list endpoint, read as alice."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        sep = "&" if "?" in path else "?"
        req = urllib.request.Request(
            f"{gh.api_url}{path}{sep}per_page=100&page={page}", headers={"Authorization": "token tok-alice"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            items = json.loads(resp.read())
        out += items
        if len(items) < 100:
            return out
        page += 1
