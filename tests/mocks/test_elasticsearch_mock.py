"""The Elasticsearch mock: _bulk semantics as documented (docs-bulk.html, delivery-peers.md §4.2), and
its conformance checks against Elasticsearch's own _bulk spec catching a wrong client and a wrong
mock response."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from outputs.mocks import es_spec
from outputs.mocks.elasticsearch import ElasticsearchMock, ItemFault
from outputs.mocks.server import Fault, MockServer
from tests.shared_paths import VENDOR_SPECS

ND = {"Content-Type": "application/x-ndjson"}
DS = "logs-clawdstrike.security-default"


@pytest.fixture
def es() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock()
    with MockServer(app) as server:
        yield app, server


def ndjson(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def bulk(server: MockServer, body: bytes, headers: dict[str, str] | None = None,
         path: str = "/_bulk", **kw: object) -> requests.Response:
    return requests.post(server.url + path, data=body, headers={**ND, **(headers or {})}, **kw)


def create(doc_id: str, index: str = DS) -> dict[str, object]:
    return {"create": {"_index": index, "_id": doc_id}}


def doc(**kw: object) -> dict[str, object]:
    return {"@timestamp": "2026-11-26T08:00:00.123Z", "message": "m", **kw}


def results(r: requests.Response) -> list[tuple[str, int, str | None]]:
    out = []
    for item in r.json()["items"]:
        ((kind, res),) = item.items()
        out.append((kind, res["status"], (res.get("error") or {}).get("type")))
    return out


def test_a_duplicate_create_that_does_not_map_is_a_400_and_one_that_maps_updates_the_mapping(
        es: tuple[ElasticsearchMock, MockServer]) -> None:
    """Elasticsearch parses a document against the mapping before the engine finds its _id taken
    (IndexShard.applyIndexOperation: prepareIndex, then Engine.index): a duplicate create whose
    document does not map is refused for that (400), and one that maps still leaves its dynamic
    mapping update behind its 409."""
    app, server = es
    r = bulk(server, ndjson(create("a"), doc(n=1), create("b"), doc()))
    assert results(r) == [("create", 201, None), ("create", 201, None)]
    r = bulk(server, ndjson(create("a"), doc(n="x"), create("b"), doc(m=5)))
    assert results(r) == [("create", 400, "document_parsing_exception"),
                          ("create", 409, "version_conflict_engine_exception")]
    r = bulk(server, ndjson(create("c"), doc(m="not a number")))
    assert results(r) == [("create", 400, "document_parsing_exception")]
    assert app.count(DS) == 2


def test_the_vendor_spec_is_present_and_checked(es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, _ = es
    assert (VENDOR_SPECS / es_spec.SPEC_RELATIVE.relative_to("vendor-specs")).is_file()
    assert es_spec.default_spec_path().resolve() == (
        VENDOR_SPECS / "elasticsearch/derived/bulk.serverless-9.4.openapi3.json").resolve()
    assert app.stats()["spec_checked"] is True


def test_create_then_duplicate_create_is_409_and_stores_once(es: tuple[ElasticsearchMock, MockServer]
                                                               ) -> None:
    app, server = es
    r = bulk(server, ndjson(create("a"), doc(n=1), create("b"), doc(n=2)))
    assert r.status_code == 200 and r.json()["errors"] is False
    assert results(r) == [("create", 201, None), ("create", 201, None)]
    r = bulk(server, ndjson(create("a"), doc(n=9), create("c"), doc(n=3)))
    assert r.json()["errors"] is True
    assert results(r) == [("create", 409, "version_conflict_engine_exception"), ("create", 201, None)]
    assert app.count(DS) == 3 and app.docs(DS)["a"]["n"] == 1
    count = requests.get(f"{server.url}/{DS}/_count").json()["count"]
    assert count == 3
    assert app.stats()["spec_violations"] == []


def test_data_stream_is_auto_created_and_accepts_only_create(es: tuple[ElasticsearchMock, MockServer]
                                                              ) -> None:
    app, server = es
    r = bulk(server, ndjson(create("1"), doc(),
                            {"index": {"_index": DS, "_id": "2"}}, doc(),
                            create("3"), {"message": "no timestamp"}))
    assert results(r) == [("create", 201, None), ("index", 400, "illegal_argument_exception"),
                          ("create", 400, "document_parsing_exception")]
    first = r.json()["items"][0]["create"]
    assert first["_index"].startswith(f".ds-{DS}-")
    assert app.stats()["data_streams"] == {DS: [first["_index"]]}
    assert app.count(DS) == 1


def test_index_update_delete_on_a_classic_index(es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es
    r = bulk(server, ndjson({"index": {"_index": "plain", "_id": "x"}}, {"a": 1},
                            {"index": {"_index": "plain", "_id": "x"}}, {"a": 2},
                            {"update": {"_index": "plain", "_id": "x"}}, {"doc": {"b": 3}},
                            {"update": {"_index": "plain", "_id": "y"}}, {"doc": {"b": 3}},
                            {"delete": {"_index": "plain", "_id": "x"}},
                            {"delete": {"_index": "plain", "_id": "x"}}))
    assert results(r) == [("index", 201, None), ("index", 200, None), ("update", 200, None),
                          ("update", 404, "document_missing_exception"), ("delete", 200, None),
                          ("delete", 404, None)]
    assert app.count("plain") == 0
    assert app.stats()["spec_violations"] == []


def test_a_malformed_action_line_is_a_loud_spec_violation(es: tuple[ElasticsearchMock, MockServer]
                                                           ) -> None:
    app, server = es
    r = bulk(server, b'{"create":{"_index":5,"_id":"a"}}\n{"x":1}\n')
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "mock_spec_violation"
    assert "mock spec violation" in r.json()["error"]["reason"]
    assert any("_index" in v and "string" in v for v in app.stats()["spec_violations"])
    assert app.count("*") == 0


@pytest.mark.parametrize("body,needle", [
    (b'{"create":{"_index":"a"},"index":{"_index":"a"}}\n{}\n', "too many properties"),
    (b'{"upsert":{"_index":"a"}}\n{"x":1}\n', "unknown action"),
    (b'{"create":{"_index":"a"}}\n{"x":1}', "newline"),
    (b'{"create":{"_index":"a"}}\n[1,2]\n', "must be a JSON object"),
])
def test_other_framing_and_schema_errors_are_caught(es: tuple[ElasticsearchMock, MockServer],
                                                    body: bytes, needle: str) -> None:
    app, server = es
    r = bulk(server, body)
    assert r.status_code == 400 and "mock spec violation" in r.text
    assert any(needle in v for v in app.stats()["spec_violations"]), app.stats()["spec_violations"]


def test_wrong_content_type_and_unknown_query_parameter_are_violations(
        es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es
    r = bulk(server, ndjson(create("a"), doc()), headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    r = bulk(server, ndjson(create("a"), doc()), params={"refresh": "sometimes"})
    assert r.status_code == 400
    r = bulk(server, ndjson(create("a"), doc()), params={"refresh": "wait_for",
                                                         "require_data_stream": "true"})
    assert r.status_code == 200
    assert len(app.stats()["spec_violations"]) == 2


def test_a_malformed_response_is_caught(es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es

    def corrupt(body: dict) -> dict:
        body = dict(body)
        body.pop("errors")
        body["items"][0]["create"]["status"] = "201"
        return body

    app.response_filter = corrupt
    r = bulk(server, ndjson(create("a"), doc()))
    assert r.status_code == 500 and "mock spec violation (response)" in r.text
    violations = app.stats()["spec_violations"]
    assert any("errors" in v for v in violations)
    assert any("status" in v and "number" in v for v in violations)


def test_one_result_per_action_is_enforced_on_responses(es: tuple[ElasticsearchMock, MockServer]
                                                        ) -> None:
    app, server = es
    app.response_filter = lambda body: {**body, "items": body["items"][:1]}
    r = bulk(server, ndjson(create("a"), doc(), create("b"), doc()))
    assert r.status_code == 500
    assert any("1 items for 2 actions" in v for v in app.stats()["spec_violations"])


def test_item_faults_field_rejection_and_counted_429(es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es
    app.add_item_fault(ItemFault(field="bad.field", status=400, type="mapper_parsing_exception"))
    app.add_item_fault({"status": 429, "type": "es_rejected_execution_exception", "count": 2,
                        "after": 1})
    r = bulk(server, ndjson(create("1"), doc(), create("2"), doc(bad={"field": 1}),
                            create("3"), doc(), create("4"), doc(), create("5"), doc()))
    assert results(r) == [("create", 201, None), ("create", 400, "mapper_parsing_exception"),
                          ("create", 429, "es_rejected_execution_exception"),
                          ("create", 429, "es_rejected_execution_exception"), ("create", 201, None)]
    assert app.stats()["item_errors"] == {"400 mapper_parsing_exception": 1,
                                          "429 es_rejected_execution_exception": 2}
    r = bulk(server, ndjson(create("3"), doc()))
    assert results(r) == [("create", 201, None)]


def test_item_faults_through_the_control_endpoint(es: tuple[ElasticsearchMock, MockServer]) -> None:
    _app, server = es
    requests.post(server.url + "/_mock/item_faults",
                  json=[{"field": "event.code", "value": "boom", "status": 400}])
    r = bulk(server, ndjson(create("1"), doc(event={"code": "boom"}), create("2"),
                            doc(event={"code": "fine"})))
    assert results(r) == [("create", 400, "document_parsing_exception"), ("create", 201, None)]
    stored = requests.post(server.url + "/_mock/docs", json={"index": DS}).json()["docs"]
    assert list(stored) == ["2"]


def test_mapping_conflicts_are_rejected_like_elasticsearch(es: tuple[ElasticsearchMock, MockServer]
                                                           ) -> None:
    _app, server = es
    requests.put(server.url + "/_index_template/t", json={
        "index_patterns": ["logs-typed-*"], "data_stream": {}, "priority": 500,
        "template": {"mappings": {"properties": {"destination": {"properties": {
            "ip": {"type": "ip"}, "port": {"type": "long"}}}}}}})
    r = bulk(server, ndjson(create("1", "logs-typed-x"), doc(destination={"ip": "10.0.0.1", "port": 443}),
                            create("2", "logs-typed-x"), doc(destination={"ip": "example.com"}),
                            create("3", "logs-typed-x"), doc(destination={"port": "https"}),
                            create("4", "logs-typed-x"), doc(labels={"a": "x"}),
                            create("5", "logs-typed-x"), doc(labels="flat")))
    assert [s for _, s, _ in results(r)] == [201, 400, 400, 201, 400]
    assert "[destination.ip] of type [ip]" in r.json()["items"][1]["create"]["error"]["reason"]


def test_max_content_length_answers_413_with_an_empty_body() -> None:
    app = ElasticsearchMock(max_content_length=2000)
    with MockServer(app) as server:
        small = ndjson(create("1"), doc())
        assert bulk(server, small).status_code == 200
        big = b"".join(ndjson(create(str(i)), doc(pad="x" * 100)) for i in range(20))
        r = bulk(server, big)
        assert r.status_code == 413 and r.content == b""
        r = bulk(server, gzip.compress(big), headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413, "the limit applies to the decompressed body"
        r = bulk(server, gzip.compress(small), headers={"Content-Encoding": "gzip"})
        assert r.status_code == 200 and app.count(DS) == 1


API_KEY_ID, API_KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"


@pytest.fixture
def secured() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock(api_keys=[f"{API_KEY_ID}:{API_KEY}"], users={"elastic": "changeme"},
                            bearer_tokens=["tok123"], ingest_only=["ingester"])
    with MockServer(app) as server:
        yield app, server


def test_auth_modes(secured: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = secured
    body = ndjson(create("1"), doc())
    r = bulk(server, body)
    assert r.status_code == 401 and "ApiKey" in r.headers["WWW-Authenticate"]
    assert r.json()["error"]["type"] == "security_exception"
    encoded = base64.b64encode(f"{API_KEY_ID}:{API_KEY}".encode()).decode()
    assert bulk(server, body, {"Authorization": f"ApiKey {encoded}"}).status_code == 200
    assert bulk(server, body, {"Authorization": "ApiKey " + base64.b64encode(b"x:y").decode()
                               }).status_code == 401
    # Elasticsearch base64-decodes the credential: 'id:key' in clear, or base64 without ':', is refused
    assert bulk(server, body, {"Authorization": f"ApiKey {API_KEY_ID}:{API_KEY}"}).status_code == 401
    assert bulk(server, body, {"Authorization": "ApiKey " + base64.b64encode(
        f"{API_KEY_ID}{API_KEY}".encode()).decode()}).status_code == 401
    assert bulk(server, body, {"Authorization": f"ApiKey {encoded.rstrip('=')}"}).status_code == 200
    basic = base64.b64encode(b"elastic:changeme").decode()
    assert bulk(server, body, {"Authorization": f"Basic {basic}"}).status_code == 200
    assert bulk(server, body, {"Authorization": "Bearer tok123"}).status_code == 200
    assert bulk(server, body, {"Authorization": "Bearer nope"}).status_code == 401
    assert app.stats()["auth_failures"] == 5 and app.count(DS) == 1


def test_ingest_only_principal_writes_but_cannot_manage() -> None:
    app = ElasticsearchMock(users={"ingester": "pw", "admin": "pw2"}, ingest_only=["ingester"])
    with MockServer(app) as server:
        ing = {"Authorization": "Basic " + base64.b64encode(b"ingester:pw").decode()}
        adm = {"Authorization": "Basic " + base64.b64encode(b"admin:pw2").decode()}
        tpl = {"index_patterns": ["x-*"]}
        r = requests.put(server.url + "/_index_template/t", json=tpl, headers=ing)
        assert r.status_code == 403 and r.json()["error"]["type"] == "security_exception"
        assert requests.put(server.url + "/_ilm/policy/p", json={"policy": {"phases": {}}},
                            headers=ing).status_code == 403
        assert bulk(server, ndjson(create("1"), doc()), ing).status_code == 200
        assert requests.put(server.url + "/_index_template/t", json=tpl, headers=adm).status_code == 200
        assert app.stats()["templates"] == ["t"]


def test_health_templates_ilm_alias_and_index_creation(es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es
    assert requests.get(server.url + "/_cluster/health").json()["status"] == "green"
    app.health = "red"
    assert requests.get(server.url + "/_cluster/health").json()["status"] == "red"
    assert requests.put(server.url + "/_ilm/policy/p", json={"policy": {"phases": {}}}).ok
    assert requests.get(server.url + "/_ilm/policy/p").json() == {"p": {"phases": {}}}
    assert requests.put(server.url + "/_index_template/t", json={}).status_code == 400
    assert requests.get(server.url + "/_alias/events").status_code == 404
    r = requests.put(server.url + "/events-000001", json={"aliases": {"events": {"is_write_index": True}}})
    assert r.status_code == 200
    assert requests.get(server.url + "/_alias/events").json() == {
        "events-000001": {"aliases": {"events": {"is_write_index": True}}}}
    assert requests.put(server.url + "/events-000001", json={}).status_code == 400
    bulk(server, ndjson(create("1", "events"), {"a": 1}))
    assert app.docs("events-000001") == {"1": {"a": 1}}
    assert requests.get(server.url + "/nope/_count").status_code == 404


def test_failure_store_takes_mapping_and_ingest_failures_of_a_data_stream_only(
        es: tuple[ElasticsearchMock, MockServer]) -> None:
    """As Elasticsearch with a failure store enabled (here by the template's data_stream_options): a
    create that fails with a per-item 400 is stored in the .fs- failure index and answered 201 with
    failure_store: used, so errors stays false; a 409 or 429 is never redirected; a data stream
    without one marks its rejections failure_store: not_enabled; a classic index has no such field.
    Every answer is checked against the _bulk spec (FailureStoreStatus enum)."""
    app, server = es
    assert requests.put(server.url + "/_index_template/fs", json={
        "index_patterns": ["logs-fs-*"], "priority": 200, "data_stream": {},
        "template": {"data_stream_options": {"failure_store": {"enabled": True}},
                     "mappings": {"properties": {"n": {"type": "long"}}}}}).ok
    stream = "logs-fs-default"
    r = bulk(server, ndjson(create("1", stream), doc(n=1), create("2", stream), doc(n="two"),
                            create("3", stream), {"message": "no timestamp"}))
    assert r.json()["errors"] is False
    items = [i["create"] for i in r.json()["items"]]
    assert [(i["status"], i.get("failure_store")) for i in items] == [(201, None), (201, "used"),
                                                                      (201, "used")]
    assert items[1]["_index"].startswith(".fs-logs-fs-default-") and items[1]["result"] == "created"
    assert app.count(stream) == 1
    failures = app.docs(stream + "::failures")
    assert sorted(f["document"]["id"] for f in failures.values()) == ["2", "3"]
    assert {f["error"]["type"] for f in failures.values()} == {"document_parsing_exception"}
    app.add_item_fault(ItemFault(status=429, type="es_rejected_execution_exception", count=1))
    r = bulk(server, ndjson(create("4", stream), doc(n=4), create("1", stream), doc(n=1)))
    assert r.json()["errors"] is True
    assert [(i["create"]["status"], i["create"].get("failure_store")) for i in r.json()["items"]] == [
        (429, None), (409, None)]
    r = bulk(server, ndjson(create("1"), doc(), create("2"), {"message": "no timestamp"},
                            create("3", "classic"), {"a": 1}, create("4", "classic"), {"a": {"b": 1}}))
    assert [(i["create"]["status"], i["create"].get("failure_store")) for i in r.json()["items"]] == [
        (201, None), (400, "not_enabled"), (201, None), (400, None)]
    assert app.stats()["failure_store"] == 2 and app.stats()["spec_violations"] == []


def test_ilm_explain_reports_a_rollover_policy_that_cannot_run(es: tuple[ElasticsearchMock, MockServer]
                                                                ) -> None:
    """A policy with a rollover action on a classic index without index.lifecycle.rollover_alias is
    ILM's ERROR step (robcowart/elastiflow#558); with a rollover alias, on a data stream, or without
    rollover it can run."""
    _, server = es
    rollover = {"policy": {"phases": {"hot": {"actions": {"rollover": {"max_age": "30d"}}},
                                      "delete": {"min_age": "30d", "actions": {"delete": {}}}}}}
    assert requests.put(server.url + "/_ilm/policy/roll", json=rollover).ok
    assert requests.put(server.url + "/_ilm/policy/keep", json={"policy": {"phases": {
        "delete": {"min_age": "30d", "actions": {"delete": {}}}}}}).ok
    for name, pattern, settings in (
            ("dated", "daily-*", {"index.lifecycle.name": "roll"}),
            ("alias", "events-*", {"index": {"lifecycle": {"name": "roll", "rollover_alias": "events"}}}),
            ("plain", "plain-*", {"index.lifecycle.name": "keep"}),
            ("stream", "logs-x-*", {"index.lifecycle.name": "roll"})):
        assert requests.put(f"{server.url}/_index_template/{name}", json={
            "index_patterns": [pattern], "priority": 200, "template": {"settings": settings},
            **({"data_stream": {}} if name == "stream" else {})}).ok
    assert requests.put(server.url + "/events-000001", json={"aliases": {"events": {
        "is_write_index": True}}}).ok
    for index in ("daily-2026.11.01", "events", "plain-1", "unmanaged-1", "logs-x-default"):
        assert bulk(server, ndjson(create("1", index), doc())).status_code == 200

    def explain(target: str) -> dict[str, object]:
        r = requests.get(f"{server.url}/{target}/_ilm/explain")
        assert r.status_code == 200
        (state,) = r.json()["indices"].values()
        return state

    dated = explain("daily-2026.11.01")
    assert dated["step"] == "ERROR" and dated["failed_step"] == "check-rollover-ready"
    assert dated["step_info"]["reason"] == ("setting [index.lifecycle.rollover_alias] for index "
                                            "[daily-2026.11.01] is empty or not defined")
    assert explain("events")["step"] == "check-rollover-ready"
    assert explain("logs-x-default")["step"] == "check-rollover-ready"
    assert explain("plain-1")["step"] == "complete"
    assert explain("unmanaged-1") == {"index": "unmanaged-1", "managed": False}
    assert requests.get(server.url + "/nope/_ilm/explain").status_code == 404


def test_injected_faults_answer_with_elasticsearch_error_bodies(es: tuple[ElasticsearchMock, MockServer]
                                                                ) -> None:
    app, server = es
    server.faults.add(Fault("status", status=429, retry_after=3))
    r = bulk(server, ndjson(create("1"), doc()))
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.json()["error"]["type"] == "es_rejected_execution_exception"
    assert app.spec.check_response(429, r.json()) == []
    assert bulk(server, ndjson(create("1"), doc())).status_code == 200


@pytest.mark.parametrize("injected", [
    {"kind": "status", "status": 429, "retry_after": 3}, {"kind": "status", "status": 503},
    {"kind": "status", "status": 401}, {"kind": "reset"}], ids=["429", "503", "401", "reset"])
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_a_malformed_request_answered_by_an_injected_fault_is_still_a_violation(
        es: tuple[ElasticsearchMock, MockServer], injected: dict[str, object], gzipped: bool
) -> None:
    """The fault answers (the client sees the 429 with its Retry-After, or a reset), but the action
    lines were checked first: a wrong client cannot hide behind a throttled or failed request."""
    app, server = es
    server.faults.extend([injected])
    body = b'{"create":{"_index":5,"_id":"a"}}\n{"x":1}\n'
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    if injected["kind"] == "reset":
        with pytest.raises(requests.ConnectionError):
            bulk(server, gzip.compress(body) if gzipped else body, headers)
    else:
        r = bulk(server, gzip.compress(body) if gzipped else body, headers)
        assert r.status_code == injected["status"]  # the fault, not the violation's 400, answered
        assert r.json()["error"]["type"] != "mock_spec_violation"
        if injected["status"] == 429:
            assert r.headers["Retry-After"] == "3"
    violations = app.stats()["spec_violations"]
    assert len(violations) == 1 and "_index" in violations[0] and "string" in violations[0], violations
    assert "injected fault" in violations[0]
    assert app.count("*") == 0 and app.counters["bulk_requests"] == 0  # the app never took it


def test_the_recording_mocks_own_429_checks_the_request_first() -> None:
    """The E2E tests' recording mock answers ``app_faults`` itself (to know each 429's batch): the
    spec check runs there too."""
    from tests.integration.delivery_harness import RecordingElasticsearch

    app = RecordingElasticsearch()
    app.app_faults.add(Fault("status", status=429, retry_after=2, path="/_bulk"))
    with MockServer(app) as server:
        r = bulk(server, b'{"create":{"_index":5,"_id":"a"}}\n{"x":1}\n')
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert [a.status for a in app.arrivals] == [429]
    violations = app.stats()["spec_violations"]
    assert len(violations) == 1 and "_index" in violations[0], violations


def test_a_well_formed_request_answered_by_an_injected_fault_is_no_violation(
        es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es
    server.faults.add(Fault("status", status=429, retry_after=1, count=2))
    for _ in range(2):
        assert bulk(server, ndjson(create("1"), doc())).status_code == 429
    assert bulk(server, ndjson(create("1"), doc())).status_code == 200
    assert app.stats()["spec_violations"] == [] and app.count(DS) == 1


def test_gzip_bodies_are_decoded(es: tuple[ElasticsearchMock, MockServer]) -> None:
    app, server = es
    r = bulk(server, gzip.compress(ndjson(create("1"), doc())), {"Content-Encoding": "gzip"})
    assert r.status_code == 200 and app.count(DS) == 1
    r = bulk(server, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"})
    assert r.status_code == 400


def test_the_mock_runs_without_the_spec_with_one_warning(tmp_path, caplog) -> None:
    es_spec.load_cached.cache_clear()
    with caplog.at_level("WARNING"):
        app = ElasticsearchMock(spec_path=str(tmp_path / "absent.json"))
    assert app.spec is None and app.stats()["spec_checked"] is False
    assert sum("NOT checked" in r.getMessage() for r in caplog.records) == 1
    with MockServer(app) as server:
        assert bulk(server, ndjson(create("1"), doc())).status_code == 200


@pytest.mark.integration
def test_python_dash_m_runner_serves_the_mock() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "outputs.mocks", "elasticsearch", "--token",
                             "id:key", "--option", "max_content_length=5000"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        auth = {"Authorization": "ApiKey " + base64.b64encode(b"id:key").decode(), **ND}
        r = requests.post(url + "/_bulk", data=ndjson(create("1"), doc()), headers=auth, timeout=10)
        assert r.status_code == 200
        stats = requests.get(url + "/_mock/stats", timeout=10).json()
        assert stats["spec_checked"] is True and stats["docs"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(app: ElasticsearchMock, *bodies: bytes) -> list[object]:
    with MockServer(app) as server:
        out: list[object] = []
        for body in bodies:
            r = bulk(server, body)
            out.append((r.status_code, results(r) if r.status_code == 200 else r.json()["error"]["type"]))
        return out


def test_lean_mode_answers_as_the_parsing_mode_does() -> None:
    """``parse_sources=False`` (the throughput benchmark's mock) leaves sources unparsed unless
    something reads them: every answer must still be the one the parsing mock gives."""
    bodies = [
        ndjson(create("a"), doc(), create("b"), doc(), create("a"), doc()),  # 201 201 409
        ndjson(create("c"), {"message": "no timestamp"}, create("d", "classic"), {"x": 1},
               {"index": {"_index": "classic", "_id": "d"}}, {"x": 2},
               {"delete": {"_index": "classic", "_id": "d"}}, {"update": {"_index": "classic", "_id": "z"}},
               {"doc": {"x": 3}}),
        ndjson(create("e"), doc()) + b'{"create": {"_index": "logs-x-y"}}\nnot json\n',
        b'{"create": {"_index": "logs-x-y"}}\n',  # a create without its source line
        b'{"nope": {}}\n{}\n',  # malformed action line
        ndjson(create("f"), doc()).rstrip(b"\n"),  # no final newline
    ]
    parsing = ElasticsearchMock(check_spec=False, check_mappings=False, keep_sources=False)
    lean = ElasticsearchMock(check_spec=False, check_mappings=False, keep_sources=False,
                             parse_sources=False)
    want = _answers(parsing, *bodies)
    assert want[0] == (200, [("create", 201, None), ("create", 201, None),
                             ("create", 409, "version_conflict_engine_exception")])
    assert want[1][1][0] == ("create", 400, "document_parsing_exception")  # no @timestamp
    assert _answers(lean, *bodies) == want
    assert lean.counters["created"] == parsing.counters["created"]
    assert lean.counters["conflicts"] == parsing.counters["conflicts"] == 1


def test_lean_mode_still_reads_sources_an_item_fault_selects_on() -> None:
    lean = ElasticsearchMock(check_spec=False, check_mappings=False, keep_sources=False,
                             parse_sources=False)
    lean.add_item_fault(ItemFault(field="user.name", value="bad"))
    body = ndjson(create("a"), doc(user={"name": "ok"}), create("b"), doc(user={"name": "bad"}))
    assert _answers(lean, body) == [(200, [("create", 201, None),
                                           ("create", 400, "document_parsing_exception")])]


def test_lean_mode_cannot_be_combined_with_the_spec_check() -> None:
    with pytest.raises(ValueError, match="check_spec=False"):
        ElasticsearchMock(parse_sources=False)


@pytest.mark.parametrize("ts,status", [
    ("2026-11-26T08:00:00.123Z", 201),
    ("2026-11-26T08:00:00+01:00", 201),
    ("2026-11-26", 201),
    (1795680000123, 201),  # epoch_millis
    ("1795680000123", 201),
    ("yesterday", 400),
    ("2026-11-26 08:00:00", 400),  # not strict_date_optional_time (space, not 'T')
    ("2026-13-45T08:00:00Z", 400),
    ({"value": "2026-11-26"}, 400),
])
def test_a_data_streams_timestamp_is_a_date(es: tuple[ElasticsearchMock, MockServer], ts: object,
                                            status: int) -> None:
    """"Every document indexed to a data stream must contain a @timestamp field, mapped as a date
    or date_nanos field type. If the index template doesn't specify a mapping for the @timestamp
    field, Elasticsearch maps @timestamp as a date field with default options" (Data streams,
    Elasticsearch reference; elastic/elasticsearch#59244), whose default format is
    strict_date_optional_time||epoch_millis ("date" field type); never ignore_malformed
    (elastic/elasticsearch#96051)."""
    app, server = es
    r = bulk(server, ndjson(create("1"), {"@timestamp": ts, "message": "m"}))
    assert [(s, e) for _, s, e in results(r)] == [
        (status, None if status == 201 else "document_parsing_exception")]
    assert app.stats()["spec_violations"] == []
