"""A scripted OpenAI Chat Completions server on 127.0.0.1, for driving the real Aider CLI in tests.

It speaks the part of the API that aider (through litellm) uses: ``POST /v1/chat/completions``, streamed as
server-sent events (``chat.completion.chunk`` deltas, then a chunk with ``finish_reason`` and one with
``usage``) or answered as one ``chat.completion`` object, plus ``GET /v1/models``. Each completion request
takes the next reply of the script (a string, or a callable ``(request_body) -> str``); when the script is
spent, the server answers ``final_text``. ``hang=True`` makes every completion request wait, unanswered,
until the server stops (an unresponsive model); ``fail_status`` answers them with that HTTP error. Every request is recorded for assertions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from tests.httpkit import LocalServer

Reply = str | Callable[[dict[str, Any]], str]

PROMPT_TOKENS = 1234  # reported per completion request
COMPLETION_TOKENS = 56  # reported per completion request
REPORT_PATH = re.compile(r"(/[^\s`'\"<>]*report\.json)")


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(
        str(part.get("text", "")) for part in content or [] if isinstance(part, dict) and part.get("type") == "text"
    )


def user_text(body: dict[str, Any]) -> str:
    """Everything the user messages of a request say (aider adds its own examples and reminders around the prompt)."""
    return "\n".join(message_text(m) for m in body.get("messages", []) if m.get("role") == "user")


def report_path_in(body: dict[str, Any]) -> str:
    """The completion report path orch's prompt names."""
    match = REPORT_PATH.search(user_text(body))
    if not match:
        raise AssertionError(f"no report path in the prompt: {user_text(body)[-800:]!r}")
    return match.group(1)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ScriptedChat(LocalServer):
    replies: list[Reply] = field(default_factory=list)
    hang: bool = False
    fail_status: int | None = None  # answer every completion request with this HTTP error
    final_text: str = "Done."
    model: str = "scripted"
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._init_serving()
        self._answered = 0

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                owner._handle(self, "GET")

            def do_POST(self) -> None:
                owner._handle(self, "POST")

        return self._serve(Handler, 0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- serving ---------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(Recorded(method, path, {k.lower(): v for k, v in handler.headers.items()}, body))
        if method == "GET" and path.endswith("/models"):
            self._json(handler, {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "orch"}]})
        elif method == "POST" and path.endswith("/chat/completions") and isinstance(body, dict):
            if self.hang:
                self._stop.wait()
                return
            if self.fail_status is not None:
                error = {"message": "scripted failure: invalid api key", "type": "invalid_request_error"}
                self._json(handler, {"error": error}, self.fail_status)
                return
            with self._lock:
                index = self._answered
                self._answered += 1
            reply = self.replies[index] if index < len(self.replies) else self.final_text
            text = reply(body) if callable(reply) else reply
            if body.get("stream"):
                self._stream(handler, text, str(body.get("model") or self.model))
            else:
                self._json(handler, self._completion(text, str(body.get("model") or self.model)))
        else:
            self._json(handler, {"error": {"message": f"no route for {method} {path}"}}, 404)

    @staticmethod
    def _usage() -> dict[str, int]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }

    def _completion(self, text: str, model: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": self._usage(),
        }

    def _stream(self, handler: BaseHTTPRequestHandler, text: str, model: str) -> None:
        base = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = model
        pieces = [text[i : i + 40] for i in range(0, len(text), 40)] or [""]
        chunks: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        ]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        chunks.append({**base, "choices": [], "usage": self._usage()})
        payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        data = payload.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
