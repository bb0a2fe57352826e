"""What the transport keeps about a failed attempt and a cached read, and how it reads GitHub's paging and retry
headers (pure helpers of transport.py)."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from statemachine.adapters.github.errors import GitHubError


@dataclass
class _Failure:
    """One failed attempt, normalized: an HTTP status with headers and GitHub's message, or a network error."""

    status: int | None
    headers: Mapping[str, str]
    message: str
    payload: Any
    network: str | None = None  # the transport error's class name when nothing came back
    response: Any = None


@dataclass
class _Cached:
    etag: str
    data: Any
    link: str


class _Abort(Exception):
    def __init__(self, error: GitHubError) -> None:
        self.error = error


def _has_next(link: str) -> bool:
    return bool(re.search(r'rel="?next"?', link or ""))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch))
