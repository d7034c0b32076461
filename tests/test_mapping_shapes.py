"""Hand-built records for every other Clawdstrike shape, hushd admin event types, and edge cases."""

from __future__ import annotations

import hashlib
import uuid

import orjson
import pytest

from agent.event import SCHEMA_VERSION, encode_event, validate_event
from agent.mapping import (
    EVENT_ID_NAMESPACE,
    MappingContext,
    MappingError,
    detect_kind,
    map_record,
    normalize_severity,
    normalize_timestamp,
    parse_egress_target,
    parse_line,
)

CTX = MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme-corp")
H = "c1f0e2d3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1"
DEFAULT_0X = "0x3b7e9c0d5a1f4e2b8c6d0a9e7f1b3c5d2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b"
DAEMON = "5f0c8a53-4b7e-4d0e-9a51-6f2d7c1e9b10"


def m(rec: dict, **kw) -> dict:
    ev = map_record(rec, context=CTX, **kw)
    validate_event(ev)
    return ev


def audit(**kw) -> dict:
    rec = {
        "id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
        "timestamp": "2026-02-07T09:30:12.481516234Z",
        "event_type": "violation",
        "action_type": "egress",
        "decision": "blocked",
    }
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


# ---------------------------------------------------------------- egress target parsing


@pytest.mark.parametrize(
    ("target", "host", "port"),
    [
        ("evil.example", "evil.example", None),
        ("evil.example:8443", "evil.example", 8443),
        ("[2001:db8::1]:443", "2001:db8::1", 443),
        ("[2001:db8::1]", "2001:db8::1", None),
        ("2001:db8::1", "2001:db8::1", None),
        ("::1", "::1", None),
        ("198.51.100.7", "198.51.100.7", None),
        ("198.51.100.7:22", "198.51.100.7", 22),
        ("host:notaport", "host:notaport", None),
        ("host:99999", "host:99999", None),
    ],
)
def test_parse_egress_target(target, host, port):
    assert parse_egress_target(target) == (host, port)


def test_ipv6_egress_block():
    ev = m(audit(target="[2001:DB8::1]:8443", guard="egress_allowlist", severity="Error"))
    assert ev["resource"] == {
        "type": "network",
        "name": "2001:DB8::1",
        "host": "2001:DB8::1",
        "ip": "2001:db8::1",
        "port": 8443,
    }
    assert ev["threat"]["indicator"] == {"type": "ipv6-addr", "value": "2001:db8::1"}
    assert ev["event_type"] == "egress_blocked"


def test_bare_ipv6_with_metadata_port():
    ev = m(audit(target="2001:db8::2", metadata={"port": 53, "host": "2001:db8::2"}))
    assert ev["resource"]["port"] == 53 and ev["resource"]["ip"] == "2001:db8::2"


def test_metadata_port_wins_over_target_port():
    ev = m(audit(target="evil.example:8443", metadata={"port": 9000}))
    assert ev["resource"]["port"] == 9000


def test_egress_without_target_uses_metadata_host():
    ev = m(audit(metadata={"host": "x.example"}))
    assert ev["resource"]["host"] == "x.example"


def test_allowed_egress_has_no_indicator():
    ev = m(
        audit(
            event_type="check",
            decision="allowed",
            target="x.example",
            guard="egress_allowlist",
            severity="Info",
        )
    )
    assert "threat" not in ev and "guard" not in ev["decision"]


def test_blocked_shell_has_no_indicator():
    ev = m(audit(action_type="shell", target="rm -rf /", guard="posture", severity="Error"))
    assert "threat" not in ev and ev["event_type"] == "guard_block" and ev["event_category"] == "process"


def test_threat_intel_egress_and_patch_forbidden_path():
    assert m(audit(target="bad.cafe", guard="threat_intel"))["event_type"] == "egress_blocked"
    ev = m(audit(action_type="patch", target="a.py", guard="forbidden_path", severity="Critical"))
    assert ev["event_type"] == "forbidden_path"
    assert (
        m(audit(action_type="patch", target="a.py", guard="path_allowlist"))["event_type"] == "patch_rejected"
    )


# ---------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Info", "info"),
        ("info", "info"),
        ("Warning", "medium"),
        ("warning", "medium"),
        ("warn", "medium"),
        ("medium", "medium"),
        ("Error", "high"),
        ("error", "high"),
        ("high", "high"),
        ("Critical", "critical"),
        ("critical", "critical"),
        ("low", "low"),
        ("CRITICAL", "critical"),
    ],
)
def test_severity_spellings(raw, want):
    assert normalize_severity(raw) == want
    assert m(audit(severity=raw))["decision"]["severity"] == want


@pytest.mark.parametrize("raw", ["Severe", "", 3, "fatal"])
def test_unknown_severity_is_an_error_naming_the_value(raw):
    with pytest.raises(
        MappingError, match=r"^severity: unrecognised severity " + repr(raw).replace("'", ".")
    ):
        map_record(audit(severity=raw), context=CTX)


def test_missing_severity_defaults_by_decision():
    assert m(audit())["decision"]["severity"] == "high"
    assert m(audit(event_type="check", decision="allowed", target="x"))["decision"]["severity"] == "info"


def test_warning_on_allowed_is_guard_warn_and_keeps_guard():
    ev = m(
        audit(
            event_type="check",
            decision="allowed",
            action_type="egress",
            target="x.example",
            guard="egress_allowlist",
            severity="Warning",
            message="Egress to x.example logged",
        )
    )
    assert ev["event_type"] == "guard_warn" and ev["decision"]["guard"] == "egress_allowlist"
    assert ev["outcome"] == "success" and "threat" not in ev


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("2026-02-07T09:30:16Z", "2026-02-07T09:30:16Z"),
        ("2026-02-07T09:30:14.100Z", "2026-02-07T09:30:14.100Z"),
        ("2026-02-07T09:30:00.001122334Z", "2026-02-07T09:30:00.001122334Z"),
        ("2026-02-07T09:30:00.0011223345Z", "2026-02-07T09:30:00.001122334Z"),
        ("2026-02-07T10:30:00.5+01:00", "2026-02-07T09:30:00.5Z"),
        ("2026-02-07T00:30:00-02:30", "2026-02-07T03:00:00Z"),
        ("2026-02-07t09:30:16z", "2026-02-07T09:30:16Z"),
        (1770456600001, "2026-02-07T09:30:00.001Z"),
        (0, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_timestamp_normalisation(raw, want):
    assert normalize_timestamp(raw) == want


@pytest.mark.parametrize("raw", ["2026-02-30T00:00:00Z", "yesterday", "2026-13-01T00:00:00Z", [], True])
def test_bad_timestamps(raw):
    with pytest.raises(MappingError, match=r"^timestamp: "):
        normalize_timestamp(raw)


def test_timestamp_result_does_not_depend_on_the_date_cache():
    from agent import mapping

    for ts in ("2031-06-30T23:59:60.5Z", "2031-07-01T00:00:00Z", "2031-07-01t00:00:01z"):
        mapping._VALID_DATES.clear()
        first = normalize_timestamp(ts)
        assert normalize_timestamp(ts) == first  # second call takes the cached fast path
    assert normalize_timestamp("2031-06-30T23:59:60.5Z") == "2031-06-30T23:59:60.5Z"


def test_missing_timestamp():
    rec = audit()
    del rec["timestamp"]
    with pytest.raises(MappingError, match=r"^missing field 'timestamp'$"):
        map_record(rec, context=CTX)


# ---------------------------------------------------------------- hushd admin event types

ADMIN = {
    "policy_reload": ("policy_change", "configuration"),
    "policy_reloaded": ("policy_change", "configuration"),
    "policy_updated": ("policy_change", "configuration"),
    "policy_bundle_update": ("policy_change", "configuration"),
    "scoped_policy_created": ("policy_change", "configuration"),
    "scoped_policy_updated": ("policy_change", "configuration"),
    "scoped_policy_deleted": ("policy_change", "configuration"),
    "policy_assignment_created": ("policy_change", "configuration"),
    "policy_assignment_deleted": ("policy_change", "configuration"),
    "rbac_role_created": ("admin_change", "authorization"),
    "rbac_role_updated": ("admin_change", "authorization"),
    "rbac_role_deleted": ("admin_change", "authorization"),
    "rbac_role_assigned": ("admin_change", "authorization"),
    "rbac_role_unassigned": ("admin_change", "authorization"),
    "user_session_created": ("user_session_start", "authentication"),
    "user_session_terminated": ("user_session_end", "authentication"),
    "saml_session_created": ("user_session_start", "authentication"),
    "session_posture_transition": ("posture_transition", "authorization"),
    "webhook_okta": ("idp_webhook", "authentication"),
    "webhook_auth0": ("idp_webhook", "authentication"),
}


@pytest.mark.parametrize(("src", "want"), sorted(ADMIN.items()))
def test_hushd_admin_event_types(src, want):
    ev = m(audit(event_type=src, action_type="session", decision="allowed", session_id=DAEMON, target=None))
    assert (ev["event_type"], ev["event_category"]) == want
    assert ev["source"]["type"] == src and ev["outcome"] == "success"
    assert ev["decision"]["severity"] == "info" and "guard" not in ev["decision"]
    assert "threat" not in ev
    if src.startswith(("policy", "scoped", "rbac", "webhook")):
        assert "id" not in ev["session"] and ev["observer"]["instance_id"] == DAEMON
    else:
        assert ev["session"]["id"] == DAEMON


def test_session_end_keeps_daemon_session():
    ev = m(
        audit(
            event_type="session_end",
            action_type="session",
            decision="allowed",
            session_id=DAEMON,
            message="Session ended",
            metadata={"action_count": 1234},
            target=None,
        )
    )
    assert ev["event_type"] == "session_end" and ev["session"]["id"] == DAEMON
    assert ev["metadata"] == {"action_count": 1234} and ev["decision"]["reason"] == "Session ended"


def test_eval_prompt_injection_is_ai():
    ev = m(
        audit(action_type="custom", target="untrusted_text", guard="prompt_injection", severity="Critical")
    )
    assert ev["event_category"] == "ai" and ev["event_type"] == "guard_block"
    ev = m(audit(action_type="custom", guard="jailbreak_detection", decision="allowed", severity="Warning"))
    assert ev["event_category"] == "ai" and ev["event_type"] == "guard_warn"


def test_decision_spelling_error():
    with pytest.raises(MappingError, match=r"^decision: expected 'allowed' or 'blocked', got 'maybe'$"):
        map_record(audit(decision="maybe"), context=CTX)


@pytest.mark.parametrize("field", ["id", "event_type", "action_type", "decision"])
def test_missing_required_audit_fields(field):
    rec = audit()
    del rec[field]
    kind = "hushd_audit"
    with pytest.raises(MappingError, match=rf"^missing field '{field}'$"):
        map_record(rec, context=CTX, kind=kind)


# ---------------------------------------------------------------- SecurityEvent 1.0.0 (§1.8 examples)

E2 = {
    "schema_version": "1.0.0",
    "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
    "event_type": "forbidden_path",
    "event_category": "file",
    "timestamp": "2026-02-07T09:30:12.481516234Z",
    "agent": {"id": "agent-0001", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
    "session": {"id": "sess-0001", "tenant_id": "acme-corp", "environment": "production"},
    "outcome": "failure",
    "action": "file_access",
    "threat": {"indicator": {"type": "file_path", "value": "/home/alice/.ssh/id_rsa"}},
    "decision": {
        "allowed": False,
        "guard": "forbidden_path",
        "severity": "critical",
        "reason": "Access to forbidden path: /home/alice/.ssh/id_rsa",
        "policy_hash": DEFAULT_0X,
        "ruleset": "Default",
    },
    "resource": {"type": "file", "name": "/home/alice/.ssh/id_rsa", "path": "/home/alice/.ssh/id_rsa"},
    "metadata": {
        "contributing_policies": [],
        "path": "/home/alice/.ssh/id_rsa",
        "policy_hash": H,
        "reason": "matches_forbidden_pattern",
    },
    "labels": {"team": "security"},
}
E4 = {
    "schema_version": "1.0.0",
    "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a07",
    "event_type": "egress_blocked",
    "event_category": "network",
    "timestamp": "2026-02-07T09:30:12.481516234Z",
    "agent": {"id": "agent-0001", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
    "session": {"id": DAEMON, "tenant_id": "acme-corp", "environment": "production"},
    "outcome": "failure",
    "action": "egress",
    "threat": {"indicator": {"type": "domain", "value": "evil.example"}},
    "decision": {
        "allowed": False,
        "guard": "egress_allowlist",
        "severity": "high",
        "reason": "Egress to evil.example blocked by policy",
        "policy_hash": DEFAULT_0X,
        "ruleset": "Default",
    },
    "resource": {"type": "network", "name": "evil.example", "host": "evil.example", "port": 8443},
    "metadata": {
        "contributing_policies": [],
        "host": "evil.example",
        "is_default": True,
        "matched_pattern": None,
        "policy_hash": H,
        "port": 8443,
    },
    "labels": {"team": "security"},
}
E7 = {
    "schema_version": "1.0.0",
    "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a05",
    "event_type": "policy_allow",
    "event_category": "process",
    "timestamp": "2026-02-07T09:30:16Z",
    "agent": {"id": "hushd", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
    "session": {"id": DAEMON, "tenant_id": "acme-corp", "environment": "production"},
    "outcome": "success",
    "action": "shell",
    "threat": {},
    "decision": {
        "allowed": True,
        "guard": "engine",
        "severity": "info",
        "reason": "Allowed",
        "policy_hash": DEFAULT_0X,
        "ruleset": "Default",
    },
    "resource": {"type": "process", "name": "uname -a"},
    "metadata": {"contributing_policies": [], "policy_hash": H},
    "labels": {"team": "security"},
}
E8 = {
    **E7,
    "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a08",
    "event_category": "file",
    "action": "file_access",
    "agent": {"id": "agent-0001", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
    "threat": {"indicator": {"type": "file_path", "value": "/app/src/main.rs"}},
    "decision": {"allowed": True, "guard": "forbidden_path", "severity": "info", "reason": "Allowed"},
    "resource": {"type": "file", "name": "/app/src/main.rs", "path": "/app/src/main.rs"},
    "metadata": {},
}
E1 = {
    "schema_version": "1.0.0",
    "event_id": "0194e1a2-0000-7000-8000-000000000001",
    "event_type": "session_start",
    "event_category": "session",
    "timestamp": "2026-02-07T09:30:00.001122334Z",
    "agent": {"id": "hushd", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
    "session": {"id": DAEMON, "tenant_id": "acme-corp", "environment": "production"},
    "outcome": "success",
    "action": "session",
    "threat": {},
    "decision": {
        "allowed": True,
        "guard": "engine",
        "severity": "info",
        "reason": "Session started",
        "policy_hash": DEFAULT_0X,
        "ruleset": "Default",
    },
    "resource": {"type": "configuration", "name": "session"},
    "metadata": {},
    "labels": {"team": "security"},
}


def test_v1_forbidden_path_renormalised():
    ev = m(E2)
    assert detect_kind(E2) == "hushd_security_event"
    assert ev["schema_version"] == SCHEMA_VERSION
    assert ev["decision"]["policy_hash"] == "sha256:" + H  # resolved, never 0x default
    assert ev["threat"]["indicator"] == {"type": "file", "value": "/home/alice/.ssh/id_rsa"}
    assert ev["agent"] == {"id": "agent-0001"}
    assert ev["observer"] == {"product": "hushd", "version": "0.1.0"}
    assert ev["session"] == {"id": "sess-0001", "tenant_id": "acme-corp", "environment": "production"}
    assert ev["decision"]["ruleset"] == "Default"
    assert ev["source"] == {"kind": "hushd_security_event", "id": E2["event_id"], "type": "forbidden_path"}


def test_v1_egress_fixes():
    ev = m(E4)
    assert ev["threat"]["indicator"] == {"type": "domain-name", "value": "evil.example"}
    assert ev["resource"]["port"] == 8443  # from metadata.port
    assert "id" not in ev["session"] and ev["observer"]["instance_id"] == DAEMON  # daemon id moved out
    no_port = {**E4, "metadata": {"policy_hash": H}}
    assert "port" not in m(no_port)["resource"]  # 1.0.0's port may be the guessed 443


def test_v1_plain_allows_drop_guard_indicator_and_hushd_agent():
    ev = m(E7)
    assert "guard" not in ev["decision"] and "agent" not in ev and "threat" not in ev
    ev8 = m(E8)
    assert "threat" not in ev8 and "guard" not in ev8["decision"]  # C4 and C5
    assert "policy_hash" not in ev8["decision"]  # only the 0x default was known: dropped


def test_v1_session_start_keeps_daemon_session():
    ev = m(E1)
    assert ev["event_type"] == "session_start" and ev["session"]["id"] == DAEMON
    assert ev["resource"]["type"] == "session"


def test_v1_unknown_severity_and_type():
    bad = {**E2, "decision": {**E2["decision"], "severity": "Severe"}}
    with pytest.raises(MappingError, match=r"^decision.severity: unrecognised severity 'Severe'"):
        map_record(bad, context=CTX)
    with pytest.raises(MappingError, match=r"^event_type: unknown SecurityEvent 1.0.0 type 'nope'"):
        map_record({**E2, "event_type": "nope"}, context=CTX)


def test_context_labels_override_v1_labels():
    ev = map_record({**E2, "labels": {"team": "old", "site": "x"}}, context=CTX)
    assert ev["labels"] == {"team": "security", "site": "x"}


# ---------------------------------------------------------------- certification webhook

CERT = {
    "event": "violation.detected",
    "timestamp": "2026-02-07T09:30:12.481Z",
    "data": {
        "actionType": "egress",
        "target": "evil.example:8443",
        "guard": "egress_allowlist",
        "severity": "error",
        "policyHash": "sha256:" + H,
        "sessionId": "sess-0001",
        "agentId": "agent-0001",
    },
}


def test_certification_webhook():
    raw = orjson.dumps(CERT)
    ev = m(CERT, raw=raw)
    assert detect_kind(CERT) == "hushd_certification_webhook"
    digest = hashlib.sha256(raw).hexdigest()
    assert ev["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, f"hushd_certification_webhook:{digest}"))
    assert ev["source"] == {"kind": "hushd_certification_webhook", "type": "violation.detected"}
    assert ev["event_type"] == "egress_blocked" and ev["decision"]["severity"] == "high"
    assert ev["decision"]["policy_hash"] == "sha256:" + H and ev["outcome"] == "failure"
    assert ev["agent"] == {"id": "agent-0001"} and ev["session"]["id"] == "sess-0001"
    assert ev["resource"]["port"] == 8443 and ev["threat"]["indicator"]["type"] == "domain-name"
    # no raw bytes: the canonical JSON is hashed, so the id is still stable
    canon = hashlib.sha256(orjson.dumps(CERT, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert m(CERT)["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, f"hushd_certification_webhook:{canon}"))
    # a different body (replay with another timestamp) is a different event
    assert m({**CERT, "timestamp": "2026-02-07T09:30:13Z"})["event_id"] != m(CERT)["event_id"]


def test_certification_webhook_via_parse_line_matches_raw():
    raw = orjson.dumps(CERT)
    assert encode_event(parse_line(raw, context=CTX)) == encode_event(m(CERT, raw=raw))
    assert encode_event(parse_line(raw + b"\n", context=CTX)) == encode_event(m(CERT, raw=raw))


def test_certification_webhook_secret_leak_file():
    rec = {
        "event": "violation.detected",
        "timestamp": "2026-02-07T09:30:13Z",
        "data": {
            "actionType": "file_write",
            "target": "./leak.txt",
            "guard": "secret_leak",
            "severity": "critical",
        },
    }
    ev = m(rec)
    assert ev["event_type"] == "secret_detected" and ev["threat"]["indicator"] == {
        "type": "file",
        "value": "./leak.txt",
    }
    with pytest.raises(MappingError, match=r"^event: expected 'violation.detected', got 'x'"):
        map_record({**rec, "event": "x"}, context=CTX)
    with pytest.raises(MappingError, match=r"^missing field 'data.actionType'"):
        map_record({**rec, "data": {}}, context=CTX)


# ---------------------------------------------------------------- adapter-core


def adapter(**kw) -> dict:
    rec = {
        "id": "a-1",
        "type": "tool_call_blocked",
        "timestamp": "2026-02-07T09:30:12.481Z",
        "contextId": "ctx-1",
        "sessionId": "s-1",
        "toolName": "bash",
        "parameters": {"cmd": "cat /etc/shadow"},
        "output": "SECRET",
    }
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


@pytest.mark.parametrize(
    ("typ", "decision", "etype", "cat", "outcome", "sev"),
    [
        (
            "tool_call_blocked",
            {"allowed": False, "denied": True, "warn": False, "guard": "mcp_tool", "severity": "high"},
            "guard_block",
            "tool",
            "failure",
            "high",
        ),
        (
            "tool_call_blocked",
            {"allowed": False, "denied": True, "warn": False},
            "guard_block",
            "tool",
            "failure",
            "high",
        ),
        (
            "tool_call_allowed",
            {"allowed": True, "denied": False, "warn": False},
            "policy_allow",
            "tool",
            "success",
            "info",
        ),
        (
            "tool_call_warning",
            {"allowed": True, "denied": False, "warn": True, "guard": "mcp_tool"},
            "guard_warn",
            "tool",
            "success",
            "medium",
        ),
        ("tool_call_start", None, "tool_call", "tool", "unknown", "info"),
        ("tool_call_end", None, "tool_call", "tool", "success", "info"),
        ("tool_call_error", None, "tool_call", "tool", "failure", "info"),
        (
            "output_sanitized",
            {"allowed": False, "denied": True, "warn": False, "guard": "secret_leak"},
            "secret_detected",
            "tool",
            "failure",
            "high",
        ),
        ("output_sanitized", None, "output_sanitized", "tool", "unknown", "info"),
        (
            "prompt_security_output_sanitized",
            {"allowed": False, "denied": True, "warn": False},
            "secret_detected",
            "ai",
            "failure",
            "high",
        ),
        (
            "prompt_security_prompt_injection",
            {
                "allowed": False,
                "denied": True,
                "warn": False,
                "guard": "prompt_injection",
                "severity": "critical",
            },
            "guard_block",
            "ai",
            "failure",
            "critical",
        ),
        (
            "prompt_security_jailbreak",
            {"status": "warn", "severity": "medium"},
            "guard_warn",
            "ai",
            "success",
            "medium",
        ),
        ("prompt_security_watermark", None, "detection", "ai", "unknown", "info"),
        ("session_start", None, "session_start", "session", "success", "info"),
        ("session_end", None, "session_end", "session", "success", "info"),
    ],
)
def test_adapter_types(typ, decision, etype, cat, outcome, sev):
    ev = m(adapter(type=typ, decision=decision))
    assert detect_kind(adapter(type=typ)) == "adapter_audit"
    assert (ev["event_type"], ev["event_category"], ev["outcome"], ev["decision"]["severity"]) == (
        etype,
        cat,
        outcome,
        sev,
    )
    assert ev["observer"]["product"] == "clawdstrike-adapter"
    assert ev["session"]["id"] == "s-1" and ev["session"]["run_id"] == "ctx-1"
    assert ev["source"] == {"kind": "adapter_audit", "id": "a-1", "type": typ}
    assert ev["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "adapter_audit:a-1"))
    body = encode_event(ev)
    assert b"SECRET" not in body and b"/etc/shadow" not in body  # no raw parameters/output
    if decision is None:
        assert "allowed" not in ev["decision"]


def test_adapter_errors():
    with pytest.raises(MappingError, match=r"^type: unknown adapter audit event type 'tool_magic'"):
        map_record(adapter(type="tool_magic"), context=CTX)
    with pytest.raises(MappingError, match=r"^decision.severity: unrecognised severity 'urgent'"):
        map_record(adapter(decision={"denied": True, "severity": "urgent"}), context=CTX)
    with pytest.raises(MappingError, match=r"^decision.status: expected allow, warn or deny, got 'meh'"):
        map_record(adapter(decision={"status": "meh"}), context=CTX)


def test_adapter_details_are_metadata():
    ev = m(adapter(details={"k": "v"}, decision={"denied": True}))
    assert ev["metadata"] == {"k": "v"}


# ---------------------------------------------------------------- OpenClaw


def oc(**kw) -> dict:
    rec = {
        "id": "evt-1770456612481-x7k2",
        "timestamp": 1770456612481,
        "type": "network_egress",
        "resource": "[2001:db8::5]:443",
        "decision": "denied",
        "guard": "egress",
        "reason": "not allowlisted",
        "runId": "run-9",
    }
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


def test_openclaw_denied_egress():
    ev = m(oc())
    assert detect_kind(oc()) == "openclaw_audit"
    assert ev["timestamp"] == "2026-02-07T09:30:12.481Z"
    assert ev["event_type"] == "egress_blocked" and ev["event_category"] == "network"
    assert ev["threat"]["indicator"] == {"type": "ipv6-addr", "value": "2001:db8::5"}
    assert ev["resource"]["port"] == 443 and ev["decision"]["severity"] == "high"
    assert ev["session"]["run_id"] == "run-9" and "id" not in ev["session"]
    assert ev["observer"]["product"] == "openclaw"
    assert ev["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "openclaw_audit:evt-1770456612481-x7k2"))


def test_openclaw_allowed_file_read():
    ev = m(oc(type="file_read", resource="/app/x.py", decision="allowed", guard="forbidden_path"))
    assert ev["event_type"] == "policy_allow" and ev["action"] == "file_access"
    assert "threat" not in ev and "guard" not in ev["decision"]
    ev = m(oc(type="file_write", resource="/etc/passwd", guard="forbidden_path"))
    assert ev["event_type"] == "forbidden_path" and ev["threat"]["indicator"]["type"] == "file"
    with pytest.raises(MappingError, match=r"^decision: expected 'allowed' or 'denied', got 'blocked'"):
        map_record(oc(decision="blocked"), context=CTX, kind="openclaw_audit")


# ---------------------------------------------------------------- parse_line reasons


def test_parse_line_invalid_utf8():
    line = b'{"id":"x","type":"caf\xc3' + b'\xff"}'
    assert line.index(b"\xc3") == 21  # 0-based offset of the first byte of the bad sequence
    with pytest.raises(MappingError, match=r"^invalid UTF-8 at byte 21$"):
        parse_line(line, context=CTX)


def test_parse_line_invalid_json():
    with pytest.raises(MappingError, match=r"^invalid JSON: "):
        parse_line(b'{"id": ', context=CTX)


@pytest.mark.parametrize("line", [b"[]", b"3", b'"x"', b"null"])
def test_parse_line_not_object(line):
    with pytest.raises(MappingError, match=r"^not a JSON object$"):
        parse_line(line, context=CTX)


def test_parse_line_unknown_shape():
    with pytest.raises(MappingError, match=r"^unknown record shape \(keys: a, b, c\)$"):
        parse_line(b'{"c":1,"a":2,"b":3}', context=CTX)


def test_parse_line_missing_timestamp():
    rec = audit()
    del rec["timestamp"]
    with pytest.raises(MappingError, match=r"^missing field 'timestamp'$"):
        parse_line(orjson.dumps(rec), context=CTX)


def test_unknown_kind():
    with pytest.raises(MappingError, match=r"^unknown kind 'sse'"):
        map_record(audit(), context=CTX, kind="sse")
