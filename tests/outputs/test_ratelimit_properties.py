"""Property-based tests of the rate limiter, the retry backoff and ``Retry-After``, against
docs/outputs.md §3 (RETRY: "full-jitter exponential backoff (``retry_initial`` doubling up to
``retry_max``), never sooner than ``retry_after`` (capped at ``retry_after_max``)") and §4 ("Token
buckets ... AIMD"), docs/outputs/http.md (``parse_retry_after``) and the docstring of
``outputs/ratelimit.py``. tests/outputs/test_ratelimit.py has the worked examples; here the schedules
are drawn, on a fake clock:

1. One configured bucket (``AdaptiveBucket``), its rate fixed: over any schedule of reservations (sizes
   up to four bursts, the burst being one second of the rate), a unit's send time is when its wait ends,
   and between any two reservations the units sent are at most ``max(burst, first size) + rate *
   window`` (a token bucket of that burst; a reservation larger than the burst is its own burst, paid
   for before it goes: the "debt" form), in order (senders queue fairly behind each other's debt),
   a reservation never waits longer than it takes to pay for itself and the units queued before it
   (nothing is starved), and after a pause long enough to refill the bucket it waits only for what
   exceeds the burst.
2. Both dimensions at once (``RateLimiter``): an attempt goes when both of its waits have passed, and
   the window bound of 1 holds for requests/s and for events/s alike at those send times.
3. A state machine of a limiter with configured rates (one or both, some below the floor's absolute
   minimum): reservations, throttled answers (sent before or after the latest decrease), successes,
   storms then calm. The rates in effect (``current()``, the metrics gauges and ``status`` read it) are
   the model's: halved once per round of requests, never above the configured rate, never below 1/64
   of it, + 5 % of it a success, back at the configured rate after twenty successes however deep the
   storm; an unconfigured dimension stays unlimited.
4. A state machine of a limiter with neither rate configured: requests/s starts limiting at half the
   rate observed (the reservations of the two seconds up to the latest one, over the time from the
   first of them until the throttled answer), recovers to unlimited, is let go ``RELEASE_S`` after the
   latest throttled answer, and events/s never adapts. Two limiters get the same calls, and only one
   is read (as ``status`` and the metrics scrape read it): their waits must agree, since reading the
   rate in effect must not change it.
5. ``parse_retry_after``: never raises on any string; ``None`` or a non-negative number, never NaN;
   delay-seconds exactly; IMF-fixdate, RFC 850 and asctime dates exactly the seconds until them (0 in
   the past); signed, fractional or non-ASCII values ``None``.
6. The backoff (``Drain._backoff``): uniform in ``[0, cap]``, the cap ``retry_initial`` doubling per
   attempt up to ``retry_max`` (reached, never passed, any attempt count); with a Retry-After never
   sooner than it, clamped at ``retry_after_max``. In a running drain every retry waits within those
   bounds and the Retry-After hold it sets on the output is clamped too (an infinite one included).
7. The limiter in the drain, where it meets the breaker: over a drawn script of answers with one send
   slot, a 429 halves the rate and counts as a breaker success, other failures leave the rate alone,
   each answer that settles the attempt adds 5 %, and the gauges and ``status`` show the model's rates.

At the end: deterministic reproductions of the three defects found, each failing until its fix lands.
Parts 2, 3 and 4 fail on the code as it is, each on one of them: two bursts at once when the events
limit holds an attempt (2), a 429 raising a configured rate below the absolute floor (3), and a late
429 acting on whether the rate in effect was read before it (4).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agent.metrics import AgentCollector, output_extra, significant
from outputs.base import Outcome, Output
from outputs.breaker import CLOSED
from outputs.drain import Drain
from outputs.http import parse_retry_after
from outputs.ratelimit import (
    FLOOR_FRACTION,
    OBSERVE_WINDOW_S,
    RECOVER_FRACTION,
    RELEASE_S,
    AdaptiveBucket,
    RateLimiter,
)
from tests.outputs.drain_kit import Clock, Fake, caught_up, cfg, fill, fresh_spool, run_until

# no explain phase: it re-runs the machines' steps many times over on a failure
SETTINGS: dict[str, Any] = dict(deadline=None, database=None, derandomize=True,
                                suppress_health_check=[HealthCheck.too_slow],
                                phases=[p for p in Phase if p is not Phase.explain])
#: The absolute floors of the two dimensions (RateLimiter: 0.1 requests/s, 1 event/s).
MIN_REQUESTS, MIN_EVENTS = 0.1, 1.0
NAME = "f"



def slack(*values: float) -> float:
    """Room for floating-point error in sums of the magnitudes ``values``."""
    return 1e-9 * (1.0 + sum(abs(v) for v in values))


def check_window_bound(sends: list[tuple[float, int]], rate: float, burst: float) -> None:
    """``sends``: (send time, units) in reservation order. Between the sends of reservations i and j
    (inclusive) at most ``max(burst, n_i) + rate * (s_j - s_i)`` units go (module docstring 1)."""
    for i, (s_i, n_i) in enumerate(sends):
        total = 0
        for s_j, n_j in sends[i:]:
            total += n_j
            bound = max(burst, n_i) + rate * (s_j - s_i)
            assert total <= bound + slack(bound, total), (
                f"{total} units sent in [{s_i:.6f}, {s_j:.6f}] at {rate}/s with a burst of {burst} "
                f"(bound {bound:.6f}): {sends}")


def documented_floor(configured: float, min_rate: float) -> float:
    """docs §4: never below 1/64 of the configured rate (and the module's absolute minimum), and a
    configured rate is never exceeded: the floor of a rate configured below that minimum is itself."""
    return min(configured, max(min_rate, configured * FLOOR_FRACTION))


# ============================================================================ 1. one bucket, fixed rate

RATES = [0.05, 0.5, 1.0, 3.0, 10.0, 64.0, 1000.0]


@settings(max_examples=200, **SETTINGS)
@given(rate=st.sampled_from(RATES),
       steps=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 40)), min_size=1, max_size=40))
def test_one_bucket_paces_any_schedule_as_a_token_bucket_of_one_seconds_burst(
        rate: float, steps: list[tuple[int, int]]) -> None:
    """``steps``: (pause before the reservation, size), both in tenths of a burst (the pause in tenths
    of the time the bucket takes to refill a whole burst)."""
    clock = Clock()
    bucket = AdaptiveBucket(rate, MIN_EVENTS, clock)
    burst = max(1.0, rate)
    refill_s = burst / rate
    sends: list[tuple[float, int]] = []
    for k, (pause, size) in enumerate(steps):
        clock.t += pause * refill_s / 10
        n = max(1, round(size * burst / 10))
        pending = sum(m for s, m in sends if s > clock.t)
        idle = not sends or clock.t - sends[-1][0] >= refill_s
        wait = bucket.reserve(n)
        assert wait >= 0 and math.isfinite(wait)
        # not starved: it pays for itself and what is queued before it, no more
        assert wait <= (n + pending) / rate + slack(wait, n + pending)
        if idle:  # a full bucket: only what exceeds the burst is waited for
            expected = max(0.0, n - burst) / rate
            assert math.isclose(wait, expected, rel_tol=1e-9, abs_tol=1e-9), (k, wait, expected)
        sent = clock.t + wait
        if sends:  # fair: in the order of the reservations
            assert sent >= sends[-1][0] - slack(sent), (sent, sends[-1])
        sends.append((sent, n))
    check_window_bound(sends, rate, burst)
    assert bucket.rate == rate  # pacing alone never changes the rate


# ============================================================================ 2. both dimensions at once


@settings(max_examples=200, **SETTINGS)
@given(requests=st.sampled_from([0.5, 1.0, 4.0, 20.0]), events=st.sampled_from([1.0, 10.0, 100.0, 1000.0]),
       steps=st.lists(st.tuples(st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5, 1.0, 3.0]),
                                st.integers(1, 3000)), min_size=1, max_size=25))
def test_both_limits_hold_at_once_at_the_times_attempts_are_sent(
        requests: float, events: float, steps: list[tuple[float, int]]) -> None:
    """An attempt is sent when the limiter's wait (the longer of its two) has passed: at those times
    neither the requests/s nor the events/s bucket lets more through than its rate and burst."""
    clock = Clock()
    limiter = RateLimiter(requests, events, clock=clock)
    attempts: list[tuple[float, int]] = []
    for pause, n in steps:
        clock.t += pause
        sent = clock.t + limiter.reserve(n)
        if attempts:
            assert sent >= attempts[-1][0] - slack(sent)
        attempts.append((sent, n))
    check_window_bound([(s, 1) for s, _ in attempts], requests, max(1.0, requests))
    check_window_bound(attempts, events, max(1.0, events))


# ============================================================================ 3. configured rates, AIMD



def sent_time(when: str, sent_times: list[float], now: float) -> float | None:
    """When the request a 429 answers went: none given, now, or the earliest or latest attempt."""
    if when == "none":
        return None
    picked = {"now": now, "earliest": min(sent_times, default=None),
              "latest": max(sent_times, default=None)}[when]
    return now if picked is None else picked


class ConfiguredModel:
    """docs §4 for one configured dimension."""

    def __init__(self, configured: float, min_rate: float) -> None:
        self.configured = configured
        self.floor = documented_floor(configured, min_rate)
        self.rate = configured

    def throttled(self) -> None:
        self.rate = max(self.floor, self.rate / 2)

    def succeeded(self) -> None:
        self.rate = min(self.configured, self.rate + RECOVER_FRACTION * self.configured)


class ConfiguredLimiterMachine(RuleBasedStateMachine):
    """A limiter with one or both rates configured; the answers of attempts arrive in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.limiter: RateLimiter
        self.models: dict[str, ConfiguredModel] = {}
        self.decreased_at: float | None = None
        self.sent_times: list[float] = []

    @initialize(requests=st.sampled_from([0.0, 0.05, 0.1, 1.0, 8.0, 100.0, 6400.0]),
                events=st.sampled_from([0.0, 0.5, 1.0, 50.0, 1000.0]))
    def configure(self, requests: float, events: float) -> None:
        if not requests and not events:
            events = 1000.0  # this machine is about configured rates (4. is about neither)
        self.limiter = RateLimiter(requests, events, clock=self.clock)
        if requests:
            self.models["requests"] = ConfiguredModel(requests, MIN_REQUESTS)
        if events:
            self.models["events"] = ConfiguredModel(events, MIN_EVENTS)

    @rule(dt=st.sampled_from([0.0, 0.001, 0.05, 0.5, 2.0, 15.0, 3600.0]))
    def advance(self, dt: float) -> None:
        self.clock.t += dt

    @rule(n=st.integers(1, 2000))
    def reserve(self, n: int) -> None:
        wait = self.limiter.reserve(n)
        assert wait >= 0 and math.isfinite(wait)
        self.sent_times.append(self.clock.t + wait)

    @rule(when=st.sampled_from(["none", "now", "earliest", "latest"]))
    def throttled(self, when: str) -> None:
        """A 429 to a request sent at ``when`` (None: the limiter always halves)."""
        sent_at = sent_time(when, self.sent_times, self.clock.t)
        self.limiter.throttled(sent_at)
        # docs §4: once per round of requests: an answer to a request sent before the latest
        # decrease says nothing about the new rate
        if sent_at is not None and self.decreased_at is not None and sent_at < self.decreased_at:
            return
        self.decreased_at = self.clock.t
        for model in self.models.values():
            model.throttled()

    @rule()
    def succeeded(self) -> None:
        self.limiter.succeeded()
        for model in self.models.values():
            model.succeeded()

    @rule(depth=st.integers(1, 12))
    def storm_then_calm(self, depth: int) -> None:
        """``depth`` 429s (each to a request sent after the previous decrease), then twenty successes:
        back at the configured rates, however deep the storm went (docs §4, module docstring)."""
        for _ in range(depth):
            self.clock.t += 0.01
            self.throttled("now")
        for _ in range(round(1 / RECOVER_FRACTION)):
            self.succeeded()
        for name, model in self.models.items():
            assert model.rate == model.configured
            assert self.current()[name] == model.configured, f"{name} did not recover"

    def current(self) -> dict[str, float]:
        requests, events = self.limiter.current()
        return {"requests": requests, "events": events}

    @invariant()
    def the_rates_in_effect_are_the_models(self) -> None:
        shown = self.current()
        for name in ("requests", "events"):
            model = self.models.get(name)
            if model is None:
                assert shown[name] == 0, f"unconfigured {name} limited: {shown}"
                continue
            assert math.isclose(shown[name], model.rate, rel_tol=1e-9), (name, shown[name], model.rate)
            # docs §4: "a configured rate is never exceeded", "never below 1/64 of it"
            assert shown[name] <= model.configured, f"{name}: {shown[name]} > {model.configured}"
            assert shown[name] >= model.configured * FLOOR_FRACTION - slack(model.configured)


ConfiguredLimiterMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30,
                                                     **SETTINGS)
TestConfiguredLimiter = ConfiguredLimiterMachine.TestCase


# ============================================================================ 4. neither configured


class ObservedModel:
    """docs §4 and the module docstring for requests/s when neither rate is configured."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.ceiling = 0.0
        self.throttled_at = -math.inf
        self.decreased_at: float | None = None
        #: (time, events) reserved while unlimited, since it last became unlimited
        self.observed: list[tuple[float, int]] = []

    def release_if_quiet(self, now: float) -> None:
        if self.rate is not None and now - self.throttled_at >= RELEASE_S:
            self.unlimit()

    def unlimit(self) -> None:
        self.rate = None
        self.observed = []

    def reserve(self, now: float) -> None:
        self.release_if_quiet(now)
        if self.rate is None:
            self.observed.append((now, 1))

    def observed_rate(self, now: float) -> float:
        if not self.observed:
            return 0.0
        latest = self.observed[-1][0]
        window = [(t, n) for t, n in self.observed if latest - t <= OBSERVE_WINDOW_S]
        return sum(n for _, n in window) / max(0.1, now - window[0][0])

    def throttled(self, now: float, sent_at: float | None) -> None:
        if sent_at is not None and self.decreased_at is not None and sent_at < self.decreased_at:
            return
        self.decreased_at = now
        self.release_if_quiet(now)  # let go 10 s after the latest 429: a new one observes afresh
        self.throttled_at = now
        if self.rate is None:
            self.ceiling = max(MIN_REQUESTS, self.observed_rate(now))
            self.rate = self.ceiling
        self.rate = max(max(MIN_REQUESTS, self.ceiling * FLOOR_FRACTION), self.rate / 2)

    def succeeded(self) -> None:
        if self.rate is None:
            return
        self.rate += self.ceiling * RECOVER_FRACTION
        if self.rate >= self.ceiling:
            self.unlimit()


class ObservedLimiterMachine(RuleBasedStateMachine):
    """``read`` is read after every step (``current()``, as status and the metrics scrape do);
    ``unread`` gets the same calls and is never read: what each lets through must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.read = RateLimiter(0, 0, clock=self.clock)
        self.unread = RateLimiter(0, 0, clock=self.clock)
        self.model = ObservedModel()
        self.sent_times: list[float] = []

    @rule(dt=st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.5, RELEASE_S / 2, RELEASE_S]))
    def advance(self, dt: float) -> None:
        self.clock.t += dt

    @rule(n=st.integers(1, 500))
    def reserve(self, n: int) -> None:
        self.model.reserve(self.clock.t)
        unlimited = self.model.rate is None
        wait = self.read.reserve(n)
        assert wait == self.unread.reserve(n), "reading the rate in effect changed the waits"
        if unlimited:
            assert wait == 0.0, "unlimited, yet a wait"
        self.sent_times.append(self.clock.t + wait)

    @rule(when=st.sampled_from(["none", "now", "earliest", "latest"]))
    def throttled(self, when: str) -> None:
        sent_at = sent_time(when, self.sent_times, self.clock.t)
        self.read.throttled(sent_at)
        self.unread.throttled(sent_at)
        self.model.throttled(self.clock.t, sent_at)

    @rule()
    def succeeded(self) -> None:
        self.read.succeeded()
        self.unread.succeeded()
        self.model.succeeded()

    @invariant()
    def requests_adapt_from_the_observed_rate_and_events_never_do(self) -> None:
        self.model.release_if_quiet(self.clock.t)
        requests, events = self.read.current()
        assert events == 0, "an unconfigured events/s never adapts"
        expected = self.model.rate or 0.0
        assert math.isclose(requests, expected, rel_tol=1e-9), (requests, expected)
        assert self.read.unlimited() == (self.model.rate is None)


ObservedLimiterMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, **SETTINGS)
TestObservedLimiter = ObservedLimiterMachine.TestCase


# ============================================================================ 5. parse_retry_after

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def http_date(when: datetime, form: str) -> str:
    """``when`` (UTC) in one of RFC 9110 §5.6.7's three forms."""
    day, month = DAYS[when.weekday()], MONTHS[when.month - 1]
    clock = f"{when:%H:%M:%S}"
    if form == "imf":
        return format_datetime(when, usegmt=True)
    if form == "rfc850":
        return f"{day}, {when.day:02d}-{month}-{when.year % 100:02d} {clock} GMT"
    return f"{day[:3]} {month} {when.day:2d} {clock} {when.year}"  # asctime


def looks_like_a_date() -> st.SearchStrategy[str]:
    """Strings near the date grammar: the parser's paths with out-of-range and odd fields."""
    part = st.one_of(
        st.sampled_from(DAYS + [d[:3] + "," for d in DAYS] + MONTHS + [
            "GMT", "UT", "UTC", "-0000", "+2359", "-2359", "+9999", "PST", "Z", ",", ":", "-", "  "]),
        st.integers(-10, 100_000).map(str),
        st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)).map(
            lambda t: f"{t[0]}:{t[1]:02d}:{t[2]}"),
        st.tuples(st.integers(0, 40), st.sampled_from(MONTHS), st.integers(0, 99_999)).map(
            lambda t: f"{t[0]}-{t[1]}-{t[2]}"),
    )
    return st.lists(part, min_size=1, max_size=8).map(" ".join)


def numeric() -> st.SearchStrategy[str]:
    """Numbers as a server might write them: signed, fractional, exponents, 400 digits."""
    return st.tuples(st.sampled_from(["", " ", "-", "+", " -", "\t"]),
                     st.one_of(st.integers(0, 10**40), st.just(10**400 - 1)),
                     st.sampled_from(["", ".", ".5", "e3", " ", "s"])).map(lambda t: f"{t[0]}{t[1]}{t[2]}")


@settings(max_examples=300, **SETTINGS)
@given(value=st.one_of(st.text(max_size=60), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                       looks_like_a_date(), numeric()))
def test_parse_retry_after_never_raises_and_is_none_or_non_negative(value: str) -> None:
    got = parse_retry_after(value, now=NOW)
    assert got is None or (isinstance(got, float) and not math.isnan(got) and got >= 0), repr(got)
    stripped = value.strip()
    if stripped.isascii() and stripped.isdigit():  # delay-seconds = 1*DIGIT
        assert got == float(stripped)  # the nearest float (inf past 1.8e308: the drain clamps it)
    elif stripped[:1] in ("-", "+") and stripped[1:].isdigit():
        assert got is None  # signed: not delay-seconds (and no date)


@settings(max_examples=300, **SETTINGS)
@given(offset=st.integers(-10 * 365 * 86400, 10 * 365 * 86400),
       form=st.sampled_from(["imf", "rfc850", "asctime"]))
def test_parse_retry_after_reads_every_http_date_form_as_the_seconds_until_it(offset: int, form: str) -> None:
    """Within ten years of now (where the two-digit year of RFC 850 is unambiguous): the seconds from
    now until the date, 0 for a date in the past."""
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=offset)
    got = parse_retry_after(http_date(when, form), now=NOW)
    assert got == max(0.0, float(offset)), (http_date(when, form), got)


@settings(max_examples=200, **SETTINGS)
@given(digits=st.integers(0, 10**30), form=st.sampled_from(["{}", " {} ", "-{}", "+{}", "{}.5", "{}s",
                                                           "{}e3", "0x{}", "{},{}"]))
def test_delay_seconds_are_read_exactly_and_anything_else_numeric_is_none(digits: int, form: str) -> None:
    value = form.format(digits, digits)
    got = parse_retry_after(value, now=NOW)
    if form.strip() == "{}":
        assert got == float(digits)
    else:
        assert got is None, (value, got)


# ============================================================================ 6. backoff and Retry-After


class RecordingRng(random.Random):
    """Records the range of each ``uniform`` draw, and answers one of its ends or a point between."""

    def __init__(self, pick: float) -> None:
        super().__init__(0)
        self.pick = pick
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a + (b - a) * self.pick


def shell(rng: random.Random, **config: Any) -> Drain:
    """A drain (not running) for its backoff."""
    return Drain(Output(NAME, cfg(**config)), None, None, rng=rng)


@settings(max_examples=150, **SETTINGS)
@given(initial=st.sampled_from([0.001, 0.25, 0.5, 3.0, 1e6]),
       factor=st.sampled_from([1.0, 1.5, 2.0, 64.0, 1e9]),
       after_max=st.sampled_from([0.0, 0.5, 60.0, 300.0]), pick=st.sampled_from([0.0, 0.3, 1.0]),
       retry_after=st.one_of(st.none(), st.sampled_from([0.0, 0.2, 7.0, 299.0, 1e12, math.inf])),
       attempts=st.integers(1, 200))
def test_backoff_is_full_jitter_under_a_doubling_cap_and_honours_a_clamped_retry_after(
        initial: float, factor: float, after_max: float, pick: float, retry_after: float | None,
        attempts: int) -> None:
    retry_max = initial * factor
    rng = RecordingRng(pick)
    drain = shell(rng, retry_initial=initial, retry_max=retry_max, retry_after_max=after_max)
    caps: list[float] = []
    for attempt in range(1, attempts + 1):
        delay = drain._backoff(attempt, retry_after)
        (low, cap), = rng.ranges[-1:]
        caps.append(cap)
        # docs §3: full jitter, retry_initial doubling up to retry_max
        assert low == 0
        assert cap == min(retry_max, initial * 2 ** (attempt - 1))
        jitter = cap * pick
        bound = None if retry_after is None else min(retry_after, after_max)
        assert delay == (jitter if bound is None else max(jitter, bound))
        assert 0 <= delay <= max(retry_max, after_max)
        assert math.isfinite(delay)
    assert caps == sorted(caps) and caps[0] == min(retry_max, initial)
    if attempts > math.log2(factor) + 1:
        assert caps[-1] == retry_max  # the cap grew to retry_max and stayed there


class HoldRecorder(Drain):
    """Records, at each retry, the backoff it drew and how far ahead the Retry-After hold runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[tuple[float | None, float, float]] = []

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        import time

        delay = super()._backoff(attempt, retry_after)
        self.waits.append((retry_after, delay, self._hold_until - time.monotonic()))
        return delay


@settings(max_examples=20, **SETTINGS)
@given(answers=st.lists(st.tuples(st.sampled_from(["retry", "throttled", "auth", "partial"]),
                                  st.one_of(st.none(), st.sampled_from([0.0, 0.003, 5.0, 1e9, math.inf]))),
                        min_size=1, max_size=6),
       after_max=st.sampled_from([0.0, 0.002, 0.01]))
def test_in_the_drain_each_retry_waits_within_its_bounds_and_the_hold_is_clamped(
        answers: list[tuple[str, float | None]], after_max: float) -> None:
    """docs §3: "never sooner than retry_after (capped at retry_after_max)": an infinite or huge
    Retry-After holds the output for retry_after_max at most, and the run finishes."""
    config = cfg(batch_max_events=3, concurrency=1, retry_initial=0.001, retry_max=0.004,
                 retry_after_max=after_max, breaker_failures=0,
                 rate_limit_requests=64_000)  # halved by 429s, never below 1,000/s: no real waits

    def answer(kind: str, retry_after: float | None) -> Any:
        def step(batch: list[Any]) -> Outcome:
            if kind == "partial":
                return Outcome.partial("HTTP 429", retry_items=list(batch), retry_after=retry_after,
                                       throttled=True)
            return Outcome.retry(f"HTTP {kind}", retry_after, auth_failure=kind == "auth",
                                 throttled=kind == "throttled")
        return step

    with fresh_spool() as spool:
        fill(spool, 3)
        out = Fake(NAME, config, script=[answer(k, ra) for k, ra in answers])
        drain = HoldRecorder(out, spool, spool.reader())
        run_until(drain, caught_up(spool, NAME))
        assert out.received == [0, 1, 2]
    assert [ra for ra, _, _ in drain.waits] == [ra for _, ra in answers]
    for attempt, (retry_after, delay, hold) in enumerate(drain.waits, 1):
        cap = min(0.004, 0.001 * 2 ** (attempt - 1))
        floor = 0.0 if retry_after is None else min(retry_after, after_max)
        assert floor <= delay <= max(cap, floor)
        assert hold <= after_max, f"Retry-After {retry_after} held the output {hold} s"


# ============================================================================ 7. the limiter in the drain

ANSWERS = ["deliver", "throttled", "retry", "auth", "raise", "permanent", "partial_throttled",
           "partial_retry"]


class LimitScripted(Fake):
    """Answers each send from a script of ``ANSWERS`` (then delivers)."""

    def __init__(self, name: str, config: Any, script: list[str]) -> None:
        super().__init__(name, config)
        self.kinds = list(script)
        self.answered: list[str] = []

    def send(self, batch: list[Any]) -> Outcome:
        kind = self.kinds.pop(0) if self.kinds else "deliver"
        self.answered.append(kind)
        if kind == "deliver":
            self.received.extend(i.seq for i in batch)
            return Outcome.delivered()
        if kind == "throttled":
            return Outcome.retry("HTTP 429", throttled=True)
        if kind == "retry":
            return Outcome.retry("HTTP 503")
        if kind == "auth":
            return Outcome.retry("HTTP 401", auth_failure=True)
        if kind == "raise":
            raise RuntimeError("output bug")
        if kind == "permanent":
            return Outcome.permanent("HTTP 400")
        if kind == "partial_throttled":  # per-item 429s (ES): the rest delivered
            return Outcome.partial("429 items", retry_items=batch[1:], throttled=True)
        return Outcome.partial("some items", retry_items=batch[1:])  # partial_retry


@settings(max_examples=20, **SETTINGS)
@given(script=st.lists(st.sampled_from(ANSWERS), max_size=14), events=st.sampled_from([0.0, 1e6]))
def test_in_the_drain_429s_halve_the_rate_other_answers_recover_it_and_status_shows_it(
        script: list[str], events: float) -> None:
    """One send slot, so each answer is to a request sent after the previous decrease: every 429 halves
    (docs §4). A 429 is no breaker failure; a 503, 401 or an exception neither halves nor recovers;
    an answer about each event (delivered, permanent, partial) recovers 5 % unless it was throttled."""
    requests = 64_000.0  # high enough that the floor (1/64) paces nothing in real time
    config = cfg(batch_max_events=2, concurrency=1, rate_limit_requests=requests,
                 rate_limit_events=events, breaker_failures=3, breaker_cooldown=0.001,
                 breaker_cooldown_max=0.002)
    models = {"requests": ConfiguredModel(requests, MIN_REQUESTS)}
    if events:
        models["events"] = ConfiguredModel(events, MIN_EVENTS)
    with fresh_spool() as spool:
        fill(spool, 4)
        out = LimitScripted(NAME, config, script)
        drain = Drain(out, spool, spool.reader())
        run_until(drain, caught_up(spool, NAME))
    used = out.answered
    for kind in used:
        for model in models.values():
            if kind in ("throttled", "partial_throttled"):
                model.throttled()
            elif kind in ("deliver", "permanent", "partial_retry"):
                model.succeeded()
    shown = drain.limiter.current()
    expect = (models["requests"].rate, models["events"].rate if events else 0.0)
    assert math.isclose(shown[0], expect[0], rel_tol=1e-9) and math.isclose(shown[1], expect[1],
                                                                            rel_tol=1e-9), (used, shown)
    extra = output_extra(drain)
    assert (extra["rate_limit_requests"], extra["rate_limit_events"]) == (significant(shown[0]),
                                                                          significant(shown[1]))
    collector = AgentCollector(lambda: {}, lambda: {NAME: drain}, lambda: {})
    gauges = {f.name: [s.value for s in f.samples] for f in collector.collect()
              if f.name.startswith("clawd_agent_output_rate_limit")}
    assert gauges == {"clawd_agent_output_rate_limit_requests_per_second": [shown[0]],
                      "clawd_agent_output_rate_limit_events_per_second": [shown[1]]}
    if all(k not in ("retry", "auth", "raise") for k in used):
        assert drain.breaker.state == CLOSED and drain.breaker.opened_total == 0


# ============================================================================ defects found


def test_a_429_never_raises_a_configured_rate_below_the_absolute_floor() -> None:
    """docs §4: "a configured rate is never exceeded". rate_limit_requests = 0.05 (a request every
    20 s) is accepted, but a 429 lifts it to the floor's absolute minimum, 0.1 requests/s: throttled,
    the output sends twice as fast as configured (and 0.5 events/s goes to 1)."""
    clock = Clock()
    limiter = RateLimiter(requests_per_s=0.05, events_per_s=0.5, clock=clock)
    limiter.throttled()
    requests, events = limiter.current()
    assert requests <= 0.05 and events <= 0.5, (requests, events)


def test_the_events_limit_holding_an_attempt_does_not_refill_the_requests_bucket() -> None:
    """rate_limit_requests = 1 (a burst of one), rate_limit_events = 1000. A 10,000-event attempt at 0
    owes the events bucket 9 s; the requests bucket counts it sent at 0 and refills meanwhile, so the
    next request goes 1 ms after it: two requests within a millisecond at 1 request/s."""
    clock = Clock(0.0)
    limiter = RateLimiter(requests_per_s=1, events_per_s=1000, clock=clock)
    first = clock.t + limiter.reserve(10_000)
    clock.t = first  # sent when its wait ended
    second = clock.t + limiter.reserve(1)
    assert second - first >= 1.0 - 1e-9, f"requests at {first} and {second}: 1 request/s exceeded"


def test_reading_the_rate_in_effect_does_not_change_what_a_late_429_does() -> None:
    """Neither rate configured: 10 requests/s, a 429 (limited at 5/s), then a request at that rate
    whose 429 comes 15 s later, when the ceiling has been let go (RELEASE_S). Whether status or the
    metrics scrape read ``current()`` in between decided what that 429 did: unread, it halved the
    stale 5/s (2.5/s); read, the limiter had let go and observed nothing since, so it fell to the
    floor (0.1/s, the next request waiting 10 s)."""
    def late_429(read: bool) -> tuple[float, float]:
        clock = Clock(0.0)
        limiter = RateLimiter(0, 0, clock=clock)
        for _ in range(20):
            limiter.reserve(1)
            clock.t += 0.1
        limiter.throttled()
        clock.t += 0.1
        sent_at = clock.t
        limiter.reserve(1)
        clock.t += 15.0
        if read:
            limiter.current()
        limiter.throttled(sent_at)
        clock.t += 0.001
        return limiter.reserve(1), limiter.reserve(1)

    assert late_429(read=False) == late_429(read=True)


def test_status_shows_a_very_low_limit_as_itself_not_as_unlimited() -> None:
    """`status` reads 0 as "unlimited": a configured 0.0002 requests/s must not round to it."""
    drain = Drain(LimitScripted(NAME, cfg(rate_limit_requests=0.0002, rate_limit_events=0.00037), []),
                  None, None)
    extra = output_extra(drain)
    assert (extra["rate_limit_requests"], extra["rate_limit_events"]) == (0.0002, 0.00037)
