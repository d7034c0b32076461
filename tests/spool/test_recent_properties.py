"""Property tests of the spool's in-memory recent rows (spool/recent.py, ``SpoolReader.read_after``).

docs/spool.md ("A drain that keeps up reads the latest rows from memory") and the module docstring
promise that a read answered from memory is what a read of the SQLite file gives at that moment:
the same seqs, ids, times and bodies, in order, within the limit; it may end early where the rows
held end (the next read goes on from there), but never holds an uncommitted row, a row the spool
deleted, a gap or a row twice. A reader that has every row this process committed while an append
of this process runs may be told "nothing yet" (``[]``); the rows then arrive by a later read.

A ``RuleBasedStateMachine`` drives a real ``Spool`` in a temporary directory, with several drain
readers, against two oracles:

- SQLite itself, read on an independent connection (``SELECT seq, event_id, ts_ms, body FROM
  events WHERE seq > ? ORDER BY seq LIMIT ?``) right before (and, where another greenlet commits
  meanwhile, right after) every read: the read must be a prefix of that answer, empty only when it
  is (or when told "nothing yet", only in the documented case);
- a small model of what memory holds (docs/spool.md: whole transactions without duplicates, the
  oldest run going first past ``max_rows`` but the newest always kept, runs every live reader has
  read past dropped at once, rows the spool deleted forgotten), which predicts for each read whether
  it is answered from memory (``hits``) or SQLite (``misses``), and how many rows memory gives.

Rules: appends and ``append_many`` (new ids, ids repeated within a transaction and ids already
stored, which renumber per docs/internals.md §2), appends by another process (a second ``Spool``
on the file), cursor commits, rewinds and ``prune`` with retention 0, reads after any seq with any
limit from 0 (a drain's own position, run boundaries, positions older than memory holds, past the end),
a drain reading on until caught up, readers closed and opened, reads through another process's
view of the file (never served from this process's memory), and a small ``max_rows`` (eviction).
A variant with ``offload=True`` and ``on_full = "drop_oldest"`` (small ``max_bytes``) runs appends
and prunes in a greenlet (their SQLite work in gevent's threadpool) and reads from another
greenlet meanwhile: the window between a transaction's COMMIT and its rows published (or its
deleted rows forgotten) in memory.

At the end: deterministic reproductions of a defect found and fixed (``RecentRows.deleted_upto``): a
drain behind the rows a prune or a drop_oldest append deletes was answered from memory with those
rows between the transaction's COMMIT and ``forget_upto`` (the deleting greenlet waits there for
the threadpool's answer), rows the file no longer has. The concurrent machine found it too.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any

import gevent
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from spool import EncodedEvent, IngestBatch, RewindError, Spool, SpoolFull
from spool.recent import RecentRows
from spool.store import SpoolReader, now_ms
from spool.types import SpoolRow
from tests.spool.conftest import batch, event_id, events

SELECT = "SELECT seq, event_id, ts_ms, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
READERS = ("r0", "r1", "r2")
OUTPUTS = ("a", "b")
ALL = 10**6
FAR = 10**9  # ms added to "now" for a prune with retention 0: every delivered event is old enough


class Oracle:
    """An independent connection on the file: what SQLite holds at this moment."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def rows(self, seq: int, limit: int) -> list[SpoolRow]:
        return [SpoolRow(*r) for r in self.conn.execute(SELECT, (seq, limit))]

    def first(self) -> int | None:
        return self.conn.execute("SELECT min(seq) FROM events").fetchall()[0][0]

    def last(self) -> int:
        rows = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchall()
        return int(rows[0][0]) if rows else 0  # fetchall: no read transaction left open

    def close(self) -> None:
        self.conn.close()


class MemoryModel:
    """What ``RecentRows`` holds, per docs/spool.md: runs ``[first, n]`` oldest first, each live
    reader's last position, and the last seq committed by this process."""

    def __init__(self, max_rows: int, committed: int) -> None:
        self.runs: list[list[int]] = []
        self.max_rows = max_rows
        self.positions: dict[str, int] = {}
        self.committed = committed

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.runs)

    def add(self, first: int, n: int) -> None:
        """A transaction of ``n`` fresh rows committed from ``first`` on."""
        self.runs.append([first, n])
        while self.rows > self.max_rows and len(self.runs) > 1:
            self.runs.pop(0)

    def forget_upto(self, seq: int) -> None:
        """The spool deleted every event up to ``seq``."""
        kept = []
        for first, n in self.runs:
            last = first + n - 1
            if last <= seq:
                continue
            if first <= seq:
                first, n = seq + 1, last - seq
            kept.append([first, n])
        self.runs = kept

    def touch(self, reader: str, seq: int) -> None:
        """``reader`` read after ``seq``: runs every live reader has read past are dropped."""
        self.positions[reader] = seq
        done = min(self.positions.values())
        self.runs = [r for r in self.runs if r[0] + r[1] - 1 > done]

    def held(self, seq: int, limit: int) -> int | None:
        """How many rows a read after ``seq`` gets from memory (contiguous runs, up to ``limit``),
        or None when ``seq + 1`` is not held (SQLite answers)."""
        want, count = seq + 1, None
        for first, n in self.runs:
            if count is None:
                if not first <= want < first + n:
                    continue
                count = first + n - want
            elif first != want:
                break
            else:
                count += n
            want = first + n
        return None if count is None else min(count, limit)


def between(data: st.DataObject, lo: int, hi: int) -> int:
    """An int in ``lo..hi``, drawn the same way whatever the range: in the concurrent machine the
    state depends on timing (drop_oldest sees the WAL's size), and hypothesis requires draws that
    do not depend on it."""
    return lo + data.draw(st.integers(0, 2**16), label="n") % (hi - lo + 1)


def pick(data: st.DataObject, items: list[Any]) -> Any:
    return items[between(data, 0, len(items) - 1)]


def _counts(recent: RecentRows) -> tuple[int, int, int]:
    return recent.hits, recent.misses, recent.waits


def _delta(before: tuple[int, int, int], recent: RecentRows) -> tuple[int, int, int]:
    after = _counts(recent)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


# id 0: a new id; k > 0: the k-th id sent so far (counting back), stored or pruned meanwhile
ev_spec = st.tuples(st.one_of(st.just(0), st.just(0), st.just(0), st.integers(1, 30)), st.integers(0, 40))
batch_spec = st.lists(ev_spec, max_size=8)
limits = st.one_of(st.integers(1, 12), st.sampled_from([0, 1, 1500]))


class RecentMachine(RuleBasedStateMachine):
    """A spool appended to and read by this process's drains; every read checked against SQLite
    and against the model of memory."""

    offload = False
    max_bytes: int | None = None
    on_full = "block"
    body_scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="recent-sm-")
        self.path = os.path.join(self.dir, "spool.db")
        self.spool: Spool | None = None
        self.oracle: Oracle | None = None
        self.readers: dict[str, SpoolReader] = {}
        self.pos: dict[str, int] = {}
        self.other: Spool | None = None
        self.other_reader: SpoolReader | None = None
        self.model = MemoryModel(0, 0)
        self.sent: list[bytes] = []
        self.serial = 0

    def teardown(self) -> None:
        try:
            for r in self.readers.values():
                r.close()
            if self.other_reader is not None:
                self.other_reader.close()
            if self.other is not None:
                self.other.close()
            if self.oracle is not None:
                self.oracle.close()
            if self.spool is not None:
                self.spool.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def open(self, **kw: Any) -> Spool:
        return Spool(self.path, offload=self.offload, max_bytes=self.max_bytes, on_full=self.on_full, **kw)

    @initialize(max_rows=st.sampled_from([3000, 4, 9, 25]), earlier=st.integers(0, 12))
    def start(self, max_rows: int, earlier: int) -> None:
        """Maybe rows stored by an earlier run of the agent (never in this process's memory); a
        small ``max_rows`` now and then, so that runs are evicted."""
        if earlier:
            with Spool(self.path, offload=False) as s:
                s.append(IngestBatch("in", self.encode([(0, t) for t in range(earlier)])))
        self.spool = self.open()
        self.oracle = Oracle(self.path)
        recent = self.spool.recent
        assert recent is not None and recent.committed == self.oracle.last() == earlier
        recent.max_rows = max_rows
        self.model = MemoryModel(max_rows, recent.committed)

    @property
    def recent(self) -> RecentRows:
        assert self.spool is not None and self.spool.recent is not None
        return self.spool.recent

    def encode(self, spec: list[tuple[int, int]]) -> list[EncodedEvent]:
        out = []
        for k, ts in spec:
            if k == 0 or not self.sent:
                self.serial += 1
                eid = event_id(10_000_000 + self.serial)
            else:
                eid = self.sent[-1 - (k - 1) % len(self.sent)]
            self.sent.append(eid)
            self.serial += 1
            out.append(EncodedEvent(eid, ts, b"%d:" % self.serial + b"e" * (ts % 7 + 1) * self.body_scale))
        return out

    # -- reads ---------------------------------------------------------------------------------

    def reader(self, name: str) -> SpoolReader:
        r = self.readers.get(name)
        if r is None:
            r = self.readers[name] = self.spool.reader()
            self.pos[name] = 0
        return r

    def check_read(self, name: str, pos: int, limit: int) -> list[SpoolRow]:
        """One drain read, no append under way: SQLite's answer (a prefix of it when from memory,
        of the length the model predicts), one count moved, the reader's position recorded."""
        reader = self.reader(name)
        want = self.oracle.rows(pos, limit)
        before = _counts(self.recent)
        got = reader.read_after(pos, limit)
        # the contract, whatever memory holds
        assert got == want[:len(got)], (pos, limit, [r.seq for r in got], [r.seq for r in want])
        assert (len(got) > 0) == (len(want) > 0), (pos, limit, [r.seq for r in want])
        # where it was answered from, and how much
        self.model.touch(name, pos)
        n = self.model.held(pos, limit)
        if n is None:
            assert got == want and _delta(before, self.recent) == (0, 1, 0)
        else:
            assert got == want[:n] and _delta(before, self.recent) == (1, 0, 0), (pos, limit, n)
        self.pos[name] = got[-1].seq if got else pos
        return got

    def draw_pos(self, data: st.DataObject, hi: int | None = None) -> int:
        """A run boundary (first or last row held, one before them), the oldest retained row, or
        any seq from -1 to ``hi`` (by default two past the end)."""
        last = self.oracle.last()
        hi = last + 2 if hi is None else hi
        edges = {0, last}
        for first, n in self.model.runs:
            edges |= {first - 2, first - 1, first, first + n - 2, first + n - 1}
        first = self.oracle.first()
        if first is not None:
            edges |= {first - 2, first - 1}
        # The same draws whatever the state (``between``): a boolean and two ints, always.
        edge = data.draw(st.booleans(), label="at an edge")
        near = sorted(e for e in edges if -1 <= e <= hi)
        at = between(data, 0, max(len(near) - 1, 0))
        anywhere = between(data, -1, hi)
        return near[at] if edge and near else anywhere

    def draw_behind(self, data: st.DataObject, hi: int) -> int:
        """Mostly a seq whose next row memory holds (a drain behind, reading from memory), else any
        position up to ``hi``. Draws the same values whatever the state: with the concurrent machine
        the runs held depend on timing, and a draw skipped when none was held made hypothesis stop
        on "inconsistent data generation" (CI, session 23)."""
        held = [(first, n) for first, n in self.model.runs if first - 1 <= hi]
        behind = data.draw(st.booleans(), label="behind, in memory")
        run = between(data, 0, max(len(held) - 1, 0))
        offset = data.draw(st.integers(0, 2**16), label="n")
        anywhere = self.draw_pos(data, hi)
        if held and behind:
            first, n = held[run]
            return min(hi, first - 1 + offset % n)
        return anywhere

    @rule(data=st.data(), name=st.sampled_from(READERS), limit=limits, own=st.booleans())
    def read(self, data: st.DataObject, name: str, limit: int, own: bool) -> None:
        """A read after the reader's own position (a drain), or after any seq (a rewind, a restart,
        a position memory no longer holds, a run boundary, past the end)."""
        self.reader(name)
        pos = self.pos[name] if own else self.draw_pos(data)
        self.check_read(name, pos, limit)

    @rule(name=st.sampled_from(READERS), limit=st.integers(1, 9))
    def read_on(self, name: str, limit: int) -> None:
        """A drain reading on until caught up: together its reads are SQLite's rows after its start,
        each once, in order, with no gap."""
        self.reader(name)
        start = at = self.pos[name]
        stream: list[SpoolRow] = []
        for _ in range(ALL):
            rows = self.check_read(name, at, limit)
            if not rows:
                break
            stream += rows
            at = rows[-1].seq
        assert stream == self.oracle.rows(start, ALL)

    @precondition(lambda self: self.readers)
    @rule(data=st.data())
    def close_reader(self, data: st.DataObject) -> None:
        """A drain stops: its reader is gone and holds no rows back any more."""
        name = pick(data, sorted(self.readers))
        self.readers.pop(name).close()  # the last reference: the weak one in memory goes too
        del self.pos[name]
        self.model.positions.pop(name, None)

    # -- appends -------------------------------------------------------------------------------

    def ingest(self, batches: list[list[tuple[int, int]]]) -> list[IngestBatch]:
        return [IngestBatch("in", self.encode(b)) for b in batches]

    def published(self, boundary: int, first_before: int | None, results: list[Any]) -> None:
        """The model after this process's append committed: deleted rows forgotten (drop_oldest),
        the rows held when the transaction had no duplicate, ``committed`` moved."""
        inserted = sum(r.inserted for r in results)
        dups = sum(r.duplicates for r in results)
        last = self.oracle.last()
        assert last == boundary + inserted  # renumbered: no gap (docs/internals.md §2)
        first = self.oracle.first()
        if first_before is not None and (first is None or first > first_before):
            event("drop_oldest dropped events")
            self.model.forget_upto(boundary if first is None else first - 1)
        if inserted and not dups:
            self.model.add(boundary + 1, inserted)
        elif dups:
            event("transaction with duplicates: not held")
        self.model.committed = max(self.model.committed, last)

    @rule(batches=st.lists(batch_spec, min_size=1, max_size=3), many=st.booleans())
    def append(self, batches: list[list[tuple[int, int]]], many: bool) -> None:
        ingest = self.ingest(batches)
        boundary, first_before = self.oracle.last(), self.oracle.first()
        try:
            one = not many and len(ingest) == 1
            results = [self.spool.append(ingest[0])] if one else self.spool.append_many(ingest)
        except SpoolFull:
            event("append refused")
            assert self.oracle.last() == boundary and self.oracle.first() == first_before
            return
        self.published(boundary, first_before, results)

    @rule(batches=st.lists(batch_spec, min_size=1, max_size=2))
    def append_by_another_process(self, batches: list[list[tuple[int, int]]]) -> None:
        """Another handle on the file appends (its rows are not in this process's memory)."""
        with Spool(self.path, offload=False) as s:
            s.append_many(self.ingest(batches))

    # -- cursors and retention -----------------------------------------------------------------

    @rule(output=st.sampled_from(OUTPUTS), data=st.data())
    def commit_cursor(self, output: str, data: st.DataObject) -> None:
        cur = self.spool.ensure_cursor(output)
        seq = between(data, cur.seq, max(cur.seq, self.oracle.last()))
        assert self.spool.commit_cursor(output, seq, cur.generation)

    @rule(output=st.sampled_from(OUTPUTS), data=st.data())
    def rewind(self, output: str, data: st.DataObject) -> None:
        self.spool.ensure_cursor(output)
        target = between(data, 0, self.oracle.last())
        try:
            self.spool.rewind(output, seq=target)
        except RewindError:
            event("rewind below retention refused")

    def prune_args(self, data: st.DataObject) -> list[str]:
        have = [c.output for c in self.spool.list_cursors()]
        return data.draw(st.lists(st.sampled_from(have), unique=True, min_size=1) if have else st.just([]),
                         label="outputs")

    def pruned(self, first_before: int | None, last: int, n: int) -> None:
        first = self.oracle.first()
        if n:
            assert first_before is not None and (first is None or first > first_before)
            self.model.forget_upto(last if first is None else first - 1)
            event("prune deleted events")
        else:
            assert first == first_before

    @rule(data=st.data(), chunk=st.sampled_from([3, 5000]))
    def prune(self, data: st.DataObject, chunk: int) -> None:
        """Retention 0: every event the listed outputs delivered goes (no cursor listed: all)."""
        outputs = self.prune_args(data)
        first_before, last = self.oracle.first(), self.oracle.last()
        n = self.spool.prune(0, outputs, chunk_rows=chunk, now=now_ms() + FAR)
        self.pruned(first_before, last, n)

    # -- another process's view ----------------------------------------------------------------

    @rule(readonly=st.booleans())
    def open_other_view(self, readonly: bool) -> None:
        """Another process opens the file (the CLI; a second agent handle)."""
        if self.other is not None:
            self.other_reader.close()
            self.other.close()
        self.other = Spool.open_readonly(self.path) if readonly else Spool(self.path, offload=False)
        self.other_reader = self.other.reader()

    @precondition(lambda self: self.other is not None)
    @rule(data=st.data(), limit=limits)
    def read_other_view(self, data: st.DataObject, limit: int) -> None:
        """Its reads are SQLite's, never this process's memory."""
        pos = self.draw_pos(data)
        want = self.oracle.rows(pos, limit)
        before = _counts(self.recent)
        assert self.other_reader.read_after(pos, limit) == want
        assert _delta(before, self.recent) == (0, 0, 0)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def memory_matches_model_and_sqlite(self) -> None:
        """Every run memory holds (per the model) is SQLite's rows, whole; nothing else is held."""
        if self.spool is None:
            return
        recent = self.recent
        assert recent.appending == 0 and recent.committed == self.model.committed
        assert recent.rows == self.model.rows, (recent.rows, self.model.runs)
        for first, n in self.model.runs:
            got = recent.after(first - 1, n)  # no reader: moves no position
            assert got is not None and len(got) == n
            assert got == self.oracle.rows(first - 1, n)


class ConcurrentMachine(RecentMachine):
    """``offload=True`` (the agent's default) with a small ``max_bytes`` and ``drop_oldest``:
    appends and prunes run in a greenlet while drains read from another."""

    offload = True
    max_bytes = 1_200_000
    on_full = "drop_oldest"
    body_scale = 3_000

    def window_read(self, name: str, pos: int, limit: int) -> None:
        """A read while another greenlet's transaction may commit at any instant: a prefix of
        SQLite's answer just before or just after it (only one transaction commits meanwhile),
        or "nothing yet" only when an append runs and the reader had every committed row."""
        reader = self.reader(name)
        pre = self.oracle.rows(pos, limit)
        appending, committed = self.recent.appending, self.recent.committed
        before = _counts(self.recent)
        got = reader.read_after(pos, limit)
        post = self.oracle.rows(pos, limit)
        delta = _delta(before, self.recent)
        self.model.touch(name, pos)
        assert sorted(delta) == [0, 0, 1], delta
        if delta[2]:
            assert got == [] and appending and pos >= committed, (pos, committed, appending)
            event("told nothing yet")
            return
        assert got == pre[:len(got)] or got == post[:len(got)], (
            pos, [r.seq for r in got], [r.seq for r in pre], [r.seq for r in post])
        assert got or not pre or not post, (pos, limit)

    def run_beside(self, g: gevent.Greenlet, names: list[str], pos: list[int], limit: int) -> None:
        gevent.sleep(0)  # the greenlet starts: its transaction is under way
        while not g.ready():
            for name, p in zip(names, pos, strict=True):
                self.window_read(name, p, limit)
            gevent.sleep(0)

    @rule(data=st.data(), batches=st.lists(batch_spec, min_size=1, max_size=2), limit=limits,
          names=st.lists(st.sampled_from(READERS), min_size=1, max_size=2, unique=True))
    def append_while_reading(self, data: st.DataObject, batches: list[list[tuple[int, int]]], limit: int,
                             names: list[str]) -> None:
        """Drains read (one caught up, maybe one behind) while an append runs in the threadpool;
        once it returned, a caught-up drain gets its rows (from memory when they were held)."""
        ingest = self.ingest(batches)
        boundary, first_before = self.oracle.last(), self.oracle.first()
        for name in names:
            self.reader(name)
        pos = [boundary] + [self.draw_behind(data, boundary) for _ in names[1:]]
        g = gevent.spawn(self.spool.append_many, ingest)
        self.run_beside(g, names, pos, limit)
        try:
            results = g.get()
        except SpoolFull:
            event("append refused")
            assert self.oracle.last() == boundary and self.oracle.first() == first_before
            return
        self.published(boundary, first_before, results)
        self.check_read(names[0], boundary, limit)  # the rows arrive (or SQLite has none)

    @rule(data=st.data(), limit=limits, names=st.lists(st.sampled_from(READERS), min_size=1, max_size=2,
                                                          unique=True))
    def prune_while_reading(self, data: st.DataObject, limit: int, names: list[str]) -> None:
        """The listed outputs delivered up to a drawn seq (their cursors move there, forward only);
        then drains read, some behind the rows being pruned (an output that holds nothing back: not
        listed, or disabled), while prune runs in the threadpool."""
        first_before, last = self.oracle.first(), self.oracle.last()
        upto = between(data, 0, last)
        for output in OUTPUTS:
            cur = self.spool.ensure_cursor(output)
            assert self.spool.commit_cursor(output, max(cur.seq, upto), cur.generation)
        outputs = self.prune_args(data)
        for name in names:
            self.reader(name)
        pos = [self.draw_behind(data, last) for _ in names]
        g = gevent.spawn(self.spool.prune, 0, outputs, now=now_ms() + FAR)
        self.run_beside(g, names, pos, limit)
        self.pruned(first_before, last, g.get())


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
RecentMachine.TestCase.settings = SETTINGS
TestRecentRowsMachine = RecentMachine.TestCase
# No shrinking: what happens during a transaction depends on the threads' timing, so a shorter run
# may not fail the same way; the steps reported are the run that failed.
ConcurrentMachine.TestCase.settings = settings(SETTINGS, max_examples=40, phases=[Phase.generate])
TestRecentRowsConcurrentMachine = ConcurrentMachine.TestCase


# -- defects found by the machines, reproduced deterministically -------------------------------------


class _ReadBeforeForgetting(RecentRows):
    """Reads through ``reader`` from ``pos`` at the instant a deletion (prune, drop_oldest) has
    committed in SQLite and memory has not forgotten the deleted rows yet. With ``offload=True``
    (the agent) the deleting greenlet waits there for the threadpool's answer while the drains run."""

    __slots__ = ("oracle", "pos", "reader", "seen")

    def forget_upto(self, seq: int) -> None:
        if self.reader is not None:
            self.seen.append((self.reader.read_after(self.pos, 1500), self.oracle.rows(self.pos, 1500)))
        super().forget_upto(seq)


def _hooked(s: Spool) -> _ReadBeforeForgetting:
    s.recent = hooked = _ReadBeforeForgetting(committed=s.recent.committed)
    hooked.reader, hooked.seen, hooked.pos, hooked.oracle = None, [], 0, Oracle(s.path)
    return hooked


def test_a_read_between_a_prunes_commit_and_forgetting_gets_no_pruned_row(spool_path):
    with Spool(spool_path, offload=False) as s:
        hooked = _hooked(s)
        behind = s.reader()  # a drain of an output that does not hold retention back
        s.append(batch(events(5)))
        assert len(behind.read_after(0, 1)) == 1  # behind at seq 0; rows 1..5 held in memory
        s.ensure_cursor("out")
        s.commit_cursor("out", 5, 0)
        hooked.reader = behind
        assert s.prune(0, ["out"], now=now_ms() + FAR) == 5
        (got, sqlite_has), = hooked.seen
        assert sqlite_has == []  # committed: 1..5 are gone from the file
        assert got == sqlite_has, [r.seq for r in got]
        hooked.oracle.close()
        behind.close()


def test_a_read_between_a_drop_oldest_commit_and_forgetting_gets_no_dropped_row(spool_path):
    with Spool(spool_path, offload=False, max_bytes=1_200_000, on_full="drop_oldest") as s:
        hooked = _hooked(s)
        behind = s.reader()
        s.append(batch(events(5, size=20_000)))
        assert len(behind.read_after(0, 1)) == 1
        hooked.reader = behind
        while not s.counters()["dropped_oldest_total"]:
            s.append(batch(events(5, size=20_000)))
            assert s.last_seq() <= 500
        (got, sqlite_has), = hooked.seen
        assert sqlite_has and sqlite_has[0].seq > 1  # committed: the oldest are gone from the file
        assert got == sqlite_has[:len(got)], ([r.seq for r in got[:3]], [r.seq for r in sqlite_has[:3]])
        hooked.oracle.close()
        behind.close()
