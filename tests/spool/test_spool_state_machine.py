"""A stateful (hypothesis) test of ``spool.store.Spool`` against a plain in-memory model.

Rules append batches (duplicate event ids included; now and then from another handle on the file),
read (the spool's connection, and a drain's ``reader()``), create / commit (with finished ranges) /
rewind (by seq, time, event id and count, maybe from another handle, as the CLI) / enable / delete
cursors, prune, add / requeue / replay / purge / finish DLQ entries, purge quarantine, move a fake
clock, close and reopen the spool, and crash (copy the files as they are and open the copy). Some
runs start from a spool of the previous release (seq gaps, ``seq_gapped_below``); two variants run
with a small ``max_bytes`` (``drop_oldest``, ``block``). After every step the spool must agree with
the model: the events (seq order, ids, bodies; duplicates stored once and counted), seqs never
reused, cursors and their finished ranges, ``stats()`` rows and lag (docs/spool.md "Row and lag
figures": ``lag_events`` = retained events after the cursor, finished ranges included), the DLQ and
its counts, quarantine and input offsets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import spool.store as store
from spool import (
    Cursor,
    EncodedEvent,
    IngestBatch,
    InputOffset,
    QuarantineRecord,
    RewindError,
    Spool,
    SpoolFull,
    SpoolRow,
)
from spool.types import EXCERPT_MAX, REASON_MAX
from tests.spool.conftest import event_id
from tests.spool.test_stats_and_dlq_state import _old_spool_with_gaps

OUTPUTS = ("a", "b", "c")
INPUTS = ("in1", "in2")
ID_POOL = 40  # small, so duplicates (and ids re-appended after a prune) are frequent
T0 = 1_700_000_000_000
MISSING_BODY = " (event body no longer in the spool)"


def _cut(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, str):
        data = data.encode()
    return data[:EXCERPT_MAX]


@dataclass
class MEvent:
    seq: int
    event_id: bytes
    ts_ms: int
    body: bytes
    ingested_ms: int

    def row(self) -> SpoolRow:
        return SpoolRow(self.seq, self.event_id, self.ts_ms, self.body)


@dataclass
class MCursor:
    seq: int
    gen: int = 0
    enabled: bool = True
    done: list[tuple[int, int]] = field(default_factory=list)  # as stored (filtered when read)


@dataclass
class MDlq:
    id: int
    output: str
    seq: int
    event_id: bytes
    body: bytes
    reason: str
    excerpt: bytes
    attempts: int
    created_ms: int
    updated_ms: int | None  # NULL on entries stored before migration 0003
    replay: bool = False

    @property
    def failed_ms(self) -> int:
        return self.created_ms if self.updated_ms is None else self.updated_ms


@dataclass
class MQuarantine:
    input: str
    source: str
    offset: int | None
    reason: str
    excerpt: bytes
    created_ms: int


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


ev_spec = st.tuples(st.integers(1, ID_POOL), st.integers(0, 30), st.integers(1, 24))
batch_spec = st.tuples(
    st.sampled_from(INPUTS),
    st.lists(ev_spec, max_size=10),
    st.lists(st.tuples(st.sampled_from(("f1", "f2")), st.integers(0, 10**6)), max_size=2),
    st.lists(st.tuples(st.text(max_size=3), st.one_of(st.none(), st.integers(0, 99)),
                       st.sampled_from([8, REASON_MAX + 5]).map(lambda n: "x" * n),
                       st.sampled_from([0, 1, EXCERPT_MAX + 10]).map(lambda n: b"z" * n)), max_size=2),
)
reasons = st.sampled_from([8, 19, REASON_MAX + 7]).map(lambda n: "r" * n)  # cut to REASON_MAX
excerpts = st.one_of(st.none(), st.just("text excerpt"),
                     st.sampled_from([0, 5, EXCERPT_MAX + 3]).map(lambda n: b"b" * n))


class SpoolMachine(RuleBasedStateMachine):
    max_bytes: int | None = None
    on_full = "block"
    body_scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="spool-sm-")
        self.path = os.path.join(self.dir, "spool.db")
        self.clock = Clock()
        self._real_now = store.now_ms
        store.now_ms = self.clock
        self.offload = False
        self.spool = self.open(self.offload)
        self.readers: dict[str, store.SpoolReader] = {}
        self.body_serial = 0
        # the model
        self.events: list[MEvent] = []
        self.ever: dict[int, MEvent] = {}  # every event ever stored, by seq (rows for dlq_add)
        self.last = 0
        self.duplicates_total = 0
        self.pruned_total = 0
        self.dropped_total = 0
        self.cursors: dict[str, MCursor] = {}
        self.dlq: dict[int, MDlq] = {}
        self.dlq_total: dict[str, int] = {}
        self.quarantine: list[MQuarantine] = []
        self.offsets: dict[tuple[str, str], int] = {}

    def open(self, offload: bool) -> Spool:
        return Spool(self.path, offload=offload, max_bytes=self.max_bytes, on_full=self.on_full)

    def teardown(self) -> None:
        try:
            for r in self.readers.values():
                r.close()
            self.spool.close()
        finally:
            store.now_ms = self._real_now
            shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(old=st.sampled_from([False, False, True]))
    def start(self, old):
        """Start from an empty spool, or from one the previous release left (schema 2, seq gaps
        below seq 10, two DLQ entries without updated_ms), which migration 0004 marks as
        ``seq_gapped_below``."""
        if not old:
            return
        self.spool.close()
        os.remove(self.path)
        _old_spool_with_gaps(self.path)
        for seq in (1, 2, 3, 5, 6, 9):
            e = MEvent(seq, event_id(900 + seq), 0, b"\x00", 1_000 + seq)
            self.events.append(e)
            self.ever[seq] = e
        self.last, self.duplicates_total = 10, 4
        self.cursors = {"a": MCursor(2), "b": MCursor(6)}
        for i, (seq, why, t) in enumerate([(3, "old 1", 5_000), (5, "old 2", 6_000)], start=1):
            self.dlq[i] = MDlq(i, "a", seq, b"\x00", b"\x00", why, b"", 1, t, None)
        with Spool.open_readonly(self.path) as ro:  # `status` before the agent migrated it
            self.check_stats(ro.stats(now=self.clock.t), self.clock.t)
        self.spool = self.open(self.offload)

    # -- model helpers ---------------------------------------------------------------------------

    def first(self) -> int | None:
        return self.events[0].seq if self.events else None

    def after(self, seq: int) -> list[SpoolRow]:
        return [e.row() for e in self.events if e.seq > seq]

    def floor(self) -> int:
        """The lowest seq a cursor may be rewound to (docs/spool.md: only deletions count)."""
        if not (self.pruned_total or self.dropped_total):
            return 0
        return self.last if not self.events else self.events[0].seq - 1

    def body(self, n: int, ts: int, size: int) -> bytes:
        self.body_serial += 1
        return f"{n}/{ts}/{self.body_serial}:".encode() + b"e" * size

    # -- appends -----------------------------------------------------------------------------

    @rule(batches=st.lists(batch_spec, min_size=1, max_size=3), many=st.booleans(),
          other=st.integers(0, 9), advance=st.sampled_from([0, 0, 400, 1_500]))
    def append(self, batches, many, other, advance):
        self._append(batches, many, other, advance)

    @rule(evs=st.lists(ev_spec, min_size=1, max_size=6), advance=st.sampled_from([0, 300, 1_100]))
    def append_small(self, evs, advance):
        """One input's batch of events only (appends are most of a spool's writes)."""
        self._append([("in1", evs, [], [])], False, 1, advance)

    def _append(self, batches, many, other, advance):
        self.clock.t += advance
        now = self.clock.t
        ingest, expected, fresh, quarantine, offsets = [], [], [], [], {}
        retained = {e.event_id for e in self.events}
        last = self.last
        dups_total = 0
        for inp, evs, offs, quar in batches:
            encoded = [EncodedEvent(event_id(n), ts, self.body(n, ts, size * self.body_scale))
                       for n, ts, size in evs]
            ingest.append(IngestBatch(
                inp, encoded, [InputOffset(k, f"/var/log/{k}", o) for k, o in offs],
                [QuarantineRecord(src, off, why, exc) for src, off, why, exc in quar]))
            inserted = dups = 0
            for e in encoded:
                if e.event_id in retained:
                    dups += 1
                    continue
                retained.add(e.event_id)
                last += 1
                fresh.append(MEvent(last, e.event_id, e.ts_ms, e.body, now))
                inserted += 1
            dups_total += dups
            expected.append((inserted, dups))
            for k, o in offs:
                offsets[(inp, k)] = o
            for src, off, why, exc in quar:
                quarantine.append(MQuarantine(inp, src, off, why[:REASON_MAX], _cut(exc), now))
        # now and then another process's handle on the same file appends (docs/spool.md: this
        # process's readers then read those rows from SQLite)
        target = Spool(self.path, offload=False, max_bytes=self.max_bytes, on_full=self.on_full) \
            if other == 0 else self.spool
        # A full spool deletes what every enabled output delivered first (whatever on_full says; no
        # enabled output: nothing), then, with drop_oldest only, undelivered events.
        enabled = [c.seq for c in self.cursors.values() if c.enabled]
        delivered = min([self.last, *enabled]) if enabled else 0
        try:
            got = target.append_many(ingest) if many or len(ingest) > 1 else [target.append(ingest[0])]
        except SpoolFull:
            event("append refused: SpoolFull")
            assert self.max_bytes is not None  # nothing of it written: the invariants check that
            return
        finally:
            if target is not self.spool:
                target.close()
        assert [tuple(r) for r in got] == expected
        boundary = self.last
        self.last = last
        self.duplicates_total += dups_total
        self.events += fresh
        self.ever.update((e.seq, e) for e in fresh)
        self.quarantine += quarantine
        self.offsets.update(offsets)
        # Over max_bytes the oldest events committed before this transaction may go, and only those
        # (docs/spool.md "Size limit and disk full"): delivered ones in any mode, undelivered ones with
        # on_full = "drop_oldest" only; no limit deletes nothing.
        first = self.spool.first_seq()
        gone = [e for e in self.events if first is None or e.seq < first]
        if gone:
            assert self.max_bytes is not None and gone[-1].seq <= boundary, (gone, boundary)
            evicted = [e for e in gone if e.seq <= delivered]
            dropped = gone[len(evicted):]
            assert not dropped or self.on_full == "drop_oldest", (dropped, delivered)
            del self.events[:len(gone)]
            self.pruned_total += len(evicted)
            self.dropped_total += len(dropped)
            event("append deleted delivered events" if evicted else "append dropped the oldest events")
            if dropped:
                event("append dropped undelivered events")
        if dups_total:
            event("append ignored duplicates")

    # -- reads -------------------------------------------------------------------------------

    @rule(data=st.data(), limit=st.integers(0, 30))
    def read_after(self, data, limit):
        pos = data.draw(st.integers(-1, self.last + 2), label="pos")
        assert self.spool.read_after(pos, limit) == self.after(pos)[:limit]

    def reader(self, output: str) -> store.SpoolReader:
        r = self.readers.get(output)
        if r is None:
            r = self.readers[output] = self.spool.reader()
        return r

    @precondition(lambda self: any(c.enabled for c in self.cursors.values()))
    @rule(data=st.data(), limit=st.integers(1, 25), commit=st.sampled_from([True, True, False]),
          done_gaps=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=3))
    def drain(self, data, limit, commit, done_gaps):
        """What a drain does: read after its cursor on its own reader (served from memory when it
        can), then commit up to the last row read, maybe with finished ranges above it."""
        output = data.draw(st.sampled_from(sorted(o for o, c in self.cursors.items() if c.enabled)))
        cur = self.cursors[output]
        rows = self.reader(output).read_after(cur.seq, limit)
        want = self.after(cur.seq)
        # Never a row the spool deleted (drop_oldest, prune): those were served from memory once
        # (test_a_drain_reader_never_serves_events_the_spool_dropped). A read from memory may end
        # where the rows held end; it is never empty when rows exist.
        assert rows == want[:len(rows)], (cur.seq, [r.seq for r in rows], [r.seq for r in want[:limit]])
        assert len(rows) <= limit and (rows or not want)
        if commit and rows:
            self._commit(output, rows[-1].seq, cur.gen, self._ranges(rows[-1].seq, done_gaps))

    def _ranges(self, seq: int, gaps) -> list[tuple[int, int]]:
        out, lo = [], seq - 2  # the first range may straddle or lie below the cursor: filtered
        for gap, width in gaps:
            lo += gap + 1
            out.append((lo, lo + width))
            lo += width
        return out

    def _commit(self, output, seq, gen, done) -> None:
        cur = self.cursors.get(output)
        ok = self.spool.commit_cursor(output, seq, gen, done)
        expect = cur is not None and cur.gen == gen
        assert ok is expect
        if expect:
            cur.seq = seq
            if done is not None:
                cur.done = [(lo, hi) for lo, hi in done if hi > seq]

    # -- cursors -----------------------------------------------------------------------------

    @rule(output=st.sampled_from(OUTPUTS), start=st.sampled_from(["beginning", "end"]),
          not_after=st.one_of(st.none(), st.integers(0, 60)))
    def ensure_cursor(self, output, start, not_after):
        cur = self.cursors.get(output)
        if cur is None:
            seq = self.last if start == "end" or not self.events else self.events[0].seq - 1
            if start == "end" and not_after is not None:
                seq = min(seq, not_after)
            cur = self.cursors[output] = MCursor(seq)
        assert self.spool.ensure_cursor(output, start, not_after) == Cursor(cur.seq, cur.gen)

    @precondition(lambda self: self.cursors)
    @rule(data=st.data(), stale=st.booleans(), with_done=st.sampled_from(["none", "empty", "ranges"]),
          gaps=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=3))
    def commit_cursor(self, data, stale, with_done, gaps):
        output = data.draw(st.sampled_from(sorted(self.cursors)))
        cur = self.cursors[output]
        seq = data.draw(st.integers(cur.seq, max(cur.seq, self.last)), label="seq")  # forward only
        done = {"none": None, "empty": [], "ranges": self._ranges(seq, gaps)}[with_done]
        self._commit(output, seq, cur.gen - 1 if stale else cur.gen, done)

    @precondition(lambda self: self.cursors)
    @rule(data=st.data(), enabled=st.booleans())
    def set_enabled(self, data, enabled):
        output = data.draw(st.sampled_from(sorted(self.cursors)))
        assert self.spool.set_enabled(output, enabled)
        self.cursors[output].enabled = enabled

    @rule(output=st.sampled_from(OUTPUTS))
    def delete_cursor(self, output):
        assert self.spool.delete_cursor(output) is (self.cursors.pop(output, None) is not None)
        r = self.readers.pop(output, None)
        if r is not None:
            r.close()

    def expected_rewind(self, output, kind, value) -> int:
        """The cursor's seq after the rewind, or raise RewindError (docs/spool.md "Cursors and
        rewind"): since/event_id/count never move it forward; nothing goes below retention."""
        cur = self.cursors.get(output)
        if cur is None:
            raise RewindError("unknown output")
        floor, pruned = self.floor(), bool(self.pruned_total or self.dropped_total)
        if kind == "seq":
            if value < 0 or value > self.last:
                raise RewindError("outside")
            target = value
        elif kind == "since_ms":
            hits = [e.seq for e in self.events if e.ts_ms >= value]
            if not hits:
                target = self.last
            else:
                target = hits[0] - 1
                if pruned and target == floor and value < min(e.ts_ms for e in self.events):
                    raise RewindError("older events were pruned")
        elif kind == "event_id":
            hits = [e.seq for e in self.events if e.event_id == value]
            if not hits:
                raise RewindError("not in the spool")
            target = hits[0] - 1
        else:
            if value <= 0:
                raise RewindError("count must be positive")
            delivered = [e.seq for e in self.events if e.seq <= cur.seq]
            if len(delivered) >= value:
                target = delivered[-value] - 1
            elif pruned:
                raise RewindError("only ... delivered events are retained")
            else:
                target = 0
        if kind != "seq" and target > cur.seq:
            return cur.seq
        if target < floor:
            raise RewindError("below retention")
        return target

    @rule(data=st.data(), output=st.sampled_from((*OUTPUTS, "zz")),
          kind=st.sampled_from(["seq", "since_ms", "event_id", "count"]), cli=st.booleans())
    def rewind(self, data, output, kind, cli):
        """As `clawd-agent cursor rewind` does it: maybe from another process (its own handle)."""
        if kind == "seq":
            value = data.draw(st.integers(-1, self.last + 1), label="seq")
        elif kind == "since_ms":
            value = data.draw(st.integers(-1, 32), label="since_ms")
        elif kind == "event_id":
            value = event_id(data.draw(st.integers(1, ID_POOL), label="id"))
        else:
            value = data.draw(st.integers(0, self.last + 2), label="count")
        cur = self.cursors.get(output)
        handle = Spool(self.path, offload=False) if cli else self.spool
        try:
            try:
                target = self.expected_rewind(output, kind, value)
            except RewindError:
                event("rewind refused")
                with pytest.raises(RewindError):
                    handle.rewind(output, **{kind: value})
                return
            before, after = handle.rewind(output, **{kind: value})
        finally:
            if cli:
                handle.close()
        assert before == Cursor(cur.seq, cur.gen)
        assert after == Cursor(target, cur.gen + 1)
        cur.seq, cur.gen, cur.done = target, cur.gen + 1, []

    # -- retention and time ------------------------------------------------------------------

    @rule(ms=st.integers(0, 2_500))
    def tick(self, ms):
        self.clock.t += ms

    @rule(retention_s=st.sampled_from([0, 0, 0.5, 1, 3]),
          configured=st.one_of(st.none(), st.lists(st.sampled_from(OUTPUTS), unique=True, max_size=3)),
          chunk_rows=st.sampled_from([1, 3, 5000]), advance=st.sampled_from([0, 600, 2_000]))
    def prune(self, retention_s, configured, chunk_rows, advance):
        self.clock.t += advance
        # docs/spool.md "Retention": seq <= the lowest cursor of the enabled configured outputs (a
        # configured one without a cursor holds back everything), and ingested before the cutoff.
        limit = self.last
        for name in (sorted(self.cursors) if configured is None else configured):
            cur = self.cursors.get(name)
            if cur is None:
                limit = 0
                break
            if cur.enabled:
                limit = min(limit, cur.seq)
        cutoff = self.clock.t - int(retention_s * 1000)
        n = 0
        while n < len(self.events) and self.events[n].seq <= limit and self.events[n].ingested_ms < cutoff:
            n += 1
        del self.events[:n]
        self.pruned_total += n
        event(f"prune deleted {'some' if n else 'none'}")
        assert self.spool.prune(retention_s, configured, chunk_rows=chunk_rows) == n

    # -- DLQ ---------------------------------------------------------------------------------

    @precondition(lambda self: self.ever)
    @rule(data=st.data(), output=st.sampled_from(OUTPUTS), reason=reasons, excerpt=excerpts,
          attempts=st.integers(1, 5))
    def dlq_add(self, data, output, reason, excerpt, attempts):
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.ever)), max_size=4), label="seqs")
        no_body = data.draw(st.lists(st.booleans(), min_size=len(seqs), max_size=len(seqs)), label="nobody")
        retained = {e.seq: e for e in self.events}
        rows, want = [], []
        for seq, empty in zip(seqs, no_body, strict=True):
            e = self.ever[seq]
            rows.append(SpoolRow(e.seq, e.event_id, e.ts_ms, b"" if empty else e.body))
            why, body = reason[:REASON_MAX], e.body
            if empty:
                if seq in retained:
                    body = retained[seq].body
                else:
                    body, why = b"", (reason[:REASON_MAX] + MISSING_BODY)[:REASON_MAX]
            want.append((e.seq, e.event_id, body, why))
        before = set(self.dlq)
        assert self.spool.dlq_add(output, rows, reason, excerpt, attempts) == len(rows)
        new = sorted(e.id for e in self.spool.dlq_list(None, 10**6) if e.id not in before)
        assert len(new) == len(rows)
        now = self.clock.t
        for i, (seq, eid, body, why) in zip(new, want, strict=True):
            self.dlq[i] = MDlq(i, output, seq, eid, body, why, _cut(excerpt), attempts, now, now)
        if rows:
            self.dlq_total[output] = self.dlq_total.get(output, 0) + len(rows)

    def some_ids(self, data, label):
        pool = [*sorted(self.dlq), max(self.dlq, default=0) + 1000]  # plus one that does not exist
        return data.draw(st.lists(st.sampled_from(pool), max_size=4, unique=True), label=label)

    @rule(data=st.data(), reason=reasons, excerpt=excerpts)
    def dlq_requeue(self, data, reason, excerpt):
        ids = self.some_ids(data, "ids")
        hit = [i for i in ids if i in self.dlq]
        for i in hit:
            d = self.dlq[i]
            d.reason, d.excerpt, d.updated_ms = reason[:REASON_MAX], _cut(excerpt), self.clock.t
            d.attempts += 1
            d.replay = False
        assert self.spool.dlq_requeue(ids, reason, excerpt) == len(hit)

    @rule(data=st.data(), output=st.one_of(st.none(), st.sampled_from(OUTPUTS)), by_ids=st.booleans())
    def dlq_request_replay(self, data, output, by_ids):
        ids = self.some_ids(data, "ids") if by_ids else None
        hit = [d for d in self.dlq.values()
               if (output is None or d.output == output) and (ids is None or d.id in ids)]
        for d in hit:
            d.replay = True
        assert self.spool.dlq_request_replay(output, ids) == len(hit)

    @rule(data=st.data(), output=st.one_of(st.none(), st.sampled_from(OUTPUTS)), by_ids=st.booleans(),
          age=st.one_of(st.none(), st.integers(-1_000, 8_000)))
    def dlq_purge(self, data, output, by_ids, age):
        ids = self.some_ids(data, "ids") if by_ids else None
        older = None if age is None else self.clock.t - age
        hit = [d.id for d in self.dlq.values()
               if (output is None or d.output == output) and (ids is None or d.id in ids)
               and (older is None or d.failed_ms < older)]
        for i in hit:
            del self.dlq[i]
        assert self.spool.dlq_purge(output, older, ids) == len(hit)

    @rule(data=st.data(), output=st.sampled_from(OUTPUTS), after_id=st.integers(0, 5),
          limit=st.integers(1, 6))
    def dlq_replay_round(self, data, output, after_id, limit):
        """A drain's replay: take the marked entries, then finish some, requeue others."""
        pending = sorted(i for i, d in self.dlq.items() if d.output == output and d.replay and i > after_id)
        got = self.spool.dlq_replay_pending(output, limit, after_id)
        assert [e.id for e in got] == pending[:limit]
        ids = [e.id for e in got]
        taken = self.spool.dlq_take(output, [*ids, *self.some_ids(data, "extra")])
        assert [e.id for e in taken] == sorted(i for i in {*ids, *(e.id for e in taken)}
                                               if i in self.dlq and self.dlq[i].output == output)
        done = data.draw(st.lists(st.sampled_from(ids), unique=True), label="done") if ids else []
        for i in done:
            del self.dlq[i]
        assert self.spool.dlq_done(done) == len(done)

    # -- quarantine --------------------------------------------------------------------------

    @rule(inp=st.one_of(st.none(), st.sampled_from(INPUTS)), age=st.one_of(st.none(), st.integers(0, 5_000)))
    def quarantine_purge(self, inp, age):
        older = None if age is None else self.clock.t - age
        keep = [q for q in self.quarantine
                if not ((inp is None or q.input == inp) and (older is None or q.created_ms < older))]
        n = len(self.quarantine) - len(keep)
        self.quarantine = keep
        assert self.spool.quarantine_purge(older, inp) == n

    # -- restarts ------------------------------------------------------------------------------

    @rule(offload=st.booleans())
    def reopen(self, offload):
        for r in self.readers.values():
            r.close()
        self.readers.clear()
        self.spool.close()
        self.offload = offload
        self.spool = self.open(offload)

    @rule(offload=st.booleans())
    def crash(self, offload):
        """SIGKILL: only what is in the files survives (copied as they are, -wal included, while
        the old handle is still open and has not checkpointed), and a new process opens them."""
        crashed = tempfile.mkdtemp(prefix="crash-", dir=self.dir)
        path = os.path.join(crashed, "spool.db")
        for suffix in ("", "-wal"):
            if os.path.exists(self.path + suffix):
                shutil.copyfile(self.path + suffix, path + suffix)
        for r in self.readers.values():
            r.close()
        self.readers.clear()
        self.spool.close()
        self.path, self.offload = path, offload
        self.spool = self.open(offload)

    @rule()
    def readonly_status(self):
        """`status` from another process: same rows and lag on a read-only spool."""
        with Spool.open_readonly(self.path) as ro:
            st_ro = ro.stats(now=self.clock.t)
            assert ro.read_after(-1, 10**6) == self.after(-1)
        self.check_stats(st_ro, self.clock.t)

    # -- invariants ----------------------------------------------------------------------------

    def check_stats(self, got, t, configured=None) -> None:
        first = self.first()
        assert (got["rows"], got["first_seq"], got["last_seq"]) == (len(self.events), first, self.last)
        assert got["duplicates_total"] == self.duplicates_total
        assert got["pruned_total"] == self.pruned_total
        assert got["dropped_oldest_total"] == self.dropped_total
        want = {}
        for name, cur in self.cursors.items():
            backlog = [e for e in self.events if e.seq > cur.seq]
            want[name] = {
                "seq": cur.seq,
                "generation": cur.gen,
                "enabled": cur.enabled,
                "lag_events": len(backlog),
                "lag_seconds": max(0.0, (t - backlog[0].ingested_ms) / 1000) if backlog else 0.0,
                "configured": True if configured is None else name in configured,
            }
        cursors = {n: {k: v for k, v in c.items() if k != "updated_ms"} for n, c in got["cursors"].items()}
        assert cursors == want
        dlq: dict[str, int] = {}
        for d in self.dlq.values():
            dlq[d.output] = dlq.get(d.output, 0) + 1
        assert got["dlq"] == dlq
        quar: dict[str, int] = {}
        for q in self.quarantine:
            quar[q.input] = quar.get(q.input, 0) + 1
        assert got["quarantine"] == quar and got["quarantine_total"] == len(self.quarantine)

    @invariant()
    def events_match(self):
        assert self.spool.read_after(-1, 10**6) == self.after(-1)
        assert self.spool.last_seq() == self.last
        assert self.spool.first_seq() == self.first()
        assert self.spool.counters() == {"duplicates_total": self.duplicates_total,
                                         "pruned_total": self.pruned_total,
                                         "dropped_oldest_total": self.dropped_total}

    @invariant()
    def cursors_match(self):
        listed = {c.output: (c.seq, c.generation, c.enabled) for c in self.spool.list_cursors()}
        assert listed == {n: (c.seq, c.gen, c.enabled) for n, c in self.cursors.items()}
        for name, cur in self.cursors.items():
            assert self.spool.get_cursor_done(name) == (
                Cursor(cur.seq, cur.gen), [r for r in cur.done if r[1] > cur.seq])

    @invariant()
    def stats_match(self):
        t = self.clock.t + 1_234
        configured = OUTPUTS[: 1 + self.last % 3]
        # /health and /metrics read on a connection of their own (offload=True); status inline
        self.check_stats(self.spool.stats(configured, now=t, offload=self.last % 2 == 1), t, configured)

    @invariant()
    def dlq_matches(self):
        got = [(e.id, e.output, e.seq, e.event_id, e.body, e.reason, e.response_excerpt, e.attempts,
                e.created_ms) for e in self.spool.dlq_list(None, 10**6)]
        assert got == [(d.id, d.output, d.seq, d.event_id, d.body, d.reason, d.excerpt, d.attempts,
                        d.created_ms) for _, d in sorted(self.dlq.items())]
        assert self.spool.dlq_replay_ids() == {i for i, d in self.dlq.items() if d.replay}
        want = {}
        for o in sorted({d.output for d in self.dlq.values()}):
            mine = [d for d in self.dlq.values() if d.output == o]
            latest = max(mine, key=lambda d: (-1 if d.updated_ms is None else d.updated_ms, d.id))
            want[o] = {"count": len(mine), "replay_pending": sum(d.replay for d in mine),
                       "last_reason": latest.reason, "last_failed_ms": latest.failed_ms,
                       "last_created_ms": latest.created_ms}
        assert self.spool.dlq_counts() == want
        totals = {o: s.dlq_total for o, s in self.spool.read_output_states().items()}
        assert totals == self.dlq_total

    @invariant()
    def quarantine_and_offsets_match(self):
        got = [(q.input, q.source, q.offset, q.reason, q.excerpt, q.created_ms)
               for q in self.spool.quarantine_list(10**6)]
        assert got == [(q.input, q.source, q.offset, q.reason, q.excerpt, q.created_ms)
                       for q in reversed(self.quarantine)]
        for inp in INPUTS:
            got_off = {k: o.offset for k, o in self.spool.get_offsets(inp).items()}
            assert got_off == {k: o for (i, k), o in self.offsets.items() if i == inp}


class DropOldestMachine(SpoolMachine):
    """A small ``max_bytes`` with ``on_full = "drop_oldest"`` and bodies of kilobytes: appends drop
    the oldest events, delivered or not, or are refused whole."""

    max_bytes = 1_200_000
    on_full = "drop_oldest"
    body_scale = 1_500


class BlockMachine(DropOldestMachine):
    on_full = "block"


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SpoolMachine.TestCase.settings = SETTINGS
TestSpoolStateMachine = SpoolMachine.TestCase
DropOldestMachine.TestCase.settings = settings(SETTINGS, max_examples=25)
TestDropOldestStateMachine = DropOldestMachine.TestCase
BlockMachine.TestCase.settings = settings(SETTINGS, max_examples=15)
TestBlockStateMachine = BlockMachine.TestCase


# -- defects found by the machines, reproduced deterministically -------------------------------------


def test_a_drain_reader_never_serves_events_the_spool_dropped(tmp_path):
    with Spool(tmp_path / "spool.db", offload=False, max_bytes=1_200_000, on_full="drop_oldest") as s:
        s.ensure_cursor("out")
        with s.reader() as drain:
            assert drain.read_after(0, 100) == []  # the output's drain waits at seq 0 (it is down)
            n = 0
            while not s.counters()["dropped_oldest_total"]:  # ~5 appends of 100 KB
                s.append(IngestBatch("in", [EncodedEvent(event_id(n + i), n + i, b"x" * 20_000)
                                            for i in range(5)]))
                n += 5
                assert n <= 500
            first = s.first_seq()
            assert first is not None and first > 1  # seq 1 .. first-1 were dropped, undelivered
            assert s.read_after(0, 1) == s.read_after(first - 1, 1)
            got = drain.read_after(0, 1_000)
            assert [r.seq for r in got] == [r.seq for r in s.read_after(0, 1_000)]
