"""A full disk: orch stops with a clear message (no traceback, nothing half-written) and resumes once space is back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git

AGENT = """import json, os, sys
from pathlib import Path
once = Path(sys.argv[1])
if not once.exists():  # only the first run fills the disk
    once.write_text("filled")
    try:
        with open("big.bin", "wb") as fh:
            for _ in range(64):
                fh.write(os.urandom(1 << 20))
    except OSError as exc:
        print("agent: disk full:", exc, flush=True)
Path("app.py").write_text(Path("app.py").read_text() + "\\n\\ndef sub(a, b):\\n    return a - b\\n")
try:
    Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps({"status": "completed", "summary": "sub",
        "changed_files": sorted(["app.py"] + (["big.bin"] if Path("big.bin").exists() else [])), "validation": []}))
except OSError as exc:
    print("agent: cannot write the report:", exc, flush=True)
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def orch(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statemachine", *args, "--repo", str(repo)], capture_output=True, text=True, timeout=120
    )


def test_a_full_disk_gives_a_clear_error_and_the_run_resumes(small_disk: Path, tmp_path: Path) -> None:
    repo = small_disk / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n")
    agent = tmp_path / "agent.py"  # outside the small disk
    agent.write_text(AGENT)
    once = tmp_path / "filled-once"
    (repo / ".orch").mkdir()
    (repo / ".orch" / "policy.yaml").write_text(
        f"version: 1\nextends: default\nagent:\n  kind: command\n  command: {sys.executable}\n  args: ['{agent}', '{once}']\n"
        "  timeout_seconds: 60\n  idle_timeout_seconds: 30\n"
    )
    (repo / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    assert orch(repo, "issue", "new", "Add sub", "--label", "agent:auto").returncode == 0
    first = orch(repo, "run", "--issue", "1")
    assert "Traceback" not in first.stderr, first.stderr
    if first.returncode != 5:  # orch itself hit the full disk: a clear message and exit 1, not an internal error
        assert first.returncode == 1, first.stderr
        assert "orch: error:" in first.stderr
        assert any(w in first.stderr.lower() for w in ("full", "no space", "space left")), first.stderr
        freed = [p for p in repo.rglob("big.bin")]
        for big in freed:
            big.unlink()  # a maintainer frees space
        assert freed, sorted(str(p) for p in repo.rglob("*"))[:50]
        again = orch(repo, "run", "--issue", "1")
        usage = subprocess.run(["du", "-a", str(small_disk)], capture_output=True, text=True).stdout
        largest = sorted(usage.splitlines(), key=lambda x: -int(x.split()[0]))[:8]
        assert "Traceback" not in again.stderr and again.returncode in (0, 5), (again.stderr, largest)
    shown = orch(repo, "show", "--issue", "1", "--json")
    assert shown.returncode == 0
    import json

    state = json.loads(shown.stdout)["state"]
    assert state in ("blocked", "review")
    assert os.path.exists(repo / ".orch" / "state" / "orch.db")
