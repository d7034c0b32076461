"""Property-based tests of the Elasticsearch output's node handling: ``hosts``, ``host_down_for``,
health checks over several nodes and ``cloud_id`` (docs/outputs/elasticsearch.md; docs/outputs.md
§3-§4 for what the framework does with a retried attempt).

The docs' promise: "Requests go round robin; a node that fails with a connection error or timeout is
skipped for ``host_down_for`` and the same request goes to the next node (safe: every write is a
``create`` with a fixed ``_id``)"; ``host_down_for``: "How long a node that failed is skipped (unless
every node is down)"; a connection error or timeout: "the next node is tried within the same attempt;
when none answers, retry"; health: "``GET /_cluster/health`` on one node: ``green`` and ``yellow``
are healthy, ``red``, an error status or no answer are not"; node URLs are "reported as ``node
2/3``, never by address".

A cluster is several ``MockServer`` instances serving ONE shared ``ElasticsearchMock`` (its state is
behind its own ``RLock``, and the server base only reads the app: sharing it between server threads
is safe; each server does set ``app.faults`` to its own schedule, which this mock never reads), told
apart by the port in the ``Host`` header. A node is ``up``, ``busy`` (answers 503), ``slow`` (answers
after the client's read timeout, then stores the batch anyway), ``reset`` (a TCP reset, no answer) or
``refused`` (nothing listening; it may come back: a server is started on its port).

1. ``NodeMachine`` (a ``RuleBasedStateMachine``; the output's clock is a fake one the rules move, so
   "skipped for ``host_down_for``" is judged exactly and never against a wall clock): sends, re-sends
   of retried batches, health checks, nodes changing state and coming back, the cluster's health
   changing. Every request (the client's own log of what it asked of the HTTP layer, checked against
   the servers' records) must: try each node at most once; stop at the first HTTP answer, any HTTP
   answer (503 included: an answer never marks a node down); try every node before giving up; try a
   node marked down (a connection error or timeout less than ``host_down_for`` ago) only after every
   other node failed in the same request, and then as a last resort; carry the same bytes to each
   node it tries. A send answered 200 is delivered and stored; an answer of 503 or none is a retry
   naming each node as ``node k/n`` and no address. Round robin: with the same nodes down, a node
   not marked down is the first one tried at least once in any ``n`` requests in a row, so a node
   whose ``host_down_for`` has passed gets requests again. A health check asks one node, one not
   marked down if there is one, and says what that node answered. The shared mock ends with every
   event at most once (``created`` = documents) and every delivered event stored.
2. Through the real spool and drain (as tests/outputs/test_chaos_properties.py, whose approach this
   reuses): nodes dead from the start, resetting, slower than the timeout or busy for their first
   requests, nodes that come back after the drain made some attempts, all nodes down for a while:
   the cursor reaches the end, every event is stored exactly once, nothing goes to the DLQ; a batch
   goes back to the framework's backoff only after an HTTP answer that is a retry (503) or when no
   node answered (each send's attempts are checked as in 1), so with one node always up nothing
   waits for a backoff because of a dead node.
3. Round robin evenly: with a fixed set of nodes down, any ``k * len(live)`` requests in a row reach
   each live node ``k`` times.
4. A credential that cannot be read (a ``file:`` secret mid-rotation) is no failure of a node.
5. Cloud ID round trip against an encoder written from the documented format (``label:`` then base64
   of ``host[:port]$es_uuid$kibana_uuid``): the URL it gives is ``https://<es_uuid>.<host>:<port,
   default 443>`` and is itself a valid ``hosts`` entry, and a Cloud ID output sends to that node.

tests/outputs/test_elasticsearch.py has single examples of fail-over and round robin,
tests/outputs/test_es_hec_config_properties.py the Cloud ID's refusals; they are not repeated here.

Defects found (each test failed before its fix):

- ``_order`` rotated over every node and then moved the nodes marked down to the back, so the live
  node after a down one also took the down one's turns: with 1 of 3 nodes down, one survivor gets
  2/3 of the requests and the other 1/3 (``test_round_robin_spreads_evenly_over_the_live_nodes``).
- A ``file:`` credential that cannot be read for a moment was raised by the HTTP layer as a
  ``TransportError`` before anything is sent, and ``_request`` took it for a failure of every node:
  each was marked down for ``host_down_for``, so a node that really is down was no longer skipped
  (``test_an_unreadable_credential_marks_no_node_down``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import string
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import outputs.elasticsearch as es_module
from agent.config_loader import load_section
from agent.config_types import Duration, Secret
from outputs.base import DeliveryItem, Outcome, Status
from outputs.drain import Drain
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig, decode_cloud_id
from outputs.http import HttpResponse, TransportError, split_http_url
from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import Fault, MockRequest, MockResponse, MockServer
from spool.types import EncodedEvent, IngestBatch
from tests.outputs.drain_kit import caught_up, fresh_spool, wait_until

pytestmark = pytest.mark.integration

SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
DS = "logs-clawdstrike.security-default"
NAME = "siem"
#: The client's read timeout, and how long a slow node takes: well over it.
REQUEST_TIMEOUT = 0.25
SLOW_DELAY = 0.5
DOWN_FOR = 30.0  # host_down_for, in the fake clock's seconds (state machine)
ANSWERING = ("up", "busy")  # the kinds of node that give an HTTP answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------------ the cluster


@dataclass
class Reached:
    """A request as a node's server received it (before any fault of the node applied)."""

    port: int
    method: str
    path: str
    body: bytes


class ClusterApp(ElasticsearchMock):
    """One cluster's state, served by every node: a node's behaviour is chosen by the port it was
    reached on (the ``Host`` header). ``slow`` and ``busy`` are the app's (``slow`` stores the batch
    after the client gave up, as a real node would); a ``reset`` is the node's server fault, recorded
    here through ``check_faulted``. ``script[port]``: behaviours for that node's next requests, before
    its ``kinds`` entry applies."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[int, str] = {}
        self.script: dict[int, list[str]] = {}
        self.seen: list[Reached] = []
        self.in_flight = 0
        self._rec = threading.Lock()

    @staticmethod
    def port_of(req: MockRequest) -> int:
        return int(req.headers.get("Host", "").rpartition(":")[2] or 0)

    def _reached(self, req: MockRequest) -> int:
        port = self.port_of(req)
        with self._rec:
            self.seen.append(Reached(port, req.method, req.path, req.body))
        return port

    def check_faulted(self, req: MockRequest) -> None:
        self._reached(req)
        super().check_faulted(req)

    def handle(self, req: MockRequest) -> MockResponse:
        port = self._reached(req)
        with self._rec:
            script = self.script.get(port)
            kind = script.pop(0) if script else self.kinds.get(port, "up")
            self.in_flight += 1
        try:
            if kind == "slow":
                time.sleep(SLOW_DELAY)
            if kind == "busy":
                return self.fault_response(Fault("status", status=503))
            return super().handle(req)
        finally:
            with self._rec:
                self.in_flight -= 1

    def reached(self) -> list[Reached]:
        with self._rec:
            return list(self.seen)

    def idle(self) -> bool:
        with self._rec:
            return self.in_flight == 0


class Cluster:
    """Nodes on fixed ports: a server serving the shared app, or nothing listening (``refused``).
    A server once started is never stopped before the end (its kept-alive connections would go on
    being served): a node goes down by resetting every request instead."""

    def __init__(self, kinds: list[str]) -> None:
        self.app = ClusterApp()
        self.ports = [free_port() for _ in kinds]
        self.servers: list[MockServer | None] = [None] * len(kinds)
        self.kinds = ["refused"] * len(kinds)
        for i, kind in enumerate(kinds):
            self.set_kind(i, kind)

    @property
    def urls(self) -> list[str]:
        return [url_of(p) for p in self.ports]

    def set_kind(self, i: int, kind: str) -> None:
        if kind == "refused":
            assert self.servers[i] is None, "a served node goes down by resetting, not by stopping"
            return
        server = self.servers[i]
        if server is None:
            server = self.servers[i] = MockServer(self.app, port=self.ports[i]).start()
        server.faults.clear()
        if kind == "reset":
            server.faults.add(Fault("reset", count=-1))
        self.app.kinds[self.ports[i]] = kind
        self.kinds[i] = kind

    def close(self) -> None:
        wait_until(self.app.idle, timeout=10)  # slow nodes finish storing what they were sent
        for k, server in enumerate(self.servers):
            if server is not None:
                server.stop()
                self.servers[k] = None


class FakeTime:
    """The ``time`` module as outputs.elasticsearch sees it, with a monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class Attempt:
    port: int
    status: int | None  # None: a TransportError (no HTTP answer)


class AttemptLog:
    """What the output asked of its HTTP layer, node by node, in order: wraps ``client.request``."""

    def __init__(self, out: ElasticsearchOutput) -> None:
        client = out.client()
        self._real = client.request
        client.request = self  # type: ignore[method-assign]
        self.attempts: list[Attempt] = []

    def __call__(self, method: str, url: str, *args: Any, **kw: Any) -> HttpResponse:
        port = urllib.parse.urlsplit(url).port or 0
        try:
            resp = self._real(method, url, *args, **kw)
        except TransportError:
            self.attempts.append(Attempt(port, None))
            raise
        self.attempts.append(Attempt(port, resp.status))
        return resp


def make_items(out: ElasticsearchOutput, start: int, n: int) -> list[DeliveryItem]:
    items = []
    for i in range(start, start + n):
        ev = {"event_id": str(uuid.UUID(int=i + 1)), "event_type": "guard_block",
              "timestamp": f"2026-11-{i % 28 + 1:02d}T08:00:00.000Z", "n": i}
        item = DeliveryItem(i + 1, ev, orjson.dumps(ev), uuid.UUID(int=i + 1).bytes)
        item.data = out.encode(item)
        items.append(item)
    return items


def ids_of(batch: list[DeliveryItem]) -> set[str]:
    return {str(uuid.UUID(bytes=i.event_id)) for i in batch}


def check_attempts(atts: list[Attempt], ports: list[int], down: set[int], *, fail_over: bool) -> None:
    """One request's attempts (docs: round robin, skip nodes marked down unless every node is, the
    same request to the next node on no answer, none after an HTTP answer)."""
    tried = [a.port for a in atts]
    assert atts, "a request tried no node"
    assert len(set(tried)) == len(tried), f"a node tried twice in one request: {tried}"
    assert all(a.status is None for a in atts[:-1]), f"went on after an HTTP answer: {atts}"
    live = {p for p in ports if p not in down}
    for k, p in enumerate(tried):
        # a node skipped for host_down_for is tried only once every other node failed
        assert p not in down or live <= set(tried[:k]), (
            f"node {ports.index(p) + 1} marked down was tried before a live one: {atts}, down {down}")
    if not fail_over:
        assert len(atts) == 1, f"a health check asks one node: {atts}"
    elif atts[-1].status is None:
        assert sorted(tried) == sorted(ports), f"gave up before trying every node: {atts}"


# ------------------------------------------------------------------------------ 1. the state machine

SERVED_KINDS = ("up", "up", "busy", "reset", "slow")
INITIAL_KINDS = ("up", "up", "busy", "reset", "slow", "refused", "refused")


class NodeMachine(RuleBasedStateMachine):
    """Property 1 (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.cluster: Cluster | None = None
        self.mp = pytest.MonkeyPatch()
        self.clock = FakeTime()
        self.mp.setattr(es_module, "time", self.clock)
        self.down_until: dict[int, float] = {}
        self.missed: dict[int, int] = {}  # requests in a row a live node was not the first tried
        self.last_down: frozenset[int] = frozenset()
        self.next_event = 0
        self.pending: list[list[DeliveryItem]] = []  # retried batches, as the framework keeps them
        self.delivered: set[str] = set()
        self.sent: set[str] = set()

    @initialize(kinds=st.lists(st.sampled_from(INITIAL_KINDS), min_size=2, max_size=4),
                gzip=st.booleans())
    def start(self, kinds: list[str], gzip: bool) -> None:
        self.cluster = Cluster(kinds)
        cfg = ElasticsearchOutputConfig(
            hosts=self.cluster.urls, format="canonical", host_down_for=Duration(DOWN_FOR),
            request_timeout=Duration(REQUEST_TIMEOUT), connect_timeout=Duration(2),
            compression="gzip" if gzip else "none")
        cfg.validate()
        self.out = ElasticsearchOutput(NAME, cfg)
        self.out.open()
        self.log = AttemptLog(self.out)
        self.ports = self.cluster.ports
        self.down_until = dict.fromkeys(self.ports, 0.0)
        self.missed = dict.fromkeys(self.ports, 0)

    # -------------------------------------------------------------- model helpers

    def kind(self, port: int) -> str:
        assert self.cluster is not None
        return self.cluster.kinds[self.ports.index(port)]

    def down(self) -> set[int]:
        return {p for p, t in self.down_until.items() if t > self.clock.now}

    def expected_status(self, port: int, path: str) -> int | None:
        kind = self.kind(port)
        if kind not in ANSWERING:
            return None
        return 503 if kind == "busy" else 200

    def judge(self, first: int, down: set[int], atts: list[Attempt], reached: list[Reached],
              path: str, *, fail_over: bool, body: bytes | None = None) -> None:
        """Check one request's attempts against the nodes' states, then update the model."""
        check_attempts(atts, self.ports, down, fail_over=fail_over)
        for a in atts:
            assert a.status == self.expected_status(a.port, path), (
                f"node {self.ports.index(a.port) + 1} ({self.kind(a.port)}) gave {a.status}")
        # the servers saw exactly the attempts to served nodes, in order, each with the same bytes
        served = [a.port for a in atts if self.kind(a.port) != "refused"]
        assert [r.port for r in reached] == served, (reached, atts)
        assert all(r.path == path.partition("?")[0] for r in reached)
        if body is not None:
            assert all(r.body == body for r in reached), "a fail-over sent other bytes"
        # round robin: a live node is the first tried at least once in any n requests in a row
        if frozenset(down) != self.last_down:
            self.missed = dict.fromkeys(self.ports, 0)
            self.last_down = frozenset(down)
        for p in self.ports:
            if p in down or p == atts[0].port:
                self.missed[p] = 0
            else:
                self.missed[p] += 1
                assert self.missed[p] < len(self.ports), (
                    f"node {self.ports.index(p) + 1}, not marked down, was passed over "
                    f"{self.missed[p]} requests in a row")
        for a in atts:
            self.down_until[a.port] = 0.0 if a.status is not None else self.clock.now + DOWN_FOR

    # -------------------------------------------------------------- rules

    def _send(self, batch: list[DeliveryItem]) -> None:
        assert self.cluster is not None
        first, seen = len(self.log.attempts), len(self.cluster.app.reached())
        down = self.down()
        outcome = self.out.send(batch)
        atts = self.log.attempts[first:]
        reached = self.cluster.app.reached()[seen:]
        body = b"".join(i.data for i in batch)
        self.judge(first, down, atts, reached, "/_bulk", fail_over=True, body=body)
        self.sent |= ids_of(batch)
        last = atts[-1].status
        if last == 200:
            assert outcome.status is Status.DELIVERED, outcome.reason
            self.delivered |= ids_of(batch)
            assert ids_of(batch) <= set(self.cluster.app.docs(DS)), "delivered but not stored"
            return
        assert outcome.status is Status.RETRY and not outcome.auth_failure, outcome
        if last is None:
            for k in range(len(self.ports)):
                assert f"node {k + 1}/{len(self.ports)}" in outcome.reason, outcome.reason
            assert "127.0.0.1" not in outcome.reason
            assert not any(f":{p}" in outcome.reason for p in self.ports), outcome.reason
        self.pending.append(batch)

    @rule(n=st.integers(1, 4))
    def send_new(self, n: int) -> None:
        batch = make_items(self.out, self.next_event, n)
        self.next_event += n
        self._send(batch)

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        """The framework's retry of a batch: the same items (and so the same ``_id`` s) again."""
        k = data.draw(st.integers(0, len(self.pending) - 1))
        self._send(self.pending.pop(k))

    @rule()
    def healthcheck(self) -> None:
        assert self.cluster is not None
        first, seen = len(self.log.attempts), len(self.cluster.app.reached())
        down = self.down()
        ok, reason = self.out.healthcheck()
        atts = self.log.attempts[first:]
        self.judge(first, down, atts, self.cluster.app.reached()[seen:], "/_cluster/health",
                   fail_over=False)
        answer = atts[0].status
        assert ok == (answer == 200 and self.cluster.app.health in ("green", "yellow")), (ok, reason)
        assert "127.0.0.1" not in reason

    @rule(health=st.sampled_from(["green", "yellow", "red"]))
    def cluster_health(self, health: str) -> None:
        assert self.cluster is not None
        self.cluster.app.health = health

    @rule(dt=st.sampled_from([1.0, 10.0, 29.0, 30.0, 31.0, 90.0]))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule(data=st.data())
    def change_node(self, data: st.DataObject) -> None:
        """A node goes down, gets slow or busy, recovers, or (nothing listening) comes back."""
        assert self.cluster is not None
        i = data.draw(st.integers(0, len(self.ports) - 1))
        current = self.cluster.kinds[i]
        kinds = ["refused", "up"] if current == "refused" else list(SERVED_KINDS)
        self.cluster.set_kind(i, data.draw(st.sampled_from([k for k in kinds if k != current])))

    @invariant()
    def stored_at_most_once(self) -> None:
        if self.cluster is None:
            return
        stored = set(self.cluster.app.docs(DS))
        assert self.delivered <= stored
        assert stored <= self.sent
        assert self.cluster.app.stats()["created"] == len(stored)  # the rest were 409s

    def teardown(self) -> None:
        try:
            if self.cluster is not None:
                self.out.close()
                self.cluster.close()
                stats = self.cluster.app.stats()
                stored = set(self.cluster.app.docs(DS))
                assert stats["created"] == len(stored) and self.delivered <= stored <= self.sent
                assert stats["spec_violations"] == []
        finally:
            self.mp.undo()


TestNodeMachine = NodeMachine.TestCase
TestNodeMachine.settings = settings(max_examples=14, stateful_step_count=22, **SETTINGS)


# ------------------------------------------------------------------------------ 2. through the drain


@dataclass(frozen=True)
class NodePlan:
    """A node of a drain run: ``kind`` for its first ``count`` requests, then up; ``refused``: nothing
    listens until the drain made ``count`` attempts (``count`` 0: never)."""

    kind: str
    count: int = 0


@st.composite
def plans(draw: st.DrawFn) -> list[NodePlan]:
    n = draw(st.integers(2, 4))
    all_down = draw(st.booleans())  # every node down for a while, then one back
    out: list[NodePlan] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["reset", "slow", "refused", "busy"] + ([] if all_down else ["up"])))
        count = 0 if kind == "up" else draw(st.integers(0 if kind == "refused" else 1, 4))
        if kind == "slow":
            count = min(count, 2)  # each costs the read timeout in real time
        out.append(NodePlan(kind, count))
    if all(p.kind == "refused" and p.count == 0 for p in out):
        out[0] = NodePlan("refused", 2)  # one comes back
    return out


@dataclass
class Sends:
    """Each ``send``: where its attempts start in the log and its outcome."""

    spans: list[tuple[int, int, Outcome]] = field(default_factory=list)


def wrap_send(out: ElasticsearchOutput, log: AttemptLog, sends: Sends) -> None:
    real = out.send

    def send(batch: list[DeliveryItem], packed: Any = None) -> Outcome:
        first = len(log.attempts)
        outcome = real(batch, packed)
        sends.spans.append((first, len(log.attempts), outcome))
        return outcome

    out.send = send  # type: ignore[method-assign]


@settings(max_examples=14, **SETTINGS)
@given(plan=plans(), n=st.integers(5, 30), batch=st.integers(1, 8), concurrency=st.integers(1, 4),
       gzip=st.booleans())
def test_through_the_drain_no_event_is_lost_or_stored_twice(plan: list[NodePlan], n: int, batch: int,
                                                            concurrency: int, gzip: bool) -> None:
    """Property 2 (module docstring)."""
    cluster = Cluster(["refused" if p.kind == "refused" else "up" for p in plan])
    try:
        for i, p in enumerate(plan):
            if p.kind in ("slow", "busy"):
                cluster.app.script[cluster.ports[i]] = [p.kind] * p.count
            server = cluster.servers[i]
            if p.kind == "reset" and server is not None:
                server.faults.add(Fault("reset", count=p.count))
        with fresh_spool() as spool:
            spool.append(IngestBatch("t", [EncodedEvent(uuid.UUID(int=i + 1).bytes, 1_700_000_000_000 + i,
                                                        orjson.dumps({"event_id": str(uuid.UUID(int=i + 1)),
                                                                      "timestamp": "2026-11-01T08:00:00Z",
                                                                      "n": i}))
                                           for i in range(n)]))
            spool.ensure_cursor(NAME)
            table = {"type": "elasticsearch", "hosts": cluster.urls, "format": "canonical",
                     "batch_max_events": batch, "batch_max_wait": 0, "concurrency": concurrency,
                     "retry_initial": 0.001, "retry_max": 0.01, "breaker_failures": 3,
                     "breaker_cooldown": 0.005, "breaker_cooldown_max": 0.02, "healthcheck_interval": 0,
                     "request_timeout": REQUEST_TIMEOUT, "connect_timeout": 2,
                     "compression": "gzip" if gzip else "none"}
            out = ElasticsearchOutput(NAME, load_section(ElasticsearchOutputConfig, table,
                                                         "agent.toml: [outputs.siem]", {}))
            log = AttemptLog(out)
            sends = Sends()
            wrap_send(out, log, sends)
            drain = Drain(out, spool, spool.reader())
            done = caught_up(spool, NAME)

            def come_back(i: int, after: int) -> None:
                wait_until(lambda: len(sends.spans) >= after or done(), timeout=60)
                cluster.set_kind(i, "up")

            g = gevent.spawn(drain.run)
            helpers = [gevent.spawn(come_back, i, p.count) for i, p in enumerate(plan)
                       if p.kind == "refused" and p.count]
            try:
                wait_until(lambda: done() or g.dead, timeout=60)
                assert not g.dead, f"the drain died: {g.exception!r}"
            finally:
                drain.stop()
                g.join(timeout=10)
                gevent.killall(helpers)
            ids = {str(uuid.UUID(int=i + 1)) for i in range(n)}
            cluster.close()  # (waits for the slow nodes to store what they were sent)
            stats = cluster.app.stats()
            assert set(cluster.app.docs(DS)) == ids, "an event was lost"
            assert stats["created"] == n, "an event was stored twice"
            assert spool.dlq_list(NAME, limit=1000) == []
            assert drain.stats.delivered == n
            retried = 0
            for first, end, outcome in sends.spans:
                atts = log.attempts[first:end]
                check_attempts(atts, cluster.ports, set(), fail_over=True)
                if atts[-1].status == 200:
                    assert outcome.status is Status.DELIVERED, outcome.reason
                else:  # 503, or no node answered: back to the framework's backoff
                    assert outcome.status is Status.RETRY, outcome.reason
                    retried += 1
            assert drain.stats.retries == retried
            if any(p.kind == "up" for p in plan):
                # failing over never needs the framework: only a 503 answer is retried
                assert all(log.attempts[end - 1].status is not None for _f, end, _o in sends.spans)
    finally:
        cluster.close()


# ------------------------------------------------------------------------------ 3. round robin evenly


def es_output(urls: list[str], **kw: Any) -> ElasticsearchOutput:
    cfg = ElasticsearchOutputConfig(hosts=urls, format="canonical", compression="none", **kw)
    cfg.validate()
    out = ElasticsearchOutput(NAME, cfg)
    out.open()
    return out


@contextlib.contextmanager
def fake_clock() -> Iterator[FakeTime]:
    with pytest.MonkeyPatch.context() as mp:
        clock = FakeTime()
        mp.setattr(es_module, "time", clock)
        yield clock


@settings(max_examples=10, **SETTINGS)
@given(kinds=st.lists(st.sampled_from(["up", "up", "reset", "refused"]), min_size=3, max_size=5)
       .filter(lambda ks: 2 <= ks.count("up") < len(ks)),
       rounds=st.integers(1, 3))
@example(kinds=["up", "reset", "up"], rounds=1)
def test_round_robin_spreads_evenly_over_the_live_nodes(kinds: list[str], rounds: int) -> None:
    """Property 3: "Requests go round robin" over the nodes not skipped. Once every dead node has
    failed (and is skipped for ``host_down_for``, which the fake clock never reaches), any
    ``rounds * len(live)`` sends in a row reach each live node ``rounds`` times. Failed while the
    rotation ran over every node and moved the ones marked down to the back: the live node after a
    down one took its turns too (3 nodes, the middle one down: 1/3 and 2/3)."""
    cluster = Cluster(kinds)
    try:
        with fake_clock():
            out = es_output(cluster.urls, host_down_for=Duration(DOWN_FOR))
            log = AttemptLog(out)
            start = 0
            while any(cluster.ports[i] not in {a.port for a in log.attempts}
                      for i, k in enumerate(kinds) if k != "up"):  # until every dead node failed once
                assert out.send(make_items(out, start, 1)).status is Status.DELIVERED
                start += 1
            live = [p for p, k in zip(cluster.ports, kinds, strict=True) if k == "up"]
            window = rounds * len(live)
            first = len(log.attempts)
            for _ in range(window + len(kinds) * len(live)):  # every phase of the rotation
                assert out.send(make_items(out, start, 1)).status is Status.DELIVERED
                start += 1
            atts = log.attempts[first:]
            assert all(a.status == 200 for a in atts), "a node marked down was tried"
            for k in range(len(atts) - window + 1):
                counts = [sum(1 for a in atts[k:k + window] if a.port == p) for p in live]
                assert set(counts) == {rounds}, (
                    f"{window} sends from the {k}th: requests per live node {counts}, nodes {kinds}")
            out.close()
    finally:
        cluster.close()


# ------------------------------------------------------------------------------ 4. credentials


def test_an_unreadable_credential_marks_no_node_down() -> None:
    """Property 4. A ``file:`` secret is unreadable for a moment (rewritten in place, it is empty
    until written: "refused, the send is retried", agent/config_types.py). Nothing was sent, no node
    failed: a node that failed just before must still be skipped for ``host_down_for`` afterwards,
    and the others must not be. Failed: the HTTP layer raises the credential error as a
    ``TransportError``, and ``_request`` marked every node down and tried each in turn."""
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "es-api-key")
        with open(key, "w") as f:
            f.write("kid:ksecret")
        cluster = Cluster(["up", "reset", "up"])
        try:
            with fake_clock() as clock:
                out = es_output(cluster.urls, host_down_for=Duration(DOWN_FOR),
                                api_key=Secret.parse(f"file:{key}"))
                log = AttemptLog(out)
                for k in range(3):  # one rotation: the reset node fails once and is marked down
                    assert out.send(make_items(out, k, 1)).status is Status.DELIVERED
                assert [a.port for a in log.attempts].count(cluster.ports[1]) == 1
                with open(key, "w"):
                    pass  # truncated: mid-rotation
                first = len(log.attempts)
                outcome = out.send(make_items(out, 3, 1))
                assert outcome.status is Status.RETRY and "CredentialError" in outcome.reason
                asked = len(log.attempts) - first
                with open(key, "w") as f:
                    f.write("kid:ksecret")
                clock.now += 1.0  # well within host_down_for of the reset node's failure
                first = len(log.attempts)
                for k in range(6):
                    assert out.send(make_items(out, 4 + k, 1)).status is Status.DELIVERED
                tried = [cluster.ports.index(a.port) + 1 for a in log.attempts[first:]]
                assert 2 not in tried, (
                    f"node 2 failed {clock.now - 1000:g} s ago and was tried again: nodes {tried}")
                assert asked <= 1, f"a credential error was tried on {asked} nodes"
                out.close()
        finally:
            cluster.close()


# ------------------------------------------------------------------------------ 5. Cloud ID

LABEL_CHARS = string.ascii_letters + string.digits + "-_.: "
DNS_LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
HOSTS = st.lists(DNS_LABEL, min_size=1, max_size=4).map(".".join)


def encode_cloud_id(label: str | None, host: str, es_id: str, kibana_id: str, host_port: int | None,
                    es_port: int | None, alphabet: str, pad: bool) -> str:
    """The documented format, written out: an optional ``label:`` then base64 of
    ``host[:port]$es_uuid[:port]$kibana_uuid``."""
    host_part = f"{host}:{host_port}" if host_port else host
    es_part = f"{es_id}:{es_port}" if es_port else es_id
    text = f"{host_part}${es_part}${kibana_id}"
    raw = text.encode()
    enc = (base64.urlsafe_b64encode(raw) if alphabet == "url" else base64.b64encode(raw)).decode()
    enc = enc if pad else enc.rstrip("=")
    return enc if label is None else f"{label}:{enc}"


@settings(max_examples=40, **SETTINGS)
@given(label=st.none() | st.text(LABEL_CHARS, max_size=10), host=HOSTS, es_id=DNS_LABEL,
       kibana_id=DNS_LABEL, host_port=st.none() | st.integers(1, 65535),
       es_port=st.none() | st.integers(1, 65535), alphabet=st.sampled_from(["std", "url"]),
       pad=st.booleans())
def test_a_cloud_id_names_the_node_it_encodes(label: str | None, host: str, es_id: str, kibana_id: str,
                                              host_port: int | None, es_port: int | None, alphabet: str,
                                              pad: bool) -> None:
    """Property 5: decoding inverts the documented encoding (the port of the Elasticsearch id, else
    of the host, else 443), the URL is one ``hosts`` would accept, and an output built from the
    Cloud ID has that one node, as one built from ``hosts = [url]``."""
    cid = encode_cloud_id(label, host, es_id, kibana_id, host_port, es_port, alphabet, pad)
    url = decode_cloud_id(cid)
    assert url == f"https://{es_id}.{host}:{es_port or host_port or 443}"
    u = split_http_url(url, "hosts")
    assert (u.hostname, u.port) == (f"{es_id}.{host}", es_port or host_port or 443)
    cfg = ElasticsearchOutputConfig(cloud_id=cid)
    cfg.validate()
    out = ElasticsearchOutput(NAME, cfg)
    assert out.hosts == [url] and out.host_count() == 1
