"""Opens what a command needs for one repository: its policy, state store, tracker, git and agent."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from statemachine import catalog
from statemachine import policy as policy_mod
from statemachine.adapters.git import CliGit
from statemachine.adapters.jail import Jail
from statemachine.policy import Policy
from statemachine.ports import Agent, Browser, Tracker
from statemachine.repo_find import find_repo as find_repo  # by its .git, no git process: commands read it here
from statemachine.run_command import run_argv as run_argv  # the daemon reads it here
from statemachine.settings import AgentSettings
from statemachine.store import Memo, Store

STATE_DB = Path(".orch") / "state" / "orch.db"


@dataclass
class Runtime:
    repo: Path
    policy: Policy
    store: Store
    tracker: Tracker
    git: CliGit

    def make_agent(self, agent: AgentSettings | None = None) -> Agent:
        """The adapter for ``agent`` (a profile the issue selected), else for the policy's agent section."""
        from statemachine.adapters.agents import make_agent

        return make_agent(dict((agent or self.policy.config.agent).options), self.repo, self.jail)

    def make_browser(self) -> Browser:
        from statemachine.adapters.browser import Chromium

        return Chromium()

    @property
    def jail(self) -> Jail:
        return jail_for(self.policy, self.repo)

    def close(self) -> None:
        self.store.close()


def jail_for(policy: Policy, repo: Path | None) -> Jail:
    """The agent jail the policy's ``sandbox`` section describes, for ``repo``."""
    from statemachine.adapters.jail import Settings as JailSettings

    return Jail(JailSettings(**vars(policy.config.sandbox)), repo)


def probe_jail() -> None:
    """Ask once per process whether bubblewrap can build a jail on this machine (kept by jail_settings.probe): the
    daemon's fork server asks before it forks any run (statemachine/warmup.py)."""
    from statemachine.adapters.jail_settings import probe

    probe()


def open_store(root: Path, tracker: str | None = None) -> Store:
    return Store(root / STATE_DB, tracker)


def open_github(cfg: dict[str, object], memory: MutableMapping[str, str] | None = None) -> Tracker:
    """The GitHub tracker for the policy's owner/repo, with a token from GH_TOKEN, GITHUB_TOKEN or `gh auth token`."""
    from statemachine.adapters.github import GitHubTracker
    from statemachine.adapters.token import find_token

    # on GitHub Actions the runner says which GitHub it serves (GitHub Enterprise Server included); the policy wins
    on_actions = os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_API_URL")
    api_url = str(
        cfg.get("api_url") or (os.environ["GITHUB_API_URL"] if on_actions else "") or "https://api.github.com"
    )
    token, source = find_token()
    return GitHubTracker(
        str(cfg["owner"]),
        str(cfg["repo"]),
        token,
        api_url=api_url,
        token_source=source,
        runner_login=str(cfg["runner_login"]) if cfg.get("runner_login") else None,
        app_slug=app_slug(cfg),
        memory=memory,
    )


def app_slug(cfg: dict[str, object]) -> str | None:
    """The GitHub App slug an installation token acts for: ORCH_APP_SLUG (set by the Actions workflow, which knows
    which token it passes) over ``tracker.app_slug``; None when neither is set."""
    import os

    slug = os.environ.get("ORCH_APP_SLUG", "").strip() or cfg.get("app_slug")
    return str(slug) if slug else None


def open_runtime(repo: Path | None, policy_path: Path | None) -> Runtime:
    root = find_repo(repo)
    path = policy_mod.resolve_path(root, policy_path)
    try:
        display = str(path.relative_to(root))
    except ValueError:
        display = str(path)
    pol = policy_mod.load(path, display, catalog.builtin())  # the names it may use: orch's registry
    pol.path = path
    kind = pol.config.tracker.kind
    store = open_store(root, kind)  # the kind: what a damaged file's hint advises
    if kind == "local":
        from statemachine.adapters.local import LocalTracker

        tracker: Tracker = LocalTracker(store)
    else:
        try:
            tracker = open_github(pol.config.tracker.as_dict(), Memo(store))
        except BaseException:
            store.close()
            raise
    return Runtime(repo=root, policy=pol, store=store, tracker=tracker, git=CliGit(root, pol.config.idle_workspaces))
