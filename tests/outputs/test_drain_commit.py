"""Ordered cursor commit with pipelined batches: out-of-order completion never moves the cursor past an
unfinished batch, finished ranges are remembered, and a crash re-sends only the unfinished batches."""

from __future__ import annotations

import gevent
import pytest

from outputs.base import FilterConfig
from outputs.batcher import Batch
from outputs.drain import Drain
from outputs.inflight import CommitWindow
from spool.store import Spool
from tests.outputs.drain_kit import Fake, Gate, caught_up, cfg, fill, run_until, start, stop, wait_until


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def done_state(spool: Spool, name: str):
    state = spool.get_cursor_done(name)
    if state is None:
        return None
    return state[0].seq, state[1]


def test_window_commits_the_highest_contiguous_finished_batch():
    w = CommitWindow(0)
    b1, b2, b3 = Batch([], 1, 5), Batch([], 6, 10), Batch([], 11, 15)
    for b in (b1, b2, b3):
        w.register(b)
    assert w.finish(b3) is False and w.committed == 0
    assert w.done_ranges() == [(11, 15)]
    assert w.finish(b2) is False and w.done_ranges() == [(6, 15)]
    assert w.finish(b1) is True and w.committed == 15 and w.done_ranges() == [] and len(w) == 0


def test_window_refuses_a_gap_and_keeps_prior_ranges_until_passed():
    w = CommitWindow(0, prior_done=[(6, 10)])
    with pytest.raises(ValueError):
        w.register(Batch([], 2, 5))
    assert w.skip_range(7) == (6, 10) and w.skip_range(3) is None
    w.register(Batch([], 1, 5))
    assert w.done_ranges() == [(6, 10)]
    w.register(Batch([], 6, 10, done=True))
    assert w.prior_done == [] and w.done_ranges() == [(6, 10)]


def test_out_of_order_completion_never_moves_the_cursor_past_an_unfinished_batch(spool):
    fill(spool, 15)
    gate = Gate()
    out = Fake("f", cfg(concurrency=3), script=[gate])
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: sorted(out.received) == list(range(5, 15)))  # batches 2 and 3 delivered
    wait_until(lambda: done_state(spool, "f") == (0, [(6, 15)]))
    assert drain.stats.in_flight_batches == 1 and drain.stats.in_flight == 5
    gate.open()
    wait_until(caught_up(spool, "f"))
    stop(drain, g)
    assert done_state(spool, "f") == (15, [])
    assert sorted(out.received) == list(range(15))


def test_a_crash_re_sends_only_the_unfinished_batches(spool):
    fill(spool, 15)
    out = Fake("f", cfg(concurrency=3), script=[Gate()])  # batch 1 never finishes
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: done_state(spool, "f") == (0, [(6, 15)]))
    g.kill()  # the process dies: no orderly stop, no final commit
    after = Fake("f", cfg(concurrency=3))
    run_until(Drain(after, spool, spool.reader()), caught_up(spool, "f"))
    assert after.sent == [[0, 1, 2, 3, 4]]
    assert done_state(spool, "f") == (15, [])


def test_the_window_bounds_how_far_the_drain_runs_ahead_of_a_stuck_batch(spool):
    fill(spool, 60)
    gate = Gate()
    out = Fake("f", cfg(concurrency=2, batch_max_events=5), script=[gate])
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    window = drain._window_size  # concurrency + 2 batches registered at most
    wait_until(lambda: len(out.sent) == window)
    gevent.sleep(0.1)
    assert len(out.sent) == window  # nothing more is sent while the first batch blocks the cursor
    assert done_state(spool, "f") == (0, [(6, 5 * window)])
    gate.open()
    wait_until(caught_up(spool, "f"))
    stop(drain, g)
    assert sorted(out.received) == list(range(60))


def test_skipped_rows_move_the_cursor_without_sending(spool):
    fill(spool, 8, severity="info")
    out = Fake("f", cfg(filter=FilterConfig(min_severity="critical")))
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    assert out.sent == []
    assert spool.get_cursor("f").seq == 8


def test_a_rewind_resets_the_done_ranges(spool):
    fill(spool, 10)
    spool.ensure_cursor("f")
    assert spool.commit_cursor("f", 2, 0, done=[(5, 7)])
    assert done_state(spool, "f") == (2, [(5, 7)])
    spool.rewind("f", seq=1)
    assert done_state(spool, "f") == (1, [])
    assert spool.commit_cursor("f", 3, 0) is False  # old generation: compare-and-set refuses
