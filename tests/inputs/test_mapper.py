"""Mapping in the offload helper: the same bytes as mapping inline, and nothing lost when it dies."""

from __future__ import annotations

import os
import signal
import textwrap

import pytest

from agent.config import load_config, parse_config
from agent.inputs.base import Line, LineBlock, LineSplitter
from agent.inputs.mapper import InlineMapper, ProcessMapper, build_mapper
from agent.inputs.tail import TailInput
from agent.offload import OffloadHelper, build_offload
from tests.inputs.helpers import AUDIT_LINES, audit_line, open_spool, wait_until

CONFIG = """
[agent]
host_name = "mapper-host"
environment = "test"
labels = {team = "soc"}

[inputs.tail]
type = "file"
paths = ["/nonexistent/*.jsonl"]

[outputs.null]
type = "stdout"
enabled = false

[privacy]
rules = [{path = "resource.name", style = "hash", hash_salt = "pepper"}]
"""
BIG = 1 << 20


@pytest.fixture
def config_path(tmp_path):
    p = tmp_path / "agent.toml"
    p.write_text(textwrap.dedent(CONFIG))
    return p


@pytest.fixture
def helper(config_path):
    h = OffloadHelper(str(config_path))
    yield h
    h.close()


@pytest.fixture
def ready_helper(helper):
    assert helper.start(timeout=60)
    return helper


def sample_lines() -> list[Line]:
    bad = [b"{not json\n", b'{"id": "x", "timestamp": "yesterday"}\n', b"\n"]
    data = b"".join(list(AUDIT_LINES) + bad + [audit_line(i) for i in range(50)])
    return LineSplitter(BIG, 0).feed(data)


def test_helper_maps_to_the_same_bytes_as_inline(config_path, ready_helper):
    helper = ready_helper
    context = load_config(str(config_path)).mapping_context()
    lines = sample_lines()
    pm = ProcessMapper(helper, context, inline_max_lines=0)
    # several chunks in flight at once are answered in order
    pendings = [pm.submit(lines[i::3], source="a.jsonl", kind=None, max_line_bytes=BIG) for i in range(3)]
    results = [p.get(timeout=60) for p in pendings]
    assert helper.restarts == 0 and helper.jobs_done == 3
    inline = InlineMapper(context)
    for i, got in enumerate(results):
        assert got == inline.submit(lines[i::3], source="a.jsonl", kind=None, max_line_bytes=BIG).get()
    events = [e for r in results for e in r[0]]
    assert len(events) == len(AUDIT_LINES) + 50 and sum(len(r[1]) for r in results) == 2
    # the config's privacy rule ran in the helper: no original resource name reaches the spool bytes
    assert all(b"/home/agent/file-" not in e[2] for e in events)


def test_a_block_of_lines_maps_in_the_helper_to_the_same_bytes_as_its_lines_inline(config_path,
                                                                                    ready_helper):
    """A tail hands the helper its complete lines as one block (agent.inputs.base.LineBlock), which
    the helper cuts itself: same events, same quarantine records and offsets."""
    context = load_config(str(config_path)).mapping_context()
    bad = [b"{not json\n", b"\n"]
    data = b"".join(list(AUDIT_LINES) + bad + [audit_line(i) for i in range(50)])
    block = LineSplitter(BIG, 1000).feed_block(data)
    assert isinstance(block, LineBlock)
    pm = ProcessMapper(ready_helper, context, inline_max_lines=0)
    got = pm.submit(block, source="a.jsonl", kind=None, max_line_bytes=BIG).get(timeout=60)
    assert ready_helper.jobs_done == 1
    want = InlineMapper(context).submit(LineSplitter(BIG, 1000).feed(data), source="a.jsonl", kind=None,
                                        max_line_bytes=BIG).get()
    assert got == want
    assert len(got[0]) == len(AUDIT_LINES) + 50
    assert [q.offset for q in got[1]] == [1000 + len(b"".join(AUDIT_LINES))]


def test_a_dead_helper_loses_nothing_and_is_replaced(config_path, ready_helper, monkeypatch):
    helper = ready_helper
    monkeypatch.setattr("agent.offload.RESTART_BACKOFF_S", (0.0,))
    pm = ProcessMapper(helper, load_config(str(config_path)).mapping_context(), inline_max_lines=0,
                       start_lines=0)
    first = pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=BIG).get(timeout=60)
    old = helper.pid
    os.kill(old, signal.SIGKILL)
    # chunks sent to the dying helper are mapped inline; later ones go to a new helper
    pend = [pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=BIG) for _ in range(3)]
    assert all(p.get(timeout=60) == first for p in pend)
    assert helper.restarts == 1
    assert pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=BIG).get(timeout=60) == first
    assert helper.pid is not None and helper.pid != old


def test_tail_through_the_helper_spools_every_line_once(tmp_path, config_path, ready_helper):
    helper = ready_helper
    spool, writer = open_spool(tmp_path)
    context = load_config(str(config_path)).mapping_context()
    mapper = build_mapper(helper, context)
    assert isinstance(mapper, ProcessMapper)
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"".join(audit_line(i) for i in range(3000)))
    # 64 KiB reads: ~100-line chunks, above ProcessMapper's inline threshold
    t = TailInput("tail", {"paths": [str(f)], "watch": False, "scan_interval": 0.05,
                           "read_chunk_bytes": 65536}, writer, spool, context, mapper=mapper)
    t.start()
    try:
        wait_until(lambda: spool.last_seq() >= 3000, timeout=60)
        rows = spool.read_after(0, 10_000)
        assert len(rows) == 3000 and len({r.event_id for r in rows}) == 3000
        assert [o.offset for o in dict(spool.get_offsets("tail")).values()] == [f.stat().st_size]
        assert helper.jobs_done > 1
    finally:
        t.stop()
        writer.stop()
        spool.close()


def test_small_chunks_map_inline_and_never_start_the_helper(config_path, helper):
    """A trickle arrives a few lines per read: a helper round trip would cost more than mapping them."""
    context = load_config(str(config_path)).mapping_context()
    pm = ProcessMapper(helper, context)
    lines = sample_lines()
    small = lines[: pm.inline_max_lines - 1]
    got = pm.submit(small, source="a", kind=None, max_line_bytes=BIG)
    assert got.ready() and helper.pid is None and helper.jobs_done == 0
    expected = InlineMapper(context).submit(small, source="a", kind=None, max_line_bytes=BIG).get()
    assert got.get() == expected
    big = (lines * 2)[: pm.inline_max_lines]
    assert helper.start(timeout=60)
    assert pm.submit(big, source="a", kind=None, max_line_bytes=BIG).get(timeout=60) == \
        InlineMapper(context).submit(big, source="a", kind=None, max_line_bytes=BIG).get()
    assert helper.pid is not None and helper.jobs_done == 1


def test_an_idle_helper_retires_and_comes_back_on_demand(config_path, ready_helper):
    helper = ready_helper
    pm = ProcessMapper(helper, load_config(str(config_path)).mapping_context(), inline_max_lines=0,
                       start_lines=0)
    first = pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=BIG).get(timeout=60)
    old = helper.pid
    assert not helper.retire_if_idle(3600)  # used just now: stays
    assert helper.pid == old
    assert helper.retire_if_idle(0)
    assert helper.pid is None and helper.retirements == 1
    wait_until(lambda: _exited(old), 30, "the retired helper exits")
    # the next job starts a fresh helper at once: a retirement is neither a failure nor a restart
    assert pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=BIG).get(timeout=60) == first
    assert helper.pid not in (None, old) and helper.restarts == 0


def test_jobs_do_not_wait_for_a_starting_helper(config_path, helper):
    """Starting the helper (imports, config) takes ~0.5 s: the burst that starts it is mapped here."""
    context = load_config(str(config_path)).mapping_context()
    pm = ProcessMapper(helper, context, inline_max_lines=0, start_lines=0)
    lines = sample_lines()
    first = pm.submit(lines, source="a", kind=None, max_line_bytes=BIG)
    assert first.ready()  # computed here, at once
    assert helper.pid is not None and helper.jobs_done == 0  # ... while the helper starts
    assert first.get() == InlineMapper(context).submit(lines, source="a", kind=None, max_line_bytes=BIG).get()
    assert helper.start(timeout=60)
    assert pm.submit(lines, source="a", kind=None, max_line_bytes=BIG).get(timeout=60) == first.get()
    assert helper.jobs_done == 1


def test_the_helper_starts_only_for_a_sustained_rate_or_a_backlog(config_path, helper):
    """A blip of a few hundred lines maps here; the helper's start-up CPU is paid only when lines keep
    coming faster than the loop should map them (``start_lines`` within a second)."""
    context = load_config(str(config_path)).mapping_context()
    lines = sample_lines()  # 76 lines
    pm = ProcessMapper(helper, context, inline_max_lines=1, start_lines=3 * len(lines))
    for _ in range(2):
        assert pm.submit(lines, source="a", kind=None, max_line_bytes=BIG).ready()
    assert not helper.running
    pm.submit(lines, source="a", kind=None, max_line_bytes=BIG)  # the third chunk within the second
    assert helper.running


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_no_helper_without_a_config_file_or_when_off(tmp_path):
    context = parse_config(textwrap.dedent(CONFIG)).mapping_context()
    assert build_offload(True, str(tmp_path / "missing.toml")) is None
    assert build_offload(False, __file__) is None
    assert isinstance(build_mapper(None, context), InlineMapper)


class _Later:
    """A mapping answer that is not ready until ``set()``."""

    def __init__(self, value):
        import gevent.event

        self.value, self.event = value, gevent.event.Event()

    def ready(self) -> bool:
        return self.event.is_set()

    def get(self, timeout=None):
        self.event.wait(timeout)
        return self.value


class _ScriptedMapper:
    depth = 2

    def __init__(self, context, ready: bool):
        self.inline, self.ready, self.pending = InlineMapper(context), ready, []

    def submit(self, lines, **kw):
        value = self.inline.submit(lines, **kw).get()
        if self.ready:
            return _DoneLike(value)
        later = _Later(value)
        self.pending.append(later)
        return later


class _DoneLike:
    def __init__(self, value):
        self.value = value

    def ready(self) -> bool:
        return True

    def get(self, timeout=None):
        return self.value


@pytest.mark.parametrize("ready", [True, False])
def test_mapped_chunks_commit_at_once_and_only_unready_ones_queue(tmp_path, ready):
    """A steady trickle must not wait for `depth` more chunks: a chunk whose mapping is ready is
    committed right away; only chunks still mapping queue (at most `depth` of them)."""
    spool, writer = open_spool(tmp_path)
    context = parse_config(textwrap.dedent(CONFIG)).mapping_context()
    mapper = _ScriptedMapper(context, ready)
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"")
    t = TailInput("tail", {"paths": [str(f)], "watch": False, "scan_interval": 0.05}, writer, spool,
                  context, mapper=mapper)
    t.start()
    try:
        wait_until(lambda: len(t.readers) == 1)
        reader = next(iter(t.readers.values()))
        chunks = 3 if ready else 2  # a third unready chunk would wait for the oldest (depth 2)
        for i in range(chunks):
            line = audit_line(i)
            reader._commit(LineSplitter(BIG, 0).feed(line), (i + 1) * len(line))
        if ready:
            assert len(reader._mapping) == 0 and reader._inflight is not None
        else:
            assert len(reader._mapping) == 2 and reader._inflight is None
            for later in mapper.pending:
                later.event.set()
        reader._settle()
        assert spool.last_seq() == chunks
    finally:
        t.stop()
        writer.stop()
        spool.close()


def test_the_helper_pipes_are_widened(config_path, ready_helper):
    helper = ready_helper
    """Multi-megabyte jobs cross in a few pipe fills instead of ~40 with Linux's 64 KiB default."""
    import fcntl

    from agent.offload import PIPE_BYTES

    pm = ProcessMapper(helper, load_config(str(config_path)).mapping_context(), inline_max_lines=0)
    pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=BIG).get(timeout=60)
    with open("/proc/sys/fs/pipe-max-size") as f:
        want = min(PIPE_BYTES, int(f.read()))
    proc = helper._proc
    assert fcntl.fcntl(proc.stdin.fileno(), fcntl.F_GETPIPE_SZ) >= want
    assert fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ) >= want
