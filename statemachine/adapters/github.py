"""The GitHub tracker: the Tracker port over GitHub's REST API, through ghapi (``ghapi>=2.1,<3``).

Sync mode. ghapi 2 is async by default; this adapter builds ``GhApi(sync=True)`` because orch's
engine is synchronous: a step takes one snapshot, then runs its journaled actions one after the
other, each effect recorded (intent, then result) before the next starts. Nothing here runs
concurrently, so an event loop would only add a second execution model (and ``asyncio.run`` per
call, or a loop shared with a CLI that has none) without saving a request. Sync calls also keep
every wait (backoff, retry-after, a rate-limit reset) visible and injectable (``sleep=``).

What the adapter adds around ghapi:

- One token-free ``GhApi`` per API URL, shared by the trackers of a process (building one
  generates ~1,200 operations); the token travels in each call's headers. Its persistent HTTP
  client's request hook charges every request actually sent to the tracker making the call
  (``request_count``: retries, 304s and redirects included). ghapi's transport-level connection
  retries are turned off so that every retry goes through the policy below and is counted.
- Errors are translated at this boundary into ``TrackerError`` subclasses with a hint, raised
  ``from None`` (no ghapi/httpx traceback reaches the user):
  401 -> the token (and which source it came from) is wrong or expired;
  403/429 with ``x-ratelimit-remaining: 0`` -> wait for the reset when it is near
  (``rate_limit_wait``), else "rate limited, resets at HH:MM:SS UTC";
  403/429 with ``retry-after`` (secondary rate limit) -> wait that long and retry;
  404 -> "issue #N does not exist" when the repository is visible, else "the repository does not
  exist or the token cannot see it"; 422 -> GitHub's validation messages.
- Network errors, timeouts and 5xx are retried with jittered exponential backoff
  (``backoff_base * 2**attempt``, capped at ``backoff_cap``, at most ``max_retries`` retries).
  Writes that create something (a comment, a pull request, a label, an issue) look for what they
  were creating (by its hidden marker) before each retry, so a lost response never duplicates it.
- Conditional requests: every paged read (issues, comments, events, pulls) and ``get_issue`` keep
  the ETag of what they read and send ``If-None-Match`` next time; a 304 returns the cached data
  (GitHub does not count a 304 against the rate limit).
- GitHub's issue list includes pull requests: they are skipped, and ``get_issue`` on a pull request
  number raises ``GitHubNotFound("#N is a pull request ...")``.
- Pull-request reviews and their inline comments are read (``list_reviews``, ``list_review_comments``);
  a pending review (visible only to its author) is not a review yet and is left out.
- Only what the runner's identity wrote is orch's (``identity``: ``GET /user`` once, or ``<app_slug>[bot]`` for
  an installation token): comments found by marker, issues found by marker, and pull requests, which must
  also come from the run's branch of this repository (never a fork).
- Bodies GitHub would refuse (more than 65,536 characters) are shortened before posting, keeping
  every ``<!-- orch:... -->`` marker; reading a body of any size (10 MB) works.

This module never logs, prints or repeats the token.
"""

from __future__ import annotations

import atexit
import contextvars
import email.utils
import functools
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

from statemachine.errors import NotFoundError, OrchError, TrackerError
from statemachine.model import Comment, Issue, PullRequest, Review, ReviewComment, TextEdit, TextHistory

log = logging.getLogger("orch.github")

PER_PAGE = 100
MAX_BODY = 65536  # GitHub refuses issue, comment and pull request bodies longer than this
MAX_TITLE = 256
MARKER_RE = re.compile(r"<!-- orch:[^>]*?-->")
PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
# the one GraphQL query orch sends: who edited an issue's body, and when (REST does not say); every edit, not only
# the last one, so that a maintainer's later touch-up does not hide an outsider's edit before it
_EDITOR_QUERY = ("query($owner: String!, $repo: String!, $number: Int!) "
                 "{ repository(owner: $owner, name: $repo) { issue(number: $number) { userContentEdits(last: 100) { nodes { editor { login } editedAt } } } } }")
API_VERSION = "2022-11-28"


# errors ----------------------------------------------------------------------------------

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

    def __init__(self, message: str, hint: str | None = None, status: int | None = None,
                 reset_at: float | None = None) -> None:
        super().__init__(message, hint, status)
        self.reset_at = reset_at


class GitHubNotFound(GitHubError, NotFoundError):
    """404 (or a number that names a pull request where an issue is expected)."""


class GitHubValidationError(GitHubError):
    """422: GitHub validated the request and refused it; ``errors`` holds its details."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = 422,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, hint, status)
        self.errors = errors or []


class GitHubUnavailable(GitHubError):
    """5xx, a timeout or a network error that outlived every retry."""


# internal helpers ------------------------------------------------------------------------

@dataclass
class _Failure:
    """One failed attempt, normalized: an HTTP status with headers and GitHub's message, or a network error."""

    status: int | None
    headers: Mapping[str, str]
    message: str
    payload: Any
    network: str | None = None  # the transport error's class name when nothing came back
    response: Any = None


@dataclass
class _Cached:
    etag: str
    data: Any
    link: str


class _Abort(Exception):
    def __init__(self, error: GitHubError) -> None:
        self.error = error


def _has_next(link: str) -> bool:
    return bool(re.search(r'rel="?next"?', link or ""))


def _fit(body: str, limit: int = MAX_BODY) -> str:
    """Shorten ``body`` to what GitHub accepts, keeping every orch marker (they sit at the end)."""
    if len(body) <= limit:
        return body
    markers: list[str] = []
    for m in MARKER_RE.findall(body):
        if m not in markers:
            markers.append(m)
    tail = "\n\n".join(markers)
    note = (f"\n\n… (shortened by orch: the full text has {len(body)} characters, more than GitHub accepts; "
            "it is kept in the run's evidence)\n\n")
    head = body[: max(0, limit - len(note) - len(tail))]
    opened = head.rfind("<!--")
    if opened != -1 and head.find("-->", opened) == -1:
        head = head[:opened]  # never leave an HTML comment open: it would hide the note and the markers
    return head + note + tail


def _issue_from_marker(body: str) -> int:
    m = re.search(r"<!-- orch:run=(\d+)-", body) or re.search(r"(?:Closes|Fixes|Resolves) #(\d+)", body, re.IGNORECASE)
    return int(m.group(1)) if m else 0


def _comment(d: Mapping[str, Any]) -> Comment:
    """A comment, not yet trusted: ``author_association`` says COLLABORATOR for read and triage collaborators and MEMBER
    for every member of the owning organization, so trust comes from the author's permission (actions.trusted_comments)."""
    user = d.get("user") or {}
    return Comment(id=int(d["id"]), author=str(user.get("login") or "ghost"), body=str(d.get("body") or ""),
                   created_at=str(d.get("created_at") or ""))


def _label_names(labels: Any) -> tuple[str, ...]:
    names = [x if isinstance(x, str) else str(x.get("name", "")) for x in (labels or [])]
    return tuple(sorted(n for n in names if n))


def _issue(d: Mapping[str, Any], comments: tuple[Comment, ...] = ()) -> Issue:
    user = d.get("user") or {}
    return Issue(number=int(d["number"]), title=str(d.get("title") or ""), body=str(d.get("body") or ""),
                 state=str(d.get("state") or "open"), labels=_label_names(d.get("labels")), comments=comments,
                 author=str(user.get("login") or ""), created_at=str(d.get("created_at") or ""),
                 updated_at=str(d.get("updated_at") or ""))


def _pull(d: Mapping[str, Any], marker: str, issue: int | None = None) -> PullRequest:
    body = str(d.get("body") or "")
    head, base = d.get("head") or {}, d.get("base") or {}
    return PullRequest(number=int(d["number"]), issue=issue if issue is not None else _issue_from_marker(body),
                       title=str(d.get("title") or ""), body=body, head=str(head.get("ref") or ""),
                       base=str(base.get("ref") or ""), head_sha=str(head.get("sha") or ""),
                       base_sha=str(base.get("sha") or ""), draft=bool(d.get("draft")),
                       url=str(d.get("html_url") or d.get("url") or ""), marker=marker)


def _review(d: Mapping[str, Any]) -> Review:
    user = d.get("user") or {}
    return Review(id=int(d["id"]), author=str(user.get("login") or "ghost"), state=str(d.get("state") or ""),
                  body=str(d.get("body") or ""), submitted_at=str(d.get("submitted_at") or ""))


def _review_comment(d: Mapping[str, Any]) -> ReviewComment:
    user = d.get("user") or {}
    line = d.get("line") if d.get("line") is not None else d.get("original_line")
    review = d.get("pull_request_review_id")
    return ReviewComment(id=int(d["id"]), author=str(user.get("login") or "ghost"), body=str(d.get("body") or ""),
                         path=str(d.get("path") or ""), line=int(line) if isinstance(line, int) else None,
                         created_at=str(d.get("created_at") or ""),
                         review_id=int(review) if isinstance(review, int) else None)


def _title(title: str) -> str:
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch))


# one ghapi client per API URL ---------------------------------------------------------------

_CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("orch_github_tracker", default=None)
_SHARED: dict[tuple[str, float], Any] = {}
_SHARED_LOCK = threading.Lock()


def _count_request(request: Any) -> None:
    """httpx request hook: charge the request to the tracker whose call is running (see ``_send``)."""
    tracker = _CURRENT.get()
    if tracker is not None:
        tracker.request_count += 1


def _shared_api(ghapi_cls: Any, httpx2: Any, api_url: str, timeout: float) -> Any:
    """A token-free ``GhApi(sync=True)`` per (API URL, timeout), shared by every tracker in the process.

    Building a GhApi generates all of GitHub's ~1,200 operations (a few tenths of a second), so it
    is done once; the token travels in each call's headers, never in shared state. The client's
    own connection retries are off (every retry goes through ``_send``, and is counted), and one
    persistent HTTP client keeps connections alive and counts every request it sends.
    """
    key = (api_url, timeout)
    with _SHARED_LOCK:
        api = _SHARED.get(key)
        if api is None:
            api = ghapi_cls(gh_host=api_url, authenticate=False, sync=True, timeout=timeout)
            transport = api.transport
            transport.retries = 0
            transport.base_headers.update({"Accept": "application/vnd.github+json",
                                           "X-GitHub-Api-Version": API_VERSION, "User-Agent": "orch"})
            transport.client = httpx2.Client(timeout=httpx2.Timeout(timeout), follow_redirects=True,
                                              event_hooks={"request": [_count_request]})
            atexit.register(transport.client.close)
            _SHARED[key] = api
        return api


# the adapter -----------------------------------------------------------------------------

JOB_TOKEN_LOGIN = "github-actions[bot]"  # who the GitHub Actions job token (secrets.GITHUB_TOKEN) acts as
CI_FIX = ("give orch its own identity: a GitHub App (secrets ORCH_APP_ID and ORCH_APP_PRIVATE_KEY) or a fine-grained "
          "token (secret ORCH_TOKEN) with Contents, Issues and Pull requests write (docs/github.md)")


def job_token_ci_warning(login: str | None) -> str | None:
    """What to say when orch acts as the job token: GitHub runs no workflows for the pull requests it opens."""
    if not login or login.lower() != JOB_TOKEN_LOGIN:
        return None
    return (f"orch acts as {JOB_TOKEN_LOGIN} (the workflow's job token): pull requests it opens do not trigger "
            "the repository's CI")


class GitHubTracker:
    """Implements the Tracker port on one GitHub repository (issues, labels, comments, draft pull requests)."""

    kind = "github"
    fleet = True  # other runners, on other machines, may watch the same issues: claims carry leases

    def __init__(self, owner: str, repo: str, token: str, api_url: str = "https://api.github.com",
                 runner_login: str | None = None, max_retries: int = 4, backoff_base: float = 0.5,
                 backoff_cap: float = 8.0, sleep: Callable[[float], None] = time.sleep, *,
                 token_source: str = "configuration", timeout: float = 30.0,
                 rate_limit_wait: float = 60.0, retry_after_cap: float = 300.0,
                 rng: random.Random | None = None, app_slug: str | None = None) -> None:
        if not token:
            raise OrchError("no GitHub token was given", "set GH_TOKEN or run `gh auth login`")
        try:
            import httpx2
            from ghapi.all import GhApi
        except ImportError:
            raise OrchError("the GitHub tracker needs ghapi 2", "pip install 'ghapi>=2.1,<3'") from None
        self.owner, self.repo = owner, repo
        self.api_url = api_url.rstrip("/")
        self.token_source = token_source
        self.expected_login = runner_login  # tracker.runner_login: only a check against the learned identity
        self.app_slug = app_slug  # a GitHub App installation token acts as `<app_slug>[bot]`
        self.max_retries, self.backoff_base, self.backoff_cap = max_retries, backoff_base, backoff_cap
        self.rate_limit_wait, self.retry_after_cap = rate_limit_wait, retry_after_cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.request_count = 0  # every HTTP request sent, retries and 304s included
        self.not_modified = 0  # how many of them were answered 304 (free against the rate limit)
        self.retries = 0
        self.waited = 0.0  # seconds slept before retries
        self._etags: dict[tuple[Any, ...], _Cached] = {}
        self._login: str | None = None
        self._repo_seen = False
        self._token = token
        self._auth = {"Authorization": f"token {token}"}
        self._httpx = httpx2
        self.api = _shared_api(GhApi, httpx2, self.api_url, timeout)

    def __repr__(self) -> str:
        return f"GitHubTracker({self.owner}/{self.repo} at {self.api_url})"

    def close(self) -> None:
        """Nothing to release: the HTTP client is shared per API URL and closed at exit."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    # the request policy ----------------------------------------------------------------

    def _failure(self, exc: BaseException) -> _Failure | None:
        """Normalize a ghapi/httpx exception; None when it is not an HTTP or network failure."""
        h = self._httpx
        resp = getattr(exc, "response", None)
        if resp is None and isinstance(exc, h.HTTPStatusError):
            resp = exc.response
        if resp is not None and hasattr(resp, "status_code"):
            try:
                payload: Any = resp.json()
            except ValueError:  # not JSON (a proxy's HTML page, an empty body)
                payload = resp.text[:2000]
            msg = payload.get("message", "") if isinstance(payload, dict) else str(payload or "")
            return _Failure(int(resp.status_code), resp.headers, str(msg), payload, response=resp)
        inner = getattr(exc, "raw", None)
        for candidate in (exc, inner, exc.__cause__):
            if isinstance(candidate, h.RequestError):
                return _Failure(None, {}, str(candidate) or type(candidate).__name__, None,
                                network=type(candidate).__name__)
        return None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def _wait_for(self, f: _Failure, attempt: int, what: str) -> float:
        """Seconds to wait before retrying ``f``; raises _Abort when it must not be retried."""
        st = f.status
        if f.network is not None:
            return self._backoff(attempt)
        assert st is not None
        hdr = {k.lower(): v for k, v in f.headers.items()}
        if st in (403, 429):
            retry_after = _retry_after(hdr.get("retry-after"))
            if retry_after is not None:
                if retry_after > self.retry_after_cap:
                    raise _Abort(GitHubRateLimited(
                        f"GitHub's secondary rate limit stopped {what}: retry after {retry_after:.0f} s",
                        "wait, then run the step again; orch resumes where it stopped", st,
                        reset_at=time.time() + retry_after))
                return retry_after
            if hdr.get("x-ratelimit-remaining") == "0":
                try:
                    reset = float(hdr.get("x-ratelimit-reset", ""))
                except ValueError:
                    reset = time.time() + 3600
                wait = max(0.0, reset - time.time()) + 1.0
                if wait > self.rate_limit_wait:
                    limit = hdr.get("x-ratelimit-limit", "?")
                    raise _Abort(GitHubRateLimited(
                        f"GitHub rate limit exhausted ({limit} requests per hour for this token) while trying to "
                        f"{what}; it resets at {_clock(reset)} (in {math.ceil(wait / 60)} min)",
                        "wait for the reset, then run the step again; orch resumes where it stopped "
                        "(polling with ETags does not count against the limit)", st, reset_at=reset))
                return wait
            if st == 429 or "rate limit" in f.message.lower():
                return float(min(60.0 * (2 ** attempt), self.retry_after_cap))  # GitHub: a minute at least, then longer
            raise _Abort(self._refused(f, what))
        if st >= 500:
            retry_after = _retry_after(hdr.get("retry-after"))
            if retry_after is not None and retry_after <= self.retry_after_cap:
                return max(retry_after, self._backoff(attempt))
            return self._backoff(attempt)
        raise _Abort(self._refused(f, what))

    def _exhausted(self, f: _Failure, what: str) -> GitHubError:
        if f.status in (403, 429):
            return GitHubRateLimited(f"GitHub kept rate limiting the attempts to {what} (HTTP {f.status}, "
                                     f"{self.max_retries + 1} attempts)",
                                     "wait a few minutes, then run the step again; orch resumes where it stopped", f.status)
        return self._refused(f, what)

    def _refused(self, f: _Failure, what: str) -> GitHubError:
        st = f.status
        said = f": {f.message}" if f.message else ""
        if st == 401:
            return GitHubAuthError(f"GitHub rejected the token (HTTP 401{said}) while trying to {what}",
                                   f"the token (from {self.token_source}) is wrong, expired or revoked; "
                                   "set GH_TOKEN to a valid token or run `gh auth login`", st)
        if st == 403:
            return GitHubPermissionError(f"GitHub refused to let the token {what} (HTTP 403{said})",
                                         f"the token (from {self.token_source}) needs access to {self.full_name} "
                                         "(Issues and Pull requests: read and write; Metadata: read)", st)
        if st == 404:
            return GitHubNotFound(f"repository {self.full_name} does not exist at {self.api_url}, or the token "
                                  f"cannot see it (HTTP 404 while trying to {what})",
                                  f"check tracker.owner and tracker.repo in .orch/policy.yaml; the token "
                                  f"({self.token_source}) must have access to this repository", st)
        if st == 422:
            details = []
            errors = f.payload.get("errors") if isinstance(f.payload, dict) else None
            for e in errors or []:
                if isinstance(e, dict):
                    details.append(str(e.get("message") or " ".join(
                        str(e[k]) for k in ("resource", "field", "code") if e.get(k))))
                else:
                    details.append(str(e))
            detail = f" ({'; '.join(details)})" if details else ""
            return GitHubValidationError(f"GitHub refused to {what}: {f.message or 'Validation Failed'}{detail}",
                                         "GitHub validated the request and rejected it; fix what its message names",
                                         422, [e for e in errors or [] if isinstance(e, dict)])
        if st == 410:
            return GitHubNotFound(f"GitHub says it is gone (HTTP 410{said}) while trying to {what}",
                                  f"the issue was deleted or transferred, or issues are disabled in {self.full_name}", st)
        if st is not None and st >= 500:
            return GitHubUnavailable(f"GitHub failed to {what} (HTTP {st}{said}) after {self.max_retries + 1} attempts",
                                     "GitHub is having trouble (https://www.githubstatus.com); run the step again "
                                     "later: orch resumes where it stopped and never repeats a finished write", st)
        if st is None:
            return GitHubUnavailable(f"GitHub did not answer while trying to {what} ({f.network}: {f.message}) "
                                     f"after {self.max_retries + 1} attempts",
                                     f"check the network connection to {self.api_url}; run the step again: orch "
                                     "resumes where it stopped and never repeats a finished write", None)
        return GitHubError(f"GitHub refused to {what} (HTTP {st}{said})", None, st)

    def _send(self, what: str, call: Callable[[], Any], *, missing: str | None = None,
              on404: Callable[[], Any] | None = None, recover: Callable[[], Any] | None = None,
              allow_304: bool = False, repo_scoped: bool = True) -> Any:
        """Run one ghapi call (raw response) under the retry policy; returns the response or a recovered value.

        ``recover`` runs before each retry after a failure that may have reached GitHub (a network
        error or a 5xx): when it finds what the request was creating, that is returned instead of
        creating it again. ``on404`` turns a 404 into a value; ``missing`` is the 404 message when
        the repository is visible.
        """
        attempt = 0
        while True:
            token = _CURRENT.set(self)
            try:
                resp = call()
                if repo_scoped:
                    self._repo_seen = True
                return resp
            except Exception as exc:
                f = self._failure(exc)
                if f is None:
                    raise
            finally:
                _CURRENT.reset(token)
            if f.status == 304 and allow_304:
                if repo_scoped:
                    self._repo_seen = True
                return f.response
            if f.status == 404 and on404 is not None:
                return on404()
            if f.status == 404:
                raise self._not_found(what, missing) from None
            try:
                wait = self._wait_for(f, attempt, what)
            except _Abort as abort:
                raise abort.error from None
            if attempt >= self.max_retries:
                raise self._exhausted(f, what) from None
            attempt += 1
            self.retries += 1
            self.waited += wait
            log.info("GitHub: retrying %s in %.1f s (attempt %d of %d): %s", what, wait, attempt + 1,
                     self.max_retries + 1, f.network or f"HTTP {f.status}")
            self._sleep(wait)
            if recover is not None and (f.network is not None or (f.status or 0) >= 500):
                found = recover()
                if found is not None:
                    log.info("GitHub: %s had already happened; not repeating it", what)
                    return found

    def _not_found(self, what: str, missing: str | None) -> GitHubError:
        if missing is not None and self._repo_visible():
            return GitHubNotFound(missing, f"check the number; {self.full_name} is reachable", 404)
        return self._refused(_Failure(404, {}, "Not Found", None), what)

    def _repo_visible(self) -> bool:
        if self._repo_seen:
            return True
        try:
            self._send(f"read repository {self.full_name}", self._op("repos", "get"), repo_scoped=True)
        except OrchError:
            return False
        return True

    def _op(self, group: str, name: str, headers: Mapping[str, str] | None = None, /, **params: Any) -> Callable[[], Any]:
        """A zero-argument call of ghapi operation ``group.name`` on this repository, with this token; raw response."""
        fn = getattr(getattr(self.api, group), name)
        if "owner" in fn.__signature__.parameters:
            params = {"owner": self.owner, "repo": self.repo, **params}
        hdrs = {**self._auth, **(headers or {})}
        return lambda: fn(**params, headers_=hdrs, raw_=True)

    def _json(self, resp: Any) -> Any:
        return resp.json() if resp.content else None

    def _paged(self, what: str, op: str, params: dict[str, Any], *, missing: str | None = None,
               conditional: bool = True) -> list[dict[str, Any]]:
        """Every item of a list endpoint: pages of 100 until the Link header has no next page.

        Each page's ETag is kept; a repeated read sends If-None-Match and a 304 reuses the page.
        n items cost ceil(n / 100) requests (one when there are none).
        """
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            key = (op, tuple(sorted(params.items())), page)
            cached = self._etags.get(key) if conditional else None
            headers = {"If-None-Match": cached.etag} if cached else {}
            group, name = op.split(".")
            resp = self._send(what, self._op(group, name, headers, **params, per_page=PER_PAGE, page=page),
                              missing=missing, allow_304=cached is not None)
            if resp.status_code == 304 and cached is not None:
                self.not_modified += 1
                data, link = cached.data, cached.link
            else:
                data = self._json(resp) or []
                link = resp.headers.get("link", "")
                etag = resp.headers.get("etag")
                if conditional and etag:
                    self._etags[key] = _Cached(etag, data, link)
            items.extend(data)
            more = _has_next(link) if link else len(data) >= PER_PAGE
            if not more or not data:
                return items
            page += 1

    def _repo_url(self, *parts: str) -> str:
        """A URL under the repository with every part quoted whole: names may hold '/', which ghapi's
        route filling keeps as a path separator (``labels/area/ui``, ``branches/feature/x``)."""
        return "/".join([f"{self.api_url}/repos/{quote(self.owner, safe='')}/{quote(self.repo, safe='')}",
                         *(quote(p, safe="") for p in parts)])

    def _raw(self, verb: str, url: str, json: Any = None) -> Any:
        """A request through ghapi's transport on a URL built by ``_repo_url``; returns the raw response."""
        return self.api.transport.request(verb, url, json=json, headers=self._auth, raw=True)

    # reads -------------------------------------------------------------------------------

    def get_issue(self, number: int, comments: bool = True) -> Issue:
        missing = f"issue #{number} does not exist in {self.full_name}"
        key = ("issue", number)
        cached = self._etags.get(key)
        resp = self._send(f"read issue #{number}", self._op(
            "issues", "get", {"If-None-Match": cached.etag} if cached else {}, issue_number=number),
            missing=missing, allow_304=cached is not None)
        if resp.status_code == 304 and cached is not None:
            self.not_modified += 1
            data = cached.data
        else:
            data = self._json(resp)
            if resp.headers.get("etag"):
                self._etags[key] = _Cached(resp.headers["etag"], data, "")
        if data.get("pull_request") is not None:
            raise GitHubNotFound(f"#{number} is a pull request, not an issue, in {self.full_name}",
                                 "orch works on issues; give the number of the issue the pull request is for", 404) from None
        found: tuple[Comment, ...] = ()
        if comments and int(data.get("comments") or 0) > 0:
            found = tuple(self.list_comments(number))
        return _issue(data, found)

    def list_comments(self, number: int) -> list[Comment]:
        rows = self._paged(f"list the comments of issue #{number}", "issues.list_comments",
                           {"issue_number": number}, missing=f"issue #{number} does not exist in {self.full_name}")
        return [_comment(r) for r in rows]

    def list_issues(self, label: str | None = None, state: str = "open") -> list[Issue]:
        """Issues (not pull requests) in ``state`` (open, closed, all), with ``label`` if given; without comments."""
        if state not in ("open", "closed", "all"):
            raise OrchError(f"unknown issue state {state!r}", "use open, closed or all")
        params: dict[str, Any] = {"state": state, "sort": "created", "direction": "asc"}
        if label is not None and "," not in label:  # GitHub's filter takes a comma-separated list
            params["labels"] = label
        rows = self._paged(f"list the {state} issues of {self.full_name}", "issues.list_for_repo", params)
        out = [_issue(r) for r in rows if r.get("pull_request") is None]
        if label is not None:  # GitHub matches label names without regard to case
            out = [i for i in out if label.lower() in {x.lower() for x in i.labels}]
        return sorted(out, key=lambda i: i.number)

    def find_comment(self, number: int, marker: str) -> Comment | None:
        """The earliest comment on the issue whose body holds ``marker`` and that the runner's identity wrote."""
        me = self.identity()
        for c in self.list_comments(number):
            if marker in c.body and c.author == me:
                return c
        return None

    def _ours(self, r: Mapping[str, Any], head: str | None) -> bool:
        """A pull request counts as orch's only when the runner opened it from a branch of this repository (never a
        fork), and from ``head`` when it is given."""
        h = r.get("head") or {}
        same_repo = str((h.get("repo") or {}).get("full_name") or "").lower() == self.full_name.lower()
        return ((r.get("user") or {}).get("login") == self.identity() and same_repo
                and (head is None or h.get("ref") == head))

    def find_pull(self, marker: str, head: str | None = None) -> PullRequest | None:
        """The open pull request whose body holds ``marker``, opened by the runner's identity from a branch of this
        repository (``head`` when given); anyone else's pull request never counts, whatever its body says."""
        rows = self._paged(f"list the open pull requests of {self.full_name}", "pulls.list",
                           {"state": "open", "sort": "created", "direction": "asc"})
        for r in rows:
            if marker in (r.get("body") or "") and self._ours(r, head):
                return _pull(r, marker)
        return None

    def find_issue(self, marker: str, label: str | None = None) -> Issue | None:
        """The earliest issue, open or closed, whose body holds ``marker``, opened by the runner's identity (carrying
        ``label`` when given); pull requests are not issues."""
        me = self.identity()
        for i in self.list_issues(label, state="all"):
            if marker in i.body and i.author == me:
                return i
        return None

    def list_reviews(self, pull: int) -> list[Review]:
        """The submitted reviews of pull request ``pull``, oldest first (a pending review, visible only to its
        author, is not a review yet and is left out)."""
        rows = self._paged(f"list the reviews of pull request #{pull}", "pulls.list_reviews", {"pull_number": pull},
                           missing=f"pull request #{pull} does not exist in {self.full_name}")
        return [_review(r) for r in rows if str(r.get("state") or "").upper() != "PENDING"]

    def list_review_comments(self, pull: int) -> list[ReviewComment]:
        """The inline review comments of pull request ``pull``, oldest first; ``line`` is the line in the
        file (the original line when the comment is outdated, None when GitHub gives neither)."""
        rows = self._paged(f"list the review comments of pull request #{pull}", "pulls.list_review_comments",
                           {"pull_number": pull, "sort": "created", "direction": "asc"},
                           missing=f"pull request #{pull} does not exist in {self.full_name}")
        return [_review_comment(r) for r in rows]

    # writes ------------------------------------------------------------------------------

    def add_labels(self, number: int, names: list[str]) -> None:
        if not names:
            return
        self._send(f"add labels {', '.join(names)} to issue #{number}",
                   self._op("issues", "add_labels", issue_number=number, labels=list(names)),
                   missing=f"issue #{number} does not exist in {self.full_name}")

    def remove_labels(self, number: int, names: list[str]) -> None:
        """Remove each label; a label the issue does not carry is fine (GitHub answers 404)."""
        for name in names:
            url = self._repo_url("issues", str(int(number)), "labels", name)
            self._send(f"remove label {name!r} from issue #{number}", functools.partial(self._raw, "DELETE", url),
                       on404=lambda: None)

    def post_comment(self, number: int, body: str) -> Comment:
        """Post a comment; after a lost response it looks for the comment (by marker, else by body) before retrying."""
        body = _fit(body)
        markers = MARKER_RE.findall(body)

        def recover() -> Comment | None:
            for c in self.list_comments(number):
                if (markers and all(m in c.body for m in markers)) or (not markers and c.body == body):
                    return c
            return None

        result = self._send(f"post a comment on issue #{number}",
                            self._op("issues", "create_comment", issue_number=number, body=body),
                            missing=f"issue #{number} does not exist in {self.full_name}", recover=recover)
        return result if isinstance(result, Comment) else _comment(self._json(result))

    def delete_comment(self, number: int, comment_id: int) -> None:
        """Delete a comment; one that is already gone is fine."""
        self._send(f"delete comment {comment_id} on issue #{number}",
                   self._op("issues", "delete_comment", comment_id=comment_id), on404=lambda: None)

    def update_comment(self, number: int, comment_id: int, body: str) -> Comment | None:
        """Rewrite a comment (the same body twice is harmless, so a retry is safe); None when it is gone."""
        result = self._send(f"update comment {comment_id} on issue #{number}",
                            self._op("issues", "update_comment", comment_id=comment_id, body=_fit(body)),
                            on404=lambda: None)
        return None if result is None else _comment(self._json(result))

    def create_issue(self, title: str, body: str, labels: list[str], marker: str | None = None) -> Issue:
        """Open an issue with ``labels``; with ``marker``, return the issue that already carries it instead of
        opening a second one (found among the issues labelled ``labels[0]`` before creating, and among all
        issues after a lost response). The marker is appended to the body when the body lacks it.

        GitHub silently drops the labels of a new issue when the token cannot push; they are then added
        with a second request (which needs triage) so that the issue never goes unlabelled unnoticed.
        """
        if not title.strip():
            raise GitHubValidationError(f"cannot open an issue without a title in {self.full_name}",
                                        "give the issue a title", 422)
        labels = list(dict.fromkeys(labels))
        if marker is not None:
            existing = self.find_issue(marker, labels[0] if labels else None)
            if existing is not None:
                return existing
            if marker not in body:
                body = f"{body}\n\n{marker}" if body else marker
        body = _fit(body)
        title = _title(title)
        what = f"open issue {title!r} in {self.full_name}"
        params: dict[str, Any] = {"title": title, "body": body}
        if labels:
            params["labels"] = labels
        result = self._send(what, self._op("issues", "create", **params),
                            recover=(lambda: self.find_issue(marker)) if marker is not None else None)
        issue = result if isinstance(result, Issue) else _issue(self._json(result))
        dropped = [name for name in labels if name.lower() not in {x.lower() for x in issue.labels}]
        if dropped:
            self.add_labels(issue.number, dropped)
            issue = self.get_issue(issue.number, comments=False)
        return issue

    def update_issue(self, number: int, title: str | None = None, body: str | None = None) -> Issue:
        """Change the title and/or the body of issue ``number``; only what differs from the issue is sent, and
        nothing is written when nothing differs (the read is conditional: a 304 is free)."""
        current = self.get_issue(number, comments=False)
        changes: dict[str, Any] = {}
        if title is not None and _title(title) != current.title:
            changes["title"] = _title(title)
        if body is not None and _fit(body) != current.body:
            changes["body"] = _fit(body)
        if not changes:
            return current
        resp = self._send(f"update issue #{number} ({', '.join(changes)})",
                          self._op("issues", "update", issue_number=number, **changes),
                          missing=f"issue #{number} does not exist in {self.full_name}")
        return _issue(self._json(resp))

    def create_pull(self, issue: int, title: str, body: str, head: str, base: str,
                    head_sha: str, base_sha: str, marker: str) -> PullRequest:
        """Open a DRAFT pull request, or return the one that already carries ``marker`` (never a second one).

        orch never merges and never marks a pull request ready; a repository that does not allow
        drafts gets an error, not a ready pull request.
        """
        existing = self.find_pull(marker, head)
        if existing is not None:
            return existing
        if marker not in body:
            body = f"{body}\n\n{marker}"
        body = _fit(body)
        title = _title(title)
        what = f"open a draft pull request from {head} into {base}"
        try:
            result = self._send(what, self._op("pulls", "create", title=title, head=head, base=base, body=body, draft=True),
                                recover=lambda: self.find_pull(marker, head))
        except GitHubValidationError as exc:
            if "already exists" not in str(exc):
                raise
            earlier = re.compile(rf"<!-- orch:run={issue}-\S+ kind=pull-request -->")
            for r in self._paged(f"list pull requests from {head}", "pulls.list",
                                 {"state": "open", "head": f"{self.owner}:{head}"}, conditional=False):
                if not self._ours(r, head):
                    continue  # someone else's pull request from this branch: never taken over
                if marker in (r.get("body") or ""):
                    return _pull(r, marker, issue)
                if earlier.search(r.get("body") or ""):  # an earlier run of this issue opened it: the new run takes it over
                    url = self._repo_url("pulls", str(r["number"]))
                    updated = self._send(f"update pull request #{r['number']}",
                                         lambda: self._raw("PATCH", url, {"title": title, "body": body}))
                    return _pull(self._json(updated), marker, issue)
            raise GitHubValidationError(f"a pull request from {head} into {base} is already open, but orch did not open it "
                                        f"(it does not carry {marker})",
                                        "close it or rename the branch template, then run the step again", 422) from None
        if isinstance(result, PullRequest):
            return result
        return _pull(self._json(result), marker, issue)

    # labels, people, the repository ------------------------------------------------------

    def ensure_label(self, name: str, color: str, description: str = "", dry_run: bool = False) -> str:
        """Make the repository's label ``name`` have ``color`` and ``description``: "created", "updated" or "unchanged".

        With ``dry_run`` nothing is written and the answer says what would happen.
        """
        color = color.lstrip("#").lower()
        if not re.fullmatch(r"[0-9a-f]{6}", color):
            raise OrchError(f"label {name!r}: color {color!r} is not six hex digits", "write it like d73a4a")
        url = self._repo_url("labels", name)
        current = self._send(f"read label {name!r}", lambda: self._raw("GET", url), on404=lambda: None)
        if current is None:
            if not dry_run:
                def recover() -> str | None:
                    return "created" if self._send(f"read label {name!r}", lambda: self._raw("GET", url),
                                                   on404=lambda: None) is not None else None
                self._send(f"create label {name!r}", self._op("issues", "create_label", name=name, color=color,
                                                             description=description), recover=recover)
            return "created"
        data = self._json(current) or {}
        if str(data.get("color", "")).lower() == color and (data.get("description") or "") == (description or ""):
            return "unchanged"
        if not dry_run:
            self._send(f"update label {name!r}", lambda: self._raw("PATCH", url, {"color": color, "description": description}))
        return "updated"

    def label_applied_by(self, number: int, label: str) -> str | None:
        """Who applied ``label`` to the issue: the actor of its most recent ``labeled`` event, or None."""
        actor: str | None = None
        for e in self._paged(f"read the events of issue #{number}", "issues.list_events",
                             {"issue_number": number}, missing=f"issue #{number} does not exist in {self.full_name}"):
            if e.get("event") == "labeled" and (e.get("label") or {}).get("name") == label:
                actor = str((e.get("actor") or {}).get("login") or "ghost")
        return actor

    def label_actors(self, labels: list[str]) -> dict[str, dict[int, str]]:
        """For every issue and each of ``labels``, who applied it most recently: one paginated pass over the
        repository's issue events (ceil(events/100) requests instead of one per issue)."""
        actors: dict[str, dict[int, str]] = {label: {} for label in labels}
        for e in self._paged(f"read the issue events of {self.full_name}", "issues.list_events_for_repo", {}):
            name = (e.get("label") or {}).get("name")
            if e.get("event") != "labeled" or name not in actors:
                continue
            number = (e.get("issue") or {}).get("number")
            if isinstance(number, int) and number not in actors[name]:  # newest first: the first seen is the latest
                actors[name][number] = str((e.get("actor") or {}).get("login") or "ghost")
        return actors

    def permission(self, login: str) -> str:
        """``login``'s permission on the repository: admin, maintain, write, triage, read or none (cached 30 s)."""
        cache = self.__dict__.setdefault("_permission_cache", {})
        hit = cache.get(login)
        if hit is not None and time.monotonic() - hit[1] < 30.0:
            return str(hit[0])
        value = self._permission(login)
        cache[login] = (value, time.monotonic())
        return value

    def _permission(self, login: str) -> str:
        resp = self._send(f"read the permission of {login}",
                          self._op("repos", "get_collaborator_permission_level", username=login),
                          on404=lambda: None)
        if resp is None:
            return "none"
        data = self._json(resp) or {}
        for key in ("role_name", "permission"):
            value = str(data.get(key) or "")
            if value in PERMISSIONS:
                return value
        return "none"

    def text_history(self, number: int, label: str) -> TextHistory:
        """Who last applied ``label``, and every edit of the title or body with its editor and time: the issue's events
        give the label and title renames (``renamed``), GraphQL's ``Issue.userContentEdits`` the body (REST shows
        neither a body's editors nor when). Two requests."""
        labeled_by: str | None = None
        labeled_at = ""
        renames: list[tuple[str, str]] = []
        for e in self._paged(f"read the events of issue #{number}", "issues.list_events",
                             {"issue_number": number}, missing=f"issue #{number} does not exist in {self.full_name}"):
            who = str((e.get("actor") or {}).get("login") or "ghost")
            if e.get("event") == "labeled" and (e.get("label") or {}).get("name") == label:
                labeled_by, labeled_at = who, str(e.get("created_at") or "")
            elif e.get("event") == "renamed":
                renames.append((who, str(e.get("created_at") or "")))
        changes = [("title", who, at) for who, at in renames] + [("body", who, at) for who, at in self._body_edits(number)]
        edits = tuple(TextEdit(part, who, at, labeled_by is None or at >= labeled_at) for part, who, at in changes if at)
        return TextHistory(labeled_by, labeled_at, edits)

    def _body_edits(self, number: int) -> list[tuple[str, str]]:
        """(login, editedAt) of each edit of the issue's body, the last 100, none when it was never edited (GraphQL
        ``userContentEdits``; GitHub lists the original text as an edit by its author at creation, which is before
        any label)."""
        url = (self.api_url[:-len("/v3")] if self.api_url.endswith("/api/v3") else self.api_url) + "/graphql"
        payload = {"query": _EDITOR_QUERY, "variables": {"owner": self.owner, "repo": self.repo, "number": int(number)}}
        resp = self._send(f"read who last edited issue #{number}", lambda: self._raw("POST", url, payload))
        data = self._json(resp) or {}
        issue = ((data.get("data") or {}).get("repository") or {}).get("issue")
        if data.get("errors") or issue is None:
            message = "; ".join(str(e.get("message") or e) for e in data.get("errors") or []) or "no such issue"
            raise GitHubError(f"GitHub's GraphQL API did not say who edited issue #{number}: {message}",
                              "the token needs read access to the repository's issues")
        nodes = ((issue.get("userContentEdits") or {}).get("nodes")) or []
        return [(str((n.get("editor") or {}).get("login") or "ghost"), str(n.get("editedAt") or ""))
                for n in nodes if isinstance(n, dict) and n.get("editedAt")]

    def label_authority(self, number: int, label: str) -> tuple[str | None, str]:
        """Who applied ``label`` and their permission on the repository ((None, "none") when nobody did)."""
        actor = self.label_applied_by(number, label)
        if actor is None:
            return None, "none"
        return actor, self.permission(actor)

    def identity(self) -> str:
        """The login orch writes as, learned from the token once per tracker (one request, then remembered).

        A user token (or a bot account's) answers ``GET /user``. A GitHub App installation token is refused
        there (403): the app acts as ``<slug>[bot]``, and the slug comes from ``tracker.app_slug`` (``GET /app``
        needs the app's JWT, which orch never holds). Without a slug that is an error, never "trust everyone".
        ``tracker.runner_login``, when set, is only checked against what was learned.
        """
        if self._login is None:
            try:
                resp = self._send("read the token's user", self._op("users", "get_authenticated"), repo_scoped=False)
                login = str((self._json(resp) or {}).get("login") or "")
            except GitHubPermissionError:
                if not self.app_slug:
                    raise GitHubPermissionError(
                        "the token cannot read its own user (GET /user answered 403): it looks like a GitHub App "
                        "installation token", "set tracker.app_slug to the app's slug; orch then acts as <slug>[bot]",
                        403) from None
                login = f"{self.app_slug}[bot]"
            if not login:
                raise GitHubError("GitHub did not say which user the token acts as", "check the token", None)
            if self.expected_login and login.lower() != self.expected_login.lower():
                raise OrchError(f"the token acts as {login}, but tracker.runner_login says {self.expected_login}",
                                "use the runner's token, or correct (or remove) tracker.runner_login")
            self._login = login
        return self._login

    def whoami(self) -> str:
        """The login the token acts as (``identity``)."""
        return self.identity()

    @property
    def runner_login(self) -> str:
        """The runner's identity (``identity``); only what it wrote counts as orch's."""
        return self.identity()

    def repo_info(self) -> dict[str, Any]:
        """The repository's default branch and the token's permissions on it."""
        data = self._json(self._send(f"read repository {self.full_name}", self._op("repos", "get"))) or {}
        return {
            "full_name": data.get("full_name", self.full_name),
            "default_branch": data.get("default_branch"),
            "private": bool(data.get("private")),
            "archived": bool(data.get("archived")),
            "has_issues": bool(data.get("has_issues", True)),
            "permissions": dict(data.get("permissions") or {}),
        }

    def branch_exists(self, name: str) -> bool:
        url = self._repo_url("branches", name)
        found = self._send(f"read branch {name!r}", lambda: self._raw("GET", url), on404=lambda: None)
        if found is None and not self._repo_visible():
            raise self._not_found(f"read branch {name!r}", None) from None
        return found is not None

    def push_credential(self) -> tuple[str, str]:
        """(user, token) for git over HTTPS: GitHub accepts any user name with a token as the password."""
        return "x-access-token", self._token
