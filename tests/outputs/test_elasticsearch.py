"""The Elasticsearch output against the Elasticsearch mock, in-process: idempotent create with the
event id, exact per-item classification, whole-request statuses, auth modes and Cloud ID, bootstrap,
health, failover, and credentials that never leak."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import requests

from agent.config_types import Duration, Secret
from outputs.base import DeliveryItem, Status
from outputs.elasticsearch import (
    CLAWDSTRIKE_FIELDS,
    ECS_FIELDS,
    ElasticsearchOutput,
    ElasticsearchOutputConfig,
    api_key_header,
    classify_items,
    decode_cloud_id,
    ilm_policy_body,
    index_template_body,
)
from outputs.mocks.elasticsearch import ElasticsearchMock, ItemFault
from outputs.mocks.server import Fault, MockServer
from tests.certs import TlsFiles, tls_files  # noqa: F401 - the fixture
from tests.outputs.proxy import Proxy
from tests.shared_paths import FIXTURES, SCHEMAS
from transforms.config import FieldsConfig

DS = "logs-clawdstrike.security-default"


def make_event(i: int, **extra: Any) -> dict[str, Any]:
    return {"schema_version": "2.0.0", "event_id": str(uuid.UUID(int=i + 1)),
            "event_type": "guard_block", "event_category": "file",
            "timestamp": f"2026-11-{(i % 28) + 1:02d}T08:00:00.123Z", "outcome": "failure",
            "action": "file_access", "n": i, **extra}


def make_items(n: int, start: int = 0, out: ElasticsearchOutput | None = None, **extra: Any
               ) -> list[DeliveryItem]:
    items = []
    for i in range(start, start + n):
        ev = make_event(i, **extra)
        item = DeliveryItem(i, ev, orjson.dumps(ev), uuid.UUID(ev["event_id"]).bytes)
        if out is not None:
            item.data = out.encode(item)
        items.append(item)
    return items


@pytest.fixture
def mock() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock()
    assert app.stats()["spec_checked"]  # 'no spec violations' below means checked, not skipped
    with MockServer(app) as server:
        yield app, server


def output(url: str | list[str], **kw: Any) -> ElasticsearchOutput:
    cfg = ElasticsearchOutputConfig(hosts=[url] if isinstance(url, str) else url, **kw)
    cfg.validate()
    out = ElasticsearchOutput("es", cfg)
    out.open()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- config and encoding


def test_config_validation() -> None:
    def check(**kw: Any) -> None:
        ElasticsearchOutputConfig(**kw).validate()

    check(hosts=["https://es:9200"])
    for bad in ({}, {"hosts": ["https://es"], "cloud_id": "x:eA=="},
                {"hosts": ["https://elastic:pw@es:9200"]}, {"hosts": ["es:9200"]},
                {"hosts": ["https://es"], "api_key": Secret("a:b"), "bearer_token": Secret("t")},
                {"hosts": ["https://es"], "username": "u"},
                {"hosts": ["https://es"], "index": "Upper"},
                {"hosts": ["https://es"], "data_stream_namespace": "a b"}):
        with pytest.raises(ValueError):
            check(**bad)



@pytest.mark.parametrize(("kw", "message"), [
    ({"data_stream_namespace": "team-a"}, "must not contain '-'"),
    ({"data_stream_dataset": "clawd-strike"}, "must not contain '-'"),
    ({"data_stream_dataset": "d" * 101}, "longer than 100"),
    ({"data_stream_namespace": ""}, "must not be empty"),
    ({"index": "\u00c4rger"}, "must be lowercase"),  # upper case beyond ASCII
    ({"index": "."}, "not . or .."),
    ({"index": ".."}, "not . or .."),
    ({"index": "a" * 256}, "longer than 255 bytes"),
    ({"index": "\u00e4" * 128}, "longer than 255 bytes"),  # 256 bytes in UTF-8
])
def test_names_elasticsearch_or_the_data_stream_scheme_refuse_fail_at_load(kw: dict[str, str],
                                                                            message: str) -> None:
    """Each of these was accepted, and every event then came back a per-item 400
    (``invalid_index_name_exception``) into the DLQ; a ``-`` in a dataset or namespace breaks the
    ``logs-<dataset>-<namespace>`` split (ECS 9.4 ``data_stream.*``: "Must not contain `-`", "No
    longer than 100 characters"; the create-index API's name rules)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        ElasticsearchOutputConfig(hosts=["https://es"], **kw).validate()


def test_names_within_the_rules_pass_and_routes_are_checked_alike() -> None:
    cfg = ElasticsearchOutputConfig(hosts=["https://es"], data_stream_dataset="d" * 100,
                                    data_stream_namespace="prod_eu.1")
    cfg.validate()
    ElasticsearchOutputConfig(hosts=["https://es"], index=".hidden-%Y.%m.%d").validate()
    ElasticsearchOutputConfig(hosts=["https://es"], index="a" * 255).validate()
    cfg.check_route({"namespace": "team_a"})
    with pytest.raises(ValueError, match="must not contain '-'"):
        cfg.check_route({"namespace": "team-a"})
    cfg.check_route({"index": "team-a"})  # a classic index may hold '-'
    with pytest.raises(ValueError, match="must be lowercase"):
        cfg.check_route({"index": "Team"})

def test_cloud_id_decoding() -> None:
    # The example Cloud ID of Elastic's Beats docs ("Configure the output for Elastic Cloud").
    cid = ("staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRj"
           "NmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==")
    assert decode_cloud_id(cid) == "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"
    with_port = base64.b64encode(b"eastus2.azure.elastic-cloud.com:9243$59ef636c$a8b109c0").decode()
    assert decode_cloud_id(with_port) == "https://59ef636c.eastus2.azure.elastic-cloud.com:9243"
    for bad in ("label:!!!", base64.b64encode(b"only-a-host").decode(),
                "x:" + base64.b64encode(b"$a$b").decode()):
        with pytest.raises(ValueError):
            decode_cloud_id(bad)
    out = ElasticsearchOutput("es", ElasticsearchOutputConfig(cloud_id=cid))
    assert out.hosts == ["https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"]


def test_api_key_header_accepts_encoded_and_id_colon_key() -> None:
    encoded = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
    assert api_key_header("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw") == f"ApiKey {encoded}"
    assert api_key_header(encoded) == f"ApiKey {encoded}"


def test_encode_is_a_create_action_with_the_event_id_and_the_document() -> None:
    out = ElasticsearchOutput("es", ElasticsearchOutputConfig(hosts=["http://x"]))
    (item,) = make_items(1)
    data = out.encode(item)
    action, source, end = data.split(b"\n")
    assert end == b""
    assert orjson.loads(action) == {"create": {"_index": DS, "_id": item.event["event_id"]}}
    doc = orjson.loads(source)
    assert doc["@timestamp"] == item.event["timestamp"] and doc["n"] == 0, "canonical + @timestamp"


def test_a_nested_at_timestamp_does_not_hide_a_missing_top_level_one(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """format = canonical keeps the source's metadata verbatim: an "@timestamp" key inside it is not
    the top-level field a data stream requires, so the event's timestamp is still added (else the
    data stream rejects the event with 400 and it lands in the DLQ). A top-level one that is not the
    first key is found and not duplicated."""
    app, server = mock
    out = output(server.url, format="canonical")
    nested, = make_items(1, metadata={"@timestamp": "2020-01-01T00:00:00Z", "k": 1})
    nested.data = out.encode(nested)
    doc = orjson.loads(nested.data.split(b"\n")[1])
    assert doc["@timestamp"] == nested.event["timestamp"]
    assert doc["metadata"] == {"@timestamp": "2020-01-01T00:00:00Z", "k": 1}
    assert out.send([nested]).status is Status.DELIVERED
    assert app.count(DS) == 1

    class Unsorted:
        def render(self, event: dict[str, Any], body: bytes) -> bytes:
            return orjson.dumps({"n": event["n"], "@timestamp": "2026-01-01T00:00:00Z"})

    out.pipeline = Unsorted()  # type: ignore[attr-defined]
    later, = make_items(1, start=1)
    source = out.encode(later).split(b"\n")[1]
    assert source == b'{"n":1,"@timestamp":"2026-01-01T00:00:00Z"}'


def test_the_id_comes_from_the_event_or_the_spool_s_raw_uuid_bytes() -> None:
    out = ElasticsearchOutput("es", ElasticsearchOutputConfig(hosts=["http://x"]))
    (item,) = make_items(1, start=41)
    want = item.event["event_id"]
    body_only = DeliveryItem(1, {}, item.body, item.event_id)  # events not decoded by the drain
    for it in (item, body_only):
        assert orjson.loads(out.encode(it).split(b"\n")[0])["create"]["_id"] == want


def test_encode_uses_the_pipeline_document_as_is() -> None:
    class Ecs:
        def render(self, event: dict[str, Any], body: bytes) -> bytes:
            return orjson.dumps({"@timestamp": event["timestamp"], "event": {"id": event["event_id"]}})

    out = ElasticsearchOutput("es", ElasticsearchOutputConfig(hosts=["http://x"], ingest_pipeline="p"))
    out.pipeline = Ecs()  # type: ignore[attr-defined]
    (item,) = make_items(1)
    action, source, _ = out.encode(item).split(b"\n")
    assert orjson.loads(action)["create"]["pipeline"] == "p"
    assert orjson.loads(source) == {"@timestamp": item.event["timestamp"],
                                    "event": {"id": item.event["event_id"]}}


def test_routes_and_dated_indices() -> None:
    out = ElasticsearchOutput("es", ElasticsearchOutputConfig(hosts=["http://x"]))
    a, b = make_items(2)
    a.route = {"index": "high-sev"}
    b.route = {"namespace": "prod"}
    assert orjson.loads(out.encode(a).split(b"\n")[0])["create"]["_index"] == "high-sev"
    assert orjson.loads(out.encode(b).split(b"\n")[0])["create"]["_index"] == \
        "logs-clawdstrike.security-prod"
    dated = ElasticsearchOutput("es", ElasticsearchOutputConfig(hosts=["http://x"],
                                                                index="clawd-%Y.%m.%d"))
    (c,) = make_items(1, start=4)
    assert orjson.loads(dated.encode(c).split(b"\n")[0])["create"]["_index"] == "clawd-2026.11.05"


# ---------------------------------------------------------------------------- delivery


def test_delivers_with_deterministic_ids_and_a_retry_never_duplicates(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    out = output(server.url)
    batch = make_items(50, out=out)
    assert out.send(batch).status is Status.DELIVERED
    assert set(app.docs(DS)) == {it.event["event_id"] for it in batch}
    # The response was "lost": the framework sends the same batch again.
    assert out.send(batch).status is Status.DELIVERED
    assert app.count(DS) == 50
    assert app.stats()["conflicts"] == 50
    assert app.stats()["spec_violations"] == []


def test_the_bulk_request_is_the_exact_concatenation_of_the_encoded_items(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    out = output(server.url, compression="none")
    batch = make_items(7, out=out)
    seen: list[int] = []
    original = app.handle

    def spy(req: Any) -> Any:
        if req.path == "/_bulk":
            seen.append(len(req.body))
            assert req.headers["Content-Type"] == "application/x-ndjson"
        return original(req)

    app.handle = spy  # type: ignore[method-assign]
    assert out.send(batch).status is Status.DELIVERED
    assert seen == [sum(len(it.data) for it in batch)]


def test_gzip_is_sent_by_default(mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    out = output(server.url)
    batch = make_items(20, out=out)
    assert out.send(batch).status is Status.DELIVERED
    assert app.stats()["bytes_decoded"] == sum(len(it.data) for it in batch)
    assert server.stats()["requests_by_status"] == {"200": 1}


def test_partial_failure_counts_exactly(mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    out = output(server.url)
    batch = make_items(20, out=out)
    bad = {3, 11, 17}
    for i in bad:
        app.add_item_fault(ItemFault(field="n", value=i, status=400, type="mapper_parsing_exception",
                                     reason=f"failed to parse field [n] of doc {i}"))
    app.add_item_fault(ItemFault(status=429, type="es_rejected_execution_exception", count=2, after=5))
    app.add_item_fault(ItemFault(status=503, type="unavailable_shards_exception", count=1, after=0))
    outcome = out.send(batch)
    assert outcome.status is Status.PARTIAL
    assert sorted(it.seq for it in outcome.failed) == sorted(bad)
    # The 429 fault is checked first: it lets 5 actions pass (0, 1, 2, 4, 5; 3 was rejected before)
    # and hits 6 and 7; item 0, which it let pass, takes the 503.
    assert sorted(it.seq for it in outcome.retry_items) == [0, 6, 7]
    assert outcome.throttled is True
    assert "mapper_parsing_exception" in outcome.reason and "failed to parse field [n]" in outcome.reason
    assert "14 indexed" in outcome.reason and "3 rejected" in outcome.reason and "3 to retry" in \
        outcome.reason
    assert "mapper_parsing_exception" in outcome.excerpt
    assert app.count(DS) == 14
    again = out.send(outcome.retry_items)
    assert again.status is Status.DELIVERED
    assert app.count(DS) == 17


def test_an_item_403_is_retried_only_for_a_cluster_block(mock: tuple[ElasticsearchMock, MockServer]
                                                        ) -> None:
    """A per-item 403 cluster_block_exception (an index write block an operator lifts) is retried; a
    per-item 403 security_exception (the key may not write to a routed index) cannot change by
    retrying and goes to the DLQ with Elasticsearch's reason, instead of stalling the output."""
    app, server = mock
    out = output(server.url)
    batch = make_items(4)
    batch[1].route = {"index": "restricted-alerts"}
    batch[2].route = {"index": "blocked-alerts"}
    for item in batch:
        item.data = out.encode(item)
    app.add_item_fault(ItemFault(index="restricted-alerts", status=403, type="security_exception",
                                 reason="action [indices:data/write/bulk[s]] is unauthorized for API "
                                        "key id [k1] on indices [restricted-alerts]"))
    app.add_item_fault(ItemFault(index="blocked-alerts", status=403, type="cluster_block_exception",
                                 count=1, reason="index [blocked-alerts] blocked by: "
                                                 "[FORBIDDEN/8/index write (api)];"))
    outcome = out.send(batch)
    assert outcome.status is Status.PARTIAL
    assert [it.seq for it in outcome.failed] == [1]
    assert [it.seq for it in outcome.retry_items] == [2]
    assert "security_exception: action [indices:data/write/bulk[s]] is unauthorized" in outcome.reason
    assert out.send(outcome.retry_items).status is Status.DELIVERED  # the block was lifted
    assert app.count("blocked-alerts") == 1 and app.count(DS) == 2


def test_an_item_403_on_the_outputs_own_target_pauses_instead_of_filling_the_dlq(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """A key that lost its write privilege on the output's own data stream gets a 200 bulk answer with
    a 403 security_exception on every item: every later event would fail the same way, so the batch
    is retried as an authentication failure (breaker opened, credentials re-read), not sent item by
    item to the DLQ while the breaker sees successes."""
    app, server = mock
    out = output(server.url)
    batch = make_items(3, out=out)
    app.add_item_fault(ItemFault(index=DS, status=403, type="security_exception",
                                 reason=f"action [indices:data/write/bulk[s]] is unauthorized for API "
                                        f"key id [k1] on indices [{DS}]"))
    outcome = out.send(batch)
    assert outcome.status is Status.RETRY and outcome.auth_failure
    assert outcome.failed == [] and DS in outcome.reason and "security_exception" in outcome.reason
    app.item_faults.clear()  # the role is given back
    assert out.send(batch).status is Status.DELIVERED and app.count(DS) == 3


def test_bulk_answers_are_filtered_and_a_rejection_is_named_by_its_position(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """The _bulk request asks for filter_path (what classification reads: errors, status, error,
    failure_store); the filtered answer repeats no _id, so the DLQ excerpt names the rejected event
    by its place in the batch."""
    app, server = mock
    out = output(server.url)
    batch = make_items(6, out=out)
    app.add_item_fault(ItemFault(field="n", value=4, status=400, type="mapper_parsing_exception",
                                 reason="failed to parse field [n]"))
    queries: list[dict[str, str]] = []
    answers: list[bytes] = []
    original = app.handle

    def spy(req: Any) -> Any:
        resp = original(req)
        if req.path == "/_bulk":
            queries.append(dict(req.query))
            answers.append(resp.body)
        return resp

    app.handle = spy  # type: ignore[method-assign]
    outcome = out.send(batch)
    assert queries == [{"filter_path": "errors,items.*.error,items.*.status,items.*.failure_store"}]
    items = orjson.loads(answers[0])["items"]
    assert items[0] == {"create": {"status": 201}}  # nothing but what was asked for
    # a data stream without a failure store says so on a rejected item (Elasticsearch 9.x)
    assert items[4]["create"] == {"status": 400, "failure_store": "not_enabled",
                                  "error": items[4]["create"]["error"]}
    assert outcome.status is Status.PARTIAL
    assert [it.seq for it in outcome.failed] == [4]
    assert orjson.loads(outcome.excerpt)[0]["_id"] == batch[4].event["event_id"]
    assert app.count(DS) == 5


@pytest.mark.parametrize("packed", [False, True], ids=["items", "packed"])
def test_events_redirected_to_a_failure_store_are_counted_and_named(
        packed: bool, caplog: pytest.LogCaptureFixture) -> None:
    """With a data stream's failure store enabled, Elasticsearch stores a document that fails its
    mapping or ingest pipeline there and answers a success item with failure_store: used, so the
    whole answer says errors: false. Those events are delivered, but not into the data stream: the
    outcome's reason, a warning and the output's counter say how many went to which failure store."""
    prod = "logs-clawdstrike.security-prod"
    app = ElasticsearchMock(failure_store=["logs-clawdstrike.security-*"])
    with MockServer(app) as server:
        out = output(server.url)
        batch = make_items(5)
        batch[4].route = {"namespace": "prod"}
        for item in batch:
            item.data = out.encode(item)
        for n in (1, 4):
            app.add_item_fault(ItemFault(field="n", value=n, status=400, type="document_parsing_exception",
                                         reason=f"failed to parse field [n] of doc {n}"))
        answers: list[bytes] = []
        original = app.handle

        def spy(req: Any) -> Any:
            resp = original(req)
            answers.append(resp.body)
            return resp

        app.handle = spy  # type: ignore[method-assign]
        body = None
        if packed:  # as the drain sends a batch: the body built once, the items' bytes dropped
            body = out.request_body(batch)
            for item in batch:
                item.data = b""
        with caplog.at_level(logging.WARNING):
            outcome = out.send(batch, body)
        assert orjson.loads(answers[0])["errors"] is False
        assert outcome.status is Status.DELIVERED
        assert outcome.reason == (f"bulk: 3 indexed, 0 already indexed; 1 event went to the failure "
                                  f"store of {DS}; 1 event went to the failure store of {prod} (stored "
                                  "as failed documents, not in the data stream)")
        assert out.failure_store_events == {DS: 1, prod: 1}
        # exported per output and data stream (agent.metrics), and so in `status` too
        from agent.metrics import _destination_counters

        family = _destination_counters({"es": SimpleNamespace(output=out)})["events_failure_store"]
        assert family.name == "clawd_agent_output_events_failure_store"
        assert {(x.labels["output"], x.labels["data_stream"]): x.value for x in family.samples
                if x.name.endswith("_total")} == {("es", DS): 1, ("es", prod): 1}
        assert f"1 event went to the failure store of {DS}" in caplog.text
        assert app.count(DS) == 3 and app.count(prod) == 0
        (failure,) = app.docs(f"{DS}::failures").values()
        assert failure["document"]["id"] == batch[1].event["event_id"]
        assert failure["error"]["type"] == "document_parsing_exception"
        assert app.stats()["spec_violations"] == []


def test_errors_false_fast_path_does_not_walk_items(mock: tuple[ElasticsearchMock, MockServer],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, server = mock
    out = output(server.url)
    import outputs.elasticsearch as mod

    def boom(*a: Any) -> Any:
        raise AssertionError("items walked")

    class NoLoads:  # the output's orjson, except that parsing the response body is an error
        loads = staticmethod(boom)

        def __getattr__(self, name: str) -> Any:
            return getattr(orjson, name)

    batch = make_items(5, out=out)
    monkeypatch.setattr(mod, "classify_items", boom)
    monkeypatch.setattr(mod, "orjson", NoLoads())  # without the fast path the body would be parsed
    assert out.send(batch).status is Status.DELIVERED


def test_413_splits(mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app = ElasticsearchMock(max_content_length=3000)
    with MockServer(app) as server:
        out = output(server.url)
        batch = make_items(30, out=out)
        outcome = out.send(batch)
        assert outcome.status is Status.SPLIT
        assert out.send(batch[:2]).status is Status.DELIVERED


def test_whole_request_429_is_throttled_with_retry_after(mock: tuple[ElasticsearchMock, MockServer]
                                                         ) -> None:
    _, server = mock
    out = output(server.url)
    server.faults.add(Fault("status", status=429, retry_after=7))
    outcome = out.send(make_items(3, out=out))
    assert outcome.status is Status.RETRY and outcome.throttled and outcome.retry_after == 7
    assert "es_rejected_execution_exception" in outcome.reason
    server.faults.add(Fault("status", status=503))
    outcome = out.send(make_items(3, out=out))
    assert outcome.status is Status.RETRY and not outcome.throttled


def test_a_200_without_a_bulk_body_is_retried(mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    from outputs.mocks.server import MockResponse

    app.handle = lambda req: MockResponse(200, b"<html>proxy</html>", {})  # type: ignore[method-assign]
    outcome = output(server.url).send(make_items(2))
    assert outcome.status is Status.RETRY and "without a bulk response" in outcome.reason



@pytest.mark.parametrize(("status", "body"), [
    (202, b'{"errors":false,"items":[]}'),
    (204, b""),
    (207, b"<html>multi-status</html>"),
])
def test_a_2xx_other_than_200_is_retried_not_delivered(mock: tuple[ElasticsearchMock, MockServer],
                                                       status: int, body: bytes) -> None:
    """``_bulk`` answers 200 only; another 2xx (a gateway in front) was counted delivered, so the
    cursor passed events that were indexed nowhere."""
    app, server = mock
    from outputs.mocks.server import MockResponse

    app.handle = lambda req: MockResponse(status, body, {})  # type: ignore[method-assign]
    outcome = output(server.url).send(make_items(2))
    assert outcome.status is Status.RETRY, outcome
    assert f"HTTP {status} is not Elasticsearch's bulk answer" in outcome.reason


# ---------------------------------------------------------------------------- auth

API_ID, API_SECRET = "CANARYid1", "CANARY-api-secret-8f1e"
PASSWORD = "CANARY-password-77aa"
TOKEN = "CANARY-bearer-token-91bc"


@pytest.fixture
def secured() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock(api_keys=[f"{API_ID}:{API_SECRET}"], users={"shipper": PASSWORD},
                            bearer_tokens=[TOKEN])
    with MockServer(app) as server:
        yield app, server


@pytest.mark.parametrize("auth", [
    {"api_key": Secret(f"{API_ID}:{API_SECRET}")},
    {"api_key": Secret(base64.b64encode(f"{API_ID}:{API_SECRET}".encode()).decode())},
    {"username": "shipper", "password": Secret(PASSWORD)},
    {"bearer_token": Secret(TOKEN)},
])
def test_auth_modes(secured: tuple[ElasticsearchMock, MockServer], auth: dict[str, Any]) -> None:
    app, server = secured
    out = output(server.url, **auth)
    assert out.send(make_items(3, out=out)).status is Status.DELIVERED
    assert app.count(DS) == 3


def test_refused_credentials_are_an_auth_failure_and_a_rotated_file_is_picked_up(
        secured: tuple[ElasticsearchMock, MockServer], tmp_path: Any) -> None:
    app, server = secured
    key_file = tmp_path / "key"
    key_file.write_text(f"{API_ID}:wrong-secret")
    out = output(server.url, api_key=Secret.parse(f"file:{key_file}"))
    batch = make_items(2, out=out)
    outcome = out.send(batch)
    assert outcome.status is Status.RETRY and outcome.auth_failure
    key_file.write_text(f"{API_ID}:{API_SECRET}")
    out.refresh_credentials()
    assert out.send(batch).status is Status.DELIVERED
    assert app.count(DS) == 2 and app.stats()["auth_failures"] == 1


def test_canary_credentials_never_appear_in_reasons_excerpts_or_logs(
        secured: tuple[ElasticsearchMock, MockServer], caplog: pytest.LogCaptureFixture) -> None:
    app, server = secured
    caplog.set_level(logging.DEBUG)
    out = output(server.url, api_key=Secret(f"{API_ID}:{API_SECRET}"), bootstrap=True)
    encoded = base64.b64encode(f"{API_ID}:{API_SECRET}".encode()).decode()
    # A service that echoes credentials in per-item and whole-request errors.
    app.add_item_fault(ItemFault(status=400, type="mapper_parsing_exception", count=1,
                                 reason=f"bad doc; request had Authorization: ApiKey {encoded} "
                                        f"and secret {API_SECRET}"))
    outcomes = [out.send(make_items(3, out=out))]
    from outputs.mocks.server import MockResponse

    echo = MockResponse.json(
        400, {"error": {"type": "x", "reason": f"echo {API_SECRET} ApiKey {encoded}"}, "status": 400})
    # (the policy is there: the template's PUT goes ahead after the policy's failed, and echoes too)
    app.handle = lambda req: (MockResponse.json(200, {})  # type: ignore[method-assign]
                              if req.method == "GET" else echo)
    outcomes.append(out.send(make_items(1, out=out)))
    warnings = out._bootstrap()
    assert len(warnings) == 2 and all("echo" in w for w in warnings)
    dead = output(f"http://127.0.0.1:{free_port()}", api_key=Secret(f"{API_ID}:{API_SECRET}"))
    outcomes.append(dead.send(make_items(1, out=dead)))
    assert dead.healthcheck()[0] is False
    assert [o.status for o in outcomes] == [Status.PARTIAL, Status.PERMANENT, Status.RETRY]
    text = " ".join(f"{o.reason} {o.excerpt}" for o in outcomes) + caplog.text
    text += " ".join(warnings) + repr(out.config) + str(out.config.api_key)
    assert "CANARY-api-secret" not in text and encoded not in text
    assert "echo" in text  # the messages themselves did arrive


def test_secrets_include_the_secret_half_of_every_basic_or_apikey_value() -> None:
    """Our own credential and one given as a plain header (a proxy's Basic auth) alike."""
    proxy_auth = "Basic " + base64.b64encode(b"gw-user:CANARY-gw-pass").decode()
    out = output("http://127.0.0.1:9", username="shipper", password=Secret(PASSWORD),
                 headers={"Proxy-Authorization": Secret(proxy_auth)})
    secrets = out.secrets()
    assert PASSWORD in secrets and "CANARY-gw-pass" in secrets and proxy_auth in secrets
    assert base64.b64encode(f"shipper:{PASSWORD}".encode()).decode() in secrets



def test_an_error_type_echoing_a_credential_is_masked_in_the_reason() -> None:
    """The reason listed each error's ``type`` as the destination wrote it, while its ``reason``
    was masked: a server echoing a credential there leaked it into the DLQ, status and logs."""
    items = make_items(2)
    answer = [{"create": {"status": 400, "error": {"type": f"echo_{API_SECRET}", "reason": "x"}}},
              {"create": {"status": 400, "error": {"type": "mapper_parsing_exception",
                                                   "reason": f"token={API_SECRET}"}}}]
    outcome = classify_items(items, answer, [API_SECRET])
    assert len(outcome.failed) == 2
    assert API_SECRET not in outcome.reason + outcome.excerpt and "mapper_parsing_exception" in outcome.reason

@pytest.mark.parametrize("key", ["api_key", "password", "bearer_token"])
def test_secrets_include_each_env_variable_expanded_into_a_credential(key: str) -> None:
    """A destination may echo a variable's value alone (the key half of "id:${KEY}")."""
    secret = Secret.parse("prefix-${ES_CANARY}", env={"ES_CANARY": "CANARY-env-part"})
    extra = {"username": "shipper"} if key == "password" else {}
    out = output("http://127.0.0.1:9", **{key: secret}, **extra)
    assert "CANARY-env-part" in out.secrets()


# ---------------------------------------------------------------------------- bootstrap and health


def test_bootstrap_installs_template_and_policy_idempotently(mock: tuple[ElasticsearchMock, MockServer]
                                                             ) -> None:
    app, server = mock
    out = output(server.url, bootstrap=True)
    assert out.bootstrap_warnings == []
    assert app.stats()["templates"] == ["clawdstrike-security"]
    assert app.stats()["ilm_policies"] == ["clawdstrike-security"]
    template = app.templates["clawdstrike-security"]
    assert template["index_patterns"] == ["logs-clawdstrike.security-*"] and "data_stream" in template
    assert template["priority"] > 500
    props = template["template"]["mappings"]["properties"]
    assert props["clawdstrike"]["properties"]["metadata"] == {"type": "keyword", "ignore_above": 8191}
    before = json.dumps([app.templates, app.ilm_policies], sort_keys=True)
    output(server.url, bootstrap=True)
    assert json.dumps([app.templates, app.ilm_policies], sort_keys=True) == before
    # The template's mappings now apply: an ip field refuses a host name, per item.
    batch = make_items(2, out=out)
    batch[1] = make_items(1, start=1, out=out, destination={"ip": "example.com"})[0]
    outcome = out.send(batch)
    assert outcome.status is Status.PARTIAL and [it.seq for it in outcome.failed] == [1]
    assert "destination.ip" in outcome.reason


def test_bootstrap_of_a_rollover_alias_creates_the_first_index_once(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    out = output(server.url, bootstrap=True, index="clawd-events")
    assert out.bootstrap_warnings == []
    assert app.aliases == {"clawd-events": "clawd-events-000001"}
    assert app.templates["clawdstrike-security"]["template"]["settings"][
        "index.lifecycle.rollover_alias"] == "clawd-events"
    assert output(server.url, bootstrap=True, index="clawd-events").bootstrap_warnings == []
    assert out.send(make_items(4, out=out)).status is Status.DELIVERED
    assert app.count("clawd-events-000001") == 4


def ilm_steps(server: MockServer, target: str) -> dict[str, str]:
    """Index -> ILM step (``step_info`` reason when in ERROR), from the mock's ``_ilm/explain``."""
    states = requests.get(f"{server.url}/{target}/_ilm/explain").json()["indices"]
    return {name: st.get("step_info", {}).get("reason") or st.get("step", "unmanaged")
            for name, st in states.items()}


def test_bootstrap_of_a_dated_index_installs_a_policy_ilm_can_run(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """A dated index has no rollover alias, so its policy must not roll over: ILM would stop each
    daily index in the hot phase (ERROR: no index.lifecycle.rollover_alias) and never delete it.
    With the default ilm_policy the dated policy has its own name, so the rollover policy a data
    stream output of the same cluster installs under the default name is left alone."""
    app, server = mock
    retention = Duration(30 * 86400)
    streams = output(server.url, bootstrap=True, ilm_delete_after=retention)
    dated = output(server.url, bootstrap=True, index="clawd-%Y.%m.%d", template_name="clawd-dated",
                   ilm_delete_after=retention)
    assert streams.bootstrap_warnings == [] and dated.bootstrap_warnings == []
    assert "rollover" in app.ilm_policies["clawdstrike-security"]["phases"]["hot"]["actions"]
    policy = app.ilm_policies["clawdstrike-security-dated"]["phases"]
    assert "rollover" not in policy["hot"]["actions"]
    assert policy["delete"] == {"min_age": "2592000s", "actions": {"delete": {}}}
    assert app.templates["clawd-dated"]["template"]["settings"]["index.lifecycle.name"] == \
        "clawdstrike-security-dated"
    for out in (streams, dated):
        assert out.send(make_items(3, out=out)).status is Status.DELIVERED
    assert ilm_steps(server, "clawd-*") == {f"clawd-2026.11.0{d}": "complete" for d in (1, 2, 3)}
    assert set(ilm_steps(server, DS).values()) == {"check-rollover-ready"}


def test_an_explicit_ilm_policy_name_is_kept_for_a_dated_index() -> None:
    cfg = ElasticsearchOutputConfig(hosts=["http://x:9200"], index="clawd-%Y.%m.%d", ilm_policy="mine")
    assert index_template_body(cfg)["template"]["settings"]["index.lifecycle.name"] == "mine"
    assert "rollover" not in ilm_policy_body(cfg)["policy"]["phases"]["hot"]["actions"]
    alias = ElasticsearchOutputConfig(hosts=["http://x:9200"], index="clawd-events")
    assert index_template_body(alias)["template"]["settings"]["index.lifecycle.name"] == \
        "clawdstrike-security"
    assert "rollover" in ilm_policy_body(alias)["policy"]["phases"]["hot"]["actions"]


def test_bootstrap_without_privileges_warns_and_delivery_continues(
        caplog: pytest.LogCaptureFixture) -> None:
    app = ElasticsearchMock(users={"ingest": PASSWORD}, ingest_only=["ingest"])
    with MockServer(app) as server:
        with caplog.at_level(logging.WARNING):
            out = output(server.url, bootstrap=True, username="ingest", password=Secret(PASSWORD))
        policy, template = out.bootstrap_warnings
        assert "ILM policy: HTTP 403" in policy and "privilege" in policy
        assert "index template not put" in template  # it would name the policy that is not there
        assert "delivery continues" in caplog.text
        assert app.stats()["templates"] == []
        assert out.send(make_items(2, out=out)).status is Status.DELIVERED



def test_a_template_never_names_an_ilm_policy_that_is_not_there() -> None:
    """A credential that may manage templates but not ILM: the policy's PUT is refused (403) and only
    warned about, and the template used to go in anyway naming it. Its indices then sit in ILM's
    ERROR step ("policy [x] does not exist"), never rolled over nor deleted, and at priority 501
    it takes away the built-in logs lifecycle they get without the bootstrap. A policy already
    there (an operator's) is used."""
    app = ElasticsearchMock()
    with MockServer(app) as server:
        server.faults.add(Fault("status", status=403, path="/_ilm/", count=-1))
        out = output(server.url, bootstrap=True)
        assert app.stats()["templates"] == [] and app.stats()["ilm_policies"] == []
        assert any("index template not put" in w for w in out.bootstrap_warnings)
        assert out.send(make_items(2, out=out)).status is Status.DELIVERED  # the built-in template
        server.faults.clear()
        app.ilm_policies["clawdstrike-security"] = ilm_policy_body(out.config)["policy"]
        from outputs.mocks.server import MockResponse

        handle = app.handle
        app.handle = lambda req: (MockResponse.json(403, {"status": 403})  # type: ignore[method-assign]
                                  if req.method == "PUT" and req.path.startswith("/_ilm/")
                                  else handle(req))
        again = output(server.url, bootstrap=True)
        assert len(again.bootstrap_warnings) == 1 and "ILM policy: HTTP 403" in again.bootstrap_warnings[0]
        assert app.templates["clawdstrike-security"]["template"]["settings"][
            "index.lifecycle.name"] == "clawdstrike-security"


@pytest.mark.parametrize(("index", "pattern"), [
    ("clawd", "clawd-*"),
    ("clawd-%Y.%m.%d", "clawd-*.*.*"),
    ("clawd-events-%Y%m%d", "clawd-events-*"),
])
def test_a_classic_index_template_matches_its_own_indices_only(index: str, pattern: str) -> None:
    """``clawd-%Y.%m.%d`` used to give ``clawd*``, which also matches another output's
    ``clawd-events-...``: Elasticsearch refuses a second template of the same priority whose patterns
    overlap (and the priority is now configurable for templates that must overlap)."""
    cfg = ElasticsearchOutputConfig(hosts=["http://x:9200"], index=index, template_priority=620)
    body = index_template_body(cfg)
    assert body["index_patterns"] == [pattern] and body["priority"] == 620


def test_health_checks_and_the_bootstrap_are_not_counted_as_delivery_requests() -> None:
    """Every request fed the output's request metrics: an ingest-only key's 403 on the cluster
    health probe (which the output rightly treats as healthy) counted one `auth` failure per
    interval, and the cheap probes filled the send latency histogram."""
    app = ElasticsearchMock(users={"ingest": PASSWORD}, ingest_only=["ingest"])
    seen: list[str] = []
    with MockServer(app) as server:
        cfg = ElasticsearchOutputConfig(hosts=[server.url], bootstrap=True, username="ingest",
                                        password=Secret(PASSWORD))
        cfg.validate()
        out = ElasticsearchOutput("es", cfg)
        out.on_response = lambda cls, seconds: seen.append(cls)
        out.open()  # the bootstrap: 403s for the policy and template
        assert out.healthcheck()[0] is True  # 403: reachable, health needs `monitor`
        assert seen == []
        assert out.send(make_items(2, out=out)).status is Status.DELIVERED
    assert seen == ["ok"]

def test_healthcheck(mock: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = mock
    out = output(server.url)
    assert out.healthcheck() == (True, "cluster status green")
    app.health = "yellow"
    assert out.healthcheck()[0] is True
    app.health = "red"
    assert out.healthcheck() == (False, "cluster status red")
    server.faults.add(Fault("status", status=403))
    ok, reason = out.healthcheck()
    assert ok and "monitor privilege" in reason
    server.faults.add(Fault("status", status=500))
    assert out.healthcheck()[0] is False


def test_fails_over_to_the_next_host_on_a_transport_error(mock: tuple[ElasticsearchMock, MockServer]
                                                          ) -> None:
    app, server = mock
    dead = f"http://127.0.0.1:{free_port()}"
    out = output([dead, server.url])
    for k in range(4):
        assert out.send(make_items(5, start=5 * k, out=out)).status is Status.DELIVERED
    assert app.count(DS) == 20
    assert app.stats()["bulk_requests"] == 4
    assert out._down_until[0] > 0 and out._down_until[1] == 0
    everyone_dead = output([dead, f"http://127.0.0.1:{free_port()}"])
    outcome = everyone_dead.send(make_items(1, out=everyone_dead))
    assert outcome.status is Status.RETRY and "node 1/2" in outcome.reason and "node 2/2" in outcome.reason
    assert "127.0.0.1" not in outcome.reason


def test_round_robin_spreads_requests_over_hosts() -> None:
    apps = [ElasticsearchMock(), ElasticsearchMock()]
    with MockServer(apps[0]) as s0, MockServer(apps[1]) as s1:
        out = output([s0.url, s1.url])
        for k in range(6):
            assert out.send(make_items(1, start=k, out=out)).status is Status.DELIVERED
        assert [a.stats()["bulk_requests"] for a in apps] == [3, 3]


def test_proxy_refusing_its_credentials_on_connect_is_an_auth_failure(tls_files: TlsFiles  # noqa: F811
                                                                       ) -> None:
    app = ElasticsearchMock()
    with MockServer(app, certfile=str(tls_files.server_cert), keyfile=str(tls_files.server_key)) as server, \
            Proxy("shipper", "right-password") as proxy:
        out = output(server.url, proxy=Secret(f"http://shipper:wrong-password@127.0.0.1:{proxy.port}"),
                     ca_file=str(tls_files.ca_cert))
        outcome = out.send(make_items(1, out=out))
        assert outcome.status is Status.RETRY and "407" in outcome.reason and outcome.auth_failure
        assert app.stats()["bulk_requests"] == 0


def test_round_robin_over_many_hosts_keeps_one_connection_per_host() -> None:
    """Every host keeps its pooled connection, however many hosts the output lists (a pool per host
    evicted in turn would mean a new TCP and TLS handshake on every request)."""
    import threading

    apps = [ElasticsearchMock() for _ in range(6)]
    threads: list[set[int]] = [set() for _ in apps]
    for app, seen in zip(apps, threads, strict=True):
        handle = app.handle

        def recording(req: Any, handle: Any = handle, seen: set[int] = seen) -> Any:
            seen.add(threading.get_ident())  # one server thread per connection
            return handle(req)

        app.handle = recording  # type: ignore[method-assign]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(MockServer(app)) for app in apps]
        out = output([s.url for s in servers])
        for k in range(3 * len(apps)):
            assert out.send(make_items(1, start=k, out=out)).status is Status.DELIVERED
        assert [a.stats()["bulk_requests"] for a in apps] == [3] * len(apps)
        assert [len(seen) for seen in threads] == [1] * len(apps)


def test_real_ecs_documents_of_every_fixture_event_index_through_the_bootstrapped_template(
        mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """The template and the ECS transform agree: the mock enforces the template's types (ip, long,
    boolean, object vs value) and infers the rest, so any conflict would be a per-item 400."""
    from agent.mapping import MappingContext, parse_line
    from transforms.ecs import to_ecs

    class Ecs:
        def render(self, event: dict[str, Any], body: bytes) -> bytes:
            return orjson.dumps(to_ecs(event))

    app, server = mock
    out = output(server.url, bootstrap=True)
    out.pipeline = Ecs()  # type: ignore[attr-defined]
    ctx = MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                         host_name="dev-laptop")
    lines = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
    events = [parse_line(raw, context=ctx) for raw in lines if raw.strip()]
    batch = []
    for k, ev in enumerate(events):
        item = DeliveryItem(k, ev, orjson.dumps(ev), uuid.UUID(ev["event_id"]).bytes)
        item.data = out.encode(item)
        batch.append(item)
    outcome = out.send(batch)
    assert outcome.status is Status.DELIVERED, outcome.reason
    stored = app.docs(DS)
    assert len(stored) == len(events) == 23
    sample = stored[events[1]["event_id"]]
    assert sample["event"]["id"] == events[1]["event_id"] and "@timestamp" in sample
    assert app.stats()["spec_violations"] == []


def test_template_field_types_are_the_ecs_types() -> None:
    flat = json.loads((SCHEMAS / "ecs/9.4.0/derived/ecs_flat.json").read_text())
    for name, kind in ECS_FIELDS.items():
        assert name in flat, name
        assert flat[name]["type"] == kind, (name, flat[name]["type"], kind)
    assert all(name.startswith("clawdstrike.") for name in CLAWDSTRIKE_FIELDS)
    body = index_template_body(ElasticsearchOutputConfig(hosts=["http://x"]))
    assert body["template"]["mappings"]["properties"]["event"]["properties"]["severity"] == {"type": "long"}


# ---------------------------------------------------------------------------- through the drain


@pytest.mark.integration
def test_through_the_drain_partial_failures_are_exact_and_nothing_duplicates(
        mock: tuple[ElasticsearchMock, MockServer], tmp_path: Any) -> None:
    import gevent

    from outputs.drain import Drain
    from spool.store import Spool
    from spool.types import EncodedEvent, IngestBatch

    app, server = mock
    spool = Spool(str(tmp_path / "spool.db"))
    try:
        events = [make_event(i, decision={"severity": "high", "allowed": False}) for i in range(40)]
        spool.append(IngestBatch("t", [EncodedEvent(uuid.UUID(e["event_id"]).bytes,
                                                    1_700_000_000_000 + k, orjson.dumps(e))
                                       for k, e in enumerate(events)]))
        spool.ensure_cursor("es")
        for n in (5, 23):
            app.add_item_fault(ItemFault(field="n", value=n, status=400, type="mapper_parsing_exception",
                                         reason=f"failed to parse field [n] ({n})"))
        app.add_item_fault(ItemFault(status=429, type="es_rejected_execution_exception", count=3,
                                     after=10))
        server.faults.add(Fault("status", status=429, retry_after=0))
        server.faults.add(Fault("reset", after=1))
        cfg = ElasticsearchOutputConfig(hosts=[server.url], batch_max_events=8, batch_max_wait=0,
                                        retry_initial=0.01, retry_max=0.05, breaker_failures=0)
        out = ElasticsearchOutput("es", cfg)
        drain = Drain(out, spool, spool.reader())
        g = gevent.spawn(drain.run)
        with gevent.Timeout(30):
            while spool.get_cursor("es").seq != spool.last_seq():
                gevent.sleep(0.02)
        drain.stop()
        g.join(timeout=10)
        assert app.count(DS) == 38
        assert set(app.docs(DS)) == {e["event_id"] for e in events if e["n"] not in (5, 23)}
        assert app.stats()["created"] == 38
        dlq = spool.dlq_list("es")
        assert sorted(orjson.loads(e.body)["n"] for e in dlq) == [5, 23]
        assert all("mapper_parsing_exception" in e.reason for e in dlq)
        assert app.stats()["item_errors"]["429 es_rejected_execution_exception"] == 3
        assert app.stats()["spec_violations"] == []
    finally:
        spool.close()


@pytest.mark.integration
def test_through_the_drain_with_the_real_ecs_pipeline_and_bootstrap(
        mock: tuple[ElasticsearchMock, MockServer], tmp_path: Any) -> None:
    import gevent

    from agent.mapping import MappingContext, parse_line
    from outputs.drain import Drain
    from spool.store import Spool
    from spool.types import EncodedEvent, IngestBatch
    from transforms.pipeline import build_pipeline

    app, server = mock
    ctx = MappingContext(host_name="dev-laptop")
    lines = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
    events = [parse_line(raw, context=ctx) for raw in lines if raw.strip()]
    spool = Spool(str(tmp_path / "spool.db"))
    try:
        spool.append(IngestBatch("t", [EncodedEvent(uuid.UUID(e["event_id"]).bytes,
                                                    1_700_000_000_000 + k, orjson.dumps(e))
                                       for k, e in enumerate(events)]))
        spool.ensure_cursor("es")
        cfg = ElasticsearchOutputConfig(hosts=[server.url], bootstrap=True, batch_max_wait=0,
                                        fields=FieldsConfig(set={"labels.site": "lab"}))
        drain = Drain(ElasticsearchOutput("es", cfg), spool, spool.reader(),
                      pipeline_factory=lambda c: build_pipeline(c.transform_config()))
        g = gevent.spawn(drain.run)
        with gevent.Timeout(30):
            while spool.get_cursor("es").seq != spool.last_seq():
                gevent.sleep(0.02)
        drain.stop()
        g.join(timeout=10)
        docs = app.docs(DS)
        assert set(docs) == {e["event_id"] for e in events}
        for e in events:
            doc = docs[e["event_id"]]
            assert doc["ecs"]["version"] == "9.4.0" and doc["event"]["id"] == e["event_id"]
            assert doc["labels"]["site"] == "lab"
        assert app.stats()["templates"] == ["clawdstrike-security"]
        assert app.stats()["spec_violations"] == [] and app.stats()["item_errors"] == {}
        assert spool.dlq_list("es") == []
    finally:
        spool.close()
