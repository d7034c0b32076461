"""``SpoolWriter``: group commit in front of ``Spool.append_many`` for gevent inputs.

Many input greenlets call ``write(batch)``; each blocks (only itself) until the transaction holding its
batch committed, and gets its ``AppendResult`` or the spool's error (e.g. ``SpoolFull``). One writer
greenlet takes everything pending (up to ``max_events``; lingering up to ``max_delay_s`` for more when
fewer are pending) and commits it in one transaction. While a commit runs in the threadpool, new batches
queue up and form the next group, so the group size adapts to the load on its own.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

import gevent
import gevent.event

from .store import Spool
from .types import AppendResult, IngestBatch, SpoolError

log = logging.getLogger("clawd.spool.writer")

DEFAULT_MAX_EVENTS = 20_000
DEFAULT_MAX_DELAY_S = 0.0


class SpoolWriter:
    """Group-commit front of a ``Spool``.

    :param max_events: most events in one transaction (a single larger batch still goes alone).
    :param max_delay_s: how long to wait for more batches once one is pending and fewer than
      ``max_events`` are; 0 = commit at once (groups still form while the previous commit runs).
    """

    def __init__(
        self,
        spool: Spool,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        on_commit: Callable[[], None] | None = None,
    ):
        if max_events <= 0:
            raise ValueError("max_events must be positive")
        if max_delay_s < 0:
            raise ValueError("max_delay_s must be >= 0")
        self.spool = spool
        self.max_events = max_events
        self.max_delay_s = max_delay_s
        # (batch or None for a flush marker, result)
        self._pending: collections.deque[tuple[IngestBatch | None, gevent.event.AsyncResult]] = (
            collections.deque()
        )
        self._pending_events = 0
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        #: Transactions committed, batches and events in them (for metrics and tests).
        self.commits = 0
        self.batches_committed = 0
        self.events_committed = 0
        #: Called after every transaction that committed events (wakes the outputs' drain loops).
        self._on_commit = on_commit

    # -- public ----------------------------------------------------------------------------

    def start(self) -> SpoolWriter:
        if self._greenlet is not None:
            raise SpoolError("SpoolWriter already started")
        self._greenlet = gevent.spawn(self._run)
        self._greenlet.name = "spool-writer"
        return self

    def write(self, batch: IngestBatch) -> AppendResult:
        """Queue ``batch`` and wait until its transaction committed. Raises the spool's error."""
        return self._enqueue(batch).get()

    def submit(self, batch: IngestBatch) -> gevent.event.AsyncResult:
        """Queue ``batch`` without waiting; ``.get()`` on the result returns its ``AppendResult`` or raises
        the spool's error once its transaction is done. Lets an input map its next chunk meanwhile."""
        return self._enqueue(batch)

    def flush(self) -> None:
        """Return once every batch queued before this call is committed (or failed)."""
        if self._greenlet is None or self._greenlet.dead:
            return
        if self._stopping:  # stop() commits everything pending before the greenlet ends
            self._greenlet.join()
            return
        self._enqueue(None).get()

    def stop(self) -> None:
        """Commit everything pending, then stop the writer greenlet. Later writes raise ``SpoolError``."""
        self._stopping = True
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.join()

    @property
    def pending_events(self) -> int:
        return self._pending_events

    # -- internals -------------------------------------------------------------------------

    def _enqueue(self, batch: IngestBatch | None) -> gevent.event.AsyncResult:
        if self._greenlet is None or self._stopping or self._greenlet.dead:
            raise SpoolError("spool writer is not running")
        result = gevent.event.AsyncResult()
        self._pending.append((batch, result))
        if batch is not None:
            self._pending_events += len(batch.events)
        self._wake.set()
        return result

    def _wait_for_group(self) -> bool:
        while not self._pending:
            if self._stopping:
                return False
            self._wake.clear()
            self._wake.wait()
        if self.max_delay_s > 0:
            deadline = time.monotonic() + self.max_delay_s
            while self._pending_events < self.max_events and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                self._wake.wait(remaining)
        return True

    def _take_group(self) -> list[tuple[IngestBatch | None, gevent.event.AsyncResult]]:
        group = []
        n = 0
        while self._pending:
            batch, _ = self._pending[0]
            size = len(batch.events) if batch is not None else 0
            if group and n + size > self.max_events:
                break
            group.append(self._pending.popleft())
            n += size
            self._pending_events -= size
        return group

    def _run(self) -> None:
        group: list[tuple[IngestBatch | None, gevent.event.AsyncResult]] = []
        try:
            while self._wait_for_group():
                group = self._take_group()
                self._commit(group)
        finally:
            for _, result in group:  # a group this greenlet died in: nobody may wait for it forever
                if not result.ready():
                    result.set_exception(SpoolError("spool writer stopped"))
            while self._pending:
                _, result = self._pending.popleft()
                result.set_exception(SpoolError("spool writer stopped"))
            self._pending_events = 0

    def _commit(self, group: list[tuple[IngestBatch | None, gevent.event.AsyncResult]]) -> None:
        items = [(b, r) for b, r in group if b is not None]
        markers = [r for b, r in group if b is None]
        if items:
            try:
                results = self.spool.append_many([b for b, _ in items])
            except Exception as exc:
                if len(items) == 1:
                    items[0][1].set_exception(exc)
                else:
                    # One bad or oversized batch must not fail its neighbours: retry each on its own.
                    log.debug("group of %d batches failed (%s); retrying one by one", len(items), exc)
                    for batch, result in items:
                        try:
                            one = self.spool.append(batch)
                        except Exception as exc_one:
                            result.set_exception(exc_one)
                        else:
                            self._count(1, len(batch.events))
                            result.set(one)
            else:
                self._count(len(items), sum(len(b.events) for b, _ in items))
                for (_, result), res in zip(items, results, strict=True):
                    result.set(res)
        for result in markers:
            result.set(None)

    def _count(self, batches: int, events: int) -> None:
        self.commits += 1
        self.batches_committed += batches
        self.events_committed += events
        if events and self._on_commit is not None:
            try:
                self._on_commit()
            except Exception:  # a wake-up hook must not kill the writer (its group would wait forever)
                log.exception("spool writer: on_commit hook failed")
