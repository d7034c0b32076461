"""Property-based tests of the ``file`` and ``stdout`` outputs (outputs/file.py, outputs/stdout.py) as a
drain uses them, against docs/outputs/file.md and docs/outputs.md.

A state machine runs a real spool, a real drain and a ``FileOutput`` in a temporary directory. Rules
append events of random sizes, arm write errors (ENOSPC before anything is written, a torn write that
stops inside the first line and then ENOSPC, EACCES when the file is opened, EACCES on the rotation's
first rename or truncate), leave a torn last line as a crash mid-write would, and deliver (a fresh
drain and output each time: a restart). Random ``max_bytes`` (0 = never), ``max_files`` (0 =
truncate), ``fsync``, ``mode`` and ``batch_max_events``. After each delivery:

1. the kept files (``path.N`` ... ``path.1``, ``path``) are exactly what the documented rotation makes
   of the batches the output reported delivered, in order, each event once (the reference model
   replays "rotate before a write would take the file past ``max_bytes``": a file is larger than
   ``max_bytes`` only when one write, into an empty file, was); every line is complete JSON;
2. no more than ``max_files`` rotated files, each file's mode as configured;
3. nothing lost: the drain's batches carry every spooled event once, in order, and a failed write
   is retried until the event is written;
4. a crash at any commit: at each cursor commit the files hold every committed event that the final
   files hold (a line reported delivered is never missing from a copy taken then), and with
   ``fsync = true`` every byte written to the file was fsync'ed before the commit.

Then ``stdout``: random batches written to a captured stdout are exactly one line per event.

At the end: deterministic reproductions of the defects found (each fails until fixed; see
/tmp/helpers/fileout/BUGS.md at the time of writing): a reopen that fails during rotation leaves a
closed descriptor in the output (every later attempt raises EBADF, or writes to a reused descriptor);
a removed directory or deleted file takes "delivered" lines into an unlinked inode; a torn stdout
write is continued by the next attempt (a corrupt line); ``mode`` is cut by the umask; a newly
created file's directory entry is never fsync'ed; a rotation retried after failing at its last rename
drops one more rotated file than ``max_files`` allows.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import outputs.file as file_mod
from outputs.base import DeliveryItem, Outcome, Status
from outputs.drain import Drain
from outputs.file import FileOutput, FileOutputConfig
from outputs.stdout import StdoutOutput, StdoutOutputConfig
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch
from tests.outputs.drain_kit import caught_up, run_until

NAME = "archive"
SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def body(n: int, pad: int) -> bytes:
    """The canonical bytes of event ``n`` (``n`` = seq - 1 in a fresh spool)."""
    return orjson.dumps({"event_id": str(uuid.UUID(int=n + 1)), "n": n, "pad": "x" * pad})


def seqs_of(data: bytes) -> list[int]:
    """The seqs of the complete JSON lines in ``data``; a line that is not complete JSON fails."""
    assert not data or data.endswith(b"\n"), f"a partial last line: {data[-40:]!r}"
    return [orjson.loads(line)["n"] + 1 for line in data.splitlines()]


# -------------------------------------------------------------------------------- fault injection


class FaultyOs:
    """Stands in for ``os`` inside outputs/file.py: passes everything through, except the faults armed
    in ``faults`` (kind -> remaining count), and records what was written and fsync'ed."""

    def __init__(self, target: str) -> None:
        self.target = target  # not ``path``: that is os.path
        self.faults: dict[str, int] = {}
        self.torn_next = False  # a torn write happened: the next write fails
        self.dirty: set[int] = set()  # fds written since their last fsync

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _take(self, kind: str) -> bool:
        if self.faults.get(kind, 0) > 0:
            self.faults[kind] -= 1
            return True
        return False

    def open(self, path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        # only while the output is closed (a reopen during rotation that fails is a separate defect,
        # test_a_reopen_failing_in_rotation_leaves_no_closed_descriptor)
        if path == self.target and self.closed() and self._take("eacces_open"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return os.open(path, flags, mode, **kw)

    closed: Callable[[], bool] = staticmethod(lambda: True)

    def write(self, fd: int, data: Any) -> int:
        if self.torn_next:
            self.torn_next = False
            raise OSError(errno.ENOSPC, "No space left on device")
        if self._take("enospc"):
            raise OSError(errno.ENOSPC, "No space left on device")
        if self._take("torn"):
            first_line = bytes(data[: bytes(data).index(b"\n") + 1])
            if len(first_line) > 2:  # a prefix inside the first line, then the disk is full
                self.torn_next = True
                n = os.write(fd, bytes(data[: len(first_line) // 2]))
                self.dirty.add(fd)
                return n
        n = os.write(fd, data)
        self.dirty.add(fd)
        return n

    def close(self, fd: int) -> None:
        os.close(fd)  # what it held unsynced was never counted delivered (it is cut or written again)
        self.dirty.discard(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)
        self.dirty.discard(fd)

    def replace(self, src: Any, dst: Any) -> None:
        if self._take("rename"):
            raise PermissionError(errno.EACCES, "Permission denied")
        os.replace(src, dst)

    def truncate(self, path: Any, length: int) -> None:
        if self._take("rename"):
            raise PermissionError(errno.EACCES, "Permission denied")
        os.truncate(path, length)


# -------------------------------------------------------------------------------- reference model


@dataclass
class Layout:
    """The files as the documented rotation makes them: ``files[0]`` is ``path``, ``files[i]`` is
    ``path.i``; each a list of batches (lists of (seq, line bytes))."""

    max_bytes: int
    max_files: int
    files: list[list[list[tuple[int, bytes]]]] = field(default_factory=lambda: [[]])

    def size(self, i: int = 0) -> int:
        return sum(len(line) for batch in self.files[i] for _, line in batch)

    def write(self, batch: list[tuple[int, bytes]]) -> None:
        n = sum(len(line) for _, line in batch)
        if self.max_bytes and self.size() and self.size() + n > self.max_bytes:
            if self.max_files == 0:
                self.files[0] = []
            else:
                self.files = [[], *self.files][: self.max_files + 1]
        self.files[0].append(batch)

    def seqs(self) -> list[int]:
        """Every kept event, oldest file first."""
        return [s for f in reversed(self.files) for batch in f for s, _ in batch]


class FileDrainMachine(RuleBasedStateMachine):
    """A spool, a drain and a file output; the model is ``Layout`` fed with the delivered batches."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="fileout-")
        self.spool = Spool(str(Path(self.tmp) / "spool.db"))
        self.dir = Path(self.tmp) / "out"
        self.path = str(self.dir / "events.jsonl")
        self.fos = FaultyOs(self.path)
        self.saved_os = file_mod.os
        file_mod.os = self.fos  # type: ignore[assignment]
        self.n = 0  # events spooled
        self.sent: list[int] = []  # seqs of the batches reported delivered, in order
        self.attempts: list[Outcome] = []
        self.snapshots: list[tuple[int, set[int]]] = []  # (committed seq, seqs in the files then)
        self.unsynced_commits: list[int] = []  # commits made while written bytes were not fsync'ed
        self.snapshot_errors: list[str] = []  # files not readable as complete lines at a commit

    @initialize(max_bytes=st.sampled_from([0, 120, 250, 600]), max_files=st.integers(0, 3),
                fsync=st.booleans(), mode=st.sampled_from(["0640", "0600", "0644"]),
                batch=st.integers(1, 5))
    def setup(self, max_bytes: int, max_files: int, fsync: bool, mode: str, batch: int) -> None:
        self.config = FileOutputConfig(
            path=self.path, max_bytes=max_bytes, max_files=max_files, fsync=fsync, mode=mode,
            batch_max_events=batch, batch_max_wait=0, retry_initial=0.001, retry_max=0.004,
            healthcheck_interval=0, breaker_failures=0)
        self.config.validate()
        self.layout = Layout(max_bytes, max_files)

    def teardown(self) -> None:
        file_mod.os = self.saved_os  # type: ignore[assignment]
        self.spool.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules ------------------------------------------------------------------------------------
    @rule(pads=st.lists(st.integers(0, 90), min_size=1, max_size=8))
    def append(self, pads: list[int]) -> None:
        events = [EncodedEvent(uuid.UUID(int=self.n + k + 1).bytes, 1_700_000_000_000 + self.n + k,
                               body(self.n + k, pad)) for k, pad in enumerate(pads)]
        self.spool.append(IngestBatch("t", events))
        self.n += len(pads)

    @rule(kind=st.sampled_from(["enospc", "torn", "eacces_open", "rename"]), count=st.integers(1, 3))
    def arm(self, kind: str, count: int) -> None:
        """The next ``count`` chances of this fault fail (they heal after that: retried until written)."""
        self.fos.faults[kind] = self.fos.faults.get(kind, 0) + count

    @precondition(lambda self: os.path.exists(self.path) and os.path.getsize(self.path) > 0)
    @rule(cut=st.integers(1, 30))
    def torn_tail(self, cut: int) -> None:
        """A crash mid-write: the start of a line no one was told of; the next open cuts it."""
        with open(self.path, "ab") as f:
            f.write(body(10_000, 40)[:cut])

    @precondition(lambda self: self.n > len(self.sent))  # events to send (and so an open output)
    @rule()
    def deliver(self) -> None:
        out = FileOutput(NAME, self.config)
        self.fos.closed = lambda: out._fd is None  # type: ignore[method-assign]
        send = out.send

        def recording(batch: list[DeliveryItem], packed: None = None) -> Outcome:
            outcome = send(batch)
            self.attempts.append(outcome)
            if outcome.status is Status.DELIVERED:
                lines = [(i.seq, (i.data or i.body) + b"\n") for i in batch]
                self.sent.extend(s for s, _ in lines)
                self.layout.write(lines)
            else:
                assert outcome.status is Status.RETRY and outcome.reason.startswith("write failed: ")
            return outcome

        out.send = recording  # type: ignore[method-assign]
        commit = self.spool.commit_cursor

        def committing(output: str, seq: int, generation: int, done: Any = None) -> bool:
            # recorded, not raised here: the drain's commit loop would catch it and try again
            if self.config.fsync and self.fos.dirty:
                self.unsynced_commits.append(seq)
            try:
                self.snapshots.append((seq, set(self.file_seqs())))
            except AssertionError as exc:  # a partial line where the copy would be taken
                self.unsynced_commits.append(seq)
                self.snapshot_errors.append(str(exc))
            return commit(output, seq, generation, done)

        self.spool.commit_cursor = committing  # type: ignore[method-assign]
        try:
            run_until(Drain(out, self.spool, self.spool.reader()), caught_up(self.spool, NAME),
                      timeout=10.0)
        finally:
            del self.spool.commit_cursor
        self.fos.faults.clear()
        self.fos.torn_next = False
        self.check_after_delivery()

    # -- checks -----------------------------------------------------------------------------------
    def kept_paths(self) -> list[str]:
        return [self.path] + [f"{self.path}.{i}" for i in range(1, self.layout.max_files + 1)]

    def file_seqs(self) -> list[int]:
        """Every event in the files, oldest first (a torn tail left by the rule is not counted)."""
        out: list[int] = []
        for p in reversed(self.kept_paths()):
            if os.path.exists(p):
                data = Path(p).read_bytes()
                out.extend(seqs_of(data[: data.rfind(b"\n") + 1]))
        return out

    def check_after_delivery(self) -> None:
        assert not self.snapshot_errors, self.snapshot_errors
        assert not self.unsynced_commits, "a batch counted delivered before its bytes were fsync'ed"
        assert self.sent == list(range(1, self.n + 1)), "every event delivered once, in order"
        kept = self.kept_paths()
        if self.dir.exists():  # nothing beyond the kept files (no path.N past max_files)
            assert {str(self.dir / n) for n in os.listdir(self.dir)} <= set(kept), os.listdir(self.dir)
        for i, p in enumerate(kept):
            batches = self.layout.files[i] if i < len(self.layout.files) else []
            want = b"".join(line for batch in batches for _, line in batch)
            got = Path(p).read_bytes() if os.path.exists(p) else b""
            assert got == want, (p, got[-200:], want[-200:])
            seqs_of(got)  # every line complete JSON
            if os.path.exists(p):
                assert stat.S_IMODE(os.stat(p).st_mode) == int(self.config.mode, 8), oct(os.stat(p).st_mode)
            if self.layout.max_bytes and len(got) > self.layout.max_bytes:
                assert len(batches) == 1, "only one write into an empty file may pass max_bytes"
        final = set(self.layout.seqs())
        for committed, seen in self.snapshots:
            missing = {s for s in final if s <= committed} - seen
            assert not missing, f"committed events not in the files at the commit: {sorted(missing)}"

    @invariant()
    def rotated_files_bounded(self) -> None:
        if hasattr(self, "layout") and self.dir.exists():
            rotated = [n for n in os.listdir(self.dir) if n.startswith("events.jsonl.")]
            assert len(rotated) <= self.layout.max_files


FileDrainMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=14, **SETTINGS)
TestFileDrainMachine = FileDrainMachine.TestCase


# -------------------------------------------------------------------------------- stdout


@settings(max_examples=60, **SETTINGS)
@given(batches=st.lists(st.lists(st.integers(0, 60), min_size=1, max_size=6), min_size=1, max_size=6))
def test_stdout_writes_one_line_per_event(batches: list[list[int]]) -> None:
    """Each batch's events, one complete line each, in order, straight to the stdout descriptor."""
    with tempfile.TemporaryFile() as f:
        saved = sys.stdout
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(f.fileno()), "wb"), write_through=True)
        try:
            out = StdoutOutput("s", StdoutOutputConfig())
            n = 0
            for pads in batches:
                items = [DeliveryItem(n + k + 1, {}, body(n + k, pad)) for k, pad in enumerate(pads)]
                assert out.send(items).status is Status.DELIVERED
                n += len(pads)
        finally:
            sys.stdout.close()
            sys.stdout = saved
        f.seek(0)
        assert seqs_of(f.read()) == list(range(1, n + 1))


# -------------------------------------------------------------------------------- defects found


def items(start: int, n: int) -> list[DeliveryItem]:
    return [DeliveryItem(i + 1, {}, body(i, 8)) for i in range(start, start + n)]


def test_a_reopen_failing_in_rotation_leaves_no_closed_descriptor(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation renamed the file and creating the new one failed (no inode left): a RETRY, and
    once the disk heals the next attempt writes. The output kept the closed descriptor instead: every
    later attempt raised EBADF from close() (a descriptor number reused meanwhile, e.g. by SQLite,
    would have been closed or written to)."""
    path = str(tmp_path / "events.jsonl")
    out = FileOutput(NAME, FileOutputConfig(path=path, max_bytes=60, max_files=2, fsync=False))
    out.open()
    assert out.send(items(0, 2)).status is Status.DELIVERED
    real_open = os.open

    def no_inode(p: Any, *a: Any, **kw: Any) -> int:
        if p == path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(p, *a, **kw)

    monkeypatch.setattr(file_mod.os, "open", no_inode)
    outcome = out.send(items(2, 2))
    assert outcome.status is Status.RETRY and outcome.reason.startswith("write failed")
    monkeypatch.setattr(file_mod.os, "open", real_open)
    assert out.send(items(2, 2)).status is Status.DELIVERED
    out.close()
    assert seqs_of(Path(path).read_bytes()) == [3, 4]
    assert seqs_of(Path(path + ".1").read_bytes()) == [1, 2]


@pytest.mark.parametrize("removed", ["directory", "file"])
def test_lines_written_after_the_file_was_removed_are_not_lost(tmp_path: Path, removed: str) -> None:
    """docs/outputs/file.md: a removed directory is a write error, retried; delivered means written.
    The open descriptor still accepted writes into the unlinked inode and every later batch was
    counted delivered while no file held it."""
    path = tmp_path / "out" / "events.jsonl"
    out = FileOutput(NAME, FileOutputConfig(path=str(path)))
    out.open()
    assert out.send(items(0, 2)).status is Status.DELIVERED
    if removed == "directory":
        shutil.rmtree(tmp_path / "out")
    else:
        path.unlink()
    for _ in range(3):  # retried as the drain would; delivered only once the lines are in the file
        if out.send(items(2, 2)).status is Status.DELIVERED:
            break
    else:
        pytest.fail("never delivered")
    out.close()
    assert path.exists(), "reported delivered, but no file holds the events"
    assert seqs_of(path.read_bytes()) == [3, 4]


def test_a_file_rotated_away_by_someone_else_is_reopened(tmp_path: Path) -> None:
    """A logrotate-style rename of the file: the next batches belong in the configured path, not in
    the renamed file (which a tailing shipper has already left)."""
    path = tmp_path / "events.jsonl"
    out = FileOutput(NAME, FileOutputConfig(path=str(path)))
    out.open()
    assert out.send(items(0, 1)).status is Status.DELIVERED
    os.rename(path, tmp_path / "events.jsonl-20240101")
    assert out.send(items(1, 1)).status is Status.DELIVERED
    out.close()
    assert path.exists() and seqs_of(path.read_bytes()) == [2]


def test_a_torn_stdout_write_is_not_continued_by_the_next_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that stopped mid-line (a pipe whose reader is slow, non-blocking: EAGAIN) is a RETRY;
    the next attempt must not continue the half line with the batch's first event (a corrupt line)."""
    written = bytearray()
    calls = {"n": 0}

    def write(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # half of the first line
            part = bytes(data[: 10])
            written.extend(part)
            return len(part)
        if calls["n"] == 2:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        written.extend(bytes(data))
        return len(data)

    class FakeStdout:
        def fileno(self) -> int:
            return 1

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", FakeStdout())
    monkeypatch.setattr("outputs.stdout.os.write", write)
    out = StdoutOutput("s", StdoutOutputConfig())
    batch = items(0, 2)
    assert out.send(batch).status is Status.RETRY
    assert out.send(batch).status is Status.DELIVERED
    lines = bytes(written).splitlines()
    for line in lines:  # at-least-once, but never a corrupt line
        orjson.loads(line)
    assert [orjson.loads(line)["n"] for line in lines][-2:] == [0, 1]


def test_mode_is_the_configured_mode_whatever_the_umask(tmp_path: Path) -> None:
    """``mode`` ("Mode of a new file, octal") is what the file gets, as the unix socket input's
    ``mode`` is (chmod); os.open's mode argument was cut by the process umask (0660 became 0640)."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "events.jsonl"
        out = FileOutput(NAME, FileOutputConfig(path=str(path), mode="0660", max_bytes=40, max_files=1))
        out.open()
        assert out.send(items(0, 2)).status is Status.DELIVERED
        assert out.send(items(2, 2)).status is Status.DELIVERED  # rotated: a second new file
        out.close()
    finally:
        os.umask(old)
    for p in (path, tmp_path / "events.jsonl.1"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o660, oct(p.stat().st_mode)


def test_a_new_file_is_durable_before_its_batch_counts_delivered(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``fsync = true`` a batch is delivered only once a power loss cannot lose it; for a file
    the output just created (at open or by a rotation) that takes an fsync of its directory too
    (the new entry, and the rename), else the fsync'ed lines may be unreachable after a crash."""
    directory = tmp_path / "out"
    path = directory / "events.jsonl"
    synced: list[os.stat_result] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.fstat(fd))

    monkeypatch.setattr(file_mod.os, "fsync", fsync)
    out = FileOutput(NAME, FileOutputConfig(path=str(path), max_bytes=40, max_files=1))
    out.open()
    for start in (0, 2):  # the first batch creates the file, the second rotates it
        synced.clear()
        assert out.send(items(start, 2)).status is Status.DELIVERED
        assert any(os.path.samestat(s, os.stat(directory)) for s in synced), "directory not fsync'ed"
    out.close()


def test_a_rotation_failing_at_its_last_rename_keeps_max_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation shifted ``.1``, ``.2`` up and then could not rename the file to ``.1``: a RETRY.
    The retry shifted the shifted files once more, overwriting ``.3`` with ``.2``: one more file
    gone than ``max_files = 3`` allows, and a gap at ``.2``."""
    path = str(tmp_path / "events.jsonl")
    out = FileOutput(NAME, FileOutputConfig(path=path, max_bytes=40, max_files=3, fsync=False))
    out.open()
    for k in range(4):  # one event per file: .3 = 1, .2 = 2, .1 = 3, path = 4
        assert out.send(items(k, 1)).status is Status.DELIVERED
    real_replace = os.replace

    def refuse_last(src: Any, dst: Any) -> None:
        if src == path:
            raise PermissionError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(file_mod.os, "replace", refuse_last)
    assert out.send(items(4, 1)).status is Status.RETRY
    monkeypatch.setattr(file_mod.os, "replace", real_replace)
    assert out.send(items(4, 1)).status is Status.DELIVERED
    out.close()
    kept = [seqs_of(Path(p).read_bytes()) if os.path.exists(p) else None
            for p in (path, path + ".1", path + ".2", path + ".3")]
    assert kept == [[5], [4], [3], [2]]
