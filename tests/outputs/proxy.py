"""A tiny loopback forward proxy for tests: CONNECT tunnels and absolute-URI GET/POST.

Why: the HTTP layer's proxy support (``HttpOutputConfig.proxy``, a Secret because proxy URLs
carry credentials) must be proven for plain HTTP (the client sends ``POST http://host/path`` to
the proxy) and HTTPS (the client opens a ``CONNECT host:port`` tunnel and speaks TLS through it),
with ``Proxy-Authorization`` checked. It counts requests by method and records the
``Proxy-Authorization`` values it saw, so tests can assert the traffic really went through it.

Only what a forward proxy needs for one client: HTTP/1.1 with Content-Length bodies, one
upstream connection per forwarded request (``Connection: close`` upstream), loopback only.
"""

from __future__ import annotations

import base64
import http.server
import select
import socket
import socketserver
import threading
import urllib.parse
from collections import Counter

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
               "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: test output stays clean

    def _authorized(self) -> bool:
        got = self.headers.get("Proxy-Authorization")
        with self.server.lock:
            self.server.counts[self.command] += 1
            self.server.auth_seen.append(got)
        if self.server.expected_auth is None or got == self.server.expected_auth:
            return True
        with self.server.lock:
            self.server.counts["refused"] += 1
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")  # an unread request body must not be parsed next
        self.end_headers()
        self.close_connection = True
        return False

    def do_CONNECT(self) -> None:
        if not self._authorized():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        _pipe(self.connection, upstream)

    def _forward(self) -> None:
        if not self._authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self.send_error(400, "absolute http:// URI expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = url.path + (f"?{url.query}" if url.query else "")
        head = [f"{self.command} {target or '/'} HTTP/1.1", f"Host: {url.netloc}",
                "Connection: close"]
        head += [f"{k}: {v}" for k, v in self.headers.items()
                 if k.lower() not in _HOP_BY_HOP and k.lower() != "host"]
        try:
            with socket.create_connection((url.hostname, url.port or 80), timeout=5) as up:
                up.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
                answer = _read_all(up)
        except OSError:
            self.send_error(502)
            return
        # The upstream answered with Connection: close; re-frame for our keep-alive client.
        status_line, _, rest = answer.partition(b"\r\n")
        headers_raw, _, payload = rest.partition(b"\r\n\r\n")
        self.wfile.write(status_line + b"\r\n")
        for line in headers_raw.split(b"\r\n"):
            name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
            if line and name not in _HOP_BY_HOP and name != "content-length":
                self.wfile.write(line + b"\r\n")
        self.wfile.write(b"Content-Length: %d\r\n\r\n" % len(payload) + payload)

    do_GET = _forward
    do_POST = _forward


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (a CONNECT tunnel)."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 10)
            if not ready:
                return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, expected_auth: str | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.expected_auth = expected_auth
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.auth_seen: list[str | None] = []


class Proxy:
    """A forward proxy on 127.0.0.1; ``url()`` gives the proxy URL (with credentials if required)."""

    def __init__(self, user: str | None = None, password: str | None = None):
        self.user, self.password = user, password
        expected = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            expected = f"Basic {token}"
        self._server = _Server(expected)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, *, with_credentials: bool = True) -> str:
        if with_credentials and self.user is not None:
            user = urllib.parse.quote(self.user, safe="")
            password = urllib.parse.quote(self.password or "", safe="")
            return f"http://{user}:{password}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    @property
    def counts(self) -> Counter[str]:
        """Requests seen by method (``CONNECT``, ``GET``, ``POST``) plus ``refused`` (407 answers)."""
        with self._server.lock:
            return Counter(self._server.counts)

    @property
    def auth_seen(self) -> list[str | None]:
        """The ``Proxy-Authorization`` header of each request, in order (None when absent)."""
        with self._server.lock:
            return list(self._server.auth_seen)
