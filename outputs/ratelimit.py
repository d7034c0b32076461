"""Per-output rate limit: token buckets for requests/s and events/s that adapt to throttling (AIMD).

A throttled answer (HTTP 429, ``Outcome.throttled``) halves the effective rate; every successful
attempt adds back a twentieth of the ceiling, so after a storm the output climbs back to its
configured rate in a few dozen requests instead of hammering the destination again (TCP's AIMD).
The rate never drops below a small floor (1/64 of the ceiling, and at least 0.1 requests/s or
1 event/s, but never above a configured rate: 0.05 requests/s stays 0.05) so delivery always moves.

The configured dimensions adapt. When neither is configured (both 0, the default), requests/s
adapts from the rate it was actually sending at: a throttled answer starts limiting at half of it,
and the dimension becomes unlimited again once it has recovered to that rate, or once
``RELEASE_S`` have passed without a throttled answer. That rate is what was reserved in the two
seconds up to the latest reservation, over the time from the first of those reservations to the
throttled answer: a slow request (or a slow 429) is measured over its own duration, and an idle
pause before it does not count.

An unconfigured events/s never adapts, and an observed ceiling is let go after a quiet while,
because a light stream's observed rate is no measure of what the destination takes. A stream of a
few events a second that met a 429 used to be held to about one event a second after a few
halvings: the next full batch (500 events) then waited minutes for its tokens, and the additive
recovery, a success at a time, crawled (over 120 s for 950 events once in CI). Requests are what a
throttling destination counts (Elasticsearch's write queue holds bulk requests, HEC's its posts),
and a request's size is already bounded by the batch limits, so limiting requests limits volume.

A throttled answer halves the rate once per round of requests, as TCP halves its window once per
round trip: answers to requests sent before the latest decrease took effect were refused at the old
rate, and say nothing about the new one. With four requests in flight, one burst of 429s used to
halve it four times (100 requests/s to 6.25), and recovery then took ~19 more successes.

Buckets use the "debt" form: a reservation always succeeds and returns how long to wait before
sending, so a batch larger than the bucket's burst never deadlocks, and concurrent senders queue up
fairly behind each other's debt: first come, first served, also when recovery raised the rate after
an earlier attempt's wait was given.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

RECOVER_FRACTION = 0.05
FLOOR_FRACTION = 1 / 64
OBSERVE_WINDOW_S = 2.0
MIN_SPAN_S = 0.1
#: An observed ceiling (an unconfigured dimension) is let go this long after the latest throttle.
RELEASE_S = 10.0


class AdaptiveBucket:
    """One dimension (requests or events) of an output's limit."""

    def __init__(self, configured: float, min_rate: float, clock: Callable[[], float] = time.monotonic):
        self.configured = float(configured)
        self.min_rate = min_rate
        self._clock = clock
        #: Effective rate in units/s; None = unlimited.
        self.rate: float | None = self.configured or None
        self._ceiling = self.configured
        self._tokens = self._burst()
        self._stamp = clock()
        self._sent: deque[tuple[float, int]] = deque()
        self._throttled_at = 0.0
        #: How often the bucket went unlimited (debts reserved before are void).
        self.unlimits = 0

    def _burst(self) -> float:
        return max(1.0, self.rate or 0.0)

    def reserve(self, n: int) -> float:
        """Take ``n`` units; return the seconds to wait before using them (0 = now)."""
        now = self._clock()
        self._release_if_quiet(now)
        if self.rate is None:
            self._sent.append((now, n))
            while self._sent and now - self._sent[0][0] > OBSERVE_WINDOW_S:
                self._sent.popleft()
            return 0.0
        self._tokens = min(self._burst(), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def observed_rate(self) -> float:
        """Units/s actually sent while unlimited: the reservations of the two seconds up to the
        latest one (``reserve`` keeps just those), over the time from the first of them until now
        (at least 0.1 s).

        The window ends at the latest reservation, not at now: measured back from now, an attempt
        that took longer than the window (a slow bulk request, a server that answers 429 slowly)
        left nothing in it, and one 429 dropped the rate to the floor instead of halving it."""
        if not self._sent:
            return 0.0
        span = max(MIN_SPAN_S, self._clock() - self._sent[0][0])
        return sum(n for _, n in self._sent) / span

    def _release_if_quiet(self, now: float) -> None:
        """An observed ceiling is a snapshot of a throttled moment: unlimited again after RELEASE_S
        without a throttled answer (the next throttle observes afresh)."""
        if (self.rate is not None and not self.configured
                and now - self._throttled_at >= RELEASE_S):
            self._unlimit()

    def _unlimit(self) -> None:
        self.rate = None
        self._sent.clear()
        self.unlimits += 1

    def effective(self) -> float | None:
        """The rate in effect now (None = unlimited)."""
        self._release_if_quiet(self._clock())
        return self.rate

    def throttled(self) -> None:
        """Multiplicative decrease."""
        # A ceiling already let go is let go here too, whether or not anything read the rate since
        # (status, the metrics scrape): this answer observes afresh.
        self._release_if_quiet(self._clock())
        self._throttled_at = self._clock()
        if self.rate is None:
            self._ceiling = max(self.min_rate, self.observed_rate())
            self.rate = self._ceiling
            self._tokens = 0.0
            self._stamp = self._clock()
        # The absolute minimum keeps delivery moving, but never lifts a configured rate below it.
        floor = min(self._ceiling, max(self.min_rate, self._ceiling * FLOOR_FRACTION))
        self.rate = max(floor, self.rate / 2)
        self._tokens = min(self._tokens, self._burst())

    def settle(self, n: int, wait: float) -> None:
        """The ``n`` units just reserved go in ``wait`` seconds, later than this bucket's own wait when
        the other dimension holds them. The bucket must not refill meanwhile as if they had gone at
        its own time: when they go it holds at most what a full bucket leaves beside them (nothing
        beside more than a burst). No change when ``wait`` was its own."""
        if self.rate is not None:
            self._tokens = min(self._tokens, max(0.0, self._burst() - n) - self.rate * wait)

    def succeeded(self) -> None:
        """Additive increase, up to the configured rate (or back to unlimited)."""
        if self.rate is None:
            return
        self.rate += self._ceiling * RECOVER_FRACTION
        if self.rate >= self._ceiling:
            if self.configured:
                self.rate = self.configured
            else:
                self._unlimit()


class RateLimiter:
    """The two buckets of one output; ``reserve`` gives the wait before the next attempt."""

    def __init__(self, requests_per_s: float = 0.0, events_per_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.requests = AdaptiveBucket(requests_per_s, 0.1, clock)
        self.events = AdaptiveBucket(events_per_s, 1.0, clock)
        #: The buckets a throttled answer decreases (module docstring): the configured ones, or
        #: requests/s alone from its observed rate when neither is.
        self._adapting = [b for b in (self.requests, self.events) if b.configured] or [self.requests]
        self._clock = clock
        #: When the latest decrease took effect (None: never).
        self._decreased_at: float | None = None
        #: When the latest reserved attempt is due (``reserve``: first come, first served), and the
        #: buckets' ``unlimits`` then.
        self._last_due = 0.0
        self._due_unlimits = 0

    def reserve(self, events: int) -> float:
        """The wait before an attempt of ``events`` events. Only the adapting buckets are asked: the
        others are unconfigured and stay unlimited, and observing what they send is wasted work."""
        sizes = [(bucket, 1 if bucket is self.requests else events) for bucket in self._adapting]
        wait = max(bucket.reserve(n) for bucket, n in sizes)
        now = self._clock()
        unlimits = sum(bucket.unlimits for bucket, _ in sizes)
        if unlimits != self._due_unlimits:  # unlimited since: earlier debts are void (``unlimited``)
            self._last_due, self._due_unlimits = 0.0, unlimits
        if wait > 0 or self._last_due > now:
            # First come, first served: an attempt never goes before one reserved earlier. The
            # earlier one's wait was computed at the rate then; once recovery raised the rate, a
            # later reservation's own wait is shorter and it overtook the batch queued ahead.
            wait = max(wait, self._last_due - now)
            self._last_due = now + wait
        # the attempt goes when both waits have passed: a bucket whose own wait was shorter must not
        # count it sent earlier (and refill meanwhile), or two bursts go at once
        for bucket, n in sizes:
            bucket.settle(n, wait)
        return wait

    def throttled(self, sent_at: float | None = None) -> None:
        """A throttled answer to a request sent at ``sent_at`` (the limiter's clock): halves the rate,
        unless the request went out before the latest decrease (module docstring). Without
        ``sent_at`` it always halves."""
        if sent_at is not None and self._decreased_at is not None and sent_at < self._decreased_at:
            return
        self._decreased_at = self._clock()
        for bucket in self._adapting:
            bucket.throttled()

    def succeeded(self) -> None:
        for bucket in self._adapting:
            bucket.succeeded()

    def unlimited(self) -> bool:
        """No dimension limits now: waits computed before (debts run up at a throttled rate) are
        void, so a batch still waiting on one may go."""
        return all(bucket.effective() is None for bucket in self._adapting)

    def current(self) -> tuple[float, float]:
        """(requests/s, events/s) in effect; 0 = unlimited."""
        return self.requests.effective() or 0.0, self.events.effective() or 0.0
