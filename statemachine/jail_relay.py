"""Runs inside the jail, before the jailed command: carries connections between the jail's own loopback and
the Unix sockets orch serves outside it (statemachine/adapters/egress.py). Standard library only: it runs as
``python -I -S jail_relay.py --out PORT=SOCKET ... --in SOCKET=PORT ... -- COMMAND...``.

``--out PORT=SOCKET``: listen on 127.0.0.1:PORT inside the jail; each connection goes to SOCKET (orch's proxy,
or a model server on orch's loopback). ``--in SOCKET=PORT``: listen on SOCKET; each connection goes to
127.0.0.1:PORT inside the jail (the proof server). The command runs as this process's child; the relay ends
with it and exits with its status.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import Any


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def one(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    t = threading.Thread(target=one, args=(b, a), daemon=True)
    t.start()
    one(a, b)
    t.join()
    a.close()
    b.close()


def _serve(listener: socket.socket, connect: object) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return

        def handle(conn: socket.socket = conn) -> None:
            try:
                other = connect()  # type: ignore[operator]
            except OSError:
                conn.close()
                return
            _pipe(conn, other)
        threading.Thread(target=handle, daemon=True).start()


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("jail_relay: usage: --out PORT=SOCKET ... --in SOCKET=PORT ... -- COMMAND", file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1:]
    listeners: list[tuple[socket.socket, Any]] = []
    for flag, value in zip(opts[0::2], opts[1::2]):
        left, _, right = value.partition("=")
        if flag == "--out":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(left)))
            s.listen(64)

            def out(path: str = right) -> socket.socket:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(path)
                return c
            listeners.append((s, out))
        elif flag == "--in":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(left)
            s.listen(64)

            def into(port: int = int(right)) -> socket.socket:
                return socket.create_connection(("127.0.0.1", port), timeout=30)
            listeners.append((s, into))
    for s, connect in listeners:
        threading.Thread(target=_serve, args=(s, connect), daemon=True).start()
    pid = os.fork()
    if pid == 0:
        for s, _ in listeners:
            s.close()
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"orch: cannot start {command[0]!r} in the jail: {exc.strerror}", file=sys.stderr)
            os._exit(127)
    os.close(0)  # the command alone reads the prompt
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
