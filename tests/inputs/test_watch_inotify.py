"""The loop's own inotify reader (agent.inputs.watch._InotifyWatches), on real directories (Linux)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest

from agent.inputs import watch

API = watch._inotify_api()
pytestmark = pytest.mark.skipif(API is None, reason="inotify is Linux-only (the Observer test covers others)")


class Collect:
    def __init__(self) -> None:
        self.changes: dict[str, bool] = {}
        self.calls = 0

    def __call__(self, changes: dict[str, bool]) -> None:
        self.calls += 1
        for path, structural in changes.items():
            self.changes[path] = self.changes.get(path, False) or structural

    def wait_for(self, path: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while path not in self.changes:
            if time.monotonic() > deadline:
                raise AssertionError(f"no event for {path}; saw {self.changes}")
            gevent.sleep(0.005)
        return self.changes[path]


@pytest.fixture
def watches():
    made: list[watch._InotifyWatches] = []

    def make(on_events):
        w = watch._InotifyWatches(API, on_events)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_an_append_is_a_content_change_and_a_new_deleted_or_moved_file_is_structural(tmp_path, watches):
    seen = Collect()
    w = watches(seen)
    w.add(str(tmp_path))
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"{}\n")
    assert seen.wait_for(str(log)) is True  # created
    seen.changes.clear()
    with open(log, "ab") as fh:
        fh.write(b"{}\n")
    assert seen.wait_for(str(log)) is False  # only its content
    seen.changes.clear()
    os.rename(log, tmp_path / "a.jsonl.1")
    assert seen.wait_for(str(log)) is True and seen.wait_for(str(tmp_path / "a.jsonl.1")) is True
    seen.changes.clear()
    os.unlink(tmp_path / "a.jsonl.1")
    assert seen.wait_for(str(tmp_path / "a.jsonl.1")) is True


def test_a_deleted_directory_is_structural_and_is_no_longer_watched(tmp_path, watches):
    seen = Collect()
    w = watches(seen)
    d = tmp_path / "logs"
    d.mkdir()
    w.add(str(d))
    assert w.directories == {str(d)}
    d.rmdir()
    assert seen.wait_for(str(d)) is True
    deadline = time.monotonic() + 5
    while w.directories and time.monotonic() < deadline:  # IN_IGNORED follows IN_DELETE_SELF
        gevent.sleep(0.005)
    assert w.directories == frozenset()  # the next scan's set_directories watches it again if it returns


def test_both_names_of_a_symlinked_directory_see_its_files(tmp_path, watches):
    seen = Collect()
    w = watches(seen)
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    w.add(str(tmp_path / "link"))
    w.add(str(real))  # the kernel gives both names one watch descriptor
    (real / "x.jsonl").write_bytes(b"{}\n")
    assert seen.wait_for(str(real / "x.jsonl")) is True
    assert seen.wait_for(str(tmp_path / "link" / "x.jsonl")) is True
    w.remove(str(real))  # the other name keeps the watch
    seen.changes.clear()
    (real / "y.jsonl").write_bytes(b"{}\n")
    assert seen.wait_for(str(tmp_path / "link" / "y.jsonl")) is True
    assert str(real / "y.jsonl") not in seen.changes


def test_a_queue_overflow_reports_every_watched_directory_as_structural(tmp_path, watches):
    w = watches(Collect())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    w.add(str(tmp_path / "a"))
    w.add(str(tmp_path / "b"))
    overflow = struct.pack("iIII", -1, API.InotifyConstants.IN_Q_OVERFLOW, 0, 0)
    assert w._changes(overflow) == {str(tmp_path / "a"): True, str(tmp_path / "b"): True}


def test_after_events_the_descriptor_rests_for_the_coalescing_interval(tmp_path, watches):
    states: list[tuple[bool, bool]] = []
    seen = Collect()

    def on_events(changes: dict[str, bool]) -> None:
        states.append((w._io.active, w._timer.active))  # as the tailer's callback finds them
        seen(changes)

    w = watches(on_events)
    w.add(str(tmp_path))
    assert w._io.active and not w._timer.active
    (tmp_path / "a").write_bytes(b"x")
    seen.wait_for(str(tmp_path / "a"))
    assert states[0] == (False, True)  # not watched: the kernel merges appends meanwhile
    deadline = time.monotonic() + 5
    while not w._io.active and time.monotonic() < deadline:
        gevent.sleep(0.001)
    assert w._io.active and not w._timer.active  # watched again after COALESCE_S


def test_appends_during_the_rest_are_merged_into_one_read(tmp_path, watches):
    seen = Collect()
    w = watches(seen)
    w.add(str(tmp_path))
    log = tmp_path / "a"
    log.write_bytes(b"x")
    seen.wait_for(str(log))
    calls = seen.calls
    with open(log, "ab") as fh:  # no gevent switch between these writes: the reader cannot run
        for _ in range(50):
            fh.write(b"x")
            fh.flush()
    deadline = time.monotonic() + 5
    while seen.calls == calls and time.monotonic() < deadline:
        gevent.sleep(0.005)
    assert seen.calls == calls + 1  # 50 IN_MODIFY events of one file, identical: merged by the kernel
    assert w.events_seen < 50


def test_the_descriptor_is_non_blocking_not_inherited_and_closed_with_the_watches(tmp_path):
    w = watch._InotifyWatches(API, Collect())
    fd = w.fd
    assert os.get_blocking(fd) is False
    assert os.get_inheritable(fd) is False  # the spawned mapping helper must not hold it
    child = subprocess.run([sys.executable, "-c", f"import os; os.fstat({fd})"], close_fds=False,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode != 0 and "Bad file descriptor" in child.stderr
    w.add(str(tmp_path))
    w.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_directory_watcher_uses_inotify_here_and_the_observer_when_told(tmp_path, monkeypatch):
    got = Collect()
    dw = watch.DirectoryWatcher(got)
    try:
        assert dw.backend == "inotify"
        dw.set_directories({str(tmp_path), str(tmp_path / "missing")})
        assert dw.directories == {str(tmp_path)}
        (tmp_path / "f").write_bytes(b"x")
        assert got.wait_for(str(tmp_path / "f")) is True
        assert dw.wakeups >= 1 and dw.events_seen >= 1
        dw.set_directories(set())
        assert dw.directories == frozenset()
    finally:
        dw.close()
    monkeypatch.setattr(watch, "INOTIFY", False)
    dw = watch.DirectoryWatcher(Collect())
    try:
        assert dw.backend == "watchdog"
    finally:
        dw.close()


def test_inotify_that_cannot_start_falls_back_to_the_observer(monkeypatch):
    class NoInstances:
        InotifyConstants = API.InotifyConstants

        @staticmethod
        def inotify_init() -> int:
            return -1  # as with fs.inotify.max_user_instances reached (errno EMFILE)

    monkeypatch.setattr(watch, "_inotify_api", lambda: NoInstances)
    dw = watch.DirectoryWatcher(Collect())
    try:
        assert dw.backend == "watchdog"
    finally:
        dw.close()


def test_paths_in_changes_are_strings_even_for_undecodable_names(tmp_path, watches):
    seen = Collect()
    w = watches(seen)
    w.add(str(tmp_path))
    name = os.fsdecode(b"bad-\xff.jsonl")
    Path(tmp_path, name).write_bytes(b"x")
    assert seen.wait_for(os.path.join(str(tmp_path), name)) is True


def test_a_renamed_directory_is_no_longer_watched_and_its_replacement_is(tmp_path, watches):
    """Rotation by directory (mv logs logs.old; mkdir logs): the kernel keeps watching the renamed
    directory, whose events would then be reported under the old name, and the new directory would
    go unwatched. The watch is dropped on IN_MOVE_SELF; the scan it causes watches the new one."""
    seen = Collect()
    w = watches(seen)
    logs = tmp_path / "logs"
    logs.mkdir()
    w.add(str(logs))
    os.rename(logs, tmp_path / "logs.old")
    logs.mkdir()
    assert seen.wait_for(str(logs)) is True  # structural: the tailer scans
    assert w.directories == frozenset()
    w.add(str(logs))  # what the scan's set_directories does
    seen.changes.clear()
    (tmp_path / "logs.old" / "stale.log").write_bytes(b"x")
    (logs / "new.log").write_bytes(b"x")
    assert seen.wait_for(str(logs / "new.log")) is True
    assert str(logs / "stale.log") not in seen.changes  # the old directory's files are not named as ours
