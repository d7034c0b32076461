"""spool.store: with the threadpool (the agent), the WAL is checkpointed beside the appends, in a thread
of its own, and restarted, so it stays about one checkpoint's size; a small spool, and a spool without
the threadpool, keep SQLite's checkpoint in the COMMIT."""

from __future__ import annotations

import logging
import os
import sqlite3
import time

import gevent

from spool import Spool
from spool.store import FALLBACK_CHECKPOINT_FACTOR
from tests.spool.conftest import batch, events

MiB = 1024 * 1024


def _wal_size(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


def _settle(s: Spool) -> None:
    """Let a checkpoint running in the threadpool finish (its result is handed over in the hub)."""
    deadline = time.monotonic() + 30  # tells a checkpoint that never ends from a slow machine
    while s._ckpt_pending is not None:
        assert time.monotonic() < deadline, "the background checkpoint never finished"
        gevent.sleep(0.01)


def test_the_wal_is_checkpointed_beside_the_appends_and_restarted(spool_path):
    with Spool(spool_path) as s:
        assert s._checkpoint_bytes is not None
        s._checkpoint_bytes = 512 * 1024  # instead of 16 MiB: the same path with a smaller test
        appended = []
        for _ in range(60):
            evs = events(100, size=1000)
            s.append(batch(evs))
            appended += evs
            gevent.sleep(0.005)  # an agent's loop runs between appends
        _settle(s)
        assert s.background_checkpoints >= 3 and s.checkpoint_error == ""
        # ~6.5 MB appended; SQLite's own checkpoint would only run past 2 x 16 MiB of WAL
        assert _wal_size(spool_path) < 3 * MiB
        rows = s.read_after(0, 10**6)
        assert [(r.event_id, r.body) for r in rows] == [(e.event_id, e.body) for e in appended]
    with sqlite3.connect(spool_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 6000


def test_the_appends_checkpoint_themselves_only_past_the_fallback(spool_path):
    with Spool(spool_path) as s:
        pages = s._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages * s._conn.execute("PRAGMA page_size").fetchone()[0] == (
            FALLBACK_CHECKPOINT_FACTOR * s._checkpoint_bytes)


def test_a_small_spool_and_one_without_the_threadpool_checkpoint_in_the_commit(spool_path, tmp_path):
    for s in (Spool(spool_path, max_bytes=64 * MiB), Spool(str(tmp_path / "inline.db"), offload=False)):
        with s:
            assert s._checkpoint_bytes is None
            for _ in range(40):
                s.append(batch(events(100, size=1000)))
            assert s.background_checkpoints == 0 and s._ckpt_pending is None


def test_close_waits_for_the_checkpoint_in_progress(spool_path):
    s = Spool(spool_path)
    for _ in range(20):
        s.append(batch(events(100, size=1000)))
    s._start_checkpoint()
    assert s._ckpt_pending is not None
    s.close()
    assert s._ckpt_conn is not None
    with Spool(spool_path) as again:
        assert again.stats()["rows"] == 2000


def test_a_failed_checkpoint_is_reported_and_the_appends_go_on(spool_path, caplog, monkeypatch):
    with Spool(spool_path) as s:
        def fail() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(s, "_checkpoint", fail)
        s._checkpoint_bytes = 64 * 1024
        caplog.set_level(logging.WARNING, logger="clawd.spool")
        for _ in range(5):
            s.append(batch(events(100, size=1000)))
            _settle(s)
        assert s.background_checkpoints == 0
        assert s.checkpoint_error == "OperationalError: disk I/O error"
        assert any("background checkpoint failed" in r.getMessage() for r in caplog.records)
        assert s.stats()["rows"] == 500


class _AppendAfterPassive:
    """The checkpoint's connection, with an append landing between its PASSIVE and RESTART steps:
    what the loop's appends do in the agent, made deterministic here."""

    def __init__(self, conn: sqlite3.Connection, append: object):
        self._conn = conn
        self._append = append

    def execute(self, sql: str) -> sqlite3.Cursor:
        cur = self._conn.execute(sql)
        if "PASSIVE" in sql:
            self._append()  # type: ignore[operator]
        return cur


def test_frames_appended_during_the_checkpoint_do_not_keep_the_wal_growing(spool_path):
    """After a background checkpoint the next append starts the WAL again from its beginning, even when
    an append landed while it copied: its frames are copied too (the RESTART step). The first step
    alone (PASSIVE) leaves them, and every later append then goes on at the WAL's end, until the
    appends' own fallback checkpoint at 2 x 16 MiB."""
    with Spool(spool_path) as s:
        for _ in range(10):
            s.append(batch(events(100, size=1000)))
        writer = sqlite3.connect(spool_path, isolation_level=None)
        writer.execute("CREATE TABLE meanwhile (x BLOB)")
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty WAL file: its growth is visible
        assert _wal_size(spool_path) == 0
        conn = sqlite3.connect(spool_path, isolation_level=None, check_same_thread=False)
        s._ckpt_conn = _AppendAfterPassive(conn, lambda: writer.execute(  # type: ignore[assignment]
            "INSERT INTO meanwhile VALUES (randomblob(200000))"))
        s._checkpoint()
        after_checkpoint = _wal_size(spool_path)  # the frames of the append made meanwhile
        writer.execute("INSERT INTO meanwhile VALUES (randomblob(100))")
        after_next_append = _wal_size(spool_path)
        writer.close()
        conn.close()
        s._ckpt_conn = None
    assert after_checkpoint > 200000
    assert after_next_append == after_checkpoint, "the next append went on at the WAL's end"
