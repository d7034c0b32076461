"""Packed batches (outputs.packing): while every attempt is of the whole batch, the drain keeps only
its compressed request body, re-sends that same body, and gives the items their exact bytes back
before a part of the batch is sent (per-item retry, bisection)."""

from __future__ import annotations

import orjson
import pytest

import outputs.drain
import outputs.http
from outputs.base import DeliveryItem, Outcome
from outputs.drain import Drain
from outputs.http import GzipStream, Payload, gunzip_bytes, gzip_bytes
from outputs.packing import PackStream, pack, unpack
from spool.store import Spool
from tests.outputs.drain_kit import Fake, Gate, caught_up, cfg, fill, gated, run_until, wait_until


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def line(n: int) -> bytes:
    return orjson.dumps({"n": n}) + b"\n"


class PackingFake(Fake):
    """A Fake whose request body is its items' NDJSON lines joined and gzipped, as ES and HEC do.
    ``bodies`` records, per send, the event numbers read from the wire body, whether it came packed,
    and whether any item still held its data while a packed body was in flight."""

    send_reads_events = False  # as ES and HEC: the drain keeps no canonical copy in flight

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.payloads: list[Payload | None] = []
        self.bodies: list[list[int]] = []
        self.data_in_flight: list[bool] = []

    def encode(self, item: DeliveryItem) -> bytes:
        return orjson.dumps({"n": orjson.loads(item.body)["n"]}) + b"\n"

    def packer(self):
        return lambda parts: Payload(gzip_bytes(parts), True)

    def send(self, batch, packed=None):
        raw = gunzip_bytes(packed.data) if packed is not None else b"".join(i.data for i in batch)
        numbers = [orjson.loads(x)["n"] for x in raw.splitlines()]
        self.payloads.append(packed)
        self.bodies.append(numbers)
        self.data_in_flight.append(packed is not None and any(i.data for i in batch))
        return self.answer(batch, numbers)


class StreamingFake(PackingFake):
    """As ES and HEC with gzip by ISA-L: each batch's body is built as it fills (``pack_stream``)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.streams = 0

    def pack_stream(self):
        self.streams += 1
        return PackStream(GzipStream(1))


@pytest.fixture(params=[PackingFake, StreamingFake], ids=["packed-at-dispatch", "packed-while-filling"])
def fake(request):
    return request.param


@pytest.fixture
def unpacks(monkeypatch):
    calls: list[int] = []
    real = outputs.drain.unpack

    def counting(packed, items):
        calls.append(len(items))
        real(packed, items)

    monkeypatch.setattr(outputs.drain, "unpack", counting)
    return calls


def test_pack_then_unpack_gives_each_item_its_exact_bytes():
    items = [DeliveryItem(i, {}, b"", b"", line(i) * (40 * (i % 3)), None) for i in range(7)]
    want = [i.data for i in items]
    packed = pack(items, lambda parts: Payload(gzip_bytes(parts), True))
    assert all(i.data == b"" for i in items)
    assert len(packed.payload.data) < sum(map(len, want))
    unpack(packed, items)
    assert [i.data for i in items] == want


def test_an_uncompressed_body_unpacks_to_the_same_bytes():
    """``compression = "none"``: the packed body is the joined data itself, cut back the same way."""
    items = [DeliveryItem(i, {}, b"", b"", line(i) * (i % 4), None) for i in range(9)]
    want = [i.data for i in items]
    packed = pack(items, lambda parts: Payload(b"".join(parts), False))
    assert packed.payload.data == b"".join(want) and not any(i.data for i in items)
    unpack(packed, items)
    assert [i.data for i in items] == want


def test_a_delivered_batch_is_sent_packed_and_never_unpacked(spool, unpacks, fake):
    fill(spool, 12)
    out = fake("f", cfg(batch_max_events=5))
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.bodies == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert all(p is not None for p in out.payloads)
    assert out.data_in_flight == [False, False, False]  # the items' bytes were dropped while in flight
    assert unpacks == []


def test_a_retried_whole_batch_re_sends_the_same_body(spool, unpacks, fake):
    fill(spool, 4)
    retry = lambda batch: Outcome.retry("HTTP 503")  # noqa: E731
    out = fake("f", cfg(batch_max_events=4), script=[retry, retry])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.bodies == [[0, 1, 2, 3]] * 3
    assert out.payloads[0] is out.payloads[1] is out.payloads[2]  # neither joined nor compressed again
    assert unpacks == [] and out.received == [0, 1, 2, 3]


def test_a_per_item_retry_gets_its_items_exact_bytes_back(spool, unpacks, fake):
    fill(spool, 10)

    def partial(batch):
        return Outcome.partial("2 rejected (429)", failed=[batch[2]], retry_items=[batch[7], batch[8]],
                               throttled=True)

    out = fake("f", cfg(batch_max_events=10), script=[partial])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.bodies == [list(range(10)), [7, 8]]
    assert out.payloads[1] is None  # a part: sent from the items' data, restored from the body
    assert unpacks == [10]
    assert drain.stats.delivered == 9 and drain.stats.dlq == 1


def test_a_split_batch_is_bisected_with_exact_bytes(spool, unpacks, fake):
    fill(spool, 8)
    out = fake("f", cfg(batch_max_events=8))
    # what the wire body held, decoded from the body itself: a packed first attempt has no item data
    out.rule = lambda batch: Outcome.split("HTTP 413") if 5 in out.bodies[-1] else None
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.bodies == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [6, 7]]
    assert out.payloads[0] is not None and out.payloads[1:] == [None] * 6
    assert unpacks == [8]
    assert sorted(out.received) == [0, 1, 2, 3, 4, 6, 7] and drain.stats.dlq == 1


def test_an_output_that_raises_gets_the_same_body_again(spool, unpacks, fake):
    fill(spool, 3)

    def boom(batch):
        raise RuntimeError("output bug")

    out = fake("f", cfg(batch_max_events=3), script=[boom])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.bodies == [[0, 1, 2], [0, 1, 2]]
    assert out.payloads[0] is out.payloads[1] and out.received == [0, 1, 2]
    assert unpacks == []


def test_after_an_internal_error_the_batch_starts_over_from_its_packed_body(
    spool, unpacks, monkeypatch, fake):
    """The spool refusing a DLQ write restarts the batch's delivery (``_deliver_guarded``): the body
    kept on the batch is what goes out again, since its items' bytes were dropped."""
    fill(spool, 4)
    real_dlq_add, refusals = spool.dlq_add, []

    def dlq_add_once_refused(*a, **kw):
        if not refusals:
            refusals.append(1)
            raise OSError("disk full")
        return real_dlq_add(*a, **kw)

    monkeypatch.setattr(spool, "dlq_add", dlq_add_once_refused)
    partial = lambda batch: Outcome.partial("1 mapping error", failed=[batch[1]], retry_items=[])  # noqa: E731
    out = fake("f", cfg(batch_max_events=4), script=[partial, partial])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert refusals and out.bodies == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert out.payloads[0] is out.payloads[1]
    assert unpacks == [] and drain.stats.dlq == 1


def test_batches_waiting_for_a_send_slot_are_packed_already(spool):
    """Packing happens as a batch is dispatched, not when its greenlet first runs: with every send
    slot taken, the batches registered behind them hold no encoded events either."""
    fill(spool, 40)
    gate = Gate()
    out = PackingFake("f", cfg(batch_max_events=5, concurrency=2), rule=gate)
    with gated(Drain(out, spool, spool.reader()), gate) as drain:
        wait_until(lambda: gate.waiting == 2 and len(drain._window) == 3)
        waiting = list(drain._window._open)  # 2 sending, 1 waiting for a slot
        assert all(b.packed is not None for b in waiting)
        assert not any(i.data for b in waiting for i in b.items)
        gate.open()
        wait_until(caught_up(spool, "f"))
    assert sorted(out.received) == list(range(40))


def test_a_batch_that_cannot_be_packed_is_sent_unpacked(spool):
    fill(spool, 6)

    class Failing(PackingFake):
        def packer(self):
            def broken(parts):
                raise MemoryError("no room to compress")
            return broken

    out = Failing("f", cfg(batch_max_events=3))
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.bodies == [[0, 1, 2], [3, 4, 5]] and out.payloads == [None, None]


def test_a_stream_packs_exactly_what_pack_does():
    """The body built item by item as a batch fills is byte for byte the one ``pack`` builds from the
    closed batch: the same gzip groups, so a receiver cannot tell them apart."""
    items = [DeliveryItem(i, {}, b"", b"", line(i) * (3000 * (i % 5)), None) for i in range(60)]
    want = [i.data for i in items]
    copies = [DeliveryItem(i.seq, {}, b"", b"", i.data, None) for i in items]
    stream = PackStream(GzipStream(1))
    for it in items:
        stream.add(it)
    assert not any(i.data for i in items)  # dropped as each was added
    streamed = stream.finish()
    packed = pack(copies, lambda parts: Payload(gzip_bytes(parts, 1), True))
    assert streamed.payload.data == packed.payload.data and streamed.lengths == packed.lengths
    assert sum(map(len, want)) > 2 * outputs.http.GZIP_GROUP_BYTES  # several groups were compressed
    unpack(streamed, items)
    assert [i.data for i in items] == want


def test_the_open_batch_holds_its_events_compressed(spool):
    """A drain catching up fills its batch over several reads: with a stream, the events waiting in
    the open batch have no encoded bytes of their own, and the batch goes out with the body the
    stream built (one stream per batch, nothing packed again at dispatch)."""
    fill(spool, 30)
    gate = Gate()
    out = StreamingFake("f", cfg(batch_max_events=100, batch_max_wait=60.0), rule=gate)
    with gated(Drain(out, spool, spool.reader()), gate) as drain:
        wait_until(lambda: drain._batcher.pending == 30)
        assert not any(i.data for i in drain._batcher._items)
        assert out.streams == 1
        fill(spool, 70, start=30)  # the batch fills up and closes: 100 events
        gate.open()
        wait_until(caught_up(spool, "f"))
    assert out.bodies == [list(range(100))] and out.payloads[0] is not None
    assert out.data_in_flight == [False]
