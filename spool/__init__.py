"""The durable SQLite spool: events, per-output cursors, input offsets, quarantine and DLQ."""

from .store import DEFAULT_RETENTION_S, Spool, SpoolReader
from .types import (
    AppendResult,
    Cursor,
    CursorInfo,
    DlqEntry,
    EncodedEvent,
    IngestBatch,
    InputOffset,
    OutputState,
    QuarantineEntry,
    QuarantineRecord,
    RewindError,
    SchemaError,
    SpoolError,
    SpoolFull,
    SpoolRow,
)
from .writer import SpoolWriter

__all__ = [
    "DEFAULT_RETENTION_S",
    "AppendResult",
    "Cursor",
    "CursorInfo",
    "DlqEntry",
    "EncodedEvent",
    "IngestBatch",
    "InputOffset",
    "OutputState",
    "QuarantineEntry",
    "QuarantineRecord",
    "RewindError",
    "SchemaError",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpoolReader",
    "SpoolRow",
    "SpoolWriter",
]
