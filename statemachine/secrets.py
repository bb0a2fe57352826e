"""The secret values the runner holds, found and redacted wherever they appear, verbatim or in a common encoding.

A pattern scan (inspect_candidate.SECRET_PATTERNS) knows the shapes of well-known tokens; this module
knows the values themselves: orch's tracker token, the model API key, every environment variable
whose name looks secret and the variables the policy marks secret (``secrets.env``). It matches each
value verbatim, reversed, in base64 (standard and URL-safe, at every byte alignment, so a value
inside a longer blob is found), hex, percent-encoding and JSON string escaping, in one pass of one
compiled regular expression. Hits name the variable, never the value.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, overload
from urllib.parse import quote, quote_plus

from statemachine.settings import Settings

# Shorter values are ignored: too many false positives ("true", "1234", a port, a short word appear everywhere).
MIN_LENGTH = 8

# The model API key each agent kind reads when the policy names none (adapters/codex.py, claude.py, gemini.py).
DEFAULT_MODEL_KEYS = {
    "codex": "OPENAI_API_KEY",
    "claude": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "aider": "OPENAI_API_KEY",
    "opencode": "OPENAI_API_KEY",
}

# Secret-looking names (is_secret_name) that hold a location or a setting, not a secret:
# a path, a socket, a URL, a region, a project. Their values turn up in logs and code, so matching them would block
# ordinary runs; a policy that wants one treated as secret lists it in secrets.env.
_NOT_A_VALUE = re.compile(
    r"(?:_(?:FILE|DIR|DIRECTORY|PATH|SOCK|SOCKET|HOME|URL|ENDPOINT|REGION|ZONE|LOCATION|PROFILE|PROJECT|PROJECT_ID"
    r"|ASKPASS|HELPER|OUTPUT)"
    r"|^GIT_CONFIG_(?:COUNT|KEY_\d+|NOSYSTEM|GLOBAL|SYSTEM)|^(?:KUBECONFIG|GIT_ASKPASS|SSH_ASKPASS|SSH_AUTH_SOCK"
    r"|GOOGLE_APPLICATION_CREDENTIALS|GH_CONFIG_DIR))$",
    re.I,
)

# Names removed from every child's environment (adapters/process.py scrubbed_env) and treated as secret: tokens,
# credentials and the ways git finds them.
_SCRUB_EXACT = {
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "GH_CONFIG_DIR",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "SSH_AUTH_SOCK",
    "NPM_TOKEN",
    "NODE_AUTH_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "OPENAI_API_KEY_FILE",
    "DOCKER_AUTH_CONFIG",
    "KUBECONFIG",
    "GIT_CREDENTIAL_HELPER",
}
_SCRUB_PREFIX = ("AWS_", "AZURE_", "ARM_", "GCP_", "GOOGLE_CLOUD_", "ORCH_GITHUB_", "GIT_CONFIG_")
_SCRUB_PATTERN = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY)", re.I)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper in _SCRUB_EXACT or upper.startswith(_SCRUB_PREFIX) or bool(_SCRUB_PATTERN.search(upper))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys too (STRIPE_API_KEY, an unused OPENAI_API_KEY): the agent's environment drops them, so they are secret here.
_KEY_NAME = re.compile(r"(?:API|ACCESS|SECRET|PRIVATE|AUTH|SIGNING|ENCRYPTION|MASTER)_?KEY(?:_|$)", re.I)


@dataclass(frozen=True)
class Hit:
    """One occurrence of a secret value: the variable's name, how the value was encoded, where it starts."""

    name: str
    encoding: str
    offset: int

    def reason(self, where: str) -> str:
        return f"{where} contains the value of {self.name} ({self.encoding})"


def _base64_variants(raw: bytes) -> list[tuple[str, str]]:
    """The value's base64 at each of the three byte alignments: only the characters its bytes alone decide."""
    out = []
    for align in range(3):
        encoded = base64.b64encode(b"\0" * align + raw).decode().rstrip("=")
        start, end = -(-8 * align // 6), 8 * (align + len(raw)) // 6
        core = encoded[start:end]
        out += [("base64", core), ("base64url", core.replace("+", "-").replace("/", "_"))]
    return out


def encodings(value: str) -> list[tuple[str, str]]:
    """``(encoding, text)`` for every form of ``value`` that is matched, the plainest first."""
    raw = value.encode("utf-8", "surrogateescape")
    escaped = json.dumps(value)[1:-1]
    forms = [
        ("verbatim", value),
        ("reversed", value[::-1]),
        ("json", escaped),
        ("json", json.dumps(value, ensure_ascii=False)[1:-1]),
        ("json", escaped.replace("/", "\\/")),
        ("hex", raw.hex()),
        ("hex", raw.hex().upper()),
        ("percent", quote(raw, safe="")),
        ("percent", quote(raw)),
        ("percent", quote_plus(raw, safe="")),
        ("percent", "".join(f"%{b:02X}" for b in raw)),
        ("percent", "".join(f"%{b:02x}" for b in raw)),
    ]
    return forms + _base64_variants(raw)


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching any of ``words``, longest first, as a trie: one branch per character."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        run = []
        while len(node) == 1 and "" not in node:  # a chain without a branch: one literal (no deep recursion)
            ch, node = next(iter(node.items()))
            run.append(re.escape(ch))
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return "".join(run)
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:
            body = f"(?:{body})?"
        return "".join(run) + body

    return build(root)


class SecretSet:
    """The secret values of a run, each under the name of the variable that holds it."""

    def __init__(self, secrets: Iterable[tuple[str, str]]) -> None:
        seen: set[str] = set()
        self.names: tuple[str, ...] = ()
        table: dict[str, tuple[str, str]] = {}
        for name, value in secrets:
            if value is None or len(value) < MIN_LENGTH or value in seen:
                continue
            seen.add(value)
            self.names += (name,)
            for encoding, text in encodings(value):
                table.setdefault(text, (name, encoding))  # a form shared with an earlier one keeps the plainer label
        self._by_text = table
        self._by_bytes = {k.encode("utf-8", "surrogateescape"): v for k, v in table.items()}
        self.max_length = max((len(k) for k in self._by_bytes), default=0)  # in bytes: the overlap of a chunked scan
        pattern = _trie_pattern(table)
        self._text_re = re.compile(pattern) if table else None
        self._bytes_re = re.compile(pattern.encode("utf-8", "surrogateescape")) if table else None

    def __bool__(self) -> bool:
        return bool(self._by_text)

    def __len__(self) -> int:
        return len(self.names)

    def _regex(self, data: str | bytes) -> tuple[re.Pattern[Any] | None, Mapping[Any, tuple[str, str]]]:
        if isinstance(data, str):
            return self._text_re, self._by_text
        return self._bytes_re, self._by_bytes

    def find(self, data: str | bytes, limit: int | None = None) -> list[Hit]:
        """Every occurrence of a secret value in ``data`` (offsets in its units: characters or bytes)."""
        regex, table = self._regex(data)
        hits: list[Hit] = []
        if regex is None:
            return hits
        for m in regex.finditer(data):
            name, encoding = table[m.group(0)]
            hits.append(Hit(name, encoding, m.start()))
            if limit is not None and len(hits) >= limit:
                break
        return hits

    @overload
    def redact(self, text: str) -> str: ...
    @overload
    def redact(self, text: bytes) -> bytes: ...

    def redact(self, text: str | bytes) -> str | bytes:
        """``text`` with every secret value replaced by ``[redacted:NAME]``."""
        if isinstance(text, str):
            if self._text_re is None:
                return text
            return self._text_re.sub(lambda m: f"[redacted:{self._by_text[m.group(0)][0]}]", text)
        if self._bytes_re is None:
            return text
        return self._bytes_re.sub(lambda m: f"[redacted:{self._by_bytes[m.group(0)][0]}]".encode(), text)

    def redact_json(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) redacted."""
        if not self:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(k) if isinstance(k, str) else k: self.redact_json(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_json(v) for v in value]
        return value

    def redact_chunks(self, chunks: Iterable[bytes]) -> Iterable[tuple[bytes, list[Hit]]]:
        """Redact a stream of byte chunks; yields each redacted piece with the hits in it (offsets in the input).

        A value split across two chunks is still found: the last ``max_length - 1`` bytes of each chunk wait
        for the next one.
        """
        keep = max(self.max_length - 1, 0)
        buf, base = b"", 0
        regex, table = self._bytes_re, self._by_bytes
        for chunk in _with_end(chunks):
            final = chunk is None
            buf += chunk or b""
            safe = len(buf) if final else max(len(buf) - keep, 0)
            out, pos, hits = [], 0, []
            if regex is not None:
                for m in regex.finditer(buf):
                    if m.start() >= safe:
                        break
                    name, encoding = table[m.group(0)]
                    hits.append(Hit(name, encoding, base + m.start()))
                    out += [buf[pos : m.start()], f"[redacted:{name}]".encode()]
                    pos = m.end()
            cut = max(pos, safe)
            out.append(buf[pos:cut])
            yield b"".join(out), hits
            buf, base = buf[cut:], base + cut
            if final:
                return


def _with_end(chunks: Iterable[bytes]) -> Iterable[bytes | None]:
    yield from chunks
    yield None


def model_key_env(agent: Mapping[str, Any]) -> str | None:
    """The variable holding the model API key the policy's agent uses (None: it uses none)."""
    if "api_key_env" in agent:
        return str(agent["api_key_env"]) if agent["api_key_env"] else None
    return DEFAULT_MODEL_KEYS.get(str(agent.get("kind", "command")))


@lru_cache(maxsize=4096)  # a run asks of the same few dozen names again and again
def looks_secret(name: str) -> bool:
    """An environment variable whose value the runner treats as a secret because of its name (adapters/process.py's
    is_secret_name, or a name of a key), unless the name says it holds a place or a setting."""
    return (is_secret_name(name) or bool(_KEY_NAME.search(name))) and not _NOT_A_VALUE.search(name)


def env_name_or(name: str, fallback: str) -> str:
    """``name`` when it is a variable's name (the token came from GH_TOKEN), else ``fallback``."""
    return name if _ENV_NAME.fullmatch(name or "") else fallback


def tracker_token(tracker: Any) -> tuple[str, str] | None:
    """``(name, token)`` of the credential the tracker acts with (the local tracker has none): the port's
    ``secret()``; a tracker that cannot say has nothing to add."""
    if tracker is None:
        return None
    try:
        return tracker.secret()  # type: ignore[no-any-return]
    except Exception:
        return None


def collect(
    policy: Settings | Mapping[str, Any], tracker: Any = None, env: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """``(name, value)`` of every secret of a run: the tracker's token, the model key, the policy's and the secret-named
    variables. ``policy``: the loaded policy's settings, or a policy tree (only its agent and secrets sections)."""
    env = os.environ if env is None else env
    out: list[tuple[str, str]] = []
    token = tracker_token(tracker)
    if token is not None:
        out.append(token)
    if isinstance(policy, Settings):
        names = [model_key_env(policy.agent.options), *policy.secret_env]
    else:
        names = [model_key_env(policy.get("agent") or {})]
        names += [str(n) for n in ((policy.get("secrets") or {}).get("env") or [])]
    names += sorted(n for n in env if looks_secret(n))
    out += [(n, env[n]) for n in names if n and env.get(n)]
    return out


@lru_cache(maxsize=8)
def _compiled(secrets: tuple[tuple[str, str], ...]) -> SecretSet:
    return SecretSet(secrets)


def for_run(
    policy: Settings | Mapping[str, Any], tracker: Any = None, env: Mapping[str, str] | None = None
) -> SecretSet:
    """The run's SecretSet, read from the environment each time and compiled once per distinct set of values."""
    return _compiled(tuple(collect(policy, tracker, env)))


class RedactingTracker:
    """A tracker whose comments, issues and pull requests go out with every secret value redacted.

    Everything else (reads, labels, lookups by marker) passes through unchanged.
    """

    def __init__(self, inner: Any, values: Callable[[], SecretSet]) -> None:
        self.inner = inner
        self._values = values

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _clean(self, text: str) -> str:
        return self._values().redact(text)

    def post_comment(self, number: int, body: str) -> Any:
        return self.inner.post_comment(number, self._clean(body))

    def update_comment(self, number: int, comment_id: int, body: str) -> Any:
        return self.inner.update_comment(number, comment_id, self._clean(body))

    def create_pull(
        self,
        issue: int,
        title: str,
        body: str,
        head: str,
        base: str,
        head_sha: str,
        base_sha: str,
        marker: str,
        first_attempt: bool = False,
    ) -> Any:
        return self.inner.create_pull(
            issue,
            self._clean(title),
            self._clean(body),
            head,
            base,
            head_sha,
            base_sha,
            marker,
            first_attempt=first_attempt,
        )

    def create_issue(self, title: str, body: str, labels: list[str], marker: str | None = None) -> Any:
        return self.inner.create_issue(self._clean(title), self._clean(body), labels, marker=marker)

    def update_issue(self, number: int, title: str | None = None, body: str | None = None) -> Any:
        return self.inner.update_issue(
            number,
            title=None if title is None else self._clean(title),
            body=None if body is None else self._clean(body),
        )
