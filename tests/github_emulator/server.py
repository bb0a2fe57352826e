"""A local GitHub: REST API (checked against GitHub's OpenAPI description) and git smart HTTP.

One ``ThreadingHTTPServer`` on 127.0.0.1 serves both: ``/{owner}/{repo}.git/...`` goes to
``git http-backend`` (a CGI, run per request), everything else is the REST API at the root,
like api.github.com. Every API request and every response is validated; what does not validate
is appended to ``violations`` and the context manager raises at exit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from .openapi import OpenAPISpec, Operation, load_spec
from .state import (
    DOCS,
    REVIEW_STATES,
    ROLES,
    Activity,
    Comment,
    Event,
    Issue,
    Label,
    Pull,
    Render,
    Repo,
    Review,
    ReviewComment,
    State,
    iso,
    parse_iso,
    rank,
)

FAULT_KINDS = ("status", "timeout", "secondary_rate_limit", "lost_response", "primary_rate_limit")
RATE_LIMIT = 5000
ANON_RATE_LIMIT = 60
# the GraphQL queries the emulator answers (whitespace collapsed): orch's GitHubTracker._body_edits
GRAPHQL_EDITOR_QUERY = (
    "query($owner: String!, $repo: String!, $number: Int!) "
    "{ repository(owner: $owner, name: $repo) { issue(number: $number) { userContentEdits(last: 100) { nodes { editor { login } editedAt } } } } }"
)
# and the open issues carrying a label with who labelled them: orch's GitHubTracker.labelled_issues
GRAPHQL_LABELLED_QUERY = (
    "query($owner: String!, $repo: String!, $label: String!, $after: String) "
    "{ repository(owner: $owner, name: $repo) { issues(first: 100, after: $after, states: OPEN, labels: [$label]) "
    "{ pageInfo { hasNextPage endCursor } nodes { number title body state createdAt updatedAt "
    "author { __typename login } labels(first: 100) { nodes { name } } "
    "timelineItems(itemTypes: [LABELED_EVENT], last: 100) "
    "{ nodes { ... on LabeledEvent { label { name } actor { __typename login } } } } } } } }"
)
# and an issue with its labels, body editors, labellings and title renames: orch's GitHubTracker.issue_with_history
GRAPHQL_ISSUE_QUERY = (
    "query($owner: String!, $repo: String!, $number: Int!) "
    "{ repository(owner: $owner, name: $repo) { issue(number: $number) { number title body state createdAt updatedAt "
    "author { __typename login } labels(first: 100) { nodes { name } } "
    "userContentEdits(last: 100) { nodes { editor { login } editedAt } } "
    "timelineItems(itemTypes: [LABELED_EVENT, RENAMED_TITLE_EVENT], last: 100) { pageInfo { hasPreviousPage } "
    "nodes { __typename ... on LabeledEvent { createdAt label { name } actor { __typename login } } "
    "... on RenamedTitleEvent { createdAt actor { __typename login } } } } } } }"
)
GIT_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+?)\.git(?P<rest>/.*)?$")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "emulator",
    "GIT_AUTHOR_EMAIL": "emulator@localhost",
    "GIT_COMMITTER_NAME": "emulator",
    "GIT_COMMITTER_EMAIL": "emulator@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
DEFAULT_LABELS = (
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
)
STATUS_MESSAGES = {
    400: "Bad Request",
    401: "Requires authentication",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    422: "Validation Failed",
    429: "Too Many Requests",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# the schema of each kind of Events API payload the emulator records
EVENT_SCHEMAS = {
    "IssuesEvent": "issues-event",
    "IssueCommentEvent": "issue-comment-event",
    "PullRequestEvent": "pull-request-event",
    "PullRequestReviewEvent": "pull-request-review-event",
    "PullRequestReviewCommentEvent": "pull-request-review-comment-event",
    "WatchEvent": "watch-event",
}


class OpenAPIViolation(AssertionError):
    """Raised at exit when a request or response did not validate against GitHub's description."""


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str | None = None,
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message or STATUS_MESSAGES.get(status, "Error")
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "documentation_url": DOCS, "status": str(self.status)}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


@dataclass
class Fault:
    """An injected failure; ``hits`` counts how often it fired."""

    method: str
    pattern: re.Pattern[str]
    kind: str
    times: int | None
    kw: dict[str, Any]
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.method in ("*", method) and self.pattern.search(path) is not None


@dataclass
class Corruption:
    method: str
    pattern: re.Pattern[str]
    mutate: Callable[[Any], Any]
    times: int | None
    hits: int = 0


@dataclass
class LogEntry:
    method: str
    path: str
    query: str
    status: int
    user: str | None
    operation: str | None
    fault: str | None = None
    duration: float = 0.0
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    at: float = 0.0  # time.perf_counter() when the request arrived


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a non-JSON body (git)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class GitHubEmulator:
    """A stateful local GitHub REST API plus git smart HTTP; see the package docstring."""

    def __init__(self, root: Path | str, spec: OpenAPISpec | None = None, *, check_on_exit: bool = True) -> None:
        self.root = Path(root) / "github-emulator"
        self.git_root = self.root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self.spec = spec or load_spec()
        self.state = State()
        self.requests: list[tuple[str, str, int]] = []
        self.log: list[LogEntry] = []
        self.git_requests: list[tuple[str, str, int, str | None]] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.corruptions: list[Corruption] = []
        self.check_on_exit = check_on_exit
        self.validation_seconds = 0.0
        self.validations = 0
        self._rate: dict[str, dict[str, int]] = {}
        # A lagging replica: a new comment shows in comment lists only this many (wall-clock) seconds after it
        # was created, in creation order (a list never shows a newer comment before an older one).
        self.comment_lag = 0.0
        self._comment_visible_at: dict[int, float] = {}
        # The Events API feed: each event shows this many (wall-clock) seconds after it happened (GitHub documents
        # 30 s to 6 h; 0 here unless a test sets it), and the feed tells clients to poll it no more often than every
        # ``feed_poll_interval`` seconds (its X-Poll-Interval header).
        self.feed_lag = 0.0
        self.feed_poll_interval = 60
        self._rate_reset = int(time.time()) + 3600
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._http_backend = _find_http_backend()
        self.api_url = ""
        self.render: Render | None = None

    # -- lifecycle

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self.api_url = f"http://127.0.0.1:{server.server_address[1]}"
        self.render = Render(self.state, self.api_url)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="github-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._conns_lock:
                for conn in list(self._conns):
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if exc_type is None and self.check_on_exit:
            self.check()

    def check(self) -> None:
        """Raise ``OpenAPIViolation`` listing every violation recorded so far."""
        if self.violations:
            shown = "\n  ".join(self.violations[:30])
            more = f"\n  ... and {len(self.violations) - 30} more" if len(self.violations) > 30 else ""
            raise OpenAPIViolation(
                f"GitHub emulator: {len(self.violations)} OpenAPI violation(s) "
                f"(spec @octokit/openapi {self.spec.version}):\n  {shown}{more}"
            )

    # -- setup

    def add_user(
        self, login: str, token: str | None = None, *, name: str | None = None, email: str | None = None
    ) -> None:
        with self.state.lock:
            acct = self.state.account(login)
            acct.type = "User"
            acct.token = token
            acct.name = name
            acct.email = email or f"{login}@users.noreply.localhost"

    def add_app(self, slug: str, token: str) -> str:
        """A GitHub App's installation token: it acts as ``<slug>[bot]`` and, like GitHub, cannot read GET /user."""
        login = f"{slug}[bot]"
        with self.state.lock:
            acct = self.state.account(login)
            acct.type, acct.token = "Bot", token
        return login

    def add_repo(
        self,
        owner: str,
        name: str,
        default_branch: str = "main",
        source: Path | str | None = None,
        *,
        description: str | None = None,
        default_labels: bool = True,
    ) -> None:
        """A private repository; SOURCE's branches seed its bare git repository (else one empty commit).

        Like GitHub, a new repository has GitHub's nine default labels unless DEFAULT_LABELS is false.
        """
        with self.state.lock:
            if self.state.find_repo(owner, name):
                raise ValueError(f"{owner}/{name} exists")
            if owner.lower() not in self.state.accounts:
                self.state.account(owner, "Organization")
            bare = self.git_root / owner / f"{name}.git"
            bare.parent.mkdir(parents=True, exist_ok=True)
            _git(bare.parent, "init", "-q", "--bare", f"--initial-branch={default_branch}", bare.name)
            _git(bare, "config", "http.receivepack", "true")
            if source is not None:
                _git(bare, "fetch", "-q", str(source), "+refs/heads/*:refs/heads/*")
                _git(bare, "symbolic-ref", "HEAD", f"refs/heads/{default_branch}")
            else:
                empty_tree = _git(bare, "hash-object", "-t", "tree", "-w", "--stdin", stdin=b"").strip()
                sha = _git(bare, "commit-tree", empty_tree, "-m", "Initial commit").strip()
                _git(bare, "update-ref", f"refs/heads/{default_branch}", sha)
            now = self.state.tick()
            repo = Repo(
                self.state.account(owner).login,
                name,
                self.state.next_id(),
                default_branch,
                bare,
                now,
                now,
                description=description,
            )
            if default_labels:
                for label_name, color, text in DEFAULT_LABELS:
                    repo.labels[label_name] = Label(self.state.next_id(), label_name, color, text, default=True)
            self.state.repos[(owner.lower(), name.lower())] = repo

    def set_permission(self, owner: str, name: str, login: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self.state.lock:
            self.state.account(login)
            self.state.repo(owner, name).roles[login.lower()] = role

    def add_org_member(self, org: str, login: str) -> None:
        """Make LOGIN a member of organization ORG: on ORG's repositories its comments say ``MEMBER`` and it has the
        organization's base permission (read) unless a repository gives it more."""
        with self.state.lock:
            self.state.account(org, "Organization")
            self.state.members.setdefault(org.lower(), set()).add(login.lower())

    def git_url(self, owner: str, name: str, token: str | None = None) -> str:
        """The repository's smart-HTTP URL; with TOKEN, carrying it as basic-auth credentials."""
        if token is None:
            return f"{self.api_url}/{owner}/{name}.git"
        host = self.api_url.removeprefix("http://")
        return f"http://x-access-token:{quote(token, safe='')}@{host}/{owner}/{name}.git"

    def bare_path(self, owner: str, name: str) -> Path:
        return self.state.repo(owner, name).bare

    def create_issue(
        self,
        owner: str,
        name: str,
        title: str,
        body: str = "",
        labels: list[str] | tuple[str, ...] = (),
        user: str = "alice",
    ) -> int:
        with self.state.lock:
            repo = self.state.repo(owner, name)
            issue = self._new_issue(repo, title, body, user)
            self._feed_issue(repo, issue, "opened", user)
            for label in labels:
                self._apply_label(repo, issue, label, user)
            return issue.number

    def open_pull(
        self,
        owner: str,
        name: str,
        login: str,
        title: str,
        body: str,
        head: str,
        base: str = "main",
        *,
        fork_owner: str | None = None,
        draft: bool = False,
    ) -> int:
        """Plant a pull request opened by LOGIN without HTTP, from HEAD of the repository or, with FORK_OWNER,
        of FORK_OWNER's fork (added with ``add_repo(FORK_OWNER, NAME, ...)``): anyone may open one on a public
        repository. Returns its number."""
        with self.state.lock:
            repo = self.state.repo(owner, name)
            source = self.state.repo(fork_owner, name) if fork_owner else repo
            head_sha, base_sha = _rev(source.bare, head), _rev(repo.bare, base)
            if head_sha is None or base_sha is None:
                raise ValueError(f"no branch {head!r} in {source.full_name} or {base!r} in {repo.full_name}")
            issue = self._new_issue(repo, title, body, login)
            issue.pull = Pull(
                self.state.next_id(),
                head,
                head_sha,
                base,
                base_sha,
                draft,
                head_repo=(source.owner, source.name) if fork_owner else None,
            )
            self._feed_issue(repo, issue, "opened", login)
            return issue.number

    def add_label_event(self, owner: str, name: str, number: int, label: str, actor: str) -> None:
        """Label issue NUMBER as ACTOR (creating the label if the repository lacks it)."""
        with self.state.lock:
            repo = self.state.repo(owner, name)
            issue = repo.issues[number]
            self._apply_label(repo, issue, label, actor)
            issue.updated_at = self.state.tick()

    def submit_review(
        self, owner: str, name: str, number: int, login: str, event: str, body: str = "", comments: Any = ()
    ) -> int:
        """Record a review of pull NUMBER by LOGIN without HTTP; returns the review's id.

        EVENT is APPROVE, REQUEST_CHANGES, COMMENT or PENDING. Each of COMMENTS is a dict like the API's
        (``path``, ``line`` or ``position``, ``body``, optional ``side``) or a tuple (path, line, body).
        A comment whose line or position is not in the pull request's diff is recorded the way GitHub
        shows an outdated one: without ``line`` and ``position``.
        """
        if event not in REVIEW_STATES:
            raise ValueError(f"event must be one of {tuple(REVIEW_STATES)}")
        with self.state.lock:
            repo = self.state.repo(owner, name)
            issue = repo.issues.get(number)
            if issue is None or issue.pull is None:
                raise ValueError(f"{owner}/{name}#{number} is not a pull request")
            self.state.account(login)
            items = [c if isinstance(c, dict) else {"path": c[0], "line": c[1], "body": c[2]} for c in comments]
            return self._record_review(
                repo, issue, login, REVIEW_STATES[event], body, issue.pull.head_sha, items, strict=False
            ).id

    def star(self, owner: str, name: str, login: str) -> None:
        """LOGIN stars the repository (without HTTP): only the activity feed shows it, as a WatchEvent."""
        with self.state.lock:
            self._feed(self.state.repo(owner, name), "WatchEvent", login, {"action": "started"})

    def reset_counts(self) -> None:
        with self.state.lock:
            self.requests.clear()
            self.log.clear()
            self.git_requests.clear()

    def inject(self, method: str, path_regex: str, kind: str, times: int | None = 1, **kw: Any) -> Fault:
        """Fail the next TIMES matching API requests (None: every one). Kinds:

        - ``status``: answer ``status`` (default 500) with GitHub's error body; nothing is done.
        - ``timeout``: do the request, then wait ``seconds`` (default 10) before answering; with
          ``effect=False`` wait and then close the connection without doing anything.
        - ``secondary_rate_limit``: 403 (``status=429`` possible) with ``retry-after: retry_after``
          (default 1) and GitHub's secondary-rate-limit message; nothing is done.
        - ``primary_rate_limit``: 403 with ``x-ratelimit-remaining: 0``; nothing is done.
        - ``lost_response``: do the request, then close the connection without answering.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        fault = Fault(method.upper(), re.compile(path_regex), kind, times, kw)
        with self.state.lock:
            self.faults.append(fault)
        return fault

    def corrupt(self, method: str, path_regex: str, mutate: Callable[[Any], Any], times: int | None = 1) -> Corruption:
        """Test-only: pass the next matching JSON response body through MUTATE before it is checked and sent."""
        c = Corruption(method.upper(), re.compile(path_regex), mutate, times)
        with self.state.lock:
            self.corruptions.append(c)
        return c

    def set_rate_limit(self, login: str | None, remaining: int, limit: int = RATE_LIMIT) -> None:
        with self.state.lock:
            self._rate[(login or "").lower()] = {"limit": limit, "used": limit - remaining}

    def advance(self, seconds: int) -> None:
        """Move the logical clock on (timestamps of later changes)."""
        with self.state.lock:
            self.state.clock += seconds

    # -- state helpers

    def render_label(self, repo: Repo, label: Label) -> dict[str, Any]:
        assert self.render is not None
        return self.render.label(repo, label)

    def _feed(self, repo: Repo, kind: str, actor: str, payload: dict[str, Any]) -> None:
        """Add an event to the repository's Events API feed (shown after ``feed_lag`` seconds). Its payload is
        checked against its kind's schema here: the description's ``oneOf`` over kinds cannot be (openapi.py)."""
        errors = self.spec.schema_errors(f"/components/schemas/{EVENT_SCHEMAS[kind]}", payload, f"{kind} payload")
        self._record_violations(errors, "response")
        repo.activity.append(
            Activity(
                self.state.next_id(),
                kind,
                self.state.account(actor).login,
                self.state.clock,
                payload,
                time.monotonic() + self.feed_lag,
            )
        )

    def _feed_issue(self, repo: Repo, issue: Issue, action: str, actor: str, **extra: Any) -> None:
        """An IssuesEvent, or a PullRequestEvent when the issue is a pull request."""
        if self.render is None:  # not started: nothing can read the feed yet
            return
        if issue.pull is not None:
            body = {"action": action, "number": issue.number, "pull_request": self.render.pull_minimal(repo, issue)}
            self._feed(repo, "PullRequestEvent", actor, {**body, **extra})
        else:
            body = {"action": action, "issue": self.render.issue(repo, issue)}
            self._feed(repo, "IssuesEvent", actor, {**body, **extra})

    def _feed_review(self, repo: Repo, issue: Issue, review: Review) -> None:
        """A submitted review: a PullRequestReviewEvent, then one PullRequestReviewCommentEvent per inline comment."""
        if self.render is None:
            return
        pull = self.render.pull_minimal(repo, issue)
        self._feed(
            repo,
            "PullRequestReviewEvent",
            review.user,
            {"action": "created", "review": self.render.review(repo, review), "pull_request": pull},
        )
        for rc in repo.review_comments.values():
            if rc.review_id == review.id:
                comment = self.render.review_comment(repo, rc)
                comment.setdefault("position", None)  # the event's comment names them even when GitHub could not
                comment.setdefault("original_position", 0)  # place the comment
                self._feed(
                    repo,
                    "PullRequestReviewCommentEvent",
                    review.user,
                    {"action": "created", "comment": comment, "pull_request": pull},
                )

    def _feed_comment(self, repo: Repo, issue: Issue, comment: Comment, action: str, actor: str) -> None:
        if self.render is None:
            return
        payload = {
            "action": action,
            "issue": self.render.issue(repo, issue),
            "comment": self.render.comment(repo, comment),
        }
        self._feed(repo, "IssueCommentEvent", actor, payload)

    def _new_issue(self, repo: Repo, title: str, body: str | None, user: str) -> Issue:
        now = self.state.tick()
        number = max(repo.issues, default=0) + 1
        issue = Issue(number, self.state.next_id(), title, body, self.state.account(user).login, now, now)
        repo.issues[number] = issue
        return issue

    def _ensure_label(self, repo: Repo, name: str) -> Label:
        label = repo.label(name)
        if label is None:
            label = Label(self.state.next_id(), name)
            repo.labels[name.lower()] = label
        return label

    def _apply_label(self, repo: Repo, issue: Issue, name: str, actor: str) -> bool:
        label = self._ensure_label(repo, name)
        if any(n.lower() == label.name.lower() for n in issue.labels):
            return False
        issue.labels.append(label.name)
        self._feed_issue(repo, issue, "labeled", actor, label=self.render_label(repo, label))
        repo.events.append(
            Event(
                self.state.next_id(),
                issue.number,
                "labeled",
                self.state.account(actor).login,
                label.name,
                label.color,
                self.state.tick(),
            )
        )
        return True

    def _remove_label(self, repo: Repo, issue: Issue, name: str, actor: str) -> bool:
        for n in list(issue.labels):
            if n.lower() == name.lower():
                issue.labels.remove(n)
                label = repo.labels[n.lower()]
                self._feed_issue(repo, issue, "unlabeled", actor, label=self.render_label(repo, label))
                repo.events.append(
                    Event(
                        self.state.next_id(),
                        issue.number,
                        "unlabeled",
                        self.state.account(actor).login,
                        label.name,
                        label.color,
                        self.state.tick(),
                    )
                )
                return True
        return False

    def _record_review(
        self,
        repo: Repo,
        issue: Issue,
        login: str,
        state: str,
        body: str,
        commit_id: str,
        comments: list[dict[str, Any]],
        *,
        strict: bool,
    ) -> Review:
        """Store a review and its inline comments. STRICT (the API): a comment GitHub could not place in the
        pull request's diff fails the whole review with 422; else it is kept without a line (outdated)."""
        assert issue.pull is not None
        placed: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for c in comments:
            path = str(c.get("path", ""))
            entries = _diff_entries(repo.bare, issue.pull.base_sha, issue.pull.head_sha, path)
            if c.get("line") is not None:
                side = str(c.get("side") or "RIGHT").upper()
                where = next((e for e in entries or [] if e["side"] == side and e["line"] == c["line"]), None)
            elif c.get("position") is not None:
                where = next((e for e in entries or [] if e["position"] == c["position"]), None)
            else:
                where = None
            if strict and where is None:
                raise ApiError(
                    422,
                    "Unprocessable Entity",
                    [
                        "Path could not be resolved"
                        if not entries
                        else "Pull request review thread line must be part of the diff"
                        if c.get("line") is not None
                        else "Pull request review thread position is invalid"
                        if c.get("position") is not None
                        else "Pull request review thread line or position is required"
                    ],
                )
            placed.append((c, where))
        now = self.state.tick()
        review = Review(
            self.state.next_id(),
            issue.number,
            self.state.account(login).login,
            state,
            body,
            commit_id,
            None if state == "PENDING" else now,
        )
        repo.reviews[review.id] = review
        for c, where in placed:
            comment = ReviewComment(
                self.state.next_id(),
                issue.number,
                review.id,
                review.user,
                str(c.get("body", "")),
                str(c.get("path", "")),
                commit_id,
                where["hunk"] if where else "",
                now,
                now,
                line=where["line"] if where else None,
                side=where["side"] if where else "RIGHT",
                position=where["position"] if where else None,
            )
            repo.review_comments[comment.id] = comment
        if state != "PENDING":  # a pending review is visible only to its author: nothing moves
            issue.pull.activity_at = self.state.tick()
            self._feed_review(repo, issue, review)
        return review

    # -- rate limit

    def _bucket(self, login: str | None) -> dict[str, int]:
        key = (login or "").lower()
        if key not in self._rate:
            self._rate[key] = {"limit": RATE_LIMIT if login else ANON_RATE_LIMIT, "used": 0}
        return self._rate[key]

    def _rate_headers(self, login: str | None) -> dict[str, str]:
        b = self._bucket(login)
        return {
            "x-ratelimit-limit": str(b["limit"]),
            "x-ratelimit-remaining": str(max(0, b["limit"] - b["used"])),
            "x-ratelimit-reset": str(self._rate_reset),
            "x-ratelimit-used": str(b["used"]),
            "x-ratelimit-resource": "core",
        }

    # -- request handling (called on server threads)

    def _record_violations(self, errors: list[str], kind: str) -> None:
        """One entry per request or response, however many problems it had."""
        if errors:
            with self.state.lock:
                self.violations.append(f"{kind}: " + "\n    ".join(errors))

    def _handle_api(self, h: _Handler, method: str, body: bytes) -> None:
        t0 = time.perf_counter()
        url = urlsplit(h.path)
        path, qs = url.path, url.query
        query = parse_qs(qs, keep_blank_values=True)
        headers = {k.lower(): v for k, v in h.headers.items()}
        tv = time.perf_counter()
        op, path_params, errors = self.spec.validate_request(method, path, query, headers, body)
        self._account_validation(tv)
        self._record_violations(errors, "request")
        login: str | None = None
        fault: Fault | None = None
        with self.state.lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.hits += 1
                    fault = f
                    break
        entry = LogEntry(
            method,
            path,
            qs,
            0,
            None,
            op.operation_id if op else None,
            fault.kind if fault else None,
            request_headers=headers,
            request_body=body,
            at=t0,
        )
        reply: Reply
        charged = False
        try:
            login = self._authenticate(headers, path)
            if fault is not None and fault.kind in ("status", "secondary_rate_limit", "primary_rate_limit"):
                reply = self._fault_reply(fault, login)
            elif fault is not None and fault.kind == "timeout" and not fault.kw.get("effect", True):
                self._stopping.wait(float(fault.kw.get("seconds", 10)))
                reply = Reply(0)
            else:
                if not (op is not None and op.operation_id == "rate-limit/get"):  # GitHub: /rate_limit is free
                    self._charge(login)
                    charged = True
                reply = self._dispatch(op, path_params, method, query, body, login, headers)
        except ApiError as err:
            reply = Reply(err.status, err.body(), dict(err.headers))
        except Exception:  # noqa: BLE001 - an emulator bug: make the test fail loudly
            tb = traceback.format_exc()
            self._record_violations([f"{method} {path}: emulator error\n{tb}"], "emulator")
            reply = Reply(500, ApiError(500).body())

        # conditional GET
        out_headers = {
            "content-type": "application/json; charset=utf-8",
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": f"{os.getpid():X}:{len(self.log):X}",
        }
        payload = b""
        if reply.status == 0:
            pass
        elif reply.body is not None:
            data = reply.body
            with self.state.lock:
                for c in self.corruptions:
                    if (c.times is None or c.hits < c.times) and c.method in ("*", method) and c.pattern.search(path):
                        c.hits += 1
                        data = c.mutate(json.loads(json.dumps(data)))
                        break
            payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        if method == "GET" and reply.status == 200:
            etag = 'W/"' + hashlib.sha256(payload + (reply.headers.get("link", "")).encode()).hexdigest()[:32] + '"'
            out_headers["etag"] = etag
            out_headers["cache-control"] = "private, max-age=60, s-maxage=60"
            out_headers["vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
            inm = headers.get("if-none-match")
            if inm and _etag_match(inm, etag):
                if charged:  # GitHub does not count a 304 against the rate limit
                    self._refund(login)
                reply = Reply(304, None, {k: v for k, v in reply.headers.items() if k in ("link", "x-poll-interval")})
                payload = b""
                del out_headers["content-type"]
        out_headers.update(self._rate_headers(login))
        out_headers.update(reply.headers)
        if reply.status in (204, 304):
            out_headers.pop("content-type", None)

        synthesized = fault is not None and fault.kind in ("status", "secondary_rate_limit", "primary_rate_limit")
        if op is not None and reply.status != 0:
            tv = time.perf_counter()
            rerrors = self.spec.validate_response(
                op, reply.status, out_headers, payload, injected=synthesized, method=method, path=path
            )
            self._account_validation(tv)
            self._record_violations(rerrors, "response")
        entry.status = reply.status
        entry.user = login
        entry.duration = time.perf_counter() - t0
        with self.state.lock:
            self.requests.append((method, path, reply.status))
            self.log.append(entry)

        if fault is not None and fault.kind == "timeout" and fault.kw.get("effect", True):
            self._stopping.wait(float(fault.kw.get("seconds", 10)))
        if reply.status == 0 or (fault is not None and fault.kind == "lost_response"):
            h.close_connection = True
            h.drop()
            return
        h.respond(reply.status, out_headers, payload)

    def _handle_graphql(self, h: _Handler, method: str, body: bytes) -> None:
        """``POST /graphql`` for the two queries orch sends, and nothing else: the open issues carrying a label with who
        labelled them (``_graphql_labelled``), and who last edited an issue's body
        (``repository(owner, name) { issue(number) { userContentEdits(last: 100) { nodes { editor { login } editedAt } } } }``). Any other query, or a
        variable of the wrong type, is recorded as a violation (the test fails) and answered as GitHub would."""
        headers = {k.lower(): v for k, v in h.headers.items()}
        reply: dict[str, Any]
        status, reply = 200, {}
        login = None
        try:
            login = self._authenticate(headers, "/graphql")
            if method != "POST":
                raise ApiError(404)
            with self.state.lock:  # an injected ``status`` fault answers as for the REST API; nothing is read
                fault = next((f for f in self.faults if f.kind == "status" and f.matches(method, "/graphql")), None)
                if fault is not None:
                    fault.hits += 1
            if fault is not None:
                raise ApiError(int(fault.kw.get("status", 500)), fault.kw.get("message"))
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(400, "Problems parsing JSON") from None
            query = " ".join(str(data.get("query") or "").split())
            variables = data.get("variables") or {}
            if (
                query == GRAPHQL_LABELLED_QUERY
                and set(variables) <= {"owner", "repo", "label", "after"}
                and all(isinstance(variables.get(k), str) for k in ("owner", "repo", "label"))
                and isinstance(variables.get("after"), str | None)
            ):
                reply = self._graphql_labelled(variables, login)
            elif (
                query == GRAPHQL_ISSUE_QUERY
                and set(variables) == {"owner", "repo", "number"}
                and isinstance(variables.get("number"), int)
                and all(isinstance(variables.get(k), str) for k in ("owner", "repo"))
            ):
                reply = self._graphql_issue(variables, login)
            elif (
                query != GRAPHQL_EDITOR_QUERY
                or set(variables) != {"owner", "repo", "number"}
                or not isinstance(variables.get("number"), int)
                or not all(isinstance(variables.get(k), str) for k in ("owner", "repo"))
            ):
                self._record_violations([f"unsupported GraphQL request: {query!r} {variables!r}"], "request")
                reply = {"errors": [{"message": "the emulator answers only orch's own queries"}]}
            else:
                with self.state.lock:
                    repo = self.state.find_repo(variables["owner"], variables["repo"])
                    visible = repo is not None and rank(self.state.role(repo, login)) >= rank("read")
                    issue = repo.issues.get(variables["number"]) if repo is not None and visible else None
                    if issue is None or issue.is_pull:
                        what = "Issue" if visible else "Repository"
                        reply = {
                            "data": {"repository": {"issue": None} if visible else None},
                            "errors": [
                                {
                                    "type": "NOT_FOUND",
                                    "path": ["repository", "issue"] if visible else ["repository"],
                                    "message": f"Could not resolve to an {what} with the number of {variables['number']}."
                                    if visible
                                    else f"Could not resolve to a Repository with the name "
                                    f"'{variables['owner']}/{variables['repo']}'.",
                                }
                            ],
                        }
                    else:
                        # as GitHub: once edited, the original text is listed too, by its author at creation
                        history = ([(issue.user, issue.created_at)] + issue.edits) if issue.edits else []
                        reply = {
                            "data": {
                                "repository": {
                                    "issue": {
                                        "userContentEdits": {
                                            "nodes": [
                                                {"editor": {"login": who}, "editedAt": iso(at)}
                                                for who, at in history[-100:]
                                            ]
                                        }
                                    }
                                }
                            }
                        }
        except ApiError as err:
            status, reply = err.status, err.body()
        payload = json.dumps(reply, separators=(",", ":")).encode()
        with self.state.lock:
            self.requests.append((method, "/graphql", status))
            self.log.append(
                LogEntry(
                    method, "/graphql", "", status, login, "graphql", None, request_headers=headers, request_body=body
                )
            )
        h.respond(status, {"content-type": "application/json; charset=utf-8"}, payload)

    def _gql_actor(self, who: str) -> dict[str, Any]:
        """A GraphQL ``Actor``: a Bot's login without the "[bot]" that REST shows (call with the state lock held)."""
        acct = self.state.accounts.get(who.lower())
        bot = acct is not None and acct.type == "Bot"
        return {"__typename": "Bot" if bot else "User", "login": who.removesuffix("[bot]") if bot else who}

    def _graphql_issue(self, variables: dict[str, Any], login: str | None) -> dict[str, Any]:
        """GraphQL ``repository.issue(number)``: its fields and labels, its body's edits (as the editor query), and its
        last 100 ``LabeledEvent``s and ``RenamedTitleEvent``s oldest first, with ``pageInfo.hasPreviousPage``; a
        pull request's number, or a repository the login cannot read, is NOT_FOUND as GitHub says it."""
        with self.state.lock:
            repo = self.state.find_repo(variables["owner"], variables["repo"])
            visible = repo is not None and rank(self.state.role(repo, login)) >= rank("read")
            issue = repo.issues.get(variables["number"]) if repo is not None and visible else None
            if repo is None or issue is None or issue.is_pull:
                what = "Issue" if visible else "Repository"
                return {
                    "data": {"repository": {"issue": None} if visible else None},
                    "errors": [
                        {
                            "type": "NOT_FOUND",
                            "path": ["repository", "issue"] if visible else ["repository"],
                            "message": f"Could not resolve to an {what} with the number of {variables['number']}."
                            if visible
                            else f"Could not resolve to a Repository with the name "
                            f"'{variables['owner']}/{variables['repo']}'.",
                        }
                    ],
                }

            items = [e for e in repo.events if e.issue_number == issue.number and e.event in ("labeled", "renamed")]
            nodes: list[dict[str, Any]] = []
            for e in items[-100:]:
                if e.event == "labeled":
                    nodes.append(
                        {
                            "__typename": "LabeledEvent",
                            "createdAt": iso(e.created_at),
                            "label": {"name": e.label},
                            "actor": self._gql_actor(e.actor),
                        }
                    )
                else:
                    nodes.append(
                        {
                            "__typename": "RenamedTitleEvent",
                            "createdAt": iso(e.created_at),
                            "actor": self._gql_actor(e.actor),
                        }
                    )
            history = ([(issue.user, issue.created_at)] + issue.edits) if issue.edits else []
            node = {
                "number": issue.number,
                "title": issue.title,
                "body": issue.body or "",
                "state": issue.state.upper(),
                "createdAt": iso(issue.created_at),
                "updatedAt": iso(issue.updated_at),
                "author": self._gql_actor(issue.user),
                "labels": {"nodes": [{"name": n} for n in issue.labels[:100]]},
                "userContentEdits": {
                    "nodes": [{"editor": {"login": who}, "editedAt": iso(at)} for who, at in history[-100:]]
                },
                "timelineItems": {"pageInfo": {"hasPreviousPage": len(items) > 100}, "nodes": nodes},
            }
            return {"data": {"repository": {"issue": node}}}

    def _graphql_labelled(self, variables: dict[str, Any], login: str | None) -> dict[str, Any]:
        """GraphQL ``repository.issues(states: OPEN, labels: [label])`` (a label's name matches whatever its case), 100
        a page by number, each with its fields, labels and last 100 ``LabeledEvent``s oldest first; a Bot's login is
        without the "[bot]" that REST shows."""
        with self.state.lock:
            repo = self.state.find_repo(variables["owner"], variables["repo"])
            if repo is None or rank(self.state.role(repo, login)) < rank("read"):
                return {
                    "data": {"repository": None},
                    "errors": [
                        {
                            "type": "NOT_FOUND",
                            "path": ["repository"],
                            "message": f"Could not resolve to a Repository with the name "
                            f"'{variables['owner']}/{variables['repo']}'.",
                        }
                    ],
                }
            label = variables["label"].lower()
            found = sorted(
                (i for i in repo.issues.values() if not i.is_pull and i.state == "open"), key=lambda i: i.number
            )
            found = [i for i in found if label in {n.lower() for n in i.labels}]
            after = variables.get("after")
            start = int(base64.b64decode(after).decode()) if after else 0
            page = found[start : start + 100]
            end = start + len(page)
            wanted = {i.number for i in page}
            labelled: dict[int, list[Any]] = {n: [] for n in wanted}
            for e in repo.events:
                if e.issue_number in wanted and e.event == "labeled":
                    labelled[e.issue_number].append(e)

            nodes = [
                {
                    "number": i.number,
                    "title": i.title,
                    "body": i.body or "",
                    "state": i.state.upper(),
                    "createdAt": iso(i.created_at),
                    "updatedAt": iso(i.updated_at),
                    "author": self._gql_actor(i.user),
                    "labels": {"nodes": [{"name": n} for n in i.labels[:100]]},
                    "timelineItems": {
                        "nodes": [
                            {"label": {"name": e.label}, "actor": self._gql_actor(e.actor)}
                            for e in labelled[i.number][-100:]
                        ]
                    },
                }
                for i in page
            ]
            issues = {
                "pageInfo": {
                    "hasNextPage": end < len(found),
                    "endCursor": base64.b64encode(str(end).encode()).decode() if page else None,
                },
                "nodes": nodes,
            }
            return {"data": {"repository": {"issues": issues}}}

    def _account_validation(self, t0: float) -> None:
        with self.state.lock:
            self.validation_seconds += time.perf_counter() - t0
            self.validations += 1

    def _authenticate(self, headers: dict[str, str], path: str) -> str | None:
        auth = headers.get("authorization", "")
        if not auth:
            if path.rstrip("/") == "/rate_limit":
                return None
            raise ApiError(401, "Requires authentication")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise ApiError(401, "Bad credentials")
        with self.state.lock:
            acct = self.state.by_token(token.strip())
        if acct is None:
            raise ApiError(401, "Bad credentials")
        return acct.login

    def _charge(self, login: str | None) -> None:
        with self.state.lock:
            b = self._bucket(login)
            if b["used"] >= b["limit"]:
                raise ApiError(
                    403,
                    f"API rate limit exceeded for user ID {self.state.account(login).id if login else 0}.",
                    headers={"x-ratelimit-remaining": "0"},
                )
            b["used"] += 1

    def _refund(self, login: str | None) -> None:
        with self.state.lock:
            b = self._bucket(login)
            b["used"] = max(0, b["used"] - 1)

    def _fault_reply(self, fault: Fault, login: str | None) -> Reply:
        kw = fault.kw
        if fault.kind == "status":
            status = int(kw.get("status", 500))
            err = ApiError(status, kw.get("message"))
            body = kw.get("body", err.body())
            if status == 422 and "body" not in kw:
                body["errors"] = [{"resource": "Issue", "code": "custom", "message": "injected fault"}]
            return Reply(status, body, dict(kw.get("headers", {})))
        if fault.kind == "secondary_rate_limit":
            return Reply(
                int(kw.get("status", 403)),
                {
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                    "If you reach out to GitHub Support for help, please include the request ID.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                    "#about-secondary-rate-limits",
                    "status": str(kw.get("status", 403)),
                },
                {"retry-after": str(kw.get("retry_after", 1))},
            )
        # primary rate limit
        acct_id = self.state.account(login).id if login else 0
        return Reply(
            int(kw.get("status", 403)),
            {
                "message": f"API rate limit exceeded for user ID {acct_id}. If you reach out to GitHub Support for help, "
                "please include the request ID.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                "#about-primary-rate-limits",
                "status": str(kw.get("status", 403)),
            },
            {"x-ratelimit-remaining": "0", "x-ratelimit-used": str(self._bucket(login)["limit"])},
        )

    # -- dispatch

    def _dispatch(
        self,
        op: Operation | None,
        params: dict[str, str],
        method: str,
        query: dict[str, list[str]],
        body: bytes,
        login: str | None,
        headers: dict[str, str],
    ) -> Reply:
        if op is None:
            raise ApiError(404)
        handler = _ROUTES.get(op.operation_id)
        if handler is None:
            self._record_violations(
                [f"{op.method} {op.template} ({op.operation_id}) is not implemented by the emulator"], "emulator"
            )
            raise ApiError(404)
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise ApiError(400, "Problems parsing JSON") from None
        q = {k: v[-1] for k, v in query.items()}
        with self.state.lock:
            repo = None
            if "repository_id" in params:
                repo = self.state.repo_by_id(int(params["repository_id"]))
                if repo is None:
                    raise ApiError(404)
                params = {**params, "owner": repo.owner, "repo": repo.name}
            ctx = Ctx(self, login, params, q, data, self.render)  # type: ignore[arg-type]
            return handler(ctx)


def _etag_match(header: str, etag: str) -> bool:
    def norm(t: str) -> str:
        t = t.strip()
        return t.removeprefix("W/")

    return header.strip() == "*" or norm(etag) in {norm(t) for t in header.split(",")}


# --- the route handlers ----------------------------------------------------------------------


@dataclass
class Ctx:
    gh: GitHubEmulator
    login: str | None
    params: dict[str, str]
    query: dict[str, str]
    data: Any
    render: Render

    @property
    def state(self) -> State:
        return self.gh.state

    def repo(self, need: str = "read") -> Repo:
        """The repository named by the path, or 404 (private: invisible without read) / 403."""
        repo = self.state.find_repo(self.params["owner"], self.params["repo"])
        if repo is None:
            raise ApiError(404)
        role = self.state.role(repo, self.login)
        if rank(role) < rank("read"):
            raise ApiError(404)
        if rank(role) < rank(need):
            raise ApiError(
                403,
                "Must have admin rights to Repository."
                if need in ("admin", "maintain")
                else "Resource not accessible by personal access token",
            )
        return repo

    def role(self, repo: Repo) -> str:
        return self.state.role(repo, self.login)

    def issue(self, repo: Repo) -> Issue:
        issue = repo.issues.get(int(self.params["issue_number"]))
        if issue is None:
            raise ApiError(404)
        return issue

    def obj(self) -> dict[str, Any]:
        if self.data is None:
            return {}
        if not isinstance(self.data, dict):
            raise ApiError(400, "Problems parsing JSON")
        return self.data

    def int_q(self, name: str, default: int) -> int:
        try:
            return int(self.query.get(name, default))
        except ValueError:
            raise ApiError(400, f"Invalid {name}") from None

    def page(self, items: list[Any], path: str) -> Reply:
        per_page = max(1, min(100, self.int_q("per_page", 30)))
        page = max(1, self.int_q("page", 1))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def url(n: int) -> str:
            # GitHub's links name the repository by id: /repositories/{id}/issues?...&page=N
            q = {**self.query, "per_page": str(per_page), "page": str(n)}
            return f"{self.gh.api_url}{link_path}?{urlencode(q)}"

        repo = self.state.find_repo(self.params.get("owner", ""), self.params.get("repo", ""))
        link_path = re.sub(r"^/repos/[^/]+/[^/]+", f"/repositories/{repo.id}", path) if repo else path
        if page > 1:
            links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            links.append(f'<{url(page + 1)}>; rel="next"')
            links.append(f'<{url(last)}>; rel="last"')
        if page > 1:
            links.append(f'<{url(1)}>; rel="first"')
        return Reply(200, chunk, {"link": ", ".join(links)} if links else {})


Handler = Callable[[Ctx], Reply]
_ROUTES: dict[str, Handler] = {}


def route(operation_id: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _ROUTES[operation_id] = fn
        return fn

    return deco


def _validation_failed(resource: str, field: str, code: str, message: str | None = None) -> ApiError:
    err: dict[str, Any] = {"resource": resource, "field": field, "code": code}
    if message:
        err["message"] = message
    return ApiError(422, "Validation Failed", [err])


@route("users/get-authenticated")
def _get_user(c: Ctx) -> Reply:
    assert c.login is not None
    if c.state.account(c.login).type == "Bot":
        raise ApiError(403, "Resource not accessible by integration")
    return Reply(200, c.render.private_user(c.login))


@route("rate-limit/get")
def _rate_limit(c: Ctx) -> Reply:
    b = c.gh._bucket(c.login)
    core = {
        "limit": b["limit"],
        "used": b["used"],
        "remaining": max(0, b["limit"] - b["used"]),
        "reset": c.gh._rate_reset,
    }
    other = {"limit": 30, "used": 0, "remaining": 30, "reset": c.gh._rate_reset}
    return Reply(
        200,
        {
            "resources": {"core": core, "search": other, "graphql": {**other, "limit": 5000, "remaining": 5000}},
            "rate": core,
        },
    )


@route("repos/get")
def _get_repo(c: Ctx) -> Reply:
    return Reply(200, c.render.repository(c.repo(), c.login, full=True))


@route("repos/get-branch")
def _get_branch(c: Ctx) -> Reply:
    repo = c.repo()
    commit = _commit_info(repo.bare, c.params["branch"])
    if commit is None:
        raise ApiError(404, "Branch not found")
    return Reply(200, c.render.branch(repo, c.params["branch"], commit))


@route("repos/get-collaborator-permission-level")
def _permission(c: Ctx) -> Reply:
    repo = c.repo()
    user = c.state.accounts.get(c.params["username"].lower())
    if user is None or user.type != "User":
        raise ApiError(404, f"{c.params['username']} is not a user")
    role = c.state.role(repo, user.login)
    permission = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}.get(
        role, "none"
    )
    collaborator = {**c.render.user(user.login), "permissions": c.render.permissions(role), "role_name": role}
    return Reply(200, {"permission": permission, "role_name": role, "user": collaborator})


# labels


@route("issues/list-labels-for-repo")
def _list_labels(c: Ctx) -> Reply:
    repo = c.repo()
    labels = sorted(repo.labels.values(), key=lambda lab: lab.name.lower())
    return c.page([c.render.label(repo, lab) for lab in labels], f"/repos/{repo.full_name}/labels")


@route("issues/create-label")
def _create_label(c: Ctx) -> Reply:
    repo = c.repo("write")
    d = c.obj()
    name = str(d.get("name", "")).strip()
    if not name:
        raise _validation_failed("Label", "name", "missing_field")
    color = str(d.get("color", "ededed")).lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", color):
        raise _validation_failed("Label", "color", "invalid")
    if repo.label(name):
        raise _validation_failed("Label", "name", "already_exists")
    label = Label(c.state.next_id(), name, color, d.get("description"))
    repo.labels[name.lower()] = label
    c.state.tick()
    body = c.render.label(repo, label)
    return Reply(201, body, {"location": body["url"]})


@route("issues/get-label")
def _get_label(c: Ctx) -> Reply:
    repo = c.repo()
    label = repo.label(c.params["name"])
    if label is None:
        raise ApiError(404)
    return Reply(200, c.render.label(repo, label))


@route("issues/update-label")
def _update_label(c: Ctx) -> Reply:
    repo = c.repo("write")
    label = repo.label(c.params["name"])
    if label is None:
        raise ApiError(404)
    d = c.obj()
    if "color" in d:
        color = str(d["color"]).lstrip("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", color):
            raise _validation_failed("Label", "color", "invalid")
        label.color = color  # GitHub keeps the case it was given
    if "description" in d:
        label.description = d["description"]
    new = d.get("new_name")
    if new and new != label.name:
        other = repo.label(new)
        if other is not None and other is not label:
            raise _validation_failed("Label", "name", "already_exists")
        old = label.name
        del repo.labels[old.lower()]
        label.name = new
        repo.labels[new.lower()] = label
        for issue in repo.issues.values():
            issue.labels = [new if n.lower() == old.lower() else n for n in issue.labels]
    c.state.tick()
    return Reply(200, c.render.label(repo, label))


@route("issues/delete-label")
def _delete_label(c: Ctx) -> Reply:
    repo = c.repo("write")
    label = repo.label(c.params["name"])
    if label is None:
        raise ApiError(404)
    del repo.labels[label.name.lower()]
    for issue in repo.issues.values():
        issue.labels = [n for n in issue.labels if n.lower() != label.name.lower()]
    c.state.tick()
    return Reply(204)


# issues


def _pull_updated(issue: Issue) -> int:
    """A pull request's updated_at: its issue's, or its latest review activity when later."""
    return max(issue.updated_at, issue.pull.activity_at if issue.pull else 0)


def _issue_sort_key(sort: str) -> Callable[[tuple[Repo, Issue]], Any]:
    if sort == "updated":
        return lambda ri: (ri[1].updated_at, ri[1].number)
    if sort == "pull-updated":
        return lambda ri: (_pull_updated(ri[1]), ri[1].number)
    if sort == "comments":
        return lambda ri: (len(ri[0].comments_of(ri[1].number)), ri[1].number)
    return lambda ri: (ri[1].created_at, ri[1].number)


@route("issues/list-for-repo")
def _list_issues(c: Ctx) -> Reply:
    repo = c.repo()
    state = c.query.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise _validation_failed("Issue", "state", "invalid")
    sort = c.query.get("sort", "created")
    direction = c.query.get("direction", "desc")
    items = [i for i in repo.issues.values() if state == "all" or i.state == state]
    if c.query.get("labels"):
        wanted = {n.strip().lower() for n in c.query["labels"].split(",") if n.strip()}
        items = [i for i in items if wanted <= {n.lower() for n in i.labels}]
    items = _since(c, items, "Issue")
    if c.query.get("creator"):
        items = [i for i in items if i.user.lower() == c.query["creator"].lower()]
    pairs = sorted(((repo, i) for i in items), key=_issue_sort_key(sort), reverse=direction != "asc")
    return c.page([c.render.issue(repo, i, listing=True) for _, i in pairs], f"/repos/{repo.full_name}/issues")


@route("issues/get")
def _get_issue(c: Ctx) -> Reply:
    repo = c.repo()
    return Reply(200, c.render.issue(repo, c.issue(repo)))


def _label_names(values: Any) -> list[str]:
    if not isinstance(values, list):
        raise _validation_failed("Issue", "labels", "invalid")
    names = []
    for v in values:
        name = v.get("name") if isinstance(v, dict) else v
        if not isinstance(name, (str, int)) or str(name).strip() == "":
            raise _validation_failed("Label", "name", "invalid")
        names.append(str(name))
    return names


@route("issues/create")
def _create_issue(c: Ctx) -> Reply:
    repo = c.repo("read")
    assert c.login is not None
    d = c.obj()
    title = d.get("title")
    if title is None or str(title).strip() == "":
        raise _validation_failed("Issue", "title", "missing_field")
    issue = c.gh._new_issue(repo, str(title), d.get("body"), c.login)
    c.gh._feed_issue(repo, issue, "opened", c.login)
    # "Only users with push access can set labels for new issues. Labels are silently dropped otherwise."
    if rank(c.role(repo)) >= rank("write"):
        for name in _label_names(d.get("labels", [])):
            c.gh._apply_label(repo, issue, name, c.login)
    body = c.render.issue(repo, issue)
    return Reply(201, body, {"location": body["url"]})


@route("issues/update")
def _update_issue(c: Ctx) -> Reply:
    repo = c.repo("read")
    issue = c.issue(repo)
    assert c.login is not None
    role = c.role(repo)
    author = issue.user.lower() == c.login.lower()
    if rank(role) < rank("triage") and not author:
        raise ApiError(403, "Resource not accessible by personal access token")
    d = c.obj()
    before = (issue.title, issue.body, issue.state)
    if "title" in d and d["title"] is not None and str(d["title"]) != issue.title:
        repo.events.append(
            Event(
                c.state.next_id(),
                issue.number,
                "renamed",
                c.state.account(c.login).login,
                "",
                "",
                c.state.tick(),
                (issue.title, str(d["title"])),
            )
        )
        issue.title = str(d["title"])
    if "body" in d and d["body"] != issue.body:
        issue.body = d["body"]
        issue.edits.append((c.state.account(c.login).login, c.state.tick()))
    if "state" in d:
        if d["state"] not in ("open", "closed"):
            raise _validation_failed("Issue", "state", "invalid")
        if d["state"] != issue.state:
            issue.state = d["state"]
            if issue.state == "closed":
                issue.closed_at = c.state.tick()
                issue.closed_by = c.login
                issue.state_reason = d.get("state_reason") or "completed"
            else:
                issue.closed_at = None
                issue.closed_by = None
                issue.state_reason = "reopened"
    if "labels" in d and rank(role) >= rank("triage"):
        wanted = _label_names(d["labels"])
        for name in list(issue.labels):
            if name.lower() not in {w.lower() for w in wanted}:
                c.gh._remove_label(repo, issue, name, c.login)
        for name in wanted:
            c.gh._apply_label(repo, issue, name, c.login)
    issue.updated_at = c.state.tick()
    if before[:2] != (issue.title, issue.body):
        c.gh._feed_issue(repo, issue, "edited", c.login)
    if before[2] != issue.state:
        c.gh._feed_issue(repo, issue, "closed" if issue.state == "closed" else "reopened", c.login)
    return Reply(200, c.render.issue(repo, issue))


@route("issues/list-labels-on-issue")
def _issue_labels(c: Ctx) -> Reply:
    repo = c.repo()
    issue = c.issue(repo)
    return c.page(
        [c.render.label(repo, repo.labels[n.lower()]) for n in issue.labels],
        f"/repos/{repo.full_name}/issues/{issue.number}/labels",
    )


def _labels_body(c: Ctx) -> list[str]:
    d = c.data
    if isinstance(d, dict):
        d = d.get("labels", [])
    return _label_names(d if d is not None else [])


@route("issues/add-labels")
def _add_labels(c: Ctx) -> Reply:
    repo = c.repo("triage")
    issue = c.issue(repo)
    assert c.login is not None
    names = _labels_body(c)
    if not names:
        raise _validation_failed("Label", "labels", "missing_field")
    added = [c.gh._apply_label(repo, issue, n, c.login) for n in names]  # every one, no short-circuit
    if any(added):
        issue.updated_at = c.state.tick()
    return Reply(200, [c.render.label(repo, repo.labels[n.lower()]) for n in issue.labels])


@route("issues/set-labels")
def _set_labels(c: Ctx) -> Reply:
    repo = c.repo("triage")
    issue = c.issue(repo)
    assert c.login is not None
    names = _labels_body(c)
    for name in list(issue.labels):
        if name.lower() not in {n.lower() for n in names}:
            c.gh._remove_label(repo, issue, name, c.login)
    for name in names:
        c.gh._apply_label(repo, issue, name, c.login)
    issue.updated_at = c.state.tick()
    return Reply(200, [c.render.label(repo, repo.labels[n.lower()]) for n in issue.labels])


@route("issues/remove-label")
def _remove_label(c: Ctx) -> Reply:
    repo = c.repo("triage")
    issue = c.issue(repo)
    assert c.login is not None
    if not c.gh._remove_label(repo, issue, c.params["name"], c.login):
        raise ApiError(404, "Label does not exist")
    issue.updated_at = c.state.tick()
    return Reply(200, [c.render.label(repo, repo.labels[n.lower()]) for n in issue.labels])


# comments


@route("issues/list-comments")
def _list_comments(c: Ctx) -> Reply:
    repo = c.repo()
    issue = c.issue(repo)
    comments = repo.comments_of(issue.number)
    if c.gh.comment_lag:
        now = time.monotonic()  # the list is a prefix: it ends before the first comment not yet replicated
        comments = comments[
            : next((i for i, x in enumerate(comments) if c.gh._comment_visible_at.get(x.id, 0.0) > now), len(comments))
        ]
    if c.query.get("since"):
        since = parse_iso(c.query["since"])
        comments = [x for x in comments if x.updated_at >= since]
    return c.page(
        [c.render.comment(repo, x) for x in comments], f"/repos/{repo.full_name}/issues/{issue.number}/comments"
    )


@route("issues/create-comment")
def _create_comment(c: Ctx) -> Reply:
    repo = c.repo("read")
    issue = c.issue(repo)
    assert c.login is not None
    body = c.obj().get("body")
    if not isinstance(body, str) or not body:
        raise _validation_failed("IssueComment", "body", "missing_field")
    if len(body) > 65536:
        raise _validation_failed("IssueComment", "body", "custom", "Body is too long (maximum is 65536 characters)")
    now = c.state.tick()
    comment = Comment(c.state.next_id(), issue.number, c.state.account(c.login).login, body, now, now)
    repo.comments[comment.id] = comment
    c.gh._comment_visible_at[comment.id] = time.monotonic() + c.gh.comment_lag
    issue.updated_at = now
    c.gh._feed_comment(repo, issue, comment, "created", c.login)
    out = c.render.comment(repo, comment)
    return Reply(201, out, {"location": out["url"]})


def _comment(c: Ctx, repo: Repo, own_or: str) -> Comment:
    comment = repo.comments.get(int(c.params["comment_id"]))
    if comment is None:
        raise ApiError(404)
    assert c.login is not None
    if comment.user.lower() != c.login.lower() and rank(c.role(repo)) < rank(own_or):
        raise ApiError(403, "Resource not accessible by personal access token")
    return comment


@route("issues/get-comment")
def _get_comment(c: Ctx) -> Reply:
    repo = c.repo()
    comment = repo.comments.get(int(c.params["comment_id"]))
    if comment is None:
        raise ApiError(404)
    return Reply(200, c.render.comment(repo, comment))


@route("issues/update-comment")
def _update_comment(c: Ctx) -> Reply:
    repo = c.repo("read")
    comment = _comment(c, repo, "write")
    body = c.obj().get("body")
    if not isinstance(body, str) or not body:
        raise _validation_failed("IssueComment", "body", "missing_field")
    comment.body = body
    comment.updated_at = c.state.tick()
    if c.login is not None and comment.issue_number in repo.issues:
        c.gh._feed_comment(repo, repo.issues[comment.issue_number], comment, "edited", c.login)
    return Reply(200, c.render.comment(repo, comment))


@route("issues/delete-comment")
def _delete_comment(c: Ctx) -> Reply:
    repo = c.repo("read")
    comment = _comment(c, repo, "triage")
    del repo.comments[comment.id]
    c.state.tick()
    if c.login is not None and comment.issue_number in repo.issues:
        c.gh._feed_comment(repo, repo.issues[comment.issue_number], comment, "deleted", c.login)
    return Reply(204)


@route("issues/list-events")
def _list_events(c: Ctx) -> Reply:
    repo = c.repo()
    issue = c.issue(repo)
    return c.page(
        [c.render.event(repo, e) for e in repo.events_of(issue.number)],
        f"/repos/{repo.full_name}/issues/{issue.number}/events",
    )


@route("issues/list-events-for-repo")
def _list_events_for_repo(c: Ctx) -> Reply:
    """Every issue event of the repository, newest first, each with its issue (as GitHub's repo-level list does)."""
    repo = c.repo()
    items = []
    for e in sorted(repo.events, key=lambda e: e.id, reverse=True):
        issue = repo.issues.get(e.issue_number)
        data = c.render.event(repo, e)
        if issue is not None:
            data["issue"] = c.render.issue(repo, issue, listing=True)
        items.append(data)
    return c.page(items, f"/repos/{repo.full_name}/issues/events")


# pulls


@route("activity/list-repo-events")
def _list_repo_events(c: Ctx) -> Reply:
    """The repository's activity feed, newest first: the events that have become visible (``feed_lag``), at most the
    latest 300 as GitHub keeps; ``X-Poll-Interval`` says how often a client may poll it (also on a 304)."""
    repo = c.repo()
    now = time.monotonic()
    shown = [a for a in repo.activity if a.visible_at <= now][-300:]
    reply = c.page([c.render.activity(repo, a) for a in reversed(shown)], f"/repos/{repo.full_name}/events")
    reply.headers["x-poll-interval"] = str(c.gh.feed_poll_interval)
    return reply


@route("pulls/list")
def _list_pulls(c: Ctx) -> Reply:
    repo = c.repo()
    state = c.query.get("state", "open")
    items = [i for i in repo.pulls if state == "all" or i.state == state]
    head = c.query.get("head")
    # GitHub filters on head only in the form user:ref-name (org:ref-name); a bare branch name is ignored.
    if head and ":" in head:
        owner, _, ref = head.partition(":")
        items = [
            i
            for i in items
            if i.pull
            and i.pull.head_ref == ref
            and owner.lower() == (i.pull.head_repo[0] if i.pull.head_repo else repo.owner).lower()
        ]
    if c.query.get("base"):
        items = [i for i in items if i.pull and i.pull.base_ref == c.query["base"]]
    sort = c.query.get("sort", "created")
    # GitHub: "Default: desc when sort is created or sort is not specified, otherwise asc."
    direction = c.query.get("direction", "desc" if sort == "created" else "asc")
    key = _issue_sort_key("pull-updated" if sort in ("updated", "popularity", "long-running") else "created")
    pairs = sorted(((repo, i) for i in items), key=key, reverse=direction != "asc")
    return c.page([c.render.pull(repo, i, full=False) for _, i in pairs], f"/repos/{repo.full_name}/pulls")


@route("pulls/get")
def _get_pull(c: Ctx) -> Reply:
    repo = c.repo()
    issue = repo.issues.get(int(c.params["pull_number"]))
    if issue is None or issue.pull is None:
        raise ApiError(404)
    return Reply(200, c.render.pull(repo, issue, full=True))


@route("pulls/create")
def _create_pull(c: Ctx) -> Reply:
    repo = c.repo("write")
    assert c.login is not None
    d = c.obj()
    head, base = d.get("head"), d.get("base")
    if not head:
        raise _validation_failed("PullRequest", "head", "missing_field")
    if not base:
        raise _validation_failed("PullRequest", "base", "missing_field")
    if "issue" in d:
        raise _validation_failed("PullRequest", "issue", "custom", "converting issues is not supported by the emulator")
    if not d.get("title"):
        raise _validation_failed("PullRequest", "title", "missing_field")
    head_ref = str(head)
    if ":" in head_ref:
        owner, _, head_ref = head_ref.partition(":")
        if owner.lower() != repo.owner.lower():
            raise _validation_failed("PullRequest", "head", "invalid")
    head_sha = _rev(repo.bare, head_ref)
    base_sha = _rev(repo.bare, str(base))
    if head_sha is None:
        raise _validation_failed("PullRequest", "head", "invalid")
    if base_sha is None:
        raise _validation_failed("PullRequest", "base", "invalid")
    for other in repo.pulls:
        if (
            other.state == "open"
            and other.pull
            and other.pull.head_repo is None
            and other.pull.head_ref == head_ref
            and other.pull.base_ref == base
        ):
            raise _validation_failed(
                "PullRequest", "head", "custom", f"A pull request already exists for {repo.owner}:{head_ref}."
            )
    if _git_ok(repo.bare, "merge-base", "--is-ancestor", head_sha, base_sha):
        raise _validation_failed("PullRequest", "head", "custom", f"No commits between {base} and {head_ref}")
    issue = c.gh._new_issue(repo, str(d["title"]), d.get("body"), c.login)
    issue.pull = Pull(
        c.state.next_id(),
        head_ref,
        head_sha,
        str(base),
        base_sha,
        bool(d.get("draft", False)),
        bool(d.get("maintainer_can_modify", False)),
    )
    c.gh._feed_issue(repo, issue, "opened", c.login)
    out = c.render.pull(repo, issue, full=True)
    return Reply(201, out, {"location": out["url"]})


@route("pulls/update")
def _update_pull(c: Ctx) -> Reply:
    repo = c.repo("write")
    issue = repo.issues.get(int(c.params["pull_number"]))
    if issue is None or issue.pull is None:
        raise ApiError(404)
    d = c.obj()
    before = (issue.title, issue.body, issue.state)
    if "title" in d:
        if not d["title"]:
            raise _validation_failed("PullRequest", "title", "missing_field")
        issue.title = str(d["title"])
    if "body" in d:
        issue.body = d["body"]
    if d.get("state") in ("open", "closed"):
        issue.state = str(d["state"])
    issue.updated_at = c.state.tick()
    assert c.login is not None
    if before[:2] != (issue.title, issue.body):
        c.gh._feed_issue(repo, issue, "edited", c.login)
    if before[2] != issue.state:
        c.gh._feed_issue(repo, issue, "closed" if issue.state == "closed" else "reopened", c.login)
    return Reply(200, c.render.pull(repo, issue, full=True))


# reviews

REVIEW_BODY_LIMIT = 65536


def _pull_issue(c: Ctx, repo: Repo) -> Issue:
    issue = repo.issues.get(int(c.params["pull_number"]))
    if issue is None or issue.pull is None:
        raise ApiError(404)
    return issue


def _unprocessable(message: str) -> ApiError:
    """GitHub's review endpoints answer 422 with a list of messages (validation-error-simple)."""
    return ApiError(422, "Unprocessable Entity", [message])


@route("pulls/list-reviews")
def _list_reviews(c: Ctx) -> Reply:
    repo = c.repo()
    issue = _pull_issue(c, repo)
    return c.page(
        [c.render.review(repo, r) for r in repo.reviews_of(issue.number, c.login)],
        f"/repos/{repo.full_name}/pulls/{issue.number}/reviews",
    )


@route("pulls/create-review")
def _create_review(c: Ctx) -> Reply:
    """Anyone who can read the repository may review; a review without ``event`` stays PENDING."""
    repo = c.repo("read")
    issue = _pull_issue(c, repo)
    assert c.login is not None and issue.pull is not None
    d = c.obj()
    event = d.get("event")
    if event is not None and event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
        raise _unprocessable(f"Unknown review event {event!r}")
    body = d.get("body") or ""
    if not isinstance(body, str):
        raise _unprocessable("Body must be a string")
    if len(body) > REVIEW_BODY_LIMIT:
        raise _unprocessable("Body is too long (maximum is 65536 characters)")
    comments = d.get("comments") or []
    if not isinstance(comments, list) or not all(
        isinstance(x, dict) and isinstance(x.get("path"), str) and isinstance(x.get("body"), str) for x in comments
    ):
        raise _unprocessable("Comments must each have a path and a body")
    if event == "REQUEST_CHANGES" and not body:
        raise _unprocessable("Review body is required when requesting changes")
    if event == "COMMENT" and not body and not comments:
        raise _unprocessable("Review body is required when commenting without inline comments")
    if issue.user.lower() == c.login.lower():
        if event == "APPROVE":
            raise _unprocessable("Review Can not approve your own pull request")
        if event == "REQUEST_CHANGES":
            raise _unprocessable("Review Can not request changes on your own pull request")
    if event is None and any(
        r.state == "PENDING" and r.user.lower() == c.login.lower() for r in repo.reviews_of(issue.number, c.login)
    ):
        raise _unprocessable("User can only have one pending review per pull request")
    commit_id = d.get("commit_id") or issue.pull.head_sha
    if not _git_ok(repo.bare, "cat-file", "-e", f"{commit_id}^{{commit}}"):
        raise _unprocessable("Commit ID could not be resolved")
    review = c.gh._record_review(
        repo, issue, c.login, REVIEW_STATES[event or "PENDING"], body, str(commit_id), comments, strict=True
    )
    return Reply(200, c.render.review(repo, review))


def _since(c: Ctx, items: list[Any], resource: str) -> list[Any]:
    """The items updated at or after the `since` query parameter, when it is given."""
    if not c.query.get("since"):
        return items
    try:
        since = parse_iso(c.query["since"])
    except ValueError:
        raise _validation_failed(resource, "since", "invalid") from None
    return [x for x in items if x.updated_at >= since]


@route("pulls/list-review-comments")
def _list_review_comments(c: Ctx) -> Reply:
    repo = c.repo()
    issue = _pull_issue(c, repo)
    items = repo.review_comments_of(issue.number, c.login)
    items = _since(c, items, "PullRequestReviewComment")
    if c.query.get("sort") == "updated":
        items = sorted(items, key=lambda x: (x.updated_at, x.id))
    if c.query.get("sort") and c.query.get("direction") == "desc":  # GitHub: direction is ignored without sort
        items = list(reversed(items))
    return c.page(
        [c.render.review_comment(repo, x) for x in items], f"/repos/{repo.full_name}/pulls/{issue.number}/comments"
    )


def _diff_entries(bare: Path, base_sha: str, head_sha: str, path: str) -> list[dict[str, Any]] | None:
    """The lines of PATH's diff in a pull request (base...head), as GitHub numbers them for review comments:
    ``position`` counts lines below the file's first @@ header (later headers count too), ``side`` is
    RIGHT for added and context lines (``line`` in the new file) and LEFT for removed ones (``line`` in
    the old file), ``hunk`` is the diff from the enclosing @@ header down to the line. None: PATH is not
    in the diff."""
    if not path or not base_sha or not head_sha:
        return None
    res = subprocess.run(
        ["git", "diff", "--no-color", "--no-ext-diff", f"{base_sha}...{head_sha}", "--", path],
        cwd=bare,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    if res.returncode != 0 or "@@" not in res.stdout:
        return None
    entries: list[dict[str, Any]] = []
    position = -1
    old = new = 0
    hunk: list[str] = []
    for text in res.stdout.splitlines():
        m = re.match(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", text)
        if m:
            old, new = int(m[1]), int(m[2])
            position += 1
            hunk = [text]
            continue
        if position < 0 or text.startswith("\\"):
            continue
        position += 1
        hunk.append(text)
        if text.startswith("-"):
            entries.append({"position": position, "side": "LEFT", "line": old, "hunk": "\n".join(hunk)})
            old += 1
        else:
            entries.append({"position": position, "side": "RIGHT", "line": new, "hunk": "\n".join(hunk)})
            if not text.startswith("+"):
                old += 1
            new += 1
    return entries


# --- git -------------------------------------------------------------------------------------


def _find_http_backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    backend = Path(exec_path) / "git-http-backend"
    if not backend.exists():
        raise RuntimeError(f"git http-backend not found in {exec_path}")
    return str(backend)


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {**os.environ, **GIT_ENV}
    res = subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {res.stderr.decode(errors='replace')}")
    return res.stdout.decode()


def _git_ok(cwd: Path, *args: str) -> bool:
    return (
        subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, env={**os.environ, **GIT_ENV}, check=False
        ).returncode
        == 0
    )


def _rev(bare: Path, ref: str) -> str | None:
    res = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", f"refs/heads/{ref}^{{commit}}"],
        cwd=bare,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def _commit_info(bare: Path, ref: str) -> dict[str, Any] | None:
    sha = _rev(bare, ref)
    if sha is None:
        return None
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B"
    out = _git(bare, "log", "-1", f"--format={fmt}", sha)
    h, tree, parents, an, ae, at, cn, ce, ct, msg = out.split("\x00", 9)
    return {
        "sha": h,
        "tree": tree,
        "parents": parents.split(),
        "author_name": an,
        "author_email": ae,
        "author_time": int(at),
        "committer_name": cn,
        "committer_email": ce,
        "committer_time": int(ct),
        "message": msg.rstrip("\n"),
    }


def _handle_git(gh: GitHubEmulator, h: _Handler, method: str, body: bytes) -> None:
    url = urlsplit(h.path)
    m = GIT_PATH.match(url.path)
    assert m is not None
    owner, name, rest = m["owner"], m["repo"], m["rest"] or "/"
    query = parse_qs(url.query)
    service = query.get("service", [""])[0] if rest == "/info/refs" else rest.lstrip("/")
    write = service == "git-receive-pack"
    login = None
    auth = h.headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            user = password = ""
        with gh.state.lock:
            acct = gh.state.by_token(password) or gh.state.by_token(user)
        login = acct.login if acct else None
    with gh.state.lock:
        repo = gh.state.find_repo(owner, name)
        role = gh.state.role(repo, login) if repo else "none"

    def finish(status: int, text: str, headers: dict[str, str] | None = None) -> None:
        gh.git_requests.append((method, url.path, status, login))
        h.respond(status, {"content-type": "text/plain; charset=utf-8", **(headers or {})}, text.encode())

    if login is None:
        return finish(401, "Invalid username or token.\n", {"www-authenticate": 'Basic realm="GitHub"'})
    if repo is None or rank(role) < rank("read"):
        return finish(404, "Repository not found.\n")
    if service not in ("git-upload-pack", "git-receive-pack"):
        return finish(403, "Unsupported service.\n")
    if write and rank(role) < rank("write"):
        return finish(403, f"Permission to {repo.full_name}.git denied to {login}.\n")
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
        **GIT_ENV,
        "GIT_PROJECT_ROOT": str(gh.git_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{repo.owner}/{repo.name}.git{rest}",
        "REQUEST_METHOD": method,
        "QUERY_STRING": url.query,
        "REMOTE_USER": login,
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": h.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if h.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = h.headers["Content-Encoding"]
    if h.headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = h.headers["Git-Protocol"]
    res = subprocess.run([gh._http_backend], input=body, env=env, capture_output=True, check=False)
    head, _, payload = res.stdout.partition(b"\r\n\r\n")
    if not _:
        head, _, payload = res.stdout.partition(b"\n\n")
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip().lower()] = value.strip()
    if res.returncode != 0 and status == 200:
        status = 500
    if write and method == "POST" and status == 200:
        with gh.state.lock:  # like GitHub: open pull requests follow their branches
            repo.pushed_at = gh.state.tick()
            for issue in repo.pulls:
                if issue.pull is not None and issue.state == "open":
                    head_sha, base_sha = _rev(repo.bare, issue.pull.head_ref), _rev(repo.bare, issue.pull.base_ref)
                    if head_sha and head_sha != issue.pull.head_sha:
                        issue.pull.head_sha = head_sha
                        issue.updated_at = gh.state.tick()
                    if base_sha:
                        issue.pull.base_sha = base_sha
    gh.git_requests.append((method, url.path, status, login))
    h.respond(status, headers, payload)


# --- the HTTP handler ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 60
    gh: GitHubEmulator

    def setup(self) -> None:
        super().setup()
        with self.gh._conns_lock:
            self.gh._conns.add(self.connection)

    def finish(self) -> None:
        with self.gh._conns_lock:
            self.gh._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _any(self) -> None:
        method = self.command
        body = self._body()
        path = urlsplit(self.path).path
        if GIT_PATH.match(path):
            _handle_git(self.gh, self, method, body)
        elif path.rstrip("/") == "/graphql":
            self.gh._handle_graphql(self, method, body)
        else:
            self.gh._handle_api(self, method, body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _any

    def respond(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "date", "server"):
                    self.send_header(k, v)
            if status not in (204, 304):
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD" and status not in (204, 304):
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def drop(self) -> None:
        """Close the connection without answering (a lost response)."""
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


def _make_handler(gh: GitHubEmulator) -> type[_Handler]:
    return type("EmulatorHandler", (_Handler,), {"gh": gh})
