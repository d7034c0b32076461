"""The mapping helper process: same bytes as mapping inline, and nothing lost when it dies."""

from __future__ import annotations

import os
import signal
import textwrap

import pytest

from agent.config import load_config
from agent.inputs.base import Line, LineSplitter
from agent.inputs.mapper import InlineMapper, ProcessMapper, build_mapper
from agent.inputs.tail import TailInput
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


@pytest.fixture
def config_path(tmp_path):
    p = tmp_path / "agent.toml"
    p.write_text(textwrap.dedent(CONFIG))
    return p


def lines_of(chunks: list[bytes]) -> list[Line]:
    s = LineSplitter(1 << 20, 0)
    out = s.feed(b"".join(chunks))
    return out


def sample_lines() -> list[Line]:
    bad = [b"{not json\n", b'{"id": "x", "timestamp": "yesterday"}\n', b"\n"]
    return lines_of(list(AUDIT_LINES) + bad + [audit_line(i) for i in range(50)])


def test_helper_maps_to_the_same_bytes_as_inline(config_path):
    context = load_config(str(config_path)).mapping_context()
    lines = sample_lines()
    inline = InlineMapper(context).submit(lines, source="a.jsonl", kind=None, max_line_bytes=1 << 20).get()
    pm = ProcessMapper(str(config_path), context)
    try:
        # several requests in flight at once are answered in order
        pendings = [pm.submit(lines[i::3], source="a.jsonl", kind=None, max_line_bytes=1 << 20)
                    for i in range(3)]
        results = [p.get(timeout=60) for p in pendings]
    finally:
        pm.close()
    assert pm.restarts == 0
    for i, (events, quarantine) in enumerate(results):
        exp_events, exp_quarantine = InlineMapper(context).submit(
            lines[i::3], source="a.jsonl", kind=None, max_line_bytes=1 << 20).get()
        assert events == exp_events and quarantine == exp_quarantine
    total_events = sum(len(r[0]) for r in results)
    total_quarantine = sum(len(r[1]) for r in results)
    assert total_events == len(inline[0]) > 50
    assert total_quarantine == len(inline[1]) == 2
    # the config's privacy rule ran in the helper: no original resource name reaches the spool bytes
    assert all(b"/home/agent/file-" not in e.body for e in inline[0])


def test_a_dead_helper_loses_nothing_and_is_replaced(config_path, monkeypatch):
    monkeypatch.setattr("agent.inputs.mapper.RESTART_BACKOFF_S", (0.0,))
    context = load_config(str(config_path)).mapping_context()
    pm = ProcessMapper(str(config_path), context)
    try:
        first = pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=1 << 20).get(timeout=60)
        old = pm._proc
        os.kill(old.pid, signal.SIGKILL)
        # requests sent to the dying helper are mapped inline; later ones go to a new helper
        pend = [pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=1 << 20) for _ in range(3)]
        got = [p.get(timeout=60) for p in pend]
        assert all(g == first for g in got)
        assert pm.restarts == 1
        again = pm.submit(sample_lines(), source="a", kind=None, max_line_bytes=1 << 20).get(timeout=60)
        assert again == first
        assert pm._proc is not None and pm._proc is not old
    finally:
        pm.close()


def test_tail_through_the_helper_spools_every_line_once(tmp_path, config_path):
    spool, writer = open_spool(tmp_path)
    context = load_config(str(config_path)).mapping_context()
    mapper = build_mapper(1, str(config_path), context)
    assert isinstance(mapper, ProcessMapper)
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"".join(audit_line(i) for i in range(3000)))
    t = TailInput("tail", {"paths": [str(f)], "watch": False, "scan_interval": 0.05,
                           "read_chunk_bytes": 4096}, writer, spool, context, mapper=mapper)
    t.start()
    try:
        wait_until(lambda: spool.last_seq() >= 3000, timeout=60)
        rows = spool.read_after(0, 10_000)
        assert len(rows) == 3000
        assert len({r.event_id for r in rows}) == 3000
        offsets = dict(spool.get_offsets("tail"))
        assert [o.offset for o in offsets.values()] == [f.stat().st_size]
    finally:
        t.stop()
        mapper.close()
        writer.stop()
        spool.close()


def test_no_helper_without_a_config_file(tmp_path):
    context = load_config_text_context()
    assert isinstance(build_mapper(1, str(tmp_path / "missing.toml"), context), InlineMapper)
    assert isinstance(build_mapper(0, __file__, context), InlineMapper)


def load_config_text_context():
    from agent.config import parse_config

    return parse_config(textwrap.dedent(CONFIG)).mapping_context()
