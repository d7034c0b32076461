"""Property-based tests of the supervisor's lifecycle: start, ``shutdown()``, restarts after a crash.

In-process, under gevent: a real spool in a temp dir, the ``file`` input tailing a temp file and the
``file`` output writing locally, so nothing needs a network (the config of tests/integration).

1. A state machine appends hushd lines in random bursts (some ending in half a line), lets the agent
   run a random number of hub turns, stops it (between bursts, mid-burst, or while the file output is
   held inside ``send``) and starts a new ``Supervisor`` on the same spool and files, and makes the
   drain's loop crash (an exception from its spool read). After every shutdown (agent/supervisor.py's
   docstring, docs/internals.md §2-§3, docs/inputs.md "Exactly once into the spool"):
   - no greenlet of the supervisor is alive (drains, loops, inputs, the writer) and the spool is closed;
   - the stored input offset is just past a complete line, and the spool holds exactly the lines
     before it, each once, in file order (the offset travels with its events; a restart resumes there);
   - the cursor matches the output file: what the output received is exactly the spooled events up to
     the cursor (a graceful stop lets the request in flight finish *and commit*); ``status`` shows no
     agent running.
   At the end, once caught up, every complete line was delivered at least once; with no crash, exactly
   once; after crashes, the duplicates are at most the batches in flight per crash (docs/outputs.md §2:
   ``concurrency + 2`` batches registered), and the recorded ``delivered_total`` is what the file got.
   A tail reader that crashes (docs/inputs.md "Crashes") restarts from its committed offset: every line
   is stored once, in order, and delivered once.
2. ``shutdown()`` a second time returns at once; ``shutdown()`` before ``start()`` or while ``start()`` is
   still running stops everything it started (nothing keeps running, the spool closes) and never raises.
3. The read connection of each drain (``Spool.reader()``: "close it when done") is closed once its drain
   ended: after a crash restart and after shutdown.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import agent.supervisor as supervisor_mod
from agent.config import load_config
from agent.supervisor import Supervisor
from spool.store import Spool
from tests.integration.harness import audit_line, line_id, output_ids, write_config

OUT = "archive"
INPUT = "audit"
BATCH = 16  # batch_max_events: several batches per burst
WAIT_S = 30.0  # generous: a condition that is not met by then is a hang


def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``cond`` on the hub (other greenlets run meanwhile) until it holds."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not cond():
            gevent.sleep(0.005)


class _FastRestart:
    """agent.supervisor's view of gevent with the 1 s restart delay of a crashed drain cut to 10 ms, so
    crashes cost little test time (the delay is not a property under test)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(gevent, name)

    @staticmethod
    def spawn_later(seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        return gevent.spawn_later(min(seconds, 0.01), fn, *args)


@contextmanager
def fast_restarts() -> Iterator[None]:
    real = supervisor_mod.gevent
    supervisor_mod.gevent = _FastRestart()  # type: ignore[assignment]
    try:
        yield
    finally:
        supervisor_mod.gevent = real


def agent_config(root: Path) -> Any:
    """The integration tests' agent.toml (file input, file output), offload helper off (in-process),
    small batches, a heartbeat that runs during the test."""
    path = write_config(root)
    text = path.read_text()
    text = text.replace('shutdown_timeout = "5s"', 'shutdown_timeout = "20s"\noffload = false')
    text = text.replace("batch_max_events = 200", f"batch_max_events = {BATCH}")
    path.write_text(text)
    return load_config(str(path))


def live_greenlets(sup: Supervisor) -> list[str]:
    """Greenlets of ``sup`` (its drains, loops, inputs and the writer) still alive."""
    alive = [f"drain/loop {g!r}" for g in [*sup._drain_group, *sup._loops] if not g.dead]
    for name, inp in sup.inputs.items():
        alive += [f"input {name} {g!r}" for g in inp._group if not g.dead]
    wg = getattr(sup.writer, "_greenlet", None)
    if wg is not None and not wg.dead:
        alive.append("writer")
    return alive


def spooled_ids(spool_path: Path) -> list[str]:
    with Spool.open_readonly(spool_path) as sp:
        rows = sp.read_after(0, 1_000_000)
    import uuid

    return [str(uuid.UUID(bytes=r.event_id)) for r in rows]


# ------------------------------------------------------------------------------ 1. the state machine


class LifecycleMachine(RuleBasedStateMachine):
    """Bursts of lines, hub turns, stops and starts, crashes of the drain loop; checked against the
    lines written (the model: the file's bytes and which line ends where)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="sup-sm-"))
        self.sup: Supervisor | None = None
        self._restarts = fast_restarts()
        self._restarts.__enter__()

    @initialize(n=st.integers(0, 40))
    def setup(self, n: int) -> None:
        self.config = agent_config(self.root)
        self.src = self.root / "in" / "audit.jsonl"
        self.out = self.root / "out" / "events.jsonl"
        self.spool_path = Path(self.config.spool_path)
        self.data = b""  # every byte written to the tailed file
        self.ends: list[int] = []  # file offset just past complete line i
        self.next_i = 0
        self.partial: bytes = b""  # the rest of a line whose first part is in the file
        self.crashes = 0
        self.crashed_this_run = False
        self.src.write_bytes(b"")
        self.burst(n, 0)
        self.start()

    # -- helpers -----------------------------------------------------------------------------------

    def start(self) -> None:
        self.sup = Supervisor(self.config)
        self.sup.start()
        self.crashed_this_run = False

    def write(self, data: bytes) -> None:
        with open(self.src, "ab") as f:
            f.write(data)
        self.data += data

    def add_line(self) -> bytes:
        line = audit_line(self.next_i)
        self.next_i += 1
        return line

    def complete_ids(self) -> list[str]:
        return [line_id(i) for i in range(len(self.ends))]

    def stop(self) -> None:
        """``shutdown()``, then everything that must hold of a stopped agent."""
        sup = self.sup
        assert sup is not None
        sup.shutdown()
        self.sup = None
        assert sup._stopped.is_set()
        assert sup.exit_code == (2 if self.crashed_this_run else 0)
        assert live_greenlets(sup) == []
        assert sup.spool._closed
        with Spool.open_readonly(self.spool_path) as sp:
            offsets = sp.get_offsets(INPUT)
            cursor = sp.get_cursor(OUT)
            agent_state = sp.get_agent_state()
        assert agent_state is None  # `status`: no agent runs
        # The offset is just past a complete line and the spool holds exactly the lines before it.
        assert len(offsets) <= 1
        offset = next(iter(offsets.values())).offset if offsets else 0
        assert offset == 0 or offset in self.ends, (offset, self.ends[-3:])
        n_read = self.ends.index(offset) + 1 if offset else 0
        stored = spooled_ids(self.spool_path)
        assert stored == [line_id(i) for i in range(n_read)]
        # A graceful stop commits what was sent: the output holds exactly the events up to the cursor,
        # each once, unless a crash re-sent a batch in flight.
        got = output_ids(self.out)
        assert cursor is not None
        if self.crashes == 0:
            assert got == stored[: cursor.seq]
        else:
            assert set(got) == set(stored[: cursor.seq])

    # -- rules -------------------------------------------------------------------------------------

    @rule(n=st.integers(1, 50), cut=st.integers(0, 200))
    def burst(self, n: int, cut: int) -> None:
        """Append a half line's rest (if any), then ``n`` lines; the last may be cut ``cut`` bytes
        short (0: complete), its rest written by the next burst."""
        data = self.partial
        if self.partial:
            self.ends.append(len(self.data) + len(data))
        self.partial = b""
        for k in range(n):
            line = self.add_line()
            if k == n - 1 and 0 < cut < len(line):
                data += line[:-cut]
                self.partial = line[-cut:]
            else:
                data += line
                self.ends.append(len(self.data) + len(data))
        self.write(data)

    @rule(turns=st.integers(0, 30))
    def run_a_while(self, turns: int) -> None:
        """Let the agent run for ``turns`` hub turns (reads, commits, sends interleave)."""
        for _ in range(turns):
            gevent.sleep(0)

    @rule(turns=st.integers(0, 12))
    def restart(self, turns: int) -> None:
        """Stop after a few hub turns (maybe mid-read, mid-commit, mid-send), start a new agent."""
        self.run_a_while(turns)
        self.stop()
        self.start()

    @rule(n=st.integers(1, 40))
    def restart_while_a_send_is_held(self, n: int) -> None:
        """Stop while the output is inside ``send``: the request finishes and is committed first."""
        sup = self.sup
        assert sup is not None
        drain = sup.drains[OUT]
        entered, release = gevent.event.Event(), gevent.event.Event()
        real_send = drain.output.send

        def held_send(*args: Any, **kw: Any) -> Any:
            entered.set()
            release.wait()
            return real_send(*args, **kw)

        drain.output.send = held_send  # type: ignore[method-assign]
        self.burst(n, 0)
        wait_until(entered.is_set, "a send to start")
        stopper = gevent.spawn(sup.shutdown)
        wait_until(lambda: drain._stopping, "the shutdown to reach the drains")
        release.set()
        stopper.join()
        self.sup = sup  # stop() runs the checks (shutdown again returns at once)
        self.stop()
        self.start()

    @precondition(lambda self: self.crashes < 3)
    @rule()
    def crash_the_drain_loop(self) -> None:
        """The drain's next spool read raises: its greenlet dies and the supervisor starts a new one."""
        sup = self.sup
        assert sup is not None
        drain = sup.drains[OUT]
        reader = drain.reader
        real = reader.read_after

        def boom(*args: Any, **kw: Any) -> Any:
            reader.read_after = real  # type: ignore[method-assign]
            raise RuntimeError("injected: spool read failed")

        reader.read_after = boom  # type: ignore[method-assign]
        self.crashes += 1
        self.crashed_this_run = True
        self.burst(1, 0)  # wakes the drain
        wait_until(lambda: sup.drains[OUT] is not drain, "the crashed drain to be restarted")
        new = sup.drains[OUT]
        assert new.stats is drain.stats  # the counters survive the restart

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def counters_are_sane(self) -> None:
        if self.sup is None or not hasattr(self, "config"):
            return
        st_ = self.sup.drains[OUT].stats
        assert st_.in_flight >= 0 and st_.in_flight_batches >= 0
        assert st_.delivered >= 0

    # -- the end -----------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.sup is not None:
                self.finish()
        finally:
            try:
                if self.sup is not None:
                    self.sup.shutdown()
            finally:
                self._restarts.__exit__(None, None, None)
                shutil.rmtree(self.root, ignore_errors=True)

    def finish(self) -> None:
        sup = self.sup
        assert sup is not None
        n = len(self.ends)
        wait_until(lambda: sup.spool.last_seq() >= n and sup.caught_up(), "the agent to catch up")
        stats = sup.drains[OUT].stats
        assert stats.in_flight == 0 and stats.in_flight_batches == 0
        self.stop()
        counts = Counter(output_ids(self.out))
        expected = self.complete_ids()
        assert set(counts) == set(expected), "lost or invented events"
        duplicates = sum(c - 1 for c in counts.values())
        if self.crashes == 0:
            assert duplicates == 0
        else:
            assert duplicates <= self.crashes * 3 * BATCH  # (concurrency 1 + 2) batches per crash
        with Spool.open_readonly(self.spool_path) as sp:
            recorded = sp.read_output_states()[OUT].delivered_total
        if self.crashes == 0:
            assert recorded == sum(counts.values())


LifecycleMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=10,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
TestLifecycle = LifecycleMachine.TestCase


@settings(max_examples=3, deadline=None, database=None, phases=[Phase.explicit, Phase.generate])
@given(bursts=st.lists(st.integers(1, 60), min_size=1, max_size=4), fail_at=st.integers(1, 4))
def test_an_input_reader_that_crashes_restarts_and_stores_every_line_once(
        bursts: list[int], fail_at: int) -> None:
    """docs/inputs.md "Crashes": a reader whose loop raised (here the ``fail_at``-th hand-over of a batch
    to the spool writer) restarts from its last committed offset: every line reaches the spool exactly
    once and in file order, the stored offset ends at the end of the file, and every event is
    delivered exactly once (the output is not involved in the crash)."""
    root = Path(tempfile.mkdtemp(prefix="sup-input-"))
    try:
        config = agent_config(root)
        src = root / "in" / "audit.jsonl"
        src.write_bytes(b"")
        sup = Supervisor(config)
        sup.start()
        calls = [0]
        real_submit = sup.writer.submit

        def flaky_submit(batch: Any) -> Any:
            calls[0] += 1
            if calls[0] == fail_at:
                raise RuntimeError("injected: hand-over to the spool failed")
            return real_submit(batch)

        sup.writer.submit = flaky_submit  # type: ignore[method-assign]
        total = 0
        try:
            for n in bursts:
                with open(src, "ab") as f:
                    f.write(b"".join(audit_line(i) for i in range(total, total + n)))
                total += n
                gevent.sleep(0.01)
            if calls[0] < fail_at:  # fewer hand-overs than that: one more burst gets there
                wait_until(lambda: sup.spool.last_seq() >= total, "the lines to be stored")
                while calls[0] < fail_at:
                    with open(src, "ab") as f:
                        f.write(audit_line(total))
                    total += 1
                    wait_until(lambda t=total: calls[0] >= fail_at or sup.spool.last_seq() >= t,
                               "the next hand-over")
            wait_until(lambda: sup.spool.last_seq() >= total and sup.caught_up(), "the agent to catch up")
            assert sup.inputs[INPUT].stats.errors == 1  # it did crash, once
        finally:
            sup.shutdown()
        expected = [line_id(i) for i in range(total)]
        assert spooled_ids(Path(config.spool_path)) == expected
        with Spool.open_readonly(config.spool_path) as sp:
            offsets = list(sp.get_offsets(INPUT).values())
        assert [o.offset for o in offsets] == [src.stat().st_size]
        assert output_ids(root / "out" / "events.jsonl") == expected
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------- 2. shutdown at any point of start

STAGES: dict[str, Callable[[Supervisor], bool]] = {
    "opening the spool": lambda s: True,  # start() ran up to its first yield
    "spool open": lambda s: s.spool is not None,
    "writer running": lambda s: s.writer is not None,
    "drain started": lambda s: OUT in s.drains,
    "input started": lambda s: INPUT in s.inputs,
    "started": lambda s: bool(s._loops),
}


@contextmanager
def agent_dir() -> Iterator[tuple[Path, Any]]:
    root = Path(tempfile.mkdtemp(prefix="sup-start-"))
    try:
        config = agent_config(root)
        (root / "in" / "audit.jsonl").write_bytes(b"".join(audit_line(i) for i in range(30)))
        yield root, config
    finally:
        shutil.rmtree(root, ignore_errors=True)


def assert_stopped(sup: Supervisor) -> None:
    assert sup._stopped.is_set()
    assert live_greenlets(sup) == []
    assert sup.spool is None or sup.spool._closed


@settings(max_examples=12, deadline=None, database=None)
@given(stage=st.sampled_from(sorted(STAGES)), again=st.booleans())
def test_a_shutdown_while_start_runs_stops_everything_start_started(stage: str, again: bool) -> None:
    """``shutdown()`` called (as ``request_shutdown`` does, from another greenlet) once ``start()`` got to
    ``stage``: when both returned, nothing of the agent runs, the spool is closed, no error; a second
    ``shutdown()`` returns at once."""
    with agent_dir() as (_root, config):
        sup = Supervisor(config)
        starter = gevent.spawn(sup.start)
        reached = STAGES[stage]
        gevent.sleep(0)  # start() runs until it first yields
        with gevent.Timeout(WAIT_S, AssertionError(f"start never reached {stage}")):
            while not (reached(sup) or starter.dead):
                gevent.sleep(0)  # one hub turn: start() yields only at the spool's threadpool calls
        sup.shutdown()
        starter.join(WAIT_S)
        try:
            assert starter.dead and starter.exception is None, repr(starter.exception)
            assert_stopped(sup)
            assert sup.exit_code == 0
            if again:
                sup.shutdown()
                assert_stopped(sup)
        finally:
            if sup.spool is not None and not sup.spool._closed:  # a leaked agent: stop it
                sup._stopping = False
                sup.shutdown()


def test_a_shutdown_before_start_is_a_clean_no_op() -> None:
    """A supervisor that never started has nothing to stop: ``shutdown()`` neither fails (it used to log
    "shutdown failed" and set exit code 1) nor leaves ``run_forever`` waiting."""
    with agent_dir() as (_root, config):
        sup = Supervisor(config)
        sup.shutdown()
        sup.shutdown()
        assert_stopped(sup)
        assert sup.exit_code == 0


# ----------------------------------------------------------------------- 3. drains' read connections


def is_closed(reader: Any) -> bool:
    import sqlite3

    try:
        reader._conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


@settings(max_examples=4, deadline=None, database=None)
@given(crashes=st.integers(0, 2))
def test_every_drain_read_connection_is_closed_once_its_drain_ended(crashes: int) -> None:
    """``Spool.reader()``: "A new read-only connection for one drain greenlet (close it when done)". The
    supervisor opens one per drain it starts, and one more per restart after a crash; each must be
    closed when its drain ended (after the crash; at shutdown), or every crash leaks a connection and
    its file descriptors, and a stopped agent keeps the spool's files open."""
    with agent_dir() as (root, config), fast_restarts():
        sup = Supervisor(config)
        opened: list[Any] = []
        real_reader = Spool.reader

        def tracked(self: Spool) -> Any:
            r = real_reader(self)
            opened.append(r)
            return r

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Spool, "reader", tracked)
            sup.start()
            try:
                for k in range(crashes):
                    drain = sup.drains[OUT]
                    drain.reader.read_after = _raising  # type: ignore[method-assign]
                    with open(root / "in" / "audit.jsonl", "ab") as f:
                        f.write(audit_line(100 + k))
                    wait_until(lambda d=drain: sup.drains[OUT] is not d, "the drain to be restarted")
            finally:
                sup.shutdown()
        assert len(opened) == crashes + 1
        assert [is_closed(r) for r in opened] == [True] * len(opened)


def _raising(*args: Any, **kw: Any) -> Any:
    raise RuntimeError("injected: spool read failed")
