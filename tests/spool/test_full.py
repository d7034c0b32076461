import logging

import pytest

from spool import AppendResult, Spool, SpoolFull
from tests.spool.conftest import batch, events


def test_block_raises_spool_full_and_keeps_nothing_partial(spool_path):
    with Spool(spool_path, max_bytes=1_000_000) as s:
        s.append(batch(events(10, size=1000), offset=10))
        before = s.read_after(0, 1000)
        with pytest.raises(SpoolFull, match="max_bytes 1000000"):
            s.append(batch(events(2000, size=1000), offset=99, quarantine=[]))
        assert s.read_after(0, 1000) == before
        assert s.get_offsets("in")["k"].offset == 10
        assert s.counters()["dropped_oldest_total"] == 0
        assert s.append(batch(events(1), offset=11)) == AppendResult(1, 0)  # still usable


def test_drop_oldest_drops_counts_and_warns(spool_path, caplog):
    with Spool(spool_path, max_bytes=3_000_000, on_full="drop_oldest") as s:
        s.ensure_cursor("o")  # nothing delivered: the drops are undelivered events
        for _ in range(10):
            s.append(batch(events(500, size=1000)))
        caplog.set_level(logging.WARNING, logger="clawd.spool")
        new = events(500, size=1000)
        assert s.append(batch(new, offset=7)) == AppendResult(500, 0)
        st = s.stats()
        assert st["db_bytes"] <= 3_000_000  # checked inside the append; the WAL may hold one more batch
        dropped = st["dropped_oldest_total"]
        assert dropped > 0
        assert st["first_seq"] == dropped + 1  # the oldest went first
        assert [r.event_id for r in s.read_after(0, 10**6)][-500:] == [e.event_id for e in new]
        assert st["rows"] + dropped == 5500
        assert any("dropped the" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_drop_oldest_refuses_a_batch_bigger_than_the_limit(spool_path):
    with Spool(spool_path, max_bytes=1_500_000, on_full="drop_oldest") as s:
        s.append(batch(events(10, size=1000)))
        with pytest.raises(SpoolFull, match="even after dropping"):
            s.append(batch(events(2000, size=1000)))
        assert s.stats()["rows"] == 10  # the drop was rolled back with the batch
        assert s.counters()["dropped_oldest_total"] == 0


@pytest.mark.parametrize("offload", [False, True])
def test_disk_full_sqlite_full_becomes_spool_full(spool_path, offload):
    with Spool(spool_path, offload=offload) as s:
        s.append(batch(events(10, size=1000), offset=10))
        pages = s._conn.execute("PRAGMA page_count").fetchone()[0]
        s._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite then reports SQLITE_FULL
        before = s.read_after(0, 1000)
        with pytest.raises(SpoolFull, match=r"disk full \(database or disk is full"):
            s.append(batch(events(3000, size=1000), offset=99))
        assert not s._conn.in_transaction
        assert s.read_after(0, 1000) == before
        assert s.get_offsets("in")["k"].offset == 10
        s._conn.execute("PRAGMA max_page_count = 1073741823")
        assert s.append(batch(events(5), offset=12)) == AppendResult(5, 0)
