"""Reading a repository's refs and a worktree's HEAD from the files git keeps them in, without a git process.

Used only on git directories of the runner's own clone (the shared ``.git`` and its worktrees' folders), which no
jail shows to an agent: before and after an agent runs, the runner compares what they say (the fingerprint of
``CliGit.fingerprint``). Each reader answers the way ``git for-each-ref`` and ``git rev-parse HEAD`` would, or
None whenever the files hold anything it does not read exactly as git does (the reftable format, a symbolic link,
a ref that is neither an object id nor ``ref: <name>``, a name git would refuse): the caller then asks git.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_OID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# a ref name as git accepts it, and no more: components of safe characters, none starting with a dot or ending
# with .lock, no "..", no "@{" (a stricter rule than git's: a name outside it is left to git)
_NAME = re.compile(r"refs/(?:[A-Za-z0-9_+=,-][A-Za-z0-9_.+=,-]*/)*[A-Za-z0-9_+=,-][A-Za-z0-9_.+=,-]*")


def _ok_name(name: str) -> bool:
    return (
        bool(_NAME.fullmatch(name))
        and ".." not in name
        and not any(part.endswith(".lock") or part.endswith(".") for part in name.split("/"))
    )


def _packed(common: Path) -> dict[str, str] | None:
    try:
        text = (common / "packed-refs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "^")):
            continue
        oid, _, name = line.partition(" ")
        if not _OID.fullmatch(oid) or not _ok_name(name):
            return None
        out[name] = oid
    return out


def _loose(common: Path, tops: tuple[str, ...] = ("refs",)) -> dict[str, str] | None:
    """Each loose ref under the folders ``tops`` (``refs`` or some of its folders) with its content (an object id or
    ``ref: <name>``)."""
    out: dict[str, str] = {}
    base = str(common) + os.sep
    pending = [str(common / top) for top in tops if os.path.isdir(common / top)]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return None
        for entry in entries:
            if entry.is_symlink():
                return None
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
                continue
            if entry.name.endswith(".lock"):
                continue  # a ref being written: git ignores the lock, and so does this reader
            name = entry.path[len(base) :]
            if not entry.is_file(follow_symlinks=False) or not _ok_name(name):
                return None
            try:
                with open(entry.path, "rb") as fh:
                    out[name] = fh.read(4096).decode("utf-8").strip()
            except FileNotFoundError:
                continue  # deleted (or packed) while listed
            except (OSError, UnicodeDecodeError):
                return None
    return out


def _usable(common: Path) -> bool:
    return not (common / "reftable").exists() and (common / "refs").is_dir() and not (common / "refs").is_symlink()


def _resolve(
    value: str, loose: dict[str, str], packed: dict[str, str], walked: tuple[str, ...] = ("refs/",)
) -> str | None:
    """The object a ref's content names: itself, or its target's (up to five symbolic steps); "" for a dangling
    symbolic ref (git skips it); None for content git reads differently from this reader, or a target outside the
    folders ``walked`` for loose refs."""
    for _ in range(5):
        if _OID.fullmatch(value):
            return value
        if not value.startswith("ref: "):
            return None
        target = value[5:].strip()
        if not _ok_name(target):
            return None
        if target in loose:
            value = loose[target]
        elif not target.startswith(walked):
            return None
        elif target in packed:
            return packed[target]
        else:
            return ""
    return None


def for_each_ref(common: Path, within: tuple[str, ...] = ()) -> str | None:
    """``git for-each-ref --format='%(refname) %(objectname)' [within...]`` of the git directory ``common``, read from
    its files (loose refs over packed ones, sorted by name); ``within``: folders of refs such as ``refs/heads`` (all
    refs when empty). None where git must be asked."""
    if not _usable(common) or any(not _ok_name(w) for w in within):
        return None
    walked = tuple(w.rstrip("/") + "/" for w in within) or ("refs/",)
    packed, loose = _packed(common), _loose(common, tuple(w.rstrip("/") for w in within) or ("refs",))
    if packed is None or loose is None:
        return None
    lines = []
    for name in sorted({*(n for n in packed if n.startswith(walked)), *loose}):
        oid = _resolve(loose[name], loose, packed, walked) if name in loose else packed[name]
        if oid is None:
            return None
        if oid:
            lines.append(f"{name} {oid}\n")
    return "".join(lines)


def head_text(git_dir: Path) -> str | None:
    """What the HEAD file of ``git_dir`` says (a regular file, no link followed); None when it cannot be read so."""
    path = git_dir / "HEAD"
    try:
        if not path.is_file() or path.is_symlink():
            return None
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def head(git_dir: Path, common: Path) -> str | None:
    """The commit a worktree's HEAD names (its git directory ``git_dir``, shared folder ``common``): "" when HEAD
    names a branch with no commit yet (an unborn branch); None where git must be asked."""
    text = head_text(git_dir) if _usable(common) else None
    if text is None:
        return None
    if _OID.fullmatch(text):
        return text
    target = text[5:].strip() if text.startswith("ref: ") else ""
    return ref_value(common, target) if target.startswith("refs/heads/") else None


def git_dirs(worktree: Path) -> tuple[Path, Path] | None:
    """A worktree's own git directory and the one its repository's worktrees share, from its ``.git`` (a folder: a
    main checkout; a ``gitdir:`` file: a linked worktree, whose folder names the shared one in ``commondir``); None
    where git must be asked."""
    marker = worktree / ".git"
    try:
        if marker.is_dir() and not marker.is_symlink():
            if (marker / "HEAD").is_file() and not (marker / "commondir").exists():
                return marker, marker
            return None
        if not marker.is_file() or marker.is_symlink():
            return None
        line = marker.read_text(encoding="utf-8").strip()
        if not line.startswith("gitdir:") or "\n" in line:
            return None
        git_dir = Path(line[len("gitdir:") :].strip())
        git_dir = git_dir if git_dir.is_absolute() else worktree / git_dir
        shared = git_dir / "commondir"
        if not shared.is_file() or shared.is_symlink():
            return None
        named = Path(shared.read_text(encoding="utf-8").strip())
        common = named if named.is_absolute() else git_dir / named
        return Path(os.path.normpath(git_dir)), Path(os.path.normpath(common))
    except (OSError, UnicodeDecodeError):
        return None


def ref_value(common: Path, name: str) -> str | None:
    """The object a ref holds (``git rev-parse --verify --quiet <name>`` of a full ``refs/...`` name): "" when there
    is no such ref; None where git must be asked (a symbolic ref among them)."""
    if not _usable(common) or not _ok_name(name):
        return None
    path = common / name
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return None
        content = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        packed = _packed(common)
        return None if packed is None else packed.get(name, "")
    except (OSError, UnicodeDecodeError):
        return None
    return content if _OID.fullmatch(content) else None


# the names git tries, in its order, for a short name (git's ref_rev_parse_rules), after a file at the top of the git
# directory (HEAD, FETCH_HEAD, or one named like the branch), which this reader leaves to git
_RULES = ("refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}", "refs/remotes/{}/HEAD")


def branch_commit(git_dir: Path, common: Path, name: str) -> str | None:
    """The commit ``name`` names when git takes it for a local branch (``git rev-parse --verify <name>^{commit}``):
    its value when the first of git's candidate refs that exists is ``refs/heads/<name>`` (git writes only commits
    to a branch); None where git must be asked (no such branch, a tag or a remote ref first, anything unusual)."""
    if not _usable(common) or (git_dir / name).exists() or (common / name).exists():
        return None
    for rule in _RULES:
        held = ref_value(common, rule.format(name))
        if held is None:
            return None
        if held:
            return held if rule == "refs/heads/{}" else None
    return None


def current_branch(git_dir: Path, common: Path) -> str | None:
    """The branch HEAD names, as ``git symbolic-ref --short HEAD`` says it: its short name when that name means the
    branch to git; None where git must be asked (a detached HEAD, an unborn branch, a name a tag shadows)."""
    text = head_text(git_dir)
    if text is None or not text.startswith("ref: refs/heads/"):
        return None
    short = text[len("ref: refs/heads/") :]
    return short if branch_commit(git_dir, common, short) else None
