import logging
import os
import sqlite3

import pytest

from spool import AppendResult, Spool, SpoolFull
from spool.store import wal_limits
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


def _deliver(s: Spool, output: str, seq: int) -> None:
    cur = s.ensure_cursor(output)
    assert s.commit_cursor(output, seq, cur.generation)


def _fill(s: Spool, appends: int) -> None:
    """Appends of 100 KB: each transaction's WAL (inserts, and deletions to make room) stays well
    below the 3 MB limit it counts towards."""
    for _ in range(appends):
        assert s.append(batch(events(100, size=1000))) == AppendResult(100, 0)


@pytest.mark.parametrize("on_full", ["block", "drop_oldest"])
def test_a_full_spool_of_delivered_events_makes_room_before_retention(spool_path, on_full, caplog):
    """Retention keeps delivered events for replay; it must not stop ingest. A spool full of them
    refused every append for up to ``retention`` (24 h by default) while the outputs were caught up."""
    with Spool(spool_path, max_bytes=3_000_000, on_full=on_full) as s:
        _fill(s, 15)
        _deliver(s, "a", s.last_seq())
        _deliver(s, "b", 1200)  # the lowest cursor decides what is delivered
        s.set_retention_outputs(["a", "b"])
        caplog.set_level(logging.WARNING, logger="clawd.spool")
        _fill(s, 10)
        st = s.stats()
        assert st["db_bytes"] <= 3_000_000
        assert st["dropped_oldest_total"] == 0  # nothing undelivered went
        evicted = st["pruned_total"]
        assert 0 < evicted <= 1200 and st["first_seq"] == evicted + 1
        assert st["rows"] + evicted == 2500
        assert s.evicted_early == evicted
        warned = [r.getMessage() for r in caplog.records if "before their retention" in r.getMessage()]
        assert len(warned) == 1  # once while the spool stays full, not once per append


def test_block_refuses_once_only_undelivered_events_fill_the_spool(spool_path):
    with Spool(spool_path, max_bytes=3_000_000) as s:
        _fill(s, 15)
        _deliver(s, "a", 500)
        s.set_retention_outputs(["a"])
        with pytest.raises(SpoolFull, match="nothing dropped"):
            _fill(s, 20)
        st = s.stats()
        assert st["first_seq"] == 501 and st["pruned_total"] == 500  # every delivered one, no more
        assert st["dropped_oldest_total"] == 0


@pytest.mark.parametrize("outputs", [[], ["a", "missing"], None])
def test_only_what_every_enabled_output_delivered_makes_room(spool_path, outputs):
    """No enabled output (events wait for one), or an enabled output without a cursor: nothing was
    delivered. With ``None`` the enabled cursors decide, and a disabled one holds back nothing."""
    with Spool(spool_path, max_bytes=3_000_000) as s:
        _fill(s, 15)
        _deliver(s, "a", s.last_seq())
        _deliver(s, "off", 0)
        s.set_enabled("off", False)
        s.set_retention_outputs(outputs)
        if outputs is None:
            _fill(s, 10)
            assert s.stats()["pruned_total"] > 0
        else:
            with pytest.raises(SpoolFull):
                _fill(s, 10)
            assert s.stats()["pruned_total"] == 0 and s.stats()["first_seq"] == 1


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


def test_making_room_deletes_about_what_is_needed_even_where_deletes_write_the_wal(spool_path):
    """With SQLite zeroing deleted content (``secure_delete``, on in Debian's build) every page a
    deletion frees is written to the WAL. The loop that measured the WAL file again after each chunk
    saw it grow as fast as the used pages shrank (once dirty pages spill from the cache into the WAL,
    as they do in a large transaction), deleted every delivered event and still refused the append
    (in the 3,000,000-event benchmark run: 2 million events, and a WAL of 2 GiB)."""
    with Spool(spool_path, max_bytes=6_000_000, offload=False) as s:
        s._conn.execute("PRAGMA secure_delete = ON")
        s._conn.execute("PRAGMA cache_size = -100")  # KiB: dirty pages spill into the WAL mid-transaction
        s.set_retention_outputs(["a"])
        with pytest.raises(SpoolFull):  # up to the limit (nothing delivered yet)
            _fill(s, 80)
        _deliver(s, "a", s.last_seq())
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every frame from here grows the file
        before = s.stats()["rows"]
        assert s.append(batch(events(1500, size=1000))) == AppendResult(1500, 0)
        st = s.stats()
        assert 1000 <= st["pruned_total"] < before, (st["pruned_total"], before)  # not all of them
        assert st["rows"] == before + 1500 - st["pruned_total"]


def test_a_spool_full_because_of_its_wal_truncates_it_and_accepts_again(spool_path):
    """A reader that holds a snapshot stops checkpoints, and the WAL grows past its limit until the
    spool is full. Once the reader is gone, SQLite cuts the WAL back only when a write restarts it,
    and every write was an append refused because of the WAL: ingest stopped for good."""
    with Spool(spool_path, max_bytes=3_000_000, offload=False) as s:
        reader = sqlite3.connect(spool_path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
        with pytest.raises(SpoolFull):
            _fill(s, 40)
        limit = wal_limits(3_000_000, 4096)[1]  # journal_size_limit
        assert s.stats()["wal_bytes"] > limit
        reader.execute("ROLLBACK")
        reader.close()
        rows = s.stats()["rows"]
        accepted = 0
        for _ in range(3):  # the inputs retry a refused append
            try:
                _fill(s, 1)
                accepted += 1
            except SpoolFull:
                pass
        assert accepted >= 2 and s.stats()["rows"] == rows + 100 * accepted
        assert os.path.getsize(spool_path + "-wal") <= limit
