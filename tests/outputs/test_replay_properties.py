"""Property-based tests of DLQ replay through a running drain (outputs/replay.py, the replay parts of
outputs/drain.py, the spool's DLQ API) against outputs/replay.py's docstring, docs/outputs.md §6 and
docs/spool.md ("Quarantine and DLQ").

A state machine runs a real drain (in gevent) over a real spool, with DLQ entries of its output ``f``
and of another output ``g``, some of ``f``'s with bodies that no longer render (not JSON, JSON but not
an event). Its rules: mark entries for replay (all of an output, or some ids), script the output's
answers per replayed event (delivered, refused for good, retried per item, throttled, 401, an exception
in ``send``, a 413 split), append live events, hold the replayed sends at the destination while live
events flow, purge entries (also while held), store new DLQ entries, rewind the cursor, stop or kill
the drain and start the next run. A model records what the output answered. Properties, checked
whenever the drain has settled (every marked entry resolved, the cursor caught up):

1. an entry leaves the DLQ only after the output accepted its event (or the operator purged it); an
   entry whose latest answer was "accepted" is gone, one whose latest was "refused" is kept with that
   reason and excerpt, one more attempt counted and no mark (no loop); a retried one is sent again
   until a final answer; an entry that no longer renders is kept with a ``replay: ...`` reason;
2. a stop or a crash mid-replay keeps every unfinished entry marked (an accepted one included:
   at-least-once), and the next run sends it;
3. entries of another output are never touched (reason, attempts, mark, presence), and neither is an
   entry stored after the replay began;
4. replayed batches carry only DLQ entries, never live events; replay never moves the cursor (the
   cursor ends at the last live seq, though replayed entries carry seqs far beyond it); live events
   are each accepted once (absent a stop, crash or rewind) and, while replayed batches are held at the
   destination, still go out through the other send slots (concurrency >= 2), with replay holding
   at most half of the slots;
5. stats: ``replayed`` (summed over runs) counts the entries deleted after delivery (at most that
   after a kill: a send killed while its delete ran in the threadpool leaves the delete done and the
   count not), the in-flight gauges return to 0, and ``dlq_counts()`` agrees with the model (count,
   replay_pending).

Live events are required to flow past a held replay only while the breaker is closed: half-open, its
one probe may be the held replay, and every other send waits for that answer (docs/outputs.md §4).
Shrinking is off (a failing example waits out its 10-20 s conditions at each shrink step): a failure
prints the example as generated.

At the end: deterministic reproductions of the defects found (each fails until its fix lands).
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import orjson
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import outputs.drain as drain_module
from outputs.base import DeliveryItem, Outcome
from outputs.drain import Drain
from outputs.routing import NOT_HERE
from spool.store import Spool
from spool.types import SpoolRow
from tests.outputs.drain_kit import Fake, Gate, cfg, fill, fresh_spool, make_event, start, stop, wait_until
from tests.outputs.test_drain_packing import PackingFake

NAME, OTHER = "f", "g"
LIVE_BASE = 1000  # live events are numbered from here; DLQ entries' events below it
FAR_SEQ = 1_000_000  # seq given to entries stored during the run: far beyond any live seq
ANSWERS = ["deliver", "permanent", "retry", "throttled", "401", "exception", "split"]
TRANSIENT = {"throttled", "401", "exception", "split"}  # answers about the whole request
BAD_BODIES = {b"{not json": "replay: spool row is not valid JSON",
              b"[1]": "replay: spool row is not a valid event: AttributeError"}


def selector(ev: Any) -> Any:
    """Every event goes to ``f``, as it is: a selector makes the drain decode events, so a stored
    body that is no longer an event is found before it is sent."""
    return None if ev.get("n", 0) is not None else NOT_HERE


@dataclass
class Entry:
    """The model of one DLQ entry."""

    id: int
    output: str
    n: int | None  # its event's number; None: a body that no longer renders
    reason: str
    attempts: int
    excerpt: bytes = b""
    marked: bool = False
    present: bool = True  # False once purged
    accepted_last: bool = False  # the latest answer about it was "accepted": it must be deleted
    accepted: int = 0
    bad_reason: str = ""
    marks: int = 0  # replay requests of a body that no longer renders, since the last settle


def _body(n: int) -> bytes:
    return orjson.dumps(make_event(n))


class ReplayMachine(RuleBasedStateMachine):
    """A running drain of output ``f`` replaying DLQ entries while live events flow."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.spool = Spool(str(Path(self._tmp.name) / "spool.db"))
        self.entries: dict[int, Entry] = {}
        self.by_n: dict[int, Entry] = {}
        self.script: dict[int, list[str]] = {}
        self.live: list[int] = []  # live event numbers, in seq order
        self.live_accepted: dict[int, int] = {}
        self.duplicates_ok = False  # a stop, crash or rewind happened: live events may go twice
        self.crashed = False  # the drain was killed (stats of the killed run may miss its last deletes)
        self.next_n = 0
        self.refusals = 0
        self.violations: list[str] = []
        self.hold = False
        self.gate = Gate()
        self.replayed_before = 0  # stats.replayed of the runs before this one
        self.drain: Drain | None = None
        self.greenlet: gevent.Greenlet | None = None
        self.out: Fake | None = None
        self.gen = 0

    # -- set-up ----------------------------------------------------------------------------------
    @initialize(n_f=st.integers(1, 10), n_g=st.integers(0, 3),
                bad=st.lists(st.sampled_from(sorted(BAD_BODIES)), max_size=2),
                concurrency=st.integers(1, 4), batch=st.integers(1, 4), packed=st.booleans())
    def seed(self, n_f: int, n_g: int, bad: list[bytes], concurrency: int, batch: int,
             packed: bool) -> None:
        """Events 0..n_f+n_g-1 were refused earlier (f's, then g's) and the cursor passed them."""
        self.config = cfg(concurrency=concurrency, batch_max_events=batch, breaker_failures=3,
                          breaker_cooldown=0.001, breaker_cooldown_max=0.002, retry_after_max=0.002,
                          rate_limit_requests=10_000)
        self.concurrency, self.packed = concurrency, packed
        spool = self.spool
        fill(spool, n_f + n_g)
        self.next_n = n_f + n_g
        spool.ensure_cursor(NAME)
        rows = spool.read_after(0, n_f + n_g)
        self._store(NAME, rows[:n_f], "seeded")
        self._store(OTHER, rows[n_f:], "seeded g")
        for i, body in enumerate(bad):
            self._store(NAME, [SpoolRow(FAR_SEQ + 500 + i, uuid.uuid4().bytes, 0, body)], "seeded bad")
        spool.commit_cursor(NAME, n_f + n_g, 0)
        self.live_from_seq = n_f + n_g  # the rows after it are live events
        self._start()

    def _store(self, output: str, rows: list[SpoolRow], reason: str) -> None:
        if not rows:
            return
        before = {e.id for e in self.spool.dlq_list(limit=100_000)}
        self.spool.dlq_add(output, rows, reason, None, 1)
        for e in sorted((e for e in self.spool.dlq_list(limit=100_000) if e.id not in before),
                        key=lambda e: e.id):
            try:
                n = orjson.loads(e.body)["n"]
            except (orjson.JSONDecodeError, TypeError):
                n = None
            m = Entry(e.id, output, n, reason, 1, bad_reason=BAD_BODIES.get(e.body, ""))
            if e.id in self.entries:  # test_a_new_entry_never_takes_the_id_of_a_deleted_one
                self.violations.append(f"dlq_add handed out the id {e.id} of a deleted entry again")
            self.entries[e.id] = m
            if n is not None and output == NAME:
                self.by_n[n] = m

    def _start(self) -> None:
        out = (PackingFake if self.packed else Fake)(NAME, self.config)
        out.rule = self._answer
        self.out = out
        self.drain = Drain(out, self.spool, self.spool.reader(), selector=selector)
        self.greenlet = start(self.drain)

    def teardown(self) -> None:
        try:
            if self.greenlet is not None and not self.greenlet.dead and self.drain is not None:
                self.hold = False
                self.gate.open()
                self.settle()  # every run ends with the checks
                self.gate.open()
                self.gate.open()
                self.drain.stop()
                self.greenlet.join(timeout=5)
        finally:
            self.spool.close()
            self._tmp.cleanup()

    # -- the destination -------------------------------------------------------------------------
    def _answer(self, batch: list[DeliveryItem]) -> Outcome | None:
        assert self.out is not None
        numbers = self.out.sent[-1]
        if all(n >= LIVE_BASE for n in numbers):
            for n in numbers:
                self.live_accepted[n] = self.live_accepted.get(n, 0) + 1
            return None
        if any(n >= LIVE_BASE for n in numbers):
            self.violations.append(f"a replayed batch carried live events: {numbers}")
        if any(n not in self.by_n for n in numbers):  # by_n: f's entries that render
            self.violations.append(f"a replayed batch carried events not in f's DLQ: {numbers}")
            return None
        if self.hold:
            gate = self.gate
            gate.waiting += 1
            if gate.waiting > max(1, self.concurrency // 2):  # docs/outputs.md §6: half the slots
                self.violations.append(f"{gate.waiting} replayed batches in flight at once")
            try:
                gate.event.wait()
            finally:
                gate.waiting -= 1
        for it, n in zip(batch, numbers, strict=True):
            queue = self.script.get(n)
            if queue and queue[0] in TRANSIENT:
                kind = queue.pop(0)
                if kind == "throttled":
                    return Outcome.retry("HTTP 429", throttled=True)
                if kind == "401":
                    return Outcome.retry("HTTP 401", auth_failure=True)
                if kind == "exception":
                    raise RuntimeError("output bug")
                if len(batch) == 1:  # a single event refused as too large: back to the DLQ
                    self._refused(it, n, "HTTP 413")
                    return Outcome.split(self._last_reason, excerpt=self._last_excerpt)
                return Outcome.split("HTTP 413")
        failed, again, accepted = [], [], []
        for it, n in zip(batch, numbers, strict=True):
            kind = self.script[n].pop(0) if self.script.get(n) else "deliver"
            if kind == "permanent":
                self._refused(it, n, "HTTP 400")
                failed.append(it)
            elif kind == "retry":
                again.append(it)
            else:
                accepted.append(n)
        for n in accepted:
            e = self.by_n[n]
            e.accepted += 1
            e.accepted_last = True
        if not failed and not again:
            return None
        if not failed:
            return Outcome.partial("HTTP 503 some", retry_items=again)
        for it, n in zip(batch, numbers, strict=True):  # one answer: its reason for every refused item
            e = self.by_n[n]
            if it in failed and e.present:
                e.reason, e.excerpt = self._last_reason, self._last_excerpt.encode()
        return Outcome.partial(self._last_reason, failed=failed, retry_items=again,
                               excerpt=self._last_excerpt)

    def _refused(self, item: DeliveryItem, n: int, kind: str) -> None:
        self.refusals += 1
        self._last_reason = f"{kind} refusal {self.refusals}"
        self._last_excerpt = f"excerpt {self.refusals}"
        e = self.by_n[n]
        e.accepted_last = False
        if e.present:
            e.reason, e.excerpt, e.attempts, e.marked = (self._last_reason, self._last_excerpt.encode(),
                                                         e.attempts + 1, False)

    # -- rules -----------------------------------------------------------------------------------
    def _f(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.output == NAME and e.present]

    @rule(output=st.sampled_from([NAME, NAME, OTHER]),
          some=st.none() | st.lists(st.integers(0, 30), max_size=4),
          answers=st.lists(st.sampled_from(ANSWERS), max_size=3))
    def mark(self, output: str, some: list[int] | None, answers: list[str]) -> None:
        """`clawd-agent dlq replay --output X --all`, or `--id ...` (ids of any output); the
        destination will give ``answers`` about each marked event first."""
        mine = [e for e in self.entries.values() if e.present and e.output == output]
        if some is None:
            ids = None
            chosen = mine
        else:
            ids = [sorted(self.entries)[i % len(self.entries)] for i in some] if self.entries else []
            chosen = [e for e in mine if e.id in ids]
        stored = {e.id for e in self.spool.dlq_list(limit=100_000)}
        # delivered already (its batch finished meanwhile): nothing left to mark
        assert all(e.accepted_last for e in chosen if e.id not in stored)
        got = self.spool.dlq_request_replay(output, ids)
        assert got == len([e for e in chosen if e.id in stored])
        for e in chosen:
            e.marked = True
            e.marks += 1
            if e.n is not None and output == NAME:
                self.script.setdefault(e.n, []).extend(answers)

    @rule(data=st.data())
    def script_answers(self, data: st.DataObject) -> None:
        """Script the next answers about one of f's entries."""
        ns = sorted(self.by_n)
        if not ns:
            return
        n = data.draw(st.sampled_from(ns))
        self.script.setdefault(n, []).extend(data.draw(st.lists(st.sampled_from(ANSWERS), max_size=3)))

    @rule(k=st.integers(1, 6))
    def live_events(self, k: int) -> None:
        start_n = LIVE_BASE + len(self.live)
        fill(self.spool, k, start=start_n)
        self.live.extend(range(start_n, start_n + k))

    @rule(output=st.sampled_from([NAME, OTHER]), k=st.integers(1, 2))
    def store_new_entries(self, output: str, k: int) -> None:
        """Another event of ``output`` is refused meanwhile (given with its body: no spool row)."""
        rows = []
        for _ in range(k):
            n = 500 + self.next_n
            self.next_n += 1
            rows.append(SpoolRow(FAR_SEQ + n, uuid.UUID(int=n + 1).bytes, 0, _body(n)))
        self._store(output, rows, f"refused live {output}")

    @rule(picks=st.lists(st.integers(0, 30), min_size=1, max_size=3))
    def purge(self, picks: list[int]) -> None:
        """`clawd-agent dlq purge --id ...` (maybe while the entry is being replayed)."""
        stored = {e.id for e in self.spool.dlq_list(limit=100_000)}
        present = sorted(e.id for e in self.entries.values() if e.present and e.id in stored)
        if not present:
            return
        ids = sorted({present[i % len(present)] for i in picks})
        assert self.spool.dlq_purge(ids=ids) <= len(ids)  # a replay may deliver one meanwhile
        for i in ids:
            self.entries[i].present = False

    @rule(back=st.integers(0, 10))
    def rewind(self, back: int) -> None:
        """`clawd-agent cursor rewind --seq S` during the run (the replay goes on)."""
        cursor = self.spool.get_cursor(NAME).seq  # back only: forward would skip live events
        _, after = self.spool.rewind(NAME, seq=min(cursor, max(self.live_from_seq, cursor - back)))
        self.gen = after.generation
        self.duplicates_ok = True

    @precondition(lambda self: any(e.marked and e.n is not None for e in self._f()))
    @rule(k=st.integers(1, 4))
    def live_events_flow_while_replays_are_held(self, k: int) -> None:
        """Replayed sends held at the destination; live events still go out (concurrency >= 2)."""
        self.hold = True
        self.gate = Gate()
        gate = self.gate
        assert self.greenlet is not None
        wait_until(lambda: gate.waiting >= 1 or not self._replay_pending() or self.greenlet.dead)
        self.live_events(k)
        # (not while the breaker is not closed: half-open, its one probe may be the held replay, and
        # every other send waits for that probe's answer, docs/outputs.md §4)
        if gate.waiting and self.concurrency >= 2 and self.drain.breaker.state_name == "closed":
            wanted = self.live[-k:]
            wait_until(lambda: all(self.live_accepted.get(n) for n in wanted) or self.greenlet.dead
                       or self.drain.breaker.state_name != "closed")
        self.hold = False
        gate.open()

    @rule(crash=st.booleans(), held=st.booleans())
    def restart(self, crash: bool, held: bool) -> None:
        """The agent stops (or is killed), maybe while replayed sends are held; the next run starts."""
        assert self.drain is not None and self.greenlet is not None
        gate = self.gate
        if held and self._replay_pending():
            self.hold = True
            gate = self.gate = Gate()
            wait_until(lambda: gate.waiting >= 1 or not self._replay_pending() or self.greenlet.dead)
        if crash:
            self.crashed = True
            self.greenlet.kill()
        else:
            self.drain.stop()
            self.hold = False
            gate.open()  # the send in progress completes; its batch is retried next run if unfinished
            self.greenlet.join(timeout=5)
        self.hold = False
        gate.open()
        assert self.greenlet.dead and self.greenlet.exception is None
        self.replayed_before += self.drain.stats.replayed
        self.duplicates_ok = True
        stored = {e.id: e for e in self.spool.dlq_list(limit=100_000)}
        marked = self.spool.dlq_replay_ids()
        for e in self.entries.values():
            if not e.present or e.output != NAME:
                continue
            if e.accepted_last and e.id in stored:
                # docs/outputs.md §6: its batch did not finish: still marked, sent by the next run
                assert e.id in marked, f"entry {e.id} accepted, not deleted, and no longer marked"
                e.accepted_last = False
        self._start()

    # -- settling and the checks -----------------------------------------------------------------
    def _replay_pending(self) -> bool:
        return bool(self.spool.dlq_replay_ids(NAME))

    @rule()
    def settle(self) -> None:
        """Wait until every marked entry of f is resolved and the cursor caught up; then compare."""
        drain, g = self.drain, self.greenlet
        assert drain is not None and g is not None
        spool = self.spool
        wait_until(lambda: g.dead or (not self._replay_pending() and drain._replay_batches == 0
                                      and spool.get_cursor(NAME).seq == spool.last_seq()
                                      and drain.stats.in_flight_batches == 0), 20)
        assert not g.dead, f"the drain died: {g.exception!r}"
        self.check_settled()

    def check_settled(self) -> None:
        spool, drain = self.spool, self.drain
        assert drain is not None
        stored = {e.id: e for e in spool.dlq_list(limit=100_000)}
        marked = spool.dlq_replay_ids()
        for e in self.entries.values():
            if not e.present:
                assert e.id not in stored, f"purged entry {e.id} is back"
                continue
            if e.output == NAME and e.n is not None and e.accepted_last:
                assert e.id not in stored, f"entry {e.id} (event {e.n}) delivered but kept"
                continue
            if e.output == NAME and e.n is None and e.marks:  # resolved: kept with a replay reason
                got = stored.get(e.id)
                assert got is not None, f"entry {e.id} that no longer renders is gone"
                assert got.reason.startswith(e.bad_reason), got.reason
                # one more attempt per request (two requests may meet one render: at least one)
                assert e.attempts + 1 <= got.attempts <= e.attempts + e.marks, (e, got)
                e.reason, e.attempts, e.excerpt, e.marks = got.reason, got.attempts, b"", 0
            if e.output == NAME:
                e.marked = False  # settled: no entry of f is still marked
            got = stored.get(e.id)
            assert got is not None, f"entry {e.id} of {e.output} deleted without delivery"
            assert (got.output, got.reason, got.attempts, got.response_excerpt) == \
                (e.output, e.reason, e.attempts, e.excerpt), (e, got)
            assert (e.id in marked) == e.marked, (e, "marked" if e.id in marked else "not marked")
        # deleted only after delivery: every f entry gone from the spool was purged or accepted
        for e in self.entries.values():
            if e.present and e.id not in stored:
                assert e.output == NAME and e.accepted, f"entry {e.id} of {e.output} lost"
        expected = {e.id for e in self.entries.values() if e.present
                    and not (e.output == NAME and e.n is not None and e.accepted_last)}
        assert set(stored) == expected
        assert self.violations == []
        # stats and counts
        counts = spool.dlq_counts()
        for out in (NAME, OTHER):
            mine = [e for e in self.entries.values() if e.present and e.output == out and e.id in expected]
            c = counts.get(out, {"count": 0, "replay_pending": 0})
            assert (c["count"], c["replay_pending"]) == (len(mine), sum(e.marked for e in mine))
        assert drain.stats.in_flight == 0 and drain.stats.in_flight_batches == 0
        assert drain._replay_inflight == set()
        delivered = sum(1 for e in self.entries.values()
                        if e.output == NAME and e.n is not None and e.accepted_last)
        if self.crashed:  # a send killed while its delete ran in the threadpool: deleted, not counted
            assert self.replayed_before + drain.stats.replayed <= delivered
        else:
            assert self.replayed_before + drain.stats.replayed == delivered
        # the cursor: at the last live seq, its generation; replay never moved it
        cursor = spool.get_cursor(NAME)
        assert (cursor.seq, cursor.generation) == (spool.last_seq(), self.gen)
        for n in self.live:
            got_n = self.live_accepted.get(n, 0)
            assert got_n >= 1 if self.duplicates_ok else got_n == 1, (n, got_n)

    @invariant()
    def drain_alive(self) -> None:
        if self.greenlet is not None:
            assert not self.greenlet.dead, f"the drain died: {self.greenlet.exception!r}"


ReplayMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=12, deadline=None,
                                           database=None, phases=[Phase.generate],
                                           suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drains look for marked entries every 10 ms instead of every second."""
    monkeypatch.setattr(drain_module, "REPLAY_POLL_S", 0.01)


def test_replay_state_machine(fast_poll: None) -> None:
    """Runs ``ReplayMachine`` (the module docstring lists the properties)."""
    ReplayMachine.TestCase("runTest").runTest()


# -------------------------------------------------------------------------------- defects found


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
