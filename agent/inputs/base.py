"""Pieces shared by every input: counters, line splitting and batch building.

Every input turns raw bytes into one ``spool.types.IngestBatch`` per read: the mapped events, the
quarantined records (with the reason, the byte offset and a bounded excerpt) and, for files, the new
offset. The spool commits all of it in one transaction (docs/internals.md §2), which is what makes a
crash at any instant neither lose nor duplicate an event.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from agent.event import timestamp_to_ms
from agent.mapping import MappingContext, MappingError, encode_line, encode_record_event, map_record
from spool.types import EXCERPT_MAX, AppendResult, EncodedEvent, IngestBatch, QuarantineRecord, SpoolFull

if TYPE_CHECKING:  # the offload helper maps lines with this module and never imports gevent
    import gevent
    from gevent.event import Event

log = logging.getLogger(__name__)

def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------------------

@dataclass
class InputStats:
    """Counters of one input, read by the metrics module and ``clawd-agent status``."""

    ingested: int = 0          # events newly inserted into the spool
    duplicates: int = 0        # events the spool already had (re-read / rewritten files, replays)
    quarantined: int = 0       # records that could not be mapped
    bytes: int = 0             # bytes consumed (committed)
    errors: int = 0            # reader crashes, I/O errors, write errors
    spool_full: int = 0        # writes refused by a full spool (retried; nothing dropped)
    last_event_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def account(self, result: AppendResult, n_events: int, n_quarantined: int, n_bytes: int) -> None:
        self.ingested += result.inserted
        self.duplicates += result.duplicates
        self.quarantined += n_quarantined
        self.bytes += n_bytes
        if n_events:
            self.last_event_ms = now_ms()


# --------------------------------------------------------------------------------------------------
# Lines -> batch
# --------------------------------------------------------------------------------------------------

# The run of characters a cut left at the end of a line's head: a secret's start (every built-in secret
# pattern stops at whitespace, quotes, commas, semicolons and ampersands).
_CUT_TAIL = re.compile(rb"[^\s\"',;&]+\Z")


def excerpt(data: bytes, context: MappingContext | None = None, *, cut: bool = False) -> bytes:
    """The bounded excerpt quarantined with a bad record; with a context whose ingest transform
    redacts (``[privacy]``), its value patterns are masked first: the spool never holds a secret.

    ``cut``: ``data`` is only the head of a longer line (an overlong one). A secret the cut went
    through may be too short for its pattern, so with redaction on, the head's last word goes too."""
    post = context.postprocess if context is not None else None
    redact = getattr(post, "redact_bytes", None)
    if redact is not None:
        data = redact(data)
        if cut:
            data = _CUT_TAIL.sub(b"", data)
    return bytes(data[:EXCERPT_MAX])


def _raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``file:line in function`` (no message, no values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"


def quarantine_reason(reason: str, context: MappingContext | None) -> str:
    """A mapping error names the bad value: mask it like the excerpt."""
    redact = getattr(context.postprocess if context is not None else None, "redact_text", None)
    return reason if redact is None else redact(reason)


_new_encoded = tuple.__new__  # EncodedEvent(...) runs a Python-level __new__; this builds the same tuple


def encode(ev: dict) -> EncodedEvent:
    """A mapped event as the spool stores it (16-byte id, event time in ms, canonical bytes)."""
    # event_id is a validated canonical UUID string: its 32 hex digits are the 16 bytes
    return _new_encoded(EncodedEvent, (bytes.fromhex(ev["event_id"].replace("-", "")),
                                       timestamp_to_ms(ev["timestamp"]), encode_record_event(ev)))


def kind_of(fmt: str) -> str | None:
    return None if fmt == "auto" else fmt


@dataclass(slots=True)
class Line:
    """One complete line (without its newline) at ``start``; ``end`` is just past its newline.

    ``overlong`` lines carry only the first bytes (for the excerpt) and their full ``length``.
    """

    start: int
    end: int
    data: bytes
    overlong: bool = False
    length: int = 0


@dataclass(slots=True, frozen=True)
class LineBlock:
    """Complete lines as one piece: ``data`` starts at stream offset ``start`` and ends with a newline,
    and no line in it is overlong. A file tail hands this to the offload helper, which cuts it into
    ``Line``s itself: the agent's loop then does no per-line work at all for the chunk (no ``Line``
    objects, no per-line tuples to pickle)."""

    start: int
    data: bytes

    def __len__(self) -> int:
        """The number of lines. (Counted as the bytes a newline-free copy loses: ``bytes.replace``
        scans with memchr, ~5 times faster than ``bytes.count``, which took ~0.25 us a line.)"""
        data = self.data
        return len(data) - len(data.replace(b"\n", b""))

    def __bool__(self) -> bool:
        return bool(self.data)

    def lines(self) -> list[Line]:
        """The ``Line``s ``LineSplitter.feed`` would have given for these bytes."""
        out: list[Line] = []
        append = out.append
        pos = self.start
        for raw in self.data.split(b"\n")[:-1]:  # the piece after the last newline is empty
            end = pos + len(raw) + 1
            append(Line(pos, end, raw))
            pos = end
        return out


class LineSplitter:
    """Cuts a byte stream into complete lines; a line longer than ``max_line_bytes`` is reported as
    overlong (excerpt only) and skipped up to its newline without being held in memory."""

    def __init__(self, max_line_bytes: int, start: int = 0) -> None:
        self.max = max_line_bytes
        self.reset(start)

    def reset(self, start: int) -> None:
        self.buf = bytearray()
        self.buf_start = start      # stream offset of buf[0]
        self.consumed = start       # just past the last complete line handed out
        self._skip: tuple[int, bytes] | None = None  # (line start, excerpt) while skipping an overlong line

    @property
    def read_pos(self) -> int:
        """Stream offset of the next byte to feed."""
        return self.buf_start + len(self.buf)

    def feed(self, data: bytes) -> list[Line]:
        out: list[Line] = []
        pos = 0
        if self._skip is not None:
            nl = data.find(b"\n")
            if nl < 0:
                self.buf_start += len(data)
                return out
            start, head = self._skip
            self._skip = None
            end = self.buf_start + nl + 1
            out.append(Line(start, end, head, overlong=True, length=end - 1 - start))
            self.buf_start = self.consumed = end
            pos = nl + 1
        self.buf += memoryview(data)[pos:]
        cut = 0
        buf = self.buf
        while True:
            nl = buf.find(b"\n", cut)
            if nl < 0:
                break
            start = self.buf_start + cut
            if nl - cut > self.max:
                out.append(Line(start, self.buf_start + nl + 1, bytes(buf[cut:min(nl, cut + EXCERPT_MAX)]),
                                overlong=True, length=nl - cut))
            else:
                out.append(Line(start, self.buf_start + nl + 1, bytes(buf[cut:nl])))
            cut = nl + 1
        if cut:
            del buf[:cut]
            self.buf_start += cut
            self.consumed = self.buf_start
        if len(buf) > self.max:  # no newline within max_line_bytes: skip the rest of this line
            self._skip = (self.buf_start, bytes(buf[:EXCERPT_MAX]))
            self.buf_start += len(buf)
            buf.clear()
        return out

    def feed_block(self, data: bytes) -> list[Line] | LineBlock:
        """``feed``, but the complete lines come as one ``LineBlock`` when none of them can be
        overlong (everything buffered fits in ``max_line_bytes``, the usual case: a read chunk is
        256 KiB, a line may be 1 MiB); otherwise ``feed``'s lines."""
        buf = self.buf
        if self._skip is not None or len(buf) + len(data) > self.max:
            return self.feed(data)
        nl = data.rfind(b"\n")
        if nl < 0:
            buf += data
            return []
        start = self.buf_start
        # The chunk as it came (no copy when it ends with a newline, the usual case), after the
        # partial line kept from the previous chunk, if any.
        head = data if nl + 1 == len(data) else data[:nl + 1]
        block = LineBlock(start, bytes(buf) + head if buf else head)
        buf.clear()
        buf += memoryview(data)[nl + 1:]
        self.buf_start = self.consumed = start + len(block.data)
        return block

    def flush(self) -> list[Line]:
        """At a final EOF (connection closed, rotated file drained): the unterminated tail as a line."""
        if self._skip is not None:
            start, head = self._skip
            self._skip = None
            end = self.buf_start
            self.consumed = end
            return [Line(start, end, head, overlong=True, length=end - start)]
        if not self.buf:
            return []
        line = Line(self.buf_start, self.read_pos, bytes(self.buf))
        self.buf_start = self.consumed = self.read_pos
        self.buf.clear()
        return [line]


_BLANK_START = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() removes


def map_lines(lines: list[Line], *, source: str, context: MappingContext, kind: str | None,
              max_line_bytes: int) -> tuple[list[EncodedEvent], list[QuarantineRecord]]:
    """Map complete lines: events for good ones, quarantine records (with offset and reason) for bad
    ones. Blank lines are skipped silently."""
    events: list[EncodedEvent] = []
    quarantine: list[QuarantineRecord] = []
    # The hot loop: the callables bound to locals (each saves an attribute or global lookup per event).
    append, encode_one, blank, new = events.append, encode_line, _BLANK_START, _new_encoded
    for line in lines:
        if line.overlong:
            quarantine.append(QuarantineRecord(
                source, line.start, f"line of {line.length} bytes exceeds max_line_bytes ({max_line_bytes})",
                excerpt(line.data, context, cut=True)))
            continue
        data = line.data
        # only an empty line or one that starts with whitespace can be blank: skip strip()'s copy otherwise
        if not data or (data[0] in blank and not data.strip()):
            continue
        try:
            # parse_line then encode(ev), as one call (agent.mapping.encode_line): same tuple, same order
            append(new(EncodedEvent, encode_one(data, context, kind)))
        except MappingError as exc:
            quarantine.append(QuarantineRecord(source, line.start, quarantine_reason(exc.reason, context),
                                               excerpt(data, context)))
        except Exception as exc:  # a mapping bug must not stop the input: keep the line for a replay
            # The message may quote the record's values (a secret): the log names the bug's place,
            # the quarantine reason is masked like any mapping error's.
            log.error("mapping failed on %s at offset %d: %s at %s", source, line.start,
                      type(exc).__name__, _raised_at(exc))
            quarantine.append(QuarantineRecord(
                source, line.start,
                quarantine_reason(f"internal mapping error: {type(exc).__name__}: {exc}", context)[:300],
                excerpt(data, context)))
    return events, quarantine


def map_body_record(record: Any, raw: bytes, *, context: MappingContext, kind: str | None) -> EncodedEvent:
    """Map one already-decoded record (HTTP bodies); raises MappingError."""
    return encode(map_record(record, raw=raw, kind=kind, context=context))


class Stopped(Exception):
    """The input is stopping while a write was being retried (nothing was committed)."""


def write_with_retry(writer: Any, batch: IngestBatch, stats: InputStats, stop: Event, *,
                     what: str, max_backoff_s: float = 5.0, pending: Any = None) -> AppendResult:
    """``writer.write(batch)``; on ``SpoolFull`` wait (backoff, interruptible by ``stop``) and retry the
    same batch, so nothing is dropped and no offset moves. Raises ``Stopped`` if stopping meanwhile.
    ``pending``: the result of an earlier ``writer.submit(batch)``, awaited as the first attempt."""
    backoff = 0.05
    warned = False
    while True:
        try:
            result = pending.get() if pending is not None else writer.write(batch)
            pending = None
            if warned:
                log.info("%s: spool accepts writes again; resuming", what)
            return result
        except SpoolFull as exc:
            pending = None
            stats.spool_full += 1
            if not warned:
                log.warning("%s: spool full (%s); pausing and retrying", what, exc)
                warned = True
            if stop.wait(backoff):
                raise Stopped() from None
            backoff = min(backoff * 2, max_backoff_s)


def spawn_supervised(group: Any, fn: Any, *, what: str, stats: InputStats, stop: Event,
                     restart_delay_s: float = 1.0) -> gevent.Greenlet:
    """Run ``fn()`` in ``group``; if it raises, log and count it and run it again (a crashed reader
    restarts; the other readers go on)."""
    import gevent

    def runner() -> None:
        delay = restart_delay_s
        while not stop.is_set():
            try:
                fn()
                return
            except Stopped:
                return
            except gevent.GreenletExit:
                raise
            except Exception:
                stats.errors += 1
                log.exception("%s crashed; restarting in %.1fs", what, delay)
                if stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    return group.spawn(runner)
