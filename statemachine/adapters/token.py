"""Where the GitHub token comes from: GH_TOKEN, then GITHUB_TOKEN, then `gh auth token`.

The token itself is never logged, printed or put in an error message; callers get the token and
the name of its source, and only the source is ever shown (for example "the token from GH_TOKEN
was rejected").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from statemachine.adapters.tools import ToolError, run_tool
from statemachine.errors import OrchError

ENV_NAMES: tuple[str, ...] = ("GH_TOKEN", "GITHUB_TOKEN")
GH_SOURCE = "`gh auth token`"


def find_token(env: Mapping[str, str] = os.environ, host: str | None = None) -> tuple[str, str]:
    """Return ``(token, source)``: GH_TOKEN, then GITHUB_TOKEN, then the gh CLI's stored login.

    ``host`` (for GitHub Enterprise, e.g. ``github.example.com``) is passed to
    ``gh auth token --hostname``. Empty variables count as unset. Raises OrchError with a hint when
    no token is found.
    """
    for name in ENV_NAMES:
        value = (env.get(name) or "").strip()
        if value:
            return value, name
    gh = shutil.which("gh", path=env.get("PATH", os.defpath))
    if gh is not None:
        cmd = [gh, "auth", "token"] + (["--hostname", host] if host else [])
        child_env = {k: v for k, v in env.items() if k not in ENV_NAMES}
        try:
            code, stdout, _ = run_tool(cmd, env=child_env, timeout=15)
        except ToolError:
            code, stdout = None, ""
        token = stdout.strip() if code == 0 else ""
        if token and not any(c.isspace() for c in token):
            return token, GH_SOURCE
    where = f" for {host}" if host else ""
    raise OrchError(
        f"no GitHub token found{where}: GH_TOKEN and GITHUB_TOKEN are unset"
        + ("" if gh is None else " and `gh auth token` returned none"),
        "set GH_TOKEN to a token that may read and write issues and pull requests, or run `gh auth login`",
    )
