import sqlite3
import time

import gevent
import pytest

from spool import Cursor, RewindError, Spool
from tests.spool.conftest import batch, events


def fill(s, n, ts0=1_000):
    evs = events(n, ts_ms=ts0)
    s.append(batch(evs))
    return evs


def test_ensure_cursor_beginning_and_end(spool):
    fill(spool, 5)
    assert spool.ensure_cursor("a") == Cursor(0, 0)
    assert spool.ensure_cursor("b", start="end") == Cursor(5, 0)
    assert spool.ensure_cursor("b", start="beginning") == Cursor(5, 0)  # existing one unchanged
    assert spool.get_cursor("nope") is None


def test_commit_cursor_cas_loses_to_a_rewind(spool):
    fill(spool, 10)
    spool.ensure_cursor("o")
    assert spool.commit_cursor("o", 8, 0)
    # the CLI rewinds (generation 0 -> 1) while the drain loop still holds generation 0
    assert spool.rewind("o", seq=2) == (Cursor(8, 0), Cursor(2, 1))  # (before, after)
    assert spool.commit_cursor("o", 10, 0) is False
    assert spool.get_cursor("o") == Cursor(2, 1)
    assert spool.commit_cursor("o", 10, 1) is True
    assert spool.get_cursor("o") == Cursor(10, 1)


def test_rewind_cli_in_other_connection_beats_running_loop(spool_path):
    with Spool(spool_path) as agent, Spool(spool_path) as cli:
        fill(agent, 4)
        agent.ensure_cursor("o")
        agent.commit_cursor("o", 4, 0)
        cli.rewind("o", count=2)
        assert agent.commit_cursor("o", 4, 0) is False
        assert agent.get_cursor("o") == Cursor(2, 1)


def test_rewind_by_event_time(spool):
    fill(spool, 10, ts0=1_000)  # seq 1..10 have ts 1000..1009
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 10, 0)
    assert spool.rewind("o", since_ms=1_004) == (Cursor(10, 0), Cursor(4, 1))  # seq 5 (ts 1004) is re-sent
    # nothing that late: nothing more re-sent, and 5..10, due again since the rewind above, not skipped
    assert spool.rewind("o", since_ms=5_000) == (Cursor(4, 1), Cursor(4, 2))
    assert spool.rewind("o", since_ms=0) == (Cursor(4, 2), Cursor(0, 3))


def test_rewind_by_event_id_resends_that_event(spool):
    evs = fill(spool, 6)
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 6, 0)
    before, cur = spool.rewind("o", event_id=evs[3].event_id)
    assert (before, cur) == (Cursor(6, 0), Cursor(3, 1))
    assert spool.read_after(cur.seq, 1)[0].event_id == evs[3].event_id
    with pytest.raises(RewindError, match="not in the spool"):
        spool.rewind("o", event_id=b"\x00" * 16)


def test_rewind_by_count_and_by_seq(spool):
    fill(spool, 10)
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 7, 0)
    assert spool.rewind("o", count=3) == (Cursor(7, 0), Cursor(4, 1))
    assert spool.rewind("o", count=100) == (Cursor(4, 1), Cursor(0, 2))  # nothing pruned: back to the start
    assert spool.rewind("o", seq=9) == (Cursor(0, 2), Cursor(9, 3))
    with pytest.raises(RewindError, match="outside"):
        spool.rewind("o", seq=11)
    with pytest.raises(ValueError, match="exactly one"):
        spool.rewind("o", seq=1, count=1)
    with pytest.raises(RewindError, match="no cursor for output 'x'"):
        spool.rewind("x", seq=1)


def test_a_rewind_by_time_or_event_id_never_moves_a_lagging_cursor_forward(spool):
    """The output has delivered up to seq 2 only: "from ts 1005 on", "from event 8" or "from a time
    later than every event" must not skip its backlog 3.. (nothing delivered, nothing in the DLQ)."""
    evs = fill(spool, 10, ts0=1_000)  # seq 1..10, ts 1000..1009
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 2, 0)
    assert spool.rewind("o", since_ms=1_005) == (Cursor(2, 0), Cursor(2, 1))
    assert spool.rewind("o", since_ms=99_999) == (Cursor(2, 1), Cursor(2, 2))
    assert spool.rewind("o", event_id=evs[7].event_id) == (Cursor(2, 2), Cursor(2, 3))
    assert spool.rewind("o", event_id=evs[2].event_id)[1] == Cursor(2, 4)  # exactly the next one: same
    assert spool.rewind("o", seq=9) == (Cursor(2, 4), Cursor(9, 5))  # an explicit seq may skip forward


def test_a_clamped_rewind_clears_the_finished_ranges_so_the_requested_events_are_sent_again(spool):
    """Seq 5..8 were delivered ahead of a stuck seq 3: asked for "from seq 7 on", the cursor stays
    at 2 and 7..8 are sent again (with 5..6: at-least-once), not left as finished."""
    evs = fill(spool, 10)
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 2, 0, [(5, 8)])
    assert spool.rewind("o", event_id=evs[6].event_id) == (Cursor(2, 0), Cursor(2, 1))
    assert spool.get_cursor_done("o") == (Cursor(2, 1), [])


def test_a_rewind_by_time_of_a_cursor_behind_retention_leaves_it_there(spool):
    """A disabled cursor holds nothing back: events it never delivered were pruned. Asking it to
    replay from a retained time leaves it where it is (everything retained follows it anyway)."""
    fill(spool, 10, ts0=1_000)
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 2, 0)
    spool.set_enabled("o", False)
    assert spool.prune(retention_s=0, enabled_outputs=[], now=10**15) == 10
    fill(spool, 3, ts0=2_000)  # seq 11..13
    assert spool.rewind("o", since_ms=2_001) == (Cursor(2, 0), Cursor(2, 1))


def test_rewind_below_retention_is_refused_with_the_oldest_point(spool):
    fill(spool, 10, ts0=1_000)
    spool.ensure_cursor("o")
    spool.commit_cursor("o", 6, 0)
    assert spool.prune(retention_s=0, now=10**15) == 6
    for kwargs in ({"seq": 3}, {"count": 10}, {"since_ms": 1_000}):
        with pytest.raises(RewindError, match=r"oldest retained event is seq 7 \(event time 1006 ms"):
            spool.rewind("o", **kwargs)
    with pytest.raises(RewindError, match="oldest retained event is seq 7"):
        spool.rewind("o", event_id=events(1, start=1)[0].event_id)
    assert spool.get_cursor("o") == Cursor(6, 0)  # nothing changed
    assert spool.rewind("o", seq=6) == (Cursor(6, 0), Cursor(6, 1))  # the lowest allowed point
    assert spool.rewind("o", since_ms=1_006) == (Cursor(6, 1), Cursor(6, 2))


def test_enable_disable_list_delete(spool):
    spool.ensure_cursor("a")
    spool.ensure_cursor("b")
    assert spool.set_enabled("a", False) is True
    assert spool.set_enabled("zz", False) is False
    listed = {c.output: c.enabled for c in spool.list_cursors()}
    assert listed == {"a": False, "b": True}
    assert spool.delete_cursor("a") is True
    assert [c.output for c in spool.list_cursors()] == ["b"]


def test_cursor_commits_skip_the_fsync_and_event_appends_keep_it(spool_path):
    """A lost cursor commit only re-sends events; a lost event is lost. In WAL mode a NORMAL commit
    skips its fsync and the next FULL append's fsync covers it. Without the threadpool (``offload``
    off) the cursor is committed on the appends' connection, switched to NORMAL for it."""
    s = Spool(spool_path, durability="full", offload=False)
    try:
        statements: list[str] = []
        s._conn.set_trace_callback(statements.append)
        fill(s, 3)
        s.ensure_cursor("o")
        statements.clear()
        assert s.commit_cursor("o", 2, 0)
        assert statements[0] == "PRAGMA synchronous = NORMAL"
        assert statements[-1] == "PRAGMA synchronous = 2"  # back to FULL for what comes next
        statements.clear()
        fill(s, 1)
        assert not any(st.startswith("PRAGMA synchronous") for st in statements)
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert s.get_cursor("o") == Cursor(2, 0)
    finally:
        s.close()
    again = Spool(spool_path, durability="full")  # committed, and visible after a reopen
    try:
        assert again.get_cursor("o") == Cursor(2, 0)
    finally:
        again.close()


def test_cursor_commits_run_in_the_loop_on_a_connection_that_never_syncs_or_checkpoints(spool_path):
    """With the threadpool (the agent), a cursor commit runs right in the calling greenlet on a
    second connection: NORMAL (no fsync), no automatic checkpoint (that stays with the appends, in
    the threadpool), and nothing on the appends' connection."""
    s = Spool(spool_path, durability="full")
    try:
        fill(s, 3)
        s.ensure_cursor("o")
        statements: list[str] = []
        s._conn.set_trace_callback(statements.append)
        assert s.commit_cursor("o", 2, 0)
        assert statements == []
        assert s._quick is not None
        assert s._quick.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert s._quick.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert s._quick.execute("PRAGMA busy_timeout").fetchone()[0] == 0  # never waits in the loop
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert s.get_cursor("o") == Cursor(2, 0)
        assert s.rewind("o", seq=1) == (Cursor(2, 0), Cursor(1, 1))
        assert s.commit_cursor("o", 3, 0) is False  # still a compare-and-set
    finally:
        s.close()
    again = Spool(spool_path, durability="full")
    try:
        assert again.get_cursor("o") == Cursor(1, 1)
    finally:
        again.close()


def test_a_cursor_commit_never_blocks_the_loop_while_another_process_writes(spool_path):
    """Another process (the CLI) holding SQLite's write lock makes the in-loop connection answer
    busy at once; the commit then waits in the threadpool while the loop keeps running."""
    s = Spool(spool_path)
    cli = sqlite3.connect(spool_path, isolation_level=None)
    try:
        fill(s, 3)
        s.ensure_cursor("o")
        cli.execute("BEGIN IMMEDIATE")
        ticks: list[float] = []

        def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                gevent.sleep(0.01)

        def cli_commits_later() -> None:
            gevent.sleep(0.3)
            cli.execute("COMMIT")

        t = gevent.spawn(ticker)
        later = gevent.spawn(cli_commits_later)
        assert s.commit_cursor("o", 2, 0)
        t.kill()
        later.join()
        assert s.quick_busy == 1
        assert len(ticks) >= 10  # ~30 ticks: the loop ran while the commit waited for the CLI
        assert s.get_cursor("o") == Cursor(2, 0)
    finally:
        cli.close()
        s.close()
