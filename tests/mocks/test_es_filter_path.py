"""``filter_path`` as Elasticsearch documents it ("Response Filtering", API common options), and the
Elasticsearch mock applying it to successful answers only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from outputs.mocks.elasticsearch import ElasticsearchMock, ItemFault
from outputs.mocks.es_filter_path import compile_filter
from outputs.mocks.server import MockServer

BAD = {"type": "document_parsing_exception", "reason": "bad"}
BULK_ANSWER = {
    "took": 3, "errors": True,
    "items": [
        {"create": {"_index": "i", "_id": "1", "_version": 1, "result": "created", "status": 201,
                    "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0}},
        {"create": {"_index": "i", "_id": "2", "status": 400,
                    "error": BAD}},
    ],
}
NODES = {"nodes": {"a1": {"host": "h1", "hostname": "n1", "ip": "10.0.0.1"},
                   "b2": {"host": "h2", "ip": "10.0.0.2"}}}


@pytest.mark.parametrize(("value", "doc", "want"), [
    # the agent's own filter: arrays are transparent, * matches the action name
    ("errors,items.*.error,items.*.status", BULK_ANSWER,
     {"errors": True, "items": [{"create": {"status": 201}},
                                {"create": {"status": 400, "error": BAD}}]}),
    # a field that exists nowhere adds nothing; an object left empty disappears
    ("took,items.*.failure_store", BULK_ANSWER, {"took": 3}),
    # * inside a name
    ("nodes.*.host*", NODES, {"nodes": {"a1": {"host": "h1", "hostname": "n1"}, "b2": {"host": "h2"}}}),
    # ** matches any number of levels, none included
    ("**.ip", NODES, {"nodes": {"a1": {"ip": "10.0.0.1"}, "b2": {"ip": "10.0.0.2"}}}),
    ("items.**.reason", BULK_ANSWER, {"items": [{"create": {"error": {"reason": "bad"}}}]}),
    # exclusion alone keeps the rest; combined with inclusion it applies first
    ("-took,-items.*._shards", {"took": 1, "items": [{"create": {"_shards": {}, "status": 201}}]},
     {"items": [{"create": {"status": 201}}]}),
    ("nodes.*,-nodes.b2", NODES, {"nodes": {"a1": NODES["nodes"]["a1"]}}),
    # a filter that goes below a plain value, or matches nothing at all: {}
    ("took.x", BULK_ANSWER, {}),
    ("nothing", BULK_ANSWER, {}),
    # empty entries are ignored
    (",errors,", BULK_ANSWER, {"errors": True}),
])
def test_filter_path_semantics(value: str, doc: dict, want: dict) -> None:
    before = json.dumps(doc, sort_keys=True)
    assert compile_filter(value)(doc) == want
    assert json.dumps(doc, sort_keys=True) == before  # the answer object itself is not changed


@pytest.mark.parametrize("value", ["errors,items.*.error,items.*.status", "items.*.status",
                                   "items.**", "items", "took", "items.*.nothing", "*.*.*.status"])
def test_a_repeated_item_object_filters_as_equal_copies_do(value: str) -> None:
    """A list holding one object several times (the lean ES mock's answer) filters to what the same
    list of distinct equal copies does."""
    a, b = BULK_ANSWER["items"]
    shared = {"errors": True, "items": [a, a, a, b, a, b, b]}
    copies = json.loads(json.dumps(shared))
    assert compile_filter(value)(shared) == compile_filter(value)(copies)
    assert json.dumps(compile_filter(value)(shared)) == json.dumps(compile_filter(value)(copies))


@pytest.fixture
def es() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock()  # with the vendor-spec check on: it judges the whole answer
    with MockServer(app) as server:
        yield app, server


def test_the_mock_filters_bulk_and_other_successful_answers(es: tuple[ElasticsearchMock, MockServer]
                                                            ) -> None:
    app, server = es
    app.add_item_fault(ItemFault(field="n", value=2, status=400, type="mapper_parsing_exception"))
    lines = [{"create": {"_index": "logs-a-b", "_id": str(i)}} if k == 0 else
             {"@timestamp": "2026-11-26T08:00:00Z", "n": i} for i in range(3) for k in (0, 1)]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = requests.post(server.url + "/_bulk?filter_path=errors,items.*.status,items.*.error.type",
                      data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"errors": True, "items": [
        {"create": {"status": 201}}, {"create": {"status": 201}},
        {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}]}
    assert app.stats()["spec_checked"] is True and app.stats()["spec_violations"] == []
    health = requests.get(server.url + "/_cluster/health?filter_path=status", timeout=10)
    assert health.json() == {"status": "green"}


def test_error_answers_are_not_filtered(es: tuple[ElasticsearchMock, MockServer]) -> None:
    _, server = es
    r = requests.post(server.url + "/_bulk?filter_path=errors", data=b'{"create":{}}',
                      headers={"Content-Type": "application/x-ndjson"}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["type"]  # the whole error, as Elasticsearch renders it
