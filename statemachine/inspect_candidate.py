"""Scans what an agent produced (the diff, its report, its log, its artifacts) for secrets, destructive commands and tampering."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from statemachine.ports import Git
from statemachine.secrets import Hit, SecretSet

# name -> pattern; each hit is reported by name and location, never with the secret itself.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "github-token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    "aws-access-key-id": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    "aws-secret-access-key": re.compile(r"(?i)aws_?secret_?access_?key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}\b"),
    "private-key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "slack-token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "openai-key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b"),
    "npm-token": re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    "google-api-key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "credential-assignment": re.compile(
        r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)\b"
        r"\s*[:=]\s*['\"]([^'\"\s$<>{}]{8,})['\"]"
    ),
    "url-with-credentials": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s:@]+@[^/\s]+"),
}
# Placeholders that look like secrets but are not.
_ALLOWED_VALUES = re.compile(r"(?i)^(?:x+|\*+|changeme|example|placeholder|dummy|redacted|your[_-].*|<.*>|\$\{.*\})$")

# name -> pattern over commands (agent log) and added lines (diff).
DESTRUCTIVE_PATTERNS: dict[str, re.Pattern[str]] = {
    "drop-database": re.compile(r"(?i)\bdrop\s+(?:database|schema|table)\b"),
    "flush-cache": re.compile(r"(?i)\b(?:flushall|flushdb|redis-cli\s+.*\bflush)\b"),
    "rm-rf-outside": re.compile(
        r"\brm\s+-(?:[a-zA-Z]*r[a-zA-Z]*f|[a-zA-Z]*f[a-zA-Z]*r)[a-zA-Z]*\s+(?:--\s+)?(?:/|~|\$HOME|\.\./)"
    ),
    "terraform-apply": re.compile(r"\bterraform\s+(?:apply|destroy)\b"),
    "kubectl-delete": re.compile(r"\bkubectl\s+(?:delete|apply|drain)\b"),
    "helm-release": re.compile(r"\bhelm\s+(?:install|upgrade|uninstall|delete)\b"),
    "npm-publish": re.compile(r"\b(?:npm|yarn|pnpm)\s+publish\b"),
    "pypi-upload": re.compile(r"\btwine\s+upload\b|\bpoetry\s+publish\b|\buv\s+publish\b"),
    "cargo-publish": re.compile(r"\bcargo\s+publish\b"),
    "git-push": re.compile(r"\bgit\s+(?:-[cC]\s+\S+\s+)*push\b"),
    "docker-push": re.compile(r"\bdocker\s+push\b"),
    "deploy": re.compile(
        r"(?i)\b(?:gcloud\s+\S+\s+deploy|fly\s+deploy|vercel\s+--prod|heroku\s+releases|serverless\s+deploy|sls\s+deploy)\b"
    ),
    "gh-release": re.compile(r"\bgh\s+(?:release\s+create|pr\s+merge|repo\s+delete)\b"),
}

TEXT_LIMIT = 2 * 1024 * 1024  # bytes scanned per file


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    reason: str | None = None  # a sentence for people, when "kind at where" says too little

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, **({"reason": self.reason} if self.reason else {})}


def scan_secrets(text: str, where: str) -> list[Finding]:
    found = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for name, pattern in SECRET_PATTERNS.items():
            m = pattern.search(line)
            if not m:
                continue
            value = m.group(1) if m.groups() else m.group(0)
            if _ALLOWED_VALUES.match(value or ""):
                continue
            found.append(Finding(name, f"{where}:{lineno}"))
    return found


def scan_destructive(text: str, where: str) -> list[Finding]:
    found = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for name, pattern in DESTRUCTIVE_PATTERNS.items():
            if pattern.search(line):
                found.append(Finding(name, f"{where}:{lineno}"))
    return found


def added_lines(diff: str) -> dict[str, str]:
    """Map each file of a unified diff to the text of its added lines."""
    out: dict[str, list[str]] = {}
    current = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[6:] if line.startswith("+++ b/") else None
            continue
        if current and line.startswith("+") and not line.startswith("+++"):
            out.setdefault(current, []).append(line[1:])
    return {k: "\n".join(v) for k, v in out.items()}


def read_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(TEXT_LIMIT)
    except OSError:
        return None
    if b"\0" in raw[:8192]:
        return None
    return raw.decode("utf-8", errors="replace")


def escaping_symlinks(worktree: Path, paths: list[str]) -> list[Finding]:
    """Changed paths that are symlinks (or sit under one) resolving outside the worktree."""
    root = worktree.resolve()
    found = []
    for rel in paths:
        p = worktree / rel
        probe = p
        while probe != worktree and probe != probe.parent:
            if probe.is_symlink():
                target = Path(os.path.realpath(probe))
                if target != root and root not in target.parents:
                    found.append(Finding("symlink-outside-worktree", f"{rel} -> {os.readlink(probe)}"))
                break
            probe = probe.parent
    return found


def edited_after(worktree: Path, paths: list[str], moment: float) -> list[str]:
    """Changed files whose modification time is later than ``moment`` (e.g. the report's)."""
    late = []
    for rel in paths:
        try:
            if (worktree / rel).lstat().st_mtime > moment + 0.001:
                late.append(rel)
        except OSError:
            continue
    return late


# secret values (statemachine/secrets.py): found in raw bytes, redacted in the evidence -----------

VALUE_KIND = "secret-value"  # not a pattern kind: no_secrets' `ignore` cannot skip it
CHUNK = 1024 * 1024


def value_findings(hits: Iterable[Hit], where: str) -> list[Finding]:
    """One finding per variable and encoding found at ``where``, naming the variable, never the value."""
    first: dict[tuple[str, str], Hit] = {}
    for hit in hits:
        first.setdefault((hit.name, hit.encoding), hit)
    return [Finding(VALUE_KIND, where, hit.reason(where)) for hit in first.values()]


def file_chunks(path: Path) -> Iterator[bytes]:
    """The bytes of the regular file at ``path``, a chunk at a time (no symlink followed, no FIFO waited on)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return
        while chunk := fh.read(CHUNK):
            yield chunk


def find_values(chunks: Iterable[bytes], values: SecretSet) -> list[Hit]:
    """Every secret value in a stream of bytes (one split across two chunks too)."""
    hits: list[Hit] = []
    for _piece, found in values.redact_chunks(chunks):
        hits += found
    return hits


def scan_file_values(path: Path, where: str, values: SecretSet) -> list[Finding]:
    """Secret values in a file's raw bytes, text or binary; an unreadable or non-regular file has none."""
    if not values:
        return []
    try:
        return value_findings(find_values(file_chunks(path), values), where)
    except OSError:
        return []


def scan_tree_values(git: Git, base: str, tree: str, values: SecretSet) -> list[Finding]:
    """Secret values in the raw bytes of every file the captured tree adds or changes, read from git (what would be
    published, whatever the worktree shows), one blob at a time and a chunk at a time."""
    if not values:
        return []
    blobs = git.changed_blobs(base, tree)
    paths = {sha: [p for p, s in blobs if s == sha] for _, sha in blobs}
    found: list[Finding] = []
    for sha, chunks in git.blob_chunks(list(paths), CHUNK):
        hits = find_values(chunks, values)
        for path in paths[sha]:
            found += value_findings(hits, path)
    return found


def redact_file(path: Path, values: SecretSet) -> list[Hit]:
    """Rewrite a regular file with every secret value replaced by ``[redacted:NAME]``, streaming (never the whole file
    in memory); its mode and times are kept. Returns the hits; a file without any is left untouched."""
    import tempfile

    if not values:
        return []
    try:
        hits = find_values(file_chunks(path), values)
    except OSError:
        return []
    if not hits:
        return hits
    try:
        st = path.lstat()
        fd, tmp = tempfile.mkstemp(prefix=".redact-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece, _found in values.redact_chunks(file_chunks(path)):
                    out.write(piece)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:  # a full disk: the file cannot stay, so it goes (the hits are still reported)
        logging.getLogger("orch").warning("could not redact %s (%s); removing it", path, exc)
        try:
            path.unlink()
        except OSError:
            pass
    return hits


def redact_tree(folder: Path, values: SecretSet) -> dict[str, list[Hit]]:
    """Redact every regular file under ``folder`` (symlinks are not followed); the hits by relative path."""
    out: dict[str, list[Hit]] = {}
    if not values or not folder.is_dir():
        return out
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            path = Path(root) / name
            hits = redact_file(path, values) if not path.is_symlink() else []
            if hits:
                out[str(path.relative_to(folder))] = hits
    return out
