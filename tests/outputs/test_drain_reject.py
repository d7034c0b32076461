"""Rows the renderer rejects (encode failed, not JSON) reach the DLQ before any batch covering their seq
can commit: a batch's range includes the rejected rows around its events, so once it finishes the
cursor (or a done range) passes them for good. A failed DLQ write is retried, never skipped."""

from __future__ import annotations

import sqlite3
import uuid

import orjson
import pytest

from outputs.base import DeliveryItem, Outcome
from outputs.drain import Drain
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch
from tests.outputs.drain_kit import Fake, caught_up, cfg, fill, run_until, start, stop, wait_until

BAD_SEQ = 3  # event n=2


class Rejecting(Fake):
    """A transform that cannot render event n=2."""

    def encode(self, item: DeliveryItem) -> bytes:
        if item.seq == BAD_SEQ:
            raise ValueError("no CEF mapping")
        return super().encode(item)


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def dlq_seqs(spool: Spool) -> list[int]:
    return [e.seq for e in spool.dlq_list("f")]


def passed(spool: Spool, seq: int) -> bool:
    """Whether the stored cursor or one of its done ranges says ``seq`` is finished."""
    state = spool.get_cursor_done("f")
    if state is None:
        return False
    cursor, done = state
    return cursor.seq >= seq or any(lo <= seq <= hi for lo, hi in done)


def locked_once(spool: Spool) -> list[int]:
    """Make the first ``dlq_add`` fail as SQLITE_BUSY does (in the spool's write path, which yields to
    the hub while the statement waits); later calls store. Returns the list of calls made."""
    real, calls = spool.dlq_add, []

    def dlq_add(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            def tx():
                raise sqlite3.OperationalError("database is locked")
            return spool._call(tx)
        return real(*args, **kw)

    spool.dlq_add = dlq_add  # type: ignore[method-assign]
    return calls


def test_no_commit_passes_a_rejected_event_before_it_is_in_the_dlq(spool):
    fill(spool, 30)
    out = Rejecting("f", cfg(batch_max_events=5, concurrency=1))
    drain = Drain(out, spool, spool.reader())
    unsafe: list[tuple[int, object]] = []
    real_commit = spool.commit_cursor

    def commit(name, seq, generation, done=None):
        covers = seq >= BAD_SEQ or any(lo <= BAD_SEQ <= hi for lo, hi in done or ())
        if covers and BAD_SEQ not in dlq_seqs(spool):
            unsafe.append((seq, done))  # a kill -9 right after this commit loses the event
        return real_commit(name, seq, generation, done)

    spool.commit_cursor = commit  # type: ignore[method-assign]
    run_until(drain, caught_up(spool, "f"))
    assert unsafe == []
    assert dlq_seqs(spool) == [BAD_SEQ] and sorted(out.received) == [n for n in range(30) if n != 2]


def test_a_failed_dlq_write_of_a_rejected_event_is_retried_and_the_drain_keeps_running(spool):
    fill(spool, 30)
    calls = locked_once(spool)
    out = Rejecting("f", cfg(batch_max_events=5, concurrency=1))
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert len(calls) == 2 and dlq_seqs(spool) == [BAD_SEQ]  # stored once, on the second try
    assert drain.stats.failed_attempts == 1  # the refused write, noted as a failure
    assert sorted(out.received) == [n for n in range(30) if n != 2]


def test_stopping_while_the_dlq_refuses_leaves_the_rejected_rows_to_the_next_run(spool):
    fill(spool, 30)
    real = spool.dlq_add
    refused: list[int] = []

    def always_busy(*args, **kw):
        refused.append(1)
        raise sqlite3.OperationalError("database is locked")

    spool.dlq_add = always_busy  # type: ignore[method-assign]
    drain = Drain(Rejecting("f", cfg(batch_max_events=5, concurrency=1)), spool, spool.reader())
    g = start(drain)
    wait_until(lambda: len(refused) >= 2 or g.dead)  # retrying (or, unfixed, crashed)
    stop(drain, g)
    assert not passed(spool, BAD_SEQ), spool.get_cursor_done("f")

    spool.dlq_add = real  # type: ignore[method-assign]
    run_until(Drain(Rejecting("f", cfg(batch_max_events=5)), spool, spool.reader()), caught_up(spool, "f"))
    assert dlq_seqs(spool) == [BAD_SEQ]


def test_a_stop_while_waiting_for_room_does_not_lose_a_rejected_event(spool):
    """Batches around the rejected row finish and store done ranges while an earlier one keeps
    failing; the reader waits for room in the window, and the drain is stopped there."""
    fill(spool, 10)
    first = Rejecting("f", cfg(batch_max_events=1, concurrency=2, retry_initial=0.01, retry_max=0.01),
                      rule=lambda b: Outcome.retry("HTTP 503") if b[0].seq == 1 else None)
    drain = Drain(first, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: len(drain._window) >= drain._window_size and passed(spool, BAD_SEQ))
    stop(drain, g)
    assert spool.get_cursor("f").seq == 0  # seq 1 never went: the window could not move

    second = Rejecting("f", cfg(batch_max_events=1))
    run_until(Drain(second, spool, spool.reader()), caught_up(spool, "f"))
    delivered = set(first.received) | set(second.received)
    assert BAD_SEQ in dlq_seqs(spool) and delivered == {n for n in range(10) if n != 2}


def test_a_row_that_is_not_json_is_in_the_dlq_before_the_cursor_passes_it(spool):
    """The other kind of rejected row: decoded for an output that reads events, it is not JSON."""

    class Reading(Fake):
        reads_events = True

    fill(spool, 2)
    spool.append(IngestBatch("t", [EncodedEvent(uuid.uuid4().bytes, 1_700_000_000_002, b"{not json")]))
    fill(spool, 1, start=3)
    out = Reading("f", cfg(batch_max_events=2))
    calls = locked_once(spool)
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    (entry,) = spool.dlq_list("f")
    assert len(calls) == 2 and entry.seq == BAD_SEQ and entry.reason == "spool row is not valid JSON"
    assert sorted(out.received) == [0, 1, 3]


def test_the_dlq_write_happens_once_per_chunk_not_per_event(spool):
    """Hot path: every rejected row of a chunk goes in one write per reason."""
    fill(spool, 40)
    real, calls = spool.dlq_add, []

    def counting(name, rows, *args, **kw):
        calls.append(len(rows))
        return real(name, rows, *args, **kw)

    spool.dlq_add = counting  # type: ignore[method-assign]

    class EveryFourth(Fake):
        def encode(self, item: DeliveryItem) -> bytes:
            if orjson.loads(item.body)["n"] % 4 == 0:
                raise ValueError("no CEF mapping")
            return super().encode(item)

    run_until(Drain(EveryFourth("f", cfg(batch_max_events=5)), spool, spool.reader()), caught_up(spool, "f"))
    assert calls == [10]


def test_the_last_error_of_a_rejected_event_is_the_same_in_health_and_status(spool):
    """A DLQ write with no failed attempt before it (an event no transform can render) is the
    output's last error for /health (the drain's stats) as it is for `status` (the spool's record)."""
    fill(spool, 10)
    out = Rejecting("f", cfg(batch_max_events=5, concurrency=1))
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    (entry,) = spool.dlq_list("f")
    assert entry.reason.startswith("encode failed")
    assert drain.stats.last_error == entry.reason == spool.read_output_states()["f"].last_error
    assert drain.stats.last_error_ms is not None and drain.stats.failed_attempts == 0
