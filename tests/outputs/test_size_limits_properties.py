"""Property-based tests of how batches respect size limits end to end, against docs/outputs.md §2-§3,
docs/outputs/elasticsearch.md and docs/outputs/splunk_hec.md ("Limits", the 413 rows).

Each example runs a real ``Drain`` over a real ``Spool`` (a temporary directory per example) into the
real Elasticsearch or Splunk HEC output, which speaks HTTP on loopback to the real mock
(``outputs/mocks/``) with a body limit drawn for the example: ES ``http.max_content_length``, measured
on the decoded body; HEC ``max_content_length``, measured on the bytes as sent (gzip or not), and HEC's
``maxEventSize``. Events are drawn from tiny to twice the limit, of ASCII, multibyte UTF-8 (2-4 byte
characters), mixed or very compressible padding; ``batch_max_bytes`` is drawn around the limit (from
half of it to five times it, so often above what the destination takes), with ``batch_max_events``,
``concurrency`` and (HEC) indexer acks; each test runs uncompressed and with gzip. Events are
spooled in phases: each phase once the drain caught up with the previous one, so a phase's last
partial batch leaves by age (``batch_max_wait``, drawn) and the cut of every phase is known.

The outputs record each request they make (decoded body, bytes on the wire, answer). Properties:

1. conservation: every event is stored by the destination exactly once, or is in the DLQ exactly once
   (never both), and which one is predicted from the event alone: the DLQ holds exactly the events
   whose own request body is over the limit as the vendor measures it (HEC also: whose envelope is
   over ``maxEventSize``), each with a reason naming the refusal (``413`` / ``code 6``; HEC's excerpt
   names the limit); nothing else is lost; ES never sees a ``create`` of a stored ``_id`` again (no
   conflicts). (Compressed, sizes do not add up: there the DLQ holds the events refused when sent
   alone, each request of exactly the size of that event compressed alone.)
2. cut: the first attempt of every batch is the documented cut of its phase (``batch_max_events``,
   or before the event that would push the sum of encoded bytes past ``batch_max_bytes``; a larger
   event alone), every other request is a bisection half of an earlier request refused with 413 (or,
   HEC, the events after the one a ``code 6`` named), so splitting terminates: at most 3 requests per
   event; within a request the events keep their spool order;
3. limits: a request is refused with 413 exactly when it is over the limit as the vendor measures it,
   and when ``batch_max_bytes`` is within the limit (measured uncompressed) only a single event is
   ever refused; every request body is exactly the concatenation of its events' encoded bytes, the
   same bytes in every request that carried the event (the packed body cut back exactly);
4. accounting: ``stats.delivered`` equals what the destination stored, ``stats.dlq`` the DLQ entries,
   ``stats.batches`` and the ``batch_bytes`` histogram's count the requests made, and its sum the sizes
   of those very request bodies (decoded); the requests by status class count each 413 as ``split``;
5. ordered commit: at every cursor commit, every event at or below the committed seq or in a done
   range is already stored by the destination or in the DLQ.

At the end: a deterministic reproduction of the defect found (fails until its fix lands): a DLQ write
refused in the middle of a bisection restarted the whole batch, so events already delivered were sent
and counted again and events already in the DLQ got a second entry.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.config_loader import load_section
from outputs.drain import Drain
from outputs.elasticsearch import BULK_PATH, ElasticsearchOutput, ElasticsearchOutputConfig
from outputs.http import HttpResponse, Payload, gzip_bytes
from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import MockServer
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch
from tests.outputs.drain_kit import fresh_spool, reference_cut, wait_until

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
DS = "logs-clawdstrike.security-default"
TOKEN = "size-limits-hec-token"
ACK_TOKEN = "size-limits-hec-ack-token"
NAME = "out"

#: Padding alphabets: random ASCII (gzip keeps ~4/5 of it: bodies over the limit even compressed),
#: multibyte UTF-8 of 2, 3 and 4 bytes (a few characters: gzip keeps ~1/4), both mixed over a wide
#: range (gzip keeps ~2/3), and one letter (gzip makes any size of it tiny).
ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MULTI = "éßжΩ€中日本語한𝄞😀𐍈ü"
NOISE = "".join(chr(c) for c in range(0x21, 0x7f) if chr(c) not in '"\\') + "".join(
    chr(c) for c in (*range(0xC0, 0x180), *range(0x4E00, 0x4F00), *range(0x1F600, 0x1F650)))
ALPHABETS = {"ascii": ASCII, "multi": MULTI, "noise": NOISE, "flat": "a"}


@pytest.fixture(scope="module", autouse=True)
def quiet_drain_logs() -> Iterator[None]:
    """The DLQ and retry warnings of hundreds of runs are noise here (what they say is asserted)."""
    logging.disable(logging.ERROR)
    yield
    logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def es() -> Iterator[MockServer]:
    with MockServer(ElasticsearchMock()) as server:
        yield server


@pytest.fixture(scope="module")
def hec() -> Iterator[MockServer]:
    app = SplunkHecApp([HecToken(TOKEN), HecToken(ACK_TOKEN, use_ack=True)])
    with MockServer(app) as server:
        yield server


# -------------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Ev:
    pad_bytes: int  # UTF-8 bytes of padding (the last character may take it up to 3 bytes over)
    alphabet: str
    seed: int


@dataclass(frozen=True)
class Scenario:
    vendor: str  # "es" or "hec"
    phases: list[list[Ev]]
    limit: int  # the destination's body limit
    batch_max_bytes: int
    batch_max_events: int
    concurrency: int
    compression: str
    batch_max_wait: float
    ack: bool = False
    #: HEC maxEventSize (None: the mock's 5 MB default, never reached here)
    max_event_size: int | None = None


@st.composite
def scenarios(draw: Any, vendor: str, compression: str) -> Scenario:
    limit = draw(st.sampled_from([800, 1600, 3200]))
    tiny = st.integers(0, 40)
    pad = st.one_of(tiny, tiny, st.integers(limit // 10, limit // 3),
                    st.integers(limit - 350, limit + 100), st.integers(limit, 2 * limit))
    event = st.builds(Ev, pad, st.sampled_from(sorted(ALPHABETS)), st.integers(0, 2**16))
    phases = draw(st.lists(st.lists(event, min_size=1, max_size=8), min_size=1, max_size=3))
    bmb = draw(st.sampled_from([2 * limit, limit, 5 * limit, limit // 2]))
    ack = vendor == "hec" and draw(st.booleans())
    # with acks a code 6 re-sends the accepted prefix too (documented duplicates): not drawn then
    mes = None if vendor == "es" or ack else draw(st.none() | st.integers(limit // 3, limit))
    return Scenario(vendor, phases, limit, bmb, draw(st.integers(1, 6)), draw(st.integers(1, 3)),
                    compression, draw(st.sampled_from([0.0, 0.003])), ack, mes)


def padding(ev: Ev) -> str:
    rng = random.Random(ev.seed)
    chars = ALPHABETS[ev.alphabet]
    out: list[str] = []
    n = 0
    while n < ev.pad_bytes:
        c = rng.choice(chars)
        out.append(c)
        n += len(c.encode())
    return "".join(out)


def make_event(n: int, ev: Ev) -> dict[str, Any]:
    return {"event_id": str(uuid.UUID(int=n + 1)), "event_type": "guard_block",
            "timestamp": "2026-11-26T08:00:00.123Z", "outcome": "failure",
            "decision": {"severity": "high", "allowed": False, "guard": "egress"}, "n": n,
            "pad": padding(ev)}


def append(spool: Spool, start: int, evs: list[Ev]) -> None:
    spool.append(IngestBatch("t", [EncodedEvent(uuid.UUID(int=n + 1).bytes, 1_700_000_000_000 + n,
                                                orjson.dumps(make_event(n, ev)))
                                   for n, ev in enumerate(evs, start)]))


# -------------------------------------------------------------------------------- recording outputs


@dataclass
class Sent:
    """One request as it went out: the body decoded, its length on the wire, the answer."""

    raw: bytes
    wire: int
    status: int
    answer: bytes
    numbers: list[int] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)


def _record(sent: list[Sent], body: bytes | Payload | None, resp: HttpResponse) -> None:
    if isinstance(body, Payload):
        sent.append(Sent(body.raw(), len(body.data), resp.status, resp.body))
    else:
        data = body or b""
        sent.append(Sent(data, len(data), resp.status, resp.body))


class RecordingEs(ElasticsearchOutput):
    """The Elasticsearch output, keeping every ``_bulk`` request it made."""

    def __init__(self, name: str, config: ElasticsearchOutputConfig):
        super().__init__(name, config)
        self.sent: list[Sent] = []

    def _request(self, method: str, path: str, body: bytes | Payload | None = None,
                 headers: dict[str, str] | None = None, **kw: Any) -> HttpResponse:
        resp = super()._request(method, path, body, headers, **kw)
        if path == BULK_PATH:
            _record(self.sent, body, resp)
        return resp


class RecordingHec(SplunkHecOutput):
    """The HEC output, keeping every event POST it made (not the ack queries)."""

    def __init__(self, name: str, config: SplunkHecOutputConfig):
        super().__init__(name, config)
        self.sent: list[Sent] = []

    def request(self, method: str, url: str, body: bytes | Payload | None = None,
                headers: dict[str, str] | None = None, **kw: Any) -> HttpResponse:
        resp = super().request(method, url, body, headers, **kw)
        if url == self.event_url:
            _record(self.sent, body, resp)
        return resp


def split_es(raw: bytes) -> list[tuple[int, bytes]]:
    """(event number, its two NDJSON lines) for each ``create`` of a bulk body."""
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) % 2 == 1, "a bulk body is pairs of lines, newline-terminated"
    out = []
    for k in range(0, len(lines) - 1, 2):
        assert set(orjson.loads(lines[k])) == {"create"}
        out.append((orjson.loads(lines[k + 1])["n"], lines[k] + b"\n" + lines[k + 1] + b"\n"))
    return out


def split_hec(raw: bytes) -> list[tuple[int, bytes]]:
    """(event number, its envelope's bytes) for each envelope of a concatenated HEC body."""
    text = raw.decode()
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while pos < len(text):
        value, end = decoder.raw_decode(text, pos)
        out.append((value["event"]["n"], text[pos:end].encode()))
        pos = end
    return out


# -------------------------------------------------------------------------------- one run


@dataclass
class Run:
    sc: Scenario
    spool: Spool
    server: MockServer
    out: Any
    drain: Drain
    seq_of: dict[int, int] = field(default_factory=dict)  # event number -> spool seq
    dlq_seqs: list[int] = field(default_factory=list)  # every DLQ write that succeeded, in order
    violations: list[str] = field(default_factory=list)
    done: list[tuple[int, int]] = field(default_factory=list)

    def stored(self) -> list[int]:
        """Event numbers the destination holds (with repeats, for HEC)."""
        app = self.server.app
        if self.sc.vendor == "es":
            return [doc["n"] for doc in app.docs(DS).values()]
        return [e["event"]["n"] for e in list(app.events)]


def make_output(sc: Scenario, server: MockServer) -> Any:
    common: dict[str, Any] = dict(batch_max_events=sc.batch_max_events, batch_max_bytes=sc.batch_max_bytes,
                                  batch_max_wait=sc.batch_max_wait, concurrency=sc.concurrency,
                                  compression=sc.compression, retry_initial=0.001, retry_max=0.005,
                                  healthcheck_interval=0, breaker_failures=0)
    if sc.vendor == "es":
        es_cfg = ElasticsearchOutputConfig(hosts=[server.url], **common)
        es_cfg.validate()
        return RecordingEs(NAME, es_cfg)
    table = {"type": "splunk_hec", "endpoint": server.url, "token": ACK_TOKEN if sc.ack else TOKEN,
             "ack": sc.ack, "ack_poll_interval": "5ms", "ack_poll_max_interval": "20ms", **common}
    return RecordingHec(NAME, load_section(SplunkHecOutputConfig, table, "test [outputs.out]"))


def prepare(sc: Scenario, server: MockServer, spool: Spool) -> Run:
    server.reset()
    app = server.app
    app.max_body = sc.limit
    if sc.vendor == "hec":
        app.max_event_size = sc.max_event_size if sc.max_event_size is not None else 5 * 1024 * 1024
    out = make_output(sc, server)
    run = Run(sc, spool, server, out, Drain(out, spool, spool.reader()))
    real_dlq_add, real_commit = spool.dlq_add, spool.commit_cursor

    def dlq_add(output: str, rows: Any, *a: Any, **kw: Any) -> Any:
        result = real_dlq_add(output, rows, *a, **kw)
        run.dlq_seqs.extend(r.seq for r in rows)
        return result

    def commit_cursor(output: str, seq: int, generation: int, done: Any = None) -> bool:
        # An assertion here would be taken for a failed commit (logged and retried): recorded instead.
        if done is not None:
            run.done = [tuple(r) for r in done]
        settled = {run.seq_of[n] for n in run.stored()} | set(run.dlq_seqs)
        covered = {s for s in run.seq_of.values()
                   if s <= seq or any(lo <= s <= hi for lo, hi in run.done)}
        if not covered <= settled:
            run.violations.append(f"commit to {seq} (done {run.done}) passes unsettled seqs "
                                  f"{sorted(covered - settled)}")
        return real_commit(output, seq, generation, done)

    spool.dlq_add = dlq_add  # type: ignore[method-assign]
    spool.commit_cursor = commit_cursor  # type: ignore[method-assign]
    return run


def execute(run: Run) -> None:
    """Spool the phases one by one (each once the drain caught up with the one before) and run the
    drain until the cursor passed the last event."""
    spool, drain = run.spool, run.drain
    g = gevent.spawn(drain.run)
    try:
        n = 0
        for phase in run.sc.phases:
            append(spool, n, phase)
            for k in range(n, n + len(phase)):
                run.seq_of[k] = spool.last_seq() - (n + len(phase) - 1 - k)
            n += len(phase)
            last = spool.last_seq()
            wait_until(lambda last=last: g.dead or (spool.get_cursor(NAME) or (-1, 0))[0] == last, 30)
            assert not g.dead, f"the drain died: {g.exception!r}"
    finally:
        drain.stop()
        g.join(timeout=10)
    assert g.dead


# -------------------------------------------------------------------------------- the oracle


def measured(sc: Scenario, raw: bytes, wire: int) -> int:
    """A request's size as the vendor measures it against its limit."""
    return len(raw) if sc.vendor == "es" else wire


def single_measure(sc: Scenario, data: bytes) -> int:
    """The size the vendor measures for a request of this event alone."""
    if sc.vendor == "es" or sc.compression == "none":
        return len(data)
    return len(gzip_bytes([data], 1))


def check(run: Run) -> None:
    sc, out, drain, spool = run.sc, run.out, run.drain, run.spool
    split = split_es if sc.vendor == "es" else split_hec
    n_events = sum(len(p) for p in sc.phases)
    sent: list[Sent] = out.sent

    # 3. each request is its events' bytes joined, the same bytes for an event in every request
    data: dict[int, bytes] = {}
    for s in sent:
        parts = split(s.raw)
        s.numbers = [n for n, _ in parts]
        s.chunks = [c for _, c in parts]
        assert b"".join(s.chunks) == s.raw
        assert s.numbers == sorted(s.numbers) and len(set(s.numbers)) == len(s.numbers), s.numbers
        for n, chunk in parts:
            assert data.setdefault(n, chunk) == chunk, f"event {n} sent with different bytes"
    assert sorted(data) == list(range(n_events)), "every event was sent"

    # 1. conservation, against a prediction from each event alone. Sizes add up where the vendor
    # measures uncompressed bytes, so an event over the limit alone is over it in any request and
    # goes to the DLQ. Compressed (HEC gzip), what decides is its request alone: of the same size as
    # compressing it alone (an event delivered in a batch that fit was never refused).
    if sc.vendor == "es" or sc.compression == "none":
        too_big = {n for n, d in data.items() if single_measure(sc, d) > sc.limit}
    else:
        alone = {s.numbers[0]: s for s in sent if len(s.numbers) == 1}
        assert all(s.wire == single_measure(sc, data[n]) for n, s in alone.items())
        too_big = {n for n, s in alone.items() if s.status == 413}
    bad_event = {n for n, d in data.items() if sc.max_event_size is not None
                 and len(d) > sc.max_event_size} - too_big
    stored = run.stored()
    assert len(stored) == len(set(stored)), f"stored twice: {sorted(stored)}"
    entries = spool.dlq_list(NAME, limit=1000)
    dlq_numbers = [orjson.loads(e.body)["n"] for e in entries]
    assert len(dlq_numbers) == len(set(dlq_numbers)), f"DLQ'd twice: {sorted(dlq_numbers)}"
    assert set(dlq_numbers) == too_big | bad_event
    assert set(stored) == set(range(n_events)) - too_big - bad_event
    for e, n in zip(entries, dlq_numbers, strict=True):
        assert e.seq == run.seq_of[n]
        if n in too_big:  # HEC's 413 names the limit (the mock's text): kept as the DLQ excerpt
            assert "413" in e.reason, e.reason
            if sc.vendor == "hec":
                assert f"maximum is {sc.limit}".encode() in (e.response_excerpt or b""), e
        else:
            assert "code 6" in e.reason, e.reason
    if sc.vendor == "es":
        stats = run.server.app.stats()
        assert stats["conflicts"] == 0 and stats["spec_violations"] == []

    # 2. the cut: first attempts are the documented cut, the rest bisection halves or HEC suffixes
    expected_roots: list[list[int]] = []
    n = 0
    for phase in sc.phases:
        numbers = list(range(n, n + len(phase)))
        n += len(phase)
        cut = reference_cut([len(data[k]) for k in numbers], sc.batch_max_events, sc.batch_max_bytes)
        expected_roots += [[numbers[i] for i in b] for b in cut]
    children: list[list[int]] = []  # the parts the answers so far ask to send
    roots: list[list[int]] = []
    for s in sent:
        if s.numbers in children:
            children.remove(s.numbers)
        else:
            roots.append(s.numbers)
        if s.status == 413 and len(s.numbers) > 1:
            mid = len(s.numbers) // 2
            children += [s.numbers[:mid], s.numbers[mid:]]
        elif s.status == 400:
            bad = orjson.loads(s.answer)["invalid-event-number"]
            if s.numbers[bad + 1:]:
                children.append(s.numbers[bad + 1:])
    assert sorted(roots) == sorted(expected_roots)
    assert children == [], f"parts never sent: {children}"
    assert len(sent) <= 3 * n_events

    # 3. limits as the vendor measures them
    for s in sent:
        over = measured(sc, s.raw, s.wire) > sc.limit
        assert (s.status == 413) == over, (s.status, measured(sc, s.raw, s.wire), sc.limit)
        assert s.status in (200, 413, 400)
        if s.status == 400:
            assert len(s.chunks[orjson.loads(s.answer)["invalid-event-number"]]) > sc.max_event_size
        if len(s.numbers) > 1:
            assert len(s.raw) <= sc.batch_max_bytes and len(s.numbers) <= sc.batch_max_events
    if sc.batch_max_bytes <= sc.limit and (sc.vendor == "es" or sc.compression == "none"):
        assert all(len(s.numbers) == 1 for s in sent if s.status == 413)

    # 4. accounting
    st_ = drain.stats
    assert st_.delivered == len(stored)
    assert st_.dlq == len(entries)
    assert st_.batches == len(sent) == st_.batch_bytes.count
    assert st_.batch_bytes.sum == sum(len(s.raw) for s in sent)
    # requests by status class (the ..._requests_total metric): a 413 is "split", HEC's 400 code 6
    # "permanent"; with acks the ack queries are "ok" requests too
    assert st_.requests.get("split", 0) == sum(s.status == 413 for s in sent)
    assert st_.requests.get("permanent", 0) == sum(s.status == 400 for s in sent)
    ok = sum(s.status == 200 for s in sent)
    assert st_.requests.get("ok", 0) >= ok if sc.ack else st_.requests.get("ok", 0) == ok
    assert set(st_.requests) <= {"ok", "split", "permanent"}, st_.requests

    # 5. ordered commit
    assert run.violations == []
    assert (spool.get_cursor(NAME) or (-1, 0))[0] == spool.last_seq()


def run_scenario(sc: Scenario, server: MockServer) -> None:
    with fresh_spool() as spool:
        run = prepare(sc, server, spool)
        execute(run)
        check(run)
        # what the examples exercised (pytest --hypothesis-show-statistics)
        sent: list[Sent] = run.out.sent
        event(f"413 on a batch of several: {any(s.status == 413 and len(s.numbers) > 1 for s in sent)}")
        event(f"events in the DLQ: {bool(run.drain.stats.dlq)}")
        event(f"batch_max_bytes above the limit: {sc.batch_max_bytes > sc.limit}")
        event(f"phases: {len(sc.phases)}")


# -------------------------------------------------------------------------------- properties


@pytest.mark.parametrize("compression", ["none", "gzip"])
@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_elasticsearch_batches_respect_the_body_limit_end_to_end(es: MockServer, compression: str,
                                                                 data: st.DataObject) -> None:
    """ES ``http.max_content_length`` (decoded body): properties 1-5 of the module docstring."""
    run_scenario(data.draw(scenarios("es", compression)), es)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_splunk_hec_batches_respect_the_body_limit_end_to_end(hec: MockServer, compression: str,
                                                              data: st.DataObject) -> None:
    """HEC ``max_content_length`` (bytes as sent, compressed or not) and ``maxEventSize``: 1-5."""
    run_scenario(data.draw(scenarios("hec", compression)), hec)


# -------------------------------------------------------------------------------- defects found


def test_a_dlq_write_refused_mid_bisection_resumes_the_bisection_not_the_whole_batch(es: MockServer
                                                                                      ) -> None:
    """A batch of [big, small, big, small] against a limit only the small ones fit: 413, halves, 413,
    quarters. The first big one is stored in the DLQ and the first small one delivered; then the
    spool refuses the DLQ write of the second big one (the CLI holding the lock, a full disk).
    ``_deliver_guarded`` retries, as documented, but ``_deliver_items`` restarted from the whole
    batch: the first small event was sent again (ES answered 409) and counted delivered twice, and the
    first big one got a second DLQ entry. It must resume where it stopped: each event settled once."""
    sc = Scenario("es", [[Ev(2000, "ascii", 1), Ev(0, "ascii", 2), Ev(2000, "ascii", 3),
                          Ev(0, "ascii", 4)]], limit=1200, batch_max_bytes=100_000, batch_max_events=4,
                  concurrency=1, compression="gzip", batch_max_wait=0.0)
    with fresh_spool() as spool:
        run = prepare(sc, es, spool)
        recording_dlq_add, refused = spool.dlq_add, []

        def refuse_the_second(*a: Any, **kw: Any) -> Any:
            if len(refused) == 1:
                refused.append("refused")
                raise OSError("disk full")
            refused.append("stored")
            return recording_dlq_add(*a, **kw)

        spool.dlq_add = refuse_the_second  # type: ignore[method-assign]
        execute(run)
        assert refused[:2] == ["stored", "refused"]
        dlq = sorted(e.seq for e in spool.dlq_list(NAME))
        assert dlq == [1, 3], f"DLQ entries by seq: {dlq}"
        assert es.app.stats()["conflicts"] == 0, "a delivered event was sent again"
        assert run.drain.stats.delivered == es.app.count(DS) == 2
        assert run.drain.stats.dlq == 2
