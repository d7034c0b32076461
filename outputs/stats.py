"""Per-output counters and histograms: plain numbers updated on the delivery path, read at scrape time.

Why not prometheus_client objects on the hot path: a labelled child lookup and a lock per observation
cost more than the work they measure, and these numbers must survive a drain restart (the supervisor
hands the old ``OutputStats`` to the new drain). ``agent.metrics`` turns them into metric families.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass, field

#: Seconds: one HTTP request or one delivery attempt.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Bytes: one attempt's body (sum of the encoded events), 1 KiB .. 64 MiB.
BYTES_BUCKETS = tuple(float(1024 * 4**i) for i in range(9))
#: Seconds of delivery counts kept for ``OutputStats.rate`` (its window is at most this long).
RATE_SECONDS = 120


class Histogram:
    """Cumulative-on-read histogram with fixed upper bounds (Prometheus ``le`` semantics)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ..., ("+Inf", count)]`` as HistogramMetricFamily wants them."""
        out, acc = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            out.append((_le(bound), acc))
        out.append(("+Inf", self.count))
        return out


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and bound >= 1 else repr(float(bound))


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
    in_flight_batches: int = 0
    replayed: int = 0
    last_success_ms: int | None = None
    last_error_ms: int | None = None
    last_error: str | None = None
    #: The last delivery attempt succeeded (or nothing failed yet).
    healthy: bool = True
    #: The destination's own health check (``Output.healthcheck``); None until it first ran.
    health_ok: bool | None = None
    health_reason: str = ""
    health_checked_ms: int | None = None
    #: HTTP requests by status class (``outputs.http.status_class`` or ``"error"``).
    requests: dict[str, int] = field(default_factory=dict)
    request_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_bytes: Histogram = field(default_factory=lambda: Histogram(BYTES_BUCKETS))
    #: ``[second, events delivered in it]``: one entry per second, not per batch (a 10 ms
    #: ``batch_max_wait`` closes up to 100 batches a second, and a bounded list of those covered only
    #: the last second or two of the minute ``rate()`` divides by).
    _recent: deque[list[int]] = field(default_factory=lambda: deque(maxlen=RATE_SECONDS))

    def note_delivered(self, n: int, *, attempt_ok: bool = True) -> None:
        """``n`` events of an attempt delivered. ``attempt_ok`` False: the same answer refused or
        throttled others (docs/outputs.md §7: such an attempt is not a success, however many it
        delivered), so the output is unhealthy until the next success."""
        if not attempt_ok:
            self.healthy = False
        if n <= 0:
            return
        now = time.time()
        self.delivered += n
        self.last_success_ms = int(now * 1000)
        self.healthy = attempt_ok
        second = int(now)
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1][1] += n
        else:
            self._recent.append([second, n])

    def note_failure(self, reason: str) -> None:
        self.failed_attempts += 1
        self.note_error(reason)
        self.healthy = False

    def note_error(self, reason: str) -> None:
        """The latest thing that went wrong: a failed attempt, or events put in the DLQ (which the
        spool also records as the output's last error, so /health and ``status`` say the same)."""
        self.last_error = reason
        self.last_error_ms = int(time.time() * 1000)

    def note_response(self, status_class: str, seconds: float) -> None:
        """The ``on_response`` callback of an output's HttpClient: one finished HTTP request."""
        self.requests[status_class] = self.requests.get(status_class, 0) + 1
        self.request_seconds.observe(seconds)

    def rate(self, window_s: float = 60.0) -> float:
        """Events per second delivered over the last ``window_s`` seconds."""
        now = time.time()
        total = sum(n for t, n in self._recent if now - t < window_s)
        return total / window_s


def describe_error(exc: BaseException) -> str:
    """An error for logs and status: the OS reason when there is one, else the error class (never
    the message, which for HTTP libraries contains the URL, and a URL may be a secret)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
