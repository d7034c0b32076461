"""The durable SQLite spool: events, per-output cursors, input offsets, quarantine and DLQ.

The names below are loaded on first use (PEP 562): ``spool.types`` alone must not pull SQLite,
sqlite-utils and gevent into a process that only builds batches (the offload helper).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "DEFAULT_RETENTION_S": "store",
    "Spool": "store",
    "SpoolReader": "store",
    "SpoolWriter": "writer",
    **dict.fromkeys(
        ("AppendResult", "Cursor", "CursorInfo", "DlqEntry", "EncodedEvent", "IngestBatch", "InputOffset",
         "OutputState", "QuarantineEntry", "QuarantineRecord", "RewindError", "SchemaError", "SpoolError",
         "SpoolFull", "SpoolRow"),
        "types",
    ),
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'spool' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
