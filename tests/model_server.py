"""A scripted OpenAI-compatible model server for driving the real Codex CLI in tests.

It speaks the part of the OpenAI Responses API that ``codex exec`` (0.169) uses: ``POST /v1/responses``
with ``stream: true``, answered as server-sent events (``response.created``, ``response.output_item.done``,
``response.completed`` with token usage), plus ``GET /v1/models``. Each ``/v1/responses`` request takes
the next step of a script; a step is a tool call that runs a shell command (``Shell``), a final assistant
message (``Message``), an HTTP error (``Fail``) or ``Hang`` (accept the request and never answer, to exercise
idle timeouts). Every request is recorded
(path, headers, raw body and parsed JSON) so a test can assert on what the agent sent.

Tool calls adapt to the tools the client offers: ``exec_command`` (``{"cmd": ...}``, codex's unified exec),
``shell_command`` (``{"command": "..."}``) or ``shell`` (``{"command": ["bash", "-lc", ...]}``).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from tests.httpkit import LocalServer

# What a step may compute from the request it answers (so a command can use e.g. the report path in the prompt).
Text = str | Callable[["Recorded"], str]


@dataclass
class Recorded:
    """One HTTP request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: str
    body: Any = None

    @property
    def tool_names(self) -> list[str]:
        names: list[str] = []
        for tool in (self.body or {}).get("tools", []) if isinstance(self.body, dict) else []:
            if isinstance(tool, dict) and tool.get("name"):
                names.append(str(tool["name"]))
        return names

    def input_items(self) -> list[dict[str, Any]]:
        items = (self.body or {}).get("input", []) if isinstance(self.body, dict) else []
        return [i for i in items if isinstance(i, dict)]

    def user_texts(self) -> list[str]:
        """Every input_text of every user message, in order."""
        out: list[str] = []
        for item in self.input_items():
            if item.get("type") == "message" and item.get("role") == "user":
                for part in item.get("content") or []:
                    if isinstance(part, dict) and part.get("type") == "input_text":
                        out.append(str(part.get("text", "")))
        return out

    @property
    def prompt(self) -> str:
        """The task prompt: the last user message that is not codex's own environment context."""
        texts = [t for t in self.user_texts() if not t.lstrip().startswith("<environment_context>")]
        return texts[-1] if texts else ""

    def tool_outputs(self) -> list[str]:
        """The outputs of earlier tool calls that the client sends back."""
        out: list[str] = []
        for item in self.input_items():
            if item.get("type") in ("function_call_output", "custom_tool_call_output"):
                value = item.get("output")
                if isinstance(value, (dict, list)):
                    value = json.dumps(value)
                out.append(str(value))
        return out


@dataclass
class Shell:
    """A tool call that runs ``command`` (a string for the shell) in the agent's workspace."""

    command: Text
    input_tokens: int = 100
    output_tokens: int = 20
    extra: dict[str, Any] = field(default_factory=dict)  # more tool arguments, e.g. a sandbox escalation request


@dataclass
class Message:
    """A final assistant message; codex ends the turn after it."""

    text: Text
    input_tokens: int = 150
    output_tokens: int = 10


@dataclass
class Hang:
    """Accept the request, send nothing, and hold the connection until the server stops."""


@dataclass
class Fail:
    """An HTTP error with an OpenAI-style error body (4xx other than 429 are not retried by codex)."""

    status: int = 400
    message: str = "scripted failure"


Step = Shell | Message | Hang | Fail


def _resolve(value: Text, request: Recorded) -> str:
    return value(request) if callable(value) else value


REPORT_PATH = re.compile(r"(/[^\s`'\"<>]*report\.json)")


def report_path_in(request: Recorded) -> str:
    """The completion report path named in the prompt the agent received (orch's prompt states it)."""
    match = REPORT_PATH.search(request.prompt)
    if not match:
        raise AssertionError(f"no report path in the prompt: {request.prompt[:500]!r}")
    return match.group(1)


@dataclass
class ModelServer(LocalServer):
    """``with ModelServer([Shell(...), Message(...)]) as srv:`` then point the agent at ``srv.base_url``."""

    script: list[Step]
    model: str = "orch-scripted"
    requests: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._steps = iter(self.script)
        self._ids = itertools.count(1)
        self._init_serving()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._record(self, b"")
                if self.path.rstrip("/").endswith("/models"):
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": server.model, "object": "model", "created": 0, "owned_by": "orch-tests"}],
                        },
                    )
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                rec = server._record(self, raw)
                if not self.path.rstrip("/").endswith("/responses"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    step = next(server._steps, None)
                if step is None:
                    server.errors.append(f"request {len(server.requests)} arrived after the script ended")
                    self._json(500, {"error": {"message": "the scripted model has no more steps"}})
                    return
                if isinstance(step, Hang):
                    server._stop.wait()
                    self.close_connection = True
                    return
                if isinstance(step, Fail):
                    self._json(
                        step.status,
                        {
                            "error": {
                                "message": step.message,
                                "type": "invalid_request_error",
                                "code": None,
                                "param": None,
                            }
                        },
                    )
                    return
                try:
                    events = server._events(step, rec)
                except Exception as exc:  # noqa: BLE001 - a test's callable failed: answer, and keep the reason
                    server.errors.append(f"step {step!r} failed: {exc}")
                    self._json(500, {"error": {"message": str(exc)}})
                    return
                body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return self._serve(Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def responses(self) -> list[Recorded]:
        """The /v1/responses requests, in order (one per model turn)."""
        return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/").endswith("/responses")]

    # -- internals -----------------------------------------------------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, raw: bytes) -> Recorded:
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        rec = Recorded(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, text, body)
        with self._lock:
            self.requests.append(rec)
        return rec

    def _events(self, step: Step, request: Recorded) -> list[dict[str, Any]]:
        n = next(self._ids)
        rid = f"resp_{n}"
        if isinstance(step, Shell):
            item = self._tool_call(_resolve(step.command, request), request, f"call_{n}", f"fc_{n}", step.extra)
            usage = (step.input_tokens, step.output_tokens)
        elif isinstance(step, Message):
            item = {
                "type": "message",
                "id": f"msg_{n}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": _resolve(step.text, request), "annotations": []}],
            }
            usage = (step.input_tokens, step.output_tokens)
        else:  # pragma: no cover - Hang is handled before
            raise TypeError(step)
        created = {
            "type": "response.created",
            "response": {"id": rid, "object": "response", "status": "in_progress", "model": self.model, "output": []},
        }
        added = {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress"}}
        done = {"type": "response.output_item.done", "output_index": 0, "item": item}
        completed = {
            "type": "response.completed",
            "response": {
                "id": rid,
                "object": "response",
                "status": "completed",
                "model": self.model,
                "output": [item],
                "usage": {
                    "input_tokens": usage[0],
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": usage[1],
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": usage[0] + usage[1],
                },
            },
        }
        return [created, added, done, completed]

    @staticmethod
    def _tool_call(
        command: str, request: Recorded, call_id: str, item_id: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        names = request.tool_names
        if "exec_command" in names:
            name, args = "exec_command", {"cmd": command, "login": False, "tty": False, "yield_time_ms": 10000}
        elif "shell_command" in names:
            name, args = "shell_command", {"command": command, "login": False}
        elif "shell" in names:
            name, args = "shell", {"command": ["bash", "-c", command]}
        else:
            raise AssertionError(f"the client offered no shell tool; tools: {names}")
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": json.dumps({**args, **extra}),
            "status": "completed",
        }
