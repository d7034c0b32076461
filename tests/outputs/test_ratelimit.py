"""Token buckets with AIMD: halve on throttling, recover additively, floor, unlimited stays cheap."""

from __future__ import annotations

import pytest

from outputs.base import Outcome
from outputs.drain import Drain
from outputs.ratelimit import RELEASE_S, AdaptiveBucket, RateLimiter
from spool.store import Spool
from tests.outputs.drain_kit import Clock, Fake, caught_up, cfg, fill, run_until


def test_bucket_paces_requests_at_the_configured_rate():
    clock = Clock()
    b = AdaptiveBucket(10, 0.1, clock)  # 10/s, burst of 10
    assert [b.reserve(1) for _ in range(10)] == [0.0] * 10
    assert b.reserve(1) == pytest.approx(0.1)  # in debt by one token
    assert b.reserve(1) == pytest.approx(0.2)  # queued behind it
    clock.t += 1.0
    assert b.reserve(1) == 0.0  # a second later the debt of 2 is paid and 8 tokens are back
    assert b.reserve(8) == pytest.approx(0.1)


def test_a_reservation_larger_than_the_burst_waits_instead_of_deadlocking():
    b = AdaptiveBucket(100, 1, Clock())
    assert b.reserve(500) == pytest.approx(4.0)  # 100 in the bucket, 400 of debt at 100/s


def test_throttling_halves_and_success_recovers_additively_up_to_the_configured_rate():
    b = AdaptiveBucket(100, 1, Clock())
    b.throttled()
    assert b.rate == 50
    b.throttled()
    assert b.rate == 25
    b.succeeded()
    assert b.rate == 30  # + 5% of 100
    for _ in range(100):
        b.succeeded()
    assert b.rate == 100


def test_the_rate_never_drops_below_its_floor():
    b = AdaptiveBucket(640, 1, Clock())
    for _ in range(50):
        b.throttled()
    assert b.rate == 10  # 1/64 of the configured 640
    tiny = AdaptiveBucket(2, 1, Clock())
    for _ in range(10):
        tiny.throttled()
    assert tiny.rate == 1  # the absolute minimum


def test_unlimited_costs_nothing_until_throttled_then_limits_at_half_the_observed_rate():
    clock = Clock()
    b = AdaptiveBucket(0, 1, clock)
    for _ in range(20):
        assert b.reserve(10) == 0.0
        clock.t += 0.1
    b.throttled()  # 200 units in 2 s observed: 100/s, halved
    assert b.rate == pytest.approx(50, rel=0.06)
    for _ in range(20):
        b.succeeded()
    assert b.rate is None  # back to unlimited once recovered to the observed rate


def test_limiter_reports_the_rates_in_effect():
    lim = RateLimiter(requests_per_s=8, events_per_s=0, clock=Clock())
    assert lim.current() == (8, 0)
    lim.throttled()
    assert lim.current()[0] == 4


def test_a_throttled_outcome_halves_the_outputs_rate_and_success_recovers_it(tmp_path):
    spool = Spool(str(tmp_path / "s.db"))
    fill(spool, 10)
    throttle = [lambda b: Outcome.retry("HTTP 429", retry_after=0.01, throttled=True)] * 2
    out = Fake("f", cfg(rate_limit_requests=1000, rate_limit_events=100_000, batch_max_events=10),
               script=throttle)
    drain = Drain(out, spool, spool.reader())
    seen = []
    orig = drain.limiter.succeeded

    def succeeded():
        seen.append(drain.limiter.current())
        orig()

    drain.limiter.succeeded = succeeded
    run_until(drain, caught_up(spool, "f"))
    spool.close()
    assert seen[0] == (250, 25_000)  # halved twice before the success
    assert drain.limiter.current() == (300, 30_000)  # then + 5% of the configured rate
    assert drain.breaker.state == 0  # throttling is not a breaker failure


def test_one_429_after_a_slow_request_halves_the_rate_it_was_sending_at():
    """A 500-event batch every 2.5 s (each request takes 2.5 s), then a 429: the observation window
    was anchored at now, so it held no reservation and one 429 dropped the ceiling to the floor
    (0.1 requests/s, 1 event/s: the next batch waited 500 s)."""
    clock = Clock()
    lim = RateLimiter(0, 0, clock=clock)
    for _ in range(10):
        assert lim.reserve(500) == 0.0
        clock.t += 2.5
    lim.throttled()
    assert lim.current() == (pytest.approx(0.2), 0)  # half of 0.4 req/s; events/s unconfigured
    assert lim.reserve(500) == pytest.approx(5.0)  # one request at 0.2/s


def test_a_light_stream_throttled_still_sends_its_next_full_batch_after_one_request_slot():
    """Five events a second, then three 429s, then a burst. Events/s is unconfigured, so it is not
    limited by the light stream's observed rate: the 500-event batch waits for one request slot
    (1 request/s observed, halved thrice), not 500 s for 500 tokens at the events' floor of 1/s."""
    clock = Clock()
    lim = RateLimiter(0, 0, clock=clock)
    for _ in range(10):
        assert lim.reserve(5) == 0.0
        clock.t += 1.0
    for _ in range(3):
        lim.throttled()
    requests, events = lim.current()
    assert requests == pytest.approx(0.125) and events == 0
    assert lim.reserve(500) == pytest.approx(8.0)


def test_an_observed_ceiling_is_let_go_after_a_quiet_while():
    """No further 429 for RELEASE_S: the destination has recovered, and unconfigured means
    unlimited again, however few successes the light stream has had to recover additively."""
    clock = Clock()
    lim = RateLimiter(0, 0, clock=clock)
    for _ in range(10):
        lim.reserve(5)
        clock.t += 1.0
    for _ in range(6):
        lim.throttled()
    clock.t += RELEASE_S - 0.5
    assert lim.current()[0] == pytest.approx(0.1)
    assert lim.reserve(1) > 0
    clock.t += 0.5
    assert lim.current() == (0, 0)
    assert lim.reserve(500) == 0.0
    for _ in range(20):  # the next throttle observes afresh: 20 requests in 2 s, halved
        lim.reserve(50)
        clock.t += 0.1
    lim.throttled()
    assert lim.current()[0] == pytest.approx(5, rel=0.06)


def test_configured_rates_adapt_and_are_never_let_go():
    clock = Clock()
    lim = RateLimiter(requests_per_s=0, events_per_s=1000, clock=clock)
    lim.throttled()
    assert lim.current() == (0, 500)  # the configured dimension alone adapts
    clock.t += 10 * RELEASE_S
    assert lim.current() == (0, 500)  # until successes bring it back
    lim.succeeded()
    assert lim.current() == (0, 550)


def test_concurrent_slow_requests_are_all_counted():
    clock = Clock()
    b = AdaptiveBucket(0, 1, clock)
    for _ in range(4):  # four batches in flight at once
        b.reserve(100)
        clock.t += 0.01
    clock.t += 9.96  # the first answer (429) comes 10 s after the first send
    b.throttled()
    assert b.rate == pytest.approx(20)  # 400 events in 10 s, halved


def test_an_idle_pause_before_the_throttled_request_does_not_count():
    clock = Clock()
    b = AdaptiveBucket(0, 1, clock)
    b.reserve(100)
    clock.t += 3600  # an hour of nothing
    b.reserve(300)
    clock.t += 3.0
    b.throttled()
    assert b.rate == pytest.approx(50)  # 300 events in 3 s, halved


def test_a_burst_of_429s_to_requests_in_flight_halves_the_rate_once():
    """Four requests sent at the old rate all answered 429: one decrease, as TCP halves its window
    once per round trip (it used to halve four times, 100 requests/s to 6.25). A request sent after
    the decrease and throttled again halves it again."""
    clock = Clock()
    limiter = RateLimiter(requests_per_s=100, clock=clock)
    sent = [clock.t + i * 0.01 for i in range(4)]
    clock.t += 0.2
    for t in sent:
        limiter.throttled(t)
    assert limiter.current()[0] == pytest.approx(50)
    clock.t += 0.1
    limiter.throttled(clock.t - 0.05)  # sent after the decrease took effect
    assert limiter.current()[0] == pytest.approx(25)
    limiter.throttled()  # without a send time: always
    assert limiter.current()[0] == pytest.approx(12.5)


def test_the_drain_halves_once_for_a_burst_of_429s_to_its_requests_in_flight(tmp_path):
    import gevent

    spool = Spool(str(tmp_path / "s.db"))
    fill(spool, 40)
    calls: list[int] = []
    rates: list[float] = []
    drains: list[Drain] = []

    def rule(batch):
        calls.append(1)
        if len(calls) <= 4:  # four requests in flight at once, all refused
            gevent.sleep(0.1)
            return Outcome.retry("HTTP 429", retry_after=0.01, throttled=True)
        rates.append(drains[0].limiter.current()[0])
        return None

    out = Fake("f", cfg(concurrency=4, batch_max_events=10, rate_limit_requests=1000), rule=rule)
    drain = Drain(out, spool, spool.reader())
    drains.append(drain)
    run_until(drain, caught_up(spool, "f"))
    spool.close()
    assert rates[0] == 500  # halved once, not 1000 / 16


def test_batches_waiting_on_an_observed_ceiling_go_once_it_is_let_go(tmp_path, monkeypatch):
    """Five 429s halve an unconfigured output's observed rate to its floor: the batches then owe
    waits that end ~9 s after this run does. Once the limiter lets go of that ceiling (RELEASE_S,
    made 0.2 s here), the waits already computed are void: the batches go without serving them."""
    import time

    import outputs.drain as drain_module
    import outputs.ratelimit as ratelimit

    monkeypatch.setattr(ratelimit, "RELEASE_S", 0.2)
    monkeypatch.setattr(drain_module, "IDLE_WAIT_S", 0.05)
    spool = Spool(str(tmp_path / "s.db"))
    fill(spool, 30)
    throttle = [lambda b: Outcome.retry("HTTP 429", retry_after=0.01, throttled=True)] * 5
    out = Fake("f", cfg(concurrency=1, batch_max_events=5), script=throttle)
    drain = Drain(out, spool, spool.reader())
    dues: list[float] = []
    reserve = drain.limiter.reserve
    monkeypatch.setattr(drain.limiter, "reserve",
                        lambda n: dues.append(time.monotonic() + reserve(n)) or dues[-1] - time.monotonic())
    run_until(drain, caught_up(spool, "f"))
    finished = time.monotonic()
    spool.close()
    assert out.received == list(range(30))
    assert max(dues) - finished > 5  # the debts ran far past the end: not waited out


def test_an_attempt_never_goes_before_one_reserved_earlier_when_recovery_raised_the_rate() -> None:
    """First come, first served: A's wait was given at a throttled rate; after recovery raised the
    rate, B's own wait is shorter, but B must not overtake A (the module docstring's promise)."""
    clock = Clock()
    lim = RateLimiter(requests_per_s=8.0, clock=clock)
    for _ in range(3):
        lim.throttled()  # 8 -> 1/s
    assert lim.reserve(1) == pytest.approx(0.0)  # what the bucket held
    a_due = clock.t + lim.reserve(1)  # at 1/s: a second
    assert a_due == pytest.approx(clock.t + 1.0)
    for _ in range(20):
        lim.succeeded()  # back to 8/s
    assert lim.current()[0] == 8.0
    clock.t += 0.1
    b_due = lim.reserve(1)
    assert clock.t + b_due >= a_due - 1e-9, "B overtook A"
