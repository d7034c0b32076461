"""Checks ``_bulk`` traffic against Elasticsearch's own OpenAPI document, so a wrong client fails loudly.

The spec is ``../shared/vendor-specs/elasticsearch/derived/bulk.serverless-9.4.openapi3.json``
(elastic/elasticsearch-specification, branch 9.4, Apache-2.0), read in place at run time; the mock works
without it (the check is then skipped with one warning). Its README prescribes the method:

- Normalise once after loading: every ``oneOf`` becomes ``anyOf`` (nullable strings are declared as
  ``oneOf: [string, nullable string]``, which every string matches twice, and the request body as
  ``oneOf`` of three shapes that every line matches twice).
- Request: the body is NDJSON, which no OpenAPI tool parses; each action line is validated on its own
  against ``_global.bulk.OperationContainer`` ("pattern B"), each ``index``/``create`` must be
  followed by a source object and each ``update`` by a ``_global.bulk.UpdateAction``; the final line
  must end with a newline (the operation's description). Path, method, query parameters and
  ``Content-Type`` are checked against the operation as well.
- Response: a 200 body against the ``bulk-200`` response schema; error bodies against
  ``_types.ErrorResponseBase`` (only 200 is specified for ``_bulk``).

Why ``jsonschema`` and not ``openapi-core``: the schema objects are all this needs, ``jsonschema`` is
already a test dependency, and OpenAPI 3.0's one extension that matters here, ``nullable``, is
rewritten during the same normalisation (``type: [t, "null"]``). Draft 4 is the dialect OpenAPI 3.0
schema objects derive from. ``default`` values (23 of them wrong in this document) are annotations
and not validated.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("clawd_agent.mocks.es_spec")

SPEC_RELATIVE = Path("vendor-specs/elasticsearch/derived/bulk.serverless-9.4.openapi3.json")
#: Accepted by every Elasticsearch API ("Common options", elastic.co/guide/en/elasticsearch/
#: reference/current/common-options.html) yet absent from per-operation specs.
COMMON_QUERY_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path"})
_BULK_PATH = re.compile(r"^/(?:(?P<index>[^/]+)/)?_bulk$")
_URN = "urn:clawd:es-bulk"


def default_spec_path() -> Path:
    """``$CLAWD_SHARED/vendor-specs/...`` when set, else ``../shared`` beside the project root."""
    shared = os.environ.get("CLAWD_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2].parent / "shared"
    return root / SPEC_RELATIVE


def normalise(node: Any) -> Any:
    """The README's normalisation plus OpenAPI 3.0 ``nullable`` as JSON Schema (returns a copy)."""
    if isinstance(node, list):
        return [normalise(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {("anyOf" if k == "oneOf" else k): normalise(v) for k, v in node.items()}
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


class BulkSpec:
    """The loaded, normalised ``_bulk`` spec and its validators. Thread-safe after construction."""

    def __init__(self, document: Mapping[str, Any], path: Path | None = None):
        import jsonschema
        import referencing
        import referencing.jsonschema

        self.path = path
        self.doc = normalise(copy.deepcopy(dict(document)))
        registry = referencing.Registry().with_resource(
            _URN, referencing.Resource.from_contents(
                self.doc, default_specification=referencing.jsonschema.DRAFT4))

        def validator(pointer: str) -> Any:
            return jsonschema.Draft4Validator({"$ref": f"{_URN}#{pointer}"}, registry=registry)

        self._action = validator("/components/schemas/_global.bulk.OperationContainer")
        self._update = validator("/components/schemas/_global.bulk.UpdateAction")
        bulk_200 = "/components/responses/bulk-200/content/application~1json/schema"
        self._response = validator(bulk_200)
        self._response_item = validator(bulk_200 + "/properties/items/items")
        self._constrained = _constrained_names(self.doc)
        self._memo: dict[tuple[int, Any], tuple[str, ...]] = {}
        self._memo_lock = threading.Lock()
        self._error = validator("/components/schemas/_types.ErrorResponseBase")
        container = self.doc["components"]["schemas"]["_global.bulk.OperationContainer"]
        self.actions = frozenset(container["properties"])
        #: (method, has an index in the path) -> {query parameter name: validator of its schema}
        self._operations: dict[tuple[str, bool], dict[str, Any]] = {}
        for path_key, item in self.doc["paths"].items():
            for method, op in item.items():
                if not (isinstance(op, dict) and "responses" in op):
                    continue
                params = {}
                for k, p in enumerate(op.get("parameters", [])):
                    pointer = (p["$ref"][1:] if "$ref" in p else
                               f"/paths/{_escape(path_key)}/{method}/parameters/{k}")
                    p = self._deref(p)
                    if p.get("in") == "query":
                        params[p["name"]] = validator(pointer + "/schema")
                self._operations[(method.upper(), "{index}" in path_key)] = params

    @classmethod
    def load(cls, path: Path | None = None) -> BulkSpec:
        """Raise ``FileNotFoundError`` when the spec is absent, ``ImportError`` without jsonschema."""
        path = path or default_spec_path()
        return cls(orjson.loads(path.read_bytes()), path)

    # ------------------------------------------------------------------ request

    def check_request(self, method: str, path: str, query: Mapping[str, str],
                      headers: Mapping[str, str], body: bytes,
                      parsed: list[Any] | None = None) -> list[str]:
        """Every violation of the spec by one ``_bulk`` request (empty when it conforms).
        ``parsed``: the body's lines from ``parse_ndjson`` when the caller has them already."""
        m = _BULK_PATH.match(path)
        params = self._operations.get((method.upper(), bool(m and m.group("index")))) if m else None
        if params is None:
            return [f"{method} {path}: no such _bulk operation in the spec"]
        problems = self._check_query(params, query)
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/x-ndjson"):
            problems.append(f"Content-Type {ctype or '(none)'!r}: the operation takes "
                            "application/json or application/x-ndjson")
        problems.extend(self.check_ndjson(body, parsed))
        return problems

    def _check_query(self, params: Mapping[str, Any], query: Mapping[str, str]) -> list[str]:
        problems = []
        for name, value in query.items():
            if name in COMMON_QUERY_PARAMS:
                continue
            if name not in params:
                problems.append(f"query parameter {name!r} is not a _bulk parameter")
            elif not any(params[name].is_valid(c) for c in _query_candidates(value)):
                problems.append(f"query parameter {name}={value!r} does not match its schema")
        return problems

    def _deref(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if not ref:
            return node
        target: Any = self.doc
        for part in ref.lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target

    def check_ndjson(self, body: bytes, parsed: list[Any] | None = None) -> list[str]:
        """Framing and every action line of an NDJSON bulk body."""
        if not body:
            return ["empty body: at least one action is required"]
        problems = []
        if not body.endswith(b"\n"):
            problems.append("the final line must end with a newline character (\\n)")
        lines = parse_ndjson(body) if parsed is None else parsed
        i = 0
        while i < len(lines):
            n = i + 1
            action = lines[i]
            i += 1
            if action is NOT_JSON:
                problems.append(f"line {n}: not JSON")
                continue
            problems.extend(f"line {n}: {p}" for p in self.check_action(action))
            kind = next(iter(action), None) if isinstance(action, dict) and len(action) == 1 else None
            if kind in ("index", "create", "update"):
                if i >= len(lines):
                    problems.append(f"line {n}: {kind} needs a source line after it")
                    break
                source = lines[i]
                if not isinstance(source, dict):
                    problems.append(f"line {i + 1}: the source of {kind} must be a JSON object")
                elif kind == "update":
                    problems.extend(f"line {i + 1}: {e}" for e in self._validate(self._update, source))
                i += 1
        return problems

    def check_action(self, action: Any) -> list[str]:
        """One action-and-metadata line against ``_global.bulk.OperationContainer``."""
        problems = self._validate(self._action, action)
        if isinstance(action, dict):
            problems.extend(f"unknown action {k!r} (the spec has {', '.join(sorted(self.actions))})"
                            for k in action if k not in self.actions)
        return problems

    # ------------------------------------------------------------------ response

    def check_response(self, status: int, body: Any, actions: int | None = None) -> list[str]:
        """A response the mock produced: 200 against ``bulk-200`` (one item per action, each with
        exactly one key), anything else against ``_types.ErrorResponseBase``."""
        if status == 200:
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                return _errors(self._response, body)
            problems = _errors(self._response, {**body, "items": []})
            for k, item in enumerate(items):
                problems.extend(f"items/{k}/{p}" for p in self._validate(self._response_item, item))
            if actions is not None and isinstance(items, list) and len(items) != actions:
                problems.append(f"{len(items)} items for {actions} actions (one result per action, "
                                "in order)")
            return problems
        return _errors(self._error, body)


    def _validate(self, validator: Any, instance: Any) -> list[str]:
        """``_errors`` memoised by the instance's *shape*: values whose property has no value
        constraint anywhere in the spec (no enum, pattern, bounds, length or format: ids, index
        names, sequence numbers, reasons) are replaced by a value of the same JSON type, so the
        thousands of action lines and result items that differ only in such values are validated
        once. Exact: such a value can only fail by its type, which the shape keeps."""
        key = (id(validator), _shape(instance, self._constrained, None))
        hit = self._memo.get(key)
        if hit is not None:
            return list(hit)
        found = _errors(validator, instance)
        if not found:  # errors are not cached: their messages name the real values
            with self._memo_lock:
                if len(self._memo) > 50_000:
                    self._memo.clear()
                self._memo[key] = ()
        return found


def _shape(node: Any, constrained: frozenset[str], key: str | None) -> Any:
    """A hashable stand-in for ``node`` with the same validation result (see ``_validate``): nested
    tuples tagged 1 (object) or 2 (array); unconstrained strings and numbers become a marker of
    their JSON type. Key order matters only for the cache hit rate, never for correctness."""
    t = type(node)
    if t is dict:
        return (1, tuple((k, _shape(v, constrained, k)) for k, v in node.items()))
    if t is list:
        return (2, tuple(_shape(v, constrained, key) for v in node))
    if key in constrained or t is bool or node is None:
        return node
    if t is str:
        return ""
    if t is int:
        return 0
    if t is float:
        return 0.5
    return node


_VALUE_KEYWORDS = ("enum", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                   "minLength", "maxLength", "format", "multipleOf", "const", "not")


def _constrained_names(doc: Mapping[str, Any]) -> frozenset[str]:
    """Property names whose schema, anywhere in the document, constrains the value beyond its type
    (following ``$ref``/``allOf``/``anyOf`` but not into nested properties)."""
    schemas = doc["components"]["schemas"]

    def constrains(schema: Any, seen: frozenset[str]) -> bool:
        if not isinstance(schema, dict):
            return False
        if any(k in schema for k in _VALUE_KEYWORDS):
            return True
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen and constrains(schemas.get(name), seen | {name}):
                return True
        subs = [*schema.get("allOf", []), *schema.get("anyOf", [])]
        if isinstance(schema.get("items"), dict):
            subs.append(schema["items"])
        return any(constrains(s, seen) for s in subs)

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if constrains(sub, frozenset()):
                    names.add(name)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return frozenset(names)


#: ``parse_ndjson``'s value for a line that is not JSON.
NOT_JSON: Any = type("NotJson", (), {"__repr__": lambda self: "NOT_JSON"})()


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


def _errors(validator: Any, instance: Any) -> list[str]:
    out = []
    for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append(f"{where}: {e.message[:200]}")
    return out


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _query_candidates(value: str) -> Iterable[Any]:
    yield value
    if value in ("true", "false"):
        yield value == "true"
    with contextlib.suppress(ValueError):
        yield float(value)


@lru_cache(maxsize=4)
def load_cached(path: str | None = None) -> BulkSpec | None:
    """The spec for a mock, or None (with one warning) when the file or jsonschema is missing."""
    p = Path(path) if path else default_spec_path()
    try:
        return BulkSpec.load(p)
    except FileNotFoundError:
        log.warning("elasticsearch mock: %s not found; _bulk spec conformance is NOT checked", p)
    except ImportError:
        log.warning("elasticsearch mock: jsonschema is not installed; _bulk spec conformance is NOT "
                    "checked")
    return None
