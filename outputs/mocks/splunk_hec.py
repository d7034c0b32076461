"""A Splunk HTTP Event Collector that behaves like the real service, for tests and the demo.

Splunk publishes no machine-readable HEC spec, so this follows the documented contract
(../shared/reference/delivery-peers.md §4.1) and these sources:

- Status codes and their HTTP statuses: Splunk's "Troubleshoot HTTP Event Collector" page, "Possible
  error codes" (docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector), as
  tabulated in gjanders/SplunkAdmins lookups/splunkadmins_hec_reply_code_lookup.csv (codes 0-22);
  codes 23-27 of Splunk Enterprise 9.x as quoted by others ([secondary]; outputs/splunk_hec.py's
  docstring): 23 shutting down (503), 24/25 approaching capacity (200, data taken), 26/27 queue /
  ACK channel at capacity (429). ``code_faults`` make the mock answer any of them.
- Authentication: "Format events for HTTP Event Collector" (docs.splunk.com/Documentation/Splunk/
  latest/Data/FormateventsforHTTPEventCollector): ``Authorization: Splunk <token>``, HTTP Basic with
  the token as the password, or ``?token=`` when query-string authentication is enabled (else code 16).
- Batches are concatenated JSON objects; HEC processes them in order and stops at the first bad one:
  the events before it are indexed, it and the rest are not, and the answer names it with a 0-based
  ``invalid-event-number`` (moby/moby#35862, vectordotdev/vector#11434).
- Indexer acknowledgement: "About HTTP Event Collector Indexer Acknowledgment" (help.splunk.com) and
  the protocol as observed in vectordotdev/vector rfcs/2021-10-29-9465: a channel GUID per request
  (``X-Splunk-Request-Channel`` or ``?channel=``), an ``ackId`` per request allocated per channel,
  ``POST /services/collector/ack {"acks":[...]}`` -> ``{"acks":{"N":true|false}}``; a ``true`` is
  reported once and then forgotten; ``false`` never tells pending from lost.
- Idle ACK channels are removed: inputs.conf.spec [http] (Splunk 9.0.3), ``ackIdleCleanup`` "Whether
  or not to remove ACK channels that have been idle after a period of time, as defined by the
  'maxIdleTime' setting ... Default: true" and ``maxIdleTime`` "Default: 600 (10 minutes)" (older
  specs said false; delivery-peers.md §4.1 quotes those). A removed channel's pending acks answer
  false from then on and its GUID starts a new channel whose ackIds count from 0 again; the events
  stay indexed. Idle = no event request and no ack query on it.
- Body limit: ``limits.conf [http_input] max_content_length`` applies to the request content as sent
  (compressed when gzip; open-telemetry/opentelemetry-collector-contrib#13995); 1 MB here by default,
  as on Splunk Cloud (delivery-peers.md §4.1). Over it: HTTP 413.
- Event size limit: inputs.conf.spec [http] ``maxEventSize`` "The maximum size of a single HEC (HTTP
  Event Collector) event. HEC disregards and triggers a parsing error for events whose size is
  greater than 'maxEventSize'. Default: 5MB" (Splunk 9.0.3); the answer is 400 code 6 "Invalid data
  format" naming that event (signalfx/splunk-otel-collector-chart#696). Measured here on the event's
  JSON object as decoded (after gzip).
- Health: ``/services/collector/health[/1.0]`` -> 200 code 17 "HEC is healthy", 503 codes 18-20 when
  queues are full and/or the ack service is unavailable; with a token, 400 codes 21/22 for an invalid
  or disabled one (the SplunkAdmins table; Vector maps health 400 to a bad token).

Where the docs are silent the mock makes a choice and says so: an ack query on a channel it does not
know answers ``false`` for every id (as after an indexer restart); the 413 body is plain text.

For leak tests only, ``echo_headers`` (off by default; outputs.mocks.server's "Credential echo")
makes every error answer's ``text`` (any code but 0, 17, 24 and 25) end with the echoed header
values and the token its ``Authorization`` carries; codes and HTTP statuses stay as they were.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from outputs.mocks.server import Fault, MockApp, MockRequest, MockResponse

#: HEC status code -> (HTTP status, text), from Splunk's "Possible error codes" table.
HEC_CODES: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    # Splunk Enterprise 9.x adds these ([secondary], see outputs/splunk_hec.py's docstring).
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue approaching capacity"),
    25: (200, "HEC ACK approaching capacity"),
    26: (429, "HEC queue at capacity"),
    27: (429, "HEC ACK channel at capacity"),
}
#: The HEC code a scheduled ``status`` fault answers with, so faults look like HEC's own errors.
FAULT_CODES = {400: 6, 401: 3, 403: 4, 429: 26, 500: 8, 503: 9}

EVENT_PATHS = frozenset({"/services/collector", "/services/collector/event",
                         "/services/collector/event/1.0"})
ACK_PATHS = frozenset({"/services/collector/ack", "/services/collector/ack/1.0"})
HEALTH_PATHS = frozenset({"/services/collector/health", "/services/collector/health/1.0"})
#: Codes that are no error (success, healthy, capacity warnings with the data taken): never echoed.
_NOT_ERRORS = frozenset({0, 17, 24, 25})
CHANNEL_HEADER = "X-Splunk-Request-Channel"
DEFAULT_TOKEN = "00000000-0000-4000-8000-000000000001"


def hec_response(code: int, **extra: Any) -> MockResponse:
    """HEC's JSON answer for ``code`` with its documented HTTP status."""
    status, text = HEC_CODES[code]
    body: dict[str, Any] = {"text": text, "code": code}
    body.update(extra)
    return MockResponse.json(status, body)


@dataclass
class HecToken:
    """One HEC input token. ``indexes`` is the token's allow list (empty: any known index)."""

    value: str
    enabled: bool = True
    use_ack: bool = False
    indexes: list[str] = field(default_factory=list)
    default_index: str = "main"


@dataclass
class _Channel:
    next_ack: int = 0
    last_used: float = 0.0  # monotonic time of its last event request or ack query
    #: ackId -> monotonic time from which the query answers true (None: lost, never true)
    pending: dict[int, float | None] = field(default_factory=dict)
    #: ackId -> the request id whose events it covers (to drop them when acks are lost)
    requests: dict[int, int] = field(default_factory=dict)


@dataclass
class CodeFault:
    """The next ``count`` event requests answer HEC ``code`` with its HTTP status (24/25: the events
    are taken, as with code 0; others: nothing is taken). For 9 "Server is busy",
    ``after_events`` events are taken first and the answer names the next one with
    ``invalid-event-number`` (HEC stopped there; open-telemetry/opentelemetry-collector-contrib
    #36113)."""

    code: int
    count: int = 1
    after_events: int = 0


class _BadEvent(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class SplunkHecApp(MockApp):
    """The HEC endpoints: event, ack, health; state is inspectable via ``events`` and ``stats()``."""

    def __init__(self, tokens: Iterable[str | HecToken] = (DEFAULT_TOKEN,), *,
                 max_content_length: int = 1_000_000, ack_delay: float = 0.0,
                 indexes: Iterable[str] | None = None, allow_query_string_auth: bool = False,
                 echo_headers: Iterable[str] = ()):
        super().__init__()
        self.echo_headers = tuple(echo_headers)
        self._lock = threading.Lock()
        self.tokens: dict[str, HecToken] = {}
        for t in tokens:
            self.set_token(t if isinstance(t, HecToken) else HecToken(t))
        self.max_body = max_content_length
        self.max_decoded_body = 256 * 1024 * 1024
        self.max_event_size = 5 * 1024 * 1024  # inputs.conf [http] maxEventSize (module docstring)
        self.ack_delay = ack_delay
        self.indexes: set[str] | None = set(indexes) if indexes is not None else None
        self.allow_query_string_auth = allow_query_string_auth
        #: inputs.conf [http] ackIdleCleanup / maxIdleTime, Splunk's defaults (module docstring)
        self.ack_idle_cleanup = True
        self.max_idle_time = 600.0
        self.busy = False  # every event POST answers 503 code 9
        self.queues_full = False  # health 503 code 18 and event POSTs 503 code 9
        self.ack_unavailable = False  # health 503 code 19; ack queries 503 code 9
        self.code_faults: list[CodeFault] = []
        self.events: list[dict[str, Any]] = []
        self._event_request: list[int] = []  # request id of each stored event, parallel to events
        self._channels: dict[str, _Channel] = {}
        self._request_seq = 0
        self._counts: dict[str, int] = {}

    # -- configuration --------------------------------------------------------------------------

    def set_token(self, token: HecToken) -> None:
        with self._lock:
            self.tokens[token.value] = token

    def add_code_fault(self, code: int, *, count: int = 1, after_events: int = 0) -> None:
        if code not in HEC_CODES:
            raise ValueError(f"code_fault: unknown HEC code {code}")
        with self._lock:
            self.code_faults.append(CodeFault(code, count, after_events))

    def _take_code_fault(self) -> CodeFault | None:
        with self._lock:
            if not self.code_faults:
                return None
            fault = self.code_faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self.code_faults.pop(0)
            return fault

    def lose_acks(self, *, drop_events: bool = True) -> int:
        """Simulate an indexer restart: every pending ack stays false forever. With ``drop_events``
        the events of those requests are removed too (they were never indexed), so a client that
        re-sends after its ack timeout ends with each event stored exactly once. Returns the
        number of acks lost."""
        with self._lock:
            lost_requests: set[int] = set()
            n = 0
            for ch in self._channels.values():
                for ack_id in list(ch.pending):
                    ch.pending[ack_id] = None
                    lost_requests.add(ch.requests.get(ack_id, -1))
                    n += 1
            if drop_events and lost_requests:
                keep = [i for i, r in enumerate(self._event_request) if r not in lost_requests]
                self.events = [self.events[i] for i in keep]
                self._event_request = [self._event_request[i] for i in keep]
            return n

    def restart(self) -> int:
        """Simulate an indexer restart. Ack state lives in the indexer's memory (the mock's choice,
        the premise of the ackId-reuse review finding): every channel is forgotten, so its ackIds
        start again at 0, and the events of requests not yet indexed (ack still in the future, or
        lost) are dropped. Returns the number of requests dropped."""
        now = time.monotonic()
        with self._lock:
            lost = {ch.requests[a] for ch in self._channels.values()
                    for a, ready in ch.pending.items() if ready is None or ready > now}
            keep = [i for i, r in enumerate(self._event_request) if r not in lost]
            self.events = [self.events[i] for i in keep]
            self._event_request = [self._event_request[i] for i in keep]
            self._channels.clear()
            return len(lost)

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self._event_request.clear()
            self._channels.clear()
            self._counts.clear()
            self.code_faults.clear()
            self.busy = self.queues_full = self.ack_unavailable = False

    # -- MockApp ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._remove_idle_channels(time.monotonic())
            return {
                "events": len(self.events),
                "channels": len(self._channels),
                "acks_pending": sum(1 for ch in self._channels.values() for v in ch.pending.values()
                                    if v is not None),
                "counts": dict(self._counts),
            }

    def fault_response(self, fault: Fault) -> MockResponse:
        code = FAULT_CODES.get(fault.status)
        if code is not None:
            resp = hec_response(code)
            resp.status = fault.status
            return resp
        return MockResponse.json(fault.status, {"text": f"HTTP {fault.status}", "code": fault.status})

    def too_large(self, length: int) -> MockResponse:
        self._count("http_413")
        return MockResponse(413, f"Content-Length of {length} too large (maximum is "
                                 f"{self.max_body})".encode(), {"Content-Type": "text/plain"})

    def credentials_in(self, authorization: str) -> list[str]:
        token = _token_from_header(authorization)
        return [token] if token else []

    def echo_response(self, req: MockRequest, resp: MockResponse) -> MockResponse:
        """An error answer's ``text`` with ``echo_text(req)`` added (module docstring)."""
        if not self.echo_headers or resp.body[:1] != b"{":
            return resp
        echo = self.echo_text(req)
        try:
            body = json.loads(resp.body)
        except ValueError:
            return resp
        if (not echo or not isinstance(body, dict) or not isinstance(body.get("text"), str)
                or body.get("code") in _NOT_ERRORS):
            return resp
        body["text"] = f"{body['text']} {echo}"
        return MockResponse(resp.status, json.dumps(body, separators=(",", ":")).encode(),
                            dict(resp.headers))

    def handle(self, req: MockRequest) -> MockResponse:
        path = req.path.rstrip("/") or "/"
        if path in EVENT_PATHS:
            resp = self._event(req) if req.method == "POST" else _method_not_allowed()
        elif path in ACK_PATHS:
            resp = self._ack(req) if req.method == "POST" else _method_not_allowed()
        elif path in HEALTH_PATHS:
            resp = self._health(req)
        else:
            resp = MockResponse.json(404, {"text": "The requested URL was not found on this server.",
                                           "code": 404})
        self._count(f"http_{resp.status}")
        if resp.body[:1] == b"{":
            code = json.loads(resp.body).get("code")
            if isinstance(code, int):
                self._count(f"code_{code}")
        return resp

    def control(self, req: MockRequest) -> MockResponse | None:
        """``POST /_mock/hec`` {"busy", "queues_full", "ack_unavailable", "ack_delay",
        "ack_idle_cleanup", "max_idle_time",
        "lose_acks", "drop_events", "restart", "code_faults": [{"code", "count", "after_events"}]};
        ``POST /_mock/hec/tokens`` [HecToken dicts] (upsert)."""
        if req.method != "POST" or req.path not in ("/_mock/hec", "/_mock/hec/tokens"):
            return None
        data = json.loads(req.body or b"{}")
        if req.path == "/_mock/hec/tokens":
            for t in data if isinstance(data, list) else [data]:
                self.set_token(HecToken(**t))
            return MockResponse.json(200, {"tokens": len(self.tokens)})
        lost = 0
        for key in ("busy", "queues_full", "ack_unavailable"):
            if key in data:
                setattr(self, key, bool(data[key]))
        if "ack_delay" in data:
            self.ack_delay = float(data["ack_delay"])
        if "ack_idle_cleanup" in data:
            self.ack_idle_cleanup = bool(data["ack_idle_cleanup"])
        if "max_idle_time" in data:
            self.max_idle_time = float(data["max_idle_time"])
        for f in data.get("code_faults", []):
            self.add_code_fault(int(f["code"]), count=int(f.get("count", 1)),
                                after_events=int(f.get("after_events", 0)))
        if data.get("lose_acks"):
            lost = self.lose_acks(drop_events=bool(data.get("drop_events", True)))
        dropped = self.restart() if data.get("restart") else 0
        return MockResponse.json(200, {"lost_acks": lost, "restart_dropped": dropped,
                                       **self.stats()})

    # -- endpoints --------------------------------------------------------------------------------

    def _event(self, req: MockRequest) -> MockResponse:
        token, error = self._authenticate(req)
        if error is not None:
            return error
        assert token is not None
        if self.busy or self.queues_full:
            # Real answers name event 0 (splunk/splunk-connect-for-kubernetes#474, #555).
            return hec_response(9, **{"invalid-event-number": 0})
        channel = req.headers.get(CHANNEL_HEADER) or req.query.get("channel", "")
        if token.use_ack and not channel:
            return hec_response(10)
        if channel and not _is_guid(channel):
            return hec_response(11)
        if req.decode_error:
            return hec_response(6)
        if not req.body.strip():
            return hec_response(5)
        with self._lock:
            self._request_seq += 1
            request_id = self._request_seq
        fault = self._take_code_fault()
        success = 0
        if fault is not None and fault.code in (24, 25):  # taken, with a capacity warning
            success, fault = fault.code, None
        elif fault is not None and fault.code != 9:
            return hec_response(fault.code)
        accepted: list[dict[str, Any]] = []
        bad: tuple[int, int] | None = None
        for n, (item, size) in enumerate(_split_events(req.body)):
            if fault is not None and n == fault.after_events:
                bad = (n, 9)  # busy: HEC stopped here, the events before it are taken
                break
            try:
                if size > self.max_event_size:
                    raise _BadEvent(6)
                accepted.append(self._check_event(item, token))
            except _BadEvent as exc:
                bad = (n, exc.code)
                break
        if fault is not None and bad is None:  # fewer events than after_events: all taken
            bad = (len(accepted), 9)
        with self._lock:
            # HEC indexes the events before the first bad one (moby/moby#35862).
            self.events.extend(accepted)
            self._event_request.extend([request_id] * len(accepted))
        if bad is not None:
            return hec_response(bad[1], **{"invalid-event-number": bad[0]})
        if not token.use_ack:
            return hec_response(success)
        return hec_response(success, ackId=self._allocate_ack(channel, request_id, req.path))

    def _ack(self, req: MockRequest) -> MockResponse:
        token, error = self._authenticate(req)
        if error is not None:
            return error
        assert token is not None
        if not token.use_ack:
            return hec_response(14)
        if self.ack_unavailable:
            return hec_response(9)
        channel = req.headers.get(CHANNEL_HEADER) or req.query.get("channel", "")
        if not channel:
            return hec_response(10)
        if not _is_guid(channel):
            return hec_response(11)
        try:
            ids = json.loads(req.body)["acks"]
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ValueError("acks")
        except (ValueError, KeyError, TypeError):
            return hec_response(6)
        now = time.monotonic()
        out: dict[str, bool] = {}
        with self._lock:
            self._counts["ack_queries"] = self._counts.get("ack_queries", 0) + 1
            self._remove_idle_channels(now)
            ch = self._channels.get(channel)
            if ch is not None:
                ch.last_used = now
            for ack_id in ids:
                if out.get(str(ack_id)):
                    continue  # asked twice: its true is in this answer already (reported once)
                ready = ch.pending.get(ack_id) if ch is not None else None
                done = ch is not None and ready is not None and ready <= now
                if done and ch is not None:
                    del ch.pending[ack_id]  # reported true once, then forgotten
                    ch.requests.pop(ack_id, None)
                out[str(ack_id)] = done
        return MockResponse.json(200, {"acks": out})

    def _health(self, req: MockRequest) -> MockResponse:
        value = _token_from_header(req.headers.get("Authorization", "")) or req.query.get("token")
        if value:
            token = self.tokens.get(value)
            if token is None:
                return hec_response(21)
            if not token.enabled:
                return hec_response(22)
        if self.queues_full and self.ack_unavailable:
            return hec_response(20)
        if self.queues_full:
            return hec_response(18)
        if self.ack_unavailable:
            return hec_response(19)
        return hec_response(17)

    # -- helpers ----------------------------------------------------------------------------------

    def _authenticate(self, req: MockRequest) -> tuple[HecToken | None, MockResponse | None]:
        header = req.headers.get("Authorization", "")
        if header:
            value = _token_from_header(header)
            if value is None:
                return None, hec_response(3)
        elif "token" in req.query:
            if not self.allow_query_string_auth:
                return None, hec_response(16)
            value = req.query["token"]
        else:
            return None, hec_response(2)
        token = self.tokens.get(value)
        if token is None:
            return None, hec_response(4)
        if not token.enabled:
            return None, hec_response(1)
        return token, None

    def _check_event(self, item: Any, token: HecToken) -> dict[str, Any]:
        """One event object as HEC validates it; raises ``_BadEvent(code)``."""
        if isinstance(item, _Unparseable) or not isinstance(item, dict):
            raise _BadEvent(6)
        if "event" not in item:
            raise _BadEvent(12)
        ev = item["event"]
        if ev is None or (isinstance(ev, str) and not ev.strip()):
            raise _BadEvent(13)
        t = item.get("time")
        if t is not None:
            try:
                float(t)
            except (TypeError, ValueError):
                raise _BadEvent(6) from None
        index = item.get("index", token.default_index)
        allowed = set(token.indexes) if token.indexes else self.indexes
        if not isinstance(index, str) or (allowed is not None and index not in allowed):
            raise _BadEvent(7)
        fields = item.get("fields")
        if fields is not None and not _valid_fields(fields):
            raise _BadEvent(15)
        stored = dict(item)
        stored["index"] = index
        return stored

    def _allocate_ack(self, channel: str, request_id: int, path: str) -> int:
        fault = self.faults.take(path, kinds=("ack_delay",))
        delay = fault.delay if fault is not None else self.ack_delay
        now = time.monotonic()
        with self._lock:
            self._remove_idle_channels(now)
            ch = self._channels.setdefault(channel, _Channel())
            ch.last_used = now
            ack_id = ch.next_ack
            ch.next_ack += 1
            ch.pending[ack_id] = None if delay < 0 else now + delay
            ch.requests[ack_id] = request_id
            return ack_id

    def _remove_idle_channels(self, now: float) -> None:
        """Drop the channels idle for ``max_idle_time`` (``ackIdleCleanup``); caller holds the lock."""
        if self.ack_idle_cleanup:
            for guid in [g for g, ch in self._channels.items()
                         if now - ch.last_used >= self.max_idle_time]:
                del self._channels[guid]

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1


class _Unparseable:
    """Marks the point where the concatenated body stopped being JSON."""


def _split_events(body: bytes) -> Iterable[tuple[Any, int]]:
    """Yield (value, its size in UTF-8 bytes) for the concatenated JSON values of an /event body,
    then ``_Unparseable`` at the first spot that does not parse (HEC reports that event number with
    code 6)."""
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return
        try:
            value, end_of_value = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            yield _Unparseable(), 0
            return
        chunk = text[pos:end_of_value]
        yield value, len(chunk) if chunk.isascii() else len(chunk.encode())
        pos = end_of_value


def _valid_fields(fields: Any) -> bool:
    """HEC indexed fields: a flat object of scalars or arrays of scalars (no nested objects).

    Splunk's own pages show the multi-value form: "Automate indexed field extractions with HTTP
    Event Collector" (help.splunk.com, a ``wins`` array) and the Edge Processor HEC usage page
    (``"fields":{"severity":"INFO", "category":["foo","bar"]}``). A nested object is code 15 "Error
    in handling indexed fields" (the code table; open-telemetry/opentelemetry-collector-contrib#18068
    drops such events in its HEC receiver for the same reason) **[secondary]** for the code."""
    if not isinstance(fields, dict):
        return False
    scalar = (str, int, float, bool)
    for v in fields.values():
        if isinstance(v, list):
            if not all(isinstance(x, scalar) for x in v):
                return False
        elif not isinstance(v, scalar):
            return False
    return True


def _token_from_header(header: str) -> str | None:
    """The token in ``Splunk <token>`` or ``Basic base64(any:<token>)``; None if neither."""
    scheme, _, cred = header.strip().partition(" ")
    cred = cred.strip()
    if scheme.lower() == "splunk" and cred:
        return cred
    if scheme.lower() == "basic" and cred:
        try:
            decoded = base64.b64decode(cred, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _method_not_allowed() -> MockResponse:
    return MockResponse.json(405, {"text": "Method Not Allowed", "code": 405})


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def build_app(args: argparse.Namespace) -> SplunkHecApp:
    """``python -m outputs.mocks splunk_hec [--token T ...] [--option ack=true] [--option
    ack_delay=0.5] [--option max_content_length=1000000] [--option indexes=main,security]
    [--option allow_query_string_auth=true] [--option max_idle_time=600]
    [--option echo_headers=Authorization,X-Canary]`` (the last for leak tests only: module
    docstring)."""
    opts: dict[str, str] = dict(args.options)
    use_ack = _bool(opts.pop("ack", "false"))
    indexes = opts.pop("indexes", None)
    echo = opts.pop("echo_headers", "")
    app = SplunkHecApp(
        [HecToken(t, use_ack=use_ack) for t in (args.tokens or [DEFAULT_TOKEN])],
        max_content_length=int(opts.pop("max_content_length", "1000000")),
        ack_delay=float(opts.pop("ack_delay", "0")),
        indexes=[i.strip() for i in indexes.split(",") if i.strip()] if indexes else None,
        allow_query_string_auth=_bool(opts.pop("allow_query_string_auth", "false")),
        echo_headers=[h.strip() for h in echo.split(",") if h.strip()],
    )
    app.max_idle_time = float(opts.pop("max_idle_time", "600"))
    if opts:
        raise SystemExit(f"splunk_hec: unknown --option {sorted(opts)[0]!r}")
    return app
