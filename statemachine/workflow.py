"""The GitHub Actions workflow `orch setup --actions` writes: GitHub's runners as the fleet, one issue per concurrency group."""

from __future__ import annotations

from typing import Any

from statemachine import __version__

WORKFLOW_PATH = ".github/workflows/orch.yml"

# Every action pinned by full commit SHA (the tag in the trailing comment), read from each action's repository.
ACTIONS = {
    "checkout": "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1",
    "setup-python": "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0",
    "upload-artifact": "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0",
    "create-github-app-token": "actions/create-github-app-token@1b10c78c7865c340bc4f6099eb2f838309f1e8c3 # v3.1.1",
    "cache/restore": "actions/cache/restore@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5",
    "cache/save": "actions/cache/save@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5",
}
# Where a job keeps the daemon's poll cursor between jobs (`orch daemon --poll-cursor`), in the Actions cache: outside
# the checkout (no agent's jail shows the runner's home) and the same path on every runner (the cache's version
# is derived from it).
POLL_CURSOR = "~/.orch-poll/cursor.json"

# The agent CLI each kind runs, pinned to the version orch's own CI tests with; `command` installs nothing.
AGENT_CLIS = {
    "codex": "npm install -g @openai/codex@0.169.0",
    "claude": "npm install -g @anthropic-ai/claude-code@2.1.197",
    "gemini": "npm install -g @google/gemini-cli@0.61.0",
    "opencode": "npm install -g opencode-ai@1.18.33",
    "aider": "pipx install aider-chat==0.86.2",
}

# The model key's variable when the policy names none (statemachine/adapters/codex.py and claude.py).
DEFAULT_API_KEY_ENV = {
    "codex": "OPENAI_API_KEY",
    "claude": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "opencode": "OPENAI_API_KEY",
    "aider": "OPENAI_API_KEY",
}

# The job token (secrets.GITHUB_TOKEN) is an installation token of the GitHub Actions app: it acts as this bot.
JOB_TOKEN_SLUG = "github-actions"


def agent_key_env(agent: dict[str, object]) -> str | None:
    """The variable holding the model key for the policy's ``agent`` section (None: the agent needs none)."""
    kind = str(agent.get("kind") or "codex")
    if kind not in DEFAULT_API_KEY_ENV:
        return None
    if "api_key_env" in agent:
        return str(agent["api_key_env"]) if agent["api_key_env"] else None
    return DEFAULT_API_KEY_ENV[kind]


def install_spec(dist: Any = None) -> tuple[str | None, str]:
    """What GitHub's runners should ``pip install`` to get exactly this orch, from its installation record (PEP 610
    ``direct_url.json``), and where that came from; None when this orch came from somewhere a runner cannot reach
    (a local folder or file), so that the caller asks instead of guessing a name on a public index."""
    import json
    from importlib import metadata

    if dist is None:
        try:
            dist = metadata.distribution("orch")
        except metadata.PackageNotFoundError:
            return None, "orch is not installed as a package here"
    raw = dist.read_text("direct_url.json")
    if not raw:
        return f"orch=={dist.version}", "installed from a package index"
    try:
        info = json.loads(raw)
    except ValueError:
        return None, "its installation record (direct_url.json) is unreadable"
    url = str(info.get("url") or "")
    vcs = info.get("vcs_info") or {}
    if vcs.get("vcs") == "git" and vcs.get("commit_id") and not url.startswith("file:"):
        return f"orch @ git+{url}@{vcs['commit_id']}", "installed from git at a commit"
    archive = info.get("archive_info") or {}
    digest = archive.get("hash") or next((f"{k}={v}" for k, v in sorted((archive.get("hashes") or {}).items())), "")
    if "archive_info" in info and url.startswith("https://"):
        return (f"orch @ {url}#{digest}" if digest else f"orch @ {url}"), "installed from a downloaded archive"
    where = url.removeprefix("file://") or "a local path"
    return None, f"installed from {where}, which GitHub's runners cannot reach"


def render(
    labels: tuple[str, ...] = ("agent:auto", "agent:plan-auto"),
    cron: str = "*/30 * * * *",
    python: str = "3.12",
    package: str | None = None,
    agent_kind: str = "codex",
    api_key_env: str | None = "",
) -> str:
    """A workflow running `orch daemon --once` on `issues: labeled` and on a schedule, with the least permissions it needs.

    ``agent_kind`` picks the agent CLI to install; ``api_key_env`` names the model key's secret ("" means the kind's
    default, None means no key).
    """
    import json

    pkg = package or f"orch=={__version__}"
    wanted = json.dumps(list(labels))  # a JSON array in a single-quoted expression string
    names = " or ".join(labels)
    key = DEFAULT_API_KEY_ENV.get(agent_kind) if api_key_env == "" else api_key_env
    cli = AGENT_CLIS.get(agent_kind)
    install_agent = (
        f"""      - name: Install the agent CLI ({agent_kind}, pinned)
        run: {cli}
"""
        if cli
        else ""
    )
    key_line = (
        f"""          # The model key reaches this step only; orch hands it to the agent alone (the jail's
          # environment allowlist never passes it to checks).
          {key}: ${{{{ secrets.{key} }}}}
"""
        if key
        else ""
    )
    return f"""# Written by `orch setup --actions`. It runs orch on GitHub's runners: when an issue gets
# the {names} label, and on a schedule to pick up anything missed or interrupted.
#
# orch's identity, in order of preference (docs/github.md "GitHub Actions"):
#  - a GitHub App: repository secrets ORCH_APP_ID and ORCH_APP_PRIVATE_KEY. The app needs Contents: write,
#    Issues: write, Pull requests: write, Metadata: read. Its pull requests run the repository's CI.
#  - a fine-grained personal access token in the secret ORCH_TOKEN, with the same permissions on this repository.
#  - otherwise the job token, which acts as github-actions[bot]: pull requests it opens do NOT trigger the
#    repository's CI (GitHub's rule against recursive runs); `orch doctor` and the report comment say so.
name: orch

on:
  issues:
    types: [labeled]
  schedule:
    - cron: "{cron}"
  workflow_dispatch: {{}}

# Least privilege for the job token: push run branches, open draft pull requests, label and comment on issues.
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
    env:
      ORCH_HAS_APP: ${{{{ secrets.ORCH_APP_ID != '' && secrets.ORCH_APP_PRIVATE_KEY != '' }}}}
    steps:
      - name: Mint a GitHub App token (when ORCH_APP_ID and ORCH_APP_PRIVATE_KEY are set)
        id: app
        if: env.ORCH_HAS_APP == 'true'
        uses: {ACTIONS["create-github-app-token"]}
        with:
          app-id: ${{{{ secrets.ORCH_APP_ID }}}}
          private-key: ${{{{ secrets.ORCH_APP_PRIVATE_KEY }}}}
          permission-contents: write
          permission-issues: write
          permission-pull-requests: write
          permission-metadata: read
      - uses: {ACTIONS["checkout"]}
        with:
          fetch-depth: 0
          persist-credentials: false  # orch pushes with its own token; nothing else may reuse one from .git/config
      - uses: {ACTIONS["setup-python"]}
        with:
          python-version: "{python}"
      - name: Install the jail (bubblewrap)
        # ubuntu-latest (24.04) lets AppArmor restrict unprivileged user namespaces, which bubblewrap needs
        # to build the jail without root: lift that restriction for this throwaway runner.
        run: |
          sudo apt-get update
          sudo apt-get install -y bubblewrap
          sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
{install_agent}      - name: Install orch
        run: python -m pip install "{pkg}"
      - name: Restore the poll cursor (where the last job's poll stopped; an idle job then costs one request)
        uses: {ACTIONS["cache/restore"]}
        with:
          path: {POLL_CURSOR}
          key: orch-poll-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}
          restore-keys: orch-poll-
      - name: Run eligible issues once
        id: daemon
        # The issue of an `issues` event first (so that labelling ten issues spreads ten jobs over them); the claim
        # protocol keeps two jobs off one issue either way. The poll cursor is saved below only when it changed.
        run: |
          cursor={POLL_CURSOR.replace("~", "$HOME", 1)}
          before="$(sha256sum 2>/dev/null < "$cursor" || true)"
          status=0
          orch daemon --once --json --first "${{ORCH_EVENT_ISSUE:-0}}" --poll-cursor "$cursor" || status=$?
          if [ "$(sha256sum 2>/dev/null < "$cursor" || true)" != "$before" ]; then
            echo "cursor-changed=true" >> "$GITHUB_OUTPUT"
          fi
          exit "$status"
        env:
          ORCH_EVENT_ISSUE: ${{{{ github.event.issue.number }}}}
          GH_TOKEN: ${{{{ steps.app.outputs.token || secrets.ORCH_TOKEN || secrets.GITHUB_TOKEN }}}}
          # An installation token cannot read its own user: orch acts as <slug>[bot] (the app's, or the job token's).
          ORCH_APP_SLUG: ${{{{ steps.app.outputs.app-slug || (secrets.ORCH_TOKEN == '' && '{JOB_TOKEN_SLUG}' || '') }}}}
{key_line}      - name: Gather the evidence
        if: always()
        # Only the run folders (orch redacts secret values in them before they reach the disk), never .orch/state/
        # (the journal). Left out: the agents' own state (.codex, claude-config, gemini-home: sessions and caches), each attempt's
        # private git directory, and anything that is not a regular file (a symlink would upload what it points to).
        run: |
          rm -rf orch-evidence && mkdir orch-evidence
          if [ -d .orch/runs ]; then cp -R .orch/runs/. orch-evidence/; fi
          find orch-evidence -depth -type d \\( -name .codex -o -name claude-config -o -name gemini-home -o -name git \\) -exec rm -rf {{}} +
          find orch-evidence ! -type f ! -type d -delete
      - name: Keep the evidence
        if: always()
        uses: {ACTIONS["upload-artifact"]}
        with:
          name: orch-evidence-${{{{ github.run_id }}}}
          path: orch-evidence/
          if-no-files-found: ignore
          retention-days: 14
      - name: Keep the poll cursor
        # Caches cannot be updated: a new entry per job that moved the cursor; the restore above takes the newest.
        if: always() && steps.daemon.outputs.cursor-changed == 'true'
        uses: {ACTIONS["cache/save"]}
        with:
          path: {POLL_CURSOR}
          key: orch-poll-${{{{ github.run_id }}}}-${{{{ github.run_attempt }}}}
"""
