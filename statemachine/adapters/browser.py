"""Browser proof owned by the runner: start the app, run the proof agent's scenario in Chromium, capture the evidence.

The agent only proposes a scenario (schemas/browser-scenario.schema.json). The runner validates
it (same-origin URLs only), starts the app from the policy (`proof.app`) in its own process
group, waits for the readiness probe, drives Debian's Chromium through Playwright (never a
downloaded browser), and writes every artifact itself: each final state at 1280x800 and 390x844,
the console log, the failed network requests, a DOM snapshot and the step results, each hashed
into the runner's own artifact list.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from statemachine.adapters.app_server import AppSpec as AppSpec
from statemachine.adapters.app_server import RunningApp as RunningApp
from statemachine.adapters.app_server import app_spec as app_spec
from statemachine.adapters.app_server import free_port as free_port
from statemachine.adapters.process import scrubbed_env
from statemachine.errors import OrchError

VIEWPORTS: tuple[tuple[str, int, int], ...] = (("desktop", 1280, 800), ("mobile", 390, 844))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEFAULT_STEP_TIMEOUT_MS = 5000
INTERACTIONS = ("goto", "click", "fill", "press")
RESERVED_SHOTS = ("final",)


class BrowserError(OrchError):
    """The browser proof cannot run on this machine (no Playwright, no Chromium)."""


def chromium_path() -> str:
    return os.environ.get("ORCH_CHROMIUM") or DEFAULT_CHROMIUM


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


# the app ---------------------------------------------------------------------------------


# the browser -----------------------------------------------------------------------------


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


class _Recorder:
    """Collects the page's console messages, errors and failed or blocked requests."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.console: list[str] = []
        self.network: list[str] = []
        self.blocked: set[str] = set()

    def attach(self, context: Any, page: Any) -> None:
        def route(r: Any) -> None:
            url = r.request.url
            if url.startswith(("data:", "blob:", "about:")) or resolve_url(self.base_url, url) is not None:
                r.continue_()
            else:
                self.blocked.add(url)
                self.network.append(f"BLOCKED {r.request.method} {url} (not the app's origin)")
                r.abort("blockedbyclient")

        context.route("**/*", route)
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        page.on(
            "requestfailed",
            lambda r: None if r.url in self.blocked else self.network.append(f"FAILED {r.method} {r.url}: {r.failure}"),
        )
        page.on(
            "response",
            lambda r: self.network.append(f"HTTP {r.status} {r.request.method} {r.url}") if r.status >= 400 else None,
        )


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserError(
            "browser proof needs Playwright for Python",
            "pip install playwright (no browser download: orch drives the system Chromium)",
        ) from None
    return sync_playwright


def run_scenario(scenario: dict[str, Any], base_url: str, out_dir: Path, rel_root: Path) -> dict[str, Any]:
    """Run the steps in a fresh headless Chromium; write every artifact into ``out_dir``; return the runner's record.

    Artifact paths are relative to ``rel_root`` (the proof folder). A failing step stops the run;
    the state reached is still captured.
    """
    exe = chromium_path()
    if not Path(exe).is_file():
        raise BrowserError(f"Chromium is not installed at {exe}", "apt-get install chromium (or set ORCH_CHROMIUM)")
    sync_playwright = _playwright()
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / ".last-interaction"
    steps: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    shots: list[dict[str, Any]] = []
    recorder = _Recorder(base_url)
    last_interaction = -1
    error: str | None = None
    text_assertions = 0

    def rel(path: Path) -> str:
        return path.relative_to(rel_root).as_posix()

    def capture(page: Any, name: str, after_step: int) -> None:
        for label, width, height in VIEWPORTS:
            page.set_viewport_size({"width": width, "height": height})
            path = out_dir / f"{name}-{label}.png"
            for tries_left in (2, 1, 0):  # right after a viewport change, headless Chromium now and then has no frame
                try:
                    page.screenshot(path=str(path), full_page=False)
                    break
                except Exception as exc:  # playwright's Error: retried only for this transient one
                    if tries_left == 0 or "Unable to capture screenshot" not in str(exc):
                        raise
                    page.wait_for_timeout(200)
            shots.append(
                {
                    "id": f"browser-{name}-{label}",
                    "kind": "screenshot",
                    "path": rel(path),
                    "publishable": True,
                    "viewport": f"{width}x{height}",
                    "after_step": after_step,
                    "name": name,
                }
            )
        page.set_viewport_size({"width": VIEWPORTS[0][1], "height": VIEWPORTS[0][2]})

    saved_env = {k: os.environ.get(k) for k in ("PLAYWRIGHT_BROWSERS_PATH", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD")}
    with tempfile.TemporaryDirectory(prefix="orch-browser-") as tmp:
        empty = Path(tmp) / "no-browsers"
        empty.mkdir()
        os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(empty)  # nothing can be fetched or found there
        os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
        try:
            with sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    str(Path(tmp) / "user-data"),
                    executable_path=exe,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    env=scrubbed_env(),
                    viewport={"width": VIEWPORTS[0][1], "height": VIEWPORTS[0][2]},
                    service_workers="block",
                    accept_downloads=False,
                )
                try:
                    page = context.pages[0] if context.pages else context.new_page()
                    recorder.attach(context, page)
                    for i, step in enumerate(scenario["steps"]):
                        started = time.monotonic()
                        record: dict[str, Any] = {"index": i, **{k: v for k, v in step.items() if k != "value"}}
                        if "value" in step:
                            record["value_length"] = len(step["value"])
                        try:
                            _do_step(page, step, base_url)
                            record["ok"] = True
                        except Exception as exc:  # a Playwright timeout or assertion: recorded, the run stops
                            record["ok"] = False
                            record["error"] = (
                                str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
                            )
                            error = f"step {i} ({step['action']}) failed: {record['error']}"
                        record["seconds"] = round(time.monotonic() - started, 3)
                        steps.append(record)
                        if step["action"] in INTERACTIONS:  # attempted: the page may have changed either way
                            last_interaction = i
                            marker.write_text(f"{i}\n")
                        if step["action"] in ("expect_text", "wait_for_text") and record["ok"]:
                            text_assertions += 1
                        if error:
                            break
                        if step["action"] == "screenshot":
                            capture(page, step["name"], i)
                    final_after = len(steps) - 1
                    capture(page, "final", final_after)
                    dom = out_dir / "final.dom.html"
                    dom.write_text(page.content())
                    artifacts.append(
                        {
                            "id": "browser-dom",
                            "kind": "dom-snapshot",
                            "path": rel(dom),
                            "publishable": False,
                            "after_step": final_after,
                        }
                    )
                finally:
                    context.close()
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    console = out_dir / "console.log"
    console.write_text("".join(line + "\n" for line in recorder.console))
    network = out_dir / "network.log"
    network.write_text("".join(line + "\n" for line in recorder.network))
    steps_file = out_dir / "steps.json"
    steps_file.write_text(
        json.dumps({"base_url": base_url, "steps": steps, "ok": error is None, "error": error}, indent=2)
    )
    artifacts += [
        {"id": "browser-console", "kind": "console-log", "path": rel(console), "publishable": False},
        {"id": "browser-network", "kind": "network-log", "path": rel(network), "publishable": False},
        {"id": "browser-steps", "kind": "generated-file", "path": rel(steps_file), "publishable": False},
    ]
    last_ns = marker.stat().st_mtime_ns if marker.exists() else 0
    for a in shots + artifacts:
        path = rel_root / a["path"]
        a["sha256"] = sha256_file(path)
        a["source"] = "runner"
        a["mtime_ns"] = path.stat().st_mtime_ns
        if a["kind"] == "screenshot":
            size = png_size(path)
            a["width"], a["height"] = size if size else (0, 0)
    return {
        "ran": True,
        "ok": error is None,
        "error": error,
        "base_url": base_url,
        "steps": steps,
        "last_interaction_step": last_interaction,
        "last_interaction_ns": last_ns,
        "text_assertions": text_assertions,
        "console_messages": len(recorder.console),
        "console_errors": sum(1 for c in recorder.console if c.startswith(("[error]", "[pageerror]"))),
        "failed_requests": len(recorder.network),
        "viewports": [f"{w}x{h}" for _, w, h in VIEWPORTS],
        "artifacts": shots + artifacts,
    }


def _do_step(page: Any, step: dict[str, Any], base_url: str) -> None:
    from playwright.sync_api import expect

    action = step["action"]
    timeout = float(step.get("timeout_ms", DEFAULT_STEP_TIMEOUT_MS))
    if action == "goto":
        url = resolve_url(base_url, step["url"])
        if url is None:
            raise ValueError(f"{step['url']!r} leaves the app's origin")
        page.goto(url, wait_until="load", timeout=timeout)
    elif action == "click":
        page.click(step["selector"], timeout=timeout)
    elif action == "fill":
        page.fill(step["selector"], step["value"], timeout=timeout)
    elif action == "press":
        page.press(step["selector"], step["key"], timeout=timeout)
    elif action in ("wait_for_text", "expect_text"):
        if action == "expect_text" and "timeout_ms" not in step:
            timeout = 2000.0
        expect(page.locator(step.get("selector", "body")).first).to_contain_text(step["text"], timeout=timeout)
    elif action == "screenshot":
        pass  # captured by the caller at every viewport
    else:  # the schema allows nothing else
        raise ValueError(f"unknown action {action!r}")


def browser_proof(
    scenario: dict[str, Any],
    out_dir: Path,
    rel_root: Path,
    *,
    spec: AppSpec | None = None,
    app_cwd: Path | None = None,
    base_url: str | None = None,
    jail: Any = None,
) -> dict[str, Any]:
    """Start the app (unless ``base_url`` names one already running), run the scenario, stop the app."""
    if base_url is not None:
        result = run_scenario(scenario, base_url, out_dir, rel_root)
        result["app"] = {"started": False, "base_url": base_url}
        return result
    if spec is None or app_cwd is None:
        return {
            "ran": False,
            "ok": False,
            "error": "no app to run the scenario against: the policy sets no proof.app",
            "steps": [],
            "artifacts": [],
        }
    log = out_dir / "app.log"
    with RunningApp(spec, app_cwd, log, jail) as app:
        if app.error:
            result = {
                "ran": False,
                "ok": False,
                "error": app.error,
                "steps": [],
                "artifacts": [],
                "base_url": app.base_url,
            }
        else:
            result = run_scenario(scenario, app.base_url, out_dir, rel_root)
    result["app"] = {"started": True, "command": spec.command, "base_url": app.base_url}
    if log.is_file():
        result["artifacts"].append(
            {
                "id": "browser-app-log",
                "kind": "command-output",
                "path": log.relative_to(rel_root).as_posix(),
                "publishable": False,
                "sha256": sha256_file(log),
                "source": "runner",
                "mtime_ns": log.stat().st_mtime_ns,
            }
        )
    return result


def mobile_unsupported(target: str) -> BrowserError:
    return BrowserError(
        f"{target} proof is not supported on this machine: there is no {'Android emulator' if target == 'android' else 'iOS simulator'} "
        "or device tooling here",
        "use `orch proof browser` (it captures every final state at the 390x844 mobile viewport too)",
    )
