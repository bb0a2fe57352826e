"""Secrets by value: the runner knows every secret value it holds and lets none of them out, whatever the encoding.

Unit tests of statemachine/secrets.py (SecretSet: finding and redacting each value verbatim and encoded), then real
runs through the CLI with command agents that leak a value no pattern knows.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import secrets as pysecrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from statemachine import secrets
from statemachine.adapters.git import CliGit
from statemachine.inspect_candidate import redact_file, scan_tree_values
from statemachine.secrets import Hit, RedactingTracker, SecretSet
from tests import agentkit
from tests.conftest import Cli, git


def key(prefix: str = "zq9-") -> str:
    """A model key in a format no pattern of inspect_candidate knows, with characters that base64 and percent-encoding change."""
    return prefix + pysecrets.token_urlsafe(30) + "+/=&"


# SecretSet --------------------------------------------------------------------------------


def test_a_verbatim_value_is_found_by_name_never_by_value() -> None:
    value = key()
    found = SecretSet([("ORCH_TEST_MODEL_KEY", value)]).find(f"config = {value!r}\n")
    assert found == [Hit("ORCH_TEST_MODEL_KEY", "verbatim", 10)]
    assert value not in repr(found)
    assert found[0].reason("app.py") == "app.py contains the value of ORCH_TEST_MODEL_KEY (verbatim)"


@pytest.mark.parametrize("align", [0, 1, 2])
@pytest.mark.parametrize(("encode", "label"), [(base64.b64encode, "base64"), (base64.urlsafe_b64encode, "base64url")])
def test_base64_inside_a_longer_blob_is_found_at_every_alignment(
    align: int, encode: Callable[[bytes], bytes], label: str
) -> None:
    value = key()
    for trial in range(6):  # random neighbours: the value's own characters must be enough
        blob = encode(os.urandom(30 + align) + value.encode() + os.urandom(17 + trial)).decode()
        hits = SecretSet([("K", value)]).find(blob)
        assert hits, (align, trial)
        assert hits[0].name == "K" and hits[0].encoding in ("base64", label)
        assert value not in blob  # it really was only there encoded
    # a base64 text with padding, the value alone
    assert SecretSet([("K", value)]).find(base64.b64encode(value.encode()))[0].encoding == "base64"


def test_base64url_is_told_apart_when_it_differs() -> None:
    value = "\xfb\xff" * 8  # base64 of these bytes is full of + and /
    blob = base64.urlsafe_b64encode(b"xy" + value.encode()).decode()
    assert "-" in blob or "_" in blob
    assert [h.encoding for h in SecretSet([("K", value)]).find(blob)] == ["base64url"]


def test_hex_percent_json_and_reversed_forms_are_found() -> None:
    value = key() + '"\\'
    s = SecretSet([("K", value)])
    forms = {
        "hex": "0x" + value.encode().hex() + "00",
        "HEX": value.encode().hex().upper(),
        "percent": "https://h/?k=" + quote(value, safe="") + "&x=1",
        "percent-all": "".join(f"%{b:02X}" for b in value.encode()),
        "json": json.dumps({"k": value}),
        "reversed": "..." + value[::-1] + "...",
    }
    expected = {
        "hex": "hex",
        "HEX": "hex",
        "percent": "percent",
        "percent-all": "percent",
        "json": "json",
        "reversed": "reversed",
    }
    for name, text in forms.items():
        hits = s.find(text)
        assert [h.encoding for h in hits] == [expected[name]], name
        assert s.find(text.encode()) == hits  # bytes and text agree (offsets differ only for non-ASCII text)


def test_redaction_replaces_every_form_with_the_name() -> None:
    value, other = key(), key("pw-")
    s = SecretSet([("ORCH_TEST_MODEL_KEY", value), ("DB_PASSWORD", other)])
    text = f"a {value} b {base64.b64encode(value.encode()).decode()} c {other.encode().hex()}"
    out = s.redact(text)
    assert out == "a [redacted:ORCH_TEST_MODEL_KEY] b [redacted:ORCH_TEST_MODEL_KEY] c [redacted:DB_PASSWORD]"
    assert s.redact(text.encode()) == out.encode()
    assert s.redact_json({"k": [value, {value: 1}], "n": 3}) == {
        "k": ["[redacted:ORCH_TEST_MODEL_KEY]", {"[redacted:ORCH_TEST_MODEL_KEY]": 1}],
        "n": 3,
    }
    assert s.redact("nothing here") == "nothing here"


def test_short_values_are_ignored_and_values_deduplicated() -> None:
    s = SecretSet([("SHORT", "abc1234"), ("A", "abcd1234"), ("B", "abcd1234"), ("EMPTY", "")])
    assert s.names == ("A",)  # 7 characters: ignored; the same value under a second name: once, the first name
    assert s.find("xabc1234x abcd1234") == [Hit("A", "verbatim", 10)]
    assert not SecretSet([("SHORT", "abc1234")]) and SecretSet([]).redact("abc1234") == "abc1234"


def test_a_value_split_across_chunks_is_still_redacted() -> None:
    value = key()
    s = SecretSet([("K", value)])
    data = b"x" * 1000 + value.encode() + b"y" * 999 + base64.b64encode(value.encode())
    for size in (1, 7, 64, 1001, 5000):
        pieces = list(s.redact_chunks(data[i : i + size] for i in range(0, len(data), size)))
        assert b"".join(p for p, _ in pieces) == s.redact(data), size
        assert [(h.encoding, h.offset) for _, hits in pieces for h in hits] == [
            ("verbatim", 1000),
            ("base64", 1000 + len(value) + 999),
        ]


def test_ten_megabytes_are_scanned_in_one_pass() -> None:
    s = SecretSet([(f"K{i}", key()) for i in range(20)])
    data = os.urandom(5 * 1024 * 1024).hex().encode()  # 10 MB of hex digits: the worst case for the hex forms
    started = time.monotonic()
    assert s.find(data) == []
    assert time.monotonic() - started < 20  # about 1 s on one core; generous for a shared machine


# where the values come from ---------------------------------------------------------------


def test_the_run_secrets_come_from_the_tracker_the_model_key_the_policy_and_secret_names() -> None:
    class Tracker:
        kind = "github"

        def secret(self) -> tuple[str, str]:  # GitHubTracker.secret: the token, named after its variable
            return "GH_TOKEN", "ghs_trackertoken123"

    env = {
        "ORCH_TEST_MODEL_KEY": "model-key-123",
        "DATABASE_URL": "postgres://u:p@h/db",
        "MY_API_TOKEN": "tok-123456",
        "HOME": "/home/someone",
        "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
        "AWS_REGION": "eu-central-1",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-1234",
        "GITHUB_TOKEN": "short",
        "ANTHROPIC_API_KEY": "ant-key-12345",
    }
    policy = {"agent": {"kind": "command", "api_key_env": "ORCH_TEST_MODEL_KEY"}, "secrets": {"env": ["DATABASE_URL"]}}
    got = dict(secrets.collect(policy, Tracker(), env))
    assert got == {
        "GH_TOKEN": "ghs_trackertoken123",
        "ORCH_TEST_MODEL_KEY": "model-key-123",
        "DATABASE_URL": "postgres://u:p@h/db",
        "MY_API_TOKEN": "tok-123456",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-1234",
        "GITHUB_TOKEN": "short",
        "ANTHROPIC_API_KEY": "ant-key-12345",
    }  # (SecretSet drops the short ones)
    assert "HOME" not in got and "SSH_AUTH_SOCK" not in got and "AWS_REGION" not in got  # places and settings
    assert secrets.model_key_env({"kind": "claude"}) == "ANTHROPIC_API_KEY"
    assert dict(secrets.collect({"agent": {"kind": "codex"}}, None, {"OPENAI_API_KEY": "sk-model-123"})) == {
        "OPENAI_API_KEY": "sk-model-123"
    }
    assert secrets.for_run(policy, Tracker(), env).names[:2] == ("GH_TOKEN", "ORCH_TEST_MODEL_KEY")


def test_default_model_keys_are_the_adapters_own() -> None:
    from statemachine.adapters import claude, codex, gemini

    own = {
        "codex": codex.DEFAULT_API_KEY_ENV,
        "claude": claude.DEFAULT_API_KEY_ENV,
        "gemini": gemini.DEFAULT_API_KEY_ENV,
    }
    assert {kind: secrets.DEFAULT_MODEL_KEYS.get(kind) for kind in own} == own
    assert secrets.model_key_env({"kind": "codex", "api_key_env": None}) is None
    assert secrets.model_key_env({"kind": "command"}) is None


def test_the_tracker_receives_only_redacted_text(repo: Path) -> None:
    value = key()
    with agentkit.tracker(repo) as local:
        tracker = RedactingTracker(local, lambda: SecretSet([("K", value)]))
        issue = tracker.create_issue(f"leak {value}", f"body {value}", ["x"])
        tracker.update_issue(issue.number, body=f"new {base64.b64encode(value.encode()).decode()}")
        tracker.post_comment(issue.number, f"comment {value.encode().hex()}")
        stored = local.get_issue(issue.number)
        assert stored.title == "leak [redacted:K]" and stored.body == "new [redacted:K]"
        assert [c.body for c in stored.comments] == ["comment [redacted:K]"]
        assert tracker.kind == "local"  # everything else passes through


def test_a_file_is_redacted_in_place_keeping_its_times(tmp_path: Path) -> None:
    value = key()
    log = tmp_path / "check.log"
    log.write_bytes(b"start\n" + (b"." * 2_500_000) + value.encode() + b"\nend\n")  # across the 1 MiB chunks
    os.utime(log, ns=(1_000_000_000, 2_000_000_000))
    hits = redact_file(log, SecretSet([("ORCH_TEST_SECRET_TOKEN", value)]))
    assert [h.encoding for h in hits] == ["verbatim"]
    data = log.read_bytes()
    assert value.encode() not in data and data.endswith(b"[redacted:ORCH_TEST_SECRET_TOKEN]\nend\n")
    assert log.stat().st_mtime_ns == 2_000_000_000
    assert redact_file(log, SecretSet([("ORCH_TEST_SECRET_TOKEN", value)])) == []


def test_binary_files_of_the_tree_are_scanned_as_git_stores_them(repo: Path) -> None:
    value = key()
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "blob.bin").write_bytes(b"\x00\x01PNG" + value.encode().hex().encode() + b"\x00" * 10)
    (repo / "ok.txt").write_text("nothing\n")
    git(repo, "add", "-A")
    tree = git(repo, "write-tree").strip()
    found = scan_tree_values(CliGit(repo), base, tree, SecretSet([("K", value)]))
    assert [f.as_json() for f in found] == [
        {"kind": "secret-value", "where": "blob.bin", "reason": "blob.bin contains the value of K (hex)"}
    ]


# real runs --------------------------------------------------------------------------------


def _start(cli: Cli, repo: Path, agent: agentkit.Agent, **policy: Any) -> dict[str, Any]:
    agentkit.write_policy(repo, agent, **policy)
    code, out, err = cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)
    assert code == 0, err
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    assert "final_state" in data, data
    return dict(data)


def _failed(step: dict[str, Any]) -> dict[str, str]:
    return {
        g["guard"]: g["verdict"]["reason"] + " " + " ".join(g["verdict"]["evidence"])
        for ev in step["evaluations"]
        for g in ev["guards"]
        if not g["verdict"]["ok"]
    }


def _everything_published(cli: Cli, repo: Path) -> str:
    code, issue = cli.json("issue", "show", "1", "--repo", repo)
    assert code == 0
    return json.dumps(issue)


@pytest.mark.parametrize("marked", ["api_key_env", "secrets.env"])
def test_a_model_key_written_base64_encoded_blocks_the_run(
    cli: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marked: str
) -> None:
    value = key()
    monkeypatch.setenv("ORCH_TEST_MODEL_KEY", value)
    blob = base64.b64encode(b"\x89PNG-ish header " + value.encode() + b" trailer").decode()
    agent = agentkit.make_agent(
        tmp_path,
        agentkit.GOOD_AGENT.replace(
            'report(["app.py", "docs/notes.md"]',
            f'write("assets/blob.txt", {blob!r})\nreport(["app.py", "docs/notes.md", "assets/blob.txt"]',
        ),
    )
    policy = (
        {"agent_cfg": {"api_key_env": "ORCH_TEST_MODEL_KEY"}}
        if marked == "api_key_env"
        else {"secrets": {"env": ["ORCH_TEST_MODEL_KEY"]}}
    )
    data = _start(cli, repo, agent, **policy)
    assert data["final_state"] == "blocked", data
    failed = _failed(data["steps"][-1])
    assert "no_secrets" in failed, failed
    assert "assets/blob.txt contains the value of ORCH_TEST_MODEL_KEY (base64)" in failed["no_secrets"]
    with agentkit.tracker(repo) as t:
        assert t.pulls() == []  # nothing published
    published = _everything_published(cli, repo)
    assert "ORCH_TEST_MODEL_KEY (base64)" in published  # the report names the variable...
    for form in (value, blob, base64.b64encode(value.encode()).decode()[:20]):
        assert form not in published  # ...never the value
        assert form not in "\n".join(agentkit.db_dump(repo))
    diff = next((repo / ".orch" / "runs").glob("*/attempt-1/diff.patch")).read_text()
    assert "[redacted:ORCH_TEST_MODEL_KEY]" in diff and blob not in diff


def test_a_secret_printed_by_the_agent_or_hidden_in_a_binary_file_blocks_the_run(
    cli: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = key("db-")
    monkeypatch.setenv("ORCH_TEST_DB_URL", value)
    body = (
        agentkit.GOOD_AGENT
        + f"""
print("debug:", {value[::-1]!r}, flush=True)
(WT / "data.bin").write_bytes(b"\\x00\\x01\\x02" + {value.encode().hex()!r}.encode() + b"\\x00")
report(["app.py", "docs/notes.md", "data.bin"], summary="Added sub() and a note.")
"""
    )
    agent = agentkit.make_agent(tmp_path, body)
    data = _start(cli, repo, agent, secrets={"env": ["ORCH_TEST_DB_URL"]})
    assert data["final_state"] == "blocked", data
    reasons = _failed(data["steps"][-1])["no_secrets"]
    assert "data.bin contains the value of ORCH_TEST_DB_URL (hex)" in reasons
    assert "agent.log contains the value of ORCH_TEST_DB_URL (reversed)" in reasons
    log = next((repo / ".orch" / "runs").glob("*/attempt-1/agent.log")).read_text()
    assert "[redacted:ORCH_TEST_DB_URL]" in log and value[::-1] not in log
    assert value[::-1] not in _everything_published(cli, repo)


def test_a_check_that_prints_a_secret_is_redacted_in_its_log_the_rework_prompt_and_the_state(
    cli: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = key("tok-")
    monkeypatch.setenv("ORCH_TEST_SECRET_TOKEN", value)  # its name looks secret: nothing marks it
    hidden = codecs.encode(value, "rot13")  # the check's code finds the value somewhere and prints it
    command = f"{sys.executable} -c \"import codecs; print('found:', codecs.decode('{hidden}', 'rot13')); raise SystemExit(1)\""
    agent = agentkit.make_agent(tmp_path, agentkit.GOOD_AGENT)
    data = _start(cli, repo, agent, checks={"leak": {"command": command}}, limits={"rework_iterations": 1})
    assert data["final_state"] == "blocked", data
    assert agent.runs == 2, data  # the failed check sent the work back once
    log = next((repo / ".orch" / "runs").glob("*/attempt-1/checks/leak.log")).read_text()
    assert "found: [redacted:ORCH_TEST_SECRET_TOKEN]" in log and value not in log
    prompt = agent.prompt(2)
    assert "[redacted:ORCH_TEST_SECRET_TOKEN]" in prompt and value not in prompt
    assert value not in "\n".join(agentkit.db_dump(repo))
    assert value not in _everything_published(cli, repo)
