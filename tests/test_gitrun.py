"""How orch runs git (statemachine/adapters/gitrun.py, through plumbum): exit codes accepted per call, plumbum's errors
translated into orch's own, an environment that is built (never plumbum's copy of orch's), stdin and binary output.
Real git in temp folders."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from statemachine.adapters.git import CliGit
from statemachine.adapters.gitrun import GitCommandFailed, run_git, run_git_bytes, run_git_result
from statemachine.errors import GitError
from tests.conftest import git


def _not_plumbum(exc: BaseException) -> None:
    from plumbum.commands.processes import ProcessExecutionError, ProcessTimedOut

    assert not isinstance(exc, (ProcessExecutionError, ProcessTimedOut))
    assert exc.__cause__ is None and exc.__suppress_context__


def test_exit_codes_are_accepted_per_call(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    head = git(repo, "rev-parse", "HEAD").strip()
    # 1 means "not an ancestor": refused by default, accepted when the call names it
    with pytest.raises(GitCommandFailed) as caught:
        run_git(["merge-base", "--is-ancestor", head, base], repo)
    assert caught.value.returncode == 1 and isinstance(caught.value, GitError)
    assert caught.value.message == f"git merge-base --is-ancestor {head} failed in {repo}: "
    _not_plumbum(caught.value)
    assert run_git(["merge-base", "--is-ancestor", head, base], repo, retcode=(0, 1)) == ""
    assert run_git_result(["merge-base", "--is-ancestor", head, base], repo).returncode == 1  # any, unless told
    with pytest.raises(GitCommandFailed):  # exactly the codes named: here 0 is not one
        run_git(["merge-base", "--is-ancestor", base, head], repo, retcode=1)
    assert run_git(["rev-parse", "--verify", "--quiet", "refs/heads/none"], repo, check=False) == ""
    with pytest.raises(GitCommandFailed) as caught:
        run_git_result(["rev-parse", "--verify", "nothing-at-all"], repo, retcode=(0, 1))
    assert caught.value.returncode == 128
    assert caught.value.message.startswith(f"git rev-parse --verify nothing-at-all failed in {repo}: fatal:")
    assert caught.value.hint == "check the repository's state with `git status`"


def test_a_failed_config_listing_is_the_commands_own_failure(tmp_path: Path) -> None:
    """A command that lists the config first (to pin named drivers) reports that listing's failure as its own."""
    broken = tmp_path / "broken"
    broken.mkdir()
    git(broken, "init", "-q")
    (broken / ".git" / "config").write_text("[core\n")  # unparsable: git config --list fails
    with pytest.raises(GitCommandFailed) as caught:
        run_git(["status", "--porcelain"], broken)
    assert caught.value.message.startswith(f"git status --porcelain failed in {broken}: fatal: bad config")
    failed = run_git_result(["status", "--porcelain"], broken)
    assert failed.returncode != 0 and "bad config" in failed.stderr


def test_merge_tree_failure_keeps_its_message(repo: Path) -> None:
    git(repo, "branch", "parent")
    unrelated = CliGit(repo).orphan_commit({"other.txt": repo / "app.py"}, "unrelated")  # git exits 128, not 0 or 1
    with pytest.raises(GitError) as caught:
        CliGit(repo).merge_into("parent", unrelated, "merge")
    assert caught.value.message == "git merge-tree failed for parent: fatal: refusing to merge unrelated histories"
    assert caught.value.hint == "git 2.38 or newer is needed"


def test_a_timeout_and_an_unstartable_git_become_orchs_errors(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "config.pipe"
    os.mkfifo(fifo)
    git(repo, "config", "include.path", str(fifo))  # reading the config blocks until someone writes the pipe
    start = time.monotonic()
    with pytest.raises(GitError) as caught:
        run_git(["status"], repo, timeout=0.5)
    assert time.monotonic() - start < 10
    assert caught.value.message == f"git status did not finish within 0.5s in {repo}"
    _not_plumbum(caught.value)

    with pytest.raises(GitError) as caught:
        run_git(["rev-parse", "HEAD"], tmp_path / "no-such-folder")
    assert not isinstance(caught.value, GitCommandFailed)
    assert caught.value.message.startswith(f"git rev-parse HEAD cannot run in {tmp_path / 'no-such-folder'}: ")
    _not_plumbum(caught.value)

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(GitError, match="git is not installed or not on PATH"):
        run_git(["version"], repo)


def test_git_sees_the_built_environment_not_plumbums_copy_of_orchs(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plumbum

    git(repo, "config", "alias.orchenv", "!env")
    monkeypatch.setenv("ORCH_TEST_LEAK", "from-os-environ")
    with plumbum.local.env(GIT_DIR=str(tmp_path / "elsewhere"), ORCH_TEST_LEAK="from-plumbum", GH_TOKEN="secret"):
        env = dict(line.split("=", 1) for line in run_git(["orchenv"], repo).splitlines() if "=" in line)
    assert "ORCH_TEST_LEAK" not in env and "GH_TOKEN" not in env and env.get("GIT_DIR") in (None, ".git")
    assert env["LC_ALL"] == "C" and env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert run_git(["orchenv"], repo, {"GIT_INDEX_FILE": "/tmp/x"}).count("GIT_INDEX_FILE=/tmp/x") == 1


def test_stdin_and_binary_output(repo: Path) -> None:
    data = b"line one\r\nnot utf-8: \xff\xfe\rend\n"
    sha = run_git(["hash-object", "-w", "--stdin"], repo, input=data).strip()
    assert len(sha) == 40
    assert run_git_bytes(["cat-file", "blob", sha], repo) == data
    # text output reads as it always did: undecodable bytes replaced (never dropped), universal newlines
    assert run_git(["cat-file", "blob", sha], repo) == "line one\nnot utf-8: \ufffd\ufffd\nend\n"
    assert (
        run_git(["hash-object", "--stdin"], repo, input="hello\n").strip() == "ce013625030ba8dba906f756967f9e9ca394464a"
    )
    assert (
        run_git_bytes(["cat-file", "--batch-check"], repo, input=f"{sha}\n".encode())
        == f"{sha} blob {len(data)}\n".encode()
    )
    assert run_git_result(["cat-file", "-t", sha], repo).args[-3:] == ["cat-file", "-t", sha]


def test_git_runs_only_through_gitrun() -> None:
    """adapters/git.py and adapters/agent_git.py start no process of their own."""
    root = Path(__file__).resolve().parent.parent / "statemachine" / "adapters"
    for name in ("git.py", "agent_git.py"):
        text = (root / name).read_text()
        for started in ("import subprocess", "import plumbum", "from plumbum", "os.system", "os.popen", "os.exec"):
            assert started not in text, (name, started)


def test_the_capture_sees_a_same_size_edit_made_in_the_instant_of_checkout_and_one_with_its_time_set_back(
    repo: Path, tmp_path: Path
) -> None:
    """The capture keeps git's stat cache (the index copy keeps its times), so it must still see an edit that stat
    data alone would hide: one made as the worktree was written (racily clean), and one whose mtime was set back."""
    cli = CliGit(repo)
    base = cli.head_sha()
    (repo / "a.txt").write_text("alpha\n")
    (repo / "b.txt").write_text("bravo\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two files")
    base = cli.head_sha()
    wt = tmp_path / "wt"
    cli.ensure_worktree(wt, "orch/racy", base)
    (wt / "a.txt").write_text("ALPHA\n")  # the same size, at once: likely in the index's own instant
    st = (wt / "b.txt").stat()
    (wt / "b.txt").write_text("BRAVO\n")
    os.utime(wt / "b.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # its mtime set back to the checkout's
    time.sleep(1.1)  # time moves on past the index's second
    cap = cli.capture(wt, base)
    assert sorted(c.path for c in cap.changes) == ["a.txt", "b.txt"]
    assert git(repo, "show", f"{cap.tree}:a.txt") == "ALPHA\n" and git(repo, "show", f"{cap.tree}:b.txt") == "BRAVO\n"
    # an untouched worktree captures the base's tree exactly
    clean = tmp_path / "clean"
    cli.ensure_worktree(clean, "orch/clean", base)
    time.sleep(1.1)
    assert cli.capture(clean, base).changes == ()


def test_the_repository_config_cannot_turn_off_the_stat_checks_the_capture_relies_on(
    repo: Path, tmp_path: Path
) -> None:
    cli = CliGit(repo)
    git(repo, "config", "core.trustctime", "false")
    git(repo, "config", "core.checkStat", "minimal")
    git(repo, "config", "core.ignoreStat", "true")
    base = cli.head_sha()
    wt = tmp_path / "wt"
    cli.ensure_worktree(wt, "orch/stat", base)
    target = next(p for p in sorted(wt.iterdir()) if p.is_file() and p.name != ".git")
    st = target.stat()
    data = target.read_bytes()
    target.write_bytes(bytes([data[0] ^ 1]) + data[1:] if data else b"x")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.1)
    assert [c.path for c in cli.capture(wt, base).changes] == [target.name]


def _logging_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on PATH that logs each command line, then runs the real git; returns the log."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    bin_dir, log = tmp_path / "logbin", tmp_path / "git.log"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(f'#!/bin/sh\necho "$*" >> \'{log}\'\nexec {real} "$@"\n')
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log.write_text("")
    return log


def test_the_config_listing_is_reused_only_while_the_files_it_came_from_are_unchanged(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pins of named drivers are listed once per process and repository, and listed again the moment the config
    (or the folder's .git entry) changes: a filter added between two commands is still pinned."""
    log = _logging_git(tmp_path, monkeypatch)
    marker = tmp_path / "filter-ran"
    (repo / ".gitattributes").write_text("* filter=evil\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    for _ in range(3):
        run_git(["status", "--porcelain"], repo)
    listings = [line for line in log.read_text().splitlines() if "config --list" in line]
    assert len(listings) == 1, listings  # three commands, one listing
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\nexec cat\n")
    script.chmod(0o755)
    with (repo / ".git" / "config").open("a") as fh:  # same size checks would not do: the ctime moves
        fh.write(f'[filter "evil"]\n\tclean = {script}\n\trequired = true\n')
    (repo / "app.py").write_text("changed\n")
    run_git(["add", "-A"], repo)
    assert not marker.exists()  # the added filter was pinned
    assert sum("config --list" in line for line in log.read_text().splitlines()) == 2
    # commands that read no content list nothing: the names of files, cleaning, moving a worktree
    before = log.read_text().count("config --list")
    run_git(["ls-files", "--others", "--exclude-standard", "-z"], repo)
    run_git(["clean", "-ffdxq"], repo)
    run_git(["worktree", "list", "--porcelain"], repo)
    assert log.read_text().count("config --list") == before
    (repo / "app.py").write_text("changed again\n")
    run_git(["add", "-A"], repo)  # content again, config unchanged: the pins kept from the last listing
    assert log.read_text().count("config --list") == before and not marker.exists()


def test_a_replaced_git_entry_is_listed_afresh(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worktree whose .git file now names another git directory (one with a filter) is not served the old pins."""
    log = _logging_git(tmp_path, monkeypatch)
    wt = tmp_path / "wt"
    run_git(["worktree", "add", "--quiet", "--detach", str(wt), "HEAD"], repo)
    run_git(["status", "--porcelain"], wt)
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    marker = tmp_path / "filter-ran"
    (other / ".git" / "config").open("a").write(f'[filter "evil"]\n\tclean = touch {marker}; cat\n')
    (other / ".gitattributes").write_text("* filter=evil\n")
    (wt / ".git").write_text(f"gitdir: {other / '.git'}\n")
    (wt / ".gitattributes").write_text("* filter=evil\n")
    count = log.read_text().count("config --list")
    run_git(["add", "-A"], wt)
    assert log.read_text().count("config --list") == count + 1
    assert not marker.exists()
