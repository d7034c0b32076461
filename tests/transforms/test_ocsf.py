"""OCSF 1.8.0 transform and its validator: broken documents are rejected, every real capture maps to a valid
document in both modes, the class/activity/decision mapping per guard and action, MITRE, determinism and
hostile strings."""

from __future__ import annotations

import copy
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.event import encode_event, timestamp_to_ms, validate_event
from agent.mapping import MappingContext, map_record, parse_line
from tests.shared_paths import FIXTURES, ROOT
from tests.validators import ocsf as validator
from tests.validators.ocsf import validate_ocsf
from transforms.ocsf import OCSF_VERSION, to_ocsf

CTX = MappingContext(
    labels={"team": "security", "env": "dev"},
    environment="production",
    tenant_id="acme-corp",
    host_name="dev-laptop",
)
BARE = MappingContext()
SORT = orjson.OPT_SORT_KEYS
H = "c1f0e2d3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1"


def _sources() -> dict[str, list[bytes]]:
    webhook = json.loads((FIXTURES / "audit-forward-webhook.requests.json").read_text())
    api = json.loads((FIXTURES / "audit-api.response.json").read_text())["body"]["events"]
    return {
        "audit-forward.jsonl": (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines(),
        "audit-forward-webhook": [orjson.dumps(r["body"]) for r in webhook],
        "audit-api": [orjson.dumps(e) for e in api],
        "sample-audit-forward.jsonl": (ROOT / "agent" / "data" / "sample-audit-forward.jsonl")
        .read_bytes()
        .splitlines(),
    }


SOURCES = _sources()


def events(ctx: MappingContext = CTX) -> list[dict]:
    return [parse_line(line, context=ctx) for lines in SOURCES.values() for line in lines if line.strip()]


def by_target(target: str) -> dict:
    for line in SOURCES["audit-forward.jsonl"]:
        if orjson.loads(line).get("target") == target:
            return parse_line(line, context=CTX)
    raise AssertionError(f"no capture with target {target!r}")


def by_type(event_type: str) -> dict:
    for line in SOURCES["audit-forward.jsonl"]:
        if orjson.loads(line)["event_type"] == event_type:
            return parse_line(line, context=CTX)
    raise AssertionError(f"no capture of {event_type!r}")


def ok(doc: dict) -> dict:
    errors = validate_ocsf(doc)
    assert errors == [], errors
    return doc


# Hand-built records of the other shapes and hushd admin types (built as in tests/test_mapping_shapes.py)
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


def adapter(typ: str, decision: dict | None, **kw) -> dict:
    rec = {
        "id": "a-1",
        "type": typ,
        "timestamp": "2026-02-07T09:30:12.481Z",
        "contextId": "ctx-1",
        "sessionId": "s-1",
        "toolName": "bash",
        "decision": decision,
    }
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


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
    return rec


V1 = {
    "schema_version": "1.0.0",
    "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
    "event_type": "forbidden_path",
    "event_category": "file",
    "timestamp": "2026-02-07T09:30:12.481516234Z",
    "agent": {"id": "agent-0001", "name": "hushd", "version": "0.1.0", "type": "clawdstrike"},
    "session": {"id": "sess-0001", "tenant_id": "acme-corp", "environment": "production"},
    "outcome": "failure",
    "action": "file_access",
    "decision": {
        "allowed": False,
        "guard": "forbidden_path",
        "severity": "critical",
        "reason": "Access to forbidden path: /home/alice/.ssh/id_rsa",
        "ruleset": "Default",
    },
    "resource": {"type": "file", "name": "/home/alice/.ssh/id_rsa", "path": "/home/alice/.ssh/id_rsa"},
    "metadata": {"policy_hash": H},
    "labels": {"team": "security"},
}
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
        "agentId": "agent-1",
    },
}
ADMIN_TYPES = [
    "policy_reload",
    "scoped_policy_created",
    "scoped_policy_deleted",
    "rbac_role_assigned",
    "user_session_created",
    "user_session_terminated",
    "saml_session_created",
    "session_posture_transition",
    "webhook_okta",
    "session_end",
]
SHAPES: dict[str, dict] = {
    **{
        f"admin:{t}": audit(
            event_type=t,
            action_type="session",
            decision="allowed",
            target=None,
            session_id="5f0c8a53-4b7e-4d0e-9a51-6f2d7c1e9b10",
        )
        for t in ADMIN_TYPES
    },
    "admin:user_session_with_principal": audit(
        event_type="user_session_created",
        action_type="session",
        decision="allowed",
        target="alice",
        session_id="us-1",
        metadata={"principal": {"id": "user-42"}},
    ),
    "hushd:prompt_injection": audit(
        action_type="custom", target="untrusted_text", guard="prompt_injection", severity="Critical"
    ),
    "hushd:jailbreak_warn": audit(
        action_type="custom", guard="jailbreak_detection", decision="allowed", severity="Warning"
    ),
    "hushd:ipv6_egress": audit(target="[2001:DB8::1]:8443", guard="egress_allowlist", severity="Error"),
    "hushd:allowed_custom": audit(action_type="custom", target="x", decision="allowed"),
    "v1:forbidden_path": V1,
    "v1:allowed_shell": {
        **V1,
        "event_type": "policy_allow",
        "event_category": "process",
        "outcome": "success",
        "action": "shell",
        "decision": {"allowed": True, "severity": "info"},
        "resource": {"type": "process", "name": "/usr/bin/uname -a"},
    },
    "cert:egress": CERT,
    "adapter:blocked": adapter(
        "tool_call_blocked", {"denied": True, "guard": "mcp_tool", "severity": "high"}
    ),
    "adapter:allowed": adapter("tool_call_allowed", {"allowed": True}),
    "adapter:warning": adapter("tool_call_warning", {"allowed": True, "warn": True, "guard": "mcp_tool"}),
    "adapter:start": adapter("tool_call_start", None),
    "adapter:error": adapter("tool_call_error", None),
    "adapter:sanitized": adapter("output_sanitized", None),
    "adapter:prompt_injection": adapter(
        "prompt_security_prompt_injection",
        {"denied": True, "guard": "prompt_injection", "severity": "critical"},
    ),
    "adapter:watermark": adapter("prompt_security_watermark", None),
    "adapter:session_start": adapter("session_start", None),
    "openclaw:denied_egress": oc(),
    "openclaw:allowed_read": oc(
        type="file_read", resource="/app/x.py", decision="allowed", guard="forbidden_path"
    ),
    "openclaw:allowed_custom": oc(type="browse", resource="https://example.org", decision="allowed"),
}


def shape(name: str, ctx: MappingContext = CTX) -> dict:
    return map_record(copy.deepcopy(SHAPES[name]), context=ctx)


# ---------------------------------------------------------------- the validator rejects broken documents


def forbidden_path_doc() -> dict:
    return ok(to_ocsf(by_target("/home/agent/.ssh/id_rsa")))


def _set(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for p in parents:
        doc = doc[int(p)] if p.isdigit() else doc[p]
    doc[last] = value


def _del(doc: dict, path: str) -> None:
    *parents, last = path.split(".")
    for p in parents:
        doc = doc[int(p)] if p.isdigit() else doc[p]
    del doc[last]


BROKEN = [
    (
        "wrong type_uid (schema enum still accepts it)",
        lambda d: _set(d, "type_uid", 200402),
        "type_uid: 200402 != class_uid*100 + activity_id",
    ),
    ("type_uid of another class", lambda d: _set(d, "type_uid", 100101), "type_uid"),
    ("wrong category", lambda d: _set(d, "category_uid", 1), "category_uid: 1 is not the category"),
    ("category caption", lambda d: _set(d, "category_name", "System Activity"), "category_name: 'System"),
    ("severity caption mismatch", lambda d: _set(d, "severity", "High"), "severity: 'High' does not match"),
    ("lowercase caption", lambda d: _set(d, "severity", "critical"), "severity: 'critical' does not match"),
    ("severity 6 Fatal caption for critical", lambda d: _set(d, "severity_id", 6), "severity: 'Critical'"),
    ("activity caption", lambda d: _set(d, "activity_name", "Update"), "activity_name: 'Update'"),
    ("type caption", lambda d: _set(d, "type_name", "Detection Finding"), "type_name"),
    ("class caption", lambda d: _set(d, "class_name", "Finding"), "class_name"),
    ("disposition caption", lambda d: _set(d, "disposition", "Denied"), "disposition: 'Denied'"),
    ("caption without id", lambda d: _del(d, "status_id"), "status: caption without its id status_id"),
    ("id without caption", lambda d: _del(d, "action"), "action: missing; action_id=2"),
    ("nested caption", lambda d: _set(d, "observables.0.type", "File Name"), "observables[0].type"),
    ("time in seconds", lambda d: _set(d, "time", d["time"] // 1000), "time: 1795681731 is not epoch millis"),
    ("time in nanoseconds", lambda d: _set(d, "time", d["time"] * 1_000_000), "is not epoch milliseconds"),
    (
        "nested time in seconds",
        lambda d: _set(d, "finding_info.created_time", 1795681731),
        "finding_info.created_time",
    ),
    ("time as RFC 3339", lambda d: _set(d, "time", "2026-11-26T08:28:51.639Z"), "time: expected timestamp_t"),
    ("unknown top-level attribute", lambda d: _set(d, "decision", "deny"), "decision: unknown attribute"),
    (
        "unknown nested attribute",
        lambda d: _set(d, "evidences.0.file.owner_name", "x"),
        "evidences[0].file.owner_name: unknown attribute of file",
    ),
    ("missing required finding_info", lambda d: _del(d, "finding_info"), "finding_info: required attribute"),
    (
        "missing required metadata.product",
        lambda d: _del(d, "metadata.product"),
        "metadata.product: required",
    ),
    (
        "missing required file.type_id",
        lambda d: _del(d, "evidences.0.file.type_id"),
        "evidences[0].file.type_id: required",
    ),
    ("missing required time", lambda d: _del(d, "time"), "time: required attribute"),
    ("enum id out of range", lambda d: _set(d, "disposition_id", 42), "disposition_id: 42 is not one of"),
    ("id as string", lambda d: _set(d, "severity_id", "5"), "severity_id: expected integer_t"),
    ("null value", lambda d: _set(d, "message", None), "message: null is not allowed"),
    (
        "null inside unmapped",
        lambda d: _set(d, "unmapped.clawdstrike.x", None),
        "unmapped.clawdstrike.x: null",
    ),
    ("empty evidence", lambda d: _set(d, "evidences", [{}]), "evidences[0]: evidences needs at least one of"),
    (
        "bad ip",
        lambda d: _set(d, "evidences", [{"dst_endpoint": {"ip": "evil.example"}}]),
        "evidences[0].dst_endpoint.ip: 'evil.example' does not match the ip_t pattern",
    ),
    (
        "port out of range",
        lambda d: _set(d, "evidences", [{"dst_endpoint": {"hostname": "h", "port": 70000}}]),
        "outside port_t range",
    ),
    ("OCSF version", lambda d: _set(d, "metadata.version", "1.7.0"), "metadata.version: '1.7.0'"),
    (
        "profile-gated attribute without its profile",
        lambda d: _set(d, "metadata.profiles", ["security_control"]),
        "actor: needs profile host",
    ),
    (
        "declared profile with nothing of it",
        lambda d: d["metadata"]["profiles"].append("incident"),
        "declares 'incident' but no attribute",
    ),
    (
        "profile the class does not have",
        lambda d: d["metadata"]["profiles"].append("load_balancer"),
        "profile 'load_balancer' does not apply",
    ),
    ("duplicate profile", lambda d: d["metadata"]["profiles"].append("host"), "duplicates"),
    (
        "cloud profile makes cloud required",
        lambda d: d["metadata"]["profiles"].append("cloud"),
        "cloud: required attribute",
    ),
]


@pytest.mark.parametrize(("what", "breaker", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_validator_rejects_broken_documents(what, breaker, expected):
    doc = forbidden_path_doc()
    breaker(doc)
    errors = validate_ocsf(doc)
    assert errors, f"{what}: accepted"
    assert any(expected in e for e in errors), errors


def test_validator_rejects_what_the_json_schema_alone_catches():
    doc = forbidden_path_doc()
    doc["evidences"][0]["file"]["size"] = "12"  # long_t as a string
    errors = validate_ocsf(doc)
    assert any(e.startswith("schema evidences/0/file/size") for e in errors), errors
    assert any(e.startswith("evidences[0].file.size: expected long_t") for e in errors), errors


def test_validator_rejects_unknown_class_and_non_objects():
    assert validate_ocsf([]) == ["(event): expected a JSON object, got list"]
    assert validate_ocsf({"class_uid": 9999}) == ["class_uid: 9999 is not an OCSF 1.8.0 class"]
    assert validate_ocsf({"class_uid": "2004"})[0].startswith("class_uid: '2004'")


def test_validator_checks_classes_without_a_json_schema_from_the_export():
    ev = shape("admin:policy_reload")
    doc = ok(to_ocsf(ev, allowed_as_activity=True))
    assert doc["class_uid"] == 3004 and validator.schema_validator("entity_management") is None
    broken = copy.deepcopy(doc)
    del broken["entity"]
    assert "entity: required attribute of entity_management is missing" in validate_ocsf(broken)
    broken = copy.deepcopy(doc)
    broken["entity"]["type"] = "policy"
    assert any(e.startswith("entity.type: 'policy' does not match type_id=5") for e in validate_ocsf(broken))
    broken = copy.deepcopy(doc)
    broken["app"] = {"name": "x"}
    assert "app: unknown attribute of entity_management" in validate_ocsf(broken)


def test_validator_fails_when_the_data_is_missing(monkeypatch, tmp_path):
    validator.export.cache_clear()
    validator.classes_by_uid.cache_clear()
    monkeypatch.setattr(validator, "EXPORT_PATH", tmp_path / "missing.json")
    try:
        with pytest.raises(FileNotFoundError, match="OCSF data missing"):
            validate_ocsf(forbidden_path_doc())
    finally:
        validator.export.cache_clear()
        validator.classes_by_uid.cache_clear()
    monkeypatch.setattr(validator, "JSON_SCHEMA_DIR", tmp_path)
    validator.schema_validator.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="detection_finding"):
            validator.schema_validator("detection_finding")
    finally:
        validator.schema_validator.cache_clear()


def test_pregenerated_schemas_exist_for_the_classes_the_docs_name():
    for name in validator.PREGENERATED:
        assert validator.schema_validator(name) is not None


# ---------------------------------------------------------------- every real capture, both modes


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("activity", [False, True], ids=["findings", "activities"])
@pytest.mark.parametrize("ctx", [CTX, BARE], ids=["context", "bare"])
def test_every_capture_is_valid_ocsf(source, activity, ctx):
    assert SOURCES[source]
    problems = {}
    for line in SOURCES[source]:
        ev = parse_line(line, context=ctx)
        errors = validate_ocsf(to_ocsf(ev, allowed_as_activity=activity))
        if errors:
            problems[ev["event_id"]] = errors
    assert problems == {}


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("activity", [False, True], ids=["findings", "activities"])
@pytest.mark.parametrize("ctx", [CTX, BARE], ids=["context", "bare"])
def test_every_record_shape_is_valid_ocsf(name, activity, ctx):
    ok(to_ocsf(shape(name, ctx), allowed_as_activity=activity))


def test_the_captures_cover_findings_and_five_activity_classes():
    seen = {to_ocsf(ev, allowed_as_activity=True)["class_uid"] for ev in events()}
    assert seen == {2004, 1001, 1007, 4001, 6003, 6002, 3004}
    assert {to_ocsf(ev)["class_uid"] for ev in events()} == {2004}


# ---------------------------------------------------------------- class, activity and decision per event


@pytest.mark.parametrize(
    ("target", "cls", "type_uid", "key"),
    [
        ("/home/agent/project/src/main.rs", 1001, 100102, "file"),  # file_access allowed -> Read
        ("/workspace/app/src/config.rs", 1001, 100103, "file"),  # file_write allowed -> Update
        ("api.openai.com:443", 4001, 400101, "dst_endpoint"),  # egress allowed -> Open
        ("ls -la", 1007, 100701, "process"),  # shell allowed -> Launch
        ("read_file", 6003, 600399, "api"),  # mcp_tool allowed -> API Activity: Other
    ],
)
def test_allowed_actions_as_activity_classes(target, cls, type_uid, key):
    ev = by_target(target)
    doc = ok(to_ocsf(ev, allowed_as_activity=True))
    assert (doc["class_uid"], doc["type_uid"]) == (cls, type_uid)
    assert (doc["action_id"], doc["disposition_id"], doc["is_alert"]) == (1, 1, False)
    assert (doc["status_id"], doc["status"]) == (1, "Success")
    assert key in doc and "finding_info" not in doc and "evidences" not in doc
    finding = ok(to_ocsf(ev))  # the default keeps one class: a Detection Finding that says Allowed
    assert (finding["class_uid"], finding["type_uid"], finding["action"], finding["disposition"]) == (
        2004,
        200401,
        "Allowed",
        "Allowed",
    )
    assert finding["is_alert"] is False and key in finding["evidences"][0]


def test_allowed_artifacts_carry_the_resource():
    assert to_ocsf(by_target("ls -la"), allowed_as_activity=True)["process"] == {
        "uid": by_target("ls -la")["event_id"],
        "cmd_line": "ls -la",
        "name": "ls",
    }
    assert to_ocsf(by_target("read_file"), allowed_as_activity=True)["api"] == {
        "operation": "read_file",
        "service": {"name": "mcp"},
    }
    net = to_ocsf(by_target("api.openai.com:443"), allowed_as_activity=True)
    assert net["dst_endpoint"] == {"hostname": "api.openai.com", "port": 443}
    assert net["connection_info"] == {"direction_id": 2, "direction": "Outbound"}
    f = to_ocsf(by_target("/workspace/app/src/config.rs"), allowed_as_activity=True)["file"]
    assert f == {
        "name": "config.rs",
        "path": "/workspace/app/src/config.rs",
        "parent_folder": "/workspace/app/src",
        "type_id": 1,
        "type": "Regular File",
    }


@pytest.mark.parametrize(
    ("target", "guard", "key", "artifact"),
    [
        (
            "/home/agent/.ssh/id_rsa",
            "forbidden_path",
            "file",
            {
                "name": "id_rsa",
                "path": "/home/agent/.ssh/id_rsa",
                "parent_folder": "/home/agent/.ssh",
                "type_id": 0,
                "type": "Unknown",
            },
        ),
        (
            "/workspace/app/src/keys.py",
            "secret_leak",
            "file",
            {
                "name": "keys.py",
                "path": "/workspace/app/src/keys.py",
                "parent_folder": "/workspace/app/src",
                "type_id": 1,
                "type": "Regular File",
            },
        ),
        (
            "/workspace/app/src/http.py",
            "patch_integrity",
            "file",
            {
                "name": "http.py",
                "path": "/workspace/app/src/http.py",
                "parent_folder": "/workspace/app/src",
                "type_id": 1,
                "type": "Regular File",
            },
        ),
        (
            "exfil.evil-example.net:443",
            "egress_allowlist",
            "dst_endpoint",
            {"hostname": "exfil.evil-example.net", "port": 443},
        ),
        ("203.0.113.7:8080", "egress_allowlist", "dst_endpoint", {"ip": "203.0.113.7", "port": 8080}),
        ("shell_exec", "mcp_tool", "api", {"operation": "shell_exec", "service": {"name": "mcp"}}),
    ],
)
@pytest.mark.parametrize("activity", [False, True])
def test_denials_are_detection_findings_with_the_artifact(target, guard, key, artifact, activity):
    ev = by_target(target)
    doc = ok(to_ocsf(ev, allowed_as_activity=activity))
    assert (doc["class_uid"], doc["category_uid"], doc["activity_id"], doc["type_uid"]) == (
        2004,
        2,
        1,
        200401,
    )
    assert (doc["action_id"], doc["action"], doc["disposition_id"], doc["disposition"]) == (
        2,
        "Denied",
        2,
        "Blocked",
    )
    assert doc["is_alert"] is True and (doc["status_id"], doc["status"]) == (1, "New")
    assert doc["evidences"] == [{key: artifact}]
    fi = doc["finding_info"]
    assert fi["uid"] == ev["event_id"] == doc["metadata"]["uid"]
    assert fi["analytic"] == {"type_id": 1, "type": "Rule", "uid": guard, "name": guard}
    assert fi["types"] == [ev["event_type"]] and fi["desc"] == ev["decision"]["reason"] == doc["message"]
    assert doc["resources"] == [{"name": ev["resource"]["name"], "type": ev["resource"]["type"]}]
    assert doc["unmapped"]["clawdstrike"]["guard"] == guard


def test_finding_titles_name_the_kind_not_the_data():
    assert to_ocsf(by_target("/etc/shadow"))["finding_info"]["title"] == "Forbidden path access blocked"
    assert to_ocsf(by_target("203.0.113.7:8080"))["finding_info"]["title"] == "Network egress blocked"
    assert to_ocsf(by_target("shell_exec"))["finding_info"]["title"] == "MCP tool call blocked"
    assert to_ocsf(by_target("git_push"))["finding_info"]["title"] == "MCP tool call flagged"
    assert to_ocsf(by_target("/workspace/app/src/keys.py"))["finding_info"]["title"] == "Secret leak blocked"


def test_warning_is_an_alert_that_was_not_blocked():
    for activity in (False, True):
        doc = ok(to_ocsf(by_target("git_push"), allowed_as_activity=activity))
        assert doc["class_uid"] == 2004
        assert (doc["action_id"], doc["action"], doc["disposition_id"], doc["disposition"]) == (
            3,
            "Observed",
            19,
            "Alert",
        )
        assert doc["is_alert"] is True and (doc["severity_id"], doc["severity"]) == (3, "Medium")


@pytest.mark.parametrize(
    ("name", "activity", "cls", "activity_id", "activity_name", "decision"),
    [
        ("admin:policy_reload", True, 3004, 3, "Update", (1, 1)),
        ("admin:scoped_policy_created", True, 3004, 1, "Create", (1, 1)),
        ("admin:scoped_policy_deleted", True, 3004, 4, "Delete", (1, 1)),
        ("admin:rbac_role_assigned", True, 3004, 3, "Update", (1, 1)),
        ("admin:session_posture_transition", True, 3004, 3, "Update", (1, 1)),
        ("admin:webhook_okta", True, 3004, 99, "webhook_okta", (1, 1)),
        ("admin:user_session_created", True, 3002, 1, "Logon", (1, 1)),
        ("admin:saml_session_created", True, 3002, 1, "Logon", (1, 1)),
        ("admin:user_session_terminated", True, 3002, 2, "Logoff", (1, 1)),
        ("admin:session_end", True, 6002, 4, "Stop", (1, 1)),
        ("adapter:session_start", True, 6002, 3, "Start", (3, 17)),
        ("adapter:allowed", True, 6003, 99, "tool_call", (1, 1)),
        ("adapter:start", True, 6003, 99, "tool_call", (3, 17)),
        ("adapter:start", False, 2004, 1, "Create", (3, 17)),
        ("adapter:blocked", True, 2004, 1, "Create", (2, 2)),
        ("adapter:warning", True, 2004, 1, "Create", (3, 19)),
        ("adapter:watermark", True, 2004, 1, "Create", (3, 15)),
        ("adapter:sanitized", True, 2004, 1, "Create", (4, 11)),
        ("adapter:prompt_injection", True, 2004, 1, "Create", (2, 2)),
        ("hushd:prompt_injection", True, 2004, 1, "Create", (2, 2)),
        ("hushd:jailbreak_warn", True, 2004, 1, "Create", (3, 19)),
        ("hushd:allowed_custom", True, 6003, 99, "custom", (1, 1)),
        ("openclaw:allowed_read", True, 1001, 2, "Read", (1, 1)),
        ("openclaw:denied_egress", True, 2004, 1, "Create", (2, 2)),
        ("cert:egress", True, 2004, 1, "Create", (2, 2)),
        ("v1:allowed_shell", True, 1007, 1, "Launch", (1, 1)),
    ],
)
def test_class_and_activity_per_shape(name, activity, cls, activity_id, activity_name, decision):
    ev = shape(name)
    doc = ok(to_ocsf(ev, allowed_as_activity=activity))
    assert (doc["class_uid"], doc["activity_id"], doc["activity_name"]) == (cls, activity_id, activity_name)
    assert doc["type_uid"] == cls * 100 + activity_id
    assert (doc["action_id"], doc["disposition_id"]) == decision


def test_activity_status_follows_the_outcome():
    assert to_ocsf(shape("adapter:error"), allowed_as_activity=True)["status"] == "Failure"
    assert to_ocsf(shape("adapter:start"), allowed_as_activity=True)["status_id"] == 0


def test_class_specific_required_objects():
    auth = ok(to_ocsf(shape("admin:user_session_with_principal"), allowed_as_activity=True))
    assert auth["user"] == {"uid": "user-42"} and auth["session"] == {"uid": "us-1"}
    assert auth["service"] == {"name": "hushd"}
    anon = ok(to_ocsf(shape("admin:user_session_created"), allowed_as_activity=True))
    assert anon["user"] == {"name": "unknown"}  # hushd named no user: never the event type as a user name
    life = ok(to_ocsf(shape("admin:session_end"), allowed_as_activity=True))
    assert life["app"] == {"name": "hushd", "vendor_name": "Backbay Labs"}
    ent = ok(to_ocsf(shape("admin:rbac_role_assigned"), allowed_as_activity=True))
    assert ent["entity"] == {"name": "rbac_role_assigned", "type_id": 99, "type": "Role"}


def test_unknowns_are_omitted_and_required_ones_say_unknown():
    ev = parse_line(SOURCES["audit-forward.jsonl"][5], context=BARE)  # /etc/shadow: no agent, no session
    assert ev["resource"]["name"] == "/etc/shadow" and "agent" not in ev
    doc = ok(to_ocsf(ev))
    assert not {"actor", "device"} & doc.keys() and doc["metadata"]["profiles"] == ["security_control"]
    assert "tags" not in doc["metadata"] and "tenant_uid" not in doc["metadata"]
    allowed = parse_line(SOURCES["audit-forward.jsonl"][7], context=BARE)
    act = ok(to_ocsf(allowed, allowed_as_activity=True))
    assert act["class_uid"] == 1001 and act["device"] == {"type_id": 0, "type": "Unknown", "name": "unknown"}
    assert b"null" not in orjson.dumps(act) and b"null" not in orjson.dumps(doc)


def test_profiles_match_the_attributes_used():
    with_actor = to_ocsf(by_target("/home/agent/.ssh/id_rsa"))
    assert "actor" in with_actor and with_actor["metadata"]["profiles"] == ["host", "security_control"]
    file_activity = to_ocsf(by_target("/home/agent/project/src/main.rs"), allowed_as_activity=True)
    assert file_activity["metadata"]["profiles"] == [
        "security_control"
    ]  # actor/device are base 1001 attributes
    net = to_ocsf(by_target("api.openai.com:443"), allowed_as_activity=True)
    assert net["metadata"]["profiles"] == ["host", "security_control"]  # device is host-gated in 4001


def test_metadata_time_and_context():
    ev = by_target("/home/agent/.ssh/id_rsa")
    doc = to_ocsf(ev)
    assert doc["time"] == timestamp_to_ms(ev["timestamp"]) == 1795681731639 and type(doc["time"]) is int
    assert doc["finding_info"]["created_time"] == doc["time"]
    md = doc["metadata"]
    assert md["version"] == OCSF_VERSION == "1.8.0"
    assert md["product"] == {
        "name": "Clawdstrike",
        "vendor_name": "Backbay Labs",
        "feature": {"name": "hushd"},
    }
    assert md["original_time"] == "2026-11-26T08:28:51.639708766Z" and md["event_code"] == "violation"
    assert md["tags"] == [{"name": "env", "value": "dev"}, {"name": "team", "value": "security"}]
    assert md["tenant_uid"] == "acme-corp" and md["log_name"] == "hushd_audit"
    assert doc["device"] == {"type_id": 0, "type": "Unknown", "hostname": "dev-laptop"}
    assert doc["actor"] == {"app_uid": "agent-007"}
    assert doc["policy"] == {"uid": "sha256:989be150824a9c37647fbf29d2231d25ddf40a83e686f930de2a466d36b17f73"}
    cs = doc["unmapped"]["clawdstrike"]
    assert json.loads(cs["metadata"]) == ev["metadata"] and cs["environment"] == "production"
    v1 = to_ocsf(shape("v1:forbidden_path"))
    assert v1["policy"] == {"uid": "sha256:" + H, "name": "Default"}
    assert v1["metadata"]["product"]["version"] == "0.1.0"
    assert v1["actor"] == {"app_uid": "agent-0001", "session": {"uid": "sess-0001"}}


def test_metadata_with_nulls_stays_valid_as_a_string():
    ev = by_target("exfil.evil-example.net:443")
    assert ev["metadata"]["matched_pattern"] is None
    doc = ok(to_ocsf(ev))
    assert '"matched_pattern":null' in doc["unmapped"]["clawdstrike"]["metadata"]


@pytest.mark.parametrize(
    ("severity", "sid", "caption"),
    [
        ("info", 1, "Informational"),
        ("low", 2, "Low"),
        ("medium", 3, "Medium"),
        ("high", 4, "High"),
        ("critical", 5, "Critical"),
    ],
)
def test_severity(severity, sid, caption):
    ev = by_target("/etc/shadow")
    ev["decision"]["severity"] = severity
    for activity in (False, True):
        doc = ok(to_ocsf(ev, allowed_as_activity=activity))
        assert (doc["severity_id"], doc["severity"]) == (sid, caption)


def test_critical_capture_is_five_never_fatal():
    docs = [to_ocsf(ev) for ev in events() if ev["decision"]["severity"] == "critical"]
    assert docs and {(d["severity_id"], d["severity"]) for d in docs} == {(5, "Critical")}


# ---------------------------------------------------------------- MITRE ATT&CK / ATLAS


ATTACK = {
    "framework": "attack",
    "tactic": {"id": "TA0006", "name": "Credential Access"},
    "technique": {"id": "T1552.001", "name": "Unsecured Credentials: Credentials In Files"},
}
ATLAS = {
    "framework": "atlas",
    "tactic": {"id": "AML.TA0005", "name": "Execution"},
    "technique": {"id": "AML.T0051", "name": "LLM Prompt Injection"},
}


def test_mitre_attack_subtechnique_to_attacks():
    doc = ok(to_ocsf(with_mitre(by_target("/home/agent/.ssh/id_rsa"), ATTACK)))
    want = [
        {
            "tactic": {"uid": "TA0006", "name": "Credential Access"},
            "technique": {"uid": "T1552", "name": "Unsecured Credentials"},
            "sub_technique": {"uid": "T1552.001", "name": "Credentials In Files"},
        }
    ]
    assert doc["attacks"] == want == doc["finding_info"]["attacks"]
    assert doc["attacks"][0] is not doc["finding_info"]["attacks"][0]  # duplicated, not shared
    assert doc["unmapped"]["clawdstrike"]["mitre_framework"] == "attack"


def with_mitre(ev: dict, mitre: dict) -> dict:
    ev = {**ev, "mitre": mitre}
    validate_event(ev)  # a mitre value the enrichment could really set
    return ev


def test_mitre_atlas_technique():
    doc = ok(to_ocsf(with_mitre(shape("hushd:prompt_injection"), ATLAS)))
    assert doc["attacks"] == [
        {
            "tactic": {"uid": "AML.TA0005", "name": "Execution"},
            "technique": {"uid": "AML.T0051", "name": "LLM Prompt Injection"},
        }
    ]
    sub = {**ATLAS, "technique": {"id": "AML.T0051.000", "name": "LLM Prompt Injection: Direct"}}
    doc = ok(to_ocsf(with_mitre(shape("hushd:prompt_injection"), sub)))
    assert doc["attacks"][0]["technique"] == {"uid": "AML.T0051", "name": "LLM Prompt Injection"}
    assert doc["attacks"][0]["sub_technique"] == {"uid": "AML.T0051.000", "name": "Direct"}


def test_mitre_subtechnique_name_without_parent_part():
    mitre = {**ATTACK, "technique": {"id": "T1059.004", "name": "Unix Shell"}}
    doc = ok(to_ocsf(with_mitre(by_target("shell_exec"), mitre)))
    assert doc["attacks"][0]["technique"] == {"uid": "T1059"}  # the parent's name is not known
    assert doc["attacks"][0]["sub_technique"] == {"uid": "T1059.004", "name": "Unix Shell"}


def test_mitre_version_is_mapped_when_the_enrichment_states_it():
    doc = ok(to_ocsf(with_mitre(by_target("shell_exec"), {**ATTACK, "version": "v17"})))
    assert doc["attacks"][0]["version"] == doc["finding_info"]["attacks"][0]["version"] == "v17"
    assert "version" not in to_ocsf(with_mitre(by_target("shell_exec"), ATTACK))["attacks"][0]


def test_mitre_on_an_activity_class():
    mitre = {
        "framework": "attack",
        "tactic": {"id": "TA0002", "name": "Execution"},
        "technique": {"id": "T1059", "name": "Command and Scripting Interpreter"},
    }
    doc = ok(to_ocsf(with_mitre(by_target("ls -la"), mitre), allowed_as_activity=True))
    assert doc["class_uid"] == 1007 and doc["attacks"][0]["technique"]["uid"] == "T1059"
    assert "finding_info" not in doc


def test_no_mitre_no_attacks():
    doc = to_ocsf(by_target("/etc/shadow"))
    assert "attacks" not in doc and "attacks" not in doc["finding_info"]


# ---------------------------------------------------------------- determinism, isolation


def _reordered(obj):
    if isinstance(obj, dict):
        return {k: _reordered(obj[k]) for k in reversed(list(obj))}
    return obj


@pytest.mark.parametrize("activity", [False, True])
def test_deterministic_bytes(activity):
    for ev in events():
        first = orjson.dumps(to_ocsf(ev, allowed_as_activity=activity), option=SORT)
        assert orjson.dumps(to_ocsf(copy.deepcopy(ev), allowed_as_activity=activity), option=SORT) == first
        assert orjson.dumps(to_ocsf(_reordered(ev), allowed_as_activity=activity), option=SORT) == first


def test_input_not_mutated_and_outputs_not_shared():
    ev = by_target("/home/agent/.ssh/id_rsa")
    before = encode_event(ev)
    a = to_ocsf(ev)
    assert encode_event(ev) == before
    a["severity"] = "x"
    a["metadata"]["product"]["name"] = "x"
    a["evidences"][0]["file"]["path"] = "x"
    b = to_ocsf(ev)
    assert b["severity"] == "Critical" and b["metadata"]["product"]["name"] == "Clawdstrike"
    assert b["evidences"][0]["file"]["path"] == "/home/agent/.ssh/id_rsa"
    assert encode_event(ev) == before


# ---------------------------------------------------------------- hostile strings

HOSTILE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
) | st.sampled_from(
    [
        "a|b=c\\d",
        "line1\nline2\r\n",
        "  leading and trailing  ",
        "é中文🙂\u202e",
        "\x00\x1f\x7f",
        "=" * 5,
        "x" * 10_000,
        '"quoted" \\"',
        "/",
        "\\\\server\\share\\",
        "null",
        "{}",
        "..",
        "%s%n",
    ]
)
TEMPLATES = [
    "/home/agent/.ssh/id_rsa",
    "/workspace/app/src/config.rs",
    "exfil.evil-example.net:443",
    "api.openai.com:443",
    "ls -la",
    "shell_exec",
    "read_file",
    "git_push",
]
TACTICS = [("attack", "TA0006"), ("atlas", "AML.TA0005")]
TECHNIQUES = ["T1552", "T1552.001", "AML.T0051", "AML.T0051.000"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.sampled_from(TEMPLATES),
    text=HOSTILE,
    other=HOSTILE,
    activity=st.booleans(),
    mitre=st.none() | st.tuples(st.sampled_from(TACTICS), st.sampled_from(TECHNIQUES)),
)
def test_hostile_strings_stay_valid(template, text, other, activity, mitre):
    ev = copy.deepcopy(by_target(template))
    res = ev["resource"]
    res["name"] = text
    if "path" in res:
        res["path"] = text
    if "host" in res:
        res["host"] = text
    ev["decision"]["reason"] = other
    if "guard" in ev["decision"]:
        ev["decision"]["guard"] = other
    ev["agent"] = {"id": text}
    ev["session"] = {"id": other, "user_id": text, "run_id": other, "tenant_id": text}
    ev["labels"] = {text: other, "k": text}
    ev["metadata"] = {"v": text, other: [None, text]}
    ev["observer"]["host_name"] = other
    if ev["event_type"] == "policy_allow":
        ev["action"] = text  # activity classes put an unknown action in activity_name (99 Other)
    if mitre:  # ids follow the canonical patterns; the names are free text
        (fw, tactic), technique = mitre
        ev["mitre"] = {
            "framework": fw,
            "tactic": {"id": tactic, "name": other},
            "technique": {"id": technique, "name": f"{text}: {other}"},
        }
    validate_event(ev)  # still a canonical event
    doc = to_ocsf(ev, allowed_as_activity=activity)
    assert validate_ocsf(doc) == []
    body = orjson.dumps(doc, option=SORT)
    assert orjson.loads(body) == doc
    if res["type"] == "file" and doc["class_uid"] == 2004:
        assert doc["evidences"][0]["file"]["path"] == text


def test_metadata_that_orjson_cannot_encode_renders_like_ecs():
    """Hand-built metadata with an integer beyond 64 bits: OCSF carries the same string ECS does
    instead of raising (one shared encoder)."""
    from transforms.ecs import to_ecs

    ev = copy.deepcopy(events()[0])
    ev["metadata"] = {"big": 2**70, "b": [1, "x"]}
    doc = to_ocsf(ev)
    assert validate_ocsf(doc) == []
    assert doc["unmapped"]["clawdstrike"]["metadata"] == to_ecs(ev)["clawdstrike"]["metadata"]
    assert str(2**70) in doc["unmapped"]["clawdstrike"]["metadata"]
