"""The drain loop: one greenlet per output instance, the only place that moves an output's cursor.

Read the next rows after the cursor, filter, hand the batch to the output, and commit the cursor only
after the output reported success (or after a permanent failure was put in the DLQ). A crash between
send and commit re-sends at most that batch: at-least-once. A cursor rewound by ``clawd-agent cursor
rewind`` while this loop runs wins, because the commit is a compare-and-set on the cursor's generation.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import orjson

from outputs.base import DeliveryItem, Outcome, Output, Status
from outputs.filters import compile_filter
from spool.types import Cursor, SpoolRow

log = logging.getLogger("clawd_agent.drain")

IDLE_POLL_S = 0.05


@dataclass
class OutputStats:
    """Counters the metrics collector and `status` read; plain numbers, no locking needed in gevent."""

    delivered: int = 0
    filtered: int = 0
    failed_attempts: int = 0
    retries: int = 0
    dlq: int = 0
    batches: int = 0
    in_flight: int = 0
    last_success_ms: int | None = None
    last_error_ms: int | None = None
    last_error: str | None = None
    healthy: bool = True
    _recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=120))

    def note_delivered(self, n: int) -> None:
        now = time.time()
        self.delivered += n
        self.last_success_ms = int(now * 1000)
        self.healthy = True
        self._recent.append((now, n))

    def rate(self, window_s: float = 60.0) -> float:
        """Events per second delivered over the last ``window_s`` seconds."""
        now = time.time()
        total = sum(n for t, n in self._recent if now - t <= window_s)
        return total / window_s


class Drain:
    """Delivers one output's backlog from the spool, forever, until ``stop()``."""

    def __init__(self, output: Output, spool: Any, reader: Any, *,
                 new_data: gevent.event.Event | None = None,
                 on_batch: Callable[[str, float, Outcome], None] | None = None,
                 rng: random.Random | None = None):
        self.output = output
        self.name = output.name
        self.config = output.config
        self.spool = spool
        self.reader = reader
        self.stats = OutputStats()
        self._accept = compile_filter(self.config.filter)
        self._new_data = new_data
        self._on_batch = on_batch
        self._rng = rng or random.Random()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish: an in-flight send completes and its outcome is committed."""
        self._stopping = True

    def run(self) -> None:
        if not self._open():
            return
        try:
            self._loop()
        finally:
            self.output.close()

    def _open(self) -> bool:
        """Open the output, retrying with backoff: a destination that is down at start is a failure
        like any other (counted, visible in status), not a crash."""
        attempt = 0
        while not self._stopping:
            attempt += 1
            try:
                self.output.open()
                return True
            except Exception as exc:
                self._note_failure(f"open failed: {_describe(exc)}")
                self.stats.retries += 1
                if self._sleep_unless_stopping(self._backoff(attempt, None)):
                    return False
        return False

    def _note_failure(self, reason: str) -> None:
        self.stats.failed_attempts += 1
        self.stats.last_error = reason
        self.stats.last_error_ms = int(time.time() * 1000)
        self.stats.healthy = False

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        cursor = self._cursor()
        while not self._stopping:
            rows = self.reader.read_after(cursor.seq, self.config.batch_max_events)
            if not rows:
                self._wait_for_data()
                cursor = self._cursor()  # caught up: pick up a rewind done by the CLI meanwhile
                continue
            if len(rows) < self.config.batch_max_events and self.config.batch_max_wait > 0:
                rows = self._fill(cursor.seq, rows)
            done = self._deliver(rows)
            if not done:
                continue  # stopping during a retry wait: the cursor stays, the spool keeps the batch
            if self.spool.commit_cursor(self.name, rows[-1].seq, cursor.generation):
                cursor = Cursor(rows[-1].seq, cursor.generation)
            else:
                cursor = self._cursor()
                log.info("cursor moved externally", extra={"output": self.name, "seq": cursor.seq})

    def _cursor(self) -> Cursor:
        return self.spool.get_cursor(self.name) or self.spool.ensure_cursor(self.name, self.config.start_at)

    def _wait_for_data(self) -> None:
        if self._new_data is not None:
            self._new_data.clear()
            self._new_data.wait(timeout=1.0)
        else:
            gevent.sleep(IDLE_POLL_S)

    def _fill(self, after: int, rows: list[Any]) -> list[Any]:
        """Wait up to batch_max_wait for a fuller batch (fewer, larger requests under load)."""
        deadline = time.monotonic() + self.config.batch_max_wait
        while len(rows) < self.config.batch_max_events and time.monotonic() < deadline:
            gevent.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
            rows = self.reader.read_after(after, self.config.batch_max_events)
        return rows

    def _decode(self, rows: list[Any]) -> tuple[list[DeliveryItem], list[DeliveryItem]]:
        accept = self._accept
        if accept is None and not self.output.reads_events:
            return [DeliveryItem(row.seq, {}, row.body, row.event_id) for row in rows], []
        items, corrupt = [], []
        for row in rows:
            try:
                event = orjson.loads(row.body)
            except orjson.JSONDecodeError:
                corrupt.append(DeliveryItem(row.seq, {}, row.body, row.event_id))
                continue
            if accept is None or accept(event):
                items.append(DeliveryItem(row.seq, event, row.body, row.event_id))
            else:
                self.stats.filtered += 1
        return items, corrupt

    def _deliver(self, rows: list[Any]) -> bool:
        """Deliver one batch until it succeeded or went to the DLQ; False if stopped meanwhile."""
        items, corrupt = self._decode(rows)
        if corrupt:
            self._to_dlq(corrupt, "spool row is not valid JSON", attempts=0)
        if not items:
            return True
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            self.stats.in_flight = len(items)
            try:
                outcome = self.output.send(items)
            except Exception as exc:  # an output bug must not kill delivery of the others
                log.exception("output raised", extra={"output": self.name})
                outcome = Outcome.retry(f"output error: {type(exc).__name__}")
            finally:
                self.stats.in_flight = 0
            elapsed = time.monotonic() - started
            self.stats.batches += 1
            if self._on_batch is not None:
                self._on_batch(self.name, elapsed, outcome)
            if outcome.status is Status.DELIVERED:
                self.stats.note_delivered(len(items))
                return True
            self._note_failure(outcome.reason)
            if outcome.status is Status.PERMANENT:
                failed = outcome.failed or items
                self._to_dlq(failed, outcome.reason, attempts=attempt)
                ok = len(items) - len(failed)
                if ok:
                    self.stats.note_delivered(ok)
                return True
            self.stats.retries += 1
            delay = self._backoff(attempt, outcome.retry_after)
            log.warning("delivery failed, will retry",
                        extra={"output": self.name, "reason": outcome.reason, "attempt": attempt,
                               "retry_in_s": round(delay, 3)})
            if self._sleep_unless_stopping(delay):
                return False

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.config.retry_max, self.config.retry_initial * (2 ** (attempt - 1)))
        delay = self._rng.uniform(0, cap)  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.retry_max))
        return delay

    def _sleep_unless_stopping(self, delay: float) -> bool:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self._stopping:
                return True
            gevent.sleep(min(0.1, deadline - time.monotonic()))
        return self._stopping

    def _to_dlq(self, items: list[DeliveryItem], reason: str, attempts: int) -> None:
        rows = [SpoolRow(i.seq, i.event_id, 0, i.body) for i in items]
        self.spool.dlq_add(self.name, rows, reason, None, attempts)
        self.stats.dlq += len(items)
        log.error("events sent to the DLQ", extra={"output": self.name, "count": len(items),
                                                    "reason": reason})


def _describe(exc: BaseException) -> str:
    """An error for logs and status: the OS reason when there is one (never a URL or credential)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
