"""Start a child process on two pipes without forking the agent: ``os.posix_spawn``, and a gevent child
watcher for its exit.

Why not ``gevent.subprocess.Popen``: it forks the agent with ``os.fork`` and runs Python in the child
until ``exec`` (closing descriptors, dup2s, gevent's after-fork re-init). With the agent at 60-70 MiB
that window lasts long enough (~10-20 ms) that every page either process writes meanwhile is copied,
and the child's /proc shows ~40 MiB of the agent's pages as its own (bench/delivery.py's peak-RSS
readings caught it about one run in three). glibc's ``posix_spawn`` runs the child in the agent's
address space until ``exec`` (``clone(CLONE_VM | CLONE_VFORK)``): nothing is copied, and the parent
resumes once the child has exec'd or failed to.

Descriptors: ``posix_spawn`` cannot close "every other descriptor" as ``close_fds=True`` does (the
``POSIX_SPAWN_CLOSEFROM`` action needs Python 3.13). Every descriptor the agent opens is close-on-exec
already (Python's own since PEP 446; SQLite and libev open theirs with ``O_CLOEXEC``); what it may have
inherited from whoever started it (a shell, a test runner) is marked close-on-exec before each spawn.
So the child starts with 0 and 1 on the pipes and 2 shared with the agent, and nothing else
(tests/test_spawn.py lists the child's /proc/<pid>/fd).
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any


class SpawnedChild:
    """The agent's end of a child started by ``spawn``: ``stdin`` (write), ``stdout`` (read), both
    gevent file objects, so reading and writing yield to the loop; ``wait``, ``kill``, ``returncode``."""

    def __init__(self, pid: int, stdin: Any, stdout: Any):
        import gevent.event

        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self._exited = gevent.event.Event()

    def _on_exit(self, watcher: Any) -> None:
        watcher.stop()
        self.returncode = os.waitstatus_to_exitcode(watcher.rstatus)
        self._exited.set()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (negative: killed by that signal), or None if still running after ``timeout``."""
        self._exited.wait(timeout)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited; the watcher reaps it
                os.kill(self.pid, signal.SIGKILL)


def spawn(argv: list[str]) -> SpawnedChild:
    """Run ``argv`` (``argv[0]`` an absolute path) with stdin and stdout on new pipes; stderr and the
    environment are the agent's. ``OSError`` if it cannot be started."""
    import gevent
    from gevent.fileobject import FileObjectPosix

    loop = gevent.get_hub().loop
    loop.install_sigchld()
    _close_inherited_on_exec()
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        # dup2 onto 0 and 1 clears close-on-exec there; the pipes' own descriptors close at exec.
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_read, 0), (os.POSIX_SPAWN_DUP2, out_write, 1)])
    except BaseException:
        os.close(in_write)
        os.close(out_read)
        raise
    finally:
        os.close(in_read)
        os.close(out_write)
    child = SpawnedChild(pid, FileObjectPosix(in_write, "wb"), FileObjectPosix(out_read, "rb"))
    watcher = loop.child(pid, ref=False)
    watcher.start(child._on_exit, watcher)
    return child


def _close_inherited_on_exec() -> None:
    """Mark every descriptor above 2 close-on-exec (those the agent inherited are not)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # no /proc (a bare chroot): the child may then inherit what the agent inherited
        return
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory listdir used, closed by now
