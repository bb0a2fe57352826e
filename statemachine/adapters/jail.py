"""The agent jail: every process that runs code from a workspace (agents, checks, TDD runs, the proof server)
runs inside bubblewrap, with a read-only view of the system, a fresh HOME and /tmp, its own PID, IPC, UTS and
network namespaces, and write access to its workspace and its attempt's evidence folder only.

What the jail shows (read-only): the system folders (/usr, /bin, /lib*, /sbin, /etc without its private
keys, /opt), the toolchains the run needs (virtual environments and their interpreters, PATH folders
outside the home directory, the agent's own install folder, orch's package) and what the policy adds
(``sandbox.read_only``). Everything else is absent: the maintainer's checkout with its ``.git`` and
``.orch`` (state database, other runs), the real home (tokens, SSH keys, gh's config), /run, other
processes (/proc is the jail's own), and the network, unless the run may reach named hosts through
orch's egress proxy (statemachine/adapters/egress.py). Nothing outlives the run: bubblewrap kills the
whole PID namespace when its first process ends or when orch dies (``--die-with-parent``), and a lock
that bubblewrap holds while the jail lives lets a resumed run prove that an earlier agent is gone.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statemachine.adapters import egress
from statemachine.adapters.egress import INGRESS_DIR, NET_DIR
from statemachine.adapters.jail_files import _start_time, disarm, ensure_gone
from statemachine.adapters.jail_files import lock_free as lock_free
from statemachine.adapters.jail_files import own_git as own_git
from statemachine.adapters.jail_files import workspace_extras as workspace_extras
from statemachine.adapters.jail_files import workspace_lock as workspace_lock
from statemachine.adapters.jail_settings import MODES as MODES
from statemachine.adapters.jail_settings import JailError as JailError
from statemachine.adapters.jail_settings import Probe as Probe
from statemachine.adapters.jail_settings import Settings as Settings
from statemachine.adapters.jail_settings import _namespaces
from statemachine.adapters.jail_settings import bwrap_path as bwrap_path
from statemachine.adapters.jail_settings import probe as probe
from statemachine.adapters.process import ProcessResult, run_process
from statemachine.errors import OrchError
from statemachine.ports import REMOVED_SUFFIX as REMOVED_SUFFIX

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Inside /etc, files that hold a machine's secrets (readable when orch itself runs as root).
ETC_PRIVATE = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
    "/etc/ssl/private",
)
JAIL_HOME = "/home/agent"
TMP_BYTES = 2 * 1024**3  # /tmp and HOME are memory: a cap keeps a runaway agent from filling RAM
# Variables an agent or check receives from orch's environment, by name (never by "all but secrets").
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "TERM", "TZ", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "SOURCE_DATE_EPOCH")
ENV_ALLOW_PREFIX = ("LC_",)


@dataclass
class Spec:
    """One jailed process: where it works, what else it may write or read, and whom it may reach."""

    workdir: Path
    writable: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    executable: str | None = None  # the program's resolved path: its install folder becomes visible
    hosts: tuple[str, ...] | None = None  # host[:port] reachable through the egress proxy; None: no network
    loopback: tuple[int, ...] = ()  # ports of services on orch's loopback (a model server) reachable as-is
    ingress_port: int | None = None  # a server inside listens here; orch reaches it through a socket
    gitdir: Path | None = None  # bound over ``workdir/.git``: the workspace's own git directory
    lock: Path | None = None  # held by bubblewrap while the jail lives
    label: str = "process"
    workdir_writable: bool = True


@dataclass
class Outcome:
    result: ProcessResult
    denied: list[str] = field(default_factory=list)  # egress the proxy refused, "host:port"
    jailed: bool = True


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class Jail:
    """Runs processes in the jail the policy asks for (or, with ``sandbox: none``, with the environment allowlist only)."""

    def __init__(self, settings: Settings, repo: Path | None) -> None:
        self.settings = settings
        self.repo = repo.resolve() if repo is not None else None
        self.home = Path(os.path.expanduser("~")).resolve()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Jail) and (self.settings, self.repo, self.home) == (
            other.settings,
            other.repo,
            other.home,
        )

    def __hash__(self) -> int:
        return hash((self.settings, self.repo, self.home))

    @classmethod
    def for_policy(cls, data: dict[str, Any], repo: Path | None) -> Jail:
        return cls(Settings.of(data), repo)

    @property
    def enabled(self) -> bool:
        return self.settings.mode != "none"

    def status(self) -> Probe:
        return probe() if self.enabled else Probe(False, None, None, "the policy says sandbox: none")

    def require(self) -> None:
        """Raise when the policy wants the jail and this machine cannot build it (never downgrade silently)."""
        if self.enabled:
            p = probe()
            if not p.ok:
                raise JailError(
                    f"the agent jail cannot start: {p.reason}",
                    "install bubblewrap and allow user namespaces, or (only where this machine is itself "
                    "a disposable sandbox) set `sandbox: none` in the policy",
                )

    # -- the Sandbox port (statemachine/ports.py) --------------------------------------------------

    def _repo(self) -> Path:
        if self.repo is None:
            raise OrchError("this jail serves no repository", "build it with Jail.for_policy(data, repo)")
        return self.repo

    def workspace(self, worktree: Path, evidence: Path, base: str, branch: str | None) -> dict[str, Path]:
        return workspace_extras(self._repo(), self, worktree, evidence, base, branch)

    def search_roots(self) -> list[Path] | None:
        """The folders a jailed check can start programs from (what run_shell shows read-only: the system folders,
        the toolchains, ``sandbox.read_only``); None when the jail is off (every folder on PATH)."""
        if not self.enabled:
            return None
        roots = [Path(top) for top in SYSTEM_DIRS if os.path.isdir(top)] + self.toolchains(None)
        try:
            roots += self.check_paths(self.settings.read_only, "read_only")
        except OrchError:
            pass  # the jail refuses to start over it, and says why
        return roots

    def run_shell(self, command: str, worktree: Path, log: Path, timeout: float, base: str) -> ProcessResult:
        spec = Spec(workdir=worktree, hosts=self.settings.check_hosts or None, label="check")
        scratch = None
        if self.enabled:
            scratch = Path(tempfile.mkdtemp(prefix="orch-checkgit-"))
            spec.gitdir = own_git(self._repo(), worktree, scratch / "git", base, None)
            spec.writable = (scratch,)
        try:
            return self.run(["/bin/sh", "-c", command], spec, {}, log, timeout).result
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    # -- what is visible ----------------------------------------------------------------------------

    def protected(self) -> list[Path]:
        """Folders the jail never exposes, nor any folder that holds them."""
        out = [self.home]
        if self.repo is not None:
            out += [self.repo, self.repo / ".git", self.repo / ".orch"]
        return out

    def check_paths(self, paths: tuple[str, ...], key: str) -> list[Path]:
        """The policy's extra paths, refusing any that would expose the checkout, its state or the home folder."""
        out = []
        for raw in paths:
            path = Path(os.path.expanduser(raw))
            if not path.is_absolute():
                raise OrchError(f"sandbox.{key}: {raw!r} is not an absolute path", "name folders by their full path")
            path = Path(os.path.realpath(path))
            if not path.exists():
                raise OrchError(f"sandbox.{key}: {raw!r} does not exist", "create it, or remove it from the policy")
            for guarded in self.protected():
                if _under(guarded, path):
                    raise OrchError(
                        f"sandbox.{key}: {raw!r} would expose {guarded} to the agent",
                        "name a narrower folder (a toolchain or cache), never the repository or your home",
                    )
                if guarded != self.repo and guarded != self.home and _under(path, guarded):
                    raise OrchError(  # the store, run evidence, the warm server's socket, git's own files
                        f"sandbox.{key}: {raw!r} is inside {guarded}",
                        "orch's state and git's own files are never shown to an agent; name another folder",
                    )
                if key == "writable" and self.repo is not None and _under(path, self.repo):
                    raise OrchError(
                        f"sandbox.writable: {raw!r} is inside the repository",
                        "agents write only their workspace; a cache belongs outside the checkout",
                    )
            out.append(path)
        return out

    def toolchains(self, executable: str | None) -> list[Path]:
        """Read-only folders a run needs: PATH folders outside the home, virtual environments and their
        interpreters, the executable's install folder, and orch's own package (its relay runs inside)."""
        return list(_toolchains(self, executable, os.environ.get("PATH", "")))

    def _toolchains(self, executable: str | None) -> list[Path]:
        found: list[Path] = []
        dirs = [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
        exes = [Path(sys.executable)] + ([Path(executable)] if executable else [])
        for exe in exes:
            dirs.append(exe.parent)
            real = Path(os.path.realpath(exe))
            parts = real.parts
            if "node_modules" in parts:  # an npm package: its node_modules tree holds its platform binaries
                found.append(Path(*parts[: len(parts) - parts[::-1].index("node_modules")]))
            elif real.parent.name == "bin":
                found.append(real.parent.parent)
            else:
                found.append(real.parent)
        for d in dirs:
            if not d.is_absolute() or not d.is_dir() or any(_under(d, Path(s)) for s in SYSTEM_DIRS):
                continue
            venv = d.parent / "pyvenv.cfg"
            if venv.is_file():
                found.append(d.parent)
                for line in venv.read_text(errors="replace").splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() == "home" and value.strip():
                        found.append(Path(value.strip()).parent)
            elif not _under(d.resolve(), self.home):
                found.append(d)
        import statemachine

        found.append(Path(statemachine.__file__).resolve().parent)
        prefix = Path(sys.base_prefix)
        if not any(_under(prefix, Path(s)) for s in SYSTEM_DIRS):
            found.append(prefix)
        out: list[Path] = []
        for path in found:
            path = Path(os.path.realpath(path))
            if path.exists() and self.exposable(path) and path not in out:
                out.append(path)
        return out

    def exposable(self, path: Path) -> bool:
        """Never the root, the home folder, the checkout, or anything holding them; never inside .git or .orch."""
        if str(path) == "/" or any(_under(g, path) for g in self.protected()):
            return False
        return self.repo is None or not (_under(path, self.repo / ".git") or _under(path, self.repo / ".orch"))

    # -- the command line ---------------------------------------------------------------------------

    def argv(
        self, argv: list[str], spec: Spec, env: dict[str, str], net_dir: Path | None, ingress_dir: Path | None
    ) -> list[str]:
        p = probe()
        assert p.bwrap is not None
        args = [p.bwrap, *_namespaces()]
        for top in SYSTEM_DIRS:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for private in ETC_PRIVATE:
            if os.path.isdir(private):
                args += ["--tmpfs", private]
            elif os.path.lexists(private):
                args += ["--ro-bind", "/dev/null", private]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            "/tmp",
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            JAIL_HOME,
        ]
        mounts: list[tuple[str, Path, Path]] = []
        for path in self.toolchains(spec.executable) + self.check_paths(self.settings.read_only, "read_only"):
            mounts.append(("--ro-bind", path, path))
        for path in spec.read_only:
            real = Path(os.path.realpath(path))
            if self.exposable(real):
                mounts.append(("--ro-bind", real, real))
        binds = [("--bind" if spec.workdir_writable else "--ro-bind", spec.workdir)]
        binds += [("--bind", p) for p in (*spec.writable, *self.check_paths(self.settings.writable, "writable"))]
        for flag, path in binds:
            real = Path(os.path.realpath(path))
            mounts.append((flag, real, real))
            if real != Path(path).absolute():  # also where the caller names it (a symlinked /tmp, say)
                mounts.append((flag, real, Path(path).absolute()))
        # A folder mounted below the jail's own /tmp or HOME (a repository cloned in /tmp) would have its parents made
        # in that writable scratch: they get a read-only tmpfs of their own, so a write beside the workspace fails.
        tops = sorted(
            {
                Path(root, d.relative_to(root).parts[0])
                for _, _, d in mounts
                for root in ("/tmp", JAIL_HOME)
                if _under(d, Path(root)) and len(d.relative_to(root).parts) > 1
            }
        )
        for scratch in tops:
            args += ["--tmpfs", str(scratch)]
        # parents before children, so a writable workspace inside a read-only toolchain folder stays writable
        for flag, src, dest in sorted(mounts, key=lambda m: (len(m[2].parts), m[0] != "--ro-bind")):
            args += [flag, str(src), str(dest)]
        if spec.gitdir is not None:
            # the repository's objects, which the workspace's own git directory borrows (read when the runner made it)
            try:
                borrowed = (spec.gitdir / "objects" / "info" / "alternates").read_text().splitlines()
            except OSError:
                borrowed = []
            for line in borrowed:
                objects = Path(line.strip())
                if objects.is_absolute() and objects.name == "objects" and objects.is_dir():
                    args += ["--ro-bind", str(objects), str(objects)]
            gitfile = spec.gitdir.parent / (spec.gitdir.name + ".gitfile")
            gitfile.write_text(f"gitdir: {spec.gitdir}\n")
            args += ["--ro-bind", str(gitfile), str(spec.workdir / ".git")]
        if net_dir is not None:
            args += ["--ro-bind", str(net_dir), NET_DIR]
        if ingress_dir is not None:
            args += ["--bind", str(ingress_dir), INGRESS_DIR]
        if spec.lock is not None:
            args += ["--ro-bind", str(spec.lock), "/run/orch/lock", "--lock-file", "/run/orch/lock"]
        for scratch in tops:
            args += ["--remount-ro", str(scratch)]
        args += ["--remount-ro", "/", "--chdir", str(spec.workdir), "--clearenv"]
        for key, value in sorted(env.items()):
            args += ["--setenv", key, value]
        return args + ["--", *_program(argv)]

    # -- running ------------------------------------------------------------------------------------

    def environment(self, explicit: dict[str, str], *, home: Path | None = None) -> dict[str, str]:
        """The allowlist: PATH, locale and terminal, the policy's ``sandbox.env`` names, then ``explicit``."""
        env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIX)}
        env.setdefault("PATH", os.defpath)
        for name in self.settings.env:
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(
            {
                "HOME": str(home) if home is not None else JAIL_HOME,
                "TMPDIR": "/tmp" if self.enabled else tempfile.gettempdir(),
                "USER": "agent",
                "LOGNAME": "agent",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_TERMINAL_PROMPT": "0",
            }
        )
        env.update(explicit)
        return env

    def run(
        self,
        argv: list[str],
        spec: Spec,
        env: dict[str, str],
        log: Path,
        timeout: float,
        idle_timeout: float | None = None,
        stdin_text: str | None = None,
    ) -> Outcome:
        """Run ``argv`` in the jail; ``env`` is added to the allowlisted environment."""
        if not self.enabled:
            with tempfile.TemporaryDirectory(prefix="orch-home-") as home:
                result = run_process(
                    argv,
                    spec.workdir,
                    self.environment(env, home=Path(home)),
                    log,
                    timeout,
                    idle_timeout,
                    stdin_text=stdin_text,
                )
            return Outcome(result, jailed=False)
        p = probe()
        if not p.ok:
            log.parent.mkdir(parents=True, exist_ok=True)
            message = f"the agent jail cannot start: {p.reason}"
            log.write_text(f"orch: {message}\n")
            return Outcome(ProcessResult(None, False, False, 0.0, 0, False, error=message))
        if spec.lock is not None:
            gone = ensure_gone(spec.lock)
            if gone is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(f"orch: {gone}\n")
                return Outcome(ProcessResult(None, False, False, 0.0, 0, False, error=gone))
        hosts, ports = egress.split_hosts(spec.hosts)
        with egress.Network(hosts, spec.loopback + ports, spec.ingress_port) as net:
            full_env = self.environment({**env, **net.env()})
            inner = net.wrap(argv)
            try:
                command = self.argv(inner, spec, full_env, net.sock_dir, net.ingress_dir)
            except OrchError as exc:
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(f"orch: the jail cannot start: {exc.message}\n")
                return Outcome(
                    ProcessResult(None, False, False, 0.0, 0, False, error=f"the jail cannot start: {exc.message}")
                )
            result = run_process(
                command,
                spec.workdir,
                {"PATH": os.environ.get("PATH", os.defpath)},
                log,
                timeout,
                idle_timeout,
                stdin_text=stdin_text,
                on_start=_recorder(spec.lock),
            )
            denied = net.denied()
        removed = [item for folder in spec.writable for item in disarm(folder)]
        notes = (["orch: the jail's egress proxy refused: " + ", ".join(denied)] if denied else []) + [
            f"orch: removed what the jailed process left in {item}" for item in removed
        ]
        if notes:
            try:
                with open(log, "a") as fh:
                    fh.write("\n".join(notes) + "\n")
            except OSError:
                pass
        return Outcome(result, denied)


class Started:
    """A jailed server that runs beside orch (the proof app): ``proc`` is bubblewrap's process, in its own group;
    with ``spec.ingress_port`` set, orch's loopback port of the same number reaches the server inside."""

    def __init__(self, jail: Jail, argv: list[str], spec: Spec, env: dict[str, str], log: Path) -> None:
        self.forward: Any = None
        hosts, ports = egress.split_hosts(spec.hosts)
        self.net = egress.Network(hosts, spec.loopback + ports, spec.ingress_port).__enter__()
        try:
            full_env = jail.environment({**env, **self.net.env()})
            command = jail.argv(self.net.wrap(argv), spec, full_env, self.net.sock_dir, self.net.ingress_dir)
            sock = self.net.ingress_socket()
            if sock is not None and spec.ingress_port is not None:
                self.forward = egress.IngressForward(sock, spec.ingress_port)
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    command,
                    cwd=spec.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={"PATH": os.environ.get("PATH", os.defpath)},
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """After the process group is stopped: the forward and the sockets go too."""
        if self.forward is not None:
            self.forward.close()
            self.forward = None
        self.net.__exit__(None, None, None)


def _program(argv: list[str]) -> list[str]:
    """``argv`` with an absolute program path named by its folder's real path: the jail mounts folders by their real
    paths only, so `/x/bench/../.venv/bin/python` or a path through a symbolic link to a folder would not be found
    inside. The program's own name is kept (a virtual environment's `python` must be started by that name)."""
    if not argv or not os.path.isabs(argv[0]):
        return argv
    folder, name = os.path.split(argv[0])
    return [os.path.join(os.path.realpath(folder), name), *argv[1:]]


@functools.lru_cache(maxsize=64)
def _toolchains(jail: Jail, executable: str | None, path: str) -> tuple[Path, ...]:
    """Cached per process: the same jail settings, executable and PATH show the same folders."""
    return tuple(jail._toolchains(executable))


def _recorder(lock: Path | None) -> Any:
    """Remember which bubblewrap holds a workspace's lock, so a resumed run can stop it."""
    if lock is None:
        return None

    def record(pid: int) -> None:
        try:
            lock.with_suffix(".pid").write_text(f"{pid} {_start_time(pid)}\n")
        except OSError:
            pass

    return record
