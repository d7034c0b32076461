"""spool.recent: a drain's read answered from the rows this process appended last is exactly what
SQLite would have answered, and anything uncertain (duplicates, a refused batch, an old position) is
read from SQLite."""

from __future__ import annotations

import random

import pytest

from spool import Spool, SpoolFull
from spool.recent import RecentRows
from spool.store import SpoolReader
from spool.types import SpoolRow
from tests.spool.conftest import batch, events


def _rows(first: int, n: int) -> list[SpoolRow]:
    return [SpoolRow(first + i, b"id%d" % (first + i), 0, b"body%d" % (first + i)) for i in range(n)]


def test_after_answers_from_the_run_holding_the_next_seq_and_crosses_into_the_next_run():
    recent = RecentRows()
    recent.add(11, _rows(11, 5))  # 11..15
    recent.add(16, _rows(16, 5))  # 16..20
    assert [r.seq for r in recent.after(12, 100)] == list(range(13, 21))
    assert [r.seq for r in recent.after(12, 4)] == [13, 14, 15, 16]
    assert [r.seq for r in recent.after(15, 2)] == [16, 17]
    assert recent.after(20, 10) is None  # nothing after the newest row yet: SQLite decides
    assert recent.after(9, 10) is None  # seq 10 is older than anything held
    assert (recent.hits, recent.misses) == (3, 2)


def test_rows_the_spool_deleted_are_forgotten_to_the_seq_even_inside_a_run():
    recent = RecentRows()
    recent.add(11, _rows(11, 5))  # 11..15
    recent.add(16, _rows(16, 5))  # 16..20
    recent.forget_upto(13)  # drop_oldest or retention deleted every event up to 13
    assert recent.after(10, 100) is None and recent.after(12, 100) is None  # SQLite answers those
    assert [r.seq for r in recent.after(13, 100)] == list(range(14, 21))
    assert recent.rows == 7
    recent.forget_upto(30)
    assert recent.rows == 0 and recent.after(15, 10) is None


def test_after_stops_at_a_gap_between_runs():
    recent = RecentRows()
    recent.add(1, _rows(1, 3))
    recent.add(10, _rows(10, 3))  # 4..9 went to SQLite only (a transaction with duplicates)
    assert [r.seq for r in recent.after(0, 100)] == [1, 2, 3]
    assert recent.after(3, 100) is None
    assert [r.seq for r in recent.after(9, 100)] == [10, 11, 12]


def test_the_oldest_runs_go_first_past_max_rows_but_the_newest_always_stays():
    recent = RecentRows(max_rows=10)
    recent.add(1, _rows(1, 6))
    recent.add(7, _rows(7, 6))
    assert recent.after(0, 100) is None
    assert [r.seq for r in recent.after(6, 100)] == list(range(7, 13))
    recent.add(13, _rows(13, 25))  # one run larger than the bound is kept whole
    assert recent.after(12, 100) is not None and recent.after(6, 100) is None


class _Reader:
    """Any object a weak reference can point to stands for a reader."""


def test_rows_every_reader_has_gone_past_are_dropped():
    recent = RecentRows()
    fast, slow = _Reader(), _Reader()
    recent.add(1, _rows(1, 5))
    recent.add(6, _rows(6, 5))
    assert [r.seq for r in recent.after(0, 100, slow)] == list(range(1, 11))
    assert recent.after(10, 100, fast) is None and recent.rows == 10  # caught up; slow still at 0
    recent.after(5, 100, slow)  # the slow reader is done with 1..5: nobody needs that run now
    assert recent.rows == 5 and recent.after(0, 100) is None
    recent.after(10, 100, slow)
    assert recent.rows == 0
    recent.add(11, _rows(11, 5))
    assert [r.seq for r in recent.after(10, 100, fast)] == list(range(11, 16))
    del slow  # a reader that is gone holds nothing back
    recent.after(15, 100, fast)
    assert recent.rows == 0


def test_a_reader_behind_keeps_rows_up_to_the_bound():
    recent = RecentRows(max_rows=10)
    stuck = _Reader()
    recent.after(0, 100, stuck)
    for first in range(1, 30, 5):
        recent.add(first, _rows(first, 5))
    assert recent.rows == 10  # not more: the stuck reader reads SQLite when it moves again


def test_a_returned_list_is_the_readers_own():
    recent = RecentRows()
    recent.add(1, _rows(1, 4))
    got = recent.after(0, 2)
    got.append("x")
    assert [r.seq for r in recent.after(0, 10)] == [1, 2, 3, 4]


def _sqlite_only(spool: Spool) -> SpoolReader:
    return SpoolReader(spool.path)


def _same_read(reader: SpoolReader, plain: SpoolReader, pos: int, limit: int, *,
               through: bool = True) -> None:
    """One read is a prefix of SQLite's answer (a read from memory ends where the rows held end), never
    empty when SQLite has rows; reading on from there until caught up gives SQLite's rows exactly."""
    want = plain.read_after(pos, limit)
    got = reader.read_after(pos, limit)
    assert got == want[:len(got)] and (len(got) > 0) == (len(want) > 0)
    if not through:
        return
    stream, at = [], pos
    while rows := reader.read_after(at, limit):
        stream += rows
        at = rows[-1].seq
    assert stream == plain.read_after(pos, 10**9)


@pytest.mark.parametrize("seed", range(4))
def test_every_read_equals_sqlites_after_random_appends(spool_path, seed):
    """Appends of random sizes, some in one transaction (append_many), some holding duplicate ids;
    then a read from every position and of several limits, from the ring and from SQLite alone."""
    rnd = random.Random(seed)
    with Spool(spool_path) as s:
        reader, plain = s.reader(), _sqlite_only(s)
        sent = []
        for _ in range(40):
            groups = []
            for _ in range(rnd.choice((1, 1, 2, 3))):
                evs = events(rnd.randint(1, 200), size=rnd.randint(10, 400))
                if sent and rnd.random() < 0.15:
                    evs.insert(rnd.randrange(len(evs) + 1), rnd.choice(sent))  # already stored
                sent += evs
                groups.append(batch(evs))
            s.append_many(groups)
            pos = rnd.randint(0, s.last_seq())
            for limit in (1, 7, 1500):
                _same_read(reader, plain, pos, limit, through=limit > 7)
        last = s.last_seq()
        for pos in range(0, last + 1, 97):
            _same_read(reader, plain, pos, 500, through=False)
        _same_read(reader, plain, 0, 1500)
        assert s.recent.hits > 0 and s.recent.misses > 0
        reader.close()
        plain.close()


def test_a_transaction_with_a_duplicate_is_read_from_sqlite(spool_path):
    with Spool(spool_path) as s:
        first = events(5)
        s.append(batch(first))
        s.append(batch([*events(3), first[0]]))  # 3 new rows, 1 ignored
        assert s.recent.after(5, 10) is None
        assert [r.seq for r in s.reader().read_after(5, 10)] == [6, 7, 8]


def test_a_refused_batch_is_never_in_memory(spool_path):
    with Spool(spool_path, max_bytes=1_000_000) as s:
        s.append(batch(events(10, size=1000)))
        with pytest.raises(SpoolFull):
            s.append(batch(events(2000, size=1000)))
        reader = s.reader()
        assert [r.seq for r in reader.read_after(0, 5000)] == list(range(1, 11))
        assert reader.read_after(10, 5000) == []


def test_a_read_only_spool_keeps_no_rows(spool_path):
    Spool(spool_path).close()
    with Spool.open_readonly(spool_path) as ro:
        assert ro.recent is None


class _ReadBeforePublishing(RecentRows):
    """Reads through ``reader`` from ``pos`` at the instant an append has committed in SQLite and not
    yet published its rows here: where a drain woken by a timer can read."""

    __slots__ = ("pos", "reader", "seen")

    def add(self, first_seq, rows):
        if self.reader is not None:
            self.seen.append(self.reader.read_after(self.pos, 1500))
        super().add(first_seq, rows)


def _hooked(s: Spool) -> tuple[_ReadBeforePublishing, SpoolReader]:
    s.recent = hooked = _ReadBeforePublishing(committed=s.recent.committed)
    hooked.reader, hooked.seen = None, []
    return hooked, s.reader()


def test_a_read_between_commit_and_publishing_waits_for_the_rows_in_memory(spool_path):
    """Committed but not yet published: the reader, which had every earlier row, is told "nothing
    yet" rather than reading the rows back from SQLite, and then gets them from memory."""
    with Spool(spool_path) as s:
        hooked, reader = _hooked(s)
        s.append(batch(events(5)))
        assert [r.seq for r in reader.read_after(0, 1500)] == [1, 2, 3, 4, 5]
        hooked.reader, hooked.pos = reader, 5
        s.append(batch(events(4)))
        assert hooked.seen == [[]] and s.recent.waits == 1
        hooked.reader = None
        misses = s.recent.misses
        assert [r.seq for r in reader.read_after(5, 1500)] == [6, 7, 8, 9]
        assert s.recent.misses == misses  # from memory, not SQLite
        assert reader.read_after(9, 1500) == []  # caught up, no append running: asks SQLite
        assert s.recent.misses == misses + 1
        reader.close()


def test_a_reader_behind_reads_sqlite_while_an_append_runs(spool_path):
    """Rows stored before this process opened the spool are not "committed by an append under way":
    a reader behind them reads them at once, whatever is being appended."""
    with Spool(spool_path) as s:
        s.append(batch(events(10)))
    with Spool(spool_path) as s:
        hooked, reader = _hooked(s)
        hooked.reader, hooked.pos = reader, 0
        s.append(batch(events(3)))
        assert [r.seq for r in hooked.seen[0]] == list(range(1, 14))  # up to the committed, unpublished rows
        assert s.recent.waits == 0
        reader.close()


def test_rows_another_writer_appended_are_read_once_no_append_runs(spool_path):
    """Another handle's rows (a second writer of the same file) are not this process's: they are
    read from SQLite, after at most the wait for this process's running append, and in order."""
    with Spool(spool_path) as mine, Spool(spool_path) as other:
        reader = mine.reader()
        mine.append(batch(events(2)))
        assert len(reader.read_after(0, 1500)) == 2
        other.append(batch(events(3)))
        mine.recent.appending += 1  # an append of this process is under way
        assert reader.read_after(2, 1500) == []
        mine.recent.appending -= 1
        assert [r.seq for r in reader.read_after(2, 1500)] == [3, 4, 5]
        mine.append(batch(events(2)))
        assert [r.seq for r in reader.read_after(5, 1500)] == [6, 7]
        reader.close()


def test_a_drain_reader_keeps_a_small_page_cache(spool_path):
    """A drain's connection loses its cache at every commit of the appends: SQLite's 2 MB default only
    filled during catch-up reads, at the agent's memory peak (spool.store.READER_CACHE_KIB)."""
    from spool.store import READER_CACHE_KIB

    s = Spool(spool_path)
    try:
        reader = s.reader()
        assert reader._conn.execute("PRAGMA cache_size").fetchone()[0] == -READER_CACHE_KIB
        assert READER_CACHE_KIB < 2000  # below SQLite's default (-2000 KiB)
        reader.close()
    finally:
        s.close()
