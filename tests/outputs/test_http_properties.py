"""Property-based tests of the shared HTTP layer (outputs/http.py) against docs/outputs/http.md, with
real loopback sockets for everything on the wire. Why: every HTTP output sends through this one layer,
so a defect here misroutes, refuses or leaks for every destination; tests/outputs/test_http.py pins
chosen inputs, these draw them (names, values, URLs, bodies, statuses, dates, failures).

1. Status classes: every status 100-999 is classed as the documented table says (2xx ``ok``; 408 and
   5xx ``retry``; 429 ``throttled``; 401/403/407 ``auth``; 413 ``split``; 3xx and every other 4xx, and
   1xx, ``permanent``; 600-999 as 5xx, RFC 9110 §15: "a client that receives a response with an
   invalid status code SHOULD process the response as if it had a 5xx"), and ``outcome_for_status``
   turns each into the documented Outcome, with ``Retry-After`` read on every retryable class. On the
   wire (drawn statuses 200-999, a ``Location`` naming a second loopback server): the answer comes back
   as it is, ``on_response`` gets its class, and the second server never sees a request (redirects are
   never followed).
2. ``Retry-After`` (RFC 9110 §10.2.3): delay-seconds and the three HTTP-date forms give the reference
   value (a past date 0; zone-less dates UTC); signed, fractional, non-ASCII and malformed values None;
   any text at all: None or a number >= 0, never an exception.
3. Bodies on the wire: the bytes a raw loopback server receives, for bodies given whole or in parts
   (empty, small, larger than 64 KiB and than GZIP_GROUP_BYTES), any level, as a ``Payload`` or raw:
   one gzip member that inflates to the parts joined, ``Content-Encoding: gzip`` exactly when
   compressed, ``Content-Length`` the size on the wire.
4. Nothing leaks: for URLs with a user:password, a path and a query token, configured header values
   and proxy credentials (drawn canaries), and every way a transport fails on loopback (refused,
   reset, closed, silent until the timeout, a garbage status line echoing the request, a truncated
   body, TLS to a plain server, an unreachable proxy), only a ``TransportError`` comes out, with no
   chained exception, and neither it, its traceback, the transport Outcome's reason nor any log record
   holds a canary or the host and port; an error answer echoing the request has an excerpt without the
   secrets (header values, their credential, the proxy's, credential-shaped assignments).
5. Excerpts: for random bodies echoing random secrets in every form ``agent.secret_forms.forms``
   lists, in any letter case: no echo shown, one line (no control character, line separator or bidi
   override; single spaces), at most ``limit`` characters plus ``...``; only the first ``4 * limit``
   bytes matter; a secret cut by that window shows no start of it.
6. Configured headers: any name and value either are refused at load (naming ``headers``, never
   quoting the value) or arrive exactly as configured, read as a strict RFC 9110/9112 server reads
   them (a token name, no white space before the colon, a value of visible characters, spaces and
   tabs with none at its ends); every RFC-valid header of printable ASCII is accepted. The layer's
   framing headers are its own: whatever is configured, a request carries one ``Content-Length`` equal
   to its body's size (none on a GET without a body), no ``Transfer-Encoding``, and
   ``Content-Encoding: gzip`` exactly when the body is compressed. The output's own ``Authorization``
   and the caller's headers win over configured ones, in any letter case.
7. Base URLs (``split_http_url`` through the Splunk HEC ``endpoint`` and the Elasticsearch
   ``hosts``): every valid ``http://host:port[/prefix]`` loads, and every base URL that loads (IPv4 and
   IPv6 literals, prefixes, trailing slashes, odd ports, queries, fragments, white space) sends each
   request to that host and port at ``<prefix><path>`` (the event, ack and health paths of HEC as
   docs/outputs/splunk_hec.md derives them; ``/_bulk`` of Elasticsearch).
8. A state machine drives one ``HttpClient`` against one server with a reference model: URLs with and
   without user:password (Basic auth from the URL wins over the configured Authorization), a ``file:``
   header secret rotated between requests, cookies set and deleted by answers (sent back exactly, on
   URLs without user:password),
   the prepared-URL cache overflowing, connection resets; every request carries the model's headers,
   cookies, path and query, sequential requests share one connection (a new one only after a reset),
   and an answer echoing the current or one of the last three rotated values has it masked in the
   excerpt (``HttpClient.secrets``).

At the end: minimal reproductions of the defects these properties found (they fail until the fix).
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import datetime
import email.utils
import logging
import os
import random
import re
import shutil
import socket
import string
import tempfile
import threading
import traceback
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from agent.config_loader import ConfigError, load_section
from agent.config_types import Secret
from agent.secret_forms import forms
from outputs import http as http_mod
from outputs.base import Status
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig
from outputs.http import (
    GZIP_GROUP_BYTES,
    HttpClient,
    HttpOutputConfig,
    HttpResponse,
    Payload,
    TransportError,
    excerpt,
    gzip_bytes,
    outcome_for_status,
    outcome_for_transport,
    parse_retry_after,
    status_class,
)
from outputs.mocks.server import Fault, MockRequest, MockResponse, MockServer
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
from tests.outputs.test_http import Recorder as HttpRecorder

#: No explain phase: it re-ran a failing loopback example a hundred times (tens of seconds).
SETTINGS: dict[str, Any] = dict(deadline=None, database=None, derandomize=True,
                                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WHERE = "agent.toml: [outputs.x]"
TOKEN = "hec-token-4f1c9a"

# ---------------------------------------------------------------------------------- loopback servers


@dataclass
class RawRequest:
    """One request as it was on the wire: the head (request line and header lines, without the
    blank line) and the body bytes, undecoded."""

    head: bytes
    body: bytes

    @property
    def target(self) -> str:
        return self.head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")

    def field_lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")[1:]


class RawServer:
    """A loopback HTTP/1.1 server that keeps each request as bytes (what a client sent, not a parser's
    reading of it) and answers 200 with an empty body, keeping the connection alive.

    A POST's body is read by its first ``Content-Length``; a request carrying ``Transfer-Encoding`` (or
    a POST without a length) is answered 400 and the connection closed without reading a body, as
    RFC 9112 §6.3 allows; a GET's body is never read (this layer sends none)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(32)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        self.requests: list[RawRequest] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with contextlib.closing(conn), contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                fields = [line.partition(b":") for line in head.split(b"\r\n")[1:]]
                names = {n.strip().lower() for n, _, _ in fields}
                lengths = [v.strip() for n, _, v in fields if n.strip().lower() == b"content-length"]
                framed = head.startswith(b"POST ") and b"transfer-encoding" not in names and lengths
                length = int(lengths[0]) if framed and lengths[0].isdigit() else 0
                while len(buf) < length:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                with self._cond:
                    self.requests.append(RawRequest(head, body))
                    self._cond.notify_all()
                if head.startswith(b"POST ") and not framed:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def last(self) -> RawRequest:
        with self._cond:
            return self.requests[-1]

    def close(self) -> None:
        self.sock.close()


class Recorder(HttpRecorder):
    """test_http's recorder, answering a plain ``ok`` unless told otherwise (``respond``)."""

    def __init__(self) -> None:
        super().__init__(answer_ok)

    def clear(self) -> None:
        super().clear()
        self.respond = answer_ok


def answer_ok(req: MockRequest) -> MockResponse:
    return MockResponse(200, b"ok")


@pytest.fixture(scope="module")
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def raw6() -> Iterator[RawServer]:
    server = RawServer("::1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer(Recorder()) as server:
        yield server


@pytest.fixture(scope="module")
def other() -> Iterator[MockServer]:
    """A second server: where redirects point."""
    with MockServer(Recorder()) as server:
        yield server


def recorder(server: MockServer) -> Recorder:
    app = server.app
    assert isinstance(app, Recorder)
    return app


def client_for(**config: Any) -> HttpClient:
    return HttpClient(HttpOutputConfig(**config))


# -------------------------------------------------------------------------------- 1. status classes


def reference_class(status: int) -> str:
    """docs/outputs/http.md's table, and RFC 9110 §15 for 600-999 (read as 5xx)."""
    if 200 <= status <= 299:
        return "ok"
    if status == 429:
        return "throttled"
    if status in (401, 403, 407):
        return "auth"
    if status == 413:
        return "split"
    if status == 408 or 500 <= status <= 999:
        return "retry"
    return "permanent"  # 1xx (never final), 3xx (not followed), every other 4xx


def test_every_status_is_classed_and_turned_into_the_documented_outcome() -> None:
    """Exhaustive over 100-999: the class and the Outcome, with the Retry-After read exactly on the
    retryable classes (401/403 included, docs: "It is read on every retryable class")."""
    for status in range(100, 1000):
        cls = reference_class(status)
        assert status_class(status) == cls, status
        out = outcome_for_status(HttpResponse(status, {"retry-AFTER": "17"}, b"why", 0.0), "send")
        expected = {"ok": Status.DELIVERED, "retry": Status.RETRY, "throttled": Status.RETRY,
                    "auth": Status.RETRY, "split": Status.SPLIT, "permanent": Status.PERMANENT}[cls]
        assert out.status is expected, status
        if cls == "ok":
            continue
        assert out.reason.startswith(f"send: HTTP {status}") and out.excerpt == "why"
        assert out.throttled == (cls == "throttled") and out.auth_failure == (cls == "auth")
        assert out.retry_after == (17.0 if out.status is Status.RETRY else None), status
        assert out.failed == []


@settings(max_examples=60, **SETTINGS)
@given(status=st.integers(200, 999), retry_after=st.none() | st.integers(0, 10**6),
       relative=st.booleans())
def test_answers_come_back_as_they_are_and_redirects_are_never_followed(
        mock: MockServer, other: MockServer, status: int, retry_after: int | None, relative: bool) -> None:
    app, elsewhere = recorder(mock), recorder(other)
    app.clear()
    elsewhere.clear()
    location = "/moved" if relative else f"{other.url}/moved?token=x"
    headers = {"Location": location}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    app.respond = lambda req: MockResponse(status, b"" if status in (204, 304) else b"answer", headers)
    seen: list[str] = []
    client = HttpClient(HttpOutputConfig(headers={"Authorization": Secret("Bearer redirect-canary-1")}),
                        on_response=lambda cls, secs: seen.append(cls))
    try:
        resp = client.request("POST", f"{mock.url}/send", b"{}")
    finally:
        client.close()
    assert resp.status == status and resp.headers["Location"] == location
    assert seen == [reference_class(status)]
    assert [r.path for r in app.requests] == ["/send"]  # the relative target was not asked for either
    assert elsewhere.requests == []
    out = outcome_for_status(resp, "send")
    if reference_class(status) in ("retry", "throttled", "auth"):
        assert out.retry_after == (None if retry_after is None else float(retry_after))


# ------------------------------------------------------------------------------------ 2. Retry-After

NOW_RANGE = st.integers(0, 4_000_000_000)
OWS = st.sampled_from(["", " ", "\t", "  "])
UTC = datetime.UTC


@settings(max_examples=150, **SETTINGS)
@given(seconds=st.integers(0, 10**30), zeros=st.integers(0, 3), before=OWS, after=OWS, now=NOW_RANGE)
def test_retry_after_delay_seconds(seconds: int, zeros: int, before: str, after: str, now: int) -> None:
    value = before + "0" * zeros + str(seconds) + after
    assert parse_retry_after(value, now=now) == float(seconds)


@settings(max_examples=15, **SETTINGS)
@given(digits=st.integers(309, 2000))
def test_retry_after_delay_seconds_too_large_for_a_float_is_not_negative(digits: int) -> None:
    got = parse_retry_after("9" * digits, now=0)
    assert got is not None and got >= 0 and min(got, 300.0) == 300.0  # the framework's bound applies


DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _names(w: datetime.datetime) -> tuple[str, str]:
    """English day and month names (strftime's follow the locale)."""
    return DAYS[w.weekday()], MONTHS[w.month - 1]


DATE_FORMS: dict[str, Callable[[datetime.datetime], str]] = {
    # Sun, 06 Nov 1994 08:49:37 GMT
    "imf": lambda w: email.utils.format_datetime(w, usegmt=True),
    # Sunday, 06-Nov-94 08:49:37 GMT
    "rfc850": lambda w: f"{_names(w)[0]}, {w.day:02d}-{_names(w)[1]}-{w.year % 100:02d} {w:%H:%M:%S} GMT",
    # Sun Nov  6 08:49:37 1994
    "asctime": lambda w: f"{_names(w)[0][:3]} {_names(w)[1]} {w.day:2d} {w:%H:%M:%S} {w.year}",
    # Sun, 06 Nov 1994 08:49:37 -0000: the zone unknown, read as UTC (RFC 9110 §5.6.7)
    "no-zone": lambda w: f"{_names(w)[0][:3]}, {w.day:02d} {_names(w)[1]} {w.year} {w:%H:%M:%S} -0000",
}


@settings(max_examples=200, **SETTINGS)
@given(form=st.sampled_from(sorted(DATE_FORMS)), now=NOW_RANGE, data=st.data())
def test_retry_after_http_dates(form: str, now: int, data: st.DataObject) -> None:
    """A date gives the seconds from ``now`` to it, 0 when it is past. rfc850's two-digit years are
    drawn within 49 years of ``now``'s, where RFC 9110 §5.6.7 makes them that very year (a year
    more than 50 ahead is the most recent past one with its digits)."""
    this_year = datetime.datetime.fromtimestamp(now, UTC).year
    low, high = (max(1, this_year - 49), this_year + 49) if form == "rfc850" else (1970, 9998)
    when = data.draw(st.datetimes(datetime.datetime(low, 1, 1), datetime.datetime(high, 12, 31))).replace(
        microsecond=0, tzinfo=UTC)
    value = DATE_FORMS[form](when)
    note(value)
    got = parse_retry_after(value, now=now)
    assert got == pytest.approx(max(0.0, when.timestamp() - now), abs=1e-6)


MALFORMED = st.one_of(
    st.integers(1, 10**6).map(lambda n: f"-{n}"),
    st.integers(0, 10**6).map(lambda n: f"+{n}"),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.integers(0, 999).map(lambda n: f"{n}s"),
    st.integers(1000, 10**6).map(lambda n: f"{n:,}"),
    st.text("\u0660\u0663\u00b2\u00b9\uff15\u09e9", min_size=1, max_size=4),  # digits, not ASCII ones
    st.sampled_from(["soon", "now", "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Foo 2015 07:28:00 GMT",
                     "Wed, 21 Oct 2015 25:28:00 GMT", "Wed, 21 Oct 2015 07:61:00 GMT",
                     "Wed, 21 Oct 99999 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 +9999", "1e3", "0x10",
                     "5 5", "\u00a0", " \t "]),
)


@settings(max_examples=150, **SETTINGS)
@given(value=MALFORMED, now=NOW_RANGE)
def test_retry_after_malformed_values_are_none(value: str, now: int) -> None:
    assert parse_retry_after(value, now=now) is None


DATE_WORDS = st.sampled_from(["Mon,", "Sunday,", "Nov", "Foo", "GMT", "UTC", "+0000", "-2359", "+2400",
                              "-0000", "00:00:00", "23:59:60", "99:99:99", "31", "0", "1", "9999",
                              "10000", "-1", "1e9", ":", ",", "--", "\x00", "\u0663", "Z"])


@settings(max_examples=300, **SETTINGS)
@given(value=st.one_of(st.text(max_size=40), st.lists(DATE_WORDS, max_size=7).map(" ".join)),
       now=NOW_RANGE)
def test_retry_after_never_raises_or_goes_negative(value: str, now: int) -> None:
    got = parse_retry_after(value, now=now)
    assert got is None or got >= 0


# ----------------------------------------------------------------------------------- 3. gzip bodies

BIG = st.tuples(st.integers(60 * 1024, GZIP_GROUP_BYTES + 40 * 1024), st.integers(0, 2**32),
                st.booleans()).map(
    lambda t: random.Random(t[1]).randbytes(t[0]) if t[2] else (b"event %d " % t[1]) * (t[0] // 16))
PART = st.one_of(st.binary(max_size=200), st.just(b""), BIG)
PARTS = st.lists(PART, max_size=6).filter(lambda ps: sum(map(len, ps)) <= 700 * 1024)


def one_gzip_member(data: bytes) -> bytes:
    """What ``data`` inflates to, when it is exactly one gzip member and nothing after it."""
    d = zlib.decompressobj(31)
    out = d.decompress(data) + d.flush()
    assert d.eof and d.unused_data == b"", "not exactly one complete gzip member"
    return out


def field_values(req: RawRequest, name: str) -> list[str]:
    return [line.partition(b":")[2].strip().decode("latin-1") for line in req.field_lines()
            if line.partition(b":")[0].strip().lower() == name.lower().encode()]


@settings(max_examples=25, **SETTINGS)
@given(parts=PARTS, level=st.integers(1, 9), compression=st.sampled_from(["gzip", "none"]),
       as_payload=st.booleans())
def test_bodies_on_the_wire_are_the_parts_joined(raw: RawServer, parts: list[bytes], level: int,
                                                 compression: str, as_payload: bool) -> None:
    joined = b"".join(parts)
    client = client_for(compression=compression, compression_level=level)
    try:
        if as_payload:
            payload = client.payload(parts)
            assert payload.gzipped == (compression == "gzip") and payload.raw() == joined
            body: bytes | Payload = payload
        else:
            body = joined
        resp = client.request("POST", f"{raw.url}/bulk", body)
    finally:
        client.close()
    assert resp.status == 200
    req = raw.last()
    assert field_values(req, "Content-Length") == [str(len(req.body))]
    if compression == "gzip":
        assert field_values(req, "Content-Encoding") == ["gzip"]
        assert one_gzip_member(req.body) == joined
    else:
        assert field_values(req, "Content-Encoding") == [] and req.body == joined


@settings(max_examples=20, **SETTINGS)
@given(parts=PARTS, level=st.integers(1, 9))
def test_gzip_bytes_in_parts_is_one_member_with_either_codec(parts: list[bytes], level: int) -> None:
    joined = b"".join(parts)
    for codec in {zlib, http_mod.INFLATE if level <= http_mod.ISAL_MAX_LEVEL else zlib}:
        assert one_gzip_member(gzip_bytes(parts, level, codec=codec)) == joined
        assert one_gzip_member(gzip_bytes(joined, level, codec=codec)) == joined
    assert http_mod.gunzip_bytes(gzip_bytes(parts, level)) == joined


# ------------------------------------------------------------------------------------------ 4. leaks

CANARY_TAIL = st.text(string.ascii_lowercase + string.digits, min_size=6, max_size=14)


@dataclass
class Canaries:
    user: str
    password: str
    path: str
    query: str
    header: str
    auth: str
    proxy_user: str
    proxy_pass: str

    def all(self) -> list[str]:
        return [self.user, self.password, self.path, self.query, self.header, self.auth, self.proxy_user,
                self.proxy_pass]

    def secrets(self) -> list[str]:
        """What an excerpt must never show: header values, their credentials, the proxy's, the URL's
        query token (a credential-shaped assignment)."""
        return [self.header, self.auth, self.proxy_user, self.proxy_pass, self.query]


CANARIES = st.builds(Canaries, *(CANARY_TAIL.map(lambda t, tag=tag: f"{tag}{t}")
                                 for tag in ("usr", "pwd", "pth", "qry", "hdr", "aut", "pxu", "pxp")))


class FaultServer:
    """A loopback server that misbehaves as ``mode`` says for every connection it accepts: ``reset``
    (RST), ``close`` (closes without an answer), ``silent`` (never answers), ``garbage`` (a status
    line that is not one, echoing the request), ``truncated`` (a 200 whose body stops short, echoing
    the request), ``echo`` (a 400 whose body is the whole request), ``hello`` (an HTTP answer at once,
    before reading anything: a TLS client's handshake fails on it)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port: int = self.sock.getsockname()[1]
        self.mode = "reset"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(10)
            if mode == "hello":  # answers before reading: what a TLS client gets from a plain server
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.recv(1 << 16)
            head = b""
            while b"\r\n\r\n" not in head and mode not in ("reset", "hello"):
                data = conn.recv(1 << 16)
                if not data:
                    break
                head += data
            if mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif mode == "silent":
                self._held.append(conn)  # closed by the client's timeout
                return
            elif mode == "garbage":
                conn.sendall(b"HTTP/1.1 2xx " + head.replace(b"\r\n", b" ") + b"\r\n\r\n")
            elif mode == "truncated":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + head)
            elif mode == "echo":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % len(head) + head)
        conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def refusing_port() -> Iterator[int]:
    """A port bound and not listening: connecting to it is refused (and no one else can take it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def captured_logs() -> Iterator[LogRecords]:
    """Every log record at DEBUG from every logger (urllib3 stays at the level the module sets)."""
    root = logging.getLogger()
    handler, level = LogRecords(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


FAILURES = ["refused", "reset", "close", "silent", "garbage", "truncated", "tls", "proxy"]


@pytest.mark.parametrize("failure", FAILURES)
@settings(max_examples=6, **SETTINGS)
@given(c=CANARIES, userinfo=st.booleans(), query=st.booleans(), gzip=st.booleans())
def test_no_transport_error_or_log_record_carries_the_url_or_a_secret(
        faulty: FaultServer, refusing_port: int, failure: str, c: Canaries, userinfo: bool, query: bool,
        gzip: bool) -> None:
    port = refusing_port if failure in ("refused", "proxy") else faulty.port
    faulty.mode = "hello" if failure == "tls" else failure  # (not reached when refused or via the proxy)
    scheme = "https" if failure == "tls" else "http"
    url = (f"{scheme}://{f'{c.user}:{c.password}@' if userinfo else ''}127.0.0.1:{port}/{c.path}/ev"
           + (f"?token={c.query}" if query else ""))
    proxy = Secret(f"http://{c.proxy_user}:{c.proxy_pass}@127.0.0.1:{refusing_port}") if failure == "proxy" \
        else None
    client = client_for(headers={"X-Canary": Secret(c.header), "Authorization": Secret(f"Bearer {c.auth}")},
                        proxy=proxy, compression="gzip" if gzip else "none")
    with captured_logs() as logs:
        try:
            with pytest.raises(TransportError) as info:
                client.request("POST", url, f"body {c.header}".encode(),
                               timeout=0.2 if failure == "silent" else 5)
            reason = outcome_for_transport(info.value, "send").reason
        finally:
            client.close()
    exc = info.value
    assert exc.__cause__ is None and exc.__context__ is None
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), reason, *logs.lines]
    for text in texts:
        for needle in (*c.all(), "127.0.0.1", f":{port}", f"port={port}"):
            assert needle not in text, f"{needle!r} in {text!r}"


@settings(max_examples=25, **SETTINGS)
@given(c=CANARIES, userinfo=st.booleans())
def test_an_answer_echoing_the_request_is_excerpted_without_its_secrets(faulty: FaultServer, c: Canaries,
                                                                        userinfo: bool) -> None:
    faulty.mode = "echo"
    url = (f"http://{f'{c.user}:{c.password}@' if userinfo else ''}127.0.0.1:{faulty.port}/{c.path}/ev"
           f"?token={c.query}")
    client = client_for(headers={"X-Canary": Secret(c.header), "Authorization": Secret(f"Bearer {c.auth}"),
                                 "X-Pair": Secret(f"{c.proxy_user}:{c.proxy_pass}")},
                        compression="none")
    try:
        resp = client.request("POST", url, b"{}")
        out = outcome_for_status(resp, "send", client.secrets())
    finally:
        client.close()
    assert resp.status == 400 and out.status is Status.PERMANENT
    assert c.header.encode() in resp.body  # the answer did echo it
    for needle in (*c.secrets(), base64.b64encode(f"{c.user}:{c.password}".encode()).decode()):
        assert needle not in out.excerpt and needle not in out.reason, (needle, out.excerpt)


# --------------------------------------------------------------------------------------- 5. excerpts

#: What a secret is made of: Latin-1 (header values are), no "*" (the mask itself).
SECRET_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="*")
SECRETS = st.lists(st.text(SECRET_CHARS, min_size=4, max_size=16), min_size=1, max_size=3)
FILLER = st.text(st.sampled_from(list("ab :=\"',;&}x\n\t\r\x00\x1b\x7f\x85\u2028\u202e\u2066"
                                      "\u00a0\u00e9\u4e2d")), max_size=40)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@settings(max_examples=400, **SETTINGS)
@given(secrets=SECRETS, pieces=st.lists(st.tuples(FILLER, st.integers(0, 2), st.integers(0, 9),
                                                   st.sampled_from(["as is", "upper", "lower"])),
                                         max_size=6),
       tail=FILLER, limit=st.integers(5, 80))
def test_excerpts_show_no_echoed_secret_and_stay_one_bounded_line(
        secrets: list[str], pieces: list[tuple[str, int, int, str]], tail: str, limit: int) -> None:
    body, echoed = "", []
    for fill, which, form, case in pieces:
        secret = secrets[which % len(secrets)]
        shown = forms(secret)[form % len(forms(secret))]
        shown = {"as is": shown, "upper": shown.upper(), "lower": shown.lower()}[case]
        body += fill + shown
        echoed.append(shown)
    raw_body = (body + tail).encode()
    out = excerpt(raw_body, secrets, limit=limit)
    note(repr(out))
    for shown in echoed:
        assert shown.lower() not in out.lower()
    core = out[:-3] if len(out) > limit else out
    assert len(core) <= limit and (core == out or out.endswith("..."))
    assert not CONTROL.search(out) and out == out.strip() and "  " not in out
    assert all(ch == " " or not ch.isspace() for ch in out)


@settings(max_examples=200, **SETTINGS)
@given(secrets=SECRETS, head=st.binary(max_size=500), tail=st.binary(min_size=1, max_size=50),
       other_tail=st.binary(min_size=1, max_size=50), limit=st.integers(5, 80))
def test_excerpts_read_only_the_first_four_limits_of_bytes(secrets: list[str], head: bytes, tail: bytes,
                                                           other_tail: bytes, limit: int) -> None:
    window = head.ljust(limit * 4, b"x")[: limit * 4]
    assert excerpt(window + tail, secrets, limit=limit) == excerpt(window + other_tail, secrets, limit=limit)


@settings(max_examples=200, **SETTINGS)
@given(secrets=SECRETS,
       filler=st.lists(st.sampled_from([b"\x00", b" ", b"\n", b"\x1b", b"\x7f"]), max_size=400),
       which=st.integers(0, 2), form=st.integers(0, 9), limit=st.integers(5, 80))
def test_a_secret_cut_by_the_read_window_is_masked(secrets: list[str], filler: list[bytes], which: int,
                                                   form: int, limit: int) -> None:
    """A secret straddling the ``4 * limit`` window, after bytes that collapse to at most a space (so
    what the window keeps of it would be within ``limit``): no start of it of 2 characters or more
    shows."""
    secret = secrets[which % len(secrets)]
    shown = forms(secret)[form % len(forms(secret))].encode()
    window = limit * 4
    start = window - len(shown) // 2 - 1
    assume(start > 0)
    body = b"".join(filler).ljust(start, b"\x00")[:start] + shown + b" after"
    visible = codecs.getincrementaldecoder("utf-8")().decode(shown[: window - start])
    out = excerpt(body, secrets, limit=limit)
    note(f"visible {visible!r}, excerpt {out!r}")
    for k in range(2, len(visible) + 1):
        assert visible[:k].lower() not in out.lower()


# -------------------------------------------------------------------------------- 6. custom headers

TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*")
BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: The layer's framing headers: they describe the body it builds (section 6's second property).
FRAMING = ("content-length", "transfer-encoding", "content-encoding")


def strict_fields(req: RawRequest) -> list[tuple[str, str]]:
    """The header fields as a strict RFC 9110 §5 / RFC 9112 §5 server reads them: a token, a colon
    with no white space before it, a value of visible characters, spaces and tabs, leading and
    trailing white space not part of it. A line it cannot read fails the test (such a server answers
    400 to every request)."""
    out = []
    for line in req.field_lines():
        m = FIELD_LINE.fullmatch(line)
        assert m is not None and not BAD_VALUE_BYTE.search(m.group(2)), \
            f"a strict server refuses the field line {line!r}"
        out.append((m.group(1).decode("ascii"), m.group(2).decode("latin-1")))
    return out


def rfc_valid(name: str, value: str) -> bool:
    """A header RFC 9110 §5 allows, of printable ASCII at its ends (obs-text there may read as white
    space, e.g. U+00A0, and be refused)."""
    return (bool(name) and all(ch in TCHAR for ch in name)
            and (value == "" or (value[0] in string.printable[:94] and value[-1] in string.printable[:94]))
            and all(ch == "\t" or 0x20 <= ord(ch) <= 0x7E or 0xA0 <= ord(ch) <= 0xFF for ch in value))


NAMES = st.one_of(st.text(TCHAR, min_size=1, max_size=10),
                  st.text(TCHAR[:20] + " \t()@,;/[]{}?=\"\x00\x01\x7f\u00e9:\n", max_size=10))
VALUES = st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$"),
                           max_size=16),
                   st.text(st.sampled_from("ab \t\x00\x01\x1f\x7f\x85\xa0\xe9\xff\u20ac\ufeff\n\r"),
                           max_size=8))


@settings(max_examples=150, **SETTINGS)
@given(headers=st.dictionaries(NAMES, VALUES, max_size=3))
def test_a_configured_header_is_refused_at_load_or_arrives_exactly(raw: RawServer,
                                                                    headers: dict[str, str]) -> None:
    assume(not any(name.strip().lower() in FRAMING for name in headers))
    valid = all(rfc_valid(n, v) for n, v in headers.items()) and \
        len({n.lower() for n in headers}) == len(headers)
    try:
        cfg = load_section(HttpOutputConfig, {"type": "x", "headers": headers, "compression": "none"},
                           WHERE, env={})
    except ConfigError as exc:
        assert not valid, f"a valid header was refused: {exc}"
        assert "headers" in str(exc)
        return
    client = HttpClient(cfg)
    try:
        assert client.request("POST", f"{raw.url}/h", b"x").status == 200
    finally:
        client.close()
    fields = strict_fields(raw.last())
    for name, value in headers.items():
        assert [v for n, v in fields if n.lower() == name.lower()] == [value], (name, value, fields)


BAD_CHARS = st.text(st.sampled_from(" \t\x00\x01\x7f\xa0\u20ac\ufeff\n\r"), max_size=3)


@settings(max_examples=60, **SETTINGS)
@given(name=NAMES, before=BAD_CHARS, after=BAD_CHARS)
def test_a_refused_header_is_named_and_its_value_never_quoted(name: str, before: str, after: str) -> None:
    """Header values are secrets: a refusal names the header and what is wrong, not the value."""
    value = f"{before}hv-canary-51d0{after}"
    try:
        load_section(HttpOutputConfig, {"type": "x", "headers": {name: value}}, WHERE, env={})
    except ConfigError as exc:
        assert "headers" in str(exc) and "hv-canary-51d0" not in str(exc)


def check_framing(raw: RawServer, configured: dict[str, str], method: str, body: bytes,
                  compression: str) -> None:
    """Refused at load, or the request on the wire is framed by what the layer sent: one
    ``Content-Length`` equal to the body (none, or 0, on a GET without a body), no ``Transfer-Encoding``,
    ``Content-Encoding: gzip`` exactly when the body is compressed."""
    try:
        cfg = load_section(HttpOutputConfig, {"type": "x", "headers": configured, "compression": compression},
                           WHERE, env={})
    except ConfigError as exc:
        assert "headers" in str(exc)
        return
    client = HttpClient(cfg)
    try:
        client.request(method, f"{raw.url}/f", body if method == "POST" else None)
    finally:
        client.close()
    req = raw.last()
    assert field_values(req, "Transfer-Encoding") == []
    if method == "GET":
        assert field_values(req, "Content-Length") in ([], ["0"])
        assert field_values(req, "Content-Encoding") == []
        return
    assert field_values(req, "Content-Length") == [str(len(req.body))]
    if compression == "gzip":
        assert field_values(req, "Content-Encoding") == ["gzip"] and one_gzip_member(req.body) == body
    else:
        assert field_values(req, "Content-Encoding") == [] and req.body == body


@settings(max_examples=60, **SETTINGS)
@given(configured=st.dictionaries(st.sampled_from(["Content-Length", "content-length", "Transfer-Encoding",
                                                   "Content-Encoding", "X-Other"]),
                                  st.sampled_from(["0", "10", "chunked", "gzip", "br", "identity"]),
                                  max_size=3),
       method=st.sampled_from(["GET", "POST"]), body=st.binary(max_size=64),
       compression=st.sampled_from(["gzip", "none"]))
def test_the_framing_headers_always_describe_the_body_sent(raw: RawServer, configured: dict[str, str],
                                                           method: str, body: bytes,
                                                           compression: str) -> None:
    check_framing(raw, configured, method, body, compression)


@settings(max_examples=40, **SETTINGS)
@given(configured_case=st.sampled_from(["Authorization", "authorization", "AUTHORIZATION"]),
       caller=st.sampled_from(["Content-Type", "content-type", "X-Api"]), value=CANARY_TAIL)
def test_the_outputs_own_and_the_callers_headers_win_over_configured_ones(
        raw: RawServer, configured_case: str, caller: str, value: str) -> None:
    """docs: "The output's own headers (e.g. Authorization built from its token) win over these";
    ``request``: "The caller's headers win over the configured ones"."""
    cfg = HttpOutputConfig(headers={configured_case: Secret(f"Bearer cfg{value}"),
                                    "Content-Type": Secret("text/cfg"), "X-Api": Secret("cfg")})
    client = HttpClient(cfg, auth=lambda: {"Authorization": f"Splunk own{value}"})
    try:
        client.request("POST", f"{raw.url}/a", b"{}", {caller: "from-caller"})
    finally:
        client.close()
    fields = strict_fields(raw.last())
    assert [v for n, v in fields if n.lower() == "authorization"] == [f"Splunk own{value}"]
    assert [v for n, v in fields if n.lower() == caller.lower()] == ["from-caller"]


# ------------------------------------------------------------------------------------ 7. base URLs

SEGMENT = st.text(string.ascii_lowercase + string.digits + "-_~", min_size=1, max_size=6)
HEC_PATHS = ["/services/collector/event", "/services/collector", "/services/collector/raw",
             "/splunk/services/collector/event", "/hec/event", "/a/b/c"]


@st.composite
def base_urls(draw: st.DrawFn, hosts: list[tuple[str, int]]) -> tuple[str, bool, str, str]:
    """(base URL, whether it is a valid ``http://host:port[/prefix]``, its host, its prefix)."""
    host, port = draw(st.sampled_from(hosts))
    scheme = draw(st.sampled_from(["http", "http", "HTTP", "ftp", ""]))
    port_text = draw(st.sampled_from([str(port), str(port), str(port), "0", "65536", "x1", f"0{port}"]))
    prefix = "".join("/" + s for s in draw(st.lists(SEGMENT, max_size=3)))
    slashes = draw(st.sampled_from(["", "", "/", "//"]))
    tail = draw(st.sampled_from(["", "", "", "?", "?a=1", "#", "#f", "?#"]))
    url = f"{scheme}://{host}:{port_text}{prefix}{slashes}{tail}" if scheme else f"{host}:{port_text}{prefix}"
    odd = draw(st.sampled_from(["", "", "", "\t", "\n", " "]))
    if odd:
        i = draw(st.integers(0, len(url)))
        url = url[:i] + odd + url[i:]
    valid = (scheme.lower() == "http" and port_text.isdigit() and 1 <= int(port_text) <= 65535
             and not tail and not odd)
    return url, valid, host, prefix


def wire_path(server: RawServer, client: HttpClient, url: str) -> str:
    """The path a request to ``url`` arrives at on ``server`` (percent-decoded); fails when it does
    not arrive there."""
    before = len(server.requests)
    resp = client.request("POST", url, b"{}")
    assert resp.status == 200 and len(server.requests) == before + 1, f"{url!r} did not reach its server"
    target = server.last().target
    assert "?" not in target and "#" not in target, f"{url!r} was sent as {target!r}"
    return urllib.parse.unquote(target)


@settings(max_examples=80, **SETTINGS)
@given(data=st.data(), path=st.sampled_from(HEC_PATHS))
def test_a_hec_endpoint_that_loads_sends_to_its_host_port_and_prefix(raw: RawServer, raw6: RawServer,
                                                                     data: st.DataObject, path: str) -> None:
    servers = {"127.0.0.1": raw, "[::1]": raw6}
    url, valid, host, prefix = data.draw(base_urls([("127.0.0.1", raw.port), ("[::1]", raw6.port)]))
    try:
        cfg = load_section(SplunkHecOutputConfig, {"type": "splunk_hec", "endpoint": url, "token": TOKEN,
                                                   "path": path}, WHERE, env={})
    except ConfigError as exc:
        assert not valid, f"a valid endpoint was refused: {exc}"
        assert "endpoint" in str(exc)
        return
    out = SplunkHecOutput("hec", cfg)
    i = path.find("/services/collector")
    collector = path[: i + len("/services/collector")] if i >= 0 else path.rpartition("/")[0]
    client = client_for(compression="none")
    try:
        for target, expected in ((out.event_url, path), (out.ack_url, collector + "/ack"),
                                 (out.health_url, collector + "/health")):
            assert wire_path(servers[host], client, target) == prefix + expected, (url, target)
    finally:
        client.close()


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_an_elasticsearch_host_that_loads_sends_to_its_host_port_and_prefix(raw: RawServer, raw6: RawServer,
                                                                           data: st.DataObject) -> None:
    servers = {"127.0.0.1": raw, "[::1]": raw6}
    url, valid, host, prefix = data.draw(base_urls([("127.0.0.1", raw.port), ("[::1]", raw6.port)]))
    try:
        cfg = load_section(ElasticsearchOutputConfig, {"type": "elasticsearch", "hosts": [url]}, WHERE,
                           env={})
    except ConfigError as exc:
        assert not valid, f"a valid host was refused: {exc}"
        assert "hosts" in str(exc)
        return
    (base,) = ElasticsearchOutput("es", cfg).hosts
    client = client_for(compression="none")
    try:
        assert wire_path(servers[host], client, base + "/_bulk") == prefix + "/_bulk", url
    finally:
        client.close()


# ------------------------------------------------------------------------------ 8. the state machine

MACHINE_SERVER: list[MockServer] = []
COOKIE_NAMES = ("sticky", "lb", "session")
TOKENS = st.text(string.ascii_letters + string.digits + "-._~", min_size=6, max_size=12).map(
    lambda t: "tk-" + t)


class ClientMachine(RuleBasedStateMachine):
    """One HttpClient, one server, a reference model of what each request must carry.

    Model: the ``file:`` secret's value in the file, the value last sent (read) and the values sent
    before it (newest first, three kept: ``Secret`` remembers what it read, and only a value that was
    read can have been sent and echoed); the cookies the answers set (all ``Path=/``); whether the
    next request needs a new connection (after a reset) and how many connections there should be.

    Cookies are set and checked on URLs without user:password: the session's cookie jar keys a cookie
    by the URL's netloc, user:password included (as ``requests.Session`` does), and no output sends
    to one host with and without them."""

    def __init__(self) -> None:
        super().__init__()
        self.server = MACHINE_SERVER[0]
        self.app = recorder(self.server)
        self.app.clear()
        self.dir = tempfile.mkdtemp(prefix="http-machine-")
        self.token_path = os.path.join(self.dir, "token")
        self.in_file = "tk-initial"
        self.sent = ""
        self.previous: list[str] = []
        self.cookies: dict[str, str] = {}
        self.pending_cookie: tuple[str, str | None] | None = None
        self.connections = 0
        self.need_new = True
        self.saved_max = http_mod.MAX_PREPARED_URLS

    @initialize(compression=st.sampled_from(["gzip", "none"]))
    def start(self, compression: str) -> None:
        http_mod.MAX_PREPARED_URLS = 4  # the prepared-URL cache overflows within a run
        with open(self.token_path, "w") as f:
            f.write(self.in_file + "\n")
        cfg = load_section(HttpOutputConfig, {"type": "x", "compression": compression, "headers": {
            "X-Token": f"file:{self.token_path}", "Authorization": "Bearer configured-credential"}},
                           WHERE, env={})
        self.client = HttpClient(cfg)
        self.sent = self.in_file  # read at load

    def teardown(self) -> None:
        http_mod.MAX_PREPARED_URLS = self.saved_max
        if hasattr(self, "client"):
            self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _url(self, n: int, user: str | None) -> str:
        host = self.server.url.split("://", 1)[1]
        auth = f"{urllib.parse.quote(user, safe='')}:pw-{n}@" if user else ""
        return f"http://{auth}{host}/p{n}/ev?k={n}"

    def _read(self) -> None:
        """The secret is read for a request: a new value in the file is what it sends from now on."""
        if self.in_file != self.sent:
            self.previous = [self.sent, *self.previous][:3]
            self.sent = self.in_file

    def _answer(self, req: MockRequest) -> MockResponse:
        headers = {}
        if self.pending_cookie is not None:
            name, value = self.pending_cookie
            headers["Set-Cookie"] = f"{name}={value}; Path=/" if value is not None \
                else f"{name}=; Max-Age=0; Path=/"
        return MockResponse(200, b"ok", headers)

    def _count_connection(self) -> None:
        if self.need_new:
            self.connections += 1
            self.need_new = False

    @rule(n=st.integers(0, 9), body=st.binary(max_size=40),
          cookie=st.none() | st.tuples(st.sampled_from(COOKIE_NAMES),
                                       st.none() | st.text(string.ascii_letters, min_size=1, max_size=6)))
    def send(self, n: int, body: bytes, cookie: tuple[str, str | None] | None) -> None:
        self.pending_cookie = cookie
        self.app.respond = self._answer
        resp = self.client.request("POST", self._url(n, None), body)
        self._read()
        self._count_connection()
        assert resp.status == 200 and resp.body == b"ok"
        req = self.app.requests[-1]
        assert (req.path, req.query, req.body) == (f"/p{n}/ev", {"k": str(n)}, body)
        assert req.headers["X-Token"] == self.sent
        assert req.headers["Authorization"] == "Bearer configured-credential"
        sent = req.headers.get("Cookie")
        assert (dict(p.split("=", 1) for p in sent.split("; ")) if sent else {}) == self.cookies
        if cookie is not None:
            name, value = cookie
            if value is None:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    @rule(n=st.integers(0, 9), user=st.sampled_from(["hook", "a@b", "us er"]))
    def send_with_user(self, n: int, user: str) -> None:
        """user:password in the URL become Basic auth, which wins over the configured Authorization."""
        self.app.respond = lambda req: MockResponse(200, b"ok")
        resp = self.client.request("POST", self._url(n, user), b"x")
        self._read()
        self._count_connection()
        req = self.app.requests[-1]
        assert resp.status == 200 and (req.path, req.query) == (f"/p{n}/ev", {"k": str(n)})
        assert req.headers["X-Token"] == self.sent
        assert req.headers["Authorization"] == "Basic " + base64.b64encode(f"{user}:pw-{n}".encode()).decode()

    @rule(value=TOKENS, atomic=st.booleans())
    def rotate(self, value: str, atomic: bool) -> None:
        if atomic:
            tmp = self.token_path + ".new"
            with open(tmp, "w") as f:
                f.write(value + "\n")
            os.replace(tmp, self.token_path)
        else:
            with open(self.token_path, "w") as f:
                f.write(value + "\n")
        self.in_file = value

    @rule()
    def reset(self) -> None:
        self.server.faults.add(Fault("reset"))
        before = len(self.app.requests)
        with pytest.raises(TransportError) as info:
            self.client.request("POST", self._url(0, None), b"x")
        self._read()
        assert "tk-" not in str(info.value) and info.value.__context__ is None
        assert len(self.app.requests) == before
        self.need_new = True

    @rule(which=st.integers(0, 3), status=st.sampled_from([400, 401, 403, 500]))
    def echo(self, which: int, status: int) -> None:
        """An error answer echoing a value a request carried: the one just sent or an older one."""
        self._read()  # the request below reads the file first
        held = [self.sent, *self.previous]
        echoed = held[min(which, len(held) - 1)]
        self.app.respond = lambda req: MockResponse.json(status, {"error": f"bad credential {echoed}"})
        resp = self.client.request("POST", self._url(1, None), b"x")
        self._count_connection()
        assert resp.status == status
        out = outcome_for_status(resp, "send", self.client.secrets())
        assert echoed not in out.excerpt and "bad credential ***" in out.excerpt, out.excerpt

    @invariant()
    def one_connection_until_a_reset(self) -> None:
        assert self.app.connections() == self.connections


def test_the_client_against_a_reference_model(mock: MockServer) -> None:
    MACHINE_SERVER[:] = [mock]
    run_state_machine_as_test(ClientMachine, settings=settings(max_examples=20, stateful_step_count=25,
                                                               **SETTINGS))


# ----------------------------------------------------- defects found by these properties, reproduced


@pytest.mark.parametrize("name", ["X-Api-Key ", "X-Api-Key\t", "X Api Key", "X-(Key)", "\x00"])
def test_a_header_name_no_server_reads_is_refused_at_load(name: str) -> None:
    """RFC 9110 §5.1: a field name is a token; RFC 9112 §5.1: "No whitespace is allowed between the
    field name and colon" and a server MUST answer 400. ``X-Api-Key `` (a quoted TOML key with a
    stray space) loaded, went out as ``X-Api-Key : v``, and every request was refused: permanent,
    every batch to the DLQ."""
    with pytest.raises(ConfigError, match="headers"):
        load_section(HttpOutputConfig, {"type": "x", "headers": {name: "v"}}, WHERE, env={})


@pytest.mark.parametrize("value", ["Bearer abc123 ", "abc\t", "a\x00b", "a\x01b", "a\x7fb"])
def test_a_header_value_a_server_reads_otherwise_is_refused_at_load(value: str) -> None:
    """RFC 9110 §5.5: a field value has no leading or trailing white space (a server strips it: the
    credential it reads is not the one configured, a 401 on every request) and no control character
    but HTAB (NUL: "MUST either reject the message or replace each of those characters with SP")."""
    with pytest.raises(ConfigError, match="headers"):
        load_section(HttpOutputConfig, {"type": "x", "headers": {"X-Token": value}}, WHERE, env={})


def test_header_names_that_differ_only_in_case_are_not_silently_dropped(raw: RawServer) -> None:
    """``{"X-Token" = "a", "x-token" = "b"}`` loaded and one of the two was never sent."""
    try:
        cfg = load_section(HttpOutputConfig, {"type": "x", "headers": {"X-Token": "first",
                                                                       "x-token": "second"}}, WHERE, env={})
    except ConfigError as exc:
        assert "headers" in str(exc)
        return
    client = HttpClient(cfg)
    client.request("POST", f"{raw.url}/dup", b"x")
    client.close()
    assert sorted(v for n, v in strict_fields(raw.last()) if n.lower() == "x-token") == ["first", "second"]


@pytest.mark.parametrize(("configured", "method", "compression"), [
    ({"Transfer-Encoding": "chunked"}, "POST", "none"),   # sent beside Content-Length (RFC 9112 §6.1)
    ({"Content-Length": "10"}, "GET", "gzip"),            # HEC's health GET: the server waits for 10 bytes
    ({"Content-Encoding": "gzip"}, "POST", "none"),       # a raw body labelled gzip
])
def test_a_configured_framing_header_is_refused_or_overridden(raw: RawServer, configured: dict[str, str],
                                                              method: str, compression: str) -> None:
    check_framing(raw, configured, method, b"abc", compression)


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:{port}#",          # every request went to "/", the path in the fragment
    "http://127.0.0.1:{port}?",          # ... or to "/" with the path as the query
    "http://127.0.0.1:{port}/prefix/#x",
    "http://127.0.0.1\t:{port}",         # urlsplit drops the tab; requests refuses the URL, forever
    "http://127.0.0.1:0",                # no destination has port 0: refused forever
])
def test_a_hec_endpoint_that_cannot_be_sent_to_as_written_is_refused(raw: RawServer, endpoint: str) -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        load_section(SplunkHecOutputConfig, {"type": "splunk_hec", "endpoint": endpoint.format(port=raw.port),
                                             "token": TOKEN}, WHERE, env={})


@pytest.mark.parametrize("host", ["http://127.0.0.1:{port}?pretty", "http://127.0.0.1:{port}/#"])
def test_an_elasticsearch_host_with_a_query_or_fragment_is_refused(raw: RawServer, host: str) -> None:
    """``hosts[i] + "/_bulk"`` put the bulk path into the query or the fragment: every bulk went to "/"."""
    with pytest.raises(ConfigError, match="hosts"):
        load_section(ElasticsearchOutputConfig,
                     {"type": "elasticsearch", "hosts": [host.format(port=raw.port)]}, WHERE, env={})


def test_an_upper_cased_echo_of_a_secret_with_sharp_s_is_masked() -> None:
    """A service upper-casing its input (test_http.py covers one) turns the Latin-1 "ß" of a header
    value into "SS": ``re.IGNORECASE`` does not match "ß" against "SS", and the excerpt showed it."""
    secret = "Kennwort-Straße-42"
    out = excerpt(f"invalid credential {secret.upper()}".encode(), [secret])
    assert "STRASSE" not in out and out == "invalid credential ***"
