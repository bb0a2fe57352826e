"""The GitHub Actions workflow `orch setup --actions` writes: GitHub's runners as the fleet, one issue per concurrency group."""

from __future__ import annotations

from statemachine import __version__

WORKFLOW_PATH = ".github/workflows/orch.yml"


def render(labels: tuple[str, ...] = ("agent:auto", "agent:plan-auto"), cron: str = "*/30 * * * *", python: str = "3.12",
           package: str | None = None) -> str:
    """A workflow running `orch daemon --once` on `issues: labeled` and on a schedule, with the least permissions it needs."""
    import json

    pkg = package or f"orch=={__version__}"
    wanted = json.dumps(list(labels))  # a JSON array in a single-quoted expression string
    names = " or ".join(labels)
    return f"""# Written by `orch setup --actions`. It runs orch on GitHub's runners: when an issue gets
# the {names} label, and on a schedule to pick up anything missed or interrupted.
name: orch

on:
  issues:
    types: [labeled]
  schedule:
    - cron: "{cron}"
  workflow_dispatch: {{}}

# Least privilege: push run branches, open draft pull requests, label and comment on issues.
permissions:
  contents: write
  issues: write
  pull-requests: write

# One group per issue (the schedule has its own); a run in progress is never cancelled.
concurrency:
  group: orch-${{{{ github.event.issue.number || 'scheduled' }}}}
  cancel-in-progress: false

jobs:
  orch:
    if: github.event_name != 'issues' || contains(fromJSON('{wanted}'), github.event.label.name)
    runs-on: ubuntu-latest
    timeout-minutes: 120
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: actions/setup-python@v5
        with:
          python-version: "{python}"
      - name: Install orch
        run: python -m pip install "{pkg}"
      - name: Run eligible issues once
        run: orch daemon --once --json
        env:
          GH_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}
          OPENAI_API_KEY: ${{{{ secrets.OPENAI_API_KEY }}}}
      - name: Keep the evidence
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: orch-evidence-${{{{ github.run_id }}}}
          path: .orch/runs/
          if-no-files-found: ignore
"""
