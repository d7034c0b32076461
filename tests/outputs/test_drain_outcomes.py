"""How the drain acts on each Outcome: retry with backoff (Retry-After bounded), PERMANENT, PARTIAL with
exact counts, SPLIT bisected down to the one bad event; credentials refreshed after an auth failure."""

from __future__ import annotations

import random

import orjson
import pytest

from outputs.base import Outcome
from outputs.drain import Drain
from spool.store import Spool
from tests.outputs.drain_kit import Fake, caught_up, cfg, fill, ns, run_until


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def dlq_numbers(spool: Spool, name: str) -> list[int]:
    return [orjson.loads(e.body)["n"] for e in spool.dlq_list(name)]


def test_split_bisects_until_the_bad_event_is_alone_in_the_dlq(spool):
    fill(spool, 8)

    def refuse_poison(batch):
        if 5 in ns(batch):
            return Outcome.split("HTTP 413 / invalid event", excerpt="bad event")
        return None

    out = Fake("f", cfg(batch_max_events=8), rule=refuse_poison)
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.sent == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [6, 7]]
    assert sorted(out.received) == [0, 1, 2, 3, 4, 6, 7]
    (entry,) = spool.dlq_list("f")
    assert orjson.loads(entry.body)["n"] == 5
    assert entry.reason == "HTTP 413 / invalid event" and entry.response_excerpt == b"bad event"
    assert drain.stats.delivered == 7 and drain.stats.dlq == 1


def test_partial_counts_exactly_and_resends_only_the_retry_items(spool):
    fill(spool, 10)

    def partial(batch):
        return Outcome.partial("2 mapping errors, 2 rejected (429)", failed=[batch[2], batch[5]],
                               retry_items=[batch[7], batch[8]], throttled=True, excerpt="es said no")

    out = Fake("f", cfg(batch_max_events=10), script=[partial])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.sent == [list(range(10)), [7, 8]]
    assert dlq_numbers(spool, "f") == [2, 5]
    assert drain.stats.delivered == 8  # 6 accepted at once + the 2 retried
    assert drain.stats.dlq == 2 and drain.stats.retries == 1


def test_permanent_without_a_failed_list_sends_the_whole_batch_to_the_dlq(spool):
    fill(spool, 3)
    out = Fake("f", cfg(), script=[lambda b: Outcome.permanent("HTTP 400", excerpt="nope")])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert dlq_numbers(spool, "f") == [0, 1, 2]
    assert drain.stats.delivered == 0 and drain.stats.dlq == 3
    assert [e.attempts for e in spool.dlq_list("f")] == [1, 1, 1]


def test_retries_never_drop_and_the_dlq_records_the_attempts(spool):
    fill(spool, 2)
    busy = [lambda b: Outcome.retry("HTTP 503")] * 6
    out = Fake("f", cfg(breaker_failures=0), script=[*busy, lambda b: Outcome.permanent("HTTP 400")])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert len(out.sent) == 7 and drain.stats.retries == 6
    assert [e.attempts for e in spool.dlq_list("f")] == [7, 7]


def test_auth_failure_refreshes_credentials_before_the_next_attempt(spool):
    fill(spool, 2)
    auth = [lambda b: Outcome.retry("HTTP 401 (credentials refused)", auth_failure=True)]
    out = Fake("f", cfg(breaker_failures=0), script=auth)
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    assert out.calls == ["send", "refresh", "send"]
    assert out.received == [0, 1]


def test_backoff_is_full_jitter_and_honours_retry_after_up_to_its_cap(spool):
    out = Fake("f", cfg(retry_initial=1, retry_max=8, retry_after_max=30))
    drain = Drain(out, spool, spool.reader(), rng=random.Random(1))
    delays = [drain._backoff(attempt, None) for attempt in (1, 2, 3, 4, 5, 6) for _ in range(50)]
    caps = [min(8, 2 ** (a - 1)) for a in (1, 2, 3, 4, 5, 6) for _ in range(50)]
    assert all(0 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len({round(d, 6) for d in delays}) > 250  # jittered, not fixed steps
    assert drain._backoff(1, 12.0) == 12.0  # Retry-After wins over a shorter jitter
    assert drain._backoff(1, 3600.0) == 30.0  # ... bounded by retry_after_max
    assert drain._backoff(500, None) <= 8  # no overflow on long outages


def test_an_exception_in_send_is_a_retry(spool):
    fill(spool, 1)

    def boom(batch):
        raise RuntimeError("bug")

    out = Fake("f", cfg(), script=[boom])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.received == [0] and drain.stats.last_error == "output error: RuntimeError"


def test_an_event_the_output_cannot_encode_goes_to_the_dlq_and_the_rest_flows(spool):
    fill(spool, 4)
    out = Fake("f", cfg())
    orig = out.encode

    def encode(item):
        if item.seq == 3:
            raise ValueError("no CEF mapping")
        return orig(item)

    out.encode = encode
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert out.received == [0, 1, 3]
    (entry,) = spool.dlq_list("f")
    assert entry.reason == "encode failed: ValueError: no CEF mapping" and entry.attempts == 0


def test_a_failing_dlq_write_retries_the_batch_instead_of_leaving_it_unfinished(spool):
    fill(spool, 3)
    out = Fake("f", cfg(), rule=lambda b: Outcome.permanent("HTTP 400"))
    real, calls = spool.dlq_add, []

    def flaky_dlq_add(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(*args, **kw)

    spool.dlq_add = flaky_dlq_add
    drain = Drain(out, spool, spool.reader())
    run_until(drain, caught_up(spool, "f"))
    assert len(calls) == 2 and dlq_numbers(spool, "f") == [0, 1, 2]
    assert len(out.sent) == 2  # the batch was attempted again after the internal error


def test_retry_after_pauses_every_batch_of_the_output(spool):
    """A 429 with Retry-After holds back the other batches in flight too, not only the refused one:
    no request of this output starts before the destination's Retry-After has passed."""
    import time

    fill(spool, 40)
    starts: list[float] = []
    answered: list[float] = []

    def rule(batch):
        starts.append(time.monotonic())
        if len(starts) == 1:
            answered.append(time.monotonic())
            return Outcome.retry("HTTP 429", retry_after=0.4, throttled=True)
        return None

    out = Fake("f", cfg(concurrency=4, batch_max_events=5, retry_after_max=5), rule=rule)
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
    assert sorted(out.received) == list(range(40))
    later = [t for t in starts[1:] if t > answered[0]]
    assert later and min(later) - answered[0] >= 0.4 - 0.02


def test_a_sender_waiting_on_the_rate_limiter_still_honours_a_later_retry_after(spool):
    """A batch waiting for its rate-limit tokens when another batch's 429 arrives: it used to send
    as soon as its tokens were due, before the Retry-After had passed."""
    import time

    import gevent

    fill(spool, 10)
    starts: list[float] = []
    answered: list[float] = []

    def rule(batch):
        starts.append(time.monotonic())
        if len(starts) == 1:
            gevent.sleep(0.2)  # meanwhile the second batch reserves its token, due in ~1 s
            answered.append(time.monotonic())
            return Outcome.retry("HTTP 429", retry_after=1.5, throttled=True)
        return None

    out = Fake("f", cfg(concurrency=2, batch_max_events=5, rate_limit_requests=1.0,
                        retry_after_max=10), rule=rule)
    run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"), timeout=20)
    assert sorted(out.received) == list(range(10))
    later = [t - answered[0] for t in starts[1:] if t > answered[0]]
    assert later and min(later) >= 1.5 - 0.02, later


def test_a_sender_waiting_on_the_rate_limiter_does_not_send_through_an_open_breaker(spool):
    """An auth failure opens the breaker at once: a batch that was waiting for its rate-limit tokens
    meanwhile used to send anyway, with the credentials just refused."""
    import gevent

    fill(spool, 10)
    states: list[str] = []
    drains: list[Drain] = []

    def rule(batch):
        states.append(drains[0].breaker.state_name)
        if len(states) == 1:
            gevent.sleep(0.2)
            return Outcome.retry("HTTP 401 (credentials refused)", auth_failure=True)
        return None

    out = Fake("f", cfg(concurrency=2, batch_max_events=5, rate_limit_requests=1.0,
                        breaker_cooldown=30, breaker_failures=5), rule=rule)
    drain = Drain(out, spool, spool.reader())
    drains.append(drain)
    g = gevent.spawn(drain.run)
    gevent.sleep(1.6)  # the second batch's token was due after ~1 s
    drain.stop()
    g.join(5)
    assert states == ["closed"], states  # nothing went out while the breaker was open
