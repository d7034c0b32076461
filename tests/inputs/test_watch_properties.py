"""Property tests of the file tail's change watching (agent/inputs/watch.py and how agent/inputs/tail.py
acts on what it reports), against docs/inputs.md "Watching for changes".

A real ``TailInput`` with ``watch = true`` tails two directories (``a/*.log``, ``b/*.log``) of a
temporary tree into a real spool, with a one-hour ``scan_interval`` and ``rotate_wait``: only the
watch can wake the tailer, so a missed or misread event shows as a line that never arrives. The rules
play writers and logrotate on the tree: create, append (one line, or a burst of single-line writes
that the kernel coalesces), rename within and across directories (rotation, renames onto an existing
file), delete (the writer keeps writing to the deleted file), truncate and write again, symlinks to
files in a third, unwatched directory (created, retargeted by an atomic rename), a watched directory
renamed or deleted and made again in one step (rotation by directory), replaced by a symlink to
another, removed, and a queue overflow provoked for real (more than ``max_queued_events`` events
while the loop cannot read, optionally with a directory replaced meanwhile, so the kernel drops its
``IN_DELETE_SELF``/``IN_IGNORED``; once an example, as its 16k events take ~0.2 s).

Where no event can tell the tailer, the test runs one scan, as ``scan_interval`` would (docs/inputs.md:
"Only a scan sees a change that no watched directory reports"), and checks what that scan does:
making a missing pattern directory or retargeting a symlinked one (the parent is not watched); a
dangling symlink in a pattern directory whose target came (no event names the link); and deleting a
pattern directory that is empty while a file deleted from it is still open (the test keeps every file
it made open): the kernel holds back ``IN_DELETE_SELF`` until that file is closed and sends nothing
else, so the dead watch is listed until a scan drops it. A non-empty one deleted so is in the
properties: its files' ``IN_DELETE`` must make the watcher notice.

After every step the test waits (on a condition; the timeout only catches a miss) until the inotify
queue is empty, no scan is pending and every file the model tracks has a reader that has seen its
current size and mtime and committed what it read. Then:

1. the spool holds exactly the ids of the lines of the files the globs matched (now or since the
   tailer first saw them: a rotated or deleted file is drained), each once (``duplicates`` 0);
2. there is one reader per such file and none for a file the globs never matched; a live reader's
   path matches a glob and is that file;
3. the watched directories become exactly the existing ones of ``_watch_dirs()``, and the watch
   table the kernel's (the ``inotify wd:`` lines of the descriptor's /proc fdinfo): no watch leaked,
   none the kernel dropped kept;
4. nothing raised into the loop or was logged at ERROR, and ``errors`` stays 0.

At the end of each example the tailer is stopped: every inotify descriptor and file it opened is
closed. Deterministic reproductions of the defects the machine found follow it (they fail until fixed).
Shrinking is off: a failing example waits out the catch-up timeout at each step that misses; the
deterministic tests are the minimal cases.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import fnmatch
import json
import logging
import os
import shutil
import tempfile
import termios
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gevent
import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agent.inputs import watch
from agent.inputs.file_identity import file_key
from agent.inputs.tail import TailInput
from spool.store import Spool
from spool.writer import SpoolWriter
from tests.inputs.helpers import audit_line, wait_until

pytestmark = pytest.mark.skipif(watch._inotify_api() is None, reason="inotify is Linux-only")

NAME = "tail"
HOUR = 3600.0
CATCH_UP_S = 8.0  # only a missed wake-up (or a hang) reaches it
WATCHED = ("a", "b")  # the pattern directories: <root>/a/*.log, <root>/b/*.log
DIRS = ("a", "b", "c")  # c: not matched (symlink targets, renames out of sight)
NAMES = ("x.log", "y.log", "z.txt", "x.log.1")
OVERFLOW_WRITES = 8300  # x2 files: more events than the default max_queued_events (16384)


@dataclass
class MFile:
    """One inode the test made: its writer's descriptor, a read descriptor, where it is."""

    key: str
    wfd: int | None  # the writer's O_APPEND descriptor (None: the writer is done with it)
    rfd: int  # the test reads the content through it (deleted files included)
    path: str | None  # real path now (None: deleted)
    home: str  # the real directory it is (or was last) in


def inotify_wds(fd: int) -> set[int]:
    """The watch descriptors the kernel holds on inotify descriptor ``fd`` (fdinfo prints them in hex)."""
    with open(f"/proc/self/fdinfo/{fd}") as fh:
        return {int(line.split()[1].split(":")[1], 16) for line in fh if line.startswith("inotify wd:")}


def pending_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


def our_fds(root: str) -> set[int]:
    """Open descriptors that are an inotify instance or a file under ``root``."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target == "anon_inode:inotify" or target.startswith(root + "/"):
                out.add(int(name))
    return out


class Errors(logging.Handler):
    """Records ERROR (and worse) log records of the agent."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class WatchMachine(RuleBasedStateMachine):
    """Writers, logrotate and directory changes against a tailer only the watch can wake."""

    def __init__(self) -> None:
        super().__init__()
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="watch-sm-"))
        self.state = tempfile.mkdtemp(prefix="watch-sm-spool-")
        for d in DIRS:
            os.mkdir(self.p(d))
        self.spool = Spool(os.path.join(self.state, "spool.db"), durability="normal")
        self.writer = SpoolWriter(self.spool).start()
        self.files: list[MFile] = []
        self.n = 0
        self.renamed = 0
        self.tracked: set[str] = set()  # keys the globs matched while the tailer ran
        self.expected: set[str] = set()
        self.baseline = our_fds(self.root)
        self.errors = Errors()
        logging.getLogger("agent").addHandler(self.errors)
        self.hub_errors: list[Any] = []
        hub = gevent.get_hub()
        self._handle_error = hub.handle_error

        def handle_error(context: Any, kind: Any, value: Any, tb: Any) -> None:
            self.hub_errors.append((context, kind, value))
            self._handle_error(context, kind, value, tb)

        hub.handle_error = handle_error
        self.tail = TailInput(NAME, {"paths": [self.p(d, "*.log") for d in WATCHED], "watch": True,
                                     "scan_interval": HOUR, "rotate_wait": HOUR}, self.writer, self.spool)
        self.unsettled = ""
        self.dangling: dict[str, str] = {}  # dangling symlinks at the last check (link -> target)
        self.overflowed = False

    def p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- setup / teardown -------------------------------------------------------------------------

    @initialize(names=st.lists(st.tuples(st.sampled_from(DIRS), st.sampled_from(NAMES)), max_size=3))
    def setup(self, names: list[tuple[str, str]]) -> None:
        for d, name in names:
            self._create(d, name, 1)
        self.tail.start()
        assert self.tail._watcher is not None and self.tail._watcher.backend == "inotify"

    def teardown(self) -> None:
        try:
            self.tail.stop()
            assert self.tail._watcher is None
            leaked = our_fds(self.root) - self.baseline - self._model_fds()
            assert not leaked, f"descriptors left open by the stopped tailer: {leaked}"
        finally:
            gevent.get_hub().handle_error = self._handle_error
            logging.getLogger("agent").removeHandler(self.errors)
            for f in self.files:
                for fd in (f.wfd, f.rfd):
                    if fd is not None:
                        os.close(fd)
            self.writer.stop()
            self.spool.close()
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.state, ignore_errors=True)

    def _model_fds(self) -> set[int]:
        return {fd for f in self.files for fd in (f.wfd, f.rfd) if fd is not None}

    # -- the writers' side --------------------------------------------------------------------------

    def _line(self) -> bytes:
        self.n += 1
        return audit_line(self.n)

    def _create(self, d: str, name: str, lines: int) -> MFile | None:
        path = os.path.realpath(self.p(d, name))  # a/ may be a symlink to another directory
        if os.path.lexists(path) or not os.path.isdir(os.path.dirname(path)):
            return None
        wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        rfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        f = MFile(file_key(os.fstat(rfd)), wfd, rfd, path, os.path.dirname(path))
        self.files.append(f)
        for _ in range(lines):
            os.write(wfd, self._line())
        return f

    def _matched(self) -> dict[str, str]:
        """Reference glob: key -> a path of each regular file (symlinks followed) ``<dir>/*.log``
        matches for a pattern directory."""
        keys: dict[str, str] = {}
        for d in WATCHED:
            with contextlib.suppress(OSError):
                for name in sorted(os.listdir(self.p(d))):
                    if name.startswith(".") or not fnmatch.fnmatchcase(name, "*.log"):
                        continue
                    with contextlib.suppress(OSError):
                        s = os.stat(self.p(d, name))
                        if os.path.isfile(self.p(d, name)):
                            keys.setdefault(file_key(s), self.p(d, name))
        return keys

    def _writable(self) -> list[MFile]:
        """Files whose writes the watch reports: matched now, or (renamed or deleted) still in or
        from a real pattern directory (its events name a path there)."""
        matched = self._matched()
        real = {self.p(d) for d in WATCHED if os.path.isdir(self.p(d)) and not os.path.islink(self.p(d))}
        return [f for f in self.files if f.wfd is not None and (f.key in matched or f.home in real)]

    def _by_path(self, path: str) -> MFile | None:
        return next((f for f in self.files if f.path == path), None)

    def _retire_dir(self, real: str) -> None:
        """The writers are done with every file in (or deleted from) directory ``real``."""
        for f in self.files:
            if f.home == real and f.wfd is not None:
                os.close(f.wfd)
                f.wfd = None

    def _moved_dir(self, old: str, new: str | None) -> None:
        self._retire_dir(old)
        for f in self.files:
            if f.home == old:
                f.home = new if new is not None else old + "#gone"
                if f.path is not None:
                    f.path = None if new is None else os.path.join(new, os.path.basename(f.path))

    def _scan_tick(self) -> None:
        """What ``scan_interval`` would do (for changes no watched directory reports)."""
        self.tail._scan_wake.set()

    # -- rules: files -------------------------------------------------------------------------------

    @rule(d=st.sampled_from(DIRS), name=st.sampled_from(NAMES), lines=st.integers(0, 2))
    def create(self, d: str, name: str, lines: int) -> None:
        self._create(d, name, lines)

    @precondition(lambda self: self._writable())
    @rule(data=st.data(), lines=st.integers(1, 3))
    def append(self, data: st.DataObject, lines: int) -> None:
        f = data.draw(st.sampled_from(self._writable()))
        assert f.wfd is not None
        os.write(f.wfd, b"".join(self._line() for _ in range(lines)))
        if f.path is None:
            event("a late write to a deleted file")

    @precondition(lambda self: self._writable())
    @rule(data=st.data())
    def burst(self, data: st.DataObject) -> None:
        """Many single-line writes with no switch to the loop: the kernel merges their IN_MODIFY."""
        f = data.draw(st.sampled_from(self._writable()))
        assert f.wfd is not None
        for _ in range(40):
            os.write(f.wfd, self._line())

    @precondition(lambda self: any(f.path is not None for f in self.files))
    @rule(data=st.data(), d=st.sampled_from(DIRS), name=st.sampled_from(NAMES))
    def rename(self, data: st.DataObject, d: str, name: str) -> None:
        f = data.draw(st.sampled_from([f for f in self.files if f.path is not None]))
        assert f.path is not None
        dest = os.path.realpath(self.p(d, name))
        if dest == f.path or not os.path.isdir(os.path.dirname(dest)) or os.path.isdir(dest):
            return
        replaced = self._by_path(dest)
        os.rename(f.path, dest)
        if replaced is not None:
            event("renamed onto an existing file")
            replaced.path = None
        f.path, f.home = dest, os.path.dirname(dest)

    @precondition(lambda self: any(f.path is not None for f in self.files))
    @rule(data=st.data(), recreate=st.booleans())
    def delete(self, data: st.DataObject, recreate: bool) -> None:
        """rm (the writer may keep writing to the deleted file), and maybe a new file at the path."""
        f = data.draw(st.sampled_from([f for f in self.files if f.path is not None]))
        assert f.path is not None
        path, f.path = f.path, None
        os.unlink(path)
        if recreate:
            d = os.path.dirname(path)
            self._create(os.path.relpath(d, self.root), os.path.basename(path), 1)

    @precondition(lambda self: self._writable())
    @rule(data=st.data(), lines=st.integers(0, 3))
    def truncate_and_write(self, data: st.DataObject, lines: int) -> None:
        f = data.draw(st.sampled_from(self._writable()))
        assert f.wfd is not None
        os.ftruncate(f.wfd, 0)
        if lines:
            os.write(f.wfd, b"".join(self._line() for _ in range(lines)))

    @precondition(lambda self: any(f.path is not None and f.home == self.p("c") for f in self.files))
    @rule(data=st.data(), d=st.sampled_from(WATCHED), name=st.sampled_from(("l.log", "m.log")))
    def symlink_file(self, data: st.DataObject, d: str, name: str) -> None:
        """A symlink in a pattern directory to a file in c/, made or retargeted by an atomic rename."""
        target = data.draw(st.sampled_from([f for f in self.files if f.path is not None
                                            and f.home == self.p("c")]))
        assert target.path is not None
        link = self.p(d, name)
        if not os.path.isdir(self.p(d)) or (os.path.lexists(link) and not os.path.islink(link)):
            return
        tmp = self.p(d, ".tmp-link")
        os.symlink(target.path, tmp)
        os.rename(tmp, link)

    # -- rules: directories -------------------------------------------------------------------------

    @precondition(lambda self: any(os.path.isdir(self.p(d)) and not os.path.islink(self.p(d))
                                   for d in WATCHED))
    @rule(d=st.sampled_from(WATCHED), how=st.sampled_from(("rename", "delete")),
          then=st.sampled_from(("mkdir", "symlink-c", "symlink-old")), lines=st.integers(0, 2))
    def replace_dir(self, d: str, how: str, then: str, lines: int) -> None:
        """Rotation by directory in one step: ``mv d d.old`` (or ``rm -r d``), then a new directory,
        or a symlink to another, at the path; maybe a file in it."""
        path = self.p(d)
        if not os.path.isdir(path) or os.path.islink(path):
            return
        self.renamed += 1
        old = self.p(f"old-{self.renamed}")
        silent = how == "delete" and self._silent_rmdir(path)
        if how == "rename":
            os.rename(path, old)
            self._moved_dir(path, old)
        else:
            shutil.rmtree(path)
            self._moved_dir(path, None)
            for f in self.files:
                if f.path is not None and f.path.startswith(path + "/"):
                    f.path = None
        if then == "mkdir" or (then == "symlink-old" and how == "delete"):
            os.mkdir(path)
        else:
            os.symlink(old if then == "symlink-old" else self.p("c"), path)
            event("a watched directory replaced by a symlink")
        if lines:
            self._create(d, "x.log", lines)
        if silent:
            self._scan_tick()

    @precondition(lambda self: any(os.path.isdir(self.p(d)) and not os.path.islink(self.p(d))
                                   for d in WATCHED))
    @rule(d=st.sampled_from(WATCHED))
    def remove_dir(self, d: str) -> None:
        path = self.p(d)
        if not os.path.isdir(path) or os.path.islink(path):
            return
        silent = self._silent_rmdir(path)
        shutil.rmtree(path)
        for f in self.files:
            if f.path is not None and f.path.startswith(path + "/"):
                f.path = None
        self._moved_dir(path, None)
        if silent:
            self._scan_tick()

    def _silent_rmdir(self, path: str) -> bool:
        """Whether deleting directory ``path`` now reports nothing at all: it is empty (no IN_DELETE of
        a file in it) and a file deleted from it is still open (the test holds every file it made
        open), which keeps the kernel's IN_DELETE_SELF until that file is closed."""
        if os.listdir(path) or not any(f.home == path and f.path is None for f in self.files):
            return False
        event("an empty watched directory deleted while a deleted file of it is open")
        return True

    @precondition(lambda self: any(not os.path.lexists(self.p(d)) for d in WATCHED))
    @rule(d=st.sampled_from(WATCHED), lines=st.integers(0, 2))
    def make_dir(self, d: str, lines: int) -> None:
        """A missing pattern directory made (its parent is not watched: the next scan watches it)."""
        if os.path.lexists(self.p(d)):
            return
        os.mkdir(self.p(d))
        if lines:
            self._create(d, "x.log", lines)
        self._scan_tick()

    @precondition(lambda self: any(os.path.islink(self.p(d)) for d in WATCHED))
    @rule(d=st.sampled_from(WATCHED))
    def retarget_dir_symlink(self, d: str) -> None:
        """A symlinked pattern directory pointed at c/ (or back): only a scan can see it."""
        path = self.p(d)
        if not os.path.islink(path):
            return
        tmp = self.p(".tmp-dir-link")
        os.symlink(self.p("c"), tmp)
        os.rename(tmp, path)
        self._scan_tick()

    @precondition(lambda self: not self.overflowed)
    @rule(replace=st.sampled_from((None, *WATCHED)))
    def overflow(self, replace: str | None) -> None:
        """More events than the kernel queues while the loop cannot read (no switch in this step): the
        kernel drops the rest and queues IN_Q_OVERFLOW. Maybe a watched directory is replaced after
        the queue filled, so its IN_DELETE_SELF / IN_IGNORED are among the dropped. Once an example:
        the 16k events take ~0.2 s."""
        self.overflowed = True
        d = next((x for x in WATCHED if os.path.isdir(self.p(x)) and not os.path.islink(self.p(x))), None)
        if d is None:
            return
        noise = []
        for name in ("n1.txt", "n2.txt"):
            path = self.p(d, name)
            noise.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644))
        try:
            for _ in range(OVERFLOW_WRITES):  # alternating files: no two queued events alike
                os.write(noise[0], b"n")
                os.write(noise[1], b"n")
        finally:
            for fd in noise:
                os.close(fd)
        if replace is not None and os.path.isdir(self.p(replace)) and not os.path.islink(self.p(replace)):
            event("a watched directory replaced during a queue overflow")
            self.replace_dir(replace, "rename", "mkdir", 1)

    # -- checks -------------------------------------------------------------------------------------

    def _dangling_links(self) -> dict[str, str]:
        """Symlinks in the pattern directories whose target does not exist: link -> target."""
        out = {}
        for d in WATCHED:
            with contextlib.suppress(OSError):
                for name in os.listdir(self.p(d)):
                    link = self.p(d, name)
                    if os.path.islink(link) and not os.path.exists(link):
                        out[link] = os.readlink(link)
        return out

    def _tick_for_link_targets(self) -> None:
        """A dangling symlink in a pattern directory whose target came (created or renamed there in an
        unwatched directory, or in a watched one under a name no glob matches) is reported by no event
        that names the link: only a scan sees it (a limitation, see the module docstring)."""
        for link, target in self.dangling.items():
            with contextlib.suppress(OSError):
                if os.readlink(link) == target and os.path.exists(link):
                    event("a dangling symlink's target came")
                    self._scan_tick()
                    return

    def _settled(self) -> bool:
        tail, w = self.tail, self.tail._watcher
        assert w is not None
        inotify = w._watches
        self.unsettled = ""
        if not tail.scans or pending_bytes(inotify.fd) or tail._scan_wake.is_set():
            self.unsettled = "inotify events or a scan pending"
            return False
        # The kernel queues IN_IGNORED of a deleted directory's watch once it frees the watch, which
        # may be after the step: wait for the watches to be the ones wanted (a stale one stays so).
        want = {d for d in tail._watch_dirs() if os.path.isdir(d)}
        if w.directories != want:
            self.unsettled = f"watching {sorted(w.directories)}, should watch {sorted(want)}"
            return False
        if inotify_wds(inotify.fd) != set(inotify._dirs):
            self.unsettled = f"the kernel watches {inotify_wds(inotify.fd)}, the table {inotify._dirs}"
            return False
        for f in self.files:
            if f.key not in self.tracked:
                continue
            r = tail.readers.get(f.key)
            if r is None or r.closed:
                self.unsettled = f"no open reader for {f.path or f.home} ({f.key})"
                return False
            s = os.fstat(f.rfd)
            if r.last_stamp != (s.st_size, s.st_mtime_ns):
                self.unsettled = (f"the reader of {f.path or 'a deleted file in ' + f.home} saw "
                                  f"{r.last_stamp}, the file is {(s.st_size, s.st_mtime_ns)}")
                return False
            if r.paused or r._inflight is not None or r._mapping:
                self.unsettled = f"{f.path}: a commit under way"
                return False
        return True

    def _content_ids(self, f: MFile) -> set[str]:
        size = os.fstat(f.rfd).st_size
        data = os.pread(f.rfd, size, 0) if size else b""
        return {json.loads(x)["id"] for x in data.split(b"\n")[:-1] if x}

    @invariant()
    def watch_delivers_every_line_once(self) -> None:
        tail = self.tail
        self._tick_for_link_targets()
        matched = self._matched()
        self.tracked |= set(matched)
        deadline = time.monotonic() + CATCH_UP_S
        while not self._settled():  # polled finely: most steps settle within milliseconds
            assert time.monotonic() < deadline, f"timed out waiting for the tailer: {self.unsettled}"
            gevent.sleep(0.005)
        self.dangling = self._dangling_links()
        for f in self.files:
            if f.key in self.tracked:
                self.expected |= self._content_ids(f)
        # 1. every line of a matched file once
        rows = self.spool.read_after(0, 1_000_000)
        ids = [str(uuid.UUID(bytes=r.event_id)) for r in rows]
        missing, extra = self.expected - set(ids), set(ids) - self.expected
        assert not missing and not extra, f"missing {sorted(missing)}, unexpected {sorted(extra)}"
        assert tail.stats.duplicates == 0 and tail.stats.ingested == len(ids)
        # 2. one reader per file the globs matched, none for others; live readers are where they say
        assert set(tail.readers) == self.tracked
        for key, r in tail.readers.items():
            if r.gone_at is None:
                assert key in matched, f"live reader of {r.path} ({key}), which no glob matches"
                assert tail._matches(os.path.abspath(r.path))
                assert file_key(os.stat(r.path)) == key
            else:
                assert key not in matched, f"{r.path} is matched but its reader is draining"
        # 3. the watched directories and the kernel's watches (equal, or _settled timed out)
        w = tail._watcher
        assert w is not None
        inotify = w._watches
        assert {d for names in inotify._dirs.values() for d in names} == set(inotify._wds)
        assert all(inotify._wds[d] == wd for wd, names in inotify._dirs.items() for d in names)
        # 4. nothing raised
        assert tail.stats.errors == 0
        assert not self.hub_errors, self.hub_errors
        assert not self.errors.records, [r.getMessage() for r in self.errors.records]


WatchMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    database=None,  # nothing written into the repository
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # see the module docstring
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestWatchStateMachine = WatchMachine.TestCase


# -- defects found by the machine, reproduced deterministically ---------------------------------------


@contextlib.contextmanager
def _tailing(pattern_dirs: list[str], **cfg: Any) -> Iterator[tuple[TailInput, Spool]]:
    """A started tailer of ``<dir>/*.log`` for each directory (watch on, hour-long scan interval)."""
    with tempfile.TemporaryDirectory(prefix="watch-def-") as state:
        spool = Spool(os.path.join(state, "spool.db"), durability="normal")
        writer = SpoolWriter(spool).start()
        tail = TailInput(NAME, {"paths": [os.path.join(d, "*.log") for d in pattern_dirs], "watch": True,
                                "scan_interval": HOUR, "rotate_wait": HOUR, **cfg}, writer, spool)
        tail.start()
        try:
            wait_until(lambda: tail.scans >= 1, what="the first scan")
            yield tail, spool
        finally:
            tail.stop()
            writer.stop()
            spool.close()


def _ids(spool: Spool) -> set[str]:
    return {str(uuid.UUID(bytes=r.event_id)) for r in spool.read_after(0, 1000)}


def _id(n: int) -> str:
    return json.loads(audit_line(n))["id"]


def test_a_late_write_to_a_deleted_file_is_read_though_a_new_file_has_its_name(tmp_path):
    """docs/inputs.md: "deleted files are drained like rotated ones" (lines written after are read).
    The kernel names a write to a deleted file by its old name (inotify(7), IN_EXCL_UNLINK is not
    set), which a new file has now: ``_on_fs_change`` woke only the new file's reader, and the
    deleted file's line waited for the next scan (an hour here) or ``rotate_wait / 4``."""
    with _tailing([str(tmp_path)]) as (_tail, spool):
        path = tmp_path / "x.log"
        old = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(old, audit_line(1))
            wait_until(lambda: _ids(spool) == {_id(1)}, what="the first line")
            os.unlink(path)
            path.write_bytes(audit_line(2))  # the writer's successor (logrotate `create`, say)
            wait_until(lambda: _ids(spool) == {_id(1), _id(2)}, what="the new file's line")
            os.write(old, audit_line(3))  # the old writer has not reopened yet
            wait_until(lambda: _id(3) in _ids(spool), timeout=CATCH_UP_S,
                       what="the line written to the deleted file")
        finally:
            os.close(old)


@pytest.mark.parametrize("how", ["rename", "delete"])
def test_a_watched_directory_made_again_is_watched_again(tmp_path, how):
    """docs/inputs.md: the watched directory itself going (IN_DELETE_SELF, IN_MOVE_SELF) "causes a
    scan", and "the scan then watches whatever directory is at the path". The watcher forgets the
    directory before it reports it, and ``_on_fs_change`` scans for a structural change of a path
    only if it is still watched: no scan ran, the new directory was never watched, and a file made
    in it waited for the next periodic scan (an hour here)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with _tailing([str(logs)]) as (tail, spool):
        assert tail._watcher.directories == {str(logs)}
        if how == "rename":
            os.rename(logs, tmp_path / "logs.old")  # rotation by directory
        else:
            logs.rmdir()
        logs.mkdir()
        (logs / "x.log").write_bytes(audit_line(1))
        wait_until(lambda: _ids(spool) == {_id(1)}, timeout=CATCH_UP_S, what="the line in the new directory")


def test_after_a_queue_overflow_a_directory_replaced_meanwhile_is_watched_again(tmp_path):
    """An overflow drops events, IN_IGNORED of a deleted directory's watch among them. The watch
    table kept that dead watch descriptor, so the directory made again at the path counted as watched
    and never was: its files' appends waited for the periodic scan."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with _tailing([str(logs)]) as (tail, spool):
        noise = [os.open(logs / n, os.O_WRONLY | os.O_CREAT | os.O_APPEND) for n in ("n1", "n2")]
        for _ in range(OVERFLOW_WRITES):  # no switch to the loop: it cannot read meanwhile
            os.write(noise[0], b"n")
            os.write(noise[1], b"n")
        for fd in noise:
            os.close(fd)
        shutil.rmtree(logs)
        logs.mkdir()
        (logs / "x.log").write_bytes(audit_line(1))
        wait_until(lambda: _ids(spool) == {_id(1)}, timeout=CATCH_UP_S, what="the line written before")
        with open(logs / "x.log", "ab") as fh:
            fh.write(audit_line(2))
        wait_until(lambda: _ids(spool) == {_id(1), _id(2)}, timeout=CATCH_UP_S, what="the appended line")
        inotify = tail._watcher._watches
        assert inotify_wds(inotify.fd) == set(inotify._dirs)


def test_the_observer_watches_a_directory_deleted_and_made_again(tmp_path, monkeypatch):
    """The fallback (watchdog's Observer): on IN_DELETE_SELF watchdog reports the directory deleted
    and stops that watch's emitter, but ``_ObserverWatches`` kept it as watched, so
    ``set_directories`` never scheduled the new directory at the path: no event from it ever again,
    while ``status()["watching"]`` listed it."""
    monkeypatch.setattr(watch, "INOTIFY", False)
    logs = tmp_path / "logs"
    logs.mkdir()
    with _tailing([str(logs)]) as (tail, spool):
        assert tail._watcher.backend == "watchdog"
        logs.rmdir()
        wait_until(lambda: tail.scans >= 2, timeout=CATCH_UP_S, what="the scan the deletion causes")
        logs.mkdir()
        tail._scan_wake.set()  # as the periodic scan would: the new directory is watched from here
        wait_until(lambda: tail.scans >= 3, what="the scan")
        (logs / "x.log").write_bytes(audit_line(1))
        wait_until(lambda: _ids(spool) == {_id(1)}, timeout=CATCH_UP_S, what="the line in the new directory")


@pytest.mark.parametrize("held", ["x.log", "z.txt"])
def test_a_watched_directory_deleted_with_a_file_open_is_watched_again(tmp_path, held):
    """While a file of a deleted directory is still open (the tailer's draining reader holds x.log; a
    writer holds z.txt, which no glob matches) the kernel sends the files' IN_DELETE but no
    IN_DELETE_SELF or IN_IGNORED until it is closed. The dead watch stayed in the table, so the scan
    (x.log: its reader's file went) counted the directory made again at the path as watched and never
    watched it, and for z.txt no scan ran at all: a file made in the new directory waited for the
    periodic scan (an hour here)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with _tailing([str(logs)]) as (tail, spool):
        fd = os.open(logs / held, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, audit_line(1))
            if held == "x.log":
                wait_until(lambda: _ids(spool) == {_id(1)}, what="the first line")
            scans = tail.scans
            shutil.rmtree(logs)  # rotation by directory, in one step
            logs.mkdir()
            wait_until(lambda: tail.scans > scans, timeout=CATCH_UP_S, what="the scan the deletion causes")
            (logs / "y.log").write_bytes(audit_line(2))
            wait_until(lambda: _id(2) in _ids(spool), timeout=CATCH_UP_S,
                       what="the line in the new directory")
        finally:
            os.close(fd)


def test_a_late_write_to_a_file_rotated_twice_is_read(tmp_path):
    """docs/inputs.md: rotated files are drained (late writes are read). Two rotated readers keep the
    path they were last matched at (x.log, after two rotations), and ``_on_fs_change`` woke the
    readers of rotated files through a dict keyed by that path: one of the two was never woken, and
    a late write to it waited for ``rotate_wait / 4`` (15 min here) or the next scan."""
    with _tailing([str(tmp_path)]) as (_tail, spool):
        path = tmp_path / "x.log"
        first = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        second = -1
        try:
            os.write(first, audit_line(1))
            wait_until(lambda: _ids(spool) == {_id(1)}, what="the first file's line")
            os.rename(path, tmp_path / "x.log.1")  # logrotate: the first rotation
            second = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(second, audit_line(2))
            wait_until(lambda: _ids(spool) == {_id(1), _id(2)}, what="the second file's line")
            os.rename(tmp_path / "x.log.1", tmp_path / "x.log.2")  # the second rotation
            os.rename(path, tmp_path / "x.log.1")
            path.write_bytes(audit_line(3))
            wait_until(lambda: _ids(spool) == {_id(1), _id(2), _id(3)}, what="the third file's line")
            os.write(first, audit_line(4))  # the first writer has not reopened yet
            wait_until(lambda: _id(4) in _ids(spool), timeout=CATCH_UP_S, what="the late write to x.log.2")
        finally:
            os.close(first)
            if second >= 0:
                os.close(second)
