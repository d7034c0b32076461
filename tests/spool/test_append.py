import pytest

from spool import AppendResult, IngestBatch, InputOffset, QuarantineRecord, Spool
from tests.spool.conftest import batch, events


def test_append_inserts_rows_in_order(spool):
    evs = events(5)
    assert spool.append(batch(evs, offset=50)) == AppendResult(5, 0)
    rows = spool.read_after(0, 100)
    assert [r.event_id for r in rows] == [e.event_id for e in evs]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert rows[0].body == evs[0].body and rows[0].ts_ms == evs[0].ts_ms
    assert spool.get_offsets("in")["k"].offset == 50


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257, 600, 1000])
def test_a_batch_of_any_size_is_stored_whole_and_in_order(spool, n):
    evs = [e._replace(body=b"body %d" % i) for i, e in enumerate(events(n))]
    assert spool.append(batch(evs)) == AppendResult(n, 0)
    rows = spool.read_after(0, 2 * n)
    assert [(r.seq, r.event_id, r.ts_ms, r.body) for r in rows] == [
        (i + 1, e.event_id, e.ts_ms, e.body) for i, e in enumerate(evs)]


def test_events_go_in_one_statement_per_up_to_256_not_one_per_row(spool_path):
    """Each statement step gives up the GIL and takes it back; per row, in the agent's threadpool,
    that hand-off could wait for the busy loop thread every time."""
    s = Spool(spool_path, offload=False)
    try:
        statements: list[str] = []
        s._conn.set_trace_callback(statements.append)
        s.append(batch(events(600)))
        inserts = [st for st in statements if st.startswith("INSERT OR IGNORE INTO events")]
        assert [st.count("(x'") for st in inserts] == [256, 256, 64, 16, 8]
    finally:
        s.close()


def test_an_event_that_is_not_a_triple_fails_the_batch_and_writes_nothing(spool):
    """Events are laid end to end as the statement's parameters: a wrong shape must not shift them."""
    evs = events(3)
    bad = [*evs[:2], (*evs[2], b"extra")]
    with pytest.raises(ValueError, match="triples"):
        spool.append(batch(bad, offset=9))  # type: ignore[arg-type]
    assert spool.read_after(0, 10) == []
    assert spool.get_offsets("in") == {}


def test_duplicates_inside_a_big_batch_and_already_stored_are_skipped_in_order(spool):
    evs = events(600)
    spool.append(batch(evs[::2]))  # 300 stored
    mixed = [e for pair in zip(evs, evs, strict=True) for e in pair]  # each twice, half stored already
    res = spool.append(batch(mixed))
    assert res == AppendResult(300, 900)
    rows = spool.read_after(300, 1000)
    assert [r.event_id for r in rows] == [e.event_id for e in evs[1::2]]
    assert spool.counters()["duplicates_total"] == 900


def test_duplicate_event_ids_are_ignored_and_counted(spool):
    evs = events(4)
    spool.append(batch(evs[:3]))
    res = spool.append(batch([*evs[1:], evs[3]]))  # 2 already stored, evs[3] twice in this batch
    assert res == AppendResult(1, 3)
    assert len(spool.read_after(0, 100)) == 4
    assert spool.counters()["duplicates_total"] == 3
    assert spool.stats()["duplicates_total"] == 3


def test_failure_mid_transaction_leaves_nothing(spool):
    spool.append(batch(events(2), offset=10))
    before = spool.read_after(0, 100)
    # The quarantine insert comes after the events and the offset; an unbindable value fails it.
    bad = IngestBatch(
        "in",
        events(3),
        [InputOffset("k", "/var/log/x.jsonl", 999)],
        [QuarantineRecord("x", 1, "bad", excerpt=object())],  # type: ignore[arg-type]
    )
    with pytest.raises(TypeError):
        spool.append(bad)
    assert spool.read_after(0, 100) == before
    assert spool.get_offsets("in")["k"].offset == 10
    assert spool.quarantine_list() == []
    assert not spool._conn.in_transaction


def test_append_many_is_one_transaction(spool):
    good = batch(events(2), input="a", offset=5)
    bad = IngestBatch("b", events(2), [InputOffset("k", "/p", object())])  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 - sqlite raises a ProgrammingError/TypeError here
        spool.append_many([good, bad])
    assert spool.read_after(0, 10) == []
    assert spool.get_offsets("a") == {}
    res = spool.append_many([good, batch(events(3), input="b", offset=7)])
    assert res == [AppendResult(2, 0), AppendResult(3, 0)]
    assert spool.append_commits == 1
    assert spool.get_offsets("b")["k"].offset == 7


def test_offsets_upsert_and_quarantine_in_same_append(spool):
    q = QuarantineRecord("/var/log/x.jsonl", 120, "invalid JSON: line 1", b"z" * 2000)
    spool.append(IngestBatch("in", [], [InputOffset("k", "/old", 1, b"m" * 32, 32)], [q]))
    spool.append(IngestBatch("in", [], [InputOffset("k", "/new", 2)], []))
    off = spool.get_offsets("in")["k"]
    assert (off.path, off.offset, off.marker, off.marker_len) == ("/new", 2, None, 0)
    (entry,) = spool.quarantine_list()
    assert entry.input == "in" and entry.offset == 120 and len(entry.excerpt) == 512
    assert spool.delete_offsets("in", ["k"]) == 1
    assert spool.get_offsets("in") == {}


def test_seq_never_reused_after_everything_pruned(spool_path):
    with Spool(spool_path) as s:
        s.append(batch(events(3)))
        s.ensure_cursor("o")
        s.commit_cursor("o", 3, 0)
        assert s.prune(retention_s=0, enabled_outputs=["o"], now=10**15) == 3
        s.append(batch(events(1)))
        assert s.read_after(3, 10)[0].seq == 4
