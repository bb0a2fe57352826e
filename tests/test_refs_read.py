"""The runner reads its clone's refs and a worktree's HEAD from git's files (statemachine/adapters/refs_read.py): what
it reads must be what git says, and anything it cannot read as git does must send it back to git."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine.adapters import refs_read
from statemachine.adapters.git import FINGERPRINT_REFS, CliGit
from tests.conftest import GIT_IDENT

ENV = {**os.environ, **GIT_IDENT, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout


def attempt(cwd: Path, *args: str) -> None:
    """A git command that may not apply to the state the steps left (a tag on an unborn branch): it runs or not."""
    subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True)


def for_each_ref(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def head(worktree: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=worktree, env=ENV, capture_output=True, text=True
    )
    return out.stdout.strip()


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("a\n")
    git(root, "add", "a.txt")
    git(root, "commit", "-qm", "one")
    (root / "a.txt").write_text("b\n")
    git(root, "commit", "-qam", "two")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


OPS = st.lists(
    st.sampled_from(
        [
            "branch",
            "nested-branch",
            "tag",
            "annotated-tag",
            "pack",
            "delete-branch",
            "symbolic",
            "move-main",
            "detach",
            "unborn",
            "remote",
            "shadowing-tag",
            "symbolic-to-remote",
        ]
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_refs_and_head_read_from_files_are_what_git_says(tmp_path: Path, ops: list[str]) -> None:
    """Any mix of loose and packed branches and tags, annotated tags, symbolic refs, deletions, a detached or an unborn
    HEAD: the reader says what `git for-each-ref` and `git rev-parse HEAD` say, in the main checkout and in a
    linked worktree."""
    repo = make_repo(Path(tempfile.mkdtemp(dir=tmp_path)) / "repo")  # each example from the same start
    for n, op in enumerate(ops):
        if op == "branch":
            attempt(repo, "branch", "-f", f"b{n}", "HEAD~1")
        elif op == "nested-branch":
            attempt(repo, "branch", "-f", f"orch/{n}-x.y", "HEAD")
        elif op == "tag":
            attempt(repo, "tag", "-f", f"v{n}")
        elif op == "annotated-tag":
            attempt(repo, "tag", "-f", "-a", "-m", "m", f"a{n}", "HEAD~1")
        elif op == "pack":
            attempt(repo, "pack-refs", "--all")
        elif op == "delete-branch":
            names = [line.split()[0] for line in for_each_ref(repo).splitlines()]
            victims = [r for r in names if r.startswith("refs/heads/") and r != "refs/heads/main"]
            if victims:
                attempt(repo, "update-ref", "--no-deref", "-d", victims[0])
        elif op == "symbolic":
            attempt(repo, "symbolic-ref", f"refs/heads/alias{n}", "refs/heads/main")
        elif op == "move-main":
            attempt(repo, "commit", "-q", "--allow-empty", "-m", f"c{n}")
        elif op == "detach":
            attempt(repo, "checkout", "-q", "--detach", "HEAD~1")
        elif op == "unborn":
            attempt(repo, "checkout", "-q", "--orphan", f"empty{n}")
        elif op == "shadowing-tag":  # a tag named like the branch: git takes the tag for the short name
            attempt(repo, "tag", "-f", "main", "HEAD~1")
        elif op == "symbolic-to-remote":  # a branch naming a remote-tracking ref: outside the fingerprint's refs
            attempt(repo, "update-ref", "refs/remotes/origin/base", "HEAD")
            attempt(repo, "symbolic-ref", f"refs/heads/remote-alias{n}", "refs/remotes/origin/base")
        elif op == "remote":
            attempt(repo, "update-ref", f"refs/remotes/origin/r{n}", "HEAD~1")
    common = repo / ".git"
    assert refs_read.for_each_ref(common) == for_each_ref(repo)
    narrow = refs_read.for_each_ref(common, FINGERPRINT_REFS)  # branches and tags only, as the fingerprint reads them
    # a symbolic ref among branches and tags naming a ref elsewhere (dangling or not): git reads it, this reader not
    loose = [p.read_text() for top in FINGERPRINT_REFS for p in (common / top).rglob("*") if p.is_file()]
    outside = any(t.startswith("ref: ") and not t[5:].startswith(("refs/heads/", "refs/tags/")) for t in loose)
    assert narrow == git(repo, "for-each-ref", "--format=%(refname) %(objectname)", *FINGERPRINT_REFS) or (
        narrow is None and outside
    )
    for line in for_each_ref(repo).splitlines():
        name, oid = line.split(" ")
        symbolic = name.startswith(("refs/heads/alias", "refs/heads/remote-alias"))
        assert refs_read.ref_value(common, name) == (None if symbolic else oid), name
    assert refs_read.ref_value(common, "refs/heads/no-such-branch") == ""
    for name in [line.split(" ")[0] for line in for_each_ref(repo).splitlines()] + ["no-such-branch"]:
        short = name.removeprefix("refs/heads/").removeprefix("refs/tags/").removeprefix("refs/remotes/")
        known = refs_read.branch_commit(common, common, short)
        said = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"{short}^{{commit}}"],
            cwd=repo,
            env=ENV,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert known is None or known == said, (short, known, said)
        if name.startswith("refs/heads/") and not name.startswith(("refs/heads/alias", "refs/heads/remote-alias")):
            shadowed = any(line.startswith(f"refs/tags/{short} ") for line in for_each_ref(repo).splitlines())
            assert (known is None) == shadowed, (short, known)  # a plain branch is read without git
    branch = refs_read.current_branch(common, common)
    on = subprocess.run(
        ["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo, env=ENV, capture_output=True, text=True
    ).stdout.strip()
    assert branch is None or branch == on, (branch, on)
    dirs = refs_read.git_dirs(repo)
    assert dirs == (common, common)
    assert refs_read.head(*dirs) == head(repo)
    # a linked worktree: its own folder, the shared one, its HEAD
    wt = repo.parent / f"wt-{len(list(repo.parent.iterdir()))}"
    git(repo, "worktree", "add", "-q", "--detach", str(wt), "main")
    wt_dirs = refs_read.git_dirs(wt)
    assert wt_dirs is not None and wt_dirs[1].resolve() == common.resolve()
    assert refs_read.head(*wt_dirs) == head(wt)
    git(wt, "checkout", "-q", "-B", f"wtb-{wt.name}")
    git(wt, "commit", "-q", "--allow-empty", "-m", "in worktree")
    assert refs_read.head(*wt_dirs) == head(wt)
    assert refs_read.for_each_ref(common) == for_each_ref(repo)


def test_what_the_reader_cannot_read_as_git_does_is_left_to_git(repo: Path, tmp_path: Path) -> None:
    """A symbolic link among the refs, a ref whose content is neither an id nor `ref: <name>`, a ref name git would
    refuse, a FIFO, a HEAD naming something other than a branch, the reftable format: the reader says None (ask git)
    and never reads outside the repository; a lock file being written is skipped, as git skips it."""
    common = repo / ".git"
    heads = common / "refs" / "heads"
    (heads / "main.lock").write_text("garbage\n")
    assert refs_read.for_each_ref(common) == for_each_ref(repo)
    (heads / "main.lock").unlink()

    outside = tmp_path / "outside"
    outside.write_text("0" * 40 + "\n")
    (heads / "link").symlink_to(outside)
    assert refs_read.for_each_ref(common) is None
    (heads / "link").unlink()

    (heads / "odd").write_text("not an id\n")
    assert refs_read.for_each_ref(common) is None
    (heads / "odd").write_text("ref: refs/heads/../../../outside\n")
    assert refs_read.for_each_ref(common) is None
    (heads / "odd").unlink()

    os.mkfifo(heads / "fifo")
    assert refs_read.for_each_ref(common) is None  # never opened: a FIFO would block the reader
    (heads / "fifo").unlink()

    (common / "HEAD").write_text("ref: refs/../../outside\n")
    assert refs_read.head(common, common) is None
    (common / "HEAD").write_text("ref: refs/tags/v1\n")
    assert refs_read.head(common, common) is None
    (common / "HEAD").write_text("ref: refs/heads/main\n")
    assert refs_read.head(common, common) == head(repo)

    (common / "reftable").mkdir()
    assert refs_read.for_each_ref(common) is None
    assert refs_read.head(common, common) is None


def test_the_fingerprint_reads_the_same_with_and_without_git(repo: Path, tmp_path: Path) -> None:
    """`CliGit.fingerprint` of a linked worktree from git's files equals the one git's own answers give (the reader
    made to fall back by a reftable marker it does not read), and a moved branch, tag or HEAD shows in it."""
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "orch/1-x", str(wt), "main")
    cli = CliGit(repo)
    fast = cli.fingerprint(wt)
    marker = repo / ".git" / "reftable"
    marker.mkdir()
    try:
        slow = cli.fingerprint(wt)
    finally:
        marker.rmdir()
    assert fast == slow
    assert fast["head"] == head(wt) and fast["refs"] == for_each_ref(repo)
    git(repo, "tag", "planted", "HEAD~1")
    git(wt, "commit", "-q", "--allow-empty", "-m", "moved")
    after = cli.fingerprint(wt)
    assert after["head"] != fast["head"] and "refs/tags/planted" in after["refs"]
