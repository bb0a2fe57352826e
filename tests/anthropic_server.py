"""A scripted, Anthropic-Messages-compatible HTTP server on 127.0.0.1 for driving the real Claude Code CLI.

The main agent loop (a ``POST /v1/messages`` whose body offers tools) is answered from a script: turn *n*
is chosen by how many assistant turns the request's conversation already holds, so a client retry of the
same request gets the same answer. Side requests Claude Code makes on its own (title or topic requests
without tools, ``count_tokens``, model listings, anything else) get small, well-formed answers. Every
request is recorded for assertions.

A turn is a list of blocks or a callable ``(request_body) -> list of blocks``; a block is
``text("...")`` or ``tool_use("Write", {...})``. ``hang=True`` makes every ``/v1/messages`` request block
without a reply until the server stops (an unresponsive API).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import urlsplit

from tests.httpkit import LocalServer

Block = dict[str, Any]
Turn = list[Block] | Callable[[dict[str, Any]], list[Block]]

INPUT_TOKENS = 1000  # reported per main-loop request
OUTPUT_TOKENS = 50  # reported per main-loop request
CACHE_READ_TOKENS = 7  # reported per main-loop request


REPORT_PATH = re.compile(r"(/[^\s`'\"<>]*report\.json)")


def text(value: str) -> Block:
    return {"type": "text", "text": value}


def tool_use(name: str, args: dict[str, Any]) -> Block:
    return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": args}


def message_text(message: dict[str, Any]) -> str:
    """The text of one Messages-API message, whether its content is a string or a list of blocks."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            parts.append(inner if isinstance(inner, str) else message_text({"content": inner}))
    return "\n".join(parts)


def prompt_text(body: dict[str, Any]) -> str:
    """Everything the user said in a request (Claude Code adds its own reminders next to the prompt)."""
    return "\n".join(message_text(m) for m in body.get("messages", []) if m.get("role") == "user")


def report_path_in(body: dict[str, Any]) -> str:
    """The completion report path named in the prompt (orch's prompts state it)."""
    match = REPORT_PATH.search(prompt_text(body))
    if not match:
        raise AssertionError(f"no report path in the prompt: {prompt_text(body)[:500]!r}")
    return match.group(1)


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's conversation, oldest first."""
    return [
        b
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any

    @property
    def is_main_loop(self) -> bool:
        return self.path == "/v1/messages" and isinstance(self.body, dict) and bool(self.body.get("tools"))


@dataclass
class ScriptedAnthropic(LocalServer):
    turns: list[Turn] = field(default_factory=list)
    hang: bool = False
    final_text: str = "Done."
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._init_serving()

    # -- lifecycle -------------------------------------------------------------------------------
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

            def do_HEAD(self) -> None:
                owner._handle(self, "HEAD")

        return self._serve(Handler, 0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- queries for tests -----------------------------------------------------------------------
    def main_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.is_main_loop]

    def paths(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.requests]

    # -- handling --------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        rec = Recorded(method, url.path, url.query, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(rec)

        if method == "POST" and url.path == "/v1/messages" and isinstance(body, dict):
            if self.hang:
                self._stop.wait()  # never answer: an unresponsive API
                return
            blocks, stop_reason, usage = self._answer(rec)
            if body.get("stream"):
                self._send_sse(h, body, blocks, stop_reason, usage)
            else:
                self._send_json(h, 200, self._message(body, blocks, stop_reason, usage))
            return
        if method == "POST" and url.path == "/v1/messages/count_tokens":
            self._send_json(h, 200, {"input_tokens": 100})
            return
        if method == "GET" and url.path.rstrip("/") == "/v1/models":
            self._send_json(h, 200, {"data": [], "has_more": False, "first_id": None, "last_id": None})
            return
        if method == "HEAD":
            h.send_response(200)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self._send_json(
            h, 404, {"type": "error", "error": {"type": "not_found_error", "message": f"{url.path} not scripted"}}
        )

    def _answer(self, rec: Recorded) -> tuple[list[Block], str, dict[str, int]]:
        body = rec.body
        if not rec.is_main_loop:
            # A side request (title, topic, quota probe): a short, harmless answer.
            return [text("Scripted session")], "end_turn", {"input_tokens": 10, "output_tokens": 3}
        step = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        if step < len(self.turns):
            turn = self.turns[step]
            blocks = turn(body) if callable(turn) else turn
        else:
            blocks = [text(self.final_text)]
        # Fresh tool ids per answer, so a retried request never reuses one.
        blocks = [dict(b, id=f"toolu_{uuid.uuid4().hex[:24]}") if b["type"] == "tool_use" else b for b in blocks]
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        usage = {
            "input_tokens": INPUT_TOKENS,
            "output_tokens": OUTPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": CACHE_READ_TOKENS,
        }
        return blocks, stop_reason, usage

    @staticmethod
    def _message(body: dict[str, Any], blocks: list[Block], stop_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-scripted"),
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    @staticmethod
    def _send_json(h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        h.end_headers()
        h.wfile.write(data)

    def _send_sse(
        self,
        h: BaseHTTPRequestHandler,
        body: dict[str, Any],
        blocks: list[Block],
        stop_reason: str,
        usage: dict[str, int],
    ) -> None:
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
        start_usage["output_tokens"] = 1
        msg = self._message(body, [], None, start_usage)  # type: ignore[arg-type]
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": msg})]
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                    )
                )
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": block["text"]},
                        },
                    )
                )
            else:
                events.append(
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": i,
                            "content_block": {
                                "type": "tool_use",
                                "id": block["id"],
                                "name": block["name"],
                                "input": {},
                            },
                        },
                    )
                )
                payload = json.dumps(block["input"])
                half = len(payload) // 2  # two partial chunks, as the real API streams them
                for part in (payload[:half], payload[half:]):
                    events.append(
                        (
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": i,
                                "delta": {"type": "input_json_delta", "partial_json": part},
                            },
                        )
                    )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        data = b"".join(f"event: {name}\ndata: {json.dumps(ev)}\n\n".encode() for name, ev in events)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
