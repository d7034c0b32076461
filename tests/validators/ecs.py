"""Strict offline validator of ECS 9.4.0 documents, against the official field set.

Data: ``../shared/schemas/ecs/9.4.0/derived/ecs_flat.json`` (``ecs_flat.yml`` of elastic/ecs tag v9.4.0
rendered as JSON), read in place and loaded once. Rules: ../shared/reference/schemas.md §2.3 (no ECS
event validator exists offline and Elasticsearch does not run here), numbered as there:

1. ``@timestamp`` and ``ecs.version`` present, ``ecs.version == "9.4.0"``;
2. every leaf is an ECS field or lies under ``clawdstrike.`` (flattening stops at ``object``,
   ``flattened`` and ``nested`` fields, whose contents are checked as ES would map them);
3. the JSON type matches the ECS type (keyword family -> string, long/integer/short/byte -> integer in
   range, float family -> finite number, boolean, ``ip`` parses, ``date`` is RFC 3339);
4. ``normalize: [array]`` fields are JSON arrays;
5. ``allowed_values`` are respected;
6. each ``event.type`` is expected by one of the document's ``event.category`` values; no ``signal`` kind;
7. ``labels`` values are strings, not objects; keyword strings do not exceed ``ignore_above``;
8. beta fields (``gen_ai.*``) are accepted.

Stricter than Elasticsearch on purpose (our producer should never need the leniency): arrays only where
ECS normalises to array, ``expected_values`` and ``pattern`` enforced, no ``null``/``""``/``[]``/``{}``
anywhere (unknown values are omitted), no key that Elasticsearch would reject, no field given twice.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from datetime import datetime
from functools import cache
from typing import Any

from tests.shared_paths import SCHEMAS

ECS_VERSION = "9.4.0"
ECS_FLAT = SCHEMAS / "ecs" / ECS_VERSION / "derived" / "ecs_flat.json"
NAMESPACE = "clawdstrike"

_STRING_TYPES = frozenset(("keyword", "wildcard", "match_only_text", "constant_keyword", "text"))
_INT_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-(2**7), 2**7 - 1),
}
_FLOAT_TYPES = frozenset(("float", "double", "scaled_float", "half_float"))
_CONTAINER_TYPES = frozenset(("object", "flattened", "nested"))
_LUCENE_TERM_BYTES = 32766  # a keyword without ignore_above fails to index beyond this
_DYNAMIC_KEYWORD_LIMIT = 1024  # ECS template's strings_as_keyword dynamic mapping (labels values)
_DATE_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2}))$")


class EcsSchema:
    """The field set indexed for validation: field defs, intermediate object names, category pairs."""

    def __init__(self, flat: dict[str, dict]) -> None:
        self.fields = flat
        prefixes: set[str] = set()
        for name in flat:
            parts = name.split(".")
            for i in range(1, len(parts)):
                prefixes.add(".".join(parts[:i]))
        self.prefixes = frozenset(prefixes)
        self.allowed = {name: frozenset(v["name"] for v in f["allowed_values"])
                        for name, f in flat.items() if f.get("allowed_values")}
        self.expected = {name: frozenset(f["expected_values"])
                         for name, f in flat.items() if f.get("expected_values")}
        self.patterns = {name: re.compile(f["pattern"]) for name, f in flat.items() if f.get("pattern")}
        self.expected_types = {v["name"]: frozenset(v.get("expected_event_types", ()))
                               for v in flat["event.category"]["allowed_values"]}
        self.beta = frozenset(name for name, f in flat.items() if f.get("beta"))


@cache
def load_schema() -> EcsSchema:
    """Load ecs_flat.json once. Missing data is a failure (FileNotFoundError), never a skip."""
    if not ECS_FLAT.is_file():
        raise FileNotFoundError(f"ECS {ECS_VERSION} field set not found at {ECS_FLAT} (../shared missing?)")
    return EcsSchema(json.loads(ECS_FLAT.read_text(encoding="utf-8")))


def _shown(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _bad_date(v: str) -> bool:
    m = _DATE_RE.match(v)
    if m is None:
        return True
    try:
        datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    except ValueError:  # month 13, Feb 30, second 60 ...
        return True
    return m.group(4) is not None and (int(m.group(4)) > 23 or int(m.group(5)) > 59)


def _bad_ip(v: str) -> bool:
    if "%" in v:  # Python accepts IPv6 scope ids, Elasticsearch does not
        return True
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return True
    return False


def _bad_geo_point(v: Any) -> bool:
    if type(v) is dict:
        lat, lon = v.get("lat"), v.get("lon")
    elif type(v) is list and len(v) == 2:
        lon, lat = v
    elif type(v) is str:
        parts = v.split(",")
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            return True
        if len(parts) != 2:
            return True
    else:
        return True
    ok = all(type(x) in (int, float) and math.isfinite(x) for x in (lat, lon))
    return not ok or not (-90 <= lat <= 90 and -180 <= lon <= 180)


class _Walker:
    def __init__(self, schema: EcsSchema) -> None:
        self.s = schema
        self.errors: list[str] = []
        self.seen: set[str] = set()
        self.in_list = 0  # inside an array of objects a leaf path legitimately repeats

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}")

    # -- keys and generic emptiness --------------------------------------------------------------

    def join(self, prefix: str, key: Any) -> str | None:
        if type(key) is not str or not key or key.startswith(".") or key.endswith(".") or ".." in key:
            self.err(prefix or "(document)", f"invalid field name {_shown(key)}")
            return None
        return f"{prefix}.{key}" if prefix else key

    def empty(self, path: str, v: Any) -> bool:
        """Unknown values must be omitted: null, "", [] and {} are errors everywhere."""
        if v is None:
            self.err(path, "null value (omit unknown fields)")
            return True
        if v == "" or v == [] or v == {}:
            self.err(path, f"empty value {_shown(v)} (omit unknown fields)")
            return True
        return False

    # -- the walk -----------------------------------------------------------------------------------

    def walk_object(self, prefix: str, obj: dict) -> None:
        for key, v in obj.items():
            path = self.join(prefix, key)
            if path is None:
                continue
            self.node(path, v)

    def node(self, path: str, v: Any) -> None:
        if self.empty(path, v):
            return
        if path == NAMESPACE or path.startswith(NAMESPACE + "."):
            self.custom(path, v)
            return
        f = self.s.fields.get(path)
        if f is not None:
            self.field(path, f, v)
        elif path in self.s.prefixes:
            if type(v) is not dict:
                self.err(path, f"expected an object (ECS field set), got {_shown(v)}")
            else:
                self.walk_object(path, v)
        else:
            self.unknown(path, v)

    def unknown(self, path: str, v: Any) -> None:
        """Name every leaf of an unknown subtree (``session.id``, not just ``session``)."""
        if type(v) is dict:
            for key, sub in v.items():
                p = self.join(path, key)
                if p is not None and not self.empty(p, sub):
                    self.unknown(p, sub)
            return
        self.err(path, "not an ECS 9.4.0 field (custom fields belong under clawdstrike.*)")

    def custom(self, path: str, v: Any) -> None:
        """Our namespace: any JSON shape, but no empties, keys ES accepts, and no field twice."""
        if type(v) is dict:
            for key, sub in v.items():
                p = self.join(path, key)
                if p is not None and not self.empty(p, sub):
                    self.custom(p, sub)
            return
        if type(v) is list:
            self.leaf(path)
            self.in_list += 1
            for item in v:
                if not self.empty(path, item):
                    self.custom(path, item)
            self.in_list -= 1
            return
        if type(v) is float and not math.isfinite(v):
            self.err(path, "non-finite number")
        self.leaf(path)

    def leaf(self, path: str) -> None:
        if self.in_list:
            return
        if path in self.seen:
            self.err(path, "field given more than once (dotted and nested keys?)")
        self.seen.add(path)

    def field(self, path: str, f: dict, v: Any) -> None:
        ftype = f["type"]
        is_array = "array" in f.get("normalize", ())
        if ftype == "geo_point":
            self.leaf(path)
            if _bad_geo_point(v):
                self.err(path, f"expected a geo_point, got {_shown(v)}")
            return
        if is_array:
            if type(v) is not list:
                self.err(path, f"expected an array (ECS normalize: array), got {_shown(v)}")
                return
            values = v
        elif type(v) is list:
            if ftype == "nested":
                values = v
            else:
                self.err(path, f"expected a single value, got an array {_shown(v)}")
                return
        else:
            values = [v]
        if ftype in _CONTAINER_TYPES:
            listed = values is v
            if listed:
                self.leaf(path)
                self.in_list += 1
            for item in values:
                if not self.empty(path, item):
                    self.container(path, f, item)
            if listed:
                self.in_list -= 1
            return
        self.leaf(path)
        for item in values:
            if not self.empty(path, item):
                self.scalar(path, f, ftype, item)

    def container(self, path: str, f: dict, v: Any) -> None:
        if type(v) is not dict:
            self.err(path, f"expected an object ({f['type']}), got {_shown(v)}")
            return
        if f["type"] == "flattened":
            self.leaf(path)
            return
        object_type = f.get("object_type")
        has_children = path in self.s.prefixes
        for key, sub in v.items():
            p = self.join(path, key)
            if p is None or self.empty(p, sub):
                continue
            if p in self.s.fields or p in self.s.prefixes:
                self.node(p, sub)
            elif object_type is not None:
                self.leaf(p)
                if type(sub) in (dict, list):
                    self.err(p, f"{path} values must be {object_type}, not nested objects or arrays")
                else:
                    self.scalar(p, {"ignore_above": _DYNAMIC_KEYWORD_LIMIT}, object_type, sub)
            elif has_children:
                self.unknown(p, sub)
            else:
                self.leaf(p)  # a free-form ECS object (e.g. entity.raw)

    def scalar(self, path: str, f: dict, ftype: str, v: Any) -> None:
        if ftype in _STRING_TYPES:
            if type(v) is not str:
                self.err(path, f"expected a string ({ftype}), got {_shown(v)}")
                return
            limit = f.get("ignore_above")
            if limit is not None and len(v) > limit:
                self.err(path, f"{len(v)} characters exceed ignore_above {limit} (not indexed)")
            elif ftype == "keyword" and limit is None and len(v.encode("utf-8", "surrogatepass")) > \
                    _LUCENE_TERM_BYTES:
                self.err(path, f"keyword longer than {_LUCENE_TERM_BYTES} bytes cannot be indexed")
        elif ftype in _INT_RANGES:
            lo, hi = _INT_RANGES[ftype]
            if type(v) is not int or not lo <= v <= hi:
                self.err(path, f"expected an integer ({ftype}), got {_shown(v)}")
                return
        elif ftype in _FLOAT_TYPES:
            if type(v) not in (int, float) or not math.isfinite(v):
                self.err(path, f"expected a number ({ftype}), got {_shown(v)}")
                return
        elif ftype == "boolean":
            if type(v) is not bool:
                self.err(path, f"expected a boolean, got {_shown(v)}")
                return
        elif ftype == "ip":
            if type(v) is not str or _bad_ip(v):
                self.err(path, f"expected an IPv4/IPv6 address, got {_shown(v)}")
                return
        elif ftype == "date":
            if type(v) is not str or _bad_date(v):
                self.err(path, f"expected an RFC 3339 date, got {_shown(v)}")
                return
        else:
            self.err(path, f"unsupported ECS type {ftype!r} in the validator")
            return
        allowed = self.s.allowed.get(path)
        if allowed is not None and v not in allowed:
            self.err(path, f"{_shown(v)} is not an allowed value ({'|'.join(sorted(allowed))})")
        expected = self.s.expected.get(path)
        if expected is not None and v not in expected:
            self.err(path, f"{_shown(v)} is not an expected value ({'|'.join(sorted(expected))})")
        pattern = self.s.patterns.get(path)
        if pattern is not None and type(v) is str and pattern.match(v) is None:
            self.err(path, f"{_shown(v)} does not match {pattern.pattern}")


def _get(doc: dict, dotted: str) -> Any:
    """A value given nested or with a dotted key (both are legal in an ES document)."""
    if dotted in doc:
        return doc[dotted]
    head, _, rest = dotted.partition(".")
    sub = doc.get(head)
    if rest and type(sub) is dict:
        return _get(sub, rest)
    return None


def validate_ecs(doc: Any) -> list[str]:
    """All violations of the ECS 9.4.0 rules by one document (empty list = valid)."""
    schema = load_schema()
    if type(doc) is not dict:
        return [f"(document): expected a JSON object, got {_shown(doc)}"]
    w = _Walker(schema)
    # Rule 1
    if _get(doc, "@timestamp") is None:
        w.err("@timestamp", "required field missing")
    version = _get(doc, "ecs.version")
    if version is None:
        w.err("ecs.version", "required field missing")
    elif version != ECS_VERSION:
        w.err("ecs.version", f"expected {ECS_VERSION!r}, got {_shown(version)}")
    # Rules 2-5, 7
    w.walk_object("", doc)
    # Rule 6
    kind = _get(doc, "event.kind")
    if kind == "signal":
        w.err("event.kind", "'signal' is reserved for Kibana-generated alerts")
    categories = _get(doc, "event.category")
    types = _get(doc, "event.type")
    if type(types) is list:
        cats = categories if type(categories) is list else []
        expected: set[str] = set()
        for c in cats:
            expected |= schema.expected_types.get(c, frozenset()) if type(c) is str else set()
        for t in types:
            if type(t) is str and t not in expected:
                w.err("event.type", f"{t!r} is not expected by any event.category {cats!r}")
    return w.errors
