"""A stateful (hypothesis) test of the file tailer (agent/inputs/tail.py) against docs/inputs.md.

A real ``TailInput`` tails a temporary directory into a real spool while the rules play a log writer
and logrotate on it: complete hushd audit lines (the fixture's records, each with a fresh id), now and
then a non-JSON line, a JSON record of an unknown shape or a blank line; half a line and later its
rest; rename rotation (logrotate ``create``: the file goes to ``audit.log.N``, a new one is created, the
writer keeps its old descriptor and writes "late" lines to the renamed file); copytruncate (copy to
``audit.log.N``, truncate in place, write on); truncation to zero followed by new writes; deletion and
re-creation (the writer may keep writing to the deleted file); a rotated or deleted file left idle
until the tailer closes it (``rotate_wait`` dropped to 0 for that step); and agent restarts (stop the
tailer, change files while it is down, start a new one on the same spool). Each example tails either
the file alone (``audit.log``) or a glob that also matches the rotated names (``audit.log*``), with or
without the inotify watch, with ``start_at`` "beginning" or "end" (then a file never seen before that
is there when the agent starts has its lines skipped, configuration.md). Deleted files free their
inodes, and new files often get them again (ext4), so identities are reused as in production.

The tailer runs in this thread's gevent loop, so what one rule does to the files is atomic for it:
truncation followed by new writes may leave a file as long as before, which only the first-bytes
marker can tell. After every step with the tailer running, the test waits (on a condition; the
timeout only catches a hang) until every file the model says is tailed has an open reader that has
looked at the file since its last change and has committed all it read; then that reader's
offset must be just past the file's last complete line, and the spool must agree with the model:

1. the spool holds exactly the ids of the complete valid lines written to tailed files (docs/inputs.md
   "Exactly once into the spool"; a tailed file is one matched by the glob, or one renamed away or
   deleted while this tailer was reading it, "drained like rotated ones");
2. the quarantine holds exactly the complete invalid lines of tailed files (a record per line with
   the line's excerpt, its offset in the file, a source that was that file's path and the mapper's
   reason), never a piece of a line: a partial line is taken only when its file is closed idle
   after a rotation or deletion ("a final unterminated line is then taken as a line"); blank lines
   are skipped;
3. the lines of one file are spooled in file order (their events' sequence numbers increase);
4. the offset stored in the spool for each tailed file is just past its last complete line;
5. with the glob matching only the live file nothing is read twice (every input's ``duplicates``
   stays 0: restarts resume from the stored offsets, "a restart does not re-quarantine"), so the
   quarantine has each bad line once; with the glob matching the rotated names, a copytruncate copy
   is a new file read from 0, whose events the spool drops as duplicates (docs/spool.md
   "Duplicates"), and its bad lines may be quarantined again (the quarantine has no unique key);
6. no reader crashed (``errors`` stays 0) and the counters agree with the spool (``ingested`` is the
   number of events, ``quarantined`` the number of quarantine records).

At the end: deterministic reproductions of the two defects the machine found (each fails until fixed):
a restart with ``start_at = "end"`` skipped what was written while the agent was down to a file it had
seen empty, and a new file on a reused inode was read from the middle of its first line, past the
unterminated line the deleted file's reader had taken at close.

Not tested, since nothing promises it: lines written to a file the glob does not match after it left
the tailer's sight (rotated away or deleted while the agent was down, or after its reader closed), and
lines lost to logrotate's own copytruncate window (writes between the copy and the truncation).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agent.inputs.file_identity import file_key, trusted_offset
from agent.inputs.tail import TailInput
from spool.store import Spool
from spool.types import EXCERPT_MAX, IngestBatch
from spool.writer import SpoolWriter
from tests.inputs.helpers import AUDIT_LINES, spooled, wait_until

NAME = "tail"
LONG_WAIT = 3600.0  # rotate_wait: a rotated file stays open until a rule lets it close
CATCH_UP_S = 30.0   # only a hang reaches it
TEMPLATES = [json.loads(x) for x in AUDIT_LINES]  # real hushd records, given fresh ids

KINDS = ("ok", "ok", "ok", "ok", "ok", "bad", "shape", "blank")
lines_spec = st.lists(st.sampled_from(KINDS), min_size=1, max_size=4)
some_lines = st.lists(st.sampled_from(KINDS), max_size=3)


@dataclass
class MFile:
    """One inode as the writer made it."""

    key: str
    path: str | None                   # where it is now (None: deleted)
    fh: BinaryIO | None                # the writer's append descriptor (None: nobody writes to it)
    names: set[str] = field(default_factory=set)  # every path it had: a quarantine source is one
    data: bytearray = field(default_factory=bytearray)  # its bytes
    line_start: int = 0                # start of the line being written (after the last newline)
    rest: bytes | None = None          # the rest of a half-written line
    tracked: bool = True               # the tailer reads it (now, or from its next start)
    seen: bool = False                 # a running tailer had it open (start_at = "end" skips the others)
    unread: list[tuple[int, bytes]] = field(default_factory=list)  # lines completed while stopped
    segments: list[list[str]] = field(default_factory=lambda: [[]])  # ids in file order, per truncation


class TailMachine(RuleBasedStateMachine):
    """Writer + logrotate against a real tailer; the model says what must be in the spool."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tail-sm-")
        self.logs = os.path.join(self.dir, "logs")
        os.mkdir(self.logs)
        self.live = os.path.join(self.logs, "audit.log")
        self.spool = Spool(os.path.join(self.dir, "spool.db"), durability="normal")
        self.writer = SpoolWriter(self.spool).start()
        self.tail: TailInput | None = None
        self.files: list[MFile] = []
        self.n = 0                      # line counter (fresh ids and unique bad lines)
        self.rotations = 0
        self.valid: dict[bytes, str] = {}  # every valid line written -> its id
        self.expected: set[str] = set()
        self.quarantine: Counter[tuple[bytes, int]] = Counter()
        self.q_sources: dict[tuple[bytes, int], set[str]] = {}
        self.q_reasons: dict[tuple[bytes, int], str] = {}
        self.past: list[dict[str, Any]] = []  # stats of stopped tailers
        self.pattern = self.live
        self.watch = False
        self.start_at = "beginning"
        self.unsettled = ""  # why the tailer is not settled yet (for a timeout's message)

    # -- setup / teardown -------------------------------------------------------------------------

    @initialize(glob_rotated=st.booleans(), watch=st.booleans(), first=some_lines,
                start_at=st.sampled_from(("beginning", "end")))
    def setup(self, glob_rotated: bool, watch: bool, first: list[str], start_at: str) -> None:
        self.pattern = self.live + ("*" if glob_rotated else "")
        self.watch = watch
        self.start_at = start_at
        f = self._create(self.live)
        self._write_lines(f, first)
        self._start()

    def teardown(self) -> None:
        if self.tail is not None:
            self.tail.stop()
        self.writer.stop()
        self.spool.close()
        for f in self.files:
            if f.fh is not None:
                f.fh.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the writer's side ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.tail is not None

    @property
    def glob_rotated(self) -> bool:
        return self.pattern.endswith("*")

    def _matches(self, path: str | None) -> bool:
        return path is not None and fnmatch.fnmatchcase(path, self.pattern)

    def _live_file(self) -> MFile | None:
        return next((f for f in self.files if f.path == self.live), None)

    def _create(self, path: str, content: bytes | None = None) -> MFile:
        """A new file at ``path``: a writer's ``open(..., "ab")``, or a copy holding ``content``."""
        fh: BinaryIO | None = None
        if content is None:
            # O_APPEND, as loggers write: after a truncation the next write lands at 0, not past a hole
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            fh = os.fdopen(fd, "ab", buffering=0)
        else:
            with open(path, "xb") as out:
                out.write(content)
        f = MFile(file_key(os.stat(path)), path, fh, names={path}, tracked=self._matches(path))
        if any(g.key == f.key for g in self.files):
            event("a new file got the inode of a deleted one")
        f.seen = f.tracked and self.running
        self.files.append(f)
        if content:
            self._wrote(f, content)
        return f

    def _line(self, kind: str) -> bytes:
        self.n += 1
        if kind == "ok":
            rec = dict(TEMPLATES[self.n % len(TEMPLATES)])
            rec["id"] = str(uuid.UUID(int=(0x01A2 << 112) | (0x7 << 76) | (0x8 << 60) | self.n))
            body = json.dumps(rec, separators=(",", ":")).encode()
            self.valid[body] = rec["id"]
        elif kind == "bad":
            body = f"not json #{self.n} at all".encode()
        elif kind == "shape":
            body = json.dumps({"hello": f"world {self.n}"}).encode()
        else:
            body = b""
        return body + b"\n"

    def _write(self, f: MFile, data: bytes) -> None:
        assert f.fh is not None
        f.fh.write(data)
        self._wrote(f, data)

    def _wrote(self, f: MFile, data: bytes) -> None:
        """Mirror ``data`` appended to ``f``; every line it completes is expected (or waits)."""
        f.data += data
        while (nl := f.data.find(b"\n", f.line_start)) >= 0:
            line = bytes(f.data[f.line_start:nl])
            if f.tracked:
                if self.running:
                    self._expect(f, f.line_start, line)
                else:
                    f.unread.append((f.line_start, line))
            f.line_start = nl + 1

    def _write_lines(self, f: MFile, kinds: list[str]) -> None:
        """Finish a half-written line first (a writer finishes what it started), then ``kinds``."""
        data = b"".join(self._line(k) for k in kinds)
        if f.rest is not None:
            data, f.rest = f.rest + data, None
        if data:
            self._write(f, data)

    def _expect(self, f: MFile, start: int, line: bytes) -> None:
        if line in self.valid:
            if self.valid[line] not in self.expected:  # not a copy's line spooled from its original
                f.segments[-1].append(self.valid[line])
            self.expected.add(self.valid[line])
        elif line.strip():
            key = (line[:EXCERPT_MAX], start)
            self.quarantine[key] += 1
            self.q_sources.setdefault(key, set()).update(f.names)
            try:
                json.loads(line)
                self.q_reasons[key] = "unknown record shape"
            except ValueError:
                self.q_reasons[key] = "invalid JSON"

    def _truncate(self, f: MFile) -> None:
        assert f.path is not None
        os.truncate(f.path, 0)  # `: > audit.log`, or logrotate's copytruncate
        f.data.clear()
        f.line_start = 0
        f.unread.clear()  # never read: gone with the bytes
        f.segments.append([])

    # -- rules ------------------------------------------------------------------------------------

    @precondition(lambda self: self._live_file() is not None)
    @rule(kinds=lines_spec)
    def append_lines(self, kinds: list[str]) -> None:
        live = self._live_file()
        assert live is not None
        self._write_lines(live, kinds)

    @precondition(lambda self: self._live_file() is not None and self._live_file().rest is None
                  and (self.start_at == "beginning" or self._live_file().seen))
    @rule(kind=st.sampled_from(("ok", "ok", "bad", "shape")), cut=st.floats(0.0, 1.0))
    def append_partial_line(self, kind: str, cut: float) -> None:
        live = self._live_file()
        assert live is not None
        line = self._line(kind)
        at = 1 + int(cut * (len(line) - 2))  # 1 .. len - 1: at least the newline is left
        self._write(live, line[:at])
        live.rest = line[at:]

    @precondition(lambda self: any(f.rest is not None and f.fh is not None and f.tracked
                                   for f in self.files))
    @rule(data=st.data())
    def finish_partial_line(self, data: st.DataObject) -> None:
        f = data.draw(st.sampled_from([f for f in self.files
                                       if f.rest is not None and f.fh is not None and f.tracked]))
        self._write_lines(f, [])

    @precondition(lambda self: self._live_file() is not None)
    @rule(new=some_lines, late=some_lines, finish=st.booleans())
    def rotate_rename(self, new: list[str], late: list[str], finish: bool) -> None:
        """logrotate ``create``: rename to ``audit.log.N``, create a new file; the writer has not
        reopened yet and may write to the renamed file (and finish its half line there)."""
        old = self._live_file()
        assert old is not None
        self.rotations += 1
        target = f"{self.live}.{self.rotations}"
        os.rename(self.live, target)
        old.path = target
        old.names.add(target)
        if not self.running:
            old.tracked = self._matches(target)
        new_f = self._create(self.live)
        self._write_lines(new_f, new)
        if old.tracked and (late or (finish and old.rest is not None)):
            self._write_lines(old, late)
        if not old.tracked:
            old.fh.close()
            old.fh = None

    @precondition(lambda self: self._live_file() is not None)
    @rule(new=some_lines)
    def copytruncate(self, new: list[str]) -> None:
        """logrotate ``copytruncate``: copy to ``audit.log.N``, truncate in place, the writer goes on
        (a half line's rest lands at the start of the emptied file)."""
        live = self._live_file()
        assert live is not None
        self.rotations += 1
        self._create(f"{self.live}.{self.rotations}", bytes(live.data))
        self._truncate(live)
        self._write_lines(live, new)

    @precondition(lambda self: self._live_file() is not None)
    @rule(new=some_lines)
    def truncate_and_write(self, new: list[str]) -> None:
        """Emptied in place, then written again (possibly past where the tailer had read)."""
        live = self._live_file()
        assert live is not None
        before = len(live.data)
        self._truncate(live)
        self._write_lines(live, new)
        if before and len(live.data) >= before:
            event("truncated and written again past the old size")

    @precondition(lambda self: self._live_file() is not None)
    @rule(new=some_lines, keep_writing=st.booleans())
    def delete_and_recreate(self, new: list[str], keep_writing: bool) -> None:
        old = self._live_file()
        assert old is not None
        os.unlink(self.live)
        old.path = None
        if not self.running:
            old.tracked = False
            old.unread.clear()
        if not (keep_writing and old.tracked):
            old.fh.close()
            old.fh = None
        new_f = self._create(self.live)
        self._write_lines(new_f, new)

    @precondition(lambda self: self.running and self._live_file() is not None
                  and self._live_file().rest is None)
    @rule(kind=st.sampled_from(("ok", "bad", "shape")), cut=st.floats(0.0, 1.0), delete=st.booleans())
    def abandoned_mid_line(self, kind: str, cut: float, delete: bool) -> None:
        """The writer stops half-way through a line, the file is rotated (or deleted) and left idle:
        what it holds of that line is taken as a line when the tailer closes it."""
        self.append_partial_line(kind, cut)
        if delete:
            self.delete_and_recreate([], keep_writing=False)
        else:
            self.rotate_rename([], [], finish=False)
        self.idle_close()

    @precondition(lambda self: any(f.path != self.live and f.fh is not None and f.tracked
                                   for f in self.files))
    @rule(data=st.data(), kinds=lines_spec)
    def late_write(self, data: st.DataObject, kinds: list[str]) -> None:
        """The writer has not reopened: lines go to the renamed or deleted file."""
        f = data.draw(st.sampled_from([f for f in self.files
                                       if f.path != self.live and f.fh is not None and f.tracked]))
        self._write_lines(f, kinds)

    @precondition(lambda self: self.running and any(self._gone(f) for f in self.files))
    @rule()
    def idle_close(self) -> None:
        """The writer is done with the rotated / deleted files: they are drained and closed after
        ``rotate_wait`` (0 for this step), an unterminated last line taken as a line."""
        assert self.tail is not None
        gone = [f for f in self.files if self._gone(f)]
        for f in gone:
            if f.fh is not None:
                f.fh.close()
                f.fh = None
        self.tail.config.rotate_wait = 0.0
        try:
            wait_until(lambda: all(self.tail.readers[f.key].closed for f in gone
                                   if f.key in self.tail.readers),
                       timeout=CATCH_UP_S, what="idle rotated files closed")
        finally:
            self.tail.config.rotate_wait = LONG_WAIT
        for f in gone:
            head = bytes(f.data[f.line_start:])
            if head:
                event("a rotated / deleted file closed with an unterminated line")
                self._expect(f, f.line_start, head)
                f.line_start = len(f.data)
            f.rest = None
            f.tracked = False

    def _gone(self, f: MFile) -> bool:
        return f.tracked and not self._matches(f.path)

    @precondition(lambda self: self.running)
    @rule()
    def stop_agent(self) -> None:
        assert self.tail is not None
        self.tail.stop()
        self.past.append(self.tail.stats.as_dict())
        self.tail = None
        for f in self.files:
            f.tracked = self._matches(f.path)
            if not f.tracked and f.fh is not None:
                f.fh.close()
                f.fh = None

    @precondition(lambda self: not self.running)
    @rule()
    def start_agent(self) -> None:
        self._start()

    def _start(self) -> None:
        self.tail = TailInput(NAME, {"paths": [self.pattern], "scan_interval": 0.03,
                                     "rotate_wait": LONG_WAIT, "watch": self.watch,
                                     "start_at": self.start_at},
                              self.writer, self.spool)
        stored = self.spool.get_offsets(NAME)
        for f in self.files:
            if not f.tracked and f.path is not None and f.key in stored:
                # renamed out of ``paths`` while stopped: read on from its stored offset if the file
                # still vouches for it (file_identity.trusted_offset, tested on its own) and holds more
                off = stored[f.key]
                fd = os.open(f.path, os.O_RDONLY)
                try:
                    resumed = off.offset < len(f.data) and trusted_offset(
                        fd, len(f.data), off.offset, off.marker, off.marker_len)
                finally:
                    os.close(fd)
                if resumed:
                    event("a file renamed out of paths while stopped is read on at start")
                    f.tracked = True
        self.tail.start()
        for f in self.files:
            if f.tracked:
                if self.start_at == "end" and not f.seen and f.key not in stored and f.data:
                    # "a file never seen before that is there when the agent starts": its lines are
                    # skipped; one holding no newline, to its end. (Only a copy can hold half a line
                    # here, and it never grows: append_partial_line keeps out of the case where the
                    # rest would come and be read as a line of its own.)
                    event("start_at = end skipped a file never seen")
                    if b"\n" not in f.data:
                        f.line_start = len(f.data)
                else:
                    for start, line in f.unread:
                        self._expect(f, start, line)
                f.seen = True
            f.unread.clear()

    # -- checks -----------------------------------------------------------------------------------

    def _settled(self) -> bool:
        """Every tailed file has an open reader that has looked at the file since its last change
        and has nothing read but not committed (nor a commit under way)."""
        assert self.tail is not None
        self.unsettled = ""
        for f in self.files:
            if not f.tracked:
                continue
            r = self.tail.readers.get(f.key)
            if r is None or r.closed:
                self.unsettled = f"no open reader for {sorted(f.names)} ({f.key})"
                return False
            st_ = os.fstat(r.fd)
            if r.last_stamp != (st_.st_size, st_.st_mtime_ns) or st_.st_size != len(f.data):
                self.unsettled = (f"{sorted(f.names)}: reader saw {r.last_stamp}, file is "
                                  f"{(st_.st_size, st_.st_mtime_ns)}, model {len(f.data)} bytes")
                return False
            if r.paused or r._inflight is not None or r._mapping:
                self.unsettled = f"{sorted(f.names)}: a commit under way"
                return False
        return True

    @invariant()
    def spooled_as_the_model_says(self) -> None:
        if not self.running:
            return
        tail = self.tail
        assert tail is not None
        try:
            wait_until(self._settled, timeout=CATCH_UP_S, what="the tailer to catch up")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.unsettled}") from None
        # settled, each reader has committed up to the last complete line of what it saw
        for f in self.files:
            if f.tracked:
                off = tail.readers[f.key].offset
                assert off == f.line_start, f"{sorted(f.names)}: offset {off}, lines end at {f.line_start}"
        rows = self.spool.read_after(0, 1_000_000)
        ids = [str(uuid.UUID(bytes=r.event_id)) for r in rows]
        assert len(ids) == len(set(ids))
        missing, extra = self.expected - set(ids), set(ids) - self.expected
        assert not missing and not extra, f"missing {sorted(missing)}, unexpected {sorted(extra)}"
        # lines of one file in file order
        seq_of = {i: r.seq for i, r in zip(ids, rows, strict=True)}
        for f in self.files:
            for seg in f.segments:
                seqs = [seq_of[i] for i in seg]
                assert seqs == sorted(seqs), f"{f.names}: events out of file order"
        # quarantine: the complete bad lines, each with its reason, offset and source
        entries = self.spool.quarantine_list(limit=1_000_000, input=NAME)
        got = Counter((bytes(e.excerpt), e.offset) for e in entries)
        if self.glob_rotated:  # a copy is read from 0: its bad lines are quarantined again
            assert set(got) == set(self.quarantine), (got, self.quarantine)
        else:
            assert got == self.quarantine, (got, self.quarantine)
        for e in entries:
            k = (bytes(e.excerpt), e.offset)
            assert e.source in self.q_sources[k], (e.source, self.q_sources[k])
            assert e.reason.startswith(self.q_reasons[k]), (e.reason, self.q_reasons[k])
        # the stored offsets: just past the last complete line of each tailed file
        stored = self.spool.get_offsets(NAME)
        for f in self.files:
            if f.tracked and f.line_start > 0:
                assert f.key in stored and stored[f.key].offset == f.line_start, \
                    (f.names, f.line_start, stored.get(f.key))
        # counters
        stats = [*self.past, tail.stats.as_dict()]
        assert sum(s["errors"] for s in stats) == 0
        assert sum(s["ingested"] for s in stats) == len(ids)
        assert sum(s["quarantined"] for s in stats) == len(entries)
        if not self.glob_rotated:
            assert sum(s["duplicates"] for s in stats) == 0, "a line was read twice"
        elif sum(s["duplicates"] for s in stats):
            event("the spool dropped events read again (a copy)")


TailMachine.TestCase.settings = settings(
    max_examples=35,
    stateful_step_count=25,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTailStateMachine = TailMachine.TestCase


# -- defects found by the machine, reproduced deterministically ---------------------------------------


def _ids(spool: Spool) -> list[str]:
    return [str(uuid.UUID(bytes=r.event_id)) for r in spool.read_after(0, 1000)]


def _at_end(tail: TailInput, path: str) -> None:
    size = os.path.getsize(path)
    wait_until(lambda: [f["offset"] for f in tail.status()["files"] if f["path"] == path] == [size],
               what=f"the tailer at the end of {path}")


def test_start_at_end_restart_reads_lines_written_while_down_to_a_file_it_had_seen_empty() -> None:
    """configuration.md: ``start_at = "end"`` is "where to start in a file never seen before that is
    there when the agent starts", and "a file that appears later (a rotation, ...) is always read from
    its beginning, so no line written to it is lost". A file the agent had open while it was still
    empty (as logrotate ``create`` leaves it) got no stored offset, so after a restart it was taken for
    a file never seen and the lines written to it while the agent was down were skipped."""
    with spooled("tail-def-") as (d, spool, writer):
        path = os.path.join(d, "audit.log")
        cfg = {"paths": [path], "scan_interval": 0.03, "watch": False, "start_at": "end"}
        with open(path, "wb") as fh:
            fh.write(AUDIT_LINES[0])  # history: skipped
        first = TailInput(NAME, cfg, writer, spool)
        first.start()
        wait_until(lambda: len(first.readers) == 1, what="the first file open")
        os.rename(path, path + ".1")
        open(path, "xb").close()  # logrotate `create`: a new, empty file
        wait_until(lambda: len(first.readers) == 2, what="the new file open")
        first.stop()
        with open(path, "ab") as fh:  # the agent is down (an upgrade, say); hushd writes on
            fh.write(AUDIT_LINES[1] + AUDIT_LINES[2])
        second = TailInput(NAME, cfg, writer, spool)
        second.start()
        try:
            _at_end(second, path)
            assert _ids(spool) == [json.loads(x)["id"] for x in AUDIT_LINES[1:3]]
        finally:
            second.stop()


def test_a_new_file_on_a_reused_inode_is_not_resumed_past_the_flushed_half_line_of_the_old() -> None:
    """A deleted file holding half a line is closed after ``rotate_wait`` and the half line taken as a
    line (docs/inputs.md); its offset (just past those bytes) stays stored under its key. A new file
    that gets the freed inode (ext4 hands it out again at once: the machine met it) has the same key;
    docs/inputs.md reads it from 0 ("a path matched later is ... read from 0"). But the stored marker
    covers only the half line, and a new first line starting with the same bytes (every hushd line
    starts with ``{"id":"``, and ids of one moment share their first digits) passed the check: the new
    file was read from the middle of its first line, whose event was lost and whose rest was
    quarantined. The reuse is made certain here by storing the old row under the new file's key."""
    half = AUDIT_LINES[1][:20]
    with spooled("tail-def-") as (d, spool, writer):
        path = os.path.join(d, "audit.log")
        cfg = {"paths": [path], "scan_interval": 0.03, "watch": False, "rotate_wait": 0.05}
        with open(path, "wb") as fh:
            fh.write(half)  # hushd wrote half a line, then the file was deleted
        first = TailInput(NAME, cfg, writer, spool)
        first.start()
        wait_until(lambda: len(first.readers) == 1, what="the file open")
        (old_key,) = first.readers
        os.unlink(path)
        wait_until(lambda: not first.readers and len(spool.quarantine_list()) == 1,
                   what="the deleted file drained, its half line taken, and closed")
        row = spool.get_offsets(NAME)[old_key]
        assert (row.offset, row.marker_len) == (len(half), len(half))
        first.stop()
        with open(path, "wb") as fh:  # the new audit.log, on the freed inode
            fh.write(AUDIT_LINES[1] + AUDIT_LINES[2])
        new_key = file_key(os.stat(path))
        writer.write(IngestBatch(NAME, [], [row._replace(file_key=new_key, path=path)], []))
        second = TailInput(NAME, cfg, writer, spool)
        second.start()
        try:
            _at_end(second, path)
            assert _ids(spool) == [json.loads(x)["id"] for x in AUDIT_LINES[1:3]]
            assert [q.excerpt for q in spool.quarantine_list()] == [half]  # no piece of the new line
        finally:
            second.stop()


def test_start_at_end_reads_a_file_whose_only_line_is_still_being_written() -> None:
    """``start_at = "end"`` skips a file's existing lines; a file holding only the start of its first
    line (hushd opening a fresh log) has none. It was skipped to its end, and once the line was
    finished its rest was quarantined as a line of its own ("invalid JSON") and the event lost."""
    with spooled("tail-def-") as (d, spool, writer):
        path = os.path.join(d, "audit.log")
        cfg = {"paths": [path], "scan_interval": 0.03, "watch": False, "start_at": "end"}
        line = AUDIT_LINES[0]
        with open(path, "wb") as fh:
            fh.write(line[:20])
        tail = TailInput(NAME, cfg, writer, spool)
        tail.start()
        try:
            wait_until(lambda: len(tail.readers) == 1, what="the file open")
            with open(path, "ab") as fh:
                fh.write(line[20:] + AUDIT_LINES[1])
            _at_end(tail, path)
            assert _ids(spool) == [json.loads(x)["id"] for x in AUDIT_LINES[:2]]
            assert spool.quarantine_list() == []
        finally:
            tail.stop()
