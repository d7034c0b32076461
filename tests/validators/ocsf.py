"""Strict OCSF 1.8.0 validator for tests: official JSON Schema + export-driven structure + semantic checks.

Why three layers (../shared/reference/schemas.md §3.3):
1. The pre-generated JSON Schemas (draft 2020-12, profiles host+security_control, ``additionalProperties:
   false``) are the official shape for the classes they cover; a class without a file is still checked by 2.
2. A walk over the compiled export (``schema-1.8.0.json``) for every class: known attributes only, types
   (dictionary types with regex/range/max_len), enums, required attributes, ``at_least_one``/``just_one``,
   and profile gating (the pre-generated files accept host/security_control attributes whatever the event
   declares, so only this walk can tell that ``actor`` needs ``host`` in ``metadata.profiles``).
3. What no schema expresses: ``type_uid = class_uid*100 + activity_id``, category of the class, enum captions
   equal to their ids' captions (free text only for 99 Other), integer epoch-millisecond times in a sane
   range, ``metadata.version``, ``metadata.profiles`` exactly the profiles whose attributes are present, and
   no JSON ``null`` anywhere (the JSON Schema lets ``null`` through in ``json_t`` values such as ``data``).

The data is read in place from ../shared (tests/shared_paths.py), loaded and compiled once. Missing data
raises: a validator that silently skips would prove nothing.
"""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from tests.shared_paths import SCHEMAS

OCSF_VERSION = "1.8.0"
EXPORT_PATH = SCHEMAS / "ocsf" / "export" / f"schema-{OCSF_VERSION}.json"
JSON_SCHEMA_DIR = SCHEMAS / "ocsf" / "json-schema" / OCSF_VERSION
JSON_SCHEMA_PROFILES = "host+security_control"
# The classes ../shared has a pre-generated JSON Schema for (schemas.md §1); each must be there.
PREGENERATED = frozenset({
    "detection_finding", "data_security_finding", "file_activity", "process_activity", "network_activity",
    "http_activity", "api_activity",
})
TIME_MIN_MS, TIME_MAX_MS = 10**12, 10**14  # 2001-09-09 .. 5138: catches seconds and micro/nanoseconds
_MESSAGE_MAX = 300


def _load_json(path: Any) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"OCSF data missing: {path} (../shared must be beside the repository)")
    with open(path, "rb") as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def export() -> dict:
    """The compiled OCSF 1.8.0 schema (server /export/v2/schema format)."""
    data = _load_json(EXPORT_PATH)
    if data.get("version") != OCSF_VERSION:
        raise ValueError(f"{EXPORT_PATH}: version {data.get('version')!r}, expected {OCSF_VERSION}")
    return data


@lru_cache(maxsize=1)
def classes_by_uid() -> dict[int, dict]:
    return {c["uid"]: c for c in export()["classes"].values()}


@cache
def schema_validator(class_name: str) -> Draft202012Validator | None:
    """The compiled JSON Schema validator of a class, or None when ../shared has no file for it."""
    path = JSON_SCHEMA_DIR / f"{class_name}.{JSON_SCHEMA_PROFILES}.schema.json"
    if class_name not in PREGENERATED and not path.is_file():
        return None
    # Official generated files: not re-checked with check_schema (about 0.8 s each).
    return Draft202012Validator(_load_json(path))


@cache
def _type_rule(type_name: str) -> tuple[str, re.Pattern[str] | None, tuple[int, int] | None, int | None]:
    """(base type, regex, range, max_len) of a dictionary type such as ``ip_t`` or ``port_t``."""
    types = export()["dictionary"]["types"]["attributes"]
    t = types.get(type_name)
    if t is None:
        raise KeyError(f"unknown OCSF type {type_name!r}")
    base = t.get("type", type_name)
    regex = re.compile(t["regex"]) if "regex" in t else None
    rng = tuple(t["range"]) if "range" in t else None
    return base, regex, rng, t.get("max_len")  # type: ignore[return-value]


_BASE_CHECK = {
    "string_t": lambda v: type(v) is str,
    "integer_t": lambda v: type(v) is int,
    "long_t": lambda v: type(v) is int,
    "float_t": lambda v: type(v) in (int, float),
    "boolean_t": lambda v: type(v) is bool,
    "json_t": lambda v: True,
}


class _Walk:
    """State of one document walk: errors, the declared profiles, and the profile-gated paths seen."""

    def __init__(self, declared: set[str]) -> None:
        self.errors: list[str] = []
        self.declared = declared
        self.gated: list[tuple[str, tuple[str, ...]]] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path or '(event)'}: {msg}")


def _find_nulls(v: Any, path: str, w: _Walk) -> None:
    if v is None:
        w.err(path, "null is not allowed (omit the attribute)")
    elif type(v) is dict:
        for k, x in v.items():
            _find_nulls(x, f"{path}.{k}", w)
    elif type(v) is list:
        for i, x in enumerate(v):
            _find_nulls(x, f"{path}[{i}]", w)


def _check_value(v: Any, a: dict, path: str, w: _Walk) -> None:
    if v is None:
        w.err(path, "null is not allowed (omit the attribute)")
        return
    t = a["type"]
    if t == "object_t":
        if type(v) is not dict:
            w.err(path, f"expected an object ({a.get('object_type')}), got {type(v).__name__}")
            return
        otype = a["object_type"]
        if otype == "object":  # `unmapped` and other free objects: anything but null
            _find_nulls(v, path, w)
            return
        obj = export()["objects"].get(otype)
        if obj is None:
            w.err(path, f"object type {otype!r} is not in the export")
            return
        _check_object(v, obj, path, w)
        return
    base, regex, rng, max_len = _type_rule(t)
    if not _BASE_CHECK[base](v):
        w.err(path, f"expected {t} ({base}), got {type(v).__name__} {v!r:.60}")
        return
    if base == "json_t":
        _find_nulls(v, path, w)
        return
    if regex is not None and regex.search(v) is None:
        w.err(path, f"{v!r:.60} does not match the {t} pattern")
    if rng is not None and not rng[0] <= v <= rng[1]:
        w.err(path, f"{v} is outside {t} range {rng[0]}..{rng[1]}")
    if max_len is not None and len(v) > max_len:
        w.err(path, f"longer than {max_len} characters ({t})")
    if t == "timestamp_t" and not TIME_MIN_MS <= v < TIME_MAX_MS:
        w.err(path, f"{v} is not epoch milliseconds ({TIME_MIN_MS} <= t < {TIME_MAX_MS})")
    enum = a.get("enum")
    if enum is not None and str(v) not in enum:
        w.err(path, f"{v!r} is not one of the enum values {sorted(enum, key=str)}")


def _check_object(o: dict, defn: dict, path: str, w: _Walk) -> None:
    """Check one class or object instance against its export definition."""
    attrs = defn["attributes"]
    prefix = f"{path}." if path else ""
    name = defn.get("name", "?")
    for key, v in o.items():
        a = attrs.get(key)
        p = prefix + key
        if a is None:
            w.err(p, f"unknown attribute of {name}")
            _find_nulls(v, p, w)
            continue
        profiles = a.get("profiles")
        if profiles:
            w.gated.append((p, tuple(profiles)))
        if a.get("is_array"):
            if type(v) is not list:
                w.err(p, f"expected an array, got {type(v).__name__}")
                continue
            for i, item in enumerate(v):
                _check_value(item, a, f"{p}[{i}]", w)
        else:
            _check_value(v, a, p, w)
    for key, a in attrs.items():
        if a.get("requirement") != "required" or key in o:
            continue
        profiles = a.get("profiles")
        if profiles and not w.declared.intersection(profiles):
            continue  # required only by a profile the event does not declare (cloud, osint)
        w.err(prefix + key, f"required attribute of {name} is missing")
    cons = defn.get("constraints") or {}
    if "at_least_one" in cons and not any(k in o for k in cons["at_least_one"]):
        w.err(path, f"{name} needs at least one of {cons['at_least_one']}")
    if "just_one" in cons and sum(k in o for k in cons["just_one"]) != 1:
        w.err(path, f"{name} needs exactly one of {cons['just_one']}")
    for key, a in attrs.items():  # enum id <-> caption siblings
        sib = a.get("sibling")
        enum = a.get("enum")
        if not sib or enum is None:
            continue
        has_id, has_cap = key in o, sib in o
        if has_cap and not has_id:
            w.err(prefix + sib, f"caption without its id {key}")
        if not has_id or str(o[key]) not in enum:
            continue
        cap = o.get(sib)
        if o[key] == 99:
            if not (type(cap) is str and cap):
                w.err(prefix + sib, f"{key} is 99 (Other): {sib} must carry the source value")
        elif not has_cap:
            w.err(prefix + sib, f"missing; {key}={o[key]} has caption {enum[str(o[key])]['caption']!r}")
        elif cap != enum[str(o[key])]["caption"]:
            w.err(prefix + sib, f"{cap!r} does not match {key}={o[key]} "
                                f"(caption {enum[str(o[key])]['caption']!r})")


def _semantic(doc: dict, cls: dict, w: _Walk) -> None:
    class_uid = cls["uid"]
    if doc.get("category_uid") != cls["category_uid"]:
        w.err("category_uid", f"{doc.get('category_uid')!r} is not the category of class {class_uid} "
                              f"({cls['category_uid']} {cls['category_name']})")
    act = doc.get("activity_id")
    if type(act) is int and doc.get("type_uid") != class_uid * 100 + act:
        w.err("type_uid", f"{doc.get('type_uid')!r} != class_uid*100 + activity_id = {class_uid * 100 + act}")
    md = doc.get("metadata")
    if type(md) is not dict:
        return
    if md.get("version") != OCSF_VERSION:
        w.err("metadata.version", f"{md.get('version')!r}, expected {OCSF_VERSION!r}")
    profiles = md.get("profiles", [])
    if type(profiles) is not list or not all(type(p) is str for p in profiles):
        return  # reported by the structural walk
    if len(set(profiles)) != len(profiles):
        w.err("metadata.profiles", f"duplicates in {profiles}")
    for p in sorted(set(profiles) - set(cls.get("profiles") or ())):
        w.err("metadata.profiles", f"profile {p!r} does not apply to class {cls['name']}")
    used: set[str] = set()
    for path, gate in w.gated:
        hit = w.declared.intersection(gate)
        if hit:
            used.update(hit)
        else:
            w.err(path, f"needs profile {' or '.join(gate)} in metadata.profiles")
    for p in sorted(set(profiles) - used):
        w.err("metadata.profiles", f"declares {p!r} but no attribute of that profile is present")


def _schema_errors(v: Draft202012Validator, doc: dict) -> list[str]:
    out = []
    for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(map(str, e.absolute_path)) or "(event)"
        msg = e.message if len(e.message) <= _MESSAGE_MAX else e.message[:_MESSAGE_MAX] + "..."
        out.append(f"schema {where}: {msg}")
    return out


def validate_ocsf(doc: Any) -> list[str]:
    """Every problem found in one OCSF 1.8.0 event, as ``"<path>: <what>"`` strings; ``[]`` means valid."""
    if type(doc) is not dict:
        return [f"(event): expected a JSON object, got {type(doc).__name__}"]
    uid = doc.get("class_uid")
    cls = classes_by_uid().get(uid) if type(uid) is int else None
    if cls is None:
        return [f"class_uid: {uid!r} is not an OCSF {OCSF_VERSION} class"]
    md = doc.get("metadata")
    declared = md.get("profiles") if type(md) is dict else None
    w = _Walk(set(p for p in declared if type(p) is str) if type(declared) is list else set())
    sv = schema_validator(cls["name"])
    errors = _schema_errors(sv, doc) if sv is not None else []
    _check_object(doc, cls, "", w)
    _semantic(doc, cls, w)
    errors.extend(w.errors)
    return list(dict.fromkeys(errors))
