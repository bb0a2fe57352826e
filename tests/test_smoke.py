"""The README's first command, in-process: the demo walks one issue from queued to review."""

from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.adapters.jail import probe
from tests.conftest import Cli


def test_demo_reaches_review_with_a_real_diff(cli: Cli, tmp_path: Path) -> None:
    code, data = cli.json("demo", "--dir", str(tmp_path / "demo"))
    assert code == 0, data
    assert data["state"] == "review"
    assert [s["to"] for s in data["path"]] == ["claimed", "implementing", "gating", "review"]
    assert data["pull_request"]["draft"] is True
    assert "+def longest_word(text: str) -> str:" in data["diff"]
    assert data["checks"]["unit-tests"]["exit_code"] == 0
    assert data["jailed"] is probe().ok  # where bubblewrap works, the demo's agent and checks ran in the jail


def test_the_demo_says_when_it_runs_unjailed(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_BWRAP", str(tmp_path / "no-bwrap"))
    probe.cache_clear()
    try:
        code, out, _err = cli("demo", "--dir", str(tmp_path / "demo"))
    finally:
        monkeypatch.delenv("ORCH_BWRAP")
        probe.cache_clear()
    assert code == 0
    assert "agent jail: cannot start here" in out and "the demo's own scripted agent runs unjailed" in out
    assert (tmp_path / "demo" / ".orch" / "policy.yaml").read_text().startswith("sandbox: none\n")
