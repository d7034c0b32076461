"""What a watchdog change wakes (TailInput._on_fs_change): one reader for an append, a glob scan for
files that came, went or moved. The periodic scan is an hour here, so only these decisions act."""

from __future__ import annotations

import os

import pytest

from agent.inputs.tail import TailInput
from tests.inputs.helpers import AUDIT_LINES, event_ids, open_spool, wait_until


@pytest.fixture
def tail(tmp_path):
    (tmp_path / "state").mkdir()
    spool, writer = open_spool(tmp_path / "state")
    real = tmp_path / "real"
    real.mkdir()
    (real / "target.jsonl").write_bytes(AUDIT_LINES[0])
    (tmp_path / "link.jsonl").symlink_to(real / "target.jsonl")
    (tmp_path / "b.jsonl").write_bytes(AUDIT_LINES[1])
    t = TailInput("tail", {"paths": [str(tmp_path / "*.jsonl")], "watch": False, "scan_interval": 3600},
                  writer, spool)
    t.start()
    wait_until(lambda: len(event_ids(spool)) == 2)
    yield t, tmp_path, spool
    t.stop()
    writer.stop()
    spool.close()


def _reader(t: TailInput, name: str):
    return next(r for r in t.readers.values() if os.path.basename(r.path) == name)


def _woken(t: TailInput) -> set[str]:
    return {os.path.basename(r.path) for r in t.readers.values() if r.wake.is_set()}


def _quiet(t: TailInput) -> None:
    wait_until(lambda: not _woken(t) and not t._scan_wake.is_set(), what="readers idle")


def test_an_append_wakes_only_that_reader_and_scans_nothing(tail):
    t, d, spool = tail
    _quiet(t)
    scans = t.scans
    with open(d / "b.jsonl", "ab") as fh:
        fh.write(AUDIT_LINES[2])
    t._on_fs_change({str(d / "b.jsonl"): False, str(d): False})  # watchdog also names the directory
    assert not t._scan_wake.is_set()
    wait_until(lambda: len(event_ids(spool)) == 3, what="the appended line")
    assert t.scans == scans


def test_a_write_to_a_symlink_target_wakes_the_symlinks_reader(tail):
    t, d, spool = tail
    _quiet(t)
    with open(d / "real" / "target.jsonl", "ab") as fh:
        fh.write(AUDIT_LINES[3])
    t._on_fs_change({str(d / "real" / "target.jsonl"): False})  # inotify names the target
    assert not t._scan_wake.is_set()
    wait_until(lambda: len(event_ids(spool)) == 3, what="the line written through the target")


@pytest.mark.parametrize("change", [
    {"new.jsonl": True},            # a file our glob matches came
    {"b.jsonl": True},              # a file we read was moved or deleted (rotation)
    {"c.jsonl": False},             # written, matches, but has no reader yet (missed creation)
    {"": True},                     # the watched directory itself changed
])
def test_files_that_come_go_or_move_cause_a_scan(tail, change):
    t, d, _spool = tail
    t._watcher = type("W", (), {"directories": frozenset({str(d)})})()  # what set_directories chose
    t._wanted_dirs = {str(d)}  # from what the scan asked it (TailInput.scan)
    try:
        _quiet(t)
        t._on_fs_change({str(d / k) if k else str(d): v for k, v in change.items()})
        assert t._scan_wake.is_set()
    finally:
        t._watcher = None


def test_other_files_in_the_directory_only_wake_rotated_readers(tail):
    t, d, _spool = tail
    _quiet(t)
    t._on_fs_change({str(d / "spool.db-wal"): False, str(d / "unrelated.log"): True})
    assert not t._scan_wake.is_set() and not _woken(t)
    rotated = _reader(t, "b.jsonl")
    rotated.gone_at = 1.0  # as a scan marks a file that left its path
    t._paths_cache = None
    t._on_fs_change({str(d / "b.jsonl.1"): False})  # a late write to the renamed file
    assert rotated.wake.is_set() and not t._scan_wake.is_set()
