"""Circuit breaker: transitions with a fake clock, and in the drain: nothing sent while open, one probe
when half-open, auth failures open it at once (credentials refreshed before the probe)."""

from __future__ import annotations

import gevent
import pytest

from outputs.base import Outcome
from outputs.breaker import CLOSED, HALF_OPEN, OPEN, PROBE_POLL_S, Breaker
from outputs.drain import Drain
from spool.store import Spool
from tests.outputs.drain_kit import Clock, Fake, caught_up, cfg, fill, start, stop, wait_until


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count():
    b = Breaker(3, 10, 80, Clock(0.0))
    b.failure("503")
    b.failure("503")
    b.success()
    b.failure("503")
    b.failure("503")
    assert b.state == CLOSED
    b.failure("503")
    assert b.state == OPEN and b.reason == "503" and b.opened_total == 1


def test_open_waits_the_cooldown_then_lets_exactly_one_probe_through():
    clock = Clock(0.0)
    b = Breaker(1, 10, 80, clock)
    b.failure("reset")
    assert b.allow() == (10, False)
    clock.t = 4
    assert b.allow() == (6, False)
    clock.t = 10
    assert b.allow() == (0, True)  # the probe
    assert b.state == HALF_OPEN
    assert b.allow() == (PROBE_POLL_S, False)  # everyone else waits for its result
    b.success()
    assert b.state == CLOSED and b.allow() == (0, False)


def test_a_failed_probe_reopens_with_a_doubled_cooldown_up_to_the_cap():
    clock = Clock(0.0)
    b = Breaker(1, 10, 25, clock)
    b.failure("x")
    cooldowns = []
    for _ in range(3):
        clock.t += b.cooldown
        assert b.allow() == (0, True)
        b.failure("still down", probe=b.probe_id)
        cooldowns.append(b.cooldown)
    assert cooldowns == [20, 25, 25]
    clock.t += 25
    assert b.allow() == (0, True)
    b.success()
    assert b.cooldown == 10  # back to the base after recovery


def test_auth_failure_opens_at_once_and_zero_disables_the_breaker():
    b = Breaker(5, 10, 80, Clock(0.0))
    b.failure("401", auth=True)
    assert b.state == OPEN
    off = Breaker(0, 10, 80, Clock(0.0))
    for _ in range(100):
        off.failure("503", auth=True)
    assert off.state == CLOSED and off.allow() == (0, False)


def test_an_abandoned_probe_lets_another_sender_probe():
    clock = Clock(0.0)
    b = Breaker(1, 1, 1, clock)
    b.failure("x")
    clock.t = 1
    assert b.allow() == (0, True)
    b.probe_abandoned()
    assert b.allow() == (0, True)


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def test_drain_sends_nothing_while_open_then_probes_and_recovers(spool):
    fill(spool, 20)
    clock = Clock(0.0)
    down = [lambda b: Outcome.retry("connection refused")] * 3
    out = Fake("f", cfg(concurrency=2, breaker_failures=3, breaker_cooldown=30), script=down)
    drain = Drain(out, spool, spool.reader())
    drain.breaker = Breaker(3, 30, 300, clock)
    g = start(drain)
    wait_until(lambda: drain.breaker.state == OPEN)
    gevent.sleep(0.2)
    assert len(out.sent) == 3  # open: nothing else goes out, nothing is lost
    assert spool.get_cursor("f").seq == 0
    clock.t += 30  # cooldown over: one probe, which succeeds
    wait_until(caught_up(spool, "f"))
    stop(drain, g)
    assert drain.breaker.state == CLOSED
    assert sorted(out.received) == list(range(20))


def test_drain_auth_failure_opens_the_breaker_and_refreshes_before_the_probe(spool):
    fill(spool, 3)
    clock = Clock(0.0)
    out = Fake("f", cfg(), script=[lambda b: Outcome.retry("HTTP 403", auth_failure=True)])
    drain = Drain(out, spool, spool.reader())
    drain.breaker = Breaker(5, 60, 60, clock)
    g = start(drain)
    wait_until(lambda: drain.breaker.state == OPEN)
    gevent.sleep(0.1)
    assert out.calls == ["send"]
    clock.t += 60
    wait_until(caught_up(spool, "f"))
    stop(drain, g)
    assert out.calls == ["send", "refresh", "send"]
    assert drain.breaker.state == CLOSED
