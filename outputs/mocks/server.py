"""The shared mock-server base: one threaded HTTP(S) server, a fault schedule, control endpoints.

Why a base: the Splunk HEC and Elasticsearch mocks (and every vendor mock after them) need the same
TLS/mTLS listener, the same scheduled faults (429 with Retry-After, 503, connection resets, slow
answers, HEC ack delays) and the same control surface for tests and the embedded demo. A vendor mock
is then only a ``MockApp``: a pure ``handle(MockRequest) -> MockResponse`` with its own state.

The server is the stdlib ``ThreadingHTTPServer`` so it runs the same with and without gevent's
monkey patching (patched, its threads are greenlets). It speaks HTTP/1.1 keep-alive so clients
reuse pooled connections as they would against the real service.

Control endpoints (never subject to faults, not counted in the stats):
``POST /_mock/faults`` (a JSON list of Fault dicts, or one dict), ``DELETE /_mock/faults``,
``GET /_mock/stats`` (``app.stats()`` plus ``requests_by_status``), ``POST /_mock/reset``.

Credential echo (opt-in, off by default; for leak tests): with ``MockApp.echo_headers`` set (a
vendor mock's ``echo_headers`` argument, ``--option echo_headers=Authorization,X-Canary`` for
``python -m outputs.mocks``), the error answers of the app and of scheduled ``status`` faults repeat
the values of those request headers, and for ``Authorization`` the credential it carries, decoded,
as ``echo[<value>]`` in their error texts (``echo_response``), as some services and proxies echo a
request back. A client must redact them wherever it keeps or shows an answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from outputs.http import INFLATE, INFLATE_ERRORS

CONTROL_PREFIX = "/_mock/"
#: Kinds a FaultSchedule applies before the app; the rest (``ack_delay``) are the app's to take.
SERVER_FAULT_KINDS = ("status", "reset", "slow")
FAULT_KINDS = (*SERVER_FAULT_KINDS, "ack_delay")
#: Most bytes of an oversized body read (and dropped) before answering 413.
DRAIN_LIMIT = 256 * 1024 * 1024


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive header mapping (HTTP header names are case-insensitive)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self._d: dict[str, tuple[str, str]] = {}
        for k, v in items:
            self._d[k.lower()] = (k, v)

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({len(self)} headers)"  # never print values: they may be credentials


@dataclass
class MockRequest:
    """One request as the app sees it. ``body`` is already gzip-decoded; ``raw_length`` is the size
    on the wire; ``decode_error`` is set (and ``body`` left raw) when the declared encoding was bad."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    raw_length: int = 0
    decode_error: str = ""


@dataclass
class MockResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> MockResponse:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), h)


@dataclass
class Fault:
    """One scheduled misbehaviour. ``count`` requests (-1: until cleared), or every matching request
    for ``duration`` seconds from when it was added; ``after`` matching requests pass untouched first;
    ``path`` is a prefix ("" matches any path)."""

    kind: str
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    count: int = 1
    path: str = ""
    after: int = 0
    duration: float | None = None
    added_at: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind: expected one of {', '.join(FAULT_KINDS)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)} - {"added_at"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"fault: unknown keys {sorted(unknown)}")
        return cls(**dict(d))

    def expired(self, now: float) -> bool:
        if self.duration is not None:
            return now - self.added_at >= self.duration
        return self.count == 0


class FaultSchedule:
    """Thread-safe list of pending faults; the first live match for a path wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        fault.added_at = time.monotonic()
        with self._lock:
            self._faults.append(fault)

    def extend(self, faults: Iterable[Mapping[str, Any] | Fault]) -> None:
        parsed = [f if isinstance(f, Fault) else Fault.from_dict(f) for f in faults]
        for f in parsed:
            self.add(f)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: v for k, v in asdict(f).items() if k != "added_at"} for f in self._faults]

    def take(self, path: str, kinds: Iterable[str] = SERVER_FAULT_KINDS) -> Fault | None:
        """The fault that applies to this request to ``path`` (consuming one use of it), or None."""
        kinds = tuple(kinds)
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if not f.expired(now)]
            for f in self._faults:
                if f.kind not in kinds or not path.startswith(f.path):
                    continue
                if f.after > 0:
                    f.after -= 1
                    continue
                if f.duration is None and f.count > 0:
                    f.count -= 1
                return f
        return None


class MockApp:
    """Base of a vendor mock: subclasses implement ``handle`` and keep their own counters."""

    #: Largest accepted body (on the wire and decoded); larger gets ``too_large``.
    max_body: int = 100 * 1024 * 1024
    #: Largest decoded (gunzipped) body; None = ``max_body``. A guard against compression bombs for
    #: vendors whose limit applies to the bytes on the wire.
    max_decoded_body: int | None = None

    #: Whether ``max_body`` applies to the decoded body alone (Elasticsearch's
    #: ``http.max_content_length``): a gzip body is then read whatever its size on the wire (up to
    #: ``DRAIN_LIMIT``) and refused only when it decodes to more.
    limit_decoded_only: bool = False

    #: Request headers whose values error answers repeat (module docstring); empty: no echo.
    echo_headers: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.faults = FaultSchedule()  # replaced by the server's schedule when served

    def handle(self, req: MockRequest) -> MockResponse:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        """Forget stored data and counters (``POST /_mock/reset``)."""

    def control(self, req: MockRequest) -> MockResponse | None:
        """Vendor-specific control endpoints under ``/_mock/`` (e.g. HEC's lost acks); None = 404."""
        return None

    def check_faulted(self, req: MockRequest) -> None:
        """Run the vendor's conformance checks on a request a scheduled fault answers (recording any
        violation as ``handle`` would); the fault's answer is sent whatever they find."""

    def fault_response(self, fault: Fault) -> MockResponse:
        """The answer for a scheduled ``status`` fault; vendors override it to use their body."""
        return MockResponse.json(fault.status, {"error": f"injected fault {fault.status}"})

    def too_large(self, length: int) -> MockResponse:
        """The answer to a body over ``max_body``; vendors override it with their wording."""
        return MockResponse.json(413, {"error": f"content length {length} exceeds {self.max_body}"})

    def echo_text(self, req: MockRequest) -> str:
        """``echo[<value>]`` for each value of an ``echo_headers`` header of ``req`` and each
        credential ``credentials_in`` finds in its ``Authorization``; '' when there is none."""
        values: list[str] = []
        for name in self.echo_headers:
            value = req.headers.get(name, "")
            if value:
                values.append(value)
                if name.lower() == "authorization":
                    values += [c for c in self.credentials_in(value) if c and c != value]
        return " ".join(f"echo[{v}]" for v in values)

    def credentials_in(self, authorization: str) -> list[str]:
        """The credentials an ``Authorization`` value carries, as the vendor decodes them (by default
        the part after the scheme)."""
        return [authorization.partition(" ")[2].strip()]

    def echo_response(self, req: MockRequest, resp: MockResponse) -> MockResponse:
        """``resp`` with ``echo_text(req)`` added to its error texts; called by the server for every
        answer (the app's and scheduled faults') when ``echo_headers`` is set. Vendors override it
        with their error format; the base echoes nothing."""
        return resp


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as the services set it (Elasticsearch: network.tcp.no_delay, default true, which
    # http.tcp.no_delay inherits; "Network settings" of its reference). With Nagle's algorithm on, a
    # body written after its headers waits for the client's delayed ACK (~40 ms on Linux) whenever it
    # is smaller than a segment: every small answer took 40 ms more than the service would.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines may carry tokens in query strings: never print them

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self, length: int) -> bytes | None:
        """The body (``length``: the declared Content-Length, checked by ``_dispatch``); None when
        it is over the limit. ValueError for a chunk size that is not hex."""
        app = self.server.mock_app
        limit = app.max_body
        # getattr: the server takes any object of a MockApp's shape (bench/delivery.py's Recorder)
        if (getattr(app, "limit_decoded_only", False)
                and self.headers.get("Content-Encoding", "").strip().lower() == "gzip"):
            limit = max(limit, DRAIN_LIMIT)  # checked once decoded (_dispatch)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        if length > limit:
            # Drain it (bounded) so the client finishes sending and reads the 413, as it would
            # from a real service, instead of seeing a broken pipe.
            left = min(length, DRAIN_LIMIT)
            while left > 0:
                got = self.rfile.read(min(left, 1 << 16))
                if not got:
                    break
                left -= len(got)
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        mock = self.server.mock
        app = mock.app
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        declared_text = (self.headers.get("Content-Length") or "0").strip()
        if not declared_text.isdigit() or not declared_text.isascii():
            # RFC 9112 §6.3: an invalid Content-Length is unrecoverable framing; the server answers
            # 400 and closes (reading "until the client closes" hung the request).
            self.close_connection = True
            self._respond(MockResponse(400, b"invalid Content-Length", {"Content-Type": "text/plain"}),
                          count=True)
            return
        declared = int(declared_text)
        try:
            raw = self._read_body(declared)
        except ValueError:  # a chunk size that is not hex: the same framing error
            self.close_connection = True
            self._respond(MockResponse(400, b"invalid chunked body", {"Content-Type": "text/plain"}),
                          count=True)
            return
        if raw is None:  # over the limit: answer without reading it all, then drop the connection
            self.close_connection = True
            self._respond(app.too_large(declared), count=True)
            return
        if path.startswith(CONTROL_PREFIX):
            self._respond(self._control(path, raw), count=False)
            return
        fault = mock.faults.take(path)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        headers = Headers(self.headers.items())
        body, error = raw, ""
        encoding = headers.get("Content-Encoding", "").strip().lower()
        too_large = False
        limit = app.max_body if app.max_decoded_body is None else app.max_decoded_body
        if encoding == "gzip" and raw:
            try:
                body = _gunzip(raw, limit)
            except _TooLarge:
                too_large = True
            except (*INFLATE_ERRORS, EOFError, ValueError) as exc:
                body, error = raw, f"invalid gzip body: {exc}"
        elif encoding not in ("", "identity"):
            error = f"unsupported content encoding {encoding}"
        req = MockRequest(self.command, path, query, headers, body, len(raw), error)
        if fault is not None:
            # A faulted request is still the client's: the vendor's conformance checks run on it
            # (violations recorded as for any request), then the fault answers instead of the app.
            if not too_large:
                try:
                    app.check_faulted(req)
                except Exception as exc:  # a mock bug shows as a 500, as in the app's own path
                    self._respond(MockResponse.json(500, {"error": f"mock error: {type(exc).__name__}: "
                                                                   f"{exc}"}), count=True)
                    return
            if fault.kind == "reset":
                mock.count("reset")
                self._reset()
                return
            resp = app.fault_response(fault)
            if fault.retry_after is not None:
                resp.headers["Retry-After"] = str(max(0, round(fault.retry_after)))  # delta-seconds
            if getattr(app, "echo_headers", ()):  # (an app may wrap a MockApp without being one)
                resp = app.echo_response(req, resp)
            self._respond(resp, count=True)
            return
        if too_large:
            self._respond(app.too_large(limit + 1), count=True)
            return
        try:
            resp = app.handle(req)
        except Exception as exc:  # a mock bug must show as a 500, not a hung client
            resp = MockResponse.json(500, {"error": f"mock error: {type(exc).__name__}: {exc}"})
        if getattr(app, "echo_headers", ()):
            resp = app.echo_response(req, resp)
        self._respond(resp, count=True)

    def _control(self, path: str, raw: bytes) -> MockResponse:
        mock = self.server.mock
        try:
            if path == "/_mock/faults" and self.command == "POST":
                data = json.loads(raw or b"[]")
                mock.faults.extend(data if isinstance(data, list) else [data])
                return MockResponse.json(200, {"faults": mock.faults.pending()})
            if path == "/_mock/faults" and self.command == "DELETE":
                mock.faults.clear()
                return MockResponse.json(200, {"faults": []})
            if path == "/_mock/faults" and self.command == "GET":
                return MockResponse.json(200, {"faults": mock.faults.pending()})
            if path == "/_mock/stats" and self.command == "GET":
                return MockResponse.json(200, mock.stats())
            if path == "/_mock/reset" and self.command == "POST":
                mock.reset()
                return MockResponse.json(200, {"reset": True})
            resp = mock.app.control(MockRequest(self.command, path, {}, Headers(self.headers.items()),
                                                raw, len(raw)))
        except (ValueError, TypeError) as exc:
            return MockResponse.json(400, {"error": str(exc)})
        if resp is not None:
            return resp
        return MockResponse.json(404, {"error": "unknown control endpoint"})

    def _respond(self, resp: MockResponse, *, count: bool) -> None:
        if count:
            self.server.mock.count(str(resp.status))
        body = b"" if self.command == "HEAD" else resp.body
        self.send_response(resp.status)
        lower = {k.lower() for k in resp.headers}
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if "content-type" not in lower:
            ctype = "application/json" if resp.body[:1] in (b"{", b"[") else "text/plain"
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def _reset(self) -> None:
        """Abort the connection with a TCP RST and no HTTP answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock = self.connection
            if isinstance(sock, ssl.SSLSocket):
                sock = socket.socket(fileno=sock.detach())
            sock.close()


class _TooLarge(Exception):
    pass


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decode a gzip body (several members allowed), refusing more than ``limit`` decoded bytes so a
    compression bomb cannot exhaust memory."""
    out = []
    total = 0
    while data:
        d = INFLATE.decompressobj(31)  # ISA-L where installed: the mocks share a bench's cores
        chunk = d.decompress(data, limit + 1 - total)
        total += len(chunk)
        out.append(chunk)
        if total > limit or d.unconsumed_tail:
            raise _TooLarge()
        if not d.eof:
            raise EOFError("truncated gzip stream")
        data = d.unused_data
    return b"".join(out)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], mock: MockServer, ctx: ssl.SSLContext | None):
        self.mock = mock
        self.mock_app = mock.app
        self.ssl_context = ctx
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the per-connection thread, so a slow or failing client
        # (e.g. no client certificate under mTLS) never blocks the accept loop.
        if self.ssl_context is not None:
            try:
                request.settimeout(10)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                self.mock.count("tls_error")
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-request are normal in fault tests


class MockServer:
    """Serve one ``MockApp`` over HTTP, or HTTPS with ``certfile``/``keyfile`` (and mutual TLS when
    ``client_ca`` is given: clients without a certificate signed by it are refused)."""

    def __init__(self, app: MockApp, *, host: str = "127.0.0.1", port: int = 0,
                 certfile: str | None = None, keyfile: str | None = None,
                 client_ca: str | None = None):
        self.app = app
        self.faults = FaultSchedule()
        app.faults = self.faults
        self._lock = threading.Lock()
        self._by_status: dict[str, int] = {}
        ctx = None
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
        elif client_ca:
            raise ValueError("client_ca needs certfile (mTLS is TLS)")
        self.tls = ctx is not None
        self._server = _Server((host, port), self, ctx)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> MockServer:
        self._serving = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"mock-{type(self.app).__name__}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the ``python -m outputs.mocks`` runner) until ``stop``."""
        self._serving = True
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving (from any thread but the serving one) and close the listening socket."""
        if self._serving:
            self._serving = False
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def count(self, key: str) -> None:
        with self._lock:
            self._by_status[key] = self._by_status.get(key, 0) + 1

    def stats(self) -> dict[str, Any]:
        out = dict(self.app.stats())
        with self._lock:
            out["requests_by_status"] = dict(self._by_status)
        return out

    def reset(self) -> None:
        self.faults.clear()
        self.app.reset()
        with self._lock:
            self._by_status.clear()
