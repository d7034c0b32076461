"""Property-based tests of the drain (outputs/drain.py) against docs/outputs.md §1-§6.

Random backlogs (1-60 events, some below the output's filter, some appended while the drain runs),
batch sizes (1-10), concurrency (1-4), outputs with and without a packer (as ES and HEC), and scripts
of answers: delivered, retry, throttled retry (with or without a Retry-After), permanent for the whole
batch or a subset, partial with disjoint failed / retry_items, split, 401; each answer possibly delayed by
0-2 ms so that batches finish out of order.

1. completion and conservation: once the cursor reaches the end, every event the filter keeps was
   accepted by the output once or is in the DLQ once, never both; the DLQ holds exactly what the
   output refused, with its reason and body; filtered events are never sent;
2. ordered commit: at every send the committed cursor and its done ranges cover only events already
   accepted or in the DLQ; at most ``concurrency`` sends at once and ``concurrency + 2`` batches
   registered; no send before a running Retry-After has passed; credentials re-read after a 401;
   rows that cannot be encoded are in the DLQ before any batch past them is sent;
3. stats: delivered, dlq, filtered, retries and the in-flight gauges agree with what the output saw
   and what the DLQ holds (and a DLQ entry's attempts count the sends that carried its event);
4. stop (or a crash) and restart: nothing is lost, nothing committed is sent again, every unfinished
   event is sent by the next run, and the events sent twice fit in the batches in flight at the stop;
5. a rewind (``Spool.rewind``, as ``clawd-agent cursor rewind`` calls it) during a run: every event
   after the new position is sent again in the new generation, none before it, and the new
   generation's cursor passes only what the new generation settled.

The spool is a real one in a temporary directory per example; the output is the kit's ``Fake`` (or
``PackingFake``), whose ``rule`` plays the drawn script. ``Fake.received`` also gets the events a
permanent or partial answer accepted, so it holds every event the output accepted.

At the end: deterministic reproductions of the defects found on the way (each failed before its fix).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outputs.base import DeliveryItem, FilterConfig, Outcome
from outputs.drain import Drain
from spool.store import Spool
from tests.outputs.drain_kit import (
    Fake,
    caught_up,
    cfg,
    fill,
    fresh_spool,
    ns,
    run_until,
    start,
    stop,
    wait_until,
)
from tests.outputs.test_drain_packing import PackingFake

NAME = "f"
MASK = 10  # batch_max_events is at most 10: one mask entry per position in a batch
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
REASONS = {"permanent_all": "HTTP 400", "permanent_some": "HTTP 400 some", "partial": "per item",
           "split": "HTTP 413"}

# -------------------------------------------------------------------------------- scenarios

delay_ms = st.sampled_from([0, 0, 0, 1, 2])
retry_after = st.sampled_from([None, 0.001, 0.003])
step = st.one_of(
    st.tuples(st.just("deliver"), delay_ms),
    st.tuples(st.just("retry"), delay_ms),
    st.tuples(st.just("auth"), delay_ms),
    st.tuples(st.just("throttled"), delay_ms, retry_after),
    st.tuples(st.just("permanent_all"), delay_ms),
    st.tuples(st.just("permanent_some"), delay_ms, st.lists(st.booleans(), min_size=MASK, max_size=MASK)),
    # per position: 0 accepted, 1 failed (DLQ), 2 sent again
    st.tuples(st.just("partial"), delay_ms, st.lists(st.integers(0, 2), min_size=MASK, max_size=MASK),
              retry_after),
    st.tuples(st.just("split"), delay_ms),
)


@dataclass(frozen=True)
class Scenario:
    n: int
    batch_max_events: int
    concurrency: int
    steps: list[tuple]
    #: per event: False = below the output's filter (skipped); None = no filter at all
    kept: list[bool] | None
    packed: bool  # the output has a packer (ES, HEC): batches travel as one body
    #: events from this number on are appended once the drain runs (None: all spooled before)
    live_from: int | None = None
    batch_max_wait: float = 0.0
    #: seqs of kept events the output cannot encode (a transform refuses them): straight to the DLQ
    bad: frozenset[int] = frozenset()


@st.composite
def scenarios(draw: Any, live: bool = False) -> Scenario:
    n = draw(st.integers(1, 60))
    kept = draw(st.none() | st.lists(st.booleans(), min_size=n, max_size=n))
    steps = draw(st.lists(step, max_size=25))
    live_from = draw(st.none() | st.integers(0, n - 1)) if live else None
    wait = draw(st.sampled_from([0.0, 0.002])) if live else 0.0
    kept_seqs = [i + 1 for i in range(n) if kept is None or kept[i]]
    bad = draw(st.just([]) | st.lists(st.sampled_from(kept_seqs), max_size=4)) if kept_seqs else []
    return Scenario(n, draw(st.integers(1, 10)), draw(st.integers(1, 4)), steps, kept, draw(st.booleans()),
                    live_from, wait, frozenset(bad))


def config(sc: Scenario) -> Any:
    # a breaker that opens after 3 failures but only for a millisecond or two, and a configured rate
    # that a 429 halves (down to 1/64 of it at worst): both exercised, neither slow
    extra = {} if sc.kept is None else {"filter": FilterConfig(min_severity="high")}
    return cfg(batch_max_events=sc.batch_max_events, concurrency=sc.concurrency, breaker_failures=3,
               breaker_cooldown=0.001, breaker_cooldown_max=0.004, retry_after_max=0.005,
               rate_limit_requests=10_000, batch_max_wait=sc.batch_max_wait, **extra)


def kept_seqs(sc: Scenario) -> set[int]:
    return {i + 1 for i in range(sc.n) if sc.kept is None or sc.kept[i]}


def fill_events(spool: Spool, sc: Scenario, lo: int, hi: int) -> None:
    """Spool events lo..hi-1 (numbered as fill() does: event i has seq i + 1 in a fresh spool)."""
    i = lo
    while i < hi:  # one append per run of events on the same side of the filter
        j = i
        while j < hi and (sc.kept is None or sc.kept[j] == sc.kept[i]):
            j += 1
        fill(spool, j - i, start=i, severity="info" if sc.kept is not None and not sc.kept[i] else "critical")
        i = j


def new_output(sc: Scenario) -> Fake:
    out = (PackingFake if sc.packed else Fake)(NAME, config(sc))
    if sc.bad:
        encode = out.encode

        def refusing(item: DeliveryItem) -> bytes:
            if item.seq in sc.bad:
                raise ValueError("no mapping for this event")
            return encode(item)

        out.encode = refusing  # type: ignore[method-assign]
    return out


def encode_failed(spool: Spool) -> Counter[int]:
    return Counter(e.seq for e in spool.dlq_list(NAME, limit=100_000) if e.reason.startswith("encode failed"))


def refused(spool: Spool) -> list[int]:
    """The DLQ entries of events the output refused (not those it could not encode)."""
    return [e.seq for e in spool.dlq_list(NAME, limit=100_000) if not e.reason.startswith("encode failed")]


def seqs(numbers: list[int]) -> list[int]:
    return [n + 1 for n in numbers]  # fill() numbers events from 0; a fresh spool's seqs start at 1


def dlq_seqs(spool: Spool) -> list[int]:
    return [e.seq for e in spool.dlq_list(NAME, limit=100_000)]


def cursor_seq(spool: Spool) -> int:
    cursor = spool.get_cursor(NAME)
    return -1 if cursor is None else cursor.seq


def committed_set(spool: Spool) -> tuple[int, int, set[int]]:
    """(cursor seq, generation, every seq the cursor or its done ranges say is finished)."""
    state = spool.get_cursor_done(NAME)
    if state is None:
        return 0, 0, set()
    cursor, done = state
    covered = set(range(1, cursor.seq + 1))
    for lo, hi in done:
        covered.update(range(lo, hi + 1))
    return cursor.seq, cursor.generation, covered


# -------------------------------------------------------------------------------- the scripted output


@dataclass
class Model:
    """What the output answered, as the drain should apply it, and what was seen meanwhile."""

    #: seqs the cursor may pass unsent: below the filter (and in the rewind test: not encodable)
    skipped: set[int] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    retry_waits: int = 0  # answers after which the drain must back off: RETRY, PARTIAL with retry_items
    told: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason) the output refused
    #: (generation of the drain at the send, seq) of each event accepted / refused
    accepted_gen: list[tuple[int, int]] = field(default_factory=list)
    refused_gen: list[tuple[int, int]] = field(default_factory=list)
    #: after a rewind: (new position, new generation); the commit check then holds the new
    #: generation's cursor to what the new generation settled
    rewound: tuple[int, int] | None = None
    send_times: list[float] = field(default_factory=list)
    holds: list[tuple[float, float]] = field(default_factory=list)  # (answered at, Retry-After)
    active: int = 0
    max_active: int = 0
    violations: list[str] = field(default_factory=list)

    def settled_in(self, gen: int) -> set[int]:
        return {s for g, s in self.accepted_gen + self.refused_gen if g == gen}


def check_commit(fake: Fake, spool: Spool, model: Model, when: str) -> None:
    """Property 2: the cursor and its done ranges cover only events accepted or in the DLQ."""
    seq, gen, covered = committed_set(spool)  # first the cursor, then what was settled by then
    if model.rewound is not None and gen == model.rewound[1]:
        at, _ = model.rewound
        covered = {s for s in covered if s > at}
        settled = model.settled_in(gen)  # recorded when answered: before the DLQ write and commit
    else:
        settled = set(seqs(fake.received)) | set(dlq_seqs(spool))
    ahead = sorted(covered - settled - model.skipped)
    if ahead:
        model.violations.append(f"{when}: cursor {seq} gen {gen} (+ done ranges) covers unsettled {ahead}")


def play(fake: Fake, drain: Drain, sc: Scenario, model: Model, spool: Spool) -> None:
    """Make the drawn steps the Fake's rule: one per send, then deliver everything."""
    queue = list(sc.steps)

    def rule(batch: list[DeliveryItem]) -> Outcome | None:
        gen = drain._generation  # no switch since the drain checked the batch's epoch: it is this one
        model.send_times.append(time.monotonic())
        numbers = fake.sent[-1]  # Fake.answer recorded this call's numbers just before
        if [i.seq for i in batch] != seqs(numbers):
            model.violations.append(f"items {[i.seq for i in batch]} are not the body's {numbers}")
        if len(drain._window) > sc.concurrency + 2:
            model.violations.append(f"{len(drain._window)} batches registered")
        check_commit(fake, spool, model, f"at send {len(fake.sent)}")
        unstored = [s for s in sc.bad if s < batch[-1].seq and not encode_failed(spool)[s]]
        if unstored:  # docs/outputs.md §3: stored before any batch of their chunk is sent
            model.violations.append(f"{unstored} not in the DLQ yet when {numbers} was sent")
        kind, delay, *args = queue.pop(0) if queue else ("deliver", 0)
        model.active += 1
        model.max_active = max(model.max_active, model.active)
        if delay:
            gevent.sleep(delay / 1000)
        model.active -= 1
        model.answers[kind] += 1
        reason = REASONS.get(kind, "")

        def accept(items: list[DeliveryItem]) -> None:
            fake.received.extend(i.seq - 1 for i in items)
            model.accepted_gen.extend((gen, i.seq) for i in items)

        def refuse(items: list[DeliveryItem]) -> None:
            model.told.extend((i.seq, reason) for i in items)
            model.refused_gen.extend((gen, i.seq) for i in items)

        if kind == "deliver":
            model.accepted_gen.extend((gen, i.seq) for i in batch)
            return None  # Fake.answer records them in received
        if kind in ("retry", "auth", "throttled"):
            model.retry_waits += 1
            if kind == "retry":
                return Outcome.retry("HTTP 503")
            if kind == "auth":
                fake.calls.append("answered 401")
                return Outcome.retry("HTTP 401", auth_failure=True)
            if args[0] is not None:
                model.holds.append((time.monotonic(), args[0]))
            return Outcome.retry("HTTP 429", retry_after=args[0], throttled=True)
        if kind == "permanent_all":
            refuse(batch)
            return Outcome.permanent(reason, excerpt="no")
        if kind == "permanent_some":
            failed = [it for it, m in zip(batch, args[0], strict=False) if m] or batch
            refuse(failed)
            accept([it for it in batch if all(it is not f for f in failed)])
            return Outcome.permanent(reason, failed=failed)
        if kind == "partial":
            marks = list(args[0])[:len(batch)]
            failed = [it for it, m in zip(batch, marks, strict=False) if m == 1]
            again = [it for it, m in zip(batch, marks, strict=False) if m == 2]
            refuse(failed)
            accept([it for it, m in zip(batch, marks, strict=False) if m == 0])
            if again:
                model.retry_waits += 1
            if args[1] is not None:
                model.holds.append((time.monotonic(), args[1]))
            return Outcome.partial(reason, failed=failed, retry_items=again, throttled=bool(again),
                                   retry_after=args[1])
        assert kind == "split"
        if len(batch) == 1:
            refuse(batch)
        return Outcome.split(reason)

    fake.rule = rule


def started(spool: Spool, sc: Scenario, also_skipped: frozenset[int] | set[int] = frozenset()
            ) -> tuple[Fake, Drain, Model, set[int]]:
    """The whole backlog spooled, and a scripted drain over it (not running yet): the output, the
    drain, the model (events the filter skips, and ``also_skipped``) and the kept seqs."""
    fill_events(spool, sc, 0, sc.n)
    kept = kept_seqs(sc)
    model = Model(skipped=set(range(1, sc.n + 1)) - kept | set(also_skipped))
    fake, drain = scripted(spool, sc, model)
    return fake, drain, model, kept


def scripted(spool: Spool, sc: Scenario, model: Model) -> tuple[Fake, Drain]:
    fake = new_output(sc)
    drain = Drain(fake, spool, spool.reader())
    play(fake, drain, sc, model, spool)
    return fake, drain


def assert_dlq_is_what_was_refused(spool: Spool, model: Model, crashed: bool = False) -> None:
    entries = [e for e in spool.dlq_list(NAME, limit=100_000) if not e.reason.startswith("encode failed")]
    stored = Counter((e.seq, e.reason) for e in entries)
    if crashed:  # killed between an answer and its DLQ write: the event is sent again instead
        assert not stored - Counter(model.told)
    else:
        assert stored == Counter(model.told)
    # the canonical event, also for an output that keeps only encoded bytes in flight
    assert all(orjson.loads(e.body)["n"] == e.seq - 1 for e in entries)


# -------------------------------------------------------------------------------- properties 1, 2, 3


@settings(max_examples=35, **SETTINGS)
@given(sc=scenarios(live=True))
def test_every_event_is_delivered_or_dead_lettered_once_and_the_cursor_never_runs_ahead(sc):
    with fresh_spool() as spool:
        kept = kept_seqs(sc)
        model = Model(skipped=set(range(1, sc.n + 1)) - kept)
        fake, drain = scripted(spool, sc, model)
        first = sc.n if sc.live_from is None else sc.live_from
        fill_events(spool, sc, 0, first)
        g = start(drain)
        try:
            if first < sc.n:  # the rest arrives while the drain works (or idles)
                wait_until(lambda: len(fake.sent) >= 2 or cursor_seq(spool) == first or g.dead)
                fill_events(spool, sc, first, sc.n)
            wait_until(lambda: cursor_seq(spool) == sc.n or g.dead, 20)
            assert not g.dead, f"the drain died: {g.exception!r}"
        finally:
            stop(drain, g)
        check_commit(fake, spool, model, "at the end")
        received = seqs(fake.received)
        sent = [s for attempt in fake.sent for s in seqs(attempt)]
        dlq = dlq_seqs(spool)

        # 2. ordered commit (checked at every send and at the end), window, slots, Retry-After
        assert model.violations == []
        assert model.max_active <= sc.concurrency
        for answered, hold in model.holds:  # docs/outputs.md §3: no batch sent before it has passed
            early = [t - answered for t in model.send_times if answered < t < answered + hold - 1e-4]
            assert not early, f"sent {early} s after a Retry-After of {hold} s"
        # §3: after a 401 the next attempt re-reads the credentials first
        calls = fake.calls
        for i, call in enumerate(calls):
            if call == "answered 401":
                following = calls[i + 1:]
                if "send" in following:
                    assert "refresh" in following[:following.index("send")], calls
        # 1. completion and conservation
        assert set(sent) <= kept - sc.bad, "an event below the filter, or not encoded, was sent"
        assert_dlq_is_what_was_refused(spool, model)
        assert encode_failed(spool) == Counter(sc.bad)
        assert len(dlq) == len(set(dlq)), "an event is in the DLQ more than once"
        assert len(received) == len(set(received)), "an event was accepted twice without a restart"
        assert not set(dlq) & set(received), "an event is both in the DLQ and accepted"
        assert set(dlq) | set(received) == kept
        # 3. stats
        stats = drain.stats
        assert stats.delivered == len(received)
        assert stats.dlq == len(dlq)
        assert stats.filtered == sc.n - len(kept)
        assert stats.retries == model.retry_waits
        assert stats.failed_attempts >= sum(model.answers[k] for k in ("retry", "auth", "throttled"))
        assert stats.in_flight == 0 and stats.in_flight_batches == 0
        state = spool.read_output_states().get(NAME)
        assert (state.dlq_total if state else 0) == len(dlq)


@settings(max_examples=20, **SETTINGS)
@given(sc=scenarios())
def test_a_dlq_entry_counts_the_sends_that_carried_its_event(sc):
    """docs/outputs.md §6: entries keep "the number of attempts": every send that carried the event,
    halves of a split batch included (test_a_bisected_event_s_dlq_entry_counts_every_send_that_
    carried_it below pinned the case that counted too few)."""
    with fresh_spool() as spool:
        fill_events(spool, sc, 0, sc.n)
        fake, drain = scripted(spool, sc, Model())
        run_until(drain, caught_up(spool, NAME), timeout=20.0)
        carried = Counter(s for attempt in fake.sent for s in seqs(attempt))
        got = {e.seq: e.attempts for e in spool.dlq_list(NAME, limit=100_000)}
        assert got == {s: carried[s] for s in got}


# -------------------------------------------------------------------------------- property 4


@settings(max_examples=40, **SETTINGS)
@given(sc=scenarios(), stop_after=st.integers(0, 30), pause_ms=st.sampled_from([0, 0, 1, 2]),
       crash=st.booleans())
def test_a_stop_or_crash_and_restart_loses_nothing_and_re_sends_only_unfinished_batches(
        sc, stop_after, pause_ms, crash):
    with fresh_spool() as spool:
        first, drain, model, kept = started(spool, sc)
        g = start(drain)
        wait_until(lambda: len(first.sent) >= stop_after or caught_up(spool, NAME)() or g.dead, 20)
        if pause_ms:
            gevent.sleep(pause_ms / 1000)
        if crash:
            g.kill()  # no orderly stop: the batches in flight die where they are
        else:
            stop(drain, g)
            assert drain.stats.in_flight == 0 and drain.stats.in_flight_batches == 0
        assert g.dead and g.exception is None
        check_commit(first, spool, model, "after the stop")
        assert model.violations == []
        _, _, committed = committed_set(spool)
        accepted_1 = set(seqs(first.received))
        dlq_1 = dlq_seqs(spool)
        refused_1 = refused(spool)
        assert_dlq_is_what_was_refused(spool, model, crashed=crash)

        second = new_output(sc)
        run_until(Drain(second, spool, spool.reader()), caught_up(spool, NAME), timeout=20.0)
        sent_2 = [s for attempt in second.sent for s in seqs(attempt)]
        accepted_2 = set(seqs(second.received))

        dlq_2 = dlq_seqs(spool)
        assert refused(spool) == refused_1, "the second run refused nothing"
        # rows that cannot be encoded are stored again only when the stop left them unfinished
        assert encode_failed(spool) == Counter(sc.bad) + Counter(s for s in sc.bad if s not in committed
                                                                 and s in dlq_1)
        assert accepted_1 | accepted_2 | set(dlq_2) == kept, "an event was lost"
        assert not set(sent_2) & committed, "an event committed at the stop was sent again"
        assert set(sent_2) == kept - committed - sc.bad, "every unfinished event is sent by the next run"
        assert len(sent_2) == len(set(sent_2))
        # at-least-once: the events sent twice are those of the batches in flight at the stop
        again = (accepted_1 | set(dlq_1)) & set(sent_2)
        assert len(again) <= sc.concurrency * sc.batch_max_events, (sorted(again), sorted(committed))


# -------------------------------------------------------------------------------- property 5


@settings(max_examples=30, **SETTINGS)
@given(sc=scenarios(), rewind_after=st.integers(0, 30), target=st.integers(0, 60),
       by_count=st.booleans())
def test_a_rewind_during_the_run_re_sends_everything_after_the_new_position(
        sc, rewind_after, target, by_count):
    with fresh_spool() as spool:
        # rows that cannot be encoded: the rule checks they are stored before a batch past them is sent
        fake, drain, model, kept = started(spool, sc, also_skipped=sc.bad)
        g = start(drain)
        try:
            wait_until(lambda: (spool.get_cursor(NAME) is not None
                                and (len(fake.sent) >= rewind_after or caught_up(spool, NAME)()))
                       or g.dead, 20)
            if by_count:  # `cursor rewind --count N`: back over the last N events up to the cursor
                before, after = spool.rewind(NAME, count=max(1, target))
            else:  # `cursor rewind --seq S`: back, or forward (skipping)
                before, after = spool.rewind(NAME, seq=min(target, sc.n))
            model.rewound = (after.seq, after.generation)
            assert after.generation == before.generation + 1
            wait_until(lambda: (drain._generation == after.generation and caught_up(spool, NAME)())
                       or g.dead, 20)
            assert not g.dead, f"the drain died: {g.exception!r}"
        finally:
            stop(drain, g)
        check_commit(fake, spool, model, "at the end")
        assert model.violations == []
        assert spool.get_cursor(NAME) == (sc.n, after.generation)
        at, new = after.seq, after.generation
        sent_new = {s for gen, s in model.accepted_gen + model.refused_gen if gen == new}
        assert {s for s in kept - sc.bad if s > at} <= model.settled_in(new), "not sent again after rewind"
        assert all(encode_failed(spool)[s] for s in sc.bad)
        assert all(s > at for s in sent_new), "the new generation sent an event before its position"
        assert_dlq_is_what_was_refused(spool, model)
        assert drain.stats.in_flight == 0 and drain.stats.in_flight_batches == 0


# -------------------------------------------------------------------------------- defects found


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def test_a_bisected_event_s_dlq_entry_counts_every_send_that_carried_it(spool):
    fill(spool, 2)
    out = Fake("f", cfg(batch_max_events=2, breaker_failures=0),
               script=[lambda b: Outcome.split("HTTP 413"), lambda b: Outcome.permanent("HTTP 400")])
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    assert out.sent == [[0, 1], [0], [1]]
    (entry,) = spool.dlq_list("f")
    assert entry.seq == 1 and entry.attempts == 2  # in the refused pair, then alone: 1 is stored


def test_a_rewind_wins_while_every_send_slot_is_stuck_in_retries(spool):
    fill(spool, 10)
    # events 0 and 1 are refused with a 503 forever; the operator skips them: cursor rewind --seq 2
    out = Fake("f", cfg(batch_max_events=2, concurrency=1, breaker_failures=0),
               rule=lambda b: Outcome.retry("HTTP 503") if min(ns(b)) < 2 else None)
    drain = Drain(out, spool, spool.reader())
    g = start(drain)
    try:
        wait_until(lambda: len(out.sent) >= 3)
        spool.rewind("f", seq=2)
        # docs/outputs.md §2: noticed "within a second when stuck"; the old batch is abandoned.
        # (Before, never: the reader sat in Pool.spawn behind the stuck batch.)
        wait_until(lambda: spool.get_cursor("f").seq == 10)
    finally:
        stop(drain, g)
    assert sorted(out.received) == list(range(2, 10))
