"""The GitHub tracker's transport: one shared ghapi client per API URL, the retry policy, rate-limit waits, ETags and
the translation of failures into ``TrackerError`` subclasses.

Sync mode. ghapi 2 is async by default; this adapter builds ``GhApi(sync=True)`` because orch's
engine is synchronous: a step takes one snapshot, then runs its journaled actions one after the
other, each effect recorded (intent, then result) before the next starts. Nothing here runs
concurrently, so an event loop would only add a second execution model (and ``asyncio.run`` per
call, or a loop shared with a CLI that has none) without saving a request. Sync calls also keep
every wait (backoff, retry-after, a rate-limit reset) visible and injectable (``sleep=``).

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
  A write that creates something passes ``recover``, which looks for what it was creating before
  each retry, so a lost response never duplicates it.
- Conditional requests: every paged read keeps the ETag of what it read and sends ``If-None-Match``
  next time; a 304 returns the cached data (GitHub does not count a 304 against the rate limit).

This module never logs, prints or repeats the token.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from statemachine.adapters.github.errors import (
    GitHubAuthError,
    GitHubError,
    GitHubNotFound,
    GitHubPermissionError,
    GitHubRateLimited,
    GitHubUnavailable,
    GitHubValidationError,
)
from statemachine.adapters.github.failures import _Abort, _Cached, _clock, _Failure, _has_next, _retry_after
from statemachine.errors import OrchError

log = logging.getLogger("orch.github")

PER_PAGE = 100
API_VERSION = "2022-11-28"


# internal helpers ------------------------------------------------------------------------


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
            transport.base_headers.update(
                {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION, "User-Agent": "orch"}
            )
            transport.client = httpx2.Client(
                timeout=httpx2.Timeout(timeout), follow_redirects=True, event_hooks={"request": [_count_request]}
            )
            atexit.register(transport.client.close)
            _SHARED[key] = api
        return api


# the request policy ------------------------------------------------------------------------


class GitHubTransport:
    """One repository, one token, over the shared client: every request goes through ``_send``'s policy.

    The counters (``request_count``, ``not_modified``, ``retries``, ``waited``) belong to the tracker
    that makes the calls, whichever tracker shares the client.
    """

    def secret(self) -> tuple[str, str] | None:
        """The token, named after the variable it came from (GH_TOKEN...) so that a redaction says which."""
        from statemachine.secrets import env_name_or

        return env_name_or(self.token_source, "TRACKER_TOKEN"), self._token

    def __init__(
        self,
        owner: str,
        repo: str,
        token: str,
        api_url: str,
        *,
        max_retries: int,
        backoff_base: float,
        backoff_cap: float,
        sleep: Callable[[float], None],
        token_source: str,
        timeout: float,
        rate_limit_wait: float,
        retry_after_cap: float,
        rng: random.Random | None,
    ) -> None:
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
        self.max_retries, self.backoff_base, self.backoff_cap = max_retries, backoff_base, backoff_cap
        self.rate_limit_wait, self.retry_after_cap = rate_limit_wait, retry_after_cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.request_count = 0  # every HTTP request sent, retries and 304s included
        self.not_modified = 0  # how many of them were answered 304 (free against the rate limit)
        self.retries = 0
        self.waited = 0.0  # seconds slept before retries
        self._etags: dict[tuple[Any, ...], _Cached] = {}
        self._repo_seen = False
        self._token = token
        self._auth = {"Authorization": f"token {token}"}
        self._httpx = httpx2
        self.api = _shared_api(GhApi, httpx2, self.api_url, timeout)

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
                return _Failure(
                    None, {}, str(candidate) or type(candidate).__name__, None, network=type(candidate).__name__
                )
        return None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
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
                    raise _Abort(
                        GitHubRateLimited(
                            f"GitHub's secondary rate limit stopped {what}: retry after {retry_after:.0f} s",
                            "wait, then run the step again; orch resumes where it stopped",
                            st,
                            reset_at=time.time() + retry_after,
                        )
                    )
                return retry_after
            if hdr.get("x-ratelimit-remaining") == "0":
                try:
                    reset = float(hdr.get("x-ratelimit-reset", ""))
                except ValueError:
                    reset = time.time() + 3600
                wait = max(0.0, reset - time.time()) + 1.0
                if wait > self.rate_limit_wait:
                    limit = hdr.get("x-ratelimit-limit", "?")
                    raise _Abort(
                        GitHubRateLimited(
                            f"GitHub rate limit exhausted ({limit} requests per hour for this token) while trying to "
                            f"{what}; it resets at {_clock(reset)} (in {math.ceil(wait / 60)} min)",
                            "wait for the reset, then run the step again; orch resumes where it stopped "
                            "(polling with ETags does not count against the limit)",
                            st,
                            reset_at=reset,
                        )
                    )
                return wait
            if st == 429 or "rate limit" in f.message.lower():
                return float(min(60.0 * (2**attempt), self.retry_after_cap))  # GitHub: a minute at least, then longer
            raise _Abort(self._refused(f, what))
        if st >= 500:
            retry_after = _retry_after(hdr.get("retry-after"))
            if retry_after is not None and retry_after <= self.retry_after_cap:
                return max(retry_after, self._backoff(attempt))
            return self._backoff(attempt)
        raise _Abort(self._refused(f, what))

    def _exhausted(self, f: _Failure, what: str) -> GitHubError:
        if f.status in (403, 429):
            return GitHubRateLimited(
                f"GitHub kept rate limiting the attempts to {what} (HTTP {f.status}, {self.max_retries + 1} attempts)",
                "wait a few minutes, then run the step again; orch resumes where it stopped",
                f.status,
            )
        return self._refused(f, what)

    def _refused(self, f: _Failure, what: str) -> GitHubError:
        st = f.status
        said = f": {f.message}" if f.message else ""
        if st == 401:
            return GitHubAuthError(
                f"GitHub rejected the token (HTTP 401{said}) while trying to {what}",
                f"the token (from {self.token_source}) is wrong, expired or revoked; "
                "set GH_TOKEN to a valid token or run `gh auth login`",
                st,
            )
        if st == 403:
            return GitHubPermissionError(
                f"GitHub refused to let the token {what} (HTTP 403{said})",
                f"the token (from {self.token_source}) needs access to {self.full_name} "
                "(Issues and Pull requests: read and write; Metadata: read)",
                st,
            )
        if st == 404:
            return GitHubNotFound(
                f"repository {self.full_name} does not exist at {self.api_url}, or the token "
                f"cannot see it (HTTP 404 while trying to {what})",
                f"check tracker.owner and tracker.repo in .orch/policy.yaml; the token "
                f"({self.token_source}) must have access to this repository",
                st,
            )
        if st == 422:
            details = []
            errors = f.payload.get("errors") if isinstance(f.payload, dict) else None
            for e in errors or []:
                if isinstance(e, dict):
                    details.append(
                        str(e.get("message") or " ".join(str(e[k]) for k in ("resource", "field", "code") if e.get(k)))
                    )
                else:
                    details.append(str(e))
            detail = f" ({'; '.join(details)})" if details else ""
            return GitHubValidationError(
                f"GitHub refused to {what}: {f.message or 'Validation Failed'}{detail}",
                "GitHub validated the request and rejected it; fix what its message names",
                422,
                [e for e in errors or [] if isinstance(e, dict)],
            )
        if st == 410:
            return GitHubNotFound(
                f"GitHub says it is gone (HTTP 410{said}) while trying to {what}",
                f"the issue was deleted or transferred, or issues are disabled in {self.full_name}",
                st,
            )
        if st is not None and st >= 500:
            return GitHubUnavailable(
                f"GitHub failed to {what} (HTTP {st}{said}) after {self.max_retries + 1} attempts",
                "GitHub is having trouble (https://www.githubstatus.com); run the step again "
                "later: orch resumes where it stopped and never repeats a finished write",
                st,
            )
        if st is None:
            return GitHubUnavailable(
                f"GitHub did not answer while trying to {what} ({f.network}: {f.message}) "
                f"after {self.max_retries + 1} attempts",
                f"check the network connection to {self.api_url}; run the step again: orch "
                "resumes where it stopped and never repeats a finished write",
                None,
            )
        return GitHubError(f"GitHub refused to {what} (HTTP {st}{said})", None, st)

    def _send(
        self,
        what: str,
        call: Callable[[], Any],
        *,
        missing: str | None = None,
        on404: Callable[[], Any] | None = None,
        recover: Callable[[], Any] | None = None,
        allow_304: bool = False,
        repo_scoped: bool = True,
    ) -> Any:
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
            log.info(
                "GitHub: retrying %s in %.1f s (attempt %d of %d): %s",
                what,
                wait,
                attempt + 1,
                self.max_retries + 1,
                f.network or f"HTTP {f.status}",
            )
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

    def _op(
        self, group: str, name: str, headers: Mapping[str, str] | None = None, /, **params: Any
    ) -> Callable[[], Any]:
        """A zero-argument call of ghapi operation ``group.name`` on this repository, with this token; raw response."""
        fn = getattr(getattr(self.api, group), name)
        if "owner" in fn.__signature__.parameters:
            params = {"owner": self.owner, "repo": self.repo, **params}
        hdrs = {**self._auth, **(headers or {})}
        return lambda: fn(**params, headers_=hdrs, raw_=True)

    def _json(self, resp: Any) -> Any:
        return resp.json() if resp.content else None

    def _paged(
        self, what: str, op: str, params: dict[str, Any], *, missing: str | None = None, conditional: bool = True
    ) -> list[dict[str, Any]]:
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
            resp = self._send(
                what,
                self._op(group, name, headers, **params, per_page=PER_PAGE, page=page),
                missing=missing,
                allow_304=cached is not None,
            )
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
        return "/".join(
            [
                f"{self.api_url}/repos/{quote(self.owner, safe='')}/{quote(self.repo, safe='')}",
                *(quote(p, safe="") for p in parts),
            ]
        )

    def _raw(self, verb: str, url: str, json: Any = None) -> Any:
        """A request through ghapi's transport on a URL built by ``_repo_url``; returns the raw response."""
        return self.api.transport.request(verb, url, json=json, headers=self._auth, raw=True)
