"""Cutting the event stream into batches by event count, encoded bytes and age.

Every batch also owns a contiguous range of spool sequence numbers ``[lo, hi]``: its events plus the
rows read around them that this output skips (filtered, routed elsewhere, DLQ'd at encode). The drain
commits the cursor to a batch's ``hi`` once it and every batch before it finished, so the ranges must
tile the stream with no gap: each batch starts right after the previous one ended.

Bytes are the sum of ``len(item.data)`` (what ``Output.encode`` returned), which is what the output's
request body is made of; the limit comes from the config or ``Output.default_batch_max_bytes``. An
event larger than the limit on its own is sent alone rather than split or dropped: the destination
then answers 413 (``Outcome.split``) and the framework puts just that event in the DLQ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from outputs.base import DeliveryItem


@dataclass(slots=True, eq=False)
class Batch:
    """One unit of delivery and of ordered commit.

    ``items`` may be empty: a range of skipped rows, finished as soon as it is registered.
    ``replay_ids`` maps ``id(item)`` to its DLQ entry id for replayed batches (which own no range).
    """

    items: list[DeliveryItem]
    lo: int
    hi: int
    nbytes: int = 0
    epoch: int = 0
    done: bool = False
    replay_ids: dict[int, int] | None = None
    attempts: int = 0
    delivered: int = 0
    dlq: int = 0
    sent_at: float = field(default=0.0)
    #: While every attempt is of the whole batch: its request body (outputs.packing.Packed), and the
    #: items' data is empty. None otherwise.
    packed: Any = None
    #: The parts of the batch still to settle, first to send first (the whole batch, then bisection
    #: halves and per-item retries), once its delivery started: a re-entry after an internal error
    #: (the spool refusing a DLQ write) resumes there instead of sending, and settling, the parts
    #: already delivered or dead-lettered again. None before the first attempt.
    parts: Any = None


class Batcher:
    """Accumulates encoded items; ``add`` returns the batches that adding one item closed."""

    __slots__ = ("_items", "_lo", "_nbytes", "_open_stream", "_stream", "max_bytes", "max_events",
                 "opened_at")

    def __init__(self, max_events: int, max_bytes: int, after_seq: int,
                 open_stream: Callable[[], Any] | None = None):
        """``open_stream`` (``Output.pack_stream``): called as each batch opens; a stream it returns
        takes every item of that batch as it is added (its data compressed and dropped from the
        item) and becomes the closed batch's ``packed`` body (outputs.packing)."""
        if max_events < 1 or max_bytes < 1:
            raise ValueError("batch limits must be at least 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lo = after_seq + 1
        self._items: list[DeliveryItem] = []
        self._nbytes = 0
        self._open_stream = open_stream
        self._stream: Any = None
        #: ``time.monotonic()`` when the pending batch got its first item (None: no items pending).
        self.opened_at: float | None = None

    @property
    def pending(self) -> int:
        """Items waiting in the open batch."""
        return len(self._items)

    @property
    def next_seq(self) -> int:
        """First sequence number not yet covered by a closed batch."""
        return self._lo

    def add(self, item: DeliveryItem, size: int) -> list[Batch] | None:
        """Add one encoded item of ``size`` bytes; return the batch(es) this closed, else None."""
        closed = None
        if self._items and self._nbytes + size > self.max_bytes:
            closed = [self._close(item.seq - 1)]  # would overflow: ship what we have first
        if not self._items:
            self.opened_at = time.monotonic()
            if self._open_stream is not None:
                self._stream = self._open_stream()
        self._items.append(item)
        self._nbytes += size
        if self._stream is not None:
            self._stream.add(item)
        if len(self._items) >= self.max_events or self._nbytes >= self.max_bytes:
            full = self._close(item.seq)
            if closed is None:
                return [full]
            closed.append(full)
        return closed

    def close(self, hi: int) -> Batch | None:
        """Close the open batch so it covers everything up to ``hi`` (rows read but skipped
        included). Returns None if nothing was read since the last batch."""
        if hi < self._lo:
            return None
        return self._close(hi)

    def age(self, now: float) -> float:
        """Seconds the oldest pending item has waited (0 when none)."""
        return 0.0 if self.opened_at is None else now - self.opened_at

    def reset(self, after_seq: int) -> None:
        """Forget the open batch and start again after ``after_seq`` (a rewind)."""
        self._items = []
        self._nbytes = 0
        self._lo = after_seq + 1
        self.opened_at = None
        self._stream = None

    def _close(self, hi: int) -> Batch:
        batch = Batch(self._items, self._lo, hi, self._nbytes)
        if self._stream is not None:
            batch.packed = self._stream.finish()
            self._stream = None
        self._items = []
        self._nbytes = 0
        self._lo = hi + 1
        self.opened_at = None
        return batch
