"""The GitHub tracker: the Tracker port over GitHub's REST API, through ghapi (``ghapi>=2.1,<3``).

The requests go through the transport (``transport.py``: the shared client, retries, rate limits, ETags,
errors); GitHub's JSON becomes orch's model in ``mapping.py``; label and edit history is read in
``history.py``. What the tracker itself adds:

- GitHub's issue list includes pull requests: they are skipped, and ``get_issue`` on a pull request
  number raises ``GitHubNotFound("#N is a pull request ...")``.
- Writes that create something (a comment, a pull request, a label, an issue) look for what they
  were creating (by its hidden marker) before each retry, so a lost response never duplicates it.
- Pull-request reviews and their inline comments are read (``list_reviews``, ``list_review_comments``);
  a pending review (visible only to its author) is not a review yet and is left out.
- Only what the runner's identity wrote is orch's (``identity``: ``GET /user`` once, or ``<app_slug>[bot]`` for
  an installation token): comments found by marker, issues found by marker, and pull requests, which must
  also come from the run's branch of this repository (never a fork).

This module never logs, prints or repeats the token.
"""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Self

from statemachine.adapters.github.changes import ChangeFeed
from statemachine.adapters.github.errors import (
    GitHubNotFound,
    GitHubValidationError,
)
from statemachine.adapters.github.failures import _Cached
from statemachine.adapters.github.history import LabelHistory
from statemachine.adapters.github.identity import Identity
from statemachine.adapters.github.mapping import (
    CI_FIX,
    MARKER_RE,
    _comment,
    _fit,
    _issue,
    _pull,
    _review,
    _review_comment,
    _title,
    job_token_ci_warning,
)
from statemachine.errors import OrchError
from statemachine.model import Comment, Issue, PullRequest, Review, ReviewComment
from statemachine.ports import Capabilities


class GitHubTracker(LabelHistory, ChangeFeed, Identity):
    """Implements the Tracker port on one GitHub repository (issues, labels, comments, draft pull requests)."""

    kind = "github"
    capabilities = Capabilities(fleet=True, remote_branches=True, label_list=True, activity_feed=True)

    def __init__(
        self,
        owner: str,
        repo: str,
        token: str,
        api_url: str = "https://api.github.com",
        runner_login: str | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        *,
        token_source: str = "configuration",
        timeout: float = 30.0,
        rate_limit_wait: float = 60.0,
        retry_after_cap: float = 300.0,
        rng: random.Random | None = None,
        app_slug: str | None = None,
        memory: MutableMapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            owner,
            repo,
            token,
            api_url,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
            token_source=token_source,
            timeout=timeout,
            rate_limit_wait=rate_limit_wait,
            retry_after_cap=retry_after_cap,
            rng=rng,
        )
        self.expected_login = runner_login  # tracker.runner_login: only a check against the learned identity
        self.app_slug = app_slug  # a GitHub App installation token acts as `<app_slug>[bot]`
        self._login: str | None = None
        self.memory = memory  # what an earlier orch process learned (store.Memo): the login this token acts as

    def __repr__(self) -> str:
        return f"GitHubTracker({self.owner}/{self.repo} at {self.api_url})"

    def close(self) -> None:
        """Nothing to release: the HTTP client is shared per API URL and closed at exit."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # reads -------------------------------------------------------------------------------

    def get_issue(self, number: int, comments: bool = True) -> Issue:
        missing = f"issue #{number} does not exist in {self.full_name}"
        key = ("issue", number)
        cached = self._etags.get(key)
        resp = self._send(
            f"read issue #{number}",
            self._op("issues", "get", {"If-None-Match": cached.etag} if cached else {}, issue_number=number),
            missing=missing,
            allow_304=cached is not None,
        )
        if resp.status_code == 304 and cached is not None:
            self.not_modified += 1
            data = cached.data
        else:
            data = self._json(resp)
            if resp.headers.get("etag"):
                self._etags[key] = _Cached(resp.headers["etag"], data, "")
        if data.get("pull_request") is not None:
            raise GitHubNotFound(
                f"#{number} is a pull request, not an issue, in {self.full_name}",
                "orch works on issues; give the number of the issue the pull request is for",
                404,
            ) from None
        found: tuple[Comment, ...] = ()
        if comments and int(data.get("comments") or 0) > 0:
            found = tuple(self.list_comments(number))
        return _issue(data, found)

    def list_comments(self, number: int) -> list[Comment]:
        rows = self._paged(
            f"list the comments of issue #{number}",
            "issues.list_comments",
            {"issue_number": number},
            missing=f"issue #{number} does not exist in {self.full_name}",
        )
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
        return (
            (r.get("user") or {}).get("login") == self.identity()
            and same_repo
            and (head is None or h.get("ref") == head)
        )

    def find_pull(self, marker: str, head: str | None = None) -> PullRequest | None:
        """The open pull request whose body holds ``marker``, opened by the runner's identity from a branch of this
        repository (``head`` when given); anyone else's pull request never counts, whatever its body says."""
        rows = self._paged(
            f"list the open pull requests of {self.full_name}",
            "pulls.list",
            {"state": "open", "sort": "created", "direction": "asc"},
        )
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
        rows = self._paged(
            f"list the reviews of pull request #{pull}",
            "pulls.list_reviews",
            {"pull_number": pull},
            missing=f"pull request #{pull} does not exist in {self.full_name}",
        )
        return [_review(r) for r in rows if str(r.get("state") or "").upper() != "PENDING"]

    def list_review_comments(self, pull: int) -> list[ReviewComment]:
        """The inline review comments of pull request ``pull``, oldest first; ``line`` is the line in the
        file (the original line when the comment is outdated, None when GitHub gives neither)."""
        rows = self._paged(
            f"list the review comments of pull request #{pull}",
            "pulls.list_review_comments",
            {"pull_number": pull, "sort": "created", "direction": "asc"},
            missing=f"pull request #{pull} does not exist in {self.full_name}",
        )
        return [_review_comment(r) for r in rows]

    # writes ------------------------------------------------------------------------------

    def add_labels(self, number: int, names: list[str]) -> None:
        if not names:
            return
        self._send(
            f"add labels {', '.join(names)} to issue #{number}",
            self._op("issues", "add_labels", issue_number=number, labels=list(names)),
            missing=f"issue #{number} does not exist in {self.full_name}",
        )

    def remove_labels(self, number: int, names: list[str]) -> None:
        """Remove each label; a label the issue does not carry is fine (GitHub answers 404)."""
        for name in names:
            url = self._repo_url("issues", str(int(number)), "labels", name)
            self._send(
                f"remove label {name!r} from issue #{number}",
                functools.partial(self._raw, "DELETE", url),
                on404=lambda: None,
            )

    def set_labels(self, number: int, names: list[str]) -> None:
        """Replace the issue's labels in one request (a label it already carries gets no new ``labeled`` event)."""
        self._send(
            f"set the labels of issue #{number} to {', '.join(names) or 'none'}",
            self._op("issues", "set_labels", issue_number=number, labels=list(names)),
            missing=f"issue #{number} does not exist in {self.full_name}",
        )

    def post_comment(self, number: int, body: str) -> Comment:
        """Post a comment; after a lost response it looks for the comment (by marker, else by body) before retrying."""
        body = _fit(body)
        markers = MARKER_RE.findall(body)

        def recover() -> Comment | None:
            for c in self.list_comments(number):
                if (markers and all(m in c.body for m in markers)) or (not markers and c.body == body):
                    return c
            return None

        result = self._send(
            f"post a comment on issue #{number}",
            self._op("issues", "create_comment", issue_number=number, body=body),
            missing=f"issue #{number} does not exist in {self.full_name}",
            recover=recover,
        )
        return result if isinstance(result, Comment) else _comment(self._json(result))

    def delete_comment(self, number: int, comment_id: int) -> None:
        """Delete a comment; one that is already gone is fine."""
        self._send(
            f"delete comment {comment_id} on issue #{number}",
            self._op("issues", "delete_comment", comment_id=comment_id),
            on404=lambda: None,
        )

    def update_comment(self, number: int, comment_id: int, body: str) -> Comment | None:
        """Rewrite a comment (the same body twice is harmless, so a retry is safe); None when it is gone."""
        result = self._send(
            f"update comment {comment_id} on issue #{number}",
            self._op("issues", "update_comment", comment_id=comment_id, body=_fit(body)),
            on404=lambda: None,
        )
        return None if result is None else _comment(self._json(result))

    def create_issue(self, title: str, body: str, labels: list[str], marker: str | None = None) -> Issue:
        """Open an issue with ``labels``; with ``marker``, return the issue that already carries it instead of
        opening a second one (found among the issues labelled ``labels[0]`` before creating, and among all
        issues after a lost response). The marker is appended to the body when the body lacks it.

        GitHub silently drops the labels of a new issue when the token cannot push; they are then added
        with a second request (which needs triage) so that the issue never goes unlabelled unnoticed.
        """
        if not title.strip():
            raise GitHubValidationError(
                f"cannot open an issue without a title in {self.full_name}", "give the issue a title", 422
            )
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
        result = self._send(
            what,
            self._op("issues", "create", **params),
            recover=(lambda: self.find_issue(marker)) if marker is not None else None,
        )
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
        resp = self._send(
            f"update issue #{number} ({', '.join(changes)})",
            self._op("issues", "update", issue_number=number, **changes),
            missing=f"issue #{number} does not exist in {self.full_name}",
        )
        return _issue(self._json(resp))

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
    ) -> PullRequest:
        """Open a DRAFT pull request, or return the one that already carries ``marker`` (never a second one).

        orch never merges and never marks a pull request ready; a repository that does not allow
        drafts gets an error, not a ready pull request. ``first_attempt``: no earlier attempt can have opened it, so
        it is not looked for first (an open one from the same branch still answers 422, handled below).
        """
        existing = None if first_attempt else self.find_pull(marker, head)
        if existing is not None:
            return existing
        if marker not in body:
            body = f"{body}\n\n{marker}"
        body = _fit(body)
        title = _title(title)
        what = f"open a draft pull request from {head} into {base}"
        try:
            result = self._send(
                what,
                self._op("pulls", "create", title=title, head=head, base=base, body=body, draft=True),
                recover=lambda: self.find_pull(marker, head),
            )
        except GitHubValidationError as exc:
            if "already exists" not in str(exc):
                raise
            earlier = re.compile(rf"<!-- orch:run={issue}-\S+ kind=pull-request -->")
            for r in self._paged(
                f"list pull requests from {head}",
                "pulls.list",
                {"state": "open", "head": f"{self.owner}:{head}"},
                conditional=False,
            ):
                if not self._ours(r, head):
                    continue  # someone else's pull request from this branch: never taken over
                if marker in (r.get("body") or ""):
                    return _pull(r, marker, issue)
                if earlier.search(
                    r.get("body") or ""
                ):  # an earlier run of this issue opened it: the new run takes it over
                    url = self._repo_url("pulls", str(r["number"]))
                    updated = self._send(
                        f"update pull request #{r['number']}",
                        functools.partial(self._raw, "PATCH", url, {"title": title, "body": body}),
                    )
                    return _pull(self._json(updated), marker, issue)
            raise GitHubValidationError(
                f"a pull request from {head} into {base} is already open, but orch did not open it "
                f"(it does not carry {marker})",
                "close it or rename the branch template, then run the step again",
                422,
            ) from None
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
                    return (
                        "created"
                        if self._send(f"read label {name!r}", lambda: self._raw("GET", url), on404=lambda: None)
                        is not None
                        else None
                    )

                self._send(
                    f"create label {name!r}",
                    self._op("issues", "create_label", name=name, color=color, description=description),
                    recover=recover,
                )
            return "created"
        data = self._json(current) or {}
        if str(data.get("color", "")).lower() == color and (data.get("description") or "") == (description or ""):
            return "unchanged"
        if not dry_run:
            self._send(
                f"update label {name!r}", lambda: self._raw("PATCH", url, {"color": color, "description": description})
            )
        return "updated"

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

    def pull_request_caveat(self) -> str | None:
        warning = job_token_ci_warning(self.identity())
        return f"{warning}; to have CI run, {CI_FIX}" if warning else None
