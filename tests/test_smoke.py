"""The README's first command, in-process: the demo walks one issue from queued to review."""

from __future__ import annotations

from pathlib import Path


def test_demo_reaches_review_with_a_real_diff(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, data = cli.json("demo", "--dir", str(tmp_path / "demo"))
    assert code == 0, data
    assert data["state"] == "review"
    assert [s["to"] for s in data["path"]] == ["claimed", "implementing", "gating", "review"]
    assert data["pull_request"]["draft"] is True
    assert "+def longest_word(text: str) -> str:" in data["diff"]
    assert data["checks"]["unit-tests"]["exit_code"] == 0
