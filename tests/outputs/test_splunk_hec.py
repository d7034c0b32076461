"""The splunk_hec output against the HEC mock, in process: envelope, gzip, routes, every HEC answer
-> Outcome, the bad event isolated without duplicates, indexer acks (delayed, lost, disabled,
several channels), health, token rotation, and a canary token that never leaks."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import orjson
import pytest

from agent.config_loader import load_section
from outputs.base import DeliveryItem, Outcome, Status
from outputs.http import TransportError
from outputs.mocks.server import Fault, MockRequest, MockResponse, MockServer
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp
from outputs.registry import OUTPUT_TYPES
from outputs.splunk_hec import (
    AckChannel,
    SplunkHecOutput,
    SplunkHecOutputConfig,
    collector_paths,
)
from tests.certs import TlsFiles, tls_files  # noqa: F401 - the fixture
from tests.outputs.proxy import Proxy

TOKEN = "canary-7f3e9b2c-hec-token-do-not-leak"
ACK_TOKEN = "canary-ack-5d1a0e44-hec-token"


class RecordingHec(SplunkHecApp):
    """The HEC mock, also keeping what arrived on the wire (headers and sizes)."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.requests: list[MockRequest] = []

    def handle(self, req: MockRequest) -> MockResponse:
        self.requests.append(req)
        return super().handle(req)


@pytest.fixture
def hec() -> Iterator[tuple[RecordingHec, MockServer]]:
    app = RecordingHec([HecToken(TOKEN), HecToken(ACK_TOKEN, use_ack=True)],
                       indexes={"main", "security", "alerts"})
    with MockServer(app) as server:
        yield app, server


def make_output(server: MockServer, **over: Any) -> SplunkHecOutput:
    table: dict[str, Any] = {"type": "splunk_hec", "endpoint": server.url, "token": TOKEN,
                             "ack_poll_interval": "20ms", "ack_poll_max_interval": "100ms"}
    table.update(over)
    cfg = load_section(SplunkHecOutputConfig, table, "test [outputs.hec]")
    out = SplunkHecOutput("hec", cfg)
    out.open()
    return out


def send_once(app: SplunkHecApp, n: int, **over: Any) -> Outcome:
    """Serve ``app``, send one batch of ``n`` events through an output made with ``over``, close."""
    with MockServer(app) as server:
        out = make_output(server, **over)
        try:
            return out.send(items(out, n))
        finally:
            out.close()


def event(i: int = 0, **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=i)), "timestamp": "2026-01-02T03:04:05.678912Z",
        "event_type": "guard_block", "outcome": "failure", "action": "egress",
        "decision": {"severity": "high", "guard": "egress_allowlist"}, "seq": i,
    }
    ev.update(over)
    return ev


def items(out: SplunkHecOutput, n: int, *, route: dict[str, str] | None = None,
          start: int = 0) -> list[DeliveryItem]:
    batch = []
    for i in range(start, start + n):
        ev = event(i)
        it = DeliveryItem(i, ev, orjson.dumps(ev), route=route)
        it.data = out.encode(it)
        batch.append(it)
    return batch


def envelope(data: bytes) -> dict[str, Any]:
    return json.loads(data)


# ------------------------------------------------------------------------------------ config


def test_registered() -> None:
    assert OUTPUT_TYPES["splunk_hec"] == (SplunkHecOutputConfig, SplunkHecOutput)


@pytest.mark.parametrize(("table", "message"), [
    ({"endpoint": "", "token": "t"}, "endpoint"),
    ({"endpoint": "https://u:p@splunk:8088", "token": "t"}, "endpoint"),
    ({"endpoint": "https://splunk:8088?token=x", "token": "t"}, "endpoint"),
    ({"endpoint": "https://splunk:8088"}, "token"),
    ({"endpoint": "https://splunk:8088", "token": "t", "event_fields": ["nope"]}, "event_fields"),
    ({"endpoint": "https://splunk:8088", "token": "t", "channels": 0}, "channels"),
    ({"endpoint": "https://splunk:8088", "token": "t", "path": "services/collector"}, "path"),
    ({"endpoint": "https://splunk:8088", "token": "t", "ack_path": "ack"}, "ack_path"),
    ({"endpoint": "https://splunk:8088", "token": "t", "health_path": "health"}, "health_path"),
    ({"endpoint": "https://splunk:8088", "token": "t", "ack_poll_max_interval": "10m",
      "ack_timeout": "20m"}, "ack_poll_max_interval"),
])
def test_config_validation(table: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        load_section(SplunkHecOutputConfig, {"type": "splunk_hec", **table}, "t")


def test_secrets_include_an_env_variable_expanded_into_the_token(hec: tuple[RecordingHec, MockServer],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEC_CANARY", "CANARY-token-part")
    out = make_output(hec[1], token="tok-${HEC_CANARY}")
    assert "CANARY-token-part" in out.secrets()


def test_config_token_is_a_secret() -> None:
    cfg = load_section(SplunkHecOutputConfig, {"type": "splunk_hec", "endpoint": "https://s:8088",
                                               "token": TOKEN}, "t")
    assert TOKEN not in repr(cfg)


def test_collector_paths_keep_a_proxy_prefix() -> None:
    assert collector_paths("/services/collector/event") == ("/services/collector/ack",
                                                            "/services/collector/health")
    assert collector_paths("/splunk/services/collector/event/1.0") == (
        "/splunk/services/collector/ack", "/splunk/services/collector/health")


class ProxyPaths(SplunkHecApp):
    """A reverse proxy that publishes HEC's endpoints under its own paths only."""

    routes: dict[str, str] = {}

    def handle(self, req: MockRequest) -> MockResponse:
        target = self.routes.get(req.path)
        if target is None:
            return MockResponse.json(404, {"text": "not found", "code": 404})
        req.path = target
        return super().handle(req)


@pytest.mark.parametrize(("over", "routes"), [
    ({"path": "/hec/event"},
     {"/hec/event": "/services/collector/event", "/hec/ack": "/services/collector/ack",
      "/hec/health": "/services/collector/health"}),
    ({"path": "/in/events", "ack_path": "/in/acks", "health_path": "/status/hec"},
     {"/in/events": "/services/collector/event", "/in/acks": "/services/collector/ack",
      "/status/hec": "/services/collector/health"}),
])
def test_a_proxy_with_its_own_paths(over: dict[str, str], routes: dict[str, str]) -> None:
    """Before, a path without /services/collector gave the root /services/collector/ack and
    /health: behind such a proxy the acks never came (ack timeout, then a re-send) and the health
    check failed. Now they are the event path's siblings, or the ack_path/health_path settings."""
    app = ProxyPaths([HecToken(ACK_TOKEN, use_ack=True)])
    app.routes = routes
    with MockServer(app) as server:
        out = make_output(server, token=ACK_TOKEN, ack=True, ack_timeout="2s", **over)
        try:
            assert out.send(items(out, 2)).status is Status.DELIVERED
            assert out.healthcheck() == (True, "HEC is healthy")
        finally:
            out.close()
    assert len(app.events) == 2


# ------------------------------------------------------------------------------------ envelope


def test_envelope_fields(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = make_output(server, host="agent-host-1", indexed_fields={"env": "prod"})
    env = envelope(items(out, 1)[0].data)
    assert env["time"] == 1767323045.678  # epoch seconds, ms precision (sub-ms digits dropped)
    assert env["host"] == "agent-host-1"
    assert env["source"] == "clawd-agent"
    assert env["sourcetype"] == "clawdstrike:security_event"
    assert "index" not in env  # empty index: the token's default
    assert env["event"] == event(0)  # the canonical JSON goes as an object
    assert env["fields"] == {"env": "prod", "severity": "high", "event_type": "guard_block",
                             "outcome": "failure", "guard": "egress_allowlist"}


def test_envelope_defaults_and_missing_values(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = make_output(server, index="security", event_fields=["guard", "agent_id"])
    ev = event(0, decision={"severity": "low"})
    del ev["timestamp"]
    it = DeliveryItem(1, ev, orjson.dumps(ev))
    env = envelope(out.encode(it))
    assert env["index"] == "security"
    assert env["host"] == socket.gethostname()  # the event names no host: this machine's
    assert "time" not in env  # no usable timestamp: HEC uses its receive time
    assert "fields" not in env  # neither guard nor agent id present


def test_envelope_host_is_the_events_own_without_a_configured_one(
        hec: tuple[RecordingHec, MockServer]) -> None:
    """The canonical event carries [agent] host_name (observer.host_name); the envelope's host said
    the machine's name instead, so Splunk's `host` and the event's disagreed (containers)."""
    _, server = hec
    ev = event(0, observer={"product": "hushd", "host_name": "web-7.prod"})
    env = envelope(make_output(server).encode(DeliveryItem(1, ev, orjson.dumps(ev))))
    assert env["host"] == "web-7.prod"
    env = envelope(make_output(server, host="fixed").encode(DeliveryItem(1, ev, orjson.dumps(ev))))
    assert env["host"] == "fixed"  # the configured one wins, and a route's over both


class FakePipeline:
    def __init__(self, output: bytes):
        self.output = output
        self.calls = 0

    def render(self, event: dict[str, Any], body: bytes) -> bytes:
        self.calls += 1
        return self.output


def test_json_format_goes_as_object_and_cef_as_string(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = make_output(server, format="ecs")
    out.pipeline = FakePipeline(b'{"@timestamp":"2026-01-02T03:04:05.678Z","event":{"kind":"alert"}}\n')
    env = envelope(items(out, 1)[0].data)
    assert env["event"] == {"@timestamp": "2026-01-02T03:04:05.678Z", "event": {"kind": "alert"}}
    assert env["sourcetype"] == "clawdstrike:ecs"
    out = make_output(server, format="cef")
    cef = b'CEF:0|Clawdstrike|hushd|1.0|guard_block|Blocked "x"|7|act=blocked'
    out.pipeline = FakePipeline(cef)
    env = envelope(items(out, 1)[0].data)
    assert env["event"] == cef.decode() and env["sourcetype"] == "cef"
    assert out.pipeline.calls == 1


def test_route_overrides_index_sourcetype_source(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    out = make_output(server, index="main")
    batch = items(out, 2) + items(out, 1, route={"index": "alerts", "sourcetype": "st:alert",
                                                 "source": "routed"}, start=2)
    assert out.send(batch).status is Status.DELIVERED
    assert [(e["index"], e["sourcetype"], e["source"]) for e in app.events] == [
        ("main", "clawdstrike:security_event", "clawd-agent")] * 2 + [("alerts", "st:alert", "routed")]


# ------------------------------------------------------------------------------------ delivery


def test_batch_delivered_gzip_concatenated(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    out = make_output(server)
    batch = items(out, 50)
    assert out.send(batch) == Outcome.delivered()
    req = app.requests[-1]
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.headers["Authorization"] == f"Splunk {TOKEN}"
    assert req.body == b"".join(it.data for it in batch)  # concatenated envelopes, no array
    assert req.raw_length < len(req.body)
    assert "X-Splunk-Request-Channel" not in req.headers  # no channel unless ack = true
    assert [e["event"]["seq"] for e in app.events] == list(range(50))


def test_no_compression_when_configured(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    out = make_output(server, compression="none")
    assert out.send(items(out, 3)).status is Status.DELIVERED
    assert "Content-Encoding" not in app.requests[-1].headers


def test_default_batch_bytes_under_splunk_cloud_limit() -> None:
    assert SplunkHecOutput.default_batch_max_bytes < 1_000_000


# ------------------------------------------------------------------------------------ error codes


@pytest.mark.parametrize(("fault", "check"), [
    (Fault("status", status=503, retry_after=7),
     lambda o: o.status is Status.RETRY and o.retry_after == 7 and "code 9 Server is busy" in o.reason),
    (Fault("status", status=500),
     lambda o: o.status is Status.RETRY and "code 8" in o.reason),
    (Fault("status", status=429, retry_after=3),
     lambda o: o.status is Status.RETRY and o.throttled and o.retry_after == 3),
    (Fault("status", status=408),
     lambda o: o.status is Status.RETRY and not o.throttled),
    (Fault("status", status=502),
     lambda o: o.status is Status.RETRY),
    (Fault("status", status=413),
     lambda o: o.status is Status.SPLIT),
])
def test_scheduled_faults(hec: tuple[RecordingHec, MockServer], fault: Fault, check: Any) -> None:
    _, server = hec
    out = make_output(server)
    server.faults.add(fault)
    outcome = out.send(items(out, 3))
    assert check(outcome), outcome
    assert out.send(items(out, 3)).status is Status.DELIVERED  # the fault was one request


@pytest.mark.parametrize(("code", "check"), [
    (23, lambda o: o.status is Status.RETRY and not o.throttled and o.retry_after == 5),
    (24, lambda o: o.status is Status.DELIVERED),
    (25, lambda o: o.status is Status.DELIVERED),
    (26, lambda o: o.status is Status.RETRY and o.throttled and o.retry_after == 5),
    (27, lambda o: o.status is Status.RETRY and o.throttled and o.retry_after == 5),
])
@pytest.mark.parametrize("ack", [False, True])
def test_codes_23_to_27(code: int, check: Any, ack: bool) -> None:
    """Splunk Enterprise 9.x's codes 23-27 ([secondary] sources in the module docstring): 23
    shutting down (503) is retried, 24/25 approaching capacity (200) are successes (with acks: once
    acked), 26/27 at capacity (429) are throttling; 27 also replaces the ack channel."""

    class Answering(SplunkHecApp):
        def handle(self, req: MockRequest) -> MockResponse:
            resp = super().handle(req)
            if req.path.endswith("/event") and resp.status != 200:
                resp.headers["Retry-After"] = "5"
            return resp

    app = Answering([HecToken(TOKEN), HecToken(ACK_TOKEN, use_ack=True)])
    app.add_code_fault(code)
    with MockServer(app) as server:
        out = make_output(server, token=ACK_TOKEN if ack else TOKEN, ack=ack)
        try:
            channels = list(out.acks.channels) if out.acks is not None else []
            outcome = out.send(items(out, 2))
            assert check(outcome), outcome
            assert outcome.status is Status.DELIVERED or f"code {code} " in outcome.reason
            assert len(app.events) == (2 if code in (24, 25) else 0)
            if out.acks is not None:
                replaced = set(channels) - set(out.acks.channels)
                assert len(replaced) == (1 if code == 27 else 0)
        finally:
            out.close()


def test_connection_reset_and_refused_are_retries(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = make_output(server)
    server.faults.add(Fault("reset"))
    assert out.send(items(out, 2)).status is Status.RETRY
    url = server.url
    server.stop()
    out2 = make_output(server, endpoint=url)
    outcome = out2.send(items(out2, 2))
    assert outcome.status is Status.RETRY and url not in outcome.reason


def test_busy_server(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    app.busy = True
    out = make_output(server)
    outcome = out.send(items(out, 2))  # invalid-event-number 0: nothing taken
    assert outcome.status is Status.RETRY and "Server is busy" in outcome.reason
    assert app.events == []


def test_busy_after_a_prefix_resends_only_the_rest(hec: tuple[RecordingHec, MockServer]) -> None:
    """503 code 9 with invalid-event-number 4: HEC took events 0-3 of 6 (OTel contrib #36113).
    Before, the whole batch was re-sent and the prefix indexed twice. Now the events surely taken
    (0-2) are accepted and 3-5 re-sent: at most the one before the number is indexed twice."""
    app, server = hec
    app.add_code_fault(9, after_events=4)
    out = make_output(server)
    batch = items(out, 6)
    outcome = out.send(batch)
    assert outcome.status is Status.PARTIAL and "code 9 Server is busy" in outcome.reason
    assert outcome.failed == [] and outcome.retry_items == batch[3:]
    assert out.send(outcome.retry_items).status is Status.DELIVERED
    assert sorted(e["event"]["seq"] for e in app.events) == [0, 1, 2, 3, 3, 4, 5]


def test_busy_after_a_prefix_with_acks_resends_everything(
        hec: tuple[RecordingHec, MockServer]) -> None:
    """With acks the prefix HEC took has no ackId: nothing of it is confirmed."""
    app, server = hec
    app.add_code_fault(9, after_events=4)
    out = ack_output(server)
    try:
        outcome = out.send(items(out, 6))
        assert outcome.status is Status.RETRY and "code 9" in outcome.reason
    finally:
        out.close()


@pytest.mark.parametrize(("setup", "code"), [
    (lambda app: app.tokens[TOKEN].__setattr__("enabled", False), 1),
    (lambda app: app.tokens.pop(TOKEN), 4),
])
def test_token_refused_is_auth_failure(hec: tuple[RecordingHec, MockServer], setup: Any,
                                       code: int) -> None:
    app, server = hec
    out = make_output(server)
    setup(app)
    outcome = out.send(items(out, 2))
    assert outcome.status is Status.RETRY and outcome.auth_failure
    assert f"code {code}" in outcome.reason


def test_ack_token_without_ack_config_is_a_clear_config_error(
        hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = make_output(server, token=ACK_TOKEN)
    outcome = out.send(items(out, 1))
    assert outcome.status is Status.RETRY and outcome.auth_failure  # pause, keep the data
    assert "code 10" in outcome.reason and "set ack = true" in outcome.reason


def test_payload_over_limit_splits(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    app.max_body = 2_000
    out = make_output(server, compression="none")
    outcome = out.send(items(out, 20))
    assert outcome.status is Status.SPLIT and "413" in outcome.reason


def poison(it: DeliveryItem, envelope_bytes: bytes) -> None:
    """Replace an item's encoded envelope with one HEC refuses."""
    it.data = envelope_bytes


def test_bad_event_partial_exact(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    out = make_output(server)
    batch = items(out, 6)
    poison(batch[3], b'{"time":1,"host":"h","event":""}')  # blank event: code 13
    outcome = out.send(batch)
    assert outcome.status is Status.PARTIAL
    assert "code 13" in outcome.reason and "event 3 of 6" in outcome.reason
    assert outcome.failed == [batch[3]]
    assert outcome.retry_items == batch[4:]  # HEC indexed 0..2 and ignored 4..5
    assert [e["event"]["seq"] for e in app.events] == [0, 1, 2]


def test_incorrect_index_fails_every_event_bound_for_it(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    out = make_output(server)
    good = items(out, 2)
    bad = items(out, 2, route={"index": "no_such_index"}, start=2)
    more = items(out, 1, start=4)
    batch = [good[0], bad[0], good[1], bad[1], more[0]]
    outcome = out.send(batch)
    assert outcome.status is Status.PARTIAL and "code 7 Incorrect index" in outcome.reason
    assert outcome.failed == [bad[0], bad[1]]
    assert outcome.retry_items == [good[1], more[0]]
    assert [e["event"]["seq"] for e in app.events] == [0]  # the prefix before the bad event


class NoNumberHec(SplunkHecApp):
    """A proxy-like HEC that refuses with code 6 but does not say which event."""

    def handle(self, req: MockRequest) -> MockResponse:
        if b'"bad"' in req.body:
            return MockResponse.json(400, {"text": "Invalid data format", "code": 6})
        return super().handle(req)


def deliver_like_the_framework(out: SplunkHecOutput, batch: list[DeliveryItem]
                               ) -> tuple[list[DeliveryItem], int]:
    """Apply Outcomes the way the drain does (PARTIAL re-sends retry_items, SPLIT bisects, a single
    item on SPLIT goes to the DLQ); returns (dead-lettered items, requests)."""
    dlq: list[DeliveryItem] = []
    todo = [batch]
    requests = 0
    while todo:
        part = todo.pop(0)
        requests += 1
        outcome = out.send(part)
        if outcome.status is Status.DELIVERED:
            continue
        if outcome.status is Status.PARTIAL:
            dlq += outcome.failed
            if outcome.retry_items:
                todo.append(outcome.retry_items)
        elif outcome.status is Status.SPLIT:
            if len(part) == 1:
                dlq += part
            else:
                mid = len(part) // 2
                todo[:0] = [part[:mid], part[mid:]]
        else:
            raise AssertionError(outcome)
    return dlq, requests


@pytest.mark.parametrize("app_cls", [SplunkHecApp, NoNumberHec])
def test_only_the_bad_event_reaches_the_dlq_and_nothing_is_duplicated(app_cls: type) -> None:
    app = app_cls([HecToken(TOKEN)])
    with MockServer(app) as server:
        out = make_output(server)
        batch = items(out, 16)
        poison(batch[11], b'{"time":1,"host":"h","event":"bad","fields":{"x":{"nested":1}}}')
        dlq, requests = deliver_like_the_framework(out, batch)
    assert dlq == [batch[11]]
    stored = sorted(e["event"]["seq"] for e in app.events if isinstance(e["event"], dict))
    assert stored == [i for i in range(16) if i != 11]  # every good event exactly once
    if app_cls is SplunkHecApp:
        assert requests == 2  # the precise PARTIAL: one failed request, one re-send of the rest


def test_other_4xx_is_permanent_with_excerpt(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = make_output(server, path="/services/collector/nope")
    outcome = out.send(items(out, 2))
    assert outcome.status is Status.PERMANENT and "404" in outcome.reason
    assert "not found" in outcome.excerpt


# ------------------------------------------------------------------------------------ acks


def ack_output(server: MockServer, **over: Any) -> SplunkHecOutput:
    return make_output(server, token=ACK_TOKEN, ack=True, **over)


def test_ack_delivered_only_when_acked(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    app.ack_delay = 0.15
    out = ack_output(server)
    try:
        assert out.send(items(out, 3)) == Outcome.delivered()
        assert out.acks is not None and out.acks.queries >= 2  # false first, then true
        assert app.stats()["acks_pending"] == 0
        sent = app.requests[0]
        uuid.UUID(sent.headers["X-Splunk-Request-Channel"])
        acks = [r for r in app.requests if r.path.endswith("/ack")]
        assert acks and all(json.loads(r.body)["acks"] == [0] for r in acks)
    finally:
        out.close()


def test_lost_acks_time_out_and_resend_exactly_once(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    app.ack_delay = 3600
    out = ack_output(server, ack_timeout="300ms")
    try:
        batch = items(out, 4)
        waiting = gevent.spawn(out.send, batch)
        gevent.sleep(0.05)
        assert app.lose_acks(drop_events=True) == 1  # indexer restart: the data never made it
        outcome = waiting.get()
        assert outcome.status is Status.RETRY and "ack timeout" in outcome.reason
        app.ack_delay = 0
        assert out.send(batch).status is Status.DELIVERED
        assert sorted(e["event"]["seq"] for e in app.events) == [0, 1, 2, 3]
    finally:
        out.close()


def test_ack_delay_fault_then_delivered(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    server.faults.add(Fault("ack_delay", delay=0.3))
    out = ack_output(server)
    try:
        assert out.send(items(out, 1)).status is Status.DELIVERED
        assert out.acks is not None and out.acks.queries >= 2  # answered false before true
    finally:
        out.close()


def test_poll_interval_backs_off_while_no_ack_arrives(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = ack_output(server, ack_poll_interval="1s", ack_poll_max_interval="5s")
    assert out.acks is not None
    assert [out.acks.next_interval(False) for _ in range(4)] == [2.0, 4.0, 5.0, 5.0]
    assert out.acks.next_interval(True) == 1.0
    out.close()


def test_several_channels_and_batched_polls(hec: tuple[RecordingHec, MockServer]) -> None:
    """More batches waiting than channels (8 sends straight to the output, 4 slots): they share the
    channels and one ack query per channel carries several ackIds."""
    app, server = hec
    app.ack_delay = 0.1
    out = ack_output(server, channels=4, concurrency=4)
    try:
        sends = [gevent.spawn(out.send, items(out, 2, start=2 * i)) for i in range(8)]
        outcomes = [g.get() for g in sends]
        assert all(o.status is Status.DELIVERED for o in outcomes)
        channels = {r.headers["X-Splunk-Request-Channel"] for r in app.requests
                    if r.path.endswith("/event")}
        assert len(channels) == 4
        assert out.acks is not None and set(out.acks.channels) == channels
        ack_bodies = [json.loads(r.body)["acks"] for r in app.requests if r.path.endswith("/ack")]
        assert any(len(ids) > 1 for ids in ack_bodies)  # one query carries several ackIds
        assert len(app.events) == 16
    finally:
        out.close()


def test_at_least_as_many_channels_as_send_slots(hec: tuple[RecordingHec, MockServer]) -> None:
    """A channel carries one POST at a time, so each send slot must find one idle."""
    _, server = hec
    for over, expected in [({}, 16), ({"channels": 20}, 20), ({"concurrency": 2}, 4)]:
        out = ack_output(server, **over)
        assert out.acks is not None and len(out.acks.channels) == expected
        out.close()


def _when(condition: Any) -> None:
    """Let other greenlets run until ``condition()`` holds (bounded, not a timing assertion)."""
    for _ in range(1000):
        if condition():
            return
        gevent.sleep(0.01)
    raise AssertionError("condition never held")


def _waiting_through_a_restart(app: RecordingHec, server: MockServer
                                ) -> tuple[SplunkHecOutput, list[DeliveryItem], gevent.Greenlet]:
    """Batch A sent on the output's one ack channel, accepted with ackId 0 and waiting; then the
    indexer restarts (A's data is gone, the channel's ackIds start again at 0) and acks come at once.
    (output, A, the greenlet sending A)."""
    app.ack_delay = 3600
    out = ack_output(server, channels=1, concurrency=1, ack_timeout="5s")
    assert out.acks is not None
    acks = out.acks
    batch_a = items(out, 2)
    waiting_a = gevent.spawn(out.send, batch_a)
    _when(lambda: acks.pending_count() == 1)  # A accepted with ackId 0, not indexed yet
    assert app.restart() == 1
    app.ack_delay = 0
    return out, batch_a, waiting_a


def test_ack_ids_that_start_again_never_confirm_another_batch(
        hec: tuple[RecordingHec, MockServer]) -> None:
    """Batch A waits on ackId 0 of channel C; the indexer restarts (A's data is gone, C's ackIds
    start again at 0); batch B is sent on C, gets ackId 0 and is indexed. A poll round runs after B
    was indexed and before its answer is registered (the review's interleaving, made
    deterministic). Before, the query's `true` for 0 (B's) marked A delivered, and B then waited
    for a `true` already spent until its ack timeout. Now C is not queried while B's POST is under
    way; B's registration finds 0 taken, A is re-sent, C is replaced, and B is confirmed."""
    app, server = hec
    out, batch_a, waiting_a = _waiting_through_a_restart(app, server)
    acks = out.acks
    assert acks is not None
    real = out.request
    try:
        def request(method: str, url: str, body: Any = None, headers: Any = None,
                    **kw: Any) -> Any:
            resp = real(method, url, body, headers, **kw)
            if url.endswith("/event"):  # B is indexed; its answer is not registered yet
                acks.poll_once()
            return resp

        out.request = request  # type: ignore[method-assign]
        outcome_b = out.send(items(out, 2, start=2))
        outcome_a = waiting_a.get(timeout=10)
        assert outcome_a.status is Status.RETRY, "A's data was lost in the restart"
        assert "ackId 0 was given again" in outcome_a.reason
        assert outcome_b.status is Status.DELIVERED, outcome_b.reason
        assert sorted(e["event"]["seq"] for e in app.events) == [2, 3]
        out.request = real  # type: ignore[method-assign]
        assert out.send(batch_a).status is Status.DELIVERED
        assert sorted(e["event"]["seq"] for e in app.events) == [0, 1, 2, 3]
    finally:
        out.close()


def test_a_post_without_hec_answer_makes_its_channel_acks_untrustworthy(
        hec: tuple[RecordingHec, MockServer]) -> None:
    """A waits on ackId 0 of C; the indexer restarts; B is sent on C, indexed with ackId 0, but its
    answer is lost (connection reset). Before, the next poll's `true` for 0 (B's) marked A
    delivered. Now a POST without a HEC answer re-sends every batch waiting on its channel."""
    app, server = hec
    out, _, waiting_a = _waiting_through_a_restart(app, server)
    real = out.request
    try:
        def request(method: str, url: str, body: Any = None, headers: Any = None,
                    **kw: Any) -> Any:
            resp = real(method, url, body, headers, **kw)
            if url.endswith("/event"):
                raise TransportError("ConnectionError: Connection reset by peer")
            return resp

        out.request = request  # type: ignore[method-assign]
        outcome_b = out.send(items(out, 2, start=2))
        out.request = real  # type: ignore[method-assign]
        assert outcome_b.status is Status.RETRY
        assert [e["event"]["seq"] for e in app.events] == [2, 3]  # HEC took B
        outcome_a = waiting_a.get(timeout=10)
        assert outcome_a.status is Status.RETRY, "A's data was lost in the restart"
        assert "no HEC answer" in outcome_a.reason
    finally:
        out.close()


def test_ack_true_with_a_token_without_acks_pauses_and_keeps_the_data(
        hec: tuple[RecordingHec, MockServer], caplog: pytest.LogCaptureFixture) -> None:
    """ack = true, token without acks: HEC answers code 0 and no ackId. Its 200 means 'appears
    valid', and nothing will confirm indexing. Before, the batch counted as delivered (the cursor
    passed events ack = true had not confirmed); now a configuration error like codes 10 and 16."""
    _, server = hec
    out = make_output(server, ack=True)  # TOKEN has acks off: no ackId in the answer
    try:
        with caplog.at_level(logging.ERROR, logger="clawd_agent.outputs.splunk_hec"):
            outcome = out.send(items(out, 1))
        assert outcome.status is Status.RETRY and outcome.auth_failure  # breaker, data kept
        assert "without an ackId" in outcome.reason and "set ack = false" in outcome.reason
        assert "without an ackId" in caplog.text
        ok, reason = out.healthcheck()
        assert not ok and "without an ackId" in reason
    finally:
        out.close()


class PageProxy(SplunkHecApp):
    """A proxy, captive portal or wrong `path` that answers 2xx with its own page."""

    status = 200
    body = b"<html>Please log in</html>"

    def handle(self, req: MockRequest) -> MockResponse:
        if req.path.endswith("/event"):
            return MockResponse(self.status, self.body, {"Content-Type": "text/html"})
        return super().handle(req)


@pytest.mark.parametrize(("ack", "status", "body"), [
    (True, 200, b"<html>Please log in</html>"),
    (False, 200, b"<html>Please log in</html>"),
    (False, 200, b'{"status":"ok"}'),
    (False, 204, b""),
])
def test_a_2xx_that_is_not_hec_success_is_not_delivered(ack: bool, status: int, body: bytes) -> None:
    """Only HEC's own answer, code 0, counts as delivered; before, any 200 did (with ack = true, a
    200 without an ackId was taken for a token without acks), so the cursor passed events that
    were stored nowhere."""
    app = PageProxy([HecToken(TOKEN), HecToken(ACK_TOKEN, use_ack=True)])
    app.status, app.body = status, body
    outcome = send_once(app, 3, token=ACK_TOKEN if ack else TOKEN, ack=ack)
    assert app.events == []
    assert outcome.status is Status.RETRY, outcome
    assert "without HEC's answer" in outcome.reason and not outcome.auth_failure



class StatusRewriter(SplunkHecApp):
    """A front end that passes HEC's JSON body on under another status: every answer of the event
    endpoint as ``event_status`` (a gateway answering 200 to everything, or 202)."""

    event_status = 200

    def handle(self, req: MockRequest) -> MockResponse:
        resp = super().handle(req)
        if req.path.endswith("/event"):
            resp.status = self.event_status
        return resp


@pytest.mark.parametrize("code", [8, 9, 23, 26])
def test_a_200_carrying_a_hec_error_code_is_not_delivered(code: int) -> None:
    """Only HTTP 200 with code 0 (24, 25) means HEC took the events; a gateway that answers 200 and
    passes HEC's error body on was counted delivered, and the cursor passed events stored nowhere."""
    app = StatusRewriter([HecToken(TOKEN)])
    app.add_code_fault(code)
    outcome = send_once(app, 3)
    assert app.events == []
    assert outcome.status is Status.RETRY, outcome
    assert f"code {code} " in outcome.reason


def test_a_wrong_path_to_the_health_endpoint_is_not_delivered() -> None:
    """``path`` set to the health endpoint: HEC answers 200 code 17 "HEC is healthy", stores nothing."""
    app = SplunkHecApp([HecToken(TOKEN)])
    outcome = send_once(app, 3, path="/services/collector/health")
    assert app.events == []
    assert outcome.status is Status.RETRY and "nothing confirms" in outcome.reason


def test_with_acks_a_202_success_body_still_waits_for_the_ack() -> None:
    """A front end answering 202 with HEC's success body and an ackId: not HEC's 200, so nothing is
    confirmed; before, it was counted delivered at once, without the ack ack = true asks for."""
    app = StatusRewriter([HecToken(ACK_TOKEN, use_ack=True)], ack_delay=3600)
    app.event_status = 202
    outcome = send_once(app, 2, token=ACK_TOKEN, ack=True)
    assert outcome.status is Status.RETRY, outcome
    assert "HTTP 202 code 0" in outcome.reason


@pytest.mark.parametrize(("status", "body"), [
    (404, b'{"text":"The requested URL was not found on this server.","code":404}'),
    (405, b"<html>Method Not Allowed</html>"),
])
def test_an_ack_endpoint_that_is_not_hecs_pauses_the_output(
        caplog: pytest.LogCaptureFixture, status: int, body: bytes) -> None:
    """A wrong ``ack_path`` or a proxy without the ack route: each batch was indexed, waited for the
    ack timeout, and was sent again, indexed again, with no end and only a DEBUG line. Now the
    waiting batch is retried as a configuration error (the breaker pauses the output, the data
    stays), the log says why, and the health check fails until acks are answered again."""

    class NoAckRoute(SplunkHecApp):
        def handle(self, req: MockRequest) -> MockResponse:
            if req.path.endswith("/nope"):
                return MockResponse(status, body, {})
            return super().handle(req)

    app = NoAckRoute([HecToken(ACK_TOKEN, use_ack=True)])
    with MockServer(app) as server:
        out = make_output(server, token=ACK_TOKEN, ack=True, ack_path="/services/collector/nope",
                          ack_timeout="30s")
        try:
            with caplog.at_level(logging.ERROR):
                outcome = out.send(items(out, 2))
            assert outcome.status is Status.RETRY and outcome.auth_failure, outcome
            assert f"HTTP {status}" in outcome.reason and "ack_path" in outcome.reason
            assert any("ack_path" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
            ok, reason = out.healthcheck()
            assert not ok and "ack_path" in reason
            out.config.ack_path = ""  # fixed: acks are answered again, health recovers
            out.ack_url = out.ack_url.replace("/nope", "/ack")
            assert out.send(items(out, 1, start=5)).status is Status.DELIVERED
            assert out.healthcheck() == (True, "HEC is healthy")
        finally:
            out.close()
    assert len(app.events) == 3  # the 2 events once (HEC took them), then the third

def test_ack_disabled_answer_is_a_permanent_config_error(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    app.ack_delay = 3600
    out = ack_output(server)
    try:
        waiting = gevent.spawn(out.send, items(out, 2))
        gevent.sleep(0.05)
        app.tokens[ACK_TOKEN].use_ack = False  # the admin turned acks off on the token
        outcome = waiting.get(timeout=5)
        assert outcome.status is Status.PERMANENT
        assert "ACK is disabled" in outcome.reason and "set ack = false" in outcome.reason
        ok, reason = out.healthcheck()
        assert not ok and "ACK is disabled" in reason
        # Later batches are accepted without an ackId: kept in the spool, the output paused.
        later = out.send(items(out, 1, start=5))
        assert later.status is Status.RETRY and later.auth_failure
        # The admin turns acks back on: batches are acknowledged again, and health recovers.
        app.tokens[ACK_TOKEN].use_ack = True
        app.ack_delay = 0
        assert out.send(items(out, 1, start=6)).status is Status.DELIVERED
        assert out.healthcheck() == (True, "HEC is healthy")
    finally:
        out.close()


def test_refused_channel_is_replaced(hec: tuple[RecordingHec, MockServer]) -> None:
    _, server = hec
    out = ack_output(server, channels=1, concurrency=1)
    try:
        assert out.acks is not None
        bad = AckChannel("not-a-guid")
        out.acks.known.pop(out.acks.live[0].guid)
        out.acks.live[0] = out.acks.known[bad.guid] = bad
        outcome = out.send(items(out, 1))
        assert outcome.status is Status.RETRY and "code 11" in outcome.reason
        uuid.UUID(out.acks.channels[0])  # a fresh GUID took its place
        assert out.send(items(out, 1)).status is Status.DELIVERED
    finally:
        out.close()


def test_request_accepted_on_a_channel_replaced_meanwhile_is_still_polled(
        hec: tuple[RecordingHec, MockServer]) -> None:
    """A concurrent code 11 (or an /ack 10/11) replaces channel C while a request sent on C is in
    flight; HEC accepted that request with an ackId on C. It must still be polled on C: before,
    the poller visited only the live channels, so the request held its slot for the whole
    ack_timeout and was then sent again (a duplicate) although HEC had acknowledged it."""
    app, server = hec
    out = ack_output(server, channels=1, ack_timeout="3s")
    real = out.request

    def request(method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> Any:
        resp = real(method, url, body, headers, **kw)
        if url.endswith("/event"):  # another send got code 11 on this channel just now
            assert out.acks is not None
            out.acks.replace_channel(headers["X-Splunk-Request-Channel"])
        return resp

    out.request = request  # type: ignore[method-assign]
    try:
        outcome = out.send(items(out, 1))
        assert outcome.status is Status.DELIVERED, (outcome.reason, app.stats())
        assert app.stats()["acks_pending"] == 0  # HEC's true was collected
        assert out.acks is not None and out.acks.pending_count() == 0
        assert len(out.acks.known) == len(out.acks.live)  # the retired one is forgotten
    finally:
        out.close()


def test_close_releases_waiters(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    app.ack_delay = 3600
    out = ack_output(server)
    waiting = gevent.spawn(out.send, items(out, 1))
    gevent.sleep(0.05)
    out.close()
    outcome = waiting.get(timeout=5)
    assert outcome.status is Status.RETRY and "closing" in outcome.reason


# ------------------------------------------------------------------------------------ health


def test_healthcheck(hec: tuple[RecordingHec, MockServer]) -> None:
    app, server = hec
    out = make_output(server)
    assert out.healthcheck() == (True, "HEC is healthy")
    assert app.requests[-1].path == "/services/collector/health"
    assert app.requests[-1].headers["Authorization"] == f"Splunk {TOKEN}"
    app.queues_full = True
    ok, reason = out.healthcheck()
    assert not ok and "code 18" in reason
    app.queues_full = False
    app.tokens[TOKEN].enabled = False
    ok, reason = out.healthcheck()
    assert not ok and "code 22 Token disabled" in reason
    server.stop()
    ok, reason = out.healthcheck()
    assert not ok and server.url not in reason


# ------------------------------------------------------------------------------------ secrets


def test_token_rotation_via_file_after_403(hec: tuple[RecordingHec, MockServer],
                                           tmp_path: Path) -> None:
    app, server = hec
    token_file = tmp_path / "hec.token"
    token_file.write_text(TOKEN + "\n")
    out = make_output(server, token=f"file:{token_file}")
    assert out.send(items(out, 1)).status is Status.DELIVERED
    rotated = "rotated-0c9d-hec-token"
    app.set_token(HecToken(rotated))
    app.tokens[TOKEN].enabled = False
    outcome = out.send(items(out, 1))
    assert outcome.auth_failure
    token_file.write_text(rotated + "\n")
    out.refresh_credentials()  # what the framework does after an auth failure
    assert out.send(items(out, 1)).status is Status.DELIVERED
    assert app.requests[-1].headers["Authorization"] == f"Splunk {rotated}"


def test_header_secrets_from_files_are_re_read_on_refresh(hec: tuple[RecordingHec, MockServer],
                                                          tmp_path: Path) -> None:
    """A proxy or gateway key in ``headers`` rotates like the token: a change the file's stamp does
    not show is picked up by ``Output.refresh_credentials`` (after a 401/403)."""
    app, server = hec
    key_file = tmp_path / "gw.key"
    key_file.write_text("gateway-key-1\n")
    out = make_output(server, headers={"X-Gateway-Key": f"file:{key_file}"})
    assert out.send(items(out, 1)).status is Status.DELIVERED
    assert app.requests[-1].headers["X-Gateway-Key"] == "gateway-key-1"
    st = key_file.stat()
    key_file.write_text("gateway-key-2\n")  # same size, and the old mtime back: the ctime tells
    os.utime(key_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    out.send(items(out, 1))
    assert app.requests[-1].headers["X-Gateway-Key"] == "gateway-key-2"
    secret = out.config.headers["X-Gateway-Key"]
    secret._value = "stale"  # what a change within one timestamp tick would leave
    out.send(items(out, 1))
    assert app.requests[-1].headers["X-Gateway-Key"] == "stale"
    out.refresh_credentials()
    out.send(items(out, 1))
    assert app.requests[-1].headers["X-Gateway-Key"] == "gateway-key-2"


def test_proxy_refusing_its_credentials_on_connect_is_an_auth_failure(tls_files: TlsFiles  # noqa: F811
                                                                       ) -> None:
    """An https:// endpoint through a proxy whose credentials are wrong (the tunnel's 407): an
    authentication failure like a 407 answer of an http:// one, so ``file:`` secrets are re-read."""
    app = RecordingHec([HecToken(TOKEN)])
    with MockServer(app, certfile=str(tls_files.server_cert), keyfile=str(tls_files.server_key)) as server, \
            Proxy("shipper", "right-password") as proxy:
        wrong = f"http://shipper:wrong-password@127.0.0.1:{proxy.port}"
        out = make_output(server, proxy=wrong, ca_file=str(tls_files.ca_cert))
        outcome = out.send(items(out, 1))
        assert outcome.status is Status.RETRY and "407" in outcome.reason
        assert outcome.auth_failure and app.requests == []
        out.close()


class EchoingHec(SplunkHecApp):
    """A misbehaving HEC (or proxy) that echoes the request's credentials in its errors."""

    def handle(self, req: MockRequest) -> MockResponse:
        auth = req.headers.get("Authorization", "")
        if req.path.endswith("/health"):
            return MockResponse(503, f"unhealthy; you sent {auth}".encode())
        if b'"echo-400"' in req.body:
            return MockResponse.json(400, {"text": f"bad request from {auth}", "code": 6,
                                           "invalid-event-number": 0})
        if b'"echo-403"' in req.body:
            return MockResponse.json(403, {"text": f"Invalid token {auth.split(' ')[-1]}", "code": 4})
        if b'"echo-418"' in req.body:
            return MockResponse(418, f"teapot; token={auth.split(' ')[-1]} header {auth}".encode())
        return super().handle(req)


def test_canary_token_never_in_reason_excerpt_or_log(caplog: pytest.LogCaptureFixture) -> None:
    app = EchoingHec([HecToken(TOKEN, use_ack=True)])
    outcomes: list[Outcome] = []
    with caplog.at_level(logging.DEBUG), MockServer(app) as server:
        out = make_output(server, ack=True, ack_timeout="200ms")
        for marker in ("echo-400", "echo-403", "echo-418"):
            it = DeliveryItem(1, event(1), b"{}")
            it.data = b'{"event":"%s"}' % marker.encode()
            outcomes.append(out.send([it]))
        app.ack_delay = 3600
        outcomes.append(out.send(items(out, 1)))  # ack timeout
        server.faults.add(Fault("status", status=503))
        outcomes.append(out.send(items(out, 1)))
        health = out.healthcheck()
        out.close()
        server.stop()
        outcomes.append(out.send(items(out, 1)))  # transport error
    assert [o.status for o in outcomes] == [Status.PARTIAL, Status.RETRY, Status.PERMANENT,
                                            Status.RETRY, Status.RETRY, Status.RETRY]
    texts = [o.reason for o in outcomes] + [o.excerpt for o in outcomes] + [health[1], caplog.text]
    assert any("bad request" in t for t in texts)  # the excerpts are there, redacted
    for text in texts:
        assert TOKEN not in text
        assert TOKEN[:12] not in text


PATCHED_SCRIPT = r'''
from gevent import monkey; monkey.patch_all()
import json, gevent
from agent.config_loader import load_section
from outputs.base import DeliveryItem
from outputs.mocks.server import Fault, MockServer
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
import threading, time


class Overlap(SplunkHecApp):
    """Records how many requests (POSTs and ack queries) were in flight on one channel at once."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.inflight, self.most, self.guard = {}, 0, threading.Lock()

    def handle(self, req):
        ch = req.headers.get("X-Splunk-Request-Channel", "")
        with self.guard:
            self.inflight[ch] = self.inflight.get(ch, 0) + 1
            self.most = max(self.most, self.inflight[ch])
        try:
            time.sleep(0.02)  # (a gevent sleep here) lets other requests overlap this one
            return super().handle(req)
        finally:
            with self.guard:
                self.inflight[ch] -= 1


app = Overlap([HecToken("tok-123456", use_ack=True)], ack_delay=0.1)
srv = MockServer(app).start()
cfg = load_section(SplunkHecOutputConfig, {"type": "splunk_hec", "endpoint": srv.url,
                   "token": "tok-123456", "ack": True, "ack_poll_interval": "50ms"}, "t")
out = SplunkHecOutput("hec", cfg)
out.open()
def item(i):
    ev = {"timestamp": "2026-01-02T03:04:05.678Z", "seq": i}
    it = DeliveryItem(i, ev, json.dumps(ev).encode())
    it.data = out.encode(it)
    return it
srv.faults.add(Fault("reset"))
sends = [gevent.spawn(out.send, [item(i)]) for i in range(10)]
print(json.dumps({"outcomes": sorted(g.get(timeout=30).status.value for g in sends),
                  "stored": len(app.events), "channels": app.stats()["channels"],
                  "most_on_one_channel": app.most}))
out.close()
srv.stop()
'''


@pytest.mark.integration
def test_concurrent_acked_sends_under_gevent_patching() -> None:
    """As in the agent (gevent.monkey.patch_all): the mock's threads and the output's requests are
    greenlets in one hub; concurrent sends spread over the channels and are all acknowledged, and
    a channel never carries two requests at once (a POST and an ack query included)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", PATCHED_SCRIPT], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outcomes"] == ["delivered"] * 9 + ["retry"]  # one request hit the reset
    assert result["stored"] == 9
    assert result["channels"] == 9  # one channel per concurrent send (16 with acks)
    assert result["most_on_one_channel"] == 1


def test_an_unreadable_token_file_is_a_retry_not_a_crash(hec: tuple[RecordingHec, MockServer],
                                                         tmp_path: Path) -> None:
    """Mid-rotation the token file may be gone for a moment: the attempt is retried (the shared
    HTTP layer's CredentialError), never an exception out of send()."""
    _app, server = hec
    token_file = tmp_path / "hec.token"
    token_file.write_text(TOKEN + "\n")
    out = make_output(server, token=f"file:{token_file}")
    token_file.unlink()
    outcome = out.send(items(out, 1))
    assert outcome.status is Status.RETRY and "CredentialError" in outcome.reason
    assert TOKEN not in outcome.reason
    token_file.write_text(TOKEN + "\n")
    assert out.send(items(out, 1)).status is Status.DELIVERED


def test_with_acks_the_default_concurrency_is_16_slots(hec: tuple[RecordingHec, MockServer],
                                                       tmp_path: Any) -> None:
    """A batch keeps its slot until acked: 4 slots capped acked delivery near 5,000 events/s. The
    drain's concurrency is 16 with acks, 4 without, and an explicit setting wins."""
    from outputs.drain import Drain
    from spool.store import Spool

    _, server = hec
    spool = Spool(str(tmp_path / "spool.db"))
    try:
        def slots(**over: Any) -> int:
            out = make_output(server, **over)
            try:
                return Drain(out, spool, spool.reader()).concurrency
            finally:
                out.close()

        assert slots(token=ACK_TOKEN, ack=True) == 16
        assert slots() == 4
        assert slots(token=ACK_TOKEN, ack=True, concurrency=2) == 2
    finally:
        spool.close()


def test_one_poll_round_queries_its_channels_at_once(hec: tuple[RecordingHec, MockServer]) -> None:
    """With as many channels as send slots, a round has up to 16 queries: run one after another
    they made every waiting batch's slot wait for their sum. Each channel's queries still run alone
    on that channel (it is busy meanwhile), and an ack found by any of them counts for the round."""
    import gevent.event

    _, server = hec
    out = ack_output(server)
    try:
        out.open()
        tracker = out.acks
        assert tracker is not None
        channels = tracker.live[:5]
        for n, ch in enumerate(channels):
            ch.waiters[n] = gevent.event.AsyncResult()
        running: list[str] = []
        most = [0]

        def query(ch: Any, ids: list[int]) -> bool:
            assert ch.busy  # no POST may take the channel while its query runs
            running.append(ch.guid)
            most[0] = max(most[0], len(running))
            gevent.sleep(0.01)
            running.remove(ch.guid)
            return ch is channels[3]

        tracker._query = query  # type: ignore[method-assign]
        assert tracker.poll_once() is True
        assert most[0] == 5
        assert not any(ch.busy for ch in channels)  # all released after the round
    finally:
        out.close()
