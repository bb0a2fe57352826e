"""`orch doctor`: is this repository ready? Policy, origin, token and its rights, labels, base branch, git, the agent CLI."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from typing import Any

from statemachine.errors import EXIT_ERROR, EXIT_OK, OrchError
from statemachine.output import Output


def _check(results: list[dict[str, Any]], name: str, fn: Callable[[], str], fix: str) -> bool:
    try:
        detail = fn()
        results.append({"check": name, "ok": True, "detail": detail, "fix": None})
        return True
    except OrchError as exc:
        results.append({"check": name, "ok": False, "detail": exc.message, "fix": exc.hint or fix})
        return False


def main(args: argparse.Namespace, out: Output) -> int:
    from statemachine import policy as policy_mod
    from statemachine.runtime import find_repo, jail_for, open_runtime

    results: list[dict[str, Any]] = []
    root = find_repo(args.repo)
    state: dict[str, Any] = {}

    def policy_ok() -> str:
        path = policy_mod.resolve_path(root, args.policy)
        try:
            pol = policy_mod.load(path, str(path))
        except OrchError as exc:
            raise OrchError(str(exc).splitlines()[0], "run `orch lint` and fix what it lists") from None
        pol.path = path
        state["policy"] = pol
        return f"{path} is valid ({len(pol.transitions)} transitions, tracker {pol.config.tracker.kind})"

    def git_ok() -> str:
        if shutil.which("git") is None:
            raise OrchError("git is not on PATH", "install git")
        return "git found"

    def agent_ok() -> str:
        cfg = state["policy"].config.agent
        from statemachine.adapters.agents import make_agent

        agent = make_agent(dict(cfg.options), root, None)
        resolve = getattr(agent, "resolve", None)
        program = str(getattr(agent, "command", None) or cfg.command or cfg.kind)  # codex -> codex, claude -> claude
        found = resolve() if resolve else shutil.which(program)
        if not found:
            raise OrchError(
                f"the agent program `{program}` (agent.kind {cfg.kind}) is not installed or not on PATH",
                AGENT_INSTALL.get(cfg.kind, "install it")
                + (", or set agent.command to its path" if cfg.kind != "command" else ", or fix agent.command"),
            )
        return f"agent {cfg.kind}: {found}"

    def commands_ok() -> list[dict[str, Any]]:
        from statemachine import preflight, programs

        pol = state["policy"]
        shown = preflight.policy_file(root, pol)
        rows = []
        for m in programs.missing(pol.config, root, jail_for(pol, root).search_roots()):
            rows.append(
                {
                    "check": "commands",
                    "ok": False,
                    "detail": f"{_where(pol, shown, m.path)}{m.key}: {m.message()}",
                    "fix": m.fix(shown),
                    "key": m.key,
                }
            )
        if not rows:
            listed = programs.commands(pol.config)
            detail = (
                f"the program of each of the {len(listed)} check command(s) is found"
                if listed
                else "no check configured (checks: {}): only the gates judge a candidate"
            )
            rows.append({"check": "commands", "ok": True, "detail": detail, "fix": None})
        return rows

    def jail_ok() -> str:
        from statemachine.adapters.jail import Jail

        jail: Jail = jail_for(state["policy"], root)
        if not jail.enabled:
            return (
                "sandbox: none: agents and checks run unjailed, with your user's rights (only for a disposable machine)"
            )
        jail.require()
        p = jail.status()
        return f"{p.version or 'bubblewrap'} ({p.bwrap}): agents, checks and the proof app run jailed"

    if not _check(results, "policy", policy_ok, "run `orch lint`"):
        return _finish(out, results)
    _check(results, "git", git_ok, "install git")
    _check(results, "jail", jail_ok, "install bubblewrap (apt-get install bubblewrap)")
    _check(results, "agent", agent_ok, "install the agent CLI")
    results += commands_ok()
    pol = state["policy"]
    if pol.config.tracker.kind == "github":
        from statemachine.commands.setup import origin_url, owner_repo_of, parse_github_url

        tr = pol.config.tracker
        enterprise = bool(tr.api_url) and "api.github.com" not in str(tr.api_url)

        def origin_ok() -> str:
            url = origin_url(root)
            parsed = (owner_repo_of(url) if enterprise else parse_github_url(url)) if url else None
            if parsed is None:
                raise OrchError(
                    f"origin ({url or 'missing'}) is not a GitHub repository",
                    "git remote add origin git@github.com:OWNER/REPO.git",
                )
            if (parsed[0].lower(), parsed[1].lower()) != (str(tr.owner).lower(), str(tr.repo).lower()):
                raise OrchError(
                    f"origin is {parsed[0]}/{parsed[1]} but the policy names {tr.owner}/{tr.repo}",
                    "fix tracker.owner / tracker.repo, or the origin remote",
                )
            return f"origin is {parsed[0]}/{parsed[1]}"

        _check(results, "origin", origin_ok, "")
        try:
            rt = open_runtime(root, args.policy)
        except OrchError as exc:
            results.append({"check": "token", "ok": False, "detail": exc.message, "fix": exc.hint})
            return _finish(out, results)
        try:
            tracker: Any = rt.tracker

            def token_ok() -> str:
                who = tracker.whoami()
                info = tracker.repo_info()
                perms = info.get("permissions") or {}
                if not perms.get("push") and not perms.get("admin") and not perms.get("maintain"):
                    raise OrchError(
                        f"{who} cannot write to {tr.owner}/{tr.repo} (permissions: {perms})",
                        "use a token with issues, pull requests and contents write access",
                    )
                state["default_branch"] = info.get("default_branch")
                return f"authenticated as {who}; can write issues, pull requests and contents"

            def labels_ok() -> str:
                missing = []
                for spec in pol.config.labels.values():
                    if tracker.ensure_label(spec.name, spec.color, spec.description, dry_run=True) == "created":
                        missing.append(spec.name)
                if missing:
                    raise OrchError("missing labels: " + ", ".join(missing), "run `orch setup --prepare-labels`")
                return f"all {len(pol.config.labels)} labels exist"

            def base_ok() -> str:
                base = tr.base_branch or state.get("default_branch") or "main"
                if not tracker.branch_exists(base):
                    raise OrchError(
                        f"base branch {base!r} does not exist on GitHub", "push it or set tracker.base_branch"
                    )
                return f"base branch {base} exists"

            if _check(results, "token", token_ok, "set GH_TOKEN to a token with repo access"):
                if _check(results, "identity", lambda: _identity(tracker), "check the token"):
                    _ci_check(results, tracker.identity())
                _check(results, "labels", labels_ok, "run `orch setup --prepare-labels`")
                _check(results, "base branch", base_ok, "set tracker.base_branch")
        finally:
            rt.close()
    else:
        from statemachine.adapters.local import RUNNER

        results.append(
            {
                "check": "identity",
                "ok": True,
                "fix": None,
                "detail": f"the runner acts as {RUNNER}; only markers it writes count as orch's",
            }
        )
    return _finish(out, results)


AGENT_INSTALL = {
    "codex": "install the Codex CLI (npm install -g @openai/codex)",
    "claude": "install Claude Code (npm install -g @anthropic-ai/claude-code)",
    "gemini": "install Gemini CLI (npm install -g @google/gemini-cli)",
    "opencode": "install OpenCode (npm install -g opencode-ai)",
    "aider": "install Aider (pipx install aider-chat)",
}


def _where(pol: Any, shown: str, path: tuple[str, ...]) -> str:
    """``FILE:LINE: `` of the key at ``path`` in the policy file that sets it, or nothing when it cannot be told."""
    from statemachine.errors import PolicyError
    from statemachine.yamlsrc import load_file

    if pol.path is None:
        return ""
    try:
        found = load_file(pol.path, shown).position(path)
    except (PolicyError, OSError):
        return ""
    if found is None or found[0] < len(path):
        return ""
    return f"{shown}:{found[1]}: "


def _identity(tracker: Any) -> str:
    return f"the runner acts as {tracker.identity()} (learned from the token); only markers it writes count as orch's"


def _ci_check(results: list[dict[str, Any]], login: str) -> None:
    """A warning (not a failure) when orch acts as the job token: its pull requests run no CI."""
    from statemachine.adapters.github import CI_FIX, job_token_ci_warning

    warning = job_token_ci_warning(login)
    if warning:
        results.append({"check": "ci", "ok": True, "warning": True, "detail": warning, "fix": CI_FIX})


def _finish(out: Output, results: list[dict[str, Any]]) -> int:
    ok = all(r["ok"] for r in results)
    lines = []
    for r in results:
        lines.append(f"{'warn' if r.get('warning') else 'ok  ' if r['ok'] else 'FAIL'} {r['check']}: {r['detail']}")
        if (not r["ok"] or r.get("warning")) and r["fix"]:
            lines.append(f"     fix: {r['fix']}")
    out.emit("doctor", {"ok": ok, "checks": results}, "\n".join(lines))
    return EXIT_OK if ok else EXIT_ERROR
