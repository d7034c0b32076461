"""The rows of the spool's latest append transactions, kept in memory for the drains.

A drain that keeps up reads rows a few milliseconds after they were committed. Reading them back
from SQLite costs ~2 us a row of the agent's loop (a step per row, the interpreter lock given up and
taken back around each, a bytes copy of every body), ~1/20 of an event's whole CPU in the file ->
Elasticsearch benchmark. The appending process already holds those rows: the same ids and bodies it
just inserted, and their sequence numbers, which it learns exactly (``Spool._append_tx``: published
only when every event of the transaction was inserted and the sequence advanced by exactly their
number). So ``SpoolReader.read_after`` answers from here when it can and from SQLite otherwise (an
older position, rows evicted, a transaction with duplicates, another process's spool). The rows are
published only after their transaction committed, so nothing uncommitted is ever delivered.

Between a transaction's COMMIT (in SQLite's thread) and its rows being published here (back in the
loop, once the thread's result is handed over: milliseconds on a busy loop) a drain woken by a timer
would find those rows in SQLite and read them back, the very cost this module saves: in the file ->
Elasticsearch benchmark 12% of the transactions, 22% of the rows. So a reader that has every row this
process committed (``committed``) while an append is under way (``appending``) is told there is
nothing yet; the append's commit wakes the drains, and they read its rows from here.

The same window exists for deletions (``drop_oldest``, retention): between their COMMIT and
``forget_upto`` back in the loop, the rows they deleted are still here. So the transaction itself
sets ``deleted_upto`` before its COMMIT (an int, set in SQLite's thread, read once by ``after``):
rows up to it are never answered from here, and a reader behind them reads SQLite. A transaction
rolled back after setting it costs those readers a read of SQLite, nothing else.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any

from .types import SpoolRow

#: Rows kept at most (whole transactions; the oldest go first), ~1 KB of body each: ~3 MiB. A drain
#: reads up to 1,500 at once. Rows every reader has gone past are dropped at once, so a drain that
#: keeps up leaves little more than the transaction it has not read yet.
MAX_ROWS = 3000


class RecentRows:
    """Consecutive runs of committed rows, oldest first; ``after(seq, limit)`` like a read."""

    __slots__ = ("_positions", "_rows", "_runs", "appending", "committed", "deleted_upto", "hits",
                 "max_rows", "misses", "waits")

    def __init__(self, max_rows: int = MAX_ROWS, committed: int = 0):
        self._runs: deque[tuple[int, list[SpoolRow]]] = deque()  # (first seq, rows)
        self._rows = 0
        #: Each reader's last position (the seq it read after), while the reader exists.
        self._positions: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.max_rows = max_rows
        #: Reads answered here, and reads that went to SQLite (tests check both paths were taken).
        self.hits = 0
        self.misses = 0
        #: The last seq of this process's spool when its latest append committed (or when it opened).
        self.committed = committed
        #: Append transactions under way (set around ``Spool.append_many``).
        self.appending = 0
        #: Reads answered "nothing yet" because they had every committed row and an append was running.
        self.waits = 0
        #: Every event up to this seq is deleted, or about to be: set by the deleting transaction
        #: before its COMMIT, so no read from here returns them meanwhile (``forget_upto`` frees them).
        self.deleted_upto = 0

    def committed_to(self, last_seq: int) -> None:
        """An append committed and the spool's last seq is now ``last_seq`` (its rows, if publishable,
        were added first)."""
        self.committed = max(self.committed, last_seq)

    def add(self, first_seq: int, rows: list[SpoolRow]) -> None:
        """``rows`` were committed with seq ``first_seq``, ``first_seq + 1``, ... in this order."""
        if not rows:
            return
        self._runs.append((first_seq, rows))
        self._rows += len(rows)
        while self._rows > self.max_rows and len(self._runs) > 1:
            self._rows -= len(self._runs.popleft()[1])

    def forget_upto(self, seq: int) -> None:
        """The spool deleted every event up to ``seq`` (``drop_oldest``, retention): hold none of
        them, so a reader behind them reads SQLite, which no longer has them, instead of delivering
        events the spool counted as dropped."""
        runs = self._runs
        while runs and runs[0][0] <= seq:
            first, rows = runs.popleft()
            self._rows -= len(rows)
            keep = rows[seq - first + 1:]
            if keep:
                runs.appendleft((seq + 1, keep))
                self._rows += len(keep)
                break

    def after(self, seq: int, limit: int, reader: Any = None) -> list[SpoolRow] | None:
        """Up to ``limit`` rows from ``seq + 1`` on, or None when ``seq + 1`` is not held here (then
        the caller reads SQLite), or ``[]`` when the reader had every row committed so far and an
        append is under way (its rows are published here when it returns). Stops at the first gap
        between runs: the rows after it are read on the next call, from here or from SQLite.
        ``reader`` (any object that can be weakly referenced) is done with every row up to ``seq``:
        once all readers are, those rows are dropped."""
        if reader is not None:
            self._positions[reader] = seq
            self._drop_read()
        want = seq + 1
        out: list[SpoolRow] | None = None
        runs = self._runs if want > self.deleted_upto else ()  # deleted, or being deleted: SQLite
        for first, rows in runs:
            if out is None:
                if not first <= want < first + len(rows):
                    continue
                out = rows[want - first:want - first + limit]
            elif first == want and len(out) < limit:
                out += rows[:limit - len(out)]
            else:
                break
            want = first + len(rows)
        if out is None:
            if self.appending and seq >= self.committed:
                self.waits += 1  # the running append may have committed: its rows come here
                return []
            self.misses += 1
        else:
            self.hits += 1
        return out

    def _drop_read(self) -> None:
        done = min(self._positions.values())
        runs = self._runs
        while runs and runs[0][0] + len(runs[0][1]) - 1 <= done:
            self._rows -= len(runs.popleft()[1])

    @property
    def rows(self) -> int:
        """Rows held now."""
        return self._rows
