"""Ordered commit of pipelined batches: where the cursor may move, whatever order batches finish in.

Batches are registered in read order and each owns a contiguous seq range (``outputs.batcher``). With
several in flight, a later batch can finish first; the cursor may still only move to the end of the
longest run of finished batches from the start, or a crash would skip the unfinished one. Batches that
finished beyond that point are remembered as ``done_ranges`` and committed alongside the cursor, so a
restart re-sends only what had not finished (``Spool.commit_cursor(..., done=...)``).

The number of registered, uncommitted batches is bounded by the drain (its window), so the list of
done ranges stays short however long a stuck batch blocks the cursor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from outputs.batcher import Batch

Range = tuple[int, int]


class CommitWindow:
    """Registered batches in order; ``committed`` is the seq every earlier event is finished at."""

    def __init__(self, committed: int, prior_done: Iterable[Range] = ()):
        self.committed = committed
        self._open: deque[Batch] = deque()
        #: Ranges finished before a restart, above ``committed``, not reached by the reader yet.
        self.prior_done: list[Range] = sorted((lo, hi) for lo, hi in prior_done if hi > committed)

    def __len__(self) -> int:
        """Registered batches not yet passed by ``committed`` (finished or not)."""
        return len(self._open)

    def register(self, batch: Batch) -> None:
        expected = self._open[-1].hi + 1 if self._open else self.committed + 1
        if batch.lo != expected:
            raise ValueError(f"batch range [{batch.lo}, {batch.hi}] does not follow {expected - 1}")
        self._open.append(batch)
        self.prior_done = [r for r in self.prior_done if r[1] > batch.hi]
        if batch.done:
            self._advance()

    def finish(self, batch: Batch) -> bool:
        """Mark ``batch`` finished (delivered or DLQ'd). True if ``committed`` moved."""
        batch.done = True
        return self._advance()

    def _advance(self) -> bool:
        moved = False
        while self._open and self._open[0].done:
            self.committed = self._open.popleft().hi
            moved = True
        return moved

    def skip_range(self, seq: int) -> Range | None:
        """The prior done range holding ``seq``, if any (the reader skips those rows)."""
        for lo, hi in self.prior_done:
            if lo <= seq <= hi:
                return lo, hi
            if lo > seq:
                break
        return None

    def done_ranges(self) -> list[Range]:
        """Finished ranges above ``committed``, merged: what a restart must not send again."""
        out: list[list[int]] = []
        for b in self._open:
            if not b.done:
                continue
            if out and out[-1][1] + 1 == b.lo:
                out[-1][1] = b.hi
            else:
                out.append([b.lo, b.hi])
        return [(lo, hi) for lo, hi in out] + self.prior_done
