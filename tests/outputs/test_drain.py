"""The drain loop against a real spool: cursor moves only after success, retries lose nothing,
permanent failures land in the DLQ, filters skip, a rewind replays, a dead output blocks no other."""

from __future__ import annotations

import uuid

import gevent
import gevent.event
import orjson
import pytest

from outputs.base import FilterConfig, Outcome, Output, OutputConfig
from outputs.drain import Drain
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch


def make_event(i: int, severity: str = "info", allowed: bool = True) -> dict:
    return {"event_id": str(uuid.UUID(int=i + 1)), "event_type": "policy_allow" if allowed else "guard_block",
            "decision": {"severity": severity, "allowed": allowed}, "n": i}


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def fill(spool: Spool, n: int, start: int = 0, **kw) -> None:
    events = [EncodedEvent(uuid.UUID(int=i + 1).bytes, 1_700_000_000_000 + i,
                           orjson.dumps(make_event(i, **kw))) for i in range(start, start + n)]
    spool.append(IngestBatch("t", events))


class Recorder(Output):
    type_name = "recorder"

    def __init__(self, name, config, script=None):
        super().__init__(name, config)
        self.received: list[int] = []
        self.script = list(script or [])

    def send(self, batch):
        if self.script:
            outcome = self.script.pop(0)(batch)
            if outcome is not None:
                return outcome
        self.received.extend(item.event["n"] for item in batch)
        return Outcome.delivered()


def run_until(drain: Drain, cond, timeout=10.0):
    g = gevent.spawn(drain.run)
    with gevent.Timeout(timeout):
        while not cond():
            gevent.sleep(0.01)
    drain.stop()
    g.join(timeout=5)
    assert g.dead


def cfg(**kw) -> OutputConfig:
    base = dict(batch_max_events=7, batch_max_wait=0, retry_initial=0.01, retry_max=0.05)
    base.update(kw)
    return OutputConfig(type="recorder", **base)


def test_delivers_everything_in_order_and_commits_the_cursor(spool):
    fill(spool, 50)
    spool.ensure_cursor("r")
    out = Recorder("r", cfg())
    drain = Drain(out, spool, spool.reader())
    run_until(drain, lambda: len(out.received) >= 50)
    assert out.received == list(range(50))
    assert spool.get_cursor("r").seq == spool.last_seq()
    assert drain.stats.delivered == 50


def test_retryable_failures_keep_the_batch_and_the_cursor(spool):
    fill(spool, 5)
    spool.ensure_cursor("r")
    cursors_seen = []

    def fail(batch):
        cursors_seen.append(spool.get_cursor("r").seq)
        return Outcome.retry("503 busy", retry_after=0.01)

    out = Recorder("r", cfg(), script=[fail, fail, fail])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, lambda: len(out.received) >= 5)
    assert out.received == [0, 1, 2, 3, 4]
    assert cursors_seen == [0, 0, 0]  # never advanced while failing
    assert drain.stats.retries == 3 and drain.stats.last_error == "503 busy"


def test_permanent_failure_sends_only_the_failed_items_to_the_dlq(spool):
    fill(spool, 4)
    spool.ensure_cursor("r")

    def reject_second(batch):
        return Outcome.permanent("400 mapping error", failed=[batch[1]])

    out = Recorder("r", cfg(), script=[reject_second])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, lambda: spool.get_cursor("r").seq == spool.last_seq())
    dlq = spool.dlq_list("r")
    assert [orjson.loads(e.body)["n"] for e in dlq] == [1]
    assert dlq[0].reason == "400 mapping error"
    assert dlq[0].event_id == uuid.UUID(int=2).bytes
    assert drain.stats.dlq == 1 and drain.stats.delivered == 3


def test_filtered_events_are_skipped_but_passed_by_the_cursor(spool):
    fill(spool, 3, severity="info")
    fill(spool, 2, start=3, severity="critical", allowed=False)
    spool.ensure_cursor("r")
    out = Recorder("r", cfg(filter=FilterConfig(min_severity="high")))
    drain = Drain(out, spool, spool.reader())
    run_until(drain, lambda: spool.get_cursor("r").seq == spool.last_seq())
    assert out.received == [3, 4]
    assert drain.stats.filtered == 3


def test_rewind_while_running_replays(spool):
    fill(spool, 10)
    spool.ensure_cursor("r")
    out = Recorder("r", cfg())
    drain = Drain(out, spool, spool.reader())
    g = gevent.spawn(drain.run)
    with gevent.Timeout(10):
        while len(out.received) < 10:
            gevent.sleep(0.01)
        spool.rewind("r", count=4)  # what `clawd-agent cursor rewind r --count 4` does
        while len(out.received) < 14:
            gevent.sleep(0.01)
    drain.stop()
    g.join(timeout=5)
    assert out.received[10:] == [6, 7, 8, 9]


def test_the_rewind_check_does_not_wait_for_the_spools_write_lock(spool):
    """A drain checks its cursor's generation on every wake-up. On the spool's own connection that
    check queued behind the append transaction holding the spool's lock, which delayed delivery."""
    fill(spool, 3)
    spool.ensure_cursor("r")
    drain = Drain(Recorder("r", cfg()), spool, spool.reader())
    drain._reset()
    done = gevent.event.Event()

    def transaction_in_progress() -> None:
        with spool._lock:
            done.wait()

    holder = gevent.spawn(transaction_in_progress)
    gevent.sleep(0)
    assert gevent.with_timeout(2, drain._cursor_moved, timeout_value="waited") is False
    done.set()
    holder.join()
    spool.rewind("r", count=2)  # what `clawd-agent cursor rewind` does
    assert drain._cursor_moved() is True


def test_a_dead_output_does_not_slow_the_other(spool):
    fill(spool, 30)
    spool.ensure_cursor("dead")
    spool.ensure_cursor("live")
    dead = Recorder("dead", cfg(), script=[lambda b: Outcome.retry("connection refused")] * 10_000)
    live = Recorder("live", cfg())
    d1, d2 = Drain(dead, spool, spool.reader()), Drain(live, spool, spool.reader())
    g1 = gevent.spawn(d1.run)
    run_until(d2, lambda: len(live.received) == 30)
    d1.stop()
    g1.join(timeout=5)
    assert dead.received == []
    assert spool.get_cursor("dead").seq == 0
    assert spool.get_cursor("live").seq == spool.last_seq()


def test_an_output_that_raises_is_retried_not_fatal(spool):
    fill(spool, 2)
    spool.ensure_cursor("r")

    def boom(batch):
        raise RuntimeError("bug")

    out = Recorder("r", cfg(), script=[boom])
    drain = Drain(out, spool, spool.reader())
    run_until(drain, lambda: len(out.received) == 2)
    assert drain.stats.last_error == "output error: RuntimeError"
