"""Property-based tests of the vendor mocks (outputs/mocks/) against the contracts they claim to follow:
"Mocks must behave like the real service, including its errors, limits and partial failures".

Contracts: ../shared/reference/delivery-peers.md §4.1 (HEC) and §4.2 (``_bulk``), docs/outputs/
splunk_hec.md "The mock", docs/outputs/elasticsearch.md "Testing against the mock", the ``_bulk``
spec in ../shared/vendor-specs/elasticsearch, and the docstrings of outputs/mocks/*.py.

1. HEC requests (through a real ``MockServer``): any method, path, credential (Splunk, Basic, Bearer,
   query string, unknown, disabled), channel, encoding (none, gzip, corrupt gzip, unsupported), body
   at, below or above ``max_content_length`` on the wire, and a batch of concatenated events of every
   kind HEC refuses (no ``event``, blank event, bad ``time``, unknown index, nested indexed fields,
   not an object, not JSON), with scheduled ``code_faults``: the answer is the documented HTTP status
   and HEC code (the code table's pairing), names the first bad event with ``invalid-event-number``,
   is never a mock error, and the mock stores exactly the events before the first bad one.
2. HEC indexer acknowledgement (a state machine on a fake clock against a model): ackIds count from
   0 per channel, an ack turns true when its delay has passed (``ack_delay``, ``ack_delay`` faults,
   negative = lost) and is reported true once, unknown ids and channels answer false, idle channels
   are removed after ``max_idle_time``, ``lose_acks`` and ``restart`` drop what they say.
3. ``_bulk`` (the Elasticsearch mock with its vendor-spec check on): random NDJSON of create / index /
   update / delete on data streams and classic indices with duplicate and absent ``_id`` values, the
   index in the action or the path: one result per action in order, 409 on a duplicate create,
   data streams take only ``create`` (and refuse a document without a valid ``@timestamp``), mapping
   conflicts are 400, ``errors`` is true iff an item failed, versions and sequence numbers grow, the
   stored documents equal the model's, and no spec violation is recorded; a body without its final
   newline is a 400 that changes nothing; through the server, a decoded body over
   ``http.max_content_length`` is a 413 with an empty body that stores nothing.
4. Fault schedules (``FaultSchedule`` alone, and through the server): each fault fires for exactly
   ``count`` matching requests after letting ``after`` through, in order, only for its kinds and path
   prefix; through the server a ``status`` fault answers its status (HEC's code for it, Retry-After),
   a ``reset`` drops the connection, and only unfaulted requests reach the app.

At the end: deterministic reproductions of the defects found on the way (each fails until its mock is
fixed; the docstrings cite the behaviour of the real service).
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from outputs.mocks import splunk_hec as hec_mod
from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import SERVER_FAULT_KINDS, Fault, FaultSchedule, Headers, MockRequest, MockServer
from outputs.mocks.splunk_hec import FAULT_CODES, HEC_CODES, HecToken, SplunkHecApp

SETTINGS = settings(deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ==================================================================================== Splunk HEC

TOKEN = "11111111-2222-3333-4444-555555555555"
DISABLED = "22222222-2222-3333-4444-555555555555"
ACK_TOKEN = "33333333-2222-3333-4444-555555555555"
LIMIT = 1500  # max_content_length: small, so bodies around it are cheap
EVENT_PATHS = ("/services/collector", "/services/collector/event", "/services/collector/event/1.0",
               "/services/collector/event/")
GUID = "7f4b4a0e-4c1d-4a55-9b0b-1d8e1f1a2b3c"

#: One event of a batch: (its JSON text, the HEC code that refuses it or 0, the event stored if valid)
EventSpec = tuple[str, int, "dict[str, Any] | None"]

_word = st.text(alphabet="abcxyz é", min_size=1, max_size=8).filter(lambda s: s.strip() != "")
_scalar = st.one_of(st.integers(-5, 5), _word, st.booleans(), st.floats(allow_nan=False,
                                                                         allow_infinity=False))
_valid_value = st.one_of(_word, st.integers(), st.booleans(), st.dictionaries(_word, _scalar, max_size=3),
                         st.lists(_scalar, max_size=3))


@st.composite
def _valid_event(draw: st.DrawFn) -> EventSpec:
    item: dict[str, Any] = {"event": draw(_valid_value)}
    if draw(st.booleans()):
        item["time"] = draw(st.one_of(st.integers(1_600_000_000, 1_800_000_000),
                                      st.floats(1.6e9, 1.8e9)))
    if draw(st.booleans()):
        item["index"] = draw(st.sampled_from(["main", "security"]))
    if draw(st.booleans()):
        item["fields"] = draw(st.dictionaries(_word, st.one_of(_scalar, st.lists(_scalar, max_size=2)),
                                              max_size=3))
    if draw(st.booleans()):
        item["sourcetype"] = "clawd"
    stored = dict(item)
    stored.setdefault("index", "main")  # the token's default index
    return json.dumps(item, ensure_ascii=draw(st.booleans())), 0, stored


#: What HEC refuses, and the code it answers (the mock's module docstring; delivery-peers.md §4.1).
_BAD_EVENTS: list[tuple[str, int]] = [
    ('{"sourcetype":"x"}', 12), ('{"time":1700000000}', 12),
    ('{"event":null}', 13), ('{"event":""}', 13), ('{"event":"  \\t "}', 13),
    ('{"event":"x","time":"yesterday"}', 6), ('{"event":"x","time":[1]}', 6),
    ('{"event":"x","index":"nope"}', 7), ('{"event":"x","index":5}', 7),
    ('{"event":"x","fields":{"a":{"b":1}}}', 15), ('{"event":"x","fields":"flat"}', 15),
    ('["event"]', 6), ("42", 6), ('"a string"', 6), ("null", 6),
    ('{"event": "x"', 6), ("not json", 6),
]
_bad_event = st.sampled_from(_BAD_EVENTS).map(lambda t: (t[0], t[1], None))


@dataclass
class HecCall:
    """One request to the HEC mock, and what the oracle needs to know about it."""

    method: str
    path: str
    auth: str  # splunk | basic | bearer | unknown | disabled | none | query | empty_splunk
    channel: str  # none | guid | bad
    encoding: str  # none | gzip | truncated | garbage | deflate
    events: list[EventSpec]
    separator: str
    pad_to: int | None  # pad the plain body to this many bytes with one more valid event

    def body(self) -> bytes:
        text = self.separator.join(e[0] for e in self.events)
        if self.pad_to is not None:
            pad = '{"event":"%s"}'
            base = len(text.encode()) + len(self.separator) + len(pad % "")
            fill = max(1, self.pad_to - base)
            text = (text + self.separator if self.events else "") + pad % ("p" * fill)
        return text.encode()

    def all_events(self) -> list[EventSpec]:
        if self.pad_to is None:
            return self.events
        raw = self.body()
        last = raw[raw.rindex(b'{"event":"p'):].decode()
        return [*self.events, (last, 0, {**json.loads(last), "index": "main"})]

    def wire(self) -> tuple[bytes, dict[str, str], dict[str, str]]:
        """(body as sent, headers, query)."""
        raw = self.body()
        headers: dict[str, str] = {}
        query: dict[str, str] = {}
        if self.encoding in ("gzip", "truncated"):
            raw = gzip.compress(raw, mtime=0)
            raw = raw[:-4] if self.encoding == "truncated" else raw
            headers["Content-Encoding"] = "gzip"
        elif self.encoding == "garbage":
            raw, headers["Content-Encoding"] = b"this is no gzip stream", "gzip"
        elif self.encoding == "deflate":
            headers["Content-Encoding"] = "deflate"
        auth = {"splunk": f"Splunk {TOKEN}", "bearer": f"Bearer {TOKEN}",
                "basic": "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode(),
                "unknown": "Splunk 99999999-2222-3333-4444-555555555555",
                "disabled": f"Splunk {DISABLED}", "empty_splunk": "Splunk"}.get(self.auth)
        if auth is not None:
            headers["Authorization"] = auth
        if self.auth == "query":
            query["token"] = TOKEN
        if self.channel != "none":
            headers["X-Splunk-Request-Channel"] = GUID if self.channel == "guid" else "not-a-guid"
        return raw, headers, query


@st.composite
def hec_calls(draw: st.DrawFn) -> HecCall:
    events = draw(st.lists(st.one_of(_valid_event(), _valid_event(), _bad_event), max_size=6))
    return HecCall(
        method=draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE"])),
        path=draw(st.sampled_from([*EVENT_PATHS, *EVENT_PATHS, "/services/collector/nope"])),
        auth=draw(st.sampled_from(["splunk"] * 4 + ["basic", "bearer", "unknown", "disabled", "none",
                                                     "query", "empty_splunk"])),
        channel=draw(st.sampled_from(["none", "none", "guid", "bad"])),
        encoding=draw(st.sampled_from(["none", "none", "gzip", "gzip", "truncated", "garbage",
                                       "deflate"])),
        events=events,
        separator=draw(st.sampled_from(["", "\n", " ", "\r\n\t"])),
        pad_to=draw(st.one_of(st.none(), st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1]),
                              st.integers(LIMIT // 2, LIMIT * 2))),
    )


@dataclass
class HecExpected:
    status: int
    code: int | None  # None: no HEC JSON answer (413, 404, 405)
    invalid_event: int | None = None
    stored: list[dict[str, Any]] = field(default_factory=list)


def hec_oracle(call: HecCall, allow_query: bool, code_faults: list[list[int]]) -> HecExpected:
    """The documented answer to ``call`` (and what it stores); consumes ``code_faults`` as HEC does."""
    raw, _, _ = call.wire()
    if len(raw) > LIMIT:  # max_content_length applies to the bytes as sent (module docstring)
        return HecExpected(413, None)
    if call.path.rstrip("/") not in hec_mod.EVENT_PATHS:
        return HecExpected(404, None)
    if call.method != "POST":
        return HecExpected(405, None)
    auth_code = {"bearer": 3, "empty_splunk": 3, "unknown": 4, "disabled": 1, "none": 2,
                 "query": 0 if allow_query else 16}.get(call.auth, 0)
    if auth_code:
        return HecExpected(HEC_CODES[auth_code][0], auth_code)
    if call.channel == "bad":
        return HecExpected(400, 11)
    if call.encoding in ("truncated", "garbage", "deflate"):
        return HecExpected(400, 6)
    if not call.body().strip():
        return HecExpected(400, 5)
    success, busy_after = 0, None
    if code_faults:
        code, _, after = code_faults[0]
        code_faults[0][1] -= 1
        if code_faults[0][1] <= 0:
            code_faults.pop(0)
        if code in (24, 25):
            success = code
        elif code == 9:
            busy_after = after
        else:
            return HecExpected(HEC_CODES[code][0], code)
    stored: list[dict[str, Any]] = []
    for n, (_, bad, event) in enumerate(call.all_events()):
        if busy_after is not None and n == busy_after:
            return HecExpected(503, 9, n, stored)
        if bad:
            return HecExpected(HEC_CODES[bad][0], bad, n, stored)
        assert event is not None
        stored.append(event)
    if busy_after is not None:
        return HecExpected(503, 9, len(stored), stored)
    return HecExpected(HEC_CODES[success][0], success, None, stored)


@pytest.fixture(scope="module")
def hec_server() -> Iterator[tuple[SplunkHecApp, MockServer]]:
    app = SplunkHecApp([HecToken(TOKEN), HecToken(DISABLED, enabled=False),
                        HecToken(ACK_TOKEN, use_ack=True)],
                       indexes={"main", "security"}, max_content_length=LIMIT)
    with MockServer(app) as server:
        yield app, server


_code_fault = st.tuples(st.sampled_from([1, 6, 8, 9, 9, 23, 24, 25, 26, 27]), st.integers(1, 2),
                        st.integers(0, 4)).map(list)


@settings(SETTINGS, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(calls=st.lists(hec_calls(), min_size=1, max_size=3), allow_query=st.booleans(),
       code_faults=st.lists(_code_fault, max_size=2))
def test_every_hec_request_gets_the_documented_answer_and_stores_the_valid_prefix(
        hec_server: tuple[SplunkHecApp, MockServer], calls: list[HecCall], allow_query: bool,
        code_faults: list[list[int]]) -> None:
    """Property 1."""
    app, server = hec_server
    server.reset()
    app.allow_query_string_auth = allow_query
    for code, count, after in code_faults:
        app.add_code_fault(code, count=count, after_events=after)
    pending = [list(f) for f in code_faults]
    stored: list[dict[str, Any]] = []
    with requests.Session() as http:
        for call in calls:
            want = hec_oracle(call, allow_query, pending)
            raw, headers, query = call.wire()
            r = http.request(call.method, server.url + call.path, data=raw, headers=headers,
                             params=query)
            assert r.status_code == want.status, (r.status_code, r.text[:300], want)
            stored += want.stored
            if want.status == 413:
                assert r.headers["Content-Type"].startswith("text/plain")
                continue
            body = r.json()
            assert "mock error" not in json.dumps(body)
            if want.code is None:
                continue
            assert body["code"] == want.code and body["text"] == HEC_CODES[want.code][1]
            assert r.status_code == HEC_CODES[want.code][0]  # the code table's pairing, always
            assert body.get("invalid-event-number") == want.invalid_event
            assert "ackId" not in body  # the token has no indexer acknowledgement
    assert app.events == stored
    assert app.stats()["events"] == len(stored)
    assert [[f.code, f.count, f.after_events] for f in app.code_faults] == pending


# ---------------------------------------------------------------- HEC indexer acknowledgement machine

CHANNELS = [str(uuid.UUID(int=i + 1)) for i in range(3)]


class FakeTime:
    """Stands in for the ``time`` module inside outputs.mocks.splunk_hec (only ``monotonic`` is used)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class MChannel:
    next_ack: int = 0
    last_used: float = 0.0
    pending: dict[int, float | None] = field(default_factory=dict)  # ackId -> ready at (None: lost)
    requests: dict[int, int] = field(default_factory=dict)


class HecAckMachine(RuleBasedStateMachine):
    """Property 2: indexer acknowledgement against a model of the documented protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeTime()
        self._real_time = hec_mod.time
        hec_mod.time = self.clock  # type: ignore[assignment]
        self.app = SplunkHecApp([HecToken(ACK_TOKEN, use_ack=True)])
        self.channels: dict[str, MChannel] = {}
        self.events: list[tuple[int, dict[str, Any]]] = []  # (request id, event)
        self.faults: list[list[float]] = []  # [delay, count, after] of scheduled ack_delay faults
        self.delay = 0.0
        self.request_id = 0

    def teardown(self) -> None:
        hec_mod.time = self._real_time  # type: ignore[assignment]

    def _call(self, path: str, channel: str, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = Headers([("Authorization", f"Splunk {ACK_TOKEN}"),
                           ("X-Splunk-Request-Channel", channel)])
        resp = self.app.handle(MockRequest("POST", path, {}, headers, body, len(body)))
        return resp.status, json.loads(resp.body)

    def _cleanup(self) -> None:
        """Idle channels go (ackIdleCleanup, maxIdleTime 600 s) whenever the mock looks at them."""
        for guid in [g for g, ch in self.channels.items()
                     if self.clock.now - ch.last_used >= self.app.max_idle_time]:
            del self.channels[guid]

    def _fault_delay(self) -> float:
        for f in self.faults:
            if f[1] == 0:
                continue
            if f[2] > 0:
                f[2] -= 1
                continue
            if f[1] > 0:
                f[1] -= 1
            return f[0]
        return self.delay

    @initialize(delay=st.sampled_from([0.0, 0.0, 2.0, 30.0]))
    def start(self, delay: float) -> None:
        self.delay = self.app.ack_delay = delay

    @rule(channel=st.sampled_from(CHANNELS), n=st.integers(1, 3),
          path=st.sampled_from(sorted(hec_mod.EVENT_PATHS)))
    def post(self, channel: str, n: int, path: str) -> None:
        self.request_id += 1
        events = [{"event": f"r{self.request_id}e{i}"} for i in range(n)]
        status, body = self._call(path, channel, "".join(json.dumps(e) for e in events).encode())
        self._cleanup()
        ch = self.channels.setdefault(channel, MChannel())
        assert (status, body) == (200, {"text": "Success", "code": 0, "ackId": ch.next_ack})
        delay = self._fault_delay()
        ch.pending[ch.next_ack] = None if delay < 0 else self.clock.now + delay
        ch.requests[ch.next_ack] = self.request_id
        ch.next_ack += 1
        ch.last_used = self.clock.now
        self.events += [(self.request_id, {**e, "index": "main"}) for e in events]

    @rule(channel=st.sampled_from(CHANNELS), data=st.data())
    def query(self, channel: str, data: st.DataObject) -> None:
        known = sorted(self.channels[channel].pending) if channel in self.channels else []
        ids = data.draw(st.lists(st.sampled_from([*known, 0, 1, 7, 1000]), unique=True, max_size=5))
        status, body = self._call("/services/collector/ack", channel, json.dumps({"acks": ids}).encode())
        self._cleanup()
        ch = self.channels.get(channel)
        want = {}
        for i in ids:
            ready = ch.pending.get(i) if ch is not None else None
            want[str(i)] = ready is not None and ready <= self.clock.now
            if want[str(i)] and ch is not None:
                del ch.pending[i]  # reported true once, then forgotten
        if ch is not None:
            ch.last_used = self.clock.now
        assert (status, body) == (200, {"acks": want})

    @rule(dt=st.sampled_from([0.5, 1.0, 2.0, 30.0, 599.0, 600.0]))
    def tick(self, dt: float) -> None:
        self.clock.now += dt

    @rule(delay=st.sampled_from([-1.0, 0.0, 5.0]), count=st.sampled_from([-1, 1, 2]),
          after=st.integers(0, 2))
    def schedule_ack_delay(self, delay: float, count: int, after: int) -> None:
        self.app.faults.add(Fault("ack_delay", delay=delay, count=count, after=after))
        self.faults.append([delay, count, after])

    @precondition(lambda self: self.channels)
    @rule(drop=st.booleans())
    def lose_acks(self, drop: bool) -> None:
        lost = {ch.requests.get(a, -1) for ch in self.channels.values() for a in ch.pending}
        n = sum(len(ch.pending) for ch in self.channels.values())
        for ch in self.channels.values():
            ch.pending = dict.fromkeys(ch.pending)
        if drop:
            self.events = [(r, e) for r, e in self.events if r not in lost]
        assert self.app.lose_acks(drop_events=drop) == n

    @rule()
    def restart(self) -> None:
        lost = {ch.requests[a] for ch in self.channels.values() for a, ready in ch.pending.items()
                if ready is None or ready > self.clock.now}
        self.events = [(r, e) for r, e in self.events if r not in lost]
        self.channels.clear()
        assert self.app.restart() == len(lost)

    @invariant()
    def agrees(self) -> None:
        stats = self.app.stats()
        self._cleanup()
        assert self.app.events == [e for _, e in self.events]
        assert stats["channels"] == len(self.channels)
        assert stats["acks_pending"] == sum(1 for ch in self.channels.values()
                                            for v in ch.pending.values() if v is not None)


HecAckMachine.TestCase.settings = settings(SETTINGS, max_examples=40, stateful_step_count=30)
TestHecAckMachine = HecAckMachine.TestCase

# ==================================================================================== Elasticsearch

DATA_STREAMS = ("logs-app-default", "logs-web-prod")
CLASSIC = ("idx-a", "idx-b")
IDS = ("1", "2", "3")
TS_OK = ("2026-11-26T08:00:00.123Z", "2026-11-26", 1_700_000_000_000)
ND = [("Content-Type", "application/x-ndjson")]


@dataclass
class Action:
    kind: str
    target: str
    doc_id: str | None
    source: dict[str, Any] | None  # None for delete
    in_path: bool = False  # the index comes from the path, not the action line

    def lines(self) -> list[bytes]:
        meta: dict[str, Any] = {} if self.in_path else {"_index": self.target}
        if self.doc_id is not None:
            meta["_id"] = self.doc_id
        out = [json.dumps({self.kind: meta}).encode()]
        if self.source is not None:
            out.append(json.dumps(self.source).encode())
        return out


_n = st.one_of(st.none(), st.integers(0, 5), st.just("x"))


@st.composite
def actions(draw: st.DrawFn, path_target: str | None) -> Action:
    kind = draw(st.sampled_from(["create", "create", "create", "index", "update", "delete"]))
    in_path = path_target is not None and draw(st.booleans())
    target = path_target if in_path else draw(st.sampled_from([*DATA_STREAMS, *CLASSIC]))
    assert target is not None
    doc_id = draw(st.sampled_from(IDS)) if kind in ("update", "delete") else draw(
        st.one_of(st.sampled_from(IDS), st.none()))
    n = draw(_n)
    if kind == "delete":
        return Action(kind, target, doc_id, None, in_path)
    if kind == "update":
        doc: dict[str, Any] = {"msg": "u"} if n is None else {"msg": "u", "n": n}
        return Action(kind, target, doc_id, {"doc": doc, **({"doc_as_upsert": True} if draw(
            st.booleans()) else {})}, in_path)
    source: dict[str, Any] = {"msg": "m"}
    if target in DATA_STREAMS:
        ts = draw(st.sampled_from([*TS_OK, *TS_OK, "missing", None, "yesterday"]))
    else:  # no undated strings: Elasticsearch's date detection is not the mock's (a string is a keyword)
        ts = draw(st.sampled_from([TS_OK[0], "missing"]))
    if ts != "missing":
        source["@timestamp"] = ts
    if n is not None:
        source["n"] = n
    return Action(kind, target, doc_id, source, in_path)


@st.composite
def bulk_requests(draw: st.DrawFn) -> tuple[str | None, list[Action], str]:
    path_target = draw(st.one_of(st.none(), st.sampled_from([*DATA_STREAMS, *CLASSIC])))
    acts = draw(st.lists(actions(path_target), min_size=1, max_size=8))
    framing = draw(st.sampled_from(["lf", "lf", "lf", "crlf", "no_final_newline"]))
    return path_target, acts, framing


@dataclass
class EsModel:
    """What Elasticsearch holds: per target (data stream or index) its documents and the type the
    field ``n`` was mapped to; which classic indices exist."""

    docs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    n_type: dict[str, str] = field(default_factory=dict)
    indices: set[str] = field(default_factory=set)
    versions: dict[tuple[str, str], int] = field(default_factory=dict)  # last reported, no delete since
    seq_no: dict[str, int] = field(default_factory=dict)  # concrete index -> last reported _seq_no

    def fits(self, target: str, source: dict[str, Any]) -> bool:
        n = source.get("n")
        ts = source.get("@timestamp")
        if target in DATA_STREAMS and ts not in TS_OK:
            return False  # a date field (docs/outputs/elasticsearch.md): "yesterday" does not parse
        return n is None or self.n_type.get(target) != "long" or isinstance(n, int)

    def store(self, target: str, doc_id: str, source: dict[str, Any]) -> None:
        self.docs.setdefault(target, {})[doc_id] = source
        n = source.get("n")
        if n is not None:
            self.n_type.setdefault(target, "long" if isinstance(n, int) else "keyword")

    def duplicate_create(self, a: Action) -> tuple[set[int], str | None, str | None]:
        """Elasticsearch parses the document before the engine finds the conflict
        (IndexShard.applyIndexOperation: prepareIndex, then Engine.index): a document that does not
        map is a 400, one that maps a 409 whose dynamic mapping update stays."""
        assert a.source is not None
        if not self.fits(a.target, a.source):
            return {400}, "document_parsing_exception", None
        n = a.source.get("n")
        if n is not None:
            self.n_type.setdefault(a.target, "long" if isinstance(n, int) else "keyword")
        return {409}, "version_conflict_engine_exception", None

    def expect(self, a: Action) -> tuple[set[int], str | None, str | None]:
        """({acceptable statuses}, error type or None for a success, result for a success); applies
        the action to the model when it succeeds (the caller fixes up auto ids)."""
        docs = self.docs.setdefault(a.target, {})
        if a.target in DATA_STREAMS:
            if a.kind == "delete":
                return {400, 404}, "*", None  # refused: a data stream takes no delete by _id
            if a.kind != "create":
                return {400}, "illegal_argument_exception", None
            assert a.source is not None
            if a.source.get("@timestamp") is None:  # missing or null: no value
                return {400}, "document_parsing_exception", None
            if a.doc_id in docs:
                return self.duplicate_create(a)
            if not self.fits(a.target, a.source):
                return {400}, "document_parsing_exception", None
            return {201}, None, "created"
        exists = a.target in self.indices
        if a.kind == "delete":
            if not exists:
                return {404}, "index_not_found_exception", None
            if a.doc_id in docs:
                return {200}, None, "deleted"
            return {404}, None, "not_found"
        if a.kind == "update":
            assert a.source is not None and a.doc_id is not None
            if not exists:
                return {404}, "*", None  # ES auto-creates the index first: document_missing there
            if a.doc_id not in docs:
                if not a.source.get("doc_as_upsert"):
                    return {404}, "document_missing_exception", None
                merged = dict(a.source["doc"])
                return ({201}, None, "created") if self.fits(a.target, merged) else (
                    {400}, "document_parsing_exception", None)
            merged = {**docs[a.doc_id], **a.source["doc"]}
            return ({200}, None, "updated") if self.fits(a.target, merged) else (
                {400}, "document_parsing_exception", None)
        assert a.source is not None
        self.indices.add(a.target)  # auto-created by the write
        if a.kind == "create" and a.doc_id in docs:
            return self.duplicate_create(a)
        if not self.fits(a.target, a.source):
            return {400}, "document_parsing_exception", None
        return ({200}, None, "updated") if a.doc_id in docs else ({201}, None, "created")

    def apply(self, a: Action, doc_id: str, result: str) -> None:
        if result == "deleted":
            del self.docs[a.target][doc_id]
        elif a.kind == "update":
            assert a.source is not None
            old = self.docs.get(a.target, {}).get(doc_id, {})
            self.store(a.target, doc_id, {**old, **a.source["doc"]})
        elif result in ("created", "updated"):
            assert a.source is not None
            self.store(a.target, doc_id, a.source)


def es_call(app: ElasticsearchMock, path: str, body: bytes) -> tuple[int, Any]:
    resp = app.handle(MockRequest("POST", path, {}, Headers(ND), body, len(body)))
    return resp.status, json.loads(resp.body) if resp.body else None


def check_item(model: EsModel, a: Action, kind: str, item: dict[str, Any]) -> None:
    """One result against the model (and the model moved on by it)."""
    statuses, etype, result = model.expect(a)
    assert kind == a.kind
    assert item["status"] in statuses, (a, item)
    if etype is not None or (item["status"] >= 400 and result is None):
        assert "error" in item, (a, item)
        assert etype in ("*", item["error"]["type"]), (a, item)
        if a.kind == "create" and a.target in DATA_STREAMS and item["status"] == 400:
            assert item.get("failure_store") == "not_enabled"  # no failure store configured
        return
    assert "error" not in item and item["result"] == result, (a, item)
    if a.doc_id is not None:
        assert item["_id"] == a.doc_id
    concrete = item["_index"]
    if a.target in DATA_STREAMS:
        assert concrete.startswith(f".ds-{a.target}-")
    else:
        assert concrete == a.target
    assert item["_primary_term"] == 1
    assert item["_seq_no"] > model.seq_no.get(concrete, -1)  # every write gets the next one
    model.seq_no[concrete] = item["_seq_no"]
    key = (concrete, item["_id"])
    if result == "created" and key not in model.versions and item["_id"] not in model.docs.get(
            a.target, {}):
        assert item["_version"] >= 1
    if result == "updated" and key in model.versions:
        assert item["_version"] == model.versions[key] + 1
    if result == "deleted":
        model.versions.pop(key, None)  # (the delete's own version: a separate test below)
    else:
        model.versions[key] = item["_version"]
    model.apply(a, item["_id"], result)


@settings(SETTINGS, max_examples=120)
@given(reqs=st.lists(bulk_requests(), min_size=1, max_size=4))
def test_bulk_answers_item_by_item_as_elasticsearch_and_stores_exactly_the_successes(
        reqs: list[tuple[str | None, list[Action], str]]) -> None:
    """Property 3 (the mock's full mode: spec check, mappings and sources on)."""
    app = ElasticsearchMock()
    model = EsModel()
    for path_target, acts, framing in reqs:
        lines = [line for a in acts for line in a.lines()]
        eol = b"\r\n" if framing == "crlf" else b"\n"
        body = eol.join(lines) + (b"" if framing == "no_final_newline" else eol)
        path = f"/{path_target}/_bulk" if path_target else "/_bulk"
        before = {t: app.docs(t) for t in (*DATA_STREAMS, *CLASSIC)}
        status, answer = es_call(app, path, body)
        if framing == "no_final_newline":  # the operation's description: the final newline is required
            assert status == 400 and "error" in answer and answer["status"] == 400
            assert {t: app.docs(t) for t in (*DATA_STREAMS, *CLASSIC)} == before
            app.spec_violations.clear()  # a request violation, recorded as documented
            continue
        assert status == 200, answer
        assert len(answer["items"]) == len(acts)  # one result per action, in order
        for a, item in zip(acts, answer["items"], strict=True):
            ((kind, result),) = item.items()
            check_item(model, a, kind, result)
        assert answer["errors"] is any("error" in next(iter(i.values())) for i in answer["items"])
        assert isinstance(answer["took"], int)
        for t in (*DATA_STREAMS, *CLASSIC):
            assert app.docs(t) == model.docs.get(t, {}), t
        assert app.stats()["spec_violations"] == []


@pytest.fixture(scope="module")
def es_server() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock(max_content_length=4000)
    with MockServer(app) as server:
        yield app, server


@settings(SETTINGS, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(size=st.one_of(st.sampled_from([3999, 4000, 4001]), st.integers(200, 9000)),
       gz=st.booleans())
def test_bulk_over_max_content_length_is_413_with_an_empty_body_and_stores_nothing(
        es_server: tuple[ElasticsearchMock, MockServer], size: int, gz: bool) -> None:
    """Property 3, the limit: http.max_content_length applies to the decompressed body."""
    app, server = es_server
    server.reset()
    head = b'{"create":{"_index":"logs-app-default","_id":"1"}}\n{"@timestamp":"2026-11-26","m":"'
    tail = b'"}\n'
    body = head + b"z" * max(0, size - len(head) - len(tail)) + tail
    headers = {"Content-Type": "application/x-ndjson"}
    data = gzip.compress(body) if gz else body
    if gz:
        headers["Content-Encoding"] = "gzip"
    r = requests.post(server.url + "/_bulk", data=data, headers=headers)
    if len(body) > 4000:
        assert r.status_code == 413 and r.content == b""
        assert app.count("logs-app-default") == 0
    else:
        assert r.status_code == 200 and r.json()["errors"] is False
        assert app.count("logs-app-default") == 1
    assert app.stats()["spec_violations"] == []


# ==================================================================================== fault schedules

_fault = st.builds(
    lambda kind, count, after, path, status: Fault(kind, status=status, count=count, after=after,
                                                   path=path),
    kind=st.sampled_from(["status", "status", "reset", "slow", "ack_delay"]),
    count=st.sampled_from([-1, 1, 1, 2, 3]), after=st.integers(0, 3),
    path=st.sampled_from(["", "/a", "/b"]), status=st.sampled_from([429, 500, 503]))
_take = st.tuples(st.sampled_from(["/a", "/a/x", "/b", "/c"]),
                  st.sampled_from([SERVER_FAULT_KINDS, SERVER_FAULT_KINDS, ("ack_delay",)]))


@settings(SETTINGS, max_examples=300)
@given(count=st.sampled_from([-1, 0, 1, 2, 5]), after=st.integers(0, 4), path=st.sampled_from(["", "/a"]),
       paths=st.lists(st.sampled_from(["/a", "/a/b", "/b", "/"]), max_size=15))
def test_one_fault_passes_after_then_fires_count_times_for_its_path(
        count: int, after: int, path: str, paths: list[str]) -> None:
    """Property 4, one fault (the Fault docstring): ``after`` matching requests pass, then ``count``
    are faulted (-1: until cleared), then none; requests to other paths never count."""
    schedule = FaultSchedule()
    fault = Fault("status", count=count, after=after, path=path)
    schedule.add(fault)
    matching = 0
    for p in paths:
        got = schedule.take(p)
        if not p.startswith(path):
            assert got is None
            continue
        matching += 1
        fires = matching > after and (count == -1 or matching <= after + count)
        assert got is (fault if fires else None), (p, matching)


@settings(SETTINGS, max_examples=300)
@given(faults=st.lists(_fault, max_size=5), takes=st.lists(_take, max_size=20))
def test_a_fault_schedule_fires_in_order_and_exactly_as_often_as_configured(
        faults: list[Fault], takes: list[tuple[str, tuple[str, ...]]]) -> None:
    """Property 4, several faults: the first live fault (in the order added) whose kind and path
    match takes the request; a fault still letting requests through counts the ones that reach it;
    each fires exactly ``count`` times."""
    schedule = FaultSchedule()
    model = [[f.kind, f.count, f.after, f.path] for f in faults]
    for f in faults:
        schedule.add(f)
    counts = [f.count for f in faults]
    fired = [0] * len(faults)
    for path, kinds in takes:
        want = None
        for i, m in enumerate(model):
            if m[1] == 0 or m[0] not in kinds or not path.startswith(m[3]):
                continue
            if m[2] > 0:
                m[2] -= 1
                continue
            if m[1] > 0:
                m[1] -= 1
            want = i
            break
        got = schedule.take(path, kinds)
        assert got is (None if want is None else faults[want])
        if want is not None:
            fired[want] += 1
    for f, count, n, m in zip(faults, counts, fired, model, strict=True):
        assert count == -1 or n <= count  # never more often than configured
        assert (f.count, f.after) == (count if count == -1 else count - n, m[2])


HEC_EVENT = "/services/collector/event"


@settings(SETTINGS, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(faults=st.lists(st.builds(
    lambda kind, status, retry_after, count, after, path: Fault(
        kind, status=status, retry_after=retry_after, count=count, after=after, path=path),
    kind=st.sampled_from(["status", "status", "reset", "slow"]),
    status=st.sampled_from([*sorted(FAULT_CODES), 502]), retry_after=st.sampled_from([None, 0, 2.6]),
    count=st.integers(1, 2), after=st.integers(0, 2), path=st.sampled_from(["", HEC_EVENT, "/x"])),
    max_size=4), n=st.integers(1, 8))
def test_server_faults_answer_as_scheduled_and_only_unfaulted_requests_reach_the_app(
        hec_server: tuple[SplunkHecApp, MockServer], faults: list[Fault], n: int) -> None:
    """Property 4 through the server: a ``status`` fault answers its status with HEC's code for it
    and its Retry-After, a ``reset`` drops the connection without an answer, a ``slow`` one answers
    normally; each request is counted once in ``requests_by_status``."""
    app, server = hec_server
    server.reset()
    model = [[f.kind, f.count, f.after, f.path, f.status, f.retry_after] for f in faults]
    server.faults.extend(faults)
    stored: list[dict[str, Any]] = []
    by_status: dict[str, int] = {}
    for i in range(n):
        want = None
        for m in model:
            if m[1] == 0 or not HEC_EVENT.startswith(m[3]):
                continue
            if m[2] > 0:
                m[2] -= 1
                continue
            m[1] -= 1
            want = m
            break
        event = {"event": f"e{i}"}
        try:
            r = requests.post(server.url + HEC_EVENT, data=json.dumps(event),
                              headers={"Authorization": f"Splunk {TOKEN}"})
        except requests.ConnectionError:
            assert want is not None and want[0] == "reset"
            by_status["reset"] = by_status.get("reset", 0) + 1
            continue
        assert want is None or want[0] != "reset"
        by_status[str(r.status_code)] = by_status.get(str(r.status_code), 0) + 1
        if want is None or want[0] == "slow":
            assert (r.status_code, r.json()) == (200, {"text": "Success", "code": 0})
            stored.append({**event, "index": "main"})
            continue
        assert r.status_code == want[4]
        code = FAULT_CODES.get(want[4], want[4])
        assert r.json()["code"] == code
        if want[5] is None:
            assert "Retry-After" not in r.headers
        else:
            assert r.headers["Retry-After"] == str(round(want[5]))
    assert app.events == stored
    assert server.stats()["requests_by_status"] == by_status


# ==================================================================================== defects found


def _hec_ack_app() -> SplunkHecApp:
    return SplunkHecApp([HecToken(ACK_TOKEN, use_ack=True)])


def _hec(app: SplunkHecApp, path: str, body: bytes) -> dict[str, Any]:
    headers = Headers([("Authorization", f"Splunk {ACK_TOKEN}"), ("X-Splunk-Request-Channel", GUID)])
    return json.loads(app.handle(MockRequest("POST", path, {}, headers, body, len(body))).body)


def test_an_ack_id_asked_twice_in_one_query_is_still_reported_true_once() -> None:
    """A ``true`` is reported once and then forgotten (delivery-peers.md §4.1): an id repeated in a
    query must not make the mock forget an indexed request without ever saying so."""
    app = _hec_ack_app()
    assert _hec(app, HEC_EVENT, b'{"event":"a"}')["ackId"] == 0
    assert _hec(app, "/services/collector/ack", b'{"acks":[0,0]}') == {"acks": {"0": True}}
    assert _hec(app, "/services/collector/ack", b'{"acks":[0]}') == {"acks": {"0": False}}


def _bulk(app: ElasticsearchMock, *lines: dict[str, Any]) -> tuple[int, Any]:
    return es_call(app, "/_bulk", b"".join(json.dumps(x).encode() + b"\n" for x in lines))


@pytest.mark.parametrize("kind", ["delete", "update"])
def test_a_delete_or_update_without_an_id_is_refused_not_applied_to_a_document_named_none(
        kind: str) -> None:
    """Elasticsearch validates every action before it runs any: a delete or update without ``_id``
    fails the whole ``_bulk`` with 400 ``action_request_validation_exception`` "id is missing"
    (DeleteRequest / UpdateRequest.validate via BulkRequest.validate)."""
    app = ElasticsearchMock()
    assert _bulk(app, {"index": {"_index": "idx", "_id": "None"}}, {"n": 1})[0] == 200
    lines: list[dict[str, Any]] = [{kind: {"_index": "idx"}}]
    if kind == "update":
        lines.append({"doc": {"n": 2}})
    status, answer = _bulk(app, *lines)
    assert status == 400, answer
    assert answer["error"]["type"] == "action_request_validation_exception"
    assert app.docs("idx") == {"None": {"n": 1}}


def test_an_id_over_512_bytes_fails_the_bulk_request() -> None:
    """"_id is limited to 512 bytes in size and larger values will be rejected" (Elasticsearch
    reference, _id field): IndexRequest.validate, so the whole ``_bulk`` is a 400."""
    app = ElasticsearchMock()
    ok = "é" * 256  # 512 bytes in UTF-8
    assert _bulk(app, {"create": {"_index": "idx", "_id": ok}}, {"n": 1})[1]["errors"] is False
    status, answer = _bulk(app, {"create": {"_index": "idx", "_id": ok + "x"}}, {"n": 1})
    assert status == 400, answer
    assert answer["error"]["type"] == "action_request_validation_exception"
    assert "is too long, must be no longer than 512 bytes but was: 513" in answer["error"]["reason"]
    assert list(app.docs("idx")) == [ok]


def test_an_empty_id_is_refused_per_item() -> None:
    """"if _id is specified it must not be empty" (IndexRequest, an item's 400)."""
    app = ElasticsearchMock()
    status, answer = _bulk(app, {"create": {"_index": "idx", "_id": ""}}, {"n": 1},
                           {"create": {"_index": "idx", "_id": "ok"}}, {"n": 2})
    assert status == 200 and answer["errors"] is True
    first = answer["items"][0]["create"]
    assert first["status"] == 400 and first["error"]["type"] == "illegal_argument_exception"
    assert answer["items"][1]["create"]["status"] == 201
    assert list(app.docs("idx")) == ["ok"]


def test_a_delete_increments_the_version() -> None:
    """"Every write operation executed on a document, deletes included, causes its version to be
    incremented" (Elasticsearch reference, delete API)."""
    app = ElasticsearchMock()
    versions = []
    for line in ({"create": {"_index": "idx", "_id": "a"}}, {"delete": {"_index": "idx", "_id": "a"}},
                 {"create": {"_index": "idx", "_id": "a"}}):
        _, answer = _bulk(app, line, *([] if "delete" in line else [{"n": 1}]))
        versions.append(next(iter(answer["items"][0].values()))["_version"])
    assert versions == [1, 2, 3]


def test_the_bulk_limit_applies_to_the_decompressed_body_not_the_gzip_bytes() -> None:
    """``http.max_content_length`` "applies to the decompressed body" (the mock's docstring, as
    Elasticsearch decompresses before it aggregates): a body within the limit is accepted even when
    its gzip form (18 bytes of framing) is larger than the limit."""
    body = b'{"create":{"_index":"i"}}\n{}\n'
    wire = gzip.compress(body, mtime=0)
    app = ElasticsearchMock(max_content_length=len(body))
    assert len(wire) > len(body)  # the premise
    with MockServer(app) as server:
        r = requests.post(server.url + "/_bulk", data=wire,
                          headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.content
    assert app.count("i") == 1
