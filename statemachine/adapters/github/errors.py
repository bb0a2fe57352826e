"""The GitHub tracker's errors: each a ``TrackerError`` with a message and a hint for the user."""

from __future__ import annotations

from typing import Any

from statemachine.errors import NotFoundError, TrackerError


class GitHubError(TrackerError):
    """GitHub refused or failed a request; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class GitHubAuthError(GitHubError):
    """401: the token is wrong, expired or revoked."""


class GitHubPermissionError(GitHubError):
    """403 without a rate limit: the token may not do this."""


class GitHubRateLimited(GitHubError):
    """403/429 rate limit that is not worth waiting for here."""

    def __init__(
        self, message: str, hint: str | None = None, status: int | None = None, reset_at: float | None = None
    ) -> None:
        super().__init__(message, hint, status)
        self.reset_at = reset_at


class GitHubNotFound(GitHubError, NotFoundError):
    """404 (or a number that names a pull request where an issue is expected)."""


class GitHubValidationError(GitHubError):
    """422: GitHub validated the request and refused it; ``errors`` holds its details."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        status: int | None = 422,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, hint, status)
        self.errors = errors or []


class GitHubUnavailable(GitHubError):
    """5xx, a timeout or a network error that outlived every retry."""
