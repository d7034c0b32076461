"""The drain: one per output instance, the only place that moves an output's cursor.

Shape (docs/outputs.md has the full picture)::

    reader (this greenlet) ── rows after the cursor ── decode? ── select (filter + routes) ── encode
        └─ Batcher (count / bytes / age) ── CommitWindow.register ── Pool(concurrency).spawn(_deliver)
    _deliver (one greenlet per batch in flight)
        breaker.allow ── limiter.reserve ── output.send ── act on the Outcome (retry with backoff,
        DLQ, bisect, partial) ── CommitWindow.finish
        ── Spool.commit_cursor(highest contiguous finished seq, generation, done ranges), then the
        next batch may take the slot
    commit greenlet ── the same commit when only skipped (filtered) rows moved the window
    health greenlet ── Output.healthcheck every healthcheck_interval

Guarantees: the cursor only passes events that were delivered or put in the DLQ, in seq order, however
batches finish; a crash at any instant re-sends only the batches that were in flight (at most
``concurrency`` of them: at-least-once, and no more duplicates than that);
retries never drop data (the spool holds the backlog, the breaker and the rate limiter only delay);
``clawd-agent cursor rewind`` wins during a run (the commit is a compare-and-set on the cursor's
generation; batches of an older generation are abandoned). DLQ replay requests written by
``clawd-agent dlq replay`` are picked up from the spool and sent through the same path.

Cost per event on the hot path: one ``orjson.loads`` only when a filter, a route or the output's
format needs the event, one ``DeliveryItem``, one ``encode`` call. Everything else is per batch.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool

from outputs.base import DeliveryItem, Outcome, Output, Status
from outputs.batcher import Batch, Batcher
from outputs.breaker import Breaker
from outputs.health import HealthMonitor
from outputs.inflight import CommitWindow
from outputs.packing import Packed, pack, unpack
from outputs.ratelimit import RateLimiter
from outputs.render import Renderer, items_of
from outputs.replay import replay_batches
from outputs.routing import Selector, compile_selector
from outputs.stats import OutputStats, describe_error
from spool.types import SpoolRow

__all__ = ["Drain", "OutputStats"]

log = logging.getLogger("clawd_agent.drain")

IDLE_POLL_S = 0.05
IDLE_WAIT_S = 1.0
#: How often the drain looks for DLQ entries marked for replay.
REPLAY_POLL_S = 1.0
#: Rows read from the spool at once (a batch may span chunks). The rows, what they render to and the
#: helper's share are all in memory at once: 5,000 rows cost ~28 MiB more than 2,000 (agent + helper)
#: on a backlog drain, for ~10% more speed where delivery alone already runs at twice the rate ingest
#: can feed it; 1,500 cost 3.5 MiB less than 2,000 (backlog drain 94 against 98 MiB). While ingest
#: runs at full speed, each stall of the output (the ES mock's id table growing, in bench/delivery.py)
#: leaves a backlog the drain catches up from in whole chunks beside ingest's own buffers, and the
#: agent's heap grew at each: over 3,000,000 events its peak RSS was 75.5-75.9 MiB with 1,500 rows,
#: 71.6-72.0 with 1,000 and 70.7-70.8 with 750 (2 runs each; the helper's 28.2-28.6, 27.5 and 27.4).
READ_CHUNK = 750
#: With the offload helper: the share of each chunk rendered there (the rest renders here meanwhile;
#: the helper also maps ingest), and the smallest chunk worth splitting.
OFFLOAD_SHARE = 0.5
OFFLOAD_MIN_ROWS = 512
#: ... and only while the helper has fewer jobs than this waiting: behind a queue of ingest chunks a
#: render job would leave this loop waiting for its answer, idle, while rendering it here is sooner.
OFFLOAD_MAX_QUEUED = 2
#: The share of an output's send slots a DLQ replay may hold at once (at least one): the rest stay
#: for live events. A replay of thousands of entries held every slot (it took 4 batches a poll, the
#: default concurrency), and live alerts waited behind the whole replay.
REPLAY_SLOT_SHARE = 0.5
_OWN = object()
_NO_EPOCH = -1


class _Restart(Exception):
    """Abandon the chunk being batched: stopping, or the cursor was rewound."""


class Drain:
    """Delivers one output's backlog from the spool, forever, until ``stop()``."""

    def __init__(self, output: Output, spool: Any, reader: Any, *,
                 new_data: gevent.event.Event | None = None,
                 on_batch: Callable[[str, float, Outcome], None] | None = None,
                 rng: random.Random | None = None,
                 selector: Any = _OWN,
                 stats: OutputStats | None = None,
                 pipeline_factory: Callable[[Any], Any] | None = None,
                 offload: Any = None):
        self.output = output
        self.name = output.name
        self.config = cfg = output.config
        self.spool = spool
        self.reader = reader
        self.stats = stats or OutputStats()
        self._select: Selector | None = (compile_selector(self.name, {self.name: cfg})
                                         if selector is _OWN else selector)
        self._new_data = new_data
        self._on_batch = on_batch
        self._rng = rng or random.Random()
        self._pipeline_factory = pipeline_factory
        self._offload = offload  # agent.offload.OffloadHelper, or None
        self._renderer: Renderer | None = None
        self._use_offload = False
        #: Output.packer(), taken once the output is open: batches travel packed (outputs.packing).
        self._packer: Callable[[list[bytes]], Any] | None = None
        self.concurrency = output.send_slots
        self.max_bytes = int(cfg.batch_max_bytes or output.default_batch_max_bytes)
        self._window_size = self.concurrency + 2  # in flight, plus batches read ahead
        self.breaker = Breaker(cfg.breaker_failures, cfg.breaker_cooldown, cfg.breaker_cooldown_max)
        self.limiter = RateLimiter(cfg.rate_limit_requests, cfg.rate_limit_events)
        self._stopping = False
        self._hold_until = 0.0  # monotonic time before which no batch is sent (Retry-After)
        self._stop = gevent.event.Event()
        self._room = gevent.event.Event()  # a batch finished: the reader may register more
        self._commit_due = gevent.event.Event()  # skipped rows moved the window: commit lazily
        self._commit_lock = gevent.lock.Semaphore()
        self._pool = gevent.pool.Pool(self.concurrency)
        self._decode = True
        self._refresh_due = False
        self._rewound = False
        self._generation = 0
        self._window = CommitWindow(0)
        self._batcher = Batcher(cfg.batch_max_events, self.max_bytes, 0)
        self._read_pos = 0
        self._last_done: list[tuple[int, int]] = []
        self._last_commit = -1
        self._replay_inflight: set[int] = set()
        self._replay_batches = 0
        #: The batches counted in ``stats.in_flight*``, by id: each is taken back when its send ends,
        #: or by ``run`` when its greenlet was killed before it started (see ``_uncount``).
        self._counted: dict[int, Batch] = {}
        self._next_replay_check = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the drain to finish: sends in progress complete and their outcome is committed; a
        batch waiting (backoff, breaker, rate limit) stays in the spool for the next run."""
        self._stopping = True
        self._stop.set()
        self._room.set()
        self._commit_due.set()
        if self._new_data is not None:
            self._new_data.set()

    def run(self) -> None:
        output = self.output
        output.on_response = self._on_response
        if self._pipeline_factory is not None:
            output.pipeline = self._pipeline_factory(self.config)
        self._renderer = Renderer(output, self._select)
        self._decode = self._renderer.decode
        # Rendering moves to the offload helper when there is work to move and send() needs only
        # the encoded bytes (the events themselves do not travel back).
        self._use_offload = self._offload is not None and self._renderer.release
        if not self._open():
            return
        self._packer = output.packer()
        helpers = [gevent.spawn(self._commit_loop)]
        if self.config.healthcheck_interval > 0:
            monitor = HealthMonitor(output, self.stats, interval=self.config.healthcheck_interval,
                                    timeout=self.config.healthcheck_timeout, stop=self._stop)
            helpers.append(gevent.spawn(monitor.run))
        try:
            self._loop()
            self._pool.join()
            self._commit_now()
        finally:
            self._stopping = True
            self._stop.set()
            self._pool.kill(block=True, timeout=2)
            # A batch greenlet killed before it started never ran _deliver's finally; the stats
            # outlive this drain (the supervisor hands them to the one it restarts after a crash).
            for batch in list(self._counted.values()):
                self._uncount(batch)
            gevent.killall(helpers, block=True, timeout=2)
            output.close()

    def _on_response(self, status_class: str, seconds: float) -> None:
        self.stats.note_response(status_class, seconds)

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
                self.stats.note_failure(f"open failed: {describe_error(exc)}")
                self.stats.retries += 1
                if self._sleep(self._backoff(attempt, None)):
                    return False
        return False

    # -- reading and batching --------------------------------------------------------------------
    def _loop(self) -> None:
        self._reset()
        new_data = self._new_data
        while not self._stopping:
            if self._rewound:
                self._rewound = False
                self._check_rewind()
            now = time.monotonic()
            if now >= self._next_replay_check:
                self._next_replay_check = now + REPLAY_POLL_S
                self._pick_up_replays()
            if new_data is not None:
                new_data.clear()
            try:
                rows = self.reader.read_after(self._read_pos, READ_CHUNK)
                if rows:
                    self._consume(rows)
                    self._flush_if_aged()
                    continue
                batcher = self._batcher
                if batcher.pending:
                    wait = self.config.batch_max_wait - batcher.age(time.monotonic())
                    if wait <= 0:
                        self._flush()
                    else:
                        self._wait_for_data(wait)
                    continue
            except _Restart:
                self._rewound = not self._stopping
                continue
            self._wait_for_data(IDLE_WAIT_S)
            self._check_rewind()  # caught up: pick up a rewind done by the CLI meanwhile

    def _reset(self) -> None:
        """(Re)start from the stored cursor: at start, and after a rewind by the CLI."""
        state = self.spool.get_cursor_done(self.name)
        if state is None:
            cursor, done = self.spool.ensure_cursor(self.name, self.config.start_at), []
        else:
            cursor, done = state
        self._generation = cursor.generation
        self._window = CommitWindow(cursor.seq, done)
        self._batcher = Batcher(self.config.batch_max_events, self.max_bytes, cursor.seq,
                                self.output.pack_stream if self._packer is not None else None)
        self._read_pos = cursor.seq
        self._last_commit = cursor.seq
        self._last_done = list(done)
        self._room.set()

    def _cursor_moved(self) -> bool:
        # On the drain's own read connection: checked on every wake-up, and the spool's connection
        # would make each one wait for the append transaction in progress (~4 ms on average at
        # 2,000 events/s on this VM, 25 ms at p99, all of it added to delivery latency).
        cursor = self.reader.get_cursor(self.name)
        return cursor is not None and cursor.generation != self._generation

    def _check_rewind(self) -> None:
        if self._cursor_moved():
            log.info("cursor moved externally", extra={"output": self.name})
            self._reset()

    def _wait_for_data(self, timeout: float) -> None:
        if self._new_data is not None:
            self._new_data.wait(timeout=timeout)
        else:
            self._stop.wait(min(timeout, IDLE_POLL_S))

    def _flush(self) -> None:
        batch = self._batcher.close(self._read_pos)
        if batch is not None:
            self._dispatch(batch)

    def _flush_if_aged(self) -> None:
        """Send the open batch once its oldest event waited ``batch_max_wait``, also while reads keep
        finding rows: those may all be skipped (filtered, routed elsewhere), and a stream that never
        pauses must not hold a matching event back until ``batch_max_events`` more match. Not while
        every send slot is busy: the batch could not leave sooner, so it keeps growing meanwhile."""
        batcher = self._batcher
        if (batcher.pending and batcher.age(time.monotonic()) >= self.config.batch_max_wait
                and self._pool.free_count() > 0 and len(self._window) < self._window_size):
            self._flush()

    def _consume(self, rows: list[SpoolRow]) -> None:
        """Batch one chunk of rows, skipping the ranges a previous run already finished."""
        window = self._window
        while window.prior_done and rows:
            lo, hi = window.prior_done[0]
            if rows[-1].seq < lo:
                break
            head = [r for r in rows if r.seq < lo]
            if head:
                self._consume_rows(head)
            before = self._batcher.close(lo - 1)
            if before is not None:
                self._dispatch(before)
            self._dispatch(Batch([], lo, hi))
            self._batcher.reset(hi)
            self._read_pos = max(self._read_pos, hi)
            rows = [r for r in rows if r.seq > hi]
        if rows:
            self._consume_rows(rows)

    def _consume_rows(self, rows: list[SpoolRow]) -> None:
        """Render a chunk and batch what it gives. With the offload helper, its first part renders
        there while the rest renders here, so both cores work on it; the order of events is kept."""
        if self._use_offload and len(rows) >= OFFLOAD_MIN_ROWS and self._offload.queued < OFFLOAD_MAX_QUEUED:
            cut = int(len(rows) * OFFLOAD_SHARE)
            there = [(r[0], r[1], r[3]) for r in rows[:cut]]
            renderer = self._renderer
            pending = self._offload.submit("render", (self.name, there), lambda: renderer.render(there))
            items_here, filtered_here, rejected_here = renderer.render_items(rows[cut:])
            items, filtered, rejected = items_of(pending.get())
            items += items_here
            filtered += filtered_here
            rejected += rejected_here
        else:
            items, filtered, rejected = self._renderer.render_items(rows)
        if rejected:
            # Before any batch of this chunk is dispatched: those batches' ranges cover the rejected
            # rows, and once one finishes the cursor (or a done range) passes them for good.
            self._reject(rejected)
        add = self._batcher.add
        dispatch = self._dispatch
        for item in items:
            closed = add(item, len(item.data))
            if closed is not None:
                for batch in closed:
                    dispatch(batch)
        self._read_pos = rows[-1].seq
        self.stats.filtered += filtered
        if not self._batcher.pending:
            self._flush()  # only skipped rows since the last batch: a finished range

    def _reject(self, rejected: list[tuple[DeliveryItem, str]]) -> None:
        """Events that can never be sent (corrupt row, a transform refused it): DLQ, grouped by reason.

        Returns only once every group is stored: a failed write (the CLI holding the write lock, a
        full disk) is retried with backoff, as a send is, since a crash would restart the drain
        behind nothing and the next write may well succeed. Raises ``_Restart`` when stopping first:
        nothing of the chunk was dispatched, so its rows stay in the spool for the next run."""
        by_reason: dict[str, list[DeliveryItem]] = {}
        for item, reason in rejected:
            by_reason.setdefault(reason, []).append(item)
        for reason, items in by_reason.items():
            def store(items: list[DeliveryItem] = items, reason: str = reason) -> bool:
                self._to_dlq(None, items, reason, "", attempts=0)
                return True

            if not self._retrying("storing rejected events in the DLQ", store):
                raise _Restart  # the next run reads the chunk again: a stored group may be stored twice

    def _dispatch(self, batch: Batch) -> None:
        """Register ``batch`` for ordered commit and start sending it. Blocks while the window is full
        (the cursor is stuck behind an unfinished batch) or every send slot is busy."""
        while len(self._window) >= self._window_size:
            self._room.clear()
            if len(self._window) < self._window_size:
                break
            if self._stopping:
                raise _Restart  # the rows stay in the spool
            if not self._room.wait(IDLE_WAIT_S) and self._cursor_moved():
                raise _Restart  # rewound while stuck behind a failing batch: a rewind still wins
        batch.epoch = self._generation
        if not batch.items:
            batch.done = True
            self._window.register(batch)
            self._commit_due.set()
            return
        self._window.register(batch)
        if self._packer is not None:
            # Here, not in the batch's greenlet: that one runs only when this loop yields, and while
            # a backlog renders in the agent it does not, so unpacked batches would fill every send
            # slot (~25 MiB at Elasticsearch's 5 MiB batches).
            self._pack(batch)
        # Every send slot busy (the pool fills before the window does): wait here, not in spawn,
        # so a rewind still wins while each batch in flight keeps failing (a poison batch the
        # operator skips with `cursor rewind --seq`, at concurrency 1 above all). The batch waits
        # registered and packed; on a rewind the new window drops it, unsent. It counts as in
        # flight (``stats.in_flight*``: "being sent") once it has its send slot, not while it waits
        # for one: at most ``concurrency`` batches are in flight (docs/outputs.md §2).
        while self._pool.free_count() <= 0:
            if self._stopping or (not self._pool.wait_available(timeout=IDLE_WAIT_S)
                                  and self._cursor_moved()):
                raise _Restart  # its rows stay in the spool
        self._count(batch)
        self._pool.spawn(self._deliver, batch)

    # -- DLQ replay ------------------------------------------------------------------------------
    def _pick_up_replays(self) -> None:
        """Send DLQ entries marked by `clawd-agent dlq replay` through the normal delivery path, in
        at most ``REPLAY_SLOT_SHARE`` of the send slots and only into free ones (``spawn`` into a
        full pool would block this loop, and live batches with it). Entries left over stay marked
        for the next poll."""
        slots = min(self._pool.free_count(),
                    max(1, int(self.concurrency * REPLAY_SLOT_SHARE)) - self._replay_batches)
        if slots <= 0:
            return
        limit = slots * self.config.batch_max_events
        pending = self.spool.dlq_replay_pending(self.name, limit + len(self._replay_inflight))
        entries = [e for e in pending if e.id not in self._replay_inflight][:limit]
        if not entries:
            return
        batches, failed = replay_batches(entries, renderer=self._renderer,
                                         max_events=self.config.batch_max_events,
                                         max_bytes=self.max_bytes)
        del batches[slots:]  # cut smaller by bytes: the rest go at the next poll
        for reason, dlq_ids in failed.items():
            try:
                self.spool.dlq_requeue(dlq_ids, reason)
            except Exception as exc:  # still marked: the next poll renders and requeues them again
                log.error("could not requeue replayed DLQ entries", extra={"output": self.name,
                                                                          "error": describe_error(exc)})
                self.stats.note_failure(f"internal error: {describe_error(exc)}")
        for batch in batches:
            batch.epoch = _NO_EPOCH
            assert batch.replay_ids is not None
            self._replay_inflight.update(batch.replay_ids.values())
            self._replay_batches += 1
            self._count(batch)
            log.info("replaying DLQ entries", extra={"output": self.name, "count": len(batch.items)})
            self._pool.spawn(self._deliver, batch)

    # -- delivery of one batch -------------------------------------------------------------------
    def _count(self, batch: Batch) -> None:
        """``batch`` is in flight (``stats.in_flight_batches``, ``stats.in_flight``)."""
        self._counted[id(batch)] = batch
        self.stats.in_flight_batches += 1
        self.stats.in_flight += len(batch.items)

    def _uncount(self, batch: Batch) -> None:
        """``batch`` is no longer in flight; once only, whoever comes first: its greenlet's
        ``finally``, or ``run``'s for a greenlet killed before it ever ran."""
        if self._counted.pop(id(batch), None) is not None:
            self.stats.in_flight_batches -= 1
            self.stats.in_flight -= len(batch.items)

    def _deliver(self, batch: Batch) -> None:
        """Send one batch until every event in it was delivered or put in the DLQ (then it counts as
        finished for the ordered commit), or until stopped / abandoned (then it is not: re-sent)."""
        finished = False
        try:
            finished = self._deliver_guarded(batch)
            if finished and batch.replay_ids:
                self.spool.dlq_done(batch.replay_ids.values())
                self.stats.replayed += len(batch.replay_ids)
        finally:
            self._uncount(batch)
            if batch.replay_ids is not None:
                self._replay_inflight.difference_update(batch.replay_ids.values())
                self._replay_batches -= 1
        if finished and batch.epoch == self._generation:
            # Commit before giving up the slot: a batch counts as finished only once the cursor (or
            # its done range) says so, so a crash re-sends at most the batches in flight.
            self._window.finish(batch)
            try:
                self._commit_now()
            except Exception as exc:  # the spool refused the write: the commit loop tries again
                log.error("cursor commit failed", extra={"output": self.name, "error": describe_error(exc)})
                self._commit_due.set()
            self._room.set()

    def _deliver_guarded(self, batch: Batch) -> bool:
        """``_deliver_items``, where an unexpected error (e.g. the spool refusing a DLQ write) is a
        failed attempt retried with backoff, never a batch silently left unfinished."""
        return self._retrying("delivering a batch", lambda: self._deliver_items(batch))

    def _retrying(self, what: str, step: Callable[[], bool]) -> bool:
        """``step()``'s answer, the step retried with backoff after an unexpected error (the spool
        refusing a write while the CLI holds its lock, a full disk): such errors pass, and a crash
        would restart the drain behind work it had not finished. False when stopping first."""
        attempt = 0
        while True:
            try:
                return step()
            except Exception as exc:
                attempt += 1
                log.exception("%s failed; retrying", what, extra={"output": self.name})
                self.stats.note_failure(f"internal error: {describe_error(exc)}")
                if self._sleep(self._backoff(attempt, None)):
                    return False

    def _deliver_items(self, batch: Batch) -> bool:
        st = self.stats
        # On the batch, and a part leaves it only once settled (delivered, or stored in the DLQ): a
        # re-entry after an error resumes with the part whose settling failed, so nothing already
        # delivered is sent (and counted) again and nothing already in the DLQ is stored twice.
        if batch.parts is None:
            batch.parts = deque([batch.items])
        queue: deque[list[DeliveryItem]] = batch.parts
        attempt = 0  # the backoff's count: reset by each answer that settled events
        #: The sends that carried each event (by id), counted once the batch needed more than one
        #: (the DLQ records them). The items of one queued list share their history: each list is
        #: a half or a subset of one sent before.
        sends: dict[int, int] | None = None
        if self._packer is not None and batch.packed is None and queue and queue[0] is batch.items:
            self._pack(batch)  # a replayed batch, or a re-entry after an error once unpacked
        while queue:
            items = queue[0]
            probe = self._await_turn(batch, len(items))
            if probe is None:
                return False
            if self._refresh_due:
                self._refresh_due = False
                try:
                    self.output.refresh_credentials()
                except Exception as exc:
                    log.warning("credential refresh failed", extra={"output": self.name,
                                                                    "error": describe_error(exc)})
            batch.attempts += 1
            sent_at = time.monotonic()
            outcome = self._attempt(batch, items, batch.packed if items is batch.items else None)
            status = outcome.status
            carried = 1
            if sends is not None or status is not Status.DELIVERED:
                if sends is None:
                    sends = {}
                for it in items:
                    sends[id(it)] = sends.get(id(it), 0) + 1
                carried = sends[id(items[0])] if items else 1
            if outcome.retry_after is not None and status is not Status.DELIVERED:
                # Retry-After speaks to the client, not to one request (RFC 9110 §10.2.3): no batch
                # of this output is sent before it has passed.
                hold = min(outcome.retry_after, self.config.retry_after_max)
                self._hold_until = max(self._hold_until, time.monotonic() + hold)
            if outcome.throttled:
                self.limiter.throttled(sent_at)
            if status is Status.RETRY:
                st.note_failure(outcome.reason)
                if outcome.auth_failure:
                    self._refresh_due = True
                    self.breaker.failure(outcome.reason, auth=True, probe=probe)
                elif outcome.throttled:
                    self.breaker.success()  # up and answering: the limiter handles throttling
                else:
                    self.breaker.failure(outcome.reason, probe=probe)
                attempt += 1
                if not self._retry_wait(batch, attempt, outcome, len(items)):
                    return False
                continue
            # The destination answered about each event: it is up and takes our credentials.
            self.breaker.success()
            if not outcome.throttled:
                self.limiter.succeeded()
            # Each branch takes the part off the queue only once its DLQ write (which may raise)
            # is stored: see above.
            if status is Status.DELIVERED:
                queue.popleft()
                self._delivered(batch, len(items))
                attempt = 0
            elif status is Status.PERMANENT:
                st.note_failure(outcome.reason)
                failed = outcome.failed or items
                self._to_dlq(batch, failed, outcome.reason, outcome.excerpt, attempts=carried)
                queue.popleft()
                self._delivered(batch, len(items) - len(failed), attempt_ok=False)
                attempt = 0
            elif status is Status.PARTIAL:
                failed, again = outcome.failed, outcome.retry_items
                if again and batch.packed is not None:  # a part is sent next: its items need their bytes
                    unpack(batch.packed, batch.items)
                    batch.packed = None
                if failed:
                    st.note_failure(outcome.reason)
                    self._to_dlq(batch, failed, outcome.reason, outcome.excerpt, attempts=carried)
                queue.popleft()
                self._delivered(batch, len(items) - len(failed) - len(again),
                                attempt_ok=not (failed or outcome.throttled))
                if again:
                    queue.appendleft(again)
                    attempt += 1
                    if not self._retry_wait(batch, attempt, outcome, len(again)):
                        return False
                else:
                    attempt = 0
            else:  # SPLIT: bisect; one event alone is the culprit
                if len(items) == 1:
                    st.note_failure(outcome.reason)
                    self._to_dlq(batch, items, outcome.reason, outcome.excerpt, attempts=carried)
                    queue.popleft()
                else:
                    if batch.packed is not None:
                        unpack(batch.packed, batch.items)
                        batch.packed = None
                    queue.popleft()
                    mid = len(items) // 2
                    queue.appendleft(items[mid:])
                    queue.appendleft(items[:mid])
        return True

    def _pack(self, batch: Batch) -> None:
        """Keep only ``batch``'s request body while it is in flight (outputs.packing); on the batch,
        so a re-entry of ``_deliver_items`` after an error finds it."""
        assert self._packer is not None
        try:
            if batch.items and batch.packed is None:  # not already packed as it filled (Batcher)
                batch.packed = pack(batch.items, self._packer)
        except Exception as exc:  # unpacked, the batch still goes: send() builds its own body
            log.warning("could not pack a batch", extra={"output": self.name, "error": describe_error(exc)})

    def _await_turn(self, batch: Batch, n_events: int) -> int | None:
        """Wait for the breaker, a running Retry-After and the rate limiter. Returns the breaker's
        ``probe_id`` when this attempt is its half-open probe (0 when not), or None when the batch
        must stop (stopping, or abandoned by a rewind).

        The limiter's wait comes last, and after it everything is checked again: another batch's
        answer may have opened the breaker (an auth failure) or set a Retry-After meanwhile, and
        after a 429 halves the rate these waits are the long ones. Its tokens are taken once."""
        breaker = self.breaker
        probe = 0
        due: float | None = None  # when the tokens reserved from the rate limiter are due
        while True:
            if self._stopping or (batch.epoch != _NO_EPOCH and batch.epoch != self._generation):
                if probe:
                    breaker.probe_abandoned(probe)
                return None
            if probe and breaker.probe_id != probe:
                probe = 0  # closed meanwhile (send as any other), or opened again (wait)
            if probe:
                wait = 0.0
            else:
                wait, is_probe = breaker.allow()
                probe = breaker.probe_id if is_probe else 0
            if wait <= 0:
                now = time.monotonic()
                wait = self._hold_until - now  # a Retry-After still running
                if wait > 0:
                    if probe:
                        breaker.probe_abandoned(probe)
                        probe = 0
                else:
                    if due is None:
                        due = now + self.limiter.reserve(n_events)
                    elif self.limiter.unlimited():
                        due = now  # the limiter let go of an observed ceiling: its debt is void
                    wait = due - now
                    if wait <= 0:
                        return probe
            if self._sleep(min(wait, IDLE_WAIT_S)):
                if probe:
                    breaker.probe_abandoned(probe)
                return None

    def _attempt(self, batch: Batch, items: list[DeliveryItem], packed: Packed | None = None) -> Outcome:
        st = self.stats
        nbytes = batch.nbytes if items is batch.items else sum(len(i.data) for i in items)
        st.batch_bytes.observe(nbytes)
        started = time.monotonic()
        try:
            outcome = self.output.send(items) if packed is None else self.output.send(items, packed.payload)
        except Exception as exc:  # an output bug must not kill delivery of the others
            log.exception("output raised", extra={"output": self.name})
            outcome = Outcome.retry(f"output error: {type(exc).__name__}")
        elapsed = time.monotonic() - started
        st.batches += 1
        if self._on_batch is not None:
            self._on_batch(self.name, elapsed, outcome)
        return outcome

    def _retry_wait(self, batch: Batch, attempt: int, outcome: Outcome, n_events: int) -> bool:
        """Back off before sending again; False when stopping (the spool keeps the events)."""
        self.stats.retries += 1
        delay = self._backoff(attempt, outcome.retry_after)
        log.warning("delivery failed, will retry",
                    extra={"output": self.name, "reason": outcome.reason, "attempt": attempt,
                           "events": n_events, "retry_in_s": round(delay, 3)})
        return not self._sleep(delay)

    def _delivered(self, batch: Batch, n: int, *, attempt_ok: bool = True) -> None:
        batch.delivered += n
        self.stats.note_delivered(n, attempt_ok=attempt_ok)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter (uniform in [0, min(retry_max, retry_initial * 2^(attempt-1))]), but never
        sooner than the destination's Retry-After, itself capped by retry_after_max."""
        cfg = self.config
        cap = min(cfg.retry_max, cfg.retry_initial * (2 ** min(attempt - 1, 60)))
        delay = self._rng.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, cfg.retry_after_max))
        return delay

    def _sleep(self, delay: float) -> bool:
        """Sleep unless stopping; True when the drain is stopping."""
        if delay > 0 and not self._stopping:
            self._stop.wait(delay)
        return self._stopping

    def _to_dlq(self, batch: Batch | None, items: list[DeliveryItem], reason: str, excerpt: str,
                attempts: int) -> None:
        if not items:
            return
        if batch is not None and batch.replay_ids is not None:
            owned = batch.replay_ids
            ids = [owned[id(item)] for item in items if id(item) in owned]
            self.spool.dlq_requeue(ids, reason, excerpt or None)
            # Only once stored: if the write fails, the batch is tried again and must still own them.
            for item in items:
                owned.pop(id(item), None)
            self._replay_inflight.difference_update(ids)
            log.error("replayed events failed again; kept in the DLQ",
                      extra={"output": self.name, "count": len(ids), "reason": reason})
            return
        rows = [SpoolRow(i.seq, i.event_id, 0, i.body) for i in items]
        self.spool.dlq_add(self.name, rows, reason, excerpt or None, attempts)
        self.stats.dlq += len(items)
        self.stats.note_error(reason)
        if batch is not None:
            batch.dlq += len(items)
        log.error("events sent to the DLQ", extra={"output": self.name, "count": len(items),
                                                    "reason": reason})

    # -- committing ------------------------------------------------------------------------------
    def _commit_loop(self) -> None:
        while not self._stop.is_set():
            self._commit_due.wait()
            self._commit_due.clear()
            try:
                self._commit_now()
            except Exception as exc:
                log.error("cursor commit failed", extra={"output": self.name, "error": describe_error(exc)})
                self._stop.wait(IDLE_WAIT_S)
                self._commit_due.set()

    def _commit_now(self) -> None:
        """Persist the highest contiguous finished seq (and the finished ranges beyond it).

        Senders call it when their batch finished; the commit loop when skipped rows moved the
        window. One at a time: whoever waited for the lock finds the work done or commits the newer
        state, so concurrent finishes coalesce into fewer transactions."""
        with self._commit_lock:
            window, generation = self._window, self._generation
            seq, done = window.committed, window.done_ranges()
            if seq == self._last_commit and done == self._last_done:
                return
            ok = self.spool.commit_cursor(self.name, seq, generation,
                                          done if done != self._last_done else None)
            if generation != self._generation:
                return  # reset meanwhile: the new window has its own state
            if ok:
                self._last_commit, self._last_done = seq, done
            else:
                self._rewound = True  # the CLI rewound the cursor: the reader restarts from it
                self._room.set()
