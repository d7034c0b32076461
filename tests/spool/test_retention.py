from spool import Spool
from tests.spool.conftest import batch, events

NOW = 10**15  # far after every ingest time: only cursors decide


def setup(s, n=20):
    s.append(batch(events(n)))
    for name in ("fast", "slow", "off"):
        s.ensure_cursor(name)
    s.commit_cursor("fast", 20, 0)
    s.commit_cursor("slow", 8, 0)
    s.commit_cursor("off", 2, 0)
    s.set_enabled("off", False)


def test_prune_respects_slowest_enabled_and_ignores_disabled(spool):
    setup(spool)
    assert spool.prune(retention_s=0, now=NOW) == 8
    assert spool.first_seq() == 9
    assert spool.prune(retention_s=0, now=NOW) == 0
    assert spool.counters()["pruned_total"] == 8


def test_unconfigured_cursors_do_not_hold_back_but_missing_configured_ones_do(spool):
    setup(spool)
    assert spool.prune(retention_s=0, enabled_outputs=["fast", "new"], now=NOW) == 0  # "new": no cursor yet
    assert spool.prune(retention_s=0, enabled_outputs=["fast"], now=NOW) == 20  # "slow" not configured
    assert spool.stats(["fast"])["cursors"]["slow"]["configured"] is False


def test_prune_keeps_the_retention_window(spool_path):
    with Spool(spool_path) as s:
        s.append(batch(events(5)))
        s.ensure_cursor("o", start="end")
        assert s.prune(retention_s=3600) == 0  # delivered, but ingested less than an hour ago
        assert s.prune(retention_s=0, now=NOW) == 5


def test_prune_in_chunks(spool):
    setup(spool)
    spool.commit_cursor("slow", 20, 0)
    assert spool.prune(retention_s=0, now=NOW, chunk_rows=3) == 20
    assert spool.first_seq() is None


def test_prune_returns_free_pages(spool_path):
    with Spool(spool_path) as s:
        for _ in range(20):
            s.append(batch(events(500, size=1000)))
        s.ensure_cursor("o", start="end")
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages_before = s._conn.execute("PRAGMA page_count").fetchone()[0]
        assert s.prune(retention_s=0, now=NOW) == 10_000
        free = s._conn.execute("PRAGMA freelist_count").fetchone()[0]
        pages_after = s._conn.execute("PRAGMA page_count").fetchone()[0]
        # ~10 MB of rows deleted: all of it fits the default 16 MiB reserve kept for reuse
        assert free * 16384 > 5_000_000 and pages_after == pages_before
        assert s.vacuum(keep_bytes=16384 * 10) == free - 10
        assert s._conn.execute("PRAGMA freelist_count").fetchone()[0] == 10
        assert s.vacuum(keep_bytes=0) == 10
        assert s._conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert s._conn.execute("PRAGMA page_count").fetchone()[0] == pages_after - free
