from spool import IngestBatch, QuarantineRecord, Spool
from spool import schema as spool_schema
from tests.spool.conftest import batch, events


def test_stats_counts_lag_and_settings(spool_path):
    with Spool(spool_path, max_bytes=50_000_000, durability="normal") as s:
        s.append(batch(events(10), offset=42))
        s.append(IngestBatch("in", [], [], [QuarantineRecord("f", 1, "bad", b"x")]))
        s.ensure_cursor("done")
        s.commit_cursor("done", 10, 0)
        s.ensure_cursor("behind")
        s.commit_cursor("behind", 4, 0)
        s.ensure_cursor("old")
        s.set_enabled("old", False)
        s.dlq_add("behind", s.read_after(0, 1), "bad", b"")
        ingested = s._conn.execute("SELECT ingested_ms FROM events WHERE seq = 5").fetchone()[0]
        st = s.stats(configured_outputs=["done", "behind"], now=ingested + 2500)
    assert st["schema_version"] == spool_schema.LATEST_VERSION
    assert (st["rows"], st["first_seq"], st["last_seq"]) == (10, 1, 10)
    assert (st["max_bytes"], st["on_full"], st["durability"]) == (50_000_000, "block", "normal")
    assert st["bytes"] == st["db_bytes"] + st["wal_bytes"] > 0
    c = st["cursors"]
    assert c["done"]["lag_events"] == 0 and c["done"]["lag_seconds"] == 0
    assert c["behind"]["lag_events"] == 6 and c["behind"]["lag_seconds"] == 2.5
    assert c["old"] == {**c["old"], "enabled": False, "configured": False, "lag_events": 10}
    assert st["quarantine_total"] == 1 and st["dlq"] == {"behind": 1}
    assert st["input_offsets"][0]["offset"] == 42


def test_lag_counts_only_retained_rows(spool_path):
    with Spool(spool_path) as s:
        s.append(batch(events(10)))
        s.ensure_cursor("a")
        s.commit_cursor("a", 6, 0)
        s.ensure_cursor("b")
        s.set_enabled("b", False)  # b stays at 0 but does not hold back retention
        s.prune(retention_s=0, now=10**15)
        st = s.stats()
    assert st["rows"] == 4 and st["first_seq"] == 7
    assert st["cursors"]["b"]["lag_events"] == 4


def test_readonly_stats_report_the_agents_settings(spool_path):
    with Spool(spool_path, max_bytes=9_000_000, on_full="drop_oldest", durability="extra") as agent:
        agent.record_config()  # what the agent (Supervisor.open_spool) does
    with Spool.open_readonly(spool_path) as ro:
        st = ro.stats()
    assert (st["max_bytes"], st["on_full"], st["durability"]) == (9_000_000, "drop_oldest", "extra")
