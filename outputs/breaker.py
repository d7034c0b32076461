"""Circuit breaker per output: stop hammering a destination that is down or refuses our credentials.

closed ──(N consecutive failed attempts, or one auth failure)──> open
open ──(cooldown elapsed)──> half-open: exactly one probe attempt goes out, every other sender waits
half-open ──probe succeeds──> closed (cooldown back to its base)
half-open ──probe fails──> open again, with the cooldown doubled up to its cap

The probe is named (``probe_id``): an attempt sent before the breaker opened may answer at any time,
also while the probe is out, and its failure is not the probe's. Counting it as the probe's re-opened
the breaker (cooldown doubled) while the probe was still out, and once that cooldown passed a second
probe went out beside the first.

While open nothing is sent and nothing is lost: senders wait, the cursor stays, the spool keeps the
backlog. A failed attempt is a RETRY outcome that is not throttling (transport error, timeout, 5xx,
401/403) or an exception in the output. Any answer that shows the destination up and accepting our
credentials counts as success, including per-item rejections and 429: throttling is the rate
limiter's business (``outputs.ratelimit``), and opening on it would turn a short 429 storm into a
long outage.

Pure state with an injectable clock; the drain does the waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half-open", OPEN: "open"}
#: How often a sender waiting on a half-open breaker looks again.
PROBE_POLL_S = 0.05


class Breaker:
    """``failures`` = 0 disables it (always closed)."""

    def __init__(self, failures: int, cooldown: float, cooldown_max: float,
                 clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.base_cooldown = max(0.0, cooldown)
        self.cooldown_max = max(self.base_cooldown, cooldown_max)
        self._clock = clock
        self.state = CLOSED
        self.cooldown = self.base_cooldown
        self.consecutive = 0
        self.opened_at = 0.0
        self.opened_total = 0
        self.reason = ""
        #: The id of the probe out while half-open (0: none); ids are never reused.
        self._probe = 0
        self._probes = 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    @property
    def probe_id(self) -> int:
        """The probe out while half-open, 0 when none. Right after ``allow`` answered ``(0, True)``:
        the caller's probe, to name in ``failure`` and ``probe_abandoned``."""
        return self._probe

    def allow(self) -> tuple[float, bool]:
        """(seconds to wait before asking again, is_probe). ``(0, False)``: send now;
        ``(0, True)``: send now as the half-open probe (report its result, with ``probe_id``!)."""
        if self.state == CLOSED:
            return 0.0, False
        if self.state == OPEN:
            remaining = self.opened_at + self.cooldown - self._clock()
            if remaining > 0:
                return remaining, False
            self.state = HALF_OPEN
            self._probe = 0
        if self._probe:
            return PROBE_POLL_S, False
        self._probes += 1
        self._probe = self._probes
        return 0.0, True

    def success(self) -> None:
        """Any answer showing the destination up and taking our credentials (the probe's or not)."""
        self.consecutive = 0
        self._probe = 0
        if self.state != CLOSED:
            self.state = CLOSED
            self.cooldown = self.base_cooldown
            self.reason = ""

    def failure(self, reason: str, *, auth: bool = False, probe: int = 0) -> None:
        """A failed attempt; ``probe``: its ``probe_id`` when it went as the probe. Only the probe's
        failure re-opens a half-open breaker."""
        self.consecutive += 1
        if not self.failures:
            return
        if self.state == HALF_OPEN and probe and probe == self._probe:
            self._open(reason, min(self.cooldown_max, max(self.cooldown * 2, 0.001)))
        elif self.state == CLOSED and (auth or self.consecutive >= self.failures):
            self._open(reason, self.base_cooldown)

    def probe_abandoned(self, probe: int | None = None) -> None:
        """The probe's sender (``probe``: its ``probe_id``; None: the probe out) stopped before an
        outcome: let another sender probe."""
        if self.state == HALF_OPEN and probe in (None, self._probe):
            self._probe = 0

    def _open(self, reason: str, cooldown: float) -> None:
        self.state = OPEN
        self.cooldown = cooldown
        self.opened_at = self._clock()
        self.opened_total += 1
        self.reason = reason
        self._probe = 0
