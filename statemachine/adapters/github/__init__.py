"""The GitHub tracker (the Tracker port over GitHub's REST API, through ghapi), in four parts:

transport.py  the shared ghapi client per API URL, the retry policy, rate-limit waits, ETags, the errors
mapping.py    GitHub's JSON as orch's model objects, and the limits on what orch writes
history.py    who applied a label, people's permissions, who edited an issue (GraphQL)
tracker.py    ``GitHubTracker``: reads and writes of issues, comments, labels and draft pull requests

The names below are the adapter's face: what the rest of orch and its tests import from here.
"""

from statemachine.adapters.github.errors import (
    GitHubAuthError,
    GitHubError,
    GitHubNotFound,
    GitHubPermissionError,
    GitHubRateLimited,
    GitHubUnavailable,
    GitHubValidationError,
)
from statemachine.adapters.github.mapping import (
    CI_FIX,
    JOB_TOKEN_LOGIN,
    MAX_BODY,
    _comment,
    job_token_ci_warning,
)
from statemachine.adapters.github.tracker import GitHubTracker

__all__ = [
    "CI_FIX",
    "JOB_TOKEN_LOGIN",
    "MAX_BODY",
    "GitHubAuthError",
    "GitHubError",
    "GitHubNotFound",
    "GitHubPermissionError",
    "GitHubRateLimited",
    "GitHubTracker",
    "GitHubUnavailable",
    "GitHubValidationError",
    "_comment",
    "job_token_ci_warning",
]
