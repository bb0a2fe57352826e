"""Recorded real GitHub traffic (@octokit/fixtures) against our OpenAPI validator, ghapi and the emulator.

- Offline, every recorded request and response of every scenario goes through the validator the
  emulator uses: the scenarios orch cares about must validate cleanly (the validator accepts real
  GitHub), and the others fail exactly where GitHub has changed since they were recorded (the
  validator is not merely lenient).
- Live, `@octokit/fixtures-server` (node, installed by .ci/run into .ci/node) serves the recorded
  scenarios `labels`, `add-labels-to-issue`, `paginate-issues` and `errors` on a local port; it
  answers only the exact recorded requests, in order. They are replayed with urllib and with
  ghapi, and every live response is validated again.
- Fidelity: the same requests sent to the emulator get the same statuses and the same shapes
  (key sets, error bodies, Link relations) as GitHub gave.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.github_emulator import GitHubEmulator, OpenAPISpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".ci" / "node" / "node_modules"
SERVER_JS = NODE_MODULES / "@octokit" / "fixtures-server" / "bin" / "server.js"
SCENARIOS = NODE_MODULES / "@octokit" / "fixtures" / "scenarios" / "api.github.com"
TOKEN = "0000000000000000000000000000000000000001"
ORG = "octokit-fixture-org"
OURS = ("labels", "add-labels-to-issue", "paginate-issues", "errors")
INSTALL = "run `bash .ci/run` (it installs @octokit/fixtures-server and @octokit/openapi into .ci/node)"

# Where recordings made years ago no longer match GitHub's current description, per scenario:
# each entry must match at least one error and every error must match an entry.
KNOWN_DRIFT: dict[str, list[str]] = {
    # fields GitHub has added and marks required since
    "get-repository": [r"'has_discussions' is a required property"],
    "rename-repository": [r"'has_discussions' is a required property"],
    "get-organization": [r"'archived_at' is a required property"],
    "search-issues": [r"'search_type' is a required property"],
    "release-assets": [
        r"'digest' is a required property",
        r"content-type 'text/plain' is not one of \['application/octet-stream'\]",
    ],
    "release-assets-conflict": [
        r"'digest' is a required property",
        r"content-type 'text/plain' is not one of \['application/octet-stream'\]",
        r"-> 422: no body is declared, but one was sent",
    ],
    "branch-protection": [r"/restrictions/teams/0: 'type' is a required property"],
    # endpoints GitHub has removed (classic projects) or never described (web archive, trailing slash)
    "project-cards": [r"/projects/columns/.*: no such path in GitHub's REST API"],
    "get-archive": [r"legacy\.tar\.gz.*: no such path in GitHub's REST API"],
    "get-content": [r"/contents/: no such path", r"content-type 'application/vnd\.github\.v3\.raw' is not one of"],
    "git-refs": [
        r"GET .*/git/refs/: method not allowed \(GitHub has POST\)",
        r"/git/refs/heads/test: no such path in GitHub's REST API",
    ],
}


def recorded(name: str) -> list[dict[str, Any]]:
    path = SCENARIOS / name / "normalized-fixture.json"
    if not path.is_file():
        pytest.fail(f"recorded GitHub traffic is missing: {path} does not exist; {INSTALL}")
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data


def as_bytes(value: Any) -> bytes:
    if value in ("", None):
        return b""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def validate_exchange(
    spec: OpenAPISpec,
    method: str,
    url_path: str,
    query: dict[str, list[str]],
    req_headers: dict[str, str],
    req_body: bytes,
    status: int,
    resp_headers: dict[str, str],
    resp_body: bytes,
) -> list[str]:
    op, _, errors = spec.validate_request(
        method, url_path, query, {k.lower(): v for k, v in req_headers.items()}, req_body
    )
    if op is not None:
        errors += spec.validate_response(
            op, status, {k.lower(): v for k, v in resp_headers.items()}, resp_body, path=url_path
        )
    return errors


def recorded_errors(spec: OpenAPISpec, name: str) -> list[str]:
    errors = []
    for fx in recorded(name):
        u = urlsplit(fx["path"])
        headers = {k: str(v) for k, v in fx.get("reqheaders", {}).items()}
        errors += validate_exchange(
            spec,
            fx["method"].upper(),
            u.path,
            parse_qs(u.query, keep_blank_values=True),
            headers,
            as_bytes(fx.get("body")),
            fx["status"],
            fx["headers"],
            as_bytes(fx["response"]),
        )
    return errors


# --- offline: the validator over every recording --------------------------------------------


def test_the_validator_accepts_the_recorded_traffic_orch_relies_on() -> None:
    spec = load_spec()
    for name in OURS:
        fixtures = recorded(name)
        assert fixtures, name
        assert recorded_errors(spec, name) == [], name


def test_every_other_recording_fails_only_where_github_has_changed() -> None:
    spec = load_spec()
    names = sorted(p.name for p in SCENARIOS.iterdir() if (p / "normalized-fixture.json").is_file())
    assert len(names) >= 20 and set(OURS) <= set(names)
    unexplained, unused = [], []
    for name in names:
        errors = recorded_errors(spec, name)
        patterns = KNOWN_DRIFT.get(name, [])
        unexplained += [f"{name}: {e}" for e in errors if not any(re.search(p, e) for p in patterns)]
        unused += [f"{name}: {p}" for p in patterns if not any(re.search(p, e) for e in errors)]
    assert unexplained == [] and unused == []


def test_the_validator_rejects_mutated_recordings() -> None:
    """The same recordings, each broken in one way GitHub never would, must each fail."""
    spec = load_spec()
    issue = recorded("add-labels-to-issue")[0]
    labels = recorded("labels")[0]
    error = recorded("errors")[0]
    page = recorded("paginate-issues")[0]
    cases = [
        ("POST", "/repos/o/r/issues", {**issue["response"], "number": "1"}, 201, "'1' is not of type 'integer'"),
        (
            "POST",
            "/repos/o/r/issues",
            {k: v for k, v in issue["response"].items() if k != "user"},
            201,
            "'user' is a required property",
        ),
        ("POST", "/repos/o/r/issues", {**issue["response"], "state_reason": "bored"}, 201, "'bored' is not one of"),
        ("POST", "/repos/o/r/issues", {**issue["response"], "created_at": "2017-10-10"}, 201, "is not a 'date-time'"),
        ("GET", "/repos/o/r/labels", [{**labels["response"][0], "default": "true"}], 200, "is not of type 'boolean'"),
        ("GET", "/repos/o/r/labels", labels["response"][0], 200, "is not of type 'array'"),
        (
            "POST",
            "/repos/o/r/labels",
            {k: v for k, v in error["response"].items() if k != "documentation_url"},
            422,
            "'documentation_url' is a required property",
        ),
        ("GET", "/repos/o/r/issues", [{**page["response"][0], "user": {"login": "x"}}], 200, "is a required property"),
        ("GET", "/repos/o/r/issues", page["response"], 418, "status 418 is not declared"),
    ]
    for method, path, body, status, expected in cases:
        found = spec.match(method, path)
        assert found is not None
        errors = spec.validate_response(
            found[0], status, {"content-type": "application/json; charset=utf-8"}, json.dumps(body).encode(), path=path
        )
        assert any(expected in e for e in errors), (method, path, expected, errors)


# --- live: @octokit/fixtures-server -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def fixtures_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `node .../fixtures-server/bin/server.js --port P` and return its base URL."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not installed; {INSTALL}")
    if not SERVER_JS.is_file():
        pytest.fail(f"{SERVER_JS} does not exist; {INSTALL}")
    log = tmp_path_factory.mktemp("fixtures-server") / "server.log"
    for _attempt in range(3):
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [node, str(SERVER_JS), f"--port={port}", f"--fixtures-url={base}", "--log-level=warn", "--ttl=120000"],
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=1) as r:
                    if json.load(r) == {"ok": True}:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            proc.kill()
            proc.wait()
            continue
        try:
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    pytest.fail(f"@octokit/fixtures-server did not start: {log.read_text()[-2000:]}")


def load_scenario(server: str, name: str) -> str:
    req = urllib.request.Request(
        f"{server}/fixtures",
        data=json.dumps({"scenario": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
        url: str = json.load(r)["url"]
    assert url.startswith(f"{server}/api.github.com/")
    return url


class Recorder:
    """urllib against a scenario URL; every exchange is validated against the description."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.prefix = urlsplit(base).path  # /api.github.com/<id>
        self.spec = load_spec()
        self.errors: list[str] = []

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        url = path if path.startswith("http") else self.base + path
        headers = {"Accept": "application/vnd.github.v3+json", "Authorization": f"token {TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"  # as recorded (octokit.js)
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, rh, raw = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            status, rh, raw = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
        u = urlsplit(url)
        api_path = u.path.removeprefix(self.prefix)
        self.errors += validate_exchange(
            self.spec, method, api_path, parse_qs(u.query), headers, data or b"", status, rh, raw
        )
        return status, rh, (json.loads(raw) if raw else None)


def link_rels(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(","):
        if part.strip():
            url, rel = part.split(";")
            out[re.search(r'rel="(\w+)"', rel)[1]] = url.strip().strip("<>")  # type: ignore[index]
    return out


def ghapi_client(url: str, repo: str) -> tuple[Any, list[tuple[str, str, dict[str, Any]]]]:
    sent: list[tuple[str, str, dict[str, Any]]] = []
    gh_api: Any = importlib.import_module("ghapi.all").GhApi
    api = gh_api(
        owner=ORG,
        repo=repo,
        token=TOKEN,
        gh_host=url,
        sync=True,
        debug=lambda method, u, kw: sent.append((method, u, kw)),
    )
    return api, sent


JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}  # what the recordings were made with


def check_ghapi_requests(sent: list[tuple[str, str, dict[str, Any]]], base: str) -> None:
    """What ghapi sent must itself be valid against the description."""
    spec = load_spec()
    prefix = urlsplit(base).path
    for method, url, kw in sent:
        u = urlsplit(url)
        query = {k: [str(v)] for k, v in (kw.get("params") or {}).items()}
        query.update(parse_qs(u.query))
        body = json.dumps(kw["json"]).encode() if kw.get("json") is not None else b""
        _, _, errors = spec.validate_request(
            method, u.path[len(prefix) :], query, {"content-type": "application/json"}, body
        )
        assert errors == [], (method, url, errors)


def test_replay_labels(fixtures_server: str) -> None:
    call = Recorder(load_scenario(fixtures_server, "labels"))
    base = f"/repos/{ORG}/labels/labels"
    status, _, labels = call("GET", base)
    assert status == 200 and [lab["name"] for lab in labels][:2] == ["bug", "documentation"] and len(labels) == 9
    status, headers, created = call("POST", base, {"name": "test-label", "color": "663399"})
    assert status == 201 and created["name"] == "test-label" and created["default"] is False
    assert headers["location"] == f"{call.base}{base}/test-label"
    assert call("GET", f"{base}/test-label")[2]["color"] == "663399"
    status, _, updated = call("PATCH", f"{base}/test-label", {"new_name": "test-label-updated", "color": "BADA55"})
    assert status == 200 and (updated["name"], updated["color"]) == ("test-label-updated", "BADA55")
    assert call("DELETE", f"{base}/test-label-updated")[:1] == (204,)
    assert call.errors == []
    # consumed: the server answers only the recorded exchange, once
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(call.base + base, headers={"Accept": "application/vnd.github.v3+json"}), timeout=10
        )
    assert info.value.code == 404


def test_replay_labels_with_ghapi(fixtures_server: str) -> None:
    url = load_scenario(fixtures_server, "labels")
    api, sent = ghapi_client(url, "labels")
    assert [lab.name for lab in api.issues.list_labels_for_repo()][-1] == "wontfix"
    created = api.issues.create_label(name="test-label", color="663399", headers_=JSON_UTF8)
    assert created.name == "test-label" and created.url == f"{url}/repos/{ORG}/labels/labels/test-label"
    assert api.issues.get_label("test-label").color == "663399"
    assert (
        api.issues.update_label("test-label", new_name="test-label-updated", color="BADA55", headers_=JSON_UTF8).color
        == "BADA55"
    )
    api.issues.delete_label("test-label-updated")
    assert [m for m, _, _ in sent] == ["GET", "POST", "GET", "PATCH", "DELETE"]
    check_ghapi_requests(sent, url)


def test_replay_add_labels_to_issue(fixtures_server: str) -> None:
    call = Recorder(load_scenario(fixtures_server, "add-labels-to-issue"))
    status, headers, issue = call(
        "POST", f"/repos/{ORG}/add-labels-to-issue/issues", {"title": "Issue without a label"}
    )
    assert headers["location"] == f"{call.base}/repos/{ORG}/add-labels-to-issue/issues/1"
    assert status == 201 and issue["number"] == 1 and issue["labels"] == [] and issue["body"] is None
    status, _, labels = call(
        "POST", f"/repos/{ORG}/add-labels-to-issue/issues/1/labels", {"labels": ["Foo", "bAr", "baZ"]}
    )
    assert status == 200 and [lab["name"] for lab in labels] == ["Foo", "bAr", "baZ"]
    assert call.errors == []

    url = load_scenario(fixtures_server, "add-labels-to-issue")
    api, sent = ghapi_client(url, "add-labels-to-issue")
    issue = api.issues.create(title="Issue without a label", headers_=JSON_UTF8)
    assert issue.number == 1 and issue.user.login == "octokit-fixture-user-a"
    labels = api.issues.add_labels(1, labels=["Foo", "bAr", "baZ"], headers_=JSON_UTF8)
    assert [lab.name for lab in labels] == ["Foo", "bAr", "baZ"]
    check_ghapi_requests(sent, url)


def test_replay_paginate_issues(fixtures_server: str) -> None:
    call = Recorder(load_scenario(fixtures_server, "paginate-issues"))
    url: str | None = f"/repos/{ORG}/paginate-issues/issues?per_page=3"
    numbers, rels = [], []
    while url:
        status, headers, page = call("GET", url)
        assert status == 200
        numbers += [i["number"] for i in page]
        links = link_rels(headers["link"])
        rels.append(sorted(links))
        url = links.get("next")
    assert numbers == list(range(13, 0, -1))
    assert rels == [["last", "next"]] + [["first", "last", "next", "prev"]] * 3 + [["first", "prev"]]
    assert call.errors == []

    base = load_scenario(fixtures_server, "paginate-issues")
    api, sent = ghapi_client(base, "paginate-issues")
    parse_link_hdr: Any = importlib.import_module("ghapi.all").parse_link_hdr
    got = [i.number for i in api.issues.list_for_repo(per_page=3)]
    assert api.last_page() == 5
    nxt = parse_link_hdr(api.recv_hdrs["link"]).get("next")
    while nxt:  # GitHub's next links name the repository by id: follow them verbatim
        assert "/repositories/1000/issues" in nxt[0]
        got += [i["number"] for i in api(nxt[0])]
        nxt = parse_link_hdr(api.recv_hdrs.get("link", "")).get("next")
    assert got == list(range(13, 0, -1))
    assert len(sent) == 5
    check_ghapi_requests(sent, base)


def test_replay_errors(fixtures_server: str) -> None:
    call = Recorder(load_scenario(fixtures_server, "errors"))
    status, _, body = call("POST", f"/repos/{ORG}/errors/labels", {"name": "foo", "color": "invalid"})
    assert status == 422 and body["message"] == "Validation Failed"
    assert body["errors"] == [{"resource": "Label", "code": "invalid", "field": "color"}]
    assert call.errors == []

    api, _ = ghapi_client(load_scenario(fixtures_server, "errors"), "errors")
    with pytest.raises(Exception) as info:
        api.issues.create_label(name="foo", color="invalid", headers_=JSON_UTF8)
    assert getattr(info.value, "status_code", None) == 422
    assert info.value.raw["errors"][0]["code"] == "invalid"  # type: ignore[attr-defined]


# --- fidelity: the emulator answers like GitHub did ----------------------------------------------


IGNORED_KEYS = frozenset({"user_view_type"})  # added to GitHub's user objects after these recordings


def shape_diff(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Where two JSON values differ in structure: keys, and types of non-null values."""
    if ours is None or theirs is None:
        return []  # nullable: either side may be null
    if isinstance(ours, dict) and isinstance(theirs, dict):
        a, b = set(ours) - IGNORED_KEYS, set(theirs) - IGNORED_KEYS
        out = [f"{where}/{k}: only ours" for k in sorted(a - b)] + [
            f"{where}/{k}: only GitHub's" for k in sorted(b - a)
        ]
        for k in sorted(a & b):
            out += shape_diff(ours[k], theirs[k], f"{where}/{k}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list):
        return shape_diff(ours[0], theirs[0], f"{where}/0") if ours and theirs else []
    return [] if type(ours) is type(theirs) else [f"{where}: {type(ours).__name__} vs {type(theirs).__name__}"]


def test_the_emulator_answers_like_the_recordings(tmp_path: Path) -> None:
    with GitHubEmulator(tmp_path) as gh:
        gh.add_user("octokit-fixture-user-a", token=TOKEN)
        for name in OURS:
            gh.add_repo(ORG, name)
            gh.set_permission(ORG, name, "octokit-fixture-user-a", "admin")
        for i in range(13):
            gh.create_issue(ORG, "paginate-issues", f"Issue {i + 1}", user="octokit-fixture-user-a")
        call = Recorder(gh.api_url)
        for name in ("labels", "add-labels-to-issue", "errors"):
            for fx in recorded(name):
                body = fx.get("body") or None
                status, headers, got = call(fx["method"].upper(), fx["path"], body)
                want = fx["response"] or None
                assert status == fx["status"], (name, fx["path"])
                if isinstance(want, dict) and "errors" in want:
                    assert got["errors"] == want["errors"] and got["message"] == want["message"]
                else:
                    assert shape_diff(got, want) == [], (name, fx["path"])
                if name == "labels" and fx["method"] == "get" and isinstance(want, list):
                    assert [(lab["name"], lab["color"], lab["description"], lab["default"]) for lab in got] == [
                        (lab["name"], lab["color"], lab["description"], lab["default"]) for lab in want
                    ]
                if "location" in fx["headers"]:
                    assert headers["location"].removeprefix(gh.api_url) == fx["headers"]["location"].removeprefix(
                        "https://api.github.com"
                    )
        # pagination: same pages, same relations, /repositories/{id} links like GitHub's
        pages = recorded("paginate-issues")
        url: str | None = pages[0]["path"]
        for fx in pages:
            assert url is not None
            status, headers, got = call("GET", url)
            assert status == 200 and [i["number"] for i in got] == [i["number"] for i in fx["response"]]
            assert shape_diff(got, fx["response"]) == []
            ours, theirs = link_rels(headers["link"]), link_rels(fx["headers"]["link"])
            assert list(ours) == list(theirs)  # same relations, in GitHub's order
            assert {r: urlsplit(u).query for r, u in ours.items()} == {r: urlsplit(u).query for r, u in theirs.items()}
            assert all(
                urlsplit(u).path == f"/repositories/{gh.state.repo(ORG, 'paginate-issues').id}/issues"
                for u in ours.values()
            )
            url = ours.get("next")
        assert url is None
        assert call.errors == [] and gh.violations == []
