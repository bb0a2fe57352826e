"""How orch runs git: one way for every command, with hooks off and no configuration it did not choose.

Git stays the runner's. Every git command orch runs goes through ``run_git_result``: a minimal environment (not
os.environ minus something), no system or global config, no attributes file outside the repository, and each
config key that names a program to run pinned to something inert. The repository's own .git/config is still read
(it holds the remotes and the repository format), so the keys it may set under a free name (filter.<x>.clean,
merge.<x>.driver, credential.<url>.helper) are listed before the command and overridden one by one; that listing
follows include.path and includeIf, so an included file is covered too. Diff drivers (diff.<x>.command,
diff.<x>.textconv) never run: porcelain diff, show and log get --no-ext-diff --no-textconv; push and fetch name the
receive-pack and upload-pack programs themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from statemachine.errors import GitError

HARDENED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),        # no hook runs: pre-commit, post-checkout, reference-transaction, pre-push...
    ("core.fsmonitor", "false"),            # no fsmonitor hook or daemon
    ("core.sshCommand", "ssh"),             # the repository's config cannot swap the ssh program
    ("core.askPass", ""),                   # the only askpass is the one the runner passes for its own push
    ("credential.helper", ""),              # an empty value clears every helper configured before it
    ("core.pager", "cat"),
    ("core.editor", "false"),               # orch never edits interactively; an editor would fail, not run
    ("sequence.editor", "false"),
    ("core.attributesFile", "/dev/null"),   # with GIT_ATTR_NOSYSTEM: only the repository's own attributes
    ("core.excludesFile", "/dev/null"),     # the maintainer's personal ignore file does not shape a capture
    ("protocol.ext.allow", "never"),        # an `ext::` URL (url.<x>.insteadOf) would run a command
    ("commit.gpgSign", "false"),            # no runner commit is signed (git 2.39's commit-tree ignores it; commit does not)
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),         # no signature verification (it runs gpg.program)
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("merge.renormalize", "false"),         # a merge never runs clean filters over blobs
    ("submodule.recurse", "false"),
    ("push.recurseSubmodules", "no"),
)

# Keys with a free middle part (section.<name>.key) that run a program, and the inert value each gets.
_NAMED_PROGRAM_KEYS = {
    ("filter", "clean"): "", ("filter", "smudge"): "", ("filter", "process"): "",  # empty: the filter is skipped
    ("filter", "required"): "false",
    ("merge", "driver"): "false",           # a merge that needs the driver reports a conflict instead
    ("credential", "helper"): "",           # credential.<url>.helper outranks the plain key, so clear each URL's own
}

# Commands that run no filter, merge driver, credential helper or transport: no need to list the repository's config.
# (Not write-tree, nor anything else that writes the index: writing it re-hashes racily clean files through the
# clean filter.)
_NO_PROGRAMS = frozenset({"rev-parse", "symbolic-ref", "for-each-ref", "update-ref", "commit-tree", "merge-base",
                          "diff-tree", "cat-file", "ls-tree", "show-ref", "rev-list", "init", "config",
                          "version"})
# Options added after the subcommand. Diff porcelain would otherwise run diff.external or the command and textconv of
# a diff driver that .gitattributes names. remote.<x>.receivepack and uploadpack run a command on a local or ssh
# remote, and git keeps the first value it reads, so only the command line overrides them.
_ADDED_OPTIONS = {
    "diff": ("--no-ext-diff", "--no-textconv"), "show": ("--no-ext-diff", "--no-textconv"),
    "log": ("--no-ext-diff", "--no-textconv"), "push": ("--receive-pack=git-receive-pack",),
    "fetch": ("--upload-pack=git-upload-pack",), "ls-remote": ("--upload-pack=git-upload-pack",),
}

_LOCALE = {"LANG": "C", "LC_ALL": "C"}
_ENFORCED = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0", "GIT_PROXY_COMMAND": "",  # set but empty: core.gitProxy is never consulted
    "GIT_NO_REPLACE_OBJECTS": "1",  # refs/replace cannot make an object read as another
}
# Kept from orch's own environment for a push only: ssh finds its keys and agent, https its proxy and CAs.
_NETWORK_KEEP = ("HOME", "SSH_AUTH_SOCK", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")


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


def git_argv(git: str, args: list[str]) -> list[str]:
    argv = [git]
    for key, value in HARDENED_CONFIG:
        argv += ["-c", f"{key}={value}"]
    sub = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if sub is not None and args[sub] in _ADDED_OPTIONS:
        args = [*args[:sub + 1], *_ADDED_OPTIONS[args[sub]], *args[sub + 1:]]
    return argv + list(args)


def _git_binary() -> str:
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed or not on PATH", "install git (2.38 or newer)")
    return git


def _neutralize_named(git: str, leading: list[str], cwd: Path, env: dict[str, str],
                      timeout: float | None) -> dict[str, str] | subprocess.CompletedProcess[str]:
    """GIT_CONFIG_COUNT entries that pin each program-running key the repository's config sets under a free name
    (the environment form takes any name as-is, where `-c` would split one holding '='); or, when the config
    cannot be listed, that failure (the command is not run unpinned)."""
    proc = subprocess.run(git_argv(git, [*leading, "config", "--list", "--name-only", "-z"]), cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=timeout)
    if proc.returncode != 0:
        return proc
    pins: dict[str, str] = {}
    for name in proc.stdout.split("\0"):
        section, _, rest = name.partition(".")
        middle, _, key = rest.rpartition(".")
        value = _NAMED_PROGRAM_KEYS.get((section.lower(), key.lower())) if middle else None
        if value is not None:
            pins[name] = value
    out = {"GIT_CONFIG_COUNT": str(len(pins))}
    for i, (name, value) in enumerate(sorted(pins.items())):
        out[f"GIT_CONFIG_KEY_{i}"] = name
        out[f"GIT_CONFIG_VALUE_{i}"] = value
    return out


def run_git_result(args: list[str], cwd: Path, env: Mapping[str, str] | None = None, *, network: bool = False,
                   timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run one git command the runner's way (see HARDENED_CONFIG); return its exit code and output, never raising
    for a non-zero exit. ``network``: a push or fetch, which keeps HOME, the SSH agent and proxy settings. Options
    before the subcommand take the ``--name=value`` form (``--git-dir=X``): the first word without a dash is the
    subcommand."""
    git = _git_binary()
    full_env = git_env(env, network=network)
    try:
        at = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
        if at == len(args) or args[at] not in _NO_PROGRAMS:
            pins = _neutralize_named(git, args[:at], cwd, full_env, timeout)
            if isinstance(pins, subprocess.CompletedProcess):
                return pins
            full_env.update(pins)
        return subprocess.run(git_argv(git, args), cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:3])} did not finish within {timeout:g}s in {cwd}",
                       "check the repository's config for an include of a pipe or a slow file system") from None


def run_git(args: list[str], cwd: Path, env: Mapping[str, str] | None = None, check: bool = True, *,
            network: bool = False, timeout: float | None = None) -> str:
    proc = run_git_result(args, cwd, env, network=network, timeout=timeout)
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}",
                       "check the repository's state with `git status`")
    return proc.stdout
