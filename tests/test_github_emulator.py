"""The GitHub emulator's own tests: real HTTP (urllib, ghapi) and real git against tests/github_emulator.

Every test runs with the `github_emulator` fixture or the context manager, so every request and
response is also checked against GitHub's OpenAPI description; a violation fails the test.
"""

from __future__ import annotations

import http.client
import importlib
import itertools
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.github_emulator import (  # noqa: F401
    GitHubEmulator,
    OpenAPIViolation,
    SpecMissing,
    github_emulator,
    load_spec,
)

OWNER, REPO = "acme", "widgets"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def call(
    gh: GitHubEmulator,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = "tok-alice",
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    scheme: str = "token",
) -> Resp:
    url = path if path.startswith("http") else gh.api_url + path
    h = {"Accept": "application/vnd.github+json", **(headers or {})}
    if token is not None:
        h["Authorization"] = f"{scheme} {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Resp(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Resp(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def links(resp: Resp) -> dict[str, str]:
    out = {}
    for part in resp.headers.get("link", "").split(","):
        if part.strip():
            url, rel = part.split(";")
            out[rel.strip().removeprefix('rel="').rstrip('"')] = url.strip().strip("<>")
    return out


def ghapi(gh: GitHubEmulator, token: str = "tok-alice") -> Any:
    """A synchronous ghapi client of the emulator (ghapi's own types are not checked here)."""
    cls: Any = importlib.import_module("ghapi.all").GhApi
    return cls(owner=OWNER, repo=REPO, token=token, gh_host=gh.api_url, sync=True)


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        ["git", "-c", "credential.helper=", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"git {args} failed: {res.stderr}")
    return res


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("print('hi')\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def gh(github_emulator: GitHubEmulator, source: Path) -> GitHubEmulator:  # noqa: F811 - the imported fixture
    g = github_emulator
    g.add_user("alice", token="tok-alice")
    g.add_user("bob", token="tok-bob")
    g.add_user("carol", token="tok-carol")
    g.add_user("mallory", token="tok-mallory")
    g.add_repo(OWNER, REPO, default_branch="main", source=source)
    g.set_permission(OWNER, REPO, "alice", "admin")
    g.set_permission(OWNER, REPO, "bob", "read")
    g.set_permission(OWNER, REPO, "carol", "triage")
    return g


R = f"/repos/{OWNER}/{REPO}"


def test_state_is_kept_across_requests(gh: GitHubEmulator) -> None:
    r = call(gh, "POST", f"{R}/issues", {"title": "Fix the parser", "body": "details", "labels": ["agent:auto"]})
    assert r.status == 201, r.body
    issue = r.json
    n = issue["number"]
    assert r.headers["location"] == issue["url"] == f"{gh.api_url}{R}/issues/{n}"
    assert [lab["name"] for lab in issue["labels"]] == ["agent:auto"]
    assert issue["user"]["login"] == "alice" and issue["state"] == "open" and "pull_request" not in issue

    r = call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "<!-- orch:claim --> claimed"})
    assert r.status == 201
    comment_id = r.json["id"]
    assert call(gh, "POST", f"{R}/issues/{n}/labels", {"labels": ["agent:running", "Agent:Auto"]}).status == 200
    r = call(gh, "DELETE", f"{R}/issues/{n}/labels/agent%3Aauto")
    assert r.status == 200 and [lab["name"] for lab in r.json] == ["agent:running"]
    assert call(gh, "DELETE", f"{R}/issues/{n}/labels/agent%3Aauto").status == 404
    r = call(gh, "PATCH", f"{R}/issues/comments/{comment_id}", {"body": "edited"})
    assert r.status == 200 and r.json["body"] == "edited"

    got = call(gh, "GET", f"{R}/issues/{n}").json
    assert [lab["name"] for lab in got["labels"]] == ["agent:running"]
    assert got["comments"] == 1 and got["title"] == "Fix the parser" and got["body"] == "details"
    comments = call(gh, "GET", f"{R}/issues/{n}/comments").json
    assert [(c["id"], c["body"], c["user"]["login"]) for c in comments] == [(comment_id, "edited", "alice")]

    r = call(gh, "PATCH", f"{R}/issues/{n}", {"state": "closed", "title": "Parser fixed"})
    assert r.status == 200 and r.json["state"] == "closed" and r.json["closed_by"]["login"] == "alice"
    assert r.json["state_reason"] == "completed" and r.json["closed_at"]
    assert call(gh, "GET", f"{R}/issues").json == []
    assert [i["number"] for i in call(gh, "GET", f"{R}/issues?state=closed").json] == [n]
    assert call(gh, "DELETE", f"{R}/issues/comments/{comment_id}").status == 204
    assert call(gh, "GET", f"{R}/issues/{n}/comments").json == []

    repo = gh.state.repo(OWNER, REPO)
    assert repo.issues[n].title == "Parser fixed" and repo.issues[n].labels == ["agent:running"]
    assert repo.comments == {}
    assert {lab.name for lab in repo.labels.values()} >= {"agent:auto", "agent:running", "bug", "wontfix"}
    assert gh.requests[0] == ("POST", f"{R}/issues", 201)
    assert len(gh.requests) == 13


def test_labels_crud_and_issue_filters(gh: GitHubEmulator) -> None:
    r = call(gh, "POST", f"{R}/labels", {"name": "agent:auto", "color": "BADA55", "description": "runs"})
    assert r.status == 201 and r.json["color"] == "BADA55" and r.json["default"] is False
    assert call(gh, "POST", f"{R}/labels", {"name": "Agent:Auto"}).json["errors"][0]["code"] == "already_exists"
    r = call(gh, "POST", f"{R}/labels", {"name": "x", "color": "nothex"})
    assert r.status == 422 and r.json["errors"] == [{"resource": "Label", "field": "color", "code": "invalid"}]
    assert call(gh, "GET", f"{R}/labels/agent:auto").json["description"] == "runs"
    r = call(gh, "PATCH", f"{R}/labels/agent:auto", {"new_name": "agent:go", "color": "00ff00"})
    assert r.status == 200 and r.json["name"] == "agent:go"
    assert call(gh, "GET", f"{R}/labels/agent:auto").status == 404
    names = [lab["name"] for lab in call(gh, "GET", f"{R}/labels?per_page=100").json]
    assert names == sorted(names, key=str.lower) and "agent:go" in names and "bug" in names

    a = gh.create_issue(OWNER, REPO, "a", labels=["agent:go", "bug"])
    b = gh.create_issue(OWNER, REPO, "b", labels=["agent:go"])
    gh.create_issue(OWNER, REPO, "c", labels=["bug"])

    def numbers(q: str) -> list[int]:
        return [i["number"] for i in call(gh, "GET", f"{R}/issues?{q}").json]

    assert numbers("labels=agent:go") == [b, a]  # newest first
    assert numbers("labels=AGENT:GO,bug") == [a]  # every label must match, case-insensitively
    assert numbers("labels=agent:go&direction=asc") == [a, b]
    gh.advance(3600)
    since = gh.state.clock
    call(gh, "POST", f"{R}/issues/{a}/comments", {"body": "bump"})
    assert numbers(f"since={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}") == [a]
    assert numbers("sort=updated")[0] == a


def test_pagination_250_issues_in_pages_of_100_with_link_headers(gh: GitHubEmulator) -> None:
    for i in range(250):
        gh.create_issue(OWNER, REPO, f"issue {i}", labels=["agent:auto"] if i % 2 else [])
    gh.reset_counts()
    url: str | None = f"{gh.api_url}{R}/issues?per_page=100&state=all"
    pages, seen = [], []
    while url:
        r = call(gh, "GET", url)
        assert r.status == 200
        pages.append(links(r))
        seen += [i["number"] for i in r.json]
        url = links(r).get("next")
    assert len(pages) == 3 and len(seen) == 250 and seen == list(range(250, 0, -1))
    repo_id = gh.state.repo(OWNER, REPO).id
    assert pages[0]["next"] == f"{gh.api_url}/repositories/{repo_id}/issues?per_page=100&state=all&page=2"
    assert pages[0]["last"].endswith("page=3") and "prev" not in pages[0]
    assert set(pages[1]) == {"prev", "next", "last", "first"} and pages[1]["prev"].endswith("page=1")
    assert set(pages[2]) == {"prev", "first"}
    assert [s for _, _, s in gh.requests] == [200, 200, 200]
    # filters survive into the links, and the label filter halves the set
    r = call(gh, "GET", f"{R}/issues?labels=agent:auto&per_page=100&page=2")
    assert len(r.json) == 25 and set(links(r)) == {"prev", "first"}
    assert "labels=agent%3Aauto" in links(r)["first"]
    assert call(gh, "GET", f"{R}/issues?per_page=100&page=4").json == []


def test_etag_conditional_get_is_free(gh: GitHubEmulator) -> None:
    n = gh.create_issue(OWNER, REPO, "cache me")
    first = call(gh, "GET", f"{R}/issues/{n}")
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["x-ratelimit-used"] == "1"
    again = call(gh, "GET", f"{R}/issues/{n}", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
    assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
    assert again.headers["x-ratelimit-used"] == "1"
    lst = call(gh, "GET", f"{R}/issues")
    assert call(gh, "GET", f"{R}/issues", headers={"If-None-Match": lst.headers["etag"]}).status == 304
    call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "changes updated_at"})
    changed = call(gh, "GET", f"{R}/issues/{n}", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["etag"] != etag and changed.json["comments"] == 1
    assert call(gh, "GET", f"{R}/issues", headers={"If-None-Match": lst.headers["etag"]}).status == 200
    assert [s for _, _, s in gh.requests] == [200, 304, 200, 304, 201, 200, 200]
    assert int(changed.headers["x-ratelimit-used"]) == 4


def test_auth_errors_and_permissions(gh: GitHubEmulator) -> None:
    r = call(gh, "GET", "/user", token=None)
    assert r.status == 401 and r.json["message"] == "Requires authentication"
    assert r.json["documentation_url"].startswith("https://docs.github.com/")
    assert {
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-ratelimit-resource",
    } <= set(r.headers)
    r = call(gh, "GET", f"{R}/issues", token="wrong")
    assert r.status == 401 and r.json["message"] == "Bad credentials"
    r = call(gh, "GET", "/user", token="tok-alice", scheme="Bearer")
    assert r.status == 200 and r.json["login"] == "alice"
    assert call(gh, "GET", "/rate_limit", token=None).json["resources"]["core"]["limit"] == 60

    # no access to a private repository: it does not exist for you
    assert call(gh, "GET", R, token="tok-mallory").status == 404
    assert call(gh, "POST", f"{R}/issues", {"title": "x"}, token="tok-mallory").status == 404
    assert call(gh, "GET", f"/repos/{OWNER}/nope").status == 404
    # read: may read, open issues and comment, not label or create pulls/labels
    assert call(gh, "GET", R, token="tok-bob").json["permissions"] == {
        "admin": False,
        "maintain": False,
        "push": False,
        "triage": False,
        "pull": True,
    }
    r = call(gh, "POST", f"{R}/issues", {"title": "from bob", "labels": ["bug"]}, token="tok-bob")
    assert r.status == 201 and r.json["labels"] == []  # silently dropped without push access
    n = r.json["number"]
    assert call(gh, "POST", f"{R}/issues/{n}/labels", {"labels": ["bug"]}, token="tok-bob").status == 403
    assert call(gh, "POST", f"{R}/labels", {"name": "z"}, token="tok-bob").status == 403
    assert call(gh, "POST", f"{R}/pulls", {"title": "t", "head": "main", "base": "main"}, token="tok-bob").status == 403
    c = call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "mine"}, token="tok-bob").json["id"]
    alice_c = call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "alice's"}).json["id"]
    assert call(gh, "PATCH", f"{R}/issues/comments/{alice_c}", {"body": "x"}, token="tok-bob").status == 403
    assert call(gh, "PATCH", f"{R}/issues/comments/{c}", {"body": "mine, edited"}, token="tok-bob").status == 200
    # triage may label
    assert call(gh, "POST", f"{R}/issues/{n}/labels", {"labels": ["bug"]}, token="tok-carol").status == 200
    assert gh.state.repo(OWNER, REPO).issues[n].labels == ["bug"]


@pytest.mark.parametrize(
    "role,permission",
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_collaborator_permission_endpoint(gh: GitHubEmulator, role: str, permission: str) -> None:
    gh.add_user("dave", token="tok-dave")
    gh.set_permission(OWNER, REPO, "dave", role)
    r = call(gh, "GET", f"{R}/collaborators/dave/permission")
    assert r.status == 200
    assert (r.json["permission"], r.json["role_name"], r.json["user"]["login"]) == (permission, role, "dave")
    assert r.json["user"]["permissions"]["push"] is (role in ("write", "maintain", "admin"))
    assert call(gh, "GET", f"{R}/collaborators/nobody/permission").status == 404


def test_labeled_events_record_the_actor(gh: GitHubEmulator) -> None:
    n = gh.create_issue(OWNER, REPO, "events", labels=["agent:auto"], user="bob")
    gh.add_label_event(OWNER, REPO, n, "agent:plan", actor="carol")
    call(gh, "POST", f"{R}/issues/{n}/labels", {"labels": ["agent:running"]})
    call(gh, "DELETE", f"{R}/issues/{n}/labels/agent%3Aplan", token="tok-carol")
    events = call(gh, "GET", f"{R}/issues/{n}/events").json
    assert [(e["event"], e["label"]["name"], e["actor"]["login"]) for e in events] == [
        ("labeled", "agent:auto", "bob"),
        ("labeled", "agent:plan", "carol"),
        ("labeled", "agent:running", "alice"),
        ("unlabeled", "agent:plan", "carol"),
    ]
    assert all(e["created_at"] <= f["created_at"] for e, f in itertools.pairwise(events))
    issue = call(gh, "GET", f"{R}/issues/{n}").json
    assert [lab["name"] for lab in issue["labels"]] == ["agent:auto", "agent:running"]


def test_git_push_and_draft_pull_request(gh: GitHubEmulator, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", gh.git_url(OWNER, REPO, token="tok-bob"), str(clone))  # read may fetch
    git(clone, "checkout", "-q", "-b", "orch/issue-1")
    (clone / "app.py").write_text("print('fixed')\n")
    git(clone, "commit", "-qam", "fix")
    sha = git(clone, "rev-parse", "HEAD").stdout.strip()

    refused = git(clone, "push", "origin", "orch/issue-1", check=False)
    assert refused.returncode != 0 and "Permission to acme/widgets.git denied to bob" in refused.stderr
    anon = git(clone, "push", gh.git_url(OWNER, REPO), "orch/issue-1", check=False)
    assert anon.returncode != 0
    assert git(clone, "ls-remote", gh.git_url(OWNER, REPO, token="tok-mallory"), check=False).returncode != 0
    bare = gh.bare_path(OWNER, REPO)
    assert git(bare, "rev-parse", "--verify", "-q", "refs/heads/orch/issue-1", check=False).returncode != 0

    gh.set_permission(OWNER, REPO, "bob", "write")
    git(clone, "push", "-q", "origin", "orch/issue-1")
    assert git(bare, "rev-parse", "refs/heads/orch/issue-1").stdout.strip() == sha
    assert [s for m, _, s, u in gh.git_requests if m == "POST" and u == "bob"][-1] == 200

    assert call(gh, "GET", f"{R}/branches/orch%2Fissue-1").json["commit"]["sha"] == sha
    assert call(gh, "GET", f"{R}/branches/nope").status == 404
    issue = gh.create_issue(OWNER, REPO, "the issue")
    body = {"title": "Fix it", "head": "orch/issue-1", "base": "main", "body": "Closes #1", "draft": True}
    r = call(gh, "POST", f"{R}/pulls", body)
    assert r.status == 201, r.body
    pr = r.json
    assert pr["draft"] is True and pr["head"]["sha"] == sha and pr["number"] == issue + 1
    assert pr["base"]["sha"] == git(bare, "rev-parse", "refs/heads/main").stdout.strip()
    assert call(gh, "POST", f"{R}/pulls", body).json["errors"][0]["message"].startswith("A pull request already exists")
    assert call(gh, "POST", f"{R}/pulls", {**body, "head": "main"}).status == 422
    assert call(gh, "GET", f"{R}/pulls/{pr['number']}").json["head"]["ref"] == "orch/issue-1"
    assert [p["number"] for p in call(gh, "GET", f"{R}/pulls?head=acme:orch/issue-1").json] == [pr["number"]]
    assert call(gh, "GET", f"{R}/pulls?head=acme:other").json == []
    assert call(gh, "GET", f"{R}/pulls?base=other").json == []
    assert len(call(gh, "GET", f"{R}/pulls?head=orch/issue-1").json) == 1  # no owner: GitHub ignores it
    (clone / "app.py").write_text("print('fixed again')\n")  # a later push moves the pull request's head
    git(clone, "commit", "-qam", "rework")
    git(clone, "push", "-q", "origin", "orch/issue-1")
    new_sha = git(clone, "rev-parse", "HEAD").stdout.strip()
    assert call(gh, "GET", f"{R}/pulls/{pr['number']}").json["head"]["sha"] == new_sha != sha
    listed = {i["number"]: i for i in call(gh, "GET", f"{R}/issues").json}
    assert "pull_request" in listed[pr["number"]] and listed[pr["number"]]["draft"] is True
    assert "pull_request" not in listed[issue]


def test_fault_status_does_nothing_then_clears(gh: GitHubEmulator) -> None:
    n = gh.create_issue(OWNER, REPO, "faults")
    fault = gh.inject("POST", r"/comments$", "status", status=502)
    r = call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "x"})
    assert r.status == 502 and r.json["message"] == "Server Error"
    assert gh.state.repo(OWNER, REPO).comments_of(n) == [] and fault.hits == 1
    assert call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "x"}).status == 201
    gh.inject("GET", r"/issues$", "status", times=2, status=500)
    assert [call(gh, "GET", f"{R}/issues").status for _ in range(3)] == [500, 500, 200]
    gh.inject("PATCH", r"/issues/\d+$", "status", status=422)
    r = call(gh, "PATCH", f"{R}/issues/{n}", {"state": "closed"})
    assert r.status == 422 and r.json["message"] == "Validation Failed"
    assert gh.state.repo(OWNER, REPO).issues[n].state == "open"


def test_fault_secondary_rate_limit(gh: GitHubEmulator) -> None:
    gh.inject("*", r"/labels", "secondary_rate_limit", retry_after=7)
    r = call(gh, "GET", f"{R}/labels")
    assert r.status == 403 and r.headers["retry-after"] == "7" and "secondary rate limit" in r.json["message"]
    assert int(r.headers["x-ratelimit-remaining"]) > 0
    assert call(gh, "GET", f"{R}/labels").status == 200
    gh.inject("GET", "^/user$", "primary_rate_limit")
    r = call(gh, "GET", "/user")
    assert r.status == 403 and r.headers["x-ratelimit-remaining"] == "0"
    gh.set_rate_limit("alice", remaining=0)
    r = call(gh, "GET", "/user")
    assert r.status == 403 and "API rate limit exceeded" in r.json["message"]


def test_fault_timeout(gh: GitHubEmulator) -> None:
    n = gh.create_issue(OWNER, REPO, "slow")
    gh.inject("POST", r"/comments$", "timeout", seconds=3)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "slow"}, timeout=0.4)
    assert time.monotonic() - t0 < 2
    assert [c.body for c in gh.state.repo(OWNER, REPO).comments_of(n)] == ["slow"]  # it was done
    gh.inject("POST", r"/comments$", "timeout", seconds=3, effect=False)
    with pytest.raises(TimeoutError):
        call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "never"}, timeout=0.4)
    assert [c.body for c in gh.state.repo(OWNER, REPO).comments_of(n)] == ["slow"]
    assert call(gh, "GET", f"{R}/issues/{n}/comments").status == 200


def test_fault_lost_response_performs_the_effect(gh: GitHubEmulator) -> None:
    n = gh.create_issue(OWNER, REPO, "lossy")
    fault = gh.inject("POST", r"/issues/\d+/comments$", "lost_response")
    with pytest.raises(http.client.RemoteDisconnected):
        call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "<!-- orch:report --> done"})
    assert fault.hits == 1 and gh.log[-1].fault == "lost_response"
    assert [c.body for c in gh.state.repo(OWNER, REPO).comments_of(n)] == ["<!-- orch:report --> done"]
    # a blind retry duplicates; a careful client looks first
    call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "<!-- orch:report --> done"})
    bodies = [c["body"] for c in call(gh, "GET", f"{R}/issues/{n}/comments").json]
    assert bodies == ["<!-- orch:report --> done"] * 2

    api = ghapi(gh)
    gh.inject("POST", r"/labels$", "lost_response")
    with pytest.raises(Exception) as info:
        api.issues.add_labels(n, labels=["agent:running"])
    assert "disconnect" in str(info.value).lower() or "closed" in str(info.value).lower()
    assert gh.state.repo(OWNER, REPO).issues[n].labels == ["agent:running"]


def test_ghapi_client_end_to_end(gh: GitHubEmulator) -> None:
    api = ghapi(gh)
    assert api.users.get_authenticated().login == "alice"
    assert api.repos.get().default_branch == "main"
    issue = api.issues.create(title="via ghapi", body="b", labels=["agent:auto"])
    api.issues.add_labels(issue.number, labels=["agent:running"])
    api.issues.remove_label(issue.number, "agent:auto")
    c = api.issues.create_comment(issue.number, body="hello")
    api.issues.update_comment(c.id, body="hello again")
    assert [x.body for x in api.issues.list_comments(issue.number)] == ["hello again"]
    api.issues.delete_comment(c.id)
    listed = api.issues.list_for_repo(labels="agent:running", state="open", per_page=100)
    assert [i.number for i in listed] == [issue.number]
    assert [e.event for e in api.issues.list_events(issue.number)] == ["labeled", "labeled", "unlabeled"]
    assert api.repos.get_collaborator_permission_level("bob").permission == "read"
    api.issues.update(issue.number, state="closed")
    assert api.issues.get(issue.number).state == "closed"
    assert api.rate_limit.get().resources.core.used >= 10
    assert api.recv_hdrs["x-ratelimit-resource"] == "core"
    assert gh.violations == []


def test_a_corrupted_response_is_caught(tmp_path: Path) -> None:
    gh = GitHubEmulator(tmp_path)
    with pytest.raises(OpenAPIViolation) as info, gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_repo(OWNER, REPO)
        gh.set_permission(OWNER, REPO, "alice", "write")
        n = gh.create_issue(OWNER, REPO, "x")
        gh.corrupt("GET", r"/issues/\d+$", lambda body: {**body, "number": str(body["number"])})
        gh.corrupt("GET", r"/labels$", lambda body: [{k: v for k, v in lab.items() if k != "color"} for lab in body])
        gh.corrupt("GET", "^/user$", lambda body: {**body, "created_at": "last tuesday"})
        assert call(gh, "GET", f"{R}/issues/{n}").json["number"] == str(n)  # sent as corrupted
        call(gh, "GET", f"{R}/labels")
        call(gh, "GET", "/user")
        call(gh, "GET", f"{R}/issues/{n}")  # a corruption fires once
        call(gh, "GET", f"{R}/issues?label=bug")  # not a parameter of this operation
        call(gh, "POST", f"{R}/issues", {"tilte": "typo"})  # title is required
        call(gh, "GET", f"{R}/issue/{n}")  # no such path
        assert len(gh.violations) == 6, "\n".join(gh.violations)
    text = str(info.value)
    assert "6 OpenAPI violation(s)" in text
    assert (
        "response: GET /repos/acme/widgets/issues/1 -> 200 response body at /number: '1' is not of type 'integer'"
        in text
    )
    assert "at /0: 'color' is a required property" in text
    assert (
        "at /created_at: 'last tuesday' is not a 'date-time' (no oneOf alternative matched; closest: private-user)"
        in text
    )
    assert "query parameter 'label' is not defined for issues/list-for-repo" in text
    assert "request body at /: 'title' is a required property" in text
    assert "GET /repos/acme/widgets/issue/1: no such path in GitHub's REST API" in text


def test_a_missing_description_fails_with_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_GITHUB_OPENAPI", str(tmp_path / "absent.json"))
    with pytest.raises(SpecMissing, match=r"Run `bash \.ci/run`"):
        GitHubEmulator(tmp_path)


def test_validation_is_fast(gh: GitHubEmulator) -> None:
    spec = load_spec()
    assert spec.load_seconds < 10
    for i in range(100):
        gh.create_issue(OWNER, REPO, f"issue {i}", labels=["agent:auto", "bug"])
    before_n, before_s = gh.validations, gh.validation_seconds
    t0 = time.perf_counter()
    for _ in range(3):
        assert len(call(gh, "GET", f"{R}/issues?per_page=100").json) == 100
    per_page = (gh.validation_seconds - before_s) / 3
    print(
        f"spec load {spec.load_seconds:.2f}s; validating a request+response of 100 issues: {per_page * 1000:.1f} ms; "
        f"whole round trip {(time.perf_counter() - t0) / 3 * 1000:.1f} ms"
    )
    assert gh.validations - before_n == 6
    assert per_page < 1.0


def test_the_activity_feed_shows_what_happened_newest_first_and_answers_304_when_nothing_did(
    gh: GitHubEmulator, tmp_path: Path
) -> None:
    """GET /repos/{o}/{r}/events: issues opened, labelled, commented, edited and closed; a pull request opened, and
    a review with an inline comment; each payload checked against its kind's schema (a violation fails the test at
    teardown); X-Poll-Interval on 200 and 304; a lagging feed shows an event only once its lag has passed."""
    n = gh.create_issue(OWNER, REPO, "watched", labels=["agent:auto"], user="alice")
    call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "a comment"})
    call(gh, "PATCH", f"{R}/issues/{n}", {"body": "edited", "state": "closed"})
    first = call(gh, "GET", f"{R}/events?per_page=100")
    assert first.status == 200 and first.headers["x-poll-interval"] == "60"
    kinds = [(e["type"], e["payload"].get("action")) for e in first.json]
    assert kinds == [
        ("IssuesEvent", "closed"),
        ("IssuesEvent", "edited"),
        ("IssueCommentEvent", "created"),
        ("IssuesEvent", "labeled"),
        ("IssuesEvent", "opened"),
    ]
    assert first.json[3]["payload"]["label"]["name"] == "agent:auto" and first.json[3]["actor"]["login"] == "alice"
    assert [int(e["id"]) for e in first.json] == sorted((int(e["id"]) for e in first.json), reverse=True)
    quiet = call(gh, "GET", f"{R}/events?per_page=100", headers={"If-None-Match": first.headers["etag"]})
    assert quiet.status == 304 and quiet.headers["x-poll-interval"] == "60"

    clone = tmp_path / "feed-clone"
    git(tmp_path, "clone", "-q", gh.git_url(OWNER, REPO, token="tok-alice"), str(clone))
    git(clone, "checkout", "-q", "-b", "orch/feed")
    (clone / "app.py").write_text("print('fed')\n")
    git(clone, "commit", "-qam", "feed")
    git(clone, "push", "-q", "origin", "orch/feed")
    pr = call(gh, "POST", f"{R}/pulls", {"title": "t", "head": "orch/feed", "base": "main", "draft": True}).json
    gh.submit_review(OWNER, REPO, pr["number"], "carol", "REQUEST_CHANGES", "please", [("app.py", 1, "this line")])
    moved = call(gh, "GET", f"{R}/events?per_page=100", headers={"If-None-Match": first.headers["etag"]})
    assert moved.status == 200
    top = [(e["type"], e["payload"]["pull_request"]["number"]) for e in moved.json[:3]]
    assert top == [
        ("PullRequestReviewCommentEvent", pr["number"]),
        ("PullRequestReviewEvent", pr["number"]),
        ("PullRequestEvent", pr["number"]),
    ]
    assert moved.json[1]["payload"]["review"]["state"] == "CHANGES_REQUESTED"

    gh.feed_lag = 0.6  # GitHub: an event can take from 30 s to 6 h to show
    call(gh, "POST", f"{R}/issues/{n}/comments", {"body": "late"})
    assert call(gh, "GET", f"{R}/events?per_page=100", headers={"If-None-Match": moved.headers["etag"]}).status == 304
    time.sleep(0.7)
    late = call(gh, "GET", f"{R}/events?per_page=100", headers={"If-None-Match": moved.headers["etag"]})
    assert late.status == 200 and late.json[0]["payload"]["comment"]["body"] == "late"
