"""Who the GitHub tracker acts as: the login its token writes as, learned once (``identity``)."""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping

from statemachine.adapters.github.errors import GitHubError, GitHubPermissionError
from statemachine.adapters.github.transport import GitHubTransport
from statemachine.errors import OrchError


class Identity(GitHubTransport):
    """The tracker's identity: only what this login wrote counts as orch's."""

    expected_login: str | None  # tracker.runner_login: only a check against the learned identity
    app_slug: str | None  # a GitHub App installation token acts as `<app_slug>[bot]`
    _login: str | None
    memory: MutableMapping[str, str] | None  # kept between processes (store.Memo), keyed by a digest of the token

    def identity(self) -> str:
        """The login orch writes as, learned from the token once per tracker (one request, then remembered).

        A user token (or a bot account's) answers ``GET /user``. A GitHub App installation token is refused
        there (403): the app acts as ``<slug>[bot]``, and the slug comes from ``tracker.app_slug`` (``GET /app``
        needs the app's JWT, which orch never holds). Without a slug that is an error, never "trust everyone".
        ``tracker.runner_login``, when set, is only checked against what was learned.
        """
        key = "github-login:" + hashlib.sha256(f"{self.api_url}\0{self._token}".encode()).hexdigest()[:32]
        if self._login is None and self.memory is not None and self.memory.get(key):
            self._login = self._checked(self.memory[key])
        if self._login is None:
            try:
                resp = self._send("read the token's user", self._op("users", "get_authenticated"), repo_scoped=False)
                login = str((self._json(resp) or {}).get("login") or "")
            except GitHubPermissionError:
                if not self.app_slug:
                    raise GitHubPermissionError(
                        "the token cannot read its own user (GET /user answered 403): it looks like a GitHub App "
                        "installation token",
                        "set tracker.app_slug to the app's slug; orch then acts as <slug>[bot]",
                        403,
                    ) from None
                login = f"{self.app_slug}[bot]"
            if not login:
                raise GitHubError("GitHub did not say which user the token acts as", "check the token", None)
            self._login = self._checked(login)
            if self.memory is not None:
                self.memory[key] = login
        return self._login

    def _checked(self, login: str) -> str:
        if self.expected_login and login.lower() != self.expected_login.lower():
            raise OrchError(
                f"the token acts as {login}, but tracker.runner_login says {self.expected_login}",
                "use the runner's token, or correct (or remove) tracker.runner_login",
            )
        return login

    def whoami(self) -> str:
        """The login the token acts as (``identity``)."""
        return self.identity()

    @property
    def runner_login(self) -> str:
        """The runner's identity (``identity``); only what it wrote counts as orch's."""
        return self.identity()
