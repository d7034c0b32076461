"""Property-based tests of the HTTP layer's TLS and proxy handling (outputs/http.py) against
docs/outputs/http.md, on real loopback servers (outputs/mocks/server.py, TLS and mTLS) and a real
forward proxy (tests/outputs/proxy.py). Why: every HTTP output (Splunk HEC, Elasticsearch) trusts,
authenticates and routes through this one client, so a wrong trust decision, a credential sent to
the wrong party or a misclassified failure is wrong for every destination. tests/outputs/test_http.py
pins chosen cases; these draw combinations of them. Header and URL rules are test_http_properties.py's.

1. Verification and mTLS: for any server certificate (valid; expired; not yet valid; for another
   host), host name or IP in the URL, trust (the CA, an unrelated CA, the host's store, a bundle
   holding both), ``tls_verify``, a server demanding a client certificate or not, any client
   certificate (none; the CA's, in two files or one; an unrelated CA's; an expired one), direct or
   through a ``CONNECT`` tunnel: the request is answered exactly when the model says so (``tls_verify
   = false`` accepts any server certificate, ``false`` wins over ``ca_file``; otherwise the CA must
   be trusted, the name in the certificate and the date within its validity; an mTLS server takes
   only a valid certificate of its CA). A failure is a ``TransportError`` (retryable, no
   ``auth_failure``, no chained exception) whose text reads ``SSLError: certificate verify failed:
   <reason>`` with one of the reasons the docs name for the failures present, never a host, port,
   path or secret; ``on_response`` gets ``"error"``; the server sees no request; the outputs (HEC,
   Elasticsearch) turn it into a RETRY, never a PERMANENT (no DLQ for a TLS problem).
2. TLS files at open: a ``ca_file``/``client_cert``/``client_key`` that is missing or a directory, or
   an encrypted key (PKCS#8 or legacy ``Proc-Type``), is refused when the client is made, naming the
   key or the file (docs: "an open failure", "an error naming the file"); ``client_key`` without
   ``client_cert`` is a load error. A file that exists but holds no usable PEM (garbage, empty, a
   key that does not match the certificate) is refused at open too, naming the key and the file
   (accepted, every request failed with a text that named neither, retried forever).
3. Proxy credentials: any user name and password of printable ASCII, percent-encoded in the proxy URL
   as the docs say: the proxy gets ``Proxy-Authorization: Basic base64(user:password)`` (decoded),
   once per ``CONNECT`` for https:// or with the absolute-URI request for http://; the destination
   never gets it through a tunnel, and the ``CONNECT`` carries none of the destination's credentials
   (configured headers, the output's own). Wrong credentials: for http:// a 407 answer classed
   ``auth``, for https:// a ``TransportError`` ``ProxyError: proxy refused the tunnel (HTTP 407)`` with
   ``auth_failure``; either way an authentication failure Outcome, no secret in any text.
4. Environment proxies: whatever ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` say, an unset ``proxy``
   sends directly and a set one sends through it (the docs: "ignored").
5. A state machine rotates a ``file:`` proxy secret between a proxy with its right credentials, the
   same proxy with wrong ones and a second proxy without authentication, sending http:// and https://
   requests: each request goes where the current file says, with its outcome, and ``secrets()``
   holds the current and previous passwords (for excerpt redaction).
6. Proxy URLs at open: a URL no request can use (port out of range, 0 or not a number, no host, an
   unencoded ``#`` or ``?`` in the password, a bad IPv6 literal) and credentials a header cannot
   carry (a character outside Latin-1, encoded or not) are refused when the client is made, naming
   ``proxy`` and never the URL (``_check_proxy``'s docstring; docs/outputs/http.md on credentials).

At the end: minimal reproductions of the defects these properties found (each failed before its fix).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import os
import string
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from agent.config_loader import ConfigError, load_section
from agent.config_types import Secret
from outputs.base import DeliveryItem, Status
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig
from outputs.http import (
    HttpClient,
    HttpOutputConfig,
    TransportError,
    outcome_for_status,
    outcome_for_transport,
    status_class,
)
from outputs.mocks.server import MockApp, MockRequest, MockResponse, MockServer
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
from tests.outputs import proxy as proxy_mod
from tests.outputs.proxy import Proxy

#: No shrink phase: the examples are small already, and shrinking round trips of failing ones took a
#: minute on this machine; a failure prints the example as generated.
SETTINGS: dict[str, Any] = dict(deadline=None, database=None, derandomize=True,
                                phases=(Phase.explicit, Phase.reuse, Phase.generate),
                                suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture])
HEADER_CANARY = "hdr-canary-tlsproxy-51c0"
TOKEN_CANARY = "tok-canary-tlsproxy-8e2d"
AUTH_CANARY = "out-canary-tlsproxy-3f9b"
PATH_CANARY = "path-canary-tlsproxy-77aa"
PROXY_USER = "proxy-user-canary-tls-41d2"
PROXY_PASS = "proxy-pass-canary-tls-0b6e"
BODY = b'{"event":"file_access"}\n' * 20
OTHER_HOST = "not-this-host.example"

CERT_KINDS = ("good", "expired", "not_yet_valid", "other_host")
CLIENT_KINDS = ("none", "good", "combined", "other_ca", "expired")
TRUSTS = ("ca", "other_ca", "system", "bundle")
#: OpenSSL's verify reasons, as the docs quote them, for each way a server certificate fails.
UNTRUSTED = {"unable to get local issuer certificate", "self-signed certificate in certificate chain",
             "self signed certificate in certificate chain", "unable to get issuer certificate"}
REASONS = {"untrusted": UNTRUSTED, "expired": {"certificate has expired"},
           "not_yet_valid": {"certificate is not yet valid"},
           "name_ip": {"IP address mismatch"}, "name_dns": {"Hostname mismatch"}}


# ------------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA and an unrelated one; server certificates of each kind (all of the CA);
    client certificates (of the CA, of the other CA, expired), each key in its own file too."""

    ca: Path
    other_ca: Path
    bundle: Path  # the unrelated CA and the CA, in one file
    server: dict[str, tuple[Path, Path]]
    client: dict[str, tuple[Path, Path]]
    combined: Path  # the good client certificate with its key, in one file
    directory: Path


def _make_pki(directory: Path) -> Pki:
    ca = trustme.CA(organization_name="tlsproxy test CA")
    other = trustme.CA(organization_name="tlsproxy unrelated CA")
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def write(name: str, *blobs: bytes) -> Path:
        path = directory / name
        path.write_bytes(b"".join(blobs))
        return path

    def leaf(name: str, issuer: trustme.CA, *ids: str, **kw: Any) -> tuple[Path, Path]:
        cert = issuer.issue_cert(*ids, **kw)
        return (write(f"{name}.pem", *(b.bytes() for b in cert.cert_chain_pems)),
                write(f"{name}.key", cert.private_key_pem.bytes()))

    names = ("127.0.0.1", "localhost")
    server = {
        "good": leaf("server", ca, *names),
        "expired": leaf("expired", ca, *names, not_before=now - 30 * day, not_after=now - day),
        "not_yet_valid": leaf("future", ca, *names, not_before=now + day, not_after=now + 30 * day),
        "other_host": leaf("elsewhere", ca, OTHER_HOST),
    }
    client = {
        "good": leaf("client", ca, "client@example.org"),
        "other_ca": leaf("client-other", other, "client@example.org"),
        "expired": leaf("client-expired", ca, "client@example.org", not_before=now - 30 * day,
                        not_after=now - day),
    }
    good_cert, good_key = client["good"]
    return Pki(ca=write("ca.pem", ca.cert_pem.bytes()),
               other_ca=write("other-ca.pem", other.cert_pem.bytes()),
               bundle=write("bundle.pem", other.cert_pem.bytes(), ca.cert_pem.bytes()),
               server=server, client=client,
               combined=write("combined.pem", good_key.read_bytes(), good_cert.read_bytes()),
               directory=directory)


class Recorder(MockApp):
    """Records each request's headers and body; answers 200."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[MockRequest] = []
        self._lock = threading.Lock()

    def handle(self, req: MockRequest) -> MockResponse:
        with self._lock:
            self.requests.append(req)
        return MockResponse.json(200, {"ok": True})

    def take(self) -> list[MockRequest]:
        with self._lock:
            out, self.requests = self.requests, []
        return out


class _RecordingHandler(proxy_mod._Handler):
    """The test proxy's handler, also keeping every request line and header it got."""

    def _authorized(self) -> bool:
        with self.server.lock:
            self.server.seen.append((self.command, dict(self.headers.items())))  # type: ignore[attr-defined]
        return super()._authorized()


class RecordingProxy(Proxy):
    """tests/outputs/proxy.Proxy that also records ``(method, headers)`` of each request it got."""

    def __init__(self, user: str | None = None, password: str | None = None):
        super().__init__(user, password)
        self._server.RequestHandlerClass = _RecordingHandler
        self._server.seen = []  # type: ignore[attr-defined]

    def take(self) -> list[tuple[str, dict[str, str]]]:
        with self._server.lock:
            out, self._server.seen = self._server.seen, []  # type: ignore[attr-defined]
        return out  # type: ignore[no-any-return]

    def expect(self, user: str | None, password: str | None) -> None:
        """Credentials required from now on (None: none)."""
        with self._server.lock:
            self._server.expected_auth = None if user is None else "Basic " + base64.b64encode(
                f"{user}:{password or ''}".encode()).decode()


@dataclass
class World:
    pki: Pki
    apps: dict[tuple[str, bool], Recorder]
    servers: dict[tuple[str, bool], MockServer]
    plain_app: Recorder
    plain: MockServer
    proxy: RecordingProxy
    trap: RecordingProxy  # a proxy named only by the environment: it must never be used


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pki = _make_pki(tmp_path_factory.mktemp("tlsproxy-pki"))
    with contextlib.ExitStack() as stack:
        apps: dict[tuple[str, bool], Recorder] = {}
        servers: dict[tuple[str, bool], MockServer] = {}
        for kind in CERT_KINDS:
            for mtls in (False, True):
                cert, key = pki.server[kind]
                apps[kind, mtls] = Recorder()
                servers[kind, mtls] = stack.enter_context(MockServer(
                    apps[kind, mtls], certfile=str(cert), keyfile=str(key),
                    client_ca=str(pki.ca) if mtls else None))
        plain_app = Recorder()
        plain = stack.enter_context(MockServer(plain_app))
        proxy = stack.enter_context(RecordingProxy(PROXY_USER, PROXY_PASS))
        trap = stack.enter_context(RecordingProxy())
        yield World(pki, apps, servers, plain_app, plain, proxy, trap)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log record of a test (requests' and urllib3's included, at DEBUG) is free of the
    canaries, of the drawn proxy passwords (all start ``pw-canary-``) and the rotated ones."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter()
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        text = formatter.format(record)
        for secret in (HEADER_CANARY, TOKEN_CANARY, AUTH_CANARY, PATH_CANARY, PROXY_PASS, "pw-canary-",
                       "rot-pass-canary"):
            assert secret not in text, f"{secret!r} logged: {text!r}"


def make_client(on_response: Callable[[str, float], None] | None = None,
                auth: Callable[[], dict[str, str]] | None = None, **config: Any) -> HttpClient:
    return HttpClient(HttpOutputConfig(**config), on_response=on_response, auth=auth)


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """The error and its formatted traceback hold no secret and nothing chained (which would hold
    requests' message with the URL)."""
    assert exc.__cause__ is None and exc.__context__ is None
    texts = (str(exc), repr(exc), "".join(traceback.format_exception(exc)))
    for text in texts:
        for secret in (HEADER_CANARY, TOKEN_CANARY, AUTH_CANARY, PATH_CANARY, *secrets):
            assert secret not in text, f"{secret!r} in {text!r}"


def clean_message(text: str, url: str, *secrets: str) -> None:
    """An error text (TransportError, Outcome reason) names no host, port, path or secret."""
    u = urllib.parse.urlsplit(url)
    for needle in (u.hostname or "", f":{u.port}", PATH_CANARY, TOKEN_CANARY, HEADER_CANARY, AUTH_CANARY,
                   *secrets):
        assert needle and needle not in text, f"{needle!r} in {text!r}"


# ------------------------------------------------------------------- 1. verification and mTLS


@st.composite
def tls_cases(draw: Any) -> dict[str, Any]:
    return {"cert": draw(st.sampled_from(CERT_KINDS)),
            "host": draw(st.sampled_from(["127.0.0.1", "localhost"])),
            "trust": draw(st.sampled_from(TRUSTS)), "verify": draw(st.booleans()),
            "mtls": draw(st.booleans()), "client": draw(st.sampled_from(CLIENT_KINDS)),
            "proxied": draw(st.booleans())}


def verify_failures(case: dict[str, Any]) -> list[str]:
    """What the client must find wrong with the server certificate (the model)."""
    if not case["verify"]:
        return []
    out = []
    if case["trust"] in ("other_ca", "system"):
        out.append("untrusted")
    if case["cert"] == "other_host":
        out.append("name_ip" if case["host"] == "127.0.0.1" else "name_dns")
    if case["cert"] in ("expired", "not_yet_valid"):
        out.append(case["cert"])
    return out


def tls_config(world: World, case: dict[str, Any]) -> dict[str, Any]:
    pki = world.pki
    cfg: dict[str, Any] = {"tls_verify": case["verify"],
                           "ca_file": {"ca": str(pki.ca), "other_ca": str(pki.other_ca), "system": "",
                                       "bundle": str(pki.bundle)}[case["trust"]],
                           "headers": {"X-Canary": Secret(HEADER_CANARY),
                                       "Authorization": Secret(f"Bearer {TOKEN_CANARY}")}}
    if case["client"] == "combined":
        cfg["client_cert"] = str(pki.combined)
    elif case["client"] != "none":
        cert, key = pki.client[case["client"]]
        cfg["client_cert"], cfg["client_key"] = str(cert), str(key)
    if case["proxied"]:
        cfg["proxy"] = Secret(world.proxy.url())
    return cfg


@settings(max_examples=70, **SETTINGS)
@given(case=tls_cases())
def test_a_request_is_answered_exactly_when_the_trust_model_says(world: World, case: dict[str, Any]) -> None:
    world.proxy.expect(PROXY_USER, PROXY_PASS)
    server, app = world.servers[case["cert"], case["mtls"]], world.apps[case["cert"], case["mtls"]]
    app.take()
    world.proxy.take()
    url = f"https://{case['host']}:{server.port}/{PATH_CANARY}/collector"
    seen: list[str] = []
    client = make_client(on_response=lambda cls, _s: seen.append(cls),
                         auth=lambda: {"X-Out": f"Splunk {AUTH_CANARY}"}, **tls_config(world, case))
    failures = verify_failures(case)
    refused_client = case["mtls"] and case["client"] not in ("good", "combined")
    try:
        if not failures and not refused_client:
            resp = client.request("POST", url, BODY, compress=False)
            assert resp.status == 200 and seen == ["ok"]
            got = app.take()
            assert [r.body for r in got] == [BODY]
            assert "Proxy-Authorization" not in got[0].headers  # never inside the tunnel
        else:
            with pytest.raises(TransportError) as info:
                client.request("POST", url, BODY, compress=False)
            err = info.value
            assert_clean(err, PROXY_PASS, PROXY_USER)
            clean_message(str(err), url)
            assert seen == ["error"] and not err.auth_failure
            out = outcome_for_transport(err, "hec")
            assert out.status is Status.RETRY and not out.auth_failure
            assert app.take() == []  # nothing reached the application
            if failures:
                prefix = "SSLError: certificate verify failed: "
                assert str(err).startswith(prefix), str(err)
                allowed = set().union(*(REASONS[f] for f in failures))
                assert str(err)[len(prefix):] in allowed, (str(err), failures)
            else:
                assert str(err).split(":")[0] in ("SSLError", "ConnectionError"), str(err)
    finally:
        client.close()
    if case["proxied"]:
        seen_by_proxy = world.proxy.take()
        assert [m for m, _ in seen_by_proxy] == ["CONNECT"]
        headers = seen_by_proxy[0][1]
        basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASS}".encode()).decode()
        assert headers.get("Proxy-Authorization") == f"Basic {basic}"
        # The CONNECT carries none of the destination's credentials.
        assert not any(c in v for v in headers.values() for c in (HEADER_CANARY, TOKEN_CANARY, AUTH_CANARY))


FAILING_CERTS = [("expired", "certificate has expired"), ("not_yet_valid", "certificate is not yet valid"),
                 ("other_host", "IP address mismatch")]


@pytest.mark.parametrize(("kind", "reason"), FAILING_CERTS)
@pytest.mark.parametrize("output", ["hec", "es"])
def test_outputs_retry_a_tls_failure_and_never_dlq_it(world: World, kind: str, reason: str,
                                                      output: str) -> None:
    """Through the outputs (the drain acts on their Outcome): RETRY with the reason, no DLQ."""
    server = world.servers[kind, False]
    table: dict[str, Any] = {"ca_file": str(world.pki.ca)}
    ev = {"event_id": "00000000-0000-0000-0000-000000000001", "event_type": "guard_block",
          "timestamp": "2026-03-01T08:00:00.123Z", "action": "file_access"}
    out: SplunkHecOutput | ElasticsearchOutput
    if output == "hec":
        out = SplunkHecOutput("hec", load_section(SplunkHecOutputConfig, {
            "type": "splunk_hec", "endpoint": server.url, "token": TOKEN_CANARY, **table}, "hec"))
    else:
        out = ElasticsearchOutput("es", load_section(ElasticsearchOutputConfig, {
            "type": "elasticsearch", "hosts": [server.url], "api_key": TOKEN_CANARY, **table}, "es"))
    out.open()
    try:
        item = DeliveryItem(1, ev, orjson.dumps(ev))
        item.data = out.encode(item)
        outcome = out.send([item])
    finally:
        out.close()
    assert outcome.status is Status.RETRY and not outcome.failed and not outcome.auth_failure
    assert f"SSLError: certificate verify failed: {reason}" in outcome.reason
    clean_message(outcome.reason + outcome.excerpt, server.url)


# ------------------------------------------------------------------------- 2. TLS files at open


def _encrypted(key_pem: bytes, legacy: bool) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if legacy else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"pw"))


DEFECTS = ("missing", "directory", "garbage", "empty", "encrypted_pkcs8", "encrypted_legacy", "mismatched")


@settings(max_examples=40, **SETTINGS)
@given(key=st.sampled_from(["ca_file", "client_cert", "client_key"]), defect=st.sampled_from(DEFECTS),
       combined=st.booleans(), n=st.integers(0, 10**6))
def test_a_bad_tls_file_is_refused_at_open_naming_it(
        world: World, key: str, defect: str, combined: bool, n: int) -> None:
    pki = world.pki
    good_cert, good_key = pki.client["good"]
    path = pki.directory / f"bad-{key}-{defect}-{n}.pem"
    if defect == "directory":
        path.mkdir(exist_ok=True)
    elif defect == "garbage":
        path.write_bytes(b"not a PEM file\n" + bytes(range(256)))
    elif defect == "empty":
        path.write_bytes(b"")
    elif defect.startswith("encrypted"):
        enc = _encrypted(good_key.read_bytes(), legacy=defect.endswith("legacy"))
        path.write_bytes(good_cert.read_bytes() + enc if key == "client_cert" else enc)
    elif defect == "mismatched":  # a valid PEM of the wrong thing
        other_key = pki.client["other_ca"][1]
        path.write_bytes(other_key.read_bytes() if key == "client_key"
                         else pki.server["good"][0].read_bytes() if key == "client_cert"
                         else other_key.read_bytes())
    cfg: dict[str, Any] = {"ca_file": str(pki.ca), "client_cert": str(good_cert), "client_key": str(good_key)}
    if combined and key != "client_key":
        cfg = {"ca_file": str(pki.ca), "client_cert": str(pki.combined)}
    cfg[key] = str(path)
    if key == "client_cert" and defect.startswith("encrypted"):
        cfg.pop("client_key", None)  # the key is the one inside client_cert
    server = world.servers["good", True]
    try:
        client = make_client(**cfg)
    except ValueError as exc:
        assert key in str(exc) and str(path) in str(exc), str(exc)
        assert exc.__cause__ is None
        if defect.startswith("encrypted") and key != "ca_file":
            assert "encrypted private key" in str(exc)
        return
    # Accepted at open: every request would fail (a transport error, retried forever, whose text
    # names neither the key nor the file: "SSLError: [SSL] PEM lib", "UnicodeDecodeError").
    try:
        with pytest.raises(TransportError) as info:
            client.request("POST", f"{server.url}/{PATH_CANARY}", BODY)
    finally:
        client.close()
    raise AssertionError(f"{key} {defect}: accepted at open; each request then fails: {info.value}")


def test_client_key_without_client_cert_is_a_load_error(world: World) -> None:
    with pytest.raises(ConfigError, match="client_key: needs client_cert"):
        load_section(HttpOutputConfig, {"client_key": str(world.pki.client["good"][1])}, "http")


# ------------------------------------------------------------------------ 3. proxy credentials

#: Printable ASCII (what every proxy reads alike in Basic credentials); the user id has no ':'
#: (RFC 7617 §2: "a user-id containing a colon character is invalid").
USER = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation.replace(":", "") + " ",
               min_size=1, max_size=12)
PASSWORD = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=16)


@settings(max_examples=60, **SETTINGS)
@given(user=USER, password=PASSWORD, right=st.booleans(), scheme=st.sampled_from(["http", "https"]))
def test_proxy_credentials_go_to_the_proxy_only_and_a_refusal_is_an_auth_failure(
        world: World, user: str, password: str, right: bool, scheme: str) -> None:
    user, password = f"U{user}", f"pw-canary-{password}-end"  # unique: a leak is seen in any text
    proxy = world.proxy
    proxy.expect(user, password if right else password + "!")
    try:
        _proxy_credentials_case(world, user, password, right, scheme)
    finally:
        proxy.expect(PROXY_USER, PROXY_PASS)


def _proxy_credentials_case(world: World, user: str, password: str, right: bool, scheme: str) -> None:
    proxy = world.proxy
    q = quote_all
    proxy_url = f"http://{q(user)}:{q(password)}@127.0.0.1:{proxy.port}"
    if scheme == "https":
        server, app = world.servers["good", False], world.apps["good", False]
    else:
        server, app = world.plain, world.plain_app
    app.take()
    proxy.take()
    url = f"{server.url}/{PATH_CANARY}/collector"
    seen: list[str] = []
    client = make_client(on_response=lambda cls, _s: seen.append(cls), ca_file=str(world.pki.ca),
                         proxy=Secret(proxy_url), headers={"X-Canary": Secret(HEADER_CANARY)})
    secrets = (password, q(password), proxy_url)
    try:
        assert password in client.secrets()
        if right:
            assert client.request("POST", url, BODY, compress=False).status == 200
            assert seen == ["ok"] and [r.body for r in app.take()] == [BODY]
        elif scheme == "http":
            resp = client.request("POST", url, BODY, compress=False)
            assert resp.status == 407 and status_class(407) == "auth" and seen == ["auth"]
            out = outcome_for_status(resp, "hec", client.secrets())
            assert out.status is Status.RETRY and out.auth_failure
            assert app.take() == []
        else:
            with pytest.raises(TransportError) as info:
                client.request("POST", url, BODY, compress=False)
            assert str(info.value) == "ProxyError: proxy refused the tunnel (HTTP 407)"
            assert info.value.auth_failure and seen == ["error"]
            assert_clean(info.value, *secrets)
            out = outcome_for_transport(info.value, "hec")
            assert out.status is Status.RETRY and out.auth_failure
            clean_message(out.reason, proxy_url, *secrets)
            assert app.take() == []
    finally:
        client.close()
    got = proxy.take()
    sent = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    assert [m for m, _ in got] == ["CONNECT" if scheme == "https" else "POST"]
    assert got[0][1].get("Proxy-Authorization") == sent
    if scheme == "https":
        assert HEADER_CANARY not in str(got[0][1])  # the destination's header stays in the tunnel


def quote_all(text: str) -> str:
    """Percent-encode everything reserved, as docs/outputs/http.md asks of proxy credentials."""
    return urllib.parse.quote(text, safe="")


# ---------------------------------------------------------------------- 4. environment proxies

ENV_NAMES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@settings(max_examples=20, **SETTINGS)
@given(names=st.sets(st.sampled_from(ENV_NAMES), min_size=1),
       no_proxy=st.sampled_from(["", "*", "127.0.0.1"]),
       configured=st.booleans(), scheme=st.sampled_from(["http", "https"]))
def test_environment_proxies_are_ignored(world: World, names: set[str], no_proxy: str, configured: bool,
                                         scheme: str) -> None:
    world.proxy.expect(None, None)
    world.proxy.take()
    world.trap.take()
    env = {name: world.trap.url() for name in names}
    if no_proxy:
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
    server = world.servers["good", False] if scheme == "https" else world.plain
    cfg: dict[str, Any] = {"ca_file": str(world.pki.ca)}
    if configured:
        cfg["proxy"] = Secret(world.proxy.url())
    try:
        with environment(env):
            client = make_client(**cfg)
            try:
                assert client.request("GET", f"{server.url}/x").status == 200
            finally:
                client.close()
        assert world.trap.take() == []
        assert [m for m, _ in world.proxy.take()] == ([("CONNECT" if scheme == "https" else "GET")]
                                                     if configured else [])
    finally:
        world.proxy.expect(PROXY_USER, PROXY_PASS)


# ------------------------------------------------------- 5. a file: proxy secret rotated (state)


class ProxyRotation(RuleBasedStateMachine):
    """One client whose ``proxy`` is a ``file:`` secret rotated between three values."""

    world: World

    @initialize()
    def start(self) -> None:
        w = self.world
        w.proxy.expect("rot-user", "rot-pass-canary-1")
        self.second = RecordingProxy()
        self.second.start()
        self.path = w.pki.directory / f"proxy-url-{id(self)}"
        self.values = {
            "right": f"http://rot-user:rot-pass-canary-1@127.0.0.1:{w.proxy.port}",
            "wrong": f"http://rot-user:rot-pass-canary-2@127.0.0.1:{w.proxy.port}",
            "second": f"http://rot-user:rot-pass-canary-3@127.0.0.1:{self.second.port}",
        }
        self.current = "right"
        self.history: list[str] = ["right"]
        self._write("right")
        self.client = make_client(ca_file=str(w.pki.ca), proxy=Secret.parse(f"file:{self.path}"))
        w.proxy.take()

    def _write(self, which: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(self.values[which] + "\n")
        os.replace(tmp, self.path)

    @rule(which=st.sampled_from(["right", "wrong", "second"]))
    def rotate(self, which: str) -> None:
        self._write(which)
        if which != self.current:
            self.history.append(which)
        self.current = which

    @rule(scheme=st.sampled_from(["http", "https"]))
    def send(self, scheme: str) -> None:
        w = self.world
        server = w.servers["good", False] if scheme == "https" else w.plain
        url = f"{server.url}/{PATH_CANARY}"
        if self.current == "wrong" and scheme == "https":
            with pytest.raises(TransportError) as info:
                self.client.request("POST", url, BODY)
            assert info.value.auth_failure and "407" in str(info.value)
            assert_clean(info.value, "rot-pass-canary")
        else:
            status = self.client.request("POST", url, BODY).status
            assert status == (407 if self.current == "wrong" else 200)
        via_first = [m for m, _ in w.proxy.take()]
        via_second = [m for m, _ in self.second.take()]
        used = via_second if self.current == "second" else via_first
        unused = via_first if self.current == "second" else via_second
        assert unused == []
        # A tunnel is reused while the proxy URL stays the same: at most one CONNECT per request.
        assert used in ([], ["CONNECT"]) if scheme == "https" else used == ["POST"]
        if scheme == "https" and self.current == "wrong":
            assert used == ["CONNECT"]  # refused: no tunnel to reuse

    @invariant()
    def secrets_hold_current_and_previous_passwords(self) -> None:
        if not hasattr(self, "client"):
            return
        secrets = self.client.secrets()
        for which in self.history[-2:]:
            assert self.values[which].split(":")[2].split("@")[0] in secrets

    def teardown(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
            self.second.stop()
        self.world.proxy.expect(PROXY_USER, PROXY_PASS)


def test_a_rotated_proxy_secret_applies_to_the_next_request(world: World) -> None:
    """Runs the ``ProxyRotation`` machine (the module fixture is handed in through the class)."""
    ProxyRotation.world = world
    run_state_machine_as_test(ProxyRotation, settings=settings(max_examples=12, stateful_step_count=8,
                                                               **SETTINGS))

# ------------------------------------------------------------------- 6. proxy URLs at open

#: Proxy URLs no request can use (urllib3 refuses each at every send with InvalidURL or
#: InvalidProxyURL, or connects to port 0): port out of range or not a number, no host, an
#: unencoded '#' or '?' in the password (docs: percent-encode reserved characters), a bad IPv6 literal.
BAD_PROXY_URLS = st.one_of(
    st.integers(65536, 10**6).map(lambda port: f"http://127.0.0.1:{port}"),
    st.just("http://127.0.0.1:0"),
    st.text(string.ascii_letters, min_size=1, max_size=5).map(lambda port: f"http://127.0.0.1:{port}"),
    st.sampled_from(["http://:3128", f"http://{PROXY_USER}:{PROXY_PASS}@:3128"]),
    st.tuples(st.sampled_from("#?"), st.integers(0, len(PROXY_PASS))).map(
        lambda t: f"http://{PROXY_USER}:{PROXY_PASS[:t[1]]}{t[0]}{PROXY_PASS[t[1]:]}@127.0.0.1:3128"),
    st.sampled_from(["http://[::1:3128", "https://[127.0.0.1]:3128"]),
)


@settings(max_examples=25, **SETTINGS)
@given(proxy_url=BAD_PROXY_URLS)
def test_a_proxy_url_no_request_can_use_is_refused_at_open(proxy_url: str) -> None:
    """``_check_proxy``'s contract: "Refuse a proxy URL requests cannot use, naming the problem but
    never the URL" (the scheme check alone let these through: every request then failed as a
    retryable ``InvalidURL`` transport error, forever)."""
    with pytest.raises(ValueError) as info:
        make_client(proxy=Secret(proxy_url))
    assert "proxy" in str(info.value)
    for secret in (proxy_url, PROXY_PASS, PROXY_USER):
        assert secret not in str(info.value)


#: Characters outside Latin-1: requests encodes Basic credentials as Latin-1.
WIDE = st.characters(min_codepoint=0x100, max_codepoint=0x2FFF, exclude_categories=("Cs",))


@settings(max_examples=20, **SETTINGS)
@given(wide=WIDE, at=st.integers(0, len(PROXY_PASS)), encoded=st.booleans(), in_user=st.booleans())
def test_a_proxy_credential_no_header_can_carry_is_refused_at_open(wide: str, at: int, encoded: bool,
                                                                   in_user: bool) -> None:
    """A user name or password with a character outside Latin-1 (percent-encoded UTF-8, as the docs
    ask, or as it is) was accepted; every request then failed before reaching the proxy with a bare
    ``UnicodeEncodeError`` transport error, retried forever. docs/outputs/http.md refuses at load "a
    credential no header can carry as it is (... a character outside Latin-1 ...)" (the check of
    ``check_credential``); the proxy's credentials travel in a header too."""
    piece = urllib.parse.quote(wide, safe="") if encoded else wide
    user, password = PROXY_USER, PROXY_PASS
    if in_user:
        user = user[:at] + piece + user[at:]
    else:
        password = password[:at] + piece + password[at:]
    proxy_url = f"http://{user}:{password}@127.0.0.1:3128"
    with pytest.raises(ValueError) as info:
        make_client(proxy=Secret(proxy_url))
    assert "proxy" in str(info.value)
    for secret in (proxy_url, PROXY_PASS, password, urllib.parse.unquote(password)):
        assert secret not in str(info.value)


# ------------------------------------------------------------------- minimal reproductions


def test_a_proxy_port_out_of_range_is_refused_at_open() -> None:
    """Was a bug: ``proxy = "http://127.0.0.1:99999"`` opens; each request fails ``InvalidURL``."""
    with pytest.raises(ValueError, match="proxy"):
        make_client(proxy=Secret("http://127.0.0.1:99999"))


def test_a_proxy_password_outside_latin1_is_refused_at_open() -> None:
    """Was a bug: ``p%E2%82%ACss`` (``p€ss``) opens; each request fails ``UnicodeEncodeError``."""
    with pytest.raises(ValueError, match="proxy"):
        make_client(proxy=Secret(f"http://{PROXY_USER}:p%E2%82%ACss@127.0.0.1:3128"))


def test_a_client_key_that_does_not_match_its_certificate_is_refused_at_open(world: World) -> None:
    """Was a bug: a ``client_key`` of another certificate opens; each request fails ``SSLError: [X509:
    KEY_VALUES_MISMATCH] key values mismatch``, naming neither setting nor file."""
    with pytest.raises(ValueError, match="client_cert"):
        make_client(ca_file=str(world.pki.ca), client_cert=str(world.pki.client["good"][0]),
                    client_key=str(world.pki.client["other_ca"][1]))


def test_a_ca_file_without_a_certificate_is_refused_at_open(world: World) -> None:
    """Was a bug: a ``ca_file`` holding no certificate opens; each request fails ``SSLError: [X509:
    NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found``, naming neither setting nor file."""
    path = world.pki.directory / "no-ca.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="ca_file"):
        make_client(ca_file=str(path))
