"""Output ``splunk_hec``: Splunk HTTP Event Collector ``/services/collector/event``, with optional
indexer acknowledgement.

Contract (sources; docs/outputs/splunk_hec.md has the full table):

- Envelope: ``time`` (epoch seconds, ms precision), ``host``, ``source``, ``sourcetype``, ``index``,
  ``fields`` (indexed fields: a flat object of strings) and ``event``; a batch is the envelopes
  concatenated, not a JSON array ("Format events for HTTP Event Collector", docs.splunk.com/
  Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector; "Automate indexed field
  extractions with HTTP Event Collector", .../Data/IFXandHEC). Auth: ``Authorization: Splunk <token>``.
- Limits: Splunk Cloud accepts 1 MB per request by default (``max_content_length``; delivery-peers.md
  §4.1 citing Tenzir and the Splunk Cloud service description); Splunk Enterprise's ceiling is ~800 MB.
  ``default_batch_max_bytes`` stays under 1 MB measured before compression, so it holds either way.
- Error codes (Splunk "Troubleshoot HTTP Event Collector", "Possible error codes"; the code -> HTTP
  status table in gjanders/SplunkAdmins splunkadmins_hec_reply_code_lookup.csv): 8 internal error
  (500) and 9 server busy (503) are retryable (9 in part, below), as are 408, 429, other 5xx and
  transport errors; 1-4 (token disabled/required/invalid authorization/invalid token, 401/403)
  are authentication failures;
  6, 7, 12, 13, 15 name one bad event (``invalid-event-number``, 0-based); 413 splits the batch.
- Codes 23-27 (Splunk Enterprise 9.x's table; not read on Splunk's page here, whose stored copies
  end before the table: **[secondary]**, from open-telemetry/opentelemetry-collector-contrib#51393,
  "code 24/25 approaching-capacity warnings returned on a 200 ... The data was accepted, so it is
  not resent", and a HEC-compatible receiver's design notes in the code corpus quoting the Splunk
  Enterprise 9.3 table "23 503 Server is shutting down, 24 200 HEC queue approaching capacity, 25
  200 HEC ACK approaching capacity, 26 429 HEC queue at capacity, 27 429 HEC ACK channel at
  capacity"): 23 is retried like 9; 24/25 are successes (with a warning in the log); 26/27 are
  throttling (retry, the rate halves, Retry-After honoured), and 27 also replaces the channel,
  whose pending acks are what is full (the per-channel limit
  ``max_number_of_acked_requests_pending_query_per_ack_channel``, delivery-peers.md §4.1).
- Only HEC's own answer counts as delivered: HTTP 200 with a JSON ``code`` 0 (or 24/25). Any other 2xx (a
  proxy, a captive portal, a wrong ``path``) is retried. With ack = true, code 0 without an
  ``ackId`` means the token has no indexer acknowledgement: that 200 only says the data "appears to
  be valid" (AboutHECIDXAck), so it is a configuration error (retry with auth_failure: the output
  pauses and keeps the data), not a delivery.
- 503 code 9 "Server is busy" can carry ``invalid-event-number`` too: "The Splunk backend can offer
  information on how many events it was able to process before sending an error ... the key
  indicates when the payload processing stopped" (open-telemetry/opentelemetry-collector-contrib
  #36113, by a Splunk maintainer of the OTel HEC exporter); real answers carry
  ``{"text":"Server is busy","code":9,"invalid-event-number":0}`` (splunk/splunk-connect-for-
  kubernetes#474, #555), so the number counts from 0 like the bad-event codes'. The issue's own
  example counts one lower ("10 ... we can try resending by dropping the first 9 events"), so
  with ack = false the first N-1 events are accepted and the rest re-sent (PARTIAL): at worst one
  event is indexed twice, and the prefix is not re-sent whole. With ack = true nothing of it is
  confirmed, so the whole batch is re-sent.
- A bad event stops HEC at that event: the ones before it are indexed, it and the ones after it are
  not (moby/moby#35862; vectordotdev/vector#11434). So the outcome is PARTIAL, not SPLIT: the prefix
  is accepted, the named event goes to the DLQ (for code 7 "Incorrect index", every event of the rest
  bound for that same index goes too: HEC refuses the index per token, not per event), the rest is
  re-sent. Bisecting would re-send the prefix and index it twice. Without a usable
  ``invalid-event-number`` (a proxy's answer) the batch is bisected (SPLIT).
- Indexer acknowledgement ("About HTTP Event Collector Indexer Acknowledgment", help.splunk.com;
  protocol as observed in vectordotdev/vector rfcs/2021-10-29-9465): requests carry a channel GUID
  in ``X-Splunk-Request-Channel``; each answer has an ``ackId`` allocated per channel; ``POST
  /services/collector/ack {"acks":[...]}`` answers ``{"acks":{"N":true|false}}``; ``true`` is
  reported once; ``false`` never distinguishes pending from lost, so only a timeout (Splunk's
  guidance and Vector: about 5 minutes) declares loss. Caveats: HEC acks exist in Splunk Enterprise
  only ("Splunk Cloud Platform supports the HTTP Event Collector Indexer Acknowledgment for AWS
  Kinesis Firehose" only, same page); behind a load balancer the ack queries must reach the indexer
  that took the request (sticky sessions; vectordotdev/vector#19417 shows false acks and duplicates
  behind an ALB). ackIds restart at 0 when an indexer restarts and are counted per indexer, so
  AckTracker keeps every ``true`` tied to one request (its docstring).
"""

from __future__ import annotations

import itertools
import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson

from agent.config_loader import doc, secret_field
from agent.config_types import Duration, Secret
from agent.event import timestamp_to_ms
from outputs.base import DeliveryItem, Outcome, check_route_keys
from outputs.http import (
    HttpOutput,
    HttpOutputConfig,
    HttpResponse,
    Payload,
    TransportError,
    check_credential,
    excerpt,
    outcome_for_status,
    outcome_for_transport,
    parse_retry_after,
    split_http_url,
)

if TYPE_CHECKING:  # gevent is imported by the ack tracker, which only the agent builds (not its helper)
    import gevent
    import gevent.event

log = logging.getLogger("clawd_agent.outputs.splunk_hec")

CHANNEL_HEADER = "X-Splunk-Request-Channel"
COLLECTOR = "/services/collector"
#: ackIds per ack query (NiFi's QuerySplunkIndexingStatus batches the same way, ``max-query-size``).
MAX_ACKS_PER_QUERY = 1000

#: HEC codes of an accepted request; only these (with HTTP 200) count as delivered. 24 and 25 are
#: "approaching capacity" warnings on a 200: the data was taken.
SUCCESS_CODES = frozenset({0, 24, 25})
#: ack = true and HEC answered code 0 without an ackId.
NO_ACK_ID = ("hec: ack = true but HEC answered 'Success' without an ackId: indexer acknowledgement "
             "is off for this token, so nothing will confirm the events were indexed; set ack = "
             "false (delivery then means 'accepted') or enable indexer acknowledgement on the "
             "token. Output paused, data kept (each retry may index the batch again)")
#: HEC codes that name one bad event in the request (with ``invalid-event-number``).
BAD_EVENT_CODES = frozenset({6, 7, 12, 13, 15})
#: HEC codes that mean the token is refused: re-read ``file:`` credentials, open the breaker.
AUTH_CODES = frozenset({1, 2, 3, 4})
#: Configuration errors no re-send fixes until the config or the token changes: keep the data and
#: pause the output (signalled as an auth failure, which opens the breaker) with a clear reason.
CONFIG_CODES: dict[int, str] = {
    10: "the token requires indexer acknowledgement: set ack = true",
    16: "HEC refused query-string authorization",
}
HEC_TEXT: dict[int, str] = {
    0: "Success", 1: "Token disabled", 2: "Token is required", 3: "Invalid authorization", 4: "Invalid token",
    5: "No data", 6: "Invalid data format", 7: "Incorrect index", 8: "Internal server error",
    9: "Server is busy", 10: "Data channel is missing", 11: "Invalid data channel",
    12: "Event field is required", 13: "Event field cannot be blank", 14: "ACK is disabled",
    15: "Error in handling indexed fields", 16: "Query string authorization is not enabled",
    18: "HEC is unhealthy, queues are full", 19: "HEC is unhealthy, ack service unavailable",
    20: "HEC is unhealthy, queues are full, ack service unavailable", 21: "Invalid token",
    22: "Token disabled", 23: "Server is shutting down", 24: "HEC queue approaching capacity",
    25: "HEC ACK approaching capacity", 26: "HEC queue at capacity",
    27: "HEC ACK channel at capacity",
}


def _decision(ev: dict[str, Any], key: str) -> Any:
    d = ev.get("decision")
    return d.get(key) if isinstance(d, dict) else None


def _agent_id(ev: dict[str, Any]) -> Any:
    a = ev.get("agent")
    return a.get("id") if isinstance(a, dict) else None


#: Indexed fields an event can contribute (config ``event_fields``). Kept to low-cardinality values:
#: every indexed field costs index space on each event (the IFXandHEC page's caution).
EVENT_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "severity": lambda ev: _decision(ev, "severity"),
    "guard": lambda ev: _decision(ev, "guard"),
    "event_type": lambda ev: ev.get("event_type"),
    "outcome": lambda ev: ev.get("outcome"),
    "action": lambda ev: ev.get("action"),
    "agent_id": _agent_id,
}

#: The route values the envelope reads (``SplunkHecOutput._meta``).
ROUTE_KEYS = ("index", "sourcetype", "source", "host")

#: Default sourcetype per document format when the config leaves it empty.
SOURCETYPES = {"canonical": "clawdstrike:security_event", "ecs": "clawdstrike:ecs",
               "ocsf": "clawdstrike:ocsf", "cef": "cef"}


#: inputs.conf [http] ``maxIdleTime``, Splunk's default (with ``ackIdleCleanup = true``, the default in
#: 9.x): an ack channel idle this long is removed with its pending acks, so queries must come sooner.
ACK_CHANNEL_IDLE_S = 600.0


@dataclass
class SplunkHecOutputConfig(HttpOutputConfig):
    type: str = doc("Output type.", default="splunk_hec")
    endpoint: str = doc("HEC base URL: https://splunk.example.com:8088, or Splunk Cloud's "
                        "https://http-inputs-<stack>.splunkcloud.com.", default="")
    path: str = doc("Event endpoint path (a proxy may prefix it or use its own). The ack and health "
                    "endpoints are its /services/collector siblings, or, for a path without "
                    "/services/collector, its siblings (/hec/event: /hec/ack, /hec/health).",
                    default="/services/collector/event")
    ack_path: str = doc("Ack endpoint path; empty derives it from `path`.", default="")
    health_path: str = doc("Health endpoint path; empty derives it from `path`.", default="")
    token: Secret | None = secret_field("HEC token (sent as 'Authorization: Splunk <token>').")
    format: Literal["canonical", "ecs", "ocsf", "cef"] = doc(
        "Event format: JSON formats go as an object in `event`, cef as a string.", default="canonical")
    index: str = doc("Index; empty uses the token's default index.", default="")
    source: str = doc("Source field.", default="clawd-agent")
    sourcetype: str = doc("Sourcetype; empty picks one per format (clawdstrike:security_event, "
                          "clawdstrike:ecs, clawdstrike:ocsf, cef).", default="")
    host: str = doc("Host field; empty uses the event's host (observer.host_name: [agent] "
                    "host_name), else this machine's host name.", default="")
    indexed_fields: dict[str, str] = doc("Static indexed fields added to every event.",
                                         default_factory=dict)
    event_fields: list[str] = doc(
        "Indexed fields taken from each event (severity, guard, event_type, outcome, action, "
        "agent_id); absent values are left out.",
        default_factory=lambda: ["severity", "event_type", "outcome", "guard"])
    ack: bool = doc("Indexer acknowledgement: a batch counts as delivered only once HEC confirms it "
                    "was indexed (Splunk Enterprise only; see docs/outputs/splunk_hec.md).",
                    default=False)
    channels: int = doc("Ack channels (one GUID each) the requests are spread over; raised to the "
                        "send slots (`concurrency`, 16 by default with acks) when lower, as a channel "
                        "carries one request at a time.", default=4)
    ack_poll_interval: Duration = doc(
        "First wait between ack queries; doubled while no ack arrives. Each batch holds one of the "
        "`concurrency` slots until acked (16 slots by default with acks), so this bounds acked "
        "throughput.", default=Duration(0.25))
    ack_poll_max_interval: Duration = doc("Longest wait between ack queries (Splunk's guidance: "
                                          "10 s); less than 600 s, HEC's maxIdleTime, after which "
                                          "an idle ack channel is removed with its pending acks.",
                                          default=Duration(10))
    ack_timeout: Duration = doc("A batch not acknowledged within this is re-sent (at-least-once).",
                                default=Duration(300))

    def validate(self) -> None:
        super().validate()
        u = split_http_url(self.endpoint, "endpoint: expected an http(s)://host[:port] URL")
        if u.username or u.password or u.query:
            raise ValueError("endpoint: put the token in `token`, not in the URL")
        if not self.path.startswith("/"):
            raise ValueError("path: expected an absolute path like /services/collector/event")
        for key in ("ack_path", "health_path"):
            value = getattr(self, key)
            if value and not value.startswith("/"):
                raise ValueError(f"{key}: expected an absolute path like /services/collector/ack")
        if self.token is None:
            raise ValueError("token: required")
        check_credential("token", "Splunk " + self.token.reveal())
        unknown = [f for f in self.event_fields if f not in EVENT_FIELDS]
        if unknown:
            raise ValueError(f"event_fields: unknown {unknown[0]!r} (known: {', '.join(EVENT_FIELDS)})")
        if self.channels < 1:
            raise ValueError("channels: expected at least 1")
        if self.ack_timeout <= 0 or self.ack_poll_interval <= 0:
            raise ValueError("ack_timeout/ack_poll_interval: expected more than 0")
        if self.ack_poll_max_interval < self.ack_poll_interval:
            raise ValueError("ack_poll_max_interval: expected at least ack_poll_interval")
        if self.ack_poll_max_interval >= ACK_CHANNEL_IDLE_S:
            raise ValueError(f"ack_poll_max_interval: expected less than {ACK_CHANNEL_IDLE_S:.0f} s (HEC "
                             "removes an ack channel idle that long, and its pending acks with it)")

    def check_route(self, values: dict[str, str]) -> None:
        check_route_keys(values, ROUTE_KEYS, "splunk_hec")


def collector_paths(path: str) -> tuple[str, str]:
    """The ack and health paths next to an event ``path``: ``<prefix>/services/collector/ack`` and
    ``/health`` (a proxy prefix is kept); for a path without /services/collector (a proxy's own,
    like /hec/event), the siblings of its last segment (/hec/ack, /hec/health)."""
    i = path.find(COLLECTOR)
    base = path[: i + len(COLLECTOR)] if i >= 0 else path.rstrip("/").rpartition("/")[0]
    return base + "/ack", base + "/health"


def hec_code(answer: dict[str, Any]) -> int | None:
    """The answer's HEC code when it is one HEC documents; None for anything else (a proxy's JSON,
    an HTML page, an empty body)."""
    code = answer.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and code in HEC_TEXT:
        return code
    return None


def parse_hec_answer(body: bytes) -> dict[str, Any]:
    """HEC's JSON answer, or {} when the body is not one (a proxy's HTML page)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class SplunkHecOutput(HttpOutput):
    type_name = "splunk_hec"
    send_reads_events = False  # item.event is read only by encode()
    #: Under Splunk Cloud's default 1 MB ``max_content_length``, measured before compression.
    default_batch_max_bytes: ClassVar[int] = 900_000
    default_concurrency: ClassVar[int] = 4
    #: With indexer acks a batch keeps its slot until HEC confirms it (a first ack query after
    #: ``ack_poll_interval``): 4 slots capped acked delivery near 5,000 events/s in bench/delivery.py,
    #: 16 reach ~17,000. A waiting batch costs its packed gzip body (outputs/packing.py), and Splunk
    #: keeps up to 1,000,000 acked requests pending per channel
    #: (``max_number_of_acked_requests_pending_query_per_ack_channel``, delivery-peers.md §4).
    ack_default_concurrency: ClassVar[int] = 16
    #: Ack queries run beside the sends: a connection more than HttpOutput's spare one.
    extra_connections = 2
    config: SplunkHecOutputConfig

    def __init__(self, name: str, config: SplunkHecOutputConfig):
        super().__init__(name, config)
        if config.ack:
            self.default_concurrency = self.ack_default_concurrency  # type: ignore[misc]
        base = config.endpoint.rstrip("/")
        self.event_url = base + config.path
        ack_path, health_path = collector_paths(config.path)
        self.ack_url = base + (config.ack_path or ack_path)
        self.health_url = base + (config.health_path or health_path)
        #: Without a configured ``host``: the event's own (``observer.host_name``, the agent's
        #: ``[agent] host_name`` when it was spooled), else this machine's name.
        self._host = config.host
        self._machine = socket.gethostname()
        self._sourcetype = config.sourcetype or SOURCETYPES[config.format]
        self._static_fields = dict(config.indexed_fields)
        self._getters = [(name, EVENT_FIELDS[name]) for name in config.event_fields]
        self._meta_cache: dict[tuple[str, str, str, str], bytes] = {}
        self.acks: AckTracker | None = None
        #: Set while HEC answers code 0 without an ackId although ack = true (health reports it).
        self.no_ack_id_reason = ""
        self._capacity_code: int | None = 0

    # ---------------------------------------------------------------------------- encoding

    def encode(self, item: DeliveryItem) -> bytes:
        """One HEC envelope: ``{"time":..,"host":..,"source":..,"sourcetype":..,"index":..,
        "event":<document>,"fields":{..}}``. The rendered document is spliced in as bytes when it
        is a JSON object (no re-parse); anything else (CEF) becomes a JSON string."""
        pipeline = getattr(self, "pipeline", None)
        doc_bytes = (pipeline.render(item.event, item.body) if pipeline is not None
                     else item.body).strip()
        event_part = doc_bytes if doc_bytes[:1] == b"{" else orjson.dumps(
            doc_bytes.decode("utf-8", "replace"))
        ev = item.event or _decode(item.body)
        t = _epoch(ev)
        out = (b'{"time":' + t + b"," if t else b"{") + self._meta(item.route, ev) + b',"event":' + \
            event_part
        fields = self._fields(ev)
        if fields:
            out += b',"fields":' + orjson.dumps(fields)
        return out + b"}"

    def _meta(self, route: dict[str, str] | None, ev: dict[str, Any]) -> bytes:
        r = route or {}
        host = r.get("host") or self._host
        if not host:
            obs = ev.get("observer")
            host = obs.get("host_name") if isinstance(obs, dict) else None
            if not host or not isinstance(host, str):
                host = self._machine
        key = (host, r.get("source") or self.config.source,
               r.get("sourcetype") or self._sourcetype, r.get("index") or self.config.index)
        cached = self._meta_cache.get(key)
        if cached is None:
            meta = {"host": key[0], "source": key[1], "sourcetype": key[2]}
            if key[3]:
                meta["index"] = key[3]
            cached = orjson.dumps(meta)[1:-1]
            if len(self._meta_cache) < 1024:
                self._meta_cache[key] = cached
        return cached

    def _fields(self, ev: dict[str, Any]) -> dict[str, str]:
        fields = dict(self._static_fields)
        for name, get in self._getters:
            value = get(ev)
            if value is not None and value != "":
                fields[name] = str(value)
        return fields

    def index_of(self, item: DeliveryItem) -> str:
        """The index this item's envelope names ('' = the token's default)."""
        return (item.route or {}).get("index") or self.config.index

    # ---------------------------------------------------------------------------- lifecycle

    def open(self) -> None:
        self.client()
        if self.config.ack and self.acks is None:
            self.acks = AckTracker(self)

    def close(self) -> None:
        if self.acks is not None:
            self.acks.close()
            self.acks = None
        super().close()

    def client_auth(self) -> dict[str, str]:
        return {"Authorization": "Splunk " + self.token()}

    def token(self) -> str:
        assert self.config.token is not None
        return self.config.token.reveal()

    def secrets(self) -> list[str]:
        """The token (and every header and proxy credential, and each ${ENV} value expanded into
        one of them), for redaction."""
        token = self.config.token
        out = self.client().secrets()  # (reads the token: its held values are up to date)
        return out + ([*token.parts, *token.held()[1:]] if token is not None else [])

    def request(self, method: str, url: str, body: bytes | Payload | None = None,
                headers: dict[str, str] | None = None, *, compress: bool | None = None,
                report: bool = True) -> HttpResponse:
        return self.client().request(method, url, body, headers, compress=compress, report=report)

    # ---------------------------------------------------------------------------- delivery

    def send(self, batch: list[DeliveryItem], packed: Payload | None = None) -> Outcome:
        body = self.request_body(batch, packed)
        headers = {"Content-Type": "application/json"}
        acks = self.acks
        if acks is None:
            outcome = self._post(body, headers, batch, None)
            assert isinstance(outcome, Outcome)
            return outcome
        # The channel is this request's alone until its answer is read and its ackId registered,
        # and the poller does not query it meanwhile (AckTracker's docstring says why).
        ch = acks.acquire()
        if ch is None:
            return Outcome.retry("hec: output closing")
        headers[CHANNEL_HEADER] = ch.guid
        try:
            posted = self._post(body, headers, batch, ch)
        finally:
            acks.release(ch)
        if isinstance(posted, Outcome):
            return posted
        return acks.wait(ch, *posted)

    def _post(self, body: bytes | Payload, headers: dict[str, str], batch: list[DeliveryItem],
              ch: AckChannel | None) -> Outcome | tuple[int, gevent.event.AsyncResult]:
        """One POST: its Outcome, or (with acks) the ackId registered on ``ch`` and its result."""
        try:
            resp = self.request("POST", self.event_url, body, headers)
        except TransportError as exc:
            if ch is not None and self.acks is not None:
                # HEC may have taken it and given it an ackId this output never saw.
                self.acks.ack_space_unknown(ch)
            return outcome_for_transport(exc, "hec")
        answer = parse_hec_answer(resp.body)
        code = hec_code(answer)
        if ch is not None and self.acks is not None and code is None and \
                (200 <= resp.status < 300 or resp.status >= 500):
            # Not HEC's own answer (a proxy or gateway): it may have passed the request on.
            self.acks.ack_space_unknown(ch)
        if resp.status == 200 and code in SUCCESS_CODES:
            self._note_capacity(code)
            return self._accepted(answer, ch)
        if 200 <= resp.status < 300 and code is None:
            # A proxy, a captive portal or a wrong `path` answering 2xx with its own page: nothing
            # says HEC took the events.
            return Outcome.retry(f"hec: HTTP {resp.status} without HEC's answer (a proxy, captive "
                                 "portal or wrong `path`?): nothing confirms the events were "
                                 "taken; retrying", excerpt=excerpt(resp.body, self.secrets()))
        return self._refused(resp, answer, batch, ch)

    def _note_capacity(self, code: int | None) -> None:
        """Log HEC's "approaching capacity" (24/25) once each time it starts."""
        if code != self._capacity_code and code in (24, 25):
            log.warning("output %s: HEC answered code %d '%s' (the data was taken)", self.name,
                        code, HEC_TEXT[code])
        self._capacity_code = code

    def _accepted(self, answer: dict[str, Any], ch: AckChannel | None
                  ) -> Outcome | tuple[int, gevent.event.AsyncResult]:
        if ch is None:  # ack = false: HEC's 200 code 0 is the delivery
            return Outcome.delivered()
        if self.acks is None:
            # ack = true (the request went on an ack channel) but the output was closed while the
            # POST was under way: nothing will read this request's ack, and HEC's 200 only says the
            # request was taken, not indexed. Not delivered: re-sent by the next run.
            return Outcome.retry("hec: output closing before the ack arrived")
        ack_id = answer.get("ackId")
        if not isinstance(ack_id, int) or isinstance(ack_id, bool):
            # The token does not use indexer acknowledgement: HEC took the data, but its 200 only
            # means "appears valid" (AboutHECIDXAck) and nothing will confirm indexing, which is
            # what ack = true asks for. A configuration error like codes 10 and 16: keep the data
            # and pause the output (auth_failure opens the breaker), with a clear reason.
            if not self.no_ack_id_reason:
                log.error("output %s: %s", self.name, NO_ACK_ID)
            self.no_ack_id_reason = NO_ACK_ID
            return Outcome.retry(NO_ACK_ID, auth_failure=True)
        self.no_ack_id_reason = ""
        return ack_id, self.acks.register(ch, ack_id)

    def _refused(self, resp: HttpResponse, answer: dict[str, Any], batch: list[DeliveryItem],
                 ch: AckChannel | None) -> Outcome:
        code = hec_code(answer)
        if code is None:
            return outcome_for_status(resp, "hec", self.secrets())
        reason = f"hec: HTTP {resp.status} code {code} {HEC_TEXT[code]}"
        ex = excerpt(resp.body, self.secrets())
        if 200 <= resp.status < 300 and code not in AUTH_CODES and code not in CONFIG_CODES:
            # HEC answers success as HTTP 200 with code 0 (24/25): another 2xx, or a 200 carrying an
            # error code (a gateway that answers 200 and passes HEC's body on), confirms nothing,
            # not even the prefix a bad-event or busy answer's number names.
            return Outcome.retry(reason + ": only HTTP 200 with code 0, 24 or 25 means HEC took the "
                                 "events; retrying", excerpt=ex)
        if code in BAD_EVENT_CODES and 400 <= resp.status < 500 and resp.status not in (408, 429):
            # HEC refuses a bad event with HTTP 400; under a status that is not a final refusal
            # (a 5xx, 408, 429 from something in front) the code says nothing final about an event.
            return self._bad_event(code, answer.get("invalid-event-number"), batch, reason, ex)
        if code in AUTH_CODES:
            return Outcome.retry(reason + " (credentials refused)", auth_failure=True, excerpt=ex)
        if code in CONFIG_CODES:
            return Outcome.retry(f"{reason}: {CONFIG_CODES[code]}", auth_failure=True, excerpt=ex)
        if code == 11 and self.acks is not None and ch is not None:
            self.acks.replace_channel(ch.guid)
            return Outcome.retry(reason + " (new channel)", excerpt=ex)
        if code == 9:
            return self._busy(answer.get("invalid-event-number"), batch, reason,
                              parse_retry_after(resp.headers.get("Retry-After")), ex)
        if code == 27 and self.acks is not None and ch is not None:
            self.acks.replace_channel(ch.guid)  # its pending acks are what is full
            reason += " (new channel)"
        # The rest by their HTTP status, as any output's: 8 (500) and 23 (503) retried, 26 and 27
        # (429) throttled, with Retry-After honoured; other codes as their 4xx says.
        return outcome_for_status(resp, "hec", reason=reason, ex=ex)

    def _busy(self, number: Any, batch: list[DeliveryItem], reason: str,
              retry_after: float | None, ex: str) -> Outcome:
        """503 code 9 "Server is busy". HEC may have taken the events before ``invalid-event-number``
        (the number of the event where it stopped; module docstring). Without acks, the events
        that surely went in are accepted and the rest re-sent, so they are not indexed twice; the
        one just before the number is re-sent too, as the sources count it one lower (at worst one
        duplicate, never a loss). With acks nothing of it is confirmed: the whole batch goes again."""
        if (self.acks is not None or not isinstance(number, int) or isinstance(number, bool)
                or not 1 < number <= len(batch)):
            return Outcome.retry(reason, retry_after, excerpt=ex)
        taken = number - 1
        return Outcome.partial(reason + f" (HEC took the first {taken} of {len(batch)} events; "
                               "re-sending the rest)", retry_items=batch[taken:],
                               retry_after=retry_after, excerpt=ex)

    def _bad_event(self, code: int, number: Any, batch: list[DeliveryItem], reason: str,
                   ex: str) -> Outcome:
        """HEC indexed ``batch[:n]``, refused ``batch[n]`` and ignored the rest (module docstring)."""
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < len(batch):
            return Outcome.split(reason, excerpt=ex)
        bad = batch[number]
        rest = batch[number + 1:]
        failed = [bad]
        if code == 7:  # the token refuses that index: every event bound for it fails alike
            index = self.index_of(bad)
            failed += [it for it in rest if self.index_of(it) == index]
            rest = [it for it in rest if self.index_of(it) != index]
        # With acks on, the accepted prefix got no ackId: its indexing is unconfirmed, so it is
        # re-sent too (at-least-once over a possible duplicate).
        retry = (batch[:number] + rest) if self.acks is not None else rest
        return Outcome.partial(reason + f" (event {number} of {len(batch)})", failed=failed,
                               retry_items=retry, excerpt=ex)

    # ---------------------------------------------------------------------------- health

    def healthcheck(self) -> tuple[bool, str]:
        """``GET /services/collector/health`` with the token: 200 code 17 healthy; 400 codes 21/22
        a bad token; 503 codes 18-20 queues full / ack service unavailable."""
        if self.acks is not None and self.acks.disabled_reason:
            return False, self.acks.disabled_reason
        if self.no_ack_id_reason:
            return False, self.no_ack_id_reason
        try:
            resp = self.request("GET", self.health_url, compress=False, report=False)
        except TransportError as exc:
            return False, f"hec health: {exc}"
        code = parse_hec_answer(resp.body).get("code")
        if resp.status == 200:
            return True, "HEC is healthy"
        text = HEC_TEXT.get(code, "") if isinstance(code, int) else ""
        return False, f"hec health: HTTP {resp.status}" + (f" code {code} {text}" if text else "")


@dataclass(eq=False)
class AckChannel:
    """One ack channel: its GUID and the requests waiting on an ackId it gave."""

    guid: str
    #: ackId -> the waiting send's result
    waiters: dict[int, gevent.event.AsyncResult] = field(default_factory=dict)
    #: Replaced (HEC refused it, or its ack space is in doubt): no new request goes on it, but it is
    #: still polled until its waiters resolve.
    retired: bool = False
    #: A POST or an ack query on it is under way (one at a time).
    busy: bool = False


class AckTracker:
    """Indexer acknowledgement for one output: channels, pending ackIds, and ONE poller greenlet.

    ``send`` registers its ackId and waits on a gevent ``AsyncResult`` for the Outcome; the poller
    batches every pending id of a channel into one ``/ack`` query per round (one query per channel
    that has waiters, not one per request; with as many channels as slots, requests rarely share
    one, so that is close to one small query per waiting batch). The round's wait starts at
    ``ack_poll_interval`` and doubles (to ``ack_poll_max_interval``) while no ack arrives: slow
    indexers are polled less.

    A replaced channel is *retired*, not forgotten: a request already sent on it registers there
    and is polled like any other until it resolves (otherwise it would hold its slot for the whole
    ``ack_timeout`` and then be sent again although HEC acknowledged it).

    **A ``true`` must name one request.** ackIds are a per-channel counter held by the indexer that
    took the request: they start again at 0 when it restarts, and two indexers behind a load
    balancer count separately. Keyed by (channel, ackId) alone, a ``true`` could confirm an older
    request that holds the same id (its data lost in the restart) if the query ran before the new
    request's answer was registered. So:

    - one thing at a time per channel: a POST holds its channel (``acquire``/``release``) until its
      answer is read and its ackId registered, and the poller queries only idle channels and holds
      them while it does. When a query runs, every ackId HEC gave on that channel is registered,
      so the ids it asks about are the ones this output knows;
    - a registration that finds (channel, ackId) still pending means the channel's ack space
      restarted: the older request is re-sent (its ``true`` can no longer be told from the new
      one's; in a restart its data is gone), and the channel is retired;
    - a POST on a channel that got no HEC answer (transport error, a proxy's 2xx/5xx page) may hold
      an ackId this output never saw: every request waiting on that channel is re-sent and the
      channel retired (``ack_space_unknown``).

    Channels are at least as many as send slots, so a send finds an idle one without waiting
    (unless the poller holds the last one for the length of a query).
    """

    def __init__(self, output: SplunkHecOutput):
        import gevent.event

        self.output = output
        cfg = output.config
        self.live = [AckChannel(str(uuid.uuid4()))
                     for _ in range(max(cfg.channels, output.send_slots))]
        #: every channel still of use: the live ones and the retired ones with waiters
        self.known: dict[str, AckChannel] = {c.guid: c for c in self.live}
        self.interval = float(cfg.ack_poll_interval)
        self.queries = 0
        #: Why acks cannot work (code 14, or an ack endpoint that is not HEC's); "" once an ack
        #: query is answered again. The health check reports it.
        self.disabled_reason = ""
        self._wake = gevent.event.Event()
        self._idle = gevent.event.Event()  # set when a channel turns idle
        self._poller: gevent.Greenlet | None = None
        self._closed = False
        self._rr = itertools.count()

    @property
    def channels(self) -> list[str]:
        """The GUIDs new requests go on."""
        return [c.guid for c in self.live]

    def pending_count(self) -> int:
        return sum(len(c.waiters) for c in self.known.values())

    def acquire(self) -> AckChannel | None:
        """An idle live channel for one POST, the one with the fewest waiters (round robin among
        equals), marked busy; waits while none is idle. None once closed."""
        while not self._closed:
            idle = [c for c in self.live if not c.busy]
            if idle:
                start = next(self._rr) % len(idle)
                ch = min(idle[start:] + idle[:start], key=lambda c: len(c.waiters))
                ch.busy = True
                return ch
            self._idle.clear()
            self._idle.wait()
        return None

    def release(self, ch: AckChannel) -> None:
        ch.busy = False
        self._idle.set()
        self._forget_if_done(ch)

    def register(self, ch: AckChannel, ack_id: int) -> gevent.event.AsyncResult:
        """The result the request that got ``ack_id`` on ``ch`` waits on (called while it holds
        ``ch``). A request still pending on the same id is re-sent and the channel retired."""
        import gevent.event

        older = ch.waiters.pop(ack_id, None)
        if older is not None:
            log.warning("output %s: HEC gave ackId %d again on one channel (indexer restart, or "
                        "several indexers without sticky sessions); re-sending the older batch "
                        "and replacing the channel", self.output.name, ack_id)
            older.set(Outcome.retry(
                f"hec: ackId {ack_id} was given again on this batch's ack channel (the indexer "
                "restarted, or another indexer answered): its ack can no longer be told from the "
                "new request's; re-sending (at-least-once)"))
            self.replace_channel(ch.guid)
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        ch.waiters[ack_id] = result
        self._ensure_poller()
        self._wake.set()
        return result

    def ack_space_unknown(self, ch: AckChannel) -> None:
        """A request on ``ch`` got no HEC answer: HEC may have given it an ackId that equals one a
        waiting request holds (after a restart), so no ``true`` on ``ch`` can be trusted. Its
        waiters are re-sent; the channel is retired."""
        self.replace_channel(ch.guid)
        self._resolve_all(ch, Outcome.retry(
            "hec: a request on this batch's ack channel got no HEC answer, so it may hold an "
            "ackId this output never saw; acks on the channel can no longer be told apart: "
            "re-sending (at-least-once)"))

    def replace_channel(self, guid: str) -> str:
        """HEC refused ``guid`` (code 11): new requests use a new GUID in its place. The old
        channel is retired, not dropped: requests already sent on it are still polled."""
        ch = self.known.get(guid)
        if ch is None or ch.retired:
            return guid
        new = AckChannel(str(uuid.uuid4()))
        self.live[self.live.index(ch)] = new
        self.known[new.guid] = new
        ch.retired = True
        self._forget_if_done(ch)
        return new.guid

    def _forget_if_done(self, ch: AckChannel) -> None:
        if ch.retired and not ch.waiters and not ch.busy:
            self.known.pop(ch.guid, None)

    def _resolve_all(self, ch: AckChannel, outcome: Outcome) -> None:
        for result in ch.waiters.values():
            result.set(outcome)
        ch.waiters.clear()
        self._forget_if_done(ch)

    def wait(self, ch: AckChannel, ack_id: int, result: gevent.event.AsyncResult) -> Outcome:
        import gevent

        timeout = float(self.output.config.ack_timeout)
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            if result.ready():
                # The poller resolved it in the turn of the hub in which the timeout came due (a
                # busy loop runs both): its answer stands. A ``true`` is reported once, so
                # re-sending now would index the batch twice although HEC acknowledged it.
                return result.get(block=False)
            if ch.waiters.get(ack_id) is result:  # (never another request's entry)
                del ch.waiters[ack_id]
            self._forget_if_done(ch)
            return Outcome.retry(f"hec: ack timeout: not acknowledged within {timeout:g}s; "
                                 "re-sending (at-least-once)")

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.dead:
            import gevent

            self._poller = gevent.spawn(self._run)

    def close(self) -> None:
        self._closed = True
        self._idle.set()
        if self._poller is not None:
            self._poller.kill(block=False)
            self._poller = None
        for ch in list(self.known.values()):
            self._resolve_all(ch, Outcome.retry("hec: output closing before the ack arrived"))

    def next_interval(self, progressed: bool | None) -> float:
        """The wait before the next round: back to ``ack_poll_interval`` after a round that got an
        ack, doubled (up to ``ack_poll_max_interval``) after one that got none, the same after one
        that asked nothing (None: every channel with waiters had a POST under way)."""
        cfg = self.output.config
        if progressed:
            self.interval = float(cfg.ack_poll_interval)
        elif progressed is not None:
            self.interval = min(self.interval * 2, float(cfg.ack_poll_max_interval))
        return self.interval

    def _run(self) -> None:
        import gevent

        self.interval = float(self.output.config.ack_poll_interval)
        while not self._closed:
            if not self.pending_count():
                self._wake.clear()
                self._wake.wait()
                self.interval = float(self.output.config.ack_poll_interval)
                continue
            gevent.sleep(self.interval)
            try:
                progressed = self.poll_once()
            except Exception as exc:  # e.g. an unreadable token file: keep polling, say what
                log.warning("output %s: ack poll round failed: %s", self.output.name,
                            type(exc).__name__)
                progressed = False
            self.next_interval(progressed)

    def poll_once(self) -> bool | None:
        """One round: query the pending ids of every idle channel, live or retired (a channel with
        a POST under way waits for the next round), the channels at once: with as many channels as
        send slots that is up to 16 small queries a round, and one after another they made the round
        (so every waiting batch's slot) as long as their sum. True when any ack came back, None
        when no channel could be asked."""
        import gevent

        channels = [ch for ch in list(self.known.values()) if not ch.busy and ch.waiters]
        if not channels:
            return None
        for ch in channels:
            ch.busy = True
        if len(channels) == 1:
            return self._poll_channel(channels[0])
        polls = [gevent.spawn(self._poll_channel, ch) for ch in channels]
        gevent.joinall(polls)
        return any(g.value for g in polls)

    def _poll_channel(self, ch: AckChannel) -> bool:
        """The queries of one channel, which the round marked busy (released here)."""
        progressed = False
        try:
            ids = list(ch.waiters)
            for i in range(0, len(ids), MAX_ACKS_PER_QUERY):
                chunk = [a for a in ids[i:i + MAX_ACKS_PER_QUERY] if a in ch.waiters]
                if chunk:  # (a refused channel resolved its waiters during this round)
                    progressed |= self._query(ch, chunk)
        except Exception as exc:  # e.g. an unreadable token file: the next round tries again
            log.warning("output %s: ack query failed: %s", self.output.name, type(exc).__name__)
        finally:
            self.release(ch)
        return progressed

    def _query(self, ch: AckChannel, ids: list[int]) -> bool:
        out = self.output
        self.queries += 1
        try:
            resp = out.request("POST", out.ack_url, orjson.dumps({"acks": ids}),
                               {CHANNEL_HEADER: ch.guid, "Content-Type": "application/json"},
                               compress=False)
        except TransportError as exc:
            log.debug("output %s: ack query failed: %s", out.name, exc)
            return False
        answer = parse_hec_answer(resp.body)
        if resp.status == 200 and isinstance(answer.get("acks"), dict):
            if self.disabled_reason:
                log.info("output %s: ack queries are answered again", out.name)
                self.disabled_reason = ""
            # isascii: str.isdigit also takes "²" and other scripts' digits, which int() refuses
            # or reads as another number; the ValueError dropped every true of the answer.
            acked = [int(k) for k, v in answer["acks"].items()
                     if v is True and k.isascii() and k.isdigit()]
            asked = set(ids)
            confirmed = False
            for ack_id in acked:
                result = ch.waiters.pop(ack_id, None) if ack_id in asked else None
                if result is not None:
                    result.set(Outcome.delivered())
                    confirmed = True
            self._forget_if_done(ch)
            return confirmed  # a true for an id not asked confirms nothing: no progress
        code = answer.get("code")
        if resp.status == 400 and code == 14:
            self._ack_disabled()
        elif resp.status == 400 and code in (10, 11):
            # HEC does not know the channel: nothing on it can be confirmed any more.
            self.replace_channel(ch.guid)
            self._resolve_all(ch, Outcome.retry(
                "hec: ack channel refused by HEC; re-sending on a new channel"))
        elif resp.status in (401, 403):
            for ack_id in ids:
                result = ch.waiters.pop(ack_id, None)
                if result is not None:
                    result.set(Outcome.retry(f"hec: ack query: HTTP {resp.status} (credentials "
                                             "refused)", auth_failure=True))
            self._forget_if_done(ch)
        elif 400 <= resp.status < 500 and resp.status not in (408, 429) and hec_code(answer) is None:
            self._no_ack_endpoint(ch, resp.status)
        else:  # busy, 5xx, a timeout: keep waiting; the ack timeout bounds it
            log.debug("output %s: ack query: HTTP %s", out.name, resp.status)
        return False

    def _no_ack_endpoint(self, ch: AckChannel, status: int) -> None:
        """A 4xx that is not HEC's answer (no HEC code; Splunk's own "not found" page carries
        ``"code": 404``): a wrong ``ack_path``, or a proxy without the ack route. A real ack endpoint
        answers 200 ``{"acks": ...}``, 400 with a HEC code, or 401/403; waiting would only let every
        batch time out and be sent again, indexed each time. A configuration error like a missing
        ``ackId``: the batches are retried with auth_failure (the breaker opens: the output pauses
        and keeps its data)."""
        reason = (f"hec: the ack endpoint answered HTTP {status} without HEC's answer (a wrong "
                  "`ack_path`, or a proxy without the ack route): acks cannot be read; fix the "
                  "path, or set ack = false")
        if reason != self.disabled_reason:
            log.error("output %s: %s", self.output.name, reason)
        self.disabled_reason = reason
        self._resolve_all(ch, Outcome.retry(reason, auth_failure=True))

    def _ack_disabled(self) -> None:
        """HEC says the token has no indexer acknowledgement (code 14): a configuration error.
        Requests waiting for an ack cannot be confirmed; they go to the DLQ with a clear reason
        (they were accepted, so replaying them after fixing the config may duplicate)."""
        self.disabled_reason = ("hec: ack query answered code 14 'ACK is disabled': indexer "
                                "acknowledgement is off for this token; set ack = false (or enable "
                                "it on the token)")
        log.error("output %s: %s", self.output.name, self.disabled_reason)
        for ch in list(self.known.values()):
            self._resolve_all(ch, Outcome.permanent(self.disabled_reason))


def _decode(body: bytes) -> dict[str, Any]:
    try:
        ev = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return ev if isinstance(ev, dict) else {}


def _epoch(ev: dict[str, Any]) -> bytes:
    """The event's time as HEC epoch seconds with millisecond precision; empty when the event has
    no usable timestamp (the key is then left out and HEC uses the time it received the event)."""
    ts = ev.get("timestamp")
    if not isinstance(ts, str):
        return b""
    try:
        ms = timestamp_to_ms(ts)
    except ValueError:
        return b""
    # Before 1970 too: -1 ms is "-0.001", where divmod's floor gave (-1, 999), "-1.999".
    return (b"-" if ms < 0 else b"") + b"%d.%03d" % divmod(abs(ms), 1000)
