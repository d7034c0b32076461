import gevent
import gevent.event
import pytest

from spool import AppendResult, Spool, SpoolError, SpoolFull, SpoolWriter
from tests.spool.conftest import batch, events


class GatedSpool(Spool):
    """A real spool whose group commit waits for a gate, so tests can see who is blocked."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.gate = gevent.event.Event()
        self.groups: list[int] = []

    def append_many(self, batches):
        self.gate.wait()
        self.groups.append(len(batches))
        return super().append_many(batches)


def test_concurrent_writers_share_one_transaction_and_unblock_after_commit(spool_path):
    s = GatedSpool(spool_path)
    w = SpoolWriter(s, max_events=10_000).start()
    done = []

    def writer(i):
        res = w.write(batch(events(10), input=f"in{i}", offset=i))
        done.append((i, res))

    first = gevent.spawn(writer, 0)
    gevent.sleep(0.01)  # the writer took batch 0 and waits at the gate
    others = [gevent.spawn(writer, i) for i in range(1, 6)]
    gevent.sleep(0.01)
    assert done == []  # nobody returns before its transaction committed
    assert s.append_commits == 0
    s.gate.set()
    gevent.joinall([first, *others], raise_error=True)
    assert s.groups == [1, 5]  # the five that queued meanwhile went in ONE transaction
    assert s.append_commits == 2 and w.commits == 2
    assert sorted(i for i, _ in done) == list(range(6))
    assert all(r == AppendResult(10, 0) for _, r in done)
    assert len(s.read_after(0, 1000)) == 60
    w.stop()
    s.close()


def test_group_respects_max_events(spool_path):
    s = GatedSpool(spool_path)
    w = SpoolWriter(s, max_events=25).start()
    gs = [gevent.spawn(w.write, batch(events(10))) for _ in range(6)]
    gevent.sleep(0.01)
    s.gate.set()
    gevent.joinall(gs, raise_error=True)
    assert s.groups == [2, 2, 2]  # all six queued before the first commit; 25 events fit two
    w.stop()
    s.close()


def test_spool_full_is_raised_to_the_caller_only(spool_path):
    s = Spool(spool_path, max_bytes=2_000_000)
    w = SpoolWriter(s).start()
    big = batch(events(40, size=100_000), input="big", offset=1)
    small = batch(events(2), input="small", offset=2)
    g_big = gevent.spawn(w.write, big)
    g_small = gevent.spawn(w.write, small)
    gevent.joinall([g_big, g_small])
    assert isinstance(g_big.exception, SpoolFull)
    assert g_small.value == AppendResult(2, 0)
    assert s.get_offsets("big") == {}
    assert s.get_offsets("small")["k"].offset == 2
    w.stop()
    s.close()


def test_flush_and_stop_commit_pending_batches(spool_path):
    s = Spool(spool_path)
    w = SpoolWriter(s, max_delay_s=0.05).start()
    gs = [gevent.spawn(w.write, batch(events(3))) for _ in range(4)]
    gevent.sleep(0)
    w.flush()
    assert len(s.read_after(0, 100)) == 12
    more = [gevent.spawn(w.write, batch(events(2))) for _ in range(3)]
    gevent.sleep(0)
    w.stop()
    gevent.joinall(gs + more, raise_error=True)
    assert len(s.read_after(0, 100)) == 18
    with pytest.raises(SpoolError, match="not running"):
        w.write(batch(events(1)))
    s.close()


def test_a_flush_while_the_writer_stops_returns_once_the_pending_batches_committed(spool_path):
    s = GatedSpool(spool_path)
    w = SpoolWriter(s).start()
    writes = [gevent.spawn(w.write, batch(events(2), input=f"in{i}")) for i in range(3)]
    gevent.sleep(0.01)  # the first group waits at the gate
    stopping = gevent.spawn(w.stop)
    gevent.sleep(0.01)
    flushing = gevent.spawn(w.flush)
    gevent.sleep(0.01)
    assert not flushing.ready()  # waits: the batches queued before it are not committed yet
    s.gate.set()
    gevent.joinall([*writes, stopping, flushing], raise_error=True)
    assert len(s.read_after(0, 100)) == 6
    s.close()


def test_linger_merges_batches_that_arrive_within_max_delay(spool_path):
    s = Spool(spool_path, offload=False)
    w = SpoolWriter(s, max_events=1000, max_delay_s=0.2).start()

    def late(delay):
        gevent.sleep(delay)
        w.write(batch(events(5)))

    gevent.joinall([gevent.spawn(late, 0), gevent.spawn(late, 0.02)], raise_error=True)
    assert w.commits == 1 and w.batches_committed == 2
    w.stop()
    s.close()
