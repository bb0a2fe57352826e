"""Git through its command line, for the runner only: worktrees, change-set capture, runner commits.

Every command runs through ``statemachine.adapters.gitrun`` (hardened, through plumbum); nothing here starts a process
of its own. The exit codes a command may end with are named per call (``retcode``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from statemachine.adapters import refs_read, workspace_pool
from statemachine.adapters.git_output import raw_and_numstat, status_lists
from statemachine.adapters.gitrun import GitCommandFailed, common_dir, git_stream, run_git, run_git_result
from statemachine.errors import GitError
from statemachine.model import Change
from statemachine.ports import Capture

__all__ = ["RUNNER_IDENT", "CliGit", "run_git", "run_git_result"]

_OBJECT_READS: dict[tuple[str, ...], str] = {}  # CliGit._objects: the last few reads of immutable objects

# the refs an agent must leave alone, compared before and after it runs (remote-tracking refs move when the runner
# pushes; notes and replace refs change nothing orch's git reads)
FINGERPRINT_REFS = ("refs/heads", "refs/tags")

RUNNER_IDENT = {
    "GIT_AUTHOR_NAME": "orch",
    "GIT_AUTHOR_EMAIL": "orch@localhost",
    "GIT_COMMITTER_NAME": "orch",
    "GIT_COMMITTER_EMAIL": "orch@localhost",
}


class CliGit:
    """Implements the Git port on one repository."""

    def __init__(self, root: Path, pool_size: int = 0) -> None:
        self.root = root
        self.pool_size = pool_size  # idle worktrees kept for reuse (statemachine/adapters/workspace_pool.py)
        self._admin_lock: Path | None = None

    def head_sha(self, ref: str = "HEAD") -> str:
        dirs = refs_read.git_dirs(self.root)  # a local branch's commit, from git's own files where it can be read
        known = (
            None if dirs is None else refs_read.head(*dirs) if ref == "HEAD" else refs_read.branch_commit(*dirs, ref)
        )
        if known:
            return known
        try:
            return run_git(["rev-parse", "--verify", f"{ref}^{{commit}}"], self.root).strip()
        except GitError:
            raise GitError(
                f"{ref} does not name a commit in {self.root}",
                "commit something first, or set tracker.base_branch in the policy",
            ) from None

    def base_branch(self, configured: str) -> str:
        if configured:
            return configured
        dirs = refs_read.git_dirs(self.root)
        known = refs_read.current_branch(*dirs) if dirs else None
        if known:
            return known
        out = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], self.root, check=False).strip()
        if not out:
            raise GitError(
                "the repository is on a detached HEAD and the policy names no base branch",
                "set tracker.base_branch in .orch/policy.yaml",
            )
        return out

    @contextmanager
    def _worktree_admin(self) -> Iterator[None]:
        """One worktree add, remove or prune at a time across processes (concurrent runs share .git/worktrees:
        a `git worktree list` beside a half-made `git worktree add` fails)."""
        import fcntl

        if self._admin_lock is None:
            self._admin_lock = common_dir(self.root) / "orch-worktrees.lock"
        with open(self._admin_lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure_worktree(self, path: Path, branch: str, base_sha: str) -> None:
        with self._worktree_admin():
            taken = self._ensure_worktree(path, branch, base_sha)
        if taken and not workspace_pool.reset(path, base_sha, branch):
            self._replace(path, ["-B", branch], base_sha)

    def _replace(self, path: Path, how: list[str], sha: str) -> None:
        """A reused workspace that could not be reset to ``sha``: removed, and a fresh worktree checked out there."""
        with self._worktree_admin():
            workspace_pool.discard(self.root, path)
            run_git(["worktree", "add", "--force", *how, str(path), sha], self.root)

    def _ensure_worktree(self, path: Path, branch: str, base_sha: str) -> bool:
        """Under the worktree lock: the worktree at ``path`` on ``branch``, checked out, or (True) an idle one moved
        there for the caller to reset outside the lock."""
        if (path / ".git").exists():
            current = run_git(["rev-parse", "--abbrev-ref", "HEAD"], path, check=False).strip()
            if current == branch:
                return False
            raise GitError(
                f"{path} holds a worktree on {current!r}, not {branch!r}",
                f"remove it: git worktree remove --force {path}",
            )
        listing = ""  # a branch that does not exist yet (a new run's): no worktree holds it, nothing to release
        if self.branch_head(branch) is not None:
            listing = run_git(["worktree", "list", "--porcelain"], self.root)
            if "\nprunable " in f"\n{listing}":  # a worktree whose folder is gone still holds its branch: drop it
                run_git(["worktree", "prune"], self.root, check=False)
                listing = run_git(["worktree", "list", "--porcelain"], self.root)
        for block in listing.split("\n\n"):
            fields = dict(line.split(" ", 1) for line in block.splitlines() if " " in line)
            if fields.get("branch") != f"refs/heads/{branch}" or "worktree" not in fields:
                continue
            holder = Path(fields["worktree"])
            if holder.resolve().parent != path.resolve().parent:
                raise GitError(
                    f"branch {branch!r} is checked out at {holder}",
                    f"switch that checkout to another branch: git -C {holder} switch -",
                )
            run_git(
                ["checkout", "--quiet", "--detach"], holder
            )  # an earlier run's worktree: release the branch, keep its files
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.pool_size and workspace_pool.take(self.root, path):
            return True
        run_git(["worktree", "add", "--force", "-B", branch, str(path), base_sha], self.root)
        return False

    def remove_worktree(self, path: Path) -> None:
        with self._worktree_admin():
            if not workspace_pool.give_back(self.root, path, self.pool_size):
                run_git(["worktree", "remove", "--force", str(path)], self.root, check=False)

    def prune_worktrees(self) -> None:
        with self._worktree_admin():
            run_git(["worktree", "prune"], self.root, check=False)

    def worktree_branches(self) -> dict[str, Path]:
        """Each local branch checked out in a worktree, and where."""
        out = {}
        for block in run_git(["worktree", "list", "--porcelain"], self.root).split("\n\n"):
            fields = dict(line.split(" ", 1) for line in block.splitlines() if " " in line)
            ref = fields.get("branch", "")
            if ref.startswith("refs/heads/") and "worktree" in fields:
                out[ref.removeprefix("refs/heads/")] = Path(fields["worktree"])
        return out

    def delete_branch(self, branch: str) -> None:
        """Delete a local branch, only if it still points where it pointed when it was looked at just now."""
        sha = self.branch_head(branch)
        if sha is not None:
            run_git(["update-ref", "-d", f"refs/heads/{branch}", sha], self.root)

    def capture(self, worktree: Path, base_sha: str, start: str | None = None, ignore: Sequence[str] = ()) -> Capture:
        """Freeze everything in the worktree (committed, staged, unstaged, untracked) into a tree. ``ignore``: more
        .gitignore lines (gates.ignore_untracked) that, like the repository's own, leave out untracked files only:
        a file git tracks stays in the change set whatever its name."""
        # the worktree's index, and the commit its HEAD names (none on an unborn branch), from git's own files where
        # they hold nothing unusual (refs_read), else as git says (exit 1 and no second line on an unborn branch)
        dirs = refs_read.git_dirs(worktree)
        now = refs_read.head(*dirs) if dirs else None
        if dirs is not None and now is not None:
            index, head = dirs[0] / "index", [now] if now else []
        else:
            index_path, *head = run_git(
                ["rev-parse", "--path-format=absolute", "--git-path", "index", "--verify", "-q", "HEAD"],
                worktree,
                retcode=(0, 1),
            ).splitlines()
            index = Path(index_path)
        with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
            excludes = Path(tmp) / "exclude"
            excludes.write_text("".join(f"{line}\n" for line in ignore))
            # after the hardened core.excludesFile=/dev/null, so this one wins (the maintainer's own file stays out)
            leading = ["--config-env=core.excludesFile=ORCH_CAPTURE_EXCLUDES"]
            exclude_env = {"ORCH_CAPTURE_EXCLUDES": str(excludes)}
            temp_index = Path(tmp) / "index"
            if index.exists():
                # The copy keeps the index's own times (to the nanosecond), so git's stat cache stays valid: only
                # entries whose file changed are hashed again. An entry written in the same instant as the index
                # stays "racily clean" by git's own rule (its mtime is not older than the index's), so a same-size
                # edit made in that instant is still compared by content. A fresh mtime on the copy would instead
                # hide such an edit; an old one (the former fix) made git hash every file of the repository.
                shutil.copy2(index, temp_index)
            env = {"GIT_INDEX_FILE": str(temp_index)}
            run_git([*leading, "add", "--all", "--", "."], worktree, {**env, **exclude_env})
            tree = run_git(["write-tree"], worktree, env).strip()
            # staged, unstaged and untracked in one pass over the worktree (the real index, which it leaves unwritten)
            status = run_git(
                [*leading, "status", "--porcelain=v2", "-z", "--untracked-files=all", "--no-renames"]
                + ["--ignore-submodules=none"],
                worktree,
                {**exclude_env, "GIT_OPTIONAL_LOCKS": "0"},
            )
        changes = [Change(path=path, status=meta[4]) for meta, path in self._raw_diff(base_sha, tree)]
        lines = sum(
            (int(added) if added.isdigit() else 0) + (int(removed) if removed.isdigit() else 0)
            for added, removed, _ in self._numstat(base_sha, tree)
        )
        by_kind = {
            # commits made in the worktree since it started (``start``: the published head when work resumes on it)
            "committed": []
            if head[:1] == [start or base_sha]  # HEAD has not moved: no commit to list
            else _names(run_git(["diff", "--name-only", "-z", start or base_sha, "HEAD"], worktree)),
            **status_lists(status),
        }
        return Capture(tree=tree, changes=tuple(changes), by_kind=by_kind, changed_lines=lines)

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        return run_git(["commit-tree", tree, "-p", parent, "-m", message], self.root, RUNNER_IDENT).strip()

    def branch_head(self, branch: str) -> str | None:
        held = refs_read.ref_value(common_dir(self.root), f"refs/heads/{branch}")  # from git's files, or git says
        if held is None:
            held = run_git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], self.root, check=False).strip()
        return held or None

    def set_branch(self, branch: str, sha: str, worktree: Path | None = None) -> None:
        """Point ``branch`` at ``sha``; with a ``worktree`` whose HEAD names that branch, its index too (one ``git
        reset --mixed``: the files are left as they are), else the worktree's index is reset to its HEAD after."""
        dirs = refs_read.git_dirs(worktree) if worktree is not None else None
        if worktree is not None and dirs is not None and refs_read.head_text(dirs[0]) == f"ref: refs/heads/{branch}":
            if run_git_result(["reset", "--quiet", "--mixed", sha], worktree, retcode=None).returncode == 0:
                return
        run_git(["update-ref", f"refs/heads/{branch}", sha], self.root)
        if worktree is not None and (worktree / ".git").exists():
            self.reset_index(worktree)

    def diff(self, base: str, head: str) -> str:
        return run_git(["diff", "--stat", "--patch", base, head], self.root)

    def fingerprint(self, worktree: Path) -> dict[str, str]:
        """What an agent must leave alone: every branch and tag, the worktree's HEAD, its .git file, the repo config
        and hooks."""
        import hashlib

        # the two folders and HEAD's commit ("" where HEAD names no commit yet), read from git's own files (the
        # runner's clone, which no jail shows), or asked of git where they hold anything unusual
        dirs = refs_read.git_dirs(worktree)
        now = refs_read.head(*dirs) if dirs else None
        if dirs is None or now is None:
            shared, own, *head = run_git(
                ["rev-parse", "--path-format=absolute", "--git-common-dir", "--git-dir", "--verify", "-q", "HEAD"],
                worktree,
                retcode=(0, 1),
            ).splitlines()
            dirs, now = (Path(own), Path(shared)), head[0].strip() if head else ""
        common = dirs[1]
        refs = refs_read.for_each_ref(common_dir(self.root), FINGERPRINT_REFS)
        gitfile = worktree / ".git"
        hooks = common / "hooks"
        hook_list = sorted(f"{p.name}:{p.stat().st_size}" for p in hooks.iterdir()) if hooks.is_dir() else []

        def digest(path: Path) -> str:
            try:
                return (
                    hashlib.sha256(path.read_bytes()).hexdigest()
                    if path.is_file()
                    else ("dir" if path.is_dir() else "missing")
                )
            except OSError:
                return "unreadable"

        return {
            "refs": refs
            if refs is not None
            else run_git(["for-each-ref", "--format=%(refname) %(objectname)", *FINGERPRINT_REFS], self.root),
            "head": now,
            "gitfile": digest(gitfile),
            "config": digest(common / "config"),
            "hooks": ",".join(hook_list),
            "worktree_config": digest(dirs[0] / "config.worktree"),
        }

    def add_detached_worktree(self, path: Path, sha: str) -> None:
        if path.exists():
            self.remove_worktree(path)
            shutil.rmtree(path, ignore_errors=True)
        with self._worktree_admin():
            run_git(["worktree", "prune"], self.root, check=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            taken = bool(self.pool_size) and workspace_pool.take(self.root, path)
            if not taken:
                run_git(["worktree", "add", "--force", "--detach", str(path), sha], self.root)
        if taken and not workspace_pool.reset(path, sha, None):
            self._replace(path, ["--detach"], sha)

    def push(self, remote: str, sha: str, branch: str, credential: tuple[str, str], force: bool = True) -> None:
        """Push ``sha`` to ``branch`` on ``remote`` with a credential only this git process sees (never the agent).

        ``force`` replaces what an earlier run left on the branch; without it the push only fast-forwards.
        """
        user, token = credential
        with tempfile.TemporaryDirectory(prefix="orch-askpass-") as tmp:
            askpass = Path(tmp) / "askpass.sh"
            askpass.write_text(
                '#!/bin/sh\ncase "$1" in\n  Username*) printf %s "$ORCH_PUSH_USER" ;;\n  *) printf %s "$ORCH_PUSH_TOKEN" ;;\nesac\n'
            )
            askpass.chmod(0o700)
            # the only askpass and the only credential: every helper the repository names is cleared (run_git)
            env = {"GIT_ASKPASS": str(askpass), "ORCH_PUSH_USER": user, "ORCH_PUSH_TOKEN": token}
            try:
                run_git(
                    ["push", "--porcelain", remote, f"{'+' if force else ''}{sha}:refs/heads/{branch}"],
                    self.root,
                    env,
                    network=True,
                )
            except GitError as exc:
                raise GitError(
                    str(exc.message).replace(token, "***"),
                    "check that the token may push to the repository (contents: write) and that the remote exists",
                ) from None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return run_git_result(["merge-base", "--is-ancestor", ancestor, descendant], self.root).returncode == 0

    def merge_into(self, branch: str, sha: str, message: str) -> tuple[str | None, list[str]]:
        """Merge ``sha`` into ``branch`` without a checkout (a merge commit by the runner).

        Returns (the branch's new head, []) or (None, the conflicting paths) and leaves the branch alone.
        A commit already in the branch is not merged again.
        """
        head = self.branch_head(branch)
        if head is None:
            raise GitError(f"branch {branch!r} does not exist", "the parent's run creates it before its first wave")
        if self.is_ancestor(sha, head):
            return head, []
        try:  # 1: conflicts, listed after the tree
            proc = run_git_result(
                ["merge-tree", "--write-tree", "--name-only", "--no-messages", head, sha], self.root, retcode=(0, 1)
            )
        except GitCommandFailed as exc:
            raise GitError(
                f"git merge-tree failed for {branch}: {exc.stderr.strip()}", "git 2.38 or newer is needed"
            ) from None
        lines = proc.stdout.splitlines()
        if proc.returncode == 1:
            return None, [line for line in lines[1:] if line.strip()]
        merged = run_git(
            ["commit-tree", lines[0].strip(), "-p", head, "-p", sha, "-m", message], self.root, RUNNER_IDENT
        ).strip()
        run_git(["update-ref", f"refs/heads/{branch}", merged, head], self.root)
        return merged, []

    def orphan_commit(self, files: dict[str, Path], message: str) -> str:
        """A parentless commit holding exactly ``files`` (path in the commit -> file on disk), built without a checkout."""
        with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            for dest, source in sorted(files.items()):
                blob = run_git(["hash-object", "-w", "--no-filters", "--", str(source)], self.root).strip()
                run_git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{dest}"], self.root, env)
            tree = run_git(["write-tree"], self.root, env).strip()
        return run_git(["commit-tree", tree, "-m", message], self.root, RUNNER_IDENT).strip()

    def diff_text(self, base: str, tree: str) -> str:
        return run_git(["diff", "--no-color", "--no-renames", "--no-ext-diff", base, tree], self.root)

    # -- what the change set holds, read from git's objects (never from the worktree) --------------------------

    def _objects(self, args: list[str]) -> str:
        """``git args`` for a read of objects named by their full ids, kept per process for the last few asked: the
        answer cannot change (an object is its content, and orch's git ignores replace refs)."""
        names = [a for a in args if not a.startswith("-")][1:]
        if not all(len(n) in (40, 64) and all(c in "0123456789abcdef" for c in n) for n in names):
            return run_git(args, self.root)
        key = (str(self.root), *args)
        if key not in _OBJECT_READS:
            _OBJECT_READS[key] = run_git(args, self.root)
            while len(_OBJECT_READS) > 8:
                _OBJECT_READS.pop(next(iter(_OBJECT_READS)))
        return _OBJECT_READS[key]

    def _diff(self, base: str, tree: str) -> tuple[list[tuple[list[str], str]], list[tuple[str, str, str]]]:
        """One ``diff-tree --raw --numstat`` of two trees (git_output.raw_and_numstat)."""
        return raw_and_numstat(
            self._objects(["diff-tree", "-r", "-z", "--no-renames", "--raw", "--numstat", base, tree])
        )

    def _raw_diff(self, base: str, tree: str) -> list[tuple[list[str], str]]:
        return self._diff(base, tree)[0]

    def _numstat(self, base: str, tree: str) -> list[tuple[str, str, str]]:
        return self._diff(base, tree)[1]

    def changed_blobs(self, base: str, tree: str) -> list[tuple[str, str]]:
        return [  # deleted, a submodule's commit, or no content: left out
            (path, parts[3])
            for parts, path in self._raw_diff(base, tree)
            if not parts[4].startswith("D") and parts[1] != "160000" and parts[3].strip("0")
        ]

    def binary_paths(self, base: str, tree: str) -> set[str]:
        return {path for added, removed, path in self._numstat(base, tree) if (added, removed) == ("-", "-")}

    def blob_sizes(self, shas: list[str]) -> dict[str, int]:
        if not shas:
            return {}
        out = run_git(
            ["cat-file", "--batch-check=%(objectname) %(objectsize)"], self.root, input="".join(s + "\n" for s in shas)
        )
        sizes = {}
        for line in out.splitlines():
            sha, _, size = line.partition(" ")
            if size.isdigit():
                sizes[sha] = int(size)
        return sizes

    def blob_chunks(self, shas: list[str], chunk: int) -> Iterator[tuple[str, Iterator[bytes]]]:
        """Each blob's content as it streams from one ``git cat-file --batch``; a caller reads each blob's chunks
        before asking for the next blob (what it leaves unread is skipped)."""
        if not shas:
            return
        with git_stream(["cat-file", "--batch"], self.root) as proc:
            stdin, stdout = proc.stdin, proc.stdout
            assert stdin is not None and stdout is not None
            for sha in shas:
                stdin.write(sha.encode() + b"\n")
                stdin.flush()
                header = stdout.readline().split()
                if len(header) != 3 or not header[2].isdigit():
                    continue  # "<sha> missing": nothing to read
                left = [int(header[2])]

                def body(left: list[int] = left) -> Iterator[bytes]:
                    while left[0] > 0:
                        data = stdout.read(min(chunk, left[0]))
                        if not data:
                            return
                        left[0] -= len(data)
                        yield data

                yield sha, body()
                while left[0] > 0:  # the rest of a blob the caller stopped reading
                    data = stdout.read(min(chunk, left[0]))
                    if not data:
                        break
                    left[0] -= len(data)
                stdout.read(1)  # the newline after each object

    def changed_paths(self, before: str, after: str) -> list[str]:
        return run_git(["diff-tree", "-r", "--name-only", before, after], self.root, check=False).split()

    def commit_time(self, sha: str) -> int | None:
        out = run_git(["show", "-s", "--format=%ct", sha], self.root, check=False).strip()
        return int(out) if out.isdigit() else None

    def checkout_paths(self, worktree: Path, sha: str, paths: list[str]) -> None:
        run_git(["checkout", sha, "--", *paths], worktree)

    def reset_index(self, worktree: Path) -> None:
        run_git(["reset", "--quiet", "--mixed"], worktree, check=False)

    def inspect_gitdir(self, gitdir: Path, head: str, branch: str | None) -> list[str]:
        from statemachine.adapters.agent_git import inspect_private_gitdir

        return inspect_private_gitdir(gitdir, head, branch)


def _names(out: str) -> list[str]:
    return sorted(x for x in out.split("\0") if x)
