"""The drain batches by event count, encoded bytes and age, with per-output byte defaults."""

from __future__ import annotations

import gevent
import pytest

from outputs.drain import Drain
from spool.store import Spool
from tests.outputs.drain_kit import Fake, caught_up, cfg, fill, run_until, start, stop, wait_until


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def test_batches_by_event_count(spool):
    fill(spool, 12)
    out = Fake("f", cfg(batch_max_events=5))
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    assert out.sent == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]


def test_batches_by_encoded_bytes_and_sends_an_oversized_event_alone(spool):
    fill(spool, 7)
    out = Fake("f", cfg(batch_max_events=100, batch_max_bytes=100), size=30)
    big = {3}
    orig = out.encode
    out.encode = lambda item: b"x" * 250 if item.seq - 1 in big else orig(item)
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    # 30-byte events: three fit in 100 bytes; the 250-byte event goes alone
    assert out.sent == [[0, 1, 2], [3], [4, 5, 6]]


def test_byte_limit_defaults_to_the_outputs_vendor_limit(spool):
    class Small(Fake):
        default_batch_max_bytes = 64

    out = Small("f", cfg(batch_max_events=100), size=20)
    drain = Drain(out, spool, spool.reader())
    assert drain.max_bytes == 64
    fill(spool, 6)
    run_until(drain, caught_up(spool, "f"))
    assert out.sent == [[0, 1, 2], [3, 4, 5]]
    assert Drain(Fake("g", cfg(batch_max_bytes=1000)), spool, spool.reader()).max_bytes == 1000


def test_a_partial_batch_waits_up_to_batch_max_wait_for_more_events(spool):
    fill(spool, 3)
    out = Fake("f", cfg(batch_max_events=6, batch_max_wait=30))
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    gevent.sleep(0.1)
    assert out.sent == []  # three events wait for company
    fill(spool, 3, start=3)
    wait_until(lambda: out.sent)
    stop(drain, g)
    assert out.sent == [[0, 1, 2, 3, 4, 5]]


def test_without_batch_max_wait_a_partial_batch_goes_at_once(spool):
    fill(spool, 3)
    out = Fake("f", cfg(batch_max_events=6, batch_max_wait=0))
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: out.sent == [[0, 1, 2]])
    fill(spool, 3, start=3)
    wait_until(caught_up(spool, "f"))
    stop(drain, g)
    assert out.sent == [[0, 1, 2], [3, 4, 5]]


def test_concurrency_defaults_to_the_output_class(spool):
    class Http(Fake):
        default_concurrency = 4

    assert Drain(Http("h", cfg()), spool, spool.reader()).concurrency == 4
    assert Drain(Http("h", cfg(concurrency=2)), spool, spool.reader()).concurrency == 2
    assert Drain(Fake("f", cfg()), spool, spool.reader()).concurrency == 1


def test_events_that_left_their_body_behind_reach_the_dlq_with_it(spool):
    """In flight an encoded-only output keeps no canonical copy; a permanent failure still stores
    the spool's exact body in the DLQ (taken from ``events`` in the same transaction)."""
    from outputs.base import FilterConfig, Outcome

    class Lean(Fake):
        send_reads_events = False

    fill(spool, 3)
    bodies = {r.seq: r.body for r in spool.read_after(0, 10)}
    out = Lean("f", cfg(filter=FilterConfig(min_severity="info")),
               rule=lambda b: Outcome.permanent("mapping error", [i for i in b if i.seq == 2]))
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    [entry] = spool.dlq_list("f")
    assert entry.seq == 2 and entry.body == bodies[2] and entry.reason == "mapping error"


def test_an_output_that_only_encodes_from_events_gets_bytes_in_send(spool):
    from outputs.base import FilterConfig

    class Lean(Fake):
        send_reads_events = False

    fill(spool, 4)
    seen: list = []
    keep: list = []
    filt = FilterConfig(min_severity="info", exclude_event_types=["x"])
    lean = Lean("f", cfg(filter=filt), rule=lambda b: seen.extend((i.event, i.body, bool(i.data)) for i in b))
    drain = Drain(lean, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert drain._decode is True  # the filter needed the events...
    assert seen == [({}, b"", True)] * 4  # ...but batches in flight keep only the encoded bytes
    default = Fake("g", cfg(filter=filt), rule=lambda b: keep.extend(i.event["n"] for i in b))
    run_until(Drain(default, spool, spool.reader()), caught_up(spool, "g"))
    assert keep == [0, 1, 2, 3]  # an output that reads events in send() still gets them


class _Trickle:
    """A reader over a stream that never pauses: each read takes a few ms and finds a few new rows."""

    def __init__(self, reader, rows_per_read: int = 10, seconds_per_read: float = 0.005):
        self.reader, self.rows, self.seconds = reader, rows_per_read, seconds_per_read
        self.pos = 0

    def read_after(self, seq: int, limit: int):
        gevent.sleep(self.seconds)
        rows = self.reader.read_after(seq, min(limit, self.rows))
        if rows:
            self.pos = rows[-1].seq
        return rows

    def __getattr__(self, name):
        return getattr(self.reader, name)


def test_a_partial_batch_leaves_after_batch_max_wait_while_filtered_rows_keep_coming(spool):
    """Before, the age of a pending batch was looked at only when a read found nothing: behind a
    stream of rows the filter skips (a backlog, a busy host), a critical event waited for the stream
    to pause or for batch_max_events more matches, however long that took."""
    from outputs.base import FilterConfig

    fill(spool, 1, severity="critical", allowed=False)
    fill(spool, 400, start=1)
    reader = _Trickle(spool.reader())
    seen_at: list[int] = []
    out = Fake("f", cfg(batch_max_events=100, batch_max_wait=0.02,
                        filter=FilterConfig(min_severity="critical")),
               rule=lambda batch: seen_at.append(reader.pos))
    run_until(Drain(out, spool, reader), caught_up(spool, "f"))
    assert out.sent == [[0]]
    assert seen_at[0] < 200, f"sent only once the reader reached seq {seen_at[0]} of 401"
