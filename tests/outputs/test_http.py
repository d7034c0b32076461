"""The shared HTTP layer (outputs/http.py) against loopback servers: gzip, headers, TLS with a custom CA,
mTLS, proxies (plain and CONNECT) with credentials, timeouts, redirects, status classes, Retry-After,
redacted excerpts, outcomes, metrics callbacks and connection reuse.

Canary secrets are used throughout; the autouse ``no_canary_in_logs`` fixture fails any test whose log
records (captured at DEBUG, requests and urllib3 included) carry one, and ``assert_clean`` checks each
exception text for canaries, the URL, host, port and path.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config_loader import ConfigError, load_section
from agent.config_types import Duration, Secret
from outputs import http as http_mod
from outputs.base import Status
from outputs.http import (
    HttpClient,
    HttpOutputConfig,
    HttpResponse,
    TransportError,
    excerpt,
    gzip_bytes,
    outcome_for_status,
    parse_retry_after,
    status_class,
)
from outputs.mocks.server import Fault, MockApp, MockRequest, MockResponse, MockServer
from tests.certs import TlsFiles, tls_files  # noqa: F401 - the fixture
from tests.outputs.proxy import Proxy

HEADER_CANARY = "hdr-canary-7f3a9c2e5b41"
TOKEN_CANARY = "tok-canary-0d9e8f7a6b5c"
PROXY_USER = "proxy-user-canary-31a7"
PROXY_PASS = "proxy-pass-canary-9c4e"
PATH_CANARY = "path-canary-5e2b"
CANARIES = (HEADER_CANARY, TOKEN_CANARY, PROXY_USER, PROXY_PASS, PATH_CANARY)
BODY = b'{"event":"file_access","severity":"high"}\n' * 200


class Recorder(MockApp):
    """Records every request and the handler thread it came in on (one thread per connection in
    the ThreadingHTTPServer, so distinct threads = distinct connections)."""

    def __init__(self, respond: Callable[[MockRequest], MockResponse] | None = None):
        super().__init__()
        self.requests: list[MockRequest] = []
        self.threads: list[threading.Thread] = []
        self.respond = respond or (lambda req: MockResponse.json(200, {"ok": True}))
        self._lock = threading.Lock()

    def handle(self, req: MockRequest) -> MockResponse:
        with self._lock:
            self.requests.append(req)
            self.threads.append(threading.current_thread())
        return self.respond(req)

    def connections(self) -> int:
        with self._lock:
            return len({id(t) for t in self.threads})

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.threads.clear()


def assert_clean(text: str, *also: str) -> None:
    """No canary, and none of the given URL parts (host, port, path), in an error text."""
    for needle in (*CANARIES, *also):
        assert needle not in text, f"{needle!r} leaked into {text!r}"


def assert_clean_error(exc: BaseException, url: str, *also: str) -> None:
    """The exception text and its whole formatted traceback carry no secret or URL part."""
    assert exc.__cause__ is None and exc.__context__ is None  # nothing chained that holds the URL
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    rendered = "".join(traceback.format_exception(exc))
    for text in (str(exc), repr(exc)):
        assert_clean(text, host_port, port, f"/{PATH_CANARY}", *also)
    # The traceback also holds file paths and line numbers, where the port's bare digits may occur
    # (a checkout under /tmp/s9/...): there the port is looked for as a URL or keyword would carry it.
    assert_clean(rendered, host_port, f":{port}", f"port={port}", f"port {port}", f"/{PATH_CANARY}", *also)
    assert host not in str(exc)


@pytest.fixture(autouse=True)
def no_canary_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    formatter = logging.Formatter()
    for record in records:
        assert_clean(formatter.format(record))


@pytest.fixture
def app() -> Recorder:
    return Recorder()


@pytest.fixture
def server(app: Recorder) -> Iterator[MockServer]:
    with MockServer(app) as s:
        yield s


@pytest.fixture
def tls_server(app: Recorder, tls_files: TlsFiles) -> Iterator[MockServer]:  # noqa: F811
    with MockServer(app, certfile=str(tls_files.server_cert), keyfile=str(tls_files.server_key)) as s:
        yield s


@pytest.fixture
def mtls_server(app: Recorder, tls_files: TlsFiles) -> Iterator[MockServer]:  # noqa: F811
    with MockServer(app, certfile=str(tls_files.server_cert), keyfile=str(tls_files.server_key),
                    client_ca=str(tls_files.ca_cert)) as s:
        yield s


def make_client(*, on_response: Callable[[str, float], None] | None = None, pool_size: int = 4,
                **config: object) -> HttpClient:
    return HttpClient(HttpOutputConfig(**config), pool_size=pool_size,  # type: ignore[arg-type]
                      on_response=on_response)


def url_of(server: MockServer) -> str:
    return f"{server.url}/{PATH_CANARY}/collector?token={TOKEN_CANARY}"


def send_expecting_error(client: HttpClient, url: str, **kw: object) -> TransportError:
    with pytest.raises(TransportError) as info:
        client.request("POST", url, BODY, **kw)  # type: ignore[arg-type]
    assert_clean_error(info.value, url)
    return info.value


# --- bodies and headers ------------------------------------------------------------------------


def test_gzip_post_server_decodes_the_exact_bytes(server: MockServer, app: Recorder) -> None:
    resp = make_client().request("POST", url_of(server), BODY, {"Content-Type": "application/json"})
    assert resp.status == 200 and resp.json() == {"ok": True}
    req = app.requests[-1]
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.decode_error == ""
    assert req.body == BODY
    assert req.raw_length < len(BODY)  # compressed on the wire
    assert req.path == f"/{PATH_CANARY}/collector" and req.query == {"token": TOKEN_CANARY}
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"].startswith("clawd-agent/")


def test_requests_carry_what_a_session_request_would_send(server: MockServer, app: Recorder) -> None:
    """The client sends through the adapter, not Session.request: the same headers must still go out
    (requests' defaults under the caller's, Content-Length, the URL's query as given, encoded once)."""
    client = make_client(compression="none")
    url = f"{server.url}/a%20b/{PATH_CANARY}?token={TOKEN_CANARY}&x=%2F"
    client.request("POST", url, b"abc", {"Accept": "application/json"})
    client.request("POST", url, None)
    client.request("GET", url)
    with_body, empty_post, get = app.requests
    assert with_body.headers["Content-Length"] == "3" and with_body.body == b"abc"
    assert with_body.headers["Accept"] == "application/json"  # the caller's header wins
    assert empty_post.headers["Accept"] == "*/*" and "gzip" in empty_post.headers["Accept-Encoding"]
    assert empty_post.headers["Content-Length"] == "0"
    assert get.headers.get("Content-Length") is None and get.method == "GET"
    assert with_body.path == f"/a%20b/{PATH_CANARY}" and with_body.query == {"token": TOKEN_CANARY, "x": "/"}


def test_url_credentials_method_case_and_unset_headers_as_session_request(server: MockServer,
                                                                          app: Recorder) -> None:
    """user:password in a URL (a webhook's) become Basic auth and never go on the request line; a
    lower-case method is sent upper-case; a header the caller unsets (None) is not sent."""
    client = make_client(compression="none")
    host = server.url.split("://", 1)[1]
    client.request("post", f"http://hook%40user:{TOKEN_CANARY}@{host}/hook", b"{}", {"Accept": None})
    (req,) = app.requests
    assert req.method == "POST" and req.path == "/hook"
    user_pass = base64.b64decode(req.headers["Authorization"].removeprefix("Basic ")).decode()
    assert user_pass == f"hook@user:{TOKEN_CANARY}"
    assert req.headers.get("Accept") is None


def test_a_cookie_the_server_sets_goes_back_with_later_requests(server: MockServer, app: Recorder) -> None:
    """Splunk behind a load balancer: HEC acks are per indexer, and the balancer keeps a client on one
    indexer with a sticky cookie, which every later request (ack queries included) must carry."""
    node = iter(("node-2", "node-2", "node-5"))

    def respond(req: MockRequest) -> MockResponse:
        value = next(node, "node-5")
        return MockResponse.json(200, {"ok": True}, {"Set-Cookie": f"AWSALB={value}; Path=/"})

    app.respond = respond
    client = make_client()
    for _ in range(4):
        client.request("POST", url_of(server), BODY)
    cookies = [r.headers.get("Cookie") for r in app.requests]
    assert cookies == [None, "AWSALB=node-2", "AWSALB=node-2", "AWSALB=node-5"]


def test_a_payload_is_compressed_once_and_sent_as_it_is(server: MockServer, app: Recorder) -> None:
    """``payload()`` encodes for the wire up front (the output then drops the raw bytes while the
    request is in flight); ``request`` sends it untouched, and says gzip only if it is gzip."""
    client = make_client()
    payload = client.payload(BODY)
    assert payload.gzipped and gzip.decompress(payload.data) == BODY
    client.request("POST", url_of(server), payload, compress=True)  # no second compression
    req = app.requests[-1]
    assert req.headers["Content-Encoding"] == "gzip" and req.body == BODY
    assert req.raw_length == len(payload.data)
    plain = make_client(compression="none").payload(BODY)
    assert not plain.gzipped and plain.data == BODY
    client.request("POST", url_of(server), plain)
    req = app.requests[-1]
    assert "Content-Encoding" not in req.headers and req.body == BODY and req.raw_length == len(BODY)


def test_request_lines_are_not_logged_even_at_debug(server: MockServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # urllib3 logs '"POST /path?query HTTP/1.1" 200' at DEBUG: a webhook URL is a secret.
    make_client().request("POST", url_of(server), BODY)
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]


def test_large_bodies_are_compressed_off_the_loop_to_the_same_bytes(server: MockServer,
                                                                   app: Recorder) -> None:
    from outputs.http import OFFLOAD_BYTES

    big = b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 97)) for i in range(20_000))
    assert len(big) > OFFLOAD_BYTES
    make_client().request("POST", url_of(server), big)
    req = app.requests[-1]
    assert req.headers["Content-Encoding"] == "gzip" and req.body == big
    assert req.raw_length < len(big) // 4


@pytest.mark.parametrize(("isal", "level", "offloaded"),
                         [(True, 1, False), (True, 6, True), (False, 1, True)])
def test_only_slow_compression_of_large_bodies_goes_to_the_threadpool(
        monkeypatch: pytest.MonkeyPatch, isal: bool, level: int, offloaded: bool) -> None:
    """ISA-L compresses a 5 MiB body in ~2 ms, in the caller; zlib (levels 4..9, or no ISA-L wheel)
    takes ~13 ms and runs in gevent's threadpool. Small bodies never leave the caller."""
    import threading

    import outputs.http as http_mod

    if not isal:
        monkeypatch.setattr(http_mod, "_isal_zlib", None)
    real_gzip = http_mod.gzip_bytes
    elsewhere: list[int] = []  # sizes compressed off this thread

    def recording_gzip(data, lvl=1, **kw):
        if threading.get_native_id() != here:
            elsewhere.append(len(data))
        return real_gzip(data, lvl, **kw)

    here = threading.get_native_id()
    monkeypatch.setattr(http_mod, "gzip_bytes", recording_gzip)
    big = [BODY] * (http_mod.OFFLOAD_BYTES // len(BODY) + 1)
    assert gzip.decompress(http_mod.compress_off_loop(big, level)) == b"".join(big)
    assert gzip.decompress(http_mod.compress_off_loop(BODY, level)) == BODY
    assert elsewhere == ([len(big)] if offloaded else [])


def test_gzip_bytes_round_trip_and_level() -> None:
    assert gzip.decompress(gzip_bytes(BODY, 1)) == BODY
    assert gzip.decompress(gzip_bytes(BODY, 9)) == BODY
    assert len(gzip_bytes(BODY, 9)) <= len(gzip_bytes(BODY, 1))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_gzip_bytes_isal_and_zlib_both_give_standard_gzip(level: int) -> None:
    """ISA-L (levels 1..3, when installed) and the stdlib fallback both produce RFC 1952 gzip that the
    stdlib decodes; a body of mixed random and repeated bytes exercises stored and compressed blocks."""
    import zlib

    from isal import isal_zlib  # pinned in requirements.txt; a host without it falls back to zlib
    body = os.urandom(70_000) + BODY * 2_000
    for codec in (isal_zlib, zlib):
        out = gzip_bytes(body, level, codec=codec)
        assert out[:2] == b"\x1f\x8b" and gzip.decompress(out) == body


@pytest.mark.parametrize("level", [1, 6])
def test_a_body_given_in_parts_is_compressed_in_groups_without_being_joined(
        level: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts (a batch's encoded events) go to the compressor at most ~GZIP_GROUP_BYTES at a time, and
    the result decodes to the parts joined; ``gunzip_bytes`` is its inverse."""
    import outputs.http as http_mod

    monkeypatch.setattr(http_mod, "GZIP_GROUP_BYTES", 10_000)
    parts = [os.urandom(300) + BODY * (i % 7) for i in range(400)]
    fed: list[int] = []

    class Recording:
        DEFLATED = 8

        def compressobj(self, lvl: int, method: int, wbits: int) -> object:
            import zlib

            inner = zlib.compressobj(lvl, method, wbits)

            class Obj:
                def compress(self, data: bytes) -> bytes:
                    fed.append(len(data))
                    return inner.compress(data)

                def flush(self) -> bytes:
                    return inner.flush()
            return Obj()

    out = gzip_bytes(parts, level, codec=Recording())
    assert gzip.decompress(out) == b"".join(parts)
    assert http_mod.gunzip_bytes(out) == b"".join(parts)
    assert len(fed) > 10 and max(fed) < 10_000 + max(map(len, parts))  # never the whole body at once
    assert gzip.decompress(gzip_bytes([], level)) == b""


def test_gzip_bytes_uses_isal_for_fast_levels_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import outputs.http as http_mod

    used: list[int] = []

    class Spy:
        DEFLATED = 8

        def compressobj(self, level: int, method: int, wbits: int) -> object:
            used.append(level)
            import zlib

            return zlib.compressobj(level, method, wbits)

    monkeypatch.setattr(http_mod, "_isal_zlib", Spy())
    assert gzip.decompress(gzip_bytes(BODY, 1)) == BODY
    assert gzip.decompress(gzip_bytes(BODY, 6)) == BODY
    assert used == [1]  # level 6 went to zlib: the operator asked for smaller bodies


def test_compression_none_sends_raw_bytes(server: MockServer, app: Recorder) -> None:
    make_client(compression="none").request("POST", url_of(server), BODY)
    req = app.requests[-1]
    assert "Content-Encoding" not in req.headers
    assert req.body == BODY and req.raw_length == len(BODY)


def test_compress_argument_overrides_the_config(server: MockServer, app: Recorder) -> None:
    make_client(compression="gzip").request("POST", url_of(server), BODY, compress=False)
    assert "Content-Encoding" not in app.requests[-1].headers
    make_client(compression="none").request("POST", url_of(server), BODY, compress=True)
    assert app.requests[-1].headers["Content-Encoding"] == "gzip"
    assert app.requests[-1].body == BODY


def test_get_without_body_sends_no_content_encoding(server: MockServer, app: Recorder) -> None:
    make_client().request("GET", url_of(server))
    assert app.requests[-1].method == "GET" and "Content-Encoding" not in app.requests[-1].headers


def test_custom_headers_are_secrets_and_are_sent(server: MockServer, app: Recorder) -> None:
    client = make_client(headers={"X-Canary": Secret(HEADER_CANARY),
                                  "Authorization": Secret(f"Splunk {TOKEN_CANARY}")})
    client.request("POST", url_of(server), BODY, {"X-Request": "1"})
    req = app.requests[-1]
    assert req.headers["X-Canary"] == HEADER_CANARY
    assert req.headers["Authorization"] == f"Splunk {TOKEN_CANARY}"
    assert req.headers["X-Request"] == "1"
    assert HEADER_CANARY not in repr(client.config) and TOKEN_CANARY not in repr(client.config)


def test_caller_headers_win_over_configured_ones_case_insensitively(server: MockServer,
                                                                    app: Recorder) -> None:
    client = make_client(headers={"authorization": Secret("configured")})
    client.request("POST", url_of(server), BODY, {"Authorization": "from-output"})
    assert app.requests[-1].headers["Authorization"] == "from-output"


def test_file_secret_header_is_reread_after_rotation(server: MockServer, app: Recorder,
                                                      tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("first-value\n")
    client = make_client(headers={"Authorization": Secret.parse(f"file:{f}")})
    client.request("GET", url_of(server))
    f.write_text("second-value-longer\n")
    # what Output.refresh_credentials does after a 401/403: the client reads the fresh value next time
    client.config.headers["Authorization"].refresh()
    client.request("GET", url_of(server))
    assert [r.headers["Authorization"] for r in app.requests] == ["first-value", "second-value-longer"]


def test_unreadable_secret_file_is_a_transport_error(server: MockServer, app: Recorder,
                                                     tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN_CANARY)
    events: list[str] = []
    client = make_client(headers={"Authorization": Secret.parse(f"file:{f}")},
                         on_response=lambda c, s: events.append(c))
    f.unlink()  # mid-rotation: the file is briefly gone
    with pytest.raises(TransportError, match="CredentialError: cannot read secret file") as info:
        client.request("POST", url_of(server), BODY)
    assert_clean_error(info.value, url_of(server))
    assert events == ["error"] and app.requests == []
    assert client.secrets() == []  # nothing readable, nothing to redact, no exception


def test_secret_file_emptied_mid_rotation_is_a_transport_error_not_an_empty_credential(
        server: MockServer, app: Recorder, tmp_path: Path) -> None:
    """``echo new > token`` truncates first: read at that moment the file is empty, and an empty
    Authorization was sent (a 401, then an open breaker). Now the send fails as retryable and the
    next one reads the file again."""
    f = tmp_path / "token"
    f.write_text(TOKEN_CANARY)
    client = make_client(headers={"Authorization": Secret.parse(f"file:{f}")})
    f.write_text("")
    with pytest.raises(TransportError, match=r"CredentialError: secret file .* is empty") as info:
        client.request("POST", url_of(server), BODY)
    assert_clean_error(info.value, url_of(server))
    assert app.requests == []
    f.write_text("rotated-token\n")
    client.request("POST", url_of(server), BODY)
    assert [r.headers["Authorization"] for r in app.requests] == ["rotated-token"]


def test_secret_file_that_cannot_be_read_is_a_transport_error(server: MockServer, app: Recorder,
                                                               tmp_path: Path) -> None:
    """The file is there (stat works) but reading it fails: still a retryable TransportError."""
    f = tmp_path / "token"
    f.write_text(TOKEN_CANARY)
    client = make_client(headers={"Authorization": Secret.parse(f"file:{f}")})
    f.unlink()
    f.mkdir()
    with pytest.raises(TransportError, match="CredentialError: cannot read secret file") as info:
        client.request("POST", url_of(server), BODY)
    assert_clean_error(info.value, url_of(server))
    assert app.requests == [] and client.secrets() == []


def test_secrets_lists_header_values_their_credentials_and_proxy_parts() -> None:
    client = make_client(headers={"Authorization": Secret(f"Splunk {TOKEN_CANARY}")},
                         proxy=Secret(f"http://{PROXY_USER}:{PROXY_PASS}%40x@127.0.0.1:3128"))
    secrets = client.secrets()
    assert f"Splunk {TOKEN_CANARY}" in secrets and TOKEN_CANARY in secrets
    assert f"http://{PROXY_USER}:{PROXY_PASS}%40x@127.0.0.1:3128" in secrets
    assert f"{PROXY_PASS}@x" in secrets and f"{PROXY_USER}:{PROXY_PASS}@x" in secrets
    echoed = f"bad credentials for {PROXY_USER}:{PROXY_PASS}@x and token {TOKEN_CANARY}".encode()
    assert_clean(excerpt(echoed, secrets))


def test_header_value_with_newline_is_a_clean_transport_error(server: MockServer) -> None:
    client = make_client(headers={"X-Canary": Secret(f"{HEADER_CANARY}\r\nInjected: 1")})
    send_expecting_error(client, url_of(server))


def test_header_value_outside_latin1_is_a_clean_transport_error(server: MockServer) -> None:
    client = make_client(headers={"X-Canary": Secret(f"{HEADER_CANARY}\u2019")})
    send_expecting_error(client, url_of(server))


# --- TLS and mTLS ------------------------------------------------------------------------------


def test_tls_with_custom_ca_succeeds(tls_server: MockServer, app: Recorder,
                                     tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(ca_file=str(tls_files.ca_cert))
    assert client.request("POST", url_of(tls_server), BODY).status == 200
    by_name = url_of(tls_server).replace("127.0.0.1", "localhost")
    assert client.request("POST", by_name, BODY).status == 200
    assert app.requests[-1].body == BODY



def test_without_ca_file_the_hosts_trust_store_is_used(tls_server: MockServer, tls_files: TlsFiles,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs promise the system store without ``ca_file`` (an internal CA added with
    update-ca-certificates); requests' ``verify=True`` used certifi's bundle instead. The host's
    store is OpenSSL's default file, named here by SSL_CERT_FILE as OpenSSL allows."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca_cert))
    assert http_mod.system_trust_store() == str(tls_files.ca_cert)
    assert make_client().request("POST", url_of(tls_server), BODY).status == 200

@pytest.mark.parametrize("which", ["system_store", "unrelated_ca"])
def test_tls_without_the_ca_fails_cleanly(tls_server: MockServer, tls_files: TlsFiles,  # noqa: F811
                                          which: str) -> None:
    ca = {"system_store": "", "unrelated_ca": str(tls_files.other_ca_cert)}[which]
    client = make_client(ca_file=ca, headers={"Authorization": Secret(f"Bearer {TOKEN_CANARY}"),
                                              "X-Canary": Secret(HEADER_CANARY)})
    err = send_expecting_error(client, url_of(tls_server))
    assert "certificate verify failed" in str(err)


def test_tls_host_name_mismatch_names_the_reason_not_the_host(app: Recorder,
                                                               tls_files: TlsFiles) -> None:  # noqa: F811
    # The certificate is for 127.0.0.1 and localhost; 127.0.0.2 is loopback too on Linux.
    with MockServer(app, host="127.0.0.2", certfile=str(tls_files.server_cert),
                    keyfile=str(tls_files.server_key)) as s:
        err = send_expecting_error(make_client(ca_file=str(tls_files.ca_cert)), url_of(s))
    assert "certificate verify failed" in str(err) and "mismatch" in str(err)
    assert "127.0.0.2" not in str(err)


def test_tls_verify_false_accepts_the_untrusted_certificate(tls_server: MockServer,
                                                            app: Recorder) -> None:
    client = make_client(tls_verify=False)
    assert client.request("POST", url_of(tls_server), BODY).status == 200
    assert app.requests[-1].body == BODY


def test_tls_verify_false_wins_over_ca_file(tls_server: MockServer, tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(tls_verify=False, ca_file=str(tls_files.other_ca_cert))
    assert client.request("POST", url_of(tls_server), BODY).status == 200


def test_mtls_succeeds_with_client_cert_and_key(mtls_server: MockServer, app: Recorder,
                                                tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(ca_file=str(tls_files.ca_cert), client_cert=str(tls_files.client_cert),
                         client_key=str(tls_files.client_key))
    assert client.request("POST", url_of(mtls_server), BODY).status == 200
    assert app.requests[-1].body == BODY


def test_mtls_succeeds_with_a_combined_cert_and_key_file(mtls_server: MockServer,
                                                         tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(ca_file=str(tls_files.ca_cert), client_cert=str(tls_files.client_combined))
    assert client.request("POST", url_of(mtls_server), BODY).status == 200


@pytest.mark.parametrize("combined", [False, True])
def test_an_encrypted_client_key_is_refused_with_a_clear_error(tmp_path: Path, tls_files: TlsFiles,  # noqa: F811
                                                               combined: bool) -> None:
    """OpenSSL asks for an encrypted key's passphrase on the terminal (the agent run by hand would
    hang there, blocking every output) and fails without one: refuse it when the client is made."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(tls_files.client_key.read_bytes(), password=None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"passphrase"))
    key_file = tmp_path / "client.key"
    if combined:
        key_file.write_bytes(tls_files.client_cert.read_bytes() + encrypted)
        options = {"client_cert": str(key_file)}
    else:
        key_file.write_bytes(encrypted)
        options = {"client_cert": str(tls_files.client_cert), "client_key": str(key_file)}
    with pytest.raises(ValueError, match="encrypted private key"):
        make_client(ca_file=str(tls_files.ca_cert), **options)


def test_mtls_fails_without_a_client_cert(mtls_server: MockServer, app: Recorder,
                                          tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(ca_file=str(tls_files.ca_cert))
    send_expecting_error(client, url_of(mtls_server))
    assert app.requests == []
    # The server counts the failed handshake in its connection thread, maybe just after we saw it.
    deadline = time.monotonic() + 10
    while (not mtls_server.stats()["requests_by_status"].get("tls_error")
           and time.monotonic() < deadline):
        time.sleep(0.01)
    assert mtls_server.stats()["requests_by_status"].get("tls_error", 0) >= 1


def test_missing_tls_files_are_refused_at_construction(tmp_path: Path) -> None:
    for key in ("ca_file", "client_cert"):
        with pytest.raises(ValueError, match=key):
            make_client(**{key: str(tmp_path / "missing.pem")})


# --- proxies -----------------------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy(PROXY_USER, PROXY_PASS) as p:
        yield p


def expected_proxy_auth() -> str:
    return "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASS}".encode()).decode()


def test_http_through_proxy_with_credentials(server: MockServer, app: Recorder, proxy: Proxy) -> None:
    client = make_client(proxy=Secret(proxy.url()))
    assert client.request("POST", url_of(server), BODY).status == 200
    assert proxy.counts["POST"] == 1 and proxy.counts["refused"] == 0
    assert proxy.auth_seen == [expected_proxy_auth()]
    assert app.requests[-1].body == BODY
    assert "Proxy-Authorization" not in app.requests[-1].headers  # the proxy strips it


def test_https_through_proxy_uses_connect(tls_server: MockServer, app: Recorder, proxy: Proxy,
                                          tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(proxy=Secret(proxy.url()), ca_file=str(tls_files.ca_cert))
    for _ in range(2):
        assert client.request("POST", url_of(tls_server), BODY).status == 200
    assert proxy.counts["CONNECT"] == 1  # one tunnel, reused
    assert proxy.counts["POST"] == 0  # the proxy saw no request in clear
    assert proxy.auth_seen == [expected_proxy_auth()]
    assert "Proxy-Authorization" not in app.requests[-1].headers  # never sent inside the tunnel
    assert [r.body for r in app.requests] == [BODY, BODY]


def test_no_proxy_configured_ignores_the_environment(server: MockServer, proxy: Proxy,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("http_proxy", proxy.url())
    assert make_client().request("POST", url_of(server), BODY).status == 200
    assert sum(proxy.counts.values()) == 0


def test_wrong_proxy_credentials_http_is_an_auth_failure(server: MockServer, proxy: Proxy) -> None:
    wrong = proxy.url().replace(PROXY_PASS, "wrong-" + PROXY_PASS)
    resp = make_client(proxy=Secret(wrong)).request("POST", url_of(server), BODY)
    assert resp.status == 407 and status_class(resp.status) == "auth"
    assert outcome_for_status(resp, "send").auth_failure
    assert proxy.counts["refused"] == 1


def test_wrong_proxy_credentials_https_is_a_clean_transport_error(tls_server: MockServer, proxy: Proxy,
                                                                  tls_files: TlsFiles) -> None:  # noqa: F811
    wrong = proxy.url().replace(PROXY_PASS, "wrong-" + PROXY_PASS)
    client = make_client(proxy=Secret(wrong), ca_file=str(tls_files.ca_cert))
    err = send_expecting_error(client, url_of(tls_server))
    assert "407" in str(err)
    assert err.auth_failure  # like the 407 answer of an http:// destination: credentials re-read
    assert_clean(str(err), wrong, f"{proxy.port}")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_unreachable_proxy_error_never_shows_its_credentials(scheme: str, tls_files: TlsFiles) -> None:  # noqa: F811
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy_url = f"http://{PROXY_USER}:{PROXY_PASS}@127.0.0.1:{port}"
    client = make_client(proxy=Secret(proxy_url), ca_file=str(tls_files.ca_cert))
    err = send_expecting_error(client, f"{scheme}://127.0.0.1:9/{PATH_CANARY}")
    assert_clean(str(err), proxy_url, str(port))
    assert not err.auth_failure


def test_proxy_with_an_unsupported_scheme_is_refused_without_the_url() -> None:
    with pytest.raises(ValueError) as info:
        make_client(proxy=Secret(f"socks5://{PROXY_USER}:{PROXY_PASS}@127.0.0.1:1080"))
    assert_clean(str(info.value))



@pytest.mark.parametrize("proxy", ["squid:3128", "localhost:3128", "proxy.corp:3128",
                                   f"{PROXY_USER}:{PROXY_PASS}@proxy.corp:3128"])
def test_a_proxy_url_without_its_scheme_is_refused_at_start(proxy: str) -> None:
    """urllib3 read ``squid:`` or ``user:`` as the scheme: the output opened, and every request then
    failed with a transport error retried forever instead of a configuration error."""
    with pytest.raises(ValueError, match="scheme is required") as info:
        make_client(proxy=Secret(proxy))
    assert_clean(str(info.value))

# --- failures without an HTTP answer -----------------------------------------------------------


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A listener whose accept queue is full: further SYNs are dropped, so connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for c in fillers:
        c.close()
    listener.close()


def test_connect_timeout_is_a_transport_error(unresponsive_port: int) -> None:
    events: list[str] = []
    client = make_client(connect_timeout=Duration(0.05), on_response=lambda c, s: events.append(c))
    err = send_expecting_error(client, f"http://127.0.0.1:{unresponsive_port}/{PATH_CANARY}")
    assert "timed out" in str(err).lower() and "Connect" in str(err)
    assert events == ["error"]


def test_read_timeout_is_a_transport_error(server: MockServer) -> None:
    server.faults.add(Fault("slow", delay=0.5))
    client = make_client(request_timeout=Duration(0.05))
    err = send_expecting_error(client, url_of(server))
    assert "ReadTimeout" in str(err)


def test_per_request_timeout_overrides_the_config(server: MockServer) -> None:
    server.faults.add(Fault("slow", delay=0.5))
    err = send_expecting_error(make_client(request_timeout=Duration(30)), url_of(server), timeout=0.05)
    assert "ReadTimeout" in str(err)


def test_connection_refused_is_a_clean_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = send_expecting_error(make_client(), f"http://127.0.0.1:{port}/{PATH_CANARY}")
    assert "refused" in str(err).lower()


def test_connection_reset_is_a_clean_transport_error(server: MockServer) -> None:
    server.faults.add(Fault("reset"))
    send_expecting_error(make_client(headers={"X-Canary": Secret(HEADER_CANARY)}), url_of(server))


def trickle_server(headers: bytes, body: bytes, gap: float,
                   sent: list[int] | None = None) -> tuple[int, threading.Event]:
    """A one-shot raw server: sends ``headers`` at once, then ``body`` a byte every ``gap`` s
    (counting in ``sent`` the body bytes it got out before the client went away)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            try:
                conn.sendall(headers)
                for i in range(len(body)):
                    if done.is_set():
                        return
                    conn.sendall(body[i:i + 1])
                    if sent is not None:
                        sent.append(i + 1)
                    time.sleep(gap)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], done


def test_trickling_body_cannot_hold_a_request_past_the_read_timeout() -> None:
    body = b"x" * 400
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    port, done = trickle_server(head, body, gap=0.01)  # each read is well inside the timeout
    try:
        err = send_expecting_error(make_client(request_timeout=Duration(0.2)),
                                   f"http://127.0.0.1:{port}/{PATH_CANARY}")
    finally:
        done.set()
    assert "timed out" in str(err)



@pytest.mark.parametrize("case", ["chunk-size line", "gzip header"])
def test_a_body_trickling_inside_one_read_is_cut_at_the_deadline_under_gevent(case: str) -> None:
    """One ``read1`` can block past the deadline that ``_read_body`` checks between reads, while
    bytes keep coming: http.client reads a whole chunk-size line, urllib3 reads on until the gzip
    decoder yields output (a long FCOMMENT). The answer took as long as the server liked (~4 s here
    against a 0.3 s request_timeout): the client gave up only once the server had sent it all. Run
    in a monkey-patched process, as the agent is."""
    if case == "chunk-size line":
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"0" * 30 + b"2\r\nok\r\n0\r\n\r\n"
        slow_end = 30  # the chunk-size line's zeros: one read1 until they end
    else:
        member = gzip.compress(b"ok", mtime=0)
        with_comment = member[:3] + bytes([member[3] | 0x10]) + member[4:10]  # FCOMMENT flag
        body = with_comment + b"c" * 30 + b"\0" + member[10:]
        slow_end = len(with_comment) + 30  # the comment: no output for the decoder
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    sent: list[int] = []
    port, done = trickle_server(head, body, gap=0.1, sent=sent)
    script = (
        "from gevent import monkey; monkey.patch_all()\n"
        "from agent.config_types import Duration\n"
        "from outputs.http import HttpClient, HttpOutputConfig, TransportError\n"
        "try:\n"
        "    r = HttpClient(HttpOutputConfig(request_timeout=Duration(0.3))).request(\n"
        f"        'GET', 'http://127.0.0.1:{port}/')\n"
        "    print('ANSWER', r.status, r.body)\n"
        "except TransportError as exc:\n"
        "    print('ERROR', exc)\n")
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(root)), timeout=60)
    finally:
        done.set()
    assert out.stdout.startswith("ERROR") and "timed out" in out.stdout, (out.stdout, out.stderr)
    assert sent and sent[-1] < slow_end  # cut while the slow part was still trickling

def test_gzip_and_chunked_answers_are_decoded(server: MockServer, app: Recorder) -> None:
    app.respond = lambda req: MockResponse(200, gzip.compress(BODY), {"Content-Encoding": "gzip"})
    assert make_client().request("POST", url_of(server), BODY).body == BODY
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    port, done = trickle_server(head, chunked, gap=0)
    try:
        assert make_client().request("GET", f"http://127.0.0.1:{port}/").body == b"hello world"
    finally:
        done.set()


def test_oversized_response_body_is_refused(server: MockServer, app: Recorder,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_mod, "MAX_RESPONSE_BYTES", 1000)
    app.respond = lambda req: MockResponse(200, b"y" * 300_000)
    client = make_client()
    err = send_expecting_error(client, url_of(server))
    assert "too large" in str(err)
    app.respond = lambda req: MockResponse(200, b"small")
    assert client.request("POST", url_of(server), BODY).body == b"small"  # the client recovers


# --- answers -----------------------------------------------------------------------------------


def test_redirects_are_returned_not_followed(server: MockServer, app: Recorder) -> None:
    app.respond = lambda req: MockResponse(302, b"", {"Location": f"{server.url}/elsewhere"})
    resp = make_client(headers={"Authorization": Secret(TOKEN_CANARY)}).request(
        "POST", url_of(server), BODY)
    assert resp.status == 302 and resp.headers["Location"].endswith("/elsewhere")
    assert [r.path for r in app.requests] == [f"/{PATH_CANARY}/collector"]


def test_a_redirect_answer_keeps_its_body_within_the_limit(server: MockServer, app: Recorder,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3xx answer is read like any other: its excerpt is kept, and an oversized body is refused
    (requests' redirect bookkeeping read it whole, without cap or deadline, even with redirects off)."""
    app.respond = lambda req: MockResponse(301, b"moved to the new cluster", {"Location": "/new"})
    assert make_client().request("POST", url_of(server), BODY).body == b"moved to the new cluster"
    monkeypatch.setattr(http_mod, "MAX_RESPONSE_BYTES", 1000)
    app.respond = lambda req: MockResponse(302, b"y" * 300_000, {"Location": "/new"})
    assert "too large" in str(send_expecting_error(make_client(), url_of(server)))
    assert status_class(302) == "permanent"


def test_response_fields(server: MockServer, app: Recorder) -> None:
    app.respond = lambda req: MockResponse.json(201, {"a": [1, 2]}, {"X-Answer": "yes"})
    resp = make_client().request("POST", url_of(server), BODY)
    assert isinstance(resp, HttpResponse)
    assert (resp.status, resp.json(), resp.headers["x-answer"]) == (201, {"a": [1, 2]}, "yes")
    assert resp.elapsed >= 0


@pytest.mark.parametrize(("code", "cls"), [
    (200, "ok"), (201, "ok"), (202, "ok"), (204, "ok"), (299, "ok"),
    (301, "permanent"), (302, "permanent"), (304, "permanent"), (307, "permanent"),
    (400, "permanent"), (404, "permanent"), (405, "permanent"), (409, "permanent"), (422, "permanent"),
    (401, "auth"), (403, "auth"), (407, "auth"),
    (408, "retry"), (429, "throttled"), (413, "split"),
    (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"), (599, "retry"),
])
def test_status_class_table(code: int, cls: str) -> None:
    assert status_class(code) == cls


NOW = 1_700_000_000.0


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), (" 5 ", 5.0), ("0", 0.0),
    (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
    (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),  # in the past
    ("Tue, 14 Nov 2023 22:14:20 -0000", 0.0),  # naive "-0000" is UTC (NOW + 20 s => see below)
    (None, None), ("", None), ("garbage", None), ("-5", None), ("1.5", None), ("5s", None),
    ("\u00b2", None), ("\u0663", None),  # non-ASCII digits are not delta-seconds
    ("Wed, 32 Oct 2015 07:28:00 GMT", None), ("Wed, 21 Oct 99999 07:28:00 GMT", None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, now=NOW if value and "-0000" not in value else NOW + 99999)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("value", [
    "Tue, 14 Nov 2023 22:14:20 -0000",  # "-0000": no zone given, read as UTC
    "Tue Nov 14 22:14:20 2023",  # asctime, always UTC
    "Tuesday, 14-Nov-23 22:14:20 GMT",  # RFC 850
])
def test_parse_retry_after_dates_without_zone_are_utc(value: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        # 2023-11-14T22:13:20Z is NOW; the dates are 60 s later.
        assert parse_retry_after(value, now=NOW) == pytest.approx(60.0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(("value", "year"), [
    ("Thursday, 01-Jan-70 00:00:00 GMT", 2070),  # 47 years ahead of 2023: not "more than 50"
    ("Friday, 01-Jan-73 00:00:00 GMT", 2073),  # 50 years ahead: still the future
    ("Saturday, 01-Jan-74 00:00:00 GMT", 1974),  # 51 years ahead: the most recent past 74
    ("Sunday, 06-Nov-94 08:49:37 GMT", 1994),
    ("Tuesday, 14-Nov-23 22:14:20 GMT", 2023),
])
def test_an_rfc850_two_digit_year_is_read_as_rfc_9110_says(value: str, year: int) -> None:
    """RFC 9110 §5.6.7: a two-digit year that appears more than 50 years in the future is the most
    recent past year with those digits (email.utils pivots at 69: 1970 for "70")."""
    when = datetime.strptime(value.split(", ")[1], "%d-%b-%y %H:%M:%S GMT").replace(year=year, tzinfo=UTC)
    assert parse_retry_after(value, now=NOW) == pytest.approx(max(0.0, when.timestamp() - NOW))


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises_or_goes_negative(value: str) -> None:
    got = parse_retry_after(value, now=NOW)
    assert got is None or got >= 0


# --- excerpts and outcomes ---------------------------------------------------------------------


def test_excerpt_redacts_known_secrets() -> None:
    body = f'{{"error":"bad token {TOKEN_CANARY}","hdr":"{HEADER_CANARY}"}}'.encode()
    out = excerpt(body, [TOKEN_CANARY, HEADER_CANARY])
    assert_clean(out)
    assert "bad token ***" in out


@pytest.mark.parametrize("echo", [
    lambda s: s.upper(),                                      # a service that upper-cases its input
    lambda s: json.dumps(s)[1:-1],                            # JSON with \uXXXX escapes
    lambda s: json.dumps(s, ensure_ascii=False)[1:-1].replace("/", "\\/"),  # JSON escaping '/'
    lambda s: urllib.parse.quote(s, safe=""),                 # a query string
    lambda s: urllib.parse.quote_plus(s),                     # a form body
])
def test_excerpt_masks_a_secret_echoed_in_another_case_or_encoding(echo) -> None:
    secret = 'Pa/ss w\u00f6rd"CANARY-7d1e'.encode().decode("unicode_escape")
    shown = echo(secret)
    assert shown != secret
    out = excerpt(f'{{"error":"rejected credential {shown} for user"}}'.encode(), [secret])
    assert shown not in out and "CANARY-7D1E" not in out.upper(), out
    assert "rejected credential *** for user" in out


@pytest.mark.parametrize(("body", "kept"), [
    (f"Authorization: Splunk {TOKEN_CANARY}", "Authorization: Splunk ***"),
    (f'{{"password": "{TOKEN_CANARY} has spaces", "x": 1}}', '"password": "***"'),
    (f"password='{TOKEN_CANARY}' user=bob", "user=bob"),
    (f"url?token={TOKEN_CANARY}&page=2", "token=***&page=2"),
    (f"api_key: {TOKEN_CANARY}; next", "api_key: ***; next"),
    (f"x-api-key={TOKEN_CANARY}", "x-api-key=***"),
    (f"rejected Bearer {TOKEN_CANARY} (expired)", "Bearer *** (expired)"),
    (f"header ApiKey {TOKEN_CANARY}", "ApiKey ***"),
    (f'"client_secret":"{TOKEN_CANARY}"', '"client_secret":"***"'),
])
def test_excerpt_masks_credential_shaped_values(body: str, kept: str) -> None:
    out = excerpt(body.encode())
    assert_clean(out)
    assert kept in out


def test_excerpt_keeps_plain_error_words() -> None:
    for text in ('{"text":"Invalid token","code":4}', '{"text":"Token disabled","code":1}',
                 "security_exception: missing authentication credentials for REST request"):
        assert excerpt(text.encode()) == text


def test_excerpt_makes_one_line_without_control_characters() -> None:
    out = excerpt(b"line1\r\nline2\x1b[31m red\x00\x7f\xc2\x85 \xe2\x80\xae rtl \xe2\x80\xa8end\t!")
    assert out == "line1 line2 [31m red rtl end !"
    assert "\n" not in out and "\x1b" not in out and "\u202e" not in out


def test_excerpt_truncates_and_marks_it() -> None:
    out = excerpt(b"a" * 5000, limit=50)
    assert out == "a" * 50 + "..."
    assert excerpt(b"short") == "short"
    assert excerpt(b"\xff\xfe invalid utf-8") == "\ufffd\ufffd invalid utf-8"


def test_excerpt_masks_a_secret_cut_by_the_read_window() -> None:
    # Control bytes collapse to nothing, so the cut secret would end up inside the excerpt.
    limit = 50
    body = b"\x00" * (limit * 4 - 10) + TOKEN_CANARY.encode() + b" tail"
    out = excerpt(body, [TOKEN_CANARY], limit=limit)
    assert out == "***"


def test_excerpt_ignores_secrets_too_short_to_mask_safely() -> None:
    assert excerpt(b"abc abc", ["abc"]) == "abc abc"


def resp(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, headers or {}, body, 0.01)


@pytest.mark.parametrize("code", [200, 201, 204])
def test_outcome_for_2xx_is_delivered(code: int) -> None:
    assert outcome_for_status(resp(code), "send").status is Status.DELIVERED


def test_outcome_for_retryable_codes() -> None:
    for code in (408, 500, 502, 503, 504):
        out = outcome_for_status(resp(code, b"busy"), "send")
        assert out.status is Status.RETRY and not out.throttled and not out.auth_failure
        assert out.reason == f"send: HTTP {code}" and out.excerpt == "busy"
    out = outcome_for_status(resp(503, headers={"Retry-After": "12"}), "send")
    assert out.retry_after == 12.0


def test_outcome_for_429_is_throttled_with_retry_after() -> None:
    out = outcome_for_status(resp(429, b"slow down", {"retry-after": "7"}), "bulk")
    assert (out.status, out.throttled, out.retry_after) == (Status.RETRY, True, 7.0)
    date = format_datetime(datetime.fromtimestamp(time.time() + 3600, UTC), usegmt=True)
    out = outcome_for_status(resp(429, headers={"Retry-After": date}), "bulk")
    assert out.retry_after is not None and 3500 < out.retry_after <= 3600
    assert outcome_for_status(resp(429, headers={"Retry-After": "soon"}), "bulk").retry_after is None


@pytest.mark.parametrize("code", [401, 403, 407])
def test_outcome_for_auth_failures(code: int) -> None:
    out = outcome_for_status(resp(code, f"invalid token {TOKEN_CANARY}".encode()), "send",
                             [TOKEN_CANARY])
    assert out.status is Status.RETRY and out.auth_failure and not out.throttled
    assert "credentials refused" in out.reason
    assert_clean(out.reason + out.excerpt)


def test_outcome_for_413_splits() -> None:
    out = outcome_for_status(resp(413, b"too large"), "send")
    assert out.status is Status.SPLIT and out.excerpt == "too large"


@pytest.mark.parametrize("code", [400, 404, 405, 409, 422, 302])
def test_outcome_for_other_codes_is_permanent(code: int) -> None:
    out = outcome_for_status(resp(code, f'{{"error":"no", "token":"{TOKEN_CANARY}"}}'.encode()), "send")
    assert out.status is Status.PERMANENT and out.failed == []
    assert out.reason == f"send: HTTP {code}"
    assert_clean(out.excerpt)


# --- callbacks, reuse, concurrency -------------------------------------------------------------


def test_on_response_receives_classes_and_error(server: MockServer, app: Recorder) -> None:
    seen: list[tuple[str, float]] = []
    codes = iter([200, 408, 429, 401, 413, 404, 503])
    app.respond = lambda req: MockResponse(next(codes))
    client = make_client(on_response=lambda cls, secs: seen.append((cls, secs)))
    for _ in range(7):
        client.request("POST", url_of(server), BODY)
    server.faults.add(Fault("reset"))
    with pytest.raises(TransportError):
        client.request("POST", url_of(server), BODY)
    assert [c for c, _ in seen] == ["ok", "retry", "throttled", "auth", "split", "permanent", "retry",
                                    "error"]
    assert all(secs >= 0 for _, secs in seen)


def test_sequential_requests_reuse_one_connection(server: MockServer, app: Recorder) -> None:
    client = make_client()
    for _ in range(5):
        assert client.request("POST", url_of(server), BODY).status == 200
    assert len(app.requests) == 5 and app.connections() == 1


def test_tls_requests_reuse_one_connection(mtls_server: MockServer, app: Recorder,
                                           tls_files: TlsFiles) -> None:  # noqa: F811
    client = make_client(ca_file=str(tls_files.ca_cert), client_cert=str(tls_files.client_cert),
                         client_key=str(tls_files.client_key))
    for _ in range(4):
        client.request("POST", url_of(mtls_server), BODY)
    assert len(app.requests) == 4 and app.connections() == 1


def test_error_answers_keep_the_connection(server: MockServer, app: Recorder) -> None:
    codes = iter([503, 429, 200])
    app.respond = lambda req: MockResponse.json(next(codes), {"e": 1})
    client = make_client()
    assert [client.request("POST", url_of(server), BODY).status for _ in range(3)] == [503, 429, 200]
    assert app.connections() == 1


def test_concurrent_requests_share_the_client(server: MockServer, app: Recorder) -> None:
    client = make_client(pool_size=4)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            s = client.request("POST", url_of(server), BODY).status
            with lock:
                statuses.append(s)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 30
    assert all(r.body == BODY for r in app.requests) and len(app.requests) == 30
    client.close()


# --- configuration -----------------------------------------------------------------------------


def test_config_loads_headers_and_proxy_as_secrets(tmp_path: Path) -> None:
    f = tmp_path / "proxy"
    f.write_text(f"http://{PROXY_USER}:{PROXY_PASS}@127.0.0.1:3128\n")
    cfg = load_section(HttpOutputConfig, {
        "type": "x", "headers": {"X-Canary": "${CANARY}"}, "proxy": f"file:{f}",
        "compression": "none", "connect_timeout": "250ms", "request_timeout": "10s",
    }, "agent.toml: [outputs.x]", env={"CANARY": HEADER_CANARY})
    assert isinstance(cfg.headers["X-Canary"], Secret) and isinstance(cfg.proxy, Secret)
    assert cfg.headers["X-Canary"].reveal() == HEADER_CANARY
    assert cfg.proxy.reveal().endswith("@127.0.0.1:3128")
    assert (cfg.connect_timeout, cfg.request_timeout) == (0.25, 10.0)
    assert_clean(repr(cfg))


@pytest.mark.parametrize(("table", "message"), [
    ({"compression_level": 0}, "compression_level"),
    ({"compression_level": 10}, "compression_level"),
    ({"client_key": "/k.pem"}, "client_key"),
    ({"compression": "br"}, "compression"),
    ({"connect_timeout": 0}, "connect_timeout"),  # urllib3 refuses 0: every request would fail
    ({"request_timeout": "0s"}, "request_timeout"),
])
def test_config_validation(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_section(HttpOutputConfig, table, "agent.toml: [outputs.x]", env={})


def test_defaults_verify_tls_and_compress() -> None:
    cfg = HttpOutputConfig()
    assert cfg.tls_verify is True and cfg.compression == "gzip" and cfg.proxy is None
    assert cfg.headers == {} and cfg.compression_level == 1


GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import pathlib, sys, tempfile, gevent
from outputs.http import HttpClient, HttpOutputConfig, TransportError
from outputs.mocks.server import MockApp, MockResponse, MockServer
from tests.certs import make_tls_files
class App(MockApp):
    def handle(self, req):
        return MockResponse.json(200, {"len": len(req.body)})
tls = make_tls_files(pathlib.Path(tempfile.mkdtemp()))
with MockServer(App(), certfile=str(tls.server_cert), keyfile=str(tls.server_key)) as s:
    c = HttpClient(HttpOutputConfig(ca_file=str(tls.ca_cert)), pool_size=4)
    jobs = [gevent.spawn(c.request, "POST", s.url + "/x", b"a" * 10000) for _ in range(20)]
    gevent.joinall(jobs, raise_error=True)
    print(sorted({j.value.status for j in jobs}), sorted({j.value.json()["len"] for j in jobs}))
    s.faults.extend([{"kind": "slow", "delay": 1}])
    try:
        c.request("POST", s.url + "/x", b"a", timeout=0.05)
    except TransportError as e:
        print(e)
"""


@pytest.mark.integration
def test_greenlets_share_one_client_under_gevent_patching() -> None:
    """The agent runs monkey-patched: TLS, pooling, read1 body reads and timeouts must work there."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["[200] [10000]", "ReadTimeout: timed out"]


def test_a_413_without_a_body_says_what_it_means() -> None:
    """Elasticsearch answers 413 with no body: the DLQ entry of the event refused alone must still
    tell the operator why."""
    from outputs.base import Status
    from outputs.http import HttpResponse, outcome_for_status

    outcome = outcome_for_status(HttpResponse(413, {}, b"", 0.001), "bulk")
    assert outcome.status is Status.SPLIT
    assert outcome.reason == "bulk: HTTP 413 (request body larger than the destination accepts)"
