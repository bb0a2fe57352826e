"""A cache of checked policies, keyed by the content of every file a policy was loaded from, so that a one-shot
command (`orch lint`, `orch run`) need not parse the YAML and validate it again while nothing changed.

An entry holds the merged data of a policy that passed every check, the names and SHA-256 digests of the files it was
loaded from (the policy, the bundled policies it extends) and of the bundled files every check reads (the default
policy, the policy schema), and the bundled default policy's data (the settings' defaults). Its name hashes orch's
version, the Python version, the state of orch's own modules and of jsonschema (so an upgrade or an edit of orch
invalidates everything), the policy's display name and its content digest. A lookup re-reads and re-hashes every
recorded file: a change of any of them is a miss. A problem policy is never stored (its errors are always computed
afresh), nor a policy whose data JSON would not round-trip exactly. An entry that cannot be read or parsed is
ignored (and replaced by the next store); entries are written atomically (a temporary file, then a rename), and
the folder keeps the MAX_ENTRIES most recently written.

Where: ``$ORCH_POLICY_CACHE`` (a folder; ``off`` or ``0`` disables the cache), else ``$XDG_CACHE_HOME/orch/policy``,
else ``~/.cache/orch/policy``. Every failure to read or write the cache is silent: the cache only ever saves time."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

FORMAT = 1
MAX_ENTRIES = 64  # a policy entry is tens of kilobytes
_PKG = Path(__file__).resolve().parent


def cache_dir() -> Path | None:
    configured = os.environ.get("ORCH_POLICY_CACHE", "")
    if configured.lower() in ("0", "off", "no", "false"):
        return None
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    try:
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    except RuntimeError:  # no home folder: no cache
        return None
    return base / "orch" / "policy"


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@functools.lru_cache(maxsize=1)
def _code_stamp() -> str:
    """orch's version and the state (size, mtime) of its modules and of jsonschema: a change of the checks, of the
    catalog or of the settings' types makes every entry a miss. Read once per process, as the code it runs was
    (the daemon's fork server reads it before it forks any run: statemachine/warmup.py)."""
    from statemachine import __version__

    parts = [str(FORMAT), __version__, sys.version]
    for path in sorted(_PKG.glob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    try:
        import importlib.util

        spec = importlib.util.find_spec("jsonschema")
        if spec is not None and spec.origin:
            st = os.stat(spec.origin)
            parts.append(f"jsonschema:{spec.origin}:{st.st_size}:{st.st_mtime_ns}")
    except (ImportError, ValueError, OSError):
        parts.append("jsonschema:?")
    return "\n".join(parts)


def _entry_path(folder: Path, display: str, main_digest: str) -> Path:
    key = digest("\0".join((_code_stamp(), display, main_digest)).encode("utf-8", "surrogatepass"))
    return folder / f"{key}.json"


def _bundled() -> list[tuple[str, str]]:
    """The bundled files every check reads: (path, what)."""
    from statemachine import resources

    return [
        (str(resources.bundled_policy("default")), "<bundled>/policies/default.yaml"),
        (str(resources.data_dir("schemas") / "policy.schema.json"), "<bundled>/schemas/policy.schema.json"),
    ]


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return digest(fh.read())
    except OSError:
        return None


def lookup(path: Path, display: str) -> dict[str, Any] | None:
    """The cached entry for the policy at ``path`` shown as ``display``, when every file it was loaded from is
    unchanged: {"data", "files", "default"}; None otherwise."""
    folder = cache_dir()
    if folder is None:
        return None
    from statemachine.yamlsrc import MAX_BYTES

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block: the loader refuses it
            return None
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:  # refused by the loader, never stored: not worth hashing
            return None
        entry_file = _entry_path(folder, display, digest(raw))
        entry = json.loads(entry_file.read_text(encoding="utf-8"))
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return None
        sources = entry["sources"]
        if not isinstance(sources, list) or not isinstance(entry["data"], dict):
            return None
        for source, want in sources:
            if _file_digest(str(source)) != want:
                return None
        if not isinstance(entry["default"], dict) or not isinstance(entry["files"], list):
            return None
        return entry
    except (OSError, ValueError, KeyError, TypeError, UnicodeError):
        return None


def store(
    path: Path,
    display: str,
    main_digest: str,
    sources: list[tuple[str, str]],
    data: dict[str, Any],
    files: list[str],
    default: tuple[dict[str, Any], str],
) -> None:
    """Record a policy that passed every check. ``sources``: (path, digest) of each other file it was loaded from,
    read when it was loaded; ``default``: the bundled default policy's data and the digest of the bytes it was read
    from."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        body = {
            "format": FORMAT,
            "sources": [[p, d] for p, d in sources],
            "files": files,
            "data": data,
            "default": default[0],
        }
        recorded = {p for p, _d in sources}
        extra = []
        for bundled, what in _bundled():
            found = default[1] if what.endswith("default.yaml") else _file_digest(bundled)
            if found is None:
                return
            if bundled not in recorded:
                extra.append([bundled, found])
        body["sources"] = [[p, d] for p, d in sources] + extra
        text = json.dumps(body, ensure_ascii=True, allow_nan=False)
        back = json.loads(text)
        if back["data"] != data or back["default"] != default[0] or back["files"] != files:
            return  # not plain JSON (a non-string key): such a policy is always checked afresh
        folder.mkdir(parents=True, exist_ok=True)
        target = _entry_path(folder, display, main_digest)
        tmp = folder / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            with open(tmp, "x", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        _prune(folder, keep=target)
    except (OSError, ValueError, TypeError, RecursionError):
        return


def _prune(folder: Path, keep: Path) -> None:
    """Keep the folder bounded: beyond MAX_ENTRIES entries, the least recently written go (and stale temporaries)."""
    entries = []
    for item in folder.iterdir():
        try:
            entries.append((item.stat().st_mtime_ns, item))
        except OSError:
            continue
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort()
    for _mtime, item in entries[: len(entries) - MAX_ENTRIES]:
        if item != keep:
            item.unlink(missing_ok=True)
