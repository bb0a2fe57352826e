"""What the daemon shows: a live rich table in a terminal, JSON lines otherwise, and the same state over HTTP."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from statemachine import __version__
from statemachine.daemon import DaemonState

API_VERSION = 1


def state_json(state: DaemonState, repository: str | None = None) -> dict[str, Any]:
    """The state as /api/v1/state serves it: ``repository`` is the folder the daemon serves; each recent result also
    carries its pull request's number (``pull_request_number``, from its address), None without one."""
    data: dict[str, Any] = {"version": API_VERSION, "kind": "daemon-state", "orch": __version__}
    data.update(repository=repository, **asdict(state))
    data["recent"] = [{**r, "pull_request_number": pull_number(r.get("pull_request"))} for r in state.recent]
    return data


def pull_number(url: object) -> int | None:
    """The number at the end of a pull request's address (``https://github.com/o/r/pull/7``, ``local:pull/7``)."""
    tail = str(url or "").rstrip("/").rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


class JsonLines:
    """Non-terminal output: every daemon event as one JSON object per line."""

    def event(self, record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"version": API_VERSION, **record}, default=str) + "\n")
        sys.stdout.flush()

    def tick(self, state: DaemonState) -> None:
        pass

    def close(self) -> None:
        pass


class RichTable:
    """Terminal output: a live table of running issues, the queue and recent results."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        self.events: list[str] = []
        self.url: str | None = None  # where --http serves the page, shown under the tables for as long as it runs

    def event(self, record: dict[str, Any]) -> None:
        if record.get("event") == "http" and record.get("url"):
            self.url = str(record["url"])
            return
        text = f"{record['at'][11:19]} {record['event']}" + (f" #{record['issue']}" if "issue" in record else "")
        if record.get("outcome"):
            text += f" -> {record['outcome']}"
        self.events = (self.events + [text])[-6:]

    def tick(self, state: DaemonState) -> None:
        from rich.console import Group
        from rich.table import Table

        run = Table(title=f"running ({len(state.running)})" + ("  [stopping]" if state.stopping else ""), expand=True)
        for col in ("issue", "state", "elapsed", "agent", "tokens", "title"):
            run.add_column(col)
        for r in state.running:
            agent = r.get("agent") or {}
            activity = f"{agent.get('log_bytes', 0)} B, idle {agent.get('idle_seconds', 0)}s" if agent else "-"
            tokens = r.get("tokens") or {}
            tok = " / ".join(f"{k} {v}" for k, v in tokens.items()) if tokens else "-"
            run.add_row(f"#{r['issue']}", r["state"], f"{r['elapsed_seconds']:.0f}s", activity, tok, r["title"][:50])
        queue = Table(title=f"queue ({len(state.queue)})", expand=True)
        queue.add_column("issue")
        queue.add_column("owns")
        queue.add_column("title")
        for q in state.queue[:10]:
            queue.add_row(f"#{q['issue']}", ", ".join(q["owns"]) or "(none: runs alone)", q["title"][:50])
        recent = Table(title="recent results", expand=True)
        for col in ("issue", "outcome", "elapsed", "pull request", "error", "title"):
            recent.add_column(col)
        for r in state.recent[:8]:
            number = pull_number(r.get("pull_request"))
            recent.add_row(
                f"#{r['issue']}",
                r["outcome"],
                f"{r['elapsed_seconds']:.0f}s",
                f"#{number}" if number else "-",
                str(r.get("error") or "-")[:60],
                r["title"][:50],
            )
        footer = "  ".join(self.events[-3:])
        if self.url:
            footer += ("\n" if footer else "") + f"live view: {self.url} (JSON: {self.url}api/v1/state)"
        if state.budget and state.budget.get("line"):
            footer += ("\n" if footer else "") + str(state.budget["line"])
        if state.last_error:
            footer += f"\nlast error: {state.last_error}"
        self.live.update(Group(run, queue, recent, footer))

    def close(self) -> None:
        self.live.stop()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orch daemon</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; }
.badge { padding: 0 .4rem; border-radius: .6rem; background: #ddf4ff; } #status.stopping { color: #bc4c00; }
</style></head>
<body>
<h1>orch daemon <span id="status"></span></h1>
<p>Repository: <code id="repository"></code></p>
<p id="last-error" hidden>Last error: <span></span></p>
<p id="budget" hidden></p>
<h2>Running</h2><table id="running"><thead><tr><th>Issue</th><th>State</th><th>Elapsed</th><th>Agent</th><th>Tokens</th><th>Title</th></tr></thead><tbody></tbody></table>
<h2>Queue</h2><table id="queue"><thead><tr><th>Issue</th><th>Owns</th><th>Title</th></tr></thead><tbody></tbody></table>
<h2>Recent results</h2><table id="recent"><thead><tr><th>Issue</th><th>Outcome</th><th>Elapsed</th><th>Pull request</th><th>Last error</th><th>Title</th></tr></thead><tbody></tbody></table>
<script>
function cell(t) { const td = document.createElement('td'); td.textContent = t; return td; }
function fill(id, rows, cols) {
  const body = document.querySelector('#' + id + ' tbody'); body.replaceChildren();
  for (const r of rows) { const tr = document.createElement('tr'); tr.dataset.issue = r.issue;
    for (const c of cols) tr.appendChild(cell(c(r))); body.appendChild(tr); }
}
async function refresh() {
  try {
    const s = await (await fetch('/api/v1/state')).json();
    const st = document.getElementById('status');
    st.textContent = s.stopping ? 'stopping' : 'serving (' + s.runs_started + ' runs started)';
    st.className = s.stopping ? 'stopping' : '';
    document.getElementById('repository').textContent = s.repository || '(unknown)';
    const le = document.getElementById('last-error'); le.hidden = !s.last_error;
    le.querySelector('span').textContent = s.last_error || '';
    const bu = document.getElementById('budget'); bu.hidden = !s.budget; bu.textContent = s.budget ? s.budget.line : '';
    fill('running', s.running, [r => '#' + r.issue, r => r.state, r => Math.round(r.elapsed_seconds) + 's',
      r => r.agent ? r.agent.log_bytes + ' B' : '-', r => r.tokens ? JSON.stringify(r.tokens) : '-', r => r.title]);
    fill('queue', s.queue, [r => '#' + r.issue, r => r.owns.join(', ') || '(runs alone)', r => r.title]);
    fill('recent', s.recent, [r => '#' + r.issue, r => r.outcome, r => Math.round(r.elapsed_seconds) + 's',
      r => r.pull_request_number ? '#' + r.pull_request_number : '-', r => r.error || '-', r => r.title]);
  } catch (e) { document.getElementById('status').textContent = 'unreachable'; }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


def serve(host: str, port: int, get_state: Any, repository: str | None = None) -> ThreadingHTTPServer:
    """Serve /api/v1/state (JSON) and / (the page) on a background thread; returns the server (call shutdown()).
    ``repository``: the folder the daemon serves, shown on the page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?")[0] == "/api/v1/state":
                body = json.dumps(state_json(get_state(), repository), default=str).encode()
                ctype = "application/json"
            elif self.path.split("?")[0] in ("/", "/index.html"):
                body, ctype = PAGE.encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
