"""Batcher: count and byte limits, an oversized event alone, ranges that tile the seq stream."""

from __future__ import annotations

import pytest

from outputs.base import DeliveryItem
from outputs.batcher import Batcher


def item(seq: int) -> DeliveryItem:
    return DeliveryItem(seq, {}, b"x")


def seqs(batch) -> list[int]:
    return [i.seq for i in batch.items]


def test_closes_at_the_event_count():
    b = Batcher(max_events=3, max_bytes=10_000, after_seq=0)
    assert b.add(item(1), 10) is None
    assert b.add(item(2), 10) is None
    (full,) = b.add(item(3), 10)
    assert seqs(full) == [1, 2, 3] and (full.lo, full.hi, full.nbytes) == (1, 3, 30)
    assert b.pending == 0 and b.next_seq == 4


def test_closes_before_the_byte_limit_would_be_exceeded():
    b = Batcher(max_events=100, max_bytes=100, after_seq=10)
    for s in (11, 12, 13):
        assert b.add(item(s), 30) is None  # 90 bytes
    (closed,) = b.add(item(15), 30)  # would be 120: ship 11-13 first, covering the skipped 14
    assert seqs(closed) == [11, 12, 13] and (closed.lo, closed.hi) == (11, 14)
    assert b.pending == 1 and b.next_seq == 15


def test_an_event_larger_than_the_limit_is_sent_alone():
    b = Batcher(max_events=100, max_bytes=100, after_seq=0)
    b.add(item(1), 40)
    closed = b.add(item(2), 500)
    assert [seqs(x) for x in closed] == [[1], [2]]
    assert [(x.lo, x.hi) for x in closed] == [(1, 1), (2, 2)]
    assert b.pending == 0


def test_reaching_the_byte_limit_exactly_closes_the_batch():
    b = Batcher(max_events=100, max_bytes=100, after_seq=0)
    b.add(item(1), 60)
    (full,) = b.add(item(2), 40)
    assert seqs(full) == [1, 2]


def test_close_covers_skipped_rows_and_returns_none_when_nothing_was_read():
    b = Batcher(max_events=10, max_bytes=1000, after_seq=0)
    b.add(item(2), 1)
    batch = b.close(7)  # rows 1 and 3..7 were filtered
    assert seqs(batch) == [2] and (batch.lo, batch.hi) == (1, 7)
    assert b.close(7) is None
    skip = b.close(9)
    assert skip.items == [] and (skip.lo, skip.hi) == (8, 9)


def test_age_is_measured_from_the_first_pending_event():
    b = Batcher(max_events=10, max_bytes=1000, after_seq=0)
    assert b.age(100.0) == 0.0
    b.add(item(1), 1)
    assert b.opened_at is not None and b.age(b.opened_at + 2.5) == 2.5


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Batcher(max_events=0, max_bytes=1, after_seq=0)


class RecordingStream:
    """A pack stream that records the items it was fed."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.finished = False

    def add(self, it: DeliveryItem) -> None:
        self.items.append(it.seq)

    def finish(self) -> str:
        self.finished = True
        return f"body of {self.items}"


def test_each_batch_gets_its_own_stream_fed_in_order():
    streams: list[RecordingStream] = []

    def open_stream() -> RecordingStream:
        streams.append(RecordingStream())
        return streams[-1]

    b = Batcher(max_events=100, max_bytes=25, after_seq=0, open_stream=open_stream)
    assert b.add(item(1), 10) is None and b.add(item(2), 10) is None
    (first,) = b.add(item(3), 10)  # would overflow: [1, 2] closes, 3 opens the next batch
    assert seqs(first) == [1, 2] and first.packed == "body of [1, 2]"
    assert [s.items for s in streams] == [[1, 2], [3]] and not streams[1].finished
    b.reset(5)  # a rewind: the open batch and its stream are dropped
    b.add(item(6), 10)
    last = b.close(6)
    assert seqs(last) == [6] and last.packed == "body of [6]" and len(streams) == 3
    assert b.close(6) is None  # nothing read since: no batch, no stream opened


def test_without_a_stream_batches_are_not_packed():
    b = Batcher(max_events=2, max_bytes=100, after_seq=0)
    b.add(DeliveryItem(1, {}, b"", b"", b"one"), 3)
    (full,) = b.add(DeliveryItem(2, {}, b"", b"", b"two"), 3)
    assert full.packed is None and [i.data for i in full.items] == [b"one", b"two"]
