"""Property-based tests of Splunk HEC indexer acknowledgement (``outputs/splunk_hec.py``: ``AckTracker``
and how ``SplunkHecOutput.send`` uses it) against its docstrings, docs/outputs/splunk_hec.md
("Indexer acknowledgement") and ../shared/reference/delivery-peers.md §4.1 (Splunk's contract).

The output is the real one with its real tracker and poller greenlet; only its HTTP layer is a fake
(``FakeHec``): a small model of one Splunk indexer with per-channel ackId counters, requests queued
then indexed, a ``true`` reported once, restarts (ackIds start again at 0 and queued data is lost),
and the answers of proxies and of HEC's error codes. A POST waits at a gate until a rule answers it,
so POSTs, poll rounds, timeouts and restarts interleave as the state machine draws them. Time is
fake: the poller's ``gevent.sleep`` parks until a rule runs a round (and records the interval it
asked for), and an ack timeout is the ``gevent.Timeout`` thrown into the waiting send, as its timer
would. Nothing waits on the wall clock.

Properties (``AckMachine``):

1. a send is DELIVERED if and only if HEC reported ``true`` for that very request's ackId on that
   very channel (no ``true`` confirms an older request that held the same id before a restart, a
   timed-out one, or another channel's; ``false`` and missing ids leave the request waiting);
2. every other outcome has its documented cause, and each cause resolves the request at once: ack
   timeout, the same ackId given again on its channel, a POST without HEC's answer on its channel,
   ``/ack`` 10/11 (re-send), 401/403 or a 4xx that is not HEC's (auth failure), 400 code 14 (DLQ);
   a POST's own refusal is a RETRY;
3. ack queries go one at a time per channel and never while a POST holds it, name only ids of
   requests waiting on that channel, each once, at most ``MAX_ACKS_PER_QUERY`` of them; a POST never
   goes on a channel that was replaced;
4. poll back-off: each round waits ``ack_poll_interval`` after an idle poller or a round that got an
   ack, else twice the last wait, capped at ``ack_poll_max_interval``;
5. at the end (faults stop, everything is indexed, RETRY batches re-sent as the drain would),
   every batch is delivered or, after code 14 only, dead-lettered; each delivered event is stored.

``test_ack_queries_are_chunked`` checks the per-query limit with more waiters than it;
``test_acked_drain_*`` runs the real drain and spool over the same fake HEC: the cursor and its
done ranges never pass an event whose request HEC has not acknowledged, and every event ends up
stored. At the end, the defect found on the way (it fails until the fix): a POST answered after
``close()`` counted as delivered without an ack.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.event
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from outputs.base import DeliveryItem, Outcome, Status
from outputs.drain import Drain
from outputs.http import HttpResponse, Payload, TransportError
from outputs.splunk_hec import CHANNEL_HEADER, MAX_ACKS_PER_QUERY, SplunkHecOutput
from tests.outputs.drain_kit import caught_up, fill, fresh_spool, run_until
from tests.outputs.test_splunk_hec import ACK_TOKEN, make_output
from tests.outputs.test_splunk_hec import items as hec_items

#: ``make_output`` reads only ``server.url``; nothing listens there, the fake answers instead.
NOWHERE = SimpleNamespace(url="http://127.0.0.1:9")
INITIAL, MAXIMUM = 1.0, 6.0  # ack_poll_interval, ack_poll_max_interval (fake seconds)
_real_sleep = gevent.sleep


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {}, orjson.dumps(body), 0.001)


def settle() -> None:
    """Let every runnable greenlet run until all are blocked (no timers fire: time is fake)."""
    for _ in range(4):
        gevent.idle()
        _real_sleep(0)


# ------------------------------------------------------------------------------------ the model


@dataclass(eq=False)
class Req:
    """One POST HEC took: an ackId on a channel; queued until indexed; a ``true`` reported once."""

    rid: int
    guid: str
    ack_id: int
    seqs: list[int]
    state: str = "queued"  # queued | indexed | reported | lost
    known: bool = True  # HEC still has its ack state (a restart forgets it)


@dataclass(eq=False)
class Attempt:
    """One ``send`` call of a batch."""

    aid: int
    batch: int
    seqs: list[int]
    greenlet: gevent.Greenlet | None = None
    gate: gevent.event.AsyncResult | None = None  # set while its POST waits for an answer
    guid: str = ""
    decision: str = ""  # how its POST was answered
    req: Req | None = None  # what HEC took from it, if anything
    registered: bool = False  # answered "accept": the tracker waits for its ack
    outcome: Outcome | None = None
    #: the documented causes that resolve it before its ack (cause -> expected status)
    causes: dict[str, Status] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        return self.registered and self.outcome is None and not self.causes


class FakeHec:
    """The HTTP layer of the output: one indexer's HEC, answering as ``decide`` says."""

    def __init__(self, out: SplunkHecOutput):
        self.out = out
        self.channels: dict[str, dict[int, Req]] = {}  # guid -> ackId -> request (HEC's ack state)
        self.counters: dict[str, int] = {}
        self.reqs: list[Req] = []
        self.stored: list[int] = []  # seqs of indexed events (duplicates kept)
        self.attempts: dict[Any, Attempt] = {}  # greenlet -> attempt
        self.all_attempts: list[Attempt] = []
        self.posting: set[str] = set()  # channels with a POST under way
        self.querying: set[str] = set()
        self.retired: set[str] = set()  # channels the output must no longer POST on (model)
        self.ack_faults: list[str] = []  # one-shot answers of the next ack queries
        self.omit = False  # leave pending ids out of ack answers (instead of false)
        self.round_trues = 0
        self.round_queries = 0  # ack queries in the round that just ran (0: every channel was busy)
        self.code14 = False
        self.violations: list[str] = []

    # -- helpers -----------------------------------------------------------------------------
    def registered_on(self, guid: str) -> list[Attempt]:
        return [a for a in self.all_attempts if a.waiting and a.guid == guid]

    def cause(self, attempts: list[Attempt], name: str, status: Status) -> None:
        for a in attempts:
            a.causes.setdefault(name, status)

    def retire(self, guid: str) -> None:
        self.retired.add(guid)

    def allocate(self, guid: str, seqs: list[int]) -> Req:
        n = self.counters.get(guid, 0)
        self.counters[guid] = n + 1
        req = Req(len(self.reqs), guid, n, seqs)
        self.reqs.append(req)
        self.channels.setdefault(guid, {})[n] = req
        return req

    # -- the HTTP layer ----------------------------------------------------------------------
    def request(self, method: str, url: str, body: bytes | Payload | None = None,
                headers: dict[str, str] | None = None, **kw: Any) -> HttpResponse:
        headers = headers or {}
        guid = headers.get(CHANNEL_HEADER, "")
        if url == self.out.event_url:
            return self.post(guid)
        assert url == self.out.ack_url, url
        assert isinstance(body, bytes)
        return self.ack(guid, orjson.loads(body)["acks"])

    def post(self, guid: str) -> HttpResponse:
        att = self.attempts[gevent.getcurrent()]
        if not guid:
            self.violations.append(f"attempt {att.aid}: POST without a channel")
        if guid in self.retired:
            self.violations.append(f"attempt {att.aid}: POST on replaced channel {guid[:8]}")
        if guid in self.posting or guid in self.querying:
            self.violations.append(f"attempt {att.aid}: POST on {guid[:8]} while another request "
                                   "holds it")
        att.guid = guid
        self.posting.add(guid)
        att.gate = gevent.event.AsyncResult()
        try:
            decision = att.gate.get()
        finally:
            self.posting.discard(guid)
            att.gate = None
        att.decision = decision
        if decision in ("accept", "accept_24", "reset_after_take", "page_after_take"):
            att.req = req = self.allocate(guid, att.seqs)
            older = [a for a in self.registered_on(guid) if a.req is not None and
                     a.req.ack_id == req.ack_id]
            if decision.startswith("accept"):
                self.cause(older, "given again", Status.RETRY)
                if older:
                    self.retire(guid)
                att.registered = True
                code = 24 if decision == "accept_24" else 0
                return _json(200, {"text": "Success", "code": code, "ackId": req.ack_id})
        if decision in ("reset_after_take", "reset", "page_after_take"):
            # no HEC answer: any request waiting on the channel may share an ackId with this one
            self.cause(self.registered_on(guid), "no HEC answer", Status.RETRY)
            self.retire(guid)
            if decision == "page_after_take":
                return HttpResponse(502, {}, b"<html>502 Bad Gateway</html>", 0.001)
            raise TransportError("ConnectionError: Connection reset by peer")
        if decision == "busy":
            return _json(503, {"text": "Server is busy", "code": 9, "invalid-event-number": 0})
        if decision == "code11":
            self.retire(guid)
            return _json(400, {"text": "Invalid data channel", "code": 11})
        if decision == "code27":
            self.retire(guid)
            return _json(429, {"text": "HEC ACK channel at capacity", "code": 27})
        assert decision == "auth", decision
        return _json(403, {"text": "Invalid token", "code": 4})

    def ack(self, guid: str, ids: list[int]) -> HttpResponse:
        self.round_queries += 1
        who = f"ack query on {guid[:8]} for {ids}"
        if guid in self.posting or guid in self.querying:
            self.violations.append(f"{who} while another request holds the channel")
        if not ids or len(ids) > MAX_ACKS_PER_QUERY or len(set(ids)) != len(ids):
            self.violations.append(f"{who}: empty, over the limit or repeated")
        waiting = {a.req.ack_id: a for a in self.registered_on(guid) if a.req is not None}
        strays = [i for i in ids if i not in waiting]
        if strays:
            self.violations.append(f"{who}: ids {strays} no request waits on")
        if len(ids) == len(set(ids)) and set(ids) != set(waiting) and len(waiting) <= MAX_ACKS_PER_QUERY:
            self.violations.append(f"{who}: the waiting ids are {sorted(waiting)}")
        fault = self.ack_faults.pop(0) if self.ack_faults else ""
        asked = [waiting[i] for i in ids if i in waiting]
        if fault == "transport":
            raise TransportError("ConnectionError: Connection reset by peer")
        if fault == "busy":
            return _json(503, {"text": "Server is busy", "code": 9})
        if fault == "code10":
            self.cause(self.registered_on(guid), "refused", Status.RETRY)
            self.retire(guid)
            return _json(400, {"text": "Data channel is missing", "code": 10})
        if fault == "code11":
            self.cause(self.registered_on(guid), "refused", Status.RETRY)
            self.retire(guid)
            return _json(400, {"text": "Invalid data channel", "code": 11})
        if fault == "401":
            self.cause(asked, "auth", Status.RETRY)
            return _json(401, {"text": "Invalid authorization", "code": 3})
        if fault == "404":
            self.cause(self.registered_on(guid), "no ack endpoint", Status.RETRY)
            return HttpResponse(404, {}, b"<html>Not Found</html>", 0.001)
        if fault == "code14":
            self.code14 = True
            self.cause([a for a in self.all_attempts if a.waiting], "ack disabled", Status.PERMANENT)
            return _json(400, {"text": "ACK is disabled", "code": 14})
        assert not fault, fault
        pending = self.channels.get(guid, {})
        answer: dict[str, bool] = {}
        for i in ids:
            req = pending.get(i)
            if req is not None and req.state == "indexed":
                req.state = "reported"
                del pending[i]
                answer[str(i)] = True
                self.round_trues += 1
            elif not self.omit:
                answer[str(i)] = False
        return _json(200, {"acks": answer})

    # -- HEC's side ----------------------------------------------------------------------------
    def index(self, req: Req) -> None:
        req.state = "indexed"
        self.stored.extend(req.seqs)

    def restart(self) -> None:
        """Ack state lives in the indexer's memory: every channel is forgotten (ackIds start again
        at 0) and the data of requests not indexed yet is lost."""
        for req in self.reqs:
            if req.state == "queued":
                req.state = "lost"
            req.known = False
        self.channels.clear()
        self.counters.clear()


# ------------------------------------------------------------------------------------ the machine


class AckMachine(RuleBasedStateMachine):
    """Sends, POST answers, indexing, poll rounds, timeouts, restarts and ack faults, interleaved."""

    def __init__(self) -> None:
        super().__init__()
        self.out: SplunkHecOutput | None = None
        self.hec: FakeHec | None = None
        self.batches: dict[int, list[int]] = {}
        self.fates: dict[int, str] = {}  # batch -> open | retry | delivered | dlq
        self.current: dict[int, Attempt] = {}  # batch -> its latest attempt
        self.next_seq = 0
        self.aids = itertools.count()
        self.parked = False
        self.tick = gevent.event.Event()
        self.sleeps: list[float] = []
        self.expect_initial = True  # the next round's wait: the first, or after an idle poller
        self.rounds = 0

    # -- set-up ------------------------------------------------------------------------------
    def _ensure(self, channels: int = 2, slots: int = 2) -> None:
        if self.out is not None:
            return
        out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, channels=channels, concurrency=slots,
                          compression="none", ack_poll_interval=f"{INITIAL}s",
                          ack_poll_max_interval=f"{MAXIMUM}s", ack_timeout="300s")
        assert out.acks is not None and len(out.acks.channels) == max(channels, slots)
        self.out, self.hec = out, FakeHec(out)
        out.request = self.hec.request  # type: ignore[method-assign]
        machine = self

        class Wake(gevent.event.Event):
            def wait(self, timeout: float | None = None) -> bool:
                machine.expect_initial = True  # the poller found nothing pending: idle
                return super().wait(timeout)

        out.acks._wake = Wake()
        gevent.sleep = self._sleep  # the poller's clock; everyone else sleeps for real

    def _sleep(self, seconds: float = 0, ref: bool = True) -> None:
        acks = self.out.acks if self.out is not None else None
        if acks is None or gevent.getcurrent() is not acks._poller:
            _real_sleep(seconds, ref)
            return
        trues = self.hec.round_trues  # type: ignore[union-attr]  # (the round that just ran)
        queried = self.hec.round_queries  # type: ignore[union-attr]
        # back to the first interval after an idle poller or a round with an ack; the same after a
        # round that queried nothing (every channel busy with a POST); else doubled
        expected = (INITIAL if self.expect_initial or trues
                    else self.sleeps[-1] if not queried else min(self.sleeps[-1] * 2, MAXIMUM))
        if seconds != expected:
            self.hec.violations.append(  # type: ignore[union-attr]
                f"round {self.rounds + 1} waits {seconds}s, expected {expected}s (previous "
                f"{self.sleeps[-1:]}, acks last round {trues}, idle "
                f"{self.expect_initial})")
        self.sleeps.append(seconds)
        self.expect_initial = False
        self.parked = True
        self.tick.wait()
        self.tick.clear()
        self.parked = False
        self.rounds += 1
        self.hec.round_trues = self.hec.round_queries = 0  # type: ignore[union-attr]

    def teardown(self) -> None:
        try:
            if self.out is not None and self.hec is not None and not self.hec.violations:
                self._finish()
        finally:
            gevent.sleep = _real_sleep
            if self.out is not None:
                self.out.close()
                for att in self._gated():  # POSTs never answered: end them
                    assert att.greenlet is not None
                    att.greenlet.kill(block=False)
                settle()

    # -- helpers -----------------------------------------------------------------------------
    def _attempt(self, batch: int) -> None:
        out, hec = self.out, self.hec
        assert out is not None and hec is not None
        att = Attempt(next(self.aids), batch, self.batches[batch])
        its = []
        for seq in att.seqs:
            ev = {"timestamp": "2026-01-02T03:04:05.678Z", "seq": seq}
            it = DeliveryItem(seq, ev, orjson.dumps(ev))
            it.data = out.encode(it)
            its.append(it)

        def done(g: gevent.Greenlet) -> None:
            att.outcome = g.value if g.successful() else Outcome.retry(f"raised {g.exception!r}")
            if not g.successful():
                hec.violations.append(f"attempt {att.aid}: send raised {g.exception!r}")

        g = gevent.Greenlet(out.send, its)
        att.greenlet = g
        hec.attempts[g] = att
        hec.all_attempts.append(att)
        self.fates[batch] = "open"
        self.current[batch] = att
        g.link(done)
        g.start()
        settle()

    def _gated(self) -> list[Attempt]:
        assert self.hec is not None
        return [a for a in self.hec.all_attempts if a.gate is not None]

    def _resendable(self) -> list[int]:
        return [b for b, f in self.fates.items() if f == "retry"]

    def _round(self) -> None:
        self.tick.set()
        settle()

    def _throw_timeout(self, att: Attempt) -> None:
        att.causes.setdefault("ack timeout", Status.RETRY)
        assert att.greenlet is not None
        att.greenlet.kill(gevent.Timeout(), block=False)  # what the ack_timeout timer raises
        settle()

    # -- rules -------------------------------------------------------------------------------
    @rule(size=st.integers(1, 3), channels=st.integers(1, 3), slots=st.integers(1, 3))
    def send_batch(self, size: int, channels: int, slots: int) -> None:
        self._ensure(channels, slots)
        if len(self.batches) >= 6:
            return
        b = len(self.batches)
        self.batches[b] = list(range(self.next_seq, self.next_seq + size))
        self.next_seq += size
        self._attempt(b)

    @precondition(lambda self: self.out is not None and bool(self._resendable()))
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        self._attempt(data.draw(st.sampled_from(self._resendable())))

    @precondition(lambda self: self.out is not None and bool(self._gated()))
    @rule(data=st.data(), decision=st.sampled_from(
        ["accept", "accept_24", "reset_after_take", "reset", "page_after_take", "busy", "code11",
         "code27", "auth"]))
    def answer_post(self, data: st.DataObject, decision: str) -> None:
        att = data.draw(st.sampled_from(self._gated()))
        assert att.gate is not None
        att.gate.set(decision)
        settle()

    @precondition(lambda self: self.out is not None and bool(self._gated()))
    @rule(data=st.data())
    def accept_post(self, data: st.DataObject) -> None:
        """The common case, drawn as often as all the other answers together."""
        self.answer_post(data, "accept")

    @precondition(lambda self: self.hec is not None and any(r.state == "queued" for r in self.hec.reqs))
    @rule(data=st.data())
    def index(self, data: st.DataObject) -> None:
        assert self.hec is not None
        self.hec.index(data.draw(st.sampled_from([r for r in self.hec.reqs if r.state == "queued"])))

    @precondition(lambda self: self.hec is not None and any(r.state == "queued" for r in self.hec.reqs))
    @rule()
    def index_all(self) -> None:
        assert self.hec is not None
        for req in [r for r in self.hec.reqs if r.state == "queued"]:
            self.hec.index(req)

    @precondition(lambda self: self.parked)
    @rule()
    def poll_round(self) -> None:
        self._round()

    @precondition(lambda self: self.parked)
    @rule()
    def another_poll_round(self) -> None:
        """(Rounds are what moves acks: drawn twice as often.)"""
        self._round()

    @precondition(lambda self: self.hec is not None and any(a.waiting for a in self.hec.all_attempts))
    @rule(data=st.data())
    def ack_timeout(self, data: st.DataObject) -> None:
        assert self.hec is not None
        self._throw_timeout(data.draw(st.sampled_from([a for a in self.hec.all_attempts if a.waiting])))

    @precondition(lambda self: self.hec is not None)
    @rule()
    def indexer_restart(self) -> None:
        assert self.hec is not None
        self.hec.restart()

    @precondition(lambda self: self.hec is not None)
    @rule(fault=st.sampled_from(["transport", "busy", "code10", "code11", "401", "404", "code14"] * 3
                                + ["code14"]))
    def ack_fault(self, fault: str) -> None:
        assert self.hec is not None
        self.hec.ack_faults.append(fault)

    @precondition(lambda self: self.hec is not None)
    @rule(omit=st.booleans())
    def missing_ids(self, omit: bool) -> None:
        assert self.hec is not None
        self.hec.omit = omit

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def outcomes_have_their_causes(self) -> None:
        hec = self.hec
        if hec is None:
            return
        assert not hec.violations, hec.violations
        for att in hec.all_attempts:
            o = att.outcome
            req = att.req
            confirmed = req is not None and req.state == "reported" and att.registered
            if o is None:
                # property 2: a cause resolves at once; property 1: a true resolves at once
                assert not att.causes, f"attempt {att.aid} still waits despite {att.causes}"
                assert not confirmed, f"attempt {att.aid}: HEC said true, still waiting"
                continue
            if self.current.get(att.batch) is att and self.fates[att.batch] == "open":
                self.fates[att.batch] = {Status.DELIVERED: "delivered", Status.RETRY: "retry",
                                         Status.PERMANENT: "dlq"}.get(o.status, str(o.status))
            if o.status is Status.DELIVERED:
                assert confirmed, (f"attempt {att.aid} (batch {att.batch}) DELIVERED without a true "
                                   f"for its own request: {req}, decision {att.decision}")
                continue
            assert not confirmed, f"attempt {att.aid}: HEC said true, but {o.status}: {o.reason}"
            if att.registered:
                expected = set(att.causes.values())
                assert o.status in expected, (f"attempt {att.aid}: {o.status} {o.reason!r} without "
                                              f"a documented cause (causes {att.causes})")
            else:
                assert o.status is Status.RETRY, (att.decision, o)

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> None:
        """Faults stop; every POST is accepted, everything indexed; requests HEC forgot time out;
        RETRY batches are re-sent: every batch ends delivered (or dead-lettered after code 14)."""
        hec = self.hec
        assert hec is not None
        hec.ack_faults.clear()
        hec.omit = False
        for _ in range(60):
            for att in self._gated():
                assert att.gate is not None
                att.gate.set("accept")
            settle()
            for req in hec.reqs:
                if req.state == "queued":
                    hec.index(req)
            self.outcomes_have_their_causes()
            for b in self._resendable():
                self._attempt(b)
            if self.parked:
                self._round()
            self.outcomes_have_their_causes()
            for att in [a for a in hec.all_attempts if a.waiting]:
                if att.req is not None and not att.req.known:
                    self._throw_timeout(att)  # HEC forgot it: only the timeout resolves it
            self.outcomes_have_their_causes()
            if all(f in ("delivered", "dlq") for f in self.fates.values()):
                break
        assert all(f in ("delivered", "dlq") for f in self.fates.values()), self.fates
        for b, f in self.fates.items():
            if f == "dlq":
                assert hec.code14, f"batch {b} dead-lettered without an ack query's code 14"
            else:
                assert set(self.batches[b]) <= set(hec.stored), f"batch {b} delivered, not stored"


AckMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=35,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAckMachine = AckMachine.TestCase


# ------------------------------------------------------------------------------------ the per-query limit


def test_ack_queries_are_chunked() -> None:
    """More ids waiting on one channel than one query may carry: each query names at most
    ``MAX_ACKS_PER_QUERY`` ids, each id is asked once per round, and the ``true`` answers of every
    chunk confirm their own waiters only."""
    out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, channels=1, concurrency=1,
                      ack_poll_interval="1s", ack_poll_max_interval="2s")
    assert out.acks is not None
    tracker = out.acks
    try:
        ch = tracker.live[0]
        n = 2 * MAX_ACKS_PER_QUERY + 17
        results = {i: gevent.event.AsyncResult() for i in range(n)}
        ch.waiters.update(results)
        queries: list[list[int]] = []

        def request(method: str, url: str, body: Any = None, headers: Any = None, **kw: Any
                    ) -> HttpResponse:
            assert url == out.ack_url and headers[CHANNEL_HEADER] == ch.guid
            ids = orjson.loads(body)["acks"]
            queries.append(ids)
            return _json(200, {"acks": {str(i): i % 3 == 0 for i in ids}})

        out.request = request  # type: ignore[method-assign]
        assert tracker.poll_once() is True
        assert all(0 < len(q) <= MAX_ACKS_PER_QUERY for q in queries), [len(q) for q in queries]
        asked = [i for q in queries for i in q]
        assert sorted(asked) == list(range(n))
        for i, result in results.items():
            assert result.ready() == (i % 3 == 0)
            if i % 3 == 0:
                assert result.get().status is Status.DELIVERED
        assert sorted(ch.waiters) == [i for i in range(n) if i % 3]
    finally:
        out.close()


def test_a_true_for_an_id_not_asked_is_no_progress_and_a_round_that_asks_nothing_keeps_the_wait(
        ) -> None:
    """Only a confirmed waiter resets the poll back-off: a ``true`` for an id the query did not name
    confirms nothing. A round in which every channel with waiters has a POST under way asks nothing,
    and neither resets nor doubles the wait."""
    out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, channels=1, concurrency=1,
                      ack_poll_interval="1s", ack_poll_max_interval="8s")
    assert out.acks is not None
    tracker = out.acks
    try:
        ch = tracker.live[0]
        waiter = gevent.event.AsyncResult()
        ch.waiters[5] = waiter
        out.request = lambda *a, **kw: _json(200, {"acks": {"5": False, "6": True}})  # type: ignore
        assert tracker.poll_once() is False and not waiter.ready()
        assert tracker.next_interval(False) == 2.0
        ch.busy = True  # a POST holds the only channel with a waiter
        assert tracker.poll_once() is None
        assert tracker.next_interval(None) == 2.0
    finally:
        out.close()


# ------------------------------------------------------------------------------------ defects


def test_a_post_answered_after_close_is_not_delivered_without_its_ack() -> None:
    """``close()`` while a POST is under way (the tracker is gone when HEC's answer arrives):
    HEC's 200 code 0 with an ackId only says the request was taken, not indexed. Before the fix
    ``_accepted`` read the missing tracker as ``ack = false`` and returned DELIVERED, so the batch
    counted as delivered with no ``true`` for its ackId (docs/outputs/splunk_hec.md: a batch
    counts as delivered only after HEC confirms it was indexed)."""
    out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, channels=1, concurrency=1)
    gate = gevent.event.Event()

    def request(method: str, url: str, body: Any = None, headers: Any = None, **kw: Any
                ) -> HttpResponse:
        assert url == out.event_url
        gate.wait()
        return _json(200, {"text": "Success", "code": 0, "ackId": 0})

    out.request = request  # type: ignore[method-assign]
    sending = gevent.spawn(out.send, hec_items(out, 2))
    settle()
    out.close()  # e.g. the drain closing its output while this send is in flight
    gate.set()
    outcome = sending.get(timeout=10)
    assert outcome.status is not Status.DELIVERED, "delivered without an indexer ack"


# ------------------------------------------------------------------------------------ through the drain


def _envelope_numbers(body: bytes | Payload | None) -> list[int]:
    """The spool numbers (``make_event``'s ``n``) of the events in one concatenated HEC body."""
    raw = body.raw() if isinstance(body, Payload) else body or b""
    text, pos, numbers = raw.decode(), 0, []
    decoder = json.JSONDecoder()
    while pos < len(text):
        env, pos = decoder.raw_decode(text, pos)
        numbers.append(env["event"]["n"])
    return numbers


@dataclass
class DrainHec:
    """A synchronous one-indexer HEC for the drain test: each POST answered by the next decision
    (then ``accept``), each ack query by the next fault (then HEC's answer); a request is indexed
    once its channel was queried ``delay`` times after it, unless a restart lost it first."""

    out: SplunkHecOutput
    spool: Any
    decisions: list[str]
    faults: list[str]
    delays: list[int]
    restarts: set[int]  # POST numbers before which the indexer restarts
    posts: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    pending: dict[str, dict[int, list[Any]]] = field(default_factory=dict)  # guid -> id -> [n, left]
    stored: list[int] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)  # seqs of requests HEC reported true for
    violations: list[str] = field(default_factory=list)

    def check_cursor(self, when: str) -> None:
        """The cursor and its done ranges cover only acknowledged (or dead-lettered) events."""
        state = self.spool.get_cursor_done(self.out.name)
        if state is None:
            return
        cursor, done = state
        covered = set(range(1, cursor.seq + 1))
        for lo, hi in done:
            covered.update(range(lo, hi + 1))
        dlq = {e.seq for e in self.spool.dlq_list(self.out.name, limit=100_000)}
        ahead = sorted(covered - self.acked - dlq)
        if ahead:
            self.violations.append(f"{when}: cursor {cursor.seq} + {done} passes unacked {ahead}")

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any
                ) -> HttpResponse:
        guid = (headers or {}).get(CHANNEL_HEADER, "")
        self.check_cursor(f"{method} {url.rsplit('/', 1)[-1]}")
        if url == self.out.event_url:
            return self.post(guid, [n + 1 for n in _envelope_numbers(body)])  # seq = n + 1
        return self.ack(guid, orjson.loads(body)["acks"])

    def post(self, guid: str, seqs: list[int]) -> HttpResponse:
        self.posts += 1
        if self.posts in self.restarts:
            for reqs in self.pending.values():
                for n in list(reqs):
                    if reqs[n][1] > 0:  # not indexed yet: lost
                        del reqs[n]
            self.pending.clear()
            self.counters.clear()
        decision = self.decisions.pop(0) if self.decisions else "accept"
        if decision in ("busy", "code27", "reset"):
            if decision == "reset":
                raise TransportError("ConnectionError: Connection reset by peer")
            return _json(503, {"text": "Server is busy", "code": 9}) if decision == "busy" else \
                _json(429, {"text": "HEC ACK channel at capacity", "code": 27})
        ack_id = self.counters.get(guid, 0)
        self.counters[guid] = ack_id + 1
        delay = self.delays.pop(0) if self.delays else 0
        self.pending.setdefault(guid, {})[ack_id] = [seqs, delay]
        if delay == 0:
            self.stored.extend(seqs)
        if decision == "reset_after_take":
            raise TransportError("ConnectionError: Connection reset by peer")
        if decision == "page_after_take":
            return HttpResponse(502, {}, b"<html>502 Bad Gateway</html>", 0.001)
        return _json(200, {"text": "Success", "code": 0, "ackId": ack_id})

    def ack(self, guid: str, ids: list[int]) -> HttpResponse:
        fault = self.faults.pop(0) if self.faults else ""
        if fault == "busy":
            return _json(503, {"text": "Server is busy", "code": 9})
        if fault == "code11":
            return _json(400, {"text": "Invalid data channel", "code": 11})
        reqs = self.pending.get(guid, {})
        answer = {}
        for i in ids:
            req = reqs.get(i)
            if req is not None and req[1] == 0:
                del reqs[i]
                self.acked.update(req[0])
                answer[str(i)] = True
            else:
                answer[str(i)] = False
        for req in reqs.values():  # the indexer makes progress between queries
            if req[1] > 0:
                req[1] -= 1
                if req[1] == 0:
                    self.stored.extend(req[0])
        return _json(200, {"acks": answer})


POST_DECISIONS = st.sampled_from(["accept", "accept", "accept", "reset_after_take", "page_after_take",
                                  "reset", "busy", "code27"])


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 25), batch=st.integers(1, 5), concurrency=st.integers(1, 3),
       decisions=st.lists(POST_DECISIONS, max_size=8),
       faults=st.lists(st.sampled_from(["", "", "busy", "code11"]), max_size=6),
       delays=st.lists(st.integers(0, 3), max_size=10),
       restarts=st.sets(st.integers(2, 10), max_size=2))
def test_acked_drain_never_passes_an_unacknowledged_event(
        n: int, batch: int, concurrency: int, decisions: list[str], faults: list[str],
        delays: list[int], restarts: set[int]) -> None:
    """The real drain and spool over ``DrainHec``: at every request, the committed cursor and its
    done ranges cover only events HEC acknowledged; at the end every event is stored in HEC."""
    with fresh_spool() as spool:
        fill(spool, n)
        out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, compression="none",
                          concurrency=concurrency, batch_max_events=batch, batch_max_wait=0,
                          retry_initial=0.001, retry_max=0.004, breaker_failures=0,
                          healthcheck_interval=0, ack_poll_interval="1ms", ack_poll_max_interval="4ms",
                          ack_timeout="20ms")
        hec = DrainHec(out, spool, list(decisions), list(faults), list(delays), restarts)
        out.request = hec.request  # type: ignore[method-assign]
        drain = Drain(out, spool, spool.reader())
        run_until(drain, caught_up(spool, out.name), timeout=60)
        hec.check_cursor("at the end")
        assert not hec.violations, hec.violations
        assert not spool.dlq_list(out.name, limit=10)
        assert set(range(1, n + 1)) <= set(hec.stored)
