"""The Elasticsearch mock's ``_bulk`` answers and state, request by request, against digests recorded
from its code before the lean fast path (commit 827575e, checked against a verbatim copy of that code
when the digests were made), in every mode and with and without ``filter_path``: the mock's fast path
must change what it costs, never what it answers.

Each scenario feeds the mock 60 random requests (duplicates, missing ``@timestamp``, index ops into a
data stream, unknown indices with auto-create off, deletes and updates of classic indices, aliases,
item faults, the failure store, several targets per request, framing errors) and digests the status,
headers and body bytes of every answer (the ``took`` field aside) with the whole bulk state after it.
Random ids and dates are made deterministic. Regenerate ``es-bulk-differential.json`` only for a
change of behaviour meant as one: ``python -m tests.mocks.test_es_bulk_differential --write``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import sys
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from outputs.mocks import elasticsearch as es_mod
from outputs.mocks import es_spec
from outputs.mocks.elasticsearch import ElasticsearchMock, ItemFault
from outputs.mocks.server import Headers, MockRequest

AGENT_FILTER = "errors,items.*.error,items.*.status,items.*.failure_store"
FILTERS = [None, AGENT_FILTER, "errors", "items.*._id", "items.**", "-took",
           "took,items.*.status", "*.*.*.status", "items.*.error.type", "items.*",
           "errors,items.*.status,-items.*._shards", "items.create.status,items.index._seq_no",
           "nothing", "items.*._shards.total", "items.*.result,errors", "**.status"]
TARGETS = ["logs-app-default", "logs-fs-default", "metrics-m-x", "classic", "tpl-a", "missing",
           "al", ".ds-logs-app-default-2026.11.26-000001", ""]
IDS = ["1", "2", "3", "4", "5"]
GOLDEN = Path(__file__).resolve().parent / "es-bulk-differential.json"

MODES: dict[str, dict[str, Any]] = {
    "lean": dict(check_spec=False, keep_sources=False, check_mappings=False, parse_sources=False),
    "lean_keep": dict(check_spec=False, keep_sources=True, check_mappings=False, parse_sources=False),
    "lean_mappings": dict(check_spec=False, keep_sources=False, check_mappings=True,
                          parse_sources=False),
    "lean_no_autocreate": dict(check_spec=False, keep_sources=False, check_mappings=False,
                               parse_sources=False, auto_create_index=False),
    "parsing": dict(check_spec=False),
    "full": dict(),
}


class _Ids:
    """``uuid.uuid4`` made a sequence, restarted before each mock handles a request."""

    def __init__(self) -> None:
        self.n = 0

    def uuid4(self) -> uuid.UUID:
        self.n += 1
        return uuid.UUID(int=self.n)


_IDS = _Ids()


@contextlib.contextmanager
def _deterministic() -> Iterator[_Ids]:
    """The mock module's ``uuid.uuid4`` made ``_IDS`` and its clock's date fixed, meanwhile."""
    fixed = time.gmtime(1795680000)
    clock = types.SimpleNamespace(monotonic=time.monotonic, strftime=time.strftime, gmtime=lambda: fixed)
    saved = es_mod.uuid, es_mod.time
    es_mod.uuid, es_mod.time = types.SimpleNamespace(uuid4=_IDS.uuid4), clock  # type: ignore[assignment]
    _IDS.n = 0
    try:
        yield _IDS
    finally:
        es_mod.uuid, es_mod.time = saved


@pytest.fixture
def ids() -> Iterator[_Ids]:
    with _deterministic() as fake:
        yield fake


def _setup(app: ElasticsearchMock) -> None:
    """Templates (one data stream family with its failure store on, one classic with mappings), an
    alias, and item faults that only some documents or targets hit."""
    put = [("/_index_template/metrics", {"index_patterns": ["metrics-*-*"], "data_stream": {},
                                         "priority": 200, "template": {"data_stream_options": {
                                             "failure_store": {"enabled": True}}}}),
           ("/_index_template/tpl", {"index_patterns": ["tpl-*"], "priority": 10, "template": {
               "mappings": {"properties": {"n": {"type": "long"}, "ip": {"type": "ip"}}}}}),
           ("/real", {"aliases": {"al": {}}})]
    for path, body in put:
        r = app.handle(MockRequest("PUT", path, {}, Headers(), json.dumps(body).encode()))
        assert r.status == 200, r.body


def _state(app: ElasticsearchMock) -> dict[str, Any]:
    return {"counters": dict(app.counters), "item_errors": dict(app.item_errors),
            "indices": {n: (i.name, i.data_stream, dict(i.docs), dict(i.versions), dict(i.mapping),
                            dict(i.settings), i.seq_no, i.uuid) for n, i in app.indices.items()},
            "data_streams": dict(app.data_streams), "failure_indices": dict(app.failure_indices),
            "aliases": dict(app.aliases), "spec_violations": list(app.spec_violations),
            "item_faults": [(f.count, f.after) for f in app.item_faults]}


def _source(rnd: random.Random, kind: str, clean: bool) -> bytes:
    """A source line; ``clean``: only what the vendor spec accepts (objects, update actions)."""
    if kind == "update":
        return rnd.choice([*([] if clean else [b'{"script":"x"}', b'[1]']),
                           b'{"doc":{"n":2}}', b'{"doc":{"n":"x"},"doc_as_upsert":true}',
                           b'{"upsert":{"@timestamp":"2026-01-01","n":1}}',
                           b'{"doc":{"user":{"name":"bad"}}}'])
    return rnd.choice([
        b'{"@timestamp":"2026-11-26T08:00:05.005Z","message":"m","n":1}',
        b'{"message":"m","@timestamp":"2026-11-26T08:00:05.005Z"}',
        b'{"message":"no timestamp"}',
        b'{"@timestamp": "2026-11-26"}',  # no '":' right after the key: lean mode calls it missing
        b'{"@timestamp":"2026-11-26T08:00:05.005Z","user":{"name":"bad"}}',
        b'{"@timestamp":"2026-11-26T08:00:05.005Z","n":"not a number","ip":"host"}',
        b'{"@timestamp":"yesterday"}',
        b'{"@timestamp":"2026-11-26T08:00:05.005Z","x":"\\u00e9\xc3\xa9"}',
        *([] if clean else [b' {"@timestamp":"2026-11-26T08:00:05.005Z"}', b'["@timestamp":]',
                            b'"@timestamp":1', b'not json']),
    ])


def _action(rnd: random.Random, path_index: str | None, clean: bool) -> list[bytes]:
    kind = rnd.choice(["create"] * 6 + ["index", "index", "update", "delete"])
    meta: dict[str, Any] = {}
    if not (path_index and rnd.random() < 0.5):
        meta["_index"] = rnd.choice(TARGETS[:3] * 3 + TARGETS)
    r = rnd.random()
    if r < 0.85:
        meta["_id"] = rnd.choice(IDS) if rnd.random() < 0.5 else f"u{rnd.randrange(10**9)}"
    elif r < 0.93 and not clean:
        meta["_id"] = rnd.randrange(3)  # not a string
    line = json.dumps({kind: meta}, separators=(",", ":") if rnd.random() < 0.7 else None).encode()
    if kind == "delete":
        return [line]
    return [line, _source(rnd, kind, clean)]


def _body(rnd: random.Random, path_index: str | None, clean: bool) -> bytes:
    lines = [line for _ in range(rnd.randrange(1, 12)) for line in _action(rnd, path_index, clean)]
    out = []
    for line in lines:
        out.append(line + (b"\r\n" if rnd.random() < 0.1 else b"\n"))
        if rnd.random() < 0.05:
            out.append(rnd.choice([b"\n", b"  \n", b"\t\r\n", b"\r\n"]))  # not lines at all
    body = b"".join(out)
    r = 1.0 if clean else rnd.random()
    if r < 0.03:
        body = body.rstrip(b"\n")  # no final newline
    elif r < 0.06:
        body += rnd.choice([b'{"create":{"_index":"x"}}\n', b'{"nope":{}}\n{}\n',
                            b'{"index":{},"create":{}}\n{}\n', b'{"index":1}\n{}\n', b'[]\n',
                            b'not json\n{}\n'])
    return body


def _request(rnd: random.Random, clean: bool) -> MockRequest:
    path_index = rnd.choice([None, None, None, "classic", "logs-app-default", "al"])
    path = f"/{path_index}/_bulk" if path_index else "/_bulk"
    fp = rnd.choice(FILTERS + [AGENT_FILTER] * 4)
    query = {"filter_path": fp} if fp is not None else {}
    return MockRequest("POST", path, query, Headers([("Content-Type", "application/x-ndjson")]),
                       _body(rnd, path_index, clean))


def _answer(app: ElasticsearchMock, req: MockRequest) -> tuple[Any, ...]:
    """(status, headers, body with ``took`` zeroed), or the exception the mock raised: the server
    answers 500 for it, and a fast path must fail where (and as) the reference does."""
    try:
        resp = app.handle(req)
    except Exception as exc:  # e.g. an update of a stored source that was not JSON (keep_sources)
        return "raised", type(exc).__name__, str(exc)
    return resp.status, dict(resp.headers), re.sub(rb'"took":\d+', b'"took":0', resp.body)


def _canonical(o: Any) -> Any:
    """A JSON-able stand-in for what ``_state`` and ``_answer`` hold (bytes, tuples, the not-JSON
    marker), so a scenario's answers and states can be digested."""
    if o is es_spec.NOT_JSON:
        return "<NOT_JSON>"
    if isinstance(o, bytes | bytearray):
        return {"bytes": bytes(o).hex()}
    if isinstance(o, tuple | list):
        return [_canonical(x) for x in o]
    if isinstance(o, dict):
        return [[_canonical(k), _canonical(v)] for k, v in o.items()]
    return o


def scenario(mode: str, seed: int) -> list[str]:
    """The digest of (answer, whole bulk state) after each of 60 random requests to a mock in
    ``mode`` (item faults added after the 20th and 40th). Call with uuid and time made deterministic
    (the ``ids`` fixture, or ``_deterministic``)."""
    rnd = random.Random(seed * 1000 + len(mode))
    app = ElasticsearchMock(**MODES[mode], failure_store=["logs-fs-*"])
    _IDS.n = 0
    _setup(app)
    out = []
    for n in range(60):
        if n in (20, 40):  # item faults: by field (persistent), a counted 429, one limited to a target
            for f in (ItemFault(field="user.name", value="bad"),
                      ItemFault(status=429, type="es_rejected_execution_exception", count=2,
                                after=rnd.randrange(5)),
                      ItemFault(type="ingest_exception", index="logs-fs", count=1)):
                app.add_item_fault(f)
        req = _request(rnd, clean=mode == "full" and rnd.random() < 0.8)
        _IDS.n = 0
        record = [_canonical(_answer(app, req)), _canonical(_state(app))]
        out.append(hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16])
    assert app.counters["actions"] > 200
    return out


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("seed", range(4))
def test_the_mock_answers_every_bulk_request_as_before(ids: _Ids, mode: str, seed: int) -> None:
    expected = json.loads(GOLDEN.read_text())[f"{mode}/{seed}"]
    got = scenario(mode, seed)
    for n, (g, w) in enumerate(zip(got, expected, strict=True)):
        assert g == w, f"{mode}/{seed}: request {n} is answered differently, or leaves another state"


def _lean_answer(body: bytes, filter_path: str | None = AGENT_FILTER, **config: Any
                 ) -> tuple[int, Any]:
    app = ElasticsearchMock(**{**MODES["lean"], **config})
    query = {"filter_path": filter_path} if filter_path else {}
    resp = app.handle(MockRequest("POST", "/_bulk", query,
                                  Headers([("Content-Type", "application/x-ndjson")]), body))
    return resp.status, json.loads(resp.body)


DS = "logs-clawdstrike.security-default"
TS = b'{"@timestamp":"2026-11-26T08:00:05.005Z","message":"m"}'


def _create(doc_id: str, index: str = DS) -> bytes:
    return json.dumps({"create": {"_index": index, "_id": doc_id}}).encode()


def test_the_agents_request_in_lean_mode_by_value(ids: _Ids) -> None:
    """Explicit answers (not only agreement with the reference) for the benchmark's request shape."""
    body = b"\n".join([_create("a"), TS, _create("b"), TS, _create("a"), TS,
                       _create("c"), b'{"message":"m"}',
                       b'{"index":{"_index":"' + DS.encode() + b'","_id":"d"}}', TS,
                       _create("e", "classic"), b'{"x":1}']) + b"\n"
    assert _lean_answer(body) == (200, {"errors": True, "items": [
        {"create": {"status": 201}}, {"create": {"status": 201}},
        {"create": {"status": 409, "error": {
            "type": "version_conflict_engine_exception",
            "reason": "[a]: version conflict, document already exists (current version [1])",
            "index_uuid": "00000000000000000000000000000001"[:22], "shard": "0",
            "index": f".ds-{DS}-2026.11.26-000001"}}},
        {"create": {"status": 400, "error": {
            "type": "document_parsing_exception",
            "reason": "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing"},
            "failure_store": "not_enabled"}},
        {"index": {"status": 400, "error": {
            "type": "illegal_argument_exception",
            "reason": "only write ops with an op_type of create are allowed in data streams"}}},
        {"create": {"status": 201}}]})
    status, full = _lean_answer(b"\n".join([_create("a"), TS, _create("b"), TS]) + b"\n", None)
    assert status == 200
    full.pop("took")
    assert full == {"errors": False, "items": [
        {"create": {"_index": f".ds-{DS}-2026.11.26-000001", "_id": i, "_version": 1,
                    "result": "created", "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": n, "_primary_term": 1, "status": 201}} for n, i in enumerate("ab")]}


def test_lean_mode_framing_errors_by_value(ids: _Ids) -> None:
    assert _lean_answer(_create("a") + b"\n")[1]["error"]["reason"] == (
        "line [1]: create without a source line")
    assert _lean_answer(b"\n\n" + _create("a") + b"\n" + TS + b"\n \n[1]\n{}\n")[1]["error"][
        "reason"] == "Malformed action/metadata line [3], expected a single action"
    assert _lean_answer(_create("a") + b"\n" + TS)[1]["error"]["reason"] == (
        "The bulk request must be terminated by a newline [\\n]")
    # \r\n lines and whitespace-only lines are no lines: the source after them is still found
    status, answer = _lean_answer(_create("a") + b"\r\n \t\r\n\n" + TS + b"\r\n")
    assert (status, answer) == (200, {"errors": False, "items": [{"create": {"status": 201}}]})


def test_failure_store_and_auto_create_off_by_value(ids: _Ids) -> None:
    body = b"\n".join([_create("a", "logs-x-y"), b'{"message":"m"}', _create("b", "nowhere"),
                       b"{}"]) + b"\n"
    status, answer = _lean_answer(body, failure_store=["logs-*"], auto_create_index=False)
    assert status == 200
    assert answer == {"errors": True, "items": [
        {"create": {"status": 201, "failure_store": "used"}},
        {"create": {"status": 404, "error": {"type": "index_not_found_exception",
                                             "reason": "no such index [nowhere]"}}}]}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.mocks.test_es_bulk_differential --write")
    with _deterministic():
        GOLDEN.write_text(json.dumps({f"{m}/{s}": scenario(m, s) for m in sorted(MODES) for s in range(4)},
                                     indent=0) + "\n")
