"""Property tests of the group-commit writer (``spool.writer.SpoolWriter``) and a tail's hand-off to it.

``WriterMachine`` (hypothesis, stateful) runs three inputs that each hand the writer one batch at a time
(as every input does: docs/inputs.md "Exactly once into the spool"; at most one batch in flight per
source) with random sizes, empty batches, duplicate event ids (within a batch, across batches and
across inputs), an offset that only grows and now and then a quarantined record. Rounds submit
concurrently (gevent greenlets), with faults injected into the next append transactions: a real
SQLITE_BUSY (another connection holds the write lock, as the CLI may), ``SpoolFull`` and an arbitrary
exception raised inside the transaction (after its rows were inserted: it must roll back), and a
"crash": the spool's files copied while a transaction is open (before COMMIT) or right after it
committed (from ``on_commit``), or between steps. Other rules flush, and stop the writer with batches
still queued (then start a new one). A failed batch is retried unchanged, as ``write_with_retry`` and
a restarted reader do. Properties (docs/spool.md "Writes, threads and group commit", docs/inputs.md):

* every batch a submitter was told is committed is in the spool once: its events (first occurrence
  of an id; later ones counted as duplicates in its ``AppendResult``), its quarantine rows exactly
  once, in submission order per input; a failed batch left nothing (no event, row or offset);
* a batch fails only when a transaction of its own failed: a failed group is retried one batch a
  transaction, and only the batch at fault gets the error;
* an input's stored offset is the end of its last acknowledged batch, never behind it;
* every crash copy holds, per input, exactly a prefix of its batches, events, quarantine rows and
  offset together (a transaction is never half visible) and at least every batch acknowledged when
  the copy was taken;
* ``on_commit`` runs once per transaction that committed events, and only when a drain's own
  read-only connection (``Spool.reader()``) and a plain SQLite connection already see its rows;
* ``flush()`` returns with every batch queued before it done; ``stop()`` returns with every queued
  batch done (committed or failed: none left hanging), and later ``write``/``submit`` raise
  ``SpoolError``.

``test_reader_crash_and_restart_resumes_from_the_committed_offset``: a tail reader (mapping inline,
or ``depth`` chunks ahead as with the mapping helper process, the default ``[agent] offload = true``)
crashes, because its commit fails with an error other than ``SpoolFull`` (SQLITE_BUSY) or a read
fails (EIO), and is restarted (agent/inputs/base.py ``spawn_supervised`` runs ``reader.run`` again).
After every committed transaction, the lines before the stored offset must all be in the spool (a
crash at that instant must lose nothing: docs/inputs.md "Crashes": "restarts from its last committed
offset"), the offset must never go backwards, and in the end every good line is stored once, in file
order, and every bad line quarantined once ("a restart does not re-quarantine").

``test_on_commit_that_raises_*``: a failing ``on_commit`` hook must not leave its group's writers
waiting forever.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import agent.inputs.tail as tail_module
from agent.inputs.mapper import InlineMapper
from agent.inputs.tail import TailInput, _FileReader
from agent.mapping import MappingContext
from spool import AppendResult, EncodedEvent, IngestBatch, InputOffset, QuarantineRecord, Spool, SpoolError
from spool.types import SpoolFull
from spool.writer import SpoolWriter
from tests.inputs.helpers import audit_line
from tests.spool.conftest import event_id

INPUTS = ("a", "b", "c")
ID_POOL = 24  # small, so duplicate ids (within a batch, across batches and inputs) are frequent
FAULTS = ("full", "error", "crash", "crash_after")


class Injected(RuntimeError):
    """The arbitrary exception injected into an append transaction."""


# --------------------------------------------------------------------------------------------------
# A spool with faults and crash copies
# --------------------------------------------------------------------------------------------------


class FaultySpool(Spool):
    """A real spool; each append transaction takes the next planned fault (None: none).

    ``full`` / ``error`` raise inside the transaction after its rows were inserted (it must roll back);
    ``crash`` copies the files while the transaction is open (a process killed before COMMIT);
    ``crash_after`` copies them once it committed, before the writer hands out the results."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.faults: collections.deque[str | None] = collections.deque()
        self.copy_dir = ""
        self.n_copies = 0
        self.copies: list[tuple[str, dict[str, int], bool]] = []  # (copy, batches acked per input, exact?)
        self.snapshot: Any = None  # () -> batches acknowledged per input, set by the machine
        self.committed_groups: list[list[IngestBatch]] = []  # every append_many that committed
        self.tx_log: list[tuple[int, str | None]] = []  # every append_many: (batches, fault)
        self._fault: str | None = None
        self._snap: dict[str, int] = {}

    def copy_files(self, snap: dict[str, int], exact: bool = False) -> None:
        """Copy the database and its WAL as they are on disk (what a SIGKILL leaves; -shm is rebuilt)."""
        self.n_copies += 1
        dst = os.path.join(self.copy_dir, f"copy{self.n_copies}")
        os.mkdir(dst)
        for suffix in ("", "-wal"):
            if os.path.exists(self.path + suffix):
                shutil.copyfile(self.path + suffix, os.path.join(dst, "spool.db" + suffix))
        self.copies.append((os.path.join(dst, "spool.db"), snap, exact))

    def append_many(self, batches: Any) -> list[AppendResult]:
        self._fault = self.faults.popleft() if self.faults else None
        self.tx_log.append((len(batches), self._fault))
        self._snap = self.snapshot() if self.snapshot is not None else {}
        results = super().append_many(batches)
        self.committed_groups.append(list(batches))
        if self._fault == "crash_after":
            self.copy_files(self._snap)  # committed; the acks are not handed out yet
        return results

    def _append_tx(self, conn: sqlite3.Connection, batches: Any) -> Any:
        out = super()._append_tx(conn, batches)
        fault = self._fault
        if fault == "full":
            raise SpoolFull("injected: spool full")
        if fault == "error":
            raise Injected("injected failure inside the transaction")
        if fault == "crash":
            self.copy_files(self._snap)  # inside the open transaction: none of it may be in the copy
        return out


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


@dataclass
class MBatch:
    """One batch an input hands the writer, retried unchanged until it is acknowledged."""

    input: str
    k: int  # its index in the input's sequence
    ids: list[int]
    start: int
    end: int  # the offset it stores
    quarantined: bool

    def build(self) -> IngestBatch:
        evs = [EncodedEvent(event_id(i), 1_000 + i, f"{self.input}{self.k}:{i}".encode()) for i in self.ids]
        q = [QuarantineRecord(self.input, self.start, f"{self.input}#{self.k}", b"x")]
        offsets = [InputOffset("k", f"/log/{self.input}", self.end)]
        return IngestBatch(self.input, evs, offsets, q if self.quarantined else [])


@dataclass
class MInput:
    batches: list[MBatch] = field(default_factory=list)  # every batch generated, in order
    acked: int = 0  # batches[:acked] are acknowledged; batches[acked] (if any) is retried next
    # the results of every attempt, by batch index (for the crash copies' snapshots)
    attempts: dict[int, list[gevent.event.AsyncResult]] = field(default_factory=dict)


def batch_strategy() -> st.SearchStrategy[tuple[list[int], int, bool]]:
    """(event ids, bytes the batch covers, quarantined?): empty batches included; offsets strictly grow."""
    return st.tuples(
        st.lists(st.integers(1, ID_POOL), max_size=8),
        st.integers(1, 300),
        st.booleans(),
    )


def stored_state(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, list[str]], list[tuple]]:
    """(offset per input, quarantine reasons per input in id order, events (seq, input, id) by seq)."""
    offsets = {inp: off for inp, off in conn.execute('SELECT input, "offset" FROM input_offsets')}
    quarantine: dict[str, list[str]] = collections.defaultdict(list)
    for inp, reason in conn.execute("SELECT input, reason FROM quarantine ORDER BY id"):
        quarantine[inp].append(reason)
    evs = list(conn.execute("SELECT seq, input, event_id FROM events ORDER BY seq"))
    return offsets, dict(quarantine), evs


class WriterMachine(RuleBasedStateMachine):
    """Inputs submit batches through a ``SpoolWriter`` into a ``FaultySpool`` (see the module doc)."""

    max_events = 20_000
    max_delay_s = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="writer-props-")
        self.path = os.path.join(self.dir, "spool.db")
        self.inputs = {name: MInput() for name in INPUTS}
        self.wakeup_errors: list[str] = []
        self.failed = 0  # attempts that failed
        self.wakeups = 0

    @initialize()
    def start(self) -> None:
        self.spool = FaultySpool(self.path, durability="normal", busy_timeout_ms=30)
        self.spool.copy_dir = self.dir
        self.spool.snapshot = self.acked_snapshot
        self.reader = self.spool.reader()
        self.raw = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        self.writer = self.new_writer()

    def new_writer(self) -> SpoolWriter:
        return SpoolWriter(self.spool, max_events=self.max_events, max_delay_s=self.max_delay_s,
                           on_commit=self.on_commit).start()

    def teardown(self) -> None:
        try:
            if getattr(self, "writer", None) is not None:
                self.writer.stop()
                self.reader.close()
                self.raw.close()
                self.spool.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    def acked_snapshot(self) -> dict[str, int]:
        """Per input, how many batches had a successful result at this instant (ready, not yet seen)."""
        snap = {}
        for name, inp in self.inputs.items():
            n = inp.acked
            while any(r.ready() and r.successful() for r in inp.attempts.get(n, [])):
                n += 1
            snap[name] = n
        return snap

    def on_commit(self) -> None:
        """The wake-up: the group just committed must already be readable by a drain's connection."""
        self.wakeups += 1
        group = self.spool.committed_groups[-1] if self.spool.committed_groups else []
        want = {e.event_id for b in group for e in b.events}
        seen_reader = set()
        seq = 0
        while rows := self.reader.read_after(seq, 1_000_000):  # as a drain reads: on from the last row
            seen_reader.update(r.event_id for r in rows)
            seq = rows[-1].seq
        seen_raw = {row[0] for row in self.raw.execute("SELECT event_id FROM events")}
        if not want <= seen_reader:
            self.wakeup_errors.append(f"on_commit before a drain's reader saw {len(want - seen_reader)} rows")
        if not want <= seen_raw:
            self.wakeup_errors.append(f"on_commit before SQLite showed {len(want - seen_raw)} rows")

    def next_batch(self, name: str, spec: tuple[list[int], int, bool]) -> MBatch:
        """The input's batch to submit: the one that failed last time, else a new one from ``spec``."""
        inp = self.inputs[name]
        if inp.acked < len(inp.batches):
            return inp.batches[inp.acked]
        ids, n_bytes, quarantined = spec
        start = inp.batches[-1].end if inp.batches else 0
        b = MBatch(name, len(inp.batches), ids, start, start + n_bytes, quarantined)
        inp.batches.append(b)
        return b

    def submit(self, b: MBatch) -> gevent.event.AsyncResult:
        result = self.writer.submit(b.build())
        self.inputs[b.input].attempts.setdefault(b.k, []).append(result)
        return result

    def settle(self, b: MBatch, result: gevent.event.AsyncResult) -> None:
        """Account a finished attempt: acknowledged, or failed with one of the injected errors."""
        assert result.ready()
        if result.successful():
            res = result.value
            assert res.inserted + res.duplicates == len(b.ids)
            self.inputs[b.input].acked = b.k + 1
        else:
            self.failed += 1
            exc = result.exception
            busy = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            assert busy or isinstance(exc, (SpoolFull, Injected)), repr(exc)
            event(f"a batch failed: {type(exc).__name__}")

    def check_only_the_batch_at_fault_failed(self, tx_before: int, failed_before: int) -> None:
        """A batch fails only when a transaction of its own fails (docs/spool.md: a failed group is
        retried one batch a transaction; "only the batch at fault gets the error")."""
        own = sum(1 for n, f in self.spool.tx_log[tx_before:] if n == 1 and f in ("full", "error"))
        assert self.failed - failed_before == own, "a batch failed with a neighbour's error"

    def expected(self, acked: dict[str, int]) -> tuple[dict[str, int], dict[str, list[str]], set[bytes]]:
        offsets = {n: self.inputs[n].batches[k - 1].end for n, k in acked.items() if k}
        quarantine = {n: [f"{n}#{b.k}" for b in self.inputs[n].batches[:k] if b.quarantined]
                      for n, k in acked.items()}
        ids = {event_id(i) for n, k in acked.items() for b in self.inputs[n].batches[:k] for i in b.ids}
        return offsets, {n: q for n, q in quarantine.items() if q}, ids

    # -- rules -----------------------------------------------------------------------------------

    @rule(
        names=st.lists(st.sampled_from(INPUTS), min_size=1, max_size=3, unique=True),
        specs=st.lists(batch_strategy(), min_size=3, max_size=3),
        faults=st.lists(st.one_of(st.none(), st.sampled_from(FAULTS)), max_size=4),
        busy=st.booleans(),
    )
    def round(self, names: list[str], specs: list, faults: list[str | None], busy: bool) -> None:
        """Inputs submit one batch each, concurrently, while the planned faults hit the next
        transactions (and, with ``busy``, another connection holds the write lock until a first
        result is out)."""
        self.spool.faults.extend(faults)
        batches = [self.next_batch(n, s) for n, s in zip(names, specs, strict=False)]
        tx_before, failed_before = len(self.spool.tx_log), self.failed
        holder = None
        first_done = gevent.event.Event()
        if busy:
            holder = sqlite3.connect(self.path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")

        def one(b: MBatch) -> None:
            result = self.submit(b)
            with contextlib.suppress(Exception):
                result.get()  # its outcome is checked in settle()
            first_done.set()
            self.settle(b, result)

        greenlets = [gevent.spawn(one, b) for b in batches]
        if holder is not None:
            try:
                gevent.wait([first_done, *greenlets], count=1)  # a submitter that raised ends it too
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        gevent.joinall(greenlets, raise_error=True)
        self.spool.faults.clear()
        if not busy:
            self.check_only_the_batch_at_fault_failed(tx_before, failed_before)

    @rule(
        names=st.lists(st.sampled_from(INPUTS), min_size=1, max_size=3, unique=True),
        specs=st.lists(batch_strategy(), min_size=3, max_size=3),
        faults=st.lists(st.one_of(st.none(), st.sampled_from(FAULTS)), max_size=3),
        restart=st.booleans(),
    )
    def stop_with_batches_queued(self, names: list[str], specs: list, faults: list[str | None],
                                 restart: bool) -> None:
        """Queue one batch per input and stop at once: stop() returns with every queued batch done
        (committed or failed), and later writes are refused with SpoolError."""
        self.spool.faults.extend(faults)
        batches = [self.next_batch(n, s) for n, s in zip(names, specs, strict=False)]
        tx_before, failed_before = len(self.spool.tx_log), self.failed
        results = [self.submit(b) for b in batches]
        self.writer.stop()
        self.spool.faults.clear()
        for b, r in zip(batches, results, strict=True):
            assert r.ready(), "stop() returned with a queued batch neither committed nor failed"
            self.settle(b, r)
        self.check_only_the_batch_at_fault_failed(tx_before, failed_before)
        assert self.writer.pending_events == 0
        probe = IngestBatch("a", [], [], [])
        with pytest.raises(SpoolError):
            self.writer.submit(probe)
        with pytest.raises(SpoolError):
            self.writer.write(probe)
        self.writer.stop()  # a second stop is harmless
        self.writer = self.new_writer()

    @rule(
        names=st.lists(st.sampled_from(INPUTS), min_size=1, max_size=3, unique=True),
        specs=st.lists(batch_strategy(), min_size=3, max_size=3),
        faults=st.lists(st.one_of(st.none(), st.sampled_from(FAULTS)), max_size=3),
    )
    def submit_then_flush(self, names: list[str], specs: list, faults: list[str | None]) -> None:
        """flush() returns only once every batch queued before it is committed or failed."""
        self.spool.faults.extend(faults)
        batches = [self.next_batch(n, s) for n, s in zip(names, specs, strict=False)]
        tx_before, failed_before = len(self.spool.tx_log), self.failed
        results = [self.submit(b) for b in batches]
        self.writer.flush()
        self.spool.faults.clear()
        for b, r in zip(batches, results, strict=True):
            assert r.ready(), "flush() returned before a batch queued earlier was done"
            self.settle(b, r)
        self.check_only_the_batch_at_fault_failed(tx_before, failed_before)

    @rule()
    def crash_between_steps(self) -> None:
        """Copy the files with nothing in flight: the copy must be the model exactly."""
        self.spool.copy_files({n: i.acked for n, i in self.inputs.items()}, exact=True)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def spool_matches_model(self) -> None:
        if not hasattr(self, "spool"):
            return
        offsets, quarantine, evs = stored_state(self.raw)
        acked = {n: i.acked for n, i in self.inputs.items()}
        want_off, want_q, want_ids = self.expected(acked)
        assert offsets == want_off, "stored offsets are not the ends of the acknowledged batches"
        assert quarantine == want_q, "quarantine rows are not one per acknowledged batch, in order"
        stored_ids = [e[2] for e in evs]
        assert len(stored_ids) == len(set(stored_ids))
        assert set(stored_ids) == want_ids, "events are not exactly those of the acknowledged batches"
        # Per input, its rows follow its batch order (a row is stored by the first batch holding its id).
        for name, inp in self.inputs.items():
            first = {}
            for b in inp.batches[: inp.acked]:
                for i in b.ids:
                    first.setdefault(event_id(i), b.k)
            ks = [first[e[2]] for e in evs if e[1] == name]
            assert ks == sorted(ks), f"{name}'s events are not in submission order"
        assert self.writer.pending_events == 0

    @invariant()
    def wakeups_follow_visible_commits(self) -> None:
        assert self.wakeup_errors == [], self.wakeup_errors
        groups_with_events = sum(1 for g in self.spool.committed_groups if any(b.events for b in g))
        assert self.wakeups == groups_with_events, "on_commit not run exactly once per commit with events"

    @invariant()
    def crash_copies_hold_whole_prefixes(self) -> None:
        """Each crash copy: per input a prefix of its batches (offsets strictly grow, so the stored
        offset names it), with exactly that prefix's events and quarantine rows, and at least what was
        acknowledged when it was taken (exactly that when nothing was in flight)."""
        if not hasattr(self, "spool"):
            return
        while self.spool.copies:
            path, snap, exact = self.spool.copies.pop()
            event("crash copy between steps" if exact else "crash copy during a commit")
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                offsets, quarantine, evs = stored_state(conn)
            finally:
                conn.close()
            prefix = {}
            for name, inp in self.inputs.items():
                off = offsets.get(name)
                ks = [b.k + 1 for b in inp.batches if b.end == off] if off is not None else [0]
                assert len(ks) == 1, f"{name}: the copy's offset {off} ends none of its batches"
                prefix[name] = ks[0]
                assert prefix[name] >= snap[name], f"{name}: the copy lost an acknowledged batch"
                if exact:
                    assert prefix[name] == snap[name], f"{name}: the copy holds a batch never acknowledged"
            _, want_q, want_ids = self.expected(prefix)
            assert quarantine == want_q, "a crash copy's quarantine rows do not match its offsets"
            assert {e[2] for e in evs} == want_ids, "a crash copy's events do not match its offsets"


SETTINGS = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
WriterMachine.TestCase.settings = SETTINGS
TestWriterStateMachine = WriterMachine.TestCase


class SmallGroupsMachine(WriterMachine):
    """Groups cut by ``max_events`` (a larger batch goes alone) and a linger of ``max_delay_s``."""

    max_events = 6
    max_delay_s = 0.002


SmallGroupsMachine.TestCase.settings = settings(SETTINGS, max_examples=15)
TestSmallGroupsStateMachine = SmallGroupsMachine.TestCase


# --------------------------------------------------------------------------------------------------
# A tail reader that crashes with chunks mapped ahead
# --------------------------------------------------------------------------------------------------


class _Lazy:
    """A mapping still running in the helper: ready only once asked for (``get``)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.done, self.value = fn, False, None

    def ready(self) -> bool:
        return self.done

    def get(self, timeout: float | None = None) -> Any:
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


class _AheadMapper:
    """``InlineMapper``'s results, but with ``depth`` chunks mapping ahead like the helper process's
    ``OffloadMapper`` (depth 2), whose answers are not ready at once."""

    depth = 2

    def __init__(self) -> None:
        self.inner = InlineMapper(MappingContext())

    def submit(self, lines: Any, **kw: Any) -> _Lazy:
        return _Lazy(lambda: self.inner.submit(lines, **kw).get())


class _RecordingSpool(Spool):
    """Fails the append transactions numbered in ``fail_at`` as SQLite does when the CLI holds the
    write lock past ``busy_timeout``; records what a crash after each commit would leave: (stored
    offset, event ids, quarantined offsets)."""

    def __init__(self, *a: Any, fail_at: set[int], **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.fail_at = fail_at
        self.calls = 0
        self.states: list[tuple[int, set[bytes], list[int]]] = []

    def append_many(self, batches: Any) -> list[AppendResult]:
        self.calls += 1
        if self.calls in self.fail_at:
            raise sqlite3.OperationalError("database is locked")
        results = super().append_many(batches)
        offset = self.get_offsets("t").get("k")
        ids = {r.event_id for r in self.read_after(0, 1_000_000)}
        quarantined = sorted(q.offset for q in self.quarantine_list(limit=1_000_000))
        self.states.append((offset.offset if offset else 0, ids, quarantined))
        return results


class _FailingReads:
    """``os`` for the tail module, whose ``pread`` fails (EIO) on the calls numbered in ``fail_at``."""

    def __init__(self, fail_at: set[int]) -> None:
        self.fail_at = fail_at
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        self.calls += 1
        if self.calls in self.fail_at:
            raise OSError(5, "Input/output error")
        return os.pread(fd, n, offset)


@given(
    kinds=st.lists(st.booleans(), min_size=4, max_size=12),  # per line: good (an event) or bad
    ahead=st.booleans(),  # mapping ahead (the helper process), or inline
    fault=st.sampled_from(["commit", "read"]),
    fail_at=st.sets(st.integers(1, 8), min_size=1, max_size=2),
)
@settings(max_examples=30, deadline=None, database=None, derandomize=True)
def test_reader_crash_and_restart_resumes_from_the_committed_offset(
        kinds: list[bool], ahead: bool, fault: str, fail_at: set[int]) -> None:
    """A tail reader crashes (its commit fails with SQLITE_BUSY, or a read fails with EIO) and the
    supervisor runs it again (``spawn_supervised``). After every committed transaction the lines before
    the stored offset are all in the spool (else a crash at that instant loses them), the offset never
    goes back, and in the end every good line is stored once in file order and every bad line
    quarantined once (docs/inputs.md: exactly once into the spool; a crashed reader "restarts from its
    last committed offset")."""
    lines = [audit_line(i, target=f"/home/agent/file-{i:04d}") if good else b""
             for i, good in enumerate(kinds)]
    size = len(audit_line(0, target="/home/agent/file-0000"))
    lines = [x if x else b"x" * (size - 1) + b"\n" for x in lines]  # a bad line: not JSON
    assert all(len(x) == size for x in lines)
    ids = {k: bytes.fromhex(json.loads(x)["id"].replace("-", "")) for k, x in enumerate(lines) if kinds[k]}
    d = tempfile.mkdtemp(prefix="writer-tail-")
    reads = _FailingReads(fail_at if fault == "read" else set())
    real_os = tail_module.os
    tail_module.os = reads
    try:
        path = os.path.join(d, "a.log")
        with open(path, "wb") as f:
            f.write(b"".join(lines))
        spool = _RecordingSpool(os.path.join(d, "spool.db"), durability="normal",
                                fail_at=fail_at if fault == "commit" else set())
        writer = SpoolWriter(spool).start()
        tail = TailInput("t", {"paths": [path], "read_chunk_bytes": size, "watch": False}, writer, spool,
                         mapper=_AheadMapper() if ahead else None)
        fd = os.open(path, os.O_RDONLY)
        reader = _FileReader(tail, "k", path, fd, 0, None, 0)
        crashes: list[Exception] = []

        def supervised() -> None:  # spawn_supervised, without its restart delay
            while True:
                try:
                    reader.run()
                    return
                except Exception as exc:
                    crashes.append(exc)

        def all_committed() -> None:
            while True:
                off = spool.get_offsets("t").get("k")
                if off is not None and off.offset == len(lines) * size and reader._inflight is None:
                    return
                gevent.sleep(0.005)

        g = gevent.spawn(supervised)
        watcher = gevent.spawn(all_committed)
        gevent.joinall([watcher, g], count=1)
        tail._stop.set()
        reader.wake.set()
        g.join()
        watcher.kill()
        writer.stop()
        reader.close()
        stored = [r.event_id for r in spool.read_after(0, 1_000_000)]
        quarantined = sorted(q.offset for q in spool.quarantine_list(limit=1_000_000))
        spool.close()
    finally:
        tail_module.os = real_os
        shutil.rmtree(d, ignore_errors=True)
    assert g.exception is None
    last = 0
    for offset, present, bad in spool.states:
        assert offset % size == 0
        missing = [k for k in range(offset // size) if kinds[k] and ids[k] not in present]
        missing += [k for k in range(offset // size) if not kinds[k] and k * size not in bad]
        assert not missing, (f"offset {offset // size} lines committed while lines {sorted(missing)} are "
                             f"not in the spool: a crash now loses them ({len(crashes)} reader crashes)")
        assert offset >= last, f"stored offset went back from {last // size} to {offset // size} lines"
        last = offset
    assert last == len(lines) * size
    assert stored == [ids[k] for k in sorted(ids)], "good lines not stored once each, in file order"
    assert quarantined == [k * size for k, good in enumerate(kinds) if not good], (
        "bad lines not quarantined exactly once each")


# --------------------------------------------------------------------------------------------------
# on_commit
# --------------------------------------------------------------------------------------------------


def test_on_commit_that_raises_does_not_leave_the_group_waiting(tmp_path: Any) -> None:
    """The hook runs before the group's results are set: if it raises, the writer greenlet dies with the
    results unset, and every writer of that group (a tail reader, an HTTP request) waits forever."""

    def hook() -> None:
        raise RuntimeError("subscriber failed")

    spool = Spool(str(tmp_path / "spool.db"), durability="normal")
    writer = SpoolWriter(spool, on_commit=hook).start()
    try:
        result = writer.submit(IngestBatch("a", [EncodedEvent(event_id(1), 1, b"x")], [], []))
        gevent.wait([result, writer._greenlet], count=1)  # the result, or the writer greenlet's death
        assert result.ready(), "a committed batch's writer was left waiting for ever"
        assert result.successful() and result.value == AppendResult(1, 0)
    finally:
        writer.stop()
        spool.close()
