from spool import IngestBatch, QuarantineRecord, Spool
from tests.spool.conftest import batch, events


def test_quarantine_round_trip_counts_and_purge(spool):
    spool.append(IngestBatch("a", [], [], [QuarantineRecord("/f1", 10, "invalid JSON: x", b"{bad")]))
    spool.append(IngestBatch("b", [], [], [QuarantineRecord("sock", None, "r" * 5000, b"")] * 2))
    newest = spool.quarantine_list(limit=10)
    assert [e.input for e in newest] == ["b", "b", "a"]
    only_a = spool.quarantine_list(input="a")
    assert len(only_a) == 1
    got = spool.quarantine_get(only_a[0].id)
    assert got == only_a[0]
    assert (got.source, got.offset, got.reason, got.excerpt) == ("/f1", 10, "invalid JSON: x", b"{bad")
    assert len(newest[0].reason) == 1000
    assert spool.quarantine_counts() == {"a": 1, "b": 2}
    assert spool.quarantine_purge(older_than_ms=1) == 0
    assert spool.quarantine_purge(input="b") == 2
    assert spool.quarantine_purge() == 1
    assert spool.quarantine_get(got.id) is None


def test_dlq_round_trip_take_done_purge_and_counts(spool):
    spool.append(batch(events(5)))
    rows = spool.read_after(0, 5)
    assert spool.dlq_add("splunk", rows[:3], "HTTP 400: invalid event", b"x" * 4000, attempts=3) == 3
    assert spool.dlq_add("es", rows[3:], "mapping error", "resp") == 2
    listed = spool.dlq_list("splunk")
    assert [e.seq for e in listed] == [r.seq for r in rows[:3]]
    e = spool.dlq_get(listed[0].id)
    assert (e.body, e.event_id, e.attempts, len(e.response_excerpt)) == (
        rows[0].body,
        rows[0].event_id,
        3,
        512,
    )
    counts = spool.dlq_counts()
    assert counts["splunk"]["count"] == 3 and counts["splunk"]["last_reason"] == "HTTP 400: invalid event"
    assert counts["es"]["count"] == 2
    assert spool.read_output_states()["splunk"].dlq_total == 3
    taken = spool.dlq_take("splunk", [listed[0].id, listed[1].id])
    assert [t.id for t in taken] == [listed[0].id, listed[1].id]
    assert spool.dlq_take("es", [listed[0].id]) == []  # ids of another output are not taken
    assert len(spool.dlq_list("splunk")) == 3  # still there until the replay succeeded
    assert spool.dlq_done([t.id for t in taken]) == 2
    assert len(spool.dlq_take("splunk")) == 1
    assert spool.dlq_purge(output="es") == 2
    assert spool.dlq_purge() == 1
    assert spool.dlq_counts() == {}


def test_output_and_agent_state_persist(spool_path):
    with Spool(spool_path) as s:
        s.record_output_state("o", success_ms=5, delivered=10, extra={"batches": 2})
        s.record_output_state("o", error_ms=7, error="HTTP 503", failed=1, delivered=5)
        s.set_agent_state(pid=123, started_ms=1, heartbeat_ms=2)
        assert s.get_input_stats() == {}
        s.set_input_stats({"tail": {"ingested": 7}})
    with Spool.open_readonly(spool_path) as ro:
        st = ro.read_output_states()["o"]
        assert (st.last_success_ms, st.last_error_ms, st.last_error) == (5, 7, "HTTP 503")
        assert (st.delivered_total, st.failed_total, st.extra) == (15, 1, {"batches": 2})
        assert ro.get_agent_state() == {"pid": 123, "started_ms": 1, "heartbeat_ms": 2}
        assert ro.get_input_stats() == {"tail": {"ingested": 7}}
    with Spool(spool_path) as s:
        s.clear_agent_state()
        assert s.get_agent_state() is None


def test_dlq_rows_without_a_body_take_it_from_the_events_table(spool):
    """Outputs that keep only encoded bytes in flight hand their failed events over without bodies."""
    from spool.types import SpoolRow

    spool.append(batch(events(3)))
    rows = spool.read_after(0, 3)
    bare = [SpoolRow(r.seq, r.event_id, r.ts_ms, b"") for r in rows[:2]]
    gone = SpoolRow(rows[-1].seq + 100, b"\x01" * 16, 0, b"")  # dropped from the spool meanwhile
    assert spool.dlq_add("es", [*bare, gone], "mapping error") == 3
    listed = spool.dlq_list("es")
    assert [e.body for e in listed[:2]] == [r.body for r in rows[:2]]
    assert listed[2].body == b"" and listed[2].reason == "mapping error (event body no longer in the spool)"
    assert [e.reason for e in listed[:2]] == ["mapping error"] * 2
