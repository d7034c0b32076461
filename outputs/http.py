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
401/403 an authentication failure (retried after re-reading credentials, breaker opened); 413 split
the batch; any other 4xx permanent.
"""

from __future__ import annotations

import email.utils
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import requests
import requests.adapters

from agent import __version__
from agent.config_loader import doc, secret_field
from agent.config_types import Duration, Secret
from outputs.base import Outcome, OutputConfig

USER_AGENT = f"clawd-agent/{__version__}"
EXCERPT_LIMIT = 300

StatusClass = Literal["ok", "retry", "throttled", "auth", "split", "permanent"]


@dataclass
class HttpOutputConfig(OutputConfig):
    """Connection settings shared by every HTTP output (each adds its endpoint and auth keys)."""

    tls_verify: bool = doc("Verify the server's TLS certificate and host name. Turn off only for a "
                           "lab; use ca_file for a private CA instead.", default=True)
    ca_file: str = doc("PEM bundle of CAs to trust instead of the system store.", default="")
    client_cert: str = doc("PEM client certificate for mutual TLS.", default="")
    client_key: str = doc("PEM private key of client_cert (if not inside client_cert).", default="")
    proxy: Secret | None = secret_field("HTTP(S) proxy URL (may hold credentials, so it is a "
                                        "secret); unset uses none, whatever the environment says.")
    headers: dict[str, Secret] = doc("Extra request headers; values are secrets (never logged).",
                                     default_factory=dict)
    compression: Literal["gzip", "none"] = doc("Request body compression.", default="gzip")
    compression_level: int = doc("gzip level 1 (fast) .. 9 (small).", default=1)
    connect_timeout: Duration = doc("TCP + TLS connect timeout.", default=Duration(5))
    request_timeout: Duration = doc("Time to wait for the response after sending.",
                                    default=Duration(30))

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.compression_level <= 9:
            raise ValueError("compression_level: expected 1..9")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key: needs client_cert")


class TransportError(Exception):
    """The request did not get an HTTP answer (DNS, refused, reset, TLS, timeout). Retryable.

    ``str()`` is safe to log: the error class and the OS reason, never the URL."""


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
    if status in (401, 403):
        return "auth"
    if status == 413:
        return "split"
    if status == 408 or status >= 500:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110
    §10.2.3). None when absent or unparseable; never negative. The caller bounds it."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_CREDENTIAL_PATTERNS = re.compile(
    r"(?i)(authorization|api[-_]?key|token|password|secret|splunk|bearer|basic)(\"?\s*[:=]\s*\"?|\s+)"
    r"[^\s\",}]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def excerpt(body: bytes, secrets: Iterable[str] = (), limit: int = EXCERPT_LIMIT) -> str:
    """A short, single-line, redacted piece of a response body for DLQ entries and status.

    Known secret values are masked, and so is anything shaped like a credential assignment, because
    some services echo the request (or its headers) back in their error messages."""
    text = body[: limit * 4].decode("utf-8", "replace")
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    text = _CREDENTIAL_PATTERNS.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _CONTROL.sub(" ", text).strip()
    return text[:limit] + ("..." if len(text) > limit else "")


def outcome_for_status(resp: HttpResponse, what: str, secrets: Iterable[str] = ()) -> Outcome:
    """The generic Outcome of a non-2xx answer; outputs use it for everything they do not read
    more precisely (a vendor's per-item or per-code errors)."""
    cls = status_class(resp.status)
    reason = f"{what}: HTTP {resp.status}"
    ex = excerpt(resp.body, secrets)
    if cls == "ok":
        return Outcome.delivered()
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if cls == "throttled":
        return Outcome.retry(reason, retry_after, throttled=True, excerpt=ex)
    if cls == "auth":
        return Outcome.retry(reason + " (credentials refused)", retry_after, auth_failure=True,
                             excerpt=ex)
    if cls == "retry":
        return Outcome.retry(reason, retry_after, excerpt=ex)
    if cls == "split":
        return Outcome.split(reason, excerpt=ex)
    return Outcome.permanent(reason, excerpt=ex)


class HttpClient:
    """A pooled session bound to one output's TLS, proxy, timeout and header settings.

    ``on_response(status_class_or_error, seconds)`` is called after every request (for per-output
    metrics: requests by status class and send latency); it gets ``"error"`` for transport errors.
    """

    def __init__(self, config: HttpOutputConfig, *, pool_size: int = 4,
                 on_response: Callable[[str, float], None] | None = None):
        self.config = config
        self._on_response = on_response
        self._session = requests.Session()
        self._session.trust_env = False  # no surprise proxies or netrc credentials from the env
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size),
                                                max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        if config.ca_file:
            self._session.verify = config.ca_file
        else:
            self._session.verify = bool(config.tls_verify)
        if not config.tls_verify:
            self._session.verify = False
        if config.client_cert:
            self._session.cert = ((config.client_cert, config.client_key) if config.client_key
                                  else config.client_cert)
        self._timeout = (float(config.connect_timeout), float(config.request_timeout))

    def secrets(self) -> list[str]:
        """Current values of this client's secrets, for excerpt redaction."""
        out = [v.reveal() for v in self.config.headers.values()]
        if self.config.proxy is not None:
            out.append(self.config.proxy.reveal())
        return out

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, *, compress: bool | None = None,
                timeout: float | None = None) -> HttpResponse:
        """Send one request; raise ``TransportError`` when no HTTP answer came back."""
        send_headers = {"User-Agent": USER_AGENT}
        for k, v in self.config.headers.items():
            send_headers[k] = v.reveal()
        if headers:
            send_headers.update(headers)
        if body is not None and (self.config.compression == "gzip" if compress is None else compress):
            body = gzip_bytes(body, self.config.compression_level)
            send_headers["Content-Encoding"] = "gzip"
        proxies = None
        if self.config.proxy is not None and self.config.proxy.reveal():
            p = self.config.proxy.reveal()
            proxies = {"http": p, "https": p}
        started = time.monotonic()
        try:
            r = self._session.request(method, url, data=body, headers=send_headers,
                                      timeout=timeout if timeout is not None else self._timeout,
                                      proxies=proxies, allow_redirects=False)
            content = r.content
        except requests.RequestException as exc:
            elapsed = time.monotonic() - started
            if self._on_response is not None:
                self._on_response("error", elapsed)
            raise TransportError(describe_transport_error(exc)) from None
        elapsed = time.monotonic() - started
        if self._on_response is not None:
            self._on_response(status_class(r.status_code), elapsed)
        return HttpResponse(r.status_code, r.headers, content, elapsed)

    def close(self) -> None:
        self._session.close()


def gzip_bytes(data: bytes, level: int = 1) -> bytes:
    """gzip-framed deflate (``Content-Encoding: gzip``); level 1 costs a fraction of level 6's CPU
    for ~10% larger bodies on JSON logs."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def describe_transport_error(exc: BaseException) -> str:
    """Error class plus the innermost OS reason; never the URL that requests puts in its message."""
    kind = type(exc).__name__
    inner: BaseException | None = exc
    reason = ""
    seen = 0
    while inner is not None and seen < 8:
        seen += 1
        if isinstance(inner, OSError) and inner.strerror:
            reason = inner.strerror
        if "CERTIFICATE_VERIFY_FAILED" in repr(type(inner)) or "SSLCertVerificationError" in type(
                inner).__name__:
            reason = "certificate verify failed"
        nxt = inner.__cause__ or inner.__context__
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        inner = nxt
    if isinstance(exc, requests.exceptions.SSLError) and not reason:
        reason = "TLS handshake failed"
    if isinstance(exc, requests.exceptions.Timeout) and not reason:
        reason = "timed out"
    return f"{kind}: {reason}" if reason else kind
