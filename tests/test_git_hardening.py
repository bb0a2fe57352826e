"""Git stays the runner's: no hook, filter, driver, helper or config orch did not choose runs in orch's own git, and
the agent's private git directory records what the agent did to it. Real git in temp folders, never mocked."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from statemachine.adapters.agent_git import PUSH_LOG, inspect_private_gitdir, make_private_gitdir
from statemachine.adapters.git import CliGit, run_git
from statemachine.adapters.gitrun import git_env
from tests.conftest import GIT_IDENT, git

HOOKS = (
    "post-checkout",
    "pre-commit",
    "post-commit",
    "reference-transaction",
    "post-index-change",
    "pre-push",
    "pre-auto-gc",
    "post-merge",
    "post-rewrite",
)


class Markers:
    """Scripts that leave a marker file named after themselves when anything runs them."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "markers"
        self.bin = root / "bin"
        self.dir.mkdir(parents=True)
        self.bin.mkdir(parents=True)

    def script(self, name: str, then: str = "exit 0") -> Path:
        path = self.bin / name.replace("/", "_")
        path.write_text(f"#!/bin/sh\ntouch '{self.dir / name.replace('/', '_')}'\n{then}\n")
        path.chmod(0o755)
        return path

    def hooks_dir(self, prefix: str) -> Path:
        d = self.bin.parent / f"{prefix}-hooks"
        d.mkdir()
        for hook in HOOKS:
            (d / hook).write_text(self.script(f"{prefix}-{hook}").read_text())
            (d / hook).chmod(0o755)
        return d

    def fired(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir())


@pytest.fixture
def hostile(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Markers, Path]:
    """``repo`` booby-trapped everywhere git reads from: its hooks, its .git/config (and a file that includes),
    committed .gitattributes naming filter, diff and merge drivers, a global and an XDG config, a system config.
    Returns (repo, markers, a local bare remote named 'bare' in the config)."""
    m = Markers(tmp_path / "trap")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    for hook in HOOKS:
        (repo / ".git" / "hooks" / hook).write_text(m.script(f"repo-{hook}").read_text())
        (repo / ".git" / "hooks" / hook).chmod(0o755)
    bare, decoy = tmp_path / "remote.git", tmp_path / "decoy.git"
    for path in (bare, decoy):
        subprocess.run(
            ["git", "init", "-q", "--bare", str(path)], check=True, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
        )
    included = tmp_path / "trap" / "included.cfg"
    included.write_text(
        f'[filter "evil"]\n\tprocess = {m.script("include-filter-process")}\n'
        f'[credential "http://127.0.0.1"]\n\thelper = {m.script("include-credential")}\n'
    )
    with (repo / ".git" / "config").open("a") as fh:
        fh.write(f"""[core]
\tfsmonitor = {m.script("fsmonitor", "exit 1")}
\tsshCommand = {m.script("ssh-command", "exit 1")}
\tpager = {m.script("pager", "exec cat")}
\taskPass = {m.script("core-askpass")}
[filter "evil"]
\tclean = {m.script("filter-clean", "exec cat")}
\tsmudge = {m.script("filter-smudge", "exec cat")}
\trequired = true
[diff "evil"]
\tcommand = {m.script("diff-command")}
\ttextconv = {m.script("diff-textconv", 'exec cat "$1"')}
[diff]
\texternal = {m.script("diff-external")}
[merge "evil"]
\tdriver = {m.script("merge-driver")}
[credential]
\thelper = {m.script("credential-helper")}
[commit]
\tgpgSign = true
[log]
\tshowSignature = true
[gpg]
\tprogram = {m.script("gpg", "exit 1")}
[remote "bare"]
\turl = {bare}
\treceivepack = {m.script("receivepack", 'exec git-receive-pack "$@"')}
[include]
\tpath = {included}
""")
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    global_hooks = m.hooks_dir("global")
    (home / ".gitconfig").write_text(f"""[core]
\thooksPath = {global_hooks}
\tfsmonitor = {m.script("global-fsmonitor", "exit 1")}
[alias]
\torchprobe = !touch {m.dir / "global-alias"}
[url "{decoy}"]
\tinsteadOf = {bare}
\tpushInsteadOf = {bare}
[user]
\tname = global-user
""")
    (home / ".config" / "git" / "config").write_text(f"[core]\n\thooksPath = {m.hooks_dir('xdg')}\n")
    (home / ".config" / "git" / "attributes").write_text("* filter=xdg\n")
    system = tmp_path / "system.gitconfig"
    system.write_text(
        f'[core]\n\thooksPath = {m.hooks_dir("system")}\n[filter "xdg"]\n'
        f'\tclean = {m.script("system-filter", "exec cat")}\n[url "{decoy}"]\n\tpushInsteadOf = {bare}\n'
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(system))
    monkeypatch.delenv("GIT_CONFIG_NOSYSTEM", raising=False)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "not-a-repository"))  # orch's own environment never reaches its git
    return repo, m, bare


def plain_git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENT, "GIT_DIR": str(cwd / ".git")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def test_the_traps_fire_for_plain_git(hostile: tuple[Path, Markers, Path]) -> None:
    """Control: the same setup does run programs when git is run the ordinary way (so the next test can fail)."""
    repo, m, _ = hostile
    (repo / "app.py").write_text("changed\n")
    plain_git(repo, "status")
    plain_git(repo, "add", "app.py")
    plain_git(repo, "update-ref", "refs/heads/probe", "HEAD")
    plain_git(repo, "push", "bare", "HEAD:refs/heads/probe")
    fired = m.fired()
    assert {
        "include-filter-process",
        "fsmonitor",
        "global-reference-transaction",
        "global-pre-push",
        "receivepack",
    } <= set(fired), fired


def test_no_cligit_operation_runs_anything_the_repository_or_the_home_configures(
    hostile: tuple[Path, Markers, Path], tmp_path: Path
) -> None:
    repo, m, bare = hostile
    g = CliGit(repo)
    base = g.head_sha()
    wt = tmp_path / "wts" / "issue-1"
    g.ensure_worktree(wt, "orch/issue-1", base)
    (wt / "app.py").write_text("def add(a, b):\n    return b + a\n")
    (wt / "new.txt").write_text("new\n")
    cap = g.capture(wt, base)
    assert {c.path for c in cap.changes} == {"app.py", "new.txt"}
    sha = g.commit_tree(cap.tree, base, "orch: the change")
    assert run_git(["cat-file", "-p", sha], repo).count("gpgsig") == 0
    g.set_branch("orch/issue-1", sha)
    assert "return b + a" in g.diff(base, sha) and "return b + a" in g.diff_text(base, cap.tree)
    g.fingerprint(wt)
    run_git(["reset", "--quiet", "--mixed"], wt)
    run_git(["show", "-s", "--format=%ct", sha], repo)
    check = tmp_path / "wts" / "check"
    g.add_detached_worktree(check, sha)
    run_git(["checkout", base, "--", "app.py"], check)
    g.remove_worktree(check)
    # a parent branch whose own edit to app.py conflicts: the merge driver would resolve it, so it must not run
    g.set_branch("parent", g.commit_tree(run_git(["write-tree"], repo).strip(), base, "parent"))
    merged, conflicts = g.merge_into("parent", sha, "merge")
    assert merged is not None and conflicts == []  # parent's tree equals base's: a clean merge
    parent2 = g.commit_tree(_tree_with(repo, base, "app.py", "def add(a, b):\n    return a - b\n"), base, "p2")
    g.set_branch("parent", parent2)
    assert g.merge_into("parent", sha, "merge") == (None, ["app.py"])
    assert g.is_ancestor(base, sha)
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("proof\n")
    orphan = g.orphan_commit({"proof/evidence.txt": evidence}, "evidence")
    assert run_git(["show", f"{orphan}:proof/evidence.txt"], repo) == "proof\n"
    g.push("bare", sha, "orch/issue-1", ("x-access-token", "not-a-token"))
    g.push(str(bare), sha, "orch/by-path", ("x-access-token", "not-a-token"))
    g.remove_worktree(wt)
    assert m.fired() == []
    heads = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"],
        cwd=bare,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1"},
    ).stdout.split()
    assert heads == ["refs/heads/orch/by-path", "refs/heads/orch/issue-1"]  # not the decoy the global config names


def _tree_with(repo: Path, base: str, path: str, text: str) -> str:
    """``base``'s tree with ``path`` holding ``text`` (through the hardened runner: the environment is hostile)."""
    source = repo.parent / "blob.txt"
    source.write_text(text)
    env = {"GIT_INDEX_FILE": str(repo.parent / "tree-index")}
    blob = run_git(["hash-object", "-w", "--no-filters", "--", str(source)], repo).strip()
    run_git(["read-tree", base], repo, env)
    run_git(["update-index", "--cacheinfo", f"100644,{blob},{path}"], repo, env)
    return run_git(["write-tree"], repo, env).strip()


def test_global_and_system_config_have_no_effect(hostile: tuple[Path, Markers, Path]) -> None:
    repo, m, _ = hostile
    seen = run_git(["config", "--list", "--show-scope"], repo)
    assert {line.split("\t")[0] for line in seen.splitlines()} == {"local", "command"}, seen
    assert "orchprobe" not in seen and "global-user" not in seen and "insteadof" not in seen
    assert run_git(["config", "--get", "core.hookspath"], repo).strip() == "/dev/null"
    assert run_git(["orchprobe"], repo, check=False) == "" and m.fired() == []


def test_the_environment_is_built_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_TOKEN", "secret")
    monkeypatch.setenv("GIT_SSH_COMMAND", "touch /tmp/never")
    monkeypatch.setenv("GIT_ASKPASS", "/bin/false")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    env = git_env({"GIT_INDEX_FILE": "/tmp/i", "GIT_CONFIG_GLOBAL": "/home/me/.gitconfig"})
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "GIT_INDEX_FILE",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_ATTR_NOSYSTEM",
        "GIT_TERMINAL_PROMPT",
        "GIT_PROXY_COMMAND",
        "GIT_NO_REPLACE_OBJECTS",
    }
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_INDEX_FILE"] == "/tmp/i"
    push = git_env(network=True)
    assert push["SSH_AUTH_SOCK"] == "/tmp/agent.sock" and "GIT_ASKPASS" not in push and "GIT_SSH_COMMAND" not in push


def test_push_uses_the_runners_askpass_and_no_configured_credential_helper(tmp_path: Path, repo: Path) -> None:
    from tests.github_emulator import GitHubEmulator

    m = Markers(tmp_path / "trap")
    with GitHubEmulator(tmp_path / "github") as gh:
        gh.add_user("alice", token="tok-alice")
        gh.add_repo("acme", "widgets", default_branch="main", source=repo)
        gh.set_permission("acme", "widgets", "alice", "write")
        url = gh.git_url("acme", "widgets")
        with (repo / ".git" / "config").open("a") as fh:
            fh.write(
                f'[remote "origin"]\n\turl = {url}\n[credential]\n\thelper = {m.script("helper")}\n'
                f'[credential "{url}"]\n\thelper = {m.script("url-helper")}\n'
                f'[credential "{gh.api_url}"]\n\thelper = {m.script("host-helper")}\n'
            )
        # control: the ordinary git push asks those helpers
        assert plain_git(repo, "push", "origin", "HEAD:refs/heads/control").returncode != 0
        assert m.fired()
        for p in m.dir.iterdir():
            p.unlink()
        g = CliGit(repo)
        sha = g.head_sha()
        g.push("origin", sha, "orch/issue-7", ("x-access-token", "tok-alice"))
        assert m.fired() == []
        assert (
            subprocess.run(
                ["git", "rev-parse", "refs/heads/orch/issue-7"],
                cwd=gh.bare_path("acme", "widgets"),
                capture_output=True,
                text=True,
            ).stdout.strip()
            == sha
        )
        assert ("POST", "/acme/widgets.git/git-receive-pack", 200, "alice") in gh.git_requests


# the agent's own git directory ------------------------------------------------------------------------------


@pytest.fixture
def workspace(repo: Path, tmp_path: Path) -> tuple[CliGit, Path, str, Path]:
    g = CliGit(repo)
    base = g.head_sha()
    wt = tmp_path / "wts" / "issue-1"
    g.ensure_worktree(wt, "orch/issue-1", base)
    dest = make_private_gitdir(wt, tmp_path / "evidence" / "git", base, "orch/issue-1", repo / ".git" / "objects")
    return g, wt, base, dest


def agent_git(wt: Path, dest: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """git as the agent runs it: its own HOME, the private directory as GIT_DIR, its worktree as GIT_WORK_TREE."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(dest.parent / "agent-home"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_DIR": str(dest),
        "GIT_WORK_TREE": str(wt),
        "GIT_TERMINAL_PROMPT": "0",
        **GIT_IDENT,
    }
    proc = subprocess.run(["git", *args], cwd=wt, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_private_gitdir_looks_like_the_worktree(workspace: tuple[CliGit, Path, str, Path]) -> None:
    g, wt, base, dest = workspace
    assert agent_git(wt, dest, "status", "--porcelain").stdout == ""
    assert agent_git(wt, dest, "rev-parse", "HEAD").stdout.strip() == base
    assert agent_git(wt, dest, "symbolic-ref", "HEAD").stdout.strip() == "refs/heads/orch/issue-1"
    assert agent_git(wt, dest, "log", "--oneline").stdout.strip()  # history through the alternates
    assert sorted(p.name for p in (dest / "hooks").iterdir()) == ["pre-push"]
    assert agent_git(wt, dest, "remote").stdout == ""
    assert inspect_private_gitdir(dest, base, "orch/issue-1") == []
    (wt / "app.py").write_text("edited\n")
    assert agent_git(wt, dest, "status", "--porcelain").stdout == " M app.py\n"
    assert inspect_private_gitdir(dest, base, "orch/issue-1") == []  # editing files is the agent's job
    assert g.capture(wt, base).by_kind["unstaged"] == ["app.py"]  # the runner's view is unchanged


def test_private_gitdir_detached_for_checks(repo: Path, tmp_path: Path) -> None:
    g = CliGit(repo)
    base = g.head_sha()
    wt = tmp_path / "check"
    g.add_detached_worktree(wt, base)
    dest = make_private_gitdir(wt, tmp_path / "scratch" / "git", base, None, repo / ".git" / "objects")
    assert agent_git(wt, dest, "status", "--porcelain").stdout == ""
    assert agent_git(wt, dest, "rev-parse", "HEAD").stdout.strip() == base
    assert inspect_private_gitdir(dest, base, None) == []


def test_inspection_names_what_the_agent_did(workspace: tuple[CliGit, Path, str, Path], tmp_path: Path) -> None:
    g, wt, base, dest = workspace
    bare = tmp_path / "exfil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    (wt / "app.py").write_text("one\n")
    agent_git(wt, dest, "commit", "-q", "-am", "one")
    (wt / "app.py").write_text("two\n")
    agent_git(wt, dest, "commit", "-q", "-am", "two")
    agent_git(wt, dest, "remote", "add", "exfil", str(bare))
    assert agent_git(wt, dest, "push", "exfil", "HEAD:refs/heads/stolen", check=False).returncode != 0
    assert agent_git(wt, dest, "push", "--no-verify", str(bare), "HEAD", check=False).returncode != 0
    assert agent_git(wt, dest, "push", "https://127.0.0.1:9/x.git", "HEAD", check=False).returncode != 0
    agent_git(wt, dest, "config", "credential.helper", "store")
    (dest / "hooks" / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    findings = inspect_private_gitdir(dest, base, "orch/issue-1")
    assert (
        findings
        == [
            f"the agent tried to push (git push {bare}), 2 times",  # by the remote's name, then by its path
            "the agent tried to push (git push https://127.0.0.1:9/x.git)",
            f"added remote 'exfil' ({bare})",
            "changed config: credential.helper",
            "planted hook(s): pre-commit",
            "made 2 commit(s) (the runner commits, not the agent)",
            f"moved HEAD from {base[:12]} to {agent_git(wt, dest, 'rev-parse', 'HEAD').stdout.strip()[:12]}",
        ]
    ), findings
    assert subprocess.run(["git", "for-each-ref"], cwd=bare, capture_output=True, text=True).stdout == ""  # refused
    assert (dest / PUSH_LOG).read_text().count("\n") == 3
    assert g.head_sha() == base and g.branch_head("orch/issue-1") == base  # the real repository is untouched


def test_a_push_past_the_rewrite_meets_the_pre_push_hook(
    workspace: tuple[CliGit, Path, str, Path], tmp_path: Path
) -> None:
    _, wt, base, dest = workspace
    bare = tmp_path / "reachable.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    agent_git(wt, dest, "config", "--unset", "url.ssh://orch-push-refused.invalid/.pushInsteadOf")
    assert agent_git(wt, dest, "push", str(bare), "HEAD:refs/heads/out", check=False).returncode != 0
    findings = inspect_private_gitdir(dest, base, "orch/issue-1")
    assert findings == [
        f"the agent tried to push (git push {bare} HEAD:refs/heads/out)",
        "changed config: url.ssh://orch-push-refused.invalid/.pushinsteadof",
    ], findings
    assert subprocess.run(["git", "for-each-ref"], cwd=bare, capture_output=True, text=True).stdout == ""


def test_inspection_runs_nothing_the_agent_configured(
    workspace: tuple[CliGit, Path, str, Path], tmp_path: Path
) -> None:
    _, wt, base, dest = workspace
    m = Markers(tmp_path / "trap")
    for key, value in (
        ("core.fsmonitor", m.script("fsmonitor", "exit 1")),
        ("core.pager", m.script("pager")),
        ("diff.external", m.script("diff")),
        ("core.alternateRefsCommand", m.script("alt")),
    ):
        agent_git(wt, dest, "config", key, str(value))
    for hook in HOOKS:
        (dest / "hooks" / hook).write_text(m.script(f"hook-{hook}").read_text())
        (dest / "hooks" / hook).chmod(0o755)
    findings = inspect_private_gitdir(dest, base, "orch/issue-1")
    assert m.fired() == []
    assert "changed config: core.alternaterefscommand, core.fsmonitor, core.pager, diff.external" in findings
    assert "changed the push record: hooks/pre-push" in findings


def test_making_the_private_gitdir_is_fast(repo: Path, tmp_path: Path) -> None:
    """5,000 files: a file copy, no git process (measured at 12 to 16 ms on a busy two-core machine)."""
    stream = ["commit refs/heads/main", "committer t <t@localhost> 0 +0000", "data 10", "5000 files", "from main^0"]
    for i in range(5000):
        stream += [f"M 100644 inline pkg{i % 50}/m{i}.py", f"data {len(str(i)) + 4}", f"x = {i}"]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input="\n".join(stream) + "\n", text=True, check=True)
    g = CliGit(repo)
    base = g.head_sha("main")
    wt = tmp_path / "wt"
    g.ensure_worktree(wt, "orch/issue-2", base)
    start = time.perf_counter()
    dest = make_private_gitdir(wt, tmp_path / "git", base, "orch/issue-2", repo / ".git" / "objects")
    elapsed = time.perf_counter() - start
    assert agent_git(wt, dest, "status", "--porcelain").stdout == ""
    assert elapsed < 0.1, f"{elapsed * 1000:.0f} ms"


def test_an_ssh_fetch_is_named_as_such_and_a_missing_index_is_rebuilt(repo: Path, tmp_path: Path) -> None:
    g = CliGit(repo)
    base = g.head_sha()
    files = tmp_path / "files"  # a workspace with no git of its own: the index comes from the base commit
    files.mkdir()
    for name in ("app.py", "test_app.py"):
        (files / name).write_bytes((repo / name).read_bytes())
    dest = make_private_gitdir(files, tmp_path / "git", base, "orch/issue-3", repo / ".git" / "objects")
    assert agent_git(files, dest, "status", "--porcelain").stdout == ""
    assert agent_git(files, dest, "fetch", "ssh://example.invalid/x.git", check=False).returncode != 0
    assert inspect_private_gitdir(dest, base, "orch/issue-3") == [
        "the agent tried to fetch over ssh (git fetch example.invalid:/x.git)"
    ]


def test_a_commit_the_agent_reset_away_is_still_counted(workspace: tuple[CliGit, Path, str, Path]) -> None:
    """Every ref back where the runner left it does not hide a commit: its reflog still names it, so the inspection
    asks git to count (a private git directory with no reflog and every ref in place is not asked: nothing can be
    reachable beyond the base there)."""
    _g, wt, base, dest = workspace
    assert inspect_private_gitdir(dest, base, "orch/issue-1") == []
    (wt / "app.py").write_text("one\n")
    agent_git(wt, dest, "commit", "-q", "-am", "one")
    agent_git(wt, dest, "reset", "-q", "--hard", base)
    assert agent_git(wt, dest, "rev-parse", "HEAD").stdout.strip() == base
    assert inspect_private_gitdir(dest, base, "orch/issue-1") == [
        "made 1 commit(s) (the runner commits, not the agent)"
    ]
