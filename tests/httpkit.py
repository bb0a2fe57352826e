"""What the scripted model servers share (tests/model_server.py, anthropic_server.py, gemini_server.py,
opencode_chat_server.py, aider_chat_server.py): serving a handler on 127.0.0.1, on a free port, in a thread, and
stopping it, which also releases any request a test left hanging (``_stop``).

Tests import from here, never from one another."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalServer:
    """A scripted server's lifecycle; a subclass builds its handler in ``start`` and ends it with ``_serve``."""

    _stop: threading.Event
    _httpd: ThreadingHTTPServer | None
    _thread: threading.Thread | None

    def _init_serving(self) -> None:
        self._stop = threading.Event()
        self._httpd = None
        self._thread = None

    def _serve(self, handler: type[BaseHTTPRequestHandler], poll_interval: float = 0.5) -> Self:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )
        self._thread.start()
        return self

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the server first"
        return int(self._httpd.server_address[1])
