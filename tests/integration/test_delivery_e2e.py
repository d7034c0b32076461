"""Delivery to Splunk HEC and Elasticsearch through the real agent process, against the vendor mocks.

Each test writes real-shaped hushd audit lines to a tailed file, runs ``python -m agent run``, and
asserts exact outcomes at the mocks, in ``status --json``, the DLQ CLI and /metrics: what arrived,
how often, and what the agent said about it. Waits use generous timeouts; nothing asserts speed.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from outputs.mocks.server import Fault, MockRequest
from tests.integration.delivery_harness import (
    BULK,
    ES_STREAM,
    HEC_EVENT,
    Arrival,
    DeadPeer,
    DeliveryAgent,
    HeldConnection,
    HungPeer,
    Mock,
    assert_es_spec_clean,
    closed_port,
    dlq_list,
    es_app,
    es_output,
    fault,
    hec_app,
    hec_output,
    metric,
    output_status,
    recording_cli,
    run_cli,
    scrape,
    start_thread_mock,
    status,
    wait_until,
    write_agent_config,
    write_events,
)
from tests.integration.harness import audit_line, line_id, wait_for

pytestmark = pytest.mark.integration

HEC_TOKEN = "6f1d3c1e-2b7a-4c55-9d0e-7a1b2c3d4e5f"
#: Generous: every wait below normally ends within seconds.
WAIT = 120


@pytest.fixture
def hec() -> Iterator[Mock]:
    """An acknowledging HEC mock in this process."""
    mock = start_thread_mock(hec_app([HEC_TOKEN], ack=True), "splunk_hec")
    yield mock
    mock.stop()


@pytest.fixture
def es() -> Iterator[Mock]:
    mock = start_thread_mock(es_app(), "elasticsearch")
    yield mock
    mock.stop()


@pytest.fixture
def agents() -> Iterator[list[DeliveryAgent]]:
    """Agents a test starts; each is stopped (and must exit cleanly) at the end."""
    started: list[DeliveryAgent] = []
    yield started
    codes = [a.stop() for a in started if a.alive()]
    assert codes == [0] * len(codes), f"agent exit codes {codes}"


def _start(agents: list[DeliveryAgent], cfg: Path, tmp: Path, env: dict[str, str] | None = None
           ) -> DeliveryAgent:
    agent = DeliveryAgent(cfg, tmp / "agent.log", env).start()
    agents.append(agent)
    return agent.wait_running(WAIT)


def _es_ids(es: Mock) -> set[str]:
    return set(es.app.docs(ES_STREAM))


def _file_path(i: int) -> str:
    """The ECS ``file.path`` of ``harness.audit_line(i)`` (its hushd ``target``)."""
    return f"/home/agent/project/file-{i}.txt"


# ---------------------------------------------------------------------------------------- 1


def test_fan_out_to_hec_and_elasticsearch(tmp_path: Path, hec: Mock, es: Mock, agents) -> None:
    """One tailed file to both: ES holds every event exactly once (create + _id), and so does HEC
    (no fault, so no re-send) with every ack confirmed; both documents are the configured formats."""
    n = 2000
    cfg = write_agent_config(tmp_path, {
        "splunk": hec_output(hec, HEC_TOKEN, ack=True, ack_poll_interval="200ms",
                             batch_max_events=100),
        "es": es_output(es, batch_max_events=150),
    })
    agent = _start(agents, cfg, tmp_path)
    src = tmp_path / "in" / "audit.jsonl"
    expected = write_events(src, 0, n // 2)
    time.sleep(0.5)  # a second append while the first half is being delivered
    expected += write_events(src, n // 2, n)
    wait_until(lambda: len(_es_ids(es)) >= n and len(set(hec.app.event_ids())) >= n,
               WAIT, "every event in both mocks")
    wait_until(lambda: output_status(cfg, "splunk")["lag_events"] == 0, WAIT, "HEC acks to commit")
    assert agent.stop() == 0

    docs = es.app.docs(ES_STREAM)
    assert set(docs) == set(expected)
    assert es.app.counters["created"] == n  # no _id was created twice
    assert_es_spec_clean(es)
    doc = docs[expected[0]]
    assert doc["ecs"]["version"].startswith("9."), "Elasticsearch receives ECS documents"
    assert doc["event"]["id"] == expected[0] and doc["file"]["path"] == _file_path(0)

    hec_ids = Counter(hec.app.event_ids())
    assert set(hec_ids) == set(expected)
    # Nothing failed here, so nothing was sent twice: at-least-once never had to be more than once.
    assert [i for i, c in hec_ids.items() if c != 1] == []
    assert hec.app.unacked_posts() == []  # every accepted post was acknowledged and committed
    assert {e["sourcetype"] for e in hec.app.events} == {"clawdstrike:security_event"}


# ---------------------------------------------------------------------------------------- 2


def test_sixty_second_outage_recovers_without_loss(tmp_path: Path, es: Mock, agents) -> None:
    """Elasticsearch answers 503 for 30 s, then resets connections for 30 s, while events keep being
    written. Nothing is indexed meanwhile, status and metrics show the failures, and afterwards every
    event is indexed exactly once with nothing in the DLQ."""
    port = closed_port()
    cfg = write_agent_config(tmp_path, {"es": es_output(es, batch_max_events=100)},
                             metrics_port=port)
    _start(agents, cfg, tmp_path)
    src = tmp_path / "in" / "audit.jsonl"
    expected = write_events(src, 0, 100)
    wait_until(lambda: len(_es_ids(es)) == 100, WAIT, "the first 100 events")

    # First match wins: 503 for the first 30 s, then resets until 60 s after this call.
    es.add_faults(fault(status=503, duration=30), fault("reset", duration=60))
    outage_start = time.monotonic()
    errors: list[str] = []
    breakers: set[str] = set()
    indexed_during: set[int] = set()
    i = 100
    while time.monotonic() - outage_start < 56:
        expected += write_events(src, i, i + 25)
        i += 25
        st = output_status(cfg, "es")
        errors.append(st["last_error"] or "")
        breakers.add(st["breaker"])
        count = len(_es_ids(es))
        if time.monotonic() - outage_start < 59:  # read inside the outage (however slow the CLI)
            indexed_during.add(count)
        time.sleep(1)
    assert indexed_during == {100}, "something was indexed during the outage"
    retries = metric(scrape(port), "clawd_agent_output_retries_total", output="es")
    assert retries is not None and retries >= 1
    first_503 = next((k for k, e in enumerate(errors) if "HTTP 503" in e), None)
    assert first_503 is not None, errors[-5:]
    assert any("Connection reset" in e for e in errors[first_503:]), "the reset phase shows its error"
    assert "open" in breakers, breakers

    n = len(expected)
    wait_until(lambda: len(_es_ids(es)) >= n, WAIT, "recovery")
    wait_until(lambda: output_status(cfg, "es")["lag_events"] == 0, WAIT, "the cursor to catch up")
    st = output_status(cfg, "es")
    assert st["breaker"] == "closed" and st["dlq"] == 0
    assert _es_ids(es) == set(expected)
    assert es.app.counters["created"] == n
    assert dlq_list(cfg) == []
    by_status = es.stats()["requests_by_status"]
    assert by_status.get("503", 0) >= 1 and by_status.get("reset", 0) >= 1
    assert_es_spec_clean(es)  # the requests answered 503 or reset were checked too


# ---------------------------------------------------------------------------------------- 3


#: Requests already under way when a 429 is answered may still arrive this long after it.
IN_FLIGHT = 0.2


def _during_hold(requests: list[Arrival], throttled: Arrival, retry_after: float
                 ) -> list[tuple[float, int]]:
    """The ``requests`` (seconds after the 429, status) that arrived after ``throttled``'s 429 but
    before its Retry-After had passed, those already under way then (IN_FLIGHT) aside."""
    return [(round(b.at - throttled.at, 3), b.status) for b in requests
            if throttled.at + IN_FLIGHT < b.at < throttled.at + retry_after]


#: The Elasticsearch storm runs with the default, unlimited rates, as most users will: six halvings
#: of the rate observed before the storm (a 50-event batch). The 950 events after it once crawled
#: for over 120 s in CI; tests/outputs/test_ratelimit.py proves why they no longer can (an
#: unconfigured events/s does not adapt, an observed ceiling is let go after a quiet while). The
#: HEC storm has a configured ceiling, which never lets go: its six halvings cost it nothing.
STORM_LIMITS = {"rate_limit_requests": 1000.0, "rate_limit_events": 200_000.0}


@pytest.mark.parametrize("concurrency", [1, 4])
def test_429_storm_honours_retry_after(tmp_path: Path, es: Mock, agents, concurrency: int) -> None:
    """Six bulk requests answered 429 with Retry-After: 2. No batch is sent again sooner than that
    after its 429, and no request at all is (the hold is the output's, whatever its concurrency:
    only requests already under way may arrive just after the 429); everything is indexed once."""
    storm, retry_after, tolerance = 6, 2.0, 0.1
    cfg = write_agent_config(tmp_path, {"es": es_output(es, batch_max_events=50,
                                                        concurrency=concurrency)})
    _start(agents, cfg, tmp_path)
    src = tmp_path / "in" / "audit.jsonl"
    expected = write_events(src, 0, 50)
    wait_until(lambda: len(_es_ids(es)) == 50, WAIT, "the first batch")
    es.app.app_faults.add(Fault("status", status=429, retry_after=retry_after, count=storm, path=BULK))
    expected += write_events(src, 50, 1000)
    wait_until(lambda: len(_es_ids(es)) >= 1000, WAIT, "every event after the storm")

    bulks = es.app.requests_to(BULK)
    throttled = [a for a in bulks if a.status == 429]
    assert len(throttled) == storm and all(a.retry_after == "2" for a in throttled)
    for a in throttled:
        again = [b for b in bulks if b.at > a.at and a.ids[0] in b.ids]
        assert again, "a throttled batch was never sent again"
        assert again[0].at - a.at >= retry_after - tolerance, (
            f"batch re-sent {again[0].at - a.at:.3f}s after its 429")
        if concurrency == 1:
            nxt = next(b for b in bulks if b.at > a.at)
            assert nxt.at - a.at >= retry_after - tolerance
        # The hold is output-wide: past the requests already under way when the 429 came (0.2 s),
        # no request at all until Retry-After has passed, whichever batch it carries.
        early = _during_hold(bulks, a, retry_after)
        assert early == [], f"requests {early} (s after the 429, status) during its Retry-After"
    assert _es_ids(es) == set(expected)
    assert es.app.counters["created"] == 1000 and es.app.counters["conflicts"] == 0
    assert_es_spec_clean(es)  # the throttled requests were checked too


@pytest.mark.parametrize("concurrency", [1, 4])
def test_hec_429_storm_honours_retry_after(tmp_path: Path, hec: Mock, agents, concurrency: int
                                           ) -> None:
    """Six event posts answered as HEC does when its queue is full (HTTP 429, code 26) with
    Retry-After: 2. No batch is posted again sooner than that after its 429, and no post at all is
    (an output-wide hold: only posts already under way may arrive just after the 429); every event
    is indexed exactly once and acknowledged, the DLQ empty."""
    storm, retry_after, tolerance = 6, 2.0, 0.1
    cfg = write_agent_config(tmp_path, {"splunk": hec_output(
        hec, HEC_TOKEN, ack=True, ack_poll_interval="200ms", batch_max_events=50,
        concurrency=concurrency, **STORM_LIMITS)})
    _start(agents, cfg, tmp_path)
    src = tmp_path / "in" / "audit.jsonl"
    expected = write_events(src, 0, 50)
    wait_until(lambda: len(set(hec.app.event_ids())) == 50, WAIT, "the first batch")
    hec.app.app_faults.add(Fault("status", status=429, retry_after=retry_after, count=storm,
                                 path=HEC_EVENT))
    expected += write_events(src, 50, 1000)
    wait_until(lambda: len(set(hec.app.event_ids())) >= 1000, WAIT, "every event after the storm")
    wait_until(lambda: output_status(cfg, "splunk")["lag_events"] == 0, WAIT, "acks to commit")

    posts = hec.app.requests_to(HEC_EVENT)
    throttled = [a for a in posts if a.status == 429]
    assert len(throttled) == storm
    for a in throttled:  # HEC's own answer: JSON, code 26, and the header
        assert a.retry_after == "2" and a.answer == {"text": "HEC queue at capacity", "code": 26}
        again = [b for b in posts if b.at > a.at and a.ids[0] in b.ids]
        assert again, "a throttled batch was never posted again"
        assert again[0].ids == a.ids, "the throttled batch was not re-sent as it was"
        assert again[0].at - a.at >= retry_after - tolerance, (
            f"batch re-sent {again[0].at - a.at:.3f}s after its 429")
        if concurrency == 1:
            nxt = next(b for b in posts if b.at > a.at)
            assert nxt.at - a.at >= retry_after - tolerance
        early = _during_hold(posts, a, retry_after)  # the output-wide hold, as for Elasticsearch
        assert early == [], f"posts {early} (s after the 429, status) during its Retry-After"
    counts = Counter(hec.app.event_ids())
    assert set(counts) == set(expected) and set(counts.values()) == {1}  # no loss, no duplicate
    assert hec.app.unacked_posts() == []
    assert dlq_list(cfg) == []
    st = output_status(cfg, "splunk")
    assert st["dlq"] == 0 and "HEC queue at capacity" in (st["last_error"] or "")


# ---------------------------------------------------------------------------------------- 4


def test_partial_bulk_failures_exact_counts(tmp_path: Path, es: Mock, agents) -> None:
    """Mapping errors on chosen events and per-item 429s on 40 others: exactly the rejected events
    are in the DLQ (with Elasticsearch's error), only the 429 items are sent again, the rest once,
    and the agent counts exactly the indexed events as delivered (status and /metrics)."""
    n, throttled_items = 1500, 40
    rejected = [3, 50, 51, 199, 200, 777, 1499]
    for i in rejected:
        es.control("POST", "/_mock/item_faults", {"status": 400, "type": "document_parsing_exception",
                                                   "reason": f"failed to parse field [file.path] #{i}",
                                                   "field": "file.path", "value": _file_path(i)})
    es.control("POST", "/_mock/item_faults", {"status": 429, "type": "es_rejected_execution_exception",
                                               "reason": "rejected execution (queue capacity 200)",
                                               "count": throttled_items, "after": 100})
    port = closed_port()
    cfg = write_agent_config(tmp_path, {"es": es_output(es, batch_max_events=100)}, metrics_port=port)
    _start(agents, cfg, tmp_path)
    expected = write_events(tmp_path / "in" / "audit.jsonl", 0, n)
    rejected_ids = {expected[i] for i in rejected}

    def settled() -> bool:  # lag 0 alone also holds before the first event was spooled
        st = output_status(cfg, "es")
        return st["lag_events"] == 0 and (st["cursor"] or 0) >= n and st["dlq"] == len(rejected)

    wait_until(settled, WAIT, "the cursor to pass every event")

    assert _es_ids(es) == set(expected) - rejected_ids
    c = es.app.counters
    assert c["created"] == n - len(rejected)
    assert c["conflicts"] == 0  # no accepted item was ever sent again
    assert c["actions"] == n + throttled_items  # only the 429 items went twice
    assert es.app.item_errors == {"400 document_parsing_exception": len(rejected),
                                  "429 es_rejected_execution_exception": throttled_items}
    entries = dlq_list(cfg, "es")
    assert sorted(e["event_id"] for e in entries) == sorted(rejected_ids)
    for e in entries:
        assert "document_parsing_exception" in e["reason"] + e["response_excerpt"]
    st = output_status(cfg, "es")
    assert st["dlq"] == len(rejected) and "document_parsing_exception" in (st["dlq_last_reason"] or "")
    assert_es_spec_clean(es)

    # The agent's own count agrees: each indexed event counted once (the 429 items too, though sent
    # twice), no rejected one. /metrics is live; status reads the count of the last heartbeat.
    delivered = n - len(rejected)
    assert metric(scrape(port), "clawd_agent_output_events_delivered_total", output="es") == delivered
    assert metric(scrape(port), "clawd_agent_output_events_dlq_total", output="es") == len(rejected)
    wait_until(lambda: output_status(cfg, "es")["delivered_total"] >= delivered, WAIT,
               "the delivered count recorded at the next heartbeat", lambda: status(cfg))
    assert output_status(cfg, "es")["delivered_total"] == delivered


# ---------------------------------------------------------------------------------------- 5


def test_ack_timeouts_resend_the_batch(tmp_path: Path, hec: Mock, agents) -> None:
    """Two acks are lost and one comes after the agent's ack timeout: those three batches are sent
    again; every event is indexed; only events of those batches are duplicated."""
    # The first three posts: their re-sends come after the ack timeout, so (however fast ingest
    # is) no re-send can take one of these faults.
    hec.add_faults(fault("ack_delay", delay=-1, count=2, path=HEC_EVENT),
                   fault("ack_delay", delay=60, count=1, path=HEC_EVENT))
    n, batch = 1500, 100
    cfg = write_agent_config(tmp_path, {"splunk": hec_output(
        hec, HEC_TOKEN, ack=True, ack_timeout="5s", ack_poll_interval="200ms",
        ack_poll_max_interval="500ms", batch_max_events=batch)})
    _start(agents, cfg, tmp_path)
    expected = write_events(tmp_path / "in" / "audit.jsonl", 0, n)
    wait_until(lambda: len(set(hec.app.event_ids())) >= n, WAIT, "every event in HEC")
    wait_until(lambda: output_status(cfg, "splunk")["lag_events"] == 0, WAIT, "acks to commit")

    counts = Counter(hec.app.event_ids())
    assert set(counts) == set(expected)
    unacked = hec.app.unacked_posts()
    assert len(unacked) == 3, [len(a.ids) for a in unacked]
    posts = Counter(a.ids for a in hec.app.requests_to(HEC_EVENT) if a.status == 200)
    for a in unacked:
        assert posts[a.ids] >= 2, "a batch whose ack never came was not sent again"
    resent_ids = {i for a in unacked for i in a.ids}
    duplicated = {i for i, c in counts.items() if c > 1}
    assert duplicated == resent_ids  # duplicates exist exactly for the re-sent batches
    assert all(counts[i] == 2 for i in duplicated)
    assert output_status(cfg, "splunk")["dlq"] == 0


# ---------------------------------------------------------------------------------------- 6


#: The dead output's breaker opens on each failed attempt and probes again after exactly this long
#: (cooldown and its cap alike; the retry wait, 1 s at most, is shorter): its attempts come this far
#: apart, and the hung output gives up on each request after this long. Several seconds: a chunk
#: written at the start of such a window reaches the healthy mock well before its end, however
#: slow the machine, unless the process is frozen for (nearly) all of it.
WINDOW = "3s"
#: Rounds of the order check (one chunk of events each).
ROUNDS = 3
CHUNK = 200


def _healthy(dead: str, hec: Mock, es: Mock) -> tuple[str, Mock, str, str]:
    """(healthy output, its mock, its delivery path, the dead output's delivery path)."""
    if dead == "es":
        return "splunk", hec, HEC_EVENT, BULK
    return "es", es, BULK, HEC_EVENT


def _late(mock: Mock, path: str, ids: list[str], deadline: float) -> list[str]:
    """The ``ids`` that had not arrived at ``mock`` (in a request to ``path``) before ``deadline``."""
    first = mock.app.first_arrivals(path)
    return [i for i in ids if first.get(i, float("inf")) >= deadline]


@pytest.mark.parametrize("dead", ["es", "splunk"])
def test_dead_output_does_not_hold_back_the_other(tmp_path: Path, hec: Mock, es: Mock, agents,
                                                  dead: str) -> None:
    """One output's destination is down: it resets every connection at once (``DeadPeer``, which
    notes when each attempt comes). That output's breaker opens on each failure and probes again
    after a fixed cooldown, so its attempts are WINDOW apart. A chunk of events written just after
    one of its attempts reaches the other output's destination before its next attempt, round after
    round: the other output is not held back, not even during the dead one's waits (a wait that
    froze the process would put the chunk after the next attempt). The dead output keeps its whole
    backlog (nothing dropped, nothing DLQ'd). Proven by order, not by a time bound."""
    peer = DeadPeer()
    try:
        down = {"breaker_failures": 1, "breaker_cooldown": WINDOW, "breaker_cooldown_max": WINDOW,
                "retry_initial": "100ms", "retry_max": "1s", "concurrency": 1,
                "healthcheck_interval": "0s"}
        cfg = write_agent_config(tmp_path, {
            "splunk": hec_output(peer.url if dead == "splunk" else hec, HEC_TOKEN, ack=True,
                                 ack_poll_interval="200ms", batch_max_events=CHUNK,
                                 **(down if dead == "splunk" else {})),
            "es": es_output(peer.url if dead == "es" else es, batch_max_events=CHUNK,
                            **(down if dead == "es" else {})),
        })
        _start(agents, cfg, tmp_path)
        healthy, mock, path, dead_path = _healthy(dead, hec, es)
        src = tmp_path / "in" / "audit.jsonl"
        expected = write_events(src, 0, 1000)
        wait_until(lambda: not _late(mock, path, expected, float("inf")), WAIT,
                   "the first events at the healthy destination")
        seen = len(peer.attempts(dead_path))
        wait_for(lambda: len(peer.attempts(dead_path)) > seen, WAIT, "a fresh attempt of the dead output",
                 0.02)

        checked = 0
        for _ in range(3 * ROUNDS):  # each round starts just after an attempt, at most 20 ms later
            if checked == ROUNDS:
                break
            opened = len(peer.attempts(dead_path))
            chunk = write_events(src, len(expected), len(expected) + CHUNK)
            expected += chunk
            written = time.monotonic()
            wait_for(lambda: len(peer.attempts(dead_path)) > opened, WAIT,  # noqa: B023
                     "the dead output's next attempt", 0.02)
            attempts = peer.attempts(dead_path)
            before, after = attempts[opened - 1].at, attempts[opened].at
            if after <= written:
                continue  # this test process was too slow to write inside the window: again
            late = _late(mock, path, chunk, after)
            assert late == [], (
                f"round {checked}: {len(late)} of {len(chunk)} events written "
                f"{written - before:.3f}s after an attempt of the dead output had not reached the "
                f"healthy destination by its next attempt, {after - before:.3f}s after it")
            checked += 1
        assert checked == ROUNDS, "this test process never wrote a chunk inside a window in time"

        n = len(expected)
        if healthy == "es":
            wait_until(lambda: len(_es_ids(es)) >= n, WAIT, "every event in Elasticsearch")
            assert _es_ids(es) == set(expected)
            assert_es_spec_clean(es)
        else:
            wait_until(lambda: len(set(hec.app.event_ids())) >= n, WAIT, "every event in HEC")
            assert set(hec.app.event_ids()) == set(expected)
        wait_until(lambda: output_status(cfg, healthy)["lag_events"] == 0, WAIT, "the healthy cursor")
        wait_until(lambda: output_status(cfg, healthy)["delivered_total"] == n, WAIT,
                   "the delivered count recorded at the next heartbeat", lambda: status(cfg))
        wait_until(lambda: output_status(cfg, dead)["breaker"] == "open", WAIT, "the dead breaker open")
        doc = status(cfg)
        gone, ok = doc["outputs"][dead], doc["outputs"][healthy]
        assert gone["lag_events"] == n and gone["delivered_total"] == 0 and gone["dlq"] == 0
        assert "ConnectionError" in (gone["last_error"] or ""), gone["last_error"]
        assert ok["breaker"] == "closed" and ok["delivered_total"] == n and ok["dlq"] == 0
        assert doc["health"] == "degraded"
        assert dlq_list(cfg) == []
    finally:
        peer.stop()


@pytest.mark.parametrize("dead", ["es", "splunk"])
def test_hung_output_does_not_hold_back_the_other(tmp_path: Path, hec: Mock, es: Mock, agents,
                                                  dead: str) -> None:
    """One output's peer accepts connections and reads the requests but never answers; that output
    gives up on a request after its request timeout (WINDOW), its breaker opens and it tries again
    after a fixed cooldown (WINDOW). In each of those windows, a chunk of events written at its start
    reaches the other output's destination before its end: while the hung peer holds a delivery
    request (received whole, unanswered), before the agent gives up on it; after it gave up, before
    its next request. Neither the wait for the hung answer nor the wait before trying again holds
    anything else back (a wait that blocked the process would put the chunk after the window). The
    hung output keeps its whole backlog in the spool (nothing in the DLQ), and the agent stops cleanly
    with a request held, releasing the held connections. Proven by state and ordering, not time."""
    peer = HungPeer()
    try:
        hang = {"request_timeout": WINDOW, "breaker_failures": 1, "breaker_cooldown": WINDOW,
                "breaker_cooldown_max": WINDOW, "retry_initial": "100ms", "retry_max": "1s",
                "concurrency": 1}
        cfg = write_agent_config(tmp_path, {
            "splunk": hec_output(peer.url if dead == "splunk" else hec, HEC_TOKEN, ack=True,
                                 ack_poll_interval="200ms", batch_max_events=CHUNK,
                                 **(hang if dead == "splunk" else {})),
            "es": es_output(peer.url if dead == "es" else es, batch_max_events=CHUNK,
                            **(hang if dead == "es" else {})),
        })
        agent = _start(agents, cfg, tmp_path)
        healthy, mock, path, delivery_path = _healthy(dead, hec, es)
        src = tmp_path / "in" / "audit.jsonl"
        expected = write_events(src, 0, 1000)
        wait_until(lambda: not _late(mock, path, expected, float("inf")), WAIT,
                   "the first events at the healthy destination")

        def deliveries() -> list[HeldConnection]:
            """The hung output's delivery requests so far (one connection each), in arrival order."""
            return [c for c in peer.snapshot()
                    if any(f" {delivery_path}" in line for line in c.request_lines())]

        def window(name: str, opened: float, chunk: list[str], written: float, closed: float) -> bool:
            """Check one window; False when this test process wrote too late to use it."""
            if closed <= written:
                return False
            late = _late(mock, path, chunk, closed)
            assert late == [], (
                f"{len(late)} of {len(chunk)} events written {written - opened:.3f}s into the window "
                f"{name} had not reached the healthy destination at its end, "
                f"{closed - opened:.3f}s after its start")
            return True

        # The first delivery request not given up yet (or the next one) opens the first window.
        checked, k = 0, next((j for j, c in enumerate(deliveries()) if c.closed_at is None),
                             len(deliveries()))
        for _ in range(3 * ROUNDS):  # windows: held, then gave up, then held again
            if checked == ROUNDS:
                break
            wait_for(lambda: len(deliveries()) > k and deliveries()[k].complete_at is not None,  # noqa: B023
                     WAIT, "a delivery request held by the hung peer", 0.02)
            chunk = write_events(src, len(expected), len(expected) + CHUNK)
            expected += chunk
            written = time.monotonic()
            wait_for(lambda: deliveries()[k].closed_at is not None, WAIT,  # noqa: B023
                     "the agent to give up on the hung request", 0.02)
            held = deliveries()[k]
            assert held.closed_by_client and held.complete_at is not None and held.closed_at is not None
            checked += window("'the hung peer holds a request'", held.complete_at, chunk, written,
                              held.closed_at)
            if checked == ROUNDS:
                break

            chunk = write_events(src, len(expected), len(expected) + CHUNK)
            expected += chunk
            written = time.monotonic()
            wait_for(lambda: len(deliveries()) > k + 1, WAIT, "the hung output's next request",  # noqa: B023
                     0.02)
            nxt = deliveries()[k + 1].first_at
            assert nxt is not None
            checked += window("'the agent gave up, until its next request'", held.closed_at, chunk,
                              written, nxt)
            k += 1
        assert checked == ROUNDS, "this test process never wrote a chunk inside a window in time"

        n = len(expected)
        if healthy == "es":
            wait_until(lambda: len(_es_ids(es)) >= n, WAIT, "every event in Elasticsearch")
        else:
            wait_until(lambda: len(set(hec.app.event_ids())) >= n, WAIT, "every event in HEC")
        wait_until(lambda: output_status(cfg, healthy)["lag_events"] == 0, WAIT, "the healthy cursor")
        wait_until(lambda: output_status(cfg, healthy)["delivered_total"] == n, WAIT,
                   "the delivered count recorded at the next heartbeat", lambda: status(cfg))
        if healthy == "es":
            assert _es_ids(es) == set(expected)
            assert_es_spec_clean(es)
        else:
            assert set(hec.app.event_ids()) == set(expected)
            assert hec.app.unacked_posts() == []
        doc = status(cfg)
        gone, ok = doc["outputs"][dead], doc["outputs"][healthy]
        assert gone["lag_events"] == n and gone["delivered_total"] == 0 and gone["dlq"] == 0
        assert "timed out" in (gone["last_error"] or ""), gone["last_error"]
        assert ok["breaker"] == "closed" and ok["delivered_total"] == n and ok["dlq"] == 0
        assert dlq_list(cfg) == []

        # Stop while the hung peer holds a delivery request (received whole, unanswered).
        wait_for(lambda: any(c.complete_at is not None and c.closed_at is None for c in deliveries()),
                 WAIT, "a delivery request held by the hung peer", 0.02)
        assert agent.stop() == 0  # a clean exit with a request still in flight
        wait_until(lambda: all(c.closed_by_client for c in peer.snapshot()), WAIT,
                   "the stopped agent to release the held connections")
        after = status(cfg)["outputs"]
        assert after[dead]["lag_events"] == n and after[dead]["dlq"] == 0  # still in the spool
        assert after[healthy]["lag_events"] == 0
    finally:
        peer.stop()


# ---------------------------------------------------------------------------------------- 7


def test_dlq_replay_after_fixing_the_destination(tmp_path: Path, es: Mock, agents) -> None:
    """Events refused for good land in the DLQ; once the destination is fixed, `dlq replay --output
    es --all` sends them through the running agent, each once and nothing else again, and empties
    the DLQ."""
    n, rejected = 300, [7, 8, 150, 299]
    for i in rejected:
        es.control("POST", "/_mock/item_faults", {"status": 400, "type": "document_parsing_exception",
                                                   "field": "file.path", "value": _file_path(i)})
    cfg = write_agent_config(tmp_path, {"es": es_output(es, batch_max_events=50)})
    _start(agents, cfg, tmp_path)
    expected = write_events(tmp_path / "in" / "audit.jsonl", 0, n)
    wait_until(lambda: len(dlq_list(cfg, "es")) == len(rejected), WAIT, "the DLQ entries")
    wait_until(lambda: output_status(cfg, "es")["lag_events"] == 0, WAIT, "the cursor")
    rejected_ids = {expected[i] for i in rejected}
    assert _es_ids(es) == set(expected) - rejected_ids
    assert {e["event_id"] for e in dlq_list(cfg, "es")} == rejected_ids

    es.control("DELETE", "/_mock/item_faults")
    res = run_cli("dlq", "replay", "--output", "es", "--all", config=cfg)
    assert res.returncode == 0, res.stderr
    assert f"replay requested for {len(rejected)} DLQ entries" in res.stdout
    wait_until(lambda: dlq_list(cfg, "es") == [], WAIT, "the DLQ to empty")
    assert _es_ids(es) == set(expected)
    assert es.app.counters["created"] == n
    # Each DLQ entry was sent once more, and nothing else was: no event went twice after the fix.
    assert es.app.counters["conflicts"] == 0
    assert es.app.counters["actions"] == n + len(rejected)
    assert output_status(cfg, "es")["dlq"] == 0
    assert_es_spec_clean(es)  # replayed requests included


# ---------------------------------------------------------------------------------------- 8


@pytest.fixture
def cli_calls() -> Iterator[list]:
    """Every CLI call the test makes (its own and the helpers' polls), with stdout and stderr."""
    with recording_cli() as calls:
        yield calls


#: Headers the mocks echo back in their error texts in the canary test (their credential echo).
ECHO = ("Authorization", "X-Canary")
#: Where an echoed credential was redacted in what the agent kept or showed of such an error.
MASKED_ECHO = b"echo[***]"


def _forms(secret: str) -> set[bytes]:
    """Every form a canary can take where it might leak, lower case (searches are case-insensitive):
    as it is, base64 (standard and URL-safe), each JSON-escaped (``\\/`` too) and percent-encoded."""
    out: set[bytes] = set()
    for s in (secret, base64.b64encode(secret.encode()).decode(),
              base64.urlsafe_b64encode(secret.encode()).decode()):
        escaped = json.dumps(s)[1:-1]
        for form in (s, escaped, escaped.replace("/", "\\/"), urllib.parse.quote(s, safe=""),
                     urllib.parse.quote_plus(s)):
            out.add(form.lower().encode())
    return out


def _sent(req: MockRequest, expected: dict[str, str]) -> bytes:
    """All a request carried (method, path, query, every header, decoded body) but the ``expected``
    credential headers, which must be there with exactly those values (their one place)."""
    for name, value in expected.items():
        assert req.headers.get(name) == value, f"{req.method} {req.path}: header {name} is not as configured"
    parts = [req.method, req.path, urllib.parse.unquote_plus(req.path), json.dumps(req.query)]
    parts += [f"{k}: {req.headers[k]}" for k in req.headers if k.lower() not in {e.lower() for e in expected}]
    return "\n".join(parts).encode() + b"\n" + req.body


def test_canary_secrets_never_leak(tmp_path: Path, agents, cli_calls: list) -> None:
    """Unique canary credentials (HEC token, ES API key, a custom header) go nowhere but their own
    header: no other header, path, query or body of any request the mocks got (HEC ack and health
    checks, the Elasticsearch bootstrap and health checks, requests answered by a fault included),
    no stored HEC event or Elasticsearch document. Both mocks echo the credentials back in their
    error texts (401 faults, 403 to the ingest-only key's bootstrap, 403 "Invalid token", per-item
    rejections' type and reason, HEC's code 6 for an oversized event), and what the agent keeps and
    shows of those errors has them redacted: no canary, in any form, in a log line, status, metrics,
    DLQ entry, spool byte, nor anything any CLI call printed (stdout and stderr)."""
    hex_ = uuid.uuid4().hex
    hec_token = str(uuid.uuid4())  # HEC tokens are GUIDs
    es_key = f"cnryid{hex_[:10]}:cnrykey{hex_[10:]}"
    header = f"cnryhdr-{uuid.uuid4().hex}"
    header_file = tmp_path / "header.secret"
    header_file.write_text(header + "\n")
    header_file.chmod(0o600)
    hec_auth = f"Splunk {hec_token}"
    es_auth = "ApiKey " + base64.b64encode(es_key.encode()).decode()

    # The token is unknown at first; the key may write documents, not templates (403 on bootstrap).
    hec = start_thread_mock(hec_app([], ack=True, echo_headers=ECHO), "splunk_hec")
    es = start_thread_mock(es_app(api_keys=[es_key], ingest_only=[es_key], echo_headers=ECHO),
                           "elasticsearch")
    hec.app.keep_requests = es.app.keep_requests = True
    n, too_big = 200, 7
    hec.app.max_event_size = 8000  # event 7 is bigger: HEC refuses it alone (400 code 6)
    try:
        es.add_faults(fault(status=401, count=3, path=BULK))
        es.control("POST", "/_mock/item_faults", {"status": 400, "type": "document_parsing_exception",
                                                   "field": "file.path", "value": _file_path(5)})
        port = closed_port()
        cfg = write_agent_config(tmp_path, {
            "splunk": hec_output(hec, hec_token, ack=True, ack_poll_interval="200ms",
                                 headers={"X-Canary": f"file:{header_file}"}),
            "es": es_output(es, api_key="${CANARY_ES_KEY}", headers={"X-Canary": f"file:{header_file}"},
                            bootstrap=True),
        }, metrics_port=port)
        env = {"CANARY_ES_KEY": es_key}
        _start(agents, cfg, tmp_path, env)
        src = tmp_path / "in" / "audit.jsonl"
        expected = write_events(src, 0, too_big)
        big = orjson.loads(audit_line(too_big))
        big["message"] = "Access to forbidden path " + "x" * 16000
        with open(src, "ab") as f:
            f.write(orjson.dumps(big) + b"\n")
        expected += [line_id(too_big), *write_events(src, too_big + 1, n)]
        wait_until(lambda: output_status(cfg, "splunk", env)["last_error"] is not None, WAIT,
                   "HEC to refuse the unknown token")
        hec.control("POST", "/_mock/hec/tokens", [{"value": hec_token, "use_ack": True}])
        wait_until(lambda: len(set(hec.app.event_ids())) >= n - 1 and len(_es_ids(es)) >= n - 1, WAIT,
                   "delivery once the credentials are accepted")
        wait_until(lambda: len(dlq_list(cfg, env=env)) == 2, WAIT, "the DLQ entries")
        wait_until(lambda: output_status(cfg, "splunk", env)["lag_events"] == 0, WAIT, "HEC acks")

        # The canaries really were used, and echoed: else their absence below would prove nothing.
        assert es.stats()["requests_by_status"].get("401", 0) == 3
        assert hec.app.stats()["counts"].get("code_4", 0) >= 1  # "Invalid token" before it was added

        def echoed(mock: Mock, status: int, path: str, secret: str) -> bool:
            """Whether ``mock`` echoed ``secret`` (and the custom header) in an answer ``status`` to
            a request whose path starts with ``path``."""
            return any(st == status and p.startswith(path) and secret.encode() in body
                       and header.encode() in body for p, st, body in mock.app.echoed)

        assert echoed(es, 401, BULK, es_key)  # the faults
        assert echoed(es, 403, "/_", es_key)  # the bootstrap's template or ILM policy
        assert echoed(es, 200, BULK, es_key)  # the rejected item
        assert echoed(hec, 403, HEC_EVENT, hec_token)  # "Invalid token"
        assert echoed(hec, 400, HEC_EVENT, hec_token)  # the oversized event

        views: dict[str, bytes] = {
            "status": run_cli("status", config=cfg, env=env).stdout.encode(),
            "status --json": run_cli("status", "--json", config=cfg, env=env).stdout.encode(),
            "/metrics": scrape(port).encode(),
            "/health": scrape(port, "/health").encode(),
            "dlq list --json": run_cli("dlq", "list", "--json", config=cfg, env=env).stdout.encode(),
        }
        entries = {e["output"]: e for e in dlq_list(cfg, env=env)}
        for e in entries.values():
            views[f"dlq show {e['id']}"] = run_cli("dlq", "show", str(e["id"]), config=cfg,
                                                   env=env).stdout.encode()
        assert agents[-1].stop() == 0
        views["status after stop"] = run_cli("status", "--json", config=cfg, env=env).stdout.encode()
        views["agent log"] = (tmp_path / "agent.log").read_bytes()
        for f in sorted((tmp_path / "state").rglob("*")):
            if f.is_file():
                views[f"spool file {f.name}"] = f.read_bytes()
    finally:
        hec.stop()
        es.stop()

    assert set(hec.app.event_ids()) == set(expected) - {expected[too_big]}
    assert _es_ids(es) == set(expected) - {expected[5]}
    assert_es_spec_clean(es)  # the requests answered 401 were checked too
    commands = [" ".join(res.args[3:-2]) for res in cli_calls]
    assert {"status", "status --json", "dlq list --json"} <= set(commands)
    assert any(c.startswith("dlq show ") for c in commands)
    for k, (command, res) in enumerate(zip(commands, cli_calls, strict=True)):
        views[f"stderr of clawd-agent {command} (call {k})"] = res.stderr.encode()
        views[f"stdout of clawd-agent {command} (call {k})"] = res.stdout.encode()

    # Everything the mocks received and stored. Every request is searched: the ack and health checks
    # and the bootstrap (and the faulted requests, kept by check_faulted) were among them.
    assert {HEC_EVENT, "/services/collector/ack", "/services/collector/health"} <= {
        r.path for r in hec.app.seen}
    assert {BULK, "/_cluster/health"} <= {r.path for r in es.app.seen}
    assert any(r.method == "PUT" for r in es.app.seen)
    assert len([r for r in es.app.seen if r.path == BULK]) == es.app.counters["bulk_requests"] + 3
    for mock, auth in ((hec, hec_auth), (es, es_auth)):
        for k, req in enumerate(mock.app.seen):
            views[f"{mock.kind} request {k} ({req.method} {req.path})"] = _sent(
                req, {"Authorization": auth, "X-Canary": header})
    views["stored HEC events"] = json.dumps(hec.app.events).encode()
    views["stored Elasticsearch documents"] = json.dumps(es.app.docs("*")).encode()

    forms = {"hec token": _forms(hec_token), "header": _forms(header),
             "es api key": _forms(es_key).union(*(_forms(p) for p in es_key.split(":")))}
    leaks = [f"{name} in {view}" for view, data in views.items() for name, needles in forms.items()
             if any(needle in data.lower() for needle in needles)]
    assert leaks == [], leaks

    # Redaction was exercised: the echoed errors reached these views, their credentials masked.
    assert entries["es"]["event_id"] == expected[5] and entries["splunk"]["event_id"] == expected[too_big]
    assert MASKED_ECHO in entries["es"]["reason"].encode()
    assert all(MASKED_ECHO in e["response_excerpt"].encode() for e in entries.values()), entries
    status_es = json.loads(views["status --json"])["outputs"]["es"]
    assert MASKED_ECHO in (status_es["dlq_last_reason"] or "").encode(), status_es
    log_lines = views["agent log"].splitlines()
    for what in (b"bootstrap", b"HTTP 401", b"events sent to the DLQ"):
        assert any(what in line and MASKED_ECHO in line for line in log_lines), what

    assert views["agent log"] and len(views) >= 8
    assert os.path.getsize(tmp_path / "state" / "spool.db") > 0
