"""The narrow interfaces through which actions reach the world: Tracker, Git, Agent, Sandbox (the processes that run
code from a workspace: where the agent jail lives) and Browser. Only the composition root (runtime.py, commands/,
cli.py) imports the adapters that implement them; everything else reaches the world through these."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from statemachine.model import Change, Comment, Issue, PullRequest, Review, ReviewComment, TextHistory


@dataclass(frozen=True)
class Capabilities:
    """What a tracker can do beyond the port's methods. Code asks these, never the tracker's kind."""

    fleet: bool  # runners on other machines may watch its issues: claims carry leases that a stopped run lets expire
    remote_branches: bool  # run branches are pushed to it (push_credential); otherwise they stay in this repository
    label_list: bool  # it keeps a list of labels that setup creates (ensure_label)
    activity_feed: bool = False  # ``activity`` reads a feed of everything that happens (else it answers None)


@dataclass(frozen=True)
class Changes:
    """What changed in a tracker since a time of its own: issues (open or closed, with their labels) and pull requests
    (a review, a comment, a push), newest first. ``modified`` is False when the tracker said nothing changed since the
    read ``etag`` came from (then the lists are empty). ``newest`` is the latest update time the tracker reported (its
    own clock, never this machine's), ``complete`` False when there were more changes than one read returns."""

    modified: bool
    issues: tuple[Issue, ...] = ()
    pulls: tuple[tuple[int, str], ...] = ()  # (number, updated_at)
    etag: str | None = None
    newest: str = ""
    complete: bool = True


@dataclass(frozen=True)
class Activity:
    """One conditional read of a tracker's activity feed: whether anything happened in the repository since the read
    ``etag`` came from (an issue, a label, a comment, a pull request, a review), and whether any of it can matter to
    the daemon (``relevant``: not only stars, forks or pushes). ``wait`` is the shortest time the tracker allows
    between two reads of the feed; ``last`` the newest entry's id, to tell new entries from ones seen."""

    modified: bool
    etag: str | None = None
    relevant: bool = True
    wait: float = 0.0
    last: str | None = None


class Tracker(Protocol):
    """Issues, labels, comments and pull requests; the local tracker and GitHub implement it."""

    kind: str  # a name for people (messages, `orch doctor`); behaviour follows ``capabilities``
    capabilities: Capabilities

    def identity(self) -> str: ...  # the login orch writes as, learned once; only its markers count
    def get_issue(self, number: int, comments: bool = True) -> Issue: ...
    def list_comments(self, number: int) -> list[Comment]: ...
    def label_authority(self, number: int, label: str) -> tuple[str | None, str]: ...
    def text_history(self, number: int, label: str) -> TextHistory: ...
    # the issue without comments and each label's text_history: what a claim reads, in one request where it can
    def issue_with_history(self, number: int, labels: list[str]) -> tuple[Issue, dict[str, TextHistory]]: ...
    def list_issues(self, label: str | None = None, state: str = "open") -> list[Issue]: ...
    def add_labels(self, number: int, names: list[str]) -> None: ...
    def remove_labels(self, number: int, names: list[str]) -> None: ...
    # the issue carries exactly ``names`` afterwards, in one write (a label it keeps gets no new event)
    def set_labels(self, number: int, names: list[str]) -> None: ...
    def find_comment(self, number: int, marker: str) -> Comment | None: ...
    def post_comment(self, number: int, body: str) -> Comment: ...
    # (capabilities.remote_branches) the credential the runner's own git pushes run branches with
    def push_credential(self) -> tuple[str, str]: ...
    # (capabilities.label_list) create or update a label; with dry_run only say what would change
    def ensure_label(self, name: str, color: str, description: str = "", dry_run: bool = False) -> str: ...
    def delete_comment(self, number: int, comment_id: int) -> None: ...
    # rewrite a comment the identity wrote (a claim's lease stamp); None when the comment is gone
    def update_comment(self, number: int, comment_id: int, body: str) -> Comment | None: ...
    def find_pull(self, marker: str, head: str | None = None) -> PullRequest | None: ...
    # find-or-create by ``marker``; ``first_attempt``: no earlier attempt of this run's action can have opened it
    def create_pull(
        self,
        issue: int,
        title: str,
        body: str,
        head: str,
        base: str,
        head_sha: str,
        base_sha: str,
        marker: str,
        first_attempt: bool = False,
    ) -> PullRequest: ...
    def permission(self, login: str) -> str: ...
    def create_issue(self, title: str, body: str, labels: list[str], marker: str | None = None) -> Issue: ...
    def update_issue(self, number: int, title: str | None = None, body: str | None = None) -> Issue: ...
    def list_reviews(self, pull: int) -> list[Review]: ...
    def list_review_comments(self, pull: int) -> list[ReviewComment]: ...
    # ``(name, value)`` of the credential the tracker acts with, which the runner redacts everywhere (None: it has none)
    def secret(self) -> tuple[str, str] | None: ...
    # what people must know about pull requests it opens as the identity it acts as (a job token: no CI), or None
    def pull_request_caveat(self) -> str | None: ...
    # for each label, issue number -> who last added it, from one bulk read; None when per-issue reads are cheaper
    def label_actors(self, labels: list[str]) -> dict[str, dict[int, str]] | None: ...
    # the requests this tracker sent so far (None: it sends none)
    @property
    def request_count(self) -> int | None: ...
    # what changed since ``since`` (the tracker's own time, from an earlier Changes.newest), in one conditional read
    # when ``etag`` (an earlier Changes.etag) still holds: the daemon's poll (statemachine/polling.py)
    def changes_since(self, since: str | None, etag: str | None) -> Changes: ...
    # the open pull requests with the time of their latest activity (a review, a review comment, a push), newest
    # first, in one conditional read (``Changes.pulls``; ``complete`` False when there are more than one read returns)
    def pull_activity(self, etag: str | None) -> Changes: ...
    # everything that happened in the repository since ``etag`` (an earlier Activity.etag), in one conditional read
    # (entries newer than ``last`` are new); None when the tracker has no such feed (changes_since and pull_activity
    # are then read on every poll that needs them)
    def activity(self, etag: str | None, last: str | None) -> Activity | None: ...
    # the open issues carrying ``label`` and who last applied it to each, from one bulk read (``orch status``); None
    # when the tracker has none (list_issues and label_authority serve)
    def labelled_issues(self, label: str) -> tuple[list[Issue], dict[int, str]] | None: ...


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
    def capture(
        self, worktree: Path, base_sha: str, start: str | None = None, ignore: Sequence[str] = ()
    ) -> Capture: ...
    def commit_tree(self, tree: str, parent: str, message: str) -> str: ...
    def branch_head(self, branch: str) -> str | None: ...
    def set_branch(self, branch: str, sha: str, worktree: Path | None = None) -> None: ...  # and worktree's index
    def diff(self, base: str, head: str) -> str: ...
    def fingerprint(self, worktree: Path) -> dict[str, str]: ...
    def add_detached_worktree(self, path: Path, sha: str) -> None: ...
    def remove_worktree(self, path: Path) -> None: ...
    def diff_text(self, base: str, tree: str) -> str: ...
    def push(self, remote: str, sha: str, branch: str, credential: tuple[str, str], force: bool = True) -> None: ...
    def orphan_commit(self, files: dict[str, Path], message: str) -> str: ...
    def is_ancestor(self, ancestor: str, descendant: str) -> bool: ...
    def merge_into(self, branch: str, sha: str, message: str) -> tuple[str | None, list[str]]: ...
    # ``(path, blob sha)`` of every file ``tree`` adds or changes against ``base`` (no deletions, no submodules)
    def changed_blobs(self, base: str, tree: str) -> list[tuple[str, str]]: ...
    # the paths git sees as binary among what ``tree`` changes against ``base``
    def binary_paths(self, base: str, tree: str) -> set[str]: ...
    def blob_sizes(self, shas: list[str]) -> dict[str, int]: ...
    # each blob's content as chunks, in order, read one at a time (a missing blob yields no chunk)
    def blob_chunks(self, shas: list[str], chunk: int) -> Iterator[tuple[str, Iterator[bytes]]]: ...
    # the paths that differ between two trees or commits
    def changed_paths(self, before: str, after: str) -> list[str]: ...
    def commit_time(self, sha: str) -> int | None: ...  # committer time in seconds since the epoch
    def checkout_paths(self, worktree: Path, sha: str, paths: list[str]) -> None: ...
    def reset_index(self, worktree: Path) -> None: ...  # the index back to HEAD, the files left as they are
    # what a jailed process did in the workspace's own git directory that the runner must refuse (adapters/agent_git.py)
    def inspect_gitdir(self, gitdir: Path, head: str, branch: str | None) -> list[str]: ...


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    workdir: Path
    evidence_dir: Path
    report_path: Path
    timeout_seconds: float
    idle_timeout_seconds: float
    extra_env: dict[str, str] = field(default_factory=dict)
    gitdir: Path | None = None  # the workspace's own git directory, bound over its .git inside the jail
    lock: Path | None = None  # the workspace's jail lock (statemachine/adapters/jail.py workspace_lock)
    read_only: bool = False  # the workspace is mounted read-only (planning): only the report folder is writable


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
    """Runs a coding agent once, in the jail, with an environment built from an allowlist."""

    kind: str

    def run(self, request: AgentRequest) -> AgentResult: ...


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    idle_timed_out: bool
    duration_seconds: float
    output_bytes: int
    truncated: bool
    error: str | None = None


# Set by a run that must stop at once (lease.Keeper: another runner took its claim over): every process the Sandbox
# (or an Agent) started in this orch process is stopped with its whole group, and the step sees an ordinary failed
# result. The engine clears it when the step ends. A flag, not an asynchronous exception: nothing is interrupted
# half-way. In-process only: nothing outside this process can set it.
CANCEL = threading.Event()

# Written by the Sandbox beside what it removed from a folder the runner reads after a jailed process (a symlink, a
# FIFO), so that a check looking for the file can say what it was.
REMOVED_SUFFIX = ".orch-removed"


class Sandbox(Protocol):
    """Runs code from a workspace (agents through their Agent, checks, TDD runs, the proof app): in the agent jail
    (statemachine/adapters/jail.py), or plainly where the policy says `sandbox: none`. The runner's own git is not
    run here: it never runs code from a workspace."""

    @property
    def enabled(self) -> bool: ...
    def require(self) -> None: ...  # raise when the policy wants the jail and this machine cannot build it
    # what an agent run in ``worktree`` gets besides it: "lock" (the workspace's jail lock) and, jailed, "gitdir"
    # (a git directory of its own in ``evidence``, bound over the worktree's .git)
    def workspace(self, worktree: Path, evidence: Path, base: str, branch: str | None) -> dict[str, Path]: ...
    # a check's or a TDD run's shell command: its worktree writable, a git directory of its own, no credential, and
    # network only to the policy's ``sandbox.network.checks`` hosts
    def run_shell(self, command: str, worktree: Path, log: Path, timeout: float, base: str) -> ProcessResult: ...
    # the folders a check can start programs from (None: all of PATH, the jail is off): what a preflight looks in
    def search_roots(self) -> list[Path] | None: ...


class Browser(Protocol):
    """The runner's own browser (statemachine/adapters/browser.py): starts the app (unless ``base_url`` names one
    running), drives a proof scenario (statemachine/scenario.py) and writes every artifact itself."""

    def prove(
        self,
        scenario: dict[str, Any],
        out_dir: Path,
        rel_root: Path,
        *,
        app: Any = None,  # scenario.AppSpec
        app_cwd: Path | None = None,
        base_url: str | None = None,
        sandbox: Sandbox | None = None,
    ) -> dict[str, Any]: ...
