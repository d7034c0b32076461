"""An Elasticsearch mock that behaves like the real ``_bulk`` API, and checks every exchange against
Elasticsearch's own spec.

What it reproduces (docs-bulk.html; ../shared/reference/delivery-peers.md §4.2; the ``_bulk``
operation description in ../shared/vendor-specs/elasticsearch):

- NDJSON bodies (gzip too), ``index``/``create``/``update``/``delete``, one result per action in order,
  HTTP 200 with ``errors: true`` when items fail, the final newline required.
- ``create`` of an existing ``_id``: per-item 409 ``version_conflict_engine_exception``, once the
  document has mapped (a document that does not map is its 400 first, as Elasticsearch parses
  before its engine looks the id up).
- Templates: a new index or data stream gets the matching composable template of the highest
  priority, Elasticsearch's built-in ``logs`` template (``logs-*-*``, data stream, priority 100)
  included: a user template must outrank it to make such a name a classic index.
- Data streams: a ``create`` into a name whose template has ``data_stream`` (``logs-*-*`` by default)
  auto-creates one with a ``.ds-`` backing index; any other op on a data stream is a per-item 400, and
  so is a document whose ``@timestamp`` has no value (absent, null, ``[]``: "is missing"), more than
  one ("encountered multiple values", DataStreamTimestampFieldMapper) or one that is not a date:
  "Every document indexed to a data stream must contain a @timestamp field, mapped as a date or
  date_nanos field type. If the index template doesn't specify a mapping for the @timestamp field,
  Elasticsearch maps @timestamp as a date field with default options" (Data streams, Elasticsearch
  reference; elastic/elasticsearch#59244), i.e. format ``strict_date_optional_time||epoch_millis``
  (the ``date`` field type's default), and never ``ignore_malformed`` (elastic/elasticsearch#96051).
- Index names: an index auto-created by ``_bulk`` or made by ``PUT /<index>`` must meet "Index names
  must meet the following criteria" (create index API reference: lowercase; none of ``\\ / * ? " < >
  | , #``, a space or ``:``; not starting with ``-``, ``_``, ``+``; not ``.`` or ``..``; at most 255
  UTF-8 bytes), else ``invalid_index_name_exception`` (per item, or the request's 400); an
  auto-created data stream's name is checked as Elasticsearch checks it (``illegal_argument_exception``
  "data_stream [<name>] must be lowercase"...).
- Mappings: a template's explicit field types and dynamically inferred ones are enforced, so a wrong
  type (an IP field holding a host name, an object where a value was seen) is a per-item 400
  ``document_parsing_exception`` as in Elasticsearch. Injectable per-item errors: ``ItemFault``.
- Failure store (elastic.co/docs/manage-data/data-store/data-streams/failure-store): for a data
  stream whose failure store is enabled (``failure_store`` patterns, or its template's
  ``data_stream_options.failure_store.enabled``), a ``create`` that fails with a per-item 400 (a
  mapping conflict, a missing ``@timestamp``, an injected ingest or parsing fault) is stored in the
  ``.fs-<stream>-<date>-000001`` failure index instead and answered as a success, ``status`` 201 with
  ``failure_store: used`` (so ``errors`` stays false); without one, the rejected item carries
  ``failure_store: not_enabled`` (BulkOperation.processFailure; elastic/elasticsearch#112816). 409
  and 429 are never redirected ("Failure stores do not capture failures caused by backpressure or
  document version conflicts"). ``docs("<stream>::failures")`` reads the failure documents.
- ``http.max_content_length`` (100mb by default; applies to the decompressed body) -> 413 with an
  empty body (elastic/elasticsearch#2902, #76705).
- ``filter_path`` response filtering on successful answers (outputs.mocks.es_filter_path), as every
  Elasticsearch API has it: the agent's ``_bulk`` asks for ``errors`` and each item's ``status``,
  ``error`` and ``failure_store`` only (Logstash and Beats ask for the first three).
- Auth: API key (the header's credential must be base64 of 'id:key', as Elasticsearch decodes it),
  basic, bearer; 401 with ``WWW-Authenticate``; an ``ingest_only`` principal may write
  documents but gets 403 on template, ILM and index-creation PUTs (a typical ingest API key).
- ``_cluster/health``, ``_index_template``, ``_ilm/policy``, ``<index>/_ilm/explain`` (whether the
  index's policy can run: a rollover action without a data stream or rollover alias is ILM's ERROR
  step), ``_alias``, index creation,
  ``<index>/_count``, ``<index>/_doc/<id>``; ``docs(index)`` and ``/_mock/docs`` let tests read what
  was stored.

Every request to ``_bulk`` and every response the app produces are checked with
``outputs.mocks.es_spec``; a violation answers 400 (request) or 500 (response) with
"mock spec violation" and is recorded in ``stats()["spec_violations"]``. A ``_bulk`` request answered
by an injected fault (429, 503, 401, a reset) is checked too (``check_faulted``): its violations are
recorded, and the fault still answers. The one answer not checked is the 413, which has no body in
Elasticsearch either.

For leak tests only, ``echo_headers`` (off by default; outputs.mocks.server's "Credential echo")
makes every error (a request's, a scheduled fault's, and each failed ``_bulk`` item's, its root
causes included) carry the echoed header values and the credential its ``Authorization`` holds
(an API key's 'id:key', basic's 'user:password', the bearer token) at the end of its ``reason``
and of its ``type``, so a client matching types exactly no longer recognizes them. Added after the
vendor-spec check; statuses stay as they were.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import fnmatch
import functools
import ipaddress
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn

import orjson

from outputs.mocks import es_filter_path, es_spec
from outputs.mocks.server import Fault, MockApp, MockRequest, MockResponse

log = logging.getLogger("clawd_agent.mocks.elasticsearch")

DEFAULT_MAX_CONTENT_LENGTH = 100 * 1024 * 1024
_BULK = re.compile(r"^/(?:(?P<index>[^/_][^/]*)/)?_bulk$")
_WWW_AUTHENTICATE = 'Basic realm="security", charset="UTF-8", Bearer realm="security", ApiKey'
_NUMERIC = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float",
                      "scaled_float", "unsigned_long"})
_MISSING = object()
#: Elasticsearch's built-in ``logs`` composable template (stack templates, on by default): "The
#: managed logs index template has a priority of 100" (elastic.co/docs/solutions/observability/logs/
#: logs-index-template-defaults), pattern ``logs-*-*``, data stream enabled.
_BUILTIN_LOGS_TEMPLATE: dict[str, Any] = {"index_patterns": ["logs-*-*"], "data_stream": {},
                                          "priority": 100}


@dataclass
class ItemFault:
    """A per-item error the mock returns instead of indexing an action.

    With ``field`` (dotted), it hits documents having that field (equal to ``value`` when given):
    a mapping rejection that persists (``count`` -1). Without, it hits the next ``count`` actions
    after skipping ``after`` (e.g. 429 ``es_rejected_execution_exception`` for a write queue that is
    full). ``index`` limits it to targets starting with that prefix."""

    status: int = 400
    type: str = "document_parsing_exception"
    reason: str = ""
    field: str = ""
    value: Any = _MISSING
    count: int = -1
    after: int = 0
    index: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemFault:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"item fault: unknown keys {sorted(unknown)}")
        kw = dict(d)
        if "count" not in kw and not kw.get("field"):
            kw["count"] = 1
        return cls(**kw)

    def matches(self, index: str, source: Any) -> bool:
        if self.index and not index.startswith(self.index):
            return False
        if self.field:
            got = _get_dotted(source, self.field)
            return got is not _MISSING and (self.value is _MISSING or got == self.value)
        return True


@dataclass
class _Index:
    name: str  # the concrete index (a data stream's backing index)
    data_stream: str = ""
    docs: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)  # dotted field -> type
    settings: dict[str, Any] = field(default_factory=dict)  # flat: "index.lifecycle.name" -> value
    seq_no: int = 0
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])


class ElasticsearchMock(MockApp):
    """The ``_bulk`` mock. Credentials: ``api_keys`` ('id:key' or the encoded form), ``users``
    ({name: password}), ``bearer_tokens``; none configured = security off. ``ingest_only`` lists
    credentials (any form) that may not manage templates, ILM policies or indices.
    ``failure_store``: data stream name patterns whose failure store is enabled (module docstring)."""

    limit_decoded_only = True  # http.max_content_length: the decompressed body (docstring)

    def __init__(self, *, api_keys: Iterable[str] = (), users: Mapping[str, str] | None = None,
                 bearer_tokens: Iterable[str] = (), ingest_only: Iterable[str] = (),
                 max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH, check_spec: bool = True,
                 spec_path: str | None = None, keep_sources: bool = True,
                 auto_create_index: bool = True, check_mappings: bool = True,
                 health: str = "green", parse_sources: bool = True,
                 failure_store: Iterable[str] = (), echo_headers: Iterable[str] = ()):
        super().__init__()
        self.echo_headers = tuple(echo_headers)
        if not parse_sources and check_spec:
            raise ValueError("the vendor-spec check reads every source: parse_sources=False needs "
                             "check_spec=False")
        self.max_body = max_content_length
        self._api_keys = {_decode_api_key(k) for k in api_keys}
        self._users = dict(users or {})
        self._bearer = set(bearer_tokens)
        #: principals: 'id:key' for API keys, the user name, or the bearer token
        self._ingest_only = ({*ingest_only} | {_decode_api_key(k) for k in ingest_only}) - {""}
        self.keep_sources = keep_sources
        self.auto_create_index = auto_create_index
        #: Off only for throughput benchmarks: the type checks cost the mock more than the rest.
        self.check_mappings = check_mappings
        self.health = health
        self.failure_store_patterns = list(failure_store)
        #: Off only for throughput benchmarks (bench/delivery.py): a source stays the bytes it came as
        #: unless something must read it (an item fault, an update, the mapping check, keep_sources), so
        #: answering costs the action line's parse alone (parsing a ~1.5 KB ECS document costs more than
        #: the rest of the item). A data stream's ``@timestamp`` is then found by a byte search.
        self.parse_sources = parse_sources
        self.spec = es_spec.load_cached(spec_path) if check_spec else None
        #: Test hook: rewrites a bulk response body before it is checked (to prove the check works).
        self.response_filter: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.reset()

    # ------------------------------------------------------------------ state and stats

    def reset(self) -> None:
        with self._lock:
            self.indices: dict[str, _Index] = {}
            self.data_streams: dict[str, list[str]] = {}
            self.failure_indices: dict[str, str] = {}  # data stream -> its failure store index
            self.aliases: dict[str, str] = {}
            self.templates: dict[str, dict[str, Any]] = {}
            self.ilm_policies: dict[str, dict[str, Any]] = {}
            self.item_faults: list[ItemFault] = []
            self.spec_violations: list[str] = []
            self.counters: dict[str, int] = {"bulk_requests": 0, "actions": 0, "created": 0,
                                             "updated": 0, "deleted": 0, "conflicts": 0,
                                             "bytes_decoded": 0, "auth_failures": 0,
                                             "failure_store": 0}
            self.item_errors: dict[str, int] = {}
            self.last_auth = ""

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counters, "docs": sum(len(i.docs) for i in self.indices.values()),
                    "indices": {n: len(i.docs) for n, i in self.indices.items()},
                    "data_streams": {n: list(b) for n, b in self.data_streams.items()},
                    "templates": sorted(self.templates), "ilm_policies": sorted(self.ilm_policies),
                    "item_errors": dict(self.item_errors),
                    "spec_checked": self.spec is not None,
                    "spec_violations": list(self.spec_violations)}

    def add_item_fault(self, fault: ItemFault | Mapping[str, Any]) -> None:
        with self._lock:
            self.item_faults.append(fault if isinstance(fault, ItemFault) else
                                    ItemFault.from_dict(fault))

    def docs(self, target: str) -> dict[str, Any]:
        """Stored sources by ``_id`` of an index, alias or data stream (all backing indices)."""
        with self._lock:
            out: dict[str, Any] = {}
            for idx in self._concrete(target):
                out.update(idx.docs)
            return out

    def count(self, target: str) -> int:
        return len(self.docs(target))

    def _concrete(self, target: str) -> list[_Index]:
        stream, _, selector = target.partition("::")
        if selector == "failures":  # Elasticsearch's selector for a data stream's failure store
            name = self.failure_indices.get(stream)
            return [self.indices[name]] if name in self.indices else []
        names = self.data_streams.get(target) or (
            [self.aliases[target]] if target in self.aliases else [target])
        if "*" in target:
            names = [n for n in self.indices if fnmatch.fnmatchcase(n, target)] + [
                b for ds, bs in self.data_streams.items() if fnmatch.fnmatchcase(ds, target) for b in bs]
        return [self.indices[n] for n in names if n in self.indices]

    # ------------------------------------------------------------------ dispatch

    def handle(self, req: MockRequest) -> MockResponse:
        resp = self._route(req)
        filter_path = req.query.get("filter_path")
        # _bulk filters its own answer (after the spec check of the whole one, without a re-parse)
        if (filter_path and 200 <= resp.status < 300 and resp.body[:1] == b"{"
                and not _BULK.match(req.path)):
            resp.body = orjson.dumps(es_filter_path.compile_filter(filter_path)(orjson.loads(resp.body)))
        return resp

    def _route(self, req: MockRequest) -> MockResponse:
        principal = self._authenticate(req)
        if principal is None:
            return self._error(401, "security_exception",
                               f"missing authentication credentials for REST request [{req.path}]",
                               headers={"WWW-Authenticate": _WWW_AUTHENTICATE})
        if req.decode_error:
            return self._error(400, "parse_exception", req.decode_error)
        method, path = req.method, req.path
        bulk = _BULK.match(path)
        if bulk and method in ("POST", "PUT"):
            return self._bulk(req, bulk.group("index"))
        if path == "/" and method in ("GET", "HEAD"):
            return MockResponse.json(200, {"name": "mock-node", "cluster_name": "mock",
                                           "version": {"number": "9.4.0"},
                                           "tagline": "You Know, for Search"})
        if path == "/_cluster/health" and method == "GET":
            return MockResponse.json(200, {"cluster_name": "mock", "status": self.health,
                                           "number_of_nodes": 1, "active_shards_percent_as_number":
                                           100.0 if self.health == "green" else 50.0})
        parts = [p for p in path.split("/") if p]
        if method == "PUT" and principal in self._ingest_only and (
                parts[:1] in (["_index_template"], ["_ilm"]) or len(parts) == 1):
            action = {"_index_template": "indices:admin/index_template/put",
                      "_ilm": "cluster:admin/ilm/put"}.get(parts[0], "indices:admin/create")
            return self._error(403, "security_exception",
                               f"action [{action}] is unauthorized for the mock principal")
        if len(parts) == 2 and parts[0] == "_index_template":
            return self._store_named(self.templates, parts[1], req, "index_template")
        if len(parts) == 3 and parts[:2] == ["_ilm", "policy"]:
            return self._store_named(self.ilm_policies, parts[2], req, "policy")
        if len(parts) == 2 and parts[0] == "_alias" and method in ("GET", "HEAD"):
            return self._get_alias(parts[1])
        if len(parts) == 1 and method == "PUT" and not parts[0].startswith("_"):
            return self._create_index(parts[0], req)
        if len(parts) == 3 and parts[1:] == ["_ilm", "explain"] and method == "GET":
            return self._ilm_explain(parts[0])
        if len(parts) == 2 and parts[1] == "_count" and method in ("GET", "POST"):
            if not self._concrete(parts[0]) and parts[0] not in self.data_streams:
                return self._index_not_found(parts[0])
            return MockResponse.json(200, {"count": self.count(parts[0]), "_shards": {
                "total": 1, "successful": 1, "skipped": 0, "failed": 0}})
        if len(parts) == 3 and parts[1] == "_doc" and method == "GET":
            docs = self.docs(parts[0])
            if parts[2] in docs:
                return MockResponse.json(200, {"_index": parts[0], "_id": parts[2], "found": True,
                                               "_source": docs[parts[2]]})
            return MockResponse.json(404, {"_index": parts[0], "_id": parts[2], "found": False})
        return self._error(400 if method != "GET" else 404, "illegal_argument_exception",
                           f"mock: no handler for [{method} {path}]")

    def control(self, req: MockRequest) -> MockResponse | None:
        if req.path == "/_mock/item_faults" and req.method == "POST":
            data = json.loads(req.body or b"[]")
            for d in data if isinstance(data, list) else [data]:
                self.add_item_fault(d)
            return MockResponse.json(200, {"item_faults": len(self.item_faults)})
        if req.path == "/_mock/item_faults" and req.method == "DELETE":
            with self._lock:
                self.item_faults.clear()
            return MockResponse.json(200, {"item_faults": 0})
        if req.path == "/_mock/docs" and req.method == "POST":
            target = json.loads(req.body or b"{}").get("index", "*")
            return MockResponse.json(200, {"docs": self.docs(target)})
        return None

    def check_faulted(self, req: MockRequest) -> None:
        """A ``_bulk`` request answered by an injected fault (429, 503, 401, a reset) is checked
        against the spec all the same, its violations recorded: a client must not get away with a
        malformed request because the mock happened to refuse it."""
        if self.spec is None or req.decode_error or not _BULK.match(req.path):
            return
        if req.method not in ("POST", "PUT"):
            return
        problems = self.spec.check_request(req.method, req.path, req.query, req.headers, req.body)
        if problems:
            self._record_violation("request (answered by an injected fault)", problems)

    def credentials_in(self, authorization: str) -> list[str]:
        credential = _credential(authorization)[1]
        return [credential] if credential else []

    def echo_response(self, req: MockRequest, resp: MockResponse) -> MockResponse:
        """Every error of ``resp`` with ``echo_text(req)`` at the end of its type and reason (module
        docstring): a request's error and its root causes, or each failed item of a ``_bulk``."""
        if not self.echo_headers or resp.body[:1] != b"{":
            return resp
        echo = self.echo_text(req)
        try:
            body = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            return resp
        if not echo or not isinstance(body, dict):
            return resp
        errors: list[Any] = []
        if isinstance(body.get("error"), dict):
            errors += [body["error"], *(body["error"].get("root_cause") or [])]
        for item in body.get("items") or []:
            for result in item.values() if isinstance(item, dict) else ():
                if isinstance(result, dict) and isinstance(result.get("error"), dict):
                    errors.append(result["error"])
        if not errors:
            return resp
        for err in errors:
            if isinstance(err, dict):
                for key in ("type", "reason"):
                    if isinstance(err.get(key), str):
                        err[key] = f"{err[key]} {echo}"
        return MockResponse(resp.status, orjson.dumps(body), dict(resp.headers))

    def fault_response(self, fault: Fault) -> MockResponse:
        kinds = {429: "es_rejected_execution_exception", 503: "unavailable_shards_exception",
                 401: "security_exception", 403: "security_exception"}
        return self._error(fault.status, kinds.get(fault.status, "exception"),
                           f"injected fault {fault.status}")

    def too_large(self, length: int) -> MockResponse:
        with self._lock:
            self.counters["too_large"] = self.counters.get("too_large", 0) + 1
        return MockResponse(413, b"", {})  # as Elasticsearch: status only, empty body

    # ------------------------------------------------------------------ auth

    def _authenticate(self, req: MockRequest) -> str | None:
        """The principal ('' when security is off), or None for 401."""
        if not (self._api_keys or self._users or self._bearer):
            return ""
        scheme, credential = _credential(req.headers.get("Authorization") or "")
        principal = None
        if scheme == "apikey":
            principal = credential if credential in self._api_keys else None
        elif scheme == "basic":
            user, sep, pw = credential.partition(":")
            principal = user if sep and user in self._users and self._users[user] == pw else None
        elif scheme == "bearer":
            principal = credential if credential in self._bearer else None
        with self._lock:
            self.last_auth = scheme
            if principal is None:
                self.counters["auth_failures"] += 1
        return principal

    # ------------------------------------------------------------------ bulk

    def _bulk(self, req: MockRequest, path_index: str | None) -> MockResponse:
        started = time.monotonic()
        with self._lock:
            self.counters["bulk_requests"] += 1
            self.counters["bytes_decoded"] += len(req.body)
        # Parsed once, for the spec check and the mock alike (lean mode: action lines only, below)
        lines = es_spec.parse_ndjson(req.body) if self.parse_sources else None
        if self.spec is not None:  # lean mode has none, unless its attributes were changed
            problems = self.spec.check_request(req.method, req.path, req.query, req.headers, req.body,
                                               es_spec.ndjson_lines(req.body) if lines is None
                                               else lines)
            if problems:
                return self._violation(400, "request", problems)
        if not req.body.endswith(b"\n"):
            return self._error(400, "illegal_argument_exception",
                               "The bulk request must be terminated by a newline [\\n]")
        filter_path = req.query.get("filter_path")
        try:
            if lines is not None:
                actions = _parse_actions(lines)
            else:
                lean_actions = _lean_actions(req.body)
        except ValueError as exc:
            return self._error(400, "x_content_parse_exception", str(exc))
        invalid = _validation_errors(actions if lines is not None else lean_actions)
        if invalid:  # BulkRequest.validate: every action's, before any runs
            return self._error(400, "action_request_validation_exception", "Validation Failed: " + "".join(
                f"{k}: {problem};" for k, problem in enumerate(invalid, 1)))
        with self._lock:
            if lines is not None:
                items = [{kind: self._apply(kind, meta, source, path_index)}
                         for kind, meta, source in actions]
                errors = any("error" in next(iter(i.values())) for i in items)
            else:
                # the whole answer is checked or rewritten: every item must be there in full
                whole = self.spec is not None or self.response_filter is not None
                created = _created_projection(filter_path) if filter_path and not whole else None
                items, errors = self._apply_lean(lean_actions, req.body, path_index, created)
            self.counters["actions"] += len(items)
        body = {"errors": errors, "took": int((time.monotonic() - started) * 1000), "items": items}
        if self.response_filter is not None:
            body = self.response_filter(body)
        if self.spec is not None:
            problems = self.spec.check_response(200, body, len(items))
            if problems:
                return self._violation(500, "response", problems)
        if filter_path:
            body = es_filter_path.compile_filter(filter_path)(body)
        return MockResponse(200, orjson.dumps(body), {"Content-Type": "application/json"})

    def _apply_lean(self, actions: list[tuple[str, dict[str, Any], int, int]], body: bytes,
                    path_index: str | None, created_item: Any) -> tuple[list[Any], bool]:
        """(items, errors) of the lean mode's actions (``_lean_actions``; the lock held). The
        benchmark's every item, a ``create`` of a new ``_id`` into an existing data stream with its
        ``@timestamp``, is decided here in place, as ``_apply`` decides it but without its calls,
        and answered with ``created_item`` (what ``filter_path`` keeps of it, ``_created_projection``)
        when there is one; any other action goes through ``_apply``. The checks before the write
        have no side effects, so an action that fails one is simply handed to ``_apply``. Without
        item faults, mapping checks or kept sources only (those read the source)."""
        items: list[Any] = []
        append = items.append
        errors = False
        created = 0
        fast = not (self.item_faults or self.check_mappings or self.keep_sources)
        streams: dict[str, _Index] = {}  # data stream -> its write index (fixed within a request)
        data_streams = self.data_streams
        find = body.find
        try:
            for kind, meta, start, end in actions:
                if fast and kind == "create":
                    target = meta.get("_index") or path_index
                    doc_id = meta.get("_id")
                    idx = streams.get(target) if type(target) is str else None
                    if idx is None and type(target) is str and target in data_streams:
                        idx = streams[target] = self._stream_write_index(target)
                    # _timestamp_problem of the source line (the key found), read in place ('{' is 123)
                    if (idx is not None and type(doc_id) is str and doc_id and doc_id not in idx.docs
                            and body[start] == 123 and find(b'"@timestamp":', start, end) >= 0):
                        idx.docs[doc_id] = None
                        version = idx.versions[doc_id] = idx.versions.get(doc_id, 0) + 1
                        idx.seq_no += 1
                        created += 1
                        append(created_item if created_item is not None else
                               {kind: _ok_item(idx.name, doc_id, version, "created",
                                               idx.seq_no - 1, 201)})
                        continue
                result = self._apply(kind, meta, body[start:end] if start >= 0 else None, path_index)
                errors = errors or "error" in result
                append({kind: result})
        finally:
            self.counters["created"] += created
        return items, errors

    def _apply(self, kind: str, meta: dict[str, Any], source: Any, path_index: str | None
               ) -> dict[str, Any]:
        if meta.get("_id") == "" and kind in ("index", "create"):  # IndexRequest.process, per item
            return self._item_error(meta.get("_index") or path_index, "", 400, "illegal_argument_exception",
                                    "if _id is specified it must not be empty")
        result = self._apply_action(kind, meta, source, path_index)
        if result.get("status") != 400 or kind != "create" or "error" not in result:
            return result
        target = meta.get("_index") or path_index
        if not target or not self._is_stream(target) or self._stream_refusal(target):
            return result  # a data stream that cannot be created has no failure store either
        if not self._failure_store_enabled(target):
            result["failure_store"] = "not_enabled"
            return result
        return self._store_failure(target, meta.get("_id"), source, result["error"])

    def _is_stream(self, target: str) -> bool:
        return target in self.data_streams or (target not in self.indices and
                                               target not in self.aliases and
                                               self._stream_template(target) is not None)

    def _failure_store_enabled(self, stream: str) -> bool:
        template = self._stream_template(stream) or {}
        options = (template.get("template") or {}).get("data_stream_options") or {}
        enabled = (options.get("failure_store") or {}).get("enabled")
        if enabled is not None:
            return bool(enabled)
        return any(fnmatch.fnmatchcase(stream, p) for p in self.failure_store_patterns)

    def _store_failure(self, stream: str, doc_id: Any, source: Any, error: dict[str, Any]
                       ) -> dict[str, Any]:
        """Index a failed document into the data stream's failure store (created on first use, as
        Elasticsearch's lazy failure-store rollover does) and answer it as a success."""
        self._stream_write_index(stream)  # auto-created as for any write to a new data stream
        name = self.failure_indices.get(stream)
        if name is None:
            name = f".fs-{stream}-{time.strftime('%Y.%m.%d', time.gmtime())}-000001"
            self.failure_indices[stream] = name
            self.indices[name] = _Index(name, stream)
        idx = self.indices[name]
        if type(source) is bytes:
            source = es_spec.load_line(source)
        failure_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()
        idx.docs[failure_id] = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "document": {"id": doc_id, "index": stream, "source": source},
            "error": {"type": error.get("type"), "message": error.get("reason")},
        } if self.keep_sources else None
        idx.versions[failure_id] = 1
        self.counters["failure_store"] += 1
        return {**self._ok(idx, failure_id, "created", 201), "failure_store": "used"}

    def _apply_action(self, kind: str, meta: dict[str, Any], source: Any, path_index: str | None
                      ) -> dict[str, Any]:
        target = meta.get("_index") or path_index
        doc_id = meta.get("_id")
        if type(source) is bytes and (self.item_faults or kind == "update" or self.check_mappings
                                      or self.keep_sources):
            source = es_spec.load_line(source)  # lean mode, and something reads this one
        if not target:
            return self._item_error(None, doc_id, 400, "action_request_validation_exception",
                                    "Validation Failed: 1: index is missing;")
        for fault in self.item_faults:
            if fault.count != 0 and fault.matches(target, source):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.count > 0:
                    fault.count -= 1
                return self._item_error(target, doc_id, fault.status, fault.type,
                                        fault.reason or f"injected {fault.type}"
                                        + (f" for field [{fault.field}]" if fault.field else ""))
        if self._is_stream(target):
            refusal = self._stream_refusal(target) if kind != "delete" else None
            if refusal:  # auto-creation comes first: Elasticsearch fails the item with its error
                return self._item_error(target, doc_id, 400, refusal["type"], refusal["reason"],
                                        extra=refusal)
            if kind != "create":
                return self._item_error(target, doc_id, 400, "illegal_argument_exception",
                                        "only write ops with an op_type of create are allowed in "
                                        "data streams")
            problem = _timestamp_problem(source)
            if problem:
                return self._item_error(target, doc_id, 400, "document_parsing_exception",
                                        f"[1:1] failed to parse: {problem}")
            idx = self._stream_write_index(target)
        else:
            name = self.aliases.get(target, target)
            idx = self.indices.get(name)
            if idx is None:
                if kind in ("delete", "update") or not self.auto_create_index:
                    return self._item_error(target, doc_id, 404, "index_not_found_exception",
                                            f"no such index [{target}]")
                invalid = _invalid_index_name(name)
                if invalid:
                    return self._item_error(target, doc_id, 400, invalid["type"], invalid["reason"],
                                            extra=invalid)
                idx = self._new_index(name)
        if doc_id is None and kind in ("index", "create"):
            doc_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()
        return self._write(idx, kind, str(doc_id), source)

    def _write(self, idx: _Index, kind: str, doc_id: str, source: Any) -> dict[str, Any]:
        exists = doc_id in idx.docs
        if kind == "delete":
            if not exists:
                return self._ok(idx, doc_id, "not_found", 404)
            del idx.docs[doc_id]
            idx.versions[doc_id] += 1  # "deletes included" (delete API): a re-create goes on from it
            self.counters["deleted"] += 1
            return self._ok(idx, doc_id, "deleted", 200)
        if kind == "create" and exists:
            # Elasticsearch parses the document against the mapping before the engine sees the id
            # (IndexShard.applyIndexOperation: prepareIndex, then Engine.index), so a document that
            # does not map is a 400 even when its _id exists, and one that maps still updates the
            # dynamic mapping before its 409.
            problem = self._map(idx, source) if self.check_mappings else ""
            if problem:
                return self._item_error(idx.name, doc_id, 400, "document_parsing_exception", problem, idx)
            self.counters["conflicts"] += 1
            return self._item_error(idx.name, doc_id, 409, "version_conflict_engine_exception",
                                    f"[{doc_id}]: version conflict, document already exists "
                                    f"(current version [{idx.versions[doc_id]}])", idx)
        if kind == "update":
            if not isinstance(source, dict):
                return self._item_error(idx.name, doc_id, 400, "x_content_parse_exception",
                                        "[1:1] malformed update body", idx)
            if not exists:
                upsert = source.get("upsert") or (source.get("doc") if source.get("doc_as_upsert")
                                                  else None)
                if upsert is None:
                    return self._item_error(idx.name, doc_id, 404, "document_missing_exception",
                                            f"[{doc_id}]: document missing", idx)
                source = upsert
            else:
                merged = dict(idx.docs[doc_id] or {})
                merged.update(source.get("doc") or {})
                source = merged
        problem = self._map(idx, source) if self.check_mappings else ""
        if problem:
            return self._item_error(idx.name, doc_id, 400, "document_parsing_exception", problem, idx)
        idx.docs[doc_id] = source if self.keep_sources else None
        idx.versions[doc_id] = idx.versions.get(doc_id, 0) + 1
        if exists:
            self.counters["updated"] += 1
            return self._ok(idx, doc_id, "updated", 200)
        self.counters["created"] += 1
        return self._ok(idx, doc_id, "created", 201)

    def _ok(self, idx: _Index, doc_id: str, result: str, status: int) -> dict[str, Any]:
        idx.seq_no += 1
        return _ok_item(idx.name, doc_id, idx.versions.get(doc_id, 1), result, idx.seq_no - 1, status)

    def _item_error(self, index: str | None, doc_id: Any, status: int, etype: str, reason: str,
                    idx: _Index | None = None, extra: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
        """A failed action's result; ``extra``: the error's other fields (an index-name error's)."""
        key = f"{status} {etype}"
        self.item_errors[key] = self.item_errors.get(key, 0) + 1
        error: dict[str, Any] = {**(extra or {}), "type": etype, "reason": reason}
        if idx is not None:
            error.update({"index_uuid": idx.uuid, "shard": "0", "index": idx.name})
        return {"_index": index or "", "_id": doc_id, "status": status, "error": error}

    # ------------------------------------------------------------------ indices, streams, mappings

    def _template(self, name: str) -> dict[str, Any] | None:
        """The composable template Elasticsearch applies to a new index or data stream ``name``: of
        those matching it, the one with the highest priority ("the index template with the highest
        priority is used", Index templates), Elasticsearch's built-in ``logs`` template included
        (``_BUILTIN_LOGS_TEMPLATE``). A user template must outrank it, not tie with it: Elasticsearch
        refuses a template whose patterns overlap another's of the same priority."""
        best: dict[str, Any] | None = None
        best_priority = -1
        for t in (_BUILTIN_LOGS_TEMPLATE, *self.templates.values()):
            priority = int(t.get("priority") or 0)
            if priority > best_priority and any(fnmatch.fnmatchcase(name, p)
                                                for p in t.get("index_patterns", [])):
                best, best_priority = t, priority
        return best

    def _stream_template(self, name: str) -> dict[str, Any] | None:
        """The template making ``name`` a data stream: the one that applies, if it has ``data_stream``."""
        template = self._template(name)
        return template if template is not None and "data_stream" in template else None

    def _stream_refusal(self, stream: str) -> dict[str, str] | None:
        """The error auto-creating data stream ``stream`` raises (its name, then its first backing
        index's, e.g. too long with the ``.ds-`` prefix and date), None when it exists or can be."""
        if stream in self.data_streams:
            return None
        return _invalid_stream_name(stream) or _invalid_index_name(_backing_index_name(stream))

    def _stream_write_index(self, stream: str) -> _Index:
        backing = self.data_streams.get(stream)
        if not backing:
            name = _backing_index_name(stream)
            self.data_streams[stream] = [name]
            idx = self._new_index(name, stream)
            # a data stream's @timestamp is a date unless its template maps it (module docstring)
            idx.mapping.setdefault("@timestamp", "date")
            return idx
        return self.indices[backing[-1]]

    def _new_index(self, name: str, stream: str = "") -> _Index:
        idx = _Index(name, stream)
        template = self._template(stream or name)  # only the winner's mappings and settings apply
        if template:
            props = template.get("template", {}).get("mappings", {}).get("properties", {})
            idx.mapping.update(_flatten_mapping(props))
            idx.settings.update(_flat_settings(template.get("template", {}).get("settings") or {}))
        self.indices[name] = idx
        return idx

    def _map(self, idx: _Index, source: Any) -> str:
        """Apply the index mapping (explicit, else dynamic) to a document; the reason on conflict."""
        if not isinstance(source, dict):
            return "[1:1] failed to parse: the document must be an object"
        new: dict[str, str] = {}
        problem = _check_fields(source, "", idx.mapping, new)
        if not problem:
            idx.mapping.update(new)
        return problem

    def _create_index(self, name: str, req: MockRequest) -> MockResponse:
        with self._lock:
            invalid = _invalid_index_name(name)
            if invalid:  # the request's 400, the error as a bulk item's (validateIndexName)
                return self._error(400, invalid["type"], invalid["reason"], extra=invalid)
            if name in self.indices or name in self.aliases:
                return self._error(400, "resource_already_exists_exception",
                                   f"index [{name}] already exists")
            body = orjson.loads(req.body) if req.body else {}
            idx = self._new_index(name)
            idx.settings.update(_flat_settings(body.get("settings") or {}))
            for alias, opts in (body.get("aliases") or {}).items():
                if (opts or {}).get("is_write_index", True):
                    self.aliases[alias] = name
        return MockResponse.json(200, {"acknowledged": True, "shards_acknowledged": True,
                                       "index": name})

    def _ilm_explain(self, target: str) -> MockResponse:
        """``GET <target>/_ilm/explain``, for what the mock can judge without running ILM: whether the
        index's policy can run on it. The rollover action needs a data stream, or an
        ``index.lifecycle.rollover_alias`` naming an alias whose write index this is (ILM rollover
        action docs); else Elasticsearch's ILM stops in the hot phase at ``check-rollover-ready`` in
        the ERROR step with "setting [index.lifecycle.rollover_alias] for index [...] is empty or not
        defined" (as reported in robcowart/elastiflow#558), and no later phase (delete) runs."""
        with self._lock:
            indices = self._concrete(target)
            if not indices:
                return self._index_not_found(target)
            return MockResponse.json(200, {"indices": {i.name: self._ilm_state(i) for i in indices}})

    def _ilm_state(self, idx: _Index) -> dict[str, Any]:
        name = idx.settings.get("index.lifecycle.name")
        if not name:
            return {"index": idx.name, "managed": False}
        state: dict[str, Any] = {"index": idx.name, "managed": True, "policy": name, "phase": "hot"}
        policy = self.ilm_policies.get(name)
        problem = ""
        if policy is None:
            problem = f"policy [{name}] does not exist"
        else:
            hot = ((policy.get("phases") or {}).get("hot") or {}).get("actions") or {}
            if "rollover" not in hot:
                return {**state, "action": "complete", "step": "complete"}
            alias = idx.settings.get("index.lifecycle.rollover_alias")
            if not idx.data_stream and not alias:
                problem = (f"setting [index.lifecycle.rollover_alias] for index [{idx.name}] is empty "
                           "or not defined")
            elif not idx.data_stream and self.aliases.get(alias) != idx.name:
                problem = f"index [{idx.name}] is not the write index for alias [{alias}]"
        if problem:
            return {**state, "action": "rollover", "step": "ERROR", "failed_step": "check-rollover-ready",
                    "step_info": {"type": "illegal_argument_exception", "reason": problem}}
        return {**state, "action": "rollover", "step": "check-rollover-ready"}

    def _get_alias(self, alias: str) -> MockResponse:
        with self._lock:
            target = self.aliases.get(alias)
        if target is None:
            return MockResponse.json(404, {"error": f"alias [{alias}] missing", "status": 404})
        return MockResponse.json(200, {target: {"aliases": {alias: {"is_write_index": True}}}})

    def _store_named(self, store: dict[str, dict[str, Any]], name: str, req: MockRequest,
                     key: str) -> MockResponse:
        if req.method == "GET":
            if name not in store:
                return self._error(404, "resource_not_found_exception", f"{key} [{name}] missing")
            return MockResponse.json(200, {name: store[name]})
        if req.method == "DELETE":
            store.pop(name, None)
            return MockResponse.json(200, {"acknowledged": True})
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return self._error(400, "parse_exception", "request body is required")
        if key == "index_template" and not body.get("index_patterns"):
            return self._error(400, "action_request_validation_exception",
                               "Validation Failed: 1: index patterns are missing;")
        if key == "policy" and not isinstance(body.get("policy"), dict):
            return self._error(400, "x_content_parse_exception", "required [policy] missing")
        with self._lock:  # the clash check and the store as one step: two PUTs may race
            clash = self._template_clash(name, body) if key == "index_template" else ""
            if not clash:
                store[name] = body if key == "index_template" else body["policy"]
        if clash:
            return self._error(400, "illegal_argument_exception", clash)
        return MockResponse.json(200, {"acknowledged": True})

    def _template_clash(self, name: str, body: dict[str, Any]) -> str:
        """Elasticsearch refuses a composable template whose patterns overlap those of another one of
        the same priority, the built-in ``logs`` template included (MetadataIndexTemplateService.
        validateV2TemplateRequest): the one to apply to a new index would be ambiguous. '' if none."""
        priority = int(body.get("priority") or 0)
        patterns = [str(p) for p in body.get("index_patterns") or []]
        others = {"logs": _BUILTIN_LOGS_TEMPLATE, **self.templates}
        for other, t in others.items():
            if other == name or int(t.get("priority") or 0) != priority:
                continue
            theirs = [str(p) for p in t.get("index_patterns") or []]
            if any(_globs_overlap(a, b) for a in patterns for b in theirs):
                return (f"index template [{name}] has index patterns {_list(patterns)} matching "
                        f"patterns from existing templates [{other}] with patterns ({other} => "
                        f"{_list(theirs)}) that have the same priority [{priority}], multiple index "
                        "templates may not match during index creation, please use a different priority")
        return ""

    # ------------------------------------------------------------------ errors

    def _error(self, status: int, etype: str, reason: str, headers: dict[str, str] | None = None,
               extra: Mapping[str, Any] | None = None) -> MockResponse:
        """Elasticsearch's error body; ``extra``: the exception's other fields (``index`` of an
        index-name error), which it renders in the error and its root cause alike."""
        cause = {**(extra or {}), "type": etype, "reason": reason}
        body = {"error": {"root_cause": [cause], **cause}, "status": status}
        if self.spec is not None:
            problems = self.spec.check_response(status, body)
            if problems:  # pragma: no cover - the mock's own bug
                self._record_violation("response", problems)
        return MockResponse.json(status, body, headers)

    def _index_not_found(self, name: str) -> MockResponse:
        return self._error(404, "index_not_found_exception", f"no such index [{name}]")

    def _record_violation(self, what: str, problems: list[str]) -> None:
        with self._lock:
            for p in problems:
                self.spec_violations.append(f"{what}: {p}")
        log.error("elasticsearch mock: spec violation in %s: %s", what, "; ".join(problems[:5]))

    def _violation(self, status: int, what: str, problems: list[str]) -> MockResponse:
        self._record_violation(what, problems)
        reason = f"mock spec violation ({what}): " + "; ".join(problems[:5])
        body = {"error": {"type": "mock_spec_violation", "reason": reason}, "status": status}
        return MockResponse.json(status, body)


# ---------------------------------------------------------------------- helpers


def _decode_api_key(value: str) -> str:
    """'id:key' of a configured API key, encoded or already in that form ('' when undecodable). For
    the mock's own configuration only: a request's header goes through ``_api_key_credential``."""
    return value if ":" in value else _api_key_credential(value)


def _credential(authorization: str) -> tuple[str, str]:
    """(scheme in lower case, the credential decoded as Elasticsearch reads it): an API key's
    'id:key', basic's 'user:password', a bearer token as it is; '' when it does not decode."""
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "apikey":
        return scheme, _api_key_credential(value)
    if scheme == "basic":
        try:
            return scheme, base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return scheme, ""
    return scheme, value


def _api_key_credential(value: str) -> str:
    """'id:key' of an ``Authorization: ApiKey`` credential, or '' (401) when it is not one. As
    Elasticsearch (ApiKeyService.parseApiKey): the value is base64-decoded (Java's basic decoder:
    padding optional, any character outside the alphabet is an error, so 'id:key' sent in clear is
    refused) and must hold a ':' after a non-empty id ("invalid ApiKey value")."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded if decoded.find(":") >= 1 else ""


_TIMESTAMP_MISSING = "data stream timestamp field [@timestamp] is missing"
_TIMESTAMP_MULTIPLE = "data stream timestamp field [@timestamp] encountered multiple values"


def _timestamp_problem(source: Any) -> str:
    """Why a data stream refuses a document's ``@timestamp`` ('' when it has exactly one value), in
    DataStreamTimestampFieldMapper.postParse's words: no value indexed is "is missing" (the key
    absent, ``null``, ``[]``: a null indexes nothing), more than one "encountered multiple values" (two
    dates in an array; a one-element array is one value). A source left unparsed (lean mode) is
    searched for the key instead: an object holding ``"@timestamp":`` anywhere passes."""
    if type(source) is bytes:
        return "" if source.startswith(b"{") and b'"@timestamp":' in source else _TIMESTAMP_MISSING
    values = _value_count(source.get("@timestamp")) if isinstance(source, dict) else 0
    if values == 0:
        return _TIMESTAMP_MISSING
    return _TIMESTAMP_MULTIPLE if values > 1 else ""


def _value_count(value: Any) -> int:
    """How many values Elasticsearch indexes for a field holding ``value``: none for null, one per
    array element, nested arrays flattened and their nulls skipped (an object counts as one: the
    mapping check refuses it as a date)."""
    if value is None:
        return 0
    if type(value) is list:
        return sum(_value_count(v) for v in value)
    return 1


#: Strings.INVALID_FILENAME_CHARS: what an index, alias or data stream name must not contain, and
#: how Elasticsearch prints it (sorted, each quoted, joined by commas).
_INVALID_NAME_CHARS = frozenset('\\/*?"<>| ,')
_INVALID_NAME_CHARS_TEXT = "[" + ",".join(f"'{c}'" for c in sorted(_INVALID_NAME_CHARS)) + "]"
#: MetadataCreateIndexService.MAX_INDEX_NAME_BYTES, counted in UTF-8.
_MAX_INDEX_NAME_BYTES = 255


def _name_rule_broken(name: str) -> str:
    """The first rule of MetadataCreateIndexService.validateIndexOrAliasName that ``name`` breaks, in
    its words and order ('' for none); "Index names must meet the following criteria" (create index
    API reference). Colons are refused as in 8.x (deprecated in 7.x). Names starting with '.' pass:
    hidden and system indices (a data stream's ``.ds-`` backing indices) have them."""
    if not name:
        return "must not be empty"
    if not _INVALID_NAME_CHARS.isdisjoint(name):
        return f"must not contain the following characters {_INVALID_NAME_CHARS_TEXT}"
    for char in "#:":
        if char in name:
            return f"must not contain '{char}'"
    if name[0] in "_-+":
        return "must not start with '_', '-', or '+'"
    size = len(name.encode("utf-8", "replace"))  # Java's getBytes: a lone surrogate is one '?'
    if size > _MAX_INDEX_NAME_BYTES:
        return f"index name is too long, ({size} > {_MAX_INDEX_NAME_BYTES})"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    return ""


def _invalid_index_name(name: str) -> dict[str, str] | None:
    """The error Elasticsearch raises creating index ``name`` (MetadataCreateIndexService.
    validateIndexName: the rules above, then "must be lowercase"), None for a valid name. An
    InvalidIndexNameException names its index: ``index`` and ``index_uuid`` '_na_' in the error."""
    problem = _name_rule_broken(name) or ("must be lowercase" if name.lower() != name else "")
    if not problem:
        return None
    return {"type": "invalid_index_name_exception", "reason": f"Invalid index name [{name}], {problem}",
            "index_uuid": "_na_", "index": name}


def _invalid_stream_name(name: str) -> dict[str, str] | None:
    """The error Elasticsearch raises creating data stream ``name`` (MetadataCreateDataStreamService:
    the same rules as an index's, then lowercase, then no backing index prefix), as the
    IllegalArgumentException it is: "data_stream [<name>] <rule>"; None for a valid name."""
    problem = _name_rule_broken(name) or ("must be lowercase" if name.lower() != name else "")
    if not problem and name.startswith(".ds-"):
        problem = "must not start with '.ds-'"
    if not problem:
        return None
    return {"type": "illegal_argument_exception", "reason": f"data_stream [{name}] {problem}"}


def _globs_overlap(a: str, b: str) -> bool:
    """Whether some name matches both index patterns (``*`` any run of characters, the only wildcard
    of index patterns): Elasticsearch intersects their automata, this walks both at once."""

    @functools.cache
    def walk(i: int, j: int) -> bool:  # every step moves i or j forward
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return walk(i + 1, j) or (j < len(b) and walk(i, j + 1))
        if j < len(b) and b[j] == "*":
            return walk(i, j + 1) or (i < len(a) and walk(i + 1, j))
        return i < len(a) and j < len(b) and a[i] == b[j] and walk(i + 1, j + 1)

    return walk(0, 0)


def _list(patterns: list[str]) -> str:
    """A Java list as Elasticsearch prints it: ``[a, b]``."""
    return "[" + ", ".join(patterns) + "]"


def _backing_index_name(stream: str) -> str:
    """A new data stream's first backing index (DataStream.getDefaultBackingIndexName, generation 1)."""
    return f".ds-{stream}-{time.strftime('%Y.%m.%d', time.gmtime())}-000001"


def _ok_item(index: str, doc_id: str, version: int, result: str, seq_no: int, status: int
             ) -> dict[str, Any]:
    """A successful action's result, as Elasticsearch words it."""
    return {"_index": index, "_id": doc_id, "_version": version, "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq_no,
            "_primary_term": 1, "status": status}


@functools.lru_cache(maxsize=64)
def _created_projection(filter_path: str) -> Any:
    """What ``filter_path`` leaves of the item of every successful ``create`` (``{}`` when it
    leaves nothing), or None when that differs from item to item (it keeps the ``_id``, say).

    Found by filtering a probe item whose per-item values (``_index``, ``_id``, ``_version``,
    ``_seq_no``) are unique markers: a filter selects by key alone and treats every plain value
    alike, so the result holds a marker exactly where the real one would hold a per-item value.
    Standing in for the full item, the result leaves the answer's own filtering as it was, as an
    inclusive filter applied twice keeps what it kept once (checked here on the probe); exclusive
    filters are not taken this way. The lean ``_bulk`` then builds no item it would throw away."""
    include, exclude = es_filter_path.parse(filter_path)
    if exclude or not include:
        return None
    markers = [object() for _ in range(4)]
    probe = {"create": _ok_item(*markers[:3], "created", markers[3], 201)}  # type: ignore[arg-type]
    apply = es_filter_path.compile_filter(filter_path)
    kept = apply({"items": [probe]})
    if _holds_any(kept, markers):
        return None
    item = kept["items"][0] if "items" in kept else {}
    return item if orjson.dumps(apply({"items": [item]})) == orjson.dumps(kept) else None


def _holds_any(node: Any, markers: list[object]) -> bool:
    if type(node) is dict:
        return any(_holds_any(v, markers) for v in node.values())
    if type(node) is list:
        return any(_holds_any(v, markers) for v in node)
    return any(node is m for m in markers)


#: ``bytes.strip()``'s whitespace: a line of nothing else is no line (es_spec.ndjson_lines).
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")
_KINDS = frozenset({"index", "create", "update", "delete"})


def _lean_actions(body: bytes) -> list[tuple[str, dict[str, Any], int, int]]:
    """``_parse_actions`` of ``es_spec.ndjson_lines(body)`` for the lean mode, with the same errors
    and line numbers, without cutting the body into lines: (kind, metadata, start, end) per action,
    its source being ``body[start:end]`` ((-1, -1) for a delete's none). Copying out every ~1.5 KB
    source line cost the mock more than all else it did with a lean action; line numbers are
    counted only for an error, for the same reason."""
    out: list[tuple[str, dict[str, Any], int, int]] = []
    append, find, loads = out.append, body.find, orjson.loads
    n = len(body)
    i = at = 0
    kind = ""
    meta: dict[str, Any] = {}
    source = False  # whether the next line is the source of the action at ``at``
    while i < n:
        j = find(b"\n", i)
        if j < 0:
            j = n
        start, i = i, j + 1
        if body[start] in _WHITESPACE and not body[start:j].strip():
            continue  # a blank line is no line
        if source:  # a \r before the \n is no part of a line
            append((kind, meta, start, j - 1 if body[j - 1] == 13 else j))
            source = False
            continue
        try:
            action = loads(body[start:j])  # ... and, as JSON whitespace, changes no action line
        except orjson.JSONDecodeError:
            action = es_spec.NOT_JSON
        if type(action) is not dict or len(action) != 1:
            _malformed(action, _line_number(body, start))
        ((kind, meta),) = action.items()
        if kind not in _KINDS or type(meta) is not dict:
            _malformed(action, _line_number(body, start))
        if kind == "delete":
            append((kind, meta, -1, -1))
        else:
            source, at = True, start
    if source:
        raise ValueError(f"line [{_line_number(body, at)}]: {kind} without a source line")
    return out


#: IndexRequest.MAX_DOCUMENT_ID_LENGTH_IN_BYTES: "_id is limited to 512 bytes in size and larger values
#: will be rejected" (the _id field, Elasticsearch reference).
_MAX_ID_BYTES = 512


def _validation_errors(actions: Iterable[tuple[Any, ...]]) -> list[str]:
    """What BulkRequest.validate finds in the actions ((kind, metadata, ...) each), in its words: a
    delete or update needs an ``_id`` (Delete/UpdateRequest.validate, "id is missing"), and no
    ``_id`` may exceed 512 UTF-8 bytes (IndexRequest.validate). Any of them fails the whole request."""
    out = []
    for kind, meta, *_ in actions:
        doc_id = meta.get("_id")
        if kind in ("delete", "update") and (doc_id is None or doc_id == ""):
            out.append("id is missing")
        elif type(doc_id) is str and len(doc_id) * 4 > _MAX_ID_BYTES:  # cheap test first
            size = len(doc_id.encode("utf-8", "replace"))
            if size > _MAX_ID_BYTES:
                out.append(f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {size}")
    return out


def _line_number(body: bytes, start: int) -> int:
    """The number of the line starting at ``start``, blank lines not counted (es_spec.ndjson_lines)."""
    return len(es_spec.ndjson_lines(body[:start])) + 1


def _malformed(action: Any, lineno: int) -> NoReturn:
    """Elasticsearch's error for an action line that is not one action."""
    if not isinstance(action, dict) or len(action) != 1:
        raise ValueError(f"Malformed action/metadata line [{lineno}], expected a single action")
    kind = next(iter(action))
    raise ValueError(f"Action/metadata line [{lineno}] contains an unknown parameter [{kind}]")


def _parse_actions(lines: list[Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """(kind, metadata, source) per action of ``es_spec.parse_ndjson`` lines, or ``ValueError`` with
    Elasticsearch's wording for a malformed body."""
    out = []
    i = 0
    while i < len(lines):
        action = lines[i]
        if not isinstance(action, dict) or len(action) != 1:
            _malformed(action, i + 1)
        kind, meta = next(iter(action.items()))
        if kind not in _KINDS or not isinstance(meta, dict):
            _malformed(action, i + 1)
        i += 1
        source = None
        if kind != "delete":
            if i >= len(lines):
                raise ValueError(f"line [{i}]: {kind} without a source line")
            source = lines[i]
            i += 1
        out.append((kind, meta, source))
    return out


def _get_dotted(source: Any, dotted: str) -> Any:
    if isinstance(source, dict) and dotted in source:
        return source[dotted]
    node = source
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Index settings as Elasticsearch normalises them: dotted keys with the ``index.`` prefix
    (``{"index": {"lifecycle": {"name": "p"}}}`` and ``{"lifecycle.name": "p"}`` are both
    ``index.lifecycle.name``)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_settings(value, path + "."))
        else:
            out[path if path.startswith("index.") else f"index.{path}"] = value
    return out


def _flatten_mapping(props: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if isinstance(spec, dict) and "properties" in spec:
            out[path] = "object"
            out.update(_flatten_mapping(spec["properties"], path + "."))
        elif isinstance(spec, dict):
            kind = spec.get("type", "object")
            # a date with its own ``format`` is not checked against the default one
            out[path] = f"{kind}:custom_format" if kind in _DATES and "format" in spec else kind
    return out


def _check_fields(node: dict[str, Any], prefix: str, mapping: Mapping[str, str],
                  new: dict[str, str]) -> str:
    """Walk a document against ``mapping`` (dotted field -> type), adding dynamic mappings for new
    fields to ``new``; the reason of the first conflict, else ''. Hot in benchmarks: keyword-like
    fields (nearly all of ECS) take no value check."""
    for key, value in node.items():
        path = prefix + key
        mapped = mapping.get(path) or new.get(path)
        if mapped in _ANY_VALUE:
            if type(value) is dict or (type(value) is list and any(type(v) is dict for v in value)):
                return f"failed to parse field [{path}] of type [{mapped}]: found an object"
            continue
        if mapped == "flattened":
            continue
        for v in value if type(value) is list else (value,):
            if type(v) is dict:
                if mapped not in (None, "object", "nested"):
                    return f"failed to parse field [{path}] of type [{mapped}]: found an object"
                mapped = new[path] = mapped or "object"
                problem = _check_fields(v, path + ".", mapping, new)
                if problem:
                    return problem
            elif v is None:
                continue
            elif mapped is None:
                mapped = new[path] = _dynamic_type(v)
            elif mapped in ("object", "nested"):
                return (f"failed to parse field [{path}]: tried to parse field [{key}] as object, "
                        "but found a concrete value")
            elif not _value_fits(mapped, v):
                return (f"failed to parse field [{path}] of type [{mapped}] in document. Preview of "
                        f"field's value: '{v}'")
    return ""


_ANY_VALUE = frozenset({"keyword", "wildcard", "text", "match_only_text", "constant_keyword"})
_DATES = frozenset({"date", "date_nanos"})
#: The ``date`` type's default format, ``strict_date_optional_time||epoch_millis`` ("date" field type
#: and "format" mapping parameter in the Elasticsearch reference): an ISO 8601 date of at least the
#: year, the time optional and after a 'T', then an optional offset; or milliseconds since the epoch.
_STRICT_DATE_OPTIONAL_TIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?")
_EPOCH_MILLIS = re.compile(r"-?\d+(?:\.\d+)?")


def _dynamic_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "long"
    return "float" if isinstance(v, float) else "keyword"


def _value_fits(mapped: str, v: Any) -> bool:
    if mapped in _NUMERIC:
        if isinstance(v, bool):
            return False
        if isinstance(v, str):
            try:
                float(v)
            except ValueError:
                return False
        return True
    if mapped == "ip":
        try:
            ipaddress.ip_address(str(v))
        except ValueError:
            return False
        return True
    if mapped == "boolean":
        return isinstance(v, bool) or v in ("true", "false", "")
    if mapped in _DATES:
        if isinstance(v, bool):
            return False
        return not isinstance(v, str) or _is_default_date(v)
    return True


def _is_default_date(v: str) -> bool:
    """Whether ``v`` parses with ``strict_date_optional_time||epoch_millis`` (ranges included)."""
    if _EPOCH_MILLIS.fullmatch(v):
        return True
    m = _STRICT_DATE_OPTIONAL_TIME.fullmatch(v)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) if g else None for g in m.groups())
    try:
        datetime.datetime(year, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    except ValueError:
        return False
    return True


def build_app(args: argparse.Namespace) -> ElasticsearchMock:
    """``python -m outputs.mocks elasticsearch``: ``--token`` values are API keys (encoded or
    'id:key'); ``--option`` keys: ``user=name:password``, ``bearer=token``, ``ingest_only=<key>``,
    ``max_content_length=<bytes>``, ``check_spec=false``, ``keep_sources=false``,
    ``auto_create_index=false``, ``check_mappings=false`` and ``parse_sources=false`` (benchmarks; the
    latter needs ``check_spec=false``), ``health=green|yellow|red``, ``failure_store=<pattern>[,...]``
    (data streams whose failure store is enabled), ``echo_headers=Authorization,X-Canary`` (leak
    tests only: module docstring)."""
    o = args.options
    users = {}
    if o.get("user"):
        name, _, pw = o["user"].partition(":")
        users[name] = pw
    return ElasticsearchMock(
        api_keys=args.tokens, users=users,
        bearer_tokens=[o["bearer"]] if o.get("bearer") else [],
        ingest_only=[o["ingest_only"]] if o.get("ingest_only") else [],
        max_content_length=int(o.get("max_content_length", DEFAULT_MAX_CONTENT_LENGTH)),
        check_spec=o.get("check_spec", "true").lower() != "false",
        keep_sources=o.get("keep_sources", "true").lower() != "false",
        auto_create_index=o.get("auto_create_index", "true").lower() != "false",
        check_mappings=o.get("check_mappings", "true").lower() != "false",
        health=o.get("health", "green"),
        parse_sources=o.get("parse_sources", "true").lower() != "false",
        failure_store=[p for p in o.get("failure_store", "").split(",") if p],
        echo_headers=[h.strip() for h in o.get("echo_headers", "").split(",") if h.strip()])
