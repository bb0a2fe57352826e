"""Who did what on GitHub: who applied a label, the permission a login has, and every edit of an issue's title
and body (the one GraphQL query orch sends)."""

from __future__ import annotations

import time

from statemachine.adapters.github.errors import GitHubError
from statemachine.adapters.github.mapping import PERMISSIONS
from statemachine.adapters.github.transport import GitHubTransport
from statemachine.model import TextEdit, TextHistory

# the one GraphQL query orch sends: who edited an issue's body, and when (REST does not say); every edit, not only
# the last one, so that a maintainer's later touch-up does not hide an outsider's edit before it
_EDITOR_QUERY = (
    "query($owner: String!, $repo: String!, $number: Int!) "
    "{ repository(owner: $owner, name: $repo) { issue(number: $number) { userContentEdits(last: 100) { nodes { editor { login } editedAt } } } } }"
)


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
