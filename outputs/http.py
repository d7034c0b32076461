"""The one HTTP layer every HTTP output uses: requests + gevent, pooled, TLS-verified, never leaking.

Why one place: TLS (custom CA, mTLS), proxies, timeouts, gzip, status classification, ``Retry-After``
parsing and the redaction of response excerpts must behave the same for Splunk, Elasticsearch and
every output that follows. Under ``gevent.monkey.patch_all`` (agent.entry) requests' sockets are
cooperative, so several in-flight requests of one output share the hub without threads.

Errors never carry a URL, a header or a request body: requests' own exception messages contain the
URL (and a webhook URL is a secret), so ``TransportError`` keeps only the error class and the OS
reason. Redirects are not followed: a redirect to another host would carry the credentials along.

Status classification follows RFC 9110 and the vendors' documented behaviour (Splunk HEC: 503 server
busy and 500 internal errors are retryable; Elasticsearch: 429 es_rejected_execution_exception and
5xx are retryable; both use 413 for an oversized body): 2xx delivered; 408, 429 and 5xx retryable;
401/403 (and a proxy's 407) an authentication failure (retried after re-reading credentials, breaker
opened); 413 split the batch; any other 4xx (and an unfollowed 3xx) permanent. docs/outputs/http.md
has the table with its citations.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime
import email.utils
import functools
import logging
import os
import re
import time
import urllib.parse
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

try:  # ISA-L's deflate: same gzip bytes on the wire, ~10x zlib's speed at level 1 (see gzip_bytes)
    from isal import isal_zlib as _isal_zlib
except ImportError:  # no wheel for this platform: the stdlib's zlib does the same job, slower
    _isal_zlib = None

if TYPE_CHECKING:
    # requests, urllib3, http.client and ssl are imported where a client is built or an error is
    # described, not here: the offload helper imports this module (an output's config and encode)
    # without ever sending, and those packages are ~15 MiB of its memory.
    import requests
    from requests.structures import CaseInsensitiveDict

from agent import __version__
from agent.config_loader import doc, secret_field
from agent.config_types import Duration, Secret
from agent.secret_forms import forms, mask_known
from outputs.base import Outcome, Output, OutputConfig

USER_AGENT = f"clawd-agent/{__version__}"
#: Distinct request URLs whose prepared form is kept per client (an output uses a handful).
MAX_PREPARED_URLS = 64
EXCERPT_LIMIT = 300
#: Largest response body read; a bigger one is abandoned as a transport error (a misbehaving or
#: hostile endpoint must not exhaust memory; Elasticsearch bulk answers are a few MB at most).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024

# urllib3 logs the request line (URL path and query) at DEBUG and host names in its warnings; a
# webhook URL is a secret, so its records stay off unless someone sets its level on purpose.
if logging.getLogger("urllib3").level == logging.NOTSET:
    logging.getLogger("urllib3").setLevel(logging.ERROR)

StatusClass = Literal["ok", "retry", "throttled", "auth", "split", "permanent"]


@dataclass
class HttpOutputConfig(OutputConfig):
    """Connection settings shared by every HTTP output (each adds its endpoint and auth keys)."""

    tls_verify: bool = doc("Verify the server's TLS certificate and host name. Turn off only for a "
                           "lab; use ca_file for a private CA instead.", default=True)
    ca_file: str = doc("PEM bundle of CAs to trust instead of the system store.", default="")
    client_cert: str = doc("PEM client certificate for mutual TLS.", default="")
    client_key: str = doc("PEM private key of client_cert (if not inside client_cert); unencrypted "
                          "(an encrypted key is refused).", default="")
    proxy: Secret | None = secret_field("HTTP(S) proxy URL (may hold credentials, so it is a "
                                        "secret, e.g. 'http://u:${PROXY_PASS}@proxy:3128'); unset "
                                        "uses none, whatever the environment says.")
    headers: dict[str, Secret] = doc("Extra request headers; values are secrets (never logged), "
                                     "e.g. {Authorization = \"Bearer ${API_TOKEN}\"}.",
                                     default_factory=dict)
    compression: Literal["gzip", "none"] = doc("Request body compression.", default="gzip")
    compression_level: int = doc("gzip level 1 (fast) .. 9 (small).", default=1)
    connect_timeout: Duration = doc("TCP + TLS connect timeout (more than 0).", default=Duration(5))
    request_timeout: Duration = doc("Time to wait for the response after sending (more than 0).",
                                    default=Duration(30))

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.compression_level <= 9:
            raise ValueError("compression_level: expected 1..9")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key: needs client_cert")
        for key in ("connect_timeout", "request_timeout"):  # urllib3 refuses 0 on every request
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: expected more than 0")
        names: dict[str, str] = {}
        for name, value in self.headers.items():
            _check_header(name, value)
            other = names.setdefault(name.lower(), name)
            if other != name:  # one would replace the other in the request: silently never sent
                raise ValueError(f"headers: {other!r} and {name!r} are the same header (names are "
                                 "case-insensitive); give it once")


#: What a server reads as it was written (RFC 9110 §5): a name is a token (§5.1, §5.6.2: a name with a
#: space, a tab or a delimiter in it is a line RFC 9112 §5.1 has servers answer 400), a value has no
#: white space at its ends (§5.5: a server strips it, and reads another credential) and no control
#: character but HTAB inside (§5.5: NUL is refused or read as a space; requests checks CR/LF only).
#: Checked at load: refused at send, a header was an error on every request, retried forever; sent,
#: every request was refused or unauthorized.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HEADER_VALUE = re.compile(r"^(?:[^\s\x00-\x1f\x7f](?:[^\x00-\x08\x0a-\x1f\x7f]*[^\s\x00-\x1f\x7f])?)?\Z")
#: Headers that frame the body: the client sets them from the body it sends and ``compression``;
#: configured, they contradicted it (Transfer-Encoding beside Content-Length, a length on a GET
#: without a body, a raw body labelled gzip).
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding"})


def split_http_url(url: str, what: str) -> urllib.parse.SplitResult:
    """``url`` split, when it is ``http(s)://host[:port]`` (a path may follow: a proxy's prefix) with a
    port from 1 to 65535; else a ValueError ``what`` names (urlsplit raises one for a bad IPv6
    literal, ``.port`` for a bad port). The outputs append their paths to it, so a ``?`` or ``#``
    (which would carry those paths into a query or a fragment: every request to "/") is refused, and
    so is white space or a control character (urlsplit drops tabs and line breaks; requests does
    not, and refused the URL on every request); port 0 was refused by every connect."""
    if "?" in url or "#" in url or any(ch.isspace() or ch < " " or ch == "\x7f" for ch in url):
        raise ValueError(what)
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port
    except ValueError:
        raise ValueError(what) from None
    if u.scheme not in ("http", "https") or not u.hostname or port == 0:
        raise ValueError(what)
    return u


def check_credential(key: str, header_value: str) -> None:
    """An output's own credential, as the header value it is sent in (``Splunk <token>``, ``Bearer
    <token>``), or a configured header's value (``_check_header``), must be one a request can carry
    (http.client sends header values as Latin-1): refused at send, it failed every request, retried
    forever. Checked at load; the message names the key, never the value."""
    if not _HEADER_VALUE.match(header_value):
        raise ValueError(f"{key}: the value starts or ends with whitespace or holds a line break or "
                         "another control character (not shown: it is a secret)")
    try:
        header_value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{key}: the value has characters HTTP headers cannot carry (only Latin-1; a "
                         "byte order mark counts; not shown: it is a secret)") from None


def _check_header(name: str, value: Secret) -> None:
    """A configured header that no request could carry is a config error. The value is a secret: the
    message says what is wrong with it, never what it is (requests' own error quotes it)."""
    if not _HEADER_NAME.match(name):  # (ASCII: http.client sends names as ASCII)
        raise ValueError(f"headers: {name!r} is not a valid header name (letters, digits and "
                         "!#$%&'*+-.^_`|~ only)")
    if name.lower() in _FRAMING_HEADERS:
        raise ValueError(f"headers: {name!r} is set by the output from the body it sends "
                         "(Content-Encoding by `compression`)")
    check_credential(f"headers.{name}", value.reveal())  # every header value is a secret


class TransportError(Exception):
    """The request did not get an HTTP answer (DNS, refused, reset, TLS, timeout). Retryable.

    ``str()`` is safe to log: the error class and the OS reason, never the URL. ``auth_failure``: the
    proxy refused its credentials on the ``CONNECT`` of an https:// request (the 407 an http:// one
    gets as an answer), so the output reports an authentication failure alike. ``before_sending``:
    nothing went to the network (a ``file:`` credential could not be read), so it says nothing
    about the host (an output with several nodes must not mark one down for it)."""

    def __init__(self, message: str, *, auth_failure: bool = False, before_sending: bool = False):
        super().__init__(message)
        self.auth_failure = auth_failure
        self.before_sending = before_sending


@dataclass(frozen=True, slots=True)
class Payload:
    """A request body already encoded for the wire (``HttpClient.payload``). An output builds it
    before sending so the raw batch bytes (megabytes per request) are freed while the request is in
    flight, and waits for an answer or an indexer ack, and a fail-over re-sends the same bytes
    without compressing them again."""

    data: bytes
    gzipped: bool

    def raw(self) -> bytes:
        """The body before compression (a per-item retry of a packed batch cuts its items from it)."""
        return gunzip_bytes(self.data) if self.gzipped else self.data


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return orjson.loads(self.body)


def status_class(status: int) -> StatusClass:
    """The framework's reading of an HTTP status (see the module docstring for the sources)."""
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "throttled"
    if status in (401, 403, 407):
        return "auth"
    if status == 413:
        return "split"
    if status == 408 or status >= 500:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110
    §10.2.3). None when absent or unparseable; never negative. The caller bounds it."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # delay-seconds = 1*DIGIT (no sign, no fraction)
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates: an HTTP-date is always UTC (RFC 9110 §5.6.7)
        when = when.replace(tzinfo=datetime.UTC)
    now = time.time() if now is None else now
    two_digits = _RFC850_YEAR.match(value)
    if two_digits:
        # RFC 9110 §5.6.7: a two-digit year that "appears to be more than 50 years in the future"
        # is the most recent past year with those digits: the year of those digits within 50 of
        # this one (email.utils pivots at 69 instead, whatever the year now).
        this_year = datetime.datetime.fromtimestamp(now, datetime.UTC).year
        year = this_year - this_year % 100 + int(two_digits[1])
        if year > this_year + 50:
            year -= 100
        elif year <= this_year - 50:
            year += 100
        try:
            when = when.replace(year=year)
        except ValueError:  # 29 February of a year without one
            return None
    return max(0.0, when.timestamp() - now)


#: rfc850-date (RFC 9110 §5.6.7): ``Sunday, 06-Nov-94 08:49:37 GMT``: its two-digit year.
_RFC850_YEAR = re.compile(r"[A-Za-z]+, *\d{1,2}-[A-Za-z]{3}-(\d{2}) ")


_KEYS = (r"proxy-authorization|authorization|x-api-key|api[-_]?key|access[-_]?key|access[-_]?token|"
         r"refresh[-_]?token|id[-_]?token|token|password|passwd|pwd|client[-_]?secret|secret|"
         r"private[-_]?key|credentials?|signature|sig")
_SCHEMES = r"splunk|bearer|basic|apikey|api-key|token|digest|negotiate"
_BARE_SCHEMES = r"splunk|bearer|basic|apikey|api-key|digest|negotiate"  # not "token": "Token disabled"
# key = value / key: value / "key":"value" (the value may start with an auth scheme word).
_ASSIGNMENT = re.compile(
    rf"(?i)(?<![a-z0-9])({_KEYS})(\"?'?\s*[:=]\s*)(\"|')?((?:(?:{_SCHEMES})\s+)?)"
    r"(?(3)[^\"']*|[^\s\"',;&}\]]+)")
# An auth scheme followed by what looks like a credential (token68 of 8+ characters), anywhere.
_SCHEME_VALUE = re.compile(rf"(?i)(?<![a-z0-9])({_BARE_SCHEMES})(\s+)[A-Za-z0-9._~+/=-]{{8,}}")
# C0/C1 controls, line/paragraph separators and bidi overrides (and runs of white space around
# them): a log line must stay one honest line.
_CONTROL = re.compile("[\\s\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def excerpt(body: bytes, secrets: Iterable[str] = (), limit: int = EXCERPT_LIMIT) -> str:
    """A short, single-line, redacted piece of a response body for DLQ entries and status.

    Known secret values are masked, and so is anything shaped like a credential assignment, because
    some services echo the request (or its headers) back in their error messages. Only the first
    ``limit * 4`` bytes are read; a secret cut by that boundary is masked as well."""
    known = [s for s in secrets if s and len(s) >= 4]
    window = limit * 4
    if len(body) > window:
        # Not final: a character the window cut in two is left out, not made a U+FFFD that hid
        # the secret's start from _mask_cut_secret.
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(body[:window], final=False)
    else:
        text = body.decode("utf-8", "replace")
    if known:
        text = mask_known(text, known)
    if len(body) > window:
        text = _mask_cut_secret(text, known)
    text = _ASSIGNMENT.sub(lambda m: m.group(1) + m.group(2) + (m.group(3) or "") + m.group(4) + "***",
                           text)
    text = _SCHEME_VALUE.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _CONTROL.sub(" ", text).strip()
    return text[:limit] + ("..." if len(text) > limit else "")


def _mask_cut_secret(text: str, secrets: list[str]) -> str:
    """Mask the start of a secret, in any of its forms and letter case, that the excerpt window cut
    off at its end: the longest such start of any of them (the first found could be a one-letter
    start of ``Splunk <token>`` that left 19 characters of the token itself)."""
    best = 0
    for s in secrets:
        for form in forms(s):
            for k in range(min(len(form) - 1, len(text)), best, -1):
                if text[-k:].lower() == form[:k].lower():
                    best = k
                    break
    return text[:-best] + "***" if best else text


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup on any mapping (a plain dict in tests, requests' own in use)."""
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lname), None)


def outcome_for_status(resp: HttpResponse, what: str, secrets: Iterable[str] = (), *,
                       reason: str | None = None, ex: str | None = None) -> Outcome:
    """The generic Outcome of a non-2xx answer; outputs use it for everything they do not read
    more precisely (a vendor's per-item or per-code errors). An output that has read the answer
    already passes its own ``reason`` (used as it is) and redacted excerpt ``ex``."""
    cls = status_class(resp.status)
    if cls == "ok":
        return Outcome.delivered()
    if ex is None:
        ex = excerpt(resp.body, secrets)
    if reason is None:
        reason = f"{what}: HTTP {resp.status}" + {
            "auth": " (credentials refused)",
            # a 413 often has no body (Elasticsearch's has none): say what it means, as HEC's does
            "split": " (request body larger than the destination accepts)"}.get(cls, "")
    retry_after = parse_retry_after(_header(resp.headers, "Retry-After"))
    if cls == "throttled":
        return Outcome.retry(reason, retry_after, throttled=True, excerpt=ex)
    if cls == "auth":
        return Outcome.retry(reason, retry_after, auth_failure=True, excerpt=ex)
    if cls == "retry":
        return Outcome.retry(reason, retry_after, excerpt=ex)
    if cls == "split":
        return Outcome.split(reason, excerpt=ex)
    return Outcome.permanent(reason, excerpt=ex)


def outcome_for_transport(exc: TransportError, what: str) -> Outcome:
    """The Outcome of a request that got no HTTP answer: retried; an authentication failure when a
    proxy refused its credentials on the tunnel's CONNECT (``TransportError.auth_failure``), as its
    407 answer to a plain-HTTP request is (``outcome_for_status``)."""
    return Outcome.retry(f"{what}: {exc}", auth_failure=exc.auth_failure)


class _BadBody(Exception):
    """The answer's body could not be read within the limits (size or total time)."""


@functools.cache
def _send_errors() -> tuple[type[BaseException], ...]:
    """Everything a send can raise for a reason outside this process: requests wraps most of it, but
    a missing CA file (OSError), an unencodable header (UnicodeEncodeError) or an unknown proxy
    scheme (a ValueError from urllib3) come through bare, and their messages may carry a path or a
    value."""
    import http.client

    import requests
    import urllib3.exceptions

    return (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
            OSError, ValueError, _BadBody)


class HttpClient:
    """A pooled session bound to one output's TLS, proxy, timeout and header settings.

    ``on_response(status_class_or_error, seconds)`` is called after every request (for per-output
    metrics: requests by status class and send latency); it gets ``"error"`` for transport errors.
    """

    def __init__(self, config: HttpOutputConfig, *, pool_size: int = 4, hosts: int = 1,
                 on_response: Callable[[str, float], None] | None = None,
                 auth: Callable[[], Mapping[str, str]] | None = None):
        """``hosts``: how many hosts the output sends to (a pool is kept for each). ``auth()``
        returns the output's credential headers, built from its secrets at each request: a ``file:``
        secret that cannot be read then becomes a retryable ``TransportError("CredentialError: ...")``
        here, like a configured header's, and its values are redacted from excerpts by ``secrets()``."""
        import requests
        import requests.adapters
        import urllib3.exceptions

        self._auth = auth
        for key in ("ca_file", "client_cert", "client_key"):
            path = getattr(config, key)
            if path and not os.path.isfile(path):
                raise ValueError(f"{key}: no such file {path}")
        _check_key_unencrypted(config.client_key or config.client_cert)
        _check_tls_files(config)
        if config.proxy is not None:
            _check_proxy(config.proxy.reveal())
        self.config = config
        self._on_response = on_response
        self._session = requests.Session()
        self._session.trust_env = False  # no surprise proxies or netrc credentials from the env
        # pool_connections: host pools kept, one for each host of the output at least: urllib3 closes
        # the least recently used pool beyond it, so round robin over more hosts (Elasticsearch
        # nodes) would open a new connection, TLS handshake included, for every request.
        # pool_maxsize: connections kept per host = the output's in-flight requests.
        adapter = requests.adapters.HTTPAdapter(pool_connections=max(4, hosts),
                                                pool_maxsize=max(1, pool_size), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._adapter = adapter
        # What Session.request would merge under the caller's headers: requests' defaults (Accept,
        # Accept-Encoding, Connection) with this agent's User-Agent.
        self._base_headers = {**self._session.headers, "User-Agent": USER_AGENT}
        self._urls: dict[str, tuple[str, str | None]] = {}  # URL as given -> _prepare_url's answer
        if not config.tls_verify:
            self._session.verify = False
            # An explicit choice (documented as lab-only); urllib3 would warn on every request,
            # naming the host each time.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        elif config.ca_file:
            self._session.verify = config.ca_file
        else:
            self._session.verify = system_trust_store()
        if config.client_cert:
            self._session.cert = ((config.client_cert, config.client_key) if config.client_key
                                  else config.client_cert)
        self._timeout = (float(config.connect_timeout), float(config.request_timeout))
        from gevent import monkey

        #: Sockets cooperate with gevent (the agent patches before any client exists, agent.entry).
        self._gevent = monkey.is_module_patched("socket")

    def secrets(self) -> list[str]:
        """Current values of this client's secrets, for excerpt redaction: each header value and
        its credential part (after an auth scheme word), the proxy URL and its user:password, and
        the value of each ``${ENV}`` expanded into one of them; a ``file:`` secret's values from
        before its latest rotations too (``Secret.held``: the answer to a request sent just before
        a rotation echoes the old one)."""
        out: list[str] = []
        for secret in (*self.config.headers.values(), self.config.proxy):
            if secret is not None:
                out += secret.parts
        values = [v for secret in self.config.headers.values() for v in secret.held() if v]
        if self._auth is not None:
            with contextlib.suppress(ValueError):  # unreadable now: nothing of it can be echoed
                values += list(self._auth().values())
        for value in values:
            out.append(value)
            _, _, cred = value.partition(" ")
            out.append(cred.strip())
        proxies = self.config.proxy.held() if self.config.proxy is not None else ()
        for proxy in dict.fromkeys(p for p in proxies if p):
            out.append(proxy)
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if parts.password:
                out += [parts.password, urllib.parse.unquote(parts.password)]
                userinfo = parts.netloc.rpartition("@")[0]
                out += [userinfo, urllib.parse.unquote(userinfo)]
        return [s for s in dict.fromkeys(out) if s]

    def payload(self, body: bytes | Sequence[bytes]) -> Payload:
        """``body`` (or its parts, in order) as it goes on the wire: gzip-compressed when the output's
        config says so."""
        if self.config.compression == "gzip":
            return Payload(compress_off_loop(body, self.config.compression_level), True)
        return Payload(body if isinstance(body, bytes) else b"".join(body), False)

    def gzip_stream(self) -> GzipStream | None:
        """A ``GzipStream`` at the config's level when ``payload`` would gzip in the caller (ISA-L);
        None otherwise: zlib compresses a large body in the threadpool (``compress_off_loop``), and an
        uncompressed body is one join."""
        level = self.config.compression_level
        if self.config.compression == "gzip" and compresses_inline(level):
            return GzipStream(level)
        return None

    def request(self, method: str, url: str, body: bytes | Payload | None = None,
                headers: Mapping[str, str] | None = None, *, compress: bool | None = None,
                timeout: float | None = None, report: bool = True) -> HttpResponse:
        """Send one request; raise ``TransportError`` when no HTTP answer came back.

        A ``Payload`` body is sent as it is (``compress`` does not apply); raw bytes are compressed
        here when ``compress`` (default: the config's ``compression``) says so.

        The caller's ``headers`` win over the configured ones. ``timeout`` replaces both the
        connect and the read timeout. The body of the answer must arrive within the read timeout
        of its headers (total, not per read, under gevent: ``_body_deadline``) and be at most
        ``MAX_RESPONSE_BYTES``; the status line and headers are bounded per read. ``report=False``
        keeps a request that is not delivery (a health check, the bootstrap) out of the output's
        request metrics: an ingest-only key's 403 on a cluster health probe is no failed send.
        """
        started = time.monotonic()
        problem = ""
        try:
            send_headers, proxies = self._resolve(headers)
        except ValueError as exc:  # a file: secret that cannot be read now (mid-rotation?)
            problem = f"CredentialError: {exc}"  # Secret's message: the path and the OS reason
        if problem:
            self._report("error", started, report)
            raise TransportError(problem, before_sending=True)
        if isinstance(body, Payload):
            if body.gzipped:
                send_headers["Content-Encoding"] = "gzip"
            body = body.data
        elif body is not None and (self.config.compression == "gzip" if compress is None else compress):
            body = compress_off_loop(body, self.config.compression_level)
            send_headers["Content-Encoding"] = "gzip"
        timeouts = (timeout, timeout) if timeout is not None else self._timeout
        error = ""
        proxy_auth = False
        try:
            r = self._send(method, url, body, send_headers, timeouts, proxies)
            try:
                with self._body_deadline(timeouts[1]):
                    content = _read_body(r, time.monotonic() + timeouts[1])
            finally:
                r.close()  # back to the pool when fully read; the socket is dropped otherwise
        except _send_errors() as exc:
            error = describe_transport_error(exc)
            proxy_auth = tunnel_status(exc) == "407"
        # Raised outside the handler so the TransportError carries no __context__: requests'
        # exceptions hold the URL, and a webhook URL is a secret.
        if error:
            self._report("error", started, report)
            raise TransportError(error, auth_failure=proxy_auth)
        elapsed = self._report(status_class(r.status_code), started, report)
        return HttpResponse(r.status_code, r.headers, content, elapsed)

    def _send(self, method: str, url: str, body: bytes | None, headers: CaseInsensitiveDict[str],
              timeouts: tuple[float, float], proxies: dict[str, str] | None) -> requests.Response:
        """What ``Session.request`` does for these requests (no redirects, no params, no ``Request``
        merging, ``trust_env`` off), without its per-request overhead: it merges the session's
        settings into each request (eight runtime ``Protocol`` isinstance checks with requests 2.34)
        and parses and requotes the URL every time. ``bench/http_request.py``: 899-1,094 us of CPU
        per small request before, 620-927 after (5 interleaved pairs, medians 1,013 and 702); the
        agent's CPU at 50 events/s to two outputs fell 11.5% (4 of 4 pairs). The same steps remain:
        headers validated as requests does, ``Content-Length``, the session's cookies sent and the
        answer's stored (HEC acks ride on a load balancer's sticky cookie), TLS verification and
        client certificate, proxies, the adapter's pool."""
        from requests.cookies import extract_cookies_to_jar
        from requests.models import PreparedRequest
        from requests.utils import check_header_validity

        prepared = self._urls.get(url)
        if prepared is None:
            prepared = self._prepare_url(url)
        req = PreparedRequest()
        req.method = method.upper()
        req.url, basic = prepared
        for item in list(headers.items()):
            if item[1] is None:  # unset by the caller: Session.request drops it too
                del headers[item[0]]
            else:
                check_header_validity(item)
        if basic is not None:  # credentials in the URL win, as in PreparedRequest.prepare_auth
            headers["Authorization"] = basic
        req.headers = headers
        req.body = body
        if body is not None:  # as PreparedRequest.prepare_body (http.client sets 0 for a bare POST)
            headers["Content-Length"] = str(len(body))
        session = self._session
        jar = session.cookies
        if jar:
            req.prepare_cookies(jar)
        req.hooks = {"response": []}
        r = self._adapter.send(req, stream=True, timeout=timeouts, verify=session.verify,
                               cert=session.cert, proxies=proxies or {})
        if r.raw is not None and r.raw.headers.get("Set-Cookie") is not None:
            extract_cookies_to_jar(jar, req, r.raw)
        return r

    def _prepare_url(self, url: str) -> tuple[str, str | None]:
        """``url`` as requests prepares it (parsed, IDNA host, requoted) without its user:password, and
        the Basic ``Authorization`` value those give (None without them), kept for the next request."""
        from requests.auth import _basic_auth_str
        from requests.models import PreparedRequest
        from requests.utils import get_auth_from_url

        probe = PreparedRequest()
        probe.prepare_url(url, None)
        prepared = probe.url or url
        user, password = get_auth_from_url(prepared)
        if len(self._urls) >= MAX_PREPARED_URLS:
            self._urls.clear()
        out = self._urls[url] = (prepared, _basic_auth_str(user, password) if user or password else None)
        return out

    def _resolve(self, headers: Mapping[str, str] | None
                 ) -> tuple[CaseInsensitiveDict[str], dict[str, str] | None]:
        """This request's headers (configured, then the caller's) and proxies, secrets revealed."""
        from requests.structures import CaseInsensitiveDict

        send_headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(self._base_headers)
        for k, v in self.config.headers.items():
            send_headers[k] = v.reveal()
        if self._auth is not None:
            send_headers.update(self._auth())
        if headers:
            send_headers.update(headers)
        proxy = self.config.proxy.reveal() if self.config.proxy is not None else ""
        return send_headers, ({"http": proxy, "https": proxy} if proxy else None)

    def _body_deadline(self, seconds: float) -> contextlib.AbstractContextManager[Any]:
        """A hard deadline on reading an answer's body, under gevent's monkey patching (the agent's
        case): one ``read1`` can block far past ``_read_body``'s own check while bytes keep trickling
        in (http.client reads a whole chunk-size line, urllib3 reads on until the gzip decoder
        yields output), so only a timer outside the read bounds it. Unpatched (a plain thread in a
        benchmark), the checks between reads are all there is."""
        if not self._gevent:
            return contextlib.nullcontext()
        import gevent

        return gevent.Timeout(max(0.0, seconds), _BadBody("response body timed out"))

    def _report(self, cls: str, started: float, report: bool = True) -> float:
        elapsed = time.monotonic() - started
        if report and self._on_response is not None:
            self._on_response(cls, elapsed)
        return elapsed

    def close(self) -> None:
        self._session.close()


class HttpOutput(Output):
    """An output that speaks HTTP: one ``HttpClient`` per output, built on first use, sized to the
    output's send slots, reporting every response to the drain's metrics (``on_response``), with the
    output's credential headers (``client_auth``). Its request body is its items' data joined and
    compressed by that client, so batches travel packed (``packer``)."""

    #: Connections kept beyond the send slots (HEC's ack queries run beside its sends).
    extra_connections: int = 1

    def __init__(self, name: str, config: HttpOutputConfig):
        super().__init__(name, config)
        self._client: HttpClient | None = None

    def client_auth(self) -> Mapping[str, str]:
        """The output's credential headers, asked for at each request (a rotated ``file:`` secret
        applies at once)."""
        return {}

    def host_count(self) -> int:
        """How many hosts this output sends to: its client keeps a connection pool for each."""
        return 1

    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(self.config, pool_size=self.send_slots + self.extra_connections,
                                      hosts=self.host_count(), on_response=self.on_response,
                                      auth=self.client_auth)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def packer(self) -> Callable[[list[bytes]], Payload]:
        return self.client().payload

    def pack_stream(self) -> Any:
        gzip = self.client().gzip_stream()
        if gzip is None:
            return None
        from outputs.packing import PackStream  # outputs.packing imports this module

        return PackStream(gzip)


def _read_body(r: requests.Response, deadline: float) -> bytes:
    """The whole (decoded) body, or ``_BadBody`` past ``deadline`` or ``MAX_RESPONSE_BYTES``.

    ``read1`` makes one socket read per call, so the deadline is checked while a body trickles in
    (``iter_content`` would block until a whole chunk arrived, each read within the timeout)."""
    buf = bytearray()
    while True:
        chunk = r.raw.read1(_READ_CHUNK, decode_content=True)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > MAX_RESPONSE_BYTES:
            raise _BadBody("response body too large")
        if time.monotonic() > deadline:
            raise _BadBody("response body timed out")


def _check_proxy(url: str) -> None:
    """Refuse a proxy URL requests cannot use, naming the problem but never the URL. The scheme is
    required: urllib3 reads ``squid:3128`` or ``user:pw@proxy:3128`` as a scheme ``squid`` or
    ``user`` and fails every request with InvalidProxyURL, a transport error retried forever. So
    would a URL urllib3 cannot parse (a port out of range or not a number, an unencoded ``#`` or
    ``?``, a bad IPv6 literal), one without a host, port 0, and credentials outside Latin-1 (requests
    encodes ``Proxy-Authorization``'s Basic credentials as Latin-1: a UnicodeEncodeError at every
    send, as for a header value ``check_credential`` refuses)."""
    if not url:
        return
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("http", "https"):
        raise ValueError("proxy: expected an http:// or https:// URL (the scheme is required)")
    from urllib3.util import parse_url

    try:
        parsed = parse_url(url)
    except ValueError:  # LocationParseError
        parsed = None
    if parsed is None or not parsed.host or parsed.port == 0:
        raise ValueError("proxy: expected http(s)://[user:password@]host:port with a port from 1 to "
                         "65535 and reserved characters of the user name and password percent-encoded "
                         "(not shown: it is a secret)")
    for part in (parsed.auth or "").split(":", 1):
        try:
            urllib.parse.unquote(part).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("proxy: the user name or password has characters a Proxy-Authorization "
                             "header cannot carry (only Latin-1; not shown: it is a secret)") from None


def _check_tls_files(config: HttpOutputConfig) -> None:
    """Refuse a ``ca_file`` with no CA certificate in it, or a ``client_cert`` (with ``client_key``)
    that is not a PEM certificate with its unencrypted, matching key: requests loads them at every
    new connection, so each request failed as a retryable transport error ("SSLError: [SSL] PEM
    lib", "UnicodeDecodeError"), forever, naming neither the setting nor the file. Loaded here the
    way urllib3 loads them (``ssl``), once, when the output opens. Call after
    ``_check_key_unencrypted`` (an encrypted key would make OpenSSL ask for a passphrase)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if config.tls_verify and config.ca_file:  # tls_verify = false wins over ca_file: not read then
        try:
            ctx.load_verify_locations(cafile=config.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"ca_file: {config.ca_file} holds no usable PEM CA certificate "
                             f"({_tls_file_reason(exc)})") from None
    if config.client_cert:
        files = config.client_cert + (f" with client_key {config.client_key}" if config.client_key else "")
        try:
            ctx.load_cert_chain(config.client_cert, config.client_key or None, password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"client_cert: {files}: expected a PEM certificate and its unencrypted "
                             f"private key, matching ({_tls_file_reason(exc)})") from None


def _tls_file_reason(exc: BaseException) -> str:
    """OpenSSL's reason for a file it could not load, without the "(_ssl.c:NNN)" suffix."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _clean_reason(str(text)) or type(exc).__name__


def system_trust_store() -> str | bool:
    """What ``tls_verify`` trusts without a ``ca_file``: the host's store, as the docs promise (an
    internal CA added with update-ca-certificates), where OpenSSL's default paths name one
    (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured, as by the stdlib's default context). requests'
    ``verify=True`` would use certifi's copy of Mozilla's bundle instead; that stays the fallback
    on a host without a store."""
    import ssl

    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.isfile(paths.cafile):
        return paths.cafile
    if paths.capath and os.path.isdir(paths.capath):
        return paths.capath
    return True


#: Bodies at least this large are compressed in gevent's threadpool when zlib does it (~0.4 GB/s: a
#: 5 MiB bulk body would hold the loop ~13 ms); zlib releases the GIL while it works, so that runs on
#: another core while the loop goes on. ISA-L (2.4-4.6 GiB/s on ECS bodies: ~2 ms for 5 MiB) compresses
#: in the caller: a threadpool result is only picked up once the loop yields, and a drain rendering a
#: backlog does not yield for a while, with every such batch's events held meanwhile.
OFFLOAD_BYTES = 256 * 1024

#: Levels ISA-L serves (its 1..3); above that the operator asked for small bodies: zlib at that level.
ISAL_MAX_LEVEL = 3

#: What inflates gzip here (ISA-L, ~3x zlib's speed, where installed; else zlib), and what it raises on
#: a bad stream: ``gunzip_bytes`` and the mock servers' request bodies (outputs.mocks.server).
INFLATE: Any = _isal_zlib if _isal_zlib is not None else zlib
INFLATE_ERRORS: tuple[type[Exception], ...] = (
    (zlib.error,) if _isal_zlib is None else (zlib.error, _isal_zlib.error))


#: A body given in parts (``gzip_bytes``) is compressed this much at a time.
GZIP_GROUP_BYTES = 256 * 1024


def compress_off_loop(data: bytes | Sequence[bytes], level: int = 1) -> bytes:
    """``gzip_bytes(data, level)``, in gevent's threadpool when zlib compresses a large body
    (``OFFLOAD_BYTES``), in the caller otherwise."""
    if compresses_inline(level):
        return gzip_bytes(data, level)
    size = len(data) if isinstance(data, bytes) else sum(map(len, data))
    if size < OFFLOAD_BYTES:
        return gzip_bytes(data, level)
    import gevent

    return gevent.get_hub().threadpool.apply(gzip_bytes, (data, level))


def compresses_inline(level: int) -> bool:
    """True when gzip at ``level`` is ISA-L's, fast enough to run in the caller (``OFFLOAD_BYTES``)."""
    return _isal_zlib is not None and level <= ISAL_MAX_LEVEL


def gzip_bytes(data: bytes | Sequence[bytes], level: int = 1, *, codec: Any = None) -> bytes:
    """gzip-framed deflate (``Content-Encoding: gzip``, RFC 1952). Levels 1..3 use Intel ISA-L (the
    ``isal`` package) when it is installed: on this agent's ECS bulk bodies it compresses ~4 GB/s against
    zlib level 1's ~0.4 GB/s, at a ratio as good, and every gzip reader decodes it. That was 15% of the
    agent's CPU in the delivery benchmark. Levels 4..9 (and hosts without ISA-L) use the stdlib's zlib.
    ``codec`` forces one module (tests).

    ``data`` may be the body's parts in order (a batch's encoded events): they are compressed
    ``GZIP_GROUP_BYTES`` at a time (``GzipStream``), so the uncompressed body (megabytes, once per
    request in flight) never exists joined."""
    if isinstance(data, bytes):
        mod = codec or _deflater(level)
        c = mod.compressobj(level, mod.DEFLATED, 31)
        return c.compress(data) + c.flush()
    stream = GzipStream(level, codec=codec)
    for part in data:
        stream.add(part)
    return stream.finish()


def _deflater(level: int) -> Any:
    return _isal_zlib if compresses_inline(level) else zlib


class GzipStream:
    """A gzip body made from its parts as they come, ``GZIP_GROUP_BYTES`` of them compressed at a time
    (the same bytes as ``gzip_bytes`` of the list): a batch still filling keeps its events compressed
    (outputs.packing.PackStream) instead of holding megabytes of them until it closes."""

    __slots__ = ("_c", "_group", "_out", "_size")

    def __init__(self, level: int = 1, *, codec: Any = None):
        mod = codec or _deflater(level)
        self._c = mod.compressobj(level, mod.DEFLATED, 31)
        self._group: list[bytes] = []
        self._size = 0
        self._out: list[bytes] = []

    def add(self, part: bytes) -> None:
        self._group.append(part)
        self._size += len(part)
        if self._size >= GZIP_GROUP_BYTES:
            self._out.append(self._c.compress(b"".join(self._group)))
            self._group, self._size = [], 0

    def finish(self) -> bytes:
        """The whole gzip member; the stream is spent."""
        out = self._out
        out.append(self._c.compress(b"".join(self._group)))
        out.append(self._c.flush())
        self._group, self._out = [], []
        return b"".join(out)


def gunzip_bytes(data: bytes) -> bytes:
    """What ``gzip_bytes`` compressed (one gzip member), with ISA-L when installed."""
    return INFLATE.decompress(data, 31)


# Quoted parts of OS/OpenSSL reasons name hosts ("certificate is not valid for '10.0.0.5'"); the
# "(_ssl.c:1006)" suffix is noise.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\(_ssl\.c:\d+\)")


def describe_transport_error(exc: BaseException) -> str:
    """Error class plus the innermost OS or TLS reason; never the URL, host, port, path or header
    that requests and urllib3 put in their messages (only OS ``strerror`` texts and OpenSSL
    verification reasons are used, with quoted parts removed)."""
    import ssl

    import requests
    import urllib3.exceptions

    kind = "ResponseError" if isinstance(exc, _BadBody) else type(exc).__name__
    reason = ""
    for inner in _chain(exc):
        if isinstance(inner, ssl.SSLCertVerificationError):
            # "IP address mismatch, certificate is not valid for '10.0.0.5'.": keep the part before the comma
            why = _clean_reason(str(getattr(inner, "verify_message", "") or "").split(",")[0])
            reason = "certificate verify failed" + (f": {why}" if why else "")
        elif type(inner).__name__ == "CertificateError":  # urllib3's own host name check
            reason = "certificate verify failed: hostname mismatch"
        elif isinstance(inner, _BadBody):
            reason = str(inner)
        elif (isinstance(inner, OSError) and not isinstance(inner, requests.RequestException)
              and isinstance(inner.errno, int) and inner.strerror):
            reason = _clean_reason(inner.strerror)
    if isinstance(exc, requests.exceptions.ProxyError):
        status = tunnel_status(exc)
        if status:
            reason = f"proxy refused the tunnel (HTTP {status})"
        elif not reason:
            reason = "proxy refused or unreachable"
    if not reason and isinstance(exc, requests.exceptions.SSLError):
        reason = "TLS handshake failed"
    if not reason and isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError):
        reason = "timed out"
    return f"{kind}: {reason}" if reason else kind


_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: (\d{3})")


def tunnel_status(exc: BaseException) -> str:
    """The status a proxy refused a ``CONNECT`` with ("407"), or "" (http.client's message:
    "Tunnel connection failed: 407 Proxy Authentication Required")."""
    import requests

    if not isinstance(exc, requests.exceptions.ProxyError):
        return ""
    texts = " | ".join(str(a) for e in _chain(exc) for a in e.args if isinstance(a, str))
    m = _TUNNEL_STATUS.search(texts)
    return m.group(1) if m else ""


#: PEM markers of an encrypted private key: PKCS#8, and the legacy "Proc-Type: 4,ENCRYPTED" header.
_ENCRYPTED_KEY_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


def _check_key_unencrypted(path: str) -> None:
    """Refuse an encrypted client key: with no passphrase given, OpenSSL asks for one on the terminal
    (an agent run by hand would hang there, every output with it) and fails without a terminal."""
    if not path:
        return
    try:
        with open(path, "rb") as f:
            pem = f.read(1 << 20)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if any(marker in pem for marker in _ENCRYPTED_KEY_MARKERS):
        raise ValueError(f"{path}: an encrypted private key is not supported; decrypt it (e.g. "
                         "openssl pkey -in KEY -out KEY.plain) and protect the file's permissions instead")


def _chain(exc: BaseException, depth: int = 8) -> list[BaseException]:
    """An exception and what it wraps: __cause__/__context__, requests' first argument, urllib3's
    ``reason`` (MaxRetryError)."""
    out: list[BaseException] = []
    inner: BaseException | None = exc
    while inner is not None and len(out) < depth and inner not in out:
        out.append(inner)
        nxt = inner.__cause__ or inner.__context__
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if nxt is None and isinstance(getattr(inner, "reason", None), BaseException):
            nxt = inner.reason
        inner = nxt
    return out


def _clean_reason(text: str) -> str:
    text = _QUOTED.sub("", text)
    text = re.sub(r"\s+", " ", text).strip(" .,:")
    return text[:120]
