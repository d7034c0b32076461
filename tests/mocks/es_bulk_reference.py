"""A frozen copy of the Elasticsearch mock's ``_bulk`` path and of ``filter_path`` filtering as they
were at commit 827575e, before the mock's lean fast path: the reference that
``test_es_bulk_differential`` holds the live mock to. Verbatim but for the imports, the class line and NOT_JSON (the live marker);
do not edit it to follow the mock: a difference between the two is what the test is for."""
# ruff: noqa

from __future__ import annotations

import base64
import fnmatch
import functools
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from outputs.mocks import es_spec
from outputs.mocks.elasticsearch import (ElasticsearchMock, _check_fields, _flat_settings,
                                         _flatten_mapping, _Index)
from outputs.mocks.server import MockRequest, MockResponse

_BULK = re.compile(r"^/(?:(?P<index>[^/_][^/]*)/)?_bulk$")

# ---------------------------------------------------------------------- es_spec (NDJSON lines)

NOT_JSON: Any = es_spec.NOT_JSON  # the live marker (not a copy), so stored sources compare equal


def ndjson_lines(body: bytes) -> list[bytes]:
    """Every non-empty line of an NDJSON body, unparsed; a ``\\r`` before the ``\\n`` is allowed, as
    the operation's description says."""
    return [line[:-1] if line.endswith(b"\r") else line for line in body.split(b"\n") if line.strip()]


def load_line(line: bytes) -> Any:
    """One NDJSON line parsed, or ``NOT_JSON``."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return NOT_JSON


def parse_ndjson(body: bytes) -> list[Any]:
    """Every non-empty line of an NDJSON body, parsed (``NOT_JSON`` where a line is not JSON)."""
    return [load_line(line) for line in ndjson_lines(body)]



# ---------------------------------------------------------------------- es_filter_path

#: What a filter leaves of a value it removes entirely (distinct from ``None``, a JSON null).
EMPTY: Any = type("Empty", (), {"__repr__": lambda self: "EMPTY"})()

#: A filter segment: a field name, a compiled pattern for one with ``*``, ``*`` itself or ``**``.
Segment = str | re.Pattern[str]
Filter = tuple[Segment, ...]
Filters = tuple[Filter, ...]
_ANY_NAME = "*"
_ANY_DEPTH = "**"


def _segment(text: str) -> Segment:
    if text in (_ANY_NAME, _ANY_DEPTH) or "*" not in text:
        return text
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)


def parse(value: str) -> tuple[Filters, Filters]:
    """(inclusive, exclusive) filters of a ``filter_path`` value; empty entries are ignored."""
    include: list[Filter] = []
    exclude: list[Filter] = []
    for raw in value.split(","):
        raw = raw.strip()
        negative = raw.startswith("-")
        raw = raw[1:] if negative else raw
        if not raw:
            continue
        (exclude if negative else include).append(tuple(_segment(s) for s in raw.split(".")))
    return tuple(dict.fromkeys(include)), tuple(dict.fromkeys(exclude))


def _advance(f: Filter, key: str) -> list[Filter]:
    """What is left of filter ``f`` below ``key``: nothing (no match), ``()`` (``key`` matched the
    whole filter), or the remaining segments (``**`` may also stay, or match no level at all)."""
    if not f:
        return [()]
    head = f[0]
    if head == _ANY_DEPTH:
        return [f, *_advance(f[1:], key)]
    plain = type(head) is str
    matched = head in (_ANY_NAME, key) if plain else head.fullmatch(key) is not None
    return [f[1:]] if matched else []


# The walk's decisions depend only on the filters left and a key, and a response repeats both (every
# item of a _bulk answer): they are computed once. Bounded: keys can be data (node ids, index names).
@functools.lru_cache(maxsize=4096)
def _below(filters: Filters, key: str) -> Filters:
    return tuple(dict.fromkeys(rest for f in filters for rest in _advance(f, key)))


def _identity(node: Any) -> Any:
    return node


def _nothing(node: Any) -> Any:
    return EMPTY


@functools.lru_cache(maxsize=1024)
def _include_fn(filters: Filters) -> Callable[[Any], Any]:
    """``node -> what the inclusive filters keep of it`` (or EMPTY), built once per set of filters
    left, with the functions of the levels below bound in: a _bulk answer walks the same few for each
    of its items."""
    if not filters:
        return _nothing
    if () in filters:
        return _identity
    heads = [f[0] for f in filters]
    names = tuple(dict.fromkeys(h for h in heads if type(h) is str))
    if all(type(h) is str and h not in (_ANY_NAME, _ANY_DEPTH) for h in heads):
        if all(len(f) == 1 for f in filters):  # e.g. items.*.status at the item: a lookup per name

            def on_dict(node: dict) -> Any:
                return {k: node[k] for k in names if k in node} or EMPTY
        else:
            below = {k: _include_fn(_below(filters, k)) for k in names}

            def on_dict(node: dict) -> Any:
                out = {}
                for k, child in below.items():
                    if k in node:
                        kept = child(node[k])
                        if kept is not EMPTY:
                            out[k] = kept
                return out or EMPTY
    elif all(h == _ANY_NAME for h in heads):  # e.g. a _bulk item's action name: the same below any key
        rest = tuple(dict.fromkeys(f[1:] for f in filters))
        child = _include_fn(rest)
        # ... and below it only names (items.*.status): looked up here, a call less per level
        leaf_names = (tuple(dict.fromkeys(f[0] for f in rest)) if all(
            len(f) == 1 and type(f[0]) is str and f[0] not in (_ANY_NAME, _ANY_DEPTH) for f in rest)
            else None)

        def on_dict(node: dict) -> Any:
            out = {}
            for k, v in node.items():
                if leaf_names is not None and type(v) is dict:
                    kept = {n: v[n] for n in leaf_names if n in v} or EMPTY
                else:
                    kept = child(v)
                if kept is not EMPTY:
                    out[k] = kept
            return out or EMPTY
    else:

        def on_dict(node: dict) -> Any:
            out = {}
            for k, v in node.items():
                kept = _include_fn(_below(filters, k))(v)
                if kept is not EMPTY:
                    out[k] = kept
            return out or EMPTY

    def include(node: Any) -> Any:
        if type(node) is dict:
            return on_dict(node)
        if type(node) is list:
            return [k for k in map(include, node) if k is not EMPTY] or EMPTY
        return EMPTY  # a value where the filter goes deeper

    return include


def _exclude(node: Any, filters: Filters) -> Any:
    if () in filters:
        return EMPTY
    if type(node) is dict:
        out = {}
        for key, value in node.items():
            below = _below(filters, key)
            kept = _exclude(value, below) if below else value
            if kept is not EMPTY:
                out[key] = kept
        return out or EMPTY
    if type(node) is list:
        kept_items = [k for k in (_exclude(x, filters) for x in node) if k is not EMPTY]
        return kept_items or EMPTY
    return node


@functools.lru_cache(maxsize=64)
def compile_filter(value: str) -> Callable[[Any], Any]:
    """``filter(response_object) -> filtered object`` for one ``filter_path`` value (``{}`` when
    nothing is left, as Elasticsearch answers)."""
    include, exclude = parse(value)

    def apply(doc: Any) -> Any:
        if exclude:
            doc = _exclude(doc, exclude)
        if include and doc is not EMPTY:
            doc = _include_fn(include)(doc)
        return {} if doc is EMPTY else doc

    return apply


# ---------------------------------------------------------------------- the _bulk path


class ReferenceMock(ElasticsearchMock):
    """The mock with its _bulk path (and its request-level filter_path) as at 827575e."""

    def handle(self, req: MockRequest) -> MockResponse:
        resp = self._route(req)
        filter_path = req.query.get("filter_path")
        # _bulk filters its own answer (after the spec check of the whole one, without a re-parse)
        if (filter_path and 200 <= resp.status < 300 and resp.body[:1] == b"{"
                and not _BULK.match(req.path)):
            resp.body = orjson.dumps(compile_filter(filter_path)(orjson.loads(resp.body)))
        return resp

    def _bulk(self, req: MockRequest, path_index: str | None) -> MockResponse:
        started = time.monotonic()
        with self._lock:
            self.counters["bulk_requests"] += 1
            self.counters["bytes_decoded"] += len(req.body)
        # Parsed once, for the spec check and the mock alike (lean mode: unparsed lines)
        lines = parse_ndjson(req.body) if self.parse_sources else ndjson_lines(req.body)
        if self.spec is not None:
            problems = self.spec.check_request(req.method, req.path, req.query, req.headers, req.body,
                                               lines)
            if problems:
                return self._violation(400, "request", problems)
        if not req.body.endswith(b"\n"):
            return self._error(400, "illegal_argument_exception",
                               "The bulk request must be terminated by a newline [\\n]")
        try:
            actions = _parse_actions(lines, None if self.parse_sources else load_line)
        except ValueError as exc:
            return self._error(400, "x_content_parse_exception", str(exc))
        items = []
        with self._lock:
            for kind, meta, source in actions:
                items.append({kind: self._apply(kind, meta, source, path_index)})
            self.counters["actions"] += len(actions)
        body = {"errors": any("error" in next(iter(i.values())) for i in items),
                "took": int((time.monotonic() - started) * 1000), "items": items}
        if self.response_filter is not None:
            body = self.response_filter(body)
        if self.spec is not None:
            problems = self.spec.check_response(200, body, len(actions))
            if problems:
                return self._violation(500, "response", problems)
        filter_path = req.query.get("filter_path")
        if filter_path:
            body = compile_filter(filter_path)(body)
        return MockResponse(200, orjson.dumps(body), {"Content-Type": "application/json"})

    def _apply(self, kind: str, meta: dict[str, Any], source: Any, path_index: str | None
               ) -> dict[str, Any]:
        result = self._apply_action(kind, meta, source, path_index)
        if result.get("status") != 400 or kind != "create" or "error" not in result:
            return result
        target = meta.get("_index") or path_index
        if not target or not self._is_stream(target):
            return result
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
            source = load_line(source)
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
            source = load_line(source)  # lean mode, and something reads this one
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
            if kind != "create":
                return self._item_error(target, doc_id, 400, "illegal_argument_exception",
                                        "only write ops with an op_type of create are allowed in "
                                        "data streams")
            if not _has_timestamp(source):
                return self._item_error(target, doc_id, 400, "document_parsing_exception",
                                        "[1:1] failed to parse: data stream timestamp field "
                                        "[@timestamp] is missing")
            idx = self._stream_write_index(target)
        else:
            name = self.aliases.get(target, target)
            idx = self.indices.get(name)
            if idx is None:
                if kind in ("delete", "update") or not self.auto_create_index:
                    return self._item_error(target, doc_id, 404, "index_not_found_exception",
                                            f"no such index [{target}]")
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
            self.counters["deleted"] += 1
            return self._ok(idx, doc_id, "deleted", 200)
        if kind == "create" and exists:
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
        return {"_index": idx.name, "_id": doc_id, "_version": idx.versions.get(doc_id, 1),
                "result": result, "_shards": {"total": 2, "successful": 1, "failed": 0},
                "_seq_no": idx.seq_no - 1, "_primary_term": 1, "status": status}

    def _item_error(self, index: str | None, doc_id: Any, status: int, etype: str, reason: str,
                    idx: _Index | None = None) -> dict[str, Any]:
        key = f"{status} {etype}"
        self.item_errors[key] = self.item_errors.get(key, 0) + 1
        error: dict[str, Any] = {"type": etype, "reason": reason}
        if idx is not None:
            error.update({"index_uuid": idx.uuid, "shard": "0", "index": idx.name})
        return {"_index": index or "", "_id": doc_id, "status": status, "error": error}

    # ------------------------------------------------------------------ indices, streams, mappings

    def _stream_template(self, name: str) -> dict[str, Any] | None:
        """The highest-priority template with ``data_stream`` matching ``name``; ``logs-*-*`` is
        always one, as Elasticsearch's built-in logs template."""
        best: tuple[int, dict[str, Any]] | None = None
        for t in self.templates.values():
            if any(fnmatch.fnmatchcase(name, p) for p in t.get("index_patterns", [])):
                prio = int(t.get("priority", 0))
                if best is None or prio > best[0]:
                    best = (prio, t)
        if best is not None:
            return best[1] if "data_stream" in best[1] else None
        if fnmatch.fnmatchcase(name, "logs-*-*"):
            return {"index_patterns": ["logs-*-*"], "data_stream": {}, "priority": 100}
        return None

    def _stream_write_index(self, stream: str) -> _Index:
        backing = self.data_streams.get(stream)
        if not backing:
            name = f".ds-{stream}-{time.strftime('%Y.%m.%d', time.gmtime())}-000001"
            self.data_streams[stream] = [name]
            idx = self._new_index(name, stream)
            # a data stream's @timestamp is a date unless its template maps it (module docstring)
            idx.mapping.setdefault("@timestamp", "date")
            return idx
        return self.indices[backing[-1]]

    def _new_index(self, name: str, stream: str = "") -> _Index:
        idx = _Index(name, stream)
        template = None
        best = -1
        for t in self.templates.values():
            patterns = t.get("index_patterns", [])
            if any(fnmatch.fnmatchcase(stream or name, p) for p in patterns) and t.get(
                    "priority", 0) > best:
                template, best = t, t.get("priority", 0)
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


def _has_timestamp(source: Any) -> bool:
    """What a data stream requires of a document. A source left unparsed (lean mode) is searched for
    the key instead: an object holding ``"@timestamp":`` anywhere passes."""
    if type(source) is bytes:
        return source.startswith(b"{") and b'"@timestamp":' in source
    return isinstance(source, dict) and "@timestamp" in source


def _parse_actions(lines: list[Any], load: Callable[[bytes], Any] | None = None
                   ) -> list[tuple[str, dict[str, Any], Any]]:
    """(kind, metadata, source) per action of ``es_spec.parse_ndjson`` lines (or of raw lines, each
    action line parsed with ``load``: sources stay bytes), or ``ValueError`` with Elasticsearch's
    wording for a malformed body."""
    out = []
    i = 0
    while i < len(lines):
        action = lines[i] if load is None else load(lines[i])
        if not isinstance(action, dict) or len(action) != 1:
            raise ValueError(f"Malformed action/metadata line [{i + 1}], expected a single action")
        kind, meta = next(iter(action.items()))
        if kind not in ("index", "create", "update", "delete") or not isinstance(meta, dict):
            raise ValueError(f"Action/metadata line [{i + 1}] contains an unknown parameter [{kind}]")
        i += 1
        source = None
        if kind != "delete":
            if i >= len(lines):
                raise ValueError(f"line [{i}]: {kind} without a source line")
            source = lines[i]
            i += 1
        out.append((kind, meta, source))
    return out

