"""SecurityEvent 2.0.0: enums, severity rank, validate_event errors, encoding, event_time_ms."""

from __future__ import annotations

import copy

import orjson
import pytest

from agent.event import (
    FIELDS,
    SCHEMA_VERSION,
    EventCategory,
    EventType,
    EventValidationError,
    Outcome,
    ResourceType,
    Severity,
    SourceKind,
    encode_event,
    event_time_ms,
    severity_at_least,
    severity_rank,
    timestamp_to_ms,
    validate_event,
)


def good_event() -> dict:
    return {
        "schema_version": "2.0.0",
        "event_id": "01a216f8-c437-76f3-8ab0-363d678b43d8",
        "event_type": "forbidden_path",
        "event_category": "file",
        "timestamp": "2026-11-26T08:28:51.639708766Z",
        "outcome": "failure",
        "action": "file_access",
        "agent": {"id": "agent-007"},
        "observer": {"product": "hushd", "host_name": "h1"},
        "session": {"id": "sess-1", "tenant_id": "acme"},
        "threat": {"indicator": {"type": "file", "value": "/etc/shadow"}},
        "decision": {
            "allowed": False,
            "guard": "forbidden_path",
            "severity": "critical",
            "policy_hash": "sha256:" + "ab" * 32,
        },
        "resource": {"type": "file", "name": "/etc/shadow", "path": "/etc/shadow"},
        "metadata": {"anything": [1, {"x": None}]},
        "labels": {"team": "sec"},
        "source": {"kind": "hushd_audit", "id": "01a216f8-c437-76f3-8ab0-363d678b43d8", "type": "violation"},
    }


def test_good_event_validates():
    validate_event(good_event())


def test_schema_version_constant():
    assert SCHEMA_VERSION == "2.1.0"


def test_enum_values():
    assert [s.value for s in Severity] == ["info", "low", "medium", "high", "critical"]
    assert {o.value for o in Outcome} == {"success", "failure", "unknown"}
    assert "ai" in {c.value for c in EventCategory}
    assert {"session", "identity", "prompt", "output"} <= {r.value for r in ResourceType}
    assert {k.value for k in SourceKind} == {
        "hushd_audit",
        "hushd_security_event",
        "hushd_certification_webhook",
        "adapter_audit",
        "openclaw_audit",
    }
    # every hushd 1.0.0 event type is still valid (compatible names)
    v1 = {
        "policy_violation",
        "policy_allow",
        "guard_block",
        "guard_warn",
        "secret_detected",
        "egress_blocked",
        "forbidden_path",
        "patch_rejected",
        "session_start",
        "session_end",
    }
    assert v1 <= {t.value for t in EventType}


def test_severity_rank_orders():
    ranks = [Severity(s).rank for s in ("info", "low", "medium", "high", "critical")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
    assert severity_rank("high") > severity_rank("medium")
    assert severity_at_least("critical", "high")
    assert not severity_at_least("low", "medium")
    with pytest.raises(KeyError):
        severity_rank("Warning")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda e: e["decision"].__setitem__("severity", "Warning"),
            "decision.severity: expected one of info|low|medium|high|critical, got 'Warning'",
        ),
        (
            lambda e: e.pop("event_id"),
            "event_id: expected a lowercase canonical UUID, got nothing (field missing)",
        ),
        (
            lambda e: e.__setitem__("event_id", "01A216F8-C437-76F3-8AB0-363D678B43D8"),
            "event_id: expected a lowercase canonical UUID, got '01A216F8",
        ),
        (
            lambda e: e.__setitem__("timestamp", "2026-11-26T08:28:51+00:00"),
            "timestamp: expected an RFC 3339 UTC timestamp ending in Z",
        ),
        (
            lambda e: e.__setitem__("timestamp", "2026-11-26T08:28:51.1234567891Z"),
            "timestamp: expected an RFC 3339 UTC timestamp ending in Z",
        ),
        (
            lambda e: e["resource"].__setitem__("port", "443"),
            "resource.port: expected an integer 0..65535, got '443'",
        ),
        (
            lambda e: e["resource"].__setitem__("port", 70000),
            "resource.port: expected an integer 0..65535, got 70000",
        ),
        (
            lambda e: e["resource"].__setitem__("port", True),
            "resource.port: expected an integer 0..65535, got True",
        ),
        (
            lambda e: e["decision"].__setitem__("policy_hash", "0x" + "ab" * 32),
            "decision.policy_hash: expected sha256:<64 lowercase hex>",
        ),
        (
            lambda e: e["threat"]["indicator"].__setitem__("type", "file_path"),
            "threat.indicator.type: expected one of domain-name|ipv4-addr|ipv6-addr|file, got 'file_path'",
        ),
        (lambda e: e["labels"].__setitem__("n", 3), "labels.n: expected a string, got 3 (int)"),
        (lambda e: e.__setitem__("metadata", []), "metadata: expected an object, got [] (list)"),
        (
            lambda e: e["observer"].pop("product"),
            "observer.product: expected one of hushd|clawdstrike-adapter",
        ),
        (
            lambda e: e["resource"].__setitem__("name", ""),
            "resource.name: expected a non-empty string, got ''",
        ),
        (
            lambda e: e["decision"].__setitem__("allowed", "false"),
            "decision.allowed: expected a boolean, got 'false'",
        ),
        (lambda e: e.__setitem__("agent", "agent-007"), "agent: expected an object, got 'agent-007'"),
        (
            lambda e: e.__setitem__("schema_version", "1.0.0"),
            "schema_version: expected a 2.x.y version string",
        ),
        (lambda e: e["source"].__setitem__("kind", "sse"), "source.kind: expected one of hushd_audit|"),
        (lambda e: e["session"].__setitem__("id", None), "session.id: expected a non-empty string, got None"),
    ],
)
def test_validation_errors_name_path_expected_and_found(mutate, message):
    ev = good_event()
    mutate(ev)
    with pytest.raises(EventValidationError) as exc:
        validate_event(ev)
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize("path", [("event_id",), ("timestamp",), ("mitre", "tactic", "id")])
def test_a_pattern_field_with_a_trailing_newline_is_invalid(path):
    """The schema's patterns end in ``$``, which in Python (not in JSON Schema's ECMA-262) also
    matches before a final newline: such a value must not pass as the field's format."""
    ev = good_event()
    ev["mitre"] = {"framework": "attack", "tactic": {"id": "TA0006", "name": "Credential Access"},
                   "technique": {"id": "T1552", "name": "Unsecured Credentials"}}
    validate_event(ev)
    node = ev
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] += "\n"
    with pytest.raises(EventValidationError, match=rf"^{'.'.join(path)}: "):
        validate_event(ev)


def test_a_timestamp_with_a_trailing_newline_has_no_epoch_ms():
    with pytest.raises(EventValidationError, match=r"^timestamp: "):
        timestamp_to_ms("2026-11-28T08:00:00.123Z\n")


def test_invariant_indicator_only_when_blocked():
    ev = good_event()
    ev["decision"]["allowed"] = True
    ev["outcome"] = "success"
    with pytest.raises(EventValidationError, match=r"^decision.allowed: expected false because threat"):
        validate_event(ev)


def test_invariant_outcome_matches_decision():
    ev = good_event()
    ev["outcome"] = "success"
    with pytest.raises(EventValidationError, match=r"^outcome: expected 'failure' because decision.allowed"):
        validate_event(ev)


def test_unknown_fields_are_accepted():
    ev = good_event()
    ev["future_field"] = {"x": 1}
    ev["resource"]["mac"] = "aa"
    validate_event(ev)


def test_not_a_dict():
    with pytest.raises(EventValidationError, match=r"^\(event\): expected an object, got \[\]"):
        validate_event([])


def test_every_required_field_is_enforced():
    for f in FIELDS:
        if not f.required:
            continue
        ev = good_event()
        del ev[f.name]
        with pytest.raises(EventValidationError, match=rf"^{f.name}: expected .* got nothing"):
            validate_event(ev)


def test_encode_is_sorted_deterministic_and_roundtrips():
    ev = good_event()
    shuffled = dict(reversed(list(copy.deepcopy(ev).items())))
    a, b = encode_event(ev), encode_event(shuffled)
    assert a == b
    assert not a.endswith(b"\n")
    assert orjson.loads(a) == ev
    keys = list(orjson.loads(a).keys())
    assert keys == sorted(keys)


def test_event_time_ms():
    ev = good_event()
    assert event_time_ms(ev) == 1795681731639
    assert timestamp_to_ms("1970-01-01T00:00:00Z") == 0
    assert timestamp_to_ms("1970-01-01T00:00:01.5Z") == 1500
    assert timestamp_to_ms("2026-02-07T09:30:00.001122334Z") == 1770456600001
    with pytest.raises(EventValidationError):
        timestamp_to_ms("2026-02-07 09:30:00")


def _paths(fields, prefix=""):
    for f in fields:
        yield prefix + f.name, f
        yield from _paths(f.children, prefix + f.name + ".")


def test_event_model_doc_lists_every_field_and_enum_value():
    from pathlib import Path

    from agent.event import IndicatorType, ObserverProduct

    doc = (Path(__file__).resolve().parent.parent / "docs" / "event-model.md").read_text()
    for path, f in _paths(FIELDS):
        if not f.children:
            assert f"`{path}`" in doc, f"docs/event-model.md lacks field {path}"
    for enum in (EventType, EventCategory, Severity, Outcome, ResourceType, SourceKind, ObserverProduct,
                 IndicatorType):
        for member in enum:
            assert f"`{member.value}`" in doc, f"docs/event-model.md lacks {enum.__name__}.{member.value}"


def test_timestamp_to_ms_is_the_same_on_the_cached_fast_path():
    import random
    import time as _time

    from agent.event import timestamp_to_ms

    rng = random.Random(5)
    for _ in range(5000):
        t = rng.randint(0, 4_000_000_000)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 9)))
        ts = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(t)) + (f".{digits}" if digits else "") + "Z"
        expected = t * 1000 + (int(digits[:3].ljust(3, "0")) if digits else 0)
        assert timestamp_to_ms(ts) == expected, ts  # first call: parses and caches the second
        assert timestamp_to_ms(ts) == expected, ts  # second call: the cached second
