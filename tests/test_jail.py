"""The agent jail with real bubblewrap, real processes and real git: each class of escape a hostile agent tried
before the jail existed is impossible now, or ends blocked with a reason that names it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from statemachine.adapters.jail import Jail, Settings, Spec, lock_free, probe, workspace_lock
from statemachine.adapters.jail_files import ensure_gone
from tests.agentkit import alive, comments_of_kind, db_dump
from tests.conftest import git

ESCAPE = Path(__file__).parent / "agents" / "escape.py"
SECRET = "zq9-escape-" + "k3y" * 8  # a token whose format no pattern knows

pytestmark = pytest.mark.skipif(not probe().ok, reason=f"bubblewrap cannot run here: {probe().reason}")


def fake_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    (home / ".config" / "gh").mkdir(parents=True)
    (home / ".config" / "gh" / "hosts.yml").write_text(f"github.com:\n    oauth_token: {SECRET}\n")
    return home


class Listener:
    """A TCP server on orch's loopback that counts the connections it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def escape_policy(repo: Path, home: Path, remote: Path, state: Path, port: int) -> None:
    (repo / ".orch").mkdir(exist_ok=True)
    args = [str(ESCAPE), str(home), str(repo), str(remote), str(state), str(port)]
    (repo / ".orch" / "policy.yaml").write_text(
        "version: 1\nextends: default\ntracker: {kind: local}\n"
        f"agent: {json.dumps({'kind': 'command', 'command': sys.executable, 'args': args, 'timeout_seconds': 60, 'idle_timeout_seconds': 30})}\n"
        f"sandbox: {json.dumps({'writable': [str(state)]})}\n"
        f"checks: {json.dumps({'unit': {'command': f'{sys.executable} -m unittest -q'}})}\n"
    )


def test_a_hostile_agent_escapes_nothing_and_is_blocked_for_its_push(
    cli: Any,
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = fake_home(tmp_path)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    state = tmp_path / "state"
    state.mkdir()
    listener = Listener()
    escape_policy(repo, home, remote, state, listener.port)
    readme_before = (repo / "app.py").read_text()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ORCH_ESCAPE_SECRET", SECRET)
    monkeypatch.setenv("GH_TOKEN", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET + "-openai")

    assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
    code, data = cli.json("run", "--issue", "1", "--repo", repo)
    run_dir = next((repo / ".orch" / "runs").iterdir())
    found = json.loads((run_dir / "attempt-1" / "escape.json").read_text())

    # git works in the workspace (its own git directory, the repository's objects read-only)
    assert found["git_status"] == " M app.py\n", found
    # what the agent could read: none of orch's processes, no file of the real home, not the state database
    assert found["proc_environ"] == [], found
    assert str(found["ssh_key"]).startswith("failed"), found
    assert str(found["gh_hosts"]).startswith("failed"), found
    assert str(found["state_db"]).startswith("failed"), found
    # what it could write: only its workspace; the repository's hooks, .orch and checkout are out of reach
    for key in ("hook", "orch_dir", "checkout"):
        assert str(found[key]).startswith("failed"), (key, found)
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()
    assert not (repo / ".orch" / "evil.txt").exists()
    assert (repo / "app.py").read_text() == readme_before
    assert not (repo / "README.md").exists()
    # the symlink it planted where the runner writes next was removed before the runner wrote there
    assert found["plant"] == "planted"
    assert not (repo / ".git" / "hooks" / "post-commit").exists()
    patch = run_dir / "attempt-1" / "diff.patch"
    assert patch.is_file() and not patch.is_symlink() and "def sub" in patch.read_text()
    assert "orch removed a symlink" in (run_dir / "attempt-1" / "diff.patch.orch-removed").read_text()
    # no network: the loopback server outside saw nothing; the push failed and the remote has no new branch
    assert str(found["connect"]).startswith("failed"), found
    assert listener.accepted == 0
    assert found["push"] != 0
    assert git(remote, "branch", "--list") == ""
    # an environment from an allowlist: no token, no key, no secret-looking name at all
    names = set(found["env"])
    assert not names & {"GH_TOKEN", "OPENAI_API_KEY", "ORCH_ESCAPE_SECRET"}, names
    assert found["uid"] != 0 and found["pid1"] != str(Path(sys.executable))
    # nothing outlives the run: the heartbeat the agent left in the background stops
    beat = state / "heartbeat"
    size = beat.stat().st_size if beat.exists() else 0
    time.sleep(0.6)
    assert (beat.stat().st_size if beat.exists() else 0) == size
    # the run ends blocked, the push attempt named, nothing published
    assert code == 5, data
    blocked = comments_of_kind(repo, 1, "report-blocked")
    assert len(blocked) == 1 and "the agent tried to push" in blocked[0], blocked
    assert SECRET not in "\n".join(db_dump(repo))
    assert all(SECRET not in body for body in comments_of_kind(repo, 1, ""))


def test_the_environment_is_an_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_HARMLESS_SETTING", "on")
    monkeypatch.setenv("PASSED_BY_NAME", "yes")
    monkeypatch.setenv("MY_SERVICE_PASSWORD", SECRET)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    ws = tmp_path / "ws"
    ws.mkdir()
    jail = Jail(Settings(env=("PASSED_BY_NAME",)), tmp_path / "repo")
    out = jail.run(
        [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
        Spec(workdir=ws),
        {"EXPLICIT": "1"},
        tmp_path / "env.log",
        30,
    )
    assert out.result.exit_code == 0, (tmp_path / "env.log").read_text()
    env = json.loads((tmp_path / "env.log").read_text())
    assert env["PASSED_BY_NAME"] == "yes" and env["EXPLICIT"] == "1" and env["LC_ALL"] == "C.UTF-8"
    assert "SOME_HARMLESS_SETTING" not in env and "MY_SERVICE_PASSWORD" not in env
    assert env["HOME"] == "/home/agent" and env["TMPDIR"] == "/tmp"


def test_the_filesystem_is_read_only_but_the_workspace_home_and_tmp(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    script = (
        f"import os\nfor p in ['/usr/x', '/etc/x', '{outside}', '{ws}/ok', '/tmp/ok', os.environ['HOME'] + '/ok']:\n"
        "    try:\n        open(p, 'w').write('x'); print(p + '|written')\n"
        "    except OSError as e:\n        print(p + '|refused', e.errno)\n"
    )
    out = Jail(Settings(), tmp_path / "repo").run(
        [sys.executable, "-c", script], Spec(workdir=ws), {}, tmp_path / "fs.log", 30
    )
    assert out.result.exit_code == 0
    lines = dict(line.split("|", 1) for line in (tmp_path / "fs.log").read_text().splitlines())
    assert lines["/usr/x"].startswith("refused") and lines["/etc/x"].startswith("refused")
    assert lines[str(outside)].startswith("refused") and outside.read_text() == "keep"
    assert lines[f"{ws}/ok"] == "written" and (ws / "ok").exists()
    assert lines["/tmp/ok"] == "written" and lines["/home/agent/ok"] == "written"


def test_a_program_named_through_dot_dot_or_a_linked_folder_is_found_in_the_jail(tmp_path: Path) -> None:
    """The jail mounts folders by their real paths: a program path through `..` from a folder it does not mount, or
    through a symbolic link to a folder, still runs (a benchmark run as `../.venv/bin/python` once could not)."""
    ws = tmp_path / "ws"
    (tmp_path / "elsewhere").mkdir()
    ws.mkdir()
    bindir = Path(sys.executable).parent
    (tmp_path / "linked").symlink_to(bindir, target_is_directory=True)
    via_dots = f"{tmp_path}/elsewhere/../linked/{Path(sys.executable).name}"
    for program in (via_dots, str(tmp_path / "linked" / Path(sys.executable).name)):
        out = Jail(Settings(), tmp_path / "repo").run(
            [program, "-c", "import sys; print(sys.prefix)"], Spec(workdir=ws), {}, tmp_path / "p.log", 30
        )
        assert out.result.exit_code == 0, (tmp_path / "p.log").read_text()
        assert (tmp_path / "p.log").read_text().strip() == sys.prefix  # the virtual environment's own python


def test_network_reaches_only_the_allowed_hosts(tmp_path: Path) -> None:
    allowed, other = Listener(), Listener()
    ws = tmp_path / "ws"
    ws.mkdir()
    script = (
        "import socket, urllib.request as u, sys\n"
        f"s = socket.create_connection(('127.0.0.1', {allowed.port}), timeout=5); s.close(); print('loopback ok')\n"
        "try:\n    u.urlopen('http://blocked.example/', timeout=5)\nexcept Exception as e:\n    print('proxy', e)\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {other.port}), timeout=2)\nexcept OSError as e:\n    print('other refused')\n"
    )
    out = Jail(Settings(), tmp_path / "repo").run(
        [sys.executable, "-c", script],
        Spec(workdir=ws, hosts=("api.example.com",), loopback=(allowed.port,)),
        {},
        tmp_path / "net.log",
        30,
    )
    log = (tmp_path / "net.log").read_text()
    assert out.result.exit_code == 0, log
    assert "loopback ok" in log and "other refused" in log and "403" in log
    assert out.denied == ["blocked.example:80"]
    time.sleep(0.1)
    assert allowed.accepted == 1 and other.accepted == 0


def test_no_silent_downgrade_without_bubblewrap(
    cli: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.agentkit import GOOD_AGENT, make_agent, write_policy

    agent = make_agent(tmp_path, GOOD_AGENT)
    write_policy(repo, agent)
    monkeypatch.setenv("ORCH_BWRAP", str(tmp_path / "no-bwrap"))
    probe.cache_clear()
    try:
        assert cli("issue", "new", "Add sub", "--label", "agent:auto", "--repo", repo)[0] == 0
        code, out, err = cli("run", "--issue", "1", "--repo", repo)
        assert code == 1 and "the agent jail cannot start" in err and "sandbox: none" in err, err
        assert agent.runs == 0 and comments_of_kind(repo, 1, "claim") == []
        code, out, err = cli("doctor", "--repo", repo)
        assert code == 1 and "FAIL jail" in out, out
        # `sandbox: none` is the explicit opt-out: the run goes ahead, and doctor says what that means
        write_policy(repo, agent, sandbox="none")
        code, out, err = cli("doctor", "--repo", repo)
        assert "ok   jail: sandbox: none" in out, out
        code, data = cli.json("run", "--issue", "1", "--repo", repo)
        assert code == 0 and data["final_state"] == "review"
        assert agent.runs == 1
    finally:
        monkeypatch.delenv("ORCH_BWRAP")
        probe.cache_clear()


HOLDER = """
import sys
from pathlib import Path
from statemachine.adapters.jail import Jail, Settings, Spec
ws, lock, log = map(Path, sys.argv[1:4])
Jail(Settings(), None).run(["/bin/sh", "-c", "echo up; sleep 60"], Spec(workdir=ws, lock=lock), {}, log, 120)
"""


def test_a_resumed_run_proves_the_earlier_agent_gone(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    lock = workspace_lock(tmp_path / ".orch", ws)
    log = tmp_path / "holder.log"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ws), str(lock), str(log)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        deadline = time.monotonic() + 20
        while lock_free(lock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lock_free(lock), "the jail never took its lock"
        bwrap = int(lock.with_suffix(".pid").read_text().split()[0])
        assert alive(bwrap)
        assert ensure_gone(lock) is None  # the earlier jail is stopped, and its lock proves it
        assert lock_free(lock) and not alive(bwrap)
        holder.wait(timeout=20)
    finally:
        holder.kill()


def test_orch_killed_mid_run_takes_its_agent_with_it(repo: Path, tmp_path: Path) -> None:
    from tests.agentkit import make_agent, write_policy

    beat = tmp_path / "slow-state" / "beat"
    agent = make_agent(
        tmp_path,
        f"""
import time
while True:
    with open({str(beat)!r}, "a") as fh:
        fh.write("x")
    time.sleep(0.05)
""",
        name="slow",
    )
    write_policy(repo, agent)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(
        [sys.executable, "-m", "statemachine", "issue", "new", "Slow", "--label", "agent:auto", "--repo", str(repo)],
        check=True,
        env=env,
        capture_output=True,
    )
    orch = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "run", "--issue", "1", "--repo", str(repo)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not beat.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat.exists(), "the agent never started"
    orch.send_signal(signal.SIGKILL)
    orch.wait()
    time.sleep(0.5)
    size = beat.stat().st_size
    time.sleep(0.5)
    assert beat.stat().st_size == size, "the agent outlived orch"
