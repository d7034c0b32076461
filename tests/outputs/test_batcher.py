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
