"""Test kit for the delivery framework: a real spool in tmp_path, a scripted fake output, helpers to run
a drain until a condition holds. Shared by tests/outputs/test_drain_*.py, test_routing.py, test_replay.py.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import orjson

from outputs.base import DeliveryItem, Outcome, Output, OutputConfig
from outputs.drain import Drain
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch

Script = Callable[[list[DeliveryItem]], Outcome | None]


@contextlib.contextmanager
def fresh_spool() -> Iterator[Spool]:
    """A spool in a temporary directory of its own: for property tests, whose many examples share
    one test function (and so one tmp_path)."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(str(Path(tmp) / "spool.db"))
        try:
            yield spool
        finally:
            spool.close()


def make_event(i: int, severity: str = "info", allowed: bool = True, **extra: Any) -> dict[str, Any]:
    ev = {"event_id": str(uuid.UUID(int=i + 1)), "event_type": "policy_allow" if allowed else "guard_block",
          "decision": {"severity": severity, "allowed": allowed}, "n": i}
    ev.update(extra)
    return ev


def fill(spool: Spool, n: int, start: int = 0, **kw: Any) -> None:
    events = [EncodedEvent(uuid.UUID(int=i + 1).bytes, 1_700_000_000_000 + i,
                           orjson.dumps(make_event(i, **kw))) for i in range(start, start + n)]
    spool.append(IngestBatch("t", events))


def cfg(**kw: Any) -> OutputConfig:
    base: dict[str, Any] = dict(batch_max_events=5, batch_max_wait=0, retry_initial=0.001,
                                retry_max=0.005, healthcheck_interval=0)
    base.update(kw)
    return OutputConfig(type="fake", **base)


def ns(batch: list[DeliveryItem]) -> list[int]:
    # an output that sends only encoded bytes gets no canonical body in flight (outputs.render)
    return [orjson.loads(i.body or i.data)["n"] for i in batch]


class Fake(Output):
    """Delivers everything unless a scripted step says otherwise.

    ``script``: callables taken one per ``send`` call; one may return an Outcome (used as the answer) or
    None (deliver). ``rule``: consulted on every call after the script ran out. ``sent`` records each
    attempt's event numbers; ``received`` the numbers of delivered attempts, in order.
    """

    type_name = "fake"
    reads_events = False

    def __init__(self, name: str, config: OutputConfig, script: list[Script] | None = None,
                 rule: Script | None = None, size: int | None = None):
        super().__init__(name, config)
        self.script = list(script or [])
        self.rule = rule
        self.size = size
        self.sent: list[list[int]] = []
        self.received: list[int] = []
        self.calls: list[str] = []
        self.health: tuple[bool, str] = (True, "ok")

    def encode(self, item: DeliveryItem) -> bytes:
        if self.size is not None:
            return item.body[:1] * self.size
        return super().encode(item)

    def send(self, batch: list[DeliveryItem]) -> Outcome:
        self.calls.append("send")
        return self.answer(batch, ns(batch))

    def answer(self, batch: list[DeliveryItem], numbers: list[int]) -> Outcome:
        """Record an attempt of the events ``numbers``; answer from the script, else the rule."""
        self.sent.append(numbers)
        step = self.script.pop(0) if self.script else self.rule
        outcome = step(batch) if step is not None else None
        if outcome is None:
            self.received.extend(numbers)
            return Outcome.delivered()
        return outcome

    def refresh_credentials(self) -> None:
        self.calls.append("refresh")

    def healthcheck(self) -> tuple[bool, str]:
        return self.health


class Gate:
    """Blocks a send until ``open()``: makes batches finish in a chosen order."""

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self.waiting = 0

    def __call__(self, batch: list[DeliveryItem]) -> None:
        self.waiting += 1
        self.event.wait()
        return None

    def open(self) -> None:
        self.event.set()


def start(drain: Drain) -> gevent.Greenlet:
    return gevent.spawn(drain.run)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    with gevent.Timeout(timeout, AssertionError("condition not reached")):
        while not cond():
            gevent.sleep(0.005)


def stop(drain: Drain, g: gevent.Greenlet) -> None:
    drain.stop()
    g.join(timeout=5)
    assert g.dead


@contextlib.contextmanager
def gated(drain: Drain, gate: Gate) -> Iterator[Drain]:
    """Run ``drain`` while the body looks at it with every send held at ``gate``; on the way out (an
    assertion failed too) the gate opens, so the drain can stop."""
    g = start(drain)
    try:
        yield drain
    finally:
        gate.open()
        stop(drain, g)


def run_until(drain: Drain, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run ``drain`` until ``cond()``; a drain that dies meanwhile fails at once, with its error."""
    g = start(drain)
    try:
        wait_until(lambda: cond() or g.dead, timeout)
        assert not g.dead, f"the drain died: {g.exception!r}"
    finally:
        stop(drain, g)


def caught_up(spool: Spool, name: str) -> Callable[[], bool]:
    return lambda: (spool.get_cursor(name) or (-1, 0))[0] == spool.last_seq()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def reference_cut(sizes: list[int], max_events: int, max_bytes: int) -> list[list[int]]:
    """docs/outputs.md §2, written out: positions of the events of each batch, in order. A batch
    closes when it holds ``max_events`` events, or when the next event would push its bytes past
    ``max_bytes`` (then that event starts the next batch); one event larger than the limit goes alone."""
    batches: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if cur and total + size > max_bytes:
            batches.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += size
        if len(cur) == max_events or total >= max_bytes:
            batches.append(cur)
            cur, total = [], 0
    if cur:
        batches.append(cur)
    return batches
