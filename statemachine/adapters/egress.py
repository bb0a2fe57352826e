"""The jail's only ways out (and, for the proof server, in): Unix sockets in a folder bound into the jail.

A jail has its own network namespace with nothing but its own loopback. When a run may reach hosts, orch
starts, outside the jail, an HTTP proxy on a Unix socket that allows ``CONNECT host:port`` (and plain
``http://`` requests) to the policy's hosts only and refuses the rest, recording each refusal; inside the
jail, ``statemachine/jail_relay.py`` listens on the jail's loopback and carries each connection to that
socket, and the jailed process gets ``HTTPS_PROXY``/``HTTP_PROXY`` pointing at it. A model server on
orch's own loopback (a local model, the tests' scripted servers) is reached the same way, on the same
port, as if it were local. The proof server listens inside the jail; orch reaches it through a socket
the relay serves. Who can write these sockets: orch creates the folder (mode 0700, outside the jail);
the jail sees the egress folder read-only and can only connect, so the allowlist is orch's alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType

PROXY_PORT = 3128
NET_DIR = "/run/orch/net"  # the egress sockets, bound read-only into the jail
INGRESS_DIR = "/run/orch/ingress"  # the proof server's socket, made by the relay inside the jail
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
HEAD_LIMIT = 16 * 1024


def parse_host(text: str, default_port: int = 443) -> tuple[str, int]:
    """``host``, ``host:port`` or a URL -> (host, port); hosts compare case-insensitively."""
    raw = text.strip()
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        default_port = 80 if scheme == "http" else 443
        raw = raw.split("/", 1)[0]
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = raw.rpartition(":") if raw.count(":") == 1 else (raw, "", "")
    return host.lower(), int(port) if port.isdigit() else default_port


def split_hosts(hosts: tuple[str, ...] | None) -> tuple[tuple[str, ...] | None, tuple[int, ...]]:
    """Hosts for the proxy, and ports on orch's loopback (``127.0.0.1:8080``, ``localhost:11434``) that the jail
    reaches on its own loopback instead."""
    if hosts is None:
        return None, ()
    remote, ports = [], []
    for h in hosts:
        host, port = parse_host(h)
        (ports.append(port) if host in LOOPBACK_HOSTS else remote.append(h))
    return tuple(remote), tuple(ports)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes."""

    def one(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (dst,):
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    t = threading.Thread(target=one, args=(b, a), daemon=True)
    t.start()
    one(a, b)
    t.join(timeout=600)
    for s in (a, b):
        try:
            s.close()
        except OSError:
            pass


class _Server(threading.Thread):
    def __init__(self, listener: socket.socket, handle: object) -> None:
        super().__init__(daemon=True)
        self.listener = listener
        self.handle = handle
        self.stopped = False

    def run(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()  # type: ignore[arg-type]

    def stop(self) -> None:
        self.stopped = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


class Network:
    """The sockets of one jailed run; a no-op for a run with no network at all."""

    def __init__(
        self, hosts: tuple[str, ...] | None, loopback: tuple[int, ...] = (), ingress_port: int | None = None
    ) -> None:
        self.allowed = {parse_host(h) for h in hosts} if hosts is not None else None
        self.loopback = tuple(sorted(set(loopback)))
        self.ingress_port = ingress_port
        self.sock_dir: Path | None = None
        self.ingress_dir: Path | None = None
        self._root: Path | None = None
        self._servers: list[_Server] = []
        self._denied: list[str] = []
        self._lock = threading.Lock()

    # -- the context --------------------------------------------------------------------------------

    def __enter__(self) -> Network:
        if self.allowed is None and not self.loopback and self.ingress_port is None:
            return self
        self._root = Path(tempfile.mkdtemp(prefix="orch-net-"))
        os.chmod(self._root, 0o700)
        self.sock_dir = self._root / "out"
        self.sock_dir.mkdir()
        if self.allowed is not None:
            self._listen(self.sock_dir / "proxy.sock", self._proxy)
        for port in self.loopback:
            self._listen(self.sock_dir / f"port-{port}.sock", lambda conn, port=port: self._forward(conn, port))
        if self.ingress_port is not None:
            self.ingress_dir = self._root / "in"
            self.ingress_dir.mkdir()
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        for server in self._servers:
            server.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def _listen(self, path: Path, handle: object) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        os.chmod(path, 0o777)  # the jail's user may connect; the folder around it is orch's
        s.listen(64)
        server = _Server(s, handle)
        server.start()
        self._servers.append(server)

    # -- what the jailed process gets ---------------------------------------------------------------

    def env(self) -> dict[str, str]:
        if self.allowed is None:
            return {}
        url = f"http://127.0.0.1:{PROXY_PORT}"
        no_proxy = "localhost,127.0.0.1,::1"
        return {
            "HTTPS_PROXY": url,
            "HTTP_PROXY": url,
            "https_proxy": url,
            "http_proxy": url,
            "ALL_PROXY": url,
            "all_proxy": url,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def wrap(self, argv: list[str]) -> list[str]:
        """The jail's command: the relay first when there are sockets to serve, then ``argv``."""
        if self.sock_dir is None:
            return argv
        relay = Path(__file__).resolve().parent.parent / "jail_relay.py"
        out = [os.path.realpath(sys.executable), "-I", "-S", str(relay)]
        if self.allowed is not None:
            out += ["--out", f"{PROXY_PORT}={NET_DIR}/proxy.sock"]
        for port in self.loopback:
            out += ["--out", f"{port}={NET_DIR}/port-{port}.sock"]
        if self.ingress_port is not None:
            out += ["--in", f"{INGRESS_DIR}/server.sock={self.ingress_port}"]
        return out + ["--", *argv]

    def ingress_socket(self) -> Path | None:
        return self.ingress_dir / "server.sock" if self.ingress_dir is not None else None

    def denied(self) -> list[str]:
        with self._lock:
            return sorted(set(self._denied))

    # -- the host side ------------------------------------------------------------------------------

    def _forward(self, conn: socket.socket, port: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=30)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            return
        _pipe(conn, upstream)

    def _proxy(self, conn: socket.socket) -> None:
        """One proxied connection: CONNECT host:port, or an absolute-form http:// request."""
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    conn.close()
                    return
                head += chunk
                if len(head) > HEAD_LIMIT:
                    conn.sendall(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n")
                    conn.close()
                    return
            line, _, rest = head.partition(b"\r\n")
            method, target, version = (line.decode("latin-1").split(" ") + ["", ""])[:3]
            if method.upper() == "CONNECT":
                host, port = parse_host(target, 443)
            elif target.startswith("http://"):
                host, port = parse_host(target, 80)
            else:
                self._refuse(conn, target, 400)
                return
            assert self.allowed is not None
            if (host, port) not in self.allowed:
                with self._lock:
                    self._denied.append(f"{host}:{port}")
                self._refuse(conn, f"{host}:{port}", 403)
                return
            try:
                upstream = socket.create_connection((host, port), timeout=30)
                upstream.settimeout(None)
            except OSError as exc:
                conn.sendall(
                    f"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nX-Orch: {exc.strerror}\r\n\r\n".encode()
                )
                conn.close()
                return
            if method.upper() == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                body = head.split(b"\r\n\r\n", 1)[1]
                if body:
                    upstream.sendall(body)
            else:  # origin-form toward the server
                path = "/" + target.split("://", 1)[1].partition("/")[2]
                upstream.sendall(f"{method} {path} {version}\r\n".encode("latin-1") + rest)
            _pipe(conn, upstream)
        except OSError:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _refuse(conn: socket.socket, what: str, code: int) -> None:
        text = f"orch: the jail may not reach {what}; only the policy's hosts are allowed\n".encode()
        reason = "Forbidden" if code == 403 else "Bad Request"
        try:
            conn.sendall(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(text)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + text
            )
        finally:
            conn.close()


def connect_ingress(path: Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    s.settimeout(None)
    return s


class IngressForward:
    """orch's side of the proof server: a TCP port on orch's loopback that reaches the server inside the jail."""

    def __init__(self, sock: Path, port: int = 0) -> None:
        self.sock = sock
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self.port = int(listener.getsockname()[1])
        self._server = _Server(listener, self._handle)
        self._server.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            inner = connect_ingress(self.sock)
        except OSError:
            conn.close()
            return
        _pipe(conn, inner)

    def close(self) -> None:
        self._server.stop()
