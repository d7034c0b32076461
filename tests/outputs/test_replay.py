"""DLQ replay: a request written to the spool (as `clawd-agent dlq replay` does) is picked up by the
running drain or by one started later, sent through the normal path, removed on success, kept with the
new reason and one more attempt on a new permanent failure. Plus the spool migration it relies on."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from outputs.base import Outcome
from outputs.drain import Drain
from spool.store import Spool
from tests.outputs.drain_kit import Fake, Gate, caught_up, cfg, fill, ns, run_until, start, stop, wait_until


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def reject(numbers: set[int], reason: str = "HTTP 400 mapping"):
    def rule(batch):
        bad = [i for i in batch if orjson.loads(i.body)["n"] in numbers]
        return Outcome.permanent(reason, failed=bad, excerpt="es: no") if bad else None
    return rule


def test_the_running_drain_replays_requested_entries_and_removes_them(spool):
    fill(spool, 6)
    out = Fake("f", cfg(), script=[reject({1, 4})])
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: len(spool.dlq_list("f")) == 2 and caught_up(spool, "f")())
    assert spool.dlq_request_replay("f") == 2  # the destination was fixed meanwhile
    wait_until(lambda: spool.dlq_list("f") == [])
    stop(drain, g)
    assert out.sent == [[0, 1, 2, 3, 4], [5], [1, 4]]  # only the DLQ'd events are sent again
    assert drain.stats.replayed == 2 and drain.stats.dlq == 2


def test_a_replay_refused_again_stays_with_the_new_reason_and_one_more_attempt(spool):
    fill(spool, 3)
    out = Fake("f", cfg(), rule=reject({2}))
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: len(spool.dlq_list("f")) == 1)
    (first,) = spool.dlq_list("f")
    out.rule = reject({2}, reason="HTTP 400 still bad")
    spool.dlq_request_replay("f", [first.id])
    wait_until(lambda: spool.dlq_get(first.id).reason == "HTTP 400 still bad")
    stop(drain, g)
    again = spool.dlq_get(first.id)
    assert again.attempts == first.attempts + 1 and again.response_excerpt == b"es: no"
    assert spool.dlq_replay_ids("f") == set()  # not retried in a loop
    assert out.sent.count([2]) == 1


def test_a_request_made_while_stopped_is_sent_by_the_next_run(spool):
    fill(spool, 4)
    first = Fake("f", cfg(), rule=reject({0, 3}))
    run_until(Drain(first, spool, spool.reader()), caught_up(spool, "f"))
    assert len(spool.dlq_list("f")) == 2
    assert spool.dlq_request_replay(output="f") == 2  # the agent is stopped: only the request is written
    later = Fake("f", cfg())
    run_until(Drain(later, spool, spool.reader()), lambda: spool.dlq_list("f") == [])
    assert later.sent == [[0, 3]]


def two_delivered_to_the_dlq_and_requested_for_replay(spool: Spool) -> None:
    """Events 1 and 2 went to output f's DLQ, its cursor passed them, and a replay is requested."""
    fill(spool, 2)
    spool.ensure_cursor("f")
    spool.dlq_add("f", spool.read_after(0, 2), "old failure")
    spool.commit_cursor("f", 2, 0)
    spool.dlq_request_replay("f")


def test_replay_waits_for_an_open_breaker_like_any_batch(spool):
    two_delivered_to_the_dlq_and_requested_for_replay(spool)
    down = [lambda b: Outcome.retry("connection refused")]
    out = Fake("f", cfg(breaker_failures=1, breaker_cooldown=0.05, breaker_cooldown_max=0.05), script=down)
    drain = Drain(out, spool, spool.reader())
    run_until(drain, lambda: spool.dlq_list("f") == [])
    assert out.sent == [[0, 1], [0, 1]] and drain.breaker.opened_total == 1


def test_migration_adds_the_replay_and_done_columns_to_an_existing_spool(tmp_path):
    path = str(tmp_path / "old.db")
    with Spool(path) as s:
        fill(s, 3)
        s.ensure_cursor("f")
        s.dlq_add("f", s.read_after(0, 1), "kept")
    con = sqlite3.connect(path)  # turn it back into a version-1 spool
    con.execute("DROP INDEX dlq_updated")  # 0003
    con.execute("ALTER TABLE dlq DROP COLUMN updated_ms")
    con.execute("DELETE FROM agent_state WHERE key = 'seq_gapped_below'")  # 0004
    con.execute("DROP INDEX dlq_replay")
    con.execute("ALTER TABLE dlq DROP COLUMN replay_ms")
    con.execute("ALTER TABLE cursors DROP COLUMN done")
    con.execute("DELETE FROM _sqlite_migrations WHERE name <> '0001_initial'")
    con.commit()
    con.close()
    with Spool(path) as s:
        assert s.schema_version == 4
        assert [e.reason for e in s.dlq_list("f")] == ["kept"]
        assert s.get_cursor_done("f") == ((0, 0), [])
        assert s.dlq_request_replay("f") == 1 and len(s.dlq_replay_pending("f")) == 1


def test_replay_sends_what_the_rules_would_no_longer_route_here_and_batches_by_count(spool):
    """The operator asked for these entries: a filter changed since does not drop them, and they are
    cut into batches with the output's own limits."""
    from outputs.base import FilterConfig

    fill(spool, 6)
    out = Fake("f", cfg(batch_max_events=2), rule=reject({0, 1, 2}))
    run_until(Drain(out, spool, spool.reader()), lambda: len(spool.dlq_list("f")) == 3
              and caught_up(spool, "f")())
    # the filter now refuses every info event: replay still sends the three, two per batch
    out2 = Fake("f", cfg(batch_max_events=2, filter=FilterConfig(min_severity="high")))
    assert spool.dlq_request_replay("f") == 3
    run_until(Drain(out2, spool, spool.reader()), lambda: spool.dlq_list("f") == [])
    assert sorted(map(len, out2.sent)) == [1, 2] and sorted(out2.received) == [0, 1, 2]


def requeue_locked_once(spool: Spool) -> list[int]:
    """The first ``dlq_requeue`` fails as a locked spool does; later ones store. Returns the calls."""
    real, calls = spool.dlq_requeue, []

    def dlq_requeue(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kw)

    spool.dlq_requeue = dlq_requeue  # type: ignore[method-assign]
    return calls


def test_a_replay_refused_again_is_kept_with_its_reason_when_the_first_requeue_fails(spool):
    """The failed requeue is retried with the batch; the entry is not forgotten by the drain (left
    marked, out of reach of later polls) as it was when its id was taken before the write."""
    fill(spool, 3)
    out = Fake("f", cfg(), rule=reject({2}))
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: len(spool.dlq_list("f")) == 1 and caught_up(spool, "f")())
    (first,) = spool.dlq_list("f")
    out.rule = reject({2}, reason="HTTP 400 still bad")
    calls = requeue_locked_once(spool)
    spool.dlq_request_replay("f", [first.id])
    wait_until(lambda: spool.dlq_get(first.id).reason == "HTTP 400 still bad" or g.dead)
    stop(drain, g)
    assert len(calls) == 2 and spool.dlq_replay_ids("f") == set()
    assert spool.dlq_get(first.id).attempts == first.attempts + 1 and drain._replay_inflight == set()


def test_a_replay_that_cannot_be_encoded_any_more_survives_a_failed_requeue(spool):
    two_delivered_to_the_dlq_and_requested_for_replay(spool)
    calls = requeue_locked_once(spool)

    class Refusing(Fake):
        def encode(self, item):
            if orjson.loads(item.body)["n"] == 1:
                raise ValueError("no CEF mapping")
            return super().encode(item)

    out = Refusing("f", cfg())
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    wait_until(lambda: spool.dlq_replay_ids("f") == set() or g.dead)
    assert not g.dead, f"the drain died: {g.exception!r}"
    stop(drain, g)
    (kept,) = spool.dlq_list("f")
    assert len(calls) == 2 and kept.reason == "replay: encode failed: ValueError: no CEF mapping"
    assert out.received == [0]


def test_a_large_replay_leaves_half_the_send_slots_to_live_events(spool, monkeypatch):
    """40 DLQ entries to replay, concurrency 4, and the replayed batches held at the destination:
    replays take two slots and no more, poll after poll, and live events go out through the other
    two meanwhile. Replays used to take all four, and live alerts waited behind the whole replay."""
    import outputs.drain as drain_module

    monkeypatch.setattr(drain_module, "REPLAY_POLL_S", 0.0)
    fill(spool, 40)
    spool.ensure_cursor("f")
    spool.dlq_add("f", spool.read_after(0, 40), "HTTP 400 mapping (since fixed)")
    spool.commit_cursor("f", 40, 0)
    spool.dlq_request_replay("f")
    gate = Gate()
    out = Fake("f", cfg(concurrency=4), rule=lambda b: gate(b) if ns(b)[0] < 40 else None)
    drain = Drain(out, spool, spool.reader())
    polls: list[int] = []
    pick_up = drain._pick_up_replays
    monkeypatch.setattr(drain, "_pick_up_replays", lambda: polls.append(1) or pick_up())
    g = start(drain)
    wait_until(lambda: gate.waiting == 2)
    fill(spool, 5, start=40)  # live events while the replay holds its slots
    wait_until(lambda: out.received == [40, 41, 42, 43, 44])
    seen = len(polls)
    wait_until(lambda: len(polls) >= seen + 3 or gate.waiting > 2)  # more polls pass by
    assert gate.waiting == 2  # still two replay batches, never more
    gate.open()
    wait_until(lambda: spool.dlq_list("f") == [])
    stop(drain, g)
    assert sorted(out.received) == list(range(45))
    assert drain.stats.replayed == 40 and drain._replay_batches == 0
