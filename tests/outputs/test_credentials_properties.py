"""Property-based tests of output credentials: ``${ENV}`` and ``file:`` secrets, their rotation, and
the rule that no secret reaches a log, an error, status, metrics or the DLQ.

1. ``SecretFileMachine`` (a hypothesis state machine): a Splunk HEC output loaded from a table whose
   ``token`` and ``headers.X-Extra`` are ``file:`` secrets (a plain file or Kubernetes' layout of
   symlinks, ``token -> ..data/token``, ``..data -> ..vN``). Rules rewrite either file at random:
   atomic rename, symlink swap, in place (truncate + write), a partial write and its completion,
   the same bytes again, deleted, replaced by a directory, empty or blank, not UTF-8, CR/LF and
   trailing blanks, a value no header can carry; and ``refresh_credentials()`` (the drain after a
   401/403). After any change a request carries exactly what the files hold now (``Splunk`` + the
   stripped token, the stripped header), never an old, empty or mixed value (docs/configuration.md:
   re-read when the file changes); a file that cannot be used fails the request as the documented
   ``CredentialError: cannot read secret file PATH`` / ``secret file PATH is empty`` / ``is not
   UTF-8 text`` (docs/outputs/http.md), a value no header can carry as a transport error, and no
   request leaves; no error text holds any value the files ever held; ``secrets()`` holds the
   values in use.
2. A leak sweep through a real ``Drain`` on a spool: canary credentials in every form (HEC token,
   HEC or Elasticsearch custom header, Elasticsearch ``id:key`` API key, basic password, bearer
   token, proxy URL user info), given as a literal, ``${ENV}`` or ``file:``, against destinations
   failing every way (DNS, connection refused, TLS mismatch, read timeout, the proxy unreachable or
   refusing its credentials, 401/403/400/5xx answers from the vendor mocks that echo the
   credentials back). The log records (formatted by agent/logs.py's JSON and text formatters,
   tracebacks included), the Outcomes' reasons and excerpts, the output's stats and status record
   (``output_extra``), ``/health``, the Prometheus exposition and the DLQ must hold no canary in any
   encoding (as is, letter case, JSON, percent-encoding, HTML, base64 at any alignment). The mocks'
   echo is checked to have happened, so the absence proves something.
3. Rotation while a request is in flight (``test_defect_*``): the destination echoes the credential
   the request carried; the excerpt is computed after the answer with ``secrets()`` as they are now,
   the rotated value, so the old one is kept unmasked in the DLQ.
   And a credential no request can carry (a line break, a character outside Latin-1) in ``token``,
   ``bearer_token`` or ``api_key`` passes the config check that a header's value fails, and then
   every send fails, retried forever.

tests/outputs/test_redaction_properties.py already covers ``excerpt``'s masking of echoed forms;
this file does not repeat it.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from prometheus_client import generate_latest

from agent.config_loader import ConfigError, load_section
from agent.logs import JsonFormatter, TextFormatter
from agent.metrics import AgentMetrics, health_document, output_extra
from outputs.base import Outcome, Status
from outputs.drain import Drain
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig
from outputs.http import TransportError
from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import Fault, MockApp, MockRequest, MockResponse, MockServer
from outputs.mocks.splunk_hec import SplunkHecApp
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
from spool.store import Spool
from tests.outputs.drain_kit import caught_up, fill, run_until
from tests.outputs.proxy import Proxy

MACHINE_SETTINGS = settings(max_examples=15, stateful_step_count=25, deadline=None, database=None,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SWEEP_SETTINGS = settings(max_examples=2, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
HEC_PATH = "/services/collector/event"

# ------------------------------------------------------------------------------------ values

#: Characters of values a header can carry (and the mocks read back as sent): no blanks at the ends
#: (a file: secret is stripped), some that change under JSON, percent-encoding, HTML and base64.
SENDABLE = st.sampled_from("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_.~+/=%@:&?#<>'\"éßÄ")
SUFFIXES = st.text(SENDABLE, min_size=4, max_size=24)


class Canaries:
    """Distinct values, each with a marker (``cnry<n>q``) that no path or message holds by chance."""

    def __init__(self) -> None:
        self.n = 0
        self.seen: list[str] = []

    def make(self, suffix: str) -> str:
        self.n += 1
        value = f"cnry{self.n}q{suffix}"
        self.seen.append(value)
        return value


def _b64_cores(secret: str) -> set[str]:
    """What base64 of ``secret`` surely contains, wherever it sits in a longer encoded string: for
    each of the 3 alignments, the encoding of the shifted secret without its edge characters."""
    raw = secret.encode()
    out: set[str] = set()
    for shift in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * shift + raw).decode()
            core = text[(shift * 4 + 2) // 3 + 1: len(text) - 4]
            if len(core) >= 8:
                out.add(core)
    return out


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` looked for (compared in lower case): as it is, JSON-escaped (``\\/``
    and ``\\uXXXX`` too), percent-encoded (``/`` kept or not, ``+`` for spaces), HTML-escaped,
    base64 (standard and URL-safe) at any alignment."""
    out = {secret, json.dumps(secret)[1:-1], orjson.dumps(secret).decode()[1:-1],
           urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
           html.escape(secret), html.escape(secret).replace("&#x27;", "&#39;")}
    out |= {f.replace("/", "\\/") for f in list(out)}
    out |= _b64_cores(secret)
    return {f.lower() for f in out if len(f) >= 6}


def leaks(text: str, secrets: list[str]) -> list[str]:
    """The secrets of which some form is in ``text``."""
    low = text.lower()
    return [s for s in secrets if any(f in low for f in forms(s))]


# ------------------------------------------------------------------------------------ 1. rotation


class Recorder(MockApp):
    """Answers 200 to every request and records its credential headers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str | None, str | None]] = []
        self._lock = threading.Lock()

    def handle(self, req: MockRequest) -> MockResponse:
        with self._lock:
            self.seen.append((req.headers.get("Authorization"), req.headers.get("X-Extra")))
        return MockResponse.json(200, {"text": "Success", "code": 0})


DIRECTORY = "<a directory>"


@dataclass
class SecretFile:
    """One ``file:`` secret on disk and what it holds (``content``: bytes, None when missing, or
    ``DIRECTORY``). ``layout`` "k8s": the configured path is a symlink through ``..data`` to the
    current version directory, and an atomic rotation swaps ``..data``."""

    root: Path
    layout: str
    content: bytes | str | None = None
    version: int = 0
    pending: bytes = b""  # the rest of a partial write

    @property
    def path(self) -> Path:
        return self.root / "secret"

    def _target(self) -> Path:
        return self.root / "..data" / "secret" if self.layout == "k8s" else self.path

    def setup(self, data: bytes) -> None:
        self.root.mkdir()
        if self.layout == "k8s":
            (self.root / "..v0").mkdir()
            (self.root / "..data").symlink_to("..v0")
            self.path.symlink_to("..data/secret")
        self.write_in_place(data)

    def _clear(self) -> None:
        target = self._target()
        if target.is_dir() and not target.is_symlink():
            target.rmdir()

    def write_in_place(self, data: bytes) -> None:
        self._clear()
        with open(self._target(), "wb") as f:  # truncate, then write: `echo new > secret`
            f.write(data)
        self.content, self.pending = data, b""

    def append(self, data: bytes) -> None:
        with open(self._target(), "ab") as f:
            f.write(data)
        assert isinstance(self.content, bytes)
        self.content += data

    def rotate_atomic(self, data: bytes, keep_mtime: bool) -> None:
        """A new file moved over the old one (``mv``; ``install -p``/``rsync -t`` keep the source's
        mtime), or, in the k8s layout, a new version directory swapped in under ``..data``."""
        self.version += 1
        if self.layout == "k8s":
            new_dir = self.root / f"..v{self.version}"
            new_dir.mkdir()
            fresh = new_dir / "secret"
        else:
            fresh = self.root / f".secret.tmp{self.version}"
        fresh.write_bytes(data)
        if keep_mtime:
            os.utime(fresh, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        if self.layout == "k8s":
            old = os.readlink(self.root / "..data")
            link = self.root / "..data_tmp"
            link.symlink_to(fresh.parent.name)
            os.replace(link, self.root / "..data")
            shutil.rmtree(self.root / old)
        else:
            self._clear()
            os.replace(fresh, self.path)
        self.content, self.pending = data, b""

    def delete(self) -> None:
        target = self._target()
        if target.is_dir() and not target.is_symlink():
            target.rmdir()
        else:
            target.unlink(missing_ok=True)
        self.content, self.pending = None, b""

    def make_directory(self) -> None:
        self.delete()
        self._target().mkdir()
        self.content = DIRECTORY

    def expected(self) -> tuple[bool, str]:
        """(True, the value a reveal gives) or (False, the start of the documented error)."""
        if self.content is None or self.content == DIRECTORY:
            return False, f"cannot read secret file {self.path}"
        assert isinstance(self.content, bytes)
        try:
            text = self.content.decode("utf-8")
        except UnicodeDecodeError:
            return False, f"secret file {self.path} is not UTF-8 text"
        # Path.read_text reads with universal newlines, then the value is stripped.
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not text:
            return False, f"secret file {self.path} is empty"
        return True, text


def _unsendable_reason(values: list[str]) -> str | None:
    """What refuses a request carrying ``values`` as header values: requests' check (a line break:
    ``InvalidHeader``), then http.client's Latin-1 encoding (``UnicodeEncodeError``); None if
    nothing does."""
    if any("\n" in v or "\r" in v for v in values):
        return "InvalidHeader"
    for v in values:
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            return "UnicodeEncodeError"
    return None


EOLS = st.sampled_from(["", "\n", "\r\n", " \n", "\t", "\n\n"])
WHICH = st.sampled_from(["token", "header"])
LAYOUTS = st.sampled_from(["plain", "k8s"])


class SecretFileMachine(RuleBasedStateMachine):
    """A HEC output whose token and X-Extra header are ``file:`` secrets, rotated at random."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="secret-machine-"))
        self.canaries = Canaries()
        self.app = Recorder()
        self.server = MockServer(self.app).start()
        self.files: dict[str, SecretFile] = {}
        self.out: SplunkHecOutput | None = None
        self.sent = 0  # requests the server got

    def teardown(self) -> None:
        if self.out is not None:
            self.out.close()
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- setup ------------------------------------------------------------------------------------
    @initialize(token_layout=LAYOUTS, header_layout=LAYOUTS, token=SUFFIXES, header=SUFFIXES, eol=EOLS)
    def load(self, token_layout: str, header_layout: str, token: str, header: str, eol: str) -> None:
        """The output as agent.toml configures it; both files are read (and must be valid) at load."""
        for which, layout, suffix in (("token", token_layout, token), ("header", header_layout, header)):
            f = self.files[which] = SecretFile(self.tmp / which, layout)
            f.setup((self.canaries.make(suffix) + eol).encode())
        table = {"type": "splunk_hec", "endpoint": self.server.url,
                 "token": f"file:{self.files['token'].path}",
                 "headers": {"X-Extra": f"file:{self.files['header'].path}"}}
        cfg = load_section(SplunkHecOutputConfig, table, "test [outputs.hec]")
        self.out = SplunkHecOutput("hec", cfg)
        self.out.open()

    def _ready(self) -> bool:
        return self.out is not None

    # -- the files change -------------------------------------------------------------------------
    @precondition(_ready)
    @rule(which=WHICH, suffix=SUFFIXES, eol=EOLS, keep_mtime=st.booleans())
    def rotate_atomic(self, which: str, suffix: str, eol: str, keep_mtime: bool) -> None:
        self.files[which].rotate_atomic((self.canaries.make(suffix) + eol).encode(), keep_mtime)
        self._request()

    @precondition(_ready)
    @rule(which=WHICH, suffix=SUFFIXES, eol=EOLS)
    def rewrite_in_place(self, which: str, suffix: str, eol: str) -> None:
        self.files[which].write_in_place((self.canaries.make(suffix) + eol).encode())
        self._request()

    @precondition(_ready)
    @rule(which=WHICH, suffix=SUFFIXES, cut=st.integers(1, 40))
    def partial_write(self, which: str, suffix: str, cut: int) -> None:
        """The writer has written only the start of the new value (maybe only part of the marker)."""
        data = (self.canaries.make(suffix) + "\n").encode()
        cut = min(cut, len(data) - 1)
        f = self.files[which]
        f.write_in_place(data[:cut])
        f.pending = data[cut:]
        self._request()

    @precondition(lambda self: self._ready() and any(f.pending for f in self.files.values()))
    @rule(data=st.data())
    def finish_partial_write(self, data: st.DataObject) -> None:
        which = data.draw(st.sampled_from(sorted(w for w, f in self.files.items() if f.pending)))
        f = self.files[which]
        rest, f.pending = f.pending, b""
        f.append(rest)
        self._request()

    @precondition(lambda self: self._ready() and any(isinstance(f.content, bytes)
                                                     for f in self.files.values()))
    @rule(data=st.data())
    def same_bytes_again(self, data: st.DataObject) -> None:
        which = data.draw(st.sampled_from(sorted(w for w, f in self.files.items()
                                                 if isinstance(f.content, bytes))))
        f = self.files[which]
        assert isinstance(f.content, bytes)
        f.write_in_place(f.content)
        self._request()

    @precondition(_ready)
    @rule(which=WHICH)
    def delete(self, which: str) -> None:
        self.files[which].delete()
        self._request()

    @precondition(_ready)
    @rule(which=WHICH)
    def make_directory(self, which: str) -> None:
        self.files[which].make_directory()
        self._request()

    @precondition(_ready)
    @rule(which=WHICH, blank=st.sampled_from(["", "\n", "  \r\n", "\t \n \n"]))
    def blank(self, which: str, blank: str) -> None:
        self.files[which].write_in_place(blank.encode())
        self._request()

    @precondition(_ready)
    @rule(which=WHICH, suffix=SUFFIXES, junk=st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"]))
    def not_utf8(self, which: str, suffix: str, junk: bytes) -> None:
        self.files[which].write_in_place(self.canaries.make(suffix).encode() + junk + b"\n")
        self._request()

    @precondition(_ready)
    @rule(which=WHICH, suffix=SUFFIXES, bad=st.sampled_from(["\u2019", "\u20ac", "\ufeff", "\n", "\r",
                                                             "\r\n", "\u0100"]),
          at_start=st.booleans())
    def unsendable(self, which: str, suffix: str, bad: str, at_start: bool) -> None:
        """A value no header can carry: a character outside Latin-1 (a BOM too) or a line break inside."""
        value = self.canaries.make(suffix)
        value = (bad + value) if at_start and bad not in "\r\n" else value[:5] + bad + value[5:]
        self.files[which].write_in_place((value + "\n").encode())
        self._request()

    @precondition(_ready)
    @rule()
    def refresh(self) -> None:
        """What the drain does after a 401/403: every file: secret re-read at its next use."""
        assert self.out is not None
        self.out.refresh_credentials()
        self._request()

    # -- requests ---------------------------------------------------------------------------------
    @precondition(_ready)
    @rule()
    def request(self) -> None:
        """Another request with nothing changed (each change below is followed by one too)."""
        self._request()

    def _request(self) -> None:
        assert self.out is not None
        token_ok, token = self.files["token"].expected()
        header_ok, header = self.files["header"].expected()
        before = len(self.app.seen)
        try:
            resp = self.out.request("POST", self.server.url + HEC_PATH, b"{}", compress=False)
        except TransportError as exc:
            text = str(exc)
            assert exc.__cause__ is None and exc.__context__ is None
            assert not leaks(text, self.canaries.seen), text
            assert len(self.app.seen) == before, "a request failed and yet reached the server"
            # The configured headers are revealed first, then the output's own credential.
            event(f"request refused: {text.split(':')[0]}")
            if not header_ok:
                assert text.startswith(f"CredentialError: {header}"), (text, header)
            elif not token_ok:
                assert text.startswith(f"CredentialError: {token}"), (text, token)
            else:
                why = _unsendable_reason([header, f"Splunk {token}"])
                assert why is not None and text == why, (text, why, header, token)
            return
        event("request sent")
        assert header_ok and token_ok, ("a request went out with an unusable file", header, token)
        assert _unsendable_reason([header, f"Splunk {token}"]) is None
        assert resp.status == 200
        assert len(self.app.seen) == before + 1
        assert self.app.seen[-1] == (f"Splunk {token}", header), "not what the files hold now"

    @precondition(_ready)
    @rule()
    def secrets_in_use(self) -> None:
        """``secrets()`` never raises, and holds each value a request would carry now."""
        assert self.out is not None
        secrets = self.out.secrets()
        for which, prefix in (("token", "Splunk "), ("header", "")):
            ok, value = self.files[which].expected()
            if ok:
                assert value in secrets and prefix + value in secrets, (which, value, secrets)

    @invariant()
    def repr_shows_no_value(self) -> None:
        if self.out is not None:
            shown = repr(self.out.config) + str(self.out.config.token) + repr(self.out.config.headers)
            assert not leaks(shown, self.canaries.seen), shown


SecretFileMachine.TestCase.settings = MACHINE_SETTINGS
TestSecretFileMachine = SecretFileMachine.TestCase


# ------------------------------------------------------------------------------------ 2. the sweep

#: Values an API key's secret half may hold (base64 'id:key' is the header's form).
KEY_CHARS = st.sampled_from("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_.~+/=")
MODES = ("hec_token", "hec_header", "hec_proxy", "es_api_key", "es_basic", "es_bearer", "es_header",
         "es_proxy")
#: Failures without an HTTP answer, then answers that echo the credentials back.
DIRECT_FAILURES = ("dns", "refused", "tls", "timeout", "auth", "reject", "overload")
PROXY_FAILURES = ("proxy_down", "proxy_refuses", "reject")
ECHO = ("Authorization", "X-Canary")
PLAIN_HEC_TOKEN = "11111111-2222-3333-4444-555555555555"  # not a canary: the HEC token of other modes


class Echoing(MockApp):
    """Records every answer the mock's credential echo produced (``echoed``)."""

    echoed: list[bytes]

    def echo_response(self, req: MockRequest, resp: MockResponse) -> MockResponse:
        out = super().echo_response(req, resp)
        self.echoed.append(out.body)
        return out


class EchoHec(Echoing, SplunkHecApp):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.echoed = []


class EchoEs(Echoing, ElasticsearchMock):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.echoed = []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose listener never accepts: the connection completes in the backlog and the request
    is sent, but no answer ever comes (a read timeout)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@dataclass
class Scenario:
    """One output configured with canary credentials, and where it sends."""

    mode: str
    form: str
    canary: str
    failure: str


def _secret(form: str, value: str, env: dict[str, str], tmp: Path, name: str,
            template: Callable[[str], str] = lambda v: v) -> str:
    """How agent.toml gives ``template(value)``: a literal, ``${ENV}`` or ``file:``."""
    if form == "env":
        env[name] = value
        return template("${" + name + "}")
    if form == "file":
        path = tmp / name
        path.write_text(template(value) + "\n")
        return f"file:{path}"
    return template(value)


def _table(sc: Scenario, url: str, proxy_port: int, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """The output's table: framework keys for a quick test, the canary where its mode puts it."""
    hec = sc.mode.startswith("hec")
    table: dict[str, Any] = {"type": "splunk_hec" if hec else "elasticsearch", "batch_max_wait": 0,
                             "retry_initial": 0.001, "retry_max": 0.005, "breaker_failures": 0,
                             "healthcheck_interval": 0, "request_timeout": 0.1, "connect_timeout": 0.5,
                             "concurrency": 1, "compression": "none"}
    if hec:
        table["endpoint"] = url
        table["token"] = PLAIN_HEC_TOKEN
    else:
        table["hosts"] = [url]
    kind = sc.mode.split("_", 1)[1]
    if kind == "token":
        table["token"] = _secret(sc.form, sc.canary, env, tmp, "CNRY_TOKEN")
    elif kind == "header":
        table["headers"] = {"X-Canary": _secret(sc.form, sc.canary, env, tmp, "CNRY_HEADER")}
    elif kind == "proxy":
        quoted = urllib.parse.quote(sc.canary, safe="")
        if sc.form == "env":  # a variable in the user info is percent-encoded there
            table["proxy"] = _secret("env", sc.canary, env, tmp, "CNRY_PROXY",
                                     lambda v: f"http://shipper:{v}@127.0.0.1:{proxy_port}")
        else:
            table["proxy"] = _secret(sc.form, quoted, env, tmp, "CNRY_PROXY",
                                     lambda v: f"http://shipper:{v}@127.0.0.1:{proxy_port}")
    elif kind == "api_key":
        table["api_key"] = _secret(sc.form, f"cnryid:{sc.canary}", env, tmp, "CNRY_KEY")
    elif kind == "basic":
        table["username"] = "shipper"
        table["password"] = _secret(sc.form, sc.canary, env, tmp, "CNRY_PASSWORD")
    else:
        assert kind == "bearer"
        table["bearer_token"] = _secret(sc.form, sc.canary, env, tmp, "CNRY_BEARER")
    return table


@st.composite
def scenarios(draw: st.DrawFn, mode: str) -> Scenario:
    # requests sends a proxy's Basic credentials in Latin-1, the test proxy expects UTF-8: ASCII only
    chars = KEY_CHARS if mode in ("es_api_key", "hec_proxy", "es_proxy") else SENDABLE
    canary = "cnry" + draw(st.text(chars, min_size=8, max_size=24)) + "q"
    failure = draw(st.sampled_from(PROXY_FAILURES if mode.endswith("proxy") else DIRECT_FAILURES))
    return Scenario(mode, draw(st.sampled_from(["literal", "env", "file"])), canary, failure)


def _echo_app(sc: Scenario) -> EchoHec | EchoEs:
    """The vendor mock of the scenario: the credential unknown to it for ``auth``; a permanent 400
    for ``reject`` (the DLQ) and a lasting 503 for ``overload``, with the credentials echoed."""
    if sc.mode.startswith("hec"):
        known = ["not-the-token"] if sc.failure == "auth" else [PLAIN_HEC_TOKEN, sc.canary]
        return EchoHec(tokens=known, echo_headers=ECHO)
    if sc.failure == "auth":  # security on (a credential configured), ours unknown
        return EchoEs(api_keys=["otherid:otherkey"], echo_headers=ECHO)
    return EchoEs(api_keys=[f"cnryid:{sc.canary}"], users={"shipper": sc.canary}, bearer_tokens=[sc.canary],
                  echo_headers=ECHO)


def _secrets_of(sc: Scenario) -> list[str]:
    """The canary, and for an API key its whole 'id:key' (base64 of it is the header)."""
    return [sc.canary, f"cnryid:{sc.canary}"] if sc.mode == "es_api_key" else [sc.canary]


def _views(drain: Drain, spool: Spool, outcomes: list[Outcome], records: list[logging.LogRecord],
           health: tuple[bool, str]) -> dict[str, str]:
    """Everything the agent keeps or shows of what happened."""
    views: dict[str, str] = {}
    for k, r in enumerate(records):
        for fmt in (JsonFormatter(), TextFormatter(), logging.Formatter()):
            views[f"log {k} {type(fmt).__name__}"] = fmt.format(r)
    for k, o in enumerate(outcomes):
        views[f"outcome {k}"] = f"{o.reason}\n{o.excerpt}"
    st_ = drain.stats
    views["last_error"] = str(st_.last_error)
    views["status extra"] = orjson.dumps(output_extra(drain), default=str).decode()
    views["health check"] = health[1]
    views["/health"] = orjson.dumps(health_document({drain.name: drain}, {}, spool.stats(), 0)[1],
                                    default=str).decode()
    metrics = AgentMetrics(dict, lambda: {drain.name: drain}, spool.stats)
    for o in outcomes:
        metrics.observe_batch(drain.name, 0.001, o)
    views["metrics"] = generate_latest(metrics.registry).decode()
    for e in spool.dlq_list():
        views[f"dlq {e.id}"] = f"{e.reason}\n{bytes(e.response_excerpt or b'').decode('utf-8', 'replace')}"
    views["spool stats"] = orjson.dumps(spool.stats(), default=str).decode()
    return views


@pytest.mark.parametrize("mode", MODES)
@SWEEP_SETTINGS
@given(data=st.data())
def test_no_canary_leaks_from_any_failure(mode: str, data: st.DataObject,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """Property 2 (module docstring): whatever fails, and however the credential is given, no view
    of what happened holds it in any form."""
    sc = data.draw(scenarios(mode))
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        app = _echo_app(sc)
        server = stack.enter_context(MockServer(app))
        if sc.failure == "reject":
            app.faults.add(Fault("status", status=400, count=-1))
        elif sc.failure == "overload":
            app.faults.add(Fault("status", status=503, count=-1))
        proxy_port = closed_port()
        if sc.failure in ("proxy_refuses", "reject") and sc.mode.endswith("proxy"):
            password = "wrong" if sc.failure == "proxy_refuses" else sc.canary
            proxy = stack.enter_context(Proxy("shipper", password))
            proxy_port = proxy.port
        url = {"dns": "http://cnry-destination.invalid:8088", "refused": f"http://127.0.0.1:{closed_port()}",
               "tls": server.url.replace("http://", "https://")}.get(sc.failure, server.url)
        if sc.failure == "timeout":
            url = f"http://127.0.0.1:{stack.enter_context(silent_listener())}"
        env: dict[str, str] = {}
        table = _table(sc, url, proxy_port, env, tmp)
        hec = sc.mode.startswith("hec")
        cfg = load_section(SplunkHecOutputConfig if hec else ElasticsearchOutputConfig, table,
                           "agent.toml: [outputs.siem]", env)
        kind = SplunkHecOutput if hec else ElasticsearchOutput
        out: SplunkHecOutput | ElasticsearchOutput = kind("siem", cfg)
        spool = Spool(str(tmp / "spool.db"))
        stack.callback(spool.close)
        fill(spool, 3)
        spool.ensure_cursor("siem")
        outcomes: list[Outcome] = []
        drain = Drain(out, spool, spool.reader(), on_batch=lambda _n, _s, o: outcomes.append(o))
        done = caught_up(spool, "siem")
        run_until(drain, lambda: drain.stats.batches >= 3 or done(), timeout=20)
        health = out.healthcheck()
        out.close()
        views = _views(drain, spool, outcomes, caplog.records, health)
        assert outcomes, "no attempt was made"
        if sc.failure == "reject":
            assert spool.dlq_list(), "the refused events are not in the DLQ"
        if sc.failure in ("auth", "reject", "overload") and not sc.mode.endswith("proxy"):
            # The destination did echo the canary: its absence below proves the redaction.
            assert any(leaks(b.decode("utf-8", "replace"), _secrets_of(sc)) for b in app.echoed), app.echoed
        if sc.failure not in ("auth", "reject", "overload"):
            assert all(o.status is Status.RETRY for o in outcomes)
    found = {name: leaks(text, _secrets_of(sc)) for name, text in views.items()}
    assert not {k: v for k, v in found.items() if v}, {k: views[k] for k, v in found.items() if v}


# ------------------------------------------------------------------------------------ 3. defects


class RotatingEcho(MockApp):
    """A HEC endpoint that refuses every event as malformed (400 code 6: the DLQ) and echoes the
    credential the request carried, while the operator rotates the token file meanwhile: after the
    request was built, before its answer is read."""

    def __init__(self, rotate: Callable[[], None], shape: str):
        super().__init__()
        self.rotate, self.shape = rotate, shape
        self.echoed: list[str] = []

    def handle(self, req: MockRequest) -> MockResponse:
        credential = req.headers.get("Authorization", "").partition(" ")[2]
        self.echoed.append(credential)
        self.rotate()
        text = {"raw": f"Invalid data format for token {credential}",
                "json": f"Invalid data format: {json.dumps({'token': credential})}",
                "quoted": f"Invalid data format in /{urllib.parse.quote(credential, safe='')}/"}[self.shape]
        return MockResponse.json(400, {"text": text, "code": 6, "invalid-event-number": 0})


@pytest.mark.parametrize(("shape", "layout"), [("raw", "plain"), ("json", "k8s"), ("quoted", "plain")])
def test_defect_a_credential_rotated_in_flight_stays_masked_in_the_dlq(shape: str, layout: str) -> None:
    """Bug 1: ``excerpt`` masks ``secrets()`` as they are when the answer is read. A ``file:`` token
    rotated while the request was in flight (the operator's ``mv``, Kubernetes' symlink swap) is the
    new value by then, so the old one, the one the request carried and the destination echoed, is
    kept unmasked in the DLQ entry (and shown by ``dlq show``). docs/outputs/http.md: the excerpt
    "masks every known secret"; docs/configuration.md: a credential never appears in the DLQ."""
    old_token, new_token = "cnry1q-0ld/t0ken+A=", "cnry2q-n3w/t0ken+B="
    with tempfile.TemporaryDirectory() as tmp:
        secret = SecretFile(Path(tmp) / "token", layout)
        secret.setup(old_token.encode() + b"\n")
        app = RotatingEcho(lambda: secret.rotate_atomic(new_token.encode() + b"\n", False), shape)
        with MockServer(app) as server:
            table = {"type": "splunk_hec", "endpoint": server.url, "token": f"file:{secret.path}",
                     "batch_max_wait": 0, "retry_initial": 0.001, "retry_max": 0.005, "concurrency": 1,
                     "healthcheck_interval": 0, "batch_max_events": 1}
            out = SplunkHecOutput("hec", load_section(SplunkHecOutputConfig, table, "test [outputs.hec]"))
            spool = Spool(str(Path(tmp) / "spool.db"))
            try:
                fill(spool, 1)
                spool.ensure_cursor("hec")
                run_until(Drain(out, spool, spool.reader()), caught_up(spool, "hec"))
                entries = spool.dlq_list("hec")
            finally:
                out.close()
                spool.close()
    assert app.echoed == [old_token], app.echoed  # the request carried the old token, and it was echoed
    assert len(entries) == 1
    shown = entries[0].reason + "\n" + bytes(entries[0].response_excerpt or b"").decode("utf-8", "replace")
    assert not leaks(shown, [old_token, new_token]), shown


@pytest.mark.parametrize("bad", ["\u2019", "\n", "\ufeff"], ids=["non-latin-1", "line-break", "bom"])
@pytest.mark.parametrize(("cls", "key"), [(SplunkHecOutputConfig, "token"),
                                          (ElasticsearchOutputConfig, "bearer_token"),
                                          (ElasticsearchOutputConfig, "api_key")],
                         ids=["hec-token", "es-bearer", "es-api-key"])
def test_defect_a_credential_no_request_can_carry_is_refused_at_load(cls: type, key: str, bad: str) -> None:
    """Bug 2: a ``headers`` value that no request can carry (a line break, a character outside
    Latin-1) is refused at load (``_check_header``: "refused at send, a header was an error on every
    request, retried forever"), but the output's own credential, sent in the same ``Authorization``
    header, is not: ``check-config`` passes, then every send fails as ``TransportError:
    UnicodeEncodeError`` / ``InvalidHeader``, retried forever. A BOM (a token file saved by a
    Windows editor) is kept by the UTF-8 read and is such a character. The error names the key, and
    never the value."""
    value = f"cnry{bad}token-value-42"
    table: dict[str, Any] = {"type": cls.__dataclass_fields__["type"].default, key: value}
    if cls is SplunkHecOutputConfig:
        table["endpoint"] = "https://hec.example.com:8088"
    else:
        table["hosts"] = ["https://es.example.com:9200"]
    with pytest.raises(ConfigError, match=key) as info:
        load_section(cls, table, "agent.toml: [outputs.siem]")
    assert "token-value-42" not in str(info.value)


def test_defect_a_carried_credential_is_refused_when_read_from_a_file_too(tmp_path: Path) -> None:
    """Bug 2, the ``file:`` form: the file is read at load, and the same check applies to it (its
    later rotations can only fail at send, as a transport error)."""
    f = tmp_path / "hec-token"
    f.write_bytes("\ufeffcnry-token-value-42\n".encode())
    table = {"type": "splunk_hec", "endpoint": "https://hec.example.com:8088", "token": f"file:{f}"}
    with pytest.raises(ConfigError, match="token") as info:
        load_section(SplunkHecOutputConfig, table, "agent.toml: [outputs.siem]")
    assert "token-value-42" not in str(info.value)
