"""Path globs with gitignore-like meaning: `**` spans folders, a pattern without `/` matches a basename anywhere."""

from __future__ import annotations

import re
from functools import lru_cache

BUILTIN_BLOCKED_PATHS: tuple[str, ...] = (
    ".github/workflows/**",
    ".orch/**",
    ".env*",
    "*.pem",
    "*.key",
    "id_rsa*",
)


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    anchored = "/" in pattern.rstrip("/")
    pat = pattern.lstrip("/")
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    body = "".join(out)
    if pat.endswith("/"):
        body += ".*"
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{body}(?:/.*)?$")  # as in .gitignore, a matching folder covers everything in it


def matches(path: str, pattern: str) -> bool:
    return bool(compile_glob(pattern).match(path))


def first_match(path: str, patterns: tuple[str, ...] | list[str]) -> str | None:
    for pattern in patterns:
        if matches(path, pattern):
            return pattern
    return None
