"""Value types and errors of the spool API (see docs/internals.md §2 and docs/spool.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Longest quarantine excerpt / DLQ response excerpt stored, in bytes; longer ones are truncated.
EXCERPT_MAX = 512
#: Longest reason string stored (quarantine, DLQ, output errors), in characters.
REASON_MAX = 1000


class EncodedEvent(NamedTuple):
    """One canonical event as stored: 16-byte event id (UUIDv7), event time in ms, encoded bytes."""

    event_id: bytes
    ts_ms: int
    body: bytes


class InputOffset(NamedTuple):
    """Read position of one source of an input (a tailed file identity, a socket...).

    ``marker`` / ``marker_len``: optional check bytes (e.g. a hash of the bytes just before ``offset``)
    so a restarted tailer can tell whether the file under ``path`` is still the one it was reading.
    """

    file_key: str
    path: str
    offset: int
    marker: bytes | None = None
    marker_len: int = 0


class QuarantineRecord(NamedTuple):
    """A record an input could not map, with the reason; ``excerpt`` is cut to ``EXCERPT_MAX`` bytes."""

    source: str
    offset: int | None
    reason: str
    excerpt: bytes = b""


@dataclass(slots=True)
class IngestBatch:
    """What one input hands to the spool in one call: events, new offsets and quarantined records.

    All of it is committed in one transaction, or none of it.
    """

    input: str
    events: list[EncodedEvent] = field(default_factory=list)
    offsets: list[InputOffset] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)


class AppendResult(NamedTuple):
    """``inserted`` new events; ``duplicates`` events whose ``event_id`` was already retained."""

    inserted: int
    duplicates: int


class SpoolRow(NamedTuple):
    """One spooled event as read by an output."""

    seq: int
    event_id: bytes
    ts_ms: int
    body: bytes


class Cursor(NamedTuple):
    """An output's position: every event with ``seq <= cursor.seq`` is delivered.

    ``generation`` changes on every rewind; ``Spool.commit_cursor`` only succeeds with the current one.
    """

    seq: int
    generation: int


@dataclass(frozen=True, slots=True)
class CursorInfo:
    """A cursor row as listed for status and the CLI."""

    output: str
    seq: int
    generation: int
    enabled: bool
    updated_ms: int


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    input: str
    source: str
    offset: int | None
    reason: str
    excerpt: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class DlqEntry:
    id: int
    output: str
    seq: int
    event_id: bytes
    body: bytes
    reason: str
    response_excerpt: bytes
    attempts: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class OutputState:
    output: str
    last_success_ms: int | None
    last_error_ms: int | None
    last_error: str | None
    delivered_total: int
    failed_total: int
    dlq_total: int
    extra: dict[str, Any]
    updated_ms: int


class SpoolError(Exception):
    """Base class of every error the spool raises on purpose."""


class SpoolFull(SpoolError):
    """The spool refused an append: ``max_bytes`` reached (``on_full="block"``) or the disk is full.

    Nothing of the refused batch was written; the caller keeps its offsets and retries later.
    """


class RewindError(SpoolError, ValueError):
    """A rewind cannot be done (target below the oldest retained event, unknown output or event)."""


class SchemaError(SpoolError):
    """The file is not a spool, or was written by a newer version (unknown migrations)."""
