"""agent.spawn: a child on two pipes, started without forking the agent, reaped by the gevent loop."""

from __future__ import annotations

import os
import signal
import sys
import textwrap

import gevent

from agent.spawn import spawn

ECHO = textwrap.dedent("""
    import os, sys
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    data = sys.stdin.buffer.read()
    sys.stdout.buffer.write(repr(fds).encode() + b"|" + data[::-1])
    sys.stdout.flush()
    sys.exit(int(os.environ.get("SPAWN_TEST_EXIT", "0")))
""")


def test_the_child_talks_on_its_pipes_and_its_exit_code_is_collected(monkeypatch):
    monkeypatch.setenv("SPAWN_TEST_EXIT", "7")  # the agent's environment reaches the child
    child = spawn([sys.executable, "-c", ECHO])
    child.stdin.write(b"abc" * 100_000)
    child.stdin.close()
    out = child.stdout.read()
    assert out.endswith(b"|" + b"cba" * 100_000)
    assert child.wait(timeout=30) == 7
    assert child.returncode == 7
    assert not os.path.exists(f"/proc/{child.pid}")  # reaped: no zombie left behind


def test_the_child_inherits_no_descriptor_of_the_agent_beyond_0_1_2(tmp_path):
    """posix_spawn closes nothing itself: this holds because the agent's descriptors are close-on-exec,
    and those it inherited are made so. Open what the agent holds while it runs (a file, a socket, a
    pipe, a SQLite database) and one inheritable descriptor, as from a parent shell, first."""
    import socket
    import sqlite3

    held = [open(tmp_path / "f", "wb"), socket.socket()]  # noqa: SIM115 - closed below
    r, w = os.pipe()
    os.set_inheritable(r, True)  # as a descriptor the agent inherited
    db = sqlite3.connect(tmp_path / "spool.db")
    db.execute("CREATE TABLE t (x)")
    try:
        child = spawn([sys.executable, "-c", ECHO])
        child.stdin.close()
        fds = child.stdout.read().split(b"|")[0]
        # 3 is the directory listdir opened to list the others
        assert fds == b"[0, 1, 2, 3]"
        assert child.wait(timeout=30) == 0
    finally:
        for f in held:
            f.close()
        os.close(r)
        os.close(w)
        db.close()


def test_kill_and_wait_with_a_timeout():
    child = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    assert child.wait(timeout=0.2) is None  # still running
    child.kill()
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.kill()  # already gone: nothing to do, no error


def test_a_child_that_exits_at_once_is_still_reaped():
    """The exit watcher starts before the loop can run, so an instant exit is not missed."""
    children = [spawn([sys.executable, "-c", "raise SystemExit(3)"]) for _ in range(5)]
    gevent.sleep(0)
    assert [c.wait(timeout=30) for c in children] == [3] * 5


def test_a_missing_program_is_an_oserror_and_leaks_no_descriptor(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    try:
        spawn([str(tmp_path / "no-such-program")])
    except OSError:
        pass
    else:
        raise AssertionError("spawn of a missing program succeeded")
    assert set(os.listdir("/proc/self/fd")) == before
