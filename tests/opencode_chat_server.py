"""A scripted OpenAI Chat Completions server (``POST /v1/chat/completions``) for driving the real OpenCode CLI.

tests/model_server.py speaks the Responses API (codex); this one speaks Chat Completions, the API OpenCode's
``@ai-sdk/openai-compatible`` provider uses. Answers stream as server-sent ``chat.completion.chunk`` events
ending with ``data: [DONE]``; the last chunk carries the token usage. A request takes the next step of the
script: a tool call (``Tool``: any tool the client offered, with JSON arguments), a final assistant message
(``Say``), an HTTP error (``Fail``) or ``Hang`` (accept and never answer, for idle timeouts). Side requests a
CLI makes on its own (OpenCode's session title, recognised by ``side``) are answered with ``side_text``
without taking a step. Every request is recorded so a test can assert on what the agent sent.
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


@dataclass
class Chat:
    """One HTTP request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: str
    body: Any = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        items = self.body.get("messages", []) if isinstance(self.body, dict) else []
        return [m for m in items if isinstance(m, dict)]

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools", []) if isinstance(self.body, dict) else []
        return [
            str(t["function"]["name"])
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
        ]

    def texts(self, role: str) -> list[str]:
        out: list[str] = []
        for m in self.messages:
            if m.get("role") != role:
                continue
            content = m.get("content")
            if isinstance(content, str):
                out.append(content)
            elif isinstance(content, list):
                out += [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return out

    @property
    def prompt(self) -> str:
        """Every user message's text, joined."""
        return "\n".join(self.texts("user"))

    def tool_outputs(self) -> list[str]:
        """The results of earlier tool calls that the client sends back."""
        return [str(m.get("content")) for m in self.messages if m.get("role") == "tool"]


Args = dict[str, Any] | Callable[[Chat], dict[str, Any]]
Text = str | Callable[[Chat], str]


@dataclass
class Tool:
    """A call of the client's tool ``name`` with ``args`` (or what ``args(request)`` returns)."""

    name: str
    args: Args
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass
class Say:
    """A final assistant message: the agent's turn ends after it."""

    text: Text
    input_tokens: int = 150
    output_tokens: int = 10


@dataclass
class Hang:
    """Accept the request, send nothing, and hold the connection until the server stops."""


@dataclass
class Fail:
    """An HTTP error with an OpenAI-style error body."""

    status: int = 400
    message: str = "scripted failure"


Step = Tool | Say | Hang | Fail
REPORT_PATH = re.compile(r"(/[^\s`'\"<>]*report\.json)")


def report_path_in(request: Chat) -> str:
    """The completion report path named in the prompt the agent received (orch's prompt states it)."""
    match = REPORT_PATH.search(request.prompt)
    if not match:
        raise AssertionError(f"no report path in the prompt: {request.prompt[:500]!r}")
    return match.group(1)


def is_title_request(request: Chat) -> bool:
    """OpenCode's own side request: a session title, asked of the model with no tools."""
    return not request.tool_names and any("title generator" in s.lower() for s in request.texts("system"))


@dataclass
class ChatServer(LocalServer):
    """``with ChatServer([Tool(...), Say(...)]) as srv:`` then point the agent at ``srv.base_url``."""

    script: list[Step]
    model: str = "orch-scripted"
    side: Callable[[Chat], bool] = is_title_request
    side_text: str = "Scripted session"
    requests: list[Chat] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._steps = iter(self.script)
        self._ids = itertools.count(1)
        self._init_serving()

    def start(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._record(self, b"")
                if self.path.rstrip("/").endswith("/models"):
                    model = {"id": server.model, "object": "model", "created": 0, "owned_by": "orch-tests"}
                    self._json(200, {"object": "list", "data": [model]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                rec = server._record(self, self.rfile.read(length) if length else b"")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if server.side(rec):
                    self._stream(server._chunks(Say(server.side_text, 10, 3), rec), rec)
                    return
                with server._lock:
                    step = next(server._steps, None)
                if step is None:
                    server.errors.append(f"request {len(server.requests)} arrived after the script ended")
                    self._json(500, {"error": {"message": "the scripted model has no more steps"}})
                elif isinstance(step, Hang):
                    server._stop.wait()
                    self.close_connection = True
                elif isinstance(step, Fail):
                    error = {"message": step.message, "type": "invalid_request_error", "code": None, "param": None}
                    self._json(step.status, {"error": error})
                else:
                    try:
                        chunks = server._chunks(step, rec)
                    except Exception as exc:  # noqa: BLE001 - a test's callable failed: answer, and keep the reason
                        server.errors.append(f"step {step!r} failed: {exc}")
                        self._json(500, {"error": {"message": str(exc)}})
                        return
                    self._stream(chunks, rec)

            def _stream(self, chunks: list[dict[str, Any]], rec: Chat) -> None:
                if isinstance(rec.body, dict) and rec.body.get("stream") is not True:
                    self._json(200, server._whole(chunks))
                    return
                body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
    def turns(self) -> list[Chat]:
        """The chat requests that took a step of the script, in order (one per model turn)."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.path.rstrip("/").endswith("/chat/completions") and not self.side(r)
        ]

    def _record(self, handler: BaseHTTPRequestHandler, raw: bytes) -> Chat:
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        rec = Chat(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, text, body)
        with self._lock:
            self.requests.append(rec)
        return rec

    def _chunks(self, step: Tool | Say, request: Chat) -> list[dict[str, Any]]:
        n = next(self._ids)
        base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0, "model": self.model}
        if isinstance(step, Tool):
            if step.name not in request.tool_names:
                raise AssertionError(f"the client offered no {step.name!r} tool; tools: {request.tool_names}")
            args = step.args(request) if callable(step.args) else step.args
            call = {
                "index": 0,
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": step.name, "arguments": json.dumps(args)},
            }
            delta: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            text = step.text(request) if callable(step.text) else step.text
            delta, finish = {"role": "assistant", "content": text}, "stop"
        usage = {
            "prompt_tokens": step.input_tokens,
            "completion_tokens": step.output_tokens,
            "total_tokens": step.input_tokens + step.output_tokens,
        }
        return [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {**base, "choices": [], "usage": usage},
        ]

    def _whole(self, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        """The same answer as one ``chat.completion`` object, for a client that did not ask to stream."""
        delta = chunks[0]["choices"][0]["delta"]
        message = {"role": "assistant", "content": delta.get("content")}
        if delta.get("tool_calls"):
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in delta["tool_calls"]]
        return {
            **{k: v for k, v in chunks[0].items() if k != "choices"},
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": chunks[1]["choices"][0]["finish_reason"]}],
            "usage": chunks[-1]["usage"],
        }
