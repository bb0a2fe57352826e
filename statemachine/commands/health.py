"""`orch health`: orch's own version, Python, its dependencies and the agent CLIs it can find. Touches no repository."""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
from importlib import metadata

from statemachine import __version__
from statemachine.adapters.tools import ToolError, run_tool
from statemachine.errors import EXIT_ERROR, EXIT_OK
from statemachine.output import Output

DEPENDENCIES = ("transitions", "ruamel.yaml", "jsonschema", "ghapi", "rich", "playwright")
REQUIRED = ("transitions", "ruamel.yaml", "jsonschema")
TOOLS = ("git", "bwrap", "codex", "claude", "gh", "chromium")


def _version(cmd: str) -> str | None:
    path = shutil.which(cmd)
    if path is None:
        return None
    try:
        _, stdout, stderr = run_tool([path, "--version"], timeout=10)
    except ToolError:
        return path
    return (stdout or stderr).strip().splitlines()[0] if (stdout or stderr).strip() else path


def main(args: argparse.Namespace, out: Output) -> int:
    deps: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            deps[name] = None
    tools = {name: _version(name) for name in TOOLS}
    from statemachine.adapters.jail import probe

    jail = probe()
    missing = (
        [d for d in REQUIRED if deps[d] is None] + ([] if tools["git"] else ["git"]) + ([] if jail.ok else ["jail"])
    )
    lines = [f"orch {__version__}", f"python {platform.python_version()} ({sys.executable})"]
    lines += [f"  {k}: {v or 'not installed'}" for k, v in deps.items()]
    lines += [f"  {k}: {v or 'not found on PATH'}" for k, v in tools.items()]
    lines.append(f"  jail: {'works' if jail.ok else 'cannot start: ' + str(jail.reason)}")
    if missing:
        lines.append("missing: " + ", ".join(missing) + " (reinstall orch; install git; install bubblewrap)")
    out.emit(
        "health",
        {
            "orch": __version__,
            "python": platform.python_version(),
            "dependencies": deps,
            "tools": tools,
            "jail": {"ok": jail.ok, "bwrap": jail.bwrap, "reason": jail.reason},
            "ok": not missing,
        },
        "\n".join(lines),
    )
    return EXIT_ERROR if missing else EXIT_OK
