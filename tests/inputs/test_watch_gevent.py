"""watchdog under gevent monkey patching, in an agent-like subprocess (patch_all first)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spool.store import Spool
from spool.types import SpoolError
from tests.inputs.helpers import audit_line

ROOT = Path(__file__).resolve().parents[2]


def _count(spool_path: Path) -> int:
    try:
        s = Spool.open_readonly(str(spool_path))
    except SpoolError:  # not created (or not migrated) yet by the subprocess
        return 0
    try:
        return len(s.read_after(0, 1_000_000))
    finally:
        s.close()


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _run(tmp_path: Path, scan_interval: str, watch: str):
    spool_path, stop, out = tmp_path / "spool.db", tmp_path / "stop", tmp_path / "out.json"
    log = tmp_path / "a.jsonl"
    log.write_bytes(audit_line(0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.inputs.harness_tail", str(spool_path), str(tmp_path / "*.jsonl"),
         scan_interval, watch, str(stop), str(out)], cwd=ROOT)
    try:
        _wait(lambda: _count(spool_path) == 1, 30, "the first line")
        n = 1
        # many appends over a few seconds; each must arrive (a missed wake-up would stall here forever,
        # since the stat scan runs only every hour in the watchdog variant)
        for burst in range(40):
            with open(log, "ab") as fh:
                for _ in range(5):
                    fh.write(audit_line(n))
                    n += 1
            if burst % 4 == 0:
                _wait(lambda n=n: _count(spool_path) == n, 20, f"{n} lines")
        _wait(lambda: _count(spool_path) == n, 20, f"all {n} lines")
        stop.touch()
        assert proc.wait(timeout=30) == 0
        return json.loads(out.read_text()), n
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.integration
@pytest.mark.parametrize("watch", ["1", "observer"])
def test_the_watch_alone_wakes_the_tailer_under_monkey_patching(tmp_path, watch):
    """Linux: the loop reads inotify itself, and no watchdog Observer (so none of its threads)
    exists. Where there is no inotify, watchdog's Observer watches (forced with ``INOTIFY = False``)."""
    facts, n = _run(tmp_path, "3600", watch)
    if watch == "1":
        assert facts["backend"] == "inotify" and facts["observer_created"] is False
        assert facts["events_seen"] >= facts["wakeups"]
    else:
        assert facts["backend"] == "watchdog"
        assert facts["events_seen"] >= 1
        # the observer is a real OS thread, built on the unpatched threading module
        assert facts["observer_native_id"] != facts["main_native_id"]
    assert facts["scans"] <= 1 + facts["wakeups"]  # no periodic scan ran: only the initial one + wake-ups
    # appends wake the file's reader directly: no glob scan per write (the spool's own writes in the
    # same directory match no pattern, so they do not cause scans either)
    assert facts["wakeups"] >= 10 and facts["scans"] <= 3
    assert facts["status"]["stats"]["ingested"] == n
    assert facts["status"]["files"][0]["lag_bytes"] == 0
    assert facts["ticks"] > 0


@pytest.mark.integration
def test_stat_scan_alone_delivers_everything(tmp_path):
    facts, n = _run(tmp_path, "0.1", "0")
    assert "wakeups" not in facts
    assert facts["status"]["stats"]["ingested"] == n and facts["status"]["stats"]["duplicates"] == 0


def test_watchdogs_reader_waits_after_events_so_the_kernel_merges_appends():
    """After a read that returned events (handled at once), the next read waits ``COALESCE_S``: a file
    appended to meanwhile then costs one inotify event instead of one per write."""
    from agent.inputs import watch

    calls: list[str] = []

    class FakeInotifyFD:
        def __init__(self) -> None:
            self.batches: list[list[int]] = [[1, 2], [], [3], [4]]

        def read_events(self, **kw: object) -> list[int]:
            calls.append("read")
            return self.batches.pop(0)

    watch._coalesce_reads(FakeInotifyFD, 0.002, lambda s: calls.append(f"sleep {s}"))
    watch._coalesce_reads(FakeInotifyFD, 0.002, lambda s: calls.append("twice"))  # wraps once only
    fd = FakeInotifyFD()
    assert [fd.read_events() for _ in range(4)] == [[1, 2], [], [3], [4]]
    assert calls == ["read", "sleep 0.002", "read", "read", "sleep 0.002", "read"]


def test_the_agents_private_watchdog_coalesces_its_inotify_reads():
    """Under monkey patching (the agent) watchdog is a private copy: the wait is on that copy, and
    with the real sleep (it runs in watchdog's OS thread)."""
    script = (
        "from gevent import monkey; monkey.patch_all()\n"
        "from agent.inputs import watch\n"
        "observer, _ = watch._watchdog_api()\n"
        "print(observer.__init__.__globals__['InotifyFD'].read_events.coalescing)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_watchdogs_own_stop_race_is_not_logged_as_an_error(caplog):
    """watchdog logs an ERROR when it stops an emitter whose thread is reading (its own race, hit on
    a clean shutdown); the agent drops that one message and keeps every other watchdog message."""
    import logging

    import agent.inputs.watch  # noqa: F401 - installs the filter

    wd_log = logging.getLogger("watchdog.observers.inotify")
    with caplog.at_level(logging.DEBUG, logger="watchdog.observers.inotify"):
        wd_log.error("InotifyEmitter.queue_events() called when the thread is inactive")
        wd_log.error("inotify watch limit reached")
    assert [r.getMessage() for r in caplog.records] == ["inotify watch limit reached"]
