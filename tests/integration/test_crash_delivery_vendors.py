"""SIGKILL the real agent at random instants while it delivers a backlog to Elasticsearch and to Splunk
HEC (with indexer acknowledgement) at once, both under scheduled faults; nothing is lost.

test_crash_recovery.py proves the crash promise for the ``file`` output only. Here the batches in
flight are pipelined (``concurrency`` 4 each), finish out of order (slow answers, 503s, per-item 429s
and 503s, late HEC acks), some events are refused for good (mapping errors: the DLQ), and the agent is
killed over and over. At the end, for each output: every event is stored by the mock or in that
output's DLQ, every DLQ entry says why, the cursor is at the last seq, and the duplicates are at most
the batches that can be in flight at a kill (kills x concurrency x batch_max_events).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.delivery_harness import (
    BULK,
    ES_STREAM,
    HEC_EVENT,
    DeliveryAgent,
    Mock,
    assert_es_spec_clean,
    dlq_list,
    es_app,
    es_output,
    fault,
    hec_app,
    hec_output,
    start_thread_mock,
    status,
    wait_until,
    write_agent_config,
    write_events,
)

pytestmark = pytest.mark.integration

HEC_TOKEN = "0b9c7d4e-5f6a-4b1c-8d2e-3f4a5b6c7d8e"
TOTAL, BATCH, CONCURRENCY, KILLS = 20_000, 200, 4, 8
#: Kills (by number) just before which the HEC indexer restarts, the agent still running.
INDEXER_RESTARTS = (2, 5)
#: Generous: every wait below normally ends within seconds.
WAIT = 60


def _file_path(i: int) -> str:
    """The ECS ``file.path`` of ``harness.audit_line(i)`` (its hushd ``target``)."""
    return f"/home/agent/project/file-{i}.txt"


def _schedule_es_faults(es: Mock, rejected: list[int]) -> None:
    """Mapping rejections for ``rejected`` (for good: the DLQ); per-item 429s and 503s spread over the
    stream; whole-request 503s, a 429 with Retry-After and slow answers (below request_timeout, so
    a slow answer is never a timeout that re-sends)."""
    for i in rejected:
        es.control("POST", "/_mock/item_faults", {
            "status": 400, "type": "document_parsing_exception", "field": "file.path",
            "value": _file_path(i), "reason": f"failed to parse field [file.path] #{i}"})
    for k, after in enumerate((300, 2_500, 6_000, 9_000, 13_000, 17_000)):
        status, etype = ((429, "es_rejected_execution_exception") if k % 2 == 0
                         else (503, "unavailable_shards_exception"))
        es.control("POST", "/_mock/item_faults", {"status": status, "type": etype, "count": 40,
                                                   "after": after})
    es.add_faults(fault(status=503, count=2, after=5, path=BULK),
                  fault("slow", delay=0.8, count=3, after=15, path=BULK),
                  fault(status=429, retry_after=1, count=1, after=30, path=BULK),
                  fault(status=503, count=2, after=45, path=BULK),
                  fault("slow", delay=0.8, count=3, after=70, path=BULK))


def _schedule_hec_faults(hec: Mock) -> None:
    """Acks that come late (well below ack_timeout: a re-send only after a kill or an indexer
    restart) and a few busy answers."""
    hec.add_faults(fault("ack_delay", delay=1.5, count=6, after=3, path=HEC_EVENT),
                   fault("ack_delay", delay=0.8, count=10, after=30, path=HEC_EVENT),
                   fault(status=503, count=2, after=12, path=HEC_EVENT),
                   fault("ack_delay", delay=1.2, count=8, after=60, path=HEC_EVENT))


def _kill_repeatedly(agent: DeliveryAgent, start: Callable[[], DeliveryAgent], progress: Callable[[], int],
                     finished: Callable[[], bool], hec: Mock, rng: random.Random
                     ) -> tuple[DeliveryAgent, int, list[int]]:
    """Kill the agent at a random instant once each run has delivered something, then start it
    again; stop killing once everything is delivered. Before some kills the HEC indexer restarts
    while the agent runs on. Each run must be alive when killed (a crash loop fails here) and must
    move delivery on (a stuck drain times out here). Returns the last agent, the kills, and the
    requests each indexer restart dropped (not yet indexed)."""
    kills, restarts = 0, []
    while kills < KILLS and not finished():
        def moved(before: int = progress()) -> bool:
            return progress() > before or finished()

        wait_until(moved, WAIT, f"delivery to progress after {kills} kills")
        time.sleep(rng.uniform(0.0, 1.0))
        if kills in INDEXER_RESTARTS:
            restarts.append(hec.app.restart())
            time.sleep(rng.uniform(0.5, 3.0))  # the agent meets the restarted indexer
        assert agent.alive(), f"the agent exited on its own after {kills} kills"
        agent.kill()
        kills += 1
        agent = start()
    return agent, kills, restarts


def test_sigkill_while_delivering_to_hec_and_elasticsearch_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    rejected = sorted(rng.sample(range(TOTAL), 25))
    hec = start_thread_mock(hec_app([HEC_TOKEN], ack=True, ack_delay=0.05), "splunk_hec")
    es = start_thread_mock(es_app(), "elasticsearch")
    agent: DeliveryAgent | None = None
    try:
        _schedule_es_faults(es, rejected)
        _schedule_hec_faults(hec)
        cfg = write_agent_config(tmp_path, {
            "splunk": hec_output(hec, HEC_TOKEN, ack=True, ack_poll_interval="100ms",
                                 ack_poll_max_interval="400ms", ack_timeout="10s",
                                 batch_max_events=BATCH, concurrency=CONCURRENCY),
            "es": es_output(es, batch_max_events=BATCH, concurrency=CONCURRENCY),
        })
        expected = write_events(tmp_path / "in" / "audit.jsonl", 0, TOTAL)

        def start() -> DeliveryAgent:
            return DeliveryAgent(cfg, tmp_path / "agent.log").start()

        def progress() -> int:
            return len(es.app.docs(ES_STREAM)) + len(set(hec.app.event_ids()))

        def finished() -> bool:
            return progress() >= 2 * TOTAL - len(rejected)

        agent, kills, restarts = _kill_repeatedly(start(), start, progress, finished, hec, rng)

        def settled() -> bool:
            doc = status(cfg)
            return (doc["spool"]["last_seq"] == TOTAL
                    and all(o["cursor"] == TOTAL and o["lag_events"] == 0 for o in doc["outputs"].values()))

        agent.wait_running(WAIT)  # restarted just now, it may still be starting: SIGTERM then kills it
        wait_until(settled, WAIT, "both cursors at the last seq", lambda: status(cfg)["outputs"])
        assert agent.alive()
        assert agent.stop() == 0
        agent = None
    finally:
        if agent is not None and agent.alive():
            agent.kill()
        hec.stop()
        es.stop()

    ids = set(expected)
    # At a kill, at most every send slot holds a full batch not yet committed: the next run re-sends
    # them. An HEC indexer restart forgets the acks not yet reported: at most those batches again,
    # after ack_timeout (the events of requests not yet indexed are dropped: their re-send is no copy).
    es_max = kills * CONCURRENCY * BATCH
    hec_max = (kills + len(restarts)) * CONCURRENCY * BATCH

    es_dlq = dlq_list(cfg, "es", limit=1_000_000)
    es_docs = set(es.app.docs(ES_STREAM))
    es_dlq_ids = {e["event_id"] for e in es_dlq}
    assert not ids - es_docs - es_dlq_ids, f"{len(ids - es_docs - es_dlq_ids)} events lost for es"
    assert es_dlq_ids == {expected[i] for i in rejected}  # exactly the events refused for good
    assert es_docs == ids - es_dlq_ids
    assert all(e["reason"] and "document_parsing_exception" in e["reason"] + e["response_excerpt"]
               for e in es_dlq)
    es_dupes = es.app.counters["conflicts"]  # creates of an _id already indexed: re-sent events
    assert len(es_dlq) - len(es_dlq_ids) <= es_max  # a rejected event re-sent is stored again
    assert es_dupes <= es_max, f"{es_dupes} events re-sent to es after {kills} kills"
    assert_es_spec_clean(es)

    hec_dlq = dlq_list(cfg, "splunk", limit=1_000_000)
    counts = Counter(hec.app.event_ids())
    hec_dlq_ids = {e["event_id"] for e in hec_dlq}
    assert not ids - set(counts) - hec_dlq_ids, f"{len(ids - set(counts) - hec_dlq_ids)} lost for splunk"
    assert set(counts) <= ids
    assert hec_dlq == [], "HEC refused nothing for good"
    hec_dupes = sum(c - 1 for c in counts.values())
    assert hec_dupes <= hec_max, f"{hec_dupes} duplicates at HEC after {kills} kills"

    print(f"kills={kills} indexer_restarts={len(restarts)} (requests dropped {restarts}) "
          f"es: conflicts={es_dupes} "
          f"dlq_entries={len(es_dlq)} dlq_events={len(es_dlq_ids)} "
          f"hec: duplicates={hec_dupes} dlq_entries={len(hec_dlq)} "
          f"bounds es={es_max} hec={hec_max}")
    assert kills >= 3, "delivery ended before the agent could be killed a few times"
