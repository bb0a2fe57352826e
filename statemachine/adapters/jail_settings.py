"""The jail's settings (the policy's `sandbox` section) and the probe that says whether bubblewrap can build the jail
on this machine."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

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
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip() or None
        res = subprocess.run(
            [exe, *_namespaces(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, exe, None, f"{exe} cannot run: {exc}")
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        return Probe(
            False,
            exe,
            version,
            f"bubblewrap cannot create namespaces here ({why}); unprivileged user "
            "namespaces are probably disabled (sysctl kernel.unprivileged_userns_clone=1, "
            "or AppArmor's kernel.apparmor_restrict_unprivileged_userns=0)",
        )
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
