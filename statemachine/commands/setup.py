"""`orch setup`: write a starter .orch/policy.yaml (extends default) and ignore orch's state folders; idempotent."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from statemachine.adapters.git import run_git
from statemachine.errors import EXIT_OK
from statemachine.output import Output
from statemachine.runtime import find_repo

IGNORE_LINES = (".orch/state/", ".orch/worktrees/", ".orch/runs/")

STARTER = """\
# orch policy for this repository. It extends orch's bundled default policy:
# mappings merge key by key, anything else (lists included) replaces, and null removes a key.
# Reference: docs/policy.md. Check it with `orch lint`.
version: 1
extends: default

tracker:
  kind: local            # the embedded tracker (.orch/state/); `orch issue new ...` files issues
  base_branch: "{base}"

agent:
  kind: command          # any executable; it runs in the worktree with the prompt on stdin
  command: codex
  args: [exec, --full-auto, "-"]
  timeout_seconds: 1800
  idle_timeout_seconds: 600

checks: {{}}
#  tests:
#    command: python -m pytest -q
#    timeout_seconds: 900
"""


def github_origin(root: Path) -> tuple[str, str] | None:
    url = run_git(["remote", "get-url", "origin"], root, check=False).strip()
    m = re.match(r"^(?:https?://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)([^/]+)/(.+?)(?:\.git)?/?$", url)
    return (m.group(1), m.group(2)) if m else None


def plan(root: Path) -> list[tuple[Path, str, str]]:
    """Return (path, new content, what) for every file setup would write; empty when nothing changes."""
    writes = []
    policy = root / ".orch" / "policy.yaml"
    if not policy.exists():
        base = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False).strip()
        writes.append((policy, STARTER.format(base=base), "write the starter policy"))
    ignore = root / ".gitignore"
    current = ignore.read_text() if ignore.exists() else ""
    present = {line.strip() for line in current.splitlines()}
    missing = [line for line in IGNORE_LINES if line not in present]
    if missing:
        sep = "" if not current or current.endswith("\n") else "\n"
        block = "# orch's local state\n" + "\n".join(missing) + "\n"
        writes.append((ignore, current + sep + block, "ignore " + ", ".join(missing)))
    return writes


def main(args: argparse.Namespace, out: Output) -> int:
    root = find_repo(args.repo)
    writes = plan(root)
    origin = github_origin(root)
    notes = []
    if origin:
        notes.append(f"origin is GitHub ({origin[0]}/{origin[1]}); this version configures the local tracker")
    for path, content, _what in writes:
        if not args.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    verb = "would" if args.dry_run else "did"
    lines = [f"{verb}: {what} ({path.relative_to(root)})" for path, _c, what in writes] or ["nothing to do: already set up"]
    lines += notes
    if writes and not args.dry_run:
        lines.append("next: review .orch/policy.yaml, run `orch lint`, then `orch issue new TITLE --label agent:auto`")
    out.emit("setup", {"repo": str(root), "dry_run": args.dry_run,
                       "writes": [{"path": str(p.relative_to(root)), "what": w} for p, _c, w in writes], "notes": notes},
             "\n".join(lines))
    return EXIT_OK
