"""The jail's settings (the policy's `sandbox` section) and the probe that says whether bubblewrap can build the jail
on this machine."""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from typing import Any

from statemachine.adapters.tools import ToolError, ToolFailed, run_tool
from statemachine.errors import OrchError

MODES = ("bubblewrap", "none")


class JailError(OrchError):
    """The jail cannot start; the run must not go ahead unjailed."""


@dataclass(frozen=True)
class Probe:
    ok: bool
    bwrap: str | None
    version: str | None
    reason: str | None = None


def bwrap_path() -> str | None:
    return os.environ.get("ORCH_BWRAP") or shutil.which("bwrap")


@functools.lru_cache(maxsize=4)
def probe(bwrap: str | None = None) -> Probe:
    """Can bubblewrap build a jail here (user, PID and network namespaces)? Cached per process."""
    exe = bwrap or bwrap_path()
    if exe is None:
        return Probe(
            False,
            None,
            None,
            "bubblewrap (bwrap) is not installed: apt-get install bubblewrap "
            "(dnf install bubblewrap, pacman -S bubblewrap)",
        )
    version: str | None = None
    try:
        version = run_tool([exe, "--version"], timeout=10)[1].strip() or None
        run_tool(
            [exe, *_namespaces(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
            timeout=20,
            retcode=0,
        )
    except ToolFailed as failed:  # the trial jail exited with another code than 0
        why = (failed.stderr.strip().splitlines() or [f"exit code {failed.returncode}"])[-1]
        return Probe(
            False,
            exe,
            version,
            f"bubblewrap cannot create namespaces here ({why}); unprivileged user "
            "namespaces are probably disabled (sysctl kernel.unprivileged_userns_clone=1, "
            "or AppArmor's kernel.apparmor_restrict_unprivileged_userns=0)",
        )
    except ToolError as exc:  # it did not start, or did not finish in time
        return Probe(False, exe, None, f"{exe} cannot run: {exc.reason}")
    return Probe(True, exe, version)


def _namespaces() -> list[str]:
    uid = os.getuid() or 1000  # root outside is an ordinary user inside: no capabilities, no root-owned powers
    gid = os.getgid() or 1000
    return [
        "--unshare-user",
        "--uid",
        str(uid),
        "--gid",
        str(gid),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
    ]


@dataclass(frozen=True)
class Settings:
    """The policy's ``sandbox`` section (``sandbox: none`` is ``mode: none``)."""

    mode: str = "bubblewrap"
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    agent_hosts: tuple[str, ...] = ()
    check_hosts: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: dict[str, Any]) -> Settings:
        raw = data.get("sandbox")
        if raw is None or raw == "bubblewrap":
            return cls()
        if raw == "none":
            return cls(mode="none")
        if not isinstance(raw, dict):
            raise OrchError(f"sandbox must be a mapping or 'none', not {raw!r}", "see docs/security.md")
        net = raw.get("network") or {}
        return cls(
            mode=str(raw.get("mode") or "bubblewrap"),
            read_only=tuple(str(p) for p in raw.get("read_only") or ()),
            writable=tuple(str(p) for p in raw.get("writable") or ()),
            env=tuple(str(n) for n in raw.get("env") or ()),
            agent_hosts=tuple(str(h) for h in net.get("agent") or ()),
            check_hosts=tuple(str(h) for h in net.get("checks") or ()),
        )
