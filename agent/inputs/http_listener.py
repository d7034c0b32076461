"""Loopback HTTP input (``type = "http"``): hushd ``audit_forward`` webhook and certification webhooks.

* ``POST <any path>`` (or only ``paths`` when configured): the body is one JSON record (hushd's
  AuditEvent, a ``violation.detected`` certification webhook...), NDJSON (several records, one per line)
  or a JSON array of records.
* **200 only after the spool committed** the events (``writer.write`` returned), so hushd's POST is
  durable once it sees 200. ``{"accepted": n, "duplicates": d, "quarantined": q}``.
* 400 ``{"error": ...}`` when no record of the body could be mapped (the body is quarantined with the
  reason); 401 for a missing/wrong bearer token (constant-time compare) or, with a
  ``certification_secret``, a missing/wrong ``x-clawdstrike-signature`` (quarantined with the reason);
  413 when ``Content-Length`` or the streamed body exceeds ``max_body_bytes``; 503 + ``Retry-After``
  when the spool is full; ``GET /healthz`` answers 200.
* Never logs tokens, secrets or Authorization headers: the WSGI environ is gevent's ``SecureEnviron``
  (values hidden in reprs), application errors are caught before pywsgi would print the environ, and
  the access log only has method, path and status.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from gevent import pywsgi
from gevent.event import Event
from gevent.pool import Pool

from agent.config_types import Secret
from agent.inputs.base import (
    InputStats,
    excerpt,
    kind_of,
    map_body_record,
    now_ms,
    quarantine_reason,
)
from agent.inputs.config import HttpInputConfig, input_config
from agent.listen import AgentWSGIServer
from agent.mapping import MappingContext, MappingError
from agent.signature import SignatureError, verify_certification_signature
from spool.types import IngestBatch, QuarantineRecord, SpoolFull

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_CLAWDSTRIKE_SIGNATURE"


def _secret_bytes(secret: Secret | None) -> bytes | None:
    return None if secret is None else secret.reveal().encode()


class _BodyTooLarge(Exception):
    pass


class _Reply(Exception):
    def __init__(self, status: str, body: dict, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or []


class _AccessLog:
    """pywsgi access log without query strings or headers."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(f"{__name__}.access")
        self._name = name

    def write(self, line: str) -> None:
        self._log.debug("%s: %s", self._name, line.rstrip())


class HttpInput:
    """``HttpInput(name, config, writer, spool=None, context=None)``; ``config`` is an ``HttpInputConfig``
    (or a plain table with its keys). ``listen = "127.0.0.1:0"`` picks a free port (see ``address``
    after ``start()``)."""

    def __init__(self, name: str, config: Any, writer: Any, spool: Any = None,
                 context: MappingContext | None = None) -> None:
        self.name = name
        self.config: HttpInputConfig = input_config(HttpInputConfig, config, name)
        self.writer = writer
        self.context = context or MappingContext()
        self.kind = kind_of(self.config.format)
        self.stats = InputStats()
        self.responses: dict[int, int] = {}
        self._stop = Event()
        self._server: AgentWSGIServer | None = None
        self.address: tuple[str, int] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._server = AgentWSGIServer(
            (self.config.listen.host, self.config.listen.port), self._app, spawn=Pool(256),
            log=_AccessLog(self.name), error_log=logging.getLogger(f"{__name__}.error"),
            environ={},
        )
        self._server.environ_class = pywsgi.SecureEnviron
        self._server.start()
        self.address = self._server.address[:2]
        log.info("%s: listening on http://%s:%d", self.name, *self.address)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting; requests in flight finish (their commit included) within ``timeout``."""
        self._stop.set()
        if self._server is not None:
            self._server.stop_gracefully(timeout)

    # -- WSGI -----------------------------------------------------------------------------------

    def _app(self, environ: dict, start_response: Any) -> list[bytes]:
        try:
            status, body, headers = self._route(environ)
        except _Reply as r:
            status, body, headers = r.status, r.body, r.headers
        except Exception as exc:  # never let pywsgi print the environ (it holds the Authorization header)
            self.stats.errors += 1
            log.error("%s: internal error: %s: %s", self.name, type(exc).__name__, exc)
            status, body, headers = "500 Internal Server Error", {"error": "internal error"}, []
        code = int(status.split()[0])
        self.responses[code] = self.responses.get(code, 0) + 1
        payload = orjson.dumps(body)
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(payload))), *headers])
        return [payload]

    def _route(self, environ: dict) -> tuple[str, dict, list]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return "200 OK", {"status": "ok"}, []
        if method != "POST":
            raise _Reply("405 Method Not Allowed", {"error": "only POST (and GET /healthz)"},
                         [("Allow", "POST")])
        if self.config.paths and path not in self.config.paths:
            raise _Reply("404 Not Found", {"error": f"no input at {path}"})
        self._check_token(environ)
        body = self._read_body(environ)
        source = f"http:{path}"
        records = self._records(body) if body.strip() else []  # parsed once: checked, then ingested
        self._check_signature(environ, body, records, source)
        return self._ingest(body, records, source)

    def _check_token(self, environ: dict) -> None:
        token = _secret_bytes(self.config.bearer_token)
        if token is None:
            return
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, given = auth.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)
        if not ok:
            raise _Reply("401 Unauthorized", {"error": "missing or invalid bearer token"},
                         [("WWW-Authenticate", 'Bearer realm="clawd-agent"')])

    def _read_body(self, environ: dict) -> bytes:
        limit = self.config.max_body_bytes
        too_large = _Reply("413 Payload Too Large", {"error": f"body exceeds max_body_bytes ({limit})"},
                           [("Connection", "close")])
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                n = int(length)
            except ValueError:
                raise _Reply("400 Bad Request", {"error": "invalid Content-Length"}) from None
            if n > limit:
                raise too_large
        stream = environ["wsgi.input"]
        chunks = []
        total = 0
        while True:
            try:
                chunk = stream.read(min(65536, limit + 1 - total))
            except OSError as exc:
                # The client's error, not ours: broken chunked framing (pywsgi's _InvalidClientInput,
                # an IOError) or the connection closed before the body ended. Where a next request
                # would start is unknown, so the connection ends with the answer (as pywsgi's own 400).
                raise _Reply("400 Bad Request", {"error": f"unreadable body: {exc}"},
                             [("Connection", "close")]) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large
        return b"".join(chunks)

    def _check_signature(self, environ: dict, body: bytes, records: list[tuple[int, Any, bytes, str | None]],
                         source: str) -> None:
        secret = _secret_bytes(self.config.certification_secret)
        if secret is None:
            return
        header = environ.get(SIGNATURE_HEADER)
        if (header is None and not self.config.require_signature
                and not any(_looks_certification(record) for _o, record, _r, _e in records)):
            return  # an unsigned audit_forward POST: hushd never signs those
        try:
            verify_certification_signature(body, header, secret)
        except SignatureError as exc:
            reason = f"signature rejected: {exc}"
            self._quarantine([QuarantineRecord(source, 0, reason, excerpt(body, self.context))])
            raise _Reply("401 Unauthorized", {"error": reason}) from None

    def _records(self, body: bytes) -> list[tuple[int, Any, bytes, str | None]]:
        """[(offset, record or None, raw, error)] for the body: one JSON value, a JSON array or NDJSON."""
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if b"\n" not in body.strip():
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError as ue:
                    return [(0, None, body, f"invalid UTF-8 at byte {ue.start}")]
                return [(0, None, body, f"invalid JSON: {exc}")]
            out = []
            pos = 0
            for line in body.split(b"\n"):
                start, pos = pos, pos + len(line) + 1
                if not line.strip():
                    continue
                try:
                    out.append((start, orjson.loads(line), line, None))
                except orjson.JSONDecodeError as e:
                    out.append((start, None, line, f"invalid JSON: {e}"))
            return out
        if isinstance(value, list):
            if not value:  # no record at all: the body is what is quarantined (and answered 400)
                return [(0, None, body, "empty JSON array: no record")]
            return [(0, v, orjson.dumps(v), None) for v in value]
        return [(0, value, body, None)]

    def _ingest(self, body: bytes, records: list[tuple[int, Any, bytes, str | None]],
                source: str) -> tuple[str, dict, list]:
        if not body.strip():
            self._quarantine([QuarantineRecord(source, 0, "empty body", b"")])
            raise _Reply("400 Bad Request", {"error": "empty body"})
        events = []
        quarantine = []
        for offset, record, raw, error in records:
            if error is None:
                try:
                    events.append(map_body_record(record, raw, context=self.context, kind=self.kind))
                    continue
                except MappingError as exc:
                    error = exc.reason
            quarantine.append(QuarantineRecord(source, offset, quarantine_reason(error, self.context),
                                                excerpt(raw, self.context)))
        batch = IngestBatch(self.name, events, [], quarantine)
        try:
            result = self.writer.write(batch)
        except SpoolFull:
            self.stats.spool_full += 1
            raise _Reply("503 Service Unavailable", {"error": "spool full; retry later"},
                         [("Retry-After", str(max(1, round(self.config.retry_after))))]) from None
        self.stats.account(result, len(events), len(quarantine), len(body))
        if not events:
            raise _Reply("400 Bad Request", {"error": quarantine[0].reason, "quarantined": len(quarantine)})
        return "200 OK", {"accepted": result.inserted, "duplicates": result.duplicates,
                          "quarantined": len(quarantine)}, []

    def _quarantine(self, records: list[QuarantineRecord]) -> None:
        try:
            self.writer.write(IngestBatch(self.name, [], [], records))
            self.stats.quarantined += len(records)
        except SpoolFull:
            self.stats.spool_full += 1
            log.warning("%s: spool full; could not quarantine a rejected request (%s)", self.name,
                        records[0].reason)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "http",
            "address": f"{self.address[0]}:{self.address[1]}" if self.address else None,
            # JSON object keys are strings: the status is stored as JSON (Spool.set_input_stats)
            "responses": {str(code): n for code, n in sorted(self.responses.items())},
            "stats": self.stats.as_dict(),
            "last_event_ms": self.stats.last_event_ms,
            "time_ms": now_ms(),
        }


def _looks_certification(record: Any) -> bool:
    """Whether one record of a body is shaped like a hushd certification webhook. Each record is looked
    at as ingest splits the body (alone, in a JSON array, as an NDJSON line): wrapping a certification
    webhook must not take it in unsigned."""
    return (isinstance(record, dict) and isinstance(record.get("event"), str)
            and isinstance(record.get("data"), dict))
