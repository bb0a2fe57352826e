"""The narrow interfaces through which actions reach the world: Tracker, Git, Agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from statemachine.model import Change, Comment, Issue, PullRequest


class Tracker(Protocol):
    """Issues, labels, comments and pull requests; the local tracker and GitHub implement it."""

    kind: str

    def get_issue(self, number: int, comments: bool = True) -> Issue: ...
    def list_comments(self, number: int) -> list[Comment]: ...
    def label_authority(self, number: int, label: str) -> tuple[str | None, str]: ...
    def list_issues(self, label: str | None = None, state: str = "open") -> list[Issue]: ...
    def add_labels(self, number: int, names: list[str]) -> None: ...
    def remove_labels(self, number: int, names: list[str]) -> None: ...
    def find_comment(self, number: int, marker: str) -> Comment | None: ...
    def post_comment(self, number: int, body: str) -> Comment: ...
    def delete_comment(self, number: int, comment_id: int) -> None: ...
    def find_pull(self, marker: str) -> PullRequest | None: ...
    def create_pull(self, issue: int, title: str, body: str, head: str, base: str,
                    head_sha: str, base_sha: str, marker: str) -> PullRequest: ...


@dataclass(frozen=True)
class Capture:
    """The whole change set of a worktree against its base commit, frozen as a git tree."""

    tree: str
    changes: tuple[Change, ...]
    by_kind: dict[str, list[str]]
    changed_lines: int


class Git(Protocol):
    """The repository operations the runner performs (never the agent)."""

    def head_sha(self, ref: str = "HEAD") -> str: ...
    def base_branch(self, configured: str) -> str: ...
    def ensure_worktree(self, path: Path, branch: str, base_sha: str) -> None: ...
    def capture(self, worktree: Path, base_sha: str) -> Capture: ...
    def commit_tree(self, tree: str, parent: str, message: str) -> str: ...
    def branch_head(self, branch: str) -> str | None: ...
    def set_branch(self, branch: str, sha: str) -> None: ...
    def diff(self, base: str, head: str) -> str: ...
    def fingerprint(self, worktree: Path) -> dict[str, str]: ...
    def add_detached_worktree(self, path: Path, sha: str) -> None: ...
    def remove_worktree(self, path: Path) -> None: ...
    def diff_text(self, base: str, tree: str) -> str: ...
    def push(self, remote: str, sha: str, branch: str, credential: tuple[str, str]) -> None: ...
    def orphan_commit(self, files: dict[str, Path], message: str) -> str: ...


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    workdir: Path
    evidence_dir: Path
    report_path: Path
    timeout_seconds: float
    idle_timeout_seconds: float
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentResult:
    exit_code: int | None
    timed_out: bool
    idle_timed_out: bool
    duration_seconds: float
    log: str
    output_bytes: int
    error: str | None = None
    tokens: dict[str, int] | None = None


class Agent(Protocol):
    """Runs a coding agent once, in its own process group, with a scrubbed environment."""

    kind: str

    def run(self, request: AgentRequest) -> AgentResult: ...
