"""A git directory of the agent's own, bound over its worktree's ``.git`` in the jail, and what the agent did to it.

The agent sees a normal repository: HEAD on its branch at the base commit, an index equal to the worktree's (so
``git status`` is clean), and every object of the maintainer's repository through ``objects/info/alternates``
(read only: what the agent writes lands in this directory). Nothing it does here reaches the maintainer's
repository: its hooks, config, refs and remotes are this directory's. Pushing is refused and recorded twice over:
``url.<trap>.pushInsteadOf = ""`` sends every push, to a remote name, a path or a URL, through an ssh command that
writes ``orch-push-attempts`` and fails before any remote is contacted, and the ``pre-push`` hook (which git runs
only once a remote has answered) does the same for a push that gets past the rewrite. An agent can still switch
both off (``git -c ...``, ``--no-verify``, editing the config); the jail's network is what stops the push, and
``inspect_private_gitdir`` reports the config it changed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from statemachine.adapters.gitrun import GitCommandFailed, run_git
from statemachine.adapters.refs_read import git_dirs
from statemachine.errors import GitError

PUSH_LOG = "orch-push-attempts"
TRAP = "orch-push-trap"
TRAP_HOST = "orch-push-refused.invalid"
TRAP_URL = f"ssh://{TRAP_HOST}/"
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_REFUSED = "orch: git push is refused in this workspace; the runner publishes the work once it is checked"


def make_private_gitdir(worktree: Path, dest: Path, base_sha: str, branch: str | None, objects_dir: Path) -> Path:
    """Build ``dest`` as a standalone git directory for ``worktree``: HEAD on ``branch`` (detached when None) at
    ``base_sha``, objects borrowed from ``objects_dir``, the worktree's index, and a config that refuses pushes.

    Runs no git process when the worktree has an index (a file copy); returns ``dest`` as an absolute path.
    """
    dest = Path(dest).absolute()
    if not _SHA.fullmatch(base_sha):
        raise GitError(f"{base_sha!r} is not a full commit id", "pass the run's base commit as git rev-parse prints it")
    if dest.exists() and any(dest.iterdir()):
        raise GitError(f"{dest} already exists and is not empty", "remove the earlier workspace git directory first")
    if "\n" in str(dest) or "\n" in str(objects_dir):
        raise GitError(f"{dest} has a line break in its path", "choose an evidence folder with a plain path")
    ref = _branch_ref(dest, branch)
    for sub in ("refs/heads", "refs/tags", "objects/info", "objects/pack", "info", "hooks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    (dest / "objects" / "info" / "alternates").write_text(f"{Path(objects_dir).resolve()}\n")
    if ref is not None:
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(f"{base_sha}\n")
        (dest / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    else:
        (dest / "HEAD").write_text(f"{base_sha}\n")
    (dest / "config").write_text(_config_text(dest, base_sha))
    for path, text in _scripts(dest).items():
        path.write_text(text)
        path.chmod(0o755)
    common = Path(objects_dir).resolve().parent
    for name in ("info/exclude", "shallow"):  # the same ignores; a shallow clone's boundary
        if (common / name).is_file():
            shutil.copyfile(common / name, dest / name)
    dirs = git_dirs(worktree)  # the worktree's own git directory, from its .git (None: the index is built below)
    source = dirs[0] if dirs is not None else None
    if source is not None and (source / "index").is_file():
        shutil.copy2(source / "index", dest / "index")  # keeps its mtime: entries stay as racily clean as they were
        for shared in source.glob("sharedindex.*"):  # a split index names its shared part
            shutil.copy2(shared, dest / shared.name)
    else:
        env = {"GIT_INDEX_FILE": str(dest / "index")}
        where = [f"--git-dir={dest}", f"--work-tree={worktree}"]
        try:
            run_git([*where, "read-tree", base_sha], Path(worktree), env)
        except GitCommandFailed as exc:
            raise GitError(
                f"cannot build the workspace index at {base_sha[:12]}: {exc.stderr.strip()}",
                "check that the base commit exists in the repository",
            ) from None
        run_git([*where, "update-index", "-q", "--refresh"], Path(worktree), env, check=False)  # stat data only
    return dest


def inspect_private_gitdir(dest: Path, base_sha: str, branch: str | None) -> list[str]:
    """What the agent did to its git directory, one plain sentence each (empty when it left git alone).

    Reads files and runs only read-only git commands with the runner's hardened environment; nothing the agent
    configured (hooks, fsmonitor, filters, helpers) runs.
    """
    dest = Path(dest).absolute()
    findings = _push_attempts(dest)
    written = _config_text(dest, base_sha)
    try:
        same = not (dest / "config").is_symlink() and (dest / "config").read_text(encoding="utf-8") == written
    except (OSError, UnicodeDecodeError):
        same = False
    # the config orch wrote, byte for byte: no entry changed and no remote (orch writes none), so no git reads it
    config = [] if same else _config_entries(dest / "config")
    expected = [] if same else _config_entries_of(written)
    remotes: dict[str, list[str]] = {}
    for key, value in config:
        m = re.fullmatch(r"remote\.(.+)\.(url|pushurl)", key)
        if m:
            remotes.setdefault(m.group(1), []).append(value)
    findings += [f"added remote {name!r} ({', '.join(urls)})" for name, urls in sorted(remotes.items())]
    routine = re.compile(r"remote\.(.+)\.(url|pushurl|fetch)")
    changed = sorted({k for k, _ in set(config) ^ set(expected) if not routine.fullmatch(k)})
    if changed:
        findings.append(f"changed config: {', '.join(changed)}")
    worktree_config = _config_entries(dest / "config.worktree")
    if worktree_config:
        findings.append(f"changed config: {', '.join(sorted({k for k, _ in worktree_config}))} (config.worktree)")
    findings += _hook_findings(dest)
    findings += _history_findings(dest, base_sha, branch)
    return findings


# building --------------------------------------------------------------------------------------------------


def _branch_ref(dest: Path, branch: str | None) -> Path | None:
    if branch is None:
        return None
    parts = branch.split("/")
    if (
        not branch
        or branch.startswith("-")
        or any(p in ("", ".", "..") or p.endswith(".lock") for p in parts)
        or any(c in branch for c in " ~^:?*[\\\n\t\x7f")
        or "@{" in branch
    ):
        raise GitError(f"{branch!r} is not a valid branch name", "use the run's branch, such as orch/issue-1")
    return dest / "refs" / "heads" / Path(*parts)


def _quote(value: str) -> str:
    """A git config value, quoted so that no character in a path reads as syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config_text(dest: Path, base_sha: str) -> str:
    sha256 = len(base_sha) == 64
    lines = [
        "[core]",
        f"\trepositoryformatversion = {1 if sha256 else 0}",
        "\tfilemode = true",
        "\tbare = false",
        "\tlogallrefupdates = true",
        f"\thooksPath = {_quote(str(dest / 'hooks'))}",
        f"\tsshCommand = {_quote(shlex.quote(str(dest / TRAP)))}",
        "[ssh]",
        "\tvariant = simple",  # no `ssh -G` probe: the trap runs once per push
        f"[url {_quote(TRAP_URL)}]",
        '\tpushInsteadOf = ""',
    ]  # every push URL begins with ""
    if sha256:
        lines += ["[extensions]", "\tobjectFormat = sha256"]
    return "\n".join(lines) + "\n"


def _scripts(dest: Path) -> dict[Path, str]:
    """The pre-push hook and the ssh command every push is rewritten to reach: each records, then refuses."""
    log = shlex.quote(str(dest / PUSH_LOG))
    records = {
        dest / "hooks" / "pre-push": '{ printf \'pre-push %s %s\' "$1" "$2"; while read -r lref lsha rref rsha; do '
        f"printf ' %s:%s' \"$lref\" \"$rref\"; done; printf '\\n'; }} >> {log}",
        dest / TRAP: f"printf 'ssh-trap %s\\n' \"$*\" >> {log}",
    }
    return {
        path: f"#!/bin/sh\n# orch: pushing is the runner's job. Record the attempt, then refuse it.\n{record}\n"
        f"echo {shlex.quote(_REFUSED)} >&2\nexit 1\n"
        for path, record in records.items()
    }


# inspecting ------------------------------------------------------------------------------------------------


def _git(dest: Path, *args: str) -> str | None:
    try:
        return run_git([f"--git-dir={dest}", *args], dest, timeout=60)
    except GitError:  # a non-zero exit, a timeout
        return None


def _config_entries_of(text: str) -> list[tuple[str, str]]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="orch-config-") as tmp:
        path = Path(tmp) / "config"
        path.write_text(text)
        return _config_entries(path)


def _config_entries(path: Path) -> list[tuple[str, str]]:
    """(key, value) pairs of one config file as written (its includes are not followed: an include is a change)."""
    if not path.is_file():
        return []
    try:
        listing = run_git(["config", "--file", str(path), "--no-includes", "--list", "-z"], Path("/"), timeout=60)
    except GitCommandFailed as exc:
        return [("<unreadable config>", exc.stderr.strip())]
    except GitError:
        return [("<unreadable config>", "")]
    out = []
    for entry in listing.split("\0"):
        if entry:
            key, _, value = entry.partition("\n")
            out.append((key, value))
    return out


def _push_attempts(dest: Path) -> list[str]:
    try:
        lines = (dest / PUSH_LOG).read_text(errors="replace").splitlines()
    except OSError:
        return []
    seen: dict[str, int] = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "ssh-trap":  # "<host> git-receive-pack '/<the URL as the agent wrote it>'"
            try:
                words = shlex.split(rest)
            except ValueError:
                words = []
            if len(words) == 3 and words[1] == "git-upload-pack":  # core.sshCommand also catches an ssh fetch
                text = f"the agent tried to fetch over ssh (git fetch {words[0]}:{words[2]})"
            else:
                target = words[2][1:] if len(words) == 3 and words[0] == TRAP_HOST else rest
                text = f"the agent tried to push (git push {target})"
        elif kind == "pre-push":
            _name, _, after = rest.partition(" ")
            url, _, refs = after.partition(" ")
            text = f"the agent tried to push (git push {url}{' ' + refs if refs else ''})"
        else:
            text = f"the agent tried to push ({line.strip()[:200]})"
        seen[text] = seen.get(text, 0) + 1
    return [text if n == 1 else f"{text}, {n} times" for text, n in seen.items()]


def _hook_findings(dest: Path) -> list[str]:
    hooks = dest / "hooks"
    names = sorted(p.name for p in hooks.iterdir()) if hooks.is_dir() else []
    out = []
    planted = [n for n in names if n != "pre-push"]
    if planted:
        out.append(f"planted hook(s): {', '.join(planted)}")
    for path, text in _scripts(dest).items():
        try:
            pristine = path.read_text(errors="replace") == text and path.stat().st_mode & 0o111 != 0
        except OSError:
            pristine = False
        if not pristine:
            out.append(f"changed the push record: {path.relative_to(dest)}")
    return out


def _has_file(folder: Path, budget: int = 10_000) -> bool:
    """Whether anything but folders lies under ``folder`` (links are not followed; past ``budget`` entries, or where
    a folder cannot be read, the answer is yes, so git is asked)."""
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except FileNotFoundError:
            continue
        except OSError:
            return True
        for entry in entries:
            budget -= 1
            if budget < 0 or not entry.is_dir(follow_symlinks=False):
                return True
            pending.append(Path(entry.path))
    return False


def _history_findings(dest: Path, base_sha: str, branch: str | None) -> list[str]:
    out = []
    refs = _git(dest, "for-each-ref", "--format=%(refname) %(objectname)")
    if refs is None:
        return [f"the agent's git directory cannot be read any more ({dest})"]
    own = f"refs/heads/{branch}" if branch else None
    table = {name: sha for name, _, sha in (line.partition(" ") for line in refs.splitlines())}
    others = sorted(r for r in table if r != own)
    if others:
        out.append(f"created ref(s): {', '.join(others)}")
    if own and own not in table:
        out.append(f"deleted branch {branch!r}")
    try:
        head = (dest / "HEAD").read_text(errors="replace").strip()
    except OSError:
        head = "<missing>"
    expected = f"ref: {own}" if own else base_sha
    # every ref where the runner left it, HEAD too, and no reflog: no commit can be reachable beyond the base, so
    # git is not asked to count them
    untouched = table == ({own: base_sha} if own else {}) and head == expected and not _has_file(dest / "logs")
    count = (
        "0"
        if untouched
        else _git(dest, "rev-list", "--count", "--all", "--reflog", "--not", base_sha)
        or _git(dest, "rev-list", "--count", "--all", "--not", base_sha)
    )
    if count and count.strip() != "0":
        out.append(f"made {count.strip()} commit(s) (the runner commits, not the agent)")
    # HEAD as written names the run's branch (whose value for-each-ref gave) or is the base itself: no git to ask
    now = (table.get(own, "") if own else head) if head == expected else ""
    if head != expected:
        out.append(f"moved HEAD (now {head[:80]!r}, was {expected!r})")
    elif now != base_sha:
        out.append(f"moved HEAD from {base_sha[:12]} to {now[:12] or 'nothing'}")
    return out
