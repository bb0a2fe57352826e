"""What a browser proof is made of, apart from driving a browser: the scenario the proof agent proposes (validated
against schemas/browser-scenario.schema.json, same-origin URLs only), the app the policy starts (`proof.app`), the
viewports every final state is captured at, and the hashes of the artifacts. Pure: the runner's browser itself is
the Browser port (statemachine/ports.py), driven by statemachine/adapters/browser.py."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from statemachine.errors import OrchError

VIEWPORTS: tuple[tuple[str, int, int], ...] = (("desktop", 1280, 800), ("mobile", 390, 844))
INTERACTIONS = ("goto", "click", "fill", "press")
RESERVED_SHOTS = ("final",)


class BrowserError(OrchError):
    """The browser proof cannot run on this machine (no Playwright, no Chromium)."""


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def resolve_url(base_url: str, url: str) -> str | None:
    """The absolute URL of a scenario URL, or None when it leaves the app's origin."""
    if url.startswith("//"):
        return None
    absolute = urljoin(base_url.rstrip("/") + "/", url) if not urlsplit(url).scheme else url
    if origin(absolute) != origin(base_url):
        return None
    return absolute


def validate_scenario(data: Any, base_url: str | None = None) -> list[str]:
    """Reasons the scenario is unusable: the schema, reserved names, and any URL off the app's origin."""
    import jsonschema

    from statemachine import resources

    errors = sorted(
        jsonschema.Draft202012Validator(resources.schema("browser-scenario")).iter_errors(data),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        return [f"the scenario does not match schemas/browser-scenario.schema.json at {where}: {first.message}"]
    reasons = []
    names = []
    for i, step in enumerate(data["steps"]):
        if step["action"] == "goto":
            url = step["url"]
            parts = urlsplit(url)
            if url.startswith("//") or (parts.scheme and parts.scheme not in ("http", "https")):
                reasons.append(f"step {i}: {url!r} is not a same-origin URL")
            elif base_url is not None and resolve_url(base_url, url) is None:
                reasons.append(f"step {i}: {url!r} leaves the app's origin {base_url}")
            elif base_url is None and parts.scheme:
                reasons.append(
                    f"step {i}: write {url!r} as a path: the app's origin is only known when the runner starts it"
                )
        if step["action"] == "screenshot":
            if step["name"] in RESERVED_SHOTS or step["name"] in names:
                reasons.append(f"step {i}: screenshot name {step['name']!r} is reserved or used twice")
            names.append(step["name"])
    return reasons


def load_scenario(path: Path, base_url: str | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    from statemachine import limits

    if path.is_symlink() or not path.is_file():
        return None, [f"the scenario {path.name} is not a regular file"]
    try:  # written by the proof agent: its size is checked before it is read
        data = json.loads(limits.read_capped(path, limits.SCENARIO).decode("utf-8"))
    except limits.TooLarge as exc:
        return None, [limits.over_cap(f"the scenario {path.name}", exc.size, limits.SCENARIO)]
    except (limits.NotRegular, OSError):
        return None, [f"the scenario {path.name} is not a regular file"]
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        return None, [f"the scenario is not valid JSON: {exc}"]
    reasons = validate_scenario(data, base_url)
    return (data if not reasons else None), reasons


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@dataclass(frozen=True)
class AppSpec:
    command: str
    url: str
    ready_path: str = "/"
    ready_status: int = 200
    timeout_seconds: float = 30.0


def app_spec(policy_data: dict[str, Any]) -> AppSpec | None:
    """The policy's `proof.app`, or None when browser proof is not configured."""
    app = (policy_data.get("proof") or {}).get("app")
    if not app:
        return None
    ready = app.get("ready") or {}
    return AppSpec(
        command=str(app["command"]),
        url=str(app["url"]),
        ready_path=str(ready.get("path", "/")),
        ready_status=int(ready.get("status", 200)),
        timeout_seconds=float(app.get("timeout_seconds", 30)),
    )


def mobile_unsupported(target: str) -> BrowserError:
    return BrowserError(
        f"{target} proof is not supported on this machine: there is no {'Android emulator' if target == 'android' else 'iOS simulator'} "
        "or device tooling here",
        "use `orch proof browser` (it captures every final state at the 390x844 mobile viewport too)",
    )
