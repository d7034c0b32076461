"""File tail against real files and the real spool (no fakes)."""

from __future__ import annotations

import json
import os
import random
import uuid

import pytest

from agent.inputs.base import LineBlock, LineSplitter
from agent.inputs.tail import TailInput
from spool.types import SpoolFull
from tests.inputs.helpers import (
    AUDIT_LINES,
    audit_line,
    event_ids,
    line_id,
    open_spool,
    source_ids,
    wait_until,
)


@pytest.fixture
def env(tmp_path):
    spool, writer = open_spool(tmp_path)
    inputs = []

    def make(paths, name="tail", **kw):
        kw.setdefault("scan_interval", 0.05)
        kw.setdefault("rotate_wait", 0.3)
        kw.setdefault("watch", False)
        t = TailInput(name, {"paths": paths, **kw}, writer, spool)
        inputs.append(t)
        t.start()
        return t

    yield tmp_path, spool, writer, make
    for t in inputs:
        t.stop()
    writer.stop()
    spool.close()


def offsets(spool, name="tail"):
    return spool.get_offsets(name)


def test_append_partial_line_completed_later(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    f.write_bytes(AUDIT_LINES[0] + AUDIT_LINES[1][:30])
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 1)
    (off,) = offsets(spool).values()
    assert off.offset == len(AUDIT_LINES[0])  # just past the last complete line
    with open(f, "ab") as fh:
        fh.write(AUDIT_LINES[1][30:] + AUDIT_LINES[2])
    wait_until(lambda: len(event_ids(spool)) == 3)
    assert event_ids(spool) == source_ids(AUDIT_LINES[:3])
    wait_until(lambda: next(iter(offsets(spool).values())).offset == f.stat().st_size)
    st = t.status()["files"][0]
    assert st["lag_bytes"] == 0 and st["file_key"].startswith("native::")


def test_glob_picks_up_new_files(env):
    d, spool, _w, make = env
    (d / "one.jsonl").write_bytes(AUDIT_LINES[0])
    make([str(d / "*.jsonl")])
    wait_until(lambda: len(event_ids(spool)) == 1)
    (d / "two.jsonl").write_bytes(AUDIT_LINES[1] + AUDIT_LINES[2])
    (d / "ignored.txt").write_bytes(AUDIT_LINES[3])
    wait_until(lambda: len(event_ids(spool)) == 3)
    assert sorted(event_ids(spool)) == sorted(source_ids(AUDIT_LINES[:3]))
    assert len(offsets(spool)) == 2


def test_symlink_identity_is_the_target(env):
    d, spool, _w, make = env
    real = d / "real"
    real.mkdir()
    target = real / "audit.jsonl"
    target.write_bytes(AUDIT_LINES[0])
    link = d / "link.jsonl"
    link.symlink_to(target)
    t = make([str(link)])
    wait_until(lambda: len(event_ids(spool)) == 1)
    st = os.stat(target)
    assert t.status()["files"][0]["file_key"] == f"native::{st.st_dev}-{st.st_ino}"
    with open(target, "ab") as fh:
        fh.write(AUDIT_LINES[1])
    wait_until(lambda: len(event_ids(spool)) == 2)


def test_rename_rotation_drains_old_and_reads_new(env):
    d, spool, _w, make = env
    f = d / "audit.jsonl"
    f.write_bytes(AUDIT_LINES[0])
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 1)
    old = open(f, "ab")  # noqa: SIM115 - the producer keeps its fd across the rename
    os.rename(f, d / "audit.jsonl.1")
    old.write(AUDIT_LINES[1])  # written to the old file after the rename
    old.flush()
    f.write_bytes(AUDIT_LINES[2] + AUDIT_LINES[3])  # the new file at the path
    wait_until(lambda: len(event_ids(spool)) == 4)
    old.write(AUDIT_LINES[4])  # still within rotate_wait: drained too
    old.flush()
    old.close()
    wait_until(lambda: len(event_ids(spool)) == 5)
    assert sorted(event_ids(spool)) == sorted(source_ids(AUDIT_LINES[:5]))
    wait_until(lambda: len(t.readers) == 1, what="old file closed after rotate_wait")
    assert t.stats.duplicates == 0


def test_a_file_renamed_out_of_paths_while_the_agent_was_down_is_read_on_from_its_offset(env):
    """logrotate renamed the file (to a name ``paths`` does not match) after the agent stopped or
    died and before it had read the last lines: the next start finds the file by its identity in
    the directory it was in and reads on from the stored offset (they used to be lost), then closes
    it after rotate_wait. Other files of the directory are left alone."""
    d, spool, _w, make = env
    f = d / "audit.jsonl"
    f.write_bytes(b"".join(AUDIT_LINES[:3]))
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 3)
    t.stop()
    with open(f, "ab") as fh:  # written while the agent is down, then rotated away
        fh.write(b"".join(AUDIT_LINES[3:5]))
    os.rename(f, d / "audit.jsonl.1")
    f.write_bytes(b"".join(AUDIT_LINES[5:7]))  # the new file at the path
    (d / "unrelated.jsonl").write_bytes(b"".join(AUDIT_LINES[7:9]))  # never under paths, never read
    t2 = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 7)
    assert sorted(event_ids(spool)) == sorted(source_ids(AUDIT_LINES[:7]))
    wait_until(lambda: len(t2.readers) == 1, what="the renamed file closed after rotate_wait")
    assert t2.stats.duplicates == 0 and t2.stats.ingested == 4
    assert len(event_ids(spool)) == 7


def test_a_renamed_file_that_no_longer_vouches_for_its_offset_is_not_read(env):
    """The same search at start takes only a stored offset the file still vouches for: a file at
    that inode whose first bytes changed (rewritten, or the inode reused) is not read at all."""
    d, spool, _w, make = env
    f = d / "audit.jsonl"
    f.write_bytes(AUDIT_LINES[0] + AUDIT_LINES[1])
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 2)
    t.stop()
    os.rename(f, d / "audit.jsonl.1")
    with open(d / "audit.jsonl.1", "r+b") as fh:  # same inode, other first bytes, longer
        fh.write(b"".join(AUDIT_LINES[5:10]))
    f.write_bytes(AUDIT_LINES[2])
    t2 = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 3)
    assert sorted(event_ids(spool)) == sorted(source_ids(AUDIT_LINES[:3]))
    assert list(t2.readers) and all(r.path == str(f) for r in t2.readers.values())


def test_copytruncate_restarts_at_zero(env):
    d, spool, _w, make = env
    f = d / "audit.jsonl"
    f.write_bytes(b"".join(AUDIT_LINES[:4]))
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 4)
    with open(f, "r+b") as fh:  # copytruncate: same inode, truncated, then new lines
        fh.truncate(0)
    with open(f, "ab") as fh:
        fh.write(AUDIT_LINES[4])
    wait_until(lambda: len(event_ids(spool)) == 5)
    assert event_ids(spool)[-1] == line_id(AUDIT_LINES[4])
    wait_until(lambda: next(iter(offsets(spool).values())).offset == len(AUDIT_LINES[4]))
    assert t.status()["files"][0]["resets"] >= 1


def test_exclude_keeps_rotated_copies_out_of_a_directory_glob(env):
    """A copytruncate rotation leaves a copy (audit.jsonl.1) and logrotate's compress a .gz beside the
    live file; with ``paths`` a directory glob, ``exclude`` keeps both from being read again."""
    top, spool, _w, make = env
    d = top / "logs"
    d.mkdir()
    (d / "audit.jsonl").write_bytes(b"".join(AUDIT_LINES[:2]))
    (d / "audit.jsonl.1").write_bytes(b"".join(AUDIT_LINES[:2]) + b"not json\n")
    (d / "audit.jsonl.2.gz").write_bytes(b"\x1f\x8b\x08\x00garbage\n")
    (d / "other.jsonl").write_bytes(AUDIT_LINES[5])
    t = make([str(d / "*")], exclude=["*.gz", "*.[0-9]", str(d / "oth*.jsonl")])
    wait_until(lambda: len(event_ids(spool)) == 2)
    scans = t.scans
    with open(d / "audit.jsonl", "ab") as fh:
        fh.write(AUDIT_LINES[2])
    wait_until(lambda: len(event_ids(spool)) == 3 and t.scans > scans + 1)
    assert event_ids(spool) == source_ids(AUDIT_LINES[:3])
    assert [f["path"] for f in t.status()["files"]] == [str(d / "audit.jsonl")]
    assert t.stats.quarantined == 0 and t.stats.duplicates == 0
    assert len(offsets(spool)) == 1


def test_exclusion_matches_names_or_whole_paths_within_components(tmp_path):
    from agent.inputs.tail import exclusion

    excluded = exclusion(["*.gz", f"{tmp_path}/old/*"])
    assert excluded(f"{tmp_path}/a.jsonl.gz")
    assert excluded(f"{tmp_path}/old/a.jsonl")
    assert not excluded(f"{tmp_path}/old/deeper/a.jsonl")  # `*` stays within one component
    assert not excluded(f"{tmp_path}/a.jsonl")
    assert not excluded(f"{tmp_path}/gz/a.jsonl")


def test_rewrite_in_place_openclaw_is_deduplicated(env):
    d, spool, _w, make = env
    f = d / "audit.jsonl"
    recs = [json.dumps({"id": f"evt-17000000000{i}-abc{i}", "timestamp": 1700000000000 + i,
                        "type": "tool_call", "resource": f"/tmp/r{i}", "decision": "denied",
                        "guard": "forbidden_path", "reason": "nope"}).encode() + b"\n" for i in range(6)]
    f.write_bytes(b"".join(recs[:3]))
    t = make([str(f)], format="openclaw_audit")
    wait_until(lambda: len(event_ids(spool)) == 3)
    # the store rewrites the whole file on each append, here also pruning the oldest entry
    f.write_bytes(b"".join(recs[1:5]))
    wait_until(lambda: len(event_ids(spool)) == 5)
    f.write_bytes(b"".join(recs[2:6]))
    wait_until(lambda: len(event_ids(spool)) == 6)
    assert len(set(event_ids(spool))) == 6
    wait_until(lambda: t.stats.duplicates >= 4)  # recs 1,2,3 and 2,3,4 read again, ignored by the spool
    assert t.stats.ingested == 6


def test_delete_and_recreate(env):
    d, spool, _w, make = env
    f = d / "audit.jsonl"
    f.write_bytes(AUDIT_LINES[0])
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 1)
    os.unlink(f)
    wait_until(lambda: not t.readers, what="deleted file closed")
    f.write_bytes(AUDIT_LINES[1])
    wait_until(lambda: len(event_ids(spool)) == 2)
    assert event_ids(spool) == source_ids(AUDIT_LINES[:2])


def test_file_appearing_later_is_read_from_start(env):
    d, spool, _w, make = env
    t = make([str(d / "later.jsonl")], start_at="end")
    wait_until(lambda: t.scans >= 3)
    (d / "later.jsonl").write_bytes(AUDIT_LINES[0] + AUDIT_LINES[1])
    wait_until(lambda: len(event_ids(spool)) == 2)


def test_start_at_end_skips_history_but_not_new_lines(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    f.write_bytes(AUDIT_LINES[0] + AUDIT_LINES[1])
    make([str(f)], start_at="end")
    wait_until(lambda: len(offsets(spool)) == 1)
    with open(f, "ab") as fh:
        fh.write(AUDIT_LINES[2])
    wait_until(lambda: len(event_ids(spool)) == 1)
    assert event_ids(spool) == [line_id(AUDIT_LINES[2])]


def test_restart_resumes_at_stored_offset(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    f.write_bytes(b"".join(AUDIT_LINES[:5]))
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 5)
    t.stop()
    with open(f, "ab") as fh:
        fh.write(b"".join(AUDIT_LINES[5:8]))
    t2 = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 8)
    assert event_ids(spool) == source_ids(AUDIT_LINES[:8])
    wait_until(lambda: t2.stats.bytes == sum(map(len, AUDIT_LINES[5:8])))
    assert t2.stats.duplicates == 0 and t2.stats.ingested == 3  # nothing read twice


def test_marker_mismatch_restarts_at_zero(env):
    """Same inode, different first bytes, size >= stored offset (inode reuse / rewrite while stopped)."""
    d, spool, _w, make = env
    f = d / "a.jsonl"
    f.write_bytes(AUDIT_LINES[0] + AUDIT_LINES[1])
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 2)
    t.stop()
    with open(f, "r+b") as fh:  # same inode, longer, different content
        fh.write(b"".join(AUDIT_LINES[5:10]))
    t2 = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 7)
    assert sorted(event_ids(spool)) == sorted(source_ids(AUDIT_LINES[:2] + AUDIT_LINES[5:10]))
    assert t2.stats.duplicates == 0


def test_stored_offset_beyond_size_restarts_at_zero(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    f.write_bytes(b"".join(AUDIT_LINES[:4]))
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 4)
    t.stop()
    with open(f, "r+b") as fh:
        fh.truncate(0)
        fh.write(AUDIT_LINES[6])
    make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 5)


def test_bad_lines_quarantined_with_offset_and_reason(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    bad_json = b'{"id": broken\n'
    bad_utf8 = b'{"id":"\xff\xfe"}\n'
    unknown = b'{"hello":"world"}\n'
    content = [AUDIT_LINES[0], bad_json, AUDIT_LINES[1], bad_utf8, unknown, AUDIT_LINES[2]]
    f.write_bytes(b"".join(content))
    t = make([str(f)])
    wait_until(lambda: len(event_ids(spool)) == 3 and t.stats.quarantined == 3)
    q = sorted(spool.quarantine_list(), key=lambda e: e.offset)
    starts = [sum(map(len, content[:i])) for i in range(len(content))]
    assert [e.offset for e in q] == [starts[1], starts[3], starts[4]]
    assert q[0].reason.startswith("invalid JSON") and q[0].excerpt == bad_json.rstrip(b"\n")
    assert q[1].reason.startswith("invalid UTF-8")
    assert q[2].reason.startswith("unknown record shape")
    assert all(e.source == str(f) for e in q)
    wait_until(lambda: next(iter(offsets(spool).values())).offset == f.stat().st_size)
    t.stop()
    make([str(f)], name="tail")  # a restart does not quarantine them again
    with open(f, "ab") as fh:
        fh.write(AUDIT_LINES[3])
    wait_until(lambda: len(event_ids(spool)) == 4)
    assert len(spool.quarantine_list()) == 3


def test_overlong_line_skipped_to_next_newline(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    huge = b'{"x":"' + b"a" * 5000 + b'"}\n'
    f.write_bytes(AUDIT_LINES[0] + huge + AUDIT_LINES[1])
    t = make([str(f)], max_line_bytes=1000, read_chunk_bytes=512)
    wait_until(lambda: len(event_ids(spool)) == 2 and t.stats.quarantined == 1)
    (q,) = spool.quarantine_list()
    assert q.offset == len(AUDIT_LINES[0]) and "exceeds max_line_bytes (1000)" in q.reason
    assert len(q.excerpt) <= 512 and q.excerpt.startswith(b'{"x":"aaa')


def test_spool_full_pauses_and_resumes_without_loss(env):
    d, spool, _writer, make = env
    real_append_many = spool.append_many
    state = {"full": True, "refused": 0}

    def append_many(batches):  # the spool refuses, as with max_bytes reached or a full disk
        if state["full"] and any(b.events for b in batches):
            state["refused"] += 1
            raise SpoolFull("test: spool full")
        return real_append_many(batches)

    spool.append_many = append_many
    f = d / "a.jsonl"
    f.write_bytes(b"".join(AUDIT_LINES[:3]))
    t = make([str(f)])
    wait_until(lambda: state["refused"] >= 3)
    assert event_ids(spool) == [] and offsets(spool) == {}
    assert t.status()["files"][0]["state"] == "paused"
    state["full"] = False
    wait_until(lambda: len(event_ids(spool)) == 3)
    assert event_ids(spool) == source_ids(AUDIT_LINES[:3])
    assert t.stats.spool_full >= 3


def test_reader_crash_is_restarted_other_files_go_on(env, monkeypatch):
    d, spool, _w, make = env
    a, b = d / "a.jsonl", d / "b.jsonl"
    a.write_bytes(AUDIT_LINES[0])
    b.write_bytes(AUDIT_LINES[1])
    import agent.inputs.mapper as mapper_mod

    real = mapper_mod.map_lines
    crashes = {"n": 0}

    def flaky(lines, *, source, **kw):
        if source.endswith("a.jsonl") and crashes["n"] < 2:
            crashes["n"] += 1
            raise RuntimeError("boom")
        return real(lines, source=source, **kw)

    monkeypatch.setattr(mapper_mod, "map_lines", flaky)
    t = make([str(d / "*.jsonl")])
    wait_until(lambda: line_id(AUDIT_LINES[1]) in event_ids(spool))
    wait_until(lambda: len(event_ids(spool)) == 2, timeout=30)
    assert t.stats.errors == 2


def test_line_splitter_offsets():
    s = LineSplitter(10, 100)
    out = s.feed(b"ab\ncd")
    assert [(x.start, x.end, x.data) for x in out] == [(100, 103, b"ab")] and s.consumed == 103
    out = s.feed(b"\n" + b"x" * 20)
    assert [(x.start, x.data) for x in out] == [(103, b"cd")]
    out = s.feed(b"yy\nz\n")
    assert [(x.start, x.overlong, x.length) for x in out] == [(106, True, 22), (129, False, 0)]
    assert s.consumed == 131 and s.read_pos == 131


def _as_lines(out) -> list[tuple]:
    lines = out.lines() if isinstance(out, LineBlock) else out
    return [(x.start, x.end, x.data, x.overlong, x.length) for x in lines]


@pytest.mark.parametrize("max_line_bytes", [1 << 20, 40, 10])
def test_feed_block_gives_the_lines_feed_gives_for_any_chunking(max_line_bytes):
    """The tail reads with ``feed_block``: complete lines as one block (cut in the helper), or
    ``feed``'s lines when one of them could be overlong. Either way, the same lines and offsets."""
    rng = random.Random(max_line_bytes)
    stream = b"".join(rng.choice([b"", b"short", b"x" * 30, b"y" * 300, b"  "]) + b"\n"
                      for _ in range(400)) + b"tail without newline"
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), 30))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        by_line, by_block = LineSplitter(max_line_bytes, 7), LineSplitter(max_line_bytes, 7)
        want, got, blocks = [], [], 0
        for chunk in chunks:
            want += _as_lines(by_line.feed(chunk))
            out = by_block.feed_block(chunk)
            blocks += isinstance(out, LineBlock)
            if isinstance(out, LineBlock):
                assert len(out) == len(out.lines()) and out.data.endswith(b"\n")
            got += _as_lines(out)
            assert by_block.consumed == by_line.consumed and by_block.read_pos == by_line.read_pos
        assert got == want
        assert _as_lines(by_block.flush()) == _as_lines(by_line.flush())
        assert (blocks > 0) == (max_line_bytes > 1000)  # blocks only where no line can be overlong


def test_many_appends_no_loss_no_duplicates(env):
    d, spool, _w, make = env
    f = d / "a.jsonl"
    t = make([str(f)], read_chunk_bytes=300)
    f.touch()
    lines = [audit_line(i) for i in range(300)]
    for i in range(0, 300, 7):
        with open(f, "ab") as fh:
            chunk = b"".join(lines[i:i + 7])
            fh.write(chunk[:50])
            fh.flush()
            fh.write(chunk[50:])
    wait_until(lambda: len(event_ids(spool)) == 300)
    assert event_ids(spool) == [str(uuid.UUID(line_id(x))) for x in lines]
    assert t.stats.duplicates == 0


def test_pipelined_chunks_never_commit_an_offset_past_a_refused_batch(env):
    """The tailer maps chunk k+1 while chunk k commits. When the spool refuses chunk k (twice here), chunk
    k+1 must not be committed before it (its offset would skip k's lines): every line lands once, in
    file order, and while k is refused the stored events are a prefix of the file."""
    d, spool, _writer, make = env
    real_append_many = spool.append_many
    state = {"calls": 0, "refused": 0, "seen_during_refusal": None}

    def append_many(batches):
        if any(b.events for b in batches):
            state["calls"] += 1
            if state["calls"] in (2, 3):  # the second chunk, and its first retry
                state["refused"] += 1
                state["seen_during_refusal"] = event_ids(spool)
                raise SpoolFull("test: spool full")
        return real_append_many(batches)

    spool.append_many = append_many
    f = d / "a.jsonl"
    lines = [audit_line(i) for i in range(40)]
    f.write_bytes(b"".join(lines))
    t = make([str(f)], read_chunk_bytes=len(lines[0]) * 3)  # about 3 lines per chunk: many chunks
    wait_until(lambda: len(event_ids(spool)) == 40)
    assert state["refused"] == 2
    during = state["seen_during_refusal"]
    assert during == [line_id(x) for x in lines[: len(during)]]  # a prefix, nothing skipped
    assert event_ids(spool) == [line_id(x) for x in lines]  # file order: k was not overtaken by k+1
    assert t.stats.duplicates == 0 and t.stats.spool_full == 2


def test_an_empty_exclude_pattern_is_refused_at_load():
    from agent.inputs.config import FileInputConfig, input_config

    with pytest.raises(ValueError, match="exclude: a pattern cannot be empty"):
        input_config(FileInputConfig, {"paths": ["/x"], "exclude": ["*.gz", ""]}, "tail")
