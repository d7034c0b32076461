"""Mapping of the real hushd 0.1.0 captures and of every hushd event_type."""

from __future__ import annotations

import json
import uuid

import orjson
import pytest

from agent.event import encode_event, validate_event
from agent.mapping import (
    EVENT_ID_NAMESPACE,
    MappingContext,
    detect_kind,
    map_record,
    parse_line,
)
from tests.shared_paths import FIXTURES

LINES = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
WEBHOOK = json.loads((FIXTURES / "audit-forward-webhook.requests.json").read_text())
API = json.loads((FIXTURES / "audit-api.response.json").read_text())["body"]["events"]
CTX = MappingContext(
    labels={"team": "security"}, environment="production", tenant_id="acme-corp", host_name="build-7"
)
HEX64 = "989be150824a9c37647fbf29d2231d25ddf40a83e686f930de2a466d36b17f73"
DAEMON = "66e5dbf3-192c-47c6-a19c-0b0b0278b3ff"


def by_target() -> dict[str, dict]:
    out = {}
    for line in LINES:
        ev = parse_line(line, context=CTX)
        out[ev["resource"].get("path") or ev["resource"]["name"]] = ev
    return out


def test_every_file_line_maps_and_validates():
    assert len(LINES) == 23
    for line in LINES:
        ev = parse_line(line, context=CTX)
        validate_event(ev)
        rec = orjson.loads(line)
        assert ev["event_id"] == rec["id"]
        assert ev["source"] == {"kind": "hushd_audit", "id": rec["id"], "type": rec["event_type"]}
        assert ev["metadata"] == rec.get("metadata", {})
        assert ev["labels"] == {"team": "security"}
        assert ev["observer"]["product"] == "hushd" and ev["observer"]["host_name"] == "build-7"
        assert ev["session"]["tenant_id"] == "acme-corp" and ev["session"]["environment"] == "production"


def test_every_webhook_body_maps_identically_to_its_file_line():
    lines = {orjson.loads(line)["id"]: line for line in LINES}
    assert len(WEBHOOK) == len(lines)
    for req in WEBHOOK:
        body = req["body"]
        raw = json.dumps(body).encode()  # the webhook carries its own byte layout
        from_webhook = encode_event(map_record(body, raw=raw, context=CTX))
        from_file = encode_event(parse_line(lines[body["id"]], context=CTX))
        assert from_webhook == from_file


def test_every_api_event_maps_and_matches_the_file_where_shared():
    lines = {orjson.loads(line)["id"]: line for line in LINES}
    shared = 0
    for rec in API:
        ev = map_record(rec, context=CTX)
        validate_event(ev)
        if rec["id"] in lines:
            shared += 1
            assert encode_event(ev) == encode_event(parse_line(lines[rec["id"]], context=CTX))
    assert shared == 21


def test_mapping_is_deterministic():
    for line in LINES:
        assert encode_event(parse_line(line, context=CTX)) == encode_event(parse_line(line, context=CTX))


# (target, event_type, category, severity, guard, indicator)
EXPECTED = [
    ("/home/agent/project/src/main.rs", "policy_allow", "file", "info", None, None),
    (
        "/home/agent/.ssh/id_rsa",
        "forbidden_path",
        "file",
        "critical",
        "forbidden_path",
        {"type": "file", "value": "/home/agent/.ssh/id_rsa"},
    ),
    (
        "~/.ssh/id_rsa",
        "forbidden_path",
        "file",
        "critical",
        "forbidden_path",
        {"type": "file", "value": "~/.ssh/id_rsa"},
    ),
    (
        "/etc/shadow",
        "forbidden_path",
        "file",
        "critical",
        "forbidden_path",
        {"type": "file", "value": "/etc/shadow"},
    ),
    ("/workspace/app/src/config.rs", "policy_allow", "file", "info", None, None),
    (
        "/workspace/app/src/keys.py",
        "secret_detected",
        "file",
        "critical",
        "secret_leak",
        {"type": "file", "value": "/workspace/app/src/keys.py"},
    ),
    ("api.openai.com", "policy_allow", "network", "info", None, None),
    ("api.github.com", "policy_allow", "network", "info", None, None),
    (
        "exfil.evil-example.net",
        "egress_blocked",
        "network",
        "high",
        "egress_allowlist",
        {"type": "domain-name", "value": "exfil.evil-example.net"},
    ),
    (
        "203.0.113.7",
        "egress_blocked",
        "network",
        "high",
        "egress_allowlist",
        {"type": "ipv4-addr", "value": "203.0.113.7"},
    ),
    ("ls -la", "policy_allow", "process", "info", None, None),
    ("read_file", "policy_allow", "tool", "info", None, None),
    ("shell_exec", "guard_block", "tool", "high", "mcp_tool", None),
    ("git_push", "guard_warn", "tool", "medium", "mcp_tool", None),
    (
        "/workspace/app/src/config.py",
        "secret_detected",
        "file",
        "critical",
        "secret_leak",
        {"type": "file", "value": "/workspace/app/src/config.py"},
    ),
    (
        "/workspace/app/src/http.py",
        "patch_rejected",
        "file",
        "critical",
        "patch_integrity",
        {"type": "file", "value": "/workspace/app/src/http.py"},
    ),
]


@pytest.mark.parametrize(("target", "etype", "cat", "sev", "guard", "indicator"), EXPECTED)
def test_capture_decisions(target, etype, cat, sev, guard, indicator):
    ev = by_target()[target]
    assert ev["event_type"] == etype
    assert ev["event_category"] == cat
    assert ev["decision"]["severity"] == sev
    assert ev["decision"].get("guard") == guard  # C5: no guard on plain allows
    assert ev.get("threat", {}).get("indicator") == indicator
    assert ev["outcome"] == ("success" if ev["decision"]["allowed"] else "failure")
    assert ev["decision"]["policy_hash"] == "sha256:" + HEX64  # resolved hash, one format
    assert "threat" not in ev or ev["decision"]["allowed"] is False


def test_capture_egress_resources():
    t = by_target()
    assert t["api.openai.com"]["resource"] == {
        "type": "network",
        "name": "api.openai.com",
        "host": "api.openai.com",
        "port": 443,
    }
    assert t["api.github.com"]["resource"] == {
        "type": "network",
        "name": "api.github.com",
        "host": "api.github.com",
    }  # no guessed 443
    assert t["203.0.113.7"]["resource"] == {
        "type": "network",
        "name": "203.0.113.7",
        "host": "203.0.113.7",
        "ip": "203.0.113.7",
        "port": 8080,
    }


def test_capture_sessions_and_agents():
    evs = [parse_line(line, context=CTX) for line in LINES]
    start = evs[0]
    assert start["event_type"] == "session_start" and start["event_category"] == "session"
    assert start["session"]["id"] == DAEMON  # the daemon's own session keeps its id
    assert "agent" not in start  # no agent.name = "hushd" lie
    for ev in evs[1:21]:
        assert "id" not in ev["session"]  # sessionless checks: never the daemon id
        assert ev["observer"].get("instance_id") is None
    assert evs[1]["agent"] == {"id": "agent-007"}
    shadow = by_target()["/etc/shadow"]
    assert "agent" not in shadow  # the record has no agent_id
    for ev in evs[21:]:
        assert ev["event_type"] == "policy_change" and ev["event_category"] == "configuration"
        assert "id" not in ev["session"]
        assert ev["observer"]["instance_id"] == DAEMON


def test_api_only_event_with_session_and_no_policy_hash():
    rec = next(r for r in API if r.get("session_id") == "sess-demo")
    ev = map_record(rec, context=CTX)
    assert ev["session"]["id"] == "sess-demo"
    assert "policy_hash" not in ev["decision"]
    assert ev["threat"]["indicator"] == {"type": "file", "value": "/home/agent/.ssh/id_ed25519"}


def test_non_uuid_ids_get_stable_uuid5_per_kind():
    rec = orjson.loads(LINES[2])
    rec["id"] = "evt-test-1"
    a = map_record(rec, context=CTX)
    b = map_record(dict(rec), context=CTX)
    assert a["event_id"] == b["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "hushd_audit:evt-test-1"))
    assert uuid.UUID(a["event_id"]).version == 5
    assert a["source"]["id"] == "evt-test-1"
    oc = map_record(
        {"id": "evt-test-1", "timestamp": 1, "type": "file_read", "resource": "/x", "decision": "allowed"},
        context=CTX,
    )
    assert oc["event_id"] != a["event_id"]
    assert uuid.UUID("380d7db2-4311-57e3-bd56-0bb5bf19a3fb") == EVENT_ID_NAMESPACE  # never change


def test_uppercase_uuid_is_lowercased():
    rec = orjson.loads(LINES[2])
    rec["id"] = rec["id"].upper()
    ev = map_record(rec, context=CTX)
    assert ev["event_id"] == rec["id"].lower()
    assert ev["source"]["id"] == rec["id"]


def test_principal_gives_user_id_and_session_kept():
    rec = orjson.loads(LINES[2])
    rec["session_id"] = "cp-session-9"
    rec["metadata"] = dict(
        rec["metadata"],
        principal={"id": "user-42", "provider": "oidc", "email": "a@b.c"},
        user_session_id="cp-session-9",
    )
    ev = map_record(rec, context=CTX)
    assert ev["session"]["id"] == "cp-session-9"
    assert ev["session"]["user_id"] == "user-42"
    rec["metadata"]["principal"] = {"email": "no-id@b.c"}  # defensive: no id -> no user_id
    assert "user_id" not in map_record(rec, context=CTX)["session"]
    rec["metadata"]["principal"] = ["weird"]
    assert "user_id" not in map_record(rec, context=CTX)["session"]


def test_empty_context_gives_no_session_object():
    rec = orjson.loads(LINES[2])
    ev = map_record(rec, context=MappingContext())
    assert "session" not in ev and ev["labels"] == {} and "host_name" not in ev["observer"]
    validate_event(ev)


def test_labels_are_copied_not_shared():
    ctx = MappingContext(labels={"a": "1"})
    ev = map_record(orjson.loads(LINES[2]), context=ctx)
    ev["labels"]["b"] = "2"
    assert ctx.labels == {"a": "1"}


def test_detect_kind_on_captures():
    assert {detect_kind(orjson.loads(line)) for line in LINES} == {"hushd_audit"}


def test_a_mapper_bug_on_a_rare_shape_is_quarantined_not_spooled(monkeypatch):
    """map_record checks the events of the non-hot shapes against the schema: an invalid one becomes a
    MappingError naming the field (the input quarantines it) instead of reaching the spool."""
    import agent.mapping as mapping
    from agent.mapping import MappingError

    real = mapping._MAPPERS["openclaw_audit"]

    def broken(record, raw, ctx):
        ev = real(record, raw, ctx)
        ev["decision"]["severity"] = "Warning"  # a spelling the canonical model does not allow
        return ev

    monkeypatch.setitem(mapping._MAPPERS, "openclaw_audit", broken)
    record = {"id": "evt-1700000000000-abc", "timestamp": 1700000000000, "type": "file_read",
              "resource": "/etc/passwd", "decision": "denied", "guard": "forbidden_path"}
    with pytest.raises(MappingError, match=r"mapped event is invalid: decision.severity: expected one of"):
        map_record(record, context=MappingContext())
    monkeypatch.setitem(mapping._MAPPERS, "openclaw_audit", real)
    assert map_record(record, context=MappingContext())["decision"]["severity"] in ("high", "critical")


@pytest.mark.parametrize("ts", [
    "2026-11-26T08:01:02Z", "2026-11-26T08:01:02.5Z", "2026-11-26T08:01:02.25Z", "2026-11-26T08:01:02.125Z",
    "2026-11-26T08:01:02.123456Z", "2026-11-26T08:01:02.123456789Z", "2026-11-26T08:01:02.1234567891Z",
    "2026-12-31T23:59:60.999Z", "2026-11-26t08:01:02.125z", "2026-11-26T10:01:02.125+02:00",
    "2026-11-26T08:01:02.12a4Z", "2026-11-26T08:01:02.\u0661\u0662\u0663Z", 1795679462125,
    "2026-02-30T08:01:02Z",
])
@pytest.mark.parametrize("kind", [None, "hushd_audit"])
def test_encode_line_is_parse_line_then_encode(ts, kind):
    """encode_line takes ts_ms from the mapper's timestamp check: it must give what timestamp_to_ms
    gives on the event parse_line returns, for every timestamp shape, on a cold and a warm cache."""
    from agent.event import timestamp_to_ms
    from agent.mapping import _CANON_SECONDS, MappingError, encode_line

    line = orjson.dumps({"id": "0b9c4d1e-2f3a-4b5c-8d6e-7f8091a2b3c4", "timestamp": ts, "event_type": "check",
                         "action_type": "shell", "decision": "allowed"})
    _CANON_SECONDS.clear()
    for _ in range(2):
        try:
            ev = parse_line(line, context=CTX, kind=kind)
        except MappingError as exc:
            with pytest.raises(MappingError) as raised:
                encode_line(line, CTX, kind)
            assert raised.value.reason == exc.reason
            continue
        want = (bytes.fromhex(ev["event_id"].replace("-", "")), timestamp_to_ms(ev["timestamp"]),
                encode_event(ev))
        assert encode_line(line, CTX, kind) == want
