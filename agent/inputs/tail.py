"""File tail input (``type = "file"``): JSON-lines files, rotation-safe, exactly-once into the spool.

How it works (docs/inputs.md has the full story):

* A **scan** greenlet globs ``paths`` every ``scan_interval`` (the truth) and whenever watchdog reports
  a change in a watched directory (``agent.inputs.watch``; it only lowers latency). Each regular file
  (symlinks followed) is identified by ``native::<dev>-<ino>``.
* **One reader greenlet per file identity** holds the file open and reads it in chunks from its offset.
  Only complete lines are consumed. Each chunk's events, quarantined lines and the new offset (just past
  the last complete line, with the file's marker) go to the spool in ONE ``IngestBatch``, so the offset
  never runs ahead of or behind the events.
* A key no longer found under any path (renamed away = rotation, or deleted) keeps its open fd and is
  drained until it has been idle for ``rotate_wait`` at EOF; the file now at the path is a new key,
  read from 0.
* Shrinking below the read position (copytruncate) or a changed first-bytes marker (the OpenClaw store
  rewriting the file, inode reuse) restarts the file at 0; the spool's ``INSERT OR IGNORE`` on event_id
  drops what was read before, counted as duplicates.
* ``SpoolFull`` pauses only that file, retrying the same batch with backoff. Nothing is dropped.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Group

from agent.inputs.base import (
    InputStats,
    LineSplitter,
    Stopped,
    kind_of,
    now_ms,
    spawn_supervised,
    write_with_retry,
)
from agent.inputs.config import FileInputConfig, input_config
from agent.inputs.file_identity import MARKER_BYTES, compute_marker, file_key, marker_matches, trusted_offset
from agent.inputs.mapper import InlineMapper
from agent.mapping import MappingContext
from spool.types import IngestBatch, InputOffset

log = logging.getLogger(__name__)


class _FileReader:
    """One open file identity and its read state."""

    def __init__(self, tail: TailInput, key: str, path: str, fd: int, offset: int,
                 marker: bytes | None, marker_len: int) -> None:
        self.tail = tail
        self.key = key
        self.path = path
        self.fd = fd
        self.offset = offset                  # committed in the spool (with the marker below)
        self.marker = marker
        self.marker_len = marker_len
        self.splitter = LineSplitter(tail.config.max_line_bytes, offset)
        self.wake = Event()
        self.gone_at: float | None = None     # monotonic time the key vanished from every path
        self.last_growth = time.monotonic()
        self.size = 0
        self.last_stamp: tuple[int, int] | None = None
        self.paused = False                   # waiting for the spool to accept writes
        # Batch committing while the next chunk is mapped: (result, batch, offset, events, quarantined)
        self._inflight: tuple[Any, IngestBatch, int, int, int] | None = None
        # Chunks read but not yet committed, in file order: (pending mapping, offset, marker, marker_len)
        self._mapping: deque[tuple[Any, int, bytes | None, int]] = deque()
        self.closed = False
        self.resets = 0                       # restarts at 0 (truncation, rewrite)
        self.greenlet: gevent.Greenlet | None = None

    # -- loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        # After a crash, resume from what the spool has (the in-memory state may be ahead): the batch
        # still in flight decides the offset, and the chunks read after it are dropped, to be read
        # again from there. Committed first, they would store an offset past lines not in the spool.
        self._mapping.clear()
        self._wait_commit()
        self.splitter.reset(self.offset)
        while not self.tail._stop.is_set():
            self.poll()
            if self.closed:
                return
            timeout = None
            if self.gone_at is not None:
                timeout = max(0.05, self.tail.config.rotate_wait / 4)
            self.wake.wait(timeout)
            self.wake.clear()

    def poll(self) -> None:
        tail = self.tail
        cfg = tail.config
        while not tail._stop.is_set():
            st = os.fstat(self.fd)
            size = st.st_size
            stamp = (size, st.st_mtime_ns)
            changed = stamp != self.last_stamp
            self.last_stamp = stamp
            if size > self.size:
                self.last_growth = time.monotonic()
            self.size = size
            if size < self.splitter.read_pos or size < self.offset:
                self._restart_at_zero(f"file shrank to {size} bytes (below offset {self.offset}): truncated")
                continue
            if changed and self.marker_len and not marker_matches(self.fd, self.marker, self.marker_len):
                self._restart_at_zero("first bytes changed (rewritten in place or a new file)")
                continue
            if self.marker_len < MARKER_BYTES and size > self.marker_len:
                self.marker, self.marker_len = compute_marker(self.fd, size)
            if self.splitter.read_pos >= size:
                break
            # What the file holds past the read position, not a whole chunk: pread allocates the size it
            # is asked for (a 256 KiB chunk is an mmap, an mremap and a munmap for a 1 KB line)
            data = os.pread(self.fd, min(cfg.read_chunk_bytes, size - self.splitter.read_pos),
                            self.splitter.read_pos)
            if not data:
                break
            lines = self.splitter.feed_block(data)
            if lines or self.splitter.consumed != self.offset:
                self._commit(lines, self.splitter.consumed)
            gevent.sleep(0)  # let other files and inputs run between chunks
        self._settle()
        self._maybe_close()

    def _restart_at_zero(self, why: str) -> None:
        self._settle()
        log.info("%s: %s (%s); reading it again from 0", self.tail.name, self.path, why)
        self.resets += 1
        self.splitter.reset(0)
        self.marker, self.marker_len = None, 0
        self.last_stamp = None
        # The offset in the spool moves back to 0 with the next batch (or stays ahead: then a restart sees
        # offset > size or a marker mismatch and also reads from 0).
        self.offset = 0

    def _commit(self, lines: list, new_offset: int) -> None:
        """Map ``lines`` and hand them to the spool with ``new_offset``, without waiting for the commit.

        Mapping and committing overlap: chunk k+1 is mapped (in this loop, or in the mapping helper
        process, which may run ``mapper.depth`` chunks ahead) while chunk k commits in SQLite's thread.
        Chunks are committed strictly in file order and at most one batch is in flight per file, and the
        next one is submitted only after it committed, so a stored offset never passes a batch that
        failed.
        """
        tail = self.tail
        pending = tail.mapper.submit(lines, source=self.path, kind=tail.kind,
                                     max_line_bytes=tail.config.max_line_bytes)
        self._mapping.append((pending, new_offset, self.marker, self.marker_len))
        # Commit what is mapped already (a steady trickle must not wait for `depth` more chunks),
        # and wait for the oldest only when more than `depth` are mapping.
        mapping = self._mapping
        while mapping and (len(mapping) > tail.mapper.depth or mapping[0][0].ready()):
            self._advance()

    def _advance(self) -> None:
        """Commit the oldest mapped chunk: wait for its mapping, then for the previous commit."""
        pending, new_offset, marker, marker_len = self._mapping.popleft()
        events, quarantine = pending.get()
        tail = self.tail
        batch = IngestBatch(tail.name, events, [InputOffset(self.key, self.path, new_offset, marker,
                                                            marker_len)], quarantine)
        self._wait_commit()
        self._inflight = (tail.writer.submit(batch), batch, new_offset, len(events), len(quarantine))

    def _settle(self) -> None:
        """Commit everything read so far and wait for it (on SpoolFull retrying until it is taken)."""
        while self._mapping:
            self._advance()
        self._wait_commit()

    def _wait_commit(self) -> None:
        """Wait for the batch in flight; on SpoolFull retry that same batch until the spool takes it."""
        if self._inflight is None:
            return
        pending, batch, new_offset, n_events, n_quarantined = self._inflight
        self._inflight = None
        tail = self.tail
        self.paused = True
        try:
            result = write_with_retry(tail.writer, batch, tail.stats, tail._stop,
                                      what=f"{tail.name}:{self.path}", pending=pending)
        finally:
            self.paused = False
        tail.stats.account(result, n_events, n_quarantined, new_offset - self.offset)
        self.offset = new_offset

    def _maybe_close(self) -> None:
        if self.gone_at is None or self.tail._stop.is_set():
            return
        # The size poll() read may be old: waiting for the spool (_settle: a full spool retries for
        # seconds) lets the writer append more before the rename. Close only at the file's real end.
        with contextlib.suppress(OSError):
            size = os.fstat(self.fd).st_size
            if size > self.size:
                self.size = size
                self.last_growth = time.monotonic()
        idle_since = max(self.gone_at, self.last_growth)
        if time.monotonic() - idle_since < self.tail.config.rotate_wait:
            return
        if self.splitter.read_pos < self.size:
            return
        # Drained and idle: the writer is done with this file. An unterminated last line is still a line.
        rest = self.splitter.flush()
        if rest:
            self._commit(rest, self.splitter.consumed)
            self._settle()
        log.info("%s: closed %s (%s) after rotation/deletion, offset %d", self.tail.name, self.path,
                 self.key, self.offset)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def status(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "file_key": self.key,
            "offset": self.offset,
            "size": self.size,
            "lag_bytes": max(0, self.size - self.offset),
            "state": "paused" if self.paused else ("rotated" if self.gone_at is not None else "active"),
            "resets": self.resets,
        }


def exclusion(patterns: list[str]) -> Callable[[str], bool]:
    """``exclude`` as a test of a path: a pattern without ``/`` against the file's name, one with
    ``/`` against the absolute path component by component (``*`` stays within a component, as in
    the ``paths`` globs)."""
    names = [p for p in patterns if "/" not in p]
    whole = [os.path.abspath(p).split("/") for p in patterns if "/" in p]

    def excluded(path: str) -> bool:
        name = os.path.basename(path)
        if any(fnmatch.fnmatchcase(name, p) for p in names):
            return True
        parts = os.path.abspath(path).split("/")
        return any(len(w) == len(parts) and all(map(fnmatch.fnmatchcase, parts, w)) for w in whole)

    return excluded


#: live readers by path, rotated ones by path, every rotated one (``TailInput._reader_paths``)
_ReaderPaths = tuple[dict[str, _FileReader], dict[str, _FileReader], list[_FileReader]]


class TailInput:
    """Tail the files matching ``config.paths`` into the spool.

    ``TailInput(name, config, writer, spool, context)``: ``config`` is a ``FileInputConfig`` (or a plain
    table with its keys); ``writer`` a started ``spool.writer.SpoolWriter``; ``spool`` the
    ``spool.store.Spool`` (stored offsets are read from it at start); ``context`` the ``MappingContext``.
    """

    def __init__(self, name: str, config: Any, writer: Any, spool: Any, context: MappingContext | None = None,
                 mapper: Any = None) -> None:
        self.name = name
        self.config: FileInputConfig = input_config(FileInputConfig, config, name)
        self.writer = writer
        self.spool = spool
        self.context = context or MappingContext()
        self.kind = kind_of(self.config.format)
        #: Maps read chunks: in this loop, or in the shared mapping helper process (agent.inputs.mapper).
        self.mapper = mapper or InlineMapper(self.context)
        self.stats = InputStats()
        self.readers: dict[str, _FileReader] = {}
        self._stored: dict[str, InputOffset] = {}
        self._group = Group()
        self._stop = Event()
        self._scan_wake = Event()
        self._watcher: Any = None
        self._initial_scan_done = False
        self._abs_patterns = [os.path.abspath(p) for p in self.config.paths]
        self._excluded = exclusion(self.config.exclude)
        self._paths_cache: _ReaderPaths | None = None
        # What the last scan asked the watcher to watch (what it watches is the existing ones): a
        # watched directory that went is reported after the watcher dropped it, and its change must
        # still cause the scan that watches the directory now at its path
        self._wanted_dirs: set[str] = set()
        self.scans = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._stored = dict(self.spool.get_offsets(self.name)) if self.spool is not None else {}
        if self.config.watch:
            try:
                from agent.inputs.watch import DirectoryWatcher

                self._watcher = DirectoryWatcher(self._on_fs_change)
            except Exception:
                self.stats.errors += 1
                log.exception("%s: watchdog unavailable; relying on the stat scan", self.name)
        spawn_supervised(self._group, self._scan_loop, what=f"{self.name} scanner", stats=self.stats,
                         stop=self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading; a batch being committed finishes; then close files and watches."""
        self._stop.set()
        self._scan_wake.set()
        for r in list(self.readers.values()):
            r.wake.set()
        self._group.join(timeout)
        self._group.kill(block=True)
        for r in list(self.readers.values()):
            r.close()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    # -- scanning -------------------------------------------------------------------------------

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            self._scan_wake.clear()
            self.scan()
            self._scan_wake.wait(self.config.scan_interval)

    def _on_fs_change(self, changes: dict[str, bool]) -> None:
        """What watchdog saw, ``{path: structural}`` (agent.inputs.watch). A write to a file we read
        wakes just its reader: a glob scan (a listdir and a stat per match) on every append cost more
        than reading the line. A scan runs when a path our globs match, a directory we watch (or
        watched until it went) or a file we read came, went or moved, or was written without having a
        reader yet. Writes to other files in a watched directory (the agent's own spool, say) wake only
        the readers of rotated files, which drain late writes to a file no longer at its path; so does
        a write to a path that names both a live reader and a rotated one (the kernel names a write to
        a deleted file by its old name, which a new file may have now). The periodic scan stays the
        truth."""
        live, rotated, draining = self._reader_paths()
        scan = False
        for path, structural in changes.items():
            reader = live.get(path)
            if structural:
                scan = scan or reader is not None or path in rotated or self._matches(path) or \
                    path in self._wanted_dirs
            elif reader is not None:
                reader.wake.set()
                if path in rotated:
                    for r in draining:
                        r.wake.set()
            elif self._matches(path):
                scan = True
            else:
                for r in draining:
                    r.wake.set()
        if scan:
            self._scan_wake.set()

    def _matches(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pat) for pat in self._abs_patterns) and \
            not self._excluded(path)

    def _reader_paths(self) -> _ReaderPaths:
        """Open readers by absolute and real path (a symlink's target is what inotify names): live
        ones, and rotated ones still draining; and every rotated one (two may have had one path, a
        file rotated twice). Cached until the next scan changes the readers."""
        if self._paths_cache is None:
            live: dict[str, _FileReader] = {}
            rotated: dict[str, _FileReader] = {}
            for r in self.readers.values():
                if r.closed:
                    continue
                into = live if r.gone_at is None else rotated
                into[os.path.abspath(r.path)] = r
                with contextlib.suppress(OSError):
                    into[os.path.realpath(r.path)] = r
            draining = [r for r in self.readers.values() if not r.closed and r.gone_at is not None]
            self._paths_cache = (live, rotated, draining)
        return self._paths_cache

    def _watch_dirs(self) -> set[str]:
        dirs: set[str] = set()
        for pattern in self.config.paths:
            dirs.add(os.path.dirname(os.path.abspath(pattern)) or "/")
        for r in self.readers.values():
            if r.gone_at is None:
                with contextlib.suppress(OSError):
                    dirs.add(os.path.dirname(os.path.realpath(r.path)))  # a symlink's target directory
        return {d for d in dirs if not glob.has_magic(d)}

    def scan(self) -> None:
        """Diff the files under ``paths`` against the open readers and act on the difference."""
        self.scans += 1
        found: dict[str, str] = {}
        for pattern in self.config.paths:
            for path in sorted(glob.glob(pattern)):
                if self._excluded(path):
                    continue
                try:
                    st = os.stat(path)  # follows symlinks: the identity is the target's
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault(file_key(st), path)
        for key, path in found.items():
            reader = self.readers.get(key)
            if reader is not None and reader.closed:
                del self.readers[key]
                self._stored[key] = InputOffset(key, reader.path, reader.offset, reader.marker,
                                                reader.marker_len)
                reader = None
            if reader is None:
                self._open(key, path)
            else:
                if reader.path != path:
                    log.info("%s: %s renamed to %s", self.name, reader.path, path)
                    reader.path = path
                reader.gone_at = None
        if not self._initial_scan_done:
            self._resume_renamed(found)
        now = time.monotonic()
        for key, reader in list(self.readers.items()):
            if reader.closed:
                # if the key shows up again, its last offset is checked like a stored one (inode reuse)
                del self.readers[key]
                self._stored[key] = InputOffset(key, reader.path, reader.offset, reader.marker,
                                                reader.marker_len)
                continue
            if key not in found and reader.gone_at is None:
                log.info("%s: %s (%s) is no longer at its path (rotated or deleted); draining", self.name,
                         reader.path, key)
                reader.gone_at = now
            reader.wake.set()
        self._initial_scan_done = True
        self._paths_cache = None  # readers came, went or rotated while this scan yielded
        if self._watcher is not None:
            self._wanted_dirs = self._watch_dirs()
            self._watcher.set_directories(self._wanted_dirs)

    def _resume_renamed(self, found: dict[str, str]) -> None:
        """At start: a file this input was reading when the agent last stopped, no longer under
        ``paths`` because it was renamed (logrotate's ``audit.jsonl`` -> ``audit.jsonl.1``) before
        its reader drained it (the agent died), is looked for by its identity in the directory it
        was in, and read on from its stored offset like a rotated file: drained, then closed after
        ``rotate_wait``. Only a stored offset the file still vouches for (``trusted_offset``: its
        first bytes, a line end) is taken; anything else in the directory is left alone."""
        wanted: dict[str, set[str]] = {}
        for key, stored in self._stored.items():
            if key not in found and key not in self.readers and stored.path:
                wanted.setdefault(os.path.dirname(os.path.abspath(stored.path)), set()).add(key)
        for directory, keys in wanted.items():
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                if not keys:  # every file looked for here is found
                    break
                path = os.path.join(directory, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = file_key(st)
                if key in keys and stat.S_ISREG(st.st_mode) and key not in self.readers:
                    keys.discard(key)
                    if self._stored[key].offset < st.st_size:  # (else read to its end: nothing to do)
                        self._open(key, path, renamed=True)

    def _open(self, key: str, path: str, *, renamed: bool = False) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("%s: cannot open %s: %s", self.name, path, exc)
            self.stats.errors += 1
            return
        try:
            st = os.fstat(fd)
            if file_key(st) != key:  # replaced between stat and open: the next scan sees the new one
                os.close(fd)
                return
            if renamed:  # (``_resume_renamed``) only from a stored offset the file vouches for
                stored = self._stored.pop(key)
                if not trusted_offset(fd, st.st_size, stored.offset, stored.marker, stored.marker_len):
                    os.close(fd)
                    return
                offset, marker, marker_len = stored.offset, stored.marker, stored.marker_len
            else:
                offset, marker, marker_len = self._start_position(key, path, fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise
        reader = _FileReader(self, key, path, fd, offset, marker, marker_len)
        reader.size = st.st_size
        if renamed:
            reader.gone_at = time.monotonic()  # not under ``paths``: drained, then closed
        self.readers[key] = reader
        self._paths_cache = None
        log.info("%s: reading %s (%s) from offset %d%s", self.name, path, key, offset,
                 ": renamed out of paths while the agent was down; draining it" if renamed else "")
        reader.greenlet = spawn_supervised(self._group, reader.run, what=f"{self.name} reader {path}",
                                           stats=self.stats, stop=self._stop)

    def _start_position(self, key: str, path: str, fd: int, size: int) -> tuple[int, bytes | None, int]:
        stored = self._stored.pop(key, None)
        if stored is not None:
            if trusted_offset(fd, size, stored.offset, stored.marker, stored.marker_len):
                return stored.offset, stored.marker, stored.marker_len
            log.info("%s: stored offset %d of %s (%s) not trusted (size %d or first bytes differ); from 0",
                     self.name, stored.offset, path, key, size)
            return 0, None, 0
        if not self._initial_scan_done and self.config.start_at == "end" and size > 0:
            offset = self._last_line_end(fd, size)
            marker, marker_len = compute_marker(fd, size)
            # remember the skip point so a restart does not read the skipped history
            self._commit_offset_only(key, path, offset, marker, marker_len)
            return offset, marker, marker_len
        if self.config.start_at == "end":
            # Remember the file as seen (offset 0 is always trusted): without a stored offset, a restart
            # would take a file seen empty (logrotate `create`) or holding half a line for one never
            # seen, and skip what was written to it while the agent was down.
            self._commit_offset_only(key, path, 0, None, 0)
        return 0, None, 0

    def _last_line_end(self, fd: int, size: int) -> int:
        """Where ``start_at = "end"`` starts: just past the last newline. A file with none at all holds
        one line being written, not an existing one: from 0 (skipped to its end, the line's rest was
        quarantined as a line of its own once written)."""
        window = min(size, self.config.max_line_bytes + 1)
        tail = os.pread(fd, window, size - window)
        nl = tail.rfind(b"\n")
        if nl < 0:
            return 0 if window == size else size
        return size - window + nl + 1

    def _commit_offset_only(self, key: str, path: str, offset: int, marker: bytes, marker_len: int) -> None:
        batch = IngestBatch(self.name, [], [InputOffset(key, path, offset, marker, marker_len)], [])
        with contextlib.suppress(Stopped):
            write_with_retry(self.writer, batch, self.stats, self._stop, what=f"{self.name}:{path}")

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "file",
            "paths": list(self.config.paths),
            "exclude": list(self.config.exclude),
            "stats": self.stats.as_dict(),
            "last_event_ms": self.stats.last_event_ms,
            "files": [r.status() for r in sorted(self.readers.values(), key=lambda r: r.path)],
            "watching": sorted(self._watcher.directories) if self._watcher is not None else [],
            "time_ms": now_ms(),
        }
