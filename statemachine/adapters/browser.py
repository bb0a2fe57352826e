"""Browser proof owned by the runner: start the app, run the proof agent's scenario in Chromium, capture the evidence.

The agent only proposes a scenario (schemas/browser-scenario.schema.json). The runner validates
it (same-origin URLs only), starts the app from the policy (`proof.app`) in its own process
group, waits for the readiness probe, drives Debian's Chromium through Playwright (never a
downloaded browser), and writes every artifact itself: each final state at 1280x800 and 390x844,
the console log, the failed network requests, a DOM snapshot and the step results, each hashed
into the runner's own artifact list.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from statemachine.adapters.app_server import AppSpec as AppSpec
from statemachine.adapters.app_server import RunningApp as RunningApp
from statemachine.adapters.app_server import app_spec as app_spec
from statemachine.adapters.app_server import free_port as free_port
from statemachine.adapters.process import scrubbed_env
from statemachine.scenario import INTERACTIONS as INTERACTIONS
from statemachine.scenario import RESERVED_SHOTS as RESERVED_SHOTS
from statemachine.scenario import VIEWPORTS as VIEWPORTS
from statemachine.scenario import BrowserError as BrowserError
from statemachine.scenario import load_scenario as load_scenario
from statemachine.scenario import mobile_unsupported as mobile_unsupported
from statemachine.scenario import origin as origin
from statemachine.scenario import png_size as png_size
from statemachine.scenario import resolve_url as resolve_url
from statemachine.scenario import sha256_file as sha256_file
from statemachine.scenario import validate_scenario as validate_scenario

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


def chromium_path() -> str:
    return os.environ.get("ORCH_CHROMIUM") or DEFAULT_CHROMIUM


# the app ---------------------------------------------------------------------------------


# the browser -----------------------------------------------------------------------------


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


class Chromium:
    """The Browser port (statemachine/ports.py): Debian's Chromium driven through Playwright, the app run in the
    Sandbox it is handed."""

    def prove(
        self,
        scenario: dict[str, Any],
        out_dir: Path,
        rel_root: Path,
        *,
        app: AppSpec | None = None,
        app_cwd: Path | None = None,
        base_url: str | None = None,
        sandbox: Any = None,
    ) -> dict[str, Any]:
        return browser_proof(scenario, out_dir, rel_root, spec=app, app_cwd=app_cwd, base_url=base_url, jail=sandbox)
