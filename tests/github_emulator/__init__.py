"""A local, stateful GitHub for tests: REST API checked against GitHub's OpenAPI description, git over HTTP.

    from tests.github_emulator import GitHubEmulator
    with GitHubEmulator(tmp_path) as gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_repo("acme", "widgets", default_branch="main", source=repo_path)
        gh.set_permission("acme", "widgets", "alice", "write")
        gh.submit_review("acme", "widgets", 2, "alice", "COMMENT", "looks fine")  # a review of pull #2, no HTTP
        ...  # point a client at gh.api_url, push to gh.git_url("acme", "widgets")
    # leaving the block raises OpenAPIViolation if any request or response broke the description

Or use the pytest fixture: ``from tests.github_emulator import github_emulator`` in a test module
(importing a fixture registers it); its teardown fails the test on any violation.

GitHub's description comes from the npm package ``@octokit/openapi`` that ``.ci/run`` installs
into ``.ci/node`` (override with ``ORCH_GITHUB_OPENAPI``); it is loaded once per process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .openapi import (
    DEFAULT_SPEC,
    SPEC_ENV,
    SPEC_VERSION,
    OpenAPISpec,
    SpecMissing,
    load_spec,
    spec_path,
)
from .server import (
    FAULT_KINDS,
    ApiError,
    Fault,
    GitHubEmulator,
    LogEntry,
    OpenAPIViolation,
)
from .state import REVIEW_STATES, ROLES, State

__all__ = [
    "DEFAULT_SPEC",
    "FAULT_KINDS",
    "REVIEW_STATES",
    "ROLES",
    "SPEC_ENV",
    "SPEC_VERSION",
    "ApiError",
    "Fault",
    "GitHubEmulator",
    "LogEntry",
    "OpenAPISpec",
    "OpenAPIViolation",
    "SpecMissing",
    "State",
    "github_emulator",
    "load_spec",
    "spec_path",
]


@pytest.fixture
def github_emulator(tmp_path: Path) -> Iterator[GitHubEmulator]:
    """A started emulator; at teardown, any OpenAPI violation fails the test."""
    gh = GitHubEmulator(tmp_path, check_on_exit=False)
    with gh:
        yield gh
    gh.check()


# The package is reachable both as `tests.github_emulator` (orch's editable install puts the
# project root on sys.path) and as `github_emulator` (pytest puts tests/ on sys.path). Alias the
# loaded modules under both names so the 13 MB description is never loaded twice in one process.
_other = "github_emulator" if __name__ == "tests.github_emulator" else "tests.github_emulator"
for _name, _mod in list(sys.modules.items()):
    if _name == __name__ or _name.startswith(__name__ + "."):
        sys.modules.setdefault(_other + _name[len(__name__) :], _mod)
