"""The Splunk HEC mock against the documented contract (see outputs/mocks/splunk_hec.py for sources):
codes and HTTP statuses, auth variants, batch validation with invalid-event-number, limits, gzip,
channels, indexer acknowledgement, health."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from outputs.mocks.server import Fault, MockServer
from outputs.mocks.splunk_hec import HEC_CODES, HecToken, SplunkHecApp

TOKEN = "11111111-2222-3333-4444-555555555555"
ACK_TOKEN = "aaaaaaaa-2222-3333-4444-555555555555"
EVENT = "/services/collector/event"
ACK = "/services/collector/ack"
HEALTH = "/services/collector/health"


@pytest.fixture
def hec() -> Iterator[tuple[SplunkHecApp, MockServer]]:
    app = SplunkHecApp([HecToken(TOKEN), HecToken(ACK_TOKEN, use_ack=True),
                        HecToken("disabled-token", enabled=False),
                        HecToken("sec-only", indexes=["security"])],
                       indexes={"main", "security"}, max_content_length=10_000)
    with MockServer(app) as server:
        yield app, server


def post(server: MockServer, body: bytes | str, *, token: str | None = TOKEN, path: str = EVENT,
         headers: dict[str, str] | None = None, params: dict[str, str] | None = None
         ) -> requests.Response:
    h = {"Authorization": f"Splunk {token}"} if token else {}
    h.update(headers or {})
    data = body.encode() if isinstance(body, str) else body
    return requests.post(server.url + path, data=data, headers=h, params=params)


def answer(r: requests.Response) -> tuple[int, int]:
    return r.status_code, r.json()["code"]


def test_code_table_matches_documented_http_statuses() -> None:
    assert HEC_CODES[0] == (200, "Success")
    assert HEC_CODES[9] == (503, "Server is busy")
    assert {HEC_CODES[c][0] for c in (1, 4)} == {403}
    assert {HEC_CODES[c][0] for c in (2, 3)} == {401}
    assert HEC_CODES[17] == (200, "HEC is healthy")
    assert {c: HEC_CODES[c][0] for c in range(23, 28)} == {23: 503, 24: 200, 25: 200, 26: 429,
                                                           27: 429}


def test_batch_of_concatenated_events_is_stored(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    body = '{"event":{"a":1},"time":1700000000.123,"sourcetype":"x"}\n{"event":"two","index":"security"}'
    r = post(server, body)
    assert r.status_code == 200 and r.json() == {"text": "Success", "code": 0}
    assert [e["event"] for e in app.events] == [{"a": 1}, "two"]
    assert [e["index"] for e in app.events] == ["main", "security"]  # token default, then explicit
    assert app.stats()["events"] == 2


@pytest.mark.parametrize(("auth", "expected"), [
    (None, (401, 2)),
    ("Bearer " + TOKEN, (401, 3)),
    ("Splunk not-a-known-token", (403, 4)),
    ("Splunk disabled-token", (403, 1)),
])
def test_authentication_errors(hec: tuple[SplunkHecApp, MockServer], auth: str | None,
                               expected: tuple[int, int]) -> None:
    _, server = hec
    r = post(server, '{"event":"x"}', token=None, headers={"Authorization": auth} if auth else None)
    assert answer(r) == expected
    assert r.json()["text"] == HEC_CODES[expected[1]][1]


def test_basic_auth_with_token_as_password(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    basic = base64.b64encode(f"anyuser:{TOKEN}".encode()).decode()
    r = post(server, '{"event":"x"}', token=None, headers={"Authorization": f"Basic {basic}"})
    assert answer(r) == (200, 0)


def test_query_string_token_needs_it_enabled(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    r = post(server, '{"event":"x"}', token=None, params={"token": TOKEN})
    assert answer(r) == (400, 16)
    app.allow_query_string_auth = True
    assert answer(post(server, '{"event":"x"}', token=None, params={"token": TOKEN})) == (200, 0)


@pytest.mark.parametrize(("body", "code", "number"), [
    ('{"event":"ok"}{"sourcetype":"x"}', 12, 1),
    ('{"event":"ok"}{"event":"ok"}{"event":"   "}', 13, 2),
    ('{"event":"ok"}{"event":null}', 13, 1),
    ('{"event":"ok"}{"event": "x"', 6, 1),
    ('{"event":"ok"}["not an object"]', 6, 1),
    ('{"event":"ok"}{"event":"x","time":"yesterday"}', 6, 1),
    ('{"event":"ok"}{"event":"x","index":"nope"}', 7, 1),
    ('{"event":"x","fields":{"nested":{"a":1}}}', 15, 0),
])
def test_first_bad_event_is_named_and_the_ones_before_it_are_indexed(
        hec: tuple[SplunkHecApp, MockServer], body: str, code: int, number: int) -> None:
    app, server = hec
    r = post(server, body + '{"event":"after"}')
    assert answer(r) == (400, code)
    assert r.json()["invalid-event-number"] == number
    assert len(app.events) == number  # the prefix was indexed, the bad one and the rest were not
    assert all(e["event"] != "after" for e in app.events)


def test_token_index_allow_list(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    assert answer(post(server, '{"event":"x","index":"main"}', token="sec-only")) == (400, 7)
    assert answer(post(server, '{"event":"x","index":"security"}', token="sec-only")) == (200, 0)


def test_indexed_fields_flat_values_and_arrays_accepted(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    r = post(server, '{"event":"x","fields":{"severity":"high","tags":["a","b"],"n":3}}')
    assert answer(r) == (200, 0)
    assert app.events[0]["fields"]["tags"] == ["a", "b"]


def test_empty_body_is_no_data(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    assert answer(post(server, "  \n")) == (400, 5)


def test_gzip_body_and_bad_gzip(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    r = post(server, gzip.compress(b'{"event":"zipped"}'), headers={"Content-Encoding": "gzip"})
    assert answer(r) == (200, 0) and app.events[-1]["event"] == "zipped"
    r = post(server, b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert answer(r) == (400, 6)


def test_body_limit_applies_to_the_bytes_sent(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    big = ('{"event":"%s"}' % ("x" * 20_000)).encode()
    r = post(server, big)
    assert r.status_code == 413 and b"maximum is 10000" in r.content
    # The same content compressed is under the limit on the wire: accepted.
    r = post(server, gzip.compress(big), headers={"Content-Encoding": "gzip"})
    assert answer(r) == (200, 0)
    assert len(app.events) == 1


def test_busy_is_503_code_9(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    app.busy = True
    r = post(server, '{"event":"x"}')
    assert answer(r) == (503, 9) and r.json()["invalid-event-number"] == 0
    assert app.events == []


@pytest.mark.parametrize(("code", "status", "stored"), [
    (23, 503, 0), (24, 200, 1), (25, 200, 1), (26, 429, 0), (27, 429, 0)])
def test_code_faults_23_to_27(hec: tuple[SplunkHecApp, MockServer], code: int, status: int,
                              stored: int) -> None:
    app, server = hec
    requests.post(server.url + "/_mock/hec", json={"code_faults": [{"code": code}]})
    ch = str(uuid.uuid4())
    r = post(server, '{"event":"x"}', token=ACK_TOKEN, headers={"X-Splunk-Request-Channel": ch})
    assert answer(r) == (status, code) and r.json()["text"] == HEC_CODES[code][1]
    assert len(app.events) == stored
    assert ("ackId" in r.json()) == (stored == 1)  # 24/25 took the data: it has an ackId
    assert answer(post(server, '{"event":"y"}')) == (200, 0)  # one request only


def test_busy_code_fault_takes_a_prefix(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    requests.post(server.url + "/_mock/hec", json={"code_faults": [{"code": 9, "after_events": 2}]})
    r = post(server, '{"event":"a"}{"event":"b"}{"event":"c"}')
    assert answer(r) == (503, 9) and r.json()["invalid-event-number"] == 2
    assert [e["event"] for e in app.events] == ["a", "b"]
    assert answer(post(server, '{"event":"c"}')) == (200, 0)  # one request only


def test_scheduled_faults_answer_like_hec(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    server.faults.add(Fault("status", status=503, retry_after=3))
    r = post(server, '{"event":"x"}')
    assert answer(r) == (503, 9) and r.headers["Retry-After"] == "3"
    server.faults.add(Fault("status", status=500))
    assert answer(post(server, '{"event":"x"}')) == (500, 8)
    server.faults.add(Fault("status", status=429))
    assert answer(post(server, '{"event":"x"}')) == (429, 26)


def test_channel_required_and_validated_with_ack_token(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    assert answer(post(server, '{"event":"x"}', token=ACK_TOKEN)) == (400, 10)
    r = post(server, '{"event":"x"}', token=ACK_TOKEN, headers={"X-Splunk-Request-Channel": "nope"})
    assert answer(r) == (400, 11)
    # A channel as query parameter works too.
    r = post(server, '{"event":"x"}', token=ACK_TOKEN, params={"channel": str(uuid.uuid4())})
    assert r.json() == {"text": "Success", "code": 0, "ackId": 0}


def ack_query(server: MockServer, channel: str, ids: list[int], token: str = ACK_TOKEN
              ) -> requests.Response:
    return post(server, json.dumps({"acks": ids}), token=token, path=ACK,
                headers={"X-Splunk-Request-Channel": channel})


def test_ack_ids_per_channel_true_once(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    ids_a = [post(server, '{"event":"x"}', token=ACK_TOKEN,
                  headers={"X-Splunk-Request-Channel": a}).json()["ackId"] for _ in range(3)]
    id_b = post(server, '{"event":"x"}', token=ACK_TOKEN,
                headers={"X-Splunk-Request-Channel": b}).json()["ackId"]
    assert ids_a == [0, 1, 2] and id_b == 0  # allocated per channel
    r = ack_query(server, a, [0, 2, 7])
    assert r.status_code == 200 and r.json() == {"acks": {"0": True, "2": True, "7": False}}
    assert ack_query(server, a, [0, 1]).json() == {"acks": {"0": False, "1": True}}  # 0 forgotten
    assert ack_query(server, b, [0]).json() == {"acks": {"0": True}}


def test_ack_delay_then_true(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    ch = str(uuid.uuid4())
    app.ack_delay = 0.2
    ack_id = post(server, '{"event":"x"}', token=ACK_TOKEN,
                  headers={"X-Splunk-Request-Channel": ch}).json()["ackId"]
    assert ack_query(server, ch, [ack_id]).json()["acks"][str(ack_id)] is False
    time.sleep(0.25)
    assert ack_query(server, ch, [ack_id]).json()["acks"][str(ack_id)] is True


def test_ack_delay_fault_and_lost_ack_fault(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    ch = str(uuid.uuid4())
    hdr = {"X-Splunk-Request-Channel": ch}
    server.faults.add(Fault("ack_delay", delay=-1, path=EVENT))  # this request's ack is lost
    lost = post(server, '{"event":"x"}', token=ACK_TOKEN, headers=hdr).json()["ackId"]
    fine = post(server, '{"event":"y"}', token=ACK_TOKEN, headers=hdr).json()["ackId"]
    assert ack_query(server, ch, [lost, fine]).json()["acks"] == {str(lost): False, str(fine): True}


def test_lose_acks_simulates_indexer_restart(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    ch = str(uuid.uuid4())
    hdr = {"X-Splunk-Request-Channel": ch}
    app.ack_delay = 60
    ack_id = post(server, '{"event":"x"}{"event":"y"}', token=ACK_TOKEN, headers=hdr).json()["ackId"]
    assert app.stats()["acks_pending"] == 1 and len(app.events) == 2
    r = requests.post(server.url + "/_mock/hec", json={"lose_acks": True})
    assert r.json()["lost_acks"] == 1
    assert app.events == [] and app.stats()["acks_pending"] == 0
    app.ack_delay = 0
    assert ack_query(server, ch, [ack_id]).json()["acks"] == {str(ack_id): False}


def test_restart_starts_ack_ids_again_and_drops_what_was_not_indexed(
        hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    ch = str(uuid.uuid4())
    hdr = {"X-Splunk-Request-Channel": ch}
    assert post(server, '{"event":"indexed"}', token=ACK_TOKEN, headers=hdr).json()["ackId"] == 0
    app.ack_delay = 60
    assert post(server, '{"event":"pending"}', token=ACK_TOKEN, headers=hdr).json()["ackId"] == 1
    r = requests.post(server.url + "/_mock/hec", json={"restart": True})
    assert r.json()["restart_dropped"] == 1
    assert [e["event"] for e in app.events] == ["indexed"]
    app.ack_delay = 0
    assert post(server, '{"event":"new"}', token=ACK_TOKEN, headers=hdr).json()["ackId"] == 0
    assert ack_query(server, ch, [0, 1]).json()["acks"] == {"0": True, "1": False}


def test_ack_query_errors(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    ch = str(uuid.uuid4())
    assert answer(ack_query(server, ch, [0], token=TOKEN)) == (400, 14)  # token without acks
    r = post(server, '{"acks":[0]}', token=ACK_TOKEN, path=ACK)
    assert answer(r) == (400, 10)
    r = post(server, '{"nope":1}', token=ACK_TOKEN, path=ACK, headers={"X-Splunk-Request-Channel": ch})
    assert answer(r) == (400, 6)
    assert ack_query(server, str(uuid.uuid4()), [0, 1]).json() == {"acks": {"0": False, "1": False}}
    app.ack_unavailable = True
    assert answer(ack_query(server, ch, [0])) == (503, 9)


def test_health(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    r = requests.get(server.url + HEALTH)
    assert r.status_code == 200 and r.json() == {"text": "HEC is healthy", "code": 17}
    assert answer(requests.get(server.url + HEALTH + "/1.0",
                               headers={"Authorization": f"Splunk {TOKEN}"})) == (200, 17)
    assert answer(requests.get(server.url + HEALTH,
                               headers={"Authorization": "Splunk unknown"})) == (400, 21)
    assert answer(requests.get(server.url + HEALTH, params={"token": "disabled-token"})) == (400, 22)
    app.queues_full = True
    assert answer(requests.get(server.url + HEALTH)) == (503, 18)
    app.ack_unavailable = True
    assert answer(requests.get(server.url + HEALTH)) == (503, 20)
    app.queues_full = False
    assert answer(requests.get(server.url + HEALTH)) == (503, 19)


def test_token_control_endpoint_upserts(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    requests.post(server.url + "/_mock/hec/tokens", json=[{"value": TOKEN, "enabled": False},
                                                          {"value": "rotated"}])
    assert answer(post(server, '{"event":"x"}')) == (403, 1)
    assert answer(post(server, '{"event":"x"}', token="rotated")) == (200, 0)


def test_unknown_path_and_wrong_method(hec: tuple[SplunkHecApp, MockServer]) -> None:
    _, server = hec
    assert requests.get(server.url + EVENT).status_code == 405
    assert post(server, '{"event":"x"}', path="/services/collector/nope").status_code == 404
    assert answer(post(server, '{"event":"x"}', path="/services/collector")) == (200, 0)


def test_idle_ack_channel_is_cleaned_up_and_its_ack_ids_start_again(
        hec: tuple[SplunkHecApp, MockServer]) -> None:
    """inputs.conf.spec (Splunk 9.0.3) [http]: ``ackIdleCleanup`` "Default: true" removes ACK
    channels idle for ``maxIdleTime`` ("Default: 600"): their pending acks are gone (false), and
    the same GUID then starts a new channel whose ackIds count from 0 again."""
    app, server = hec
    app.max_idle_time = 0.25
    idle, used = str(uuid.uuid4()), str(uuid.uuid4())
    app.ack_delay = 60  # not indexed yet: the acks stay pending
    for ch in (idle, idle, used):
        post(server, '{"event":"x"}', token=ACK_TOKEN, headers={"X-Splunk-Request-Channel": ch})
    for _ in range(4):  # ``used`` is queried (so not idle); ``idle`` sees nothing
        time.sleep(0.1)
        assert ack_query(server, used, [0]).json() == {"acks": {"0": False}}
    app.ack_delay = 0
    assert ack_query(server, idle, [0, 1]).json() == {"acks": {"0": False, "1": False}}
    assert post(server, '{"event":"y"}', token=ACK_TOKEN,
                headers={"X-Splunk-Request-Channel": idle}).json()["ackId"] == 0
    assert post(server, '{"event":"y"}', token=ACK_TOKEN,
                headers={"X-Splunk-Request-Channel": used}).json()["ackId"] == 1
    assert len(app.events) == 5  # the cleanup forgets ack state, not data


def test_idle_ack_channel_cleanup_can_be_turned_off(hec: tuple[SplunkHecApp, MockServer]) -> None:
    app, server = hec
    app.max_idle_time = 0.1
    app.ack_idle_cleanup = False
    ch = str(uuid.uuid4())
    hdr = {"X-Splunk-Request-Channel": ch}
    assert post(server, '{"event":"a"}', token=ACK_TOKEN, headers=hdr).json()["ackId"] == 0
    time.sleep(0.2)
    assert ack_query(server, ch, [0]).json() == {"acks": {"0": True}}
    assert post(server, '{"event":"b"}', token=ACK_TOKEN, headers=hdr).json()["ackId"] == 1


def test_an_event_over_max_event_size_is_a_parsing_error(hec: tuple[SplunkHecApp, MockServer]) -> None:
    """inputs.conf.spec [http] ``maxEventSize`` "The maximum size of a single HEC (HTTP Event
    Collector) event. HEC disregards and triggers a parsing error for events whose size is greater
    than 'maxEventSize'. Default: 5MB"; seen as 400 code 6 naming the event
    (signalfx/splunk-otel-collector-chart#696). Applies to the decoded event, whatever the body's
    compression."""
    app, server = hec
    assert app.max_event_size == 5 * 1024 * 1024
    app.max_event_size = 200
    big = json.dumps({"event": "x" * 300})
    r = post(server, gzip.compress(('{"event":"ok"}' + big + '{"event":"after"}').encode()),
             headers={"Content-Encoding": "gzip"})
    assert answer(r) == (400, 6) and r.json()["invalid-event-number"] == 1
    assert [e["event"] for e in app.events] == ["ok"]
    assert answer(post(server, json.dumps({"event": "x" * 150}))) == (200, 0)
