"""DLQ ids are never handed out again: a drain replaying an entry holds its id until the replay ends,
and the operator may purge the entry meanwhile (outputs/replay.py, spool/store.py ``dlq_add``).

Found by a property test of replay through a running drain (a state machine of marks, scripted
answers, live events, purges, rewinds, stops and crashes against a model); each test here failed
before its fix.
"""

from __future__ import annotations

import pytest

import outputs.drain as drain_module
from outputs.drain import Drain
from tests.outputs.drain_kit import Fake, Gate, cfg, fill, fresh_spool, start, stop, wait_until


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drains look for marked entries every 10 ms instead of every second."""
    monkeypatch.setattr(drain_module, "REPLAY_POLL_S", 0.01)


def test_a_replay_finishing_after_its_entry_was_purged_leaves_a_newer_entry_alone(fast_poll: None) -> None:
    """Entry 2 of f is being replayed (held at the destination) when the operator purges it; output
    g's next refused event is stored meanwhile and gets id 2 again (``dlq.id`` is a rowid without
    AUTOINCREMENT: SQLite reuses the highest one after a delete). The replay then finishes and
    ``dlq_done([2])`` deleted g's entry, never delivered: lost (docs/outputs.md §6, "an entry leaves
    the DLQ only after delivery"). A refusal instead would have rewritten g's entry's reason."""
    with fresh_spool() as spool:
        fill(spool, 3)
        spool.ensure_cursor("f")
        spool.dlq_add("f", spool.read_after(0, 2), "old")  # events 0 and 1
        spool.commit_cursor("f", 3, 0)
        (_, second) = spool.dlq_list("f")
        spool.dlq_request_replay("f", [second.id])
        gate = Gate()
        out = Fake("f", cfg(concurrency=2), rule=gate)
        drain = Drain(out, spool, spool.reader())
        g = start(drain)
        try:
            wait_until(lambda: gate.waiting == 1)
            assert spool.dlq_purge(ids=[second.id]) == 1
            spool.dlq_add("g", spool.read_after(2, 1), "refused by g")  # event 2, output g
            (g_entry,) = spool.dlq_list("g")
            gate.open()
            wait_until(lambda: drain.stats.replayed == 1)
        finally:
            stop(drain, g)
        assert out.received == [1]
        assert [(e.output, e.seq, e.reason) for e in spool.dlq_list("g")] == [("g", 3, "refused by g")], \
            f"g's entry {g_entry.id} was deleted by f's replay of the purged entry {second.id}"


def test_a_new_entry_never_takes_the_id_of_a_deleted_one() -> None:
    """The spool side of the defect above: ids of deleted DLQ entries must not be handed out again
    (the events table's seq is AUTOINCREMENT for the same reason)."""
    with fresh_spool() as spool:
        fill(spool, 2)
        spool.dlq_add("f", spool.read_after(0, 1), "first")
        (first,) = spool.dlq_list("f")
        spool.dlq_done([first.id])
        spool.dlq_add("g", spool.read_after(1, 1), "second")
        (second,) = spool.dlq_list("g")
        assert second.id != first.id
