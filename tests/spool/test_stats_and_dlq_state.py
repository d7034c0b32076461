"""What `status`, /health and /metrics read from the spool: row and lag figures that cost the same
on any backlog (a scrape of a 2M-event spool froze the agent ~2 s), the DLQ's latest failure reason
(a replay refused again included), the agent's own spool settings (not a CLI command's), and an
unreadable spool told apart from a file that is no spool."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import gevent
import orjson
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import load_config
from agent.supervisor import Supervisor
from spool import EncodedEvent, Spool
from spool import schema as spool_schema
from spool.store import now_ms
from spool.types import SpoolRow
from tests.cli_spool import spool_with_events
from tests.spool.conftest import batch, event_id, events

ROOT = Path(__file__).resolve().parents[2]


# -- rows and lag without counting the backlog ---------------------------------------------------------


def _vm_steps(conn: sqlite3.Connection, fn) -> int:
    """SQLite virtual-machine instructions that ``fn`` runs on ``conn``: what a scan of the backlog
    costs, whatever the machine's speed."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 0)
    return steps[0]


def test_stats_cost_the_same_on_any_backlog(spool_path):
    """rows and each cursor's lag were a count(*) over the backlog, run in the agent's hub on every
    scrape: 2-4 s on 2M events. They are a subtraction now, and lag_seconds one index lookup."""
    with Spool(spool_path, offload=False) as s:
        s.append(batch(events(100)))
        for name in ("a", "b", "c"):
            s.ensure_cursor(name)
        s.commit_cursor("b", 40, 0)
        small = _vm_steps(s._conn, s.stats)
        for _ in range(10):
            s.append(batch(events(2_000, size=10)))
        big = _vm_steps(s._conn, s.stats)
        st = s.stats()
    assert big <= small + 50, (small, big)  # the old counts: ~200,000 here
    assert st["rows"] == 20_100 and (st["first_seq"], st["last_seq"]) == (1, 20_100)
    assert {n: c["lag_events"] for n, c in st["cursors"].items()} == {"a": 20_100, "b": 20_060, "c": 20_100}


def test_duplicates_leave_no_gap_in_the_sequence(spool_path):
    """AUTOINCREMENT uses up a seq for each event an INSERT OR IGNORE skips: the append renumbers
    its own (uncommitted) events so retained events are every seq from first to last."""
    with Spool(spool_path, offload=False) as s:
        old = events(6)
        s.append(batch(old))
        new = events(5)
        mixed = [old[0], new[0], old[3], new[1], new[1], new[2], old[5], new[3], new[4]]
        assert s.append(batch(mixed)).inserted == 5
        assert s.append(batch(old[:3])).inserted == 0  # nothing new: the sequence does not move
        rows = s.read_after(0, 100)
        assert [r.seq for r in rows] == list(range(1, 12)) and s.last_seq() == 11
        assert [r.event_id for r in rows[6:]] == [e.event_id for e in new]  # in the batch's order
        s.append(batch(events(2)))
        assert [r.seq for r in s.read_after(11, 10)] == [12, 13]


def test_rows_and_lag_match_an_exact_count_through_duplicates_and_pruning(spool_path):
    rng = random.Random(7)
    with Spool(spool_path, offload=False) as s:
        for name in ("a", "b", "c"):
            s.ensure_cursor(name)
        seen: list[EncodedEvent] = []
        for step in range(60):
            fresh = events(rng.randint(0, 40), size=20)
            again = rng.sample(seen, min(len(seen), rng.randint(0, 30)))
            evs = fresh + again + fresh[: rng.randint(0, 3)]
            rng.shuffle(evs)
            s.append(batch(evs))
            seen += fresh
            last = s.last_seq()
            for name in ("a", "b"):
                s.commit_cursor(name, rng.randint(s.get_cursor(name).seq, last), 0)
            if step % 7 == 6:
                s.prune(retention_s=0, enabled_outputs=["a", "b"], now=10**15)  # c is not configured
            before = now_ms()
            st = s.stats()
            after = now_ms()
            c = s._conn
            assert st["rows"] == c.execute("SELECT count(*) FROM events").fetchone()[0]
            for name, cur in st["cursors"].items():
                n, oldest = c.execute("SELECT count(*), min(ingested_ms) FROM events WHERE seq > ?",
                                      (cur["seq"],)).fetchone()
                assert cur["lag_events"] == n, (step, name)
                if oldest is None:
                    assert cur["lag_seconds"] == 0
                else:  # the age at the instant stats() read the clock
                    assert (before - oldest) / 1000 <= cur["lag_seconds"] <= (after - oldest) / 1000


def test_a_scrape_does_not_hold_the_agents_hub(tmp_path, monkeypatch):
    """/health and /metrics read the spool in gevent's threadpool, on a connection of their own:
    the agent goes on meanwhile (the DLQ and quarantine counts still grow with those tables)."""
    sup = Supervisor(load_config(_agent_config(tmp_path)))
    sup.spool = sup.open_spool()
    try:
        sup.spool.append(batch(events(3)))
        sup.spool.ensure_cursor("a")
        real = Spool._stats
        hub_ran = threading.Event()

        def held(self, *args):
            # SQLite at work, not yielding (a big DLQ, or the old backlog count): it goes on only
            # once a greenlet has run meanwhile, which it cannot if this runs on the hub's thread
            assert hub_ran.wait(10), "the hub was held while the stats were read"
            return real(self, *args)

        monkeypatch.setattr(Spool, "_stats", held)
        import agent.supervisor as supervisor_module

        clock = type("Clock", (), {"monotonic": staticmethod(lambda: 1000.0)})
        monkeypatch.setattr(supervisor_module, "time", clock)  # both scrapes in one instant
        g = gevent.spawn(hub_ran.set)
        st = sup.spool_stats()
        g.join()
        assert st["rows"] == 3 and st["cursors"]["a"]["lag_events"] == 3
        monkeypatch.setattr(Spool, "_stats", lambda *a: pytest.fail("read again"))
        assert sup.spool_stats() is st  # cached: nothing appended since, within the second
    finally:
        sup.spool.close()


# -- spools written by the previous version (schema 2) --------------------------------------------


def _as_schema_2(path: str) -> None:
    """Undo migrations 0003 and 0004: the spool of the previous release."""
    con = sqlite3.connect(path)
    con.execute("DROP INDEX dlq_updated")
    con.execute("ALTER TABLE dlq DROP COLUMN updated_ms")
    con.execute("DELETE FROM agent_state WHERE key = ?", (spool_schema.GAPPED_BELOW,))
    con.execute("DELETE FROM _sqlite_migrations WHERE name >= '0003'")
    con.commit()
    con.close()


def _old_spool_with_gaps(path: str) -> None:
    """Events 1, 2, 3, 5, 6, 9 of seq 10 (ignored duplicates used up 4, 7, 8 and 10), cursors a at 2
    and b at 6, and two DLQ entries: what the previous release could leave."""
    Spool(path).close()
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO events(seq, event_id, ts_ms, ingested_ms, input, body) VALUES (?, ?, 0, ?, 'in', x'00')",
        [(seq, event_id(900 + seq), 1_000 + seq) for seq in (1, 2, 3, 5, 6, 9)])
    con.execute("UPDATE sqlite_sequence SET seq = 10 WHERE name = 'events'")
    con.execute("UPDATE counters SET value = 4 WHERE name = 'duplicates_total'")
    con.executemany("INSERT INTO cursors(output, seq, updated_ms) VALUES (?, ?, 0)", [("a", 2), ("b", 6)])
    con.executemany(
        "INSERT INTO dlq(output, seq, event_id, body, reason, response_excerpt, attempts, created_ms) "
        "VALUES ('a', ?, x'00', x'00', ?, x'', 1, ?)", [(3, "old 1", 5_000), (5, "old 2", 6_000)])
    con.commit()
    con.close()
    _as_schema_2(path)


def test_an_old_spool_with_gaps_is_counted_exactly_and_new_events_without_a_scan(spool_path):
    _old_spool_with_gaps(spool_path)
    with Spool.open_readonly(spool_path) as ro:  # `status` before the agent restarted on this version
        assert ro.schema_version == 2
        st = ro.stats()
        assert ro.dlq_counts()["a"]["last_reason"] == "old 2"
    assert (st["rows"], st["cursors"]["a"]["lag_events"], st["cursors"]["b"]["lag_events"]) == (6, 4, 1)
    with Spool(spool_path, offload=False) as s:
        assert s.schema_version == spool_schema.LATEST_VERSION
        gapped = s._conn.execute("SELECT value FROM agent_state WHERE key = ?",
                                 (spool_schema.GAPPED_BELOW,)).fetchone()[0]
        assert gapped == 11  # below it the events of the old version, counted; above, subtracted
        s.append(batch(events(5)))
        s.ensure_cursor("c")
        s.commit_cursor("c", 12, 0)
        st = s.stats()
        assert [r.seq for r in s.read_after(9, 10)] == [11, 12, 13, 14, 15]
        assert st["rows"] == 11 and {n: c["lag_events"] for n, c in st["cursors"].items()} == {
            "a": 9, "b": 6, "c": 3}
        small = _vm_steps(s._conn, s.stats)
        s.append(batch(events(5_000, size=10)))
        assert _vm_steps(s._conn, s.stats) <= small + 50
        s.prune(retention_s=0, enabled_outputs=["a", "b"], now=10**15)  # a at 2: deletes 1 and 2
        st = s.stats()
        assert (st["rows"], st["first_seq"], st["cursors"]["c"]["lag_events"]) == (5_009, 3, 5_003)


def test_an_old_spools_dlq_migrates_and_a_refused_replay_becomes_the_last_reason(spool_path):
    _old_spool_with_gaps(spool_path)
    with Spool(spool_path, offload=False) as s:
        first, _ = s.dlq_list("a")
        assert s.dlq_counts()["a"] == {**s.dlq_counts()["a"], "last_reason": "old 2",
                                       "last_failed_ms": 6_000, "last_created_ms": 6_000}
        s.dlq_requeue([first.id], "HTTP 400 refused again")
        counts = s.dlq_counts()["a"]
    assert counts["last_reason"] == "HTTP 400 refused again" and counts["last_created_ms"] == 5_000
    assert counts["last_failed_ms"] > 6_000 and counts["count"] == 2


# -- the DLQ's last reason -------------------------------------------------------------------------


def test_status_shows_a_replay_refused_again_as_the_dlq_last_reason(tmp_path, monkeypatch):
    """dlq_requeue updates an older entry: the last reason was the newest entry's all the same."""
    import spool.store as store

    clock = iter(range(10**12, 10**12 + 1000))
    monkeypatch.setattr(store, "now_ms", lambda: next(clock))  # each write a later millisecond
    cfg, spool = spool_with_events(tmp_path, ["a"], range(1_000, 1_003))
    try:
        rows = spool.read_after(0, 3)
        spool.dlq_add("a", rows[:1], "HTTP 400 first")
        spool.dlq_add("a", rows[1:2], "HTTP 400 second")
        oldest = spool.dlq_list("a")[0]
        assert spool.dlq_request_replay("a", [oldest.id]) == 1
        spool.dlq_requeue([oldest.id], "HTTP 400 refused again on replay")
    finally:
        spool.close()
    r = CliRunner().invoke(cli, ["status", "--json", "-c", cfg])  # exit 1: the agent is not running
    out = orjson.loads(r.output)["outputs"]["a"]
    assert (out["dlq"], out["dlq_last_reason"]) == (2, "HTTP 400 refused again on replay")


# -- the agent's spool settings --------------------------------------------------------------------


def _agent_config(tmp_path: Path, spool_section: str = "") -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ndata_dir = "{tmp_path}/state"\n{spool_section}\n[inputs.i]\ntype = "file"\n'
                   f'paths = ["{tmp_path}/in/*.jsonl"]\n[outputs.a]\ntype = "stdout"\n')
    return cfg


def test_a_cli_write_command_does_not_replace_the_agents_spool_settings(tmp_path):
    cfg = _agent_config(tmp_path, '[spool]\nmax_bytes = "100MiB"\non_full = "drop_oldest"\n'
                                  'durability = "normal"')
    agent = Supervisor(load_config(cfg)).open_spool()  # the running agent
    try:
        agent.ensure_cursor("a")
        # the operator edits agent.toml, not restarted yet, and runs write commands
        _agent_config(tmp_path, '[spool]\nmax_bytes = "50GiB"\non_full = "block"\ndurability = "extra"')
        for args in (("dlq", "purge", "--yes"), ("dlq", "replay", "--all"), ("quarantine", "purge", "--yes")):
            r = CliRunner().invoke(cli, [*args, "-c", str(cfg)])
            assert r.exit_code == 0, r.output
        r = CliRunner().invoke(cli, ["status", "--json", "-c", str(cfg)])
    finally:
        agent.close()
    sp = orjson.loads(r.output)["spool"]
    assert (sp["max_bytes"], sp["on_full"], sp["durability"]) == (100 * 2**20, "drop_oldest", "normal")


# -- a spool that cannot be read ------------------------------------------------------------------


def _status_without_write_access(state: Path, cfg: Path) -> str:
    """`status` by a user who may read the spool but not create its -shm (the packaged 0750 state
    directory seen by a group member, while the agent is stopped)."""
    if os.geteuid() != 0:
        state.chmod(0o555)
        try:
            return CliRunner().invoke(cli, ["status", "-c", str(cfg)]).output
        finally:
            state.chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "agent", "status", "-c", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, user=65534, group=65534,
                          extra_groups=[])
    return done.stdout + done.stderr


def test_a_spool_that_cannot_be_opened_is_not_called_no_spool():
    base = Path(tempfile.mkdtemp(prefix="clawd-perm-"))  # not under pytest's 0700 directory
    try:
        base.chmod(0o755)
        cfg = _agent_config(base)
        (base / "state").mkdir()
        Spool(str(base / "state" / "spool.db")).close()
        for side in ("-wal", "-shm"):
            (base / "state" / f"spool.db{side}").unlink(missing_ok=True)
        cfg.chmod(0o644)
        out = _status_without_write_access(base / "state", cfg)
        assert "is not a spool" not in out, out
        assert f"cannot open {base}/state/spool.db read-only" in out and "check permissions" in out, out
    finally:
        (base / "state").chmod(0o755)
        shutil.rmtree(base)


def test_dlq_rows_keep_their_seq_and_body(spool_path):
    """A renumbered append changes no seq the DLQ or a cursor has seen (they were committed before)."""
    with Spool(spool_path, offload=False) as s:
        evs = events(3)
        s.append(batch(evs))
        s.dlq_add("a", [SpoolRow(2, evs[1].event_id, evs[1].ts_ms, b"")], "HTTP 400")
        s.append(batch([evs[0], *events(2)]))
        assert [(e.seq, e.body) for e in s.dlq_list("a")] == [(2, evs[1].body)]
        assert [r.seq for r in s.read_after(0, 10)] == [1, 2, 3, 4, 5]


def test_status_without_recorded_settings_does_not_claim_unlimited(tmp_path):
    """Only the agent records its spool settings now: before one ran, `status` shows them unknown."""
    cfg, spool = spool_with_events(tmp_path, ["a"], [1_000])
    spool.close()
    out = CliRunner().invoke(cli, ["status", "-c", cfg]).output
    assert "durability=-  on_full=-" in out and "unlimited" not in out, out


def test_purge_by_age_counts_from_the_latest_failure(tmp_path, monkeypatch):
    """Two entries stored at t=1000 s; one replayed and refused again at t=9000 s. Purging what is
    older than t=5000 s takes the untouched one only: it was purged by its first failure's age."""
    import spool.store as store

    now = [1_000_000]
    monkeypatch.setattr(store, "now_ms", lambda: now[0])
    _, spool = spool_with_events(tmp_path, ["a"], range(1_000, 1_002))
    try:
        rows = spool.read_after(0, 2)
        spool.dlq_add("a", rows, "HTTP 400 first")
        kept, _untouched = spool.dlq_list("a")
        now[0] = 9_000_000
        spool.dlq_request_replay("a", [kept.id])
        spool.dlq_requeue([kept.id], "HTTP 400 refused again on replay")
        assert spool.dlq_purge("a", older_than_ms=5_000_000) == 1
        assert [e.id for e in spool.dlq_list("a")] == [kept.id]
        assert spool.dlq_purge("a", older_than_ms=9_000_001) == 1
    finally:
        spool.close()
