"""A scripted, Gemini-API-compatible HTTP server on 127.0.0.1 for driving the real Gemini CLI.

Gemini CLI (with ``GOOGLE_GEMINI_BASE_URL`` pointing here) asks
``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` or ``...:generateContent``. The main agent loop is a
request whose body offers tools (``functionDeclarations``); it is answered from a script: turn *n* is chosen by how
many model turns the request's conversation already holds, so a client retry of the same request gets the same
answer. Side requests the CLI makes on its own (routing, next-speaker or loop checks, titles: no tools) get a small,
well-formed answer (a JSON object when the request asks for JSON), ``countTokens`` a count. Every request is
recorded for assertions.

A turn is a list of parts or a callable ``(request_body) -> list of parts``; a part is ``text("...")`` or
``call("write_file", {...})``. ``hang=True`` makes every generate request block without a reply until the server
stops (an unresponsive API).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.httpkit import LocalServer

Part = dict[str, Any]
Turn = list[Part] | Callable[[dict[str, Any]], list[Part]]

PROMPT_TOKENS = 1000  # reported per main-loop request
CANDIDATE_TOKENS = 50  # reported per main-loop request
CACHED_TOKENS = 7  # reported per main-loop request
THOUGHT_TOKENS = 3  # reported per main-loop request

REPORT_PATH = re.compile(r"(/[^\s`'\"<>]*report\.json)")
_METHOD = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")


def text(value: str) -> Part:
    return {"text": value}


def call(name: str, args: dict[str, Any]) -> Part:
    return {"functionCall": {"name": name, "args": args}}


def contents_text(body: dict[str, Any], role: str = "user") -> str:
    """Every text part of one role in a request's conversation (function responses included)."""
    out = []
    for content in body.get("contents") or []:
        if content.get("role", "user") != role:
            continue
        for part in content.get("parts") or []:
            if "text" in part:
                out.append(str(part["text"]))
            elif "functionResponse" in part:
                out.append(json.dumps(part["functionResponse"]))
    return "\n".join(out)


def report_path_in(body: dict[str, Any]) -> str:
    """The completion report path named in the prompt (orch's prompts state it)."""
    match = REPORT_PATH.search(contents_text(body))
    if not match:
        raise AssertionError(f"no report path in the prompt: {contents_text(body)[:500]!r}")
    return match.group(1)


def function_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The functionResponse parts of a request's conversation, oldest first."""
    return [
        part["functionResponse"]
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if isinstance(part, dict) and "functionResponse" in part
    ]


def tool_names(body: dict[str, Any]) -> list[str]:
    return sorted(d["name"] for t in body.get("tools") or [] for d in t.get("functionDeclarations") or [])


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    model: str = ""
    verb: str = ""
    usage: dict[str, int] | None = None  # what the answer reported

    @property
    def is_main_loop(self) -> bool:
        return self.verb in ("generateContent", "streamGenerateContent") and bool(tool_names(self.body or {}))


@dataclass
class ScriptedGemini(LocalServer):
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
        match = _METHOD.match(url.path)
        rec = Recorded(
            method,
            url.path,
            url.query,
            {k.lower(): v for k, v in h.headers.items()},
            body,
            model=match.group(2) if match else "",
            verb=match.group(3) if match else "",
        )
        with self._lock:
            self.requests.append(rec)
        if method != "POST" or match is None or not isinstance(body, dict):
            self._send_json(
                h, 404, {"error": {"code": 404, "message": f"{url.path} not scripted", "status": "NOT_FOUND"}}
            )
            return
        if rec.verb == "countTokens":
            self._send_json(h, 200, {"totalTokens": 100})
            return
        if self.hang:
            self._stop.wait()  # never answer: an unresponsive API
            return
        response = self._answer(rec)
        if rec.verb == "streamGenerateContent" and parse_qs(url.query).get("alt") == ["sse"]:
            self._send_sse(h, response)
        elif rec.verb == "streamGenerateContent":
            self._send_json(h, 200, [response])
        else:
            self._send_json(h, 200, response)

    def _answer(self, rec: Recorded) -> dict[str, Any]:
        body = rec.body
        if not rec.is_main_loop:
            # A side request (routing, next-speaker or loop check, title): a short, harmless answer.
            config = body.get("generationConfig") or {}
            if config.get("responseMimeType") == "application/json" or config.get("responseJsonSchema"):
                parts = [text(json.dumps(self._side_json(config)))]
            else:
                parts = [text("Scripted session")]
            usage = {"promptTokenCount": 10, "candidatesTokenCount": 3, "totalTokenCount": 13}
            return self._response(rec, parts, usage)
        step = sum(1 for c in body.get("contents") or [] if c.get("role") == "model")
        if step < len(self.turns):
            turn = self.turns[step]
            parts = turn(body) if callable(turn) else turn
        else:
            parts = [text(self.final_text)]
        usage = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": CANDIDATE_TOKENS,
            "cachedContentTokenCount": CACHED_TOKENS,
            "thoughtsTokenCount": THOUGHT_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + CANDIDATE_TOKENS + THOUGHT_TOKENS,
        }
        return self._response(rec, parts, usage)

    @staticmethod
    def _side_json(config: dict[str, Any]) -> dict[str, Any]:
        """A JSON answer that fits the common side-request schemas: every required string gets a word."""
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        out: dict[str, Any] = {}
        for name, spec in (schema.get("properties") or {}).items():
            kind = str(spec.get("type", "string")).lower()
            if spec.get("enum"):
                out[name] = spec["enum"][0]
            elif kind == "boolean":
                out[name] = False
            elif kind in ("number", "integer"):
                out[name] = spec.get("minimum", 0)
            elif kind == "array":
                out[name] = []
            elif kind == "object":
                out[name] = {}
            else:
                out[name] = "user" if name == "next_speaker" else "scripted"
        return out

    @staticmethod
    def _response(rec: Recorded, parts: list[Part], usage: dict[str, int]) -> dict[str, Any]:
        rec.usage = usage
        return {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage,
            "modelVersion": rec.model or "gemini-scripted",
            "responseId": f"resp-{len(rec.path)}-{id(rec)}",
        }

    @staticmethod
    def _send_json(h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _send_sse(h: BaseHTTPRequestHandler, response: dict[str, Any]) -> None:
        """The answer as server-sent events: one part per event, the last with the finish reason and the usage, as the API sends them."""
        parts = response["candidates"][0]["content"]["parts"] or [text("")]
        chunks: list[dict[str, Any]] = [
            {
                "candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                "modelVersion": response["modelVersion"],
                "responseId": response["responseId"],
            }
            for part in parts
        ]
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = response["usageMetadata"]
        data = b"".join(f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
