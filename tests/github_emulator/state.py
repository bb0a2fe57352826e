"""The emulator's in-memory GitHub: accounts, repositories, labels, issues, comments, events, pulls,
pull-request reviews and their inline comments.

Objects hold facts only; ``Render`` turns them into the JSON shapes GitHub sends (every field
the OpenAPI description requires), with URLs rooted at the emulator's address.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROLES = ("none", "read", "triage", "write", "maintain", "admin")
DOCS = "https://docs.github.com/rest"


def rank(role: str) -> int:
    return ROLES.index(role)


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> int:
    parsed = datetime.fromisoformat(value)
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"  # or "Organization"
    token: str | None = None
    name: str | None = None
    email: str | None = None
    created_at: int = 0


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None
    default: bool = False


@dataclass
class Comment:
    id: int
    issue_number: int
    user: str
    body: str
    created_at: int
    updated_at: int


@dataclass
class Event:
    id: int
    issue_number: int
    event: str  # labeled | unlabeled | renamed
    actor: str
    label: str
    color: str
    created_at: int
    rename: tuple[str, str] | None = None  # a renamed event: (from, to)


@dataclass
class Pull:
    id: int
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    draft: bool
    maintainer_can_modify: bool = False
    merged: bool = False
    head_repo: tuple[str, str] | None = (
        None  # (owner, name) of the fork the head branch lives in; None: this repository
    )
    # the time of the latest review or review comment: it moves the pull request's updated_at (the pulls endpoint),
    # not the issue's (the issues endpoint, which is not documented to reflect review activity)
    activity_at: int = 0


REVIEW_STATES = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
    "PENDING": "PENDING",
}


@dataclass
class Review:
    id: int
    pull_number: int
    user: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | PENDING | DISMISSED
    body: str
    commit_id: str
    submitted_at: int | None  # None while PENDING


@dataclass
class ReviewComment:
    id: int
    pull_number: int
    review_id: int | None
    user: str
    body: str
    path: str
    commit_id: str
    diff_hunk: str
    created_at: int
    updated_at: int
    line: int | None = None  # the line in the file (None: GitHub could not place it)
    side: str = "RIGHT"
    position: int | None = None  # the line's position in the file's diff


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: int
    updated_at: int
    state: str = "open"
    state_reason: str | None = None
    closed_at: int | None = None
    closed_by: str | None = None
    labels: list[str] = field(default_factory=list)  # label names as stored on the repository
    pull: Pull | None = None
    edits: list[tuple[str, int]] = field(
        default_factory=list
    )  # GraphQL Issue.userContentEdits: (editor, when) per body edit

    @property
    def is_pull(self) -> bool:
        return self.pull is not None


@dataclass
class Activity:
    """One entry of a repository's activity feed (``GET /repos/{o}/{r}/events``, GitHub's Events API): what
    happened, by whom, with the payload as it was when it happened. ``visible_at`` (``time.monotonic()``) is when
    the feed starts showing it: GitHub documents that an event can take 30 s to 6 h to appear."""

    id: int
    type: str  # IssuesEvent, IssueCommentEvent, PullRequestEvent, PullRequestReviewEvent, ...
    actor: str
    created_at: int
    payload: dict[str, Any]
    visible_at: float = 0.0


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    default_branch: str
    bare: Path
    created_at: int
    pushed_at: int
    description: str | None = None
    labels: dict[str, Label] = field(default_factory=dict)  # lower-cased name -> label
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # login -> role
    reviews: dict[int, Review] = field(default_factory=dict)
    review_comments: dict[int, ReviewComment] = field(default_factory=dict)
    activity: list[Activity] = field(default_factory=list)  # the Events API feed, oldest first

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def label(self, name: str) -> Label | None:
        return self.labels.get(name.lower())

    def comments_of(self, number: int) -> list[Comment]:
        return sorted((c for c in self.comments.values() if c.issue_number == number), key=lambda c: c.id)

    def events_of(self, number: int) -> list[Event]:
        return [e for e in self.events if e.issue_number == number]

    def reviews_of(self, number: int, viewer: str | None = None) -> list[Review]:
        """The reviews of pull NUMBER, oldest first; a pending review only when VIEWER wrote it (like GitHub)."""
        return sorted(
            (
                r
                for r in self.reviews.values()
                if r.pull_number == number
                and (r.state != "PENDING" or (viewer is not None and r.user.lower() == viewer.lower()))
            ),
            key=lambda r: r.id,
        )

    def review_comments_of(self, number: int, viewer: str | None = None) -> list[ReviewComment]:
        """The inline comments of pull NUMBER, oldest first; a pending review's only when VIEWER wrote it."""

        def visible(c: ReviewComment) -> bool:
            review = self.reviews.get(c.review_id) if c.review_id is not None else None
            return (
                review is None
                or review.state != "PENDING"
                or (viewer is not None and review.user.lower() == viewer.lower())
            )

        return sorted(
            (c for c in self.review_comments.values() if c.pull_number == number and visible(c)), key=lambda c: c.id
        )

    @property
    def pulls(self) -> list[Issue]:
        return [i for i in self.issues.values() if i.pull is not None]


class State:
    """Everything the emulator knows; guarded by ``lock`` (handlers run on server threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.members: dict[str, set[str]] = {}  # organization (lower-cased) -> its members (lower-cased)
        self._ids = itertools.count(1001)
        # A logical clock in whole seconds (GitHub's timestamps have second resolution): every
        # change moves it on by one second, so orderings and `since` filters are deterministic.
        self.clock = int(time.time()) - 86400

    def next_id(self) -> int:
        return next(self._ids)

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def account(self, login: str, kind: str = "User") -> Account:
        acct = self.accounts.get(login.lower())
        if acct is None:
            acct = Account(login, self.next_id(), kind, created_at=self.clock - 86400 * 30)
            self.accounts[login.lower()] = acct
        return acct

    def by_token(self, token: str) -> Account | None:
        for acct in self.accounts.values():
            if acct.token is not None and acct.token == token:
                return acct
        return None

    def repo(self, owner: str, name: str) -> Repo:
        return self.repos[(owner.lower(), name.lower())]

    def find_repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get((owner.lower(), name.lower()))

    def repo_by_id(self, ident: int) -> Repo | None:
        return next((r for r in self.repos.values() if r.id == ident), None)

    def role(self, repo: Repo, login: str | None) -> str:
        if login is None:
            return "none"
        if login.lower() == repo.owner.lower() and self.accounts.get(login.lower(), Account("", 0)).type == "User":
            return "admin"
        # a member of the owning organization has the organization's base permission (GitHub's default: read)
        base = "read" if login.lower() in self.members.get(repo.owner.lower(), set()) else "none"
        role = repo.roles.get(login.lower(), "none")
        return role if rank(role) >= rank(base) else base


class Render:
    """GitHub's JSON shapes for the state's objects."""

    def __init__(self, state: State, api: str) -> None:
        self.state = state
        self.api = api  # e.g. http://127.0.0.1:PORT, no trailing slash
        self.web = api

    # -- accounts

    def user(self, login: str) -> dict[str, Any]:
        a = self.state.account(login)
        u = f"{self.api}/users/{a.login}"
        return {
            "login": a.login,
            "id": a.id,
            "node_id": node_id("User" if a.type == "User" else "Organization", a.id),
            "avatar_url": f"{self.web}/avatars/u/{a.id}?v=4",
            "gravatar_id": "",
            "url": u,
            "html_url": f"{self.web}/{a.login}",
            "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}",
            "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs",
            "repos_url": f"{u}/repos",
            "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events",
            "type": a.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def private_user(self, login: str) -> dict[str, Any]:
        a = self.state.account(login)
        owned = sum(1 for r in self.state.repos.values() if r.owner.lower() == a.login.lower())
        return {
            **self.user(login),
            "user_view_type": "private",
            "name": a.name,
            "company": None,
            "blog": "",
            "location": None,
            "email": a.email,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "notification_email": a.email,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": iso(a.created_at),
            "updated_at": iso(a.created_at),
            "private_gists": 0,
            "total_private_repos": owned,
            "owned_private_repos": owned,
            "disk_usage": 0,
            "collaborators": 0,
            "two_factor_authentication": True,
            "plan": {"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0},
        }

    # -- repositories

    def permissions(self, role: str) -> dict[str, bool]:
        r = rank(role)
        return {
            "admin": r >= rank("admin"),
            "maintain": r >= rank("maintain"),
            "push": r >= rank("write"),
            "triage": r >= rank("triage"),
            "pull": r >= rank("read"),
        }

    def repository(self, repo: Repo, viewer: str | None = None, full: bool = False) -> dict[str, Any]:
        u = f"{self.api}/repos/{repo.full_name}"
        open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
        owner = self.state.account(repo.owner)
        data: dict[str, Any] = {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": True,
            "owner": self.user(repo.owner),
            "html_url": f"{self.web}/{repo.full_name}",
            "description": repo.description,
            "fork": False,
            "url": u,
            "archive_url": f"{u}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{u}/assignees{{/user}}",
            "blobs_url": f"{u}/git/blobs{{/sha}}",
            "branches_url": f"{u}/branches{{/branch}}",
            "collaborators_url": f"{u}/collaborators{{/collaborator}}",
            "comments_url": f"{u}/comments{{/number}}",
            "commits_url": f"{u}/commits{{/sha}}",
            "compare_url": f"{u}/compare/{{base}}...{{head}}",
            "contents_url": f"{u}/contents/{{+path}}",
            "contributors_url": f"{u}/contributors",
            "deployments_url": f"{u}/deployments",
            "downloads_url": f"{u}/downloads",
            "events_url": f"{u}/events",
            "forks_url": f"{u}/forks",
            "git_commits_url": f"{u}/git/commits{{/sha}}",
            "git_refs_url": f"{u}/git/refs{{/sha}}",
            "git_tags_url": f"{u}/git/tags{{/sha}}",
            "git_url": f"git://127.0.0.1/{repo.full_name}.git",
            "issue_comment_url": f"{u}/issues/comments{{/number}}",
            "issue_events_url": f"{u}/issues/events{{/number}}",
            "issues_url": f"{u}/issues{{/number}}",
            "keys_url": f"{u}/keys{{/key_id}}",
            "labels_url": f"{u}/labels{{/name}}",
            "languages_url": f"{u}/languages",
            "merges_url": f"{u}/merges",
            "milestones_url": f"{u}/milestones{{/number}}",
            "notifications_url": f"{u}/notifications{{?since,all,participating}}",
            "pulls_url": f"{u}/pulls{{/number}}",
            "releases_url": f"{u}/releases{{/id}}",
            "ssh_url": f"git@127.0.0.1:{repo.full_name}.git",
            "stargazers_url": f"{u}/stargazers",
            "statuses_url": f"{u}/statuses/{{sha}}",
            "subscribers_url": f"{u}/subscribers",
            "subscription_url": f"{u}/subscription",
            "tags_url": f"{u}/tags",
            "teams_url": f"{u}/teams",
            "trees_url": f"{u}/git/trees{{/sha}}",
            "clone_url": f"{self.web}/{repo.full_name}.git",
            "mirror_url": None,
            "hooks_url": f"{u}/hooks",
            "svn_url": f"{self.web}/{repo.full_name}",
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": repo.default_branch,
            "open_issues_count": open_issues,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private",
            "pushed_at": iso(repo.pushed_at),
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.pushed_at),
            "license": None,
            "forks": 0,
            "open_issues": open_issues,
            "watchers": 0,
            "allow_forking": False,
            "web_commit_signoff_required": False,
        }
        if viewer is not None:
            data["permissions"] = self.permissions(self.state.role(repo, viewer))
        if full:
            data.update(
                {
                    "network_count": 0,
                    "subscribers_count": 0,
                    "allow_rebase_merge": True,
                    "allow_squash_merge": True,
                    "allow_merge_commit": True,
                    "allow_auto_merge": False,
                    "delete_branch_on_merge": False,
                    "allow_update_branch": False,
                    "use_squash_pr_title_as_default": False,
                    "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
                    "squash_merge_commit_message": "COMMIT_MESSAGES",
                    "merge_commit_title": "MERGE_MESSAGE",
                    "merge_commit_message": "PR_TITLE",
                    "temp_clone_token": "",
                }
            )
            if owner.type == "Organization":
                data["organization"] = self.user(repo.owner)
        return data

    # -- labels, issues, comments, events

    def label(self, repo: Repo, label: Label) -> dict[str, Any]:
        return {
            "id": label.id,
            "node_id": node_id("Label", label.id),
            "url": f"{self.api}/repos/{repo.full_name}/labels/{quote(label.name, safe='')}",
            "name": label.name,
            "description": label.description,
            "color": label.color,
            "default": label.default,
        }

    def issue(self, repo: Repo, issue: Issue, listing: bool = False) -> dict[str, Any]:
        """An issue; in lists GitHub leaves out ``closed_by`` (recorded GitHub traffic shows it)."""
        u = f"{self.api}/repos/{repo.full_name}/issues/{issue.number}"
        kind = "pull" if issue.pull else "issues"
        data: dict[str, Any] = {
            "id": issue.id,
            "node_id": node_id("PullRequest" if issue.pull else "Issue", issue.id),
            "url": u,
            "repository_url": f"{self.api}/repos/{repo.full_name}",
            "labels_url": f"{u}/labels{{/name}}",
            "comments_url": f"{u}/comments",
            "events_url": f"{u}/events",
            "html_url": f"{self.web}/{repo.full_name}/{kind}/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "title": issue.title,
            "body": issue.body,
            "user": self.user(issue.user),
            "labels": [self.label(repo, repo.labels[n.lower()]) for n in issue.labels],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(repo.comments_of(issue.number)),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_by": self.user(issue.closed_by) if issue.closed_by else None,
            "author_association": self.association(repo, issue.user),
            "timeline_url": f"{u}/timeline",
            "performed_via_github_app": None,
            "reactions": self.reactions(u),
        }
        if listing:
            del data["closed_by"]
        if issue.pull is not None:
            pu = f"{self.api}/repos/{repo.full_name}/pulls/{issue.number}"
            data["draft"] = issue.pull.draft
            data["pull_request"] = {
                "url": pu,
                "html_url": data["html_url"],
                "diff_url": f"{data['html_url']}.diff",
                "patch_url": f"{data['html_url']}.patch",
                "merged_at": None,
            }
        return data

    def reactions(self, url: str) -> dict[str, Any]:
        return {
            "url": f"{url}/reactions",
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "hooray": 0,
            "confused": 0,
            "heart": 0,
            "rocket": 0,
            "eyes": 0,
        }

    def association(self, repo: Repo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        if login.lower() in self.state.members.get(repo.owner.lower(), set()):
            return "MEMBER"  # whatever the member's permission on this repository
        role = self.state.role(repo, login)
        return "COLLABORATOR" if rank(role) >= rank("read") else "NONE"

    def comment(self, repo: Repo, c: Comment) -> dict[str, Any]:
        u = f"{self.api}/repos/{repo.full_name}/issues/comments/{c.id}"
        return {
            "id": c.id,
            "node_id": node_id("IssueComment", c.id),
            "url": u,
            "body": c.body,
            "html_url": f"{self.web}/{repo.full_name}/issues/{c.issue_number}#issuecomment-{c.id}",
            "issue_url": f"{self.api}/repos/{repo.full_name}/issues/{c.issue_number}",
            "user": self.user(c.user),
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
            "author_association": self.association(repo, c.user),
            "performed_via_github_app": None,
            "reactions": self.reactions(u),
        }

    def event(self, repo: Repo, e: Event) -> dict[str, Any]:
        kind = {"labeled": "LabeledEvent", "unlabeled": "UnlabeledEvent", "renamed": "RenamedTitleEvent"}[e.event]
        data: dict[str, Any] = {
            "id": e.id,
            "node_id": node_id(kind, e.id),
            "url": f"{self.api}/repos/{repo.full_name}/issues/events/{e.id}",
            "actor": self.user(e.actor),
            "event": e.event,
            "commit_id": None,
            "commit_url": None,
            "created_at": iso(e.created_at),
            "performed_via_github_app": None,
        }
        if e.rename is not None:
            data["rename"] = {"from": e.rename[0], "to": e.rename[1]}
        else:
            data["label"] = {"name": e.label, "color": e.color}
        return data

    def activity(self, repo: Repo, a: Activity) -> dict[str, Any]:
        """An entry of the repository's Events API feed (the ``event`` schema)."""
        who = self.state.account(a.actor)
        return {
            "id": str(a.id),
            "type": a.type,
            "actor": {
                "id": who.id,
                "login": who.login,
                "display_login": who.login,
                "gravatar_id": "",
                "url": f"{self.api}/users/{who.login}",
                "avatar_url": f"{self.web}/avatars/u/{who.id}?v=4",
            },
            "repo": {"id": repo.id, "name": repo.full_name, "url": f"{self.api}/repos/{repo.full_name}"},
            "payload": a.payload,
            "public": True,
            "created_at": iso(a.created_at),
        }

    def pull_minimal(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        """A pull request as the Events API payloads name it (``pull-request-minimal``)."""
        assert issue.pull is not None
        ref = {"id": repo.id, "url": f"{self.api}/repos/{repo.full_name}", "name": repo.name}
        return {
            "id": issue.pull.id,
            "number": issue.number,
            "url": f"{self.api}/repos/{repo.full_name}/pulls/{issue.number}",
            "head": {"ref": issue.pull.head_ref, "sha": issue.pull.head_sha, "repo": ref},
            "base": {"ref": issue.pull.base_ref, "sha": issue.pull.base_sha, "repo": ref},
        }

    # -- reviews

    def review(self, repo: Repo, r: Review) -> dict[str, Any]:
        pu = f"{self.api}/repos/{repo.full_name}/pulls/{r.pull_number}"
        html = f"{self.web}/{repo.full_name}/pull/{r.pull_number}#pullrequestreview-{r.id}"
        data: dict[str, Any] = {
            "id": r.id,
            "node_id": node_id("PullRequestReview", r.id),
            "user": self.user(r.user),
            "body": r.body,
            "state": r.state,
            "html_url": html,
            "pull_request_url": pu,
            "_links": {"html": {"href": html}, "pull_request": {"href": pu}},
            "commit_id": r.commit_id,
            "author_association": self.association(repo, r.user),
        }
        if r.submitted_at is not None:  # GitHub leaves it out of a pending review
            data["submitted_at"] = iso(r.submitted_at)
        return data

    def review_comment(self, repo: Repo, c: ReviewComment) -> dict[str, Any]:
        u = f"{self.api}/repos/{repo.full_name}/pulls/comments/{c.id}"
        pu = f"{self.api}/repos/{repo.full_name}/pulls/{c.pull_number}"
        html = f"{self.web}/{repo.full_name}/pull/{c.pull_number}#discussion_r{c.id}"
        data: dict[str, Any] = {
            "url": u,
            "pull_request_review_id": c.review_id,
            "id": c.id,
            "node_id": node_id("PullRequestReviewComment", c.id),
            "diff_hunk": c.diff_hunk,
            "path": c.path,
            "commit_id": c.commit_id,
            "original_commit_id": c.commit_id,
            "user": self.user(c.user),
            "body": c.body,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
            "html_url": html,
            "pull_request_url": pu,
            "author_association": self.association(repo, c.user),
            "_links": {"self": {"href": u}, "html": {"href": html}, "pull_request": {"href": pu}},
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "side": c.side,
            "subject_type": "line",
            "reactions": self.reactions(u),
        }
        # GitHub's description types these as integers (not nullable): a comment it cannot place leaves them out.
        if c.position is not None:
            data["position"] = data["original_position"] = c.position
        if c.line is not None:
            data["line"] = data["original_line"] = c.line
        return data

    # -- pulls, branches

    def pull(self, repo: Repo, issue: Issue, full: bool) -> dict[str, Any]:
        assert issue.pull is not None
        p = issue.pull
        u = f"{self.api}/repos/{repo.full_name}/pulls/{issue.number}"
        iu = f"{self.api}/repos/{repo.full_name}/issues/{issue.number}"
        html = f"{self.web}/{repo.full_name}/pull/{issue.number}"
        owner = self.user(repo.owner)
        repo_json = self.repository(repo)

        def end(ref: str, sha: str, fork: Repo | None = None) -> dict[str, Any]:
            if fork is not None:
                return {
                    "label": f"{fork.owner}:{ref}",
                    "ref": ref,
                    "sha": sha,
                    "user": self.user(fork.owner),
                    "repo": self.repository(fork),
                }
            return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": owner, "repo": repo_json}

        data: dict[str, Any] = {
            "url": u,
            "id": p.id,
            "node_id": node_id("PullRequest", p.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": iu,
            "commits_url": f"{u}/commits",
            "review_comments_url": f"{u}/comments",
            "review_comment_url": f"{self.api}/repos/{repo.full_name}/pulls/comments{{/number}}",
            "comments_url": f"{iu}/comments",
            "statuses_url": f"{self.api}/repos/{repo.full_name}/statuses/{p.head_sha}",
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self.user(issue.user),
            "body": issue.body,
            "labels": [self.label(repo, repo.labels[n.lower()]) for n in issue.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(issue.created_at),
            "updated_at": iso(max(issue.updated_at, issue.pull.activity_at if issue.pull else 0)),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": end(p.head_ref, p.head_sha, self.state.repo(*p.head_repo) if p.head_repo else None),
            "base": end(p.base_ref, p.base_sha),
            "_links": {
                k: {"href": v}
                for k, v in {
                    "self": u,
                    "html": html,
                    "issue": iu,
                    "comments": f"{iu}/comments",
                    "review_comments": f"{u}/comments",
                    "review_comment": f"{self.api}/repos/{repo.full_name}/pulls/comments{{/number}}",
                    "commits": f"{u}/commits",
                    "statuses": f"{self.api}/repos/{repo.full_name}/statuses/{p.head_sha}",
                }.items()
            },
            "author_association": self.association(repo, issue.user),
            "auto_merge": None,
            "draft": p.draft,
        }
        if full:
            data.update(
                {
                    "merged": p.merged,
                    "mergeable": None,
                    "rebaseable": None,
                    "mergeable_state": "unknown",
                    "merged_by": None,
                    "comments": len(repo.comments_of(issue.number)),
                    "review_comments": len(repo.review_comments_of(issue.number)),
                    "maintainer_can_modify": p.maintainer_can_modify,
                    "commits": 1,
                    "additions": 0,
                    "deletions": 0,
                    "changed_files": 0,
                }
            )
        return data

    def git_user(self, name: str, email: str, ts: int) -> dict[str, Any]:
        return {"name": name, "email": email, "date": iso(ts)}

    def branch(self, repo: Repo, name: str, commit: dict[str, Any]) -> dict[str, Any]:
        u = f"{self.api}/repos/{repo.full_name}"
        sha = commit["sha"]
        return {
            "name": name,
            "commit": {
                "sha": sha,
                "node_id": node_id("Commit", int(sha[:7], 16)),
                "url": f"{u}/commits/{sha}",
                "html_url": f"{self.web}/{repo.full_name}/commit/{sha}",
                "comments_url": f"{u}/commits/{sha}/comments",
                "commit": {
                    "url": f"{u}/git/commits/{sha}",
                    "message": commit["message"],
                    "comment_count": 0,
                    "author": self.git_user(commit["author_name"], commit["author_email"], commit["author_time"]),
                    "committer": self.git_user(
                        commit["committer_name"], commit["committer_email"], commit["committer_time"]
                    ),
                    "tree": {"sha": commit["tree"], "url": f"{u}/git/trees/{commit['tree']}"},
                    "verification": {
                        "verified": False,
                        "reason": "unsigned",
                        "signature": None,
                        "payload": None,
                        "verified_at": None,
                    },
                },
                "author": None,
                "committer": None,
                "parents": [
                    {"sha": s, "url": f"{u}/commits/{s}", "html_url": f"{self.web}/{repo.full_name}/commit/{s}"}
                    for s in commit["parents"]
                ],
            },
            "_links": {"self": f"{u}/branches/{name}", "html": f"{self.web}/{repo.full_name}/tree/{name}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
            },
            "protection_url": f"{u}/branches/{name}/protection",
        }
