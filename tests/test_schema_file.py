"""The checked-in JSON Schema is generated from agent.event.FIELDS, and agrees with validate_event."""

from __future__ import annotations

import copy
import json

import jsonschema
import orjson
import pytest

from agent.event import FIELDS, EventValidationError, validate_event
from agent.mapping import MappingContext, map_record, parse_line
from agent.schema_export import SCHEMA_PATH, build_schema, main, render_schema
from tests.shared_paths import FIXTURES
from tests.test_event_model import good_event
from tests.test_mapping_shapes import CERT, E1, E2, E4, E7, E8, adapter, oc

CTX = MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme-corp",
                     host_name="build-7")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_checked_in_schema_is_not_stale():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), (
        "artifacts/schema/security-event.schema.json is stale: run python -m agent.schema_export")


def test_check_mode_detects_a_stale_file(tmp_path):
    out = tmp_path / "s.json"
    assert main(["--output", str(out)]) == 0
    assert main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text().replace('"2.0.0"', '"2.0.1"', 1) + " ")
    assert main(["--check", "--output", str(out)]) == 1


def test_schema_mirrors_field_table():
    schema = build_schema()
    assert list(schema["properties"]) == [f.name for f in FIELDS]
    assert schema["required"] == [f.name for f in FIELDS if f.required]
    sev = schema["properties"]["decision"]["properties"]["severity"]
    assert sev["enum"] == ["info", "low", "medium", "high", "critical"]


def all_mapped_events() -> list[dict]:
    lines = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
    evs = [parse_line(line, context=CTX) for line in lines]
    for req in json.loads((FIXTURES / "audit-forward-webhook.requests.json").read_text()):
        evs.append(map_record(req["body"], context=CTX))
    for rec in json.loads((FIXTURES / "audit-api.response.json").read_text())["body"]["events"]:
        evs.append(map_record(rec, context=CTX))
    for rec in (E1, E2, E4, E7, E8, CERT, oc(), oc(decision="allowed", type="file_read", resource="/a")):
        evs.append(map_record(rec, context=CTX))
    for typ in ("tool_call_start", "tool_call_blocked", "output_sanitized", "prompt_security_jailbreak",
                "session_start"):
        evs.append(map_record(adapter(type=typ, decision={"denied": True} if "blocked" in typ else None),
                              context=CTX))
    evs.append(map_record(orjson.loads(b'{"id":"x","timestamp":"2026-01-01T00:00:00Z","event_type":"check",'
                                       b'"action_type":"egress","target":"[::1]:80","decision":"blocked"}'),
                          context=MappingContext()))
    return evs


def test_every_mapped_event_passes_both_validators(validator):
    evs = all_mapped_events()
    assert len(evs) > 80
    for ev in evs:
        validate_event(ev)
        errors = list(validator.iter_errors(ev))
        assert not errors, (ev["source"], [e.message for e in errors])


BROKEN = [
    ("severity spelling", lambda e: e["decision"].__setitem__("severity", "Warning"), "decision.severity"),
    ("missing id", lambda e: e.pop("event_id"), "event_id"),
    ("uppercase uuid", lambda e: e.__setitem__("event_id", e["event_id"].upper()), "event_id"),
    ("offset timestamp", lambda e: e.__setitem__("timestamp", "2026-11-26T08:28:51+01:00"), "timestamp"),
    ("port string", lambda e: e["resource"].__setitem__("port", "443"), "resource.port"),
    ("port range", lambda e: e["resource"].__setitem__("port", -1), "resource.port"),
    ("0x policy hash", lambda e: e["decision"].__setitem__("policy_hash", "0x" + "a" * 64),
     "decision.policy_hash"),
    ("hushd indicator type", lambda e: e["threat"]["indicator"].__setitem__("type", "domain"),
     "threat.indicator.type"),
    ("label not string", lambda e: e["labels"].__setitem__("x", 1), "labels.x"),
    ("empty name", lambda e: e["resource"].__setitem__("name", ""), "resource.name"),
    ("indicator on allow",
     lambda e: (e["decision"].__setitem__("allowed", True), e.__setitem__("outcome", "success")),
     "decision.allowed"),
    ("outcome mismatch", lambda e: e.__setitem__("outcome", "success"), "outcome"),
    ("unknown category", lambda e: e.__setitem__("event_category", "intrusion_detection"), "event_category"),
    ("observer missing", lambda e: e.pop("observer"), "observer"),
    ("metadata list", lambda e: e.__setitem__("metadata", []), "metadata"),
]


@pytest.mark.parametrize(("name", "mutate", "path"), BROKEN, ids=[b[0] for b in BROKEN])
def test_both_validators_reject_broken_events(validator, name, mutate, path):
    ev = copy.deepcopy(good_event())
    assert not list(validator.iter_errors(ev))
    mutate(ev)
    assert list(validator.iter_errors(ev)), f"jsonschema accepted: {name}"
    with pytest.raises(EventValidationError) as exc:
        validate_event(ev)
    assert str(exc.value).startswith(path + ":")


def test_both_validators_accept_unknown_fields(validator):
    ev = good_event()
    ev["added_in_2_1"] = {"x": 1}
    validate_event(ev)
    assert not list(validator.iter_errors(ev))
