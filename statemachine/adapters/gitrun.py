"""How orch runs git: one way for every command, with hooks off and no configuration it did not choose.

Git stays the runner's. Every git command orch runs goes through ``run_git_result``: a minimal environment (not
os.environ minus something), no system or global config, no attributes file outside the repository, and each
config key that names a program to run pinned to something inert. The repository's own .git/config is still read
(it holds the remotes and the repository format), so the keys it may set under a free name (filter.<x>.clean,
merge.<x>.driver, credential.<url>.helper) are listed before the command and overridden one by one; that listing
follows include.path and includeIf, so an included file is covered too. The listing is kept for the process while
the files it came from are unchanged (``_PINS``). Diff drivers (diff.<x>.command,
diff.<x>.textconv) never run: porcelain diff, show and log get --no-ext-diff --no-textconv; push and fetch name the
receive-pack and upload-pack programs themselves.

The commands run through plumbum: one typed git command per binary, the hardened ``-c`` options bound to it, and
per call the arguments, the working directory and the built environment bound on top; the exit codes a call accepts
are plumbum's ``retcode`` (``run_git``: 0; ``run_git_result``: any unless told). Nothing plumbum raises leaves this
module: a refused exit code (``ProcessExecutionError``) becomes ``GitCommandFailed``, a ``GitError`` carrying the exit
code and output; a timeout and an OSError (no such working directory, git vanished) become ``GitError``. Two things
are orch's own on top of plumbum's local machine: the base environment is empty (plumbum's ``local`` would start
from a copy of orch's environment, and GIT_DIR, GIT_SSH_COMMAND or a token in it must never reach git), and output
is decoded here, as text with errors replaced and universal newlines (as ``subprocess.run(text=True)`` did) or kept
as bytes, where plumbum would drop undecodable bytes (a path with one would read as another path).
"""

from __future__ import annotations

import contextlib
import locale
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from statemachine.adapters.refs_read import git_dirs
from statemachine.adapters.tools import Plumbum
from statemachine.errors import GitError

__all__ = [
    "HARDENED_CONFIG",
    "GitCommandFailed",
    "Retcode",
    "common_dir",
    "git_argv",
    "git_env",
    "run_git",
    "run_git_bytes",
    "run_git_result",
]

# The exit codes a call accepts, as plumbum's ``retcode``: one code, several, or None for any.
Retcode = int | tuple[int, ...] | None


class GitCommandFailed(GitError):
    """A git command exited with a code its caller does not accept (plumbum's ProcessExecutionError, translated).
    The message is the one orch always gave; ``returncode``, ``stdout`` and ``stderr`` are there for a caller that
    words its own."""

    def __init__(self, message: str, hint: str, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(message, hint)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


HARDENED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),  # no hook runs: pre-commit, post-checkout, reference-transaction, pre-push...
    ("core.fsmonitor", "false"),  # no fsmonitor hook or daemon
    ("core.sshCommand", "ssh"),  # the repository's config cannot swap the ssh program
    ("core.askPass", ""),  # the only askpass is the one the runner passes for its own push
    ("credential.helper", ""),  # an empty value clears every helper configured before it
    ("core.pager", "cat"),
    ("core.editor", "false"),  # orch never edits interactively; an editor would fail, not run
    ("sequence.editor", "false"),
    ("core.attributesFile", "/dev/null"),  # with GIT_ATTR_NOSYSTEM: only the repository's own attributes
    ("core.excludesFile", "/dev/null"),  # the maintainer's personal ignore file does not shape a capture
    ("protocol.ext.allow", "never"),  # an `ext::` URL (url.<x>.insteadOf) would run a command
    ("commit.gpgSign", "false"),  # no runner commit is signed (git 2.39's commit-tree ignores it; commit does not)
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),  # no signature verification (it runs gpg.program)
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("merge.renormalize", "false"),  # a merge never runs clean filters over blobs
    ("submodule.recurse", "false"),
    ("push.recurseSubmodules", "no"),
    # The capture trusts git's stat cache (adapters/git.py capture): a file whose content changed always shows a
    # changed ctime, which no process can set back, so the repository's config may not turn these checks off.
    ("core.trustctime", "true"),
    ("core.checkStat", "default"),
    ("core.ignoreStat", "false"),
)

# Keys with a free middle part (section.<name>.key) that run a program, and the inert value each gets.
_NAMED_PROGRAM_KEYS = {
    ("filter", "clean"): "",
    ("filter", "smudge"): "",
    ("filter", "process"): "",  # empty: the filter is skipped
    ("filter", "required"): "false",
    ("merge", "driver"): "false",  # a merge that needs the driver reports a conflict instead
    ("credential", "helper"): "",  # credential.<url>.helper outranks the plain key, so clear each URL's own
}

# Commands that run no filter, merge driver, credential helper or transport: no need to list the repository's config.
# (Not write-tree, nor anything else that writes the index: writing it re-hashes racily clean files through the
# clean filter.)
_NO_PROGRAMS = frozenset(
    {
        "rev-parse",
        "symbolic-ref",
        "for-each-ref",
        "update-ref",
        "commit-tree",
        "merge-base",
        "diff-tree",
        "cat-file",
        "ls-tree",
        "show-ref",
        "rev-list",
        "init",
        "config",
        "version",
        "ls-files",  # lists names (the index and the folder walk); reads no file's content
        "clean",  # deletes untracked files; reads no tracked file's content
    }
)
# `git worktree` subcommands that only move, list or drop administrative files (add checks files out: not here)
_NO_PROGRAMS_WORKTREE = frozenset({"list", "prune", "move", "lock", "unlock"})
# Options added after the subcommand. Diff porcelain would otherwise run diff.external or the command and textconv of
# a diff driver that .gitattributes names. remote.<x>.receivepack and uploadpack run a command on a local or ssh
# remote, and git keeps the first value it reads, so only the command line overrides them.
_ADDED_OPTIONS = {
    "diff": ("--no-ext-diff", "--no-textconv"),
    "show": ("--no-ext-diff", "--no-textconv"),
    "log": ("--no-ext-diff", "--no-textconv"),
    "push": ("--receive-pack=git-receive-pack",),
    "fetch": ("--upload-pack=git-upload-pack",),
    "ls-remote": ("--upload-pack=git-upload-pack",),
}

_LOCALE = {"LANG": "C", "LC_ALL": "C"}
_ENFORCED = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PROXY_COMMAND": "",  # set but empty: core.gitProxy is never consulted
    "GIT_NO_REPLACE_OBJECTS": "1",  # refs/replace cannot make an object read as another
}
# Kept from orch's own environment for a push only: ssh finds its keys and agent, https its proxy and CAs.
_NETWORK_KEEP = (
    "HOME",
    "SSH_AUTH_SOCK",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)


def git_env(env: Mapping[str, str] | None = None, *, network: bool = False) -> dict[str, str]:
    """The environment of every git command orch runs: PATH, TZ and a C locale, what the caller passes
    (GIT_INDEX_FILE, the runner's identity, its askpass for a push), then the hardening, which wins."""
    full = {"PATH": os.environ.get("PATH", os.defpath), **_LOCALE}
    # commit dates, when orch's environment sets them, for reproducible runner commits (they carry no authority)
    keep = ("TZ", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", *(_NETWORK_KEEP if network else ()))
    full.update({k: os.environ[k] for k in keep if k in os.environ})
    if env:
        full.update(env)
    full.update(_ENFORCED)
    return full


_HARDENED_OPTIONS: tuple[str, ...] = tuple(x for key, value in HARDENED_CONFIG for x in ("-c", f"{key}={value}"))


def _with_added_options(args: list[str]) -> list[str]:
    sub = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if sub is not None and args[sub] in _ADDED_OPTIONS:
        return [*args[: sub + 1], *_ADDED_OPTIONS[args[sub]], *args[sub + 1 :]]
    return list(args)


def git_argv(git: str, args: list[str]) -> list[str]:
    """The whole command line orch runs for ``git args`` (the hardened options, then the arguments, with the options
    a subcommand gets added)."""
    return [git, *_HARDENED_OPTIONS, *_with_added_options(args)]


_FOUND: dict[str, str] = {}  # PATH -> the git it finds (looked up again when PATH changes)


def _git_binary() -> str:
    path = os.environ.get("PATH", os.defpath)
    git = _FOUND.get(path)
    if git is None or not os.access(git, os.X_OK):
        git = shutil.which("git", path=path)
        if git is None:
            raise GitError("git is not installed or not on PATH", "install git (2.38 or newer)")
        _FOUND[path] = git
    return git


# plumbum -----------------------------------------------------------------------------------------------------


_BOUND: dict[str, Any] = {}  # binary -> its git command with the hardened options bound


def _git_command(binary: str) -> Any:
    """``git -c core.hooksPath=/dev/null -c ...`` for this binary, built once, on plumbum's machine of adapters/tools.py
    (no encoding there: the bytes come back as git wrote them)."""
    bound = _BOUND.get(binary)
    if bound is None:
        bound = _BOUND[binary] = Plumbum.get().command_class(binary, None)[_HARDENED_OPTIONS]
    return bound


def _text(data: bytes) -> str:
    """Output as ``subprocess.run(text=True, errors="replace")`` read it: the locale's encoding, an undecodable
    byte replaced (never dropped), universal newlines."""
    return data.decode(locale.getpreferredencoding(False), "replace").replace("\r\n", "\n").replace("\r", "\n")


def _exec(
    git: str,
    args: list[str],
    shown: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    retcode: Retcode,
    stdin: bytes | None,
) -> tuple[int, bytes, bytes]:
    """Run ``git args`` through plumbum; the exit code, stdout and stderr as bytes. Every failure leaves as orch's
    own error, worded with ``shown`` (the caller's arguments) and ``cwd``."""
    pb = Plumbum.get()
    command = _git_command(git)[_with_added_options(args)].with_cwd(cwd).with_env(**env)
    try:
        if stdin is None:
            code, out, err = command.run(retcode=retcode, timeout=timeout, stdin=subprocess.DEVNULL)
        else:
            code, out, err = (command << stdin).run(retcode=retcode, timeout=timeout)
    except pb.execution_error as exc:
        # plumbum keeps the output as given in ``args`` (its own attributes hold an ascii() form of bytes)
        code, out, err = exc.args[1], _raw(exc.args[2]), _raw(exc.args[3])
        stderr, stdout = _text(err).strip(), _text(out).strip()
        raise GitCommandFailed(
            f"git {' '.join(shown[:3])} failed in {cwd}: {stderr or stdout}",
            "check the repository's state with `git status`",
            code,
            _text(out),
            _text(err),
        ) from None
    except pb.timed_out:
        raise GitError(
            f"git {' '.join(shown[:3])} did not finish within {timeout:g}s in {cwd}",
            "check the repository's config for an include of a pipe or a slow file system",
        ) from None
    except OSError as exc:
        if not Path(git).exists():
            raise GitError("git is not installed or not on PATH", "install git (2.38 or newer)") from None
        raise GitError(
            f"git {' '.join(shown[:3])} cannot run in {cwd}: {exc.strerror or exc}",
            "check that the folder exists and can be read",
        ) from None
    return int(code), _raw(out), _raw(err)


def _raw(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    return b"" if data is None else str(data).encode()


def _accepting_zero(retcode: Retcode) -> Retcode:
    if retcode is None:
        return None
    codes = (retcode,) if isinstance(retcode, int) else retcode
    return codes if 0 in codes else (0, *codes)


# The pins of a repository's config, per process: reused while every file the listing came from, and the ``.git``
# entry of the folder git runs in, are as they were (inode, size, mtime and ctime: a rewrite changes the ctime, which
# no process can set back). A config that includes other files, or reads a per-worktree file, is listed every time.
_PINS: dict[tuple[object, ...], tuple[dict[str, str], tuple[object, ...]]] = {}
_NO_CONFIG_ENV = frozenset(
    {"GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_NAME"}
    | {"GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE", "PATH", "TZ", "LANG", "LC_ALL"}
    | {"ORCH_CAPTURE_EXCLUDES"}  # the capture's ignore file (adapters/git.py): a path for core.excludesFile only
    | {"GIT_OPTIONAL_LOCKS"}  # 0: a read such as `git status` leaves the index unwritten
)
_LISTED_EVERY_TIME = ("include.", "includeif.", "extensions.worktreeconfig")


def _signature(paths: list[Path]) -> tuple[object, ...] | None:
    """Each path, then what lstat and stat say of it (a folder: only which one it is, as its times move with every
    file written in it); None when one is missing."""
    sig: list[object] = []
    for path in paths:
        try:
            both = (os.lstat(path), os.stat(path))
        except OSError:
            return None
        sig.append(str(path))
        for st in both:
            folder = stat.S_ISDIR(st.st_mode)
            sig.append(
                (st.st_dev, st.st_ino) if folder else (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            )
    return tuple(sig)


def _neutralize_named(
    git: str,
    leading: list[str],
    shown: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    retcode: Retcode,
) -> dict[str, str] | tuple[int, bytes, bytes]:
    """GIT_CONFIG_COUNT entries that pin each program-running key the repository's config sets under a free name
    (the environment form takes any name as-is, where `-c` would split one holding '='); or, when the config
    cannot be listed, that failure as the command's own (the command is not run unpinned): raised when the caller
    does not accept its exit code, returned when it does."""
    # the capture's own ignore file (adapters/git.py) names no program: the listing is the same without it
    leading = [a for a in leading if not a.lower().startswith("--config-env=core.excludesfile=")]
    key = (git, cwd, *leading, *sorted((k, v) for k, v in env.items() if k not in _NO_CONFIG_ENV))
    cached = _PINS.get(key)
    if cached is not None and cached[1] == _signature([Path(str(x)) for x in cached[1][::3]]):
        return cached[0]
    code, out, err = _exec(
        git,
        [*leading, "config", "--list", "--name-only", "--show-origin", "-z"],
        shown,
        cwd,
        env,
        timeout,
        _accepting_zero(retcode),
        None,
    )
    if code != 0:
        return code, out, err
    pins: dict[str, str] = {}
    fields = _text(out).split("\0")
    origins: list[Path] = [cwd / ".git"]
    every_time = bool(leading)  # -C, --git-dir: the repository is found another way
    for origin, name in zip(fields[0::2], fields[1::2], strict=False):
        if origin.startswith("file:") and (cwd / origin[5:]) not in origins:
            origins.append(cwd / origin[5:])
        every_time = every_time or name.lower().startswith(_LISTED_EVERY_TIME)
        section, _, rest = name.partition(".")
        middle, _, key_name = rest.rpartition(".")
        value = _NAMED_PROGRAM_KEYS.get((section.lower(), key_name.lower())) if middle else None
        if value is not None:
            pins[name] = value
    pinned = {"GIT_CONFIG_COUNT": str(len(pins))}
    for i, (name, value) in enumerate(sorted(pins.items())):
        pinned[f"GIT_CONFIG_KEY_{i}"] = name
        pinned[f"GIT_CONFIG_VALUE_{i}"] = value
    signature = None if every_time else _signature(origins)
    if signature is not None:
        _PINS[key] = (pinned, signature)
    return pinned


def _run(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    network: bool,
    timeout: float | None,
    retcode: Retcode,
    stdin: bytes | None,
) -> tuple[int, bytes, bytes]:
    """The one way orch runs git (see HARDENED_CONFIG)."""
    git = _git_binary()
    full_env = git_env(env, network=network)
    at = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
    quiet = at < len(args) and (
        args[at] in _NO_PROGRAMS
        or (args[at] == "worktree" and at + 1 < len(args) and args[at + 1] in _NO_PROGRAMS_WORKTREE)
    )
    if not quiet:
        pins = _neutralize_named(git, args[:at], args, cwd, full_env, timeout, retcode)
        if isinstance(pins, tuple):
            return pins
        full_env.update(pins)
    return _exec(git, args, args, cwd, full_env, timeout, retcode, stdin)


def run_git_result(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    *,
    network: bool = False,
    timeout: float | None = None,
    retcode: Retcode = None,
    input: str | bytes | None = None,
) -> subprocess.CompletedProcess[str]:  # noqa: A002
    """Run one git command the runner's way (see HARDENED_CONFIG); return its exit code and output (text). By default
    no exit code raises; ``retcode`` names the codes this call accepts, and any other raises ``GitCommandFailed``.
    ``network``: a push or fetch, which keeps HOME, the SSH agent and proxy settings. ``input``: the command's stdin
    (otherwise /dev/null). Options before the subcommand take the ``--name=value`` form (``--git-dir=X``): the first
    word without a dash is the subcommand. Raises ``GitError`` on a timeout or when git cannot be started."""
    data = input.encode(locale.getpreferredencoding(False)) if isinstance(input, str) else input
    code, out, err = _run(args, cwd, env, network, timeout, retcode, data)
    return subprocess.CompletedProcess(git_argv("git", args), code, _text(out), _text(err))


def common_dir(repo: Path) -> Path:
    """The git directory ``repo``'s worktrees share, read from its ``.git`` without a git process (refs_read.git_dirs:
    a main checkout's folder, or a linked worktree's ``commondir``); where that holds anything unusual, as git says."""
    dirs = git_dirs(repo)
    if dirs is not None:
        return dirs[1]
    return Path(run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], repo).strip())


def run_git(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    *,
    network: bool = False,
    timeout: float | None = None,
    retcode: Retcode = 0,
    input: str | bytes | None = None,
) -> str:  # noqa: A002
    """Run one git command and return its stdout (text). ``check`` False accepts any exit code; otherwise ``retcode``
    (0 unless told) names the accepted ones and any other raises ``GitCommandFailed``."""
    return run_git_result(
        args, cwd, env, network=network, timeout=timeout, retcode=retcode if check else None, input=input
    ).stdout


def run_git_bytes(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    *,
    network: bool = False,
    timeout: float | None = None,
    retcode: Retcode = 0,
    input: bytes | None = None,
) -> bytes:  # noqa: A002
    """``run_git`` for binary output: stdout exactly as git wrote it (a blob, a NUL-separated listing of raw paths)."""
    return _run(args, cwd, env, network, timeout, retcode, input)[1]


@contextlib.contextmanager
def git_stream(args: list[str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long-lived git command (only one that runs no program: ``cat-file --batch``) with its stdin and stdout as
    pipes, for the runner to feed and read a blob at a time; stopped when the block ends. Started through plumbum's
    ``popen`` with the same binary, hardened options and environment as every other git command."""
    at = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
    if at == len(args) or args[at] not in _NO_PROGRAMS:
        raise GitError(f"git {' '.join(args[:2])} cannot be streamed", "stream only a command that runs no program")
    git = _git_binary()
    command = _git_command(git)[_with_added_options(args)].with_cwd(cwd).with_env(**git_env())
    proc = command.popen(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
