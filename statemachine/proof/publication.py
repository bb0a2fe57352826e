"""Publishing a proof: the pull request's proof section, and the screenshots to commit on a proof branch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from statemachine import limits
from statemachine.proof.checks import REQUIRED_VIEWPORTS, screenshot_problems
from statemachine.scenario import sha256_file


def checked_summary(proof: dict[str, Any]) -> str:
    checked = proof.get("checked") or {}
    parts = [f"schema {checked.get('schema', '?')}"]
    crit = checked.get("criteria") or {}
    if crit:
        parts.append(f"{len(crit.get('answered', []))} of {len(crit.get('wanted', []))} criteria answered")
    arts = checked.get("artifacts") or []
    parts.append(
        f"{sum(1 for a in arts if a.get('ok'))} of {len(arts)} artifacts hashed, fresh and inside the proof folder"
    )
    parts.append(f"credentials scanned in {len(checked.get('secrets_scanned') or [])} text file(s)")
    parts.append(f"host paths scanned in {len(checked.get('host_paths_scanned') or [])} publishable text file(s)")
    product = checked.get("product") or {}
    parts.append("product unchanged" if product.get("unchanged") else "product CHANGED")
    b = checked.get("browser")
    if b:
        parts.append(
            f"browser run {'passed' if b.get('ok') else 'failed'}: {len(b.get('steps') or [])} step(s) at "
            + " and ".join(b.get("viewports") or REQUIRED_VIEWPORTS)
        )
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
        lines.append(
            f"- `{c['id']}` {c['status']} ({c['confidence']} confidence{', UI' if c.get('ui') else ''}): "
            f"{first[0] if first else ''} Evidence: {', '.join(f'`{e}`' for e in c.get('evidence', [])) or 'none'}."
        )
    shots = screenshots(proof)
    published = facts.get("proof_published") or {}
    if published.get("markdown"):
        lines += ["", "### Screenshots", f"Published on the proof branch `{published['branch']}`:", ""]
        lines += list(published["markdown"])
    elif shots:
        lines += ["", "### Screenshots", f"Kept with the run's evidence under `{proof.get('dir_rel')}/`:"]
        for a in shots:
            lines.append(
                f"- `{a['id']}` ({a.get('viewport', '?')}): `{proof.get('dir_rel')}/{a['path']}` (sha256 {a['sha256'][:12]})"
            )
    return lines


@dataclass(frozen=True)
class ProofBranch:
    """What to commit on a dedicated proof branch, and the markdown that shows it in a pull request."""

    branch: str
    files: dict[str, Path]  # path on the proof branch -> the checked file in the proof folder
    markdown: list[str]
    skipped: list[str]


def proof_branch_files(
    proof: dict[str, Any], *, owner: str, repo: str, run_id: str, server: str = "https://github.com"
) -> ProofBranch:
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
