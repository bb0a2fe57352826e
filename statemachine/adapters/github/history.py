"""Who did what on GitHub: who applied a label, the permission a login has, and every edit of an issue's title
and body, and the open issues carrying a label with who applied it (the two GraphQL queries orch sends)."""

from __future__ import annotations

import time
from typing import Any

from statemachine.adapters.github.errors import GitHubError
from statemachine.adapters.github.mapping import PERMISSIONS, _label_names
from statemachine.adapters.github.transport import GitHubTransport
from statemachine.model import Issue, TextEdit, TextHistory

# a GraphQL query: who edited an issue's body, and when (REST does not say); every edit, not only
# the last one, so that a maintainer's later touch-up does not hide an outsider's edit before it
_EDITOR_QUERY = (
    "query($owner: String!, $repo: String!, $number: Int!) "
    "{ repository(owner: $owner, name: $repo) { issue(number: $number) { userContentEdits(last: 100) { nodes { editor { login } editedAt } } } } }"
)


# the open issues carrying a label, 100 a page, each with its last 100 labellings (a Bot's GraphQL login lacks the
# "[bot]" that REST shows: _login puts it back)
_LABELLED_QUERY = (
    "query($owner: String!, $repo: String!, $label: String!, $after: String) "
    "{ repository(owner: $owner, name: $repo) { issues(first: 100, after: $after, states: OPEN, labels: [$label]) "
    "{ pageInfo { hasNextPage endCursor } nodes { number title body state createdAt updatedAt "
    "author { __typename login } labels(first: 100) { nodes { name } } "
    "timelineItems(itemTypes: [LABELED_EVENT], last: 100) "
    "{ nodes { ... on LabeledEvent { label { name } actor { __typename login } } } } } } } }"
)


# an issue with everything its claim's guards read, in one query: its fields and labels, who edited its body, and
# its last 100 labellings and title renames (what REST needs the issue, its events and this query for)
_ISSUE_QUERY = (
    "query($owner: String!, $repo: String!, $number: Int!) "
    "{ repository(owner: $owner, name: $repo) { issue(number: $number) { number title body state createdAt updatedAt "
    "author { __typename login } labels(first: 100) { nodes { name } } "
    "userContentEdits(last: 100) { nodes { editor { login } editedAt } } "
    "timelineItems(itemTypes: [LABELED_EVENT, RENAMED_TITLE_EVENT], last: 100) { pageInfo { hasPreviousPage } "
    "nodes { __typename ... on LabeledEvent { createdAt label { name } actor { __typename login } } "
    "... on RenamedTitleEvent { createdAt actor { __typename login } } } } } } }"
)


def _login(actor: Any) -> str:
    """A GraphQL actor's login as REST spells it (``ghost`` for a deleted account)."""
    if not isinstance(actor, dict) or not actor.get("login"):
        return "ghost"
    login = str(actor["login"])
    return f"{login}[bot]" if actor.get("__typename") == "Bot" and not login.endswith("[bot]") else login


class LabelHistory(GitHubTransport):
    """The tracker's reads of who applied labels and edited issues, and of people's permissions."""

    def label_applied_by(self, number: int, label: str) -> str | None:
        """Who applied ``label`` to the issue: the actor of its most recent ``labeled`` event, or None."""
        actor: str | None = None
        for e in self._paged(
            f"read the events of issue #{number}",
            "issues.list_events",
            {"issue_number": number},
            missing=f"issue #{number} does not exist in {self.full_name}",
        ):
            if e.get("event") == "labeled" and (e.get("label") or {}).get("name") == label:
                actor = str((e.get("actor") or {}).get("login") or "ghost")
        return actor

    def label_actors(self, labels: list[str]) -> dict[str, dict[int, str]]:
        """For every open issue carrying one of ``labels``, who applied that label most recently (``labelled_issues``:
        one GraphQL query per label and per 100 such issues, never a pass over the repository's history)."""
        return {label: self.labelled_issues(label)[1] for label in labels}

    def labelled_issues(self, label: str) -> tuple[list[Issue], dict[int, str]]:
        """The open issues carrying ``label`` (as ``list_issues`` gives them) and, for each, who applied the label most
        recently: one GraphQL query per 100 such issues, each with its last 100 ``LabeledEvent``s. An issue whose
        labelling is not among them is left out of the second (its own events are read instead)."""
        issues: list[Issue] = []
        actors: dict[int, str] = {}
        after: str | None = None
        wanted = label.lower()
        while True:
            found = self._graphql(
                f"list the open issues carrying {label!r} and who labelled them",
                _LABELLED_QUERY,
                {"owner": self.owner, "repo": self.repo, "label": label, "after": after},
            )["issues"]
            for node in found.get("nodes") or []:
                number = int(node["number"])
                author = node.get("author")
                issues.append(
                    Issue(
                        number=number,
                        title=str(node.get("title") or ""),
                        body=str(node.get("body") or ""),
                        state=str(node.get("state") or "OPEN").lower(),
                        labels=_label_names((node.get("labels") or {}).get("nodes")),
                        author=_login(author) if author else "",
                        created_at=str(node.get("createdAt") or ""),
                        updated_at=str(node.get("updatedAt") or ""),
                    )
                )
                for e in reversed(((node.get("timelineItems") or {}).get("nodes")) or []):  # the latest wins
                    if str((e.get("label") or {}).get("name") or "").lower() == wanted:
                        actors[number] = _login(e.get("actor"))
                        break
            page = found.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return sorted(issues, key=lambda i: i.number), actors
            after = str(page["endCursor"])

    def _graphql(self, what: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """``data.repository`` of one GraphQL query; a GraphQL error is an error (never an empty answer)."""
        url = (self.api_url[: -len("/v3")] if self.api_url.endswith("/api/v3") else self.api_url) + "/graphql"
        resp = self._send(what, lambda: self._raw("POST", url, {"query": query, "variables": variables}))
        data = self._json(resp) or {}
        repo = (data.get("data") or {}).get("repository")
        if data.get("errors") or not isinstance(repo, dict):
            message = "; ".join(str(e.get("message") or e) for e in data.get("errors") or []) or "no repository"
            raise GitHubError(f"GitHub's GraphQL API could not {what}: {message}", "the token needs read access")
        return repo

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
        resp = self._send(
            f"read the permission of {login}",
            self._op("repos", "get_collaborator_permission_level", username=login),
            on404=lambda: None,
        )
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
        for e in self._paged(
            f"read the events of issue #{number}",
            "issues.list_events",
            {"issue_number": number},
            missing=f"issue #{number} does not exist in {self.full_name}",
        ):
            who = str((e.get("actor") or {}).get("login") or "ghost")
            if e.get("event") == "labeled" and (e.get("label") or {}).get("name") == label:
                labeled_by, labeled_at = who, str(e.get("created_at") or "")
            elif e.get("event") == "renamed":
                renames.append((who, str(e.get("created_at") or "")))
        changes = [("title", who, at) for who, at in renames] + [
            ("body", who, at) for who, at in self._body_edits(number)
        ]
        edits = tuple(
            TextEdit(part, who, at, labeled_by is None or at >= labeled_at) for part, who, at in changes if at
        )
        return TextHistory(labeled_by, labeled_at, edits)

    def issue_with_history(self, number: int, labels: list[str]) -> tuple[Issue, dict[str, TextHistory]]:
        """The issue (without comments) and, per label, who applied it last and every edit of the title or body: one
        GraphQL query. A label whose labelling is older than the issue's last 100 labellings and renames is read the
        REST way (``text_history``); so is everything when GraphQL cannot answer (a pull request's number, say),
        so that its error reads as REST's."""
        try:
            found = self._graphql(
                f"read issue #{number} with who labelled and edited it",
                _ISSUE_QUERY,
                {"owner": self.owner, "repo": self.repo, "number": int(number)},
            ).get("issue")
        except GitHubError as exc:
            if type(exc) is not GitHubError:  # GitHub unavailable, rate limited, the token refused: said as it is
                raise
            found = None  # GraphQL's own answer says it cannot (a pull request's number): REST says why
        if not isinstance(found, dict):
            issue = self.get_issue(number, comments=False)  # type: ignore[attr-defined]
            return issue, {label: self.text_history(number, label) for label in labels}
        author = found.get("author")
        issue = Issue(
            number=int(found["number"]),
            title=str(found.get("title") or ""),
            body=str(found.get("body") or ""),
            state=str(found.get("state") or "OPEN").lower(),
            labels=_label_names((found.get("labels") or {}).get("nodes")),
            author=_login(author) if author else "",
            created_at=str(found.get("createdAt") or ""),
            updated_at=str(found.get("updatedAt") or ""),
        )
        timeline = found.get("timelineItems") or {}
        nodes = [n for n in timeline.get("nodes") or [] if isinstance(n, dict)]
        renames = [
            (_login(n.get("actor")), str(n.get("createdAt") or ""))
            for n in nodes
            if n.get("__typename") == "RenamedTitleEvent"
        ]
        bodies = [
            (str((n.get("editor") or {}).get("login") or "ghost"), str(n.get("editedAt") or ""))
            for n in (found.get("userContentEdits") or {}).get("nodes") or []
            if isinstance(n, dict) and n.get("editedAt")
        ]
        histories: dict[str, TextHistory] = {}
        for label in labels:
            labeled_by: str | None = None
            labeled_at = ""
            for n in nodes:  # oldest first: the last labelling wins
                if n.get("__typename") == "LabeledEvent" and (n.get("label") or {}).get("name") == label:
                    labeled_by, labeled_at = _login(n.get("actor")), str(n.get("createdAt") or "")
            if labeled_by is None and (timeline.get("pageInfo") or {}).get("hasPreviousPage"):
                histories[label] = self.text_history(number, label)
                continue
            changes = [("title", who, at) for who, at in renames] + [("body", who, at) for who, at in bodies]
            edits = tuple(
                TextEdit(part, who, at, labeled_by is None or at >= labeled_at) for part, who, at in changes if at
            )
            histories[label] = TextHistory(labeled_by, labeled_at, edits)
        return issue, histories

    def _body_edits(self, number: int) -> list[tuple[str, str]]:
        """(login, editedAt) of each edit of the issue's body, the last 100, none when it was never edited (GraphQL
        ``userContentEdits``; GitHub lists the original text as an edit by its author at creation, which is before
        any label)."""
        url = (self.api_url[: -len("/v3")] if self.api_url.endswith("/api/v3") else self.api_url) + "/graphql"
        payload = {"query": _EDITOR_QUERY, "variables": {"owner": self.owner, "repo": self.repo, "number": int(number)}}
        resp = self._send(f"read who last edited issue #{number}", lambda: self._raw("POST", url, payload))
        data = self._json(resp) or {}
        issue = ((data.get("data") or {}).get("repository") or {}).get("issue")
        if data.get("errors") or issue is None:
            message = "; ".join(str(e.get("message") or e) for e in data.get("errors") or []) or "no such issue"
            raise GitHubError(
                f"GitHub's GraphQL API did not say who edited issue #{number}: {message}",
                "the token needs read access to the repository's issues",
            )
        nodes = ((issue.get("userContentEdits") or {}).get("nodes")) or []
        return [
            (str((n.get("editor") or {}).get("login") or "ghost"), str(n.get("editedAt") or ""))
            for n in nodes
            if isinstance(n, dict) and n.get("editedAt")
        ]

    def label_authority(self, number: int, label: str) -> tuple[str | None, str]:
        """Who applied ``label`` and their permission on the repository ((None, "none") when nobody did)."""
        actor = self.label_applied_by(number, label)
        if actor is None:
            return None, "none"
        return actor, self.permission(actor)
