"""`orch demo`: a temp repository with a small Python project, one local issue, run end to end by a scripted agent."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from statemachine.adapters.git import run_git
from statemachine.engine import Engine
from statemachine.errors import EXIT_BLOCKED, EXIT_OK, OrchError
from statemachine.output import Output

SOURCE = '''"""Small text statistics."""


def count_words(text: str) -> int:
    """Return how many whitespace-separated words ``text`` has."""
    return len(text.split())
'''

TESTS = """import unittest

from textstats import count_words


class CountWordsTest(unittest.TestCase):
    def test_counts(self) -> None:
        self.assertEqual(count_words("one two  three"), 3)
"""

ISSUE_BODY = """textstats needs a `longest_word(text)` function.

## Acceptance criteria
- `longest_word("a quick brownish fox")` returns `"brownish"`
- on a tie the first word wins; punctuation around words is ignored
- an empty text gives `""`
"""


def policy_text(python: str, jailed: bool = True) -> str:
    # the demo's agent is orch's own script: where bubblewrap cannot run, the demo (and only the demo) says so and
    # runs it unjailed; a repository's policy never falls back silently
    return (
        ("" if jailed else "sandbox: none\n")
        + f"""version: 1
extends: default
tracker:
  kind: local
agent:
  kind: command
  command: {python}
  args: ["-m", "statemachine.demo_agent"]
  timeout_seconds: 120
  idle_timeout_seconds: 60
checks:
  unit-tests:
    command: {python} -m unittest discover -q
    timeout_seconds: 120
"""
    )


def make_repo(root: Path, jailed: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    run_git(["init", "-q", "-b", "main"], root)
    (root / "textstats.py").write_text(SOURCE)
    (root / "test_textstats.py").write_text(TESTS)
    (root / "README.md").write_text("# textstats\n\nA tiny project for the orch demo.\n")
    (root / ".orch").mkdir(exist_ok=True)
    (root / ".orch" / "policy.yaml").write_text(policy_text(sys.executable, jailed))
    (root / ".gitignore").write_text(".orch/state/\n.orch/worktrees/\n.orch/runs/\n__pycache__/\n")
    ident = {
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@localhost",
    }
    run_git(["add", "-A"], root)
    run_git(["commit", "-q", "-m", "textstats: count_words"], root, ident)


def main(args: argparse.Namespace, out: Output) -> int:
    from statemachine.adapters.local import LocalTracker
    from statemachine.runtime import open_runtime

    if args.dir is not None:
        root = args.dir.resolve()
        if root.exists() and any(root.iterdir()):
            raise OrchError(f"{root} is not empty", "give --dir a new or empty folder")
        keep = True
    else:
        root = Path(tempfile.mkdtemp(prefix="orch-demo-")) / "textstats"
        keep = args.keep
    from statemachine.adapters.jail import probe

    jail = probe()
    try:
        make_repo(root, jail.ok)
        out.line(f"demo repository: {root}")
        out.line(
            f"agent jail: {jail.version}; the agent and the checks run in bubblewrap"
            if jail.ok
            else f"agent jail: cannot start here ({jail.reason}); the demo's own scripted agent runs unjailed. "
            "A real run refuses to run without the jail unless its policy says `sandbox: none` (docs/security.md)"
        )
        rt = open_runtime(root, None)
        try:
            assert isinstance(rt.tracker, LocalTracker)
            issue = rt.tracker.create_issue("Add longest_word to textstats", ISSUE_BODY, [rt.policy.label("auto")])
            out.line(f"filed local issue #{issue.number}: {issue.title} [{rt.policy.label('auto')}]")
            path = []
            for o in Engine(rt).iter_run(issue.number):
                if o.fired is None:
                    break
                path.append({"from": o.source, "trigger": o.fired.transition.trigger, "to": o.dest})
                out.line(f"  {o.source} --{o.fired.transition.trigger}--> {o.dest}")
            state, run_id = rt.store.state_of(issue.number)
            facts = rt.store.facts(run_id)
            pulls = rt.tracker.pulls(issue.number)
            diff = rt.git.diff(pulls[0].base_sha, pulls[0].head_sha) if pulls else ""
            pr: dict[str, Any] | None = None
            if pulls:
                p = pulls[0]
                pr = {
                    "number": p.number,
                    "title": p.title,
                    "head": p.head,
                    "base": p.base,
                    "draft": p.draft,
                    "head_sha": p.head_sha,
                    "base_sha": p.base_sha,
                    "body": p.body,
                }
            labels = rt.tracker.get_issue(issue.number).labels
        finally:
            rt.close()
        text = [f"issue #{issue.number} rests in {state}; labels: {', '.join(labels)}"]
        if pr:
            text += [
                "",
                f"draft pull request #{pr['number']}: {pr['title']}",
                f"  {pr['head']} -> {pr['base']} ({pr['head_sha'][:10]} on {pr['base_sha'][:10]}), draft: {pr['draft']}",
                "",
                pr["body"],
                "",
                diff,
            ]
        else:
            text.append(f"no pull request; evidence: {root / '.orch' / 'runs' / str(run_id)}")
        if keep:
            text.append(f"the demo repository is kept at {root}")
        out.emit(
            "demo",
            {
                "repo": str(root),
                "issue": issue.number,
                "state": state,
                "jailed": jail.ok,
                "path": path,
                "pull_request": pr,
                "diff": diff,
                "checks": facts.get("checks"),
            },
            "\n".join(text),
        )
        return EXIT_OK if state == "review" else EXIT_BLOCKED
    finally:
        if not keep:
            shutil.rmtree(root.parent if args.dir is None else root, ignore_errors=True)
