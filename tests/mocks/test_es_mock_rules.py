"""The Elasticsearch mock refuses what Elasticsearch refuses: a data stream document whose
``@timestamp`` has no value or several (DataStreamTimestampFieldMapper), an index or data stream
name that breaks Elasticsearch's naming rules (create index API reference, "Index names must meet the
following criteria"), and it lets the built-in ``logs`` template (priority 100) win over a user
template of lower priority, as the highest-priority matching template does in Elasticsearch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import Headers, MockRequest

DS = "logs-clawdstrike.security-default"
TS = "2026-11-26T08:00:00.123Z"
MISSING = "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing"
MULTIPLE = "[1:1] failed to parse: data stream timestamp field [@timestamp] encountered multiple values"
#: Strings.INVALID_FILENAME_CHARS as Elasticsearch prints it (sorted, quoted, comma-joined)
CHARS = "must not contain the following characters [' ','\"','*',',','/','<','>','?','\\','|']"


def _request(app: ElasticsearchMock, method: str, path: str, body: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = "application/x-ndjson" if path.endswith("_bulk") else "application/json"
    resp = app.handle(MockRequest(method, path, {}, Headers([("Content-Type", kind)]), raw, len(raw)))
    return resp.status, json.loads(resp.body) if resp.body else None


def _bulk_one(app: ElasticsearchMock, index: str, source: Any, kind: str = "create",
              doc_id: str = "1") -> dict[str, Any]:
    """The single item of a one-action ``_bulk`` (which must itself be a well-formed 200)."""
    body = (json.dumps({kind: {"_index": index, "_id": doc_id}}) + "\n" + json.dumps(source)
            + "\n").encode()
    status, answer = _request(app, "POST", "/_bulk", body)
    assert status == 200, answer
    assert app.stats()["spec_violations"] == []
    return answer["items"][0][kind]


def _outcome(item: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """(status, error type, error reason) of a bulk item: a readable mismatch when it succeeded."""
    error = item.get("error") or {}
    return item["status"], error.get("type"), error.get("reason")


def _put_template(app: ElasticsearchMock, name: str, body: dict[str, Any]) -> None:
    assert _request(app, "PUT", f"/_index_template/{name}", body)[0] == 200


# ---------------------------------------------------------------------- @timestamp values


@pytest.mark.parametrize(("ts", "reason"), [
    (None, MISSING),
    ([], MISSING),
    ([None], MISSING),
    ([TS, "2026-11-27T08:00:00Z"], MULTIPLE),
    ([[TS], [1795680000123]], MULTIPLE),  # nested arrays are flattened: two values
])
def test_a_data_stream_timestamp_without_exactly_one_value_is_refused(ts: Any, reason: str) -> None:
    """DataStreamTimestampFieldMapper.postParse: no value indexed for @timestamp (a null indexes
    nothing) is "data stream timestamp field [@timestamp] is missing", more than one "... encountered
    multiple values"; a per-item 400 document_parsing_exception, nothing stored."""
    app = ElasticsearchMock()
    item = _bulk_one(app, DS, {"@timestamp": ts, "message": "m"})
    assert _outcome(item) == (400, "document_parsing_exception", reason)
    assert item.get("failure_store") == "not_enabled"
    assert app.count(DS) == 0


def test_one_date_in_an_array_is_one_value_and_two_are_not() -> None:
    app = ElasticsearchMock()
    assert _bulk_one(app, DS, {"@timestamp": [TS], "message": "m"}, doc_id="a")["status"] == 201
    assert _bulk_one(app, DS, {"@timestamp": [TS, None], "message": "m"}, doc_id="b")["status"] == 201
    item = _bulk_one(app, DS, {"@timestamp": [TS, TS], "message": "m"}, doc_id="c")
    assert _outcome(item) == (400, "document_parsing_exception", MULTIPLE)
    assert sorted(app.docs(DS)) == ["a", "b"]


def test_a_null_timestamp_goes_to_an_enabled_failure_store() -> None:
    """Like a missing @timestamp, a null one is a document failure the failure store takes."""
    app = ElasticsearchMock(failure_store=["logs-*"])
    item = _bulk_one(app, DS, {"@timestamp": None, "message": "m"})
    assert (item["status"], item.get("failure_store")) == (201, "used")
    (failure,) = app.docs(f"{DS}::failures").values()
    assert failure["error"]["message"] == MISSING
    assert app.count(DS) == 0


# ---------------------------------------------------------------------- index names


@pytest.mark.parametrize(("name", "problem"), [
    ("Clawd-Upper", "must be lowercase"),
    ("clawd events", CHARS), ("clawd,events", CHARS), ("clawd*", CHARS), ("clawd?", CHARS),
    ('clawd"x', CHARS), ("clawd<x", CHARS), ("clawd>x", CHARS), ("clawd|x", CHARS),
    ("clawd\\x", CHARS), ("clawd/x", CHARS),
    ("clawd#x", "must not contain '#'"),
    ("clawd:x", "must not contain ':'"),
    ("-clawd", "must not start with '_', '-', or '+'"),
    ("_clawd", "must not start with '_', '-', or '+'"),
    ("+clawd", "must not start with '_', '-', or '+'"),
    (".", "must not be '.' or '..'"),
    ("..", "must not be '.' or '..'"),
    ("c" * 300, "index name is too long, (300 > 255)"),
    ("Clawd X", CHARS),  # Elasticsearch's order: the characters are checked before the case
])
def test_an_invalid_index_name_is_refused_per_item_and_not_created(name: str, problem: str) -> None:
    """MetadataCreateIndexService.validateIndexName, as auto-creation by _bulk runs it: a per-item
    400 invalid_index_name_exception naming the index (``index``, ``index_uuid`` '_na_')."""
    app = ElasticsearchMock()
    item = _bulk_one(app, name, {"message": "m"}, kind="index")
    assert item["status"] == 400 and item["_index"] == name
    assert item["error"] == {"type": "invalid_index_name_exception",
                             "reason": f"Invalid index name [{name}], {problem}",
                             "index_uuid": "_na_", "index": name}
    assert app.stats()["indices"] == {} and app.item_errors == {"400 invalid_index_name_exception": 1}


def test_an_index_name_is_limited_to_255_utf8_bytes_and_may_start_with_a_dot() -> None:
    app = ElasticsearchMock()
    for ok in ("c" * 255, "\u00e9" * 127, ".hidden-clawd", "clawd.events_x+y-1"):
        assert _bulk_one(app, ok, {"message": "m"}, kind="index")["status"] == 201, ok
    long_name = "\u00e9" * 128  # 128 characters, 256 bytes
    assert _outcome(_bulk_one(app, long_name, {"message": "m"}, kind="index")) == (
        400, "invalid_index_name_exception",
        f"Invalid index name [{long_name}], index name is too long, (256 > 255)")
    assert long_name not in app.indices and len(app.indices) == 4


def test_a_path_index_of_bulk_is_checked_as_well() -> None:
    app = ElasticsearchMock()
    body = b'{"index":{"_id":"1"}}\n{"message":"m"}\n'
    status, answer = _request(app, "POST", "/Clawd/_bulk", body)
    assert status == 200 and _outcome(answer["items"][0]["index"]) == (
        400, "invalid_index_name_exception", "Invalid index name [Clawd], must be lowercase")
    assert app.stats()["spec_violations"] == [] and app.indices == {}


@pytest.mark.parametrize(("name", "reason"), [
    ("logs-App-default", "data_stream [logs-App-default] must be lowercase"),
    ("logs-a#b-default", "data_stream [logs-a#b-default] must not contain '#'"),
])
def test_an_invalid_data_stream_name_is_refused_without_a_failure_store(name: str, reason: str
                                                                         ) -> None:
    """A name matching ``logs-*-*`` is auto-created as a data stream, whose name
    MetadataCreateDataStreamService checks with an IllegalArgumentException ("data_stream [<name>]
    ..."); the stream never exists, so neither does its failure store."""
    app = ElasticsearchMock(failure_store=["logs-*"])
    item = _bulk_one(app, name, {"@timestamp": TS, "message": "m"})
    assert (item["status"], item.get("error")) == (400, {"type": "illegal_argument_exception",
                                                         "reason": reason})
    assert "failure_store" not in item
    assert app.data_streams == {} and app.indices == {} and app.failure_indices == {}


def test_a_data_stream_whose_backing_index_name_is_too_long_is_refused() -> None:
    """The stream's name fits in 255 bytes but its first backing index, ``.ds-<name>-<date>-000001``
    (22 bytes more), does not: Elasticsearch refuses that index's name."""
    name = "logs-" + "a" * 240 + "-x"  # 247 bytes
    app = ElasticsearchMock()
    error = _bulk_one(app, name, {"@timestamp": TS, "message": "m"}).get("error") or {}
    assert error.get("type") == "invalid_index_name_exception"
    assert error["index"].startswith(f".ds-{name}-") and error["reason"].endswith("(269 > 255)")
    assert app.data_streams == {} and app.indices == {}


@pytest.mark.parametrize(("name", "problem"), [
    ("Clawd-000001", "must be lowercase"),
    ("..", "must not be '.' or '..'"),
    ("-clawd-000001", "must not start with '_', '-', or '+'"),
])
def test_put_index_with_an_invalid_name_is_a_request_400(name: str, problem: str) -> None:
    """``PUT /<index>`` (the rollover alias bootstrap among others) answers Elasticsearch's error
    body: the exception, with its ``index`` fields, in ``error`` and its ``root_cause``; no index, no
    alias."""
    app = ElasticsearchMock()
    status, body = _request(app, "PUT", f"/{name}", {"aliases": {"clawd": {"is_write_index": True}}})
    cause = {"type": "invalid_index_name_exception", "reason": f"Invalid index name [{name}], {problem}",
             "index_uuid": "_na_", "index": name}
    assert (status, body) == (400, {"error": {"root_cause": [cause], **cause}, "status": 400})
    assert app.indices == {} and app.aliases == {}
    assert _request(app, "PUT", "/clawd-000001", {"aliases": {"clawd": {}}})[0] == 200


# ---------------------------------------------------------------------- template priority


def test_a_user_template_below_100_does_not_hide_the_builtin_logs_template() -> None:
    """The built-in ``logs`` template (``logs-*-*``, data stream) has priority 100; a user ``logs-*``
    template at 10 loses to it, so ``logs-app-default`` stays a data stream, and only the winning
    template's mappings and settings apply to its backing index."""
    app = ElasticsearchMock()
    _put_template(app, "low", {"index_patterns": ["logs-*"], "priority": 10, "template": {
        "settings": {"index.lifecycle.name": "low"},
        "mappings": {"properties": {"n": {"type": "long"}}}}})
    item = _bulk_one(app, "logs-app-default", {"message": "m"}, kind="index")
    assert _outcome(item) == (400, "illegal_argument_exception", "only write ops with an op_type of "
                              "create are allowed in data streams")
    item = _bulk_one(app, "logs-app-default", {"message": "m"})
    assert _outcome(item) == (400, "document_parsing_exception", MISSING)
    assert _bulk_one(app, "logs-app-default", {"@timestamp": TS, "n": "x"})["status"] == 201
    (backing,) = app.data_streams["logs-app-default"]
    assert app.indices[backing].settings == {} and app.indices[backing].mapping["n"] == "keyword"
    assert "logs-app-default" not in app.indices
    # a name the built-in template does not match still gets the user template
    assert _outcome(_bulk_one(app, "logs-app", {"n": "x"}, kind="index"))[:2] == (
        400, "document_parsing_exception")


@pytest.mark.parametrize("data_stream", [False, True])
def test_the_priority_decides_between_user_templates_and_the_builtin_one(data_stream: bool) -> None:
    """Above 100 a user template wins (a classic index without ``data_stream``, a data stream with
    its own mappings with it), below it loses: for each name, the highest priority decides."""
    app = ElasticsearchMock()
    _put_template(app, "high", {"index_patterns": ["logs-web-*"], "priority": 200, **(
        {"data_stream": {}} if data_stream else {}), "template": {
        "mappings": {"properties": {"n": {"type": "long"}}}}})
    _put_template(app, "low", {"index_patterns": ["logs-*"], "priority": 50})
    item = _bulk_one(app, "logs-web-default", {"@timestamp": TS, "n": "x"})
    assert _outcome(item)[:2] == (400, "document_parsing_exception")
    assert _bulk_one(app, "logs-web-default", {"@timestamp": TS, "n": 1})["status"] == 201
    assert ("logs-web-default" in app.data_streams) is data_stream
    assert ("logs-web-default" in app.indices) is not data_stream
    assert _bulk_one(app, "logs-app-default", {"@timestamp": TS, "n": "x"})["status"] == 201
    assert "logs-app-default" in app.data_streams and "logs-app-default" not in app.indices


@pytest.mark.parametrize(("first", "second", "clash"), [
    (["clawd*"], ["clawd-events*"], True),       # the pattern a dated clawd-%Y.%m.%d used to get
    (["clawd-*.*.*"], ["clawd-events-*"], True),  # clawd-events-2026.11.01 matches both
    (["clawd-*"], ["other-*"], False),
    (["a*b"], ["*c"], False),
    (["a*b"], ["*b"], True),
])
def test_templates_of_the_same_priority_must_not_overlap(first: list[str], second: list[str],
                                                        clash: bool) -> None:
    """Elasticsearch refuses a second composable template of the same priority whose patterns overlap
    (MetadataIndexTemplateService: "... that have the same priority [501], multiple index templates
    may not match during index creation, please use a different priority"); another priority is fine."""
    app = ElasticsearchMock()
    assert _request(app, "PUT", "/_index_template/one", {"index_patterns": first, "priority": 501})[0] == 200
    status, body = _request(app, "PUT", "/_index_template/two", {"index_patterns": second, "priority": 501})
    if clash:
        assert status == 400 and body["error"]["type"] == "illegal_argument_exception"
        assert "same priority [501]" in body["error"]["reason"] and "[one]" in body["error"]["reason"]
        assert _request(app, "PUT", "/_index_template/two",
                        {"index_patterns": second, "priority": 502})[0] == 200
    else:
        assert status == 200
    # replacing a template under its own name is no clash
    assert _request(app, "PUT", "/_index_template/one", {"index_patterns": first, "priority": 501})[0] == 200


def test_a_user_template_at_the_builtin_logs_priority_that_overlaps_it_is_refused() -> None:
    app = ElasticsearchMock()
    status, body = _request(app, "PUT", "/_index_template/mine",
                            {"index_patterns": ["logs-mine-*"], "priority": 100})
    assert status == 400 and "[logs]" in body["error"]["reason"]
