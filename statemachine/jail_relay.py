"""Runs inside the jail, before the jailed command: carries connections between the jail's own loopback and
the Unix sockets orch serves outside it (statemachine/adapters/egress.py). It runs as
``python -I -S jail_relay.py --out PORT=SOCKET ... --in SOCKET=PORT ... -- COMMAND...`` and imports only
built-in modules (``_socket``, ``_thread``, ``_signal``): the ``socket`` and ``threading`` modules would
triple its start-up, which every networked agent run pays.

``--out PORT=SOCKET``: listen on 127.0.0.1:PORT inside the jail; each connection goes to SOCKET (orch's proxy,
or a model server on orch's loopback). ``--in SOCKET=PORT``: listen on SOCKET; each connection goes to
127.0.0.1:PORT inside the jail (the proof server). The command runs as this process's child; the relay ends
with it and exits with its status.
"""

from __future__ import annotations

import _signal
import _socket
import _thread
import os
import sys

AF_INET, AF_UNIX, STREAM = _socket.AF_INET, _socket.AF_UNIX, _socket.SOCK_STREAM


def _wrap(fd: int) -> _socket.socket:
    return _socket.socket(fileno=fd)


def _one_way(src: _socket.socket, dst: _socket.socket, done: list[int]) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(_socket.SHUT_WR)
    except OSError:
        pass
    done.append(1)
    if len(done) == 2:
        src.close()
        dst.close()


def _pipe(a: _socket.socket, b: _socket.socket) -> None:
    done: list[int] = []
    _thread.start_new_thread(_one_way, (b, a, done))
    _one_way(a, b, done)


def _serve(listener: _socket.socket, family: int, address: str | tuple[str, int]) -> None:
    while True:
        try:
            fd, _ = listener._accept()  # type: ignore[attr-defined]
        except OSError:
            return
        conn = _wrap(fd)
        other = _socket.socket(family, STREAM)
        try:
            other.connect(address)
        except OSError:
            conn.close()
            other.close()
            continue
        _thread.start_new_thread(_pipe, (conn, other))


def main(argv: list[str]) -> int:
    if "--" not in argv:
        os.write(2, b"jail_relay: usage: --out PORT=SOCKET ... --in SOCKET=PORT ... -- COMMAND\n")
        return 2
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1 :]
    listeners: list[tuple[_socket.socket, int, str | tuple[str, int]]] = []
    for flag, value in zip(opts[0::2], opts[1::2]):
        left, _, right = value.partition("=")
        if flag == "--out":
            s = _socket.socket(AF_INET, STREAM)
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(left)))
            listeners.append((s, AF_UNIX, right))
        elif flag == "--in":
            s = _socket.socket(AF_UNIX, STREAM)
            s.bind(left)
            listeners.append((s, AF_INET, ("127.0.0.1", int(right))))
        else:
            continue
        s.listen(64)
    for s, family, address in listeners:
        _thread.start_new_thread(_serve, (s, family, address))
    pid = os.fork()
    if pid == 0:
        for s, _, _ in listeners:
            s.close()
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"orch: cannot start {command[0]!r} in the jail: {exc.strerror}\n".encode())
            os._exit(127)
    os.close(0)  # the command alone reads the prompt
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
